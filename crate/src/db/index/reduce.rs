//! The reduce tree of one key: how changing one entry re-reduces only
//! O(log n) values, where n is the number of entries under the key.
//!
//! The entries of a key are ordered by the hash of their document
//! ([`crate::index::doc_hash`]). A **node** covers the entries whose hash
//! starts with its path: the root (depth 0) covers them all, a node at
//! depth `d` those whose top `6·d` bits equal its path. A node holds the
//! number of entries it covers and their reduced result:
//! - a **leaf** holds at most [`LEAF_MAX`] entries; its result is the
//!   reduce of their values (`rereduce = false`);
//! - a **branch** has up to 64 children (the next 6 bits of the hash); its
//!   result is the reduce of their results (`rereduce = true`).
//!
//! A leaf that grows past [`LEAF_MAX`] becomes a branch; a branch whose
//! count falls to [`COLLAPSE_AT`] becomes a leaf again (the gap keeps a key
//! near the limit from splitting and merging at every change). Changing
//! the entries of one document re-reduces its leaf (at most 64 values) and
//! each branch above it (at most 64 results each), and the depth is about
//! `log64(n / 64)`: 1 level up to ~4,000 entries, 2 up to ~260,000.
//! This is RavenDB's multi-step reduce, keyed by hash instead of by page.
//!
//! Keys in `index_reduce`: the root `id 00 key`; an inner node
//! `id 01 key depth path` (depth u8, path u64 big-endian, its low bits 0).
//! Value: kind (u8: 0 leaf, 1 branch), count (u64), result (JSON).

use serde_json::Value;

use crate::codec::{Put, get_u64};
use crate::error::{Error, clip};
use crate::index::IndexFunctions;
use crate::platform::BoxFuture;
use crate::store::PageStore;

use super::super::alloc::WCtx;
use super::super::meta::Tree;
use super::step::split_value;
use super::tx;

/// Most entries in a leaf.
pub(crate) const LEAF_MAX: u64 = 64;
/// A branch whose count falls to this becomes a leaf.
pub(crate) const COLLAPSE_AT: u64 = 32;
/// Bits of the hash per level.
const BITS: u32 = 6;
/// Deepest node (60 bits of hash); a leaf there holds every entry it covers.
const MAX_DEPTH: u8 = 10;

const LEAF: u8 = 0;
const BRANCH: u8 = 1;
/// A root a purge emptied of its result (it was computed from purged
/// documents); the next step rebuilds it from the entries left.
pub(crate) const DIRTY: u8 = 2;

/// The prefix of every root of index `id` (followed by the encoded key).
pub(crate) fn root_prefix(id: u32) -> Vec<u8> {
    let mut k = id.to_be_bytes().to_vec();
    k.push(0);
    k
}

/// Whether a node's value is a [`DIRTY`] root.
pub(crate) fn is_dirty(v: &[u8]) -> bool {
    v.first() == Some(&DIRTY)
}

/// A [`DIRTY`] root's value.
pub(crate) fn dirty_node() -> Vec<u8> {
    encode_node(DIRTY, 0, b"")
}

/// The prefix of every inner node of key `kenc` of index `id`.
pub(crate) fn inner_prefix(id: u32, kenc: &[u8]) -> Vec<u8> {
    let mut k = id.to_be_bytes().to_vec();
    k.push(1);
    k.extend_from_slice(kenc);
    k
}

/// The reduced result stored in a node's value.
pub(crate) fn node_result(v: &[u8]) -> Result<&[u8], Error> {
    if v.len() < 9 {
        return Err(bad_node("shorter than its header"));
    }
    Ok(&v[9..])
}

fn bad_node(why: &str) -> Error {
    Error::CorruptRecord {
        record: "index reduce node".into(),
        reason: why.into(),
    }
}

/// The hashes a node at `depth` with `path` covers: `[path, end)`, `end`
/// `None` for the whole range.
fn span(depth: u8, path: u64) -> (u64, Option<u64>) {
    if depth == 0 {
        return (0, None);
    }
    let width = 1u64 << (64 - BITS * u32::from(depth));
    (path, path.checked_add(width))
}

/// The path of the child at `depth + 1` that covers hash `h`.
fn child_path(h: u64, depth: u8) -> u64 {
    let keep = BITS * (u32::from(depth) + 1);
    h & !(u64::MAX >> keep)
}

/// Whether hash `h` is in `[lo, hi)`.
fn within(h: u64, (lo, hi): (u64, Option<u64>)) -> bool {
    h >= lo && hi.is_none_or(|hi| h < hi)
}

/// A node's entry count and reduced result (JSON).
type Counted = (u64, Vec<u8>);

/// A node as read.
struct Node {
    kind: u8,
    count: u64,
    result: Vec<u8>,
}

fn encode_node(kind: u8, count: u64, result: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + result.len());
    v.put_u8(kind);
    v.put_u64(count);
    v.extend_from_slice(result);
    v
}

