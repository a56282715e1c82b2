//! Replication: access rules, the wire protocol and its two state machines.
//!
//! See `docs/protocol.md` for the protocol and its security properties.
//!
//! - [`edge`], [`hub`]: the two state machines, pure (events in, actions out);
//! - [`frame`]: the wire frames and their codec;
//! - `rules`: access rules (id prefixes, canonical ids);
//! - `violation`: the typed refusals of the hub ([`Violation`]);
//! - [`run`]: the one depth-first loop that performs the machines' actions,
//!   over the effects a shell provides ([`run::EdgeShell`], [`run::HubShell`]);
//! - [`driver`]: the machines' storage actions over a [`crate::Database`].
//!
//! The shells (WebSocket, timers) live in the hub crate, the native client
//! crate (`outpost-client`) and the wasm bindings; the simulation tests drive
//! the machines with no network.

pub mod compact;
pub mod driver;
pub mod edge;
pub mod feed;
pub mod forget;
pub mod frame;
pub mod hub;
pub mod hub_write;
pub mod purge;
pub mod received;
mod rules;
pub mod run;
pub mod signed;
mod violation;

pub use crate::policy::ConflictPolicy;
pub use edge::{
    EdgeAction, EdgeConfig, EdgeEvent, EdgePersisted, EdgeSession, Rejection, ReplaceOutcome,
    SyncStatus,
};
pub use frame::{Frame, FrameError, WireDoc, WireGrant};
pub use hub::{Grant, HubAction, HubEvent, HubMetric, HubSession, RejectReason};
pub use purge::PurgeOrder;
pub use rules::{Prefixes, check_canonical};
pub use violation::{VIOLATION_CODES, Violation};

use crate::doc::RawDoc;

/// Most documents per replication batch.
pub const BATCH_DOCS: usize = 500;
/// Target bytes per replication batch (one larger document travels alone).
pub const BATCH_BYTES: usize = 512 * 1024;

/// Local record key of the pull checkpoint at an edge (value: `u64` LE).
pub fn pull_checkpoint_key(source: &str) -> Vec<u8> {
    format!("sync/pull/{source}").into_bytes()
}

/// Local record key prefix of recorded rejections at an edge.
pub fn rejection_key_prefix(source: &str) -> Vec<u8> {
    format!("sync/rejected/{source}/").into_bytes()
}

/// Local record key of one rejection (id and change vector).
pub fn rejection_key(source: &str, r: &Rejection) -> Vec<u8> {
    let mut k = rejection_key_prefix(source);
    k.extend_from_slice(r.id.to_lowercase().as_bytes());
    k.push(0);
    k.extend_from_slice(r.change_vector.as_bytes());
    k
}

/// Local record key of the push checkpoint the hub holds for an edge database.
pub fn push_checkpoint_key(identity: &str, edge_db: &crate::cv::DbId) -> Vec<u8> {
    let mut k = format!("sync/push/{identity}/").into_bytes();
    k.extend_from_slice(edge_db.to_string().as_bytes());
    k
}

/// A stored document in its wire form (winner first, then its conflicts).
pub fn wire_doc(d: &RawDoc) -> WireDoc {
    WireDoc {
        id: d.id.clone(),
        collection: d.meta.collection.clone(),
        versions: d.versions.clone(),
    }
}

/// Takes documents of a changes-feed read, in etag order, into one batch:
/// skips those `skip` names (the cursor still moves past them) and stops
/// before the batch would exceed [`BATCH_BYTES`] (a larger document travels
/// alone). Returns the batch, the etag it covers (from `cursor`), and whether
/// it was cut short.
pub(crate) fn take_batch(
    docs: &[RawDoc],
    cursor: u64,
    skip: impl Fn(&RawDoc) -> bool,
) -> (Vec<WireDoc>, u64, bool) {
    let mut batch = Vec::new();
    let mut bytes = 0usize;
    let mut upto = cursor;
    for d in docs {
        if skip(d) {
            upto = upto.max(d.meta.etag);
            continue;
        }
        let w = wire_doc(d);
        let len = w.encoded_len();
        if !batch.is_empty() && bytes + len > BATCH_BYTES {
            return (batch, upto, true);
        }
        bytes += len;
        upto = upto.max(d.meta.etag);
        batch.push(w);
    }
    (batch, upto, false)
}
