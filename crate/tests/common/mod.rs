//! Settings the crash tests share (`engine_crash.rs`, `index_crash.rs`): a
//! deterministic clock and database id, a small cache, and a file store
//! over a fault-injecting file system that checkpoints often (so crashes
//! land in checkpoints too), and a way to run their seeded workloads on
//! every core.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use outpost::store::file::FileStoreOptions;
use outpost::store::vfs::Vfs;
use outpost::{DbId, OpenOptions};

/// Open options with a counting clock and the database id `[id; 16]`.
pub fn crash_db_opts(id: u8) -> OpenOptions {
    let t = Arc::new(AtomicI64::new(1_000));
    OpenOptions {
        clock: Some(Arc::new(move || t.fetch_add(1, Ordering::Relaxed))),
        db_id: Some(DbId([id; 16])),
        cache_bytes: 16 * 4096,
        ..Default::default()
    }
}

/// File store options over `vfs`, with a small WAL (frequent checkpoints:
/// 16 KiB holds about as many of the engine's commits as 48 KiB did before
/// the WAL frames were packed, format 3),
/// and pages staged ahead of the commit every 2 operations of a transaction
/// (so the crash tests' batches of 3 and more exercise the pipelined commit).
pub fn crash_store_opts(vfs: Arc<dyn Vfs>) -> FileStoreOptions {
    FileStoreOptions {
        vfs,
        checkpoint_wal_bytes: 16 * 1024,
        wal_grow_bytes: 16 * 1024,
        stage_after_ops: 2,
        ..Default::default()
    }
}

/// Runs `f` for every seed of `seeds` on up to four threads (as many as the
/// machine has cores), each taking the next seed when it finishes one, and
/// returns the results in seed order. The crash tests' workloads are
/// independent (each crash point has its own in-memory file system), so on
/// a two-core machine they take half the time; a panic in `f` fails the
/// caller (the scope raises it again once every thread has stopped).
pub fn map_seeds_in_parallel<T: Send>(
    seeds: std::ops::RangeInclusive<u64>,
    f: impl Fn(u64) -> T + Sync,
) -> Vec<T> {
    let seeds: Vec<u64> = seeds.collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4)
        .min(seeds.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::Mutex::new(Vec::with_capacity(seeds.len()));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while let Some(&seed) = seeds.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let out = f(seed);
                    done.lock().unwrap().push((seed, out));
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap();
    done.sort_by_key(|(seed, _)| *seed);
    done.into_iter().map(|(_, out)| out).collect()
}
