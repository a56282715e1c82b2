//! The file store's on-disk format: the two header slots of the data file,
//! the WAL frame header, and their XXH64 checksums. Pure encoding and
//! decoding over byte buffers (and [`read_header`] over one [`VfsFile`]);
//! no threads, no state. Layout and the crash-safety argument are in
//! `docs/design.md` ("File store" sections).
//!
//! ```text
//! header slot (at 0 and HEADER_BLOCK in the data file; little-endian)
//!   0  magic "OUTPSTDB"   8  u32 format version   12 u32 page size
//!  16  u64 seq           24  u64 salt             32 u64 next salt
//!  40  u32 flags         44  u32 meta length      48 meta (MAX_META bytes)
//!  48 + MAX_META  u64 XXH64 of every byte before it
//!
//! WAL frame header (FRAME_HEADER bytes, then `stored` bytes of payload,
//! zero-padded to a multiple of 8; frames follow each other with no gap)
//!   0  u32 magic "OPWF"   4  u8 kind   5 zero   6 u16 stored (0: PAGE_SIZE)
//!   8  u64 salt          16  u64 seq
//!  24  u64 txn           32  u64 group             40 u64 durable-before
//!  48  u64: page frames the page number; commit frames u32 meta length
//!      and u32 page-frame count of the transaction
//!  56  u64 checksum (see `frame_checksum`)
//! ```

use xxhash_rust::xxh64::xxh64;

use super::{FORMAT_VERSION, FRAME_HEADER, HEADER_BLOCK, MIN_FORMAT_VERSION, io_err};
use crate::codec::{Put, Reader, Truncated, get_u32, get_u64, set_u64};
use crate::platform::random_bytes;
use crate::store::vfs::VfsFile;
use crate::store::{MAX_META, PAGE_SIZE, PageNo, StoreError};

const HEADER_MAGIC: [u8; 8] = *b"OUTPSTDB";
const FRAME_MAGIC: u32 = 0x4657_504F; // "OPWF" little-endian
/// The first four bytes of every frame.
pub(super) const FRAME_MAGIC_BYTES: [u8; 4] = FRAME_MAGIC.to_le_bytes();
pub(super) const KIND_PAGE: u8 = 1;
pub(super) const KIND_COMMIT: u8 = 2;

/// Offset of the format version in a header slot.
#[cfg(all(test, not(target_arch = "wasm32")))]
pub(super) const H_VERSION: usize = 8;
/// Offset of the checksum in a header slot: it covers every byte before it.
pub(super) const H_CHECKSUM: usize = 48 + MAX_META;
/// Bytes of a header slot that are written and read.
pub(super) const HEADER_LEN: usize = H_CHECKSUM + 8;
const FLAG_HAS_META: u32 = 1;

/// Offset of the checksum in a frame header (see [`frame_checksum`]).
pub(super) const F_CHECKSUM: usize = 56;

/// The checksum seed of headers and frames.
const SEED: u64 = 0;

/// Byte offset of header slot `slot` in the data file.
pub(super) fn slot_offset(slot: usize) -> u64 {
    slot as u64 * HEADER_BLOCK
}

/// A new salt, never equal to any of `avoid` (nor to zero).
pub(super) fn new_salt(avoid: &[u64]) -> u64 {
    loop {
        let mut b = [0u8; 8];
        random_bytes(&mut b);
        let s = u64::from_ne_bytes(b);
        if s != 0 && !avoid.contains(&s) {
            return s;
        }
    }
}

// ---------------------------------------------------------------------------
// Header slots
// ---------------------------------------------------------------------------

/// The contents of one header slot.
#[derive(Clone, Debug)]
pub(super) struct Header {
    pub seq: u64,
    pub salt: u64,
    pub next_salt: u64,
    pub meta: Option<Vec<u8>>,
}

