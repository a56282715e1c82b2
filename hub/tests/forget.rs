//! The right to be forgotten with real processes (issue "Deletes that mean
//! something" §2; docs/security.md "Subject purges"): a real `outpost-hub`
//! process, `outpost-hub purge` run by an operator on the stopped hub, and
//! real native edges over real files. One edge stays offline across the
//! purge and comes back with an edit of a purged document: it erases it,
//! and the data never reappears at the hub or at any other edge.

mod common;

use common::*;
use outpost_client::client_rejections;
use outpost_testkit::hub::{free_port, wait_until};
use serde_json::json;

const SECRET: &str = "SUBJ-SECRET-9d41";
const SUBJECT: &str = "P-SUBJ-77";
const KEEP: &str = "KEEP-OTHER-3b2";

fn receipts_recorded(hub: &HubProc) -> usize {
    hub.log().matches("purge receipt recorded").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_reaches_every_edge_and_a_stale_edge_cannot_bring_it_back() {
    let tmp = temp_dir("forget");
    let edges = edge_toml("admin", "", &["*"], &["*"])
        + &edge_toml("alice", "", &["notes/"], &["notes/"])
        + &edge_toml("bob", "", &["notes/"], &[])
        + &edge_toml("carol", "", &["other/"], &["other/"]);
    let mut hub = HubProc::new(tmp.join("hub"), free_port(), &edges);
    let adb = open_edge_db(&tmp.join("admin")).await;
    let ldb = open_edge_db(&tmp.join("alice")).await;
    let bdb = open_edge_db(&tmp.join("bob")).await;
    let cdb = open_edge_db(&tmp.join("carol")).await;
    let ca = client(&adb, &hub.url(), "admin", "");
    let cl = client(&ldb, &hub.url(), "alice", "");
    let cb = client(&bdb, &hub.url(), "bob", "");
    let cc = client(&cdb, &hub.url(), "carol", "");
    for c in [&ca, &cl, &cb, &cc] {
        wait_live(c).await;
    }
    // The subject's documents (one edited twice), and another patient's.
    let p1 = json!({ "patientId": SUBJECT, "s": format!("{SECRET} v1") });
    put(&adb, Some(&ca), "notes/visit-1", p1, "Visits").await;
    let p1b = json!({ "patientId": SUBJECT, "s": format!("{SECRET} v2") });
    put(&adb, Some(&ca), "notes/visit-1", p1b, "Visits").await;
    let p2 = json!({ "patientId": SUBJECT, "s": SECRET.repeat(200) });
    put(&adb, Some(&ca), "notes/visit-2", p2, "Visits").await;
    let k = json!({ "patientId": "P-OTHER", "s": KEEP });
    put(&adb, Some(&ca), "notes/visit-3", k, "Visits").await;
    put(&cdb, Some(&cc), "other/x", json!({ "s": "carol's" }), "O").await;
    wait_until("alice and bob hold the three visits", || async {
        let v2 = |db: &Db| {
            let db = db.clone();
            async move {
                db.get("notes/visit-1")
                    .await
                    .unwrap()
                    .is_some_and(|d| d.body["s"] == format!("{SECRET} v2"))
                    && db.get("notes/visit-2").await.unwrap().is_some()
                    && db.get("notes/visit-3").await.unwrap().is_some()
            }
        };
        v2(&ldb).await && v2(&bdb).await
    })
    .await;
    wait_until("the hub holds carol's document", || async {
        hub.documents() == 4
    })
    .await;

    // Alice goes offline and edits a visit of the subject there.
    cl.stop().await;
    let edit = json!({ "patientId": SUBJECT, "s": format!("{SECRET} offline edit") });
    put(&ldb, None, "notes/visit-1", edit, "Visits").await;
    for c in [ca, cb, cc] {
        c.stop().await;
    }

    // The operator purges the subject on the stopped hub.
    hub.kill();
    let (ok, out, err) = run(&hub, &["purge", "--field", &format!("patientId={SUBJECT}")]);
    assert!(!ok && err.contains("--by"), "who asks is required: {err}");
    let (ok, out2, _) = run(
        &hub,
        &[
            "purge",
            "--field",
            &format!("patientId={SUBJECT}"),
            "--by",
            "dpo@clinic",
            "--reason",
            "GDPR request 118",
            "--dry-run",
        ],
    );
    assert!(ok && out2.contains("2 documents"), "{out}{out2}");
    let (ok, out, err) = run(
        &hub,
        &[
            "purge",
            "--field",
            &format!("patientId={SUBJECT}"),
            "--by",
            "dpo@clinic",
            "--reason",
            "GDPR request 118",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("purged 2 documents"), "{out}");
    assert!(out.contains("purge marker 1"), "{out}");
    let owed_line = out
        .lines()
        .find(|l| l.contains("each told to erase"))
        .unwrap_or_else(|| panic!("{out}"));
    for who in ["admin", "alice", "bob"] {
        assert!(owed_line.contains(who), "{who} owes a receipt: {out}");
    }
    assert!(!owed_line.contains("carol"), "carol never held it: {out}");
    // No plaintext of the purged bodies left in the hub's files; the other
    // patient's document is still there (the search can succeed).
    let dump = raw_dump(&hub.dir.join("data/main"));
    assert!(
        !holds(&dump, SECRET),
        "the hub's files hold no purged plaintext"
    );
    assert!(holds(&dump, KEEP), "the test can fail");
    let (ok, status, err) = run(&hub, &["purge", "status"]);
    assert!(ok, "{err}");
    assert!(status.contains("purge 1"), "{status}");
    assert!(status.contains("by \"dpo@clinic\""), "{status}");
    let owing = status
        .lines()
        .find(|l| l.contains("receipts OWED by:"))
        .unwrap_or_else(|| panic!("{status}"));
    for who in ["admin (device", "alice (device", "bob (device"] {
        assert!(owing.contains(who), "{who}: {status}");
    }
    assert!(!owing.contains("carol"), "{status}");
    assert!(status.contains("3 receipts owed in all"), "{status}");

    // Back up: bob and the admin erase at their next session.
    hub.start();
    let cb = client(&bdb, &hub.url(), "bob", "");
    let ca = client(&adb, &hub.url(), "admin", "");
    wait_until("bob's and the admin's receipts", || async {
        receipts_recorded(&hub) >= 2
    })
    .await;
    wait_live(&cb).await;
    wait_live(&ca).await;
    for db in [&bdb, &adb] {
        assert!(db.get("notes/visit-1").await.unwrap().is_none());
        assert!(db.get("notes/visit-2").await.unwrap().is_none());
        assert!(db.get("notes/visit-3").await.unwrap().is_some());
    }

    // Alice comes back with her offline edit: told to erase first, she
    // erases it too, and it never reaches the hub.
    let cl = client(&ldb, &hub.url(), "alice", "");
    wait_until("alice's receipt", || async { receipts_recorded(&hub) >= 3 }).await;
    wait_live(&cl).await;
    assert!(ldb.get("notes/visit-1").await.unwrap().is_none());
    // She writes on; that flows as usual.
    put(
        &ldb,
        Some(&cl),
        "notes/visit-4",
        json!({ "s": "new" }),
        "Visits",
    )
    .await;
    wait_until("visit-4 reaches bob", || async {
        bdb.get("notes/visit-4").await.unwrap().is_some()
    })
    .await;
    assert!(bdb.get("notes/visit-1").await.unwrap().is_none());
    assert!(adb.get("notes/visit-1").await.unwrap().is_none());

    // Writing a purged id again, with any change vector, is refused.
    put(
        &adb,
        Some(&ca),
        "notes/visit-1",
        json!({ "s": "again" }),
        "V",
    )
    .await;
    // Refused with `purged`, the admin's device erases its copy too (and
    // the rejection that named it).
    assert!(adb.get("notes/visit-1").await.unwrap().is_some());
    wait_until("the admin's rewrite is refused and erased", || async {
        adb.get("notes/visit-1").await.unwrap().is_none()
    })
    .await;
    let acfg = edge_cfg("admin", "");
    assert!(client_rejections(&adb, &acfg).await.unwrap().is_empty());
    assert!(bdb.get("notes/visit-1").await.unwrap().is_none());

    for c in [ca, cb, cl] {
        c.stop().await;
    }
    ldb.close().await.unwrap();
    bdb.close().await.unwrap();
    let alice_dump = raw_dump(&tmp.join("alice"));
    assert!(
        !holds(&alice_dump, SECRET),
        "alice's files hold no purged plaintext"
    );
    assert!(holds(&alice_dump, KEEP));
    assert!(!holds(&raw_dump(&tmp.join("bob")), SECRET));

    // The operator sees every receipt (the running hub answers `purge
    // status` over `/admin/audit`, and the stopped hub's files say the
    // same); the trail verifies and names no purged id, body or field value.
    let (ok, live, err) = run(
        &hub,
        &[
            "purge",
            "status",
            "--admin-token",
            outpost_testkit::hub::ADMIN_TOKEN,
        ],
    );
    assert!(ok, "{err}");
    hub.kill();
    let (ok, status, err) = run(&hub, &["purge", "status"]);
    assert!(ok, "{err}");
    assert_eq!(status, live, "the running hub's answer");
    assert!(status.contains("receipts owed: none"), "{status}");
    assert!(status.contains("0 receipts owed in all"), "{status}");
    for who in ["admin (order", "alice (order", "bob (order"] {
        assert!(status.contains(who), "{who}: {status}");
    }
    let (ok, out, err) = run(&hub, &["audit", "verify"]);
    assert!(ok, "{out}{err}");
    let (ok, trail, err) = run(&hub, &["audit", "export"]);
    assert!(ok, "{err}");
    let purge_entry = trail
        .lines()
        .find(|l| l.contains("\"subject_purge\""))
        .unwrap_or_else(|| panic!("{trail}"));
    assert!(purge_entry.contains("dpo@clinic"), "{purge_entry}");
    assert!(purge_entry.contains("GDPR request 118"), "{purge_entry}");
    for secret in [SECRET, SUBJECT, "visit-1", "visit-2"] {
        assert!(!purge_entry.contains(secret), "{secret} in {purge_entry}");
    }
    assert!(
        trail.lines().any(|l| l.contains("\"push_refused\"")
            && l.contains("\"purged\"")
            && l.contains("notes/visit-1")),
        "the rewrite's refusal is audited: {trail}"
    );
    let dump = raw_dump(&hub.dir.join("data/main"));
    assert!(
        !holds(&dump, SECRET),
        "nothing came back to the hub's files"
    );
}

/// On a running hub: `outpost-hub purge` sends the purge to it (`POST
/// /admin/purge`, admin token); a connected edge that held the document
/// is made to reconnect (`purge_pending`), erases it and answers, without
/// the hub stopping. Without the token, the command says what it needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_on_the_running_hub_reaches_a_connected_edge_at_once() {
    let tmp = temp_dir("forget-live");
    let edges = edge_toml("admin", "", &["*"], &["*"]) + &edge_toml("alice", "", &["notes/"], &[]);
    let hub = HubProc::new(tmp.join("hub"), free_port(), &edges);
    let adb = open_edge_db(&tmp.join("admin")).await;
    let ldb = open_edge_db(&tmp.join("alice")).await;
    let ca = client(&adb, &hub.url(), "admin", "");
    let cl = client(&ldb, &hub.url(), "alice", "");
    wait_live(&ca).await;
    wait_live(&cl).await;
    let body = json!({ "s": format!("{SECRET} live") });
    put(&adb, Some(&ca), "notes/live-1", body, "Visits").await;
    put(
        &adb,
        Some(&ca),
        "notes/live-2",
        json!({ "s": KEEP }),
        "Visits",
    )
    .await;
    wait_until("alice holds both", || async {
        ldb.get("notes/live-1").await.unwrap().is_some()
            && ldb.get("notes/live-2").await.unwrap().is_some()
    })
    .await;

    let args = ["purge", "--id", "notes/live-1", "--by", "dpo"];
    let (ok, _, err) = run(&hub, &args);
    assert!(!ok && err.contains("admin token"), "{err}");
    let (ok, out, err) = run(
        &hub,
        &[
            &args[..],
            &["--admin-token", outpost_testkit::hub::ADMIN_TOKEN],
        ]
        .concat(),
    );
    assert!(ok, "{err}");
    assert!(err.contains("sent to the running hub"), "{err}");
    assert!(out.contains("purged 1 document of database main"), "{out}");
    wait_until("alice erased it and answered", || async {
        receipts_recorded(&hub) >= 2 && ldb.get("notes/live-1").await.unwrap().is_none()
    })
    .await;
    assert!(ldb.get("notes/live-2").await.unwrap().is_some());
    wait_live(&cl).await;
    assert!(adb.get("notes/live-1").await.unwrap().is_none());
    // Bad requests get the hub's reason.
    let (ok, _, err) = run(
        &hub,
        &[
            "purge",
            "--prefix",
            "",
            "--by",
            "dpo",
            "--admin-token",
            outpost_testkit::hub::ADMIN_TOKEN,
        ],
    );
    assert!(!ok && err.contains("not a subject"), "{err}");
    ca.stop().await;
    cl.stop().await;
}

/// A subject purge at the cloud reaches the edges behind a clinic's hub
/// (docs/security.md "Subject purges"; the clinics of docs/DESIGN): the
/// clinic's upstream link carries out the order's subject purge as the
/// clinic's own (marker, retired ids, orders to its edges, audit), so the
/// clinic's laptop, which the cloud cannot reach, erases the document too,
/// answers the clinic, and cannot push it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_at_the_cloud_reaches_the_edges_behind_a_clinics_hub() {
    use outpost_testkit::hub::ADMIN_TOKEN;
    let tmp = temp_dir("forget-chain");
    let cloud_port = free_port();
    // The clinic's hub relays its laptop's writes (it introduces the
    // laptop's database id at the cloud).
    let clinic_edge = edge_toml("clinic", "", &["patients/"], &["patients/"]);
    let cloud = HubProc::new(
        tmp.join("cloud"),
        cloud_port,
        &format!("{}\nrelay = true\n\n", clinic_edge.trim_end()),
    );
    let dir = tmp.join("clinic");
    std::fs::create_dir_all(&dir).unwrap();
    outpost_testkit::keys::key_for("clinic")
        .save(&dir.join("clinic.key"))
        .unwrap();
    let upstream = format!(
        "[[upstream]]\ndatabase = \"main\"\nurl = \"ws://127.0.0.1:{cloud_port}/sync\"\nidentity = \"clinic\"\nkey_file = \"clinic.key\"\n"
    );
    let clinic = HubProc::new(
        dir,
        free_port(),
        &(edge_toml("lap", "", &["patients/"], &["patients/"]) + &upstream),
    );
    let ldb = open_edge_db(&tmp.join("lap")).await;
    let cl = client(&ldb, &clinic.url(), "lap", "");
    wait_live(&cl).await;
    let subject = json!({ "patientId": SUBJECT, "s": SECRET });
    put(&ldb, Some(&cl), "patients/p1", subject, "Patients").await;
    let other = json!({ "patientId": "P-OTHER", "s": KEEP });
    put(&ldb, Some(&cl), "patients/p2", other, "Patients").await;
    wait_until("the cloud holds the laptop's two documents", || async {
        cloud.documents() == 2
    })
    .await;

    let field = format!("patientId={SUBJECT}");
    let args = [
        "purge", "--field", &field, "--by", "dpo", "--reason", "GDPR 7",
    ];
    let (ok, out, err) = run(
        &cloud,
        &[&args[..], &["--admin-token", ADMIN_TOKEN]].concat(),
    );
    assert!(ok, "{err}");
    assert!(out.contains("purged 1 document of database main"), "{out}");
    wait_until(
        "the laptop behind the clinic erased it and answered",
        || async {
            ldb.get("patients/p1").await.unwrap().is_none() && receipts_recorded(&clinic) >= 1
        },
    )
    .await;
    assert!(ldb.get("patients/p2").await.unwrap().is_some());
    assert_eq!(clinic.documents(), 1);
    wait_until("the clinic answered the cloud", || async {
        receipts_recorded(&cloud) >= 1
    })
    .await;

    // The clinic's own record of it: a marker by the upstream, owed by the
    // laptop and answered; an audit entry with hashes only.
    let (ok, status, err) = run(&clinic, &["purge", "status", "--admin-token", ADMIN_TOKEN]);
    assert!(ok, "{err}");
    let by = format!("the upstream ws://127.0.0.1:{cloud_port}/sync database main as clinic");
    assert!(status.contains(&by), "{status}");
    assert!(status.contains("receipts owed: none"), "{status}");
    assert!(status.contains("lap (order"), "{status}");

    // Written again at the laptop, the id is refused at the clinic
    // (retired there): it reaches neither the clinic nor the cloud.
    put(
        &ldb,
        Some(&cl),
        "patients/p1",
        json!({ "s": "again" }),
        "Patients",
    )
    .await;
    wait_until("the clinic refuses the rewrite as purged", || async {
        let (_, trail, _) = run(&clinic, &["audit", "export", "--admin-token", ADMIN_TOKEN]);
        trail
            .lines()
            .any(|l| l.contains("\"push_refused\"") && l.contains("\"purged\""))
    })
    .await;
    assert_eq!(clinic.documents(), 1);
    assert_eq!(cloud.documents(), 1);
    let (ok, trail, err) = run(&clinic, &["audit", "export", "--admin-token", ADMIN_TOKEN]);
    assert!(ok, "{err}");
    let entry = trail
        .lines()
        .find(|l| l.contains("\"subject_purge\""))
        .unwrap_or_else(|| panic!("{trail}"));
    assert!(entry.contains("its purge order"), "{entry}");
    for secret in [SECRET, SUBJECT, "patients/p1"] {
        assert!(!entry.contains(secret), "{secret} in {entry}");
    }
    let (ok, out, err) = run(&clinic, &["audit", "verify", "--admin-token", ADMIN_TOKEN]);
    assert!(ok, "{out}{err}");
    cl.stop().await;
}
