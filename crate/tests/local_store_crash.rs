//! Crash and fault tests of `LocalFileStore`, the file store with its writer
//! run inline (no thread): the page store the browser runs over the Origin
//! Private File System (`store::opfs`). Here it runs over `FaultVfs`:
//!
//! - crash at every I/O operation N of a workload (durable and relaxed
//!   commits, syncs, checkpoints, close), build the disk images the crash
//!   could leave (unsynced writes dropped, reordered, torn), reopen each: it
//!   opens, shows exactly the state after one commit, at or after the last
//!   acknowledged durable one;
//! - fail each operation once: the error is reported, the store refuses
//!   later commits (poisoned) and a reopen recovers a consistent state;
//! - a full disk is `QuotaExceeded`; a second opener is `Locked`; erase and
//!   shrink keep the state.
//!
//! `OUTPOST_CRASH_IMAGES` (a small number) multiplies the images per crash
//! point and the number of workloads.

#![cfg(not(target_arch = "wasm32"))]

use std::sync::Arc;

use futures::executor::block_on;
use outpost::rng::SplitMix as Rng;
use outpost::store::fault::{Fault, FaultVfs, FileImages};
use outpost::store::file::{FRAME_SIZE, FileStoreOptions, LocalFileStore};
use outpost::store::{Commit, Durability, PAGE_SIZE, PageStore, StoreError};

const DIR: &str = "/opfs-test";
const PAGES: u64 = 60;

#[derive(Clone, Debug)]
enum Step {
    /// Commit `id` writing `pages`; durable or relaxed.
    Commit {
        id: u64,
        pages: Vec<u64>,
        durable: bool,
    },
    /// `sync()`: every commit so far durable.
    Sync,
}

struct Workload {
    steps: Vec<Step>,
    /// `states[c][p]`: the commit whose version of page `p` is visible after
    /// commit `c` (0: never written).
    states: Vec<Vec<u64>>,
}

fn page_content(commit: u64, page: u64) -> Vec<u8> {
    let mut b = vec![((commit * 7 + page * 13) % 251 + 1) as u8; PAGE_SIZE];
    b[..8].copy_from_slice(&commit.to_le_bytes());
    b[8..16].copy_from_slice(&page.to_le_bytes());
    b
}

fn meta_of(id: u64) -> Vec<u8> {
    let mut m = id.to_le_bytes().to_vec();
    m.resize(8 + (id as usize * 37) % 200, (id % 256) as u8);
    m
}

impl Workload {
    fn new(seed: u64, commits: u64) -> Workload {
        let mut rng = Rng(seed);
        let mut states = vec![vec![0u64; PAGES as usize + 1]];
        let mut steps = Vec::new();
        while (states.len() as u64) <= commits {
            if rng.below(5) == 0 {
                steps.push(Step::Sync);
                continue;
            }
            let id = states.len() as u64;
            let pages: Vec<u64> = (0..1 + rng.below(4))
                .map(|_| 1 + rng.below(PAGES))
                .collect();
            let mut st = states[states.len() - 1].clone();
            for &p in &pages {
                st[p as usize] = id;
            }
            states.push(st);
            steps.push(Step::Commit {
                id,
                pages,
                durable: rng.below(3) != 0,
            });
        }
        Workload { steps, states }
    }
}

fn opts(vfs: &FaultVfs) -> FileStoreOptions {
    FileStoreOptions {
        checkpoint_wal_bytes: 10 * FRAME_SIZE as u64,
        wal_grow_bytes: 4 * FRAME_SIZE as u64,
        ..FileStoreOptions::with_vfs(Arc::new(vfs.clone()))
    }
}

#[derive(Debug, Default)]
struct Outcome {
    /// Every commit up to this one was acknowledged durable.
    floor: u64,
    /// Highest commit handed to the store.
    issued: u64,
    failed: bool,
}

