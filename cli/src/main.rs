//! `outpost`: the command-line tool over an Outpost database directory.
//!
//! Put, get and delete documents, scan by id prefix, read the changes feed,
//! import and export JSON lines, print statistics and check a database's
//! integrity, and set aside records that do not decode (`main.rs`: the command line; `commands.rs`: what each command
//! does; `error.rs`: the one error type). `import` and `export` print as the
//! hub's do: both use `outpost_cmdline` (cmdline/).
#![forbid(unsafe_code)]

mod commands;
mod error;
mod where_clause;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

const MAIN_EXAMPLES: &str = "\
Examples:
  outpost put patients/dr-7/0001 '{\"name\":\"Ada Lovelace\",\"born\":1815}' --collection Patients
  echo '{\"total\":120.5}' | outpost put invoices/2026/0042
  outpost get patients/dr-7/0001
  outpost scan --prefix patients/dr-7/ --limit 20
  outpost changes --since 0
  outpost import scripts/sample.jsonl
  outpost export backup.jsonl
  outpost --db /var/lib/outpost stats
  outpost check
  outpost vacuum
  outpost repair ./outpost-data --dry-run

The database directory is taken from --db, else from $OUTPOST_DB, else ./outpost-data.
Commands that write (put, delete, import) create it if it does not exist.
Documents are shown as their JSON body with an \"@metadata\" object added
(@id, @collection, @change-vector, @etag, @last-modified).

Errors are printed as `error: <message> (<code>)` on stderr, with a non-zero exit status.

Exit status: 0 success; 1 error; 2 bad command line; 3 `import` finished but
skipped bad lines (the summary says how many).";

/// Outpost: an offline-first document database. This tool works on one
/// database directory on this machine.
#[derive(Parser, Debug)]
#[command(name = "outpost", version, after_help = MAIN_EXAMPLES)]
pub struct Cli {
    /// The database directory.
    #[arg(
        long,
        global = true,
        env = "OUTPOST_DB",
        default_value = "./outpost-data",
        value_name = "DIR"
    )]
    pub db: PathBuf,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create or replace a document.
    ///
    /// The body is a JSON object, given as an argument or on standard input.
    /// Prints the id, etag and change vector of the new version.
    #[command(after_help = "\
Examples:
  outpost put patients/dr-7/0001 '{\"name\":\"Ada Lovelace\",\"born\":1815}'
  outpost put invoices/2026/0042 --collection Invoices < invoice.json
  outpost put notes/1 - <<< '{\"text\":\"hello\"}'")]
    Put {
        /// Document id: non-empty UTF-8, at most 512 bytes, no control
        /// characters. Ids are case-insensitive.
        id: String,
        /// The JSON body; read from standard input when absent or `-`.
        json: Option<String>,
        /// Collection of the document (overrides `@metadata.@collection` in the body).
        #[arg(long, value_name = "NAME")]
        collection: Option<String>,
    },

    /// Print a document (pretty JSON, with its metadata).
    ///
    /// Exits with status 1 and a `not_found` error if the document does not exist.
    #[command(after_help = "Example:\n  outpost get patients/dr-7/0001")]
    Get {
        /// Document id.
        id: String,
    },

    /// Delete a document (writes a tombstone that replicates).
    ///
    /// Exits with status 1 and a `not_found` error if the document does not exist.
    #[command(after_help = "Example:\n  outpost delete patients/dr-7/0001")]
    Delete {
        /// Document id.
        id: String,
    },

    /// List documents in id order as JSON lines, optionally by id prefix.
    ///
    /// To page through a large prefix, pass the last id printed as --after.
    #[command(after_help = "\
