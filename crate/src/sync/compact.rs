//! Bounded tombstones (docs/protocol.md §4, "Tombstone compaction").
//!
//! A deletion is a version (a tombstone) so it replicates. The hub keeps a
//! tombstone until every device that could hold the document has
//! acknowledged it, then removes it ([`compact`]); an edge that could not
//! have seen it is told to resync instead of keeping (or bringing back)
//! the deleted document.
//!
//! - **Acknowledgements.** For every device (identity, edge database) it
//!   serves, the hub keeps a local record `sync/acked/<identity>/<device>`:
//!   the hub etag up to which the device acknowledged the changes feed (its
//!   pull checkpoint at the handshake, then its `ChangesAck`s) and when it
//!   was last seen. A session writes it at authentication (to the
//!   checkpoint the device states, lower than before if it went back) and
//!   then at most every [`ACK_RECORD_MS`] and when it ends. A record lags
//!   the truth, never leads it.
//! - **Watermark.** Compaction removes the plain tombstones (no concurrent
//!   version) at or below the smallest acknowledgement of the devices seen
//!   within the retention period ([`watermark`]). A device not seen for
//!   longer does not hold compaction back for ever: it is resynced when it
//!   returns.
//! - **Horizon.** The hub records the highest watermark it compacted to
//!   ([`Compaction::horizon`], local record `sync/compaction`) **before**
//!   removing anything. A device whose pull checkpoint is below the horizon
//!   (and above 0) may have missed a deletion that no longer exists as a
//!   tombstone: its session starts from 0 with a `Resync` frame (version
//!   7), and a session that started at such a checkpoint and finds the
//!   horizon above its cursor while reading ends with `Error(resync)`, so
//!   it reconnects and resyncs ([`HubEvent::ChangesRead`]'s `horizon`).
//! - **The edge's side** ([`resync_sweep`]): during a resync it notes
//!   every id the hub sends; once live, it removes (without a tombstone)
//!   the documents inside its read scope that the hub did not send and
//!   that it held from the hub or had already pushed: the hub deleted them
//!   and forgot the deletion. What it wrote and has not pushed yet stays
//!   and is pushed.
//!
//! [`HubEvent::ChangesRead`]: crate::sync::HubEvent::ChangesRead

use std::collections::HashSet;

use crate::codec::{Put, Reader};
use crate::cv::DbId;
use crate::db::{Batch, Database, PurgeScope, Snapshot};
use crate::doc::id_key;
use crate::error::Error;
use crate::store::PageStore;
use crate::sync::Prefixes;

/// Free pages below which a compaction run does not vacuum.
pub const VACUUM_MIN_FREE: u64 = 64;

/// Prefix of the acknowledgement records.
pub const ACKED_PREFIX: &[u8] = b"sync/acked/";

/// The local record holding the compaction state ([`Compaction`]).
pub const COMPACTION_KEY: &[u8] = b"sync/compaction";

/// How often at most a session rewrites its device's acknowledgement
/// record while it runs (it also does at authentication and at the end).
pub const ACK_RECORD_MS: i64 = 5_000;

/// Default retention: a device not seen for this long no longer holds
/// compaction back (it resyncs when it comes back).
pub const DEFAULT_RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;

/// Local record key of `identity`'s device `device` acknowledgement.
pub fn acked_key(identity: &str, device: &DbId) -> Vec<u8> {
    format!("sync/acked/{identity}/{device}").into_bytes()
}

/// What a device acknowledged, and when it was last seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Acked {
    /// Hub etag up to which it acknowledged the changes feed.
    pub upto: u64,
    /// When a session of it last recorded this (ms since the epoch).
    pub seen_ms: i64,
}

