//! The hub as an edge of another hub (`[[upstream]]` in the configuration):
//! the native edge client ([`outpost_client`]) over one of the hub's open
//! databases, following the database through failures and reopenings.
//! With `key_file` the hub proves its identity with that key and signs its
//! batches ([`KeyPair`]); with `cert` it is a certificate identity (mutual
//! TLS, the certificate's key signs); a `token` is development mode.
//!
//! **Certificate renewal.** The operator's renewal job writes the next
//! certificate (chain and key, one PEM file) beside the current one, as
//! `<cert>.next`. Every link using that file notices it within
//! [`RENEWAL_POLL`]:
//! - the same key (a renewal): the file is moved over the current one at
//!   once (the upstream accepts a renewed certificate by itself);
//! - another key (a replacement): each link registers it with its upstream
//!   over its open session (`Replace`, protocol version 8); once every
//!   upstream using the file has registered it, the file is moved over the
//!   current one and every link reconnects with it. An upstream that is
//!   unreachable is retried at every poll, until the current certificate
//!   is within a tenth of its lifetime (at most [`SWITCH_BEFORE_EXPIRY`])
//!   of its expiry: then a link that registered it switches anyway (the old
//!   certificate would stop working everywhere soon), and logs which
//!   upstreams did not register it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outpost::keys::{KeyPair, Signer};
use outpost::sync::received::HubLink;
use outpost::sync::{EdgeConfig, ReplaceOutcome, SyncStatus};
use outpost_client::tls::ClientCert;
use outpost_client::{ClientOptions, spawn_edge};
use tokio::sync::watch;

use crate::certs::KeyHash;
use crate::config::UpstreamConfig;
use crate::state::{DbHandle, Hub};

/// How often a link with a certificate looks for `<cert>.next` and for a
/// changed certificate file.
pub const RENEWAL_POLL: Duration = Duration::from_secs(2);

/// How long before the current certificate expires the hub switches to
/// the next one even if an upstream has not registered it: a tenth of the
/// certificate's lifetime, at most this.
pub const SWITCH_BEFORE_EXPIRY: Duration = Duration::from_secs(24 * 3600);

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

/// The `<cert>.next` file of a certificate file.
pub fn next_path(cert: &Path) -> PathBuf {
    let mut s = cert.as_os_str().to_owned();
    s.push(".next");
    PathBuf::from(s)
}

/// Modification time and size of a file (`None`: absent).
fn fingerprint(path: &Path) -> Option<(Option<std::time::SystemTime>, u64)> {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.modified().ok(), m.len()))
}

/// Links that registered the next certificate of a file: by file, the next
/// certificate's key hash and the links (url, identity) that registered it.
type Registered = BTreeMap<PathBuf, (KeyHash, BTreeSet<(String, String)>)>;

fn registered() -> &'static Mutex<Registered> {
    static R: std::sync::OnceLock<Mutex<Registered>> = std::sync::OnceLock::new();
    R.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// Moves `<cert>.next` over `cert` (one rename: chain and key together).
