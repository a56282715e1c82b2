//! Helpers of the browser tests (`browser.rs`, `browser_log.rs`): database
//! names, opening, and raw IndexedDB access (a database's records read
//! through a connection of the test's own, in its storage bucket).
#![allow(dead_code)]

use js_sys::{Array, Function, Promise, Reflect, Uint8Array};
use outpost::store::idb::IdbStore;
use outpost::{Database, OpenOptions};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// A database name no other test uses.
pub fn unique_name(label: &str) -> String {
    let mut r = [0u8; 6];
    outpost::platform::random_bytes(&mut r);
    let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
    format!("outpost-test-{label}-{}-{hex}", js_sys::Date::now() as u64)
}

/// The database `name` over its IndexedDB store, default options.
pub async fn open_db(name: &str) -> Database<IdbStore> {
    let store = IdbStore::open(name).await.expect("open IndexedDB store");
    Database::open(store, OpenOptions::default())
        .await
        .expect("open database")
}

/// Awaits an `IDBRequest` (or an open request) through its events.
pub async fn request(req: &JsValue) -> JsValue {
    let p = Promise::new(&mut |resolve, reject| {
        Reflect::set(req, &"onsuccess".into(), &resolve).unwrap();
        Reflect::set(req, &"onerror".into(), &reject).unwrap();
    });
    JsFuture::from(p).await.unwrap();
    Reflect::get(req, &"result".into()).unwrap()
}

/// `obj[method](...args)`.
pub fn call(obj: &JsValue, method: &str, args: &[JsValue]) -> JsValue {
    let f: Function = Reflect::get(obj, &method.into()).unwrap().unchecked_into();
    f.apply(obj, &args.iter().collect::<Array>()).unwrap()
}

/// The IndexedDB factory holding the database `name`: its storage bucket's
/// (the store says which) or the origin's default.
pub async fn factory(bucket: Option<String>) -> JsValue {
    let global = js_sys::global();
    match bucket {
        None => Reflect::get(&global, &"indexedDB".into()).unwrap(),
        Some(b) => {
            let nav = Reflect::get(&global, &"navigator".into()).unwrap();
            let m = Reflect::get(&nav, &"storageBuckets".into()).unwrap();
            let p: Promise = call(&m, "open", &[b.into()]).unchecked_into();
            let bucket = JsFuture::from(p).await.unwrap();
            Reflect::get(&bucket, &"indexedDB".into()).unwrap()
        }
    }
}

/// The schema version the database `name` is at (opened without asking
/// for one).
pub async fn schema_version(name: &str, bucket: Option<String>) -> f64 {
    let db = request(&call(&factory(bucket).await, "open", &[name.into()])).await;
    let v = Reflect::get(&db, &"version".into())
        .unwrap()
        .as_f64()
        .unwrap();
    call(&db, "close", &[]);
    v
}

/// Runs `f` on the object store `store` of database `name`, through a
/// connection of its own, and returns the result of the request it makes.
async fn on_store(
    name: &str,
    bucket: Option<String>,
    store: &str,
    f: impl FnOnce(&JsValue) -> JsValue,
) -> JsValue {
    let db = request(&call(&factory(bucket).await, "open", &[name.into()])).await;
    let tx = call(&db, "transaction", &[store.into()]);
    let os = call(&tx, "objectStore", &[store.into()]);
    let out = request(&f(&os)).await;
    call(&db, "close", &[]);
    out
}

/// Writes `value` under `key` into the object store `store` of database
/// `name`, through a connection of its own (what a damaged or foreign
/// database would hold).
pub async fn put_raw(
    name: &str,
    bucket: Option<String>,
    store: &str,
    key: &JsValue,
    value: &JsValue,
) {
    let db = request(&call(&factory(bucket).await, "open", &[name.into()])).await;
    let tx = call(&db, "transaction", &[store.into(), "readwrite".into()]);
    let os = call(&tx, "objectStore", &[store.into()]);
    request(&call(&os, "put", &[value.clone(), key.clone()])).await;
    let done = Promise::new(&mut |resolve, _| {
        Reflect::set(&tx, &"oncomplete".into(), &resolve).unwrap();
    });
    JsFuture::from(done).await.unwrap();
    call(&db, "close", &[]);
}

/// Deletes the record under `key` of the object store `store` of database
/// `name`, through a connection of its own.
pub async fn delete_raw(name: &str, bucket: Option<String>, store: &str, key: &JsValue) {
    let db = request(&call(&factory(bucket).await, "open", &[name.into()])).await;
    let tx = call(&db, "transaction", &[store.into(), "readwrite".into()]);
    let os = call(&tx, "objectStore", &[store.into()]);
    request(&call(&os, "delete", std::slice::from_ref(key))).await;
    let done = Promise::new(&mut |resolve, _| {
        Reflect::set(&tx, &"oncomplete".into(), &resolve).unwrap();
    });
    JsFuture::from(done).await.unwrap();
    call(&db, "close", &[]);
}

