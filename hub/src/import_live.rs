//! `import` on a running hub: `POST /admin/import` (the operator's route,
//! `crate::admin`) and the command line's side of it. A running hub holds
//! its databases, so `outpost-hub import FILE` sends the lines to it (where
//! its `serving.json` says it listens, with the admin token) instead of
//! asking the operator to stop it: loading a clinic's records does not take
//! every edge offline, and the edges receive the documents as they are
//! committed.
//!
//! The request: `POST /admin/import?database=NAME[&batch=N][&strict=true]
//! [&collection=NAME]` (percent-encoded values), the admin token, and the
//! JSON lines as the body, of any length (chunked or with a
//! `Content-Length`). The hub checks the token and the query before it
//! takes a byte of the body (a client that says `Expect: 100-continue`, as
//! the command and curl do, sends nothing when refused), then imports the
//! body as it arrives with the one import routine (`outpost::jsonl::Import`:
//! the same lines, batches, limits and bad-line rules as `outpost-hub
//! import` on a stopped hub), so its memory is one batch whatever the size,
//! and a client that sends faster than the hub commits is slowed down. One
//! import per database at a time (409 for a second).
//!
//! The answer (200 once the first piece of the body arrived) is one JSON
//! line, `{"@import": ImportEnd}`, sent when the body ended and the last
//! batch is committed: what was imported, the first bad lines, and why the
//! import stopped early if it did (`--strict`, a refused batch, the upload
//! cut short or stalled, the hub shutting down). An import stopped by its
//! input reads the rest of the body and drops it, so that a client still
//! sending gets that answer rather than a connection closed under it.
//! Batches committed before a stop stay, as with the command on a stopped
//! hub; the batch under way is not written. The hub writes the documents
//! itself (no edge signs them): the audit trail has no entry for them
//! (`audit who` says the hub wrote them, as for an import on a stopped hub)
//! and the hub's log names the import and its peer.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::{Body, Bytes};
use futures::StreamExt;
use outpost::jsonl::{Import, ImportAudit, ImportEvent, ImportOptions, ImportSummary};
use outpost_cmdline::{ImportArgs, ImportReport, Input, MAX_REPORTED_BAD_LINES};
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::{HubError, Result};
use crate::state::{DbHandle, Hub};

/// The route.
pub const PATH: &str = "/admin/import";
/// The key of the answer's line: `{"@import": ImportEnd}`.
pub const END_KEY: &str = "@import";

/// How long the hub waits for each piece of the body: a client that stops
/// sending ends its import (`stalled`) instead of holding the database's
/// one import slot while its connection stays open. The command line's
/// client allows each of its writes as long.
pub const PIECE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// What a live import is asked to do: the query string of `POST
/// /admin/import`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportQuery {
    /// The database to import into.
    pub database: String,
    /// Documents per atomic commit (default 1,000, as the command's
    /// `--batch`).
    pub batch: Option<u64>,
    /// Stop at the first bad line instead of skipping it.
    pub strict: bool,
    /// Collection for lines that name none.
    pub collection: Option<String>,
    /// Who runs the import, as the operator says (recorded in the audit
    /// trail; the command sends `--by`).
    pub by: Option<String>,
    /// The input's name (recorded in the audit trail; the command sends
    /// the file's path).
    pub source: Option<String>,
}

/// What the audit trail records for a `by` or `source` not given.
pub const NOT_GIVEN: &str = "(not given)";

/// Longest `by` and `source` of an import request, in bytes.
pub const MAX_LABEL: usize = 256;

/// Checks a `by` or `source` label: at most [`MAX_LABEL`] bytes, no
/// control characters (it is printed by `audit who`).
pub fn check_label(key: &str, value: &str) -> std::result::Result<(), String> {
    if value.len() > MAX_LABEL {
        return Err(format!("{key}: {} bytes; at most {MAX_LABEL}", value.len()));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{key}: control characters are not allowed"));
    }
    Ok(())
}

