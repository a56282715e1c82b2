//! The IndexedDB calls of the page store, over `web-sys`: opening with the
//! schema (and the browser's `upgradeneeded` report), requests as futures,
//! transactions with a durability option, and the mapping of DOM errors to
//! [`StoreError`].

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    DomException, IdbDatabase, IdbFactory, IdbObjectStore, IdbOpenDbRequest, IdbRequest,
};

use super::log::LOG;
use super::runs::RUNS;
use super::{META, OpenReport, PAGES, VERSION};
use crate::store::{PageNo, StoreError};

/// Maps a JS error value (usually a `DOMException`) to a [`StoreError`]:
/// `QuotaExceededError` becomes [`StoreError::QuotaExceeded`], `VersionError`
/// [`StoreError::Unsupported`], anything else [`StoreError::Other`] naming the
/// operation, the exception's name and its message.
pub fn error_from_js(op: &str, value: &JsValue) -> StoreError {
    if let Some(d) = value.dyn_ref::<DomException>() {
        return dom_error(op, &d.name(), &d.message());
    }
    if let Some(e) = value.dyn_ref::<js_sys::Error>() {
        let name: String = e.name().into();
        let message: String = e.message().into();
        return dom_error(op, &name, &message);
    }
    if let Some(s) = value.as_string() {
        return StoreError::Other(format!("{op}: {s}"));
    }
    StoreError::Other(format!("{op}: {value:?}"))
}

pub(super) fn dom_error(op: &str, name: &str, message: &str) -> StoreError {
    match name {
        "QuotaExceededError" => {
            StoreError::QuotaExceeded(format!("{op}: {name}: {message} (nothing was written)"))
        }
        "VersionError" => StoreError::Unsupported {
            file: String::new(),
            reason: format!("{op}: {name}: {message}"),
        },
        _ => StoreError::Other(format!("{op}: {name}: {message}")),
    }
}

pub(super) fn corrupt(name: &str, no: PageNo, reason: &str) -> StoreError {
    StoreError::Corrupt {
        file: format!("{name}/{PAGES}"),
        page: Some(no),
        offset: 0,
        reason: reason.to_string(),
    }
}

pub(super) fn bytes_of(v: &JsValue) -> Option<Vec<u8>> {
    if let Some(a) = v.dyn_ref::<Uint8Array>() {
        return Some(a.to_vec());
    }
    v.dyn_ref::<js_sys::ArrayBuffer>()
        .map(|b| Uint8Array::new(b).to_vec())
}

/// The `indexedDB` factory of the current global (window or worker): the
/// origin's default storage.
pub(super) fn default_factory() -> Result<IdbFactory, JsValue> {
    let f = Reflect::get(&js_sys::global(), &JsValue::from_str("indexedDB"))?;
    f.dyn_into::<IdbFactory>()
        .map_err(|_| JsValue::from_str("IndexedDB is not available in this context"))
}

/// Waits for an IndexedDB request; resolves with its result or its error.
///
/// The handlers are set at the first poll: issue the request and poll this
/// future in the same turn of the event loop (await it at once, or join
/// several), never after awaiting something else.
pub(super) async fn request(req: &IdbRequest) -> Result<JsValue, JsValue> {
    let done = Promise::new(&mut |resolve, reject| {
        req.set_onsuccess(Some(&resolve));
        req.set_onerror(Some(&reject));
    });
    let outcome = JsFuture::from(done).await;
    req.set_onsuccess(None);
    req.set_onerror(None);
    match outcome {
        Ok(_) => req.result(),
        Err(ev) => Err(req.error().ok().flatten().map(JsValue::from).unwrap_or(ev)),
    }
}

