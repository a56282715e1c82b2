//! The hub side of a replication session, as a pure state machine.
//!
//! One [`HubSession`] per connected edge. The driver feeds it
//! [`HubEvent`]s and performs its [`HubAction`]s in order: authenticate the
//! `Hello`, read the changes feed, apply a checked push (atomically with the
//! push checkpoint), send bytes, count metrics, close. Every rule of
//! `docs/protocol.md` §5 is checked here, before anything is stored.

use std::collections::VecDeque;
use std::sync::Arc;

mod auth;
mod checks;
mod feed;
mod receipts;
mod replace;
mod tick;
mod types;

pub use replace::MAX_REPLACES_PER_SESSION;
pub use types::{Grant, HubAction, HubEvent, HubMetric, RejectReason};
mod writes;

use crate::cv::DbId;
use crate::db::{PushGuard, Refusal, RemoteDoc};
use crate::keys::{PublicKey, Verifier};
use crate::policy::Policies;
use crate::sync::frame::{
    Frame, MAX_FRAME_BYTES, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, RESYNC_VERSION, negotiate,
};
use crate::sync::purge::PurgeOrder;
use crate::sync::violation::Violation;

/// Most unacknowledged `Changes` frames per session.
pub const WINDOW: usize = 4;
/// Most documents in one pushed batch.
pub const MAX_PUSH_DOCS: usize = 500;
/// Default time an unauthenticated connection has to send its `Hello` (ms).
pub const HELLO_TIMEOUT_MS: i64 = 10_000;

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    AwaitHello,
    /// A key or enrollment `Hello`: the key to prove is being looked up.
    LookingUp,
    /// The `Challenge` was sent; the `Proof` is awaited.
    AwaitProof,
    Authenticating,
    Open,
    /// A revoked identity was sent a purge order; its receipt is awaited
    /// (and nothing else is accepted) until `purge_deadline`.
    Purging,
    Closed,
}

/// The version range of what looks like a `Hello` (type, magic, two `u16`s).
fn hello_versions(b: &[u8]) -> Option<(u16, u16)> {
    if b.len() < 9 || b[0] != 1 || b[1..5] != crate::sync::frame::MAGIC {
        return None;
    }
    Some((
        u16::from_le_bytes([b[5], b[6]]),
        u16::from_le_bytes([b[7], b[8]]),
    ))
}

/// The hub side of one session.
pub struct HubSession {
    phase: Phase,
    /// Protocol version chosen in the handshake.
    version: u16,
    grant: Option<Grant>,
    edge_db_id: DbId,
    hub_db_id: DbId,
    hub_last_etag: u64,
    max_frame: usize,
    heartbeat_ms: i64,
    timeout_ms: i64,
    /// When the connection opened, and how long it has to authenticate.
    opened: i64,
    hello_timeout_ms: i64,
    /// What the transaction applying a push checks (built at `Authorized`).
    policies: Policies,
    /// The hub etag up to which the edge was sent the feed and acknowledged
    /// it (its validated pull checkpoint, then its `ChangesAck`s).
    seen_upto: u64,
    /// The acknowledgement last recorded (etag, when).
    ack_recorded: (u64, i64),
    /// When an empty `Changes` last moved the edge's checkpoint.
    last_progress: i64,
    /// The compaction horizon the edge was told (`Compacted`).
    told_horizon: u64,
    /// Whether sending started from etag 0 (a first sync or a resync):
    /// every document of the read scope is sent, this device's own
    /// versions too, and a compaction under way cannot make it miss a
    /// deletion.
    from_zero: bool,
    // hub -> edge
    cursor: u64,
    sent_upto: u64,
    reading: bool,
    live: bool,
    unacked: VecDeque<u64>,
    // edge -> hub
    applying: Option<(u64, u32)>,
    // heartbeats
    last_recv: i64,
    last_sent: i64,
    nonce: u64,
    // authentication (docs/protocol.md §2)
    verifier: Arc<dyn Verifier>,
    challenge: [u8; 32],
    hello: Option<auth::PendingHello>,
    /// The key this session proved (`None`: a token session).
    key: Option<PublicKey>,
    /// The identity's chain head as this session knows it.
    batch_head: (u64, [u8; 32]),
    /// The chain head the batch being applied moves to.
    applying_head: Option<(u64, [u8; 32])>,
    /// The purge order sent and not yet answered, and the message of the
    /// `Error(revoked)` to end with once it is (`None`: not revoked).
    purge: Option<(PurgeOrder, Option<String>)>,
    /// When a revoked identity's receipt is due.
    purge_deadline: i64,
    /// Writes with safety `hub`.
    writes: writes::Writes,
    /// The `Replace` handed to the shell, awaiting its judgement.
    replacing: Option<u64>,
    /// `Replace` frames received in this session.
    replaces: u32,
}

