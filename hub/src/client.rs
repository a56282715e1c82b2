//! The native edge client: replicates a local database with a hub over
//! WebSocket (tokio-tungstenite), reconnecting with backoff and jitter.
//!
//! A thin shell around [`outpost::sync::EdgeSession`]: frames in and out,
//! storage actions through [`outpost::sync::driver`], a 1 s tick for
//! heartbeats. Used for a hub that is itself an edge of another hub
//! ([`run_upstream`]), by the integration tests and by the fan-out benchmark.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use outpost::PageStore;
use outpost::sync::driver::{edge_storage, load_edge_state, rejections};
use outpost::sync::edge::backoff_ms;
use outpost::sync::{EdgeAction, EdgeConfig, EdgeEvent, EdgeSession, Rejection, SyncStatus};
use outpost::{Database, Error};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::config::UpstreamConfig;
use crate::session::now_ms;
use crate::state::Hub;

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// `ws://host:port/sync` or `wss://…`.
    pub url: String,
    /// Identity, credential, database, source tag, heartbeats.
    pub edge: EdgeConfig,
    /// PEM certificate to trust for `wss://` (required for `wss://`).
    pub ca_cert: Option<PathBuf>,
}

/// Counters of a running client.
#[derive(Debug, Default)]
pub struct ClientCounters {
    /// Sessions opened (Welcome received).
    pub sessions: AtomicU64,
    /// `Changes`/`Live` batches committed.
    pub batches_applied: AtomicU64,
    /// Documents pushed and acknowledged.
    pub docs_pushed: AtomicU64,
    /// `Push` frames acknowledged (empty ones, which only move the hub's
    /// push checkpoint, included).
    pub pushes_acked: AtomicU64,
    /// Connection attempts that failed.
    pub failed_attempts: AtomicU64,
    /// Storage actions on the local database that failed.
    pub storage_failures: AtomicU64,
}

/// A running client: status, counters, and control.
pub struct SyncHandle {
    status: watch::Receiver<SyncStatus>,
    stop: watch::Sender<bool>,
    wake: Arc<Notify>,
    counters: Arc<ClientCounters>,
    task: tokio::task::JoinHandle<()>,
}

impl SyncHandle {
    /// The current status.
    pub fn status(&self) -> SyncStatus {
        self.status.borrow().clone()
    }

    /// A receiver of status changes.
    pub fn watch_status(&self) -> watch::Receiver<SyncStatus> {
        self.status.clone()
    }

    /// Tells the client that the local database committed (it pushes).
    pub fn local_changed(&self) {
        self.wake.notify_one();
    }

    /// Counters.
    pub fn counters(&self) -> &ClientCounters {
        &self.counters
    }

