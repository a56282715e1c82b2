//! The `outpost-hub` command line: definitions (clap) and what each command does.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

pub use crate::cli_edge::{EdgeCommand, edge_table};
use crate::cli_edge::{edge, keygen};
use crate::config::{Config, DEFAULT_LISTEN, SERVING_FILE};
use crate::edit;
use crate::error::{HubError, Result};
use crate::hub_client::HttpUrl;
use crate::import_live::{self, ImportQuery};
use crate::state::DbHandle;
use crate::status;
use crate::transfer;
use crate::{server, tls};

/// Exit status of an `import` that finished but skipped bad lines.
pub use outpost_cmdline::EXIT_SKIPPED;

const MAIN_EXAMPLES: &str = "\
Examples:
  outpost-hub init                          # write a commented outpost-hub.toml
  outpost-hub init --demo                   # or a demo: database main, edges alice and bob
  outpost-hub serve                         # run the hub (Ctrl-C stops it cleanly)
  outpost-hub serve --dev-tls               # https:// and wss:// with a self-signed certificate
  outpost-hub edge add laptop-7 --read patients/dr-7/ --write patients/dr-7/
                                            # prints a one-time enrollment code for the edge
  outpost-hub edge list                     # keys, pending enrollments, revoked edges
  outpost-hub edge revoke laptop-7          # lost device: its sessions end at once,
                                            # it must erase what it holds on next contact
  outpost-hub edge status laptop-7          # purge receipts pending and received
  outpost-hub edge enroll laptop-7          # a new code for a replaced device
  outpost-hub keygen boston.key             # a key for this hub as an edge of another
  outpost-hub import patients.jsonl         # JSON lines in (the running hub takes them)
  outpost-hub export backup.jsonl
  outpost-hub status                        # ask the running hub
  outpost-hub audit verify                  # check the audit trail
  outpost-hub audit who notes/42            # who wrote this document's versions
  outpost-hub compact                       # remove the deletions every device has seen

The configuration file is taken from --config, else $OUTPOST_HUB_CONFIG, else
./outpost-hub.toml. A running hub re-reads it when it changes (and on SIGHUP):
edges added, removed or re-scoped take effect without a restart.
Logging: RUST_LOG (default `info`), e.g. RUST_LOG=outpost_hub=debug.";

/// The Outpost hub: the server that Outpost edges (browsers, laptops, other
/// hubs) replicate with over WebSocket. It decides what each edge may read
/// and write, and serves health, status and metrics over HTTP.
#[derive(Parser, Debug)]
#[command(name = "outpost-hub", version, after_help = MAIN_EXAMPLES)]
pub struct Cli {
    /// The configuration file.
    #[arg(
        long,
        short,
        global = true,
        env = "OUTPOST_HUB_CONFIG",
        default_value = "outpost-hub.toml",
        value_name = "FILE"
    )]
    pub config: PathBuf,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the hub: HTTP and WebSocket on the configured address.
    ///
    /// Serves /sync (edges' WebSocket), /healthz, /status, /metrics
    /// (Prometheus) and the demo site at /. Stops cleanly on Ctrl-C or
    /// SIGTERM (databases flushed and closed). The configuration file is
    /// watched: edge changes take effect live.
    #[command(after_help = "\
Examples:
  outpost-hub serve
  outpost-hub serve --listen 0.0.0.0:4000
  outpost-hub serve --dev-tls          # self-signed certificate for localhost
  outpost-hub serve --dev-tls --listen 0.0.0.0:4000   # and for this machine's names
  RUST_LOG=debug outpost-hub --config /etc/outpost/hub.toml serve")]
    Serve {
        /// Listen on this address instead of the configuration's `listen`
        /// (port 0 picks a free port; the log says which).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// Serve https:// and wss:// with a self-signed certificate for
        /// localhost and its loopback addresses, and for the listen address
        /// when it is another (this machine's host name and addresses when it
        /// is 0.0.0.0), created in the data directory if absent or made
        /// again when it lacks a name (prints how to trust it and where other
        /// machines reach the hub). Overrides [tls].
        #[arg(long)]
        dev_tls: bool,
    },

    /// Write a starter configuration file (never overwrites one).
    #[command(after_help = "\
