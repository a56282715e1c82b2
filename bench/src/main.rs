//! `outpost-bench`: durable document writes, Outpost against SQLite and redb,
//! on the same disk in one run.
//!
//! Cases (each on a fresh database in a temporary directory):
//! - `N` concurrent writers (default 1, 8, 64, 256): each writer stores ~1 KiB
//!   JSON documents one at a time and awaits its own durable acknowledgement
//!   before the next. Ids come from one shared counter (`bench/000000000123`),
//!   time-ordered as applications make them. Outpost: tokio tasks sharing one
//!   `Database` over a `FileStore` (group commit, fsync), each storing with
//!   `Database::put_json`. SQLite (`sqlite_case.rs`): one thread and
//!   connection per writer, `journal_mode=WAL`, `synchronous=FULL`, one
//!   document per transaction. redb (`redb_case.rs`): one thread per writer
//!   sharing one `redb::Database`, one write transaction per document committed
//!   with redb's default durability (`Immediate`: synced); `begin_write`
//!   serializes the writers.
//! - `bulk`: one writer, 1,000 documents per transaction (an Outpost `Batch` of
//!   `put_json`, an SQLite transaction, a redb write transaction).
//!
//! Every engine gets the same input, as an application that holds JSON text
//! would give it: the document's id and JSON text (`make_body(n).to_string()`),
//! made by the writer per document before that document's latency timer starts.
//!
//! Prints docs/s, p50/p99 acknowledgement latency, CPU µs per durable document
//! (the process's user + system CPU time over the case's timed region, from
//! `/proc/self/stat`, divided by the documents written; it includes making the
//! JSON texts, the same work for every engine, and Outpost's WAL writer
//! thread), fsyncs per 1,000 documents (Outpost, from the file store's
//! counters) and the Outpost/SQLite and Outpost/redb ratios, as a Markdown
//! table ready for `docs/benchmarks.md`.
#![forbid(unsafe_code)]

use std::cell::Cell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

mod machine;
mod redb_case;
mod sqlite_case;

use clap::{Parser, ValueEnum};
use machine::{clock_ticks, process_cpu_secs};
use outpost::db::{Batch, Database, OpenOptions, PutOptions};
use outpost::store::file::{FileStore, FileStoreOptions, FileStoreStats};
#[cfg(test)]
use serde_json::{Value, json};

/// Documents per transaction in the bulk case.
const BULK: u64 = 1000;

/// Durable-write benchmark: Outpost (file store, group commit) against SQLite
/// (WAL, synchronous=FULL) and redb (synced commits), same disk, same
/// concurrency, same JSON text in.
#[derive(Parser, Debug)]
#[command(
    name = "outpost-bench",
    after_help = "\
Examples:
  cargo run --release -p outpost-bench
  cargo run --release -p outpost-bench -- --docs 100000 --cases 64,256
  cargo run --release -p outpost-bench -- --dir /mnt/nvme/tmp --engines outpost"
)]
struct Args {
    /// Documents written per case and engine.
    #[arg(long, default_value_t = 50_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    docs: u64,
    /// Time limit per case and engine, in seconds: a run that has not written
    /// --docs documents by then stops early (its rate stays exact; the table
    /// says how many documents it wrote).
    #[arg(long, default_value_t = 8.0, value_name = "S")]
    max_seconds: f64,
    /// Directory under which the temporary databases are created (removed
    /// afterwards). Use the disk you want to measure.
    #[arg(long, default_value = ".", value_name = "DIR")]
    dir: PathBuf,
    /// Cases to run, comma-separated: numbers of concurrent writers, and `bulk`.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64,256,bulk",
          value_parser = parse_case, value_name = "LIST")]
    cases: Vec<Case>,
    /// Engines to run, comma-separated: `outpost`, `sqlite`, `redb`.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "outpost,sqlite,redb",
        value_name = "LIST"
    )]
    engines: Vec<Engine>,
    /// Outpost's pipelined commit: a transaction of more operations hands
    /// its finished pages to the WAL writer every N operations
    /// (`FileStoreOptions::stage_after_ops`; 0 turns it off, for an A/B).
    #[arg(long, value_name = "N")]
    stage_after_ops: Option<usize>,
    /// Outpost's lone commits written in the caller's thread
    /// (`FileStoreOptions::inline_commit`, default true; false hands every
    /// commit to the WAL writer thread, for an A/B).
    #[arg(long, value_name = "BOOL")]
    inline_commit: Option<bool>,
    /// Outpost's checkpoint threshold in MiB of WAL
    /// (`FileStoreOptions::checkpoint_wal_bytes`; default: the store's).
    #[arg(long, value_name = "MIB")]
    checkpoint_mib: Option<u64>,
}

