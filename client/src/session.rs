//! One client task: connect, run an [`EdgeSession`] over the socket until it
//! ends, reconnect with backoff and jitter.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use outpost::sync::driver::{edge_storage, load_edge_state};
use outpost::sync::edge::backoff_ms;
use outpost::sync::{EdgeAction, EdgeEvent, EdgeSession, SyncStatus};
use outpost::{Database, PageStore};
use tokio::sync::{Notify, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::connect::{Io, connect};
use crate::{ClientCounters, ClientOptions};

/// Milliseconds since the Unix epoch (the session machine's clock).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn run<S>(
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
    mut ws: WebSocketStream<Box<dyn Io>>,
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
    ws: &mut WebSocketStream<Box<dyn Io>>,
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
