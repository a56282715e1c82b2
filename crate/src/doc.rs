//! Documents: id and collection rules, metadata, and the binary record that
//! stores one version of a document.
//!
//! Record layout (all integers little-endian, fixed width):
//!
//! ```text
//! u8 format version (=1) | u8 flags | u64 etag | i64 last_modified_ms
//! | u16 id_len | id bytes | u16 coll_len | coll bytes (len 0 = none)
//! | change vector (ChangeVector::encode) | u32 body_len | body bytes
//! [ if flags & CONFLICTED: u16 n, then n concurrent versions, each
//!   u8 flags (TOMBSTONE) | i64 last_modified_ms | change vector | u32 body_len | body ]
//! [ if flags & SOURCE: u16 len | source bytes (UTF-8) ]
//! [ if flags & ARRIVALS: u16 n (= 1 + concurrent versions), then per
//!   version, the winner first: u64 arrival etag | 16-byte pushing device ]
//! ```
//!
//! The arrivals section is written by a hub for documents edges pushed
//! ([`Arrival`]): when each version reached it and which device sent it, so
//! that it can tell which versions an edge was sent (`docs/security.md`).
//!
//! The body is JSON text, empty for tombstones. A conflicted document keeps
//! its winning version in the main fields and every other concurrent version
//! (none dominated by another) after it. Decoding never panics: any
//! malformed record yields a [`RecordError`]. Byte order and bounds checks
//! come from [`crate::codec`].

use serde::ser::SerializeStruct;

use crate::codec::{Put, Reader, Truncated};
use crate::cv::ChangeVector;
use crate::error::{InputError, clip};

/// Longest document id accepted, in bytes of UTF-8.
pub const MAX_ID_BYTES: usize = 512;
/// Longest collection name accepted, in bytes of UTF-8.
pub const MAX_COLLECTION_BYTES: usize = 128;
/// Largest encoded document body accepted (bytes of JSON text).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Format version written in the first byte of every record.
const RECORD_VERSION: u8 = 1;

/// Checks a document id: non-empty, at most [`MAX_ID_BYTES`] bytes, and no
/// control characters (`char::is_control`).
pub fn validate_id(id: &str) -> Result<(), InputError> {
    let bad = |reason| InputError::InvalidId {
        id: clip(id),
        reason,
    };
    if id.is_empty() {
        return Err(bad("the id is empty"));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(bad("the id is longer than 512 bytes"));
    }
    if id.chars().any(char::is_control) {
        return Err(bad("the id contains control characters"));
    }
    Ok(())
}

/// Checks a collection name: non-empty, at most [`MAX_COLLECTION_BYTES`]
/// bytes, and no control characters.
pub fn validate_collection(name: &str) -> Result<(), InputError> {
    let bad = |reason| InputError::InvalidCollection {
        name: clip(name),
        reason,
    };
    if name.is_empty() {
        return Err(bad("the name is empty"));
    }
    if name.len() > MAX_COLLECTION_BYTES {
        return Err(bad("the name is longer than 128 bytes"));
    }
    if name.chars().any(char::is_control) {
        return Err(bad("the name contains control characters"));
    }
    Ok(())
}

/// Whether `body` passes the strict body check
/// ([`crate::body::check_body`]: a JSON object readers can parse back); use
/// `check_body` itself to learn which rule a body breaks.
pub fn is_json_object(body: &[u8]) -> bool {
    crate::body::check_body(body).is_ok()
}

/// Index key for an id: ids are case-insensitive (stored as given, looked up
/// by their lowercase form), so the key is `id.to_lowercase().into_bytes()`.
pub fn id_key(id: &str) -> Vec<u8> {
    id.to_lowercase().into_bytes()
}

/// Collection named by `@metadata.@collection` in a JSON object body, if it
/// is a string.
pub fn collection_of(body: &serde_json::Value) -> Option<&str> {
    body.get("@metadata")?.get("@collection")?.as_str()
}

/// Flags of a stored document version (bits set in one `u8`).
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug, Hash)]
pub struct DocFlags(pub u8);

impl DocFlags {
    /// The version is a deletion marker; its body is empty.
    pub const TOMBSTONE: u8 = 1;
    /// The version is one side of an unresolved conflict.
    pub const CONFLICTED: u8 = 2;
    /// The version was produced by an index rather than written by a client.
    pub const FROM_INDEX: u8 = 4;
    /// The version was received from a replication peer unchanged (the record
    /// names the peer); it is not sent back to that peer.
    pub const SOURCE: u8 = 8;
    /// The record ends with the [`Arrival`] of every version.
    pub const ARRIVALS: u8 = 16;
    /// All bits currently defined; records with other bits set are refused.
    const KNOWN: u8 =
        Self::TOMBSTONE | Self::CONFLICTED | Self::FROM_INDEX | Self::SOURCE | Self::ARRIVALS;

