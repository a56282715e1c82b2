//! `narrow`: fresh edges with a narrow read scope joining a large database.
//!
//! Issue "Native throughput", §2: the cost of an edge's initial sync should
//! follow the documents the edge may read, not the size of the database.
//! For each `--edges` count N (default 1 and 200), the benchmark:
//! 1. starts a real `outpost-hub` release process on 127.0.0.1 (fresh data
//!    directory, generated configuration: database `main`, one `writer` edge
//!    that may write `p/`, reads nothing and has no push budgets
//!    (`[edge.limits]`), and N `[[edge]]` entries, edge i reading
//!    `p/<i mod P>/` and writing nothing);
//! 2. loads `--docs` documents (~`--doc-bytes` each) through the writer, a
//!    native edge client (`outpost_client::spawn_edge`) over an in-memory
//!    database, in commits of `--batch` documents; document k goes to
//!    `p/<k mod P>/`, so every prefix's documents are spread through the
//!    whole changes feed; waits until the hub has acknowledged them all (the
//!    writer's `docs_pushed`), and until the hub is quiet;
//! 3. spawns the N fresh edges at once (in-memory databases, in this
//!    process), records for each the time from its spawn to `Live`, and
//!    checks that each holds exactly its prefix's documents;
//! 4. prints the wall time until every edge was live, per-edge time
//!    (p50/p90/p99/max), the hub's CPU over the join (per joining edge, per
//!    delivered document, per edge × database document) and memory.
//!
//! The hub binary is looked up next to this executable
//! (`target/release/outpost-hub`; build it with
//! `cargo build --release -p outpost-hub`) or given with `--hub`. The hub is
//! killed when a case ends, also on panic. If the open-file limit is too low
//! for the sockets, the benchmark re-executes itself under
//! `sh -c 'ulimit -n …'` (up to the hard limit).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[path = "../edges.rs"]
mod edges;
#[path = "../machine.rs"]
mod machine;

/// jemalloc, for thousands of edge clients in one process (`edges::Jemalloc`).
#[global_allocator]
static ALLOCATOR: edges::Jemalloc = edges::Jemalloc;

use clap::Parser;
use edges::{
    HubProc, Mem, client_options, cpu_secs, docs_sent, ensure_open_files, epoch, fmt_kib,
    free_port, hub_binary, hub_config, metric, open_file_limits, open_memory_db, percentile,
    system_busy_secs, wait_live,
};
use outpost::db::{Batch, Database};
use outpost::store::MemoryStore;
use outpost::sync::SyncStatus;
use outpost_client::{SyncHandle, spawn_edge};
use outpost_testkit::edge_toml;
use serde_json::json;

/// Narrow-scope join benchmark: N fresh edges, each allowed to read one
/// small prefix of a large hub database, connect at once; how long until
/// each is live, and what does it cost the hub?
#[derive(Parser, Debug)]
#[command(
    name = "narrow",
    after_help = "\
Examples:
  cargo build --release -p outpost-hub -p outpost-bench
  target/release/narrow                          # 100,000 documents, 1 then 200 edges
  target/release/narrow --edges 1
  target/release/narrow --edges 200 --docs 100000 --prefixes 200
  target/release/narrow --hub /path/to/outpost-hub --docs 20000 --edges 1,50"
)]
struct Args {
    /// Documents in the hub's database (loaded before the edges join).
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    docs: usize,
    /// Read prefixes `p/<i>/` the documents are spread over (document k in
    /// `p/<k mod P>/`); edge i reads `p/<i mod P>/`.
    #[arg(long, default_value_t = 200, value_name = "P")]
    prefixes: usize,
    /// Approximate size of each document's JSON body, in bytes.
    #[arg(long, default_value_t = 1024, value_name = "BYTES")]
    doc_bytes: usize,
    /// Edge counts to measure, comma-separated (one fresh hub per count; the
    /// edges of a case all connect at once).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,200",
        value_name = "N,..."
    )]
    edges: Vec<usize>,
    /// Documents per commit of the writer while loading.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    batch: usize,
    /// The `outpost-hub` binary (default: next to this executable).
    #[arg(long, value_name = "PATH")]
    hub: Option<PathBuf>,
    /// Directory for the hub's temporary data (removed afterwards).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Longest wait for any one step (hub start, the load making no
    /// progress, the edges becoming live), in seconds.
    #[arg(long, default_value_t = 300, value_name = "S")]
    timeout: u64,
}

