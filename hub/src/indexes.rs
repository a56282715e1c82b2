//! Indexes at the hub: the index modules of each database (`[[database]]
//! indexes = ["…mjs"]`) are loaded when the hub starts (a module that does not
//! load stops the start, naming the file and why) and every database's
//! indexes are brought up to date after each commit, in the order they are
//! defined, again while a pass writes output documents (so an index over
//! another's output collection follows it).
//!
//! An index whose function fails (a throw, a timeout, memory) is logged with
//! the index and the document, and retried after [`RETRY`] or the next
//! commit; the other indexes and the hub go on.

use std::sync::Arc;
use std::time::Duration;

use outpost::index::Index;
use outpost::store::file::FileStore;
use serde_json::json;

use crate::config::Config;
use crate::error::{HubError, Result};
use crate::js::{JsLimits, load_module};
use crate::state::{DbHandle, Hub};

/// Wait before trying a failed index again (without a new commit).
const RETRY: Duration = Duration::from_secs(5);
/// Passes over a database's indexes per wake-up at most (a chain of output
/// collections longer than this follows at the next wake-up).
const MAX_PASSES: usize = 8;

/// The indexes of one database.
pub struct DbIndexes {
    /// The database's name.
    pub database: String,
    /// Its indexes, in definition order.
    pub indexes: Vec<Index>,
    /// The output collections of its `hubComputed` indexes: their
    /// documents replicate to the edges whose read prefixes cover them
    /// (read-only there).
    pub shared_outputs: Vec<String>,
}

/// Loads every database's index modules.
pub fn load(config: &Config) -> Result<Vec<DbIndexes>> {
    let mut out = Vec::new();
    for d in &config.databases {
        let mut indexes: Vec<Index> = Vec::new();
        let mut shared_outputs: Vec<String> = Vec::new();
        for path in &d.indexes {
            let loaded = load_module(path, JsLimits::default()).map_err(|m| {
                HubError::Other(format!(
                    "database {:?}: index module {}: {m}",
                    d.name,
                    path.display()
                ))
            })?;
            for crate::js::Loaded {
                index: i,
                hub_computed,
            } in loaded
            {
                if indexes.iter().any(|x| x.def.name == i.def.name) {
                    return Err(HubError::Other(format!(
                        "database {:?}: index {:?} is defined twice (in {})",
                        d.name,
                        i.def.name,
                        path.display()
                    )));
                }
                if let (true, Some(o)) = (hub_computed, &i.def.output) {
                    shared_outputs.push(o.clone());
                }
                indexes.push(i);
            }
        }
        if !indexes.is_empty() {
            out.push(DbIndexes {
                database: d.name.clone(),
                indexes,
                shared_outputs,
            });
        }
    }
    Ok(out)
}

/// Keeps every database's indexes up to date until the hub shuts down.
pub async fn run(hub: Arc<Hub>, all: Vec<DbIndexes>) {
    let mut tasks = tokio::task::JoinSet::new();
    for d in all {
        match hub.database(&d.database) {
            Some(h) => {
                if !d.shared_outputs.is_empty() {
                    tracing::info!(database = %d.database, collections = ?d.shared_outputs, "index outputs computed here and shared with the edges");
                }
                let names: Vec<&str> = d.indexes.iter().map(|i| i.def.name.as_str()).collect();
                tracing::info!(database = %d.database, indexes = ?names, "keeping indexes up to date");
                tasks.spawn(keep_up(hub.clone(), h, d.indexes));
            }
            None => {
                tracing::warn!(database = %d.database, "indexes of a database that is not open")
            }
        }
    }
    while tasks.join_next().await.is_some() {}
}

async fn keep_up(hub: Arc<Hub>, h: Arc<DbHandle>, indexes: Vec<Index>) {
    let mut watch = h.db.watch_commits();
    loop {
        let failed = catch_up(&h, &indexes).await;
        tokio::select! {
            r = watch.changed() => if r.is_none() { return },
            _ = tokio::time::sleep(RETRY), if failed => {}
            _ = hub.shutdown_requested() => return,
        }
    }
}

/// One wake-up: every index up to date (or failed); returns whether one failed.
async fn catch_up(h: &DbHandle, indexes: &[Index]) -> bool {
    let mut failed = vec![false; indexes.len()];
    for _ in 0..MAX_PASSES {
        let before = h.db.snapshot().last_etag();
        for (i, index) in indexes.iter().enumerate() {
            if failed[i] {
                continue;
            }
            if let Err(e) = h.db.catch_up_index(index, None).await {
                failed[i] = true;
                tracing::warn!(
                    database = %h.name,
                    index = %index.def.name,
                    code = e.code(),
                    error = %e,
                    "an index could not be brought up to date (retried after the next commit or {} s)",
                    RETRY.as_secs()
                );
            }
        }
        if h.db.snapshot().last_etag() == before {
            break;
        }
    }
    failed.contains(&true)
}

/// The `indexes` of a database in `GET /status` (and `outpost-hub index
/// list`): each index's name, version, kind, output collection, the etag it
/// reflects and whether it is behind.
pub async fn status_json(snap: &outpost::Snapshot<FileStore>) -> serde_json::Value {
    match snap.indexes().await {
        Ok(list) => list
            .into_iter()
            .map(|(def, p)| {
                json!({
                    "name": def.name,
                    "version": def.version,
                    "collections": def.collections,
                    "reduce": def.reduce,
                    "output": def.output,
                    "indexed_etag": p.indexed_etag,
                    "stale": !p.caught_up(),
                })
            })
            .collect(),
        Err(e) => json!({ "error": e.to_string() }),
    }
}
