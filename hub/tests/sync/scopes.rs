//! Scopes through a chain of hubs, write-prefix rejections, narrowing and
//! revoking, garbage frames, a replaced hub database.

use super::*;

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
    let mut boston = HubProc::new(
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
    // Boston's hub recorded what it received from the cloud: `audit who`
    // names the batch that brought the office's document (the link, the
    // cloud's database, what storing it did), the same answer whether the
    // hub runs or not, and the trail verifies. Chicago's hub never received
    // Boston's patients, so its trail names no batch of them.
    let (cv, _, _) = state(&office, "shared/formulary").await["shared/formulary"].clone();
    let who = ["audit", "who", "shared/formulary", "--cv", cv.as_str()];
    let (ok, live, err) = run(
        &boston,
        &[
            &who[..],
            &["--admin-token", outpost_testkit::hub::ADMIN_TOKEN],
        ]
        .concat(),
    );
    assert!(ok, "{err}");
    let link = format!(
        "received from the upstream ws://127.0.0.1:{cloud_port}/sync database main as boston"
    );
    assert!(live.contains(&link), "{live}");
    assert!(live.contains("stored as received"), "{live}");
    assert!(live.contains(&format!("version {cv}")), "{live}");
    let (ok, _, err) = run(
        &chicago,
        &[
            "audit",
            "who",
            "patients/boston/p1",
            "--admin-token",
            outpost_testkit::hub::ADMIN_TOKEN,
        ],
    );
    assert!(!ok && err.contains("no accepted push"), "{err}");
    boston.kill();
    let (ok, stopped, err) = run(&boston, &who);
    assert!(ok, "{err}");
    assert_eq!(stopped, live, "the running hub's answer");
    let (ok, verified, err) = run(&boston, &["audit", "verify"]);
    assert!(ok, "{verified}{err}");
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
