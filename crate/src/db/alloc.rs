//! Page allocation for the working generation: the working state (dirty
//! pages, reusable and pending-free pages), its undo journal (a failed or
//! dropped transaction is rolled back whole), the write context the B+tree
//! allocates and writes pages through, and the persisted free list (its page
//! codec, writing the chain at each flush, loading it on open).
//!
//! ## Reuse rule
//! A page freed by generation `g` is reused only once generation `g` is
//! flushed and no snapshot older than `g` is alive, so a snapshot's pages
//! never change under it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::btree::{self, KIND_FREELIST, PageRead, PageWrite};
use crate::codec::{get_u16, get_u64, set_u64};
use crate::cv::DbId;
use crate::error::{Error, OpenError};
use crate::store::{PAGE_SIZE, PageBuf, PageMap, PageNo, PageSet, PageStore};

use super::Inner;
use super::meta::Meta;
use super::origins::Origin;
use super::read::read_cached;
use super::write::coll_key;

// ---------------------------------------------------------------------------
// Free-list pages: the 16-byte page header of `btree::seal` (its entry count
// is the number of page numbers listed), then these fields, little-endian.

/// `u64`: the next page of the chain, 0 at its end.
const FREELIST_NEXT: usize = 16;
/// `u64` page numbers, [`FREELIST_PER_PAGE`] at most.
const FREELIST_ENTRIES: usize = 24;
/// Page numbers one free-list page holds.
const FREELIST_PER_PAGE: usize = (PAGE_SIZE - FREELIST_ENTRIES) / 8;
/// `u16` in the page header: the number of entries.
const FREELIST_COUNT: usize = 14;

/// A sealed free-list page `no` listing `entries` (at most
/// [`FREELIST_PER_PAGE`]), followed in the chain by `next`.
fn encode_freelist_page(no: PageNo, next: PageNo, entries: &[PageNo]) -> Vec<u8> {
    let mut buf = vec![0u8; PAGE_SIZE];
    set_u64(&mut buf, FREELIST_NEXT, next);
    for (j, e) in entries.iter().enumerate() {
        set_u64(&mut buf, FREELIST_ENTRIES + 8 * j, *e);
    }
    btree::seal(&mut buf, no, KIND_FREELIST, entries.len() as u16);
    buf
}

/// A free-list page (already checked by `check_page`): the next page of the
/// chain, the entry count the page claims, and its entries (as many as it
/// claims, at most [`FREELIST_PER_PAGE`]).
pub(super) fn decode_freelist_page(buf: &[u8]) -> (PageNo, usize, Vec<PageNo>) {
    let le = |at: usize| get_u64(buf, at).unwrap_or_default();
    let claimed = get_u16(buf, FREELIST_COUNT).unwrap_or_default() as usize;
    let entries = (0..claimed.min(FREELIST_PER_PAGE))
        .map(|i| le(FREELIST_ENTRIES + 8 * i))
        .collect();
    (le(FREELIST_NEXT), claimed, entries)
}

// ---------------------------------------------------------------------------
// The working state

