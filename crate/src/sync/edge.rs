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
use crate::db::RemoteDoc;
use crate::doc::RawDoc;
use crate::keys::PublicKey;
use crate::sync::frame::{
    AuthMode, Frame, MAX_FRAME_BYTES, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, RESYNC_VERSION,
    WireDoc, WireGrant, WireWrite,
};
use crate::sync::hub_write::HubWriteOutcome;
use crate::sync::purge::PurgeOrder;
use crate::sync::signed::{AuthContext, BatchManifest, GENESIS, auth_message};

mod erase;
mod replace;
mod tick;
mod writes;

use crate::sync::{BATCH_DOCS, take_batch};
pub use replace::ReplaceOutcome;

/// Settings of an edge's sessions.
#[derive(Clone, Debug)]
pub struct EdgeConfig {
    /// Database name at the hub.
    pub database: String,
    /// Identity presented to the hub.
    pub identity: String,
    /// How the edge authenticates: its key (the default for
    /// [`EdgeConfig::with_key`]), an enrollment code redeemed for its key,
    /// or a shared-secret token (development mode, [`EdgeConfig::new`]).
    pub auth: AuthMode,
    /// The edge's public key (key and enrollment modes): the shell signs
    /// with its private half ([`EdgeAction::Sign`]).
    pub key: Option<PublicKey>,
    /// Credential: the token, or the enrollment code; empty for a key.
    pub credential: String,
    /// Source tag recorded on versions received from the hub (default
    /// `"hub"`); versions carrying it are not pushed back.
    pub source: String,
    /// Send a `Ping` after this long without sending (ms).
    pub heartbeat_ms: i64,
    /// Consider the connection dead after this long without receiving (ms).
    pub timeout_ms: i64,
}

impl EdgeConfig {
    /// Settings of a token session (development mode: a hub accepts
    /// tokens only when its configuration says so), with the default source
    /// tag and heartbeat (15 s / 45 s).
    pub fn new(database: &str, identity: &str, credential: &str) -> EdgeConfig {
        EdgeConfig {
            database: database.into(),
            identity: identity.into(),
            auth: AuthMode::Token,
            key: None,
            credential: credential.into(),
            source: "hub".into(),
            heartbeat_ms: 15_000,
            timeout_ms: 45_000,
        }
    }
}

impl EdgeConfig {
    /// Settings of an edge enrolled with `key` (its sessions prove it).
    pub fn with_key(database: &str, identity: &str, key: PublicKey) -> EdgeConfig {
        EdgeConfig {
            auth: AuthMode::Key,
            key: Some(key),
            credential: String::new(),
            ..EdgeConfig::new(database, identity, "")
        }
    }

    /// Settings of an edge redeeming the one-time enrollment `code` for
    /// `key`; once a session opens the key is enrolled, and the shell
    /// switches to [`EdgeConfig::enrolled`] ([`EdgeAction::Enrolled`]).
    pub fn enrolling(database: &str, identity: &str, key: PublicKey, code: &str) -> EdgeConfig {
        EdgeConfig {
            auth: AuthMode::Enroll,
            credential: code.into(),
            ..EdgeConfig::with_key(database, identity, key)
        }
    }

    /// These settings after the enrollment succeeded: the key alone.
    pub fn enrolled(mut self) -> EdgeConfig {
        if self.auth == AuthMode::Enroll {
            self.auth = AuthMode::Key;
            self.credential.clear();
        }
        self
    }
}

/// What the edge has persisted, loaded by the driver before each session.
#[derive(Clone, Debug)]
pub struct EdgePersisted {
    /// The edge database's id.
    pub db_id: DbId,
    /// Hub etag up to which the edge holds the hub's changes.
    pub pull_checkpoint: u64,
    /// The hub database the pull checkpoint refers to.
    pub checkpoint_hub: Option<DbId>,
    /// Versions the hub rejected: (lowercase id, change vector text).
    pub rejected: HashSet<(String, String)>,
    /// The pull checkpoint a resync under way started from
    /// (`crate::sync::compact`): the `Hello` states it again, so the hub
    /// orders the resync again (it was interrupted).
    pub resync_from: Option<u64>,
}

