//! Connection caps and the per-address rate of new connections, while an honest edge syncs.

use super::*;

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
