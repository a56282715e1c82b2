//! Limits before authentication and per edge (issue 10, attack class 7),
//! against real `outpost-hub serve` processes ([`HubProcess`]):
//!
//! - a big first message is refused without the hub holding it (its memory
//!   is measured while 8 sockets each send 30 MiB);
//! - a WebSocket that does not authenticate in `hello_timeout_ms` is closed,
//!   whether it is idle or sends only `Ping`s;
//! - a half-sent HTTP request head, and a stalled TLS handshake, are cut
//!   after `header_read_timeout_ms`;
//! - new connections from one address past its rate are reset at accept,
//!   without an answer, while other addresses connect and an honest edge
//!   syncs;
//! - the caps (per address, in total, per identity) refuse with HTTP 503 +
//!   `Retry-After` or `Error(too_many_connections)` while an honest edge
//!   keeps its session;
//! - pushes over `pushes_per_second` are slowed down, not refused;
//! - one identity gets its `push_docs_per_second` budget however many
//!   sessions it opens, counted in documents; an honest edge with a backlog
//!   bigger than the burst is paced and ends with every document;
//! - new sessions over `sessions_per_second` wait for `Welcome`, and are
//!   refused (`too_many_connections`) only beyond a 5 s wait;
//! - the new `[limits]` keys are validated (typed errors naming the key);
//! - `/status` and `/metrics` need the admin token; `/healthz` does not.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use outpost::DbId;
use outpost::sync::Frame;
use outpost_hub::config::Config;
use outpost_hub::error::HubError;
use outpost_testkit::hostile::{Answer, Hostile, Incoming, doc, live, new_db_id};
use outpost_testkit::hub::{ADMIN_TOKEN, HubProcess, wait_until};
use outpost_testkit::{DEV_TOKENS, TempDir, edge_toml};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message};

const BIN: &str = env!("CARGO_BIN_EXE_outpost-hub");
const TOKEN: &str = "laptop-secret-token";
/// The longest any single wait here lasts.
const WAIT: Duration = Duration::from_secs(30);

type Ws = WebSocketStream<TcpStream>;

/// A hub with edge `laptop` (token [`TOKEN`], notes/) and `limits` as its
/// `[limits]` table.
struct Hub {
    proc: HubProcess,
    _dir: TempDir,
}

impl Hub {
    fn start(name: &str, limits: &str, args: &[&str]) -> Hub {
        Hub::start_with(name, limits, args, None)
    }

    /// [`Hub::start`], importing `jsonl` into database `main` first.
    fn start_with(name: &str, limits: &str, args: &[&str], jsonl: Option<&str>) -> Hub {
        let dir = TempDir::new(
            std::env::temp_dir(),
            &format!("outpost-limits-{name}-{}", std::process::id()),
        );
        let cfg = format!(
            "data_dir = \"data\"\n{DEV_TOKENS}\n[[database]]\nname = \"main\"\n\n{}\n[limits]\n{limits}\n",
            edge_toml("laptop", TOKEN, &["notes/"], &["notes/"])
        );
        std::fs::write(dir.join("outpost-hub.toml"), cfg).unwrap();
        if let Some(jsonl) = jsonl {
            std::fs::write(dir.join("import.jsonl"), jsonl).unwrap();
            let out = std::process::Command::new(BIN)
                .current_dir(dir.path())
                .args(["--config", "outpost-hub.toml", "import", "import.jsonl"])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let proc = HubProcess::start(BIN, dir.path(), &all);
        Hub { proc, _dir: dir }
    }

    fn port(&self) -> u16 {
        self.proc.port()
    }

    /// The value of a metric line (`name{labels}` exactly), 0 if absent.
    fn metric(&self, line: &str) -> u64 {
        let (code, text) = self.proc.get("/metrics");
        assert_eq!(code, 200, "{text}");
        text.lines()
            .find_map(|l| l.strip_prefix(line)?.strip_prefix(' '))
            .map_or(0, |v| v.trim().parse().unwrap())
    }

    fn refused(&self, reason: &str) -> u64 {
        self.metric(&format!(
            "outpost_connections_refused_total{{reason=\"{reason}\"}}"
        ))
    }
}

/// A TCP connection to the hub from `source` (any 127.0.0.0/8 address:
/// each is another peer address for the hub).
async fn tcp_from(source: [u8; 4], port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap()
}

/// A WebSocket to `/sync` from `source`, or the hub's refusal.
async fn ws_from(source: [u8; 4], port: u16) -> Result<Ws, tungstenite::Error> {
    let tcp = tcp_from(source, port).await;
    let url = format!("ws://127.0.0.1:{port}/sync");
    tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url.as_str(), tcp))
        .await
        .expect("the upgrade answered in time")
        .map(|(ws, _)| ws)
}

