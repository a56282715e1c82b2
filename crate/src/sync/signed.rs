//! What an edge signs: the one encoder of the canonical bytes of the
//! handshake proof and of a pushed batch (`docs/protocol.md` §3).
//!
//! The edge signs these bytes, the hub checks the signature over the bytes
//! it computes from what it received, and `outpost-hub audit verify`
//! recomputes them from the audit trail's manifest (hashes, not bodies): all
//! three go through [`auth_message`] and [`BatchManifest::message`]. Every
//! field is fixed-width little-endian or length-prefixed, after a domain
//! string that keeps a handshake proof from ever being a batch signature
//! (and both from being anything else a key might sign).

use sha2::{Digest, Sha256};

use crate::codec::{Put, from_hex, to_hex};
use crate::cv::{ChangeVector, DbId};
use crate::db::{AUDIT_RECORD_VERSION, AuditDoc, AuditPurgeReceipt, AuditPush, AuditVersion};
use crate::keys::PublicKey;
use crate::sync::frame::WireDoc;

/// Domain of the handshake proof.
pub const AUTH_DOMAIN: &[u8] = b"outpost/auth/v3\0";
/// Domain of a batch signature.
pub const BATCH_DOMAIN: &[u8] = b"outpost/batch/v3\0";
/// Domain of a purge receipt.
pub const PURGE_DOMAIN: &[u8] = b"outpost/purge-receipt/v4\0";
/// Domain of a receipt for an order that named ids (a subject purge,
/// protocol 5): the v4 message plus the digest of the ids.
pub const PURGE_IDS_DOMAIN: &[u8] = b"outpost/purge-receipt/v5\0";

/// The digest a receipt signs for the ids an order named (in the order's
/// sequence): SHA-256 over the 32-byte hashes; `None` when it named none.
pub fn order_ids_digest(ids: &[[u8; 32]]) -> Option<[u8; 32]> {
    if ids.is_empty() {
        return None;
    }
    let mut h = Sha256::new();
    for i in ids {
        h.update(i);
    }
    Some(h.finalize().into())
}
/// Bytes of a hub nonce.
pub const NONCE_LEN: usize = 32;
/// The `prev` of an edge's first batch: no batch before it.
pub const GENESIS: [u8; 32] = [0; 32];

/// The session a handshake proof is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthContext<'a> {
    /// The protocol version the hub chose.
    pub version: u16,
    /// The hub database's id (the hub's identity for this database).
    pub hub_id: DbId,
    /// The hub's fresh nonce for this connection.
    pub nonce: [u8; NONCE_LEN],
    /// The database asked for.
    pub database: &'a str,
    /// The identity claimed.
    pub identity: &'a str,
    /// The edge database's id.
    pub edge_db: DbId,
    /// The key the proof is made with.
    pub key: &'a PublicKey,
}

/// The bytes the edge signs to prove it holds its key in this session.
pub fn auth_message(c: &AuthContext<'_>) -> Vec<u8> {
    let mut w = Vec::with_capacity(256);
    w.extend_from_slice(AUTH_DOMAIN);
    w.put_u16(c.version);
    w.extend_from_slice(c.hub_id.as_bytes());
    w.extend_from_slice(&c.nonce);
    w.put_bytes16(c.database.as_bytes());
    w.put_bytes16(c.identity.as_bytes());
    w.extend_from_slice(c.edge_db.as_bytes());
    w.extend_from_slice(c.key.as_bytes());
    w
}

/// One version of a batch's document, as signed: its change vector, whether
/// it is a deletion, and the SHA-256 of its body bytes (of the empty string
/// for a deletion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestVersion {
    /// Its change vector.
    pub change_vector: ChangeVector,
    /// Whether it is a deletion.
    pub deleted: bool,
    /// SHA-256 of its body bytes as pushed.
    pub body_sha256: [u8; 32],
}

/// One document of a batch, as signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestDoc {
    /// Its id as pushed.
    pub id: String,
    /// Its collection as pushed.
    pub collection: Option<String>,
    /// Its versions as pushed (the edge's winner first).
    pub versions: Vec<ManifestVersion>,
}

