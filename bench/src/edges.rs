//! Helpers shared by the replication benchmarks (`fanout`, `flood`): native
//! edges over in-memory databases, and a process's CPU time from `/proc`.

use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::Duration;

use outpost::db::{Database, OpenOptions};
use outpost::store::MemoryStore;
use outpost::sync::{EdgeConfig, SyncStatus};
use outpost_client::{ClientOptions, SyncHandle};

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

/// User + system CPU time of a process, in seconds (0 if it is gone).
pub fn cpu_secs(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces; the fields after it are fixed.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // After ")": state is field 3 of stat(5), so utime (14) and stime (15)
    // are at indices 11 and 12 here.
    (ticks(11) + ticks(12)) as f64 / clock_ticks() as f64
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 if unknown).
pub fn clock_ticks() -> u64 {
    static T: OnceLock<u64> = OnceLock::new();
    *T.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}
