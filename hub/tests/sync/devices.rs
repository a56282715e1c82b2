//! Devices of one identity (two, a wiped one, a replaced one), a read-only
//! edge, enrollment, an upstream without its key.

use super::*;

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
