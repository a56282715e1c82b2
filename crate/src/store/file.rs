//! The native file store: a data file plus a write-ahead log with group commit.
//!
//! Layout, commit protocol, recovery and the crash-safety argument are in
//! `docs/design.md` ("File store" sections). In short:
//!
//! - `outpost.db` holds two header slots (4 KiB blocks at offsets 0 and 4096)
//!   and then page `n` at offset `8192 + (n - 1) * PAGE_SIZE`.
//! - `outpost.wal` holds fixed-size frames (64-byte header + one page of payload).
//!   A transaction is its page frames followed by one commit frame carrying the
//!   meta record. Every frame carries the salt of the current header, so frames of
//!   an earlier WAL generation are recognised and ignored.
//! - One writer thread appends: it merges every pending commit into one write and
//!   at most one `fdatasync` (group commit), and checkpoints the WAL into the data
//!   file when it grows past [`FileStoreOptions::checkpoint_wal_bytes`].
//!
//! All I/O goes through a [`Vfs`], so crash tests can run the real code over
//! `FaultVfs` (`store::fault`, built with the `testing` feature).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;

use futures::channel::oneshot;

use super::vfs::{DirLock, LockError, LockMode, OsVfs, Vfs, VfsFile};
use super::{
    Commit, Durability, MAX_META, PAGE_SIZE, PageBuf, PageLocation, PageNo, PageStore, StoreError,
    validate_commit,
};
use crate::platform::{BoxFuture, random_bytes};

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
/// Size of a WAL frame (header plus one page of payload).
pub const FRAME_SIZE: usize = FRAME_HEADER + PAGE_SIZE;
/// On-disk format version written in the header. Version 2 replaced the CRC-32
/// of WAL frames and header slots with a 64-bit XXH64 checksum (see
/// [`frame_checksum`] for why).
pub const FORMAT_VERSION: u32 = 2;

const HEADER_MAGIC: [u8; 8] = *b"OUTPSTDB";
const FRAME_MAGIC: u32 = 0x4657_504F; // "OPWF" little-endian
const KIND_PAGE: u8 = 1;
const KIND_COMMIT: u8 = 2;

// Header slot layout (little-endian).
const H_VERSION: usize = 8;
const H_PAGE_SIZE: usize = 12;
const H_SEQ: usize = 16;
const H_SALT: usize = 24;
const H_NEXT_SALT: usize = 32;
const H_FLAGS: usize = 40;
const H_META_LEN: usize = 44;
const H_META: usize = 48;
const H_CHECKSUM: usize = H_META + MAX_META; // u64: XXH64 of bytes 0..H_CHECKSUM
const HEADER_LEN: usize = H_CHECKSUM + 8;
const FLAG_HAS_META: u32 = 1;

// Frame header layout (little-endian).
const F_KIND: usize = 4;
const F_SALT: usize = 8;
const F_SEQ: usize = 16;
const F_TXN: usize = 24;
const F_GROUP: usize = 32;
const F_DURABLE: usize = 40;
const F_PAGE: usize = 48; // page frames: page number (u64)
const F_META_LEN: usize = 48; // commit frames: meta length (u32) ...
const F_COUNT: usize = 52; // ... and number of page frames of the transaction (u32)
const F_CHECKSUM: usize = 56; // u64, see `frame_checksum`

/// Frames read per I/O during recovery.
const RECOVERY_CHUNK_FRAMES: usize = 64;
/// Largest single write of contiguous pages during a checkpoint.
const CHECKPOINT_RUN_PAGES: usize = 256;

/// Options of [`FileStore::open`].
#[derive(Clone)]
pub struct FileStoreOptions {
    /// The file system to use ([`OsVfs`] by default; tests use a `FaultVfs`).
    pub vfs: Arc<dyn Vfs>,
    /// Checkpoint once the WAL holds at least this many bytes (default 64 MiB).
    pub checkpoint_wal_bytes: u64,
    /// The WAL file is extended in steps of at least this many bytes, so most
    /// appends overwrite already allocated blocks (default 4 MiB).
    pub wal_grow_bytes: u64,
    /// Upper bound of the frames merged into one group write (default 64 MiB).
    pub max_group_bytes: u64,
}

impl Default for FileStoreOptions {
    fn default() -> Self {
        FileStoreOptions {
            vfs: Arc::new(OsVfs),
            checkpoint_wal_bytes: 64 << 20,
            wal_grow_bytes: 4 << 20,
            max_group_bytes: 64 << 20,
        }
    }
}

impl std::fmt::Debug for FileStoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStoreOptions")
            .field("checkpoint_wal_bytes", &self.checkpoint_wal_bytes)
            .field("wal_grow_bytes", &self.wal_grow_bytes)
            .field("max_group_bytes", &self.max_group_bytes)
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
}

#[derive(Default)]
struct Stats {
    fsyncs: AtomicU64,
    groups: AtomicU64,
    commits: AtomicU64,
    wal_bytes_written: AtomicU64,
    checkpoints: AtomicU64,
}

/// What readers see: the newest version of every page still in the WAL, the
/// current meta record, and how many pages the data file holds.
struct View {
    /// Pages whose newest version is in the WAL: the page and its frame's slot.
    wal_pages: HashMap<PageNo, (PageBuf, u64)>,
    meta: Option<Vec<u8>>,
    data_pages: u64,
}

struct Shared {
    data: Box<dyn VfsFile>,
    data_path: String,
    wal_path: String,
    view: RwLock<View>,
    poison: Mutex<Option<String>>,
    closed: AtomicBool,
    stats: Stats,
}

