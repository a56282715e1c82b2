//! The edge side of a replication session, as a pure state machine.
//!
//! The driver (browser or native) feeds it [`EdgeEvent`]s — the transport
//! opened, a frame arrived, a storage action completed, time passed — and
//! performs the [`EdgeAction`]s it returns, in order: send bytes, read the
//! local changes feed, apply a batch from the hub (atomically with the pull
//! checkpoint), record a rejection, report progress, close. One machine lives
//! for one connection; a reconnect starts a new one from the persisted state.

use std::collections::{HashSet, VecDeque};

use crate::cv::DbId;
use crate::doc::RawDoc;
use crate::sync::frame::{
    AuthMode, Frame, MAX_FRAME_BYTES, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, RESYNC_VERSION,
    WireDoc,
};
use crate::sync::hub_write::HubWriteOutcome;
use crate::sync::purge::PurgeOrder;
use crate::sync::signed::{AuthContext, BatchManifest, GENESIS, auth_message};

mod erase;
mod replace;
mod tick;
mod types;
mod writes;

use crate::sync::{BATCH_DOCS, take_batch};
pub use replace::ReplaceOutcome;
pub use types::{EdgeAction, EdgeConfig, EdgeEvent, EdgePersisted, Rejection, SyncStatus};

enum Incoming {
    Batch(Vec<WireDoc>, u64),
    Live(u64),
}

#[derive(PartialEq, Eq, Debug)]
enum Push {
    Idle,
    Reading,
    /// A batch awaits its signature.
    Signing,
    Sending,
}

/// What an [`EdgeAction::Sign`] under way is for: signatures come back
/// in the order they were asked for.
#[derive(PartialEq, Eq, Debug, Clone, Copy)]
enum Signer {
    Proof,
    Batch,
    Receipt,
    Write,
}

#[derive(PartialEq, Eq, Debug)]
enum Phase {
    Start,
    Hello,
    Open,
    Closed,
}

/// The edge side of one session.
pub struct EdgeSession {
    cfg: EdgeConfig,
    st: EdgePersisted,
    phase: Phase,
    live: bool,
    max_frame: usize,
    hub_db_id: Option<DbId>,
    // hub -> edge
    queue: VecDeque<Incoming>,
    applying: Option<(usize, bool)>,
    received: u64,
    total: u64,
    // edge -> hub
    push: Push,
    push_cursor: u64,
    /// The `Welcome`'s push checkpoint and the hub's last etag then.
    welcome_pushed: (u64, u64),
    again: bool,
    in_flight: Vec<WireDoc>,
    in_flight_upto: u64,
    /// The in-flight batch's place in the chain (number, hash, prev).
    in_flight_link: (u64, [u8; 32], [u8; 32]),
    /// The last batch of this identity's chain the hub accepted.
    chain: (u64, [u8; 32]),
    /// A handshake proof is being signed.
    proving: bool,
    /// The hub id the handshake challenge named (a revoked identity's
    /// purge receipt names it: no `Welcome` comes).
    challenge_hub: Option<DbId>,
    /// A purge order under way.
    erase: erase::Erase,
    /// The protocol version of the `Welcome` (0 before it).
    version: u16,
    /// The hub's nonce of this connection (key sessions).
    challenge_nonce: Option<[u8; 32]>,
    /// The signature asked for and not yet back (at most one), then the
    /// ones waiting their turn, oldest first.
    signs: VecDeque<Signer>,
    /// The messages of the signatures waiting their turn.
    to_sign: VecDeque<Vec<u8>>,
    /// Whether a signature is under way (the front of `signs`).
    signing: bool,
    /// Writes with safety `hub`.
    writes: writes::Writes,
    /// The certificate replacement in flight.
    replacing: replace::Replacing,
    /// The ids the hub sent during a resync (`None`: no resync).
    resync: Option<HashSet<Vec<u8>>>,
    /// The read prefixes of the grant.
    read_scope: Vec<String>,
    /// A live batch applied and not acknowledged yet: its `upto`, when the
    /// first such batch was applied, and how many (`tick::ACK_DELAY_MS`).
    ack_due: Option<(u64, i64, u32)>,
    // heartbeats
    last_recv: i64,
    last_sent: i64,
    nonce: u64,
}

