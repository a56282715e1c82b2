//! Push pacing, memory held by edges that never acknowledge, the admin token.

use super::*;

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
