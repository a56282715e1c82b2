//! Write safety `replicated` with real processes (issue "Deletes that mean
//! something" §4): a native edge writes locally, then waits for the real
//! hub's acknowledgement; a write the hub refuses says why; with the hub
//! down the wait times out with `not_replicated`, the write stays stored
//! locally and replicates once the hub is back.

mod common;

use std::time::Duration;

use common::*;
use outpost_client::NotReplicated;
use outpost_testkit::hub::{free_port, wait_until};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_write_resolves_once_the_hub_has_it() {
    let tmp = temp_dir("safety");
    let edges = edge_toml("alice", "", &["notes/", "secrets/"], &["notes/"])
        + &edge_toml("bob", "", &["notes/"], &[]);
    let mut hub = HubProc::new(tmp.join("hub"), free_port(), &edges);
    let adb = open_edge_db(&tmp.join("alice")).await;
    let bdb = open_edge_db(&tmp.join("bob")).await;
    let ca = client(&adb, &hub.url(), "alice", "");
    let cb = client(&bdb, &hub.url(), "bob", "");
    wait_live(&ca).await;
    wait_live(&cb).await;

    // Online: resolves once the hub acknowledged it; by then the hub holds
    // it (bob gets it from there).
    let w = adb.put("notes/1", json!({ "n": 1 })).await.unwrap();
    ca.replicated(&w, Duration::from_secs(30)).await.unwrap();
    assert!(ca.acked_upto() >= w.etag);
    wait_until("bob has notes/1", || async {
        bdb.get("notes/1").await.unwrap().is_some()
    })
    .await;

    // Refused by the hub (outside alice's write prefixes): the reason, and
    // the write stays stored locally.
    let w = adb.put("secrets/1", json!({ "n": 2 })).await.unwrap();
    match ca.replicated(&w, Duration::from_secs(30)).await {
        Err(e @ NotReplicated::Refused { .. }) => {
            assert_eq!(e.code(), "write_denied", "{e}");
            assert!(e.to_string().contains("stored locally"), "{e}");
        }
        other => panic!("expected a refusal: {other:?}"),
    }
    assert!(adb.get("secrets/1").await.unwrap().is_some());

    // The hub is down: a timeout that says the write is kept and will
    // replicate; it does once the hub is back.
    hub.kill();
    let w = adb.put("notes/2", json!({ "n": 3 })).await.unwrap();
    let e = ca
        .replicated(&w, Duration::from_millis(500))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "not_replicated");
    assert!(e.to_string().contains("stored locally"), "{e}");
    assert!(e.to_string().contains("will replicate"), "{e}");
    assert!(adb.get("notes/2").await.unwrap().is_some());
    hub.start();
    ca.replicated(&w, Duration::from_secs(60)).await.unwrap();
    wait_until("bob has notes/2", || async {
        bdb.get("notes/2").await.unwrap().is_some()
    })
    .await;
    ca.stop().await;
    cb.stop().await;
}
