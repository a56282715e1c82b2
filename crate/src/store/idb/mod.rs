//! The IndexedDB page store (browsers and web workers; wasm32 only).
//!
//! A database named `name` holds two object stores (schema version 1):
//!
//! - `pages`: key = page number as a JS number (page numbers stay below 2^53),
//!   value = a `Uint8Array` of [`PAGE_SIZE`] bytes;
//! - `meta`: one record, key `0`, value = the meta record as a `Uint8Array`.
//!
//! **Where.** Where the browser has storage buckets (Chromium), the database
//! lives in a bucket of its own, one per generation; a purge moves it into the
//! next generation and deletes the previous bucket, so that no byte of the
//! purged documents stays in the browser's files ([`place`], and
//! [`PageStore::erase_residue`] below). Elsewhere, and for a database made
//! before buckets were used until its first purge, it lives in the origin's
//! default storage.
//!
//! Each [`PageStore::commit`] is **one** readwrite IndexedDB transaction over
//! both object stores holding every page of the commit and the meta record. The
//! commit resolves only when that transaction's `complete` event fires, so a tab
//! killed (or a browser crashing) mid-commit leaves the previous commit intact:
//! IndexedDB applies a transaction all or nothing. Every request of a commit is
//! issued synchronously inside `commit()`, so commits are applied in call order
//! (IndexedDB runs readwrite transactions with overlapping scopes in creation
//! order) and the transaction never goes inactive between requests. While the
//! store moves to another generation, commits are held and issued, in call
//! order, to the new one.
//!
//! [`Durability::Durable`] commits ask for `durability: "strict"` (the browser flushes
//! to disk before `complete`); [`Durability::Relaxed`] commits ask for `"relaxed"`.
//! Browsers that do not know the option ignore it and use their default.
//!
//! Everything goes through `web-sys` (module `js`): rexie can neither open a
//! database in a storage bucket nor pass the transaction options
//! (durability), nor report the abort reason of a failed transaction, which is
//! needed to tell a full quota apart from other failures.
//!
//! **Another tab moved the database.** A purge in one tab deletes the bucket
//! other tabs have open; the browser closes their connections. Such a store
//! finds the new generation at its next [`PageStore::read_meta`] (every
//! operation of the JS package starts with one, under the cross-tab lock).
//!
//! **Data the browser threw away.** Chromium deletes an origin's whole
//! IndexedDB when it finds its LevelDB files corrupt (google/leveldb#1287: a
//! torn log tail, then a clean session, then a checksum mismatch) and reports
//! it only on the `upgradeneeded` event of the next open (`dataLoss:
//! "total"`, `dataLossMessage`). The store opens the database itself to read
//! that event: [`IdbStore::open_report`] says whether the database was created
//! by this open and what the browser reported. The store does not decide what
//! to do about it; the package's JS layer compares it (and its own witness
//! outside IndexedDB) with what it expected.
//!
//! Errors: a commit refused with a `QuotaExceededError` becomes
//! [`StoreError::QuotaExceeded`]; the transaction was aborted, so nothing of that
//! commit was written. Any other failure is [`StoreError::Other`] (with the DOM
//! exception's name and message), a schema this code does not know is
//! [`StoreError::Unsupported`].

