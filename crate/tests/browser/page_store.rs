//! The IndexedDB page store: commits, reads, the log, runs, the fence, errors.

use super::*;

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