impl Shared {
    fn view(&self) -> RwLockReadGuard<'_, View> {
        // View updates are single assignments/inserts; a panic cannot leave it torn.
        self.view.read().unwrap_or_else(|e| e.into_inner())
    }
    fn view_mut(&self) -> RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(|e| e.into_inner())
    }
    fn poisoned(&self) -> Option<String> {
        self.poison
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    fn set_poison(&self, why: &str) {
        let mut p = self.poison.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_none() {
            *p = Some(why.to_string());
        }
    }
}

type Reply = oneshot::Sender<Result<(), StoreError>>;

enum Request {
    Commit(Commit, Reply),
    Sync(Reply),
    Close(Reply),
}

/// The native page store: a data file and a write-ahead log with group commit.
///
/// Commits go to a dedicated writer thread, which merges all commits pending at
/// the same time into one WAL write and at most one `fdatasync`. A
/// [`Durability::Durable`] commit resolves only after the fsync covering it; a
/// [`Durability::Relaxed`] one as soon as it is written (and visible to reads). After a
/// failed write or fsync the store is poisoned ([`StoreError::Poisoned`]) until
/// reopened; [`FileStore::open`] recovers the last complete commit.
pub struct FileStore {
    shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::Sender<Request>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Opened with [`FileStore::open_read_only`]: no writer thread, no writes.
    read_only: bool,
    recovery: RecoveryReport,
    /// The directory lock, held until the store is closed or dropped.
    lock: Mutex<Option<DirLock>>,
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

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("data", &self.shared.data_path)
            .field("wal", &self.shared.wal_path)
            .field("stats", &self.stats())
            .finish()
    }
}

fn io_err(op: &'static str, path: &str, source: std::io::Error) -> StoreError {
    StoreError::Io {
        op,
        path: path.to_string(),
        source,
    }
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

fn le_u32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    random_bytes(&mut b);
    u64::from_le_bytes(b)
}

/// A new salt, never equal to `avoid` (nor to zero).
fn new_salt(avoid: &[u64]) -> u64 {
    loop {
        let s = random_u64();
        if s != 0 && !avoid.contains(&s) {
            return s;
        }
    }
}

// ---------------------------------------------------------------------------
// Header slots
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Header {
    seq: u64,
    salt: u64,
    next_salt: u64,
    meta: Option<Vec<u8>>,
}

fn slot_offset(slot: usize) -> u64 {
    slot as u64 * HEADER_BLOCK
}

fn encode_header(h: &Header) -> Vec<u8> {
    let mut b = vec![0u8; HEADER_BLOCK as usize];
    b[..8].copy_from_slice(&HEADER_MAGIC);
    put_u32(&mut b, H_VERSION, FORMAT_VERSION);
    put_u32(&mut b, H_PAGE_SIZE, PAGE_SIZE as u32);
    put_u64(&mut b, H_SEQ, h.seq);
    put_u64(&mut b, H_SALT, h.salt);
    put_u64(&mut b, H_NEXT_SALT, h.next_salt);
    if let Some(meta) = &h.meta {
        put_u32(&mut b, H_FLAGS, FLAG_HAS_META);
        put_u32(&mut b, H_META_LEN, meta.len() as u32);
        b[H_META..H_META + meta.len()].copy_from_slice(meta);
    }
    let sum = xxh64(&b[..H_CHECKSUM], 0);
    put_u64(&mut b, H_CHECKSUM, sum);
    b
}

/// Reads header slot `slot`: `Ok(Some)` if valid, `Ok(None)` if absent or
/// damaged, `Err` for an I/O error or a valid header of an unsupported format.
///
/// The checksum is XXH64, not a CRC, for the reason given at [`frame_checksum`]:
/// with 512-byte sectors written out of order, a CRC-32 accepts a slot mixed
/// from two writes whose meta records (ending in their own CRC-32) differ only
/// within one sector.
fn read_header(data: &dyn VfsFile, slot: usize, path: &str) -> Result<Option<Header>, StoreError> {
    let mut b = vec![0u8; HEADER_LEN];
    let n = data
        .read_at(&mut b, slot_offset(slot))
        .map_err(|e| io_err("read header", path, e))?;
    if n < HEADER_LEN || b[..8] != HEADER_MAGIC {
        return Ok(None);
    }
    let version = le_u32(&b, H_VERSION);
    if xxh64(&b[..H_CHECKSUM], 0) != le_u64(&b, H_CHECKSUM) {
        // Format version 1 kept a CRC-32 of the same bytes at the same offset:
        // recognise such a header, to refuse the store by name rather than
        // call it corrupt (and never read its WAL with the wrong checksum).
        let v1 = crc32fast::hash(&b[..H_CHECKSUM]) == le_u32(&b, H_CHECKSUM);
        if !(v1 && version != FORMAT_VERSION) {
            return Ok(None);
        }
    }
    if version != FORMAT_VERSION {
        return Err(StoreError::Unsupported {
            file: path.to_string(),
            reason: format!("format version {version} (this build reads {FORMAT_VERSION})"),
        });
    }
    let page_size = le_u32(&b, H_PAGE_SIZE);
    if page_size as usize != PAGE_SIZE {
        return Err(StoreError::Unsupported {
            file: path.to_string(),
            reason: format!("page size {page_size} (this build uses {PAGE_SIZE})"),
        });
    }
    let flags = le_u32(&b, H_FLAGS);
    let meta_len = le_u32(&b, H_META_LEN) as usize;
    if meta_len > MAX_META || flags & !FLAG_HAS_META != 0 {
        return Err(StoreError::Corrupt {
            file: path.to_string(),
            page: None,
            offset: slot_offset(slot),
            reason: format!(
                "header slot {slot} has a valid checksum but flags {flags:#x}, meta length {meta_len}"
            ),
        });
    }
    let meta = (flags & FLAG_HAS_META != 0).then(|| b[H_META..H_META + meta_len].to_vec());
    Ok(Some(Header {
        seq: le_u64(&b, H_SEQ),
        salt: le_u64(&b, H_SALT),
        next_salt: le_u64(&b, H_NEXT_SALT),
        meta,
    }))
}

