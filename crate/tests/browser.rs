//! Browser tests: the IndexedDB page store and the engine over it, in real
//! headless Chromium with real IndexedDB (wasm-bindgen-test).
//!
//! Run (scripts/test.sh does it, after scripts/install-browser-tools.sh):
//!
//! ```text
//! CHROMEDRIVER=/usr/bin/chromedriver \
//! CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
//! cargo test -p outpost --target wasm32-unknown-unknown --test browser
//! ```
//!
//! Every test uses its own database name and deletes the database at the end.
#![cfg(target_arch = "wasm32")]

use std::sync::Arc;

use outpost::store::idb::{IdbStore, error_from_js};
use outpost::store::{Commit, Durability, PAGE_SIZE, PageBuf, PageNo, PageStore};
use outpost::{Batch, Error, StoreError};
use outpost_testkit::put_first_patient;
use serde_json::json;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

mod browser_common;
use browser_common::{
    assert_layout, count, delete_raw, every_record, layout, layout_recorded, open_db, put_raw,
    records, unique_name,
};

wasm_bindgen_test_configure!(run_in_browser);

/// A database name no other test (or earlier run) uses.
fn page(fill: u8, no: PageNo) -> PageBuf {
    let mut v = vec![fill; PAGE_SIZE];
    v[..8].copy_from_slice(&no.to_le_bytes());
    Arc::new(v)
}

fn commit(pages: &[(PageNo, u8)], meta: &[u8]) -> Commit {
    Commit {
        pages: pages.iter().map(|&(no, f)| (no, page(f, no))).collect(),
        meta: meta.to_vec(),
        durability: Durability::Durable,
    }
}

// ------------------------------------------------------------ page store ---

/// The open report: a new database is `created` with the browser's `dataLoss`
/// `"none"`; reopening it fires no `upgradeneeded` (nothing created, nothing
/// reported); deleting it behind the store's back makes the next open a
/// creation again (what the package's witness then recognises as a loss).
#[wasm_bindgen_test]
async fn idb_store_open_report() {
    let name = unique_name("report");
    let s = IdbStore::open(&name).await.unwrap();
    let r = s.open_report().clone();
    assert!(r.created, "{r:?}");
    assert_eq!(r.data_loss.as_deref(), Some("none"), "{r:?}");
    assert!(!r.data_lost());
    s.commit(commit(&[(1, 7)], b"m1")).await.unwrap();
    s.close().await.unwrap();
    drop(s);

    let s = IdbStore::open(&name).await.unwrap();
    let r = s.open_report().clone();
    assert!(!r.created, "{r:?}");
    assert_eq!(r.data_loss, None, "no upgradeneeded on a reopen: {r:?}");
    assert_eq!(s.read_meta().await.unwrap().as_deref(), Some(&b"m1"[..]));
    s.close().await.unwrap();
    drop(s);

    IdbStore::destroy(&name).await.unwrap();
    let s = IdbStore::open(&name).await.unwrap();
    assert!(s.open_report().created);
    assert_eq!(s.read_meta().await.unwrap(), None);
    s.close().await.unwrap();
    drop(s);
    IdbStore::destroy(&name).await.unwrap();
}

#[wasm_bindgen_test]
async fn idb_store_round_trip_and_reopen() {
    let name = unique_name("roundtrip");
    let s = IdbStore::open(&name).await.unwrap();
    assert_eq!(s.name(), name);
    assert_eq!(s.read_meta().await.unwrap(), None);
    assert!(matches!(
        s.read_page(1).await,
        Err(StoreError::PageNotFound(1))
    ));

    s.commit(commit(&[(1, 0x11), (2, 0x22), (3, 0x33)], b"meta-1"))
        .await
        .unwrap();
    assert_eq!(
        s.read_meta().await.unwrap().as_deref(),
        Some(&b"meta-1"[..])
    );
    for (no, f) in [(1, 0x11), (2, 0x22), (3, 0x33)] {
        assert_eq!(s.read_page(no).await.unwrap(), page(f, no));
    }
    // Overwrite one page, add a large page number, relaxed durability.
    let big: PageNo = (1 << 53) - 1;
    let mut c = commit(&[(2, 0x44), (big, 0x55)], b"meta-2");
    c.durability = Durability::Relaxed;
    s.commit(c).await.unwrap();
    s.sync().await.unwrap();
    assert_eq!(s.read_page(2).await.unwrap(), page(0x44, 2));
    assert_eq!(s.read_page(big).await.unwrap(), page(0x55, big));
    assert!(matches!(
        s.read_page(4).await,
        Err(StoreError::PageNotFound(4))
    ));

    // Invalid commits are refused before anything is written.
    let bad = Commit {
        pages: vec![(5, Arc::new(vec![0u8; 100]))],
        meta: b"meta-bad".to_vec(),
        durability: Durability::Durable,
    };
    assert!(matches!(
        s.commit(bad).await,
        Err(StoreError::InvalidCommit(_))
    ));
    assert!(matches!(
        s.commit(commit(&[(1 << 53, 1)], b"x")).await,
        Err(StoreError::InvalidCommit(_))
    ));
    assert!(matches!(
        s.commit(commit(&[(0, 1)], b"x")).await,
        Err(StoreError::InvalidCommit(_))
    ));

    s.close().await.unwrap();
    assert!(matches!(s.read_page(1).await, Err(StoreError::Closed)));
    assert!(matches!(s.read_meta().await, Err(StoreError::Closed)));
    assert!(matches!(
        s.commit(commit(&[(1, 1)], b"x")).await,
        Err(StoreError::Closed)
    ));
    drop(s);

    // Reopen the same database: everything committed is there.
    let s = IdbStore::open(&name).await.unwrap();
    assert_eq!(
        s.read_meta().await.unwrap().as_deref(),
        Some(&b"meta-2"[..])
    );
    assert_eq!(s.read_page(1).await.unwrap(), page(0x11, 1));
    assert_eq!(s.read_page(2).await.unwrap(), page(0x44, 2));
    assert_eq!(s.read_page(3).await.unwrap(), page(0x33, 3));
    assert_eq!(s.read_page(big).await.unwrap(), page(0x55, big));
    s.close().await.unwrap();
    drop(s);
    IdbStore::destroy(&name).await.unwrap();

    // Destroyed: a new store of that name is empty.
    let s = IdbStore::open(&name).await.unwrap();
    assert_eq!(s.read_meta().await.unwrap(), None);
    s.close().await.unwrap();
    drop(s);
    IdbStore::destroy(&name).await.unwrap();
}

/// `read_pages`: one entry per page asked for, in the order asked, whether
/// the pages lie close together (one request over their key range) or far
/// apart (one request each, one transaction); a page never written is
/// `PageNotFound` among the others; a closed store fails every entry.
#[wasm_bindgen_test]
async fn idb_read_pages_in_one_go() {
    let name = unique_name("readpages");
    let s = IdbStore::open(&name).await.unwrap();
    // Pages 1..=20 except 7, and two far away.
    let mut pages: Vec<(PageNo, u8)> = (1..=20).filter(|&n| n != 7).map(|n| (n, n as u8)).collect();
    pages.push((5_000, 0xAA));
    pages.push((9_000_000, 0xBB));
    s.commit(commit(&pages, b"m")).await.unwrap();

    // Close together, out of order, with a hole (7) and a repeat.
    let close: Vec<PageNo> = vec![12, 3, 7, 4, 5, 6, 8, 3, 10];
    let got = s.read_pages(&close).await;
    assert_eq!(got.len(), close.len());
    for (no, r) in close.iter().zip(&got) {
        match (no, r) {
            (7, Err(StoreError::PageNotFound(7))) => {}
            (no, Ok(b)) => assert_eq!(*b, page(*no as u8, *no)),
            (no, r) => panic!("page {no}: {r:?}"),
        }
    }
    // Far apart: one get each.
    let far: Vec<PageNo> = vec![9_000_000, 1, 5_000, 7, 20];
    let got = s.read_pages(&far).await;
    assert_eq!(got[0].as_ref().unwrap(), &page(0xBB, 9_000_000));
    assert_eq!(got[1].as_ref().unwrap(), &page(1, 1));
    assert_eq!(got[2].as_ref().unwrap(), &page(0xAA, 5_000));
    assert!(matches!(got[3], Err(StoreError::PageNotFound(7))));
    assert_eq!(got[4].as_ref().unwrap(), &page(20, 20));
    assert!(s.read_pages(&[]).await.is_empty());

    s.close().await.unwrap();
    let got = s.read_pages(&[1, 2, 3, 4, 5]).await;
    assert!(
        got.iter().all(|r| matches!(r, Err(StoreError::Closed))),
        "{got:?}"
    );
    drop(s);
    IdbStore::destroy(&name).await.unwrap();
}