    /// Whether [`DocFlags::TOMBSTONE`] is set.
    pub fn is_tombstone(self) -> bool {
        self.0 & Self::TOMBSTONE != 0
    }

    /// Whether [`DocFlags::CONFLICTED`] is set.
    pub fn is_conflicted(self) -> bool {
        self.0 & Self::CONFLICTED != 0
    }

    /// Whether [`DocFlags::FROM_INDEX`] is set.
    pub fn is_from_index(self) -> bool {
        self.0 & Self::FROM_INDEX != 0
    }

    /// These flags with `bit` (one of the constants, or several or-ed)
    /// turned on or off.
    pub fn with(self, bit: u8, on: bool) -> Self {
        if on {
            DocFlags(self.0 | bit)
        } else {
            DocFlags(self.0 & !bit)
        }
    }
}

/// Metadata of a stored version.
///
/// Serializes as a JSON object:
/// `{"collection":..,"change_vector":"..","etag":..,"last_modified_ms":..,
/// "tombstone":..,"conflicted":..,"from_index":..}`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DocumentMeta {
    /// The collection of the document, if any.
    pub collection: Option<String>,
    /// The change vector of this version.
    pub change_vector: ChangeVector,
    /// The local etag of this version (position in the changes feed).
    pub etag: u64,
    /// When this version was written, in milliseconds since the Unix epoch.
    pub last_modified_ms: i64,
    /// Tombstone / conflict / index flags.
    pub flags: DocFlags,
    /// The replication peer this exact version was received from, if it was
    /// stored as received (not merged, not resolved).
    pub source: Option<String>,
}

/// Longest replication source name stored in a record, in bytes.
pub const MAX_SOURCE_BYTES: usize = 256;

/// Most concurrent versions one document may hold (winner included).
pub const MAX_VERSIONS: usize = 32;

/// One version of a document: the winner, or a concurrent (conflicting) one.
#[derive(Clone, PartialEq, Debug, serde::Serialize)]
pub struct Version {
    /// Its change vector.
    pub change_vector: ChangeVector,
    /// When it was written, in milliseconds since the Unix epoch.
    pub last_modified_ms: i64,
    /// Whether it is a deletion.
    pub deleted: bool,
    /// The JSON body; `Null` for a deletion.
    pub body: serde_json::Value,
}

/// A stored document with its bodies as JSON text (no JSON parsed): what
/// replication reads and sends.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RawDoc {
    /// The id, with its original case.
    pub id: String,
    /// The metadata of the winning version.
    pub meta: DocumentMeta,
    /// Every version, the winner first.
    pub versions: Vec<RawVersion>,
}

/// Decodes a record into a [`RawDoc`] (framing checked, JSON not parsed).
pub fn decode_raw_doc(buf: &[u8]) -> Result<RawDoc, RecordError> {
    let (id, meta, body, sibs) = decode_raw(buf)?;
    let mut versions = Vec::with_capacity(1 + sibs.len());
    versions.push(RawVersion {
        change_vector: meta.change_vector.clone(),
        last_modified_ms: meta.last_modified_ms,
        deleted: meta.flags.is_tombstone(),
        body: body.to_vec(),
    });
    versions.extend(sibs);
    Ok(RawDoc { id, meta, versions })
}

/// When a stored version reached this database and which device (edge
/// database) pushed it; recorded by hubs for what edges push.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// The etag of the write that stored it.
    pub etag: u64,
    /// The edge database that pushed it (all zeros: none, or unknown).
    pub device: crate::cv::DbId,
}

/// [`decode_raw_doc`], also checking every body with the strict body check
/// ([`crate::body::check_body`]): a body stored before the check existed
/// that readers could not parse back makes the record unreadable (what the
/// changes feed skips rather than send).
pub fn decode_raw_doc_checked(buf: &[u8]) -> Result<RawDoc, RecordError> {
    let d = decode_raw_doc(buf)?;
    check_bodies(d.versions.iter().map(|v| (v.deleted, v.body.as_slice())))?;
    Ok(d)
}

/// [`decode_record`], also checking every body as [`decode_raw_doc_checked`] does.
pub fn decode_record_checked(buf: &[u8]) -> Result<Document, RecordError> {
    let (_, meta, body, sibs) = decode_raw(buf)?;
    check_bodies(
        std::iter::once((meta.flags.is_tombstone(), body))
            .chain(sibs.iter().map(|v| (v.deleted, v.body.as_slice()))),
    )?;
    decode_record(buf)
}

