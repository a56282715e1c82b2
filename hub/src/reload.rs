//! Live reload of the configuration file.
//!
//! The file is polled (modification time and size) every
//! [`POLL_INTERVAL`], and re-read on `SIGHUP`. Each new configuration that
//! parses and validates is published on a [`watch`] channel; an invalid file
//! is logged and the previous configuration stays in force.
//!
//! Each new configuration in force is compared with the one it replaces
//! ([`scope_changes`]): every edge enrolled, revoked or re-scoped gets an
//! entry in the audit trail of each database concerned
//! ([`record_scope_changes`], `docs/audit.md`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use outpost::Batch;
use outpost::db::{AUDIT_RECORD_VERSION, AuditKind, AuditScope, encode_record};

use crate::config::{Config, EdgeAccess};
use crate::state::Hub;

/// How often the configuration file is checked for changes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// A changed file must stay unchanged this long before it is read.
const SETTLE: Duration = Duration::from_millis(100);

/// What identifies a version of the file: modification time and size.
type Fingerprint = Option<(Option<SystemTime>, u64)>;

fn fingerprint(path: &Path) -> Fingerprint {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.modified().ok(), m.len()))
}

/// Publishes `initial` and starts a task that reloads the configuration from
/// `initial.path` when the file changes or on `SIGHUP`. The task ends when
/// every receiver is gone (or when aborted through the returned handle).
pub fn watch_config(initial: Config) -> (watch::Receiver<Arc<Config>>, JoinHandle<()>) {
    let (rx, _tx, task) = watch_config_with_sender(initial);
    (rx, task)
}

/// [`watch_config`], and a sender for configurations the hub writes itself
/// ([`crate::state::Hub::set_config_sender`]).
pub fn watch_config_with_sender(
    initial: Config,
) -> (
    watch::Receiver<Arc<Config>>,
    watch::Sender<Arc<Config>>,
    JoinHandle<()>,
) {
    let path = initial.path.clone();
    let (tx, rx) = watch::channel(Arc::new(initial));
    let task = tokio::spawn(run(path, tx.clone()));
    (rx, tx, task)
}

async fn run(path: PathBuf, tx: watch::Sender<Arc<Config>>) {
    let mut seen = fingerprint(&path);
    let mut interval = tokio::time::interval(POLL_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut hangup = Hangup::new();
    let mut warned_missing = false;
    let mut invalid = false;
    loop {
        let forced = tokio::select! {
            _ = interval.tick() => false,
            _ = hangup.recv() => true,
            _ = tx.closed() => return,
        };
        let now = fingerprint(&path);
        if now.is_none() {
            if !warned_missing {
                tracing::warn!(path = %path.display(), "configuration file is missing; keeping the current configuration");
                warned_missing = true;
            }
            seen = None;
            continue;
        }
        warned_missing = false;
        if !forced && now == seen {
            continue;
        }
        // Let a writer finish: an editor or script that truncates and then
        // writes must not have its half-written (maybe empty, so valid and
        // edge-less) file applied. Retry at the next tick if it still moves.
        tokio::time::sleep(SETTLE).await;
        if fingerprint(&path) != now {
            continue;
        }
        seen = now;
        if forced {
            tracing::info!(path = %path.display(), "SIGHUP: reloading the configuration");
        }
        invalid = !reload(&path, &tx, invalid);
    }
}

/// Reads the file once and publishes it if it is valid and differs.
/// `was_invalid`: the previous read failed. Returns whether the file was valid.
fn reload(path: &Path, tx: &watch::Sender<Arc<Config>>, was_invalid: bool) -> bool {
    // Not while the hub rewrites the file itself (an enrollment): it
    // publishes that version, and this one must not overtake it.
    let _writing = crate::edit::config_write_lock();
    let new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "configuration not reloaded: the file is invalid; keeping the previous configuration");
            return false;
        }
    };
    let old = tx.borrow().clone();
    if *old == new {
        if was_invalid {
            tracing::info!("configuration file is valid again (same configuration as in force)");
        } else {
            tracing::debug!("configuration file touched; nothing changed");
        }
        return true;
    }
    for (field, changed) in [
        ("listen", old.listen != new.listen),
        ("data_dir", old.data_dir != new.data_dir),
        ("tls", old.tls != new.tls),
    ] {
        if changed {
            tracing::warn!(
                field,
                "configuration: a change of {field} takes effect only after a restart"
            );
        }
    }
    tracing::info!(
        databases = new.databases.len(),
        edges = new.edges.len(),
        upstreams = new.upstreams.len(),
        "configuration reloaded"
    );
    tx.send_replace(Arc::new(new));
    true
}

