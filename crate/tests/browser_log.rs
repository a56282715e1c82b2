//! Browser tests of the IndexedDB store's commit log (schema version 2 and later,
//! `crate/src/store/idb/log.rs`), in real headless Chromium with real
//! IndexedDB: small commits are one log record each and are folded into the
//! page records later; a store dropped without closing (a killed tab) finds
//! every commit; two handles on one database (two tabs) see each other's
//! records and folds; a database of an older layout (version 1: pages and
//! meta only; version 2: no runs; version 3: runs without a layout record)
//! opens, reads and writes, runs included.
//!
//! Run like `tests/browser/` (scripts/test.sh runs both):
//!
//! ```text
//! CHROMEDRIVER=/usr/bin/chromedriver \
//! CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
//! cargo test -p outpost --target wasm32-unknown-unknown --test browser_log
//! ```
#![cfg(target_arch = "wasm32")]

use std::sync::Arc;

use js_sys::Uint8Array;
use outpost::store::MemoryStore;
use outpost::store::idb::IdbStore;
use outpost::{Batch, Database, OpenOptions, PageStore};
use serde_json::json;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

mod browser_common;
use browser_common::{
    assert_layout, count, layout, layout_recorded, open_db, run_keys, schema_version, unique_name,
};

wasm_bindgen_test_configure!(run_in_browser);

/// Small commits are log records; the log folds into the page records when
/// it is full and on a commit too large for a record; a store
/// dropped without closing (a killed tab) finds every commit at reopen.
#[wasm_bindgen_test]
async fn small_commits_are_log_records_folded_later() {
    let name = unique_name("log");
    let db = open_db(&name).await;
    let bucket = db.store().bucket();
    for i in 0..10 {
        db.put(
            &format!("notes/{i:02}"),
            json!({"i": i, "pad": "x".repeat(500)}),
        )
        .await
        .unwrap();
    }
    let logged = count(&name, bucket.clone(), "log").await;
    assert!(logged >= 10, "{logged} log records after 10 single writes");
    let pages_before = count(&name, bucket.clone(), "pages").await;

    // Dropped without close: nothing folded, every commit in the log.
    drop(db);
    let db = open_db(&name).await;
    assert_eq!(db.count().await.unwrap(), 10);
    for i in 0..10 {
        assert_eq!(
            db.get(&format!("notes/{i:02}"))
                .await
                .unwrap()
                .unwrap()
                .body["i"],
            i
        );
    }
    assert!(db.integrity_check().await.unwrap().is_ok());

    // Many more: the log folds on its own (it never holds more than 32 records).
    for i in 10..80 {
        db.put(&format!("notes/{i:02}"), json!({"i": i}))
            .await
            .unwrap();
        assert!(
            count(&name, bucket.clone(), "log").await <= 33,
            "after write {i}"
        );
    }
    assert!(
        count(&name, bucket.clone(), "pages").await > pages_before,
        "folded into pages"
    );

    // A large commit folds the log in its own transaction.
    let mut b = Batch::new();
    for i in 0..200 {
        b.put(
            format!("bulk/{i:03}"),
            json!({"i": i, "pad": "y".repeat(300)}),
        );
    }
    db.commit(b).await.unwrap();
    assert_eq!(
        count(&name, bucket.clone(), "log").await,
        0,
        "a large commit folds the log"
    );
    db.put("after/bulk", json!({})).await.unwrap();
    assert_eq!(count(&name, bucket.clone(), "log").await, 1);

    // Close leaves the log as it is; the next open reads it.
    db.close().await.unwrap();
    drop(db);
    assert_eq!(
        count(&name, bucket.clone(), "log").await,
        1,
        "close leaves the log"
    );
    let db = open_db(&name).await;
    assert_eq!(db.count().await.unwrap(), 281);
    let report = db.integrity_check().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    db.close().await.unwrap();
    drop(db);
    IdbStore::destroy(&name).await.unwrap();
}

