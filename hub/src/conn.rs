//! Connections: accepting them under the `[limits]` caps, the read budget
//! of a WebSocket before it authenticates, the TLS handshake and HTTP/1.1
//! with a header-read timeout, and their graceful end.
//!
//! Every accepted TCP connection is admitted by the [`Gate`] (a
//! per-address rate of new connections, then the total, unauthenticated and
//! per-address caps) or refused at once. Over the rate the socket is reset
//! right at accept: no task, no byte read, no answer (a flooding address
//! gets nothing for its connections, and costs the hub an accept and a
//! close). Over a cap, plain HTTP gets `503 Service Unavailable` with
//! `Retry-After` and is closed; over TLS the socket is closed before any
//! handshake (a handshake is the work the cap saves). An admitted connection is a [`Conn`], shared by its
//! socket ([`Metered`]) and its requests (a request extension), and freed
//! when both are gone. A `/sync` upgrade gives its socket a read budget
//! ([`PRE_AUTH_READ_BYTES`]) that lasts until the session authenticates:
//! a client that sends more before `Welcome` gets a read error, so the hub
//! never buffers more of an unauthenticated connection than that.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::server::Acceptor;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::LazyConfigAcceptor;
use tower::ServiceExt;

use crate::config::Limits;
use crate::state::Hub;

/// Largest WebSocket message a session may send before it is authenticated
/// (its `Hello`): 64 KiB. A bigger one closes the connection (1009).
pub const PRE_AUTH_MESSAGE_BYTES: usize = 64 << 10;

/// Bytes the hub reads from a `/sync` socket after the upgrade and before
/// the session is authenticated: one [`PRE_AUTH_MESSAGE_BYTES`] message,
/// its frame header, a read buffer of what may follow it, a few pings.
pub const PRE_AUTH_READ_BYTES: u64 =
    (PRE_AUTH_MESSAGE_BYTES + crate::server::WS_READ_BUFFER_BYTES + 1024) as u64;

/// Largest HTTP request head (request line and headers) the hub buffers.
pub const MAX_HEADER_BYTES: usize = 64 << 10;

/// Why a connection or session was refused: the `reason` label of
/// `outpost_connections_refused_total`.
pub mod reason {
    /// `[limits] max_connections`.
    pub const MAX_CONNECTIONS: &str = "max_connections";
    /// `[limits] max_unauthenticated`.
    pub const MAX_UNAUTHENTICATED: &str = "max_unauthenticated";
    /// `[limits] max_connections_per_address`.
    pub const MAX_PER_ADDRESS: &str = "max_connections_per_address";
    /// `[limits] new_connections_per_address_per_second`: closed at accept,
    /// without an answer.
    pub const NEW_CONNECTION_RATE: &str = "new_connections_per_address";
    /// `[limits] max_sessions_per_identity`.
    pub const MAX_PER_IDENTITY: &str = "max_sessions_per_identity";
    /// No `Welcome` within `[limits] hello_timeout_ms`.
    pub const HELLO_TIMEOUT: &str = "hello_timeout";
    /// More than the pre-authentication budget before `Welcome`.
    pub const PRE_AUTH_TOO_LARGE: &str = "pre_auth_too_large";
}

#[derive(Debug, Default)]
struct Counts {
    total: u32,
    unauthenticated: u32,
    by_address: HashMap<IpAddr, u32>,
    by_identity: HashMap<String, u32>,
    /// New-connection buckets by peer address (see [`rate_key`]).
    rates: HashMap<IpAddr, Tokens>,
    /// When `rates` was last pruned of full buckets.
    pruned: Option<Instant>,
}

/// Peer addresses whose new-connection bucket is tracked at a time: beyond
/// it (an attacker with very many addresses), full buckets are dropped (at
/// most once a second) and, while still over, a new address is not
/// rate-checked (the total and unauthenticated caps still hold).
const MAX_RATE_ADDRESSES: usize = 65_536;

/// A new-connection token bucket.
#[derive(Debug, Clone, Copy)]
struct Tokens {
    tokens: f64,
    at: Instant,
}

