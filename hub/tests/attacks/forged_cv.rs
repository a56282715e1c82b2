//! Class 2: forged change vectors overwrite data. The hub's own entry may
//! not exceed what this session was delivered, and an entry for another
//! database may not exceed the hub's high-water mark for it
//! (`forged_change_vector`); write-only ids are create-only.

use crate::common::*;

const ORIGINAL: fn() -> Value = || json!({"secret": "original"});

/// A hub holding `id` (imported: its vector is the hub's entry alone).
fn hub_with(id: &str, coll: &str) -> Hub {
    Hub::seeded(&[seed(id, coll, ORIGINAL())])
}

/// Mallory, write-only on `drop/`, copies the hub's db id and last etag
/// from `Welcome` and bumps her own entry.
async fn write_only_copy_of_hub_etag(id: &str, coll: &str, delete: bool) {
    let hub = hub_with(id, coll);
    let mut m = hub.mallory().await;
    let entries = [(m.hub_db_id(), m.hub_last_etag()), (m.db_id, 1)];
    let v = if delete {
        tombstone(&entries)
    } else {
        live(&entries, &js(json!({"secret": "pwned"})))
    };
    let a = m.push(vec![doc(id, coll, v)]).await;
    assert_refused_or_create_ack(&a, "forged_change_vector", id);
    assert_unchanged(&hub, id, coll, ORIGINAL()).await;
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_only_edge_copies_hub_etag_and_overwrites_manual_doc() {
    write_only_copy_of_hub_etag("drop/cards/secret", "Cards", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_only_edge_copies_hub_etag_and_overwrites_hub_wins_doc() {
    write_only_copy_of_hub_etag("drop/ledger/secret", "Ledger", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_only_edge_copies_hub_etag_and_overwrites_latest_doc() {
    write_only_copy_of_hub_etag("drop/notes/secret", "Notes", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_only_edge_copies_hub_etag_and_deletes_manual_doc() {
    write_only_copy_of_hub_etag("drop/cards/secret", "Cards", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_only_edge_copies_hub_etag_and_deletes_hub_wins_doc() {
    write_only_copy_of_hub_etag("drop/ledger/secret", "Ledger", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_only_edge_states_a_full_pull_checkpoint_and_overwrites_manual_doc() {
    // The pull checkpoint in Hello names the hub database and its last etag,
    // as if everything had been delivered: still create-only for drop/.
    let id = "drop/cards/secret";
    let hub = hub_with(id, "Cards");
    let first = hub.hello_only("mallory").await;
    let (hub_id, last) = (first.hub_db_id(), first.hub_last_etag());
    first.close().await;
    let mut m = hub.connect().await;
    let mut hello = Hostile::hello_frame("mallory", "mallory-token", new_db_id(), last);
    if let Frame::Hello { checkpoint_hub, .. } = &mut hello {
        *checkpoint_hub = hub_id;
    }
    m.hello_with(hello).await.expect("Welcome");
    let v = live(
        &[(hub_id, last), (m.db_id, 1)],
        &js(json!({"secret": "pwned"})),
    );
    let a = m.push(vec![doc(id, "Cards", v)]).await;
    assert_refused_or_create_ack(&a, "forged_change_vector", id);
    assert_unchanged(&hub, id, "Cards", ORIGINAL()).await;
    hub.finish().await;
}

/// Mallory may read `shared/` but claims the hub's last etag without having
/// acknowledged it (`pull`: whether she reads the Changes at all).
async fn reader_claims_undelivered_hub_etag(pull: bool) {
    let id = "shared/cards/c";
    let hub = hub_with(id, "Cards");
    let mut m = hub.hello_only("mallory").await;
    if pull {
        m.pull(false).await.expect("Changes then Live");
        assert!(m.received.contains_key(id), "mallory was sent {id}");
    }
    // Nothing is ever acknowledged, not even while waiting for the answer.
    m.auto_ack = false;
    let entries = [(m.hub_db_id(), m.hub_last_etag()), (m.db_id, 1)];
    let a = m
        .push(vec![doc(
            id,
            "Cards",
            live(&entries, &js(json!({"secret": "pwned"}))),
        )])
        .await;
    assert_refused_any(&a, &["forged_change_vector", "unseen_version"], id);
    assert_unchanged(&hub, id, "Cards", ORIGINAL()).await;
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_that_never_pulled_copies_hub_etag_and_overwrites_manual_doc() {
    reader_claims_undelivered_hub_etag(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_that_received_but_never_acked_copies_hub_etag_and_overwrites_manual_doc() {
    reader_claims_undelivered_hub_etag(true).await;
}

/// Alice writes `id`; mallory, who may read it, claims `alice_etag` for
/// alice's db id and her own entry.
async fn claim_alices_entry(id: &str, coll: &str, alice_etag: u64) -> (Hub, Answer) {
    let hub = Hub::start();
    let a = hub.alice_writes(id, coll, json!({"by": "alice"})).await;
    let alice = a.db_id;
    a.close().await;
    let mut m = hub.mallory().await;
    assert!(m.received.contains_key(id), "mallory was delivered {id}");
    let v = live(
        &[(alice, alice_etag), (m.db_id, 1)],
        &js(json!({"by": "mallory"})),
    );
    let r = m.push(vec![doc(id, coll, v)]).await;
    (hub, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_edges_db_id_claimed_at_a_huge_etag_overwrites_her_manual_doc() {
    let id = "shared/cards/a1";
    let (hub, r) = claim_alices_entry(id, "Cards", 1_000_000).await;
    assert_refused(&r, "forged_change_vector", id);
    assert_unchanged(&hub, id, "Cards", json!({"by": "alice"})).await;
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_edges_db_id_claimed_at_a_huge_etag_overwrites_her_hub_wins_doc() {
    let id = "shared/ledger/a1";
    let (hub, r) = claim_alices_entry(id, "Ledger", u64::MAX).await;
    assert_refused(&r, "forged_change_vector", id);
    assert_unchanged(&hub, id, "Ledger", json!({"by": "alice"})).await;
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_edges_db_id_claimed_one_above_its_high_water_mark() {
    let id = "shared/cards/a2";
    let (hub, r) = claim_alices_entry(id, "Cards", 2).await;
    assert_refused(&r, "forged_change_vector", id);
    assert_unchanged(&hub, id, "Cards", json!({"by": "alice"})).await;
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_edges_entry_at_its_high_water_mark_is_an_informed_edit_not_a_forgery() {
    // The control case: what mallory was delivered, she may supersede.
    let id = "shared/cards/a3";
    let (hub, r) = claim_alices_entry(id, "Cards", 1).await;
    assert_acked(&r);
    let d = hub.doc(id).await;
    assert_eq!(d.versions.len(), 1);
    assert_eq!(body(&d), json!({"by": "mallory"}));
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_db_id_with_a_high_etag_on_a_new_document() {
    let id = "shared/notes/invented";
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let v = live(&[(new_db_id(), 5_000), (m.db_id, 1)], b"{}");
    let r = m.push(vec![doc(id, "Notes", v)]).await;
    assert_refused(&r, "forged_change_vector", id);
    assert!(!hub.view().await.contains_key(id));
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_entry_one_above_the_hubs_last_etag() {
    let id = "shared/cards/c";
    let hub = hub_with(id, "Cards");
    let mut m = hub.mallory().await;
    let v = live(
        &[(m.hub_db_id(), m.hub_last_etag() + 1), (m.db_id, 1)],
        b"{}",
    );
    let r = m.push(vec![doc(id, "Cards", v)]).await;
    assert_refused(&r, "forged_change_vector", id);
    assert_unchanged(&hub, id, "Cards", ORIGINAL()).await;
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_entry_at_u64_max() {
    let id = "shared/cards/c";
    let hub = hub_with(id, "Cards");
    let mut m = hub.mallory().await;
    let v = live(&[(m.hub_db_id(), u64::MAX), (m.db_id, 1)], b"{}");
    let r = m.push(vec![doc(id, "Cards", v)]).await;
    assert_refused(&r, "forged_change_vector", id);
    assert_unchanged(&hub, id, "Cards", ORIGINAL()).await;
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_forged_document_refuses_the_whole_batch() {
    let id = "shared/cards/a4";
    let hub = Hub::start();
    let a = hub.alice_writes(id, "Cards", json!({"by": "alice"})).await;
    let alice = a.db_id;
    a.close().await;
    let mut m = hub.mallory().await;
    let ok = doc(
        "shared/notes/innocent",
        "Notes",
        live(&[(m.db_id, 1)], b"{}"),
    );
    let bad = doc(
        id,
        "Cards",
        live(&[(alice, 99), (m.db_id, 2)], &js(json!({"by": "mallory"}))),
    );
    let r = m.push(vec![ok, bad]).await;
    assert_refused(&r, "forged_change_vector", id);
    let v = hub.view().await;
    assert!(
        !v.contains_key("shared/notes/innocent"),
        "nothing of the batch is stored"
    );
    assert_eq!(body(&v[id]), json!({"by": "alice"}));
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_entry_in_a_conflict_version_of_a_manual_doc() {
    // The forged vector hides in the second version of a two-version doc.
    let id = "shared/cards/a5";
    let hub = Hub::start();
    let a = hub.alice_writes(id, "Cards", json!({"by": "alice"})).await;
    let alice = a.db_id;
    a.close().await;
    let mut m = hub.mallory().await;
    let versions = vec![
        live(&[(m.db_id, 1)], &js(json!({"by": "mallory"}))),
        live(&[(alice, 7_777)], &js(json!({"by": "mallory too"}))),
    ];
    let r = m.push(vec![docv(id, "Cards", versions)]).await;
    assert_refused(&r, "forged_change_vector", id);
    assert_unchanged(&hub, id, "Cards", json!({"by": "alice"})).await;
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_edges_db_id_claimed_above_its_high_water_mark_after_a_hub_restart() {
    // The high-water marks are stored, not kept in memory only.
    let id = "shared/cards/a6";
    let mut hub = Hub::start();
    let a = hub.alice_writes(id, "Cards", json!({"by": "alice"})).await;
    let alice = a.db_id;
    a.close().await;
    hub.restart();
    let mut m = hub.mallory().await;
    let v = live(&[(alice, 2), (m.db_id, 1)], &js(json!({"by": "mallory"})));
    let r = m.push(vec![doc(id, "Cards", v)]).await;
    assert_refused(&r, "forged_change_vector", id);
    assert_unchanged(&hub, id, "Cards", json!({"by": "alice"})).await;
    hub.finish().await;
}
