//! Bounded tombstones with real processes (issue "bounded tombstones";
//! docs/protocol.md §4 "Tombstone compaction"): a real `outpost-hub`
//! process, `outpost-hub compact` run by an operator against it, and real
//! native edges over real files. Deletions every device acknowledged are
//! removed at the hub and every edge still converges; a device away past
//! the retention comes back, resyncs, loses the documents deleted
//! meanwhile (no resurrection) and keeps (and pushes) what it wrote
//! offline.

mod common;

use std::time::{Duration, Instant};

use common::*;
use outpost_testkit::hub::{ADMIN_TOKEN, free_port, wait_until};
use serde_json::{Value, json};

/// `outpost-hub compact --json ARGS` against the running hub (admin
/// token): the report.
fn compact(hub: &HubProc, args: &[&str]) -> Value {
    let (ok, out, err) = run(
        hub,
        &[&["compact", "--json", "--admin-token", ADMIN_TOKEN], args].concat(),
    );
    assert!(ok, "compact failed: {err}");
    assert!(err.contains("sent to the running hub"), "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Database "main" in the hub's `GET /status`.
fn main_status(hub: &HubProc) -> Value {
    let (_, body) = hub.proc.get("/status");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["databases"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["name"] == "main"))
        .cloned()
        .unwrap_or_else(|| panic!("no database main in {body}"))
}

async fn missing(db: &Db, id: &str) -> bool {
    db.get(id).await.unwrap().is_none()
}

/// Ids (lowercase) of every record of the feed, live or deleted.
async fn feed_ids(db: &Db) -> Vec<String> {
    db.changes(0, 10_000_000)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id.to_lowercase())
        .collect()
}

