//! Subject purges on a running hub: `POST /admin/purge` (admin token), which
//! `outpost-hub purge` uses when the hub holds the database. The purge is
//! `outpost::sync::forget::purge_subject` on the open database (its commit
//! checks the served records it changes, so sessions authenticating
//! meanwhile are not lost); then every session of a device that now owes a
//! receipt ends with `Error(purge_pending)` (retryable), so that the device
//! reconnects at once and gets its order.

use std::sync::Arc;

use outpost::db::{AuditKind, AuditPurgeReceipt};
use outpost::sync::forget::{self, SubjectRequest};
use serde::{Deserialize, Serialize};

use crate::error::{HubError, Result as HubResult};
use crate::state::{DbHandle, Hub};

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

/// "1 document", "2 documents".
pub(crate) fn documents(n: u64) -> String {
    format!("{n} document{}", if n == 1 { "" } else { "s" })
}

/// The text of `outpost-hub purge status` for `db`: the purges made and,
/// for each, who still owes a receipt and who answered.
pub async fn status_text(db: &DbHandle) -> HubResult<String> {
    let err = |source| HubError::Database {
        database: db.name.clone(),
        source,
    };
    let markers = forget::markers(&db.db).await.map_err(err)?;
    let owed = forget::owed(&db.db).await.map_err(err)?;
    let mut receipts: Vec<(u64, AuditPurgeReceipt)> = Vec::new();
    crate::audit::each_entry(db, |e| {
        if e.kind == AuditKind::PurgeReceipt
            && let Ok(r) = serde_json::from_slice::<AuditPurgeReceipt>(&e.payload)
            && !r.markers.is_empty()
        {
            receipts.push((e.seq, r));
        }
        Ok(())
    })
    .await?;
    let mut out = format!("database {}\n", db.name);
    if markers.is_empty() {
        out.push_str("  no purge made\n");
        return Ok(out);
    }
    let mut pending = 0usize;
    for m in &markers {
        out.push_str(&format!(
            "  purge {}  {}  by {:?}{}  ({}): {}\n",
            m.number,
            outpost::doc::iso_time_ms(m.time_ms),
            m.by,
            if m.reason.is_empty() {
                String::new()
            } else {
                format!(", reason {:?}", m.reason)
            },
            m.request,
            documents(m.removed)
        ));
        let owing: Vec<&str> = owed
            .iter()
            .filter(|(_, l)| l.contains(&m.number))
            .map(|(n, _)| n.as_str())
            .collect();
        pending += owing.len();
        if owing.is_empty() {
            out.push_str("    receipts owed: none\n");
        } else {
            out.push_str(&format!("    receipts OWED by: {}\n", owing.join(", ")));
        }
        let got: Vec<String> = receipts
            .iter()
            .filter(|(_, r)| r.markers.contains(&m.number))
            .map(|(seq, r)| {
                format!(
                    "{} (order {}, {} erased, audit entry {seq}{})",
                    r.identity,
                    r.order,
                    r.removed,
                    if r.key_id.is_empty() {
                        ", unsigned"
                    } else {
                        ", signed"
                    }
                )
            })
            .collect();
        if !got.is_empty() {
            out.push_str(&format!("    receipts received: {}\n", got.join("; ")));
        }
    }
    out.push_str(&format!(
        "{pending} receipt{} owed in all\n",
        if pending == 1 { "" } else { "s" }
    ));
    Ok(out)
}