#[wasm_bindgen_test]
async fn idb_multi_page_commit_is_atomic() {
    let name = unique_name("atomic");
    let s = IdbStore::open(&name).await.unwrap();
    let a: Vec<(PageNo, u8)> = (1..=40).map(|no| (no, 0xA0)).collect();
    s.commit(commit(&a, b"A")).await.unwrap();

    // A 60-page commit whose IndexedDB transaction aborts after 30 page writes
    // (a request fails inside it): nothing of it may be visible.
    let b: Vec<(PageNo, u8)> = (1..=60).map(|no| (no, 0xB0)).collect();
    s.fail_next_commit_after(30);
    let err = s.commit(commit(&b, b"B")).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Other(m) if m.contains("ConstraintError")),
        "{err:?}"
    );
    assert_eq!(s.read_meta().await.unwrap().as_deref(), Some(&b"A"[..]));
    for no in 1..=40 {
        assert_eq!(s.read_page(no).await.unwrap(), page(0xA0, no));
    }
    for no in 41..=60 {
        assert!(matches!(
            s.read_page(no).await,
            Err(StoreError::PageNotFound(_))
        ));
    }
    // A failure injected after the last page (before the meta record).
    s.fail_next_commit_after(60);
    assert!(s.commit(commit(&b, b"B")).await.is_err());
    assert_eq!(s.read_meta().await.unwrap().as_deref(), Some(&b"A"[..]));
    assert_eq!(s.read_page(60).await.ok(), None);

    // The store keeps working, and after reopening shows the last good commit.
    s.commit(commit(&b, b"C")).await.unwrap();
    s.close().await.unwrap();
    drop(s);
    let s = IdbStore::open(&name).await.unwrap();
    assert_eq!(s.read_meta().await.unwrap().as_deref(), Some(&b"C"[..]));
    for no in 1..=60 {
        assert_eq!(s.read_page(no).await.unwrap(), page(0xB0, no));
    }
    s.close().await.unwrap();
    drop(s);
    IdbStore::destroy(&name).await.unwrap();
}

/// A fold larger than one slice (512 KiB of values; the rest is issued from
/// success handlers, store module `runs`) is still one transaction: 400
/// scattered pages (page records, four slices) whose transaction fails in
/// its third slice leave nothing, and so does one whose commit future is
/// dropped once issued; written whole, every page reads back after
/// reopening.
#[wasm_bindgen_test]
async fn a_fold_issued_in_slices_is_atomic() {
    let name = unique_name("slices");
    let s = IdbStore::open(&name).await.unwrap();
    let a: Vec<(PageNo, u8)> = (1..=400).map(|k| (2 * k, 0xA0)).collect();
    s.commit(commit(&a, b"A")).await.unwrap();
    let b: Vec<(PageNo, u8)> = (1..=400).map(|k| (2 * k, 0xB0)).collect();
    s.fail_next_commit_after(300);
    assert!(s.commit(commit(&b, b"B")).await.is_err());
    holds_pages(&s, b"A", 0xA0).await;
    // A commit whose future is dropped once issued: its transaction is
    // aborted, not committed with its first slice alone.
    drop(s.commit(commit(&b, b"D")));
    s.close().await.unwrap();
    drop(s);
    let s = IdbStore::open(&name).await.unwrap();
    holds_pages(&s, b"A", 0xA0).await;
    s.commit(commit(&b, b"C")).await.unwrap();
    s.close().await.unwrap();
    drop(s);
    let s = IdbStore::open(&name).await.unwrap();
    holds_pages(&s, b"C", 0xB0).await;
    s.close().await.unwrap();
    drop(s);
    IdbStore::destroy(&name).await.unwrap();
}

/// The store's meta record is `meta`, and each of its pages 2, 4, ..., 800
/// is filled with `fill`.
async fn holds_pages(s: &IdbStore, meta: &[u8], fill: u8) {
    assert_eq!(s.read_meta().await.unwrap().as_deref(), Some(meta));
    for k in 1..=400 {
        assert_eq!(s.read_page(2 * k).await.unwrap(), page(fill, 2 * k));
    }
}