/// Runs `w` on `vfs`, stopping at the first error (or going on, to check
/// that nothing succeeds after it).
fn run(w: &Workload, vfs: &FaultVfs, stop_on_error: bool) -> Outcome {
    let mut out = Outcome::default();
    let store = match LocalFileStore::open(DIR, opts(vfs)) {
        Ok(s) => s,
        Err(e) => {
            assert!(matches!(e, StoreError::Io { .. }), "open: {e}");
            out.failed = true;
            return out;
        }
    };
    for step in &w.steps {
        let r = match step {
            Step::Commit { id, pages, durable } => {
                out.issued = *id;
                let c = Commit {
                    pages: pages
                        .iter()
                        .map(|&p| (p, Arc::new(page_content(*id, p))))
                        .collect(),
                    meta: meta_of(*id),
                    durability: if *durable {
                        Durability::Durable
                    } else {
                        Durability::Relaxed
                    },
                };
                let r = block_on(store.commit(c));
                if r.is_ok() && *durable {
                    out.floor = *id;
                }
                r
            }
            Step::Sync => {
                let r = block_on(store.sync());
                if r.is_ok() {
                    out.floor = out.issued;
                }
                r
            }
        };
        if let Err(e) = r {
            assert!(
                matches!(e, StoreError::Io { .. } | StoreError::Poisoned(_)),
                "unexpected error: {e}"
            );
            if out.failed {
                // Nothing may succeed once a write failed (checked below).
            }
            out.failed = true;
            if stop_on_error {
                return out;
            }
        } else {
            assert!(
                !out.failed || matches!(step, Step::Sync),
                "a commit succeeded after an earlier failure: {step:?}"
            );
        }
    }
    if block_on(store.close()).is_err() {
        out.failed = true;
    }
    out
}

/// Reopens `files` and checks the store shows exactly the state after one
/// commit within `floor..=issued`; returns that commit.
fn check_image(w: &Workload, files: FileImages, floor: u64, issued: u64, ctx: &str) -> u64 {
    let vfs = FaultVfs::with_files(files);
    let store =
        LocalFileStore::open(DIR, opts(&vfs)).unwrap_or_else(|e| panic!("{ctx}: open: {e}"));
    let c = match block_on(store.read_meta()).unwrap() {
        None => 0,
        Some(m) => {
            let id = u64::from_le_bytes(m[..8].try_into().unwrap());
            assert_eq!(m, meta_of(id), "{ctx}: meta of commit {id} mangled");
            id
        }
    };
    assert!(
        c >= floor,
        "{ctx}: recovered {c}, but {floor} was acknowledged durable"
    );
    assert!(
        c <= issued,
        "{ctx}: recovered {c}, never issued (last {issued})"
    );
    let state = &w.states[c as usize];
    for p in 1..=PAGES {
        let want = state[p as usize];
        match block_on(store.read_page(p)) {
            Ok(buf) if want != 0 => assert!(
                buf[..] == page_content(want, p)[..],
                "{ctx}: page {p} should hold commit {want}'s version (state {c})"
            ),
            Ok(buf) => assert!(
                buf.iter().all(|&b| b == 0),
                "{ctx}: page {p} unwritten at {c} holds data"
            ),
            Err(StoreError::PageNotFound(_)) if want == 0 => {}
            Err(e) => panic!("{ctx}: page {p}: {e}"),
        }
    }
    block_on(store.close()).unwrap_or_else(|e| panic!("{ctx}: close: {e}"));
    c
}

fn effort() -> u64 {
    std::env::var("OUTPOST_CRASH_IMAGES")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&x| (1..=100).contains(&x))
        .unwrap_or(1)
}

#[test]
fn crash_at_every_operation() {
    let m = effort();
    let mut images = 0u64;
    for seed in (0..3 * m).map(|i| 0x0F5 + i) {
        let w = Workload::new(seed, 40);
        let clean = FaultVfs::new();
        let out = run(&w, &clean, true);
        assert!(!out.failed, "seed {seed}: clean run failed");
        let last = w.states.len() as u64 - 1;
        assert_eq!(
            check_image(&w, clean.current_files(), last, last, "clean"),
            last
        );
        let total = clean.op_count();
        assert!(total > 50, "seed {seed}: only {total} operations");
        // Single-threaded: the same workload issues the same operations.
        for n in 1..=total {
            let vfs = FaultVfs::new();
            vfs.set_fault(Some(Fault::CrashAt(n)));
            let out = run(&w, &vfs, true);
            assert!(vfs.crashed(), "seed {seed}: no crash at op {n} of {total}");
            for (i, img) in vfs
                .crash_image_files(24 * m as usize, seed ^ (n << 32))
                .into_iter()
                .enumerate()
            {
                let ctx = format!("seed {seed} crash at op {n} image {i} ({out:?})");
                check_image(&w, img, out.floor, out.issued, &ctx);
                images += 1;
            }
        }
    }
    println!("local store crash images checked: {images}");
    assert!(images > 1000);
}