Examples:
  outpost-hub init                     # commented starter: database main, no edges
  outpost-hub init --demo              # demo: edges alice / bob on notes/, demo site
  outpost-hub --config /etc/outpost/hub.toml init")]
    Init {
        /// Write the demo configuration: database `main`, demo edges `alice`
        /// and `bob` reading and writing `notes/`, each with a one-time
        /// enrollment code (printed, and written to enroll-codes.txt next to
        /// the configuration, mode 0600), and the demo site served at /.
        #[arg(long)]
        demo: bool,
    },

    /// Add, list, enroll, revoke or remove edges (a running hub picks
    /// changes up live).
    #[command(subcommand)]
    Edge(EdgeCommand),

    /// Certificate identities: purge expired certificates.
    #[command(subcommand)]
    Certs(crate::cli_certs::CertsCommand),

    /// Make a key file (ECDSA P-256) and print its public key.
    ///
    /// For this hub as an edge of another hub: set `key_file` in its
    /// `[[upstream]]` and register the printed key there (`outpost-hub edge add
    /// NAME --pubkey KEY`). The file (mode 0600) is the identity: keep it
    /// secret. Never overwrites a file.
    #[command(after_help = "\
Examples:
  outpost-hub keygen boston.key
  outpost-hub edge add boston --pubkey p256:04...   # on the upstream hub")]
    Keygen {
        /// The key file to write.
        file: PathBuf,
    },

    /// Import documents from JSON lines into a database.
    ///
    /// Each line is a JSON object: the document body, with its id in a string
    /// field "id" or in "@metadata": {"@id": ...}, and an optional
    /// "@metadata": {"@collection": ...}: the format of `export` and of the
    /// `outpost` tool. Documents are committed in atomic batches of at most
    /// --batch documents and 8 MiB. Bad lines are reported by number and
    /// skipped (--strict: stop). On a stopped hub it writes the database
    /// directly; while the hub runs, the lines are sent to the running hub
    /// (POST /admin/import, with --admin-token), which imports them as they
    /// arrive, edges connected meanwhile receiving the documents. Each batch
    /// is recorded in the audit trail: --by, the file, each document's line
    /// and the version written (`outpost-hub audit who ID` names them).
    #[command(after_help = "\
Examples:
  outpost-hub import scripts/sample.jsonl
  outpost-hub import --by ada@clinic restore.jsonl
  outpost-hub import --database main --batch 5000 --strict big.jsonl
  gunzip -c dump.jsonl.gz | outpost-hub import -
  OUTPOST_HUB_ADMIN_TOKEN=... outpost-hub import patients.jsonl   # hub running

Memory: a line longer than 16 MiB + 64 KiB is refused while it is read (never
held whole) and skipped to its newline; a line that would take more than
64 MiB once parsed is refused too; a batch holds at most --batch documents
and 8 MiB of lines. The import stays under about 400 MiB whatever the input.

