//! The document lists of `Changes` and `Push` frames (`docs/protocol.md`
//! §3): each document's id, collection and versions, and the encoding of
//! a page of the changes feed for every session that shares it
//! (`crate::sync::feed`).

use super::{Frame, FrameError, WireDoc, put_str, read_str};
use crate::codec::{Put, Reader};
use crate::cv::ChangeVector;
use crate::doc::{MAX_VERSIONS, RawVersion};

pub(super) fn put_docs(w: &mut Vec<u8>, docs: &[WireDoc]) {
    w.put_u32(docs.len() as u32);
    for d in docs {
        put_doc(w, d);
    }
}

pub(super) fn read_docs(r: &mut Reader<'_>) -> Result<Vec<WireDoc>, FrameError> {
    let n = r.u32("doc count")? as usize;
    // Each doc takes at least 2+2+2+(1+8+2+4) bytes.
    if n > r.remaining() / 21 {
        return Err(FrameError::Malformed(format!(
            "{n} documents cannot fit in {} bytes",
            r.remaining()
        )));
    }
    let mut docs = Vec::with_capacity(n);
    for _ in 0..n {
        docs.push(read_doc(r)?);
    }
    Ok(docs)
}

fn put_doc(w: &mut Vec<u8>, d: &WireDoc) {
    put_doc_parts(w, &d.id, d.collection.as_deref(), &d.versions);
}

/// The `docs` part of a `Changes` frame (count, then each document) for
/// documents of the changes feed as read, without copying them into
/// [`WireDoc`]s first (`crate::sync::feed`).
pub(crate) fn encode_raw_docs(docs: &[crate::doc::RawDoc]) -> Vec<u8> {
    let len: usize = docs
        .iter()
        .map(|d| doc_encoded_len(&d.id, d.meta.collection.as_deref(), &d.versions))
        .sum();
    let mut w = Vec::with_capacity(4 + len);
    w.put_u32(docs.len() as u32);
    for d in docs {
        put_doc_parts(&mut w, &d.id, d.meta.collection.as_deref(), &d.versions);
    }
    w
}

/// The bytes of `Frame::Changes { upto, docs }` whose `docs` part is
/// `encoded_docs` (as [`encode_raw_docs`] made it): byte for byte what
/// [`Frame::encode`] gives.
pub(crate) fn changes_bytes(upto: u64, encoded_docs: &[u8]) -> Vec<u8> {
    let mut w = Vec::with_capacity(1 + 8 + encoded_docs.len());
    w.put_u8(
        Frame::Changes {
            upto: 0,
            docs: Vec::new(),
        }
        .type_byte(),
    );
    w.put_u64(upto);
    w.extend_from_slice(encoded_docs);
    w
}

/// Encoded size of one document of a `docs` list ([`WireDoc::encoded_len`]).
pub(crate) fn doc_encoded_len(
    id: &str,
    collection: Option<&str>,
    versions: &[RawVersion],
) -> usize {
    2 + id.len()
        + 2
        + collection.map_or(0, str::len)
        + 2
        + versions
            .iter()
            .map(|v| 1 + 8 + v.change_vector.encoded_len() + 4 + v.body.len())
            .sum::<usize>()
}

fn put_doc_parts(w: &mut Vec<u8>, id: &str, collection: Option<&str>, versions: &[RawVersion]) {
    put_str(w, id);
    put_str(w, collection.unwrap_or(""));
    let n = versions.len().min(usize::from(u16::MAX));
    w.put_u16(n as u16);
    for v in &versions[..n] {
        w.put_u8(u8::from(v.deleted));
        w.put_i64(v.last_modified_ms);
        v.change_vector.encode(w);
        let body: &[u8] = if v.deleted { &[] } else { &v.body };
        w.put_bytes32(body);
    }
}

/// One [`WireDoc`].
fn read_doc(r: &mut Reader<'_>) -> Result<WireDoc, FrameError> {
    let id = read_str(r, "doc id")?;
    let coll = read_str(r, "collection")?;
    let n = usize::from(r.u16("version count")?);
    if n == 0 || n > MAX_VERSIONS {
        return Err(FrameError::Malformed(format!(
            "document has {n} versions (1 to {MAX_VERSIONS})"
        )));
    }
    let mut versions = Vec::with_capacity(n);
    for _ in 0..n {
        let flags = r.u8("version flags")?;
        if flags & !1 != 0 {
            return Err(FrameError::Malformed(format!(
                "unknown version flags {flags:#04x}"
            )));
        }
        let last_modified_ms = r.i64("last modified")?;
        let (change_vector, used) =
            ChangeVector::decode(r.rest()).map_err(|e| FrameError::Malformed(e.to_string()))?;
        r.advance(used, "change vector")?;
        let len = r.u32("body length")? as usize;
        let body = r.take(len, "body")?.to_vec();
        let deleted = flags & 1 != 0;
        if deleted && !body.is_empty() {
            return Err(FrameError::Malformed("a deletion carries a body".into()));
        }
        versions.push(RawVersion {
            change_vector,
            last_modified_ms,
            deleted,
            body,
        });
    }
    Ok(WireDoc {
        id,
        collection: (!coll.is_empty()).then_some(coll),
        versions,
    })
}
