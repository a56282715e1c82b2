//! The set-up every attack shares: a fresh hub process with the identities
//! and policies the catalogue needs, sessions for the hostile and honest
//! identities, and the checks made after every attack.
//!
//! Configuration of every hub (database `main`):
//!
//! | identity   | reads                                    | writes                              |
//! |------------|------------------------------------------|-------------------------------------|
//! | `mallory`  | `shared/`, `mallory/`                    | `shared/`, `mallory/`, `drop/`      |
//! | `mallory2` | `shared/`                                | `shared/`, `drop/`                  |
//! | `alice`    | `shared/`, `drop/`, `alice/`, `kiosk/`   | `shared/`, `drop/`, `alice/`, `kiosk/` |
//! | `bob`      | everything but `bob/`'s neighbours: `shared/`, `drop/`, `alice/`, `mallory/`, `kiosk/`, `bob/` | `bob/` |
//! | `reader`   | `*`                                      | nothing                             |
//!
//! `drop/` is write-only for `mallory` and `mallory2` (create-only, no
//! existence oracle). Policies: `Cards` = `manual`, `Ledger` = `hub-wins`,
//! `Notes` and the default = `latest`. Every identity is its key
//! ([`outpost_testkit::keys::key_for`]): sessions prove it and sign their
//! batches (the hostile client does it for them); the `<name>-token`
//! arguments are not used (tokens are off: no `[dev]`).

#![allow(dead_code, unused_imports)]

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use outpost::PutOptions;
use outpost::store::MemoryStore;
use outpost::sync::{EdgeConfig, SyncStatus};
use outpost_client::{ClientOptions, spawn_edge};
use outpost_testkit::hub::{HubProcess, free_port};
use outpost_testkit::{TempDir, key_edge_toml, keys};

/// One `[[edge]]` with the identity's key (the token is not used).
pub fn edge_toml(name: &str, _token: &str, read: &[&str], write: &[&str]) -> String {
    key_edge_toml(name, read, write)
}

pub use outpost::DbId;
pub use outpost::sync::{Frame, WireDoc};
pub use outpost_testkit::hostile::{
    Answer, Hostile, Incoming, RawDoc, RawVer, body_text, cv, doc, docv, live, new_db_id, now_ms,
    push_frame, tombstone,
};
pub use serde_json::{Value, json};

/// The hub binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_outpost-hub");

/// The longest the honest after-checks wait.
pub const WAIT: Duration = Duration::from_secs(20);

/// The edges of every attack hub.
pub fn edges() -> String {
    edge_toml(
        "mallory",
        "mallory-token",
        &["shared/", "mallory/"],
        &["shared/", "mallory/", "drop/"],
    ) + &edge_toml(
        "mallory2",
        "mallory2-token",
        &["shared/"],
        &["shared/", "drop/"],
    ) + &edge_toml(
        "alice",
        "alice-token",
        &["shared/", "drop/", "alice/", "kiosk/"],
        &["shared/", "drop/", "alice/", "kiosk/"],
    ) + &edge_toml(
        "bob",
        "bob-token",
        &["shared/", "drop/", "alice/", "mallory/", "kiosk/", "bob/"],
        &["bob/"],
    ) + &edge_toml("reader", "reader-token", &["*"], &[])
}

/// Writes the hub's configuration: `extra` TOML, database `main` with its
/// policies, then `edges`.
pub fn write_config(dir: &std::path::Path, port: u16, extra: &str, edges: &str) {
    write_config_with(dir, port, extra, "", edges)
}

/// [`write_config`] with more keys (`db_keys`, TOML lines) in database
/// `main`'s table.
pub fn write_config_with(
    dir: &std::path::Path,
    port: u16,
    extra: &str,
    db_keys: &str,
    edges: &str,
) {
    let cfg = format!(
        "listen = \"127.0.0.1:{port}\"\ndata_dir = \"data\"\n{extra}\n\n[[database]]\nname = \"main\"\nnever_delete = [\"Invoices\"]\n{db_keys}\n[database.conflicts]\n\"*\" = \"latest\"\nCards = \"manual\"\nLedger = \"hub-wins\"\nNotes = \"latest\"\n\n{edges}"
    );
    // Written whole then renamed: the running hub never reads half a file.
    let tmp = dir.join("outpost-hub.toml.tmp");
    std::fs::write(&tmp, cfg).unwrap();
    std::fs::rename(&tmp, dir.join("outpost-hub.toml")).unwrap();
}