/// A change the hub refused, as recorded and shown by the edge.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rejection {
    /// Document id.
    pub id: String,
    /// Change vector (text) of the refused version.
    pub change_vector: String,
    /// Stable reason code (`write_denied`, `invalid_id`, ...).
    pub code: String,
    /// The rule broken.
    pub rule: String,
    /// Explanation.
    pub message: String,
}

/// Where a session stands.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SyncStatus {
    /// Transport opening, handshake under way.
    Connecting,
    /// Receiving the hub's backlog.
    Initial {
        /// Documents received so far in this session.
        received: u64,
        /// Documents the hub announced.
        total: u64,
    },
    /// Caught up; changes flow as they happen.
    Live,
    /// Not connected (will retry).
    Offline,
    /// The hub refused the session or a fatal error happened.
    Error {
        /// Stable code.
        code: String,
        /// Explanation.
        message: String,
    },
}

/// Inputs of the edge machine.
#[derive(Debug)]
pub enum EdgeEvent<'a> {
    /// The transport is open.
    Opened,
    /// A frame arrived.
    Received(&'a [u8]),
    /// Time passed (heartbeats, timeouts).
    Tick,
    /// Result of [`EdgeAction::ReadLocal`]: documents of the local changes
    /// feed in etag order; `complete` when the feed had no more.
    LocalRead {
        /// The documents read.
        docs: Vec<RawDoc>,
        /// Whether the feed ended within the read.
        complete: bool,
    },
    /// [`EdgeAction::ApplyRemote`] committed.
    Applied,
    /// [`EdgeAction::ApplyRemote`] failed; the session ends.
    ApplyFailed(String),
    /// The application committed a local write.
    LocalChanged,
    /// Result of [`EdgeAction::Sign`]: the signature.
    Signed(Vec<u8>),
    /// [`EdgeAction::Purge`] is done (durably, bytes erased).
    PurgeDone(crate::db::PurgeReport),
    /// The application asks for a write with safety `hub` (a compare-and-set
    /// applied at the hub alone, `docs/protocol.md` §4 "Write safety"):
    /// answered by [`EdgeAction::HubWriteDone`] with the same `token`,
    /// whatever happens (at once when the session cannot carry it).
    HubWrite {
        /// The caller's name for it.
        token: u64,
        /// The documents (1 to [`crate::sync::frame::MAX_WRITE_OPS`]).
        ops: Vec<WireWrite>,
    },
    /// The application asks to register a replacement certificate for
    /// this identity (version 8): answered by [`EdgeAction::ReplaceDone`]
    /// with the same `token`, whatever happens.
    Replace {
        /// The caller's name for it.
        token: u64,
        /// The new certificate's chain, DER, leaf first.
        chain: Vec<Vec<u8>>,
    },
    /// The transport closed.
    Closed,
}

