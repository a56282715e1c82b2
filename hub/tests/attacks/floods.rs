//! Floods: of conflicts, of pushes, of connections and sessions, of pings;
//! slow readers that never acknowledge or never read their socket. The hub
//! stays up, bounds what it holds per edge, and honest edges keep syncing
//! while the flood goes on.

use std::time::Duration;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_flood_from_40_devices_under_latest_settles_every_time() {
    let id = "shared/notes/hot";
    let hub = Hub::seeded(&[seed(id, "Notes", json!({"v": "original"}))]);
    for k in 0..40 {
        let mut m = hub.hello_only("mallory").await;
        let v = live(&[(m.db_id, 1)], &js(json!({"k": k})));
        assert_acked(&m.push(vec![doc(id, "Notes", v)]).await);
        m.close().await;
    }
    let d = hub.doc(id).await;
    assert_eq!(d.versions.len(), 1, "latest settles each conflict");
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_flood_from_40_devices_under_manual_while_honest_edges_sync() {
    let id = "shared/cards/hot";
    let hub = Hub::seeded(&[seed(id, "Cards", json!({"v": "original"}))]);
    let url = hub.url();
    let flood = tokio::spawn(async move {
        let mut refused = 0;
        for k in 0..40 {
            let mut m = Hostile::connect_hello(&url, "mallory", "mallory-token", new_db_id(), WAIT)
                .await
                .unwrap();
            let v = live(&[(m.db_id, 1)], &js(json!({"k": k})));
            let r = m.push(vec![doc(id, "Cards", v)]).await;
            if r.is_rejected("too_many_versions") {
                refused += 1;
            } else {
                assert_acked(&r);
            }
            m.close().await;
        }
        refused
    });
    hub.assert_honest_edges_unaffected().await;
    let refused = flood.await.unwrap();
    assert_eq!(refused, 9, "33rd to 40th versions refused");
    assert_eq!(hub.doc(id).await.versions.len(), 32);
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_flood_of_300_batches_while_honest_edges_sync() {
    let hub = Hub::start();
    let url = hub.url();
    let flood = tokio::spawn(async move {
        let mut m = Hostile::connect(&url).await.unwrap();
        m.hello("mallory", "mallory-token", new_db_id(), 0)
            .await
            .unwrap();
        m.timeout = Duration::from_secs(15);
        let mut acked = 0u64;
        for k in 0..300u64 {
            let v = live(&[(m.db_id, k + 1)], b"{\"flood\":true}");
            match m
                .push(vec![doc(&format!("shared/notes/f{k}"), "Notes", v)])
                .await
            {
                Answer::PushAck { .. } => acked += 1,
                // A rate limit may end the session; nothing else may.
                a if a.is_error("rate_limited") => break,
                a => panic!("push {k}: {a:?}"),
            }
        }
        acked
    });
    hub.assert_honest_edges_unaffected().await;
    let acked = flood.await.unwrap();
    let v = hub.view().await;
    let stored = v.keys().filter(|k| k.starts_with("shared/notes/f")).count() as u64;
    assert_eq!(
        stored, acked,
        "every acknowledged batch is stored, no other"
    );
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_flood_of_one_identity_from_many_addresses() {
    // 200 authenticated sessions of mallory, each from its own loopback
    // address: a per-identity cap refuses some; alice and bob still sync.
    let hub = Hub::start();
    let mut held = Vec::new();
    let mut refused = 0;
    for k in 0..200u32 {
        let from =
            std::net::SocketAddr::from(([127, 0, 1 + (k / 250) as u8, 1 + (k % 250) as u8], 0));
        match Hostile::connect_from(&hub.url(), Some(from)).await {
            Err(_) => refused += 1,
            Ok(mut c) => match c.hello("mallory", "mallory-token", new_db_id(), 0).await {
                Ok(_) => held.push(c),
                Err(a) => {
                    assert!(
                        a.is_error("too_many_connections") || matches!(a, Answer::Closed(_)),
                        "{a:?}"
                    );
                    refused += 1;
                }
            },
        }
    }
    hub.assert_honest_edges_unaffected().await;
    assert!(
        refused > 0,
        "200 sessions of one identity were all accepted"
    );
    drop(held);
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_flood_of_200_sessions_one_after_another() {
    let hub = Hub::start();
    let db = new_db_id();
    for _ in 0..200 {
        let mut c = hub.connect().await;
        match c.hello("mallory", "mallory-token", db, 0).await {
            Ok(_) => {}
            Err(a) => assert!(
                a.is_error("too_many_connections") || a.is_error("rate_limited"),
                "{a:?}"
            ),
        }
        drop(c);
    }
    hub.assert_honest_edges_unaffected().await;
    hub.finish().await;
}

/// `n` seeded documents in `shared/` of about `bytes` each.
fn many_docs(n: usize, bytes: usize) -> Vec<Seed<'static>> {
    let pad = "x".repeat(bytes);
    (0..n)
        .map(|k| {
            let id: &'static str = Box::leak(format!("shared/notes/s{k:05}").into_boxed_str());
            seed(id, "Notes", json!({"k": k, "pad": pad}))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_that_never_acknowledges_gets_at_most_4_batches() {
    let hub = Hub::seeded(&many_docs(3_000, 10));
    let mut m = hub.hello_only("mallory").await;
    m.timeout = Duration::from_secs(2);
    let r = m.pull(false).await;
    assert!(matches!(r, Err(Answer::Timeout)), "{r:?}");
    assert!(
        (1..=4).contains(&m.changes_frames),
        "{} unacknowledged Changes frames",
        m.changes_frames
    );
    hub.assert_honest_edges_unaffected().await;
    drop(m);
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_slow_readers_that_never_read_their_sockets() {
    // 2,000 documents of 4 KiB; 20 sessions say Hello and never read a
    // byte: the hub holds a bounded window for each, honest edges sync.
    let hub = Hub::seeded(&many_docs(2_000, 4_096));
    let before = hub.peak_rss_kib();
    // Over the per-identity session cap, a Hello may be refused: the
    // sessions that were let in are the slow readers.
    let mut idle = Vec::new();
    for _ in 0..20 {
        let mut c = hub.connect().await;
        match c.hello("mallory", "mallory-token", new_db_id(), 0).await {
            Ok(_) => idle.push(c),
            Err(a) => assert!(a.is_error("too_many_connections"), "{a:?}"),
        }
    }
    assert!(!idle.is_empty());
    tokio::time::sleep(Duration::from_secs(1)).await;
    hub.assert_honest_edges_unaffected().await;
    let grown = hub.peak_rss_kib().saturating_sub(before);
    assert!(
        grown < 160 * 1024,
        "peak memory grew {} MiB for 20 idle readers",
        grown / 1024
    );
    drop(idle);
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_flood_of_10000_frames_never_read_back() {
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let url = hub.url();
    let flood = tokio::spawn(async move {
        for k in 0..10_000u64 {
            if m.send(&Frame::Ping { nonce: k }).await.is_err() {
                break;
            }
        }
        drop(url);
        m
    });
    hub.assert_honest_edges_unaffected().await;
    drop(flood.await.unwrap());
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_flood_of_100_connections() {
    let hub = Hub::start();
    for k in 0..100u8 {
        let mut c = hub.connect().await;
        let _ = c.send_bytes(vec![k; 64]).await;
        let a = c.until_end().await;
        assert!(a.is_end(), "{a:?}");
    }
    hub.assert_honest_edges_unaffected().await;
    hub.finish().await;
}
