//! The hub's shared state: configuration, open databases, metrics, shutdown.

use outpost::sync::feed::FeedCache;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use outpost::db::OpenOptions;
use outpost::store::file::{FileStore, FileStoreOptions};
use outpost::{Batch, Database};
use tokio::sync::watch;

use crate::config::Config;
use crate::error::{HubError, Result};
use crate::metrics::Metrics;

/// The hub: shared by every connection and task (`Arc<Hub>`).
pub struct Hub {
    config: watch::Receiver<Arc<Config>>,
    databases: RwLock<BTreeMap<String, Arc<DbHandle>>>,
    metrics: Metrics,
    shutdown: watch::Sender<bool>,
    /// Bumped after each subject purge on the running hub.
    purges: watch::Sender<u64>,
    started: Instant,
    /// Databases that failed and are being reopened, by name.
    failures: Mutex<BTreeMap<String, DbFailure>>,
    /// When each database was last reopened after a failure, and the reopen
    /// attempts it took (a database failing again soon after goes on with a
    /// longer delay instead of starting over: no tight fail/reopen loop).
    reopened: Mutex<BTreeMap<String, (Instant, u32)>>,
    /// Bumped whenever a database fails or is reopened (upstream links wait
    /// on it).
    generation: watch::Sender<u64>,
    /// Publishes a configuration the hub changed itself (an enrollment code
    /// redeemed), so the next session sees it at once; `None` when the hub
    /// was opened without one (the change then arrives by the file watch).
    config_tx: Mutex<Option<watch::Sender<Arc<Config>>>>,
    /// The per-identity rate limits (`[limits]`), shared by sessions.
    rate_limits: crate::ratelimit::RateLimits,
    /// Held while a tombstone compaction runs (`crate::compact`): one at
    /// a time.
    compacting: tokio::sync::Mutex<()>,
    /// Each database's shared output collections (indexes computed here
    /// with `hubComputed`), set when the index modules load
    /// (`crate::indexes`) and stated in every session's grant.
    shared_outputs: Mutex<BTreeMap<String, Vec<String>>>,
}

/// First delay before reopening a failed database.
pub const REOPEN_FIRST_DELAY: Duration = Duration::from_secs(1);
/// Longest delay between two reopen attempts (the delay doubles from
/// [`REOPEN_FIRST_DELAY`] up to this, and attempts go on until one succeeds
/// or the hub stops).
pub const REOPEN_MAX_DELAY: Duration = Duration::from_secs(60);
/// A database failing again within this time of being reopened keeps its
/// backoff instead of starting over at [`REOPEN_FIRST_DELAY`].
pub const REOPEN_SETTLE: Duration = Duration::from_secs(120);

/// The delay before reopen attempt `n` (0-based): 1 s, 2 s, 4 s, … 60 s.
pub fn reopen_delay(n: u32) -> Duration {
    REOPEN_FIRST_DELAY
        .saturating_mul(1u32 << n.min(16))
        .min(REOPEN_MAX_DELAY)
}

/// A database that failed (a write hit a disk error and the engine refuses
/// every later write until the database is reopened), as shown by
/// `/healthz`, `/status` and `/metrics`.
#[derive(Debug, Clone)]
pub struct DbFailure {
    /// The error that made it fail.
    pub error: String,
    /// When (milliseconds since the Unix epoch).
    pub since_ms: i64,
    /// Reopen attempts made since.
    pub reopen_attempts: u32,
    /// Why the last reopen attempt failed.
    pub last_attempt_error: Option<String>,
    /// When the next attempt is due (milliseconds since the Unix epoch).
    pub next_attempt_ms: Option<i64>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("databases", &self.database_names())
            .field("uptime", &self.uptime())
            .finish_non_exhaustive()
    }
}

/// One open database of the hub.
pub struct DbHandle {
    /// Its name (from the configuration).
    pub name: String,
    /// The database (its commits: [`Database::watch_commits`]).
    pub db: Database<FileStore>,
    /// `Some(error)` once the database failed: sessions using this handle
    /// end (see [`DbHandle::failed_watch`]).
    failed: watch::Sender<Option<String>>,
    dir: PathBuf,
    /// The last pages of the changes feed the sessions read: a commit that
    /// wakes every session is read once (`outpost::sync::feed`).
    pub feed: FeedCache,
    /// Whether a live import (`POST /admin/import`) is writing into it: one
    /// at a time (`crate::import_live`).
    pub(crate) importing: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for DbHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbHandle")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .field("last_etag", &self.db.stats().last_etag)
            .finish_non_exhaustive()
    }
}

