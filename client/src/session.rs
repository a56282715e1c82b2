//! One client task: connect, run an [`EdgeSession`] over the socket until it
//! ends, reconnect with backoff and jitter. The session's actions run through
//! [`run_edge`] (the one depth-first action loop) with this module's socket,
//! status and counters as its effects; the session is woken by the engine's
//! commit observer for commits not its own ([`OthersCommits`]), by
//! [`SyncHandle::local_changed`](crate::SyncHandle::local_changed), and
//! every second.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use outpost::sync::driver::{edge_storage_native, load_edge_state};
use outpost::sync::edge::backoff_ms;
use outpost::sync::hub_write::HubWriteOutcome;
use outpost::sync::run::{EdgeShell, OthersCommits, Step, run_edge, tick_delay};
use outpost::sync::{EdgeAction, EdgeEvent, EdgeSession, ReplaceOutcome, SyncStatus};
use outpost::{Database, PageStore};
use tokio::sync::{Notify, oneshot, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::connect::{Io, connect};
use crate::safety::{HubCall, HubCalls};
use crate::{ClientCounters, ClientOptions};

/// Milliseconds since the Unix epoch (the session machine's clock).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What a client task works with, across its sessions.
pub(crate) struct Client<S: PageStore> {
    pub(crate) db: Database<S>,
    pub(crate) opts: ClientOptions,
    pub(crate) on_applied: Option<Arc<dyn Fn() + Send + Sync>>,
    pub(crate) status: watch::Sender<SyncStatus>,
    /// Purge orders carried out ([`crate::SyncHandle::watch_purges`]).
    pub(crate) purges: watch::Sender<u64>,
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) wake: Arc<Notify>,
    pub(crate) counters: Arc<ClientCounters>,
    /// Acknowledgements and refusals of pushes (write safety `replicated`).
    pub(crate) acks: Arc<crate::safety::Acks>,
    /// The enrollment code was redeemed: later sessions use the key alone.
    pub(crate) enrolled: std::sync::atomic::AtomicBool,
}

pub(crate) async fn run<S>(mut c: Client<S>, mut calls: HubCalls)
where
    S: PageStore + Send + Sync + 'static,
{
    // `None` once the database is closed (nothing more to push).
    let mut commits = Some(OthersCommits::new(&c.db));
    let mut attempt: u32 = 0;
    loop {
        if *c.stop.borrow() {
            break;
        }
        let _ = c.status.send(SyncStatus::Connecting);
        let ws = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(10), connect(&c.opts)) => r.unwrap_or_else(|_| Err("connect timed out".into())),
            _ = c.stop.changed() => break,
        };
        let outcome = match ws {
            Ok(ws) => session(&c, ws, &mut commits, &mut calls).await,
            Err(e) => {
                tracing::debug!(url = %c.opts.url, error = %e, "connection failed");
                c.counters.failed_attempts.fetch_add(1, Ordering::Relaxed);
                Ended::Retry { welcomed: false }
            }
        };
        match outcome {
            Ended::Stopped => break,
            Ended::Fatal(code, message) => {
                // Final: retrying cannot help (bad credentials, revoked).
                let _ = c.status.send(SyncStatus::Error { code, message });
                return;
            }
            Ended::Retry { welcomed } => {
                if welcomed {
                    attempt = 0;
                }
                let _ = c.status.send(SyncStatus::Offline);
                let unit = (now_ms().rem_euclid(1000)) as f64 / 1000.0;
                let delay = backoff_ms(attempt, unit);
                attempt = attempt.saturating_add(1);
                let sleep = tokio::time::sleep(Duration::from_millis(delay));
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        _ = &mut sleep => break,
                        _ = c.stop.changed() => break,
                        Some(call) = calls.recv() => {
                            // No session: a write with safety `hub` (or a
                            // replacement) fails now.
                            call.offline("no session with the hub (reconnecting)");
                        }
                    }
                }
                if *c.stop.borrow() {
                    break;
                }
            }
        }
    }
    let _ = c.status.send(SyncStatus::Offline);
}

enum Ended {
    Stopped,
    Fatal(String, String),
    Retry { welcomed: bool },
}

