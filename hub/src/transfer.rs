//! `import` and `export`: JSON lines in and out of a hub database. With the
//! hub stopped they take the database's lock; `export` of a running hub's
//! database is streamed by the hub itself (`POST /admin/export`, admin
//! token: [`stream`] serves it, [`export_remote`] is the command line's
//! side). The routines, their progress bars and reports are
//! `outpost_cmdline`'s, shared with the `outpost` tool; this file names the
//! errors after the hub's database.

use std::io::Write;
use std::sync::Arc;

use axum::body::Bytes;
use outpost::db::UnreadableRecord;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::error::{HubError, Result};
use crate::state::{DbHandle, Hub};

pub use outpost_cmdline::{ImportOptions, ImportReport, Input};

/// Imports JSON lines from `input` into `db` with [`outpost_cmdline::import`]
/// (bounded memory, atomic batches, bad lines reported on stderr by number
/// and skipped, or with `strict` ending the import); `counts.bad` says how
/// many were skipped.
pub async fn import(db: &DbHandle, input: Input, opts: &ImportOptions) -> Result<ImportReport> {
    outpost_cmdline::import(&db.db, input, opts)
        .await
        .map_err(|e| HubError::Other(format!("database {}: {e}", db.name)))
}

/// Exports every live document of `db` (with an id starting with `prefix`)
/// as JSON lines, from one consistent snapshot. Returns the count. A record
/// that does not decode is skipped with a warning naming it and the command
/// that sets it aside (`outpost repair <database dir>`, hub stopped).
pub async fn export<W: Write>(db: &DbHandle, prefix: &str, w: W) -> Result<u64> {
    let repair = format!("outpost repair {}", db.dir().display());
    outpost_cmdline::export(&db.db, prefix, w, &repair)
        .await
        .map_err(|e| match e {
            outpost_cmdline::ExportError::Read(source) => HubError::Database {
                database: db.name.clone(),
                source,
            },
            outpost_cmdline::ExportError::Write(e) => HubError::io("write the export", e),
        })
}

/// Path of the live export endpoint.
pub const PATH: &str = "/admin/export";

/// The key of the line that ends an export asked with
/// [`ExportRequest::end_line`]: `{"@export": ExportEnd}`. A document's line
/// always has `@metadata`, this line never.
pub const END_KEY: &str = "@export";

/// Response header: how many documents the export holds (only for a whole
/// database, where the snapshot counts them).
pub const DOCUMENTS_HEADER: &str = "x-outpost-documents";

/// Response header: the etag of the last commit the export's snapshot holds.
pub const LAST_ETAG_HEADER: &str = "x-outpost-last-etag";

/// The request body of `POST /admin/export`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// The database.
    pub database: String,
    /// Only ids starting with this prefix (case-insensitive; default: all).
    #[serde(default)]
    pub prefix: String,
    /// End the stream with a line `{"@export": ExportEnd}`, so that the
    /// client can tell a whole export from one cut short (`outpost-hub
    /// export` asks for it; without it, only the chunked encoding's end says
    /// so, which `curl` checks).
    #[serde(default)]
    pub end_line: bool,
}

/// What the last line of an export says (see [`ExportRequest::end_line`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportEnd {
    /// The database.
    pub database: String,
    /// Document lines sent before this one.
    pub documents: u64,
    /// The etag of the last commit the snapshot holds.
    pub last_etag: u64,
    /// Records left out because they do not decode.
    pub skipped: Vec<UnreadableRecord>,
}

/// A live export under way: what the response's headers say and its body.
pub struct Streaming {
    /// Documents to come, when known (see [`DOCUMENTS_HEADER`]).
    pub total: Option<u64>,
    /// See [`LAST_ETAG_HEADER`].
    pub last_etag: u64,
    /// The body, a chunk (up to `outpost_cmdline::PAGE` documents, about
    /// `outpost_cmdline::CHUNK_BYTES` at most but for one large one) at a
    /// time; at most two wait for the client, so a slow client slows the
    /// export instead of filling the hub's memory.
    chunks: mpsc::Receiver<Bytes>,
    /// Whether the export ended whole (sent when its task ends).
    whole: oneshot::Receiver<bool>,
}

