//! Scrubbing branch separators: a removed key can live on as a separator
//! in the branches above the leaf it was removed from (a split copies the
//! first key of the new right page up, and a removal leaves separators
//! alone). A purge must not leave such copies behind, so
//! [`scrub_separators`] replaces every separator a predicate calls stale by
//! the shortest key that still separates its two subtrees: a prefix of the
//! smallest key on its right (a live key), never longer than the separator
//! it replaces, so the branch never grows and never splits.

use super::node::{Branch, HDR, leaf_key_at};
use super::{
    KIND_BRANCH, KIND_LEAF, PageRead, PageWrite, corrupt, count_of, cow_target, descend, page_kind,
    propagate, rd_u16, rd_u64,
};
use crate::error::Error;
use crate::store::PageNo;

/// Replaces every separator key of the branches of the tree at `root` for
/// which `stale` holds (see the module documentation). Returns the new root
/// and the number of separators replaced. Reads every branch page and one
/// leaf path per replaced separator; leaves are not rewritten.
pub(crate) async fn scrub_separators<W: PageWrite>(
    w: &mut W,
    mut root: PageNo,
    stale: &(dyn Fn(&[u8]) -> bool + Sync),
) -> Result<(PageNo, u64), Error> {
    if root == 0 {
        return Ok((0, 0));
    }
    // 1. Every stale separator, from a walk of the branch pages only: the
    //    tree is balanced, so the depth of its leftmost leaf is every leaf's.
    let height = leftmost_height(w, root).await?;
    let mut found: Vec<Vec<u8>> = Vec::new();
    let mut todo: Vec<(PageNo, usize)> = vec![(root, 1)];
    while let Some((no, level)) = todo.pop() {
        if level >= height {
            continue;
        }
        let buf = w.read(no, KIND_BRANCH).await?;
        let b = Branch::decode(&buf, no)?;
        found.extend(b.keys.iter().filter(|k| stale(k)).map(|k| k.to_vec()));
        todo.extend(b.children.iter().map(|&c| (c, level + 1)));
    }
    // 2. Replace each one, on the path a lookup of it takes (a separator
    //    equal to `key` is the one left of the child the lookup descends to).
    let mut replaced = 0;
    for key in found {
        let (mut path, _) = descend(w, root, &key).await?;
        let Some(j) = path.iter().rposition(|(bno, buf, idx, _)| {
            *idx > 0 && separator_at(buf, *idx - 1, *bno).is_ok_and(|s| s == key)
        }) else {
            continue;
        };
        let (bno, buf, idx, _) = path[j].clone();
        let mut b = Branch::decode(&buf, bno)?;
        let left_max = edge_key(w, b.children[idx - 1], false).await?;
        let right_min = edge_key(w, b.children[idx], true).await?;
        let sep = shortest_separator(&left_max, &right_min);
        if sep.len() > key.len() || sep <= left_max || sep > right_min {
            return Err(corrupt(bno, "branch separators out of order".into()));
        }
        if sep == key {
            continue;
        }
        b.keys[idx - 1] = super::node::Bytes::Own(sep);
        path.truncate(j);
        let no = cow_target(w, bno);
        w.write(no, b.encode(no));
        root = propagate(w, path, no, &mut None, false).await?;
        replaced += 1;
    }
    Ok((root, replaced))
}

/// The separator key `i` of a raw branch page.
fn separator_at(buf: &[u8], i: usize, no: PageNo) -> Result<&[u8], Error> {
    let off = rd_u16(buf, HDR + 8 + 2 * i, no)?;
    let klen = rd_u16(buf, off, no)?;
    super::slice(buf, off + 2, klen, no)
}

/// Levels from `root` down to its leftmost leaf (1: the root is a leaf).
async fn leftmost_height<R: PageRead>(r: &R, root: PageNo) -> Result<usize, Error> {
    let mut no = root;
    for level in 1..=64 {
        let buf = r.read(no, 0).await?;
        match page_kind(&buf) {
            KIND_LEAF => return Ok(level),
            KIND_BRANCH => no = rd_u64(&buf, HDR, no)?,
            k => return Err(corrupt(no, format!("unexpected page kind {k} in tree"))),
        }
    }
    Err(corrupt(root, "tree deeper than 64 levels".into()))
}

/// The smallest (`first`) or largest key of the subtree at `no`.
async fn edge_key<R: PageRead>(r: &R, mut no: PageNo, first: bool) -> Result<Vec<u8>, Error> {
    for _ in 0..64 {
        let buf = r.read(no, 0).await?;
        let n = count_of(&buf);
        match page_kind(&buf) {
            KIND_LEAF if n > 0 => {
                let i = if first { 0 } else { n - 1 };
                return Ok(leaf_key_at(&buf, i, no)?.to_vec());
            }
            KIND_BRANCH => {
                let b = Branch::decode(&buf, no)?;
                no = if first {
                    b.children[0]
                } else {
                    b.children[b.children.len() - 1]
                };
            }
            k => {
                return Err(corrupt(
                    no,
                    format!("unexpected page kind {k} ({n} entries)"),
                ));
            }
        }
    }
    Err(corrupt(no, "tree deeper than 64 levels".into()))
}

/// The shortest prefix of `hi` that is greater than `lo` (`lo < hi`).
fn shortest_separator(lo: &[u8], hi: &[u8]) -> Vec<u8> {
    let common = lo.iter().zip(hi).take_while(|(a, b)| a == b).count();
    hi[..(common + 1).min(hi.len())].to_vec()
}

#[cfg(test)]
mod tests {
    use super::shortest_separator;

    #[test]
    fn shortest_separator_is_a_prefix_of_hi_above_lo() {
        for (lo, hi, want) in [
            (&b"apple"[..], &b"apricot"[..], &b"apr"[..]),
            (b"a", b"ab", b"ab"),
            (b"abc", b"b", b"b"),
            (b"", b"x", b"x"),
        ] {
            let s = shortest_separator(lo, hi);
            assert_eq!(s, want);
            assert!(lo < &s[..] && &s[..] <= hi);
        }
    }
}