/// One session: the machine, its socket, and the effects of [`run_edge`].
struct Session<'a, S: PageStore> {
    c: &'a Client<S>,
    m: EdgeSession,
    ws: WebSocketStream<Box<dyn Io>>,
    commits: &'a mut Option<OthersCommits>,
    welcomed: bool,
    /// Writes with safety `hub` handed to the machine, by token.
    pending: HashMap<u64, oneshot::Sender<HubWriteOutcome>>,
    /// Certificate replacements handed to the machine, by token.
    replacing: HashMap<u64, oneshot::Sender<ReplaceOutcome>>,
    next_token: u64,
    /// How the session ended, once it did.
    end: Option<Ended>,
}

async fn session<S>(
    c: &Client<S>,
    ws: WebSocketStream<Box<dyn Io>>,
    commits: &mut Option<OthersCommits>,
    calls: &mut HubCalls,
) -> Ended
where
    S: PageStore + Send + Sync + 'static,
{
    let edge = if c.enrolled.load(Ordering::Relaxed) {
        c.opts.edge.clone().enrolled()
    } else {
        c.opts.edge.clone()
    };
    let persisted = match load_edge_state(&c.db, &edge).await {
        Ok(p) => p,
        Err(e) => return Ended::Fatal("storage".into(), e.to_string()),
    };
    let mut stop = c.stop.clone();
    let mut s = Session {
        c,
        m: EdgeSession::new(edge, persisted, now_ms()),
        ws,
        commits,
        welcomed: false,
        pending: HashMap::new(),
        replacing: HashMap::new(),
        next_token: 0,
        end: None,
    };
    // One timer, armed for the machine's next deadline
    // (`EdgeSession::next_tick`: a timeout or a heartbeat) rather than
    // firing every second (`outpost::sync::run::tick_delay`).
    let tick = tokio::time::sleep(Duration::from_secs(1));
    tokio::pin!(tick);
    let mut armed = i64::MAX;
    let mut next = Some(EdgeEvent::Opened);
    let ended = loop {
        if let Some(ev) = next.take()
            && let Some(e) = s.handle(ev).await
        {
            break e;
        }
        let due = s.m.next_tick();
        if due < armed {
            armed = due;
            tick.as_mut()
                .reset(tokio::time::Instant::now() + tick_delay(due, now_ms()));
        }
        next = Some(tokio::select! {
            msg = s.ws.next() => match msg {
                Some(Ok(Message::Binary(b))) => match s.handle(EdgeEvent::Received(&b)).await {
                    Some(e) => break e,
                    None => continue,
                },
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Text(_))) => EdgeEvent::Received(&[0xff]),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    let acts = s.m.handle(EdgeEvent::Closed, now_ms());
                    s.answer_writes(acts);
                    break Ended::Retry { welcomed: s.welcomed };
                }
            },
            Some(call) = calls.recv() => {
                s.next_token += 1;
                let token = s.next_token;
                match call {
                    HubCall::Write { ops, answer } => {
                        s.pending.insert(token, answer);
                        EdgeEvent::HubWrite { token, ops }
                    }
                    HubCall::Replace { chain, answer } => {
                        s.replacing.insert(token, answer);
                        EdgeEvent::Replace { token, chain }
                    }
                }
            }
            _ = &mut tick => {
                armed = i64::MAX;
                EdgeEvent::Tick
            }
            _ = s.c.wake.notified() => EdgeEvent::LocalChanged,
            more = others_committed(s.commits) => {
                if !more { *s.commits = None; continue; }
                EdgeEvent::LocalChanged
            }
            _ = stop.changed() => {
                let _ = s.ws.close(None).await;
                let acts = s.m.handle(EdgeEvent::Closed, now_ms());
                s.answer_writes(acts);
                break Ended::Stopped;
            }
        });
    };
    // Whatever the machine could not answer (a transport that failed while
    // it was closing): sent or not, the outcome is not known here.
    for (_, answer) in s.pending.drain() {
        let _ = answer.send(HubWriteOutcome::Unknown {
            reason: "the session with the hub ended".into(),
        });
    }
    for (_, answer) in s.replacing.drain() {
        let _ = answer.send(ReplaceOutcome::Unknown);
    }
    ended
}

impl<S: PageStore> Session<'_, S> {
    /// Answers the writes with safety `hub` among `acts` (the machine's
    /// last actions, after the transport closed).
    fn answer_writes(&mut self, acts: Vec<EdgeAction>) {
        for a in acts {
            match a {
                EdgeAction::HubWriteDone { token, outcome } => self.hub_write_done(token, outcome),
                EdgeAction::ReplaceDone { token, outcome } => self.replace_done(token, outcome),
                _ => {}
            }
        }
    }

    /// Feeds `ev` and performs the actions (see [`run_edge`]); how the
    /// session ended, if it did.
    async fn handle(&mut self, ev: EdgeEvent<'_>) -> Option<Ended> {
        let acts = self.m.handle(ev, now_ms());
        run_edge(self, acts).await;
        self.end.take()
    }
}