impl Streaming {
    /// The response body: the chunks, then the end of the chunked encoding
    /// if the export ended whole. An export cut short (see [`stream`]), or
    /// whose task failed, ends the body with an error as soon as the
    /// response asks for more, the chunks still queued dropped: the
    /// connection is closed without that end, which tells the client.
    pub fn body(self) -> axum::body::Body {
        // `None` for the receiver: the body ended with an error.
        let state = (Some(self.chunks), Some(self.whole));
        let chunks = futures::stream::unfold(state, |(rx, mut whole)| async move {
            let mut rx = rx?;
            let cut = || {
                Some((
                    Err(std::io::Error::other("the export was cut short")),
                    (None, None),
                ))
            };
            if let Some(w) = whole.as_mut() {
                tokio::select! {
                    biased;
                    ended = w => match ended {
                        // Whole: what is queued is the rest of it.
                        Ok(true) => whole = None,
                        _ => return cut(),
                    },
                    chunk = rx.recv() => if let Some(chunk) = chunk {
                        return Some((Ok(chunk), (Some(rx), whole)));
                    },
                }
                if let Some(w) = whole {
                    // Every chunk was taken and the task has ended.
                    return if w.await == Ok(true) { None } else { cut() };
                }
            }
            let chunk = rx.recv().await?;
            Some((Ok(chunk), (Some(rx), None)))
        });
        axum::body::Body::from_stream(chunks)
    }
}

/// Starts a live export for `POST /admin/export`: a task reads one snapshot
/// of the running database a page at a time and hands the lines to the
/// response. Writes go on meanwhile; the export holds the state of the
/// moment it began (its snapshot keeps the pages of that state from being
/// reused until it ends). It ends early, cutting the response short, when
/// the client goes away, a read fails or the hub shuts down (the snapshot
/// is released at once; what the connection already holds is still written
/// to a slow client for up to the shutdown's grace,
/// [`crate::server::SHUTDOWN_GRACE`]). `peer` names the client in the log.
pub async fn stream(
    hub: &Arc<Hub>,
    req: ExportRequest,
    peer: String,
) -> std::result::Result<Streaming, (u16, String)> {
    let db = hub.database_or_404(&req.database)?;
    let (tx, chunks) = mpsc::channel(2);
    let (started_tx, started_rx) = oneshot::channel();
    let (whole_tx, whole) = oneshot::channel();
    let hub = hub.clone();
    tokio::spawn(async move {
        let mut export = outpost_cmdline::Export::new(&db.db, &req.prefix);
        let _ = started_tx.send((export.total(), export.last_etag()));
        tracing::info!(database = %req.database, prefix = %req.prefix, %peer, "export started");
        let sent = tokio::select! {
            r = send_export(&mut export, &req, &tx) => r,
            () = hub.shutdown_requested() => Err("the hub is shutting down".into()),
        };
        let documents = export.written();
        match &sent {
            Ok(()) => tracing::info!(database = %req.database, %peer, documents, "export sent"),
            Err(why) => tracing::warn!(
                database = %req.database,
                %peer,
                written = documents,
                "export cut short: {why}"
            ),
        }
        let _ = whole_tx.send(sent.is_ok());
    });
    let (total, last_etag) = started_rx
        .await
        .map_err(|_| (500, "the export did not start".to_string()))?;
    Ok(Streaming {
        total,
        last_etag,
        chunks,
        whole,
    })
}