impl ImportQuery {
    /// Parses a query string (`None`: there was none). Unknown and repeated
    /// parameters are refused, as an admin request's unknown fields are.
    pub fn parse(query: Option<&str>) -> std::result::Result<ImportQuery, String> {
        let mut q = ImportQuery::default();
        let mut seen: Vec<&str> = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode_str(raw)
                .decode_utf8()
                .map_err(|_| format!("{key}: not UTF-8 once percent-decoded"))?
                .into_owned();
            if seen.contains(&key) {
                return Err(format!("{key} is given twice"));
            }
            seen.push(key);
            match key {
                "database" => q.database = value,
                "batch" => {
                    let n = value
                        .parse::<u64>()
                        .ok()
                        .filter(|n| (1..=1_000_000).contains(n))
                        .ok_or_else(|| {
                            format!("batch: {value:?} is not a number from 1 to 1000000")
                        })?;
                    q.batch = Some(n);
                }
                "strict" => {
                    q.strict = match value.as_str() {
                        "" | "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(format!("strict: {value:?} is not true or false")),
                    }
                }
                "collection" => q.collection = Some(value),
                "by" | "source" => {
                    check_label(key, &value)?;
                    if key == "by" {
                        q.by = Some(value);
                    } else {
                        q.source = Some(value);
                    }
                }
                _ => {
                    return Err(format!(
                        "unknown parameter {key:?} (database, batch, strict, collection, by, source)"
                    ));
                }
            }
        }
        if q.database.is_empty() {
            return Err("database= is missing: the database to import into".to_string());
        }
        Ok(q)
    }

    /// The query string (without `?`) that [`ImportQuery::parse`] reads back.
    pub fn to_query(&self) -> String {
        let enc = |v: &str| utf8_percent_encode(v, NON_ALPHANUMERIC).to_string();
        let mut q = format!("database={}", enc(&self.database));
        if let Some(n) = self.batch {
            q.push_str(&format!("&batch={n}"));
        }
        if self.strict {
            q.push_str("&strict=true");
        }
        if let Some(c) = &self.collection {
            q.push_str(&format!("&collection={}", enc(c)));
        }
        if let Some(b) = &self.by {
            q.push_str(&format!("&by={}", enc(b)));
        }
        if let Some(s) = &self.source {
            q.push_str(&format!("&source={}", enc(s)));
        }
        q
    }

    /// The import's options, checked as the command checks its arguments;
    /// each batch is recorded in the audit trail as coming `via` the
    /// request as the hub saw it.
    fn options(&self, via: String) -> std::result::Result<ImportOptions, String> {
        let mut opts = ImportArgs {
            batch: self.batch.unwrap_or(1000),
            strict: self.strict,
            collection: self.collection.clone(),
        }
        .options()
        .map_err(|e| format!("collection: {e}"))?;
        let said = |v: &Option<String>| v.clone().unwrap_or_else(|| NOT_GIVEN.to_string());
        opts.audit = Some(ImportAudit {
            by: said(&self.by),
            via,
            source: said(&self.source),
        });
        Ok(opts)
    }
}

/// The answer of a live import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportEnd {
    /// The database.
    pub database: String,
    /// What was done.
    pub summary: ImportSummary,
    /// The first bad lines skipped (at most
    /// [`outpost_cmdline::MAX_REPORTED_BAD_LINES`]; `summary.bad` counts
    /// them all).
    pub bad_lines: Vec<BadLine>,
    /// Why the import stopped before the body's end, if it did.
    pub stopped: Option<Stopped>,
    /// Time from the first piece of the body to the answer.
    pub elapsed_ms: u64,
}

/// A bad line a live import skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadLine {
    /// Its number (1-based).
    pub line: u64,
    /// What is wrong with it.
    pub message: String,
    /// A stable code (`invalid_json`, `invalid_id`, `too_large`, …).
    pub code: String,
}

