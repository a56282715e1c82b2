//! The bounded page cache shared by readers and the writer.
//!
//! Holds verified, immutable page buffers by page number, least recently used
//! first out. Its limit is set in bytes ([`crate::OpenOptions::cache_bytes`],
//! default 64 MiB); a database of any size is read page by page on demand.

use std::num::NonZeroUsize;
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
    lru: LruCache<PageNo, PageBuf>,
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

impl PageCache {
    /// A cache holding at most `bytes` of pages (at least 16 pages).
    pub fn new(bytes: usize) -> Self {
        let pages = (bytes / PAGE_SIZE).max(16);
        let cap = NonZeroUsize::new(pages).unwrap_or(NonZeroUsize::MIN);
        PageCache {
            inner: Mutex::new(Inner {
                lru: LruCache::new(cap),
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

    /// Caches a page (replacing an older version).
    pub fn put(&self, no: PageNo, buf: PageBuf) {
        self.lock().lru.put(no, buf);
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
            capacity_pages: g.lru.cap().get() as u64,
            hits: g.hits,
            misses: g.misses,
        }
    }
}
