//! An edge's replication session over WebSocket (hub side).
//!
//! A thin shell around [`outpost::sync::HubSession`], the pure state machine
//! of `docs/protocol.md`: it moves frames between the socket and the machine,
//! provides the effects of [`outpost::sync::run::run_hub`] (the one
//! depth-first action loop): frames out, `Authenticate` answered from the live
//! configuration, storage actions through [`outpost::sync::driver`], metrics.
//! It wakes the machine when the database commits (the engine's commit
//! observer), when the configuration changes, and every second.
//!
//! Limits (`[limits]`): a session that has not authenticated within
//! `hello_timeout_ms` of its upgrade gets `Error(timeout)` (the machine's
//! deadline, checked on the 1 s tick; nothing it sends extends it); before it authenticates, a message over
//! [`PRE_AUTH_MESSAGE_BYTES`] (or more than the connection's read budget,
//! see [`crate::conn`]) closes it with WebSocket code 1009; one identity has
//! at most `max_sessions_per_identity` sessions (`Error(too_many_connections)`
//! for the next); and an identity's pushes (frames, documents, bytes) and
//! new sessions pass its token buckets, shared by its sessions
//! ([`crate::ratelimit`]): over them a push is held until the budget
//! refills (the edge has one push in flight; a second one stops the reading
//! of its socket), so a flooding edge is slowed down by its own protocol and
//! TCP back-pressure and holds no more memory than an honest one (one
//! frame); a new session's `Welcome` waits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::StreamExt;
use futures::stream::BoxStream;
use outpost::sync::driver::{edge_info, hub_storage, plan_purge};
use outpost::sync::run::tick_delay;
use outpost::sync::run::{AuthRequest, HubShell, Step, run_hub};
use outpost::sync::{Grant, HubAction, HubEvent, HubMetric, HubSession, RejectReason};
use outpost::watch::CommitWatch;
use tokio::sync::watch;

use outpost::keys::PublicKey;
use outpost::sync::frame::AuthMode;

use crate::config::Config;
use crate::conn::{Conn, IdentitySlot, PRE_AUTH_MESSAGE_BYTES, reason};
use crate::identity::{self, Verdict};
use crate::ratelimit::is_charged;
use crate::state::{DbHandle, Hub};

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The grant of edge `identity` under `config`, if it exists and is bound to
/// `database`.
pub fn grant_for(config: &Config, identity: &str, database: &str) -> Option<Grant> {
    let e = config.edge(identity)?;
    if e.database != database || e.revoked {
        return None;
    }
    let db = config.database(database)?;
    Some(Grant {
        identity: e.name.clone(),
        read: e.read.clone(),
        write: e.write.clone(),
        relay: e.relay,
        policies: db
            .conflicts
            .collections()
            .map(|(c, p)| (c.to_string(), p))
            .collect(),
        default_policy: db.conflicts.default_policy(),
        never_delete: db.never_delete.clone(),
        hub_outputs: Vec::new(),
    })
}

/// The longest a new session waits for its identity's session budget
/// before `Welcome`; beyond, it is refused (`too_many_connections`).
const MAX_SESSION_WAIT: Duration = Duration::from_secs(5);

/// WebSocket close code "message too big".
const CLOSE_TOO_BIG: u16 = 1009;