impl ManifestDoc {
    /// The manifest entry of a document on the wire (hashes its bodies).
    pub fn of(d: &WireDoc) -> ManifestDoc {
        ManifestDoc {
            id: d.id.clone(),
            collection: d.collection.clone(),
            versions: d
                .versions
                .iter()
                .map(|v| ManifestVersion {
                    change_vector: v.change_vector.clone(),
                    deleted: v.deleted,
                    body_sha256: Sha256::digest(&v.body).into(),
                })
                .collect(),
        }
    }
}

/// A pushed batch as signed: who (the device's database id), where in the
/// edge's chain of batches (`seq`, the hash of the batch before), what
/// push checkpoint it sets (`upto`), and a manifest of its documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchManifest {
    /// The pushing device's database id.
    pub device: DbId,
    /// The batch's number in the edge's chain (the first is 1).
    pub seq: u64,
    /// [`BatchManifest::hash`] of the batch before ([`GENESIS`] for the first).
    pub prev: [u8; 32],
    /// The edge etag the batch covers.
    pub upto: u64,
    /// Its documents.
    pub docs: Vec<ManifestDoc>,
}

impl BatchManifest {
    /// The manifest of a `Push` of `docs`.
    pub fn of(device: DbId, seq: u64, prev: [u8; 32], upto: u64, docs: &[WireDoc]) -> Self {
        BatchManifest {
            device,
            seq,
            prev,
            upto,
            docs: docs.iter().map(ManifestDoc::of).collect(),
        }
    }

    /// The canonical bytes the edge signs.
    pub fn message(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(64 + self.docs.len() * 96);
        w.extend_from_slice(BATCH_DOMAIN);
        w.extend_from_slice(self.device.as_bytes());
        w.put_u64(self.seq);
        w.extend_from_slice(&self.prev);
        w.put_u64(self.upto);
        w.put_u32(self.docs.len() as u32);
        for d in &self.docs {
            w.put_bytes16(d.id.as_bytes());
            match &d.collection {
                None => w.put_u8(0),
                Some(c) => {
                    w.put_u8(1);
                    w.put_bytes16(c.as_bytes());
                }
            }
            w.put_u16(d.versions.len() as u16);
            for v in &d.versions {
                v.change_vector.encode(&mut w);
                w.put_u8(u8::from(v.deleted));
                w.extend_from_slice(&v.body_sha256);
            }
        }
        w
    }

    /// The batch's hash (SHA-256 of [`BatchManifest::message`]): the next
    /// batch's `prev`.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.message()).into()
    }
}

