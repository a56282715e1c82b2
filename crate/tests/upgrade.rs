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
use outpost::store::MemoryStore;
use outpost::store::file::{FileStore, FileStoreOptions};
use outpost::{Batch, ConflictPolicy, Database, DbId, OpenOptions, RawVersion, RemoteDoc};
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
