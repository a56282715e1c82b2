//! The operator's HTTP routes: who the operator is
//! ([`refuse_unless_admin`]: the admin token of `[admin] token_sha256`, the
//! demo's public token only from this machine, or the client certificate of
//! an identity with `admin = true`), and the `POST /admin/*` routes
//! (`/admin/purge`, `/admin/compact`, `/admin/export`, `/admin/audit`, and
//! `/admin/import`, whose body is the lines to import), whose bodies are
//! read only after that check and at most [`ADMIN_BODY_LIMIT`] bytes.
//! `/status` and `/metrics` (`crate::server`) use the same check.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::conn::Conn;
use crate::server::{AppState, json_response};
use crate::state::Hub;

/// `None` if `headers` carry the admin token, or the connection presented
/// the client certificate of an identity with admin permissions
/// (`admin = true`, checked like a session's: `crate::cert_session::admin_identity`);
/// else the 401 answer.
pub(crate) fn refuse_unless_admin(
    hub: &Hub,
    headers: &HeaderMap,
    conn: Option<&Extension<Arc<Conn>>>,
) -> Option<Response> {
    admin_caller(hub, headers, conn).err().map(|r| *r)
}

/// The admin credential a request shows (`the admin token`, `the demo's
/// public admin token`, `admin certificate identity NAME`), as
/// [`refuse_unless_admin`] checks it; `Err` is the refusal to send.
pub(crate) fn admin_caller(
    hub: &Hub,
    headers: &HeaderMap,
    conn: Option<&Extension<Arc<Conn>>>,
) -> Result<String, Box<Response>> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if let Some(t) = token
        && hub.config().is_admin(t)
    {
        let peer = conn.map(|Extension(c)| c.peer());
        if demo_token_honoured(t, peer) {
            let which = if t == crate::edit::DEMO_ADMIN_TOKEN {
                "the demo's public admin token"
            } else {
                "the admin token"
            };
            return Ok(which.to_string());
        }
        tracing::warn!(peer = ?peer, "refused the demo's public admin token from another machine");
        return Err(Box::new(unauthorized(
            "the demo's public admin token is honoured only from this machine; \
             set a secret one with `outpost-hub admin-token`\n",
        )));
    }
    if let Some(Extension(c)) = conn
        && let Some(who) = crate::cert_session::admin_identity(&hub.config(), c.client_chain())
    {
        tracing::debug!(identity = %who, peer = %c.peer(), "admin request by client certificate");
        return Ok(format!("admin certificate identity {who}"));
    }
    let mut why = if hub.config().admin_token_sha256.is_none() {
        "no admin token is configured ([admin] token_sha256): this page is closed\n".to_string()
    } else {
        "send Authorization: Bearer <admin token>\n".to_string()
    };
    // No certificate while certificate identities exist: the client may
    // have had one it was not asked for (`tls::ServerTls`).
    if let Some(Extension(c)) = conn
        && c.client_chain().is_empty()
        && hub.config().has_certificate_identities()
    {
        why.push_str(
            "(an admin certificate is asked for only from clients that offer no ALPN or \
             the ALPN protocol outpost-client-cert: with curl, --no-alpn)\n",
        );
    }
    Err(Box::new(unauthorized(why)))
}

/// Whether an admin token is honoured from `peer`: any secret one from
/// anywhere; the demo configuration's public one
/// ([`crate::edit::DEMO_ADMIN_TOKEN`], printed in the README and in every
/// demo's configuration) only from a loopback address, so that a demo hub
/// listening on a network address does not hand anyone on that network its
/// documents (`/admin/export`) or a purge.
fn demo_token_honoured(token: &str, peer: Option<SocketAddr>) -> bool {
    token != crate::edit::DEMO_ADMIN_TOKEN
        || peer.is_some_and(|p| p.ip().to_canonical().is_loopback())
}

/// A 401 answer saying `why`.
fn unauthorized(why: impl Into<String>) -> Response {
    let why: String = why.into();
    let mut r = (StatusCode::UNAUTHORIZED, why).into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"outpost-hub\""),
    );
    r
}

/// The most an admin `POST`'s request body may hold (its JSON: a purge's ids
/// and prefixes, an export's or a compaction's database).
const ADMIN_BODY_LIMIT: usize = 1 << 20;

/// The JSON request of an admin `POST` (`what` names it in errors): the
/// refusal (401) unless it comes from the operator, checked on the headers
/// before any byte of the body is read (an anonymous client cannot make the
/// hub take in a body); then 413 over [`ADMIN_BODY_LIMIT`] (announced or
/// sent), 400 for a body cut short or one that does not parse.
async fn admin_body<T: serde::de::DeserializeOwned>(
    st: &AppState,
    headers: &HeaderMap,
    conn: Option<&Extension<Arc<Conn>>>,
    body: axum::body::Body,
    what: &str,
) -> std::result::Result<T, Box<Response>> {
    if let Some(r) = refuse_unless_admin(&st.hub, headers, conn) {
        return Err(Box::new(r));
    }
    let refuse =
        |code: StatusCode, msg: String| Box::new(json_response(code, &json!({ "error": msg })));
    let too_large = || {
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the {what} request is over {ADMIN_BODY_LIMIT} bytes"),
        )
    };
    let announced = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > ADMIN_BODY_LIMIT as u64) {
        return Err(too_large());
    }
    let mut body = body.into_data_stream();
    let mut read = Vec::new();
    while let Some(chunk) = futures::StreamExt::next(&mut body).await {
        let chunk = chunk.map_err(|e| {
            // The client hung up or sent a broken chunked encoding: a
            // request cut short, not one too large.
            refuse(
                StatusCode::BAD_REQUEST,
                format!("the {what} request's body was cut short: {e}"),
            )
        })?;
        if read.len() + chunk.len() > ADMIN_BODY_LIMIT {
            return Err(too_large());
        }
        read.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&read).map_err(|e| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("the {what} request is not valid JSON of the expected shape: {e}"),
        )
    })
}