impl BatchManifest {
    /// The audit record of this batch, accepted from `identity`, signed by
    /// `signed` (key and signature; `None` for a token session).
    pub fn to_audit(&self, identity: &str, signed: Option<&(PublicKey, Vec<u8>)>) -> AuditPush {
        AuditPush {
            v: AUDIT_RECORD_VERSION,
            identity: identity.to_string(),
            device: self.device.to_string(),
            upto: self.upto,
            key_id: signed.map(|(k, _)| k.fingerprint()).unwrap_or_default(),
            signature: signed.map(|(_, s)| to_hex(s)).unwrap_or_default(),
            public_key: signed.map(|(k, _)| k.to_text()).unwrap_or_default(),
            seq: if signed.is_some() { self.seq } else { 0 },
            prev: if signed.is_some() {
                to_hex(&self.prev)
            } else {
                String::new()
            },
            docs: self
                .docs
                .iter()
                .map(|d| AuditDoc {
                    id: d.id.clone(),
                    collection: d.collection.clone(),
                    versions: d
                        .versions
                        .iter()
                        .map(|v| AuditVersion {
                            change_vector: v.change_vector.to_text(),
                            deleted: v.deleted,
                            body_sha256: to_hex(&v.body_sha256),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// The signed batch an audit record describes, with its key and
    /// signature: what `audit verify` checks. `Ok(None)` for an unsigned
    /// record (a token session); `Err` names the field that does not parse.
    #[allow(clippy::type_complexity)]
    pub fn from_audit(
        a: &AuditPush,
    ) -> Result<Option<(BatchManifest, PublicKey, Vec<u8>)>, String> {
        if a.signature.is_empty() && a.public_key.is_empty() {
            return Ok(None);
        }
        let key = PublicKey::parse_text(&a.public_key).map_err(|e| format!("public_key: {e}"))?;
        let signature = from_hex(&a.signature).ok_or("signature: not hex")?;
        let prev: [u8; 32] = from_hex(&a.prev)
            .and_then(|b| b.try_into().ok())
            .ok_or("prev: not 32 bytes of hex")?;
        let device: DbId = a.device.parse().map_err(|_| "device: not a database id")?;
        let mut docs = Vec::with_capacity(a.docs.len());
        for d in &a.docs {
            let mut versions = Vec::with_capacity(d.versions.len());
            for v in &d.versions {
                versions.push(ManifestVersion {
                    change_vector: ChangeVector::parse_text(&v.change_vector)
                        .map_err(|e| format!("{}: change vector: {e}", d.id))?,
                    deleted: v.deleted,
                    body_sha256: from_hex(&v.body_sha256)
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(|| format!("{}: body_sha256: not 32 bytes of hex", d.id))?,
                });
            }
            docs.push(ManifestDoc {
                id: d.id.clone(),
                collection: d.collection.clone(),
                versions,
            });
        }
        let m = BatchManifest {
            device,
            seq: a.seq,
            prev,
            upto: a.upto,
            docs,
        };
        Ok(Some((m, key, signature)))
    }
}

/// A purge receipt as signed: which order of which hub database it answers
/// (the order's number, reason and lists, so a receipt for one order can
/// never be passed off for another), which device erased, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeReceipt {
    /// The hub database that ordered the purge.
    pub hub_id: DbId,
    /// The erasing device's database id.
    pub device: DbId,
    /// The order's number.
    pub order: u64,
    /// The order's reason (`revoked`, `narrowed`).
    pub reason: String,
    /// The order's prefixes to erase.
    pub prefixes: Vec<String>,
    /// The order's prefixes to keep.
    pub keep: Vec<String>,
    /// [`order_ids_digest`] of the ids the order named (`None`: none, and
    /// the message is the protocol 4 one).
    pub order_ids: Option<[u8; 32]>,
    /// Documents erased.
    pub removed: u64,
    /// SHA-256 of the erased id keys.
    pub ids_hash: [u8; 32],
}

impl PurgeReceipt {
    /// The canonical bytes the edge signs.
    pub fn message(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(192);
        w.extend_from_slice(match self.order_ids {
            None => PURGE_DOMAIN,
            Some(_) => PURGE_IDS_DOMAIN,
        });
        w.extend_from_slice(self.hub_id.as_bytes());
        w.extend_from_slice(self.device.as_bytes());
        w.put_u64(self.order);
        w.put_bytes16(self.reason.as_bytes());
        for list in [&self.prefixes, &self.keep] {
            w.put_u32(list.len() as u32);
            for p in list {
                w.put_bytes16(p.as_bytes());
            }
        }
        w.put_u64(self.removed);
        w.extend_from_slice(&self.ids_hash);
        if let Some(d) = &self.order_ids {
            w.extend_from_slice(d);
        }
        w
    }

    /// The audit record of this receipt from `identity`, signed by
    /// `signed` (`None`: a token session, unsigned).
    pub fn to_audit(
        &self,
        identity: &str,
        signed: Option<&(PublicKey, Vec<u8>)>,
    ) -> AuditPurgeReceipt {
        AuditPurgeReceipt {
            v: AUDIT_RECORD_VERSION,
            identity: identity.to_string(),
            hub_id: self.hub_id.to_string(),
            device: self.device.to_string(),
            order: self.order,
            reason: self.reason.clone(),
            prefixes: self.prefixes.clone(),
            keep: self.keep.clone(),
            removed: self.removed,
            ids_sha256: to_hex(&self.ids_hash),
            order_ids_sha256: self.order_ids.map(|d| to_hex(&d)).unwrap_or_default(),
            markers: Vec::new(),
            key_id: signed.map(|(k, _)| k.fingerprint()).unwrap_or_default(),
            public_key: signed.map(|(k, _)| k.to_text()).unwrap_or_default(),
            signature: signed.map(|(_, s)| to_hex(s)).unwrap_or_default(),
        }
    }

    /// The signed receipt an audit record describes, with its key and
    /// signature (`Ok(None)`: unsigned); `Err` names the bad field.
    #[allow(clippy::type_complexity)]
    pub fn from_audit(
        a: &AuditPurgeReceipt,
    ) -> Result<Option<(PurgeReceipt, PublicKey, Vec<u8>)>, String> {
        if a.signature.is_empty() && a.public_key.is_empty() {
            return Ok(None);
        }
        let key = PublicKey::parse_text(&a.public_key).map_err(|e| format!("public_key: {e}"))?;
        let signature = from_hex(&a.signature).ok_or("signature: not hex")?;
        let ids_hash: [u8; 32] = from_hex(&a.ids_sha256)
            .and_then(|b| b.try_into().ok())
            .ok_or("ids_sha256: not 32 bytes of hex")?;
        let order_ids = if a.order_ids_sha256.is_empty() {
            None
        } else {
            Some(
                from_hex(&a.order_ids_sha256)
                    .and_then(|b| b.try_into().ok())
                    .ok_or("order_ids_sha256: not 32 bytes of hex")?,
            )
        };
        let r = PurgeReceipt {
            order_ids,
            hub_id: a.hub_id.parse().map_err(|_| "hub_id: not a database id")?,
            device: a.device.parse().map_err(|_| "device: not a database id")?,
            order: a.order,
            reason: a.reason.clone(),
            prefixes: a.prefixes.clone(),
            keep: a.keep.clone(),
            removed: a.removed,
            ids_hash,
        };
        Ok(Some((r, key, signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::RawVersion;

    fn key() -> PublicKey {
        let mut b = [3u8; 65];
        b[0] = 4;
        PublicKey::from_sec1(&b).unwrap()
    }

    fn doc(id: &str, body: &str) -> WireDoc {
        WireDoc {
            id: id.into(),
            collection: Some("c".into()),
            versions: vec![RawVersion {
                change_vector: ChangeVector::new().with(DbId([1; 16]), 3),
                last_modified_ms: 5,
                deleted: false,
                body: body.as_bytes().to_vec(),
            }],
        }
    }

    #[test]
    fn every_field_of_a_batch_changes_its_bytes() {
        let base = BatchManifest::of(DbId([9; 16]), 4, [2; 32], 40, &[doc("a/1", "{}")]);
        let m = base.message();
        assert!(m.starts_with(BATCH_DOMAIN));
        let mut variants = Vec::new();
        let mut v = base.clone();
        v.device = DbId([8; 16]);
        variants.push(v);
        let mut v = base.clone();
        v.seq = 5;
        variants.push(v);
        let mut v = base.clone();
        v.prev = [3; 32];
        variants.push(v);
        let mut v = base.clone();
        v.upto = 41;
        variants.push(v);
        variants.push(BatchManifest::of(
            DbId([9; 16]),
            4,
            [2; 32],
            40,
            &[doc("a/2", "{}")],
        ));
        variants.push(BatchManifest::of(
            DbId([9; 16]),
            4,
            [2; 32],
            40,
            &[doc("a/1", "{ }")],
        ));
        let mut v = base.clone();
        v.docs[0].collection = None;
        variants.push(v);
        let mut v = base.clone();
        v.docs[0].versions[0].deleted = true;
        variants.push(v);
        let mut v = base.clone();
        v.docs[0].versions[0].change_vector = ChangeVector::new().with(DbId([1; 16]), 4);
        variants.push(v);
        let mut v = base.clone();
        v.docs.clear();
        variants.push(v);
        for (i, v) in variants.iter().enumerate() {
            assert_ne!(v.message(), m, "variant {i}");
            assert_ne!(v.hash(), base.hash(), "variant {i}");
        }
        // Deterministic.
        assert_eq!(base.message(), base.clone().message());
    }

    #[test]
    fn an_audit_record_of_before_signatures_still_reads_as_unsigned() {
        // The layout audit records had before protocol 3 (empty key_id and
        // signature, no public_key, seq or prev): it decodes, and is an
        // unsigned batch, not a bad signature.
        let old = br#"{"v":1,"identity":"alice","device":"AQEBAQEBAQEBAQEBAQEBAQ","upto":3,"key_id":"","signature":"","docs":[{"id":"notes/a","collection":null,"versions":[{"change_vector":"","deleted":false,"body_sha256":"00"}]}]}"#;
        let a: AuditPush = serde_json::from_slice(old).unwrap();
        assert_eq!((a.seq, a.prev.as_str(), a.public_key.as_str()), (0, "", ""));
        assert_eq!(BatchManifest::from_audit(&a), Ok(None));
        // A signed record round-trips through the manifest.
        let key = key();
        let m = BatchManifest::of(DbId([9; 16]), 2, [4; 32], 7, &[doc("a/1", "{}")]);
        let rec = m.to_audit("alice", Some(&(key.clone(), vec![1; 64])));
        let (back, k, sig) = BatchManifest::from_audit(&rec).unwrap().unwrap();
        assert_eq!((back, k, sig), (m, key, vec![1; 64]));
    }

    #[test]
    fn auth_bytes_bind_every_field_and_differ_from_batches() {
        let k = key();
        let base = AuthContext {
            version: 3,
            hub_id: DbId([1; 16]),
            nonce: [5; 32],
            database: "main",
            identity: "alice",
            edge_db: DbId([2; 16]),
            key: &k,
        };
        let m = auth_message(&base);
        assert!(m.starts_with(AUTH_DOMAIN));
        for v in [
            AuthContext {
                version: 5,
                ..base.clone()
            },
            AuthContext {
                hub_id: DbId([0; 16]),
                ..base.clone()
            },
            AuthContext {
                nonce: [6; 32],
                ..base.clone()
            },
            AuthContext {
                database: "mainx",
                ..base.clone()
            },
            AuthContext {
                identity: "alicf",
                ..base.clone()
            },
            AuthContext {
                edge_db: DbId([3; 16]),
                ..base.clone()
            },
        ] {
            assert_ne!(auth_message(&v), m);
        }
        // A database/identity split cannot be moved ("ab","c" vs "a","bc").
        let a = auth_message(&AuthContext {
            database: "ab",
            identity: "c",
            ..base.clone()
        });
        let b = auth_message(&AuthContext {
            database: "a",
            identity: "bc",
            ..base.clone()
        });
        assert_ne!(a, b);
    }

    #[test]
    fn a_receipt_for_named_ids_signs_them_and_the_v4_message_is_unchanged() {
        let r = PurgeReceipt {
            hub_id: DbId([1; 16]),
            device: DbId([2; 16]),
            order: 3,
            reason: "purged".into(),
            prefixes: vec![],
            keep: vec!["a/".into()],
            order_ids: None,
            removed: 1,
            ids_hash: [4; 32],
        };
        // Fixed bytes of the protocol 4 message (audit records of version
        // 4 receipts still verify against them).
        let mut want = PURGE_DOMAIN.to_vec();
        want.extend([1; 16]);
        want.extend([2; 16]);
        want.extend(3u64.to_le_bytes());
        want.extend([6, 0]);
        want.extend(b"purged");
        want.extend([0, 0, 0, 0, 1, 0, 0, 0, 2, 0, b'a', b'/']);
        want.extend(1u64.to_le_bytes());
        want.extend([4; 32]);
        assert_eq!(r.message(), want);
        // Naming ids: another domain, the same fields, then their digest.
        let ids = [[7u8; 32], [8u8; 32]];
        let digest = order_ids_digest(&ids).unwrap();
        let named = PurgeReceipt {
            order_ids: Some(digest),
            ..r.clone()
        };
        let m = named.message();
        assert!(m.starts_with(PURGE_IDS_DOMAIN));
        assert_eq!(
            &m[PURGE_IDS_DOMAIN.len()..m.len() - 32],
            &want[PURGE_DOMAIN.len()..]
        );
        assert_eq!(&m[m.len() - 32..], &digest);
        // The digest depends on every id and their order.
        assert_ne!(order_ids_digest(&[[8; 32], [7; 32]]), Some(digest));
        assert_ne!(order_ids_digest(&ids[..1]), Some(digest));
        assert_eq!(order_ids_digest(&[]), None);
        // Through the audit record and back, both kinds.
        for rec in [r, named] {
            let key = key();
            let a = rec.to_audit("lap", Some(&(key.clone(), vec![9; 64])));
            let (back, k, sig) = PurgeReceipt::from_audit(&a).unwrap().unwrap();
            assert_eq!((back, k, sig), (rec, key, vec![9; 64]));
        }
    }
}
