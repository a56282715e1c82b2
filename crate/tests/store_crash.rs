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

// ---------------------------------------------------------------------------
// Crash at every operation
// ---------------------------------------------------------------------------

fn crash_every_op(seeds: &[u64], commits: u64, images_per_crash: usize) -> (u64, u64) {
    let mut images = 0u64;
    let mut crashes = 0u64;
    for &seed in seeds {
        let w = Workload::new(seed, commits);
        let clean = FaultVfs::new();
        let (out, stats) = run_with_stats(&w, &clean, true);
        assert!(
            out.results.iter().all(|r| r.is_ok()),
            "seed {seed}: clean run failed: {:?}",
            out.results
        );
        // The workload must exercise checkpoints and relaxed (fsync-free) groups.
        assert!(stats.checkpoints >= 3, "seed {seed}: {stats:?}");
        // And commits written in the caller's thread as well as by the
        // writer thread.
        assert!(
            stats.inline_commits > 0 && stats.inline_commits < stats.commits,
            "seed {seed}: {stats:?}"
        );
        assert!(
            stats.fsyncs < stats.groups + 2 * stats.checkpoints,
            "seed {seed}: {stats:?}"
        );
        println!(
            "seed {seed}: {stats:?}, {} I/O operations",
            clean.op_count()
        );
        let total_ops = clean.op_count();
        // The clean end state must hold the last commit.
        let last = w.states.len() as u64 - 1;
        let c = check_image(&w, clean.current_files(), last, last, &|| {
            format!("seed {seed} clean")
        });
        assert_eq!(c, last);
        // Thread timing changes grouping, so op counts vary a little between runs.
        for n in 1..=total_ops + 8 {
            let vfs = FaultVfs::new();
            vfs.set_fault(Some(outpost::store::fault::Fault::CrashAt(n)));
            let out = run(&w, &vfs, true);
            if !vfs.crashed() {
                continue;
            }
            crashes += 1;
            let imgs = vfs.crash_image_files(images_per_crash, seed ^ (n << 32));
            for (i, img) in imgs.into_iter().enumerate() {
                let ctx = || {
                    format!(
                        "seed {seed} crash at op {n} image {i} (floor {}, issued {})",
                        out.floor, out.issued
                    )
                };
                // Every few images: keep using the recovered store (a commit on top,
                // then a crash that keeps only fsynced bytes) to prove recovery left
                // no stale frames behind that a later replay could pick up.
                let again = (i % 5 == 0).then(|| img.clone());
                let c = check_image(&w, img, out.floor, out.issued, &ctx);
                images += 1;
                if let Some(img) = again {
                    continue_after_recovery(&w, img, c, &ctx);
                    images += 1;
                }
            }
        }
    }
    (images, crashes)
}

/// Reopens `img`, commits one more durable commit (the next one of the
/// workload, on top of recovered commit `c`), crashes keeping only durable
/// bytes, reopens and checks the new commit is there.
fn continue_after_recovery(w: &Workload, img: FileImages, c: u64, ctx: &dyn Fn() -> String) {
    let spec = match w.steps.iter().flat_map(step_specs).find(|s| s.id == c + 1) {
        Some(s) => s.clone(),
        None => return,
    };
    let vfs = FaultVfs::with_files(img);
    let store =
        FileStore::open(DIR, opts(&vfs)).unwrap_or_else(|e| panic!("{}: reopen: {e}", ctx()));
    let mut commit = w.commit_of(&spec);
    commit.durability = Durability::Durable;
    block_on(store.commit(commit))
        .unwrap_or_else(|e| panic!("{}: commit after recovery: {e}", ctx()));
    let durable = vfs.durable_files();
    drop(store);
    let got = check_image(w, durable, c + 1, c + 1, &|| {
        format!("{} (continued)", ctx())
    });
    assert_eq!(got, c + 1);
}

