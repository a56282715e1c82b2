//! Signed batches (issue 10 §3, protocol 3): every `Push` of a key session
//! continues the identity's chain (`seq` = the last accepted + 1, `prev` =
//! its hash) and carries the key's signature of the batch's canonical bytes
//! (`BatchManifest::message`). Replayed, reordered, truncated, altered or
//! re-signed batches, signatures over another encoding and batches signed by
//! another key end the session with `Error(batch_sequence)` or
//! `Error(bad_signature)`, nothing of the batch stored, the refusal in the
//! audit trail; the identity's honest batches go on being accepted.

use std::time::Duration;

use outpost::keys::Signer;
use outpost::sync::signed::BatchManifest;
use outpost_testkit::keys;

use crate::common::*;

/// A note of `m` (its own entry `k`).
fn note(m: &Hostile, id: &str, k: u64) -> WireDoc {
    doc(
        id,
        "Notes",
        live(&[(m.db_id, k)], format!("{{\"k\":{k}}}").as_bytes()),
    )
}

/// The refusals of `identity` with `code` in the audit trail.
fn refusals<'a>(audit: &'a [Value], identity: &str, code: &str) -> Vec<&'a Value> {
    audit
        .iter()
        .filter(|l| {
            l["kind"] == "push_refused"
                && l["record"]["identity"] == identity
                && l["record"]["code"] == code
        })
        .collect()
}

/// Sends `f` and expects the session to end with `Error(code)`.
async fn refused_with(m: &mut Hostile, f: &Frame, code: &str) {
    m.send(f).await.unwrap();
    let a = m.until_end().await;
    assert_error(&a, code);
}

