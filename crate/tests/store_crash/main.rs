//! Crash and fault-injection tests of the native file store.
//!
//! Every test runs the real `FileStore` over a `FaultVfs`:
//!
//! - crash at every I/O operation N of a workload (group commits, durable and
//!   relaxed commits, syncs, checkpoints, close), build post-crash disk images
//!   (unsynced writes dropped, reordered, torn) and reopen each one: it must open,
//!   show a commit at or after the last acknowledged durable one, and show exactly
//!   that commit's pages;
//! - fail the Nth operation once / forever: the error is reported, the store
//!   poisons (no later commit succeeds), and a reopen recovers a consistent state;
//! - damage fsynced WAL frames (corruption, reported with file and offset) and
//!   tear the last group (dropped silently).
//!
//! `OUTPOST_CRASH_IMAGES` raises the effort: a small number (<= 100) multiplies
//! the images per crash point and the number of workloads; a larger number is
//! the approximate total of images wanted per crash test.
//!
//! The workload and the checks every test shares are here; the tests are in
//! this directory's modules, one per kind of fault.

// Native only: uses proptest or the file store (wasm32 tests run in a browser).
#![cfg(not(target_arch = "wasm32"))]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures::executor::block_on;
use futures::future::join_all;
use outpost::store::fault::{FaultVfs, FileImages};
use outpost::store::file::{
    DATA_FILE, FRAME_HEADER, FRAME_SIZE, FileStore, FileStoreOptions, FileStoreStats, HEADER_BLOCK,
    WAL_FILE, wal_frame_len, wal_frame_stored,
};
use outpost::store::{Commit, Durability, PAGE_SIZE, PageStore, StoreError};

const DIR: &str = "/outpost-test";
const PAGES: u64 = 200;

// ---------------------------------------------------------------------------
// Workload
// ---------------------------------------------------------------------------

use outpost::rng::SplitMix as Rng;

#[derive(Clone)]
struct Spec {
    id: u64,
    pages: Vec<u64>,
    durable: bool,
}

enum Step {
    /// One commit, awaited.
    One(Spec),
    /// Several commits issued together (so the writer can group them).
    Batch(Vec<Spec>),
    /// Relaxed commits, then a `sync()`.
    RelaxedThenSync(Vec<Spec>),
}

struct Workload {
    steps: Vec<Step>,
    /// `states[c][p]`: the commit whose version of page `p` is visible after
    /// commit `c` (0: never written). `states[0]` is the empty store.
    states: Vec<Vec<u64>>,
}

fn page_content(commit: u64, page: u64) -> Vec<u8> {
    let fill = ((commit * 7 + page * 13) % 251 + 1) as u8;
    let mut b = vec![0u8; PAGE_SIZE];
    b.fill(fill);
    b[..8].copy_from_slice(&commit.to_le_bytes());
    b[8..16].copy_from_slice(&page.to_le_bytes());
    b
}

fn state_sum(state: &[u64]) -> u64 {
    state
        .iter()
        .enumerate()
        .fold(0xCBF2_9CE4_8422_2325u64, |h, (p, c)| {
            (h ^ (p as u64) ^ (c << 20)).wrapping_mul(0x0100_0000_01B3)
        })
}

/// Meta record: commit counter, checksum of the page state, variable padding.
fn encode_meta(id: u64, state: &[u64]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_le_bytes());
    m.extend_from_slice(&state_sum(state).to_le_bytes());
    m.resize(16 + (id as usize * 37) % 300, (id % 256) as u8);
    m
}

impl Workload {
    fn new(seed: u64, commits: u64) -> Self {
        let mut rng = Rng(seed);
        let mut states = vec![vec![0u64; PAGES as usize + 1]];
        let mut steps = Vec::new();
        let spec = |rng: &mut Rng, durable: bool, states: &mut Vec<Vec<u64>>| {
            let id = states.len() as u64;
            let n = 1 + rng.below(4);
            let pages: Vec<u64> = (0..n).map(|_| 1 + rng.below(PAGES)).collect();
            let mut st = states.last().cloned().unwrap_or_default();
            for &p in &pages {
                st[p as usize] = id;
            }
            states.push(st);
            Spec { id, pages, durable }
        };
        while (states.len() as u64) <= commits {
            match rng.below(4) {
                0 => {
                    let d = rng.below(3) != 0;
                    steps.push(Step::One(spec(&mut rng, d, &mut states)));
                }
                1 | 2 => {
                    let k = 2 + rng.below(3);
                    let v = (0..k)
                        .map(|_| {
                            let d = rng.below(2) == 0;
                            spec(&mut rng, d, &mut states)
                        })
                        .collect();
                    steps.push(Step::Batch(v));
                }
                _ => {
                    let k = 1 + rng.below(3);
                    let v = (0..k).map(|_| spec(&mut rng, false, &mut states)).collect();
                    steps.push(Step::RelaxedThenSync(v));
                }
            }
        }
        Workload { steps, states }
    }