/// Sends `export`'s chunks to `tx`, then its end line if `req` asks for
/// it. `Err`: why it stopped before the end.
async fn send_export<S: outpost::store::PageStore>(
    export: &mut outpost_cmdline::Export<'_, S>,
    req: &ExportRequest,
    tx: &mpsc::Sender<Bytes>,
) -> std::result::Result<(), String> {
    let gone = |_| "the client went away".to_string();
    let mut chunk = Vec::new();
    while export
        .next_chunk(&mut chunk)
        .await
        .map_err(|e| format!("database {}: {e}", req.database))?
    {
        tx.send(Bytes::from(std::mem::take(&mut chunk)))
            .await
            .map_err(gone)?;
    }
    let skipped = export.skipped().await;
    for r in &skipped {
        tracing::warn!(database = %req.database, key = %r.key, error = %r.error, "export skipped an unreadable record");
    }
    if req.end_line {
        let end = ExportEnd {
            database: req.database.clone(),
            documents: export.written(),
            last_etag: export.last_etag(),
            skipped,
        };
        let mut line = serde_json::to_vec(&serde_json::json!({ END_KEY: end })).unwrap_or_default();
        line.push(b'\n');
        tx.send(Bytes::from(line)).await.map_err(gone)?;
    }
    Ok(())
}

/// `export` while a running hub holds the database: asks that hub for it
/// (`POST /admin/export`, where its serving file says it listens, with the
/// admin token) and writes the documents' lines to `out` as they arrive.
/// Fails, after writing what came, when the stream ends without its end line
/// or with a count that differs from the lines written: the output is then
/// incomplete. Returns the documents written.
pub async fn export_remote(
    config: &Config,
    name: &str,
    prefix: &str,
    admin: Option<&str>,
    out: impl Write,
) -> Result<u64> {
    let body = serde_json::to_vec(&ExportRequest {
        database: name.to_string(),
        prefix: prefix.to_string(),
        end_line: true,
    })
    .map_err(|e| HubError::Other(format!("encode the export request: {e}")))?;
    let live = LiveLines {
        path: PATH,
        what: "export",
        unit: "documents",
        end_key: END_KEY,
        total_header: Some(DOCUMENTS_HEADER),
    };
    let (written, end, url) =
        receive_lines(config, name, admin, &live, &body, out, |e: &ExportEnd| {
            e.documents
        })
        .await?;
    let repair = format!("outpost repair {}", config.database_dir(name).display());
    for r in &end.skipped {
        eprintln!(
            "warning: {} (hub stopped)",
            outpost_cmdline::unreadable_warning(r, &repair)
        );
    }
    eprintln!(
        "(exported by the running hub at {url}, as of etag {})",
        end.last_etag
    );
    Ok(written)
}

/// A live stream of JSON lines ended by an end line, as a command asks a
/// running hub for it ([`receive_lines`]).
pub(crate) struct LiveLines {
    /// The route.
    pub path: &'static str,
    /// What it is, in errors: "export", "audit export".
    pub what: &'static str,
    /// What its lines are, in errors: "documents", "entries".
    pub unit: &'static str,
    /// The end line's key.
    pub end_key: &'static str,
    /// The response header with the count of lines to come, if any (for the
    /// progress bar).
    pub total_header: Option<&'static str>,
}