fn main() {
    let args = Args::parse();
    if args.docs == 0 || args.prefixes == 0 || args.batch == 0 || args.edges.contains(&0) {
        eprintln!("error: --docs, --prefixes, --batch and every --edges count must be at least 1");
        std::process::exit(2);
    }
    let max_edges = args.edges.iter().copied().max().unwrap_or(0);
    ensure_open_files(max_edges);
    let hub_bin = hub_binary(args.hub.clone());
    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);

    println!("# Narrow-scope join benchmark\n");
    println!("Command: {}\n", command_line());
    println!("Machine:");
    for (k, v) in machine::machine_info(&dir, "hub data directory") {
        println!("- {k}: {v}");
    }
    println!("- open files (soft limit): {}", open_file_limits().0);
    println!("- hub binary: {}", hub_bin.display());
    println!(
        "\nSettings: {} documents of ~{} B over {} prefixes ({}–{} per prefix, interleaved in the changes feed), writer commits of {}, edges {:?}\n",
        args.docs,
        args.doc_bytes,
        args.prefixes,
        prefix_docs(&args, args.prefixes - 1),
        prefix_docs(&args, 0),
        args.batch,
        args.edges
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut results = Vec::new();
    for &n in &args.edges {
        println!("## {n} edges");
        let r = run_case(&rt, &args, &hub_bin, &dir, n);
        r.print_detail();
        results.push(r);
        println!();
    }
    print_summary(&args, &results);
}

// ---------------------------------------------------------------------------
// One case

struct CaseResult {
    edges: usize,
    /// Documents in the hub's database.
    docs: usize,
    load_secs: f64,
    hub_cpu_load: f64,
    /// The hub's `outpost_database_documents` after the load.
    hub_docs: Option<u64>,
    quiet_secs: f64,
    /// Spawn of the first edge → every edge live, seconds.
    wall_secs: f64,
    /// Per edge: its spawn → `Live`, ns.
    to_live: Vec<u64>,
    /// Per edge, when seen: its spawn → first `Initial` status (session
    /// opened), ns.
    to_initial: Vec<u64>,
    /// Documents the edges hold (the sum of their prefixes' counts).
    delivered: u64,
    /// The hub's `outpost_documents_sent_total` and
    /// `outpost_bytes_total{direction="out"}` over the join.
    hub_sent_docs: Option<u64>,
    hub_sent_bytes: Option<u64>,
    hub_cpu: f64,
    bench_cpu: f64,
    other_cpu: f64,
    hub_before: Mem,
    hub_after: Mem,
}

impl CaseResult {
    fn live_s(&self, q: f64) -> f64 {
        percentile(&self.to_live, q) as f64 / 1e9
    }
    fn hub_ms_per_edge(&self) -> f64 {
        1e3 * self.hub_cpu / self.edges as f64
    }
    fn hub_us_per_doc(&self) -> f64 {
        1e6 * self.hub_cpu / self.delivered.max(1) as f64
    }

    fn print_detail(&self) {
        println!(
            "load: {} documents pushed through the writer in {:.1} s (hub CPU {:.1} s); the hub's database holds {}; hub quiet {:.1} s later",
            self.docs,
            self.load_secs,
            self.hub_cpu_load,
            self.hub_docs.map_or("?".into(), |d| d.to_string()),
            self.quiet_secs
        );
        println!(
            "join: {} fresh {} spawned at once, all live after {:.2} s",
            self.edges,
            if self.edges == 1 { "edge" } else { "edges" },
            self.wall_secs
        );
        let s = |ns: u64| ns as f64 / 1e9;
        println!(
            "per edge, spawn → live: min {:.2} s, p50 {:.2} s, p90 {:.2} s, p99 {:.2} s, max {:.2} s",
            s(percentile(&self.to_live, 0.0)),
            self.live_s(0.5),
            self.live_s(0.9),
            self.live_s(0.99),
            self.live_s(1.0)
        );
        if !self.to_initial.is_empty() {
            println!(
                "per edge, spawn → session open (first Initial status, seen on {} of {}): p50 {:.2} s, max {:.2} s",
                self.to_initial.len(),
                self.edges,
                s(percentile(&self.to_initial, 0.5)),
                s(percentile(&self.to_initial, 1.0))
            );
        }
        println!(
            "documents: every edge holds exactly its prefix's ({} delivered in all); hub sent {} documents, {} out",
            self.delivered,
            self.hub_sent_docs.map_or("?".into(), |d| d.to_string()),
            self.hub_sent_bytes
                .map_or("?".into(), |b| fmt_kib(b / 1024))
        );
        println!(
            "hub CPU over the join: {:.2} s ({:.2} cores on average): {:.1} ms per joining edge, {:.1} µs per delivered document, {:.1} ns per (edge × database document)",
            self.hub_cpu,
            self.hub_cpu / self.wall_secs.max(1e-9),
            self.hub_ms_per_edge(),
            self.hub_us_per_doc(),
            1e9 * self.hub_cpu / (self.edges * self.docs) as f64
        );
        println!(
            "bench process CPU {:.2} s; other processes {:.2} s ({:.2} cores, machine noise)",
            self.bench_cpu,
            self.other_cpu,
            self.other_cpu / self.wall_secs.max(1e-9)
        );
        println!(
            "hub memory: {} before the join, {} after (VmRSS; RssAnon {} → {}); threads {}",
            fmt_kib(self.hub_before.rss_kib),
            fmt_kib(self.hub_after.rss_kib),
            fmt_kib(self.hub_before.anon_kib),
            fmt_kib(self.hub_after.anon_kib),
            self.hub_after.threads
        );
    }
}