fn hello_frame(identity: &str, token: &str) -> Frame {
    // A token session (development mode): these tests are about limits.
    outpost_testkit::hostile::Hostile::token_hello_frame(identity, token, DbId([7; 16]), 0)
}

async fn send(ws: &mut Ws, f: &Frame) {
    ws.send(Message::Binary(f.encode().into())).await.unwrap();
}

/// The next protocol frame; `None` when the connection ends (close, reset).
async fn next_frame(ws: &mut Ws) -> Option<Frame> {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame or the end in time")
        {
            Some(Ok(Message::Binary(b))) => return Some(Frame::decode(&b, 64 << 20).unwrap()),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// Sends `Hello` as `laptop` and returns the first frame (`Welcome` when
/// it is accepted).
async fn authenticate(ws: &mut Ws) -> Frame {
    send(ws, &hello_frame("laptop", TOKEN)).await;
    next_frame(ws).await.expect("an answer to Hello")
}

/// Waits for a frame satisfying `pred`, skipping others (Changes, Live...).
async fn frame_where(ws: &mut Ws, what: &str, pred: impl Fn(&Frame) -> bool) -> Frame {
    loop {
        match next_frame(ws).await {
            Some(f) if pred(&f) => return f,
            Some(_) => {}
            None => panic!("the connection ended before {what}"),
        }
    }
}

fn is_503_with_retry_after(r: Result<Ws, tungstenite::Error>) -> bool {
    match r {
        Err(tungstenite::Error::Http(resp)) => {
            resp.status() == 503 && resp.headers().contains_key("retry-after")
        }
        _ => false,
    }
}

/// Before the fix, the 32 MiB frame limit applied before authentication:
/// 8 sockets each sending a 30 MiB first message held ~240 MiB of the hub.
/// Now the hub reads at most ~73 KiB of an unauthenticated WebSocket.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_big_first_message_is_refused_without_being_buffered() {
    let hub = Hub::start("bigframe", "", &[]);
    let port = hub.port();
    let _ = hub.proc.get("/healthz");
    let baseline = hub.proc.rss_kib().expect("the hub's VmRSS");

    // Sample the hub's memory while the sockets send.
    let peak = Arc::new(AtomicU64::new(baseline));
    let done = Arc::new(AtomicBool::new(false));
    let pid = hub.proc.pid().unwrap();
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .find_map(|l| l.strip_prefix("VmRSS:"))
                            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                    })
                    .unwrap_or(0);
                peak.fetch_max(rss, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let mut tasks = Vec::new();
    for _ in 0..8 {
        tasks.push(tokio::spawn(async move {
            let mut ws = ws_from([127, 0, 0, 1], port).await.unwrap();
            let big = vec![0x42u8; 30 << 20];
            // The hub stops reading and closes: the send fails or ends.
            let _ = tokio::time::timeout(WAIT, ws.send(Message::Binary(big.into()))).await;
            // And the connection ends.
            while let Ok(Some(Ok(_))) = tokio::time::timeout(WAIT, ws.next()).await {}
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let grew = peak.load(Ordering::Relaxed).saturating_sub(baseline);
    eprintln!(
        "hub VmRSS: {baseline} KiB before, peak {} KiB while 8 sockets sent 30 MiB each before Hello",
        baseline + grew
    );
    assert!(
        grew < 24 << 10,
        "the hub's memory grew by {grew} KiB while 8 unauthenticated sockets sent 30 MiB each"
    );
    wait_until("8 refusals counted", || async {
        hub.refused("pre_auth_too_large") >= 8
    })
    .await;

    // A first message a little over 64 KiB (within what is read) gets a
    // clean WebSocket close 1009.
    let mut ws = ws_from([127, 0, 0, 1], port).await.unwrap();
    ws.send(Message::Binary(vec![1u8; 70 << 10].into()))
        .await
        .unwrap();
    let code = loop {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Close(Some(c)))) => break u16::from(c.code),
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, 1009);

    // An honest edge still authenticates (its Hello is small).
    let mut ws = ws_from([127, 0, 0, 1], port).await.unwrap();
    let welcome = authenticate(&mut ws).await;
    assert!(matches!(welcome, Frame::Welcome { .. }), "{welcome:?}");
    // And after Welcome, a message far above 64 KiB is taken (a Ping
    // wrapped in padding would be a protocol error; a big Push is refused
    // by the machine, not by the read budget): the session answers.
    send(&mut ws, &Frame::Ping { nonce: 7 }).await;
    frame_where(&mut ws, "Pong", |f| matches!(f, Frame::Pong { nonce: 7 })).await;
}

/// `Ping` before `Hello` used to reset the timeout: a client could hold a
/// connection for ever without authenticating.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_authenticate_is_closed_after_the_hello_deadline() {
    let hub = Hub::start("hello", "hello_timeout_ms = 1000", &[]);
    let port = hub.port();

    // Idle: Error(timeout), then the end.
    let started = Instant::now();
    let mut idle = ws_from([127, 0, 0, 1], port).await.unwrap();
    match next_frame(&mut idle).await {
        Some(Frame::Error { code, .. }) => assert_eq!(code, "timeout"),
        other => panic!("expected Error(timeout), got {other:?}"),
    }
    assert!(next_frame(&mut idle).await.is_none());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );

    // Only Pings: closed all the same (Error(timeout), or Error(protocol)
    // where the machine refuses Ping before Hello), never kept open.
    let started = Instant::now();
    let mut pinger = ws_from([127, 0, 0, 1], port).await.unwrap();
    let mut nonce = 0;
    let ended = loop {
        nonce += 1;
        if pinger
            .send(Message::Binary(Frame::Ping { nonce }.encode().into()))
            .await
            .is_err()
        {
            break None;
        }
        match tokio::time::timeout(Duration::from_millis(200), pinger.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => match Frame::decode(&b, 1 << 20).unwrap() {
                Frame::Pong { .. } => {}
                Frame::Error { code, .. } => break Some(code),
                other => panic!("unexpected {other:?}"),
            },
            Ok(Some(Ok(_))) | Err(_) => {}
            Ok(Some(Err(_)) | None) => break None,
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a Ping-only client is still connected after {:?}",
            started.elapsed()
        );
    };
    if let Some(code) = ended {
        assert!(code == "timeout" || code == "protocol", "{code}");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    wait_until("the timeouts counted", || async {
        hub.refused("hello_timeout") >= 1
    })
    .await;
}

/// A half-sent request head was never timed out (slowloris).
#[test]
fn a_half_sent_http_header_is_cut_after_the_header_read_timeout() {
    let hub = Hub::start("header", "header_read_timeout_ms = 1000", &[]);
    // Half a request line; nothing at all; a whole request, then an idle
    // keep-alive connection.
    for sent in [
        &b"GET /healthz HTT"[..],
        b"",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let started = Instant::now();
        let mut s = std::net::TcpStream::connect(hub.proc.addr()).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(sent).unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(5),
            "{:?}: closed after {took:?}",
            String::from_utf8_lossy(sent)
        );
    }
    // A whole request is still answered.
    assert_eq!(hub.proc.get_anonymous("/healthz").0, 200);
}