impl Acked {
    /// `u8` format (1), `u64` upto, `i64` seen.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(17);
        w.put_u8(1);
        w.put_u64(self.upto);
        w.put_i64(self.seen_ms);
        w
    }

    /// The record, or `None` if it is not one this build reads.
    pub fn decode(b: &[u8]) -> Option<Acked> {
        let mut r = Reader::new(b);
        if r.u8("format").ok()? != 1 {
            return None;
        }
        let a = Acked {
            upto: r.u64("upto").ok()?,
            seen_ms: r.i64("seen").ok()?,
        };
        (r.remaining() == 0).then_some(a)
    }
}

/// Adds `device`'s acknowledgement record to `b`.
pub fn record_ack(b: &mut Batch, identity: &str, device: &DbId, upto: u64, now_ms: i64) {
    let a = Acked {
        upto,
        seen_ms: now_ms,
    };
    b.set_local(acked_key(identity, device), Some(a.encode()));
}

/// The hub's compaction state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Compaction {
    /// Every plain tombstone at or below this etag may have been removed.
    pub horizon: u64,
    /// Tombstones removed so far, in all runs.
    pub removed: u64,
    /// When the last run started (ms since the epoch).
    pub last_run_ms: i64,
    /// No plain tombstone at or below this etag is left: the watermark of
    /// the last run that finished (at least the horizon once a run
    /// finished). What `Compacted` tells edges: they compact what they hold
    /// up to there.
    pub through: u64,
}

impl Compaction {
    /// `u8` format (2), `u64` horizon, `u64` removed, `i64` last run,
    /// `u64` through. Format 1 (written by builds before the vacuum) has no
    /// `through`: it reads as the horizon.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(33);
        w.put_u8(2);
        w.put_u64(self.horizon);
        w.put_u64(self.removed);
        w.put_i64(self.last_run_ms);
        w.put_u64(self.through);
        w
    }

    /// The record, or `None` if it is not one this build reads.
    pub fn decode(b: &[u8]) -> Option<Compaction> {
        let mut r = Reader::new(b);
        let format = r.u8("format").ok()?;
        if !(1..=2).contains(&format) {
            return None;
        }
        let mut c = Compaction {
            horizon: r.u64("horizon").ok()?,
            removed: r.u64("removed").ok()?,
            last_run_ms: r.i64("last run").ok()?,
            through: 0,
        };
        c.through = if format == 1 {
            c.horizon
        } else {
            r.u64("through").ok()?
        };
        (r.remaining() == 0).then_some(c)
    }

    /// The state as of `snap`. A record this build cannot read counts as a
    /// horizon at the last etag: every session resyncs rather than miss a
    /// deletion.
    pub async fn read<S: PageStore>(snap: &Snapshot<S>) -> Result<Compaction, Error> {
        Ok(match snap.get_local(COMPACTION_KEY).await? {
            None => Compaction::default(),
            Some(b) => Compaction::decode(&b).unwrap_or(Compaction {
                horizon: snap.last_etag(),
                ..Compaction::default()
            }),
        })
    }
}

/// One device's acknowledgement, as [`compact`] saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// The identity.
    pub identity: String,
    /// The device (edge database id).
    pub device: DbId,
    /// What it acknowledged.
    pub acked: Acked,
}

impl Holder {
    /// `identity/device`, as reports name it.
    pub fn name(&self) -> String {
        format!("{}/{}", self.identity, self.device)
    }
}

/// Every device's acknowledgement record.
pub async fn holders<S: PageStore>(db: &Database<S>) -> Result<Vec<Holder>, Error> {
    let mut out = Vec::new();
    for (k, v) in db.scan_locals(ACKED_PREFIX, usize::MAX).await? {
        let Some(rest) = k
            .strip_prefix(ACKED_PREFIX)
            .and_then(|r| std::str::from_utf8(r).ok())
        else {
            continue;
        };
        let Some((identity, device)) = rest.rsplit_once('/') else {
            continue;
        };
        let (Ok(device), Some(acked)) = (device.parse(), Acked::decode(&v)) else {
            continue;
        };
        out.push(Holder {
            identity: identity.to_string(),
            device,
            acked,
        });
    }
    Ok(out)
}