impl HubSession {
    /// A session for a new connection at time `now` (ms).
    pub fn new(now: i64) -> HubSession {
        HubSession {
            phase: Phase::AwaitHello,
            version: PROTOCOL_VERSION,
            grant: None,
            edge_db_id: DbId([0; 16]),
            hub_db_id: DbId([0; 16]),
            hub_last_etag: 0,
            max_frame: MAX_FRAME_BYTES,
            heartbeat_ms: 15_000,
            timeout_ms: 45_000,
            opened: now,
            hello_timeout_ms: HELLO_TIMEOUT_MS,
            policies: Policies::default(),
            seen_upto: 0,
            ack_recorded: (0, 0),
            last_progress: 0,
            told_horizon: 0,
            from_zero: false,
            cursor: 0,
            sent_upto: 0,
            reading: false,
            live: false,
            unacked: VecDeque::new(),
            applying: None,
            last_recv: now,
            last_sent: now,
            nonce: 0,
            verifier: crate::keys::default_verifier(),
            challenge: auth::fresh_nonce(),
            hello: None,
            key: None,
            batch_head: (0, crate::sync::signed::GENESIS),
            applying_head: None,
            purge: None,
            purge_deadline: 0,
            writes: writes::Writes::default(),
            replacing: None,
            replaces: 0,
        }
    }

    /// Sets how signatures are checked and the connection's challenge
    /// nonce (tests; by default the platform's verifier and a random nonce).
    pub fn with_keys(mut self, verifier: Arc<dyn Verifier>, nonce: [u8; 32]) -> HubSession {
        self.verifier = verifier;
        self.challenge = nonce;
        self
    }

    /// Sets heartbeat interval and dead-connection timeout (ms).
    pub fn with_heartbeat(mut self, heartbeat_ms: i64, timeout_ms: i64) -> HubSession {
        self.heartbeat_ms = heartbeat_ms;
        self.timeout_ms = timeout_ms;
        self
    }

    /// Sets how long a connection has to send a `Hello` and be authorized
    /// (ms); `Ping`s do not extend it.
    pub fn with_hello_timeout(mut self, ms: i64) -> HubSession {
        self.hello_timeout_ms = ms;
        self
    }

    /// The authenticated identity, once authorized.
    pub fn identity(&self) -> Option<&str> {
        self.grant.as_ref().map(|g| g.identity.as_str())
    }

