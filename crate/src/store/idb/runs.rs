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
//! A read of page `p` inside a run reads the run and, when the layout says
//! `p` may have a page record, the record `p` too, in one readonly
//! transaction, and takes the record if there is one.
//!
//! **Which pages of a run may have a page record**: the layout keeps, per
//! run, a bitmap of its pages that may have one (bit `i`: page
//! `first + i`). It is a superset, never fewer: a fold sets the bit of every
//! page record it writes inside a run when it issues it (and writes the
//! layout record in the same transaction); a new run starts with none (rule
//! 2 deleted them); a failed fold leaves its bits set. A read that asked for
//! the records of a run's range (because some bit was set) sets its bits to
//! what it found, if no commit was issued meanwhile. A page without its bit
//! is read from the run alone: one request, where the record and the keys
//! of the run's records were two more (a cold read in a standalone page,
//! `bench-browser/idb-read-shapes.mjs`, runs of 32 pages: 0.54–0.69 ms
//! against 0.42–0.52 ms for the run alone; docs/benchmarks.md).
//!
//! **The layout** (schema version 4; format 2 from version 5): the list of runs, kept in one record
//! of the `meta` object store ([`LAYOUT_KEY`]), so that every `read_meta`
//! reads it with one `get` beside the log's state; reading the keys of the
//! `runs` object store instead took 2.5–7 ms for 600 runs (100,000
//! documents) in Chromium, most of a reopen. Encoding ([`Runs::encode`],
//! little-endian, fixed width):
//!
//! ```text
//! format 2: u8 format (2) · u32 count · count × (u64 first page · u16 page count · u64 recorded)
//! format 1: u8 format (1) · u32 count · count × (u64 first page · u16 page count)
//! ```
//!
//! `recorded` is the run's bitmap of pages that may have a page record
//! (bits past its page count are ignored). Format 1 (written until
//! 2026-12-05) has none: its runs are read as if every page might have one
//! until a read learns better, and the next fold writes format 2.
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
use std::sync::Arc;

use js_sys::{Array, Uint8Array};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{IdbKeyRange, IdbTransaction};

use super::super::{PAGE_SIZE, PageBuf, PageNo};
use super::{PAGES, inject_failure};
use crate::codec::{Put, Reader, Truncated};

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
/// (values under 64 KiB) were slower to write, runs of 24 no faster; tried
/// again on 2026-12-06, runs of 15 also made cold point reads slower.
pub(super) const WRITE_RUN: usize = 32;
/// Fewest pages written as a run: fewer go as page records.
pub(super) const MIN_RUN: usize = 4;
/// Key, in the `meta` object store, of the layout record (module
/// documentation; absent: read the keys of [`RUNS`]).
pub(super) const LAYOUT_KEY: f64 = 3.0;
/// Format byte of the layout record this code writes.
const LAYOUT_FORMAT: u8 = 2;
/// Bytes of one run in the layout record, by format.
const fn layout_entry(format: u8) -> usize {
    if format == 1 { 10 } else { 18 }
}

/// A run: its first page, its page count, and the bitmap of its pages that
/// may have a page record (module documentation; a superset).
#[derive(Clone, Copy, Debug)]
struct Run {
    start: PageNo,
    n: u64,
    recorded: u64,
}

/// Every page of a run of `n` pages (the bitmap of a run whose records are
/// not known).
fn all_pages(n: u64) -> u64 {
    if n >= 64 { u64::MAX } else { (1 << n) - 1 }
}

/// The runs of a database in page order (a sorted vector: a few hundred
/// entries, changed only by folds), each with the pages that may have a
/// page record.
#[derive(Clone, Debug, Default)]
pub(super) struct Runs(Vec<Run>);

impl Runs {
    fn at(&self, no: PageNo) -> Option<usize> {
        let i = self.0.partition_point(|r| r.start <= no).checked_sub(1)?;
        let r = self.0.get(i)?;
        (no - r.start < r.n).then_some(i)
    }

