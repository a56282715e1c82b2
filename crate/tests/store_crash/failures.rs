//! Failing operations, once or forever: the error is reported, the store
//! poisons, a reopen recovers.

use super::*;

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