    /// Whether the session ended.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether the session is in its live phase.
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// Feeds one event at time `now` (ms); returns the actions to perform.
    pub fn handle(&mut self, ev: HubEvent<'_>, now: i64) -> Vec<HubAction> {
        let mut out = Vec::new();
        if self.phase == Phase::Closed {
            return out;
        }
        match ev {
            HubEvent::Received(b) => {
                self.last_recv = now;
                match Frame::decode(b, self.max_frame) {
                    Ok(f) => self.on_frame(f, now, &mut out),
                    Err(e) => match hello_versions(b) {
                        // A Hello of another protocol version may have another
                        // layout: answer with the versions, not "malformed".
                        Some((min, max))
                            if self.phase == Phase::AwaitHello && negotiate(min, max).is_none() =>
                        {
                            self.refuse_versions(&mut out, now, min, max);
                        }
                        _ => self.fail(&mut out, now, "protocol", &e.to_string()),
                    },
                }
            }
            HubEvent::Tick => self.on_tick(now, &mut out),
            HubEvent::Authorized {
                grant,
                hub_db_id,
                hub_last_etag,
                push_checkpoint,
                pending,
                pull_from,
                batch_head,
                purge,
                resync,
            } if self.phase == Phase::Authenticating => {
                if resync.is_some() && self.version < RESYNC_VERSION {
                    self.refuse_resync(&mut out, now);
                    return out;
                }
                // The checkpoint the Hello stated (valid: a resync is only
                // ordered for a checkpoint of this hub database).
                let stated = self.cursor;
                self.phase = Phase::Open;
                self.from_zero = pull_from == 0;
                self.ack_recorded = (pull_from, now);
                out.push(HubAction::RecordAck {
                    edge_db_id: self.edge_db_id,
                    upto: pull_from,
                    now_ms: now,
                });
                self.batch_head = batch_head;
                self.cursor = pull_from;
                self.sent_upto = pull_from;
                // A resyncing edge was sent the feed up to its checkpoint
                // before: what it pushes may supersede what it saw there.
                self.seen_upto = if resync.is_some() { stated } else { pull_from };
                self.policies = Policies::new(
                    grant.policies.iter().map(|(c, p)| (c.clone(), *p)),
                    grant.default_policy,
                );
                let wire_grant = (self.version >= 2).then(|| grant.to_wire());
                self.grant = Some(grant);
                self.hub_db_id = hub_db_id;
                self.hub_last_etag = hub_last_etag;
                self.send(
                    &mut out,
                    now,
                    Frame::Welcome {
                        version: self.version,
                        hub_db_id,
                        push_checkpoint,
                        hub_last_etag,
                        pending,
                        max_frame_bytes: self.max_frame as u32,
                        heartbeat_ms: self.heartbeat_ms.clamp(0, i64::from(u32::MAX)) as u32,
                        grant: wire_grant,
                        batch_seq: batch_head.0,
                        batch_head: batch_head.1,
                    },
                );
                if let Some(horizon) = resync {
                    self.send(&mut out, now, Frame::Resync { horizon });
                }
                if let Some(order) = purge {
                    self.send_order(order, None, now, &mut out);
                }
                self.read(&mut out);
            }
            HubEvent::RevokedPurge {
                hub_db_id,
                order,
                message,
            } if matches!(self.phase, Phase::Authenticating | Phase::Open) => {
                // At the handshake, or live (revoked while connected):
                // nothing more is sent or taken but the receipt.
                self.phase = Phase::Purging;
                self.live = false;
                self.hub_db_id = hub_db_id;
                self.purge_deadline = now + self.timeout_ms;
                self.send_order(order, Some(message), now, &mut out);
            }
            HubEvent::Challenge { hub_id, key } if self.phase == Phase::LookingUp => {
                self.on_lookup(hub_id, key, now, &mut out);
            }
            HubEvent::Unauthorized
                if matches!(self.phase, Phase::Authenticating | Phase::LookingUp) =>
            {
                self.refuse(
                    &mut out,
                    now,
                    "unauthorized",
                    "unknown identity, wrong credential, or a database this identity may not use",
                );
            }
            HubEvent::ChangesRead {
                docs,
                complete,
                last_etag,
                horizon,
                compacted,
            } if self.reading => {
                self.reading = false;
                if !self.from_zero && self.cursor < horizon {
                    // Tombstones after the cursor may be gone: reconnect,
                    // and resync.
                    self.fail(
                        &mut out,
                        now,
                        "resync",
                        "the hub compacted deletions this session had not sent yet; reconnect to resync",
                    );
                    return out;
                }
                if self.version >= RESYNC_VERSION && compacted > self.told_horizon {
                    // The edge may compact what it holds up to there.
                    self.told_horizon = compacted;
                    self.send(&mut out, now, Frame::Compacted { horizon: compacted });
                }
                self.hub_last_etag = self.hub_last_etag.max(last_etag);
                self.on_changes(docs, complete, last_etag, now, &mut out);
            }
            HubEvent::PushApplied {
                applied,
                conflicts,
                resolved,
                last_etag,
            } => {
                if let Some((upto, n)) = self.applying.take() {
                    if let Some(head) = self.applying_head.take() {
                        self.batch_head = head;
                    }
                    self.hub_last_etag = self.hub_last_etag.max(last_etag);
                    out.push(HubAction::Metric(HubMetric::DocsReceived(u64::from(n))));
                    self.send(
                        &mut out,
                        now,
                        Frame::PushAck {
                            upto,
                            applied,
                            conflicts,
                            resolved,
                        },
                    );
                    self.maybe_read(&mut out);
                }
            }
            HubEvent::PushRefused(r) => {
                self.applying_head = None;
                if let Refusal::BatchSequence { .. } = r {
                    // Another session of this identity moved the chain:
                    // this one's view is stale; the edge reconnects.
                    let upto = self.applying.take().map_or(0, |(u, _)| u);
                    self.chain_refused(&mut out, now, upto, "batch_sequence", &r.to_string());
                    return out;
                }
                if let Some((upto, _)) = self.applying.take() {
                    self.reject(&mut out, now, upto, Violation::Refused(r));
                    self.maybe_read(&mut out);
                }
            }
            HubEvent::DbIdTaken if self.phase == Phase::Authenticating => {
                self.refuse(
                    &mut out,
                    now,
                    "db_id_taken",
                    "this edge database id belongs to another identity; a device uses its own database",
                );
            }
            HubEvent::WriteDone(answer) => self.on_write_done(answer, now, &mut out),
            HubEvent::ReplacementJudged { code, message } => {
                self.on_replace_judged(code, message, now, &mut out);
            }
            HubEvent::PushFailed(msg) => {
                self.applying = None;
                self.write_failed();
                self.fail(
                    &mut out,
                    now,
                    "storage",
                    &format!("the hub could not store the batch: {msg}"),
                );
            }
            HubEvent::ReadFailed(msg) => {
                self.fail(
                    &mut out,
                    now,
                    "storage",
                    &format!("the hub could not read its database: {msg}"),
                );
            }
            HubEvent::Committed { last_etag } => {
                self.hub_last_etag = self.hub_last_etag.max(last_etag);
                self.maybe_read(&mut out);
            }
            HubEvent::GrantChanged(None) if self.phase == Phase::Open => {
                self.fail(&mut out, now, "unauthorized", "access was revoked");
            }
            HubEvent::GrantChanged(Some(g))
                if self.phase == Phase::Open && Some(&g) != self.grant.as_ref() =>
            {
                self.fail(
                    &mut out,
                    now,
                    "config_changed",
                    "this edge's rights changed; reconnect",
                );
            }
            HubEvent::MorePurgesOwed if self.phase == Phase::Open => {
                self.fail(
                    &mut out,
                    now,
                    "purge_pending",
                    "more purges are owed than one order carries: reconnect to receive the next order",
                );
            }
            HubEvent::Closed => self.phase = Phase::Closed,
            _ => {}
        }
        out
    }

