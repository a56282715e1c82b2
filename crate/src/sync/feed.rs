//! The hub's changes feed as its sessions share it (docs/protocol.md §4
//! "Hub to edge, flow control"; docs/benchmarks.md "Fan-out"): when a
//! commit wakes every live session, they all ask for the same page of the
//! feed (the documents after the same cursor). A [`FeedCache`] reads that
//! page once per commit and hands every session the same [`FeedPage`],
//! whose `Changes` encoding is made once too ([`FeedPage::whole`]).
//!
//! Sharing never widens what a session sends: each session's machine still
//! filters the page by its own grant (`crate::sync::hub::feed`), and uses
//! the shared encoding only when its filter keeps every document of the
//! page; otherwise it builds its own batch as before.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use crate::db::{Database, Snapshot};
use crate::doc::RawDoc;
use crate::error::Error;
use crate::store::PageStore;
use crate::sync::compact::Compaction;
use crate::sync::frame::{doc_encoded_len, encode_raw_docs};
use crate::sync::{BATCH_BYTES, HubEvent};

/// A page of the changes feed as read, shared by the sessions that read
/// the same page.
#[derive(Debug, Default)]
pub struct FeedPage {
    docs: Vec<RawDoc>,
    /// The documents' encoded size (about their size in memory).
    bytes: usize,
    whole: OnceLock<WholeBatch>,
}

/// The batch a session sends from a page when it may read every document
/// of it: the documents from the first, as many as [`BATCH_BYTES`] allows
/// (`crate::sync::take_batch` with nothing skipped), encoded once.
#[derive(Debug)]
pub(crate) struct WholeBatch {
    /// Documents taken (a prefix of the page).
    pub count: usize,
    /// The etag of the last document taken (0 when none).
    pub upto: u64,
    /// The `docs` part of the `Changes` frame
    /// (`crate::sync::frame::changes_bytes`).
    pub encoded: Vec<u8>,
}

impl FeedPage {
    /// A page of these documents, in etag order.
    pub fn new(docs: Vec<RawDoc>) -> Arc<FeedPage> {
        let bytes = docs
            .iter()
            .map(|d| doc_encoded_len(&d.id, d.meta.collection.as_deref(), &d.versions))
            .sum();
        Arc::new(FeedPage {
            docs,
            bytes,
            whole: OnceLock::new(),
        })
    }

    /// The documents, in etag order.
    pub fn docs(&self) -> &[RawDoc] {
        &self.docs
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// Whether the page is empty.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// The batch of a session that skips nothing, made on first use.
    pub(crate) fn whole(&self) -> &WholeBatch {
        self.whole.get_or_init(|| {
            let mut bytes = 0usize;
            let mut count = 0;
            for d in &self.docs {
                let len = doc_encoded_len(&d.id, d.meta.collection.as_deref(), &d.versions);
                if count > 0 && bytes + len > BATCH_BYTES {
                    break;
                }
                bytes += len;
                count += 1;
            }
            WholeBatch {
                count,
                upto: self.docs[..count].last().map_or(0, |d| d.meta.etag),
                encoded: encode_raw_docs(&self.docs[..count]),
            }
        })
    }
}

/// One read of the changes feed: what [`HubEvent::ChangesRead`] carries.
#[derive(Debug, Clone)]
pub struct FeedRead {
    /// At most `max_docs` documents after the cursor, in etag order.
    pub page: Arc<FeedPage>,
    /// Whether the feed ended within the read.
    pub complete: bool,
    /// The hub's last etag as of the read.
    pub last_etag: u64,
    /// The compaction horizon as of the same read.
    pub horizon: u64,
    /// The etag at or below which no plain tombstone is left.
    pub compacted: u64,
}

impl FeedRead {
    /// The event to feed the hub machine.
    pub fn event(self) -> HubEvent<'static> {
        HubEvent::ChangesRead {
            docs: self.page,
            complete: self.complete,
            last_etag: self.last_etag,
            horizon: self.horizon,
            compacted: self.compacted,
        }
    }
}

/// Reads at most `max_docs` documents of the changes feed after `after`
/// from `snap`, with the compaction state of the same snapshot.
pub async fn read_changes<S: PageStore>(
    snap: &Snapshot<S>,
    after: u64,
    max_docs: usize,
) -> Result<FeedRead, Error> {
    let page = FeedPage::new(snap.changes_raw(after, max_docs).await?);
    with_page(snap, page, max_docs).await
}

/// The read of `page` (read from `snap`) with the snapshot's compaction
/// state, read for each session: it is a local record, which may change
/// without a new feed epoch.
async fn with_page<S: PageStore>(
    snap: &Snapshot<S>,
    page: Arc<FeedPage>,
    max_docs: usize,
) -> Result<FeedRead, Error> {
    let c = Compaction::read(snap).await?;
    Ok(FeedRead {
        complete: page.len() < max_docs,
        page,
        last_etag: snap.last_etag(),
        horizon: c.horizon,
        compacted: c.through,
    })
}

/// Pages kept for reuse: a fan-out reads a page once per commit.
const CACHED_PAGES: usize = 8;
/// Memory the kept pages may hold, their shared encodings included (a page
/// counts twice its documents' size): the pages of a live fan-out are
/// small, those of an initial sync up to 512 KiB of documents each.
const CACHED_BYTES: usize = 4 << 20;