impl Args {
    /// The file store's options with this run's settings.
    fn store_options(&self) -> FileStoreOptions {
        let mut opts = FileStoreOptions::default();
        if let Some(n) = self.stage_after_ops {
            opts.stage_after_ops = n;
        }
        if let Some(b) = self.inline_commit {
            opts.inline_commit = b;
        }
        if let Some(m) = self.checkpoint_mib {
            opts.checkpoint_wal_bytes = m << 20;
        }
        opts
    }
}

/// An engine under test, in the table's column order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Engine {
    Outpost,
    Sqlite,
    Redb,
}

impl Engine {
    const ALL: [Engine; 3] = [Engine::Outpost, Engine::Sqlite, Engine::Redb];

    /// The name in the table.
    fn title(self) -> &'static str {
        match self {
            Engine::Outpost => "Outpost",
            Engine::Sqlite => "SQLite",
            Engine::Redb => "redb",
        }
    }
}

/// One benchmark case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    /// This many concurrent writers, one document per durable commit each.
    Writers(usize),
    /// One writer, [`BULK`] documents per transaction.
    Bulk,
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Case::Writers(1) => write!(f, "1 writer"),
            Case::Writers(n) => write!(f, "{n} writers"),
            Case::Bulk => write!(f, "bulk, {BULK} docs/txn"),
        }
    }
}

fn parse_case(s: &str) -> Result<Case, String> {
    match s.trim() {
        "bulk" => Ok(Case::Bulk),
        t => match t.parse::<usize>() {
            Ok(n) if (1..=10_000).contains(&n) => Ok(Case::Writers(n)),
            _ => Err(format!(
                "{t:?} is not a case: use a number of writers (1-10000) or `bulk`"
            )),
        },
    }
}

/// What one engine did in one case.
struct Measured {
    docs: u64,
    elapsed: Duration,
    /// The process's CPU time over the run (all threads), seconds, where
    /// `/proc/self/stat` could be read.
    cpu_secs: Option<f64>,
    /// Acknowledgement latencies (per document, or per transaction in bulk), µs, sorted.
    latencies_us: Vec<u64>,
    /// fsync calls during the run, when the engine reports them.
    fsyncs: Option<u64>,
    /// The file store's counters over the run (Outpost only).
    store: Option<FileStoreStats>,
}

