//! The database: documents over copy-on-write B+trees, with group commit.
//!
//! ## Trees
//! - `docs`: id key (lowercase id) → document record ([`crate::doc::encode_record`]);
//! - `etags`: etag (u64 big-endian) → id key — the changes feed, in etag order;
//! - `colls`: collection key + `0x00` + id key → empty — documents by collection;
//! - `stats`: collection key → live count (u64 LE) + the collection's display name.
//!
//! ## Generations, group commit, snapshots
//! Writers apply their transactions, one at a time under the writer lock, to the
//! *working state*: pages they modify are copied to new page numbers (or changed
//! in place if the working generation already copied them). A transaction then
//! waits for a *flush*. The first waiter with no flush under way becomes the
//! flusher: it takes every page the working generation wrote, plus the new meta
//! record, and hands them to the page store as one atomic commit (one WAL write
//! and one fsync for the file store). When it completes, every transaction it
//! covered is acknowledged at once, and the flushed generation becomes the one
//! readers see. Transactions applied while a flush runs go into the next one.
//!
//! Readers take a [`Snapshot`] of the last flushed generation. A page freed by
//! generation `g` is reused only once generation `g` is flushed and no snapshot
//! older than `g` is alive, so a snapshot's pages never change under it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::channel::oneshot;
use serde_json::Value;

use crate::btree::{self, KIND_FREELIST, PageRead, PageWrite};
use crate::cache::{CacheStats, DEFAULT_CACHE_BYTES, PageCache};
use crate::cv::{ChangeVector, DbId};
use crate::doc::{self, DocFlags, Document, DocumentMeta, RawVersion};
use crate::error::{Error, InputError, OpenError, clip};
use crate::merge;
use crate::platform::wall_clock_ms;
use crate::policy::ConflictPolicy;
use crate::store::{
    Commit, Durability, MAX_META, PAGE_SIZE, PageBuf, PageNo, PageStore, StoreError,
};
use crate::watch::{CommitWatch, Publisher};

/// A source of wall-clock time in milliseconds since the Unix epoch (injectable
/// for tests and simulations).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Options for [`Database::open`].
#[derive(Clone)]
pub struct OpenOptions {
    /// Page cache limit in bytes (default 64 MiB).
    pub cache_bytes: usize,
    /// Clock for last-modified times (default: the platform clock).
    pub clock: Option<Clock>,
    /// Database id to use when creating a new database (default: random).
    pub db_id: Option<DbId>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            cache_bytes: DEFAULT_CACHE_BYTES,
            clock: None,
            db_id: None,
        }
    }
}

/// Optimistic-concurrency expectation of a write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Expected {
    /// No check.
    #[default]
    Any,
    /// The document must not exist (or be deleted).
    Missing,
    /// The document's current change vector must equal this one.
    Cv(ChangeVector),
}

/// Options of one put.
#[derive(Clone, Debug, Default)]
pub struct PutOptions {
    /// Collection of the document; default: `@metadata.@collection` of the body.
    pub collection: Option<String>,
    /// Optimistic-concurrency check.
    pub expected: Expected,
}

#[derive(Clone, Debug)]
enum Op {
    Put {
        id: String,
        body: Value,
        opts: PutOptions,
    },
    Delete {
        id: String,
        expected: Expected,
    },
    Resolve {
        id: String,
        body: Option<Value>,
        collection: Option<String>,
    },
    Remote {
        doc: RemoteDoc,
        policy: ConflictPolicy,
    },
    SetLocal {
        key: Vec<u8>,
        value: Option<Vec<u8>>,
    },
}

/// A document as received from a replication peer: its id, collection and
/// versions (the sender's winner first, then its concurrent versions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteDoc {
    /// The document id.
    pub id: String,
    /// Its collection, if any.
    pub collection: Option<String>,
    /// Its versions (at least one, at most [`doc::MAX_VERSIONS`]).
    pub versions: Vec<RawVersion>,
    /// The peer it came from (recorded when the version is stored as
    /// received, so it is not sent back to that peer).
    pub source: Option<String>,
}

/// Longest value of a local record, in bytes.
pub const MAX_LOCAL_BYTES: usize = 1 << 20;

/// What a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteOutcome {
    /// A local put or delete: a new version.
    Written,
    /// A received version was stored as received (it superseded what was held).
    Applied,
    /// A received version was concurrent with a held one: both are kept and
    /// the document is conflicted.
    Conflict,
    /// A received version was concurrent with a held one and the conflict
    /// policy settled it: a resolution version superseding both was written.
    Resolved,
}

/// Several writes committed atomically: all of them or none.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    ops: Vec<Op>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a put.
    pub fn put(&mut self, id: impl Into<String>, body: Value) -> &mut Self {
        self.put_with(id, body, PutOptions::default())
    }
    /// Adds a put with options.
    pub fn put_with(&mut self, id: impl Into<String>, body: Value, opts: PutOptions) -> &mut Self {
        self.ops.push(Op::Put {
            id: id.into(),
            body,
            opts,
        });
        self
    }
    /// Adds a delete.
    pub fn delete(&mut self, id: impl Into<String>) -> &mut Self {
        self.delete_with(id, Expected::Any)
    }
    /// Adds a delete with an optimistic-concurrency check.
    pub fn delete_with(&mut self, id: impl Into<String>, expected: Expected) -> &mut Self {
        self.ops.push(Op::Delete {
            id: id.into(),
            expected,
        });
        self
    }
    /// Adds a resolution of a conflicted document: a new version (`None`: a
    /// deletion) whose change vector supersedes every concurrent version, so
    /// the conflict ends everywhere once it replicates. On a document that is
    /// not conflicted it is a plain put or delete.
    pub fn resolve(
        &mut self,
        id: impl Into<String>,
        body: Option<Value>,
        collection: Option<String>,
    ) -> &mut Self {
        self.ops.push(Op::Resolve {
            id: id.into(),
            body,
            collection,
        });
        self
    }
    /// Adds versions received from a replication peer, merged with what is
    /// held (see [`crate::merge`]); concurrent versions are settled by
    /// `policy` (`Manual` keeps them all).
    pub fn apply_remote(&mut self, doc: RemoteDoc, policy: ConflictPolicy) -> &mut Self {
        self.ops.push(Op::Remote { doc, policy });
        self
    }
    /// Sets (`Some`) or removes (`None`) a local record: not replicated, not in
    /// the changes feed, committed atomically with the rest of the batch.
    pub fn set_local(&mut self, key: impl Into<Vec<u8>>, value: Option<Vec<u8>>) -> &mut Self {
        self.ops.push(Op::SetLocal {
            key: key.into(),
            value,
        });
        self
    }
    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }
    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// The outcome of one write.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct WriteResult {
    /// The document id as given.
    pub id: String,
    /// The etag of the new version.
    pub etag: u64,
    /// The change vector of the new version.
    pub change_vector: ChangeVector,
    /// Whether the write was a delete (a tombstone was written).
    pub deleted: bool,
    /// What the write did.
    pub outcome: WriteOutcome,
}

/// The outcome of a batch: one entry per operation, in order (`None` for a
/// delete of a document that did not exist).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CommitInfo {
    /// Per-operation results.
    pub results: Vec<Option<WriteResult>>,
}

/// Database counters.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DbStats {
    /// Database id.
    pub db_id: String,
    /// Live documents.
    pub documents: u64,
    /// Tombstones (deleted documents kept for replication).
    pub tombstones: u64,
    /// Last etag assigned.
    pub last_etag: u64,
    /// Pages allocated in the store (high-water mark).
    pub pages: u64,
    /// Free pages awaiting reuse.
    pub free_pages: u64,
    /// Flushed generation.
    pub generation: u64,
    /// Page cache counters.
    pub cache: CacheStats,
}

/// Result of [`Database::integrity_check`].
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct IntegrityReport {
    /// Pages read and verified.
    pub pages_checked: u64,
    /// Live documents found.
    pub documents: u64,
    /// Tombstones found.
    pub tombstones: u64,
    /// Problems found; empty when the database is sound.
    pub problems: Vec<String>,
}