Exit status: 0 every line imported; 3 the import finished but skipped bad
lines (the summary says how many, and \"INCOMPLETE\"); 1 an error stopped it
(batches committed before stay).")]
    Import {
        /// The JSON-lines file, or `-` for standard input.
        file: String,
        /// The database (may be omitted when the configuration has only one).
        #[command(flatten)]
        database: DatabaseArg,
        /// `--batch`, `--strict`, `--collection` (the `outpost` tool's `import` takes them too).
        #[command(flatten)]
        options: outpost_cmdline::ImportArgs,
        /// The admin token, when a running hub holds the database (`POST
        /// /admin/import`).
        #[command(flatten)]
        admin: AdminTokenArg,
        /// Who runs the import, recorded with each batch in the audit trail
        /// (`audit who` shows it); default: the USER (or LOGNAME) environment
        /// variable.
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
    },

    /// Export every live document of a database as JSON lines.
    ///
    /// The export is one consistent snapshot: the database as it was when
    /// the export began, whatever is written meanwhile. On a stopped hub it
    /// reads the database directly; while the hub runs, the running hub
    /// streams it (POST /admin/export, with --admin-token), edges and writes
    /// going on meanwhile.
    #[command(after_help = "\
Examples:
  outpost-hub export backup.jsonl
  outpost-hub export --database main --prefix notes/ notes.jsonl
  outpost-hub export | gzip > backup.jsonl.gz
  OUTPOST_HUB_ADMIN_TOKEN=... outpost-hub export backup.jsonl   (hub running)

A running hub answers the same request from anywhere that reaches it:
  curl -fsS -X POST -H \"Authorization: Bearer $TOKEN\" \\
       -d '{\"database\":\"main\"}' http://127.0.0.1:4000/admin/export > backup.jsonl
(curl says \"transfer closed\" and -f fails when the hub cut the export short.)

Exit status: 0 the export is whole; 1 it failed or was cut short (the
output then holds only the documents before the cut: do not keep it as a
backup).")]
    Export {
        /// Output file; standard output when absent or `-`.
        file: Option<String>,
        /// The database (may be omitted when the configuration has only one).
        #[command(flatten)]
        database: DatabaseArg,
        /// Only ids starting with this prefix.
        #[arg(long, default_value = "", value_name = "P")]
        prefix: String,
        /// For a running hub (the export is then streamed by it: `POST
        /// /admin/export`).
        #[command(flatten)]
        admin: AdminTokenArg,
    },

    /// Show the status of a running hub (GET /status).
    #[command(after_help = "\
Examples:
  outpost-hub status
  outpost-hub status --url http://10.0.0.5:4000
  outpost-hub status --url https://localhost:4000 --ca-cert hub-data/dev-tls-cert.pem
  outpost-hub status --json")]
    Status {
        /// The hub's address. Default: where the running hub of this
        /// configuration said it listens (`serving.json` in its data
        /// directory, written by `serve`: its --listen, port and --dev-tls
        /// included), else the configuration's `listen` (https when it has
        /// [tls]), else http://127.0.0.1:4000.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// Certificate (PEM) to trust for https://. Default: the one the
        /// running hub serves with, else the configuration's tls.cert, else
        /// the data directory's development certificate.
        #[arg(long, value_name = "FILE")]
        ca_cert: Option<PathBuf>,
        /// Print the JSON as the hub sent it.
        #[arg(long)]
        json: bool,
        /// The hub's admin token (`/status` needs it). Default: the demo
        /// configuration's public one when the configuration is the demo's.
        #[arg(
            long,
            value_name = "TOKEN",
            env = "OUTPOST_HUB_ADMIN_TOKEN",
            hide_env_values = true
        )]
        admin_token: Option<String>,
    },

    /// Verify, export or question the audit trail.
    ///
    /// Every database keeps an append-only, hash-chained audit trail written
    /// in the same commit as what it records: accepted pushes (who, which
    /// device, a manifest of ids, change vectors and body hashes), refused
    /// pushes with their reason, and edges enrolled, revoked or re-scoped by
    /// the configuration. See docs/audit.md. A stopped hub's databases are
    /// opened read-only; while the hub runs, the question is sent to it
    /// (`POST /admin/audit`, with the admin token) and it answers from one
    /// snapshot of the trail.
    #[command(subcommand)]
    Audit(AuditCommand),

    /// Purge a subject's data: the right to be forgotten.
    ///
    /// Removes the documents named by --id, --prefix or --field (their
    /// conflict versions, tombstones and index entries too) and erases
    /// their bytes from the data file and the WAL. On a stopped hub it works
    /// on the database directly; while the hub runs it is sent to it (POST
    /// /admin/purge, with --admin-token), and connected edges that held the
    /// documents reconnect at once to get their order. Their ids are retired:
    /// an edge that pushes them back is refused (`purged`), whatever it
    /// claims. Every edge that may hold them is told to erase them at its
    /// next session and answers with a signed receipt; `purge status`
    /// lists who still owes one. The audit trail keeps who asked, why, and
    /// hashes of what was removed, never the contents.
    ///
    /// Example: outpost-hub purge --field patientId=p-123 --by "dpo@clinic"
    /// --reason "GDPR request 2026-118"
    Purge(crate::cli_purge::PurgeCommand),

    /// Remove the tombstones (deletions) every device has acknowledged.
    ///
    /// A deleted document is kept as a tombstone so the deletion reaches
    /// every edge; once every device seen within the retention has
    /// acknowledged it, it can go. A device not seen for longer (default
    /// 30 days, `[compaction] retention_secs`) no longer holds compaction
    /// back: when it comes back it resyncs (the documents deleted meanwhile
    /// disappear from it, its own unsent writes are kept and pushed). The
    /// running hub also compacts by itself every `[compaction]
    /// interval_secs` (default one hour). On a stopped hub this works on
    /// the database directly; while the hub runs it is sent to it (POST
    /// /admin/compact, with --admin-token). Prints what it removed, the
    /// watermark, the device holding it back, the devices that expired and
    /// the tombstones left.
    #[command(after_help = "\
