//! What a hostile client receives: the hub's answer to what it sent
//! ([`Answer`]), the `Welcome` and `Challenge` of a handshake, one received
//! frame ([`Incoming`]).

use outpost::DbId;
use outpost::sync::frame::WriteAnswer;
use outpost::sync::{Frame, WireGrant};

/// What the hub answered (to a push, a hello, or anything else awaited).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `Welcome`: the session is open.
    Welcome(Welcome),
    /// `PushAck`.
    PushAck {
        /// Its `upto`.
        upto: u64,
        /// Versions applied.
        applied: u32,
        /// Conflicts kept.
        conflicts: u32,
        /// Conflicts resolved.
        resolved: u32,
    },
    /// `PushRejected`.
    PushRejected {
        /// Its `upto`.
        upto: u64,
        /// Stable code.
        code: String,
        /// The document named.
        id: String,
        /// The rule.
        rule: String,
        /// The message.
        message: String,
    },
    /// `Error` (the hub then closes).
    Error {
        /// Stable code.
        code: String,
        /// The message.
        message: String,
    },
    /// The connection ended without an `Error` frame (close, EOF, reset).
    Closed(String),
    /// Nothing came within the bound.
    Timeout,
    /// A frame that was not expected here.
    Unexpected(Box<Frame>),
    /// Bytes from the hub that do not decode as a frame.
    Undecodable(String),
    /// `WriteResult` (protocol 6): the answer to a `Write`.
    WriteResult {
        /// The request answered.
        request: u64,
        /// What the hub did.
        answer: WriteAnswer,
    },
}

impl Answer {
    /// Whether this is `PushRejected` with `code`.
    pub fn is_rejected(&self, code: &str) -> bool {
        matches!(self, Answer::PushRejected { code: c, .. } if c == code)
    }

    /// Whether this is `Error` with `code`.
    pub fn is_error(&self, code: &str) -> bool {
        matches!(self, Answer::Error { code: c, .. } if c == code)
    }

    /// The code of a `PushRejected` or `Error`.
    pub fn code(&self) -> Option<&str> {
        match self {
            Answer::PushRejected { code, .. } | Answer::Error { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The document id of a `PushRejected`.
    pub fn rejected_id(&self) -> Option<&str> {
        match self {
            Answer::PushRejected { id, .. } => Some(id),
            _ => None,
        }
    }

    /// `(applied, conflicts, resolved)` of a `PushAck`.
    pub fn ack_counts(&self) -> Option<(u32, u32, u32)> {
        match self {
            Answer::PushAck {
                applied,
                conflicts,
                resolved,
                ..
            } => Some((*applied, *conflicts, *resolved)),
            _ => None,
        }
    }

    /// Whether the session ended (an `Error` or a closed connection).
    pub fn is_end(&self) -> bool {
        matches!(self, Answer::Error { .. } | Answer::Closed(_))
    }
}

/// What `Welcome` said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Welcome {
    /// Protocol version chosen.
    pub version: u16,
    /// The hub database's id.
    pub hub_db_id: DbId,
    /// The hub's push checkpoint for this device.
    pub push_checkpoint: u64,
    /// The hub's last etag.
    pub hub_last_etag: u64,
    /// Documents pending in the initial phase.
    pub pending: u64,
    /// The grant (version 2).
    pub grant: Option<WireGrant>,
    /// The last batch of the identity's chain the hub accepted (version 3).
    pub batch_seq: u64,
    /// Its hash.
    pub batch_head: [u8; 32],
}

/// A `Challenge` the hub sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The version bound into the proof.
    pub version: u16,
    /// The nonce.
    pub nonce: [u8; 32],
    /// The hub database's id.
    pub hub_id: DbId,
}

/// One received frame, or why there was none.
#[derive(Debug)]
pub enum Incoming {
    /// A decoded frame.
    Frame(Frame),
    /// The connection ended (close frame, EOF, error).
    Closed(String),
    /// Nothing within the bound.
    Timeout,
    /// Bytes that do not decode.
    Undecodable(String),
}