/// A fold writes consecutive pages as runs (one value each); a page record
/// wins over a run; a page inside a run is never part of a new run; a run
/// whose every page has a record is deleted; a failed fold leaves nothing;
/// every page reads back the same after reopening (store module `runs`).
#[wasm_bindgen_test]
async fn idb_runs_and_page_records() {
    let name = unique_name("runs");
    // 20 pages (80 KiB, too large for a log record): a fold, one run.
    let (s, bucket) = store_with_one_run(&name, 20).await;

    // Pages 5 and 6 again, with 21..=40: records for 5 and 6 (inside the
    // run), a new run for 21..=40, and three pages apart as records.
    let mut b: Vec<(PageNo, u8)> = vec![(5, 0xB5), (6, 0xB6)];
    b.extend((21..=40).map(|no| (no, 0xB0)));
    b.extend([(50, 0xC0), (52, 0xC2), (54, 0xC4)]);
    s.commit(commit(&b, b"B")).await.unwrap();
    assert_eq!(count(&name, bucket.clone(), "runs").await, 2);
    assert_eq!(count(&name, bucket.clone(), "pages").await, 5);
    assert_layout(&name, bucket.clone(), true).await;
    // The layout marks pages 5 and 6 of the first run as recorded (bits 4
    // and 5), and no page of the new run.
    assert_eq!(
        layout_recorded(&name, bucket.clone()).await.unwrap(),
        [(1, 20, 0b11 << 4), (21, 20, 0)]
    );
    let expect = |no: PageNo| -> Option<PageBuf> {
        match no {
            5 => Some(page(0xB5, 5)),
            6 => Some(page(0xB6, 6)),
            1..=20 => Some(page(0xA0, no)),
            21..=40 => Some(page(0xB0, no)),
            50 | 52 | 54 => Some(page(0xC0 + (no - 50) as u8, no)),
            _ => None,
        }
    };
    let check = |got: Vec<Result<PageBuf, StoreError>>, nos: &[PageNo]| {
        for (no, r) in nos.iter().zip(got) {
            match (expect(*no), r) {
                (Some(want), Ok(b)) => assert_eq!(b, want, "page {no}"),
                (None, Err(StoreError::PageNotFound(n))) => assert_eq!(n, *no),
                (want, r) => panic!("page {no}: {r:?}, expected {want:?}"),
            }
        }
    };
    let all: Vec<PageNo> = (1..=56).collect();
    // One at a time, in one go over a range, and far apart.
    for &no in &all {
        check(vec![s.read_page(no).await], &[no]);
    }
    check(s.read_pages(&all).await, &all);
    check(s.read_pages(&[54, 3, 38, 6]).await, &[54, 3, 38, 6]);
    s.close().await.unwrap();
    drop(s);
    let s = IdbStore::open(&name).await.unwrap();
    assert_eq!(s.read_meta().await.unwrap().as_deref(), Some(&b"B"[..]));
    check(s.read_pages(&all).await, &all);

    // A fold that fails after one value: nothing of it, no run of it.
    let c: Vec<(PageNo, u8)> = (60..=80).map(|no| (no, 0xD0)).collect();
    s.fail_next_commit_after(1);
    assert!(s.commit(commit(&c, b"C")).await.is_err());
    assert_eq!(s.read_meta().await.unwrap().as_deref(), Some(&b"B"[..]));
    assert_eq!(count(&name, bucket.clone(), "runs").await, 2);
    assert_layout(&name, bucket.clone(), true).await;
    assert!(matches!(
        s.read_page(70).await,
        Err(StoreError::PageNotFound(70))
    ));

    // Every page of the first run again: records (never a new run over an
    // old one), and the run, all of whose pages have records, is deleted.
    let d: Vec<(PageNo, u8)> = (1..=20).map(|no| (no, 0xE0)).collect();
    s.commit(commit(&d, b"D")).await.unwrap();
    assert_eq!(count(&name, bucket.clone(), "runs").await, 1);
    assert_eq!(count(&name, bucket.clone(), "pages").await, 23);
    // The layout record still lists the deleted run (a superset, until the
    // next fold): reads of its pages find their records.
    assert_eq!(
        layout(&name, bucket.clone()).await.unwrap(),
        [(1, 20), (21, 20)]
    );
    assert_layout(&name, bucket.clone(), false).await;
    for no in 1..=20 {
        assert_eq!(s.read_page(no).await.unwrap(), page(0xE0, no));
    }
    s.close().await.unwrap();
    drop(s);
    let s = IdbStore::open(&name).await.unwrap();
    assert_eq!(s.read_meta().await.unwrap().as_deref(), Some(&b"D"[..]));
    for no in 1..=40 {
        let want = if no <= 20 {
            page(0xE0, no)
        } else {
            page(0xB0, no)
        };
        assert_eq!(s.read_page(no).await.unwrap(), want);
    }

    // Pages 35..=70: 35..=40 lie in the run from 21, so they become
    // records; 41..=70 a new run, which replaces the records of 50, 52, 54.
    let e: Vec<(PageNo, u8)> = (35..=70).map(|no| (no, 0xF0)).collect();
    s.commit(commit(&e, b"E")).await.unwrap();
    assert_eq!(count(&name, bucket.clone(), "runs").await, 2);
    // The next fold's record leaves the deleted run out.
    assert_layout(&name, bucket.clone(), true).await;
    assert_eq!(
        layout(&name, bucket.clone()).await.unwrap(),
        [(21, 20), (41, 30)]
    );
    s.close().await.unwrap();
    drop(s);
    let s = IdbStore::open(&name).await.unwrap();
    assert_eq!(s.read_meta().await.unwrap().as_deref(), Some(&b"E"[..]));
    let nos: Vec<PageNo> = (1..=72).collect();
    for (no, r) in nos.iter().zip(s.read_pages(&nos).await) {
        let want = match no {
            1..=20 => Some(page(0xE0, *no)),
            21..=34 => Some(page(0xB0, *no)),
            35..=70 => Some(page(0xF0, *no)),
            _ => None,
        };
        assert_eq!(r.ok(), want, "page {no}");
    }
    s.close().await.unwrap();
    drop(s);
    IdbStore::destroy(&name).await.unwrap();
}

/// A read of a page in a run hands the run's other pages to the engine
/// (`take_read_along`): those without a page record or a version in the
/// log, taken once, and none once a commit was issued after the read
/// started (its transaction may not have seen that commit).
#[wasm_bindgen_test]
async fn idb_a_runs_other_pages_are_read_along() {
    let name = unique_name("readalong");
    let (s, _bucket) = store_with_one_run(&name, 20).await;
    drop(s);
    let s = IdbStore::open(&name).await.unwrap();
    s.read_meta().await.unwrap();
    let along = |s: &IdbStore| {
        let mut v = s.take_read_along();
        v.sort_by_key(|(no, _)| *no);
        v
    };
    assert_eq!(s.read_page(3).await.unwrap(), page(0xA0, 3));
    let got = along(&s);
    assert_eq!(
        got.iter().map(|(no, _)| *no).collect::<Vec<_>>(),
        (1..=20).filter(|&no| no != 3).collect::<Vec<_>>()
    );
    for (no, b) in &got {
        assert_eq!(*b, page(0xA0, *no), "page {no}");
    }
    assert!(s.take_read_along().is_empty(), "taken once");

    // Page 5 gets a record (a fold), page 6 a log record: neither is read
    // along from the run, whose images of them are older.
    let mut b: Vec<(PageNo, u8)> = vec![(5, 0xB5)];
    b.extend((100..=120).map(|no| (no, 0xB0)));
    s.commit(commit(&b, b"B")).await.unwrap();
    s.commit(commit(&[(6, 0xB6)], b"C")).await.unwrap();
    assert_eq!(s.read_page(9).await.unwrap(), page(0xA0, 9));
    let nos: Vec<PageNo> = along(&s).iter().map(|(no, _)| *no).collect();
    assert_eq!(
        nos,
        (1..=20)
            .filter(|no| ![5, 6, 9].contains(no))
            .collect::<Vec<_>>()
    );

    // A commit issued while the read is in flight: nothing read along.
    let mut read = s.read_page(10);
    assert!(futures::poll!(&mut read).is_pending(), "the read is issued");
    s.commit(commit(&[(300, 0xE0)], b"E")).await.unwrap();
    assert_eq!(read.await.unwrap(), page(0xA0, 10));
    assert!(s.take_read_along().is_empty(), "read before a commit");
    // A commit or a refresh between the read and the take: nothing either.
    s.read_page(11).await.unwrap();
    s.commit(commit(&[(301, 0xE1)], b"F")).await.unwrap();
    assert!(s.take_read_along().is_empty(), "taken after a commit");
    s.read_page(12).await.unwrap();
    s.read_meta().await.unwrap();
    assert!(s.take_read_along().is_empty(), "taken after read_meta");
    s.close().await.unwrap();
    drop(s);
    IdbStore::destroy(&name).await.unwrap();
}

/// The engine caches what a read reads along, verified when first asked
/// for: after a reopen, the first `get` reads whole runs, and most of the
/// documents of their leaves come without another store read; a damaged
/// page read along is read again from the store and reported.
#[wasm_bindgen_test]
async fn pages_read_along_serve_later_reads_and_are_verified() {
    let name = unique_name("alongdb");
    let db = open_db(&name).await;
    let mut b = Batch::new();
    for i in 0..2000 {
        b.put(format!("d/{i:05}"), json!({"i": i, "pad": "p".repeat(900)}));
    }
    db.commit(b).await.unwrap();
    assert!(count(&name, db.store().bucket(), "runs").await > 0);
    db.close().await.unwrap();
    drop(db);
    let db = open_db(&name).await;
    let before = db.stats().cache;
    assert_eq!(db.get("d/01000").await.unwrap().unwrap().body["i"], 1000);
    let after_one = db.stats().cache;
    assert!(
        after_one.pages > 3 * (after_one.misses - before.misses),
        "whole runs cached: {before:?} -> {after_one:?}"
    );
    // The neighbours of d/01000 are in the runs already read.
    for i in 990..1010 {
        assert_eq!(
            db.get(&format!("d/{i:05}")).await.unwrap().unwrap().body["i"],
            i
        );
    }
    let after = db.stats().cache;
    assert_eq!(after.misses, after_one.misses, "no store read: {after:?}");
    assert!(db.integrity_check().await.unwrap().is_ok());
    let bucket = db.store().bucket();
    db.close().await.unwrap();
    drop(db);

    // Damage another page of the run that holds d/01000's leaf: a byte
    // after the first id on it. The page is read along with the leaf, and
    // the read of its document must still find the damage.
    let values = records(&name, bucket.clone(), "runs").await;
    let run_keys = browser_common::keys(&name, bucket.clone(), "runs").await;
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let (r, at) = values
        .iter()
        .enumerate()
        .find_map(|(r, v)| find(v, b"d/01000").map(|at| (r, at)))
        .expect("d/01000 is in a run");
    let leaf = at / PAGE_SIZE;
    let mut value = values[r].clone();
    // A document's leaf: its id, then its body's padding.
    let (id_at, pad_at) = (0..value.len() / PAGE_SIZE)
        .filter(|&p| p != leaf)
        .find_map(|p| {
            let pg = &value[p * PAGE_SIZE..(p + 1) * PAGE_SIZE];
            let i = find(pg, b"d/0")?;
            let pad = i + find(&pg[i..], b"pppppppp")?;
            (pad - i < 200).then_some((p * PAGE_SIZE + i, p * PAGE_SIZE + pad))
        })
        .expect("another document leaf in the run");
    let id = String::from_utf8(value[id_at..id_at + 7].to_vec()).unwrap();
    value[pad_at + 4] = b'q';
    let raw: JsValue = js_sys::Uint8Array::from(value.as_slice()).into();
    put_raw(&name, bucket, "runs", &run_keys[r], &raw).await;
    let db = open_db(&name).await;
    assert_eq!(db.get("d/01000").await.unwrap().unwrap().body["i"], 1000);
    let e = db.get(&id).await.unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{id}: {e:?}");
    db.close().await.unwrap();
    drop(db);
    IdbStore::destroy(&name).await.unwrap();
}