impl Measured {
    fn docs_per_sec(&self) -> f64 {
        self.docs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    fn percentile_ms(&self, p: f64) -> f64 {
        let v = &self.latencies_us;
        if v.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1] as f64 / 1000.0
    }
    fn cpu_us_per_doc(&self) -> Option<f64> {
        self.cpu_secs.map(|c| c * 1e6 / self.docs.max(1) as f64)
    }
    fn fsyncs_per_1k(&self) -> Option<f64> {
        self.fsyncs
            .map(|f| f as f64 * 1000.0 / self.docs.max(1) as f64)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The free text of every document, sized so the serialized document is
/// close to 1,024 bytes (no character of it needs escaping in JSON).
const NOTE: &str = "Patient seen at home; vitals taken twice, five minutes apart, \
    seated, after rest. No acute distress. Medication list reviewed with the patient \
    and caregiver; no changes. Follow-up visit planned in two weeks, sooner if \
    symptoms return. Lab orders sent; results to be reviewed at the next visit. \
    Caregiver instructed on warning signs and when to call. \
    Home is tidy and safe; stairs have rails; the patient walks unaided. Diet and \
    sleep discussed; fluid intake to increase. Next of kin informed of the plan. \
    Blood pressure cuff checked against the clinic's reference. ";

/// A ~1 KiB JSON document, like a clinical observation an app would store
/// ([`doc_text`] writes its serialization directly).
#[cfg(test)]
fn make_body(n: u64) -> Value {
    json!({
        "type": "observation",
        "patient": format!("patients/dr-7/{:06}", n % 1_000_000),
        "seq": n,
        "recorded_by": "dr-7",
        "status": "final",
        "code": {"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"},
        "value": 60 + n % 40,
        "unit": "/min",
        "effective": "2026-11-22T10:36:00Z",
        "device": {"id": "devices/bp-cuff-0042", "model": "Omron HEM-7361T", "firmware": "1.4.2"},
        "location": {"clinic": "boston", "room": "home visit", "lat": 42.3601, "lon": -71.0589},
        "tags": ["vitals", "home-visit", "routine"],
        "note": NOTE,
    })
}

fn bench_id(n: u64) -> String {
    format!("bench/{n:012}")
}

/// Pushes `t0.elapsed()` in µs.
fn record(lat: &mut Vec<u64>, t0: Instant) {
    lat.push(u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX));
}

/// Document `n` as its writer holds it: its id and its JSON text, the
/// compact serialization of `make_body` (keys in order), written
/// directly as a client that received it would hold it, so that what is
/// measured is the engines and not the making of a `Value`.
fn doc_text(n: u64) -> (String, String) {
    let text = format!(
        concat!(
            r#"{{"code":{{"code":"8867-4","display":"Heart rate","system":"http://loinc.org"}},"#,
            r#""device":{{"firmware":"1.4.2","id":"devices/bp-cuff-0042","model":"Omron HEM-7361T"}},"#,
            r#""effective":"2026-11-22T10:36:00Z","#,
            r#""location":{{"clinic":"boston","lat":42.3601,"lon":-71.0589,"room":"home visit"}},"#,
            r#""note":"{}","patient":"patients/dr-7/{:06}","recorded_by":"dr-7","seq":{},"#,
            r#""status":"final","tags":["vitals","home-visit","routine"],"type":"observation","#,
            r#""unit":"/min","value":{}}}"#
        ),
        NOTE,
        n % 1_000_000,
        n,
        60 + n % 40
    );
    (bench_id(n), text)
}

// ------------------------------------------------------------ CPU and time ---

/// The timed region of one case and engine: wall clock and process CPU time.
struct Span {
    wall: Instant,
    cpu: Option<f64>,
}

impl Span {
    fn start() -> Self {
        let cpu = process_cpu_secs();
        Span {
            wall: Instant::now(),
            cpu,
        }
    }

    /// Ends the region: `docs` documents written, with these acknowledgement
    /// latencies (µs).
    fn finish(self, docs: u64, mut latencies_us: Vec<u64>) -> Measured {
        let elapsed = self.wall.elapsed();
        let cpu_secs = self
            .cpu
            .zip(process_cpu_secs())
            .map(|(a, b)| (b - a).max(0.0));
        latencies_us.sort_unstable();
        Measured {
            docs,
            elapsed,
            cpu_secs,
            latencies_us,
            fsyncs: None,
            store: None,
        }
    }
}

/// CPU µs of making one document's JSON text ([`doc_text`]) alone, on one
/// thread: the share of every CPU µs/doc figure that is the benchmark's own
/// input, not the engine's work.
fn text_cpu_us() -> Option<f64> {
    const N: u64 = 100_000;
    let span = Span::start();
    for n in 0..N {
        std::hint::black_box(doc_text(n));
    }
    span.finish(N, Vec::new()).cpu_us_per_doc()
}

// ---------------------------------------------------------------- writers ---

/// The documents concurrent writers take, one at a time, from one counter.
struct Feed {
    next: AtomicU64,
    docs: u64,
}

impl Feed {
    fn new(docs: u64) -> Arc<Feed> {
        Arc::new(Feed {
            next: AtomicU64::new(0),
            docs,
        })
    }

    /// The next document's id and JSON text ([`doc_text`], made here: before
    /// the caller's latency timer starts, inside the CPU region), or `None`
    /// once all are taken or `deadline` has passed.
    fn take(&self, deadline: Instant) -> Option<(String, String)> {
        if Instant::now() >= deadline {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        (n < self.docs).then(|| doc_text(n))
    }
}

/// One writer thread of [`thread_writers`].
struct Writer {
    feed: Arc<Feed>,
    ready: Arc<Barrier>,
    waited: Cell<bool>,
    limit: Duration,
}

impl Writer {
    /// Waits (once) until every writer is ready and the clocks start.
    fn ready(&self) {
        if !self.waited.replace(true) {
            self.ready.wait();
        }
    }

