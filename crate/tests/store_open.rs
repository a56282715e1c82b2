//! Who may open a file store, and what opening writes: the directory lock
//! (one writer, or any number of readers), the read-only open (writes
//! nothing, works on a full disk), a failed open on a full disk (leaves the
//! files no longer), a committed write whose close fails, the recovery report
//! (a dropped WAL tail), and damaged pages named by file and offset.
#![cfg(not(target_arch = "wasm32"))]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::executor::block_on;
use outpost::db::{Database, OpenOptions};
use outpost::store::fault::{FaultVfs, FileImages};
use outpost::store::file::{DATA_START, FileStore, FileStoreOptions, WAL_FILE, wal_frame_len};
use outpost::store::{Commit, Durability, PAGE_SIZE, PageStore, StoreError};
use outpost::{Error, OpenError};
use serde_json::json;

const DIR: &str = "/store";

fn opts(vfs: &FaultVfs) -> FileStoreOptions {
    FileStoreOptions {
        vfs: Arc::new(vfs.clone()),
        ..FileStoreOptions::default()
    }
}

fn page(fill: u8) -> Arc<Vec<u8>> {
    Arc::new(vec![fill; PAGE_SIZE])
}

fn commit(store: &FileStore, pages: &[(u64, u8)], meta: &[u8]) {
    block_on(store.commit(Commit {
        pages: pages.iter().map(|&(n, f)| (n, page(f))).collect(),
        meta: meta.to_vec(),
        durability: Durability::Durable,
    }))
    .unwrap();
}

fn total_len(files: &FileImages) -> u64 {
    files.values().map(|f| f.len() as u64).sum()
}

/// Files of a store whose last session crashed after durable commits: the
/// WAL still holds them (never checkpointed). Pages 1..=4 are checkpointed;
/// the WAL holds pages 2, 50..=52 and 200..=203, in three runs beyond the end
/// of the data file.
fn uncheckpointed_store() -> FileImages {
    let vfs = FaultVfs::new();
    {
        let store = FileStore::open(DIR, opts(&vfs)).unwrap();
        commit(&store, &[(1, 1), (2, 1), (3, 1), (4, 1)], b"m1");
        block_on(store.close()).unwrap();
    }
    let store = FileStore::open(DIR, opts(&vfs)).unwrap();
    commit(&store, &[(2, 2), (50, 2), (51, 2), (52, 2)], b"m2");
    commit(&store, &[(200, 3), (201, 3), (202, 3), (203, 3)], b"m3");
    // The crash: only what was fsynced survives, and the store is never closed.
    let files = vfs.durable_files();
    std::mem::forget(store);
    files
}

