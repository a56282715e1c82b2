//! Write safety `hub` (issue "Deletes that mean something" §4,
//! `docs/protocol.md` §4 "Write safety"): a compare-and-set of a few
//! documents that an edge asks the hub to apply, at the hub alone and all
//! or nothing, then replicated like any hub write. Nothing is written at
//! the edge unless the hub applied it; the new versions reach the edge by
//! its pull.
//!
//! This module holds what both machines and the storage share: the signed
//! bytes of a request ([`HubWriteManifest`]), its audit record
//! ([`AuditHubWrite`], kind `hub_write`), what the edge's caller learns
//! ([`HubWriteOutcome`]), and the hub's transaction ([`apply`]).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::codec::{Put, from_hex, to_hex};
use crate::cv::{ChangeVector, DbId};
use crate::db::{
    AUDIT_RECORD_VERSION, AuditKind, Batch, Database, Expected, PutOptions, Refusal,
    purged_id_hash, purged_id_key,
};
use crate::error::Error;
use crate::keys::PublicKey;
use crate::store::PageStore;
use crate::sync::frame::{WireExpect, WireWrite, WriteAnswer};

/// Domain of a `Write`'s signature.
pub const HUB_WRITE_DOMAIN: &[u8] = b"outpost/hub-write/v6\0";

/// One document of a `Write`, as signed: the body by its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestWrite {
    /// Its id as sent.
    pub id: String,
    /// Its collection as sent.
    pub collection: Option<String>,
    /// What the hub must hold.
    pub expect: WireExpect,
    /// A deletion.
    pub deleted: bool,
    /// SHA-256 of the body bytes as sent (of nothing for a deletion).
    pub body_sha256: [u8; 32],
}

/// A `Write` as signed: which hub database, which device, which session
/// (the hub's nonce of the connection: a request is good in that session
/// only), its number in the session, and its documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubWriteManifest {
    /// The hub database.
    pub hub_id: DbId,
    /// The writing device's database id.
    pub device: DbId,
    /// The hub's nonce of the session (zeros in a token session).
    pub nonce: [u8; 32],
    /// The request's number in the session.
    pub request: u64,
    /// Its documents.
    pub ops: Vec<ManifestWrite>,
}

impl HubWriteManifest {
    /// The manifest of a `Write` of `ops`.
    pub fn of(
        hub_id: DbId,
        device: DbId,
        nonce: [u8; 32],
        request: u64,
        ops: &[WireWrite],
    ) -> Self {
        HubWriteManifest {
            hub_id,
            device,
            nonce,
            request,
            ops: ops
                .iter()
                .map(|o| ManifestWrite {
                    id: o.id.clone(),
                    collection: o.collection.clone(),
                    expect: o.expect.clone(),
                    deleted: o.deleted,
                    body_sha256: Sha256::digest(&o.body).into(),
                })
                .collect(),
        }
    }

    /// The canonical bytes the edge signs: [`HUB_WRITE_DOMAIN`] ‖ hub db id
    /// ‖ edge db id ‖ nonce ‖ `u64` request ‖ `u16` count ‖ per document
    /// `str` id ‖ `u8` has collection [‖ `str` collection] ‖ expectation
    /// (`u8` 0 any, 1 missing, 2 + change vector) ‖ `u8` deleted ‖
    /// SHA-256(body).
    pub fn message(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(96 + self.ops.len() * 96);
        w.extend_from_slice(HUB_WRITE_DOMAIN);
        w.extend_from_slice(self.hub_id.as_bytes());
        w.extend_from_slice(self.device.as_bytes());
        w.extend_from_slice(&self.nonce);
        w.put_u64(self.request);
        w.put_u16(self.ops.len() as u16);
        for o in &self.ops {
            w.put_bytes16(o.id.as_bytes());
            match &o.collection {
                None => w.put_u8(0),
                Some(c) => {
                    w.put_u8(1);
                    w.put_bytes16(c.as_bytes());
                }
            }
            o.expect.encode(&mut w);
            w.put_u8(u8::from(o.deleted));
            w.extend_from_slice(&o.body_sha256);
        }
        w
    }

    /// The audit record of this write, applied for `identity`, signed by
    /// `signed` (`None`: a token session).
    pub fn to_audit(&self, identity: &str, signed: Option<&(PublicKey, Vec<u8>)>) -> AuditHubWrite {
        AuditHubWrite {
            v: AUDIT_RECORD_VERSION,
            identity: identity.to_string(),
            hub_id: self.hub_id.to_string(),
            device: self.device.to_string(),
            nonce: to_hex(&self.nonce),
            request: self.request,
            ops: self
                .ops
                .iter()
                .map(|o| AuditWriteOp {
                    id: o.id.clone(),
                    collection: o.collection.clone(),
                    expect: o.expect.to_text(),
                    deleted: o.deleted,
                    body_sha256: to_hex(&o.body_sha256),
                    change_vector: String::new(),
                })
                .collect(),
            key_id: signed.map(|(k, _)| k.fingerprint()).unwrap_or_default(),
            public_key: signed.map(|(k, _)| k.to_text()).unwrap_or_default(),
            signature: signed.map(|(_, s)| to_hex(s)).unwrap_or_default(),
        }
    }

