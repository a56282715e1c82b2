//! The frames of write safety `hub` (protocol version 6,
//! `docs/protocol.md` §3 and §4 "Write safety"): `Write` (edge → hub), a
//! compare-and-set of one to [`MAX_WRITE_OPS`] documents applied at the
//! hub alone, and `WriteResult` (hub → edge), its answer.

use super::{FrameError, put_str, read_str};
use crate::codec::{Put, Reader};
use crate::cv::ChangeVector;

/// Most documents in one `Write` (a small transaction).
pub const MAX_WRITE_OPS: usize = 64;

/// What a `Write` expects of a document at the hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireExpect {
    /// No condition (the write is still applied at the hub alone).
    Any,
    /// The document must not exist (a deleted one does not).
    Missing,
    /// The document's current version (its winner) has this change vector.
    Cv(ChangeVector),
}

impl WireExpect {
    /// The text the audit trail keeps: `any`, `missing`, or the vector.
    pub fn to_text(&self) -> String {
        match self {
            WireExpect::Any => "any".into(),
            WireExpect::Missing => "missing".into(),
            WireExpect::Cv(cv) => cv.to_text(),
        }
    }

    /// Appends the binary form: `u8` kind (0 any, 1 missing, 2 a vector),
    /// then the vector for kind 2.
    pub fn encode(&self, w: &mut Vec<u8>) {
        match self {
            WireExpect::Any => w.put_u8(0),
            WireExpect::Missing => w.put_u8(1),
            WireExpect::Cv(cv) => {
                w.put_u8(2);
                cv.encode(w);
            }
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<WireExpect, FrameError> {
        Ok(match r.u8("expectation")? {
            0 => WireExpect::Any,
            1 => WireExpect::Missing,
            2 => WireExpect::Cv(read_cv(r)?),
            k => return Err(FrameError::Malformed(format!("unknown expectation {k}"))),
        })
    }
}

/// One document of a `Write`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireWrite {
    /// The document id.
    pub id: String,
    /// Its collection (`None`: keep the document's current one).
    pub collection: Option<String>,
    /// What the hub must hold for the write to apply.
    pub expect: WireExpect,
    /// A deletion (no body).
    pub deleted: bool,
    /// The JSON text of the new body (empty for a deletion).
    pub body: Vec<u8>,
}

/// The hub's answer to a `Write`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteAnswer {
    /// Applied in one commit at the hub. `etag`: the hub's last etag after
    /// it (the edge holds the new versions once its pull checkpoint reaches
    /// it); `change_vectors`: per document, the new version's vector (empty
    /// for the deletion of a document that did not exist).
    Applied {
        /// The hub's last etag after the commit.
        etag: u64,
        /// The new versions' change vectors, in the order of the write.
        change_vectors: Vec<ChangeVector>,
    },
    /// An expectation did not hold: nothing was written. `current` is the
    /// document's change vector at the hub (empty: it does not exist).
    Conflict {
        /// The document whose expectation failed.
        id: String,
        /// Its change vector at the hub.
        current: ChangeVector,
    },
    /// A rule refused the write (the codes of `docs/protocol.md` §5):
    /// nothing was written.
    Refused {
        /// Stable code.
        code: String,
        /// The document named.
        id: String,
        /// The rule.
        rule: String,
        /// Explanation.
        message: String,
    },
}

/// Encodes the fields of a `Write` after its type byte.
pub(super) fn put_write(w: &mut Vec<u8>, request: u64, signature: &[u8], ops: &[WireWrite]) {
    w.put_u64(request);
    w.put_bytes16(signature);
    let n = ops.len().min(usize::from(u16::MAX));
    w.put_u16(n as u16);
    for op in &ops[..n] {
        put_str(w, &op.id);
        put_str(w, op.collection.as_deref().unwrap_or(""));
        w.put_u8(u8::from(op.deleted));
        op.expect.encode(w);
        let body: &[u8] = if op.deleted { &[] } else { &op.body };
        w.put_bytes32(body);
    }
}

