//! The hub as an edge of another hub (`[[upstream]]` in the configuration):
//! the native edge client ([`outpost_client`]) over one of the hub's open
//! databases, following the database through failures and reopenings.
//! With `key_file` the hub proves its identity with that key and signs its
//! batches ([`KeyPair`]); a `token` is development mode.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use outpost::keys::{KeyPair, Signer};
use outpost::sync::{EdgeConfig, SyncStatus};
use outpost_client::{ClientOptions, spawn_edge};
use tokio::sync::watch;

use crate::config::UpstreamConfig;
use crate::state::{DbHandle, Hub};

/// Replicates `up.database` with the hub at `up.url` until the hub shuts
/// down, reconnecting as needed. Versions received from upstream are tagged
/// `upstream:<identity>` and not sent back; the hub's own edges are woken
/// when upstream changes arrive.
pub async fn run_upstream(hub: Arc<Hub>, up: UpstreamConfig) {
    let mut generation = hub.generation_watch();
    let mut shutdown = hub.shutdown_watch();
    loop {
        if *shutdown.borrow() {
            return;
        }
        generation.borrow_and_update();
        let Some(handle) = hub.database(&up.database) else {
            if hub.failure(&up.database).is_none() {
                tracing::error!(database = %up.database, "upstream names an unknown database");
                return;
            }
            // The database failed: wait until the hub reopened it.
            tokio::select! {
                r = generation.changed() => if r.is_err() { return; },
                _ = shutdown.changed() => return,
            }
            continue;
        };
        if !link_upstream(&hub, handle, &up, &mut shutdown).await {
            return;
        }
    }
}

/// Runs the upstream link over one handle of its database. Returns `false`
/// when the hub shuts down, `true` when the database failed (the caller
/// starts over once it is reopened; the old handle is dropped by then).
async fn link_upstream(
    hub: &Arc<Hub>,
    handle: Arc<DbHandle>,
    up: &UpstreamConfig,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let (mut edge, signer) = match &up.key_file {
        Some(path) => match KeyPair::load(path) {
            Ok(k) => {
                let key = k.public_key().clone();
                let signer: Arc<dyn Signer> = Arc::new(k);
                (
                    EdgeConfig::with_key(&up.database, &up.identity, key),
                    Some(signer),
                )
            }
            Err(e) => {
                // Nothing to sign with: the link cannot work until the file
                // is fixed and the hub restarted (upstream links start with
                // the hub).
                tracing::error!(url = %up.url, database = %up.database, error = %e, "upstream link not started: its key_file cannot be loaded (`outpost-hub keygen FILE` makes one; restart the hub after fixing it)");
                return false;
            }
        },
        None => (EdgeConfig::new(&up.database, &up.identity, &up.token), None),
    };
    edge.source = format!("upstream:{}", up.identity);
    let opts = ClientOptions {
        url: up.url.clone(),
        edge,
        ca_cert: up.ca_cert.clone(),
        signer,
    };
    // The client and the hub's edge sessions all watch the database's
    // commits: local writes are pushed upstream, upstream changes reach the
    // edges.
    let client = spawn_edge(handle.db.clone(), opts, None);
    let mut status = client.watch_status();
    let mut failed = handle.failed_watch();
    let mut storage_failures = 0;
    let failed_db = loop {
        if failed.borrow_and_update().is_some() {
            break true;
        }
        tokio::select! {
            r = status.changed() => {
                if r.is_err() { break false; }
                let s = status.borrow_and_update().clone();
                match &s {
                    SyncStatus::Initial { .. } => {}
                    other => tracing::info!(url = %up.url, database = %up.database, status = ?other, "upstream"),
                }
                // A storage action failed: was it the database failing?
                let n = client.counters().storage_failures.load(Ordering::Relaxed);
                if n > storage_failures {
                    storage_failures = n;
                    if hub.check_failed(&handle).await.is_some() {
                        break true;
                    }
                }
            }
            _ = failed.changed() => {}
            _ = shutdown.changed() => break false,
        }
    };
    client.stop().await;
    if failed_db {
        tracing::warn!(database = %up.database, url = %up.url, "upstream link paused: the database failed; it resumes once the database is reopened");
    }
    failed_db
}