/// The header slot as one [`HEADER_BLOCK`] of bytes.
pub(super) fn encode_header(h: &Header) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER_BLOCK as usize);
    b.extend_from_slice(&HEADER_MAGIC);
    b.put_u32(FORMAT_VERSION);
    b.put_u32(PAGE_SIZE as u32);
    b.put_u64(h.seq);
    b.put_u64(h.salt);
    b.put_u64(h.next_salt);
    let meta = h.meta.as_deref().unwrap_or_default();
    b.put_u32(if h.meta.is_some() { FLAG_HAS_META } else { 0 });
    b.put_u32(meta.len() as u32);
    b.extend_from_slice(meta);
    b.resize(HEADER_BLOCK as usize, 0);
    let sum = xxh64(&b[..H_CHECKSUM], SEED);
    set_u64(&mut b, H_CHECKSUM, sum);
    b
}

/// The fields of a header slot as read, before any check.
struct RawHeader<'a> {
    magic: [u8; 8],
    version: u32,
    page_size: u32,
    seq: u64,
    salt: u64,
    next_salt: u64,
    flags: u32,
    meta_len: u32,
    meta: &'a [u8],
}

fn decode_header(b: &[u8]) -> Result<RawHeader<'_>, Truncated> {
    let mut r = Reader::new(b);
    Ok(RawHeader {
        magic: r.array("header magic")?,
        version: r.u32("format version")?,
        page_size: r.u32("page size")?,
        seq: r.u64("header seq")?,
        salt: r.u64("salt")?,
        next_salt: r.u64("next salt")?,
        flags: r.u32("header flags")?,
        meta_len: r.u32("meta length")?,
        meta: r.take(MAX_META, "meta record")?,
    })
}

/// Reads header slot `slot`: `Ok(Some)` if valid, `Ok(None)` if absent or
/// damaged, `Err` for an I/O error or a valid header of an unsupported format.
///
/// The checksum is XXH64, not a CRC, for the reason given at [`frame_checksum`]:
/// with 512-byte sectors written out of order, a CRC-32 accepts a slot mixed
/// from two writes whose meta records (ending in their own CRC-32) differ only
/// within one sector.
pub(super) fn read_header(
    data: &dyn VfsFile,
    slot: usize,
    path: &str,
) -> Result<Option<Header>, StoreError> {
    let mut b = vec![0u8; HEADER_LEN];
    let n = data
        .read_at(&mut b, slot_offset(slot))
        .map_err(|e| io_err("read header", path, e))?;
    let (Ok(h), Some(sum)) = (decode_header(&b[..n]), get_u64(&b[..n], H_CHECKSUM)) else {
        return Ok(None);
    };
    if h.magic != HEADER_MAGIC {
        return Ok(None);
    }
    let version = h.version;
    if xxh64(&b[..H_CHECKSUM], SEED) != sum {
        // Format version 1 kept a CRC-32 of the same bytes at the same offset:
        // recognise such a header, to refuse the store by name rather than
        // call it corrupt (and never read its WAL with the wrong checksum).
        let v1 = Some(crc32fast::hash(&b[..H_CHECKSUM])) == get_u32(&b, H_CHECKSUM);
        if !(v1 && version < MIN_FORMAT_VERSION) {
            return Ok(None);
        }
    }
    // Version 2 differs from 3 only in its WAL frames, which all had the
    // full page size that version 3 writes as "stored: 0": the same reader
    // reads both (docs/design.md, "File store: layout"). The first
    // checkpoint writes a version 3 header.
    if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(StoreError::Unsupported {
            file: path.to_string(),
            reason: format!(
                "format version {version} (this build reads {MIN_FORMAT_VERSION} to {FORMAT_VERSION})"
            ),
        });
    }
    let page_size = h.page_size;
    if page_size as usize != PAGE_SIZE {
        return Err(StoreError::Unsupported {
            file: path.to_string(),
            reason: format!("page size {page_size} (this build uses {PAGE_SIZE})"),
        });
    }
    let flags = h.flags;
    let meta_len = h.meta_len as usize;
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
    // The writer numbers each checkpoint's header one past the last: a
    // store never comes near 2^62 checkpoints, and a number beyond that
    // would overflow at the next one (found by fuzzing:
    // fuzz-regressions/file_store/crash-header-seq-overflow-*).
    if h.seq >= MAX_COUNTER {
        return Err(StoreError::Corrupt {
            file: path.to_string(),
            page: None,
            offset: slot_offset(slot),
            reason: format!(
                "header slot {slot} has a valid checksum but sequence number {} (out of range)",
                h.seq
            ),
        });
    }
    let meta = (flags & FLAG_HAS_META != 0).then(|| h.meta[..meta_len].to_vec());
    Ok(Some(Header {
        seq: h.seq,
        salt: h.salt,
        next_salt: h.next_salt,
        meta,
    }))
}

