//! Indexes at a real hub process (issue 13): the mortgage module of
//! `examples/indexes/mortgage.mjs` (the file the browser test imports) named
//! in the configuration, run by the hub's embedded JavaScript engine. A real
//! native edge pushes loan events over a real WebSocket; the hub reduces
//! them into monthly statuses (its output collection) and a loan status,
//! shown by `outpost-hub status`; the figures are checked exactly in the
//! hub's database; the output documents never reach the edge, though its
//! read scope covers their ids; a late payment after a restart clears the
//! past-due flag; `outpost-hub index list|status|rebuild` on the stopped hub.

mod common;

use common::*;
use outpost::index::{IndexQuery, KeyRange};
use outpost_testkit::hub::{free_port, wait_until};
use serde_json::{Value, json};

fn mortgage_module() -> String {
    let p =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/indexes/mortgage.mjs");
    p.canonicalize().unwrap().display().to_string()
}

/// The `indexes` of database "main" in `GET /status`.
fn index_status(hub: &HubProc) -> Value {
    let (_, body) = hub.proc.get("/status");
    let v: Value = serde_json::from_str(&body).unwrap_or_default();
    v["databases"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["name"] == "main"))
        .map(|d| d["indexes"].clone())
        .unwrap_or(Value::Null)
}

fn caught_up(hub: &HubProc) -> bool {
    let s = index_status(hub);
    s.as_array()
        .is_some_and(|l| l.len() == 2 && l.iter().all(|i| i["stale"] == false))
}

