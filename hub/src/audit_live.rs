//! The audit commands on a running hub: `POST /admin/audit` (the operator's
//! route, `crate::admin`) and the command line's side of it. A running hub
//! holds its databases, so `outpost-hub audit verify`, `who` and `export`
//! (and `edge status` and `purge status`, which read purge receipts from
//! the trail) send their question to it (where its `serving.json` says it listens, with
//! the admin token) instead of asking the operator to stop it: an
//! investigation ("who wrote this?") does not take every edge offline.
//!
//! The hub answers with the same functions a stopped hub's commands run
//! (`crate::audit`), over one snapshot of the database: `verify` and `who`
//! as JSON, `export` as JSON lines streamed a chunk of entries at a time
//! (at most two chunks wait for a slow client), ended by an end line
//! (`{"@audit_export": {"database", "entries"}}`) that the command checks
//! and never prints: an export cut short (the client gone, the hub shutting
//! down, a read failing) has no end line and the command says INCOMPLETE.

use std::io::Write;
use std::sync::Arc;

use axum::body::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::audit::{Author, Entries, Filter, Verified};
use crate::config::Config;
use crate::error::{HubError, Result};
use crate::state::{DbHandle, Hub};

/// The route.
pub const PATH: &str = "/admin/audit";
/// The key of the end line of a live `audit export`.
pub const END_KEY: &str = "@audit_export";

/// The body of `POST /admin/audit`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditRequest {
    /// The database.
    pub database: String,
    /// What is asked.
    pub query: Query,
}

/// An audit question.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Query {
    /// `audit verify`: the chain and the signatures ([`Verified`]).
    Verify,
    /// `audit who`: the accepted pushes that carried a version of `id`
    /// (with change vector `cv`, as text, when given).
    Who {
        /// The document id.
        id: String,
        /// Only this version.
        #[serde(default)]
        cv: Option<String>,
    },
    /// `audit export`: the entries that pass the filter, as JSON lines.
    Export(Filter),
    /// `edge status`: the purge orders `identity` still owes a receipt for
    /// and its receipts, as the text the command prints (`{"text": …}`).
    EdgeStatus {
        /// The edge identity.
        identity: String,
    },
    /// `purge status`: the purges made, who owes a receipt and who answered,
    /// as the text the command prints (`{"text": …}`).
    PurgeStatus,
}

/// The end line of a live export.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportEnd {
    /// The database.
    pub database: String,
    /// The entries sent before it.
    pub entries: u64,
}

/// What the hub answers: a JSON value, or a stream of lines.
pub enum Answer {
    /// `verify`'s or `who`'s JSON.
    Json(serde_json::Value),
    /// `export`'s lines, ended by the end line unless cut short.
    Lines(axum::body::Body),
}

/// The hub's answer to `req`; `Err((status, message))` for a refusal
/// (404: no such database; 400: a change vector that does not parse;
/// 500: the trail could not be read).
pub async fn answer(
    hub: &Arc<Hub>,
    req: AuditRequest,
    peer: String,
) -> std::result::Result<Answer, (u16, String)> {
    let db = hub.database_or_404(&req.database)?;
    let failed = |e: HubError| (500, e.to_string());
    match req.query {
        Query::Verify => {
            let v = crate::audit::verify(&db).await.map_err(failed)?;
            tracing::info!(database = %req.database, %peer, entries = v.entries, bad = v.first_bad.is_some(), "audit verified for the operator");
            Ok(Answer::Json(serde_json::json!(v)))
        }
        Query::Who { id, cv } => {
            let cv = cv
                .as_deref()
                .map(outpost::ChangeVector::parse_text)
                .transpose()
                .map_err(|e| (400, format!("cv: {e}")))?;
            let found = crate::audit::who(&db, &id, cv.as_ref())
                .await
                .map_err(failed)?;
            Ok(Answer::Json(serde_json::json!(found)))
        }
        Query::Export(filter) => Ok(Answer::Lines(export_stream(hub.clone(), db, filter, peer))),
        Query::EdgeStatus { identity } => {
            let s = crate::audit::purge_status(&db, &identity)
                .await
                .map_err(failed)?;
            let text = crate::audit::render_purge_status(&s);
            Ok(Answer::Json(serde_json::json!({ "text": text })))
        }
        Query::PurgeStatus => {
            let text = crate::purge::status_text(&db).await.map_err(failed)?;
            Ok(Answer::Json(serde_json::json!({ "text": text })))
        }
    }
}

/// Starts a task that reads the entries of `db` through one snapshot and
/// hands the lines that pass `filter` to the body it returns, then the end
/// line; it stops (no end line) when the client goes away, a read fails or
/// the hub shuts down.
fn export_stream(
    hub: Arc<Hub>,
    db: Arc<DbHandle>,
    filter: Filter,
    peer: String,
) -> axum::body::Body {
    let (tx, rx) = mpsc::channel::<Bytes>(2);
    tokio::spawn(async move {
        let sent = tokio::select! {
            r = send_entries(&db, &filter, &tx) => r,
            () = hub.shutdown_requested() => Err("the hub is shutting down".into()),
        };
        match sent {
            Ok(entries) => {
                tracing::info!(database = %db.name, %peer, entries, "audit export sent")
            }
            Err(why) => tracing::warn!(database = %db.name, %peer, "audit export cut short: {why}"),
        }
    });
    let lines = futures::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(chunk), rx))
    });
    axum::body::Body::from_stream(lines)
}