/// The honest signed push that must still work after the attack: a new
/// session of `identity` continues its chain.
async fn still_pushes(hub: &Hub, identity: &str, id: &str) {
    let mut h = hub.session(identity).await;
    let d = note(&h, id, 1);
    assert_acked(&h.push(vec![d]).await);
    h.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_an_accepted_signed_batch_in_the_same_session() {
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let batch = m.signed_push_frame(1, vec![note(&m, "shared/notes/r", 1)]);
    m.send(&batch).await.unwrap();
    assert_acked(&m.answer().await);
    refused_with(&mut m, &batch, "batch_sequence").await;
    still_pushes(&hub, "mallory", "shared/notes/after-replay").await;
    let (export, audit) = hub.finish_audited().await;
    assert!(export.contains_key("shared/notes/r"));
    assert_eq!(refusals(&audit, "mallory", "batch_sequence").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_an_accepted_signed_batch_in_a_new_session_over_an_edit() {
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let device = m.db_id;
    let batch = m.signed_push_frame(1, vec![note(&m, "shared/notes/r", 1)]);
    m.send(&batch).await.unwrap();
    assert_acked(&m.answer().await);
    m.close().await;
    // Alice edits the document (informed: she received mallory's version).
    let mut a = hub.session("alice").await;
    let r = Hub::honest_put(&mut a, "shared/notes/r", "Notes", json!({"by": "alice"})).await;
    assert_acked(&r);
    // Mallory replays her batch #1, byte for byte, from the same device.
    let mut m = hub.device("mallory", device).await;
    refused_with(&mut m, &batch, "batch_sequence").await;
    assert_eq!(
        body(&hub.doc("shared/notes/r").await),
        json!({"by": "alice"})
    );
    let (_, audit) = hub.finish_audited().await;
    assert_eq!(refusals(&audit, "mallory", "batch_sequence").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorder_of_two_signed_batches() {
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let pushes = m.signed_pushes(vec![
        (1, vec![note(&m, "shared/notes/o1", 1)]),
        (2, vec![note(&m, "shared/notes/o2", 2)]),
    ]);
    // #2 first (seq 2 where the hub expects 1): refused, nothing stored.
    refused_with(&mut m, &pushes[1], "batch_sequence").await;
    assert!(!hub.view().await.contains_key("shared/notes/o2"));
    // In order, in a new session of the same device: both accepted.
    let mut m2 = hub.device("mallory", m.db_id).await;
    for p in &pushes {
        m2.send(p).await.unwrap();
        assert_acked(&m2.answer().await);
    }
    let v = hub.view().await;
    assert!(v.contains_key("shared/notes/o1") && v.contains_key("shared/notes/o2"));
    let (_, audit) = hub.finish_audited().await;
    assert_eq!(refusals(&audit, "mallory", "batch_sequence").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipping_ahead_in_the_chain_is_refused() {
    // seq + 2 with a made-up prev: a batch between was dropped or forged.
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let docs = vec![note(&m, "shared/notes/skip", 1)];
    let key = keys::key_for("mallory");
    let sig = Hostile::sign_batch(&key, m.db_id, 2, [9; 32], 1, &docs);
    let a = m.push_signed(docs, 1, 2, [9; 32], sig).await;
    assert_error(&a, "batch_sequence");
    assert!(!hub.view().await.contains_key("shared/notes/skip"));
    still_pushes(&hub, "mallory", "shared/notes/after-skip").await;
    hub.finish_audited().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_signed_batch_with_a_document_removed() {
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let docs: Vec<WireDoc> = (1..=3)
        .map(|k| note(&m, &format!("shared/notes/t{k}"), k))
        .collect();
    let Frame::Push {
        upto,
        seq,
        prev,
        signature,
        mut docs,
    } = m.signed_push_frame(3, docs)
    else {
        unreachable!()
    };
    docs.pop();
    let a = m.push_signed(docs, upto, seq, prev, signature).await;
    assert_error(&a, "bad_signature");
    let v = hub.view().await;
    assert!((1..=3).all(|k| !v.contains_key(&format!("shared/notes/t{k}"))));
    still_pushes(&hub, "mallory", "shared/notes/after-truncation").await;
    let (_, audit) = hub.finish_audited().await;
    assert_eq!(refusals(&audit, "mallory", "bad_signature").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_batch_with_one_body_swapped_after_signing() {
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let Frame::Push {
        upto,
        seq,
        prev,
        signature,
        mut docs,
    } = m.signed_push_frame(1, vec![note(&m, "shared/notes/swap", 1)])
    else {
        unreachable!()
    };
    docs[0].versions[0].body = b"{\"k\":666}".to_vec();
    let a = m.push_signed(docs, upto, seq, prev, signature).await;
    assert_error(&a, "bad_signature");
    assert!(!hub.view().await.contains_key("shared/notes/swap"));
    hub.finish_audited().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_over_another_encoding_of_the_same_batch() {
    let hub = Hub::start();
    let key = keys::key_for("mallory");
    // (1) the frame's own bytes (with an empty signature field) instead of
    // the canonical manifest; (2) the manifest's fields as JSON text.
    for variant in 0..2 {
        let mut m = hub.mallory().await;
        let docs = vec![note(&m, "shared/notes/enc", 1)];
        let (seq, prev) = (m.chain.0 + 1, m.chain.1);
        let other = match variant {
            0 => Frame::Push {
                upto: 1,
                seq,
                prev,
                signature: Vec::new(),
                docs: docs.clone(),
            }
            .encode(),
            _ => json!({
                "device": m.db_id.to_string(),
                "seq": seq,
                "upto": 1,
                "docs": docs.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
            })
            .to_string()
            .into_bytes(),
        };
        let sig = key.sign(&other).unwrap();
        let a = m.push_signed(docs, 1, seq, prev, sig).await;
        assert_error(&a, "bad_signature");
    }
    assert!(!hub.view().await.contains_key("shared/notes/enc"));
    let (_, audit) = hub.finish_audited().await;
    assert_eq!(refusals(&audit, "mallory", "bad_signature").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_re_signed_by_another_edges_key() {
    // Mallory holds mallory2's private key too (or any other edge's): a
    // batch in her session signed with it does not verify under her key.
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let docs = vec![note(&m, "shared/notes/other-key", 1)];
    let (seq, prev) = (m.chain.0 + 1, m.chain.1);
    let sig = Hostile::sign_batch(&keys::key_for("mallory2"), m.db_id, seq, prev, 1, &docs);
    let a = m.push_signed(docs, 1, seq, prev, sig).await;
    assert_error(&a, "bad_signature");
    // A key she made herself and never enrolled: the same.
    let mut m = hub.mallory().await;
    let docs = vec![note(&m, "shared/notes/own-key", 1)];
    let (seq, prev) = (m.chain.0 + 1, m.chain.1);
    let sig = Hostile::sign_batch(&keys::fresh_key(), m.db_id, seq, prev, 1, &docs);
    assert_error(
        &m.push_signed(docs, 1, seq, prev, sig).await,
        "bad_signature",
    );
    let v = hub.view().await;
    assert!(!v.contains_key("shared/notes/other-key") && !v.contains_key("shared/notes/own-key"));
    still_pushes(&hub, "mallory2", "shared/notes/mallory2-fine").await;
    let (_, audit) = hub.finish_audited().await;
    assert_eq!(refusals(&audit, "mallory", "bad_signature").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_batch_naming_another_device() {
    // Signed by mallory's key over a manifest stating another device's db
    // id: the hub computes the manifest with the session's device, so the
    // signature does not verify.
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let docs = vec![note(&m, "shared/notes/dev", 1)];
    let (seq, prev) = (m.chain.0 + 1, m.chain.1);
    let key = keys::key_for("mallory");
    let sig = Hostile::sign_batch(&key, new_db_id(), seq, prev, 1, &docs);
    assert_error(
        &m.push_signed(docs, 1, seq, prev, sig).await,
        "bad_signature",
    );
    assert!(!hub.view().await.contains_key("shared/notes/dev"));
    hub.finish_audited().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_push_in_a_signed_session() {
    let hub = Hub::start();
    // A token-style push (seq 0, no signature): out of the chain.
    let mut m = hub.mallory().await;
    let d = vec![note(&m, "shared/notes/unsigned", 1)];
    assert_error(
        &m.push_signed(d, 1, 0, [0; 32], Vec::new()).await,
        "batch_sequence",
    );
    // The right place in the chain but no signature.
    let mut m = hub.mallory().await;
    let d = vec![note(&m, "shared/notes/unsigned", 1)];
    let (seq, prev) = (m.chain.0 + 1, m.chain.1);
    assert_error(
        &m.push_signed(d, 1, seq, prev, Vec::new()).await,
        "bad_signature",
    );
    assert!(!hub.view().await.contains_key("shared/notes/unsigned"));
    hub.finish_audited().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_of_one_identity_cannot_fork_its_chain() {
    // Two sessions of mallory each sign "the next batch" from the same
    // head: one is accepted, the other refused (batch_sequence), never both.
    let hub = Hub::start();
    let mut a = hub.mallory().await;
    let mut b = hub.device("mallory", a.db_id).await;
    let fa = a.signed_push_frame(1, vec![note(&a, "shared/notes/fork-a", 1)]);
    let fb = b.signed_push_frame(1, vec![note(&b, "shared/notes/fork-b", 1)]);
    a.send(&fa).await.unwrap();
    b.send(&fb).await.unwrap();
    let (ra, rb) = (a.answer().await, b.answer().await);
    let acked = [&ra, &rb]
        .iter()
        .filter(|r| matches!(r, Answer::PushAck { .. }))
        .count();
    assert_eq!(acked, 1, "{ra:?} / {rb:?}");
    assert!(
        ra.is_error("batch_sequence") || rb.is_error("batch_sequence"),
        "{ra:?} / {rb:?}"
    );
    let v = hub.view().await;
    assert_eq!(
        usize::from(v.contains_key("shared/notes/fork-a"))
            + usize::from(v.contains_key("shared/notes/fork-b")),
        1
    );
    hub.finish_audited().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_signed_by_a_revoked_key() {
    // Mallory's identity is revoked while her session is open: it ends
    // with Error(revoked) once she answered her purge order; a new session
    // with the key is refused with Error(revoked); a batch she signed before
    // never gets in.
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let device = m.db_id;
    let batch = m.signed_push_frame(1, vec![note(&m, "shared/notes/revoked", 1)]);
    let revoked = hub.config_text().replace(
        "name = \"mallory\"\n",
        "name = \"mallory\"\nrevoked = true\n",
    );
    let start = revoked.find("[[edge]]").unwrap();
    hub.set_edges(&revoked[start..]);
    m.timeout = Duration::from_secs(10);
    // She holds what she was sent: ordered to erase it first (the order
    // comes instead of more changes); her batch is not taken meanwhile.
    for _ in 0..20 {
        if !m.purges.is_empty() || m.answer().await.is_end() {
            break;
        }
    }
    assert_eq!(m.purges.last().map(|o| o.reason.as_str()), Some("revoked"));
    m.send(&batch).await.unwrap();
    let receipt = m.purge_receipt(0, [0; 32], None);
    m.send(&receipt).await.unwrap();
    assert_error(&m.until_end().await, "revoked");
    let mut again = hub.connect().await;
    let r = again.hello("mallory", "", device, 0).await;
    assert_error(&r.expect_err("refused"), "revoked");
    let mut again = hub.connect().await;
    if again.hello("mallory", "", device, 0).await.is_ok() {
        panic!("a revoked identity got a session");
    }
    assert!(!hub.view().await.contains_key("shared/notes/revoked"));
    let (_, audit) = hub.finish_audited().await;
    assert!(
        audit.iter().any(|l| l["kind"] == "scope_change"
            && l["record"]["edge"] == "mallory"
            && l["record"]["change"] == "revoked"),
        "the revocation is audited"
    );
}

/// The manifest an honest edge signs is what `audit verify` checks: a
/// signed batch accepted here verifies from the trail alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_signed_batches_verify_from_the_audit_trail() {
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    for k in 1..=3 {
        assert_acked(
            &m.push(vec![note(&m, &format!("shared/notes/v{k}"), k)])
                .await,
        );
    }
    let (_, audit) = hub.finish_audited().await;
    let mine: Vec<&Value> = audit
        .iter()
        .filter(|l| l["kind"] == "push_accepted" && l["record"]["identity"] == "mallory")
        .collect();
    assert_eq!(mine.len(), 3);
    for (i, l) in mine.iter().enumerate() {
        let p: outpost::db::AuditPush = serde_json::from_value(l["record"].clone()).unwrap();
        assert_eq!(p.seq, i as u64 + 1);
        let (man, key, _) = BatchManifest::from_audit(&p).unwrap().unwrap();
        assert_eq!(key, keys::public_key("mallory"));
        assert_eq!(man.device, m.db_id);
    }
}