impl IntegrityReport {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

// ---------------------------------------------------------------------------
// Meta record

const META_MAGIC: u32 = 0x5453_504F; // "OPST"
const META_VERSION: u16 = 2;

// ---------------------------------------------------------------------------
// Free-list pages: the 16-byte page header of `btree::seal` (its entry count
// is the number of page numbers listed), then these fields, little-endian.

/// `u64`: the next page of the chain, 0 at its end.
const FREELIST_NEXT: usize = 16;
/// `u64` page numbers, [`FREELIST_PER_PAGE`] at most.
const FREELIST_ENTRIES: usize = 24;
/// Page numbers one free-list page holds.
const FREELIST_PER_PAGE: usize = (PAGE_SIZE - FREELIST_ENTRIES) / 8;

/// A sealed free-list page `no` listing `entries` (at most
/// [`FREELIST_PER_PAGE`]), followed in the chain by `next`.
fn encode_freelist_page(no: PageNo, next: PageNo, entries: &[PageNo]) -> Vec<u8> {
    let mut buf = vec![0u8; PAGE_SIZE];
    buf[FREELIST_NEXT..FREELIST_NEXT + 8].copy_from_slice(&next.to_le_bytes());
    for (j, e) in entries.iter().enumerate() {
        let at = FREELIST_ENTRIES + 8 * j;
        buf[at..at + 8].copy_from_slice(&e.to_le_bytes());
    }
    btree::seal(&mut buf, no, KIND_FREELIST, entries.len() as u16);
    buf
}

/// A free-list page (already checked by `check_page`): the next page of the
/// chain, the entry count the page claims, and its entries (as many as it
/// claims, at most [`FREELIST_PER_PAGE`]).
fn decode_freelist_page(buf: &[u8]) -> (PageNo, usize, Vec<PageNo>) {
    let le = |at: usize| u64::from_le_bytes(buf[at..at + 8].try_into().unwrap_or_default());
    let claimed = u16::from_le_bytes([buf[14], buf[15]]) as usize;
    let entries = (0..claimed.min(FREELIST_PER_PAGE))
        .map(|i| le(FREELIST_ENTRIES + 8 * i))
        .collect();
    (le(FREELIST_NEXT), claimed, entries)
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Meta {
    db_id: DbId,
    generation: u64,
    last_etag: u64,
    next_page: u64,
    docs: PageNo,
    etags: PageNo,
    colls: PageNo,
    stats: PageNo,
    freelist_head: PageNo,
    freelist_count: u64,
    doc_count: u64,
    tombstone_count: u64,
    /// Local (non-replicated) records: replication checkpoints and the like.
    locals: PageNo,
    /// Id keys of conflicted documents.
    conflicts: PageNo,
}

impl Meta {
    fn new(db_id: DbId) -> Meta {
        Meta {
            db_id,
            generation: 0,
            last_etag: 0,
            next_page: 1,
            docs: 0,
            etags: 0,
            colls: 0,
            stats: 0,
            freelist_head: 0,
            freelist_count: 0,
            doc_count: 0,
            tombstone_count: 0,
            locals: 0,
            conflicts: 0,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(128);
        b.extend_from_slice(&META_MAGIC.to_le_bytes());
        b.extend_from_slice(&META_VERSION.to_le_bytes());
        b.extend_from_slice(&(PAGE_SIZE as u32).to_le_bytes());
        b.extend_from_slice(self.db_id.as_bytes());
        for v in [
            self.generation,
            self.last_etag,
            self.next_page,
            self.docs,
            self.etags,
            self.colls,
            self.stats,
            self.freelist_head,
            self.freelist_count,
            self.doc_count,
            self.tombstone_count,
            self.locals,
            self.conflicts,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        debug_assert!(b.len() <= MAX_META);
        b
    }

    fn decode(b: &[u8]) -> Result<Meta, OpenError> {
        // Version 1 had 11 u64 fields; version 2 adds `locals` and `conflicts`.
        const LEN1: usize = 4 + 2 + 4 + 16 + 11 * 8 + 4;
        const LEN2: usize = LEN1 + 2 * 8;
        let len = if b.len() == LEN1 { LEN1 } else { LEN2 };
        if b.len() != len {
            return Err(OpenError::Corrupt(format!(
                "meta record has {} bytes, expected {len}",
                b.len()
            )));
        }
        let crc = u32::from_le_bytes(b[len - 4..].try_into().unwrap_or_default());
        if crc32fast::hash(&b[..len - 4]) != crc {
            return Err(OpenError::Corrupt("meta record checksum mismatch".into()));
        }
        if u32::from_le_bytes(b[0..4].try_into().unwrap_or_default()) != META_MAGIC {
            return Err(OpenError::Corrupt(
                "meta record has a bad magic number".into(),
            ));
        }
        let version = u16::from_le_bytes([b[4], b[5]]);
        if !((version == 1 && len == LEN1) || (version == META_VERSION && len == LEN2)) {
            return Err(OpenError::Unsupported(format!(
                "database format version {version}"
            )));
        }
        let ps = u32::from_le_bytes(b[6..10].try_into().unwrap_or_default());
        if ps as usize != PAGE_SIZE {
            return Err(OpenError::Unsupported(format!("page size {ps}")));
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&b[10..26]);
        let u =
            |i: usize| u64::from_le_bytes(b[26 + 8 * i..34 + 8 * i].try_into().unwrap_or_default());
        let m = Meta {
            db_id: DbId(id),
            generation: u(0),
            last_etag: u(1),
            next_page: u(2),
            docs: u(3),
            etags: u(4),
            colls: u(5),
            stats: u(6),
            freelist_head: u(7),
            freelist_count: u(8),
            doc_count: u(9),
            tombstone_count: u(10),
            locals: if len == LEN2 { u(11) } else { 0 },
            conflicts: if len == LEN2 { u(12) } else { 0 },
        };
        for (name, root) in [
            ("docs", m.docs),
            ("etags", m.etags),
            ("colls", m.colls),
            ("stats", m.stats),
            ("locals", m.locals),
            ("conflicts", m.conflicts),
        ] {
            if root >= m.next_page {
                return Err(OpenError::Corrupt(format!(
                    "{name} root {root} beyond page count {}",
                    m.next_page
                )));
            }
        }
        Ok(m)
    }
}

// ---------------------------------------------------------------------------
// State

struct Working {
    meta: Meta,
    /// Transactions applied so far.
    seq: u64,
    /// Pages written by the working generation (not yet flushed).
    dirty: HashMap<PageNo, PageBuf>,
    /// Pages of the flush under way (or the last one).
    inflight: Arc<HashMap<PageNo, PageBuf>>,
    /// Pages that may be reused now.
    free: Vec<PageNo>,
    /// Pages freed by generation `g`, reusable once `g` is flushed and no older
    /// snapshot is alive.
    pending: VecDeque<(u64, PageNo)>,
    /// Pages holding the persisted free list of the last flush.
    freelist_pages: Vec<PageNo>,
    /// Generation up to which pending pages may be reused (refreshed per transaction).
    reuse_limit: u64,
    /// Undo journal of the transaction being applied (rolled back on failure).
    undo: Vec<Undo>,
    /// Pages whose pre-transaction state is in the journal.
    journaled: std::collections::HashSet<PageNo>,
    /// Changes of per-collection live counts not yet written to the `stats`
    /// tree: collection key -> (display name, delta). Written once per flush
    /// instead of once per document.
    coll_deltas: HashMap<Vec<u8>, (String, i64)>,
}

/// One reversible change to the working state's page bookkeeping.
enum Undo {
    /// `dirty[no]` was this before.
    Dirty(PageNo, Option<PageBuf>),
    /// A page was popped from `free`.
    FreePop(PageNo),
    /// A page was moved from the front of `pending` to `free`.
    PendingPop(u64, PageNo),
    /// A page was pushed onto `free`.
    FreePush,
    /// A page was pushed onto the back of `pending`.
    PendingPush,
    /// `coll_deltas[key]` was this before.
    Coll(Vec<u8>, Option<(String, i64)>),
}

impl Working {
    /// Records a change of a collection's live document count.
    fn add_coll_delta(&mut self, coll: &str, delta: i64) {
        let key = coll_key(coll);
        let prev = self.coll_deltas.get(&key).cloned();
        let d = prev.as_ref().map_or(0, |p| p.1);
        self.coll_deltas
            .insert(key.clone(), (coll.to_string(), d + delta));
        self.undo.push(Undo::Coll(key, prev));
    }

    fn set_dirty(&mut self, no: PageNo, buf: Option<PageBuf>) {
        let prev = match buf {
            Some(b) => self.dirty.insert(no, b),
            None => self.dirty.remove(&no),
        };
        // Only a page's state before the transaction's first change to it is
        // needed to roll back; later versions are dropped at once (a large
        // batch rewrites the same pages many times).
        if self.journaled.insert(no) {
            self.undo.push(Undo::Dirty(no, prev));
        }
    }

    /// Reverts every change recorded in the journal, newest first.
    fn rollback(&mut self, meta: Meta) {
        while let Some(u) = self.undo.pop() {
            match u {
                Undo::Dirty(no, Some(b)) => {
                    self.dirty.insert(no, b);
                }
                Undo::Dirty(no, None) => {
                    self.dirty.remove(&no);
                }
                Undo::FreePop(no) => self.free.push(no),
                Undo::PendingPop(g, no) => {
                    self.free.pop();
                    self.pending.push_front((g, no));
                }
                Undo::FreePush => {
                    self.free.pop();
                }
                Undo::PendingPush => {
                    self.pending.pop_back();
                }
                Undo::Coll(key, Some(prev)) => {
                    self.coll_deltas.insert(key, prev);
                }
                Undo::Coll(key, None) => {
                    self.coll_deltas.remove(&key);
                }
            }
        }
        self.meta = meta;
        self.journaled.clear();
    }
}

struct Shared {
    visible: Meta,
    readers: BTreeMap<u64, usize>,
    durable_seq: u64,
    flushing: bool,
    waiters: Vec<oneshot::Sender<()>>,
    failed: Option<String>,
    closed: bool,
}

struct Inner<S> {
    store: S,
    cache: PageCache,
    clock: Clock,
    db_id: DbId,
    writer: futures::lock::Mutex<Working>,
    shared: Mutex<Shared>,
    read_only: bool,
    /// The commit observer ([`Database::watch_commits`]).
    commits: Publisher,
}

impl<S> Inner<S> {
    fn shared(&self) -> MutexGuard<'_, Shared> {
        // Shared is updated field by field with no await inside the lock; a panic
        // cannot leave it torn, so a poisoned lock is still usable.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Reads a page through the cache, verifying it when it comes from the store.
async fn read_cached<S: PageStore>(
    inner: &Inner<S>,
    no: PageNo,
    kind: u8,
) -> Result<PageBuf, Error> {
    // A damaged page is reported with the file and byte offset holding it.
    let located = |e: Error| match e {
        Error::Corrupt {
            page,
            location: None,
            reason,
        } => Error::Corrupt {
            location: inner.store.page_location(page),
            page,
            reason,
        },
        e => e,
    };
    if let Some(b) = inner.cache.get(no) {
        if kind != 0 && btree::page_kind(&b) != kind {
            return Err(located(btree::corrupt(
                no,
                format!("expected page kind {kind}, found {}", btree::page_kind(&b)),
            )));
        }
        return Ok(b);
    }
    let b = match inner.store.read_page(no).await {
        Ok(b) => b,
        Err(StoreError::PageNotFound(_)) => {
            return Err(btree::corrupt(no, "referenced page does not exist".into()));
        }
        Err(e) => return Err(e.into()),
    };
    let k = if kind == 0 {
        btree::page_kind(&b)
    } else {
        kind
    };
    btree::check_page(&b, no, k).map_err(located)?;
    inner.cache.put(no, b.clone());
    Ok(b)
}

struct SnapRead<'a, S> {
    inner: &'a Inner<S>,
}

impl<S: PageStore> PageRead for SnapRead<'_, S> {
    async fn read(&self, no: PageNo, kind: u8) -> Result<PageBuf, Error> {
        read_cached(self.inner, no, kind).await
    }
}

struct WCtx<'a, S> {
    inner: &'a Inner<S>,
    w: &'a mut Working,
}

impl<S: PageStore> PageRead for WCtx<'_, S> {
    async fn read(&self, no: PageNo, kind: u8) -> Result<PageBuf, Error> {
        if let Some(b) = self.w.dirty.get(&no).or_else(|| self.w.inflight.get(&no)) {
            return Ok(b.clone());
        }
        read_cached(self.inner, no, kind).await
    }
}

impl<S: PageStore> PageWrite for WCtx<'_, S> {
    fn alloc(&mut self) -> PageNo {
        let w = &mut *self.w;
        if w.free.is_empty() {
            while let Some(&(g, no)) = w.pending.front() {
                if g > w.reuse_limit {
                    break;
                }
                w.pending.pop_front();
                w.free.push(no);
                w.undo.push(Undo::PendingPop(g, no));
            }
        }
        let no = match w.free.pop() {
            Some(no) => {
                w.undo.push(Undo::FreePop(no));
                no
            }
            None => {
                // Restored by the meta record on rollback.
                let no = w.meta.next_page;
                w.meta.next_page += 1;
                no
            }
        };
        // Mark as owned by this generation (the caller writes it right away).
        w.set_dirty(no, Some(Arc::new(Vec::new())));
        no
    }

