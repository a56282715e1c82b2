//! Where an IndexedDB page store's database lives: in a **storage bucket of
//! its own per generation** where the browser has storage buckets
//! (`navigator.storageBuckets`, Chromium), else in the origin's default
//! storage.
//!
//! Why buckets: Chromium's IndexedDB sits on LevelDB, which appends; a value
//! overwritten or deleted stays in its log and table files until LevelDB
//! compacts them, at a time the page does not choose. Deleting a storage
//! bucket deletes its directory at once. So a purge copies the live pages
//! into the next generation's bucket and deletes the previous one
//! (`IdbStore::erase_residue`); no byte of the purged documents is left on
//! disk (docs/design.md, "Purge: physical erasure").
//!
//! The bucket of generation `g` of the database `name` is named
//! `outpost-<h>-<g>`, `h` being the first 16 bytes of SHA-256(`name`) in hex
//! (bucket names allow only `[a-z0-9_-]`, at most 64 characters); inside it
//! the IndexedDB database is called `name`. A generation is complete once its
//! meta record is written (the copy writes it last, in its own strict
//! transaction). At open the newest complete generation is used; newer,
//! incomplete ones (a copy cut short) and older ones (a deletion cut short)
//! are deleted.
//!
//! A database created before buckets were used (or in a browser without them)
//! lives in the default storage ([`Place::Default`]) and stays there until its
//! first purge moves it into generation 1; `deleteDatabase` then removes it
//! from the default storage, where LevelDB may keep its bytes for a while
//! (what the page cannot force).

use js_sys::{Array, Function, Object, Promise, Reflect};
use sha2::{Digest, Sha256};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::IdbFactory;

use super::js::{default_factory, request};

/// Where a database lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Place {
    /// The origin's default storage (`globalThis.indexedDB`).
    Default,
    /// Its own storage bucket, generation `g` (from 1).
    Bucket(u64),
}

/// `navigator.storageBuckets`, when this browser has it.
pub(super) fn manager() -> Option<Object> {
    let nav = Reflect::get(&js_sys::global(), &JsValue::from_str("navigator")).ok()?;
    let m = Reflect::get(&nav, &JsValue::from_str("storageBuckets")).ok()?;
    let open = Reflect::get(&m, &JsValue::from_str("open")).ok()?;
    (open.is_function()).then(|| m.unchecked_into())
}

fn prefix(name: &str) -> String {
    let h = Sha256::digest(name.as_bytes());
    format!("outpost-{}-", crate::codec::to_hex(&h[..16]))
}

/// The bucket name of generation `g` of the database `name`.
pub(super) fn bucket_name(name: &str, g: u64) -> String {
    format!("{}{g}", prefix(name))
}

async fn call(m: &Object, method: &str, args: &[JsValue]) -> Result<JsValue, JsValue> {
    ask(m, method, args)?.await
}

/// Calls `m.method(...args)` now and returns its answer to await later: the
/// browser works on it while other calls are made (each of these is a round
/// trip to the browser's storage service, about 0.5 ms).
fn ask(m: &Object, method: &str, args: &[JsValue]) -> Result<JsFuture, JsValue> {
    let f: Function = Reflect::get(m, &JsValue::from_str(method))?.dyn_into()?;
    let args: Array = args.iter().collect();
    let p: Promise = f.apply(m, &args)?.dyn_into()?;
    Ok(JsFuture::from(p))
}

/// The generations of `name` that have a bucket, oldest first.
pub(super) async fn generations(m: &Object, name: &str) -> Result<Vec<u64>, JsValue> {
    let keys: Array = call(m, "keys", &[]).await?.dyn_into()?;
    let prefix = prefix(name);
    let mut gens: Vec<u64> = keys
        .iter()
        .filter_map(|k| k.as_string())
        .filter_map(|k| k.strip_prefix(&prefix)?.parse().ok())
        .filter(|g| *g > 0)
        .collect();
    gens.sort_unstable();
    Ok(gens)
}

