//! Write safety `replicated` with real processes (issue "Deletes that mean
//! something" §4): a native edge writes locally, then waits for the real
//! hub's acknowledgement; a write the hub refuses says why; with the hub
//! down the wait times out with `not_replicated`, the write stays stored
//! locally and replicates once the hub is back.

mod common;

use std::time::Duration;

use common::*;
use outpost::Expected;
use outpost::sync::SyncStatus;
use outpost_client::{HubOp, HubWriteError, NotReplicated};
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

/// Write safety `hub`: 20 native edges race to claim one winner document
/// with "must not exist"; exactly one succeeds, every other gets a typed
/// conflict naming the hub's version, nothing is written at a loser, and
/// every edge converges on the same winner. The audit trail attributes the
/// winning write to its key and `audit verify` checks its signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_edges_race_for_one_winner_and_exactly_one_wins() {
    const N: usize = 20;
    let tmp = temp_dir("lottery");
    let names: Vec<String> = (0..N).map(|i| format!("p{i}")).collect();
    let edges: String = names
        .iter()
        .map(|n| edge_toml(n, "", &["lottery/"], &["lottery/"]))
        .collect();
    let mut hub = HubProc::new(tmp.join("hub"), free_port(), &edges);
    let mut dbs = Vec::new();
    let mut clients = Vec::new();
    for n in &names {
        let db = open_edge_db(&tmp.join(n)).await;
        clients.push(client(&db, &hub.url(), n, ""));
        dbs.push(db);
    }
    for c in &clients {
        wait_live(c).await;
    }
    let clients = std::sync::Arc::new(clients);
    let mut races = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let (clients, n) = (clients.clone(), n.clone());
        races.push(tokio::spawn(async move {
            let op = HubOp::put("lottery/winner", json!({ "winner": n }), Expected::Missing);
            clients[i]
                .write_at_hub(&[op], Duration::from_secs(60))
                .await
        }));
    }
    let mut winners = Vec::new();
    for (i, r) in races.into_iter().enumerate() {
        match r.await.unwrap() {
            Ok(cvs) => {
                assert_eq!(cvs.len(), 1);
                winners.push((i, cvs[0].clone()));
            }
            Err(e @ HubWriteError::Conflict { .. }) => {
                assert_eq!(e.code(), "conflict");
                let HubWriteError::Conflict { id, current } = &e else {
                    unreachable!()
                };
                assert_eq!(id, "lottery/winner");
                assert!(!current.is_empty(), "the conflict names the winner: {e}");
            }
            Err(e) => panic!("edge p{i}: expected a win or a conflict, got {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one winner: {winners:?}");
    let (w, cv) = winners.pop().unwrap();
    // The winner holds it when its call returns (it pulled it).
    let got = dbs[w].get("lottery/winner").await.unwrap().unwrap();
    assert_eq!(got.body["winner"], json!(names[w]));
    assert_eq!(got.meta.change_vector, cv);
    // Everyone converges on the same winner, with the hub's version.
    for (i, db) in dbs.iter().enumerate() {
        wait_until(&format!("p{i} sees the winner"), || async {
            db.get("lottery/winner")
                .await
                .unwrap()
                .is_some_and(|d| d.meta.change_vector == cv)
        })
        .await;
        let d = db.get("lottery/winner").await.unwrap().unwrap();
        assert_eq!(d.body["winner"], json!(names[w]), "p{i}");
        assert!(d.conflicts.is_empty(), "p{i}: no conflict");
    }
    // The losers wrote nothing: their edge databases hold one version,
    // received from the hub, and they push nothing.
    for (i, db) in dbs.iter().enumerate() {
        assert_eq!(db.stats().last_etag, 1, "p{i}: only the winner, as pulled");
    }
    for c in std::sync::Arc::try_unwrap(clients).ok().unwrap() {
        c.stop().await;
    }
    hub.kill();
    let out = std::process::Command::new(BIN)
        .current_dir(&hub.dir)
        .args(["--config", "outpost-hub.toml", "audit", "verify"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("1 signatures"),
        "the winning write's signature: {text}"
    );
    let out = std::process::Command::new(BIN)
        .current_dir(&hub.dir)
        .args(["--config", "outpost-hub.toml", "audit", "export"])
        .output()
        .unwrap();
    let trail = String::from_utf8_lossy(&out.stdout).to_string();
    let writes: Vec<&str> = trail
        .lines()
        .filter(|l| l.contains("\"hub_write\""))
        .collect();
    assert_eq!(writes.len(), 1, "{trail}");
    assert!(
        writes[0].contains(&format!("\"identity\":\"{}\"", names[w])),
        "{}",
        writes[0]
    );
    assert!(
        !trail.contains(&format!("\"winner\":\"{}\"", names[w])),
        "no body in the trail"
    );
}

/// A uniqueness reservation through compare-and-set documents: a username
/// is claimed by creating `usernames/<name>` ("must not exist"); a second
/// claim is a conflict, a transaction claims a name and writes the profile
/// all or nothing, an update against a stale change vector is a conflict,
/// a released name (deleted against its current vector) can be claimed
/// again. With the hub down a `hub` write fails (offline, not a timeout)
/// and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_username_is_reserved_once_through_compare_and_set() {
    let tmp = temp_dir("usernames");
    let edges = edge_toml(
        "alice",
        "",
        &["usernames/", "profiles/"],
        &["usernames/", "profiles/"],
    ) + &edge_toml(
        "bob",
        "",
        &["usernames/", "profiles/"],
        &["usernames/", "profiles/"],
    ) + &edge_toml("carol", "", &["usernames/"], &["usernames/", "secrets/"]);
    let mut hub = HubProc::new(tmp.join("hub"), free_port(), &edges);
    let adb = open_edge_db(&tmp.join("alice")).await;
    let bdb = open_edge_db(&tmp.join("bob")).await;
    let cdb = open_edge_db(&tmp.join("carol")).await;
    let ca = client(&adb, &hub.url(), "alice", "");
    let cb = client(&bdb, &hub.url(), "bob", "");
    let cc = client(&cdb, &hub.url(), "carol", "");
    for c in [&ca, &cb, &cc] {
        wait_live(c).await;
    }
    let t = Duration::from_secs(60);
    let claim = |name: &str, who: &str| {
        [
            HubOp::put(
                format!("usernames/{name}"),
                json!({ "owner": who }),
                Expected::Missing,
            ),
            HubOp::put(
                format!("profiles/{who}"),
                json!({ "username": name }),
                Expected::Any,
            ),
        ]
    };

    // alice claims "ada" with her profile, in one transaction.
    let cvs = ca.write_at_hub(&claim("ada", "alice"), t).await.unwrap();
    assert_eq!(cvs.len(), 2);
    assert_eq!(
        adb.get("usernames/ada").await.unwrap().unwrap().body["owner"],
        json!("alice")
    );
    // bob's claim of the same name (another case) conflicts: nothing of
    // his transaction is written, his profile neither.
    let e = cb.write_at_hub(&claim("ADA", "bob"), t).await.unwrap_err();
    assert_eq!(e.code(), "conflict", "{e}");
    assert!(e.to_string().contains("nothing was written"), "{e}");
    wait_until("bob sees alice's claim", || async {
        bdb.get("usernames/ada").await.unwrap().is_some()
    })
    .await;
    assert!(bdb.get("profiles/bob").await.unwrap().is_none());
    // bob claims another name.
    cb.write_at_hub(&claim("bob", "bob"), t).await.unwrap();

    // An update against a stale vector is a conflict; against the current
    // one it applies.
    let cur = adb.get("usernames/ada").await.unwrap().unwrap();
    let cv = cur.meta.change_vector.clone();
    let upd = |cv: &outpost::ChangeVector, n: u32| {
        [HubOp::put(
            "usernames/ada",
            json!({ "owner": "alice", "n": n }),
            Expected::Cv(cv.clone()),
        )]
    };
    let cv2 = ca.write_at_hub(&upd(&cv, 1), t).await.unwrap().remove(0);
    let e = ca.write_at_hub(&upd(&cv, 2), t).await.unwrap_err();
    match &e {
        HubWriteError::Conflict { current, .. } => assert_eq!(current, &cv2.to_text()),
        other => panic!("{other}"),
    }
    // alice releases the name (a delete against its current vector); bob
    // may claim it then.
    ca.write_at_hub(&[HubOp::delete("usernames/ada", Expected::Cv(cv2))], t)
        .await
        .unwrap();
    cb.write_at_hub(&claim("ada", "bob"), t).await.unwrap();
    assert_eq!(
        bdb.get("usernames/ada").await.unwrap().unwrap().body["owner"],
        json!("bob")
    );
    wait_until("alice sees bob's claim", || async {
        adb.get("usernames/ada")
            .await
            .unwrap()
            .is_some_and(|d| d.body["owner"] == json!("bob"))
    })
    .await;

    // Refusals: outside the write prefixes, and a write carol could not
    // read back (a compare-and-set is a read).
    let e = cc
        .write_at_hub(
            &[HubOp::put("profiles/carol", json!({}), Expected::Missing)],
            t,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "write_denied", "{e}");
    let e = cc
        .write_at_hub(&[HubOp::put("secrets/x", json!({}), Expected::Missing)], t)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "write_denied", "{e}");
    assert!(e.to_string().contains("may not read"), "{e}");
    assert_eq!(
        cdb.stats().documents,
        2,
        "carol holds what she pulled, nothing more"
    );

    // The hub is down: a `hub` write fails at once (offline), and nothing
    // is written locally.
    hub.kill();
    assert!(
        ca.wait_for(WAIT, |s| !matches!(s, SyncStatus::Live)).await,
        "alice notices the hub is gone"
    );
    let before = adb.stats().last_etag;
    let e = ca
        .write_at_hub(&claim("zed", "alice"), Duration::from_secs(30))
        .await
        .unwrap_err();
    // Offline (or unknown), not `timeout`: it did not wait for the hub.
    assert!(matches!(e.code(), "offline" | "unknown"), "{e}");
    assert_eq!(adb.stats().last_etag, before, "nothing written locally");
    assert!(adb.get("usernames/zed").await.unwrap().is_none());
    for c in [ca, cb, cc] {
        c.stop().await;
    }
}