/// A document seeded by `outpost-hub import` before the hub starts: its
/// change vector is the hub's own entry only.
pub struct Seed<'a> {
    /// Id.
    pub id: &'a str,
    /// Collection.
    pub collection: &'a str,
    /// Body.
    pub body: Value,
}

/// `Seed { id, collection, body }`.
pub fn seed<'a>(id: &'a str, collection: &'a str, body: Value) -> Seed<'a> {
    Seed {
        id,
        collection,
        body,
    }
}

/// A hub process for one attack, killed on drop.
pub struct Hub {
    tmp: TempDir,
    proc: Option<HubProcess>,
    port: u16,
}

impl Hub {
    /// A hub with the standard configuration and no documents.
    pub fn start() -> Hub {
        Hub::start_with(&[], "")
    }

    /// A hub with `seeds` imported before it starts.
    pub fn seeded(seeds: &[Seed<'_>]) -> Hub {
        Hub::start_with(seeds, "")
    }

    /// A hub with `seeds` and `extra` TOML appended to the configuration.
    pub fn start_with(seeds: &[Seed<'_>], extra: &str) -> Hub {
        let tmp = TempDir::new(std::env::temp_dir(), "outpost-attack");
        let port = free_port();
        write_config(tmp.path(), port, extra, &edges());
        if !seeds.is_empty() {
            let lines: String = seeds
                .iter()
                .map(|s| {
                    let mut b = s.body.clone();
                    b["@metadata"] = json!({"@id": s.id, "@collection": s.collection});
                    format!("{b}\n")
                })
                .collect();
            std::fs::write(tmp.join("seed.jsonl"), lines).unwrap();
            let out = Command::new(BIN)
                .current_dir(tmp.path())
                .args(["--config", "outpost-hub.toml", "import", "seed.jsonl"])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "import: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let proc = HubProcess::start(BIN, tmp.path(), &[]);
        Hub {
            tmp,
            proc: Some(proc),
            port,
        }
    }

    /// A hub whose database `main` has the index module `module` (its
    /// source, written beside the configuration).
    pub fn start_indexed(module: &str) -> Hub {
        let tmp = TempDir::new(std::env::temp_dir(), "outpost-attack");
        let port = free_port();
        std::fs::write(tmp.join("indexes.mjs"), module).unwrap();
        write_config_with(
            tmp.path(),
            port,
            "",
            "indexes = [\"indexes.mjs\"]",
            &edges(),
        );
        let proc = HubProcess::start(BIN, tmp.path(), &[]);
        Hub {
            tmp,
            proc: Some(proc),
            port,
        }
    }

    /// A hub with the standard configuration plus `more` `[[edge]]` tables.
    pub fn start_with_edges(more: &str) -> Hub {
        let tmp = TempDir::new(std::env::temp_dir(), "outpost-attack");
        let port = free_port();
        write_config(tmp.path(), port, "", &(edges() + more));
        let proc = HubProcess::start(BIN, tmp.path(), &[]);
        Hub {
            tmp,
            proc: Some(proc),
            port,
        }
    }

    /// The configuration file as the hub has it now.
    pub fn config_text(&self) -> String {
        std::fs::read_to_string(self.tmp.join("outpost-hub.toml")).unwrap()
    }

    /// [`Hub::finish`], then (hub stopped) `outpost-hub audit verify` must
    /// pass (hash chain, every signature, every identity's chain of
    /// batches); returns the export and the audit trail (`audit export`
    /// lines).
    pub async fn finish_audited(self) -> (BTreeMap<String, Value>, Vec<Value>) {
        let (export, lines, ()) = self.finish_audited_then(|_| ()).await;
        (export, lines)
    }

    /// [`Hub::finish_audited`], then `after` on the stopped hub's
    /// directory (for more commands, such as `edge status`).
    pub async fn finish_audited_then<T>(
        mut self,
        after: impl FnOnce(&std::path::Path) -> T,
    ) -> (BTreeMap<String, Value>, Vec<Value>, T) {
        self.assert_alive();
        self.assert_honest_edges_unaffected().await;
        self.assert_alive();
        let export = self.stop_and_export();
        let run = |args: &[&str]| {
            Command::new(BIN)
                .current_dir(self.tmp.path())
                .args(["--config", "outpost-hub.toml"])
                .args(args)
                .output()
                .unwrap()
        };
        let v = run(&["audit", "verify"]);
        assert!(
            v.status.success(),
            "audit verify: {}{}",
            String::from_utf8_lossy(&v.stdout),
            String::from_utf8_lossy(&v.stderr)
        );
        let out = run(&["audit", "export"]);
        assert!(out.status.success());
        let lines = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let t = after(self.tmp.path());
        (export, lines, t)
    }

    /// Replaces the `[[edge]]` entries of the running hub's configuration
    /// (it re-reads the file within a second).
    pub fn set_edges(&self, edges: &str) {
        write_config(self.tmp.path(), self.port, "", edges);
    }

    /// Kills the hub (SIGKILL) and starts it again on the same port.
    pub fn restart(&mut self) {
        self.proc.as_mut().expect("the hub is running").restart();
    }

    /// `ws://127.0.0.1:PORT/sync`.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/sync", self.port)
    }

    /// The hub's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The running process.
    pub fn proc(&self) -> &HubProcess {
        self.proc.as_ref().expect("the hub is running")
    }

    /// The hub's directory.
    pub fn dir(&self) -> &std::path::Path {
        self.tmp.path()
    }

    /// A fresh WebSocket, nothing sent yet.
    pub async fn connect(&self) -> Hostile {
        Hostile::connect(&self.url()).await.expect("connect")
    }

    /// A session of `identity` (its key, a new device) offering protocol
    /// versions up to `max`, caught up with everything it may read.
    pub async fn session_at(&self, identity: &str, max: u16) -> Hostile {
        let mut m = self.connect().await;
        let key = outpost_testkit::keys::registered(identity).expect("a key identity");
        let mut hello = Hostile::hello_key_frame(identity, &key, new_db_id(), 0);
        if let Frame::Hello { max_version, .. } = &mut hello {
            *max_version = max;
        }
        let w = m.hello_with(hello).await.expect("welcome");
        assert_eq!(w.version, max, "the hub speaks version {max}");
        m.pull(true).await.unwrap();
        m
    }

    /// A session of `identity` (a new device, pull checkpoint 0), caught up
    /// with everything it may read, every `Changes` acknowledged.
    pub async fn session(&self, identity: &str) -> Hostile {
        self.device(identity, new_db_id()).await
    }

    /// A session of `identity` stating database id `db`, caught up.
    pub async fn device(&self, identity: &str, db: DbId) -> Hostile {
        let token = format!("{identity}-token");
        let mut h = Hostile::connect_hello(&self.url(), identity, &token, db, WAIT)
            .await
            .unwrap_or_else(|a| panic!("{identity}'s Hello: {a:?}"));
        h.pull(true)
            .await
            .unwrap_or_else(|a| panic!("{identity}'s initial pull: {a:?}"));
        h
    }

    /// A session of `identity` that has sent `Hello` but not read anything.
    pub async fn hello_only(&self, identity: &str) -> Hostile {
        let token = format!("{identity}-token");
        Hostile::connect_hello(&self.url(), identity, &token, new_db_id(), WAIT)
            .await
            .unwrap_or_else(|a| panic!("{identity}'s Hello: {a:?}"))
    }

    /// The hostile edge, caught up.
    pub async fn mallory(&self) -> Hostile {
        self.session("mallory").await
    }

    /// Everything the read-everything identity receives now, by id. Panics
    /// (naming the answer) if its feed stops: that is a poisoned hub.
    pub async fn view(&self) -> BTreeMap<String, WireDoc> {
        let mut h =
            Hostile::connect_hello(&self.url(), "reader", "reader-token", new_db_id(), WAIT)
                .await
                .unwrap_or_else(|a| panic!("the reader's Hello: {a:?}"));
        if let Err(a) = h.pull(true).await {
            panic!("the honest reader's feed stopped: {a:?}");
        }
        let r = std::mem::take(&mut h.received);
        h.close().await;
        r
    }

    /// The document `id` as the reader receives it (panics if absent).
    pub async fn doc(&self, id: &str) -> WireDoc {
        let v = self.view().await;
        v.get(id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} is not at the hub; it holds {:?}", v.keys()))
    }

    /// An honest write by `h`: the change vector of what `h` received for
    /// `id` (every version), plus its own next etag.
    pub async fn honest_put(h: &mut Hostile, id: &str, collection: &str, body: Value) -> Answer {
        let own = h.push_upto + 1;
        let mut entries: Vec<(DbId, u64)> = h
            .received
            .get(id)
            .map(|d| {
                d.versions
                    .iter()
                    .flat_map(|v| v.change_vector.entries().to_vec())
                    .collect()
            })
            .unwrap_or_default();
        entries.push((h.db_id, own));
        let d = doc(id, collection, live(&entries, body.to_string().as_bytes()));
        let a = h.push(vec![d.clone()]).await;
        if matches!(a, Answer::PushAck { .. }) {
            h.received.insert(id.to_string(), d);
        }
        a
    }

    /// Alice (honest) writes `id`; panics unless acknowledged. Returns her
    /// session (its db id is in the document's change vector).
    pub async fn alice_writes(&self, id: &str, collection: &str, body: Value) -> Hostile {
        let mut a = self.session("alice").await;
        let r = Hub::honest_put(&mut a, id, collection, body).await;
        assert!(matches!(r, Answer::PushAck { .. }), "alice's write: {r:?}");
        a
    }

    /// The hub answers health checks, and never logged a panic.
    pub fn assert_alive(&self) {
        let (code, body) = self.proc().get("/healthz");
        assert_eq!(code, 200, "healthz: {body}");
        let log = self.proc().log();
        assert!(!log.contains("panicked"), "the hub panicked:\n{log}");
    }

    /// Other edges are unaffected: real native clients (`outpost-client`)
    /// of alice and bob connect, go live, and a write alice makes now
    /// reaches bob.
    pub async fn assert_honest_edges_unaffected(&self) {
        let adb = outpost_testkit::open(&Arc::new(MemoryStore::new())).await;
        let bdb = outpost_testkit::open(&Arc::new(MemoryStore::new())).await;
        let cfg = |who: &str| {
            let mut e = EdgeConfig::with_key("main", who, keys::public_key(who));
            e.heartbeat_ms = 2_000;
            e.timeout_ms = 6_000;
            ClientOptions {
                url: self.url(),
                edge: e,
                ca_cert: None,
                signer: Some(keys::signer(who)),
                client_cert: None,
            }
        };
        let ca = spawn_edge(adb.clone(), cfg("alice"), None);
        let cb = spawn_edge(bdb.clone(), cfg("bob"), None);
        for (who, c) in [("alice", &ca), ("bob", &cb)] {
            assert!(
                c.wait_for(WAIT, |s| matches!(s, SyncStatus::Live)).await,
                "{who}'s honest client never went live: {:?}",
                c.status()
            );
        }
        let id = format!("shared/after-attack-{}", now_ms());
        adb.put_with(
            &id,
            json!({"honest": true}),
            PutOptions {
                collection: Some("Notes".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        ca.local_changed();
        let t = std::time::Instant::now();
        loop {
            if let Some(d) = bdb.get(&id).await.unwrap() {
                assert_eq!(d.body["honest"], json!(true));
                break;
            }
            assert!(
                t.elapsed() < WAIT,
                "bob never received alice's write made after the attack ({:?} / {:?})",
                ca.status(),
                cb.status()
            );
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        ca.stop().await;
        cb.stop().await;
    }

    /// Stops the hub (cleanly), runs `outpost-hub purge ARGS --by
    /// operator` on it (asserting it succeeds) and starts it again on the
    /// same port. Returns what the command printed.
    pub fn purge(&mut self, args: &[&str]) -> String {
        let p = self.proc.take().expect("the hub is running");
        p.terminate();
        let out = Command::new(BIN)
            .current_dir(self.tmp.path())
            .args(["--config", "outpost-hub.toml", "purge", "--by", "operator"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "purge failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.proc = Some(HubProcess::start(BIN, self.tmp.path(), &[]));
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Stops the hub (cleanly) and exports its database: id → JSON line.
    /// Panics if the export fails.
    pub fn stop_and_export(&mut self) -> BTreeMap<String, Value> {
        let p = self.proc.take().expect("the hub is running");
        p.terminate();
        let out = Command::new(BIN)
            .current_dir(self.tmp.path())
            .args(["--config", "outpost-hub.toml", "export", "export.jsonl"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "export failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(self.tmp.join("export.jsonl")).unwrap();
        let mut out = BTreeMap::new();
        for l in text.lines() {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("export line {l:?} is not JSON: {e}"));
            let id = v["@metadata"]["@id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if let Some(first) = out.insert(id.clone(), v) {
                panic!("two export lines claim id {id:?} (the first: {first})");
            }
        }
        out
    }

    /// The checks after every attack: the hub is alive, honest edges are
    /// unaffected, and (hub stopped) `export` works. Returns the export.
    pub async fn finish(mut self) -> BTreeMap<String, Value> {
        self.assert_alive();
        self.assert_honest_edges_unaffected().await;
        self.assert_alive();
        self.stop_and_export()
    }
}

/// Asserts `a` is `PushRejected` with `code` naming document `id`.
#[track_caller]
pub fn assert_refused(a: &Answer, code: &str, id: &str) {
    match a {
        Answer::PushRejected { code: c, id: i, .. } if c == code && i == id => {}
        other => panic!("expected PushRejected({code}) naming {id:?}, got {other:?}"),
    }
}

/// Asserts `a` is `PushRejected` with one of `codes` (naming `id`).
#[track_caller]
pub fn assert_refused_any(a: &Answer, codes: &[&str], id: &str) {
    match a {
        Answer::PushRejected { code: c, id: i, .. } if codes.contains(&c.as_str()) && i == id => {}
        other => panic!("expected PushRejected({codes:?}) naming {id:?}, got {other:?}"),
    }
}

/// Asserts `a` is `Error(code)`.
#[track_caller]
pub fn assert_error(a: &Answer, code: &str) {
    assert!(a.is_error(code), "expected Error({code}), got {a:?}");
}

/// Asserts `a` is a `PushAck`.
#[track_caller]
pub fn assert_acked(a: &Answer) -> (u32, u32, u32) {
    a.ack_counts()
        .unwrap_or_else(|| panic!("expected PushAck, got {a:?}"))
}

/// The body of the winner of `d` as JSON.
pub fn body(d: &WireDoc) -> Value {
    serde_json::from_str(&body_text(d)).unwrap_or(Value::Null)
}

/// A JSON object's bytes.
pub fn js(v: Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

/// Asserts `a` is either `PushRejected(code)` naming `id`, or a `PushAck`
/// that looks exactly like a create of one document (1 applied, no conflict
/// kept or resolved): what a write-only id may answer (SPEC10 §D).
#[track_caller]
pub fn assert_refused_or_create_ack(a: &Answer, code: &str, id: &str) {
    match a {
        Answer::PushRejected { code: c, id: i, .. } if c == code && i == id => {}
        Answer::PushAck {
            applied: 1,
            conflicts: 0,
            resolved: 0,
            ..
        } => {}
        other => panic!(
            "expected PushRejected({code}) naming {id:?} or a create-like PushAck(1, 0, 0), got {other:?}"
        ),
    }
}

/// Asserts the reader receives `id` unchanged: one version, body `body`,
/// collection `coll`.
pub async fn assert_unchanged(hub: &Hub, id: &str, coll: &str, body_v: Value) {
    let d = hub.doc(id).await;
    assert_eq!(d.versions.len(), 1, "{id}: {d:?}");
    assert!(!d.versions[0].deleted, "{id} was deleted");
    assert_eq!(body(&d), body_v, "{id}'s body");
    assert_eq!(d.collection.as_deref(), Some(coll), "{id}'s collection");
}

impl Hub {
    /// The hub's process id (from `data/serving.json`).
    pub fn pid(&self) -> u32 {
        let t = std::fs::read_to_string(self.tmp.join("data/serving.json")).unwrap();
        let v: Value = serde_json::from_str(&t).unwrap();
        v["pid"].as_u64().unwrap() as u32
    }

    /// The hub's peak resident memory so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// `GET path` with an optional `Authorization: Bearer` token: status
    /// code and body.
    pub fn get_with(&self, path: &str, bearer: Option<&str>) -> (u16, String) {
        let auth = bearer.map(|t| format!("Bearer {t}"));
        self.raw_request("GET", path, auth.as_deref(), "")
    }

    /// `method path` with `authorization` as the whole `Authorization`
    /// header's value (`None`: no header) and `body` (none when empty):
    /// status code and body, read until the hub closes.
    pub fn raw_request(
        &self,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        body: &str,
    ) -> (u16, String) {
        use std::io::{Read, Write};
        let addr = self.proc().addr();
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let body = (!body.is_empty()).then_some(body);
        let text = outpost_testkit::hub::request_text(
            method,
            path,
            &addr.to_string(),
            authorization,
            body,
        );
        s.write_all(text.as_bytes()).unwrap();
        // What came before the hub closed (or reset) the connection.
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        outpost_testkit::hub::parse_answer(&raw).unwrap_or((0, String::new()))
    }
}
