//! Storage actions of the two machines over a [`Database`], shared by every
//! shell (the hub's WebSocket sessions, the native and browser edge clients,
//! the simulation tests), which perform them as the effects of the one
//! action loop, [`crate::sync::run`].

use crate::codec::{Put, get_u64};
use crate::cv::DbId;
use crate::db::{AUDIT_RECORD_VERSION, encode_record};
use crate::db::{AuditKind, AuditRefusal, Batch, Database, Refusal, WriteOutcome, purged_id_hash};
use crate::error::Error;
use crate::policy::{CollectionSet, DeletionGuards, GUARDS_KEY, HUB_OUTPUTS_KEY};
use crate::store::PageStore;
use crate::sync::compact::{
    Compaction, begin_resync, edge_compact, note_pulled, record_ack, resync_sweep, resyncing,
};
use crate::sync::edge::{EdgeAction, EdgeConfig, EdgeEvent, EdgePersisted, Rejection};
use crate::sync::feed::{FeedCache, count_in_scope, read_changes, read_changes_in};
use crate::sync::hub::{Grant, HubAction, HubEvent, HubMetric};
use crate::sync::purge::{
    PurgeOrder, SERVED_PREFIX, Served, after_receipt, identity_served_key, parse_served_key, plan,
    served_key,
};
use crate::sync::run::commit_etags;
use crate::sync::signed::GENESIS;
use crate::sync::{
    ConflictPolicy, pull_checkpoint_key, push_checkpoint_key, rejection_key, rejection_key_prefix,
};

fn u64_of(v: Option<Vec<u8>>) -> u64 {
    v.and_then(|b| get_u64(&b, 0)).unwrap_or(0)
}

/// Loads what an edge persisted for its sessions with the hub named by
/// `cfg.source`.
pub async fn load_edge_state<S: PageStore>(
    db: &Database<S>,
    cfg: &EdgeConfig,
) -> Result<EdgePersisted, Error> {
    let snap = db.snapshot();
    let rec = snap.get_local(&pull_checkpoint_key(&cfg.source)).await?;
    let checkpoint_hub = rec.as_ref().and_then(|b| {
        let id: [u8; 16] = b.get(8..24)?.try_into().ok()?;
        Some(DbId(id))
    });
    let pull_checkpoint = u64_of(rec);
    let mut rejected = std::collections::HashSet::new();
    for r in rejections(db, cfg).await? {
        rejected.insert((r.id.to_lowercase(), r.change_vector));
    }
    Ok(EdgePersisted {
        db_id: db.db_id(),
        pull_checkpoint,
        checkpoint_hub,
        rejected,
        resync_from: resyncing(db, &cfg.source).await?,
    })
}

/// The rejections an edge recorded (see [`EdgeAction::RecordRejection`]).
pub async fn rejections<S: PageStore>(
    db: &Database<S>,
    cfg: &EdgeConfig,
) -> Result<Vec<Rejection>, Error> {
    let recs = db
        .scan_locals(&rejection_key_prefix(&cfg.source), 100_000)
        .await?;
    Ok(recs
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
        .collect())
}

/// Performs an edge storage action and returns the event to feed back, if
/// any. Non-storage actions (`Send`, `Status`, `Close`, `Pushed`) return `None`
/// and are the shell's business.
pub async fn edge_storage<S: PageStore>(
    db: &Database<S>,
    cfg: &EdgeConfig,
    action: &EdgeAction,
) -> Option<EdgeEvent<'static>> {
    edge_storage_etags(db, cfg, action).await.0
}

/// [`edge_storage_etags`] for a native edge (the `outpost-client` crate's
/// sessions): the same, except that a hub's upstream link
/// ([`EdgeConfig::hub_link`]) carries out a purge order's subject purges,
/// and the ids the upstream refused as purged ([`EdgeAction::Forget`]), as
/// the hub's own subject purges ([`crate::sync::received::purge_ordered`]). Kept apart so
/// that the browser's build, which calls [`edge_storage_etags`], does not
/// carry the hub's purge bookkeeping. `now_ms` stamps a marker.
pub async fn edge_storage_native<S: PageStore>(
    db: &Database<S>,
    cfg: &EdgeConfig,
    action: &EdgeAction,
    now_ms: i64,
) -> (Option<EdgeEvent<'static>>, Option<(u64, u64)>) {
    use super::received::purge_ordered;
    match (action, &cfg.hub_link) {
        (EdgeAction::Purge { order }, Some(link)) => {
            let ev = match purge_ordered(db, cfg, link, order, now_ms).await {
                Ok(report) => EdgeEvent::PurgeDone(report),
                Err(e) => EdgeEvent::ApplyFailed(format!(
                    "purge order {} could not be carried out: {e}",
                    order.order
                )),
            };
            (Some(ev), None)
        }
        (EdgeAction::Forget { ids }, Some(link)) => {
            match purge_ordered(db, cfg, link, &forget_order(ids), now_ms).await {
                Ok(_) => (None, None),
                Err(e) => (
                    Some(EdgeEvent::ApplyFailed(format!("erasing {ids:?}: {e}"))),
                    None,
                ),
            }
        }
        _ => edge_storage_etags(db, cfg, action).await,
    }
}