/// How one joining edge fared.
struct Join {
    to_live: Duration,
    to_initial: Option<Duration>,
    outcome: Result<(), String>,
}

fn run_case(
    rt: &tokio::runtime::Runtime,
    args: &Args,
    hub_bin: &Path,
    dir: &Path,
    n: usize,
) -> CaseResult {
    let timeout = Duration::from_secs(args.timeout);
    let tag = format!(
        "narrow-{}-{}",
        std::process::id(),
        epoch().elapsed().as_nanos()
    );
    let tokens: Vec<String> = (0..n).map(|i| format!("edge-token-{i}-{tag}")).collect();
    let writer_token = format!("writer-token-{tag}");
    let port = free_port();
    // Every edge connects from 127.0.0.1, all at once: raise the per-address
    // caps (and say who may read /metrics).
    let mut cfg = hub_config(port, n as u64 + 64, "");
    cfg.push_str(&edge_toml("writer", &writer_token, &[], &["p/"]));
    // The writer is a bulk importer: the default push budgets (30 documents
    // and 256 KiB per second after a burst) would pace the load for an hour.
    cfg.push_str(
        "[edge.limits]\npushes_per_second = 0\npush_docs_per_second = 0\npush_bytes_per_second = 0\n\n",
    );
    for (i, t) in tokens.iter().enumerate() {
        let read = prefix(i % args.prefixes);
        cfg.push_str(&edge_toml(&edge_name(i), t, &[&read], &[]));
    }
    let hub = HubProc::start(
        hub_bin,
        &dir.join(format!(".outpost-{tag}")),
        port,
        &cfg,
        timeout,
    );
    let url = format!("ws://127.0.0.1:{port}/sync");
    let pid = hub.pid();
    let me = std::process::id();

    // The load.
    eprintln!("[{n} edges] hub pid {pid}; loading {} documents", args.docs);
    let (h0, t0) = (cpu_secs(pid), Instant::now());
    rt.block_on(load(args, &url, &writer_token, timeout));
    let (load_secs, hub_cpu_load) = (t0.elapsed().as_secs_f64(), cpu_secs(pid) - h0);
    let hub_docs = metric(port, "outpost_database_documents{database=\"main\"}");
    if let Some(d) = hub_docs {
        assert_eq!(
            d, args.docs as u64,
            "the hub's database should hold every document loaded"
        );
    }
    let quiet_secs = wait_quiet(pid, Duration::from_secs(30));

    // The join.
    eprintln!("[{n} edges] loaded in {load_secs:.1} s; {n} edges joining");
    let hub_before = Mem::of(pid);
    let (sent0, bytes0) = (docs_sent(port), bytes_out(port));
    let (hc, bc, sc) = (cpu_secs(pid), cpu_secs(me), system_busy_secs());
    let t_join = Instant::now();
    let (edges, joins) = rt.block_on(async {
        let mut edges: Vec<(Database<MemoryStore>, SyncHandle)> = Vec::with_capacity(n);
        let mut set = tokio::task::JoinSet::new();
        for (i, token) in tokens.iter().enumerate() {
            let db = open_memory_db().await;
            let h = spawn_edge(db.clone(), client_options(&url, &edge_name(i), token), None);
            let rx = h.watch_status();
            set.spawn(async move { (i, watch_join(rx, Instant::now(), timeout).await) });
            edges.push((db, h));
        }
        let mut joins: Vec<Option<Join>> = (0..n).map(|_| None).collect();
        while let Some(r) = set.join_next().await {
            let (i, j) = r.expect("an edge's watcher task");
            joins[i] = Some(j);
        }
        (edges, joins)
    });
    let wall_secs = t_join.elapsed().as_secs_f64();
    let (hub_cpu, bench_cpu) = (cpu_secs(pid) - hc, cpu_secs(me) - bc);
    let other_cpu = (system_busy_secs() - sc - hub_cpu - bench_cpu).max(0.0);
    let joins: Vec<Join> = joins
        .into_iter()
        .map(|j| j.expect("every watcher answered"))
        .collect();
    let failed: Vec<String> = joins
        .iter()
        .enumerate()
        .filter_map(|(i, j)| {
            j.outcome
                .as_ref()
                .err()
                .map(|e| format!("{}: {e}", edge_name(i)))
        })
        .collect();
    if !failed.is_empty() {
        let (_, h) = &edges[0];
        panic!(
            "{} of {n} edges not live after {timeout:?} (first: {}); edge 0: sessions {}, failed connection attempts {}; hub log:\n{}",
            failed.len(),
            failed
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("; "),
            h.counters().sessions.load(Ordering::SeqCst),
            h.counters().failed_attempts.load(Ordering::SeqCst),
            hub.log_tail()
        );
    }
    eprintln!("[{n} edges] all live after {wall_secs:.1} s");

    // Every edge holds exactly its prefix's documents.
    let wrong: Vec<String> = edges
        .iter()
        .enumerate()
        .filter_map(|(i, (db, _))| {
            let (have, want) = (db.stats().documents, prefix_docs(args, i % args.prefixes));
            (have != want).then(|| format!("{} holds {have}, not {want}", edge_name(i)))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} edges do not hold exactly their prefix's documents (first: {})",
        wrong.len(),
        wrong.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
    );
    let delivered: u64 = (0..n).map(|i| prefix_docs(args, i % args.prefixes)).sum();
    let hub_sent_docs = docs_sent(port).zip(sent0).map(|(a, b)| a - b);
    let hub_sent_bytes = bytes_out(port).zip(bytes0).map(|(a, b)| a - b);
    let hub_after = Mem::of(pid);

    // Tear down: stop the clients, then the hub (also killed on drop).
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for (_, h) in edges {
            set.spawn(h.stop());
        }
        let _ =
            tokio::time::timeout(timeout, async { while set.join_next().await.is_some() {} }).await;
    });
    drop(hub);

    CaseResult {
        edges: n,
        docs: args.docs,
        load_secs,
        hub_cpu_load,
        hub_docs,
        quiet_secs,
        wall_secs,
        to_live: joins.iter().map(|j| j.to_live.as_nanos() as u64).collect(),
        to_initial: joins
            .iter()
            .filter_map(|j| j.to_initial.map(|d| d.as_nanos() as u64))
            .collect(),
        delivered,
        hub_sent_docs,
        hub_sent_bytes,
        hub_cpu,
        bench_cpu,
        other_cpu,
        hub_before,
        hub_after,
    }
}