fn step_specs(s: &Step) -> Vec<Spec> {
    match s {
        Step::One(x) => vec![x.clone()],
        Step::Batch(v) | Step::RelaxedThenSync(v) => v.clone(),
    }
}

#[test]
fn crash_at_every_operation_small_workloads() {
    let t = Instant::now();
    let m = effort(12000);
    let seeds: Vec<u64> = (0..4 * m).map(|i| 0xA11CE + i).collect();
    let (images, crashes) = crash_every_op(&seeds, 24, 40 * m as usize);
    println!(
        "store crash images checked: {images} ({crashes} crash points, {:?})",
        t.elapsed()
    );
    assert!(images > 1000);
}

#[test]
fn crash_at_every_operation_long_workload() {
    let t = Instant::now();
    let m = effort(12000);
    let seeds: Vec<u64> = (0..m).map(|i| 0xB0B + i).collect();
    let (images, crashes) = crash_every_op(&seeds, 70, 32 * m as usize);
    println!(
        "store crash images checked: {images} ({crashes} crash points, {:?})",
        t.elapsed()
    );
    assert!(images > 1000);
}

// ---------------------------------------------------------------------------
// Failing operations (once / forever)
// ---------------------------------------------------------------------------

fn fail_every_op(persistent: bool) -> u64 {
    use outpost::store::fault::Fault;
    let w = Workload::new(0xFA11, 30);
    let clean = FaultVfs::new();
    run(&w, &clean, false);
    let total_ops = clean.op_count();
    let mut images = 0;
    for n in 1..=total_ops {
        let vfs = FaultVfs::new();
        vfs.set_fault(Some(if persistent {
            Fault::FailFrom(n)
        } else {
            Fault::FailOnce(n)
        }));
        let out = run(&w, &vfs, false);
        let fired = vfs.op_count() >= n;
        let ctx = || {
            format!(
                "{} at op {n}",
                if persistent {
                    "fail forever"
                } else {
                    "fail once"
                }
            )
        };
        if fired {
            let first_err = out.results.iter().position(|r| r.is_err());
            let first_err =
                first_err.unwrap_or_else(|| panic!("{}: the failure was not reported", ctx()));
            // Poisoned: nothing succeeds after the first failure.
            assert!(
                out.results[first_err..].iter().all(|r| r.is_err()),
                "{}: an operation succeeded after a failure: {:?}",
                ctx(),
                out.results
            );
            // The writes of a failed group all report the I/O error; whatever
            // comes later (at least the final close) reports the poisoning.
            // How a batch splits into groups depends on thread timing, so the
            // failing operation may come after the last step: in close's own
            // checkpoint (close reports the I/O error) or in a background
            // checkpoint just before it (close reports the poisoning).
            if !out.open_failed {
                let close_failed_first = first_err == out.results.len() - 1;
                let last = out
                    .results
                    .last()
                    .and_then(|r| r.as_ref().err())
                    .map(String::as_str);
                assert!(
                    last == Some("poisoned") || (close_failed_first && last == Some("io")),
                    "{}: close reported {last:?} after {:?}",
                    ctx(),
                    out.results
                );
            }
        }
        // Reopen as after a process restart (all written bytes present) and as
        // after a machine crash (unsynced writes dropped or torn).
        vfs.set_fault(None);
        check_image(&w, vfs.current_files(), out.floor, out.issued, &|| {
            format!("{} reopen", ctx())
        });
        images += 1;
        for (i, img) in vfs.crash_image_files(6, n).into_iter().enumerate() {
            check_image(&w, img, out.floor, out.issued, &|| {
                format!("{} image {i}", ctx())
            });
            images += 1;
        }
    }
    images
}

#[test]
fn fail_each_operation_once() {
    let t = Instant::now();
    let images = fail_every_op(false);
    println!(
        "store crash images checked: {images} (fail once, {:?})",
        t.elapsed()
    );
}

