//! The commit log of the IndexedDB store (schema version 2 and later): a small commit
//! is **one** IndexedDB value, folded into the page records later.
//!
//! Chromium's cost of a readwrite transaction grows with the number of
//! values it writes far more than with their bytes (measured on this
//! machine, strict durability: one 1 KiB `put` 1.3 ms p50, one 36 KiB `put`
//! 1.8–2.0 ms, nine 4 KiB `put`s and a meta record 4.6–5.4 ms). A
//! single-document commit of the engine writes about eight pages and the
//! meta record, so it is written as one *log record* instead:
//!
//! ```text
//! object store "log": key = sequence number (a JS number, from 1, never reused)
//! value = Uint8Array:
//!   0..4    magic "OPLG"
//!   4..8    u32 LE  n, the number of pages
//!   8..12   u32 LE  m, the length of the meta record
//!   12..    n × (u64 LE page number, u32 LE stored length l ≤ PAGE_SIZE),
//!           then the meta record (m bytes),
//!           then for each page its first l bytes (the rest are zeros)
//! ```
//!
//! A page's trailing zeros are not stored: a leaf or a branch keeps its
//! entries at the front and its free space zeroed, so a branch, or a leaf
//! that is not full, takes less than a page.
//!
//! The newest state of the store is the `pages` object store overlaid with
//! the log records in key order, and the meta record of the last log record
//! (the `meta` record, key 0, when the log is empty). `meta` key 1 holds the
//! highest sequence number folded so far (absent: 0).
//!
//! **Fold.** A commit that would not fit a record of [`MAX_RECORD_BYTES`]
//! (below the size at which Chromium moves a value out into a blob file),
//! or that would take the log past [`MAX_RECORDS`] records or
//! [`MAX_LOG_BYTES`], is written the old way *and folds the log* in the same
//! transaction: every page the log holds (newest version of each) and the
//! commit's pages go to `pages`, its meta record to `meta` key 0, its
//! sequence number to key 1, and the log is cleared. IndexedDB applies a
//! transaction whole or not at all, so a crash leaves either the log and
//! the old pages, or the folded pages and an empty log: the same state.
//!
//! **Reads.** The store keeps the pages of the log in memory (this
//! module's [`Log`], at most [`MAX_LOG_BYTES`] of them) and serves them
//! before asking IndexedDB. Another tab may append or fold while this one
//! does not hold the lock; [`Log::reconcile`], run by every `read_meta`
//! (each operation of the package starts with one), brings the overlay up
//! to date from the log's keys, the folded sequence number and the records
//! it has not seen, all read in one transaction.

use std::sync::Arc;

use super::super::{PAGE_SIZE, PageBuf, PageMap, PageNo};

/// Object store of the log records.
pub(super) const LOG: &str = "log";
/// Key, in the `meta` object store, of the highest folded sequence number.
pub(super) const FOLDED_KEY: f64 = 1.0;
/// Largest log record: below the 64 KiB at which Chromium writes a value to
/// a blob file of its own (14 full pages, a meta record and the header fit).
pub(super) const MAX_RECORD_BYTES: usize = 60 * 1024;
/// Most log records before a commit folds them.
pub(super) const MAX_RECORDS: usize = 32;
/// Most bytes of log records before a commit folds them (what the overlay
/// holds in memory, and what an open reads).
pub(super) const MAX_LOG_BYTES: usize = 1024 * 1024;

const MAGIC: &[u8; 4] = b"OPLG";
const HEADER: usize = 12;
/// Bytes per page in the record's page list (number, stored length).
const ENTRY: usize = 12;

/// The bytes of `page` a record stores: up to its last non-zero byte.
/// Whole 8-byte words of zeros are skipped first: a page is mostly zeros
/// at its end, and every commit asks this several times a page.
fn stored(page: &[u8]) -> &[u8] {
    let zero_words = page.rchunks_exact(8).take_while(|w| *w == [0u8; 8]).count();
    let head = &page[..page.len() - 8 * zero_words];
    let end = head.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    &page[..end]
}

