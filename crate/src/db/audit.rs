//! The audit trail: an append-only, hash-chained log in the `audit` tree,
//! written in the same transaction as what it records (`docs/audit.md`).
//!
//! ## Entries
//! Key: the sequence number, `u64` big-endian (1, 2, …, no gaps). Value
//! (little-endian, [`crate::codec`]):
//!
//! ```text
//! u8  format (AUDIT_FORMAT = 1)
//! u64 sequence number (equal to the key)
//! i64 time, milliseconds since the Unix epoch (the database's clock)
//! u16 kind (AuditKind::code)
//! [32] the previous entry's chain hash (GENESIS_HASH, all zeros, for entry 1)
//! u32 payload length, then the payload
//! [32] this entry's chain hash = SHA-256(previous hash || every byte above)
//! ```
//!
//! The stored hash lets the verifier notice a change to the last entry too;
//! the chain makes a change anywhere visible at that entry (its stored hash
//! no longer matches, or the next entry's previous hash no longer does).
//! Someone who can write the file can rebuild the whole chain: the head
//! hash printed by `outpost-hub audit verify` is what to keep elsewhere
//! (until signed batches and signed receipts anchor it; not built yet).
//!
//! ## Writing
//! [`super::Batch::audit`] is the only way in: the transaction reads the
//! last entry (cached in the working state, journaled so a rolled-back
//! transaction leaves neither the entry nor the cache changed), appends the
//! next one through the same pages as the rest of the batch, and commits
//! with it. There is no removal.
//!
//! ## Payloads
//! The engine stores payloads as opaque bytes. The hub's payloads are the
//! canonical JSON of the record types below ([`encode_record`], the one
//! encoder), documented in `docs/audit.md`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::btree::{self, PageRead};
use crate::codec::{Put, Reader};
use crate::error::{Error, InputError};
use crate::store::{PageBuf, PageNo, PageStore};

use super::alloc::{Undo, WCtx};
use super::meta::Tree;
use super::read::read_cached;
use super::{Database, Inner, Snapshot, WriteResult};

/// The entry format version this engine writes.
pub const AUDIT_FORMAT: u8 = 1;
/// The previous hash of the first entry.
pub const GENESIS_HASH: [u8; 32] = [0; 32];
/// Largest payload of one entry.
pub const MAX_AUDIT_PAYLOAD: usize = btree::MAX_VALUE - 1024;
/// Bytes before the payload: format, seq, time, kind, previous hash, length.
const HEADER: usize = 1 + 8 + 8 + 2 + 32 + 4;
/// Where the previous hash starts in an entry.
const PREV_AT: usize = 1 + 8 + 8 + 2;

/// What an entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuditKind {
    /// A push batch the hub accepted ([`AuditPush`]).
    PushAccepted,
    /// A push batch the hub refused ([`AuditRefusal`]).
    PushRefused,
    /// An edge enrolled, revoked or re-scoped ([`AuditScope`]).
    ScopeChange,
    /// An edge's signed purge receipt ([`AuditPurgeReceipt`]).
    PurgeReceipt,
    /// A subject purge at the hub (`crate::sync::forget::AuditSubjectPurge`).
    SubjectPurge,
    /// A write applied with safety `hub` (`crate::sync::hub_write::AuditHubWrite`).
    HubWrite,
    /// A certificate identity's certificate registered, renewed, replaced,
    /// dropped, retired, refused, expired or purged ([`AuditCertificate`]).
    Certificate,
    /// A batch of an operator's import ([`AuditImport`]).
    Import,
    /// Versions a hub received from its upstream hub
    /// (`crate::sync::received::AuditUpstream`).
    Upstream,
    /// A kind this engine does not know (written by a newer one).
    Other(u16),
}

impl AuditKind {
    /// The stored code.
    pub fn code(self) -> u16 {
        match self {
            AuditKind::PushAccepted => 1,
            AuditKind::PushRefused => 2,
            AuditKind::ScopeChange => 3,
            AuditKind::PurgeReceipt => 4,
            AuditKind::SubjectPurge => 5,
            AuditKind::HubWrite => 6,
            AuditKind::Certificate => 7,
            AuditKind::Import => 8,
            AuditKind::Upstream => 9,
            AuditKind::Other(c) => c,
        }
    }