/// The page cache's key: feed epoch, cursor, page size.
type PageKey = (u64, u64, usize);

/// The last few pages of one database handle's changes feed, keyed by the
/// state of the feed they saw ([`Snapshot::feed_epoch`]), the cursor and
/// the page size. A read never uses a page of an earlier state of the
/// feed: a write, a purge or a compaction gives a new epoch. (Commits of
/// local records only, such as the sessions' acknowledgement records, keep
/// the epoch: they do not empty the cache.)
#[derive(Debug, Default)]
pub struct FeedCache {
    recent: Mutex<VecDeque<(PageKey, Arc<FeedPage>)>>,
}

impl FeedCache {
    /// An empty cache.
    pub fn new() -> FeedCache {
        FeedCache::default()
    }

    /// [`read_changes`] on the database's last commit, with the page of
    /// another session's read of the same feed state when there is one.
    pub async fn read<S: PageStore>(
        &self,
        db: &Database<S>,
        after: u64,
        max_docs: usize,
    ) -> Result<FeedRead, Error> {
        let snap = db.snapshot();
        let key = (snap.feed_epoch(), after, max_docs);
        let hit = self
            .lock()
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, p)| p.clone());
        let page = match hit {
            Some(page) => page,
            None => {
                let page = FeedPage::new(snap.changes_raw(after, max_docs).await?);
                let mut recent = self.lock();
                // Only the last feed state's pages are worth keeping (a read
                // always takes the last state): older ones go, and with them
                // the copies of documents a purge has since erased.
                let cost = |p: &FeedPage| 2 * p.bytes;
                if cost(&page) <= CACHED_BYTES / 4
                    && !recent.iter().any(|(k, _)| k.0 > key.0 || *k == key)
                {
                    recent.retain(|(k, _)| k.0 == key.0);
                    let mut held: usize = recent.iter().map(|(_, p)| cost(p)).sum();
                    while recent.len() >= CACHED_PAGES || held + cost(&page) > CACHED_BYTES {
                        let Some((_, old)) = recent.pop_front() else {
                            break;
                        };
                        held -= cost(&old);
                    }
                    recent.push_back((key, page.clone()));
                }
                page
            }
        };
        with_page(&snap, page, max_docs).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(PageKey, Arc<FeedPage>)>> {
        // Held for no await and no panic-prone work: a poisoned lock is intact.
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Batch, OpenOptions};
    use crate::store::MemoryStore;
    use futures::executor::block_on;
    use serde_json::json;

    async fn put(db: &Database<MemoryStore>, id: &str, text_len: usize) {
        let mut b = Batch::new();
        b.put(id, json!({ "t": "x".repeat(text_len) }));
        db.commit(b).await.unwrap();
    }

    /// Sessions of one feed state share a page; a write, a purge-like
    /// change of documents, or a later state never reuses it; local
    /// records do not move the state; large pages are not kept.
    #[test]
    fn pages_are_shared_within_one_feed_state_only() {
        block_on(async {
            let db = Database::open(MemoryStore::new(), OpenOptions::default())
                .await
                .unwrap();
            let cache = FeedCache::new();
            put(&db, "a/1", 10).await;
            let r1 = cache.read(&db, 0, 500).await.unwrap();
            let r2 = cache.read(&db, 0, 500).await.unwrap();
            assert!(Arc::ptr_eq(&r1.page, &r2.page), "same state: one page");
            // A commit of local records only keeps the state.
            let mut b = Batch::new();
            b.set_local(b"ack/x".to_vec(), Some(vec![1]));
            db.commit(b).await.unwrap();
            let r3 = cache.read(&db, 0, 500).await.unwrap();
            assert!(
                Arc::ptr_eq(&r1.page, &r3.page),
                "a local record is not a new state"
            );
            // A write is.
            put(&db, "a/2", 10).await;
            let r4 = cache.read(&db, 0, 500).await.unwrap();
            assert!(!Arc::ptr_eq(&r1.page, &r4.page));
            assert_eq!(r4.page.len(), 2);
            assert_eq!(r4.last_etag, 2);
            // So is a deletion: the feed changed, the page is read again.
            let mut b = Batch::new();
            b.delete("a/1");
            db.commit(b).await.unwrap();
            let r5 = cache.read(&db, 0, 500).await.unwrap();
            assert!(!Arc::ptr_eq(&r4.page, &r5.page));
            // And a purge, which removes a document without a new etag: the
            // purged document is never served from a page read before.
            let etag = db.stats().last_etag;
            db.purge(&crate::db::PurgeScope {
                ids: vec!["a/2".into()],
                ..Default::default()
            })
            .await
            .unwrap();
            assert_eq!(db.stats().last_etag, etag, "a purge issues no etag");
            let r6 = cache.read(&db, 0, 500).await.unwrap();
            assert!(r6.page.docs().iter().all(|d| d.id != "a/2"), "{r6:?}");
            let r5 = r6;
            // A page over a quarter of the budget is read for each session.
            for i in 0..8 {
                put(&db, &format!("big/{i}"), 100_000).await;
            }
            let after = r5.last_etag;
            let b1 = cache.read(&db, after, 500).await.unwrap();
            let b2 = cache.read(&db, after, 500).await.unwrap();
            assert_eq!(b1.page.len(), 8);
            assert!(!Arc::ptr_eq(&b1.page, &b2.page), "a large page is not kept");
        });
    }
}
