//! Applying received versions: the merge with what is held, the conflict
//! policy, the storage caps every stored document keeps, and — for a batch an
//! untrusted edge pushed to a hub — the causality rules of
//! `docs/security.md` ("Causality"), checked inside the transaction so no
//! other session's commit can slip between the check and the write.
//!
//! The rules, for a document pushed under a [`PushGuard`]:
//! - every change-vector entry of another database is within what this
//!   database holds for it, unless the pushing peer owns that id
//!   ([`super::origins`]) or is a relay (a hub pushing its own edges'
//!   writes) introducing an id nobody owns yet; the hub's own entry is
//!   within what the session was delivered; the device's id is not another
//!   peer's;
//! - the policy is that of the stored document's collection; a pushed
//!   collection replaces it only in an informed edit (one that supersedes
//!   what the edge was delivered);
//! - a version may supersede a held one only if the edge was delivered it
//!   (the document is in its read scope and was stored at or below the
//!   etag the session acknowledged) or the document is stored as received
//!   from this very device; otherwise the held versions stay and the policy
//!   settles a conflict, or the batch is refused (`unseen_version`) where
//!   no conflict can be formed;
//! - a document the edge may not read is only ever created: an existing one
//!   that is not this device's is kept unchanged, and the answer is the same
//!   as for a create (no existence oracle);
//! - last-modified times are clamped to this database's clock.

use crate::btree;
use crate::cv::{CvOrder, DbId, MAX_CV_ENTRIES};
use crate::doc::{self, Arrival, DocFlags, DocumentMeta, MAX_VERSIONS, RawVersion};
use crate::error::Error;
use crate::merge;
use crate::policy::ConflictPolicy;
use crate::store::PageStore;

use super::alloc::WCtx;
use super::meta::Tree;
use super::origins::{self, Origin};
use super::types::{MAX_DOC_BYTES, PushGuard, Refusal, WriteOutcome, WriteResult};
use super::write::write_version;

/// One received document to apply.
pub(super) struct Received<'a> {
    pub(super) id: &'a String,
    pub(super) key: &'a [u8],
    pub(super) collection: Option<&'a str>,
    pub(super) versions: &'a [RawVersion],
    pub(super) source: Option<&'a str>,
    pub(super) policy: ConflictPolicy,
    /// The guard of a push from an untrusted edge, and whether it may read
    /// this id.
    pub(super) guard: Option<(&'a PushGuard, bool)>,
}

fn refused(r: Refusal) -> Error {
    Error::Refused(r)
}

/// Checks the caps every stored document keeps, so that no record is ever
/// written that a reader would refuse: at most [`MAX_VERSIONS`] versions, at
/// most [`MAX_CV_ENTRIES`] entries per change vector, at most
/// [`MAX_DOC_BYTES`] in all.
pub(super) fn check_caps(id: &str, versions: &[RawVersion]) -> Result<(), Error> {
    if versions.len() > MAX_VERSIONS {
        return Err(refused(Refusal::TooManyVersions {
            id: id.to_string(),
            count: versions.len(),
        }));
    }
    let mut bytes = 0usize;
    for v in versions {
        if v.change_vector.len() > MAX_CV_ENTRIES {
            return Err(refused(Refusal::ChangeVectorTooLarge {
                id: id.to_string(),
                entries: v.change_vector.len(),
            }));
        }
        bytes += v.body.len() + v.change_vector.encoded_len() + 16;
    }
    if bytes > MAX_DOC_BYTES {
        return Err(refused(Refusal::DocumentTooLarge {
            id: id.to_string(),
            bytes,
        }));
    }
    Ok(())
}

/// The causality checks of a pushed document's change vectors against the
/// origins tree (see the module docs); binds the device's id to the pusher.
async fn check_entries<S: PageStore>(
    ctx: &mut WCtx<'_, S>,
    g: &PushGuard,
    id: &str,
    versions: &[RawVersion],
    own: DbId,
) -> Result<(), Error> {
    let mine = |o: &Origin| o.owner.as_deref() == Some(g.owner.as_str());
    if g.device == own {
        return Err(refused(Refusal::DbIdTaken { db: g.device }));
    }
    match origins::get(ctx, &g.device).await? {
        Some(o) if mine(&o) => {}
        Some(o) if o.owner.is_some() => {
            return Err(refused(Refusal::DbIdTaken { db: g.device }));
        }
        other => {
            let mut o = other.unwrap_or_default();
            o.owner = Some(g.owner.clone());
            origins::set(ctx, g.device, o);
        }
    }
    for v in versions {
        for &(db, claimed) in v.change_vector.entries() {
            let held = if db == own {
                g.seen_upto
            } else if db == g.device {
                continue;
            } else {
                match origins::get(ctx, &db).await? {
                    Some(o) if mine(&o) => continue,
                    // A relay introduces the ids of the edges behind it.
                    Some(o) if o.owner.is_none() && g.relay => continue,
                    None if g.relay => continue,
                    o => o.map_or(0, |o| o.high_water),
                }
            };
            if claimed > held {
                return Err(refused(Refusal::ForgedEntry {
                    id: id.to_string(),
                    db,
                    claimed,
                    held,
                }));
            }
        }
    }
    Ok(())
}

