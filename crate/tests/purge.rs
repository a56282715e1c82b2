//! Physical purge (`Database::purge`) on the real file store: documents
//! whose ids and bodies carry a marker are purged, then every byte of every
//! file in the store's directory is searched for the marker. Covers old
//! versions (in freed pages), large bodies (overflow pages), conflicted
//! documents, tombstones, index entries and branch separators, the WAL and
//! its earlier generations, and a snapshot held open during the purge.

// Native only: uses the file store (wasm32 tests run in a browser).
#![cfg(not(target_arch = "wasm32"))]

use std::path::Path;

use futures::executor::block_on;
use outpost::cv::{ChangeVector, DbId};
use outpost::store::file::{FileStore, FileStoreOptions};
use outpost::{Batch, ConflictPolicy, Database, PurgeScope, RawVersion, RemoteDoc, WriteOutcome};
use outpost_testkit::{TempDir, opts};
use serde_json::json;
use sha2::{Digest, Sha256};

/// In every purged id and body; in nothing kept.
const MARK: &[u8] = b"secret7f3a";

type Db = Database<FileStore>;

fn open(dir: &Path) -> Db {
    let store = FileStore::open(dir, FileStoreOptions::default()).unwrap();
    block_on(Database::open(store, opts())).unwrap()
}