/// Loads the documents through a `writer` edge: commits of `--batch`
/// documents, at most 8 commits ahead of the hub's acknowledgements; returns
/// when the hub has acknowledged them all. Panics if the pushes make no
/// progress for `timeout`.
async fn load(args: &Args, url: &str, token: &str, timeout: Duration) {
    let db = open_memory_db().await;
    let h = spawn_edge(db.clone(), client_options(url, "writer", token), None);
    wait_live(&h, timeout, "writer").await;
    let pad = args.doc_bytes.saturating_sub(80);
    let text = "x".repeat(pad);
    let mut next_report = args.docs / 10;
    let mut start = 0;
    while start < args.docs {
        let end = (start + args.batch).min(args.docs);
        let mut b = Batch::new();
        for k in start..end {
            let id = format!("{}{k:07}", prefix(k % args.prefixes));
            b.put(
                id,
                json!({"title": format!("document {k}"), "n": k, "text": text}),
            );
        }
        db.commit(b).await.expect("the writer's commit");
        h.local_changed();
        start = end;
        wait_pushed(&h, start.saturating_sub(8 * args.batch) as u64, timeout).await;
        if start >= next_report && start < args.docs {
            eprintln!(
                "  committed {start}, acknowledged {}",
                h.counters().docs_pushed.load(Ordering::SeqCst)
            );
            next_report += args.docs / 10;
        }
    }
    wait_pushed(&h, args.docs as u64, timeout).await;
    h.stop().await;
}

