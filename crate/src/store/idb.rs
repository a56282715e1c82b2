//! The IndexedDB page store (browsers and web workers; wasm32 only).
//!
//! A database named `name` holds two object stores (schema version 1):
//!
//! - `pages`: key = page number as a JS number (page numbers stay below 2^53),
//!   value = a `Uint8Array` of [`PAGE_SIZE`] bytes;
//! - `meta`: one record, key `0`, value = the meta record as a `Uint8Array`.
//!
//! Each [`PageStore::commit`] is **one** readwrite IndexedDB transaction over
//! both object stores holding every page of the commit and the meta record. The
//! commit resolves only when that transaction's `complete` event fires, so a tab
//! killed (or a browser crashing) mid-commit leaves the previous commit intact:
//! IndexedDB applies a transaction all or nothing. Every request of a commit is
//! issued synchronously inside `commit()`, so commits are applied in call order
//! (IndexedDB runs readwrite transactions with overlapping scopes in creation
//! order) and the transaction never goes inactive between requests.
//!
//! [`Durability::Durable`] commits ask for `durability: "strict"` (the browser flushes
//! to disk before `complete`); [`Durability::Relaxed`] commits ask for `"relaxed"`.
//! Browsers that do not know the option ignore it and use their default.
//!
//! Opening, reads and deleting go through `rexie`. Commits and [`IdbStore::sync`]
//! use a second connection to the same database opened with `web-sys`, because
//! rexie does not expose the transaction options (durability) nor the abort
//! reason of a failed transaction, which is needed to tell a full quota apart
//! from other failures.
//!
//! **Data the browser threw away.** Chromium deletes an origin's whole
//! IndexedDB when it finds its LevelDB files corrupt (google/leveldb#1287: a
//! torn log tail, then a clean session, then a checksum mismatch) and reports
//! it only on the `upgradeneeded` event of the next open (`dataLoss:
//! "total"`, `dataLossMessage`). The store opens the database itself (not
//! through rexie) to read that event: [`IdbStore::open_report`] says whether
//! the database was created by this open and what the browser reported. The
//! store does not decide what to do about it; the package's JS layer compares
//! it (and its own witness outside IndexedDB) with what it expected.
//!
//! Errors: a commit refused with a `QuotaExceededError` becomes
//! [`StoreError::QuotaExceeded`]; the transaction was aborted, so nothing of that
//! commit was written. Any other failure is [`StoreError::Other`] (with the DOM
//! exception's name and message), a schema this code does not know is
//! [`StoreError::Unsupported`].

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use rexie::{ObjectStore, Rexie, TransactionMode};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    DomException, IdbDatabase, IdbFactory, IdbObjectStore, IdbOpenDbRequest, IdbRequest,
    IdbTransaction,
};

use super::{Commit, Durability, MAX_META, PAGE_SIZE, PageBuf, PageNo, PageStore, StoreError};
use crate::platform::BoxFuture;

/// Schema version of the IndexedDB database.
const VERSION: u32 = 1;
/// Object store holding the pages.
const PAGES: &str = "pages";
/// Object store holding the meta record.
const META: &str = "meta";
/// Key of the meta record in [`META`].
const META_KEY: f64 = 0.0;
/// Page numbers must be exactly representable as JS numbers.
const MAX_PAGE_NO: PageNo = (1 << 53) - 1;

/// What the browser said when [`IdbStore::open`] opened the database.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// The database did not exist: this open created it, empty
    /// (`upgradeneeded` from version 0).
    pub created: bool,
    /// `dataLoss` of the `upgradeneeded` event (`"none"` or `"total"`), when
    /// the event fired and the browser sets it.
    pub data_loss: Option<String>,
    /// `dataLossMessage` of that event (empty when none).
    pub data_loss_message: String,
}

impl OpenReport {
    /// Whether the browser reported that it threw data away (`dataLoss` other
    /// than `"none"`).
    pub fn data_lost(&self) -> bool {
        self.data_loss.as_deref().is_some_and(|d| d != "none")
    }
}

