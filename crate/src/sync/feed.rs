//! The hub's changes feed as its sessions share it (docs/protocol.md §4
//! "Hub to edge, flow control"; docs/benchmarks.md "Fan-out"): when a
//! commit wakes every live session, they all ask for the same page of the
//! feed (the documents after the same cursor). A [`FeedCache`] reads that
//! page once per commit and hands every session the same [`FeedPage`],
//! whose `Changes` encoding is made once too (`FeedPage::whole`).
//!
//! Sharing never widens what a session sends: each session's machine still
//! filters the page by its own grant (`crate::sync::hub::feed`), and uses
//! the shared encoding only when its filter keeps every document of the
//! page; otherwise it builds its own batch as before.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::db::{Database, Snapshot};
use crate::doc::RawDoc;
use crate::error::Error;
use crate::store::PageStore;
use crate::sync::compact::Compaction;
use crate::sync::frame::{doc_encoded_len, encode_raw_docs};
use crate::sync::rules::Prefixes;
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
    let complete = page.len() < max_docs;
    with_page(snap, page, complete).await
}

/// Most documents under a narrow read scope that [`read_changes_in`]
/// reads by id prefix; beyond that it walks the changes feed.
pub const SCOPE_SCAN_MAX: usize = 16 * crate::sync::BATCH_DOCS;

/// [`read_changes`] for a session that may read only `scope`: the same
/// documents as the changes feed after `after` filtered by `scope`, in etag
/// order, at most `max_docs`, at a cost that follows the scope rather than
/// the database (docs/protocol.md §4 "Hub to edge, flow control").
///
/// - When the documents under the scope's prefixes are fewer than
///   [`SCOPE_SCAN_MAX`] and than a quarter of the feed after `after`,
///   they are listed from the documents tree by prefix (record headers
///   only), sorted by etag, and only those after `after` are read.
/// - Otherwise the changes feed is walked on its etag index, and only the
///   documents inside the scope are read.
///
/// Either way the page holds only documents inside `scope`; the session's
/// machine still filters it by its grant (`crate::sync::hub::feed`).
pub async fn read_changes_in<S: PageStore>(
    snap: &Snapshot<S>,
    after: u64,
    max_docs: usize,
    scope: &Prefixes,
) -> Result<FeedRead, Error> {
    read_scoped(snap, after, max_docs, scope, scan_budget(snap, after)).await
}

/// Most documents a listing by prefix may meet before the feed's etag
/// index is the cheaper walk: [`SCOPE_SCAN_MAX`], and a quarter of the
/// feed after `after` (a record header costs more than an index entry).
fn scan_budget<S: PageStore>(snap: &Snapshot<S>, after: u64) -> usize {
    let gap = snap.last_etag().saturating_sub(after) / 4;
    usize::try_from(gap).map_or(SCOPE_SCAN_MAX, |g| g.min(SCOPE_SCAN_MAX))
}

/// [`read_changes_in`] with the prefix listing's budget given.
async fn read_scoped<S: PageStore>(
    snap: &Snapshot<S>,
    after: u64,
    max_docs: usize,
    scope: &Prefixes,
    budget: usize,
) -> Result<FeedRead, Error> {
    let found = listing(snap, after, scope, budget).await?;
    read_from(snap, after, max_docs, scope, found).await
}

/// The listing of `scope` after `after` ([`listed`]) when the scope is
/// narrow and its documents are within `budget`; `None`: walk the feed.
async fn listing<S: PageStore>(
    snap: &Snapshot<S>,
    after: u64,
    scope: &Prefixes,
    budget: usize,
) -> Result<Listing, Error> {
    if scope.is_all() {
        return Ok(None);
    }
    Ok(listed(snap, after, scope, budget).await?.map(Arc::new))
}