#[test]
fn fail_each_operation_once() {
    let w = Workload::new(0xFA11, 30);
    let clean = FaultVfs::new();
    run(&w, &clean, false);
    for n in 1..=clean.op_count() {
        let vfs = FaultVfs::new();
        vfs.set_fault(Some(Fault::FailOnce(n)));
        let out = run(&w, &vfs, false);
        assert!(out.failed, "op {n}: the failure was not reported");
        let last = w.states.len() as u64 - 1;
        // Whatever was acknowledged durable before the failure survives a
        // crash right now, and the current files reopen consistently.
        check_image(
            &w,
            vfs.durable_files(),
            out.floor.min(last),
            last,
            &format!("op {n} durable"),
        );
        check_image(&w, vfs.current_files(), 0, last, &format!("op {n} current"));
    }
}

#[test]
fn second_opener_is_locked_until_close() {
    let vfs = FaultVfs::new();
    let a = LocalFileStore::open(DIR, opts(&vfs)).unwrap();
    match LocalFileStore::open(DIR, opts(&vfs)) {
        Err(StoreError::Locked { .. }) => {}
        other => panic!("expected Locked, got {other:?}"),
    }
    block_on(a.close()).unwrap();
    let b = LocalFileStore::open(DIR, opts(&vfs)).unwrap();
    assert!(matches!(block_on(a.read_meta()), Err(StoreError::Closed)));
    drop(b);
    // Dropped without close: the lock is released too.
    LocalFileStore::open(DIR, opts(&vfs)).unwrap();
}

#[test]
fn full_disk_is_quota_exceeded() {
    let vfs = FaultVfs::new();
    let store = LocalFileStore::open(DIR, opts(&vfs)).unwrap();
    let commit = |id: u64| Commit {
        pages: (1..=4)
            .map(|p| (p, Arc::new(page_content(id, p))))
            .collect(),
        meta: meta_of(id),
        durability: Durability::Durable,
    };
    block_on(store.commit(commit(1))).unwrap();
    let used: u64 = vfs.current_files().values().map(|f| f.len() as u64).sum();
    vfs.set_capacity(Some(used));
    let mut id = 2;
    let err = loop {
        match block_on(store.commit(commit(id))) {
            Ok(()) => id += 1,
            Err(e) => break e,
        }
        assert!(id < 100, "the disk never filled");
    };
    assert!(matches!(err, StoreError::QuotaExceeded(_)), "{err}");
    assert_eq!(err.code(), "quota_exceeded");
    drop(store);
    vfs.set_capacity(None);
    let w_last = id - 1;
    let store = LocalFileStore::open(DIR, opts(&vfs)).unwrap();
    let m = block_on(store.read_meta()).unwrap().unwrap();
    assert_eq!(u64::from_le_bytes(m[..8].try_into().unwrap()), w_last);
}

#[test]
fn erase_and_shrink_keep_the_state_and_reopen() {
    let w = Workload::new(0x5EED, 30);
    let vfs = FaultVfs::new();
    let out = run(&w, &vfs, true);
    assert!(!out.failed);
    let last = w.states.len() as u64 - 1;
    let store = LocalFileStore::open(DIR, opts(&vfs)).unwrap();
    block_on(store.erase_residue()).unwrap();
    block_on(store.shrink(PAGES + 1)).unwrap();
    for p in 1..=PAGES {
        let want = w.states[last as usize][p as usize];
        if want != 0 {
            assert_eq!(
                block_on(store.read_page(p)).unwrap()[..],
                page_content(want, p)[..]
            );
        }
    }
    block_on(store.close()).unwrap();
    // Close empties the WAL (the next open reads no log), durably.
    let wal = std::path::Path::new(DIR).join(outpost::store::file::WAL_FILE);
    assert_eq!(vfs.durable_files()[&wal].len(), 0);
    assert_eq!(
        check_image(&w, vfs.durable_files(), last, last, "after erase"),
        last
    );
}