/// The answer of an admin request: 200 with its JSON, or its refusal's
/// status with `{"error": …}`.
fn admin_answer<T: serde::Serialize>(r: std::result::Result<T, (u16, String)>) -> Response {
    match r {
        Ok(answer) => json_response(StatusCode::OK, &json!(answer)),
        Err((code, msg)) => json_response(
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &json!({ "error": msg }),
        ),
    }
}

/// `POST /admin/purge` (admin token): a subject purge on the running hub
/// (`crate::purge`).
pub(crate) async fn purge(
    State(st): State<AppState>,
    conn: Option<Extension<Arc<Conn>>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let req: crate::purge::PurgeRequest =
        match admin_body(&st, &headers, conn.as_ref(), body, "purge").await {
            Ok(r) => r,
            Err(r) => return *r,
        };
    admin_answer(crate::purge::run(&st.hub, &req).await)
}

/// `POST /admin/compact` (admin token): a tombstone compaction on the
/// running hub now (`crate::compact`).
pub(crate) async fn compact(
    State(st): State<AppState>,
    conn: Option<Extension<Arc<Conn>>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let req: crate::compact::CompactRequest =
        match admin_body(&st, &headers, conn.as_ref(), body, "compaction").await {
            Ok(r) => r,
            Err(r) => return *r,
        };
    admin_answer(crate::compact::run(&st.hub, &req).await)
}

/// `POST /admin/export` (admin token): the documents of a running database
/// as JSON lines, streamed from one snapshot (`crate::transfer::stream`).
pub(crate) async fn export(
    State(st): State<AppState>,
    conn: Option<Extension<Arc<Conn>>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let req: crate::transfer::ExportRequest =
        match admin_body(&st, &headers, conn.as_ref(), body, "export").await {
            Ok(r) => r,
            Err(r) => return *r,
        };
    let peer = conn.map_or_else(|| "?".to_string(), |Extension(c)| c.peer().to_string());
    let streaming = match crate::transfer::stream(&st.hub, req, peer).await {
        Ok(s) => s,
        Err(refused) => return admin_answer::<()>(Err(refused)),
    };
    let (total, last_etag) = (streaming.total, streaming.last_etag);
    let mut r = streaming.body().into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    if let Some(n) = total {
        h.insert(crate::transfer::DOCUMENTS_HEADER, HeaderValue::from(n));
    }
    h.insert(
        crate::transfer::LAST_ETAG_HEADER,
        HeaderValue::from(last_etag),
    );
    r
}

/// `POST /admin/audit` (admin token): the audit commands on the running
/// hub (`crate::audit_live`): JSON for `verify` and `who`, JSON lines for
/// `export`.
pub(crate) async fn audit(
    State(st): State<AppState>,
    conn: Option<Extension<Arc<Conn>>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let req: crate::audit_live::AuditRequest =
        match admin_body(&st, &headers, conn.as_ref(), body, "audit").await {
            Ok(r) => r,
            Err(r) => return *r,
        };
    let peer = conn.map_or_else(|| "?".to_string(), |Extension(c)| c.peer().to_string());
    match crate::audit_live::answer(&st.hub, req, peer).await {
        Ok(crate::audit_live::Answer::Json(v)) => json_response(StatusCode::OK, &v),
        Ok(crate::audit_live::Answer::Lines(body)) => {
            let mut r = body.into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
            r
        }
        Err(refused) => admin_answer::<()>(Err(refused)),
    }
}

/// `POST /admin/import` (admin token): JSON lines into a running database
/// (`crate::import_live`); the options in the query string, checked with
/// the token before any of the body is read.
pub(crate) async fn import(
    State(st): State<AppState>,
    conn: Option<Extension<Arc<Conn>>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: axum::body::Body,
) -> Response {
    let caller = match admin_caller(&st.hub, &headers, conn.as_ref()) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let query = match crate::import_live::ImportQuery::parse(uri.query()) {
        Ok(q) => q,
        Err(e) => return admin_answer::<()>(Err((400, format!("the import request: {e}")))),
    };
    let peer = conn.map_or_else(|| "?".to_string(), |Extension(c)| c.peer().to_string());
    match crate::import_live::answer(&st.hub, query, body, peer, caller).await {
        Ok(body) => {
            let mut r = body.into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
            r
        }
        Err(refused) => admin_answer::<()>(Err(refused)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_admin_token_is_honoured_only_from_a_loopback_peer() {
        let demo = crate::edit::DEMO_ADMIN_TOKEN;
        let at = |a: &str| Some(a.parse::<SocketAddr>().unwrap());
        for local in [
            "127.0.0.1:5000",
            "127.3.4.5:1",
            "[::1]:5000",
            "[::ffff:127.0.0.1]:5000",
        ] {
            assert!(demo_token_honoured(demo, at(local)), "{local}");
        }
        for remote in [
            "10.0.0.7:5000",
            "192.168.1.2:5000",
            "0.0.0.0:1",
            "[::ffff:10.0.0.7]:5000",
            "[2001:db8::1]:5000",
        ] {
            assert!(!demo_token_honoured(demo, at(remote)), "{remote}");
            assert!(
                demo_token_honoured("a-secret-token", at(remote)),
                "{remote}"
            );
        }
        assert!(!demo_token_honoured(demo, None), "an unknown peer");
        assert!(demo_token_honoured("a-secret-token", None));
    }
}
