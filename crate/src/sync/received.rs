//! What a hub receives from its upstream hub: versions, recorded in its
//! audit trail, and purge orders, whose subject purges it carries out as
//! its own.
//!
//! A hub's upstream link (`hub/src/upstream.rs`) is an edge of another hub.
//! Its [`EdgeConfig::hub_link`] is set ([`HubLink`]), so:
//!
//! - every batch of versions it stores is recorded in the database's audit
//!   trail, in the batch's own commit: an entry of kind
//!   [`AuditKind::Upstream`] ([`AuditUpstream`]) naming the link, the
//!   upstream database's id, the upstream etag the batch covers and, per
//!   document, the versions as received (change vectors and body hashes),
//!   what storing them did, and the change vector written when it is none
//!   of those. So `outpost-hub audit who ID` on a clinic's hub names, for a
//!   version that came from the cloud, the entry that brought it; the
//!   cloud hub's own trail names who wrote it there. A batch's documents
//!   are recorded in chunks of at most [`AUDIT_CHUNK_BYTES`] of estimated
//!   record, each chunk's entry right after its documents' writes
//!   ([`Batch::audit_writes`]): a batch of many small documents cannot make
//!   one record pass the entry's limit;
//! - the documents a purge order names by their id hashes (the upstream's
//!   subject purges) are purged as a subject purge of this hub
//!   ([`purge_ordered`], `crate::sync::forget::purge_marked`): marked, their
//!   ids retired, the marker owed by every edge of this hub that may hold
//!   them, an audit entry. So the right to be forgotten reaches the edges
//!   behind a clinic's hub, which the cloud cannot reach, and none of them
//!   can push the documents back. What the order names by prefix (this
//!   hub's own scope at the upstream narrowed or revoked) is only removed,
//!   as at any edge.
//!
//! Browsers and the `outpost` tool leave it unset (edge trails are not
//! kept, and they have no edges).

use serde::{Deserialize, Serialize};

use std::collections::HashSet;

use super::EdgeConfig;
use super::forget::{Marking, purge_marked};
use super::purge::PurgeOrder;
use crate::cv::DbId;
use crate::db::{
    AUDIT_RECORD_VERSION, AuditKind, AuditVersion, Batch, Database, PurgeReport, PurgedDoc,
    RemoteDoc, WriteOutcome, WriteResult, encode_record, purged_id_hash, sha256_hex,
};
use crate::error::Error;
use crate::policy::ConflictPolicy;
use crate::store::PageStore;

/// Largest estimated record of one entry (a batch's documents beyond it go
/// to the next entry of the same commit): 8× under the entry's limit.
pub const AUDIT_CHUNK_BYTES: usize = 8 << 20;

/// Versions received from an upstream hub and stored by one commit
/// ([`AuditKind::Upstream`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditUpstream {
    /// [`AUDIT_RECORD_VERSION`].
    pub v: u32,
    /// The source tag of what the link stores (`upstream:<identity>`).
    pub source: String,
    /// The link as configured: the upstream's URL, its database and the
    /// identity this hub presents there ([`EdgeConfig::hub_link`]).
    pub link: String,
    /// The upstream database's id (its text form, as in change vectors).
    pub upstream_db: String,
    /// The upstream etag up to which this commit holds the upstream's
    /// changes (the pull checkpoint it sets).
    pub upto: u64,
    /// The documents received.
    pub docs: Vec<AuditUpstreamDoc>,
}

/// A document of an [`AuditUpstream`] entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditUpstreamDoc {
    /// Its id as received.
    pub id: String,
    /// Its collection as received.
    pub collection: Option<String>,
    /// Its versions as received.
    pub versions: Vec<AuditVersion>,
    /// What storing them did: `applied` (stored as received), `conflict`
    /// (kept beside a concurrent held version), `resolved` (the conflict
    /// policy wrote a resolution), or `held` (nothing new: nothing written).
    pub outcome: String,
    /// The change vector of the version the commit wrote when it is none
    /// of the versions as received (a conflict's or a resolution's); absent
    /// when it is one of them (`applied`) or nothing was written (`held`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub change_vector: String,
}

/// The outcome name of a received document's write (`None`: nothing
/// written).
fn outcome_name(o: Option<WriteOutcome>) -> &'static str {
    match o {
        None => "held",
        Some(WriteOutcome::Applied) => "applied",
        Some(WriteOutcome::Conflict) => "conflict",
        Some(WriteOutcome::Resolved) => "resolved",
        Some(WriteOutcome::Kept) => "kept",
        Some(WriteOutcome::Written) => "written",
    }
}

