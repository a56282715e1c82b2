//! Subject purges (`outpost-hub purge`, protocol 5): once the hub purged a
//! document, no edge brings it back, whatever it pushes: the stale version
//! it held, an edit of it, a fresh vector under the same id (in any case),
//! a deletion of it, or the id hidden in a batch. Each is refused with
//! `purged` and nothing of the batch is stored. An edge that held the
//! document is sent an order naming it by its hash only.

use crate::common::*;

const ID: &str = "shared/patients/p-77/visit";
const OTHER: &str = "shared/patients/p-12/visit";

/// A hub that held the subject's document, mallory's session that was sent
/// it (closed), then the purge (hub restarted). Returns mallory's held
/// version's entries.
async fn purged() -> (Hub, Vec<(DbId, u64)>, DbId) {
    let mut hub = Hub::seeded(&[
        seed(ID, "Visits", json!({"patientId": "p-77", "t": "secret"})),
        seed(OTHER, "Visits", json!({"patientId": "p-12", "t": "kept"})),
    ]);
    let m = hub.mallory().await;
    let held = m.received[ID].versions[0].change_vector.entries().to_vec();
    let db = m.db_id;
    m.close().await;
    let out = hub.purge(&["--field", "patientId=p-77"]);
    assert!(out.contains("purged 1 document of"), "{out}");
    (hub, held, db)
}

async fn refused_and_gone(hub: Hub, r: Answer, id: &str) {
    assert_refused(&r, "purged", id);
    let view = hub.view().await;
    assert!(!view.contains_key(ID), "the purged document is not back");
    assert!(view.contains_key(OTHER));
    let (export, audit) = hub.finish_audited().await;
    assert!(!export.contains_key(ID));
    assert!(
        audit
            .iter()
            .any(|e| e["kind"] == "push_refused" && e["record"]["code"] == "purged")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stale_version_an_edge_held_is_not_taken_back() {
    let (hub, held, db) = purged().await;
    let mut m = hub.device("mallory", db).await;
    let r = m
        .push(vec![doc(
            ID,
            "Visits",
            live(&held, &js(json!({"t": "secret"}))),
        )])
        .await;
    refused_and_gone(hub, r, ID).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_of_a_purged_document_is_refused() {
    let (hub, mut held, db) = purged().await;
    let mut m = hub.device("mallory", db).await;
    held.push((m.db_id, 1));
    let r = m
        .push(vec![doc(
            ID,
            "Visits",
            live(&held, &js(json!({"t": "edited"}))),
        )])
        .await;
    refused_and_gone(hub, r, ID).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_vector_under_a_purged_id_is_refused() {
    let (hub, _, _) = purged().await;
    let mut m = hub.mallory().await;
    let r = m
        .push(vec![doc(
            ID,
            "Visits",
            live(&[(m.db_id, 1)], &js(json!({"t": "new"}))),
        )])
        .await;
    refused_and_gone(hub, r, ID).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_id_in_other_case_is_refused() {
    let (hub, _, _) = purged().await;
    let mut m = hub.mallory().await;
    let upper = ID.to_uppercase().replacen("SHARED/", "shared/", 1);
    let r = m
        .push(vec![doc(
            &upper,
            "Visits",
            live(&[(m.db_id, 1)], &js(json!({"t": "x"}))),
        )])
        .await;
    refused_and_gone(hub, r, &upper).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_of_a_purged_document_is_refused() {
    // A tombstone would store the id again (and its history).
    let (hub, mut held, db) = purged().await;
    let mut m = hub.device("mallory", db).await;
    held.push((m.db_id, 1));
    let r = m.push(vec![doc(ID, "Visits", tombstone(&held))]).await;
    refused_and_gone(hub, r, ID).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_id_hidden_in_a_batch_refuses_the_whole_batch() {
    let (hub, _, _) = purged().await;
    let mut m = hub.mallory().await;
    let r = m
        .push(vec![
            doc(
                "shared/notes/innocent",
                "Notes",
                live(&[(m.db_id, 1)], &js(json!({"n": 1}))),
            ),
            doc(ID, "Visits", live(&[(m.db_id, 2)], &js(json!({"t": "x"})))),
        ])
        .await;
    assert!(!hub.view().await.contains_key("shared/notes/innocent"));
    refused_and_gone(hub, r, ID).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_names_the_purged_id_by_its_hash_only() {
    // Mallory held the document: her next session gets an order naming its
    // hash (never the id); an honest receipt settles it.
    let (hub, _, db) = purged().await;
    let mut m = hub.device("mallory", db).await;
    let o = m.purges.last().cloned().expect("a purge order");
    assert_eq!(o.reason, "purged");
    assert!(o.prefixes.is_empty());
    let want = outpost::db::purged_id_hash(&outpost::doc::id_key(ID));
    assert_eq!(o.ids, vec![want]);
    let receipt = m.purge_receipt(1, [0; 32], None);
    m.send(&receipt).await.unwrap();
    let r = Hub::honest_put(&mut m, "mallory/after", "Notes", json!({"n": 2})).await;
    assert!(matches!(r, Answer::PushAck { .. }), "{r:?}");
    m.close().await;
    let m = hub.device("mallory", db).await;
    assert!(m.purges.is_empty(), "settled: no order any more");
    m.close().await;
    let (_, audit) = hub.finish_audited().await;
    let receipt = audit
        .iter()
        .find(|e| e["kind"] == "purge_receipt")
        .expect("the receipt is recorded");
    assert_eq!(receipt["record"]["markers"], json!([1]));
    let purge = audit
        .iter()
        .find(|e| e["kind"] == "subject_purge")
        .expect("the purge is recorded");
    let text = purge.to_string();
    assert!(!text.contains("p-77") && !text.contains("secret"), "{text}");
}