/// A layout record of format 1 (written before 2026-12-05: runs without
/// the bitmap of their recorded pages) is read as if every page of every
/// run might have a page record: the records inside a run still win. A
/// read of a run learns which of its pages have records, and the next fold
/// writes format 2 with every recorded page's bit set.
#[wasm_bindgen_test]
async fn idb_a_layout_record_of_format_1_is_read_and_rewritten() {
    let name = unique_name("layout1");
    let (s, bucket) = store_with_one_run(&name, 20).await;
    // Records for pages 3 and 9, inside the run (a fold: 3 pages apart).
    let b: Vec<(PageNo, u8)> = vec![(3, 0xB3), (9, 0xB9), (30, 0xBE)];
    s.commit(commit(&b, b"B")).await.unwrap();
    s.close().await.unwrap();
    drop(s);
    // The record as the code before format 2 wrote it: format 1, one run.
    let mut v1 = vec![1u8];
    v1.extend_from_slice(&1u32.to_le_bytes());
    v1.extend_from_slice(&1u64.to_le_bytes());
    v1.extend_from_slice(&20u16.to_le_bytes());
    let v1 = js_sys::Uint8Array::from(&v1[..]);
    put_raw(&name, bucket.clone(), "meta", &3.into(), &v1.into()).await;
    assert_eq!(
        layout_recorded(&name, bucket.clone()).await.unwrap(),
        [(1, 20, u64::MAX)]
    );

    let s = IdbStore::open(&name).await.unwrap();
    assert_eq!(s.read_meta().await.unwrap().as_deref(), Some(&b"B"[..]));
    let want = |no: PageNo| match no {
        3 => page(0xB3, 3),
        9 => page(0xB9, 9),
        30 => page(0xBE, 30),
        _ => page(0xA0, no),
    };
    // One at a time (each reads the run), then all at once.
    for no in [9, 1, 3, 20, 30] {
        assert_eq!(s.read_page(no).await.unwrap(), want(no), "page {no}");
    }
    let all: Vec<PageNo> = (1..=20).chain([30]).collect();
    for (no, r) in all.iter().zip(s.read_pages(&all).await) {
        assert_eq!(r.unwrap(), want(*no), "page {no}");
    }
    // The next fold (20 pages: too large for a log record) writes format
    // 2, the learnt bits with it.
    let c: Vec<(PageNo, u8)> = (41..=60).map(|no| (no, 0xC0)).collect();
    s.commit(commit(&c, b"C")).await.unwrap();
    assert_eq!(
        layout_recorded(&name, bucket.clone()).await.unwrap(),
        [(1, 20, (1 << 2) | (1 << 8)), (41, 20, 0)]
    );
    assert_layout(&name, bucket.clone(), true).await;
    s.close().await.unwrap();
    drop(s);
    let s = IdbStore::open(&name).await.unwrap();
    assert_eq!(s.read_meta().await.unwrap().as_deref(), Some(&b"C"[..]));
    for (no, r) in all.iter().zip(s.read_pages(&all).await) {
        assert_eq!(r.unwrap(), want(*no), "page {no} after the rewrite");
    }
    s.close().await.unwrap();
    drop(s);
    IdbStore::destroy(&name).await.unwrap();
}

/// A new store `name` whose pages 1..=`n` (`n` of 15 or more: too large
/// for a log record) are one run of fill 0xA0; its storage bucket.
async fn store_with_one_run(name: &str, n: PageNo) -> (IdbStore, Option<String>) {
    let s = IdbStore::open(name).await.unwrap();
    let bucket = s.bucket();
    s.read_meta().await.unwrap();
    let a: Vec<(PageNo, u8)> = (1..=n).map(|no| (no, 0xA0)).collect();
    s.commit(commit(&a, b"A")).await.unwrap();
    assert_eq!(count(name, bucket.clone(), "runs").await, 1);
    assert_eq!(count(name, bucket.clone(), "pages").await, 0);
    (s, bucket)
}

/// Damaged runs are typed errors, never a panic: a key that is not
/// `[first page, count]` or overlaps another run (at `read_meta`), a value
/// of the wrong size (at the read of a page in it).
#[wasm_bindgen_test]
async fn idb_damaged_runs_are_corrupt_errors() {
    use js_sys::{Array, Uint8Array};
    let key = |start: f64, n: f64| -> JsValue { Array::of2(&start.into(), &n.into()).into() };
    let pages = |n: u32| -> JsValue { Uint8Array::new_with_length(n * 4096).into() };

    // A run value one byte short: the read of a page in it is refused.
    let name = unique_name("badrun");
    let (s, bucket) = store_with_one_run(&name, 20).await;
    drop(s);
    let short = Uint8Array::new_with_length(20 * 4096 - 1).into();
    put_raw(&name, bucket, "runs", &key(1.0, 20.0), &short).await;
    let s = IdbStore::open(&name).await.unwrap();
    s.read_meta().await.unwrap();
    let e = s.read_page(3).await.unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
    drop(s);
    IdbStore::destroy(&name).await.unwrap();

    // Keys of runs refused when the state is read from them (a database
    // without a layout record: upgraded from schema version 3).
    let bad = [
        ("a count above 64", key(100.0, 1000.0), pages(1)),
        (
            "a key that is not an array",
            JsValue::from_str("x"),
            pages(1),
        ),
        ("an overlap", key(10.0, 4.0), pages(4)),
    ];
    for (what, k, v) in bad {
        let name = unique_name("badruns");
        let (s, bucket) = store_with_one_run(&name, 20).await;
        drop(s);
        put_raw(&name, bucket.clone(), "runs", &k, &v).await;
        delete_raw(&name, bucket, "meta", &3.into()).await;
        let s = IdbStore::open(&name).await.unwrap();
        let e = s.read_meta().await.unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { .. }), "{what}: {e:?}");
        drop(s);
        IdbStore::destroy(&name).await.unwrap();
    }

    // Layout records refused when the state is read.
    let record = |format: u8, count: u32, runs: &[(u64, u16)]| -> JsValue {
        let mut b = vec![format];
        b.extend_from_slice(&count.to_le_bytes());
        for &(first, n) in runs {
            b.extend_from_slice(&first.to_le_bytes());
            b.extend_from_slice(&n.to_le_bytes());
        }
        Uint8Array::from(b.as_slice()).into()
    };
    let bad = [
        ("format 2", record(2, 1, &[(1, 20)])),
        ("cut short", Uint8Array::from(&[1u8, 1, 0][..]).into()),
        ("a count its length does not hold", record(1, 2, &[(1, 20)])),
        ("a run of 65 pages", record(1, 1, &[(1, 65)])),
        ("a run of 0 pages", record(1, 1, &[(1, 0)])),
        ("an overlap", record(1, 2, &[(1, 20), (10, 4)])),
        ("out of order", record(1, 2, &[(30, 4), (1, 20)])),
        ("past 2^53", record(1, 1, &[((1 << 53) - 2, 4)])),
        ("not a byte array", JsValue::from_str("runs")),
    ];
    for (what, v) in bad {
        let name = unique_name("badlayout");
        let (s, bucket) = store_with_one_run(&name, 20).await;
        drop(s);
        put_raw(&name, bucket, "meta", &3.into(), &v).await;
        let s = IdbStore::open(&name).await.unwrap();
        let e = s.read_meta().await.unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { .. }), "{what}: {e:?}");
        drop(s);
        IdbStore::destroy(&name).await.unwrap();
    }
}