    /// The writer's loop: documents from the feed until it runs out or the
    /// time limit passes, each stored by `write(id, json)` under its latency
    /// timer. Returns the latencies, µs.
    fn run<E: fmt::Display>(
        &self,
        mut write: impl FnMut(&str, &str) -> Result<(), E>,
    ) -> Result<Vec<u64>, String> {
        self.ready();
        let deadline = Instant::now() + self.limit;
        let mut lat = Vec::new();
        while let Some((id, json)) = self.feed.take(deadline) {
            let t0 = Instant::now();
            write(&id, &json).map_err(|e| e.to_string())?;
            record(&mut lat, t0);
        }
        Ok(lat)
    }
}

/// The writers case of the engines with one OS thread per writer (SQLite,
/// redb). Each thread runs `body`, which opens what it needs (untimed) and
/// then calls [`Writer::run`]; the timed region starts once every thread is
/// ready and ends when all have finished.
fn thread_writers<B>(
    writers: usize,
    docs: u64,
    limit: Duration,
    body: B,
) -> Result<Measured, BoxError>
where
    B: Fn(&Writer) -> Result<Vec<u64>, String> + Send + Sync + 'static,
{
    let feed = Feed::new(docs);
    let ready = Arc::new(Barrier::new(writers + 1));
    let body = Arc::new(body);
    let mut threads = Vec::with_capacity(writers);
    for _ in 0..writers {
        let w = Writer {
            feed: Arc::clone(&feed),
            ready: Arc::clone(&ready),
            waited: Cell::new(false),
            limit,
        };
        let body = Arc::clone(&body);
        threads.push(
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let r = body(&w);
                    // A writer that failed before its loop still lets the others start.
                    w.ready();
                    r
                })?,
        );
    }
    ready.wait();
    let span = Span::start();
    let mut latencies = Vec::with_capacity(docs.min(1 << 20) as usize);
    for t in threads {
        latencies.extend(t.join().map_err(|_| "a writer thread panicked")??);
    }
    let written = latencies.len() as u64;
    Ok(span.finish(written, latencies))
}

/// The bulk case: one writer, transactions of [`BULK`] documents until `docs`
/// or the time limit. Each transaction's ids and JSON texts are made before
/// its latency timer starts (inside the CPU region); `commit` stores them in
/// one durable transaction.
fn bulk_rounds<E: Into<BoxError>>(
    docs: u64,
    limit: Duration,
    mut commit: impl FnMut(Vec<(String, String)>) -> Result<(), E>,
) -> Result<Measured, BoxError> {
    let span = Span::start();
    let deadline = span.wall + limit;
    let mut latencies = Vec::new();
    let mut n = 0;
    while n < docs && Instant::now() < deadline {
        let end = (n + BULK).min(docs);
        let rows = (n..end).map(doc_text).collect();
        let t0 = Instant::now();
        commit(rows).map_err(Into::into)?;
        record(&mut latencies, t0);
        n = end;
    }
    Ok(span.finish(n, latencies))
}

// ---------------------------------------------------------------- Outpost ---

