//! Crash at every I/O operation of a workload: every post-crash image reopens
//! to the last acknowledged durable commit or later.

use super::*;

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
