//! File-store format upgrades: a store whose write-ahead log was written by
//! an older file-store format is recovered by this one, whole, and upgraded
//! by the checkpoint every open makes.
//!
//! The fixture `tests/fixtures/v2-store-wal/` was written by the file store
//! at format version 2 (fixed 4,160-byte WAL frames; see its `README.txt`);
//! `write_store_fixture` below is the generator that wrote it. Its WAL still
//! holds every transaction (the writer was stopped without a close, as a
//! crash would), so opening it replays version-2 frames.
#![cfg(not(target_arch = "wasm32"))]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use futures::executor::block_on;
use outpost::store::file::{DATA_FILE, FORMAT_VERSION, FileStore, FileStoreOptions, WAL_FILE};
use outpost::{Batch, Database, DbId, OpenOptions};
use outpost_testkit::TempDir;
use serde_json::json;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v2-store-wal");

/// Deterministic options: a fixed database id and a clock ticking from
/// 1_700_000_000_000 ms.
fn fixture_opts() -> OpenOptions {
    let t = Arc::new(AtomicI64::new(1_700_000_000_000));
    OpenOptions {
        clock: Some(Arc::new(move || t.fetch_add(1, Ordering::Relaxed))),
        db_id: Some(DbId([0xF3; 16])),
        ..Default::default()
    }
}

/// The text of note `i`: long enough that some notes fill most of a page.
fn note(i: usize) -> String {
    format!("note {i} ").repeat(1 + i * 7)
}

/// Writes the fixture into `dir`, and stops without closing (so without the
/// checkpoint a close makes): 12 single-document commits `notes/n1..n12`, a
/// batch of 30 documents `bulk/b00..b29` in one transaction, then the
/// deletion of `notes/n2` and the replacement of `notes/n3` (`{"n": 300}`).
async fn write_store_fixture_db(dir: &Path) {
    let store_opts = FileStoreOptions {
        wal_grow_bytes: 0,
        checkpoint_wal_bytes: 1 << 30,
        ..FileStoreOptions::default()
    };
    let store = FileStore::open(dir, store_opts).unwrap();
    let db = Database::open(store, fixture_opts()).await.unwrap();
    for i in 1..=12 {
        db.put(&format!("notes/n{i}"), json!({"n": i, "text": note(i)}))
            .await
            .unwrap();
    }
    let mut b = Batch::new();
    for i in 0..30 {
        b.put(
            format!("bulk/b{i:02}"),
            json!({"i": i, "text": note(i % 9)}),
        );
    }
    db.commit(b).await.unwrap();
    db.delete("notes/n2").await.unwrap();
    db.put("notes/n3", json!({"n": 300})).await.unwrap();
    // Every commit above was durable (acknowledged after its fsync). Copy
    // the files now, as a crash would leave them: no close, no checkpoint.
    let out = std::env::var("OUTPOST_FIXTURE_OUT").unwrap();
    for f in [DATA_FILE, WAL_FILE] {
        std::fs::copy(dir.join(f), Path::new(&out).join(f)).unwrap();
    }
    std::mem::forget(db);
}

/// The generator of `tests/fixtures/v2-store-wal/`. Run by hand:
///
/// ```text
/// mkdir /tmp/fixture && OUTPOST_FIXTURE_OUT=/tmp/fixture \
///   cargo test -p outpost --features testing --test store_format -- --ignored write_store_fixture
/// ```
///
/// It writes the format of the store it is built with: run at file-store
/// format 2 (commit 25279c9) it wrote the committed fixture. The committed
/// files are the fixture, not this function.
#[test]
#[ignore]
fn write_store_fixture() {
    let t = TempDir::new(std::env::temp_dir(), "store-fixture");
    block_on(write_store_fixture_db(t.path()));
}

/// A copy of the fixture in a fresh temporary directory.
fn fixture_copy(name: &str) -> TempDir {
    let t = TempDir::new(std::env::temp_dir(), name);
    for f in [DATA_FILE, WAL_FILE] {
        std::fs::copy(Path::new(FIXTURE).join(f), t.join(f)).unwrap();
    }
    t
}