/// Serves one edge connected on `/sync` until it disconnects, breaks the
/// protocol, is revoked, or the hub shuts down.
pub async fn serve(ws: WebSocket, hub: Arc<Hub>, conn: Arc<Conn>) {
    let peer = conn.peer();
    let limits = hub.config().limits.clone();
    // A push over its identity's rate limits (`crate::ratelimit`) waits in
    // `held` until its time. The socket is still read meanwhile (an edge has
    // one push in flight: what follows is acknowledgements and `Pong`s, and
    // they keep the session alive), except after a second push (`stalled`):
    // then it is not read until the first is handed on (TCP back-pressure).
    let mut held: Option<(axum::body::Bytes, tokio::time::Instant)> = None;
    let mut stalled: Option<axum::body::Bytes> = None;
    let mut s = Shell {
        hub: hub.clone(),
        machine: HubSession::new(now_ms())
            .with_hello_timeout(i64::try_from(limits.hello_timeout_ms).unwrap_or(i64::MAX)),
        ws,
        db: None,
        identity: None,
        device: outpost::DbId([0; 16]),
        database: String::new(),
        commits: None,
        failed: None,
        peer,
        counted: false,
        conn,
        slot: None,
        refused: None,
        key: None,
        cert: None,
        cert_ends: None,
    };
    // The watch receivers are wrapped in streams that keep their `changed()`
    // future alive across loop iterations: re-creating it on every `select!`
    // would register and unregister a waiter on channels shared by every
    // session (measured: ~8 % of the hub's CPU when a write fans out to 5,000
    // edges). The engine's commit observer keeps a session's waker once
    // registered, so its `changed()` is simply polled again.
    let mut config = watch_stream(hub.config_watch());
    let mut shutdown = watch_stream(hub.shutdown_watch());
    let mut purges = watch_stream(hub.purge_watch());
    // One timer per session, armed for the machine's next deadline
    // (`HubSession::next_tick`) rather than firing every second: an idle
    // edge costs a wake-up per heartbeat, not one per second
    // (`outpost::sync::run::tick_delay`).
    let tick = tokio::time::sleep(Duration::from_secs(1));
    tokio::pin!(tick);
    let mut armed = i64::MAX;
    tracing::debug!(%peer, "edge connected");
    loop {
        let due = s.machine.next_tick();
        if due < armed {
            armed = due;
            tick.as_mut()
                .reset(tokio::time::Instant::now() + tick_delay(due, now_ms()));
        }
        let ev = tokio::select! {
            msg = s.ws.recv(), if stalled.is_none() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    s.hub.metrics().frame_in(b.len());
                    if s.identity.is_none() && b.len() > PRE_AUTH_MESSAGE_BYTES {
                        s.too_big().await;
                        break;
                    }
                    if is_charged(&b)
                        && let Some(id) = &s.identity
                    {
                        if held.is_some() {
                            stalled = Some(b);
                            continue;
                        }
                        if let Some(at) = s.hub.rate_limits().push(id, &b, &s.hub.config().limits_for(id)) {
                            held = Some((b, at));
                            continue;
                        }
                    }
                    if !s.handle(HubEvent::Received(&b)).await { break; }
                    continue;
                }
                Some(Ok(Message::Text(_))) => {
                    let _ = s.handle(HubEvent::Received(&[0xff])).await;
                    break;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Err(_)) if s.conn.exceeded() => {
                    s.too_big().await;
                    break;
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    s.machine.handle(HubEvent::Closed, now_ms());
                    break;
                }
            },
            Some(()) = until(held.as_ref().map(|h| h.1)) => {
                // The identity's budget paid for the held push (the edge was
                // slowed down): hand it on.
                if let Some((b, _)) = held.take()
                    && !s.handle(HubEvent::Received(&b)).await
                {
                    break;
                }
                if let Some(b) = stalled.take() {
                    // A second push, read while the first waited: charged
                    // now, handed on in order (the machine judges it).
                    let config = s.hub.config();
                    let wait = s.identity.as_ref().and_then(|id| s.hub.rate_limits().push(id, &b, &config.limits_for(id)));
                    match wait {
                        Some(at) => held = Some((b, at)),
                        None => if !s.handle(HubEvent::Received(&b)).await { break; },
                    }
                }
                continue;
            }
            _ = &mut tick => {
                armed = i64::MAX;
                HubEvent::Tick
            }
            Some(()) = until(s.identity.as_ref().and(s.cert_ends)) => {
                // The certificate expired during the session.
                let c = s.cert.unwrap_or(crate::cert_session::CertSession { key: [0; 32], not_after: 0 });
                let id = s.identity.clone().unwrap_or_default();
                let why = crate::certs::Refusal::Expired(c.not_after);
                tracing::warn!(peer = %s.peer, identity = %id, "the session's certificate expired: ending the session");
                let mut e = crate::cert_session::Event { event: "expired", key: c.key, not_after: c.not_after, ..Default::default() };
                e.message = "a session ended at its certificate's expiry".into();
                Box::pin(crate::cert_session::record(&s.hub, &s.database, &id, &[e])).await;
                s.bye(outpost::sync::Frame::Error { code: why.code().into(), message: why.to_string() }).await;
                break;
            }
            changed = next_commit(&mut s.commits) => match changed {
                Some(last_etag) => HubEvent::Committed { last_etag },
                // Closed or failed: the failure (or shutdown) ends the session.
                None => { s.commits = None; continue; }
            },
            cfg = config.next() => {
                let Some(cfg) = cfg else { break };
                let Some(id) = &s.identity else { continue };
                match identity::session_grant(&cfg, id, &s.database, s.key.as_ref()) {
                    Ok(grant) => HubEvent::GrantChanged(grant.map(|g| s.hub.with_shared_outputs(g, &s.database))),
                    Err(identity::Revoked) => {
                        // Revoked: the session ends at once, after the edge
                        // erased what it was sent (if it holds anything).
                        s.hub.metrics().rejection(identity::REVOKED);
                        let frame = identity::revoked_frame(id);
                        match Box::pin(revoked_order(s.db.clone(), id, &s.device)).await {
                            Some(order) => {
                                tracing::warn!(peer = %s.peer, identity = %id, order = order.order, "identity revoked: ordering its purge, then ending its session");
                                let message = identity::revoked_message(id);
                                HubEvent::RevokedPurge { hub_db_id: s.db.as_ref().map_or(outpost::DbId([0; 16]), |d| d.db.db_id()), order, message }
                            }
                            None => {
                                tracing::warn!(peer = %s.peer, identity = %id, "identity revoked: ending its session");
                                s.bye(frame).await;
                                break;
                            }
                        }
                    }
                }
            }
            _ = purges.next() => {
                // A subject purge on the running hub: a device that now owes
                // a receipt reconnects to get its order (`crate::purge`).
                if owes_a_receipt(s.db.clone(), s.identity.clone(), s.device).await {
                    s.bye(outpost::sync::Frame::Error {
                        code: "purge_pending".into(),
                        message: "a purge was made at the hub: reconnect to receive the order".into(),
                    }).await;
                    break;
                }
                continue;
            }
            why = next_failure(&mut s.failed) => {
                // The database failed: let go of its handle (the hub reopens
                // it once nobody holds it); the edge retries later.
                s.bye(unavailable(&s.database, &why)).await;
                break;
            }
            _ = shutdown.next() => {
                s.bye(outpost::sync::Frame::Error {
                    code: "shutting_down".into(),
                    message: "the hub is shutting down; reconnect later".into(),
                }).await;
                break;
            }
        };
        if !s.handle(ev).await {
            break;
        }
    }
    let _ = s.ws.send(Message::Close(None)).await;
    if s.counted {
        hub.metrics().edge_disconnected();
    }
    tracing::info!(%peer, identity = s.identity.as_deref().unwrap_or("-"), "edge disconnected");
}