/// The state writers apply transactions to (under the writer lock).
pub(super) struct Working {
    pub(super) meta: Meta,
    /// Transactions applied so far.
    pub(super) seq: u64,
    /// Pages written by the working generation (not yet flushed).
    pub(super) dirty: PageMap<PageBuf>,
    /// Pages of the flush under way (or the last one).
    pub(super) inflight: Arc<PageMap<PageBuf>>,
    /// Pages that may be reused now.
    pub(super) free: Vec<PageNo>,
    /// Pages freed by generation `g`, reusable once `g` is flushed and no older
    /// snapshot is alive.
    pub(super) pending: VecDeque<(u64, PageNo)>,
    /// Pages holding the persisted free list of the last flush.
    pub(super) freelist_pages: Vec<PageNo>,
    /// Whether `free` and `freelist_pages` hold the committed free list:
    /// read by the first transaction after an open or a refresh
    /// ([`ensure_free_list`]), not by the open (a first read needs none of
    /// it).
    pub(super) free_loaded: bool,
    /// Generation up to which pending pages may be reused (refreshed per transaction).
    pub(super) reuse_limit: u64,
    /// Undo journal of the transaction being applied (rolled back on failure).
    pub(super) undo: Vec<Undo>,
    /// Pages whose pre-transaction state is in the journal.
    pub(super) journaled: PageSet,
    /// Changes of per-collection live counts not yet written to the `stats`
    /// tree: collection key -> (display name, delta). Written once per flush
    /// instead of once per document.
    pub(super) coll_deltas: HashMap<Vec<u8>, (String, i64)>,
    /// Origins (see [`super::origins`]) changed since the last flush, written
    /// to the `origins` tree once per flush.
    pub(super) origins: HashMap<DbId, Origin>,
    /// The last audit entry's sequence number and chain hash (see
    /// [`super::audit`]); `None` until read from the tree.
    pub(super) audit_tail: Option<(u64, [u8; 32])>,
    /// Free pages a purge could not overwrite yet (a snapshot could still
    /// read them), with the generation that freed them: a flush overwrites
    /// each with zeros once it is reusable ([`Working::erase_deferred`]).
    pub(super) to_erase: Vec<(u64, PageNo)>,
    /// Whether the next flush drops the free pages at the end of the file
    /// (set by a vacuum, see [`super::vacuum`]).
    pub(super) trim: bool,
    /// Per-write durability of the transactions since the last flush
    /// ([`crate::Batch::durability`]): whether one asked for
    /// [`Durability::Durable`](crate::store::Durability::Durable), and how
    /// many asked for `Relaxed` (the flush is relaxed only when every one of
    /// its transactions asked so, or the database's default is relaxed and
    /// none asked otherwise).
    pub(super) asked_durable: bool,
    pub(super) asked_relaxed: u64,
    /// `seq` of the last flush.
    pub(super) flushed_seq: u64,
    /// The buffer each page had when it was last handed to the store ahead
    /// of the flush ([`Working::take_stageable`]); emptied by the flush.
    pub(super) staged: PageMap<PageBuf>,
}

/// One reversible change to the working state's page bookkeeping.
pub(super) enum Undo {
    /// `dirty[no]` was this before.
    Dirty(PageNo, Option<PageBuf>),
    /// A page was popped from `free`.
    FreePop(PageNo),
    /// A page was moved from the front of `pending` to `free`.
    PendingPop(u64, PageNo),
    /// A page was pushed onto `free`.
    FreePush,
    /// A page was pushed onto the back of `pending`.
    PendingPush,
    /// `coll_deltas[key]` was this before.
    Coll(Vec<u8>, Option<(String, i64)>),
    /// `origins[db]` was this before.
    Origin(DbId, Option<Origin>),
    /// `audit_tail` was this before.
    AuditTail(Option<(u64, [u8; 32])>),
}

impl Working {
    /// The working state over the committed `meta`, whose free list holds
    /// `free` in pages `chain`: the next generation to flush is the one after it.
    pub(super) fn new(meta: &Meta, free: Vec<PageNo>, chain: Vec<PageNo>) -> Working {
        let mut m = meta.clone();
        m.generation = meta.generation + 1;
        Working {
            meta: m,
            seq: 0,
            dirty: PageMap::default(),
            inflight: Arc::new(PageMap::default()),
            free,
            pending: VecDeque::new(),
            freelist_pages: chain,
            free_loaded: true,
            reuse_limit: 0,
            undo: Vec::new(),
            journaled: PageSet::default(),
            coll_deltas: HashMap::new(),
            origins: HashMap::new(),
            audit_tail: None,
            to_erase: Vec::new(),
            trim: false,
            asked_durable: false,
            asked_relaxed: 0,
            flushed_seq: 0,
            staged: PageMap::default(),
        }
    }

    /// The working state over the committed `meta`, its free list not read
    /// yet (unless it has none): [`ensure_free_list`] reads it before the
    /// first transaction.
    pub(super) fn unloaded(meta: &Meta) -> Working {
        let mut w = Working::new(meta, Vec::new(), Vec::new());
        w.free_loaded = meta.freelist_head == 0 && meta.freelist_count == 0;
        w
    }

