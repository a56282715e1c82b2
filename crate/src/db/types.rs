//! The public types of the database API: open options, write options and
//! batches, received documents, write outcomes, counters and the integrity
//! report. The operations themselves are methods of [`super::Database`].

use std::sync::Arc;

use serde_json::Value;

use crate::cache::{CacheStats, DEFAULT_CACHE_BYTES};
use crate::cv::{ChangeVector, DbId};
use crate::doc::RawVersion;
use crate::policy::{ConflictPolicy, Policies};
use crate::store::Durability;

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
    /// What a commit waits for (default [`Durability::Durable`]: on durable
    /// storage before a write resolves). [`Durability::Relaxed`]: a write
    /// resolves once its commit is written and visible, and is made durable
    /// by a later durable commit or by `close`; a
    /// crash of the machine (not of the process) may lose the last relaxed
    /// commits, never tear one. For browser apps that prefer speed; a hub
    /// never uses it.
    pub durability: Durability,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            cache_bytes: DEFAULT_CACHE_BYTES,
            clock: None,
            db_id: None,
            durability: Durability::Durable,
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
    /// A put of a body given as JSON text (`Batch::put_json`).
    PutJson {
        id: String,
        json: Vec<u8>,
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
        guard: Option<(Arc<PushGuard>, bool)>,
    },
    SetLocal {
        key: Vec<u8>,
        value: Option<Vec<u8>>,
    },
    ExpectLocal {
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        refusal: Refusal,
    },
    Audit {
        kind: super::audit::AuditKind,
        payload: Vec<u8>,
    },
    /// `Batch::audit_writes`.
    AuditWrites {
        kind: super::audit::AuditKind,
        base: Vec<u8>,
        fill: super::audit::AuditFill,
    },
    #[cfg(feature = "testing")]
    AuditOverwrite {
        seq: u64,
        value: Vec<u8>,
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
    /// A document pushed under a write-only grant already existed and was
    /// not this device's: it was kept unchanged (write-only is create-only).
    Kept,
}

/// What a hub knows of the edge session that pushed a batch: the facts the
/// causality rules of `docs/security.md` are checked against, in the
/// transaction that applies the batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushGuard {
    /// The owner name of the pushing peer: `edge:<identity>`.
    pub owner: String,
    /// The pushing device's database id.
    pub device: DbId,
    /// The source tag versions from this device are stored with
    /// (`edge:<identity>/<device>`).
    pub source: String,
    /// The hub etag up to which this session was delivered the changes feed
    /// (and acknowledged it).
    pub seen_upto: u64,
    /// The conflict policy of each collection.
    pub policies: Policies,
    /// Whether the pusher is a hub relaying its own edges' writes: it may
    /// introduce database ids nobody owns yet (they become its own). Any
    /// other edge may raise only its own device's entry.
    pub relay: bool,
}

