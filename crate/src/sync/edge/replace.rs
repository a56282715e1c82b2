//! The edge machine's side of certificate replacement (protocol version 8,
//! `docs/protocol.md` §2 "Certificate identities"): the application hands
//! an open session a new certificate chain ([`EdgeEvent::Replace`]); the
//! machine sends it as a `Replace` (one at a time) and answers the caller
//! ([`EdgeAction::ReplaceDone`]) with the hub's `ReplaceResult`. A request
//! made while no session is open, or with a hub older than version 8, is
//! answered `Offline` at once; one sent and not answered when the session
//! ends is `Unknown` (registering it again is harmless: the hub answers a
//! replacement it already holds as registered).
//!
//! [`EdgeEvent::Replace`]: super::EdgeEvent::Replace

use super::{EdgeAction, EdgeSession, Phase};
use crate::sync::frame::{Frame, REPLACE_VERSION};

/// What became of a replacement registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplaceOutcome {
    /// The hub registered the new certificate.
    Registered,
    /// The hub refused it (`code`: stable reason).
    Refused {
        /// Why (`replace_admin`, `replace_issuer`, …).
        code: String,
        /// Explanation.
        message: String,
    },
    /// Not sent: no session, or the hub cannot take it.
    Offline {
        /// Why.
        reason: String,
    },
    /// Sent, and the session ended before the answer.
    Unknown,
}

/// The replacement of one session in flight.
#[derive(Debug, Default)]
pub(super) struct Replacing {
    /// Sent, awaiting the `ReplaceResult`: token, request.
    sent: Option<(u64, u64)>,
    /// The last request number used.
    last: u64,
}

impl EdgeSession {
    /// The application asks to register `chain` as this identity's
    /// replacement certificate (`token` names it in the answer).
    pub(super) fn on_replace(
        &mut self,
        token: u64,
        chain: Vec<Vec<u8>>,
        now: i64,
        out: &mut Vec<EdgeAction>,
    ) {
        let refuse = |reason: String| EdgeAction::ReplaceDone {
            token,
            outcome: ReplaceOutcome::Offline { reason },
        };
        if self.phase != Phase::Open {
            return out.push(refuse("no open session with the hub".into()));
        }
        if self.version < REPLACE_VERSION {
            return out.push(refuse(format!(
                "the hub speaks protocol {}; certificate replacement needs {REPLACE_VERSION}",
                self.version
            )));
        }
        if self.replacing.sent.is_some() {
            return out.push(refuse("another replacement is awaiting its answer".into()));
        }
        self.replacing.last += 1;
        let request = self.replacing.last;
        self.replacing.sent = Some((token, request));
        self.send(out, now, Frame::Replace { request, chain });
    }

    /// The hub answered a `Replace`.
    pub(super) fn on_replace_result(
        &mut self,
        request: u64,
        code: String,
        message: String,
        now: i64,
        out: &mut Vec<EdgeAction>,
    ) {
        let token = match self.replacing.sent {
            Some((token, r)) if r == request => token,
            _ => {
                let msg = "ReplaceResult for no Replace sent";
                return self.fail(out, now, "protocol", msg, false);
            }
        };
        self.replacing.sent = None;
        let outcome = if code.is_empty() {
            ReplaceOutcome::Registered
        } else {
            ReplaceOutcome::Refused { code, message }
        };
        out.push(EdgeAction::ReplaceDone { token, outcome });
    }

    /// The session ended: a replacement sent and not answered is `Unknown`.
    pub(super) fn end_replacing(&mut self, out: &mut Vec<EdgeAction>) {
        if let Some((token, _)) = self.replacing.sent.take() {
            out.push(EdgeAction::ReplaceDone {
                token,
                outcome: ReplaceOutcome::Unknown,
            });
        }
    }
}