Examples:
  outpost scan --prefix patients/dr-7/
  outpost scan --prefix invoices/ --limit 50 --after invoices/2026/0042
  outpost scan --limit 0 | wc -l        # every document")]
    Scan {
        /// Only ids starting with this prefix.
        #[arg(long, default_value = "", value_name = "P")]
        prefix: String,
        /// Only ids after this one (exclusive).
        #[arg(long, value_name = "ID")]
        after: Option<String>,
        /// At most this many documents; 0 for no limit.
        #[arg(long, default_value_t = 100, value_name = "N")]
        limit: usize,
    },

    /// Rows of an index as JSON lines: `{"key":…,"value":…,"id":…}` (a map
    /// index) or `{"key":…,"value":…}` (a reducing one), in key order.
    ///
    /// Keys are JSON (`--eq '"Oslo"'`, `--prefix '["L1"]'`, `--gte 10`).
    /// The index is read as the database holds it (the functions live with
    /// the application or the hub, which keep it up to date); a note on
    /// standard error says when it is behind the documents.
    #[command(after_help = "\
Examples:
  outpost query mortgage/loan-status --eq '\"L1\"'
  outpost query users/by-city --prefix '\"Os\"' --limit 20
  outpost query sales/by-month --gte '[\"2026-01\"]' --lt '[\"2026-04\"]' --descending
  outpost query users/by-city --eq '\"Oslo\"' --count
  outpost query sales/by-month --where 'key >= [\"2026-01\"] and key < [\"2026-04\"]'
  outpost query users/by-city --where 'key starts with Os'")]
    Query {
        /// The index name.
        index: String,
        /// The key conditions in one expression, joined by `and`: `key` then
        /// `=`, `>`, `>=`, `<`, `<=` or `starts with`, then a JSON value (a
        /// bare word is a string). Instead of the flags below.
        #[arg(long = "where", value_name = "EXPR")]
        where_: Option<String>,
        /// Rows whose key equals this JSON value.
        #[arg(long, value_name = "JSON")]
        eq: Option<String>,
        /// Rows whose key starts with this (a string's prefix, an array's first elements).
        #[arg(long, value_name = "JSON")]
        prefix: Option<String>,
        /// Rows whose key is greater than this.
        #[arg(long, value_name = "JSON")]
        gt: Option<String>,
        /// Rows whose key is at least this.
        #[arg(long, value_name = "JSON")]
        gte: Option<String>,
        /// Rows whose key is less than this.
        #[arg(long, value_name = "JSON")]
        lt: Option<String>,
        /// Rows whose key is at most this.
        #[arg(long, value_name = "JSON")]
        lte: Option<String>,
        /// Descending key order.
        #[arg(long)]
        descending: bool,
        /// At most this many rows; 0 for no limit.
        #[arg(long, default_value_t = 100, value_name = "N")]
        limit: usize,
        /// Print only the number of rows.
        #[arg(long)]
        count: bool,
    },

    /// Print the changes feed as JSON lines: every document version written
    /// after an etag, in etag order, deletions included (`"@deleted": true`).
    #[command(after_help = "\
Examples:
  outpost changes                       # from the beginning
  outpost changes --since 1200 --limit 10")]
    Changes {
        /// Only changes with an etag greater than this.
        #[arg(long, default_value_t = 0, value_name = "ETAG")]
        since: u64,
        /// At most this many changes; 0 for no limit.
        #[arg(long, default_value_t = 100, value_name = "N")]
        limit: usize,
    },

    /// Import documents from JSON lines (a file, or `-` for standard input).
    ///
    /// Each line is a JSON object: the document body, with its id in a string
    /// field "id" (kept in the body) or in "@metadata": {"@id": ...}; an optional
    /// "@metadata": {"@collection": ...} sets the collection. The output of
    /// `export` and `scan` can be imported as is. Documents are committed in
    /// atomic batches of at most --batch documents and 8 MiB. A bad line is
    /// reported with its line number and skipped; with --strict the import
    /// stops at the first bad line instead (batches committed before it stay).
    #[command(after_help = "\
Examples:
  outpost import scripts/sample.jsonl
  outpost import --batch 5000 --strict big.jsonl
  gunzip -c dump.jsonl.gz | outpost import -
  outpost --db a export | outpost --db b import -

