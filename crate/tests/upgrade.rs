//! Meta format upgrades: a database written by an older format version is
//! read, upgraded on open in one crash-safe commit, and refused when it comes
//! from a newer version.
//!
//! The fixture `tests/fixtures/v2-db/` was written by the engine at meta
//! format version 2 (see its `README.txt`); `write_fixture` below is the
//! generator that wrote it.
#![cfg(not(target_arch = "wasm32"))]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use futures::executor::block_on;
use outpost::store::fault::{Fault, FaultVfs, FileImages};
use outpost::store::file::{FileStore, FileStoreOptions};
use outpost::store::{Commit, Durability, MemoryStore, PageStore};
use outpost::{
    Batch, ConflictPolicy, Database, DbId, OpenError, OpenOptions, RawVersion, RemoteDoc,
};
use outpost_testkit::TempDir;
use serde_json::json;

/// Deterministic options: a fixed database id and a clock ticking from
/// 1_700_000_000_000 ms.
fn fixture_opts(db_id: [u8; 16]) -> OpenOptions {
    let t = Arc::new(AtomicI64::new(1_700_000_000_000));
    OpenOptions {
        clock: Some(Arc::new(move || t.fetch_add(1, Ordering::Relaxed))),
        db_id: Some(DbId(db_id)),
        ..Default::default()
    }
}

/// Writes the fixture database into `dir`: five documents in two collections
/// (`Patients`: p1, p2, p3; `Invoices`: i1, i2), one more deleted (`patients/p4`,
/// a tombstone), one conflicted document (`shared/1`, two concurrent
/// versions, in no collection), and one local record
/// (`checkpoint/hub` = `42`). Closed cleanly, so the WAL is checkpointed.
async fn write_fixture_db(dir: &Path) {
    // A small WAL (the default grows it in 4 MiB steps).
    let store_opts = FileStoreOptions {
        wal_grow_bytes: 0,
        ..FileStoreOptions::default()
    };
    let store = FileStore::open(dir, store_opts).unwrap();
    let db = Database::open(store, fixture_opts([0xF1; 16]))
        .await
        .unwrap();
    // Few commits, so the WAL stays short.
    let mut b = Batch::new();
    for (id, coll, n) in [
        ("patients/p1", "Patients", 1),
        ("patients/p2", "Patients", 2),
        ("patients/p3", "Patients", 3),
        ("patients/p4", "Patients", 4),
        ("invoices/i1", "Invoices", 1),
        ("invoices/i2", "Invoices", 2),
    ] {
        b.put(id, json!({"n": n, "@metadata": {"@collection": coll}}));
    }
    b.put("shared/1", json!({"by": "here"}));
    db.commit(b).await.unwrap();
    // A conflict: the same id written here and, concurrently, on a peer.
    let peer = Database::open(Arc::new(MemoryStore::new()), fixture_opts([0xF2; 16]))
        .await
        .unwrap();
    let theirs = peer.put("shared/1", json!({"by": "peer"})).await.unwrap();
    let d = peer.get("shared/1").await.unwrap().unwrap();
    let mut b = Batch::new();
    b.delete("patients/p4");
    b.apply_remote(
        RemoteDoc {
            id: d.id.clone(),
            collection: None,
            versions: vec![RawVersion {
                change_vector: theirs.change_vector,
                last_modified_ms: d.meta.last_modified_ms,
                deleted: false,
                body: serde_json::to_vec(&d.body).unwrap(),
            }],
            source: Some("peer".into()),
        },
        ConflictPolicy::Manual,
    );
    b.set_local(b"checkpoint/hub".to_vec(), Some(b"42".to_vec()));
    db.commit(b).await.unwrap();
    db.close().await.unwrap();
}

/// The generator of `tests/fixtures/v2-db/`. Run by hand:
///
/// ```text
/// OUTPOST_FIXTURE_OUT=/tmp/fixture cargo test -p outpost --test upgrade -- --ignored write_fixture
/// ```
///
/// It writes the format of the engine it is built with: run at meta version
/// 2 (commit e959271) it wrote the committed fixture; today it writes the
/// current version. The committed files are the fixture, not this function.
#[test]
#[ignore]
fn write_fixture() {
    let out =
        std::env::var("OUTPOST_FIXTURE_OUT").expect("set OUTPOST_FIXTURE_OUT to a new directory");
    block_on(write_fixture_db(Path::new(&out)));
}