impl EdgeSession {
    /// A machine for one connection, started at time `now` (ms).
    pub fn new(cfg: EdgeConfig, persisted: EdgePersisted, now: i64) -> EdgeSession {
        EdgeSession {
            cfg,
            st: persisted,
            phase: Phase::Start,
            live: false,
            max_frame: MAX_FRAME_BYTES,
            hub_db_id: None,
            queue: VecDeque::new(),
            applying: None,
            received: 0,
            total: 0,
            push: Push::Idle,
            push_cursor: 0,
            welcome_pushed: (0, 0),
            again: false,
            in_flight: Vec::new(),
            in_flight_upto: 0,
            in_flight_link: (0, GENESIS, GENESIS),
            chain: (0, GENESIS),
            proving: false,
            challenge_hub: None,
            erase: erase::Erase::None,
            version: 0,
            challenge_nonce: None,
            signs: VecDeque::new(),
            to_sign: VecDeque::new(),
            signing: false,
            writes: writes::Writes::default(),
            replacing: replace::Replacing::default(),
            resync: None,
            read_scope: Vec::new(),
            last_recv: now,
            last_sent: now,
            nonce: 0,
            ack_due: None,
        }
    }

    /// The hub's db id, once welcomed.
    pub fn hub_db_id(&self) -> Option<DbId> {
        self.hub_db_id
    }