    fn is_dirty(&self, no: PageNo) -> bool {
        self.w.dirty.contains_key(&no)
    }

    fn free(&mut self, no: PageNo) {
        if self.w.dirty.contains_key(&no) {
            // Written by this generation only: nothing else can reference it.
            self.w.set_dirty(no, None);
            self.w.free.push(no);
            self.w.undo.push(Undo::FreePush);
        } else {
            let g = self.w.meta.generation;
            self.w.pending.push_back((g, no));
            self.w.undo.push(Undo::PendingPush);
        }
    }

    fn write(&mut self, no: PageNo, buf: PageBuf) {
        self.w.set_dirty(no, Some(buf));
    }
}

// ---------------------------------------------------------------------------
// The database

/// An open database over a page store. Cheap to clone (shared handle).
pub struct Database<S: PageStore> {
    inner: Arc<Inner<S>>,
}

impl<S: PageStore> Clone for Database<S> {
    fn clone(&self) -> Self {
        Database {
            inner: self.inner.clone(),
        }
    }
}

/// A consistent, read-only view of the database at one flushed generation.
/// Writes committed after it was taken are not visible through it.
pub struct Snapshot<S: PageStore> {
    inner: Arc<Inner<S>>,
    meta: Meta,
}

impl<S: PageStore> Drop for Snapshot<S> {
    fn drop(&mut self) {
        let mut sh = self.inner.shared();
        if let Some(c) = sh.readers.get_mut(&self.meta.generation) {
            *c -= 1;
            if *c == 0 {
                sh.readers.remove(&self.meta.generation);
            }
        }
    }
}

fn coll_key(name: &str) -> Vec<u8> {
    name.to_lowercase().into_bytes()
}

fn coll_index_key(coll: &str, id_key: &[u8]) -> Vec<u8> {
    let mut k = coll_key(coll);
    k.push(0);
    k.extend_from_slice(id_key);
    k
}

fn decode_doc(rec: &[u8], key: &[u8]) -> Result<Document, Error> {
    doc::decode_record(rec).map_err(|e| Error::Corrupt {
        page: 0,
        location: None,
        reason: format!("record of {:?}: {e}", String::from_utf8_lossy(key)),
    })
}

fn decode_meta(rec: &[u8], key: &[u8]) -> Result<(String, DocumentMeta), Error> {
    doc::decode_record_meta(rec).map_err(|e| Error::Corrupt {
        page: 0,
        location: None,
        reason: format!("record of {:?}: {e}", String::from_utf8_lossy(key)),
    })
}

/// An open-time error met while refreshing an open database.
fn open_to_error(e: OpenError) -> Error {
    match e {
        OpenError::Store(s) => Error::Store(s),
        e => Error::Corrupt {
            page: 0,
            location: None,
            reason: e.to_string(),
        },
    }
}

/// Reads the free-list chain of `meta`: the reusable pages (lowest reused
/// first) and the pages holding the chain.
async fn load_free_list<S: PageStore>(
    inner: &Inner<S>,
    meta: &Meta,
) -> Result<(Vec<PageNo>, Vec<PageNo>), OpenError> {
    let (mut free, mut chain) = (Vec::new(), Vec::new());
    let mut next = meta.freelist_head;
    while next != 0 {
        if next >= meta.next_page || chain.len() as u64 > meta.next_page {
            return Err(OpenError::Corrupt(format!(
                "free-list chain is broken at page {next}"
            )));
        }
        let buf = read_cached(inner, next, KIND_FREELIST)
            .await
            .map_err(|e| OpenError::Corrupt(e.to_string()))?;
        chain.push(next);
        let (following, n, entries) = decode_freelist_page(&buf);
        if n > FREELIST_PER_PAGE {
            return Err(OpenError::Corrupt(format!(
                "free-list page {next} claims {n} entries"
            )));
        }
        for no in entries {
            if no == 0 || no >= meta.next_page {
                return Err(OpenError::Corrupt(format!(
                    "free-list page {next} lists page {no}"
                )));
            }
            free.push(no);
        }
        next = following;
    }
    if free.len() as u64 != meta.freelist_count {
        return Err(OpenError::Corrupt(format!(
            "free list holds {} pages, meta says {}",
            free.len(),
            meta.freelist_count
        )));
    }
    // Reuse the lowest pages first (keeps files compact).
    free.sort_unstable_by(|a, b| b.cmp(a));
    Ok((free, chain))
}

impl<S: PageStore> Database<S> {
    /// Opens the database held by `store`, creating an empty one if the store is
    /// empty. Reads only the meta record and the free list; pages are read on demand.
    pub async fn open(store: S, opts: OpenOptions) -> Result<Self, OpenError> {
        Self::open_with(store, opts, false).await
    }

    /// Opens the database held by `store` for reading only: nothing is ever
    /// written (an empty store is not given a database: the open fails with
    /// [`OpenError::NotFound`]), and every write fails with
    /// `StoreError::ReadOnly` (code `read_only`) before it touches anything.
    /// Pair it with a read-only store such as `FileStore::open_read_only`.
    pub async fn open_read_only(store: S, opts: OpenOptions) -> Result<Self, OpenError> {
        Self::open_with(store, opts, true).await
    }

