//! The HTTP server: health, metrics, status, the `/sync` WebSocket, static
//! files; plain or TLS; graceful shutdown.
//!
//! | route          | what                                                        |
//! |----------------|-------------------------------------------------------------|
//! | `GET /healthz` | `{"status":"ok","databases":[...]}`; 503 `degraded` naming a failed database, 503 while stopping |
//! | `GET /metrics` | Prometheus text format (admin token required)               |
//! | `GET /status`  | JSON: version, uptime, databases, edges (admin token required) |
//! | `POST /admin/purge` | a subject purge (admin token; `crate::purge`)          |
//! | `POST /admin/compact` | a tombstone compaction now (admin token; `crate::compact`) |
//! | `POST /admin/export` | a database's documents as JSON lines, streamed from one snapshot (admin token; `crate::transfer`) |
//! | `POST /admin/audit` | `audit verify`, `who` and `export` on the running hub (admin token; `crate::audit_live`) |
//! | `POST /admin/import` | `import` into the running hub: JSON lines as the body (admin token; `crate::import_live`) |
//! | `GET /sync`    | WebSocket upgrade: an edge's replication session            |
//! | `GET /*`       | static files of `demo_site`, if configured                  |
//!
//! `/status`, `/metrics` and `/admin/*` answer 401 unless the request comes
//! from the operator (`crate::admin`: the admin token of `[admin]
//! token_sha256`, or an admin identity's client certificate; no `[admin]`:
//! always 401). Connections are accepted by [`crate::conn`]
//! (caps, header-read timeout, pre-authentication read budget).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use outpost::sync::compact::Compaction;
use serde_json::json;
use tokio::net::TcpListener;

use crate::config::{Config, SERVING_FILE, TlsConfig};
use crate::conn::{Conn, Gate, PRE_AUTH_READ_BYTES};
use crate::error::{HubError, Result};
use crate::metrics::{escape_label, header};
use crate::state::{DbFailure, Hub};
use crate::{admin, conn, reload, session, tls, upstream};

/// Largest WebSocket message (and frame) the hub accepts: 32 MiB.
pub const MAX_MESSAGE_BYTES: usize = 32 << 20;

/// Read buffer of each `/sync` WebSocket connection: 2 KiB, a quarter of the
/// native client's (`outpost_client::WS_READ_BUFFER_BYTES`, which says why
/// tungstenite's 128 KiB default was far too big). The buffer is allocated
/// per connection and kept while it is idle: with 8 KiB, 21.9 KiB of hub
/// memory per idle edge at 5,000 edges, with 2 KiB 15.9 (`fanout --edges
/// 5000`, docs/benchmarks.md "Fan-out"; 10.0 since the session's task keeps
/// its actions' future on the heap only while it runs, `session::serve`).
/// What a hub reads is mostly small (acknowledgements, pushes of
/// a few documents); a larger frame is still received whole, in more reads.
/// Edges keep 8 KiB: they read the large initial-sync batches.
pub const WS_READ_BUFFER_BYTES: usize = 2 << 10;

/// After a shutdown is asked for, how long open connections, edge sessions
/// and upstream links get to finish before the databases are closed anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How `serve` was asked to run.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Listen here instead of the configuration's `listen`.
    pub listen: Option<SocketAddr>,
    /// Use (and create if needed) a self-signed certificate for localhost
    /// and the names of the listen address (`tls::dev_cert_names`).
    pub dev_tls: bool,
}

/// What the handlers know about the running server.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) hub: Arc<Hub>,
    tls: bool,
    gate: Arc<Gate>,
}

/// The router over `hub`. `tls`: whether it is served over TLS (for `/status`).
///
/// Serve it with [`conn::serve`]: the handlers take the connection's
/// [`Conn`] from the request's extensions.
pub fn router(hub: Arc<Hub>, tls: bool, gate: Arc<Gate>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route(crate::purge::PATH, post(admin::purge))
        .route(crate::compact::PATH, post(admin::compact))
        .route(crate::transfer::PATH, post(admin::export))
        .route(crate::audit_live::PATH, post(admin::audit))
        .route(crate::import_live::PATH, post(admin::import))
        .route("/sync", get(sync))
        .fallback(static_files)
        .with_state(AppState { hub, tls, gate })
}