fn decode_node(v: &[u8]) -> Result<Node, Error> {
    let result = node_result(v)?.to_vec();
    let kind = v[0];
    if kind > DIRTY {
        return Err(bad_node("unknown kind"));
    }
    let count = get_u64(v, 1).ok_or_else(|| bad_node("no count"))?;
    Ok(Node {
        kind,
        count,
        result,
    })
}

/// The reduce tree of one key of one index, in a transaction.
pub(crate) struct Reducer<'a> {
    pub(crate) name: &'a str,
    pub(crate) id: u32,
    pub(crate) kenc: &'a [u8],
    pub(crate) key: &'a Value,
    pub(crate) fns: &'a dyn IndexFunctions,
}

impl Reducer<'_> {
    fn node_key(&self, depth: u8, path: u64) -> Vec<u8> {
        let mut k = self.id.to_be_bytes().to_vec();
        if depth == 0 {
            k.push(0);
            k.extend_from_slice(self.kenc);
        } else {
            k.push(1);
            k.extend_from_slice(self.kenc);
            k.push(depth);
            k.extend_from_slice(&path.to_be_bytes());
        }
        k
    }

    /// The prefix of this key's entries in `index_entries`.
    fn entries_prefix(&self) -> Vec<u8> {
        let mut k = self.id.to_be_bytes().to_vec();
        k.extend_from_slice(self.kenc);
        k
    }

    fn reduce(&self, values: &[Value], rereduce: bool) -> Result<Vec<u8>, Error> {
        let fail = |message: String| Error::Index {
            index: clip(self.name),
            doc: None,
            message: format!("key {}: {message}", clip(&self.key.to_string())),
        };
        let r = self
            .fns
            .reduce(self.key, values, rereduce)
            .map_err(|e| fail(format!("the reduce function failed: {e}")))?;
        let json = serde_json::to_vec(&r).map_err(|e| fail(e.to_string()))?;
        if json.len() > super::MAX_VALUE_BYTES {
            return Err(fail(format!(
                "a reduced result of {} bytes; the limit is {}",
                json.len(),
                super::MAX_VALUE_BYTES
            )));
        }
        Ok(json)
    }

    /// Updates the tree after the entries of documents with hashes `touched`
    /// (sorted, distinct) changed. Returns the key's result before and after (`None`: no
    /// entries).
    pub(crate) async fn update<S: PageStore>(
        &self,
        ctx: &mut WCtx<'_, S>,
        touched: &[u64],
    ) -> Result<(Option<Vec<u8>>, Option<Vec<u8>>), Error> {
        let before = tx::get(ctx, Tree::IndexReduce, &self.node_key(0, 0))
            .await?
            .filter(|v| !is_dirty(v))
            .map(|v| node_result(&v).map(<[u8]>::to_vec))
            .transpose()?;
        let after = self.update_node(ctx, 0, 0, touched).await?;
        Ok((before, after.map(|(_, r)| r)))
    }

    /// Updates the node at `depth`/`path` (and the children on the way to
    /// `hashes`); returns its count and result, `None` if it covers nothing.
    fn update_node<'f, S: PageStore>(
        &'f self,
        ctx: &'f mut WCtx<'_, S>,
        depth: u8,
        path: u64,
        hashes: &'f [u64],
    ) -> BoxFuture<'f, Result<Option<Counted>, Error>> {
        Box::pin(async move {
            let nk = self.node_key(depth, path);
            let held = tx::get(ctx, Tree::IndexReduce, &nk).await?;
            let held = held.map(|v| decode_node(&v)).transpose()?;
            if held.as_ref().is_some_and(|n| n.kind == BRANCH) {
                let mut i = 0;
                while i < hashes.len() {
                    let cp = child_path(hashes[i], depth);
                    let cspan = span(depth + 1, cp);
                    let mut j = i;
                    while j < hashes.len() && within(hashes[j], cspan) {
                        j += 1;
                    }
                    self.update_node(ctx, depth + 1, cp, &hashes[i..j]).await?;
                    i = j;
                }
                let children = self.children(ctx, depth, path).await?;
                let count: u64 = children.iter().map(|c| c.0).sum();
                if count > COLLAPSE_AT {
                    let values = parse_all(children.iter().map(|c| &c.1[..]))?;
                    let result = self.reduce(&values, true)?;
                    self.put_node(ctx, &nk, Some(encode_node(BRANCH, count, &result)))
                        .await?;
                    return Ok(Some((count, result)));
                }
                self.remove_descendants(ctx, depth, path).await?;
            }
            // A leaf (or nothing yet): from the entries.
            let entries = self.entries(ctx, depth, path).await?;
            if entries.is_empty() {
                if held.is_some() {
                    self.put_node(ctx, &nk, None).await?;
                }
                return Ok(None);
            }
            self.build(ctx, depth, path, entries).await.map(Some)
        })
    }

    /// Writes the node at `depth`/`path` (and any children it needs) from
    /// its entries (hash, value).
    fn build<'f, S: PageStore>(
        &'f self,
        ctx: &'f mut WCtx<'_, S>,
        depth: u8,
        path: u64,
        entries: Vec<(u64, Value)>,
    ) -> BoxFuture<'f, Result<Counted, Error>> {
        Box::pin(async move {
            let nk = self.node_key(depth, path);
            let count = entries.len() as u64;
            if count <= LEAF_MAX || depth >= MAX_DEPTH {
                let values: Vec<Value> = entries.into_iter().map(|(_, v)| v).collect();
                let result = self.reduce(&values, false)?;
                self.put_node(ctx, &nk, Some(encode_node(LEAF, count, &result)))
                    .await?;
                return Ok((count, result));
            }
            // Split by the next 6 bits (entries are in hash order).
            let mut results = Vec::new();
            let mut rest = entries;
            while !rest.is_empty() {
                let cp = child_path(rest[0].0, depth);
                let cspan = span(depth + 1, cp);
                let n = rest.iter().take_while(|(h, _)| within(*h, cspan)).count();
                let tail = rest.split_off(n);
                let (_, r) = self.build(ctx, depth + 1, cp, rest).await?;
                results.push(serde_json::from_slice(&r).map_err(|_| bad_node("result"))?);
                rest = tail;
            }
            let result = self.reduce(&results, true)?;
            self.put_node(ctx, &nk, Some(encode_node(BRANCH, count, &result)))
                .await?;
            Ok((count, result))
        })
    }

    async fn put_node<S: PageStore>(
        &self,
        ctx: &mut WCtx<'_, S>,
        k: &[u8],
        v: Option<Vec<u8>>,
    ) -> Result<(), Error> {
        tx::set(ctx, Tree::IndexReduce, k, v.as_deref()).await
    }

    /// The entries (hash, value) a node covers, in hash order.
    async fn entries<S: PageStore>(
        &self,
        ctx: &WCtx<'_, S>,
        depth: u8,
        path: u64,
    ) -> Result<Vec<(u64, Value)>, Error> {
        let prefix = self.entries_prefix();
        let sp = span(depth, path);
        let mut start = prefix.clone();
        start.extend_from_slice(&sp.0.to_be_bytes());
        let mut raw = Vec::new();
        let mut bad = false;
        tx::scan(ctx, Tree::IndexEntries, &start, &mut |k, v| {
            if !k.starts_with(&prefix) {
                return false;
            }
            let Some(h) = k
                .get(prefix.len()..prefix.len() + 8)
                .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
            else {
                bad = true;
                return false;
            };
            if !within(h, sp) {
                return false;
            }
            raw.push((h, v));
            true
        })
        .await?;
        if bad {
            return Err(bad_node("an entry key without its hash"));
        }
        raw.into_iter()
            .map(|(h, v)| {
                let (_, json) = split_value(&v).ok_or_else(|| bad_node("an entry value"))?;
                let value = serde_json::from_slice(json).map_err(|_| bad_node("an entry value"))?;
                Ok((h, value))
            })
            .collect()
    }

    /// The nodes at depth `d` whose paths lie in `[lo, hi)`: (key, value).
    async fn nodes_at<S: PageStore>(
        &self,
        ctx: &WCtx<'_, S>,
        d: u8,
        (lo, hi): (u64, Option<u64>),
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, Error> {
        let start = self.node_key(d, lo);
        let head = &start[..start.len() - 8];
        let mut out = Vec::new();
        tx::scan(ctx, Tree::IndexReduce, &start, &mut |k, v| {
            if !k.starts_with(head) || k.len() != head.len() + 8 {
                return false;
            }
            let p = u64::from_be_bytes(k[head.len()..].try_into().expect("8 bytes"));
            if hi.is_some_and(|hi| p >= hi) {
                return false;
            }
            out.push((k.to_vec(), v));
            true
        })
        .await?;
        Ok(out)
    }

    /// The children of a branch: (count, result) each.
    async fn children<S: PageStore>(
        &self,
        ctx: &WCtx<'_, S>,
        depth: u8,
        path: u64,
    ) -> Result<Vec<(u64, Vec<u8>)>, Error> {
        self.nodes_at(ctx, depth + 1, span(depth, path))
            .await?
            .iter()
            .map(|(_, v)| decode_node(v).map(|n| (n.count, n.result)))
            .collect()
    }

    /// Removes every node below `depth`/`path`.
    async fn remove_descendants<S: PageStore>(
        &self,
        ctx: &mut WCtx<'_, S>,
        depth: u8,
        path: u64,
    ) -> Result<(), Error> {
        for d in depth + 1..=MAX_DEPTH {
            let nodes = self.nodes_at(ctx, d, span(depth, path)).await?;
            if nodes.is_empty() {
                return Ok(());
            }
            for (k, _) in nodes {
                self.put_node(ctx, &k, None).await?;
            }
        }
        Ok(())
    }
}

fn parse_all<'a>(items: impl Iterator<Item = &'a [u8]>) -> Result<Vec<Value>, Error> {
    items
        .map(|b| serde_json::from_slice(b).map_err(|_| bad_node("a child's result")))
        .collect()
}