/// The first `max_docs` documents after `after` under `scope`: from its
/// listing when there is one, else by walking the feed on its etag index
/// and reading only the documents inside the scope.
async fn read_from<S: PageStore>(
    snap: &Snapshot<S>,
    after: u64,
    max_docs: usize,
    scope: &Prefixes,
    found: Listing,
) -> Result<FeedRead, Error> {
    let (docs, complete) = match found {
        Some(found) => read_listed(snap, &found, max_docs).await?,
        None => {
            let docs = snap
                .changes_raw_where(after, max_docs, |k| scope.allows_key(k))
                .await?;
            let complete = docs.len() < max_docs;
            (docs, complete)
        }
    };
    with_page(snap, FeedPage::new(docs), complete).await
}

/// The first `max_docs` documents of a listing ([`listed`]), and whether
/// they are all it holds.
async fn read_listed<S: PageStore>(
    snap: &Snapshot<S>,
    found: &[(u64, Vec<u8>)],
    max_docs: usize,
) -> Result<(Vec<RawDoc>, bool), Error> {
    let mut docs = Vec::new();
    let mut taken = 0;
    for (_, key) in found {
        if docs.len() == max_docs {
            break;
        }
        taken += 1;
        // An unreadable record is left out, as the feed leaves it out.
        if let Some(d) = snap.raw_doc_by_key(key).await? {
            docs.push(d);
        }
    }
    Ok((docs, taken == found.len()))
}

/// The etag and id key of every document after `after` under `scope`, in
/// etag order, listed by prefix from the documents tree (record headers
/// only); `None` when more than `budget` documents lie under the prefixes.
async fn listed<S: PageStore>(
    snap: &Snapshot<S>,
    after: u64,
    scope: &Prefixes,
    mut budget: usize,
) -> Result<Option<Vec<(u64, Vec<u8>)>>, Error> {
    let mut found: Vec<(u64, Vec<u8>)> = Vec::new();
    for p in scope.as_slice() {
        // `p` ends in `/` and covers the id without it too: list from the
        // bare name, and keep what the scope allows (not `p/30` for `p/3/`).
        let bare = p.strip_suffix('/').unwrap_or(p);
        let Some(under) = snap.etags_under(bare.as_bytes(), budget).await? else {
            return Ok(None);
        };
        budget -= under.len();
        found.extend(
            under
                .into_iter()
                .filter(|(etag, k)| *etag > after && scope.allows_key(k)),
        );
    }
    // Overlapping prefixes (`a/` and `a/b/`) list a document twice.
    found.sort_unstable();
    found.dedup();
    Ok(Some(found))
}

/// How many entries of the changes feed after `after` lie inside `scope`
/// (what a session has to send before it is live: `Welcome`'s progress
/// total), at a cost that follows the scope as [`read_changes_in`]'s does.
pub async fn count_in_scope<S: PageStore>(
    snap: &Snapshot<S>,
    after: u64,
    scope: &Prefixes,
) -> Result<u64, Error> {
    count_scoped(snap, after, scope, scan_budget(snap, after)).await
}

/// [`count_in_scope`] with the prefix listing's budget given.
async fn count_scoped<S: PageStore>(
    snap: &Snapshot<S>,
    after: u64,
    scope: &Prefixes,
    budget: usize,
) -> Result<u64, Error> {
    let found = listing(snap, after, scope, budget).await?;
    count_from(snap, after, scope, found.as_deref()).await
}

/// How many documents after `after` lie under `scope`: its listing's
/// length when there is one, else counted on the feed's etag index.
async fn count_from<S: PageStore>(
    snap: &Snapshot<S>,
    after: u64,
    scope: &Prefixes,
    found: Option<&Vec<(u64, Vec<u8>)>>,
) -> Result<u64, Error> {
    match found {
        Some(f) => Ok(f.len() as u64),
        None => snap.count_changes(after, |k| scope.allows_key(k)).await,
    }
}