/// Writes the hub fixture into `dir` (meta version 3, before the origins
/// tree): a hub database (id `a0a0…`) holding what two edges pushed —
/// alice's device `a1a1…` (`notes/a1` at its etag 2, `notes/shared` at 3)
/// and bob's device `b1b1…` (`notes/b1` at 5), each with its push checkpoint
/// record — one document received from an upstream hub `c0c0…`
/// (`org/u1` at 7, source `upstream:cloud`), and one local write
/// (`notes/hub`). Closed cleanly.
async fn write_hub_fixture_db(dir: &Path) {
    let store_opts = FileStoreOptions {
        wal_grow_bytes: 0,
        ..FileStoreOptions::default()
    };
    let store = FileStore::open(dir, store_opts).unwrap();
    let db = Database::open(store, fixture_opts([0xA0; 16]))
        .await
        .unwrap();
    let remote = |id: &str, from: [u8; 16], etag: u64, source: &str| RemoteDoc {
        id: id.to_string(),
        collection: Some("Notes".into()),
        versions: vec![RawVersion {
            change_vector: outpost::ChangeVector::from_entries([(DbId(from), etag)]).unwrap(),
            last_modified_ms: 1_700_000_000_000,
            deleted: false,
            body: format!("{{\"by\":\"{id}\"}}").into_bytes(),
        }],
        source: Some(source.to_string()),
    };
    let (alice, bob, up) = ([0xA1; 16], [0xB1; 16], [0xC0; 16]);
    let mut b = Batch::new();
    b.apply_remote(
        remote("notes/a1", alice, 2, &format!("edge:alice/{}", DbId(alice))),
        ConflictPolicy::Latest,
    );
    b.apply_remote(
        remote(
            "notes/shared",
            alice,
            3,
            &format!("edge:alice/{}", DbId(alice)),
        ),
        ConflictPolicy::Latest,
    );
    b.set_local(
        outpost::sync::push_checkpoint_key("alice", &DbId(alice)),
        Some(3u64.to_le_bytes().to_vec()),
    );
    db.commit(b).await.unwrap();
    let mut b = Batch::new();
    b.apply_remote(
        remote("notes/b1", bob, 5, &format!("edge:bob/{}", DbId(bob))),
        ConflictPolicy::Latest,
    );
    b.set_local(
        outpost::sync::push_checkpoint_key("bob", &DbId(bob)),
        Some(5u64.to_le_bytes().to_vec()),
    );
    db.commit(b).await.unwrap();
    let mut b = Batch::new();
    b.apply_remote(
        remote("org/u1", up, 7, "upstream:cloud"),
        ConflictPolicy::Latest,
    );
    db.commit(b).await.unwrap();
    db.put("notes/hub", json!({"by": "hub"})).await.unwrap();
    db.close().await.unwrap();
}

/// The generator of `tests/fixtures/v3-hub-db/`, run by hand like
/// [`write_fixture`]:
///
/// ```text
/// OUTPOST_FIXTURE_OUT=/tmp/fixture cargo test -p outpost --test upgrade -- --ignored write_hub_fixture
/// ```
///
/// Run at meta version 3 (commit 5475cbb) it wrote the committed fixture.
#[test]
#[ignore]
fn write_hub_fixture() {
    let out =
        std::env::var("OUTPOST_FIXTURE_OUT").expect("set OUTPOST_FIXTURE_OUT to a new directory");
    block_on(write_hub_fixture_db(Path::new(&out)));
}

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v2-db");
/// The files of the fixture (LOCK is created by the store).
const FILES: [&str; 2] = ["outpost.db", "outpost.wal"];

/// The fixture's files, by name.
fn fixture_files() -> Vec<(&'static str, Vec<u8>)> {
    FILES
        .iter()
        .map(|f| (*f, std::fs::read(Path::new(FIXTURE).join(f)).unwrap()))
        .collect()
}

/// A copy of the fixture in a fresh temporary directory.
fn fixture_copy(name: &str) -> TempDir {
    let t = TempDir::new(std::env::temp_dir(), name);
    for (f, bytes) in fixture_files() {
        std::fs::write(t.join(f), bytes).unwrap();
    }
    t
}

/// The format version of the meta record `store` holds.
async fn meta_version<S: PageStore>(store: &S) -> u16 {
    let meta = store.read_meta().await.unwrap().expect("a meta record");
    u16::from_le_bytes([meta[4], meta[5]])
}

