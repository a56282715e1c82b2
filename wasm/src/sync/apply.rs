//! Applying a `Changes` batch from the hub in slices (see the module docs
//! of [`super`]): at most [`SLICE_DOCS`] documents and [`SLICE_BYTES`]
//! bytes per commit, each in an event-loop task of its own.

use std::rc::Rc;

use outpost::db::RemoteDoc;
use outpost::sync::driver::edge_storage_etags;
use outpost::sync::{EdgeAction, EdgeEvent};

use super::{Inner, current, exclusive, hook_failed};
use crate::error::message_of;

/// Most documents applied per commit (one main-thread task each).
pub const SLICE_DOCS: usize = 100;
/// Most body bytes applied per commit.
pub const SLICE_BYTES: usize = 128 * 1024;

/// Body bytes of a received document (what a slice is measured by).
fn doc_bytes(d: &RemoteDoc) -> usize {
    d.id.len() + d.versions.iter().map(|v| v.body.len() + 64).sum::<usize>()
}

/// Splits a batch into slices of at most [`SLICE_DOCS`] documents and
/// [`SLICE_BYTES`] bytes (one larger document alone); at least one slice.
fn slices(docs: Vec<RemoteDoc>) -> Vec<Vec<RemoteDoc>> {
    let mut out = vec![Vec::new()];
    let mut bytes = 0;
    for d in docs {
        let n = doc_bytes(&d);
        let cur = out.last().map_or(0, Vec::len);
        if cur > 0 && (cur >= SLICE_DOCS || bytes + n > SLICE_BYTES) {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += n;
        if let Some(last) = out.last_mut() {
            last.push(d);
        }
    }
    out
}

/// Applies a batch from the hub in slices (see the module docs): the same
/// action, its documents replaced by one slice at a time and its checkpoint
/// by the previous one but for the last slice.
pub(super) async fn apply_remote(
    inner: &Rc<Inner>,
    generation: u64,
    action: EdgeAction,
) -> Option<Option<EdgeEvent<'static>>> {
    let EdgeAction::ApplyRemote {
        docs: all,
        upto,
        from,
        hub_db_id,
    } = action
    else {
        return Some(None);
    };
    let parts = slices(all);
    let n = parts.len();
    let (db, cfg) = (inner.db.clone(), inner.cfg.borrow().clone());
    // One lock hold (and one refresh, one broadcast) for the whole batch.
    // Each slice is applied in a task of its own (a new event-loop task
    // between slices, so the page stays responsive), and its commit is not
    // awaited before the next slice is applied: the engine's group commit
    // writes the slices applied while one IndexedDB transaction runs in the
    // next one, so applying and committing overlap. Only the last slice moves
    // the pull checkpoint; all are awaited before the batch is acknowledged.
    let r = exclusive(inner, async move {
        let mut pending = Vec::with_capacity(n);
        for (i, part) in parts.into_iter().enumerate() {
            if i > 0 {
                outpost::platform::next_task().await;
            }
            let step = EdgeAction::ApplyRemote {
                docs: part,
                upto: if i + 1 == n { upto } else { from },
                from,
                hub_db_id,
            };
            let (db, cfg) = (db.clone(), cfg.clone());
            let (tx, rx) = futures::channel::oneshot::channel();
            wasm_bindgen_futures::spawn_local(async move {
                let _ = tx.send(edge_storage_etags(&db, &cfg, &step).await);
            });
            pending.push(rx);
        }
        let mut result = EdgeEvent::Applied;
        let mut own = Vec::new();
        for rx in pending {
            let (ev, etags) = rx.await.unwrap_or_else(|_| {
                (
                    Some(EdgeEvent::ApplyFailed("a slice was dropped".into())),
                    None,
                )
            });
            own.push(etags);
            match ev {
                Some(EdgeEvent::Applied) | None => {}
                Some(other) => {
                    if matches!(result, EdgeEvent::Applied) {
                        result = other;
                    }
                }
            }
        }
        (result, own)
    })
    .await;
    let result = match r {
        Ok((result, own)) => {
            // What this replication stored itself needs no pushing.
            let mut st = inner.state.borrow_mut();
            own.into_iter().for_each(|run| st.own.add(run));
            drop(st);
            result
        }
        Err(e) => {
            if hook_failed(inner, &e) {
                return None;
            }
            EdgeEvent::ApplyFailed(message_of(&e))
        }
    };
    current(inner, generation).then_some(Some(result))
}
