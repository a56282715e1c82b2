//! Recovery: picking the header slot to use and replaying the WAL over it.
//! Reads only, over [`VfsFile`]s; no threads. Both [`super::FileStore::open`]
//! and [`super::FileStore::open_read_only`] start here.

use std::collections::HashMap;
use std::sync::Arc;

use super::format::{
    FrameHead, Header, KIND_PAGE, frame_head, parse_frame, read_header, slot_offset,
};
use super::{
    DATA_START, DroppedTail, FRAME_HEADER, FRAME_SIZE, HEADER_BLOCK, RecoveryReport, io_err,
};
use crate::store::vfs::VfsFile;
use crate::store::{MAX_META, PAGE_SIZE, PageBuf, PageNo, StoreError};

/// Frames read per I/O during recovery.
const RECOVERY_CHUNK_FRAMES: usize = 64;

/// The state the WAL replay leaves: the pages and meta record of every
/// complete transaction, and where the valid log ends.
#[derive(Default)]
pub(super) struct Recovered {
    /// The newest version of every replayed page and its frame's slot.
    pub pages: HashMap<PageNo, (PageBuf, u64)>,
    /// The meta record of the last replayed transaction.
    pub meta: Option<Vec<u8>>,
    /// Slot after the last complete transaction.
    pub end_slot: u64,
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
            let head = frame_head(f).filter(|h| h.salt == salt);
            if head.is_some() {
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
                        let page = head.filter(|h| h.kind == KIND_PAGE).map(|h| h.page_no());
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
    if let Some((&no, &(_, slot))) = rec.pages.iter().find(|(no, _)| **no > limit) {
        return Err(StoreError::Corrupt {
            file: wp.to_string(),
            page: Some(no),
            offset: slot * FRAME_SIZE as u64,
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