/// Sends the lines of the entries of `db` that pass `filter` to `tx`, a
/// chunk of entries at a time, then the end line; the entries sent, or why
/// it stopped.
async fn send_entries(
    db: &DbHandle,
    filter: &Filter,
    tx: &mpsc::Sender<Bytes>,
) -> std::result::Result<u64, String> {
    let gone = |_| "the client went away".to_string();
    let mut entries = Entries::new(db);
    let mut n = 0u64;
    loop {
        let chunk = entries.next_chunk().await.map_err(|e| e.to_string())?;
        if chunk.is_empty() {
            break;
        }
        let mut lines = Vec::new();
        n += crate::audit::export_lines(&db.name, filter, &chunk, &mut lines);
        if !lines.is_empty() {
            tx.send(Bytes::from(lines)).await.map_err(gone)?;
        }
    }
    let end = ExportEnd {
        database: db.name.clone(),
        entries: n,
    };
    let mut line = serde_json::to_vec(&serde_json::json!({ END_KEY: end })).unwrap_or_default();
    line.push(b'\n');
    tx.send(Bytes::from(line)).await.map_err(gone)?;
    Ok(n)
}

/// The request's body.
fn request_body(name: &str, query: Query) -> Result<Vec<u8>> {
    serde_json::to_vec(&AuditRequest {
        database: name.to_string(),
        query,
    })
    .map_err(|e| HubError::Other(format!("encode the audit request: {e}")))
}

/// `audit verify` of database `name`, asked of the running hub that holds
/// it.
pub async fn verify_remote(config: &Config, name: &str, admin: Option<&str>) -> Result<Verified> {
    json_remote(config, name, Query::Verify, "audit query", admin).await
}

/// `audit who` of database `name`, asked of the running hub that holds it.
pub async fn who_remote(
    config: &Config,
    name: &str,
    id: &str,
    cv: Option<&str>,
    admin: Option<&str>,
) -> Result<Vec<Author>> {
    let query = Query::Who {
        id: id.to_string(),
        cv: cv.map(str::to_string),
    };
    json_remote(config, name, query, "audit query", admin).await
}

/// `edge status` of `identity` in database `name`, asked of the running
/// hub that holds it: the text the command prints.
pub async fn edge_status_remote(
    config: &Config,
    name: &str,
    identity: &str,
    admin: Option<&str>,
) -> Result<String> {
    let query = Query::EdgeStatus {
        identity: identity.to_string(),
    };
    text_remote(config, name, query, "edge status", admin).await
}

/// `purge status` of database `name`, asked of the running hub that holds
/// it: the text the command prints.
pub async fn purge_status_remote(
    config: &Config,
    name: &str,
    admin: Option<&str>,
) -> Result<String> {
    text_remote(config, name, Query::PurgeStatus, "purge status", admin).await
}

/// A question whose answer is the text a command prints (`{"text": …}`).
async fn text_remote(
    config: &Config,
    name: &str,
    query: Query,
    what: &str,
    admin: Option<&str>,
) -> Result<String> {
    #[derive(Deserialize)]
    struct Text {
        text: String,
    }
    let t: Text = json_remote(config, name, query, what, admin).await?;
    Ok(t.text)
}

/// `query` about database `name`, asked of the running hub that holds it;
/// its JSON answer decoded.
async fn json_remote<T: serde::de::DeserializeOwned>(
    config: &Config,
    name: &str,
    query: Query,
    what: &str,
    admin: Option<&str>,
) -> Result<T> {
    let (url, ca, token) = crate::cli::send_to_holder(config, name, what, admin)?;
    let body = request_body(name, query)?;
    crate::hub_client::admin_request(&url, PATH, ca.as_deref(), token, &body, what).await
}

/// `audit export` of database `name`, asked of the running hub that holds
/// it: writes the entries' lines to `out` as they arrive and returns how
/// many. Fails, after writing what came, when the answer ends without its
/// end line or with another count: the output is then incomplete.
pub async fn export_remote(
    config: &Config,
    name: &str,
    filter: &Filter,
    admin: Option<&str>,
    out: impl Write,
) -> Result<u64> {
    let body = request_body(name, Query::Export(filter.clone()))?;
    let live = crate::transfer::LiveLines {
        path: PATH,
        what: "audit export",
        unit: "entries",
        end_key: END_KEY,
        total_header: None,
    };
    let (written, _, url) =
        crate::transfer::receive_lines(config, name, admin, &live, &body, out, |e: &ExportEnd| {
            e.entries
        })
        .await?;
    eprintln!("(exported by the running hub at {url})");
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for q in [
            Query::Verify,
            Query::Who {
                id: "notes/1".into(),
                cv: None,
            },
            Query::Export(Filter {
                edge: Some("alice".into()),
                id: None,
                since_ms: Some(5),
            }),
            Query::EdgeStatus {
                identity: "alice".into(),
            },
            Query::PurgeStatus,
        ] {
            let body = request_body("main", q).unwrap();
            let back: AuditRequest = serde_json::from_slice(&body).unwrap();
            assert_eq!(back.database, "main");
            assert_eq!(serde_json::to_vec(&back).unwrap(), body);
        }
    }
}