#[test]
fn one_writer_at_a_time_and_readers_share() {
    let t = std::env::temp_dir().join(format!("outpost-lock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&t);
    let o = FileStoreOptions::default();
    let w = FileStore::open(&t, o.clone()).unwrap();
    commit(&w, &[(1, 9)], b"m");
    // A second writer and a reader are refused while the writer holds it,
    // and told who holds it.
    for e in [
        FileStore::open(&t, o.clone()).unwrap_err(),
        FileStore::open_read_only(&t, o.clone()).unwrap_err(),
    ] {
        match &e {
            StoreError::Locked { path, holder } => {
                assert!(path.ends_with("LOCK"), "{path}");
                let pid = std::process::id().to_string();
                assert!(holder.as_deref().is_some_and(|h| h.contains(&pid)), "{e}");
                assert_eq!(e.code(), "locked");
            }
            other => panic!("expected Locked, got {other:?}"),
        }
    }
    block_on(w.close()).unwrap();
    // Closed: readers may share it ...
    let r1 = FileStore::open_read_only(&t, o.clone()).unwrap();
    let r2 = FileStore::open_read_only(&t, o.clone()).unwrap();
    assert_eq!(
        block_on(r2.read_meta()).unwrap().as_deref(),
        Some(&b"m"[..])
    );
    // ... and keep a writer out.
    assert!(matches!(
        FileStore::open(&t, o.clone()),
        Err(StoreError::Locked { .. })
    ));
    drop(r1);
    block_on(r2.close()).unwrap();
    drop(r2);
    let w = FileStore::open(&t, o).unwrap();
    drop(w);
    let _ = std::fs::remove_dir_all(&t);
}

#[test]
fn the_lock_is_held_by_the_engine_whoever_opens() {
    // Through the engine: a second Database on the same directory is refused.
    let vfs = FaultVfs::new();
    let db = block_on(Database::open(
        FileStore::open(DIR, opts(&vfs)).unwrap(),
        OpenOptions::default(),
    ))
    .unwrap();
    block_on(db.put("a", json!({"v": 1}))).unwrap();
    assert!(matches!(
        FileStore::open(DIR, opts(&vfs)),
        Err(StoreError::Locked { .. })
    ));
    block_on(db.close()).unwrap();
    // Released by close, not only by drop.
    let again = FileStore::open(DIR, opts(&vfs)).unwrap();
    drop(again);
    drop(db);
}

#[test]
fn read_only_open_writes_nothing_even_on_a_full_disk() {
    let files = uncheckpointed_store();
    let vfs = FaultVfs::with_files(files.clone());
    // A full disk where every write would also fail.
    vfs.set_capacity(Some(total_len(&files)));
    vfs.set_fault(Some(outpost::store::fault::Fault::FailFrom(1)));
    let store = FileStore::open_read_only(DIR, opts(&vfs)).unwrap();
    assert!(store.is_read_only());
    // The WAL was replayed in memory: the newest commit is visible.
    assert_eq!(
        block_on(store.read_meta()).unwrap().as_deref(),
        Some(&b"m3"[..])
    );
    assert_eq!(block_on(store.read_page(2)).unwrap()[0], 2);
    assert_eq!(block_on(store.read_page(203)).unwrap()[0], 3);
    assert_eq!(block_on(store.read_page(4)).unwrap()[0], 1);
    assert_eq!(store.recovery().replayed_transactions, 2);
    assert_eq!(store.recovery().dropped_tail, None);
    // Writes are refused before any I/O.
    let e = block_on(store.commit(Commit {
        pages: vec![(5, page(5))],
        meta: b"m4".to_vec(),
        durability: Durability::Durable,
    }))
    .unwrap_err();
    assert!(matches!(e, StoreError::ReadOnly), "{e:?}");
    assert!(matches!(block_on(store.sync()), Err(StoreError::ReadOnly)));
    block_on(store.close()).unwrap();
    assert_eq!(vfs.op_count(), 0, "a read-only open issued writes");
    assert_eq!(vfs.current_files(), files);
}

#[test]
fn read_only_database_reads_and_refuses_writes() {
    let vfs = FaultVfs::new();
    {
        let db = block_on(Database::open(
            FileStore::open(DIR, opts(&vfs)).unwrap(),
            OpenOptions::default(),
        ))
        .unwrap();
        for i in 0..200 {
            block_on(db.put(&format!("doc/{i}"), json!({"i": i}))).unwrap();
        }
        // Crash: the WAL is not checkpointed.
        std::mem::forget(db);
    }
    let files = vfs.durable_files();
    let ro = FaultVfs::with_files(files.clone());
    ro.set_capacity(Some(total_len(&files)));
    let db = block_on(Database::open_read_only(
        FileStore::open_read_only(DIR, opts(&ro)).unwrap(),
        OpenOptions::default(),
    ))
    .unwrap();
    assert!(db.is_read_only());
    assert_eq!(block_on(db.count()).unwrap(), 200);
    assert_eq!(
        block_on(db.get("doc/199")).unwrap().unwrap().body["i"],
        json!(199)
    );
    assert!(block_on(db.integrity_check()).unwrap().is_ok());
    let e = block_on(db.put("new", json!({}))).unwrap_err();
    assert_eq!(e.code(), "read_only", "{e}");
    block_on(db.close()).unwrap();
    assert_eq!(ro.op_count(), 0);
    assert_eq!(ro.current_files(), files);

    // An empty store opened read-only gets no database.
    let empty = FaultVfs::new();
    drop(FileStore::open(DIR, opts(&empty)).unwrap());
    let before = empty.current_files();
    let e = block_on(Database::open_read_only(
        FileStore::open_read_only(DIR, opts(&empty)).unwrap(),
        OpenOptions::default(),
    ))
    .err()
    .unwrap();
    assert!(matches!(e, OpenError::NotFound(_)), "{e:?}");
    assert_eq!(empty.current_files(), before);
}

#[test]
fn a_failed_open_on_a_full_disk_does_not_grow_the_files() {
    let files = uncheckpointed_store();
    let lens = |f: &FileImages| -> Vec<usize> { f.values().map(Vec::len).collect() };
    // Room for part of the checkpoint's copy of the WAL pages, not all of it.
    for room in [0, 100, PAGE_SIZE as u64, 40 * PAGE_SIZE as u64] {
        let vfs = FaultVfs::with_files(files.clone());
        vfs.set_capacity(Some(total_len(&files) + room));
        let e = FileStore::open(DIR, opts(&vfs)).unwrap_err();
        match &e {
            StoreError::Io { source, .. } => {
                assert_eq!(source.kind(), std::io::ErrorKind::StorageFull, "{e}")
            }
            other => panic!("room {room}: expected an I/O error, got {other:?}"),
        }
        let after = vfs.current_files();
        assert_eq!(lens(&after), lens(&files), "room {room}: files grew");
        // Nothing was lost: with space back, the store opens with every commit.
        vfs.set_capacity(None);
        let store = FileStore::open(DIR, opts(&vfs)).unwrap();
        assert_eq!(
            block_on(store.read_meta()).unwrap().as_deref(),
            Some(&b"m3"[..])
        );
        assert_eq!(block_on(store.read_page(203)).unwrap()[0], 3);
        assert_eq!(block_on(store.read_page(2)).unwrap()[0], 2);
        block_on(store.close()).unwrap();
    }
}

#[test]
fn a_committed_write_stays_committed_when_the_close_fails() {
    let vfs = FaultVfs::new();
    let db = block_on(Database::open(
        FileStore::open(DIR, opts(&vfs)).unwrap(),
        OpenOptions::default(),
    ))
    .unwrap();
    block_on(db.put("first", json!({"v": 1}))).unwrap();
    // The disk fills up: the WAL's space is allocated, the data file's is not.
    vfs.set_capacity(Some(total_len(&vfs.current_files())));
    let big = "x".repeat(100_000);
    let r = block_on(db.put("big", json!({ "blob": big })));
    assert!(
        r.is_ok(),
        "the put itself commits into allocated WAL space: {r:?}"
    );
    // The close's checkpoint needs new data-file pages and fails: reported by
    // close, separately from the put.
    let e = block_on(db.close()).unwrap_err();
    assert!(matches!(&e, Error::Store(StoreError::Io { .. })), "{e:?}");
    drop(db);
    // The write is durable: a later open (with space) has it.
    let img = FaultVfs::with_files(vfs.durable_files());
    let db = block_on(Database::open(
        FileStore::open(DIR, opts(&img)).unwrap(),
        OpenOptions::default(),
    ))
    .unwrap();
    assert_eq!(
        block_on(db.get("big")).unwrap().unwrap().body["blob"]
            .as_str()
            .map(str::len),
        Some(100_000)
    );
    assert!(block_on(db.integrity_check()).unwrap().is_ok());
}

#[test]
fn recovery_reports_a_dropped_tail_and_only_then() {
    let vfs = FaultVfs::new();
    let store = FileStore::open(DIR, opts(&vfs)).unwrap();
    commit(&store, &[(1, 1), (2, 1)], b"m1");
    commit(&store, &[(3, 2), (4, 2)], b"m2");
    let mut files = vfs.durable_files();
    std::mem::forget(store);
    // Damage the last frame (the commit frame of the second transaction): a
    // torn write of the last group, which recovery drops.
    let wal = files.get_mut(&PathBuf::from(DIR).join(WAL_FILE)).unwrap();
    // The frames' offsets (pages are 4160-byte frames, commit frames short).
    let mut at = vec![0usize];
    for _ in 0..6 {
        let last = *at.last().unwrap();
        at.push(last + wal_frame_len(&wal[last..]).unwrap());
    }
    wal[at[5] + 65] ^= 0xFF;
    let img = FaultVfs::with_files(files.clone());
    let ro = FileStore::open_read_only(DIR, opts(&img)).unwrap();
    let r = ro.recovery().clone();
    assert_eq!(r.replayed_transactions, 1);
    assert_eq!(r.replayed_frames, 3);
    let tail = r.dropped_tail.expect("a dropped tail");
    assert_eq!(
        (tail.offset, tail.frames, tail.bytes),
        (at[3] as u64, 3, (at[6] - at[3]) as u64)
    );
    assert_eq!(
        block_on(ro.read_meta()).unwrap().as_deref(),
        Some(&b"m1"[..])
    );
    drop(ro);
    // A writer reports the same, then starts a new generation: the next open
    // finds nothing dropped.
    let w = FileStore::open(DIR, opts(&img)).unwrap();
    assert_eq!(w.recovery().dropped_tail, Some(tail));
    block_on(w.close()).unwrap();
    let w = FileStore::open(DIR, opts(&img)).unwrap();
    assert_eq!(w.recovery().dropped_tail, None);
    assert_eq!(w.recovery().replayed_transactions, 0);
    block_on(w.close()).unwrap();
    // A clean store has nothing to report.
    let clean = FaultVfs::new();
    let s = FileStore::open(DIR, opts(&clean)).unwrap();
    commit(&s, &[(1, 1)], b"m");
    block_on(s.close()).unwrap();
    let s = FileStore::open_read_only(DIR, opts(&clean)).unwrap();
    assert_eq!(s.recovery().dropped_tail, None);
}

#[test]
fn a_damaged_page_is_named_by_file_and_offset() {
    let vfs = FaultVfs::new();
    {
        let db = block_on(Database::open(
            FileStore::open(DIR, opts(&vfs)).unwrap(),
            OpenOptions::default(),
        ))
        .unwrap();
        for i in 0..100 {
            block_on(db.put(&format!("doc/{i}"), json!({"pad": "y".repeat(200)}))).unwrap();
        }
        block_on(db.close()).unwrap();
    }
    let mut files = vfs.durable_files();
    let data = files.get_mut(&Path::new(DIR).join("outpost.db")).unwrap();
    let mut off = DATA_START as usize;
    while off < data.len() {
        data[off] ^= 0x5A;
        off += PAGE_SIZE;
    }
    let img = FaultVfs::with_files(files);
    let db = block_on(Database::open_read_only(
        FileStore::open_read_only(DIR, opts(&img)).unwrap(),
        OpenOptions::default(),
    ));
    let e = match db {
        Ok(db) => block_on(db.get("doc/1")).unwrap_err(),
        // The free list is read at open: its damaged page is named there.
        Err(e) => {
            let msg = e.to_string();
            let page: u64 = msg
                .split("corrupt page ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no page in {msg}"));
            let want = format!(
                "/store/outpost.db at byte offset {}",
                DATA_START + (page - 1) * PAGE_SIZE as u64
            );
            assert!(msg.contains(&want), "want {want:?} in {msg}");
            return;
        }
    };
    match &e {
        Error::Corrupt {
            page,
            location: Some(loc),
            ..
        } => {
            assert!(loc.file.ends_with("outpost.db"), "{e}");
            assert_eq!(loc.offset, DATA_START + (page - 1) * PAGE_SIZE as u64);
            assert!(
                e.to_string()
                    .contains(&format!("at byte offset {}", loc.offset)),
                "{e}"
            );
        }
        other => panic!("expected a located Corrupt, got {other:?}"),
    }
}