/// Whether a session's device owes a receipt for a subject purge (an
/// unreadable record counts as owing: the reconnect finds out).
async fn owes_a_receipt(
    db: Option<Arc<DbHandle>>,
    identity: Option<String>,
    device: outpost::DbId,
) -> bool {
    let (Some(db), Some(id)) = (db, identity) else {
        return false;
    };
    match outpost::sync::driver::served_record(&db.db, &id, &device).await {
        Ok(s) => !s.owed.is_empty(),
        Err(_) => true,
    }
}

/// The purge order of identity `id`, revoked while a session of it is open
/// on `db` (`None`: it holds nothing, or its served record is out of reach).
async fn revoked_order(
    db: Option<Arc<DbHandle>>,
    id: &str,
    device: &outpost::DbId,
) -> Option<outpost::sync::PurgeOrder> {
    let db = db?;
    match plan_purge(&db.db, id, device, &[], true).await {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(database = %db.name, error = %e, "cannot read or write an identity's served record");
            None
        }
    }
}

/// A stream of a watch channel's new values that keeps one `changed()`
/// future registered while it waits (see `serve`).
fn watch_stream<T: Clone + Send + Sync + 'static>(rx: watch::Receiver<T>) -> BoxStream<'static, T> {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        let v = rx.borrow_and_update().clone();
        Some((v, rx))
    })
    .boxed()
}