/// The etag compaction may go up to: the smallest acknowledgement of the
/// devices seen since `now_ms - retention_ms`, at most `last_etag`. Returns
/// it with the device that sets it (`None`: no device holds it back).
pub fn watermark(
    holders: &[Holder],
    last_etag: u64,
    now_ms: i64,
    retention_ms: i64,
) -> (u64, Option<&Holder>) {
    let since = now_ms.saturating_sub(retention_ms.max(0));
    holders
        .iter()
        .filter(|h| h.acked.seen_ms >= since && h.acked.upto < last_etag)
        .min_by_key(|h| h.acked.upto)
        .map_or((last_etag, None), |h| (h.acked.upto, Some(h)))
}

/// What a [`compact`] run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// The etag every device seen within the retention acknowledged (the
    /// tombstones at or below it are removed).
    pub watermark: u64,
    /// The device whose acknowledgement set the watermark, if any.
    pub held_back_by: Option<String>,
    /// Devices not seen within the retention period (they resync when they
    /// come back, if the horizon passed their checkpoint).
    pub expired: Vec<String>,
    /// Tombstones removed by this run.
    pub removed: u64,
    /// The horizon after the run.
    pub horizon: u64,
    /// Tombstones left in the database.
    pub tombstones_left: u64,
    /// Pages the database's store held before the run.
    pub pages_before: u64,
    /// Pages it holds after: a run that finds an eighth of the pages free
    /// (and at least [`VACUUM_MIN_FREE`]) vacuums the database
    /// ([`Database::vacuum`]), which gives the free pages back to the file
    /// system.
    pub pages_after: u64,
}

/// Removes the tombstones every device seen within `retention_ms` has
/// acknowledged (see the module docs): records the new horizon first (one
/// commit), then removes them in steps of at most `step` records of the
/// changes feed, calling `progress` with the total removed after each.
pub async fn compact<S: PageStore>(
    db: &Database<S>,
    now_ms: i64,
    retention_ms: i64,
    step: usize,
    mut progress: impl FnMut(u64),
) -> Result<CompactReport, Error> {
    let hs = holders(db).await?;
    let pages_before = db.stats().pages;
    let snap = db.snapshot();
    let last = snap.last_etag();
    let before = Compaction::read(&snap).await?;
    drop(snap);
    let (w, by) = watermark(&hs, last, now_ms, retention_ms);
    let since = now_ms.saturating_sub(retention_ms.max(0));
    let expired = hs
        .iter()
        .filter(|h| h.acked.seen_ms < since && h.acked.upto < w)
        .map(Holder::name)
        .collect();
    let held_back_by = by.map(Holder::name);
    let start = before.horizon.min(w);
    // The last plain tombstone up to the watermark: the horizon goes no
    // further, so devices past the watermark but not past a removed
    // tombstone need no resync. (Plain tombstones up to the watermark only
    // go: a new deletion, or the resolution of a conflicted one, takes a
    // new etag above it.)
    let top = last_plain_tombstone(db, start, w).await?;
    let mut state = Compaction {
        horizon: before.horizon.max(top),
        removed: before.removed,
        last_run_ms: now_ms,
        through: before.through,
    };
    // The horizon first: a session that reads the feed after a tombstone
    // went sees a horizon that covers it.
    let mut b = Batch::new();
    b.set_local(COMPACTION_KEY.to_vec(), Some(state.encode()));
    db.commit(b).await?;
    let mut removed = 0u64;
    let mut after = start;
    loop {
        let s = db.compact_tombstones(after, top, step, None).await?;
        removed += s.removed;
        after = s.reached;
        progress(removed);
        if s.done {
            break;
        }
    }
    // Every plain tombstone up to the watermark is gone now (those past
    // `top` up to it were not plain), and none can come back below it.
    if removed > 0 || w > state.through {
        state.removed += removed;
        state.through = state.through.max(w);
        let mut b = Batch::new();
        b.set_local(COMPACTION_KEY.to_vec(), Some(state.encode()));
        db.commit(b).await?;
    }
    // A vacuum reads every tree page once per round: worth it when an
    // eighth of the file is free.
    let st = db.stats();
    if st.free_pages >= VACUUM_MIN_FREE && st.free_pages * 8 >= st.pages {
        db.vacuum().await?;
    }
    let st = db.stats();
    Ok(CompactReport {
        watermark: w,
        held_back_by,
        expired,
        removed,
        horizon: state.horizon,
        tombstones_left: st.tombstones,
        pages_before,
        pages_after: st.pages,
    })
}

