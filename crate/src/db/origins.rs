//! The origins tree: what this database knows of every other database whose
//! versions it holds — the highest etag it holds for it (its high-water
//! mark) and who introduced it (its owner).
//!
//! A hub checks every pushed change vector against it
//! (`docs/security.md`, "Causality"): an edge may raise the entry of a
//! database id it owns (its own device, or the devices behind it when it is
//! itself a hub), never the entry of an id another peer introduced beyond
//! what the hub holds for it. An id is owned by the peer that first brought
//! it: `edge:<identity>` for what an edge pushed, the replication source
//! (`upstream:<name>`) for what a hub received from its upstream. The
//! database's own id is never in the tree (its high-water mark is its last
//! etag).
//!
//! Value layout (little-endian): `u64 high-water mark | u16 owner length |
//! owner (UTF-8; empty: no owner known)`. Key: the 16-byte database id.
//!
//! Writes go through the working state ([`Working::origins`]) and reach the
//! tree once per flush, like the collection counts; reads inside a
//! transaction see the pending value first.

use crate::btree;
use crate::codec::{Put, Reader};
use crate::cv::{ChangeVector, DbId};
use crate::error::Error;
use crate::store::PageStore;

use super::alloc::{Undo, WCtx};
use super::meta::Tree;

/// What a database knows of another database id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// The highest etag of that database this one holds in any version.
    pub high_water: u64,
    /// The peer that introduced it (`edge:<identity>`, `upstream:<name>`),
    /// if known.
    pub owner: Option<String>,
}

impl Origin {
    /// The stored value.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let owner = self.owner.as_deref().unwrap_or("");
        let mut v = Vec::with_capacity(10 + owner.len());
        v.put_u64(self.high_water);
        v.put_u16(owner.len().min(u16::MAX as usize) as u16);
        v.extend_from_slice(&owner.as_bytes()[..owner.len().min(u16::MAX as usize)]);
        v
    }

    /// Decodes a stored value (`None`: damaged).
    pub(crate) fn decode(b: &[u8]) -> Option<Origin> {
        let mut r = Reader::new(b);
        let high_water = r.u64("high-water mark").ok()?;
        let n = r.u16("owner length").ok()?;
        let owner = r.take(n as usize, "owner").ok()?;
        if r.remaining() != 0 {
            return None;
        }
        let owner = std::str::from_utf8(owner).ok()?;
        Some(Origin {
            high_water,
            owner: (!owner.is_empty()).then(|| owner.to_string()),
        })
    }
}

/// The origin of `db` as the transaction sees it (pending first).
pub(super) async fn get<S: PageStore>(
    ctx: &mut WCtx<'_, S>,
    db: &DbId,
) -> Result<Option<Origin>, Error> {
    if let Some(o) = ctx.w.origins.get(db) {
        return Ok(Some(o.clone()));
    }
    let root = ctx.w.meta.root(Tree::Origins);
    Ok(btree::get(ctx, root, db.as_bytes())
        .await?
        .and_then(|v| Origin::decode(&v)))
}

/// Sets the origin of `db` in the working state (journaled).
pub(super) fn set<S: PageStore>(ctx: &mut WCtx<'_, S>, db: DbId, o: Origin) {
    let prev = ctx.w.origins.insert(db, o);
    ctx.w.undo.push(Undo::Origin(db, prev));
}

/// Records the entries of `cv` (other than `own`, this database): raises
/// high-water marks, and gives ids seen for the first time the owner
/// `introduced_by` (if any).
pub(super) async fn record<S: PageStore>(
    ctx: &mut WCtx<'_, S>,
    cv: &ChangeVector,
    own: DbId,
    introduced_by: Option<&str>,
) -> Result<(), Error> {
    for &(db, etag) in cv.entries() {
        if db == own {
            continue;
        }
        let cur = get(ctx, &db).await?;
        let new = match cur {
            Some(o) if o.high_water >= etag && (o.owner.is_some() || introduced_by.is_none()) => {
                continue;
            }
            Some(mut o) => {
                o.high_water = o.high_water.max(etag);
                if o.owner.is_none() {
                    o.owner = introduced_by.map(str::to_string);
                }
                o
            }
            None => Origin {
                high_water: etag,
                owner: introduced_by.map(str::to_string),
            },
        };
        set(ctx, db, new);
    }
    Ok(())
}

/// Writes the pending origins into the tree (at flush). Each is removed
/// right after it is written (no await in between), so a dropped flush never
/// loses one.
pub(super) async fn flush<S: PageStore>(ctx: &mut WCtx<'_, S>) -> Result<(), Error> {
    let keys: Vec<DbId> = ctx.w.origins.keys().copied().collect();
    for db in keys {
        let Some(o) = ctx.w.origins.get(&db).cloned() else {
            continue;
        };
        let root = ctx.w.meta.root(Tree::Origins);
        let (root, _) = btree::insert(ctx, root, db.as_bytes(), &o.encode()).await?;
        ctx.w.meta.set_root(Tree::Origins, root);
        ctx.w.origins.remove(&db);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_roundtrip_and_refuse_damage() {
        for o in [
            Origin::default(),
            Origin {
                high_water: u64::MAX,
                owner: Some("edge:alice".into()),
            },
        ] {
            let b = o.encode();
            assert_eq!(Origin::decode(&b), Some(o.clone()));
            assert_eq!(Origin::decode(&b[..b.len() - 1]), None);
            let mut longer = b.clone();
            longer.push(0);
            assert_eq!(Origin::decode(&longer), None);
        }
        let mut bad = Vec::new();
        bad.put_u64(1);
        bad.put_u16(1);
        bad.push(0xff);
        assert_eq!(Origin::decode(&bad), None);
    }
}