/// Resolves with the error once the session's database fails.
async fn next_failure(rx: &mut Option<BoxStream<'static, Option<String>>>) -> String {
    loop {
        match rx {
            Some(stream) => match stream.next().await {
                Some(Some(why)) => return why,
                Some(None) => {}
                None => *rx = None,
            },
            None => std::future::pending::<()>().await,
        }
    }
}

/// The instant just after unix second `not_after` (a certificate is valid
/// through its `notAfter` second).
fn cert_deadline(not_after: i64) -> tokio::time::Instant {
    let left = not_after
        .saturating_add(1)
        .saturating_sub(identity::now_s());
    tokio::time::Instant::now() + Duration::from_secs(u64::try_from(left).unwrap_or(0))
}

/// Resolves (with `Some`) at `at`; never when `at` is `None`.
async fn until(at: Option<tokio::time::Instant>) -> Option<()> {
    match at {
        Some(at) => {
            tokio::time::sleep_until(at).await;
            Some(())
        }
        None => std::future::pending().await,
    }
}

/// The retryable `Error` frame for a failed database.
fn unavailable(database: &str, why: &str) -> outpost::sync::Frame {
    outpost::sync::Frame::Error {
        code: outpost::sync::frame::DATABASE_UNAVAILABLE.into(),
        message: format!(
            "database {database} failed ({why}); the hub is reopening it: retry later"
        ),
    }
}

/// The new last etag once the session's database commits (`None` once it is
/// closed or failed); never resolves before the session is authenticated.
async fn next_commit(commits: &mut Option<CommitWatch>) -> Option<u64> {
    match commits {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
    }
}

struct Shell {
    hub: Arc<Hub>,
    machine: HubSession,
    ws: WebSocket,
    db: Option<Arc<DbHandle>>,
    identity: Option<String>,
    /// The edge database id its `Hello` stated (the device).
    device: outpost::DbId,
    database: String,
    /// The engine's commit observer of the session's database.
    commits: Option<CommitWatch>,
    failed: Option<BoxStream<'static, Option<String>>>,
    peer: SocketAddr,
    counted: bool,
    /// The connection (its read budget, its place in the counts).
    conn: Arc<Conn>,
    /// The session's place in the per-identity count, once authenticated.
    slot: Option<IdentitySlot>,
    /// The `Error` to send when [`Shell::check`] refuses the session for a
    /// reason other than a failed database.
    refused: Option<outpost::sync::Frame>,
    /// The key the session proved (`None`: a token session).
    key: Option<PublicKey>,
    /// A certificate session: its pin and expiry (the session ends then).
    cert: Option<crate::cert_session::CertSession>,
    /// When that certificate expires (computed once, at authentication).
    cert_ends: Option<tokio::time::Instant>,
}

impl Shell {
    /// Feeds `ev` and performs the actions (see [`run_hub`]). Returns
    /// `false` when the session ends.
    ///
    /// The actions run in a future of their own on the heap, allocated for
    /// the event and freed after it. Awaited in place, it (about 7 KiB:
    /// authentication, pushes, feed reads) would be part of `serve`'s
    /// future, which every idle session keeps: 10.7 KiB instead of 4.3
    /// (`-Zprint-type-sizes`; docs/benchmarks.md "Fan-out", memory per idle
    /// edge).
    async fn handle(&mut self, ev: HubEvent<'_>) -> bool {
        let acts = self.machine.handle(ev, now_ms());
        Box::pin(run_hub(self, acts)).await && !self.machine.is_closed()
    }

