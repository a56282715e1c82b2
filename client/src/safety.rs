//! Write safety (issue "Deletes that mean something" §4, docs/protocol.md
//! "Write safety").
//!
//! `replicated`: a write commits locally first, always (offline too);
//! [`SyncHandle::replicated`] then waits until the hub has acknowledged it.
//! The hub acknowledges a push up to a local etag (`PushAck`); a write it
//! refused is passed over by that acknowledgement too, so the recorded
//! rejections are checked as well.
//!
//! `hub`: [`SyncHandle::write_at_hub`] sends a compare-and-set of one to
//! [`MAX_WRITE_OPS`] documents to the hub, which applies it alone and all
//! or nothing; nothing is written locally unless the hub applied it (the
//! new versions then arrive by the pull, before the call returns).

use std::sync::Mutex;
use std::time::Duration;

use outpost::sync::Rejection;
use outpost::sync::frame::{MAX_WRITE_OPS, WireExpect, WireWrite};
use outpost::sync::hub_write::HubWriteOutcome;
use outpost::{ChangeVector, Expected, WriteResult};
use tokio::sync::{mpsc, oneshot, watch};

use crate::SyncHandle;

/// What the client learned of its pushes: the last local etag the hub
/// acknowledged, and the rejections recorded since it started.
#[derive(Debug)]
pub(crate) struct Acks {
    pub(crate) upto: watch::Sender<u64>,
    pub(crate) refused: Mutex<Vec<Rejection>>,
}

impl Acks {
    pub(crate) fn new() -> Acks {
        Acks {
            upto: watch::channel(0).0,
            refused: Mutex::new(Vec::new()),
        }
    }

    /// The hub acknowledged local changes up to `upto`.
    pub(crate) fn pushed(&self, upto: u64) {
        self.upto.send_if_modified(|u| {
            let more = upto > *u;
            *u = (*u).max(upto);
            more
        });
    }

    /// The hub refused `r` (recorded before the acknowledgement that
    /// passes over it).
    pub(crate) fn refused(&self, r: &Rejection) {
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(r.clone());
        // Wakes the writers waiting (they look at the refusals too).
        self.upto.send_modify(|_| {});
    }

    /// The recorded refusal of the version `cv` (text) of `id`, if any.
    fn refusal(&self, id: &str, cv: &str) -> Option<Rejection> {
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|r| r.id.eq_ignore_ascii_case(id) && r.change_vector == cv)
            .cloned()
    }
}

/// Why a `replicated` write is not confirmed. In every case the write is
/// stored locally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReplicated {
    /// The hub did not acknowledge it in time (offline, or slow).
    #[error(
        "{id}: stored locally; the hub has not acknowledged it within {ms} ms (it will replicate when the hub is reachable)"
    )]
    Timeout {
        /// The document.
        id: String,
        /// The time waited.
        ms: u64,
    },
    /// The hub refused it (a rule of docs/protocol.md §5); it stays
    /// stored locally, recorded as a rejection, and is not retried.
    #[error("{id}: stored locally, but the hub refused it ({code}): {message}")]
    Refused {
        /// The document.
        id: String,
        /// The refusal's code.
        code: String,
        /// The hub's message.
        message: String,
    },
}

impl NotReplicated {
    /// A stable code: `not_replicated`, or the hub's refusal code.
    pub fn code(&self) -> &str {
        match self {
            NotReplicated::Timeout { .. } => "not_replicated",
            NotReplicated::Refused { code, .. } => code,
        }
    }
}

impl SyncHandle {
    /// The last local etag the hub acknowledged in this client's sessions.
    pub fn acked_upto(&self) -> u64 {
        *self.acks.upto.borrow()
    }