/// Encodes a log record (see the module documentation).
pub(super) fn encode(pages: &[(PageNo, PageBuf)], meta: &[u8]) -> Vec<u8> {
    let kept: Vec<&[u8]> = pages.iter().map(|(_, buf)| stored(buf)).collect();
    let len = HEADER + kept.iter().map(|b| ENTRY + b.len()).sum::<usize>() + meta.len();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(pages.len() as u32).to_le_bytes());
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    for ((no, _), b) in pages.iter().zip(&kept) {
        out.extend_from_slice(&no.to_le_bytes());
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(meta);
    for b in &kept {
        out.extend_from_slice(b);
    }
    out
}

/// Length of the record of `pages` and a meta record of `meta` bytes.
pub(super) fn record_len(pages: &[(PageNo, PageBuf)], meta: usize) -> usize {
    HEADER
        + pages
            .iter()
            .map(|(_, b)| ENTRY + stored(b).len())
            .sum::<usize>()
        + meta
}

/// A decoded log record: its pages and its meta record.
pub(super) type Record = (Vec<(PageNo, PageBuf)>, Vec<u8>);

/// Decodes a log record; the reason when its bytes are not one.
pub(super) fn decode(bytes: &[u8]) -> Result<Record, String> {
    if bytes.len() < HEADER || &bytes[..4] != MAGIC {
        return Err("not a log record (bad magic)".into());
    }
    let u32_at = |at: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&bytes[at..at + 4]);
        u32::from_le_bytes(b) as usize
    };
    let (n, m) = (u32_at(4), u32_at(8));
    let short = || {
        format!(
            "a log record of {} bytes cannot hold {n} pages and a {m}-byte meta record",
            bytes.len()
        )
    };
    let list_end = n
        .checked_mul(ENTRY)
        .and_then(|l| l.checked_add(HEADER))
        .filter(|&e| e <= bytes.len())
        .ok_or_else(short)?;
    let mut at = list_end
        .checked_add(m)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(short)?;
    let meta = bytes[list_end..at].to_vec();
    let mut pages = Vec::with_capacity(n);
    for entry in bytes[HEADER..list_end].chunks_exact(ENTRY) {
        let mut no = [0u8; 8];
        no.copy_from_slice(&entry[..8]);
        let l = {
            let mut b = [0u8; 4];
            b.copy_from_slice(&entry[8..]);
            u32::from_le_bytes(b) as usize
        };
        if l > PAGE_SIZE || at + l > bytes.len() {
            return Err(short());
        }
        let mut page = vec![0u8; PAGE_SIZE];
        page[..l].copy_from_slice(&bytes[at..at + l]);
        at += l;
        pages.push((u64::from_le_bytes(no), Arc::new(page)));
    }
    if at != bytes.len() {
        return Err(short());
    }
    Ok((pages, meta))
}

/// What a store knows of its log: the newest version of every page the log
/// holds (with the sequence number of its record), and where the log stands.
#[derive(Debug, Default)]
pub(super) struct Log {
    overlay: PageMap<(u64, PageBuf)>,
    /// Highest sequence number seen (read or written).
    known_max: u64,
    /// Highest sequence number folded into the pages.
    folded: u64,
    /// Records and bytes in the log as far as this store knows.
    records: usize,
    bytes: usize,
    /// Meta record of the newest log record, `None` when the log is empty,
    /// and that record's sequence number.
    meta: Option<Vec<u8>>,
    meta_seq: u64,
    /// A commit failed: what the log holds must be read again in full.
    stale: bool,
}

/// Previous overlay entries of the pages of one commit, to put back if its
/// transaction fails.
pub(super) type Undo = Vec<(PageNo, Option<(u64, PageBuf)>)>;

impl Log {
    /// The log's version of page `no`, if it holds one.
    pub(super) fn page(&self, no: PageNo) -> Option<PageBuf> {
        self.overlay.get(&no).map(|(_, b)| b.clone())
    }

    /// The meta record of the newest log record (`None`: the log is empty,
    /// the `meta` record is the newest).
    pub(super) fn meta(&self) -> Option<&[u8]> {
        self.meta.as_deref()
    }

    /// Whether a commit failed since the log was last read in full: until
    /// then this view may hold pages and a meta record that were never
    /// written, and must not fold.
    pub(super) fn is_stale(&self) -> bool {
        self.stale
    }

    /// The sequence number of the next record.
    pub(super) fn next_seq(&self) -> u64 {
        self.known_max.max(self.folded) + 1
    }