/// The runs the layout record (`meta` key 3) lists, decoded here from its
/// documented format (`u8` format, `u32` count, then per run a `u64` first
/// page, a `u16` page count and, in format 2, a `u64` bitmap of its pages
/// that may have a page record; little-endian), as (first page, page
/// count, bitmap; format 1: every page); `None` when the database has no
/// layout record.
pub async fn layout_recorded(name: &str, bucket: Option<String>) -> Option<Vec<(u64, u64, u64)>> {
    let v = on_store(name, bucket, "meta", |os| call(os, "get", &[3.into()])).await;
    let b = v.dyn_ref::<Uint8Array>()?.to_vec();
    let entry = match b[0] {
        1 => 10,
        2 => 18,
        f => panic!("layout record format {f}"),
    };
    let count = u32::from_le_bytes(b[1..5].try_into().unwrap()) as usize;
    assert_eq!(b.len(), 5 + entry * count, "layout record length");
    Some(
        b[5..]
            .chunks_exact(entry)
            .map(|e| {
                let first = u64::from_le_bytes(e[..8].try_into().unwrap());
                let n = u64::from(u16::from_le_bytes([e[8], e[9]]));
                let bits = match e.get(10..18) {
                    Some(b) => u64::from_le_bytes(b.try_into().unwrap()),
                    None => u64::MAX,
                };
                (first, n, bits)
            })
            .collect(),
    )
}

/// The runs the layout record lists, as (first page, page count).
pub async fn layout(name: &str, bucket: Option<String>) -> Option<Vec<(u64, u64)>> {
    Some(
        layout_recorded(name, bucket)
            .await?
            .into_iter()
            .map(|(first, n, _)| (first, n))
            .collect(),
    )
}

/// The keys of the object store `runs`, as (first page, page count).
pub async fn run_keys(name: &str, bucket: Option<String>) -> Vec<(u64, u64)> {
    keys(name, bucket, "runs")
        .await
        .iter()
        .map(|k| {
            let a: &Array = k.unchecked_ref();
            (
                a.get(0).as_f64().unwrap() as u64,
                a.get(1).as_f64().unwrap() as u64,
            )
        })
        .collect()
}

/// Checks the layout record against the runs: it lists every run (and,
/// with `exact`, nothing else), and every page record inside a listed run
/// has its bit set (a page without it is read from the run alone).
pub async fn assert_layout(name: &str, bucket: Option<String>, exact: bool) {
    let bits = layout_recorded(name, bucket.clone())
        .await
        .expect("the database has a layout record");
    for no in keys(name, bucket.clone(), "pages")
        .await
        .iter()
        .filter_map(|k| k.as_f64())
        .map(|k| k as u64)
    {
        if let Some(&(first, _, b)) = bits.iter().find(|(f, n, _)| no >= *f && no < f + n) {
            assert!(
                b >> (no - first) & 1 == 1,
                "page {no} has a record but its run's bit is not set: {bits:?}"
            );
        }
    }
    let listed: Vec<(u64, u64)> = bits.iter().map(|&(f, n, _)| (f, n)).collect();
    let stored = run_keys(name, bucket).await;
    for r in &stored {
        assert!(
            listed.contains(r),
            "run {r:?} missing from the layout {listed:?}"
        );
    }
    if exact {
        assert_eq!(listed, stored, "the layout lists runs that are gone");
    }
}

/// How many records the object store `store` of database `name` holds.
pub async fn count(name: &str, bucket: Option<String>, store: &str) -> u32 {
    on_store(name, bucket, store, |os| call(os, "count", &[]))
        .await
        .as_f64()
        .unwrap() as u32
}

/// Every key of the object store `store`, in order.
pub async fn keys(name: &str, bucket: Option<String>, store: &str) -> Vec<JsValue> {
    let all: Array = on_store(name, bucket, store, |os| call(os, "getAllKeys", &[]))
        .await
        .unchecked_into();
    all.iter().collect()
}

/// The byte-array records of the object store `store`, in key order.
pub async fn records(name: &str, bucket: Option<String>, store: &str) -> Vec<Vec<u8>> {
    let all: Array = on_store(name, bucket, store, |os| call(os, "getAll", &[]))
        .await
        .unchecked_into();
    all.iter()
        .filter_map(|v| v.dyn_ref::<Uint8Array>().map(Uint8Array::to_vec))
        .collect()
}

/// The bytes of every byte-array record of every object store of the
/// database (its raw contents, old images included).
pub async fn every_record(name: &str, bucket: Option<String>) -> Vec<u8> {
    let mut out = Vec::new();
    for store in ["pages", "meta", "log", "runs"] {
        out.extend(records(name, bucket.clone(), store).await.concat());
    }
    out
}