    /// Waits until the hub has acknowledged the local write `w` (write
    /// safety `replicated`), at most `timeout`. The write is stored locally
    /// whatever this returns.
    pub async fn replicated(
        &self,
        w: &WriteResult,
        timeout: Duration,
    ) -> Result<(), NotReplicated> {
        self.local_changed();
        let cv = w.change_vector.to_text();
        let refused = |r: Rejection| NotReplicated::Refused {
            id: w.id.clone(),
            code: r.code,
            message: r.message,
        };
        let mut rx = self.acks.upto.subscribe();
        let waited = tokio::time::timeout(timeout, async {
            loop {
                let upto = *rx.borrow_and_update();
                // A refusal first: the acknowledgement passes over it too.
                if let Some(r) = self.acks.refusal(&w.id, &cv) {
                    return Err(refused(r));
                }
                if upto >= w.etag {
                    return Ok(());
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await;
        match waited {
            Ok(r) => r,
            Err(_) => match self.acks.refusal(&w.id, &cv) {
                Some(r) => Err(refused(r)),
                None => Err(NotReplicated::Timeout {
                    id: w.id.clone(),
                    ms: timeout.as_millis() as u64,
                }),
            },
        }
    }
}

/// A request for the hub on its way to the session task.
pub(crate) enum HubCall {
    /// A write with safety `hub`.
    Write {
        ops: Vec<WireWrite>,
        answer: oneshot::Sender<HubWriteOutcome>,
    },
    /// A certificate replacement ([`SyncHandle::register_replacement`]).
    Replace {
        chain: Vec<Vec<u8>>,
        answer: oneshot::Sender<outpost::sync::ReplaceOutcome>,
    },
}

impl HubCall {
    /// Answers the call as not sent (no session).
    pub(crate) fn offline(self, reason: &str) {
        let reason = reason.to_string();
        match self {
            HubCall::Write { answer, .. } => {
                let _ = answer.send(HubWriteOutcome::Offline { reason });
            }
            HubCall::Replace { answer, .. } => {
                let _ = answer.send(outpost::sync::ReplaceOutcome::Offline { reason });
            }
        }
    }
}

/// The channel [`SyncHandle::write_at_hub`] and
/// [`SyncHandle::register_replacement`] hand their requests to.
pub(crate) type HubCalls = mpsc::UnboundedReceiver<HubCall>;

/// One document of a write with safety `hub`.
#[derive(Debug, Clone, PartialEq)]
pub struct HubOp {
    /// The document id.
    pub id: String,
    /// The new body (a JSON object), or `None` to delete it.
    pub body: Option<serde_json::Value>,
    /// Its collection (`None`: the document's current one).
    pub collection: Option<String>,
    /// What the hub must hold: `Expected::Missing` (must not exist, or be
    /// deleted), `Expected::Cv` (its current change vector), or
    /// `Expected::Any`.
    pub expected: Expected,
}

impl HubOp {
    /// A put of `body` expecting `expected`.
    pub fn put(id: impl Into<String>, body: serde_json::Value, expected: Expected) -> HubOp {
        HubOp {
            id: id.into(),
            body: Some(body),
            collection: None,
            expected,
        }
    }

    /// A delete expecting `expected`.
    pub fn delete(id: impl Into<String>, expected: Expected) -> HubOp {
        HubOp {
            id: id.into(),
            body: None,
            collection: None,
            expected,
        }
    }
}

/// Why a write with safety `hub` did not apply. Nothing was written
/// locally in any case; only [`HubWriteError::Unknown`] and
/// [`HubWriteError::Timeout`] leave open whether the hub applied it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubWriteError {
    /// An expectation did not hold at the hub: nothing was written.
    #[error(
        "{id}: the hub holds another version (change vector {current:?}; empty: none): nothing was written"
    )]
    Conflict {
        /// The document.
        id: String,
        /// Its change vector at the hub, as text (empty: it does not exist).
        current: String,
    },
    /// The hub refused it (a code of docs/protocol.md §5): nothing was written.
    #[error("{id}: the hub refused the write ({code}): {message}")]
    Refused {
        /// The refusal's code.
        code: String,
        /// The document named.
        id: String,
        /// The hub's message.
        message: String,
    },
    /// No session could carry it: nothing was written anywhere.
    #[error("offline: {reason}; nothing was written")]
    Offline {
        /// Why.
        reason: String,
    },
    /// Sent, but the session ended before the answer: the hub may have
    /// applied it (it then replicates here like any write).
    #[error("unknown outcome: {reason}")]
    Unknown {
        /// Why.
        reason: String,
    },
    /// No answer within the time allowed: the hub may have applied it.
    #[error(
        "no answer from the hub within {ms} ms: it may have applied the write (it then replicates here like any write)"
    )]
    Timeout {
        /// The time waited.
        ms: u64,
    },
    /// The write itself is not valid (no document, too many, a body that
    /// does not encode).
    #[error("invalid write: {0}")]
    Invalid(String),
}