/// Over TLS, a client that connects and never finishes the handshake is
/// cut after the same timeout.
#[test]
fn a_stalled_tls_handshake_is_cut() {
    let hub = Hub::start("tls", "header_read_timeout_ms = 1000", &["--dev-tls"]);
    for partial in [&b""[..], b"\x16\x03\x01\x02\x00\x01"] {
        let started = Instant::now();
        let mut s = std::net::TcpStream::connect(hub.proc.addr()).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(partial).unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(5),
            "closed after {took:?}"
        );
    }
}

/// Connections were not capped at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_caps_refuse_with_503_or_too_many_connections_while_an_honest_edge_syncs() {
    let hub = Hub::start(
        "caps",
        "max_connections = 4\nmax_connections_per_address = 2\nmax_sessions_per_identity = 2",
        &[],
    );
    let port = hub.port();

    // An honest edge from its own address.
    let mut honest = ws_from([127, 0, 0, 2], port).await.unwrap();
    let welcome = authenticate(&mut honest).await;
    assert!(matches!(welcome, Frame::Welcome { .. }), "{welcome:?}");

    // Per address: two from 127.0.0.3, the third is refused.
    let a1 = ws_from([127, 0, 0, 3], port).await.unwrap();
    let a2 = ws_from([127, 0, 0, 3], port).await.unwrap();
    assert!(is_503_with_retry_after(ws_from([127, 0, 0, 3], port).await));

    // In total: a fourth connection from 127.0.0.4 fits, a fifth does not.
    let b1 = ws_from([127, 0, 0, 4], port).await.unwrap();
    assert!(is_503_with_retry_after(ws_from([127, 0, 0, 5], port).await));

    // The honest session is unaffected.
    send(&mut honest, &Frame::Ping { nonce: 1 }).await;
    frame_where(&mut honest, "Pong", |f| {
        matches!(f, Frame::Pong { nonce: 1 })
    })
    .await;

    drop((a1, a2, b1));
    // Per identity: a second session of `laptop` is taken, a third refused.
    let mut second = loop {
        // The hub notices the closed sockets shortly.
        if let Ok(ws) = ws_from([127, 0, 0, 6], port).await {
            break ws;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let welcome = authenticate(&mut second).await;
    assert!(matches!(welcome, Frame::Welcome { .. }), "{welcome:?}");
    let mut third = ws_from([127, 0, 0, 7], port).await.unwrap();
    match authenticate(&mut third).await {
        Frame::Error { code, .. } => assert_eq!(code, "too_many_connections"),
        other => panic!("expected Error(too_many_connections), got {other:?}"),
    }
    assert!(next_frame(&mut third).await.is_none());
    send(&mut honest, &Frame::Ping { nonce: 2 }).await;
    frame_where(&mut honest, "Pong", |f| {
        matches!(f, Frame::Pong { nonce: 2 })
    })
    .await;

    // One session ends: its slot is given back.
    drop(second);
    let mut fourth = loop {
        let mut ws = ws_from([127, 0, 0, 8], port).await.unwrap();
        match authenticate(&mut ws).await {
            Frame::Welcome { .. } => break ws,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    send(&mut fourth, &Frame::Ping { nonce: 3 }).await;
    frame_where(&mut fourth, "Pong", |f| {
        matches!(f, Frame::Pong { nonce: 3 })
    })
    .await;
    drop(fourth);

    wait_until("the refusals counted", || async {
        hub.refused("max_connections_per_address") >= 1
            && hub.refused("max_connections") >= 1
            && hub.refused("max_sessions_per_identity") >= 1
    })
    .await;
    // Every closed connection gave its place back: the honest session and
    // the /metrics request itself are left.
    wait_until("the counts given back", || async {
        hub.metric("outpost_connections_open") == 2
            && hub.metric("outpost_connections_unauthenticated") == 1
    })
    .await;
    drop(honest);
}

/// One request from `source` over a fresh connection: the bytes of the
/// answer (none when the hub closed or reset the socket without one).
async fn raw_healthz_from(source: [u8; 4], port: u16) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    // On loopback the reset can come before `connect` returns.
    let Ok(mut s) = socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
    else {
        return Vec::new();
    };
    let _ = s
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 4096];
        // A reset ends it as a close does.
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(read.is_ok(), "the hub neither answered nor closed in time");
    got
}

/// Before `new_connections_per_address_per_second`, an address opening
/// connections in a loop got each one accepted, parsed and answered (a 503
/// once over the caps: a task, a write and a read per connection): ~2,600 a
/// second in the flooding-edge benchmark. Now, past its burst, each is reset
/// at accept with no answer, other addresses are not affected, and the
/// address gets its rate back as the bucket refills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connections_over_the_per_address_rate_are_reset_at_accept_while_an_honest_edge_syncs()
{
    let hub = Hub::start(
        "connrate",
        "new_connections_per_address_per_second = 1\nnew_connections_per_address_burst = 10",
        &[],
    );
    let port = hub.port();
    let mut honest = ws_from([127, 0, 0, 2], port).await.unwrap();
    let welcome = authenticate(&mut honest).await;
    assert!(matches!(welcome, Frame::Welcome { .. }), "{welcome:?}");

    // 60 connections from 127.0.0.3, one after another.
    let (mut answered, mut silent) = (0, 0);
    let started = Instant::now();
    for _ in 0..60 {
        let got = raw_healthz_from([127, 0, 0, 3], port).await;
        if got.is_empty() {
            silent += 1;
        } else {
            assert!(
                got.starts_with(b"HTTP/1.1 200"),
                "{:?}",
                String::from_utf8_lossy(&got)
            );
            answered += 1;
        }
    }
    // The burst, plus one a second for the time the loop took.
    let allowed = 10 + started.elapsed().as_secs() + 1;
    assert!(
        answered >= 10 && answered <= allowed,
        "{answered} answered, {silent} closed without an answer (at most {allowed} allowed)"
    );
    assert_eq!(answered + silent, 60);
    let refused = hub.refused("new_connections_per_address");
    assert!(refused >= silent, "{refused} counted, {silent} refused");

    // Another address is not affected: a new honest session from 127.0.0.4.
    let mut other = ws_from([127, 0, 0, 4], port).await.unwrap();
    send(&mut other, &hello_frame("laptop", TOKEN)).await;
    let welcome = next_frame(&mut other).await.expect("an answer to Hello");
    assert!(matches!(welcome, Frame::Welcome { .. }), "{welcome:?}");
    // The honest session is unaffected.
    send(&mut honest, &Frame::Ping { nonce: 1 }).await;
    frame_where(&mut honest, "Pong", |f| {
        matches!(f, Frame::Pong { nonce: 1 })
    })
    .await;

    // A rate, not a ban: 127.0.0.3 gets a connection again once a token is
    // back.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = raw_healthz_from([127, 0, 0, 3], port).await;
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
}

/// Pushes over the rate are slowed down (the hub stops reading the socket
/// until a token refills), not refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_over_the_rate_limit_are_slowed_down_not_refused() {
    let hub = Hub::start("rate", "pushes_per_second = 4\npush_burst = 2", &[]);
    let mut ws = ws_from([127, 0, 0, 1], hub.port()).await.unwrap();
    let welcome = authenticate(&mut ws).await;
    assert!(matches!(welcome, Frame::Welcome { .. }), "{welcome:?}");
    let started = Instant::now();
    for upto in 1..=10 {
        let push = Frame::Push {
            upto,
            seq: 0,
            prev: [0; 32],
            signature: Vec::new(),
            docs: vec![],
        };
        send(&mut ws, &push).await;
        frame_where(&mut ws, "PushAck", |f| matches!(f, Frame::PushAck { .. })).await;
    }
    let took = started.elapsed();
    // 2 at once, then 4 a second: 8 more take 2 s.
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(10),
        "10 pushes took {took:?}"
    );
}