impl AuditUpstream {
    /// The [`crate::db::AuditFill`] of an upstream entry: its documents'
    /// outcomes and change vectors from the results of the writes just
    /// before it (one per document, in order).
    pub fn fill(base: &[u8], results: &[Option<WriteResult>]) -> Result<Vec<u8>, String> {
        let mut rec: AuditUpstream =
            serde_json::from_slice(base).map_err(|e| format!("its record: {e}"))?;
        let n = rec.docs.len();
        let Some(own) = results.len().checked_sub(n).map(|from| &results[from..]) else {
            return Err(format!(
                "{n} documents recorded, {} operations before the entry",
                results.len()
            ));
        };
        for (d, r) in rec.docs.iter_mut().zip(own) {
            if let Some(w) = r {
                if w.id != d.id {
                    return Err(format!("a write of {:?} where {:?} was", w.id, d.id));
                }
                let written = w.change_vector.to_text();
                if !d.versions.iter().any(|v| v.change_vector == written) {
                    d.change_vector = written;
                }
            }
            d.outcome = outcome_name(r.as_ref().map(|w| w.outcome)).into();
        }
        Ok(encode_record(&rec))
    }
}

/// A received document's record, before its commit fills in the outcome.
fn doc_record(d: &RemoteDoc) -> AuditUpstreamDoc {
    AuditUpstreamDoc {
        id: d.id.clone(),
        collection: d.collection.clone(),
        versions: d
            .versions
            .iter()
            .map(|v| AuditVersion {
                change_vector: v.change_vector.to_text(),
                deleted: v.deleted,
                body_sha256: sha256_hex(&v.body),
            })
            .collect(),
        outcome: String::new(),
        change_vector: String::new(),
    }
}

/// An upper estimate of a document record's JSON: escaping may double the
/// id's and collection's bytes; the written change vector is at most as
/// long as the received ones together plus one entry.
fn weight(r: &AuditUpstreamDoc) -> usize {
    let versions: usize = r
        .versions
        .iter()
        .map(|v| 2 * v.change_vector.len() + 140)
        .sum();
    200 + 2 * r.id.len() + 2 * r.collection.as_ref().map_or(0, String::len) + versions
}

/// A hub's upstream link ([`EdgeConfig::hub_link`]): its description, as
/// recorded, and the recording of what it receives.
#[derive(Clone)]
pub struct HubLink {
    link: String,
    /// [`add_audited`], held as a function pointer rather than called: a
    /// build that never makes a `HubLink` (the browser's wasm) then
    /// does not link the recording (about 8 KiB of its gzip size).
    add: AddFn,
}

type AddFn = fn(&mut Batch, &HubLink, &str, &[RemoteDoc], &DbId, u64);

impl HubLink {
    /// The settings of a hub's upstream link named `link` (the upstream's
    /// URL, database and the identity presented there).
    pub fn new(link: impl Into<String>) -> HubLink {
        HubLink {
            link: link.into(),
            add: add_audited,
        }
    }

    /// The link's description, as recorded.
    pub fn link(&self) -> &str {
        &self.link
    }
}

impl std::fmt::Debug for HubLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubLink").field("link", &self.link).finish()
    }
}

/// Adds the received `docs` to `b` (merged with what is held, conflicts
/// kept: [`ConflictPolicy::Manual`]), and, when `cfg` audits what it
/// receives, an [`AuditUpstream`] entry after each chunk of them.
pub(crate) fn apply_received(
    b: &mut Batch,
    cfg: &EdgeConfig,
    docs: &[RemoteDoc],
    hub_db_id: &DbId,
    upto: u64,
) {
    match &cfg.hub_link {
        Some(a) => (a.add)(b, a, &cfg.source, docs, hub_db_id, upto),
        None => {
            for d in docs {
                b.apply_remote(d.clone(), ConflictPolicy::Manual);
            }
        }
    }
}

/// [`apply_received`] with the entries.
fn add_audited(
    b: &mut Batch,
    audit: &HubLink,
    source: &str,
    docs: &[RemoteDoc],
    hub_db_id: &DbId,
    upto: u64,
) {
    let entry = |b: &mut Batch, docs: Vec<AuditUpstreamDoc>| {
        let rec = AuditUpstream {
            v: AUDIT_RECORD_VERSION,
            source: source.into(),
            link: audit.link.clone(),
            upstream_db: hub_db_id.to_string(),
            upto,
            docs,
        };
        b.audit_writes(
            AuditKind::Upstream,
            encode_record(&rec),
            AuditUpstream::fill,
        );
    };
    let mut chunk = Vec::new();
    let mut bytes = 0;
    for d in docs {
        let r = doc_record(d);
        let w = weight(&r);
        if !chunk.is_empty() && bytes + w > AUDIT_CHUNK_BYTES {
            entry(b, std::mem::take(&mut chunk));
            bytes = 0;
        }
        b.apply_remote(d.clone(), ConflictPolicy::Manual);
        chunk.push(r);
        bytes += w;
    }
    if !chunk.is_empty() {
        entry(b, chunk);
    }
}