/// Why a live import stopped early.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stopped {
    /// A stable code: the import's (`outpost::jsonl::ImportError::code`),
    /// `cut_short` (the upload ended without the body's end), `stalled`
    /// (no piece of it for [`PIECE_TIMEOUT`]) or `shutting_down`.
    pub code: String,
    /// What happened.
    pub message: String,
}

/// Marks a database as being imported into while it lives.
struct Slot(Arc<DbHandle>);

impl Slot {
    fn take(db: Arc<DbHandle>) -> Option<Slot> {
        db.importing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Slot(db))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.importing.store(false, Ordering::Release);
    }
}

/// The hub's side of `POST /admin/import` (the operator checked): the
/// answer's body, once the body's first piece arrived (reading it sends
/// `100 Continue` to a client that waits for it); `Err((status, message))`
/// for a refusal, before any of the body is read (400: a bad option; 404:
/// no such database; 409: an import into it is under way), or 408 when no
/// body came within [`PIECE_TIMEOUT`].
pub async fn answer(
    hub: &Arc<Hub>,
    query: ImportQuery,
    body: Body,
    peer: String,
    caller: String,
) -> std::result::Result<Body, (u16, String)> {
    let opts = query
        .options(format!("POST /admin/import from {peer} with {caller}"))
        .map_err(|e| (400, e))?;
    let db = hub.database_or_404(&query.database)?;
    let slot = Slot::take(db).ok_or_else(|| {
        (
            409,
            format!(
                "an import into database {} is under way; wait for it to end",
                query.database
            ),
        )
    })?;
    let mut stream = body.into_data_stream();
    let first = tokio::time::timeout(PIECE_TIMEOUT, stream.next())
        .await
        .map_err(|_| {
            (
                408,
                format!("no body came within {} s", PIECE_TIMEOUT.as_secs()),
            )
        })?;
    let (tx, rx) = tokio::sync::oneshot::channel::<Bytes>();
    let hub = hub.clone();
    tokio::spawn(async move {
        let name = slot.0.name.clone();
        tracing::info!(database = %name, %peer, "import started");
        let mut pieces = futures::stream::iter(first).chain(stream);
        let stop = hub.shutdown_requested();
        tokio::pin!(stop);
        let (end, after) = receive(&slot.0, &mut pieces, stop.as_mut(), &opts).await;
        if after == After::DatabaseError {
            // As a session does after a failed write: a database that failed
            // for good (a full disk) is marked failed, shown as such and
            // reopened in the background.
            hub.check_failed(&slot.0).await;
        }
        // The database's handle is let go of (a failed one is reopened only
        // once every holder did) before the rest of the body is read.
        drop(slot);
        if after != After::BodyGone {
            // Stopped by its input while the client may still be sending:
            // the rest of the body is read and dropped, so that the client
            // gets this answer instead of a connection closed under its
            // upload.
            let mut dropped = 0u64;
            while let Ok(Some(piece)) = next_piece(stop.as_mut(), &mut pieces).await {
                dropped += piece.len() as u64;
            }
            tracing::debug!(database = %name, dropped, "the rest of a stopped import's body read and dropped");
        }
        let s = &end.summary;
        match &end.stopped {
            None => tracing::info!(
                database = %name, %peer, imported = s.imported, lines = s.lines, bad = s.bad,
                "import done"
            ),
            Some(why) => tracing::warn!(
                database = %name, %peer, imported = s.imported, lines = s.lines, bad = s.bad,
                "import stopped: {}", why.message
            ),
        }
        let mut line = serde_json::to_vec(&serde_json::json!({ END_KEY: end })).unwrap_or_default();
        line.push(b'\n');
        let _ = tx.send(Bytes::from(line));
    });
    Ok(Body::from_stream(futures::stream::once(async move {
        rx.await
            .map_err(|_| std::io::Error::other("the import ended without its answer"))
    })))
}