/// The etag of the last plain tombstone (no concurrent version) in
/// `after + 1 ..= upto` (`after` when there is none).
async fn last_plain_tombstone<S: PageStore>(
    db: &Database<S>,
    after: u64,
    upto: u64,
) -> Result<u64, Error> {
    let snap = db.snapshot();
    let (mut top, mut at) = (after, after);
    while at < upto {
        let docs = snap.changes_raw(at, 1000).await?;
        let n = docs.len();
        for d in &docs {
            if d.meta.etag > upto {
                return Ok(top);
            }
            at = d.meta.etag;
            if d.meta.flags.is_tombstone() && !d.meta.flags.is_conflicted() {
                top = d.meta.etag;
            }
        }
        if n < 1000 {
            break;
        }
    }
    Ok(top)
}

/// Local record key of an edge's pull map for the hub named `source`
/// (`u8` format 1, 16-byte hub database id, `u16` count, count × (`u64`
/// local etag, `u64` hub etag), ascending): after each batch from the hub,
/// every version this
/// edge stored as received with a local etag at most the first was sent at
/// a hub etag at most the second. Written in the batch's commit
/// ([`note_pulled`]); at most [`PULLED_MAX`] pairs (when full, every other
/// older pair goes: a coarser map only compacts later).
pub fn pulled_key(source: &str) -> Vec<u8> {
    format!("sync/pulled/{source}").into_bytes()
}

/// Most pairs of the pull map.
pub const PULLED_MAX: usize = 32;

/// The pull map of hub database `hub` (empty if the record is another
/// hub database's, or unreadable).
fn decode_pulled(b: &[u8], hub: &DbId) -> Vec<(u64, u64)> {
    let mut r = Reader::new(b);
    let Ok(1) = r.u8("format") else {
        return Vec::new();
    };
    if r.array::<16>("hub").ok() != Some(hub.0) {
        return Vec::new();
    }
    let Ok(n) = r.u16("count") else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(usize::from(n).min(PULLED_MAX));
    for _ in 0..n {
        let (Ok(l), Ok(h)) = (r.u64("local"), r.u64("hub")) else {
            return Vec::new();
        };
        out.push((l, h));
    }
    out
}

/// Adds to `b` (the commit of a batch from the hub named `source`,
/// database `hub_id`) the pull map's pair for it: every version stored as
/// received at a local etag at most `local` (an upper bound of the etags
/// the commit assigns) was sent at a hub etag at most `hub` (the batch's
/// `upto`).
pub async fn note_pulled<S: PageStore>(
    db: &Database<S>,
    b: &mut Batch,
    source: &str,
    hub_id: &DbId,
    local: u64,
    hub: u64,
) -> Result<(), Error> {
    let key = pulled_key(source);
    let mut pairs = db
        .get_local(&key)
        .await?
        .map(|v| decode_pulled(&v, hub_id))
        .unwrap_or_default();
    if pairs.last().is_some_and(|p| p.0 >= local || p.1 >= hub) {
        return Ok(());
    }
    pairs.push((local, hub));
    if pairs.len() > PULLED_MAX {
        // Keep the newest half as it is, every other pair of the rest.
        let half = pairs.len() - PULLED_MAX / 2;
        let mut thinned: Vec<_> = pairs[..half].iter().copied().step_by(2).collect();
        thinned.extend_from_slice(&pairs[half..]);
        pairs = thinned;
    }
    let mut w = Vec::with_capacity(19 + 16 * pairs.len());
    w.put_u8(1);
    w.extend_from_slice(hub_id.as_bytes());
    w.put_u16(pairs.len() as u16);
    for (l, h) in &pairs {
        w.put_u64(*l);
        w.put_u64(*h);
    }
    b.set_local(key, Some(w));
    Ok(())
}