    /// The kind of a stored code.
    pub fn from_code(c: u16) -> AuditKind {
        match c {
            1 => AuditKind::PushAccepted,
            2 => AuditKind::PushRefused,
            3 => AuditKind::ScopeChange,
            4 => AuditKind::PurgeReceipt,
            5 => AuditKind::SubjectPurge,
            6 => AuditKind::HubWrite,
            7 => AuditKind::Certificate,
            8 => AuditKind::Import,
            9 => AuditKind::Upstream,
            c => AuditKind::Other(c),
        }
    }

    /// Its stable name (`push_accepted`, …; `kind_<code>` for others).
    pub fn name(self) -> String {
        match self {
            AuditKind::PushAccepted => "push_accepted".into(),
            AuditKind::PushRefused => "push_refused".into(),
            AuditKind::ScopeChange => "scope_change".into(),
            AuditKind::PurgeReceipt => "purge_receipt".into(),
            AuditKind::SubjectPurge => "subject_purge".into(),
            AuditKind::HubWrite => "hub_write".into(),
            AuditKind::Certificate => "certificate".into(),
            AuditKind::Import => "import".into(),
            AuditKind::Upstream => "upstream".into(),
            AuditKind::Other(c) => format!("kind_{c}"),
        }
    }
}

/// One decoded audit entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Its sequence number (1, 2, …).
    pub seq: u64,
    /// When it was written (milliseconds since the Unix epoch).
    pub time_ms: i64,
    /// What it records.
    pub kind: AuditKind,
    /// The previous entry's chain hash.
    pub prev_hash: [u8; 32],
    /// Its chain hash as stored.
    pub hash: [u8; 32],
    /// The payload (for the hub's kinds: canonical JSON, see `docs/audit.md`).
    pub payload: Vec<u8>,
}

/// The first entry that fails verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditBad {
    /// Its sequence number (for a missing or unreadable entry, the one
    /// expected there).
    pub seq: u64,
    /// What is wrong.
    pub reason: String,
    /// Whether the page holding it is damaged (a page checksum failed: the
    /// entries from `seq` on could not be read at all).
    pub page_damaged: bool,
}

/// The result of [`Snapshot::verify_audit_chain`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditReport {
    /// Entries verified (before the first bad one).
    pub entries: u64,
    /// The chain hash of the last entry verified ([`GENESIS_HASH`] if none).
    pub head: [u8; 32],
    /// The first bad entry, if any.
    pub first_bad: Option<AuditBad>,
}

impl AuditReport {
    /// Whether every entry verified.
    pub fn is_ok(&self) -> bool {
        self.first_bad.is_none()
    }
}

/// The chain hash of an entry: SHA-256(previous hash || encoded entry).
pub fn chain_hash(prev: &[u8; 32], encoded: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(encoded);
    h.finalize().into()
}

/// Lowercase hex (one encoder: [`crate::codec::to_hex`]).
pub use crate::codec::to_hex as hex_of;

/// The SHA-256 of `b`, in lowercase hex (the body hashes of manifests).
pub fn sha256_hex(b: &[u8]) -> String {
    hex_of(&Sha256::digest(b))
}

/// An entry's bytes before its hash.
fn encode_entry(
    seq: u64,
    time_ms: i64,
    kind: AuditKind,
    prev: &[u8; 32],
    payload: &[u8],
) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER + payload.len() + 32);
    b.put_u8(AUDIT_FORMAT);
    b.put_u64(seq);
    b.put_i64(time_ms);
    b.put_u16(kind.code());
    b.extend_from_slice(prev);
    b.put_u32(payload.len() as u32);
    b.extend_from_slice(payload);
    b
}