/// Checks that `db` holds exactly what the fixture's README lists.
async fn check_contents<S: PageStore>(db: &Database<S>) {
    let s = db.stats();
    assert_eq!(s.db_id, DbId([0xF1; 16]).to_string());
    assert_eq!((s.documents, s.tombstones, s.last_etag), (6, 1, 9));
    for (id, n) in [
        ("patients/p1", 1),
        ("patients/p2", 2),
        ("patients/p3", 3),
        ("invoices/i1", 1),
        ("invoices/i2", 2),
    ] {
        let d = db.get(id).await.unwrap().unwrap_or_else(|| panic!("{id}"));
        assert_eq!(d.body["n"], n, "{id}");
    }
    assert!(db.get("patients/p4").await.unwrap().is_none());
    let t = db.get_version("patients/p4").await.unwrap().unwrap();
    assert!(t.meta.flags.is_tombstone());
    assert_eq!(t.meta.collection.as_deref(), Some("Patients"));
    assert_eq!(
        db.collections().await.unwrap(),
        vec![("Invoices".to_string(), 2), ("Patients".to_string(), 3)]
    );
    assert_eq!(
        db.by_collection("patients", None, 10).await.unwrap().len(),
        3
    );
    let c = db.conflicts(None, 10).await.unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].id, "shared/1");
    assert_eq!(c[0].conflicts.len(), 1);
    let mut bodies = vec![
        c[0].body["by"].clone(),
        c[0].conflicts[0].body["by"].clone(),
    ];
    bodies.sort_by_key(|b| b.to_string());
    assert_eq!(bodies, vec![json!("here"), json!("peer")]);
    assert_eq!(
        db.get_local(b"checkpoint/hub").await.unwrap().as_deref(),
        Some(&b"42"[..])
    );
    assert_eq!(db.changes(0, 100).await.unwrap().len(), 7);
    let rep = db.integrity_check().await.unwrap();
    assert!(rep.is_ok(), "{:?}", rep.problems);
    assert_eq!((rep.documents, rep.tombstones), (6, 1));
}

#[test]
fn the_fixture_is_version_2() {
    let t = fixture_copy("upgrade-fixture");
    let store = FileStore::open_read_only(t.path(), FileStoreOptions::default()).unwrap();
    assert_eq!(block_on(meta_version(&store)), 2);
}

#[test]
fn a_version_2_database_is_upgraded_on_open() {
    let t = fixture_copy("upgrade-open");
    block_on(async {
        let store = FileStore::open(t.path(), FileStoreOptions::default()).unwrap();
        let db = Database::open(store, testkit_opts()).await.unwrap();
        check_contents(&db).await;
        assert_eq!(meta_version(db.store()).await, 4);
        // It takes writes, and they survive a reopen.
        db.put(
            "patients/p5",
            json!({"n": 5, "@metadata": {"@collection": "Patients"}}),
        )
        .await
        .unwrap();
        db.close().await.unwrap();
        let store = FileStore::open(t.path(), FileStoreOptions::default()).unwrap();
        assert_eq!(meta_version(&store).await, 4);
        let db = Database::open(store, testkit_opts()).await.unwrap();
        assert_eq!(db.stats().documents, 7);
        assert_eq!(db.get("patients/p5").await.unwrap().unwrap().body["n"], 5);
        let rep = db.integrity_check().await.unwrap();
        assert!(rep.is_ok(), "{:?}", rep.problems);
        db.close().await.unwrap();
    });
}

#[test]
fn a_read_only_open_reads_version_2_and_writes_nothing() {
    let t = fixture_copy("upgrade-read-only");
    block_on(async {
        let store = FileStore::open_read_only(t.path(), FileStoreOptions::default()).unwrap();
        let db = Database::open_read_only(store, testkit_opts())
            .await
            .unwrap();
        check_contents(&db).await;
        assert_eq!(meta_version(db.store()).await, 2);
        assert_eq!(
            db.put("x", json!({})).await.unwrap_err().code(),
            "read_only"
        );
        db.close().await.unwrap();
    });
    for (f, bytes) in fixture_files() {
        assert!(std::fs::read(t.join(f)).unwrap() == bytes, "{f} changed");
    }
}

#[test]
fn a_newer_version_is_refused() {
    let store = Arc::new(MemoryStore::new());
    block_on(async {
        let db = Database::open(store.clone(), testkit_opts()).await.unwrap();
        db.put("a", json!({})).await.unwrap();
        db.close().await.unwrap();
        store.reopen();
        let mut meta = store.read_meta().await.unwrap().unwrap();
        meta[4..6].copy_from_slice(&5u16.to_le_bytes());
        store
            .commit(Commit {
                pages: Vec::new(),
                meta,
                durability: Durability::Durable,
            })
            .await
            .unwrap();
        for read_only in [false, true] {
            let r = if read_only {
                Database::open_read_only(store.clone(), testkit_opts()).await
            } else {
                Database::open(store.clone(), testkit_opts()).await
            };
            let e = r.err().expect("a newer format must be refused");
            assert!(matches!(e, OpenError::Unsupported(_)), "{e:?}");
            assert_eq!(e.code(), "unsupported");
            assert!(e.to_string().contains("version 5"), "{e}");
        }
    });
}

fn testkit_opts() -> OpenOptions {
    outpost_testkit::opts()
}

// ---------------------------------------------------------------- crashes ---

const CRASH_DIR: &str = "/upgrade/db";

