//! Page storage: the one trait every backend implements.
//!
//! A page store holds fixed-size pages addressed by number plus one small *meta
//! record*. Its only write operation is [`PageStore::commit`]: a set of pages and a
//! new meta record, applied atomically (after a crash, either all of a commit is
//! visible or none of it). The engine never overwrites a page that the last
//! committed meta record can reach, so a store needs to keep only the newest
//! version of each page.
//!
//! The shape is chosen so that both a file with a write-ahead log (native) and a
//! transactional key/value store such as IndexedDB (one readwrite transaction per
//! commit) implement it directly.

use std::sync::Arc;

use crate::platform::{BoxFuture, MaybeSend, MaybeSync};

mod memory;
pub(crate) mod spare;
pub use memory::MemoryStore;

#[cfg(all(not(target_arch = "wasm32"), any(test, feature = "testing")))]
pub mod fault;
pub mod file;
#[cfg(target_arch = "wasm32")]
pub mod idb;
#[cfg(target_arch = "wasm32")]
pub mod opfs;
pub mod vfs;

/// Page number. Page 0 is reserved (the engine uses it as a null pointer).
pub type PageNo = u64;

/// Size in bytes of every page, in every store, on every platform.
pub const PAGE_SIZE: usize = 4096;

/// Largest meta record a store must accept.
pub const MAX_META: usize = 1024;

/// An immutable page buffer (always exactly [`PAGE_SIZE`] bytes).
pub type PageBuf = Arc<Vec<u8>>;

/// The hashing of the engine's maps keyed by page number (a transaction's
/// dirty pages, the commit in flight, the page cache): a multiply and a
/// fold, a few instructions against SipHash's few dozen. Page numbers are
/// the engine's own (allocated from the free list or the end of the file),
/// never chosen by a peer, so keyed hashing buys nothing here.
#[derive(Clone, Copy, Debug, Default)]
pub struct PageHash;

impl std::hash::BuildHasher for PageHash {
    type Hasher = PageHasher;
    fn build_hasher(&self) -> PageHasher {
        PageHasher(0)
    }
}

/// The hasher of [`PageHash`].
#[derive(Clone, Copy, Debug, Default)]
pub struct PageHasher(u64);