/// A page store over one IndexedDB database (see the module documentation).
///
/// Not `Send`: it holds JS objects and lives on the thread (tab or worker) that
/// opened it.
pub struct IdbStore {
    name: String,
    /// rexie's connection: opening (schema), reads.
    rexie: RefCell<Option<Rexie>>,
    /// Raw connection for commits (transaction options, abort reasons).
    raw: RefCell<Option<IdbDatabase>>,
    /// The meta record of the newest commit issued, for [`PageStore::sync`].
    last_meta: RefCell<Option<Vec<u8>>>,
    /// Test hook: make the next commit fail after this many page writes.
    fail_after: Cell<Option<usize>>,
    /// Whether a relaxed commit was issued since the last strict transaction
    /// (only then does [`PageStore::sync`] need to write anything).
    relaxed_pending: Cell<bool>,
    /// What the browser said at open.
    report: OpenReport,
}

impl std::fmt::Debug for IdbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdbStore")
            .field("name", &self.name)
            .field("closed", &self.raw.borrow().is_none())
            .finish()
    }
}

impl IdbStore {
    /// Opens (creating if needed) the IndexedDB database `name` as a page store.
    ///
    /// Fails with [`StoreError::Unsupported`] if a database of that name exists
    /// with a newer schema version or other object stores.
    pub async fn open(name: &str) -> Result<IdbStore, StoreError> {
        // The raw connection first: it creates the schema itself, so that it
        // sees the `upgradeneeded` event and the browser's `dataLoss` on it
        // (rexie's upgrade handler would swallow them). rexie then finds the
        // database at the current version and does not upgrade.
        let (raw, report) = open_schema(name)
            .await
            .map_err(|e| error_from_js("open database", &e))?;
        let rexie = match Rexie::builder(name)
            .version(VERSION)
            .add_object_store(ObjectStore::new(PAGES))
            .add_object_store(ObjectStore::new(META))
            .build()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                raw.close();
                return Err(rexie_error("open database", name, e));
            }
        };
        let stores = rexie.store_names();
        if !stores.iter().any(|s| s == PAGES) || !stores.iter().any(|s| s == META) {
            rexie.close();
            raw.close();
            return Err(StoreError::Unsupported {
                file: name.to_string(),
                reason: format!(
                    "IndexedDB database has object stores {stores:?}, expected pages and meta"
                ),
            });
        }
        Ok(IdbStore {
            name: name.to_string(),
            rexie: RefCell::new(Some(rexie)),
            raw: RefCell::new(Some(raw)),
            last_meta: RefCell::new(None),
            relaxed_pending: Cell::new(false),
            fail_after: Cell::new(None),
            report,
        })
    }

    /// What the browser said when this store opened the database: whether it
    /// was created empty by this open, and the `dataLoss` the browser reported
    /// (see the module documentation).
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// The IndexedDB database name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deletes the IndexedDB database `name` and everything in it. Close every
    /// store open on it first: deletion waits until all connections (in every
    /// tab) are closed.
    pub async fn destroy(name: &str) -> Result<(), StoreError> {
        Rexie::delete(name)
            .await
            .map_err(|e| rexie_error("delete database", name, e))
    }

    /// Asks the browser to keep this origin's storage under pressure
    /// (`navigator.storage.persist()`). Returns whether storage is persistent.
    /// Browsers may refuse, or grant it only to installed or bookmarked sites.
    pub async fn request_persistence() -> Result<bool, StoreError> {
        let op = "navigator.storage.persist()";
        let navigator = Reflect::get(&js_sys::global(), &JsValue::from_str("navigator"))
            .map_err(|e| error_from_js(op, &e))?;
        let storage = Reflect::get(&navigator, &JsValue::from_str("storage"))
            .map_err(|e| error_from_js(op, &e))?;
        let storage: web_sys::StorageManager = storage
            .dyn_into()
            .map_err(|_| StoreError::Other(format!("{op}: the Storage API is not available")))?;
        let granted = JsFuture::from(storage.persist().map_err(|e| error_from_js(op, &e))?)
            .await
            .map_err(|e| error_from_js(op, &e))?;
        Ok(granted.as_bool().unwrap_or(false))
    }

    /// Fault injection for tests: the next commit issues `pages` page writes
    /// inside its transaction, then a request that fails, so the transaction
    /// aborts after real writes. The commit must fail and leave the store as it
    /// was. Not for production use.
    #[doc(hidden)]
    pub fn fail_next_commit_after(&self, pages: usize) {
        self.fail_after.set(Some(pages));
    }

    fn raw(&self) -> Result<IdbDatabase, StoreError> {
        self.raw.borrow().clone().ok_or(StoreError::Closed)
    }

    /// Issues one readwrite transaction writing `pages` and `meta`, every request
    /// issued and the completion handlers set before it returns.
    fn issue(
        &self,
        pages: &[(PageNo, PageBuf)],
        meta: &[u8],
        durability: &str,
    ) -> Result<Pending, StoreError> {
        let op = "commit";
        let db = self.raw()?;
        let tx = rw_transaction(&db, durability).map_err(|e| error_from_js(op, &e))?;
        // Set the handlers now: the transaction may complete before the caller
        // first polls the returned future.
        let done = Promise::new(&mut |resolve, reject| {
            tx.set_oncomplete(Some(&resolve));
            tx.set_onabort(Some(&reject));
        });
        let issue_all = || -> Result<(), JsValue> {
            let pages_store = tx.object_store(PAGES)?;
            let meta_store = tx.object_store(META)?;
            let fail_after = self.fail_after.take();
            for (i, (no, buf)) in pages.iter().enumerate() {
                if fail_after == Some(i) {
                    inject_failure(&pages_store)?;
                }
                pages_store.put_with_key(
                    &Uint8Array::new_from_slice(buf),
                    &JsValue::from_f64(*no as f64),
                )?;
            }
            if fail_after.is_some_and(|n| n >= pages.len()) {
                inject_failure(&pages_store)?;
            }
            meta_store.put_with_key(
                &Uint8Array::new_from_slice(meta),
                &JsValue::from_f64(META_KEY),
            )?;
            Ok(())
        };
        if let Err(e) = issue_all() {
            // Nothing is applied: abort whatever was issued.
            let _ = tx.abort();
            return Err(error_from_js(op, &e));
        }
        *self.last_meta.borrow_mut() = Some(meta.to_vec());
        Ok(Pending { tx, done })
    }
}

