//! Runs: consecutive pages of one large commit stored as **one** IndexedDB
//! value (schema version 3).
//!
//! Chromium's cost of a readwrite transaction follows the number of values
//! it writes far more than their bytes. Measured on this machine (strict
//! durability, one transaction of 1.36 MB): 340 values of 4 KiB 56–82 ms,
//! 22 of 64 KiB 12–18 ms, 6 of 240 KiB 5.5–6.0 ms. A batch of 1,000
//! documents of ~1 KiB writes about 265 pages, in 7 runs of consecutive page
//! numbers when its ids ascend (the new leaves come from the end of the
//! file). So a fold writes each group of [`MIN_RUN`] to [`WRITE_RUN`]
//! consecutive pages as one value (a longer group as several; runs written
//! before 2026-12-05 have up to [`MAX_RUN`] pages, and are read as they are):
//!
//! ```text
//! object store "runs": key = [first page number, page count n] (a JS array)
//! value = Uint8Array of n × PAGE_SIZE bytes, the pages in order
//! ```
//!
//! Page records (`pages`, one page per value) and runs live side by side.
//! The rules that keep the newest version of every page findable:
//!
//! 1. **Runs never overlap.** A page that lies inside a run the store knows
//!    of is written as a page record, never as part of a new run.
//! 2. **A page record wins over a run.** Writing a run first deletes the page
//!    records of its range (one `delete` over the key range), so every page
//!    record inside a run is newer than it.
//! 3. **A run whose every page has a newer page record is deleted**, in the
//!    transaction that writes the last of them (a `count` of the page records
//!    in its range, issued after the writes; its success handler deletes the
//!    run).
//!
//! A read of page `p` inside a run reads the page record `p` and the run in
//! one readonly transaction (two requests, one round trip) and takes the
//! record if there is one.
//!
//! **The layout** (schema version 4): the list of runs, kept in one record
//! of the `meta` object store ([`LAYOUT_KEY`]), so that every `read_meta`
//! reads it with one `get` beside the log's state; reading the keys of the
//! `runs` object store instead took 2.5–7 ms for 600 runs (100,000
//! documents) in Chromium, most of a reopen. Encoding ([`Runs::encode`],
//! little-endian, fixed width):
//!
//! ```text
//! u8 format (1) · u32 count · count × (u64 first page · u16 page count)
//! ```
//!
//! The record lists **at least** every run of the `runs` object store
//! (possibly runs that are gone: a superset), never fewer:
//! - a fold writes the record when it adds runs, from the store's layout
//!   after them (the store's layout already holds the runs of every fold
//!   issued before, and transactions run in the order they are issued);
//! - a run deleted by rule 3 is forgotten by the store's layout when its
//!   transaction completes, and the next fold's record leaves it out;
//!   records written meanwhile may still list it; a read that finds a
//!   listed run missing forgets it too (its pages' records are read
//!   instead), and the next fold's record leaves it out;
//! - a database without the record (upgraded from version 3) is read from
//!   the keys of `runs`, and its next fold writes the record.
//!
//! A run the layout lists but the store has not is harmless: a read of one
//! of its pages finds the page record (rule 3 deleted it because every page
//! had one), and rule 1 keeps new runs off its pages until it is forgotten.
//!
//! Space: a run keeps the images of its pages that page records have
//! replaced until all of its pages are replaced (rule 3) or the database
//! moves to another generation (a purge), which copies only the newest
//! version of each page.

use std::cell::RefCell;
use std::ops::Range;
use std::rc::Rc;

use js_sys::{Array, Uint8Array};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{IdbKeyRange, IdbTransaction};

use super::super::{PAGE_SIZE, PageBuf, PageNo};
use super::{PAGES, inject_failure};

/// Object store of the runs.
pub(super) const RUNS: &str = "runs";
/// Most pages in a run a store reads (a value of 256 KiB): what folds wrote
/// until 2026-12-05, and what the layout record and the runs' keys may say.
pub(super) const MAX_RUN: usize = 64;
/// Most pages a fold writes as one run (a value of 128 KiB). Chromium keeps
/// values above 64 KiB in blob files of their own; with runs of at most 32
/// pages instead of 64, the browser benchmark's bulk insert of 100,000
/// documents ran 27,388–29,911 docs/s against 19,873–23,456 (three
/// alternating runs; 21 values a batch of 1,000 documents against 16, the
/// same bytes), and its cold point reads 1,642–1,921 reads/s against
/// 1,492–1,779 (docs/benchmarks.md, "Runs of 32 pages"). Runs of 15 pages
/// (values under 64 KiB) were slower to write, runs of 24 no faster.
pub(super) const WRITE_RUN: usize = 32;
/// Fewest pages written as a run: fewer go as page records.
pub(super) const MIN_RUN: usize = 4;
/// Key, in the `meta` object store, of the layout record (module
/// documentation; absent: read the keys of [`RUNS`]).
pub(super) const LAYOUT_KEY: f64 = 3.0;
/// Format byte of the layout record.
const LAYOUT_FORMAT: u8 = 1;
/// Bytes of one run in the layout record.
const LAYOUT_ENTRY: usize = 10;