    /// Closes an unauthenticated session that sent more than it may before
    /// `Welcome` (WebSocket close 1009, "message too big").
    async fn too_big(&mut self) {
        self.hub
            .metrics()
            .connection_refused(reason::PRE_AUTH_TOO_LARGE);
        tracing::warn!(peer = %self.peer, limit = PRE_AUTH_MESSAGE_BYTES, "more than the pre-authentication limit before Welcome: closing the connection");
        let _ = self
            .ws
            .send(Message::Close(Some(CloseFrame {
                code: CLOSE_TOO_BIG,
                reason: "message too big before authentication".into(),
            })))
            .await;
    }

    /// Waits for `identity`'s new-session budget (`sessions_per_second`);
    /// `false` (with the refusal to send) when the wait would be too long.
    async fn paced(&mut self, identity: &str) -> bool {
        let limits = self.hub.config().limits_for(identity);
        match self
            .hub
            .rate_limits()
            .session(identity, &limits, MAX_SESSION_WAIT)
        {
            Ok(wait) => {
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                true
            }
            Err(wait) => {
                self.hub
                    .metrics()
                    .connection_refused(crate::ratelimit::SESSION_RATE_REASON);
                tracing::warn!(peer = %self.peer, %identity, rate = limits.sessions_per_second, "session refused: the identity opens sessions too fast");
                self.refused = Some(outpost::sync::Frame::Error {
                    code: "too_many_connections".into(),
                    message: format!(
                        "identity {identity} opens sessions faster than {}/s (limits.sessions_per_second); retry in {} s",
                        limits.sessions_per_second,
                        wait.as_secs().max(1)
                    ),
                });
                false
            }
        }
    }

    /// Sends a last frame (an `Error`) before the session ends.
    async fn bye(&mut self, frame: outpost::sync::Frame) {
        let _ = self.ws.send(Message::Binary(frame.encode().into())).await;
    }

    /// Counts a metric (and logs refusals).
    fn count(&self, m: HubMetric) {
        let mx = self.hub.metrics();
        match m {
            HubMetric::DocsSent(n) => mx.docs_sent(n),
            HubMetric::DocsReceived(n) => mx.docs_received(n),
            HubMetric::Rejected(reason) => {
                match &reason {
                    RejectReason::Violation(v) => {
                        tracing::warn!(peer = %self.peer, identity = self.identity.as_deref().unwrap_or("-"), reason = v.code(), id = v.id(), rule = v.rule(), detail = %v, "push refused");
                    }
                    RejectReason::Session(code) => {
                        tracing::warn!(peer = %self.peer, identity = self.identity.as_deref().unwrap_or("-"), reason = %code, "refused");
                        // The machine's Hello deadline (fed by the 1 s tick)
                        // is the one deadline: a connection refused for it.
                        if *code == "timeout" && self.identity.is_none() {
                            mx.connection_refused(reason::HELLO_TIMEOUT);
                        }
                    }
                }
                // The label is the wire code (bounded, stable), not the finer rule.
                mx.rejection(reason.code())
            }
            HubMetric::CreateOnly => {
                tracing::warn!(peer = %self.peer, identity = self.identity.as_deref().unwrap_or("-"), "a write-only push to an existing document was not applied (create-only)");
                mx.rejection("create_only");
            }
            HubMetric::Conflicts(p, n) => {
                for _ in 0..n {
                    mx.conflict(p.as_str());
                }
            }
        }
    }

