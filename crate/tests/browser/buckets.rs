//! Storage buckets.

use super::*;

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