/// The runs of a database: (first page, page count), in page order (a
/// sorted vector: a few hundred entries, changed only by folds).
#[derive(Clone, Debug, Default)]
pub(super) struct Runs(Vec<(PageNo, u64)>);

impl Runs {
    /// The run holding page `no`: its first page and page count.
    pub(super) fn containing(&self, no: PageNo) -> Option<(PageNo, u64)> {
        let after = self.0.partition_point(|&(s, _)| s <= no);
        let (s, n) = *self.0.get(after.checked_sub(1)?)?;
        (no - s < n).then_some((s, n))
    }

    /// Records a run written by this store.
    pub(super) fn insert(&mut self, start: PageNo, n: u64) {
        match self.0.binary_search_by_key(&start, |&(s, _)| s) {
            Ok(i) => self.0[i].1 = n,
            Err(i) => self.0.insert(i, (start, n)),
        }
    }

    /// Forgets runs: those this store wrote in a transaction that failed,
    /// or those a completed transaction deleted.
    pub(super) fn forget(&mut self, runs: &[(PageNo, u64)]) {
        self.0.retain(|r| !runs.contains(r));
    }

    /// The layout record (module documentation).
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.0.len() * LAYOUT_ENTRY);
        out.push(LAYOUT_FORMAT);
        out.extend_from_slice(&(self.0.len() as u32).to_le_bytes());
        for &(s, n) in &self.0 {
            out.extend_from_slice(&s.to_le_bytes());
            out.extend_from_slice(&(n as u16).to_le_bytes());
        }
        out
    }

    /// The layout from its record; `Err` says what is wrong with it.
    pub(super) fn decode(b: &[u8]) -> Result<Runs, String> {
        let bad = |what: &str| format!("the layout record {what}");
        let [format, c0, c1, c2, c3, body @ ..] = b else {
            return Err(bad("is cut short"));
        };
        let count = u32::from_le_bytes([*c0, *c1, *c2, *c3]) as usize;
        if *format != LAYOUT_FORMAT || body.len() != count.saturating_mul(LAYOUT_ENTRY) {
            return Err(bad("has another format or length"));
        }
        let mut runs = Vec::with_capacity(count);
        let mut end = 0;
        for e in body.chunks_exact(LAYOUT_ENTRY) {
            let s = u64::from_le_bytes(e[..8].try_into().unwrap_or_default());
            let n = u64::from(u16::from_le_bytes([e[8], e[9]]));
            if !(1..=MAX_RUN as u64).contains(&n) || s < end || s > (1 << 53) - n {
                return Err(bad(
                    "lists a run of a bad size, out of order or overlapping",
                ));
            }
            end = s + n;
            runs.push((s, n));
        }
        Ok(Runs(runs))
    }

    /// Every run, in page order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (PageNo, u64)> + '_ {
        self.0.iter().copied()
    }

    /// The layout from the keys of the `runs` object store (`getAllKeys`,
    /// in key order).
    pub(super) fn from_keys(keys: &Array) -> Result<Runs, String> {
        let mut runs = Vec::with_capacity(keys.length() as usize);
        let mut end = 0;
        for k in keys.iter() {
            let (s, n) = parse_key(&k).ok_or("a key of the runs is not [first page, count]")?;
            if s < end {
                return Err(format!("the run at page {s} overlaps the one before it"));
            }
            end = s + n;
            runs.push((s, n));
        }
        Ok(Runs(runs))
    }
}

/// The key of the run of `n` pages from page `start`.
pub(super) fn key(start: PageNo, n: u64) -> JsValue {
    Array::of2(
        &JsValue::from_f64(start as f64),
        &JsValue::from_f64(n as f64),
    )
    .into()
}

/// `[first page, count]` from a key of the `runs` object store.
fn parse_key(k: &JsValue) -> Option<(PageNo, u64)> {
    let a = k.dyn_ref::<Array>()?;
    let s = a.get(0).as_f64()?;
    let n = a.get(1).as_f64()?;
    let whole = |v: f64| v >= 0.0 && v.fract() == 0.0 && v < 9.0e15;
    (a.length() == 2 && whole(s) && whole(n) && (1.0..=MAX_RUN as f64).contains(&n))
        .then_some((s as PageNo, n as u64))
}

/// How a fold writes `nos` (page numbers, ascending, distinct): the ranges
/// of positions in `nos` that go as runs (at least [`MIN_RUN`] and at most
/// [`WRITE_RUN`] consecutive pages, none inside a run of `runs`); every other
/// page goes as a page record.
pub(super) fn plan(nos: &[PageNo], runs: &Runs) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < nos.len() {
        if runs.containing(nos[i]).is_some() {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < nos.len()
            && j - i < WRITE_RUN
            && nos[j] == nos[j - 1] + 1
            && runs.containing(nos[j]).is_none()
        {
            j += 1;
        }
        if j - i >= MIN_RUN {
            out.push(i..j);
        }
        i = j;
    }
    out
}

