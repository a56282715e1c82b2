//! The [`FileStore`] handle: opening (locking the directory, recovery, the
//! checkpoint that starts a fresh WAL generation), reads from the view,
//! requests to the writer thread, and closing.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use futures::channel::oneshot;

use super::local::{files_in, lock_err, open_writer};
use super::recovery::{Recovered, pick_header, recover};
use super::shared::Shared;
use super::writer::{Reply, Request, Requests, SharedWriter, Writer, lock_writer};
use super::{FileStoreOptions, FileStoreStats, RecoveryReport, io_err};
use crate::platform::BoxFuture;
use crate::store::vfs::{DirLock, LockMode};
use crate::store::{
    Commit, Durability, PageBuf, PageLocation, PageNo, PageStore, StoreError, validate_commit,
};

/// The largest lone commit written in the caller's thread (pages): a larger
/// one goes to the writer thread, as does one that staged pages. Copying
/// a large commit into the page cache evicts the caller's working set from
/// its core's caches: measured, a 1,000-document commit (about 1.2 MB)
/// written in the caller's thread made the next transactions cost 1–2 µs
/// more CPU per document, 10–25 % of the bulk benchmark's rate, while a
/// one-document commit (about 7 pages) saves the hand-off's 40 µs.
const INLINE_MAX_PAGES: usize = 16;

/// The native page store: a data file and a write-ahead log with group commit.
///
/// Commits go to a dedicated writer thread, which merges all commits pending at
/// the same time into one WAL write and at most one `fdatasync`. A
/// [`Durability::Durable`](crate::store::Durability::Durable) commit resolves only after the fsync covering it; a
/// [`Durability::Relaxed`](crate::store::Durability::Relaxed) one as soon as it is written (and visible to reads). After a
/// failed write or fsync the store is poisoned ([`StoreError::Poisoned`]) until
/// reopened; [`FileStore::open`] recovers the last complete commit.
pub struct FileStore {
    shared: Arc<Shared>,
    tx: Requests,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The writer, which the thread uses and a lone commit borrows
    /// ([`FileStoreOptions::inline_commit`]); `None` if read-only.
    writer: Option<SharedWriter>,
    /// Requests sent to the thread and not yet taken under its lock: a lone
    /// commit is written in the caller's thread only when this is 0 (and
    /// after taking the lock), so it never overtakes a request sent before
    /// it (staged pages above all).
    inflight: Arc<AtomicU64>,
    /// [`FileStoreOptions::inline_commit`].
    inline_commit: bool,
    /// Opened with [`FileStore::open_read_only`]: no writer thread, no writes.
    read_only: bool,
    recovery: RecoveryReport,
    /// [`FileStoreOptions::stage_after_ops`].
    stage_after_ops: usize,
    /// The directory lock, held until the store is closed or dropped.
    lock: Mutex<Option<DirLock>>,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("data", &self.shared.data_path)
            .field("wal", &self.shared.wal_path)
            .field("stats", &self.stats())
            .finish()
    }
}

impl FileStore {
    /// Opens (creating if missing) the store in directory `dir` for reading
    /// and writing, and recovers it: replays every complete transaction of the
    /// WAL, drops a torn tail, refuses to open ([`StoreError::Corrupt`]) if an
    /// already-fsynced part is damaged, then checkpoints so the store starts
    /// with an empty WAL.
    ///
    /// The store holds the exclusive lock of `dir` (the file `dir/LOCK`) until
    /// it is closed or dropped: a second opener, writer or reader, in this or
    /// another process, is refused with [`StoreError::Locked`]. An open that
    /// fails leaves the files no longer than it found them.
    pub fn open(dir: impl AsRef<Path>, opts: FileStoreOptions) -> Result<FileStore, StoreError> {
        let stage_after_ops = opts.stage_after_ops;
        let inline_commit = opts.inline_commit;
        let o = open_writer(dir.as_ref(), opts)?;
        let writer = Arc::new(Mutex::new(Some(o.writer)));
        let inflight = Arc::new(AtomicU64::new(0));
        let (tx, thread) = Writer::spawn(writer.clone(), inflight.clone(), &o.shared.wal_path)?;
        Ok(FileStore {
            shared: o.shared,
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            writer: Some(writer),
            inflight,
            inline_commit,
            read_only: false,
            recovery: o.recovery,
            stage_after_ops,
            lock: Mutex::new(Some(o.lock)),
        })
    }

