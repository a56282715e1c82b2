//! Write safety `replicated` (issue "Deletes that mean something" §4,
//! docs/protocol.md "Write safety"): a write commits locally first, always
//! (offline too); [`SyncHandle::replicated`] then waits until the hub has
//! acknowledged it. The hub acknowledges a push up to a local etag
//! (`PushAck`); a write it refused is passed over by that acknowledgement
//! too, so the recorded rejections are checked as well.

use std::sync::Mutex;
use std::time::Duration;

use outpost::WriteResult;
use outpost::sync::Rejection;
use tokio::sync::watch;

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
