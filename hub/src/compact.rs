//! Tombstone compaction on the hub (docs/protocol.md §4, "Tombstone
//! compaction"; the work is `outpost::sync::compact`): the background task
//! that compacts every open database each `[compaction] interval_secs`,
//! and `POST /admin/compact` (admin token), which `outpost-hub compact`
//! uses when the hub holds the database.
//!
//! A run removes the plain tombstones every device seen within the
//! retention (`[compaction] retention_secs`) has acknowledged; a device not
//! seen for longer is listed as expired and resyncs when it comes back.
//! A run that leaves an eighth of the file free then vacuums the database
//! (`Database::vacuum`): the file gives its free space back.
//! Runs are one at a time across the hub; each is logged (watermark,
//! removed, held back by, expired devices, pages) and counted in
//! `outpost_tombstones_compacted_total{database}`.

use std::sync::Arc;
use std::time::Duration;

use outpost::sync::compact::{self, CompactReport};
use serde::{Deserialize, Serialize};

use crate::config::check_retention;
use crate::state::{DbHandle, Hub};

/// Path of the compaction endpoint.
pub const PATH: &str = "/admin/compact";

/// Records of the changes feed a run goes through per step (each step is
/// one commit).
pub const STEP: usize = 1000;

/// The request body of `POST /admin/compact`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompactRequest {
    /// The database.
    pub database: String,
    /// The retention for this run, in seconds, instead of the
    /// configuration's `[compaction] retention_secs`.
    #[serde(default)]
    pub retention_secs: Option<u64>,
}

/// The answer of `POST /admin/compact` (and what `outpost-hub compact`
/// prints in either mode).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactAnswer {
    /// The database.
    pub database: String,
    /// The retention the run used, in seconds.
    pub retention_secs: u64,
    /// The etag it compacted up to.
    pub watermark: u64,
    /// The device (`identity/device`) whose acknowledgement set the
    /// watermark, if any.
    pub held_back_by: Option<String>,
    /// Devices not seen within the retention that had not acknowledged
    /// everything (they resync when they come back).
    pub expired: Vec<String>,
    /// Tombstones removed by this run.
    pub removed: u64,
    /// The compaction horizon after the run.
    pub horizon: u64,
    /// Tombstones left in the database.
    pub tombstones_left: u64,
    /// Pages (4 KiB) the database's file held before the run.
    #[serde(default)]
    pub pages_before: u64,
    /// Pages it holds after (the run vacuums: the free pages at the end of
    /// the file go back to the file system).
    #[serde(default)]
    pub pages_after: u64,
}

impl CompactAnswer {
    /// The answer for `database` from the engine's report.
    pub fn new(database: &str, retention_secs: u64, r: CompactReport) -> CompactAnswer {
        CompactAnswer {
            database: database.to_string(),
            retention_secs,
            watermark: r.watermark,
            held_back_by: r.held_back_by,
            expired: r.expired,
            removed: r.removed,
            horizon: r.horizon,
            tombstones_left: r.tombstones_left,
            pages_before: r.pages_before,
            pages_after: r.pages_after,
        }
    }
}

/// Compacts `db` with a retention of `retention_secs` (no locking, no
/// metrics: the caller's). Used on the running hub and, by `outpost-hub
/// compact`, on a stopped hub's database.
pub async fn compact_db(
    db: &DbHandle,
    retention_secs: u64,
) -> Result<CompactAnswer, outpost::Error> {
    let r = compact::compact(
        &db.db,
        crate::session::now_ms(),
        crate::config::retention_ms(retention_secs),
        STEP,
        |_| {},
    )
    .await?;
    Ok(CompactAnswer::new(&db.name, retention_secs, r))
}

/// Compacts `db` on the running hub: one run at a time, logged, counted;
/// a database error is checked for a failed database (which the hub then
/// reopens). `by`: what asked (`interval`, `admin`), for the log.
async fn compact_on_hub(
    hub: &Arc<Hub>,
    db: &Arc<DbHandle>,
    retention_secs: u64,
    by: &str,
) -> Result<CompactAnswer, outpost::Error> {
    let _one = hub.compaction_lock().await;
    match compact_db(db, retention_secs).await {
        Ok(a) => {
            hub.metrics().tombstones_compacted(&db.name, a.removed);
            tracing::info!(
                database = %db.name,
                by,
                watermark = a.watermark,
                removed = a.removed,
                horizon = a.horizon,
                tombstones_left = a.tombstones_left,
                pages_before = a.pages_before,
                pages_after = a.pages_after,
                held_back_by = a.held_back_by.as_deref().unwrap_or("none"),
                expired = ?a.expired,
                "tombstone compaction"
            );
            Ok(a)
        }
        Err(e) => {
            tracing::error!(database = %db.name, by, error = %e, "tombstone compaction failed");
            hub.check_failed(db).await;
            Err(e)
        }
    }
}

/// Why a compaction on the running hub was refused: an HTTP status and a
/// message.
pub type Refused = (u16, String);

/// Runs `req` on the running hub's database (`POST /admin/compact`).
pub async fn run(hub: &Arc<Hub>, req: &CompactRequest) -> Result<CompactAnswer, Refused> {
    let retention_secs = req
        .retention_secs
        .unwrap_or_else(|| hub.config().compaction.retention_secs);
    check_retention(retention_secs).map_err(|m| (400, format!("retention_secs: {m}")))?;
    let db = hub.database_or_404(&req.database)?;
    compact_on_hub(hub, &db, retention_secs, "admin")
        .await
        .map_err(|e| (500, format!("database {}: {e}", req.database)))
}

/// The background task of `serve`: every `[compaction] interval_secs`
/// (read live; 0: never), compacts each open database with the configured
/// retention. Errors are logged; it ends when the hub stops.
pub async fn run_periodically(hub: Arc<Hub>) {
    let mut config = hub.config_watch();
    let mut shutdown = hub.shutdown_watch();
    let mut last = tokio::time::Instant::now();
    loop {
        let interval = hub.config().compaction.interval_secs;
        let due = async {
            if interval == 0 {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep_until(last + Duration::from_secs(interval)).await;
        };
        let changed = async {
            if config.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = due => {}
            // The interval may have changed: wait again, from the last run.
            () = changed => continue,
            _ = shutdown.wait_for(|s| *s) => return,
        }
        last = tokio::time::Instant::now();
        for db in hub.databases() {
            if hub.is_shutting_down() {
                return;
            }
            let retention_secs = hub.config().compaction.retention_secs;
            // Logged by compact_on_hub.
            let _ = compact_on_hub(&hub, &db, retention_secs, "interval").await;
        }
    }
}