    /// Whether a commit of `pages` pages and a `meta`-byte meta record
    /// folds the log instead of being appended to it.
    pub(super) fn must_fold(&self, pages: &[(PageNo, PageBuf)], meta: usize) -> bool {
        let len = record_len(pages, meta);
        len > MAX_RECORD_BYTES || self.records >= MAX_RECORDS || self.bytes + len > MAX_LOG_BYTES
    }

    /// Every page the log holds (newest versions), for a fold.
    pub(super) fn pages(&self) -> impl Iterator<Item = (PageNo, &PageBuf)> {
        self.overlay.iter().map(|(no, (_, b))| (*no, b))
    }

    /// A commit with sequence number `seq` was issued (appended to the log,
    /// or folding it): its pages are the newest versions from now on.
    /// Returns what to put back if it fails.
    pub(super) fn issued(
        &mut self,
        seq: u64,
        pages: &[(PageNo, PageBuf)],
        meta: &[u8],
        fold: bool,
    ) -> Undo {
        let undo = pages
            .iter()
            .map(|(no, b)| (*no, self.overlay.insert(*no, (seq, b.clone()))))
            .collect();
        self.known_max = self.known_max.max(seq);
        if fold {
            self.records = 0;
            self.bytes = 0;
            self.meta = None;
        } else {
            self.records += 1;
            self.bytes += record_len(pages, meta.len());
            self.meta = Some(meta.to_vec());
            self.meta_seq = seq;
        }
        undo
    }

    /// The commit `seq` completed; if it folded the log, the pages of every
    /// record up to it are in the page records now.
    pub(super) fn completed(&mut self, seq: u64, fold: bool) {
        if fold {
            self.overlay.retain(|_, (s, _)| *s > seq);
            self.folded = self.folded.max(seq);
        }
    }

    /// The commit failed (nothing of it was written): its pages' previous
    /// versions are the newest again, unless a later commit replaced them.
    pub(super) fn failed(&mut self, seq: u64, undo: Undo) {
        for (no, prev) in undo {
            if self.overlay.get(&no).is_some_and(|(s, _)| *s == seq) {
                match prev {
                    Some(p) => self.overlay.insert(no, p),
                    None => self.overlay.remove(&no),
                };
            }
        }
        // What the log holds is read again in full at the next `read_meta`.
        self.stale = true;
    }

    /// Forgets everything (another generation, or a reconnection).
    pub(super) fn reset(&mut self) {
        *self = Log::default();
    }

    /// Brings this view up to date with what IndexedDB holds: the log's keys
    /// (ascending), the folded sequence number, and the records whose key is
    /// above [`Log::seen`] (ascending, as read in the same transaction).
    ///
    /// `Ok(false)` when this view cannot be brought up to date from that
    /// (a failed commit, another generation after a purge, a record it
    /// holds gone without a fold): [`Log::reset`] it and read every record
    /// (`seen` is then 0). A record that does not decode is an error.
    pub(super) fn reconcile(
        &mut self,
        keys: &[u64],
        folded: u64,
        new: Vec<(u64, Vec<u8>)>,
    ) -> Result<bool, String> {
        let newest = keys.last().copied();
        if self.stale
            || folded < self.folded
            || newest.is_some_and(|k| k < self.meta_seq.max(folded))
        {
            return Ok(false);
        }
        self.overlay.retain(|_, (s, _)| *s > folded);
        self.folded = folded;
        for (seq, bytes) in new {
            let (pages, meta) = decode(&bytes).map_err(|e| format!("log record {seq}: {e}"))?;
            for (no, b) in pages {
                self.overlay.insert(no, (seq, b));
            }
            self.known_max = self.known_max.max(seq);
            self.meta = Some(meta);
            self.meta_seq = seq;
        }
        match newest {
            None => self.meta = None,
            // The newest record is one this view has read or written.
            Some(k) if k != self.meta_seq => return Ok(false),
            Some(_) => {}
        }
        self.records = keys.len();
        // Approximate (a record's size is known once read): enough to
        // decide when to fold.
        self.bytes = self.overlay.len() * PAGE_SIZE;
        Ok(true)
    }

    /// The highest sequence number this view has read or written: records
    /// above it are new to it.
    pub(super) fn seen(&self) -> u64 {
        self.known_max.max(self.folded)
    }
}