    fn commit_of(&self, s: &Spec) -> Commit {
        Commit {
            pages: s
                .pages
                .iter()
                .map(|&p| (p, Arc::new(page_content(s.id, p))))
                .collect(),
            meta: encode_meta(s.id, &self.states[s.id as usize]),
            durability: if s.durable {
                Durability::Durable
            } else {
                Durability::Relaxed
            },
        }
    }
}

fn opts(vfs: &FaultVfs) -> FileStoreOptions {
    FileStoreOptions {
        vfs: Arc::new(vfs.clone()),
        checkpoint_wal_bytes: 12 * FRAME_SIZE as u64,
        wal_grow_bytes: 6 * FRAME_SIZE as u64,
        ..FileStoreOptions::default()
    }
}

#[derive(Default)]
struct Outcome {
    /// Every commit up to this one was acknowledged durable.
    floor: u64,
    /// Highest commit handed to the store.
    issued: u64,
    /// Results in the order the workload observed them (`true`: Ok).
    results: Vec<Result<(), String>>,
    open_failed: bool,
}

impl Outcome {
    fn note(&mut self, r: Result<(), StoreError>) -> bool {
        let ok = r.is_ok();
        self.results.push(r.map_err(|e| {
            assert!(
                matches!(e, StoreError::Io { .. } | StoreError::Poisoned(_)),
                "unexpected error kind: {e}"
            );
            e.code().to_string()
        }));
        ok
    }
}

/// Runs the workload on `vfs`. With `stop_on_error`, stops at the first failed
/// step (crash tests); otherwise keeps going, to check that nothing succeeds
/// after a failure (fault tests).
fn run(w: &Workload, vfs: &FaultVfs, stop_on_error: bool) -> Outcome {
    run_with_stats(w, vfs, stop_on_error).0
}

fn run_with_stats(w: &Workload, vfs: &FaultVfs, stop_on_error: bool) -> (Outcome, FileStoreStats) {
    let mut out = Outcome::default();
    let store = match FileStore::open(DIR, opts(vfs)) {
        Ok(s) => s,
        Err(e) => {
            out.open_failed = true;
            out.note(Err(e));
            return (out, FileStoreStats::default());
        }
    };
    for step in &w.steps {
        let mut ok = true;
        match step {
            // A lone commit, as the engine makes one when no other
            // transaction waits: written in this thread while the writer
            // thread is idle (`FileStoreOptions::inline_commit`).
            Step::One(s) => {
                out.issued = s.id;
                let r = block_on(store.commit_alone(w.commit_of(s)));
                if r.is_ok() && s.durable {
                    out.floor = s.id;
                }
                ok &= out.note(r);
            }
            Step::Batch(v) => {
                let futs: Vec<_> = v.iter().map(|s| store.commit(w.commit_of(s))).collect();
                out.issued = v.last().map_or(out.issued, |s| s.id);
                for (s, r) in v.iter().zip(block_on(join_all(futs))) {
                    if r.is_ok() && s.durable {
                        out.floor = out.floor.max(s.id);
                    }
                    ok &= out.note(r);
                }
            }
            Step::RelaxedThenSync(v) => {
                for (i, s) in v.iter().enumerate() {
                    out.issued = s.id;
                    let c = w.commit_of(s);
                    // Both ways, one after the other: a commit handed to
                    // the writer thread, then a lone one that must wait
                    // for it (or find it written).
                    let r = if i % 2 == 0 {
                        block_on(store.commit(c))
                    } else {
                        block_on(store.commit_alone(c))
                    };
                    ok &= out.note(r);
                }
                let r = block_on(store.sync());
                if r.is_ok() {
                    out.floor = out.issued;
                }
                ok &= out.note(r);
            }
        }
        if !ok && stop_on_error {
            return (out, store.stats());
        }
    }
    out.note(block_on(store.close()));
    (out, store.stats())
}

