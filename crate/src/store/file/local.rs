//! [`LocalFileStore`]: the file store without its writer thread, and the open
//! both stores share ([`open_writer`]).
//!
//! The browser has no threads in wasm32, and the Origin Private File System's
//! synchronous access handles (`store::opfs`) block the worker that calls
//! them anyway. So this store keeps the [`Writer`] in the handle and runs it
//! inline: a commit appends its frames to the WAL, flushes (`sync_data`) when
//! it is durable, publishes the commit to readers and returns; a checkpoint
//! runs in the same call once the WAL passes
//! [`FileStoreOptions::checkpoint_wal_bytes`]. Format, recovery, checkpoints,
//! the erasure of a purge and the shrink of a vacuum are the file store's own
//! code, so the native crash tests over `FaultVfs` (`crate/tests/
//! local_store_crash.rs`) exercise what the browser runs. There is no group
//! commit: one commit is one WAL write and, when durable, one flush.
//! Closing checkpoints and also empties the WAL file, so the next open reads
//! no log.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use super::format::{Header, encode_header, new_salt};
use super::recovery::{pick_header, recover};
use super::shared::Shared;
use super::writer::Writer;
use super::{DATA_FILE, FileStoreOptions, FileStoreStats, RecoveryReport, WAL_FILE, io_err};
use crate::platform::BoxFuture;
use crate::store::vfs::{DirLock, LockError, LockMode, Vfs};
use crate::store::{
    Commit, Durability, PageBuf, PageLocation, PageNo, PageStore, StoreError, validate_commit,
};

/// The data file and the WAL of the store in `dir`, and their names for
/// messages.
pub(super) fn files_in(dir: &Path) -> (PathBuf, PathBuf, String, String) {
    let (data, wal) = (dir.join(DATA_FILE), dir.join(WAL_FILE));
    let (dp, wp) = (data.display().to_string(), wal.display().to_string());
    (data, wal, dp, wp)
}

/// The lock error of a store directory as a [`StoreError`].
pub(super) fn lock_err(e: LockError) -> StoreError {
    match e {
        LockError::Held { path, holder } => StoreError::Locked {
            path: path.display().to_string(),
            holder,
        },
        LockError::Io { path, source } => io_err("lock", &path.display().to_string(), source),
    }
}

/// A store opened for writing, before anyone runs its writer.
pub(super) struct Opened {
    pub shared: Arc<Shared>,
    pub writer: Writer,
    pub recovery: RecoveryReport,
    pub lock: DirLock,
}

