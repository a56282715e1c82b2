//! The page and node codec of the B+tree: page headers, checksums and
//! checks, the decoded [`Leaf`] and [`Branch`] nodes, and the raw-page
//! operations the tree uses without decoding a whole node (search, entry
//! splicing, child patching). Byte order comes from [`crate::codec`]; the
//! page format is described in the parent module.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::codec::{Put, get_u16, get_u32, get_u64, set_u16, set_u32, set_u64};
use crate::error::Error;
use crate::store::{PAGE_SIZE, PageBuf, PageNo};

/// Page kinds.
pub(crate) const KIND_LEAF: u8 = 1;
pub(crate) const KIND_BRANCH: u8 = 2;
pub(crate) const KIND_OVERFLOW: u8 = 3;
pub(crate) const KIND_FREELIST: u8 = 4;

/// Size of the page header (checksum, page number, kind, entry count).
pub(super) const HDR: usize = 16;
/// Bytes of a page after its header.
pub(super) const BODY: usize = PAGE_SIZE - HDR;
/// Largest leaf entry: two must fit in one page.
pub(super) const MAX_LEAF_ENTRY: usize = BODY / 2 - 2;
/// Value bytes one overflow page holds.
pub(super) const OVERFLOW_CAP: usize = PAGE_SIZE - HDR - 12;

// ---------------------------------------------------------------------------
// Page sealing and checking

/// Writes the header fields of a page buffer. The checksum is computed once per
/// page when its generation is flushed ([`set_checksum`]), not on every change.
pub(crate) fn seal(buf: &mut [u8], no: PageNo, kind: u8, count: u16) {
    set_u64(buf, 4, no);
    buf[12] = kind;
    buf[13] = 0;
    set_u16(buf, 14, count);
}

/// Computes and stores the checksum of a sealed page.
pub(crate) fn set_checksum(buf: &mut [u8]) {
    let crc = crc32fast::hash(&buf[4..PAGE_SIZE]);
    set_u32(buf, 0, crc);
}

/// Checks the checksum, page number and kind of a page read from a store.
pub(crate) fn check_page(buf: &[u8], no: PageNo, kind: u8) -> Result<(), Error> {
    if buf.len() != PAGE_SIZE {
        return Err(corrupt(no, format!("page has {} bytes", buf.len())));
    }
    if Some(crc32fast::hash(&buf[4..PAGE_SIZE])) != get_u32(buf, 0) {
        return Err(corrupt(no, "checksum mismatch".into()));
    }
    let got_no = get_u64(buf, 4).unwrap_or_default();
    if got_no != no {
        return Err(corrupt(no, format!("page claims to be page {got_no}")));
    }
    if buf[12] != kind {
        return Err(corrupt(
            no,
            format!("expected page kind {kind}, found {}", buf[12]),
        ));
    }
    Ok(())
}

/// A corruption error naming page `page`.
pub(crate) fn corrupt(page: PageNo, reason: String) -> Error {
    Error::Corrupt {
        page,
        location: None,
        reason,
    }
}

/// The kind byte of a page (0 if it has none).
pub(crate) fn page_kind(buf: &[u8]) -> u8 {
    buf.get(12).copied().unwrap_or(0)
}

/// The entry count of a page (0 for a buffer too short to have one).
pub(super) fn count_of(buf: &[u8]) -> usize {
    get_u16(buf, 14).map_or(0, usize::from)
}

fn out_of_bounds(no: PageNo, at: usize) -> Error {
    corrupt(no, format!("offset {at} out of bounds"))
}

/// The `u16` at `at` of page `no`, or a corruption error past its end.
pub(super) fn rd_u16(buf: &[u8], at: usize, no: PageNo) -> Result<usize, Error> {
    get_u16(buf, at)
        .map(usize::from)
        .ok_or_else(|| out_of_bounds(no, at))
}