/// What a configuration change does to the edges' access: per database,
/// one [`AuditScope`] per edge enrolled (new access), revoked (access gone)
/// or re-scoped (other read or write prefixes), in edge-name order. An edge
/// moved to another database is revoked in one and enrolled in the other. A
/// token change alone is not a scope change.
pub fn scope_changes(old: &Config, new: &Config) -> Vec<(String, AuditScope)> {
    let prefixes = |p: &outpost::sync::Prefixes| -> Vec<String> { p.as_slice().to_vec() };
    // A revoked edge has no access: revoking is recorded like a removal.
    let scope = |e: &EdgeAccess| (prefixes(&e.read), prefixes(&e.write));
    let live = |e: &&EdgeAccess| !e.revoked;
    let mut names: Vec<&str> = old
        .edges
        .iter()
        .chain(new.edges.iter())
        .map(|e| e.name.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut out = Vec::new();
    let entry = |edge: &str,
                 before: Option<(Vec<String>, Vec<String>)>,
                 after: Option<(Vec<String>, Vec<String>)>| {
        let change = match (&before, &after) {
            (None, _) => "enrolled",
            (_, None) => "revoked",
            _ => "rescoped",
        };
        let (old_read, old_write) = before.map_or((None, None), |(r, w)| (Some(r), Some(w)));
        let (new_read, new_write) = after.map_or((None, None), |(r, w)| (Some(r), Some(w)));
        AuditScope {
            v: AUDIT_RECORD_VERSION,
            edge: edge.to_string(),
            change: change.into(),
            old_read,
            old_write,
            new_read,
            new_write,
            key_id: String::new(),
            public_key: String::new(),
        }
    };
    for name in names {
        let (o, n) = (old.edge(name), new.edge(name));
        let mut dbs: Vec<&str> = o
            .iter()
            .chain(n.iter())
            .map(|e| e.database.as_str())
            .collect();
        dbs.sort_unstable();
        dbs.dedup();
        for db in dbs {
            let before = o.filter(|e| e.database == db).filter(live).map(scope);
            let after = n.filter(|e| e.database == db).filter(live).map(scope);
            if before != after {
                out.push((db.to_string(), entry(name, before, after)));
            }
        }
    }
    out
}

/// Writes the audit entries of [`scope_changes`] to the databases the hub
/// has open (one commit per database). A database that is not open (not in
/// the configuration any more) is skipped with a warning; a failed write is
/// logged.
pub async fn record_scope_changes(hub: &Hub, old: &Config, new: &Config) {
    let mut by_db: std::collections::BTreeMap<String, Batch> = Default::default();
    for (db, change) in scope_changes(old, new) {
        tracing::info!(
            database = %db,
            edge = %change.edge,
            change = %change.change,
            "audit: edge access changed"
        );
        by_db
            .entry(db)
            .or_default()
            .audit(AuditKind::ScopeChange, encode_record(&change));
    }
    for (db, identity, e) in cert_changes(old, new, crate::identity::now_s()) {
        tracing::info!(database = %db, edge = %identity, event = e.event, key = %crate::certs::hash_text(&e.key), "audit: certificate pin changed");
        crate::cert_session::record(hub, &db, &identity, &[e]).await;
    }
    for (name, batch) in by_db {
        let Some(handle) = hub.database(&name) else {
            tracing::warn!(database = %name, "audit: an edge's access changed on a database that is not open; not recorded");
            continue;
        };
        if let Err(e) = handle.db.commit(batch).await {
            tracing::error!(database = %name, error = %e, "audit: could not record an edge's access change");
        }
    }
}

/// The certificate events a new configuration makes that the hub did not
/// record itself (`crate::cert_session` records renewals, replacements,
/// drops and retirements as they happen): a pin an operator added
/// (`registered`), an expired pin removed (`purged`), any other pin removed
/// by hand (`removed`). By database and identity.
pub fn cert_changes(
    old: &Config,
    new: &Config,
    now: i64,
) -> Vec<(String, String, crate::cert_session::Event)> {
    use crate::cert_session::Event;
    let mut out = Vec::new();
    for n in &new.edges {
        let before = old.edge(&n.name).filter(|o| o.database == n.database);
        let had =
            |k: &crate::certs::KeyHash| before.is_some_and(|o| o.certs.iter().any(|c| &c.key == k));
        for c in n
            .certs
            .iter()
            .filter(|c| c.registered_by.is_none() && !had(&c.key))
        {
            out.push((
                n.database.clone(),
                n.name.clone(),
                Event::of("registered", c),
            ));
        }
    }
    for o in &old.edges {
        let after = new.edge(&o.name).filter(|n| n.database == o.database);
        let Some(after) = after else { continue };
        for c in &o.certs {
            if after.certs.iter().any(|k| k.key == c.key) {
                continue;
            }
            // Dropped by a newer replacement of the same registrar: the
            // session that registered it recorded that.
            let superseded = c.registered_by.is_some()
                && after
                    .certs
                    .iter()
                    .any(|k| k.registered_by == c.registered_by);
            let event = if now > c.not_after {
                "purged"
            } else if superseded {
                continue;
            } else {
                "removed"
            };
            out.push((o.database.clone(), o.name.clone(), Event::of(event, c)));
        }
    }
    out
}

/// `SIGHUP`, where there is such a thing.
struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    fn new() -> Hangup {
        #[cfg(unix)]
        {
            let signal =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            if signal.is_none() {
                tracing::warn!("cannot listen for SIGHUP; the configuration is still polled");
            }
            Hangup { signal }
        }
        #[cfg(not(unix))]
        Hangup {}
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(s) = self.signal.as_mut() {
            if s.recv().await.is_some() {
                return;
            }
            self.signal = None;
        }
        std::future::pending::<()>().await;
    }
}