    async fn open_with(store: S, opts: OpenOptions, read_only: bool) -> Result<Self, OpenError> {
        if opts.cache_bytes < 16 * PAGE_SIZE {
            return Err(OpenError::InvalidOptions(format!(
                "cache_bytes must be at least {}",
                16 * PAGE_SIZE
            )));
        }
        let existing = store.read_meta().await?;
        if read_only && existing.is_none() {
            return Err(OpenError::NotFound(
                "the store is empty (a read-only open creates nothing)".into(),
            ));
        }
        let created = existing.is_none();
        let meta = match existing {
            Some(b) => Meta::decode(&b)?,
            None => Meta::new(opts.db_id.unwrap_or_else(DbId::random)),
        };
        let clock = opts
            .clock
            .clone()
            .unwrap_or_else(|| Arc::new(wall_clock_ms));
        let inner = Inner {
            store,
            cache: PageCache::new(opts.cache_bytes),
            clock,
            db_id: meta.db_id,
            writer: futures::lock::Mutex::new(Working {
                meta: meta.clone(),
                seq: 0,
                dirty: HashMap::new(),
                inflight: Arc::new(HashMap::new()),
                free: Vec::new(),
                pending: VecDeque::new(),
                freelist_pages: Vec::new(),
                reuse_limit: 0,
                undo: Vec::new(),
                journaled: Default::default(),
                coll_deltas: HashMap::new(),
            }),
            shared: Mutex::new(Shared {
                visible: meta.clone(),
                readers: BTreeMap::new(),
                durable_seq: 0,
                flushing: false,
                waiters: Vec::new(),
                failed: None,
                closed: false,
            }),
            read_only,
            commits: Publisher::new(meta.last_etag),
        };
        // Load the persisted free list.
        {
            let mut w = inner.writer.lock().await;
            let (free, chain) = load_free_list(&inner, &meta).await?;
            w.free = free;
            w.freelist_pages = chain;
            w.meta.generation = meta.generation + 1;
        }
        let db = Database {
            inner: Arc::new(inner),
        };
        if created {
            // Persist the new database's id right away.
            db.inner.writer.lock().await.seq += 1;
            db.wait_durable(1).await.map_err(|e| match e {
                Error::Store(s) => OpenError::Store(s),
                e => OpenError::Corrupt(e.to_string()),
            })?;
        }
        Ok(db)
    }

    /// Picks up commits made to the same store by another handle (another
    /// browser tab, another process): re-reads the store's meta record and, if
    /// it changed, drops the page cache and reloads the state. Returns whether
    /// anything changed.
    ///
    /// Only safe while no other handle writes (the caller holds a cross-handle
    /// lock, e.g. the Web Locks API in the browser) and while this handle has
    /// no write in flight and no snapshot open: pages another writer freed may
    /// have been reused. Fails with `InvalidArgument` if a write is in flight.
    ///
    /// It also recovers a handle poisoned by a failed commit when the store
    /// itself rolled that commit back (IndexedDB aborts a failed transaction
    /// whole): the working state is rebuilt from the last committed meta.
    pub async fn refresh(&self) -> Result<bool, Error> {
        let mut w = self.inner.writer.lock().await;
        let recovering = {
            let sh = self.inner.shared();
            if sh.closed {
                return Err(Error::Closed);
            }
            if sh.flushing || (w.seq > sh.durable_seq && sh.failed.is_none()) {
                return Err(InputError::InvalidArgument(
                    "refresh while a write is in flight".into(),
                )
                .into());
            }
            sh.failed.is_some()
        };
        let Some(bytes) = self.inner.store.read_meta().await? else {
            return Ok(false);
        };
        let meta = Meta::decode(&bytes).map_err(open_to_error)?;
        if meta == self.inner.shared().visible && !recovering {
            return Ok(false);
        }
        if meta.db_id != self.inner.db_id {
            return Err(Error::Corrupt {
                page: 0,
                location: None,
                reason: "the store now holds another database".into(),
            });
        }
        self.inner.cache.clear();
        let (free, chain) = load_free_list(&self.inner, &meta)
            .await
            .map_err(open_to_error)?;
        let w = &mut *w;
        w.meta = meta.clone();
        w.meta.generation = meta.generation + 1;
        w.dirty.clear();
        w.inflight = Arc::new(HashMap::new());
        w.free = free;
        w.pending.clear();
        w.freelist_pages = chain;
        w.coll_deltas.clear();
        w.undo.clear();
        w.journaled.clear();
        let mut sh = self.inner.shared();
        sh.visible = meta;
        // A handle poisoned by a failed commit starts over from what the store
        // holds: the failed transactions were reported to their callers and
        // are dropped with the working state.
        sh.failed = None;
        sh.durable_seq = w.seq;
        Ok(true)
    }

    /// The database id (the identity of this replica in change vectors).
    pub fn db_id(&self) -> DbId {
        self.inner.db_id
    }

    /// Whether the database was opened with [`Database::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    /// The page store beneath.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// Writes a document (creating or replacing it) and waits until it is durable.
    pub async fn put(&self, id: &str, body: Value) -> Result<WriteResult, Error> {
        self.put_with(id, body, PutOptions::default()).await
    }

    /// [`put`](Self::put) with a collection and an optimistic-concurrency check.
    pub async fn put_with(
        &self,
        id: &str,
        body: Value,
        opts: PutOptions,
    ) -> Result<WriteResult, Error> {
        let mut b = Batch::new();
        b.put_with(id, body, opts);
        let mut info = self.commit(b).await?;
        info.results
            .pop()
            .flatten()
            .ok_or_else(|| Error::Poisoned("put produced no result".into()))
    }

    /// Deletes a document (writes a tombstone that keeps its change vector).
    /// Returns `None` if it did not exist.
    pub async fn delete(&self, id: &str) -> Result<Option<WriteResult>, Error> {
        self.delete_with(id, Expected::Any).await
    }

    /// [`delete`](Self::delete) with an optimistic-concurrency check.
    pub async fn delete_with(
        &self,
        id: &str,
        expected: Expected,
    ) -> Result<Option<WriteResult>, Error> {
        let mut b = Batch::new();
        b.delete_with(id, expected);
        Ok(self.commit(b).await?.results.pop().flatten())
    }

    /// Commits a batch atomically and waits until it is durable. If any operation
    /// is refused (bad input, failed concurrency check) nothing is written.
    pub async fn commit(&self, batch: Batch) -> Result<CommitInfo, Error> {
        // Validate and serialise outside the writer lock.
        let mut prepared = Vec::with_capacity(batch.ops.len());
        for op in batch.ops {
            prepared.push(prepare(op)?);
        }
        let seq;
        let mut results = Vec::with_capacity(prepared.len());
        {
            let mut w = self.inner.writer.lock().await;
            self.check_writable()?;
            w.reuse_limit = {
                let sh = self.inner.shared();
                let oldest = sh
                    .readers
                    .keys()
                    .next()
                    .copied()
                    .unwrap_or(sh.visible.generation);
                oldest.min(sh.visible.generation)
            };
            // Restores the working state if the transaction fails or its future is
            // dropped half-way: a transaction is applied whole or not at all.
            w.undo.clear();
            w.journaled.clear();
            let save = w.meta.clone();
            let mut txn = TxnGuard {
                w,
                save: Some(save),
            };
            let now = (self.inner.clock)();
            let mut ctx = WCtx {
                inner: &self.inner,
                w: &mut txn.w,
            };
            for p in &prepared {
                results.push(apply(&mut ctx, p, self.inner.db_id, now).await?);
            }
            txn.w.seq += 1;
            seq = txn.w.seq;
            txn.save = None;
            txn.w.undo.clear();
            txn.w.journaled.clear();
        }
        self.wait_durable(seq).await?;
        Ok(CommitInfo { results })
    }

    fn check_writable(&self) -> Result<(), Error> {
        let sh = self.inner.shared();
        if sh.closed {
            return Err(Error::Closed);
        }
        if self.inner.read_only {
            return Err(StoreError::ReadOnly.into());
        }
        if let Some(f) = &sh.failed {
            return Err(Error::Poisoned(f.clone()));
        }
        Ok(())
    }

    /// Waits until transaction `seq` is durable, flushing (as the group-commit
    /// leader) when no flush is under way.
    async fn wait_durable(&self, seq: u64) -> Result<(), Error> {
        loop {
            let rx = {
                let mut sh = self.inner.shared();
                if sh.durable_seq >= seq {
                    return Ok(());
                }
                if let Some(f) = &sh.failed {
                    return Err(Error::Poisoned(f.clone()));
                }
                if sh.flushing {
                    let (tx, rx) = oneshot::channel();
                    sh.waiters.push(tx);
                    Some(rx)
                } else {
                    sh.flushing = true;
                    None
                }
            };
            match rx {
                Some(rx) => {
                    let _ = rx.await;
                }
                None => {
                    let guard = FlushGuard { inner: &self.inner };
                    let r = self.flush().await;
                    drop(guard);
                    r?;
                }
            }
        }
    }

