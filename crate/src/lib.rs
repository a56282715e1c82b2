//! # Outpost
//!
//! An offline-first document database. The same engine compiles to WebAssembly
//! (pages kept in IndexedDB, or in any page store the host supplies) and natively
//! (pages kept in files behind a write-ahead log with group commit).
//!
//! Layers, bottom up:
//! - [`codec`]: little-endian fixed-width encoding, used by every format below.
//! - [`store`]: the [`store::PageStore`] trait — fixed-size pages, an atomic commit
//!   of a set of pages plus a meta record, a durability barrier — with an in-memory
//!   store, (native) the file store, and (wasm32) the IndexedDB store; [`cache`]
//!   keeps verified pages in memory.
//! - [`btree`]: a copy-on-write B+tree over pages.
//! - [`doc`], [`cv`], [`merge`], [`policy`]: document records, change vectors,
//!   merging concurrent versions, per-collection rules.
//! - [`db`]: the database: the catalog of named trees (the id / etag /
//!   collection indexes and the rest), format upgrades, group commit,
//!   snapshots; [`watch`] is its commit observer.
//! - [`index`]: map and map/reduce indexes (definitions, keys, queries;
//!   kept up to date by [`db`]).
//! - [`sync`]: replication: the pure edge and hub state machines, the wire
//!   protocol, and the one action loop the shells run.
//! - [`jsonl`]: JSON-lines import and export; [`error`]: typed errors;
//!   [`platform`]: the few platform differences.
//!
//! See `docs/design.md` for the storage design and its commit-safety argument.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod body;
pub mod btree;
pub mod cache;
pub mod codec;
pub mod cv;
pub mod db;
pub mod doc;
pub mod error;
#[cfg(all(
    any(feature = "fuzzing", feature = "testing"),
    not(target_arch = "wasm32")
))]
#[doc(hidden)]
pub mod fuzzing;
pub mod index;
pub mod jsonl;
pub mod keys;
pub mod merge;
pub mod platform;
pub mod policy;
#[cfg(any(test, feature = "testing"))]
pub mod rng;
pub mod store;
pub mod sync;
pub mod watch;

pub use cv::{ChangeVector, CvOrder, DbId};
pub use db::{
    AuditEntry, AuditKind, AuditReport, Batch, CommitInfo, Database, DbStats, Expected,
    IntegrityReport, OpenOptions, Origin, PurgeReport, PurgeScope, PushGuard, PutOptions, Refusal,
    RemoteDoc, Snapshot, Spliced, VacuumReport, WriteOutcome, WriteResult,
};
pub use doc::{DocFlags, Document, DocumentMeta, RawVersion, Version};
pub use error::{Error, InputError, OpenError};
pub use policy::ConflictPolicy;
pub use store::{PageStore, StoreError};
pub use watch::CommitWatch;