// ---------------------------------------------------------------------------
// WAL frames
// ---------------------------------------------------------------------------

struct FrameHead {
    kind: u8,
    txn: u64,
    group: u64,
    durable_before: u64,
    a: u64,
}

impl FrameHead {
    fn page_no(&self) -> PageNo {
        self.a
    }
    fn meta_len(&self) -> usize {
        (self.a & 0xFFFF_FFFF) as usize
    }
    fn count(&self) -> u64 {
        self.a >> 32
    }
}

#[allow(clippy::too_many_arguments)]
fn encode_frame(
    out: &mut Vec<u8>,
    kind: u8,
    salt: u64,
    seq: u64,
    txn: u64,
    group: u64,
    durable_before: u64,
    a: u64,
    payload: &[u8],
) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_SIZE]);
    let f = &mut out[start..];
    put_u32(f, 0, FRAME_MAGIC);
    f[F_KIND] = kind;
    put_u64(f, F_SALT, salt);
    put_u64(f, F_SEQ, seq);
    put_u64(f, F_TXN, txn);
    put_u64(f, F_GROUP, group);
    put_u64(f, F_DURABLE, durable_before);
    put_u64(f, F_PAGE, a);
    f[FRAME_HEADER..FRAME_HEADER + payload.len()].copy_from_slice(payload);
    let sum = frame_checksum(f);
    put_u64(f, F_CHECKSUM, sum);
}

/// The checksum of a frame: `XXH64(header bytes 0..56 ++ XXH64(payload))`.
///
/// Deliberately not a CRC: a CRC is linear, so it cannot tell two payloads
/// apart whose difference is a multiple of its polynomial -- and any two records
/// of equal length that end in their own CRC-32 (the engine's meta record does)
/// differ by exactly such a multiple. A write torn at the sector boundary between
/// a frame's header and its payload (slot 7 of every 8: `7 * 4160 + 64 = 57 *
/// 512`) leaves the new header in front of the payload an older WAL generation
/// left in that slot; under a CRC-32 that mixed frame passed whenever both
/// payloads were such records, and recovery replayed a stale meta record. A
/// non-linear 64-bit hash has no such structure: any mix of two frames passes
/// only by a 2^-64 accident.
fn frame_checksum(f: &[u8]) -> u64 {
    let mut b = [0u8; F_CHECKSUM + 8];
    b[..F_CHECKSUM].copy_from_slice(&f[..F_CHECKSUM]);
    b[F_CHECKSUM..].copy_from_slice(&xxh64(&f[FRAME_HEADER..FRAME_SIZE], 0).to_le_bytes());
    xxh64(&b, 0)
}

const XXH_P1: u64 = 0x9E37_79B1_85EB_CA87;
const XXH_P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const XXH_P3: u64 = 0x1656_67B1_9E37_79F9;
const XXH_P4: u64 = 0x85EB_CA77_C2B2_AE63;
const XXH_P5: u64 = 0x27D4_EB2F_1656_67C5;

fn xxh_round(acc: u64, input: u64) -> u64 {
    acc.wrapping_add(input.wrapping_mul(XXH_P2))
        .rotate_left(31)
        .wrapping_mul(XXH_P1)
}

fn xxh_merge(acc: u64, v: u64) -> u64 {
    (acc ^ xxh_round(0, v))
        .wrapping_mul(XXH_P1)
        .wrapping_add(XXH_P4)
}