/// Checks the body of every version (deleted?, body) that is not a deletion.
fn check_bodies<'a>(versions: impl Iterator<Item = (bool, &'a [u8])>) -> Result<(), RecordError> {
    for (i, (deleted, body)) in versions.enumerate() {
        if !deleted && let Err(e) = crate::body::check_body(body) {
            return Err(corrupt(format!(
                "the body of version {} breaks rule {}: {e}",
                i + 1,
                e.rule()
            )));
        }
    }
    Ok(())
}

/// A version with its body as JSON text (the engine's internal form).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RawVersion {
    /// Its change vector.
    pub change_vector: ChangeVector,
    /// When it was written, in milliseconds since the Unix epoch.
    pub last_modified_ms: i64,
    /// Whether it is a deletion (its body is then empty).
    pub deleted: bool,
    /// The JSON text of the body; empty for a deletion.
    pub body: Vec<u8>,
}

impl RawVersion {
    /// Parses the body into a [`Version`].
    pub fn to_version(&self) -> Result<Version, RecordError> {
        Ok(Version {
            change_vector: self.change_vector.clone(),
            last_modified_ms: self.last_modified_ms,
            deleted: self.deleted,
            body: if self.deleted {
                serde_json::Value::Null
            } else {
                serde_json::from_slice(&self.body)
                    .map_err(|e| corrupt(format!("bad JSON body of a conflict: {e}")))?
            },
        })
    }
}

impl serde::Serialize for DocumentMeta {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("DocumentMeta", 7)?;
        s.serialize_field("collection", &self.collection)?;
        s.serialize_field("change_vector", &self.change_vector)?;
        s.serialize_field("etag", &self.etag)?;
        s.serialize_field("last_modified_ms", &self.last_modified_ms)?;
        s.serialize_field("tombstone", &self.flags.is_tombstone())?;
        s.serialize_field("conflicted", &self.flags.is_conflicted())?;
        s.serialize_field("from_index", &self.flags.is_from_index())?;
        if let Some(src) = &self.source {
            s.serialize_field("source", src)?;
        }
        s.end()
    }
}

/// A document as returned by reads: the id as originally given, the JSON
/// body (`Null` for tombstones), and the metadata.
#[derive(Clone, PartialEq, Debug, serde::Serialize)]
pub struct Document {
    /// The id, with its original case.
    pub id: String,
    /// The JSON body; `Null` for tombstones.
    pub body: serde_json::Value,
    /// The metadata of this version.
    pub meta: DocumentMeta,
    /// The other concurrent versions of a conflicted document (empty
    /// otherwise), in a deterministic order.
    pub conflicts: Vec<Version>,
}

/// A stored record that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt document record: {0}")]
pub struct RecordError(pub String);

fn corrupt(why: impl Into<String>) -> RecordError {
    RecordError(why.into())
}

impl From<Truncated> for RecordError {
    /// A record that ends inside a field: `truncated at <field>`.
    fn from(t: Truncated) -> RecordError {
        corrupt(t.to_string())
    }
}

/// Encodes one stored version (see the module docs for the layout).
///
/// Callers pass a validated id ([`validate_id`]) and collection
/// ([`validate_collection`]) and a body within [`MAX_BODY_BYTES`]. For a
/// tombstone the body is not written. An empty collection name is stored as
/// "no collection". Should a field exceed its length prefix anyway, it is cut
/// to fit (making the record undecodable rather than misframed); this never
/// panics.
pub fn encode_record(id: &str, meta: &DocumentMeta, body_json: &[u8]) -> Vec<u8> {
    encode_record_with(id, meta, body_json, &[])
}

/// [`encode_record`] with the concurrent versions of a conflicted document.
/// The `CONFLICTED` flag is set when `siblings` is not empty (and its
/// section written whenever the flag is set); `SOURCE` follows `meta.source`.
pub fn encode_record_with(
    id: &str,
    meta: &DocumentMeta,
    body_json: &[u8],
    siblings: &[RawVersion],
) -> Vec<u8> {
    encode_record_full(id, meta, body_json, siblings, &[])
}