    /// Takes the working generation's pages and commits them as one store commit.
    async fn flush(&self) -> Result<(), Error> {
        let (fut, meta, seq) = {
            let mut w = self.inner.writer.lock().await;
            let seq = w.seq;
            if seq <= self.inner.shared().durable_seq {
                return Ok(());
            }
            let w = &mut *w;
            // Collection counts of this generation, one tree update per collection.
            // Each delta is removed right after it is applied (no await in
            // between), so a dropped flush never applies one twice.
            let keys: Vec<Vec<u8>> = w.coll_deltas.keys().cloned().collect();
            for k in keys {
                let Some((name, delta)) = w.coll_deltas.get(&k).cloned() else {
                    continue;
                };
                let root = w.meta.stats;
                let mut ctx = WCtx {
                    inner: &self.inner,
                    w: &mut *w,
                };
                let r = bump_stat(&mut ctx, root, &k, &name, delta).await;
                match r {
                    Ok(root) => {
                        w.meta.stats = root;
                        w.coll_deltas.remove(&k);
                    }
                    Err(e) => {
                        self.inner.shared().failed = Some(e.to_string());
                        self.inner.commits.end();
                        return Err(e);
                    }
                }
            }
            w.undo.clear();
            w.journaled.clear();
            let generation = w.meta.generation;
            // The previous free-list pages are released by this generation.
            for p in std::mem::take(&mut w.freelist_pages) {
                w.pending.push_back((generation, p));
            }
            // The chain that lists the free pages is itself written to pages
            // taken from the reusable ones (they are unreachable from every live
            // state), so the list does not grow by its own size on every flush.
            let total = w.free.len() + w.pending.len();
            let mut chain: Vec<PageNo> = Vec::new();
            let mut from_list = 0;
            while chain.len() < (total - from_list).div_ceil(FREELIST_PER_PAGE) {
                match w.free.pop() {
                    Some(no) => {
                        chain.push(no);
                        from_list += 1;
                    }
                    None => {
                        chain.push(w.meta.next_page);
                        w.meta.next_page += 1;
                    }
                }
            }
            let list: Vec<PageNo> = w
                .free
                .iter()
                .copied()
                .chain(w.pending.iter().map(|&(_, p)| p))
                .collect();
            for (i, chunk) in list.chunks(FREELIST_PER_PAGE).enumerate() {
                let next = chain.get(i + 1).copied().unwrap_or(0);
                let buf = encode_freelist_page(chain[i], next, chunk);
                w.dirty.insert(chain[i], Arc::new(buf));
            }
            w.meta.freelist_head = chain.first().copied().unwrap_or(0);
            w.meta.freelist_count = list.len() as u64;
            w.freelist_pages = chain;
            let meta = w.meta.clone();
            let mut dirty = std::mem::take(&mut w.dirty);
            for buf in dirty.values_mut() {
                btree::set_checksum(Arc::make_mut(buf).as_mut_slice());
            }
            let pages: Vec<(PageNo, PageBuf)> =
                dirty.iter().map(|(k, v)| (*k, v.clone())).collect();
            w.inflight = Arc::new(dirty);
            w.meta.generation += 1;
            // Submit while still holding the writer lock and without an await in
            // between: the commit is queued even if this future is dropped.
            // The cache gets the new versions now, not after the commit: a page
            // reused by this generation may still be cached with its old content,
            // and no snapshot can reach it (see the reuse rule), so replacing it
            // early is safe while replacing it late could be skipped if this
            // future is dropped.
            for (no, buf) in &pages {
                self.inner.cache.put(*no, buf.clone());
            }
            let fut = self.inner.store.commit(Commit {
                pages,
                meta: meta.encode(),
                durability: Durability::Durable,
            });
            (fut, meta, seq)
        };
        match fut.await {
            Ok(()) => {
                let etag = meta.last_etag;
                {
                    let mut sh = self.inner.shared();
                    sh.visible = meta;
                    sh.durable_seq = sh.durable_seq.max(seq);
                }
                self.inner.commits.committed(etag);
                Ok(())
            }
            Err(e) => {
                self.inner.shared().failed = Some(e.to_string());
                self.inner.commits.end();
                Err(e.into())
            }
        }
    }

    /// A subscription to this database's commits: the engine's one commit
    /// observer, which every live reader (hub sessions, edge clients, indexes)
    /// uses. See [`CommitWatch`].
    pub fn watch_commits(&self) -> CommitWatch {
        self.inner.commits.subscribe()
    }

    /// A consistent read-only view of the last committed state.
    pub fn snapshot(&self) -> Snapshot<S> {
        let mut sh = self.inner.shared();
        let meta = sh.visible.clone();
        *sh.readers.entry(meta.generation).or_insert(0) += 1;
        Snapshot {
            inner: self.inner.clone(),
            meta,
        }
    }

    /// Reads a live document (`None` if absent or deleted).
    pub async fn get(&self, id: &str) -> Result<Option<Document>, Error> {
        self.snapshot().get(id).await
    }

    /// Reads the newest version of a document including tombstones.
    pub async fn get_version(&self, id: &str) -> Result<Option<Document>, Error> {
        self.snapshot().get_version(id).await
    }

    /// Live documents whose id starts with `prefix` (case-insensitive), in id
    /// order, after the id `after` (for paging), at most `limit`.
    pub async fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Document>, Error> {
        self.snapshot().scan(prefix, after, limit).await
    }

    /// Document versions (tombstones included) with etag greater than `since`,
    /// in etag order, at most `limit`.
    pub async fn changes(&self, since: u64, limit: usize) -> Result<Vec<Document>, Error> {
        self.snapshot().changes(since, limit).await
    }

    /// [`Database::changes`] with bodies left as JSON text.
    pub async fn changes_raw(&self, since: u64, limit: usize) -> Result<Vec<doc::RawDoc>, Error> {
        self.snapshot().changes_raw(since, limit).await
    }

    /// Live documents of a collection (case-insensitive), in id order, after `after`.
    pub async fn by_collection(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Document>, Error> {
        self.snapshot()
            .by_collection(collection, after, limit)
            .await
    }

    /// Collections with their live document counts, by name.
    pub async fn collections(&self) -> Result<Vec<(String, u64)>, Error> {
        self.snapshot().collections().await
    }

    /// Conflicted documents (each with its concurrent versions in
    /// [`Document::conflicts`]), in id order, after the id `after`.
    pub async fn conflicts(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Document>, Error> {
        self.snapshot().conflicts(after, limit).await
    }

    /// The value of a local record (see [`Batch::set_local`]).
    pub async fn get_local(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.snapshot().get_local(key).await
    }

    /// Local records whose key starts with `prefix`, in key order.
    pub async fn scan_locals(
        &self,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, Error> {
        self.snapshot().scan_locals(prefix, limit).await
    }

    /// Number of live documents.
    pub async fn count(&self) -> Result<u64, Error> {
        Ok(self.inner.shared().visible.doc_count)
    }

    /// Counters.
    pub fn stats(&self) -> DbStats {
        let m = self.inner.shared().visible.clone();
        DbStats {
            db_id: m.db_id.to_string(),
            documents: m.doc_count,
            tombstones: m.tombstone_count,
            last_etag: m.last_etag,
            pages: m.next_page - 1,
            free_pages: m.freelist_count,
            generation: m.generation,
            cache: self.inner.cache.stats(),
        }
    }

    /// Reads every page reachable from the last committed state, verifying
    /// checksums, key order, and that the indexes and counters agree; also that
    /// every allocated page is either in use or free exactly once.
    pub async fn integrity_check(&self) -> Result<IntegrityReport, Error> {
        self.snapshot().integrity_check().await
    }

    /// Flushes anything pending and closes the store.
    ///
    /// A database poisoned by a failed commit still closes (its failed writes
    /// were already reported to their callers); a flush that fails here is
    /// returned after the store is closed.
    pub async fn close(&self) -> Result<(), Error> {
        let seq = self.inner.writer.lock().await.seq;
        let poisoned = self.inner.shared().failed.is_some();
        let flushed = if poisoned {
            Ok(())
        } else {
            self.wait_durable(seq).await
        };
        {
            let mut sh = self.inner.shared();
            if sh.closed {
                return flushed;
            }
            sh.closed = true;
        }
        self.inner.commits.end();
        let synced = if flushed.is_ok() && !poisoned && !self.inner.read_only {
            self.inner.store.sync().await.map_err(Error::from)
        } else {
            Ok(())
        };
        self.inner.store.close().await?;
        flushed.and(synced)
    }
}

/// Holds the writer lock during a transaction; rolls the working state back
/// unless the transaction completed.
struct TxnGuard<'a> {
    w: futures::lock::MutexGuard<'a, Working>,
    save: Option<Meta>,
}

impl Drop for TxnGuard<'_> {
    fn drop(&mut self) {
        if let Some(meta) = self.save.take() {
            self.w.rollback(meta);
        }
    }
}

/// Resets the flushing flag and wakes waiters even if the flush future is dropped.
struct FlushGuard<'a, S> {
    inner: &'a Inner<S>,
}

impl<S> Drop for FlushGuard<'_, S> {
    fn drop(&mut self) {
        let mut sh = self.inner.shared();
        sh.flushing = false;
        for tx in sh.waiters.drain(..) {
            let _ = tx.send(());
        }
    }
}

// ---------------------------------------------------------------------------
// Applying writes

enum Prepared {
    Put {
        id: String,
        key: Vec<u8>,
        body: Vec<u8>,
        collection: Option<String>,
        expected: Expected,
        resolve: bool,
    },
    Delete {
        id: String,
        key: Vec<u8>,
        expected: Expected,
        resolve: bool,
    },
    Remote {
        id: String,
        key: Vec<u8>,
        collection: Option<String>,
        versions: Vec<RawVersion>,
        source: Option<String>,
        policy: ConflictPolicy,
    },
    Local {
        key: Vec<u8>,
        value: Option<Vec<u8>>,
    },
}

