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
