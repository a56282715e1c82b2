//! The wire encoding of replication frames (see `docs/protocol.md` §3).
//!
//! All integers are little-endian and fixed-width. Decoding is strict and
//! never panics: truncation, trailing bytes, bad UTF-8, out-of-range counts
//! and unknown types are [`FrameError`]s. Byte order and bounds checks come
//! from [`crate::codec`].

use crate::codec::{Put, Reader, Truncated};
use crate::cv::DbId;
use crate::db::RemoteDoc;
use crate::doc::RawVersion;

mod docs;
mod write;

pub(crate) use docs::{changes_bytes, doc_encoded_len, encode_raw_docs};
use docs::{put_docs, read_docs};
pub use write::{MAX_WRITE_OPS, WireExpect, WireWrite, WriteAnswer};

/// Newest protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 9;
/// Oldest protocol version this build speaks. Version 5 (version 4's key
/// identities, signed batches, purge orders and signed purge receipts, plus
/// subject purges: a `Purge` names ids by their hashes) is the first this
/// build speaks: an edge of versions 1 to 4 gets
/// `Error(unsupported_version)` (a version 4 edge could not read a `Purge`
/// naming ids, so the hub could not keep its promise that a subject purge
/// reaches every edge that held the data). The decoder still reads the
/// older `Welcome` layouts (an edge told which version a hub speaks).
/// Version 6 adds the `Write` and `WriteResult` frames (write safety `hub`)
/// and nothing else: a version 5 edge is served as before, and a `Write` in
/// its session is `Error(protocol)`. Version 7 adds the `Resync` frame
/// (tombstone compaction): an edge of an older version that would need one
/// is refused with `Error(unsupported_version)`. Version 8 adds the
/// `Replace` and `ReplaceResult` frames (a certificate identity registers
/// its replacement) and nothing else: older edges are served as before, and
/// a `Replace` in a version 7 session is `Error(protocol)`. Version 9 adds
/// the hub's shared output collections to `Welcome` (indexes computed at
/// the hub whose results edges receive, read-only): an older edge is not
/// sent those documents, as before.
pub const MIN_PROTOCOL_VERSION: u16 = 5;

/// First protocol version whose `Welcome` lists the hub's shared output
/// collections (and whose sessions receive their documents).
pub const HUB_OUTPUTS_VERSION: u16 = 9;

/// First protocol version with the `Replace` and `ReplaceResult` frames.
pub const REPLACE_VERSION: u16 = 8;

/// Most certificates in a `Replace` chain (leaf, intermediates, root).
pub const MAX_REPLACE_CERTS: usize = 8;

/// First protocol version with the `Resync` frame.
pub const RESYNC_VERSION: u16 = 7;

/// First protocol version with the `Write` and `WriteResult` frames.
pub const HUB_WRITE_VERSION: u16 = 6;

/// Most id hashes in a `Purge` (a subject purge's documents).
pub const MAX_PURGE_IDS: usize = 500_000;

/// Most prefixes in a `Purge` list.
pub const MAX_PURGE_PREFIXES: usize = 1024;

/// How an edge proves who it is (the `auth` byte of a `Hello`, version 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Its enrolled key: the hub sends a `Challenge`, the edge answers
    /// with a `Proof` signed by the key.
    #[default]
    Key,
    /// A shared-secret token in `credential` (development mode: the hub
    /// refuses it unless its configuration allows tokens).
    Token,
    /// A one-time enrollment code in `credential`, redeemed for the key in
    /// the `Hello` (which then signs the `Proof` like [`AuthMode::Key`]).
    Enroll,
}

impl AuthMode {
    fn byte(self) -> u8 {
        match self {
            AuthMode::Key => 0,
            AuthMode::Token => 1,
            AuthMode::Enroll => 2,
        }
    }
    fn from_byte(b: u8) -> Option<AuthMode> {
        match b {
            0 => Some(AuthMode::Key),
            1 => Some(AuthMode::Token),
            2 => Some(AuthMode::Enroll),
            _ => None,
        }
    }
}