impl HubWriteError {
    /// A stable code: `conflict`, `offline`, `unknown`, `timeout`,
    /// `invalid_argument`, or the hub's refusal code.
    pub fn code(&self) -> &str {
        match self {
            HubWriteError::Conflict { .. } => "conflict",
            HubWriteError::Refused { code, .. } => code,
            HubWriteError::Offline { .. } => "offline",
            HubWriteError::Unknown { .. } => "unknown",
            HubWriteError::Timeout { .. } => "timeout",
            HubWriteError::Invalid(_) => "invalid_argument",
        }
    }
}

/// The wire form of `ops`, checked as far as the edge can.
fn wire_ops(ops: &[HubOp]) -> Result<Vec<WireWrite>, HubWriteError> {
    if ops.is_empty() || ops.len() > MAX_WRITE_OPS {
        return Err(HubWriteError::Invalid(format!(
            "{} documents (1 to {MAX_WRITE_OPS} per write)",
            ops.len()
        )));
    }
    ops.iter()
        .map(|o| {
            let body = match &o.body {
                Some(v) if v.is_object() => serde_json::to_vec(v)
                    .map_err(|e| HubWriteError::Invalid(format!("{}: {e}", o.id)))?,
                Some(_) => {
                    return Err(HubWriteError::Invalid(format!(
                        "{}: a body is a JSON object",
                        o.id
                    )));
                }
                None => Vec::new(),
            };
            Ok(WireWrite {
                id: o.id.clone(),
                collection: o.collection.clone(),
                expect: match &o.expected {
                    Expected::Any => WireExpect::Any,
                    Expected::Missing => WireExpect::Missing,
                    Expected::Cv(cv) => WireExpect::Cv(cv.clone()),
                },
                deleted: o.body.is_none(),
                body,
            })
        })
        .collect()
}

impl SyncHandle {
    /// Write safety `hub`: applies `ops` at the hub alone, all or nothing,
    /// if every expectation holds there, and returns the new versions'
    /// change vectors once this edge holds them (it pulled them). Fails
    /// with [`HubWriteError::Offline`] at once when no session is open,
    /// and nothing is written locally unless the hub applied the write.
    pub async fn write_at_hub(
        &self,
        ops: &[HubOp],
        timeout: Duration,
    ) -> Result<Vec<ChangeVector>, HubWriteError> {
        let ops = wire_ops(ops)?;
        let (answer, rx) = oneshot::channel();
        if self.hub_calls.send(HubCall::Write { ops, answer }).is_err() {
            return Err(HubWriteError::Offline {
                reason: "the client has stopped".into(),
            });
        }
        let outcome = match tokio::time::timeout(timeout, rx).await {
            Err(_) => {
                return Err(HubWriteError::Timeout {
                    ms: timeout.as_millis() as u64,
                });
            }
            Ok(Err(_)) => {
                return Err(HubWriteError::Unknown {
                    reason: "the client stopped before the answer".into(),
                });
            }
            Ok(Ok(o)) => o,
        };
        match outcome {
            HubWriteOutcome::Applied { change_vectors, .. } => Ok(change_vectors),
            HubWriteOutcome::Conflict { id, current } => Err(HubWriteError::Conflict {
                id,
                current: current.to_text(),
            }),
            HubWriteOutcome::Refused { code, id, message } => {
                Err(HubWriteError::Refused { code, id, message })
            }
            HubWriteOutcome::Offline { reason } => Err(HubWriteError::Offline { reason }),
            HubWriteOutcome::Unknown { reason } => Err(HubWriteError::Unknown { reason }),
        }
    }
}