/// [`edge_storage`], also returning the etags its commit assigned (see
/// [`commit_etags`]): what [`OthersCommits::own`](crate::sync::run::OthersCommits::own)
/// skips.
pub async fn edge_storage_etags<S: PageStore>(
    db: &Database<S>,
    cfg: &EdgeConfig,
    action: &EdgeAction,
) -> (Option<EdgeEvent<'static>>, Option<(u64, u64)>) {
    match action {
        EdgeAction::ReadLocal { after, max_docs } => {
            let ev = match db.changes_raw(*after, *max_docs).await {
                Ok(docs) => {
                    let complete = docs.len() < *max_docs;
                    EdgeEvent::LocalRead { docs, complete }
                }
                Err(e) => EdgeEvent::ApplyFailed(e.to_string()),
            };
            (Some(ev), None)
        }
        EdgeAction::ApplyRemote {
            docs,
            upto,
            from: _,
            hub_db_id,
        } => {
            let mut b = Batch::new();
            // What was received so far, this batch included, for compacting
            // tombstones later: every version stored as received at a local
            // etag up to the last before this commit plus one per document
            // was sent at a hub etag up to `upto` (a concurrent local write
            // takes some of those etags, and is not stored as received).
            let last = db.last_etag() + docs.len() as u64;
            if let Err(e) = note_pulled(db, &mut b, &cfg.source, hub_db_id, last, *upto).await {
                return (Some(EdgeEvent::ApplyFailed(e.to_string())), None);
            }
            super::received::apply_received(&mut b, cfg, docs, hub_db_id, *upto);
            // The record is `u64 checkpoint | 16-byte hub db id`.
            let mut v = Vec::with_capacity(24);
            v.put_u64(*upto);
            v.extend_from_slice(hub_db_id.as_bytes());
            b.set_local(pull_checkpoint_key(&cfg.source), Some(v));
            match db.commit(b).await {
                Ok(info) => (Some(EdgeEvent::Applied), commit_etags(&info)),
                Err(e) => (Some(EdgeEvent::ApplyFailed(e.to_string())), None),
            }
        }
        EdgeAction::RecordRejection(r) => {
            let mut b = Batch::new();
            b.set_local(
                rejection_key(&cfg.source, r),
                Some(serde_json::to_vec(r).unwrap_or_default()),
            );
            match db.commit(b).await {
                Ok(info) => (None, commit_etags(&info)),
                Err(e) => (Some(EdgeEvent::ApplyFailed(e.to_string())), None),
            }
        }
        EdgeAction::KeepGuards(list) => {
            match keep_guards(db, &DeletionGuards::new(list.iter().cloned())).await {
                Ok(_) => (None, None),
                Err(e) => (Some(EdgeEvent::ApplyFailed(e.to_string())), None),
            }
        }
        EdgeAction::KeepHubOutputs(list) => {
            let set = CollectionSet::new(list.iter().cloned());
            match keep_collections(db, HUB_OUTPUTS_KEY, &set).await {
                Ok(_) => (None, None),
                Err(e) => (Some(EdgeEvent::ApplyFailed(e.to_string())), None),
            }
        }
        EdgeAction::Purge { order } => {
            // The rejections recorded for the documents to erase name their
            // ids: they go first (the purge then scrubs what held them).
            if let Err(e) = forget_rejections(db, cfg, order).await {
                return (Some(EdgeEvent::ApplyFailed(e.to_string())), None);
            }
            let ev = match db.purge(&order.scope()).await {
                Ok(report) => EdgeEvent::PurgeDone(report),
                Err(e) => EdgeEvent::ApplyFailed(format!(
                    "purge order {} could not be carried out: {e}",
                    order.order
                )),
            };
            (Some(ev), None)
        }
        EdgeAction::CompactTombstones {
            horizon,
            hub_db_id,
            own,
        } => match edge_compact(db, &cfg.source, hub_db_id, *horizon, *own).await {
            Ok(_) => (None, None),
            Err(e) => (Some(EdgeEvent::ApplyFailed(e.to_string())), None),
        },
        EdgeAction::BeginResync { pushed, from } => {
            match begin_resync(db, &cfg.source, *pushed, *from).await {
                Ok(()) => (None, None),
                Err(e) => (Some(EdgeEvent::ApplyFailed(e.to_string())), None),
            }
        }
        EdgeAction::EndResync { seen, read } => {
            let swept = async {
                let rejected = rejections(db, cfg)
                    .await?
                    .into_iter()
                    .map(|r| r.id.to_lowercase())
                    .collect();
                resync_sweep(db, &cfg.source, seen.as_ref(), read, &rejected).await
            };
            match swept.await {
                Ok(_) => (None, None),
                Err(e) => (
                    Some(EdgeEvent::ApplyFailed(format!("ending a resync: {e}"))),
                    None,
                ),
            }
        }
        EdgeAction::Forget { ids } => {
            let order = forget_order(ids);
            let done = match forget_rejections(db, cfg, &order).await {
                Ok(()) => db.purge(&order.scope()).await.map(|_| ()),
                Err(e) => Err(e),
            };
            match done {
                Ok(()) => (None, None),
                Err(e) => (
                    Some(EdgeEvent::ApplyFailed(format!("erasing {ids:?}: {e}"))),
                    None,
                ),
            }
        }
        _ => (None, None),
    }
}