    /// The run holding page `no`: its first page and page count.
    pub(super) fn containing(&self, no: PageNo) -> Option<(PageNo, u64)> {
        self.at(no).map(|i| (self.0[i].start, self.0[i].n))
    }

    /// Whether page `no`, inside a run, may have a page record (`false`:
    /// the run's image of it is its newest).
    pub(super) fn may_be_recorded(&self, no: PageNo) -> bool {
        self.at(no)
            .is_none_or(|i| self.0[i].recorded >> (no - self.0[i].start) & 1 == 1)
    }

    /// Whether some page of the run `(start, n)` may have a page record.
    pub(super) fn any_recorded(&self, start: PageNo, n: u64) -> bool {
        self.at(start)
            .is_none_or(|i| self.0[i].start != start || self.0[i].n != n || self.0[i].recorded != 0)
    }

    /// Notes a page record of page `no`, if it lies in a run: returns
    /// whether that changed the layout.
    pub(super) fn note_record(&mut self, no: PageNo) -> bool {
        let Some(i) = self.at(no) else {
            return false;
        };
        let bit = 1u64 << (no - self.0[i].start);
        let new = self.0[i].recorded & bit == 0;
        self.0[i].recorded |= bit;
        new
    }

    /// Sets the pages of the run `(start, n)` that have a page record to
    /// exactly `recorded` (page numbers a read found): returns whether that
    /// changed the layout.
    pub(super) fn learn(&mut self, start: PageNo, n: u64, recorded: &[PageNo]) -> bool {
        let Some(i) = self
            .at(start)
            .filter(|&i| self.0[i].start == start && self.0[i].n == n)
        else {
            return false;
        };
        let mut bits = 0u64;
        for &no in recorded {
            if no >= start && no - start < n {
                bits |= 1 << (no - start);
            }
        }
        let changed = self.0[i].recorded != bits;
        self.0[i].recorded = bits;
        changed
    }

    /// Records a run written by this store (rule 2: no page of it has a
    /// page record).
    pub(super) fn insert(&mut self, start: PageNo, n: u64) {
        let run = Run {
            start,
            n,
            recorded: 0,
        };
        match self.0.binary_search_by_key(&start, |r| r.start) {
            Ok(i) => self.0[i] = run,
            Err(i) => self.0.insert(i, run),
        }
    }

    /// Forgets runs: those this store wrote in a transaction that failed,
    /// or those a completed transaction deleted.
    pub(super) fn forget(&mut self, runs: &[(PageNo, u64)]) {
        self.0.retain(|r| !runs.contains(&(r.start, r.n)));
    }

    /// The layout record (module documentation).
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.0.len() * layout_entry(LAYOUT_FORMAT));
        out.put_u8(LAYOUT_FORMAT);
        out.put_u32(self.0.len() as u32);
        for r in &self.0 {
            out.put_u64(r.start);
            out.put_u16(r.n as u16);
            out.put_u64(r.recorded);
        }
        out
    }

    /// The layout from its record (format 1 or 2); `Err` says what is wrong
    /// with it.
    pub(super) fn decode(b: &[u8]) -> Result<Runs, String> {
        let bad = |what: &str| format!("the layout record {what}");
        let mut r = Reader::new(b);
        let (format, count) = match (r.u8("format"), r.u32("count")) {
            (Ok(f), Ok(c)) => (f, c as usize),
            _ => return Err(bad("is cut short")),
        };
        if !matches!(format, 1 | 2) || r.remaining() != count.saturating_mul(layout_entry(format)) {
            return Err(bad("has another format or length"));
        }
        let mut runs = Vec::with_capacity(count);
        let mut end = 0;
        for _ in 0..count {
            let entry = (|| {
                let s = r.u64("first page")?;
                let n = u64::from(r.u16("page count")?);
                let bits = if format == 2 {
                    Some(r.u64("recorded")?)
                } else {
                    None
                };
                Ok::<_, Truncated>((s, n, bits))
            })();
            let (s, n, bits) = entry.map_err(|_| bad("is cut short"))?;
            if !(1..=MAX_RUN as u64).contains(&n) || s < end || s > (1 << 53) - n {
                return Err(bad(
                    "lists a run of a bad size, out of order or overlapping",
                ));
            }
            end = s + n;
            runs.push(Run {
                start: s,
                n,
                recorded: bits.map_or(all_pages(n), |b| b & all_pages(n)),
            });
        }
        Ok(Runs(runs))
    }

    /// Every run, in page order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (PageNo, u64)> + '_ {
        self.0.iter().map(|r| (r.start, r.n))
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
            runs.push(Run {
                start: s,
                n,
                recorded: all_pages(n),
            });
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
    /// The pages it wrote as page records inside runs the store knows (their
    /// bits are set in the layout, [`Runs::note_record`]).
    pub(super) recorded: Vec<PageNo>,
    /// The runs its reclaim requests deleted (rule 3), to forget once the
    /// transaction completed.
    pub(super) deleted: Rc<RefCell<Vec<(PageNo, u64)>>>,
    /// The success handlers of its later slices and of its reclaim requests
    /// (rule 3), alive until the transaction is settled.
    _handlers: Handlers,
    /// Its writes, to abort the transaction if this is dropped before the
    /// last slice was issued (see `Drop`).
    slices: Rc<RefCell<Slices>>,
}