mod js;
mod place;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use futures::channel::oneshot;
use js_sys::{Array, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{DomException, IdbDatabase, IdbKeyRange, IdbTransaction};

use js::{bytes_of, corrupt, dom_error, inject_failure, rw_transaction};
pub use js::{error_from_js, get, open_records, write};
use place::Place;

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
/// Pages per transaction when a purge copies the database into the next
/// generation (1 MiB of pages).
const COPY_BATCH: u32 = 256;

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

/// One open connection, and where its database lives.
struct Conn {
    db: IdbDatabase,
    place: Place,
    /// The `StorageBucket` the connection was opened through, kept alive
    /// with it: Chromium stalls the connection's requests once that object
    /// is garbage-collected (see `place::factory`).
    _bucket: Option<Object>,
    /// Set when the browser closed the connection (its bucket deleted by a
    /// purge in another tab) or asked it to close (`versionchange`: the
    /// database is being deleted or upgraded elsewhere).
    lost: Rc<Cell<bool>>,
    _on_close: Closure<dyn FnMut(JsValue)>,
}

impl Conn {
    fn new(db: IdbDatabase, place: Place, bucket: Option<Object>) -> Conn {
        let lost = Rc::new(Cell::new(false));
        let on_close = {
            let lost = lost.clone();
            let db = db.clone();
            Closure::<dyn FnMut(JsValue)>::new(move |_| {
                lost.set(true);
                db.close();
            })
        };
        db.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        db.set_onversionchange(Some(on_close.as_ref().unchecked_ref()));
        Conn {
            db,
            place,
            _bucket: bucket,
            lost,
            _on_close: on_close,
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Release the connection at once (not at garbage collection), so that
        // deletions and schema upgrades are not blocked by a dropped store.
        self.db.set_onclose(None);
        self.db.set_onversionchange(None);
        self.db.close();
    }
}

/// A commit held while the store moves to another generation.
struct Held {
    pages: Vec<(PageNo, PageBuf)>,
    meta: Vec<u8>,
    durability: &'static str,
    issued: oneshot::Sender<Result<Pending, StoreError>>,
}

/// A page store over one IndexedDB database (see the module documentation).
///
/// Not `Send`: it holds JS objects and lives on the thread (tab or worker) that
/// opened it.
pub struct IdbStore {
    name: String,
    /// `navigator.storageBuckets`, where the browser has it.
    buckets: Option<Object>,
    /// The connection; `None` once closed.
    conn: RefCell<Option<Conn>>,
    /// The meta record of the newest commit issued, for [`PageStore::sync`].
    last_meta: RefCell<Option<Vec<u8>>>,
    /// Test hook: make the next commit fail after this many page writes.
    fail_after: Cell<Option<usize>>,
    /// Whether a relaxed commit was issued since the last strict transaction
    /// (only then does [`PageStore::sync`] need to write anything).
    relaxed_pending: Cell<bool>,
    /// Commits issued while the database moves to another generation, in
    /// call order; `None` when it is not moving.
    held: RefCell<Option<Vec<Held>>>,
    /// An erasure was asked for while one was running: run it again.
    erase_again: Cell<bool>,
    /// What the browser said at open.
    report: OpenReport,
}

impl std::fmt::Debug for IdbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let conn = self.conn.borrow();
        f.debug_struct("IdbStore")
            .field("name", &self.name)
            .field("place", &conn.as_ref().map(|c| c.place))
            .finish()
    }
}

/// Opens the database `name` in `place` with its schema.
async fn open_conn(
    m: Option<&Object>,
    name: &str,
    place: Place,
) -> Result<(Conn, OpenReport), StoreError> {
    let (factory, bucket) = place::factory(m, name, place)
        .await
        .map_err(|e| error_from_js("open storage bucket", &e))?;
    let (db, report) = js::open_schema(&factory, name)
        .await
        .map_err(|e| error_from_js("open database", &e))?;
    match js::has_schema(&db) {
        Ok(true) => Ok((Conn::new(db, place, bucket), report)),
        other => {
            db.close();
            Err(StoreError::Unsupported {
                file: name.to_string(),
                reason: match other {
                    Err(e) => format!("{:?}", error_from_js("read the schema", &e)),
                    Ok(_) => "the IndexedDB database lacks the object stores pages and meta".into(),
                },
            })
        }
    }
}

/// Whether the database of `conn` has a meta record (a generation is
/// complete once it has).
async fn has_meta(conn: &Conn) -> Result<bool, StoreError> {
    js::get(&conn.db, META, &META_KEY.into())
        .await
        .map(|v| v.is_some())
        .map_err(|e| error_from_js("read meta", &e))
}