/// The version two peers use, given the range the other side offers: the
/// highest both speak, or `None`.
pub fn negotiate(min: u16, max: u16) -> Option<u16> {
    let v = max.min(PROTOCOL_VERSION);
    (v >= min.max(MIN_PROTOCOL_VERSION)).then_some(v)
}

/// What the hub lets an edge do, as the hub states it in `Welcome`
/// (protocol version 2 and later): normalised prefixes (lowercase, each
/// ending in `/`; `"*"` for every id). An empty `write` list: read-only.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WireGrant {
    /// Prefixes of the ids the edge receives.
    pub read: Vec<String>,
    /// Prefixes of the ids the edge may change.
    pub write: Vec<String>,
    /// Collections whose documents are never deleted (deletion guards,
    /// version 4): the edge keeps them and refuses such deletes locally;
    /// the hub refuses them whatever the edge does.
    #[serde(default, rename = "neverDelete")]
    pub never_delete: Vec<String>,
    /// Output collections of indexes computed at the hub (version 9): the
    /// edge receives their documents where its read prefixes cover them,
    /// and keeps them read-only (it refuses local writes there, offline
    /// too; the hub refuses them whatever the edge does).
    #[serde(default, rename = "hubOutputs")]
    pub hub_outputs: Vec<String>,
}

/// Most prefixes per list in a `Welcome`.
pub const MAX_GRANT_PREFIXES: usize = 1024;
/// Magic bytes opening a `Hello`.
pub const MAGIC: [u8; 4] = *b"OPSY";
/// Largest frame accepted by default.
pub const MAX_FRAME_BYTES: usize = 32 * 1024 * 1024;
/// `Error` code of a hub whose database failed (disk full, I/O error) and is
/// being reopened: retryable, the edge reconnects with its usual backoff.
pub const DATABASE_UNAVAILABLE: &str = "database_unavailable";

/// One document on the wire (the fields of [`RemoteDoc`] but the source).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireDoc {
    /// Document id.
    pub id: String,
    /// Collection (`None`: no collection).
    pub collection: Option<String>,
    /// Versions, the sender's winner first.
    pub versions: Vec<RawVersion>,
}

impl WireDoc {
    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        doc_encoded_len(&self.id, self.collection.as_deref(), &self.versions)
    }

    /// The document as a [`RemoteDoc`] from `source`.
    pub fn into_remote(self, source: Option<String>) -> RemoteDoc {
        RemoteDoc {
            id: self.id,
            collection: self.collection,
            versions: self.versions,
            source,
        }
    }
}