/// Checks one received version: a non-empty change vector, and a body that
/// is a JSON object within the size limit (empty for a deletion).
fn check_remote_version(id: &str, v: &RawVersion) -> Result<(), Error> {
    if v.change_vector.is_empty() {
        return Err(InputError::InvalidChangeVector(format!(
            "a received version of {:?} has an empty change vector",
            clip(id)
        ))
        .into());
    }
    if v.deleted {
        if !v.body.is_empty() {
            return Err(InputError::InvalidJson(format!(
                "a deletion of {:?} carries a body",
                clip(id)
            ))
            .into());
        }
        return Ok(());
    }
    if v.body.len() > doc::MAX_BODY_BYTES {
        return Err(InputError::TooLarge {
            id: clip(id),
            size: v.body.len(),
            max: doc::MAX_BODY_BYTES,
        }
        .into());
    }
    if !doc::is_json_object(&v.body) {
        return Err(InputError::InvalidJson(format!(
            "the body of a received version of {:?} is not a JSON object",
            clip(id)
        ))
        .into());
    }
    Ok(())
}

fn prepare(op: Op) -> Result<Prepared, Error> {
    match op {
        Op::Put { id, body, opts } => {
            doc::validate_id(&id)?;
            if !body.is_object() {
                return Err(InputError::InvalidJson(format!(
                    "the body of {:?} must be a JSON object",
                    clip(&id)
                ))
                .into());
            }
            let collection = match opts
                .collection
                .or_else(|| doc::collection_of(&body).map(str::to_string))
            {
                Some(c) => {
                    doc::validate_collection(&c)?;
                    Some(c)
                }
                None => None,
            };
            let json =
                serde_json::to_vec(&body).map_err(|e| InputError::InvalidJson(e.to_string()))?;
            if json.len() > doc::MAX_BODY_BYTES {
                return Err(InputError::TooLarge {
                    id: clip(&id),
                    size: json.len(),
                    max: doc::MAX_BODY_BYTES,
                }
                .into());
            }
            let key = doc::id_key(&id);
            check_key_len(&id, &key, collection.as_deref())?;
            Ok(Prepared::Put {
                id,
                key,
                body: json,
                collection,
                expected: opts.expected,
                resolve: false,
            })
        }
        Op::Delete { id, expected } => {
            doc::validate_id(&id)?;
            let key = doc::id_key(&id);
            check_key_len(&id, &key, None)?;
            Ok(Prepared::Delete {
                id,
                key,
                expected,
                resolve: false,
            })
        }
        Op::Resolve {
            id,
            body: Some(body),
            collection,
        } => {
            let opts = PutOptions {
                collection,
                expected: Expected::Any,
            };
            match prepare(Op::Put { id, body, opts })? {
                Prepared::Put {
                    id,
                    key,
                    body,
                    collection,
                    expected,
                    ..
                } => Ok(Prepared::Put {
                    id,
                    key,
                    body,
                    collection,
                    expected,
                    resolve: true,
                }),
                other => Ok(other),
            }
        }
        Op::Resolve { id, body: None, .. } => {
            doc::validate_id(&id)?;
            let key = doc::id_key(&id);
            check_key_len(&id, &key, None)?;
            Ok(Prepared::Delete {
                id,
                key,
                expected: Expected::Any,
                resolve: true,
            })
        }
        Op::Remote { doc: d, policy } => {
            doc::validate_id(&d.id)?;
            if let Some(c) = &d.collection {
                doc::validate_collection(c)?;
            }
            if d.versions.is_empty() || d.versions.len() > doc::MAX_VERSIONS {
                return Err(InputError::InvalidArgument(format!(
                    "a received document {:?} has {} versions (1 to {} allowed)",
                    clip(&d.id),
                    d.versions.len(),
                    doc::MAX_VERSIONS
                ))
                .into());
            }
            for v in &d.versions {
                check_remote_version(&d.id, v)?;
            }
            if let Some(s) = &d.source
                && s.len() > doc::MAX_SOURCE_BYTES
            {
                return Err(InputError::InvalidArgument("source name too long".into()).into());
            }
            let key = doc::id_key(&d.id);
            check_key_len(&d.id, &key, d.collection.as_deref())?;
            Ok(Prepared::Remote {
                id: d.id,
                key,
                collection: d.collection,
                versions: d.versions,
                source: d.source,
                policy,
            })
        }
        Op::SetLocal { key, value } => {
            if key.is_empty() || key.len() > btree::MAX_KEY {
                return Err(InputError::InvalidArgument(format!(
                    "local record keys are 1 to {} bytes",
                    btree::MAX_KEY
                ))
                .into());
            }
            if value.as_ref().is_some_and(|v| v.len() > MAX_LOCAL_BYTES) {
                return Err(InputError::InvalidArgument(format!(
                    "local record values are at most {MAX_LOCAL_BYTES} bytes"
                ))
                .into());
            }
            Ok(Prepared::Local { key, value })
        }
    }
}

fn check_key_len(id: &str, key: &[u8], coll: Option<&str>) -> Result<(), Error> {
    let len = key.len() + coll.map_or(0, |c| c.len() * 3 + 1);
    if len > btree::MAX_KEY {
        return Err(InputError::InvalidId {
            id: clip(id),
            reason: "too long once normalised",
        }
        .into());
    }
    Ok(())
}

fn check_expected(
    id: &str,
    expected: &Expected,
    current: Option<&DocumentMeta>,
) -> Result<(), Error> {
    let live = current.filter(|m| !m.flags.is_tombstone());
    let ok = match expected {
        Expected::Any => true,
        Expected::Missing => live.is_none(),
        Expected::Cv(cv) => live.is_some_and(|m| &m.change_vector == cv),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::ConcurrencyConflict {
            id: clip(id),
            expected: match expected {
                Expected::Cv(cv) => cv.to_text(),
                _ => String::new(),
            },
            actual: live.map(|m| m.change_vector.to_text()).unwrap_or_default(),
        })
    }
}

/// The versions held for `key` (winner first), its metadata, and its id as stored.
async fn held_versions<S: PageStore>(
    ctx: &mut WCtx<'_, S>,
    key: &[u8],
) -> Result<Option<(DocumentMeta, Vec<RawVersion>)>, Error> {
    let Some(rec) = btree::get(ctx, ctx.w.meta.docs, key).await? else {
        return Ok(None);
    };
    let (_, meta, body, sibs) = doc::decode_raw(&rec).map_err(|e| Error::Corrupt {
        page: 0,
        location: None,
        reason: format!("record of {:?}: {e}", String::from_utf8_lossy(key)),
    })?;
    let mut all = Vec::with_capacity(1 + sibs.len());
    all.push(RawVersion {
        change_vector: meta.change_vector.clone(),
        last_modified_ms: meta.last_modified_ms,
        deleted: meta.flags.is_tombstone(),
        body: body.to_vec(),
    });
    all.extend(sibs);
    Ok(Some((meta, all)))
}

async fn apply<S: PageStore>(
    ctx: &mut WCtx<'_, S>,
    p: &Prepared,
    db: DbId,
    now: i64,
) -> Result<Option<WriteResult>, Error> {
    let (id, key, expected, resolve) = match p {
        Prepared::Put {
            id,
            key,
            expected,
            resolve,
            ..
        }
        | Prepared::Delete {
            id,
            key,
            expected,
            resolve,
        } => (id, key, expected, *resolve),
        Prepared::Remote {
            id,
            key,
            collection,
            versions,
            source,
            policy,
        } => {
            return apply_remote(
                ctx,
                (id, key, collection.as_deref()),
                versions,
                source.as_deref(),
                *policy,
                (db, now),
            )
            .await;
        }
        Prepared::Local { key, value } => {
            let root = ctx.w.meta.locals;
            ctx.w.meta.locals = match value {
                Some(v) => btree::insert(ctx, root, key, v).await?.0,
                None => btree::remove(ctx, root, key).await?.0,
            };
            return Ok(None);
        }
    };
    let held = held_versions(ctx, key).await?;
    let current = held.as_ref().map(|h| h.0.clone());
    check_expected(id, expected, current.as_ref())?;
    let siblings: &[RawVersion] = match &held {
        Some((_, all)) if all.len() > 1 => &all[1..],
        _ => &[],
    };
    let (collection, body, tombstone) = match p {
        // A put that names no collection keeps the document's current one.
        Prepared::Put {
            collection, body, ..
        } => (
            collection
                .clone()
                .or_else(|| current.as_ref().and_then(|m| m.collection.clone())),
            body.as_slice(),
            false,
        ),
        _ => match &current {
            Some(m) if !m.flags.is_tombstone() || (resolve && !siblings.is_empty()) => {
                (m.collection.clone(), &[][..], true)
            }
            _ => return Ok(None),
        },
    };
    let etag = ctx.w.meta.last_etag + 1;
    // A local write on a conflicted document supersedes every concurrent
    // version (its change vector merges theirs): the writer saw them all. This
    // keeps the versions of a document an antichain (a new local entry could
    // otherwise dominate some concurrent versions and not others).
    let mut cv = current
        .as_ref()
        .map(|m| m.change_vector.clone())
        .unwrap_or_default();
    for s in siblings {
        cv = cv.merge(&s.change_vector);
    }
    let cv = cv.with(db, etag);
    let kept: &[RawVersion] = &[];
    let meta = DocumentMeta {
        collection: collection.clone(),
        change_vector: cv.clone(),
        etag,
        last_modified_ms: now,
        flags: DocFlags::default()
            .with(DocFlags::TOMBSTONE, tombstone)
            .with(DocFlags::CONFLICTED, !kept.is_empty()),
        source: None,
    };
    let rec = doc::encode_record_with(id, &meta, body, kept);
    write_version(ctx, key, &rec, current.as_ref(), &meta).await?;
    Ok(Some(WriteResult {
        id: id.clone(),
        etag,
        change_vector: cv,
        deleted: tombstone,
        outcome: WriteOutcome::Written,
    }))
}

