//! Documents as bytes, for what the real encoder cannot produce: change
//! vectors out of order or with zero etags, ids and collections that are not
//! UTF-8, counts that do not match what follows. The layout is the one of
//! docs/protocol.md §3 (fixed-width little-endian integers, written with
//! `outpost::codec::Put`).

use outpost::codec::Put;
use outpost::sync::WireDoc;
use outpost::{ChangeVector, DbId, RawVersion};

/// One version as bytes.
#[derive(Clone, Debug, Default)]
pub struct RawVer {
    /// Flags (bit 0: deleted).
    pub flags: u8,
    /// Last modified, ms since the Unix epoch.
    pub last_modified_ms: i64,
    /// Change vector entries, sent exactly in this order.
    pub cv: Vec<([u8; 16], u64)>,
    /// The entry count written on the wire (`None`: `cv.len()`).
    pub cv_count: Option<u16>,
    /// The body bytes.
    pub body: Vec<u8>,
}

/// One document as bytes.
#[derive(Clone, Debug, Default)]
pub struct RawDoc {
    /// The id bytes (may be invalid UTF-8).
    pub id: Vec<u8>,
    /// The collection bytes (empty: none).
    pub collection: Vec<u8>,
    /// The version count written on the wire (`None`: `versions.len()`).
    pub version_count: Option<u16>,
    /// The versions.
    pub versions: Vec<RawVer>,
}

impl RawDoc {
    /// One live version with body `body` and change vector `cv`.
    pub fn new(id: &[u8], collection: &[u8], cv: &[(DbId, u64)], body: &[u8]) -> RawDoc {
        RawDoc {
            id: id.to_vec(),
            collection: collection.to_vec(),
            version_count: None,
            versions: vec![RawVer {
                flags: 0,
                last_modified_ms: now_ms(),
                cv: cv.iter().map(|(d, e)| (d.0, *e)).collect(),
                cv_count: None,
                body: body.to_vec(),
            }],
        }
    }

    /// Appends the encoded document to `w`.
    pub fn put(&self, w: &mut Vec<u8>) {
        w.put_bytes16(&self.id);
        w.put_bytes16(&self.collection);
        w.put_u16(
            self.version_count
                .unwrap_or(self.versions.len().min(usize::from(u16::MAX)) as u16),
        );
        for v in &self.versions {
            w.put_u8(v.flags);
            w.put_i64(v.last_modified_ms);
            w.put_u16(
                v.cv_count
                    .unwrap_or(v.cv.len().min(usize::from(u16::MAX)) as u16),
            );
            for (id, etag) in &v.cv {
                w.extend_from_slice(id);
                w.put_u64(*etag);
            }
            w.put_bytes32(&v.body);
        }
    }
}

/// A `Push` frame of raw documents, unsigned (a token session's: seq 0,
/// no signature); `count` overrides the document count.
pub fn push_frame(upto: u64, docs: &[RawDoc], count: Option<u32>) -> Vec<u8> {
    push_frame_signed(upto, 0, [0; 32], &[], docs, count)
}

/// A `Push` frame of raw documents with this place in the chain and
/// signature (protocol 3 layout).
pub fn push_frame_signed(
    upto: u64,
    seq: u64,
    prev: [u8; 32],
    signature: &[u8],
    docs: &[RawDoc],
    count: Option<u32>,
) -> Vec<u8> {
    let mut w = Vec::new();
    w.put_u8(6);
    w.put_u64(upto);
    w.put_u64(seq);
    w.extend_from_slice(&prev);
    w.put_bytes16(signature);
    w.put_u32(count.unwrap_or(docs.len() as u32));
    for d in docs {
        d.put(&mut w);
    }
    w
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A change vector from entries in any order (normalised by the real type:
/// sorted, zero etags dropped). Panics on more than 4,096 entries (build
/// those with [`RawDoc`]).
pub fn cv(entries: &[(DbId, u64)]) -> ChangeVector {
    ChangeVector::from_entries(entries.iter().copied()).expect("a change vector")
}

/// A live version: change vector `entries`, body bytes `body`, modified now.
pub fn live(entries: &[(DbId, u64)], body: &[u8]) -> RawVersion {
    RawVersion {
        change_vector: cv(entries),
        last_modified_ms: now_ms(),
        deleted: false,
        body: body.to_vec(),
    }
}

/// A deletion (tombstone) with change vector `entries`.
pub fn tombstone(entries: &[(DbId, u64)]) -> RawVersion {
    RawVersion {
        change_vector: cv(entries),
        last_modified_ms: now_ms(),
        deleted: true,
        body: Vec::new(),
    }
}

/// A document with one version. `collection` empty: none.
pub fn doc(id: &str, collection: &str, v: RawVersion) -> WireDoc {
    docv(id, collection, vec![v])
}

/// A document with several versions (the first is the sender's winner).
pub fn docv(id: &str, collection: &str, versions: Vec<RawVersion>) -> WireDoc {
    WireDoc {
        id: id.to_string(),
        collection: (!collection.is_empty()).then(|| collection.to_string()),
        versions,
    }
}

/// A fresh random database id (a new device).
pub fn new_db_id() -> DbId {
    DbId::random()
}
