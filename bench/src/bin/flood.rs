//! `flood`: one edge floods the hub while honest edges sync; does the flood
//! hurt them?
//!
//! Each run starts a fresh `outpost-hub` release process on 127.0.0.1 with
//! the DEFAULT `[limits]` (only an `[admin]` token, so `/metrics` can be
//! read, and `Cards = "manual"` for the conflict flood are configured) and:
//! 1. connects one `writer` edge (writes `news/`) and K honest reader edges
//!    (read `news/`), native clients (`outpost_client::spawn_edge`) over
//!    in-memory databases, in this process;
//! 2. writes M documents in `news/` one at a time (20–50 ms apart) and
//!    measures, on this process's monotonic clock, local commit → each
//!    reader having applied it (`on_applied`), and local commit → the
//!    writer's `PushAck` (its `docs_pushed` counter);
//! 3. does that twice, each time on a fresh hub: a quiet phase, and a flood
//!    phase during which a child process of this same binary (`--flooder`)
//!    attacks as the identity `mallory` (writes `flood/`, reads nothing):
//!    - `push`: sessions pushing 500-document batches as fast as the hub
//!      answers;
//!    - `conflict`: new devices, one after another, each adding a concurrent
//!      version to a few ids in the `manual` collection `Cards` (the hub
//!      refuses beyond 32 versions: `too_many_versions`);
//!    - `conn`: unauthenticated connections opened in a loop from
//!      127.0.0.2 (its own peer address): half an HTTP header then a stall,
//!      WebSockets that never say `Hello`, a first message of 64 KiB + 1;
//!    - `noack`: sessions that never acknowledge nor read anything.
//!
//! The flooder is a separate process so that its CPU is scheduled against
//! the hub and the honest clients by the kernel, as a remote attacker's
//! would be only in the worst case (same machine), and not inside the honest
//! clients' tokio runtime. Results: `docs/benchmarks.md`, "Flooding edge".
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[path = "../edges.rs"]
mod edges;
#[path = "../machine.rs"]
mod machine;

/// jemalloc, for thousands of edge clients in one process (`edges::Jemalloc`).
#[global_allocator]
static ALLOCATOR: edges::Jemalloc = edges::Jemalloc;

use clap::Parser;
use edges::{client_options, cpu_secs, open_memory_db, wait_live};
use outpost::db::Database;
use outpost::store::MemoryStore;
use outpost_client::{SyncHandle, spawn_edge};
use outpost_testkit::edge_toml;
use outpost_testkit::hostile::{Answer, Hostile, doc, live, new_db_id};
use outpost_testkit::hub::{ADMIN_TOKEN_SHA256, HubProcess};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The honest edges' p99 under the flood may be at most this many times
/// the quiet p99.
const LIMIT_RATIO: f64 = 2.0;

