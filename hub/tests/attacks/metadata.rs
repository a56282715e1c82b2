//! Reserved metadata and collection tricks: `@metadata` inside a pushed
//! body never decides the id, collection, change vector, etag, timestamp
//! or flags the hub stores and exports; collection names are checked
//! (`invalid_document`); the stored collection keeps its policy whatever
//! spelling a conflicting version declares.

use crate::common::*;

/// Mallory pushes `shared/notes/m` with `body` (collection `coll`); the
/// hub's answer, then the hub.
async fn push_body(coll: &str, body_v: Value) -> (Hub, Answer) {
    let hub = Hub::start();
    hub.alice_writes("alice/x", "Notes", json!({"by": "alice"}))
        .await;
    let mut m = hub.mallory().await;
    let v = live(&[(m.db_id, 1)], &js(body_v));
    let r = m.push(vec![doc("shared/notes/m", coll, v)]).await;
    (hub, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_metadata_id_claims_another_edges_document_in_the_export() {
    let (hub, r) = push_body(
        "Notes",
        json!({"v": 1, "@metadata": {"@id": "alice/x", "@collection": "Cards"}}),
    )
    .await;
    assert_acked(&r);
    let d = hub.doc("shared/notes/m").await;
    assert_eq!(d.collection.as_deref(), Some("Notes"));
    let export = hub.finish().await;
    assert_eq!(export["alice/x"]["by"], json!("alice"));
    assert_eq!(
        export["shared/notes/m"]["@metadata"]["@id"],
        json!("shared/notes/m")
    );
    assert_eq!(
        export["shared/notes/m"]["@metadata"]["@collection"],
        json!("Notes")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_metadata_change_vector_and_etag_claim_hub_history() {
    let (hub, r) = push_body(
        "Notes",
        json!({"v": 1, "@metadata": {"@change-vector": "AAAAAAAAAAAAAAAAAAAAAA:999999", "@etag": 999999}}),
    )
    .await;
    assert_acked(&r);
    let d = hub.doc("shared/notes/m").await;
    let wire_cv = d.versions[0].change_vector.to_text();
    let export = hub.finish().await;
    let meta = &export["shared/notes/m"]["@metadata"];
    assert_eq!(meta["@change-vector"], json!(wire_cv));
    assert_ne!(meta["@etag"], json!(999999));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_metadata_last_modified_in_year_9999() {
    let (hub, r) = push_body(
        "Notes",
        json!({"v": 1, "@metadata": {"@last-modified": "9999-12-31T23:59:59.999Z"}}),
    )
    .await;
    assert_acked(&r);
    let export = hub.finish().await;
    let lm = export["shared/notes/m"]["@metadata"]["@last-modified"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!lm.starts_with("9999"), "{lm}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_metadata_flags_claim_a_conflict() {
    let (hub, r) = push_body(
        "Notes",
        json!({"v": 1, "@metadata": {"@flags": "Conflicted", "@conflicts": [{"v": 0}]}}),
    )
    .await;
    assert_acked(&r);
    assert_eq!(hub.doc("shared/notes/m").await.versions.len(), 1);
    let export = hub.finish().await;
    assert_eq!(export["shared/notes/m"]["v"], json!(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_metadata_that_is_not_an_object() {
    let (hub, r) = push_body("Notes", json!({"v": 1, "@metadata": 5})).await;
    // Refused, or stored with the export still well-formed.
    assert!(
        matches!(r, Answer::PushAck { .. }) || r.is_rejected("invalid_document"),
        "{r:?}"
    );
    let export = hub.finish().await;
    if let Some(line) = export.get("shared/notes/m") {
        assert_eq!(line["@metadata"]["@id"], json!("shared/notes/m"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_metadata_collection_on_a_manual_doc_picks_latest() {
    let id = "shared/cards/c";
    let hub = Hub::seeded(&[seed(id, "Cards", json!({"v": "original"}))]);
    let mut m = hub.mallory().await;
    let v = live(
        &[(m.db_id, 1)],
        &js(json!({"v": "mallory", "@metadata": {"@collection": "Notes"}})),
    );
    assert_acked(&m.push(vec![doc(id, "", v)]).await);
    let d = hub.doc(id).await;
    assert_eq!(d.collection.as_deref(), Some("Cards"));
    assert_eq!(d.versions.len(), 2, "manual: the conflict is kept");
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_case_spelling_of_a_manual_collection_picks_latest() {
    let id = "shared/cards/c";
    let hub = Hub::seeded(&[seed(id, "Cards", json!({"v": "original"}))]);
    let mut m = hub.mallory().await;
    let v = live(&[(m.db_id, 1)], &js(json!({"v": "mallory"})));
    assert_acked(&m.push(vec![doc(id, "CARDS", v)]).await);
    let d = hub.doc(id).await;
    assert_eq!(d.versions.len(), 2, "manual: the conflict is kept");
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstone_declaring_a_latest_collection_on_a_manual_doc() {
    let id = "shared/cards/c";
    let hub = Hub::seeded(&[seed(id, "Cards", json!({"v": "original"}))]);
    let mut m = hub.mallory().await;
    let v = tombstone(&[(m.db_id, 1)]);
    assert_acked(&m.push(vec![doc(id, "Notes", v)]).await);
    let d = hub.doc(id).await;
    assert_eq!(d.versions.len(), 2, "manual: the conflict is kept");
    assert_eq!(d.collection.as_deref(), Some("Cards"));
    hub.finish().await;
}

async fn collection_refused(coll: &[u8]) {
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let d = RawDoc::new(b"shared/notes/m", coll, &[(m.db_id, 1)], b"{}");
    let r = m.push_raw(&[d]).await;
    assert!(
        r.is_rejected("invalid_document") || r.is_error("protocol"),
        "{r:?}"
    );
    if let Some(id) = r.rejected_id() {
        assert_eq!(id, "shared/notes/m");
    }
    assert!(!hub.view().await.contains_key("shared/notes/m"));
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collection_name_with_a_control_character() {
    collection_refused(b"Cards\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collection_name_of_10000_bytes() {
    collection_refused(&[b'C'; 10_000]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collection_name_with_invalid_utf8() {
    collection_refused(b"Card\xff").await;
}