/// [`encode_record_with`] with the [`Arrival`] of every version (the winner
/// first; written only when `arrivals` has one per version).
pub fn encode_record_full(
    id: &str,
    meta: &DocumentMeta,
    body_json: &[u8],
    siblings: &[RawVersion],
    arrivals: &[Arrival],
) -> Vec<u8> {
    let coll = meta.collection.as_deref().unwrap_or("").as_bytes();
    let body: &[u8] = if meta.flags.is_tombstone() {
        &[]
    } else {
        body_json
    };
    let id = id.as_bytes();
    let id = &id[..id.len().min(usize::from(u16::MAX))];
    let coll = &coll[..coll.len().min(usize::from(u16::MAX))];
    let body = &body[..body.len().min(u32::MAX as usize)];
    debug_assert!(id.len() <= MAX_ID_BYTES && coll.len() <= MAX_COLLECTION_BYTES);
    let source = meta.source.as_deref().map(|s| {
        let b = s.as_bytes();
        &b[..b.len().min(MAX_SOURCE_BYTES)]
    });
    let mut flags = meta.flags.with(DocFlags::SOURCE, source.is_some()).with(
        DocFlags::CONFLICTED,
        meta.flags.is_conflicted() || !siblings.is_empty(),
    );
    if siblings.len() > usize::from(u16::MAX) {
        flags = flags.with(DocFlags::CONFLICTED, true);
    }
    let arrivals = if arrivals.len() == siblings.len() + 1 && arrivals.len() <= MAX_VERSIONS {
        arrivals
    } else {
        &[]
    };
    flags = flags.with(DocFlags::ARRIVALS, !arrivals.is_empty());
    let sib_len: usize = siblings
        .iter()
        .map(|v| 1 + 8 + v.change_vector.encoded_len() + 4 + v.body.len())
        .sum();
    let mut out = Vec::with_capacity(
        1 + 1
            + 8
            + 8
            + 2
            + id.len()
            + 2
            + coll.len()
            + meta.change_vector.encoded_len()
            + 4
            + body.len()
            + 2
            + sib_len
            + 2
            + source.map_or(0, <[u8]>::len)
            + 2
            + arrivals.len() * 24,
    );
    out.put_u8(RECORD_VERSION);
    out.put_u8(flags.0);
    out.put_u64(meta.etag);
    out.put_i64(meta.last_modified_ms);
    out.put_bytes16(id);
    out.put_bytes16(coll);
    meta.change_vector.encode(&mut out);
    out.put_bytes32(body);
    if flags.is_conflicted() {
        let n = siblings.len().min(usize::from(u16::MAX));
        out.put_u16(n as u16);
        for v in &siblings[..n] {
            let vb: &[u8] = if v.deleted { &[] } else { &v.body };
            out.put_u8(if v.deleted { DocFlags::TOMBSTONE } else { 0 });
            out.put_i64(v.last_modified_ms);
            v.change_vector.encode(&mut out);
            out.put_bytes32(vb);
        }
    }
    if let Some(src) = source {
        out.put_bytes16(src);
    }
    if !arrivals.is_empty() {
        out.put_u16(arrivals.len() as u16);
        for a in arrivals {
            out.put_u64(a.etag);
            out.extend_from_slice(a.device.as_bytes());
        }
    }
    out
}

/// The change vector at the reader's position.
fn read_cv(r: &mut Reader<'_>) -> Result<ChangeVector, RecordError> {
    let (cv, used) =
        ChangeVector::decode(r.rest()).map_err(|e| corrupt(format!("bad change vector: {e}")))?;
    r.advance(used, "change vector")?;
    Ok(cv)
}

/// `n` bytes of UTF-8 text at the reader's position.
fn read_str<'a>(r: &mut Reader<'a>, n: usize, what: &str) -> Result<&'a str, RecordError> {
    std::str::from_utf8(r.take(n, what)?).map_err(|_| corrupt(format!("{what} is not UTF-8")))
}

/// A record taken apart: id, meta, body bytes, concurrent versions.
pub(crate) type RawRecord<'a> = (String, DocumentMeta, &'a [u8], Vec<RawVersion>);

/// Decodes everything but the JSON of the bodies.
pub(crate) fn decode_raw(buf: &[u8]) -> Result<RawRecord<'_>, RecordError> {
    Ok(decode_raw_full(buf)?.0)
}