/// The order an [`EdgeAction::Forget`] is carried out as: its ids by their
/// hashes, number 0 (no receipt).
pub(crate) fn forget_order(ids: &[String]) -> PurgeOrder {
    PurgeOrder {
        reason: "purged".into(),
        ids: ids
            .iter()
            .map(|i| purged_id_hash(&crate::doc::id_key(i)))
            .collect(),
        ..PurgeOrder::default()
    }
}

/// Deletes the recorded rejections of documents `order` erases.
pub(crate) async fn forget_rejections<S: PageStore>(
    db: &Database<S>,
    cfg: &EdgeConfig,
    order: &PurgeOrder,
) -> Result<(), Error> {
    let recs = db
        .scan_locals(&rejection_key_prefix(&cfg.source), 100_000)
        .await?;
    let scope = order.scope();
    let mut b = Batch::new();
    for (k, v) in recs {
        let Ok(r) = serde_json::from_slice::<Rejection>(&v) else {
            continue;
        };
        if scope.matches(&r.id) {
            b.set_local(k, None);
        }
    }
    if !b.is_empty() {
        db.commit(b).await?;
    }
    Ok(())
}

/// Stores `guards` as the database's deletion guards if they differ from
/// the record held (the hub's own databases: at open and at each
/// configuration change). Returns whether it wrote.
pub async fn keep_guards<S: PageStore>(
    db: &Database<S>,
    guards: &DeletionGuards,
) -> Result<bool, Error> {
    keep_collections(db, GUARDS_KEY, guards).await
}

/// Stores `set` in the local record `key` if it differs from the record
/// held. Returns whether it wrote.
async fn keep_collections<S: PageStore>(
    db: &Database<S>,
    key: &[u8],
    set: &CollectionSet,
) -> Result<bool, Error> {
    let held = db.get_local(key).await?;
    let bytes = set.encode();
    if held.as_deref() == Some(bytes.as_slice()) || (held.is_none() && set.is_empty()) {
        return Ok(false);
    }
    let mut b = Batch::new();
    b.set_local(key.to_vec(), Some(bytes));
    db.commit(b).await?;
    Ok(true)
}

/// The hub's served record of `identity`'s device `device`
/// (`crate::sync::purge`): a device with no record of its own starts from
/// the identity's protocol 4 record, if any; absent is the empty record; an
/// unreadable one is [`Served::unknown`].
pub async fn served_record<S: PageStore>(
    db: &Database<S>,
    identity: &str,
    device: &DbId,
) -> Result<Served, Error> {
    let held = match db.get_local(&served_key(identity, device)).await? {
        Some(b) => Some(b),
        None => db.get_local(&identity_served_key(identity)).await?,
    };
    Ok(match held {
        None => Served::default(),
        Some(b) => Served::decode(&b).unwrap_or_else(Served::unknown),
    })
}