/// Merges received versions into the held ones and stores the result.
async fn apply_remote<S: PageStore>(
    ctx: &mut WCtx<'_, S>,
    (id, key, collection): (&String, &[u8], Option<&str>),
    incoming: &[RawVersion],
    source: Option<&str>,
    policy: ConflictPolicy,
    (db, now): (DbId, i64),
) -> Result<Option<WriteResult>, Error> {
    let held = held_versions(ctx, key).await?;
    let (current, held_all) = match held {
        Some((m, all)) => (Some(m), all),
        None => (None, Vec::new()),
    };
    let m = merge::merge(&held_all, incoming);
    if !m.changed {
        return Ok(None);
    }
    let etag = ctx.w.meta.last_etag + 1;
    // The result keeps the source tag when every version in it came from
    // that source: the versions received now, and the held ones if they too
    // were stored as received from it. That peer holds them all (or newer),
    // so they are not sent back to it; in particular an edge does not push
    // back a conflict it merged from versions its hub sent (a read-only edge
    // would get `write_denied` for a document it never touched).
    let held_from_source = source.is_some()
        && current
            .as_ref()
            .is_some_and(|c| c.source.as_deref() == source);
    let all_from_source = m.from_incoming.len() == m.versions.len() || held_from_source;
    let source = if all_from_source { source } else { None };
    let (versions, outcome, source) = if m.versions.len() == 1 {
        (m.versions, WriteOutcome::Applied, source)
    } else if policy == ConflictPolicy::Manual {
        (m.versions, WriteOutcome::Conflict, source)
    } else {
        let w = match policy {
            ConflictPolicy::HubWins => m.held_winner.unwrap_or(0),
            _ => m.from_incoming.first().copied().unwrap_or(0),
        };
        let mut cv = m.versions[0].change_vector.clone();
        for v in &m.versions[1..] {
            cv = cv.merge(&v.change_vector);
        }
        let winner = &m.versions[w];
        let resolution = RawVersion {
            change_vector: cv.with(db, etag),
            last_modified_ms: now,
            deleted: winner.deleted,
            body: winner.body.clone(),
        };
        (vec![resolution], WriteOutcome::Resolved, None)
    };
    let winner = &versions[0];
    let meta = DocumentMeta {
        collection: collection
            .map(str::to_string)
            .or_else(|| current.as_ref().and_then(|c| c.collection.clone())),
        change_vector: winner.change_vector.clone(),
        etag,
        last_modified_ms: winner.last_modified_ms,
        flags: DocFlags::default()
            .with(DocFlags::TOMBSTONE, winner.deleted)
            .with(DocFlags::CONFLICTED, versions.len() > 1),
        source: source.map(str::to_string),
    };
    let rec = doc::encode_record_with(id, &meta, &winner.body, &versions[1..]);
    write_version(ctx, key, &rec, current.as_ref(), &meta).await?;
    Ok(Some(WriteResult {
        id: id.clone(),
        etag,
        change_vector: meta.change_vector,
        deleted: winner.deleted,
        outcome,
    }))
}

/// Stores a new version of the document at `key`, maintaining every index.
async fn write_version<S: PageStore>(
    ctx: &mut WCtx<'_, S>,
    key: &[u8],
    rec: &[u8],
    old: Option<&DocumentMeta>,
    new: &DocumentMeta,
) -> Result<(), Error> {
    let m = ctx.w.meta.clone();
    let (docs, _) = btree::insert(ctx, m.docs, key, rec).await?;
    let mut etags = m.etags;
    if let Some(o) = old {
        etags = btree::remove(ctx, etags, &o.etag.to_be_bytes()).await?.0;
    }
    etags = btree::insert(ctx, etags, &new.etag.to_be_bytes(), key)
        .await?
        .0;
    let mut colls = m.colls;
    let old_live_coll = old
        .filter(|o| !o.flags.is_tombstone())
        .and_then(|o| o.collection.as_deref());
    let new_live_coll = if new.flags.is_tombstone() {
        None
    } else {
        new.collection.as_deref()
    };
    if old_live_coll.map(coll_key) != new_live_coll.map(coll_key) {
        if let Some(c) = old_live_coll {
            colls = btree::remove(ctx, colls, &coll_index_key(c, key)).await?.0;
            ctx.w.add_coll_delta(c, -1);
        }
        if let Some(c) = new_live_coll {
            colls = btree::insert(ctx, colls, &coll_index_key(c, key), &[])
                .await?
                .0;
            ctx.w.add_coll_delta(c, 1);
        }
    }
    let was_conflicted = old.is_some_and(|o| o.flags.is_conflicted());
    let is_conflicted = new.flags.is_conflicted();
    if was_conflicted != is_conflicted {
        let root = ctx.w.meta.conflicts;
        ctx.w.meta.conflicts = if is_conflicted {
            btree::insert(ctx, root, key, &[]).await?.0
        } else {
            btree::remove(ctx, root, key).await?.0
        };
    }
    let mm = &mut ctx.w.meta;
    mm.docs = docs;
    mm.etags = etags;
    mm.colls = colls;
    mm.last_etag = new.etag;
    let was_live = old.is_some_and(|o| !o.flags.is_tombstone());
    let was_tomb = old.is_some_and(|o| o.flags.is_tombstone());
    let is_tomb = new.flags.is_tombstone();
    mm.doc_count = mm.doc_count - u64::from(was_live) + u64::from(!is_tomb);
    mm.tombstone_count = mm.tombstone_count - u64::from(was_tomb) + u64::from(is_tomb);
    Ok(())
}

/// Applies one collection-count delta to the `stats` tree. All its awaits
/// (page reads) come before its first change, so a future dropped half-way
/// leaves the tree unchanged.
async fn bump_stat<S: PageStore>(
    ctx: &mut WCtx<'_, S>,
    root: PageNo,
    k: &[u8],
    coll: &str,
    delta: i64,
) -> Result<PageNo, Error> {
    let cur = match btree::get(ctx, root, k).await? {
        Some(v) if v.len() >= 8 => u64::from_le_bytes(v[..8].try_into().unwrap_or_default()),
        _ => 0,
    };
    let n = cur.saturating_add_signed(delta);
    if n == 0 {
        return Ok(btree::remove(ctx, root, k).await?.0);
    }
    let mut v = n.to_le_bytes().to_vec();
    v.extend_from_slice(coll.as_bytes());
    Ok(btree::insert(ctx, root, k, &v).await?.0)
}

// ---------------------------------------------------------------------------
// Reads

