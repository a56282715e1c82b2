//! The native file store: a data file plus a write-ahead log with group commit.
//!
//! Layout, commit protocol, recovery and the crash-safety argument are in
//! `docs/design.md` ("File store" sections). In short:
//!
//! - `outpost.db` holds two header slots (4 KiB blocks at offsets 0 and 4096)
//!   and then page `n` at offset `8192 + (n - 1) * PAGE_SIZE`.
//! - `outpost.wal` holds frames (a 64-byte header, then a page or meta record
//!   up to its last non-zero byte, padded to a multiple of 8).
//!   A transaction is its page frames followed by one commit frame carrying the
//!   meta record. Every frame carries the salt of the current header, so frames of
//!   an earlier WAL generation are recognised and ignored.
//! - One writer thread appends: it merges every pending commit into one write and
//!   at most one `fdatasync` (group commit), and checkpoints the WAL into the data
//!   file when it grows past [`FileStoreOptions::checkpoint_wal_bytes`]. A
//!   lone commit, when the thread is idle, is appended in the caller's thread
//!   instead ([`FileStoreOptions::inline_commit`]).
//!
//! The parts, one file each:
//! - `format`: the WAL core's codecs: header slots, frame headers, checksums
//!   (XXH64); pure.
//! - `recovery`: the WAL core's replay: picks the header slot and replays the
//!   WAL over it; reads through the [`Vfs`] only, no threads.
//! - `writer`: the writer thread (group commit, checkpoints) and its requests.
//! - `shared`: the state the handle and the writer thread share.
//! - `handle`: [`FileStore`] itself: open, lock, reads, requests, lone
//!   commits, close.
//!
//! - `local`: [`LocalFileStore`], the same format, open and writer without
//!   the thread: every commit is appended (and flushed) inline. It is what
//!   the browser runs over the Origin Private File System (`store::opfs`),
//!   where wasm32 has no threads; natively it runs over any [`Vfs`], so the
//!   crash tests exercise the code the browser runs.
//!
//! All I/O goes through a [`Vfs`], so crash tests can run the real code over
//! `FaultVfs` (`store::fault`, built with the `testing` feature).
//!
//! On wasm32 everything but [`FileStore`] (its writer thread) is built.

use std::sync::Arc;

#[cfg(not(target_arch = "wasm32"))]
use super::vfs::OsVfs;
use super::vfs::Vfs;
use super::{PAGE_SIZE, StoreError};

mod format;
#[cfg(not(target_arch = "wasm32"))]
mod handle;
mod local;
mod recovery;
mod shared;
// On wasm32 only the inline parts of the writer are used (no thread).
#[cfg_attr(target_arch = "wasm32", allow(dead_code, unused_imports))]
mod writer;

#[cfg(not(target_arch = "wasm32"))]
pub use handle::FileStore;
pub use local::LocalFileStore;

/// Name of the data file inside the store's directory.
pub const DATA_FILE: &str = "outpost.db";
/// Name of the write-ahead log inside the store's directory.
pub const WAL_FILE: &str = "outpost.wal";

/// Size of one header block; the two slots sit at offsets 0 and `HEADER_BLOCK`.
pub const HEADER_BLOCK: u64 = 4096;
/// Offset of page 1 in the data file.
pub const DATA_START: u64 = 2 * HEADER_BLOCK;
/// Size of a WAL frame header.
pub const FRAME_HEADER: usize = 64;
/// Size of the largest WAL frame (header plus a whole page of payload); in
/// format version 2 every frame had this size.
pub const FRAME_SIZE: usize = FRAME_HEADER + PAGE_SIZE;
/// On-disk format version written in the header. Version 2 replaced the CRC-32
/// of WAL frames and header slots with a 64-bit XXH64 checksum (see
/// `format::frame_checksum` for why). Version 3 stores each frame's payload
/// only up to its last non-zero byte (docs/design.md, "File store: layout").
pub const FORMAT_VERSION: u32 = 3;
/// Oldest format version this build opens: version 2 stores are read as
/// they are (a version 2 frame is a version 3 frame storing a whole page)
/// and get a version 3 header at their first checkpoint.
pub const MIN_FORMAT_VERSION: u32 = 2;

/// The byte length of the WAL frame that starts at the beginning of
/// `frame` (its header is read, nothing is checked), or `None` if no frame
/// header is there. For tests that damage particular frames of a WAL.
#[doc(hidden)]
pub fn wal_frame_len(frame: &[u8]) -> Option<usize> {
    format::frame_head(frame).map(|h| h.len())
}

/// The payload bytes the WAL frame at the start of `frame` stores (its
/// header's `stored` length, a whole page for 0), or `None` if no frame
/// header is there (see [`wal_frame_len`]).
#[doc(hidden)]
pub fn wal_frame_stored(frame: &[u8]) -> Option<usize> {
    format::frame_head(frame).map(|h| h.stored)
}

/// Sets the checksums of the WAL frames that follow each other from the
/// start of `wal` to match their bytes, up to the first incomplete one (for
/// the fuzzer, which changes frames and seals them again).
#[cfg(all(
    any(feature = "fuzzing", feature = "testing"),
    not(target_arch = "wasm32")
))]
pub(crate) fn reseal_wal(wal: &mut [u8]) {
    let mut at = 0;
    while let Some(len) = format::reseal_frame(&mut wal[at..]) {
        at += len;
    }
}

