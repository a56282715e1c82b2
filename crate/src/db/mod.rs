//! The database: documents over copy-on-write B+trees, with group commit.
//!
//! This file holds the [`Database`] handle (opening, upgrading an older
//! format on open, refreshing, counters) and the shared state; the rest is
//! split by concern:
//! - `types.rs`: the public API types ([`OpenOptions`], [`Batch`], [`WriteResult`], ...);
//! - `meta.rs`: the meta record, its format versions, and the catalog of named trees;
//! - `alloc.rs`: page allocation, the undo journal, the persisted free list;
//! - `write.rs`: validating and applying writes (documents, indexes, counters);
//! - `commit.rs`: group commit, flush, close, the commit observer;
//! - `read.rs`: [`Snapshot`] and the reads;
//! - `check.rs`: the integrity check;
//! - `repair.rs`: finding and setting aside records that do not decode;
//! - `purge.rs`: removing documents and erasing their bytes physically;
//! - `compact.rs`: removing tombstones every replica has seen;
//! - `index/`: map and map/reduce indexes (definitions, steps, reduce trees, queries);
//! - `vacuum.rs`: moving pages down and giving the file's free tail back.
//!
//! ## Trees
//! The named B+trees (documents, the etag and collection indexes, collection
//! counts, local records, conflicts) are registered in the catalog of
//! `meta.rs`, which says what each holds.
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
//! A large transaction hands the pages it has finished to the store while it
//! is still applying (`PageStore::stage`, every `stage_after_ops()`
//! operations), so the file store writes them during the apply instead of
//! after it (`Working::take_stageable`, docs/design.md "Pipelined commit").
//!
//! Readers take a [`Snapshot`] of the last flushed generation. A page freed by
//! generation `g` is reused only once generation `g` is flushed and no snapshot
//! older than `g` is alive, so a snapshot's pages never change under it.

mod alloc;
mod audit;
mod check;
mod commit;
mod compact;
mod index;
mod meta;
mod origins;
mod purge;
mod read;
mod remote;
mod repair;
mod types;
mod upgrade;
mod vacuum;
mod write;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::channel::oneshot;

use crate::cache::PageCache;
use crate::cv::DbId;
use crate::error::{Error, InputError, OpenError};
use crate::platform::wall_clock_ms;
use crate::store::{PAGE_SIZE, PageStore};
use crate::watch::Publisher;

use alloc::Working;
use meta::{META_VERSION, Meta, Tree};

pub use audit::{
    AUDIT_FORMAT, AUDIT_RECORD_VERSION, AuditBad, AuditCertificate, AuditDoc, AuditEntry,
    AuditFill, AuditImport, AuditImportDoc, AuditKind, AuditPurgeReceipt, AuditPush, AuditRefusal,
    AuditReport, AuditScope, AuditVersion, GENESIS_HASH, MAX_AUDIT_PAYLOAD, chain_hash,
    decode_entry, encode_record, hex_of, sha256_hex,
};
pub use compact::CompactStep;
pub use index::{MAX_EMITS, MAX_VALUE_BYTES, OthersWait, STEP_DOCS, STEP_ENTRIES, STEP_TASKS};
pub use origins::Origin;
pub use purge::{
    PURGE_PENDING_KEY, PURGED_ID_PREFIX, PurgeReport, PurgeScope, PurgedDoc,
    ids_hash as purge_ids_hash, purged_id_hash, purged_id_key,
};
pub use read::{Snapshot, Spliced, UnreadableRecord};
pub use repair::{QUARANTINE_PREFIX, quarantine_key};
pub use types::{
    Batch, Clock, CommitInfo, DbStats, Expected, IntegrityReport, MAX_DOC_BYTES, MAX_LOCAL_BYTES,
    OpenOptions, PushGuard, PutOptions, Refusal, RemoteDoc, WriteOutcome, WriteResult,
};
pub use vacuum::VacuumReport;

/// State shared by writers, the flusher and readers (under a plain mutex).
struct Shared {
    /// The meta of the last flushed generation: what snapshots see.
    visible: Meta,
    /// Live snapshots by generation.
    readers: BTreeMap<u64, usize>,
    /// The last transaction that is durable.
    durable_seq: u64,
    /// Whether a flush is under way.
    flushing: bool,
    /// Transactions waiting for the flush under way.
    waiters: Vec<oneshot::Sender<()>>,
    /// Why the database refuses writes (a commit failed).
    failed: Option<String>,
    closed: bool,
    /// Grows whenever the visible state's documents or changes feed change
    /// ([`Snapshot::feed_epoch`]); not stored.
    feed_epoch: u64,
}

impl Shared {
    /// Makes `meta` the visible state, moving the feed epoch on when the
    /// documents or the changes feed changed. A modified tree always has a
    /// new root page (copy-on-write: the previous root is committed, and a
    /// page freed by a commit is not reused by it), so comparing the roots
    /// of two consecutive visible states is exact.
    fn make_visible(&mut self, meta: Meta) {
        if meta.root(Tree::Docs) != self.visible.root(Tree::Docs)
            || meta.root(Tree::Etags) != self.visible.root(Tree::Etags)
            || meta.last_etag != self.visible.last_etag
        {
            self.feed_epoch += 1;
        }
        self.visible = meta;
    }
}

struct Inner<S> {
    store: S,
    cache: PageCache,
    clock: Clock,
    db_id: DbId,
    writer: futures::lock::Mutex<Working>,
    shared: Mutex<Shared>,
    read_only: bool,
    /// What commits wait for ([`OpenOptions::durability`]).
    durability: crate::store::Durability,
    /// The commit observer ([`Database::watch_commits`]).
    commits: Publisher,
    /// Document records reads met that do not decode, by key
    /// ([`Database::unreadable_seen`]).
    unreadable: Mutex<BTreeMap<Vec<u8>, UnreadableRecord>>,
    /// Transactions between the start of their commit and its end (waiting
    /// for the writer lock, applying, or waiting to be durable): a flush
    /// with at most one asks the store for a lone commit
    /// ([`PageStore::commit_alone`]).
    txns: std::sync::atomic::AtomicUsize,
}