/// Two handles on one database, as two tabs hold (each refreshes before it
/// touches pages, as the package's turns do): each sees the other's log
/// records, and the other's folds, through many folds of both.
#[wasm_bindgen_test]
async fn two_handles_see_each_others_records_and_folds() {
    let name = unique_name("log2");
    let a = open_db(&name).await;
    let b = open_db(&name).await;
    for round in 0..60u32 {
        let (w, r) = if round % 3 == 0 { (&b, &a) } else { (&a, &b) };
        w.refresh().await.unwrap();
        w.put(&format!("r/{round:03}"), json!({"round": round}))
            .await
            .unwrap();
        if round % 17 == 16 {
            // Now and then a large commit (a fold) from one side.
            let mut batch = Batch::new();
            for i in 0..60 {
                batch.put(format!("big/{round}/{i}"), json!({"pad": "z".repeat(400)}));
            }
            w.commit(batch).await.unwrap();
        }
        r.refresh().await.unwrap();
        let got = r
            .get(&format!("r/{round:03}"))
            .await
            .unwrap()
            .expect("the other's write");
        assert_eq!(got.body["round"], round);
        assert_eq!(r.count().await.unwrap(), w.count().await.unwrap());
    }
    for h in [&a, &b] {
        h.refresh().await.unwrap();
        let report = h.integrity_check().await.unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(h.count().await.unwrap(), 60 + 3 * 60);
    }
    a.close().await.unwrap();
    b.close().await.unwrap();
    drop((a, b));
    IdbStore::destroy(&name).await.unwrap();
}

/// A log record's transaction is told to commit as soon as its fence
/// check passes (every request issued by then; `IdbStore::check_fence`): a
/// request that fails after that still aborts it whole. The failed write
/// leaves no record, the store and a reopen see the state before it, and
/// the next write goes through.
#[wasm_bindgen_test]
async fn a_log_record_whose_request_fails_is_not_committed() {
    let name = unique_name("logfail");
    let db = open_db(&name).await;
    let bucket = db.store().bucket();
    db.put("notes/a", json!({"n": 1})).await.unwrap();
    let logged = count(&name, bucket.clone(), "log").await;
    assert!(logged >= 1, "{logged} log records");
    db.store().fail_next_commit_after(0);
    let err = db
        .put("notes/b", json!({"n": 2}))
        .await
        .expect_err("a failed request");
    assert!(err.to_string().contains("ConstraintError"), "{err}");
    assert_eq!(count(&name, bucket.clone(), "log").await, logged);
    db.refresh().await.unwrap();
    assert!(db.get("notes/b").await.unwrap().is_none());
    db.put("notes/c", json!({"n": 3})).await.unwrap();
    assert_eq!(count(&name, bucket.clone(), "log").await, logged + 1);
    drop(db);
    let db = open_db(&name).await;
    assert!(db.get("notes/a").await.unwrap().is_some());
    assert!(db.get("notes/b").await.unwrap().is_none());
    assert!(db.get("notes/c").await.unwrap().is_some());
    let rep = db.integrity_check().await.unwrap();
    assert!(rep.is_ok(), "{:?}", rep.problems);
    db.close().await.unwrap();
}

/// A handle whose database another took over (a tab frozen while it held
/// the cross-tab lock, whose lock the other took by force: pkg-js
/// turns.js) cannot commit from its stale state: its small commit (a log
/// record) and its large one (a fold) are refused with `locked` and write
/// nothing, while the new holder's commits go through; after a refresh it
/// writes again, and both handles agree on a sound database.
#[wasm_bindgen_test]
async fn a_handle_the_database_was_taken_from_cannot_commit_over_it() {
    let name = unique_name("fence");
    let a = open_db(&name).await;
    let b = open_db(&name).await;
    a.put("a/before", json!({"n": 1})).await.unwrap();
    b.refresh().await.unwrap();

    // B takes the database over, then writes (log records, and a fold).
    b.store().take_over().await.unwrap();
    b.refresh().await.unwrap();
    b.put("b/1", json!({"n": 1})).await.unwrap();
    b.put("b/2", json!({"n": 2})).await.unwrap();

    // A, still on the state before, commits: a large commit (it folds) first.
    let mut big = Batch::new();
    for i in 0..60 {
        big.put(format!("a/stale-big/{i}"), json!({"pad": "q".repeat(400)}));
    }
    let err = a.commit(big).await.expect_err("a fenced fold");
    assert_eq!(err.code(), "locked", "{err}");
    assert!(err.to_string().contains("another tab"), "{err}");
    let err = a
        .put("a/stale", json!({"n": 0}))
        .await
        .expect_err("a fenced log record");
    assert!(matches!(err.code(), "locked" | "poisoned"), "{err}");

    // B goes on regardless.
    let mut batch = Batch::new();
    for i in 0..60 {
        batch.put(format!("b/big/{i}"), json!({"pad": "b".repeat(400)}));
    }
    b.commit(batch).await.unwrap();
    b.put("b/3", json!({"n": 3})).await.unwrap();

    // A reads the state again (its next turn) and writes.
    a.refresh().await.unwrap();
    a.put("a/after", json!({"n": 2})).await.unwrap();
    b.refresh().await.unwrap();
    for h in [&a, &b] {
        for id in ["a/before", "b/1", "b/2", "b/big/59", "b/3", "a/after"] {
            assert!(h.get(id).await.unwrap().is_some(), "{id}");
        }
        for id in ["a/stale", "a/stale-big/0", "a/stale-big/59"] {
            assert!(h.get(id).await.unwrap().is_none(), "{id} was written");
        }
        assert_eq!(h.count().await.unwrap(), 2 + 60 + 3);
        let report = h.integrity_check().await.unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
    }
    // A fresh handle reads the same from the store.
    a.close().await.unwrap();
    b.close().await.unwrap();
    drop((a, b));
    let c = open_db(&name).await;
    assert_eq!(c.count().await.unwrap(), 2 + 60 + 3);
    assert!(c.get("a/stale").await.unwrap().is_none());
    assert!(c.integrity_check().await.unwrap().is_ok());
    c.close().await.unwrap();
    drop(c);
    IdbStore::destroy(&name).await.unwrap();
}