    /// Checks a credential against the live configuration and reads what
    /// the machine needs about the edge; `Err` (why) when the database is
    /// unavailable (failed).
    async fn check(&mut self, r: &AuthRequest) -> Result<HubEvent<'static>, String> {
        let (database, identity) = (r.database.as_str(), r.identity.as_str());
        let verdict = identity::verify(&self.hub, r, self.conn.client_chain()).await;
        if let Verdict::CertRefused(why) = &verdict {
            self.hub.metrics().rejection(why.code());
            tracing::warn!(peer = %self.peer, %identity, %database, code = why.code(), reason = %why, "refused: the certificate");
            self.refused = Some(outpost::sync::Frame::Error {
                code: why.code().into(),
                message: why.to_string(),
            });
            return Err(why.code().into());
        }
        if let Verdict::Cert(c) = &verdict {
            self.cert = Some(*c);
            self.cert_ends = Some(cert_deadline(c.not_after));
        }
        if verdict == Verdict::Revoked {
            self.hub.metrics().rejection(identity::REVOKED);
            tracing::warn!(peer = %self.peer, %identity, %database, "refused: the identity is revoked");
            let frame = identity::revoked_frame(identity);
            // It proved its key: if it may still hold documents it was
            // sent, order it to erase them first (docs/security.md).
            if let Some(db) = self.hub.database(database) {
                self.device = r.edge_db_id;
                match plan_purge(&db.db, identity, &r.edge_db_id, &[], true).await {
                    Ok(Some(order)) => {
                        tracing::info!(peer = %self.peer, %identity, %database, order = order.order, "revoked identity: sending its purge order");
                        self.identity = Some(identity.to_string());
                        self.database = database.to_string();
                        let message = identity::revoked_message(identity);
                        let ev = HubEvent::RevokedPurge {
                            hub_db_id: db.db.db_id(),
                            order,
                            message,
                        };
                        self.db = Some(db);
                        return Ok(ev);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(%database, error = %e, "cannot read or write an identity's served record");
                    }
                }
            }
            self.refused = Some(frame);
            return Err(identity::REVOKED.into());
        }
        if let Verdict::Refused(why) = &verdict {
            tracing::warn!(peer = %self.peer, %identity, %database, auth = ?r.auth, reason = %why, "authentication refused");
        }
        let config = self.hub.config();
        let ok = verdict.accepted();
        let grant = if ok {
            grant_for(&config, identity, database)
                .map(|g| self.hub.with_shared_outputs(g, database))
        } else {
            None
        };
        let db = self.hub.database(database);
        if let (Some(_), None, Some(f)) = (&grant, &db, self.hub.failure(database)) {
            tracing::warn!(peer = %self.peer, %identity, %database, error = %f.error, "database unavailable (failed, being reopened)");
            return Err(f.error);
        }
        let (Some(grant), Some(db)) = (grant, db) else {
            tracing::warn!(peer = %self.peer, %identity, %database, "authentication failed");
            return Ok(HubEvent::Unauthorized);
        };
        let info = match edge_info(
            &db.db,
            &grant,
            &r.edge_db_id,
            r.pull_checkpoint,
            &r.checkpoint_hub,
            Some(&db.feed),
        )
        .await
        {
            Ok(i) => i,
            Err(e) => {
                tracing::error!(%database, error = %e, "cannot read the database for a session");
                if let Some(why) = self.hub.check_failed(&db).await {
                    return Err(why);
                }
                return Ok(HubEvent::ReadFailed(e.to_string()));
            }
        };
        if info.db_id_taken {
            tracing::warn!(peer = %self.peer, %identity, %database, edge_db = %r.edge_db_id, "refused: the edge database id belongs to another peer");
            return Ok(HubEvent::DbIdTaken);
        }
        // What left the identity's read scope since it was last served
        // (`outpost::sync::purge`), and the record of what it is served now:
        // written before anything is sent under the new scope.
        self.device = r.edge_db_id;
        let devices = self.hub.config().limits.max_devices_per_identity;
        match outpost::sync::driver::device_over_cap(&db.db, identity, &r.edge_db_id, devices).await
        {
            Ok(false) => {}
            Ok(true) => {
                self.hub.metrics().rejection("too_many_devices");
                tracing::warn!(peer = %self.peer, %identity, %database, edge_db = %r.edge_db_id, max = devices, "refused: a new device beyond the identity's maximum");
                self.refused = Some(outpost::sync::Frame::Error {
                    code: "too_many_devices".into(),
                    message: format!(
                        "identity {identity} already has {devices} devices known to the hub (limits.max_devices_per_identity): use one of them, or ask the operator"
                    ),
                });
                return Err("too_many_devices".into());
            }
            Err(e) => return Ok(HubEvent::ReadFailed(e.to_string())),
        }
        let read = grant.read.as_slice();
        let purge = match plan_purge(&db.db, identity, &r.edge_db_id, read, false).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(%database, error = %e, "cannot read or write an identity's served record");
                if let Some(why) = self.hub.check_failed(&db).await {
                    return Err(why);
                }
                return Ok(HubEvent::ReadFailed(e.to_string()));
            }
        };
        if let Some(o) = &purge {
            tracing::info!(peer = %self.peer, %identity, %database, order = o.order, prefixes = ?o.prefixes, "sending a purge order: documents left this edge's read scope");
        }
        let max = self.hub.config().limits.max_sessions_per_identity;
        match self.conn.authenticate(identity, max) {
            Some(slot) => self.slot = Some(slot),
            None => {
                self.hub
                    .metrics()
                    .connection_refused(reason::MAX_PER_IDENTITY);
                tracing::warn!(peer = %self.peer, %identity, max, "session refused: the identity has its maximum of sessions open");
                self.refused = Some(outpost::sync::Frame::Error {
                    code: "too_many_connections".into(),
                    message: format!(
                        "identity {identity} already has {max} sessions open (limits.max_sessions_per_identity); retry later"
                    ),
                });
                return Err("too_many_connections".into());
            }
        }
        // Paced after the cap: a session refused by it costs no budget.
        if !self.paced(identity).await {
            self.slot = None;
            return Err("too_many_connections".into());
        }
        tracing::info!(peer = %self.peer, %identity, %database, edge_db = %r.edge_db_id, pull_checkpoint = r.pull_checkpoint, pending = info.pending, "edge authenticated");
        if let Some(horizon) = info.resync {
            tracing::info!(peer = %self.peer, %identity, %database, edge_db = %r.edge_db_id, pull_checkpoint = r.pull_checkpoint, horizon, "edge resyncs: its checkpoint is below the compaction horizon (deletions it missed were compacted); it is sent everything again");
        }
        self.identity = Some(identity.to_string());
        self.database = database.to_string();
        self.key = if r.auth == AuthMode::Token {
            None
        } else {
            r.key.clone()
        };
        self.commits = Some(db.db.watch_commits());
        self.failed = Some(watch_stream(db.failed_watch()));
        if let Some(why) = db.failure() {
            return Err(why);
        }
        self.hub.metrics().edge_connected();
        self.counted = true;
        let ev = HubEvent::Authorized {
            grant,
            hub_db_id: db.db.db_id(),
            hub_last_etag: info.hub_last_etag,
            push_checkpoint: info.push_checkpoint,
            pending: info.pending,
            pull_from: info.pull_from,
            batch_head: info.batch_head,
            purge,
            resync: info.resync,
        };
        self.db = Some(db);
        Ok(ev)
    }
}