fn outpost_case(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    case: Case,
    docs: u64,
    limit: Duration,
    opts: FileStoreOptions,
) -> Result<Measured, BoxError> {
    let db = rt.block_on(async {
        let store = FileStore::open(dir, opts)?;
        Ok::<_, BoxError>(Database::open(store, OpenOptions::default()).await?)
    })?;
    let before = db.store().stats();
    let mut m = match case {
        Case::Writers(writers) => {
            let feed = Feed::new(docs);
            let span = Span::start();
            let deadline = span.wall + limit;
            let tasks: Vec<_> = (0..writers)
                .map(|_| {
                    let (db, feed) = (db.clone(), Arc::clone(&feed));
                    rt.spawn(async move {
                        let mut lat = Vec::new();
                        while let Some((id, json)) = feed.take(deadline) {
                            let t0 = Instant::now();
                            db.put_json(&id, json, PutOptions::default()).await?;
                            record(&mut lat, t0);
                        }
                        Ok::<_, outpost::Error>(lat)
                    })
                })
                .collect();
            let latencies = rt.block_on(async {
                let mut all = Vec::with_capacity(docs.min(1 << 20) as usize);
                for t in tasks {
                    all.extend(t.await??);
                }
                Ok::<_, BoxError>(all)
            })?;
            let written = latencies.len() as u64;
            span.finish(written, latencies)
        }
        Case::Bulk => bulk_rounds(docs, limit, |rows| {
            let mut batch = Batch::new();
            for (id, json) in rows {
                batch.put_json(id, json, PutOptions::default());
            }
            rt.block_on(db.commit(batch)).map(drop)
        })?,
    };
    let after = db.store().stats();
    let store = FileStoreStats {
        fsyncs: after.fsyncs - before.fsyncs,
        groups: after.groups - before.groups,
        commits: after.commits - before.commits,
        wal_bytes_written: after.wal_bytes_written - before.wal_bytes_written,
        checkpoints: after.checkpoints - before.checkpoints,
        staged_frames: after.staged_frames - before.staged_frames,
        staged_kept: after.staged_kept - before.staged_kept,
        inline_commits: after.inline_commits - before.inline_commits,
    };
    let count = rt.block_on(async {
        let count = db.count().await?;
        db.close().await?;
        Ok::<_, outpost::Error>(count)
    })?;
    if count != m.docs {
        return Err(format!("outpost: wrote {} documents but counted {count}", m.docs).into());
    }
    m.fsyncs = Some(store.fsyncs);
    m.store = Some(store);
    Ok(m)
}

// ------------------------------------------------------------------ report ---

/// Removes the benchmark's scratch directory when dropped (also on error).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fmt_rate(x: f64) -> String {
    let n = x.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A table row's cells for one engine: docs/s, p50 ms, p99 ms, CPU µs/doc,
/// fsyncs/1k docs.
fn cells(m: Option<&Measured>) -> [String; 5] {
    match m {
        None => std::array::from_fn(|_| "–".into()),
        Some(m) => [
            fmt_rate(m.docs_per_sec()),
            format!("{:.2}", m.percentile_ms(50.0)),
            format!("{:.2}", m.percentile_ms(99.0)),
            m.cpu_us_per_doc()
                .map_or_else(|| "n/a".into(), |c| format!("{c:.1}")),
            m.fsyncs_per_1k()
                .map_or_else(|| "n/a".into(), |f| format!("{f:.1}")),
        ],
    }
}

