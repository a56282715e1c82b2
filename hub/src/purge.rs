//! Subject purges on a running hub: `POST /admin/purge` (admin token), which
//! `outpost-hub purge` uses when the hub holds the database. The purge is
//! `outpost::sync::forget::purge_subject` on the open database (its commit
//! checks the served records it changes, so sessions authenticating
//! meanwhile are not lost); then every session of a device that now owes a
//! receipt ends with `Error(purge_pending)` (retryable), so that the device
//! reconnects at once and gets its order.

use std::sync::Arc;

use outpost::sync::forget::{self, SubjectRequest};
use serde::{Deserialize, Serialize};

use crate::state::Hub;

/// Path of the purge endpoint.
pub const PATH: &str = "/admin/purge";

/// The request body of `POST /admin/purge`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// The database.
    pub database: String,
    /// Exact ids.
    #[serde(default)]
    pub ids: Vec<String>,
    /// Id prefixes.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// A top-level field and the value it must equal.
    #[serde(default)]
    pub field: Option<(String, serde_json::Value)>,
    /// Who asks.
    pub by: String,
    /// Why.
    #[serde(default)]
    pub reason: String,
    /// Only count.
    #[serde(default)]
    pub dry_run: bool,
}

/// The answer of `POST /admin/purge` (and what `outpost-hub purge` prints
/// in either mode).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeAnswer {
    /// The marker written (`None`: nothing matched, or a dry run).
    pub marker: Option<u64>,
    /// Documents removed (or, in a dry run, that would be).
    pub removed: u64,
    /// The devices that owe a receipt.
    pub owed: Vec<String>,
    /// Free pages overwritten with zeros.
    pub pages_erased: u64,
}

impl From<forget::SubjectReport> for PurgeAnswer {
    fn from(r: forget::SubjectReport) -> PurgeAnswer {
        PurgeAnswer {
            marker: r.marker,
            removed: r.removed,
            owed: r.owed,
            pages_erased: r.pages_erased,
        }
    }
}

impl PurgeRequest {
    /// The engine's request.
    pub fn subject(&self) -> SubjectRequest {
        SubjectRequest {
            ids: self.ids.clone(),
            prefixes: self.prefixes.clone(),
            field: self.field.clone(),
            by: self.by.clone(),
            reason: self.reason.clone(),
            dry_run: self.dry_run,
        }
    }
}

/// Why a purge on the running hub failed: an HTTP status and a message.
pub type Refused = (u16, String);

/// Runs `req` on the running hub's database, then ends the sessions of the
/// devices that now owe a receipt.
pub async fn run(hub: &Arc<Hub>, req: &PurgeRequest) -> Result<PurgeAnswer, Refused> {
    let db = hub.database_or_404(&req.database)?;
    let now = crate::session::now_ms();
    match forget::purge_subject(&db.db, &req.subject(), now).await {
        Ok(r) => {
            if r.marker.is_some() {
                tracing::warn!(
                    database = %req.database,
                    by = %req.by,
                    marker = r.marker.unwrap_or_default(),
                    removed = r.removed,
                    owed = r.owed.len(),
                    "subject purge: documents removed and erased; ending the sessions of the devices that owe a receipt"
                );
                hub.purged();
            }
            Ok(r.into())
        }
        Err(outpost::Error::Input(e)) => Err((400, e.to_string())),
        Err(e) => Err((500, format!("database {}: {e}", req.database))),
    }
}