/// The handlers that issue a fold's later slices go with its `Folded`: one
/// dropped before its transaction settled (an `Issued` is kept until then,
/// as the fence check's handler requires) would let the transaction commit
/// without its later slices. So it aborts the transaction instead.
impl Drop for Folded {
    fn drop(&mut self) {
        if let Ok(s) = self.slices.try_borrow()
            && s.next < s.writes.len()
        {
            let _ = s.tx.abort();
        }
    }
}

/// Success handlers kept alive by a fold's [`Folded`].
type Handlers = Rc<HandlerList>;
/// The list behind [`Handlers`].
type HandlerList = RefCell<Vec<Closure<dyn FnMut()>>>;

/// Bytes of page writes a fold issues in one go. The next slice is issued
/// from the success handler of the slice's last request: the transaction
/// stays active, and the page's event loop runs in between (a fold of
/// about 1,700 pages took 60–98 ms to issue in one task; docs/benchmarks.md,
/// "Indexes").
const SLICE_BYTES: usize = 512 * 1024;

/// One value of a fold: a run over `pages[range]`, or the page record of
/// `pages[i]`.
enum Write {
    Run(Range<usize>),
    Page(usize),
}

/// A fold's writes being issued, slice by slice.
struct Slices {
    tx: IdbTransaction,
    pages: Vec<(PageNo, PageBuf)>,
    writes: Vec<Write>,
    /// The next write to issue.
    next: usize,
    fail_after: Option<usize>,
    /// Known runs that received a page record (rule 3).
    touched: Vec<(PageNo, u64)>,
    deleted: Rc<RefCell<Vec<(PageNo, u64)>>>,
}

/// Issues the page writes of a fold in `tx`: `all` (ascending page numbers,
/// distinct) as runs where [`plan`] says so and as page records otherwise,
/// then the reclaim of every known run that received a page record (rule
/// 3). The first [`SLICE_BYTES`] are issued now, the rest from success
/// handlers. With `fail_after` (a test hook), a failing request follows that
/// many values (or the last one).
pub(super) fn issue_fold(
    tx: &IdbTransaction,
    all: &[(PageNo, &PageBuf)],
    known: &Runs,
    fail_after: Option<usize>,
) -> Result<Folded, JsValue> {
    let nos: Vec<PageNo> = all.iter().map(|(no, _)| *no).collect();
    let planned = plan(&nos, known);
    let mut added = Vec::with_capacity(planned.len());
    let mut touched = Vec::new();
    let mut recorded = Vec::new();
    let mut writes = Vec::new();
    let mut next_run = planned.iter().peekable();
    let mut i = 0;
    while i < all.len() {
        if let Some(r) = next_run.next_if(|r| r.start == i) {
            added.push((all[i].0, r.len() as u64));
            writes.push(Write::Run(r.clone()));
            i = r.end;
            continue;
        }
        let no = all[i].0;
        writes.push(Write::Page(i));
        if let Some(run) = known.containing(no) {
            recorded.push(no);
            if touched.last() != Some(&run) {
                touched.push(run);
            }
        }
        i += 1;
    }
    let deleted = Rc::new(RefCell::new(Vec::new()));
    let handlers: Handlers = Rc::new(RefCell::new(Vec::new()));
    let slices = Rc::new(RefCell::new(Slices {
        tx: tx.clone(),
        pages: all.iter().map(|(no, b)| (*no, Arc::clone(b))).collect(),
        writes,
        next: 0,
        fail_after,
        touched,
        deleted: Rc::clone(&deleted),
    }));
    issue_slice(&slices, &Rc::downgrade(&handlers))?;
    Ok(Folded {
        added,
        recorded,
        deleted,
        _handlers: handlers,
        slices,
    })
}

