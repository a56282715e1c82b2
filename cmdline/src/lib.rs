//! What the two command lines, `outpost` (cli/) and `outpost-hub` (hub/),
//! share: their `import` and `export` of JSON lines, printed the same way.
//!
//! - [`ImportArgs`]: the `--batch`, `--strict` and `--collection` options of
//!   both `import` commands, turned into [`ImportOptions`];
//! - [`open_input`] and [`create_output`]: a file or standard input (`-`),
//!   a file or standard output;
//! - [`import`]: [`outpost::jsonl::import`] (the one import routine) with a
//!   progress bar on stderr, each bad line reported by number (the first
//!   [`MAX_REPORTED_BAD_LINES`]), and a timed [`ImportReport`] whose
//!   [`ImportReport::print`] prints the summary and gives the exit status
//!   ([`EXIT_SKIPPED`] when lines were skipped);
//! - [`export`]: every live document of one snapshot as JSON lines, with a
//!   progress bar, read by [`Export`] a chunk at a time (which the hub's
//!   export of a running database streams too).
//!
//! Its own crate, not a module of the engine: the engine (`outpost`) must not
//! depend on terminal crates (indicatif, clap), and neither shell should
//! depend on the other. Each caller maps the errors to its own error type.
#![forbid(unsafe_code)]

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressDrawTarget, ProgressStyle};
use outpost::db::{Database, Snapshot, UnreadableRecord};
use outpost::jsonl::{ImportError, ImportEvent, ImportSummary, doc_to_json};
use outpost::store::PageStore;

pub use indicatif::ProgressBar;
pub use outpost::jsonl::ImportOptions;

/// Exit status of an `import` that finished but skipped bad lines.
pub const EXIT_SKIPPED: u8 = 3;

/// At most this many bad import lines are reported one by one.
pub const MAX_REPORTED_BAD_LINES: u64 = 100;

/// Documents read per engine call by [`export`].
pub const PAGE: usize = 1000;

/// Stored bytes after which an export's engine call ends its page early
/// ([`Export::next_chunk`]).
pub const CHUNK_BYTES: usize = 1 << 20;

/// The options of `import` that both command lines take (flattened into
/// their `import` subcommand).
#[derive(clap::Args, Debug, Clone)]
pub struct ImportArgs {
    /// Documents per atomic commit.
    #[arg(long, default_value_t = 1000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch: u64,
    /// Stop at the first bad line instead of skipping it.
    #[arg(long)]
    pub strict: bool,
    /// Collection for lines that do not name one in `@metadata.@collection`.
    #[arg(long, value_name = "NAME")]
    pub collection: Option<String>,
}

impl ImportArgs {
    /// The import options, once `--collection` is checked to be a valid
    /// collection name.
    pub fn options(self) -> Result<ImportOptions, outpost::InputError> {
        if let Some(c) = &self.collection {
            outpost::doc::validate_collection(c)?;
        }
        Ok(ImportOptions {
            batch_docs: usize::try_from(self.batch).unwrap_or(usize::MAX),
            strict: self.strict,
            collection: self.collection,
            ..ImportOptions::default()
        })
    }
}

/// An input to import: a file or standard input.
pub struct Input {
    /// What to read.
    pub reader: Box<dyn Read>,
    /// Its size in bytes, when known (a file), for the progress bar.
    pub len: Option<u64>,
}

/// Opens `file` for reading, or standard input when it is `-`. The caller
/// names the error (`open {file}`).
pub fn open_input(file: &str) -> io::Result<Input> {
    if file == "-" {
        return Ok(Input {
            reader: Box::new(io::stdin().lock()),
            len: None,
        });
    }
    let f = File::open(file)?;
    let len = f.metadata().ok().map(|m| m.len());
    Ok(Input {
        reader: Box::new(f),
        len,
    })
}

/// Creates `file` for writing, or standard output when it is absent or `-`;
/// with the name to report (`stdout` or the path). The caller names the error
/// (`create {file}`).
pub fn create_output(file: Option<&str>) -> io::Result<(Box<dyn Write>, String)> {
    match file {
        None | Some("-") => Ok((Box::new(io::stdout().lock()), "stdout".into())),
        Some(path) => Ok((Box::new(File::create(path)?), path.to_string())),
    }
}