    /// Opens the existing store in directory `dir` for reading only. It
    /// writes nothing, ever: no checkpoint, no header, no new or longer file,
    /// not even the lock file's contents, so it works on a read-only file
    /// system and on a full disk. The WAL is replayed into memory (a WAL that
    /// was never checkpointed is read as the last session left it; a torn
    /// tail is dropped in memory and reported by [`FileStore::recovery`]).
    ///
    /// It takes the lock of `dir` shared: other read-only opens may share it,
    /// a writer may not (the open fails with [`StoreError::Locked`] while a
    /// writer holds the store, and a writer is refused while it is open).
    /// Commits and syncs fail with [`StoreError::ReadOnly`].
    pub fn open_read_only(
        dir: impl AsRef<Path>,
        opts: FileStoreOptions,
    ) -> Result<FileStore, StoreError> {
        let dir = dir.as_ref();
        let vfs = opts.vfs.clone();
        let lock = vfs.lock_dir(dir, LockMode::Shared).map_err(lock_err)?;
        let (data_path, wal_path, dp, wp) = files_in(dir);
        let data = vfs
            .open_read_only(&data_path)
            .map_err(|e| io_err("open data file", &dp, e))?;
        let data_len = data
            .len()
            .map_err(|e| io_err("read data file length", &dp, e))?;
        let wal = if vfs.exists(&wal_path) {
            Some(
                vfs.open_read_only(&wal_path)
                    .map_err(|e| io_err("open wal", &wp, e))?,
            )
        } else {
            None
        };
        let wal_len = match &wal {
            Some(w) => w.len().map_err(|e| io_err("read wal length", &wp, e))?,
            None => 0,
        };
        let rec = match pick_header(&*data, &dp, data_len, wal_len)? {
            // Nothing committed yet: an empty store.
            None => Recovered::default(),
            Some((active_slot, header)) => {
                let mut rec = match &wal {
                    Some(w) => recover(&**w, (&wp, &dp), data_len, active_slot, &header)?,
                    None => Recovered::default(),
                };
                rec.meta = rec.meta_over(header.meta);
                rec
            }
        };
        let recovery = rec.report();
        let shared = Arc::new(Shared::new(data, data_len, (dp, wp), rec.pages, rec.meta));
        Ok(FileStore {
            shared,
            tx: Mutex::new(None),
            thread: Mutex::new(None),
            writer: None,
            inflight: Arc::new(AtomicU64::new(0)),
            inline_commit: false,
            stage_after_ops: 0,
            read_only: true,
            recovery,
            lock: Mutex::new(Some(lock)),
        })
    }

    /// Whether the store was opened with [`FileStore::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// What recovery found in the WAL when the store was opened: how much it
    /// replayed and whether it dropped a torn tail. An operator tells "a torn
    /// write was dropped" from "nothing happened" by this.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// A snapshot of the store's counters.
    pub fn stats(&self) -> FileStoreStats {
        self.shared.stats()
    }