/// Runs the hub with `config` until Ctrl-C or SIGTERM: opens the databases,
/// watches the configuration file, serves HTTP and WebSocket (plain or TLS),
/// starts the upstream links, then shuts down gracefully and closes the
/// databases.
pub async fn run(config: Config, opts: ServeOptions) -> Result<()> {
    let listen = opts.listen.unwrap_or(config.listen);
    let tls = if opts.dev_tls {
        if config.tls.is_some() {
            tracing::warn!("--dev-tls: ignoring the [tls] of the configuration");
        }
        let names = tls::dev_cert_names(listen);
        let (tls, done) = tls::ensure_dev_cert(&config.data_dir, &names)?;
        match done {
            tls::DevCert::Kept => {}
            tls::DevCert::Made => {
                tracing::info!(cert = %tls.cert.display(), names = %names.join(", "), "generated a self-signed development certificate");
            }
            tls::DevCert::Remade(missing) => {
                tracing::warn!(cert = %tls.cert.display(), added = %missing.join(", "), "generated the development certificate again for names it lacked: clients that trusted the old one must trust this one");
            }
        }
        eprintln!("{}", tls::dev_trust_instructions(&tls.cert, listen, &names));
        Some(tls)
    } else {
        config.tls.clone()
    };
    let (config_rx, config_tx, watcher) = reload::watch_config_with_sender(config);
    let tls_config = tls
        .as_ref()
        .map(|t| tls::server_config(t, config_rx.clone()))
        .transpose()?;
    let hub = Hub::open(config_rx).await?;
    hub.set_config_sender(config_tx);
    let result = serve_hub(hub.clone(), listen, tls, tls_config).await;
    watcher.abort();
    let closed = hub.close().await;
    result.and(closed)
}

async fn serve_hub(
    hub: Arc<Hub>,
    listen: SocketAddr,
    tls: Option<TlsConfig>,
    tls_config: Option<Arc<tls::ServerTls>>,
) -> Result<()> {
    // Index modules: one that does not load stops the start.
    let index_modules = crate::indexes::load(&hub.config())?;
    crate::indexes::share_outputs(&hub, &hub.config(), &index_modules);
    let follower = tokio::spawn(follow_config(hub.clone()));
    let compactor = tokio::spawn(crate::compact::run_periodically(hub.clone()));
    let indexer = tokio::spawn(crate::indexes::run(hub.clone(), index_modules));
    let expiries = tokio::spawn(crate::cert_session::record_expiries(hub.clone()));
    let signals = tokio::spawn(shutdown_on_signal(hub.clone()));
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| HubError::io(format!("listen on {listen}"), e))?;
    let local = listener
        .local_addr()
        .map_err(|e| HubError::io("read the listening address", e))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let serving = write_serving_file(&hub.config().data_dir, scheme, local, tls.as_ref());
    tracing::info!(
        "listening on {scheme}://{local} (WebSocket: {}://{local}/sync)",
        if tls.is_some() { "wss" } else { "ws" }
    );

    match &hub.config().demo_site {
        Some(site) if !site.is_dir() => {
            tracing::warn!(demo_site = %site.display(), "demo_site is not a directory; serving a placeholder page at /");
        }
        Some(site) => tracing::info!("serving {} at {scheme}://{local}/", site.display()),
        None => {}
    }

    let mut upstreams = tokio::task::JoinSet::new();
    for up in hub.config().upstreams.clone() {
        tracing::info!(database = %up.database, url = %up.url, identity = %up.identity, "starting upstream link");
        upstreams.spawn(upstream::run_upstream(hub.clone(), up));
    }

    match hub.config().admin_token_sha256 {
        Some(_)
            if hub.config().is_admin(crate::edit::DEMO_ADMIN_TOKEN)
                && !local.ip().to_canonical().is_loopback() =>
        {
            tracing::warn!(
                "the admin token is the demo's public one: it is honoured only from this machine (`outpost-hub admin-token` sets a secret one for remote administration)"
            )
        }
        Some(_) => {
            tracing::info!(
                "/status, /metrics and /admin/* need the admin token ([admin] token_sha256)"
            )
        }
        None => tracing::warn!(
            "no [admin] token_sha256 in the configuration: /status and /metrics answer 401 to everyone (`outpost-hub admin-token` sets one)"
        ),
    }
    let gate = Gate::new();
    let app = router(hub.clone(), tls_config.is_some(), gate.clone());
    let served = bounded(
        &hub,
        conn::serve(hub.clone(), gate, listener, app, tls_config),
    )
    .await;
    tracing::info!("stopped accepting connections");

    // Edge sessions and upstream links watch the shutdown flag; give them a
    // bounded time to end before the databases are closed.
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while hub.metrics().edges_connected() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if hub.metrics().edges_connected() > 0 {
        tracing::warn!(
            sessions = hub.metrics().edges_connected(),
            "edge sessions still open at shutdown"
        );
    }
    while !upstreams.is_empty() {
        match tokio::time::timeout_at(deadline, upstreams.join_next()).await {
            Ok(_) => {}
            Err(_) => {
                tracing::warn!("upstream links did not stop in time; aborting them");
                upstreams.abort_all();
                break;
            }
        }
    }
    follower.abort();
    signals.abort();
    expiries.abort();
    let _ = expiries.await;
    // No compaction or index step may still run when the databases are closed.
    compactor.abort();
    let _ = compactor.await;
    indexer.abort();
    let _ = indexer.await;
    if let Some(path) = serving {
        remove_serving_file(&path);
    }
    served.map_err(|e| HubError::io("serve HTTP", e))
}

