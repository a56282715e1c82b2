//! Tombstone compaction (`Database::compact_tombstones`,
//! `outpost::sync::compact`): what is removed (plain tombstones up to the
//! bound, nothing else), the watermark the devices' acknowledgements set,
//! and the measurement of issue 12 §3: after 100,000 deletes that every
//! device acknowledged, the hub's tombstone count, live pages and file
//! size against a database that never held those documents.
//!
//! `OUTPOST_COMPACT_DOCS=N` changes the 100,000.

#![cfg(not(target_arch = "wasm32"))]

use std::path::Path;

use futures::executor::block_on;
use outpost::cv::{ChangeVector, DbId};
use outpost::store::MemoryStore;
use outpost::store::file::{FileStore, FileStoreOptions};
use outpost::sync::compact::{self, Acked, Compaction, Holder};
use outpost::{Batch, ConflictPolicy, Database, RawVersion, RemoteDoc};
use outpost_testkit::{TempDir, opts};
use serde_json::json;

fn tombstone_from(db: u8, etag: u64) -> RawVersion {
    RawVersion {
        change_vector: ChangeVector::from_entries([(DbId([db; 16]), etag)]).unwrap(),
        last_modified_ms: 1,
        deleted: true,
        body: Vec::new(),
    }
}

#[test]
fn only_plain_tombstones_up_to_the_bound_are_removed() {
    let db = block_on(Database::open(MemoryStore::new(), opts())).unwrap();
    for id in ["a", "b", "c", "d"] {
        block_on(db.put(id, json!({ "id": id }))).unwrap();
    }
    block_on(db.delete("a")).unwrap();
    block_on(db.delete("b")).unwrap();
    // `c`: a deletion concurrent with another version (a conflict).
    let mut b = Batch::new();
    b.apply_remote(
        RemoteDoc {
            id: "c".into(),
            collection: None,
            versions: vec![tombstone_from(7, 1)],
            source: None,
        },
        ConflictPolicy::Manual,
    );
    block_on(db.commit(b)).unwrap();
    let bound = db.stats().last_etag;
    block_on(db.delete("d")).unwrap();
    assert_eq!(db.stats().tombstones, 3);
    // Two steps of one record each, up to the bound.
    let s = block_on(db.compact_tombstones(0, bound, 1, None)).unwrap();
    assert!(!s.done);
    let mut removed = s.removed;
    let mut after = s.reached;
    loop {
        let s = block_on(db.compact_tombstones(after, bound, 1, None)).unwrap();
        removed += s.removed;
        after = s.reached;
        if s.done {
            break;
        }
    }
    assert_eq!(
        removed, 2,
        "a and b; not the conflicted c, not d past the bound"
    );
    assert!(block_on(db.get("a")).unwrap().is_none());
    assert!(block_on(db.get("b")).unwrap().is_none());
    let left = block_on(db.changes(0, 100)).unwrap();
    assert!(!left[0].conflicts.is_empty(), "c keeps its versions");
    assert!(left[1].meta.flags.is_tombstone());
    assert_eq!(db.stats().tombstones, 1, "d is left");
    assert_eq!(db.stats().documents, 1, "c");
    // The changes feed no longer lists them.
    let feed: Vec<String> = block_on(db.changes(0, 100))
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(feed, ["c", "d"]);
    assert!(block_on(db.integrity_check()).unwrap().is_ok());
    // Nothing in range: nothing is written.
    let generation = db.stats().generation;
    let s = block_on(db.compact_tombstones(0, bound, 10, None)).unwrap();
    assert_eq!((s.removed, s.done), (0, true));
    assert_eq!(db.stats().generation, generation);
}

