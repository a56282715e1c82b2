//! The hub machine's side of certificate replacement (protocol version 8,
//! `docs/protocol.md` §2 "Certificate identities"): an open session's
//! `Replace` is handed to the shell ([`HubAction::RegisterReplacement`]),
//! which judges it against the identity's pinned certificates; its answer
//! ([`HubEvent::ReplacementJudged`]) goes back as a `ReplaceResult`. One
//! at a time: a second `Replace` before the answer is a protocol error.
//!
//! [`HubEvent::ReplacementJudged`]: super::HubEvent::ReplacementJudged

use super::{HubAction, HubSession};
use crate::sync::frame::{Frame, REPLACE_VERSION};

/// Most `Replace` frames one session may send: each can rewrite the hub's
/// configuration and write an audit entry, so a session that keeps sending
/// them is ended (`Error(protocol)`). A device registers one replacement
/// per renewal; a few more cover retries.
pub const MAX_REPLACES_PER_SESSION: u32 = 8;

impl HubSession {
    /// A `Replace` arrived in an open session.
    pub(super) fn on_replace(
        &mut self,
        request: u64,
        chain: Vec<Vec<u8>>,
        now: i64,
        out: &mut Vec<HubAction>,
    ) {
        if self.version < REPLACE_VERSION {
            let msg = format!(
                "a Replace in a protocol {} session (certificate replacement needs version {REPLACE_VERSION})",
                self.version
            );
            return self.fail(out, now, "protocol", &msg);
        }
        if self.replacing.is_some() {
            return self.fail(
                out,
                now,
                "protocol",
                "a second Replace before the ReplaceResult",
            );
        }
        self.replaces += 1;
        if self.replaces > MAX_REPLACES_PER_SESSION {
            let msg = format!("more than {MAX_REPLACES_PER_SESSION} Replace frames in one session");
            return self.fail(out, now, "protocol", &msg);
        }
        self.replacing = Some(request);
        out.push(HubAction::RegisterReplacement { request, chain });
    }

    /// The shell judged the replacement in progress.
    pub(super) fn on_replace_judged(
        &mut self,
        code: String,
        message: String,
        now: i64,
        out: &mut Vec<HubAction>,
    ) {
        let Some(request) = self.replacing.take() else {
            return;
        };
        self.send(
            out,
            now,
            Frame::ReplaceResult {
                request,
                code,
                message,
            },
        );
    }
}
