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
mod tests;
