//! A copy-on-write B+tree over fixed-size pages.
//!
//! Every tree is identified by its root page number (0 = empty tree). A write
//! never modifies a page that a committed state can reach: it copies the page to
//! a newly allocated one (or modifies it in place if the page was allocated by the
//! same, not yet flushed, working generation) and frees the old page. The caller
//! (the database) decides when freed pages may be reused, so readers holding an
//! older root keep a consistent view.
//!
//! ## Page format (all integers little-endian)
//! ```text
//! 0..4    crc32 of bytes 4..PAGE_SIZE
//! 4..12   page number (detects misdirected writes)
//! 12      kind: 1 leaf, 2 branch, 3 overflow, 4 free-list
//! 13      reserved (0)
//! 14..16  entry count (u16)
//! leaf:     slot array of u16 entry offsets, then entries
//!           entry = u16 key len | key | u8 value kind | inline: u16 len | bytes
//!                                                     | overflow: u64 first page | u32 total len
//! branch:   u64 leftmost child, slot array of u16 entry offsets, then entries
//!           entry = u16 key len | key | u64 child (keys >= key go right of it)
//! overflow: u64 next page | u32 bytes in this page | bytes
//! ```
//! Values larger than fit inline (a leaf must always hold two entries) are stored
//! in overflow page chains. Deletion removes empty pages but does not merge
//! under-full siblings (like many production B-trees; space of an emptied page is
//! reclaimed, partially empty pages are refilled by later inserts).
//!
//! This file holds the tree operations (lookups, scans, the integrity walk,
//! insert and remove with copy-on-write); `node` holds the page and node
//! codec (page header, checksum and checks, leaf and branch encoding, raw-page
//! search and splicing), `tests` the tests against a model.

use std::future::Future;
use std::sync::Arc;

use crate::codec::{set_u32, set_u64};
use crate::error::{Error, InputError};
use crate::store::{PAGE_SIZE, PageBuf, PageNo};

mod node;
mod relocate;
mod scrub;

use node::{
    BODY, Branch, Bytes, HDR, Leaf, MAX_LEAF_ENTRY, OVERFLOW_CAP, Val, branch_child_for,
    branch_entry_len, branch_insert, branch_search, branch_set_child, count_of, encode_leaf_entry,
    leaf_entry, leaf_entry_len, leaf_entry_len_at, leaf_search, leaf_splice, leaf_splice_in_place,
    rd_u16, rd_u32, rd_u64, slice,
};
pub(crate) use node::{
    KIND_BRANCH, KIND_FREELIST, KIND_LEAF, KIND_OVERFLOW, check_page, corrupt, page_kind, seal,
    set_checksum,
};
pub(crate) use relocate::{relocate, targets};
pub(crate) use scrub::scrub_separators;

/// Largest key a tree accepts.
pub const MAX_KEY: usize = 1200;
/// Largest value a tree accepts (64 MiB).
pub const MAX_VALUE: usize = 64 * 1024 * 1024;

// ---------------------------------------------------------------------------
// Page access

/// Read access to pages (a snapshot, or the writer's working state).
pub(crate) trait PageRead {
    /// Reads a page; the implementation verifies its checksum against `kind`.
    fn read(&self, no: PageNo, kind: u8) -> impl Future<Output = Result<PageBuf, Error>>;

    /// Read-ahead: loads those of `nos` that are not at hand in one go, so
    /// that the reads that follow find them, and says how many of `nos`
    /// (from the first) it took care of (a reader may take fewer than
    /// asked, to fit its cache). Only a hint: a page it cannot load is left
    /// for [`PageRead::read`] to report. The default does nothing (every
    /// page is at hand).
    fn prefetch(&self, nos: &[PageNo]) -> impl Future<Output = usize> {
        std::future::ready(nos.len())
    }
}

/// Write access: allocation, freeing and writing of pages in a working state.
pub(crate) trait PageWrite: PageRead {
    /// A fresh page number.
    fn alloc(&mut self) -> PageNo;
    /// Whether `no` was allocated by the current (unflushed) generation and may be
    /// modified in place.
    fn is_dirty(&self, no: PageNo) -> bool;
    /// Releases a page that the new state no longer references.
    fn free(&mut self, no: PageNo);
    /// Stores a sealed page of the working state.
    fn write(&mut self, no: PageNo, buf: PageBuf);
    /// Whether the next `need` allocations are sure to return pages numbered
    /// below `bound` (see [`relocate`]).
    fn has_spare(&self, bound: PageNo, need: usize) -> bool;
    /// The working state's page `no` to change in place, when that is safe:
    /// the page was written in this transaction (its state before is kept
    /// apart for a rollback) and nothing else holds it (no snapshot, cache
    /// or reader). `None` means: write a changed copy. The default never
    /// allows it.
    fn page_mut(&mut self, no: PageNo) -> Option<&mut Vec<u8>> {
        let _ = no;
        None
    }
}

