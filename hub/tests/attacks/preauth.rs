//! Class 7: unauthenticated connections hold resources. A `Hello`
//! deadline that nothing but `Hello` meets, a header-read timeout, a 64 KiB
//! frame limit before authentication, connection caps, and `/status` and
//! `/metrics` behind an admin token.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

/// The default Hello deadline (10 s) plus a margin.
const DEADLINE: Duration = Duration::from_secs(14);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_before_hello_is_answered_instead_of_refused() {
    let hub = Hub::start();
    let mut c = hub.connect().await;
    c.send(&Frame::Ping { nonce: 7 }).await.unwrap();
    match c.recv().await {
        Incoming::Frame(Frame::Error { code, .. }) => assert_eq!(code, "protocol"),
        other => panic!("a Ping before Hello must be refused with Error(protocol): {other:?}"),
    }
    assert!(c.closes().await);
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_without_hello_outlives_the_hello_deadline() {
    let hub = Hub::start();
    let mut c = hub.connect().await;
    c.timeout = DEADLINE;
    let t = Instant::now();
    let a = c.answer().await;
    assert_error(&a, "timeout");
    assert!(t.elapsed() < DEADLINE);
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_pings_before_hello_keep_a_connection_open() {
    let hub = Hub::start();
    let mut c = hub.connect().await;
    c.timeout = Duration::from_millis(500);
    let t = Instant::now();
    let mut ended = None;
    while t.elapsed() < DEADLINE {
        if c.send(&Frame::Ping { nonce: 1 }).await.is_err() {
            ended = Some(Answer::Closed("send failed".into()));
            break;
        }
        match c.answer().await {
            Answer::Timeout => {}
            a if a.is_end() => {
                ended = Some(a);
                break;
            }
            Answer::Unexpected(f) if matches!(*f, Frame::Pong { .. }) => {}
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let a = ended.expect("the session must end before the deadline");
    assert!(
        a.is_error("protocol") || a.is_error("timeout") || matches!(a, Answer::Closed(_)),
        "{a:?}"
    );
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_pings_before_hello_keep_a_connection_open() {
    let hub = Hub::start();
    let mut c = hub.connect().await;
    c.timeout = Duration::from_secs(1);
    let t = Instant::now();
    let ended = loop {
        assert!(t.elapsed() < DEADLINE, "still open after {DEADLINE:?}");
        if c.send_msg(Message::Ping(vec![1].into())).await.is_err() {
            break Answer::Closed("send failed".into());
        }
        match c.answer().await {
            Answer::Timeout => {}
            a => break a,
        }
    };
    assert!(
        ended.is_error("timeout") || matches!(ended, Answer::Closed(_)),
        "{ended:?}"
    );
    hub.finish().await;
}

/// Whether the hub closes `s` within [`DEADLINE`] (reads until EOF/error).
fn closed_within_deadline(mut s: TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 4096];
    while t.elapsed() < DEADLINE {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_http_header_is_never_timed_out() {
    let hub = Hub::start();
    let mut s = TcpStream::connect(hub.proc().addr()).unwrap();
    s.write_all(b"GET /sync HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: web")
        .unwrap();
    let closed = tokio::task::spawn_blocking(move || closed_within_deadline(s))
        .await
        .unwrap();
    assert!(closed, "a half-sent header held the connection open");
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_websocket_frame_before_hello_is_never_timed_out() {
    let hub = Hub::start();
    let mut s = TcpStream::connect(hub.proc().addr()).unwrap();
    write!(
        s,
        "GET /sync HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        hub.proc().addr()
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).unwrap(), 1, "upgrade answer");
        head.push(b[0]);
    }
    assert!(String::from_utf8_lossy(&head).contains(" 101 "));
    // A binary frame, masked, 16-bit length: its header never completes.
    s.write_all(&[0x82, 0xFE]).unwrap();
    let closed = tokio::task::spawn_blocking(move || closed_within_deadline(s))
        .await
        .unwrap();
    assert!(closed, "a half-sent frame held the connection open");
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_over_64_kib_is_read_and_processed_before_authentication() {
    let hub = Hub::start();
    let mut c = hub.connect().await;
    let mut hello = Hostile::token_hello_frame("mallory", &"x".repeat(65_000), new_db_id(), 0);
    if let Frame::Hello { database, .. } = &mut hello {
        *database = "d".repeat(10_000);
    }
    let r = c.hello_with(hello).await;
    let a = r.expect_err("no Welcome");
    assert!(
        a.is_end() && !a.is_error("unauthorized"),
        "a first message over 64 KiB closes the connection unprocessed: {a:?}"
    );
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_sockets_of_30_mib_before_hello_are_buffered_by_the_hub() {
    let hub = Hub::start();
    let before = hub.peak_rss_kib();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let url = hub.url();
        tasks.push(tokio::spawn(async move {
            let mut c = Hostile::connect(&url).await.unwrap();
            let _ = c.send_bytes(vec![0x01; 30 << 20]).await;
            c.answer().await
        }));
    }
    for t in tasks {
        let a = t.await.unwrap();
        assert!(a.is_end(), "{a:?}");
    }
    let grown = hub.peak_rss_kib().saturating_sub(before);
    assert!(
        grown < 96 * 1024,
        "the hub's peak memory grew by {} MiB for 8 unauthenticated sockets",
        grown / 1024
    );
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_open_to_anyone() {
    let hub = Hub::start();
    let (code, body) = hub.get_with("/status", None);
    assert_eq!(code, 401, "{body}");
    assert!(!body.contains("mallory"));
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_open_to_anyone() {
    let hub = Hub::start();
    let (code, body) = hub.get_with("/metrics", None);
    assert_eq!(code, 401, "{body}");
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_with_an_edge_token_or_a_wrong_admin_token_is_refused() {
    let admin = format!(
        "[admin]\ntoken_sha256 = {:?}\n",
        outpost_hub::config::token_sha256_hex("admin-secret")
    );
    let hub = Hub::start_with(&[], &admin);
    for bad in [Some("mallory-token"), Some("admin-secre"), Some(""), None] {
        for path in ["/status", "/metrics"] {
            let (code, _) = hub.get_with(path, bad);
            assert_eq!(code, 401, "{path} with {bad:?}");
        }
    }
    assert_eq!(hub.get_with("/status", Some("admin-secret")).0, 200);
    assert_eq!(hub.get_with("/metrics", Some("admin-secret")).0, 200);
    hub.finish().await;
}

/// Anyone who reaches the hub's port (an edge, or a laptop's malware) asks
/// the operator's routes for the whole database (`/admin/export`), its
/// audit trail (`/admin/audit`), a purge or a compaction, with no token, an edge's, near misses of the admin
/// token, another scheme, or the demo's public token on a hub that has a
/// secret one: each is refused (401) before its body is read, says nothing
/// of the documents, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_export_purge_and_compact_without_the_admin_token() {
    let admin = format!(
        "[admin]\ntoken_sha256 = {:?}\n",
        outpost_hub::config::token_sha256_hex("admin-secret")
    );
    let secret = json!({"v": "crown-jewels"});
    let hub = Hub::start_with(&[seed("vault/notes/x", "Notes", secret.clone())], &admin);
    let routes = [
        ("/admin/export", r#"{"database":"main","end_line":true}"#),
        (
            "/admin/purge",
            r#"{"database":"main","prefixes":["vault/"],"by":"mallory"}"#,
        ),
        ("/admin/compact", r#"{"database":"main"}"#),
        (
            "/admin/audit",
            r#"{"database":"main","query":{"export":{}}}"#,
        ),
        (
            "/admin/audit",
            r#"{"database":"main","query":{"who":{"id":"vault/notes/x"}}}"#,
        ),
        // A body that does not parse: still 401, not a 400 that would tell
        // the route exists and how its request is shaped.
        ("/admin/export", "{"),
        // An import that would overwrite the document; and one whose query
        // is bad (still 401, not 400).
        (
            "/admin/import?database=main",
            r#"{"id":"vault/notes/x","v":"mallory was here"}"#,
        ),
        ("/admin/import?bogus=1", "{}"),
    ];
    let attempts = [
        None,
        Some("Bearer mallory-token"),
        Some("Bearer alice-token"),
        Some("Bearer admin-secre"),
        Some("Bearer admin-secretx"),
        Some("Bearer  admin-secret x"),
        Some("Bearer "),
        Some("Bearer"),
        Some("Basic YWRtaW46YWRtaW4tc2VjcmV0"),
        Some("admin-secret"),
        Some("Bearer admin-demo-token"),
    ];
    for (path, body) in routes {
        for auth in attempts {
            let (code, answer) = hub.raw_request("POST", path, auth, body);
            assert_eq!(code, 401, "{path} with {auth:?}: {answer}");
            assert!(
                !answer.contains("crown-jewels") && !answer.contains("vault"),
                "{path} with {auth:?} told: {answer}"
            );
        }
    }
    assert_unchanged(&hub, "vault/notes/x", "Notes", secret).await;
    // The check of the test itself: the operator's token gets the document.
    let (code, answer) = hub.raw_request(
        "POST",
        "/admin/export",
        Some("Bearer admin-secret"),
        r#"{"database":"main"}"#,
    );
    assert_eq!(code, 200, "{answer}");
    assert!(answer.contains("crown-jewels"), "{answer}");
    // And its audit trail, whole (the end line).
    let (code, answer) = hub.raw_request(
        "POST",
        "/admin/audit",
        Some("Bearer admin-secret"),
        r#"{"database":"main","query":{"export":{}}}"#,
    );
    assert_eq!(code, 200, "{answer}");
    assert!(answer.contains("\"@audit_export\""), "{answer}");
    hub.finish().await;
}

/// An operator's import names who ran it (`by`, a claim) and the file
/// (`source`); the hub records them next to what it saw itself (`via`: the
/// peer and the credential). A label with a line break (a forged second
/// line in `audit who`), one over 256 bytes, or a `via` of the client's own
/// are refused (400) before any line is imported; an accepted `by` is
/// recorded as given, beside the hub's `via`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_import_labels_are_checked_and_cannot_forge_the_hubs_view() {
    let admin = format!(
        "[admin]\ntoken_sha256 = {:?}\n",
        outpost_hub::config::token_sha256_hex("admin-secret")
    );
    let secret = json!({"v": "crown-jewels"});
    let hub = Hub::start_with(&[seed("vault/notes/x", "Notes", secret.clone())], &admin);
    let token = Some("Bearer admin-secret");
    let line = r#"{"id":"vault/notes/x","v":"overwritten"}"#;
    let long = "x".repeat(257);
    for query in [
        "by=ops%0A%20%20%20%20written%20by%20identity%20alice".to_string(),
        format!("source={long}"),
        "via=POST%20from%20the%20hub%20itself".to_string(),
        "by=a&by=b".to_string(),
    ] {
        let path = format!("/admin/import?database=main&{query}");
        let (code, answer) = hub.raw_request("POST", &path, token, line);
        assert_eq!(code, 400, "{query}: {answer}");
    }
    assert_unchanged(&hub, "vault/notes/x", "Notes", secret).await;
    // The check of the test itself: a plain claim is taken, and recorded
    // beside what the hub saw.
    let (code, answer) = hub.raw_request(
        "POST",
        "/admin/import?database=main&by=the%20hub%20itself&source=s.jsonl",
        token,
        line,
    );
    assert_eq!(code, 200, "{answer}");
    let (code, trail) = hub.raw_request(
        "POST",
        "/admin/audit",
        token,
        r#"{"database":"main","query":{"export":{}}}"#,
    );
    assert_eq!(code, 200, "{trail}");
    assert!(trail.contains(r#""by":"the hub itself""#), "{trail}");
    assert!(
        trail.contains("POST /admin/import from 127.0.0.1:")
            && trail.contains("with the admin token"),
        "{trail}"
    );
    hub.finish().await;
}

/// Sends `head` (a request's head and the start of its body), then, with
/// `hang_up`, closes the connection's sending side (a client gone
/// mid-body), and returns the status code of the answer that comes within
/// 5 s (0: none).
fn status_of_early_answer(hub: &Hub, head: &str, hang_up: bool) -> u16 {
    early_answer(hub, head, hang_up).0
}

/// [`status_of_early_answer`], with the answer's body (as far as its
/// `Content-Length` says, within the 5 s).
fn early_answer(hub: &Hub, head: &str, hang_up: bool) -> (u16, String) {
    let addr = hub.proc().addr();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    if hang_up {
        s.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let whole = |got: &[u8]| {
        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
            return false;
        };
        let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        got.len() >= end + 4 + length
    };
    while !whole(&got) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

/// The operator's `POST` routes.
const ADMIN_POST_ROUTES: [&str; 4] = [
    "/admin/export",
    "/admin/purge",
    "/admin/compact",
    "/admin/audit",
];

/// An anonymous client announces a 1 GB body to an admin route and sends
/// none of it (a hub that read bodies before checking the token would take
/// up to axum's 2 MB per request, or wait for them, or, for
/// `/admin/import`, import them): the 401 comes at once, from the headers. With the admin token: a body announced over 1 MiB is
/// refused (413) before it is read, one sent over 1 MiB (chunked, no length
/// announced) once it passes the limit, a body cut short by its client gets
/// 400, and the hub goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_announcing_a_huge_body_without_the_admin_token() {
    let hub = Hub::start();
    let head = |path: &str, auth: &str, length: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: hub\r\n{auth}Content-Type: application/json\r\n{length}\r\n{{\"database\":"
        )
    };
    let huge = "Content-Length: 1000000000\r\n";
    // `/admin/import` takes bodies of any length, from the operator only.
    for path in ADMIN_POST_ROUTES
        .iter()
        .chain(&["/admin/import?database=main"])
    {
        assert_eq!(
            status_of_early_answer(&hub, &head(path, "", huge), false),
            401,
            "{path}"
        );
    }
    let token = hub.proc().admin_token();
    let auth = format!("Authorization: Bearer {token}\r\n");
    for path in ADMIN_POST_ROUTES {
        assert_eq!(
            status_of_early_answer(&hub, &head(path, &auth, huge), false),
            413,
            "{path}"
        );
        assert_eq!(
            status_of_early_answer(&hub, &head(path, &auth, "Content-Length: 100\r\n"), true),
            400,
            "{path}: a body cut short"
        );
    }
    let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
    let chunked = format!(
        "POST /admin/purge HTTP/1.1\r\nHost: hub\r\n{auth}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{}",
        chunk.repeat(17)
    );
    assert_eq!(status_of_early_answer(&hub, &chunked, false), 413);
    // The refusal names the limit. (Sent without its body: the hub answers
    // from the announced length and closes, and a client still writing the
    // body then could see its connection reset before it read the answer.)
    let (code, body) = early_answer(
        &hub,
        &head("/admin/purge", &auth, "Content-Length: 2097200\r\n"),
        false,
    );
    assert_eq!(code, 413, "{body}");
    assert!(body.contains("over 1048576 bytes"), "{body}");
    hub.assert_alive();
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_stays_open_and_tells_nothing_about_edges() {
    let hub = Hub::start();
    let (code, body) = hub.get_with("/healthz", None);
    assert_eq!(code, 200);
    for secret in ["mallory", "alice", "edges", "documents", "prefix"] {
        assert!(!body.contains(secret), "{body}");
    }
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_identity_and_wrong_key_tell_which_is_wrong() {
    // Protocol 3: a key Hello, challenged and proven with a key that is not
    // the identity's (a stranger's, another identity's).
    let hub = Hub::start();
    let mut answers = Vec::new();
    for (who, key) in [
        ("nobody", outpost_testkit::keys::fresh_key()),
        ("alice", outpost_testkit::keys::fresh_key()),
        ("alice", outpost_testkit::keys::key_for("mallory")),
    ] {
        let mut c = hub.connect().await;
        c.key = Some(key);
        let a = c.hello(who, "", new_db_id(), 0).await.expect_err("refused");
        answers.push(a);
    }
    assert_error(&answers[0], "unauthorized");
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[1], answers[2]);
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_flood_from_one_address_is_not_capped() {
    // 300 WebSockets from 127.0.0.2 that never say Hello; meanwhile honest
    // edges (from 127.0.0.1) must sync.
    let hub = Hub::start();
    let from: std::net::SocketAddr = "127.0.0.2:0".parse().unwrap();
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..300 {
        match Hostile::connect_from(&hub.url(), Some(from)).await {
            Ok(c) => held.push(c),
            Err(_) => refused += 1,
        }
    }
    // Over a cap the hub may also accept the upgrade, then end the session.
    for c in held.iter_mut().rev().take(50) {
        c.timeout = Duration::from_millis(100);
        if c.answer().await.is_error("too_many_connections") {
            refused += 1;
        }
    }
    hub.assert_honest_edges_unaffected().await;
    assert!(
        refused > 0,
        "300 connections from one address were all accepted"
    );
    drop(held);
    hub.finish().await;
}
