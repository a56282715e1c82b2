//! The hub's shared state: configuration, open databases, metrics, shutdown.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use outpost::Database;
use outpost::db::OpenOptions;
use outpost::store::file::{FileStore, FileStoreOptions};
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
    started: Instant,
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
    /// The database.
    pub db: Database<FileStore>,
    /// The last committed etag, for live sessions to wait on: every writer
    /// calls [`DbHandle::notify_committed`] after a commit.
    pub last_etag: watch::Sender<u64>,
    dir: PathBuf,
}

impl std::fmt::Debug for DbHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbHandle")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .field("last_etag", &*self.last_etag.borrow())
            .finish_non_exhaustive()
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
        let store = match FileStore::open(dir, FileStoreOptions::default()) {
            Ok(s) => s,
            Err(outpost::StoreError::Locked { path, holder }) => {
                return Err(HubError::InUse {
                    database: name.to_string(),
                    lock: match holder {
                        Some(h) => format!("{path}, held by {h}"),
                        None => path,
                    },
                });
            }
            Err(e) => return Err(open_err(outpost::OpenError::Store(e))),
        };
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
        let (last_etag, _) = watch::channel(db.stats().last_etag);
        Ok(DbHandle {
            name: name.to_string(),
            db,
            last_etag,
            dir: dir.to_path_buf(),
        })
    }

    /// Publishes the database's last etag to [`DbHandle::subscribe`]rs. Call
    /// after every commit, so live sessions wake up.
    pub fn notify_committed(&self) {
        let etag = self.db.stats().last_etag;
        self.last_etag.send_if_modified(|v| {
            if *v < etag {
                *v = etag;
                true
            } else {
                false
            }
        });
    }

    /// A receiver of the last committed etag (see [`DbHandle::notify_committed`]).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.last_etag.subscribe()
    }

    /// The database directory.
    pub fn dir(&self) -> &Path {
        &self.dir
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
            started: Instant::now(),
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
    pub async fn open_new_databases(&self, config: &Config) -> Result<()> {
        for d in &config.databases {
            if self.database(&d.name).is_some() {
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
            self.write_databases()
                .insert(d.name.clone(), Arc::new(handle));
        }
        Ok(())
    }

    /// The current configuration.
    pub fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }

    /// A receiver of every new configuration (live reload).
    pub fn config_watch(&self) -> watch::Receiver<Arc<Config>> {
        self.config.clone()
    }

    /// The open database named `name`.
    pub fn database(&self, name: &str) -> Option<Arc<DbHandle>> {
        self.read_databases().get(name).cloned()
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

    fn read_databases(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<DbHandle>>> {
        self.databases.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_databases(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<DbHandle>>> {
        self.databases.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

        let mut rx = a.subscribe();
        a.db.put("a/1", serde_json::json!({"n": 1})).await.unwrap();
        a.notify_committed();
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), a.db.stats().last_etag);
        a.notify_committed();
        assert!(!rx.has_changed().unwrap());

        a.close().await.unwrap();
        drop(a);
        let b = DbHandle::open("main", &dir).await.unwrap();
        assert_eq!(b.db.count().await.unwrap(), 1);
        b.close().await.unwrap();
        drop(b);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