Examples:
  outpost-hub compact                              # hub stopped, or running (with --admin-token)
  outpost-hub compact --database main --retention 7d
  OUTPOST_HUB_ADMIN_TOKEN=... outpost-hub compact --url http://10.0.0.5:4000 --json")]
    Compact(crate::cli_compact::CompactArgs),

    /// The indexes of a database: list them, show one, rebuild one.
    ///
    /// Indexes are JavaScript modules named in the configuration
    /// (`[[database]] indexes = ["indexes/mortgage.mjs"]`, the same files a
    /// browser app imports): the running hub keeps them up to date after
    /// every commit and shows them in `outpost-hub status`. These commands
    /// work on a stopped hub's database.
    #[command(subcommand)]
    Index(crate::cli_index::IndexCommand),

    /// Set the admin token: who may read /status and /metrics and run /admin/*.
    ///
    /// A random token is printed once on standard output; only its SHA-256 is
    /// written to the configuration (`[admin] token_sha256`), replacing any
    /// previous one. A running hub takes it at once. The token lets its holder
    /// read /status and /metrics and run the /admin routes (export the
    /// documents, purge, compact): keep it secret. The demo configuration's
    /// public token is honoured only from the hub's own machine.
    #[command(after_help = "\
Examples:
  outpost-hub admin-token
  curl -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:4000/metrics")]
    AdminToken {
        /// Use this token instead of a random one (tests, demos).
        #[arg(long, value_name = "TOKEN")]
        token: Option<String>,
    },
}

/// `--admin-token`, for a command that a running hub answers.
#[derive(Args, Debug, Clone)]
pub struct AdminTokenArg {
    /// The admin token, for a running hub (the command is then sent to
    /// it). Default: the demo configuration's public one when the
    /// configuration is the demo's.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "OUTPOST_HUB_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
}

/// `--database`, shared by several commands.
#[derive(Args, Debug, Clone)]
pub struct DatabaseArg {
    /// The database, by name (may be omitted when the configuration has only one).
    #[arg(long, short, value_name = "DB")]
    pub database: Option<String>,
}

/// `audit` subcommands.
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the hash chain of each database's audit trail.
    ///
    /// Recomputes every entry's hash and its link to the previous one.
    /// Prints, per database, the count of entries verified and the chain's
    /// head hash (keep it elsewhere: a trail rebuilt from scratch by someone
    /// who can write the file would verify too, but end in another head).
    /// Exit status: 0 every chain verifies; 1 an entry is bad (named, with
    /// why: changed content, broken link, missing, or a damaged page).
    #[command(after_help = "\
Examples:
  outpost-hub audit verify             # every database of the configuration
  outpost-hub audit verify main")]
    Verify {
        /// Only this database (default: every database of the configuration).
        database: Option<String>,
        /// For a running hub.
        #[command(flatten)]
        admin: AdminTokenArg,
    },
    /// Write audit entries as JSON lines on standard output.
    ///
    /// One object per entry: database, seq, time (RFC 3339), time_ms, kind
    /// (push_accepted, push_refused, scope_change, purge_receipt, subject_purge), prev_hash,
    /// hash, and the record (see docs/audit.md).
    #[command(after_help = "\
Examples:
  outpost-hub audit export > audit.jsonl
  outpost-hub audit export --edge laptop-7
  outpost-hub audit export --id patients/dr-7/0001 --since 2026-12-01T00:00:00Z
  outpost-hub audit export main --since 1764547200000")]
    Export {
        /// The database (may be omitted when the configuration has only one).
        database: Option<String>,
        /// Only entries about this edge identity (its pushes, refusals,
        /// scope changes).
        #[arg(long, value_name = "NAME")]
        edge: Option<String>,
        /// Only entries about this document id (case-insensitive).
        #[arg(long, value_name = "ID")]
        id: Option<String>,
        /// Only entries written at or after this time: RFC 3339
        /// (2026-12-01T10:00:00Z, 2026-12-01) or milliseconds since the epoch.
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// For a running hub.
        #[command(flatten)]
        admin: AdminTokenArg,
    },
    /// Who wrote a document's versions, and with which key.
    ///
    /// Lists every accepted push that carried a version of the document
    /// (with --cv: only that version): identity, device, the push's upto,
    /// when, and the key ("none (token identity)" until edges have keys);
    /// every write with safety hub, operator's import and batch from this
    /// hub's upstream that wrote one. A version none of them names was
    /// written by the hub itself (a conflict resolution). Exit status 1
    /// when nothing is found.
    #[command(after_help = "\
