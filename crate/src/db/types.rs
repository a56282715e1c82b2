//! The public types of the database API: open options, write options and
//! batches, received documents, write outcomes, counters and the integrity
//! report. The operations themselves are methods of [`super::Database`].

use std::sync::Arc;

use serde_json::Value;

use crate::cache::{CacheStats, DEFAULT_CACHE_BYTES};
use crate::cv::{ChangeVector, DbId};
use crate::doc::RawVersion;
use crate::policy::ConflictPolicy;

/// A source of wall-clock time in milliseconds since the Unix epoch (injectable
/// for tests and simulations).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Options for [`super::Database::open`].
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

/// One operation of a [`Batch`].
#[derive(Clone, Debug)]
pub(super) enum Op {
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
    /// Its versions (at least one, at most [`crate::doc::MAX_VERSIONS`]).
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
    pub(super) ops: Vec<Op>,
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
    /// Document records the reads met since the database was opened that do
    /// not decode (skipped; see [`super::Database::unreadable_seen`]).
    pub unreadable_records: u64,
}

/// Result of [`super::Database::integrity_check`].
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