/// Flooding-edge benchmark: honest edges' sync latency, quiet and while one
/// identity floods the hub with pushes, conflicts and connections.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "flood",
    after_help = "\
Examples:
  cargo build --release -p outpost-hub -p outpost-bench
  target/release/flood                        # K=20 readers, M=200 writes, every flood part
  target/release/flood --quick                # a short smoke run
  target/release/flood --parts push           # one flood part alone (push, conflict, conn, noack)
  target/release/flood --rounds 5             # 5 quiet/flood pairs, verdict on the median ratio
  target/release/flood --flood-first --edges 50 --writes 300 --push-sessions 8"
)]
struct Args {
    /// Honest reader edges (read `news/`).
    #[arg(long, default_value_t = 20, value_name = "K")]
    edges: usize,
    /// Documents the writer writes per phase.
    #[arg(long, default_value_t = 200, value_name = "M")]
    writes: usize,
    /// Flood parts, comma-separated: push, conflict, conn, noack.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "push,conflict,conn,noack"
    )]
    parts: Vec<String>,
    /// Flooder sessions pushing batches as fast as the hub answers.
    #[arg(long, default_value_t = 4, value_name = "N")]
    push_sessions: usize,
    /// Documents per flood batch.
    #[arg(long, default_value_t = 500, value_name = "N")]
    batch: usize,
    /// Ids in the `manual` collection the conflict flood piles versions on.
    #[arg(long, default_value_t = 4, value_name = "N")]
    conflict_ids: usize,
    /// Connection-flood loops (each keeps one unauthenticated connection
    /// open at a time, opening the next as soon as the hub drops it).
    #[arg(long, default_value_t = 400, value_name = "N")]
    conn_loops: usize,
    /// Sessions that never acknowledge nor read.
    #[arg(long, default_value_t = 4, value_name = "N")]
    noack_sessions: usize,
    /// Local address the connection flood binds to (its own peer address).
    #[arg(long, default_value = "127.0.0.2", value_name = "IP")]
    flood_addr: String,
    /// Read prefixes of `mallory` (default none; `flood/` makes the
    /// `noack` sessions receive the push flood they never acknowledge).
    #[arg(long, value_delimiter = ',', value_name = "PREFIX,...")]
    mallory_read: Vec<String>,
    /// Run the flood phase before the quiet one.
    #[arg(long)]
    flood_first: bool,
    /// Quiet/flood pairs to run (the order alternating); with more than
    /// one, the verdict is on the median of the pairs' p99 ratios (a single
    /// pair's quiet p99 varies several-fold on a shared machine).
    #[arg(long, default_value_t = 1, value_name = "R")]
    rounds: usize,
    /// Seconds the flood runs before the writes start.
    #[arg(long, default_value_t = 3, value_name = "S")]
    warmup: u64,
    /// A short smoke run: 5 readers, 30 writes, 1 s warm-up, 50 conn loops.
    #[arg(long)]
    quick: bool,
    /// The `outpost-hub` binary (default: next to this executable).
    #[arg(long, value_name = "PATH")]
    hub: Option<PathBuf>,
    /// Extra `[limits]` lines for both phases' hubs, `;`-separated (default
    /// none: the hub's defaults), e.g. `push_docs_per_second = 1000`.
    #[arg(long, value_name = "KEY = V;...")]
    limits: Option<String>,
    /// Directory for the hubs' temporary data (removed afterwards).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Longest wait for one write to reach every reader, in seconds.
    #[arg(long, default_value_t = 60, value_name = "S")]
    timeout: u64,
    /// Internal: run as the flooder against this `ws://` URL (until stdin
    /// closes), then print what it achieved as one JSON line.
    #[arg(long, hide = true, value_name = "URL")]
    flooder: Option<String>,
}