Examples:
  outpost-hub audit who notes/42
  outpost-hub audit who notes/42 --cv 'A1B2...:5,C3D4...:2'
  outpost-hub audit who notes/42 --database main")]
    Who {
        /// The document id.
        id: String,
        /// Only this version (its change vector, as shown by export or the
        /// `outpost` tool).
        #[arg(long, value_name = "CHANGE_VECTOR")]
        cv: Option<String>,
        /// The database (may be omitted when the configuration has only one).
        #[command(flatten)]
        database: DatabaseArg,
        /// For a running hub.
        #[command(flatten)]
        admin: AdminTokenArg,
    },
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let path = cli.config.as_path();
    match cli.command {
        Command::Serve { listen, dev_tls } => {
            let config = Config::load(path)?;
            runtime()?.block_on(server::run(
                config,
                server::ServeOptions { listen, dev_tls },
            ))?;
        }
        Command::Init { demo } => init(path, demo)?,
        Command::Edge(cmd) => edge(path, cmd)?,
        Command::Certs(cmd) => crate::cli_certs::certs_command(path, cmd)?,
        Command::Keygen { file } => keygen(&file)?,
        Command::Import {
            file,
            database,
            options,
            admin,
            by,
        } => {
            let by = by
                .or_else(|| {
                    ["USER", "LOGNAME", "USERNAME"]
                        .iter()
                        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
                })
                .unwrap_or_else(|| crate::import_live::NOT_GIVEN.to_string());
            crate::import_live::check_label("--by", &by).map_err(HubError::Other)?;
            let source = if file == "-" {
                "standard input".to_string()
            } else {
                file.clone()
            };
            crate::import_live::check_label("the file name", &source).map_err(HubError::Other)?;
            let query = ImportQuery {
                database: String::new(),
                batch: Some(options.batch),
                strict: options.strict,
                collection: options.collection.clone(),
                by: Some(by.clone()),
                source: Some(source.clone()),
            };
            let mut opts = options
                .options()
                .map_err(|e| HubError::Other(format!("--collection: {e}")))?;
            opts.audit = Some(outpost::jsonl::ImportAudit {
                by,
                via: "outpost-hub import, the hub stopped".to_string(),
                source,
            });
            let config = Config::load(path)?;
            let name = pick_database(&config, database.database)?;
            let input = outpost_cmdline::open_input(&file)
                .map_err(|e| HubError::io(format!("open {file}"), e))?;
            let admin = config.admin_token_or_demo(admin.admin_token);
            let report = runtime()?.block_on(async {
                let db = match DbHandle::open(&name, &config.database_dir(&name)).await {
                    Ok(db) => db,
                    // A running hub holds it: that hub imports the lines.
                    Err(HubError::InUse { .. }) => {
                        let query = ImportQuery {
                            database: name.clone(),
                            ..query
                        };
                        return import_live::import_remote(
                            &config,
                            &name,
                            input,
                            &query,
                            admin.as_deref(),
                        )
                        .await;
                    }
                    Err(e) => return Err(e),
                };
                let r = transfer::import(&db, input, &opts).await;
                let closed = db.close().await;
                let s = r?;
                closed?;
                Ok::<_, HubError>(s)
            })?;
            return Ok(report.print());
        }
        Command::Export {
            file,
            database,
            prefix,
            admin,
        } => {
            let config = Config::load(path)?;
            let name = pick_database(&config, database.database)?;
            let dir = config.database_dir(&name);
            if !dir.join(outpost::store::file::DATA_FILE).exists() {
                return Err(HubError::Other(format!(
                    "database {name} has no data yet ({} does not exist)",
                    dir.display()
                )));
            }
            let (out, dest) = outpost_cmdline::create_output(file.as_deref()).map_err(|e| {
                HubError::io(format!("create {}", file.as_deref().unwrap_or("stdout")), e)
            })?;
            let admin = config.admin_token_or_demo(admin.admin_token);
            let n = runtime()?.block_on(async {
                let db = match DbHandle::open_read_only(&name, &dir).await {
                    Ok(db) => db,
                    // A running hub holds it: that hub streams the export.
                    Err(HubError::InUse { .. }) => {
                        return transfer::export_remote(
                            &config,
                            &name,
                            &prefix,
                            admin.as_deref(),
                            out,
                        )
                        .await;
                    }
                    Err(e) => return Err(e),
                };
                let r = transfer::export(&db, &prefix, out).await;
                let closed = db.close().await;
                let n = r?;
                closed?;
                Ok::<_, HubError>(n)
            })?;
            eprintln!("exported {n} documents of database {name} to {dest}");
        }
        Command::AdminToken { token } => admin_token(path, token)?,
        Command::Audit(cmd) => return audit(path, cmd),
        Command::Purge(cmd) => crate::cli_purge::run(path, cmd)?,
        Command::Compact(args) => crate::cli_compact::run(path, args)?,
        Command::Index(cmd) => crate::cli_index::run(path, cmd)?,
        Command::Status {
            url,
            ca_cert,
            json,
            admin_token,
        } => {
            let config = Config::load(path).ok();
            let serving = match (&url, &config) {
                (None, Some(c)) => serving(c),
                _ => None,
            };
            let url = match (url, &serving) {
                (Some(u), _) => HttpUrl::parse(&u)?,
                (None, Some((u, _))) => u.clone(),
                (None, None) => default_url(config.as_ref())?,
            };
            let serving_ca = serving.and_then(|(_, ca)| ca);
            let ca = ca_cert.or(serving_ca).or_else(|| {
                let c = config.as_ref()?;
                c.tls.as_ref().map(|t| t.cert.clone()).or_else(|| {
                    let dev = c.data_dir.join(tls::DEV_CERT_FILE);
                    dev.exists().then_some(dev)
                })
            });
            // How to start this hub: `scripts/run.sh` says how it does it.
            let start = std::env::var("OUTPOST_HUB_START_HINT")
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| format!("outpost-hub --config {} serve", path.display()));
            let admin = match &config {
                Some(c) => c.admin_token_or_demo(admin_token),
                None => admin_token,
            };
            let s = runtime()?.block_on(status::fetch_hinted(
                &url,
                ca.as_deref(),
                admin.as_deref(),
                &start,
            ))?;
            if json {
                let text = serde_json::to_string_pretty(&s).unwrap_or_else(|_| s.to_string());
                println!("{text}");
            } else {
                print!("{}", status::render(&url, &s));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `audit verify`, `audit export`, `audit who`: on a stopped hub's
/// databases, or asked of the running hub that holds one
/// (`crate::audit_live`).
fn audit(path: &Path, cmd: AuditCommand) -> Result<ExitCode> {
    use crate::audit_live;
    let config = Config::load(path)?;
    let rt = runtime()?;
    match cmd {
        AuditCommand::Verify { database, admin } => {
            let admin = config.admin_token_or_demo(admin.admin_token);
            let names = match database {
                Some(n) => vec![pick_database(&config, Some(n))?],
                None => config.databases.iter().map(|d| d.name.clone()).collect(),
            };
            let mut bad = false;
            for name in names {
                let v = rt.block_on(async {
                    let Some(db) = crate::audit::open_unless_held(&config, &name).await? else {
                        return audit_live::verify_remote(&config, &name, admin.as_deref()).await;
                    };
                    let r = crate::audit::verify(&db).await;
                    let closed = db.close().await;
                    let v = r?;
                    closed?;
                    Ok::<_, HubError>(v)
                })?;
                let line = crate::audit::render_verified(&v);
                if v.first_bad.is_some() {
                    bad = true;
                    eprintln!("{line}");
                } else {
                    println!("{line}");
                }
            }
            Ok(if bad {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        AuditCommand::Export {
            database,
            edge,
            id,
            since,
            admin,
        } => {
            let admin = config.admin_token_or_demo(admin.admin_token);
            let name = pick_database(&config, database)?;
            let since_ms = since
                .as_deref()
                .map(crate::audit::parse_since)
                .transpose()
                .map_err(HubError::Other)?;
            let filter = crate::audit::Filter { edge, id, since_ms };
            let n = rt.block_on(async {
                let out = io::BufWriter::new(io::stdout().lock());
                let Some(db) = crate::audit::open_unless_held(&config, &name).await? else {
                    return audit_live::export_remote(
                        &config,
                        &name,
                        &filter,
                        admin.as_deref(),
                        out,
                    )
                    .await;
                };
                let r = crate::audit::export(&db, &filter, out).await;
                let closed = db.close().await;
                let n = r?;
                closed?;
                Ok::<_, HubError>(n)
            })?;
            eprintln!("exported {n} audit entries of database {name}");
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Who {
            id,
            cv,
            database,
            admin,
        } => {
            let admin = config.admin_token_or_demo(admin.admin_token);
            let name = pick_database(&config, database.database)?;
            let parsed = cv
                .as_deref()
                .map(outpost::ChangeVector::parse_text)
                .transpose()
                .map_err(|e| HubError::Other(format!("--cv: {e}")))?;
            let found = rt.block_on(async {
                let Some(db) = crate::audit::open_unless_held(&config, &name).await? else {
                    return audit_live::who_remote(
                        &config,
                        &name,
                        &id,
                        cv.as_deref(),
                        admin.as_deref(),
                    )
                    .await;
                };
                let r = crate::audit::who(&db, &id, parsed.as_ref()).await;
                let closed = db.close().await;
                let found = r?;
                closed?;
                Ok::<_, HubError>(found)
            })?;
            let what = match &parsed {
                Some(c) => format!("version {} of {id:?}", c.to_text()),
                None => format!("{id:?}"),
            };
            if found.is_empty() {
                eprintln!(
                    "no accepted push, write with safety hub, import or upstream batch in database \
                     {name} wrote {what}: it was written by the hub itself (a conflict resolution; an \
                     import or a write with safety hub recorded before their versions were), came \
                     from an upstream before this hub recorded what it receives, or never existed"
                );
                return Ok(ExitCode::FAILURE);
            }
            let mut out = io::stdout().lock();
            let _ = writeln!(out, "{what} in database {name}:");
            for a in &found {
                let _ = write!(out, "{}", crate::audit::render_author(a));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("outpost-hub")
        .build()
        .map_err(|e| HubError::io("start the async runtime", e))
}

/// The database a command works on: the one named, or the only one.
pub(crate) fn pick_database(config: &Config, name: Option<String>) -> Result<String> {
    let names: Vec<&str> = config.databases.iter().map(|d| d.name.as_str()).collect();
    match name {
        Some(n) if config.database(&n).is_some() => Ok(n),
        Some(n) => Err(HubError::Other(format!(
            "no database named {n:?} in {} (databases: {})",
            config.path.display(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ))),
        None => match names.as_slice() {
            [only] => Ok((*only).to_string()),
            [] => Err(HubError::Other(format!(
                "{} defines no database: add a [[database]]",
                config.path.display()
            ))),
            many => Err(HubError::Other(format!(
                "several databases ({}): choose one with --database",
                many.join(", ")
            ))),
        },
    }
}

/// Where the hub of `config` runs, from the serving file `serve` keeps in
/// its data directory (`None` if absent, unreadable, or left by a process
/// that is gone): its URL and the certificate to trust.
pub fn serving(config: &Config) -> Option<(HttpUrl, Option<PathBuf>)> {
    let text = std::fs::read_to_string(config.data_dir.join(SERVING_FILE)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let pid = v["pid"].as_u64()?;
    let proc_dir = Path::new("/proc");
    if proc_dir.is_dir() && !proc_dir.join(pid.to_string()).exists() {
        return None;
    }
    let url = HttpUrl::parse(v["url"].as_str()?).ok()?;
    let ca = v["ca_cert"].as_str().map(PathBuf::from);
    Some((url, ca))
}

/// A command for a database that a running hub holds, sent to that hub
/// (`what`: "purge", "export"): where the hub listens and the certificate
/// to trust (its serving file), and the admin token to send; or the error
/// that says what is missing.
pub fn send_to_holder<'a>(
    config: &Config,
    name: &str,
    what: &str,
    admin: Option<&'a str>,
) -> Result<(HttpUrl, Option<PathBuf>, &'a str)> {
    let Some((url, ca)) = serving(config) else {
        return Err(HubError::Other(format!(
            "database {name} is locked, but no running hub of this configuration says where it \
             listens ({}): is another process holding it?",
            config.data_dir.join(SERVING_FILE).display()
        )));
    };
    let Some(token) = admin else {
        return Err(HubError::Other(format!(
            "the hub at {url} holds database {name}: the {what} is sent to it, which needs its \
             admin token (--admin-token or OUTPOST_HUB_ADMIN_TOKEN; `outpost-hub admin-token` sets \
             one), or stop the hub first"
        )));
    };
    Ok((url, ca, token))
}

fn default_url(config: Option<&Config>) -> Result<HttpUrl> {
    let Some(c) = config else {
        return HttpUrl::parse(&format!("http://{DEFAULT_LISTEN}"));
    };
    let mut addr = c.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let scheme = if c.tls.is_some() { "https" } else { "http" };
    HttpUrl::parse(&format!("{scheme}://{addr}"))
}

fn init(path: &Path, demo: bool) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| HubError::io(format!("create {}", dir.display()), e))?;
    }
    let codes = if demo {
        vec![
            ("alice", edit::generate_code()?),
            ("bob", edit::generate_code()?),
        ]
    } else {
        Vec::new()
    };
    let expires = crate::identity::now_s() + edit::DEFAULT_ENROLL_SECONDS;
    let text = if demo {
        let pairs: Vec<(&str, &str)> = codes.iter().map(|(n, c)| (*n, c.as_str())).collect();
        edit::demo_config(&pairs, expires)
    } else {
        edit::starter_config(false)
    };
    // Validate before writing (the templates are tested, but cheap to check).
    Config::parse(&text, path)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                HubError::Other(format!(
                    "{} already exists; not overwriting it (remove it first, or pass another --config)",
                    path.display()
                ))
            } else {
                HubError::io(format!("create {}", path.display()), e)
            }
        })?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| HubError::io(format!("write {}", path.display()), e))?;
    if demo {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let codes_path = dir.join(edit::DEMO_CODES_FILE);
        let mut listing = String::new();
        for (name, code) in &codes {
            listing.push_str(&format!("{name} {code}\n"));
        }
        crate::cli_edge::write_private(&codes_path, &listing)?;
        eprintln!(
            "wrote the demo configuration to {}: database main; edges alice and bob on notes/, each with a one-time enrollment code (valid 7 days, also in {}):",
            path.display(),
            codes_path.display()
        );
        print!("{listing}");
        eprintln!(
            "In the demo app, pick alice or bob and enter its code: the browser makes a key and enrolls it.\nStart the hub with `outpost-hub serve`."
        );
    } else {
        eprintln!(
            "wrote a starter configuration to {}: database main, no edges yet.\nAdd one with `outpost-hub edge add NAME --read PREFIX --write PREFIX`, then `outpost-hub serve`.",
            path.display()
        );
    }
    Ok(())
}

/// `admin-token`: writes `[admin] token_sha256` and prints the token.
fn admin_token(path: &Path, token: Option<String>) -> Result<()> {
    let (text, config) = read_config_text(path)?;
    let generated = token.is_none();
    let token = match token {
        Some(t) if t.is_empty() => {
            return Err(HubError::Other("--token must not be empty".into()));
        }
        Some(t) => t,
        None => edit::generate_token()?,
    };
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| HubError::config(&config.path, e.to_string()))?;
    let mut admin = toml_edit::Table::new();
    admin.insert(
        "token_sha256",
        toml_edit::value(crate::config::token_sha256_hex(&token)),
    );
    doc.insert("admin", toml_edit::Item::Table(admin));
    let updated = edit::replace_config(path, &doc.to_string())?;
    eprintln!(
        "set the admin token of {}: /status and /metrics answer requests carrying `Authorization: Bearer <token>`.",
        updated.path.display()
    );
    if generated {
        eprintln!("The token follows, shown this once: only its SHA-256 is stored.");
        println!("{token}");
    }
    Ok(())
}

/// The configuration at `path`, validated, with its text (for the commands
/// that edit it and keep its comments: `crate::edit`).
pub(crate) fn read_config_text(path: &Path) -> Result<(String, Config)> {
    let config = Config::load(path)?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| HubError::io(format!("read {}", path.display()), e))?;
    Ok((text, config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn edge_add_takes_several_prefixes() {
        let cli = Cli::try_parse_from([
            "outpost-hub",
            "edge",
            "add",
            "b",
            "--read",
            "x/",
            "y/",
            "--write",
            "x/",
            "-d",
            "main",
        ])
        .unwrap();
        match cli.command {
            Command::Edge(EdgeCommand::Add {
                read,
                write,
                database,
                ..
            }) => {
                assert_eq!(read, ["x/", "y/"]);
                assert_eq!(write, ["x/"]);
                assert_eq!(database.database.as_deref(), Some("main"));
            }
            other => panic!("{other:?}"),
        }
    }
}