/// A store that would not open: [`HubError::InUse`] when another process
/// holds it, else [`HubError::Open`].
fn store_open_error(name: &str, e: outpost::StoreError) -> HubError {
    match e {
        outpost::StoreError::Locked { path, holder } => HubError::InUse {
            database: name.to_string(),
            lock: match holder {
                Some(h) => format!("{path}, held by {h}"),
                None => path,
            },
        },
        e => HubError::Open {
            database: name.to_string(),
            source: outpost::OpenError::Store(e),
        },
    }
}

impl DbHandle {
    /// Opens (creating if needed) database `name` in directory `dir`, after
    /// taking the exclusive lock `dir/LOCK`. Fails with
    /// [`HubError::InUse`] if another process holds it.
    pub async fn open(name: &str, dir: &Path) -> Result<DbHandle> {
        std::fs::create_dir_all(dir)
            .map_err(|e| HubError::io(format!("create {}", dir.display()), e))?;
        let open_err = |source: outpost::OpenError| HubError::Open {
            database: name.to_string(),
            source,
        };
        // The store holds the exclusive lock `dir/LOCK` for as long as it is
        // open: a second hub, a CLI, anything else is refused.
        // Commits stay on the writer thread: a lone commit written in the
        // caller's thread would block a runtime worker, and the sessions
        // on it, for the length of an fsync.
        let opts = FileStoreOptions {
            inline_commit: false,
            ..FileStoreOptions::default()
        };
        let store = FileStore::open(dir, opts).map_err(|e| store_open_error(name, e))?;
        if let Some(t) = store.recovery().dropped_tail {
            tracing::warn!(
                database = name,
                offset = t.offset,
                bytes = t.bytes,
                "recovery dropped a torn WAL tail ({} frames, {} bytes at offset {}): \
                 a write that was never acknowledged as durable",
                t.frames,
                t.bytes,
                t.offset
            );
        }
        let db = Database::open(store, OpenOptions::default())
            .await
            .map_err(open_err)?;
        Ok(DbHandle::new(name, db, dir))
    }

    /// Opens database `name` in directory `dir` for reading only (`export`):
    /// nothing is written, so it works on a full disk and a read-only file
    /// system. Refused with [`HubError::InUse`] while a writer (a running hub)
    /// holds it.
    pub async fn open_read_only(name: &str, dir: &Path) -> Result<DbHandle> {
        let store = FileStore::open_read_only(dir, FileStoreOptions::default())
            .map_err(|e| store_open_error(name, e))?;
        let db = Database::open_read_only(store, OpenOptions::default())
            .await
            .map_err(|source| HubError::Open {
                database: name.to_string(),
                source,
            })?;
        Ok(DbHandle::new(name, db, dir))
    }