    /// The pages to hand the store ahead of the flush
    /// ([`PageStore::stage`]): every page this generation wrote that changed
    /// since it was last staged, checksummed now, except branches (a branch
    /// changes again with nearly every insert below it, so staging it would
    /// mostly write it twice) and pages the flush itself writes (the free
    /// list; zeroed pages). A staged buffer is never changed in place
    /// afterwards: `page_mut` needs it unshared, and `staged` holds it.
    pub(super) fn take_stageable(&mut self) -> Vec<(PageNo, PageBuf)> {
        let mut out = Vec::new();
        for (no, buf) in self.dirty.iter_mut() {
            if buf.len() != PAGE_SIZE
                || matches!(
                    btree::page_kind(buf),
                    0 | btree::KIND_BRANCH | KIND_FREELIST
                )
                || self.staged.get(no).is_some_and(|s| Arc::ptr_eq(s, buf))
            {
                continue;
            }
            btree::set_checksum(Arc::make_mut(buf).as_mut_slice());
            self.staged.insert(*no, buf.clone());
            out.push((*no, buf.clone()));
        }
        out
    }

    /// The free pages no state a reader may hold can reach (`free`, and
    /// `pending` up to generation `limit`), that the working generation has
    /// not written; and the pending ones a snapshot still pins (freed after
    /// `limit`), with their generation.
    pub(super) fn free_pages(&self, limit: u64) -> (Vec<PageNo>, Vec<(u64, PageNo)>) {
        let mut now: Vec<PageNo> = self.free.clone();
        let mut pinned = Vec::new();
        for &(g, no) in &self.pending {
            if g <= limit {
                now.push(no);
            } else {
                pinned.push((g, no));
            }
        }
        now.retain(|no| !self.dirty.contains_key(no));
        (now, pinned)
    }

    /// Overwrites with zeros the deferred pages of [`Working::to_erase`]
    /// that are reusable now (freed at or before generation `limit`) and
    /// still free; a page reused in the meantime was overwritten by its new
    /// owner. Called by the flush, outside any transaction (not journaled).
    /// Returns how many pages it zeroed.
    pub(super) fn erase_deferred(&mut self, limit: u64) -> u64 {
        if self.to_erase.is_empty() {
            return 0;
        }
        let (free, _) = self.free_pages(limit);
        let free: HashSet<PageNo> = free.into_iter().collect();
        let mut erased = 0;
        let mut keep = Vec::new();
        for (g, no) in std::mem::take(&mut self.to_erase) {
            if g > limit {
                keep.push((g, no));
            } else if free.contains(&no) {
                self.dirty.insert(no, Arc::new(vec![0u8; PAGE_SIZE]));
                erased += 1;
            }
        }
        self.to_erase = keep;
        erased
    }

    /// Writes the free list of the generation being flushed: the previous
    /// chain's pages are released by this generation, and the new chain is
    /// written to pages taken from the reusable ones (they are unreachable
    /// from every live state), so the list does not grow by its own size on
    /// every flush. Sets the meta's free-list head and count.
    pub(super) fn write_free_list(&mut self) {
        let generation = self.meta.generation;
        for p in std::mem::take(&mut self.freelist_pages) {
            self.pending.push_back((generation, p));
        }
        let total = self.free.len() + self.pending.len();
        let mut chain: Vec<PageNo> = Vec::new();
        let mut from_list = 0;
        while chain.len() < (total - from_list).div_ceil(FREELIST_PER_PAGE) {
            match self.free.pop() {
                Some(no) => {
                    chain.push(no);
                    from_list += 1;
                }
                None => {
                    chain.push(self.meta.next_page);
                    self.meta.next_page += 1;
                }
            }
        }
        let list: Vec<PageNo> = self
            .free
            .iter()
            .copied()
            .chain(self.pending.iter().map(|&(_, p)| p))
            .collect();
        for (i, chunk) in list.chunks(FREELIST_PER_PAGE).enumerate() {
            let next = chain.get(i + 1).copied().unwrap_or(0);
            let buf = encode_freelist_page(chain[i], next, chunk);
            self.dirty.insert(chain[i], Arc::new(buf));
        }
        self.meta.freelist_head = chain.first().copied().unwrap_or(0);
        self.meta.freelist_count = list.len() as u64;
        self.freelist_pages = chain;
    }

