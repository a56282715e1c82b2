//! The IndexedDB page store (browsers and web workers; wasm32 only).
//!
//! A database named `name` holds four object stores (schema version 5):
//!
//! - `pages`: key = page number as a JS number (page numbers stay below 2^53),
//!   value = a `Uint8Array` of [`PAGE_SIZE`](super::PAGE_SIZE) bytes (a
//!   *page record*);
//! - `meta`: key `0`, value = the meta record of the folded state as a
//!   `Uint8Array`; key `1`, the highest folded log sequence number; key `2`,
//!   the fence token (a JS number; absent until a handle first takes the
//!   database over from one that stopped answering, [`IdbStore::take_over`]:
//!   every commit checks it first); key `3`, the runs' layout record
//!   (module [`runs`]);
//! - `log`: small commits, one record each, folded into the pages later
//!   (module [`log`], which also says why);
//! - `runs`: consecutive pages of a fold stored as one value, key
//!   `[first page, count]` (module [`runs`]: the rules that keep a page
//!   record and a run of the same page apart).
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
//! the object stores: one log record holding the commit's pages and meta
//! record, or, for a large commit or a full log, every page of the log and of
//! the commit (as runs and page records) and the meta record, the log
//! emptied. The
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

mod generation;
mod js;
mod log;
mod place;
mod read;
mod runs;
mod state;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use futures::channel::oneshot;
use js_sys::{Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{DomException, IdbDatabase, IdbTransaction};

use generation::locate;
use js::{bytes_of, corrupt, dom_error, inject_failure, rw_transaction};
pub use js::{error_from_js, get, open_records, write};
use place::Place;

use super::{Commit, Durability, MAX_META, PageBuf, PageNo, PageStore, StoreError};
use crate::platform::BoxFuture;

/// Schema version of the IndexedDB database.
/// Schema version 2 added the object store `log` (module [`log`]), version
/// 3 the object store `runs` (module [`runs`]), version 4 the runs' layout
/// record in `meta` (written by the next fold of a version 3 database, read
/// from the runs' keys until then), version 5 the layout record's format 2
/// (per run, the pages that may have a page record; a version 4 database's
/// format 1 record reads as every page, and its next fold writes format 2);
/// an older database gets what it lacks, empty, when first opened by this
/// code, and older code refuses a newer one (`VersionError`, which it
/// reports as [`StoreError::Unsupported`]) instead of reading a layout
/// record it does not know as damage.
const VERSION: u32 = 5;
/// Object store holding the pages.
const PAGES: &str = "pages";
/// Object store holding the meta record.
const META: &str = "meta";
/// Key of the meta record in [`META`].
const META_KEY: f64 = 0.0;
/// Key, in [`META`], of the fence token written by [`IdbStore::take_over`]
/// (absent: 0).
const FENCE_KEY: f64 = 2.0;
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
    issued: oneshot::Sender<Result<Issued, StoreError>>,
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
    /// The commit log as far as this store knows it (module [`log`]).
    log: RefCell<log::Log>,
    /// The fence token this store read last (or wrote, taking the database
    /// over); every commit checks, inside its transaction, that the stored
    /// one is still this (see [`IdbStore::take_over`]).
    fence: Cell<f64>,
    /// The runs (module [`runs`]) as of the last `read_meta` and this
    /// store's commits since.
    runs: RefCell<runs::Runs>,
    /// The stored layout record lists runs that `runs` has forgotten, or is
    /// missing: the next fold writes it even if it adds no run.
    layout_dirty: Cell<bool>,
    /// The pages of runs the last reads read along with the pages asked
    /// for ([`PageStore::take_read_along`]), and the `epoch` they were
    /// read in.
    read_along: RefCell<(u64, Vec<(PageNo, PageBuf)>)>,
    /// Moves at every commit issued, `read_meta` and move: pages read along
    /// by a read that saw it move are not handed out.
    epoch: Cell<u64>,
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
            log: RefCell::new(log::Log::default()),
            fence: Cell::new(0.0),
            runs: RefCell::new(runs::Runs::default()),
            layout_dirty: Cell::new(false),
            read_along: RefCell::new((0, Vec::new())),
            epoch: Cell::new(0),
        })
    }

    /// Takes the database over from a handle that held the cross-tab lock
    /// and stopped answering: a tab frozen, hung or paused in a debugger
    /// mid-turn, whose lock the package's JS layer then took by force
    /// (`steal`; docs/design.md, "Several tabs"). Writes a new fence token
    /// into the `meta` object store. Every commit checks, in its own
    /// transaction and before anything of it is applied, that the stored
    /// token is the one its store last read; so when the old holder wakes,
    /// its commits are aborted whole and fail with [`StoreError::Locked`]
    /// until it reads the state again (its next turn), while this store's
    /// commits go through.
    ///
    /// A commit the old holder issued before this transaction runs first
    /// (IndexedDB orders readwrite transactions over the same object
    /// stores), and the caller's refresh after this reads it.
    pub async fn take_over(&self) -> Result<(), StoreError> {
        let op = "take the database over";
        let db = self.db()?;
        let mut b = [0u8; 8];
        crate::platform::random_bytes(&mut b);
        // A whole JS number, never 0 (the absent token).
        let token = ((u64::from_le_bytes(b) >> 11) + 1) as f64;
        let tx = rw_transaction(&db, "relaxed").map_err(|e| error_from_js(op, &e))?;
        let pending = Pending::of(tx);
        pending
            .tx
            .object_store(META)
            .and_then(|s| s.put_with_key(&JsValue::from_f64(token), &JsValue::from_f64(FENCE_KEY)))
            .map_err(|e| error_from_js(op, &e))?;
        pending.wait(op).await?;
        self.fence.set(token);
        Ok(())
    }

    /// The error of a commit its fence check aborted.
    fn fenced(&self) -> StoreError {
        StoreError::Locked {
            path: format!("the IndexedDB database {}", self.name),
            holder: Some(
                "another tab, which took it over while this one did not answer \
                 (frozen, hung or paused); nothing of this commit was written, \
                 and the next operation reads the current state first"
                    .into(),
            ),
        }
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

    /// Fault injection for tests: the next commit issues `pages` values
    /// (page records or runs) inside its transaction, then a request that
    /// fails, so the transaction aborts after real writes. The commit must fail and leave the store as it
    /// was. Not for production use.
    #[doc(hidden)]
    pub fn fail_next_commit_after(&self, pages: usize) {
        self.fail_after.set(Some(pages));
    }

    fn db(&self) -> Result<IdbDatabase, StoreError> {
        match self.conn.borrow().as_ref() {
            Some(c) => Ok(c.db.clone()),
            None => Err(StoreError::Closed),
        }
    }

    /// Issues one readwrite transaction writing `pages` and `meta`, every
    /// request issued and the completion handlers set before it returns:
    /// one log record, or (`fold`, or a commit too large for a record, or a
    /// full log) the pages of the log and of the commit into the page
    /// records, the meta record, and an emptied log (module [`log`]).
    fn issue(
        &self,
        pages: &[(PageNo, PageBuf)],
        meta: &[u8],
        durability: &str,
        fold: bool,
    ) -> Result<Issued, StoreError> {
        let op = "commit";
        let db = self.db()?;
        let tx = rw_transaction(&db, durability).map_err(|e| error_from_js(op, &e))?;
        // Set the handlers now: the transaction may complete before the caller
        // first polls the returned future.
        let pending = Pending::of(tx);
        let tx = &pending.tx;
        let mut lg = self.log.borrow_mut();
        let fold = fold || lg.must_fold(pages, meta.len());
        // A log record's transaction issues all its requests now, so it can
        // be told to commit once the fence is checked; a fold's issues more
        // from success handlers (rule 3 of module `runs`) and commits when
        // they are done.
        let fence = match self.check_fence(tx, !fold) {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.abort();
                return Err(error_from_js(op, &e));
            }
        };
        self.epoch.set(self.epoch.get() + 1);
        let seq = lg.next_seq();
        let folded = RefCell::new(None);
        let wrote_layout = Cell::new(false);
        let issue_all = || -> Result<(), JsValue> {
            let pages_store = tx.object_store(PAGES)?;
            let meta_store = tx.object_store(META)?;
            let fail_after = self.fail_after.take();
            if !fold {
                let log_store = tx.object_store(log::LOG)?;
                log_store.put_with_key(
                    &Uint8Array::from(log::encode(pages, meta).as_slice()),
                    &JsValue::from_f64(seq as f64),
                )?;
                if fail_after.is_some() {
                    inject_failure(&pages_store)?;
                }
                return Ok(());
            }
            let mine: std::collections::HashSet<PageNo> = pages.iter().map(|(no, _)| *no).collect();
            let all: Vec<(PageNo, &PageBuf)> = lg
                .pages()
                .filter(|(no, _)| !mine.contains(no))
                .chain(pages.iter().map(|(no, b)| (*no, b)))
                .collect();
            // In page order; of a page listed twice, the later version.
            let mut nos: Vec<PageNo> = all.iter().map(|(no, _)| *no).collect();
            nos.sort_unstable();
            nos.dedup();
            let newest: std::collections::HashMap<PageNo, &PageBuf> = all.into_iter().collect();
            let all: Vec<(PageNo, &PageBuf)> = nos.iter().map(|no| (*no, newest[no])).collect();
            let f = runs::issue_fold(tx, &all, &self.runs.borrow(), fail_after)?;
            // The bits of its page records inside runs, set now (a read
            // issued from here on asks for those records; if the fold fails
            // they stay set, which only costs a read a request).
            let mut changed = !f.added.is_empty();
            {
                let mut known = self.runs.borrow_mut();
                for &no in &f.recorded {
                    changed |= known.note_record(no);
                }
            }
            if changed || self.layout_dirty.get() {
                let mut next = self.runs.borrow().clone();
                for &(start, n) in &f.added {
                    next.insert(start, n);
                }
                meta_store.put_with_key(
                    &Uint8Array::from(next.encode().as_slice()),
                    &JsValue::from_f64(runs::LAYOUT_KEY),
                )?;
                wrote_layout.set(true);
            }
            *folded.borrow_mut() = Some(f);
            meta_store.put_with_key(
                &Uint8Array::new_from_slice(meta),
                &JsValue::from_f64(META_KEY),
            )?;
            meta_store.put_with_key(
                &JsValue::from_f64(seq as f64),
                &JsValue::from_f64(log::FOLDED_KEY),
            )?;
            tx.object_store(log::LOG)?.clear()?;
            Ok(())
        };
        if let Err(e) = issue_all() {
            // Nothing is applied: abort whatever was issued.
            let _ = tx.abort();
            return Err(error_from_js(op, &e));
        }
        let undo = lg.issued(seq, pages, meta, fold);
        *self.last_meta.borrow_mut() = Some(meta.to_vec());
        let folded = folded.into_inner();
        if let Some(f) = &folded {
            let mut known = self.runs.borrow_mut();
            for &(start, n) in &f.added {
                known.insert(start, n);
            }
        }
        let wrote_layout = wrote_layout.get();
        if wrote_layout {
            self.layout_dirty.set(false);
        }
        Ok(Issued {
            pending,
            seq,
            fold,
            undo,
            fence,
            folded,
            wrote_layout,
        })
    }

    /// Issues the fence check of a commit, its first request: a read of the
    /// stored fence token whose success handler aborts the transaction when
    /// the token is not the one this store expects (another handle took the
    /// database over, [`IdbStore::take_over`]). The handler runs before the
    /// transaction can commit, so an aborted commit applies nothing.
    ///
    /// With `commit`, the handler then calls `commit()` when the token is
    /// this store's: every request was issued already, and the browser
    /// commits without first handing each request's result back to the page
    /// (0.05–0.07 ms of a 1.2–1.4 ms transaction in Chromium 156; a request
    /// that fails afterwards still aborts it). Where the browser has no
    /// `commit()`, the transaction commits by itself as before.
    fn check_fence(&self, tx: &IdbTransaction, commit: bool) -> Result<Fence, JsValue> {
        let req = tx.object_store(META)?.get(&JsValue::from_f64(FENCE_KEY))?;
        let expected = self.fence.get();
        let fenced = Rc::new(Cell::new(false));
        let check = {
            let (req, tx, fenced) = (req.clone(), tx.clone(), fenced.clone());
            Closure::<dyn FnMut()>::new(move || {
                let stored = req.result().ok().and_then(|v| v.as_f64()).unwrap_or(0.0);
                if stored != expected {
                    fenced.set(true);
                    let _ = tx.abort();
                } else if commit {
                    // web-sys marks `commit` deprecated; it is in every
                    // current engine (Chromium 76, Firefox 74, Safari 15).
                    #[allow(deprecated)]
                    let _ = tx.commit();
                }
            })
        };
        req.set_onsuccess(Some(check.as_ref().unchecked_ref()));
        Ok(Fence {
            fenced,
            _check: check,
        })
    }

    /// Folds the log into the page records now (one transaction; nothing
    /// to do when the log is empty). Refused after a failed commit, until
    /// the log is read again (`read_meta`).
    async fn fold(&self, durability: &str) -> Result<(), StoreError> {
        let meta = {
            let lg = self.log.borrow();
            if lg.is_stale() {
                return Err(StoreError::Other(
                    "a commit failed: read the log again before folding it".into(),
                ));
            }
            match lg.meta() {
                Some(m) => m.to_vec(),
                None => return Ok(()),
            }
        };
        self.issue(&[], &meta, durability, true)?
            .wait(self, "fold the log")
            .await
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
                let issued = rx.await.map_err(|_| StoreError::Closed)??;
                issued.wait(self, op).await
            });
        }
        drop(held);
        let issued = self.issue(&pages, &meta, durability, false);
        Box::pin(async move { issued?.wait(self, op).await })
    }

    /// Issues the held transactions, in call order, on the current
    /// connection; further ones are issued at once.
    fn release_held(&self) {
        let queue = self.held.borrow_mut().take().unwrap_or_default();
        for h in queue {
            let r = self.issue(&h.pages, &h.meta, h.durability, false);
            let _ = h.issued.send(r);
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
}

/// Whether a failed request or transaction means the connection is closed
/// (`InvalidStateError`: the browser closed it).
fn is_closed(e: &JsValue) -> bool {
    e.dyn_ref::<DomException>()
        .is_some_and(|d| d.name() == "InvalidStateError")
}

thread_local! {
    /// A rejection handler that does nothing (one for every [`Pending`]).
    static IGNORE: wasm_bindgen::closure::Closure<dyn FnMut(JsValue)> =
        wasm_bindgen::closure::Closure::new(|_: JsValue| {});
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
        // Handled from the start: a transaction aborted on a path that
        // never waits for it (its requests could not all be issued, or the
        // handle was abandoned) is not an unhandled rejection of the page;
        // `wait` still sees the abort.
        IGNORE.with(|ignore| {
            let _ = done.catch(ignore);
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

/// An issued commit: its transaction, and what the log must learn of its
/// outcome.
struct Issued {
    pending: Pending,
    seq: u64,
    fold: bool,
    undo: log::Undo,
    fence: Fence,
    /// What a fold wrote as runs, and its reclaim handlers.
    folded: Option<runs::Folded>,
    /// Whether it writes the layout record (module [`runs`]).
    wrote_layout: bool,
}

/// The fence check of an issued commit ([`IdbStore::check_fence`]).
struct Fence {
    /// Set when the check failed and aborted the transaction.
    fenced: Rc<Cell<bool>>,
    /// The request's success handler, alive until the commit is settled.
    _check: Closure<dyn FnMut()>,
}

impl Issued {
    /// Resolves when the commit's transaction completed, and tells the
    /// store's log how it ended.
    async fn wait(self, store: &IdbStore, op: &str) -> Result<(), StoreError> {
        let r = self.pending.wait(op).await;
        let r = match r {
            Err(_) if self.fence.fenced.get() => Err(store.fenced()),
            r => r,
        };
        let mut lg = store.log.borrow_mut();
        match &r {
            Ok(()) => {
                lg.completed(self.seq, self.fold);
                // Runs it deleted: the next fold's layout record leaves them out.
                if let Some(f) = &self.folded {
                    let deleted = f.deleted.borrow();
                    if !deleted.is_empty() {
                        store.runs.borrow_mut().forget(&deleted);
                        store.layout_dirty.set(true);
                    }
                }
            }
            Err(_) => {
                lg.failed(self.seq, self.undo);
                // Its runs and its layout record were never written.
                if let Some(f) = &self.folded {
                    store.runs.borrow_mut().forget(&f.added);
                }
                if self.wrote_layout {
                    store.layout_dirty.set(true);
                }
            }
        }
        r
    }
}

impl PageStore for IdbStore {
    fn read_page(&self, no: PageNo) -> BoxFuture<'_, Result<PageBuf, StoreError>> {
        Box::pin(async move {
            self.read_many(&[no])
                .await
                .pop()
                .unwrap_or(Err(StoreError::PageNotFound(no)))
        })
    }

    /// One readonly transaction with every read issued at once: the browser
    /// serves them back to back, instead of one round trip (and one
    /// transaction) per page.
    fn read_pages<'a>(
        &'a self,
        nos: &'a [PageNo],
    ) -> BoxFuture<'a, Vec<Result<PageBuf, StoreError>>> {
        Box::pin(self.read_many(nos))
    }

    /// The newest meta record: the last log record's, or the `meta`
    /// record's when the log is empty. Brings the store's view of the log
    /// up to date first (what other tabs appended or folded, module
    /// [`log`]), in one readonly transaction.
    /// The other pages of the runs the last read read (module [`runs`]),
    /// those without a page record or a version in the log, if no commit
    /// was issued since that read started.
    fn take_read_along(&self) -> Vec<(PageNo, PageBuf)> {
        let (epoch, pages) = std::mem::take(&mut *self.read_along.borrow_mut());
        if epoch == self.epoch.get() {
            pages
        } else {
            Vec::new()
        }
    }

    fn read_meta(&self) -> BoxFuture<'_, Result<Option<Vec<u8>>, StoreError>> {
        Box::pin(async move {
            let op = "read meta";
            self.db()?;
            // Another tab may have written: pages read along before are
            // not handed out.
            self.epoch.set(self.epoch.get() + 1);
            if self.is_lost() {
                self.reconnect().await?;
                self.log.borrow_mut().reset();
            }
            let seen = self.log.borrow().seen();
            let state = match self.read_state(seen).await {
                Err(e) if is_closed(&e) => {
                    self.reconnect().await?;
                    self.log.borrow_mut().reset();
                    self.read_state(0).await
                }
                r => r,
            }
            .map_err(|e| error_from_js(op, &e))?;
            let log_corrupt = |reason: String| StoreError::Corrupt {
                file: format!("{}/{}", self.name, log::LOG),
                page: None,
                offset: 0,
                reason,
            };
            let meta0 = state.meta.clone();
            self.fence.set(state.fence);
            self.load_layout(&state.layout)?;
            let up_to_date = self
                .log
                .borrow_mut()
                .reconcile(&state.keys, state.folded, state.new)
                .map_err(log_corrupt)?;
            let meta0 = if up_to_date {
                meta0
            } else {
                // Read it all again.
                self.log.borrow_mut().reset();
                let state = self
                    .read_state(0)
                    .await
                    .map_err(|e| error_from_js(op, &e))?;
                if !self
                    .log
                    .borrow_mut()
                    .reconcile(&state.keys, state.folded, state.new)
                    .map_err(log_corrupt)?
                {
                    return Err(log_corrupt(
                        "the log records do not follow one another".into(),
                    ));
                }
                self.fence.set(state.fence);
                self.load_layout(&state.layout)?;
                state.meta
            };
            let newest = self.log.borrow().meta().map(<[u8]>::to_vec);
            let Some(v) = newest
                .map(|m| Uint8Array::from(m.as_slice()).into())
                .or(meta0)
            else {
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
        // The log stays as it is (the next open reads it). A fold issued
        // here and waited for hung about one close in 70 in Chromium 156
        // (its `complete` event did not come); one not waited for leaves an
        // unhandled rejection when the database is deleted right after.
        // IndexedDB lets transactions already issued complete after close().
        self.conn.borrow_mut().take();
        self.log.borrow_mut().reset();
        self.read_along.borrow_mut().1.clear();
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
                // No buckets: at least no log record and no run keeps an
                // old page image.
                self.fold("strict").await?;
                return self.scrub_runs().await;
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