/// Issues the next slice of a fold's writes and, after the last, its rule-3
/// reclaims. The handlers are held weakly: they hold the slices, and the
/// fold's [`Folded`] holds them.
fn issue_slice(
    slices: &Rc<RefCell<Slices>>,
    handlers: &std::rc::Weak<HandlerList>,
) -> Result<(), JsValue> {
    let Some(keep) = handlers.upgrade() else {
        return Ok(()); // the fold is settled
    };
    let mut s = slices.borrow_mut();
    let pages = s.tx.object_store(PAGES)?;
    let runs = s.tx.object_store(RUNS)?;
    let mut bytes = 0;
    let mut last = None;
    while s.next < s.writes.len() && bytes < SLICE_BYTES {
        if s.fail_after == Some(s.next) {
            inject_failure(&pages)?;
        }
        last = Some(match &s.writes[s.next] {
            Write::Run(r) => {
                let (start, n) = (s.pages[r.start].0, r.len() as u64);
                let mut value = Vec::with_capacity(r.len() * PAGE_SIZE);
                for (_, buf) in &s.pages[r.clone()] {
                    value.extend_from_slice(buf);
                }
                bytes += value.len();
                // Rule 2: the page records of the range are older than the run.
                let range = IdbKeyRange::bound(
                    &JsValue::from_f64(start as f64),
                    &JsValue::from_f64((start + n - 1) as f64),
                )?;
                pages.delete(&range)?;
                runs.put_with_key(&Uint8Array::from(value.as_slice()), &key(start, n))?
            }
            Write::Page(i) => {
                let (no, buf) = &s.pages[*i];
                bytes += PAGE_SIZE;
                pages.put_with_key(
                    &Uint8Array::new_from_slice(buf),
                    &JsValue::from_f64(*no as f64),
                )?
            }
        });
        s.next += 1;
    }
    if s.next < s.writes.len() {
        let req = last.expect("a slice issues at least one write");
        let (next, weak, tx) = (Rc::clone(slices), handlers.clone(), s.tx.clone());
        let handler = Closure::<dyn FnMut()>::new(move || {
            if issue_slice(&next, &weak).is_err() {
                // Nothing of the fold may be applied without the rest.
                let _ = tx.abort();
            }
        });
        req.set_onsuccess(Some(handler.as_ref().unchecked_ref()));
        keep.borrow_mut().push(handler);
        return Ok(());
    }
    if s.fail_after.is_some_and(|n| n >= s.writes.len()) {
        inject_failure(&pages)?;
    }
    s.pages = Vec::new();
    // Rule 3: counted after this fold's page records, in its transaction.
    for (start, n) in std::mem::take(&mut s.touched) {
        let range = IdbKeyRange::bound(
            &JsValue::from_f64(start as f64),
            &JsValue::from_f64((start + n - 1) as f64),
        )?;
        let req = pages.count_with_key(&range)?;
        let handler = {
            let (req, runs, deleted) = (req.clone(), runs.clone(), s.deleted.clone());
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
        keep.borrow_mut().push(handler);
    }
    Ok(())
}
