//! The edge machine's inputs and outputs: its settings, the state it
//! persists between sessions, the events its driver feeds it, the actions
//! it asks for, and the status it reports (the machine is
//! [`super::EdgeSession`]).

use std::collections::HashSet;

use super::ReplaceOutcome;
use crate::cv::DbId;
use crate::db::RemoteDoc;
use crate::doc::RawDoc;
use crate::keys::PublicKey;
use crate::sync::frame::{AuthMode, WireGrant, WireWrite};
use crate::sync::hub_write::HubWriteOutcome;
use crate::sync::purge::PurgeOrder;

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
    /// Set when the database is a hub's and this is its upstream link: every
    /// batch received is recorded in its audit trail, and the subject
    /// purges the upstream orders are carried out as the hub's own, reaching
    /// its edges ([`crate::sync::received`]; the second only through
    /// [`crate::sync::driver::edge_storage_native`]). `None` (the default):
    /// an edge's behaviour.
    pub hub_link: Option<crate::sync::received::HubLink>,
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
            hub_link: None,
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
    /// Store the hub's shared output collections (protocol 9; empty from
    /// an older hub) in the database, where the engine keeps them
    /// read-only (`crate::policy::HUB_OUTPUTS_KEY`); nothing to feed back.
    KeepHubOutputs(Vec<String>),
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