    /// Records a change of a collection's live document count.
    pub(super) fn add_coll_delta(&mut self, coll: &str, delta: i64) {
        let key = coll_key(coll);
        let prev = self.coll_deltas.get(&key).cloned();
        let d = prev.as_ref().map_or(0, |p| p.1);
        self.coll_deltas
            .insert(key.clone(), (coll.to_string(), d + delta));
        self.undo.push(Undo::Coll(key, prev));
    }

    fn set_dirty(&mut self, no: PageNo, buf: Option<PageBuf>) {
        let prev = match buf {
            Some(b) => self.dirty.insert(no, b),
            None => self.dirty.remove(&no),
        };
        // Only a page's state before the transaction's first change to it is
        // needed to roll back; later versions are dropped at once (a large
        // batch rewrites the same pages many times).
        if self.journaled.insert(no) {
            self.undo.push(Undo::Dirty(no, prev));
        } else if let Some(b) = prev {
            crate::store::spare::give(b);
        }
    }

    /// Keeps the changes the journal records: empties it, handing the page
    /// versions it held to the spare buffers (`store::spare`) when nothing
    /// else holds them, and forgets which pages it journaled.
    pub(super) fn keep_changes(&mut self) {
        for u in self.undo.drain(..) {
            if let Undo::Dirty(_, Some(b)) = u {
                crate::store::spare::give(b);
            }
        }
        self.journaled.clear();
    }

    /// Reverts every change recorded in the journal, newest first.
    pub(super) fn rollback(&mut self, meta: Meta) {
        while let Some(u) = self.undo.pop() {
            match u {
                Undo::Dirty(no, Some(b)) => {
                    self.dirty.insert(no, b);
                }
                Undo::Dirty(no, None) => {
                    self.dirty.remove(&no);
                }
                Undo::FreePop(no) => self.free.push(no),
                Undo::PendingPop(g, no) => {
                    self.free.pop();
                    self.pending.push_front((g, no));
                }
                Undo::FreePush => {
                    self.free.pop();
                }
                Undo::PendingPush => {
                    self.pending.pop_back();
                }
                Undo::Coll(key, Some(prev)) => {
                    self.coll_deltas.insert(key, prev);
                }
                Undo::Coll(key, None) => {
                    self.coll_deltas.remove(&key);
                }
                Undo::Origin(db, Some(prev)) => {
                    self.origins.insert(db, prev);
                }
                Undo::Origin(db, None) => {
                    self.origins.remove(&db);
                }
                Undo::AuditTail(prev) => self.audit_tail = prev,
            }
        }
        self.meta = meta;
        self.journaled.clear();
    }
}

/// The write context of a transaction: reads see the working generation's
/// pages first; allocations and frees go through the working state.
pub(super) struct WCtx<'a, S> {
    pub(super) inner: &'a Inner<S>,
    pub(super) w: &'a mut Working,
}

impl<S: PageStore> PageRead for WCtx<'_, S> {
    async fn read(&self, no: PageNo, kind: u8) -> Result<PageBuf, Error> {
        if let Some(b) = self.w.dirty.get(&no).or_else(|| self.w.inflight.get(&no)) {
            // A page allocated in this generation and not written yet is an
            // empty placeholder: reading it as a tree page means a damaged
            // meta record or free list named one page twice (a root that is
            // also free, say). Refused, never read as an empty leaf.
            if b.len() != PAGE_SIZE {
                return Err(btree::corrupt(
                    no,
                    "page is read before it is written: the meta record or the free list names it twice"
                        .into(),
                ));
            }
            if kind != 0 && btree::page_kind(b) != kind {
                return Err(btree::corrupt(
                    no,
                    format!("expected page kind {kind}, found {}", btree::page_kind(b)),
                ));
            }
            return Ok(b.clone());
        }
        read_cached(self.inner, no, kind).await
    }
}

