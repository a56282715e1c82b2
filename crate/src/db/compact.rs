//! Tombstone compaction: removing deletions every replica has seen.
//!
//! A tombstone is kept so a deletion replicates. Once every peer that could
//! hold the document has acknowledged it, the hub removes it
//! (`crate::sync::compact` decides up to which etag that holds); this file
//! is the engine's part: [`Database::compact_tombstones`] removes, in one
//! durable transaction per step, every record that is a plain tombstone (a
//! deletion with no concurrent version) whose etag is at or below a bound.
//! A conflicted record is kept whatever its winner: its other versions are
//! not deletions. Nothing else changes: no etag is taken, nothing
//! replicates, the counters drop by what was removed.

use crate::btree;
use crate::doc;
use crate::error::Error;
use crate::store::PageStore;

use super::Database;
use super::alloc::WCtx;
use super::meta::Tree;

/// What one [`Database::compact_tombstones`] step did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactStep {
    /// Tombstones removed.
    pub removed: u64,
    /// The etag the scan reached: the next step starts after it.
    pub reached: u64,
    /// Whether every etag up to the bound was looked at.
    pub done: bool,
}

impl<S: PageStore> Database<S> {
    /// Removes plain tombstones (no concurrent version) whose etag is in
    /// `after + 1 ..= upto` and, when `source` is given, that were stored as
    /// received from that peer (an edge compacts only what its hub sent),
    /// looking at most `max_records` records of the changes feed, in one
    /// durable transaction. Call again from [`CompactStep::reached`] until
    /// [`CompactStep::done`].
    pub async fn compact_tombstones(
        &self,
        after: u64,
        upto: u64,
        max_records: usize,
        source: Option<&str>,
    ) -> Result<CompactStep, Error> {
        if after >= upto {
            return Ok(CompactStep {
                removed: 0,
                reached: after,
                done: true,
            });
        }
        let mut txn = self.begin().await?;
        let mut ctx = WCtx {
            inner: &self.inner,
            w: &mut txn.w,
        };
        let meta = ctx.w.meta.clone();
        // (etag key, id key) of the feed entries in range.
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut reached = after;
        let mut more = false;
        let start = (after + 1).to_be_bytes();
        btree::scan(&ctx, meta.root(Tree::Etags), &start, |k, v| {
            let etag = k.try_into().map(u64::from_be_bytes).unwrap_or(u64::MAX);
            if etag > upto {
                return false;
            }
            if entries.len() >= max_records.max(1) {
                more = true;
                return false;
            }
            reached = etag;
            entries.push((k.to_vec(), v.to_vec()));
            true
        })
        .await?;
        let mut docs = meta.root(Tree::Docs);
        let mut etags = meta.root(Tree::Etags);
        let mut removed = 0u64;
        for (ek, id) in &entries {
            let Some(rec) = btree::get(&ctx, docs, id).await? else {
                continue;
            };
            // A record that does not decode is `repair`'s business.
            let Ok((_, dm)) = doc::decode_record_meta(&rec) else {
                continue;
            };
            if !dm.flags.is_tombstone() || dm.flags.is_conflicted() {
                continue;
            }
            if source.is_some() && dm.source.as_deref() != source {
                continue;
            }
            if dm.etag.to_be_bytes().as_slice() != ek.as_slice() {
                continue;
            }
            docs = btree::remove(&mut ctx, docs, id).await?.0;
            etags = btree::remove(&mut ctx, etags, ek).await?.0;
            removed += 1;
        }
        let done = !more;
        if removed == 0 {
            // Nothing changed: dropping the transaction rolls it back.
            drop(txn);
            return Ok(CompactStep {
                removed,
                reached: if done { upto } else { reached },
                done,
            });
        }
        let mm = &mut ctx.w.meta;
        mm.set_root(Tree::Docs, docs);
        mm.set_root(Tree::Etags, etags);
        mm.tombstone_count = mm.tombstone_count.saturating_sub(removed);
        self.finish(txn).await?;
        Ok(CompactStep {
            removed,
            reached: if done { upto } else { reached },
            done,
        })
    }
}