fn main() {
    let mut args = Args::parse();
    if args.quick {
        args.edges = args.edges.min(5);
        args.writes = args.writes.min(30);
        args.warmup = 1;
        args.conn_loops = args.conn_loops.min(50);
    }
    if let Some(url) = args.flooder.clone() {
        flooder_main(&args, &url);
        return;
    }
    let hub_bin = args.hub.clone().unwrap_or_else(|| sibling("outpost-hub"));
    if !hub_bin.is_file() {
        eprintln!(
            "error: no hub binary at {} (build it: cargo build --release -p outpost-hub, or pass --hub)",
            hub_bin.display()
        );
        std::process::exit(2);
    }
    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    println!("# Flooding-edge benchmark\n");
    println!(
        "machine: {} CPUs online, shared by the hub, this process (honest clients) and the flooder process",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "settings: {} readers, {} writes, flood parts {:?}, {} push sessions × {} docs, {} conflict ids, {} conn loops from {}, {} no-ack sessions, mallory reads {:?}, warm-up {} s, [limits] {}\n",
        args.edges,
        args.writes,
        args.parts,
        args.push_sessions,
        args.batch,
        args.conflict_ids,
        args.conn_loops,
        args.flood_addr,
        args.noack_sessions,
        args.mallory_read,
        args.warmup,
        args.limits.as_deref().unwrap_or("(defaults)")
    );
    let mut rounds = Vec::new();
    for round in 0..args.rounds.max(1) {
        if args.rounds > 1 {
            println!("# Round {}\n", round + 1);
        }
        let flood_first = args.flood_first != (round % 2 == 1);
        let order = if flood_first {
            [true, false]
        } else {
            [false, true]
        };
        let mut quiet = None;
        let mut flood = None;
        for f in order {
            let r = run_phase(&args, &hub_bin, &dir, f);
            r.print(if f { "flood" } else { "quiet" });
            if f {
                flood = Some(r);
            } else {
                quiet = Some(r);
            }
        }
        let (q, f) = (quiet.expect("quiet"), flood.expect("flood"));
        let ratio = result(&q, &f);
        rounds.push((q.lat_ms(0.99), f.lat_ms(0.99), ratio, flood_first));
    }
    if rounds.len() > 1 {
        println!("## Rounds\n");
        println!("| round | first | quiet p99 ms | flood p99 ms | p99 ratio |");
        println!("|--:|--|--:|--:|--:|");
        for (i, (q99, f99, ratio, ff)) in rounds.iter().enumerate() {
            let first = if *ff { "flood" } else { "quiet" };
            println!("| {} | {first} | {q99:.1} | {f99:.1} | {ratio:.2} |", i + 1);
        }
        let mut ratios: Vec<f64> = rounds.iter().map(|r| r.2).collect();
        ratios.sort_by(f64::total_cmp);
        let n = ratios.len();
        let median = if n % 2 == 1 {
            ratios[n / 2]
        } else {
            (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0
        };
        println!(
            "\nmedian p99 ratio over {n} rounds = {median:.2}: {} against {LIMIT_RATIO}×",
            if median <= LIMIT_RATIO {
                "PASS"
            } else {
                "FAIL"
            }
        );
    }
}

/// Prints one round's result table and verdict; returns its p99 ratio.
fn result(q: &Phase, f: &Phase) -> f64 {
    let (q50, q99) = (q.lat_ms(0.5), q.lat_ms(0.99));
    let (f50, f99) = (f.lat_ms(0.5), f.lat_ms(0.99));
    let ratio = f99 / q99.max(1e-3);
    println!("## Result\n");
    println!(
        "| phase | p50 ms | p99 ms | max ms | push ack p50 / p99 ms | hub CPU s | hub RSS MiB (end) |"
    );
    println!("|--|--:|--:|--:|--:|--:|--:|");
    for (name, r) in [("quiet", q), ("flood", f)] {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} / {:.1} | {:.1} | {:.1} |",
            r.lat_ms(0.5),
            r.lat_ms(0.99),
            r.lat_ms(1.0),
            pct(&r.push, 0.5) as f64 / 1e6,
            pct(&r.push, 0.99) as f64 / 1e6,
            r.hub_cpu,
            r.hub_rss_kib as f64 / 1024.0
        );
    }
    println!(
        "\nratio p99(flood)/p99(quiet) = {ratio:.2} (p50 ratio {:.2}): {} against {LIMIT_RATIO}×\n",
        f50 / q50.max(1e-3),
        if ratio <= LIMIT_RATIO { "PASS" } else { "FAIL" }
    );
    ratio
}

/// A binary next to this executable.
fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

// ---------------------------------------------------------------------------
// One phase (fresh hub)

struct Phase {
    /// Local commit → reader applied, ns, every (write, reader) pair.
    lat: Vec<u64>,
    /// Local commit → the writer's PushAck, ns, per write.
    push: Vec<u64>,
    /// Hub CPU seconds over the writes, wall seconds of the writes.
    hub_cpu: f64,
    wall: f64,
    /// This process's and the flooder's CPU seconds over the writes.
    bench_cpu: f64,
    flooder_cpu: f64,
    hub_rss_kib: u64,
    hub_rss_before_kib: u64,
    /// The flooder's own tally (JSON), and the hub's refusal counters.
    flooder: Option<serde_json::Value>,
    refused: BTreeMap<String, u64>,
    rejections: BTreeMap<String, u64>,
    docs_received: u64,
    /// Honest sessions opened beyond the first of each edge.
    reconnects: u64,
}

