//! Certificate replacement on the wire (protocol 8: `Replace`, answered by
//! `ReplaceResult`): a `Replace` is taken only in an open version-8 session
//! of a certificate identity; before authentication or in a version-7
//! session it is a protocol error, from a key identity it is refused
//! (`replace_not_certificate`) and changes nothing, and an oversized one
//! does not decode. The attacks that need a client certificate (a stolen
//! key with a self-made certificate or another CA's, an expired one, a
//! retired one, a key without its certificate, replacements by an admin, a
//! dropped or an expired certificate) run against real hubs over mutual TLS
//! in `hub/tests/certificates.rs`.

use crate::common::*;

fn replace_result(a: &Answer) -> (u64, String) {
    match a {
        Answer::Unexpected(f) => match f.as_ref() {
            Frame::ReplaceResult { request, code, .. } => (*request, code.clone()),
            other => panic!("expected ReplaceResult, got {other:?}"),
        },
        other => panic!("expected ReplaceResult, got {other:?}"),
    }
}

fn config_of(hub: &Hub) -> String {
    std::fs::read_to_string(hub.dir().join("outpost-hub.toml")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_before_authentication_is_a_protocol_error() {
    let hub = Hub::start();
    let mut m = hub.connect().await;
    let f = Frame::Replace {
        request: 1,
        chain: vec![vec![0x30, 0]],
    };
    m.send(&f).await.unwrap();
    assert_error(&m.answer().await, "protocol");
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_in_a_protocol_7_session_is_a_protocol_error() {
    let hub = Hub::start();
    let mut m = hub.connect().await;
    let key = outpost_testkit::keys::registered("mallory").unwrap();
    let mut hello = Hostile::hello_key_frame("mallory", &key, new_db_id(), 0);
    if let Frame::Hello { max_version, .. } = &mut hello {
        *max_version = 7;
    }
    let w = m
        .hello_with(hello)
        .await
        .expect("a version 7 edge is served");
    assert_eq!(w.version, 7);
    m.pull(true).await.unwrap();
    let f = Frame::Replace {
        request: 1,
        chain: vec![vec![0x30, 0]],
    };
    m.send(&f).await.unwrap();
    assert_error(&m.answer().await, "protocol");
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_from_a_key_identity_is_refused_and_changes_nothing() {
    let hub = Hub::start();
    let before = config_of(&hub);
    let mut m = hub.connect().await;
    let key = outpost_testkit::keys::registered("mallory").unwrap();
    let mut hello = Hostile::hello_key_frame("mallory", &key, new_db_id(), 0);
    if let Frame::Hello { max_version, .. } = &mut hello {
        *max_version = outpost::sync::frame::REPLACE_VERSION;
    }
    let w = m.hello_with(hello).await.expect("welcome");
    assert_eq!(w.version, outpost::sync::frame::REPLACE_VERSION);
    m.pull(true).await.unwrap();
    // Garbage, then a well-formed self-signed chain: neither is looked at.
    for (request, chain) in [(1, vec![vec![0xff; 40]]), (2, vec![vec![0x30, 3, 1, 2, 3]])] {
        m.send(&Frame::Replace { request, chain }).await.unwrap();
        let (r, code) = replace_result(&m.answer().await);
        assert_eq!((r, code.as_str()), (request, "replace_not_certificate"));
    }
    assert_eq!(config_of(&hub), before, "the configuration is unchanged");
    // The session goes on: a push after it is acknowledged.
    assert_acked(&Hub::honest_put(&mut m, "shared/after-replace", "Notes", json!({"v": 1})).await);
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_keeps_sending_replace_is_ended() {
    let hub = Hub::start();
    let mut m = hub.connect().await;
    let key = outpost_testkit::keys::registered("mallory").unwrap();
    let mut hello = Hostile::hello_key_frame("mallory", &key, new_db_id(), 0);
    if let Frame::Hello { max_version, .. } = &mut hello {
        *max_version = outpost::sync::frame::REPLACE_VERSION;
    }
    m.hello_with(hello).await.expect("welcome");
    m.pull(true).await.unwrap();
    let max = u64::from(outpost::sync::hub::MAX_REPLACES_PER_SESSION);
    for request in 1..=max {
        m.send(&Frame::Replace {
            request,
            chain: vec![vec![0x30, 0]],
        })
        .await
        .unwrap();
        replace_result(&m.answer().await);
    }
    m.send(&Frame::Replace {
        request: max + 1,
        chain: vec![vec![0x30, 0]],
    })
    .await
    .unwrap();
    assert_error(&m.answer().await, "protocol");
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_of_nine_certificates_does_not_decode() {
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let mut raw = vec![20u8];
    raw.extend_from_slice(&1u64.to_le_bytes());
    raw.push(9);
    for _ in 0..9 {
        raw.extend_from_slice(&[1, 0, 0x30]);
    }
    m.send_bytes(raw).await.unwrap();
    let a = m.answer().await;
    assert!(a.is_end(), "the session ends: {a:?}");
    assert!(
        a.code().is_some_and(|c| !c.is_empty()),
        "a typed error: {a:?}"
    );
    hub.finish().await;
}
