//! Vacuum (`Database::vacuum`): the pages in use move to the lowest
//! numbers and the file gives its free tail back, with every document,
//! etag and snapshot unchanged; a crash at any I/O operation of a vacuum
//! leaves a database that opens, passes the integrity check and holds the
//! same documents.

#![cfg(not(target_arch = "wasm32"))]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use futures::executor::block_on;
use outpost::store::MemoryStore;
use outpost::store::fault::{Fault, FaultVfs};
use outpost::store::file::{FileStore, FileStoreOptions};
use outpost::store::vfs::Vfs;
use outpost::{Batch, Database, DbId, OpenOptions, PageStore};
use outpost_testkit::{TempDir, opts};
use serde_json::json;

/// Writes `n` documents (every seventh one large enough for an overflow
/// chain), then deletes all but every `keep`th and compacts the
/// tombstones: most pages are free, scattered over the file.
async fn fill_and_thin<S: PageStore>(db: &Database<S>, n: usize, keep: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(200) {
        let mut b = Batch::new();
        for &i in chunk {
            let pad = if i % 7 == 0 { 9_000 } else { 80 };
            b.put(
                format!("d/{i:05}"),
                json!({ "i": i, "pad": "x".repeat(pad), "@metadata": { "@collection": "Notes" } }),
            );
        }
        db.commit(b).await.unwrap();
    }
    for chunk in (0..n)
        .filter(|i| i % keep != 0)
        .collect::<Vec<_>>()
        .chunks(200)
    {
        let mut b = Batch::new();
        for &i in chunk {
            b.delete(format!("d/{i:05}"));
        }
        db.commit(b).await.unwrap();
    }
    let last = db.stats().last_etag;
    let mut after = 0;
    loop {
        let s = db
            .compact_tombstones(after, last, 1000, None)
            .await
            .unwrap();
        after = s.reached;
        if s.done {
            break;
        }
    }
}

/// Everything a reader can see: each live document's body and etag, the
/// changes feed, the collection count.
async fn contents<S: PageStore>(db: &Database<S>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for d in db.changes(0, 1_000_000).await.unwrap() {
        out.insert(
            d.id.clone(),
            format!(
                "{} {}",
                d.meta.etag,
                serde_json::to_string(&d.body).unwrap()
            ),
        );
    }
    out.insert(
        "(stats)".into(),
        format!("{} {}", db.stats().documents, db.stats().last_etag),
    );
    out
}

#[test]
fn vacuum_moves_the_pages_down_and_the_file_shrinks() {
    let t = TempDir::new(std::env::temp_dir(), "outpost-vacuum");
    let open = || {
        let store = FileStore::open(t.path(), FileStoreOptions::default()).unwrap();
        block_on(Database::open(store, opts())).unwrap()
    };
    let db = open();
    block_on(fill_and_thin(&db, 3_000, 10));
    let want = block_on(contents(&db));
    let before = db.stats();
    let r = block_on(db.vacuum()).unwrap();
    let after = db.stats();
    assert_eq!(r.pages_before, before.pages);
    assert_eq!(r.pages_after, after.pages);
    assert!(r.moved > 0, "{r:?}");
    // The pages in use fit in the file, give or take the free list's own
    // page and what the last round could not move.
    let in_use = before.pages - before.free_pages;
    assert!(
        after.pages <= in_use + in_use / 16 + 20,
        "{r:?}: {in_use} pages in use"
    );
    assert!(block_on(db.integrity_check()).unwrap().is_ok());
    assert_eq!(block_on(contents(&db)), want);
    let file = std::fs::metadata(t.path().join("outpost.db"))
        .unwrap()
        .len();
    assert_eq!(file, 8192 + after.pages * 4096, "the data file is cut");
    // The write-ahead log was emptied, and the last round's flush grew it
    // by one step again (it is written in steps of 4 MiB).
    let wal = std::fs::metadata(t.path().join("outpost.wal"))
        .unwrap()
        .len();
    assert!(wal <= (4 << 20) + 8192, "write-ahead log of {wal} bytes");
    // Writes go on; the file grows again from its new end; it reopens whole.
    block_on(db.put("after", json!({ "x": 1 }))).unwrap();
    block_on(db.close()).unwrap();
    let db = open();
    assert!(block_on(db.integrity_check()).unwrap().is_ok());
    let mut got = block_on(contents(&db));
    assert!(got.remove("after").is_some());
    got.insert("(stats)".into(), want["(stats)"].clone());
    assert_eq!(got, want);
    // Nothing left to move: a second vacuum changes nothing.
    let pages = db.stats().pages;
    let r = block_on(db.vacuum()).unwrap();
    assert_eq!((r.moved, r.pages_after), (0, pages), "{r:?}");
    block_on(db.close()).unwrap();
}

#[test]
fn a_snapshot_held_during_a_vacuum_reads_what_it_read_before() {
    let store = Arc::new(MemoryStore::new());
    let db = block_on(Database::open(store.clone(), opts())).unwrap();
    block_on(fill_and_thin(&db, 2_000, 8));
    let want = block_on(contents(&db));
    let snap = db.snapshot();
    let held_pages = store.page_count();
    let r = block_on(db.vacuum()).unwrap();
    // The snapshot pins the pages the move freed: some space stays.
    let mut seen = 0;
    for (id, v) in &want {
        if id.starts_with("d/") {
            let d = block_on(snap.get(id)).unwrap().unwrap();
            assert_eq!(&format!("{} {}", d.meta.etag, d.body), v);
            seen += 1;
        }
    }
    assert_eq!(seen, 250);
    drop(snap);
    let again = block_on(db.vacuum()).unwrap();
    assert!(again.pages_after <= r.pages_after, "{r:?} then {again:?}");
    assert!(
        store.page_count() < held_pages / 2,
        "the store dropped the cut pages: {} of {held_pages}",
        store.page_count()
    );
    assert!(block_on(db.integrity_check()).unwrap().is_ok());
    assert_eq!(block_on(contents(&db)), want);
}