impl Phase {
    fn lat_ms(&self, q: f64) -> f64 {
        pct(&self.lat, q) as f64 / 1e6
    }

    fn print(&self, name: &str) {
        println!("## {name}\n");
        println!(
            "reader latency ({} pairs): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.lat.len(),
            self.lat_ms(0.5),
            self.lat_ms(0.9),
            self.lat_ms(0.99),
            self.lat_ms(1.0)
        );
        println!(
            "writer push → PushAck: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            pct(&self.push, 0.5) as f64 / 1e6,
            pct(&self.push, 0.99) as f64 / 1e6,
            pct(&self.push, 1.0) as f64 / 1e6
        );
        println!(
            "over {:.1} s of writes: hub CPU {:.1} s ({:.0} % of a core), bench {:.1} s, flooder {:.1} s; hub RSS {:.1} → {:.1} MiB",
            self.wall,
            self.hub_cpu,
            100.0 * self.hub_cpu / self.wall.max(1e-3),
            self.bench_cpu,
            self.flooder_cpu,
            self.hub_rss_before_kib as f64 / 1024.0,
            self.hub_rss_kib as f64 / 1024.0
        );
        println!("honest edges' reconnections: {}", self.reconnects);
        println!(
            "hub: documents received {}; refused connections {:?}; rejections {:?}",
            self.docs_received, self.refused, self.rejections
        );
        if let Some(f) = &self.flooder {
            println!("flooder: {f}");
        }
        println!();
    }
}

