//! The page stores the bindings can open, as one type (static dispatch; the
//! IndexedDB store is neither `Send` nor `Sync`, so no `Arc<dyn PageStore>`).

use outpost::PageStore;
use outpost::platform::BoxFuture;
use outpost::store::file::LocalFileStore;
use outpost::store::idb::IdbStore;
use outpost::store::{Commit, MemoryStore, PageBuf, PageNo, StoreError};

use crate::host_store::JsPageStore;

/// Where an open database keeps its pages.
pub(crate) enum AnyStore {
    /// In memory (Node, edge runtimes without a host store, tests).
    Memory(MemoryStore),
    /// In IndexedDB (browsers, web workers).
    Idb(IdbStore),
    /// In the Origin Private File System (dedicated workers): the file
    /// store's WAL over synchronous access handles (`outpost::store::opfs`).
    Opfs(LocalFileStore),
    /// In a page store the host supplied as a JS object.
    Host(JsPageStore),
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Memory($s) => $e,
            AnyStore::Idb($s) => $e,
            AnyStore::Opfs($s) => $e,
            AnyStore::Host($s) => $e,
        }
    };
}

impl PageStore for AnyStore {
    fn read_page(&self, no: PageNo) -> BoxFuture<'_, Result<PageBuf, StoreError>> {
        each!(self, s => s.read_page(no))
    }
    fn read_pages<'a>(
        &'a self,
        nos: &'a [PageNo],
    ) -> BoxFuture<'a, Vec<Result<PageBuf, StoreError>>> {
        each!(self, s => s.read_pages(nos))
    }
    fn take_read_along(&self) -> Vec<(PageNo, PageBuf)> {
        each!(self, s => s.take_read_along())
    }
    fn read_meta(&self) -> BoxFuture<'_, Result<Option<Vec<u8>>, StoreError>> {
        each!(self, s => s.read_meta())
    }
    fn commit(&self, commit: Commit) -> BoxFuture<'_, Result<(), StoreError>> {
        each!(self, s => s.commit(commit))
    }
    fn commit_alone(&self, commit: Commit) -> BoxFuture<'_, Result<(), StoreError>> {
        each!(self, s => s.commit_alone(commit))
    }
    fn commits_alone(&self) -> bool {
        each!(self, s => s.commits_alone())
    }
    fn stage(&self, pages: Vec<(PageNo, PageBuf)>) {
        each!(self, s => s.stage(pages))
    }
    fn stage_after_ops(&self) -> usize {
        each!(self, s => s.stage_after_ops())
    }
    fn sync(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        each!(self, s => s.sync())
    }
    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        each!(self, s => s.close())
    }
    fn page_location(&self, no: PageNo) -> Option<outpost::store::PageLocation> {
        each!(self, s => s.page_location(no))
    }
    // Every method is forwarded: a default left in place here would silently
    // skip what the store does (the IndexedDB store's erasure of a purge).
    fn erase_residue(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        each!(self, s => s.erase_residue())
    }
    fn shrink(&self, pages: PageNo) -> BoxFuture<'_, Result<(), StoreError>> {
        each!(self, s => s.shrink(pages))
    }
}
