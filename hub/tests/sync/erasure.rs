//! What left a scope erased, guarded deletes, a shared feed page never outside a scope.

use super::*;

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

    // The operator sees both receipts, signed, and the trail verifies:
    // the running hub answers `edge status` (over `/admin/audit`), and the
    // stopped hub's files say the same.
    ca.stop().await;
    let hub_dir = hub.dir.clone();
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .current_dir(&hub_dir)
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
    let live = run(&[
        "edge",
        "status",
        "lap",
        "--admin-token",
        outpost_testkit::hub::ADMIN_TOKEN,
    ]);
    hub.kill();
    let status = run(&["edge", "status", "lap"]);
    assert_eq!(status, live, "the running hub's answer");
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