    /// The handle of database `name`, open in `dir`, not failed.
    fn new(name: &str, db: Database<FileStore>, dir: &Path) -> DbHandle {
        DbHandle {
            name: name.to_string(),
            db,
            failed: watch::channel(None).0,
            dir: dir.to_path_buf(),
            feed: FeedCache::new(),
            importing: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The database directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A receiver that changes to `Some(error)` when this handle's database
    /// fails: whoever holds the handle must drop it (the hub reopens the
    /// database once every holder has let go of the old handle).
    pub fn failed_watch(&self) -> watch::Receiver<Option<String>> {
        self.failed.subscribe()
    }

    /// Why this handle's database failed, if it did.
    pub fn failure(&self) -> Option<String> {
        self.failed.borrow().clone()
    }

    /// Flushes and closes the database, and releases its lock.
    pub async fn close(&self) -> Result<()> {
        self.db.close().await.map_err(|source| HubError::Database {
            database: self.name.clone(),
            source,
        })
    }
}

impl Hub {
    /// Opens every database of the current configuration and returns the hub.
    /// On failure, the databases already opened are closed again.
    pub async fn open(config: watch::Receiver<Arc<Config>>) -> Result<Arc<Hub>> {
        let hub = Arc::new(Hub {
            config,
            databases: RwLock::new(BTreeMap::new()),
            metrics: Metrics::new(),
            shutdown: watch::channel(false).0,
            purges: watch::channel(0).0,
            started: Instant::now(),
            failures: Mutex::new(BTreeMap::new()),
            reopened: Mutex::new(BTreeMap::new()),
            generation: watch::channel(0).0,
            config_tx: Mutex::new(None),
            rate_limits: crate::ratelimit::RateLimits::default(),
            compacting: tokio::sync::Mutex::new(()),
            shared_outputs: Mutex::new(BTreeMap::new()),
        });
        let current = hub.config();
        if let Err(e) = hub.open_new_databases(&current).await {
            let _ = hub.close().await;
            return Err(e);
        }
        Ok(hub)
    }

    /// Opens the databases of `config` that are not open yet (a reload may
    /// add some). Databases removed from the configuration stay open until
    /// the hub restarts; sessions check the configuration before using one.
    ///
    /// Also keeps each open database's deletion guards (`never_delete`) in
    /// its local record, where the engine checks what edges push.
    pub async fn open_new_databases(&self, config: &Config) -> Result<()> {
        for d in &config.databases {
            if let Some(handle) = self.database(&d.name) {
                let guards = outpost::policy::DeletionGuards::new(d.never_delete.iter().cloned());
                match outpost::sync::driver::keep_guards(&handle.db, &guards).await {
                    Ok(true) => {
                        tracing::info!(database = %d.name, never_delete = ?guards.collections(), "deletion guards in force")
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(database = %d.name, error = %e, "could not store the deletion guards")
                    }
                }
                continue;
            }
            if self.failure(&d.name).is_some() {
                continue;
            }
            let handle = DbHandle::open(&d.name, &config.database_dir(&d.name)).await?;
            tracing::info!(
                database = %d.name,
                dir = %handle.dir().display(),
                documents = handle.db.stats().documents,
                last_etag = handle.db.stats().last_etag,
                "database open"
            );
            let guards = outpost::policy::DeletionGuards::new(d.never_delete.iter().cloned());
            outpost::sync::driver::keep_guards(&handle.db, &guards)
                .await
                .map_err(|source| HubError::Database {
                    database: d.name.clone(),
                    source,
                })?;
            self.write_databases()
                .insert(d.name.clone(), Arc::new(handle));
        }
        Ok(())
    }

    /// The current configuration.
    pub fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }

    /// Lets the hub publish configurations it wrote itself (see
    /// [`Hub::publish_config`]).
    pub fn set_config_sender(&self, tx: watch::Sender<Arc<Config>>) {
        *self.config_tx.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    }

    /// Puts `config` in force at once (the hub just wrote it to its file:
    /// an enrollment); sessions and the audit follow it like a reload.
    pub fn publish_config(&self, config: Config) {
        if let Some(tx) = &*self.config_tx.lock().unwrap_or_else(|p| p.into_inner()) {
            tx.send_replace(Arc::new(config));
        }
    }

    /// A receiver of every new configuration (live reload).
    pub fn config_watch(&self) -> watch::Receiver<Arc<Config>> {
        self.config.clone()
    }

    /// The open database named `name`.
    pub fn database(&self, name: &str) -> Option<Arc<DbHandle>> {
        self.read_databases().get(name).cloned()
    }

    /// The open database named `name` for an admin request (`/admin/*`),
    /// or its refusal: 503 while it has failed and is being reopened (the
    /// request can be sent again), else 404 naming it.
    pub fn database_or_404(&self, name: &str) -> std::result::Result<Arc<DbHandle>, (u16, String)> {
        if let Some(db) = self.database(name) {
            return Ok(db);
        }
        match self.failure(name) {
            Some(f) => Err((
                503,
                format!(
                    "database {name} failed ({}) and is being reopened; try again once /healthz says it is ok",
                    f.error
                ),
            )),
            None => Err((404, format!("no open database named {name:?}"))),
        }
    }

    /// Every open database, by name.
    pub fn databases(&self) -> Vec<Arc<DbHandle>> {
        self.read_databases().values().cloned().collect()
    }

    /// The names of the open databases.
    pub fn database_names(&self) -> Vec<String> {
        self.read_databases().keys().cloned().collect()
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The per-identity rate limits.
    pub fn rate_limits(&self) -> &crate::ratelimit::RateLimits {
        &self.rate_limits
    }

    /// Waits for, and holds, the right to run a tombstone compaction
    /// (`crate::compact`): one at a time.
    pub async fn compaction_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.compacting.lock().await
    }

    /// Time since the hub started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Asks every task of the hub to stop (idempotent).
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Whether a shutdown was asked for.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Resolves once a shutdown is asked for. Long-lived tasks (sessions,
    /// upstream links) select on it and end.
    pub async fn shutdown_requested(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// A receiver of the shutdown flag (`true` once asked).
    pub fn shutdown_watch(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// A receiver that changes after each subject purge made on the running
    /// hub (`crate::purge`): sessions of devices that now owe a receipt end,
    /// so that they reconnect and get their order.
    pub fn purge_watch(&self) -> watch::Receiver<u64> {
        self.purges.subscribe()
    }

    /// Tells the sessions a subject purge was made.
    pub fn purged(&self) {
        self.purges.send_modify(|n| *n += 1);
    }

    /// Flushes and closes every database; returns the first error. The
    /// handles stay in the hub (closed) until it is dropped.
    pub async fn close(&self) -> Result<()> {
        let mut first = None;
        for handle in self.databases() {
            match handle.close().await {
                Ok(()) => tracing::info!(database = %handle.name, "database closed"),
                Err(e) => {
                    tracing::error!(database = %handle.name, error = %e, "closing failed");
                    first.get_or_insert(e);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Records the shared output collections of `database`'s indexes.
    pub fn set_shared_outputs(&self, database: &str, collections: Vec<String>) {
        lock(&self.shared_outputs).insert(database.to_string(), collections);
    }

    /// `grant` with its database's shared output collections (a session's
    /// grant: `crate::session::grant_for` reads only the configuration).
    pub fn with_shared_outputs(
        &self,
        mut grant: outpost::sync::Grant,
        database: &str,
    ) -> outpost::sync::Grant {
        grant.hub_outputs = lock(&self.shared_outputs)
            .get(database)
            .cloned()
            .unwrap_or_default();
        grant
    }

    /// The failure of database `name`, while it is failed (being reopened).
    pub fn failure(&self, name: &str) -> Option<DbFailure> {
        lock(&self.failures).get(name).cloned()
    }

    /// Every failed database, by name.
    pub fn failures(&self) -> BTreeMap<String, DbFailure> {
        lock(&self.failures).clone()
    }

    /// A receiver bumped whenever a database fails or is reopened.
    pub fn generation_watch(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Call after a write or read of `handle` failed: finds out whether its
    /// database failed for good (the engine refuses writes until it is
    /// reopened) and if so marks it failed (see [`Hub::database_failed`]).
    /// Returns the failure, or `None` if the database still takes writes
    /// (the error was of that one operation).
    ///
    /// The probe is an empty commit: refused at once by a failed database;
    /// on a healthy one it costs one small durable write, which is fine on
    /// this error path.
    pub async fn check_failed(self: &Arc<Self>, handle: &Arc<DbHandle>) -> Option<String> {
        if let Some(f) = handle.failure() {
            return Some(f);
        }
        match handle.db.commit(Batch::new()).await {
            Ok(_) => None,
            Err(outpost::Error::Poisoned(why)) => {
                self.database_failed(handle, why.clone());
                Some(why)
            }
            Err(
                e @ (outpost::Error::Store(_)
                | outpost::Error::Corrupt { .. }
                | outpost::Error::CorruptRecord { .. }),
            ) => {
                let why = e.to_string();
                self.database_failed(handle, why.clone());
                Some(why)
            }
            Err(outpost::Error::Closed) => Some(
                handle
                    .failure()
                    .unwrap_or_else(|| "the database is closed".to_string()),
            ),
            Err(e) => {
                tracing::warn!(database = %handle.name, error = %e, "unexpected error from the database probe");
                None
            }
        }
    }

    /// Marks the database of `handle` failed: logs one ERROR line, takes the
    /// handle out of the hub (new sessions are told the database is
    /// unavailable, a retryable reason), tells the holders of the handle
    /// (sessions, upstream links) to let go of it, and starts a task that
    /// reopens the database with backoff once they did. Idempotent.
    pub fn database_failed(self: &Arc<Self>, handle: &Arc<DbHandle>, error: String) {
        let name = handle.name.clone();
        {
            let mut failures = lock(&self.failures);
            if failures.contains_key(&name) || handle.failure().is_some() {
                return;
            }
            failures.insert(
                name.clone(),
                DbFailure {
                    error: error.clone(),
                    since_ms: crate::session::now_ms(),
                    reopen_attempts: 0,
                    last_attempt_error: None,
                    next_attempt_ms: None,
                },
            );
            handle.failed.send_replace(Some(error.clone()));
            let mut dbs = self.write_databases();
            if dbs.get(&name).is_some_and(|h| Arc::ptr_eq(h, handle)) {
                dbs.remove(&name);
            }
        }
        self.metrics.database_failed(&name);
        tracing::error!(
            database = %name,
            dir = %handle.dir.display(),
            error = %error,
            "database failed: its writes are refused until it is reopened; edges are told it is unavailable (retryable); reopening in the background"
        );
        self.generation.send_modify(|g| *g += 1);
        tokio::spawn(self.clone().reopen(handle.clone()));
    }

    /// Waits until every holder dropped `old`, closes it, then reopens the
    /// database with backoff ([`reopen_delay`]) until it opens and takes a
    /// durable write, or the hub stops.
    async fn reopen(self: Arc<Self>, old: Arc<DbHandle>) {
        let name = old.name.clone();
        // 1. The old handle (its database, files and lock) must be gone
        // before the database is opened again.
        let mut old = Some(old);
        let waiting = Instant::now();
        let mut warned = Duration::ZERO;
        let handle = loop {
            match Arc::try_unwrap(old.take().expect("held")) {
                Ok(h) => break h,
                Err(a) => old = Some(a),
            }
            if self.is_shutting_down() {
                return;
            }
            if waiting.elapsed() >= warned + Duration::from_secs(30) {
                warned = waiting.elapsed();
                tracing::warn!(database = %name, waited = ?warned, "the failed database is still in use; waiting for its sessions to end before reopening it");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if let Err(e) = handle.close().await {
            tracing::debug!(database = %name, error = %e, "closing the failed database");
        }
        drop(handle);

        // 2. Reopen, with backoff.
        let mut attempt = {
            let recent = lock(&self.reopened);
            match recent.get(&name) {
                Some((at, n)) if at.elapsed() < REOPEN_SETTLE => *n,
                _ => 0,
            }
        };
        let mut shutdown = self.shutdown_watch();
        loop {
            let delay = reopen_delay(attempt);
            self.update_failure(&name, |f| {
                f.next_attempt_ms = Some(crate::session::now_ms() + delay.as_millis() as i64);
            });
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let config = self.config();
            if config.database(&name).is_none() {
                tracing::warn!(database = %name, "the failed database was removed from the configuration; not reopening it");
                lock(&self.failures).remove(&name);
                self.generation.send_modify(|g| *g += 1);
                return;
            }
            attempt = attempt.saturating_add(1);
            self.metrics.database_reopen_attempt(&name);
            let result = match DbHandle::open(&name, &config.database_dir(&name)).await {
                Ok(h) => match h.db.commit(Batch::new()).await {
                    Ok(_) => Ok(h),
                    Err(e) => {
                        let _ = h.close().await;
                        drop(h);
                        Err(format!("the database opened but a test write failed: {e}"))
                    }
                },
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok(h) => {
                    if self.is_shutting_down() {
                        let _ = h.close().await;
                        return;
                    }
                    let stats = h.db.stats();
                    {
                        let mut failures = lock(&self.failures);
                        failures.remove(&name);
                        self.write_databases().insert(name.clone(), Arc::new(h));
                    }
                    lock(&self.reopened).insert(name.clone(), (Instant::now(), attempt));
                    self.metrics.database_reopened(&name);
                    self.generation.send_modify(|g| *g += 1);
                    tracing::info!(
                        database = %name,
                        attempts = attempt,
                        documents = stats.documents,
                        last_etag = stats.last_etag,
                        "database reopened after its failure; writes are taken again"
                    );
                    return;
                }
                Err(e) => {
                    tracing::warn!(database = %name, attempt, error = %e, next_in = ?reopen_delay(attempt), "reopening the failed database failed; retrying");
                    self.update_failure(&name, |f| {
                        f.reopen_attempts = f.reopen_attempts.saturating_add(1);
                        f.last_attempt_error = Some(e.clone());
                    });
                }
            }
        }
    }

    fn update_failure(&self, name: &str, f: impl FnOnce(&mut DbFailure)) {
        if let Some(x) = lock(&self.failures).get_mut(name) {
            f(x);
        }
    }

    fn read_databases(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<DbHandle>>> {
        self.databases.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_databases(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<DbHandle>>> {
        self.databases.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "outpost-hub-state-{tag}-{}-{:?}",
            std::process::id(),
            Instant::now()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[tokio::test]
    async fn lock_is_exclusive_and_released_on_drop() {
        let dir = temp_dir("lock");
        let a = DbHandle::open("main", &dir).await.unwrap();
        let e = DbHandle::open("main", &dir).await.unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, HubError::InUse { .. }), "{msg}");
        assert!(
            msg.contains("database main is in use by another process (lock file"),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("process {}", std::process::id())),
            "{msg}"
        );

        // Live sessions wait on the engine's commit observer: a commit wakes
        // them once, with the new last etag.
        let mut rx = a.db.watch_commits();
        a.db.put("a/1", serde_json::json!({"n": 1})).await.unwrap();
        assert_eq!(rx.changed().now_or_never(), Some(Some(a.db.last_etag())));
        assert!(rx.changed().now_or_never().is_none());

        a.close().await.unwrap();
        drop(a);
        let b = DbHandle::open("main", &dir).await.unwrap();
        assert_eq!(b.db.count().await.unwrap(), 1);
        b.close().await.unwrap();
        drop(b);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