/// A version 1 database (object stores `pages` and `meta` only, as every
/// release before the log wrote them) opens: the store adds the empty log,
/// reads the documents, writes, and reopens.
/// The fixture of an older layout: a database the engine wrote (300
/// documents), stored as schema `version` with the object stores `stores`
/// (page records and the meta record; no log record; with `runs` among
/// them, every 16 consecutive pages that all exist as one run, as schema
/// version 3 wrote them, without a layout record; version 4 also has the
/// layout record, format 1, as version 4 wrote it). Returns its name.
async fn older_layout(version: u32, stores: &[&str]) -> String {
    let mem = Arc::new(MemoryStore::new());
    let src = Database::open(mem.clone(), OpenOptions::default())
        .await
        .unwrap();
    // One batch: its pages are consecutive, so runs of 64 can be made.
    let mut b = Batch::new();
    for i in 0..300 {
        b.put(
            format!("old/{i:03}"),
            json!({"i": i, "pad": "v".repeat(900)}),
        );
    }
    src.commit(b).await.unwrap();
    let pages = src.stats().pages;
    src.close().await.unwrap();
    mem.reopen();
    let name = unique_name(&format!("v{version}"));
    let mut builder = rexie::Rexie::builder(&name).version(version);
    for s in stores {
        builder = builder.add_object_store(rexie::ObjectStore::new(s));
    }
    let old = builder.build().await.unwrap();
    let with_runs = stores.contains(&"runs");
    let scope: &[&str] = if with_runs {
        &["pages", "meta", "runs"]
    } else {
        &["pages", "meta"]
    };
    let tx = old
        .transaction(scope, rexie::TransactionMode::ReadWrite)
        .unwrap();
    let ps = tx.store("pages").unwrap();
    let mut first = 1;
    let mut written = Vec::new();
    while first <= pages {
        // Runs of 64 pages where every page is there, as folds wrote them
        // until 2026-12-05 (a store writes at most 32 now and reads up to
        // 64), else of 16, else page records.
        let mut n = 64;
        let (group, read) = loop {
            let group: Vec<_> = (first..(first + n).min(pages + 1)).collect();
            let mut read = Vec::new();
            for &no in &group {
                read.push(mem.read_page(no).await.ok());
            }
            if n == 16 || (group.len() == 64 && read.iter().all(Option::is_some)) {
                break (group, read);
            }
            n = 16;
        };
        if with_runs && group.len() as u64 == n && read.iter().all(Option::is_some) {
            let bytes: Vec<u8> = read
                .iter()
                .flatten()
                .flat_map(|p| p.iter().copied())
                .collect();
            let key = js_sys::Array::of2(&(first as f64).into(), &(n as f64).into());
            tx.store("runs")
                .unwrap()
                .put(&Uint8Array::from(bytes.as_slice()), Some(&key.into()))
                .await
                .unwrap();
            written.push((first, n));
        } else {
            for (&no, p) in group.iter().zip(read) {
                if let Some(p) = p {
                    ps.put(
                        &Uint8Array::from(p.as_slice()),
                        Some(&JsValue::from_f64(no as f64)),
                    )
                    .await
                    .unwrap();
                }
            }
        }
        first += n;
    }
    let meta = mem.read_meta().await.unwrap().unwrap();
    tx.store("meta")
        .unwrap()
        .put(
            &Uint8Array::from(meta.as_slice()),
            Some(&JsValue::from_f64(0.0)),
        )
        .await
        .unwrap();
    if version == 4 {
        // Format 1: u8 1, u32 count, count × (u64 first page, u16 count).
        let mut v1 = vec![1u8];
        v1.extend_from_slice(&(written.len() as u32).to_le_bytes());
        for &(first, n) in &written {
            v1.extend_from_slice(&first.to_le_bytes());
            v1.extend_from_slice(&(n as u16).to_le_bytes());
        }
        tx.store("meta")
            .unwrap()
            .put(
                &Uint8Array::from(v1.as_slice()),
                Some(&JsValue::from_f64(3.0)),
            )
            .await
            .unwrap();
    }
    tx.done().await.unwrap();
    old.close();
    name
}

