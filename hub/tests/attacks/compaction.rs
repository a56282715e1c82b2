//! Tombstone compaction (protocol 7, docs/protocol.md §4 "Tombstone
//! compaction"): an edge sending the hub's `Resync` frame; a stated pull
//! checkpoint below the compaction horizon (a version 6 edge is refused
//! `unsupported_version` before anything is sent; a version 7 edge gets
//! `Resync` and is served from etag 0, its own versions too, never the
//! gap from its checkpoint); a session held mid-read while a run compacts
//! past its cursor (`Error(resync)`); and a copy of a version whose
//! deletion was compacted, pushed again unchanged (a new write of whoever
//! pushes it, within its write scope only). Checkpoints beyond the hub's
//! last etag are `protocol::pull_checkpoint_beyond_the_hubs_history`.
//!
//! The hubs here compact with `[compaction] retention_secs = 1` (no
//! automatic runs): a device not seen for more than a second no longer
//! holds compaction back, and `POST /admin/compact` runs it.

use std::time::{Duration, Instant};

use crate::common::*;

/// The hub's configuration for these cases.
const COMPACTION: &str = "[compaction]\nretention_secs = 1\ninterval_secs = 0\n";

/// A hub that compacts what any device away for a second missed.
fn compacting_hub() -> Hub {
    Hub::start_with(&[], COMPACTION)
}

/// `POST path` with a JSON body and the hub's admin token: status and body.
fn post_admin(hub: &Hub, path: &str, body: &str) -> (u16, String) {
    hub.proc().post(path, None, body)
}