/// Why a hub refused a pushed document inside the transaction that would
/// have stored it (the whole batch is refused; nothing is stored).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The document would hold more than [`crate::doc::MAX_VERSIONS`]
    /// concurrent versions.
    #[error("{id:?} would hold {count} concurrent versions (at most {max})", max = crate::doc::MAX_VERSIONS)]
    TooManyVersions {
        /// The document.
        id: String,
        /// Versions it would hold.
        count: usize,
    },
    /// The stored document (every version) would exceed [`MAX_DOC_BYTES`].
    #[error("{id:?} would take {bytes} bytes with all its versions (at most {MAX_DOC_BYTES})")]
    DocumentTooLarge {
        /// The document.
        id: String,
        /// Its size.
        bytes: usize,
    },
    /// A change vector to store would exceed [`crate::cv::MAX_CV_ENTRIES`].
    #[error("a version of {id:?} would have a change vector of {entries} entries (at most {max})", max = crate::cv::MAX_CV_ENTRIES)]
    ChangeVectorTooLarge {
        /// The document.
        id: String,
        /// Entries.
        entries: usize,
    },
    /// A change vector raises the entry of a database id another peer owns
    /// beyond what this database holds for it.
    #[error(
        "a version of {id:?} claims etag {claimed} of database {db}, which this hub holds only up to {held}; that database is not this edge's"
    )]
    ForgedEntry {
        /// The document.
        id: String,
        /// The database id of the entry.
        db: DbId,
        /// The etag claimed.
        claimed: u64,
        /// The high-water mark held.
        held: u64,
    },
    /// A pushed version supersedes a version this edge was never sent.
    #[error(
        "a version of {id:?} supersedes a version this edge was never sent (pull first, then edit)"
    )]
    UnseenVersion {
        /// The document.
        id: String,
    },
    /// The pushing device's database id belongs to another peer (its
    /// wire code is `forged_change_vector`: the versions claim another
    /// peer's entry).
    #[error("database id {db} belongs to another peer")]
    DbIdTaken {
        /// The database id.
        db: DbId,
    },
    /// A condition of [`Batch::expect_local`] did not hold: for a signed
    /// batch, its place in the edge's chain was taken (another session of
    /// the identity committed first; code `batch_sequence`).
    #[error("batch {seq} does not continue the chain this database holds for the edge")]
    BatchSequence {
        /// The batch's number.
        seq: u64,
    },
    /// A delete (or a change of collection) of a document of a collection
    /// whose documents are never deleted ([`crate::policy::DeletionGuards`]):
    /// refused for a local write as for a pushed one.
    #[error(
        "{id:?} is in collection {collection:?}, whose documents are never deleted (cancel or refund it instead)"
    )]
    DeleteForbidden {
        /// The document.
        id: String,
        /// Its (guarded) collection.
        collection: String,
    },
    /// A pushed version of a document the hub purged (a subject purge,
    /// `outpost-hub purge`): the id is retired at the hub, whatever change
    /// vector the version claims. The edge is to erase it.
    #[error("{id:?} was purged at the hub (purge marker {marker}); erase it, it is not taken back")]
    Purged {
        /// The document.
        id: String,
        /// The hub's purge marker that retired it.
        marker: u64,
    },
    /// A pushed document that is an index's output here: in an output
    /// collection, under its id prefix, or written by an index (output
    /// documents are each peer's own; docs/design.md, "Indexes").
    #[error(
        "{id:?} is an output of an index here (collection {collection:?}); an edge does not write it"
    )]
    IndexOutput {
        /// The document.
        id: String,
        /// The output collection.
        collection: String,
    },
}

impl Refusal {
    /// The stable code (the `PushRejected` code on the wire).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::TooManyVersions { .. } => "too_many_versions",
            Refusal::DocumentTooLarge { .. } => "document_too_large",
            Refusal::ChangeVectorTooLarge { .. } => "change_vector_too_large",
            Refusal::ForgedEntry { .. } => "forged_change_vector",
            Refusal::UnseenVersion { .. } => "unseen_version",
            Refusal::DbIdTaken { .. } => "forged_change_vector",
            Refusal::BatchSequence { .. } => "batch_sequence",
            Refusal::DeleteForbidden { .. } => "delete_forbidden",
            Refusal::Purged { .. } => "purged",
            Refusal::IndexOutput { .. } => "index_output",
        }
    }

    /// The document named (empty for [`Refusal::DbIdTaken`]).
    pub fn id(&self) -> &str {
        match self {
            Refusal::TooManyVersions { id, .. }
            | Refusal::DocumentTooLarge { id, .. }
            | Refusal::ChangeVectorTooLarge { id, .. }
            | Refusal::ForgedEntry { id, .. }
            | Refusal::UnseenVersion { id }
            | Refusal::DeleteForbidden { id, .. }
            | Refusal::Purged { id, .. }
            | Refusal::IndexOutput { id, .. } => id,
            Refusal::DbIdTaken { .. } | Refusal::BatchSequence { .. } => "",
        }
    }
}

/// Largest stored document, every version included (bodies and change
/// vectors): one document always fits in one replication frame.
pub const MAX_DOC_BYTES: usize = 24 * 1024 * 1024;

