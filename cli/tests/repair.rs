//! `outpost repair` and `outpost export` with a record that does not decode
//! (issue 10, class 1, read side): export completes with every readable
//! document and a warning naming the record and the repair command; `check`
//! lists it; `repair --dry-run` lists it and changes nothing; `repair` sets
//! it aside, after which the database checks clean.

mod common;

use std::path::Path;

use common::{ok, run, stderr, stdout};
use futures::executor::block_on;
use outpost::db::{Database, OpenOptions};
use outpost::store::file::{FileStore, FileStoreOptions};
use outpost_testkit::TempDir;
use serde_json::Value;

fn temp_dir(name: &str) -> TempDir {
    TempDir::new(env!("CARGO_TARGET_TMPDIR"), &format!("repair-{name}"))
}

/// Puts `a/1`, `bad/1`, `a/2` with the CLI, then replaces the record of
/// `bad/1` with bytes that are not a record (through the engine's test hook,
/// with the CLI not running).
fn planted(db: &Path) {
    for (id, n) in [("a/1", 1), ("bad/1", 2), ("a/2", 3)] {
        ok(run(db, &["put", id, &format!("{{\"n\":{n}}}")]));
    }
    let store = FileStore::open(db, FileStoreOptions::default()).unwrap();
    let d = block_on(Database::open(store, OpenOptions::default())).unwrap();
    block_on(d.testing_overwrite_record("bad/1", b"\x09garbage")).unwrap();
    block_on(d.close()).unwrap();
}

