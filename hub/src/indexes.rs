//! Indexes at the hub: the index modules of each database (`[[database]]
//! indexes = ["…mjs"]`) are loaded when the hub starts (a module that does not
//! load stops the start, naming the file and why) and every database's
//! indexes are brought up to date after each commit, in the order they are
//! defined, again while a pass writes output documents (so an index over
//! another's output collection follows it).
//!
//! An index whose function fails (a throw, a timeout, memory) is logged with
//! the index and the document, and retried after `RETRY` or the next
//! commit; the other indexes and the hub go on.
//!
//! A running hub follows its modules: when a database's list in the
//! configuration changes, or a module file changes (checked every
//! `MODULE_POLL`), the modules are loaded again; if they load, the tasks
//! of the old ones stop between two steps and the new ones start (a changed
//! function is a new version, built beside the old one, which queries use
//! until it has caught up); if they do not, the error is logged and the
//! indexes in force go on. Sessions that start afterwards get the new
//! shared output collections.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use outpost::index::Index;
use outpost::store::file::FileStore;
use serde_json::json;
use tokio::sync::watch;

use crate::config::Config;
use crate::error::{HubError, Result};
use crate::js::{JsLimits, load_module};
use crate::state::{DbHandle, Hub};

/// Wait before trying a failed index again (without a new commit).
const RETRY: Duration = Duration::from_secs(5);
/// How often the module files are checked for changes.
const MODULE_POLL: Duration = Duration::from_secs(1);
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

/// What identifies the index modules a configuration names: each
/// database's list, and each file's modification time and size.
type Fingerprint = Vec<(
    String,
    std::path::PathBuf,
    Option<(Option<SystemTime>, u64)>,
)>;

fn fingerprint(config: &Config) -> Fingerprint {
    let mut out = Vec::new();
    for d in &config.databases {
        for p in &d.indexes {
            let meta = std::fs::metadata(p)
                .ok()
                .map(|m| (m.modified().ok(), m.len()));
            out.push((d.name.clone(), p.clone(), meta));
        }
    }
    out
}

/// The tasks keeping one set of modules' indexes up to date.
struct Running {
    stop: watch::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
}

impl Running {
    fn start(hub: &Arc<Hub>, all: Vec<DbIndexes>) -> Running {
        let (stop, _) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        for d in all {
            match hub.database(&d.database) {
                Some(h) => {
                    if !d.shared_outputs.is_empty() {
                        tracing::info!(database = %d.database, collections = ?d.shared_outputs, "index outputs computed here and shared with the edges");
                    }
                    let names: Vec<&str> = d.indexes.iter().map(|i| i.def.name.as_str()).collect();
                    tracing::info!(database = %d.database, indexes = ?names, "keeping indexes up to date");
                    tasks.spawn(keep_up(hub.clone(), h, d.indexes, stop.subscribe()));
                }
                None => {
                    tracing::warn!(database = %d.database, "indexes of a database that is not open")
                }
            }
        }
        Running { stop, tasks }
    }

    /// Stops the tasks between two steps and waits for them.
    async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Records each configured database's shared output collections (none for
/// a database without `hubComputed` indexes).
pub fn share_outputs(hub: &Hub, config: &Config, all: &[DbIndexes]) {
    for d in &config.databases {
        let shared = all
            .iter()
            .find(|x| x.database == d.name)
            .map(|x| x.shared_outputs.clone())
            .unwrap_or_default();
        hub.set_shared_outputs(&d.name, shared);
    }
}

/// Keeps every database's indexes up to date until the hub shuts down,
/// loading the modules again when they change (see the module docs).
pub async fn run(hub: Arc<Hub>, first: Vec<DbIndexes>) {
    let mut seen = fingerprint(&hub.config());
    let mut running = Running::start(&hub, first);
    let mut configs = hub.config_watch();
    loop {
        tokio::select! {
            _ = hub.shutdown_requested() => break,
            r = configs.changed() => if r.is_err() { break },
            _ = tokio::time::sleep(MODULE_POLL) => {}
        }
        let config = hub.config();
        let now = fingerprint(&config);
        if now == seen {
            continue;
        }
        seen = now;
        match load(&config) {
            Err(e) => {
                tracing::error!(error = %e, "the index modules changed but do not load: the indexes in force go on")
            }
            Ok(all) => {
                running.stop().await;
                share_outputs(&hub, &config, &all);
                tracing::info!("index modules loaded again");
                running = Running::start(&hub, all);
            }
        }
    }
    running.stop().await;
}

async fn keep_up(
    hub: Arc<Hub>,
    h: Arc<DbHandle>,
    indexes: Vec<Index>,
    mut stop: watch::Receiver<bool>,
) {
    let mut watch = h.db.watch_commits();
    loop {
        if *stop.borrow() {
            return;
        }
        let failed = catch_up(&h, &indexes, &stop).await;
        tokio::select! {
            r = watch.changed() => if r.is_none() { return },
            _ = tokio::time::sleep(RETRY), if failed => {}
            _ = hub.shutdown_requested() => return,
            _ = stop.changed() => return,
        }
    }
}

/// One wake-up: every index up to date (or failed); returns whether one failed.
async fn catch_up(h: &DbHandle, indexes: &[Index], stop: &watch::Receiver<bool>) -> bool {
    let mut failed = vec![false; indexes.len()];
    for _ in 0..MAX_PASSES {
        let before = h.db.snapshot().last_etag();
        for (i, index) in indexes.iter().enumerate() {
            if failed[i] || *stop.borrow() {
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