/// The `u32` at `at` of page `no` (see [`rd_u16`]).
pub(super) fn rd_u32(buf: &[u8], at: usize, no: PageNo) -> Result<u32, Error> {
    get_u32(buf, at).ok_or_else(|| out_of_bounds(no, at))
}

/// The `u64` at `at` of page `no` (see [`rd_u16`]).
pub(super) fn rd_u64(buf: &[u8], at: usize, no: PageNo) -> Result<u64, Error> {
    get_u64(buf, at).ok_or_else(|| out_of_bounds(no, at))
}

/// `len` bytes at `at` of page `no`, or a corruption error past its end.
pub(super) fn slice(buf: &[u8], at: usize, len: usize, no: PageNo) -> Result<&[u8], Error> {
    buf.get(at..at + len)
        .ok_or_else(|| corrupt(no, format!("range {at}+{len} out of bounds")))
}

// ---------------------------------------------------------------------------
// Nodes

/// Bytes of a decoded node: a range of the page it was decoded from (no copy,
/// no allocation) or owned bytes of a new entry.
#[derive(Clone, Debug)]
pub(crate) enum Bytes {
    Page(PageBuf, u16, u16),
    Own(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Page(p, off, len) => &p[*off as usize..*off as usize + *len as usize],
            Bytes::Own(v) => v,
        }
    }
}

impl PartialEq for Bytes {
    fn eq(&self, other: &Bytes) -> bool {
        self[..] == other[..]
    }
}
impl Eq for Bytes {}

/// A checked range of `buf` as [`Bytes`].
fn page_bytes(buf: &PageBuf, at: usize, len: usize, no: PageNo) -> Result<Bytes, Error> {
    slice(buf, at, len, no)?;
    Ok(Bytes::Page(buf.clone(), at as u16, len as u16))
}

/// A value as stored in a leaf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Val {
    Inline(Bytes),
    Overflow { first: PageNo, len: u32 },
}

impl Val {
    fn encoded_len(&self) -> usize {
        match self {
            Val::Inline(v) => 3 + v.len(),
            Val::Overflow { .. } => 13,
        }
    }
}

/// A decoded leaf.
#[derive(Clone, Debug, Default)]
pub(crate) struct Leaf {
    pub entries: Vec<(Bytes, Val)>,
}

/// A decoded branch: `children.len() == keys.len() + 1`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Branch {
    pub keys: Vec<Bytes>,
    pub children: Vec<PageNo>,
}

pub(super) fn leaf_entry_len(k: &[u8], v: &Val) -> usize {
    2 + 2 + k.len() + v.encoded_len()
}

pub(super) fn branch_entry_len(k: &[u8]) -> usize {
    2 + 2 + k.len() + 8
}

impl Leaf {
    pub(super) fn size(&self) -> usize {
        self.entries.iter().map(|(k, v)| leaf_entry_len(k, v)).sum()
    }

    pub(crate) fn decode(buf: &PageBuf, no: PageNo) -> Result<Leaf, Error> {
        let n = count_of(buf);
        let mut entries = Vec::with_capacity(n);
        for i in 0..n {
            entries.push(leaf_entry(buf, i, no)?);
        }
        Ok(Leaf { entries })
    }

    pub(super) fn encode(&self, no: PageNo) -> PageBuf {
        // One allocation of the whole page: the entries are appended in place.
        let mut buf = Vec::with_capacity(PAGE_SIZE);
        buf.resize(HDR + 2 * self.entries.len(), 0);
        for (i, (k, v)) in self.entries.iter().enumerate() {
            let pos = buf.len() as u16;
            set_u16(&mut buf, HDR + 2 * i, pos);
            encode_leaf_entry(&mut buf, k, v);
        }
        buf.resize(PAGE_SIZE, 0);
        seal(&mut buf, no, KIND_LEAF, self.entries.len() as u16);
        Arc::new(buf)
    }
}