// ---------------------------------------------------------------------------
// WAL frames
// ---------------------------------------------------------------------------

/// The header fields of one WAL frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FrameHead {
    pub kind: u8,
    /// The salt of the WAL generation the frame belongs to.
    pub salt: u64,
    /// The frame's sequence number: its slot in the WAL.
    pub seq: u64,
    pub txn: u64,
    pub group: u64,
    /// Frames before this slot were fsynced when this one was written.
    pub durable_before: u64,
    /// Page frames: the page number. Commit frames: the meta length (low 32
    /// bits) and the transaction's page-frame count (high 32 bits).
    pub a: u64,
    /// Payload bytes the frame stores (1 ..= PAGE_SIZE; the rest of the page
    /// or meta record is zeros). Set by [`encode_frame`] from the payload.
    pub stored: usize,
}

impl FrameHead {
    /// The page a page frame carries.
    pub fn page_no(&self) -> PageNo {
        self.a
    }
    /// The meta record length of a commit frame.
    pub fn meta_len(&self) -> usize {
        (self.a & 0xFFFF_FFFF) as usize
    }
    /// The page-frame count of a commit frame's transaction.
    pub fn count(&self) -> u64 {
        self.a >> 32
    }
    /// The `a` field of a commit frame.
    pub fn commit_a(meta_len: usize, pages: usize) -> u64 {
        meta_len as u64 | ((pages as u64) << 32)
    }
    /// Bytes the whole frame takes in the WAL: header, stored payload,
    /// padding to a multiple of 8.
    pub fn len(&self) -> usize {
        frame_len(self.stored)
    }
}

/// Bytes a frame storing `stored` payload bytes takes in the WAL.
pub(super) fn frame_len(stored: usize) -> usize {
    FRAME_HEADER + stored.next_multiple_of(8)
}

/// Payload bytes a frame stores of `payload`: up to its last non-zero byte
/// (at least 1). A page's free space is zeros, so a leaf or branch that is
/// not full, a free-list page and a commit frame's meta record take a few
/// hundred bytes, not a page.
pub(super) fn stored_len(payload: &[u8]) -> usize {
    // Eight bytes at a time from the end (a byte at a time was 4 % of the
    // WAL thread's samples), then the last non-zero word byte by byte.
    let words = payload.len() / 8 * 8;
    let last = match payload[words..].iter().rposition(|&b| b != 0) {
        Some(i) => words + i,
        None => match payload[..words]
            .chunks_exact(8)
            .rposition(|w| w.iter().fold(0u8, |acc, &b| acc | b) != 0)
        {
            Some(w) => {
                w * 8
                    + payload[w * 8..w * 8 + 8]
                        .iter()
                        .rposition(|&b| b != 0)
                        .unwrap_or(0)
            }
            None => return 1,
        },
    };
    last + 1
}

/// Appends one frame (header, the payload up to its last non-zero byte,
/// zero padding to a multiple of 8, checksum); `h.stored` is ignored.
pub(super) fn encode_frame(out: &mut Vec<u8>, h: &FrameHead, payload: &[u8]) {
    debug_assert!(payload.len() <= PAGE_SIZE);
    let stored = stored_len(payload);
    let start = out.len();
    out.reserve(frame_len(stored));
    out.put_u32(FRAME_MAGIC);
    out.put_u8(h.kind);
    out.put_u8(0);
    // A whole page is written as 0, as format version 2 wrote every frame.
    out.put_u16(if stored == PAGE_SIZE {
        0
    } else {
        stored as u16
    });
    for v in [h.salt, h.seq, h.txn, h.group, h.durable_before, h.a] {
        out.put_u64(v);
    }
    out.put_u64(0); // the checksum, set below
    if stored <= payload.len() {
        out.extend_from_slice(&payload[..stored]);
    } else {
        out.push(0); // an empty payload: one zero byte
    }
    out.resize(start + frame_len(stored), 0);
    let f = &mut out[start..];
    let sum = frame_checksum(f, stored);
    set_u64(f, F_CHECKSUM, sum);
}

