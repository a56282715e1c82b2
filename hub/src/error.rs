//! The hub's error type: what went wrong, in words an operator can act on.

use std::path::Path;

/// An error of the hub or of one of its commands.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// The configuration file could not be read, parsed or validated.
    #[error("{path}: {message}")]
    Config {
        /// The configuration file.
        path: String,
        /// What is wrong (names the offending field).
        message: String,
    },
    /// An I/O operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path involved.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds a database's lock file.
    #[error(
        "database {database} is in use by another process (lock file {lock}); stop the hub (or the other command) first"
    )]
    InUse {
        /// The database name.
        database: String,
        /// The lock file.
        lock: String,
    },
    /// A database could not be opened.
    #[error("database {database}: {source}")]
    Open {
        /// The database name.
        database: String,
        /// The engine's error.
        #[source]
        source: outpost::OpenError,
    },
    /// A database operation failed.
    #[error("database {database}: {source}")]
    Database {
        /// The database name.
        database: String,
        /// The engine's error.
        #[source]
        source: outpost::Error,
    },
    /// TLS set-up failed (certificates, keys).
    #[error("TLS: {0}")]
    Tls(String),
    /// Any other failure, described in words.
    #[error("{0}")]
    Other(String),
}

impl HubError {
    /// An I/O error while doing `what`.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        HubError::Io {
            what: what.into(),
            source,
        }
    }

    /// A configuration error in the file at `path`.
    pub fn config(path: &Path, message: impl Into<String>) -> Self {
        HubError::Config {
            path: path.display().to_string(),
            message: message.into(),
        }
    }
}

/// The hub's result type.
pub type Result<T, E = HubError> = std::result::Result<T, E>;