fn run_phase(args: &Args, hub_bin: &Path, dir: &Path, flood: bool) -> Phase {
    let timeout = Duration::from_secs(args.timeout);
    let tag = format!("{}-{}", std::process::id(), now_ns());
    let hub_dir = dir.join(format!(".outpost-flood-{tag}"));
    std::fs::create_dir_all(&hub_dir).expect("create the hub's directory");
    let port = outpost_testkit::hub::free_port();
    let mut cfg = format!(
        "listen = \"127.0.0.1:{port}\"\ndata_dir = \"data\"\n\n[dev]\ntokens = true\n\n[[database]]\nname = \"main\"\n[database.conflicts]\nCards = \"manual\"\n\n[admin]\ntoken_sha256 = \"{ADMIN_TOKEN_SHA256}\"\n\n"
    );
    if let Some(l) = &args.limits {
        cfg.push_str("[limits]\n");
        for line in l.split(';') {
            cfg.push_str(line.trim());
            cfg.push('\n');
        }
        cfg.push('\n');
    }
    cfg.push_str(&edge_toml("writer", "writer-token", &[], &["news/"]));
    let reads: Vec<&str> = args.mallory_read.iter().map(String::as_str).collect();
    cfg.push_str(&edge_toml("mallory", "mallory-token", &reads, &["flood/"]));
    for i in 0..args.edges {
        cfg.push_str(&edge_toml(
            &format!("r{i:03}"),
            &format!("reader-token-{i}"),
            &["news/"],
            &[],
        ));
    }
    std::fs::write(hub_dir.join("outpost-hub.toml"), cfg).expect("write the configuration");
    let hub = HubProcess::start(hub_bin, &hub_dir, &[]);
    let hub_pid = hub.pid().expect("hub pid");
    let url = format!("ws://127.0.0.1:{port}/sync");
    let name = if flood { "flood" } else { "quiet" };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let wrt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("writer")
        .enable_all()
        .build()
        .expect("writer runtime");
    let (wdb, writer) = wrt.block_on(async {
        let db = open_memory_db().await;
        let h = spawn_edge(
            db.clone(),
            client_options(&url, "writer", "writer-token"),
            None,
        );
        wait_live(&h, timeout, "writer").await;
        (db, h)
    });
    let first: Arc<Vec<AtomicU64>> = Arc::new((0..args.edges).map(|_| AtomicU64::new(0)).collect());
    let arrived = Arc::new(AtomicUsize::new(0));
    // Documents a reader must hold for the current write to count as
    // applied (every document written so far): a batch applied for another
    // reason (a reconnection's initial phase) does not stamp.
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let readers: Vec<(Database<MemoryStore>, SyncHandle)> = rt.block_on(async {
        let mut v = Vec::new();
        for i in 0..args.edges {
            let db = open_memory_db().await;
            let (f, a, want, mine) = (first.clone(), arrived.clone(), target.clone(), db.clone());
            let cb: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
                if mine.stats().documents >= want.load(Ordering::SeqCst)
                    && f[i]
                        .compare_exchange(0, now_ns(), Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                {
                    a.fetch_add(1, Ordering::SeqCst);
                }
            });
            let h = spawn_edge(
                db.clone(),
                client_options(&url, &format!("r{i:03}"), &format!("reader-token-{i}")),
                Some(cb),
            );
            v.push((db, h));
        }
        for (i, (_, h)) in v.iter().enumerate() {
            wait_live(h, timeout, &format!("r{i:03}")).await;
        }
        v
    });

    let mut flooder = flood.then(|| start_flooder(args, &url));
    if flood {
        eprintln!("[{name}] flooder started; warming up {} s", args.warmup);
        std::thread::sleep(Duration::from_secs(args.warmup));
    } else {
        std::thread::sleep(Duration::from_millis(500));
    }
    let rss_before = rss_kib(hub_pid);
    let me = std::process::id();
    let fpid = flooder.as_ref().map_or(0, Child::id);
    let (h0, b0, f0, t0) = (
        cpu_secs(hub_pid),
        cpu_secs(me),
        cpu_secs(fpid),
        Instant::now(),
    );
    eprintln!("[{name}] writing {} documents", args.writes);
    let mut lat = Vec::with_capacity(args.writes * args.edges);
    let mut push = Vec::with_capacity(args.writes);
    for k in 0..args.writes {
        for f in first.iter() {
            f.store(0, Ordering::SeqCst);
        }
        arrived.store(0, Ordering::SeqCst);
        target.store(k as u64 + 1, Ordering::SeqCst);
        let pushed = writer.counters().docs_pushed.load(Ordering::SeqCst);
        let body = json!({"title": format!("news {k}"), "n": k, "text": "x".repeat(200)});
        let t_send = now_ns();
        wrt.block_on(wdb.put(&format!("news/{k:06}"), body))
            .expect("writer put");
        let deadline = Instant::now() + timeout;
        let mut t_ack = 0;
        loop {
            if t_ack == 0 && writer.counters().docs_pushed.load(Ordering::SeqCst) > pushed {
                t_ack = now_ns();
            }
            if t_ack != 0 && arrived.load(Ordering::SeqCst) == args.edges {
                break;
            }
            if Instant::now() > deadline {
                panic!(
                    "[{name}] write {k}: after {timeout:?}, {} of {} readers applied it (pushed: {})",
                    arrived.load(Ordering::SeqCst),
                    args.edges,
                    t_ack != 0
                );
            }
            std::thread::sleep(Duration::from_micros(250));
        }
        push.push(t_ack - t_send);
        lat.extend(first.iter().map(|f| f.load(Ordering::SeqCst) - t_send));
        // 20–50 ms between writes.
        std::thread::sleep(Duration::from_millis(20 + (k as u64 * 7) % 31));
    }
    let wall = t0.elapsed().as_secs_f64();
    let (hub_cpu, bench_cpu, flooder_cpu) = (
        cpu_secs(hub_pid) - h0,
        cpu_secs(me) - b0,
        cpu_secs(fpid) - f0,
    );
    let hub_rss = rss_kib(hub_pid);
    let tally = flooder.take().and_then(stop_flooder);
    let (refused, rejections, docs_received) = metrics(&hub);
    let want = args.writes as u64;
    let short = readers
        .iter()
        .filter(|(db, _)| db.stats().documents != want)
        .count();
    assert_eq!(short, 0, "{short} readers do not hold all {want} documents");
    let reconnects: u64 = readers
        .iter()
        .map(|(_, h)| {
            h.counters()
                .sessions
                .load(Ordering::SeqCst)
                .saturating_sub(1)
        })
        .sum::<u64>()
        + writer
            .counters()
            .sessions
            .load(Ordering::SeqCst)
            .saturating_sub(1);
    rt.block_on(async {
        for (_, h) in readers {
            let _ = tokio::time::timeout(Duration::from_secs(5), h.stop()).await;
        }
    });
    wrt.block_on(writer.stop());
    drop(hub);
    let _ = std::fs::remove_dir_all(&hub_dir);
    Phase {
        lat,
        push,
        hub_cpu,
        wall,
        bench_cpu,
        flooder_cpu,
        hub_rss_kib: hub_rss,
        hub_rss_before_kib: rss_before,
        flooder: tally,
        refused,
        rejections,
        docs_received,
        reconnects,
    }
}