/// [`decode_raw`], with the arrivals section (empty when the record has
/// none; otherwise one per version, the winner first).
pub(crate) fn decode_raw_full(buf: &[u8]) -> Result<(RawRecord<'_>, Vec<Arrival>), RecordError> {
    let mut r = Reader::new(buf);
    let version = r.u8("version")?;
    if version != RECORD_VERSION {
        return Err(corrupt(format!("unknown format version {version}")));
    }
    let flags = r.u8("flags")?;
    if flags & !DocFlags::KNOWN != 0 {
        return Err(corrupt(format!("unknown flag bits {flags:#04x}")));
    }
    let flags = DocFlags(flags);
    let etag = r.u64("etag")?;
    let last_modified_ms = r.i64("last_modified_ms")?;
    let id_len = usize::from(r.u16("id length")?);
    let id = read_str(&mut r, id_len, "id")?.to_owned();
    let coll_len = usize::from(r.u16("collection length")?);
    let coll = read_str(&mut r, coll_len, "collection")?;
    let collection = (!coll.is_empty()).then(|| coll.to_owned());
    let change_vector = read_cv(&mut r)?;
    let body_len = r.u32("body length")? as usize;
    let body = r.take(body_len, "body")?;
    if flags.is_tombstone() && !body.is_empty() {
        return Err(corrupt("tombstone with a body"));
    }
    let mut siblings = Vec::new();
    if flags.is_conflicted() {
        let n = usize::from(r.u16("conflict count")?);
        if n >= MAX_VERSIONS {
            return Err(corrupt(format!("{n} concurrent versions")));
        }
        for _ in 0..n {
            let vf = r.u8("conflict flags")?;
            if vf & !DocFlags::TOMBSTONE != 0 {
                return Err(corrupt(format!("unknown conflict flag bits {vf:#04x}")));
            }
            let lm = r.i64("conflict last_modified_ms")?;
            let cv = read_cv(&mut r)?;
            let bl = r.u32("conflict body length")? as usize;
            let b = r.take(bl, "conflict body")?;
            let deleted = vf & DocFlags::TOMBSTONE != 0;
            if deleted && !b.is_empty() {
                return Err(corrupt("deleted conflict with a body"));
            }
            siblings.push(RawVersion {
                change_vector: cv,
                last_modified_ms: lm,
                deleted,
                body: b.to_vec(),
            });
        }
    }
    let source = if flags.0 & DocFlags::SOURCE != 0 {
        let n = usize::from(r.u16("source length")?);
        if n > MAX_SOURCE_BYTES {
            return Err(corrupt("source name too long"));
        }
        Some(read_str(&mut r, n, "source")?.to_owned())
    } else {
        None
    };
    let mut arrivals = Vec::new();
    if flags.0 & DocFlags::ARRIVALS != 0 {
        let n = usize::from(r.u16("arrival count")?);
        if n != siblings.len() + 1 {
            return Err(corrupt(format!(
                "{n} arrivals for {} versions",
                siblings.len() + 1
            )));
        }
        for _ in 0..n {
            let etag = r.u64("arrival etag")?;
            let device = crate::cv::DbId(r.array("arrival device")?);
            arrivals.push(Arrival { etag, device });
        }
    }
    if r.remaining() != 0 {
        return Err(corrupt(format!("{} trailing bytes", r.remaining())));
    }
    let meta = DocumentMeta {
        collection,
        change_vector,
        etag,
        last_modified_ms,
        flags: flags
            .with(DocFlags::SOURCE, false)
            .with(DocFlags::ARRIVALS, false),
        source,
    };
    Ok(((id, meta, body, siblings), arrivals))
}

impl Document {
    /// The `@metadata` object of the document's JSON form, as the CLI and the
    /// JS API show it: `@id`, `@collection` (if any), `@change-vector`, `@etag`,
    /// `@last-modified` (ISO 8601 UTC), and `@deleted` / `@conflicted` /
    /// `@from-index` when set.
    pub fn metadata_json(&self) -> serde_json::Map<String, serde_json::Value> {
        metadata_json(&self.id, &self.meta)
    }
}

impl RawDoc {
    /// The `@metadata` object of the winning version, as
    /// [`Document::metadata_json`] makes it.
    pub fn metadata_json(&self) -> serde_json::Map<String, serde_json::Value> {
        metadata_json(&self.id, &self.meta)
    }
}

/// The text of one JSON array holding `docs` in the shape of
/// [`Document`]'s JSON form (each winning body's members, then its
/// `@metadata`), made from the stored text without parsing it: what a
/// caller that parses JSON faster than the engine does (the bindings: one
/// `JSON.parse` in JS) reads ([`crate::db::Spliced`]). A body's keys keep
/// their stored order; a tombstone is `{}` with its `@metadata`.
///
/// The document's `@metadata` comes last, after the body's members: a
/// body that has a top-level `@metadata` of its own (the JS layer never
/// stores one; a native writer might) is outvoted, as `JSON.parse` and
/// `serde_json` keep the last of two equal keys.
///
/// `None` when a body cannot go this way: not UTF-8, or not the text of
/// exactly one object ([`crate::body::object_members`]: its first `{` is
/// closed by its last `}`, strings followed through their escapes), so
/// that no body can end its document early and add others to the array.
/// Whether the members themselves are JSON is left to the parser: a text
/// that does not parse is the caller's signal to read the documents the
/// engine's way.
pub fn spliced_array(docs: &[RawDoc]) -> Option<String> {
    let bodies: usize = docs
        .iter()
        .map(|d| d.versions.first().map_or(0, |v| v.body.len()) + 200)
        .sum();
    let mut out = String::with_capacity(2 + bodies);
    out.push('[');
    for (i, d) in docs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let body = match d.versions.first() {
            Some(v) if !v.deleted => std::str::from_utf8(&v.body).ok()?,
            _ => "{}",
        };
        let members = crate::body::object_members(body)?;
        out.push('{');
        if !members.is_empty() {
            out.push_str(members);
            out.push(',');
        }
        out.push_str("\"@metadata\":");
        out.push_str(&serde_json::to_string(&d.metadata_json()).ok()?);
        out.push('}');
    }
    out.push(']');
    Some(out)
}