    fn send(&mut self, out: &mut Vec<HubAction>, now: i64, f: Frame) {
        self.last_sent = now;
        out.push(HubAction::Send(f.encode()));
    }

    fn close(&mut self, out: &mut Vec<HubAction>, code: &str, message: &str) {
        self.phase = Phase::Closed;
        out.push(HubAction::Close {
            code: code.into(),
            message: message.into(),
        });
    }

    /// Ends a session whose Hello offers no protocol version the hub speaks
    /// (whether or not the rest of that Hello parses).
    fn refuse_versions(&mut self, out: &mut Vec<HubAction>, now: i64, min: u16, max: u16) {
        self.refuse(
            out,
            now,
            "unsupported_version",
            &format!(
                "the hub speaks protocol versions {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION}; the edge offers {min} to {max}"
            ),
        );
    }

    /// Refuses a pushed batch: `PushRejected` with the rule, its audit record
    /// and its metric.
    fn reject(&mut self, out: &mut Vec<HubAction>, now: i64, upto: u64, v: Violation) {
        let frame = Frame::PushRejected {
            upto,
            code: v.code().into(),
            id: v.id().into(),
            rule: v.wire_rule(),
            message: v.to_string(),
        };
        out.push(self.refusal_record(&frame));
        out.push(HubAction::Metric(HubMetric::Rejected(
            RejectReason::Violation(v),
        )));
        self.send(out, now, frame);
    }

    /// Refuses the session with a stable `code` (counted), then closes it.
    fn refuse(&mut self, out: &mut Vec<HubAction>, now: i64, code: &'static str, message: &str) {
        out.push(HubAction::Metric(HubMetric::Rejected(
            RejectReason::Session(code),
        )));
        self.fail(out, now, code, message);
    }

    fn fail(&mut self, out: &mut Vec<HubAction>, now: i64, code: &str, message: &str) {
        if code == "protocol" {
            out.push(HubAction::Metric(HubMetric::Rejected(
                RejectReason::Session("protocol"),
            )));
        }
        self.send(
            out,
            now,
            Frame::Error {
                code: code.into(),
                message: message.into(),
            },
        );
        self.close(out, code, message);
    }