fn metrics(hub: &HubProcess) -> (BTreeMap<String, u64>, BTreeMap<String, u64>, u64) {
    let (_, body) = hub.get("/metrics");
    let mut refused = BTreeMap::new();
    let mut rej = BTreeMap::new();
    let mut received = 0;
    for l in body.lines() {
        let labelled = |prefix: &str| -> Option<(String, u64)> {
            let rest = l.strip_prefix(prefix)?;
            let (reason, n) = rest.split_once("\"} ")?;
            Some((reason.to_string(), n.trim().parse().ok()?))
        };
        if let Some((r, n)) = labelled("outpost_connections_refused_total{reason=\"") {
            refused.insert(r, n);
        } else if let Some((r, n)) = labelled("outpost_rejections_total{reason=\"") {
            rej.insert(r, n);
        } else if let Some(n) = l.strip_prefix("outpost_documents_received_total ") {
            received = n.trim().parse().unwrap_or(0);
        }
    }
    (refused, rej, received)
}

// ---------------------------------------------------------------------------
// The flooder (a child process of this binary)

fn start_flooder(args: &Args, url: &str) -> Child {
    let mut c = Command::new(std::env::current_exe().expect("this executable"));
    c.arg("--flooder")
        .arg(url)
        .arg("--parts")
        .arg(args.parts.join(","))
        .arg("--push-sessions")
        .arg(args.push_sessions.to_string())
        .arg("--batch")
        .arg(args.batch.to_string())
        .arg("--conflict-ids")
        .arg(args.conflict_ids.to_string())
        .arg("--conn-loops")
        .arg(args.conn_loops.to_string())
        .arg("--noack-sessions")
        .arg(args.noack_sessions.to_string())
        .arg("--flood-addr")
        .arg(&args.flood_addr)
        .arg("--warmup")
        .arg(args.warmup.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    c.spawn().expect("start the flooder process")
}

/// Closes the flooder's stdin (its signal to stop) and reads its tally.
fn stop_flooder(mut c: Child) -> Option<serde_json::Value> {
    drop(c.stdin.take());
    let out = c.stdout.take()?;
    let mut line = String::new();
    let _ = BufReader::new(out).read_line(&mut line);
    let _ = c.wait();
    serde_json::from_str(line.trim()).ok()
}

/// What the flooder achieved, by counter name.
#[derive(Default)]
struct Tally(std::sync::Mutex<BTreeMap<String, u64>>);

impl Tally {
    fn add(&self, k: impl Into<String>, n: u64) {
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(k.into())
            .or_default() += n;
    }
    /// Keeps the largest `n` seen under `k`.
    fn max(&self, k: impl Into<String>, n: u64) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let v = m.entry(k.into()).or_default();
        *v = (*v).max(n);
    }
    fn answer(&self, part: &str, a: &Answer) {
        let what = match a {
            Answer::PushAck { .. } => "ack".to_string(),
            Answer::PushRejected { code, .. } => format!("rejected {code}"),
            Answer::Error { code, .. } => format!("error {code}"),
            Answer::Closed(_) => "closed".into(),
            Answer::Timeout => "timeout".into(),
            Answer::Welcome(_) => "welcome".into(),
            _ => "other".into(),
        };
        self.add(format!("{part}: {what}"), 1);
    }
}

