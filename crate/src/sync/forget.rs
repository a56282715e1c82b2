//! Subject purges at the hub (`outpost-hub purge`; docs/protocol.md §3
//! "Purge", docs/security.md): the right to be forgotten.
//!
//! [`purge_subject`] removes a subject's documents (by ids, id prefixes, or
//! a field value) with the engine's physical purge, and in the same
//! transaction that removes them writes:
//! - a **marker** (`purge/marker/<n>`, [`Marker`]): its number, when, who
//!   asked, why, how many documents, the digest of their ids; never an id
//!   or a body;
//! - one **retired id** record per removed document
//!   ([`crate::db::purged_id_key`]: the id's hash → the marker): a pushed
//!   version of a retired id refuses its batch (`purged`), whatever change
//!   vector it claims, so a stale edge cannot bring the data back;
//! - the marker's number in the `owed` list of every identity whose served
//!   record ([`crate::sync::purge::Served`]) covers a removed id: its next
//!   session gets a `Purge` naming the removed ids by their hashes, and its
//!   signed receipt settles the marker;
//! - an audit entry ([`AuditSubjectPurge`]): the marker, who, why, and the
//!   hashes of what was removed.
//!
//! Then the engine erases the freed pages and the WAL (`db::purge`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::codec::{Put, Reader, get_u64, to_hex};
use crate::cv::DbId;
use crate::db::{
    AUDIT_RECORD_VERSION, AuditKind, Batch, Database, PURGED_ID_PREFIX, PurgeScope, PurgedDoc,
    Refusal, encode_record, purged_id_hash, purged_id_key,
};
use crate::doc::id_key;
use crate::error::{Error, InputError};
use crate::store::PageStore;
use crate::sync::purge::{SERVED_PREFIX, Served, parse_served_key};

/// Prefix of the marker records (`purge/marker/` then the number,
/// big-endian `u64`).
pub const MARKER_PREFIX: &[u8] = b"purge/marker/";
/// Local record holding the last marker number issued (`u64`, big-endian).
pub const LAST_MARKER_KEY: &[u8] = b"purge/last";
/// Most documents one subject purge removes (its marker names them all in
/// one order; split a larger purge).
pub const MAX_SUBJECT_DOCS: usize = 50_000;
/// Format byte of a marker record.
const MARKER_FORMAT: u8 = 1;

/// The key of marker `n`.
pub fn marker_key(n: u64) -> Vec<u8> {
    let mut k = MARKER_PREFIX.to_vec();
    k.extend_from_slice(&n.to_be_bytes());
    k
}

/// A subject purge as the hub keeps it for ever (no id, no body).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Marker {
    /// Its number (per hub database, from 1).
    pub number: u64,
    /// When (milliseconds since the epoch, the database's clock).
    pub time_ms: i64,
    /// Who asked (the operator's `--by`).
    pub by: String,
    /// Why (the operator's `--reason`, e.g. a request number).
    pub reason: String,
    /// What was asked, without values (`3 ids, 1 prefix, field patientId`).
    pub request: String,
    /// Documents removed.
    pub removed: u64,
    /// SHA-256 of the removed id keys (as [`crate::db::PurgeReport::ids_hash`]).
    pub ids_sha256: [u8; 32],
}

impl Marker {
    /// The stored bytes: format, number, time, by, reason, request (each
    /// `u16`-length-prefixed), removed, ids digest; little-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(96);
        w.put_u8(MARKER_FORMAT);
        w.put_u64(self.number);
        w.put_u64(self.time_ms as u64);
        for s in [&self.by, &self.reason, &self.request] {
            w.put_bytes16(s.as_bytes());
        }
        w.put_u64(self.removed);
        w.extend_from_slice(&self.ids_sha256);
        w
    }

    /// Decodes a stored marker (`None`: not one).
    pub fn decode(b: &[u8]) -> Option<Marker> {
        let mut r = Reader::new(b);
        if r.u8("format").ok()? != MARKER_FORMAT {
            return None;
        }
        let number = r.u64("number").ok()?;
        let time_ms = r.u64("time").ok()? as i64;
        let mut text = || String::from_utf8(r.bytes16("text").ok()?.to_vec()).ok();
        let (by, reason, request) = (text()?, text()?, text()?);
        let removed = r.u64("removed").ok()?;
        let ids_sha256 = r.array("ids").ok()?;
        (r.remaining() == 0).then_some(Marker {
            number,
            time_ms,
            by,
            reason,
            request,
            removed,
            ids_sha256,
        })
    }
}