/// `/status` was open to anyone.
#[test]
fn status_and_metrics_need_the_admin_token() {
    let hub = Hub::start("admin", "", &[]);
    for path in ["/status", "/metrics"] {
        let (code, body) = hub.proc.get_anonymous(path);
        assert_eq!(code, 401, "{path}: {body}");
        assert!(!body.contains("outpost_") && !body.contains("databases"));
        let (code, _) =
            outpost_testkit::hub::http_get_as(hub.proc.addr(), path, Some("not-the-token"));
        assert_eq!(code, 401, "{path}");
        let (code, body) =
            outpost_testkit::hub::http_get_as(hub.proc.addr(), path, Some(ADMIN_TOKEN));
        assert_eq!(code, 200, "{path}: {body}");
    }
    let (code, body) = hub.proc.get_anonymous("/healthz");
    assert_eq!(code, 200, "{body}");
}

/// Receives everything the hub has for `laptop` as an honest edge does
/// (acknowledging each batch) until `Live`; returns the documents received.
async fn honest_sync(ws: &mut Ws) -> usize {
    let mut received = 0;
    loop {
        match next_frame(ws).await.expect("the session stays open") {
            Frame::Changes { upto, docs } => {
                received += docs.len();
                send(ws, &Frame::ChangesAck { upto }).await;
            }
            Frame::Live { .. } => return received,
            _ => {}
        }
    }
}

