//! `import` and `export`: JSON lines in and out of a hub database (with the
//! hub stopped: they take the database's lock).

use std::io::{self, BufReader, BufWriter, IsTerminal, Read, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::error::{HubError, Result};
use crate::state::DbHandle;
use outpost::jsonl::{ImportEvent, doc_to_json};

/// At most this many bad lines are reported one by one.
const MAX_REPORTED_BAD_LINES: u64 = 100;

/// Documents read per engine call by `export`.
const PAGE: usize = 1000;

pub use outpost::jsonl::ImportOptions;

/// What an import did (the engine's counters) and how long it took.
#[derive(Debug, Default, Clone)]
pub struct ImportSummary {
    /// Lines read, documents written, batches, bad lines, bytes.
    pub counts: outpost::jsonl::ImportSummary,
    /// Time taken.
    pub elapsed: Duration,
}

impl std::fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.counts.imported as f64 / secs
        } else {
            0.0
        };
        write!(f, "{}; {secs:.2} s ({rate:.0} docs/s)", self.counts)
    }
}

/// A progress bar on stderr, hidden when stderr is not a terminal.
fn progress(total: Option<u64>, bytes: bool) -> ProgressBar {
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

/// Imports JSON lines from `input` (`total`: its size in bytes, if known)
/// into `db` with [`outpost::jsonl::import`] (bounded memory, atomic
/// batches). Bad lines are reported on stderr with their number and skipped
/// (or, with `strict`, end the import); `counts.bad` says how many.
pub async fn import(
    db: &DbHandle,
    input: Box<dyn Read>,
    total: Option<u64>,
    opts: &ImportOptions,
) -> Result<ImportSummary> {
    let started = Instant::now();
    let pb = progress(total, true);
    let reader = BufReader::with_capacity(1 << 16, input);
    let (counts, result) = outpost::jsonl::import(&db.db, reader, opts, |ev| match ev {
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
    let st = ImportSummary {
        counts,
        elapsed: started.elapsed(),
    };
    match result {
        Ok(()) => Ok(st),
        Err(e) => {
            eprintln!("import stopped: {st}");
            Err(HubError::Other(format!("database {}: {e}", db.name)))
        }
    }
}

/// Exports every live document of `db` (with an id starting with `prefix`)
/// as JSON lines, from one consistent snapshot. Returns the count.
pub async fn export<W: Write>(db: &DbHandle, prefix: &str, w: W) -> Result<u64> {
    let snap = db.db.snapshot();
    let total = prefix.is_empty().then(|| snap.count());
    let pb = progress(total, false);
    let mut out = BufWriter::with_capacity(1 << 16, w);
    let mut after: Option<String> = None;
    let mut n = 0u64;
    let write_err = |e| HubError::io("write the export", e);
    loop {
        let page = snap
            .scan(prefix, after.as_deref(), PAGE)
            .await
            .map_err(|source| HubError::Database {
                database: db.name.clone(),
                source,
            })?;
        for doc in &page {
            writeln!(out, "{}", doc_to_json(doc)).map_err(write_err)?;
        }
        n += page.len() as u64;
        pb.set_position(n);
        if page.len() < PAGE {
            break;
        }
        after = page.last().map(|d| d.id.clone());
    }
    out.flush().map_err(write_err)?;
    pb.finish_and_clear();
    Ok(n)
}