/// An issued readwrite transaction and the promise of its outcome.
struct Pending {
    tx: IdbTransaction,
    /// Resolves on `complete`, rejects on `abort`.
    done: Promise,
}

impl Pending {
    /// Resolves when the transaction completes; maps an abort to its reason.
    async fn wait(self, op: &str) -> Result<(), StoreError> {
        let outcome = JsFuture::from(self.done).await;
        self.tx.set_oncomplete(None);
        self.tx.set_onabort(None);
        match outcome {
            Ok(_) => Ok(()),
            Err(_) => match self.tx.error() {
                Some(d) => Err(dom_error(op, &d.name(), &d.message())),
                None => Err(StoreError::Other(format!(
                    "{op}: the IndexedDB transaction was aborted"
                ))),
            },
        }
    }
}

impl Drop for IdbStore {
    fn drop(&mut self) {
        // Release the connections at once (not at garbage collection), so that
        // `destroy` and schema upgrades are not blocked by a dropped store.
        if let Some(db) = self.raw.get_mut().take() {
            db.close();
        }
        if let Some(db) = self.rexie.get_mut().take() {
            db.close();
        }
    }
}

impl PageStore for IdbStore {
    fn read_page(&self, no: PageNo) -> BoxFuture<'_, Result<PageBuf, StoreError>> {
        Box::pin(async move {
            let op = "read page";
            // Create the transaction and issue the request in the same poll, so
            // the transaction is still active.
            let tx = {
                let g = self.rexie.borrow();
                let db = g.as_ref().ok_or(StoreError::Closed)?;
                db.transaction(&[PAGES], TransactionMode::ReadOnly)
                    .map_err(|e| rexie_error(op, &self.name, e))?
            };
            let store = tx
                .store(PAGES)
                .map_err(|e| rexie_error(op, &self.name, e))?;
            let value = store
                .get(JsValue::from_f64(no as f64))
                .await
                .map_err(|e| rexie_error(op, &self.name, e))?;
            match value {
                Some(v) if !v.is_undefined() => {
                    let bytes =
                        bytes_of(&v).ok_or_else(|| corrupt(&self.name, no, "not a byte array"))?;
                    if bytes.len() != PAGE_SIZE {
                        return Err(corrupt(
                            &self.name,
                            no,
                            &format!("page of {} bytes, expected {PAGE_SIZE}", bytes.len()),
                        ));
                    }
                    Ok(PageBuf::new(bytes))
                }
                _ => Err(StoreError::PageNotFound(no)),
            }
        })
    }

    fn read_meta(&self) -> BoxFuture<'_, Result<Option<Vec<u8>>, StoreError>> {
        Box::pin(async move {
            let op = "read meta";
            let tx = {
                let g = self.rexie.borrow();
                let db = g.as_ref().ok_or(StoreError::Closed)?;
                db.transaction(&[META], TransactionMode::ReadOnly)
                    .map_err(|e| rexie_error(op, &self.name, e))?
            };
            let store = tx.store(META).map_err(|e| rexie_error(op, &self.name, e))?;
            let value = store
                .get(JsValue::from_f64(META_KEY))
                .await
                .map_err(|e| rexie_error(op, &self.name, e))?;
            match value {
                Some(v) if !v.is_undefined() => {
                    let bytes = bytes_of(&v).ok_or_else(|| StoreError::Corrupt {
                        file: format!("{}/{META}", self.name),
                        page: None,
                        offset: 0,
                        reason: "meta record is not a byte array".into(),
                    })?;
                    if bytes.len() > MAX_META {
                        return Err(StoreError::Corrupt {
                            file: format!("{}/{META}", self.name),
                            page: None,
                            offset: 0,
                            reason: format!("meta record of {} bytes", bytes.len()),
                        });
                    }
                    *self.last_meta.borrow_mut() = Some(bytes.clone());
                    Ok(Some(bytes))
                }
                _ => Ok(None),
            }
        })
    }

    fn commit(&self, commit: Commit) -> BoxFuture<'_, Result<(), StoreError>> {
        // Everything up to issuing the requests happens now, in call order.
        let issued = super::validate_commit(&commit)
            .and_then(
                |()| match commit.pages.iter().find(|(no, _)| *no > MAX_PAGE_NO) {
                    Some((no, _)) => Err(StoreError::InvalidCommit(format!(
                        "page number {no} is not below 2^53"
                    ))),
                    None => Ok(()),
                },
            )
            .and_then(|()| {
                let durability = match commit.durability {
                    Durability::Durable => "strict",
                    Durability::Relaxed => "relaxed",
                };
                self.relaxed_pending
                    .set(commit.durability == Durability::Relaxed);
                self.issue(&commit.pages, &commit.meta, durability)
            });
        Box::pin(async move { issued?.wait("commit").await })
    }

    fn sync(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        // A strict transaction rewriting the newest meta record: it runs after
        // every commit issued before it (same scope), and the browser flushes
        // before it completes, which covers earlier relaxed commits too.
        // With no relaxed commit since the last strict one there is nothing to
        // flush: a durable commit resolves only once its strict transaction has
        // completed. Writing nothing also keeps `sync` (and `close`) working
        // when the origin's quota is full.
        if !self.relaxed_pending.get() {
            let r = self.raw().map(|_| ());
            return Box::pin(async move { r });
        }
        let issued = match self.raw() {
            Err(e) => Err(e),
            Ok(_) => {
                let meta = self.last_meta.borrow().clone();
                match meta {
                    Some(m) => self.issue(&[], &m, "strict").map(Some),
                    None => Ok(None),
                }
            }
        };
        Box::pin(async move {
            match issued? {
                Some(p) => {
                    p.wait("sync").await?;
                    Ok(())
                }
                None => Ok(()),
            }
        })
    }

    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        // IndexedDB lets transactions already issued complete after close().
        if let Some(db) = self.raw.borrow_mut().take() {
            db.close();
        }
        if let Some(db) = self.rexie.borrow_mut().take() {
            db.close();
        }
        Box::pin(async { Ok(()) })
    }
}

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
    StoreError::Other(format!("{op}: {value:?}"))
}