/// Sets the checksum of the frame at the start of `f` to match its bytes
/// (its header's `stored` length, capped at a page): for tests and the
/// fuzzer, which change frames and seal them again. Returns the frame's
/// length, or `None` if `f` does not hold a whole frame.
#[cfg(all(
    not(target_arch = "wasm32"),
    any(test, feature = "fuzzing", feature = "testing")
))]
pub(super) fn reseal_frame(f: &mut [u8]) -> Option<usize> {
    if f.len() < FRAME_HEADER {
        return None;
    }
    let stored = match u16::from_le_bytes([f[6], f[7]]) {
        0 => PAGE_SIZE,
        n => usize::from(n).min(PAGE_SIZE),
    };
    let len = frame_len(stored);
    if f.len() < len {
        return None;
    }
    let sum = frame_checksum(f, stored);
    set_u64(f, F_CHECKSUM, sum);
    Some(len)
}

/// Sets the checksum of the header slot at the start of `h` to match its
/// bytes (see [`reseal_frame`]); false if `h` is too short.
#[cfg(all(
    not(target_arch = "wasm32"),
    any(test, feature = "fuzzing", feature = "testing")
))]
pub(super) fn reseal_header(h: &mut [u8]) -> bool {
    if h.len() < HEADER_LEN {
        return false;
    }
    let sum = xxh64(&h[..H_CHECKSUM], SEED);
    set_u64(h, H_CHECKSUM, sum);
    true
}

/// The header fields of a frame, if it has the frame magic; no other check.
pub(super) fn frame_head(f: &[u8]) -> Option<FrameHead> {
    decode_frame_head(f).ok().flatten()
}

fn decode_frame_head(f: &[u8]) -> Result<Option<FrameHead>, Truncated> {
    let mut r = Reader::new(f);
    if r.u32("frame magic")? != FRAME_MAGIC {
        return Ok(None);
    }
    let kind = r.u8("frame kind")?;
    r.advance(1, "frame padding")?;
    let stored = match r.u16("stored length")? {
        0 => PAGE_SIZE,
        n => n as usize,
    };
    Ok(Some(FrameHead {
        kind,
        salt: r.u64("salt")?,
        seq: r.u64("seq")?,
        txn: r.u64("txn")?,
        group: r.u64("group")?,
        durable_before: r.u64("durable before")?,
        a: r.u64("frame argument")?,
        stored,
    }))
}

/// The checksum of a frame: `XXH64(header bytes 0..56 ++ XXH64(payload))`,
/// over the `stored` payload bytes (the header's `stored` field is among the
/// hashed header bytes). `f` holds at least `FRAME_HEADER + stored` bytes.
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
pub(super) fn frame_checksum(f: &[u8], stored: usize) -> u64 {
    let mut b = [0u8; F_CHECKSUM + 8];
    b[..F_CHECKSUM].copy_from_slice(&f[..F_CHECKSUM]);
    set_u64(
        &mut b,
        F_CHECKSUM,
        xxh64(&f[FRAME_HEADER..FRAME_HEADER + stored], SEED),
    );
    xxh64(&b, SEED)
}

/// Bound on the transaction and group numbers a valid frame carries, and
/// on a header's sequence number.
const MAX_COUNTER: u64 = 1 << 62;