/// Asks the running hub that holds database `name` of `config` for the
/// stream `live` (`POST`, where its serving file says it listens, with the
/// admin token, the JSON `body`) and writes its lines to `out` as they
/// arrive: the lines written, the end line's facts and the hub's address.
/// Fails, after writing what came, when the stream ends without its end
/// line or with a count (`count` of the end line) that differs from the
/// lines written: the output is then INCOMPLETE, and the error says so.
pub(crate) async fn receive_lines<E: serde::de::DeserializeOwned>(
    config: &Config,
    name: &str,
    admin: Option<&str>,
    live: &LiveLines,
    body: &[u8],
    out: impl Write,
    count: impl Fn(&E) -> u64,
) -> Result<(u64, E, crate::hub_client::HttpUrl)> {
    let (url, ca, token) = crate::cli::send_to_holder(config, name, live.what, admin)?;
    let mut lines = EndedLines::<_, E>::new(out, live.end_key, live.total_header);
    let streamed = crate::hub_client::admin_stream(
        &url,
        live.path,
        ca.as_deref(),
        token,
        body,
        live.what,
        &mut |piece, headers| lines.push(piece, headers),
    )
    .await;
    let finished = lines.finish();
    let written = lines.written;
    let incomplete = |why: String| {
        HubError::Other(format!(
            "the {} of database {name} from the hub at {url} is INCOMPLETE (it stopped after \
             {written} {}): {why}",
            live.what, live.unit
        ))
    };
    streamed.map_err(|e| incomplete(e.to_string()))?;
    finished.map_err(|e| incomplete(e.to_string()))?;
    let Some(end) = lines.end else {
        return Err(incomplete(
            "the hub ended the stream without its end line (see the hub's log)".into(),
        ));
    };
    if count(&end) != written {
        return Err(incomplete(format!(
            "the hub sent {} {}",
            count(&end),
            live.unit
        )));
    }
    Ok((written, end, url))
}

/// The client side of a live stream of JSON lines ended by an end line
/// (`{"<end_key>": {...}}` and nothing else: `export`'s `@export`, the
/// audit export's `@audit_export`): splits the body into lines, writes the
/// other lines to the output, keeps the end line's facts (`E`), and shows
/// progress (the total from the response's `total_header`, when given).
struct EndedLines<W: Write, E> {
    out: std::io::BufWriter<W>,
    /// The start of a line not ended yet.
    partial: Vec<u8>,
    /// Lines written.
    written: u64,
    /// The end line's facts, once it came.
    end: Option<E>,
    end_key: &'static str,
    total_header: Option<&'static str>,
    progress: Option<outpost_cmdline::ProgressBar>,
}

impl<W: Write, E: serde::de::DeserializeOwned> EndedLines<W, E> {
    /// Lines to `out`, ended by a line keyed `end_key`.
    fn new(out: W, end_key: &'static str, total_header: Option<&'static str>) -> EndedLines<W, E> {
        EndedLines {
            out: std::io::BufWriter::with_capacity(1 << 16, out),
            partial: Vec::new(),
            written: 0,
            end: None,
            end_key,
            total_header,
            progress: None,
        }
    }

    /// Takes the next piece of the body (`headers`: the response's).
    fn push(&mut self, piece: &[u8], headers: &[(String, String)]) -> Result<()> {
        let total_header = self.total_header;
        let pb = self.progress.get_or_insert_with(|| {
            let total = total_header.and_then(|h| {
                headers
                    .iter()
                    .find(|(k, _)| k == h)
                    .and_then(|(_, v)| v.parse().ok())
            });
            outpost_cmdline::progress(total, false)
        });
        self.partial.extend_from_slice(piece);
        let mut start = 0;
        while let Some(nl) = self.partial[start..].iter().position(|&b| b == b'\n') {
            let line = &self.partial[start..start + nl];
            if self.end.is_some() {
                return Err(HubError::Other(
                    "the hub sent more after the stream's end line".into(),
                ));
            }
            if let Some(end) = end_line(line, self.end_key) {
                self.end = Some(end);
            } else {
                self.out
                    .write_all(&self.partial[start..=start + nl])
                    .map_err(|e| HubError::io("write the export", e))?;
                self.written += 1;
            }
            start += nl + 1;
        }
        self.partial.drain(..start);
        pb.set_position(self.written);
        Ok(())
    }

    /// Flushes the output; a last line without its newline is an error.
    fn finish(&mut self) -> Result<()> {
        if let Some(pb) = self.progress.take() {
            pb.finish_and_clear();
        }
        self.out
            .flush()
            .map_err(|e| HubError::io("write the export", e))?;
        if !self.partial.is_empty() && self.end.is_none() {
            return Err(HubError::Other(format!(
                "the stream ended inside a line ({} bytes of it not written)",
                self.partial.len()
            )));
        }
        Ok(())
    }
}