/// Writes [`SERVING_FILE`] (atomically) in `data_dir`: this process, the URL
/// it answers on and the certificate to trust, so `outpost-hub status` finds
/// the hub whatever `--listen` or `--dev-tls` it was started with. Returns
/// its path, or `None` if it could not be written (logged; not fatal).
fn write_serving_file(
    data_dir: &Path,
    scheme: &str,
    mut local: SocketAddr,
    tls: Option<&TlsConfig>,
) -> Option<PathBuf> {
    if local.ip().is_unspecified() {
        local.set_ip(if local.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let body = json!({
        "pid": std::process::id(),
        "url": format!("{scheme}://{local}"),
        "ca_cert": tls.map(|t| t.cert.display().to_string()),
    });
    let path = data_dir.join(SERVING_FILE);
    let tmp = data_dir.join(format!("{SERVING_FILE}.tmp"));
    let written = std::fs::create_dir_all(data_dir)
        .and_then(|()| std::fs::write(&tmp, format!("{body}\n")))
        .and_then(|()| std::fs::rename(&tmp, &path));
    match written {
        Ok(()) => Some(path),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "could not write the serving file (`outpost-hub status` will use the configuration's listen address)");
            None
        }
    }
}

/// Removes the serving file if it is still this process's.
fn remove_serving_file(path: &Path) {
    let ours = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v["pid"] == std::process::id());
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

/// Serves until `server` ends; once a shutdown is asked for, waits at most
/// [`SHUTDOWN_GRACE`] for open HTTP requests to end.
async fn bounded(
    hub: &Hub,
    server: impl std::future::IntoFuture<Output = std::io::Result<()>>,
) -> std::io::Result<()> {
    let server = server.into_future();
    let grace = async {
        hub.shutdown_requested().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        r = server => r,
        () = grace => {
            tracing::warn!("open HTTP connections did not end in time; closing them");
            Ok(())
        }
    }
}