/// Opens the database `name` of `factory` at [`VERSION`], creating the object
/// stores in `upgradeneeded` if it is new, and reports what that event said.
pub(super) async fn open_schema(
    factory: &IdbFactory,
    name: &str,
) -> Result<(IdbDatabase, OpenReport), JsValue> {
    let req: IdbOpenDbRequest = factory.open_with_u32(name, VERSION)?;
    let report = Rc::new(RefCell::new(OpenReport::default()));
    let failure: Rc<RefCell<Option<JsValue>>> = Rc::new(RefCell::new(None));
    let on_upgrade = {
        let report = report.clone();
        let failure = failure.clone();
        let req = req.clone();
        Closure::<dyn FnMut(JsValue)>::new(move |ev: JsValue| {
            let get = |k: &str| Reflect::get(&ev, &JsValue::from_str(k)).ok();
            {
                let mut r = report.borrow_mut();
                r.created = get("oldVersion").and_then(|v| v.as_f64()) == Some(0.0);
                r.data_loss = get("dataLoss").and_then(|v| v.as_string());
                r.data_loss_message = get("dataLossMessage")
                    .and_then(|v| v.as_string())
                    .unwrap_or_default();
            }
            if let Err(e) = create_stores(&req) {
                // Abort the upgrade: the open then fails with an AbortError.
                if let Some(tx) = req.transaction() {
                    let _ = tx.abort();
                }
                *failure.borrow_mut() = Some(e);
            }
        })
    };
    req.set_onupgradeneeded(Some(on_upgrade.as_ref().unchecked_ref()));
    let outcome = request(&req).await;
    req.set_onupgradeneeded(None);
    drop(on_upgrade);
    if let Some(e) = failure.borrow_mut().take() {
        if let Ok(db) = outcome.and_then(|d| d.dyn_into::<IdbDatabase>()) {
            db.close();
        }
        return Err(e);
    }
    let db = outcome?.dyn_into::<IdbDatabase>()?;
    let report = report.borrow().clone();
    Ok((db, report))
}

/// In `upgradeneeded`: creates [`PAGES`], [`META`], [`LOG`] and [`RUNS`]
/// where missing (a version 1 database gains [`LOG`] and [`RUNS`], a
/// version 2 one [`RUNS`]). A new [`RUNS`] is empty, and so is the layout
/// record written beside it; a version 3 database keeps its runs and gets
/// its layout record from its next fold (module `runs`). A version 4
/// database has every object store: nothing to do (its format 1 layout
/// record is read as it is and rewritten by its next fold).
fn create_stores(req: &IdbOpenDbRequest) -> Result<(), JsValue> {
    let db: IdbDatabase = req.result()?.dyn_into()?;
    let names = Reflect::get(&db, &JsValue::from_str("objectStoreNames"))?;
    let contains: Function = Reflect::get(&names, &JsValue::from_str("contains"))?.dyn_into()?;
    for store in [PAGES, META, LOG, RUNS] {
        if !contains
            .call1(&names, &JsValue::from_str(store))?
            .is_truthy()
        {
            db.create_object_store(store)?;
            if store == RUNS {
                let tx = req
                    .transaction()
                    .ok_or_else(|| JsValue::from_str("no upgrade transaction"))?;
                tx.object_store(META)?.put_with_key(
                    &Uint8Array::from(super::runs::Runs::default().encode().as_slice()),
                    &JsValue::from_f64(super::runs::LAYOUT_KEY),
                )?;
            }
        }
    }
    Ok(())
}