fn flooder_main(args: &Args, url: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("flooder runtime");
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let local: SocketAddr = format!("{}:0", args.flood_addr)
        .parse()
        .expect("--flood-addr: an IP address");
    let has = |p: &str| args.parts.iter().any(|x| x == p);
    let mut tasks = Vec::new();
    rt.block_on(async {
        if has("push") {
            for s in 0..args.push_sessions {
                tasks.push(tokio::spawn(push_loop(
                    url.to_string(),
                    s,
                    args.batch,
                    Duration::from_secs(args.warmup),
                    stop.clone(),
                    tally.clone(),
                )));
            }
        }
        if has("conflict") {
            tasks.push(tokio::spawn(conflict_loop(
                url.to_string(),
                args.conflict_ids,
                stop.clone(),
                tally.clone(),
            )));
        }
        if has("noack") {
            for _ in 0..args.noack_sessions {
                tasks.push(tokio::spawn(noack_loop(
                    url.to_string(),
                    stop.clone(),
                    tally.clone(),
                )));
            }
        }
        if has("conn") {
            for i in 0..args.conn_loops {
                tasks.push(tokio::spawn(conn_loop(
                    url.to_string(),
                    local,
                    i % 3,
                    stop.clone(),
                    tally.clone(),
                )));
            }
        }
    });
    // Until the parent closes stdin.
    let mut sink = String::new();
    while std::io::stdin().read_line(&mut sink).unwrap_or(0) > 0 {
        sink.clear();
    }
    stop.store(true, Ordering::SeqCst);
    for t in &tasks {
        t.abort();
    }
    let map = tally.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{}", serde_json::to_string(&map).unwrap_or_default());
    let _ = out.flush();
    rt.shutdown_timeout(Duration::from_secs(1));
}

/// A session of `mallory` (retrying while over a cap).
async fn session(url: &str, tally: &Tally, part: &str) -> Option<Hostile> {
    match Hostile::connect(url).await {
        Err(_) => {
            tally.add(format!("{part}: connect failed"), 1);
            None
        }
        Ok(mut h) => match h.hello("mallory", "mallory-token", new_db_id(), 0).await {
            Ok(_) => {
                tally.add(format!("{part}: sessions"), 1);
                Some(h)
            }
            Err(a) => {
                tally.answer(&format!("{part} hello"), &a);
                None
            }
        },
    }
}

/// Also tallies when its pushes were acknowledged: the last one (ms after
/// the flooder started) and how many after the warm-up (while the honest
/// writes run: a big commit then delays the honest pushes behind it).
async fn push_loop(
    url: String,
    s: usize,
    batch: usize,
    warmup: Duration,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    let started = Instant::now();
    let mut k = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let Some(mut h) = session(&url, &tally, "push").await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        h.timeout = Duration::from_secs(30);
        let mut etag = 0u64;
        loop {
            let docs = (0..batch)
                .map(|i| {
                    etag += 1;
                    let body = format!("{{\"k\":{k},\"i\":{i},\"pad\":\"{}\"}}", "f".repeat(64));
                    doc(
                        &format!("flood/p{s}/{k}/{i}"),
                        "",
                        live(&[(h.db_id, etag)], body.as_bytes()),
                    )
                })
                .collect();
            k += 1;
            let a = h.push(docs).await;
            tally.answer("push", &a);
            if let Answer::PushAck { applied, .. } = a {
                tally.add("push: docs applied", u64::from(applied));
                let at = started.elapsed();
                tally.max("push: last ack ms", at.as_millis() as u64);
                if at > warmup {
                    tally.add("push: acks after the warm-up", 1);
                }
            }
            if a.is_end() || matches!(a, Answer::Timeout) {
                break;
            }
        }
    }
}