/// Runs `POST /admin/compact` on database `main` until no tombstone is
/// left (every device was away past the retention, or acknowledged them):
/// returns the horizon.
async fn compact_all(hub: &Hub) -> u64 {
    // Past the retention: the devices that synced so far no longer hold
    // compaction back.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let t = Instant::now();
    let mut runs = Vec::new();
    loop {
        let (code, body) = post_admin(hub, "/admin/compact", r#"{"database":"main"}"#);
        assert_eq!(code, 200, "POST /admin/compact: {body}");
        let r: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        runs.push(r.clone());
        if r["tombstones_left"] == 0 {
            let horizon = r["horizon"].as_u64().unwrap_or(0);
            assert!(horizon > 0, "nothing was compacted: {runs:#?}");
            return horizon;
        }
        assert!(t.elapsed() < WAIT, "never compacted: {runs:#?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// An honest deletion of `id` by `h`: the change vector of what `h` holds
/// for it, its own entry moved to its next etag.
async fn honest_delete(h: &mut Hostile, id: &str, collection: &str) -> Answer {
    let own = h.push_upto + 1;
    let mut entries: Vec<(DbId, u64)> = h
        .received
        .get(id)
        .map(|d| {
            d.versions
                .iter()
                .flat_map(|v| v.change_vector.entries().to_vec())
                .filter(|(db, _)| *db != h.db_id)
                .collect()
        })
        .unwrap_or_default();
    entries.push((h.db_id, own));
    h.push(vec![doc(id, collection, tombstone(&entries))]).await
}

/// The `Hello` of `identity` for device `device`, stating pull checkpoint
/// `checkpoint` of hub database `hub_id`, offering versions 5 to `max`.
fn hello_at(identity: &str, device: DbId, checkpoint: u64, hub_id: DbId, max: u16) -> Frame {
    let mut h = Hostile::hello_frame(identity, &format!("{identity}-token"), device, checkpoint);
    if let Frame::Hello {
        checkpoint_hub,
        max_version,
        ..
    } = &mut h
    {
        *checkpoint_hub = hub_id;
        *max_version = max;
    }
    h
}

/// Connects and says `hello`, retrying over the per-identity session cap
/// (a previous session still being torn down) like an honest client:
/// the session and what the hub answered.
async fn say(hub: &Hub, hello: &Frame) -> (Hostile, Result<(), Answer>) {
    let end = Instant::now() + WAIT;
    loop {
        let mut h = hub.connect().await;
        match h.hello_with(hello.clone()).await {
            Err(a) if a.is_error("too_many_connections") && Instant::now() < end => {
                h.close().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            r => return (h, r.map(|_| ())),
        }
    }
}

/// What [`horizon_behind`] set up.
struct Behind {
    /// Mallory's device.
    device: DbId,
    /// The pull checkpoint it acknowledged (below the horizon).
    checkpoint: u64,
    /// The hub database's id.
    hub_id: DbId,
    /// The compaction horizon.
    horizon: u64,
}

/// Alice writes `shared/notes/keep`, `shared/notes/gone-1` and
/// `shared/notes/gone-2`; mallory (her device) writes `mallory/own`, is
/// caught up and leaves with a pull checkpoint; alice deletes the two
/// `gone` notes; compaction removes both tombstones (mallory away past the
/// retention). Mallory's checkpoint is then above 0 and below the horizon.
async fn horizon_behind(hub: &Hub) -> Behind {
    let mut a = hub.session("alice").await;
    for id in [
        "shared/notes/keep",
        "shared/notes/gone-1",
        "shared/notes/gone-2",
    ] {
        assert_acked(&Hub::honest_put(&mut a, id, "Notes", json!({ "id": id })).await);
    }
    let device = new_db_id();
    let mut m = hub.device("mallory", device).await;
    assert_acked(&Hub::honest_put(&mut m, "mallory/own", "Notes", json!({"m": 1})).await);
    // Caught up past its own write: everything sent is acknowledged.
    m.drain_for(Duration::from_millis(300)).await.unwrap();
    for id in ["shared/notes/keep", "shared/notes/gone-1"] {
        assert!(m.received.contains_key(id), "mallory holds {id}");
    }
    let checkpoint = m.acked;
    let hub_id = m.hub_db_id();
    assert!(checkpoint > 0);
    m.close().await;
    for id in ["shared/notes/gone-1", "shared/notes/gone-2"] {
        assert_acked(&honest_delete(&mut a, id, "Notes").await);
    }
    a.close().await;
    let horizon = compact_all(hub).await;
    assert!(
        checkpoint < horizon,
        "the deletions come after mallory's checkpoint {checkpoint} (horizon {horizon})"
    );
    Behind {
        device,
        checkpoint,
        hub_id,
        horizon,
    }
}

/// Asserts the session was served like a resync: `Resync(horizon)` before
/// any `Changes`, then everything of its read scope from 0 (mallory's own
/// document and the note written before its checkpoint included), and no
/// compacted document.
fn assert_resynced(m: &Hostile, horizon: u64) {
    assert_eq!(
        m.resyncs,
        [(horizon, 0)],
        "one Resync stating the horizon, before any Changes"
    );
    assert!(
        m.received.contains_key("shared/notes/keep"),
        "a note written before the checkpoint is sent again (served from 0, not from the checkpoint): {:?}",
        m.received.keys()
    );
    assert!(
        m.received.contains_key("mallory/own"),
        "the device's own document is sent (echo suppression off): {:?}",
        m.received.keys()
    );
    for id in ["shared/notes/gone-1", "shared/notes/gone-2"] {
        assert!(!m.received.contains_key(id), "{id} was compacted");
    }
}

/// A `Resync` frame (type 18) sent by an edge after `Hello`, or as its
/// first frame: `Error(protocol)`, the session ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_sending_resync_or_compacted_is_a_protocol_error() {
    let hub = Hub::start();
    for after_hello in [true, false] {
        let mut m = if after_hello {
            hub.mallory().await
        } else {
            hub.connect().await
        };
        m.send(&Frame::Resync { horizon: 1 }).await.unwrap();
        let a = m.until_end().await;
        assert_error(&a, "protocol");
        assert!(m.closes().await, "the hub closes the connection");
        assert!(m.resyncs.is_empty());
    }
    // `Compacted` is the hub's to send too.
    let mut m = hub.mallory().await;
    m.send(&Frame::Compacted { horizon: 1 }).await.unwrap();
    let a = m.until_end().await;
    assert_error(&a, "protocol");
    assert!(m.closes().await, "the hub closes the connection");
    hub.finish().await;
}

/// A version 6 edge whose checkpoint is below the horizon cannot be served
/// without missing deletions: `Error(unsupported_version)`, no `Welcome`,
/// no `Changes`. The same `Hello` offering version 7 is resynced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_6_edge_below_the_horizon_is_refused_not_served() {
    let hub = compacting_hub();
    let b = horizon_behind(&hub).await;
    for max in [6, 5] {
        let hello = hello_at("mallory", b.device, b.checkpoint, b.hub_id, max);
        let (mut m, r) = say(&hub, &hello).await;
        let a = r.expect_err("no Welcome for a version 6 edge below the horizon");
        assert_error(&a, "unsupported_version");
        assert!(m.welcome.is_none());
        assert_eq!(m.changes_frames, 0, "nothing was sent: {:?}", m.received);
        assert!(m.received.is_empty() && m.resyncs.is_empty());
        assert!(m.closes().await, "the hub closes the connection");
    }
    // The same device offering version 7: Welcome, Resync, served from 0.
    let (mut m, r) = say(
        &hub,
        &hello_at("mallory", b.device, b.checkpoint, b.hub_id, 7),
    )
    .await;
    r.expect("Welcome");
    assert_eq!(m.welcome.as_ref().unwrap().version, 7);
    m.pull(true).await.expect("Live");
    assert_resynced(&m, b.horizon);
    m.close().await;
    // A version 6 edge whose checkpoint is at the horizon is served.
    let (mut m, r) = say(
        &hub,
        &hello_at("mallory", new_db_id(), b.horizon, b.hub_id, 6),
    )
    .await;
    r.expect("a version 6 edge at the horizon is served");
    m.pull(true).await.expect("Live");
    assert!(m.resyncs.is_empty());
    m.close().await;
    hub.finish().await;
}

/// A version 7 edge stating a checkpoint below the horizon gets `Resync`
/// and everything from 0, never the feed from its checkpoint with the
/// compacted deletions silently missing. Once caught up, its new
/// checkpoint (above the horizon) is served normally, without a resync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stated_checkpoint_below_the_horizon_gets_a_resync_not_the_deletions_gap() {
    let hub = compacting_hub();
    let b = horizon_behind(&hub).await;
    let (mut m, r) = say(
        &hub,
        &hello_at("mallory", b.device, b.checkpoint, b.hub_id, 7),
    )
    .await;
    r.expect("Welcome");
    let w = m.welcome.clone().unwrap();
    assert!(w.pending >= 2, "pending counts from 0: {w:?}");
    m.pull(true).await.expect("Live");
    assert_resynced(&m, b.horizon);
    let caught_up = m.acked;
    assert!(caught_up >= b.horizon, "{caught_up} < {}", b.horizon);
    m.close().await;
    // The hub's stderr is read by another thread: the line may come a little
    // after the frames it went with.
    let t = Instant::now();
    while !hub
        .proc()
        .log()
        .lines()
        .any(|l| l.contains("edge resyncs") && l.contains("mallory"))
    {
        assert!(
            t.elapsed() < WAIT,
            "the hub logs mallory's resync:\n{}",
            hub.proc().log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Resumed from where the resync got it: no resync, nothing again.
    let (mut m, r) = say(&hub, &hello_at("mallory", b.device, caught_up, b.hub_id, 7)).await;
    r.expect("Welcome");
    m.pull(true).await.expect("Live");
    assert!(m.resyncs.is_empty(), "{:?}", m.resyncs);
    assert!(
        !m.received.contains_key("shared/notes/keep"),
        "served from its checkpoint: {:?}",
        m.received.keys()
    );
    m.close().await;
    // The hub's state: the kept note and mallory's own, nothing deleted back.
    let v = hub.view().await;
    assert!(v.contains_key("shared/notes/keep") && v.contains_key("mallory/own"));
    for id in ["shared/notes/gone-1", "shared/notes/gone-2"] {
        assert!(!v.contains_key(id), "{id} came back: {:?}", v[id]);
    }
    hub.finish().await;
}

/// `hostile` receives alice's `id` (version v), leaves; alice deletes it;
/// the tombstone is compacted; `hostile` comes back (resynced) and pushes
/// v again, unchanged (its change vector is alice's entry only). Returns
/// the hub, the answer, and v's change vector as text.
async fn push_back_compacted(hostile: &str, id: &str) -> (Hub, Answer, String) {
    let hub = compacting_hub();
    let mut a = hub.session("alice").await;
    assert_acked(&Hub::honest_put(&mut a, id, "Notes", json!({"v": "alice's"})).await);
    let device = new_db_id();
    let m = hub.device(hostile, device).await;
    let v = m
        .received
        .get(id)
        .cloned()
        .unwrap_or_else(|| panic!("{hostile} received {id}"));
    let checkpoint = m.acked;
    let hub_id = m.hub_db_id();
    m.close().await;
    assert_acked(&honest_delete(&mut a, id, "Notes").await);
    a.close().await;
    let horizon = compact_all(&hub).await;
    assert!(checkpoint < horizon);
    let (mut m, r) = say(&hub, &hello_at(hostile, device, checkpoint, hub_id, 7)).await;
    r.expect("Welcome");
    m.pull(true).await.expect("Live");
    assert_eq!(m.resyncs.len(), 1, "{hostile} is resynced");
    assert!(!m.received.contains_key(id), "{id} was compacted");
    // An honest edge pushes nothing while it resyncs; this one pushes the
    // copy it held, unchanged.
    let cv_text = v.versions[0].change_vector.to_text();
    assert!(
        v.versions[0]
            .change_vector
            .entries()
            .iter()
            .all(|(db, _)| *db == a_db(&v)),
        "v names alice's device only"
    );
    let ans = m.push(vec![v]).await;
    m.close().await;
    (hub, ans, cv_text)
}

/// The device of the first entry of `d`'s winner (alice's, here).
fn a_db(d: &WireDoc) -> DbId {
    d.versions[0].change_vector.entries()[0].0
}

/// Mallory may write `shared/`: the copy is accepted like any informed
/// edit, and the audit trail attributes that push to mallory (device,
/// key), whoever's entry the change vector names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_copy_of_a_compacted_deletions_old_version_is_the_pushers_write() {
    const ID: &str = "shared/notes/x";
    let (hub, a, cv_text) = push_back_compacted("mallory", ID).await;
    assert_acked(&a);
    let d = hub.doc(ID).await;
    assert_eq!(body(&d), json!({"v": "alice's"}));
    let (_, audit, who) = hub
        .finish_audited_then(|dir| {
            let out = std::process::Command::new(BIN)
                .current_dir(dir)
                .args(["--config", "outpost-hub.toml", "audit", "who", ID])
                .args([format!("--cv={cv_text}")])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).to_string()
        })
        .await;
    let pushes: Vec<&Value> = audit
        .iter()
        .filter(|l| {
            l["kind"] == "push_accepted"
                && l["record"]["docs"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|d| d["id"] == ID))
        })
        .collect();
    let who_pushed: Vec<&str> = pushes
        .iter()
        .map(|l| l["record"]["identity"].as_str().unwrap())
        .collect();
    // Alice's write, her deletion, then mallory's copy.
    assert_eq!(who_pushed, ["alice", "alice", "mallory"], "{pushes:#?}");
    assert!(
        who.contains("written by identity mallory"),
        "audit who names mallory for the version she pushed: {who}"
    );
    // The same change vector was carried by alice's original push too: the
    // trail lists both, mallory's last.
    assert!(who.contains("written by identity alice"), "{who}");
    assert!(
        who.rfind("written by identity mallory") > who.rfind("written by identity alice"),
        "{who}"
    );
    let mallory_key = outpost_testkit::keys::public_key("mallory").fingerprint();
    assert!(who.contains(&mallory_key), "{who}");
}

/// Bob reads `alice/` but may not write there: the same copy pushed back
/// is refused `write_denied`, and the document stays gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_copy_of_a_compacted_deletions_old_version_outside_the_write_scope_is_refused() {
    const ID: &str = "alice/notes/x";
    let (hub, a, _) = push_back_compacted("bob", ID).await;
    assert_refused(&a, "write_denied", ID);
    assert!(!hub.view().await.contains_key(ID), "{ID} came back");
    let (export, _) = hub.finish_audited().await;
    assert!(!export.contains_key(ID));
}