/// Reopens `files` and checks the recovered state. Returns the recovered commit.
fn check_image(
    w: &Workload,
    files: FileImages,
    floor: u64,
    issued: u64,
    ctx: &dyn Fn() -> String,
) -> u64 {
    let vfs = FaultVfs::with_files(files);
    let store =
        FileStore::open(DIR, opts(&vfs)).unwrap_or_else(|e| panic!("{}: open failed: {e}", ctx()));
    let c = check_state(w, &store, ctx);
    assert!(
        c >= floor,
        "{}: recovered commit {c} but commit {floor} was acknowledged durable",
        ctx()
    );
    assert!(
        c <= issued,
        "{}: recovered commit {c} was never issued (last {issued})",
        ctx()
    );
    c
}

/// Checks that the store shows exactly the state after some commit; returns it.
fn check_state(w: &Workload, store: &FileStore, ctx: &dyn Fn() -> String) -> u64 {
    let c =
        match block_on(store.read_meta()).unwrap_or_else(|e| panic!("{}: read_meta: {e}", ctx())) {
            None => 0,
            Some(m) => {
                assert!(m.len() >= 16, "{}: short meta", ctx());
                let id = u64::from_le_bytes(m[..8].try_into().unwrap());
                let sum = u64::from_le_bytes(m[8..16].try_into().unwrap());
                assert!(
                    (id as usize) < w.states.len(),
                    "{}: unknown commit {id}",
                    ctx()
                );
                assert_eq!(
                    m,
                    encode_meta(id, &w.states[id as usize]),
                    "{}: meta of commit {id} mangled",
                    ctx()
                );
                assert_eq!(
                    sum,
                    state_sum(&w.states[id as usize]),
                    "{}: checksum",
                    ctx()
                );
                id
            }
        };
    let state = &w.states[c as usize];
    for p in 1..=PAGES {
        let want = state[p as usize];
        match block_on(store.read_page(p)) {
            Ok(buf) if want != 0 => {
                assert!(
                    buf[..] == page_content(want, p)[..],
                    "{}: page {p} should hold commit {want}'s version (meta says commit {c}), found commit {}",
                    ctx(),
                    u64::from_le_bytes(buf[..8].try_into().unwrap())
                );
            }
            // Never written at this commit: absent, or a hole of zeros below the
            // highest data-file page -- never some commit's content.
            Ok(buf) => assert!(
                buf[..] == [0u8; PAGE_SIZE][..],
                "{}: page {p} was not written by commit {c} but holds data of commit {}",
                ctx(),
                u64::from_le_bytes(buf[..8].try_into().unwrap())
            ),
            Err(StoreError::PageNotFound(_)) if want == 0 => {}
            Err(e) => panic!("{}: page {p} (commit {c} wrote it at {want}): {e}", ctx()),
        }
    }
    c
}

/// Effort multiplier from `OUTPOST_CRASH_IMAGES`.
fn effort(default_total: u64) -> u64 {
    match std::env::var("OUTPOST_CRASH_IMAGES")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        Some(0) | None => 1,
        Some(x) if x <= 100 => x,
        Some(x) => x.div_ceil(default_total).max(1),
    }
}

mod behaviour;
mod corruption;
mod crash_points;
mod failures;
mod torn_frames;

fn step_specs(s: &Step) -> Vec<Spec> {
    match s {
        Step::One(x) => vec![x.clone()],
        Step::Batch(v) | Step::RelaxedThenSync(v) => v.clone(),
    }
}

/// A 60-byte meta record ending in a CRC-32 of the rest, as the engine's meta
/// record does.
fn self_checked_meta(id: u64) -> Vec<u8> {
    let mut m = vec![(id * 31 % 251) as u8; 60];
    m[..8].copy_from_slice(&id.to_le_bytes());
    let crc = crc32fast::hash(&m[..56]);
    m[56..].copy_from_slice(&crc.to_le_bytes());
    m
}

fn wal_path() -> PathBuf {
    PathBuf::from(DIR).join(WAL_FILE)
}

/// Six durable single-page commits, each its own fsynced group (slots 2(i-1)
/// and 2(i-1)+1), no checkpoint; returns the durable files while still open.
/// The first `n` frames of `wal`: offset, length, and bytes of payload
/// stored (the frames follow each other from offset 0).
fn frames(wal: &[u8], n: usize) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    for i in 0..n {
        let len = wal_frame_len(&wal[at..]).unwrap_or_else(|| panic!("no frame {i} at {at}"));
        let stored = wal_frame_stored(&wal[at..]).unwrap_or_else(|| panic!("no frame {i} at {at}"));
        out.push((at, len, stored));
        at += len;
    }
    out
}