impl HubShell for Shell {
    fn feed(&mut self, ev: HubEvent<'_>) -> Option<Vec<HubAction>> {
        Some(self.machine.handle(ev, now_ms()))
    }

    async fn send(&mut self, frame: Vec<u8>) -> bool {
        self.hub.metrics().frame_out(frame.len());
        self.ws.send(Message::Binary(frame.into())).await.is_ok()
    }

    async fn lookup(
        &mut self,
        database: String,
        identity: String,
        auth: AuthMode,
        key: PublicKey,
        credential: String,
    ) -> Step<HubEvent<'static>> {
        Step::Feed(identity::lookup(
            &self.hub,
            &database,
            &identity,
            auth,
            key,
            &credential,
        ))
    }

    async fn authenticate(&mut self, request: AuthRequest) -> Step<HubEvent<'static>> {
        match self.check(&request).await {
            Ok(ev) => Step::Feed(ev),
            Err(why) => {
                let frame = self
                    .refused
                    .take()
                    .unwrap_or_else(|| unavailable(&request.database, &why));
                self.bye(frame).await;
                Step::End
            }
        }
    }

    async fn storage(&mut self, action: HubAction) -> Step<HubEvent<'static>> {
        let (Some(db), Some(id)) = (self.db.clone(), &self.identity) else {
            return Step::End;
        };
        // One push of an identity in the engine at a time (`crate::ratelimit`).
        let _turn = match action {
            HubAction::ApplyPush { .. } | HubAction::ApplyWrite { .. } => {
                let limits = self.hub.config().limits_for(id);
                self.hub.rate_limits().engine_turn(id, &limits).await
            }
            _ => None,
        };
        let started = Instant::now();
        let mut metrics = Vec::new();
        let ev = match action {
            // Every session woken by one commit reads the same page: once.
            HubAction::ReadChanges {
                after,
                max_docs,
                ref scope,
            } => {
                let read = match scope {
                    // Catching up under a narrow scope: a read of its own
                    // (the first one from the listing its count kept).
                    Some(scope) => {
                        db.feed
                            .read_changes_in(&db.db.snapshot(), after, max_docs, scope)
                            .await
                    }
                    None => db.feed.read(&db.db, after, max_docs).await,
                };
                Some(match read {
                    Ok(read) => read.event(),
                    Err(e) => HubEvent::ReadFailed(e.to_string()),
                })
            }
            _ => hub_storage(&db.db, id, &action, |m| metrics.push(m)).await,
        };
        if let (HubAction::RecordPurgeReceipt { receipt, signed }, None) = (&action, &ev) {
            tracing::info!(peer = %self.peer, identity = %id, order = receipt.order, removed = receipt.removed, signed = signed.is_some(), "purge receipt recorded");
        }
        for m in metrics {
            self.count(m);
        }
        match ev {
            Some(HubEvent::PushApplied { .. }) => {
                self.hub.metrics().commit_latency(started.elapsed());
            }
            Some(HubEvent::PushFailed(_) | HubEvent::ReadFailed(_)) => {
                if let Some(why) = self.hub.check_failed(&db).await {
                    // The database failed (a disk error): a retryable
                    // reason instead of `storage`; a batch was not applied
                    // and the edge pushes it again later.
                    self.bye(unavailable(&self.database, &why)).await;
                    return Step::End;
                }
            }
            _ => {}
        }
        ev.into()
    }

    async fn register_replacement(
        &mut self,
        request: u64,
        chain: Vec<Vec<u8>>,
    ) -> Step<HubEvent<'static>> {
        let (Some(id), Some(c)) = (self.identity.clone(), self.cert) else {
            let _ = request;
            return Step::Feed(HubEvent::ReplacementJudged {
                code: "replace_not_certificate".into(),
                message:
                    "only a session authenticated with a client certificate registers a replacement"
                        .into(),
            });
        };
        let judged =
            crate::cert_session::register(&self.hub, &id, &self.database, &c.key, &chain).await;
        Step::Feed(match judged {
            Ok(()) => HubEvent::ReplacementJudged {
                code: String::new(),
                message: String::new(),
            },
            Err(r) => HubEvent::ReplacementJudged {
                code: r.code().into(),
                message: r.to_string(),
            },
        })
    }

    fn metric(&mut self, m: HubMetric) {
        self.count(m);
    }

    fn close(&mut self, code: String, message: String) {
        tracing::info!(peer = %self.peer, identity = self.identity.as_deref().unwrap_or("-"), %code, %message, "closing session");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future a function returns, without calling it.
    fn future_bytes<F, Fut>(_: F) -> usize
    where
        F: FnOnce(WebSocket, Arc<Hub>, Arc<Conn>) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// Every connected edge keeps `serve`'s future for as long as it is
    /// connected, so its size is most of what an idle edge costs the hub
    /// (target: at most 16 KiB per idle edge, docs/benchmarks.md
    /// "Fan-out"). Awaiting the actions' future in place (`Shell::handle`)
    /// made it 10.7 KiB; boxed, it is about 4.3 KiB.
    #[test]
    fn an_idle_session_keeps_a_small_future() {
        let bytes = future_bytes(serve);
        assert!(
            bytes <= 6 * 1024,
            "a session's future is {bytes} bytes: a large future awaited in `serve` \
             (box it, as `Shell::handle` does)"
        );
    }
}