/// Checks the frame at the start of `f` (which runs to the end of what was
/// read of the WAL) against the current `salt`, as the frame with sequence
/// number `seq` (`None`: any).
pub(super) fn parse_frame(
    f: &[u8],
    salt: u64,
    seq: Option<u64>,
) -> Result<FrameHead, &'static str> {
    let head = match frame_head(f) {
        Some(h) => h,
        _ => return Err("no frame magic"),
    };
    if head.salt != salt {
        return Err("frame of another WAL generation");
    }
    if seq.is_some_and(|s| head.seq != s) {
        return Err("frame sequence number does not match its position");
    }
    if head.stored > PAGE_SIZE {
        return Err("frame stores more than a page");
    }
    if f.len() < head.len() {
        return Err("frame runs past the end of the WAL");
    }
    if Some(frame_checksum(f, head.stored)) != get_u64(f, F_CHECKSUM) {
        return Err("frame checksum mismatch");
    }
    if head.kind != KIND_PAGE && head.kind != KIND_COMMIT {
        return Err("unknown frame kind");
    }
    if head.durable_before > head.seq {
        return Err("frame claims durability of later frames");
    }
    // The writer continues the counters of the frames it recovers: a WAL
    // never comes near 2^62 transactions, and counters beyond that would
    // overflow when it does (found by fuzzing: fuzz-regressions/file_store).
    if head.txn >= MAX_COUNTER || head.group >= MAX_COUNTER {
        return Err("frame counters out of range");
    }
    Ok(head)
}

