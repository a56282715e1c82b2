//! Replication with real processes: a real `outpost-hub` process on
//! 127.0.0.1 and real WebSocket clients (the native edge client over real
//! file-backed databases). Bounded waits everywhere; hub processes are
//! killed on drop.
//!
//! - two native edges editing offline, reconnecting, converging (conflicts
//!   settled by `latest` and kept by `manual`);
//! - the hub killed (SIGKILL) mid-batch in both directions and restarted:
//!   nothing acknowledged lost, nothing applied twice;
//! - the clinics case: Boston and Chicago hubs as edges of a cloud hub;
//! - write-prefix rejections: typed, recorded by the edge, nothing stored;
//! - narrowing and revoking an edge in the configuration, without a restart;
//! - garbage frames: they end only that session;
//! - a hub database replaced: its edges resync from zero;
//! - devices of one identity (two devices, a wiped one, a replaced one) and
//!   a read-only edge that gets no rejection for a conflict it did not make.
//!
//! The hub processes are `outpost_testkit::hub::HubProcess`es.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use outpost::sync::{EdgeConfig, SyncStatus};
use outpost::{Batch, PutOptions};
use outpost_client::{ClientOptions, client_rejections, spawn_edge};
use outpost_testkit::hub::{free_port, wait_until};
use outpost_testkit::keys;
use serde_json::json;

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