/// The audit record of a subject purge ([`AuditKind::SubjectPurge`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditSubjectPurge {
    /// [`AUDIT_RECORD_VERSION`].
    pub v: u32,
    /// The marker's number.
    pub marker: u64,
    /// Who asked.
    pub by: String,
    /// Why.
    pub reason: String,
    /// What was asked, without values.
    pub request: String,
    /// Documents removed.
    pub removed: u64,
    /// SHA-256 of the removed id keys (hex).
    pub ids_sha256: String,
    /// Per removed document: the id's hash
    /// ([`crate::db::purged_id_hash`], hex) and the SHA-256 of its stored
    /// record (hex). Never the id, never the body.
    pub docs: Vec<[String; 2]>,
    /// The same for the output documents of index keys only the removed
    /// documents fed, removed with them and named in the order (an edge may
    /// hold them: outputs a hub shares). Absent from records before it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub index_outputs: Vec<[String; 2]>,
    /// The identities that may hold the documents and owe a receipt.
    pub owed: Vec<String>,
}

/// What to purge: the union of `ids`, `prefixes` and the documents whose
/// body (any version) has `field` equal to the value.
#[derive(Clone, Debug, Default)]
pub struct SubjectRequest {
    /// Exact ids.
    pub ids: Vec<String>,
    /// Id prefixes (`""` is refused: that is not a subject).
    pub prefixes: Vec<String>,
    /// A top-level field and the value it must equal.
    pub field: Option<(String, Value)>,
    /// Who asks (recorded).
    pub by: String,
    /// Why (recorded).
    pub reason: String,
    /// Only count what would be removed; change nothing.
    pub dry_run: bool,
}

/// What [`purge_subject`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubjectReport {
    /// The marker written (`None`: nothing matched, or a dry run).
    pub marker: Option<u64>,
    /// Documents removed (or, in a dry run, that would be).
    pub removed: u64,
    /// The devices that owe a receipt for it ([`holder`] names).
    pub owed: Vec<String>,
    /// Free pages overwritten with zeros.
    pub pages_erased: u64,
}

fn invalid(msg: impl Into<String>) -> Error {
    InputError::InvalidArgument(msg.into()).into()
}

/// How a served record's holder is named in reports and in the audit
/// trail: `identity (device <id>)`, or `identity (devices not seen since
/// protocol 4)` for a protocol 4 record of the whole identity.
pub fn holder(identity: &str, device: Option<&DbId>) -> String {
    match device {
        Some(d) => format!("{identity} (device {d})"),
        None => format!("{identity} (devices not seen since protocol 4)"),
    }
}

/// The request in words, without its values (they may be personal data).
fn describe(req: &SubjectRequest) -> String {
    let mut parts = Vec::new();
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    if !req.ids.is_empty() {
        parts.push(plural(req.ids.len(), "id"));
    }
    if !req.prefixes.is_empty() {
        parts.push(plural(req.prefixes.len(), "prefix"));
    }
    if let Some((f, _)) = &req.field {
        parts.push(format!("field {f}"));
    }
    parts.join(", ")
}

/// The ids of live documents whose body, in any version, has `field`
/// equal to `value` (a scan: the engine has no secondary index yet).
async fn ids_with_field<S: PageStore>(
    db: &Database<S>,
    field: &str,
    value: &Value,
) -> Result<Vec<String>, Error> {
    live_ids_where(db, |d| {
        d.body.get(field) == Some(value)
            || d.conflicts.iter().any(|c| c.body.get(field) == Some(value))
    })
    .await
}