/// The fixture as the files of a fault-injecting file system.
fn fixture_images() -> FileImages {
    fixture_files()
        .into_iter()
        .map(|(f, b)| (Path::new(CRASH_DIR).join(f), b))
        .collect()
}

fn vfs_opts(vfs: &FaultVfs) -> FileStoreOptions {
    FileStoreOptions {
        vfs: Arc::new(vfs.clone()),
        ..FileStoreOptions::default()
    }
}

/// Opens (upgrading) and closes the database on `vfs`; fails where the
/// fault makes it fail.
fn upgrade_on(vfs: &FaultVfs) -> Result<(), String> {
    let store = FileStore::open(CRASH_DIR, vfs_opts(vfs)).map_err(|e| e.to_string())?;
    block_on(async {
        let db = Database::open(store, testkit_opts())
            .await
            .map_err(|e| e.to_string())?;
        db.close().await.map_err(|e| e.to_string())
    })
}

#[test]
fn a_crash_during_the_upgrade_leaves_the_old_or_the_new_format() {
    // A crash-free upgrade, to count its I/O operations.
    let vfs = FaultVfs::with_files(fixture_images());
    upgrade_on(&vfs).unwrap();
    let total = vfs.op_count();
    assert!(total > 0);
    let (mut images, mut versions) = (0, std::collections::BTreeSet::new());
    for n in 1..=total {
        let vfs = FaultVfs::with_files(fixture_images());
        vfs.set_fault(Some(Fault::CrashAt(n)));
        let _ = upgrade_on(&vfs);
        for (i, img) in vfs.crash_image_files(12, n).into_iter().enumerate() {
            let what = format!("crash at op {n}, image {i}");
            let vfs = FaultVfs::with_files(img);
            let store = FileStore::open(CRASH_DIR, vfs_opts(&vfs))
                .unwrap_or_else(|e| panic!("{what}: store failed to open: {e}"));
            block_on(async {
                let v = meta_version(&store).await;
                assert!(v == 2 || v == 4, "{what}: version {v}");
                versions.insert(v);
                // Whichever it is, it opens (upgrading a version 2 again),
                // holds everything, and is version 4 afterwards.
                let db = Database::open(store, testkit_opts())
                    .await
                    .unwrap_or_else(|e| panic!("{what}: db failed to open: {e}"));
                check_contents(&db).await;
                assert_eq!(meta_version(db.store()).await, 4, "{what}");
                db.close().await.unwrap();
            });
            images += 1;
        }
    }
    println!("upgrade crash images checked: {images} ({total} crash points)");
    assert!(images >= 20, "only {images} crash images");
    assert_eq!(
        versions,
        [2, 4].into(),
        "crashes leave both the old and the new format"
    );
}

// ------------------------------------------------------ the hub fixture ---

const HUB_FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v3-hub-db");

#[test]
fn a_version_3_hub_database_gets_its_origins_on_open() {
    let t = TempDir::new(std::env::temp_dir(), "upgrade-hub");
    for f in FILES {
        std::fs::copy(Path::new(HUB_FIXTURE).join(f), t.join(f)).unwrap();
    }
    block_on(async {
        let store = FileStore::open_read_only(t.path(), FileStoreOptions::default()).unwrap();
        assert_eq!(meta_version(&store).await, 3);
        drop(store);
        let store = FileStore::open(t.path(), FileStoreOptions::default()).unwrap();
        let db = Database::open(store, testkit_opts()).await.unwrap();
        assert_eq!(meta_version(db.store()).await, 4);
        let s = db.stats();
        assert_eq!((s.documents, s.last_etag), (5, 5));
        for id in [
            "notes/a1",
            "notes/shared",
            "notes/b1",
            "org/u1",
            "notes/hub",
        ] {
            assert!(db.get(id).await.unwrap().is_some(), "{id}");
        }
        let snap = db.snapshot();
        let origin = |b: u8| {
            let snap = &snap;
            async move { snap.origin(&DbId([b; 16])).await.unwrap() }
        };
        let o = origin(0xA1).await.expect("alice's device");
        assert_eq!((o.high_water, o.owner.as_deref()), (3, Some("edge:alice")));
        let o = origin(0xB1).await.expect("bob's device");
        assert_eq!((o.high_water, o.owner.as_deref()), (5, Some("edge:bob")));
        let o = origin(0xC0).await.expect("the upstream");
        assert_eq!(
            (o.high_water, o.owner.as_deref()),
            (7, Some("upstream:cloud"))
        );
        assert_eq!(
            origin(0xA0).await,
            None,
            "the hub's own id is not an origin"
        );
        drop(snap);
        let rep = db.integrity_check().await.unwrap();
        assert!(rep.is_ok(), "{:?}", rep.problems);
        db.close().await.unwrap();
    });
}
