//! The bounded page cache shared by readers and the writer.
//!
//! Holds verified, immutable page buffers by page number, least recently used
//! first out. Its limit is set in bytes ([`crate::OpenOptions::cache_bytes`],
//! default 64 MiB); a database of any size is read page by page on demand.

use std::sync::Mutex;

use lru::LruCache;

use crate::store::{PAGE_SIZE, PageBuf, PageNo};

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
    lru: LruCache<PageNo, PageBuf>,
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

impl Inner {
    /// Caches a page, dropping the least recently used beyond the limit.
    fn insert(&mut self, no: PageNo, buf: PageBuf) {
        self.lru.put(no, buf);
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
                lru: LruCache::unbounded(),
                cap,
                hits: 0,
                misses: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached page, if present.
    pub fn get(&self, no: PageNo) -> Option<PageBuf> {
        let mut g = self.lock();
        let r = g.lru.get(&no).cloned();
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
        g.insert(no, buf);
    }

    /// Caches a page (replacing an older version).
    pub fn put(&self, no: PageNo, buf: PageBuf) {
        self.lock().insert(no, buf);
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