#[test]
fn fail_each_operation_forever() {
    let t = Instant::now();
    let images = fail_every_op(true);
    println!(
        "store crash images checked: {images} (fail forever, {:?})",
        t.elapsed()
    );
}

// ---------------------------------------------------------------------------
// Corruption and torn tails
// ---------------------------------------------------------------------------

fn wal_path() -> PathBuf {
    PathBuf::from(DIR).join(WAL_FILE)
}

fn data_path() -> PathBuf {
    PathBuf::from(DIR).join(DATA_FILE)
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

fn six_fsynced_groups(w: &Workload) -> FileImages {
    let vfs = FaultVfs::new();
    let mut o = opts(&vfs);
    o.checkpoint_wal_bytes = 1 << 30;
    let store = FileStore::open(DIR, o).unwrap();
    for s in w.steps.iter().flat_map(step_specs).take(6) {
        let mut c = w.commit_of(&s);
        c.pages.truncate(1);
        c.durability = Durability::Durable;
        block_on(store.commit(c)).unwrap();
    }
    assert_eq!(store.stats().groups, 6);
    let files = vfs.durable_files();
    std::mem::forget(store); // no close: keep the WAL as it is on disk
    files
}

fn single_page_workload() -> Workload {
    // States for commits that write only their first page.
    let mut w = Workload::new(0xC0DE, 6);
    let specs: Vec<Spec> = w.steps.iter().flat_map(step_specs).collect();
    let mut states = vec![vec![0u64; PAGES as usize + 1]];
    for s in specs.iter().take(6) {
        let mut st = states.last().unwrap().clone();
        st[s.pages[0] as usize] = s.id;
        states.push(st);
    }
    w.states = states;
    w.steps = specs
        .into_iter()
        .take(6)
        .map(|mut s| {
            s.pages.truncate(1);
            Step::One(s)
        })
        .collect();
    w
}

#[test]
fn flipped_byte_in_fsynced_group_is_reported() {
    let w = single_page_workload();
    let files = six_fsynced_groups(&w);
    let frames = frames(&files[&wal_path()], 12);
    let mut checked = 0;
    // Frames 0..10 belong to groups 1..5, each followed by later fsynced groups.
    for (slot, &(at, _, stored)) in frames.iter().enumerate().take(10) {
        // Its length field, a header field, the checksum, the first and
        // the last stored byte of its payload.
        for within in [3usize, 6, 50, FRAME_HEADER + 9, FRAME_HEADER + stored - 1] {
            let mut img = files.clone();
            let wal = img.get_mut(&wal_path()).unwrap();
            wal[at + within] ^= 0x40;
            let vfs = FaultVfs::with_files(img);
            match FileStore::open(DIR, opts(&vfs)) {
                Err(StoreError::Corrupt { file, offset, .. }) => {
                    assert!(file.ends_with(WAL_FILE), "frame {slot}: wrong file {file}");
                    assert_eq!(offset, at as u64, "frame {slot} byte {within}");
                }
                Err(e) => panic!("frame {slot}: expected Corrupt, got {e}"),
                Ok(_) => panic!("frame {slot} byte {within}: damaged fsynced frame accepted"),
            }
            checked += 1;
        }
    }
    // The last group (frames 10, 11) has nothing after it: indistinguishable
    // from a torn tail, so it is dropped and commit 5 is recovered.
    for (slot, &(at, _, _)) in frames.iter().enumerate().skip(10) {
        let mut img = files.clone();
        img.get_mut(&wal_path()).unwrap()[at + FRAME_HEADER + 1] ^= 1;
        assert_eq!(
            check_image(&w, img, 5, 5, &|| format!("last group slot {slot}")),
            5
        );
        checked += 1;
    }
    println!("store crash images checked: {checked} (flipped bytes)");
}

#[test]
fn torn_last_group_is_dropped() {
    let w = single_page_workload();
    let files = six_fsynced_groups(&w);
    let f = frames(&files[&wal_path()], 12);
    let mut checked = 0;
    let (last, second) = (f[10].0, f[11].0);
    let end = second + f[11].1;
    // Cut the WAL inside the last group, or overwrite its end with garbage.
    for cut in [
        last,
        last + 512,
        last + f[10].1 - 1,
        second,
        second + FRAME_HEADER + 1,
        // Its last stored byte (the padding after it is no data).
        second + FRAME_HEADER + f[11].2 - 1,
    ] {
        let mut img = files.clone();
        img.get_mut(&wal_path()).unwrap().truncate(cut);
        assert_eq!(check_image(&w, img, 5, 5, &|| format!("cut at {cut}")), 5);
        let mut img = files.clone();
        img.get_mut(&wal_path()).unwrap()[cut..end].fill(0xA5);
        assert_eq!(
            check_image(&w, img, 5, 5, &|| format!("garbage from {cut}")),
            5
        );
        checked += 2;
    }
    // Intact: all six commits.
    assert_eq!(check_image(&w, files, 6, 6, &|| "intact".into()), 6);
    println!("store crash images checked: {} (torn tails)", checked + 1);
}

#[test]
fn damaged_header_after_wal_restart_is_reported() {
    let w = single_page_workload();
    let vfs = FaultVfs::new();
    let store = FileStore::open(DIR, opts(&vfs)).unwrap();
    for s in w.steps.iter().flat_map(step_specs) {
        let mut c = w.commit_of(&s);
        c.durability = Durability::Durable;
        block_on(store.commit(c)).unwrap();
    }
    drop(store); // checkpoints: header slot flips, WAL restarts under a new salt
    let store = FileStore::open(DIR, opts(&vfs)).unwrap();
    block_on(store.sync()).unwrap();
    let files = vfs.durable_files();
    drop(store);
    // Which slot is active: the one with the higher sequence number; damaging
    // it while the WAL already uses its salt must be reported.
    let data = &files[&data_path()];
    let active = if seq_of(data, 1) > seq_of(data, 0) {
        1
    } else {
        0
    };
    // Before the damage: opens.
    assert_eq!(
        check_image(&w, files.clone(), 6, 6, &|| "header intact".into()),
        6
    );
    // Damage the active header slot of a store whose WAL is empty: the older slot
    // and its (durable) WAL generation still describe the same state.
    let mut img = files.clone();
    img.get_mut(&data_path()).unwrap()[active * HEADER_BLOCK as usize + 30] ^= 0xFF;
    let vfs2 = FaultVfs::with_files(img);
    let store = FileStore::open(DIR, opts(&vfs2)).unwrap();
    assert_eq!(check_state(&w, &store, &|| "older header".into()), 6);
    // Now write under the new salt, then damage the active header: Corrupt.
    block_on(store.commit(w.commit_of(&Spec {
        id: 6,
        pages: vec![1],
        durable: true,
    })))
    .unwrap();
    let files = vfs2.durable_files();
    std::mem::forget(store);
    let data = &files[&data_path()];
    let active = if seq_of(data, 1) > seq_of(data, 0) {
        1
    } else {
        0
    };
    let mut img = files;
    img.get_mut(&data_path()).unwrap()[active * HEADER_BLOCK as usize + 30] ^= 0xFF;
    match FileStore::open(DIR, opts(&FaultVfs::with_files(img))) {
        Err(StoreError::Corrupt { file, offset, .. }) => {
            assert!(file.ends_with(DATA_FILE));
            assert_eq!(offset, active as u64 * HEADER_BLOCK);
        }
        Err(e) => panic!("expected Corrupt, got {e}"),
        Ok(_) => panic!("damaged header accepted"),
    }
    // Both header slots damaged: Corrupt naming the data file.
    let mut img = vfs2.durable_files();
    let d = img.get_mut(&data_path()).unwrap();
    d[30] ^= 1;
    d[HEADER_BLOCK as usize + 30] ^= 1;
    assert!(matches!(
        FileStore::open(DIR, opts(&FaultVfs::with_files(img))),
        Err(StoreError::Corrupt { offset: 0, .. })
    ));
}

fn seq_of(data: &[u8], slot: usize) -> u64 {
    u64::from_le_bytes(data[slot * 4096 + 16..slot * 4096 + 24].try_into().unwrap())
}

// ---------------------------------------------------------------------------
// Plain behaviour
// ---------------------------------------------------------------------------

#[test]
fn group_commit_on_real_files() {
    let dir = std::env::temp_dir().join(format!("outpost-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let w = Workload::new(7, 60);
    {
        let store = FileStore::open(&dir, FileStoreOptions::default()).unwrap();
        assert_eq!(block_on(store.read_meta()).unwrap(), None);
        assert!(matches!(
            block_on(store.read_page(1)),
            Err(StoreError::PageNotFound(1))
        ));
        let specs: Vec<Spec> = w.steps.iter().flat_map(step_specs).collect();
        // All 60 commits issued at once: the writer merges them into few groups.
        let futs: Vec<_> = specs.iter().map(|s| store.commit(w.commit_of(s))).collect();
        for r in block_on(join_all(futs)) {
            r.unwrap();
        }
        block_on(store.sync()).unwrap();
        assert_eq!(check_state(&w, &store, &|| "live".into()), 60);
        let st = store.stats();
        assert_eq!(st.commits, 60);
        assert!(st.groups < 60, "no grouping happened: {st:?}");
        assert!(st.fsyncs <= st.groups + 4, "{st:?}");
        block_on(store.close()).unwrap();
        assert!(matches!(
            block_on(store.commit(w.commit_of(&specs[0]))),
            Err(StoreError::Closed)
        ));
    }
    let store = FileStore::open(&dir, FileStoreOptions::default()).unwrap();
    assert_eq!(check_state(&w, &store, &|| "reopened".into()), 60);
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Where a lone commit (`PageStore::commit_alone`) is written: in the
/// caller's thread when the writer thread is idle and the commit small;
/// otherwise by the writer thread, after every request sent before it.
#[test]
fn lone_commits_are_written_in_the_callers_thread_when_the_writer_is_idle() {
    let vfs = FaultVfs::new();
    let store = FileStore::open(DIR, opts(&vfs)).unwrap();
    let page = |id: u64, no: u64| (no, Arc::new(page_content(id, no)));
    let commit = |id: u64, pages: Vec<u64>| Commit {
        pages: pages.into_iter().map(|no| page(id, no)).collect(),
        meta: self_checked_meta(id),
        durability: Durability::Durable,
    };
    assert!(store.commits_alone());
    block_on(store.commit_alone(commit(1, vec![1, 2]))).unwrap();
    assert_eq!(store.stats().inline_commits, 1);
    assert_eq!(
        block_on(store.read_page(2)).unwrap()[..],
        page_content(1, 2)[..]
    );
    // Pages staged for it: the writer thread has a request in flight, or
    // staged frames, so the commit goes to it and finds them in order.
    let c = commit(2, vec![3, 4]);
    store.stage(vec![c.pages[0].clone()]);
    block_on(store.commit_alone(c)).unwrap();
    let st = store.stats();
    assert_eq!(
        (st.inline_commits, st.commits, st.staged_kept),
        (1, 2, 1),
        "{st:?}"
    );
    // More pages than a lone commit writes in the caller's thread.
    block_on(store.commit_alone(commit(3, (1..=17).collect()))).unwrap();
    assert_eq!(store.stats().inline_commits, 1);
    // The writer thread may still be busy with it (a checkpoint after it):
    // lone commits go to the thread until it is idle again.
    let mut id = 4;
    while store.stats().inline_commits < 2 {
        assert!(id < 400, "no lone commit in this thread after a busy spell");
        std::thread::sleep(std::time::Duration::from_millis(5));
        block_on(store.commit_alone(commit(id, vec![5]))).unwrap();
        id += 1;
    }
    let last = id - 1;
    assert_eq!(
        block_on(store.read_meta()).unwrap(),
        Some(self_checked_meta(last))
    );
    let durable = vfs.durable_files();
    block_on(store.close()).unwrap();
    assert!(matches!(
        block_on(store.commit_alone(commit(id, vec![1]))),
        Err(StoreError::Closed)
    ));
    // Everything acknowledged survives a crash that keeps only synced bytes.
    let store = FileStore::open(DIR, opts(&FaultVfs::with_files(durable))).unwrap();
    assert_eq!(
        block_on(store.read_meta()).unwrap(),
        Some(self_checked_meta(last))
    );
    assert_eq!(
        block_on(store.read_page(3)).unwrap()[..],
        page_content(3, 3)[..]
    );
    assert_eq!(
        block_on(store.read_page(5)).unwrap()[..],
        page_content(last, 5)[..]
    );
    drop(store);
    // Turned off: every commit goes to the writer thread.
    let vfs = FaultVfs::new();
    let off = FileStoreOptions {
        inline_commit: false,
        ..opts(&vfs)
    };
    let store = FileStore::open(DIR, off).unwrap();
    assert!(!store.commits_alone());
    block_on(store.commit_alone(commit(1, vec![1]))).unwrap();
    let st = store.stats();
    assert_eq!((st.inline_commits, st.commits), (0, 1), "{st:?}");
}

#[test]
fn invalid_commits_are_refused() {
    let vfs = FaultVfs::new();
    let store = FileStore::open(DIR, opts(&vfs)).unwrap();
    let bad = Commit {
        pages: vec![(0, Arc::new(vec![0; PAGE_SIZE]))],
        meta: vec![],
        durability: Durability::Durable,
    };
    assert!(matches!(
        block_on(store.commit(bad)),
        Err(StoreError::InvalidCommit(_))
    ));
    let bad = Commit {
        pages: vec![(1, Arc::new(vec![0; 10]))],
        meta: vec![],
        durability: Durability::Durable,
    };
    assert!(matches!(
        block_on(store.commit(bad)),
        Err(StoreError::InvalidCommit(_))
    ));
}

// ---------------------------------------------------------------------------
// Torn frames over older frames
// ---------------------------------------------------------------------------

/// A 60-byte meta record ending in a CRC-32 of the rest, as the engine's meta
/// record does.
fn self_checked_meta(id: u64) -> Vec<u8> {
    let mut m = vec![(id * 31 % 251) as u8; 60];
    m[..8].copy_from_slice(&id.to_le_bytes());
    let crc = crc32fast::hash(&m[..56]);
    m[56..].copy_from_slice(&crc.to_le_bytes());
    m
}

/// Regression (found by the engine crash test): a write torn at the sector
/// boundary between a frame's header and its payload leaves the new header in
/// front of the payload of the frame an earlier WAL generation kept in that slot.
/// Here the commit frames of both generations start at 7 * 4160 = 29120, so
/// their payloads start at 29184 = 57 * 512 (in format 2 every eighth frame
/// did; in format 3 frames have different lengths, and the pages are chosen
/// to put the commit frames there). When both payloads are meta records carrying their own CRC-32 (the
/// engine's do), a CRC-32 over header and payload cannot tell them apart: the
/// appended CRC makes the difference of the two payloads a multiple of the CRC
/// polynomial. The old frame store accepted the mixed frame and recovered the
/// stale meta record of the older generation, older than an acknowledged durable
/// commit. Every 512-byte tear of the last write must recover the durable commit.
#[test]
fn torn_frame_over_an_older_generation_is_not_replayed() {
    let vfs = FaultVfs::new();
    let mut o = opts(&vfs);
    o.checkpoint_wal_bytes = 1 << 30;
    // Page 14 stores 3968 bytes (a 4032-byte frame), so that commit 3's
    // commit frame lands where commit 1's did.
    let content = |id: u64, p: u64| {
        let mut b = page_content(id, p);
        if p == 14 {
            b[3968..].fill(0);
        }
        b
    };
    let page = |id: u64, p: u64| Arc::new(content(id, p));
    let commit = |store: &FileStore, id: u64, pages: std::ops::RangeInclusive<u64>, durability| {
        block_on(store.commit(Commit {
            pages: pages.map(|p| (p, page(id, p))).collect(),
            meta: self_checked_meta(id),
            durability,
        }))
        .unwrap();
    };
    // Generation A: commit 1 = pages 1..=7 (frames of 4160 bytes), its
    // commit frame at 29120.
    let store = FileStore::open(DIR, o.clone()).unwrap();
    commit(&store, 1, 1..=7, Durability::Durable);
    drop(store); // checkpoints; the WAL keeps generation A's frames
    // Generation B (open checkpoints again: a fresh salt, WAL restarts at slot 0).
    let store = FileStore::open(DIR, o.clone()).unwrap();
    commit(&store, 2, 8..=8, Durability::Durable); // frames 0, 1: acknowledged durable
    commit(&store, 3, 9..=14, Durability::Relaxed); // frames 2..=8: written, never fsynced
    let durable = vfs.durable_files();
    let current = vfs.current_files();
    std::mem::forget(store); // crash: no close
    let f = frames(&current[&wal_path()], 9);
    let (start, end) = (f[2].0, f[8].0 + f[8].1);
    assert_eq!(
        f[8].0,
        7 * FRAME_SIZE,
        "commit 3's commit frame over commit 1's"
    );
    assert_eq!((f[8].0 + FRAME_HEADER) % 512, 0);
    assert!(current[&wal_path()][..start] == durable[&wal_path()][..start]);
    assert!(current[&wal_path()][start..end] != durable[&wal_path()][start..end]);
    let mut checked = 0;
    // Commit 3's write torn at every sector boundary inside it, then intact.
    let mut recovered = [0u64; 4];
    for cut in (start.next_multiple_of(512)..end).step_by(512).chain([end]) {
        let mut img = durable.clone();
        let wal = img.get_mut(&wal_path()).unwrap();
        wal[..cut].copy_from_slice(&current[&wal_path()][..cut]);
        // Commit 3 is complete once the rest of its write equals what is there
        // already (the zero padding after the meta record in slot 7).
        let want = if wal[..end] == current[&wal_path()][..end] {
            3
        } else {
            2
        };
        let store = FileStore::open(DIR, opts(&FaultVfs::with_files(img)))
            .unwrap_or_else(|e| panic!("torn at {cut}: open failed: {e}"));
        let meta = block_on(store.read_meta()).unwrap().unwrap();
        let got = u64::from_le_bytes(meta[..8].try_into().unwrap());
        assert_eq!(
            meta,
            self_checked_meta(want),
            "torn at {cut}: recovered commit {got}, want commit {want} (commit 2 was acknowledged durable)"
        );
        for p in 1..=14u64 {
            let by = match p {
                1..=7 => 1,
                8 => 2,
                _ => 3,
            };
            match block_on(store.read_page(p)) {
                Ok(buf) if by <= want => {
                    assert!(buf[..] == content(by, p)[..], "torn at {cut}: page {p}")
                }
                Err(StoreError::PageNotFound(_)) if by > want => {}
                other => panic!(
                    "torn at {cut}: page {p} (commit {by}, recovered commit {want}): {:?}",
                    other.map(|b| u64::from_le_bytes(b[..8].try_into().unwrap()))
                ),
            }
        }
        recovered[want as usize] += 1;
        checked += 1;
    }
    assert!(recovered[2] > 40 && recovered[3] >= 1, "{recovered:?}");
    println!("store crash images checked: {checked} (torn over an older generation)");
}