/// The IndexedDB factory of `place` (the bucket opened, created if need be,
/// with strict durability), and the `StorageBucket` object it came from.
///
/// **Keep the bucket object as long as the factory or any connection opened
/// through it is in use.** In Chromium (156, measured), once the
/// `StorageBucket` object is garbage-collected, requests on connections
/// opened through its `indexedDB` never complete: a page hangs at its next
/// read, at a time set by the garbage collector (a probe that drops it and
/// forces a collection hangs every time; one that keeps it never does).
pub(super) async fn factory(
    m: Option<&Object>,
    name: &str,
    place: Place,
) -> Result<(IdbFactory, Option<Object>), JsValue> {
    match (place, m) {
        (Place::Default, _) => Ok((default_factory()?, None)),
        (Place::Bucket(_), None) => Err(JsValue::from_str(
            "storage buckets are not available in this context",
        )),
        (Place::Bucket(g), Some(m)) => {
            let opts = Object::new();
            Reflect::set(
                &opts,
                &JsValue::from_str("durability"),
                &JsValue::from_str("strict"),
            )?;
            let bucket = ask(m, "open", &[bucket_name(name, g).into(), opts.into()])?;
            // Asked while the bucket opens, not after it.
            let persisted = origin_persisted();
            let bucket: Object = bucket.await?.dyn_into()?;
            // `navigator.storage.persist()` covers the default bucket only: a
            // bucket of an origin whose storage is persistent asks for it too
            // (the application's choice, `persist: true` at open).
            if persisted.await {
                let _ = call(&bucket, "persist", &[]).await;
            }
            let factory = Reflect::get(&bucket, &JsValue::from_str("indexedDB"))?
                .dyn_into::<IdbFactory>()
                .map_err(|_| JsValue::from_str("the storage bucket has no IndexedDB"))?;
            Ok((factory, Some(bucket)))
        }
    }
}

/// Whether the origin's storage is persistent (`navigator.storage.persisted()`;
/// `false` where that cannot be asked). Asked when called, answered when
/// awaited.
fn origin_persisted() -> impl std::future::Future<Output = bool> {
    let storage = Reflect::get(&js_sys::global(), &JsValue::from_str("navigator"))
        .and_then(|n| Reflect::get(&n, &JsValue::from_str("storage")));
    let asked = storage
        .and_then(|s| s.dyn_into::<Object>())
        .and_then(|s| ask(&s, "persisted", &[]));
    async move {
        match asked {
            Ok(answer) => answer.await.is_ok_and(|v| v.as_bool() == Some(true)),
            Err(_) => false,
        }
    }
}

/// Deletes `place`: the bucket (its directory goes at once), or the database
/// `name` of the default storage (waits until every connection to it is
/// closed; the store's connections close when asked to).
pub(super) async fn delete(m: Option<&Object>, name: &str, place: Place) -> Result<(), JsValue> {
    match (place, m) {
        (Place::Bucket(g), Some(m)) => call(m, "delete", &[bucket_name(name, g).into()])
            .await
            .map(|_| ()),
        (Place::Bucket(_), None) => Ok(()),
        (Place::Default, _) => {
            let req = default_factory()?.delete_database(name)?;
            request(&req).await.map(|_| ())
        }
    }
}

/// Whether the default storage holds a database `name` (one made before
/// buckets were used). `indexedDB.databases()` answers; where it does not
/// exist, `true` (the default storage is then used, as before). Asked when
/// called, answered when awaited: an open asks it beside its list of
/// buckets, and awaits it only if it needs it.
pub(super) fn in_default_storage(
    name: &str,
) -> impl std::future::Future<Output = Result<bool, JsValue>> + use<> {
    let asked = default_factory().and_then(|f| {
        let databases = Reflect::get(&f, &JsValue::from_str("databases"));
        match databases {
            Ok(d) if d.is_function() => ask(&f, "databases", &[]).map(Some),
            _ => Ok(None),
        }
    });
    let name = name.to_string();
    async move {
        let Some(answer) = asked? else {
            return Ok(true);
        };
        let list: Array = answer.await?.dyn_into()?;
        Ok(list.iter().any(|d| {
            Reflect::get(&d, &JsValue::from_str("name"))
                .ok()
                .and_then(|n| n.as_string())
                .is_some_and(|n| n == name)
        }))
    }
}