/// A replication frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Edge → hub: opens a session.
    Hello {
        /// Lowest protocol version the edge speaks.
        min_version: u16,
        /// Highest protocol version the edge speaks.
        max_version: u16,
        /// The edge database's id.
        db_id: DbId,
        /// Database name at the hub.
        database: String,
        /// Edge identity.
        identity: String,
        /// Credential: the token ([`AuthMode::Token`]) or the enrollment
        /// code ([`AuthMode::Enroll`]); empty for [`AuthMode::Key`].
        credential: String,
        /// Hub etag up to which the edge holds the hub's changes.
        pull_checkpoint: u64,
        /// The hub database that checkpoint refers to (all zeros: none). A
        /// hub whose database has another id starts the edge from 0.
        checkpoint_hub: DbId,
        /// How the edge authenticates (version 3; a `Hello` whose highest
        /// version is below 3 carries neither this nor `key`).
        auth: AuthMode,
        /// The edge's public key (its 65 bytes; empty with a token).
        key: Vec<u8>,
    },
    /// Hub → edge (version 3): prove you hold your key, in this session.
    Challenge {
        /// The protocol version the hub chose (bound into the proof).
        version: u16,
        /// A fresh random nonce of this connection.
        nonce: [u8; 32],
        /// The hub database's id.
        hub_id: DbId,
    },
    /// Edge → hub (version 3): the signature of
    /// [`auth_message`](crate::sync::signed::auth_message) for this session.
    Proof {
        /// The signature.
        signature: Vec<u8>,
    },
    /// Hub → edge: the session is open.
    Welcome {
        /// Protocol version chosen.
        version: u16,
        /// The hub database's id.
        hub_db_id: DbId,
        /// Edge etag up to which the hub holds the edge's changes.
        push_checkpoint: u64,
        /// The hub's last etag.
        hub_last_etag: u64,
        /// Documents the edge will receive in the initial phase.
        pending: u64,
        /// Largest frame the hub accepts.
        max_frame_bytes: u32,
        /// Heartbeat interval in milliseconds.
        heartbeat_ms: u32,
        /// The edge's grant (on the wire from version 2: present exactly
        /// when `version >= 2`; an encoder given version 1 leaves it out,
        /// given version 2 and `None` sends empty lists).
        grant: Option<WireGrant>,
        /// The last batch of this edge's chain the hub accepted: its number
        /// (0: none yet) and hash; the next push is number + 1 and names
        /// that hash (version 3).
        batch_seq: u64,
        /// See `batch_seq`.
        batch_head: [u8; 32],
    },
    /// Hub → edge: a batch of changes.
    Changes {
        /// Hub etag covered by this batch.
        upto: u64,
        /// The documents.
        docs: Vec<WireDoc>,
    },
    /// Edge → hub: a `Changes` batch is committed.
    ChangesAck {
        /// Its `upto`.
        upto: u64,
    },
    /// Hub → edge: the initial phase is over.
    Live {
        /// Hub etag covered so far.
        upto: u64,
    },
    /// Edge → hub: local changes, signed (docs/protocol.md §3).
    Push {
        /// Edge etag covered by this batch.
        upto: u64,
        /// The batch's number in the edge's chain.
        seq: u64,
        /// The hash of the batch before it.
        prev: [u8; 32],
        /// The edge key's signature of the batch's
        /// [`BatchManifest::message`](crate::sync::signed::BatchManifest::message)
        /// (empty in a token session).
        signature: Vec<u8>,
        /// The documents.
        docs: Vec<WireDoc>,
    },
    /// Hub → edge: a push was applied.
    PushAck {
        /// Its `upto`.
        upto: u64,
        /// Versions stored as received.
        applied: u32,
        /// Conflicts kept (manual policy).
        conflicts: u32,
        /// Conflicts settled by the hub's policy.
        resolved: u32,
    },
    /// Hub → edge: a push was refused whole.
    PushRejected {
        /// Its `upto`.
        upto: u64,
        /// Stable reason code.
        code: String,
        /// The document that broke the rule.
        id: String,
        /// The rule (for example the write prefixes).
        rule: String,
        /// Human-readable explanation.
        message: String,
    },
    /// Heartbeat.
    Ping {
        /// Echoed in the `Pong`.
        nonce: u64,
    },
    /// Heartbeat answer.
    Pong {
        /// The `Ping`'s nonce.
        nonce: u64,
    },
    /// Hub → edge (version 4; `ids` from version 5): documents that left
    /// the edge's read scope (its access was narrowed or revoked) must be
    /// erased: every document whose id starts with one of `prefixes` and
    /// with none of `keep`, and every document whose id hashes to one of
    /// `ids` (a subject purge at the hub). The edge answers with a
    /// `PurgeReceipt` (docs/protocol.md §3, "Purge").
    Purge {
        /// The order's number (per identity and hub database, increasing).
        order: u64,
        /// Why: `revoked`, `narrowed` or `purged`.
        reason: String,
        /// Id prefixes to erase (lowercase; `""` is every id).
        prefixes: Vec<String>,
        /// Id prefixes the edge may keep (its read scope now).
        keep: Vec<String>,
        /// Ids to erase whatever `keep` says, by
        /// [`purged_id_hash`](crate::db::purged_id_hash).
        ids: Vec<[u8; 32]>,
    },
    /// Edge → hub (version 4): a `Purge` is done; signed by the edge's key
    /// over [`PurgeReceipt::message`](crate::sync::signed::PurgeReceipt::message).
    PurgeReceipt {
        /// The order's number.
        order: u64,
        /// Documents erased.
        removed: u64,
        /// SHA-256 of the erased id keys (`crate::db::PurgeReport::ids_hash`).
        ids_hash: [u8; 32],
        /// The signature (empty in a token session).
        signature: Vec<u8>,
    },
    /// Edge → hub (version 6): write safety `hub`, a compare-and-set of
    /// 1 to [`MAX_WRITE_OPS`] documents applied at the hub alone, all or
    /// nothing; signed by the edge's key over
    /// [`HubWriteManifest::message`](crate::sync::hub_write::HubWriteManifest::message).
    Write {
        /// The request's number in this session (1, 2, …; increasing).
        request: u64,
        /// The signature (empty in a token session).
        signature: Vec<u8>,
        /// The documents.
        ops: Vec<WireWrite>,
    },
    /// Hub → edge (version 6): the answer to a `Write`.
    WriteResult {
        /// The `Write`'s request number.
        request: u64,
        /// What happened.
        answer: WriteAnswer,
    },
    /// Hub → edge (version 7), right after `Welcome`: tombstones the edge
    /// may not have seen were compacted (`crate::sync::compact`); the hub
    /// sends its whole read scope from etag 0, and the edge, once live,
    /// removes what it held that the hub did not send.
    Resync {
        /// The hub's compaction horizon.
        horizon: u64,
    },
    /// Hub → edge (version 7): the hub compacted every plain tombstone up
    /// to `horizon` (`crate::sync::compact`): the edge may compact the
    /// ones it received from the hub up to there.
    Compacted {
        /// The hub's compaction horizon.
        horizon: u64,
    },
    /// Edge → hub (version 8): a certificate identity registers a
    /// replacement certificate for itself (`docs/protocol.md` §2,
    /// "Certificate identities"): `chain` is the new certificate and its
    /// issuers up to the root, DER, leaf first (1 to
    /// [`MAX_REPLACE_CERTS`], each under 64 KiB).
    Replace {
        /// The request's number in this session (1, 2, …).
        request: u64,
        /// DER certificates, leaf first.
        chain: Vec<Vec<u8>>,
    },
    /// Hub → edge (version 8): the answer to a `Replace`: an empty `code`
    /// when the replacement is registered, else the stable reason.
    ReplaceResult {
        /// The `Replace`'s request number.
        request: u64,
        /// Empty: registered; else why not (`replace_admin`, …).
        code: String,
        /// Explanation.
        message: String,
    },
    /// A fatal error; the sender closes the connection.
    Error {
        /// Stable code.
        code: String,
        /// Explanation.
        message: String,
    },
}

