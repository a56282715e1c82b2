//! The edge machine's side of write safety `hub` (protocol version 6,
//! `docs/protocol.md` §4 "Write safety"): the application hands the
//! session a compare-and-set ([`EdgeEvent::HubWrite`]); the machine signs it
//! as a `Write` (one at a time, after the handshake), and answers the
//! caller ([`EdgeAction::HubWriteDone`]) with the hub's `WriteResult`: a
//! conflict or a refusal at once, an applied write once the edge's pull
//! has committed the new versions (a `get` right after it sees them).
//! Nothing is written locally by the write itself. When the session ends,
//! writes not yet sent are `Offline` (never applied), a write sent and not
//! answered is `Unknown`, and an applied one still arriving is `Applied`.
//!
//! [`EdgeEvent::HubWrite`]: super::EdgeEvent::HubWrite

use std::collections::VecDeque;

use super::{EdgeAction, EdgeSession, Phase, Signer};
use crate::cv::DbId;
use crate::sync::frame::{AuthMode, Frame, HUB_WRITE_VERSION, WireWrite, WriteAnswer};
use crate::sync::hub_write::{HubWriteManifest, HubWriteOutcome};
use crate::sync::signed::GENESIS;

/// Writes with safety `hub` of one session.
#[derive(Debug, Default)]
pub(super) struct Writes {
    /// Waiting for the session (or for the write before them).
    queue: VecDeque<(u64, Vec<WireWrite>)>,
    /// Awaiting its signature: token, request, documents.
    signing: Option<(u64, u64, Vec<WireWrite>)>,
    /// Sent, awaiting the `WriteResult`: token, request.
    sent: Option<(u64, u64)>,
    /// Applied at the hub; awaiting the pull that brings them: token, hub
    /// etag, change vectors.
    arriving: Vec<(u64, u64, Vec<crate::cv::ChangeVector>)>,
    /// The last request number used.
    last: u64,
}

impl EdgeSession {
    /// The application asks for a write with safety `hub` (`token` names it
    /// in the answer).
    pub(super) fn on_hub_write(
        &mut self,
        token: u64,
        ops: Vec<WireWrite>,
        now: i64,
        out: &mut Vec<EdgeAction>,
    ) {
        if self.phase == Phase::Open && self.version < HUB_WRITE_VERSION {
            return out.push(EdgeAction::HubWriteDone {
                token,
                outcome: self.too_old(),
            });
        }
        self.writes.queue.push_back((token, ops));
        self.pump_writes(now, out);
    }

    fn too_old(&self) -> HubWriteOutcome {
        HubWriteOutcome::Offline {
            reason: format!(
                "the hub speaks protocol {}, which has no writes with safety hub (version {HUB_WRITE_VERSION})",
                self.version
            ),
        }
    }

    /// Starts the next write when the session can carry it and nothing
    /// else is being signed.
    pub(super) fn pump_writes(&mut self, now: i64, out: &mut Vec<EdgeAction>) {
        if self.phase != Phase::Open
            || self.writes.signing.is_some()
            || self.writes.sent.is_some()
            || !self.signs.is_empty()
        {
            return;
        }
        if self.version < HUB_WRITE_VERSION {
            let outcome = self.too_old();
            for (token, _) in self.writes.queue.drain(..) {
                out.push(EdgeAction::HubWriteDone {
                    token,
                    outcome: outcome.clone(),
                });
            }
            return;
        }
        let Some((token, ops)) = self.writes.queue.pop_front() else {
            return;
        };
        self.writes.last += 1;
        let request = self.writes.last;
        if self.cfg.auth == AuthMode::Token {
            self.writes.sent = Some((token, request));
            return self.send(
                out,
                now,
                Frame::Write {
                    request,
                    signature: Vec::new(),
                    ops,
                },
            );
        }
        let manifest = HubWriteManifest::of(
            self.hub_db_id.unwrap_or(DbId([0; 16])),
            self.st.db_id,
            self.challenge_nonce.unwrap_or(GENESIS),
            request,
            &ops,
        );
        self.writes.signing = Some((token, request, ops));
        self.ask_sign(Signer::Write, manifest.message(), out);
    }

    /// The write awaiting its signature got it: send it.
    pub(super) fn on_write_signed(
        &mut self,
        signature: Vec<u8>,
        now: i64,
        out: &mut Vec<EdgeAction>,
    ) {
        let Some((token, request, ops)) = self.writes.signing.take() else {
            return;
        };
        self.writes.sent = Some((token, request));
        self.send(
            out,
            now,
            Frame::Write {
                request,
                signature,
                ops,
            },
        );
    }

    /// The hub answered a `Write`.
    pub(super) fn on_write_result(
        &mut self,
        request: u64,
        answer: WriteAnswer,
        now: i64,
        out: &mut Vec<EdgeAction>,
    ) {
        let token = match self.writes.sent {
            Some((token, r)) if r == request => token,
            _ => return self.fail(out, now, "protocol", "WriteResult for no Write sent", false),
        };
        self.writes.sent = None;
        let outcome = match answer {
            WriteAnswer::Applied {
                etag,
                change_vectors,
            } => {
                if self.applying.is_none() && self.st.pull_checkpoint >= etag {
                    HubWriteOutcome::Applied {
                        hub_etag: etag,
                        change_vectors,
                    }
                } else {
                    self.writes.arriving.push((token, etag, change_vectors));
                    return;
                }
            }
            WriteAnswer::Conflict { id, current } => HubWriteOutcome::Conflict { id, current },
            WriteAnswer::Refused {
                code, id, message, ..
            } => HubWriteOutcome::Refused { code, id, message },
        };
        out.push(EdgeAction::HubWriteDone { token, outcome });
    }

    /// A batch from the hub committed: answer the applied writes it brought.
    pub(super) fn writes_arrived(&mut self, out: &mut Vec<EdgeAction>) {
        let upto = self.st.pull_checkpoint;
        let (done, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.writes.arriving)
            .into_iter()
            .partition(|(_, etag, _)| *etag <= upto);
        self.writes.arriving = wait;
        for (token, hub_etag, change_vectors) in done {
            out.push(EdgeAction::HubWriteDone {
                token,
                outcome: HubWriteOutcome::Applied {
                    hub_etag,
                    change_vectors,
                },
            });
        }
    }

    /// The session ended: answer every write it holds.
    pub(super) fn end_writes(&mut self, out: &mut Vec<EdgeAction>) {
        let w = std::mem::take(&mut self.writes);
        let offline = || HubWriteOutcome::Offline {
            reason: "the session with the hub ended before the write was sent".into(),
        };
        for (token, hub_etag, change_vectors) in w.arriving {
            out.push(EdgeAction::HubWriteDone {
                token,
                outcome: HubWriteOutcome::Applied {
                    hub_etag,
                    change_vectors,
                },
            });
        }
        if let Some((token, _)) = w.sent {
            out.push(EdgeAction::HubWriteDone {
                token,
                outcome: HubWriteOutcome::Unknown {
                    reason: "the session with the hub ended before its answer: the hub may have applied the write (it then replicates like any write)".into(),
                },
            });
        }
        for token in w
            .signing
            .map(|(t, ..)| t)
            .into_iter()
            .chain(w.queue.into_iter().map(|(t, _)| t))
        {
            out.push(EdgeAction::HubWriteDone {
                token,
                outcome: offline(),
            });
        }
    }
}
