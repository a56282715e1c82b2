//! Recovery: picking the header slot to use and replaying the WAL over it.
//! Reads only, over [`VfsFile`]s; no threads. Both [`super::FileStore::open`]
//! and [`super::FileStore::open_read_only`] start here.

use std::sync::Arc;

use super::format::{
    FRAME_MAGIC_BYTES, FrameHead, Header, KIND_PAGE, frame_head, parse_frame, read_header,
    slot_offset,
};
use super::{
    DATA_START, DroppedTail, FRAME_HEADER, FRAME_SIZE, HEADER_BLOCK, RecoveryReport, io_err,
};
use crate::store::vfs::VfsFile;
use crate::store::{MAX_META, PAGE_SIZE, PageBuf, PageMap, PageNo, StoreError};

/// Bytes read per I/O during recovery.
const RECOVERY_CHUNK: usize = 256 * 1024;

/// The state the WAL replay leaves: the pages and meta record of every
/// complete transaction, and where the valid log ends.
#[derive(Default)]
pub(super) struct Recovered {
    /// The newest version of every replayed page and its frame's offset.
    pub pages: PageMap<(PageBuf, u64)>,
    /// The meta record of the last replayed transaction.
    pub meta: Option<Vec<u8>>,
    /// Sequence number after the last complete transaction (the frames it
    /// replayed).
    pub end_slot: u64,
    /// Byte offset after the last complete transaction.
    pub end_off: u64,
    /// Highest group number seen in the valid prefix.
    pub last_group: u64,
    /// Highest transaction id seen in the valid prefix.
    pub last_txn: u64,
    /// Complete transactions replayed.
    txns: u64,
    /// Frames of this generation after the replayed log.
    dropped: Option<DroppedTail>,
}

impl Recovered {
    /// What an operator is told about this replay.
    pub fn report(&self) -> RecoveryReport {
        RecoveryReport {
            replayed_transactions: self.txns,
            replayed_frames: self.end_slot,
            dropped_tail: self.dropped,
        }
    }

    /// The current meta record: the last replayed one, or the header's
    /// (`header_meta`) when the WAL held no complete transaction.
    pub fn meta_over(&self, header_meta: Option<Vec<u8>>) -> Option<Vec<u8>> {
        if self.end_slot > 0 {
            self.meta.clone()
        } else {
            header_meta
        }
    }
}

/// A forward window over the WAL file, read in [`RECOVERY_CHUNK`]s.
struct WalReader<'a> {
    wal: &'a dyn VfsFile,
    path: &'a str,
    len: u64,
    /// File offset of `buf[0]`.
    base: u64,
    buf: Vec<u8>,
}

impl WalReader<'_> {
    /// The file's bytes from `off` on: at least `want` of them, unless the
    /// file ends first. A short read (the file shrank underneath) reads as
    /// zeros, which are never a frame.
    fn at(&mut self, off: u64, want: usize) -> Result<&[u8], StoreError> {
        let have = self.base + self.buf.len() as u64;
        let need = (off + want as u64).min(self.len);
        if off < self.base || need > have {
            let n = self
                .len
                .saturating_sub(off)
                .min(RECOVERY_CHUNK.max(want) as u64) as usize;
            self.buf.resize(n, 0);
            let got = self
                .wal
                .read_at(&mut self.buf, off)
                .map_err(|e| io_err("read wal", self.path, e))?;
            self.buf[got.min(n)..].fill(0);
            self.base = off;
        }
        Ok(&self.buf[(off - self.base) as usize..])
    }
}

