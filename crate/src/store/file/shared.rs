//! The state a [`FileStore`](super::FileStore) handle shares with its writer
//! thread: the data file, what readers see ([`View`]), the poison flag and
//! the counters.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::store::vfs::VfsFile;
use crate::store::{PAGE_SIZE, PageBuf, PageLocation, PageMap, PageNo, StoreError};

use super::{DATA_START, FRAME_HEADER, FileStoreStats, io_err};

/// The counters behind [`FileStoreStats`](super::FileStoreStats).
#[derive(Default)]
pub(super) struct Stats {
    pub fsyncs: AtomicU64,
    pub groups: AtomicU64,
    pub commits: AtomicU64,
    pub wal_bytes_written: AtomicU64,
    pub checkpoints: AtomicU64,
    pub staged_frames: AtomicU64,
    pub staged_kept: AtomicU64,
    pub inline_commits: AtomicU64,
}

/// What readers see: the newest version of every page still in the WAL, the
/// current meta record, and how many pages the data file holds.
pub(super) struct View {
    /// Pages whose newest version is in the WAL: the page and the byte
    /// offset of its frame.
    pub wal_pages: PageMap<(PageBuf, u64)>,
    pub meta: Option<Vec<u8>>,
    pub data_pages: u64,
}

/// Shared between the handle and the writer thread.
pub(super) struct Shared {
    pub data: Box<dyn VfsFile>,
    pub data_path: String,
    pub wal_path: String,
    pub view: RwLock<View>,
    pub poison: Mutex<Option<String>>,
    pub closed: AtomicBool,
    pub stats: Stats,
}

impl Shared {
    /// The state of a store just opened: `data` (`data_len` bytes long),
    /// the replayed WAL pages and the current meta record.
    pub fn new(
        data: Box<dyn VfsFile>,
        data_len: u64,
        (data_path, wal_path): (String, String),
        wal_pages: PageMap<(PageBuf, u64)>,
        meta: Option<Vec<u8>>,
    ) -> Shared {
        Shared {
            data,
            data_path,
            wal_path,
            view: RwLock::new(View {
                wal_pages,
                meta,
                data_pages: data_len.saturating_sub(DATA_START) / PAGE_SIZE as u64,
            }),
            poison: Mutex::new(None),
            closed: AtomicBool::new(false),
            stats: Stats::default(),
        }
    }

    /// Reads the view.
    pub fn view(&self) -> RwLockReadGuard<'_, View> {
        // View updates are single assignments/inserts; a panic cannot leave it torn.
        self.view.read().unwrap_or_else(|e| e.into_inner())
    }
    /// Changes the view.
    pub fn view_mut(&self) -> RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(|e| e.into_inner())
    }
    /// Why the store is poisoned, if it is.
    pub fn poisoned(&self) -> Option<String> {
        self.poison
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    /// Poisons the store (the first reason stays).
    pub fn set_poison(&self, why: &str) {
        let mut p = self.poison.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_none() {
            *p = Some(why.to_string());
        }
    }

    /// The meta record of the last commit (`Closed` once closed).
    pub fn read_meta(&self) -> Result<Option<Vec<u8>>, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            Err(StoreError::Closed)
        } else {
            Ok(self.view().meta.clone())
        }
    }

    /// The newest committed version of page `no`: from the WAL's pages in
    /// memory, else from the data file.
    pub fn read_page(&self, no: PageNo) -> Result<PageBuf, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        if no == 0 {
            return Err(StoreError::PageNotFound(0));
        }
        // Hold the view lock across the data-file read: the WAL index cannot
        // change meanwhile (only under the write lock), and a checkpoint
        // writes into the data file only pages the index holds, which are
        // read from memory above.
        let view = self.view();
        if let Some((p, _)) = view.wal_pages.get(&no) {
            return Ok(p.clone());
        }
        if no > view.data_pages {
            return Err(StoreError::PageNotFound(no));
        }
        let mut buf = vec![0u8; PAGE_SIZE];
        let off = DATA_START + (no - 1) * PAGE_SIZE as u64;
        let n = self
            .data
            .read_at(&mut buf, off)
            .map_err(|e| io_err("read page", &self.data_path, e))?;
        if n < PAGE_SIZE {
            return Err(StoreError::Corrupt {
                file: self.data_path.clone(),
                page: Some(no),
                offset: off,
                reason: format!("short read: {n} of {PAGE_SIZE} bytes"),
            });
        }
        Ok(Arc::new(buf))
    }

    /// Where the newest version of page `no` is kept.
    pub fn page_location(&self, no: PageNo) -> Option<PageLocation> {
        let view = self.view();
        if let Some((_, at)) = view.wal_pages.get(&no) {
            return Some(PageLocation {
                file: self.wal_path.clone(),
                offset: at + FRAME_HEADER as u64,
            });
        }
        (no >= 1 && no <= view.data_pages).then(|| PageLocation {
            file: self.data_path.clone(),
            offset: DATA_START + (no - 1) * PAGE_SIZE as u64,
        })
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> FileStoreStats {
        let s = &self.stats;
        FileStoreStats {
            fsyncs: s.fsyncs.load(Ordering::Relaxed),
            groups: s.groups.load(Ordering::Relaxed),
            commits: s.commits.load(Ordering::Relaxed),
            wal_bytes_written: s.wal_bytes_written.load(Ordering::Relaxed),
            checkpoints: s.checkpoints.load(Ordering::Relaxed),
            staged_frames: s.staged_frames.load(Ordering::Relaxed),
            staged_kept: s.staged_kept.load(Ordering::Relaxed),
            inline_commits: s.inline_commits.load(Ordering::Relaxed),
        }
    }
}