/// Decodes a stored value (no chain check: see [`Snapshot::verify_audit_chain`]).
pub fn decode_entry(value: &[u8]) -> Result<AuditEntry, String> {
    let mut r = Reader::new(value);
    let t = |e: crate::codec::Truncated| e.to_string();
    let format = r.u8("format").map_err(t)?;
    if format != AUDIT_FORMAT {
        return Err(format!("unknown entry format {format}"));
    }
    let seq = r.u64("sequence number").map_err(t)?;
    let time_ms = r.i64("time").map_err(t)?;
    let kind = AuditKind::from_code(r.u16("kind").map_err(t)?);
    let prev_hash = r.array::<32>("previous hash").map_err(t)?;
    let len = r.u32("payload length").map_err(t)? as usize;
    let payload = r.take(len, "payload").map_err(t)?.to_vec();
    let hash = r.array::<32>("entry hash").map_err(t)?;
    if r.remaining() != 0 {
        return Err(format!("{} bytes after the entry hash", r.remaining()));
    }
    Ok(AuditEntry {
        seq,
        time_ms,
        kind,
        prev_hash,
        hash,
        payload,
    })
}

/// Refuses a payload too large to store.
pub(super) fn check_payload(payload: &[u8]) -> Result<(), Error> {
    if payload.len() > MAX_AUDIT_PAYLOAD {
        return Err(InputError::InvalidArgument(format!(
            "an audit payload is at most {MAX_AUDIT_PAYLOAD} bytes ({} given)",
            payload.len()
        ))
        .into());
    }
    Ok(())
}

fn corrupt(seq: u64, reason: impl std::fmt::Display) -> Error {
    Error::CorruptRecord {
        record: format!("audit entry {seq}"),
        reason: reason.to_string(),
    }
}

async fn present<R: PageRead>(r: &R, root: PageNo, seq: u64) -> Result<bool, Error> {
    Ok(btree::get(r, root, &seq.to_be_bytes()).await?.is_some())
}

/// The last entry's sequence number and chain hash (0 and the genesis
/// hash when the trail is empty), read from the tree once per working state.
async fn tail<S: PageStore>(ctx: &mut WCtx<'_, S>) -> Result<(u64, [u8; 32]), Error> {
    if let Some(t) = ctx.w.audit_tail {
        return Ok(t);
    }
    let root = ctx.w.meta.root(Tree::Audit);
    let mut t = (0, GENESIS_HASH);
    if root != 0 {
        // Keys are 1..=n without gaps: find n with O(log n) lookups.
        let (mut lo, mut hi) = (0u64, 1u64);
        while present(&*ctx, root, hi).await? {
            lo = hi;
            hi = hi
                .checked_mul(2)
                .ok_or_else(|| corrupt(hi, "sequence overflow"))?;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if present(&*ctx, root, mid).await? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        if lo == 0 {
            return Err(corrupt(1, "the audit tree is not empty but has no entry 1"));
        }
        let v = btree::get(&*ctx, root, &lo.to_be_bytes())
            .await?
            .ok_or_else(|| corrupt(lo, "vanished"))?;
        // Chain on from what the entry's bytes hash to (a damaged entry is
        // named by the verifier; the chain after it stays checkable).
        if v.len() < HEADER + 32 {
            return Err(corrupt(lo, format!("{} bytes", v.len())));
        }
        let (enc, _) = v.split_at(v.len() - 32);
        let prev: [u8; 32] = enc[PREV_AT..PREV_AT + 32]
            .try_into()
            .map_err(|_| corrupt(lo, "short"))?;
        t = (lo, chain_hash(&prev, enc));
    }
    let before = ctx.w.audit_tail.replace(t);
    ctx.w.undo.push(Undo::AuditTail(before));
    Ok(t)
}

/// Appends an entry in the current transaction; returns its sequence number.
pub(super) async fn append<S: PageStore>(
    ctx: &mut WCtx<'_, S>,
    kind: AuditKind,
    payload: &[u8],
    now: i64,
) -> Result<u64, Error> {
    let (last, prev) = tail(ctx).await?;
    let seq = last + 1;
    let mut value = encode_entry(seq, now, kind, &prev, payload);
    let hash = chain_hash(&prev, &value);
    value.extend_from_slice(&hash);
    let root = ctx.w.meta.root(Tree::Audit);
    let (root, _) = btree::insert(ctx, root, &seq.to_be_bytes(), &value).await?;
    ctx.w.meta.set_root(Tree::Audit, root);
    let before = ctx.w.audit_tail.replace((seq, hash));
    ctx.w.undo.push(Undo::AuditTail(before));
    Ok(seq)
}

/// Appends the entry of a [`super::Batch::audit_writes`]: its payload is
/// `fill(base, results)`, `results` being those of the batch's operations
/// before it, so the entry can name the versions they wrote.
pub(super) async fn append_writes<S: PageStore>(
    ctx: &mut WCtx<'_, S>,
    kind: AuditKind,
    base: &[u8],
    fill: AuditFill,
    results: &[Option<WriteResult>],
    now: i64,
) -> Result<u64, Error> {
    // Refused as the caller's input: the transaction rolls back whole.
    let payload = fill(base, results).map_err(|why| {
        InputError::InvalidArgument(format!(
            "the {} audit entry could not be completed: {why}",
            kind.name()
        ))
    })?;
    check_payload(&payload)?;
    append(ctx, kind, &payload, now).await
}

/// Testing only: replaces the stored value of entry `seq`.
#[cfg(feature = "testing")]
pub(super) async fn overwrite<S: PageStore>(
    ctx: &mut WCtx<'_, S>,
    seq: u64,
    value: &[u8],
) -> Result<(), Error> {
    let root = ctx.w.meta.root(Tree::Audit);
    let (root, _) = btree::insert(ctx, root, &seq.to_be_bytes(), value).await?;
    ctx.w.meta.set_root(Tree::Audit, root);
    let before = ctx.w.audit_tail.take();
    ctx.w.undo.push(Undo::AuditTail(before));
    Ok(())
}

/// Page reads of a snapshot.
struct Pages<'a, S>(&'a Inner<S>);