/// Writers go on during a vacuum (the pages to move are found on a
/// snapshot, then looked up again under the writer lock): every write
/// lands, nothing else changes, and the result checks clean.
#[test]
fn writes_during_a_vacuum_all_land() {
    let t = TempDir::new(std::env::temp_dir(), "outpost-vacuum-writes");
    let store = FileStore::open(t.path(), FileStoreOptions::default()).unwrap();
    let db = block_on(Database::open(store, opts())).unwrap();
    block_on(fill_and_thin(&db, 3_000, 10));
    let want = block_on(contents(&db));
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || {
            for i in 0..400 {
                let pad = if i % 9 == 0 { 7_000 } else { 50 };
                block_on(db.put(
                    &format!("w/{i:04}"),
                    json!({ "i": i, "pad": "y".repeat(pad) }),
                ))
                .unwrap();
            }
        })
    };
    let mut moved = 0;
    for _ in 0..3 {
        moved += block_on(db.vacuum()).unwrap().moved;
    }
    writer.join().unwrap();
    assert!(moved > 0);
    assert!(block_on(db.integrity_check()).unwrap().is_ok());
    let mut got = block_on(contents(&db));
    for i in 0..400 {
        let d = block_on(db.get(&format!("w/{i:04}"))).unwrap().unwrap();
        assert_eq!(d.body["i"], i);
        assert!(got.remove(&format!("w/{i:04}")).is_some());
    }
    got.insert("(stats)".into(), want["(stats)"].clone());
    assert_eq!(got, want);
    block_on(db.close()).unwrap();
}

const DIR: &str = "/vacuum/db";

fn crash_opts() -> OpenOptions {
    let t = Arc::new(AtomicI64::new(1_000));
    OpenOptions {
        clock: Some(Arc::new(move || t.fetch_add(1, Ordering::Relaxed))),
        db_id: Some(DbId([9; 16])),
        cache_bytes: 16 * 4096,
        ..Default::default()
    }
}

fn vfs_db(vfs: &FaultVfs) -> Result<Database<FileStore>, String> {
    let store = FileStore::open(
        Path::new(DIR),
        FileStoreOptions {
            vfs: Arc::new(vfs.clone()) as Arc<dyn Vfs>,
            checkpoint_wal_bytes: 256 * 1024,
            wal_grow_bytes: 32 * 1024,
            ..Default::default()
        },
    )
    .map_err(|e| e.to_string())?;
    block_on(Database::open(store, crash_opts())).map_err(|e| e.to_string())
}

/// A crash at every I/O operation of a vacuum: every disk image a crash
/// could leave opens, passes the integrity check, and holds exactly the
/// documents of before.
#[test]
fn a_crash_anywhere_in_a_vacuum_loses_nothing() {
    let set_up = |vfs: &FaultVfs| {
        let db = vfs_db(vfs).unwrap();
        block_on(fill_and_thin(&db, 400, 6));
        db
    };
    let vfs = FaultVfs::new();
    let db = set_up(&vfs);
    let want = block_on(contents(&db));
    let first = vfs.op_count();
    let r = block_on(db.vacuum()).unwrap();
    let last = vfs.op_count();
    assert!(r.pages_after < r.pages_before, "{r:?}");
    block_on(db.close()).unwrap();
    println!("vacuum: {r:?}, I/O operations {} to {last}", first + 1);
    // The set-up's I/O operations vary a little from run to run (the
    // writer thread's group commits): the crash is placed relative to the
    // start of the vacuum, at its 1st, 2nd, ... operation, until one
    // vacuum completes without reaching it.
    let mut images = 0;
    let mut k = 1;
    loop {
        assert!(k <= 4 * (last - first) + 20, "a vacuum that never ends");
        let vfs = FaultVfs::new();
        let db = set_up(&vfs);
        let n = vfs.op_count() + k;
        vfs.set_fault(Some(Fault::CrashAt(n)));
        let r = block_on(db.vacuum());
        if !vfs.crashed() {
            r.unwrap();
            break;
        }
        drop(db);
        for (i, img) in vfs.crash_images(3, n).into_iter().enumerate() {
            let db = vfs_db(&img).unwrap_or_else(|e| panic!("crash at op +{k}, image {i}: {e}"));
            let rep = block_on(db.integrity_check()).unwrap();
            assert!(
                rep.is_ok(),
                "crash at op +{k}, image {i}: {:?}",
                rep.problems
            );
            assert_eq!(block_on(contents(&db)), want, "crash at op +{k}, image {i}");
            // And it vacuums to the end from there.
            block_on(db.vacuum()).unwrap();
            assert!(block_on(db.integrity_check()).unwrap().is_ok());
            block_on(db.close()).unwrap();
            images += 1;
        }
        k += 1;
    }
    assert!(k > 5, "the vacuum did some I/O");
    println!("{images} crash images checked");
}