    fn tx(&self) -> MutexGuard<'_, Option<std::sync::mpsc::Sender<Request>>> {
        self.tx.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why no request can be made now (closed, read-only, poisoned), if so.
    fn refusal(&self) -> Option<StoreError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Some(StoreError::Closed);
        }
        if self.read_only {
            return Some(StoreError::ReadOnly);
        }
        self.shared.poisoned().map(StoreError::Poisoned)
    }

    /// Sends `r` to the writer thread, counted in `inflight`; false if the
    /// thread is gone.
    fn post(&self, r: Request) -> bool {
        match &*self.tx() {
            Some(tx) => {
                self.inflight.fetch_add(1, Ordering::AcqRel);
                let sent = tx.send(r).is_ok();
                if !sent {
                    self.inflight.fetch_sub(1, Ordering::AcqRel);
                }
                sent
            }
            None => false,
        }
    }

    /// Sends a request to the writer thread and returns the future of its reply.
    fn send(&self, make: impl FnOnce(Reply) -> Request) -> BoxFuture<'_, Result<(), StoreError>> {
        if let Some(e) = self.refusal() {
            return Box::pin(async move { Err(e) });
        }
        let (reply, rx) = oneshot::channel();
        let sent = self.post(make(reply));
        Box::pin(async move {
            if !sent {
                return Err(StoreError::Closed);
            }
            rx.await.unwrap_or(Err(StoreError::Closed))
        })
    }

    fn join(&self) {
        let handle = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl PageStore for FileStore {
    fn read_page(&self, no: PageNo) -> BoxFuture<'_, Result<PageBuf, StoreError>> {
        let r = self.shared.read_page(no);
        Box::pin(async move { r })
    }

    fn read_meta(&self) -> BoxFuture<'_, Result<Option<Vec<u8>>, StoreError>> {
        let r = self.shared.read_meta();
        Box::pin(async move { r })
    }

    fn commit(&self, commit: Commit) -> BoxFuture<'_, Result<(), StoreError>> {
        if let Err(e) = validate_commit(&commit) {
            return Box::pin(async move { Err(e) });
        }
        self.send(move |reply| Request::Commit(commit, reply))
    }

    /// Writes the commit in the caller's thread if the writer thread has
    /// no request left to take (waiting for its lock if it is still busy
    /// with the last ones), the commit is small and nothing is staged;
    /// otherwise hands it over as [`commit`](PageStore::commit) does. A WAL grown past its
    /// threshold is checkpointed by the thread afterwards, not here.
    fn commit_alone(&self, commit: Commit) -> BoxFuture<'_, Result<(), StoreError>> {
        if let Err(e) = validate_commit(&commit) {
            return Box::pin(async move { Err(e) });
        }
        if let Some(e) = self.refusal() {
            return Box::pin(async move { Err(e) });
        }
        let idle = self.inflight.load(Ordering::Acquire) == 0;
        let small = commit.pages.len() <= INLINE_MAX_PAGES;
        // The thread may still hold its lock for the last requests it took
        // (a checkpoint after them, say): waiting for it here costs what
        // waiting behind them in the channel would.
        let mut guard = match &self.writer {
            Some(w) if self.inline_commit && idle && small => Some(lock_writer(w)),
            _ => None,
        };
        let inline = guard
            .as_mut()
            .and_then(|g| g.as_mut())
            .filter(|w| !w.has_staged());
        let Some(w) = inline else {
            drop(guard);
            return self.send(move |reply| Request::Commit(commit, reply));
        };
        // No request of this caller is pending (`inflight` counts one off
        // only once it is handled), so nothing sent before this commit is
        // overtaken; a request another thread sends meanwhile is concurrent
        // with it, and waits for the lock.
        let durable = commit.durability == Durability::Durable;
        let r = w.append(std::slice::from_ref(&commit), durable);
        let checkpoint = r.is_ok() && w.wants_checkpoint();
        drop(guard);
        if r.is_ok() {
            self.shared
                .stats
                .inline_commits
                .fetch_add(1, Ordering::Relaxed);
        }
        if checkpoint {
            self.post(Request::Checkpoint);
        }
        Box::pin(async move { r })
    }

    fn commits_alone(&self) -> bool {
        self.inline_commit && !self.read_only
    }

    fn sync(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.send(Request::Sync)
    }

    /// Sends the pages to the writer thread, which writes them as the first
    /// frames of the next commit's transaction (see `Writer::stage`). No
    /// reply: a failed write poisons the store, and the commit reports it.
    fn stage(&self, pages: Vec<(PageNo, PageBuf)>) {
        if pages.is_empty() || self.read_only || self.shared.closed.load(Ordering::Acquire) {
            return;
        }
        self.post(Request::Stage(pages));
    }

    fn stage_after_ops(&self) -> usize {
        if self.read_only {
            0
        } else {
            self.stage_after_ops
        }
    }

    /// Checkpoints the WAL into the data file, then overwrites the whole WAL
    /// file with zeros and syncs it: old page images of earlier commits
    /// (which a checkpoint leaves behind, since it restarts the WAL at offset
    /// 0 without truncating it) are gone. The header slots hold only meta
    /// records.
    fn shrink(&self, pages: PageNo) -> BoxFuture<'_, Result<(), StoreError>> {
        self.send(|r| Request::Shrink(pages, r))
    }

    fn erase_residue(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.send(Request::EraseResidue)
    }

    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.shared.closed.store(true, Ordering::Release);
        let tx = self.tx().take();
        let rx = tx.map(|tx| {
            let (reply, rx) = oneshot::channel();
            // Counted like every request (the thread counts it off).
            self.inflight.fetch_add(1, Ordering::AcqRel);
            let _ = tx.send(Request::Close(reply));
            rx
        });
        Box::pin(async move {
            let r = match rx {
                Some(rx) => rx.await.unwrap_or(Err(StoreError::Closed)),
                None => Ok(()),
            };
            self.join();
            // Released only now: the writer thread has finished its last I/O.
            drop(self.lock.lock().unwrap_or_else(|e| e.into_inner()).take());
            r
        })
    }

    fn page_location(&self, no: PageNo) -> Option<PageLocation> {
        self.shared.page_location(no)
    }
}

impl Drop for FileStore {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        // Dropping the sender ends the writer loop, which checkpoints and exits.
        drop(self.tx().take());
        self.join();
    }
}