/// An edge that never acknowledges (and never reads) holds at most the
/// window of 4 batches of the hub's memory, and an honest edge syncs
/// meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edges_that_never_acknowledge_hold_bounded_memory_while_an_honest_edge_syncs() {
    const DOCS: usize = 2_000;
    let filler = "x".repeat(8 << 10);
    let jsonl: String = (0..DOCS)
        .map(|i| format!("{{\"id\":\"notes/{i:05}\",\"text\":\"{filler}\"}}\n"))
        .collect();
    let hub = Hub::start_with("slow", "max_sessions_per_identity = 16", &[], Some(&jsonl));
    let port = hub.port();

    // An honest edge first (the hub's caches are warm when measured).
    let mut first = ws_from([127, 0, 0, 1], port).await.unwrap();
    assert!(matches!(
        authenticate(&mut first).await,
        Frame::Welcome { .. }
    ));
    assert_eq!(honest_sync(&mut first).await, DOCS);
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = hub.proc.rss_kib().unwrap();

    // Eight sessions that take Welcome and then neither read nor ack: the
    // 16 MiB of documents each would hold if the hub did not stop at its
    // window (128 MiB in all).
    let mut silent = Vec::new();
    for _ in 0..8 {
        let mut ws = ws_from([127, 0, 0, 1], port).await.unwrap();
        assert!(matches!(authenticate(&mut ws).await, Frame::Welcome { .. }));
        silent.push(ws);
    }
    // Meanwhile an honest edge syncs everything.
    let mut honest = ws_from([127, 0, 0, 1], port).await.unwrap();
    assert!(matches!(
        authenticate(&mut honest).await,
        Frame::Welcome { .. }
    ));
    assert_eq!(honest_sync(&mut honest).await, DOCS);
    // At most 4 batches of 512 KiB each, plus buffers: well under 4 MiB a
    // session. The hub's allocator (jemalloc) returns freed pages to the
    // system about a second after they are freed, so the resident size is
    // read until it is under the bound; the silent sessions stay connected
    // all along, so memory they held would keep it above.
    wait_until(
        &format!("the hub's VmRSS within 32 MiB of its {baseline} KiB"),
        || async { hub.proc.rss_kib().unwrap().saturating_sub(baseline) < 32 << 10 },
    )
    .await;
    let after = hub.proc.rss_kib().unwrap();
    eprintln!("hub VmRSS: {baseline} KiB, then {after} KiB with 8 edges that never acknowledge");
    drop(silent);
}

