//! Revocation and narrowing: a removed identity's sessions end at once and
//! it is refused from then on; a narrowed scope ends the session
//! (`config_changed`) and the new rules apply on reconnect, with a purge
//! order for what left the scope; receipts must be signed by the session's
//! key and answer the order sent. A revoked identity (`revoked = true`) is
//! ordered to erase everything it was sent, then refused with
//! `Error(revoked)`.

use std::time::Duration;

use crate::common::*;

/// Mallory's device in these cases: orders are per device (each device of
/// an identity holds its own copies), so she reconnects with the same one.
fn device() -> DbId {
    DbId([0x4d; 16])
}

/// The standard edges with mallory's entry replaced by `mallory` (TOML, or
/// empty to remove her).
fn edges_with_mallory(mallory: &str) -> String {
    let all = edges();
    let start = all.find("[[edge]]\nname = \"mallory\"\n").unwrap();
    let end = start + all[start..].find("\n\n").unwrap() + 2;
    format!("{}{}{}", &all[..start], mallory, &all[end..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_identity_keeps_its_open_session() {
    let hub = Hub::start();
    let mut m = hub.device("mallory", device()).await;
    hub.set_edges(&edges_with_mallory(""));
    m.timeout = Duration::from_secs(10);
    let a = m.until_end().await;
    assert_error(&a, "unauthorized");
    let mut again = hub.connect().await;
    let r = again
        .hello("mallory", "mallory-token", new_db_id(), 0)
        .await;
    assert_error(&r.expect_err("refused"), "unauthorized");
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrowed_identity_keeps_writing_under_its_old_scope() {
    let hub = Hub::start();
    let mut m = hub.device("mallory", device()).await;
    let narrowed = edge_toml("mallory", "mallory-token", &["mallory/"], &["mallory/"]);
    hub.set_edges(&edges_with_mallory(&narrowed));
    m.timeout = Duration::from_secs(10);
    assert_error(&m.until_end().await, "config_changed");
    // Reconnected under the new rules: shared/ is no longer writable.
    let mut m = hub.device("mallory", device()).await;
    let r = m
        .push(vec![doc(
            "shared/notes/after",
            "Notes",
            live(&[(m.db_id, 1)], b"{}"),
        )])
        .await;
    assert_refused(&r, "write_denied", "shared/notes/after");
    assert!(!m.received.keys().any(|k| k.starts_with("shared/")));
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_identity_reconnecting_with_its_old_device_id() {
    let hub = Hub::start();
    let mut m = hub.device("mallory", device()).await;
    assert_acked(
        &m.push(vec![doc(
            "shared/notes/before",
            "Notes",
            live(&[(m.db_id, 1)], b"{}"),
        )])
        .await,
    );
    let db = m.db_id;
    m.close().await;
    hub.set_edges(&edges_with_mallory(""));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut again = hub.connect().await;
    let r = again.hello("mallory", "mallory-token", db, 0).await;
    assert_error(&r.expect_err("refused"), "unauthorized");
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_identitys_key_presented_under_another_name() {
    let hub = Hub::start();
    hub.set_edges(&edges_with_mallory(""));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for who in ["mallory2", "alice", "reader"] {
        let mut c = hub.connect().await;
        c.key = Some(outpost_testkit::keys::key_for("mallory"));
        let r = c.hello(who, "mallory-token", new_db_id(), 0).await;
        assert_error(&r.expect_err("refused"), "unauthorized");
    }
    hub.finish().await;
}

/// The standard edges with mallory's entry revoked (`revoked = true`).
fn mallory_revoked() -> String {
    edges().replace(
        "name = \"mallory\"\n",
        "name = \"mallory\"\nrevoked = true\n",
    )
}

/// `outpost-hub edge status NAME` (the hub stopped).
fn edge_status(dir: &std::path::Path, name: &str) -> String {
    let out = std::process::Command::new(BIN)
        .current_dir(dir)
        .args(["--config", "outpost-hub.toml", "edge", "status", name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Mallory, narrowed to `mallory/`, reconnects and is sent the order.
async fn narrowed_mallory(hub: &Hub) -> Hostile {
    let narrowed = edge_toml("mallory", "mallory-token", &["mallory/"], &["mallory/"]);
    hub.set_edges(&edges_with_mallory(&narrowed));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let m = hub.device("mallory", device()).await;
    let o = m.purges.last().expect("a purge order after Welcome");
    assert_eq!(o.reason, "narrowed");
    assert_eq!(o.prefixes, vec!["shared/".to_string()]);
    assert_eq!(o.keep, vec!["mallory/".to_string()]);
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrowed_edge_is_told_which_documents_left_its_scope() {
    // Mallory held shared/notes/a; narrowed to mallory/, each session
    // repeats the same order until she answers; a hostile edge that never
    // answers stays listed as owing a receipt.
    let hub = Hub::start();
    hub.alice_writes("shared/notes/a", "Notes", json!({"n": 1}))
        .await
        .close()
        .await;
    let m = hub.device("mallory", device()).await;
    assert!(m.received.contains_key("shared/notes/a"));
    assert!(m.purges.is_empty(), "no order before any narrowing");
    m.close().await;
    let m = narrowed_mallory(&hub).await;
    let first = m.purges[0].order;
    m.close().await;
    let m = hub.device("mallory", device()).await;
    assert_eq!(
        m.purges.last().map(|o| o.order),
        Some(first),
        "the same order, repeated"
    );
    m.close().await;
    let (_, audit) = hub.finish_audited().await;
    assert!(!audit.iter().any(|e| e["kind"] == "purge_receipt"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_purge_receipt_for_documents_never_purged() {
    // Receipts signed by another key, for another order, over other
    // numbers than stated, or with no order sent: refused; the order stays
    // pending until an honest receipt answers it.
    let hub = Hub::start();
    hub.alice_writes("shared/notes/a", "Notes", json!({"n": 1}))
        .await
        .close()
        .await;
    hub.device("mallory", device()).await.close().await;
    let mut m = narrowed_mallory(&hub).await;
    let other = outpost_testkit::keys::key_for("mallory2");
    let forged = m.purge_receipt(1, [0; 32], Some(&other));
    m.send(&forged).await.unwrap();
    assert_error(&m.until_end().await, "bad_signature");
    // Another order than the one sent.
    let mut m = hub.device("mallory", device()).await;
    let mut wrong = m.purge_receipt(1, [0; 32], None);
    if let Frame::PurgeReceipt { order, .. } = &mut wrong {
        *order += 1;
    }
    m.send(&wrong).await.unwrap();
    assert_error(&m.until_end().await, "protocol");
    // Signed over other numbers than the frame states.
    let mut m = hub.device("mallory", device()).await;
    let mut lying = m.purge_receipt(1, [0; 32], None);
    if let Frame::PurgeReceipt { removed, .. } = &mut lying {
        *removed = 1_000;
    }
    m.send(&lying).await.unwrap();
    assert_error(&m.until_end().await, "bad_signature");
    // Before authenticating: not even a frame the hub reads.
    let mut c = hub.connect().await;
    c.send(&forged).await.unwrap();
    assert_error(&c.answer().await, "protocol");
    // The honest receipt is taken; the session goes on; a replay of it in a
    // later session answers no order.
    let mut m = hub.device("mallory", device()).await;
    let honest = m.purge_receipt(1, [7; 32], None);
    m.send(&honest).await.unwrap();
    let r = Hub::honest_put(&mut m, "mallory/after", "Notes", json!({"n": 2})).await;
    assert!(matches!(r, Answer::PushAck { .. }), "{r:?}");
    m.close().await;
    let mut m = hub.device("mallory", device()).await;
    assert!(m.purges.is_empty(), "settled: no order any more");
    m.send(&honest).await.unwrap();
    assert_error(&m.until_end().await, "protocol");
    let (_, audit, status) = hub
        .finish_audited_then(|dir| edge_status(dir, "mallory"))
        .await;
    let receipts: Vec<&Value> = audit
        .iter()
        .filter(|e| e["kind"] == "purge_receipt")
        .collect();
    assert_eq!(receipts.len(), 1, "only the honest receipt is recorded");
    assert_eq!(receipts[0]["record"]["identity"], "mallory");
    assert_eq!(receipts[0]["record"]["removed"], 1);
    assert!(status.contains("no receipt pending"), "{status}");
    assert!(status.contains("order 1 (narrowed)"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_never_sent_stays_pending() {
    let hub = Hub::start();
    hub.alice_writes("shared/notes/a", "Notes", json!({"n": 1}))
        .await
        .close()
        .await;
    hub.device("mallory", device()).await.close().await;
    narrowed_mallory(&hub).await.close().await;
    let (_, _, status) = hub
        .finish_audited_then(|dir| edge_status(dir, "mallory"))
        .await;
    assert!(
        status.contains("receipt PENDING: purge order 1 (narrowed)"),
        "{status}"
    );
    assert!(status.contains("erase shared/, keep mallory/"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_while_connected_is_ordered_to_erase_everything() {
    // Mallory's open session: revoked = true. She is sent the order (keep
    // nothing) instead of more changes; her pushes are no longer taken;
    // once her receipt is in she is refused; her next Hello is refused at
    // once (nothing left to order).
    let hub = Hub::start();
    hub.alice_writes("shared/notes/a", "Notes", json!({"n": 1}))
        .await
        .close()
        .await;
    let mut m = hub.device("mallory", device()).await;
    let revoked = mallory_revoked();
    hub.set_edges(&revoked);
    m.timeout = Duration::from_secs(10);
    // Whatever comes meanwhile, the order arrives.
    for _ in 0..20 {
        if !m.purges.is_empty() {
            break;
        }
        if m.answer().await.is_end() {
            break;
        }
    }
    let o = m.purges.last().expect("a purge order").clone();
    assert_eq!((o.reason.as_str(), o.keep.len()), ("revoked", 0));
    assert!(o.prefixes.contains(&"shared/".to_string()));
    // A push now is not taken (no ack, no store).
    let late = m.signed_push_frame(
        1,
        vec![doc("mallory/late", "Notes", live(&[(m.db_id, 1)], b"{}"))],
    );
    m.send(&late).await.unwrap();
    let receipt = m.purge_receipt(2, [1; 32], None);
    m.send(&receipt).await.unwrap();
    assert_error(&m.until_end().await, "revoked");
    let mut c = hub.connect().await;
    let r = c.hello("mallory", "", new_db_id(), 0).await;
    assert_error(&r.expect_err("refused"), "revoked");
    let (export, audit, status) = hub
        .finish_audited_then(|dir| edge_status(dir, "mallory"))
        .await;
    assert!(!export.contains_key("mallory/late"));
    assert!(audit.iter().any(|e| {
        e["kind"] == "purge_receipt"
            && e["record"]["reason"] == "revoked"
            && !e["record"]["signature"]
                .as_str()
                .unwrap_or_default()
                .is_empty()
    }));
    assert!(status.contains("revoked"), "{status}");
    assert!(status.contains("order 1 (revoked)"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_at_the_handshake_gets_the_order_and_nothing_else() {
    // Revoked while away: after her proof, the order comes instead of
    // Welcome; anything but the receipt ends the session.
    let hub = Hub::start();
    hub.alice_writes("shared/notes/a", "Notes", json!({"n": 1}))
        .await
        .close()
        .await;
    hub.device("mallory", device()).await.close().await;
    let revoked = mallory_revoked();
    hub.set_edges(&revoked);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut c = hub.connect().await;
    c.timeout = Duration::from_secs(3);
    let r = c.hello("mallory", "", device(), 0).await;
    assert!(matches!(r, Err(Answer::Timeout)), "no Welcome: {r:?}");
    assert_eq!(c.purges.last().map(|o| o.reason.as_str()), Some("revoked"));
    assert!(c.received.is_empty());
    c.send(&Frame::ChangesAck { upto: 1 }).await.unwrap();
    c.send(&c.signed_push_frame(1, vec![])).await.unwrap();
    c.send(&Frame::Live { upto: 1 }).await.unwrap();
    assert_error(&c.answer().await, "protocol");
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_key_is_refused_at_the_handshake() {
    // Mallory's entry gets `revoked = true`: a key Hello is answered
    // Error(revoked) (before any challenge), and the native edge client
    // surfaces it as a final error.
    let hub = Hub::start();
    let revoked = mallory_revoked();
    hub.set_edges(&revoked);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut c = hub.connect().await;
    let r = c.hello("mallory", "", new_db_id(), 0).await;
    assert_error(&r.expect_err("refused"), "revoked");
    let db = outpost_testkit::open(&std::sync::Arc::new(outpost::store::MemoryStore::new())).await;
    let opts = outpost_client::ClientOptions {
        url: hub.url(),
        edge: outpost::sync::EdgeConfig::with_key(
            "main",
            "mallory",
            outpost_testkit::keys::public_key("mallory"),
        ),
        ca_cert: None,
        signer: Some(outpost_testkit::keys::signer("mallory")),
        client_cert: None,
    };
    let client = outpost_client::spawn_edge(db, opts, None);
    assert!(
        client
            .wait_for(WAIT, |s| matches!(
                s,
                outpost::sync::SyncStatus::Error { code, .. } if code == "revoked"
            ))
            .await,
        "{:?}",
        client.status()
    );
    client.stop().await;
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_device_of_a_narrowed_identity_answers_for_itself() {
    // Two devices of mallory held shared/notes/a. The first one's receipt
    // settles only its own order: the second is still ordered to erase,
    // and a device that never held anything gets no order.
    let hub = Hub::start();
    hub.alice_writes("shared/notes/a", "Notes", json!({"n": 1}))
        .await
        .close()
        .await;
    let second = DbId([0x4e; 16]);
    hub.device("mallory", device()).await.close().await;
    hub.device("mallory", second).await.close().await;
    let mut m = narrowed_mallory(&hub).await;
    let receipt = m.purge_receipt(1, [0; 32], None);
    m.send(&receipt).await.unwrap();
    let r = Hub::honest_put(&mut m, "mallory/after", "Notes", json!({"n": 2})).await;
    assert!(matches!(r, Answer::PushAck { .. }), "{r:?}");
    m.close().await;
    assert!(
        hub.device("mallory", device()).await.purges.is_empty(),
        "settled"
    );
    let m2 = hub.device("mallory", second).await;
    let o = m2.purges.last().expect("the second device's own order");
    assert_eq!(
        (o.reason.as_str(), o.prefixes.clone()),
        ("narrowed", vec!["shared/".to_string()])
    );
    m2.close().await;
    assert!(
        hub.device("mallory", new_db_id()).await.purges.is_empty(),
        "a new device held nothing"
    );
    let (_, _, status) = hub
        .finish_audited_then(|dir| edge_status(dir, "mallory"))
        .await;
    assert!(
        status.contains("receipt PENDING: purge order 1 (narrowed)"),
        "{status}"
    );
    assert!(status.contains("no receipt pending"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cycling_through_device_ids_is_capped() {
    // Each device id an identity connects with costs the hub a served
    // record: beyond `max_devices_per_identity` a new one is refused
    // (`too_many_devices`); the devices it has keep working.
    let hub = Hub::start_with(&[], "[limits]\nmax_devices_per_identity = 3\n");
    let known: Vec<DbId> = (1..=3u8).map(|i| DbId([0x60 + i; 16])).collect();
    for d in &known {
        hub.device("mallory", *d).await.close().await;
    }
    for _ in 0..3 {
        let mut c = hub.connect().await;
        let r = c.hello("mallory", "mallory-token", new_db_id(), 0).await;
        assert_error(&r.expect_err("a fourth device"), "too_many_devices");
    }
    // Other identities are not affected, nor mallory's known devices.
    hub.device("mallory2", new_db_id()).await.close().await;
    let mut m = hub.device("mallory", known[1]).await;
    let r = Hub::honest_put(&mut m, "mallory/still", "Notes", json!({"n": 1})).await;
    assert!(matches!(r, Answer::PushAck { .. }), "{r:?}");
    m.close().await;
    hub.finish().await;
}
