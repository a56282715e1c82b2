//! Class 5: existence leaks. For ids an edge may write but not read, the
//! `PushAck` counts never depend on whether the id exists (every such
//! document counts as applied), and an existing document is not changed
//! unless this very device created it.

use crate::common::*;

/// A fresh mallory device pushes `docs` and returns the answer.
async fn push_fresh(hub: &Hub, docs: impl FnOnce(DbId) -> Vec<WireDoc>) -> Answer {
    let mut m = hub.hello_only("mallory").await;
    let d = docs(m.db_id);
    m.push(d).await
}

fn one(id: &str, coll: &str, deleted: bool) -> impl FnOnce(DbId) -> Vec<WireDoc> {
    let (id, coll) = (id.to_string(), coll.to_string());
    move |me| {
        let v = if deleted {
            tombstone(&[(me, 1)])
        } else {
            live(&[(me, 1)], &js(json!({"probe": true})))
        };
        vec![doc(&id, &coll, v)]
    }
}

/// The answers for an existing and an absent id are identical.
async fn probe(coll: &str, deleted: bool) {
    let existing = format!("drop/{}/exists", coll.to_lowercase());
    let absent = format!("drop/{}/absent", coll.to_lowercase());
    let hub = Hub::seeded(&[seed(&existing, coll, json!({"v": "original"}))]);
    let a = push_fresh(&hub, one(&existing, coll, deleted)).await;
    let b = push_fresh(&hub, one(&absent, coll, deleted)).await;
    assert_eq!(b.ack_counts(), Some((1, 0, 0)), "a create: {b:?}");
    assert_eq!(
        a.ack_counts(),
        b.ack_counts(),
        "the answer for an existing id ({a:?}) reveals it exists"
    );
    assert_unchanged(&hub, &existing, coll, json!({"v": "original"})).await;
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_ack_counts_tell_whether_a_write_only_manual_id_exists() {
    probe("Cards", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_ack_counts_tell_whether_a_write_only_latest_id_exists() {
    probe("Notes", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_ack_counts_tell_whether_a_write_only_hub_wins_id_exists() {
    probe("Ledger", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_ack_counts_tell_whether_a_write_only_id_exists() {
    probe("Notes", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_ack_counts_tell_whether_a_write_only_manual_id_exists() {
    probe("Cards", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_counts_tell_how_many_write_only_ids_exist() {
    let ids = ["drop/notes/a", "drop/cards/b", "drop/ledger/c"];
    let hub = Hub::seeded(&[
        seed(ids[0], "Notes", json!({})),
        seed(ids[1], "Cards", json!({})),
        seed(ids[2], "Ledger", json!({})),
    ]);
    let batch = |ids: Vec<String>| {
        move |me: DbId| {
            ids.iter()
                .map(|id| doc(id, "Notes", live(&[(me, 1)], b"{}")))
                .collect::<Vec<_>>()
        }
    };
    let existing: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    let absent: Vec<String> = (0..3).map(|k| format!("drop/notes/none-{k}")).collect();
    let a = push_fresh(&hub, batch(existing)).await;
    let b = push_fresh(&hub, batch(absent)).await;
    assert_eq!(b.ack_counts(), Some((3, 0, 0)));
    assert_eq!(a.ack_counts(), b.ack_counts(), "{a:?} vs {b:?}");
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_variant_of_an_existing_write_only_id_tells_it_exists() {
    let hub = Hub::seeded(&[seed("drop/cards/x", "Cards", json!({"v": "original"}))]);
    let a = push_fresh(&hub, one("DROP/Cards/X", "Cards", false)).await;
    let b = push_fresh(&hub, one("DROP/Cards/Y", "Cards", false)).await;
    assert_eq!(b.ack_counts(), Some((1, 0, 0)));
    assert_eq!(a.ack_counts(), b.ack_counts(), "{a:?} vs {b:?}");
    assert_unchanged(&hub, "drop/cards/x", "Cards", json!({"v": "original"})).await;
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_device_of_the_same_identity_overwrites_a_write_only_doc() {
    // Stored as received from device 1; device 2 of the same identity
    // cannot read it, so it cannot change it either.
    let id = "drop/notes/mine";
    let hub = Hub::start();
    let mut d1 = hub.hello_only("mallory").await;
    assert_acked(&d1.push(one(id, "Notes", false)(d1.db_id)).await);
    let mut d2 = hub.hello_only("mallory").await;
    let v = live(&[(d2.db_id, 1)], &js(json!({"v": "device 2"})));
    let r = d2.push(vec![doc(id, "Notes", v)]).await;
    assert_eq!(r.ack_counts(), Some((1, 0, 0)), "{r:?}");
    assert_unchanged(&hub, id, "Notes", json!({"probe": true})).await;
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_creating_device_may_update_its_own_write_only_doc() {
    // The control case: create-only does not stop the creator's own edits.
    let id = "drop/notes/own";
    let hub = Hub::start();
    let mut d = hub.hello_only("mallory").await;
    assert_acked(&d.push(one(id, "Notes", false)(d.db_id)).await);
    let v = live(&[(d.db_id, 2)], &js(json!({"v": 2})));
    assert_eq!(
        d.push(vec![doc(id, "Notes", v)]).await.ack_counts(),
        Some((1, 0, 0))
    );
    assert_unchanged(&hub, id, "Notes", json!({"v": 2})).await;
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_only_probe_with_the_hubs_etag_tells_whether_an_id_exists() {
    // Same probe, but the vector carries the hub's entry from Welcome: the
    // answer may be a refusal, but then the same for both ids.
    let hub = Hub::seeded(&[seed("drop/cards/x", "Cards", json!({"v": "original"}))]);
    let mut answers = Vec::new();
    for id in ["drop/cards/x", "drop/cards/nothing-here"] {
        let mut m = hub.hello_only("mallory").await;
        let v = live(&[(m.hub_db_id(), m.hub_last_etag()), (m.db_id, 1)], b"{}");
        let r = m.push(vec![doc(id, "Cards", v)]).await;
        answers.push(match r {
            Answer::PushRejected { code, .. } => format!("rejected {code}"),
            other => format!("{:?}", other.ack_counts()),
        });
    }
    assert_eq!(answers[0], answers[1]);
    assert_unchanged(&hub, "drop/cards/x", "Cards", json!({"v": "original"})).await;
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_overwrite_of_a_write_only_id_goes_uncounted() {
    // The operator sees what the edge cannot: the metric reason create_only.
    let admin = format!(
        "[admin]\ntoken_sha256 = {:?}\n",
        outpost_hub::config::token_sha256_hex("admin-secret")
    );
    let hub = Hub::start_with(
        &[seed("drop/notes/x", "Notes", json!({"v": "original"}))],
        &admin,
    );
    let r = push_fresh(&hub, one("drop/notes/x", "Notes", false)).await;
    assert_eq!(r.ack_counts(), Some((1, 0, 0)), "{r:?}");
    let (code, metrics) = hub.get_with("/metrics", Some("admin-secret"));
    assert_eq!(code, 200);
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("create_only") && !l.starts_with('#')),
        "no create_only count in the metrics"
    );
    assert_unchanged(&hub, "drop/notes/x", "Notes", json!({"v": "original"})).await;
    hub.finish().await;
}
