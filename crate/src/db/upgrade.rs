//! Upgrades on open: what a database of an older meta format needs beyond
//! its meta record being rewritten in the current format.
//!
//! - Versions 1 to 3 have no `origins` tree ([`super::origins`]): it is built
//!   from every version of every held document — the high-water mark of each
//!   database id, and its owner where the record says who sent it (a
//!   document stored as received from `edge:<identity>/<device>` gives its
//!   entries to `edge:<identity>`; one received from another source, e.g.
//!   `upstream:<name>`, to that source) — and from the hub's push
//!   checkpoint records (`sync/push/<identity>/<device>`: the device is
//!   `edge:<identity>`'s). Ids no record attributes stay without an owner:
//!   the first peer to raise one claims it (see `docs/security.md`).
//!
//! The upgrade runs as one transaction whose flush commits the new tree and
//! the meta record in the current format together: a crash leaves the old
//! format or the new one.

use std::str::FromStr;

use crate::btree;
use crate::cv::DbId;
use crate::doc;
use crate::error::Error;
use crate::store::PageStore;

use super::Database;
use super::alloc::WCtx;
use super::meta::Tree;
use super::origins::{self, Origin};

/// The prefix of the hub's push checkpoint records (the key format of
/// `crate::sync::push_checkpoint_key`, which the engine does not import).
const PUSH_CHECKPOINT_PREFIX: &[u8] = b"sync/push/";

/// The owner of what a record's source tag says it was received from.
fn owner_of_source(source: &str) -> String {
    match source.strip_prefix("edge:") {
        Some(rest) => match rest.rsplit_once('/') {
            Some((identity, _device)) => format!("edge:{identity}"),
            None => format!("edge:{rest}"),
        },
        None => source.to_string(),
    }
}

impl<S: PageStore> Database<S> {
    /// Builds the `origins` tree of a database of meta version 3 or older,
    /// in the working state of the upgrade transaction (see the module docs).
    pub(super) async fn build_origins(&self) -> Result<(), Error> {
        let mut w = self.inner.writer.lock().await;
        super::alloc::ensure_free_list(&self.inner, &mut w).await?;
        let own = self.inner.db_id;
        let mut ctx = WCtx {
            inner: &self.inner,
            w: &mut w,
        };
        let docs_root = ctx.w.meta.root(Tree::Docs);
        let mut records = Vec::new();
        btree::scan(&ctx, docs_root, b"", |_, v| {
            records.push(((), v));
            true
        })
        .await?;
        for ((), rec) in records {
            // An unreadable record is left to the integrity check and the
            // repair command; the upgrade goes on without it.
            let Ok((_, meta, _, sibs)) = doc::decode_raw(&rec) else {
                continue;
            };
            let owner = meta.source.as_deref().map(owner_of_source);
            origins::record(&mut ctx, &meta.change_vector, own, owner.as_deref()).await?;
            for s in &sibs {
                origins::record(&mut ctx, &s.change_vector, own, owner.as_deref()).await?;
            }
        }
        let locals_root = ctx.w.meta.root(Tree::Locals);
        let mut devices = Vec::new();
        btree::scan(&ctx, locals_root, PUSH_CHECKPOINT_PREFIX, |k, _| {
            if !k.starts_with(PUSH_CHECKPOINT_PREFIX) {
                return false;
            }
            let rest = String::from_utf8_lossy(&k[PUSH_CHECKPOINT_PREFIX.len()..]).into_owned();
            if let Some((identity, device)) = rest.rsplit_once('/')
                && let Ok(device) = DbId::from_str(device)
            {
                devices.push((device, format!("edge:{identity}")));
            }
            true
        })
        .await?;
        for (device, owner) in devices {
            if device == own {
                continue;
            }
            let mut o = origins::get(&mut ctx, &device)
                .await?
                .unwrap_or_else(Origin::default);
            o.owner = Some(owner);
            origins::set(&mut ctx, device, o);
        }
        ctx.w.keep_changes();
        ctx.w.seq += 1;
        Ok(())
    }
}