/// Replays the WAL: every complete transaction of the current generation, in
/// order, up to the first damaged frame or incomplete transaction. A damaged
/// frame followed by a valid frame whose durability mark covers it is corruption.
///
/// Frames have different lengths, so after a damaged frame the next one's
/// offset is unknown: the rest of the file is searched at every multiple of
/// 8 (where every frame starts) for frames of this generation.
fn recover_wal(wal: &dyn VfsFile, wal_path: &str, salt: u64) -> Result<Recovered, StoreError> {
    let len = wal
        .len()
        .map_err(|e| io_err("read wal length", wal_path, e))?;
    let mut r = WalReader {
        wal,
        path: wal_path,
        len,
        base: 0,
        buf: Vec::new(),
    };
    let mut rec = Recovered::default();
    let mut pending = Pending::default();
    let (mut off, mut seq) = (0u64, 0u64);
    // The first frame that is not part of the valid log, why, and the page
    // it may name.
    let mut stop: Option<(u64, String, Option<PageNo>)> = None;
    while off + FRAME_HEADER as u64 <= len {
        let f = r.at(off, FRAME_SIZE)?;
        let parsed = parse_frame(f, salt, Some(seq)).and_then(|h| {
            apply_frame(
                &h,
                &f[FRAME_HEADER..FRAME_HEADER + h.stored],
                off,
                &mut rec,
                &mut pending,
            )
            .map(|()| h)
        });
        match parsed {
            Ok(h) => {
                off += h.len() as u64;
                seq += 1;
            }
            Err(reason) => {
                // Name the page if the header still looks like one of ours.
                let page = frame_head(f)
                    .filter(|h| h.salt == salt && h.kind == KIND_PAGE)
                    .map(|h| h.page_no());
                stop = Some((off, reason.to_string(), page));
                break;
            }
        }
    }
    // Frames of this generation after the replayed log: those of an
    // unfinished transaction, and any found after the stop.
    let mut dropped = pending.frames.len() as u64;
    let mut dropped_end = pending.frames.last().map_or(rec.end_off, |(_, _, at)| {
        // The unfinished transaction's frames run up to the stop (or EOF).
        stop.as_ref().map_or(len.min(off), |s| s.0).max(*at)
    });
    if let Some(stop) = &stop {
        let (n, end) = scan_after_stop(&mut r, stop, salt, seq, rec.end_slot)?;
        dropped += n;
        dropped_end = dropped_end.max(end);
    }
    if dropped > 0 {
        rec.dropped = Some(DroppedTail {
            offset: rec.end_off,
            frames: dropped,
            bytes: dropped_end.saturating_sub(rec.end_off),
        });
    }
    Ok(rec)
}

/// The transaction being replayed: its page frames so far (page, buffer,
/// offset), its id, and the id of the last complete one.
#[derive(Default)]
struct Pending {
    frames: Vec<(PageNo, PageBuf, u64)>,
    txn: Option<u64>,
    last_txn: Option<u64>,
}

/// Applies one valid frame (its stored `payload`, at byte offset `at`) to
/// the replay state; `Err` if it does not continue the log consistently
/// (treated like a damaged frame).
/// Searches the WAL after the frame where replay stopped (`stop`: its
/// offset, why, and the page it may name; `seq` its expected sequence
/// number) for frames of this generation, at every multiple of 8 (frames
/// have different lengths, so the next one's offset is unknown). Returns
/// how many it found and where the last one ends, for the dropped-tail
/// report; fails with [`StoreError::Corrupt`] if one of them records that
/// frames past the replayed log (`end_slot`) were already fsynced: then
/// the stop is damage to durable frames, not a torn tail.
fn scan_after_stop(
    r: &mut WalReader<'_>,
    (bad, reason, page): &(u64, String, Option<PageNo>),
    salt: u64,
    seq: u64,
    end_slot: u64,
) -> Result<(u64, u64), StoreError> {
    let (mut found, mut end) = (0u64, 0u64);
    let mut at = *bad;
    while at + FRAME_HEADER as u64 <= r.len {
        let f = r.at(at, FRAME_SIZE)?;
        // Most of the rest is zeros or older frames' payloads: skip to
        // the next multiple of 8 holding the frame magic, within what
        // is read.
        let skip = f
            .chunks_exact(8)
            .take_while(|w| w[..4] != FRAME_MAGIC_BYTES)
            .count();
        if skip > 0 {
            at += 8 * skip as u64;
            continue;
        }
        let Some(head) = frame_head(f).filter(|h| h.salt == salt) else {
            at += 8;
            continue;
        };
        found += 1;
        let step = match parse_frame(f, salt, None) {
            Ok(h) => {
                if at > *bad && h.durable_before > end_slot {
                    return Err(StoreError::Corrupt {
                        file: r.path.to_string(),
                        page: *page,
                        offset: *bad,
                        reason: format!(
                            "WAL frame {} at offset {bad} is unreadable ({reason}), but frame {} \
                             (group {}) records that frames before {} were already fsynced",
                            seq, h.seq, h.group, h.durable_before
                        ),
                    });
                }
                h.len() as u64
            }
            Err(_) => 8,
        };
        end = end.max((at + head.len() as u64).min(r.len));
        at += step;
    }
    Ok((found, end))
}