/// A frame that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Truncated, trailing bytes, bad UTF-8, bad counts.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// An unknown frame type.
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    /// Larger than the limit.
    #[error("frame of {size} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
}

impl Frame {
    /// The frame's name, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Frame::Hello { .. } => "Hello",
            Frame::Welcome { .. } => "Welcome",
            Frame::Changes { .. } => "Changes",
            Frame::ChangesAck { .. } => "ChangesAck",
            Frame::Live { .. } => "Live",
            Frame::Push { .. } => "Push",
            Frame::PushAck { .. } => "PushAck",
            Frame::PushRejected { .. } => "PushRejected",
            Frame::Ping { .. } => "Ping",
            Frame::Pong { .. } => "Pong",
            Frame::Error { .. } => "Error",
            Frame::Challenge { .. } => "Challenge",
            Frame::Proof { .. } => "Proof",
            Frame::Purge { .. } => "Purge",
            Frame::PurgeReceipt { .. } => "PurgeReceipt",
            Frame::Write { .. } => "Write",
            Frame::WriteResult { .. } => "WriteResult",
            Frame::Resync { .. } => "Resync",
            Frame::Compacted { .. } => "Compacted",
            Frame::Replace { .. } => "Replace",
            Frame::ReplaceResult { .. } => "ReplaceResult",
        }
    }

    /// The frame's type, its first byte on the wire.
    fn type_byte(&self) -> u8 {
        match self {
            Frame::Hello { .. } => 1,
            Frame::Welcome { .. } => 2,
            Frame::Changes { .. } => 3,
            Frame::ChangesAck { .. } => 4,
            Frame::Live { .. } => 5,
            Frame::Push { .. } => 6,
            Frame::PushAck { .. } => 7,
            Frame::PushRejected { .. } => 8,
            Frame::Ping { .. } => 9,
            Frame::Pong { .. } => 10,
            Frame::Error { .. } => 11,
            Frame::Challenge { .. } => 12,
            Frame::Proof { .. } => 13,
            Frame::Purge { .. } => 14,
            Frame::PurgeReceipt { .. } => 15,
            Frame::Write { .. } => 16,
            Frame::WriteResult { .. } => 17,
            Frame::Resync { .. } => 18,
            Frame::Compacted { .. } => 19,
            Frame::Replace { .. } => 20,
            Frame::ReplaceResult { .. } => 21,
        }
    }

    /// Encodes the frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(64);
        w.put_u8(self.type_byte());
        match self {
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
            } => {
                w.extend_from_slice(&MAGIC);
                w.put_u16(*min_version);
                w.put_u16(*max_version);
                w.extend_from_slice(db_id.as_bytes());
                for s in [database, identity, credential] {
                    put_str(&mut w, s);
                }
                w.put_u64(*pull_checkpoint);
                w.extend_from_slice(checkpoint_hub.as_bytes());
                if *max_version >= 3 {
                    w.put_u8(auth.byte());
                    w.put_bytes16(key);
                }
            }
            Frame::Challenge {
                version,
                nonce,
                hub_id,
            } => {
                w.put_u16(*version);
                w.extend_from_slice(nonce);
                w.extend_from_slice(hub_id.as_bytes());
            }
            Frame::Proof { signature } => w.put_bytes16(signature),
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
            } => {
                w.put_u16(*version);
                w.extend_from_slice(hub_db_id.as_bytes());
                for v in [push_checkpoint, hub_last_etag, pending] {
                    w.put_u64(*v);
                }
                w.put_u32(*max_frame_bytes);
                w.put_u32(*heartbeat_ms);
                if *version >= 2 {
                    let g = grant.clone().unwrap_or_default();
                    for list in [&g.read, &g.write] {
                        let n = list.len().min(MAX_GRANT_PREFIXES);
                        w.put_u16(n as u16);
                        for p in &list[..n] {
                            put_str(&mut w, p);
                        }
                    }
                }
                if *version >= 3 {
                    w.put_u64(*batch_seq);
                    w.extend_from_slice(batch_head);
                }
                if *version >= 4 {
                    let g = grant.clone().unwrap_or_default();
                    let n = g.never_delete.len().min(MAX_GRANT_PREFIXES);
                    w.put_u16(n as u16);
                    for c in &g.never_delete[..n] {
                        put_str(&mut w, c);
                    }
                }
                if *version >= HUB_OUTPUTS_VERSION {
                    let g = grant.clone().unwrap_or_default();
                    let n = g.hub_outputs.len().min(MAX_GRANT_PREFIXES);
                    w.put_u16(n as u16);
                    for c in &g.hub_outputs[..n] {
                        put_str(&mut w, c);
                    }
                }
            }
            Frame::Changes { upto, docs } => {
                w.reserve(docs.iter().map(WireDoc::encoded_len).sum::<usize>() + 12);
                w.put_u64(*upto);
                put_docs(&mut w, docs);
            }
            Frame::Push {
                upto,
                seq,
                prev,
                signature,
                docs,
            } => {
                w.reserve(docs.iter().map(WireDoc::encoded_len).sum::<usize>() + 120);
                w.put_u64(*upto);
                w.put_u64(*seq);
                w.extend_from_slice(prev);
                w.put_bytes16(signature);
                put_docs(&mut w, docs);
            }
            Frame::ChangesAck { upto: v }
            | Frame::Live { upto: v }
            | Frame::Ping { nonce: v }
            | Frame::Pong { nonce: v } => w.put_u64(*v),
            Frame::PushAck {
                upto,
                applied,
                conflicts,
                resolved,
            } => {
                w.put_u64(*upto);
                for v in [applied, conflicts, resolved] {
                    w.put_u32(*v);
                }
            }
            Frame::PushRejected {
                upto,
                code,
                id,
                rule,
                message,
            } => {
                w.put_u64(*upto);
                for s in [code, id, rule, message] {
                    put_str(&mut w, s);
                }
            }
            Frame::Error { code, message } => {
                put_str(&mut w, code);
                put_str(&mut w, message);
            }
            Frame::Purge {
                order,
                reason,
                prefixes,
                keep,
                ids,
            } => {
                w.put_u64(*order);
                put_str(&mut w, reason);
                for list in [prefixes, keep] {
                    let n = list.len().min(MAX_PURGE_PREFIXES);
                    w.put_u16(n as u16);
                    for p in &list[..n] {
                        put_str(&mut w, p);
                    }
                }
                let n = ids.len().min(MAX_PURGE_IDS);
                w.put_u32(n as u32);
                for h in &ids[..n] {
                    w.extend_from_slice(h);
                }
            }
            Frame::PurgeReceipt {
                order,
                removed,
                ids_hash,
                signature,
            } => {
                w.put_u64(*order);
                w.put_u64(*removed);
                w.extend_from_slice(ids_hash);
                w.put_bytes16(signature);
            }
            Frame::Write {
                request,
                signature,
                ops,
            } => write::put_write(&mut w, *request, signature, ops),
            Frame::WriteResult { request, answer } => write::put_result(&mut w, *request, answer),
            Frame::Resync { horizon } | Frame::Compacted { horizon } => w.put_u64(*horizon),
            Frame::Replace { request, chain } => {
                w.put_u64(*request);
                let n = chain.len().min(MAX_REPLACE_CERTS);
                w.put_u8(n as u8);
                for c in &chain[..n] {
                    let end = c.len().min(usize::from(u16::MAX));
                    w.put_bytes16(&c[..end]);
                }
            }
            Frame::ReplaceResult {
                request,
                code,
                message,
            } => {
                w.put_u64(*request);
                put_str(&mut w, code);
                put_str(&mut w, message);
            }
        }
        w
    }

    /// Decodes one frame of at most `max` bytes.
    pub fn decode(buf: &[u8], max: usize) -> Result<Frame, FrameError> {
        if buf.len() > max {
            return Err(FrameError::TooLarge {
                size: buf.len(),
                max,
            });
        }
        let mut r = Reader::new(buf);
        let t = r.u8("type")?;
        let f = match t {
            1 => {
                if r.take(4, "magic")? != MAGIC {
                    return Err(FrameError::Malformed("bad Hello magic".into()));
                }
                let min_version = r.u16("min version")?;
                let max_version = r.u16("max version")?;
                let db_id = DbId(r.array("db id")?);
                let database = read_str(&mut r, "database")?;
                let identity = read_str(&mut r, "identity")?;
                let credential = read_str(&mut r, "credential")?;
                let pull_checkpoint = r.u64("pull checkpoint")?;
                let checkpoint_hub = DbId(r.array("checkpoint hub")?);
                let (auth, key) = if max_version >= 3 {
                    let b = r.u8("auth mode")?;
                    let auth = AuthMode::from_byte(b)
                        .ok_or_else(|| FrameError::Malformed(format!("unknown auth mode {b}")))?;
                    (auth, r.bytes16("key")?.to_vec())
                } else {
                    (AuthMode::Token, Vec::new())
                };
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
                }
            }
            2 => {
                let version = r.u16("version")?;
                let hub_db_id = DbId(r.array("hub db id")?);
                let push_checkpoint = r.u64("push checkpoint")?;
                let hub_last_etag = r.u64("hub last etag")?;
                let pending = r.u64("pending")?;
                let max_frame_bytes = r.u32("max frame bytes")?;
                let heartbeat_ms = r.u32("heartbeat")?;
                let grant = if version >= 2 {
                    let mut lists = [Vec::new(), Vec::new()];
                    for (list, what) in lists.iter_mut().zip(["read prefixes", "write prefixes"]) {
                        let n = usize::from(r.u16(what)?);
                        if n > MAX_GRANT_PREFIXES || n > r.remaining() / 2 {
                            return Err(FrameError::Malformed(format!("{n} {what}")));
                        }
                        for _ in 0..n {
                            list.push(read_str(&mut r, what)?);
                        }
                    }
                    let [read, write] = lists;
                    Some(WireGrant {
                        read,
                        write,
                        never_delete: Vec::new(),
                        hub_outputs: Vec::new(),
                    })
                } else {
                    None
                };
                let (batch_seq, batch_head) = if version >= 3 {
                    (r.u64("batch seq")?, r.array("batch head")?)
                } else {
                    (0, [0; 32])
                };
                let mut grant = grant;
                if version >= 4 {
                    let n = usize::from(r.u16("guarded collections")?);
                    if n > MAX_GRANT_PREFIXES || n > r.remaining() / 2 {
                        return Err(FrameError::Malformed(format!("{n} guarded collections")));
                    }
                    let mut list = Vec::with_capacity(n);
                    for _ in 0..n {
                        list.push(read_str(&mut r, "guarded collection")?);
                    }
                    if let Some(g) = grant.as_mut() {
                        g.never_delete = list;
                    }
                }
                if version >= HUB_OUTPUTS_VERSION {
                    let n = usize::from(r.u16("shared output collections")?);
                    if n > MAX_GRANT_PREFIXES || n > r.remaining() / 2 {
                        return Err(FrameError::Malformed(format!(
                            "{n} shared output collections"
                        )));
                    }
                    let mut list = Vec::with_capacity(n);
                    for _ in 0..n {
                        list.push(read_str(&mut r, "shared output collection")?);
                    }
                    if let Some(g) = grant.as_mut() {
                        g.hub_outputs = list;
                    }
                }
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
                }
            }
            3 => Frame::Changes {
                upto: r.u64("upto")?,
                docs: read_docs(&mut r)?,
            },
            6 => Frame::Push {
                upto: r.u64("upto")?,
                seq: r.u64("seq")?,
                prev: r.array("prev")?,
                signature: r.bytes16("signature")?.to_vec(),
                docs: read_docs(&mut r)?,
            },
            12 => Frame::Challenge {
                version: r.u16("version")?,
                nonce: r.array("nonce")?,
                hub_id: DbId(r.array("hub id")?),
            },
            13 => Frame::Proof {
                signature: r.bytes16("signature")?.to_vec(),
            },
            4 => Frame::ChangesAck {
                upto: r.u64("upto")?,
            },
            5 => Frame::Live {
                upto: r.u64("upto")?,
            },
            7 => Frame::PushAck {
                upto: r.u64("upto")?,
                applied: r.u32("applied")?,
                conflicts: r.u32("conflicts")?,
                resolved: r.u32("resolved")?,
            },
            8 => Frame::PushRejected {
                upto: r.u64("upto")?,
                code: read_str(&mut r, "code")?,
                id: read_str(&mut r, "id")?,
                rule: read_str(&mut r, "rule")?,
                message: read_str(&mut r, "message")?,
            },
            9 => Frame::Ping {
                nonce: r.u64("nonce")?,
            },
            10 => Frame::Pong {
                nonce: r.u64("nonce")?,
            },
            11 => Frame::Error {
                code: read_str(&mut r, "code")?,
                message: read_str(&mut r, "message")?,
            },
            14 => {
                let order = r.u64("order")?;
                let reason = read_str(&mut r, "reason")?;
                let mut lists = [Vec::new(), Vec::new()];
                for (list, what) in lists.iter_mut().zip(["purge prefixes", "keep prefixes"]) {
                    let n = usize::from(r.u16(what)?);
                    if n > MAX_PURGE_PREFIXES || n > r.remaining() / 2 {
                        return Err(FrameError::Malformed(format!("{n} {what}")));
                    }
                    for _ in 0..n {
                        list.push(read_str(&mut r, what)?);
                    }
                }
                let [prefixes, keep] = lists;
                let n = r.u32("purge ids")? as usize;
                if n > MAX_PURGE_IDS || n > r.remaining() / 32 {
                    return Err(FrameError::Malformed(format!("{n} purge ids")));
                }
                let mut ids = Vec::with_capacity(n);
                for _ in 0..n {
                    ids.push(r.array("purge id")?);
                }
                Frame::Purge {
                    order,
                    reason,
                    prefixes,
                    keep,
                    ids,
                }
            }
            15 => Frame::PurgeReceipt {
                order: r.u64("order")?,
                removed: r.u64("removed")?,
                ids_hash: r.array("ids hash")?,
                signature: r.bytes16("signature")?.to_vec(),
            },
            16 => {
                let (request, signature, ops) = write::read_write(&mut r)?;
                Frame::Write {
                    request,
                    signature,
                    ops,
                }
            }
            17 => {
                let (request, answer) = write::read_result(&mut r)?;
                Frame::WriteResult { request, answer }
            }
            18 => Frame::Resync {
                horizon: r.u64("horizon")?,
            },
            19 => Frame::Compacted {
                horizon: r.u64("horizon")?,
            },
            20 => {
                let request = r.u64("request")?;
                let n = usize::from(r.u8("certificate count")?);
                if n == 0 || n > MAX_REPLACE_CERTS {
                    return Err(FrameError::Malformed(format!(
                        "a Replace of {n} certificates (1 to {MAX_REPLACE_CERTS})"
                    )));
                }
                let mut chain = Vec::with_capacity(n);
                for _ in 0..n {
                    chain.push(r.bytes16("certificate")?.to_vec());
                }
                Frame::Replace { request, chain }
            }
            21 => Frame::ReplaceResult {
                request: r.u64("request")?,
                code: read_str(&mut r, "code")?,
                message: read_str(&mut r, "message")?,
            },
            other => return Err(FrameError::UnknownType(other)),
        };
        if r.remaining() != 0 {
            return Err(FrameError::Malformed(format!(
                "{} trailing bytes after {}",
                r.remaining(),
                f.name()
            )));
        }
        Ok(f)
    }
}

