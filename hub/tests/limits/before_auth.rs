//! Before authentication: a big first message, the hello deadline, a half-sent
//! request head, a stalled TLS handshake.

use super::*;

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
