//! The tree operations of the index code, boxed: each B+tree operation's
//! future is compiled once here instead of inlined into every caller's
//! state machine (the wasm build is size-budgeted; measured in
//! docs/benchmarks.md, "Indexes").

use crate::btree;
use crate::error::Error;
use crate::platform::{BoxFuture, MaybeSend};
use crate::store::PageStore;

use super::super::alloc::WCtx;
use super::super::meta::Tree;

/// The value of `key` in `tree` of the working state.
pub(crate) fn get<'a, S: PageStore>(
    ctx: &'a WCtx<'_, S>,
    tree: Tree,
    key: &'a [u8],
) -> BoxFuture<'a, Result<Option<Vec<u8>>, Error>> {
    Box::pin(async move { btree::get(ctx, ctx.w.meta.root(tree), key).await })
}

/// Sets (`Some`) or removes (`None`) `key` in `tree` of the working state.
pub(crate) fn set<'a, S: PageStore>(
    ctx: &'a mut WCtx<'_, S>,
    tree: Tree,
    key: &'a [u8],
    value: Option<&'a [u8]>,
) -> BoxFuture<'a, Result<(), Error>> {
    Box::pin(async move {
        let root = ctx.w.meta.root(tree);
        let root = match value {
            Some(v) => btree::insert(ctx, root, key, v).await?.0,
            None => btree::remove(ctx, root, key).await?.0,
        };
        ctx.w.meta.set_root(tree, root);
        Ok(())
    })
}

/// A visitor of [`scan`]: `Send` on native targets.
pub(crate) trait Visit: FnMut(&[u8], Vec<u8>) -> bool + MaybeSend {}
impl<F: FnMut(&[u8], Vec<u8>) -> bool + MaybeSend> Visit for F {}

/// Calls `f(key, value)` on the entries of `tree` from `start` until it
/// returns `false`.
pub(crate) fn scan<'a, S: PageStore>(
    ctx: &'a WCtx<'_, S>,
    tree: Tree,
    start: &'a [u8],
    f: &'a mut dyn Visit,
) -> BoxFuture<'a, Result<(), Error>> {
    Box::pin(async move { btree::scan(ctx, ctx.w.meta.root(tree), start, f).await })
}

/// The keys of `tree` that start with `prefix`, from `start`, at most `max`.
pub(crate) async fn keys_under<S: PageStore>(
    ctx: &WCtx<'_, S>,
    tree: Tree,
    start: &[u8],
    prefix: &[u8],
    max: usize,
) -> Result<Vec<Vec<u8>>, Error> {
    let mut keys = Vec::new();
    scan(ctx, tree, start, &mut |k, _| {
        if !k.starts_with(prefix) || keys.len() >= max {
            return false;
        }
        keys.push(k.to_vec());
        true
    })
    .await?;
    Ok(keys)
}