    /// Waits until `pred` holds for the status, or `timeout`.
    pub async fn wait_for(&self, timeout: Duration, pred: impl Fn(&SyncStatus) -> bool) -> bool {
        let mut rx = self.status.clone();
        tokio::time::timeout(timeout, async {
            loop {
                if pred(&rx.borrow_and_update()) {
                    return;
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await
        .is_ok()
    }

    /// Stops the client (closing the connection) and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts replicating `db` with the hub of `opts`. `changes`, if given, wakes
/// the client whenever the database commits (a hub's etag watch); otherwise
/// call [`SyncHandle::local_changed`] after local writes. `on_applied` runs
/// after every batch from the hub is committed.
pub fn spawn_edge<S>(
    db: Database<S>,
    opts: ClientOptions,
    changes: Option<watch::Receiver<u64>>,
    on_applied: Option<Arc<dyn Fn() + Send + Sync>>,
) -> SyncHandle
where
    S: PageStore + Send + Sync + 'static,
{
    let (status_tx, status) = watch::channel(SyncStatus::Offline);
    let (stop, stop_rx) = watch::channel(false);
    let wake = Arc::new(Notify::new());
    let counters = Arc::new(ClientCounters::default());
    let task = tokio::spawn(run(
        db,
        opts,
        changes,
        on_applied,
        status_tx,
        stop_rx,
        wake.clone(),
        counters.clone(),
    ));
    SyncHandle {
        status,
        stop,
        wake,
        counters,
        task,
    }
}

/// The rejections the hub sent this client (recorded in the database).
pub async fn client_rejections<S: PageStore>(
    db: &Database<S>,
    edge: &EdgeConfig,
) -> Result<Vec<Rejection>, Error> {
    rejections(db, edge).await
}

/// Replicates `up.database` with the hub at `up.url` until the hub shuts
/// down, reconnecting as needed. Versions received from upstream are tagged
/// `upstream:<identity>` and not sent back; the hub's own edges are woken
/// when upstream changes arrive.
pub async fn run_upstream(hub: Arc<Hub>, up: UpstreamConfig) {
    let mut generation = hub.generation_watch();
    let mut shutdown = hub.shutdown_watch();
    loop {
        if *shutdown.borrow() {
            return;
        }
        generation.borrow_and_update();
        let Some(handle) = hub.database(&up.database) else {
            if hub.failure(&up.database).is_none() {
                tracing::error!(database = %up.database, "upstream names an unknown database");
                return;
            }
            // The database failed: wait until the hub reopened it.
            tokio::select! {
                r = generation.changed() => if r.is_err() { return; },
                _ = shutdown.changed() => return,
            }
            continue;
        };
        if !link_upstream(&hub, handle, &up, &mut shutdown).await {
            return;
        }
    }
}

/// Runs the upstream link over one handle of its database. Returns `false`
/// when the hub shuts down, `true` when the database failed (the caller
/// starts over once it is reopened; the old handle is dropped by then).
async fn link_upstream(
    hub: &Arc<Hub>,
    handle: Arc<crate::state::DbHandle>,
    up: &UpstreamConfig,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let mut edge = EdgeConfig::new(&up.database, &up.identity, &up.token);
    edge.source = format!("upstream:{}", up.identity);
    let opts = ClientOptions {
        url: up.url.clone(),
        edge,
        ca_cert: up.ca_cert.clone(),
    };
    let h2 = handle.clone();
    let notify: Arc<dyn Fn() + Send + Sync> = Arc::new(move || h2.notify_committed());
    let client = spawn_edge(
        handle.db.clone(),
        opts,
        Some(handle.subscribe()),
        Some(notify),
    );
    let mut status = client.watch_status();
    let mut failed = handle.failed_watch();
    let mut storage_failures = 0;
    let failed_db = loop {
        if failed.borrow_and_update().is_some() {
            break true;
        }
        tokio::select! {
            r = status.changed() => {
                if r.is_err() { break false; }
                let s = status.borrow_and_update().clone();
                match &s {
                    SyncStatus::Initial { .. } => {}
                    other => tracing::info!(url = %up.url, database = %up.database, status = ?other, "upstream"),
                }
                // A storage action failed: was it the database failing?
                let n = client.counters().storage_failures.load(Ordering::Relaxed);
                if n > storage_failures {
                    storage_failures = n;
                    if hub.check_failed(&handle).await.is_some() {
                        break true;
                    }
                }
            }
            _ = failed.changed() => {}
            _ = shutdown.changed() => break false,
        }
    };
    client.stop().await;
    if failed_db {
        tracing::warn!(database = %up.database, url = %up.url, "upstream link paused: the database failed; it resumes once the database is reopened");
    }
    failed_db
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Host and port of a `ws://` / `wss://` URL.
fn host_port(url: &str) -> Result<(bool, String, u16), String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("ws://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("wss://") {
        (true, r)
    } else {
        return Err(format!("{url:?} is not a ws:// or wss:// URL"));
    };
    let authority = rest.split('/').next().unwrap_or("");
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.trim_start_matches('[').trim_end_matches(']').to_string(),
            p.parse::<u16>()
                .map_err(|_| format!("bad port in {url:?}"))?,
        ),
        _ => (authority.to_string(), if tls { 443 } else { 80 }),
    };
    if host.is_empty() {
        return Err(format!("no host in {url:?}"));
    }
    Ok((tls, host, port))
}

async fn connect(
    opts: &ClientOptions,
) -> Result<tokio_tungstenite::WebSocketStream<Box<dyn Io>>, String> {
    let (tls, host, port) = host_port(&opts.url)?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("connect {host}:{port}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Io> = if tls {
        let Some(ca) = &opts.ca_cert else {
            return Err("wss:// needs a CA certificate to trust (ca_cert)".into());
        };
        let cfg = crate::tls::client_config(ca).map_err(|e| e.to_string())?;
        let name = rustls_pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("server name {host:?}: {e}"))?;
        let s = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {host}:{port}: {e}"))?;
        Box::new(s)
    } else {
        Box::new(tcp)
    };
    let cfg = WebSocketConfig::default()
        .read_buffer_size(crate::server::WS_READ_BUFFER_BYTES)
        .max_message_size(Some(outpost::sync::frame::MAX_FRAME_BYTES + 1024))
        .max_frame_size(Some(outpost::sync::frame::MAX_FRAME_BYTES + 1024));
    let (ws, _) = tokio_tungstenite::client_async_with_config(opts.url.as_str(), stream, Some(cfg))
        .await
        .map_err(|e| format!("WebSocket handshake with {}: {e}", opts.url))?;
    Ok(ws)
}

#[allow(clippy::too_many_arguments)]
async fn run<S>(
    db: Database<S>,
    opts: ClientOptions,
    mut changes: Option<watch::Receiver<u64>>,
    on_applied: Option<Arc<dyn Fn() + Send + Sync>>,
    status: watch::Sender<SyncStatus>,
    mut stop: watch::Receiver<bool>,
    wake: Arc<Notify>,
    counters: Arc<ClientCounters>,
) where
    S: PageStore + Send + Sync + 'static,
{
    let mut attempt: u32 = 0;
    loop {
        if *stop.borrow() {
            break;
        }
        let _ = status.send(SyncStatus::Connecting);
        let ws = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(10), connect(&opts)) => r.unwrap_or_else(|_| Err("connect timed out".into())),
            _ = stop.changed() => break,
        };
        let outcome = match ws {
            Ok(ws) => {
                session(
                    &db,
                    &opts,
                    ws,
                    &mut changes,
                    on_applied.as_deref(),
                    &status,
                    &mut stop,
                    &wake,
                    &counters,
                )
                .await
            }
            Err(e) => {
                tracing::debug!(url = %opts.url, error = %e, "connection failed");
                counters.failed_attempts.fetch_add(1, Ordering::Relaxed);
                Ended::Retry { welcomed: false }
            }
        };
        match outcome {
            Ended::Stopped => break,
            Ended::Fatal(code, message) => {
                // Final: retrying cannot help (bad credentials, revoked).
                let _ = status.send(SyncStatus::Error { code, message });
                return;
            }
            Ended::Retry { welcomed } => {
                if welcomed {
                    attempt = 0;
                }
                let _ = status.send(SyncStatus::Offline);
                let unit = (now_ms().rem_euclid(1000)) as f64 / 1000.0;
                let delay = backoff_ms(attempt, unit);
                attempt = attempt.saturating_add(1);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(delay)) => {}
                    _ = stop.changed() => break,
                }
            }
        }
    }
    let _ = status.send(SyncStatus::Offline);
}