// Native only: they read through `FaultVfs`.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::codec::{get_u16, set_u32};
    use crate::store::fault::{FaultVfs, FileImages};
    use crate::store::file::FRAME_SIZE;
    use crate::store::vfs::Vfs;

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

    #[test]
    fn a_changed_frame_resealed_is_valid_again() {
        let head = FrameHead {
            kind: KIND_PAGE,
            salt: 7,
            seq: 3,
            txn: 2,
            group: 1,
            durable_before: 0,
            a: 9,
            stored: 0,
        };
        let mut wal = Vec::new();
        encode_frame(&mut wal, &head, &pattern(300, 3));
        encode_frame(
            &mut wal,
            &FrameHead { seq: 4, ..head },
            &pattern(PAGE_SIZE, 5),
        );
        let first = frame_len(stored_len(&pattern(300, 3)));
        wal[FRAME_HEADER + 10] ^= 1;
        wal[first + FRAME_HEADER + 4000] ^= 1;
        assert!(parse_frame(&wal, 7, Some(3)).is_err());
        assert!(parse_frame(&wal[first..], 7, Some(4)).is_err());
        assert_eq!(reseal_frame(&mut wal), Some(first));
        assert_eq!(reseal_frame(&mut wal[first..]), Some(FRAME_SIZE));
        assert!(parse_frame(&wal, 7, Some(3)).is_ok());
        assert!(parse_frame(&wal[first..], 7, Some(4)).is_ok());
        // Not a whole frame: nothing is sealed.
        assert_eq!(reseal_frame(&mut wal[first..first + 100]), None);
        // A header slot: the checksum `encode_header` writes.
        let sealed = encode_header(&Header {
            seq: 5,
            salt: 6,
            next_salt: 7,
            meta: Some(pattern(100, 3)),
        });
        let mut b = sealed.clone();
        b[H_CHECKSUM] ^= 0xFF;
        assert!(reseal_header(&mut b));
        assert_eq!(b, sealed);
        assert!(!reseal_header(&mut b[..HEADER_LEN - 1]));
    }

    #[test]
    fn checksums_match_the_format_2_implementation() {
        // Outputs of the hand-written XXH64 that format version 2 shipped
        // with, at the store's seed (0) and the lengths it hashes (64-byte
        // frame headers, 1072-byte header slots, 4096-byte pages), plus
        // stripe boundaries and other seeds. Stores written by it must open.
        assert_eq!(SEED, 0);
        assert_eq!(xxh64(&pattern(31, 5), 0), 0xED04_F0E1_AFBC_BD62);
        assert_eq!(xxh64(&pattern(32, 5), 0), 0xBE7A_DF1E_CB66_7BCC);
        assert_eq!(xxh64(&pattern(64, 3), 0), 0x1F98_CAD5_D6D8_233A);
        assert_eq!(xxh64(&pattern(1072, 11), 0), 0x0E03_B61B_418F_8B04);
        assert_eq!(xxh64(&pattern(4096, 3), 0), 0x5096_3F97_192B_21BB);
        assert_eq!(xxh64(&pattern(4096, 3), 1), 0xB5E7_B790_A643_25B9);
        assert_eq!(xxh64(&pattern(100, 17), u64::MAX), 0xF532_0E27_CC30_AA23);
        // Whole frames and header slots, as the old encoder checksummed them
        // (format 2: every frame a whole page, the header's version 2).
        let head = |kind, salt, seq, a| FrameHead {
            kind,
            salt,
            seq,
            txn: 3,
            group: 2,
            durable_before: 1,
            a,
            stored: 0,
        };
        // A full page is encoded as format 2 encoded every frame.
        let mut f = Vec::new();
        encode_frame(
            &mut f,
            &head(KIND_PAGE, 0x1122_3344_5566_7788, 5, 42),
            &pattern(PAGE_SIZE, 7),
        );
        assert_eq!(f.len(), FRAME_SIZE);
        assert_eq!(get_u64(&f, F_CHECKSUM), Some(0x1BE6_4FB8_F693_EF83));
        // A format 2 commit frame (its meta record zero-padded to a page)
        // is read as a frame storing a whole page.
        let a = FrameHead::commit_a(60, 1);
        let f = v2_frame(&head(KIND_COMMIT, 9, 6, a), &pattern(60, 1));
        assert_eq!(get_u64(&f, F_CHECKSUM), Some(0xD8EF_7755_D300_1584));
        let h = parse_frame(&f, 9, Some(6)).unwrap();
        assert_eq!(
            (h.stored, h.len(), h.meta_len()),
            (PAGE_SIZE, FRAME_SIZE, 60)
        );
        let v2_header = |h: &Header| {
            let mut b = encode_header(h);
            set_u32(&mut b, H_VERSION, 2);
            let sum = xxh64(&b[..H_CHECKSUM], SEED);
            set_u64(&mut b, H_CHECKSUM, sum);
            b
        };
        let h = v2_header(&Header {
            seq: 7,
            salt: 9,
            next_salt: 10,
            meta: Some(pattern(100, 1)),
        });
        assert_eq!(get_u64(&h, H_CHECKSUM), Some(0xB08A_DD6C_9588_49CA));
        let read = read_header(&*header_file(&h), 0, "h").unwrap().unwrap();
        assert_eq!((read.seq, read.meta), (7, Some(pattern(100, 1))));
        let h = v2_header(&Header {
            seq: 1,
            salt: 2,
            next_salt: 3,
            meta: None,
        });
        assert_eq!(get_u64(&h, H_CHECKSUM), Some(0x0A9B_A9C2_5C7E_4B91));
    }

    /// A frame as format version 2 wrote it: the payload zero-padded to a
    /// page, bytes 5..8 zero.
    fn v2_frame(h: &FrameHead, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.put_u32(FRAME_MAGIC);
        f.put_u8(h.kind);
        f.extend_from_slice(&[0; 3]);
        for v in [h.salt, h.seq, h.txn, h.group, h.durable_before, h.a] {
            f.put_u64(v);
        }
        f.put_u64(0);
        f.extend_from_slice(payload);
        f.resize(FRAME_SIZE, 0);
        let sum = frame_checksum(&f, PAGE_SIZE);
        set_u64(&mut f, F_CHECKSUM, sum);
        f
    }

    #[test]
    fn a_frame_stores_its_payload_up_to_the_last_non_zero_byte() {
        let head = FrameHead {
            kind: KIND_PAGE,
            salt: 5,
            seq: 3,
            txn: 2,
            group: 2,
            durable_before: 1,
            a: 9,
            stored: 0,
        };
        for (last, stored) in [
            (Some(99), 100),
            (Some(0), 1),
            (None, 1),
            (Some(7), 8),
            (Some(8), 9),
            (Some(4094), 4095usize),
        ] {
            let mut page = vec![0u8; PAGE_SIZE];
            if let Some(i) = last {
                page[i] = 0xAB;
                page[i / 2] = 0x01;
            }
            for len in [PAGE_SIZE, 60, 13, 0] {
                let p = &page[..len];
                let want = p.iter().rposition(|&b| b != 0).map_or(1, |i| i + 1);
                assert_eq!(stored_len(p), want, "{last:?} over {len} bytes");
            }
            let mut f = Vec::new();
            encode_frame(&mut f, &head, &page);
            assert_eq!(
                f.len(),
                FRAME_HEADER + stored.next_multiple_of(8),
                "{last:?}"
            );
            assert_eq!(get_u16(&f, 6), Some(stored as u16));
            // Followed by other bytes, as in the WAL.
            f.extend_from_slice(&[0xEE; 100]);
            let h = parse_frame(&f, 5, Some(3)).unwrap();
            assert_eq!((h.stored, h.len(), h.page_no()), (stored, f.len() - 100, 9));
            // Every stored byte and the length are covered by the checksum.
            for i in [6, FRAME_HEADER, FRAME_HEADER + stored - 1] {
                let mut bad = f.clone();
                bad[i] ^= 0x10;
                assert!(parse_frame(&bad, 5, Some(3)).is_err(), "byte {i}");
            }
            // A frame cut short is not a frame.
            assert_eq!(
                parse_frame(&f[..h.len() - 1], 5, Some(3)).err(),
                Some("frame runs past the end of the WAL")
            );
        }
        // A length beyond a page is refused before anything is read by it,
        // even under a checksum that matches.
        let mut f = Vec::new();
        encode_frame(&mut f, &head, &[1u8; 100]);
        f.resize(FRAME_HEADER + 8000, 1);
        f[6..8].copy_from_slice(&5000u16.to_le_bytes());
        let sum = frame_checksum(&f, 5000);
        set_u64(&mut f, F_CHECKSUM, sum);
        assert_eq!(
            parse_frame(&f, 5, Some(3)).err(),
            Some("frame stores more than a page")
        );
    }

    /// A record ending in a CRC-32 of the rest (like the engine's meta record).
    fn self_checked(fill: u8) -> Vec<u8> {
        let mut m = vec![fill; 60];
        let crc = crc32fast::hash(&m[..56]);
        set_u32(&mut m, 56, crc);
        m
    }

    #[test]
    fn new_header_over_an_old_payload_is_rejected() {
        let (old_meta, new_meta) = (self_checked(1), self_checked(2));
        let frame = |salt, txn, durable_before, meta: &[u8]| {
            let mut f = Vec::new();
            let h = FrameHead {
                kind: KIND_COMMIT,
                salt,
                seq: 7,
                txn,
                group: txn,
                durable_before,
                a: FrameHead::commit_a(60, 3),
                stored: 0,
            };
            encode_frame(&mut f, &h, meta);
            f
        };
        let old = frame(11, 4, 0, &old_meta);
        let new = frame(22, 9, 4, &new_meta);
        assert!(parse_frame(&old, 11, Some(7)).is_ok());
        assert!(parse_frame(&new, 22, Some(7)).is_ok());
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
            parse_frame(&mixed, 22, Some(7)).err(),
            Some("frame checksum mismatch")
        );
    }

    fn header_file(block: &[u8]) -> Box<dyn VfsFile> {
        let path = std::path::PathBuf::from("/h/outpost.db");
        let mut files = FileImages::new();
        files.insert(path.clone(), block.to_vec());
        let vfs = FaultVfs::with_files(files);
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
            set_u32(&mut m, 596, crc);
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
    fn a_header_sequence_number_out_of_range_is_corrupt() {
        let h = |seq| {
            encode_header(&Header {
                seq,
                salt: 5,
                next_salt: 6,
                meta: None,
            })
        };
        let last = MAX_COUNTER - 1;
        assert_eq!(
            read_header(&*header_file(&h(last)), 0, "h")
                .unwrap()
                .map(|x| x.seq),
            Some(last)
        );
        for seq in [MAX_COUNTER, u64::MAX - 1, u64::MAX] {
            match read_header(&*header_file(&h(seq)), 0, "h") {
                Err(StoreError::Corrupt { reason, .. }) => {
                    assert!(reason.contains("out of range"), "{reason}");
                }
                other => panic!("{seq}: {other:?}"),
            }
        }
    }

    #[test]
    fn version_1_header_is_unsupported() {
        let mut b = encode_header(&Header {
            seq: 1,
            salt: 5,
            next_salt: 6,
            meta: None,
        });
        set_u32(&mut b, H_VERSION, 1);
        let crc = crc32fast::hash(&b[..H_CHECKSUM]);
        b[H_CHECKSUM..HEADER_LEN].fill(0);
        set_u32(&mut b, H_CHECKSUM, crc);
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