async fn loan_status(hub: &HubProc) -> Value {
    let db = hub.open_db().await;
    let r = db
        .snapshot()
        .query(
            "mortgage/loan-status",
            &IndexQuery {
                range: KeyRange::Eq(json!("L1")),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!r.stale, "{r:?}");
    let feb = db
        .get(r#"MonthlyStatus/["L1","2026-02"]"#)
        .await
        .unwrap()
        .expect("the output document");
    assert!(feb.meta.flags.is_from_index());
    db.close().await.unwrap();
    r.rows[0].value.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_reduces_pushed_events_with_the_shared_module() {
    let tmp = temp_dir("indexes");
    let module = mortgage_module();
    // The edge may read and write the output collection's ids: the hub
    // still neither sends it output documents nor takes any from it.
    let edges = edge_toml(
        "bank",
        "",
        &["events/", "MonthlyStatus/"],
        &["events/", "MonthlyStatus/"],
    );
    let mut hub = HubProc::with_database(
        tmp.join("hub"),
        free_port(),
        &format!("indexes = [{module:?}]"),
        &edges,
    );
    let edb = open_edge_db(&tmp.join("bank")).await;
    let c = client(&edb, &hub.url(), "bank", "");
    wait_live(&c).await;
    let ev = |t: &str, month: &str, extra: Value| {
        let mut v = json!({ "type": t, "loan": "L1", "month": month });
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    let events = [
        ("a1", ev("approval", "2026-01", json!({ "amount": 12000 }))),
        (
            "x1",
            ev(
                "expected",
                "2026-01",
                json!({ "interest": 120, "principal": 1000 }),
            ),
        ),
        (
            "x2",
            ev(
                "expected",
                "2026-02",
                json!({ "interest": 110, "principal": 1000 }),
            ),
        ),
        (
            "x3",
            ev(
                "expected",
                "2026-03",
                json!({ "interest": 100, "principal": 1000 }),
            ),
        ),
        ("p1", ev("payment", "2026-01", json!({ "amount": 1120 }))),
        ("p2", ev("payment", "2026-02", json!({ "amount": 500 }))),
        ("p3", ev("payment", "2026-03", json!({ "amount": 1100 }))),
    ];
    for (id, body) in events {
        put(&edb, Some(&c), &format!("events/{id}"), body, "LoanEvents").await;
    }
    // Pushed and acknowledged: committed at the hub. Then both indexes
    // reflect the hub's last etag (one status reads one snapshot).
    let pushed = |c: &outpost_client::SyncHandle| {
        c.counters()
            .docs_pushed
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    wait_until(
        "the hub holds the events and its indexes caught up",
        || async { pushed(&c) >= 7 && caught_up(&hub) },
    )
    .await;
    // Give the edge time to pull anything the hub would (wrongly) send.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let leaked = state(&edb, "monthlystatus/").await;
    assert!(
        leaked.is_empty(),
        "output documents reached the edge: {leaked:?}"
    );
    // A forged monthly status pushed by the edge is refused (index_output).
    put(
        &edb,
        Some(&c),
        r#"MonthlyStatus/["L1","2026-02"]"#,
        json!({ "short": 0 }),
        "MonthlyStatus",
    )
    .await;
    let cfg = edge_cfg("bank", "");
    wait_until("the forged output is refused", || async {
        outpost_client::client_rejections(&edb, &cfg)
            .await
            .unwrap()
            .iter()
            .any(|r| r.code == "index_output")
    })
    .await;
    c.stop().await;
    hub.kill();
    assert_eq!(
        loan_status(&hub).await,
        json!({ "approved": 12000, "interestPaid": 330, "principalPaid": 2390, "outstanding": 9610, "pastDueAmount": 610, "pastDue": true })
    );

    // The operator's commands on the stopped hub.
    let (ok, out, err) = run(&hub, &["index", "list", "--json"]);
    assert!(ok, "{err}");
    let list: Value = serde_json::from_str(out.trim()).unwrap();
    let names: Vec<&str> = list["indexes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mortgage/loan-status", "mortgage/monthly-status"]);
    let (ok, out, err) = run(&hub, &["index", "status", "mortgage/loan-status"]);
    assert!(ok && out.contains("up to date"), "{out}{err}");
    let (ok, _, err) = run(&hub, &["index", "status", "nope"]);
    assert!(!ok && err.contains("no index named"), "{err}");

    // Restarted: a late catch-up payment clears the flag.
    hub.start();
    let c = client(&edb, &hub.url(), "bank", "");
    wait_live(&c).await;
    put(
        &edb,
        Some(&c),
        "events/p2b",
        ev("payment", "2026-02", json!({ "amount": 610 })),
        "LoanEvents",
    )
    .await;
    wait_until("the hub holds the late payment, indexed", || async {
        pushed(&c) >= 1 && caught_up(&hub)
    })
    .await;
    c.stop().await;
    hub.kill();
    assert_eq!(
        loan_status(&hub).await,
        json!({ "approved": 12000, "interestPaid": 330, "principalPaid": 3000, "outstanding": 9000, "pastDueAmount": 0, "pastDue": false })
    );

    // Rebuild: removed now, built again at the next start with the same figures.
    let (ok, _, err) = run(&hub, &["index", "rebuild", "mortgage/loan-status"]);
    assert!(ok, "{err}");
    let (_, out, _) = run(&hub, &["index", "list", "--json"]);
    assert!(!out.contains("loan-status"), "{out}");
    hub.start();
    wait_until("the rebuilt index caught up", || async { caught_up(&hub) }).await;
    hub.kill();
    assert_eq!(loan_status(&hub).await["outstanding"], json!(9000));
    assert!(!hub.log().contains("panicked"), "{}", hub.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_that_does_not_load_stops_the_start_naming_it() {
    let tmp = temp_dir("indexes-bad");
    let bad = tmp.join("bad.mjs");
    std::fs::write(&bad, "export const a = { name: 'a', map( };").unwrap();
    std::fs::create_dir_all(tmp.join("hub")).unwrap();
    let cfg = format!(
        "listen = \"127.0.0.1:{}\"\ndata_dir = \"data\"\n\n[[database]]\nname = \"main\"\nindexes = [{:?}]\n",
        free_port(),
        bad.display().to_string()
    );
    std::fs::write(tmp.join("hub/outpost-hub.toml"), &cfg).unwrap();
    let out = std::process::Command::new(BIN)
        .current_dir(tmp.join("hub"))
        .args(["--config", "outpost-hub.toml", "serve"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("bad.mjs") && err.contains("index module"),
        "{err}"
    );
}

fn clinic_module() -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/indexes/clinic.mjs");
    p.canonicalize().unwrap().display().to_string()
}

fn refused<T: std::fmt::Debug>(r: Result<T, outpost::Error>) {
    match r {
        Err(e) => assert_eq!(e.code(), "index_output", "{e}"),
        Ok(w) => panic!("a write to a hub output was accepted: {w:?}"),
    }
}

/// The census documents an edge holds, by id: each one's body.
async fn census(db: &Db) -> std::collections::BTreeMap<String, Value> {
    let mut out = std::collections::BTreeMap::new();
    for d in db.changes(0, 1_000_000).await.unwrap() {
        if d.id.starts_with("WardCensus/") && !d.meta.flags.is_tombstone() {
            out.insert(d.id.clone(), d.body.clone());
        }
    }
    out
}

/// A `hubComputed` index (examples/indexes/clinic.mjs): the hub computes a
/// ward census from visits; a manager granted only `wardcensus/` receives
/// the census documents and never a visit, cannot change them (refused
/// locally with `index_output`, though its write prefixes cover them), and
/// sees a ward's document go when its last patient is discharged. The nurse,
/// who may read the visits but not `wardcensus/`, receives no census.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_computed_outputs_reach_the_edges_that_may_read_them_read_only() {
    let tmp = temp_dir("indexes-shared");
    let module = clinic_module();
    let edges = format!(
        "{}{}",
        edge_toml("nurse", "", &["visits/"], &["visits/"]),
        edge_toml("manager", "", &["wardcensus/"], &["wardcensus/"])
    );
    let mut hub = HubProc::with_database(
        tmp.join("hub"),
        free_port(),
        &format!("indexes = [{module:?}]"),
        &edges,
    );
    let ndb = open_edge_db(&tmp.join("nurse")).await;
    let mdb = open_edge_db(&tmp.join("manager")).await;
    let n = client(&ndb, &hub.url(), "nurse", "");
    let m = client(&mdb, &hub.url(), "manager", "");
    wait_live(&n).await;
    wait_live(&m).await;
    let visits = [
        ("v1", "north", "flu"),
        ("v2", "north", "flu"),
        ("v3", "north", "fracture"),
        ("v4", "south", "flu"),
    ];
    for (id, ward, diagnosis) in visits {
        let body =
            json!({ "patient": format!("patient-{id}"), "ward": ward, "diagnosis": diagnosis });
        put(&ndb, Some(&n), &format!("visits/{id}"), body, "Visits").await;
    }
    let want = std::collections::BTreeMap::from([
        (
            "WardCensus/north".to_string(),
            json!({ "inpatients": 3, "byDiagnosis": { "flu": 2, "fracture": 1 } }),
        ),
        (
            "WardCensus/south".to_string(),
            json!({ "inpatients": 1, "byDiagnosis": { "flu": 1 } }),
        ),
    ]);
    wait_until("the manager receives the census", || async {
        census(&mdb).await == want
    })
    .await;
    assert!(
        state(&mdb, "visits/").await.is_empty(),
        "a visit reached the manager"
    );
    let held = mdb.get("WardCensus/north").await.unwrap().unwrap();
    assert_eq!(held.meta.source.as_deref(), Some("hub"), "{:?}", held.meta);

    // Read-only at the edge: an update, a delete, a new ward and an id
    // under the collection's prefix are all refused, offline too.
    refused(
        mdb.put_with(
            "WardCensus/north",
            json!({ "inpatients": 0 }),
            outpost::PutOptions {
                collection: Some("WardCensus".into()),
                ..Default::default()
            },
        )
        .await,
    );
    refused(mdb.put("WardCensus/east", json!({ "inpatients": 9 })).await);
    refused(mdb.put("wardcensus/west", json!({ "inpatients": 9 })).await);
    refused(mdb.delete("WardCensus/south").await);
    assert_eq!(census(&mdb).await, want);

    // The nurse may read the visits, not the census: none reaches her.
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    assert!(
        state(&ndb, "wardcensus/").await.is_empty(),
        "census documents reached an edge that may not read them"
    );

    // The last patient of the south ward leaves: its document goes, at the
    // manager too; north follows the discharge of one flu patient.
    for id in ["v4", "v1"] {
        let mut body = ndb
            .get(&format!("visits/{id}"))
            .await
            .unwrap()
            .unwrap()
            .body;
        body["discharged"] = json!(true);
        put(&ndb, Some(&n), &format!("visits/{id}"), body, "Visits").await;
    }
    let want = std::collections::BTreeMap::from([(
        "WardCensus/north".to_string(),
        json!({ "inpatients": 2, "byDiagnosis": { "flu": 1, "fracture": 1 } }),
    )]);
    wait_until("the manager's census follows the discharges", || async {
        census(&mdb).await == want
    })
    .await;
    // Nothing of the manager's refused writes was pushed.
    assert!(
        outpost_client::client_rejections(&mdb, &edge_cfg("manager", ""))
            .await
            .unwrap()
            .is_empty()
    );

    // A subject purge: the only patient of the east ward asks to be
    // forgotten. The census of east was computed from that visit alone: the
    // hub removes it with the visit, and the purge order erases the copy the
    // manager received. North, fed by other visits, stays.
    let body = json!({ "patient": "patient-v5", "ward": "east", "diagnosis": "asthma" });
    put(&ndb, Some(&n), "visits/v5", body, "Visits").await;
    wait_until("the manager receives the east census", || async {
        census(&mdb).await.contains_key("WardCensus/east")
    })
    .await;
    n.stop().await;
    m.stop().await;
    hub.kill();
    let (ok, out, err) = run(
        &hub,
        &[
            "purge",
            "--id",
            "visits/v5",
            "--by",
            "dpo@clinic",
            "--reason",
            "request 7",
        ],
    );
    assert!(ok && out.contains("purged 1 document"), "{out}{err}");
    let owed = out
        .lines()
        .find(|l| l.contains("each told to erase"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(owed.contains("manager") && owed.contains("nurse"), "{out}");
    hub.start();
    let n = client(&ndb, &hub.url(), "nurse", "");
    let m = client(&mdb, &hub.url(), "manager", "");
    wait_until("the manager erased the east census", || async {
        mdb.get("WardCensus/east").await.unwrap().is_none()
            && ndb.get("visits/v5").await.unwrap().is_none()
    })
    .await;
    wait_live(&m).await;
    assert_eq!(census(&mdb).await, want);
    n.stop().await;
    m.stop().await;
    assert!(!hub.log().contains("panicked"), "{}", hub.log());
}

/// The version of index `name` in `GET /status`, once it is caught up.
fn caught_up_version(hub: &HubProc, name: &str) -> Option<String> {
    let s = index_status(hub);
    s.as_array()?
        .iter()
        .find(|i| i["name"] == name && i["stale"] == false)
        .and_then(|i| i["version"].as_str().map(str::to_string))
}

/// A running hub follows its index modules: a changed module file is loaded
/// again (a new version built beside the old, whose outputs then replace
/// the old ones), one that no longer loads is logged while the indexes in
/// force go on, and a module that becomes `hubComputed` shares its output
/// collection with the sessions that start afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_hub_reloads_changed_index_modules() {
    let tmp = temp_dir("indexes-reload");
    let module = tmp.join("wards.mjs");
    let v1 = "export const wards = { name: 'wards', collections: ['Visits'], output: 'Wards',\n  map(v, emit) { emit(v.ward, 1); },\n  reduce(w, values) { return values.reduce((a, b) => a + b, 0); } };\n";
    std::fs::write(&module, v1).unwrap();
    let edges = format!(
        "{}{}",
        edge_toml("nurse", "", &["visits/"], &["visits/"]),
        edge_toml("manager", "", &["wards/"], &[])
    );
    let mut hub = HubProc::with_database(
        tmp.join("hub"),
        free_port(),
        &format!("indexes = [{:?}]", module.display().to_string()),
        &edges,
    );
    let ndb = open_edge_db(&tmp.join("nurse")).await;
    let n = client(&ndb, &hub.url(), "nurse", "");
    wait_live(&n).await;
    for (id, ward) in [("v1", "north"), ("v2", "north"), ("v3", "south")] {
        put(
            &ndb,
            Some(&n),
            &format!("visits/{id}"),
            json!({ "ward": ward }),
            "Visits",
        )
        .await;
    }
    // The version as seen when caught up (a visit still arriving makes the
    // index stale again, so it is not read a second time).
    let seen = std::cell::RefCell::new(None);
    wait_until("the first version caught up", || async {
        let v = caught_up_version(&hub, "wards");
        let caught_up = v.is_some();
        if caught_up {
            *seen.borrow_mut() = v;
        }
        caught_up
    })
    .await;
    let first = seen.into_inner().expect("seen when caught up");

    // A changed reduce, now shared with the edges: loaded again while running.
    let v2 = v1
        .replace(
            "values.reduce((a, b) => a + b, 0)",
            "({ inpatients: values.reduce((a, b) => a + (b.inpatients ?? b), 0) })",
        )
        .replace("output: 'Wards',", "output: 'Wards', hubComputed: true,");
    std::fs::write(&module, &v2).unwrap();
    wait_until("the changed module is built as a new version", || async {
        caught_up_version(&hub, "wards").is_some_and(|v| v != first)
    })
    .await;
    // A session that starts now receives the shared outputs, new figures.
    let mdb = open_edge_db(&tmp.join("manager")).await;
    let m = client(&mdb, &hub.url(), "manager", "");
    wait_until("the manager receives the new figures", || async {
        matches!(
            mdb.get("Wards/north").await.unwrap(),
            Some(d) if d.body == json!({ "inpatients": 2 })
        )
    })
    .await;

    // A module that no longer loads: logged; the indexes in force go on.
    std::fs::write(&module, "export const wards = { name: 'wards', map( };").unwrap();
    wait_until("the load failure is logged", || async {
        hub.log().contains("do not load")
    })
    .await;
    put(
        &ndb,
        Some(&n),
        "visits/v4",
        json!({ "ward": "north" }),
        "Visits",
    )
    .await;
    wait_until("the index in force follows the new visit", || async {
        matches!(
            mdb.get("Wards/north").await.unwrap(),
            Some(d) if d.body == json!({ "inpatients": 3 })
        )
    })
    .await;
    n.stop().await;
    m.stop().await;
    hub.kill();
    assert!(!hub.log().contains("panicked"), "{}", hub.log());
}