/// Outpost's throughput over another engine's, as a table cell.
fn ratio(o: Option<&Measured>, other: Option<&Measured>) -> String {
    match (o, other) {
        (Some(o), Some(p)) => format!("{:.1}×", o.docs_per_sec() / p.docs_per_sec()),
        _ => "–".into(),
    }
}

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)?;
    let base = std::fs::canonicalize(&args.dir)?;
    let scratch = Scratch(base.join(format!(".outpost-bench-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0)?;
    // One worker thread: the engine applies transactions one at a time anyway,
    // and the file store's WAL writer thread (write + fdatasync) gets the other
    // core of these 2-core machines. Measured here: 64 writers went from ~39k to
    // ~54k docs/s against the default of one worker per core.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;

    let info = machine::machine_info(&base, "directory");
    if !(args.max_seconds > 0.0 && args.max_seconds.is_finite()) {
        return Err("--max-seconds must be a positive number".into());
    }
    let limit = Duration::from_secs_f64(args.max_seconds);
    // Asked once here (it runs `getconf`), not inside a timed region.
    let ticks = clock_ticks();
    let text_us = text_cpu_us();
    eprintln!(
        "outpost-bench: {} documents per case and engine, at most {} s each",
        args.docs, args.max_seconds
    );
    for (k, v) in &info {
        eprintln!("  {k}: {v}");
    }
    let total = Instant::now();
    let mut rows = Vec::new();
    for &case in &args.cases {
        let tag = match case {
            Case::Writers(n) => n.to_string(),
            Case::Bulk => "bulk".into(),
        };
        let docs = args.docs;
        let mut ms: [Option<Measured>; 3] = [None, None, None];
        for (slot, engine) in ms.iter_mut().zip(Engine::ALL) {
            if !args.engines.contains(&engine) {
                continue;
            }
            let name = engine.title();
            let d = scratch.0.join(format!("{}-{tag}", name.to_lowercase()));
            std::fs::create_dir_all(&d)?;
            let m = match engine {
                Engine::Outpost => outpost_case(&rt, &d, case, docs, limit, args.store_options())?,
                Engine::Sqlite => sqlite_case::run(&d, case, docs, limit)?,
                Engine::Redb => redb_case::run(&d, case, docs, limit)?,
            };
            eprintln!(
                "  {name:<7} {case:>22}: {} docs in {:.2} s",
                m.docs,
                m.elapsed.as_secs_f64()
            );
            let _ = std::fs::remove_dir_all(&d);
            *slot = Some(m);
        }
        rows.push((case, ms));
    }

    println!();
    println!(
        "Durable ~1 KiB JSON document writes: {} documents per case and engine, or as many as \
         fit in {} s ({} s in all).",
        args.docs,
        args.max_seconds,
        total.elapsed().as_secs()
    );
    for (k, v) in &info {
        println!("- {k}: {v}");
    }
    println!();
    println!(
        "| case | Outpost docs/s | p50 ms | p99 ms | CPU µs/doc | fsyncs/1k docs \
         | SQLite docs/s | p50 ms | p99 ms | CPU µs/doc | fsyncs/1k docs \
         | redb docs/s | p50 ms | p99 ms | CPU µs/doc | Outpost/SQLite | Outpost/redb |"
    );
    println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for (case, [o, s, r]) in &rows {
        let [or, op50, op99, oc, of] = cells(o.as_ref());
        let [sr, sp50, sp99, sc, sf] = cells(s.as_ref());
        let [rr, rp50, rp99, rc, _] = cells(r.as_ref());
        println!(
            "| {case} | {or} | {op50} | {op99} | {oc} | {of} | {sr} | {sp50} | {sp99} | {sc} | {sf} \
             | {rr} | {rp50} | {rp99} | {rc} | {} | {} |",
            ratio(o.as_ref(), s.as_ref()),
            ratio(o.as_ref(), r.as_ref())
        );
    }
    println!();
    println!(
        "Every engine is given each document's id and JSON text, made by the writer before \
         the document's latency timer starts."
    );
    println!("Latency: per document acknowledgement (bulk: per 1,000-document transaction).");
    println!(
        "CPU µs/doc: the process's CPU time (user + system, all threads, from /proc/self/stat \
         in {:.0} ms ticks) over each case's timed region, divided by the documents written. \
         It includes making the documents' JSON texts (the same work for every engine) and, \
         for Outpost, the file store's WAL writer thread.",
        1000.0 / ticks as f64
    );
    if let Some(t) = text_us {
        println!(
            "Making one document's JSON text alone (`doc_text`, one thread, \
             measured before the cases): {t:.1} µs of CPU, part of every CPU µs/doc figure."
        );
    }
    if rows.iter().any(|(_, [o, _, _])| o.is_some()) {
        println!();
        println!("Outpost file-store counters over each run:");
        println!();
        println!(
            "| case | docs | commits | groups (WAL writes) | docs/group | fsyncs | WAL KiB/doc | checkpoints | pages staged | kept by the commit | written in the caller's thread |"
        );
        println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
        for (case, [o, _, _]) in &rows {
            if let Some((m, st)) = o.as_ref().and_then(|m| m.store.map(|st| (m, st))) {
                println!(
                    "| {case} | {} | {} | {} | {:.1} | {} | {:.1} | {} | {} | {} | {} |",
                    m.docs,
                    st.commits,
                    st.groups,
                    m.docs as f64 / st.groups.max(1) as f64,
                    st.fsyncs,
                    st.wal_bytes_written as f64 / 1024.0 / m.docs.max(1) as f64,
                    st.checkpoints,
                    st.staged_frames,
                    st.staged_kept,
                    st.inline_commits
                );
            }
        }
        println!();
    }
    for (case, ms) in &rows {
        for (engine, m) in Engine::ALL.iter().zip(ms) {
            if let Some(m) = m.as_ref().filter(|m| m.docs < args.docs) {
                println!(
                    "{}, {case}: stopped by the time limit after {} documents in {:.1} s.",
                    engine.title(),
                    m.docs,
                    m.elapsed.as_secs_f64()
                );
            }
        }
    }
    if let Some((_, [Some(o), s, _])) = rows.iter().find(|(c, _)| *c == Case::Writers(64)) {
        let rate = o.docs_per_sec();
        let verdict = if rate >= 100_000.0 { "met" } else { "MISSED" };
        println!(
            "Target 1, >= 100,000 docs/s with 64 writers: {verdict} ({} docs/s, {:.0}% of target).",
            fmt_rate(rate),
            rate / 1000.0
        );
        if let Some(s) = s {
            let ratio = rate / s.docs_per_sec();
            let verdict = if ratio >= 10.0 { "met" } else { "MISSED" };
            println!("Target 2, >= 10x SQLite with 64 writers: {verdict} ({ratio:.1}x).");
        }
        match o.cpu_us_per_doc() {
            Some(cpu) => {
                let verdict = if cpu <= 10.0 { "met" } else { "MISSED" };
                let text = text_us.map_or_else(String::new, |t| {
                    format!(
                        "; {:.1} without the {t:.1} µs of making the JSON text",
                        cpu - t
                    )
                });
                println!(
                    "Target 3, at 64 writers at most 10 µs of CPU per document: {verdict} \
                     ({cpu:.1} µs/doc{text})."
                );
            }
            None => println!(
                "Target 3, at 64 writers at most 10 µs of CPU per document: not measured \
                 (no /proc/self/stat)."
            ),
        }
    }
    drop(scratch);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cases() {
        assert_eq!(parse_case("64"), Ok(Case::Writers(64)));
        assert_eq!(parse_case("bulk"), Ok(Case::Bulk));
        assert!(parse_case("0").is_err());
        assert!(parse_case("many").is_err());
    }

    #[test]
    fn percentiles_and_rates() {
        let m = Measured {
            docs: 100,
            elapsed: Duration::from_millis(500),
            cpu_secs: Some(0.25),
            latencies_us: (1..=100).map(|i| i * 1000).collect(),
            fsyncs: Some(25),
            store: None,
        };
        assert_eq!(m.percentile_ms(50.0), 50.0);
        assert_eq!(m.percentile_ms(99.0), 99.0);
        assert_eq!(m.docs_per_sec(), 200.0);
        assert_eq!(m.fsyncs_per_1k(), Some(250.0));
        assert_eq!(m.cpu_us_per_doc(), Some(2500.0));
        assert_eq!(fmt_rate(1_234_567.4), "1,234,567");
        assert_eq!(fmt_rate(999.0), "999");
    }

    #[test]
    fn the_text_is_the_documents_serialization() {
        for n in [0, 7, 123, 999_999, 1_000_001, u64::MAX / 3] {
            assert_eq!(doc_text(n).1, serde_json::to_string(&make_body(n)).unwrap());
        }
    }

    #[test]
    fn documents_are_about_one_kib() {
        let len = make_body(123).to_string().len();
        assert!((990..=1060).contains(&len), "{len} bytes");
    }

    #[test]
    fn reads_cpu_ticks_from_proc_stat() {
        // A command name with spaces and a ")" in it; utime 1500, stime 250.
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 1234 0 0 0 1500 250 0 0 20 0 \
                    7 0 12345 123456789 2048 18446744073709551615";
        assert_eq!(machine::stat_cpu_ticks(stat), Some(1750));
        assert_eq!(machine::stat_cpu_ticks("4242 (short) S 1 2"), None);
        assert_eq!(machine::stat_cpu_ticks("no parenthesis"), None);
        // This process's own file parses, and its CPU time does not go back.
        if let Some(a) = process_cpu_secs() {
            let b = process_cpu_secs().unwrap_or(0.0);
            assert!(b >= a && a >= 0.0);
        }
    }

    #[test]
    fn documents_are_taken_once_until_the_deadline() {
        let feed = Feed::new(3);
        let later = Instant::now() + Duration::from_secs(60);
        let ids: Vec<String> = std::iter::from_fn(|| feed.take(later).map(|(id, _)| id)).collect();
        assert_eq!(
            ids,
            [
                "bench/000000000000",
                "bench/000000000001",
                "bench/000000000002"
            ]
        );
        let (_, json) = doc_text(7);
        assert_eq!(json, make_body(7).to_string());
        let feed = Feed::new(3);
        assert!(feed.take(Instant::now()).is_none());
    }
}
