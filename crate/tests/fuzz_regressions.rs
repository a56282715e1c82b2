//! Replays every input the fuzz targets (`fuzz/fuzz_targets/`) found or were
//! seeded with: each file under `tests/fuzz-regressions/<target>/` goes
//! through the same check as its target (`outpost::fuzzing::check_*`), on
//! stable, in `cargo test`. A new crasher becomes a regression test by copying
//! it there (docs/testing.md, "Fuzzing"). The hub configuration target's
//! files (`config/`) are replayed by `hub/tests/fuzz_config.rs`.

#![cfg(not(target_arch = "wasm32"))]

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};

use outpost::fuzzing;

/// The check of a target.
type Check = fn(&[u8]);

/// Every target with its check.
const TARGETS: &[(&str, Check)] = &[
    ("frame", fuzzing::check_frame),
    ("record", fuzzing::check_record),
    ("change_vector", fuzzing::check_change_vector),
    ("origin", fuzzing::check_origin),
    ("local_record", fuzzing::check_local_record),
    ("jsonl", fuzzing::check_jsonl_line),
    ("meta", fuzzing::check_meta),
    ("page", fuzzing::check_page),
    ("freelist", fuzzing::check_freelist),
    ("file_store", fuzzing::check_file_store),
];

/// Panics seen on any thread (libFuzzer aborts on a panic in any thread, such
/// as the file store's WAL writer; a test only sees its own thread's).
static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Runs `check` on `data`, failing on a panic of any thread.
fn run(check: Check, data: &[u8], what: &str) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            prev(info)
        }));
    });
    let before = PANICS.load(Ordering::SeqCst);
    check(data);
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        before,
        "a thread panicked on {what}"
    );
}

fn dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-regressions")
        .join(target)
}

/// The files of a target's regression directory, sorted.
fn inputs(target: &str) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir(target)) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .map(|e| e.expect("read a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

#[test]
fn every_regression_input_passes_its_targets_check() {
    let mut ran = 0;
    for (target, check) in TARGETS {
        for path in inputs(target) {
            let data = std::fs::read(&path).expect("read a regression input");
            eprintln!("{target}: {}", path.display());
            run(*check, &data, &path.display().to_string());
            ran += 1;
        }
    }
    assert!(ran >= TARGETS.len(), "only {ran} regression inputs found");
}

#[test]
fn every_target_has_regression_inputs() {
    for (target, _) in TARGETS {
        assert!(
            !inputs(target).is_empty(),
            "no regression input for {target}"
        );
    }
}

#[test]
fn seeds_pass_their_checks_and_their_truncations_too() {
    for (target, check) in TARGETS {
        let seeds = fuzzing::seeds(target);
        assert!(!seeds.is_empty(), "no seed for {target}");
        for s in &seeds {
            run(*check, s, &format!("a {target} seed"));
            // Truncations at a few points, and one flipped byte.
            for cut in [0, 1, s.len() / 3, s.len() / 2, s.len().saturating_sub(1)] {
                run(
                    *check,
                    &s[..cut.min(s.len())],
                    &format!("a {target} seed cut at {cut}"),
                );
            }
            if !s.is_empty() {
                let mut m = s.clone();
                let at = s.len() / 2;
                m[at] ^= 0xff;
                run(*check, &m, &format!("a {target} seed with a flipped byte"));
            }
        }
    }
}

/// Crashers found by fuzzing whose fix lies outside the decoders the fuzz
/// work may change, kept under `tests/fuzz-regressions/pending/<target>/`
/// until it lands; then they move up to `<target>/` and this test has nothing
/// to run.
#[test]
#[ignore = "crashers waiting for their fix (tests/fuzz-regressions/pending/)"]
fn pending_crashers_pass_once_fixed() {
    for (target, check) in TARGETS {
        for path in inputs(&format!("pending/{target}")) {
            eprintln!("pending {target}: {}", path.display());
            let data = std::fs::read(&path).expect("read a pending input");
            run(*check, &data, &path.display().to_string());
        }
    }
}