fn promote(cert: &Path) -> std::io::Result<()> {
    std::fs::rename(next_path(cert), cert)?;
    if let Some(dir) = cert.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Runs the upstream link over one handle of its database. Returns `false`
/// when the hub shuts down, `true` when the link is to start over (the
/// database failed and was reopened, or the certificate file changed).
async fn link_upstream(
    hub: &Arc<Hub>,
    handle: Arc<DbHandle>,
    up: &UpstreamConfig,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let mut cert: Option<Arc<ClientCert>> = None;
    let (mut edge, signer) = match (&up.cert, &up.key_file) {
        (Some(path), _) => match ClientCert::load(path) {
            Ok(c) => {
                let c = Arc::new(c);
                cert = Some(c.clone());
                (
                    EdgeConfig::with_key(&up.database, &up.identity, c.public_key().clone()),
                    Some(c.signer()),
                )
            }
            Err(e) => {
                tracing::error!(url = %up.url, database = %up.database, error = %e, "upstream link not started: its certificate file cannot be used (restart the hub after fixing it)");
                return false;
            }
        },
        (None, Some(path)) => match KeyPair::load(path) {
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
        (None, None) => (EdgeConfig::new(&up.database, &up.identity, &up.token), None),
    };
    edge.source = format!("upstream:{}", up.identity);
    // The link of a hub (`outpost::sync::received`): what it receives is
    // recorded in the database's audit trail (`audit who` names the batch
    // that brought a version), and the subject purges the upstream orders
    // are carried out as this hub's own, reaching its edges.
    edge.hub_link = Some(HubLink::new(format!(
        "{} database {} as {}",
        up.url, up.database, up.identity
    )));
    let opts = ClientOptions {
        url: up.url.clone(),
        edge,
        ca_cert: up.ca_cert.clone(),
        signer,
        client_cert: cert.clone(),
    };
    let mut renewal = up.cert.as_ref().map(|p| Renewal {
        path: p.clone(),
        loaded: fingerprint(p),
        tried: None,
    });
    // The client and the hub's edge sessions all watch the database's
    // commits: local writes are pushed upstream, upstream changes reach the
    // edges.
    let client = spawn_edge(handle.db.clone(), opts, None);
    let mut status = client.watch_status();
    let mut purges = client.watch_purges();
    let mut failed = handle.failed_watch();
    let mut storage_failures = 0;
    let mut client_ended = false;
    let mut poll = tokio::time::interval(RENEWAL_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let restart = loop {
        if failed.borrow_and_update().is_some() {
            break true;
        }
        tokio::select! {
            r = status.changed(), if !client_ended => {
                if r.is_err() {
                    // The client ended for good (a final refusal: revoked,
                    // an expired certificate…). With a certificate file,
                    // keep watching it: a renewal dropped later restarts
                    // the link.
                    if renewal.is_some() {
                        client_ended = true;
                        tracing::warn!(url = %up.url, database = %up.database, "upstream link stopped; waiting for its certificate file to change");
                        continue;
                    }
                    break false;
                }
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
            _ = poll.tick(), if renewal.is_some() => {
                if let (Some(r), Some(c)) = (renewal.as_mut(), cert.as_ref())
                    && r.step(hub, up, c, &client).await
                {
                    tracing::info!(url = %up.url, database = %up.database, "upstream: the certificate file changed; reconnecting with it");
                    break true;
                }
            }
            r = purges.changed(), if !client_ended => {
                if r.is_ok() {
                    // The order's subject purges are this hub's own now
                    // (`outpost::sync::received::purge_ordered`): the
                    // sessions of the devices that owe a receipt end, so
                    // they reconnect and get their order at once, as after
                    // `outpost-hub purge`.
                    tracing::warn!(url = %up.url, database = %up.database, "upstream purge order carried out; ending the sessions of the devices that now owe a receipt");
                    hub.purged();
                }
            }
            _ = failed.changed() => {}
            _ = shutdown.changed() => break false,
        }
    };
    client.stop().await;
    if restart && handle.failure().is_some() {
        tracing::warn!(database = %up.database, url = %up.url, "upstream link paused: the database failed; it resumes once the database is reopened");
    }
    restart
}

/// A link's view of its certificate files.
struct Renewal {
    path: PathBuf,
    /// The current file as loaded.
    loaded: Option<(Option<std::time::SystemTime>, u64)>,
    /// The next file last tried and refused (not tried again until it
    /// changes).
    tried: Option<(Option<std::time::SystemTime>, u64)>,
}

impl Renewal {
    /// One poll: `true` when the link is to reconnect (the current file
    /// changed).
    async fn step(
        &mut self,
        hub: &Hub,
        up: &UpstreamConfig,
        current: &ClientCert,
        client: &outpost_client::SyncHandle,
    ) -> bool {
        if fingerprint(&self.path) != self.loaded {
            return true;
        }
        let next_file = next_path(&self.path);
        let seen = fingerprint(&next_file);
        if seen.is_none() || seen == self.tried {
            return false;
        }
        let next = match ClientCert::load(&next_file) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(file = %next_file.display(), error = %e, "the next certificate cannot be used; waiting for the file to change");
                self.tried = seen;
                return false;
            }
        };
        let (Some((cur_key, nb, na)), Some((next_key, ..))) = (
            crate::certs::leaf_dates(&current.chain),
            crate::certs::leaf_dates(&next.chain),
        ) else {
            self.tried = seen;
            return false;
        };
        if next_key == cur_key {
            // A renewal: same key, the upstream accepts it by itself.
            match promote(&self.path) {
                Ok(()) => {
                    tracing::info!(file = %self.path.display(), "renewed certificate (same key) put in place")
                }
                Err(e) => {
                    tracing::error!(file = %self.path.display(), error = %e, "cannot put the renewed certificate in place")
                }
            }
            return fingerprint(&self.path) != self.loaded;
        }
        let me = (up.url.clone(), up.identity.clone());
        let done = {
            let r = registered().lock().unwrap_or_else(|p| p.into_inner());
            r.get(&self.path)
                .is_some_and(|(k, links)| *k == next_key && links.contains(&me))
        };
        if !done {
            match client
                .register_replacement(next.chain_der(), Duration::from_secs(10))
                .await
            {
                ReplaceOutcome::Registered => {
                    tracing::info!(url = %up.url, identity = %up.identity, "the next certificate is registered upstream");
                    let mut r = registered().lock().unwrap_or_else(|p| p.into_inner());
                    let entry = r
                        .entry(self.path.clone())
                        .or_insert_with(|| (next_key, BTreeSet::new()));
                    if entry.0 != next_key {
                        *entry = (next_key, BTreeSet::new());
                    }
                    entry.1.insert(me.clone());
                }
                ReplaceOutcome::Refused { code, message } => {
                    tracing::error!(url = %up.url, identity = %up.identity, %code, %message, "the upstream refused the next certificate; fix it and write it again");
                    self.tried = seen;
                    return false;
                }
                other => {
                    tracing::warn!(url = %up.url, identity = %up.identity, outcome = ?other, "the next certificate could not be registered upstream yet; retrying");
                }
            }
        }
        // Every upstream using this file registered it, or the current
        // certificate nears its expiry: switch.
        let users: BTreeSet<(String, String)> = hub
            .config()
            .upstreams
            .iter()
            .filter(|u| u.cert.as_deref() == Some(self.path.as_path()))
            .map(|u| (u.url.clone(), u.identity.clone()))
            .collect();
        let missing: Vec<(String, String)> = {
            let r = registered().lock().unwrap_or_else(|p| p.into_inner());
            let have = r
                .get(&self.path)
                .filter(|(k, _)| *k == next_key)
                .map(|(_, l)| l.clone())
                .unwrap_or_default();
            users.difference(&have).cloned().collect()
        };
        let now = crate::identity::now_s();
        let margin = ((na - nb) / 10).clamp(0, SWITCH_BEFORE_EXPIRY.as_secs() as i64);
        let near_expiry = now >= na - margin;
        // Near the expiry, a link that registered it switches (never one
        // that could not: the upstreams that have it keep Boston).
        // An expired current certificate works nowhere: switching costs
        // nothing then.
        let here = !missing.contains(&me);
        if missing.is_empty() || (near_expiry && here) || now > na {
            if !missing.is_empty() {
                tracing::error!(file = %self.path.display(), missing = ?missing, "the current certificate nears its expiry: switching to the next one although these upstreams did not register it (register it there by hand: `outpost-hub edge cert-add`)");
            }
            match promote(&self.path) {
                Ok(()) => {
                    tracing::info!(file = %self.path.display(), "switched to the next certificate");
                    registered()
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&self.path);
                }
                Err(e) => {
                    tracing::error!(file = %self.path.display(), error = %e, "cannot put the next certificate in place")
                }
            }
        }
        fingerprint(&self.path) != self.loaded
    }
}