/// Whether `device` would be a new device of `identity` beyond `max` served
/// records (the hub refuses it: `too_many_devices`).
pub async fn device_over_cap<S: PageStore>(
    db: &Database<S>,
    identity: &str,
    device: &DbId,
    max: u32,
) -> Result<bool, Error> {
    if db.get_local(&served_key(identity, device)).await?.is_some() {
        return Ok(false);
    }
    let prefix = format!("sync/served/{identity}/");
    let held = db.scan_locals(prefix.as_bytes(), max as usize).await?.len();
    Ok(held >= max as usize)
}

/// Every served record of the database: (identity, device (`None`: a
/// protocol 4 record of the whole identity), record).
pub async fn served_records<S: PageStore>(
    db: &Database<S>,
) -> Result<Vec<(String, Option<DbId>, Served)>, Error> {
    Ok(db
        .scan_locals(SERVED_PREFIX, usize::MAX)
        .await?
        .into_iter()
        .filter_map(|(k, v)| {
            let (identity, device) = parse_served_key(&k)?;
            Some((
                identity,
                device,
                Served::decode(&v).unwrap_or_else(Served::unknown),
            ))
        })
        .collect())
}

/// Plans an authenticated (or revoked) session of `identity` whose read
/// scope in force is `read` ([`crate::sync::purge::plan`]) and stores the
/// served record if it changed: returns the purge order to send, if any.
pub async fn plan_purge<S: PageStore>(
    db: &Database<S>,
    identity: &str,
    device: &DbId,
    read: &[String],
    revoked: bool,
) -> Result<Option<PurgeOrder>, Error> {
    let key = served_key(identity, device);
    let own = db.get_local(&key).await?.is_some();
    let old = served_record(db, identity, device).await?;
    let p = plan(&old, read, revoked);
    if p.served != old || !own {
        let mut b = Batch::new();
        b.set_local(key, Some(p.served.encode()));
        db.commit(b).await?;
    }
    let Some(mut order) = p.order else {
        return Ok(None);
    };
    // The ids of the subject purges it carries, by their hashes.
    for m in &order.markers {
        order
            .ids
            .extend(crate::sync::forget::marker_ids(db, *m).await?);
    }
    order.ids.sort_unstable();
    order.ids.dedup();
    Ok(Some(order))
}

/// What the hub knows of an edge database when it connects.
pub struct EdgeInfo {
    /// Edge etag up to which the hub holds its changes.
    pub push_checkpoint: u64,
    /// Documents inside the grant's read prefixes after `pull_from`.
    pub pending: u64,
    /// Where sending starts (the pull checkpoint, or 0 if it refers to
    /// another hub database or to etags this hub never issued).
    pub pull_from: u64,
    /// The hub's last etag.
    pub hub_last_etag: u64,
    /// Whether the edge database id belongs to another peer (or is the
    /// hub's own): the session is refused with `Error(db_id_taken)`
    /// ([`HubEvent::DbIdTaken`]).
    pub db_id_taken: bool,
    /// The last batch of the identity's chain this database accepted.
    pub batch_head: (u64, [u8; 32]),
    /// The compaction horizon, when the pull checkpoint is below it:
    /// sending starts from 0 with a `Resync` (`crate::sync::compact`).
    pub resync: Option<u64>,
}

/// Local record key of an identity's chain of signed batches at the hub
/// (value: `u64` number of the last batch accepted, then its 32-byte hash).
pub fn batch_chain_key(identity: &str) -> Vec<u8> {
    format!("sync/chain/{identity}").into_bytes()
}

fn chain_value(seq: u64, hash: &[u8; 32]) -> Vec<u8> {
    let mut v = Vec::with_capacity(40);
    v.put_u64(seq);
    v.extend_from_slice(hash);
    v
}

/// The chain head a [`batch_chain_key`] record holds (`(0, GENESIS)` when
/// absent or unreadable).
fn chain_head(v: Option<Vec<u8>>) -> (u64, [u8; 32]) {
    v.and_then(|b| {
        let seq = get_u64(&b, 0)?;
        let hash: [u8; 32] = b.get(8..40)?.try_into().ok()?;
        Some((seq, hash))
    })
    .unwrap_or((0, GENESIS))
}