/// The `@metadata` object of the document `id` whose winning version has
/// the metadata `m`.
fn metadata_json(id: &str, m: &DocumentMeta) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::Value;
    let mut meta = serde_json::Map::new();
    meta.insert("@id".into(), Value::String(id.to_string()));
    if let Some(c) = &m.collection {
        meta.insert("@collection".into(), Value::String(c.clone()));
    }
    meta.insert(
        "@change-vector".into(),
        Value::String(m.change_vector.to_string()),
    );
    meta.insert("@etag".into(), Value::from(m.etag));
    meta.insert(
        "@last-modified".into(),
        Value::String(iso_time_ms(m.last_modified_ms)),
    );
    for (on, name) in [
        (m.flags.is_tombstone(), "@deleted"),
        (m.flags.is_conflicted(), "@conflicted"),
        (m.flags.is_from_index(), "@from-index"),
    ] {
        if on {
            meta.insert(name.into(), Value::Bool(true));
        }
    }
    meta
}

/// Milliseconds since the Unix epoch as an RFC 3339 UTC timestamp
/// (`2026-11-22T10:36:00.123Z`).
pub fn iso_time_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day)
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Decodes a record fully, parsing its JSON body (`Null` for tombstones).
/// Any truncation, unknown version or flag bits, bad UTF-8, bad change
/// vector, trailing bytes or bad JSON is an error; it never panics.
pub fn decode_record(buf: &[u8]) -> Result<Document, RecordError> {
    let (id, meta, body, siblings) = decode_raw(buf)?;
    document_of(id, meta, body, &siblings)
}

impl RawDoc {
    /// Parses the bodies: the [`Document`] [`decode_record`] makes of the
    /// same record (an error for a body that is not JSON).
    pub fn into_document(self) -> Result<Document, RecordError> {
        let mut versions = self.versions.into_iter();
        let winner = versions.next().map(|v| v.body).unwrap_or_default();
        let siblings: Vec<RawVersion> = versions.collect();
        document_of(self.id, self.meta, &winner, &siblings)
    }
}

/// The document of a decoded record's parts, its JSON parsed.
fn document_of(
    id: String,
    meta: DocumentMeta,
    body: &[u8],
    siblings: &[RawVersion],
) -> Result<Document, RecordError> {
    let body = if meta.flags.is_tombstone() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(body).map_err(|e| corrupt(format!("bad JSON body: {e}")))?
    };
    let conflicts = siblings
        .iter()
        .map(RawVersion::to_version)
        .collect::<Result<_, _>>()?;
    Ok(Document {
        id,
        body,
        meta,
        conflicts,
    })
}

/// The etag of a record, read from its fixed header without decoding the
/// rest (the full decode checks the rest when the document is read).
pub(crate) fn record_etag(buf: &[u8]) -> Result<u64, RecordError> {
    let mut r = Reader::new(buf);
    let version = r.u8("version")?;
    if version != RECORD_VERSION {
        return Err(corrupt(format!("unknown format version {version}")));
    }
    r.u8("flags")?;
    Ok(r.u64("etag")?)
}