/// The format versions in the data file's two header slots (0: not valid
/// magic).
fn header_versions(dir: &Path) -> [u32; 2] {
    let b = std::fs::read(dir.join(DATA_FILE)).unwrap();
    [0usize, 4096].map(|at| {
        if b.len() >= at + 12 && &b[at..at + 8] == b"OUTPSTDB" {
            u32::from_le_bytes(b[at + 8..at + 12].try_into().unwrap())
        } else {
            0
        }
    })
}

/// Checks that `db` holds exactly what the fixture's README lists.
async fn check_contents(db: &Database<FileStore>) {
    let s = db.stats();
    assert_eq!(s.db_id, DbId([0xF3; 16]).to_string());
    assert_eq!((s.documents, s.tombstones, s.last_etag), (41, 1, 44));
    for i in (1..=12).filter(|i| ![2, 3].contains(i)) {
        let d = db.get(&format!("notes/n{i}")).await.unwrap().unwrap();
        assert_eq!(d.body, json!({"n": i, "text": note(i)}), "notes/n{i}");
    }
    assert!(db.get("notes/n2").await.unwrap().is_none());
    assert_eq!(
        db.get("notes/n3").await.unwrap().unwrap().body,
        json!({"n": 300})
    );
    for i in 0..30 {
        let d = db.get(&format!("bulk/b{i:02}")).await.unwrap().unwrap();
        assert_eq!(d.body, json!({"i": i, "text": note(i % 9)}), "bulk/b{i:02}");
    }
    assert_eq!(db.changes(0, 100).await.unwrap().len(), 42);
    let rep = db.integrity_check().await.unwrap();
    assert!(rep.is_ok(), "{:?}", rep.problems);
}

#[test]
fn the_fixture_is_format_2_with_a_full_wal() {
    let t = fixture_copy("store-format-fixture");
    assert_eq!(header_versions(t.path()), [2, 2]);
    assert_eq!(
        std::fs::metadata(t.join(WAL_FILE)).unwrap().len(),
        70 * 4160
    );
}

#[test]
fn a_format_2_wal_is_replayed_and_the_store_upgraded_on_open() {
    let t = fixture_copy("store-format-open");
    block_on(async {
        let store = FileStore::open(t.path(), FileStoreOptions::default()).unwrap();
        let r = store.recovery().clone();
        assert_eq!((r.replayed_transactions, r.replayed_frames), (16, 70));
        assert_eq!(r.dropped_tail, None);
        // The checkpoint of the open wrote the other header slot in the
        // current format.
        assert_eq!(header_versions(t.path()), [FORMAT_VERSION, 2]);
        let db = Database::open(store, OpenOptions::default()).await.unwrap();
        check_contents(&db).await;
        // It takes writes, in the current format, and they survive a crash
        // (no close) and a reopen.
        db.put("notes/new", json!({"n": 13})).await.unwrap();
        let files = [DATA_FILE, WAL_FILE].map(|f| std::fs::read(t.join(f)).unwrap());
        db.close().await.unwrap();
        for (f, bytes) in [DATA_FILE, WAL_FILE].iter().zip(files) {
            std::fs::write(t.join(f), bytes).unwrap();
        }
        let store = FileStore::open(t.path(), FileStoreOptions::default()).unwrap();
        assert_eq!(store.recovery().replayed_transactions, 1);
        let db = Database::open(store, OpenOptions::default()).await.unwrap();
        assert_eq!(db.stats().documents, 42);
        assert_eq!(
            db.get("notes/new").await.unwrap().unwrap().body,
            json!({"n": 13})
        );
        let rep = db.integrity_check().await.unwrap();
        assert!(rep.is_ok(), "{:?}", rep.problems);
        db.close().await.unwrap();
    });
}

#[test]
fn a_read_only_open_replays_a_format_2_wal_and_writes_nothing() {
    let t = fixture_copy("store-format-ro");
    let before = [DATA_FILE, WAL_FILE].map(|f| std::fs::read(t.join(f)).unwrap());
    block_on(async {
        let store = FileStore::open_read_only(t.path(), FileStoreOptions::default()).unwrap();
        assert_eq!(store.recovery().replayed_transactions, 16);
        let db = Database::open_read_only(store, OpenOptions::default())
            .await
            .unwrap();
        check_contents(&db).await;
        db.close().await.unwrap();
    });
    let after = [DATA_FILE, WAL_FILE].map(|f| std::fs::read(t.join(f)).unwrap());
    assert!(before == after, "a read-only open changed the files");
}
