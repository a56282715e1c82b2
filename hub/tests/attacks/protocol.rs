//! Protocol abuse: frames out of order or from the wrong side, unknown
//! types, truncated, oversized or lying about their counts, a second push
//! in flight, an ack of a batch never sent. Each ends only that session
//! (`Error(protocol)`, or a typed refusal where the checks see it first);
//! nothing of it is stored and the hub keeps serving everyone else.

use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

/// Sends `bytes` (after a caught-up mallory session if `after_hello`) and
/// asserts the hub ends the session with `Error(protocol)` and closes.
async fn ends_with_protocol(bytes: Vec<u8>, after_hello: bool) {
    let hub = Hub::start();
    let mut m = if after_hello {
        hub.mallory().await
    } else {
        hub.connect().await
    };
    m.send_bytes(bytes).await.unwrap();
    let a = m.until_end().await;
    assert_error(&a, "protocol");
    assert!(m.closes().await, "the hub closes the connection");
    hub.finish().await;
}

fn frame(f: Frame) -> Vec<u8> {
    f.encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_before_hello() {
    let f = frame(Frame::Push {
        upto: 1,
        seq: 1,
        prev: [0; 32],
        signature: vec![0; 64],
        docs: vec![],
    });
    ends_with_protocol(f, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_ack_before_hello() {
    ends_with_protocol(frame(Frame::ChangesAck { upto: 1 }), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcome_sent_by_an_edge() {
    let w = Frame::Welcome {
        version: 2,
        hub_db_id: new_db_id(),
        push_checkpoint: 0,
        hub_last_etag: 0,
        pending: 0,
        max_frame_bytes: 1 << 20,
        heartbeat_ms: 1000,
        grant: None,
        batch_seq: 0,
        batch_head: [0; 32],
    };
    ends_with_protocol(frame(w), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_sent_by_an_edge() {
    let f = Frame::Changes {
        upto: 1,
        docs: vec![],
    };
    ends_with_protocol(frame(f), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_sent_by_an_edge() {
    ends_with_protocol(frame(Frame::Live { upto: 1 }), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_ack_sent_by_an_edge() {
    let f = Frame::PushAck {
        upto: 1,
        applied: 1,
        conflicts: 0,
        resolved: 0,
    };
    ends_with_protocol(frame(f), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_rejected_sent_by_an_edge() {
    let f = Frame::PushRejected {
        upto: 1,
        code: "write_denied".into(),
        id: "x".into(),
        rule: String::new(),
        message: String::new(),
    };
    ends_with_protocol(frame(f), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_hello_in_one_session() {
    let h = Hostile::hello_frame("alice", "alice-token", new_db_id(), 0);
    ends_with_protocol(frame(h), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_ack_of_a_batch_never_sent() {
    ends_with_protocol(frame(Frame::ChangesAck { upto: 999_999 }), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_frame_type_0() {
    ends_with_protocol(vec![0, 1, 2, 3], true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_frame_type_12() {
    ends_with_protocol(vec![12, 0, 0, 0, 0, 0, 0, 0, 0], true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_frame_type_255_before_hello() {
    ends_with_protocol(vec![255; 16], false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_binary_message() {
    ends_with_protocol(Vec::new(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_message_instead_of_a_frame() {
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    m.send_msg(Message::Text("{\"type\":\"push\"}".into()))
        .await
        .unwrap();
    assert_error(&m.until_end().await, "protocol");
    hub.finish().await;
}

/// A valid one-document push from `m` as bytes.
fn one_doc_push(m: &Hostile, id: &str) -> Vec<u8> {
    m.signed_push_frame(
        1,
        vec![doc(id, "Notes", live(&[(m.db_id, 1)], b"{\"a\":1}"))],
    )
    .encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_push() {
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let mut b = one_doc_push(&m, "shared/notes/t");
    b.pop();
    m.send_bytes(b).await.unwrap();
    assert_error(&m.until_end().await, "protocol");
    assert!(!hub.view().await.contains_key("shared/notes/t"));
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailing_bytes_after_a_push() {
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let mut b = one_doc_push(&m, "shared/notes/t");
    b.extend_from_slice(&[0; 7]);
    m.send_bytes(b).await.unwrap();
    assert_error(&m.until_end().await, "protocol");
    assert!(!hub.view().await.contains_key("shared/notes/t"));
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_count_of_u32_max_in_a_small_frame() {
    let f = push_frame(1, &[], Some(u32::MAX));
    ends_with_protocol(f, true).await;
}

/// Mallory pushes one raw document; the session ends with
/// `Error(protocol)` or the push is refused with `code`; nothing stored.
async fn malformed_doc(edit: impl FnOnce(&mut RawDoc), code: &str) {
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let mut d = RawDoc::new(b"shared/notes/raw", b"Notes", &[(m.db_id, 1)], b"{}");
    edit(&mut d);
    let r = m.push_raw(&[d]).await;
    assert!(r.is_error("protocol") || r.is_rejected(code), "{r:?}");
    assert!(!hub.view().await.contains_key("shared/notes/raw"));
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_vector_count_of_65535_with_no_entries() {
    malformed_doc(
        |d| d.versions[0].cv_count = Some(u16::MAX),
        "invalid_change_vector",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_count_of_zero() {
    malformed_doc(
        |d| {
            d.version_count = Some(0);
            d.versions.clear();
        },
        "invalid_document",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_count_of_33() {
    malformed_doc(
        |d| {
            let v = d.versions[0].clone();
            d.versions = (0..33u8)
                .map(|k| {
                    let mut v = v.clone();
                    v.cv = vec![([k + 1; 16], 1)];
                    v
                })
                .collect();
        },
        "invalid_document",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_vector_ids_in_decreasing_order() {
    malformed_doc(
        |d| d.versions[0].cv = vec![([9; 16], 1), ([1; 16], 1)],
        "invalid_change_vector",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_vector_with_one_id_twice() {
    malformed_doc(
        |d| {
            let own = d.versions[0].cv[0].0;
            d.versions[0].cv = vec![(own, 1), (own, 5)];
        },
        "invalid_change_vector",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_vector_entry_with_etag_zero() {
    malformed_doc(|d| d.versions[0].cv[0].1 = 0, "invalid_change_vector").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_change_vector() {
    malformed_doc(|d| d.versions[0].cv.clear(), "invalid_change_vector").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_version_flags() {
    malformed_doc(|d| d.versions[0].flags = 0x82, "invalid_document").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_over_32_mib_after_hello() {
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let _ = m.send_bytes(vec![6; (32 << 20) + 1024]).await;
    let a = m.until_end().await;
    assert!(a.is_end(), "{a:?}");
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_of_501_documents() {
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let docs = (0..501)
        .map(|k| {
            doc(
                &format!("shared/notes/b{k}"),
                "Notes",
                live(&[(m.db_id, k + 1)], b"{}"),
            )
        })
        .collect();
    let r = m.push(docs).await;
    assert!(
        r.is_rejected("batch_too_large") || r.is_error("protocol"),
        "{r:?}"
    );
    assert!(!hub.view().await.contains_key("shared/notes/b0"));
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_push_while_the_first_is_in_flight() {
    // Two pushes back to back without waiting: the hub either answers the
    // first and ends the session for the second (protocol), or, if the
    // first was settled before the second arrived, answers both in order.
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let first: Vec<WireDoc> = (0..400)
        .map(|k| {
            doc(
                &format!("shared/notes/f{k}"),
                "Notes",
                live(&[(m.db_id, k + 1)], b"{}"),
            )
        })
        .collect();
    let second = doc("shared/notes/s", "Notes", live(&[(m.db_id, 401)], b"{}"));
    let pushes = m.signed_pushes(vec![(400, first), (401, vec![second])]);
    for p in &pushes {
        m.send(p).await.unwrap();
    }
    let a1 = m.answer().await;
    let a2 = m.answer().await;
    let ok_in_order = matches!(a1, Answer::PushAck { upto: 400, .. })
        && matches!(a2, Answer::PushAck { upto: 401, .. });
    assert!(
        ok_in_order || a1.is_error("protocol") || a2.is_error("protocol"),
        "{a1:?} then {a2:?}"
    );
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_with_a_bad_magic() {
    let mut b = Hostile::hello_frame("mallory", "mallory-token", new_db_id(), 0).encode();
    b[1..5].copy_from_slice(b"HTTP");
    ends_with_protocol(b, false).await;
}

/// A `Hello` offering only versions `min..=max` is refused with
/// `unsupported_version`, and the hub goes on.
async fn refused_versions(min: u16, max: u16) {
    let hub = Hub::start();
    let mut m = hub.connect().await;
    let mut h = Hostile::hello_frame("mallory", "mallory-token", new_db_id(), 0);
    if let Frame::Hello {
        min_version,
        max_version,
        ..
    } = &mut h
    {
        (*min_version, *max_version) = (min, max);
    }
    let a = m.hello_with(h).await.expect_err("no Welcome");
    assert_error(&a, "unsupported_version");
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_offering_only_future_protocol_versions() {
    use outpost::sync::frame::PROTOCOL_VERSION;
    refused_versions(PROTOCOL_VERSION + 1, PROTOCOL_VERSION + 3).await;
}

/// A protocol 4 edge could not read a `Purge` naming ids (a subject
/// purge), so the hub could not make it erase a purged subject: refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_offering_only_protocol_4() {
    refused_versions(3, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_with_min_version_above_max_version() {
    let hub = Hub::start();
    let mut m = hub.connect().await;
    let mut h = Hostile::hello_frame("mallory", "mallory-token", new_db_id(), 0);
    if let Frame::Hello {
        min_version,
        max_version,
        ..
    } = &mut h
    {
        *min_version = 2;
        *max_version = 1;
    }
    let a = m.hello_with(h).await.expect_err("no Welcome");
    assert!(
        a.is_error("unsupported_version") || a.is_error("protocol"),
        "{a:?}"
    );
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_for_a_database_the_identity_is_not_bound_to() {
    let hub = Hub::start();
    let mut m = hub.connect().await;
    let mut h = Hostile::hello_frame("mallory", "mallory-token", new_db_id(), 0);
    if let Frame::Hello { database, .. } = &mut h {
        *database = "other".into();
    }
    assert_error(
        &m.hello_with(h).await.expect_err("no Welcome"),
        "unauthorized",
    );
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_checkpoint_beyond_the_hubs_history() {
    // A checkpoint the hub never issued starts the edge from 0: it gets
    // everything, nothing is skipped or invented.
    let hub = Hub::start();
    hub.alice_writes("shared/notes/a", "Notes", json!({})).await;
    let first = hub.hello_only("mallory").await;
    let hub_id = first.hub_db_id();
    first.close().await;
    let mut m = hub.connect().await;
    let mut h = Hostile::hello_frame("mallory", "mallory-token", new_db_id(), u64::MAX);
    if let Frame::Hello { checkpoint_hub, .. } = &mut h {
        *checkpoint_hub = hub_id;
    }
    m.hello_with(h).await.expect("Welcome");
    m.pull(true).await.expect("Live");
    assert!(m.received.contains_key("shared/notes/a"));
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_frame_sent_by_an_edge() {
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    m.send(&Frame::Error {
        code: "storage".into(),
        message: "fake".into(),
    })
    .await
    .unwrap();
    let a = m.until_end().await;
    assert!(a.is_end(), "{a:?}");
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_dropped_right_after_a_push() {
    // The batch is applied whole or not at all.
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let docs = (0..3)
        .map(|k| {
            doc(
                &format!("shared/notes/d{k}"),
                "Notes",
                live(&[(m.db_id, k + 1)], b"{}"),
            )
        })
        .collect();
    m.send(&m.signed_push_frame(3, docs)).await.unwrap();
    drop(m);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let v = hub.view().await;
    let n = (0..3)
        .filter(|k| v.contains_key(&format!("shared/notes/d{k}")))
        .count();
    assert!(n == 0 || n == 3, "{n} of 3 documents stored");
    hub.finish().await;
}