/// `outpost-hub admin-token` sets the token (printing a generated one once)
/// and a running hub takes it; `status` sends it.
#[test]
fn admin_token_command_sets_the_token_a_running_hub_takes() {
    let dir = TempDir::new(
        std::env::temp_dir(),
        &format!("outpost-limits-admincmd-{}", std::process::id()),
    );
    let run = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .current_dir(dir.path())
            .args(["--config", "outpost-hub.toml"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    run(&["init"]);
    assert_eq!(run(&["admin-token", "--token", "first-admin"]), "");
    let hub = HubProcess::start(BIN, dir.path(), &["--listen", "127.0.0.1:0"]);
    let get = |path: &str, token: &str| {
        outpost_testkit::hub::http_get_as(hub.addr(), path, Some(token)).0
    };
    assert_eq!(get("/status", "first-admin"), 200);
    // A generated token, printed once, replaces it live.
    let token = run(&["admin-token"]);
    assert_eq!(token.len(), 64, "{token:?}");
    let t = Instant::now();
    while get("/metrics", &token) != 200 {
        assert!(
            t.elapsed() < WAIT,
            "the hub did not take the new admin token"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get("/status", "first-admin"), 401);
    let url = hub.url().to_string();
    let out = std::process::Command::new(BIN)
        .current_dir(dir.path())
        .args(["--config", "outpost-hub.toml", "status", "--url", &url])
        .env("OUTPOST_HUB_ADMIN_TOKEN", &token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(BIN)
        .current_dir(dir.path())
        .args(["--config", "outpost-hub.toml", "status", "--url", &url])
        .env_remove("OUTPOST_HUB_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `laptop`'s `/sync` URL on `hub`.
fn sync_url(hub: &Hub) -> String {
    format!("ws://127.0.0.1:{}/sync", hub.port())
}

/// A `Push` batch of `n` new `notes/` documents from device `h`, ids under
/// `prefix`; `etag` is the device's last etag (advanced).
fn notes_batch(h: &Hostile, prefix: &str, n: usize, etag: &mut u64) -> Vec<outpost::sync::WireDoc> {
    (0..n)
        .map(|i| {
            *etag += 1;
            let body = format!("{{\"i\":{i},\"pad\":\"{}\"}}", "p".repeat(64));
            doc(
                &format!("notes/{prefix}/{etag}"),
                "",
                live(&[(h.db_id, *etag)], body.as_bytes()),
            )
        })
        .collect()
}

/// Three sessions of one identity pushing 50-document batches as fast as
/// the hub answers get, together, the identity's document budget: at most
/// the burst plus the rate times the window (before, each session had its
/// own bucket counting frames, and they got thousands of documents a
/// second).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_identity_gets_its_document_budget_however_many_sessions_it_opens() {
    const RATE: u64 = 200;
    const BURST: u64 = 200;
    const SESSIONS: usize = 3;
    const BATCH: usize = 50;
    let window = Duration::from_secs(3);
    let hub = Hub::start(
        "docs-budget",
        &format!(
            "push_docs_per_second = {RATE}\npush_docs_burst = {BURST}\npushes_per_second = 0\npush_bytes_per_second = 0\nmax_sessions_per_identity = 8"
        ),
        &[],
    );
    let url = sync_url(&hub);
    let mut sessions = Vec::new();
    for _ in 0..SESSIONS {
        let h = Hostile::connect_hello(&url, "laptop", TOKEN, new_db_id(), WAIT)
            .await
            .expect("laptop authenticates");
        sessions.push(h);
    }
    let start = tokio::time::Instant::now();
    let end = start + window;
    let mut tasks = Vec::new();
    for (s, mut h) in sessions.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            h.timeout = WAIT;
            let (mut etag, mut in_window, mut errors) = (0u64, 0u64, Vec::new());
            while tokio::time::Instant::now() < end {
                let docs = notes_batch(&h, &format!("s{s}"), BATCH, &mut etag);
                match h.push(docs).await {
                    Answer::PushAck { applied, .. } => {
                        if tokio::time::Instant::now() <= end {
                            in_window += u64::from(applied);
                        }
                    }
                    other => {
                        errors.push(format!("{other:?}"));
                        break;
                    }
                }
            }
            (in_window, errors)
        }));
    }
    let mut total = 0;
    for t in tasks {
        let (n, errors) = t.await.unwrap();
        assert!(
            errors.is_empty(),
            "an over-budget push was refused: {errors:?}"
        );
        total += n;
    }
    let bound = BURST + RATE * window.as_secs();
    eprintln!(
        "{SESSIONS} sessions of one identity: {total} documents acknowledged in {window:?} (budget {bound})"
    );
    // The bound is exact (the hub charges a push before applying it); one
    // batch of margin for clocks.
    assert!(
        total <= bound + BATCH as u64,
        "{total} documents in {window:?}: over the identity's budget of {bound}"
    );
    // And the identity is paced, not stopped.
    assert!(total >= bound / 2, "only {total} documents in {window:?}");
}

/// An honest edge reconnecting with a backlog several times the burst
/// pushes it all: paced (it takes at least what the rate says), never
/// refused, and another device then receives every document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_with_a_backlog_bigger_than_the_burst_is_paced_and_syncs_everything() {
    const RATE: u64 = 500;
    const BURST: u64 = 300;
    const DOCS: usize = 2_000;
    let hub = Hub::start(
        "backlog",
        &format!("push_docs_per_second = {RATE}\npush_docs_burst = {BURST}"),
        &[],
    );
    let url = sync_url(&hub);
    let mut h = Hostile::connect_hello(&url, "laptop", TOKEN, new_db_id(), WAIT)
        .await
        .expect("laptop authenticates");
    h.timeout = WAIT;
    let started = Instant::now();
    let (mut etag, mut applied) = (0u64, 0usize);
    while (etag as usize) < DOCS {
        let docs = notes_batch(&h, "backlog", 500, &mut etag);
        match h.push(docs).await {
            Answer::PushAck { applied: n, .. } => applied += n as usize,
            other => panic!("the honest edge's push was answered {other:?}"),
        }
    }
    let took = started.elapsed();
    assert_eq!(applied, DOCS);
    // (2,000 − 300) / 500 per second: at least 3.4 s, whatever the machine.
    let least = Duration::from_secs_f64((DOCS as u64 - BURST) as f64 / RATE as f64);
    assert!(
        took >= least.mul_f64(0.95),
        "{DOCS} documents in {took:?}: not paced"
    );
    assert!(took < WAIT, "{DOCS} documents took {took:?}");
    h.close().await;

    // Another device of the identity receives every one.
    let mut other = Hostile::connect_hello(&url, "laptop", TOKEN, new_db_id(), WAIT)
        .await
        .expect("the second device authenticates");
    other.timeout = WAIT;
    other.pull(true).await.expect("the second device syncs");
    let got = other
        .received
        .keys()
        .filter(|id| id.starts_with("notes/backlog/"))
        .count();
    assert_eq!(got, DOCS);
}

