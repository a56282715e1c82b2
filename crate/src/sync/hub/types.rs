//! The hub machine's inputs and outputs: the grant it enforces, the
//! events its driver feeds it, the actions it asks for, and the metrics and
//! reasons it reports (`docs/protocol.md`; the machine is
//! [`super::HubSession`]).

use std::collections::HashMap;
use std::sync::Arc;

use crate::cv::DbId;
use crate::db::{PushGuard, Refusal, RemoteDoc};
use crate::keys::PublicKey;
use crate::sync::feed::FeedPage;
use crate::sync::frame::{AuthMode, WireGrant, WireWrite, WriteAnswer};
use crate::sync::hub_write::HubWriteManifest;
use crate::sync::purge::PurgeOrder;
use crate::sync::signed::{BatchManifest, PurgeReceipt};
use crate::sync::violation::Violation;
use crate::sync::{ConflictPolicy, Prefixes};

/// What an authenticated edge may do.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    /// Edge identity.
    pub identity: String,
    /// Prefixes it may read.
    pub read: Prefixes,
    /// Prefixes it may write.
    pub write: Prefixes,
    /// Whether it is a hub relaying its own edges' writes: it may introduce
    /// database ids other than its own device's.
    pub relay: bool,
    /// Conflict policy per collection (lowercase name).
    pub policies: HashMap<String, ConflictPolicy>,
    /// Policy of other collections and of documents without one.
    pub default_policy: ConflictPolicy,
    /// Collections whose documents are never deleted (the hub's deletion
    /// guards, stated to the edge in `Welcome`; the hub enforces its own
    /// record of them, `crate::policy::GUARDS_KEY`).
    pub never_delete: Vec<String>,
    /// Output collections of the indexes this hub computes and shares
    /// (`hubComputed`): their documents, flagged as an index's, are sent
    /// to edges of protocol 9 or later where the read prefixes cover them
    /// (every other index output stays at the hub); stated to the edge in
    /// `Welcome`, which keeps them read-only.
    pub hub_outputs: Vec<String>,
}

impl Grant {
    /// The policy for a collection.
    pub fn policy(&self, collection: Option<&str>) -> ConflictPolicy {
        collection
            .and_then(|c| self.policies.get(&c.to_lowercase()))
            .copied()
            .unwrap_or(self.default_policy)
    }

    /// The grant as stated to the edge in `Welcome`.
    pub fn to_wire(&self) -> WireGrant {
        let list = |p: &Prefixes| {
            p.as_slice()
                .iter()
                .map(|s| {
                    if s.is_empty() {
                        "*".to_string()
                    } else {
                        s.clone()
                    }
                })
                .collect()
        };
        WireGrant {
            read: list(&self.read),
            write: list(&self.write),
            never_delete: self.never_delete.clone(),
            hub_outputs: self.hub_outputs.clone(),
        }
    }

    /// Whether documents of `collection` are an output this hub shares.
    pub fn shares_output(&self, collection: Option<&str>) -> bool {
        collection.is_some_and(|c| self.hub_outputs.iter().any(|o| o.eq_ignore_ascii_case(c)))
    }

    /// The source tag the hub records on versions received from the edge
    /// database (the device) `edge_db` of this identity:
    /// `edge:<identity>/<db id>`. Echo suppression goes by this tag, so a
    /// version is held back only from the device that sent it (which has it,
    /// or something newer); every other device of the identity receives it,
    /// and so does a wiped or replaced device, whose database has a new id.
    pub fn source_for(&self, edge_db: &DbId) -> String {
        format!("edge:{}/{}", self.identity, edge_db)
    }
}