/// Resolves once someone else committed (`false` once the database closed);
/// never without a watch.
async fn others_committed(commits: &mut Option<OthersCommits>) -> bool {
    match commits {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
    }
}

impl<S: PageStore> EdgeShell for Session<'_, S> {
    fn feed(&mut self, ev: EdgeEvent<'_>) -> Option<Vec<EdgeAction>> {
        Some(self.m.handle(ev, now_ms()))
    }

    async fn send(&mut self, frame: Vec<u8>) -> bool {
        match self.ws.send(Message::Binary(frame.into())).await {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, "send failed");
                self.end = Some(Ended::Retry {
                    welcomed: self.welcomed,
                });
                false
            }
        }
    }

    async fn sign(&mut self, message: Vec<u8>) -> Step<EdgeEvent<'static>> {
        let signed = match &self.c.opts.signer {
            Some(k) => k.sign(&message).map_err(|e| e.to_string()),
            None => Err("no key to sign with (ClientOptions::signer)".to_string()),
        };
        match signed {
            Ok(sig) => Step::Feed(EdgeEvent::Signed(sig)),
            Err(e) => {
                tracing::error!(error = %e, "cannot sign");
                let _ = self.ws.close(None).await;
                self.end = Some(Ended::Fatal("key".into(), e));
                Step::End
            }
        }
    }

    fn enrolled(&mut self) {
        self.c.enrolled.store(true, Ordering::Relaxed);
    }

    fn hub_write_done(&mut self, token: u64, outcome: HubWriteOutcome) {
        if let Some(answer) = self.pending.remove(&token) {
            let _ = answer.send(outcome);
        }
    }

    fn replace_done(&mut self, token: u64, outcome: ReplaceOutcome) {
        if let Some(answer) = self.replacing.remove(&token) {
            let _ = answer.send(outcome);
        }
    }

    async fn storage(&mut self, action: EdgeAction) -> Step<EdgeEvent<'static>> {
        let (db, counters) = (&self.c.db, &self.c.counters);
        let applied = matches!(action, EdgeAction::ApplyRemote { .. });
        if let EdgeAction::RecordRejection(r) = &action {
            self.c.acks.refused(r);
        }
        let (ev, etags) = edge_storage_native(db, &self.c.opts.edge, &action, now_ms()).await;
        // What this session stored itself needs no pushing: not a wake.
        if let Some(w) = self.commits.as_mut() {
            w.own(etags);
        }
        if matches!(ev, Some(EdgeEvent::ApplyFailed(_))) {
            counters.storage_failures.fetch_add(1, Ordering::Relaxed);
        } else if matches!(action, EdgeAction::Purge { .. } | EdgeAction::Forget { .. }) {
            // Carried out (for a hub's link: marked, owed by its edges).
            self.c.purges.send_modify(|n| *n += 1);
        }
        if applied && matches!(ev, Some(EdgeEvent::Applied)) {
            counters.batches_applied.fetch_add(1, Ordering::Relaxed);
            if let Some(f) = &self.c.on_applied {
                f();
            }
        }
        ev.into()
    }

    fn status(&mut self, s: SyncStatus) {
        if matches!(s, SyncStatus::Initial { received: 0, .. }) && !self.welcomed {
            self.welcomed = true;
            self.c.counters.sessions.fetch_add(1, Ordering::Relaxed);
        }
        let _ = self.c.status.send(s);
    }

    fn pushed(&mut self, upto: u64, docs: u32) {
        self.c.acks.pushed(upto);
        let counters = &self.c.counters;
        counters.pushes_acked.fetch_add(1, Ordering::Relaxed);
        counters
            .docs_pushed
            .fetch_add(u64::from(docs), Ordering::Relaxed);
    }

    async fn close(&mut self, code: String, message: String, fatal: bool) {
        tracing::info!(url = %self.c.opts.url, %code, %message, "sync session closed");
        let _ = self.ws.close(None).await;
        self.end = Some(if fatal {
            Ended::Fatal(code, message)
        } else {
            Ended::Retry {
                welcomed: self.welcomed,
            }
        });
    }
}