/// An edge compacts what its hub says it compacted through: the tombstones
/// it received (found through its pull map), and, when a `Welcome` showed
/// the hub holds them, its own deletions; a done record written before the
/// own bound existed (24 bytes) still reads.
#[test]
fn an_edge_compacts_received_tombstones_and_its_own_deletions() {
    let db = block_on(Database::open(MemoryStore::new(), opts())).unwrap();
    let hub = DbId([9; 16]);
    for id in ["mine/1", "mine/2", "mine/3"] {
        block_on(db.put(id, json!({ "id": id }))).unwrap();
    }
    block_on(db.delete("mine/1")).unwrap();
    block_on(db.delete("mine/2")).unwrap();
    let pushed = db.stats().last_etag;
    // Then a batch from the hub (sent up to hub etag 40): two deletions.
    let mut b = Batch::new();
    let last = db.stats().last_etag;
    block_on(compact::note_pulled(&db, &mut b, "hub", &hub, last + 2, 40)).unwrap();
    for (id, n) in [("theirs/1", 1), ("theirs/2", 2)] {
        b.apply_remote(
            RemoteDoc {
                id: id.into(),
                collection: None,
                versions: vec![tombstone_from(7, n)],
                source: Some("hub".into()),
            },
            ConflictPolicy::Manual,
        );
    }
    block_on(db.commit(b)).unwrap();
    block_on(db.delete("mine/3")).unwrap();
    assert_eq!(db.stats().tombstones, 5);
    // An old done record (hub id, received bound): no own bound yet.
    let mut old = hub.as_bytes().to_vec();
    old.extend_from_slice(&0u64.to_le_bytes());
    let mut b = Batch::new();
    b.set_local(b"sync/compacted/hub".to_vec(), Some(old));
    block_on(db.commit(b)).unwrap();
    // The hub compacted through 39: not this batch yet.
    assert_eq!(
        block_on(compact::edge_compact(&db, "hub", &hub, 39, None)).unwrap(),
        0
    );
    // Through 40: the two received; the edge's own stay.
    assert_eq!(
        block_on(compact::edge_compact(&db, "hub", &hub, 40, None)).unwrap(),
        2
    );
    assert_eq!(db.stats().tombstones, 3);
    // A `Welcome` said the hub holds this edge's changes up to `pushed`:
    // its deletions up to there go, not the later one.
    let removed = block_on(compact::edge_compact(&db, "hub", &hub, 40, Some(pushed))).unwrap();
    assert_eq!(removed, 2);
    assert_eq!(db.stats().tombstones, 1);
    assert!(block_on(db.get_version("mine/3")).unwrap().is_some());
    assert!(block_on(db.get_version("mine/1")).unwrap().is_none());
    // Done: a second call finds nothing to do and writes nothing.
    let generation = db.stats().generation;
    assert_eq!(
        block_on(compact::edge_compact(&db, "hub", &hub, 40, Some(pushed))).unwrap(),
        0
    );
    assert_eq!(db.stats().generation, generation);
    assert!(block_on(db.integrity_check()).unwrap().is_ok());
}

fn holder(name: &str, upto: u64, seen_ms: i64) -> Holder {
    Holder {
        identity: name.into(),
        device: DbId([name.len() as u8; 16]),
        acked: Acked { upto, seen_ms },
    }
}

#[test]
fn the_watermark_is_the_slowest_device_seen_within_the_retention() {
    let hs = [
        holder("fast", 90, 1_000),
        holder("slow", 40, 1_000),
        holder("gone", 10, 100),
    ];
    // The device not seen since 100 holds compaction back until the
    // retention passes over it.
    assert_eq!(compact::watermark(&hs, 100, 1_000, 10_000).0, 10);
    let (w, by) = compact::watermark(&hs, 100, 1_000, 500);
    assert_eq!((w, by.map(|h| h.identity.as_str())), (40, Some("slow")));
    // No device (or all caught up): the last etag.
    assert_eq!(compact::watermark(&[], 100, 1_000, 500), (100, None));
    assert_eq!(
        compact::watermark(&[holder("x", 100, 1_000)], 100, 1_000, 500).0,
        100
    );
    // The records read back; an unknown format is not taken for one.
    let a = Acked {
        upto: 7,
        seen_ms: -3,
    };
    assert_eq!(Acked::decode(&a.encode()), Some(a));
    let mut bad = a.encode();
    bad[0] = 2;
    assert_eq!(Acked::decode(&bad), None);
    assert_eq!(Acked::decode(&a.encode()[..10]), None);
    let c = Compaction {
        horizon: 5,
        removed: 6,
        last_run_ms: 7,
        through: 9,
    };
    assert_eq!(Compaction::decode(&c.encode()), Some(c));
    assert_eq!(c.encode()[0], 2, "format 2");
    // Format 1, as builds before `through` wrote it (fixture bytes): its
    // horizon is all it says was compacted.
    let mut v1 = vec![1u8];
    v1.extend_from_slice(&5u64.to_le_bytes());
    v1.extend_from_slice(&6u64.to_le_bytes());
    v1.extend_from_slice(&7i64.to_le_bytes());
    assert_eq!(
        Compaction::decode(&v1),
        Some(Compaction { through: 5, ..c })
    );
    let mut v3 = c.encode();
    v3[0] = 3;
    assert_eq!(Compaction::decode(&v3), None);
    assert_eq!(Compaction::decode(&c.encode()[..30]), None);
}

fn open_file(dir: &Path) -> Database<FileStore> {
    let store = FileStore::open(dir, FileStoreOptions::default()).unwrap();
    block_on(Database::open(store, opts())).unwrap()
}