/// What is left to do once [`receive`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// Nothing: the body ended, or can no longer be read (cut short,
    /// stalled, the hub shutting down).
    BodyGone,
    /// The import stopped on its input (`strict`): the body may go on.
    InputRefused,
    /// A batch was refused by the database: the body may go on, and the
    /// database may have failed.
    DatabaseError,
}

/// Imports the pieces of the body as they come, until its end, an error or
/// the hub's shutdown (`stop`: it stops the waiting for the next piece,
/// never a commit under way). Returns the answer and what is left to do.
async fn receive(
    db: &DbHandle,
    pieces: &mut (impl futures::Stream<Item = std::result::Result<Bytes, axum::Error>> + Unpin),
    mut stop: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    opts: &ImportOptions,
) -> (ImportEnd, After) {
    let started = Instant::now();
    let mut bad_lines = Vec::new();
    let mut import = Import::new(opts, |ev| {
        if let ImportEvent::BadLine {
            line,
            message,
            code,
            count,
        } = ev
            && count <= MAX_REPORTED_BAD_LINES
        {
            bad_lines.push(BadLine {
                line,
                message: message.to_string(),
                code: code.to_string(),
            });
        }
    });
    let refused = |e: outpost::jsonl::ImportError| {
        let after = match e {
            outpost::jsonl::ImportError::Database { .. } => After::DatabaseError,
            _ => After::InputRefused,
        };
        (stopped(e.code(), e.to_string()), after)
    };
    let result = async {
        while let Some(piece) = next_piece(stop.as_mut(), pieces)
            .await
            .map_err(|why| (why, After::BodyGone))?
        {
            import.push(&db.db, &piece).await.map_err(refused)?;
        }
        import.finish(&db.db).await.map_err(refused)
    }
    .await;
    let summary = import.summary().clone();
    drop(import);
    let (stopped, after) = match result {
        Ok(()) => (None, After::BodyGone),
        Err((why, after)) => (Some(why), after),
    };
    let end = ImportEnd {
        database: db.name.clone(),
        summary,
        bad_lines,
        stopped,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    (end, after)
}

fn stopped(code: &str, message: String) -> Stopped {
    Stopped {
        code: code.to_string(),
        message,
    }
}

/// The next piece of the body (`None` at its end), unless the hub is
/// shutting down (`stop` resolved), none came for [`PIECE_TIMEOUT`], or
/// the upload was cut short: why the import stops.
async fn next_piece(
    stop: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    pieces: &mut (impl futures::Stream<Item = std::result::Result<Bytes, axum::Error>> + Unpin),
) -> std::result::Result<Option<Bytes>, Stopped> {
    let not_written = "the lines of the batch under way were not written";
    tokio::select! {
        biased;
        () = stop => Err(stopped(
            "shutting_down",
            format!("the hub is shutting down; {not_written}"),
        )),
        p = tokio::time::timeout(PIECE_TIMEOUT, pieces.next()) => match p {
            Err(_) => Err(stopped(
                "stalled",
                format!("no more of the body came for {} s; {not_written}", PIECE_TIMEOUT.as_secs()),
            )),
            Ok(Some(Err(e))) => Err(stopped(
                "cut_short",
                format!("the upload was cut short ({e}); {not_written}"),
            )),
            Ok(Some(Ok(piece))) => Ok(Some(piece)),
            Ok(None) => Ok(None),
        },
    }
}

/// `import` into database `name` while a running hub holds it: sends
/// `input` to that hub (`POST /admin/import`, with the admin token), with a
/// progress bar of the bytes sent, then prints what the command prints on a
/// stopped hub (the bad lines, the summary). Returns the summary, or the
/// error that stopped the import (after printing `import stopped: …`).
pub async fn import_remote(
    config: &Config,
    name: &str,
    input: Input,
    query: &ImportQuery,
    admin: Option<&str>,
) -> Result<ImportReport> {
    let (url, ca, token) = crate::cli::send_to_holder(config, name, "import", admin)?;
    let path = format!("{PATH}?{}", query.to_query());
    let started = Instant::now();
    let pb = outpost_cmdline::progress(input.len, true);
    let mut answer = Vec::new();
    let mut reader = input.reader;
    let sent = crate::hub_client::admin_upload(
        &url,
        &path,
        (ca.as_deref(), token),
        &mut reader,
        &mut |n| pb.set_position(n),
        "import",
        &mut |piece, _| {
            // One line of a few KiB; more is not an answer of ours.
            if answer.len() + piece.len() > 1 << 20 {
                return Err(HubError::Other(format!(
                    "{url}{PATH}: the answer is too long"
                )));
            }
            answer.extend_from_slice(piece);
            Ok(())
        },
    )
    .await;
    pb.finish_and_clear();
    sent?;
    eprintln!("(sent to the running hub at {url})");
    let end = serde_json::from_slice::<serde_json::Value>(&answer)
        .ok()
        .and_then(|mut v| serde_json::from_value::<ImportEnd>(v[END_KEY].take()).ok())
        .ok_or_else(|| {
            HubError::Other(format!(
                "the hub at {url} ended its answer without the import's result: INCOMPLETE \
                 (the batches it committed stay; see its log, or `outpost-hub export`)"
            ))
        })?;
    for b in &end.bad_lines {
        eprintln!("line {}: {} ({}); skipped", b.line, b.message, b.code);
    }
    if end.summary.bad > end.bad_lines.len() as u64 {
        eprintln!("more bad lines: not shown one by one; see the summary");
    }
    let report = ImportReport {
        counts: end.summary,
        elapsed: started.elapsed(),
    };
    match end.stopped {
        None => Ok(report),
        Some(why) => {
            eprintln!("import stopped: {report}");
            Err(HubError::Other(format!(
                "database {name}: {} ({})",
                why.message, why.code
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_round_trip_and_bad_ones_are_refused() {
        let q = ImportQuery {
            database: "main db/ü".into(),
            batch: Some(500),
            strict: true,
            collection: Some("Patients & Co".into()),
            by: Some("Ada Lovelace <ada@clinic>".into()),
            source: Some("/backups/main 2026-12-07.jsonl".into()),
        };
        assert_eq!(ImportQuery::parse(Some(&q.to_query())), Ok(q));
        let plain = ImportQuery::parse(Some("database=main")).unwrap();
        assert_eq!(
            (plain.batch, plain.strict, &plain.collection, &plain.by),
            (None, false, &None, &None)
        );
        assert_eq!(
            ImportQuery::parse(Some("database=main&strict")).map(|q| q.strict),
            Ok(true)
        );
        for bad in [
            None,
            Some(""),
            Some("batch=5"),
            Some("database=main&database=other"),
            Some("database=main&batch=0"),
            Some("database=main&batch=x"),
            Some("database=main&strict=maybe"),
            Some("database=main&limit=3"),
            Some("database=%ff"),
            Some("database=main&by=a%0Ab"),
            Some("database=main&source=a&source=b"),
        ] {
            assert!(ImportQuery::parse(bad).is_err(), "{bad:?}");
        }
        let bad_collection = ImportQuery {
            collection: Some(String::new()),
            ..plain.clone()
        };
        assert!(bad_collection.options(String::new()).is_err());
        let long = format!("database=main&by={}", "x".repeat(MAX_LABEL + 1));
        assert!(ImportQuery::parse(Some(&long)).is_err());
        // What the audit trail is told.
        let audit = plain
            .options("POST from here".into())
            .unwrap()
            .audit
            .unwrap();
        assert_eq!(
            (audit.by.as_str(), audit.via.as_str(), audit.source.as_str()),
            ("(not given)", "POST from here", "(not given)")
        );
    }
}