impl<S: PageStore> PageWrite for WCtx<'_, S> {
    fn alloc(&mut self) -> PageNo {
        let w = &mut *self.w;
        if w.free.is_empty() {
            while let Some(&(g, no)) = w.pending.front() {
                if g > w.reuse_limit {
                    break;
                }
                w.pending.pop_front();
                w.free.push(no);
                w.undo.push(Undo::PendingPop(g, no));
            }
        }
        let no = match w.free.pop() {
            Some(no) => {
                w.undo.push(Undo::FreePop(no));
                no
            }
            None => {
                // Restored by the meta record on rollback.
                let no = w.meta.next_page;
                w.meta.next_page += 1;
                no
            }
        };
        // Mark as owned by this generation (the caller writes it right away).
        w.set_dirty(no, Some(Arc::new(Vec::new())));
        no
    }

    fn is_dirty(&self, no: PageNo) -> bool {
        self.w.dirty.contains_key(&no)
    }

    fn free(&mut self, no: PageNo) {
        if self.w.dirty.contains_key(&no) {
            // Written by this generation only: nothing else can reference it.
            self.w.set_dirty(no, None);
            self.w.free.push(no);
            self.w.undo.push(Undo::FreePush);
        } else {
            let g = self.w.meta.generation;
            self.w.pending.push_back((g, no));
            self.w.undo.push(Undo::PendingPush);
        }
    }

    fn write(&mut self, no: PageNo, buf: PageBuf) {
        self.w.set_dirty(no, Some(buf));
    }

    fn page_mut(&mut self, no: PageNo) -> Option<&mut Vec<u8>> {
        // Journaled: its state before this transaction is in the undo
        // journal (or it is new), so changing this version loses nothing a
        // rollback needs; `get_mut` succeeds only if no cache, snapshot or
        // flush holds the buffer too.
        if !self.w.journaled.contains(&no) {
            return None;
        }
        self.w.dirty.get_mut(&no).and_then(Arc::get_mut)
    }

    fn has_spare(&self, bound: PageNo, need: usize) -> bool {
        // `free` is sorted lowest last by the vacuum (`prepare_vacuum`);
        // pages pushed since are checked like the others.
        self.w.free.len() >= need && self.w.free.iter().rev().take(need).all(|&p| p < bound)
    }
}

/// Reads the committed free list into `w` if it is not there yet
/// ([`Working::unloaded`]). Called with the writer lock held, before a
/// transaction or a flush changes anything: until then `w.meta` names the
/// committed free list. A free list that does not read fails the write that
/// needed it (the next one tries again); reads are not affected.
pub(super) async fn ensure_free_list<S: PageStore>(
    inner: &Inner<S>,
    w: &mut Working,
) -> Result<(), Error> {
    if w.free_loaded {
        return Ok(());
    }
    let (free, chain) = load_free_list(inner, &w.meta)
        .await
        .map_err(|e| super::open_to_error("free list", e))?;
    w.free = free;
    w.freelist_pages = chain;
    w.free_loaded = true;
    Ok(())
}

/// Reads the free-list chain of `meta`: the reusable pages (lowest reused
/// first) and the pages holding the chain.
pub(super) async fn load_free_list<S: PageStore>(
    inner: &Inner<S>,
    meta: &Meta,
) -> Result<(Vec<PageNo>, Vec<PageNo>), OpenError> {
    let (mut free, mut chain) = (Vec::new(), Vec::new());
    let mut walked = HashSet::new();
    let mut next = meta.freelist_head;
    while next != 0 {
        // A damaged chain may point past the file or loop back.
        if next >= meta.next_page || !walked.insert(next) {
            return Err(OpenError::Corrupt(format!(
                "free-list chain is broken at page {next}"
            )));
        }
        let buf = read_cached(inner, next, KIND_FREELIST)
            .await
            .map_err(|e| OpenError::Corrupt(e.to_string()))?;
        chain.push(next);
        let (following, n, entries) = decode_freelist_page(&buf);
        if n > FREELIST_PER_PAGE {
            return Err(OpenError::Corrupt(format!(
                "free-list page {next} claims {n} entries"
            )));
        }
        for no in entries {
            if no == 0 || no >= meta.next_page {
                return Err(OpenError::Corrupt(format!(
                    "free-list page {next} lists page {no}"
                )));
            }
            free.push(no);
        }
        next = following;
    }
    if free.len() as u64 != meta.freelist_count {
        return Err(OpenError::Corrupt(format!(
            "free list holds {} pages, meta says {}",
            free.len(),
            meta.freelist_count
        )));
    }
    // Reuse the lowest pages first (keeps files compact).
    free.sort_unstable_by(|a, b| b.cmp(a));
    Ok((free, chain))
}
