//! The CLI's one error type: a message and a stable code, printed as
//! `error: <message> (<code>)` on stderr.

use std::fmt;

use outpost::{Error, OpenError, StoreError};

/// An error that ends a command.
#[derive(Debug)]
pub struct CliError {
    /// Human-readable description.
    pub message: String,
    /// Short stable code (the engine's codes, plus a few of the CLI's own).
    pub code: &'static str,
}

impl CliError {
    /// An error with the given code and message.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            code,
        }
    }

    /// An I/O error while doing `what`. A closed stdout (`outpost scan | head`)
    /// becomes [`CliError::is_broken_pipe`] so it can end the command quietly.
    pub fn io(what: impl fmt::Display, err: std::io::Error) -> Self {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            return CliError::new("broken_pipe", format!("{what}: {err}"));
        }
        CliError::new("io", format!("{what}: {err}"))
    }

    /// Whether this error only says that the reader of our stdout went away.
    pub fn is_broken_pipe(&self) -> bool {
        self.code == "broken_pipe"
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        CliError::new(e.code(), e.to_string())
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        CliError::new(e.code(), e.to_string())
    }
}

impl From<OpenError> for CliError {
    fn from(e: OpenError) -> Self {
        CliError::new(e.code(), e.to_string())
    }
}

impl From<outpost::InputError> for CliError {
    fn from(e: outpost::InputError) -> Self {
        CliError::from(Error::from(e))
    }
}

impl From<outpost::jsonl::ImportError> for CliError {
    fn from(e: outpost::jsonl::ImportError) -> Self {
        CliError::new(e.code(), e.to_string())
    }
}