    /// Whether the session is in its live phase.
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// Whether the machine has nothing in progress (no unapplied batch, no push
    /// under way, no acknowledgement waiting for its timer): used by tests
    /// and benchmarks to detect quiescence.
    pub fn is_idle(&self) -> bool {
        self.ack_due.is_none()
            && self.queue.is_empty()
            && self.applying.is_none()
            && self.push == Push::Idle
            && !self.again
            && self.erase == erase::Erase::None
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Feeds one event at time `now` (ms) and returns the actions to perform.
    pub fn handle(&mut self, ev: EdgeEvent<'_>, now: i64) -> Vec<EdgeAction> {
        let mut out = Vec::new();
        if self.phase == Phase::Closed {
            match ev {
                EdgeEvent::HubWrite { token, .. } => out.push(EdgeAction::HubWriteDone {
                    token,
                    outcome: HubWriteOutcome::Offline {
                        reason: "no session with the hub".into(),
                    },
                }),
                EdgeEvent::Replace { token, .. } => out.push(EdgeAction::ReplaceDone {
                    token,
                    outcome: ReplaceOutcome::Offline {
                        reason: "no session with the hub".into(),
                    },
                }),
                _ => {}
            }
            return out;
        }
        match ev {
            EdgeEvent::Opened => {
                if self.phase == Phase::Start {
                    self.phase = Phase::Hello;
                    out.push(EdgeAction::Status(SyncStatus::Connecting));
                    self.send(
                        &mut out,
                        now,
                        Frame::Hello {
                            min_version: MIN_PROTOCOL_VERSION,
                            max_version: PROTOCOL_VERSION,
                            db_id: self.st.db_id,
                            database: self.cfg.database.clone(),
                            identity: self.cfg.identity.clone(),
                            credential: self.cfg.credential.clone(),
                            // A resync under way is asked for again.
                            pull_checkpoint: self.st.resync_from.unwrap_or(self.st.pull_checkpoint),
                            checkpoint_hub: self.st.checkpoint_hub.unwrap_or(DbId([0; 16])),
                            auth: self.cfg.auth,
                            key: self
                                .cfg
                                .key
                                .as_ref()
                                .map(|k| k.as_bytes().to_vec())
                                .unwrap_or_default(),
                        },
                    );
                }
            }
            EdgeEvent::Received(bytes) => {
                self.last_recv = now;
                match Frame::decode(bytes, self.max_frame) {
                    Ok(f) => self.on_frame(f, now, &mut out),
                    Err(e) => self.fail(&mut out, now, "protocol", &e.to_string(), false),
                }
            }
            EdgeEvent::Tick => self.on_tick(now, &mut out),
            EdgeEvent::LocalRead { docs, complete } => {
                self.on_local_read(docs, complete, now, &mut out)
            }
            EdgeEvent::Applied => {
                if let Some((n, live)) = self.applying.take() {
                    let upto = self.st.pull_checkpoint;
                    if live {
                        self.live = true;
                        let seen = self.resync.take();
                        if seen.is_some() || self.st.resync_from.is_some() {
                            self.st.resync_from = None;
                            out.push(EdgeAction::EndResync {
                                seen,
                                read: self.read_scope.clone(),
                            });
                            if self.push == Push::Idle && self.again {
                                self.read_local(&mut out);
                            }
                        }
                        out.push(EdgeAction::Status(SyncStatus::Live));
                    } else {
                        self.received += n as u64;
                        self.acknowledge(upto, now, &mut out);
                        if !self.live {
                            out.push(EdgeAction::Status(SyncStatus::Initial {
                                received: self.received,
                                total: self.total.max(self.received),
                            }));
                        }
                    }
                    self.writes_arrived(&mut out);
                    self.next_apply(&mut out);
                }
            }
            EdgeEvent::ApplyFailed(msg) => {
                self.close(&mut out, "storage", &msg, false);
            }
            EdgeEvent::LocalChanged => {
                if self.phase == Phase::Open {
                    if self.push == Push::Idle {
                        self.read_local(&mut out);
                    } else {
                        self.again = true;
                    }
                }
            }
            EdgeEvent::Signed(signature) => self.on_signed(signature, now, &mut out),
            EdgeEvent::PurgeDone(report) => self.on_purge_done(report, now, &mut out),
            EdgeEvent::HubWrite { token, ops } => self.on_hub_write(token, ops, now, &mut out),
            EdgeEvent::Replace { token, chain } => self.on_replace(token, chain, now, &mut out),
            EdgeEvent::Closed => {
                self.phase = Phase::Closed;
                self.end_writes(&mut out);
                self.end_replacing(&mut out);
                out.push(EdgeAction::Status(SyncStatus::Offline));
            }
        }
        self.pump_writes(now, &mut out);
        out
    }

    fn send(&mut self, out: &mut Vec<EdgeAction>, now: i64, f: Frame) {
        // A delayed acknowledgement goes before anything else the edge
        // sends: the hub judges a pushed change vector against the etag
        // the edge acknowledged (`forged_change_vector`), and an edit of a
        // version received in an unacknowledged batch must not look forged.
        if !matches!(f, Frame::ChangesAck { .. })
            && let Some((upto, _, _)) = self.ack_due.take()
        {
            out.push(EdgeAction::Send(Frame::ChangesAck { upto }.encode()));
        }
        self.last_sent = now;
        out.push(EdgeAction::Send(f.encode()));
    }

    fn close(&mut self, out: &mut Vec<EdgeAction>, code: &str, message: &str, fatal: bool) {
        self.phase = Phase::Closed;
        self.end_writes(out);
        self.end_replacing(out);
        if fatal {
            out.push(EdgeAction::Status(SyncStatus::Error {
                code: code.into(),
                message: message.into(),
            }));
        } else {
            out.push(EdgeAction::Status(SyncStatus::Offline));
        }
        out.push(EdgeAction::Close {
            code: code.into(),
            message: message.into(),
            fatal,
        });
    }

    /// A protocol violation by the hub: tell it, then close.
    fn fail(
        &mut self,
        out: &mut Vec<EdgeAction>,
        now: i64,
        code: &str,
        message: &str,
        fatal: bool,
    ) {
        self.send(
            out,
            now,
            Frame::Error {
                code: code.into(),
                message: message.into(),
            },
        );
        self.close(out, code, message, fatal);
    }

    fn on_frame(&mut self, f: Frame, now: i64, out: &mut Vec<EdgeAction>) {
        match (&self.phase, f) {
            (_, Frame::Ping { nonce }) => self.send(out, now, Frame::Pong { nonce }),
            (_, Frame::Pong { .. }) => {}
            (_, Frame::Error { code, message }) => {
                // Retrying cannot help when the hub refuses the identity or the
                // version, or finds this edge's frames malformed (a client and
                // hub of different builds): report it instead of looping.
                // `db_id_taken`: this database id is another identity's; a
                // new device database is the way out, not a retry.
                // `bad_signature`: this edge's signatures do not verify
                // (its key is not the one enrolled): retrying cannot help.
                // `cert_…`: the hub refuses this client certificate (another
                // issuer, expired, replaced…); the same certificate would be
                // refused again. A certificate not valid yet may become so.
                let fatal = matches!(
                    code.as_str(),
                    "unauthorized"
                        | "unsupported_version"
                        | "protocol"
                        | "db_id_taken"
                        | "bad_signature"
                        | "revoked"
                ) || (code.starts_with("cert_") && code != "cert_not_yet_valid");
                self.close(out, &code, &message, fatal);
            }
            (
                Phase::Hello,
                Frame::Challenge {
                    version,
                    nonce,
                    hub_id,
                },
            ) if !self.proving && self.cfg.auth != AuthMode::Token => {
                let Some(key) = &self.cfg.key else {
                    return self.fail(out, now, "protocol", "no key to prove", true);
                };
                let msg = auth_message(&AuthContext {
                    version,
                    hub_id,
                    nonce,
                    database: &self.cfg.database,
                    identity: &self.cfg.identity,
                    edge_db: self.st.db_id,
                    key,
                });
                self.proving = true;
                self.challenge_hub = Some(hub_id);
                self.challenge_nonce = Some(nonce);
                self.ask_sign(Signer::Proof, msg, out);
            }
            (
                Phase::Hello,
                Frame::Welcome {
                    version,
                    hub_db_id,
                    push_checkpoint,
                    hub_last_etag,
                    pending,
                    max_frame_bytes,
                    heartbeat_ms,
                    grant,
                    batch_seq,
                    batch_head,
                    ..
                },
            ) => {
                if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version) {
                    return self.fail(
                        out,
                        now,
                        "unsupported_version",
                        &format!("the hub chose protocol version {version}"),
                        true,
                    );
                }
                self.phase = Phase::Open;
                self.version = version;
                self.hub_db_id = Some(hub_db_id);
                self.chain = (batch_seq, batch_head);
                if self.cfg.auth == AuthMode::Enroll {
                    self.cfg.auth = AuthMode::Key;
                    self.cfg.credential.clear();
                    out.push(EdgeAction::Enrolled);
                }
                if self.st.checkpoint_hub != Some(hub_db_id) {
                    // The hub starts us from 0 (docs/protocol.md §4); the
                    // first batch's commit records the new hub id.
                    self.st.checkpoint_hub = Some(hub_db_id);
                    self.st.pull_checkpoint = 0;
                }
                self.max_frame = (max_frame_bytes as usize).clamp(64 * 1024, MAX_FRAME_BYTES);
                if heartbeat_ms > 0 {
                    self.cfg.heartbeat_ms = self.cfg.heartbeat_ms.min(i64::from(heartbeat_ms));
                }
                self.total = pending;
                self.push_cursor = push_checkpoint;
                self.welcome_pushed = (push_checkpoint, hub_last_etag);
                if self.st.resync_from.is_some() && self.st.pull_checkpoint == 0 {
                    // A resync under way, and the hub starts from 0 anyway
                    // (another hub database): it is sent everything.
                    self.resync = Some(HashSet::new());
                }
                if let Some(g) = grant {
                    self.read_scope = g.read.clone();
                    if version >= 4 {
                        // Kept by the edge: its local deletes are refused
                        // from now on, offline too.
                        out.push(EdgeAction::KeepGuards(g.never_delete.clone()));
                        // Read-only here: changed only by what the hub sends.
                        out.push(EdgeAction::KeepHubOutputs(g.hub_outputs.clone()));
                    }
                    out.push(EdgeAction::Granted(g));
                }
                out.push(EdgeAction::Status(SyncStatus::Initial {
                    received: 0,
                    total: pending,
                }));
                self.read_local(out);
            }
            (
                Phase::Hello | Phase::Open,
                Frame::Purge {
                    order,
                    reason,
                    prefixes,
                    keep,
                    ids,
                },
            ) => {
                let order = PurgeOrder {
                    order,
                    reason,
                    prefixes,
                    keep,
                    ids,
                    markers: Vec::new(),
                };
                self.on_purge(order, now, out);
            }
            (Phase::Open, Frame::Resync { .. }) if self.version >= RESYNC_VERSION => {
                if self.applying.is_some() || !self.queue.is_empty() || self.received > 0 {
                    return self.fail(out, now, "protocol", "Resync after Changes", false);
                }
                let from = *self.st.resync_from.get_or_insert(self.st.pull_checkpoint);
                self.st.pull_checkpoint = 0;
                self.resync.get_or_insert_with(HashSet::new);
                out.push(EdgeAction::BeginResync {
                    pushed: self.push_cursor,
                    from,
                });
            }
            (Phase::Open, Frame::Compacted { horizon }) if self.version >= RESYNC_VERSION => {
                if let Some(hub_db_id) = self.hub_db_id {
                    // Not while a resync is under way: what the edge holds
                    // is being checked against the hub.
                    let (pushed, hub_then) = self.welcome_pushed;
                    let own = (hub_then <= horizon && pushed > 0 && self.st.resync_from.is_none())
                        .then_some(pushed);
                    out.push(EdgeAction::CompactTombstones {
                        horizon,
                        hub_db_id,
                        own,
                    });
                }
            }
            (Phase::Open, Frame::Changes { upto, docs }) => {
                if upto < self.st.pull_checkpoint {
                    return self.fail(out, now, "protocol", "Changes went backwards", false);
                }
                if let Some(seen) = &mut self.resync {
                    seen.extend(docs.iter().map(|d| crate::doc::id_key(&d.id)));
                }
                self.queue.push_back(Incoming::Batch(docs, upto));
                self.next_apply(out);
            }
            (Phase::Open, Frame::Live { upto }) => {
                self.queue.push_back(Incoming::Live(upto));
                self.next_apply(out);
            }
            (Phase::Open, Frame::PushAck { upto, .. }) if self.push == Push::Sending => {
                if upto != self.in_flight_upto {
                    return self.fail(out, now, "protocol", "PushAck for another batch", false);
                }
                let docs = self.in_flight.len() as u32;
                self.in_flight.clear();
                if self.cfg.auth != AuthMode::Token {
                    let (seq, hash, _) = self.in_flight_link;
                    self.chain = (seq, hash);
                }
                self.push_cursor = upto;
                out.push(EdgeAction::Pushed { upto, docs });
                self.read_local(out);
            }
            (
                Phase::Open,
                Frame::PushRejected {
                    upto,
                    code,
                    id,
                    rule,
                    message,
                },
            ) if self.push == Push::Sending => {
                if upto != self.in_flight_upto {
                    return self.fail(
                        out,
                        now,
                        "protocol",
                        "PushRejected for another batch",
                        false,
                    );
                }
                let lower = id.to_lowercase();
                let named: Vec<&WireDoc> = self
                    .in_flight
                    .iter()
                    .filter(|d| d.id.to_lowercase() == lower)
                    .collect();
                let named_ids: Vec<String> = named.iter().map(|d| d.id.clone()).collect();
                // A rejection that names no document of the batch refuses the
                // whole batch (never loop on it).
                let refused: Vec<&WireDoc> = if named.is_empty() {
                    self.in_flight.iter().collect()
                } else {
                    named
                };
                let mut recs = Vec::new();
                for d in refused {
                    let cv = d.versions[0].change_vector.to_text();
                    self.st.rejected.insert((d.id.to_lowercase(), cv.clone()));
                    recs.push(Rejection {
                        id: d.id.clone(),
                        change_vector: cv,
                        code: code.clone(),
                        rule: rule.clone(),
                        message: message.clone(),
                    });
                }
                out.extend(recs.into_iter().map(EdgeAction::RecordRejection));
                if code == "purged" && !named_ids.is_empty() {
                    // The hub purged it: this device erases it too (the
                    // data must not live on here), and says so.
                    let ids = named_ids;
                    out.push(EdgeAction::Purged {
                        order: 0,
                        reason: "purged".into(),
                        removed: ids.len() as u64,
                    });
                    out.push(EdgeAction::Forget { ids });
                }
                self.in_flight.clear();
                self.read_local(out);
            }
            (Phase::Open, Frame::WriteResult { request, answer }) => {
                self.on_write_result(request, answer, now, out)
            }
            (
                Phase::Open,
                Frame::ReplaceResult {
                    request,
                    code,
                    message,
                },
            ) => self.on_replace_result(request, code, message, now, out),
            (_, f) => {
                let msg = format!("unexpected {} frame", f.name());
                self.fail(out, now, "protocol", &msg, false);
            }
        }
    }

