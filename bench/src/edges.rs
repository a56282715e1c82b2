//! Helpers shared by the replication benchmarks (`fanout`, `flood`,
//! `narrow`): native edges over in-memory databases, a hub process started
//! from a generated configuration, a process's CPU time and memory from
//! `/proc`, the open-file limit, percentiles.
//!
//! Each of those benchmarks also sets jemalloc as its allocator, with
//! [`Jemalloc`] (the durable-write benchmark `outpost-bench` does not: it
//! compares the engine with SQLite and redb, which allocate through the
//! system's malloc).
// Each benchmark includes this file (`#[path]`) and uses a part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use outpost::db::{Database, OpenOptions};
use outpost::store::MemoryStore;
use outpost::sync::{EdgeConfig, SyncStatus};
use outpost_client::{ClientOptions, SyncHandle};

use crate::machine::clock_ticks;
pub use crate::machine::cpu_secs;

/// The allocator of a benchmark that runs thousands of edge clients in one
/// process: jemalloc, as the hub's (`hub/src/main.rs`). Each of those clients
/// stands for a device of its own; with glibc's malloc, 5,000 of them on two
/// runtime threads contended on its arena locks (about 8 % of the process's
/// samples), a cost no real device pays (docs/benchmarks.md, "The allocator").
/// Each binary declares it: `#[global_allocator] static A: Jemalloc = Jemalloc;`.
pub use tikv_jemallocator::Jemalloc;

/// Options of a native edge syncing database `main` as `identity`.
pub fn client_options(url: &str, identity: &str, token: &str) -> ClientOptions {
    ClientOptions {
        url: url.into(),
        edge: EdgeConfig::new("main", identity, token),
        ca_cert: None,
        signer: None,
        client_cert: None,
    }
}

/// An edge's in-memory database with a small page cache (many edges share
/// one process).
pub async fn open_memory_db() -> Database<MemoryStore> {
    let opts = OpenOptions {
        cache_bytes: 16 * 4096,
        ..OpenOptions::default()
    };
    Database::open(MemoryStore::new(), opts)
        .await
        .expect("open an in-memory database")
}

/// Waits until edge `who` is live; panics with its counters if not.
pub async fn wait_live(h: &SyncHandle, timeout: Duration, who: &str) {
    let live = h
        .wait_for(timeout, |s| {
            matches!(s, SyncStatus::Live | SyncStatus::Error { .. })
        })
        .await;
    match h.status() {
        SyncStatus::Live if live => {}
        s => panic!(
            "edge {who} not live after {timeout:?}: {s:?} (sessions {}, failed connection attempts {})",
            h.counters().sessions.load(Ordering::SeqCst),
            h.counters().failed_attempts.load(Ordering::SeqCst)
        ),
    }
}

// ---------------------------------------------------------------------------
// The hub process

/// Environment variable set when a benchmark re-executed itself with a
/// higher open-file limit (so it does not loop).
pub const REEXEC_ENV: &str = "OUTPOST_BENCH_NOFILE";

/// The admin token of the benchmarks' hubs (for `GET /metrics`).
pub const ADMIN_TOKEN: &str = "fanout-admin-token";

/// The `outpost-hub` binary: `arg` if given, else the one next to this
/// executable (`target/release/outpost-hub`). Exits with a hint if there is
/// no such file.
pub fn hub_binary(arg: Option<PathBuf>) -> PathBuf {
    let hub_bin = arg.unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("outpost-hub")))
            .unwrap_or_else(|| PathBuf::from("outpost-hub"))
    });
    if !hub_bin.is_file() {
        eprintln!(
            "error: no hub binary at {} (build it: cargo build --release -p outpost-hub, or pass --hub)",
            hub_bin.display()
        );
        std::process::exit(2);
    }
    hub_bin
}

/// The head of a benchmark hub's configuration: listening on 127.0.0.1:`port`,
/// database `main`, `[dev]` tokens, the per-address caps raised for `conns`
/// connections from 127.0.0.1 (the new-connection rate included), and the
/// admin token (`ADMIN_TOKEN`, for `/metrics`); `more_limits` (lines of
/// `key = value`, or "") goes into its `[limits]` too. The `[[edge]]`
/// entries follow.
pub fn hub_config(port: u16, conns: u64, more_limits: &str) -> String {
    let mut cfg = format!(
        "listen = \"127.0.0.1:{port}\"\ndata_dir = \"data\"\n\n[[database]]\nname = \"main\"\n\n"
    );
    cfg.push_str(&format!(
        "[dev]\ntokens = true\n\n[limits]\nmax_connections = {conns}\nmax_unauthenticated = {conns}\nmax_connections_per_address = {conns}\nnew_connections_per_address_per_second = 0\n{more_limits}\n[admin]\ntoken_sha256 = \"{}\"\n\n",
        outpost_hub::config::token_sha256_hex(ADMIN_TOKEN)
    ));
    cfg
}

/// A running hub process; killed (and its directory removed) on drop.
pub struct HubProc {
    dir: PathBuf,
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
}

