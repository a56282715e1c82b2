//! Class 4: the edge chooses the rules. The policy comes from the stored
//! document's collection; a pushed collection (or none) applies only to an
//! informed edit; write-only ids are create-only whatever the policy; a
//! future `last_modified` is clamped to the hub's clock.

use crate::common::*;

/// Mallory (delivered `id`) pushes a version concurrent with the held one,
/// declaring collection `declared`.
async fn concurrent_push(hub: &Hub, id: &str, declared: &str, deleted: bool) -> Answer {
    let mut m = hub.mallory().await;
    assert!(m.received.contains_key(id), "mallory was delivered {id}");
    let v = if deleted {
        tombstone(&[(m.db_id, 1)])
    } else {
        live(&[(m.db_id, 1)], &js(json!({"v": "mallory"})))
    };
    m.push(vec![doc(id, declared, v)]).await
}

async fn manual_doc_keeps_its_conflict(declared: &str) {
    let id = "shared/cards/c";
    let hub = Hub::seeded(&[seed(id, "Cards", json!({"v": "original"}))]);
    let r = concurrent_push(&hub, id, declared, false).await;
    assert_acked(&r);
    let d = hub.doc(id).await;
    assert_eq!(
        d.collection.as_deref(),
        Some("Cards"),
        "the stored collection stays"
    );
    assert_eq!(
        d.versions.len(),
        2,
        "manual: both versions kept, nothing settled"
    );
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_collection_on_a_manual_doc_picks_latest_and_settles_the_conflict() {
    manual_doc_keeps_its_conflict("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_collection_declared_on_a_manual_doc_settles_the_conflict() {
    manual_doc_keeps_its_conflict("Notes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_wins_collection_declared_on_a_manual_doc_settles_the_conflict() {
    manual_doc_keeps_its_conflict("Ledger").await;
}

async fn hub_wins_doc_keeps_the_held_version(declared: &str, deleted: bool) {
    let id = "shared/ledger/l";
    let hub = Hub::seeded(&[seed(id, "Ledger", json!({"v": "original"}))]);
    let r = concurrent_push(&hub, id, declared, deleted).await;
    assert_acked(&r);
    assert_unchanged(&hub, id, "Ledger", json!({"v": "original"})).await;
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_collection_declared_on_a_hub_wins_doc_beats_the_held_version() {
    hub_wins_doc_keeps_the_held_version("Notes", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_collection_on_a_hub_wins_doc_beats_the_held_version() {
    hub_wins_doc_keeps_the_held_version("", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_collection_tombstone_on_a_hub_wins_doc_deletes_it() {
    hub_wins_doc_keeps_the_held_version("", true).await;
}

/// Mallory, write-only on `drop/`, pushes a concurrent version of a
/// document she cannot read.
async fn write_only_blind(id: &str, coll: &str, declared: &str, deleted: bool) {
    let hub = Hub::seeded(&[seed(id, coll, json!({"v": "original"}))]);
    let mut m = hub.mallory().await;
    let v = if deleted {
        tombstone(&[(m.db_id, 1)])
    } else {
        live(&[(m.db_id, 1)], &js(json!({"v": "blind"})))
    };
    let r = m.push(vec![doc(id, declared, v)]).await;
    assert_eq!(
        r.ack_counts(),
        Some((1, 0, 0)),
        "answered exactly like a create: {r:?}"
    );
    assert_unchanged(&hub, id, coll, json!({"v": "original"})).await;
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_only_edge_blindly_overwrites_a_latest_doc() {
    write_only_blind("drop/notes/n", "Notes", "Notes", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_only_edge_blindly_deletes_a_latest_doc() {
    write_only_blind("drop/notes/n", "Notes", "Notes", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_only_edge_declares_latest_to_overwrite_a_manual_doc() {
    write_only_blind("drop/cards/d", "Cards", "Notes", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_only_edge_declares_no_collection_to_overwrite_a_hub_wins_doc() {
    write_only_blind("drop/ledger/d", "Ledger", "", false).await;
}

/// Year 9999, in ms since the Unix epoch.
const FAR_FUTURE: i64 = 253_402_300_799_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn future_last_modified_wins_the_displayed_winner_of_a_manual_conflict() {
    let id = "shared/cards/t";
    let hub = Hub::seeded(&[seed(id, "Cards", json!({"v": "original"}))]);
    let mut m = hub.mallory().await;
    let mut v = live(&[(m.db_id, 1)], &js(json!({"v": "from the future"})));
    v.last_modified_ms = FAR_FUTURE;
    assert_acked(&m.push(vec![doc(id, "Cards", v)]).await);
    // Alice, offline (she never pulled), edits concurrently, after mallory.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let mut a = hub.hello_only("alice").await;
    let va = live(&[(a.db_id, 1)], &js(json!({"v": "alice, later"})));
    assert_acked(&a.push(vec![doc(id, "Cards", va)]).await);
    let d = hub.doc(id).await;
    assert_eq!(d.versions.len(), 3);
    assert_eq!(
        body(&d),
        json!({"v": "alice, later"}),
        "the version that really came last is the displayed winner"
    );
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn future_last_modified_is_stored_as_sent() {
    let id = "shared/notes/future";
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let mut v = live(&[(m.db_id, 1)], b"{}");
    v.last_modified_ms = FAR_FUTURE;
    assert_acked(&m.push(vec![doc(id, "Notes", v)]).await);
    let d = hub.doc(id).await;
    let limit = now_ms() + 60_000;
    assert!(
        d.versions[0].last_modified_ms <= limit,
        "clamped to the hub's clock: {}",
        d.versions[0].last_modified_ms
    );
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn informed_edit_may_move_a_document_to_another_collection() {
    // The control case: an edit of the version mallory was delivered.
    let id = "shared/cards/move";
    let hub = Hub::seeded(&[seed(id, "Cards", json!({"v": "original"}))]);
    let mut m = hub.mallory().await;
    let held = m.received[id].versions[0].change_vector.clone();
    let mut entries = held.entries().to_vec();
    entries.push((m.db_id, 1));
    let r = m
        .push(vec![doc(
            id,
            "Notes",
            live(&entries, &js(json!({"v": "moved"}))),
        )])
        .await;
    assert_acked(&r);
    assert_unchanged(&hub, id, "Notes", json!({"v": "moved"})).await;
    hub.finish().await;
}