/// XXH64 (xxHash, 64-bit variant) of `data`: a fast, non-cryptographic,
/// non-linear hash with a stable, published definition.
fn xxh64(data: &[u8], seed: u64) -> u64 {
    let mut stripes = data.chunks_exact(32);
    let mut h = if data.len() >= 32 {
        let mut v = [
            seed.wrapping_add(XXH_P1).wrapping_add(XXH_P2),
            seed.wrapping_add(XXH_P2),
            seed,
            seed.wrapping_sub(XXH_P1),
        ];
        for stripe in &mut stripes {
            // One copy and a destructuring per stripe, not per word: about twice
            // as fast in unoptimised builds, which run the crash tests.
            let mut w = [0u8; 32];
            w.copy_from_slice(stripe);
            #[rustfmt::skip]
            let [
                a0, a1, a2, a3, a4, a5, a6, a7,
                b0, b1, b2, b3, b4, b5, b6, b7,
                c0, c1, c2, c3, c4, c5, c6, c7,
                d0, d1, d2, d3, d4, d5, d6, d7,
            ] = w;
            v[0] = xxh_round(v[0], u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]));
            v[1] = xxh_round(v[1], u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]));
            v[2] = xxh_round(v[2], u64::from_le_bytes([c0, c1, c2, c3, c4, c5, c6, c7]));
            v[3] = xxh_round(v[3], u64::from_le_bytes([d0, d1, d2, d3, d4, d5, d6, d7]));
        }
        let mut h = v[0]
            .rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18));
        for lane in v {
            h = xxh_merge(h, lane);
        }
        h
    } else {
        seed.wrapping_add(XXH_P5)
    };
    h = h.wrapping_add(data.len() as u64);
    let mut rest = stripes.remainder();
    while rest.len() >= 8 {
        h = (h ^ xxh_round(0, le_u64(rest, 0)))
            .rotate_left(27)
            .wrapping_mul(XXH_P1)
            .wrapping_add(XXH_P4);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        h = (h ^ u64::from(le_u32(rest, 0)).wrapping_mul(XXH_P1))
            .rotate_left(23)
            .wrapping_mul(XXH_P2)
            .wrapping_add(XXH_P3);
        rest = &rest[4..];
    }
    for &byte in rest {
        h = (h ^ u64::from(byte).wrapping_mul(XXH_P5))
            .rotate_left(11)
            .wrapping_mul(XXH_P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(XXH_P2);
    h ^= h >> 29;
    h = h.wrapping_mul(XXH_P3);
    h ^ (h >> 32)
}

/// Checks one frame read from WAL slot `slot` against the current `salt`.
fn parse_frame(f: &[u8], salt: u64, slot: u64) -> Result<FrameHead, &'static str> {
    if f.len() < FRAME_SIZE || le_u32(f, 0) != FRAME_MAGIC {
        return Err("no frame magic");
    }
    if le_u64(f, F_SALT) != salt {
        return Err("frame of another WAL generation");
    }
    if le_u64(f, F_SEQ) != slot {
        return Err("frame sequence number does not match its position");
    }
    if frame_checksum(f) != le_u64(f, F_CHECKSUM) {
        return Err("frame checksum mismatch");
    }
    let kind = f[F_KIND];
    if kind != KIND_PAGE && kind != KIND_COMMIT {
        return Err("unknown frame kind");
    }
    let durable_before = le_u64(f, F_DURABLE);
    if durable_before > slot {
        return Err("frame claims durability of later frames");
    }
    let a = if kind == KIND_PAGE {
        le_u64(f, F_PAGE)
    } else {
        u64::from(le_u32(f, F_META_LEN)) | (u64::from(le_u32(f, F_COUNT)) << 32)
    };
    Ok(FrameHead {
        kind,
        txn: le_u64(f, F_TXN),
        group: le_u64(f, F_GROUP),
        durable_before,
        a,
    })
}

#[derive(Default)]
struct Recovered {
    pages: HashMap<PageNo, (PageBuf, u64)>,
    meta: Option<Vec<u8>>,
    /// Slot after the last complete transaction.
    end_slot: u64,
    /// Highest group number seen in the valid prefix.
    last_group: u64,
    /// Highest transaction id seen in the valid prefix.
    last_txn: u64,
    /// Complete transactions replayed.
    txns: u64,
    /// Frames of this generation after the replayed log.
    dropped: Option<DroppedTail>,
}

/// Replays the WAL: every complete transaction of the current generation, in
/// order, up to the first damaged frame or incomplete transaction. A damaged
/// frame followed by a valid frame whose durability mark covers it is corruption.
fn recover_wal(wal: &dyn VfsFile, wal_path: &str, salt: u64) -> Result<Recovered, StoreError> {
    let len = wal
        .len()
        .map_err(|e| io_err("read wal length", wal_path, e))?;
    let nslots = len / FRAME_SIZE as u64;
    let mut rec = Recovered::default();
    let mut pending: Vec<(PageNo, PageBuf)> = Vec::new();
    let mut pending_txn: Option<u64> = None;
    let mut last_txn: Option<u64> = None;
    // First slot that is not part of the valid log, why, and the page it may name.
    let mut stop: Option<(u64, String, Option<PageNo>)> = None;
    let mut buf = vec![0u8; RECOVERY_CHUNK_FRAMES * FRAME_SIZE];
    // Slots holding a frame header of this generation (valid or not).
    let mut ours: Vec<u64> = Vec::new();
    let mut slot = 0u64;
    while slot < nslots {
        let n = (nslots - slot).min(RECOVERY_CHUNK_FRAMES as u64) as usize;
        let want = n * FRAME_SIZE;
        let got = wal
            .read_at(&mut buf[..want], slot * FRAME_SIZE as u64)
            .map_err(|e| io_err("read wal", wal_path, e))?;
        // A short read (file shrank underneath us) reads as zeros: no frames.
        buf[got..want].fill(0);
        for i in 0..n {
            let s = slot + i as u64;
            let f = &buf[i * FRAME_SIZE..(i + 1) * FRAME_SIZE];
            if le_u32(f, 0) == FRAME_MAGIC && le_u64(f, F_SALT) == salt {
                ours.push(s);
            }
            match &stop {
                None => {
                    let r = parse_frame(f, salt, s).and_then(|h| {
                        apply_frame(
                            &h,
                            f,
                            s,
                            &mut rec,
                            &mut pending,
                            &mut pending_txn,
                            &mut last_txn,
                        )
                    });
                    if let Err(reason) = r {
                        // Name the page if the header still looks like one of ours.
                        let page = (le_u32(f, 0) == FRAME_MAGIC
                            && le_u64(f, F_SALT) == salt
                            && f[F_KIND] == KIND_PAGE)
                            .then(|| le_u64(f, F_PAGE));
                        stop = Some((s, reason.to_string(), page));
                    }
                }
                Some((bad, reason, page)) => {
                    if let Ok(h) = parse_frame(f, salt, s)
                        && h.durable_before > rec.end_slot
                    {
                        let bad_off = bad * FRAME_SIZE as u64;
                        return Err(StoreError::Corrupt {
                            file: wal_path.to_string(),
                            page: *page,
                            offset: bad_off,
                            reason: format!(
                                "WAL frame {bad} at offset {bad_off} is unreadable ({reason}), but frame {s} \
                                 (group {}) records that frames before {} were already fsynced",
                                h.group, h.durable_before
                            ),
                        });
                    }
                }
            }
        }
        slot += n as u64;
    }
    let dropped = ours.iter().filter(|&&s| s >= rec.end_slot).count() as u64;
    if dropped > 0 {
        rec.dropped = Some(DroppedTail {
            offset: rec.end_slot * FRAME_SIZE as u64,
            frames: dropped,
            bytes: dropped * FRAME_SIZE as u64,
        });
    }
    Ok(rec)
}

