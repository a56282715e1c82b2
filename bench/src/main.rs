//! `outpost-bench`: durable document writes, Outpost against SQLite, on the same
//! disk in one run.
//!
//! Cases (each on a fresh database in a temporary directory):
//! - `N` concurrent writers (default 1, 8, 64, 256): each writer stores ~1 KiB
//!   JSON documents one at a time and awaits its own durable acknowledgement
//!   before the next. Ids come from one shared counter (`bench/000000000123`),
//!   time-ordered as applications make them. Outpost: tokio tasks sharing one
//!   `Database` over a `FileStore` (group commit, fsync). SQLite: one thread and
//!   connection per writer, `journal_mode=WAL`, `synchronous=FULL`, one document
//!   per transaction.
//! - `bulk`: one writer, 1,000 documents per transaction (an Outpost `Batch`
//!   against an SQLite transaction).
//!
//! Prints docs/s, p50/p99 acknowledgement latency, fsyncs per 1,000 documents
//! (Outpost, from the file store's counters) and the Outpost/SQLite ratio, as a
//! Markdown table ready for `docs/benchmarks.md`.
#![forbid(unsafe_code)]

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

mod machine;

use clap::Parser;
use outpost::db::{Batch, Database, OpenOptions};
use outpost::store::file::{FileStore, FileStoreOptions, FileStoreStats};
use serde_json::{Value, json};

/// Documents per transaction in the bulk case.
const BULK: u64 = 1000;

/// Durable-write benchmark: Outpost (file store, group commit) against SQLite
/// (WAL, synchronous=FULL), same disk, same concurrency.
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
    /// Engines to run, comma-separated: `outpost`, `sqlite`.
    #[arg(long, value_delimiter = ',', default_value = "outpost,sqlite",
          value_parser = ["outpost", "sqlite"], value_name = "LIST")]
    engines: Vec<String>,
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
    fn fsyncs_per_1k(&self) -> Option<f64> {
        self.fsyncs
            .map(|f| f as f64 * 1000.0 / self.docs.max(1) as f64)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A ~1 KiB JSON document, like a clinical observation an app would store.
fn make_body(n: u64) -> Value {
    // Sized so the serialized document is close to 1,024 bytes.
    const NOTE: &str = "Patient seen at home; vitals taken twice, five minutes apart, \
        seated, after rest. No acute distress. Medication list reviewed with the patient \
        and caregiver; no changes. Follow-up visit planned in two weeks, sooner if \
        symptoms return. Lab orders sent; results to be reviewed at the next visit. \
        Caregiver instructed on warning signs and when to call. \
        Home is tidy and safe; stairs have rails; the patient walks unaided. Diet and \
        sleep discussed; fluid intake to increase. Next of kin informed of the plan. \
        Blood pressure cuff checked against the clinic's reference. ";
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

// ---------------------------------------------------------------- Outpost ---

async fn outpost_case(
    dir: &Path,
    case: Case,
    docs: u64,
    limit: Duration,
) -> Result<Measured, BoxError> {
    let store = FileStore::open(dir, FileStoreOptions::default())?;
    let db = Database::open(store, OpenOptions::default()).await?;
    let before = db.store().stats();
    let start = Instant::now();
    let deadline = start + limit;
    let mut latencies = Vec::with_capacity(docs.min(1 << 20) as usize);
    let mut written = 0;
    match case {
        Case::Writers(writers) => {
            let counter = Arc::new(AtomicU64::new(0));
            let mut tasks = Vec::with_capacity(writers);
            for _ in 0..writers {
                let db = db.clone();
                let counter = Arc::clone(&counter);
                tasks.push(tokio::spawn(async move {
                    let mut lat = Vec::new();
                    while Instant::now() < deadline {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        if n >= docs {
                            break;
                        }
                        let (id, body) = (bench_id(n), make_body(n));
                        let t0 = Instant::now();
                        db.put(&id, body).await?;
                        record(&mut lat, t0);
                    }
                    Ok::<_, outpost::Error>(lat)
                }));
            }
            for t in tasks {
                let lat = t.await??;
                written += lat.len() as u64;
                latencies.extend(lat);
            }
        }
        Case::Bulk => {
            let mut n = 0;
            while n < docs && Instant::now() < deadline {
                let mut batch = Batch::new();
                let end = (n + BULK).min(docs);
                for i in n..end {
                    batch.put(bench_id(i), make_body(i));
                }
                let t0 = Instant::now();
                db.commit(batch).await?;
                record(&mut latencies, t0);
                written += end - n;
                n = end;
            }
        }
    }
    let elapsed = start.elapsed();
    let after = db.store().stats();
    let store = FileStoreStats {
        fsyncs: after.fsyncs - before.fsyncs,
        groups: after.groups - before.groups,
        commits: after.commits - before.commits,
        wal_bytes_written: after.wal_bytes_written - before.wal_bytes_written,
        checkpoints: after.checkpoints - before.checkpoints,
    };
    let count = db.count().await?;
    db.close().await?;
    if count != written {
        return Err(format!("outpost: wrote {written} documents but counted {count}").into());
    }
    latencies.sort_unstable();
    Ok(Measured {
        docs: written,
        elapsed,
        latencies_us: latencies,
        fsyncs: Some(store.fsyncs),
        store: Some(store),
    })
}

// ----------------------------------------------------------------- SQLite ---

fn sqlite_connect(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(60))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode is {mode}, not wal"
        )));
    }
    // `synchronous` is per connection: set it on every one.
    conn.execute_batch("PRAGMA synchronous=FULL;")?;
    Ok(conn)
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