/// Where there are no storage buckets, a purge's erasure rewrites the runs:
/// the images page records replaced become zeros, a run with nothing else
/// is deleted, the newest version of every page reads the same.
#[wasm_bindgen_test]
async fn idb_runs_are_scrubbed_of_replaced_images() {
    let name = unique_name("scrub");
    // One run, 1..=30; then records for 3 and 4 (and 21 pages elsewhere,
    // to make the commit a fold).
    let (s, bucket) = store_with_one_run(&name, 30).await;
    let mut b: Vec<(PageNo, u8)> = vec![(3, 0xB3), (4, 0xB4)];
    b.extend((100..=120).map(|no| (no * 2, 0xB0)));
    s.commit(commit(&b, b"B")).await.unwrap();
    let run = || async { records(&name, bucket.clone(), "runs").await.concat() };
    assert!(
        holds_page(&run().await, &page(0xA0, 3)),
        "the test can fail"
    );
    s.testing_scrub_runs().await.unwrap();
    assert_layout(&name, bucket.clone(), true).await;
    let raw = run().await;
    assert!(
        !holds_page(&raw, &page(0xA0, 3)),
        "page 3's old image is gone"
    );
    assert!(!holds_page(&raw, &page(0xA0, 4)));
    assert!(
        holds_page(&raw, &page(0xA0, 5)),
        "a live page in the run stays"
    );
    for no in 1..=30 {
        let want = match no {
            3 => page(0xB3, 3),
            4 => page(0xB4, 4),
            _ => page(0xA0, no),
        };
        assert_eq!(s.read_page(no).await.unwrap(), want, "page {no}");
    }
    // Every page of the run replaced: the fold deletes it (rule 3), and a
    // scrub after that finds nothing to do.
    let c: Vec<(PageNo, u8)> = (1..=30).map(|no| (no, 0xC0)).collect();
    s.commit(commit(&c, b"C")).await.unwrap();
    s.testing_scrub_runs().await.unwrap();
    assert_eq!(count(&name, bucket.clone(), "runs").await, 0);
    assert_layout(&name, bucket.clone(), false).await;
    s.close().await.unwrap();
    drop(s);
    let s = IdbStore::open(&name).await.unwrap();
    assert_eq!(s.read_meta().await.unwrap().as_deref(), Some(&b"C"[..]));
    for no in 1..=30 {
        assert_eq!(s.read_page(no).await.unwrap(), page(0xC0, no));
    }
    s.close().await.unwrap();
    drop(s);
    IdbStore::destroy(&name).await.unwrap();
}

/// Whether `raw` (page-aligned records) holds `page` at a page boundary.
fn holds_page(raw: &[u8], page: &[u8]) -> bool {
    raw.chunks(PAGE_SIZE).any(|c| c == page)
}

#[wasm_bindgen_test]
async fn idb_errors_are_typed() {
    // A QuotaExceededError DOMException (what an aborted commit reports when
    // the origin's quota is full) maps to QuotaExceeded; others to Other.
    let quota =
        web_sys::DomException::new_with_message_and_name("full", "QuotaExceededError").unwrap();
    let e = error_from_js("commit", &JsValue::from(quota));
    assert!(matches!(e, StoreError::QuotaExceeded(_)), "{e:?}");
    assert_eq!(e.code(), "quota_exceeded");
    let other =
        web_sys::DomException::new_with_message_and_name("no", "InvalidStateError").unwrap();
    let e = error_from_js("commit", &JsValue::from(other));
    assert!(
        matches!(&e, StoreError::Other(m) if m.contains("InvalidStateError")),
        "{e:?}"
    );
    let e = error_from_js("commit", &JsValue::from_str("boom"));
    assert!(matches!(e, StoreError::Other(_)));

    // A database of that name with a newer schema is refused, not damaged.
    let name = unique_name("newer");
    let newer = rexie::Rexie::builder(&name)
        .version(7)
        .add_object_store(rexie::ObjectStore::new("other"))
        .build()
        .await
        .unwrap();
    newer.close();
    let e = IdbStore::open(&name).await.unwrap_err();
    assert!(matches!(e, StoreError::Unsupported { .. }), "{e:?}");
    IdbStore::destroy(&name).await.unwrap();

    // Persistence request: Chromium answers (granted or not) without failing.
    let granted = IdbStore::request_persistence().await.unwrap();
    web_sys_log(&format!("navigator.storage.persist() -> {granted}"));
}

fn web_sys_log(msg: &str) {
    wasm_bindgen_test::console_log!("{msg}");
}

// ---------------------------------------------------------------- engine ---

#[wasm_bindgen_test]
async fn database_put_get_scan_changes() {
    let name = unique_name("db");
    let db = open_db(&name).await;
    put_first_patient(&db).await;
    db.put("patients/dr-7/p2", json!({"name": "Grace"}))
        .await
        .unwrap();
    db.put("patients/dr-8/p3", json!({"name": "Edsger"}))
        .await
        .unwrap();
    db.put("invoices/1", json!({"total": 12})).await.unwrap();

    let d = db.get("Patients/DR-7/P1").await.unwrap().unwrap();
    assert_eq!(d.id, "patients/dr-7/p1");
    assert_eq!(d.body["name"], "Ada");
    assert_eq!(d.meta.collection.as_deref(), Some("Patients"));
    assert!(db.get("patients/none").await.unwrap().is_none());

    let scan = db.scan("patients/dr-7/", None, 100).await.unwrap();
    let ids: Vec<&str> = scan.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["patients/dr-7/p1", "patients/dr-7/p2"]);
    let page2 = db
        .scan("patients/", Some("patients/dr-7/p2"), 100)
        .await
        .unwrap();
    assert_eq!(page2.len(), 1);
    assert_eq!(page2[0].id, "patients/dr-8/p3");

    let del = db.delete("patients/dr-7/p2").await.unwrap().unwrap();
    assert!(del.deleted);
    let changes = db.changes(0, 100).await.unwrap();
    let ids: Vec<&str> = changes.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "patients/dr-7/p1",
            "patients/dr-8/p3",
            "invoices/1",
            "patients/dr-7/p2"
        ]
    );
    assert!(changes[3].body.is_null());
    assert_eq!(db.changes(4, 100).await.unwrap().len(), 1);
    assert_eq!(db.count().await.unwrap(), 3);
    assert_eq!(
        db.collections().await.unwrap(),
        vec![("Patients".to_string(), 1)]
    );
    assert!(db.integrity_check().await.unwrap().is_ok());
    db.close().await.unwrap();
    drop(db);
    IdbStore::destroy(&name).await.unwrap();
}