/// The read of `page` (read from `snap`) with the snapshot's compaction
/// state, read for each session: it is a local record, which may change
/// without a new feed epoch. `complete`: the feed after the cursor ends
/// within the page.
async fn with_page<S: PageStore>(
    snap: &Snapshot<S>,
    page: Arc<FeedPage>,
    complete: bool,
) -> Result<FeedRead, Error> {
    let c = Compaction::read(snap).await?;
    Ok(FeedRead {
        complete,
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

/// A narrow scope's listing kept from a session's count (`Welcome`) for
/// its first read: feed epoch, cursor, the scope's prefixes.
type ListKey = (u64, u64, Vec<String>);
/// A listing ([`listed`]); `None`: over the budget (walk the feed).
type Listing = Option<Arc<Vec<(u64, Vec<u8>)>>>;
/// Listings kept at most (each is taken by the read it was kept for).
const KEPT_LISTINGS: usize = 256;
/// Bytes the kept listings may hold (entries counted as their keys plus 32).
const KEPT_LISTING_BYTES: usize = 8 << 20;

/// The last few pages of one database handle's changes feed, keyed by the
/// state of the feed they saw ([`Snapshot::feed_epoch`]), the cursor and
/// the page size. A read never uses a page of an earlier state of the
/// feed: a write, a purge or a compaction gives a new epoch. (Commits of
/// local records only, such as the sessions' acknowledgement records, keep
/// the epoch: they do not empty the cache.)
///
/// It also keeps, for a narrow scope, the listing a session's count made
/// ([`FeedCache::count_in_scope`]) until that session's first read of the
/// same feed state takes it ([`FeedCache::read_changes_in`]): a session
/// joining under a narrow scope lists its prefixes once, not twice.
#[derive(Debug, Default)]
pub struct FeedCache {
    recent: Mutex<VecDeque<(PageKey, Arc<FeedPage>)>>,
    listings: Mutex<VecDeque<(ListKey, Listing)>>,
    /// Reads served from a kept listing, for tests and metrics.
    listings_reused: AtomicU64,
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
        let complete = page.len() < max_docs;
        with_page(&snap, page, complete).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(PageKey, Arc<FeedPage>)>> {
        // Held for no await and no panic-prone work: a poisoned lock is intact.
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// [`count_in_scope`], keeping a narrow scope's listing for the
    /// session's first read of the same feed state.
    pub async fn count_in_scope<S: PageStore>(
        &self,
        snap: &Snapshot<S>,
        after: u64,
        scope: &Prefixes,
    ) -> Result<u64, Error> {
        let found = listing(snap, after, scope, scan_budget(snap, after)).await?;
        let n = count_from(snap, after, scope, found.as_deref()).await?;
        if !scope.is_all() {
            self.keep_listing(list_key(snap, after, scope), found);
        }
        Ok(n)
    }

    /// [`read_changes_in`], from the listing [`FeedCache::count_in_scope`]
    /// kept for this feed state, cursor and scope when there is one (taken:
    /// a listing serves one read).
    pub async fn read_changes_in<S: PageStore>(
        &self,
        snap: &Snapshot<S>,
        after: u64,
        max_docs: usize,
        scope: &Prefixes,
    ) -> Result<FeedRead, Error> {
        let found = match self.take_listing(&list_key(snap, after, scope)) {
            Some(kept) => {
                self.listings_reused.fetch_add(1, Ordering::Relaxed);
                kept
            }
            None => listing(snap, after, scope, scan_budget(snap, after)).await?,
        };
        read_from(snap, after, max_docs, scope, found).await
    }

    /// How many reads were served from a kept listing.
    pub fn listings_reused(&self) -> u64 {
        self.listings_reused.load(Ordering::Relaxed)
    }

    fn listings(&self) -> std::sync::MutexGuard<'_, VecDeque<(ListKey, Listing)>> {
        // Held for no await and no panic-prone work: a poisoned lock is intact.
        self.listings.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn keep_listing(&self, key: ListKey, listing: Listing) {
        let cost = |l: &Listing| {
            l.as_ref()
                .map_or(0, |f| f.iter().map(|(_, k)| k.len() + 32).sum::<usize>())
        };
        if cost(&listing) > KEPT_LISTING_BYTES / 4 {
            return;
        }
        let mut kept = self.listings();
        // Only the last feed state's listings can be taken.
        kept.retain(|(k, _)| k.0 == key.0 && *k != key);
        let mut held: usize = kept.iter().map(|(_, l)| cost(l)).sum();
        while kept.len() >= KEPT_LISTINGS || held + cost(&listing) > KEPT_LISTING_BYTES {
            let Some((_, old)) = kept.pop_front() else {
                break;
            };
            held -= cost(&old);
        }
        kept.push_back((key, listing));
    }

    fn take_listing(&self, key: &ListKey) -> Option<Listing> {
        let mut kept = self.listings();
        let i = kept.iter().position(|(k, _)| k == key)?;
        kept.remove(i).map(|(_, l)| l)
    }
}

/// The key of a listing of `scope` after `after` in `snap`'s feed state.
fn list_key<S: PageStore>(snap: &Snapshot<S>, after: u64, scope: &Prefixes) -> ListKey {
    (snap.feed_epoch(), after, scope.as_slice().to_vec())
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

    /// A narrow read, by prefix listing or by the filtered feed, chained
    /// page after page as a session does, yields exactly the changes feed
    /// filtered by the scope: same documents, same versions, same order,
    /// never one outside the scope, from every cursor, with overlapping
    /// prefixes, an id equal to a prefix, look-alike ids (`p/30`, `p/3-x`),
    /// mixed case, updates, deletions and a purge. So is the count of what
    /// a session has to send (`Welcome`'s progress total).
    #[test]
    fn a_narrow_read_is_the_feed_filtered_by_the_scope() {
        block_on(async {
            let db = Database::open(MemoryStore::new(), OpenOptions::default())
                .await
                .unwrap();
            let ids = [
                "p/3",
                "p/3/a",
                "P/3/Upper",
                "p/3/b/c",
                "p/30/x",
                "p/3-x/y",
                "p/4/a",
                "q/1",
                "a/b/c",
                "a/d",
                "a/b",
                "z",
            ];
            let mut seed = 7u64;
            let mut next = move |n: usize| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 33) as usize % n
            };
            for round in 0..60 {
                let mut b = Batch::new();
                for _ in 0..1 + next(3) {
                    let id = ids[next(ids.len())];
                    if next(5) == 0 {
                        b.delete(id);
                    } else {
                        b.put(id, json!({ "round": round }));
                    }
                }
                db.commit(b).await.unwrap();
            }
            db.purge(&crate::db::PurgeScope {
                ids: vec!["p/3/b/c".into()],
                ..Default::default()
            })
            .await
            .unwrap();
            let scopes: [&[&str]; 7] = [
                &["*"],
                &["p/3"],
                &["p/3/", "p/30"],
                &["a/", "a/b/"],
                &["q", "z", "p/4/a"],
                &["nothing/here"],
                &[],
            ];
            let snap = db.snapshot();
            let feed = snap.changes_raw(0, usize::MAX).await.unwrap();
            let key = |d: &RawDoc| (d.id.clone(), d.meta.etag);
            for scope in scopes {
                let scope =
                    Prefixes::parse(&scope.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                        .unwrap();
                for after in 0..=snap.last_etag() {
                    let want: Vec<_> = feed
                        .iter()
                        .filter(|d| d.meta.etag > after && scope.allows(&d.id))
                        .map(key)
                        .collect();
                    for budget in [0, 1, 4, SCOPE_SCAN_MAX] {
                        let n = count_scoped(&snap, after, &scope, budget).await.unwrap();
                        assert_eq!(n, want.len() as u64, "count: scope {scope} after {after}");
                        for max_docs in [1, 2, 500] {
                            let (mut got, mut cursor) = (Vec::new(), after);
                            for _ in 0..100 {
                                let r = read_scoped(&snap, cursor, max_docs, &scope, budget)
                                    .await
                                    .unwrap();
                                assert!(r.page.len() <= max_docs);
                                got.extend(r.page.docs().iter().map(key));
                                if r.complete {
                                    break;
                                }
                                cursor = r.page.docs().last().expect("progress").meta.etag;
                            }
                            assert_eq!(
                                got, want,
                                "scope {scope} after {after} budget {budget} max {max_docs}"
                            );
                        }
                    }
                }
            }
        });
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

    /// A narrow scope's listing kept by a session's count serves that
    /// session's first read of the same feed state, cursor and scope, and
    /// nothing else: after a commit in the scope, with another cursor or
    /// another scope the read lists afresh (and still equals the feed
    /// filtered by the scope).
    #[test]
    fn a_kept_listing_serves_only_the_read_of_the_same_state() {
        block_on(async {
            let db = Database::open(MemoryStore::new(), OpenOptions::default())
                .await
                .unwrap();
            for i in 0..30 {
                put(&db, &format!("p/{}/{i}", i % 3), 10).await;
            }
            let scope = Prefixes::parse(&["p/1/".to_string()]).unwrap();
            let other = Prefixes::parse(&["p/2/".to_string()]).unwrap();
            let cache = FeedCache::new();
            let ids = |r: &FeedRead| -> Vec<String> {
                r.page.docs().iter().map(|d| d.id.clone()).collect()
            };
            let want = |after: u64, scope: &Prefixes| {
                let db = &db;
                let scope = scope.clone();
                async move {
                    ids(&read_changes_in(&db.snapshot(), after, 500, &scope)
                        .await
                        .unwrap())
                }
            };

            // Count, then the first read of the same state: one listing.
            let n = cache
                .count_in_scope(&db.snapshot(), 0, &scope)
                .await
                .unwrap();
            assert_eq!(n, 10);
            let r = cache
                .read_changes_in(&db.snapshot(), 0, 500, &scope)
                .await
                .unwrap();
            assert_eq!(ids(&r), want(0, &scope).await);
            assert_eq!(cache.listings_reused(), 1);
            // Taken: a second read lists again.
            let r = cache
                .read_changes_in(&db.snapshot(), 0, 500, &scope)
                .await
                .unwrap();
            assert_eq!(ids(&r), want(0, &scope).await);
            assert_eq!(cache.listings_reused(), 1);

            // A commit in the scope between the count and the read.
            cache
                .count_in_scope(&db.snapshot(), 0, &scope)
                .await
                .unwrap();
            put(&db, "p/1/new", 10).await;
            let r = cache
                .read_changes_in(&db.snapshot(), 0, 500, &scope)
                .await
                .unwrap();
            assert!(ids(&r).contains(&"p/1/new".to_string()), "{:?}", ids(&r));
            assert_eq!(ids(&r), want(0, &scope).await);
            assert_eq!(
                cache.listings_reused(),
                1,
                "a listing of an older state was used"
            );

            // Another cursor, another scope.
            cache
                .count_in_scope(&db.snapshot(), 0, &scope)
                .await
                .unwrap();
            let r = cache
                .read_changes_in(&db.snapshot(), 5, 500, &scope)
                .await
                .unwrap();
            assert_eq!(ids(&r), want(5, &scope).await);
            let r = cache
                .read_changes_in(&db.snapshot(), 0, 500, &other)
                .await
                .unwrap();
            assert_eq!(ids(&r), want(0, &other).await);
            assert!(r.page.docs().iter().all(|d| d.id.starts_with("p/2/")));
            assert_eq!(
                cache.listings_reused(),
                1,
                "another cursor or scope used the kept listing"
            );
            // The one kept for (0, scope) is still there for its read.
            let r = cache
                .read_changes_in(&db.snapshot(), 0, 2, &scope)
                .await
                .unwrap();
            assert_eq!(cache.listings_reused(), 2);
            assert_eq!(ids(&r), want(0, &scope).await[..2].to_vec());
        });
    }
}