/// Compacts at an edge the tombstones its hub (named `source`) has
/// compacted, as the hub's `Compacted(horizon)` says (no plain tombstone
/// at or below hub etag `horizon` is left there):
/// - the plain tombstones stored as received from the hub at a hub etag at
///   most `horizon`, found through the pull map;
/// - with `own`, every plain tombstone up to that local etag: the session's
///   `Welcome` said the hub held every change of this edge up to there, at
///   hub etags at most its last etag then, which is at most `horizon` (the
///   edge's own deletions; see `EdgeAction::CompactTombstones`).
///
/// A local record `sync/compacted/<source>` (16-byte hub database id,
/// `u64` received bound, optional `u64` own bound) keeps where each stopped.
/// Returns how many it removed.
pub async fn edge_compact<S: PageStore>(
    db: &Database<S>,
    source: &str,
    hub_id: &DbId,
    horizon: u64,
    own: Option<u64>,
) -> Result<u64, Error> {
    let pairs = db
        .get_local(&pulled_key(source))
        .await?
        .map(|v| decode_pulled(&v, hub_id))
        .unwrap_or_default();
    let upto = pairs
        .iter()
        .filter(|(_, h)| *h <= horizon)
        .map(|(l, _)| *l)
        .max()
        .unwrap_or(0);
    // Where the last runs stopped (for this hub database).
    let done_key = format!("sync/compacted/{source}").into_bytes();
    let (after, after_own) = db
        .get_local(&done_key)
        .await?
        .filter(|v| v.get(..16) == Some(hub_id.as_bytes().as_slice()))
        .map(|v| {
            let at = |o| crate::codec::get_u64(&v, o).unwrap_or(0);
            (at(16), at(24))
        })
        .unwrap_or((0, 0));
    let own = own.unwrap_or(0);
    if after >= upto && after_own >= own {
        return Ok(0);
    }
    let mut removed = 0;
    for (from, to, only) in [(after, upto, Some(source)), (after_own, own, None)] {
        let mut at = from;
        while at < to {
            let s = db.compact_tombstones(at, to, 5_000, only).await?;
            removed += s.removed;
            at = s.reached;
            if s.done {
                break;
            }
        }
    }
    let mut b = Batch::new();
    let mut v = hub_id.as_bytes().to_vec();
    v.put_u64(after.max(upto));
    v.put_u64(after_own.max(own));
    b.set_local(done_key, Some(v));
    db.commit(b).await?;
    Ok(removed)
}

/// Local record key of an edge's resync marker for the hub named `source`:
/// present while a resync is under way (`u8` format 1, `u64` the edge's
/// last etag when it started, `u64` its push checkpoint then, `u64` its
/// pull checkpoint then).
pub fn resync_key(source: &str) -> Vec<u8> {
    format!("sync/resync/{source}").into_bytes()
}

/// The resync marker: where the edge stood when the resync started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResyncMark {
    /// The edge's last etag: later versions are not the sweep's.
    pub local_etag: u64,
    /// The edge's push checkpoint: what the hub held of its writes.
    pub pushed: u64,
    /// The edge's pull checkpoint: its `Hello` states it until the resync
    /// ends, so an interrupted resync is ordered again.
    pub from: u64,
}