#[wasm_bindgen_test]
async fn database_survives_close_and_reopen() {
    let name = unique_name("reopen");
    let db = open_db(&name).await;
    let id = db.db_id();
    let mut batch = Batch::new();
    for i in 0..50 {
        batch.put(format!("notes/{i:03}"), json!({"n": i}));
    }
    db.commit(batch).await.unwrap();
    db.delete("notes/007").await.unwrap();
    db.close().await.unwrap();
    drop(db);

    let db = open_db(&name).await;
    assert_eq!(db.db_id(), id, "the database id is persisted");
    assert_eq!(db.count().await.unwrap(), 49);
    assert_eq!(db.get("notes/042").await.unwrap().unwrap().body["n"], 42);
    assert!(db.get("notes/007").await.unwrap().is_none());
    assert_eq!(db.changes(0, 1000).await.unwrap().len(), 50);
    // And it keeps accepting writes after the reopen.
    let r = db.put("notes/100", json!({"n": 100})).await.unwrap();
    assert_eq!(r.etag, 52);
    assert!(db.integrity_check().await.unwrap().is_ok());
    db.close().await.unwrap();
    drop(db);
    IdbStore::destroy(&name).await.unwrap();
}

#[wasm_bindgen_test]
async fn ten_thousand_documents() {
    let name = unique_name("10k");
    let db = open_db(&name).await;
    let t0 = js_sys::Date::now();
    for b in 0..20 {
        let mut batch = Batch::new();
        for i in 0..500 {
            let n = b * 500 + i;
            batch.put(
                format!("items/{n:05}"),
                json!({"n": n, "label": format!("item number {n}"), "tags": ["a", "b"]}),
            );
        }
        db.commit(batch).await.unwrap();
    }
    let pages = db.stats().pages;
    db.close().await.unwrap();
    drop(db);
    let wrote = js_sys::Date::now() - t0;

    let db = open_db(&name).await;
    assert_eq!(db.count().await.unwrap(), 10_000);
    // A cold scan: its leaves come from IndexedDB in read-ahead batches.
    let all = db.scan("items/", None, 20_000).await.unwrap();
    assert_eq!(all.len(), 10_000);
    assert_eq!(all[9_999].id, "items/09999");
    for (i, d) in all.iter().enumerate() {
        assert_eq!(d.body["n"], i, "{}", d.id);
    }
    assert_eq!(
        db.get("items/04321").await.unwrap().unwrap().body["n"],
        4321
    );
    assert_eq!(db.changes(9_990, 100).await.unwrap().len(), 10);
    let report = db.integrity_check().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.documents, 10_000);
    web_sys_log(&format!(
        "10,000 documents in 20 batches: {wrote:.0} ms, {pages} pages of {PAGE_SIZE} bytes"
    ));
    db.close().await.unwrap();
    drop(db);
    IdbStore::destroy(&name).await.unwrap();
}

#[wasm_bindgen_test]
async fn large_document_uses_overflow_pages() {
    let name = unique_name("large");
    let db = open_db(&name).await;
    // ~400 KB of text that does not repeat page-aligned.
    let text: String = (0..40_000).map(|i| format!("{i:09}|")).collect();
    assert!(text.len() >= 300_000);
    db.put("blobs/big", json!({"text": text})).await.unwrap();
    db.put("blobs/small", json!({"x": 1})).await.unwrap();
    assert!(db.stats().pages > (300_000 / PAGE_SIZE) as u64);
    db.close().await.unwrap();
    drop(db);

    let db = open_db(&name).await;
    let d = db.get("blobs/big").await.unwrap().unwrap();
    assert_eq!(d.body["text"].as_str().unwrap(), text);
    // Replace it with a smaller version, then delete it: pages are reused.
    db.put("blobs/big", json!({"text": "short"})).await.unwrap();
    assert_eq!(
        db.get("blobs/big").await.unwrap().unwrap().body["text"],
        "short"
    );
    db.delete("blobs/big").await.unwrap();
    assert!(db.integrity_check().await.unwrap().is_ok());
    db.close().await.unwrap();
    drop(db);
    IdbStore::destroy(&name).await.unwrap();
}

fn holds(bytes: &[u8], marker: &str) -> bool {
    bytes.windows(marker.len()).any(|w| w == marker.as_bytes())
}

/// A purge leaves no plaintext of the purged documents (bodies, old
/// versions, large bodies, ids) in any IndexedDB record of the database,
/// the images in runs that page records replaced included.
#[wasm_bindgen_test]
async fn purge_leaves_no_plaintext_in_indexeddb() {
    const GONE: &str = "GONE-b71";
    let name = unique_name("purge");
    let db = open_db(&name).await;
    for i in 0..20 {
        db.put(&format!("keep/{i}"), json!({"n": i, "s": "KEEP-c3"}))
            .await
            .unwrap();
    }
    let gone = format!("private/{GONE}-1");
    for v in 0..3 {
        db.put(&gone, json!({"s": format!("{GONE} version {v}")}))
            .await
            .unwrap();
    }
    let big: String = (0..5_000).map(|i| format!("{GONE}{i:05}")).collect();
    db.put("private/big", json!({"s": big})).await.unwrap();
    db.delete("private/big").await.unwrap();
    db.put("private/big2", json!({"s": big})).await.unwrap();
    // Runs (a large commit) whose pages then get page records: their old
    // images stay in the run until the move. Kept documents share the runs,
    // so the purge does not replace every page of them.
    let mut b = Batch::new();
    for i in 0..100 {
        b.put(
            format!("keep/bulk{i:03}"),
            json!({"s": "KEEP-c3", "pad": "k".repeat(300)}),
        );
    }
    for i in 0..300 {
        b.put(
            format!("private/bulk{i:03}"),
            json!({"s": format!("{GONE} bulk {i}"), "pad": "p".repeat(300)}),
        );
    }
    db.commit(b).await.unwrap();
    for i in (0..300).step_by(7) {
        db.put(&format!("private/bulk{i:03}"), json!({"s": "rewritten"}))
            .await
            .unwrap();
    }
    let bucket = db.store().bucket();
    db.close().await.unwrap();
    drop(db);
    assert!(
        count(&name, bucket.clone(), "runs").await > 0,
        "the test writes runs"
    );
    assert!(
        holds(&every_record(&name, bucket).await, GONE),
        "the test can fail"
    );

    let db = open_db(&name).await;
    let report = db
        .purge(&outpost::db::PurgeScope {
            prefixes: vec!["private/".into()],
            keep: vec![],
            ids: vec![],
            id_hashes: vec![],
        })
        .await
        .unwrap();
    assert_eq!(report.removed, 303);
    assert!(db.get(&gone).await.unwrap().is_none());
    assert_eq!(db.count().await.unwrap(), 120);
    assert!(db.integrity_check().await.unwrap().is_ok());
    let bucket = db.store().bucket();
    db.close().await.unwrap();
    drop(db);
    // The purge moved the database to a new storage bucket: its copy of the
    // runs has no layout record until its first fold (its reads take the
    // runs' keys), and that fold writes one listing every run.
    if bucket.is_some() {
        assert!(count(&name, bucket.clone(), "runs").await > 0);
        assert_eq!(layout(&name, bucket.clone()).await, None);
        let db = open_db(&name).await;
        assert_eq!(db.count().await.unwrap(), 120);
        let mut b = Batch::new();
        for i in 0..100 {
            b.put(format!("after/{i:03}"), json!({"pad": "z".repeat(900)}));
        }
        db.commit(b).await.unwrap();
        assert_layout(&name, bucket.clone(), false).await;
        assert_eq!(db.count().await.unwrap(), 220);
        assert!(db.integrity_check().await.unwrap().is_ok());
        db.close().await.unwrap();
    }
    // Every record of every object store, old images in runs included.
    let dump = every_record(&name, bucket).await;
    assert!(!holds(&dump, GONE), "no plaintext of purged documents");
    assert!(holds(&dump, "KEEP-c3"));
    IdbStore::destroy(&name).await.unwrap();
}