/// Carries out an upstream's purge `order` at a hub (the module docs): the
/// rejections it erases forgotten, then one purge of its whole scope in
/// which the documents it names by id hash are recorded as a subject purge
/// of this hub. The report is the engine's, for the receipt. Order number
/// 0 stands for the ids of a push the upstream refused as purged.
pub async fn purge_ordered<S: PageStore>(
    db: &Database<S>,
    cfg: &EdgeConfig,
    link: &HubLink,
    order: &PurgeOrder,
    now_ms: i64,
) -> Result<PurgeReport, Error> {
    super::driver::forget_rejections(db, cfg, order).await?;
    let ids: HashSet<[u8; 32]> = order.ids.iter().copied().collect();
    let subject = |d: &PurgedDoc| ids.contains(&purged_id_hash(&d.key));
    let by = format!("the upstream {}", link.link);
    // Order 0: the ids of a push the upstream refused as purged
    // (`EdgeAction::Forget`).
    let reason = match order.order {
        0 => "a push it refused as purged".to_string(),
        n => format!("its purge order {n} ({})", order.reason),
    };
    let request = format!("{} ids by their hashes", order.ids.len());
    let marking = Marking {
        by: &by,
        reason: &reason,
        request: &request,
        subject: &subject,
        // The order is bounded by the frame it came in; the upstream split
        // its own purges.
        max_docs: usize::MAX,
    };
    Ok(purge_marked(db, &order.scope(), &marking, now_ms).await?.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cv::ChangeVector;

    #[test]
    fn an_upstream_entry_has_kind_9_and_a_stable_record() {
        // Kind 9 is `upstream`; an engine that predates it reads it as
        // `kind_9` and still verifies the chain.
        assert_eq!(AuditKind::from_code(9), AuditKind::Upstream);
        assert_eq!(AuditKind::Upstream.code(), 9);
        assert_eq!(AuditKind::Upstream.name(), "upstream");
        assert_eq!(AuditKind::Other(9).name(), "kind_9");
        let doc = |id: &str| AuditUpstreamDoc {
            id: id.into(),
            collection: Some("Notes".into()),
            versions: vec![AuditVersion {
                change_vector: "AAAAAAAAAAAAAAAAAAAAAA:7".into(),
                deleted: false,
                body_sha256: sha256_hex(b"{}"),
            }],
            outcome: String::new(),
            change_vector: String::new(),
        };
        let rec = AuditUpstream {
            v: AUDIT_RECORD_VERSION,
            source: "upstream:boston".into(),
            link: "wss://cloud/sync database main as boston".into(),
            upstream_db: "AAAAAAAAAAAAAAAAAAAAAA".into(),
            upto: 7,
            docs: vec![doc("notes/1"), doc("notes/2")],
        };
        let written = WriteResult {
            id: "notes/1".into(),
            etag: 3,
            change_vector: ChangeVector::from_entries([(DbId([0; 16]), 7)]).unwrap(),
            deleted: false,
            outcome: WriteOutcome::Applied,
        };
        // The results of the batch's operations before the entry end with
        // this chunk's: one per document (notes/2 was already held).
        let filled =
            AuditUpstream::fill(&encode_record(&rec), &[None, Some(written.clone()), None])
                .unwrap();
        let hash = sha256_hex(b"{}");
        let version = format!(
            r#"[{{"change_vector":"AAAAAAAAAAAAAAAAAAAAAA:7","deleted":false,"body_sha256":"{hash}"}}]"#
        );
        assert_eq!(
            String::from_utf8(filled).unwrap(),
            format!(
                r#"{{"v":1,"source":"upstream:boston","link":"wss://cloud/sync database main as boston","upstream_db":"AAAAAAAAAAAAAAAAAAAAAA","upto":7,"docs":[{{"id":"notes/1","collection":"Notes","versions":{version},"outcome":"applied"}},{{"id":"notes/2","collection":"Notes","versions":{version},"outcome":"held"}}]}}"#
            )
        );
        // Fewer results than documents, or a result of another document:
        // the commit fails rather than record what it did not write.
        assert!(AuditUpstream::fill(&encode_record(&rec), &[None]).is_err());
        assert!(AuditUpstream::fill(&encode_record(&rec), &[None, Some(written)]).is_err());
    }
}