/// The ids of the live documents for which `hit` holds (one snapshot,
/// read in pages).
async fn live_ids_where<S: PageStore>(
    db: &Database<S>,
    mut hit: impl FnMut(&crate::Document) -> bool,
) -> Result<Vec<String>, Error> {
    let snap = db.snapshot();
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = snap.scan("", after.as_deref(), 1000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        out.extend(page.iter().filter(|d| hit(d)).map(|d| d.id.clone()));
    }
    Ok(out)
}

/// Removes a subject's documents at the hub and records the purge (see
/// the module docs). `now_ms` stamps the marker.
pub async fn purge_subject<S: PageStore>(
    db: &Database<S>,
    req: &SubjectRequest,
    now_ms: i64,
) -> Result<SubjectReport, Error> {
    if req.ids.is_empty() && req.prefixes.is_empty() && req.field.is_none() {
        return Err(invalid(
            "name what to purge: ids, id prefixes or a field value",
        ));
    }
    if req.prefixes.iter().any(|p| p.is_empty()) {
        return Err(invalid(
            "an empty prefix names every document: that is not a subject",
        ));
    }
    if req.by.trim().is_empty() {
        return Err(invalid("say who asks for the purge (--by)"));
    }
    for id in &req.ids {
        crate::doc::validate_id(id)?;
    }
    let mut ids = req.ids.clone();
    if let Some((f, v)) = &req.field {
        ids.extend(ids_with_field(db, f, v).await?);
    }
    let scope = PurgeScope {
        prefixes: req.prefixes.iter().map(|p| p.to_lowercase()).collect(),
        ids,
        ..PurgeScope::default()
    };
    if req.dry_run {
        let n = live_ids_where(db, |d| scope.matches(&d.id)).await?.len();
        return Ok(SubjectReport {
            removed: n as u64,
            ..SubjectReport::default()
        });
    }
    let request = describe(req);
    let marking = Marking {
        by: &req.by,
        reason: &req.reason,
        request: &request,
        subject: &|_| true,
        max_docs: MAX_SUBJECT_DOCS,
    };
    let (rep, marker, owed) = purge_marked(db, &scope, &marking, now_ms).await?;
    Ok(SubjectReport {
        marker,
        removed: rep.removed,
        owed,
        pages_erased: rep.pages_erased,
    })
}

/// How [`purge_marked`] records a purge.
pub struct Marking<'a> {
    /// Who asked (recorded).
    pub by: &'a str,
    /// Why (recorded).
    pub reason: &'a str,
    /// What was asked, without values (recorded).
    pub request: &'a str,
    /// Which of the removed documents are the subject's: retired, counted
    /// in the marker and ordered erased at the edges. The others (the
    /// prefixes of an upstream's order that narrowed this hub's scope) are
    /// only removed.
    pub subject: &'a (dyn Fn(&PurgedDoc) -> bool + Sync),
    /// Most subject documents one marker may name.
    pub max_docs: usize,
}