const N: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_deletions_are_compacted_and_every_edge_converges() {
    let tmp = temp_dir("compact");
    let edges = edge_toml("alice", "", &["notes/"], &["notes/"])
        + &edge_toml("bob", "", &["notes/"], &["notes/"]);
    let mut hub = HubProc::new(tmp.join("hub"), free_port(), &edges);
    let adb = open_edge_db(&tmp.join("alice")).await;
    let bdb = open_edge_db(&tmp.join("bob")).await;
    let ca = client(&adb, &hub.url(), "alice", "");
    let cb = client(&bdb, &hub.url(), "bob", "");
    wait_live(&ca).await;
    wait_live(&cb).await;

    for i in 0..N {
        let id = format!("notes/n-{i:03}");
        put(&adb, Some(&ca), &id, json!({ "i": i }), "Notes").await;
    }
    wait_until("bob holds the notes", || async {
        bdb.count().await.unwrap() == N as u64
    })
    .await;
    wait_until("the hub holds the notes", || async {
        hub.documents() == N as u64
    })
    .await;

    // Nothing is deleted yet: nothing to compact.
    let r = compact(&hub, &[]);
    assert_eq!(r["removed"], 0, "{r}");
    assert_eq!(r["tombstones_left"], 0, "{r}");

    for i in 0..N {
        adb.delete(&format!("notes/n-{i:03}")).await.unwrap();
    }
    ca.local_changed();
    wait_until("bob sees the deletions", || async {
        bdb.count().await.unwrap() == 0
    })
    .await;
    wait_until("the hub holds the tombstones", || async {
        main_status(&hub)["tombstones"] == N as u64
    })
    .await;

    // Both devices acknowledge the deletions (each records its
    // acknowledgement at most every 5 s): compact until nothing is held
    // back. Whatever the runs, they remove each tombstone once.
    let t = Instant::now();
    let mut removed = 0;
    let mut runs = Vec::new();
    loop {
        let r = compact(&hub, &[]);
        removed += r["removed"].as_u64().unwrap();
        runs.push(r.clone());
        if r["tombstones_left"] == 0 {
            assert!(r["held_back_by"].is_null(), "{r}");
            assert_eq!(r["expired"], json!([]), "{r}");
            assert!(r["horizon"].as_u64().unwrap() >= r["watermark"].as_u64().unwrap());
            break;
        }
        assert!(
            t.elapsed() < WAIT,
            "the tombstones were never all acknowledged: {runs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(removed, N as u64, "{runs:#?}");
    // A run that removed tombstones did not grow the file.
    for r in runs.iter().filter(|r| r["removed"].as_u64() > Some(0)) {
        let (before, after) = (r["pages_before"].as_u64(), r["pages_after"].as_u64());
        assert!(after.is_some() && after <= before, "{r}");
    }

    // The operator surface shows it.
    let s = main_status(&hub);
    assert_eq!(s["tombstones"], 0, "{s}");
    assert_eq!(s["documents"], 0, "{s}");
    assert_eq!(s["compaction"]["removed"], N as u64, "{s}");
    assert!(
        s["compaction"]["through"].as_u64() >= s["compaction"]["horizon"].as_u64(),
        "{s}"
    );
    assert!(s["pages"].as_u64() > s["free_pages"].as_u64(), "{s}");
    assert!(s["compaction"]["horizon"].as_u64().unwrap() > 0, "{s}");
    assert!(s["compaction"]["last_run"].is_string(), "{s}");
    let metrics = hub.metrics();
    assert!(
        metrics
            .lines()
            .any(|l| l == format!("outpost_tombstones_compacted_total{{database=\"main\"}} {N}")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l == "outpost_database_tombstones{database=\"main\"} 0"),
        "{metrics}"
    );
    let (ok, text, err) = run(&hub, &["status", "--admin-token", ADMIN_TOKEN]);
    assert!(ok, "{err}");
    assert!(text.contains(&format!("({N} removed in all)")), "{text}");
    // The hub's stderr is read by another thread: wait for the line.
    hub.proc.wait_log("tombstone compaction");

    // Every edge still converges, both ways, without resurrecting a note.
    put(
        &bdb,
        Some(&cb),
        "notes/after-b",
        json!({ "s": "b" }),
        "Notes",
    )
    .await;
    put(
        &adb,
        Some(&ca),
        "notes/after-a",
        json!({ "s": "a" }),
        "Notes",
    )
    .await;
    wait_until("the new notes cross", || async {
        adb.get("notes/after-b").await.unwrap().is_some()
            && bdb.get("notes/after-a").await.unwrap().is_some()
    })
    .await;
    wait_until("the hub holds the two new notes", || async {
        hub.documents() == 2
    })
    .await;
    for db in [&adb, &bdb] {
        assert_eq!(db.count().await.unwrap(), 2);
        for i in [0, N / 2, N - 1] {
            assert!(missing(db, &format!("notes/n-{i:03}")).await);
        }
    }
    assert!(
        ca.status() == outpost::sync::SyncStatus::Live,
        "{:?}",
        ca.status()
    );
    assert!(
        cb.status() == outpost::sync::SyncStatus::Live,
        "{:?}",
        cb.status()
    );

    // Bob's tombstones came from the hub: the `Compacted` of his next read
    // let him compact them.
    wait_until("bob compacts the deletions he received", || async {
        bdb.stats().tombstones == 0
    })
    .await;
    // Alice's are her own deletions: she compacts them once a session's
    // `Welcome` said the hub holds them and the hub compacted through its
    // last etag then. Her first session began before she deleted.
    let t = Instant::now();
    loop {
        let r = compact(&hub, &[]);
        if r["held_back_by"].is_null() {
            break;
        }
        assert!(t.elapsed() < WAIT, "never compacted through: {r}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(adb.stats().tombstones, N as u64, "alice's own deletions");
    ca.stop().await;
    let ca = client(&adb, &hub.url(), "alice", "");
    wait_live(&ca).await;
    wait_until("alice compacts her own deletions", || async {
        adb.stats().tombstones == 0
    })
    .await;
    assert_eq!(adb.count().await.unwrap(), 2);

    // Bad requests get the hub's reason, as a typed JSON error.
    let (ok, _, err) = run(
        &hub,
        &[
            "compact",
            "--database",
            "nope",
            "--admin-token",
            ADMIN_TOKEN,
        ],
    );
    assert!(!ok && err.contains("no database named \"nope\""), "{err}");
    let (ok, _, err) = run(&hub, &["compact"]);
    assert!(!ok && err.contains("admin token"), "{err}");
    let (ok, _, err) = run(
        &hub,
        &["compact", "--retention", "0", "--admin-token", ADMIN_TOKEN],
    );
    assert!(!ok && err.contains("--retention"), "{err}");

    ca.stop().await;
    cb.stop().await;

    // On the stopped hub the command works on the database directly.
    hub.kill();
    let (ok, out, err) = run(&hub, &["compact", "--retention", "1d"]);
    assert!(ok, "{err}");
    assert!(!err.contains("sent to the running hub"), "{err}");
    assert!(
        out.contains("compacted database main: 0 tombstones removed"),
        "{out}"
    );
    assert!(out.contains("tombstones left: 0"), "{out}");
    let db = hub.open_db().await;
    let mut ids = feed_ids(&db).await;
    ids.sort();
    assert_eq!(ids, ["notes/after-a", "notes/after-b"], "{ids:?}");
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_offline_past_retention_resyncs_instead_of_resurrecting() {
    let tmp = temp_dir("compact-resync");
    let edges = edge_toml("alice", "", &["notes/"], &["notes/"])
        + &edge_toml("carol", "", &["notes/"], &["notes/"])
        + "\n[compaction]\nretention_secs = 1\ninterval_secs = 0\n";
    let mut hub = HubProc::new(tmp.join("hub"), free_port(), &edges);
    let adb = open_edge_db(&tmp.join("alice")).await;
    let cdb = open_edge_db(&tmp.join("carol")).await;
    let ca = client(&adb, &hub.url(), "alice", "");
    let cc = client(&cdb, &hub.url(), "carol", "");
    wait_live(&ca).await;
    wait_live(&cc).await;
    for id in ["x", "y", "z"] {
        let body = json!({ "v": format!("{id} from alice") });
        put(&adb, Some(&ca), &format!("notes/{id}"), body, "Notes").await;
    }
    wait_until("carol holds x, y and z", || async {
        cdb.count().await.unwrap() == 3
    })
    .await;

    // Carol goes offline; meanwhile alice deletes x and y, and carol edits
    // z and writes w there.
    cc.stop().await;
    adb.delete("notes/x").await.unwrap();
    adb.delete("notes/y").await.unwrap();
    ca.local_changed();
    wait_until("the hub holds the two tombstones", || async {
        main_status(&hub)["tombstones"] == 2
    })
    .await;
    put(
        &cdb,
        None,
        "notes/z",
        json!({ "v": "z edited by carol offline" }),
        "Notes",
    )
    .await;
    put(
        &cdb,
        None,
        "notes/w",
        json!({ "v": "w written by carol offline" }),
        "Notes",
    )
    .await;

    // Past the retention (1 s), carol no longer holds compaction back.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t = Instant::now();
    let mut removed = 0;
    let r = loop {
        let r = compact(&hub, &[]);
        removed += r["removed"].as_u64().unwrap();
        if r["tombstones_left"] == 0 {
            break r;
        }
        assert!(t.elapsed() < WAIT, "never compacted: {r}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(removed >= 2, "{r}");
    let expired = r["expired"].as_array().unwrap();
    assert!(
        expired
            .iter()
            .any(|d| d.as_str().unwrap().starts_with("carol/")),
        "carol is listed as expired: {r}"
    );
    assert!(r["retention_secs"] == 1, "{r}");
    let horizon = main_status(&hub)["compaction"]["horizon"].as_u64().unwrap();
    assert!(horizon > 0);

    // Carol comes back: resynced, she drops x and y (the hub no longer
    // knows they were deleted, and does not get them back), keeps her edit
    // of z and w, and pushes them.
    let cc = client(&cdb, &hub.url(), "carol", "");
    wait_live(&cc).await;
    wait_until("carol's offline writes reach alice", || async {
        adb.get("notes/w").await.unwrap().is_some()
            && adb
                .get("notes/z")
                .await
                .unwrap()
                .is_some_and(|d| d.body["v"] == "z edited by carol offline")
    })
    .await;
    wait_until("carol dropped x and y", || async {
        missing(&cdb, "notes/x").await && missing(&cdb, "notes/y").await
    })
    .await;
    assert!(
        hub.log()
            .lines()
            .any(|l| l.contains("edge resyncs") && l.contains("carol")),
        "the hub logs carol's resync: {}",
        hub.log()
    );
    assert_eq!(
        cdb.get("notes/z").await.unwrap().unwrap().body["v"],
        "z edited by carol offline"
    );
    assert!(cdb.get("notes/w").await.unwrap().is_some());
    for db in [&adb, &cdb] {
        assert!(missing(db, "notes/x").await && missing(db, "notes/y").await);
        assert_eq!(db.count().await.unwrap(), 2);
    }
    // Whatever carol's feed holds, x and y never come back to the hub.
    wait_until("the hub holds z and w only", || async {
        hub.documents() == 2
    })
    .await;
    put(&adb, Some(&ca), "notes/v", json!({ "v": "after" }), "Notes").await;
    wait_until("a later write still flows", || async {
        cdb.get("notes/v").await.unwrap().is_some()
    })
    .await;
    assert_eq!(hub.documents(), 3);
    // The hub's stderr is read by another thread: wait for the line.
    hub.proc.wait_log("tombstone compaction");
    ca.stop().await;
    cc.stop().await;

    // The hub's own files: x and y are gone for good, not even a tombstone.
    hub.kill();
    let db = hub.open_db().await;
    let mut ids = feed_ids(&db).await;
    ids.sort();
    assert_eq!(ids, ["notes/v", "notes/w", "notes/z"], "{ids:?}");
    db.close().await.unwrap();
}

/// `POST path` with a JSON body (and the admin token unless `None`) over
/// plain HTTP: the status code and the body.
fn post(hub: &HubProc, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    hub.proc.post(path, Some(token.unwrap_or_default()), body)
}

/// `[compaction] interval_secs`: the running hub compacts by itself (and
/// counts it); `POST /admin/compact` answers bad requests with a typed
/// JSON error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_hub_compacts_every_interval_and_refuses_bad_requests() {
    let tmp = temp_dir("compact-interval");
    let edges = edge_toml("alice", "", &["notes/"], &["notes/"])
        + "\n[compaction]\nretention_secs = 1\ninterval_secs = 1\n";
    let hub = HubProc::new(tmp.join("hub"), free_port(), &edges);
    let adb = open_edge_db(&tmp.join("alice")).await;
    let ca = client(&adb, &hub.url(), "alice", "");
    wait_live(&ca).await;
    for i in 0..5 {
        put(
            &adb,
            Some(&ca),
            &format!("notes/{i}"),
            json!({ "i": i }),
            "N",
        )
        .await;
    }
    wait_until("the hub holds the notes", || async { hub.documents() == 5 }).await;
    for i in 0..5 {
        adb.delete(&format!("notes/{i}")).await.unwrap();
    }
    ca.local_changed();
    // (The record says 5 removed before the run ends: the run vacuums the
    // file after it; the metric counts a run once it ended.)
    wait_until("the hub compacted the deletions by itself", || async {
        let s = main_status(&hub);
        s["documents"] == 0
            && s["tombstones"] == 0
            && s["compaction"]["removed"] == 5
            && hub
                .metrics()
                .lines()
                .any(|l| l == "outpost_tombstones_compacted_total{database=\"main\"} 5")
    })
    .await;
    assert!(hub.log().contains("interval"), "{}", hub.log());
    // The edge goes on.
    put(&adb, Some(&ca), "notes/next", json!({ "s": 1 }), "N").await;
    wait_until("a later write reaches the hub", || async {
        hub.documents() == 1
    })
    .await;

    let path = "/admin/compact";
    let (code, body) = post(&hub, path, None, r#"{"database":"main"}"#);
    assert_eq!(code, 401, "{body}");
    for (req, want, says) in [
        ("{", 400, "not valid JSON"),
        (r#"{"database":"main","every":1}"#, 400, "unknown field"),
        (r#"{"retention_secs":5}"#, 400, "database"),
        (
            r#"{"database":"main","retention_secs":0}"#,
            400,
            "retention_secs",
        ),
        (r#"{"database":"nope"}"#, 404, "no open database named"),
    ] {
        let (code, body) = post(&hub, path, Some(ADMIN_TOKEN), req);
        assert_eq!(code, want, "{req}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert!(v["error"].as_str().unwrap().contains(says), "{req}: {body}");
    }
    let (code, body) = post(&hub, path, Some(ADMIN_TOKEN), r#"{"database":"main"}"#);
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["database"], "main", "{v}");
    assert_eq!(v["retention_secs"], 1, "{v}");
    assert_eq!(v["tombstones_left"], 0, "{v}");
    // `--url` names the hub; the report as text.
    let url = format!("http://127.0.0.1:{}", hub.port);
    let (ok, out, err) = run(
        &hub,
        &["compact", "--url", &url, "--admin-token", ADMIN_TOKEN],
    );
    assert!(ok && err.contains("sent to the running hub"), "{err}");
    for s in [
        "compacted database main: 0 tombstones removed",
        "held back by:",
        "tombstones left: 0",
    ] {
        assert!(out.contains(s), "{s}: {out}");
    }
    ca.stop().await;
}

/// A device whose changes since its last (non-zero) checkpoint are all
/// its own is never sent them (it has them): the hub's empty `Changes` up
/// to the cursor (at most every 5 s once caught up) moves its
/// acknowledgement past them, so it does not hold compaction of its own
/// deletions back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_only_deletes_does_not_hold_compaction_back() {
    let tmp = temp_dir("compact-own");
    let edges = edge_toml("alice", "", &["notes/"], &["notes/"])
        + &edge_toml("bob", "", &["notes/"], &["notes/"]);
    let hub = HubProc::new(tmp.join("hub"), free_port(), &edges);
    let adb = open_edge_db(&tmp.join("alice")).await;
    let bdb = open_edge_db(&tmp.join("bob")).await;
    let ca = client(&adb, &hub.url(), "alice", "");
    let cb = client(&bdb, &hub.url(), "bob", "");
    wait_live(&ca).await;
    wait_live(&cb).await;
    for i in 0..5 {
        put(
            &adb,
            Some(&ca),
            &format!("notes/{i}"),
            json!({ "i": i }),
            "N",
        )
        .await;
    }
    wait_until("bob holds the notes", || async {
        bdb.count().await.unwrap() == 5
    })
    .await;
    // A second session of alice's: from her checkpoint, not from 0.
    ca.stop().await;
    let ca = client(&adb, &hub.url(), "alice", "");
    wait_live(&ca).await;
    for i in 0..5 {
        adb.delete(&format!("notes/{i}")).await.unwrap();
    }
    ca.local_changed();
    wait_until("bob sees the deletions", || async {
        bdb.count().await.unwrap() == 0
    })
    .await;
    let t = Instant::now();
    loop {
        let r = compact(&hub, &[]);
        if r["tombstones_left"] == 0 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "held back: {r}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    ca.stop().await;
    cb.stop().await;
}