impl<S: PageStore> PageRead for Pages<'_, S> {
    async fn read(&self, no: PageNo, kind: u8) -> Result<PageBuf, Error> {
        read_cached(self.0, no, kind).await
    }
}

/// Entries read per step of a walk.
const CHUNK: usize = 256;

impl<S: PageStore> Snapshot<S> {
    /// The stored (key, value) pairs from sequence number `from`, at most `limit`.
    async fn audit_raw(&self, from: u64, limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>, Error> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let root = self.meta.root(Tree::Audit);
        btree::scan(&Pages(&self.inner), root, &from.to_be_bytes(), |k, v| {
            out.push((k.to_vec(), v));
            out.len() < limit
        })
        .await?;
        Ok(out)
    }

    /// At most `limit` audit entries from sequence number `from_seq` on, in
    /// order. An entry that does not decode is [`Error::CorruptRecord`]
    /// naming it.
    pub async fn audit_entries(
        &self,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, Error> {
        let raw = self.audit_raw(from_seq, limit).await?;
        raw.into_iter()
            .map(|(k, v)| {
                let seq = key_seq(&k);
                let e = decode_entry(&v).map_err(|r| corrupt(seq, r))?;
                if e.seq != seq {
                    return Err(corrupt(
                        seq,
                        format!("stored under key {seq} but says {}", e.seq),
                    ));
                }
                Ok(e)
            })
            .collect()
    }

    /// The number of the last audit entry (0: none), by its key.
    pub async fn audit_len(&self) -> Result<u64, Error> {
        let root = self.meta.root(Tree::Audit);
        let r = Pages(&self.inner);
        let (mut lo, mut hi) = (0u64, 1u64);
        while present(&r, root, hi).await? && hi < u64::MAX / 2 {
            lo = hi;
            hi *= 2;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if present(&r, root, mid).await? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// Walks the whole trail and recomputes every hash: each entry must be
    /// stored under the next sequence number, decode, name the previous
    /// entry's hash, and hash to what it stores. Stops at the first bad
    /// entry (a damaged page holding entries is reported as that entry,
    /// with [`AuditBad::page_damaged`]). Errors are store failures only.
    pub async fn verify_audit_chain(&self) -> Result<AuditReport, Error> {
        let mut report = AuditReport {
            entries: 0,
            head: GENESIS_HASH,
            first_bad: None,
        };
        let bad = |seq: u64, reason: String| {
            Some(AuditBad {
                seq,
                reason,
                page_damaged: false,
            })
        };
        loop {
            let expected = report.entries + 1;
            let chunk = match self.audit_raw(expected, CHUNK).await {
                Ok(c) => c,
                // A damaged page: read one entry at a time up to it, to name
                // the first entry it holds (the good ones before it are
                // verified on the way).
                Err(Error::Corrupt { .. } | Error::CorruptRecord { .. }) => {
                    match self.audit_raw(expected, 1).await {
                        Ok(c) if !c.is_empty() => c,
                        Ok(_) => return Ok(report),
                        Err(e @ (Error::Corrupt { .. } | Error::CorruptRecord { .. })) => {
                            report.first_bad = Some(AuditBad {
                                seq: expected,
                                reason: format!(
                                    "it lives in a damaged page (with the entries after it in that page): {e}"
                                ),
                                page_damaged: true,
                            });
                            return Ok(report);
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            };
            let n = chunk.len();
            for (k, v) in chunk {
                let expected = report.entries + 1;
                if k.len() != 8 {
                    report.first_bad = bad(
                        expected,
                        format!("a key of {} bytes in the audit tree", k.len()),
                    );
                    return Ok(report);
                }
                let seq = key_seq(&k);
                if seq != expected {
                    report.first_bad = bad(
                        expected,
                        format!("entry {expected} is missing (the next one stored is {seq})"),
                    );
                    return Ok(report);
                }
                if let Err(reason) = check_entry(&v, seq, &report.head) {
                    report.first_bad = bad(seq, reason);
                    return Ok(report);
                }
                report.head = v[v.len() - 32..].try_into().unwrap_or(GENESIS_HASH);
                report.entries = seq;
            }
            if n == 0 {
                return Ok(report);
            }
        }
    }
}

/// Checks one stored entry against its position and the previous hash.
fn check_entry(v: &[u8], seq: u64, prev: &[u8; 32]) -> Result<(), String> {
    let e = decode_entry(v).map_err(|r| format!("it does not decode: {r}"))?;
    if e.seq != seq {
        return Err(format!("it says it is entry {}", e.seq));
    }
    if &e.prev_hash != prev {
        return Err(format!(
            "its previous hash {} is not the previous entry's hash {}",
            hex_of(&e.prev_hash),
            hex_of(prev)
        ));
    }
    let computed = chain_hash(prev, &v[..v.len() - 32]);
    if computed != e.hash {
        return Err(format!(
            "its content does not match its hash (stored {}, computed {}): it was changed after it was written",
            hex_of(&e.hash),
            hex_of(&computed)
        ));
    }
    Ok(())
}

fn key_seq(k: &[u8]) -> u64 {
    k.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

impl<S: PageStore> Database<S> {
    /// [`Snapshot::audit_entries`] on a fresh snapshot.
    pub async fn audit_entries(
        &self,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, Error> {
        self.snapshot().audit_entries(from_seq, limit).await
    }

    /// [`Snapshot::verify_audit_chain`] on a fresh snapshot.
    pub async fn verify_audit_chain(&self) -> Result<AuditReport, Error> {
        self.snapshot().verify_audit_chain().await
    }
}

// ---------------------------------------------------------------------------
// The hub's records (payloads): canonical JSON, one encoder.

/// The version of the record layouts below (field `v`).
pub const AUDIT_RECORD_VERSION: u32 = 1;

/// Completes the payload of a [`super::Batch::audit_writes`] entry inside
/// the transaction, from its base and the results of the batch's
/// operations before it; an `Err` says why it cannot, and the batch fails.
pub type AuditFill = fn(&[u8], &[Option<WriteResult>]) -> Result<Vec<u8>, String>;

/// The payload bytes of a record: its JSON, fields in declaration order,
/// no whitespace (serde_json), so the same record always gives the same bytes.
pub fn encode_record<T: Serialize>(record: &T) -> Vec<u8> {
    serde_json::to_vec(record).unwrap_or_default()
}

/// An accepted push batch ([`AuditKind::PushAccepted`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPush {
    /// [`AUDIT_RECORD_VERSION`].
    pub v: u32,
    /// The edge identity that pushed.
    pub identity: String,
    /// The pushing device's database id.
    pub device: String,
    /// The edge etag the batch covers (the push checkpoint it set).
    pub upto: u64,
    /// The fingerprint of the key that signed the batch (empty: a token
    /// session, unsigned).
    pub key_id: String,
    /// The batch signature (hex; empty: unsigned).
    pub signature: String,
    /// The key that signed it (`p256:` + hex; empty: unsigned). Recorded
    /// whole so `audit verify` checks the signature from the entry alone.
    #[serde(default)]
    pub public_key: String,
    /// The batch's number in the edge's chain (0: unsigned).
    #[serde(default)]
    pub seq: u64,
    /// The hash of the batch before it in the chain (hex; empty: unsigned).
    #[serde(default)]
    pub prev: String,
    /// One entry per document of the batch.
    pub docs: Vec<AuditDoc>,
}

/// A document of an accepted push: hashes, not bodies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditDoc {
    /// Its id as pushed.
    pub id: String,
    /// Its collection as pushed.
    pub collection: Option<String>,
    /// Its versions as pushed (the edge's winner first).
    pub versions: Vec<AuditVersion>,
}

/// A version of a pushed document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditVersion {
    /// Its change vector (text form).
    pub change_vector: String,
    /// Whether it is a deletion.
    pub deleted: bool,
    /// SHA-256 of its body bytes as pushed (lowercase hex; of the empty
    /// string for a deletion).
    pub body_sha256: String,
}

/// A refused push batch ([`AuditKind::PushRefused`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRefusal {
    /// [`AUDIT_RECORD_VERSION`].
    pub v: u32,
    /// The edge identity that pushed.
    pub identity: String,
    /// The pushing device's database id.
    pub device: String,
    /// The `upto` of the refused batch.
    pub upto: u64,
    /// The stable refusal code (`write_denied`, `forged_change_vector`, …).
    pub code: String,
    /// The document named (may be empty).
    pub id: String,
    /// The rule broken (may be empty).
    pub rule: String,
    /// The explanation sent to the edge.
    pub message: String,
}

/// An edge enrolled, revoked or re-scoped by a configuration change
/// ([`AuditKind::ScopeChange`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditScope {
    /// [`AUDIT_RECORD_VERSION`].
    pub v: u32,
    /// The edge identity.
    pub edge: String,
    /// `enrolled`, `revoked` or `rescoped`.
    pub change: String,
    /// Read prefixes before (`None`: the edge had no access to this database).
    pub old_read: Option<Vec<String>>,
    /// Write prefixes before.
    pub old_write: Option<Vec<String>>,
    /// Read prefixes after (`None`: no access any more).
    pub new_read: Option<Vec<String>>,
    /// Write prefixes after.
    pub new_write: Option<Vec<String>>,
    /// The enrolled key's fingerprint (an enrollment by code; absent from
    /// other records and from records written before keys existed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_id: String,
    /// The enrolled key (`p256:` + hex), with `key_id`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub public_key: String,
}

/// What happened to a certificate of a certificate identity
/// ([`AuditKind::Certificate`]; `docs/security.md`, "Trust in keys, not
/// certificates").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCertificate {
    /// [`AUDIT_RECORD_VERSION`].
    pub v: u32,
    /// The identity.
    pub identity: String,
    /// `registered` (by an operator), `renewed` (same key, same issuers,
    /// new dates), `replaced` (a replacement registered by `by`),
    /// `dropped` (an earlier replacement of `by`, superseded), `retired`
    /// (its replacement registered its own), `refused` (a session or a
    /// replacement refused: `code`), `expired` (a session ended at its
    /// expiry) or `purged` (`outpost-hub certs purge-expired`).
    pub event: String,
    /// The certificate's key hash (`sha256:` + hex of its SubjectPublicKeyInfo).
    pub key: String,
    /// The certificate acting (the registering one of a replacement).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub by: String,
    /// Its issuers' key hashes, the leaf's issuer first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issuers: Vec<String>,
    /// Unix seconds: its `notAfter` (0: not known).
    #[serde(default)]
    pub not_after: i64,
    /// A refusal's stable code.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub code: String,
    /// A refusal's explanation, or a note.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// An edge's answer to a purge order ([`AuditKind::PurgeReceipt`]): what
/// it says it erased (a count and a hash of the ids, never the ids), signed
/// by its key over `outpost::sync::signed::PurgeReceipt::message`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPurgeReceipt {
    /// [`AUDIT_RECORD_VERSION`].
    pub v: u32,
    /// The edge identity.
    pub identity: String,
    /// The hub database that ordered the purge.
    pub hub_id: String,
    /// The erasing device's database id.
    pub device: String,
    /// The order's number.
    pub order: u64,
    /// `revoked`, `narrowed` or `purged`.
    pub reason: String,
    /// The prefixes to erase.
    pub prefixes: Vec<String>,
    /// The prefixes kept.
    pub keep: Vec<String>,
    /// Documents erased.
    pub removed: u64,
    /// SHA-256 of the erased id keys (hex).
    pub ids_sha256: String,
    /// For an order that named ids (subject purges): the digest the
    /// receipt signs of those ids (hex; absent otherwise).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub order_ids_sha256: String,
    /// The hub's subject purge markers the receipt settled (the hub's own
    /// note, not signed; absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub markers: Vec<u64>,
    /// The signing key's fingerprint (empty: unsigned, a token session).
    pub key_id: String,
    /// The signing key (`p256:` + hex).
    pub public_key: String,
    /// The signature (hex).
    pub signature: String,
}

/// A batch of an operator's import ([`AuditKind::Import`]): who ran it and
/// how, the input it came from, and per document its line, id, collection,
/// the SHA-256 of the line as read and the change vector the batch gave it.
/// The engine's import writes it in the batch's own commit
/// (`crate::jsonl::ImportOptions::audit`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditImport {
    /// [`AUDIT_RECORD_VERSION`].
    pub v: u32,
    /// Who ran the import, as the operator said (`--by`; not checked).
    pub by: String,
    /// How it came in, as the hub saw it: the command on a stopped hub, or
    /// the request, its peer and the admin credential it showed.
    pub via: String,
    /// The input: a file name as given, or `standard input`.
    pub source: String,
    /// The documents of the batch.
    pub docs: Vec<AuditImportDoc>,
}

/// A document of an [`AuditImport`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditImportDoc {
    /// Its line in the input (1-based).
    pub line: u64,
    /// Its id.
    pub id: String,
    /// Its collection.
    pub collection: Option<String>,
    /// SHA-256 of the line as read, without its line break and surrounding
    /// blanks (lowercase hex): `sha256sum` of that line finds it.
    pub line_sha256: String,
    /// The change vector of the version written (text form).
    pub change_vector: String,
}