    fn next_apply(&mut self, out: &mut Vec<EdgeAction>) {
        if self.applying.is_some() {
            return;
        }
        let Some(item) = self.queue.pop_front() else {
            return;
        };
        let (docs, upto, live) = match item {
            Incoming::Batch(docs, upto) => (docs, upto, false),
            Incoming::Live(upto) => (Vec::new(), upto, true),
        };
        let from = self.st.pull_checkpoint;
        let upto = upto.max(from);
        self.st.pull_checkpoint = upto;
        let Some(hub_db_id) = self.hub_db_id else {
            return;
        };
        self.applying = Some((docs.len(), live));
        let src = Some(self.cfg.source.clone());
        out.push(EdgeAction::ApplyRemote {
            docs: docs
                .into_iter()
                .map(|d| d.into_remote(src.clone()))
                .collect(),
            upto,
            from,
            hub_db_id,
        });
    }

    fn read_local(&mut self, out: &mut Vec<EdgeAction>) {
        // A resync holds pushes until it is live: the edge may hold hub
        // versions past the checkpoint its Hello stated (an interrupted
        // resync), which the hub only counts as sent once acknowledged.
        if self.erase.blocks_pushes() || self.st.resync_from.is_some() {
            // Pushes resume once the purge's receipt is out.
            self.push = Push::Idle;
            self.again = true;
            return;
        }
        self.push = Push::Reading;
        self.again = false;
        out.push(EdgeAction::ReadLocal {
            after: self.push_cursor,
            max_docs: BATCH_DOCS,
        });
    }