/// A session from a checkpoint below which nothing was compacted yet, held
/// mid-read (it does not acknowledge, so the hub stops after its window of
/// `Changes`), while a run compacts a deletion its cursor has not reached:
/// its next read ends it with `Error(resync)`, never skipping the gap; the
/// same `Hello` again is resynced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_overtaken_by_compaction_mid_read_ends_with_resync() {
    const BULK: usize = 2_200;
    let hub = compacting_hub();
    let mut a = hub.session("alice").await;
    assert_acked(&Hub::honest_put(&mut a, "shared/notes/gone", "Notes", json!({})).await);
    let device = new_db_id();
    let m = hub.device("mallory", device).await;
    assert!(m.received.contains_key("shared/notes/gone"));
    let (checkpoint, hub_id) = (m.acked, m.hub_db_id());
    m.close().await;
    // More than the window of `Changes` (4 × 500 documents) after the
    // checkpoint, then the deletion.
    for chunk in (0..BULK).collect::<Vec<_>>().chunks(500) {
        let base = a.push_upto;
        let docs = chunk
            .iter()
            .enumerate()
            .map(|(k, i)| {
                doc(
                    &format!("shared/bulk/{i:05}"),
                    "Notes",
                    live(&[(a.db_id, base + k as u64 + 1)], b"{}"),
                )
            })
            .collect();
        a.push_upto = base + chunk.len() as u64 - 1;
        assert_acked(&a.push(docs).await);
    }
    assert_acked(&honest_delete(&mut a, "shared/notes/gone", "Notes").await);
    a.close().await;

    let (mut m, r) = say(&hub, &hello_at("mallory", device, checkpoint, hub_id, 7)).await;
    r.expect("Welcome: nothing compacted yet");
    m.auto_ack = false;
    m.drain_for(Duration::from_secs(2)).await.expect("open");
    assert!(m.resyncs.is_empty());
    assert!(!m.live, "held mid-read: {} Changes", m.changes_frames);
    assert!(m.changes_frames > 0);
    let cursor = m.seen_upto;
    let horizon = compact_all(&hub).await;
    assert!(cursor < horizon, "the deletion is past the cursor");
    m.send(&Frame::ChangesAck { upto: cursor }).await.unwrap();
    let end = m.until_end().await;
    assert_error(&end, "resync");
    assert!(
        !m.live && m.seen_upto == cursor,
        "nothing was sent past the cursor"
    );
    m.close().await;
    // Reconnecting from the same checkpoint: Resync, served from 0.
    let (mut m, r) = say(&hub, &hello_at("mallory", device, checkpoint, hub_id, 7)).await;
    r.expect("Welcome");
    m.pull(true).await.expect("Live");
    assert_eq!(m.resyncs, [(horizon, 0)]);
    assert_eq!(
        m.received
            .keys()
            .filter(|k| k.starts_with("shared/bulk/"))
            .count(),
        BULK
    );
    assert!(!m.received.contains_key("shared/notes/gone"));
    m.close().await;
    hub.finish().await;
}