/// Inputs of the hub machine.
// `Authorized` is the large one (a grant); an event lives for one call of
// the machine, once per session for that variant: boxing it buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum HubEvent<'a> {
    /// A frame arrived.
    Received(&'a [u8]),
    /// Time passed.
    Tick,
    /// Result of [`HubAction::Lookup`]: challenge the edge. `key` is the
    /// key its proof must verify under (the identity's enrolled key, or the
    /// key it presents with an enrollment code that may be redeemed), or
    /// `None` when nothing can succeed (unknown identity, no key enrolled,
    /// a bad code): the challenge is sent all the same, so the answer does
    /// not tell which identities exist.
    Challenge {
        /// The hub database's id (bound into the proof); zeros when the
        /// database does not exist.
        hub_id: DbId,
        /// The key the proof must verify under.
        key: Option<PublicKey>,
    },
    /// Result of [`HubAction::Authenticate`]: the edge is who it claims.
    Authorized {
        /// Its rights.
        grant: Grant,
        /// The hub database id.
        hub_db_id: DbId,
        /// The hub's last etag.
        hub_last_etag: u64,
        /// Edge etag up to which the hub holds this edge database's changes.
        push_checkpoint: u64,
        /// Documents inside the read prefixes after `pull_from`.
        pending: u64,
        /// Where sending starts: the edge's pull checkpoint, or 0 when it
        /// refers to another hub database or to etags this hub never issued.
        pull_from: u64,
        /// The last batch of the identity's chain the hub accepted (number,
        /// hash); `(0, GENESIS)` when none.
        batch_head: (u64, [u8; 32]),
        /// Documents that left the edge's read scope: the order to send
        /// right after `Welcome` (`crate::sync::purge::plan`).
        purge: Option<PurgeOrder>,
        /// The compaction horizon, when the edge's pull checkpoint is below
        /// it (`crate::sync::compact`): the session starts from 0
        /// (`pull_from`) with a `Resync`.
        resync: Option<u64>,
    },
    /// Result of [`HubAction::Authenticate`]: the identity is revoked but
    /// may hold documents it was sent: send it this order instead of
    /// `Welcome`, record its receipt, then refuse it (`Error(revoked)`).
    RevokedPurge {
        /// The hub database's id (bound into the receipt).
        hub_db_id: DbId,
        /// The order.
        order: PurgeOrder,
        /// The `Error(revoked)` message to end with.
        message: String,
    },
    /// Result of [`HubAction::Authenticate`]: refused.
    Unauthorized,
    /// Result of [`HubAction::RegisterReplacement`]: an empty `code` when
    /// the replacement is registered, else the stable reason.
    ReplacementJudged {
        /// Empty, or why not.
        code: String,
        /// Explanation.
        message: String,
    },
    /// Result of [`HubAction::ReadChanges`].
    ChangesRead {
        /// Documents of the hub's changes feed in etag order (a page other
        /// sessions may share: `crate::sync::feed`).
        docs: Arc<FeedPage>,
        /// Whether the feed ended within the read.
        complete: bool,
        /// The hub's last etag when read (the cursor moves to it when
        /// `complete`).
        last_etag: u64,
        /// The compaction horizon as of the same read
        /// (`crate::sync::compact::Compaction`).
        horizon: u64,
        /// The etag at or below which no plain tombstone is left, as of the
        /// same read (`Compaction::through`): what `Compacted` tells the edge.
        compacted: u64,
    },
    /// [`HubAction::ApplyPush`] committed.
    PushApplied {
        /// Versions stored as received.
        applied: u32,
        /// Conflicts kept.
        conflicts: u32,
        /// Conflicts resolved.
        resolved: u32,
        /// The hub's last etag after the commit.
        last_etag: u64,
    },
    /// [`HubAction::ApplyPush`] failed in storage (not the edge's fault).
    PushFailed(String),
    /// A read of the hub database failed ([`HubAction::ReadChanges`], or
    /// the reads of [`HubAction::Authenticate`]); not the edge's fault.
    ReadFailed(String),
    /// The hub database advanced (another session, an import, an upstream).
    Committed {
        /// Its last etag.
        last_etag: u64,
    },
    /// [`HubAction::ApplyWrite`] answered (applied, a conflict, or a refusal
    /// inside the transaction); a storage failure is `PushFailed`.
    WriteDone(WriteAnswer),
    /// [`HubAction::ApplyPush`] was refused inside the transaction (a cap or
    /// a causality rule, `docs/security.md`); nothing was stored.
    PushRefused(Refusal),
    /// Result of [`HubAction::Authenticate`]: the edge database id it states
    /// belongs to another peer (`Error(db_id_taken)`).
    DbIdTaken,
    /// The configuration changed: the edge's new grant, or `None` if revoked.
    GrantChanged(Option<Grant>),
    /// [`HubAction::RecordPurgeReceipt`] settled the order, and the device
    /// owes receipts for more subject purges than one order carries
    /// ([`crate::sync::purge::MAX_ORDER_MARKERS`]): the session ends with
    /// `Error(purge_pending)` (retryable), and the next one gets the next
    /// order.
    MorePurgesOwed,
    /// The transport closed.
    Closed,
}

/// A metric event for the driver to count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubMetric {
    /// Documents sent to the edge.
    DocsSent(u64),
    /// Documents received and stored.
    DocsReceived(u64),
    /// A push or session was refused for this reason.
    Rejected(RejectReason),
    /// Conflicts met, by policy.
    Conflicts(ConflictPolicy, u64),
    /// A document pushed under a write-only grant existed and was kept
    /// unchanged (write-only is create-only; the edge is not told).
    CreateOnly,
}

/// Why the hub refused a push or a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectReason {
    /// A pushed batch broke a rule of `docs/protocol.md` §5.
    Violation(Violation),
    /// The session was refused or ended, with this stable code
    /// (`protocol`, `unauthorized`, `unsupported_version`).
    Session(&'static str),
}

impl RejectReason {
    /// The stable code: the violation's wire code, or the session's.
    pub fn code(&self) -> &'static str {
        match self {
            RejectReason::Violation(v) => v.code(),
            RejectReason::Session(c) => c,
        }
    }
}