/// Decodes the fields of a `Write`: `(request, signature, ops)`.
pub(super) fn read_write(r: &mut Reader<'_>) -> Result<(u64, Vec<u8>, Vec<WireWrite>), FrameError> {
    let request = r.u64("request")?;
    let signature = r.bytes16("signature")?.to_vec();
    let n = usize::from(r.u16("write count")?);
    if n == 0 || n > MAX_WRITE_OPS {
        return Err(FrameError::Malformed(format!(
            "a Write of {n} documents (1 to {MAX_WRITE_OPS})"
        )));
    }
    let mut ops = Vec::with_capacity(n);
    for _ in 0..n {
        let id = read_str(r, "doc id")?;
        let coll = read_str(r, "collection")?;
        let flags = r.u8("write flags")?;
        if flags & !1 != 0 {
            return Err(FrameError::Malformed(format!(
                "unknown write flags {flags:#04x}"
            )));
        }
        let expect = WireExpect::decode(r)?;
        let len = r.u32("body length")? as usize;
        let body = r.take(len, "body")?.to_vec();
        let deleted = flags & 1 != 0;
        if deleted && !body.is_empty() {
            return Err(FrameError::Malformed("a deletion carries a body".into()));
        }
        ops.push(WireWrite {
            id,
            collection: (!coll.is_empty()).then_some(coll),
            expect,
            deleted,
            body,
        });
    }
    Ok((request, signature, ops))
}

/// Encodes the fields of a `WriteResult` after its type byte: `u64`
/// request, `u8` status (0 applied, 1 conflict, 2 refused), then for 0 a
/// `u64` etag and `u16` count + count × change vector, for 1 `str` id and
/// a change vector, for 2 `str` code, id, rule, message.
pub(super) fn put_result(w: &mut Vec<u8>, request: u64, answer: &WriteAnswer) {
    w.put_u64(request);
    match answer {
        WriteAnswer::Applied {
            etag,
            change_vectors,
        } => {
            w.put_u8(0);
            w.put_u64(*etag);
            let n = change_vectors.len().min(MAX_WRITE_OPS);
            w.put_u16(n as u16);
            for cv in &change_vectors[..n] {
                cv.encode(w);
            }
        }
        WriteAnswer::Conflict { id, current } => {
            w.put_u8(1);
            put_str(w, id);
            current.encode(w);
        }
        WriteAnswer::Refused {
            code,
            id,
            rule,
            message,
        } => {
            w.put_u8(2);
            for s in [code, id, rule, message] {
                put_str(w, s);
            }
        }
    }
}

/// Decodes the fields of a `WriteResult`.
pub(super) fn read_result(r: &mut Reader<'_>) -> Result<(u64, WriteAnswer), FrameError> {
    let request = r.u64("request")?;
    let answer = match r.u8("write status")? {
        0 => {
            let etag = r.u64("etag")?;
            let n = usize::from(r.u16("change vector count")?);
            if n > MAX_WRITE_OPS {
                return Err(FrameError::Malformed(format!("{n} change vectors")));
            }
            let mut change_vectors = Vec::with_capacity(n);
            for _ in 0..n {
                change_vectors.push(read_cv(r)?);
            }
            WriteAnswer::Applied {
                etag,
                change_vectors,
            }
        }
        1 => WriteAnswer::Conflict {
            id: read_str(r, "id")?,
            current: read_cv(r)?,
        },
        2 => WriteAnswer::Refused {
            code: read_str(r, "code")?,
            id: read_str(r, "id")?,
            rule: read_str(r, "rule")?,
            message: read_str(r, "message")?,
        },
        s => return Err(FrameError::Malformed(format!("unknown write status {s}"))),
    };
    Ok((request, answer))
}

fn read_cv(r: &mut Reader<'_>) -> Result<ChangeVector, FrameError> {
    let (cv, used) =
        ChangeVector::decode(r.rest()).map_err(|e| FrameError::Malformed(e.to_string()))?;
    r.advance(used, "change vector")?;
    Ok(cv)
}