fn apply_frame(
    h: &FrameHead,
    payload: &[u8],
    at: u64,
    rec: &mut Recovered,
    pending: &mut Pending,
) -> Result<(), &'static str> {
    if h.group < rec.last_group {
        return Err("group number goes backwards");
    }
    match pending.txn {
        Some(t) if t != h.txn => return Err("frame of another transaction inside a transaction"),
        None if pending.last_txn.is_some_and(|l| h.txn <= l) => {
            return Err("transaction id goes backwards");
        }
        _ => {}
    }
    if h.kind == KIND_PAGE {
        let no = h.page_no();
        if no == 0 {
            return Err("page frame for page 0");
        }
        pending.txn = Some(h.txn);
        let mut page = vec![0u8; PAGE_SIZE];
        page[..payload.len()].copy_from_slice(payload);
        pending.frames.push((no, Arc::new(page), at));
    } else {
        let meta_len = h.meta_len();
        if meta_len > MAX_META {
            return Err("commit frame with an oversized meta record");
        }
        if h.count() != pending.frames.len() as u64 {
            return Err("commit frame does not match its transaction's page count");
        }
        for (no, buf, at) in pending.frames.drain(..) {
            rec.pages.insert(no, (buf, at));
        }
        rec.txns += 1;
        // The stored payload ends at the record's last non-zero byte.
        let mut meta = vec![0u8; meta_len];
        let n = meta_len.min(payload.len());
        meta[..n].copy_from_slice(&payload[..n]);
        rec.meta = Some(meta);
        rec.end_slot = h.seq + 1;
        rec.end_off = at + h.len() as u64;
        rec.last_txn = h.txn;
        pending.txn = None;
        pending.last_txn = Some(h.txn);
    }
    rec.last_group = h.group;
    Ok(())
}

/// Picks the header slot to use: `Ok(None)` for a store that holds nothing
/// yet (no valid slot, no pages, no WAL).
pub(super) fn pick_header(
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

/// How far beyond the data file and the WAL's own pages a recovered page
/// number may lie (pages allocated and freed without being written). A frame
/// naming a page beyond it is damage, not a page to write at a huge offset.
const PAGE_SLACK: u64 = 65_536;

/// Replays the WAL under `header` (over a data file of `data_len` bytes) and
/// checks that the newer header slot, if unreadable, was not already in use.
/// Reads only.
pub(super) fn recover(
    wal: &dyn VfsFile,
    (wp, dp): (&str, &str),
    data_len: u64,
    active_slot: usize,
    header: &Header,
) -> Result<Recovered, StoreError> {
    let rec = recover_wal(wal, wp, header.salt)?;
    let limit = data_len / PAGE_SIZE as u64 + 2 * rec.pages.len() as u64 + PAGE_SLACK;
    if let Some((&no, &(_, at))) = rec.pages.iter().find(|(no, _)| **no > limit) {
        return Err(StoreError::Corrupt {
            file: wp.to_string(),
            page: Some(no),
            offset: at,
            reason: format!(
                "a WAL frame names page {no}, far beyond the data file and the WAL (at most {limit})"
            ),
        });
    }
    // If the newer header slot is unreadable but the WAL already runs under the
    // salt it introduced, that header was fsynced: it is damaged, not torn.
    let mut first = vec![0u8; FRAME_SIZE];
    let n = wal
        .read_at(&mut first, 0)
        .map_err(|e| io_err("read wal", wp, e))?;
    if parse_frame(&first[..n.min(FRAME_SIZE)], header.next_salt, Some(0)).is_ok() {
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
