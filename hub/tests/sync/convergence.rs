//! Two edges converging after offline edits; the hub killed mid-batch.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_edges_edit_offline_reconnect_and_converge() {
    let tmp = temp_dir("converge");
    let edges = edge_toml("alice", "a-token", &["notes/"], &["notes/"])
        + &edge_toml("bob", "b-token", &["notes/"], &["notes/"]);
    let hub = HubProc::new(tmp.join("hub"), free_port(), &edges);
    let (a, b) = (
        open_edge_db(&tmp.join("alice")).await,
        open_edge_db(&tmp.join("bob")).await,
    );
    let ca = client(&a, &hub.url(), "alice", "a-token");
    let cb = client(&b, &hub.url(), "bob", "b-token");
    wait_live(&ca).await;
    wait_live(&cb).await;
    for i in 0..50 {
        put(
            &a,
            Some(&ca),
            &format!("notes/a{i}"),
            json!({"n": i}),
            "Notes",
        )
        .await;
        put(
            &b,
            Some(&cb),
            &format!("notes/b{i}"),
            json!({"n": i}),
            "Notes",
        )
        .await;
    }
    put(&a, Some(&ca), "notes/card", json!({"v": 0}), "Cards").await;
    wait_until("both edges hold 101 documents", || async {
        a.count().await.unwrap() == 101 && b.count().await.unwrap() == 101
    })
    .await;

    // Offline: both edit the same documents.
    ca.stop().await;
    cb.stop().await;
    put(&a, None, "notes/a1", json!({"by": "alice"}), "Notes").await;
    put(&b, None, "notes/a1", json!({"by": "bob"}), "Notes").await;
    put(&a, None, "notes/card", json!({"v": "alice"}), "Cards").await;
    put(&b, None, "notes/card", json!({"v": "bob"}), "Cards").await;
    b.delete("notes/b2").await.unwrap();
    put(&a, None, "notes/a50", json!({"new": true}), "Notes").await;

    let ca = client(&a, &hub.url(), "alice", "a-token");
    wait_live(&ca).await;
    ca.local_changed();
    // Alice's offline edits reach the hub first, so Bob's arrive last.
    wait_until("alice's three offline edits are at the hub", || async {
        ca.counters()
            .docs_pushed
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    })
    .await;
    let cb = client(&b, &hub.url(), "bob", "b-token");
    wait_live(&cb).await;
    wait_until("the edges converge", || async {
        let (sa, sb) = (state(&a, "notes/").await, state(&b, "notes/").await);
        sa == sb && sa.len() == 102 && sa["notes/card"].2 == 1 && sa["notes/a1"].2 == 0
    })
    .await;
    // `latest`: the version that reached the hub last (bob's) won, and the
    // resolution replicated to both.
    assert_eq!(
        a.get("notes/a1").await.unwrap().unwrap().body,
        json!({"by": "bob"})
    );
    // `manual`: both versions are kept on both edges.
    let card = a.get("notes/card").await.unwrap().unwrap();
    let bodies = [card.body.clone(), card.conflicts[0].body.clone()];
    assert!(bodies.contains(&json!({"v": "alice"})) && bodies.contains(&json!({"v": "bob"})));
    assert_eq!(a.conflicts(None, 10).await.unwrap().len(), 1);
    assert!(a.get("notes/b2").await.unwrap().is_none());
    // Resolving on one edge ends the conflict everywhere.
    let mut r = Batch::new();
    r.resolve("notes/card", Some(json!({"v": "both"})), None);
    a.commit(r).await.unwrap();
    ca.local_changed();
    wait_until("the resolution reaches bob", || async {
        b.conflicts(None, 10).await.unwrap().is_empty()
            && b.get("notes/card").await.unwrap().unwrap().body == json!({"v": "both"})
    })
    .await;
    let m = hub.metrics();
    assert!(m.contains("outpost_edges_connected 2"), "{m}");
    assert!(m.contains("outpost_conflicts_total"), "{m}");
    ca.stop().await;
    cb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_killed_mid_batch_loses_nothing_and_applies_nothing_twice() {
    let tmp = temp_dir("kill");
    let port = free_port();
    let mut hub = HubProc::new(
        tmp.join("hub"),
        port,
        &edge_toml("laptop", "t", &["notes/"], &["notes/"]),
    );
    // Hub -> edge: 6,000 documents imported at the hub.
    let lines: String = (0..6000)
        .map(|i| {
            format!(
                "{{\"@metadata\":{{\"@id\":\"notes/h{i:05}\"}},\"text\":\"{}\"}}\n",
                "x".repeat(900)
            )
        })
        .collect();
    hub.kill();
    hub.import(&lines);
    hub.start();
    let e = open_edge_db(&tmp.join("edge")).await;
    // Edge -> hub: 6,000 local documents.
    let mut b = Batch::new();
    for i in 0..6000 {
        b.put(format!("notes/e{i:05}"), json!({"text": "y".repeat(900)}));
    }
    e.commit(b).await.unwrap();
    let c = client(&e, &hub.url(), "laptop", "t");
    // Kill the hub while batches flow both ways.
    wait_until("some batches in flight", || async {
        c.counters()
            .batches_applied
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    })
    .await;
    hub.kill();
    let got_before = e.count().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    hub.start();
    wait_until("everything arrives", || async {
        e.count().await.unwrap() == 12_000 && matches!(c.status(), SyncStatus::Live)
    })
    .await;
    assert!(
        got_before < 12_000,
        "the kill came too late to test anything"
    );
    // Push side: every batch the hub committed before the kill stays
    // committed with its checkpoint; a batch in flight that was not committed
    // is sent again. (A batch committed just before the kill whose PushAck
    // was lost is not re-sent, so the edge's count of acknowledged documents
    // may stay below 6,000: wait on the hub's own count instead.)
    wait_until("the hub holds the edge's 6,000 documents", || async {
        hub.documents() == 12_000
    })
    .await;
    c.stop().await;
    hub.kill();
    let h = hub.open_db().await;
    assert_eq!(h.count().await.unwrap(), 12_000);
    // Every document was applied exactly once at each end: a re-sent version
    // is recognised by its change vector and not stored again, so the etag
    // counters equal the document counts.
    assert_eq!(
        h.stats().last_etag,
        12_000,
        "a version was applied twice at the hub"
    );
    assert_eq!(
        e.stats().last_etag,
        12_000,
        "a version was applied twice at the edge"
    );
    assert!(h.integrity_check().await.unwrap().is_ok());
    assert!(e.integrity_check().await.unwrap().is_ok());
    assert_eq!(state(&h, "notes/").await, state(&e, "notes/").await);
}