/// What the new-connection rate is kept by: an IPv4 address, or an IPv6
/// address's /64 (one host gets a /64 to pick from) with IPv4-mapped
/// addresses as IPv4.
fn rate_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl Counts {
    /// Takes one new-connection token of `ip` at `now`; false when its
    /// bucket is empty. `rate == 0`: no limit.
    fn take_token(&mut self, ip: IpAddr, rate: u32, burst: u32, now: Instant) -> bool {
        if rate == 0 {
            return true;
        }
        let (rate, burst) = (f64::from(rate), f64::from(burst.max(1)));
        let key = rate_key(ip);
        if !self.rates.contains_key(&key) && self.rates.len() >= MAX_RATE_ADDRESSES {
            let due = self
                .pruned
                .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1));
            if due {
                self.pruned = Some(now);
                self.rates.retain(|_, b| {
                    b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
                });
            }
            if self.rates.len() >= MAX_RATE_ADDRESSES {
                return true;
            }
        }
        let b = self.rates.entry(key).or_insert(Tokens {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The live connection counts that the caps are checked against.
#[derive(Debug, Default)]
pub struct Gate {
    counts: Mutex<Counts>,
    /// When a refusal was last logged (ms since the epoch): at most one
    /// warning a second, whatever the flood.
    last_warned_ms: AtomicI64,
}

impl Gate {
    /// A gate with no connection.
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a new connection from `peer` under `limits`, or names the
    /// cap it would exceed.
    pub fn admit(
        self: &Arc<Self>,
        peer: SocketAddr,
        limits: &Limits,
    ) -> Result<Arc<Conn>, &'static str> {
        self.admit_at(peer, limits, Instant::now())
    }

    /// [`Gate::admit`] at `now`. The new-connection rate is checked first
    /// (every accepted socket costs its address a token, admitted or not).
    fn admit_at(
        self: &Arc<Self>,
        peer: SocketAddr,
        limits: &Limits,
        now: Instant,
    ) -> Result<Arc<Conn>, &'static str> {
        let mut c = self.lock();
        if !c.take_token(
            peer.ip(),
            limits.new_connections_per_address_per_second,
            limits.new_connections_per_address_burst,
            now,
        ) {
            return Err(reason::NEW_CONNECTION_RATE);
        }
        if c.total >= limits.max_connections {
            return Err(reason::MAX_CONNECTIONS);
        }
        if c.unauthenticated >= limits.max_unauthenticated {
            return Err(reason::MAX_UNAUTHENTICATED);
        }
        let ip = peer.ip();
        let from_ip = c.by_address.get(&ip).copied().unwrap_or(0);
        if from_ip >= limits.max_connections_per_address {
            return Err(reason::MAX_PER_ADDRESS);
        }
        c.total += 1;
        c.unauthenticated += 1;
        c.by_address.insert(ip, from_ip + 1);
        Ok(Arc::new(Conn {
            gate: self.clone(),
            peer,
            read: AtomicU64::new(0),
            budget: AtomicU64::new(u64::MAX),
            exceeded: AtomicBool::new(false),
            authenticated: AtomicBool::new(false),
            client_chain: std::sync::OnceLock::new(),
        }))
    }

    /// Open connections: (total, unauthenticated).
    pub fn open(&self) -> (u32, u32) {
        let c = self.lock();
        (c.total, c.unauthenticated)
    }

    /// Whether a refusal should be logged now (at most once a second).
    pub fn should_warn(&self) -> bool {
        let now = crate::session::now_ms();
        let last = self.last_warned_ms.load(Ordering::Relaxed);
        now - last >= 1000
            && self
                .last_warned_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// One admitted TCP connection: its place in the counts (given back on
/// drop) and its read budget.
#[derive(Debug)]
pub struct Conn {
    gate: Arc<Gate>,
    peer: SocketAddr,
    /// Bytes read from the socket so far.
    read: AtomicU64,
    /// Reads stop (with an error) once `read` reaches this; `u64::MAX`: no
    /// budget.
    budget: AtomicU64,
    exceeded: AtomicBool,
    authenticated: AtomicBool,
    /// The certificate chain the client presented over TLS (mutual TLS),
    /// leaf first; empty when none.
    client_chain: std::sync::OnceLock<Vec<rustls_pki_types::CertificateDer<'static>>>,
}

impl Conn {
    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The certificate chain the client presented over TLS, leaf first
    /// (empty: none, or plain HTTP). Only its holding of the leaf's key is
    /// proven (`crate::tls::ClientCerts`); `crate::certs` judges the rest.
    pub fn client_chain(&self) -> &[rustls_pki_types::CertificateDer<'static>] {
        self.client_chain.get().map_or(&[], Vec::as_slice)
    }

    /// From now on, read at most `bytes` more until `Conn::authenticated`.
    pub fn limit_reads(&self, bytes: u64) {
        if !self.authenticated.load(Ordering::Acquire) {
            let read = self.read.load(Ordering::Acquire);
            self.budget
                .store(read.saturating_add(bytes), Ordering::Release);
        }
    }

    /// Whether a read was refused because the budget was spent.
    pub fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Acquire)
    }

    /// The session authenticated as `identity`: lifts the read budget and
    /// leaves the unauthenticated count, unless `identity` already has
    /// `max` sessions (then nothing changes and `None` is returned). The
    /// slot is given back when the returned guard drops.
    pub fn authenticate(self: &Arc<Self>, identity: &str, max: u32) -> Option<IdentitySlot> {
        let mut c = self.gate.lock();
        let n = c.by_identity.get(identity).copied().unwrap_or(0);
        if n >= max {
            return None;
        }
        c.by_identity.insert(identity.to_string(), n + 1);
        if !self.authenticated.swap(true, Ordering::AcqRel) {
            c.unauthenticated = c.unauthenticated.saturating_sub(1);
        }
        self.budget.store(u64::MAX, Ordering::Release);
        Some(IdentitySlot {
            gate: self.gate.clone(),
            identity: identity.to_string(),
        })
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let mut c = self.gate.lock();
        c.total = c.total.saturating_sub(1);
        if !self.authenticated.load(Ordering::Acquire) {
            c.unauthenticated = c.unauthenticated.saturating_sub(1);
        }
        let ip = self.peer.ip();
        match c.by_address.get(&ip).copied() {
            Some(n) if n > 1 => {
                c.by_address.insert(ip, n - 1);
            }
            _ => {
                c.by_address.remove(&ip);
            }
        }
    }
}