enum Ended {
    Stopped,
    Fatal(String, String),
    Retry { welcomed: bool },
}

#[allow(clippy::too_many_arguments)]
async fn session<S>(
    db: &Database<S>,
    opts: &ClientOptions,
    mut ws: tokio_tungstenite::WebSocketStream<Box<dyn Io>>,
    changes: &mut Option<watch::Receiver<u64>>,
    on_applied: Option<&(dyn Fn() + Send + Sync)>,
    status: &watch::Sender<SyncStatus>,
    stop: &mut watch::Receiver<bool>,
    wake: &Notify,
    counters: &ClientCounters,
) -> Ended
where
    S: PageStore + Send + Sync + 'static,
{
    let persisted = match load_edge_state(db, &opts.edge).await {
        Ok(p) => p,
        Err(e) => return Ended::Fatal("storage".into(), e.to_string()),
    };
    let mut m = EdgeSession::new(opts.edge.clone(), persisted, now_ms());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut welcomed = false;
    let first = m.handle(EdgeEvent::Opened, now_ms());
    let mut end = None;
    if let Err(e) = perform(
        db,
        opts,
        &mut m,
        &mut ws,
        first,
        on_applied,
        status,
        counters,
        &mut welcomed,
        &mut end,
    )
    .await
    {
        tracing::debug!(error = %e, "send failed");
        return Ended::Retry { welcomed };
    }
    loop {
        if let Some(e) = end.take() {
            return e;
        }
        let ev = tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    let acts = m.handle(EdgeEvent::Received(&b), now_ms());
                    if perform(db, opts, &mut m, &mut ws, acts, on_applied, status, counters, &mut welcomed, &mut end).await.is_err() {
                        return Ended::Retry { welcomed };
                    }
                    continue;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Text(_))) => EdgeEvent::Received(&[0xff]),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    m.handle(EdgeEvent::Closed, now_ms());
                    return Ended::Retry { welcomed };
                }
            },
            _ = tick.tick() => EdgeEvent::Tick,
            _ = wake.notified() => EdgeEvent::LocalChanged,
            r = wait_changed(changes) => {
                if !r { *changes = None; continue; }
                EdgeEvent::LocalChanged
            }
            _ = stop.changed() => {
                let _ = ws.close(None).await;
                return Ended::Stopped;
            }
        };
        let acts = m.handle(ev, now_ms());
        if perform(
            db,
            opts,
            &mut m,
            &mut ws,
            acts,
            on_applied,
            status,
            counters,
            &mut welcomed,
            &mut end,
        )
        .await
        .is_err()
        {
            return Ended::Retry { welcomed };
        }
    }
}

