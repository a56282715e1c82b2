//! The hub machine's side of purge orders (`docs/protocol.md` §3 "Purge"):
//! an order goes out after `Welcome` (a narrowed scope) or instead of it (a
//! revoked identity); the edge's `PurgeReceipt` must answer that order,
//! carry the session key's signature over
//! [`PurgeReceipt::message`], and is then recorded
//! ([`HubAction::RecordPurgeReceipt`]). A revoked identity's session ends
//! with `Error(revoked)` once its receipt is recorded (or its time is up).

use super::{HubAction, HubSession, Phase};
use crate::sync::frame::Frame;
use crate::sync::purge::PurgeOrder;
use crate::sync::signed::{PurgeReceipt, order_ids_digest};

impl HubSession {
    /// Sends `order`; `revoked`: the message of the `Error(revoked)` that
    /// ends the session once the receipt is in.
    pub(super) fn send_order(
        &mut self,
        order: PurgeOrder,
        revoked: Option<String>,
        now: i64,
        out: &mut Vec<HubAction>,
    ) {
        self.send(
            out,
            now,
            Frame::Purge {
                order: order.order,
                reason: order.reason.clone(),
                prefixes: order.prefixes.clone(),
                keep: order.keep.clone(),
                ids: order.ids.clone(),
            },
        );
        self.purge = Some((order, revoked));
    }

    /// The edge's receipt: it must name the order sent in this session and
    /// verify under the session's key; then it is recorded.
    pub(super) fn on_purge_receipt(
        &mut self,
        order: u64,
        removed: u64,
        ids_hash: [u8; 32],
        signature: Vec<u8>,
        now: i64,
        out: &mut Vec<HubAction>,
    ) {
        let Some((sent, revoked)) = self.purge.take() else {
            return self.fail(out, now, "protocol", "PurgeReceipt for no order sent");
        };
        if sent.order != order {
            let msg = format!(
                "PurgeReceipt for order {order}; the order sent is {}",
                sent.order
            );
            return self.fail(out, now, "protocol", &msg);
        }
        let receipt = PurgeReceipt {
            hub_id: self.hub_db_id,
            device: self.edge_db_id,
            order,
            reason: sent.reason.clone(),
            prefixes: sent.prefixes.clone(),
            keep: sent.keep.clone(),
            order_ids: order_ids_digest(&sent.ids),
            removed,
            ids_hash,
        };
        let signed = match self.key.clone() {
            None => None,
            Some(key) => {
                if !self.verifier.verify(&key, &receipt.message(), &signature) {
                    let msg = format!(
                        "the signature of the receipt for purge order {order} does not verify under this session's key {}",
                        key.fingerprint()
                    );
                    self.chain_refused(out, now, 0, "bad_signature", &msg);
                    return;
                }
                Some((key, signature))
            }
        };
        out.push(HubAction::RecordPurgeReceipt { receipt, signed });
        if let Some(message) = revoked {
            debug_assert_eq!(self.phase, Phase::Purging);
            self.refuse(out, now, "revoked", &message);
        }
    }
}