/// Applies one valid frame to the replay state; `Err` if it does not continue
/// the log consistently (treated like a damaged frame).
fn apply_frame(
    h: &FrameHead,
    f: &[u8],
    slot: u64,
    rec: &mut Recovered,
    pending: &mut Vec<(PageNo, PageBuf)>,
    pending_txn: &mut Option<u64>,
    last_txn: &mut Option<u64>,
) -> Result<(), &'static str> {
    if h.group < rec.last_group {
        return Err("group number goes backwards");
    }
    match *pending_txn {
        Some(t) if t != h.txn => return Err("frame of another transaction inside a transaction"),
        None if last_txn.is_some_and(|l| h.txn <= l) => {
            return Err("transaction id goes backwards");
        }
        _ => {}
    }
    let payload = &f[FRAME_HEADER..FRAME_SIZE];
    if h.kind == KIND_PAGE {
        let no = h.page_no();
        if no == 0 {
            return Err("page frame for page 0");
        }
        *pending_txn = Some(h.txn);
        pending.push((no, Arc::new(payload.to_vec())));
    } else {
        let meta_len = h.meta_len();
        if meta_len > MAX_META {
            return Err("commit frame with an oversized meta record");
        }
        if h.count() != pending.len() as u64 {
            return Err("commit frame does not match its transaction's page count");
        }
        let first = slot - pending.len() as u64;
        for (i, (no, buf)) in pending.drain(..).enumerate() {
            rec.pages.insert(no, (buf, first + i as u64));
        }
        rec.txns += 1;
        rec.meta = Some(payload[..meta_len].to_vec());
        rec.end_slot = slot + 1;
        rec.last_txn = h.txn;
        *pending_txn = None;
        *last_txn = Some(h.txn);
    }
    rec.last_group = h.group;
    Ok(())
}

// ---------------------------------------------------------------------------
// The writer
// ---------------------------------------------------------------------------

/// State owned by the writer thread.
struct Writer {
    shared: Arc<Shared>,
    wal: Box<dyn VfsFile>,
    opts: FileStoreOptions,
    header: Header,
    /// Slot (0 or 1) holding `header`.
    active_slot: usize,
    wal_len: u64,
    /// Next frame sequence number (= slot) of the current generation.
    next_slot: u64,
    /// Frames with a smaller sequence number are known durable.
    durable_slots: u64,
    next_txn: u64,
    next_group: u64,
    /// Set once a checkpoint has started writing a header slot: from then on
    /// the data file may be referenced by a durable header.
    wrote_header: bool,
}