/// Opens the databases that a reloaded configuration adds, and records
/// the edges it enrolls, revokes or re-scopes in the audit trail.
async fn follow_config(hub: Arc<Hub>) {
    let mut rx = hub.config_watch();
    let mut previous = rx.borrow_and_update().clone();
    while rx.changed().await.is_ok() {
        let config = rx.borrow_and_update().clone();
        if let Err(e) = hub.open_new_databases(&config).await {
            tracing::error!(error = %e, "could not open a database added to the configuration");
        }
        reload::record_scope_changes(&hub, &previous, &config).await;
        previous = config.clone();
        let open = hub.database_names();
        for d in open.iter().filter(|d| config.database(d).is_none()) {
            tracing::warn!(
                database = %d,
                "database removed from the configuration: no edge can reach it; it stays open until the hub restarts"
            );
        }
    }
}

/// Asks the hub to shut down on Ctrl-C or SIGTERM; a second one exits at
/// once (status 130).
async fn shutdown_on_signal(hub: Arc<Hub>) {
    let first = stop_signal().await;
    tracing::info!("{first}: shutting down (again to exit at once)");
    hub.shutdown();
    let second = stop_signal().await;
    tracing::warn!("{second} again: exiting without a clean shutdown");
    std::process::exit(130);
}

/// Waits for Ctrl-C or SIGTERM; returns its name.
async fn stop_signal() -> &'static str {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => "interrupted",
        () = term => "SIGTERM",
    }
}

// ---------------------------------------------------------------------------
// Handlers

pub(crate) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A failed database as JSON (for `/healthz` and `/status`).
fn failure_json(name: &str, f: &DbFailure) -> serde_json::Value {
    json!({
        "database": name,
        "error": f.error,
        "since": outpost::doc::iso_time_ms(f.since_ms),
        "reopen_attempts": f.reopen_attempts,
        "last_attempt_error": f.last_attempt_error,
        "next_attempt": f.next_attempt_ms.map(outpost::doc::iso_time_ms),
    })
}

/// `GET /healthz`: 200 `ok`; 503 `degraded` while a database is failed
/// (naming it and why), 503 `stopping` during a shutdown.
async fn healthz(State(st): State<AppState>) -> Response {
    let databases = st.hub.database_names();
    if st.hub.is_shutting_down() {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "stopping", "databases": databases}),
        );
    }
    let failures = st.hub.failures();
    if !failures.is_empty() {
        let failed: Vec<serde_json::Value> =
            failures.iter().map(|(n, f)| failure_json(n, f)).collect();
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "degraded", "databases": databases, "failed": failed}),
        );
    }
    json_response(
        StatusCode::OK,
        &json!({"status": "ok", "databases": databases}),
    )
}

/// Every database the hub knows: configured, open or failed.
fn all_database_names(hub: &Hub) -> std::collections::BTreeSet<String> {
    let mut names: std::collections::BTreeSet<String> = hub
        .config()
        .databases
        .iter()
        .map(|d| d.name.clone())
        .collect();
    names.extend(hub.database_names());
    names.extend(hub.failures().into_keys());
    names
}

