//! `import` and `export`: JSON lines in and out of a hub database (with the
//! hub stopped: they take the database's lock).

use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Read, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use outpost::db::{Batch, PutOptions};

use crate::error::{HubError, Result};
use crate::state::DbHandle;
use outpost::jsonl::{ImportDoc, doc_to_json, parse_import_line};

/// At most this many bad lines are reported one by one.
const MAX_REPORTED_BAD_LINES: u64 = 100;

/// Documents read per engine call by `export`.
const PAGE: usize = 1000;

/// Options of one import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Documents per atomic commit.
    pub batch: usize,
    /// Stop at the first bad line instead of skipping it.
    pub strict: bool,
    /// Collection for lines that name none.
    pub collection: Option<String>,
}

/// What an import did.
#[derive(Debug, Default, Clone)]
pub struct ImportSummary {
    /// Lines read.
    pub lines: u64,
    /// Documents written.
    pub imported: u64,
    /// Commits made.
    pub batches: u64,
    /// Bad lines skipped.
    pub bad: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Time taken.
    pub elapsed: Duration,
}

impl std::fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.imported as f64 / secs
        } else {
            0.0
        };
        write!(
            f,
            "imported {} documents from {} lines ({} bytes) in {} batches; {} bad lines skipped; {secs:.2} s ({rate:.0} docs/s)",
            self.imported, self.lines, self.bytes, self.batches, self.bad
        )
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

struct Pending {
    line: u64,
    doc: ImportDoc,
}

/// Imports JSON lines from `input` (`total`: its size in bytes, if known)
/// into `db`, in atomic batches. Bad lines are reported on stderr with
/// their number and skipped (or, with `strict`, end the import).
pub async fn import(
    db: &DbHandle,
    input: Box<dyn Read>,
    total: Option<u64>,
    opts: &ImportOptions,
) -> Result<ImportSummary> {
    let started = Instant::now();
    let pb = progress(total, true);
    let mut reader = BufReader::with_capacity(1 << 16, input);
    let mut st = ImportSummary::default();
    let mut pending: Vec<Pending> = Vec::with_capacity(opts.batch.min(100_000));
    let mut buf = Vec::new();
    let result: Result<()> = async {
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| HubError::io("read the input", e))?;
            if n == 0 {
                break;
            }
            st.lines += 1;
            st.bytes += n as u64;
            pb.set_position(st.bytes);
            let parsed = match std::str::from_utf8(&buf) {
                Err(e) => Err((format!("not valid UTF-8: {e}"), "invalid_json")),
                Ok(text) if text.trim().is_empty() => continue,
                Ok(text) => parse_import_line(text.trim()),
            };
            match parsed {
                Ok(mut doc) => {
                    if doc.collection.is_none() {
                        doc.collection.clone_from(&opts.collection);
                    }
                    pending.push(Pending {
                        line: st.lines,
                        doc,
                    });
                }
                Err((msg, code)) => {
                    let line = st.lines;
                    bad_line(&pb, &mut st, opts, line, &msg, code)?;
                }
            }
            if pending.len() >= opts.batch {
                commit(db, &pb, &mut pending, &mut st, opts).await?;
            }
        }
        commit(db, &pb, &mut pending, &mut st, opts).await
    }
    .await;
    pb.finish_and_clear();
    st.elapsed = started.elapsed();
    match result {
        Ok(()) => Ok(st),
        Err(e) => {
            eprintln!("import stopped: {st}");
            Err(e)
        }
    }
}

fn bad_line(
    pb: &ProgressBar,
    st: &mut ImportSummary,
    opts: &ImportOptions,
    line: u64,
    msg: &str,
    code: &str,
) -> Result<()> {
    if opts.strict {
        return Err(HubError::Other(format!(
            "line {line}: {msg} ({code}) (--strict: stopping; the documents of this batch were not written)"
        )));
    }
    st.bad += 1;
    if st.bad <= MAX_REPORTED_BAD_LINES {
        pb.suspend(|| eprintln!("line {line}: {msg} ({code}); skipped"));
    } else if st.bad == MAX_REPORTED_BAD_LINES + 1 {
        pb.suspend(|| eprintln!("more bad lines: not shown one by one; see the summary"));
    }
    Ok(())
}

fn batch_of(items: &[Pending]) -> Batch {
    let mut b = Batch::new();
    for p in items {
        b.put_with(
            &p.doc.id,
            p.doc.body.clone(),
            PutOptions {
                collection: p.doc.collection.clone(),
                ..PutOptions::default()
            },
        );
    }
    b
}

/// Commits the pending documents as one atomic batch; if the engine refuses
/// the batch for bad input, commits them one by one so the bad line can be
/// named and the others kept.
async fn commit(
    db: &DbHandle,
    pb: &ProgressBar,
    pending: &mut Vec<Pending>,
    st: &mut ImportSummary,
    opts: &ImportOptions,
) -> Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let db_err = |source| HubError::Database {
        database: db.name.clone(),
        source,
    };
    match db.db.commit(batch_of(pending)).await {
        Ok(_) => {
            st.imported += pending.len() as u64;
            st.batches += 1;
        }
        Err(outpost::Error::Input(_)) if !opts.strict => {
            for p in pending.iter() {
                match db.db.commit(batch_of(std::slice::from_ref(p))).await {
                    Ok(_) => {
                        st.imported += 1;
                        st.batches += 1;
                    }
                    Err(e @ outpost::Error::Input(_)) => {
                        bad_line(pb, st, opts, p.line, &e.to_string(), e.code())?;
                    }
                    Err(e) => return Err(db_err(e)),
                }
            }
        }
        Err(e) => {
            let first = pending.first().map_or(0, |p| p.line);
            let last = pending.last().map_or(0, |p| p.line);
            return Err(HubError::Other(format!(
                "database {}: the batch of lines {first}-{last} was not written: {e}",
                db.name
            )));
        }
    }
    pending.clear();
    Ok(())
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