impl AuditImport {
    /// The [`AuditFill`] of an import's entry: each document's change vector
    /// from the result of the write before it at the same position.
    pub fn fill(base: &[u8], results: &[Option<WriteResult>]) -> Result<Vec<u8>, String> {
        let mut rec: AuditImport =
            serde_json::from_slice(base).map_err(|e| format!("its record: {e}"))?;
        if results.len() != rec.docs.len() {
            return Err(format!(
                "{} documents recorded, {} writes before the entry",
                rec.docs.len(),
                results.len()
            ));
        }
        for (d, r) in rec.docs.iter_mut().zip(results) {
            match r {
                Some(w) if w.id == d.id => d.change_vector = w.change_vector.to_text(),
                _ => return Err(format!("no write of {:?} where the record names it", d.id)),
            }
        }
        Ok(encode_record(&rec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_roundtrip_and_refuse_damage() {
        let prev = [7u8; 32];
        let mut v = encode_entry(3, -5, AuditKind::ScopeChange, &prev, b"{}");
        let h = chain_hash(&prev, &v);
        v.extend_from_slice(&h);
        let e = decode_entry(&v).unwrap();
        assert_eq!(
            (e.seq, e.time_ms, e.kind, e.prev_hash, e.hash),
            (3, -5, AuditKind::ScopeChange, prev, h)
        );
        assert_eq!(e.payload, b"{}");
        assert!(check_entry(&v, 3, &prev).is_ok());
        assert!(check_entry(&v, 4, &prev).is_err());
        assert!(check_entry(&v, 3, &GENESIS_HASH).is_err());
        let mut t = v.clone();
        t[HEADER] ^= 1;
        assert!(
            check_entry(&t, 3, &prev)
                .unwrap_err()
                .contains("does not match its hash")
        );
        assert!(decode_entry(&v[..v.len() - 1]).is_err());
        for c in [1, 2, 3, 4, 5, 6, 7, 8, 99] {
            assert_eq!(AuditKind::from_code(c).code(), c);
        }
    }

    #[test]
    fn a_certificate_entry_has_kind_7_and_a_fixed_record() {
        // Kind 7 is `certificate`; an engine that predates it reads the
        // same entry as `kind_7` (Other), its chain unchanged.
        assert_eq!(AuditKind::from_code(7), AuditKind::Certificate);
        assert_eq!(AuditKind::Certificate.name(), "certificate");
        assert_eq!(AuditKind::Other(7).name(), "kind_7");
        let r = AuditCertificate {
            v: 1,
            identity: "boston".into(),
            event: "replaced".into(),
            key: "sha256:aa".into(),
            by: "sha256:bb".into(),
            issuers: vec!["sha256:cc".into()],
            not_after: 5,
            code: String::new(),
            message: String::new(),
        };
        let want = br#"{"v":1,"identity":"boston","event":"replaced","key":"sha256:aa","by":"sha256:bb","issuers":["sha256:cc"],"not_after":5}"#;
        assert_eq!(encode_record(&r), want.to_vec());
        let back: AuditCertificate = serde_json::from_slice(want).unwrap();
        assert_eq!(back, r);
        let prev = [1u8; 32];
        let mut v = encode_entry(1, 0, AuditKind::Certificate, &prev, want);
        let h = chain_hash(&prev, &v);
        v.extend_from_slice(&h);
        assert_eq!(&v[1 + 8 + 8..PREV_AT], &7u16.to_le_bytes());
        assert_eq!(decode_entry(&v).unwrap().kind, AuditKind::Certificate);
    }

    #[test]
    fn an_import_entry_has_kind_8_and_names_the_versions_written() {
        // Kind 8 is `import`; an engine that predates it reads it as
        // `kind_8` and still verifies the chain.
        assert_eq!(AuditKind::from_code(8), AuditKind::Import);
        assert_eq!(AuditKind::Import.name(), "import");
        assert_eq!(AuditKind::Other(8).name(), "kind_8");
        let doc = |id: &str| AuditImportDoc {
            line: 3,
            id: id.into(),
            collection: Some("Notes".into()),
            line_sha256: "ab".into(),
            change_vector: String::new(),
        };
        let base = encode_record(&AuditImport {
            v: 1,
            by: "ops".into(),
            via: "cmd".into(),
            source: "f.jsonl".into(),
            docs: vec![doc("a")],
        });
        let cv = crate::ChangeVector::parse_text("AAAAAAAAAAAAAAAAAAAAAA:7").unwrap();
        let wrote = |id: &str| {
            Some(WriteResult {
                id: id.into(),
                etag: 7,
                change_vector: cv.clone(),
                deleted: false,
                outcome: super::super::WriteOutcome::Written,
            })
        };
        let filled = AuditImport::fill(&base, &[wrote("a")]).unwrap();
        let want = format!(
            r#"{{"v":1,"by":"ops","via":"cmd","source":"f.jsonl","docs":[{{"line":3,"id":"a","collection":"Notes","line_sha256":"ab","change_vector":"{}"}}]}}"#,
            cv.to_text()
        );
        assert_eq!(String::from_utf8(filled).unwrap(), want);
        // A write of another document, or a missing one, is refused.
        assert!(AuditImport::fill(&base, &[wrote("b")]).is_err());
        assert!(AuditImport::fill(&base, &[None]).is_err());
        assert!(AuditImport::fill(&base, &[]).is_err());
        assert!(AuditImport::fill(b"{", &[wrote("a")]).is_err());
    }
}
