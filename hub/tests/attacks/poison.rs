//! Class 1: one push stops replication for everyone. Versions per document
//! and change-vector entries must be capped before they are stored
//! (`too_many_versions`, `change_vector_too_large`), so no record the feed
//! cannot decode is ever written.

use crate::common::*;

/// `n` new devices of mallory each push one version of `id` concurrent
/// with everything else (its own entry only); the answers, in order.
async fn flood(hub: &Hub, id: &str, coll: &str, n: usize, deleted: bool) -> Vec<Answer> {
    let mut out = Vec::new();
    for k in 0..n {
        // A device that never pulls: it only pushes.
        let mut m = hub.hello_only("mallory").await;
        let v = if deleted {
            tombstone(&[(m.db_id, 1)])
        } else {
            live(&[(m.db_id, 1)], &js(json!({"flood": k})))
        };
        out.push(m.push(vec![doc(id, coll, v)]).await);
        m.close().await;
    }
    out
}

/// Asserts the first 31 pushes were acknowledged and the 32nd (a 33rd
/// version) refused with `too_many_versions` naming `id`.
fn assert_capped_at_32(answers: &[Answer], id: &str) {
    for (k, a) in answers.iter().take(31).enumerate() {
        assert!(
            matches!(a, Answer::PushAck { .. }),
            "push {k} (version {}): {a:?}",
            k + 2
        );
    }
    assert_refused(&answers[31], "too_many_versions", id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_flood_of_33_devices_on_a_manual_doc_is_capped_at_32_versions() {
    let id = "shared/cards/c1";
    let hub = Hub::seeded(&[seed(id, "Cards", json!({"v": "original"}))]);
    let answers = flood(&hub, id, "Cards", 32, false).await;
    assert_capped_at_32(&answers, id);
    let d = hub.doc(id).await;
    assert_eq!(d.versions.len(), 32, "the document holds 32 versions");
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_flood_of_tombstones_on_a_manual_doc_is_capped_at_32_versions() {
    let id = "shared/cards/c2";
    let hub = Hub::seeded(&[seed(id, "Cards", json!({"v": "original"}))]);
    let answers = flood(&hub, id, "Cards", 32, true).await;
    assert_capped_at_32(&answers, id);
    assert_eq!(hub.doc(id).await.versions.len(), 32);
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_flood_past_the_cap_leaves_a_feed_that_survives_a_restart() {
    let id = "shared/cards/c3";
    let mut hub = Hub::seeded(&[seed(id, "Cards", json!({"v": "original"}))]);
    let answers = flood(&hub, id, "Cards", 40, false).await;
    assert_capped_at_32(&answers, id);
    for a in &answers[32..] {
        assert_refused(a, "too_many_versions", id);
    }
    hub.restart();
    assert_eq!(hub.doc(id).await.versions.len(), 32);
    let export = hub.finish().await;
    assert!(export.contains_key(id), "export holds {id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_push_of_32_known_versions_onto_a_held_manual_doc_is_refused() {
    // 32 devices of mallory each push a document of their own first (so the
    // hub knows their db ids at etag 1); then one of them pushes the manual
    // document with 32 versions, one per device: with the held version, 33.
    let id = "shared/cards/c4";
    let hub = Hub::seeded(&[seed(id, "Cards", json!({"v": "original"}))]);
    let mut devices = Vec::new();
    for k in 0..32 {
        let mut m = hub.hello_only("mallory").await;
        let own = format!("mallory/dev-{k}");
        let a = m
            .push(vec![doc(&own, "Notes", live(&[(m.db_id, 1)], b"{}"))])
            .await;
        assert_acked(&a);
        devices.push(m.db_id);
        m.close().await;
    }
    let mut m = hub.device("mallory", devices[0]).await;
    let versions = devices
        .iter()
        .enumerate()
        .map(|(k, d)| live(&[(*d, 1)], &js(json!({"k": k}))))
        .collect();
    let a = m.push(vec![docv(id, "Cards", versions)]).await;
    assert_refused(&a, "too_many_versions", id);
    let d = hub.doc(id).await;
    assert_eq!(d.versions.len(), 1);
    assert_eq!(body(&d), json!({"v": "original"}));
    hub.finish().await;
}

/// A version whose change vector has `n` entries: mallory's own and
/// `n - 1` made-up database ids.
fn wide_version(own: DbId, n: usize) -> RawVer {
    let mut entries: Vec<([u8; 16], u64)> = (1..n).map(|_| (new_db_id().0, 1)).collect();
    entries.push((own.0, 1));
    entries.sort();
    RawVer {
        flags: 0,
        last_modified_ms: now_ms(),
        cv: entries,
        cv_count: None,
        body: js(json!({"wide": true})),
    }
}

async fn wide_cv_attack(coll: &str) {
    let id = format!("shared/{}/w", coll.to_lowercase());
    let hub = Hub::seeded(&[seed(&id, coll, json!({"v": "original"}))]);
    let mut m = hub.mallory().await;
    let d = RawDoc {
        id: id.clone().into_bytes(),
        collection: coll.as_bytes().to_vec(),
        version_count: None,
        versions: vec![wide_version(m.db_id, 4096)],
    };
    let a = m.push_raw(&[d]).await;
    // Made-up db ids are forged; were they not, the hub's resolution would
    // extend the vector past 4,096 entries. Either way nothing is stored.
    assert_refused_any(
        &a,
        &["change_vector_too_large", "forged_change_vector"],
        &id,
    );
    let held = hub.doc(&id).await;
    assert_eq!(body(&held), json!({"v": "original"}));
    assert!(held.versions[0].change_vector.len() < 4096);
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_of_4096_entries_that_a_latest_resolution_would_extend_is_refused() {
    wide_cv_attack("Notes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_of_4096_entries_that_a_hub_wins_resolution_would_extend_is_refused() {
    wide_cv_attack("Ledger").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_of_4096_entries_in_a_manual_conflict_is_refused() {
    wide_cv_attack("Cards").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_of_4097_entries_is_refused_before_anything_is_stored() {
    let id = "shared/notes/w2";
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let d = RawDoc {
        id: id.as_bytes().to_vec(),
        collection: b"Notes".to_vec(),
        version_count: None,
        versions: vec![wide_version(m.db_id, 4097)],
    };
    let a = m.push_raw(&[d]).await;
    // The decoder or the checks refuse it; either way the session says so.
    assert!(
        a.is_rejected("invalid_change_vector") || a.is_error("protocol"),
        "{a:?}"
    );
    assert!(!hub.view().await.contains_key(id));
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_concurrent_versions_are_kept_and_delivered_to_every_reader() {
    // The boundary: 32 versions are legal, stored, and decode for readers.
    let id = "shared/cards/c5";
    let hub = Hub::seeded(&[seed(id, "Cards", json!({"v": "original"}))]);
    let answers = flood(&hub, id, "Cards", 31, false).await;
    for a in &answers {
        assert_acked(a);
    }
    assert_eq!(hub.doc(id).await.versions.len(), 32);
    let export = hub.finish().await;
    assert!(export.contains_key(id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_13_mib_concurrent_versions_of_a_manual_doc_are_refused_as_too_large() {
    // Each version is within the 16 MiB body limit; kept together as a
    // conflict they would exceed 24 MiB: a document that no longer fits one
    // replication frame would stop the feed for every reader behind it.
    let id = "shared/cards/big";
    let hub = Hub::seeded(&[seed(id, "Cards", json!({"v": "original"}))]);
    let big = |k: usize| js(json!({"k": k, "pad": "x".repeat(13 << 20)}));
    let mut answers = Vec::new();
    for k in 0..2 {
        let mut m = hub.hello_only("mallory").await;
        // Take what the hub sends first (the document, 13 MiB once the first
        // version is in): a client that reads nothing stalls its own session.
        m.pull(true).await.expect("the initial changes");
        answers.push(
            m.push(vec![doc(id, "Cards", live(&[(m.db_id, 1)], &big(k)))])
                .await,
        );
        m.close().await;
    }
    assert_acked(&answers[0]);
    assert_refused(&answers[1], "document_too_large", id);
    assert_eq!(
        hub.doc(id).await.versions.len(),
        2,
        "nothing of the refused push is kept"
    );
    hub.finish().await;
}