/// Opens (creating if missing) the store in `dir` for writing: takes the
/// directory's exclusive lock, picks the header slot, replays the WAL, and
/// checkpoints so the store starts with a fresh WAL generation. An open that
/// fails leaves the files no longer than it found them. See
/// [`super::FileStore::open`].
// On wasm32 `Shared` is neither `Send` nor `Sync` (its files are JS
// objects); the `Arc` is the type the file store shares with its thread.
#[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
pub(super) fn open_writer(dir: &Path, opts: FileStoreOptions) -> Result<Opened, StoreError> {
    let vfs = opts.vfs.clone();
    vfs.create_dir_all(dir)
        .map_err(|e| io_err("create directory", &dir.display().to_string(), e))?;
    let lock = vfs.lock_dir(dir, LockMode::Exclusive).map_err(lock_err)?;
    let (data_path, wal_path, dp, wp) = files_in(dir);
    let data = vfs
        .open(&data_path, true)
        .map_err(|e| io_err("open data file", &dp, e))?;
    let data_len = data
        .len()
        .map_err(|e| io_err("read data file length", &dp, e))?;
    let wal_len = if vfs.exists(&wal_path) {
        let w = vfs
            .open(&wal_path, false)
            .map_err(|e| io_err("open wal", &wp, e))?;
        w.len().map_err(|e| io_err("read wal length", &wp, e))?
    } else {
        0
    };

    let (active_slot, header) = match pick_header(&*data, &dp, data_len, wal_len)? {
        Some(h) => h,
        None => {
            // A new store (or one whose creation crashed before any commit).
            let salt = new_salt(&[]);
            let h = Header {
                seq: 1,
                salt,
                next_salt: new_salt(&[salt]),
                meta: None,
            };
            data.write_at(&encode_header(&h), 0)
                .map_err(|e| io_err("write header", &dp, e))?;
            data.sync_data()
                .map_err(|e| io_err("fsync data file", &dp, e))?;
            (0, h)
        }
    };

    // The WAL is created only once a header is durable.
    let wal = vfs
        .open(&wal_path, true)
        .map_err(|e| io_err("open wal", &wp, e))?;
    let mut rec = recover(&*wal, (&wp, &dp), data_len, active_slot, &header)?;
    let recovery = rec.report();
    let pages = std::mem::take(&mut rec.pages);
    let meta = rec.meta_over(header.meta.clone());
    let shared = Arc::new(Shared::new(data, data_len, (dp, wp), pages, meta));
    let mut writer = Writer::new(
        shared.clone(),
        wal,
        opts,
        (active_slot, header),
        wal_len,
        &rec,
    );
    // Always start a fresh WAL generation: whatever lies beyond the recovered
    // prefix (a torn tail) then carries a dead salt and can never be replayed.
    if let Err(e) = writer.checkpoint() {
        // No header points past the old data-file end yet, and every page
        // the checkpoint copied is still in the durable WAL: give back what
        // it grew (a full disk must not get fuller from a failed open).
        if !writer.wrote_header() {
            let _ = shared.data.set_len(data_len);
            let _ = shared.data.sync_data();
        }
        return Err(e);
    }
    Ok(Opened {
        shared,
        writer,
        recovery,
        lock,
    })
}

/// A failed write of the WAL or the data file because the storage is full
/// (`ErrorKind::StorageFull`: `ENOSPC`, or the browser's `QuotaExceededError`)
/// as [`StoreError::QuotaExceeded`]; other errors unchanged.
fn quota(e: StoreError) -> StoreError {
    match e {
        StoreError::Io { op, path, source } if source.kind() == std::io::ErrorKind::StorageFull => {
            StoreError::QuotaExceeded(format!("{op} on {path}: {source}"))
        }
        e => e,
    }
}

/// The file store's format and recovery with the writer run inline, on the
/// caller's thread: no writer thread, no group commit (see the module
/// documentation). The page store of the browser's Origin Private File System
/// (`store::opfs`); natively usable over any [`Vfs`].
///
/// A [`Durability::Durable`] commit returns once its frames are written and
/// the WAL is flushed; a [`Durability::Relaxed`] one once written (visible to
/// reads). After a failed write or flush the store is poisoned
/// ([`StoreError::Poisoned`]) until reopened, as the file store; a write
/// refused because the storage is full fails with
/// [`StoreError::QuotaExceeded`] (nothing of that commit is visible, and the
/// store is then poisoned too). Opening holds the directory's exclusive lock:
/// a second opener gets [`StoreError::Locked`].
pub struct LocalFileStore {
    shared: Arc<Shared>,
    /// The writer; `None` once closed.
    writer: Mutex<Option<Writer>>,
    recovery: RecoveryReport,
    vfs: Arc<dyn Vfs>,
    /// The directory lock, held until the store is closed or dropped.
    lock: Mutex<Option<DirLock>>,
}

impl std::fmt::Debug for LocalFileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalFileStore")
            .field("data", &self.shared.data_path)
            .field("wal", &self.shared.wal_path)
            .field("stats", &self.stats())
            .finish()
    }
}