/// Page number to write a modified copy of `old` to (in place if dirty).
fn cow_target<W: PageWrite>(w: &mut W, old: PageNo) -> PageNo {
    if old != 0 && w.is_dirty(old) {
        old
    } else {
        if old != 0 {
            w.free(old);
        }
        w.alloc()
    }
}

// ---------------------------------------------------------------------------
// Reads

/// Looks `key` up in the tree rooted at `root`.
pub(crate) async fn get<R: PageRead>(
    r: &R,
    root: PageNo,
    key: &[u8],
) -> Result<Option<Vec<u8>>, Error> {
    match find_value(r, root, key).await? {
        Some(v) => Ok(Some(load_value(r, v).await?)),
        None => Ok(None),
    }
}

/// The value of `key` as its leaf holds it (inline, or where its overflow
/// chain starts), or `None`.
async fn find_value<R: PageRead>(r: &R, root: PageNo, key: &[u8]) -> Result<Option<Val>, Error> {
    if root == 0 {
        return Ok(None);
    }
    let leaf_no = find_leaf(r, root, key).await?;
    let buf = r.read(leaf_no, KIND_LEAF).await?;
    match leaf_search(&buf, key, leaf_no)? {
        Ok(i) => Ok(Some(leaf_entry(&buf, i, leaf_no)?.1)),
        Err(_) => Ok(None),
    }
}

async fn find_leaf<R: PageRead>(r: &R, root: PageNo, key: &[u8]) -> Result<PageNo, Error> {
    let mut no = root;
    for _depth in 0..64 {
        let buf = r.read(no, 0).await?;
        match page_kind(&buf) {
            KIND_LEAF => return Ok(no),
            KIND_BRANCH => no = branch_child_for(&buf, key, no)?,
            k => return Err(corrupt(no, format!("unexpected page kind {k} in tree"))),
        }
    }
    Err(corrupt(root, "tree deeper than 64 levels".into()))
}

/// One page of an overflow chain that holds `left` more bytes: its byte
/// count and the next page. The writer ([`store_value`]) cuts a value into
/// pages of [`OVERFLOW_CAP`] bytes, the last one holding the rest, so every
/// page but the last is full: a chain of `len` bytes has exactly
/// `len.div_ceil(OVERFLOW_CAP)` pages, and a damaged count (a page claiming
/// no bytes, say, in a chain that comes back to it) is refused instead of
/// walked for ever.
fn overflow_page(buf: &[u8], no: PageNo, left: usize) -> Result<(usize, PageNo), Error> {
    let n = rd_u32(buf, HDR + 8, no)? as usize;
    let want = left.min(OVERFLOW_CAP);
    if n != want {
        return Err(corrupt(
            no,
            "overflow page's byte count does not fit its chain".into(),
        ));
    }
    Ok((n, rd_u64(buf, HDR, no)?))
}

/// Materialises a value (following its overflow chain).
pub(crate) async fn load_value<R: PageRead>(r: &R, v: Val) -> Result<Vec<u8>, Error> {
    match v {
        Val::Inline(b) => Ok(b.to_vec()),
        Val::Overflow { first, len } => {
            let len = len as usize;
            if len > MAX_VALUE {
                return Err(corrupt(first, format!("overflow value of {len} bytes")));
            }
            let mut out = Vec::with_capacity(len);
            let mut next = first;
            while out.len() < len {
                if next == 0 {
                    return Err(corrupt(first, "overflow chain ends early".into()));
                }
                let buf = r.read(next, KIND_OVERFLOW).await?;
                let (n, nxt) = overflow_page(&buf, next, len - out.len())?;
                out.extend_from_slice(slice(&buf, HDR + 12, n, next)?);
                next = nxt;
            }
            Ok(out)
        }
    }
}

/// Leaves a scan reads ahead at first, once it goes on past its first leaf.
const READ_AHEAD_FIRST: usize = 4;
/// Most leaves a scan reads ahead at once (256 KiB of pages).
const READ_AHEAD_MAX: usize = 64;