    fn on_local_read(
        &mut self,
        docs: Vec<RawDoc>,
        complete: bool,
        now: i64,
        out: &mut Vec<EdgeAction>,
    ) {
        if self.push != Push::Reading || self.phase != Phase::Open {
            return;
        }
        let (source, rejected) = (self.cfg.source.as_str(), &self.st.rejected);
        // Not sent: versions received from the hub, versions the hub
        // refused, and documents an index produced here (output
        // collections are each peer's own: docs/design.md, "Indexes").
        let (batch, upto, _cut) = take_batch(&docs, self.push_cursor, |d| {
            d.meta.source.as_deref() == Some(source)
                || d.meta.flags.is_from_index()
                || rejected.contains(&(d.id.to_lowercase(), d.meta.change_vector.to_text()))
        });
        if batch.is_empty() && (!complete || self.again || upto == self.push_cursor) {
            self.push_cursor = upto;
            if !complete || self.again {
                self.read_local(out);
            } else {
                self.push = Push::Idle;
                self.start_waiting_purge(out);
            }
            return;
        }
        // A batch (or, at the end of the feed, an empty `Push` that only moves
        // the hub's push checkpoint past versions that need no sending, such
        // as those received from the hub: later sessions then start after
        // them instead of re-reading them).
        self.in_flight_upto = upto;
        if self.cfg.auth == AuthMode::Token {
            self.push = Push::Sending;
            self.in_flight = batch.clone();
            return self.send(
                out,
                now,
                Frame::Push {
                    upto,
                    seq: 0,
                    prev: GENESIS,
                    signature: Vec::new(),
                    docs: batch,
                },
            );
        }
        // Signed: the next link of the chain (docs/protocol.md §3).
        let (seq, prev) = (self.chain.0 + 1, self.chain.1);
        let manifest = BatchManifest::of(self.st.db_id, seq, prev, upto, &batch);
        self.in_flight_link = (seq, manifest.hash(), prev);
        self.in_flight = batch;
        self.push = Push::Signing;
        self.ask_sign(Signer::Batch, manifest.message(), out);
    }