/// A progress bar on stderr, hidden when stderr is not a terminal.
/// `total`: bytes (`bytes`) or documents expected, when known.
pub fn progress(total: Option<u64>, bytes: bool) -> ProgressBar {
    let pb = match total {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    if !io::stderr().is_terminal() {
        pb.set_draw_target(ProgressDrawTarget::hidden());
        return pb;
    }
    let template = match (total.is_some(), bytes) {
        (true, true) => {
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta}) {msg}"
        }
        (false, true) => "{spinner} [{elapsed_precise}] {bytes} ({bytes_per_sec}) {msg}",
        (true, false) => {
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, {eta}) {msg}"
        }
        (false, false) => "{spinner} [{elapsed_precise}] {pos} ({per_sec}) {msg}",
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style);
    }
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// What an import did (the engine's counters) and how long it took. Shown as
/// the counters, the time and the rate in documents per second.
#[derive(Debug, Default, Clone)]
pub struct ImportReport {
    /// Lines read, documents written, batches, bad lines, bytes.
    pub counts: ImportSummary,
    /// Time taken.
    pub elapsed: Duration,
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.counts.imported as f64 / secs
        } else {
            0.0
        };
        write!(f, "{}; {secs:.2} s ({rate:.0} docs/s)", self.counts)
    }
}

impl ImportReport {
    /// Prints the summary on stdout and, when lines were skipped, a warning
    /// on stderr. Returns the exit status: success, or [`EXIT_SKIPPED`].
    pub fn print(&self) -> ExitCode {
        println!("{self}");
        if self.counts.bad == 0 {
            return ExitCode::SUCCESS;
        }
        eprintln!(
            "warning: {} lines were skipped (see above); exit status {EXIT_SKIPPED}",
            self.counts.bad
        );
        ExitCode::from(EXIT_SKIPPED)
    }
}

/// Imports JSON lines from `input` into `db` with
/// [`outpost::jsonl::import`] (bounded memory, atomic batches), showing a
/// progress bar. Bad lines are reported on stderr with their number and
/// skipped (or, with `strict`, end the import); `counts.bad` says how many.
/// When the import stops early, its summary is printed on stderr
/// (`import stopped: ...`) before the error is returned.
pub async fn import<S: PageStore>(
    db: &Database<S>,
    input: Input,
    opts: &ImportOptions,
) -> Result<ImportReport, ImportError> {
    let started = Instant::now();
    let pb = progress(input.len, true);
    let reader = BufReader::with_capacity(1 << 16, input.reader);
    let (counts, result) = outpost::jsonl::import(db, reader, opts, |ev| match ev {
        ImportEvent::Progress { bytes } => pb.set_position(bytes),
        ImportEvent::BadLine {
            line,
            message,
            code,
            count,
        } => {
            if count <= MAX_REPORTED_BAD_LINES {
                pb.suspend(|| eprintln!("line {line}: {message} ({code}); skipped"));
            } else if count == MAX_REPORTED_BAD_LINES + 1 {
                pb.suspend(|| eprintln!("more bad lines: not shown one by one; see the summary"));
            }
        }
    })
    .await;
    pb.finish_and_clear();
    let report = ImportReport {
        counts,
        elapsed: started.elapsed(),
    };
    match result {
        Ok(()) => Ok(report),
        Err(e) => {
            eprintln!("import stopped: {report}");
            Err(e)
        }
    }
}

/// Why an [`export`] failed.
#[derive(Debug)]
pub enum ExportError {
    /// Reading the database failed.
    Read(outpost::Error),
    /// Writing the output failed.
    Write(io::Error),
}