impl ResyncMark {
    fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(17);
        w.put_u8(1);
        w.put_u64(self.local_etag);
        w.put_u64(self.pushed);
        w.put_u64(self.from);
        w
    }

    fn decode(b: &[u8]) -> Option<ResyncMark> {
        let mut r = Reader::new(b);
        if r.u8("format").ok()? != 1 {
            return None;
        }
        let m = ResyncMark {
            local_etag: r.u64("etag").ok()?,
            pushed: r.u64("pushed").ok()?,
            from: r.u64("from").ok()?,
        };
        (r.remaining() == 0).then_some(m)
    }
}

/// Starts a resync at an edge: records the marker (unless one is there: a
/// resync interrupted earlier keeps where it started).
pub async fn begin_resync<S: PageStore>(
    db: &Database<S>,
    source: &str,
    pushed: u64,
    from: u64,
) -> Result<(), Error> {
    let key = resync_key(source);
    if db.get_local(&key).await?.is_some() {
        return Ok(());
    }
    let mark = ResyncMark {
        local_etag: db.snapshot().last_etag(),
        pushed,
        from,
    };
    let mut b = Batch::new();
    b.set_local(key, Some(mark.encode()));
    db.commit(b).await?;
    Ok(())
}

/// The pull checkpoint a resync under way with the hub named `source`
/// started from (`None`: no resync under way). A marker this build cannot
/// read counts as one from 0 (the hub then sends everything).
pub async fn resyncing<S: PageStore>(db: &Database<S>, source: &str) -> Result<Option<u64>, Error> {
    Ok(db
        .get_local(&resync_key(source))
        .await?
        .map(|b| ResyncMark::decode(&b).map_or(0, |m| m.from)))
}

/// Ends a resync at an edge (see the module docs): removes the documents
/// inside `read` the hub did not send (`seen`: lowercase id keys) that the
/// edge held when the resync started and that came from the hub or were
/// pushed, except those with a recorded rejection (`rejected`, lowercase
/// ids); then drops the marker. `seen` is `None` when the hub did not
/// resync the session after all: only the marker goes. Returns how many
/// documents it removed.
pub async fn resync_sweep<S: PageStore>(
    db: &Database<S>,
    source: &str,
    seen: Option<&HashSet<Vec<u8>>>,
    read: &[String],
    rejected: &HashSet<String>,
) -> Result<u64, Error> {
    let key = resync_key(source);
    let Some(mark) = db.get_local(&key).await? else {
        return Ok(0);
    };
    // An unreadable marker sweeps nothing (what it would spare is unknown).
    let (Some(seen), Some(mark)) = (seen, ResyncMark::decode(&mark)) else {
        let mut b = Batch::new();
        b.set_local(key, None);
        db.commit(b).await?;
        return Ok(0);
    };
    let scope = Prefixes::parse(read).unwrap_or_default();
    let mut gone = Vec::new();
    let mut after = 0;
    'feed: loop {
        let docs = db.changes_raw(after, 1000).await?;
        let n = docs.len();
        for d in docs {
            after = d.meta.etag;
            if d.meta.etag > mark.local_etag {
                break 'feed;
            }
            let k = id_key(&d.id);
            let lower = String::from_utf8_lossy(&k).into_owned();
            if !scope.allows(&d.id) || seen.contains(&k) || rejected.contains(&lower) {
                continue;
            }
            let from_hub = d.meta.source.as_deref() == Some(source);
            if from_hub || d.meta.etag <= mark.pushed {
                gone.push(d.id);
            }
        }
        if n < 1000 {
            break;
        }
    }
    let removed = if gone.is_empty() {
        0
    } else {
        db.purge(&PurgeScope {
            ids: gone,
            ..PurgeScope::default()
        })
        .await?
        .removed
    };
    let mut b = Batch::new();
    b.set_local(key, None);
    db.commit(b).await?;
    Ok(removed)
}