    fn on_frame(&mut self, f: Frame, now: i64, out: &mut Vec<HubAction>) {
        match (&self.phase, f) {
            (
                Phase::AwaitHello,
                Frame::Hello {
                    min_version,
                    max_version,
                    db_id,
                    database,
                    identity,
                    credential,
                    pull_checkpoint,
                    checkpoint_hub,
                    auth,
                    key,
                },
            ) => {
                let Some(version) = negotiate(min_version, max_version) else {
                    return self.refuse_versions(out, now, min_version, max_version);
                };
                self.version = version;
                self.edge_db_id = db_id;
                self.cursor = pull_checkpoint;
                self.sent_upto = pull_checkpoint;
                let hello = auth::PendingHello {
                    database,
                    identity,
                    credential,
                    auth,
                    key: None,
                    pull_checkpoint,
                    checkpoint_hub,
                    hub_id: DbId([0; 16]),
                    expected: None,
                };
                self.on_hello(hello, &key, now, out);
            }
            (Phase::AwaitProof, Frame::Proof { signature }) => self.on_proof(&signature, now, out),
            (
                Phase::AwaitHello | Phase::LookingUp | Phase::AwaitProof | Phase::Authenticating,
                f @ (Frame::Ping { .. } | Frame::Pong { .. }),
            ) => {
                // Nothing but the handshake before authentication (a Ping
                // must not keep an unauthenticated connection alive).
                let msg = format!("{} before the handshake ended", f.name());
                self.fail(out, now, "protocol", &msg);
            }
            (
                Phase::Open | Phase::Purging,
                Frame::PurgeReceipt {
                    order,
                    removed,
                    ids_hash,
                    signature,
                },
            ) => self.on_purge_receipt(order, removed, ids_hash, signature, now, out),
            // Sent before the edge read the order: neither is acted on.
            (Phase::Purging, Frame::Push { .. } | Frame::ChangesAck { .. }) => {}
            (_, Frame::Ping { nonce }) => self.send(out, now, Frame::Pong { nonce }),
            (_, Frame::Pong { .. }) => {}
            (_, Frame::Error { code, message }) => {
                self.close(out, &code, &format!("the edge reported: {message}"));
            }
            (Phase::Open, Frame::ChangesAck { upto }) => {
                if !self.unacked.contains(&upto) {
                    return self.fail(out, now, "protocol", "ChangesAck for a batch never sent");
                }
                while let Some(&u) = self.unacked.front() {
                    if u > upto {
                        break;
                    }
                    self.unacked.pop_front();
                }
                self.seen_upto = self.seen_upto.max(upto);
                self.maybe_record_ack(now, out);
                self.maybe_read(out);
            }
            (
                Phase::Open,
                Frame::Push {
                    upto,
                    seq,
                    prev,
                    signature,
                    docs,
                },
            ) => {
                if self.applying.is_some() {
                    return self.fail(out, now, "protocol", "a second Push before the PushAck");
                }
                if self.grant.is_none() {
                    // Unreachable: an open session has a grant.
                    out.push(HubAction::Metric(HubMetric::Rejected(
                        RejectReason::Session("unauthorized"),
                    )));
                    return self.send(
                        out,
                        now,
                        Frame::PushRejected {
                            upto,
                            code: "unauthorized".into(),
                            id: String::new(),
                            rule: String::new(),
                            message: "no session".into(),
                        },
                    );
                }
                let Some((manifest, signed)) =
                    self.check_signed(upto, seq, prev, signature, &docs, now, out)
                else {
                    return;
                };
                let Some(g) = &self.grant else { return };
                match self.check_push(g, &docs) {
                    Ok(()) => {
                        let source = g.source_for(&self.edge_db_id);
                        let guard = Arc::new(PushGuard {
                            owner: format!("edge:{}", g.identity),
                            device: self.edge_db_id,
                            source: source.clone(),
                            seen_upto: self.seen_upto,
                            policies: self.policies.clone(),
                            relay: g.relay,
                        });
                        let docs: Vec<(RemoteDoc, bool)> = docs
                            .into_iter()
                            .map(|d| {
                                let readable = g.read.allows(&d.id);
                                (d.into_remote(Some(source.clone())), readable)
                            })
                            .collect();
                        self.applying = Some((upto, docs.len() as u32));
                        self.applying_head =
                            signed.as_ref().map(|_| (manifest.seq, manifest.hash()));
                        out.push(HubAction::ApplyPush {
                            edge_db_id: self.edge_db_id,
                            upto,
                            docs,
                            guard,
                            manifest,
                            signed,
                        });
                    }
                    Err(v) => self.reject(out, now, upto, v),
                }
            }
            (
                Phase::Open,
                Frame::Write {
                    request,
                    signature,
                    ops,
                },
            ) => self.on_write(request, signature, ops, now, out),
            (Phase::Open, Frame::Replace { request, chain }) => {
                self.on_replace(request, chain, now, out);
            }
            (_, f) => {
                let msg = format!("unexpected {} frame", f.name());
                self.fail(out, now, "protocol", &msg);
            }
        }
    }

    /// The audit record of a refusal about to be sent (a `PushRejected`).
    fn refusal_record(&self, f: &Frame) -> HubAction {
        let (upto, code, id, rule, message) = match f {
            Frame::PushRejected {
                upto,
                code,
                id,
                rule,
                message,
            } => (*upto, code, id, rule, message),
            _ => (
                0,
                &String::new(),
                &String::new(),
                &String::new(),
                &String::new(),
            ),
        };
        HubAction::RecordRefusal {
            edge_db_id: self.edge_db_id,
            upto,
            code: code.clone(),
            id: id.clone(),
            rule: rule.clone(),
            message: message.clone(),
        }
    }
}
