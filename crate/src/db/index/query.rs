//! Queries of an index: the rows of a key range, in key order (or
//! descending), a page at a time, and counts.

use serde_json::Value;

use crate::btree;
use crate::error::{Error, InputError, clip};
use crate::index::{Cursor, IndexQuery, IndexRow, KeyRange, QueryResult, key};
use crate::store::PageStore;

use super::super::Snapshot;
use super::super::meta::Tree;
use super::reduce::{is_dirty, node_result, root_prefix};
use super::step::split_value;

/// A key range as bytes of encoded keys.
struct Bounds {
    /// Bytes every key in range starts with (a prefix query), else empty.
    prefix: Vec<u8>,
    from: Option<(Vec<u8>, bool)>,
    to: Option<(Vec<u8>, bool)>,
}

impl Bounds {
    fn new(r: &KeyRange) -> Result<Bounds, Error> {
        let enc = |v: &Value| -> Result<Vec<u8>, Error> {
            key::encode(v)
                .map_err(|e| InputError::InvalidArgument(format!("query key: {e}")).into())
        };
        Ok(match r {
            KeyRange::All => Bounds {
                prefix: Vec::new(),
                from: None,
                to: None,
            },
            KeyRange::Eq(v) => {
                let k = enc(v)?;
                Bounds {
                    prefix: Vec::new(),
                    from: Some((k.clone(), true)),
                    to: Some((k, true)),
                }
            }
            KeyRange::Prefix(v) => Bounds {
                prefix: key::prefix_bytes(v)
                    .map_err(|e| InputError::InvalidArgument(format!("query prefix: {e}")))?,
                from: None,
                to: None,
            },
            KeyRange::Range { from, to } => Bounds {
                prefix: Vec::new(),
                from: from
                    .as_ref()
                    .map(|(v, inc)| enc(v).map(|k| (k, *inc)))
                    .transpose()?,
                to: to
                    .as_ref()
                    .map(|(v, inc)| enc(v).map(|k| (k, *inc)))
                    .transpose()?,
            },
        })
    }

    /// Where a forward scan starts (after the index's own prefix).
    fn start(&self) -> Vec<u8> {
        match &self.from {
            Some((k, _)) if k.as_slice() > self.prefix.as_slice() => k.clone(),
            _ => self.prefix.clone(),
        }
    }

    /// Where a descending scan starts: the smallest bytes above every key
    /// of the range (after the index's own prefix; `None`: no bound).
    fn end(&self) -> Option<Vec<u8>> {
        match &self.to {
            Some((k, true)) => successor(k),
            Some((k, false)) => Some(k.clone()),
            None if !self.prefix.is_empty() => successor(&self.prefix),
            None => None,
        }
    }

    /// Whether `k` is below the range, in it, or above it (the scan stops).
    fn place(&self, k: &[u8]) -> std::cmp::Ordering {
        use std::cmp::Ordering::*;
        if !self.prefix.is_empty() && !k.starts_with(&self.prefix) {
            return if k < self.prefix.as_slice() {
                Less
            } else {
                Greater
            };
        }
        if let Some((f, inc)) = &self.from
            && (k < f.as_slice() || (!inc && k == f.as_slice()))
        {
            return Less;
        }
        if let Some((t, inc)) = &self.to
            && (k > t.as_slice() || (!inc && k == t.as_slice()))
        {
            return Greater;
        }
        Equal
    }
}

/// The smallest byte string above every string that starts with `b`
/// (`None`: `b` is empty or all `0xFF`, nothing is above).
fn successor(b: &[u8]) -> Option<Vec<u8>> {
    let mut v = b.to_vec();
    while let Some(last) = v.pop() {
        if last < 0xFF {
            v.push(last + 1);
            return Some(v);
        }
    }
    None
}

/// Which way a scan goes: up from the first key at or above `start`, or
/// down from the last key below `end` (`None`: the last key of the tree).
enum Walk {
    Up(Vec<u8>),
    Down(Option<Vec<u8>>),
}

/// Where a query reads: the version queries use, the key bounds, the tree,
/// the index's prefix in it, and the first key to read.
struct Plan {
    slot: super::Slot,
    bounds: Bounds,
    tree: Tree,
    head: Vec<u8>,
    start: Vec<u8>,
}

fn bad(name: &str, why: impl std::fmt::Display) -> Error {
    Error::CorruptRecord {
        record: format!("an entry of index {:?}", clip(name)),
        reason: why.to_string(),
    }
}