/// The end line's facts, when `line` is one: `{"<key>": {...}}` and nothing
/// else (a document's line always has `@metadata`, an audit entry's its
/// `database`).
fn end_line<E: serde::de::DeserializeOwned>(line: &[u8], key: &str) -> Option<E> {
    if !line.starts_with(format!("{{\"{key}\":").as_bytes()) {
        return None;
    }
    let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(line).ok()?;
    if v.len() != 1 {
        return None;
    }
    serde_json::from_value(v.remove(key)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(pieces: &[&[u8]]) -> (Result<()>, Vec<u8>, u64, Option<ExportEnd>) {
        let mut out = Vec::new();
        let (r, written, end) = {
            let mut l = EndedLines::new(&mut out, END_KEY, None);
            let r = pieces
                .iter()
                .try_for_each(|p| l.push(p, &[]))
                .and_then(|()| l.finish());
            (r, l.written, l.end.take())
        };
        (r, out, written, end)
    }

    #[test]
    fn the_end_line_is_kept_out_of_the_output_and_documents_are_written_whole() {
        let doc1 = b"{\"@metadata\":{\"@id\":\"a\"},\"n\":1}\n";
        // A body with an `@export` member is still a document (it has `@metadata`).
        let doc2 = b"{\"@export\":{\"documents\":9},\"@metadata\":{\"@id\":\"b\"}}\n";
        let end = b"{\"@export\":{\"database\":\"main\",\"documents\":2,\"last_etag\":7,\"skipped\":[]}}\n";
        let mut all = Vec::new();
        for p in [&doc1[..], doc2, end] {
            all.extend_from_slice(p);
        }
        // Whole, and in pieces of every size that splits lines anywhere.
        for size in [all.len(), 1, 2, 7, 40] {
            let pieces: Vec<&[u8]> = all.chunks(size).collect();
            let (r, out, written, got) = lines(&pieces);
            r.unwrap();
            assert_eq!(out, [&doc1[..], doc2].concat());
            assert_eq!(written, 2);
            let got = got.unwrap();
            assert_eq!((got.documents, got.last_etag), (2, 7));
        }
        // No end line: nothing to say it is whole (the caller refuses it).
        let (r, _, written, got) = lines(&[doc1]);
        r.unwrap();
        assert_eq!((written, got), (1, None));
        // A last line without its newline, or anything after the end line.
        let (r, out, _, _) = lines(&[doc1, b"{\"@metadata\":"]);
        assert!(r.unwrap_err().to_string().contains("inside a line"));
        assert_eq!(out, doc1);
        let (r, _, _, _) = lines(&[end, doc1]);
        assert!(
            r.unwrap_err()
                .to_string()
                .contains("after the stream's end line")
        );
    }

    #[test]
    fn the_audit_exports_end_line_is_kept_apart_in_pieces_of_any_size() {
        use crate::audit_live::{END_KEY as AUDIT_END, ExportEnd as AuditEnd};
        let entries = "{\"database\":\"main\",\"seq\":1}\n{\"database\":\"main\",\"seq\":2}\n";
        let text =
            format!("{entries}{{\"{AUDIT_END}\":{{\"database\":\"main\",\"entries\":2}}}}\n");
        for cut in 0..text.len() {
            let mut out = Vec::new();
            let mut l = EndedLines::<_, AuditEnd>::new(&mut out, AUDIT_END, None);
            l.push(&text.as_bytes()[..cut], &[]).unwrap();
            l.push(&text.as_bytes()[cut..], &[]).unwrap();
            l.finish().unwrap();
            assert_eq!(l.written, 2);
            assert_eq!(l.end.take().map(|e| e.entries), Some(2));
            drop(l);
            assert_eq!(String::from_utf8(out).unwrap(), entries);
        }
    }
}
