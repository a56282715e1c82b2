//! The bounded page cache shared by readers and the writer.
//!
//! Holds verified, immutable page buffers by page number, least recently used
//! first out, and pages a store read along with others, which are verified
//! when first asked for ([`PageCache::put_read_along`]). Its limit is set in bytes ([`crate::OpenOptions::cache_bytes`],
//! default 64 MiB); a database of any size is read page by page on demand.

use std::sync::Mutex;

use lru::LruCache;

use crate::store::{PAGE_SIZE, PageBuf, PageHash, PageNo};

/// Default cache limit: 64 MiB.
pub const DEFAULT_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// An LRU cache of pages, bounded by bytes.
pub struct PageCache {
    inner: Mutex<Inner>,
}

struct Inner {
    /// Unbounded: the limit is `cap`, enforced by [`PageCache::put`], so that
    /// a large limit allocates nothing until pages come (a 256 MiB cache's
    /// table, allocated up front, cost a browser reopen ~3 ms).
    lru: LruCache<PageNo, Entry, PageHash>,
    cap: usize,
    hits: u64,
    misses: u64,
}

/// Cache counters.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct CacheStats {
    /// Pages held now.
    pub pages: u64,
    /// Most pages it will hold.
    pub capacity_pages: u64,
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that went to the store.
    pub misses: u64,
}

/// A cached page, and whether it was verified.
struct Entry {
    buf: PageBuf,
    verified: bool,
}

impl Inner {
    /// Caches a page, dropping the least recently used beyond the limit.
    fn insert(&mut self, no: PageNo, buf: PageBuf, verified: bool) {
        self.lru.put(no, Entry { buf, verified });
        while self.lru.len() > self.cap {
            self.lru.pop_lru();
        }
    }
}

impl PageCache {
    /// A cache holding at most `bytes` of pages (at least 16 pages).
    pub fn new(bytes: usize) -> Self {
        let cap = (bytes / PAGE_SIZE).max(16);
        PageCache {
            inner: Mutex::new(Inner {
                lru: LruCache::unbounded_with_hasher(PageHash),
                cap,
                hits: 0,
                misses: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached page, if present, and whether it is yet to be verified (a
    /// page read along, [`PageCache::put_read_along`]: the caller verifies
    /// it and says so with [`PageCache::verified`], or drops it with
    /// [`PageCache::remove`]).
    pub fn get(&self, no: PageNo) -> Option<(PageBuf, bool)> {
        let mut g = self.lock();
        let r = g.lru.get(&no).map(|e| (e.buf.clone(), !e.verified));
        if r.is_some() {
            g.hits += 1;
        } else {
            g.misses += 1;
        }
        r
    }

    /// Those of `nos` not cached now, at most `max` of them, and how many of
    /// `nos` that covers (no counter moves: a read-ahead asks before it
    /// loads).
    pub fn missing(&self, nos: &[PageNo], max: usize) -> (Vec<PageNo>, usize) {
        let g = self.lock();
        let mut out = Vec::new();
        for (i, no) in nos.iter().enumerate() {
            if !g.lru.contains(no) {
                if out.len() == max {
                    return (out, i);
                }
                out.push(*no);
            }
        }
        (out, nos.len())
    }

    /// Caches a page a read-ahead loaded from the store (counted as a miss:
    /// the later read that finds it counts a hit).
    pub fn put_loaded(&self, no: PageNo, buf: PageBuf) {
        let mut g = self.lock();
        g.misses += 1;
        g.insert(no, buf, true);
    }

    /// Caches a page (replacing an older version).
    pub fn put(&self, no: PageNo, buf: PageBuf) {
        self.lock().insert(no, buf, true);
    }

    /// Caches, unverified and only where the cache has no version of it, a
    /// page the store read along with the ones asked for
    /// ([`crate::store::PageStore::take_read_along`]). No counter moves.
    pub fn put_read_along(&self, no: PageNo, buf: PageBuf) {
        let mut g = self.lock();
        if !g.lru.contains(&no) {
            g.insert(no, buf, false);
        }
    }

    /// The cached version of `no` passed its check.
    pub fn verified(&self, no: PageNo) {
        if let Some(e) = self.lock().lru.peek_mut(&no) {
            e.verified = true;
        }
    }

    /// Drops the cached version of `no`.
    pub fn remove(&self, no: PageNo) {
        self.lock().lru.pop(&no);
    }

    /// Drops every cached page (used when another process or tab committed).
    pub fn clear(&self) {
        self.lock().lru.clear();
    }

    /// Counters.
    pub fn stats(&self) -> CacheStats {
        let g = self.lock();
        CacheStats {
            pages: g.lru.len() as u64,
            capacity_pages: g.cap as u64,
            hits: g.hits,
            misses: g.misses,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn page(fill: u8) -> PageBuf {
        Arc::new(vec![fill; PAGE_SIZE])
    }

    #[test]
    fn pages_read_along_are_unverified_until_said_and_never_replace_a_version() {
        let c = PageCache::new(0);
        c.put(1, page(1));
        c.put_read_along(1, page(0xEE));
        c.put_read_along(2, page(2));
        assert_eq!(c.get(1), Some((page(1), false)), "the cached version stays");
        assert_eq!(c.get(2), Some((page(2), true)), "to be verified");
        c.verified(2);
        assert_eq!(c.get(2), Some((page(2), false)));
        c.put_read_along(3, page(3));
        c.remove(3);
        assert_eq!(c.get(3), None);
        // A verified version replaces a page read along.
        c.put_read_along(4, page(0xEE));
        c.put(4, page(4));
        assert_eq!(c.get(4), Some((page(4), false)));
        // Read along counts neither a hit nor a miss; the bound holds.
        let before = c.stats();
        for no in 10..100 {
            c.put_read_along(no, page(9));
        }
        let after = c.stats();
        assert_eq!((after.hits, after.misses), (before.hits, before.misses));
        assert_eq!(after.pages, after.capacity_pages);
    }
}