/// A scan's walk over the leaves of one tree, in key order, from the leaf
/// holding `start` on (kept apart from [`scan`] so that its code exists once
/// per reader type, not once per scan callback).
///
/// It reads ahead: once the walk goes on past its first leaf, the following
/// leaves of the same parent are loaded in batches ([`PageRead::prefetch`])
/// of 4, 8, ... up to [`READ_AHEAD_MAX`] leaves, each batch asked for when
/// the walk reaches the end of the previous one. A point lookup, or a scan
/// that ends in its first leaf, reads nothing more; a scan that stops early
/// has read at most one batch it did not need.
struct LeafWalk {
    root: PageNo,
    /// Stack of (branch, next child index to visit, children read ahead up to).
    stack: Vec<(Branch, usize, usize)>,
    /// The next leaf (or subtree) to visit; 0 once the walk is over.
    next: PageNo,
    /// Whether no leaf was visited yet (the descent then follows `start`).
    first: bool,
    /// Leaves of the next read-ahead batch (0 until the walk leaves its
    /// first leaf).
    window: usize,
    /// Depth of the stack when a leaf is read (its parent on top).
    leaf_depth: Option<usize>,
}

impl LeafWalk {
    fn new(root: PageNo) -> LeafWalk {
        LeafWalk {
            root,
            stack: Vec::new(),
            next: root,
            first: true,
            window: 0,
            leaf_depth: None,
        }
    }

    /// The next leaf (its number and page) and the index of its first entry
    /// to visit (the first at or past `start` in the first leaf, else 0), or
    /// `None` at the end of the tree.
    async fn leaf<R: PageRead>(
        &mut self,
        r: &R,
        start: &[u8],
    ) -> Result<Option<(PageNo, PageBuf, usize)>, Error> {
        if !self.first {
            // Pop exhausted branches.
            self.window = self.window.max(READ_AHEAD_FIRST);
            loop {
                match self.stack.last_mut() {
                    None => return Ok(None),
                    Some((b, idx, _)) if *idx < b.children.len() => {
                        self.next = b.children[*idx];
                        *idx += 1;
                        break;
                    }
                    Some(_) => {
                        self.stack.pop();
                    }
                }
            }
            self.read_ahead(r).await;
        } else if self.root == 0 {
            return Ok(None);
        }
        // Descend to a leaf.
        loop {
            let no = self.next;
            let buf = r.read(no, 0).await?;
            match page_kind(&buf) {
                KIND_LEAF => {
                    self.leaf_depth.get_or_insert(self.stack.len());
                    let from = if self.first {
                        match leaf_search(&buf, start, no)? {
                            Ok(i) | Err(i) => i,
                        }
                    } else {
                        0
                    };
                    self.first = false;
                    return Ok(Some((no, buf, from)));
                }
                KIND_BRANCH => {
                    let b = Branch::decode(&buf, no)?;
                    let idx = if self.first { b.child_index(start) } else { 0 };
                    self.next = b.children[idx];
                    self.stack.push((b, idx + 1, 0));
                    if self.stack.len() > 64 {
                        return Err(corrupt(self.root, "tree deeper than 64 levels".into()));
                    }
                    self.read_ahead(r).await;
                }
                k => return Err(corrupt(no, format!("unexpected page kind {k} in tree"))),
            }
        }
    }

    /// Before the walk reads the child it just took from the branch on top
    /// of the stack: asks for the next batch if that child is a leaf and was
    /// not asked for yet.
    async fn read_ahead<R: PageRead>(&mut self, r: &R) {
        if self.window == 0 || self.leaf_depth != Some(self.stack.len()) {
            return;
        }
        let Some((b, next, ahead)) = self.stack.last_mut() else {
            return;
        };
        let idx = *next - 1;
        if idx < *ahead {
            return;
        }
        let end = (idx + self.window).min(b.children.len());
        self.window = (self.window * 2).min(READ_AHEAD_MAX);
        let took = r.prefetch(&b.children[idx..end]).await;
        *ahead = idx + took.max(1);
    }
}