#[wasm_bindgen_test]
async fn bad_input_is_refused_with_typed_errors() {
    let name = unique_name("bad");
    let db = open_db(&name).await;
    db.put("ok/1", json!({"a": 1})).await.unwrap();

    let e = db.put("", json!({"a": 1})).await.unwrap_err();
    assert_eq!(e.code(), "invalid_id");
    let e = db.put("bad\u{0}id", json!({"a": 1})).await.unwrap_err();
    assert_eq!(e.code(), "invalid_id");
    let e = db.put(&"x".repeat(600), json!({"a": 1})).await.unwrap_err();
    assert_eq!(e.code(), "invalid_id");
    assert!(matches!(e, Error::Input(_)));

    // A batch with one bad operation writes nothing.
    let mut batch = Batch::new();
    batch.put("ok/2", json!({"a": 2}));
    batch.put("", json!({"a": 3}));
    assert_eq!(db.commit(batch).await.unwrap_err().code(), "invalid_id");
    assert!(db.get("ok/2").await.unwrap().is_none());
    assert_eq!(db.count().await.unwrap(), 1);

    // The database is still healthy, also after a reopen.
    db.put("ok/3", json!({"a": 3})).await.unwrap();
    db.close().await.unwrap();
    drop(db);
    let db = open_db(&name).await;
    assert_eq!(db.count().await.unwrap(), 2);
    db.close().await.unwrap();
    drop(db);
    IdbStore::destroy(&name).await.unwrap();
}

/// An index step in the browser maps one task budget
/// (`outpost::platform::TASK_BUDGET_MS`) at a time and then waits for the
/// next task, for at most `STEP_TASKS` budgets; then it commits. With a map
/// function that takes 1-2 ms a document, no task maps more documents than
/// fit its budget, one step maps some of 200 documents, not all, and the
/// steps that follow catch the index up, every document once. A message
/// sent round a `MessageChannel` without pause counts the tasks: its
/// handler runs between any two of the step's tasks. (Natively a step maps
/// up to `STEP_DOCS` in one go.)
#[wasm_bindgen_test]
async fn a_slow_map_function_maps_one_task_budget_at_a_time() {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    use outpost::db::STEP_TASKS;
    use outpost::index::{Emit, FnIndex, Index, IndexDefinition, IndexQuery, MapDoc};
    use wasm_bindgen::JsCast;
    use wasm_bindgen::closure::Closure;

    static TICKS: AtomicU32 = AtomicU32::new(0);
    /// The tick count at each call of the map function.
    static SEEN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

    const DOCS: i64 = 200;
    let name = unique_name("slowmap");
    let db = open_db(&name).await;
    let mut batch = Batch::new();
    for n in 0..DOCS {
        batch.put(format!("d/{n:03}"), json!({ "n": n }));
    }
    db.commit(batch).await.unwrap();
    fn slow(d: &MapDoc<'_>) -> Result<Vec<Emit>, String> {
        SEEN.lock().unwrap().push(TICKS.load(Ordering::Relaxed));
        let until = js_sys::Date::now() + 2.0;
        while js_sys::Date::now() < until {}
        Ok(vec![Emit::new(d.body()?["n"].clone(), json!(null))])
    }
    let index = Index::new(IndexDefinition::map("slow", "1", &[]), FnIndex::map(slow));
    let ch = web_sys::MessageChannel::new().unwrap();
    let back = ch.port2();
    let tick = Closure::<dyn FnMut()>::new(move || {
        TICKS.fetch_add(1, Ordering::Relaxed);
        let _ = back.post_message(&JsValue::UNDEFINED);
    });
    ch.port1()
        .set_onmessage(Some(tick.as_ref().unchecked_ref()));
    ch.port2().post_message(&JsValue::UNDEFINED).unwrap();

    let budget = outpost::platform::TASK_BUDGET_MS.expect("a budget in the browser");
    let first = db.update_index(&index).await.unwrap();
    ch.port1().close();
    drop(tick);
    let seen = std::mem::take(&mut *SEEN.lock().unwrap());
    assert_eq!(seen.len(), first.mapped);
    // Calls in the same task see the same count.
    let mut per_task: Vec<usize> = Vec::new();
    for (i, t) in seen.iter().enumerate() {
        if i == 0 || seen[i - 1] != *t {
            per_task.push(0);
        }
        *per_task.last_mut().unwrap() += 1;
    }
    // The budget is looked at after each document; each takes at least
    // 1 ms, and `Date.now()` counts whole milliseconds.
    let most = per_task.iter().copied().max().unwrap();
    assert!(
        most as i64 <= budget + 2,
        "{most} documents of at least 1 ms each in one task, against a budget of {budget} ms \
         (per task: {per_task:?})"
    );
    assert!(
        per_task.len() > 1 && per_task.len() <= STEP_TASKS as usize,
        "the step mapped in {} tasks (at most {STEP_TASKS}): {per_task:?}",
        per_task.len()
    );
    assert!(
        first.mapped >= 1 && (first.mapped as i64) < DOCS,
        "one step mapped {} of {DOCS} documents",
        first.mapped
    );
    assert!(first.indexed_etag < first.db_etag, "{first:?}");
    let done = db.catch_up_index(&index, None).await.unwrap();
    assert_eq!(done.indexed_etag, done.db_etag, "{done:?}");
    let rows = db
        .snapshot()
        .query("slow", &IndexQuery::default())
        .await
        .unwrap()
        .rows;
    let ns: Vec<i64> = rows.iter().map(|r| r.key.as_i64().unwrap()).collect();
    assert_eq!(ns, (0..DOCS).collect::<Vec<i64>>());
    // A step told that other operations wait ends at its first wait for the
    // next task: it maps one task budget's documents and commits them.
    let other = Index::new(IndexDefinition::map("slow2", "1", &[]), FnIndex::map(slow));
    let p = db.update_index_unless(&other, &|| true).await.unwrap();
    assert!(
        p.mapped >= 1 && p.mapped as i64 <= budget + 2,
        "a step with others waiting mapped {} documents",
        p.mapped
    );
    assert!(p.indexed_etag < p.db_etag, "{p:?}");
    let p = db.catch_up_index(&other, None).await.unwrap();
    assert_eq!(p.indexed_etag, p.db_etag, "{p:?}");
    db.close().await.unwrap();
    drop(db);
    IdbStore::destroy(&name).await.unwrap();
}

// ------------------------------------------------------- storage buckets ---

/// `navigator.storageBuckets.keys()`.
async fn bucket_names() -> Vec<String> {
    use js_sys::{Array, Function, Promise, Reflect};
    use wasm_bindgen::JsCast;
    let nav = Reflect::get(&js_sys::global(), &"navigator".into()).unwrap();
    let m = Reflect::get(&nav, &"storageBuckets".into()).unwrap();
    let keys: Function = Reflect::get(&m, &"keys".into()).unwrap().unchecked_into();
    let p: Promise = keys.call0(&m).unwrap().unchecked_into();
    let all: Array = wasm_bindgen_futures::JsFuture::from(p)
        .await
        .unwrap()
        .unchecked_into();
    all.iter().filter_map(|v| v.as_string()).collect()
}

/// The bucket name's generation (its last `-` field).
fn generation(bucket: &str) -> u64 {
    bucket.rsplit('-').next().unwrap().parse().unwrap()
}

fn private_scope() -> outpost::db::PurgeScope {
    outpost::db::PurgeScope {
        prefixes: vec!["private/".into()],
        keep: vec![],
        ids: vec![],
        id_hashes: vec![],
    }
}

