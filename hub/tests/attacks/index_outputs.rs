//! The output documents of an index the hub runs are the hub's own: a
//! document pushed into the output collection, under its id prefix (in any
//! case, whatever collection it names), or hidden in a batch refuses the
//! batch with `index_output`, and nothing of it is stored; a document of the
//! collection the index maps is taken (the control). The attack hub's index
//! writes its results to the collection `Drop`, whose ids (`drop/…`) lie
//! inside mallory's write prefixes.

use crate::common::*;

const MODULE: &str = r#"export const totals = {
  name: "totals",
  collections: ["Notes"],
  output: "Drop",
  map(d, emit) { emit(d.k ?? "none", 1); },
  reduce(k, values) { return values.reduce((a, b) => a + b, 0); },
};"#;

async fn refused_and_absent(hub: Hub, r: Answer, id: &str, absent: &[&str]) {
    assert_refused(&r, "index_output", id);
    let view = hub.view().await;
    for a in absent {
        assert!(!view.contains_key(*a), "{a} was stored");
    }
    let (_, audit) = hub.finish_audited().await;
    assert!(audit.iter().any(|e| e["kind"] == "push_refused"
        && e["record"]["code"] == "index_output"
        && e["record"]["id"] == id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_in_an_output_collection() {
    let hub = Hub::start_indexed(MODULE);
    let mut m = hub.mallory().await;
    let id = "mallory/forged-total";
    let r = m
        .push(vec![doc(
            id,
            "Drop",
            live(&[(m.db_id, 1)], &js(json!({"value": 1000}))),
        )])
        .await;
    refused_and_absent(hub, r, id, &[id]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_under_an_output_prefix_naming_another_collection() {
    let hub = Hub::start_indexed(MODULE);
    let mut m = hub.mallory().await;
    let id = "drop/a";
    let r = m
        .push(vec![doc(
            id,
            "Notes",
            live(&[(m.db_id, 1)], &js(json!({"k": "x"}))),
        )])
        .await;
    refused_and_absent(hub, r, id, &[id]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_id_in_another_case_with_no_collection() {
    let hub = Hub::start_indexed(MODULE);
    let mut m = hub.mallory().await;
    let id = "DROP/a";
    let r = m
        .push(vec![doc(
            id,
            "",
            live(&[(m.db_id, 1)], &js(json!({"value": 7}))),
        )])
        .await;
    refused_and_absent(hub, r, id, &["drop/a"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_hidden_in_a_batch_refuses_the_whole_batch() {
    let hub = Hub::start_indexed(MODULE);
    let mut m = hub.mallory().await;
    let r = m
        .push(vec![
            doc(
                "mallory/innocent",
                "Notes",
                live(&[(m.db_id, 1)], &js(json!({"k": "a"}))),
            ),
            doc(
                "drop/a",
                "Drop",
                live(&[(m.db_id, 2)], &js(json!({"value": 1000}))),
            ),
        ])
        .await;
    refused_and_absent(hub, r, "drop/a", &["mallory/innocent", "drop/a"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_of_the_mapped_collection_is_accepted() {
    // The control: what the index reads is an ordinary document.
    let hub = Hub::start_indexed(MODULE);
    let mut m = hub.mallory().await;
    let r = m
        .push(vec![doc(
            "mallory/n1",
            "Notes",
            live(&[(m.db_id, 1)], &js(json!({"k": "a"}))),
        )])
        .await;
    assert_acked(&r);
    assert_unchanged(&hub, "mallory/n1", "Notes", json!({"k": "a"})).await;
    hub.finish_audited().await;
}

/// A `hubComputed` index: its output documents are sent to the edges of
/// protocol 9 whose read prefixes cover them (alice reads `drop/`; mallory
/// does not and gets none; alice's protocol 8 device gets none). Alice, who received one and may write `drop/`, pushes it back
/// changed, with a change vector that supersedes the hub's: refused with
/// `index_output`, and the hub's document is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_output_received_then_pushed_back_changed() {
    let shared = MODULE.replace(
        "output: \"Drop\",",
        "output: \"Drop\",\n  hubComputed: true,",
    );
    assert!(shared.contains("hubComputed"));
    let hub = Hub::start_indexed(&shared);
    let mut m = hub.mallory().await;
    let r = m
        .push(vec![doc(
            "mallory/n1",
            "Notes",
            live(&[(m.db_id, 1)], &js(json!({"k": "a"}))),
        )])
        .await;
    assert_acked(&r);
    // The index writes `Drop/a` after the commit: alice's sessions poll for it.
    let mut got = None;
    for _ in 0..100 {
        let a = hub.session_at("alice", 9).await;
        if a.received.contains_key("Drop/a") {
            got = Some(a);
            break;
        }
        a.close().await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut a = got.expect("alice received the shared output Drop/a");
    assert_eq!(body(&a.received["Drop/a"]), json!({"value": 1}));
    // An edge of protocol 8 would not keep it read-only: it is not sent it.
    let old = hub.session_at("alice", 8).await;
    assert!(
        !old.received.contains_key("Drop/a"),
        "sent to a protocol 8 edge"
    );
    old.close().await;
    let m2 = hub.session_at("mallory", 9).await;
    assert!(
        !m2.received
            .keys()
            .any(|k| k.to_lowercase().starts_with("drop/")),
        "a shared output outside mallory's read prefixes reached it: {:?}",
        m2.received.keys()
    );
    let r = Hub::honest_put(&mut a, "Drop/a", "Drop", json!({"value": 1000})).await;
    assert_refused(&r, "index_output", "Drop/a");
    let again = hub.session_at("alice", 9).await;
    assert_eq!(body(&again.received["Drop/a"]), json!({"value": 1}));
    again.close().await;
    hub.finish_audited().await;
}
