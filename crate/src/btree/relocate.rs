//! Relocating a tree's pages below a page number, so the file behind it can
//! shrink (the database's vacuum, `crate::db::vacuum`).
//!
//! [`relocate`] moves every page of a tree numbered at or above a bound to a
//! page the writer allocates (the caller keeps its allocator handing out the
//! lowest free pages): a tree page is copied as it is under its new number,
//! and the branches above it are rewritten to point at the copy, by the same
//! copy-on-write path every write takes (ancestors that are not yet the
//! working generation's are copied too, to newly allocated pages); a value's
//! overflow chain with a page at or above the bound is written again whole.
//! Nothing a reader can see changes: the same keys and values, in the same
//! tree shape.

use std::sync::Arc;

use super::node::{Branch, Leaf, Val};
use super::{
    KIND_BRANCH, KIND_LEAF, PageRead, PageWrite, chain_pages, corrupt, descend, get, insert,
    page_kind, propagate,
};
use crate::codec::set_u64;
use crate::error::Error;
use crate::store::PageNo;

/// What [`relocate`] still has to do once the writer runs short of low pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Relocated {
    /// Pages copied below the bound (tree pages and overflow pages).
    pub(crate) moved: u64,
    /// Whether pages at or above the bound are left (the writer had too few
    /// free pages below it: flush, and call again).
    pub(crate) left: bool,
}

/// One page to move: the key a lookup takes to reach it, and its depth
/// (0: the root), or `None` for the overflow chain of the value at the key.
pub(crate) type Target = (Vec<u8>, Option<usize>);

/// Moves the pages of the tree at `root` that `targets` names (see
/// [`targets`]; found on an older state, they are looked up again: a page
/// no longer at or above `bound` is left alone), at most `budget` of them.
/// Stops early, with [`Relocated::left`], when the budget is spent or the
/// writer has fewer free pages below `bound` than the next move needs
/// ([`PageWrite::has_spare`]). Returns the new root.
pub(crate) async fn relocate<W: PageWrite>(
    w: &mut W,
    mut root: PageNo,
    bound: PageNo,
    targets: Vec<Target>,
    budget: u64,
) -> Result<(PageNo, Relocated), Error> {
    let mut done = Relocated::default();
    if root == 0 {
        return Ok((0, done));
    }
    for (key, depth) in targets {
        if done.moved >= budget {
            done.left = true;
            break;
        }
        match depth {
            None => {
                let Some(value) = get(w, root, &key).await? else {
                    continue;
                };
                let pages = value.len().div_ceil(super::node::OVERFLOW_CAP);
                // The chain, the leaf, and its branches (rarely over 6).
                if !w.has_spare(bound, pages + 8) {
                    done.left = true;
                    break;
                }
                root = insert(w, root, &key, &value).await?.0;
                done.moved += pages as u64;
            }
            Some(depth) => {
                let (mut path, leaf) = descend(w, root, &key).await?;
                let no = if depth < path.len() {
                    path[depth].0
                } else {
                    leaf
                };
                // Already moved, as an ancestor of a page moved before it.
                if no < bound || w.is_dirty(no) {
                    continue;
                }
                if !w.has_spare(bound, path.len() + 1) {
                    done.left = true;
                    break;
                }
                let buf = w.read(no, 0).await?;
                let mut copy = buf.to_vec();
                let to = w.alloc();
                set_u64(&mut copy, 4, to);
                w.write(to, Arc::new(copy));
                w.free(no);
                path.truncate(depth);
                root = propagate(w, path, to, &mut None, false).await?;
                done.moved += 1;
            }
        }
    }
    Ok((root, done))
}

/// The pages of the tree at `root` numbered `bound` or higher, deepest
/// first (moving a page rewrites its ancestors, so most of them need no
/// move of their own), overflow chains before the tree pages. Reads every
/// page of the tree: a vacuum calls it on a snapshot, outside the writer
/// lock.
pub(crate) async fn targets<R: PageRead>(
    r: &R,
    root: PageNo,
    bound: PageNo,
) -> Result<Vec<Target>, Error> {
    if root == 0 {
        return Ok(Vec::new());
    }
    let mut chains = Vec::new();
    let mut pages: Vec<(usize, Vec<u8>)> = Vec::new();
    // (page, depth, the smallest key of its subtree)
    let mut todo: Vec<(PageNo, usize, Vec<u8>)> = vec![(root, 0, Vec::new())];
    while let Some((no, depth, lo)) = todo.pop() {
        if depth > 64 {
            return Err(corrupt(root, "tree deeper than 64 levels".into()));
        }
        if no >= bound {
            pages.push((depth, lo.clone()));
        }
        let buf = r.read(no, 0).await?;
        match page_kind(&buf) {
            KIND_LEAF => {
                let leaf = Leaf::decode(&buf, no)?;
                for (k, v) in &leaf.entries {
                    if let Val::Overflow { first, len } = v
                        && chain_pages(r, *first, *len)
                            .await?
                            .iter()
                            .any(|&p| p >= bound)
                    {
                        chains.push((k.to_vec(), None));
                    }
                }
            }
            KIND_BRANCH => {
                let b = Branch::decode(&buf, no)?;
                for (i, &child) in b.children.iter().enumerate() {
                    let clo = if i == 0 {
                        lo.clone()
                    } else {
                        b.keys[i - 1].to_vec()
                    };
                    todo.push((child, depth + 1, clo));
                }
            }
            k => return Err(corrupt(no, format!("unexpected page kind {k} in tree"))),
        }
    }
    pages.sort_by_key(|p| std::cmp::Reverse(p.0));
    chains.extend(pages.into_iter().map(|(d, k)| (k, Some(d))));
    Ok(chains)
}