impl HubProc {
    /// Writes `config` into `dir`, starts `bin serve` there and waits (up to
    /// `timeout`) until `GET /healthz` on `port` answers.
    pub fn start(bin: &Path, dir: &Path, port: u16, config: &str, timeout: Duration) -> HubProc {
        std::fs::create_dir_all(dir).expect("create the hub's directory");
        std::fs::write(dir.join("outpost-hub.toml"), config).expect("write the configuration");
        let mut child = Command::new(bin)
            .current_dir(dir)
            .args(["--config", "outpost-hub.toml", "serve"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let log = Arc::new(Mutex::new(Vec::new()));
        if let Some(err) = child.stderr.take() {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
                    if l.len() >= 200 {
                        l.remove(0);
                    }
                    l.push(line);
                }
            });
        }
        let h = HubProc {
            dir: dir.to_path_buf(),
            child: Some(child),
            log,
        };
        let t = Instant::now();
        while !healthy(port) {
            if t.elapsed() > timeout {
                panic!("the hub did not start: {}", h.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        h
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The last lines (up to 200) the hub wrote to its standard error.
    pub fn log_tail(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n")
    }
}

impl Drop for HubProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether `GET /healthz` answers 200.
pub fn healthy(port: u16) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200") || out.starts_with("HTTP/1.0 200")
}

/// One sample of the hub's `GET /metrics`: the value of the line starting
/// with `name` and a space (labels included in `name`, as printed:
/// `outpost_bytes_total{direction="out"}`).
pub fn metric(port: u16, name: &str) -> Option<u64> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req =
        format!("GET /metrics HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// The hub's `outpost_documents_sent_total` (documents written to edges'
/// sockets), from `GET /metrics`.
pub fn docs_sent(port: u16) -> Option<u64> {
    metric(port, "outpost_documents_sent_total")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

// ---------------------------------------------------------------------------
// Measurements of processes

/// Memory of a process, from `/proc/<pid>/status` (KiB).
#[derive(Clone, Copy, Debug, Default)]
pub struct Mem {
    pub rss_kib: u64,
    pub anon_kib: u64,
    pub threads: u64,
}

impl Mem {
    pub fn of(pid: u32) -> Mem {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| -> u64 {
            s.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Mem {
            rss_kib: field("VmRSS:"),
            anon_kib: field("RssAnon:"),
            threads: field("Threads:"),
        }
    }
}

/// CPU seconds every process of the machine has used since boot (busy time
/// of all CPUs, from the first line of `/proc/stat`).
pub fn system_busy_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| f.get(i).copied().unwrap_or(0))
        .sum();
    busy as f64 / clock_ticks() as f64
}

/// (soft, hard) open-file limits of this process (`u64::MAX`: unlimited).
pub fn open_file_limits() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let line = s
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or("");
    let nums: Vec<u64> = line
        .split_whitespace()
        .skip(3)
        .take(2)
        .map(|v| v.parse().unwrap_or(u64::MAX))
        .collect();
    match nums.as_slice() {
        [soft, hard] => (*soft, *hard),
        _ => (u64::MAX, u64::MAX),
    }
}

/// Makes sure this process (and the hub it starts, which inherits the limit)
/// may open a socket per edge: re-executes itself under `ulimit -n` if needed.
pub fn ensure_open_files(edges: usize) {
    let need = edges as u64 + 1024;
    let (soft, hard) = open_file_limits();
    if soft >= need {
        return;
    }
    if hard < need || std::env::var_os(REEXEC_ENV).is_some() {
        eprintln!(
            "error: {edges} edges need about {need} open files per process; the limit is {soft} (hard {hard}). Raise it (ulimit -n {need}) or use fewer edges."
        );
        std::process::exit(2);
    }
    let exe = std::env::current_exe().expect("the path of this executable");
    eprintln!("raising the open-file limit from {soft} to {need} (re-executing under ulimit -n)");
    let err = Command::new("/bin/sh")
        .arg("-c")
        .arg("ulimit -n \"$1\" && shift && exec \"$@\"")
        .arg("sh")
        .arg(need.to_string())
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(REEXEC_ENV, need.to_string())
        .exec();
    eprintln!("error: re-executing under ulimit -n {need}: {err}");
    std::process::exit(2);
}

// ---------------------------------------------------------------------------
// Helpers

pub fn epoch() -> Instant {
    static E: OnceLock<Instant> = OnceLock::new();
    *E.get_or_init(Instant::now)
}

/// Nanoseconds since `epoch()`, never 0.
pub fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64 + 1
}

/// Index of the `q` quantile (nearest rank) in a sorted slice of `len`.
pub fn rank(len: usize, q: f64) -> usize {
    ((q * len as f64).ceil() as usize).clamp(1, len.max(1)) - 1
}

/// The `q` quantile (nearest rank) of unsorted values.
pub fn percentile(v: &[u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    s[rank(s.len(), q)]
}

pub fn fmt_kib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}
