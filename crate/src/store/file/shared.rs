//! The state a [`FileStore`](super::FileStore) handle shares with its writer
//! thread: the data file, what readers see ([`View`]), the poison flag and
//! the counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::store::vfs::VfsFile;
use crate::store::{PAGE_SIZE, PageBuf, PageNo};

use super::DATA_START;

/// The counters behind [`FileStoreStats`](super::FileStoreStats).
#[derive(Default)]
pub(super) struct Stats {
    pub fsyncs: AtomicU64,
    pub groups: AtomicU64,
    pub commits: AtomicU64,
    pub wal_bytes_written: AtomicU64,
    pub checkpoints: AtomicU64,
}

/// What readers see: the newest version of every page still in the WAL, the
/// current meta record, and how many pages the data file holds.
pub(super) struct View {
    /// Pages whose newest version is in the WAL: the page and its frame's slot.
    pub wal_pages: HashMap<PageNo, (PageBuf, u64)>,
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
        wal_pages: HashMap<PageNo, (PageBuf, u64)>,
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
}