/// Chromium has storage buckets: a new database lives in a bucket of its
/// own (generation 1); a purge moves it into generation 2 and the browser
/// lists generation 1 no more (its directory, with every overwritten page
/// image LevelDB kept, is deleted; the Playwright test `purge.test.mjs`
/// searches the profile's files). A second handle (another tab) open on the
/// same database meanwhile finds the new generation at its next refresh and
/// reads and writes there; a commit issued during the move is not lost.
#[wasm_bindgen_test]
async fn a_purge_moves_the_database_into_the_next_bucket() {
    let name = unique_name("bucket");
    let db = open_db(&name).await;
    let first = db.store().bucket().expect("Chromium has storage buckets");
    assert_eq!(generation(&first), 1, "{first}");
    assert!(bucket_names().await.contains(&first));
    for i in 0..50 {
        db.put(&format!("keep/{i}"), json!({"n": i})).await.unwrap();
        db.put(&format!("private/{i}"), json!({"s": "GONE-d41"}))
            .await
            .unwrap();
    }
    // Another tab's handle on the same database.
    let other = open_db(&name).await;
    assert_eq!(other.store().bucket().as_deref(), Some(first.as_str()));
    assert_eq!(other.count().await.unwrap(), 100);

    // A write issued while the purge moves the database is held, then lands
    // in the new generation.
    let scope = private_scope();
    let (report, put) = futures::join!(db.purge(&scope), async {
        db.put("keep/during", json!({"during": true})).await
    });
    assert_eq!(report.unwrap().removed, 50);
    put.unwrap();
    let second = db.store().bucket().unwrap();
    assert_eq!(generation(&second), 2, "{second}");
    let names = bucket_names().await;
    assert!(names.contains(&second), "{names:?}");
    assert!(
        !names.contains(&first),
        "the old generation is deleted: {names:?}"
    );

    // The other handle: its connection was closed by the browser; refresh
    // reconnects to the new generation.
    other.refresh().await.unwrap();
    assert_eq!(other.store().bucket().as_deref(), Some(second.as_str()));
    assert_eq!(other.count().await.unwrap(), 51);
    assert!(other.get("private/3").await.unwrap().is_none());
    other
        .put("keep/other", json!({"from": "other"}))
        .await
        .unwrap();
    other.close().await.unwrap();
    drop(other);

    db.refresh().await.unwrap();
    assert_eq!(db.count().await.unwrap(), 52);
    assert!(db.integrity_check().await.unwrap().is_ok());
    db.close().await.unwrap();
    drop(db);

    // Reopened: the same generation, everything there.
    let db = open_db(&name).await;
    assert_eq!(db.store().bucket().as_deref(), Some(second.as_str()));
    assert_eq!(db.count().await.unwrap(), 52);
    assert_eq!(
        db.get("keep/during").await.unwrap().unwrap().body,
        json!({"during": true})
    );
    db.close().await.unwrap();
    drop(db);
    IdbStore::destroy(&name).await.unwrap();
    let names = bucket_names().await;
    assert!(!names.iter().any(|n| n == &second), "{names:?}");
}

/// Interrupted moves: a newer generation without a meta record (a copy cut
/// short) is deleted at open and the older one used; an older generation
/// next to a complete newer one (its deletion cut short) is deleted.
#[wasm_bindgen_test]
async fn an_interrupted_move_is_finished_at_open() {
    let name = unique_name("moved");
    let db = open_db(&name).await;
    db.put("a", json!({"a": 1})).await.unwrap();
    let g1 = db.store().bucket().unwrap();
    db.close().await.unwrap();
    drop(db);
    let g2 = format!("{}-2", g1.rsplit_once('-').unwrap().0);
    assert_eq!(generation(&g2), 2);

    // A copy cut short: generation 2 holds a page, no meta record.
    {
        let store = IdbStore::open(&name).await.unwrap();
        store.testing_write_generation(2, false).await.unwrap();
    }
    assert!(bucket_names().await.contains(&g2));
    let db = open_db(&name).await;
    assert_eq!(db.store().bucket().as_deref(), Some(g1.as_str()));
    assert_eq!(db.get("a").await.unwrap().unwrap().body, json!({"a": 1}));
    assert!(
        !bucket_names().await.contains(&g2),
        "the incomplete copy is deleted"
    );
    db.close().await.unwrap();
    drop(db);

    // A finished copy whose source was not deleted: generation 2 complete.
    {
        let store = IdbStore::open(&name).await.unwrap();
        store.testing_write_generation(2, true).await.unwrap();
    }
    let db = open_db(&name).await;
    assert_eq!(db.store().bucket().as_deref(), Some(g2.as_str()));
    assert_eq!(db.get("a").await.unwrap().unwrap().body, json!({"a": 1}));
    let names = bucket_names().await;
    assert!(
        !names.contains(&g1),
        "the superseded generation is deleted: {names:?}"
    );
    db.close().await.unwrap();
    drop(db);
    IdbStore::destroy(&name).await.unwrap();
}

/// A database made before storage buckets were used lives in the default
/// storage and is used there; its first purge moves it into generation 1
/// and deletes it from the default storage.
#[wasm_bindgen_test]
async fn a_database_from_before_buckets_moves_at_its_first_purge() {
    let name = unique_name("legacy");
    let legacy = rexie::Rexie::builder(&name)
        .version(1)
        .add_object_store(rexie::ObjectStore::new("pages"))
        .add_object_store(rexie::ObjectStore::new("meta"))
        .build()
        .await
        .unwrap();
    legacy.close();
    let db = open_db(&name).await;
    assert_eq!(db.store().bucket(), None, "used where it is");
    db.put("keep", json!({"k": 1})).await.unwrap();
    db.put("private/x", json!({"s": "GONE"})).await.unwrap();
    db.close().await.unwrap();
    drop(db);
    let db = open_db(&name).await;
    assert_eq!(db.store().bucket(), None);
    assert_eq!(db.purge(&private_scope()).await.unwrap().removed, 1);
    let moved = db.store().bucket().expect("moved into a bucket");
    assert_eq!(generation(&moved), 1);
    db.close().await.unwrap();
    drop(db);
    let db = open_db(&name).await;
    assert_eq!(db.store().bucket().as_deref(), Some(moved.as_str()));
    assert_eq!(db.count().await.unwrap(), 1);
    assert!(db.get("private/x").await.unwrap().is_none());
    db.close().await.unwrap();
    drop(db);
    IdbStore::destroy(&name).await.unwrap();
}

/// Commits issued while the store moves to the next generation are held and
/// issued there, in call order: none is lost, the last one wins.
#[wasm_bindgen_test]
async fn commits_during_a_move_land_in_the_new_generation() {
    let name = unique_name("held");
    let store = IdbStore::open(&name).await.unwrap();
    store
        .commit(commit(&[(1, 1), (2, 1)], b"meta-1"))
        .await
        .unwrap();
    // `erase_residue` holds commits from its first poll on; the commits
    // below are issued at the join's first poll, after it.
    let (moved, a, b) = futures::join!(
        store.erase_residue(),
        store.commit(commit(&[(2, 2), (3, 2)], b"meta-2")),
        store.commit(commit(&[(3, 3)], b"meta-3")),
    );
    moved.unwrap();
    a.unwrap();
    b.unwrap();
    assert_eq!(generation(&store.bucket().unwrap()), 2);
    store.close().await.unwrap();
    drop(store);
    let store = IdbStore::open(&name).await.unwrap();
    assert_eq!(generation(&store.bucket().unwrap()), 2);
    assert_eq!(store.read_meta().await.unwrap().unwrap(), b"meta-3");
    assert_eq!(store.read_page(1).await.unwrap(), page(1, 1));
    assert_eq!(store.read_page(2).await.unwrap(), page(2, 2));
    assert_eq!(store.read_page(3).await.unwrap(), page(3, 3));
    store.close().await.unwrap();
    drop(store);
    IdbStore::destroy(&name).await.unwrap();
}

/// A database deleted while a handle has it open (`Outpost.destroy` in
/// another tab): the handle's next refresh fails with a clear error; it
/// never opens a new, empty database in its place.
#[wasm_bindgen_test]
async fn a_database_deleted_under_an_open_handle_is_not_recreated() {
    let name = unique_name("deleted");
    let db = open_db(&name).await;
    db.put("a", json!({"a": 1})).await.unwrap();
    let bucket = db.store().bucket().unwrap();
    IdbStore::destroy(&name).await.unwrap();
    let e = db.refresh().await.unwrap_err();
    assert!(e.to_string().contains("deleted while open"), "{e}");
    let names = bucket_names().await;
    assert!(!names.contains(&bucket), "not recreated: {names:?}");
    let _ = db.close().await;
}