fn dom_error(op: &str, name: &str, message: &str) -> StoreError {
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

fn rexie_error(op: &str, name: &str, e: rexie::Error) -> StoreError {
    // rexie's own Display is just "idb error": the detail is in the inner error.
    let detail = match &e {
        rexie::Error::IdbError(inner) => inner.to_string(),
        other => other.to_string(),
    };
    if detail.contains("QuotaExceededError") {
        StoreError::QuotaExceeded(format!("{op} on {name}: {detail}"))
    } else if detail.contains("VersionError") {
        StoreError::Unsupported {
            file: name.to_string(),
            reason: format!("{op}: {detail}"),
        }
    } else {
        StoreError::Other(format!("{op} on IndexedDB database {name}: {detail}"))
    }
}

fn corrupt(name: &str, no: PageNo, reason: &str) -> StoreError {
    StoreError::Corrupt {
        file: format!("{name}/{PAGES}"),
        page: Some(no),
        offset: 0,
        reason: reason.to_string(),
    }
}

fn bytes_of(v: &JsValue) -> Option<Vec<u8>> {
    if let Some(a) = v.dyn_ref::<Uint8Array>() {
        return Some(a.to_vec());
    }
    v.dyn_ref::<js_sys::ArrayBuffer>()
        .map(|b| Uint8Array::new(b).to_vec())
}

/// The `indexedDB` factory of the current global (window or worker).
fn factory() -> Result<IdbFactory, JsValue> {
    let f = Reflect::get(&js_sys::global(), &JsValue::from_str("indexedDB"))?;
    f.dyn_into::<IdbFactory>()
        .map_err(|_| JsValue::from_str("IndexedDB is not available in this context"))
}

/// Waits for an IndexedDB request; resolves with its result or its error.
async fn request(req: &IdbRequest) -> Result<JsValue, JsValue> {
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

/// Opens the database at [`VERSION`], creating the object stores in
/// `upgradeneeded` if it is new, and reports what that event said.
async fn open_schema(name: &str) -> Result<(IdbDatabase, OpenReport), JsValue> {
    let req: IdbOpenDbRequest = factory()?.open_with_u32(name, VERSION)?;
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

/// In `upgradeneeded`: creates [`PAGES`] and [`META`] where missing.
fn create_stores(req: &IdbOpenDbRequest) -> Result<(), JsValue> {
    let db: IdbDatabase = req.result()?.dyn_into()?;
    let names = Reflect::get(&db, &JsValue::from_str("objectStoreNames"))?;
    let contains: Function = Reflect::get(&names, &JsValue::from_str("contains"))?.dyn_into()?;
    for store in [PAGES, META] {
        if !contains
            .call1(&names, &JsValue::from_str(store))?
            .is_truthy()
        {
            db.create_object_store(store)?;
        }
    }
    Ok(())
}

/// `db.transaction(["pages", "meta"], "readwrite", { durability })`, called
/// through JS so that the durability option needs no unstable web-sys API.
fn rw_transaction(db: &IdbDatabase, durability: &str) -> Result<IdbTransaction, JsValue> {
    let names = Array::of2(&JsValue::from_str(PAGES), &JsValue::from_str(META));
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

/// Two `add`s of the same (out-of-range, never used) key: the second fails
/// asynchronously with a `ConstraintError`, which aborts the transaction.
fn inject_failure(store: &IdbObjectStore) -> Result<(), JsValue> {
    let key = JsValue::from_f64(-1.0);
    let v = Uint8Array::new_with_length(1);
    store.add_with_key(&v, &key)?;
    store.add_with_key(&v, &key)?;
    Ok(())
}