fn put_str(w: &mut Vec<u8>, s: &str) {
    // Strings are short by construction (ids ≤ 512 bytes, messages clipped);
    // cut at a char boundary rather than misframe.
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    w.put_bytes16(&s.as_bytes()[..end]);
}

/// The document count a `Push` (or, from version 6, a `Write`) frame
/// announces and the bytes left for its documents, read from its header
/// alone (the hub's rate limits charge a push before it is decoded); `None`
/// when `buf` does not start with a well-framed `Push` or `Write` header.
pub fn push_header(buf: &[u8]) -> Option<(u32, usize)> {
    let mut r = Reader::new(buf);
    match r.u8("type").ok()? {
        6 => {
            r.u64("upto").ok()?;
            r.u64("seq").ok()?;
            r.take(32, "prev").ok()?;
            r.bytes16("signature").ok()?;
            let n = r.u32("doc count").ok()?;
            Some((n, r.remaining()))
        }
        16 => {
            r.u64("request").ok()?;
            r.bytes16("signature").ok()?;
            let n = r.u16("write count").ok()?;
            Some((u32::from(n), r.remaining()))
        }
        _ => None,
    }
}

impl From<Truncated> for FrameError {
    /// A frame that ends inside a field: `truncated at <field>`.
    fn from(t: Truncated) -> FrameError {
        FrameError::Malformed(t.to_string())
    }
}

/// A length-prefixed UTF-8 string (`u16` length, both named `what`).
fn read_str(r: &mut Reader<'_>, what: &str) -> Result<String, FrameError> {
    let b = r.bytes16(what)?;
    String::from_utf8(b.to_vec()).map_err(|_| FrameError::Malformed(format!("{what} is not UTF-8")))
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