/// Sets the checksums of both header slots at the start of the data file
/// `dat` (those it holds whole) to match their bytes (see [`reseal_wal`]).
#[cfg(all(
    any(feature = "fuzzing", feature = "testing"),
    not(target_arch = "wasm32")
))]
pub(crate) fn reseal_headers(dat: &mut [u8]) {
    for slot in [0, HEADER_BLOCK as usize] {
        if dat.len() > slot {
            format::reseal_header(&mut dat[slot..]);
        }
    }
}

/// Options of [`FileStore::open`] and [`LocalFileStore::open`].
#[derive(Clone)]
pub struct FileStoreOptions {
    /// The file system to use (`OsVfs` by default; tests use a `FaultVfs`, the
    /// browser `store::opfs`'s).
    pub vfs: Arc<dyn Vfs>,
    /// Checkpoint once the WAL holds at least this many bytes (default
    /// 16 MiB). The WAL's pages stay in memory until then, and the
    /// checkpoint's fsync of the data file holds up the commits behind it
    /// (docs/benchmarks.md, "A checkpoint every 16 MiB").
    pub checkpoint_wal_bytes: u64,
    /// The WAL file is extended in steps of at least this many bytes, so most
    /// appends overwrite already allocated blocks (default 4 MiB).
    pub wal_grow_bytes: u64,
    /// Upper bound of the frames merged into one group write (default 64 MiB).
    pub max_group_bytes: u64,
    /// A transaction of more than this many operations hands the pages it
    /// has finished to the writer thread every this many operations, which
    /// writes them to the WAL while the transaction goes on (pipelined
    /// commit: see [`PageStore::stage`](crate::store::PageStore::stage));
    /// its commit then writes only what is left, and fsyncs. `0`: never
    /// (default 128).
    pub stage_after_ops: usize,
    /// A lone commit ([`PageStore::commit_alone`](crate::store::PageStore::commit_alone):
    /// no other transaction waits, and the writer thread has nothing to do)
    /// is written and fsynced in the caller's thread instead of by the
    /// writer thread, which saves the round trip to that thread (about
    /// 40 µs on a 2-core VM, a third of a one-document commit). Concurrent
    /// commits still go to the writer thread and form groups. The caller's
    /// thread is blocked for the write and fsync: a server that runs its
    /// databases on an async runtime shared with its connections turns it
    /// off (`outpost-hub` does). Default `true`.
    pub inline_commit: bool,
}

impl FileStoreOptions {
    /// The default options over `vfs`.
    pub fn with_vfs(vfs: Arc<dyn Vfs>) -> FileStoreOptions {
        FileStoreOptions {
            vfs,
            checkpoint_wal_bytes: 16 << 20,
            wal_grow_bytes: 4 << 20,
            max_group_bytes: 64 << 20,
            stage_after_ops: 128,
            inline_commit: true,
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Default for FileStoreOptions {
    fn default() -> Self {
        FileStoreOptions::with_vfs(Arc::new(OsVfs))
    }
}

impl std::fmt::Debug for FileStoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStoreOptions")
            .field("checkpoint_wal_bytes", &self.checkpoint_wal_bytes)
            .field("wal_grow_bytes", &self.wal_grow_bytes)
            .field("max_group_bytes", &self.max_group_bytes)
            .field("stage_after_ops", &self.stage_after_ops)
            .field("inline_commit", &self.inline_commit)
            .finish_non_exhaustive()
    }
}

/// Counters of a [`FileStore`], for benchmarks and monitoring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileStoreStats {
    /// `fdatasync` calls (WAL and data file).
    pub fsyncs: u64,
    /// Groups written (one WAL write each).
    pub groups: u64,
    /// Commits written.
    pub commits: u64,
    /// Bytes of frames appended to the WAL.
    pub wal_bytes_written: u64,
    /// Checkpoints completed (including the one at open).
    pub checkpoints: u64,
    /// Page frames written ahead of their transaction's commit
    /// ([`PageStore::stage`](crate::store::PageStore::stage)).
    pub staged_frames: u64,
    /// Of those, pages the commit found unchanged and did not write again.
    pub staged_kept: u64,
    /// Commits written in the caller's thread
    /// ([`FileStoreOptions::inline_commit`]); included in `commits`.
    pub inline_commits: u64,
}

/// What recovery found in the WAL when a store was opened
/// ([`FileStore::recovery`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Complete transactions replayed from the WAL (0 after a clean close:
    /// closing checkpoints the WAL into the data file).
    pub replayed_transactions: u64,
    /// WAL frames replayed.
    pub replayed_frames: u64,
    /// Frames of the current WAL generation lying after the last complete
    /// transaction, which recovery dropped: the torn or unfinished write of a
    /// crash. Such a write was never acknowledged as durable (an
    /// acknowledged one that is damaged makes open fail with
    /// [`StoreError::Corrupt`] instead).
    pub dropped_tail: Option<DroppedTail>,
}

/// The part of the WAL recovery dropped (see [`RecoveryReport::dropped_tail`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DroppedTail {
    /// Byte offset in the WAL where the dropped part starts.
    pub offset: u64,
    /// Frames of the current generation found there.
    pub frames: u64,
    /// Their size in bytes.
    pub bytes: u64,
}

/// An I/O error of `op` on `path` as a [`StoreError`].
fn io_err(op: &'static str, path: &str, source: std::io::Error) -> StoreError {
    StoreError::Io {
        op,
        path: path.to_string(),
        source,
    }
}