const INSERT: &str = "INSERT INTO docs(id, body) VALUES (?1, ?2)";

fn sqlite_case(dir: &Path, case: Case, docs: u64, limit: Duration) -> Result<Measured, BoxError> {
    let path = dir.join("bench.sqlite");
    let setup = sqlite_connect(&path)?;
    setup.execute_batch("CREATE TABLE docs(id TEXT PRIMARY KEY, body TEXT NOT NULL);")?;
    let mut latencies = Vec::with_capacity(docs.min(1 << 20) as usize);
    let start;
    match case {
        Case::Writers(writers) => {
            let counter = Arc::new(AtomicU64::new(0));
            // Everyone connects first; the clock starts when all are ready.
            let ready = Arc::new(Barrier::new(writers + 1));
            let mut threads = Vec::with_capacity(writers);
            for _ in 0..writers {
                let (counter, ready, path) =
                    (Arc::clone(&counter), Arc::clone(&ready), path.clone());
                threads.push(std::thread::Builder::new().stack_size(256 * 1024).spawn(
                    move || -> Result<Vec<u64>, String> {
                        let conn = sqlite_connect(&path);
                        ready.wait();
                        let deadline = Instant::now() + limit;
                        let conn = conn.map_err(|e| e.to_string())?;
                        let mut stmt = conn.prepare(INSERT).map_err(|e| e.to_string())?;
                        let mut lat = Vec::new();
                        while Instant::now() < deadline {
                            let n = counter.fetch_add(1, Ordering::Relaxed);
                            if n >= docs {
                                break;
                            }
                            let id = bench_id(n);
                            let body = make_body(n).to_string();
                            let t0 = Instant::now();
                            // Autocommit: one document per transaction.
                            loop {
                                match stmt.execute(rusqlite::params![id, body]) {
                                    Ok(_) => break,
                                    Err(e) if is_busy(&e) => continue,
                                    Err(e) => return Err(e.to_string()),
                                }
                            }
                            record(&mut lat, t0);
                        }
                        Ok(lat)
                    },
                )?);
            }
            ready.wait();
            start = Instant::now();
            for t in threads {
                let lat = t.join().map_err(|_| "an SQLite writer thread panicked")??;
                latencies.extend(lat);
            }
        }
        Case::Bulk => {
            let mut conn = setup;
            start = Instant::now();
            let deadline = start + limit;
            let mut n = 0;
            while n < docs && Instant::now() < deadline {
                let end = (n + BULK).min(docs);
                let rows: Vec<(String, String)> = (n..end)
                    .map(|i| (bench_id(i), make_body(i).to_string()))
                    .collect();
                let t0 = Instant::now();
                let tx =
                    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                {
                    let mut stmt = tx.prepare_cached(INSERT)?;
                    for (id, body) in &rows {
                        stmt.execute(rusqlite::params![id, body])?;
                    }
                }
                tx.commit()?;
                record(&mut latencies, t0);
                n = end;
            }
            let elapsed = start.elapsed();
            latencies.sort_unstable();
            return sqlite_result(&conn, n, elapsed, latencies);
        }
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    let written = latencies.len() as u64;
    sqlite_result(&setup, written, elapsed, latencies)
}

fn sqlite_result(
    conn: &rusqlite::Connection,
    docs: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
) -> Result<Measured, BoxError> {
    let count: i64 = conn.query_row("SELECT count(*) FROM docs", [], |r| r.get(0))?;
    if u64::try_from(count).ok() != Some(docs) {
        return Err(format!("sqlite: wrote {docs} documents but counted {count}").into());
    }
    Ok(Measured {
        docs,
        elapsed,
        latencies_us,
        fsyncs: None,
        store: None,
    })
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

fn cells(m: Option<&Measured>) -> [String; 4] {
    match m {
        None => ["–".into(), "–".into(), "–".into(), "–".into()],
        Some(m) => [
            fmt_rate(m.docs_per_sec()),
            format!("{:.2}", m.percentile_ms(50.0)),
            format!("{:.2}", m.percentile_ms(99.0)),
            m.fsyncs_per_1k()
                .map_or_else(|| "n/a".into(), |f| format!("{f:.1}")),
        ],
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
    let run_outpost = args.engines.iter().any(|e| e == "outpost");
    let run_sqlite = args.engines.iter().any(|e| e == "sqlite");

    let info = machine::machine_info(&base, "directory");
    if !(args.max_seconds > 0.0 && args.max_seconds.is_finite()) {
        return Err("--max-seconds must be a positive number".into());
    }
    let limit = Duration::from_secs_f64(args.max_seconds);
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
        let mut outpost = None;
        let mut sqlite = None;
        if run_outpost {
            let d = scratch.0.join(format!("outpost-{tag}"));
            std::fs::create_dir_all(&d)?;
            let m = rt.block_on(outpost_case(&d, case, docs, limit))?;
            eprintln!(
                "  outpost {case:>22}: {} docs in {:.2} s",
                m.docs,
                m.elapsed.as_secs_f64()
            );
            let _ = std::fs::remove_dir_all(&d);
            outpost = Some(m);
        }
        if run_sqlite {
            let d = scratch.0.join(format!("sqlite-{tag}"));
            std::fs::create_dir_all(&d)?;
            let m = sqlite_case(&d, case, docs, limit)?;
            eprintln!(
                "  sqlite  {case:>22}: {} docs in {:.2} s",
                m.docs,
                m.elapsed.as_secs_f64()
            );
            let _ = std::fs::remove_dir_all(&d);
            sqlite = Some(m);
        }
        rows.push((case, outpost, sqlite));
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
        "| case | Outpost docs/s | p50 ms | p99 ms | fsyncs/1k docs | SQLite docs/s | p50 ms | p99 ms | fsyncs/1k docs | Outpost/SQLite |"
    );
    println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for (case, o, s) in &rows {
        let [or, op50, op99, of] = cells(o.as_ref());
        let [sr, sp50, sp99, sf] = cells(s.as_ref());
        let ratio = match (o, s) {
            (Some(o), Some(s)) => format!("{:.1}×", o.docs_per_sec() / s.docs_per_sec()),
            _ => "–".into(),
        };
        println!(
            "| {case} | {or} | {op50} | {op99} | {of} | {sr} | {sp50} | {sp99} | {sf} | {ratio} |"
        );
    }
    println!();
    println!("Latency: per document acknowledgement (bulk: per 1,000-document transaction).");
    if rows.iter().any(|(_, o, _)| o.is_some()) {
        println!();
        println!("Outpost file-store counters over each run:");
        println!();
        println!(
            "| case | docs | commits | groups (WAL writes) | docs/group | fsyncs | WAL KiB/doc | checkpoints |"
        );
        println!("|---|--:|--:|--:|--:|--:|--:|--:|");
        for (case, o, _) in &rows {
            if let Some((m, st)) = o.as_ref().and_then(|m| m.store.map(|st| (m, st))) {
                println!(
                    "| {case} | {} | {} | {} | {:.1} | {} | {:.1} | {} |",
                    m.docs,
                    st.commits,
                    st.groups,
                    m.docs as f64 / st.groups.max(1) as f64,
                    st.fsyncs,
                    st.wal_bytes_written as f64 / 1024.0 / m.docs.max(1) as f64,
                    st.checkpoints
                );
            }
        }
        println!();
    }
    for (case, o, s) in &rows {
        for (name, m) in [("Outpost", o), ("SQLite", s)] {
            if let Some(m) = m.as_ref().filter(|m| m.docs < args.docs) {
                println!(
                    "{name}, {case}: stopped by the time limit after {} documents in {:.1} s.",
                    m.docs,
                    m.elapsed.as_secs_f64()
                );
            }
        }
    }
    if let Some((_, Some(o), s)) = rows.iter().find(|(c, _, _)| *c == Case::Writers(64)) {
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
            latencies_us: (1..=100).map(|i| i * 1000).collect(),
            fsyncs: Some(25),
            store: None,
        };
        assert_eq!(m.percentile_ms(50.0), 50.0);
        assert_eq!(m.percentile_ms(99.0), 99.0);
        assert_eq!(m.docs_per_sec(), 200.0);
        assert_eq!(m.fsyncs_per_1k(), Some(250.0));
        assert_eq!(fmt_rate(1_234_567.4), "1,234,567");
        assert_eq!(fmt_rate(999.0), "999");
    }

    #[test]
    fn documents_are_about_one_kib() {
        let len = make_body(123).to_string().len();
        assert!((990..=1060).contains(&len), "{len} bytes");
    }
}
