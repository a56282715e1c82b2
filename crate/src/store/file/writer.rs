//! The writer thread: the one place that appends to the WAL. It takes the
//! requests of a [`FileStore`](super::FileStore) from a channel, merges every
//! commit pending at the same time into one WAL write and at most one
//! `fdatasync` (group commit), publishes the written commits to readers, and
//! checkpoints the WAL into the data file when it grows past
//! [`FileStoreOptions::checkpoint_wal_bytes`]. Its state ([`Writer`]) sits
//! behind a mutex: a lone commit may run [`Writer::append`] in the caller's
//! thread while the thread is idle (`FileStore::commit_alone`), and
//! [`LocalFileStore`](super::LocalFileStore) runs it with no thread at all.
//!
//! **Staged pages** (pipelined commit, `PageStore::stage`): while the engine
//! applies a large transaction, it hands over the pages it has finished; the
//! writer appends them at once as the first page frames of the next
//! transaction, with no commit frame yet. They are nobody's until that
//! commit: readers do not see them, recovery drops them as an unfinished
//! transaction, and durability marks (`durable_before`) never count them.
//! The commit then writes only its pages that are not the very buffers
//! staged, and its commit frame counts every page frame of the
//! transaction, staged ones included (the format is unchanged: a
//! transaction's frames were always allowed to span several writes).
//! Anything that restarts the WAL (a checkpoint) drops what is staged, and
//! the commit then writes every page itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use futures::channel::oneshot;

use super::format::{
    FrameHead, Header, KIND_COMMIT, KIND_PAGE, encode_frame, encode_header, new_salt, slot_offset,
};
use super::recovery::Recovered;
use super::shared::Shared;
use super::{DATA_START, FRAME_SIZE, FileStoreOptions, io_err};
use crate::store::vfs::VfsFile;
use crate::store::{Commit, Durability, PAGE_SIZE, PageBuf, PageMap, PageNo, StoreError};

/// Largest single write of contiguous pages during a checkpoint.
const CHECKPOINT_RUN_PAGES: usize = 256;

/// Where the writer sends a request's outcome.
pub(super) type Reply = oneshot::Sender<Result<(), StoreError>>;

/// What a [`FileStore`](super::FileStore) asks of its writer thread.
pub(super) enum Request {
    Commit(Commit, Reply),
    /// Pages of the next commit, to write ahead of it (no reply).
    Stage(Vec<(PageNo, PageBuf)>),
    Sync(Reply),
    /// A checkpoint, if the WAL has grown past its threshold (no reply): sent
    /// after a commit written in the caller's thread, so that the checkpoint
    /// runs here rather than in the caller's.
    Checkpoint,
    /// Checkpoint, then zero-fill the WAL (see `PageStore::erase_residue`).
    EraseResidue(Reply),
    /// Checkpoint, then cut the data file after the given page count and
    /// empty the WAL (see `PageStore::shrink`).
    Shrink(PageNo, Reply),
    Close(Reply),
}

/// The channel end a [`FileStore`](super::FileStore) sends requests into.
pub(super) type Requests = Mutex<Option<mpsc::Sender<Request>>>;

/// The writer, shared by the writer thread and the handle's lone commits
/// ([`FileStoreOptions::inline_commit`]); `None` once closed.
pub(super) type SharedWriter = Arc<Mutex<Option<Writer>>>;

/// Locks the shared writer. If a thread panicked while holding it, the
/// writer's counters may not match the log any more: the store is poisoned
/// (every operation of the writer checks that first), so nothing more is
/// written until it is reopened, and recovery reads what is on disk.
pub(super) fn lock_writer(w: &SharedWriter) -> std::sync::MutexGuard<'_, Option<Writer>> {
    w.lock().unwrap_or_else(|e| {
        let g = e.into_inner();
        if let Some(w) = g.as_ref() {
            w.shared
                .set_poison("a thread panicked while appending to the WAL");
        }
        g
    })
}