async fn metrics(
    State(st): State<AppState>,
    conn: Option<Extension<Arc<Conn>>>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = admin::refuse_unless_admin(&st.hub, &headers, conn.as_ref()) {
        return r;
    }
    let hub = &st.hub;
    let mut text = hub.metrics().render();
    let dbs = hub.databases();
    let o = &mut text;
    let stats: Vec<(String, outpost::DbStats)> =
        dbs.iter().map(|d| (d.name.clone(), d.db.stats())).collect();
    let failures = hub.failures();
    let failed: Vec<(String, u64)> = all_database_names(hub)
        .into_iter()
        .map(|name| {
            let f = u64::from(failures.contains_key(&name));
            (name, f)
        })
        .collect();
    for (name, help, values) in [
        (
            "outpost_database_documents",
            "Live documents, by database.",
            stats
                .iter()
                .map(|(n, s)| (n.clone(), s.documents))
                .collect(),
        ),
        (
            "outpost_database_tombstones",
            "Tombstones (deleted documents kept until every device acknowledged them), by database.",
            stats
                .iter()
                .map(|(n, s)| (n.clone(), s.tombstones))
                .collect(),
        ),
        (
            "outpost_database_last_etag",
            "Last committed etag, by database.",
            stats
                .iter()
                .map(|(n, s)| (n.clone(), s.last_etag))
                .collect(),
        ),
        (
            "outpost_database_unreadable_records",
            "Stored records the changes feed skipped because they do not decode (set aside with `outpost repair`), by database.",
            stats
                .iter()
                .map(|(n, s)| (n.clone(), s.unreadable_records))
                .collect(),
        ),
        (
            "outpost_db_failed",
            "1 while a database is failed (a disk error; writes refused) and being reopened, by database.",
            failed,
        ),
    ] {
        gauge_by_database(o, name, help, &values);
    }
    let (open, unauthenticated) = st.gate.open();
    for (name, help, v) in [
        (
            "outpost_connections_open",
            "Open TCP connections (HTTP, WebSocket, TLS handshakes).",
            open,
        ),
        (
            "outpost_connections_unauthenticated",
            "Open connections not in an authenticated edge session.",
            unauthenticated,
        ),
    ] {
        header(o, name, "gauge", help);
        let _ = writeln!(o, "{name} {v}");
    }
    header(
        o,
        "outpost_uptime_seconds",
        "gauge",
        "Seconds since the hub started.",
    );
    let _ = writeln!(
        o,
        "outpost_uptime_seconds {:.3}",
        hub.uptime().as_secs_f64()
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// One gauge with a `database` label: its header, then a line per database.
fn gauge_by_database(o: &mut String, name: &str, help: &str, values: &[(String, u64)]) {
    header(o, name, "gauge", help);
    for (database, v) in values {
        let _ = writeln!(o, "{name}{{database=\"{}\"}} {v}", escape_label(database));
    }
}

/// The body of `GET /status`.
pub async fn status_json(hub: &Hub, tls: bool) -> serde_json::Value {
    let config = hub.config();
    let mut databases: Vec<serde_json::Value> = Vec::new();
    for d in hub.databases() {
        let s = d.db.stats();
        let compaction = match Compaction::read(&d.db.snapshot()).await {
            Ok(c) => json!({
                "horizon": c.horizon,
                "through": c.through,
                "removed": c.removed,
                "last_run_ms": (c.last_run_ms > 0).then_some(c.last_run_ms),
                "last_run": (c.last_run_ms > 0).then(|| outpost::doc::iso_time_ms(c.last_run_ms)),
            }),
            Err(e) => json!({ "error": e.to_string() }),
        };
        let indexes = crate::indexes::status_json(&d.db.snapshot()).await;
        databases.push(json!({
            "name": d.name,
            "state": "ok",
            "db_id": s.db_id,
            "documents": s.documents,
            "tombstones": s.tombstones,
            "last_etag": s.last_etag,
            "pages": s.pages,
            "free_pages": s.free_pages,
            "unreadable_records": s.unreadable_records,
            "compaction": compaction,
            "indexes": indexes,
            "configured": config.database(&d.name).is_some(),
        }));
    }
    for (name, f) in hub.failures() {
        let mut v = failure_json(&name, &f);
        v["name"] = json!(name);
        v["state"] = json!("failed");
        v["configured"] = json!(config.database(&name).is_some());
        databases.push(v);
    }
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": (hub.uptime().as_secs_f64() * 1000.0).round() / 1000.0,
        "tls": tls,
        "config": config.path.display().to_string(),
        "databases": databases,
        "edges_connected": hub.metrics().edges_connected(),
        "edges_configured": config.edges.len(),
        "upstreams": config.upstreams.len(),
        "shutting_down": hub.is_shutting_down(),
    })
}

async fn status(
    State(st): State<AppState>,
    conn: Option<Extension<Arc<Conn>>>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = admin::refuse_unless_admin(&st.hub, &headers, conn.as_ref()) {
        return r;
    }
    json_response(StatusCode::OK, &status_json(&st.hub, st.tls).await)
}

