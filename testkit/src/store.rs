//! [`TestStore`]: a memory store wrapper for engine tests that counts what
//! the engine asks of its store and can slow or fail its commits.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use outpost::store::MemoryStore;

/// A memory store wrapper for tests: counts page reads, and optionally makes
/// every commit yield to the executor once before completing (as a real
/// store's fsync would), so writers pile up behind a flush.
pub struct TestStore {
    /// The store it wraps.
    pub inner: Arc<MemoryStore>,
    /// Pages read one by one (`read_page`).
    pub reads: std::sync::atomic::AtomicU64,
    /// Pages read in batches (`read_pages`).
    pub batched: std::sync::atomic::AtomicU64,
    /// Batches read (`read_pages` calls).
    pub batches: std::sync::atomic::AtomicU64,
    /// Commits asking for relaxed durability.
    pub relaxed: std::sync::atomic::AtomicU64,
    /// Durability barriers (`sync`).
    pub syncs: std::sync::atomic::AtomicU64,
    /// Every commit yields to the executor once before it completes.
    pub slow: bool,
    /// While set, commits fail (as a full quota would) and apply nothing.
    pub fail: std::sync::atomic::AtomicBool,
}

impl TestStore {
    /// Wraps `inner`; `slow`: every commit yields to the executor once.
    pub fn new(inner: Arc<MemoryStore>, slow: bool) -> Self {
        TestStore {
            inner,
            reads: Default::default(),
            batched: Default::default(),
            batches: Default::default(),
            relaxed: Default::default(),
            syncs: Default::default(),
            slow,
            fail: Default::default(),
        }
    }
}

type Fut<'a, T> = outpost::platform::BoxFuture<'a, Result<T, outpost::StoreError>>;

impl outpost::PageStore for TestStore {
    fn read_page(&self, no: u64) -> Fut<'_, outpost::store::PageBuf> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.read_page(no)
    }
    fn read_pages<'a>(
        &'a self,
        nos: &'a [u64],
    ) -> outpost::platform::BoxFuture<'a, Vec<Result<outpost::store::PageBuf, outpost::StoreError>>>
    {
        self.batched.fetch_add(nos.len() as u64, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.inner.read_pages(nos)
    }
    fn read_meta(&self) -> Fut<'_, Option<Vec<u8>>> {
        self.inner.read_meta()
    }
    fn commit(&self, c: outpost::store::Commit) -> Fut<'_, ()> {
        if self.fail.load(Ordering::Relaxed) {
            return Box::pin(async {
                Err(outpost::StoreError::QuotaExceeded("test quota".into()))
            });
        }
        if c.durability == outpost::store::Durability::Relaxed {
            self.relaxed.fetch_add(1, Ordering::Relaxed);
        }
        let f = self.inner.commit(c);
        let slow = self.slow;
        Box::pin(async move {
            if slow {
                outpost::platform::yield_once().await;
            }
            f.await
        })
    }
    fn sync(&self) -> Fut<'_, ()> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.inner.sync()
    }
    fn close(&self) -> Fut<'_, ()> {
        self.inner.close()
    }
}