A line may look like:
  {\"id\":\"patients/dr-7/0001\",\"name\":\"Ada Lovelace\",\"@metadata\":{\"@collection\":\"Patients\"}}

Memory: a line longer than 16 MiB + 64 KiB (the largest document plus room
for its metadata) is refused while it is read, without being held whole, and
skipped to its newline; a line that would take more than 64 MiB once parsed
(millions of tiny values) is refused too. A batch holds at most --batch
documents and 8 MiB of lines (a larger line is committed alone). The import
stays under about 400 MiB of memory whatever the input (measured peaks in
the README).

Exit status: 0 every line imported; 3 the import finished but skipped bad
lines (the summary says how many, and \"INCOMPLETE\"); 1 an error stopped it
(batches committed before stay).")]
    Import {
        /// The JSON-lines file, or `-` for standard input.
        file: String,
        /// `--batch`, `--strict`, `--collection` (the hub's `import` takes them too).
        #[command(flatten)]
        options: outpost_cmdline::ImportArgs,
    },

    /// Export every live document as JSON lines (to a file, or standard output).
    #[command(after_help = "\
Examples:
  outpost export backup.jsonl
  outpost export --prefix patients/dr-7/ dr-7.jsonl
  outpost export | gzip > backup.jsonl.gz")]
    Export {
        /// Output file; standard output when absent or `-`.
        file: Option<String>,
        /// Only ids starting with this prefix.
        #[arg(long, default_value = "", value_name = "P")]
        prefix: String,
    },

    /// List the stored records that do not decode and set them aside.
    ///
    /// A record that does not decode (damaged, over today's limits, or holding
    /// a body that fails the strict body check, stored by an older version) is
    /// skipped by reads, replication and export,
    /// which go on past it; `check` lists it. This command lists each one on
    /// standard output as a JSON line (key, etag, length in bytes, the decode
    /// error) and, unless --dry-run, moves them all aside in one commit: each
    /// record's raw bytes go to a local record `quarantine/<etag>/<key>` (kept
    /// for inspection, never replicated), and it leaves the documents, the
    /// indexes and the changes feed; the document counts are recounted. A
    /// document whose value's overflow pages are damaged (reading it by id
    /// fails naming the page; scans, replication and export skip it) is set
    /// aside the same way, with an empty record, and the pages past the
    /// damage are freed. The database then checks clean. The id can be written again (a replica
    /// that still holds the document sends it again only when it changes).
    ///
    /// Run it with the database closed (the hub stopped, for a hub database).
    #[command(after_help = "\
Examples:
  outpost repair /var/lib/outpost --dry-run   # only list
  outpost repair /var/lib/outpost
  outpost --db /var/lib/outpost repair        # the same

Exit status: 0 listed (and, without --dry-run, set aside) whatever was found; 1 an error.")]
    Repair {
        /// The database directory (default: --db).
        #[arg(value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Only list the unreadable records; change nothing.
        #[arg(long)]
        dry_run: bool,
    },

    /// Print statistics: document count, collections, engine and storage figures (JSON).
    #[command(after_help = "Example:\n  outpost --db /var/lib/outpost stats")]
    Stats,

    /// Check the integrity of every page and index. Exits with status 1 if any
    /// problem is found.
    #[command(after_help = "Example:\n  outpost check && echo healthy")]
    Check,

    /// Give free space back to the file system: move the pages in use to the
    /// start of the data file and cut the file after them.
    ///
    /// Deleting documents frees pages inside the file, which later writes
    /// reuse; the file itself only shrinks with a vacuum. Documents, etags
    /// and change vectors are unchanged. Prints the pages (4 KiB) and the
    /// data file's bytes before and after (JSON). A hub vacuums its
    /// databases by itself after a tombstone compaction.
    #[command(after_help = "Example:\n  outpost --db /var/lib/outpost vacuum")]
    Vacuum,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }
}