impl std::hash::Hasher for PageHasher {
    fn finish(&self) -> u64 {
        // The multiply spreads a page number over the high bits (the
        // table's tags); the fold brings them down to the low ones (its
        // slots).
        let h = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^ (h >> 32)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A map keyed by page number ([`PageHash`]).
pub type PageMap<V> = std::collections::HashMap<PageNo, V, PageHash>;
/// A set of page numbers ([`PageHash`]).
pub type PageSet = std::collections::HashSet<PageNo, PageHash>;

/// Whether a commit waits for durable storage before it resolves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Resolve only after the commit is on durable storage (fsync / strict).
    Durable,
    /// Resolve once the commit is written and visible; a later
    /// [`PageStore::sync`] (or durable commit) makes it durable.
    Relaxed,
}

/// One atomic commit: pages plus the new meta record.
#[derive(Clone, Debug)]
pub struct Commit {
    /// Pages to write; each buffer is exactly [`PAGE_SIZE`] bytes, page numbers >= 1.
    pub pages: Vec<(PageNo, PageBuf)>,
    /// The engine's meta record after this commit (at most [`MAX_META`] bytes).
    pub meta: Vec<u8>,
    /// Durability requested for this commit.
    pub durability: Durability,
}

/// Errors of page stores.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An operating-system I/O call failed.
    #[error("I/O error during {op} on {path}: {source}")]
    Io {
        /// What the store was doing (`"fsync wal"`, `"read page"`, ...).
        op: &'static str,
        /// The file involved.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Stored bytes failed a checksum or structural check.
    #[error("corruption in {file} at offset {offset}{}: {reason}", page.map(|p| format!(" (page {p})")).unwrap_or_default())]
    Corrupt {
        /// The file (or object store) holding the bad bytes.
        file: String,
        /// The page concerned, when known.
        page: Option<PageNo>,
        /// Byte offset in `file`.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A page that was never written was read.
    #[error("page {0} does not exist in the store")]
    PageNotFound(PageNo),
    /// A page buffer of the wrong size, page number 0, or an oversized meta record.
    #[error("invalid commit: {0}")]
    InvalidCommit(String),
    /// An earlier write or fsync failed; the store refuses further writes until it
    /// is reopened (its on-disk state is recovered on open).
    #[error("the store failed earlier ({0}) and must be reopened")]
    Poisoned(String),
    /// The store was closed.
    #[error("the store is closed")]
    Closed,
    /// The files belong to a newer or unknown format.
    #[error("unsupported format in {file}: {reason}")]
    Unsupported {
        /// The file concerned.
        file: String,
        /// What is not supported.
        reason: String,
    },
    /// The storage quota (browser) or the disk is full; nothing of the commit was applied.
    #[error("storage quota exceeded: {0}")]
    QuotaExceeded(String),
    /// Another opener holds the store: a writer is refused while anyone else
    /// has it open, a read-only opener while a writer has it.
    #[error("{path} is in use{}: a database has one writer at a time (stop the other process, or read through it)", holder.as_ref().map(|h| format!(" by {h}")).unwrap_or_default())]
    Locked {
        /// The lock file.
        path: String,
        /// The holder, as far as the lock file says (a writer writes its
        /// process id there).
        holder: Option<String>,
    },
    /// A write on a store opened read-only.
    #[error("the store is open read-only")]
    ReadOnly,
    /// Another error from a host-supplied store.
    #[error("{0}")]
    Other(String),
}

impl StoreError {
    /// A short stable code for logs, metrics and the JS bindings.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Io { .. } => "io",
            StoreError::Corrupt { .. } => "corrupt",
            StoreError::PageNotFound(_) => "page_not_found",
            StoreError::InvalidCommit(_) => "invalid_commit",
            StoreError::Poisoned(_) => "poisoned",
            StoreError::Closed => "closed",
            StoreError::Unsupported { .. } => "unsupported",
            StoreError::QuotaExceeded(_) => "quota_exceeded",
            StoreError::Locked { .. } => "locked",
            StoreError::ReadOnly => "read_only",
            StoreError::Other(_) => "other",
        }
    }
}

/// Checks the shape of a commit (page sizes, page numbers, meta size).
pub fn validate_commit(c: &Commit) -> Result<(), StoreError> {
    if c.meta.len() > MAX_META {
        return Err(StoreError::InvalidCommit(format!(
            "meta record of {} bytes exceeds {MAX_META}",
            c.meta.len()
        )));
    }
    for (no, buf) in &c.pages {
        if *no == 0 {
            return Err(StoreError::InvalidCommit(
                "page number 0 is reserved".into(),
            ));
        }
        if buf.len() != PAGE_SIZE {
            return Err(StoreError::InvalidCommit(format!(
                "page {no} has {} bytes, expected {PAGE_SIZE}",
                buf.len()
            )));
        }
    }
    Ok(())
}