/// While its push waits for the budget, the session is alive: the hub goes
/// on reading it (a `Ping` is answered at once), and the push is applied
/// when the budget allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_push_does_not_stop_the_session() {
    let hub = Hub::start(
        "held",
        "push_docs_per_second = 2
push_docs_burst = 2",
        &[],
    );
    let mut h = Hostile::connect_hello(&sync_url(&hub), "laptop", TOKEN, new_db_id(), WAIT)
        .await
        .expect("laptop authenticates");
    h.timeout = WAIT;
    let mut etag = 0;
    // 8 documents against a burst of 2 at 2 a second: held ~3 s.
    let docs = notes_batch(&h, "held", 8, &mut etag);
    let started = Instant::now();
    h.send(&Frame::Push {
        upto: 1,
        seq: 0,
        prev: [0; 32],
        signature: Vec::new(),
        docs,
    })
    .await
    .unwrap();
    h.send(&Frame::Ping { nonce: 77 }).await.unwrap();
    let (mut pong, mut ack) = (None, None);
    while ack.is_none() {
        match h.recv().await {
            Incoming::Frame(Frame::Pong { nonce: 77 }) => pong = Some(started.elapsed()),
            Incoming::Frame(Frame::PushAck { applied, .. }) => {
                assert_eq!(applied, 8);
                ack = Some(started.elapsed());
            }
            Incoming::Frame(_) => {}
            other => panic!("the session ended: {other:?}"),
        }
    }
    let (pong, ack) = (pong.expect("the Ping answered"), ack.unwrap());
    eprintln!("Pong after {pong:?}, PushAck after {ack:?}");
    assert!(
        pong < ack,
        "the Ping waited for the push: {pong:?} / {ack:?}"
    );
    assert!(ack >= Duration::from_millis(2500), "not held: {ack:?}");
}