/// The held document at `key`: its meta, every version (the winner first)
/// and their arrivals (`None` when the record has none).
async fn held<S: PageStore>(
    ctx: &mut WCtx<'_, S>,
    key: &[u8],
) -> Result<Option<(DocumentMeta, Vec<RawVersion>, Option<Vec<Arrival>>)>, Error> {
    let Some(rec) = btree::get(ctx, ctx.w.meta.root(Tree::Docs), key).await? else {
        return Ok(None);
    };
    let ((_, meta, body, sibs), arrivals) =
        doc::decode_raw_full(&rec).map_err(|e| Error::corrupt_record(key, e))?;
    let mut all = Vec::with_capacity(1 + sibs.len());
    all.push(RawVersion {
        change_vector: meta.change_vector.clone(),
        last_modified_ms: meta.last_modified_ms,
        deleted: meta.flags.is_tombstone(),
        body: body.to_vec(),
    });
    all.extend(sibs);
    let arrivals = (!arrivals.is_empty()).then_some(arrivals);
    Ok(Some((meta, all, arrivals)))
}

/// Merges received versions into the held ones and stores the result.
pub(super) async fn apply_remote<S: PageStore>(
    ctx: &mut WCtx<'_, S>,
    r: Received<'_>,
    (db, now): (DbId, i64),
) -> Result<Option<WriteResult>, Error> {
    let id = r.id;
    let (current, held_all, held_arr) = match held(ctx, r.key).await? {
        Some((m, all, arr)) => (Some(m), all, arr),
        None => (None, Vec::new(), None),
    };
    // Arrivals of the held versions: recorded, or (older records) the
    // document's etag, which is no earlier than any of them.
    let had_arrivals = held_arr.is_some();
    let held_arr = held_arr.unwrap_or_else(|| {
        let etag = current.as_ref().map_or(0, |c| c.etag);
        vec![
            Arrival {
                etag,
                device: DbId([0; 16])
            };
            held_all.len()
        ]
    });
    let clamped;
    let mut incoming = r.versions;
    let mut policy = r.policy;
    // Held versions an edge's version may not supersede: those it was not
    // sent (see the module docs). None for a trusted peer.
    let mut unknown: Vec<bool> = vec![false; held_all.len()];
    if let Some((g, readable)) = r.guard {
        // A retired id (a subject purge): refused whatever it claims.
        let root = ctx.w.meta.root(Tree::Locals);
        let retired = super::purge::purged_id_key(&super::purge::purged_id_hash(r.key));
        if let Some(v) = btree::get(ctx, root, &retired).await? {
            return Err(Error::Refused(Refusal::Purged {
                id: id.clone(),
                marker: crate::codec::get_u64(&v, 0).unwrap_or(0),
            }));
        }
        // An index's output here is this peer's own.
        let from_index = current.as_ref().is_some_and(|c| c.flags.is_from_index());
        if let Some(collection) =
            super::index::output_claimed(ctx, r.key, r.collection, from_index).await?
        {
            return Err(Error::Refused(Refusal::IndexOutput {
                id: id.clone(),
                collection,
            }));
        }
        check_entries(ctx, g, id, incoming, db).await?;
        if incoming.iter().any(|v| v.last_modified_ms > now) {
            clamped = incoming
                .iter()
                .map(|v| RawVersion {
                    last_modified_ms: v.last_modified_ms.min(now),
                    ..v.clone()
                })
                .collect::<Vec<_>>();
            incoming = &clamped;
        }
        if let Some(cur) = &current {
            policy = g.policies.of(cur.collection.as_deref());
            let own_doc = cur.source.as_deref() == Some(g.source.as_str());
            for (i, a) in held_arr.iter().enumerate() {
                let sent = readable && a.etag <= g.seen_upto;
                unknown[i] = !(own_doc || sent || a.device == g.device);
            }
            if !readable && unknown.iter().any(|&u| u) {
                // Write-only is create-only: the held document stays, and
                // the answer does not tell it exists.
                return Ok(Some(WriteResult {
                    id: id.clone(),
                    etag: cur.etag,
                    change_vector: cur.change_vector.clone(),
                    deleted: cur.flags.is_tombstone(),
                    outcome: WriteOutcome::Kept,
                }));
            }
        }
    }
    let m = merge::merge(&held_all, incoming);
    if !m.changed {
        return Ok(None);
    }
    let etag = ctx.w.meta.last_etag + 1;
    let unseen_superseded: Vec<usize> = (0..held_all.len())
        .filter(|&i| {
            unknown[i]
                && incoming
                    .iter()
                    .any(|v| v.change_vector.compare(&held_all[i].change_vector) == CvOrder::Newer)
        })
        .collect();
    let (versions, outcome, source) = if unseen_superseded.is_empty() {
        settle(&m, current.as_ref(), r.source, policy, (db, etag, now))
    } else {
        unseen(
            id,
            &held_all,
            incoming,
            &unseen_superseded,
            policy,
            (db, etag, now),
        )?
    };
    check_caps(id, &versions)?;
    // The collection: a trusted peer's, or the held one's when it names none;
    // an edge's only in an informed edit that replaced everything held.
    let informed = !unknown.iter().any(|&u| u) && outcome == WriteOutcome::Applied;
    let collection = match (&current, r.guard) {
        (Some(c), Some(_)) if !informed => c.collection.clone(),
        _ => r
            .collection
            .map(str::to_string)
            .or_else(|| current.as_ref().and_then(|c| c.collection.clone())),
    };
    if r.guard.is_some() {
        // Deletion guards (the hub's, from its own record; never the
        // edge's): a pushed deletion of a document of a guarded collection,
        // or a move out of it, refuses the batch.
        let held_coll = current
            .as_ref()
            .filter(|c| !c.flags.is_tombstone())
            .and_then(|c| c.collection.as_deref());
        let deletes = incoming.iter().any(|v| v.deleted);
        let coll = held_coll.or(r.collection);
        let moved =
            held_coll.is_some() && !super::write::same_collection(held_coll, collection.as_deref());
        if (deletes || moved) && super::write::deletion_guards(ctx).await?.protects(coll) {
            return Err(Error::Refused(Refusal::DeleteForbidden {
                id: id.clone(),
                collection: coll.unwrap_or_default().to_string(),
            }));
        }
    }
    let introduced_by = r.guard.map(|(g, _)| g.owner.as_str()).or(r.source);
    for v in incoming {
        origins::record(ctx, &v.change_vector, db, introduced_by).await?;
    }
    // Arrivals: kept for held versions, this write for the others (with the
    // pushing device for an edge's own versions).
    let arrivals: Vec<Arrival> = if r.guard.is_some() || had_arrivals {
        let device = r.guard.map_or(DbId([0; 16]), |(g, _)| g.device);
        versions
            .iter()
            .map(|v| {
                if let Some(i) = held_all
                    .iter()
                    .position(|h| h.change_vector == v.change_vector)
                {
                    held_arr[i]
                } else if incoming.iter().any(|x| x.change_vector == v.change_vector) {
                    Arrival { etag, device }
                } else {
                    Arrival {
                        etag,
                        device: DbId([0; 16]),
                    }
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    let winner = &versions[0];
    let meta = DocumentMeta {
        collection,
        change_vector: winner.change_vector.clone(),
        etag,
        last_modified_ms: winner.last_modified_ms,
        flags: DocFlags::default()
            .with(DocFlags::TOMBSTONE, winner.deleted)
            .with(DocFlags::CONFLICTED, versions.len() > 1),
        source: source.map(str::to_string),
    };
    let rec = doc::encode_record_full(id, &meta, &winner.body, &versions[1..], &arrivals);
    write_version(ctx, r.key, &rec, current.as_ref(), &meta).await?;
    Ok(Some(WriteResult {
        id: id.clone(),
        etag,
        change_vector: meta.change_vector,
        deleted: winner.deleted,
        outcome,
    }))
}

type Settled<'a> = (Vec<RawVersion>, WriteOutcome, Option<&'a str>);

/// The usual outcome of a merge: applied as received, a conflict kept, or
/// a conflict settled by the policy with a resolution.
fn settle<'a>(
    m: &merge::Merged,
    current: Option<&DocumentMeta>,
    source: Option<&'a str>,
    policy: ConflictPolicy,
    (db, etag, now): (DbId, u64, i64),
) -> Settled<'a> {
    // The result keeps the source tag when every version in it came from
    // that source: the versions received now, and the held ones if they too
    // were stored as received from it. That peer holds them all (or newer),
    // so they are not sent back to it; in particular an edge does not push
    // back a conflict it merged from versions its hub sent (a read-only edge
    // would get `write_denied` for a document it never touched).
    let held_from_source =
        source.is_some() && current.is_some_and(|c| c.source.as_deref() == source);
    let all_from_source = m.from_incoming.len() == m.versions.len() || held_from_source;
    let source = if all_from_source { source } else { None };
    if m.versions.len() == 1 {
        return (m.versions.clone(), WriteOutcome::Applied, source);
    }
    if policy == ConflictPolicy::Manual {
        return (m.versions.clone(), WriteOutcome::Conflict, source);
    }
    let w = match policy {
        ConflictPolicy::HubWins => m.held_winner.unwrap_or(0),
        _ => m.from_incoming.first().copied().unwrap_or(0),
    };
    (
        vec![resolution(&m.versions, w, (db, etag, now))],
        WriteOutcome::Resolved,
        None,
    )
}

/// A version superseding every one of `all`, with the body of `all[w]`.
fn resolution(all: &[RawVersion], w: usize, (db, etag, now): (DbId, u64, i64)) -> RawVersion {
    let mut cv = all[0].change_vector.clone();
    for v in &all[1..] {
        cv = cv.merge(&v.change_vector);
    }
    RawVersion {
        change_vector: cv.with(db, etag),
        last_modified_ms: now,
        deleted: all[w].deleted,
        body: all[w].body.clone(),
    }
}

/// An edge's version claims to supersede held versions it was never sent
/// (`superseded`): those are not dropped. `latest` and `hub-wins` settle the conflict with
/// a resolution (whose vector covers every version, so it supersedes them
/// everywhere); `manual` keeps the held versions, those the edge claimed to
/// supersede re-stamped with this database's entry so that they stay
/// concurrent with the edge's version everywhere they replicate — or, when
/// that cannot form a conflict, refuses the batch.
fn unseen<'a>(
    id: &str,
    held: &[RawVersion],
    incoming: &[RawVersion],
    superseded: &[usize],
    policy: ConflictPolicy,
    (db, etag, now): (DbId, u64, i64),
) -> Result<Settled<'a>, Error> {
    let fresh: Vec<&RawVersion> = incoming
        .iter()
        .filter(|v| {
            !held.iter().any(|h| {
                matches!(
                    h.change_vector.compare(&v.change_vector),
                    CvOrder::Equal | CvOrder::Newer
                )
            })
        })
        .collect();
    if policy != ConflictPolicy::Manual {
        let mut all: Vec<RawVersion> = held.to_vec();
        let first_fresh = all.len();
        all.extend(fresh.into_iter().cloned());
        let w = if policy == ConflictPolicy::HubWins {
            0
        } else {
            first_fresh.min(all.len() - 1)
        };
        return Ok((
            vec![resolution(&all, w, (db, etag, now))],
            WriteOutcome::Resolved,
            None,
        ));
    }
    // Held versions the edge's versions legitimately supersede are dropped
    // as in any merge; those it was not sent stay, re-stamped.
    let mut all: Vec<RawVersion> = held
        .iter()
        .enumerate()
        .filter(|(i, h)| {
            superseded.contains(i)
                || !incoming
                    .iter()
                    .any(|v| v.change_vector.compare(&h.change_vector) == CvOrder::Newer)
        })
        .map(|(i, h)| {
            let mut h = h.clone();
            if superseded.contains(&i) {
                h.change_vector = h.change_vector.with(db, etag);
            }
            h
        })
        .collect();
    all.extend(fresh.into_iter().cloned());
    for i in 0..all.len() {
        for j in i + 1..all.len() {
            if all[i].change_vector.compare(&all[j].change_vector) != CvOrder::Concurrent {
                return Err(refused(Refusal::UnseenVersion { id: id.to_string() }));
            }
        }
    }
    merge::sort(&mut all);
    Ok((all, WriteOutcome::Conflict, None))
}