/// Visits entries with key >= `start` in order, calling `f(key, value)` until it
/// returns `false`. Uses an explicit stack (no recursion), and reads ahead
/// once the scan goes on past its first leaf ([`LeafWalk`]).
pub(crate) async fn scan<R: PageRead, F>(
    r: &R,
    root: PageNo,
    start: &[u8],
    mut f: F,
) -> Result<(), Error>
where
    F: FnMut(&[u8], Vec<u8>) -> bool,
{
    let mut walk = LeafWalk::new(root);
    while let Some((no, buf, from)) = walk.leaf(r, start).await? {
        for i in from..count_of(&buf) {
            let (k, v) = leaf_entry(&buf, i, no)?;
            let v = load_value(r, v).await?;
            if !f(&k, v) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// [`scan`], handing `f` each value as loaded: `Err` for a value that does
/// not load because its overflow chain is damaged ([`Error::Corrupt`]
/// naming the page), and the scan goes on past it when `f` says so (the
/// document reads, the integrity check and the repair: they skip, name and
/// set aside such a record). The tree's own pages must read: their damage
/// ends the scan.
pub(crate) async fn scan_values<R: PageRead, F>(
    r: &R,
    root: PageNo,
    start: &[u8],
    mut f: F,
) -> Result<(), Error>
where
    F: FnMut(&[u8], Result<Vec<u8>, Error>) -> bool,
{
    let mut walk = LeafWalk::new(root);
    while let Some((no, buf, from)) = walk.leaf(r, start).await? {
        for i in from..count_of(&buf) {
            let (k, v) = leaf_entry(&buf, i, no)?;
            let v = match load_value(r, v).await {
                Err(e) if !matches!(e, Error::Corrupt { .. }) => return Err(e),
                v => v,
            };
            if !f(&k, v) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Visits entries with key < `end` (every entry when `None`) in descending
/// key order, calling `f(key, value)` until it returns `false`: the reads of
/// a descending query, which stop after the rows they need instead of
/// reading the whole range. One leaf at a time, no read-ahead.
pub(crate) async fn scan_rev<R: PageRead, F>(
    r: &R,
    root: PageNo,
    end: Option<&[u8]>,
    mut f: F,
) -> Result<(), Error>
where
    F: FnMut(&[u8], Vec<u8>) -> bool,
{
    if root == 0 {
        return Ok(());
    }
    // (branch, index of the child being visited), root first.
    let mut stack: Vec<(Branch, usize)> = Vec::new();
    let mut next = root;
    let mut bound = end;
    loop {
        // Down to the last leaf that may hold a key below the bound.
        let leaf = loop {
            let buf = r.read(next, 0).await?;
            match page_kind(&buf) {
                KIND_LEAF => break buf,
                KIND_BRANCH => {
                    let b = Branch::decode(&buf, next)?;
                    let idx = match bound {
                        Some(e) => b.child_index(e),
                        None => b.children.len().saturating_sub(1),
                    };
                    next = *b
                        .children
                        .get(idx)
                        .ok_or_else(|| corrupt(next, "a branch without children".into()))?;
                    stack.push((b, idx));
                    if stack.len() > 64 {
                        return Err(corrupt(root, "tree deeper than 64 levels".into()));
                    }
                }
                k => return Err(corrupt(next, format!("unexpected page kind {k} in tree"))),
            }
        };
        let upto = match bound {
            Some(e) => match leaf_search(&leaf, e, next)? {
                Ok(i) | Err(i) => i,
            },
            None => count_of(&leaf),
        };
        // Only the first leaf is cut by the bound: the ones before it lie below.
        bound = None;
        for i in (0..upto).rev() {
            let (k, v) = leaf_entry(&leaf, i, next)?;
            let v = load_value(r, v).await?;
            if !f(&k, v) {
                return Ok(());
            }
        }
        // The subtree before this one.
        loop {
            match stack.last_mut() {
                None => return Ok(()),
                Some((b, idx)) if *idx > 0 => {
                    *idx -= 1;
                    next = b.children[*idx];
                    break;
                }
                Some(_) => {
                    stack.pop();
                }
            }
        }
    }
}

/// Collects every page number reachable from `root` (tree and overflow pages),
/// verifying each page and the key order. Used by the integrity check.
pub(crate) async fn collect_pages<R: PageRead>(
    r: &R,
    root: PageNo,
    out: &mut Vec<PageNo>,
) -> Result<u64, Error> {
    let mut entries = 0u64;
    if root == 0 {
        return Ok(0);
    }
    // (page, lower bound, upper bound)
    type Todo = (PageNo, Option<Vec<u8>>, Option<Vec<u8>>);
    let mut todo: Vec<Todo> = vec![(root, None, None)];
    while let Some((no, lo, hi)) = todo.pop() {
        out.push(no);
        let buf = r.read(no, 0).await?;
        let in_bounds =
            |k: &[u8]| lo.as_deref().is_none_or(|l| k >= l) && hi.as_deref().is_none_or(|h| k < h);
        match page_kind(&buf) {
            KIND_LEAF => {
                let leaf = Leaf::decode(&buf, no)?;
                for (i, (k, v)) in leaf.entries.iter().enumerate() {
                    if !in_bounds(k) || (i > 0 && leaf.entries[i - 1].0[..] >= k[..]) {
                        return Err(corrupt(no, "leaf keys out of order".into()));
                    }
                    if let Val::Overflow { first, len } = v {
                        out.extend(chain_pages(r, *first, *len).await?);
                    }
                }
                entries += leaf.entries.len() as u64;
            }
            KIND_BRANCH => {
                let b = Branch::decode(&buf, no)?;
                for (i, &child) in b.children.iter().enumerate() {
                    let clo = if i == 0 {
                        lo.clone()
                    } else {
                        Some(b.keys[i - 1].to_vec())
                    };
                    let chi = if i < b.keys.len() {
                        Some(b.keys[i].to_vec())
                    } else {
                        hi.clone()
                    };
                    if let (Some(l), Some(h)) = (&clo, &chi)
                        && l >= h
                    {
                        return Err(corrupt(no, "branch keys out of order".into()));
                    }
                    todo.push((child, clo, chi));
                }
            }
            k => return Err(corrupt(no, format!("unexpected page kind {k} in tree"))),
        }
    }
    Ok(entries)
}

/// The pages of the overflow chain from `first` holding `len` bytes, each
/// read and checked (kind, byte counts).
pub(crate) async fn chain_pages<R: PageRead>(
    r: &R,
    first: PageNo,
    len: u32,
) -> Result<Vec<PageNo>, Error> {
    let mut pages = Vec::new();
    let mut next = first;
    let mut left = len as usize;
    while left > 0 {
        if next == 0 {
            return Err(corrupt(first, "overflow chain ends early".into()));
        }
        if pages.contains(&next) {
            return Err(corrupt(
                next,
                "overflow chain comes back to this page".into(),
            ));
        }
        pages.push(next);
        let ob = r.read(next, KIND_OVERFLOW).await?;
        let (n, nxt) = overflow_page(&ob, next, left)?;
        left -= n;
        next = nxt;
    }
    Ok(pages)
}

/// Test hook: damages the overflow chain of `key`'s value as a misdirected
/// write could, its second page pointing back to the first, or (when
/// `unreadable`) no longer an overflow page at all, so that it fails to
/// read as a page with a bad checksum does; either way the pages after it
/// are no longer reachable. Returns the chain's pages as they were. Only
/// with the `testing` feature.
#[cfg(any(test, feature = "testing"))]
pub(crate) async fn testing_break_chain<W: PageRead + PageWrite>(
    w: &mut W,
    root: PageNo,
    key: &[u8],
    unreadable: bool,
) -> Result<Vec<PageNo>, Error> {
    let Some(Val::Overflow { first, len }) = find_value(w, root, key).await? else {
        return Err(corrupt(root, "the key has no overflow chain".into()));
    };
    let pages = chain_pages(w, first, len).await?;
    if pages.len() < 3 {
        return Err(corrupt(
            first,
            "the chain is shorter than three pages".into(),
        ));
    }
    let mut page = w.read(pages[1], KIND_OVERFLOW).await?.to_vec();
    if unreadable {
        page[12] = KIND_LEAF;
    } else {
        set_u64(&mut page, HDR, first);
    }
    w.write(pages[1], Arc::new(page));
    Ok(pages)
}

// ---------------------------------------------------------------------------
// Writes

/// Inserts or replaces `key`. Returns the new root and whether `key` existed.
pub(crate) async fn insert<W: PageWrite>(
    w: &mut W,
    root: PageNo,
    key: &[u8],
    value: &[u8],
) -> Result<(PageNo, bool), Error> {
    if key.len() > MAX_KEY {
        return Err(InputError::InvalidArgument(format!(
            "key of {} bytes exceeds {MAX_KEY}",
            key.len()
        ))
        .into());
    }
    if value.len() > MAX_VALUE {
        return Err(InputError::InvalidArgument(format!(
            "value of {} bytes exceeds {MAX_VALUE}",
            value.len()
        ))
        .into());
    }
    let (path, mut leaf_no) = descend(w, root, key).await?;
    if leaf_no != 0 {
        // Fast path: splice the entry into the raw page when it fits.
        let buf = w.read(leaf_no, KIND_LEAF).await?;
        let (pos, old) = match leaf_search(&buf, key, leaf_no)? {
            Ok(i) => (i, true),
            Err(i) => (i, false),
        };
        let n = count_of(&buf);
        let need = 2 * usize::from(!old) + 4 + key.len() + 3 + value.len();
        let used = if n == 0 {
            HDR
        } else {
            let last = rd_u16(&buf, HDR + 2 * (n - 1), leaf_no)?;
            last + leaf_entry_len_at(&buf, last, leaf_no)?
        };
        if used + need <= PAGE_SIZE && 4 + key.len() + 3 + value.len() <= MAX_LEAF_ENTRY {
            if old {
                let (_, old_val) = leaf_entry(&buf, pos, leaf_no)?;
                free_value(w, &old_val).await?;
            }
            let mut e = Vec::with_capacity(need);
            encode_leaf_entry(&mut e, key, &Val::Inline(Bytes::Own(value.to_vec())));
            let target = cow_target(w, leaf_no);
            let buf = if target == leaf_no {
                // A page of this transaction: change it where it is if no
                // one else holds it (a bulk write appends to one leaf many
                // times).
                drop(buf);
                if let Some(page) = w.page_mut(target) {
                    if !leaf_splice_in_place(page, target, pos, old, &e)? {
                        return Err(corrupt(leaf_no, "leaf size accounting disagrees".into()));
                    }
                    let new_root = propagate(w, path, target, &mut None, false).await?;
                    return Ok((new_root, old));
                }
                w.read(leaf_no, KIND_LEAF).await?
            } else {
                buf
            };
            if let Some(mut page) = leaf_splice(&buf, target, pos, old, Some(&e))? {
                set_u64(&mut page, 4, target);
                w.write(target, Arc::new(page));
                let new_root = propagate(w, path, target, &mut None, false).await?;
                return Ok((new_root, old));
            }
            return Err(corrupt(leaf_no, "leaf size accounting disagrees".into()));
        }
    }
    let mut leaf = if leaf_no == 0 {
        Leaf::default()
    } else {
        Leaf::decode(&w.read(leaf_no, KIND_LEAF).await?, leaf_no)?
    };
    let (pos, old) = match leaf.entries.binary_search_by(|(k, _)| k[..].cmp(key)) {
        Ok(i) => {
            let old_val = leaf.entries[i].1.clone();
            free_value(w, &old_val).await?;
            (i, true)
        }
        Err(i) => (i, false),
    };
    let val = store_value(w, key, value);
    if old {
        leaf.entries[pos].1 = val;
    } else {
        leaf.entries.insert(pos, (Bytes::Own(key.to_vec()), val));
    }
    let appended = !old && pos + 1 == leaf.entries.len();
    // Write the leaf (splitting if needed), then propagate up.
    let target = cow_target(w, leaf_no);
    leaf_no = target;
    let mut split = if leaf.size() <= BODY {
        w.write(leaf_no, leaf.encode(leaf_no));
        None
    } else {
        let at = split_point(
            leaf.entries.iter().map(|(k, v)| leaf_entry_len(k, v)),
            appended,
            BODY,
        );
        let right = Leaf {
            entries: leaf.entries.split_off(at),
        };
        let right_no = w.alloc();
        w.write(leaf_no, leaf.encode(leaf_no));
        w.write(right_no, right.encode(right_no));
        Some((right.entries[0].0.clone(), right_no))
    };
    let new_root = propagate(w, path, leaf_no, &mut split, appended).await?;
    Ok((new_root, old))
}

/// Removes `key`. Returns the new root and whether it existed.
pub(crate) async fn remove<W: PageWrite>(
    w: &mut W,
    root: PageNo,
    key: &[u8],
) -> Result<(PageNo, bool), Error> {
    if root == 0 {
        return Ok((0, false));
    }
    let (mut path, leaf_no) = descend(w, root, key).await?;
    let raw = w.read(leaf_no, KIND_LEAF).await?;
    let mut leaf = Leaf::decode(&raw, leaf_no)?;
    let Ok(i) = leaf.entries.binary_search_by(|(k, _)| k[..].cmp(key)) else {
        return Ok((root, false));
    };
    let (_, v) = leaf.entries.remove(i);
    free_value(w, &v).await?;
    if !leaf.entries.is_empty() {
        let no = cow_target(w, leaf_no);
        let page = leaf_splice(&raw, no, i, true, None)?
            .ok_or_else(|| corrupt(leaf_no, "leaf grew on removal".into()))?;
        w.write(no, Arc::new(page));
        let root = propagate(w, path, no, &mut None, false).await?;
        return Ok((root, true));
    }
    // The leaf is empty: drop it and remove its pointer from the parent, upwards.
    w.free(leaf_no);
    loop {
        let Some((bno, buf, idx, _)) = path.pop() else {
            return Ok((0, true)); // the tree is now empty
        };
        let mut b = Branch::decode(&buf, bno)?;
        if idx >= b.children.len() {
            return Err(corrupt(bno, "branch changed under a writer".into()));
        }
        b.children.remove(idx);
        if !b.keys.is_empty() {
            b.keys.remove(if idx == 0 { 0 } else { idx - 1 });
        }
        if b.children.is_empty() {
            w.free(bno);
            continue;
        }
        if b.children.len() == 1 && path.is_empty() {
            // Root with one child: the child becomes the root.
            w.free(bno);
            return Ok((b.children[0], true));
        }
        let no = cow_target(w, bno);
        w.write(no, b.encode(no));
        let root = propagate(w, path, no, &mut None, false).await?;
        return Ok((root, true));
    }
}

/// Branches from the root down: (page, raw page, child index, child page).
/// Decoded only when a branch must be rewritten.
type Path = Vec<(PageNo, PageBuf, usize, PageNo)>;

async fn descend<W: PageWrite>(w: &W, root: PageNo, key: &[u8]) -> Result<(Path, PageNo), Error> {
    let mut path = Vec::new();
    let mut no = root;
    if no == 0 {
        return Ok((path, 0));
    }
    loop {
        let buf = w.read(no, 0).await?;
        match page_kind(&buf) {
            KIND_LEAF => return Ok((path, no)),
            KIND_BRANCH => {
                let (idx, child) = branch_search(&buf, key, no)?;
                path.push((no, buf, idx, child));
                if path.len() > 64 {
                    return Err(corrupt(root, "tree deeper than 64 levels".into()));
                }
                no = child;
            }
            k => return Err(corrupt(no, format!("unexpected page kind {k} in tree"))),
        }
    }
}

/// Rewrites the branches on `path` after their child at the path index became
/// `child` (plus an optional new right sibling from a split). Returns the root.
async fn propagate<W: PageWrite>(
    w: &mut W,
    mut path: Path,
    mut child: PageNo,
    split: &mut Option<(Bytes, PageNo)>,
    appended: bool,
) -> Result<PageNo, Error> {
    while let Some((bno, buf, idx, old_child)) = path.pop() {
        if old_child == child && split.is_none() {
            // Child was modified in place: ancestors are unchanged too.
            return Ok(root_of(&path, bno));
        }
        if split.is_none() {
            // Only the child pointer changes: patch a copy of the raw page.
            let no = cow_target(w, bno);
            let mut page = branch_set_child(&buf, bno, idx, child)?;
            seal(&mut page, no, KIND_BRANCH, count_of(&buf) as u16);
            w.write(no, Arc::new(page));
            if no == bno {
                // Rewritten in place: its parent already points at it.
                return Ok(root_of(&path, bno));
            }
            child = no;
            continue;
        }
        if let Some((k, right)) = split.as_ref()
            && let Some(mut page) = branch_insert(&buf, bno, idx, child, k, *right)?
        {
            // The separator fits: splice it into a copy of the raw page.
            let no = cow_target(w, bno);
            seal(&mut page, no, KIND_BRANCH, (count_of(&buf) + 1) as u16);
            w.write(no, Arc::new(page));
            *split = None;
            if no == bno {
                return Ok(root_of(&path, bno));
            }
            child = no;
            continue;
        }
        let mut b = Branch::decode(&buf, bno)?;
        if idx >= b.children.len() {
            return Err(corrupt(bno, "branch changed under a writer".into()));
        }
        b.children[idx] = child;
        let mut appended_here = false;
        if let Some((k, right)) = split.take() {
            b.keys.insert(idx, k);
            b.children.insert(idx + 1, right);
            appended_here = appended && idx + 2 == b.children.len();
        }
        let no = cow_target(w, bno);
        if b.size() <= BODY {
            w.write(no, b.encode(no));
        } else {
            let at = split_point(
                b.keys.iter().map(|k| branch_entry_len(k)),
                appended_here,
                BODY - 8,
            )
            .max(1);
            // keys[at] moves up; left keeps keys[..at], right keys[at+1..]
            let mut right_keys = b.keys.split_off(at);
            let up = right_keys.remove(0);
            let right_children = b.children.split_off(at + 1);
            let right = Branch {
                keys: right_keys,
                children: right_children,
            };
            let right_no = w.alloc();
            w.write(no, b.encode(no));
            w.write(right_no, right.encode(right_no));
            *split = Some((up, right_no));
        }
        child = no;
    }
    if let Some((k, right)) = split.take() {
        let no = w.alloc();
        let b = Branch {
            keys: vec![k],
            children: vec![child, right],
        };
        w.write(no, b.encode(no));
        return Ok(no);
    }
    Ok(child)
}

fn root_of(path: &Path, current: PageNo) -> PageNo {
    path.first().map(|(no, ..)| *no).unwrap_or(current)
}

/// Where to split a run of entries of the given sizes so both halves fit in
/// `cap` bytes. Sequential appends keep the left page full; otherwise halve.
fn split_point(sizes: impl Iterator<Item = usize>, appended: bool, cap: usize) -> usize {
    let sizes: Vec<usize> = sizes.collect();
    let n = sizes.len();
    if appended {
        // Keep as much as fits on the left (at least leave the last one).
        let mut acc = 0;
        for (i, s) in sizes.iter().enumerate() {
            if acc + s > cap || i == n - 1 {
                return i.max(1);
            }
            acc += s;
        }
    }
    let total: usize = sizes.iter().sum();
    let mut acc = 0;
    let mut best = (usize::MAX, 1);
    for (i, s) in sizes.iter().enumerate().take(n - 1) {
        acc += s;
        let worst = acc.max(total - acc);
        if worst < best.0 {
            best = (worst, i + 1);
        }
    }
    best.1
}

fn store_value<W: PageWrite>(w: &mut W, key: &[u8], value: &[u8]) -> Val {
    if 4 + key.len() + 3 + value.len() <= MAX_LEAF_ENTRY {
        return Val::Inline(Bytes::Own(value.to_vec()));
    }
    // Overflow chain, written back to front so each page knows its successor.
    let chunks: Vec<&[u8]> = value.chunks(OVERFLOW_CAP).collect();
    let nos: Vec<PageNo> = chunks.iter().map(|_| w.alloc()).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let mut buf = vec![0u8; PAGE_SIZE];
        let next = nos.get(i + 1).copied().unwrap_or(0);
        set_u64(&mut buf, HDR, next);
        set_u32(&mut buf, HDR + 8, chunk.len() as u32);
        buf[HDR + 12..HDR + 12 + chunk.len()].copy_from_slice(chunk);
        seal(&mut buf, nos[i], KIND_OVERFLOW, 0);
        w.write(nos[i], Arc::new(buf));
    }
    Val::Overflow {
        first: nos.first().copied().unwrap_or(0),
        len: value.len() as u32,
    }
}

async fn free_value<W: PageWrite>(w: &mut W, v: &Val) -> Result<(), Error> {
    if let Val::Overflow { first, len } = v {
        // A damaged chain is freed up to its damage and no further (what
        // follows is leaked, never freed twice; `outpost repair` frees it):
        // replacing or deleting a value does not fail because its old chain
        // is damaged, and never frees a page twice (a cycle would hand one
        // page to two owners at a later commit). A page that does not read
        // as an overflow page is not freed either: the pointer to it may be
        // the damage, and the page another's.
        let mut next = *first;
        let mut left = *len as usize;
        let mut freed: Vec<PageNo> = Vec::new();
        while left > 0 && next != 0 && !freed.contains(&next) {
            let buf = match w.read(next, KIND_OVERFLOW).await {
                Ok(buf) => buf,
                Err(Error::Corrupt { .. }) => break,
                Err(e) => return Err(e),
            };
            w.free(next);
            freed.push(next);
            let Ok((n, nxt)) = overflow_page(&buf, next, left) else {
                break;
            };
            left -= n;
            next = nxt;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
