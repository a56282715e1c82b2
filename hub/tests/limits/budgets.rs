//! Per-identity budgets: documents, a paced backlog, held pushes, the session
//! rate, the `[limits]` keys.

use super::*;

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