impl Writer {
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
        self.durable_slots = self.next_slot;
        Ok(())
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
    fn checkpoint(&mut self) -> Result<(), StoreError> {
        if let Some(p) = self.shared.poisoned() {
            return Err(StoreError::Poisoned(p));
        }
        // 1. Everything in the WAL must be durable before the data file changes:
        //    after a crash the WAL (old salt) is replayed over the data file.
        if self.next_slot > self.durable_slots {
            self.sync_wal()?;
        }
        let shared = self.shared.clone();
        // 2. Write the newest version of every WAL page into the data file.
        //    Readers take the view lock, so none reads a page while it is written.
        let (meta, max_page) = {
            let view = shared.view_mut();
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
        self.durable_slots = 0;
        shared.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn run(mut self, rx: mpsc::Receiver<Request>) {
        loop {
            let first = match rx.recv() {
                Ok(r) => r,
                // Every sender is gone (the store was dropped without close).
                Err(_) => {
                    let _ = self.finish();
                    return;
                }
            };
            let mut group = Vec::new();
            let mut close = None;
            let mut bytes = 0u64;
            match first {
                Request::Close(reply) => close = Some(reply),
                r => {
                    bytes += request_bytes(&r);
                    group.push(r);
                    while bytes < self.opts.max_group_bytes {
                        match rx.try_recv() {
                            Ok(Request::Close(reply)) => {
                                close = Some(reply);
                                break;
                            }
                            Ok(r) => {
                                bytes += request_bytes(&r);
                                group.push(r);
                            }
                            Err(_) => break,
                        }
                    }
                }
            }
            if !group.is_empty() {
                self.write_group(group);
            }
            if let Some(reply) = close {
                let r = self.finish();
                let _ = reply.send(r);
                return;
            }
            if self.next_slot * FRAME_SIZE as u64 >= self.opts.checkpoint_wal_bytes
                && self.shared.poisoned().is_none()
            {
                // A failure poisons the store; the next commit reports it.
                let _ = self.checkpoint();
            }
        }
    }

    /// Final checkpoint at close.
    fn finish(&mut self) -> Result<(), StoreError> {
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
    fn write_group(&mut self, group: Vec<Request>) {
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
                Request::Close(reply) => replies.push(reply),
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

    fn append(&mut self, commits: &[Commit], need_sync: bool) -> Result<(), StoreError> {
        if let Some(p) = self.shared.poisoned() {
            return Err(StoreError::Poisoned(p));
        }
        let wal_path = self.shared.wal_path.clone();
        let first_slot = self.next_slot;
        let frames: usize = commits.iter().map(|c| c.pages.len() + 1).sum();
        if frames > 0 {
            let group = self.next_group;
            self.next_group += 1;
            let salt = self.header.salt;
            let mut buf = Vec::with_capacity(frames * FRAME_SIZE);
            let mut seq = self.next_slot;
            for c in commits {
                let txn = self.next_txn;
                self.next_txn += 1;
                for (no, page) in &c.pages {
                    encode_frame(
                        &mut buf,
                        KIND_PAGE,
                        salt,
                        seq,
                        txn,
                        group,
                        self.durable_slots,
                        *no,
                        page,
                    );
                    seq += 1;
                }
                let a = c.meta.len() as u64 | ((c.pages.len() as u64) << 32);
                encode_frame(
                    &mut buf,
                    KIND_COMMIT,
                    salt,
                    seq,
                    txn,
                    group,
                    self.durable_slots,
                    a,
                    &c.meta,
                );
                seq += 1;
            }
            let off = self.next_slot * FRAME_SIZE as u64;
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
                .write_at(&buf, off)
                .map_err(|e| self.fail("write wal", &wal_path, e))?;
            self.next_slot = seq;
            let st = &self.shared.stats;
            st.groups.fetch_add(1, Ordering::Relaxed);
            st.commits
                .fetch_add(commits.len() as u64, Ordering::Relaxed);
            st.wal_bytes_written
                .fetch_add(buf.len() as u64, Ordering::Relaxed);
        }
        if need_sync && self.durable_slots < self.next_slot {
            self.sync_wal()?;
        }
        if !commits.is_empty() {
            let mut view = self.shared.view_mut();
            let mut slot = first_slot;
            for c in commits {
                for (no, page) in &c.pages {
                    view.wal_pages.insert(*no, (page.clone(), slot));
                    slot += 1;
                }
                slot += 1; // the commit frame
                view.meta = Some(c.meta.clone());
            }
        }
        Ok(())
    }
}

fn request_bytes(r: &Request) -> u64 {
    match r {
        Request::Commit(c, _) => ((c.pages.len() + 1) * FRAME_SIZE) as u64,
        _ => 0,
    }
}

// ---------------------------------------------------------------------------
// Open
// ---------------------------------------------------------------------------

/// The lock error of a store directory as a [`StoreError`].
fn lock_err(e: LockError) -> StoreError {
    match e {
        LockError::Held { path, holder } => StoreError::Locked {
            path: path.display().to_string(),
            holder,
        },
        LockError::Io { path, source } => io_err("lock", &path.display().to_string(), source),
    }
}

/// Picks the header slot to use: `Ok(None)` for a store that holds nothing
/// yet (no valid slot, no pages, no WAL).
fn pick_header(
    data: &dyn VfsFile,
    dp: &str,
    data_len: u64,
    wal_len: u64,
) -> Result<Option<(usize, Header)>, StoreError> {
    let slots = [read_header(data, 0, dp)?, read_header(data, 1, dp)?];
    Ok(match slots {
        [Some(a), Some(b)] => Some(if b.seq > a.seq { (1, b) } else { (0, a) }),
        [Some(a), None] => Some((0, a)),
        [None, Some(b)] => Some((1, b)),
        [None, None] => {
            if wal_len > 0 || data_len > DATA_START {
                return Err(StoreError::Corrupt {
                    file: dp.to_string(),
                    page: None,
                    offset: 0,
                    reason: format!(
                        "neither header slot (offsets 0 and {HEADER_BLOCK}) is valid, but the store \
                         holds data ({data_len} bytes of data file, {wal_len} bytes of WAL)"
                    ),
                });
            }
            None
        }
    })
}

/// Replays the WAL under `header` and checks that the newer header slot, if
/// unreadable, was not already in use. Reads only.
fn recover(
    wal: &dyn VfsFile,
    wp: &str,
    dp: &str,
    active_slot: usize,
    header: &Header,
) -> Result<Recovered, StoreError> {
    let rec = recover_wal(wal, wp, header.salt)?;
    // If the newer header slot is unreadable but the WAL already runs under the
    // salt it introduced, that header was fsynced: it is damaged, not torn.
    let mut first = vec![0u8; FRAME_SIZE];
    let n = wal
        .read_at(&mut first, 0)
        .map_err(|e| io_err("read wal", wp, e))?;
    if n == FRAME_SIZE && parse_frame(&first, header.next_salt, 0).is_ok() {
        let bad = 1 - active_slot;
        return Err(StoreError::Corrupt {
            file: dp.to_string(),
            page: None,
            offset: slot_offset(bad),
            reason: format!(
                "header slot {bad} is unreadable, but the WAL was already restarted under the salt it introduced"
            ),
        });
    }
    Ok(rec)
}

fn report_of(rec: &Recovered) -> RecoveryReport {
    RecoveryReport {
        replayed_transactions: rec.txns,
        replayed_frames: rec.end_slot,
        dropped_tail: rec.dropped,
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
        let dir = dir.as_ref();
        let vfs = opts.vfs.clone();
        vfs.create_dir_all(dir)
            .map_err(|e| io_err("create directory", &dir.display().to_string(), e))?;
        let lock = vfs.lock_dir(dir, LockMode::Exclusive).map_err(lock_err)?;
        let data_path = dir.join(DATA_FILE);
        let wal_path = dir.join(WAL_FILE);
        let dp = data_path.display().to_string();
        let wp = wal_path.display().to_string();
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
        let rec = recover(&*wal, &wp, &dp, active_slot, &header)?;
        let recovery = report_of(&rec);

        let data_pages = data_len.saturating_sub(DATA_START) / PAGE_SIZE as u64;
        let meta = if rec.end_slot > 0 {
            rec.meta.clone()
        } else {
            header.meta.clone()
        };
        let shared = Arc::new(Shared {
            data,
            data_path: dp,
            wal_path: wp.clone(),
            view: RwLock::new(View {
                wal_pages: rec.pages,
                meta,
                data_pages,
            }),
            poison: Mutex::new(None),
            closed: AtomicBool::new(false),
            stats: Stats::default(),
        });
        let mut writer = Writer {
            shared: shared.clone(),
            wal,
            opts,
            header,
            active_slot,
            wal_len,
            next_slot: rec.end_slot,
            durable_slots: 0,
            next_txn: rec.last_txn + 1,
            next_group: rec.last_group + 1,
            wrote_header: false,
        };
        // Always start a fresh WAL generation: whatever lies beyond the recovered
        // prefix (a torn tail) then carries a dead salt and can never be replayed.
        if let Err(e) = writer.checkpoint() {
            // No header points past the old data-file end yet, and every page
            // the checkpoint copied is still in the durable WAL: give back what
            // it grew (a full disk must not get fuller from a failed open).
            if !writer.wrote_header {
                let _ = shared.data.set_len(data_len);
                let _ = shared.data.sync_data();
            }
            return Err(e);
        }
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("outpost-wal".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| io_err("spawn wal writer", &wp, e))?;
        Ok(FileStore {
            shared,
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            read_only: false,
            recovery,
            lock: Mutex::new(Some(lock)),
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
        let data_path = dir.join(DATA_FILE);
        let wal_path = dir.join(WAL_FILE);
        let dp = data_path.display().to_string();
        let wp = wal_path.display().to_string();
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
        let (rec, meta) = match pick_header(&*data, &dp, data_len, wal_len)? {
            // Nothing committed yet: an empty store.
            None => (Recovered::default(), None),
            Some((active_slot, header)) => {
                let rec = match &wal {
                    Some(w) => recover(&**w, &wp, &dp, active_slot, &header)?,
                    None => Recovered::default(),
                };
                let meta = if rec.end_slot > 0 {
                    rec.meta.clone()
                } else {
                    header.meta
                };
                (rec, meta)
            }
        };
        let recovery = report_of(&rec);
        let shared = Arc::new(Shared {
            data,
            data_path: dp,
            wal_path: wp,
            view: RwLock::new(View {
                wal_pages: rec.pages,
                meta,
                data_pages: data_len.saturating_sub(DATA_START) / PAGE_SIZE as u64,
            }),
            poison: Mutex::new(None),
            closed: AtomicBool::new(false),
            stats: Stats::default(),
        });
        Ok(FileStore {
            shared,
            tx: Mutex::new(None),
            thread: Mutex::new(None),
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
        let s = &self.shared.stats;
        FileStoreStats {
            fsyncs: s.fsyncs.load(Ordering::Relaxed),
            groups: s.groups.load(Ordering::Relaxed),
            commits: s.commits.load(Ordering::Relaxed),
            wal_bytes_written: s.wal_bytes_written.load(Ordering::Relaxed),
            checkpoints: s.checkpoints.load(Ordering::Relaxed),
        }
    }

    fn tx(&self) -> MutexGuard<'_, Option<mpsc::Sender<Request>>> {
        self.tx.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends a request to the writer thread and returns the future of its reply.
    fn send(&self, make: impl FnOnce(Reply) -> Request) -> BoxFuture<'_, Result<(), StoreError>> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Box::pin(async { Err(StoreError::Closed) });
        }
        if self.read_only {
            return Box::pin(async { Err(StoreError::ReadOnly) });
        }
        if let Some(p) = self.shared.poisoned() {
            return Box::pin(async move { Err(StoreError::Poisoned(p)) });
        }
        let (reply, rx) = oneshot::channel();
        let sent = match &*self.tx() {
            Some(tx) => tx.send(make(reply)).is_ok(),
            None => false,
        };
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
        let r = (|| {
            if self.shared.closed.load(Ordering::Acquire) {
                return Err(StoreError::Closed);
            }
            if no == 0 {
                return Err(StoreError::PageNotFound(0));
            }
            // Hold the view lock across the data-file read: a checkpoint writes
            // data pages only under the write lock.
            let view = self.shared.view();
            if let Some((p, _)) = view.wal_pages.get(&no) {
                return Ok(p.clone());
            }
            if no > view.data_pages {
                return Err(StoreError::PageNotFound(no));
            }
            let mut buf = vec![0u8; PAGE_SIZE];
            let off = DATA_START + (no - 1) * PAGE_SIZE as u64;
            let n = self
                .shared
                .data
                .read_at(&mut buf, off)
                .map_err(|e| io_err("read page", &self.shared.data_path, e))?;
            if n < PAGE_SIZE {
                return Err(StoreError::Corrupt {
                    file: self.shared.data_path.clone(),
                    page: Some(no),
                    offset: off,
                    reason: format!("short read: {n} of {PAGE_SIZE} bytes"),
                });
            }
            Ok(Arc::new(buf))
        })();
        Box::pin(async move { r })
    }

    fn read_meta(&self) -> BoxFuture<'_, Result<Option<Vec<u8>>, StoreError>> {
        let r = if self.shared.closed.load(Ordering::Acquire) {
            Err(StoreError::Closed)
        } else {
            Ok(self.shared.view().meta.clone())
        };
        Box::pin(async move { r })
    }

    fn commit(&self, commit: Commit) -> BoxFuture<'_, Result<(), StoreError>> {
        if let Err(e) = validate_commit(&commit) {
            return Box::pin(async move { Err(e) });
        }
        self.send(move |reply| Request::Commit(commit, reply))
    }

    fn sync(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.send(Request::Sync)
    }

    fn close(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.shared.closed.store(true, Ordering::Release);
        let tx = self.tx().take();
        let rx = tx.map(|tx| {
            let (reply, rx) = oneshot::channel();
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
        let view = self.shared.view();
        if let Some((_, slot)) = view.wal_pages.get(&no) {
            return Some(PageLocation {
                file: self.shared.wal_path.clone(),
                offset: slot * FRAME_SIZE as u64 + FRAME_HEADER as u64,
            });
        }
        (no >= 1 && no <= view.data_pages).then(|| PageLocation {
            file: self.shared.data_path.clone(),
            offset: DATA_START + (no - 1) * PAGE_SIZE as u64,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize, mul: usize) -> Vec<u8> {
        (0..len).map(|i| (i * mul % 256) as u8).collect()
    }

    #[test]
    fn xxh64_matches_the_reference_implementation() {
        // Values from libxxhash 0.8.1 (`XXH64(data, len, seed)`).
        assert_eq!(xxh64(b"", 0), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxh64(b"a", 0), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(xxh64(b"abc", 0), 0x44BC_2CF5_AD77_0999);
        assert_eq!(xxh64(b"abcd", 0), 0xDE03_27B0_D25D_92CC);
        assert_eq!(xxh64(&pattern(64, 1), 0), 0xF7C6_7301_DB67_13F0);
        assert_eq!(xxh64(&pattern(4096, 7), 0), 0xC806_6D80_A6FE_1426);
        assert_eq!(
            xxh64(&pattern(103, 13), 0x1234_5678_90AB_CDEF),
            0x2787_129C_76B8_3F89
        );
    }

    /// A record ending in a CRC-32 of the rest (like the engine's meta record).
    fn self_checked(fill: u8) -> Vec<u8> {
        let mut m = vec![fill; 60];
        let crc = crc32fast::hash(&m[..56]);
        m[56..].copy_from_slice(&crc.to_le_bytes());
        m
    }

    #[test]
    fn new_header_over_an_old_payload_is_rejected() {
        let (old_meta, new_meta) = (self_checked(1), self_checked(2));
        let a = |len: usize| len as u64 | (3 << 32);
        let mut old = Vec::new();
        encode_frame(&mut old, KIND_COMMIT, 11, 7, 4, 4, 0, a(60), &old_meta);
        let mut new = Vec::new();
        encode_frame(&mut new, KIND_COMMIT, 22, 7, 9, 9, 4, a(60), &new_meta);
        assert!(parse_frame(&old, 11, 7).is_ok());
        assert!(parse_frame(&new, 22, 7).is_ok());
        // The write of `new` torn between header and payload.
        let mut mixed = new.clone();
        mixed[FRAME_HEADER..].copy_from_slice(&old[FRAME_HEADER..]);
        // A CRC-32 over header and payload cannot see the difference ...
        let crc = |f: &[u8]| {
            let mut h = crc32fast::Hasher::new();
            h.update(&f[..F_CHECKSUM]);
            h.update(&f[FRAME_HEADER..]);
            h.finalize()
        };
        assert_eq!(crc(&mixed), crc(&new));
        // ... the frame checksum does.
        assert_eq!(
            parse_frame(&mixed, 22, 7).err(),
            Some("frame checksum mismatch")
        );
    }

    fn header_file(block: &[u8]) -> Box<dyn VfsFile> {
        let path = std::path::PathBuf::from("/h/outpost.db");
        let mut files = super::super::fault::FileImages::new();
        files.insert(path.clone(), block.to_vec());
        let vfs = super::super::fault::FaultVfs::with_files(files);
        vfs.open(&path, false).unwrap()
    }

    #[test]
    fn header_mixed_from_two_writes_is_rejected() {
        // Two 600-byte meta records that end in their own CRC-32 and differ only
        // after their first 464 bytes, i.e. only in the slot's second sector.
        let meta = |fill: u8| {
            let mut m = vec![7u8; 600];
            m[500..596].fill(fill);
            let crc = crc32fast::hash(&m[..596]);
            m[596..].copy_from_slice(&crc.to_le_bytes());
            m
        };
        let header = |seq, meta| Header {
            seq,
            salt: 5,
            next_salt: 6,
            meta: Some(meta),
        };
        let old = encode_header(&header(1, meta(1)));
        let new = encode_header(&header(3, meta(2)));
        assert!(read_header(&*header_file(&new), 0, "h").unwrap().is_some());
        // The new header's first and third sectors, the old one's second.
        let mut mixed = new.clone();
        mixed[512..1024].copy_from_slice(&old[512..1024]);
        assert_eq!(
            crc32fast::hash(&mixed[..H_CHECKSUM]),
            crc32fast::hash(&new[..H_CHECKSUM])
        );
        assert!(
            read_header(&*header_file(&mixed), 0, "h")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn version_1_header_is_unsupported() {
        let mut b = encode_header(&Header {
            seq: 1,
            salt: 5,
            next_salt: 6,
            meta: None,
        });
        put_u32(&mut b, H_VERSION, 1);
        let crc = crc32fast::hash(&b[..H_CHECKSUM]);
        b[H_CHECKSUM..HEADER_LEN].fill(0);
        put_u32(&mut b, H_CHECKSUM, crc);
        match read_header(&*header_file(&b), 0, "h") {
            Err(StoreError::Unsupported { reason, .. }) => {
                assert!(reason.contains("format version 1"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // A damaged header of this version is just invalid.
        b[30] ^= 1;
        assert!(read_header(&*header_file(&b), 0, "h").unwrap().is_none());
    }
}
