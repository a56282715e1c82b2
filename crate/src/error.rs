//! Typed errors, one enum per family of operations:
//!
//! - [`OpenError`]: opening or creating a database;
//! - [`Error`]: reads and writes on an open database;
//! - [`InputError`]: bad input (ids, collections, JSON, change vectors), carried
//!   by [`Error::Input`];
//! - [`crate::StoreError`]: the page stores beneath.
//!
//! No input, however malformed, panics the engine: it gets one of these.

use crate::store::{PageLocation, PageNo, StoreError};

/// Invalid input supplied by a caller (a user, a file, or the network).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// A document id that is empty, too long, or contains control characters.
    #[error("invalid document id {id:?}: {reason}")]
    InvalidId {
        /// The offending id (truncated to 100 characters).
        id: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A collection name that is empty, too long, or contains control characters.
    #[error("invalid collection name {name:?}: {reason}")]
    InvalidCollection {
        /// The offending name (truncated to 100 characters).
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A body that is not valid JSON or not a JSON object.
    #[error("invalid JSON body: {0}")]
    InvalidJson(String),
    /// A change vector that could not be parsed.
    #[error("invalid change vector: {0}")]
    InvalidChangeVector(String),
    /// A document larger than the engine accepts.
    #[error("document {id:?} is {size} bytes; the limit is {max}")]
    TooLarge {
        /// The document id.
        id: String,
        /// Its encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A scan or changes request with out-of-range parameters.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// Errors of operations on an open database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller's input was refused; nothing was written.
    #[error(transparent)]
    Input(#[from] InputError),
    /// An optimistic-concurrency check failed: the document's current change
    /// vector is not the one the caller expected. Nothing of the batch was written.
    #[error(
        "concurrency conflict on {id:?}: expected change vector {expected:?}, found {actual:?}"
    )]
    ConcurrencyConflict {
        /// The document id.
        id: String,
        /// What the caller expected (empty: "must not exist").
        expected: String,
        /// What the database holds (empty: "does not exist").
        actual: String,
    },
    /// A page failed its checksum or structural checks. The database refuses to
    /// serve the data rather than serve wrong data.
    #[error("corrupt page {page}{}: {reason}", location.as_ref().map(|l| format!(" ({l})")).unwrap_or_default())]
    Corrupt {
        /// The page number (never 0: damage not tied to one page is
        /// [`Error::CorruptRecord`]).
        page: PageNo,
        /// Where the page is kept (file and byte offset), when the store
        /// knows.
        location: Option<PageLocation>,
        /// What is wrong.
        reason: String,
    },
    /// A record that is not one page failed its checks: a document record
    /// (named by its key), the meta record, the free list. Same code as
    /// [`Error::Corrupt`] (`"corrupt"`).
    #[error("corrupt {record}: {reason}")]
    CorruptRecord {
        /// Which record: `record of "<id key>"`, `meta record`, `free list`.
        record: String,
        /// What is wrong.
        reason: String,
    },
    /// The page store failed.
    #[error("storage error: {0}")]
    Store(#[from] StoreError),
    /// An earlier commit failed; the database refuses writes until reopened
    /// (recovery on open restores the last durable state).
    #[error("the database failed earlier and must be reopened: {0}")]
    Poisoned(String),
    /// The database was closed.
    #[error("the database is closed")]
    Closed,
    /// A rule checked in the transaction refused a write: a document pushed
    /// by an untrusted edge (`docs/security.md`), or a local delete of a
    /// guarded collection (`delete_forbidden`); nothing of the batch was
    /// written.
    #[error("refused: {0}")]
    Refused(crate::db::Refusal),
    /// An index's function failed (threw, or emitted a key that is not a
    /// key); nothing of that index step was stored.
    #[error("index {index:?}{}: {message}", doc.as_ref().map(|d| format!(", document {d:?}")).unwrap_or_default())]
    Index {
        /// The index.
        index: String,
        /// The document being mapped, if the failure is tied to one.
        doc: Option<String>,
        /// What failed.
        message: String,
    },
    /// No index of that name is defined.
    #[error("no index named {0:?}")]
    NoIndex(String),
}

impl Error {
    /// [`Error::CorruptRecord`] for the document record of the id key `key`
    /// (the lowercase id): `record of "<key>"`, with why it is refused.
    pub fn corrupt_record(key: &[u8], e: impl std::fmt::Display) -> Error {
        Error::CorruptRecord {
            record: format!("record of {:?}", String::from_utf8_lossy(key)),
            reason: e.to_string(),
        }
    }

    /// A short, stable code for logs, metrics, the CLI and the JS bindings.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Input(InputError::InvalidId { .. }) => "invalid_id",
            Error::Input(InputError::InvalidCollection { .. }) => "invalid_collection",
            Error::Input(InputError::InvalidJson(_)) => "invalid_json",
            Error::Input(InputError::InvalidChangeVector(_)) => "invalid_change_vector",
            Error::Input(InputError::TooLarge { .. }) => "too_large",
            Error::Input(InputError::InvalidArgument(_)) => "invalid_argument",
            Error::ConcurrencyConflict { .. } => "concurrency_conflict",
            Error::Corrupt { .. } | Error::CorruptRecord { .. } => "corrupt",
            Error::Store(e) => e.code(),
            Error::Poisoned(_) => "poisoned",
            Error::Closed => "closed",
            Error::Refused(r) => r.code(),
            Error::Index { .. } => "index_failed",
            Error::NoIndex(_) => "no_index",
        }
    }
}

/// Errors of opening or creating a database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The page store failed to open or to read.
    #[error("storage error: {0}")]
    Store(#[from] StoreError),
    /// The meta record or a root page is corrupt.
    #[error("corrupt database: {0}")]
    Corrupt(String),
    /// The database was written by an unknown format version.
    #[error("unsupported database format: {0}")]
    Unsupported(String),
    /// Invalid open options.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// A read-only open of a store that holds no database.
    #[error("no database: {0}")]
    NotFound(String),
}

impl OpenError {
    /// A short, stable code (the same vocabulary as [`Error::code`], plus
    /// `"invalid_options"`), for the CLI and the JS bindings.
    pub fn code(&self) -> &'static str {
        match self {
            OpenError::Store(s) => s.code(),
            OpenError::Corrupt(_) => "corrupt",
            OpenError::Unsupported(_) => "unsupported",
            OpenError::InvalidOptions(_) => "invalid_options",
            OpenError::NotFound(_) => "not_found",
        }
    }
}

/// Truncates user-supplied text for inclusion in an error message.
pub(crate) fn clip(s: &str) -> String {
    if s.chars().count() <= 100 {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(100).collect();
        t.push('…');
        t
    }
}
