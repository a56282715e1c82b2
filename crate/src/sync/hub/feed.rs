//! The hub machine's side of the changes feed (docs/protocol.md §4 "Hub
//! to edge, flow control", "Tombstone compaction"): reading the feed after
//! the cursor, filtering it by the grant (and this device's own versions,
//! unless the session started from 0), batching and flow control, the
//! empty `Changes` that keep a quiet edge's checkpoint moving, and the
//! device's acknowledgement records.

use std::sync::Arc;

use super::{HubAction, HubMetric, HubSession, Phase, WINDOW};
use crate::doc::RawDoc;
use crate::sync::compact::ACK_RECORD_MS;
use crate::sync::feed::FeedPage;
use crate::sync::frame::{Frame, HUB_OUTPUTS_VERSION, RESYNC_VERSION, WireDoc, changes_bytes};
use crate::sync::{BATCH_DOCS, take_batch};

impl HubSession {
    /// Records the device's acknowledgement when it moved (or, to say the
    /// device is still seen, when the record is old), at most every
    /// [`ACK_RECORD_MS`].
    pub(super) fn maybe_record_ack(&mut self, now: i64, out: &mut Vec<HubAction>) {
        let (upto, at) = self.ack_recorded;
        let due =
            now - at >= ACK_RECORD_MS && (self.seen_upto > upto || now - at >= 60 * ACK_RECORD_MS);
        if self.phase == Phase::Open && due {
            self.ack_recorded = (self.seen_upto, now);
            out.push(HubAction::RecordAck {
                edge_db_id: self.edge_db_id,
                upto: self.seen_upto,
                now_ms: now,
            });
        }
    }

    /// In the live phase, when everything sent was acknowledged but the
    /// cursor moved past what the edge acknowledged (commits outside its
    /// read scope, or the `Live` frame, which is not acknowledged): an
    /// empty `Changes` at most every [`ACK_RECORD_MS`], so its checkpoint
    /// and acknowledgement follow the feed and do not hold tombstone
    /// compaction back.
    pub(super) fn maybe_send_progress(&mut self, now: i64, out: &mut Vec<HubAction>) {
        if self.phase == Phase::Open
            && self.live
            && !self.reading
            && self.unacked.is_empty()
            && self.cursor > self.seen_upto
            && now - self.last_progress >= ACK_RECORD_MS
        {
            self.last_progress = now;
            let upto = self.cursor;
            self.sent_upto = upto;
            self.unacked.push_back(upto);
            self.send(
                out,
                now,
                Frame::Changes {
                    upto,
                    docs: Vec::new(),
                },
            );
        }
    }

    /// An edge of a version without `Resync` whose checkpoint is below
    /// the compaction horizon: it cannot be served without missing
    /// deletions.
    pub(super) fn refuse_resync(&mut self, out: &mut Vec<HubAction>, now: i64) {
        self.refuse(
            out,
            now,
            "unsupported_version",
            &format!(
                "the hub compacted deletions this device has not seen; a device of protocol version {} cannot resync: upgrade it to version {RESYNC_VERSION}",
                self.version
            ),
        );
    }

    pub(super) fn maybe_read(&mut self, out: &mut Vec<HubAction>) {
        if self.phase == Phase::Open
            && !self.reading
            && self.unacked.len() < WINDOW
            && (!self.live || self.cursor < self.hub_last_etag)
        {
            self.read(out);
        }
    }

    pub(super) fn read(&mut self, out: &mut Vec<HubAction>) {
        self.reading = true;
        let scope = match &self.grant {
            Some(g) if !self.live && !g.read.is_all() => Some(g.read.clone()),
            _ => None,
        };
        out.push(HubAction::ReadChanges {
            after: self.cursor,
            max_docs: BATCH_DOCS,
            scope,
        });
    }

    pub(super) fn on_changes(
        &mut self,
        page: Arc<FeedPage>,
        complete: bool,
        last_etag: u64,
        now: i64,
        out: &mut Vec<HubAction>,
    ) {
        let Some(g) = &self.grant else { return };
        if self.phase != Phase::Open {
            return;
        }
        // Only the versions this very device sent (stored as received) are
        // held back: it has them. Other devices of the same identity, and
        // this device after a wipe (a new db id), receive them.
        // A session from 0 sends them too: the device may have lost them
        // (a resync), and it counts what it is sent.
        let own = (!self.from_zero).then(|| g.source_for(&self.edge_db_id));
        // Documents an index produced here (its output collection) stay
        // here: they may summarise documents this edge may not read
        // (docs/design.md, "Indexes"); except the outputs of the indexes
        // this hub shares (`Grant::hub_outputs`), sent to an edge that
        // keeps them read-only (protocol 9), where its read prefixes allow.
        let shares = self.version >= HUB_OUTPUTS_VERSION;
        let skip = |d: &RawDoc| {
            !g.read.allows(&d.id)
                || (d.meta.flags.is_from_index()
                    && !(shares && g.shares_output(d.meta.collection.as_deref())))
                || (own.is_some() && d.meta.source.as_deref() == own.as_deref())
        };
        // When this session may send every document of the page, it sends
        // the batch every such session sends, encoded once for all of them
        // (`crate::sync::feed`); otherwise a batch of its own.
        let batch = if page.docs().iter().any(skip) {
            let (docs, upto, cut) = take_batch(page.docs(), self.cursor, skip);
            Batch::Own { docs, upto, cut }
        } else {
            let w = page.whole();
            Batch::Shared {
                n: w.count,
                upto: self.cursor.max(w.upto),
                cut: w.count < page.len(),
            }
        };
        let (n, mut upto, cut) = match &batch {
            Batch::Own { docs, upto, cut } => (docs.len(), *upto, *cut),
            Batch::Shared { n, upto, cut } => (*n, *upto, *cut),
        };
        let done = complete && !cut;
        if done {
            upto = upto.max(last_etag);
        }
        self.cursor = upto;
        if n > 0 || (upto >= self.sent_upto + 1000 && !done) {
            self.sent_upto = upto;
            self.unacked.push_back(upto);
            match batch {
                Batch::Own { docs, .. } => self.send(out, now, Frame::Changes { upto, docs }),
                Batch::Shared { .. } => {
                    self.last_sent = now;
                    out.push(HubAction::Send(changes_bytes(upto, &page.whole().encoded)));
                }
            }
            if n > 0 {
                out.push(HubAction::Metric(HubMetric::DocsSent(n as u64)));
            }
        }
        if done && !self.live {
            self.live = true;
            self.sent_upto = upto;
            self.send(out, now, Frame::Live { upto });
        }
        if !done || self.cursor < self.hub_last_etag {
            self.maybe_read(out);
        }
    }
}

/// What a session sends from one page of the feed.
enum Batch {
    /// Documents filtered for this session.
    Own {
        docs: Vec<WireDoc>,
        upto: u64,
        cut: bool,
    },
    /// The page's shared batch ([`FeedPage::whole`]): its first `n`
    /// documents.
    Shared { n: usize, upto: u64, cut: bool },
}