/// Waits until the writer's acknowledged documents reach `target`; panics if
/// they do not move for `stall`.
async fn wait_pushed(h: &SyncHandle, target: u64, stall: Duration) {
    let (mut last, mut since) = (0, Instant::now());
    loop {
        let pushed = h.counters().docs_pushed.load(Ordering::SeqCst);
        if pushed >= target {
            return;
        }
        if pushed > last {
            (last, since) = (pushed, Instant::now());
        } else if since.elapsed() > stall {
            panic!(
                "the writer's pushes stalled at {pushed} of {target} acknowledged documents for {stall:?} (status {:?})",
                h.status()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Follows one edge's status from its spawn (`t`) until `Live`, an error or
/// `timeout`.
async fn watch_join(
    mut rx: tokio::sync::watch::Receiver<SyncStatus>,
    t: Instant,
    timeout: Duration,
) -> Join {
    let mut to_initial = None;
    let outcome = tokio::time::timeout(timeout, async {
        loop {
            let s = rx.borrow_and_update().clone();
            match s {
                SyncStatus::Live => return Ok(()),
                SyncStatus::Error { code, message } => return Err(format!("{code}: {message}")),
                SyncStatus::Initial { .. } if to_initial.is_none() => {
                    to_initial = Some(t.elapsed());
                }
                _ => {}
            }
            if rx.changed().await.is_err() {
                return Err("the client stopped".to_string());
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err(format!("not live after {timeout:?}")));
    Join {
        to_live: t.elapsed(),
        to_initial,
        outcome,
    }
}

/// Waits until the hub uses under 10 % of a core over half a second (after
/// the load it may still be writing), at most `max`; returns the seconds
/// waited.
fn wait_quiet(pid: u32, max: Duration) -> f64 {
    let t = Instant::now();
    while t.elapsed() < max {
        let c = cpu_secs(pid);
        std::thread::sleep(Duration::from_millis(500));
        if cpu_secs(pid) - c < 0.05 {
            break;
        }
    }
    t.elapsed().as_secs_f64()
}

fn print_summary(args: &Args, results: &[CaseResult]) {
    println!("## Summary\n");
    println!(
        "| edges | database docs | docs per edge | all live s | per edge p50 s | p99 s | max s | hub CPU s | hub CPU ms/edge | hub µs/delivered doc | load s |"
    );
    println!("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for r in results {
        println!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} |",
            r.edges,
            r.docs,
            r.delivered / r.edges as u64,
            r.wall_secs,
            r.live_s(0.5),
            r.live_s(0.99),
            r.live_s(1.0),
            r.hub_cpu,
            r.hub_ms_per_edge(),
            r.hub_us_per_doc(),
            r.load_secs,
        );
    }
    println!(
        "\nThe issue's figures before (\"Native throughput\", §2): 0.93 s per edge alone over 100,000 documents; 35–46 s each for 200 edges at once."
    );
    for r in results {
        println!(
            "narrow: {} {} reading {} of {} documents each ({} prefixes): all live in {:.2} s, per edge p50 {:.2} s / max {:.2} s, hub CPU {:.1} ms per edge ({:.1} µs per delivered document)",
            r.edges,
            if r.edges == 1 { "edge" } else { "edges" },
            r.delivered / r.edges as u64,
            r.docs,
            args.prefixes,
            r.wall_secs,
            r.live_s(0.5),
            r.live_s(1.0),
            r.hub_ms_per_edge(),
            r.hub_us_per_doc()
        );
    }
}

// ---------------------------------------------------------------------------
// Helpers

fn edge_name(i: usize) -> String {
    format!("e{i:05}")
}

/// The read prefix number `i`.
fn prefix(i: usize) -> String {
    format!("p/{i}/")
}

/// Documents in prefix `i` (document k is in prefix k mod P).
fn prefix_docs(args: &Args, i: usize) -> u64 {
    (args.docs / args.prefixes + usize::from(i < args.docs % args.prefixes)) as u64
}

/// The hub's `outpost_bytes_total{direction="out"}` (WebSocket payload
/// bytes sent).
fn bytes_out(port: u16) -> Option<u64> {
    metric(port, "outpost_bytes_total{direction=\"out\"}")
}

/// This process's command line, as typed (arguments with spaces quoted).
fn command_line() -> String {
    std::env::args()
        .map(|a| {
            if a.is_empty() || a.contains(char::is_whitespace) {
                format!("'{a}'")
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