/// Fixed-size page storage with atomic multi-page commits.
///
/// Implementations: [`MemoryStore`], the native `file::FileStore` (write-ahead
/// log, group commit, fsync), [`file::LocalFileStore`] (the same log without
/// the writer thread), and, in the browser, IndexedDB and OPFS (a
/// `LocalFileStore` over synchronous access handles).
pub trait PageStore: MaybeSend + MaybeSync + 'static {
    /// Reads the newest committed version of page `no`.
    fn read_page(&self, no: PageNo) -> BoxFuture<'_, Result<PageBuf, StoreError>>;

    /// Reads several pages at once: the result holds one entry per number of
    /// `nos`, in order. The engine calls it for read-ahead (a scan's next
    /// leaves, the leaves of a batch of lookups); a store where one round
    /// trip for many pages is cheaper than many round trips overrides it
    /// (IndexedDB: every read issued in one transaction). The default reads
    /// them one after the other.
    fn read_pages<'a>(
        &'a self,
        nos: &'a [PageNo],
    ) -> BoxFuture<'a, Vec<Result<PageBuf, StoreError>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(nos.len());
            for &no in nos {
                out.push(self.read_page(no).await);
            }
            out
        })
    }

    /// Pages the store read along with those of its last read and knows to
    /// be their newest committed versions, taken once: the engine caches
    /// them, to be verified when first asked for. An IndexedDB run is read
    /// whole for any of its pages (see `store::idb`); the other stores read
    /// only what is asked and return nothing here.
    ///
    /// Only valid in the same turn as the read that produced them: a store
    /// returns nothing once a commit was issued after that read started.
    fn take_read_along(&self) -> Vec<(PageNo, PageBuf)> {
        Vec::new()
    }

    /// The meta record of the newest commit, or `None` for an empty store.
    fn read_meta(&self) -> BoxFuture<'_, Result<Option<Vec<u8>>, StoreError>>;

    /// Applies `commit` atomically. With [`Durability::Durable`] it resolves only once
    /// the commit (and every commit before it) is on durable storage.
    ///
    /// Commits are applied in call order. After an error the store may refuse
    /// further commits ([`StoreError::Poisoned`]) until reopened.
    fn commit(&self, commit: Commit) -> BoxFuture<'_, Result<(), StoreError>>;

    /// [`commit`](Self::commit), called by the engine when no other
    /// transaction waits for the store (a lone writer): a store that
    /// normally hands commits to another thread may do this one's I/O in
    /// the caller's thread instead, saving the two thread wake-ups of the
    /// hand-off, since there is nothing for the caller to do meanwhile.
    /// The same contract as `commit` (order, durability, poisoning).
    ///
    /// Called only if [`commits_alone`](Self::commits_alone) is true. The
    /// default calls `commit`.
    fn commit_alone(&self, commit: Commit) -> BoxFuture<'_, Result<(), StoreError>> {
        self.commit(commit)
    }

    /// Whether this store does anything different in
    /// [`commit_alone`](Self::commit_alone) (default `false`). When true,
    /// the engine makes sure a transaction is alone before calling it: it
    /// lets other ready tasks run once, so that writers that arrive
    /// together still form one group.
    fn commits_alone(&self) -> bool {
        false
    }

    /// Durability barrier: resolves once every commit made so far is durable.
    fn sync(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Pages of the *next* commit, handed over early so the store can write
    /// them while the engine is still applying a large transaction
    /// (pipelined commit). A hint, never a commit: nothing staged is
    /// visible to reads or survives a crash unless the next [`commit`]
    /// completes, and that commit still lists every page it writes; a store
    /// may skip writing again a listed page whose buffer is the very one it
    /// was staged with (`Arc::ptr_eq`), since the engine never changes a
    /// staged buffer in place. A staged page the commit does not list
    /// belongs to no commit: the engine lists it (zeroed) anyway.
    ///
    /// Called only if [`stage_after_ops`](Self::stage_after_ops) is not 0.
    /// The default does nothing.
    ///
    /// [`commit`]: Self::commit
    fn stage(&self, pages: Vec<(PageNo, PageBuf)>) {
        let _ = pages;
    }

    /// How many operations a transaction applies between two calls of
    /// [`stage`](Self::stage); `0` (the default): the store takes no staged
    /// pages, and the engine does not look for any.
    fn stage_after_ops(&self) -> usize {
        0
    }

    /// Flushes and releases the store. Further calls fail with [`StoreError::Closed`].
    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Where the newest version of page `no` is kept, for error messages: the
    /// file (or object store) and the byte offset in it. `None` when the
    /// store has no such notion or the page is unknown.
    fn page_location(&self, no: PageNo) -> Option<PageLocation> {
        let _ = no;
        None
    }

    /// Makes bytes no longer referenced by the newest commit unrecoverable
    /// from the store's files: old page images a log or journal still holds
    /// are overwritten or dropped, and that is made durable before this
    /// resolves. The engine calls it at the end of a purge
    /// (`Database::purge`), after it has overwritten the freed pages, and
    /// after a flush that overwrote pages a purge had to leave for later.
    ///
    /// The default does nothing: right for a store that keeps only the
    /// newest version of each page, overwritten in place (memory; IndexedDB,
    /// whose own storage engine is beyond its reach).
    fn erase_residue(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }

    /// Gives back the space of pages numbered `pages` and higher: the
    /// newest commit reaches none of them, and no commit will until it
    /// writes them again (a page written again later is read as usual).
    /// The engine calls it after a vacuum (`Database::vacuum`) lowered its
    /// page count; a store cuts its files, and may drop log space a
    /// checkpoint made dead, durably before this resolves.
    ///
    /// The default does nothing (the space stays allocated, reused by later
    /// writes).
    fn shrink(&self, pages: PageNo) -> BoxFuture<'_, Result<(), StoreError>> {
        let _ = pages;
        Box::pin(async { Ok(()) })
    }
}