/// Page `no` out of the value of the run `(start, n)`; `Err` when the value
/// is not a byte array of `n` pages.
pub(super) fn page_in(v: &JsValue, start: PageNo, n: u64, no: PageNo) -> Result<Vec<u8>, String> {
    let bytes = v
        .dyn_ref::<Uint8Array>()
        .ok_or_else(|| format!("the run at page {start} is not a byte array"))?;
    if bytes.length() as u64 != n * PAGE_SIZE as u64 {
        return Err(format!(
            "the run at page {start} has {} bytes, expected {n} pages",
            bytes.length()
        ));
    }
    let at = ((no - start) * PAGE_SIZE as u64) as u32;
    Ok(bytes.subarray(at, at + PAGE_SIZE as u32).to_vec())
}

/// What a fold's writes leave to settle when its transaction ends.
pub(super) struct Folded {
    /// The runs it wrote, to forget if the transaction fails.
    pub(super) added: Vec<(PageNo, u64)>,
    /// The runs its reclaim requests deleted (rule 3), to forget once the
    /// transaction completed.
    pub(super) deleted: Rc<RefCell<Vec<(PageNo, u64)>>>,
    /// The success handlers of its reclaim requests (rule 3), alive until
    /// the transaction is settled.
    pub(super) _reclaim: Vec<Closure<dyn FnMut()>>,
}

/// Issues the page writes of a fold in `tx`: `all` (ascending page numbers,
/// distinct) as runs where [`plan`] says so and as page records otherwise,
/// then the reclaim of every known run that received a page record (rule
/// 3). With `fail_after` (a test hook), a failing request follows that many
/// values (or the last one).
pub(super) fn issue_fold(
    tx: &IdbTransaction,
    all: &[(PageNo, &PageBuf)],
    known: &Runs,
    fail_after: Option<usize>,
) -> Result<Folded, JsValue> {
    let pages = tx.object_store(PAGES)?;
    let runs = tx.object_store(RUNS)?;
    let nos: Vec<PageNo> = all.iter().map(|(no, _)| *no).collect();
    let planned = plan(&nos, known);
    let mut added = Vec::with_capacity(planned.len());
    let mut touched = Vec::new();
    let mut values = 0;
    let mut next_run = planned.iter().peekable();
    let mut i = 0;
    while i < all.len() {
        if fail_after == Some(values) {
            inject_failure(&pages)?;
        }
        values += 1;
        if let Some(r) = next_run.next_if(|r| r.start == i) {
            let (start, n) = (all[i].0, r.len() as u64);
            let mut bytes = Vec::with_capacity(r.len() * PAGE_SIZE);
            for (_, buf) in &all[r.clone()] {
                bytes.extend_from_slice(buf);
            }
            // Rule 2: the page records of the range are older than the run.
            let range = IdbKeyRange::bound(
                &JsValue::from_f64(start as f64),
                &JsValue::from_f64((start + n - 1) as f64),
            )?;
            pages.delete(&range)?;
            runs.put_with_key(&Uint8Array::from(bytes.as_slice()), &key(start, n))?;
            added.push((start, n));
            i = r.end;
            continue;
        }
        let (no, buf) = all[i];
        pages.put_with_key(
            &Uint8Array::new_from_slice(buf),
            &JsValue::from_f64(no as f64),
        )?;
        if let Some(run) = known.containing(no)
            && touched.last() != Some(&run)
        {
            touched.push(run);
        }
        i += 1;
    }
    if fail_after.is_some_and(|n| n >= values) {
        inject_failure(&pages)?;
    }
    // Rule 3: counted after this fold's page records, in its transaction.
    let mut reclaim = Vec::with_capacity(touched.len());
    let deleted = Rc::new(RefCell::new(Vec::new()));
    for (start, n) in touched {
        let range = IdbKeyRange::bound(
            &JsValue::from_f64(start as f64),
            &JsValue::from_f64((start + n - 1) as f64),
        )?;
        let req = pages.count_with_key(&range)?;
        let handler = {
            let (req, runs, deleted) = (req.clone(), runs.clone(), deleted.clone());
            Closure::<dyn FnMut()>::new(move || {
                // Not issued (the transaction ended): the run stays, and
                // only its space is lost.
                if req.result().ok().and_then(|v| v.as_f64()) == Some(n as f64)
                    && runs.delete(&key(start, n)).is_ok()
                {
                    deleted.borrow_mut().push((start, n));
                }
            })
        };
        req.set_onsuccess(Some(handler.as_ref().unchecked_ref()));
        reclaim.push(handler);
    }
    Ok(Folded {
        added,
        deleted,
        _reclaim: reclaim,
    })
}