/// A copy of `e` for another waiter (`std::io::Error` is not `Clone`).
fn clone_err(e: &StoreError) -> StoreError {
    match e {
        StoreError::Io { op, path, source } => StoreError::Io {
            op,
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        StoreError::Poisoned(p) => StoreError::Poisoned(p.clone()),
        other => StoreError::Other(other.to_string()),
    }
}

/// State owned by the writer thread.
pub(super) struct Writer {
    shared: Arc<Shared>,
    wal: Box<dyn VfsFile>,
    opts: FileStoreOptions,
    header: Header,
    /// Slot (0 or 1) holding `header`.
    active_slot: usize,
    wal_len: u64,
    /// Next frame sequence number of the current generation.
    next_slot: u64,
    /// Byte offset of the next frame.
    next_off: u64,
    /// Frames with a smaller sequence number are known durable.
    durable_slots: u64,
    next_txn: u64,
    next_group: u64,
    /// Set once a checkpoint has started writing a header slot: from then on
    /// the data file may be referenced by a durable header.
    wrote_header: bool,
    /// Pages staged for the next commit: the newest staged buffer of each
    /// and its frame's offset.
    staged: PageMap<(PageBuf, u64)>,
    /// Page frames at the end of the log (before `next_slot`) that belong to
    /// the next commit's transaction, and their bytes (before `next_off`).
    staged_frames: u64,
    staged_bytes: u64,
}

impl Writer {
    /// A writer appending after the replayed log `rec`, under `header` (in
    /// slot `active_slot`), to a WAL of `wal_len` bytes.
    pub(super) fn new(
        shared: Arc<Shared>,
        wal: Box<dyn VfsFile>,
        opts: FileStoreOptions,
        (active_slot, header): (usize, Header),
        wal_len: u64,
        rec: &Recovered,
    ) -> Writer {
        Writer {
            shared,
            wal,
            opts,
            header,
            active_slot,
            wal_len,
            next_slot: rec.end_slot,
            next_off: rec.end_off,
            durable_slots: 0,
            next_txn: rec.last_txn + 1,
            next_group: rec.last_group + 1,
            wrote_header: false,
            staged: PageMap::default(),
            staged_frames: 0,
            staged_bytes: 0,
        }
    }

    /// Whether a checkpoint has started writing a header slot (see
    /// [`Writer::checkpoint`]): until then, a failed open may give back what
    /// the data file grew.
    pub(super) fn wrote_header(&self) -> bool {
        self.wrote_header
    }

    /// Starts the writer thread over `writer`; requests go into the
    /// returned sender. `inflight` counts the requests sent and not yet
    /// taken: the sender adds one before each send, the thread takes them
    /// off once it holds the writer's lock to handle them. (Native only: wasm32 has no threads, and its
    /// files are not `Send`.)
    #[cfg(not(target_arch = "wasm32"))]
    pub(super) fn spawn(
        writer: SharedWriter,
        inflight: Arc<AtomicU64>,
        wal_path: &str,
    ) -> Result<(mpsc::Sender<Request>, JoinHandle<()>), StoreError> {
        let (tx, rx) = mpsc::channel();
        let max_group_bytes = lock_writer(&writer)
            .as_ref()
            .map_or(0, |w| w.opts.max_group_bytes);
        let thread = std::thread::Builder::new()
            .name("outpost-wal".into())
            .spawn(move || run(&writer, &inflight, rx, max_group_bytes))
            .map_err(|e| io_err("spawn wal writer", wal_path, e))?;
        Ok((tx, thread))
    }

    fn fail(&self, op: &'static str, path: &str, e: std::io::Error) -> StoreError {
        self.shared
            .set_poison(&format!("{op} on {path} failed: {e}"));
        io_err(op, path, e)
    }

    fn sync_wal(&mut self) -> Result<(), StoreError> {
        let wal_path = self.shared.wal_path.clone();
        self.wal
            .sync_data()
            .map_err(|e| self.fail("fsync wal", &wal_path, e))?;
        self.shared.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        // Staged frames are synced too, but belong to no commit yet: a
        // durability mark covering them would make a torn write of the rest
        // of their transaction look like damage to fsynced frames.
        self.durable_slots = self.next_slot - self.staged_frames;
        Ok(())
    }

    /// Forgets the staged frames (they become an unfinished transaction at
    /// the end of the log, which the next write overwrites and recovery
    /// drops); the next commit writes all its pages.
    fn drop_staged(&mut self) {
        self.next_slot -= self.staged_frames;
        self.next_off -= self.staged_bytes;
        self.staged_frames = 0;
        self.staged_bytes = 0;
        self.staged.clear();
    }

    /// Appends `pages` as page frames of the next transaction (see the
    /// module's "Staged pages"). A page staged again replaces its earlier
    /// staged version (both frames stay in the log; replay keeps the later).
    pub(super) fn stage(&mut self, pages: Vec<(PageNo, PageBuf)>) -> Result<(), StoreError> {
        if let Some(p) = self.shared.poisoned() {
            return Err(StoreError::Poisoned(p));
        }
        // The same checks a commit's pages get (`validate_commit`); the
        // engine never sends others, and a bad one is simply not staged.
        let pages: Vec<_> = pages
            .into_iter()
            .filter(|(no, p)| *no >= 1 && p.len() == PAGE_SIZE)
            .collect();
        if pages.is_empty() {
            return Ok(());
        }
        let mut head = FrameHead {
            kind: KIND_PAGE,
            salt: self.header.salt,
            seq: self.next_slot,
            txn: self.next_txn,
            group: self.next_group,
            durable_before: self.durable_slots,
            a: 0,
            stored: 0,
        };
        let mut buf = Vec::with_capacity(pages.len() * FRAME_SIZE);
        let mut offsets = Vec::with_capacity(pages.len());
        for (no, page) in &pages {
            head.a = *no;
            offsets.push(self.next_off + buf.len() as u64);
            encode_frame(&mut buf, &head, page);
            head.seq += 1;
        }
        self.write_frames(&buf)?;
        let n = pages.len() as u64;
        for ((no, page), at) in pages.into_iter().zip(offsets) {
            self.staged.insert(no, (page, at));
        }
        self.next_slot += n;
        self.next_off += buf.len() as u64;
        self.staged_frames += n;
        self.staged_bytes += buf.len() as u64;
        let st = &self.shared.stats;
        st.staged_frames.fetch_add(n, Ordering::Relaxed);
        st.wal_bytes_written
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        // Flushed now, while the engine still applies the transaction, so
        // the commit's own fsync has only the rest to write out.
        // (Measured: staging without this fsync gained nothing, since the
        // commit's fsync then wrote every staged byte out itself.)
        self.sync_wal()
    }

    /// Writes encoded frames at `next_off`, growing the WAL file first if
    /// they reach past its end.
    fn write_frames(&mut self, buf: &[u8]) -> Result<(), StoreError> {
        let wal_path = self.shared.wal_path.clone();
        let off = self.next_off;
        let end = off + buf.len() as u64;
        if end > self.wal_len {
            // Grow in large steps so later appends overwrite allocated blocks.
            let step = self.opts.wal_grow_bytes.max(FRAME_SIZE as u64);
            let mut new_len = self.wal_len.max(end);
            new_len = new_len.max(self.wal_len + step);
            new_len = new_len.div_ceil(FRAME_SIZE as u64) * FRAME_SIZE as u64;
            // Zeros, not `set_len`: writing allocates the blocks, so the appends
            // that follow (and the frames of every later WAL generation)
            // overwrite allocated blocks and their fdatasync flushes no
            // allocation metadata. Zeros are never a valid frame.
            let zeros = vec![0u8; (new_len - self.wal_len) as usize];
            self.wal
                .write_at(&zeros, self.wal_len)
                .map_err(|e| self.fail("extend wal", &wal_path, e))?;
            self.wal_len = new_len;
        }
        self.wal
            .write_at(buf, off)
            .map_err(|e| self.fail("write wal", &wal_path, e))
    }

    fn sync_data_file(&self) -> Result<(), StoreError> {
        let sh = &self.shared;
        sh.data
            .sync_data()
            .map_err(|e| self.fail("fsync data file", &sh.data_path, e))?;
        sh.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Copies the WAL into the data file and restarts the WAL under a new salt.
    pub(super) fn checkpoint(&mut self) -> Result<(), StoreError> {
        if let Some(p) = self.shared.poisoned() {
            return Err(StoreError::Poisoned(p));
        }
        // Staged frames belong to no commit; the WAL restarts below.
        self.drop_staged();
        // 1. Everything in the WAL must be durable before the data file changes:
        //    after a crash the WAL (old salt) is replayed over the data file.
        if self.next_slot > self.durable_slots {
            self.sync_wal()?;
        }
        let shared = self.shared.clone();
        // 2. Write the newest version of every WAL page into the data file.
        //    Under the view's read lock: only this writer changes the view,
        //    and a reader reads from the data file only pages the view's WAL
        //    index does not hold, so no reader reads a page while it is
        //    written, and readers go on during the copy.
        let (meta, max_page) = {
            let view = shared.view();
            let mut pages: Vec<(&PageNo, &PageBuf)> = view
                .wal_pages
                .iter()
                .map(|(no, (buf, _))| (no, buf))
                .collect();
            pages.sort_unstable_by_key(|(no, _)| **no);
            let mut i = 0;
            while i < pages.len() {
                let first = *pages[i].0;
                let mut j = i + 1;
                while j < pages.len()
                    && *pages[j].0 == first + (j - i) as u64
                    && j - i < CHECKPOINT_RUN_PAGES
                {
                    j += 1;
                }
                let mut run = Vec::with_capacity((j - i) * PAGE_SIZE);
                for (_, buf) in &pages[i..j] {
                    run.extend_from_slice(buf);
                }
                let off = DATA_START + (first - 1) * PAGE_SIZE as u64;
                shared
                    .data
                    .write_at(&run, off)
                    .map_err(|e| self.fail("write data file", &shared.data_path, e))?;
                i = j;
            }
            (
                view.meta.clone(),
                pages.last().map(|(no, _)| **no).unwrap_or(0),
            )
        };
        // 3. Make the pages durable before any header points past the WAL.
        if max_page > 0 {
            self.sync_data_file()?;
        }
        // 4. Write the other header slot: new salt, the current meta.
        let next = Header {
            seq: self.header.seq + 1,
            salt: self.header.next_salt,
            next_salt: new_salt(&[self.header.salt, self.header.next_salt]),
            meta,
        };
        let slot = 1 - self.active_slot;
        self.wrote_header = true;
        shared
            .data
            .write_at(&encode_header(&next), slot_offset(slot))
            .map_err(|e| self.fail("write header", &shared.data_path, e))?;
        // 5. Once this fsync returns, the old WAL generation is dead.
        self.sync_data_file()?;
        // 6. Restart the WAL at offset 0 under the new salt.
        {
            let mut view = shared.view_mut();
            view.wal_pages.clear();
            view.data_pages = view.data_pages.max(max_page);
        }
        self.header = next;
        self.active_slot = slot;
        self.next_slot = 0;
        self.next_off = 0;
        self.durable_slots = 0;
        shared.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Whether pages are staged for the next commit.
    pub(super) fn has_staged(&self) -> bool {
        self.staged_frames > 0
    }

    /// Whether the WAL has grown past
    /// [`FileStoreOptions::checkpoint_wal_bytes`] (and the store is not
    /// poisoned): the moment to checkpoint.
    pub(super) fn wants_checkpoint(&self) -> bool {
        self.next_off >= self.opts.checkpoint_wal_bytes
            && self.shared.poisoned().is_none()
            // Not between staged pages and their commit (it would drop them).
            && self.staged_frames == 0
    }

    /// Checkpoints the WAL into the data file, then overwrites the whole WAL
    /// file with zeros and makes that durable: the page images of earlier
    /// commits (and of earlier WAL generations, which a checkpoint leaves
    /// in place) are gone from the WAL. Safe at any point: after the
    /// checkpoint no frame of the current generation exists, and zeros are
    /// never a valid frame.
    pub(super) fn erase_residue(&mut self) -> Result<(), StoreError> {
        if let Some(p) = self.shared.poisoned() {
            return Err(StoreError::Poisoned(p));
        }
        if self.next_slot > 0 {
            self.checkpoint()?;
        }
        let wal_path = self.shared.wal_path.clone();
        let len = match self.wal.len() {
            Ok(n) => n.max(self.wal_len),
            Err(e) => return Err(self.fail("wal length", &wal_path, e)),
        };
        const STEP: u64 = 1 << 20;
        let zeros = vec![0u8; STEP.min(len) as usize];
        let mut off = 0;
        while off < len {
            let n = STEP.min(len - off) as usize;
            self.wal
                .write_at(&zeros[..n], off)
                .map_err(|e| self.fail("zero wal", &wal_path, e))?;
            off += n as u64;
        }
        self.sync_wal()
    }

    /// Checkpoints the WAL into the data file (the header then holds the
    /// newest meta record, whose pages all lie below `pages`), cuts the data
    /// file after page `pages - 1` and empties the WAL file, each made
    /// durable. Safe at any point: a crash before the cut leaves a longer
    /// file with unreachable pages at its end; the WAL's frames are dead
    /// once the checkpoint's header is durable.
    pub(super) fn shrink(&mut self, pages: PageNo) -> Result<(), StoreError> {
        if let Some(p) = self.shared.poisoned() {
            return Err(StoreError::Poisoned(p));
        }
        if self.next_slot > 0 {
            self.checkpoint()?;
        }
        let shared = self.shared.clone();
        let keep = pages.saturating_sub(1);
        let len = DATA_START + keep * PAGE_SIZE as u64;
        let cur = shared
            .data
            .len()
            .map_err(|e| self.fail("data file length", &shared.data_path, e))?;
        if cur > len {
            // Readers take the view lock: none reads a page while the file is cut.
            let mut view = shared.view_mut();
            shared
                .data
                .set_len(len)
                .map_err(|e| self.fail("truncate data file", &shared.data_path, e))?;
            view.data_pages = view.data_pages.min(keep);
        }
        self.sync_data_file()?;
        let wal_path = shared.wal_path.clone();
        if self.wal_len > 0 {
            self.wal
                .set_len(0)
                .map_err(|e| self.fail("truncate wal", &wal_path, e))?;
            self.wal_len = 0;
            self.sync_wal()?;
        }
        Ok(())
    }

    /// Final checkpoint at close.
    pub(super) fn finish(&mut self) -> Result<(), StoreError> {
        if let Some(p) = self.shared.poisoned() {
            return Err(StoreError::Poisoned(p));
        }
        if self.next_slot > 0 {
            self.checkpoint()
        } else {
            Ok(())
        }
    }

    /// Writes one group: all its frames in one write, at most one fsync, then
    /// publishes the commits to readers and acknowledges every request.
    pub(super) fn write_group(&mut self, group: Vec<Request>) {
        let mut replies = Vec::with_capacity(group.len());
        let mut commits = Vec::new();
        let mut need_sync = false;
        for r in group {
            match r {
                Request::Commit(c, reply) => {
                    need_sync |= c.durability == Durability::Durable;
                    commits.push(c);
                    replies.push(reply);
                }
                Request::Sync(reply) => {
                    need_sync = true;
                    replies.push(reply);
                }
                Request::Close(reply)
                | Request::EraseResidue(reply)
                | Request::Shrink(_, reply) => replies.push(reply),
                Request::Stage(_) | Request::Checkpoint => {}
            }
        }
        let result = self.append(&commits, need_sync);
        match result {
            Ok(()) => {
                for reply in replies {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(e) => {
                // Every request of the failed group gets the error itself.
                for reply in replies {
                    let _ = reply.send(Err(clone_err(&e)));
                }
            }
        }
    }

    pub(super) fn append(&mut self, commits: &[Commit], need_sync: bool) -> Result<(), StoreError> {
        if let Some(p) = self.shared.poisoned() {
            return Err(StoreError::Poisoned(p));
        }
        // The first commit's transaction starts with the staged frames.
        let (staged, staged_frames) = if commits.is_empty() {
            (PageMap::default(), 0)
        } else {
            // From here on they are the commit's frames, not staged ones.
            self.staged_bytes = 0;
            (
                std::mem::take(&mut self.staged),
                std::mem::take(&mut self.staged_frames),
            )
        };
        // Where each page's newest frame lands (its offset), for the
        // readers' view: what replay would install.
        let mut placed: Vec<(PageNo, PageBuf, u64)> = staged
            .iter()
            .map(|(no, (buf, at))| (*no, buf.clone(), *at))
            .collect();
        let mut kept = 0u64;
        let frames: usize = commits.iter().map(|c| c.pages.len() + 1).sum();
        if frames > 0 {
            let group = self.next_group;
            self.next_group += 1;
            let salt = self.header.salt;
            let mut buf = Vec::with_capacity(frames * FRAME_SIZE);
            let mut seq = self.next_slot;
            for (i, c) in commits.iter().enumerate() {
                let txn = self.next_txn;
                self.next_txn += 1;
                let mut head = FrameHead {
                    kind: KIND_PAGE,
                    salt,
                    seq,
                    txn,
                    group,
                    durable_before: self.durable_slots,
                    a: 0,
                    stored: 0,
                };
                let mut count = if i == 0 { staged_frames as usize } else { 0 };
                for (no, page) in &c.pages {
                    if i == 0 && staged.get(no).is_some_and(|(b, _)| Arc::ptr_eq(b, page)) {
                        kept += 1;
                        continue;
                    }
                    head.a = *no;
                    placed.push((*no, page.clone(), self.next_off + buf.len() as u64));
                    encode_frame(&mut buf, &head, page);
                    head.seq += 1;
                    count += 1;
                }
                head.kind = KIND_COMMIT;
                head.a = FrameHead::commit_a(c.meta.len(), count);
                encode_frame(&mut buf, &head, &c.meta);
                seq = head.seq + 1;
            }
            self.write_frames(&buf)?;
            self.next_slot = seq;
            self.next_off += buf.len() as u64;
            let st = &self.shared.stats;
            st.groups.fetch_add(1, Ordering::Relaxed);
            st.commits
                .fetch_add(commits.len() as u64, Ordering::Relaxed);
            st.wal_bytes_written
                .fetch_add(buf.len() as u64, Ordering::Relaxed);
            st.staged_kept.fetch_add(kept, Ordering::Relaxed);
        }
        if need_sync && self.durable_slots < self.next_slot {
            self.sync_wal()?;
        }
        if !commits.is_empty() {
            let mut view = self.shared.view_mut();
            // In log order, so a page's later frame wins as in replay.
            placed.sort_unstable_by_key(|(_, _, at)| *at);
            for (no, page, at) in placed {
                view.wal_pages.insert(no, (page, at));
            }
            if let Some(c) = commits.last() {
                view.meta = Some(c.meta.clone());
            }
        }
        Ok(())
    }
}

/// The writer thread's loop: takes a request, and every request pending
/// behind it, and handles them under the writer's lock.
fn run(
    writer: &SharedWriter,
    inflight: &AtomicU64,
    rx: mpsc::Receiver<Request>,
    max_group_bytes: u64,
) {
    loop {
        let first = match rx.recv() {
            Ok(r) => r,
            // Every sender is gone (the store was dropped without close).
            Err(_) => {
                if let Some(mut w) = lock_writer(writer).take() {
                    let _ = w.finish();
                }
                return;
            }
        };
        let mut handled = 1u64;
        let mut group = Vec::new();
        let mut close = None;
        let mut erase = None;
        let mut shrink = None;
        let mut stage = None;
        let mut bytes = 0u64;
        match first {
            Request::Close(reply) => close = Some(reply),
            Request::Stage(pages) => stage = Some(pages),
            Request::EraseResidue(reply) => erase = Some(reply),
            Request::Shrink(pages, reply) => shrink = Some((pages, reply)),
            Request::Checkpoint => {}
            r => {
                bytes += request_bytes(&r);
                group.push(r);
                while bytes < max_group_bytes {
                    let next = match rx.try_recv() {
                        Ok(r) => r,
                        Err(_) => break,
                    };
                    handled += 1;
                    match next {
                        Request::Close(reply) => {
                            close = Some(reply);
                            break;
                        }
                        // Ends the group: the erasure follows every
                        // commit sent before it.
                        Request::EraseResidue(reply) => {
                            erase = Some(reply);
                            break;
                        }
                        Request::Shrink(pages, reply) => {
                            shrink = Some((pages, reply));
                            break;
                        }
                        // Pages of the commit after this group's.
                        Request::Stage(pages) => {
                            stage = Some(pages);
                            break;
                        }
                        // Checked after every group anyway.
                        Request::Checkpoint => {}
                        r => {
                            bytes += request_bytes(&r);
                            group.push(r);
                        }
                    }
                }
            }
        }
        let mut guard = lock_writer(writer);
        // Counted off as soon as the lock is held: a lone commit that finds
        // no request in flight waits for this lock, so it still comes after
        // every one of them.
        inflight.fetch_sub(handled, Ordering::AcqRel);
        let Some(w) = guard.as_mut() else {
            // Closed (a lone commit cannot close it; nothing else does).
            fail_all(group, close, erase, shrink);
            return;
        };
        if !group.is_empty() {
            w.write_group(group);
        }
        if let Some(pages) = stage {
            // A failure poisons the store; the commit reports it.
            let _ = w.stage(pages);
        }
        if let Some(reply) = erase {
            let _ = reply.send(w.erase_residue());
        }
        if let Some((pages, reply)) = shrink {
            let _ = reply.send(w.shrink(pages));
        }
        if let Some(reply) = close {
            let r = w.finish();
            guard.take();
            let _ = reply.send(r);
            return;
        }
        if w.wants_checkpoint() {
            // A failure poisons the store; the next commit reports it.
            let _ = w.checkpoint();
        }
    }
}

/// Answers every request of an iteration with `Closed`.
fn fail_all(
    group: Vec<Request>,
    close: Option<Reply>,
    erase: Option<Reply>,
    shrink: Option<(PageNo, Reply)>,
) {
    let replies = group
        .into_iter()
        .filter_map(|r| match r {
            Request::Commit(_, reply)
            | Request::Sync(reply)
            | Request::Close(reply)
            | Request::EraseResidue(reply)
            | Request::Shrink(_, reply) => Some(reply),
            Request::Stage(_) | Request::Checkpoint => None,
        })
        .chain(close)
        .chain(erase)
        .chain(shrink.map(|(_, r)| r));
    for reply in replies {
        let _ = reply.send(Err(StoreError::Closed));
    }
}

fn request_bytes(r: &Request) -> u64 {
    match r {
        Request::Commit(c, _) => ((c.pages.len() + 1) * FRAME_SIZE) as u64,
        _ => 0,
    }
}