impl<S> Inner<S> {
    fn shared(&self) -> MutexGuard<'_, Shared> {
        // Shared is updated field by field with no await inside the lock; a panic
        // cannot leave it torn, so a poisoned lock is still usable.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

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

/// An open-time error met while refreshing an open database, in reading
/// `record` (the meta record, the free list).
fn open_to_error(record: &str, e: OpenError) -> Error {
    match e {
        OpenError::Store(s) => Error::Store(s),
        e => Error::CorruptRecord {
            record: record.into(),
            reason: e.to_string(),
        },
    }
}

impl<S: PageStore> Database<S> {
    /// Opens the database held by `store`, creating an empty one if the store is
    /// empty. Reads only the meta record; pages are read on demand, and the
    /// free list by the first write.
    ///
    /// A database of an older format version is upgraded: the meta record is
    /// rewritten in the current format, in one commit, before the open
    /// returns (if the process dies first, the old record is still there and
    /// the next open upgrades it). A newer version is refused with
    /// [`OpenError::Unsupported`].
    pub async fn open(store: S, opts: OpenOptions) -> Result<Self, OpenError> {
        Self::open_with(store, opts, false).await
    }

    /// Opens the database held by `store` for reading only: nothing is ever
    /// written (an empty store is not given a database: the open fails with
    /// [`OpenError::NotFound`]; an older format is read as it is, not
    /// upgraded), and every write fails with
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
        // A new database, or one of an older format, is committed right away
        // (its id; the meta record in the current format).
        let (meta, persist, old_version) = match existing {
            Some(b) => {
                let (meta, version) = Meta::decode(&b)?;
                (meta, version < META_VERSION && !read_only, version)
            }
            None => (
                Meta::new(opts.db_id.unwrap_or_else(DbId::random)),
                true,
                META_VERSION,
            ),
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
            writer: futures::lock::Mutex::new(Working::new(&meta, Vec::new(), Vec::new())),
            shared: Mutex::new(Shared {
                visible: meta.clone(),
                readers: BTreeMap::new(),
                durable_seq: 0,
                flushing: false,
                waiters: Vec::new(),
                failed: None,
                closed: false,
                feed_epoch: 0,
            }),
            read_only,
            durability: opts.durability,
            commits: Publisher::new(meta.last_etag),
            unreadable: Mutex::new(BTreeMap::new()),
            txns: std::sync::atomic::AtomicUsize::new(0),
        };
        // The free list is read by the first transaction, not here: a first
        // read needs none of it (`ensure_free_list`).
        *inner.writer.lock().await = Working::unloaded(&meta);
        let db = Database {
            inner: Arc::new(inner),
        };
        if persist {
            // One transaction (empty, or the upgrade's: see `upgrade`): its
            // flush commits the meta record in the current format (with the
            // free list) atomically.
            if old_version < 4 {
                db.build_origins().await.map_err(|e| match e {
                    Error::Store(s) => OpenError::Store(s),
                    e => OpenError::Corrupt(e.to_string()),
                })?;
            } else {
                // A new database: it has no free list to read.
                db.inner.writer.lock().await.seq += 1;
            }
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
        let (meta, _) = Meta::decode(&bytes).map_err(|e| open_to_error("meta record", e))?;
        if meta == self.inner.shared().visible && !recovering {
            return Ok(false);
        }
        if meta.db_id != self.inner.db_id {
            return Err(Error::CorruptRecord {
                record: "meta record".into(),
                reason: "the store now holds another database".into(),
            });
        }
        self.inner.cache.clear();
        // The transaction count goes on: it orders acknowledgements. The
        // free list is read by the next transaction (`ensure_free_list`).
        let seq = w.seq;
        *w = Working::unloaded(&meta);
        w.seq = seq;
        w.flushed_seq = seq;
        let mut sh = self.inner.shared();
        // Another process's commits: whatever they changed, pages read
        // before are not this state's.
        sh.feed_epoch += 1;
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

    /// Number of live documents.
    pub async fn count(&self) -> Result<u64, Error> {
        Ok(self.inner.shared().visible.doc_count)
    }

    /// The etag of the last committed write (what [`Database::stats`]
    /// reports as `last_etag`, without gathering the other counters: sync
    /// asks for it on every batch it applies).
    pub fn last_etag(&self) -> u64 {
        self.inner.shared().visible.last_etag
    }

    /// Counters.
    pub fn stats(&self) -> DbStats {
        let mut stats = {
            let sh = self.inner.shared();
            let m = &sh.visible;
            DbStats {
                db_id: m.db_id.to_string(),
                documents: m.doc_count,
                tombstones: m.tombstone_count,
                last_etag: m.last_etag,
                pages: m.next_page - 1,
                free_pages: m.freelist_count,
                generation: m.generation,
                cache: Default::default(),
                unreadable_records: 0,
            }
        };
        stats.cache = self.inner.cache.stats();
        stats.unreadable_records = self
            .inner
            .unreadable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len() as u64;
        stats
    }

    /// The document records that reads met since the database was opened and
    /// could not decode (each skipped: see [`UnreadableRecord`]), by key; at
    /// most the first 1,024. A record set aside by
    /// [`Database::quarantine_unreadable`] leaves the list.
    pub fn unreadable_seen(&self) -> Vec<UnreadableRecord> {
        let seen = self
            .inner
            .unreadable
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        seen.values().cloned().collect()
    }
}
