//! The in-memory page store: for tests, edge workers without persistent storage,
//! and as the reference implementation of the [`PageStore`] contract.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Commit, PageBuf, PageNo, PageStore, StoreError, validate_commit};
use crate::platform::BoxFuture;

#[derive(Default)]
struct Inner {
    pages: HashMap<PageNo, PageBuf>,
    meta: Option<Vec<u8>>,
    closed: bool,
    commits: u64,
}

/// A page store that keeps everything in memory. Cloning is not supported; share
/// it with `Arc` if needed.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes a closed store usable again (simulates reopening the same storage).
    pub fn reopen(&self) {
        self.lock().closed = false;
    }

    /// Number of commits applied so far.
    pub fn commit_count(&self) -> u64 {
        self.lock().commits
    }

    /// Number of distinct pages held.
    pub fn page_count(&self) -> usize {
        self.lock().pages.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave Inner half-updated (every
        // update is a single insert/assign), so poisoning is safe to ignore.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PageStore for MemoryStore {
    fn read_page(&self, no: PageNo) -> BoxFuture<'_, Result<PageBuf, StoreError>> {
        let r = {
            let g = self.lock();
            if g.closed {
                Err(StoreError::Closed)
            } else {
                g.pages
                    .get(&no)
                    .cloned()
                    .ok_or(StoreError::PageNotFound(no))
            }
        };
        Box::pin(async move { r })
    }

    fn read_meta(&self) -> BoxFuture<'_, Result<Option<Vec<u8>>, StoreError>> {
        let r = {
            let g = self.lock();
            if g.closed {
                Err(StoreError::Closed)
            } else {
                Ok(g.meta.clone())
            }
        };
        Box::pin(async move { r })
    }

    fn commit(&self, commit: Commit) -> BoxFuture<'_, Result<(), StoreError>> {
        let r = validate_commit(&commit).and_then(|()| {
            let mut g = self.lock();
            if g.closed {
                return Err(StoreError::Closed);
            }
            for (no, buf) in commit.pages {
                g.pages.insert(no, buf);
            }
            g.meta = Some(commit.meta);
            g.commits += 1;
            Ok(())
        });
        Box::pin(async move { r })
    }

    fn sync(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        let r = if self.lock().closed {
            Err(StoreError::Closed)
        } else {
            Ok(())
        };
        Box::pin(async move { r })
    }

    fn shrink(&self, pages: PageNo) -> BoxFuture<'_, Result<(), StoreError>> {
        let r = {
            let mut g = self.lock();
            if g.closed {
                Err(StoreError::Closed)
            } else {
                g.pages.retain(|no, _| *no < pages);
                Ok(())
            }
        };
        Box::pin(async move { r })
    }

    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.lock().closed = true;
        Box::pin(async { Ok(()) })
    }
}