async fn conflict_loop(url: String, ids: usize, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let mut k = 0usize;
    while !stop.load(Ordering::SeqCst) {
        // A new device per version: each is concurrent with the others.
        let Some(mut h) = session(&url, &tally, "conflict").await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let docs = (0..ids.max(1))
            .map(|i| {
                let body = format!("{{\"k\":{k}}}");
                doc(
                    &format!("flood/cards/hot{i}"),
                    "Cards",
                    live(&[(h.db_id, 1)], body.as_bytes()),
                )
            })
            .collect();
        k += 1;
        let a = h.push(docs).await;
        tally.answer("conflict", &a);
        h.close().await;
    }
}

async fn noack_loop(url: String, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    while !stop.load(Ordering::SeqCst) {
        let Some(mut h) = session(&url, &tally, "noack").await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        // Never acknowledge, never read: hold the socket until the hub ends it.
        h.auto_ack = false;
        let t = Instant::now();
        while !stop.load(Ordering::SeqCst) && t.elapsed() < Duration::from_secs(3600) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            // Peek once in a while whether the hub ended it (without acking).
            h.timeout = Duration::from_millis(1);
            if let Outcome::Ended = peek(&mut h).await {
                tally.add("noack: ended by the hub", 1);
                break;
            }
        }
    }
}

enum Outcome {
    Open,
    Ended,
}

async fn peek(h: &mut Hostile) -> Outcome {
    match h.recv().await {
        outpost_testkit::hostile::Incoming::Closed(_) => Outcome::Ended,
        outpost_testkit::hostile::Incoming::Frame(outpost::sync::Frame::Error { .. }) => {
            Outcome::Ended
        }
        _ => Outcome::Open,
    }
}

/// One connection-flood loop: `kind` 0 = half an HTTP header then a stall,
/// 1 = a WebSocket that never says `Hello`, 2 = a first message of 64 KiB + 1.
async fn conn_loop(
    url: String,
    local: SocketAddr,
    kind: usize,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    let addr: SocketAddr = url
        .trim_start_matches("ws://")
        .trim_end_matches("/sync")
        .parse()
        .expect("hub address");
    while !stop.load(Ordering::SeqCst) {
        match kind {
            0 => {
                let sock = match tokio::net::TcpSocket::new_v4().and_then(|s| {
                    s.bind(local)?;
                    Ok(s)
                }) {
                    Ok(s) => s,
                    Err(_) => {
                        tally.add("conn half-header: socket failed", 1);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(mut s) = sock.connect(addr).await else {
                    tally.add("conn half-header: connect failed", 1);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                tally.add("conn half-header: opened", 1);
                let _ = s
                    .write_all(b"GET /sync HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websock")
                    .await;
                let mut buf = Vec::new();
                let _ = s.read_to_end(&mut buf).await;
                let head = String::from_utf8_lossy(&buf);
                let what = head
                    .lines()
                    .next()
                    .filter(|l| !l.is_empty())
                    .unwrap_or("closed without an answer")
                    .to_string();
                tally.add(format!("conn half-header: {what}"), 1);
            }
            1 => match Hostile::connect_from(&url, Some(local)).await {
                Err(e) => {
                    let why = if e.contains("503") { "503" } else { "failed" };
                    tally.add(format!("conn no-hello: upgrade {why}"), 1);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(mut h) => {
                    tally.add("conn no-hello: opened", 1);
                    h.timeout = Duration::from_secs(60);
                    let a = h.answer().await;
                    tally.answer("conn no-hello", &a);
                }
            },
            _ => match Hostile::connect_from(&url, Some(local)).await {
                Err(e) => {
                    let why = if e.contains("503") { "503" } else { "failed" };
                    tally.add(format!("conn big-first: upgrade {why}"), 1);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(mut h) => {
                    tally.add("conn big-first: opened", 1);
                    let _ = h.send_bytes(vec![0u8; 64 * 1024 + 1]).await;
                    let a = h.answer().await;
                    tally.answer("conn big-first", &a);
                }
            },
        }
    }
}

// ---------------------------------------------------------------------------
// Measurements

fn now_ns() -> u64 {
    static E: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    E.get_or_init(Instant::now).elapsed().as_nanos() as u64 + 1
}

fn pct(v: &[u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    let r = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
    s[r]
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