/// New sessions of one identity beyond `sessions_per_second` wait for
/// `Welcome`; only those that would wait more than 5 s are refused
/// (`too_many_connections`, retryable, counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_sessions_over_the_rate_wait_and_only_far_over_it_are_refused() {
    let hub = Hub::start(
        "session-rate",
        "sessions_per_second = 2\nsession_burst = 2\nmax_sessions_per_identity = 64",
        &[],
    );
    let url = sync_url(&hub);
    // Four in a row: two at once, then one every 0.5 s.
    let started = Instant::now();
    for _ in 0..4 {
        let mut h = Hostile::connect(&url).await.unwrap();
        h.timeout = WAIT;
        h.hello("laptop", TOKEN, new_db_id(), 0)
            .await
            .expect("paced, not refused");
        h.close().await;
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "4 sessions at 2/s (burst 2) took {took:?}"
    );
    // Twenty at once: the budget is ~0 now, so those that would wait more
    // than 5 s (beyond ~10) are refused.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = Hostile::connect(&url).await.unwrap();
            h.timeout = WAIT;
            let r = h.hello("laptop", TOKEN, new_db_id(), 0).await;
            (r.map(|_| ()), h)
        }));
    }
    let (mut welcomed, mut refused, mut open) = (0, 0, Vec::new());
    for t in tasks {
        match t.await.unwrap() {
            (Ok(()), h) => {
                welcomed += 1;
                open.push(h);
            }
            (Err(a), _) if a.is_error("too_many_connections") => refused += 1,
            (Err(a), _) => panic!("unexpected answer {a:?}"),
        }
    }
    eprintln!("20 sessions at once: {welcomed} welcomed (paced), {refused} refused");
    assert!((8..=14).contains(&welcomed), "{welcomed} welcomed");
    assert_eq!(welcomed + refused, 20);
    assert!(hub.refused("sessions_per_second") >= 1);
    drop(open);
}

/// The new `[limits]` keys: a zero burst, a negative or mistyped value are
/// refused with a configuration error naming the key; 0 per second is "no
/// limit".
#[test]
fn the_rate_limit_keys_are_validated() {
    let parse = |limits: &str| {
        Config::parse(
            &format!("[limits]\n{limits}\n"),
            std::path::Path::new("/etc/outpost/outpost-hub.toml"),
        )
    };
    let c = parse("push_docs_per_second = 0\nsessions_per_second = 0\npush_bytes_per_second = 0\nnew_connections_per_address_per_second = 0")
        .unwrap();
    assert_eq!(c.limits.new_connections_per_address_per_second, 0);
    assert_eq!(c.limits.push_docs_per_second, 0);
    assert_eq!(c.limits.sessions_per_second, 0);
    let c = parse("push_docs_per_second = 50\npush_docs_burst = 500\nsession_burst = 3\npush_bytes_burst = 1048576").unwrap();
    assert_eq!(
        (
            c.limits.push_docs_per_second,
            c.limits.push_docs_burst,
            c.limits.session_burst,
            c.limits.push_bytes_burst
        ),
        (50, 500, 3, 1 << 20)
    );
    for (text, key) in [
        ("push_docs_burst = 0", "limits.push_docs_burst"),
        ("push_bytes_burst = 0", "limits.push_bytes_burst"),
        ("session_burst = 0", "limits.session_burst"),
        (
            "new_connections_per_address_burst = 0",
            "limits.new_connections_per_address_burst",
        ),
        (
            "new_connections_per_address_per_second = -1",
            "new_connections_per_address_per_second",
        ),
        ("push_docs_per_second = -1", "push_docs_per_second"),
        ("sessions_per_second = \"ten\"", "sessions_per_second"),
        ("push_docs_per_sec = 5", "push_docs_per_sec"),
    ] {
        match parse(text) {
            Err(HubError::Config { message, .. }) => {
                assert!(message.contains(key), "{text}: {message}")
            }
            other => panic!("{text}: expected a configuration error, got {other:?}"),
        }
    }
}
