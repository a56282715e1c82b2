//! A damaged page in the hub's database does not stop replication.

use super::*;

/// A document whose value's overflow pages are damaged in the hub's file
/// (a misdirected write, through the engine's test hook with the hub
/// stopped): the hub starts, an edge syncing from zero receives every other
/// document and goes live, and the hub counts the record as unreadable
/// (`/status`, `/metrics`) and an export of the running hub names it.
/// docs/design.md "One unreadable record never stops the feed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_document_at_the_hub_does_not_stop_an_edge_sync() {
    let tmp = temp_dir("damaged");
    let mut hub = HubProc::new(
        tmp.join("hub"),
        free_port(),
        &edge_toml("laptop", "t", &["notes/"], &["notes/"]),
    );
    hub.kill();
    let text = "x".repeat(30_000);
    hub.import(&format!(
        "{{\"@metadata\":{{\"@id\":\"notes/a\"}},\"n\":1}}\n\
         {{\"@metadata\":{{\"@id\":\"notes/big\"}},\"text\":\"{text}\"}}\n\
         {{\"@metadata\":{{\"@id\":\"notes/b\"}},\"n\":2}}\n"
    ));
    let db = hub.open_db().await;
    db.testing_break_overflow_chain("notes/big", false)
        .await
        .unwrap();
    db.close().await.unwrap();
    hub.start();

    let e = open_edge_db(&tmp.join("edge")).await;
    let c = client(&e, &hub.url(), "laptop", "t");
    wait_live(&c).await;
    wait_until("the edge holds the two readable documents", || async {
        ids(&e, "notes/").await == ["notes/a", "notes/b"]
    })
    .await;
    assert!(e.get("notes/big").await.unwrap().is_none());
    let (_, status) = hub.proc.get("/status");
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let main = v["databases"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["name"] == "main"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(main["unreadable_records"], 1, "{status}");
    assert!(
        hub.metrics()
            .contains("outpost_database_unreadable_records{database=\"main\"} 1"),
        "{}",
        hub.metrics()
    );
    // An export of the running hub has the two others and names the one it
    // left out, with the command that sets it aside.
    let out = Command::new(BIN)
        .current_dir(&hub.dir)
        .args(["--config", "outpost-hub.toml", "export", "-"])
        .env("OUTPOST_HUB_ADMIN_TOKEN", hub.proc.admin_token())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    assert!(
        err.contains("warning: skipped unreadable record \"notes/big\"")
            && err.contains("outpost repair"),
        "{err}"
    );
    c.stop().await;
}