/// The `i`-th entry of leaf `buf` (page `no`), through its slot.
pub(super) fn leaf_entry(buf: &PageBuf, i: usize, no: PageNo) -> Result<(Bytes, Val), Error> {
    let off = rd_u16(buf, HDR + 2 * i, no)?;
    let klen = rd_u16(buf, off, no)?;
    let key = page_bytes(buf, off + 2, klen, no)?;
    let p = off + 2 + klen;
    let kind = *buf
        .get(p)
        .ok_or_else(|| corrupt(no, "value kind out of bounds".into()))?;
    let v = match kind {
        0 => {
            let vlen = rd_u16(buf, p + 1, no)?;
            Val::Inline(page_bytes(buf, p + 3, vlen, no)?)
        }
        1 => Val::Overflow {
            first: rd_u64(buf, p + 1, no)?,
            len: rd_u32(buf, p + 9, no)?,
        },
        k => return Err(corrupt(no, format!("unknown value kind {k}"))),
    };
    Ok((key, v))
}

pub(super) fn leaf_key_at(buf: &[u8], i: usize, no: PageNo) -> Result<&[u8], Error> {
    let off = rd_u16(buf, HDR + 2 * i, no)?;
    let klen = rd_u16(buf, off, no)?;
    slice(buf, off + 2, klen, no)
}

impl Branch {
    pub(super) fn size(&self) -> usize {
        8 + self.keys.iter().map(|k| branch_entry_len(k)).sum::<usize>()
    }

    pub(crate) fn decode(buf: &PageBuf, no: PageNo) -> Result<Branch, Error> {
        let n = count_of(buf);
        let mut keys = Vec::with_capacity(n);
        let mut children = Vec::with_capacity(n + 1);
        children.push(rd_u64(buf, HDR, no)?);
        for i in 0..n {
            let off = rd_u16(buf, HDR + 8 + 2 * i, no)?;
            let klen = rd_u16(buf, off, no)?;
            keys.push(page_bytes(buf, off + 2, klen, no)?);
            children.push(rd_u64(buf, off + 2 + klen, no)?);
        }
        Ok(Branch { keys, children })
    }

    pub(super) fn encode(&self, no: PageNo) -> PageBuf {
        let mut buf = Vec::with_capacity(PAGE_SIZE);
        buf.resize(HDR, 0);
        buf.put_u64(self.children[0]);
        buf.resize(HDR + 8 + 2 * self.keys.len(), 0);
        for (i, k) in self.keys.iter().enumerate() {
            let pos = buf.len() as u16;
            set_u16(&mut buf, HDR + 8 + 2 * i, pos);
            buf.put_bytes16(k);
            buf.put_u64(self.children[i + 1]);
        }
        buf.resize(PAGE_SIZE, 0);
        seal(&mut buf, no, KIND_BRANCH, self.keys.len() as u16);
        Arc::new(buf)
    }

    /// Index of the child that may hold `key`.
    pub(super) fn child_index(&self, key: &[u8]) -> usize {
        self.keys.partition_point(|k| &k[..] <= key)
    }
}

/// Child for `key` in a raw branch page, without decoding it.
pub(super) fn branch_child_for(buf: &[u8], key: &[u8], no: PageNo) -> Result<PageNo, Error> {
    Ok(branch_search(buf, key, no)?.1)
}

