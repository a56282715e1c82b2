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
            let off = rd_u16(buf, HDR + 2 * i, no)?;
            entries.push(leaf_entry_at(buf, off, no)?);
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

pub(super) fn leaf_entry_at(buf: &PageBuf, off: usize, no: PageNo) -> Result<(Bytes, Val), Error> {
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
    let mut out = vec![0u8; PAGE_SIZE];
    let new_start = HDR + 2 * new_n;
    let shift_before = new_start as isize - start as isize;
    let shift_after = shift_before + elen as isize - (after - at) as isize;
    let mut j = 0;
    let mut put_slot = |out: &mut [u8], off: isize| {
        set_u16(out, HDR + 2 * j, off as u16);
        j += 1;
    };
    for i in 0..n {
        if i == pos && entry.is_some() {
            put_slot(&mut out, at as isize + shift_before);
        }
        if i == pos && (replace || entry.is_none()) {
            continue;
        }
        let off = slot(i)? as isize;
        put_slot(
            &mut out,
            off + if i < pos { shift_before } else { shift_after },
        );
    }
    if pos == n && entry.is_some() {
        put_slot(&mut out, at as isize + shift_before);
    }
    let mut w = new_start;
    out[w..w + (at - start)].copy_from_slice(&buf[start..at]);
    w += at - start;
    if let Some(e) = entry {
        out[w..w + e.len()].copy_from_slice(e);
        w += e.len();
    }
    out[w..w + (end - after)].copy_from_slice(&buf[after..end]);
    seal(&mut out, no, KIND_LEAF, new_n as u16);
    Ok(Some(out))
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
    let mut out = buf.to_vec();
    set_u64(&mut out, at, child);
    Ok(out)
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