/// Where a page is kept (see [`PageStore::page_location`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageLocation {
    /// The file (or object store) holding the page.
    pub file: String,
    /// Byte offset of the page in `file`.
    pub offset: u64,
}

impl std::fmt::Display for PageLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte offset {}", self.file, self.offset)
    }
}

impl<S: PageStore + ?Sized> PageStore for Arc<S> {
    fn read_page(&self, no: PageNo) -> BoxFuture<'_, Result<PageBuf, StoreError>> {
        (**self).read_page(no)
    }
    fn read_pages<'a>(
        &'a self,
        nos: &'a [PageNo],
    ) -> BoxFuture<'a, Vec<Result<PageBuf, StoreError>>> {
        (**self).read_pages(nos)
    }
    fn read_meta(&self) -> BoxFuture<'_, Result<Option<Vec<u8>>, StoreError>> {
        (**self).read_meta()
    }
    fn take_read_along(&self) -> Vec<(PageNo, PageBuf)> {
        (**self).take_read_along()
    }
    fn commit(&self, commit: Commit) -> BoxFuture<'_, Result<(), StoreError>> {
        (**self).commit(commit)
    }
    fn commit_alone(&self, commit: Commit) -> BoxFuture<'_, Result<(), StoreError>> {
        (**self).commit_alone(commit)
    }
    fn commits_alone(&self) -> bool {
        (**self).commits_alone()
    }
    fn sync(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        (**self).sync()
    }
    fn stage(&self, pages: Vec<(PageNo, PageBuf)>) {
        (**self).stage(pages)
    }
    fn stage_after_ops(&self) -> usize {
        (**self).stage_after_ops()
    }
    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        (**self).close()
    }
    fn page_location(&self, no: PageNo) -> Option<PageLocation> {
        (**self).page_location(no)
    }
    fn erase_residue(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        (**self).erase_residue()
    }
    fn shrink(&self, pages: PageNo) -> BoxFuture<'_, Result<(), StoreError>> {
        (**self).shrink(pages)
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    /// The table takes a slot from a hash's low bits and a tag from its top
    /// seven: both must vary with the page number as a random hash's would
    /// (about 63 % of 4,096 slots hit by 4,096 keys), or a map of pages
    /// would probe long chains (an identity hash gives every page tag 0; the
    /// multiply alone puts every multiple of 2^20 in slot 0).
    #[test]
    fn page_hashes_spread_over_slots_and_tags() {
        let h = |no: PageNo| PageHash.hash_one(no);
        let slots: std::collections::HashSet<u64> = (1..=4096).map(|no| h(no) & 4095).collect();
        assert!(
            slots.len() > 4096 / 2,
            "{} distinct slots of 4096",
            slots.len()
        );
        let tags: std::collections::HashSet<u64> = (1..=4096).map(|no| h(no) >> 57).collect();
        assert_eq!(tags.len(), 128, "every tag is used");
        // Page numbers far apart, as a large file's are, spread too.
        let far: std::collections::HashSet<u64> =
            (1..=4096u64).map(|i| h(i << 20) & 4095).collect();
        assert!(far.len() > 4096 / 2, "{} distinct slots of 4096", far.len());
    }
}