/// Files of `dir` holding the marker.
fn files_with_marker(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let bytes = std::fs::read(e.path()).unwrap();
        if bytes.windows(MARK.len()).any(|w| w == MARK) {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

fn sound(db: &Db) {
    let rep = block_on(db.integrity_check()).unwrap();
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
}

/// The digest a purge report carries, computed here independently.
fn digest(ids: &[String]) -> [u8; 32] {
    let mut keys: Vec<Vec<u8>> = ids.iter().map(|i| i.to_lowercase().into_bytes()).collect();
    keys.sort();
    let mut h = Sha256::new();
    for k in keys {
        h.update((k.len() as u32).to_le_bytes());
        h.update(&k);
    }
    h.finalize().into()
}

fn secret_body(i: usize, version: usize) -> serde_json::Value {
    json!({ "@metadata": { "@collection": "Notes" }, "text": format!("secret7f3a note {i} v{version}") })
}

/// A conflicted document: a local version and a concurrent received one.
fn make_conflict(db: &Db, id: &str) {
    block_on(db.put(
        id,
        json!({ "@metadata": { "@collection": "Notes" }, "text": "secret7f3a local" }),
    ))
    .unwrap();
    let mut b = Batch::new();
    b.apply_remote(
        RemoteDoc {
            id: id.into(),
            collection: Some("Notes".into()),
            versions: vec![RawVersion {
                change_vector: ChangeVector::from_entries([(DbId([9; 16]), 1)]).unwrap(),
                last_modified_ms: 1,
                deleted: false,
                body: br#"{"@metadata":{"@collection":"Notes"},"text":"secret7f3a remote"}"#
                    .to_vec(),
            }],
            source: None,
        },
        ConflictPolicy::Manual,
    );
    let r = block_on(db.commit(b)).unwrap();
    assert_eq!(
        r.results[0].as_ref().unwrap().outcome,
        WriteOutcome::Conflict
    );
}

/// Kept documents: none carries the marker.
fn put_kept(db: &Db) {
    for i in 0..150 {
        block_on(db.put(
            &format!("gone/keep/{i:03}"),
            json!({ "@metadata": { "@collection": "Notes" }, "text": format!("kept {i}") }),
        ))
        .unwrap();
        block_on(db.put(
            &format!("other/{i:03}"),
            json!({ "@metadata": { "@collection": "Other" }, "n": i }),
        ))
        .unwrap();
    }
}

/// Purged documents: returns their ids.
fn put_secrets(dir: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    let db = open(dir);
    put_kept(&db);
    // Many small ones (several leaves, so branch separators copy some ids).
    for i in 0..300 {
        let id = format!("gone/secret7f3a-{i:03}");
        block_on(db.put(&id, secret_body(i, 0))).unwrap();
        ids.push(id);
    }
    // Large bodies: several overflow pages each.
    for i in 0..3 {
        let id = format!("gone/secret7f3a-big-{i}");
        let text = "secret7f3a ".repeat(2_000);
        block_on(db.put(
            &id,
            json!({ "@metadata": { "@collection": "Notes" }, "text": text }),
        ))
        .unwrap();
        ids.push(id);
    }
    // Closing checkpoints: the first versions are now in the data file.
    block_on(db.close()).unwrap();
    let db = open(dir);
    // Old versions: updated several times (earlier versions in freed pages).
    for v in 1..4 {
        for i in (0..300).step_by(7) {
            block_on(db.put(&format!("gone/secret7f3a-{i:03}"), secret_body(i, v))).unwrap();
        }
        let text = format!("secret7f3a v{v} ").repeat(1_500);
        block_on(db.put("gone/secret7f3a-big-0", json!({ "text": text }))).unwrap();
    }
    // Tombstones.
    for i in (0..300).step_by(11) {
        block_on(db.delete(&format!("gone/secret7f3a-{i:03}"))).unwrap();
    }
    // Conflicts.
    for i in 0..3 {
        let id = format!("gone/secret7f3a-conflict-{i}");
        make_conflict(&db, &id);
        ids.push(id);
    }
    // Purged by id, outside the prefix (one with capitals: ids compare as id keys).
    block_on(db.put("solo/secret7f3a-x", json!({ "t": "secret7f3a solo" }))).unwrap();
    make_conflict(&db, "solo/secret7f3a-conf");
    ids.push("solo/secret7f3a-x".into());
    ids.push("solo/secret7f3a-conf".into());
    block_on(db.close()).unwrap();
    ids
}

fn scope() -> PurgeScope {
    PurgeScope {
        prefixes: vec!["Gone/".into()],
        keep: vec!["gone/KEEP/".into()],
        ids: vec!["SOLO/secret7f3a-x".into(), "solo/secret7f3a-conf".into()],
        id_hashes: vec![],
    }
}

fn check_kept(db: &Db) {
    assert_eq!(block_on(db.count()).unwrap(), 300);
    let s = db.stats();
    assert_eq!((s.documents, s.tombstones), (300, 0));
    let mut colls = block_on(db.collections()).unwrap();
    colls.sort();
    assert_eq!(
        colls,
        vec![("Notes".to_string(), 150), ("Other".to_string(), 150)]
    );
    for i in (0..150).step_by(13) {
        let d = block_on(db.get(&format!("gone/keep/{i:03}")))
            .unwrap()
            .unwrap();
        assert_eq!(d.body["text"], format!("kept {i}"));
        let d = block_on(db.get(&format!("other/{i:03}"))).unwrap().unwrap();
        assert_eq!(d.body["n"], i);
    }
    assert!(block_on(db.conflicts(None, 100)).unwrap().is_empty());
    assert!(block_on(db.get("gone/secret7f3a-001")).unwrap().is_none());
    assert!(block_on(db.get("solo/secret7f3a-x")).unwrap().is_none());
    sound(db);
}

#[test]
fn purge_leaves_no_plaintext_in_any_file() {
    let t = TempDir::new(std::env::temp_dir(), "purge-files");
    let ids = put_secrets(t.path());
    let db = open(t.path());
    assert!(db.stats().tombstones > 0);
    assert!(!block_on(db.conflicts(None, 100)).unwrap().is_empty());
    sound(&db);
    let before = files_with_marker(t.path());
    assert!(
        before.iter().any(|f| f == "outpost.db") && before.iter().any(|f| f == "outpost.wal"),
        "the marker must be on disk before the purge: {before:?}"
    );
    let rep = block_on(db.purge(&scope())).unwrap();
    assert_eq!(rep.removed, ids.len() as u64);
    assert_eq!(rep.ids_hash, digest(&ids));
    assert!(rep.pages_erased > 0);
    assert_eq!(rep.pages_deferred, 0);
    // No plaintext anywhere, with the database still open.
    assert_eq!(files_with_marker(t.path()), Vec::<String>::new());
    check_kept(&db);
    // A purge of nothing commits nothing.
    let g = db.stats().generation;
    let none = block_on(db.purge(&PurgeScope::default())).unwrap();
    assert_eq!((none.removed, none.pages_erased), (0, 0));
    let again = block_on(db.purge(&scope())).unwrap();
    assert_eq!(again.removed, 0);
    assert_eq!(db.stats().generation, g);
    // Writes after the purge (they reuse the erased free pages).
    let free_before = db.stats().free_pages;
    assert!(free_before > 0);
    for i in 0..50 {
        block_on(db.put(
            &format!("new/{i}"),
            json!({ "@metadata": { "@collection": "Notes" }, "i": i }),
        ))
        .unwrap();
    }
    assert!(db.stats().free_pages < free_before);
    assert_eq!(block_on(db.count()).unwrap(), 350);
    sound(&db);
    block_on(db.close()).unwrap();
    // Reopened: still nothing, still sound.
    let db = open(t.path());
    assert_eq!(block_on(db.count()).unwrap(), 350);
    sound(&db);
    block_on(db.delete("new/0")).unwrap();
    block_on(db.close()).unwrap();
    assert_eq!(files_with_marker(t.path()), Vec::<String>::new());
}

#[test]
fn purge_by_ids_only_and_everything() {
    let t = TempDir::new(std::env::temp_dir(), "purge-ids");
    let db = open(t.path());
    put_kept(&db);
    block_on(db.put("a/secret7f3a-1", json!({ "x": "secret7f3a" }))).unwrap();
    block_on(db.put("a/secret7f3a-2", json!({ "x": "secret7f3a" }))).unwrap();
    block_on(db.delete("a/secret7f3a-2")).unwrap();
    let s = PurgeScope {
        ids: vec![
            "A/SECRET7F3A-1".into(),
            "a/secret7f3a-2".into(),
            "a/missing".into(),
        ],
        ..Default::default()
    };
    let rep = block_on(db.purge(&s)).unwrap();
    assert_eq!(rep.removed, 2);
    assert_eq!(
        rep.ids_hash,
        digest(&["a/secret7f3a-1".into(), "a/secret7f3a-2".into()])
    );
    assert_eq!(files_with_marker(t.path()), Vec::<String>::new());
    assert_eq!(block_on(db.count()).unwrap(), 300);
    assert_eq!(db.stats().tombstones, 0);
    sound(&db);
    // "" with a kept prefix: everything else goes.
    let rep = block_on(db.purge(&PurgeScope {
        prefixes: vec![String::new()],
        keep: vec!["other/".into()],
        ids: vec![],
        id_hashes: vec![],
    }))
    .unwrap();
    assert_eq!(rep.removed, 150);
    assert_eq!(block_on(db.count()).unwrap(), 150);
    assert_eq!(
        block_on(db.collections()).unwrap(),
        vec![("Other".to_string(), 150)]
    );
    sound(&db);
    block_on(db.close()).unwrap();
    let db = open(t.path());
    sound(&db);
    assert_eq!(block_on(db.count()).unwrap(), 150);
    block_on(db.close()).unwrap();
}

/// A snapshot taken before the purge can still read what it saw, so the
/// pages it pins are overwritten only once it is dropped: by the next write
/// (first case) or at close (second).
#[test]
fn a_snapshot_held_open_defers_erasure_of_what_it_pins() {
    for erase_by_write in [true, false] {
        let t = TempDir::new(std::env::temp_dir(), "purge-snapshot");
        let ids = put_secrets(t.path());
        let db = open(t.path());
        let snap = db.snapshot();
        let rep = block_on(db.purge(&scope())).unwrap();
        assert_eq!(rep.removed, ids.len() as u64);
        assert!(rep.pages_deferred > 0, "{rep:?}");
        // The snapshot still reads the purged documents.
        let d = block_on(snap.get("gone/secret7f3a-001")).unwrap().unwrap();
        assert!(d.body["text"].as_str().unwrap().contains("secret7f3a"));
        assert!(!files_with_marker(t.path()).is_empty());
        check_kept(&db);
        drop(snap);
        if erase_by_write {
            block_on(db.put("after", json!({ "@metadata": { "@collection": "Other" } }))).unwrap();
            assert_eq!(files_with_marker(t.path()), Vec::<String>::new());
            sound(&db);
            block_on(db.close()).unwrap();
        } else {
            block_on(db.close()).unwrap();
            assert_eq!(files_with_marker(t.path()), Vec::<String>::new());
        }
        let db = open(t.path());
        sound(&db);
        block_on(db.put("later", json!({}))).unwrap();
        block_on(db.close()).unwrap();
        assert_eq!(files_with_marker(t.path()), Vec::<String>::new());
    }
}

/// A purge interrupted between its commits (a crash after the documents
/// were removed, before the freed pages were overwritten) is finished by
/// the next purge, even one of nothing.
#[test]
fn an_interrupted_purge_is_finished_by_the_next() {
    let t = TempDir::new(std::env::temp_dir(), "purge-interrupted");
    let ids = put_secrets(t.path());
    let db = open(t.path());
    assert_eq!(
        block_on(db.testing_purge_records_only(&scope())).unwrap(),
        ids.len() as u64
    );
    check_kept(&db);
    block_on(db.close()).unwrap();
    assert!(!files_with_marker(t.path()).is_empty());
    let db = open(t.path());
    assert!(
        block_on(db.get_local(outpost::db::PURGE_PENDING_KEY))
            .unwrap()
            .is_some()
    );
    let rep = block_on(db.purge(&PurgeScope::default())).unwrap();
    assert_eq!(rep.removed, 0);
    assert!(rep.pages_erased > 0);
    assert_eq!(files_with_marker(t.path()), Vec::<String>::new());
    assert!(
        block_on(db.get_local(outpost::db::PURGE_PENDING_KEY))
            .unwrap()
            .is_none()
    );
    // Now a purge of nothing commits nothing.
    let g = db.stats().generation;
    block_on(db.purge(&PurgeScope::default())).unwrap();
    assert_eq!(db.stats().generation, g);
    check_kept(&db);
    block_on(db.close()).unwrap();
}

// ---------------------------------------------------------------------------
// The file store's residue erasure, and a crash at every I/O of it

const VDIR: &str = "/purge/db";

fn page(fill: &[u8]) -> outpost::store::PageBuf {
    let mut p = vec![0u8; outpost::store::PAGE_SIZE];
    for (i, b) in p.iter_mut().enumerate() {
        *b = fill[i % fill.len()];
    }
    std::sync::Arc::new(p)
}

/// A commit writing pages `first..=last`, each filled with `fill`.
fn commit(first: u64, last: u64, fill: &[u8], meta: &[u8]) -> outpost::store::Commit {
    outpost::store::Commit {
        pages: (first..=last).map(|no| (no, page(fill))).collect(),
        meta: meta.to_vec(),
        durability: outpost::store::Durability::Durable,
    }
}

/// The first WAL generation: pages 9 to 16 written with the marker, then
/// overwritten; closing checkpoints (the data file holds no marker), but the
/// WAL keeps its frames. Then, in the next generation, a shorter commit
/// rewrites pages 1 to 8 over the first frames only.
fn residue_setup(vfs: &outpost::store::fault::FaultVfs) -> FileStore {
    use outpost::PageStore;
    let store = vfs_store(vfs).unwrap();
    block_on(store.commit(commit(1, 8, b"plain", b"A"))).unwrap();
    block_on(store.commit(commit(9, 16, MARK, b"A2"))).unwrap();
    block_on(store.commit(commit(9, 16, b"plain", b"A3"))).unwrap();
    block_on(store.close()).unwrap();
    let store = vfs_store(vfs).unwrap();
    block_on(store.commit(commit(1, 8, b"second", b"B-meta"))).unwrap();
    store
}

fn vfs_store(vfs: &outpost::store::fault::FaultVfs) -> Result<FileStore, outpost::StoreError> {
    FileStore::open(
        VDIR,
        FileStoreOptions {
            vfs: std::sync::Arc::new(vfs.clone()),
            wal_grow_bytes: 64 << 10,
            ..Default::default()
        },
    )
}

/// [`residue_setup`], then `erase_residue`. Returns the store (unless the
/// erasure crashed) and the operation count before the erasure.
fn residue_workload(vfs: &outpost::store::fault::FaultVfs) -> (Option<FileStore>, u64) {
    use outpost::PageStore;
    let store = residue_setup(vfs);
    let before = vfs.op_count();
    let r = block_on(store.erase_residue());
    if vfs.crashed() {
        return (None, before);
    }
    r.unwrap();
    (Some(store), before)
}

fn images_hold_marker(files: &outpost::store::fault::FileImages) -> bool {
    files
        .values()
        .any(|b| b.windows(MARK.len()).any(|w| w == MARK))
}

#[test]
fn file_store_erase_residue_clears_the_wal_and_survives_a_crash_anywhere() {
    use outpost::PageStore;
    use outpost::store::fault::{Fault, FaultVfs};
    // Without the erasure the old frames keep the marker (the test can fail).
    let vfs = FaultVfs::new();
    let store = residue_setup(&vfs);
    assert!(images_hold_marker(&vfs.current_files()));
    block_on(store.close()).unwrap();
    assert!(images_hold_marker(&vfs.current_files()));
    let vfs = FaultVfs::new();
    let (store, before) = residue_workload(&vfs);
    let store = store.unwrap();
    let after = vfs.op_count();
    assert!(after > before);
    assert!(!images_hold_marker(&vfs.current_files()));
    assert!(!images_hold_marker(&vfs.durable_files()));
    assert_eq!(block_on(store.read_meta()).unwrap().unwrap(), b"B-meta");
    block_on(store.commit(commit(1, 8, b"third", b"C-meta"))).unwrap();
    block_on(store.close()).unwrap();
    let store = vfs_store(&FaultVfs::with_files(vfs.durable_files())).unwrap();
    assert_eq!(block_on(store.read_meta()).unwrap().unwrap(), b"C-meta");
    block_on(store.close()).unwrap();
    // A crash at every I/O operation of the erasure: every image opens and
    // holds the second commit, whole.
    // (Operations are numbered from 1: `before` is the last one of the set-up.)
    for n in before + 1..=after {
        let vfs = FaultVfs::new();
        vfs.set_fault(Some(Fault::CrashAt(n)));
        let (store, _) = residue_workload(&vfs);
        assert!(store.is_none() && vfs.crashed(), "op {n}");
        for (i, img) in vfs.crash_image_files(12, n).into_iter().enumerate() {
            let s = vfs_store(&FaultVfs::with_files(img))
                .unwrap_or_else(|e| panic!("crash at op {n}, image {i}: {e}"));
            assert_eq!(block_on(s.read_meta()).unwrap().unwrap(), b"B-meta");
            for no in 1..=8 {
                assert_eq!(block_on(s.read_page(no)).unwrap(), page(b"second"));
            }
            assert_eq!(block_on(s.read_page(16)).unwrap(), page(b"plain"));
            block_on(s.close()).unwrap();
        }
    }
}

/// A record that does not decode is purged too: its index entries are found
/// by scanning the indexes, and the counters are recounted.
#[test]
fn an_unreadable_record_in_scope_is_purged_with_its_index_entries() {
    let db = block_on(Database::open(outpost::store::MemoryStore::new(), opts())).unwrap();
    for i in 0..40 {
        block_on(db.put(
            &format!("x/{i:02}"),
            json!({ "@metadata": { "@collection": "Notes" }, "i": i }),
        ))
        .unwrap();
    }
    block_on(db.delete("x/05")).unwrap();
    block_on(db.testing_overwrite_record("x/07", b"\xffnot a record")).unwrap();
    block_on(db.testing_overwrite_record("x/05", b"\xffnot a record")).unwrap();
    assert!(!block_on(db.integrity_check()).unwrap().problems.is_empty());
    let rep = block_on(db.purge(&PurgeScope {
        prefixes: vec!["x/0".into()],
        ..Default::default()
    }))
    .unwrap();
    assert_eq!(rep.removed, 10);
    let s = db.stats();
    assert_eq!((s.documents, s.tombstones), (30, 0));
    assert_eq!(
        block_on(db.collections()).unwrap(),
        vec![("Notes".to_string(), 30)]
    );
    let rep = block_on(db.integrity_check()).unwrap();
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
    assert_eq!(block_on(db.changes(0, 100)).unwrap().len(), 30);
}

/// Local records naming purged ids (as sync rejections do), deleted by the
/// caller before the purge, leave no copy of their keys either.
#[test]
fn deleted_local_records_leave_no_separator_behind() {
    let t = TempDir::new(std::env::temp_dir(), "purge-locals");
    let db = open(t.path());
    put_kept(&db);
    let mut b = Batch::new();
    for i in 0..200 {
        // Interleaved with records that stay, so leaves keep some entries
        // and the separators above them may copy a deleted key.
        b.set_local(
            format!("sync/rejected/hub/a/{i:03}-secret7f3a").into_bytes(),
            // Varied sizes: leaves split after either kind of record.
            Some(vec![1; 20 + i % 37]),
        );
        b.set_local(
            format!("sync/rejected/hub/a/{i:03}-plain").into_bytes(),
            Some(vec![2; 40]),
        );
    }
    block_on(db.commit(b)).unwrap();
    block_on(db.put("a/secret7f3a-doc", json!({ "t": "secret7f3a" }))).unwrap();
    block_on(db.close()).unwrap();
    let db = open(t.path());
    let mut b = Batch::new();
    for i in 0..200 {
        b.set_local(
            format!("sync/rejected/hub/a/{i:03}-secret7f3a").into_bytes(),
            None,
        );
    }
    block_on(db.commit(b)).unwrap();
    assert!(!files_with_marker(t.path()).is_empty());
    let rep = block_on(db.purge(&PurgeScope {
        prefixes: vec!["a/".into()],
        ..Default::default()
    }))
    .unwrap();
    assert_eq!(rep.removed, 1);
    assert_eq!(files_with_marker(t.path()), Vec::<String>::new());
    assert_eq!(
        block_on(db.scan_locals(b"sync/rejected/", 1000))
            .unwrap()
            .len(),
        200
    );
    sound(&db);
    block_on(db.close()).unwrap();
}

/// Index entries, reductions and output documents computed from purged
/// documents go with them: no file holds the marker afterwards, a key
/// shared with kept documents is rebuilt from them at the next step, and
/// the output document of a key only purged documents had is gone.
#[test]
fn a_purge_reaches_index_entries_reductions_and_outputs() {
    use outpost::index::{Emit, FnIndex, Index, IndexDefinition, IndexQuery};
    let t = TempDir::new(std::env::temp_dir(), "purge-index");
    let names = Index::new(
        IndexDefinition::map("names", "1", &["Notes"]),
        FnIndex::map(|d| {
            let b = d.body()?;
            Ok(vec![Emit::new(
                b["text"].clone(),
                json!({"copy": b["text"]}),
            )])
        }),
    );
    let groups = Index::new(
        IndexDefinition::map_reduce("groups", "1", &["Notes"]).with_output("Groups"),
        FnIndex::map(|d| {
            let b = d.body()?;
            Ok(vec![Emit::new(b["group"].clone(), json!([b["text"]]))])
        })
        .with_reduce(|_k, vs, _| {
            let mut all: Vec<String> = vs
                .iter()
                .flat_map(|v| v.as_array().cloned().unwrap_or_default())
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect();
            all.sort();
            Ok(json!(all))
        }),
    );
    let note = |text: String, group: &str| json!({ "@metadata": { "@collection": "Notes" }, "text": text, "group": group });
    let db = open(t.path());
    for i in 0..200 {
        // Many entries under "shared" (its reduce tree has branches).
        block_on(db.put(
            &format!("keep/{i:03}"),
            note(format!("kept {i:03}"), "shared"),
        ))
        .unwrap();
        block_on(db.put(
            &format!("gone/secret7f3a-{i:03}"),
            note(
                format!("secret7f3a {i:03}"),
                if i % 2 == 0 {
                    "shared"
                } else {
                    "secret7f3a-only"
                },
            ),
        ))
        .unwrap();
    }
    block_on(db.catch_up_index(&names, None)).unwrap();
    block_on(db.catch_up_index(&groups, None)).unwrap();
    assert!(
        block_on(db.get("Groups/secret7f3a-only"))
            .unwrap()
            .is_some()
    );
    block_on(db.close()).unwrap();
    let db = open(t.path());
    assert!(!files_with_marker(t.path()).is_empty());
    let scope = PurgeScope {
        prefixes: vec!["gone/".into()],
        ..Default::default()
    };
    // The caller is shown the purged documents and, flagged, the output
    // documents of keys only they fed (a hub names those to its edges);
    // not the output of a key other documents still feed.
    let mut shown = Vec::new();
    let rep = block_on(db.purge_recorded(&scope, |docs| {
        shown = docs.to_vec();
        Ok(outpost::Batch::new())
    }))
    .unwrap();
    assert_eq!(rep.removed, 200, "output documents are not in the report");
    let outputs: Vec<String> = shown
        .iter()
        .filter(|d| d.index_output)
        .map(|d| String::from_utf8_lossy(&d.key).into_owned())
        .collect();
    assert_eq!(outputs, ["groups/secret7f3a-only"]);
    assert_eq!(shown.len(), 201);
    assert_eq!(files_with_marker(t.path()), Vec::<String>::new());
    sound(&db);
    // Until the next step the shared key has no row (its result was
    // computed from purged documents) and the query says it is stale.
    let snap = db.snapshot();
    let r = block_on(snap.query("groups", &IndexQuery::default())).unwrap();
    assert!(r.stale && r.rows.is_empty(), "{r:?}");
    drop(snap);
    block_on(db.catch_up_index(&groups, None)).unwrap();
    block_on(db.catch_up_index(&names, None)).unwrap();
    let snap = db.snapshot();
    let r = block_on(snap.query("groups", &IndexQuery::default())).unwrap();
    assert!(!r.stale);
    assert_eq!(r.rows.len(), 1);
    assert_eq!(r.rows[0].key, json!("shared"));
    let want: Vec<String> = (0..200).map(|i| format!("kept {i:03}")).collect();
    assert_eq!(r.rows[0].value, json!(want));
    let out = block_on(db.get("Groups/shared"))
        .unwrap()
        .expect("rebuilt output");
    assert_eq!(out.body["value"], json!(want));
    assert!(
        block_on(db.get("Groups/secret7f3a-only"))
            .unwrap()
            .is_none()
    );
    let r = block_on(snap.query("names", &IndexQuery::default())).unwrap();
    assert_eq!(r.rows.len(), 200);
    drop(snap);
    sound(&db);
    block_on(db.close()).unwrap();
    assert_eq!(files_with_marker(t.path()), Vec::<String>::new());
}