async fn wait_changed(rx: &mut Option<watch::Receiver<u64>>) -> bool {
    match rx {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

#[allow(clippy::too_many_arguments)]
async fn perform<S>(
    db: &Database<S>,
    opts: &ClientOptions,
    m: &mut EdgeSession,
    ws: &mut tokio_tungstenite::WebSocketStream<Box<dyn Io>>,
    acts: Vec<EdgeAction>,
    on_applied: Option<&(dyn Fn() + Send + Sync)>,
    status: &watch::Sender<SyncStatus>,
    counters: &ClientCounters,
    welcomed: &mut bool,
    end: &mut Option<Ended>,
) -> Result<(), String>
where
    S: PageStore + Send + Sync + 'static,
{
    let mut queue: VecDeque<EdgeAction> = acts.into();
    while let Some(a) = queue.pop_front() {
        let next = match a {
            EdgeAction::Send(b) => {
                ws.send(Message::Binary(b.into()))
                    .await
                    .map_err(|e| e.to_string())?;
                None
            }
            EdgeAction::Status(s) => {
                if matches!(s, SyncStatus::Initial { received: 0, .. }) && !*welcomed {
                    *welcomed = true;
                    counters.sessions.fetch_add(1, Ordering::Relaxed);
                }
                let _ = status.send(s);
                None
            }
            EdgeAction::Pushed { docs, .. } => {
                counters.pushes_acked.fetch_add(1, Ordering::Relaxed);
                counters
                    .docs_pushed
                    .fetch_add(u64::from(docs), Ordering::Relaxed);
                None
            }
            EdgeAction::Close {
                code,
                message,
                fatal,
            } => {
                tracing::info!(url = %opts.url, %code, %message, "sync session closed");
                let _ = ws.close(None).await;
                *end = Some(if fatal {
                    Ended::Fatal(code, message)
                } else {
                    Ended::Retry {
                        welcomed: *welcomed,
                    }
                });
                return Ok(());
            }
            other => {
                let applied = matches!(other, EdgeAction::ApplyRemote { .. });
                let ev = edge_storage(db, &opts.edge, &other).await;
                if matches!(ev, Some(EdgeEvent::ApplyFailed(_))) {
                    counters.storage_failures.fetch_add(1, Ordering::Relaxed);
                }
                if applied && matches!(ev, Some(EdgeEvent::Applied)) {
                    counters.batches_applied.fetch_add(1, Ordering::Relaxed);
                    if let Some(f) = on_applied {
                        f();
                    }
                }
                ev
            }
        };
        if let Some(ev) = next {
            let more = m.handle(ev, now_ms());
            for a in more.into_iter().rev() {
                queue.push_front(a);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn urls() {
        assert_eq!(
            host_port("ws://127.0.0.1:4000/sync").unwrap(),
            (false, "127.0.0.1".into(), 4000)
        );
        assert_eq!(
            host_port("wss://hub.example/sync").unwrap(),
            (true, "hub.example".into(), 443)
        );
        assert!(host_port("http://x").is_err());
        assert!(host_port("ws://:80/").is_err());
    }
}