impl LocalFileStore {
    /// Opens (creating if missing) the store in directory `dir` of
    /// `opts.vfs`, recovers it (as [`super::FileStore::open`]: every complete
    /// transaction of the WAL replayed, a torn tail dropped, damage to a
    /// flushed part refused with [`StoreError::Corrupt`]) and checkpoints.
    pub fn open(
        dir: impl AsRef<Path>,
        opts: FileStoreOptions,
    ) -> Result<LocalFileStore, StoreError> {
        let vfs = opts.vfs.clone();
        let o = open_writer(dir.as_ref(), opts)?;
        Ok(LocalFileStore {
            shared: o.shared,
            writer: Mutex::new(Some(o.writer)),
            recovery: o.recovery,
            vfs,
            lock: Mutex::new(Some(o.lock)),
        })
    }

    /// What recovery found in the WAL when the store was opened.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// A snapshot of the store's counters.
    pub fn stats(&self) -> FileStoreStats {
        self.shared.stats()
    }

    fn writer(&self) -> MutexGuard<'_, Option<Writer>> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the writer, if the store is open and not poisoned.
    fn with_writer(
        &self,
        f: impl FnOnce(&mut Writer) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        if let Some(p) = self.shared.poisoned() {
            return Err(StoreError::Poisoned(p));
        }
        let mut w = self.writer();
        let w = w.as_mut().ok_or(StoreError::Closed)?;
        f(w).map_err(quota)
    }

    /// Closes the writer (final checkpoint), releases the files and the lock.
    fn shut(&self) -> Result<(), StoreError> {
        self.shared.closed.store(true, Ordering::Release);
        let writer = self.writer().take();
        let r = match writer {
            Some(mut w) => {
                let mut r = w.finish();
                if r.is_ok() {
                    // Empty the WAL file too (the file store keeps it
                    // allocated): its frames are dead once the final
                    // checkpoint's header is durable, and the next open then
                    // reads no log instead of up to a checkpoint's worth
                    // (OPFS: the reopen time). The data file is not cut.
                    let pages = self.shared.view().data_pages + 1;
                    r = w.shrink(pages);
                }
                drop(w);
                r
            }
            None => Ok(()),
        };
        self.vfs.release();
        drop(self.lock.lock().unwrap_or_else(|e| e.into_inner()).take());
        r.map_err(quota)
    }
}

impl PageStore for LocalFileStore {
    fn read_page(&self, no: PageNo) -> BoxFuture<'_, Result<PageBuf, StoreError>> {
        let r = self.shared.read_page(no);
        Box::pin(async move { r })
    }

    fn read_meta(&self) -> BoxFuture<'_, Result<Option<Vec<u8>>, StoreError>> {
        let r = self.shared.read_meta();
        Box::pin(async move { r })
    }

    fn commit(&self, commit: Commit) -> BoxFuture<'_, Result<(), StoreError>> {
        let r = validate_commit(&commit).and_then(|()| {
            self.with_writer(|w| {
                let durable = commit.durability == Durability::Durable;
                w.append(std::slice::from_ref(&commit), durable)?;
                if w.wants_checkpoint() {
                    // A failure poisons the store; the next call reports it
                    // (this commit is already in the WAL).
                    let _ = w.checkpoint();
                }
                Ok(())
            })
        });
        Box::pin(async move { r })
    }

    fn sync(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        let r = self.with_writer(|w| w.append(&[], true));
        Box::pin(async move { r })
    }

    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        let r = self.shut();
        Box::pin(async move { r })
    }

    fn page_location(&self, no: PageNo) -> Option<PageLocation> {
        self.shared.page_location(no)
    }

    fn erase_residue(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        let r = self.with_writer(|w| w.erase_residue());
        Box::pin(async move { r })
    }

    fn shrink(&self, pages: PageNo) -> BoxFuture<'_, Result<(), StoreError>> {
        let r = self.with_writer(|w| w.shrink(pages));
        Box::pin(async move { r })
    }
}

impl Drop for LocalFileStore {
    fn drop(&mut self) {
        // Dropped without close: checkpoint and release as close would.
        let open = self.writer().is_some();
        if open {
            let _ = self.shut();
        }
    }
}
