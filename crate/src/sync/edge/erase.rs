//! The edge machine's side of purge orders (`docs/protocol.md` §3
//! "Purge"): the hub names prefixes that left this edge's read scope; the
//! edge lets its own pending pushes finish (its writes reach the hub
//! first), erases the documents ([`EdgeAction::Purge`], the engine's
//! physical purge), and answers with a `PurgeReceipt` signed by its key.
//! Pushes wait while the erasure and its signature are under way, so a
//! batch signature and a receipt signature are never asked for at once.

use super::{EdgeAction, EdgeSession, Phase, Push, Signer};
use crate::cv::DbId;
use crate::db::PurgeReport;
use crate::sync::frame::{AuthMode, Frame};
use crate::sync::purge::PurgeOrder;
use crate::sync::signed::{PurgeReceipt, order_ids_digest};

/// Where a purge order stands at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Erase {
    /// No order.
    None,
    /// Received; starts once the push under way is done.
    Waiting(PurgeOrder),
    /// The engine is erasing.
    Erasing(PurgeOrder),
    /// Erased; the receipt awaits its signature.
    Signing(PurgeReceipt),
}

impl Erase {
    /// Whether pushes must wait (erasing, or signing the receipt).
    pub(super) fn blocks_pushes(&self) -> bool {
        matches!(self, Erase::Erasing(_) | Erase::Signing(_))
    }

    /// Whether a receipt awaits its signature.
    pub(super) fn is_signing(&self) -> bool {
        matches!(self, Erase::Signing(_))
    }
}

impl EdgeSession {
    /// A `Purge` frame: carried out at once when no push is under way (or
    /// no session will follow: a revoked identity), else once it is.
    pub(super) fn on_purge(&mut self, order: PurgeOrder, now: i64, out: &mut Vec<EdgeAction>) {
        if self.erase != Erase::None {
            return self.fail(
                out,
                now,
                "protocol",
                "a second Purge before the first was answered",
                false,
            );
        }
        // A revoked identity erases at once (nothing it pushes is taken any
        // more); a narrowed one lets its push under way finish first.
        let now_ok =
            self.phase == Phase::Hello || self.push == Push::Idle || order.reason == "revoked";
        self.erase = Erase::Waiting(order);
        if now_ok {
            self.start_waiting_purge(out);
        }
    }

    /// Starts the erasure of a waiting order.
    pub(super) fn start_waiting_purge(&mut self, out: &mut Vec<EdgeAction>) {
        if let Erase::Waiting(order) = std::mem::replace(&mut self.erase, Erase::None) {
            self.erase = Erase::Erasing(order.clone());
            out.push(EdgeAction::Purge { order });
        }
    }

    /// The engine erased the order's documents: report it and sign the
    /// receipt (a token session sends it unsigned).
    pub(super) fn on_purge_done(
        &mut self,
        report: PurgeReport,
        now: i64,
        out: &mut Vec<EdgeAction>,
    ) {
        let Erase::Erasing(order) = std::mem::replace(&mut self.erase, Erase::None) else {
            return;
        };
        out.push(EdgeAction::Purged {
            order: order.order,
            reason: order.reason.clone(),
            removed: report.removed,
        });
        let receipt = PurgeReceipt {
            hub_id: self
                .hub_db_id
                .or(self.challenge_hub)
                .unwrap_or(DbId([0; 16])),
            device: self.st.db_id,
            order: order.order,
            reason: order.reason,
            prefixes: order.prefixes,
            keep: order.keep,
            order_ids: order_ids_digest(&order.ids),
            removed: report.removed,
            ids_hash: report.ids_hash,
        };
        if self.cfg.auth == AuthMode::Token {
            self.erase = Erase::Signing(receipt);
            return self.send_receipt(Vec::new(), now, out);
        }
        let msg = receipt.message();
        self.erase = Erase::Signing(receipt);
        self.ask_sign(Signer::Receipt, msg, out);
    }

    /// Sends the receipt with its signature, then lets pushes resume.
    pub(super) fn send_receipt(&mut self, signature: Vec<u8>, now: i64, out: &mut Vec<EdgeAction>) {
        let Erase::Signing(r) = std::mem::replace(&mut self.erase, Erase::None) else {
            return;
        };
        self.send(
            out,
            now,
            Frame::PurgeReceipt {
                order: r.order,
                removed: r.removed,
                ids_hash: r.ids_hash,
                signature,
            },
        );
        if self.phase == Phase::Open && self.push == Push::Idle && self.again {
            self.read_local(out);
        }
    }
}