/// A database of an older layout opens, reads, takes a small write (a log
/// record) and a large one (runs), and reads everything back after a reopen.
async fn an_older_layout_opens_reads_and_writes(version: u32, stores: &[&str]) {
    let name = older_layout(version, stores).await;
    let runs_before = if version >= 3 {
        count(&name, None, "runs").await
    } else {
        0
    };
    let db = open_db(&name).await;
    let bucket = db.store().bucket();
    // Opened at version 5: code of an older version refuses it
    // (`VersionError`) instead of misreading what it does not know.
    assert_eq!(schema_version(&name, bucket.clone()).await, 5.0);
    assert_eq!(db.count().await.unwrap(), 300);
    assert_eq!(db.get("old/123").await.unwrap().unwrap().body["i"], 123);
    if version < 3 {
        // The upgrade made an empty runs store and an empty layout record.
        assert_eq!(layout(&name, bucket.clone()).await, Some(vec![]));
    } else if version == 4 {
        // The format 1 record is kept as it is (read as every page of a
        // run may have a page record) until the next fold.
        let listed = layout_recorded(&name, bucket.clone()).await.unwrap();
        assert!(listed.iter().any(|&(_, n, _)| n == 64), "{listed:?}");
        assert!(listed.iter().all(|&(_, _, bits)| bits == u64::MAX));
        assert_eq!(
            listed.iter().map(|&(f, n, _)| (f, n)).collect::<Vec<_>>(),
            run_keys(&name, bucket.clone()).await
        );
    } else {
        // Version 3: runs, read from their keys until a fold writes the
        // layout record.
        assert!(runs_before > 0, "the fixture holds runs");
        assert!(
            run_keys(&name, bucket.clone())
                .await
                .iter()
                .any(|&(_, n)| n == 64),
            "the fixture holds a run of 64 pages"
        );
        assert_eq!(layout(&name, bucket.clone()).await, None);
    }
    db.put("new/one", json!({"new": true})).await.unwrap();
    assert_eq!(
        count(&name, None, "log").await,
        1,
        "the new write is a log record"
    );
    let mut b = Batch::new();
    for i in 0..200 {
        b.put(
            format!("new/bulk{i:03}"),
            json!({"i": i, "pad": "w".repeat(400)}),
        );
    }
    db.commit(b).await.unwrap();
    assert!(
        count(&name, bucket.clone(), "runs").await > runs_before,
        "the batch wrote runs"
    );
    assert_layout(&name, bucket, false).await;
    drop(db);
    let db = open_db(&name).await;
    assert_eq!(db.count().await.unwrap(), 501);
    assert_eq!(db.get("new/one").await.unwrap().unwrap().body["new"], true);
    assert_eq!(db.get("old/299").await.unwrap().unwrap().body["i"], 299);
    assert_eq!(db.get("new/bulk150").await.unwrap().unwrap().body["i"], 150);
    let report = db.integrity_check().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    db.close().await.unwrap();
    drop(db);
    IdbStore::destroy(&name).await.unwrap();
}

#[wasm_bindgen_test]
async fn a_version_1_database_opens_reads_and_writes() {
    an_older_layout_opens_reads_and_writes(1, &["pages", "meta"]).await;
}

#[wasm_bindgen_test]
async fn a_version_2_database_opens_reads_and_writes() {
    an_older_layout_opens_reads_and_writes(2, &["pages", "meta", "log"]).await;
}

#[wasm_bindgen_test]
async fn a_version_3_database_opens_reads_and_writes() {
    an_older_layout_opens_reads_and_writes(3, &["pages", "meta", "log", "runs"]).await;
}

#[wasm_bindgen_test]
async fn a_version_4_database_opens_reads_and_writes() {
    an_older_layout_opens_reads_and_writes(4, &["pages", "meta", "log", "runs"]).await;
}