/// Decodes only the id and metadata, without parsing the JSON body (the
/// framing, including the body length, is still checked). Used on hot paths.
pub fn decode_record_meta(buf: &[u8]) -> Result<(String, DocumentMeta), RecordError> {
    let (id, meta, _, _) = decode_raw(buf)?;
    Ok((id, meta))
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::cv::DbId;
    use proptest::prelude::*;
    use serde_json::json;

    fn meta(collection: Option<&str>, flags: DocFlags) -> DocumentMeta {
        DocumentMeta {
            collection: collection.map(str::to_owned),
            change_vector: ChangeVector::from_entries([(DbId([1; 16]), 5), (DbId([2; 16]), 9)])
                .unwrap(),
            etag: 42,
            last_modified_ms: -1_700_000_000_123,
            flags,
            source: None,
        }
    }

    #[test]
    fn arrivals_roundtrip_and_are_checked() {
        let m = meta(Some("Users"), DocFlags::default());
        let sib = vec![RawVersion {
            change_vector: ChangeVector::from_entries([(DbId([3; 16]), 7)]).unwrap(),
            last_modified_ms: 5,
            deleted: false,
            body: br#"{"a":2}"#.to_vec(),
        }];
        let arr = [
            Arrival {
                etag: 42,
                device: DbId([9; 16]),
            },
            Arrival {
                etag: 40,
                device: DbId([0; 16]),
            },
        ];
        let rec = encode_record_full("u/1", &m, br#"{"a":1}"#, &sib, &arr);
        let ((_, meta, _, sibs), got) = decode_raw_full(&rec).unwrap();
        assert_eq!(got, arr);
        assert_eq!(sibs, sib);
        assert_eq!(meta.flags.0 & DocFlags::ARRIVALS, 0);
        // A record without the section decodes with none.
        let plain = encode_record_with("u/1", &m, br#"{"a":1}"#, &sib);
        assert!(decode_raw_full(&plain).unwrap().1.is_empty());
        // The wrong number is not written, and refused when read.
        let rec = encode_record_full("u/1", &m, br#"{"a":1}"#, &sib, &arr[..1]);
        assert_eq!(rec, plain);
        let mut bad = encode_record_full("u/1", &m, br#"{"a":1}"#, &sib, &arr);
        let at = bad.len() - 2 * 24 - 2;
        bad[at] = 3;
        assert!(decode_raw_full(&bad).is_err());
    }

    #[test]
    fn conflicts_and_source_roundtrip() {
        let mut m = meta(Some("Users"), DocFlags::default());
        m.source = Some("hub".into());
        let sib = vec![
            RawVersion {
                change_vector: ChangeVector::from_entries([(DbId([3; 16]), 7)]).unwrap(),
                last_modified_ms: 5,
                deleted: false,
                body: br#"{"a":2}"#.to_vec(),
            },
            RawVersion {
                change_vector: ChangeVector::from_entries([(DbId([4; 16]), 1)]).unwrap(),
                last_modified_ms: 6,
                deleted: true,
                body: Vec::new(),
            },
        ];
        let rec = encode_record_with("u/1", &m, br#"{"a":1}"#, &sib);
        let d = decode_record(&rec).unwrap();
        assert!(d.meta.flags.is_conflicted());
        assert_eq!(d.meta.source.as_deref(), Some("hub"));
        assert_eq!(d.conflicts.len(), 2);
        assert_eq!(d.conflicts[0].body, json!({"a": 2}));
        assert!(d.conflicts[1].deleted);
        let (_, _, body, raw) = decode_raw(&rec).unwrap();
        assert_eq!(body, br#"{"a":1}"#);
        assert_eq!(raw, sib);
        for k in 0..rec.len() {
            assert!(decode_record_meta(&rec[..k]).is_err(), "len {k}");
        }
    }

    #[test]
    fn id_validation() {
        assert!(matches!(validate_id(""), Err(InputError::InvalidId { .. })));
        assert!(validate_id(&"a".repeat(512)).is_ok());
        assert!(validate_id(&"a".repeat(513)).is_err());
        // 2-byte chars: 256 of them = 512 bytes ok, 257 too long.
        assert!(validate_id(&"é".repeat(256)).is_ok());
        assert!(validate_id(&"é".repeat(257)).is_err());
        for bad in ["a\nb", "a\0", "\u{7f}", "x\u{85}y", "tab\t"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
        for ok in ["users/1", "Ünïcödé/日本語", "a b", "emoji🎉"] {
            assert!(validate_id(ok).is_ok(), "{ok:?}");
        }
        let long = "x".repeat(1000);
        match validate_id(&long) {
            Err(InputError::InvalidId { id, .. }) => assert!(id.chars().count() <= 101),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn collection_validation() {
        assert!(matches!(
            validate_collection(""),
            Err(InputError::InvalidCollection { .. })
        ));
        assert!(validate_collection(&"c".repeat(128)).is_ok());
        assert!(validate_collection(&"c".repeat(129)).is_err());
        assert!(validate_collection("a\nb").is_err());
        assert!(validate_collection("Patients").is_ok());
    }

    #[test]
    fn id_key_lowercases() {
        assert_eq!(id_key("Users/ABC"), b"users/abc".to_vec());
        assert_eq!(id_key("ÜBER"), "über".as_bytes().to_vec());
        assert_eq!(id_key("users/abc"), id_key("USERS/ABC"));
    }

    #[test]
    fn collection_of_cases() {
        assert_eq!(
            collection_of(&json!({"@metadata": {"@collection": "Users"}, "a": 1})),
            Some("Users")
        );
        assert_eq!(
            collection_of(&json!({"@metadata": {"@collection": 5}})),
            None
        );
        assert_eq!(collection_of(&json!({"@metadata": {}})), None);
        assert_eq!(collection_of(&json!({"a": 1})), None);
        assert_eq!(collection_of(&json!([1, 2])), None);
        assert_eq!(collection_of(&json!(null)), None);
    }

    #[test]
    fn flags() {
        let f = DocFlags::default();
        assert!(!f.is_tombstone() && !f.is_conflicted() && !f.is_from_index());
        let f = f
            .with(DocFlags::TOMBSTONE, true)
            .with(DocFlags::FROM_INDEX, true);
        assert!(f.is_tombstone() && !f.is_conflicted() && f.is_from_index());
        let f = f.with(DocFlags::TOMBSTONE, false);
        assert_eq!(f, DocFlags(DocFlags::FROM_INDEX));
    }

    #[test]
    fn record_roundtrip() {
        let body = json!({"name": "Ann", "@metadata": {"@collection": "Users"}});
        let text = serde_json::to_vec(&body).unwrap();
        for (id, coll) in [("users/1", Some("Users")), ("Ünï/日本", None)] {
            let m = meta(coll, DocFlags::default().with(DocFlags::CONFLICTED, true));
            let rec = encode_record(id, &m, &text);
            let d = decode_record(&rec).unwrap();
            assert_eq!(d.id, id);
            assert_eq!(d.body, body);
            assert_eq!(d.meta, m);
            assert_eq!(decode_record_meta(&rec).unwrap(), (id.to_string(), m));
        }
    }

    #[test]
    fn tombstone_roundtrip() {
        let m = meta(Some("Users"), DocFlags(DocFlags::TOMBSTONE));
        let rec = encode_record("users/1", &m, b"{\"ignored\":1}");
        let d = decode_record(&rec).unwrap();
        assert_eq!(d.body, serde_json::Value::Null);
        assert_eq!(d.meta, m);
        // A tombstone carrying a body is corrupt.
        let mut m2 = m.clone();
        m2.flags = DocFlags(0);
        let mut rec = encode_record("users/1", &m2, b"{}");
        rec[1] = DocFlags::TOMBSTONE;
        assert!(decode_record(&rec).is_err());
    }

    #[test]
    fn every_truncation_fails() {
        let m = meta(Some("Users"), DocFlags::default());
        let rec = encode_record("users/1", &m, br#"{"a":[1,2,3]}"#);
        for k in 0..rec.len() {
            assert!(decode_record(&rec[..k]).is_err(), "len {k}");
            assert!(decode_record_meta(&rec[..k]).is_err(), "len {k}");
        }
        let mut long = rec.clone();
        long.push(0);
        assert!(decode_record(&long).is_err());
        assert!(decode_record_meta(&long).is_err());
    }

    #[test]
    fn rejects_corruptions() {
        let m = meta(None, DocFlags::default());
        let rec = encode_record("id", &m, b"{}");
        let mut v = rec.clone();
        v[0] = 2;
        assert!(
            decode_record(&v)
                .unwrap_err()
                .to_string()
                .starts_with("corrupt document record: ")
        );
        let mut v = rec.clone();
        v[1] = 0x80;
        assert!(decode_record(&v).is_err());
        // Bad UTF-8 in the id (offset 20 is the first id byte).
        let mut v = rec.clone();
        v[20] = 0xff;
        assert!(decode_record(&v).is_err());
        // Bad JSON body: meta decodes, full decode fails.
        let bad = encode_record("id", &m, b"{nope");
        assert!(decode_record_meta(&bad).is_ok());
        assert!(decode_record(&bad).is_err());
    }

    #[test]
    fn meta_serializes_readably() {
        let m = meta(Some("Users"), DocFlags(DocFlags::TOMBSTONE));
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["collection"], "Users");
        assert_eq!(v["change_vector"], m.change_vector.to_text());
        assert_eq!(v["etag"], 42);
        assert_eq!(v["tombstone"], true);
        assert_eq!(v["conflicted"], false);
        assert_eq!(v["from_index"], false);
        let d = Document {
            id: "a".into(),
            body: json!({}),
            meta: m,
            conflicts: Vec::new(),
        };
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["meta"]["etag"], 42);
    }

    proptest! {
        #[test]
        fn decode_arbitrary_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_record(&bytes);
            let _ = decode_record_meta(&bytes);
        }

        #[test]
        fn decode_mutated_never_panics(pos in 0usize..64, val in any::<u8>()) {
            let m = meta(Some("C"), DocFlags::default());
            let mut rec = encode_record("users/1", &m, br#"{"a":1}"#);
            let p = pos % rec.len();
            rec[p] = val;
            let _ = decode_record(&rec);
            let _ = decode_record_meta(&rec);
        }
    }
}