fn lines(s: &str) -> Vec<Value> {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn export_skips_an_unreadable_record_with_a_warning() {
    let t = temp_dir("export");
    let db = t.join("db");
    planted(&db);
    let o = run(&db, &["export"]);
    let err = stderr(&o);
    assert!(o.status.success(), "exit {:?}: {err}", o.status);
    let ids: Vec<String> = lines(&stdout(&o))
        .iter()
        .map(|v| v["@metadata"]["@id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["a/1", "a/2"]);
    assert!(
        err.contains("warning: skipped unreadable record \"bad/1\" (etag 2, 8 bytes)"),
        "{err}"
    );
    assert!(
        err.contains(&format!("`outpost repair {}`", db.display())),
        "{err}"
    );
    assert!(err.contains("exported 2 documents"), "{err}");
    // The changes feed goes on past it too.
    let changes = ok(run(&db, &["changes"]));
    assert_eq!(lines(&changes).len(), 2);
}

#[test]
fn check_lists_it_repair_sets_it_aside() {
    let t = temp_dir("repair");
    let db = t.join("db");
    planted(&db);
    let o = run(&db, &["check"]);
    assert!(!o.status.success());
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let problems = report["problems"].to_string();
    assert!(
        problems.contains("unreadable record \\\"bad/1\\\" (etag 2, 8 bytes)"),
        "{problems}"
    );

    // --dry-run lists and changes nothing (the directory given as --db
    // here, as an argument below).
    let o = run(&db, &["repair", "--dry-run"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let listed = lines(&stdout(&o));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["key"], "bad/1");
    assert_eq!(listed[0]["etag"], 2);
    assert_eq!(listed[0]["bytes"], 8);
    assert!(
        listed[0]["error"]
            .as_str()
            .unwrap()
            .contains("format version")
    );
    assert!(listed[0].get("moved_to").is_none());
    assert!(err.contains("dry run"), "{err}");
    assert!(!run(&db, &["check"]).status.success());

    // repair moves it aside.
    let o = run(&t.join("elsewhere"), &["repair", db.to_str().unwrap()]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let moved = lines(&stdout(&o));
    assert_eq!(moved.len(), 1);
    assert_eq!(
        moved[0]["moved_to"],
        "quarantine/00000000000000000002/bad/1"
    );
    assert!(err.contains("moved 1 unreadable record"), "{err}");
    ok(run(&db, &["check"]));
    let stats: Value = serde_json::from_str(&ok(run(&db, &["stats"]))).unwrap();
    assert_eq!(stats["documents"], 2);
    assert_eq!(stats["engine"]["unreadable_records"], 0);
    // Nothing left to repair; the raw bytes are kept.
    let o = run(&db, &["repair", "--dry-run"]);
    assert!(stdout(&o).trim().is_empty());
    assert!(stderr(&o).contains("no unreadable records"));
    let store = FileStore::open(&db, FileStoreOptions::default()).unwrap();
    let d = block_on(Database::open(store, OpenOptions::default())).unwrap();
    let kept = block_on(d.get_local(b"quarantine/00000000000000000002/bad/1")).unwrap();
    assert_eq!(kept.as_deref(), Some(&b"\x09garbage"[..]));
    block_on(d.close()).unwrap();
}

/// A document whose value's overflow chain is damaged, in a real database
/// directory: `check` names it, `repair` sets it aside and frees the pages
/// past the damage, and the database then checks clean (no page leaked).
#[test]
fn a_damaged_overflow_chain_is_set_aside() {
    let t = temp_dir("chain");
    let db = t.join("db");
    ok(run(&db, &["put", "a/1", r#"{"n":1}"#]));
    let big = format!("{{\"text\":\"{}\"}}", "x".repeat(24 * 1024));
    ok(run(&db, &["put", "big/1", &big]));
    ok(run(&db, &["put", "a/2", r#"{"n":2}"#]));
    let store = FileStore::open(&db, FileStoreOptions::default()).unwrap();
    let d = block_on(Database::open(store, OpenOptions::default())).unwrap();
    block_on(d.testing_break_overflow_chain("big/1", true)).unwrap();
    block_on(d.close()).unwrap();

    let o = run(&db, &["check"]);
    assert!(!o.status.success());
    let problems = serde_json::from_str::<Value>(&stdout(&o)).unwrap()["problems"].to_string();
    assert!(
        problems.contains(
            "unreadable record \\\"big/1\\\" (etag 2, 0 bytes): a page holding it is damaged"
        ),
        "{problems}"
    );
    // Export goes on past it, naming it.
    let o = run(&db, &["export"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(lines(&stdout(&o)).len(), 2);
    assert!(
        stderr(&o).contains("skipped unreadable record \"big/1\""),
        "{}",
        stderr(&o)
    );
    let o = run(&db, &["repair"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let moved = lines(&stdout(&o));
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(moved[0]["key"], "big/1");
    ok(run(&db, &["check"]));
    let stats: Value = serde_json::from_str(&ok(run(&db, &["stats"]))).unwrap();
    assert_eq!(stats["documents"], 2);
    ok(run(&db, &["put", "big/2", &big]));
    ok(run(&db, &["check"]));
}

#[test]
fn repair_help_explains_it() {
    let t = temp_dir("help");
    let out = ok(run(&t.join("db"), &["repair", "--help"]));
    for needle in ["--dry-run", "quarantine/", "hub stopped", "check"] {
        assert!(out.contains(needle), "{needle}: {out}");
    }
}

#[test]
fn put_refuses_what_the_strict_body_check_refuses() {
    let t = temp_dir("put");
    let db = t.join("db");
    for (body, rule) in [
        (r#"{"a":1,"\u0061":2}"#, "duplicate_key"),
        (r#"{"a":"\ud800"}"#, "lone_surrogate"),
        (r#"{"a":1e400}"#, "number_out_of_range"),
    ] {
        let o = run(&db, &["put", "x/1", body]);
        let err = stderr(&o);
        assert!(!o.status.success(), "{body} accepted");
        assert!(
            err.contains(rule) && err.contains("(invalid_json)"),
            "{body}: {err}"
        );
    }
    let deep = format!("{{\"a\":{}{}}}", "[".repeat(70), "]".repeat(70));
    let err = stderr(&run(&db, &["put", "x/1", &deep]));
    assert!(err.contains("too_deep"), "{err}");
    ok(run(&db, &["put", "x/1", r#"{"a":"\ud83d\ude00"}"#]));
}