impl<S: PageStore> Snapshot<S> {
    /// The rows of index `name` (the version queries use) that `q` asks for:
    /// entries of a map index (key, value, document id) or results of a
    /// reducing index (one row per key), with how fresh the index is.
    ///
    /// A query reads only the rows it returns (and one more, to know
    /// whether there is a next page), in either order.
    pub async fn query(&self, name: &str, q: &IndexQuery) -> Result<QueryResult, Error> {
        let Plan {
            slot,
            bounds,
            tree,
            head,
            start,
        } = self.plan(name, &q.range).await?;
        let slot = &slot;
        let after = q.after.as_ref().map(|c| &c.0);
        if after.is_some_and(|c| !c.starts_with(&head)) {
            return Err(InputError::InvalidArgument("a cursor of another index".into()).into());
        }
        let walk = if q.descending {
            let mut end = match bounds.end() {
                Some(e) => Some([head.as_slice(), &e].concat()),
                None => successor(&head),
            };
            // Below the cursor: the rows of the pages before are above it.
            if let Some(c) = after
                && end.as_ref().is_none_or(|e| c < e)
            {
                end = Some(c.clone());
            }
            Walk::Down(end)
        } else {
            match after {
                Some(c) if c >= &start => Walk::Up([c.as_slice(), &[0]].concat()),
                _ => Walk::Up(start),
            }
        };
        let want = if q.limit == 0 { usize::MAX } else { q.limit };
        let mut raw: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        self.scan_range(name, tree, &head, &bounds, walk, |k, v| {
            if slot.reduce && is_dirty(&v) {
                return true; // rebuilt by the next step: `stale` says so
            }
            raw.push((k.to_vec(), v));
            raw.len() <= want
        })
        .await?;
        let next = if raw.len() > want {
            raw.truncate(want);
            raw.last().map(|(k, _)| Cursor(k.clone()))
        } else {
            None
        };
        let mut rows = Vec::with_capacity(raw.len());
        for (k, v) in raw {
            let rest = &k[head.len()..];
            let (key_value, _) = key::decode_prefix(rest).map_err(|e| bad(name, e))?;
            let row = if slot.reduce {
                let json = node_result(&v)?;
                IndexRow {
                    key: key_value,
                    value: serde_json::from_slice(json).map_err(|e| bad(name, e))?,
                    id: None,
                }
            } else {
                let (id, json) = split_value(&v).ok_or_else(|| bad(name, "value"))?;
                IndexRow {
                    key: key_value,
                    value: serde_json::from_slice(json).map_err(|e| bad(name, e))?,
                    id: Some(id.to_string()),
                }
            };
            rows.push(row);
        }
        Ok(QueryResult {
            rows,
            next,
            indexed_etag: slot.checkpoint,
            db_etag: self.meta.last_etag,
            stale: slot.checkpoint < self.meta.last_etag || slot.dirty,
        })
    }

    /// How many rows `range` holds in index `name` (entries of a map index,
    /// keys of a reducing one), without decoding them.
    pub async fn query_count(&self, name: &str, range: &KeyRange) -> Result<u64, Error> {
        let Plan {
            slot,
            bounds,
            tree,
            head,
            start,
        } = self.plan(name, range).await?;
        let mut n = 0u64;
        self.scan_range(name, tree, &head, &bounds, Walk::Up(start), |_, v| {
            n += u64::from(!(slot.reduce && is_dirty(&v)));
            true
        })
        .await?;
        Ok(n)
    }
    /// Where a query of `range` in index `name` reads.
    async fn plan(&self, name: &str, range: &KeyRange) -> Result<Plan, Error> {
        let rec = self
            .index_record(name)
            .await?
            .ok_or_else(|| Error::NoIndex(clip(name)))?;
        let slot = rec.active;
        let bounds = Bounds::new(range)?;
        let (tree, head) = if slot.reduce {
            (Tree::IndexReduce, root_prefix(slot.id))
        } else {
            (Tree::IndexEntries, slot.id.to_be_bytes().to_vec())
        };
        let mut start = head.clone();
        start.extend_from_slice(&bounds.start());
        Ok(Plan {
            slot,
            bounds,
            tree,
            head,
            start,
        })
    }

    /// Calls `f` on each entry of `tree` under `head` whose key is in
    /// `bounds`, walking as `walk` says, until it returns `false`.
    async fn scan_range(
        &self,
        name: &str,
        tree: Tree,
        head: &[u8],
        bounds: &Bounds,
        walk: Walk,
        mut f: impl FnMut(&[u8], Vec<u8>) -> bool,
    ) -> Result<(), Error> {
        use std::cmp::Ordering::{Equal, Greater, Less};
        let mut failed = None;
        // Keys on the far side of the range end the walk; keys on the near
        // side (the rest of a prefix's neighbourhood) are passed over.
        let (near, far) = match walk {
            Walk::Up(_) => (Less, Greater),
            Walk::Down(_) => (Greater, Less),
        };
        let visit = |k: &[u8], v: Vec<u8>| {
            if !k.starts_with(head) {
                return false;
            }
            let rest = &k[head.len()..];
            let kenc = match key::decode_prefix(rest) {
                Ok((_, tail)) => &rest[..rest.len() - tail.len()],
                Err(e) => {
                    failed = Some(bad(name, e));
                    return false;
                }
            };
            match bounds.place(kenc) {
                Equal => f(k, v),
                o if o == near => true,
                _ => {
                    debug_assert_eq!(bounds.place(kenc), far);
                    false
                }
            }
        };
        let (reader, root) = (self.reader(), self.meta.root(tree));
        match &walk {
            Walk::Up(start) => btree::scan(&reader, root, start, visit).await?,
            Walk::Down(end) => btree::scan_rev(&reader, root, end.as_deref(), visit).await?,
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
