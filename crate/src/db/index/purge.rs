//! What a physical purge (`db/purge.rs`) removes from the indexes, in its
//! own transaction: every entry the purged documents emitted and their
//! entry lists; for reducing indexes, every node of each key they touched
//! (a result computed from a purged document is gone, not kept until the
//! next step): a key with entries left keeps a [`reduce::DIRTY`] root and
//! its index is marked to rebuild it at its next step; and the output
//! documents of those keys, which the purge removes with its documents
//! (outside its report: they are this peer's own derived documents). Then
//! the branch separators that still copy a removed key are replaced.

use crate::btree;
use crate::doc;
use crate::error::Error;
use crate::index::{key, output_id};
use crate::store::PageStore;

use super::super::alloc::WCtx;
use super::super::meta::Tree;
use super::{DefRecord, reduce, tx, write_def};

/// What [`remove_docs`] did, for the purge's separator scrub.
#[derive(Default)]
pub(crate) struct IndexPurge {
    /// Id keys of output documents to remove with the purge.
    pub(crate) outputs: Vec<Vec<u8>>,
    /// Those of [`IndexPurge::outputs`] whose key has no entry left: the
    /// next step will not write them again (copies a hub shared with its
    /// edges are erased by the purge's order, `crate::sync::forget`).
    pub(crate) emptied: Vec<Vec<u8>>,
    /// Prefixes (`id 00 key`, `id 01 key`) of the reduce nodes removed.
    heads: Vec<Vec<u8>>,
    /// Index ids that reduce (their entry keys carry a hash).
    reducing: Vec<u32>,
    /// Whether any index exists.
    any: bool,
}

async fn records<S: PageStore>(ctx: &WCtx<'_, S>) -> Result<Vec<(String, DefRecord)>, Error> {
    let mut raw = Vec::new();
    tx::scan(ctx, Tree::IndexDefs, b"", &mut |k, v| {
        if k.first() != Some(&0) {
            raw.push((String::from_utf8_lossy(k).into_owned(), v));
        }
        true
    })
    .await?;
    raw.into_iter()
        .map(|(n, v)| DefRecord::decode(&n, &v).map(|r| (n, r)))
        .collect()
}

/// Removes what the documents `keys` put in every index (see the module
/// doc).
pub(crate) async fn remove_docs<S: PageStore>(
    ctx: &mut WCtx<'_, S>,
    keys: &[&[u8]],
) -> Result<IndexPurge, Error> {
    let mut out = IndexPurge::default();
    for (name, mut rec) in records(ctx).await? {
        out.any = true;
        let mut changed = false;
        for building in [false, true] {
            let slot = if building {
                match rec.building.as_mut() {
                    Some(s) => s,
                    None => continue,
                }
            } else {
                &mut rec.active
            };
            if slot.reduce {
                out.reducing.push(slot.id);
            }
            let prefix = slot.id.to_be_bytes();
            let mut touched: Vec<Vec<u8>> = Vec::new();
            for k in keys {
                let mut dk = prefix.to_vec();
                dk.extend_from_slice(k);
                let Some(list) = tx::get(ctx, Tree::IndexDocs, &dk).await? else {
                    continue;
                };
                let suffixes = super::step::decode_list(&list).unwrap_or_default();
                for s in &suffixes {
                    let mut ek = prefix.to_vec();
                    ek.extend_from_slice(s);
                    tx::set(ctx, Tree::IndexEntries, &ek, None).await?;
                    if slot.reduce
                        && let Ok((_, rest)) = key::decode_prefix(s)
                    {
                        touched.push(s[..s.len() - rest.len()].to_vec());
                    }
                }
                tx::set(ctx, Tree::IndexDocs, &dk, None).await?;
            }
            touched.sort_unstable();
            touched.dedup();
            for kenc in touched {
                let root_key = [reduce::root_prefix(slot.id), kenc.clone()].concat();
                let inner = reduce::inner_prefix(slot.id, &kenc);
                let mut nodes = vec![root_key.clone()];
                nodes.extend(
                    tx::keys_under(ctx, Tree::IndexReduce, &inner, &inner, usize::MAX).await?,
                );
                for n in &nodes {
                    tx::set(ctx, Tree::IndexReduce, n, None).await?;
                }
                let entry_head = [prefix.to_vec(), kenc.clone()].concat();
                let left = !tx::keys_under(ctx, Tree::IndexEntries, &entry_head, &entry_head, 1)
                    .await?
                    .is_empty();
                if left {
                    tx::set(
                        ctx,
                        Tree::IndexReduce,
                        &root_key,
                        Some(&reduce::dirty_node()),
                    )
                    .await?;
                    slot.dirty = true;
                    changed = true;
                }
                if let (Some(o), Ok(kv)) = (&slot.output, key::decode(&kenc)) {
                    let id = doc::id_key(&output_id(o, &kv));
                    if !left {
                        out.emptied.push(id.clone());
                    }
                    out.outputs.push(id);
                }
                out.heads.push(root_key);
                out.heads.push(inner);
            }
        }
        if changed {
            write_def(ctx, &name, Some(&rec)).await?;
        }
    }
    Ok(out)
}

/// Replaces the separators of the index trees that copy a key a purge
/// removed: entries and entry lists of documents `stale_doc` names, and
/// the reduce nodes [`remove_docs`] removed.
pub(crate) async fn scrub<S: PageStore>(
    ctx: &mut WCtx<'_, S>,
    p: &IndexPurge,
    stale_doc: &(dyn Fn(&[u8]) -> bool + Sync),
) -> Result<(), Error> {
    if !p.any {
        return Ok(());
    }
    let reducing = &p.reducing;
    let entry_doc = |k: &[u8]| -> bool {
        let Some((id, rest)) = k.split_first_chunk::<4>() else {
            return false;
        };
        let Ok((_, mut rest)) = key::decode_prefix(rest) else {
            return false;
        };
        if reducing.contains(&u32::from_be_bytes(*id)) {
            let Some(r) = rest.get(8..) else { return false };
            rest = r;
        }
        key::take_escaped(rest).is_ok_and(|(dk, _)| stale_doc(&dk))
    };
    type Stale<'a> = Box<dyn Fn(&[u8]) -> bool + Send + Sync + 'a>;
    let trees: [(Tree, Stale<'_>); 3] = [
        (Tree::IndexEntries, Box::new(entry_doc)),
        (
            Tree::IndexDocs,
            Box::new(|k: &[u8]| k.get(4..).is_some_and(stale_doc)),
        ),
        (
            Tree::IndexReduce,
            Box::new(|k: &[u8]| p.heads.iter().any(|h| k.starts_with(h))),
        ),
    ];
    for (tree, stale) in &trees {
        let root = btree::scrub_separators(ctx, ctx.w.meta.root(*tree), &**stale)
            .await?
            .0;
        ctx.w.meta.set_root(*tree, root);
    }
    Ok(())
}