/// Outputs of the hub machine.
#[derive(Debug, PartialEq)]
pub enum HubAction {
    /// Send these bytes as one binary message.
    Send(Vec<u8>),
    /// Find the key a key or enrollment `Hello` must prove (no database
    /// read, no state change); feed back `Challenge` (or `Unauthorized`).
    Lookup {
        /// Database asked for.
        database: String,
        /// Claimed identity.
        identity: String,
        /// Key or enrollment.
        auth: AuthMode,
        /// The key the edge presents.
        key: PublicKey,
        /// The enrollment code (empty for a key).
        credential: String,
    },
    /// Check the credential (a token), or act on a proven key (redeem the
    /// enrollment code; check the key is still the identity's); feed back
    /// `Authorized` or `Unauthorized`.
    Authenticate {
        /// Database asked for.
        database: String,
        /// Claimed identity.
        identity: String,
        /// How the edge authenticates.
        auth: AuthMode,
        /// The key whose proof verified (key and enrollment sessions).
        key: Option<PublicKey>,
        /// Credential: the token, or the enrollment code.
        credential: String,
        /// The edge database's id.
        edge_db_id: DbId,
        /// Its pull checkpoint.
        pull_checkpoint: u64,
        /// The hub database that checkpoint refers to.
        checkpoint_hub: DbId,
    },
    /// Record that the edge database `edge_db_id` acknowledged the changes
    /// feed up to `upto` (`crate::sync::compact::record_ack`); nothing to
    /// feed back.
    RecordAck {
        /// The edge database (device).
        edge_db_id: DbId,
        /// Hub etag acknowledged.
        upto: u64,
        /// Now (ms since the epoch).
        now_ms: i64,
    },
    /// Read at most `max_docs` of the changes feed after `after`; feed back
    /// `ChangesRead` (or `ReadFailed`).
    ReadChanges {
        /// Start after this etag.
        after: u64,
        /// Most documents.
        max_docs: usize,
        /// While catching up, the session's read scope when it does not
        /// cover every id: the read may leave out documents outside it
        /// (`crate::sync::feed::read_changes_in`), so that catching up
        /// costs what the scope holds, not what the database holds. `None`
        /// in the live phase, where sessions share pages
        /// (`crate::sync::feed::FeedCache`).
        scope: Option<Prefixes>,
    },
    /// Apply these checked documents under `guard` (`Batch::apply_pushed`)
    /// and set this edge's push checkpoint to `upto`, in ONE commit; feed
    /// back `PushApplied`, `PushRefused` or `PushFailed`.
    ApplyPush {
        /// The edge database's id (checkpoint key).
        edge_db_id: DbId,
        /// Edge etag covered.
        upto: u64,
        /// Documents, each with whether the edge may read its id (counts in
        /// the answer never depend on what it may not read).
        docs: Vec<(RemoteDoc, bool)>,
        /// What the transaction checks the documents against.
        guard: Arc<PushGuard>,
        /// The batch as signed (its manifest goes into the audit trail).
        manifest: BatchManifest,
        /// The key that signed it and the signature (`None` in a token
        /// session). The identity's chain head moves from
        /// `(manifest.seq - 1, manifest.prev)` to `(manifest.seq,
        /// manifest.hash())` in the same commit, or the batch is refused
        /// (`batch_sequence`: another session of the identity got there
        /// first).
        signed: Option<(PublicKey, Vec<u8>)>,
    },
    /// Apply a checked `Write` (write safety `hub`) in ONE commit with its
    /// audit entry (`crate::sync::hub_write::apply`); feed back
    /// `WriteDone` (or `PushFailed`).
    ApplyWrite {
        /// The documents.
        ops: Vec<WireWrite>,
        /// The write as signed.
        manifest: HubWriteManifest,
        /// The key and signature (`None` in a token session).
        signed: Option<(PublicKey, Vec<u8>)>,
    },
    /// Judge a certificate identity's replacement (version 8, the shell's
    /// certificate rules); feed back `ReplacementJudged`.
    RegisterReplacement {
        /// The `Replace`'s request number.
        request: u64,
        /// The new certificate's chain, DER, leaf first.
        chain: Vec<Vec<u8>>,
    },
    /// Record a refused push in the audit trail (its own commit; nothing
    /// to feed back). Emitted with every `Metric(Rejected(Violation))`.
    RecordRefusal {
        /// The pushing device's database id.
        edge_db_id: DbId,
        /// The refused batch's `upto`.
        upto: u64,
        /// The stable code.
        code: String,
        /// The document named.
        id: String,
        /// The rule broken.
        rule: String,
        /// The explanation sent.
        message: String,
    },
    /// Record an edge's purge receipt, checked against the order this
    /// session sent (and its signature against the session's key), in the
    /// audit trail, and settle the identity's served record
    /// (`crate::sync::purge::after_receipt`) in the same commit.
    RecordPurgeReceipt {
        /// The receipt as signed.
        receipt: PurgeReceipt,
        /// The key and signature (`None` in a token session).
        signed: Option<(PublicKey, Vec<u8>)>,
    },
    /// Count a metric.
    Metric(HubMetric),
    /// Close the transport.
    Close {
        /// Stable code.
        code: String,
        /// Explanation.
        message: String,
    },
}