/// Exports every live document of `db` whose id starts with `prefix` as JSON
/// lines to `w`, from one consistent snapshot whatever writes happen
/// meanwhile, showing a progress bar. Returns how many were written.
///
/// A stored record that does not decode is skipped (the export completes
/// with every readable document) and named in a warning on stderr, with the
/// command that sets it aside: `repair` (e.g. `outpost repair DIR`).
pub async fn export<S: PageStore>(
    db: &Database<S>,
    prefix: &str,
    w: impl Write,
    repair: &str,
) -> Result<u64, ExportError> {
    let mut export = Export::new(db, prefix);
    let pb = progress(export.total(), false);
    let mut out = BufWriter::with_capacity(1 << 16, w);
    let mut chunk = Vec::new();
    while export
        .next_chunk(&mut chunk)
        .await
        .map_err(ExportError::Read)?
    {
        out.write_all(&chunk).map_err(ExportError::Write)?;
        chunk.clear();
        pb.set_position(export.written());
    }
    out.flush().map_err(ExportError::Write)?;
    pb.finish_and_clear();
    for r in export.skipped().await {
        eprintln!("warning: {}", unreadable_warning(&r, repair));
    }
    Ok(export.written())
}

/// The warning for a record an export skipped.
pub fn unreadable_warning(r: &UnreadableRecord, repair: &str) -> String {
    let etag = r.etag.map_or_else(|| "unknown".into(), |e| e.to_string());
    format!(
        "skipped unreadable record {:?} (etag {etag}, {} bytes): {}; list and set such \
         records aside with `{repair}`",
        r.key, r.bytes, r.error
    )
}

/// An export in progress: the live documents of one snapshot whose id
/// starts with a prefix, handed out as JSON lines a chunk at a time (what
/// [`export`] writes to a file and the hub's `POST /admin/export` streams
/// to its client).
pub struct Export<'a, S: PageStore> {
    db: &'a Database<S>,
    snap: Snapshot<S>,
    prefix: String,
    after: Option<String>,
    done: bool,
    written: u64,
}

impl<'a, S: PageStore> Export<'a, S> {
    /// Starts an export of `db`'s documents whose id starts with `prefix`
    /// (case-insensitive; `""`: all), from the last committed state.
    pub fn new(db: &'a Database<S>, prefix: &str) -> Export<'a, S> {
        Export {
            db,
            snap: db.snapshot(),
            prefix: prefix.to_string(),
            after: None,
            done: false,
            written: 0,
        }
    }

    /// How many documents the export will write, when known (all of them:
    /// the snapshot's count of live documents; with a prefix, unknown).
    pub fn total(&self) -> Option<u64> {
        self.prefix.is_empty().then(|| self.snap.count())
    }

    /// The etag of the last commit the export's snapshot holds.
    pub fn last_etag(&self) -> u64 {
        self.snap.last_etag()
    }

    /// Documents written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends the next documents (tombstones left out) to `out` as JSON
    /// lines: at most [`PAGE`] per call, fewer once their stored records
    /// reach [`CHUNK_BYTES`] (so a chunk's memory follows that budget,
    /// whatever the documents' sizes). `Ok(false)`: the export is over and
    /// nothing was appended.
    pub async fn next_chunk(&mut self, out: &mut Vec<u8>) -> Result<bool, outpost::Error> {
        if self.done {
            return Ok(false);
        }
        let page = self
            .snap
            .scan_within(&self.prefix, self.after.as_deref(), PAGE, CHUNK_BYTES)
            .await?;
        for doc in &page {
            out.extend_from_slice(doc_to_json(doc).to_string().as_bytes());
            out.push(b'\n');
            self.written += 1;
        }
        self.done = page.is_empty();
        if let Some(last) = page.last() {
            self.after = Some(last.id.clone());
        }
        Ok(!self.done)
    }

    /// The records the export left out because they do not decode: those
    /// the database knows of (it remembers every one a read met, see
    /// [`Database::unreadable_seen`]) whose id is in the export's range,
    /// which its scan passed over; located by etag where it can.
    pub async fn skipped(&self) -> Vec<UnreadableRecord> {
        let seen = match self.db.unreadable_located().await {
            Ok(s) => s,
            Err(_) => self.db.unreadable_seen(),
        };
        let range = String::from_utf8_lossy(&outpost::doc::id_key(&self.prefix)).into_owned();
        seen.into_iter()
            .filter(|r| r.key.starts_with(&range))
            .collect()
    }
}