/// Finds and opens the database `name`: the newest complete generation of its
/// buckets (deleting incomplete newer and superseded older ones), else its
/// database in the default storage if it has one there, else (`create`) a
/// new generation 1 (or the default storage, without buckets).
async fn locate(
    m: Option<&Object>,
    name: &str,
    create: bool,
) -> Result<(Conn, OpenReport), StoreError> {
    let Some(m) = m else {
        return open_conn(None, name, Place::Default).await;
    };
    let bucket_err = |e: JsValue| error_from_js("list storage buckets", &e);
    let gens = place::generations(m, name).await.map_err(bucket_err)?;
    let Some(&oldest) = gens.first() else {
        let legacy = place::in_default_storage(name).await.map_err(bucket_err)?;
        if !legacy && !create {
            return Err(StoreError::Other(format!(
                "the IndexedDB database {name} was deleted while open (Outpost.destroy in \
                 another tab?): close this handle"
            )));
        }
        let place = if legacy {
            Place::Default
        } else {
            Place::Bucket(1)
        };
        return open_conn(Some(m), name, place).await;
    };
    let mut chosen = None;
    for &g in gens.iter().rev() {
        let (conn, report) = open_conn(Some(m), name, Place::Bucket(g)).await?;
        if g == oldest || has_meta(&conn).await? {
            chosen = Some((conn, report));
            break;
        }
        // A copy cut short: its meta record is written last.
        drop(conn);
        place::delete(Some(m), name, Place::Bucket(g))
            .await
            .map_err(|e| error_from_js("delete an incomplete generation", &e))?;
    }
    let (conn, report) = chosen.expect("the oldest generation is always chosen");
    let Place::Bucket(current) = conn.place else {
        unreachable!("a bucket was opened")
    };
    for &g in gens.iter().filter(|&&g| g < current) {
        // A copy completed, the deletion of its source cut short.
        place::delete(Some(m), name, Place::Bucket(g))
            .await
            .map_err(|e| error_from_js("delete a superseded generation", &e))?;
    }
    if current == 1 && place::in_default_storage(name).await.map_err(bucket_err)? {
        // Moved out of the default storage, its deletion cut short.
        place::delete(None, name, Place::Default)
            .await
            .map_err(|e| error_from_js("delete the database moved into a bucket", &e))?;
    }
    Ok((conn, report))
}