/// Index and page number of the child for `key` in a raw branch page.
pub(super) fn branch_search(buf: &[u8], key: &[u8], no: PageNo) -> Result<(usize, PageNo), Error> {
    let n = count_of(buf);
    let (mut lo, mut hi) = (0usize, n);
    // find the first key > `key`
    while lo < hi {
        let mid = (lo + hi) / 2;
        let off = rd_u16(buf, HDR + 8 + 2 * mid, no)?;
        let klen = rd_u16(buf, off, no)?;
        let k = slice(buf, off + 2, klen, no)?;
        if k <= key {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let child = if lo == 0 {
        rd_u64(buf, HDR, no)?
    } else {
        let off = rd_u16(buf, HDR + 8 + 2 * (lo - 1), no)?;
        let klen = rd_u16(buf, off, no)?;
        rd_u64(buf, off + 2 + klen, no)?
    };
    Ok((lo, child))
}

/// Encodes one leaf entry (`u16 key len | key | value`).
pub(super) fn encode_leaf_entry(out: &mut Vec<u8>, k: &[u8], v: &Val) {
    out.put_bytes16(k);
    match v {
        Val::Inline(b) => {
            out.put_u8(0);
            out.put_bytes16(b);
        }
        Val::Overflow { first, len } => {
            out.put_u8(1);
            out.put_u64(*first);
            out.put_u32(*len);
        }
    }
}

/// Byte length of the leaf entry at offset `off`.
pub(super) fn leaf_entry_len_at(buf: &[u8], off: usize, no: PageNo) -> Result<usize, Error> {
    let klen = rd_u16(buf, off, no)?;
    let p = off + 2 + klen;
    match buf.get(p) {
        Some(0) => Ok(2 + klen + 3 + rd_u16(buf, p + 1, no)?),
        Some(1) => Ok(2 + klen + 13),
        _ => Err(corrupt(no, "bad value kind".into())),
    }
}

/// Rebuilds a leaf page with entry `pos` inserted (`replace == false`),
/// replaced (`replace`), or removed (`entry == None`), without decoding the
/// other entries: pages keep their entries contiguous and in key order right
/// after the slot array, so the change is two block copies and an offset shift.
/// Returns `None` when the result would not fit in a page.
pub(super) fn leaf_splice(
    buf: &[u8],
    no: PageNo,
    pos: usize,
    replace: bool,
    entry: Option<&[u8]>,
) -> Result<Option<Vec<u8>>, Error> {
    let n = count_of(buf);
    let slot = |i: usize| rd_u16(buf, HDR + 2 * i, no);
    let start = HDR + 2 * n;
    let end = if n == 0 {
        start
    } else {
        slot(n - 1)? + leaf_entry_len_at(buf, slot(n - 1)?, no)?
    };
    let at = if pos < n { slot(pos)? } else { end };
    let after = if replace || entry.is_none() {
        if pos >= n {
            return Err(corrupt(no, "entry index out of range".into()));
        }
        at + leaf_entry_len_at(buf, at, no)?
    } else {
        at
    };
    if !(start <= at && at <= after && after <= end && end <= PAGE_SIZE) {
        return Err(corrupt(no, "leaf entries are not contiguous".into()));
    }
    let new_n = match (entry, replace) {
        (None, _) => n - 1,
        (Some(_), true) => n,
        (Some(_), false) => n + 1,
    };
    let elen = entry.map_or(0, <[u8]>::len);
    let new_end = HDR + 2 * new_n + (at - start) + elen + (end - after);
    if new_end > PAGE_SIZE {
        return Ok(None);
    }
    let new_start = HDR + 2 * new_n;
    // The page is built by appending (no page-sized memset): a zeroed
    // header, the slots (the ones after `pos` one place further right or
    // left, every offset moved with its entry), the entries, then zeros.
    let shift_before = new_start as isize - start as isize;
    let shift_after = shift_before + elen as isize - (after - at) as isize;
    let mut out = crate::store::spare::take();
    out.resize(HDR, 0);
    out.extend_from_slice(&buf[HDR..HDR + 2 * pos]);
    if entry.is_some() {
        out.put_u16((at as isize + shift_before) as u16);
    }
    let rest = if replace || entry.is_none() {
        pos + 1
    } else {
        pos
    };
    out.extend_from_slice(&buf[HDR + 2 * rest..start]);
    shift_offsets(&mut out[HDR..HDR + 2 * pos], shift_before);
    let moved = HDR + 2 * (pos + usize::from(entry.is_some()));
    shift_offsets(&mut out[moved..new_start], shift_after);
    out.extend_from_slice(&buf[start..at]);
    if let Some(e) = entry {
        out.extend_from_slice(e);
    }
    out.extend_from_slice(&buf[after..end]);
    out.resize(PAGE_SIZE, 0);
    seal(&mut out, no, KIND_LEAF, new_n as u16);
    Ok(Some(out))
}

/// Adds `by` to every little-endian `u16` offset of a run of slots.
fn shift_offsets(slots: &mut [u8], by: isize) {
    if by == 0 {
        return;
    }
    for c in slots.chunks_exact_mut(2) {
        let v = (u16::from_le_bytes([c[0], c[1]]) as isize + by) as u16;
        c.copy_from_slice(&v.to_le_bytes());
    }
}

/// [`leaf_splice`] of an insert or replace done in the page itself (a page
/// of the working state that nothing else holds): the entries after the
/// change and the slots move, nothing else is copied. The result is the
/// page [`leaf_splice`] builds, byte for byte (bytes freed by a smaller
/// replacement are zeroed). Returns `false`, with the page unchanged, when
/// the entry does not fit.
pub(super) fn leaf_splice_in_place(
    page: &mut [u8],
    no: PageNo,
    pos: usize,
    replace: bool,
    entry: &[u8],
) -> Result<bool, Error> {
    if page.len() != PAGE_SIZE {
        return Err(corrupt(no, format!("page has {} bytes", page.len())));
    }
    let n = count_of(page);
    let slot = |p: &[u8], i: usize| rd_u16(p, HDR + 2 * i, no);
    let start = HDR + 2 * n;
    let end = if n == 0 {
        start
    } else {
        let last = slot(page, n - 1)?;
        last + leaf_entry_len_at(page, last, no)?
    };
    if pos > n || (replace && pos == n) {
        return Err(corrupt(no, "entry index out of range".into()));
    }
    let at = if pos < n { slot(page, pos)? } else { end };
    let after = if replace {
        at + leaf_entry_len_at(page, at, no)?
    } else {
        at
    };
    if !(start <= at && at <= after && after <= end && end <= PAGE_SIZE) {
        return Err(corrupt(no, "leaf entries are not contiguous".into()));
    }
    let new_n = if replace { n } else { n + 1 };
    let shift_before = 2 * (new_n - n); // 0 or 2
    let new_at = at + shift_before;
    let new_after = new_at + entry.len();
    let new_end = new_after + (end - after);
    if new_end > PAGE_SIZE {
        return Ok(false);
    }
    // The tail first when it moves right (the entry's new bytes cover its
    // old place), last when it moves left.
    if new_after >= after {
        page.copy_within(after..end, new_after);
    }
    if shift_before > 0 {
        page.copy_within(start..at, start + shift_before);
    }
    page[new_at..new_after].copy_from_slice(entry);
    if new_after < after {
        page.copy_within(after..end, new_after);
    }
    // The slots, now that the entries have moved out of the way of a
    // growing slot array: those after `pos` move one place right (an
    // insert), and every offset moves with its entry.
    if !replace {
        page.copy_within(HDR + 2 * pos..HDR + 2 * n, HDR + 2 * pos + 2);
    }
    shift_offsets(&mut page[HDR..HDR + 2 * pos], shift_before as isize);
    shift_offsets(
        &mut page[HDR + 2 * (pos + 1)..HDR + 2 * new_n],
        new_after as isize - after as isize,
    );
    set_u16(page, HDR + 2 * pos, new_at as u16);
    if new_end < end {
        page[new_end..end].fill(0);
    }
    set_u16(page, 14, new_n as u16);
    Ok(true)
}

/// A copy of a raw branch page with the child pointer at `idx` replaced.
pub(super) fn branch_set_child(
    buf: &[u8],
    no: PageNo,
    idx: usize,
    child: PageNo,
) -> Result<Vec<u8>, Error> {
    let at = if idx == 0 {
        HDR
    } else {
        let off = rd_u16(buf, HDR + 8 + 2 * (idx - 1), no)?;
        off + 2 + rd_u16(buf, off, no)?
    };
    if at + 8 > PAGE_SIZE || idx > count_of(buf) {
        return Err(corrupt(no, "child index out of range".into()));
    }
    let mut out = crate::store::spare::copy_of(buf);
    set_u64(&mut out, at, child);
    Ok(out)
}

/// A copy of a raw branch page after its child at `idx` split: that child
/// becomes `child`, and the separator `key` with the new right sibling
/// `right` is inserted after it, without decoding the other entries (the
/// entries are contiguous and in key order after the slot array, as in a
/// leaf). Returns `None` when the result would not fit in a page; the caller
/// then splits the branch. The page is left for [`seal`].
pub(super) fn branch_insert(
    buf: &[u8],
    no: PageNo,
    idx: usize,
    child: PageNo,
    key: &[u8],
    right: PageNo,
) -> Result<Option<Vec<u8>>, Error> {
    let n = count_of(buf);
    if idx > n {
        return Err(corrupt(no, "child index out of range".into()));
    }
    let slot = |i: usize| rd_u16(buf, HDR + 8 + 2 * i, no);
    let entry_len = |off: usize| -> Result<usize, Error> { Ok(2 + rd_u16(buf, off, no)? + 8) };
    let start = HDR + 8 + 2 * n;
    let end = if n == 0 {
        start
    } else {
        let last = slot(n - 1)?;
        last + entry_len(last)?
    };
    let at = if idx < n { slot(idx)? } else { end };
    if !(start <= at && at <= end && end <= PAGE_SIZE) {
        return Err(corrupt(no, "branch entries are not contiguous".into()));
    }
    let elen = 2 + key.len() + 8;
    if end + 2 + elen > PAGE_SIZE {
        return Ok(None);
    }
    let mut out = crate::store::spare::take();
    out.extend_from_slice(&buf[..HDR + 8 + 2 * idx]);
    out.put_u16(0); // the new slot, set below
    out.extend_from_slice(&buf[HDR + 8 + 2 * idx..start]);
    shift_offsets(&mut out[HDR + 8..HDR + 8 + 2 * idx], 2);
    shift_offsets(
        &mut out[HDR + 8 + 2 * (idx + 1)..start + 2],
        (2 + elen) as isize,
    );
    set_u16(&mut out, HDR + 8 + 2 * idx, (at + 2) as u16);
    out.extend_from_slice(&buf[start..at]);
    out.put_bytes16(key);
    out.put_u64(right);
    out.extend_from_slice(&buf[at..end]);
    out.resize(PAGE_SIZE, 0);
    // The child that split: the leftmost pointer, or the one of entry idx - 1.
    let child_at = if idx == 0 {
        HDR
    } else {
        let off = rd_u16(&out, HDR + 8 + 2 * (idx - 1), no)?;
        off + 2 + rd_u16(&out, off, no)?
    };
    if child_at + 8 > PAGE_SIZE {
        return Err(corrupt(no, "child index out of range".into()));
    }
    set_u64(&mut out, child_at, child);
    Ok(Some(out))
}

/// Position of `key` in a raw leaf: `Ok(i)` found, `Err(i)` insertion point.
pub(super) fn leaf_search(
    buf: &[u8],
    key: &[u8],
    no: PageNo,
) -> Result<Result<usize, usize>, Error> {
    let n = count_of(buf);
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        match leaf_key_at(buf, mid, no)?.cmp(key) {
            Ordering::Less => lo = mid + 1,
            Ordering::Greater => hi = mid,
            Ordering::Equal => return Ok(Ok(mid)),
        }
    }
    Ok(Err(lo))
}
