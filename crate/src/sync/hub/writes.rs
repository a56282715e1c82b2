//! The hub machine's side of write safety `hub` (protocol version 6,
//! `docs/protocol.md` §4 "Write safety"): a `Write` is checked like a push
//! (its signature under the session's key first, then the rules of §5 that
//! apply to it) and handed to the transaction ([`HubAction::ApplyWrite`],
//! `crate::sync::hub_write::apply`); its answer goes back as `WriteResult`.
//! One `Write` at a time per session, numbered upwards.

use super::{HubAction, HubMetric, HubSession, RejectReason};
use crate::sync::frame::{Frame, HUB_WRITE_VERSION, WireWrite, WriteAnswer};
use crate::sync::hub_write::HubWriteManifest;
use crate::sync::signed::GENESIS;

/// Where this session's writes stand.
#[derive(Debug, Default)]
pub(super) struct Writes {
    /// The request being applied.
    applying: Option<u64>,
    /// The last request number taken.
    last: u64,
}

impl HubSession {
    /// A `Write` arrived in an open session.
    pub(super) fn on_write(
        &mut self,
        request: u64,
        signature: Vec<u8>,
        ops: Vec<WireWrite>,
        now: i64,
        out: &mut Vec<HubAction>,
    ) {
        if self.version < HUB_WRITE_VERSION {
            let msg = format!(
                "a Write in a protocol {} session (write safety hub needs version {HUB_WRITE_VERSION})",
                self.version
            );
            return self.fail(out, now, "protocol", &msg);
        }
        if self.writes.applying.is_some() {
            return self.fail(
                out,
                now,
                "protocol",
                "a second Write before the WriteResult",
            );
        }
        if request <= self.writes.last {
            let msg = format!(
                "Write request {request} after request {}: numbers increase in a session",
                self.writes.last
            );
            return self.fail(out, now, "protocol", &msg);
        }
        self.writes.last = request;
        let Some(g) = self.grant.as_ref() else {
            return;
        };
        let nonce = if self.key.is_some() {
            self.challenge
        } else {
            GENESIS
        };
        let manifest = HubWriteManifest::of(self.hub_db_id, self.edge_db_id, nonce, request, &ops);
        let signed = match self.key.clone() {
            None => None,
            Some(key) => {
                if !self.verifier.verify(&key, &manifest.message(), &signature) {
                    let msg = format!(
                        "the signature of write {request} does not verify under this session's key {}",
                        key.fingerprint()
                    );
                    return self.chain_refused(out, now, 0, "bad_signature", &msg);
                }
                Some((key, signature))
            }
        };
        if let Err(v) = self.check_writes(g, &ops) {
            let answer = WriteAnswer::Refused {
                code: v.code().into(),
                id: v.id().into(),
                rule: v.wire_rule(),
                message: v.to_string(),
            };
            self.record_write_refusal(&answer, out);
            out.push(HubAction::Metric(HubMetric::Rejected(
                RejectReason::Violation(v),
            )));
            return self.send(out, now, Frame::WriteResult { request, answer });
        }
        self.writes.applying = Some(request);
        out.push(HubAction::ApplyWrite {
            ops,
            manifest,
            signed,
        });
    }

    /// The transaction of the write in progress answered.
    pub(super) fn on_write_done(
        &mut self,
        answer: WriteAnswer,
        now: i64,
        out: &mut Vec<HubAction>,
    ) {
        let Some(request) = self.writes.applying.take() else {
            return;
        };
        match &answer {
            WriteAnswer::Applied {
                etag,
                change_vectors,
            } => {
                self.hub_last_etag = self.hub_last_etag.max(*etag);
                out.push(HubAction::Metric(HubMetric::DocsReceived(
                    change_vectors.len() as u64,
                )));
            }
            WriteAnswer::Refused { .. } => self.record_write_refusal(&answer, out),
            WriteAnswer::Conflict { .. } => {}
        }
        self.send(out, now, Frame::WriteResult { request, answer });
        self.maybe_read(out);
    }

    /// A storage failure ended the write in progress (with the session).
    pub(super) fn write_failed(&mut self) {
        self.writes.applying = None;
    }

    /// The audit record of a refused write (as for a refused push; `upto`
    /// 0, the rule prefixed `hub write:`).
    fn record_write_refusal(&self, answer: &WriteAnswer, out: &mut Vec<HubAction>) {
        if let WriteAnswer::Refused {
            code,
            id,
            rule,
            message,
        } = answer
        {
            out.push(HubAction::RecordRefusal {
                edge_db_id: self.edge_db_id,
                upto: 0,
                code: code.clone(),
                id: id.clone(),
                rule: format!("hub write: {rule}"),
                message: message.clone(),
            });
        }
    }
}