/// Whether `db` has the object stores [`PAGES`], [`META`], [`LOG`] and [`RUNS`].
pub(super) fn has_schema(db: &IdbDatabase) -> Result<bool, JsValue> {
    let names = Reflect::get(db, &JsValue::from_str("objectStoreNames"))?;
    let contains: Function = Reflect::get(&names, &JsValue::from_str("contains"))?.dyn_into()?;
    for store in [PAGES, META, LOG, RUNS] {
        if !contains
            .call1(&names, &JsValue::from_str(store))?
            .is_truthy()
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `db.transaction(["pages", "meta", "log", "runs"], "readwrite", { durability })`,
/// called through JS so that the durability option needs no unstable
/// web-sys API.
pub(super) fn rw_transaction(
    db: &IdbDatabase,
    durability: &str,
) -> Result<web_sys::IdbTransaction, JsValue> {
    let names = Array::of4(
        &JsValue::from_str(PAGES),
        &JsValue::from_str(META),
        &JsValue::from_str(LOG),
        &JsValue::from_str(RUNS),
    );
    let opts = Object::new();
    Reflect::set(
        &opts,
        &JsValue::from_str("durability"),
        &JsValue::from_str(durability),
    )?;
    let f: Function = Reflect::get(db, &JsValue::from_str("transaction"))?.dyn_into()?;
    f.call3(db, &names, &JsValue::from_str("readwrite"), &opts)?
        .dyn_into()
}

/// Reads the value under `key` of the object store `store` in a readonly
/// transaction of its own; `None` when there is none.
pub async fn get(db: &IdbDatabase, store: &str, key: &JsValue) -> Result<Option<JsValue>, JsValue> {
    let tx = db.transaction_with_str(store)?;
    let req = tx.object_store(store)?.get(key)?;
    let v = request(&req).await?;
    Ok((!v.is_undefined()).then_some(v))
}

/// Opens the database `name` of the origin's default storage at `version`,
/// creating the object store `store` in `upgradeneeded` if it is missing:
/// for the small records of the browser bindings (the edge's keys), which
/// are not pages of a database.
pub async fn open_records(name: &str, version: u32, store: &str) -> Result<IdbDatabase, JsValue> {
    let req: IdbOpenDbRequest = default_factory()?.open_with_u32(name, version)?;
    let on_upgrade = {
        let req = req.clone();
        let store = store.to_string();
        Closure::<dyn FnMut(JsValue)>::new(move |_: JsValue| {
            let Ok(db) = req.result().and_then(|d| d.dyn_into::<IdbDatabase>()) else {
                return;
            };
            if !db.object_store_names().contains(&store) {
                let _ = db.create_object_store(&store);
            }
        })
    };
    req.set_onupgradeneeded(Some(on_upgrade.as_ref().unchecked_ref()));
    let outcome = request(&req).await;
    req.set_onupgradeneeded(None);
    drop(on_upgrade);
    outcome?.dyn_into::<IdbDatabase>()
}

/// Writes `value` under `key` of `store` in a readwrite transaction of its
/// own and waits for it to complete. With `only_new`, an existing record is
/// left alone and the result is `false` (`add`; `put` otherwise).
pub async fn write(
    db: &IdbDatabase,
    store: &str,
    key: &JsValue,
    value: &JsValue,
    only_new: bool,
) -> Result<bool, JsValue> {
    let tx = db.transaction_with_str_and_mode(store, web_sys::IdbTransactionMode::Readwrite)?;
    let done = Promise::new(&mut |resolve, reject| {
        tx.set_oncomplete(Some(&resolve));
        tx.set_onabort(Some(&reject));
    });
    let os = tx.object_store(store)?;
    let req = if only_new {
        os.add_with_key(value, key)?
    } else {
        os.put_with_key(value, key)?
    };
    // Joined: both set their handlers in this turn.
    let (written, completed) = futures::join!(request(&req), JsFuture::from(done));
    tx.set_oncomplete(None);
    tx.set_onabort(None);
    let exists = |e: &JsValue| {
        e.dyn_ref::<DomException>()
            .is_some_and(|d| d.name() == "ConstraintError")
    };
    match (written, completed) {
        (Ok(_), Ok(_)) => Ok(true),
        (Err(e), _) if only_new && exists(&e) => Ok(false),
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(tx.error().map(JsValue::from).unwrap_or(e)),
    }
}

/// Two `add`s of the same (out-of-range, never used) key: the second fails
/// asynchronously with a `ConstraintError`, which aborts the transaction.
pub(super) fn inject_failure(store: &IdbObjectStore) -> Result<(), JsValue> {
    let key = JsValue::from_f64(-1.0);
    let v = Uint8Array::new_with_length(1);
    store.add_with_key(&v, &key)?;
    store.add_with_key(&v, &key)?;
    Ok(())
}