    /// The signed write an audit record describes, with its key and
    /// signature (`Ok(None)`: unsigned); `Err` names the bad field.
    #[allow(clippy::type_complexity)]
    pub fn from_audit(
        a: &AuditHubWrite,
    ) -> Result<Option<(HubWriteManifest, PublicKey, Vec<u8>)>, String> {
        if a.signature.is_empty() && a.public_key.is_empty() {
            return Ok(None);
        }
        let key = PublicKey::parse_text(&a.public_key).map_err(|e| format!("public_key: {e}"))?;
        let signature = from_hex(&a.signature).ok_or("signature: not hex")?;
        let nonce: [u8; 32] = from_hex(&a.nonce)
            .and_then(|b| b.try_into().ok())
            .ok_or("nonce: not 32 bytes of hex")?;
        let mut ops = Vec::with_capacity(a.ops.len());
        for o in &a.ops {
            let expect = match o.expect.as_str() {
                "any" => WireExpect::Any,
                "missing" => WireExpect::Missing,
                t => WireExpect::Cv(
                    ChangeVector::parse_text(t).map_err(|e| format!("{}: expect: {e}", o.id))?,
                ),
            };
            ops.push(ManifestWrite {
                id: o.id.clone(),
                collection: o.collection.clone(),
                expect,
                deleted: o.deleted,
                body_sha256: from_hex(&o.body_sha256)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| format!("{}: body_sha256: not 32 bytes of hex", o.id))?,
            });
        }
        let m = HubWriteManifest {
            hub_id: a.hub_id.parse().map_err(|_| "hub_id: not a database id")?,
            device: a.device.parse().map_err(|_| "device: not a database id")?,
            nonce,
            request: a.request,
            ops,
        };
        Ok(Some((m, key, signature)))
    }
}

/// The audit record of a write applied with safety `hub`
/// ([`AuditKind::HubWrite`]): who, which session and request, and per
/// document its id, expectation and body hash (never the body).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHubWrite {
    /// [`AUDIT_RECORD_VERSION`].
    pub v: u32,
    /// The edge identity.
    pub identity: String,
    /// The hub database.
    pub hub_id: String,
    /// The writing device's database id.
    pub device: String,
    /// The session's nonce (hex).
    pub nonce: String,
    /// The request's number in the session.
    pub request: u64,
    /// Its documents.
    pub ops: Vec<AuditWriteOp>,
    /// The signing key's fingerprint (empty: unsigned, a token session).
    pub key_id: String,
    /// The signing key (`p256:` + hex).
    pub public_key: String,
    /// The signature (hex).
    pub signature: String,
}

/// A document of an [`AuditHubWrite`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditWriteOp {
    /// Its id as sent.
    pub id: String,
    /// Its collection as sent.
    pub collection: Option<String>,
    /// `any`, `missing`, or the expected change vector.
    pub expect: String,
    /// A deletion.
    pub deleted: bool,
    /// SHA-256 of the body as sent (hex).
    pub body_sha256: String,
    /// The change vector of the version the write produced, filled in by
    /// the commit ([`AuditHubWrite::fill`]; not signed, the chain covers
    /// it). Empty in entries written before it was recorded, and for the
    /// deletion of a document that did not exist.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub change_vector: String,
}

impl AuditHubWrite {
    /// The [`crate::db::AuditFill`] of a hub write's entry: each document's
    /// change vector from its write's result. [`apply`] adds two operations
    /// per document, the retired-id check and then the write.
    pub fn fill(
        base: &[u8],
        results: &[Option<crate::db::WriteResult>],
    ) -> Result<Vec<u8>, String> {
        let mut rec: AuditHubWrite =
            serde_json::from_slice(base).map_err(|e| format!("its record: {e}"))?;
        if results.len() != 2 * rec.ops.len() {
            return Err(format!(
                "{} documents recorded, {} operations before the entry",
                rec.ops.len(),
                results.len()
            ));
        }
        for (i, op) in rec.ops.iter_mut().enumerate() {
            match &results[2 * i + 1] {
                Some(w) if w.id == op.id => op.change_vector = w.change_vector.to_text(),
                Some(w) => return Err(format!("a write of {:?} where {:?} was", w.id, op.id)),
                None => {}
            }
        }
        Ok(crate::db::encode_record(&rec))
    }
}