/// Reads what [`HubEvent::Authorized`] needs about an authenticated edge.
pub async fn edge_info<S: PageStore>(
    db: &Database<S>,
    grant: &Grant,
    edge_db: &DbId,
    pull_checkpoint: u64,
    checkpoint_hub: &DbId,
    feed: Option<&FeedCache>,
) -> Result<EdgeInfo, Error> {
    let snap = db.snapshot();
    let pull_checkpoint = if *checkpoint_hub == db.db_id() && pull_checkpoint <= snap.last_etag() {
        pull_checkpoint
    } else {
        0
    };
    let horizon = Compaction::read(&snap).await?.horizon;
    let resync = (pull_checkpoint > 0 && pull_checkpoint < horizon).then_some(horizon);
    let pull_checkpoint = if resync.is_some() { 0 } else { pull_checkpoint };
    let push_checkpoint = u64_of(
        snap.get_local(&push_checkpoint_key(&grant.identity, edge_db))
            .await?,
    );
    let owner = format!("edge:{}", grant.identity);
    let db_id_taken = *edge_db == db.db_id()
        || snap
            .origin(edge_db)
            .await?
            .and_then(|o| o.owner)
            .is_some_and(|o| o != owner);
    // With the hub's feed cache, a narrow scope's listing is kept for the
    // session's first read.
    let pending = match feed {
        Some(feed) => {
            feed.count_in_scope(&snap, pull_checkpoint, &grant.read)
                .await?
        }
        None => count_in_scope(&snap, pull_checkpoint, &grant.read).await?,
    };
    let batch_head = chain_head(snap.get_local(&batch_chain_key(&grant.identity)).await?);
    Ok(EdgeInfo {
        push_checkpoint,
        pending,
        pull_from: pull_checkpoint,
        hub_last_etag: snap.last_etag(),
        db_id_taken,
        batch_head,
        resync,
    })
}