/// Bytes of the database's data file (after a close: the write-ahead log
/// is checkpointed into it).
fn data_bytes(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("outpost.db")).unwrap().len()
}

/// Bytes of the database's write-ahead log.
fn wal_bytes(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("outpost.wal")).unwrap().len()
}

fn put_range(db: &Database<FileStore>, prefix: &str, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut b = Batch::new();
        for i in chunk {
            b.put(
                format!("{prefix}/{i:07}"),
                json!({ "n": i, "text": "a note of about sixty bytes, like a real one" }),
            );
        }
        block_on(db.commit(b)).unwrap();
    }
}

fn delete_range(db: &Database<FileStore>, prefix: &str, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut b = Batch::new();
        for i in chunk {
            b.delete(format!("{prefix}/{i:07}"));
        }
        block_on(db.commit(b)).unwrap();
    }
}

#[test]
fn after_100k_acknowledged_deletes_the_tombstones_go_and_the_file_shrinks() {
    let n: usize = std::env::var("OUTPOST_COMPACT_DOCS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let keep = 1_000;
    let t = TempDir::new(std::env::temp_dir(), "outpost-compact");
    let (never_dir, held_dir) = (t.path().join("never"), t.path().join("held"));
    std::fs::create_dir_all(&never_dir).unwrap();
    std::fs::create_dir_all(&held_dir).unwrap();
    // The peer: a database that never held the deleted documents.
    let never = open_file(&never_dir);
    put_range(&never, "kept", keep);
    // The hub: the same documents, plus n written and deleted.
    let held = open_file(&held_dir);
    put_range(&held, "kept", keep);
    put_range(&held, "gone", n);
    delete_range(&held, "gone", n);
    let before = held.stats();
    assert_eq!(before.tombstones, n as u64);
    // Every device acknowledged the feed up to its last etag.
    let mut b = Batch::new();
    compact::record_ack(&mut b, "laptop", &DbId([1; 16]), before.last_etag, 1_000);
    compact::record_ack(&mut b, "phone", &DbId([2; 16]), before.last_etag, 1_000);
    block_on(held.commit(b)).unwrap();
    let r = block_on(compact::compact(&held, 1_000, 60_000, 5_000, |_| {})).unwrap();
    assert_eq!(r.removed, n as u64);
    assert_eq!(r.tombstones_left, 0);
    assert!(block_on(held.integrity_check()).unwrap().is_ok());
    let (a, h) = (never.stats(), held.stats());
    assert_eq!((h.documents, h.tombstones), (a.documents, a.tombstones));
    let live = |s: &outpost::DbStats| s.pages - s.free_pages;
    // Pages in use: within a small margin of the peer's (the trees were
    // split differently on the way, and the local records add a page).
    let margin = live(&a) / 10 + 8;
    assert!(
        live(&h) <= live(&a) + margin,
        "pages in use: {} after compaction, {} never held",
        live(&h),
        live(&a)
    );
    // The run vacuumed: the data file is back within a small margin of the
    // peer's (the pages in use, the vacuum's room of 16 pages plus 1/32,
    // and the free list's page).
    assert!(r.pages_after < r.pages_before / 10, "{r:?}");
    block_on(never.close()).unwrap();
    block_on(held.close()).unwrap();
    let (never_bytes, held_bytes) = (data_bytes(&never_dir), data_bytes(&held_dir));
    let (never_wal, held_wal) = (wal_bytes(&never_dir), wal_bytes(&held_dir));
    println!(
        "compaction of {n} acknowledged deletes ({keep} documents kept): tombstones {} -> {} \
         (never held: {}); pages in use {} (never held: {}); store pages {} -> {}; data file \
         {held_bytes} bytes (never held: {never_bytes}); write-ahead log {held_wal} bytes \
         (never held: {never_wal})",
        before.tombstones,
        h.tombstones,
        a.tombstones,
        live(&h),
        live(&a),
        r.pages_before,
        r.pages_after,
    );
    let page = 4096;
    assert!(
        held_bytes <= never_bytes + never_bytes / 4 + 24 * page,
        "data file of {held_bytes} bytes after compaction, {never_bytes} never held"
    );
    assert!(
        held_wal <= never_wal.max(4 << 20) + 2 * page,
        "write-ahead log of {held_wal} bytes after compaction, {never_wal} never held"
    );
    // The documents kept are all there, and it reopens whole.
    let held = open_file(&held_dir);
    assert!(block_on(held.integrity_check()).unwrap().is_ok());
    assert_eq!(held.stats().documents, keep as u64);
    block_on(held.close()).unwrap();
}
