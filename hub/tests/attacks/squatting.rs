//! Class 3: squatting another edge's entry silently drops honest writes.
//! A database id is bound to the identity that first pushed under it
//! (`db_id_taken` for anyone else), and no one but its owner may raise its
//! entry (`forged_change_vector`), so alice's later edits are never "old
//! news".

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn squatting_alices_entry_on_her_doc_makes_her_later_edits_old_news() {
    let id = "shared/notes/s1";
    let hub = Hub::start();
    let mut alice = hub.alice_writes(id, "Notes", json!({"v": 1})).await;
    let mut m = hub.mallory().await;
    let v = live(
        &[(alice.db_id, 1_000), (m.db_id, 1)],
        &js(json!({"v": "squat"})),
    );
    let r = m.push(vec![doc(id, "Notes", v)]).await;
    assert_refused(&r, "forged_change_vector", id);
    // Alice's legitimate next edit is stored, not acknowledged and dropped.
    assert_acked(&Hub::honest_put(&mut alice, id, "Notes", json!({"v": 2})).await);
    assert_eq!(body(&hub.doc(id).await), json!({"v": 2}));
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn squatting_alices_entry_on_an_id_she_creates_later() {
    let id = "shared/notes/future";
    let hub = Hub::start();
    let mut alice = hub
        .alice_writes("shared/notes/first", "Notes", json!({}))
        .await;
    let mut m = hub.mallory().await;
    let v = live(
        &[(alice.db_id, 500), (m.db_id, 1)],
        &js(json!({"v": "squat"})),
    );
    let r = m.push(vec![doc(id, "Notes", v)]).await;
    assert_refused(&r, "forged_change_vector", id);
    assert_acked(&Hub::honest_put(&mut alice, id, "Notes", json!({"v": "alice"})).await);
    assert_eq!(body(&hub.doc(id).await), json!({"v": "alice"}));
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn squatting_alices_entry_with_a_tombstone_hides_her_later_edit() {
    let id = "shared/notes/s2";
    let hub = Hub::start();
    let mut alice = hub.alice_writes(id, "Notes", json!({"v": 1})).await;
    let mut m = hub.mallory().await;
    let r = m
        .push(vec![doc(
            id,
            "Notes",
            tombstone(&[(alice.db_id, 900), (m.db_id, 1)]),
        )])
        .await;
    assert_refused(&r, "forged_change_vector", id);
    assert_acked(&Hub::honest_put(&mut alice, id, "Notes", json!({"v": 2})).await);
    let d = hub.doc(id).await;
    assert!(!d.versions[0].deleted);
    assert_eq!(body(&d), json!({"v": 2}));
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn squatting_alices_entry_on_a_manual_doc_turns_her_edit_into_a_drop() {
    let id = "shared/cards/s3";
    let hub = Hub::start();
    let mut alice = hub.alice_writes(id, "Cards", json!({"v": 1})).await;
    let mut m = hub.mallory().await;
    let v = live(
        &[(alice.db_id, 3), (m.db_id, 1)],
        &js(json!({"v": "squat"})),
    );
    let r = m.push(vec![doc(id, "Cards", v)]).await;
    assert_refused(&r, "forged_change_vector", id);
    assert_acked(&Hub::honest_put(&mut alice, id, "Cards", json!({"v": 2})).await);
    assert_unchanged(&hub, id, "Cards", json!({"v": 2})).await;
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_stating_alices_db_id_from_another_identity_is_db_id_taken() {
    let hub = Hub::start();
    let alice = hub.alice_writes("shared/notes/a", "Notes", json!({})).await;
    let mut m = hub.connect().await;
    let r = m.hello("mallory", "mallory-token", alice.db_id, 0).await;
    assert_error(&r.expect_err("no Welcome"), "db_id_taken");
    assert!(m.closes().await, "the hub closes the session");
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_stating_the_hubs_own_db_id_is_db_id_taken() {
    let hub = Hub::start();
    let first = hub.hello_only("mallory").await;
    let hub_id = first.hub_db_id();
    first.close().await;
    let mut m = hub.connect().await;
    let r = m.hello("mallory", "mallory-token", hub_id, 0).await;
    assert_error(&r.expect_err("no Welcome"), "db_id_taken");
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_stating_a_db_id_seen_in_a_change_vector_is_db_id_taken() {
    // Alice's db id reaches mallory inside the change vector of a shared
    // document; mallory2 (another identity) claims it as her device.
    let hub = Hub::start();
    hub.alice_writes("shared/notes/cv", "Notes", json!({}))
        .await;
    let m = hub.mallory().await;
    let seen = m.received["shared/notes/cv"].versions[0]
        .change_vector
        .entries()[0]
        .0;
    let mut m2 = hub.connect().await;
    let r = m2.hello("mallory2", "mallory2-token", seen, 0).await;
    assert_error(&r.expect_err("no Welcome"), "db_id_taken");
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_identities_race_to_bind_one_fresh_db_id() {
    // Both say Hello with the same new db id before either pushed; both
    // push. At most one may bind it; the other is refused.
    let hub = Hub::start();
    let shared = new_db_id();
    let mut m1 = hub.connect().await;
    let mut m2 = hub.connect().await;
    let w1 = m1.hello("mallory", "mallory-token", shared, 0).await;
    let w2 = m2.hello("mallory2", "mallory2-token", shared, 0).await;
    let mut acked = 0;
    for (m, w, id) in [
        (&mut m1, w1, "shared/notes/race-1"),
        (&mut m2, w2, "shared/notes/race-2"),
    ] {
        if let Err(e) = &w {
            assert_error(e, "db_id_taken");
            continue;
        }
        let r = m
            .push(vec![doc(id, "Notes", live(&[(shared, 1)], b"{}"))])
            .await;
        match &r {
            Answer::PushAck { .. } => acked += 1,
            r => assert!(
                r.is_rejected("forged_change_vector") || r.is_error("db_id_taken"),
                "{r:?}"
            ),
        }
    }
    assert_eq!(acked, 1, "exactly one identity binds the db id");
    let v = hub.view().await;
    assert_eq!(
        v.keys()
            .filter(|k| k.starts_with("shared/notes/race-"))
            .count(),
        1
    );
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_reconnecting_with_her_own_db_id_is_welcome() {
    // The control case: the owner of a db id may use it again.
    let hub = Hub::start();
    let alice = hub
        .alice_writes("shared/notes/mine", "Notes", json!({}))
        .await;
    let db = alice.db_id;
    alice.close().await;
    let mut again = hub.connect().await;
    again
        .hello("alice", "alice-token", db, 0)
        .await
        .expect("Welcome");
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_stating_alices_db_id_after_a_hub_restart() {
    // The binding of a db id to its identity is stored, not in memory only.
    let mut hub = Hub::start();
    let alice = hub.alice_writes("shared/notes/a", "Notes", json!({})).await;
    let db = alice.db_id;
    alice.close().await;
    hub.restart();
    let mut m = hub.connect().await;
    let r = m.hello("mallory", "mallory-token", db, 0).await;
    assert_error(&r.expect_err("no Welcome"), "db_id_taken");
    hub.finish().await;
}