impl IdbStore {
    /// Opens (creating if needed) the IndexedDB database `name` as a page store
    /// (in its storage bucket where the browser has them, see the module
    /// documentation).
    ///
    /// Fails with [`StoreError::Unsupported`] if a database of that name exists
    /// with a newer schema version or other object stores.
    pub async fn open(name: &str) -> Result<IdbStore, StoreError> {
        let buckets = place::manager();
        let (conn, report) = locate(buckets.as_ref(), name, true).await?;
        Ok(IdbStore {
            name: name.to_string(),
            buckets,
            conn: RefCell::new(Some(conn)),
            last_meta: RefCell::new(None),
            relaxed_pending: Cell::new(false),
            fail_after: Cell::new(None),
            held: RefCell::new(None),
            erase_again: Cell::new(false),
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

    /// The storage bucket the database lives in now (`None`: the origin's
    /// default storage, or closed).
    pub fn bucket(&self) -> Option<String> {
        match self.conn.borrow().as_ref()?.place {
            Place::Bucket(g) => Some(place::bucket_name(&self.name, g)),
            Place::Default => None,
        }
    }

    /// Deletes the database `name` and everything in it: every storage
    /// bucket of it, and its database in the default storage. Close every
    /// store open on it first: deleting from the default storage waits until
    /// all connections (in every tab) are closed.
    pub async fn destroy(name: &str) -> Result<(), StoreError> {
        let m = place::manager();
        if let Some(m) = &m {
            let gens = place::generations(m, name)
                .await
                .map_err(|e| error_from_js("list storage buckets", &e))?;
            for g in gens {
                place::delete(Some(m), name, Place::Bucket(g))
                    .await
                    .map_err(|e| error_from_js("delete storage bucket", &e))?;
            }
        }
        place::delete(None, name, Place::Default)
            .await
            .map_err(|e| error_from_js("delete database", &e))
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

    /// Test hook: writes generation `g` of this database as an interrupted
    /// move leaves it: a complete copy (`complete`, its source not deleted)
    /// or a copy cut short (one page, no meta record). Only with the
    /// `testing` feature.
    #[cfg(any(test, feature = "testing"))]
    #[doc(hidden)]
    pub async fn testing_write_generation(&self, g: u64, complete: bool) -> Result<(), StoreError> {
        let m = self
            .buckets
            .clone()
            .ok_or_else(|| StoreError::Other("no storage buckets in this browser".into()))?;
        if complete {
            self.copy_to(&m, &self.db()?, Place::Bucket(g)).await?;
            return Ok(());
        }
        let (conn, _) = open_conn(Some(&m), &self.name, Place::Bucket(g)).await?;
        let pending = Pending::of(
            rw_transaction(&conn.db, "strict").map_err(|e| error_from_js("write", &e))?,
        );
        pending
            .tx
            .object_store(PAGES)
            .and_then(|s| {
                s.put_with_key(
                    &Uint8Array::new_with_length(PAGE_SIZE as u32),
                    &JsValue::from_f64(1.0),
                )
            })
            .map_err(|e| error_from_js("write", &e))?;
        pending.wait("write").await
    }

    fn db(&self) -> Result<IdbDatabase, StoreError> {
        match self.conn.borrow().as_ref() {
            Some(c) => Ok(c.db.clone()),
            None => Err(StoreError::Closed),
        }
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
        let db = self.db()?;
        let tx = rw_transaction(&db, durability).map_err(|e| error_from_js(op, &e))?;
        // Set the handlers now: the transaction may complete before the caller
        // first polls the returned future.
        let pending = Pending::of(tx);
        let tx = &pending.tx;
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
        Ok(pending)
    }

    /// Issues a transaction now, or holds it while the database moves to
    /// another generation; resolves when it completed.
    fn submit(
        &self,
        pages: Vec<(PageNo, PageBuf)>,
        meta: Vec<u8>,
        durability: &'static str,
        op: &'static str,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut held = self.held.borrow_mut();
        if let Some(queue) = held.as_mut() {
            let (issued, rx) = oneshot::channel();
            *self.last_meta.borrow_mut() = Some(meta.clone());
            queue.push(Held {
                pages,
                meta,
                durability,
                issued,
            });
            return Box::pin(async move {
                let pending = rx.await.map_err(|_| StoreError::Closed)??;
                pending.wait(op).await
            });
        }
        drop(held);
        let issued = self.issue(&pages, &meta, durability);
        Box::pin(async move { issued?.wait(op).await })
    }

    /// Issues the held transactions, in call order, on the current
    /// connection; further ones are issued at once.
    fn release_held(&self) {
        let queue = self.held.borrow_mut().take().unwrap_or_default();
        for h in queue {
            let r = self.issue(&h.pages, &h.meta, h.durability);
            let _ = h.issued.send(r);
        }
    }

    /// Reads `key` of `store`. A connection the browser closed (another tab
    /// moved the database, see the module documentation) is replaced first,
    /// when `reconnect`.
    async fn get(
        &self,
        op: &str,
        store: &str,
        key: f64,
        reconnect: bool,
    ) -> Result<Option<JsValue>, StoreError> {
        if reconnect && self.is_lost() {
            self.reconnect().await?;
        }
        let db = self.db()?;
        let key = JsValue::from_f64(key);
        match js::get(&db, store, &key).await {
            Ok(v) => Ok(v),
            Err(e) if reconnect && is_closed(&e) => {
                self.reconnect().await?;
                js::get(&self.db()?, store, &key)
                    .await
                    .map_err(|e| error_from_js(op, &e))
            }
            Err(e) => Err(error_from_js(op, &e)),
        }
    }

    fn is_lost(&self) -> bool {
        self.conn.borrow().as_ref().is_some_and(|c| c.lost.get())
    }

    /// Opens the database where it lives now.
    async fn reconnect(&self) -> Result<(), StoreError> {
        if self.held.borrow().is_some() {
            return Err(StoreError::Other(
                "the database is moving to another storage bucket".into(),
            ));
        }
        // Never a new, empty database in place of one deleted meanwhile.
        let (conn, _) = locate(self.buckets.as_ref(), &self.name, false).await?;
        let mut slot = self.conn.borrow_mut();
        if slot.is_none() {
            return Err(StoreError::Closed);
        }
        *slot = Some(conn);
        Ok(())
    }

    /// Copies the database into generation `next` (pages in batches, the
    /// meta record last): the new connection, or `None` when nothing was
    /// ever committed.
    async fn copy_to(
        &self,
        m: &Object,
        from: &IdbDatabase,
        next: Place,
    ) -> Result<Option<Conn>, StoreError> {
        let op = "copy into the next storage bucket";
        let err = |e: JsValue| error_from_js(op, &e);
        let Some(meta) = js::get(from, META, &META_KEY.into()).await.map_err(err)? else {
            return Ok(None);
        };
        let (conn, _) = open_conn(Some(m), &self.name, next).await?;
        // Leftovers of an earlier attempt, if any.
        let tx = rw_transaction(&conn.db, "relaxed").map_err(err)?;
        let pending = Pending::of(tx);
        (|| -> Result<(), JsValue> {
            pending.tx.object_store(PAGES)?.clear()?;
            pending.tx.object_store(META)?.clear()?;
            Ok(())
        })()
        .map_err(err)?;
        pending.wait(op).await?;
        let mut lo = 0.0;
        loop {
            let tx = from.transaction_with_str(PAGES).map_err(err)?;
            let store = tx.object_store(PAGES).map_err(err)?;
            let range = IdbKeyRange::lower_bound(&JsValue::from_f64(lo)).map_err(err)?;
            let kr = store
                .get_all_keys_with_key_and_limit(&range, COPY_BATCH)
                .map_err(err)?;
            let vr = store
                .get_all_with_key_and_limit(&range, COPY_BATCH)
                .map_err(err)?;
            // Joined: both futures set their handlers in this turn.
            let (keys, values) = futures::join!(js::request(&kr), js::request(&vr));
            let keys: Array = keys.map_err(err)?.unchecked_into();
            let values: Array = values.map_err(err)?.unchecked_into();
            let n = keys.length();
            if n == 0 || values.length() != n {
                break;
            }
            let pending = Pending::of(rw_transaction(&conn.db, "relaxed").map_err(err)?);
            (|| -> Result<(), JsValue> {
                let pages = pending.tx.object_store(PAGES)?;
                for i in 0..n {
                    pages.put_with_key(&values.get(i), &keys.get(i))?;
                }
                Ok(())
            })()
            .map_err(err)?;
            pending.wait(op).await?;
            let Some(last) = keys.get(n - 1).as_f64() else {
                break;
            };
            if n < COPY_BATCH {
                break;
            }
            lo = last + 1.0;
        }
        // The meta record last, strict (the browser flushes everything before
        // it): the generation is complete once it is there.
        let pending = Pending::of(rw_transaction(&conn.db, "strict").map_err(err)?);
        pending
            .tx
            .object_store(META)
            .and_then(|s| s.put_with_key(&meta, &JsValue::from_f64(META_KEY)))
            .map_err(err)?;
        pending.wait(op).await?;
        Ok(Some(conn))
    }

    /// Moves the database into the next generation's bucket and deletes the
    /// previous one (see [`PageStore::erase_residue`]).
    async fn move_to_next_generation(&self, m: &Object) -> Result<(), StoreError> {
        let (from, place) = {
            let g = self.conn.borrow();
            let c = g.as_ref().ok_or(StoreError::Closed)?;
            (c.db.clone(), c.place)
        };
        let next = Place::Bucket(match place {
            Place::Default => 1,
            Place::Bucket(g) => g + 1,
        });
        *self.held.borrow_mut() = Some(Vec::new());
        let conn = match self.copy_to(m, &from, next).await {
            Ok(Some(conn)) => conn,
            Ok(None) => {
                self.release_held();
                return Ok(());
            }
            Err(e) => {
                self.release_held();
                let _ = place::delete(Some(m), &self.name, next).await;
                return Err(e);
            }
        };
        let old = self.conn.borrow_mut().replace(conn);
        if old.is_none() {
            // Closed meanwhile: keep it closed (held commits fail `Closed`).
            *self.conn.borrow_mut() = None;
        }
        self.release_held();
        if let Some(old) = old {
            // Let what was issued on the old connection finish (a readwrite
            // transaction over both stores starts after every earlier one)
            // before its storage goes.
            let op = "finish the previous generation";
            let barrier = rw_transaction(&from, "relaxed").map_err(|e| error_from_js(op, &e))?;
            Pending::of(barrier).wait(op).await?;
            drop(old);
        }
        let op = "delete the previous storage";
        place::delete(Some(m), &self.name, place)
            .await
            .map_err(|e| error_from_js(op, &e))?;
        let Place::Bucket(now) = next else {
            unreachable!()
        };
        for g in place::generations(m, &self.name)
            .await
            .map_err(|e| error_from_js(op, &e))?
        {
            if g != now {
                place::delete(Some(m), &self.name, Place::Bucket(g))
                    .await
                    .map_err(|e| error_from_js(op, &e))?;
            }
        }
        Ok(())
    }
}

/// Whether a failed request or transaction means the connection is closed
/// (`InvalidStateError`: the browser closed it).
fn is_closed(e: &JsValue) -> bool {
    e.dyn_ref::<DomException>()
        .is_some_and(|d| d.name() == "InvalidStateError")
}

/// An issued readwrite transaction and the promise of its outcome.
struct Pending {
    tx: IdbTransaction,
    /// Resolves on `complete`, rejects on `abort`.
    done: Promise,
}

impl Pending {
    /// Sets the completion handlers of `tx` (do it before anything awaits).
    fn of(tx: IdbTransaction) -> Pending {
        let done = Promise::new(&mut |resolve, reject| {
            tx.set_oncomplete(Some(&resolve));
            tx.set_onabort(Some(&reject));
        });
        Pending { tx, done }
    }

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

impl PageStore for IdbStore {
    fn read_page(&self, no: PageNo) -> BoxFuture<'_, Result<PageBuf, StoreError>> {
        Box::pin(async move {
            match self.get("read page", PAGES, no as f64, false).await? {
                Some(v) => {
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
                None => Err(StoreError::PageNotFound(no)),
            }
        })
    }

    fn read_meta(&self) -> BoxFuture<'_, Result<Option<Vec<u8>>, StoreError>> {
        Box::pin(async move {
            let Some(v) = self.get("read meta", META, META_KEY, true).await? else {
                return Ok(None);
            };
            let corrupt = |reason: String| StoreError::Corrupt {
                file: format!("{}/{META}", self.name),
                page: None,
                offset: 0,
                reason,
            };
            let bytes =
                bytes_of(&v).ok_or_else(|| corrupt("meta record is not a byte array".into()))?;
            if bytes.len() > MAX_META {
                return Err(corrupt(format!("meta record of {} bytes", bytes.len())));
            }
            *self.last_meta.borrow_mut() = Some(bytes.clone());
            Ok(Some(bytes))
        })
    }

    fn commit(&self, commit: Commit) -> BoxFuture<'_, Result<(), StoreError>> {
        // Everything up to issuing the requests happens now, in call order.
        let valid = super::validate_commit(&commit).and_then(|()| {
            match commit.pages.iter().find(|(no, _)| *no > MAX_PAGE_NO) {
                Some((no, _)) => Err(StoreError::InvalidCommit(format!(
                    "page number {no} is not below 2^53"
                ))),
                None => Ok(()),
            }
        });
        if let Err(e) = valid {
            return Box::pin(async move { Err(e) });
        }
        let durability = match commit.durability {
            Durability::Durable => "strict",
            Durability::Relaxed => "relaxed",
        };
        self.relaxed_pending
            .set(commit.durability == Durability::Relaxed);
        self.submit(commit.pages, commit.meta, durability, "commit")
    }

    fn sync(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        // A strict transaction rewriting the newest meta record: it runs after
        // every commit issued before it (same scope), and the browser flushes
        // before it completes, which covers earlier relaxed commits too.
        // With no relaxed commit since the last strict one there is nothing to
        // flush: a durable commit resolves only once its strict transaction has
        // completed. Writing nothing also keeps `sync` (and `close`) working
        // when the origin's quota is full.
        if let Err(e) = self.db() {
            return Box::pin(async move { Err(e) });
        }
        if !self.relaxed_pending.get() {
            return Box::pin(async { Ok(()) });
        }
        let meta = self.last_meta.borrow().clone();
        match meta {
            Some(m) => self.submit(Vec::new(), m, "strict", "sync"),
            None => Box::pin(async { Ok(()) }),
        }
    }

    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        // IndexedDB lets transactions already issued complete after close().
        self.conn.borrow_mut().take();
        Box::pin(async { Ok(()) })
    }

    /// Where the browser has storage buckets: copies the live pages into the
    /// next generation's bucket and deletes the previous one, whose files
    /// hold every overwritten page image (see the module documentation of
    /// [`place`]). Commits issued meanwhile are held and go to the new
    /// generation. Elsewhere: nothing (the browser's storage engine is beyond
    /// the page's reach).
    fn erase_residue(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let Some(m) = self.buckets.clone() else {
                return Ok(());
            };
            if self.held.borrow().is_some() {
                // One is running: it goes round again when it is done.
                self.erase_again.set(true);
                return Ok(());
            }
            loop {
                self.move_to_next_generation(&m).await?;
                if !self.erase_again.take() {
                    return Ok(());
                }
            }
        })
    }
}