/// An `[[edge]]` entry marked as a relay (a hub pushing its own edges' writes).
fn relay(edge: String) -> String {
    format!("{}\nrelay = true\n\n", edge.trim_end())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clinics_share_only_their_own_data_through_the_cloud() {
    let tmp = temp_dir("clinics");
    let cloud_port = free_port();
    let mut cloud = HubProc::new(
        tmp.join("cloud"),
        cloud_port,
        // The clinics' hubs relay their own edges' writes (`relay = true`:
        // they may introduce the database ids of the laptops behind them).
        &(relay(edge_toml(
            "boston",
            "bos",
            &["patients/boston/", "shared/"],
            &["patients/boston/"],
        )) + &relay(edge_toml(
            "chicago",
            "chi",
            &["patients/chicago/", "shared/"],
            &["patients/chicago/"],
        )) + &edge_toml("office", "off", &["*"], &["shared/"])),
    );
    // Each clinic's hub proves its identity at the cloud with its key file.
    let upstream = |who: &str, _token: &str| {
        let dir = tmp.join(who);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("{who}.key"));
        if !file.exists() {
            keys::key_for(who).save(&file).unwrap();
        }
        format!(
            "[[upstream]]\ndatabase = \"main\"\nurl = \"ws://127.0.0.1:{cloud_port}/sync\"\nidentity = {who:?}\nkey_file = \"{who}.key\"\n\n"
        )
    };
    let boston = HubProc::new(
        tmp.join("boston"),
        free_port(),
        &(edge_toml(
            "bos-laptop",
            "l1",
            &["patients/boston/", "shared/"],
            &["patients/boston/"],
        ) + &upstream("boston", "bos")),
    );
    let chicago = HubProc::new(
        tmp.join("chicago"),
        free_port(),
        &(edge_toml(
            "chi-laptop",
            "l2",
            &["patients/chicago/", "shared/", "patients/boston/"],
            &["patients/chicago/", "patients/boston/"],
        ) + &upstream("chicago", "chi")),
    );
    let bl = open_edge_db(&tmp.join("bl")).await;
    let cl = open_edge_db(&tmp.join("cl")).await;
    let office = open_edge_db(&tmp.join("office")).await;
    let cbl = client(&bl, &boston.url(), "bos-laptop", "l1");
    let ccl = client(&cl, &chicago.url(), "chi-laptop", "l2");
    let coff = client(&office, &cloud.url(), "office", "off");
    for c in [&cbl, &ccl, &coff] {
        wait_live(c).await;
    }
    put(
        &bl,
        Some(&cbl),
        "patients/boston/p1",
        json!({"name": "Ann"}),
        "Patients",
    )
    .await;
    put(
        &cl,
        Some(&ccl),
        "patients/chicago/p1",
        json!({"name": "Bo"}),
        "Patients",
    )
    .await;
    put(
        &office,
        Some(&coff),
        "shared/formulary",
        json!({"v": 1}),
        "Shared",
    )
    .await;
    wait_until(
        "each laptop gets its clinic's data and the shared data",
        || async {
            bl.get("shared/formulary").await.unwrap().is_some()
                && cl.get("shared/formulary").await.unwrap().is_some()
                && office.get("patients/boston/p1").await.unwrap().is_some()
                && office.get("patients/chicago/p1").await.unwrap().is_some()
        },
    )
    .await;
    // Chicago's hub's own edge may write patients/boston/ locally (its own
    // rules), but the cloud refuses it from Chicago: Boston never sees it.
    put(
        &cl,
        Some(&ccl),
        "patients/boston/evil",
        json!({"x": 1}),
        "Patients",
    )
    .await;
    wait_until(
        "the cloud refuses Chicago's write to Boston's prefix",
        || async {
            cloud
                .metrics()
                .contains("outpost_rejections_total{reason=\"write_denied\"} 1")
        },
    )
    .await;
    // Boston keeps working while the cloud is down, and catches up after.
    cloud.kill();
    put(
        &bl,
        Some(&cbl),
        "patients/boston/p2",
        json!({"name": "Cy"}),
        "Patients",
    )
    .await;
    wait_until("Boston's hub takes the write offline", || async {
        state(&bl, "patients/boston/p2").await.len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    cloud.start();
    wait_until("the cloud catches up with Boston", || async {
        office.get("patients/boston/p2").await.unwrap().is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Scope: nothing of Chicago in Boston, nothing of Boston in Chicago's
    // laptop but what it wrote itself, and the forged write nowhere else.
    assert!(state(&bl, "patients/chicago/").await.is_empty());
    assert!(bl.get("patients/boston/evil").await.unwrap().is_none());
    assert!(office.get("patients/boston/evil").await.unwrap().is_none());
    assert!(cl.get("patients/boston/p1").await.unwrap().is_none());
    for c in [cbl, ccl, coff] {
        c.stop().await;
    }
    drop(boston);
    drop(chicago);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_outside_the_write_prefixes_are_rejected_and_recorded() {
    let tmp = temp_dir("reject");
    let hub = HubProc::new(
        tmp.join("hub"),
        free_port(),
        &edge_toml("dr7", "t", &["patients/dr-7/"], &["patients/dr-7/"]),
    );
    let e = open_edge_db(&tmp.join("e")).await;
    let c = client(&e, &hub.url(), "dr7", "t");
    wait_live(&c).await;
    put(&e, Some(&c), "patients/dr-7/a", json!({"ok": 1}), "P").await;
    put(&e, Some(&c), "patients/dr-8/a", json!({"no": 1}), "P").await;
    put(&e, Some(&c), "Patients/DR-70/b", json!({"no": 2}), "P").await;
    put(
        &e,
        Some(&c),
        "patients/dr-7/../dr-8/c",
        json!({"no": 3}),
        "P",
    )
    .await;
    put(&e, Some(&c), "patients/dr-7/b", json!({"ok": 2}), "P").await;
    let edge = edge_cfg("dr7", "t");
    wait_until("three rejections recorded", || async {
        client_rejections(&e, &edge).await.unwrap().len() == 3
    })
    .await;
    let rej = client_rejections(&e, &edge).await.unwrap();
    let codes: Vec<(&str, &str)> = rej
        .iter()
        .map(|r| (r.id.as_str(), r.code.as_str()))
        .collect();
    assert!(
        codes.contains(&("patients/dr-8/a", "write_denied")),
        "{rej:?}"
    );
    assert!(
        codes.contains(&("Patients/DR-70/b", "write_denied")),
        "{rej:?}"
    );
    assert!(
        codes.contains(&("patients/dr-7/../dr-8/c", "invalid_id")),
        "{rej:?}"
    );
    assert!(
        rej.iter()
            .all(|r| !r.rule.is_empty() && !r.message.is_empty())
    );
    // The allowed documents got through (the hub stored nothing else; that
    // the edge never retries a refused version is checked in
    // crate/tests/sync_machines/).
    wait_until("the two allowed documents are at the hub", || async {
        hub.metrics().contains("outpost_documents_received_total 2")
    })
    .await;
    c.stop().await;
    drop(hub);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrowing_and_revoking_take_effect_without_a_restart() {
    let tmp = temp_dir("revoke");
    let admin = edge_toml("admin", "adm", &["*"], &["*"]);
    let wide = edge_toml("lap", "l", &["notes/", "private/"], &["notes/"]);
    let hub = HubProc::new(tmp.join("hub"), free_port(), &(admin.clone() + &wide));
    let cfg_path = hub.dir.join("outpost-hub.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    let adb = open_edge_db(&tmp.join("admin")).await;
    let ldb = open_edge_db(&tmp.join("lap")).await;
    let ca = client(&adb, &hub.url(), "admin", "adm");
    let cl = client(&ldb, &hub.url(), "lap", "l");
    wait_live(&ca).await;
    wait_live(&cl).await;
    put(&adb, Some(&ca), "notes/1", json!({"a": 1}), "N").await;
    put(&adb, Some(&ca), "private/1", json!({"a": 1}), "N").await;
    wait_until("the laptop gets both", || async {
        ldb.count().await.unwrap() == 2
    })
    .await;
    // Narrow the laptop's read scope: its session is ended and the new rule
    // applies to what follows.
    let narrow = edge_toml("lap", "l", &["notes/"], &["notes/"]);
    std::fs::write(&cfg_path, cfg.replace(&wide, &narrow)).unwrap();
    wait_until("the narrowed session restarts", || async {
        hub.log().contains("config_changed")
    })
    .await;
    wait_live(&cl).await;
    put(&adb, Some(&ca), "private/2", json!({"a": 2}), "N").await;
    put(&adb, Some(&ca), "notes/2", json!({"a": 2}), "N").await;
    wait_until("notes/2 arrives", || async {
        ldb.get("notes/2").await.unwrap().is_some()
    })
    .await;
    assert!(ldb.get("private/2").await.unwrap().is_none());
    // Revoke the laptop: refused, and the client stops retrying.
    std::fs::write(&cfg_path, cfg.replace(&wide, "")).unwrap();
    assert!(
        cl.wait_for(
            WAIT,
            |s| matches!(s, SyncStatus::Error { code, .. } if code == "unauthorized")
        )
        .await,
        "{:?}",
        cl.status()
    );
    ca.stop().await;
    cl.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frames_end_only_that_session() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let tmp = temp_dir("garbage");
    let hub = HubProc::new(
        tmp.join("hub"),
        free_port(),
        &edge_toml("lap", "l", &["notes/"], &["notes/"]),
    );
    let db = open_edge_db(&tmp.join("lap")).await;
    let c = client(&db, &hub.url(), "lap", "l");
    wait_live(&c).await;
    let bad: Vec<Message> = vec![
        Message::Binary(vec![0xff, 1, 2].into()),
        Message::Binary(vec![1, b'O', b'P'].into()),
        Message::Text("hello".into()),
        Message::Binary(
            outpost::sync::Frame::Push {
                upto: 1,
                seq: 1,
                prev: [0; 32],
                signature: Vec::new(),
                docs: vec![],
            }
            .encode()
            .into(),
        ),
    ];
    for m in bad {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", hub.port))
            .await
            .unwrap();
        let (mut ws, _) = tokio_tungstenite::client_async(hub.url(), tcp)
            .await
            .unwrap();
        ws.send(m.clone()).await.unwrap();
        let reply = tokio::time::timeout(WAIT, ws.next()).await.unwrap();
        match reply {
            Some(Ok(Message::Binary(b))) => {
                let f = outpost::sync::Frame::decode(&b, usize::MAX).unwrap();
                assert!(
                    matches!(&f, outpost::sync::Frame::Error { code, .. } if code == "protocol"),
                    "{m:?} -> {f:?}"
                );
            }
            other => panic!("{m:?} -> {other:?}"),
        }
        // Then the hub closes the connection.
        let end = tokio::time::timeout(WAIT, async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    _ => {}
                }
            }
        })
        .await;
        assert!(end.is_ok());
    }
    // The well-behaved edge was never disturbed.
    put(&db, Some(&c), "notes/after", json!({"ok": true}), "N").await;
    wait_until("the edge's write is acknowledged", || async {
        c.counters()
            .docs_pushed
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1
    })
    .await;
    assert!(matches!(c.status(), SyncStatus::Live));
    assert!(
        hub.metrics()
            .contains("outpost_rejections_total{reason=\"protocol\"} 4")
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_resyncs_from_zero_when_the_hub_database_is_replaced() {
    let tmp = temp_dir("replaced");
    let port = free_port();
    let mut hub = HubProc::new(
        tmp.join("hub"),
        port,
        &edge_toml("lap", "l", &["notes/"], &["notes/"]),
    );
    let docs = |tag: &str, n: usize| -> String {
        (0..n)
            .map(|i| format!("{{\"@metadata\":{{\"@id\":\"notes/{tag}{i:04}\"}},\"v\":{i}}}\n"))
            .collect()
    };
    hub.kill();
    hub.import(&docs("old", 300));
    hub.start();
    let e = open_edge_db(&tmp.join("lap")).await;
    let c = client(&e, &hub.url(), "lap", "l");
    wait_until("the first hub's documents arrive", || async {
        e.count().await.unwrap() == 300
    })
    .await;
    c.stop().await;
    // A reconnect to the same hub resumes from the checkpoint: nothing is
    // sent again, in either direction (the edge's copies of the hub's
    // documents were skipped once and the hub's push checkpoint moved past).
    let c = client(&e, &hub.url(), "lap", "l");
    wait_live(&c).await;
    wait_until("the session's (empty) push is acknowledged", || async {
        c.counters()
            .pushes_acked
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    })
    .await;
    let c2 = client(&e, &hub.url(), "lap", "l");
    c.stop().await;
    wait_live(&c2).await;
    c2.stop().await;
    // The hub's stderr is read by another thread: wait for the third line.
    wait_until("the hub logs three sessions", || async {
        hub.log()
            .lines()
            .filter(|l| l.contains("edge authenticated"))
            .count()
            >= 3
    })
    .await;
    let log = hub.log();
    let sessions: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("edge authenticated"))
        .collect();
    assert_eq!(sessions.len(), 3, "{log}");
    assert!(sessions[1].contains("pending=0"), "{}", sessions[1]);
    assert!(sessions[2].contains("pending=0"), "{}", sessions[2]);
    assert!(
        !sessions[2].contains("pull_checkpoint=0 ") && !sessions[2].ends_with("pull_checkpoint=0"),
        "{}",
        sessions[2]
    );
    // The hub's database is replaced by a smaller one (new database id, fewer
    // etags than the edge's checkpoint).
    hub.kill();
    std::fs::remove_dir_all(hub.dir.join("data")).unwrap();
    hub.import(&docs("new", 50));
    hub.start();
    let c = client(&e, &hub.url(), "lap", "l");
    wait_until("the new hub's documents arrive", || async {
        e.count().await.unwrap() == 350
    })
    .await;
    c.stop().await;
}

/// Ids under `prefix` that `db` holds (lowercase).
async fn ids(db: &Db, prefix: &str) -> Vec<String> {
    state(db, prefix).await.into_keys().collect()
}

/// Clears a device: closes its database and deletes its files; the next
/// database at that path is a new one (new db id), like a browser whose
/// storage was cleared.
async fn wipe(db: Db, dir: &Path) {
    db.close().await.unwrap();
    drop(db);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_of_one_identity_see_each_others_notes() {
    let tmp = temp_dir("devices");
    let edges = edge_toml("alice", "a-token", &["notes/"], &["notes/"])
        + &edge_toml("bob", "b-token", &["notes/"], &["notes/"]);
    let hub = HubProc::new(tmp.join("hub"), free_port(), &edges);
    let (laptop, tablet, bob) = (
        open_edge_db(&tmp.join("laptop")).await,
        open_edge_db(&tmp.join("tablet")).await,
        open_edge_db(&tmp.join("bob")).await,
    );
    assert_ne!(laptop.db_id(), tablet.db_id());
    let cl = client(&laptop, &hub.url(), "alice", "a-token");
    let ct = client(&tablet, &hub.url(), "alice", "a-token");
    let cb = client(&bob, &hub.url(), "bob", "b-token");
    for c in [&cl, &ct, &cb] {
        wait_live(c).await;
    }
    put(
        &laptop,
        Some(&cl),
        "notes/from-laptop",
        json!({"n": 1}),
        "Notes",
    )
    .await;
    put(
        &tablet,
        Some(&ct),
        "notes/from-tablet",
        json!({"n": 2}),
        "Notes",
    )
    .await;
    put(&bob, Some(&cb), "notes/from-bob", json!({"n": 3}), "Notes").await;
    let all = ["notes/from-bob", "notes/from-laptop", "notes/from-tablet"];
    wait_until("every device holds every note", || async {
        ids(&laptop, "notes/").await == all
            && ids(&tablet, "notes/").await == all
            && ids(&bob, "notes/").await == all
    })
    .await;
    // An edit on one device reaches the other device of the same identity.
    put(
        &tablet,
        Some(&ct),
        "notes/from-laptop",
        json!({"n": 4}),
        "Notes",
    )
    .await;
    wait_until("the tablet's edit reaches the laptop", || async {
        laptop.get("notes/from-laptop").await.unwrap().unwrap().body == json!({"n": 4})
    })
    .await;
    for c in [cl, ct, cb] {
        c.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_device_gets_its_own_notes_back() {
    let tmp = temp_dir("wiped");
    let hub = HubProc::new(
        tmp.join("hub"),
        free_port(),
        &edge_toml("alice", "a-token", &["notes/"], &["notes/"]),
    );
    let dir = tmp.join("laptop");
    let laptop = open_edge_db(&dir).await;
    let old_id = laptop.db_id();
    let c = client(&laptop, &hub.url(), "alice", "a-token");
    wait_live(&c).await;
    for i in 0..20 {
        put(
            &laptop,
            Some(&c),
            &format!("notes/n{i}"),
            json!({"n": i}),
            "Notes",
        )
        .await;
    }
    wait_until("the 20 notes are at the hub", || async {
        hub.metrics()
            .contains("outpost_documents_received_total 20")
    })
    .await;
    c.stop().await;
    wipe(laptop, &dir).await;

    let laptop = open_edge_db(&dir).await;
    assert_ne!(laptop.db_id(), old_id);
    assert_eq!(laptop.count().await.unwrap(), 0);
    let c = client(&laptop, &hub.url(), "alice", "a-token");
    wait_live(&c).await;
    wait_until("the wiped device holds its 20 notes again", || async {
        laptop.count().await.unwrap() == 20
    })
    .await;
    assert_eq!(
        laptop.get("notes/n7").await.unwrap().unwrap().body,
        json!({"n": 7})
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_device_gets_everything_its_identity_may_read() {
    let tmp = temp_dir("replaced");
    let edges = edge_toml("dr7", "t7", &["patients/dr-7/"], &["patients/dr-7/"])
        + &edge_toml("nurse", "tn", &["patients/"], &["patients/"]);
    let hub = HubProc::new(tmp.join("hub"), free_port(), &edges);
    let (old, nurse) = (
        open_edge_db(&tmp.join("old-tablet")).await,
        open_edge_db(&tmp.join("nurse")).await,
    );
    let co = client(&old, &hub.url(), "dr7", "t7");
    let cn = client(&nurse, &hub.url(), "nurse", "tn");
    wait_live(&co).await;
    wait_live(&cn).await;
    put(
        &old,
        Some(&co),
        "patients/dr-7/visit-1",
        json!({"by": "dr7"}),
        "Visits",
    )
    .await;
    put(
        &nurse,
        Some(&cn),
        "patients/dr-7/visit-2",
        json!({"by": "nurse"}),
        "Visits",
    )
    .await;
    put(
        &nurse,
        Some(&cn),
        "patients/dr-8/visit-3",
        json!({"by": "nurse"}),
        "Visits",
    )
    .await;
    wait_until(
        "the old tablet holds both of its patients' visits",
        || async { old.count().await.unwrap() == 2 },
    )
    .await;
    // The old tablet is lost; a new one syncs as the same doctor.
    co.stop().await;
    let new = open_edge_db(&tmp.join("new-tablet")).await;
    let cnew = client(&new, &hub.url(), "dr7", "t7");
    wait_live(&cnew).await;
    wait_until(
        "the new tablet holds dr-7's visits, its own included",
        || async {
            ids(&new, "patients/").await == ["patients/dr-7/visit-1", "patients/dr-7/visit-2"]
        },
    )
    .await;
    cnew.stop().await;
    cn.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_edge_gets_no_rejection_for_a_conflict_it_did_not_make() {
    let tmp = temp_dir("readonly");
    let edges = edge_toml("alice", "a-token", &["notes/"], &["notes/"])
        + &edge_toml("bob", "b-token", &["notes/"], &["notes/"])
        + &edge_toml("auditor", "r-token", &["notes/"], &[]);
    let hub = HubProc::new(tmp.join("hub"), free_port(), &edges);
    let (a, b, r) = (
        open_edge_db(&tmp.join("alice")).await,
        open_edge_db(&tmp.join("bob")).await,
        open_edge_db(&tmp.join("auditor")).await,
    );
    let ca = client(&a, &hub.url(), "alice", "a-token");
    let cb = client(&b, &hub.url(), "bob", "b-token");
    let cr = client(&r, &hub.url(), "auditor", "r-token");
    for c in [&ca, &cb, &cr] {
        wait_live(c).await;
    }
    // "Cards" is kept by the hub when in conflict (manual).
    put(&a, Some(&ca), "notes/card", json!({"v": 0}), "Cards").await;
    wait_until("everyone holds the card", || async {
        b.count().await.unwrap() == 1 && r.count().await.unwrap() == 1
    })
    .await;
    ca.stop().await;
    cb.stop().await;
    put(&a, None, "notes/card", json!({"v": "alice"}), "Cards").await;
    put(&b, None, "notes/card", json!({"v": "bob"}), "Cards").await;
    let ca = client(&a, &hub.url(), "alice", "a-token");
    let cb = client(&b, &hub.url(), "bob", "b-token");
    wait_until("the auditor holds the conflict", || async {
        r.get("notes/card")
            .await
            .unwrap()
            .is_some_and(|d| d.conflicts.len() == 1)
    })
    .await;
    // The auditor's edge reads its changes feed for pushing, and the hub
    // acknowledges (an empty Push that only moves the push checkpoint).
    let acked = cr
        .counters()
        .pushes_acked
        .load(std::sync::atomic::Ordering::Relaxed);
    cr.local_changed();
    wait_until("the auditor's push is acknowledged", || async {
        cr.counters()
            .pushes_acked
            .load(std::sync::atomic::Ordering::Relaxed)
            > acked
    })
    .await;
    let edge = edge_cfg("auditor", "r-token");
    assert_eq!(client_rejections(&r, &edge).await.unwrap(), vec![]);
    let m = hub.metrics();
    assert!(!m.contains("write_denied"), "{m}");
    assert_eq!(
        cr.counters()
            .docs_pushed
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "the auditor pushed nothing"
    );
    for c in [ca, cb, cr] {
        c.stop().await;
    }
}

/// The enrollment walk-through with real processes: the operator adds an
/// edge with `outpost-hub edge add` (a one-time code), a native client
/// redeems it with its key (`EdgeConfig::enrolling`), syncs, and after the
/// hub restarts reconnects with its key alone (the code is spent); `edge
/// enroll` then issues a new code and the old key's session ends at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_enrolls_with_a_code_then_uses_its_key_alone() {
    let tmp = temp_dir("enroll");
    let mut hub = HubProc::new(tmp.join("hub"), free_port(), "");
    let dir = hub.dir.clone();
    let cli = |args: &[&str]| {
        let out = Command::new(BIN)
            .current_dir(&dir)
            .args(["--config", "outpost-hub.toml"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let code = cli(&[
        "edge", "add", "lap", "--read", "notes/", "--write", "notes/",
    ]);
    wait_until("the hub took the new edge", || async {
        hub.proc.get("/status").1.contains("\"edges_configured\":1")
    })
    .await;
    let key = keys::fresh_key();
    let public = outpost::keys::Signer::public_key(&*key).clone();
    let db = open_edge_db(&tmp.join("lap")).await;
    let mut edge = EdgeConfig::enrolling("main", "lap", public.clone(), &code);
    edge.heartbeat_ms = 2_000;
    edge.timeout_ms = 6_000;
    let opts = ClientOptions {
        url: hub.url(),
        edge,
        ca_cert: None,
        signer: Some(key.clone()),
        client_cert: None,
    };
    let c = spawn_edge(db.clone(), opts, None);
    wait_live(&c).await;
    let cfg = std::fs::read_to_string(dir.join("outpost-hub.toml")).unwrap();
    assert!(cfg.contains(&public.to_text()), "{cfg}");
    assert!(!cfg.contains("enroll_code_sha256"), "{cfg}");
    put(&db, Some(&c), "notes/1", json!({"n": 1}), "Notes").await;
    wait_until("the note at the hub", || async { hub.documents() == 1 }).await;
    // The hub restarts: the client reconnects with its key (the code is spent).
    hub.kill();
    hub.start();
    wait_live(&c).await;
    put(&db, Some(&c), "notes/2", json!({"n": 2}), "Notes").await;
    wait_until("the second note at the hub", || async {
        hub.documents() == 2
    })
    .await;
    // A new code for the identity: the old key's session ends at once.
    let again = cli(&["edge", "enroll", "lap"]);
    assert_ne!(again, code);
    assert!(
        c.wait_for(
            WAIT,
            |s| matches!(s, SyncStatus::Error { code, .. } if code == "unauthorized")
        )
        .await,
        "{:?}",
        c.status()
    );
    c.stop().await;
}

/// An `[[upstream]]` whose key file is missing: the hub serves its own edges
/// and says in its log why the link did not start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_without_its_key_file_is_reported_and_the_hub_serves_on() {
    let tmp = temp_dir("nokey");
    let mut hub = HubProc::new(
        tmp.join("hub"),
        free_port(),
        &(edge_toml("lap", "", &["notes/"], &["notes/"])
            + "[[upstream]]\ndatabase = \"main\"\nurl = \"ws://127.0.0.1:9/sync\"\nidentity = \"me\"\nkey_file = \"missing.key\"\n"),
    );
    hub.proc.wait_log("key_file cannot be loaded");
    // The rest of the line may come in a later read of the hub's stderr.
    hub.proc.wait_log("missing.key");
    let db = open_edge_db(&tmp.join("lap")).await;
    let c = client(&db, &hub.url(), "lap", "");
    wait_live(&c).await;
    c.stop().await;
}

/// docs/security.md "Revocation and narrowing": the hub orders an edge to
/// erase what left its read scope; the edge erases it (no plaintext left in
/// its files) and answers with a signed receipt the hub records; a revoked
/// edge, connected at the time, erases everything before it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrowed_and_revoked_edges_erase_what_left_their_scope() {
    const GONE: &str = "GONE-5e2";
    const KEEP: &str = "KEEP-7c1";
    let tmp = temp_dir("purge");
    let admin = edge_toml("admin", "adm", &["*"], &["*"]);
    let wide = edge_toml("lap", "l", &["notes/", "private/"], &["notes/"]);
    let mut hub = HubProc::new(tmp.join("hub"), free_port(), &(admin.clone() + &wide));
    let cfg_path = hub.dir.join("outpost-hub.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    let adb = open_edge_db(&tmp.join("admin")).await;
    let ldb = open_edge_db(&tmp.join("lap")).await;
    let ca = client(&adb, &hub.url(), "admin", "adm");
    let cl = client(&ldb, &hub.url(), "lap", "l");
    wait_live(&ca).await;
    wait_live(&cl).await;
    put(&adb, Some(&ca), "notes/1", json!({ "s": KEEP }), "N").await;
    let gone1 = format!("private/{GONE}-1");
    put(
        &adb,
        Some(&ca),
        &gone1,
        json!({ "s": format!("{GONE} v1") }),
        "P",
    )
    .await;
    put(
        &adb,
        Some(&ca),
        &gone1,
        json!({ "s": format!("{GONE} v2") }),
        "P",
    )
    .await;
    let big = format!("private/{GONE}-big");
    put(
        &adb,
        Some(&ca),
        &big,
        json!({ "s": GONE.repeat(3000) }),
        "P",
    )
    .await;
    wait_until("the laptop holds all three", || async {
        ldb.get(&big).await.unwrap().is_some()
            && ldb
                .get(&gone1)
                .await
                .unwrap()
                .is_some_and(|d| d.body["s"] == format!("{GONE} v2"))
            && ldb.get("notes/1").await.unwrap().is_some()
    })
    .await;
    assert!(
        holds(&raw_dump(&tmp.join("lap")), GONE),
        "the test can fail"
    );

    // Narrow its read scope (live reload): the session restarts with an order.
    let narrow = edge_toml("lap", "l", &["notes/"], &["notes/"]);
    std::fs::write(&cfg_path, cfg.replace(&wide, &narrow)).unwrap();
    wait_until("the receipt is recorded", || async {
        hub.log().contains("purge receipt recorded")
    })
    .await;
    assert!(ldb.get(&gone1).await.unwrap().is_none());
    assert!(ldb.get(&big).await.unwrap().is_none());
    assert!(ldb.get("notes/1").await.unwrap().is_some());
    wait_live(&cl).await;
    // Writes still flow both ways.
    put(&ldb, Some(&cl), "notes/2", json!({ "s": "after" }), "N").await;
    wait_until("notes/2 reaches the admin", || async {
        adb.get("notes/2").await.unwrap().is_some()
    })
    .await;
    cl.stop().await;
    ldb.close().await.unwrap();
    let dump = raw_dump(&tmp.join("lap"));
    assert!(!holds(&dump, GONE), "no plaintext of the erased documents");
    assert!(holds(&dump, KEEP));

    // Revoked while connected: it erases everything, then is refused.
    let ldb = open_edge_db(&tmp.join("lap")).await;
    let cl = client(&ldb, &hub.url(), "lap", "l");
    wait_live(&cl).await;
    let out = Command::new(BIN)
        .current_dir(&hub.dir)
        .args(["--config", "outpost-hub.toml", "edge", "revoke", "lap"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        cl.wait_for(
            WAIT,
            |s| matches!(s, SyncStatus::Error { code, .. } if code == "revoked")
        )
        .await,
        "{:?}",
        cl.status()
    );
    assert_eq!(
        ldb.count().await.unwrap(),
        0,
        "a revoked edge keeps nothing"
    );
    cl.stop().await;
    ldb.close().await.unwrap();
    let dump = raw_dump(&tmp.join("lap"));
    assert!(!holds(&dump, KEEP) && !holds(&dump, GONE));

    // The operator sees both receipts, signed, and the trail verifies.
    ca.stop().await;
    hub.kill();
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .current_dir(&hub.dir)
            .args(["--config", "outpost-hub.toml"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let status = run(&["edge", "status", "lap"]);
    assert!(
        status.contains("edge lap (database main): revoked"),
        "{status}"
    );
    assert!(status.contains("no receipt pending"), "{status}");
    assert!(status.contains("order 1 (narrowed)"), "{status}");
    assert!(status.contains("order 2 (revoked)"), "{status}");
    assert!(
        status.contains("3 documents erased") || status.contains("2 documents erased"),
        "{status}"
    );
    assert!(status.contains("signed by key"), "{status}");
    let verified = run(&["audit", "verify"]);
    assert!(verified.contains("audit entries verified"), "{verified}");
}

/// Deletion guards reach the edge in `Welcome` and are kept there: a delete
/// (or a move out of the collection) of a guarded document is refused with
/// `delete_forbidden` at once, offline too, and nothing of its transaction
/// is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guarded_delete_is_refused_at_the_edge_offline_too() {
    let tmp = temp_dir("guards");
    let admin = edge_toml("admin", "adm", &["*"], &["*"]);
    let lap = edge_toml(
        "lap",
        "l",
        &["invoices/", "notes/"],
        &["invoices/", "notes/"],
    );
    let hub = HubProc::new(tmp.join("hub"), free_port(), &(admin + &lap));
    let adb = open_edge_db(&tmp.join("admin")).await;
    let ldb = open_edge_db(&tmp.join("lap")).await;
    let ca = client(&adb, &hub.url(), "admin", "adm");
    let cl = client(&ldb, &hub.url(), "lap", "l");
    wait_live(&ca).await;
    wait_live(&cl).await;
    put(
        &adb,
        Some(&ca),
        "invoices/1",
        json!({"total": 10}),
        "Invoices",
    )
    .await;
    wait_until("the invoice reaches the laptop", || async {
        ldb.get("invoices/1").await.unwrap().is_some()
    })
    .await;
    fn code<T: std::fmt::Debug>(r: Result<T, outpost::Error>) -> &'static str {
        r.unwrap_err().code()
    }
    assert_eq!(code(ldb.delete("invoices/1").await), "delete_forbidden");
    cl.stop().await;
    // Offline: the guards were kept.
    let mut b = Batch::new();
    b.put_with(
        "notes/1",
        json!({"n": 1}),
        PutOptions {
            collection: Some("Notes".into()),
            ..Default::default()
        },
    );
    b.delete("invoices/1");
    assert_eq!(code(ldb.commit(b).await), "delete_forbidden");
    assert!(ldb.get("notes/1").await.unwrap().is_none());
    let moved = ldb
        .put_with(
            "invoices/1",
            json!({"total": 0}),
            PutOptions {
                collection: Some("Notes".into()),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(code(moved), "delete_forbidden");
    // Cancelling is an edit: it replicates.
    put(
        &ldb,
        None,
        "invoices/1",
        json!({"total": 10, "cancelled": true}),
        "Invoices",
    )
    .await;
    let cl = client(&ldb, &hub.url(), "lap", "l");
    wait_until("the cancellation reaches the admin", || async {
        adb.get("invoices/1")
            .await
            .unwrap()
            .is_some_and(|d| d.body["cancelled"] == true)
    })
    .await;
    ca.stop().await;
    cl.stop().await;
}

/// The hub reads a page of its changes feed once per commit and shares it,
/// and its encoding, among the sessions woken by that commit
/// (`outpost::sync::feed`). Edges of four scopes live on one hub at once,
/// commits that mix scopes and commits of one scope: each edge ends with
/// exactly what it may read, nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_feed_page_never_carries_a_document_outside_a_scope() {
    let tmp = temp_dir("shared-feed");
    let edges = edge_toml("writer", "w-token", &["w/"], &["a/", "b/"])
        + &edge_toml("wide", "wide-token", &["a/", "b/"], &[])
        + &edge_toml("only-a", "a-token", &["a/"], &[])
        + &edge_toml("only-b", "b-token", &["b/"], &[]);
    let hub = HubProc::new(tmp.join("hub"), free_port(), &edges);
    let names = ["writer", "wide", "only-a", "only-b"];
    let tokens = ["w-token", "wide-token", "a-token", "b-token"];
    let mut dbs = Vec::new();
    let mut clients = Vec::new();
    for (name, token) in names.iter().zip(tokens) {
        let db = open_edge_db(&tmp.join(name)).await;
        clients.push(client(&db, &hub.url(), name, token));
        dbs.push(db);
    }
    for c in &clients {
        wait_live(c).await;
    }
    let (writer, wide, only_a, only_b) = (&dbs[0], &dbs[1], &dbs[2], &dbs[3]);
    let (mut want_a, mut want_b) = (Vec::new(), Vec::new());
    for round in 0..4 {
        // One commit at the hub with both scopes (one push), then one
        // with a's only, then one with b's only: the first is shared by
        // the wide edge alone, the others by it and one narrow edge.
        let commits: [&[&str]; 3] = [&["a/", "b/"], &["a/"], &["b/"]];
        for (k, prefixes) in commits.iter().enumerate() {
            let mut b = Batch::new();
            for p in prefixes.iter() {
                let id = format!("{p}{round}-{k}");
                b.put_with(id.clone(), json!({"round": round}), PutOptions::default());
                if *p == "a/" {
                    want_a.push(id);
                } else {
                    want_b.push(id);
                }
            }
            writer.commit(b).await.unwrap();
            clients[0].local_changed();
            let n = want_a.len() + want_b.len();
            wait_until("the wide edge has every document so far", || async {
                ids(wide, "").await.len() == n
            })
            .await;
        }
    }
    want_a.sort();
    want_b.sort();
    wait_until("each narrow edge has its documents", || async {
        ids(only_a, "a/").await == want_a && ids(only_b, "b/").await == want_b
    })
    .await;
    // Give a leaked frame time to land before looking.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ids(only_a, "").await, want_a, "only-a holds exactly a/");
    assert_eq!(ids(only_b, "").await, want_b, "only-b holds exactly b/");
    for c in clients {
        c.stop().await;
    }
}