/// An authenticated session's place in the per-identity count.
#[derive(Debug)]
pub struct IdentitySlot {
    gate: Arc<Gate>,
    identity: String,
}

impl Drop for IdentitySlot {
    fn drop(&mut self) {
        let mut c = self.gate.lock();
        match c.by_identity.get(&self.identity).copied() {
            Some(n) if n > 1 => {
                c.by_identity.insert(self.identity.clone(), n - 1);
            }
            _ => {
                c.by_identity.remove(&self.identity);
            }
        }
    }
}

/// A socket that counts what is read from it and refuses to read past its
/// [`Conn`]'s budget.
#[derive(Debug)]
pub struct Metered<S> {
    inner: S,
    conn: Arc<Conn>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let budget = this.conn.budget.load(Ordering::Acquire);
        let used = this.conn.read.load(Ordering::Acquire);
        if used >= budget {
            this.conn.exceeded.store(true, Ordering::Release);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "more than the pre-authentication limit",
            )));
        }
        let room = usize::try_from(budget - used).unwrap_or(usize::MAX);
        let n = if buf.remaining() <= room {
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            buf.filled().len() - before
        } else {
            // Near the end of the budget: read no more than it allows.
            let mut tmp = vec![0u8; room.min(16 << 10)];
            let mut small = ReadBuf::new(&mut tmp);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut small))?;
            buf.put_slice(small.filled());
            small.filled().len()
        };
        this.conn.read.fetch_add(n as u64, Ordering::AcqRel);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Accepts connections on `listener` and serves `app` on each (over TLS
/// when `tls` is set) until the hub is asked to shut down; then stops
/// accepting, lets open HTTP exchanges finish, and returns once every
/// connection task has ended (upgraded WebSockets live on in their
/// sessions).
pub async fn serve(
    hub: Arc<Hub>,
    gate: Arc<Gate>,
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<crate::tls::ServerTls>>,
) -> io::Result<()> {
    let stop = hub.shutdown_watch();
    let mut tasks = JoinSet::new();
    let mut shutdown = hub.shutdown_watch();
    // The listener is polled through `AsyncFd` and accepted sockets are
    // plain `std` ones: a refused socket is closed without ever being
    // registered with the runtime's reactor (two `epoll_ctl` calls saved
    // per refusal, ~a fifth of what a refusal costs).
    // `AsyncFd::new` is deprecated as unsound for a `T` whose file
    // descriptor may change or close under it; an owned `std` listener
    // keeps its descriptor until it is dropped, after the `AsyncFd`.
    #[allow(deprecated)]
    let listener = AsyncFd::new(listener.into_std()?)?;
    loop {
        let (tcp, peer) = tokio::select! {
            r = accept(&listener) => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            () = stopping(&mut shutdown) => break,
        };
        let limits = hub.config().limits.clone();
        let conn = match gate.admit(peer, &limits) {
            Ok(c) => c,
            Err(why) => {
                hub.metrics().connection_refused(why);
                if gate.should_warn() {
                    tracing::warn!(%peer, reason = why, "connection refused: over a [limits] cap (further refusals this second are only counted)");
                }
                if why == reason::NEW_CONNECTION_RATE {
                    // Over its rate: as cheap as a refusal gets. No task,
                    // no reactor registration, no answer, no read; a reset
                    // (no TIME_WAIT left on the hub's side).
                    let tcp = tokio::net::TcpSocket::from_std_stream(tcp);
                    let _ = tcp.set_zero_linger();
                    drop(tcp);
                } else if tls.is_none()
                    && let Ok(tcp) = into_tokio(tcp)
                {
                    tokio::spawn(refuse(tcp, why, limits.retry_after_seconds));
                }
                continue;
            }
        };
        let Ok(tcp) = into_tokio(tcp) else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let io = Metered {
            inner: tcp,
            conn: conn.clone(),
        };
        let header_timeout = Duration::from_millis(limits.header_read_timeout_ms);
        let (app, tls, stop) = (app.clone(), tls.clone(), stop.clone());
        tasks.spawn(async move {
            match tls {
                None => serve_http(io, conn, app, header_timeout, stop).await,
                Some(tls) => {
                    // One deadline for the whole handshake; the configuration
                    // is chosen from the `ClientHello` (`ServerTls::for_hello`).
                    let handshake = async {
                        let start = LazyConfigAcceptor::new(Acceptor::default(), io).await?;
                        let config = tls.for_hello(&start.client_hello());
                        start.into_stream(config).await
                    };
                    match tokio::time::timeout(header_timeout, handshake).await {
                        Ok(Ok(s)) => {
                            if let Some(chain) = s.get_ref().1.peer_certificates() {
                                let _ = conn
                                    .client_chain
                                    .set(chain.iter().map(|c| c.clone().into_owned()).collect());
                            }
                            serve_http(s, conn, app, header_timeout, stop).await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// The next connection on `listener` (a plain `std` socket, not yet
/// registered with the reactor).
async fn accept(
    listener: &AsyncFd<std::net::TcpListener>,
) -> io::Result<(std::net::TcpStream, SocketAddr)> {
    loop {
        let mut ready = listener.readable().await?;
        if let Ok(r) = ready.try_io(|l| l.get_ref().accept()) {
            return r;
        }
    }
}

/// An accepted socket, non-blocking and registered with the reactor.
fn into_tokio(tcp: std::net::TcpStream) -> io::Result<TcpStream> {
    tcp.set_nonblocking(true)?;
    TcpStream::from_std(tcp)
}

/// Resolves once the hub is asked to shut down.
async fn stopping(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// HTTP/1.1 on one connection: requests carry the [`Conn`] and the peer
/// (`ConnectInfo<SocketAddr>`); a request head must arrive whole within
/// `header_timeout` (idle keep-alive included); upgrades are served.
async fn serve_http<S>(
    io: S,
    conn: Arc<Conn>,
    app: Router,
    header_timeout: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let mut req = req.map(axum::body::Body::new);
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut().insert(conn.clone());
        app.clone().oneshot(req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEADER_BYTES);
    let served = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(served);
    let mut stop = stop;
    let stopped = async move { stopping(&mut stop).await };
    let result = tokio::select! {
        r = served.as_mut() => r,
        () = stopped => {
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "HTTP connection ended");
    }
}

/// Answers a refused plain-HTTP connection with 503 and `Retry-After`,
/// then closes it (after reading what the client sent, for at most a
/// second, so the answer is not lost to a reset).
async fn refuse(mut tcp: TcpStream, why: &str, retry_after: u32) {
    let body = format!("the hub is over a connection limit ({why}); retry later\n");
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {retry_after}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        tcp.write_all(answer.as_bytes()).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut total = 0usize;
        while total < 64 << 10 {
            let n = tokio::io::AsyncReadExt::read(&mut tcp, &mut sink).await?;
            if n == 0 {
                break;
            }
            total += n;
        }
        Ok::<_, io::Error>(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_are_counted_and_given_back() {
        let gate = Gate::new();
        let limits = Limits {
            max_connections: 3,
            max_unauthenticated: 2,
            max_connections_per_address: 2,
            ..Limits::default()
        };
        let a: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:1".parse().unwrap();
        let c1 = gate.admit(a, &limits).unwrap();
        let c2 = gate.admit(a, &limits).unwrap();
        assert_eq!(
            gate.admit(b, &limits).unwrap_err(),
            reason::MAX_UNAUTHENTICATED
        );
        let slot = c1.authenticate("e", 1).unwrap();
        assert!(c2.authenticate("e", 1).is_none());
        assert_eq!(gate.admit(a, &limits).unwrap_err(), reason::MAX_PER_ADDRESS);
        let c3 = gate.admit(b, &limits).unwrap();
        assert_eq!(gate.admit(b, &limits).unwrap_err(), reason::MAX_CONNECTIONS);
        assert_eq!(gate.open(), (3, 2));
        drop((c2, c3));
        assert_eq!(gate.open(), (1, 0));
        drop(slot);
        let again = c1.authenticate("e", 1).unwrap();
        drop((again, c1));
        assert_eq!(gate.open(), (0, 0));
        assert!(gate.lock().by_address.is_empty() && gate.lock().by_identity.is_empty());
    }

    #[test]
    fn new_connections_are_paced_per_address() {
        let gate = Gate::new();
        let limits = Limits {
            new_connections_per_address_per_second: 2,
            new_connections_per_address_burst: 3,
            ..Limits::default()
        };
        let t0 = Instant::now();
        let a: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:1".parse().unwrap();
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(gate.admit_at(a, &limits, t0).unwrap());
        }
        assert_eq!(
            gate.admit_at(a, &limits, t0).unwrap_err(),
            reason::NEW_CONNECTION_RATE
        );
        // Closed connections give no token back: it is a rate, not a cap.
        held.clear();
        assert_eq!(
            gate.admit_at(a, &limits, t0).unwrap_err(),
            reason::NEW_CONNECTION_RATE
        );
        // Another address has its own bucket.
        held.push(gate.admit_at(b, &limits, t0).unwrap());
        // Half a second later one token is back (2 a second).
        let later = t0 + Duration::from_millis(500);
        held.push(gate.admit_at(a, &limits, later).unwrap());
        assert!(gate.admit_at(a, &limits, later).is_err());
        // An IPv6 host's /64 is one address; IPv4-mapped is IPv4.
        let v6a: SocketAddr = "[2001:db8:1:2::1]:1".parse().unwrap();
        let v6b: SocketAddr = "[2001:db8:1:2:ffff::9]:1".parse().unwrap();
        let v6c: SocketAddr = "[2001:db8:1:3::1]:1".parse().unwrap();
        for _ in 0..3 {
            held.push(gate.admit_at(v6a, &limits, t0).unwrap());
        }
        assert!(gate.admit_at(v6b, &limits, t0).is_err());
        held.push(gate.admit_at(v6c, &limits, t0).unwrap());
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:1".parse().unwrap();
        assert!(gate.admit_at(mapped, &limits, later).is_err());
        // 0 per second: no limit.
        let open = Limits {
            new_connections_per_address_per_second: 0,
            ..limits.clone()
        };
        held.push(gate.admit_at(a, &open, later).unwrap());
    }

    #[test]
    fn the_tracked_addresses_are_bounded() {
        let mut c = Counts::default();
        let t0 = Instant::now();
        for i in 0..MAX_RATE_ADDRESSES as u32 {
            assert!(c.take_token(IpAddr::from(i.to_be_bytes()), 1, 1, t0));
        }
        assert_eq!(c.rates.len(), MAX_RATE_ADDRESSES);
        // Full: a new address is let through untracked (every bucket is
        // empty, none can be dropped).
        let extra = IpAddr::from([250, 0, 0, 1]);
        assert!(c.take_token(extra, 1, 1, t0));
        assert_eq!(c.rates.len(), MAX_RATE_ADDRESSES);
        // Two seconds later every bucket is full again: they are dropped.
        assert!(c.take_token(extra, 1, 1, t0 + Duration::from_secs(2)));
        assert_eq!(c.rates.len(), 1);
    }
}