async fn sync(
    State(st): State<AppState>,
    Extension(conn): Extension<Arc<Conn>>,
    ws: WebSocketUpgrade,
) -> Response {
    if st.hub.is_shutting_down() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the hub is shutting down\n",
        )
            .into_response();
    }
    let hub = st.hub;
    // Until the session authenticates, at most this much is read from the
    // socket (the WebSocket's own limits are fixed at upgrade time, so they
    // are those of an authenticated session).
    conn.limit_reads(PRE_AUTH_READ_BYTES);
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .on_upgrade(move |socket| session::serve(socket, hub, conn))
}

// ---------------------------------------------------------------------------
// Static files

const NO_SITE: &str = "<!doctype html>
<meta charset=\"utf-8\"><title>Outpost hub</title>
<h1>Outpost hub</h1>
<p>Edges connect to <code>/sync</code> (WebSocket). See <a href=\"/healthz\">/healthz</a>
(<code>/status</code> and <code>/metrics</code> need the admin token).</p>
<p>No <code>demo_site</code> is configured (or its directory does not exist).</p>
";

/// The content type of a file, by extension.
pub fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("webmanifest") => "application/manifest+json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("woff") => "font/woff",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Maps a URL path to a file under `root`: percent-decoded, and refused
/// (`None`) if any segment is `.`, `..`, or holds a backslash, a NUL or a
/// drive prefix. Directories are resolved by the caller (`index.html`).
pub fn site_path(root: &Path, url_path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(url_path)?;
    let mut out = root.to_path_buf();
    for seg in decoded.split('/') {
        if seg.is_empty() {
            continue;
        }
        if seg == "." || seg == ".." || seg.contains(['\\', '\0', ':']) {
            return None;
        }
        let mut comps = Path::new(seg).components();
        match (comps.next(), comps.next()) {
            (Some(Component::Normal(_)), None) => out.push(seg),
            _ => return None,
        }
    }
    Some(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

async fn static_files(State(st): State<AppState>, method: Method, uri: Uri) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n").into_response();
    }
    let root = st.hub.config().demo_site.clone().filter(|d| d.is_dir());
    let Some(root) = root else {
        if uri.path() == "/" {
            return (
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                NO_SITE,
            )
                .into_response();
        }
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let Some(mut path) = site_path(&root, uri.path()) else {
        return (StatusCode::BAD_REQUEST, "bad path\n").into_response();
    };
    if tokio::fs::metadata(&path).await.is_ok_and(|m| m.is_dir()) {
        if !uri.path().ends_with('/') {
            let to = format!("{}/", uri.path());
            let mut r = StatusCode::PERMANENT_REDIRECT.into_response();
            if let Ok(v) = HeaderValue::from_str(&to) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            return r;
        }
        path.push("index.html");
    }
    match tokio::fs::read(&path).await {
        Ok(bytes) => {
            let body = if method == Method::HEAD {
                Vec::new()
            } else {
                bytes
            };
            (
                [
                    (header::CONTENT_TYPE, content_type(&path)),
                    (header::CACHE_CONTROL, "no-cache"),
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                ],
                body,
            )
                .into_response()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            (StatusCode::NOT_FOUND, "not found\n").into_response()
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "static file");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot read the file\n").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_paths_stay_inside_the_root() {
        let root = Path::new("/srv/site");
        assert_eq!(site_path(root, "/"), Some(root.to_path_buf()));
        assert_eq!(
            site_path(root, "/pkg/outpost_bg.wasm"),
            Some(root.join("pkg/outpost_bg.wasm"))
        );
        assert_eq!(site_path(root, "/a%20b.html"), Some(root.join("a b.html")));
        for bad in [
            "/../etc/passwd",
            "/a/../../b",
            "/%2e%2e/x",
            "/a%5c..%5cb",
            "/./x",
            "/a%00b",
            "/%zz",
            "/c:/x",
        ] {
            assert_eq!(site_path(root, bad), None, "{bad}");
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type(Path::new("a.wasm")), "application/wasm");
        assert!(content_type(Path::new("a.JS")).starts_with("text/javascript"));
        assert!(content_type(Path::new("index.html")).starts_with("text/html"));
        assert!(content_type(Path::new("s.css")).starts_with("text/css"));
        assert_eq!(content_type(Path::new("x")), "application/octet-stream");
    }
}