impl<S: PageStore> Snapshot<S> {
    fn reader(&self) -> SnapRead<'_, S> {
        SnapRead { inner: &self.inner }
    }

    /// The etag of the last write visible in this snapshot.
    pub fn last_etag(&self) -> u64 {
        self.meta.last_etag
    }

    /// Number of live documents in this snapshot.
    pub fn count(&self) -> u64 {
        self.meta.doc_count
    }

    /// Reads a live document.
    pub async fn get(&self, id: &str) -> Result<Option<Document>, Error> {
        Ok(self
            .get_version(id)
            .await?
            .filter(|d| !d.meta.flags.is_tombstone()))
    }

    /// Reads the newest version of a document including tombstones.
    pub async fn get_version(&self, id: &str) -> Result<Option<Document>, Error> {
        doc::validate_id(id)?;
        let key = doc::id_key(id);
        match btree::get(&self.reader(), self.meta.docs, &key).await? {
            Some(rec) => Ok(Some(decode_doc(&rec, &key)?)),
            None => Ok(None),
        }
    }

    /// See [`Database::scan`].
    pub async fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Document>, Error> {
        let pk = doc::id_key(prefix);
        let mut start = pk.clone();
        if let Some(a) = after {
            doc::validate_id(a)?;
            let mut ak = doc::id_key(a);
            ak.push(0);
            start = start.max(ak);
        }
        let mut out = Vec::new();
        let mut err = None;
        if limit == 0 {
            return Ok(out);
        }
        btree::scan(&self.reader(), self.meta.docs, &start, |k, rec| {
            if !k.starts_with(&pk) {
                return false;
            }
            match decode_doc(&rec, k) {
                Ok(d) if d.meta.flags.is_tombstone() => true,
                Ok(d) => {
                    out.push(d);
                    out.len() < limit
                }
                Err(e) => {
                    err = Some(e);
                    false
                }
            }
        })
        .await?;
        err.map_or(Ok(out), Err)
    }

    /// Counts the entries of the changes feed after `since` whose id key
    /// (the lowercase id) passes `filter`, reading only the etag index.
    pub async fn count_changes(
        &self,
        since: u64,
        mut filter: impl FnMut(&str) -> bool,
    ) -> Result<u64, Error> {
        let mut n = 0u64;
        if since == u64::MAX {
            return Ok(0);
        }
        btree::scan(
            &self.reader(),
            self.meta.etags,
            &(since + 1).to_be_bytes(),
            |_, idk| {
                if filter(&String::from_utf8_lossy(&idk)) {
                    n += 1;
                }
                true
            },
        )
        .await?;
        Ok(n)
    }

    /// Id keys of the changes feed after `since`, at most `limit`.
    async fn changed_keys(&self, since: u64, limit: usize) -> Result<Vec<Vec<u8>>, Error> {
        let mut keys = Vec::new();
        if limit == 0 || since == u64::MAX {
            return Ok(keys);
        }
        btree::scan(
            &self.reader(),
            self.meta.etags,
            &(since + 1).to_be_bytes(),
            |_, idk| {
                keys.push(idk);
                keys.len() < limit
            },
        )
        .await?;
        Ok(keys)
    }

    /// See [`Database::changes`].
    pub async fn changes(&self, since: u64, limit: usize) -> Result<Vec<Document>, Error> {
        let keys = self.changed_keys(since, limit).await?;
        self.load_docs(keys, self.meta.etags, "etag").await
    }

    /// The changes feed like [`Snapshot::changes`], with bodies left as JSON
    /// text (nothing parsed): what replication sends.
    pub async fn changes_raw(&self, since: u64, limit: usize) -> Result<Vec<doc::RawDoc>, Error> {
        let keys = self.changed_keys(since, limit).await?;
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            match btree::get(&self.reader(), self.meta.docs, &k).await? {
                Some(rec) => out.push(doc::decode_raw_doc(&rec).map_err(|e| Error::Corrupt {
                    page: 0,
                    location: None,
                    reason: format!("record of {:?}: {e}", String::from_utf8_lossy(&k)),
                })?),
                None => {
                    return Err(Error::Corrupt {
                        page: self.meta.etags,
                        location: None,
                        reason: "etag index points to a missing document".into(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Reads the documents of `keys` (id keys taken from the index rooted at
    /// `index`); a key without a document is index corruption.
    async fn load_docs(
        &self,
        keys: Vec<Vec<u8>>,
        index: PageNo,
        what: &str,
    ) -> Result<Vec<Document>, Error> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            match btree::get(&self.reader(), self.meta.docs, &k).await? {
                Some(rec) => out.push(decode_doc(&rec, &k)?),
                None => {
                    return Err(Error::Corrupt {
                        page: index,
                        location: None,
                        reason: format!("{what} index points to a missing document"),
                    });
                }
            }
        }
        Ok(out)
    }

    /// See [`Database::by_collection`].
    pub async fn by_collection(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Document>, Error> {
        doc::validate_collection(collection)?;
        let mut pk = coll_key(collection);
        pk.push(0);
        let mut start = pk.clone();
        if let Some(a) = after {
            doc::validate_id(a)?;
            start = coll_index_key(collection, &doc::id_key(a));
            start.push(0);
        }
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut idkeys = Vec::new();
        btree::scan(&self.reader(), self.meta.colls, &start, |k, _| {
            if !k.starts_with(&pk) {
                return false;
            }
            idkeys.push(k[pk.len()..].to_vec());
            idkeys.len() < limit
        })
        .await?;
        self.load_docs(idkeys, self.meta.colls, "collection").await
    }

    /// See [`Database::conflicts`].
    pub async fn conflicts(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Document>, Error> {
        let mut start = Vec::new();
        if let Some(a) = after {
            doc::validate_id(a)?;
            start = doc::id_key(a);
            start.push(0);
        }
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut keys = Vec::new();
        btree::scan(&self.reader(), self.meta.conflicts, &start, |k, _| {
            keys.push(k.to_vec());
            keys.len() < limit
        })
        .await?;
        self.load_docs(keys, self.meta.conflicts, "conflict").await
    }

    /// See [`Database::get_local`].
    pub async fn get_local(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        btree::get(&self.reader(), self.meta.locals, key).await
    }

    /// See [`Database::scan_locals`].
    pub async fn scan_locals(
        &self,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, Error> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        btree::scan(&self.reader(), self.meta.locals, prefix, |k, v| {
            if !k.starts_with(prefix) {
                return false;
            }
            out.push((k.to_vec(), v.to_vec()));
            out.len() < limit
        })
        .await?;
        Ok(out)
    }

    /// See [`Database::collections`].
    pub async fn collections(&self) -> Result<Vec<(String, u64)>, Error> {
        let mut out = Vec::new();
        btree::scan(&self.reader(), self.meta.stats, b"", |_, v| {
            if v.len() >= 8 {
                let n = u64::from_le_bytes(v[..8].try_into().unwrap_or_default());
                out.push((String::from_utf8_lossy(&v[8..]).into_owned(), n));
            }
            true
        })
        .await?;
        Ok(out)
    }

    /// See [`Database::integrity_check`].
    pub async fn integrity_check(&self) -> Result<IntegrityReport, Error> {
        let m = &self.meta;
        let r = self.reader();
        let mut rep = IntegrityReport::default();
        let mut pages: Vec<PageNo> = Vec::new();
        let mut counts = HashMap::new();
        for (name, root) in [
            ("docs", m.docs),
            ("etags", m.etags),
            ("colls", m.colls),
            ("stats", m.stats),
            ("locals", m.locals),
            ("conflicts", m.conflicts),
        ] {
            match btree::collect_pages(&r, root, &mut pages).await {
                Ok(n) => {
                    counts.insert(name, n);
                }
                Err(e) => rep.problems.push(format!("{name} tree: {e}")),
            }
        }
        // Documents: decode every record, count, and cross-check the indexes.
        let mut coll_live: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        let mut bad = Vec::new();
        let mut conflicted = 0u64;
        let scan = btree::scan(&r, m.docs, b"", |k, rec| {
            match decode_meta(&rec, k) {
                Ok((id, dm)) => {
                    if doc::id_key(&id) != k {
                        bad.push(format!("record {id:?} stored under a different key"));
                    }
                    if dm.flags.is_conflicted() {
                        conflicted += 1;
                    }
                    if dm.flags.is_tombstone() {
                        rep.tombstones += 1;
                    } else {
                        rep.documents += 1;
                        if let Some(c) = &dm.collection {
                            *coll_live.entry(coll_key(c)).or_default() += 1;
                        }
                    }
                }
                Err(e) => bad.push(e.to_string()),
            }
            true
        })
        .await;
        if let Err(e) = scan {
            rep.problems.push(format!("docs scan: {e}"));
        }
        rep.problems.extend(bad);
        if rep.documents != m.doc_count || rep.tombstones != m.tombstone_count {
            rep.problems.push(format!(
                "counters say {} documents and {} tombstones; found {} and {}",
                m.doc_count, m.tombstone_count, rep.documents, rep.tombstones
            ));
        }
        if let (Some(d), Some(e)) = (counts.get("docs"), counts.get("etags"))
            && d != e
        {
            rep.problems
                .push(format!("{d} documents but {e} etag index entries"));
        }
        if let Some(c) = counts.get("conflicts")
            && *c != conflicted
        {
            rep.problems.push(format!(
                "{conflicted} conflicted documents but {c} conflict index entries"
            ));
        }
        let live_in_colls: u64 = coll_live.values().sum();
        if let Some(c) = counts.get("colls")
            && *c != live_in_colls
        {
            rep.problems.push(format!(
                "{live_in_colls} documents in collections but {c} collection index entries"
            ));
        }
        let stats = self.collections().await.unwrap_or_default();
        let stats_map: BTreeMap<Vec<u8>, u64> =
            stats.iter().map(|(n, c)| (coll_key(n), *c)).collect();
        if stats_map != coll_live {
            rep.problems
                .push("collection counts disagree with the documents".into());
        }
        // Free list.
        let mut next = m.freelist_head;
        let mut free_listed = 0u64;
        while next != 0 && next < m.next_page {
            pages.push(next);
            match read_cached(&self.inner, next, KIND_FREELIST).await {
                Ok(buf) => {
                    let (following, _, entries) = decode_freelist_page(&buf);
                    free_listed += entries.len() as u64;
                    pages.extend(entries);
                    next = following;
                }
                Err(e) => {
                    rep.problems.push(format!("free list: {e}"));
                    break;
                }
            }
        }
        if free_listed != m.freelist_count {
            rep.problems.push(format!(
                "free list holds {free_listed} pages, meta says {}",
                m.freelist_count
            ));
        }
        rep.pages_checked = pages.len() as u64;
        // Every page 1..next_page used or free exactly once.
        let mut seen = vec![0u8; m.next_page as usize];
        for p in pages {
            match seen.get_mut(p as usize) {
                Some(s) if p != 0 => *s = s.saturating_add(1),
                _ => rep.problems.push(format!(
                    "page {p} is beyond the allocated {} pages",
                    m.next_page
                )),
            }
        }
        let dup: Vec<usize> = seen
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 1)
            .map(|(i, _)| i)
            .take(10)
            .collect();
        if !dup.is_empty() {
            rep.problems
                .push(format!("pages used more than once: {dup:?}"));
        }
        let lost = seen.iter().skip(1).filter(|c| **c == 0).count();
        if lost > 0 && rep.problems.is_empty() {
            rep.problems
                .push(format!("{lost} pages neither used nor free (leaked)"));
        }
        Ok(rep)
    }
}