    /// Asks the shell to sign `msg` for `who`: at once when no signature
    /// is under way, else after the ones before it. One at a time, so a
    /// shell that signs asynchronously (WebCrypto) and feeds other events
    /// meanwhile can never hand a signature back to the wrong purpose.
    fn ask_sign(&mut self, who: Signer, msg: Vec<u8>, out: &mut Vec<EdgeAction>) {
        self.signs.push_back(who);
        if self.signing {
            self.to_sign.push_back(msg);
        } else {
            self.signing = true;
            out.push(EdgeAction::Sign(msg));
        }
    }

    /// A signature arrived: for the oldest one asked for (the handshake
    /// proof, a purge receipt, a batch, or a write with safety `hub`).
    fn on_signed(&mut self, signature: Vec<u8>, now: i64, out: &mut Vec<EdgeAction>) {
        self.signing = false;
        match self.signs.pop_front() {
            Some(Signer::Proof) if self.proving && self.phase == Phase::Hello => {
                self.proving = false;
                self.send(out, now, Frame::Proof { signature });
            }
            Some(Signer::Receipt) if self.erase.is_signing() => {
                self.send_receipt(signature, now, out)
            }
            Some(Signer::Batch) if self.push == Push::Signing && self.phase == Phase::Open => {
                self.push = Push::Sending;
                let (seq, _, prev) = self.in_flight_link;
                let frame = Frame::Push {
                    upto: self.in_flight_upto,
                    seq,
                    prev,
                    signature,
                    docs: self.in_flight.clone(),
                };
                self.send(out, now, frame);
            }
            Some(Signer::Write) => self.on_write_signed(signature, now, out),
            _ => {}
        }
        // The next one waiting, if any, now.
        if !self.signing
            && let Some(msg) = self.to_sign.pop_front()
        {
            self.signing = true;
            out.push(EdgeAction::Sign(msg));
        }
    }
}

/// Delay before reconnect attempt `attempt` (0-based): `min(30 s, 250 ms ×
/// 2^attempt)` times a factor in [0.5, 1] taken from `unit` (a uniform
/// random number in [0, 1)).
pub fn backoff_ms(attempt: u32, unit: f64) -> u64 {
    let base = 250u64.saturating_mul(1u64 << attempt.min(16)).min(30_000);
    let f = 0.5 + 0.5 * unit.clamp(0.0, 1.0);
    (base as f64 * f) as u64
}