/// Several writes committed atomically: all of them or none.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub(super) ops: Vec<Op>,
    /// The durability this transaction asks for; `None`: the database's
    /// ([`OpenOptions::durability`]).
    pub(super) durability: Option<Durability>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }
    /// Asks this transaction's commit for `durability` instead of the
    /// database's default: a `Relaxed` write on a durable database is
    /// acknowledged without waiting for the disk (unless a durable write
    /// shares its group commit); a `Durable` one on a relaxed database
    /// waits for it.
    pub fn durability(&mut self, durability: Durability) -> &mut Self {
        self.durability = Some(durability);
        self
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
    /// Adds a put of a body given as JSON text, stored as given (not
    /// parsed into a [`Value`] and written again): the cheaper path for
    /// a caller that holds JSON already. The text must pass the body
    /// rules every stored body passes ([`crate::body::check_body`]: an
    /// object, at most 64 deep, no duplicate keys, ...), or the commit is
    /// refused with [`InputError::InvalidJson`](crate::error::InputError).
    /// The collection is `opts.collection`, else `@metadata.@collection`.
    pub fn put_json(
        &mut self,
        id: impl Into<String>,
        json: impl Into<Vec<u8>>,
        opts: PutOptions,
    ) -> &mut Self {
        self.ops.push(Op::PutJson {
            id: id.into(),
            json: json.into(),
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
        self.ops.push(Op::Remote {
            doc,
            policy,
            guard: None,
        });
        self
    }
    /// Adds a document an untrusted edge pushed to this hub, applied under
    /// `guard` (see [`PushGuard`]): the policy comes from the stored
    /// document's collection, and the causality rules of
    /// `docs/security.md` are checked in the transaction. `readable`: whether
    /// the edge may read this id (if not, it may only create it). A broken
    /// rule fails the whole batch with [`crate::Error::Refused`].
    pub fn apply_pushed(
        &mut self,
        doc: RemoteDoc,
        guard: Arc<PushGuard>,
        readable: bool,
    ) -> &mut Self {
        let policy = guard.policies.of(doc.collection.as_deref());
        self.ops.push(Op::Remote {
            doc,
            policy,
            guard: Some((guard, readable)),
        });
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
    /// Makes the commit conditional: the local record `key` must hold
    /// `value` (`None`: be absent) when the batch is applied, else nothing
    /// of the batch is stored and the commit fails with
    /// `Error::Refused(refusal)`. With [`Batch::set_local`] on the same key
    /// after it: a compare-and-set (the hub moves an edge's chain of signed
    /// batches this way).
    pub fn expect_local(
        &mut self,
        key: impl Into<Vec<u8>>,
        value: Option<Vec<u8>>,
        refusal: Refusal,
    ) -> &mut Self {
        self.ops.push(Op::ExpectLocal {
            key: key.into(),
            value,
            refusal,
        });
        self
    }
    /// Appends an entry to the audit trail (`docs/audit.md`), committed
    /// with the rest of the batch: the entry exists if and only if the batch
    /// commits. Its sequence number, time (the database's clock) and the
    /// previous entry's hash are filled in by the transaction. The payload
    /// is at most [`super::MAX_AUDIT_PAYLOAD`] bytes. Entries are never
    /// changed or removed through the API.
    pub fn audit(&mut self, kind: super::audit::AuditKind, payload: Vec<u8>) -> &mut Self {
        self.ops.push(Op::Audit { kind, payload });
        self
    }
    /// Appends an audit entry that names what the batch's writes did: its
    /// payload is `fill(base, results)`, called inside the transaction with
    /// the results of the operations added before this one (their change
    /// vectors, etags), so the entry and the versions it names commit
    /// together. Add it last. If `fill` fails, the commit fails with
    /// [`super::Error::Input`] and nothing is written.
    pub fn audit_writes(
        &mut self,
        kind: super::audit::AuditKind,
        base: Vec<u8>,
        fill: super::audit::AuditFill,
    ) -> &mut Self {
        self.ops.push(Op::AuditWrites { kind, base, fill });
        self
    }
    /// Testing only: overwrites the stored bytes of audit entry `seq` (as a
    /// tampering disk or operator would), through the engine so that page
    /// checksums stay valid and only the audit chain can tell.
    #[cfg(feature = "testing")]
    pub fn tamper_audit_entry(&mut self, seq: u64, value: Vec<u8>) -> &mut Self {
        self.ops.push(Op::AuditOverwrite { seq, value });
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