/// What became of a write with safety `hub`, as the edge's caller learns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubWriteOutcome {
    /// The hub applied it; the edge held the new versions when this was
    /// told, unless the session ended first (they arrive with the next).
    Applied {
        /// The hub's last etag after its commit.
        hub_etag: u64,
        /// Per document, the new version's change vector.
        change_vectors: Vec<ChangeVector>,
    },
    /// An expectation did not hold at the hub: nothing was written.
    Conflict {
        /// The document.
        id: String,
        /// Its change vector at the hub (empty: it does not exist).
        current: ChangeVector,
    },
    /// The hub refused it (a code of `docs/protocol.md` §5): nothing was
    /// written.
    Refused {
        /// Stable code.
        code: String,
        /// The document named.
        id: String,
        /// Explanation.
        message: String,
    },
    /// It never reached the hub (no session, or one that cannot carry it):
    /// nothing was written anywhere.
    Offline {
        /// Why.
        reason: String,
    },
    /// It was sent, but the session ended before the answer: the hub may
    /// or may not have applied it (if it did, it replicates like any write).
    Unknown {
        /// Why.
        reason: String,
    },
}

impl HubWriteOutcome {
    /// A stable code: `applied`, `conflict`, `offline`, `unknown`, or the
    /// hub's refusal code.
    pub fn code(&self) -> &str {
        match self {
            HubWriteOutcome::Applied { .. } => "applied",
            HubWriteOutcome::Conflict { .. } => "conflict",
            HubWriteOutcome::Refused { code, .. } => code,
            HubWriteOutcome::Offline { .. } => "offline",
            HubWriteOutcome::Unknown { .. } => "unknown",
        }
    }
}

/// The hub's transaction of a checked `Write`: every document's
/// expectation, the retired ids of subject purges, the deletion guards and
/// the engine's caps, and the audit entry, in ONE commit; all of it or
/// nothing. `Err` is the database's failure (not the edge's).
pub async fn apply<S: PageStore>(
    db: &Database<S>,
    identity: &str,
    ops: &[WireWrite],
    manifest: &HubWriteManifest,
    signed: Option<&(PublicKey, Vec<u8>)>,
) -> Result<WriteAnswer, Error> {
    let refused = |code: &str, id: &str, message: String| WriteAnswer::Refused {
        code: code.into(),
        id: id.into(),
        rule: String::new(),
        message,
    };
    let mut b = Batch::new();
    for op in ops {
        // A retired id is never taken back: named with its marker here, and
        // checked again inside the transaction.
        let retired = purged_id_key(&purged_id_hash(&crate::doc::id_key(&op.id)));
        if let Some(v) = db.get_local(&retired).await? {
            let marker = v
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes);
            let r = Refusal::Purged {
                id: op.id.clone(),
                marker,
            };
            return Ok(refused(r.code(), &op.id, r.to_string()));
        }
        b.expect_local(
            retired,
            None,
            Refusal::Purged {
                id: op.id.clone(),
                marker: 0,
            },
        );
        let expected = match &op.expect {
            WireExpect::Any => Expected::Any,
            WireExpect::Missing => Expected::Missing,
            WireExpect::Cv(cv) => Expected::Cv(cv.clone()),
        };
        if op.deleted {
            b.delete_with(op.id.clone(), expected);
        } else {
            let body = match serde_json::from_slice(&op.body) {
                Ok(v) => v,
                Err(e) => {
                    return Ok(refused(
                        "invalid_document",
                        &op.id,
                        format!("the body does not parse: {e}"),
                    ));
                }
            };
            let opts = PutOptions {
                collection: op.collection.clone(),
                expected,
            };
            b.put_with(op.id.clone(), body, opts);
        }
    }
    b.audit_writes(
        AuditKind::HubWrite,
        crate::db::encode_record(&manifest.to_audit(identity, signed)),
        AuditHubWrite::fill,
    );
    match db.commit(b).await {
        Ok(info) => Ok(WriteAnswer::Applied {
            etag: db.last_etag(),
            // Per document two operations: the retired-id check, then the
            // write.
            change_vectors: (0..ops.len())
                .map(|i| match info.results.get(2 * i + 1) {
                    Some(Some(w)) => w.change_vector.clone(),
                    _ => ChangeVector::default(),
                })
                .collect(),
        }),
        Err(Error::ConcurrencyConflict { id, actual, .. }) => {
            let name = ops
                .iter()
                .find(|o| o.id.eq_ignore_ascii_case(&id))
                .map_or(id, |o| o.id.clone());
            Ok(WriteAnswer::Conflict {
                id: name,
                current: ChangeVector::parse_text(&actual).unwrap_or_default(),
            })
        }
        Err(Error::Refused(r)) => Ok(refused(r.code(), r.id(), r.to_string())),
        Err(Error::Input(e)) => Ok(refused("invalid_document", "", e.to_string())),
        Err(e) => Err(e),
    }
}
