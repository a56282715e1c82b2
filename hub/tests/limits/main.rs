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

mod before_auth;
mod budgets;
mod connections;
mod memory_and_admin;

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
