//! # Outpost
//!
//! An offline-first document database. The same engine compiles to WebAssembly
//! (pages kept in IndexedDB, or in any page store the host supplies) and natively
//! (pages kept in files behind a write-ahead log with group commit).
//!
//! Layers, bottom up:
//! - [`store`]: the [`store::PageStore`] trait — fixed-size pages, an atomic commit
//!   of a set of pages plus a meta record, a durability barrier — with an in-memory
//!   store and (native) the file store.
//! - [`btree`]: a copy-on-write B+tree over pages.
//! - [`db`]: documents, change vectors, the catalog of named trees (the id /
//!   etag / collection indexes and the rest), format upgrades, and group commit.
//!
//! See `docs/design.md` for the storage design and its commit-safety argument.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod btree;
pub mod cache;
pub mod codec;
pub mod cv;
pub mod db;
pub mod doc;
pub mod error;
pub mod jsonl;
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
    Batch, CommitInfo, Database, DbStats, Expected, IntegrityReport, OpenOptions, PutOptions,
    RemoteDoc, Snapshot, WriteOutcome, WriteResult,
};
pub use doc::{DocFlags, Document, DocumentMeta, RawVersion, Version};
pub use error::{Error, InputError, OpenError};
pub use policy::ConflictPolicy;
pub use store::{PageStore, StoreError};
pub use watch::CommitWatch;