/// Outputs of the edge machine, performed by the driver in order.
#[derive(Debug, PartialEq)]
pub enum EdgeAction {
    /// Send these bytes as one binary message.
    Send(Vec<u8>),
    /// Read at most `max_docs` documents of the local changes feed after etag
    /// `after`, then feed back [`EdgeEvent::LocalRead`].
    ReadLocal {
        /// Start after this local etag.
        after: u64,
        /// Most documents.
        max_docs: usize,
    },
    /// Apply these documents (policy `Manual`) and set the pull checkpoint to
    /// `upto` of hub database `hub_db_id`, in ONE commit; then feed back
    /// [`EdgeEvent::Applied`]. A shell that splits the documents into several
    /// commits gives all but the last the checkpoint `from` instead.
    ApplyRemote {
        /// Documents from the hub.
        docs: Vec<RemoteDoc>,
        /// The new pull checkpoint.
        upto: u64,
        /// The pull checkpoint before this batch.
        from: u64,
        /// The hub database the checkpoint refers to.
        hub_db_id: DbId,
    },
    /// Persist a rejection (the driver stores it in a local record).
    RecordRejection(Rejection),
    /// Store the hub's deletion guards (the collections whose documents are
    /// never deleted) in the database, where the engine refuses such
    /// deletes (`crate::policy::DeletionGuards`); nothing to feed back.
    KeepGuards(Vec<String>),
    /// Erase the documents of this order ([`crate::Database::purge`]),
    /// then feed back [`EdgeEvent::PurgeDone`] (or `ApplyFailed`).
    Purge {
        /// The hub's order.
        order: PurgeOrder,
    },
    /// Erase these documents: the hub refused a push of them with `purged`
    /// (purged at the hub; this device was not known to hold them, so no
    /// order named them). Erased like an order's documents, with their
    /// recorded rejections; no receipt. Nothing is fed back.
    Forget {
        /// The ids.
        ids: Vec<String>,
    },
    /// The hub compacted deletions this edge may not have seen (`Resync`):
    /// record that a resync started (`crate::sync::compact::begin_resync`),
    /// before the batches from 0 are applied; nothing to feed back.
    BeginResync {
        /// The push checkpoint the hub stated.
        pushed: u64,
        /// The pull checkpoint the resync starts from.
        from: u64,
    },
    /// The resync reached the live phase: remove what the hub did not send
    /// (`crate::sync::compact::resync_sweep`); nothing to feed back (or
    /// `ApplyFailed`).
    EndResync {
        /// Every id key the hub sent during the resync (`None`: the hub
        /// did not resync this session; only the marker goes).
        seen: Option<HashSet<Vec<u8>>>,
        /// The read prefixes the hub granted.
        read: Vec<String>,
    },
    /// The hub holds no plain tombstone at or below hub etag `horizon`
    /// any more (`Compacted`): compact the ones received from it up to
    /// there, and, with `own`, every plain tombstone up to that local etag
    /// (`crate::sync::compact::edge_compact`); nothing to feed back.
    CompactTombstones {
        /// The hub etag the hub compacted through.
        horizon: u64,
        /// The hub database it refers to.
        hub_db_id: DbId,
        /// This session's `Welcome` said the hub held every change of this
        /// edge up to this local etag at hub etags at most the hub's last
        /// etag then, and that etag is at most `horizon`: the hub compacted
        /// the edge's own deletions up to here too.
        own: Option<u64>,
    },
    /// A purge order was carried out (informational: for the application
    /// to show; the signed receipt follows). Order 0: documents a push
    /// refused as `purged` named ([`EdgeAction::Forget`]).
    Purged {
        /// The order's number (0: see above).
        order: u64,
        /// `revoked`, `narrowed` or `purged`.
        reason: String,
        /// Documents erased.
        removed: u64,
    },
    /// The answer to [`EdgeEvent::HubWrite`] `token`.
    HubWriteDone {
        /// The caller's name for the write.
        token: u64,
        /// What became of it.
        outcome: HubWriteOutcome,
    },
    /// The answer to [`EdgeEvent::Replace`] `token`.
    ReplaceDone {
        /// The caller's name for the request.
        token: u64,
        /// What became of it.
        outcome: ReplaceOutcome,
    },
    /// Sign these bytes with the edge's key; feed back
    /// [`EdgeEvent::Signed`] (the handshake proof, or a batch).
    Sign(Vec<u8>),
    /// The enrollment code was redeemed: later sessions authenticate with
    /// the key alone ([`EdgeConfig::enrolled`]).
    Enrolled,
    /// The hub stated what this edge may read and write (`Welcome` of
    /// protocol version 2 and later): for the application to show, e.g. no
    /// edit controls when `write` is empty. Informational only: the hub
    /// enforces the grant whatever the edge believes.
    Granted(WireGrant),
    /// The session's status changed.
    Status(SyncStatus),
    /// The push checkpoint advanced (informational: the hub holds the
    /// authoritative value).
    Pushed {
        /// Local etag the hub now holds.
        upto: u64,
        /// Documents in the acknowledged batch.
        docs: u32,
    },
    /// Close the transport; the driver reconnects later unless `fatal`.
    Close {
        /// Stable code.
        code: String,
        /// Explanation.
        message: String,
        /// Whether retrying is pointless (bad credentials, version).
        fatal: bool,
    },
}

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
        let (batch, upto, _cut) = take_batch(&docs, self.push_cursor, |d| {
            d.meta.source.as_deref() == Some(source)
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