/// Performs a hub storage action for the session of `grant` and returns the
/// event to feed back, if any (`Authenticate`, `Send`, `Metric`, `Close` are
/// the shell's business): `ReadFailed` or `PushFailed` when the database
/// refused. Conflicts met are reported through `metric`.
///
/// Audit trail (`docs/audit.md`): an accepted batch is committed with its
/// [`AuditKind::PushAccepted`] entry; a refusal
/// ([`HubAction::RecordRefusal`]) is recorded in a commit of its own.
pub async fn hub_storage<S: PageStore>(
    db: &Database<S>,
    identity: &str,
    action: &HubAction,
    mut metric: impl FnMut(HubMetric),
) -> Option<HubEvent<'static>> {
    match action {
        HubAction::ReadChanges {
            after,
            max_docs,
            scope,
        } => Some(
            match match scope {
                Some(scope) => read_changes_in(&db.snapshot(), *after, *max_docs, scope).await,
                None => read_changes(&db.snapshot(), *after, *max_docs).await,
            } {
                Ok(read) => read.event(),
                Err(e) => HubEvent::ReadFailed(e.to_string()),
            },
        ),
        HubAction::RecordAck {
            edge_db_id,
            upto,
            now_ms,
        } => {
            let mut b = Batch::new();
            record_ack(&mut b, identity, edge_db_id, *upto, *now_ms);
            // A record that lags only delays compaction; a commit that
            // fails means the database failed, like any storage error.
            if let Err(e) = db.commit(b).await {
                return Some(HubEvent::ReadFailed(e.to_string()));
            }
            None
        }
        HubAction::ApplyPush {
            edge_db_id,
            upto,
            docs,
            guard,
            manifest,
            signed,
        } => {
            let mut b = Batch::new();
            for (d, readable) in docs {
                b.apply_pushed(d.clone(), guard.clone(), *readable);
            }
            // After the documents: `info.results` below is read per document
            // operation, in order.
            if signed.is_some() {
                // The identity's chain moves from the batch's `prev` to it,
                // or nothing of it is stored.
                let key = batch_chain_key(identity);
                let before =
                    (manifest.seq > 1).then(|| chain_value(manifest.seq - 1, &manifest.prev));
                b.expect_local(
                    key.clone(),
                    before,
                    Refusal::BatchSequence { seq: manifest.seq },
                );
                b.set_local(key, Some(chain_value(manifest.seq, &manifest.hash())));
            }
            // The audit entry of the batch: committed with it, or not at all.
            b.audit(
                AuditKind::PushAccepted,
                encode_record(&manifest.to_audit(identity, signed.as_ref())),
            );
            b.set_local(
                push_checkpoint_key(identity, edge_db_id),
                Some({
                    let mut v = Vec::with_capacity(8);
                    v.put_u64(*upto);
                    v
                }),
            );
            Some(match db.commit(b).await {
                Ok(info) => {
                    let (mut applied, mut conflicts, mut resolved) = (0u32, 0u32, 0u32);
                    for (r, (d, readable)) in info.results.iter().zip(docs) {
                        let outcome = r.as_ref().map(|w| w.outcome);
                        if !readable {
                            // The answer never depends on what the edge may
                            // not read (created, kept, merged: all "applied").
                            applied += 1;
                            if outcome == Some(WriteOutcome::Kept) {
                                metric(HubMetric::CreateOnly);
                            }
                            continue;
                        }
                        match outcome {
                            Some(WriteOutcome::Applied) => applied += 1,
                            Some(WriteOutcome::Conflict) => {
                                conflicts += 1;
                                metric(HubMetric::Conflicts(ConflictPolicy::Manual, 1));
                            }
                            Some(WriteOutcome::Resolved) => {
                                resolved += 1;
                                let p = match guard.policies.of(d.collection.as_deref()) {
                                    ConflictPolicy::Manual => ConflictPolicy::Latest,
                                    p => p,
                                };
                                metric(HubMetric::Conflicts(p, 1));
                            }
                            _ => {}
                        }
                    }
                    HubEvent::PushApplied {
                        applied,
                        conflicts,
                        resolved,
                        last_etag: db.last_etag(),
                    }
                }
                Err(Error::Refused(r)) => HubEvent::PushRefused(r),
                Err(e) => HubEvent::PushFailed(e.to_string()),
            })
        }
        HubAction::ApplyWrite {
            ops,
            manifest,
            signed,
        } => Some(
            match crate::sync::hub_write::apply(db, identity, ops, manifest, signed.as_ref()).await
            {
                Ok(answer) => HubEvent::WriteDone(answer),
                Err(e) => HubEvent::PushFailed(e.to_string()),
            },
        ),
        HubAction::RecordRefusal {
            edge_db_id,
            upto,
            code,
            id,
            rule,
            message,
        } => {
            let record = AuditRefusal {
                v: AUDIT_RECORD_VERSION,
                identity: identity.to_string(),
                device: edge_db_id.to_string(),
                upto: *upto,
                code: code.clone(),
                id: id.clone(),
                rule: rule.clone(),
                message: message.clone(),
            };
            let mut b = Batch::new();
            b.audit(AuditKind::PushRefused, encode_record(&record));
            // A failure here is the database's (it fails every later
            // write too, and the hub reopens it); the refusal itself was
            // already decided and is answered either way.
            let _ = db.commit(b).await;
            None
        }
        HubAction::RecordPurgeReceipt { receipt, signed } => {
            let mut b = Batch::new();
            let mut record = receipt.to_audit(identity, signed.as_ref());
            // The order is settled in the same commit as its receipt.
            let mut more = false;
            match served_record(db, identity, &receipt.device).await {
                Ok(old) => {
                    if let Some(new) = after_receipt(&old, receipt.order) {
                        more = !new.owed.is_empty();
                        b.set_local(served_key(identity, &receipt.device), Some(new.encode()));
                        if let Some(p) = &old.pending {
                            record.markers = p.markers.clone();
                        }
                    }
                }
                Err(e) => return Some(HubEvent::ReadFailed(e.to_string())),
            }
            b.audit(AuditKind::PurgeReceipt, encode_record(&record));
            match db.commit(b).await {
                // Markers beyond one order's share: the next order comes
                // with the next session.
                Ok(_) => more.then_some(HubEvent::MorePurgesOwed),
                Err(e) => Some(HubEvent::ReadFailed(e.to_string())),
            }
        }
        _ => None,
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::db::OpenOptions;
    use crate::store::MemoryStore;
    use futures::executor::block_on;

    #[test]
    fn the_pull_checkpoint_keeps_its_hub_id() {
        block_on(async {
            let db = Database::open(MemoryStore::new(), OpenOptions::default())
                .await
                .unwrap();
            let cfg = EdgeConfig::new("main", "e", "t");
            let hub = DbId([5; 16]);
            let st = load_edge_state(&db, &cfg).await.unwrap();
            assert_eq!((st.pull_checkpoint, st.checkpoint_hub), (0, None));
            let ev = edge_storage(
                &db,
                &cfg,
                &EdgeAction::ApplyRemote {
                    docs: Vec::new(),
                    upto: 42,
                    from: 0,
                    hub_db_id: hub,
                },
            )
            .await;
            assert!(matches!(ev, Some(EdgeEvent::Applied)));
            let st = load_edge_state(&db, &cfg).await.unwrap();
            assert_eq!((st.pull_checkpoint, st.checkpoint_hub), (42, Some(hub)));
        });
    }
}