/// Removes what `scope` names and, in the same transaction, records the
/// subject's documents among them as a subject purge (the module docs):
/// the marker, the retired ids, the marker owed by every served record
/// that covers one, the audit entry. No subject document removed: no
/// marker. Returns the engine's report, the marker's number and the
/// holders that owe a receipt.
pub async fn purge_marked<S: PageStore>(
    db: &Database<S>,
    scope: &PurgeScope,
    m: &Marking<'_>,
    now_ms: i64,
) -> Result<(crate::db::PurgeReport, Option<u64>, Vec<String>), Error> {
    // The identities' served records as they are now: the purge's commit
    // expects each one it changes to be unchanged (a session may write
    // them meanwhile: then the purge is retried).
    for _attempt in 0..5 {
        let snap = db.snapshot();
        // (key, holder name, stored bytes) of every served record.
        let served: Vec<(Vec<u8>, String, Vec<u8>)> = snap
            .scan_locals(SERVED_PREFIX, usize::MAX)
            .await?
            .into_iter()
            .filter_map(|(k, v)| {
                let (identity, device) = parse_served_key(&k)?;
                Some((k, holder(&identity, device.as_ref()), v))
            })
            .collect();
        let last = match snap.get_local(LAST_MARKER_KEY).await? {
            None => 0,
            Some(b) => get_u64(&b, 0)
                .ok_or_else(|| invalid("the local record purge/last does not decode"))?,
        };
        let number = last
            .checked_add(1)
            .ok_or_else(|| invalid("no marker numbers left"))?;
        let mut owed_names = Vec::new();
        let mut record = |shown: &[PurgedDoc]| -> Result<Batch, Error> {
            // The subject's documents, and the output documents of index
            // keys only they fed: those are retired and named in the
            // order too (an edge may hold them: the outputs a hub shares),
            // not counted in the marker.
            let (outputs, docs): (Vec<PurgedDoc>, Vec<PurgedDoc>) =
                shown.iter().cloned().partition(|d| d.index_output);
            let docs: Vec<PurgedDoc> = docs.into_iter().filter(|d| (m.subject)(d)).collect();
            let docs = docs.as_slice();
            let mut b = Batch::new();
            if docs.is_empty() {
                // Only a narrowing's documents: nothing to mark.
                return Ok(b);
            }
            if docs.len() > m.max_docs {
                return Err(invalid(format!(
                    "this purge would remove {} documents; one purge removes at most {} (split it by prefix)",
                    docs.len(),
                    m.max_docs
                )));
            }
            let ids_sha256 = crate::db::purge_ids_hash(docs.iter().map(|d| d.key.as_slice()));
            let marker = Marker {
                number,
                time_ms: now_ms,
                by: m.by.to_string(),
                reason: m.reason.to_string(),
                request: m.request.to_string(),
                removed: docs.len() as u64,
                ids_sha256,
            };
            b.set_local(marker_key(number), Some(marker.encode()));
            b.set_local(
                LAST_MARKER_KEY.to_vec(),
                Some(number.to_le_bytes().to_vec()),
            );
            let mut rows = Vec::with_capacity(docs.len());
            for d in docs {
                let h = purged_id_hash(&d.key);
                b.set_local(purged_id_key(&h), Some(number.to_le_bytes().to_vec()));
                rows.push([to_hex(&h), to_hex(&d.record_sha256)]);
            }
            let mut output_rows = Vec::with_capacity(outputs.len());
            for d in &outputs {
                let h = purged_id_hash(&d.key);
                b.set_local(purged_id_key(&h), Some(number.to_le_bytes().to_vec()));
                output_rows.push([to_hex(&h), to_hex(&d.record_sha256)]);
            }
            for (key, name, bytes) in &served {
                let mut s = Served::decode(bytes).unwrap_or_else(Served::unknown);
                let holds = docs
                    .iter()
                    .chain(&outputs)
                    .any(|d| s.covers(&String::from_utf8_lossy(&d.key)));
                if !holds || s.owed.contains(&number) {
                    continue;
                }
                s.owed.push(number);
                b.expect_local(
                    key.clone(),
                    Some(bytes.clone()),
                    Refusal::BatchSequence { seq: number },
                );
                b.set_local(key.clone(), Some(s.encode()));
                owed_names.push(name.clone());
            }
            b.audit(
                AuditKind::SubjectPurge,
                encode_record(&AuditSubjectPurge {
                    v: AUDIT_RECORD_VERSION,
                    marker: number,
                    by: m.by.to_string(),
                    reason: m.reason.to_string(),
                    request: m.request.to_string(),
                    removed: docs.len() as u64,
                    ids_sha256: to_hex(&ids_sha256),
                    docs: rows,
                    index_outputs: output_rows,
                    owed: owed_names.clone(),
                }),
            );
            Ok(b)
        };
        let marked = std::sync::atomic::AtomicBool::new(false);
        let record = |shown: &[PurgedDoc]| {
            let b = record(shown)?;
            marked.store(!b.is_empty(), std::sync::atomic::Ordering::Relaxed);
            Ok(b)
        };
        match db.purge_recorded(scope, record).await {
            Ok(rep) => {
                let marker = marked
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .then_some(number);
                return Ok((rep, marker, owed_names));
            }
            // A session changed a served record meanwhile: read again.
            Err(Error::Refused(Refusal::BatchSequence { .. })) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(invalid(
        "the served records kept changing under the purge; try again",
    ))
}

/// Every marker of the database, by number.
pub async fn markers<S: PageStore>(db: &Database<S>) -> Result<Vec<Marker>, Error> {
    let recs = db.scan_locals(MARKER_PREFIX, usize::MAX).await?;
    Ok(recs
        .into_iter()
        .filter_map(|(_, v)| Marker::decode(&v))
        .collect())
}

/// The id hashes marker `n` retired, in ascending order.
pub async fn marker_ids<S: PageStore>(db: &Database<S>, n: u64) -> Result<Vec<[u8; 32]>, Error> {
    let recs = db.scan_locals(PURGED_ID_PREFIX, usize::MAX).await?;
    Ok(recs
        .into_iter()
        .filter(|(_, v)| get_u64(v, 0) == Some(n))
        .filter_map(|(k, _)| k[PURGED_ID_PREFIX.len()..].try_into().ok())
        .collect())
}

/// Per holder ([`holder`] name), the markers it still owes a receipt for
/// (holders that owe none are left out).
pub async fn owed<S: PageStore>(db: &Database<S>) -> Result<Vec<(String, Vec<u64>)>, Error> {
    Ok(crate::sync::driver::served_records(db)
        .await?
        .into_iter()
        .filter(|(_, _, s)| !s.owed.is_empty())
        .map(|(identity, device, s)| (holder(&identity, device.as_ref()), s.owed))
        .collect())
}

/// Whether an id key is retired, and by which marker (for tests and tools).
pub async fn retired_by<S: PageStore>(db: &Database<S>, id: &str) -> Result<Option<u64>, Error> {
    let k = purged_id_key(&purged_id_hash(&id_key(id)));
    Ok(db.get_local(&k).await?.and_then(|v| get_u64(&v, 0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_has_fixed_bytes_and_refuses_damage() {
        let m = Marker {
            number: 2,
            time_ms: 5,
            by: "d".into(),
            reason: "r".into(),
            request: "1 id".into(),
            removed: 1,
            ids_sha256: [9; 32],
        };
        let b = m.encode();
        // wasm32 and x86_64 alike: format, number, time, three strings,
        // removed, digest.
        let mut want = vec![1];
        want.extend(2u64.to_le_bytes());
        want.extend(5u64.to_le_bytes());
        want.extend([1, 0, b'd', 1, 0, b'r', 4, 0]);
        want.extend(b"1 id");
        want.extend(1u64.to_le_bytes());
        want.extend([9; 32]);
        assert_eq!(b, want);
        assert_eq!(Marker::decode(&b), Some(m));
        for k in 0..b.len() {
            assert_eq!(Marker::decode(&b[..k]), None, "truncated at {k}");
        }
        let mut longer = b.clone();
        longer.push(0);
        assert_eq!(Marker::decode(&longer), None);
        let mut future = b;
        future[0] = 2;
        assert_eq!(Marker::decode(&future), None);
        assert!(marker_key(1) < marker_key(256), "keys sort by number");
    }

    #[test]
    fn a_request_is_described_without_its_values() {
        let r = SubjectRequest {
            ids: vec!["patients/ann".into(), "x/2".into()],
            prefixes: vec!["ann/".into()],
            field: Some(("patientId".into(), serde_json::json!("ann"))),
            ..SubjectRequest::default()
        };
        let d = describe(&r);
        assert_eq!(d, "2 ids, 1 prefix, field patientId");
        assert!(!d.contains("ann"));
    }
}
