//! A failed disk, for real: the hub's data directory is a small tmpfs (the
//! tests run as root; mounting is the one privilege used), filled up while
//! an edge pushes, so the database's WAL write fails with ENOSPC and the
//! engine refuses every later write. The hub must make it visible (`/healthz`
//! 503 naming the database and the error, a metric, an ERROR log line, the
//! edge told `database_unavailable`, a retryable code) and survive it (once
//! space is freed, the hub reopens the database by itself and takes the
//! push; acknowledged writes stay, nothing half-applied).
//!
//! If `mount -t tmpfs` is refused (not root, no tmpfs), the test prints why
//! and returns: it cannot make a disk fail without it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use outpost::store::file::{FileStore, FileStoreOptions};
use outpost::sync::{EdgeConfig, Frame, SyncStatus};
use outpost::{Database, DbId, OpenOptions, PutOptions};
use outpost_client::{ClientOptions, spawn_edge};
use outpost_hub::hub_client::{self, HttpUrl};
use outpost_testkit::hostile::{Challenge, Hostile};
use outpost_testkit::hub::{ADMIN_TOKEN, HubProcess, free_port, wait_until};
use outpost_testkit::{TempDir, key_edge_toml, keys};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_outpost-hub");
const WAIT: Duration = Duration::from_secs(60);

type Db = Database<FileStore>;

/// A temporary directory with a tmpfs of `size` mounted at `data/`;
/// unmounted and removed on drop.
struct Disk {
    root: TempDir,
    mounted: bool,
}

impl Disk {
    fn new(tag: &str, size: &str) -> Result<Disk, String> {
        let root = TempDir::new(std::env::temp_dir(), &format!("outpost-disk-test-{tag}"));
        std::fs::create_dir_all(root.join("data")).unwrap();
        let mut disk = Disk {
            root,
            mounted: false,
        };
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(disk.root.join("data"))
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs refused: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        disk.mounted = true;
        Ok(disk)
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p)
    }

    /// Fills the tmpfs until a write fails with "no space".
    fn fill(&self) {
        let mut f = std::fs::File::create(self.path("data/filler")).unwrap();
        let chunk = vec![0xa5u8; 64 << 10];
        let mut total = 0usize;
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(n) => total += n,
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC, got {e}");
                    break;
                }
            }
            assert!(total < 1 << 30, "the tmpfs never filled up");
        }
        let _ = f.sync_all();
    }

    fn free(&self) {
        std::fs::remove_file(self.path("data/filler")).unwrap();
    }
}

impl Drop for Disk {
    /// Unmounts the tmpfs; the directory goes with `root` afterwards.
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(self.root.join("data")).status();
        }
    }
}

/// A hub process ([`HubProcess`]: killed on drop) and the raw requests the
/// test makes to it.
struct HubProc {
    hub: HubProcess,
    port: u16,
}

impl HubProc {
    fn start(dir: &Path, port: u16) -> HubProc {
        let hub = HubProcess::start(BIN, dir, &[]);
        assert_eq!(hub.port(), port);
        HubProc { hub, port }
    }

    fn log(&self) -> String {
        self.hub.log()
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let url = HttpUrl::parse(&format!("http://127.0.0.1:{}", self.port)).unwrap();
        let (code, body) = hub_client::get_as_admin(&url, path, None, ADMIN_TOKEN)
            .await
            .unwrap();
        (code, String::from_utf8_lossy(&body).into_owned())
    }

    async fn documents(&self) -> u64 {
        let (_, body) = self.get("/status").await;
        let v: Value = serde_json::from_str(&body).unwrap();
        v["databases"][0]["documents"].as_u64().unwrap_or(0)
    }

    /// A raw WebSocket session: sends a key `Hello`, answers the
    /// `Challenge` with its proof, and returns the hub's next frame.
    async fn hello(&self) -> Frame {
        let url = format!("ws://127.0.0.1:{}/sync", self.port);
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        let (mut ws, _) = tokio_tungstenite::client_async(url.as_str(), tcp)
            .await
            .unwrap();
        let key = keys::key_for("laptop");
        let hello = Hostile::hello_key_frame("laptop", &key, DbId([7; 16]), 0);
        ws.send(Message::Binary(hello.encode().into()))
            .await
            .unwrap();
        loop {
            let f = match tokio::time::timeout(WAIT, ws.next()).await {
                Ok(Some(Ok(Message::Binary(b)))) => Frame::decode(&b, 64 << 20).unwrap(),
                Ok(Some(Ok(_))) => continue,
                other => panic!("no frame from the hub: {other:?}"),
            };
            let Frame::Challenge {
                version,
                nonce,
                hub_id,
            } = f
            else {
                return f;
            };
            let c = Challenge {
                version,
                nonce,
                hub_id,
            };
            let signature = Hostile::proof(&key, &c, "main", "laptop", DbId([7; 16]));
            ws.send(Message::Binary(Frame::Proof { signature }.encode().into()))
                .await
                .unwrap();
        }
    }
}

/// A 16 MiB disk ([`Disk`]) with the configuration of a hub of database
/// `main` and the `edges` entries at its root, and that hub started on it:
/// the disk, the hub and its port. `None` when no tmpfs can be mounted:
/// the test then says why and returns.
fn disk_with_hub(tag: &str, edges: &str) -> Option<(Disk, HubProc, u16)> {
    let disk = match Disk::new(tag, "16m") {
        Ok(d) => d,
        Err(why) => {
            eprintln!("SKIPPED: cannot make a small file system to fill: {why}");
            return None;
        }
    };
    let port = free_port();
    std::fs::write(
        disk.path("outpost-hub.toml"),
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"data\"\n\n[[database]]\nname = \"main\"\n\n{edges}"
        ),
    )
    .unwrap();
    let hub = HubProc::start(disk.root.path(), port);
    Some((disk, hub, port))
}

async fn put(db: &Db, id: &str, body: Value) {
    db.put_with(
        id,
        body,
        PutOptions {
            collection: Some("Notes".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_reported_and_the_hub_recovers_once_space_is_freed() {
    let edge = key_edge_toml("laptop", &["notes/"], &["notes/"]);
    let Some((disk, mut hub, port)) = disk_with_hub("enospc", &edge) else {
        return;
    };
    let (code, body) = hub.get("/healthz").await;
    assert_eq!(code, 200, "{body}");

    // An edge pushes three small notes: acknowledged.
    let store = FileStore::open(disk.path("edge"), FileStoreOptions::default()).unwrap();
    let edge_db: Db = Database::open(store, OpenOptions::default()).await.unwrap();
    let mut cfg = EdgeConfig::with_key("main", "laptop", keys::public_key("laptop"));
    cfg.heartbeat_ms = 2_000;
    cfg.timeout_ms = 6_000;
    let opts = ClientOptions {
        url: format!("ws://127.0.0.1:{port}/sync"),
        edge: cfg,
        ca_cert: None,
        signer: Some(keys::signer("laptop")),
        client_cert: None,
    };
    let edge = spawn_edge(edge_db.clone(), opts, None);
    for i in 0..3 {
        put(&edge_db, &format!("notes/{i}"), json!({"n": i})).await;
    }
    edge.local_changed();
    wait_until("the three notes at the hub", || async {
        hub.documents().await == 3
    })
    .await;

    // The disk fills up; the next push needs the WAL to grow: ENOSPC.
    disk.fill();
    let big = "x".repeat(6 << 20);
    put(&edge_db, "notes/big", json!({ "text": big })).await;
    edge.local_changed();

    // Visible: health, metrics, log, and the edge's reason (all polled: while
    // the disk stays full, the hub may reopen the database, which fails again
    // at the edge's next push).
    let (mut health, mut gauge, mut refused) = (None, false, None);
    let t = Instant::now();
    while health.is_none() || !gauge || refused.is_none() {
        assert!(
            t.elapsed() < WAIT,
            "the failure never became visible: health {health:?}, gauge {gauge}, edge told {refused:?}\n{}",
            hub.log()
        );
        let (code, body) = hub.get("/healthz").await;
        if code == 503 && health.is_none() {
            health = Some(body);
        }
        let (_, metrics) = hub.get("/metrics").await;
        gauge |= metrics
            .lines()
            .any(|l| l == "outpost_db_failed{database=\"main\"} 1");
        if refused.is_none()
            && code == 503
            && let Frame::Error { code, message } = hub.hello().await
        {
            refused = Some((code, message));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let health: Value = serde_json::from_str(&health.unwrap()).unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["failed"][0]["database"], "main", "{health}");
    let error = health["failed"][0]["error"].as_str().unwrap();
    assert!(error.contains("No space left on device"), "{health}");
    let (code, message) = refused.unwrap();
    assert_eq!(code, "database_unavailable", "{message}");
    assert!(message.contains("database main failed"), "{message}");
    // The hub's stderr is read by another thread: wait for the line.
    hub.hub.wait_log("database failed");
    let log = hub.log();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("database failed") && l.contains("main")),
        "no ERROR line:\n{log}"
    );
    let (_, metrics) = hub.get("/metrics").await;
    assert!(
        metrics.contains("outpost_db_failures_total{database=\"main\"} "),
        "{metrics}"
    );
    let (_, status) = hub.get("/status").await;
    let status: Value = serde_json::from_str(&status).unwrap();
    let main = &status["databases"][0];
    assert!(
        main["state"] == "failed" || main["documents"] == 3,
        "{status}"
    );
    // The edge keeps retrying: a retryable reason, never a final error.
    assert!(
        !matches!(edge.status(), SyncStatus::Error { .. }),
        "{:?}",
        edge.status()
    );

    // Survivable: space freed, the hub reopens the database by itself and
    // the edge's push goes through, without a restart.
    disk.free();
    wait_until("the big note at the hub", || async {
        hub.documents().await == 4
    })
    .await;
    wait_until("health back to ok", || async {
        hub.get("/healthz").await.0 == 200
    })
    .await;
    let (_, metrics) = hub.get("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "outpost_db_failed{database=\"main\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("outpost_db_reopened_total{database=\"main\"} "),
        "{metrics}"
    );
    hub.hub.wait_log("database reopened");
    assert!(!matches!(edge.status(), SyncStatus::Error { .. }));
    edge.stop().await;
    println!("hub log:\n{}", hub.log());
    drop(hub);

    // On disk: every acknowledged write, the big one whole, and a sound
    // database.
    let store = FileStore::open(disk.path("data/main"), FileStoreOptions::default()).unwrap();
    let db: Db = Database::open(store, OpenOptions::default()).await.unwrap();
    for i in 0..3 {
        let d = db.get(&format!("notes/{i}")).await.unwrap().unwrap();
        assert_eq!(d.body["n"], i);
    }
    let d = db.get("notes/big").await.unwrap().unwrap();
    assert_eq!(d.body["text"].as_str().map(str::len), Some(6 << 20));
    let report = db.integrity_check().await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    db.close().await.unwrap();
}

/// `outpost-hub import` into a running hub whose disk is full: the import
/// stops at the batch the disk refused, the command says why (exit 1), the
/// hub marks the database failed as it does after an edge's failed push
/// (`/healthz` 503) and reopens it once space is freed; the same import
/// then goes through, and the database is sound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_into_a_running_hub_on_a_full_disk_stops_and_the_hub_recovers() {
    let Some((disk, hub, _)) = disk_with_hub("import-enospc", "") else {
        return;
    };
    // 4,000 documents of ~1 KiB in batches of 500, outside the tmpfs.
    let pad = "p".repeat(1000);
    let lines: String = (0..4000)
        .map(|i| format!("{{\"id\":\"notes/{i:05}\",\"n\":{i},\"pad\":\"{pad}\"}}\n"))
        .collect();
    std::fs::write(disk.path("in.jsonl"), &lines).unwrap();
    let import = || {
        let out = Command::new(BIN)
            .current_dir(disk.root.path())
            .args([
                "--config",
                "outpost-hub.toml",
                "import",
                "in.jsonl",
                "--batch",
                "500",
            ])
            .env("OUTPOST_HUB_ADMIN_TOKEN", ADMIN_TOKEN)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };

    disk.fill();
    let (code, _, err) = import();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("import stopped: imported"), "{err}");
    assert!(
        err.contains("was not written") && err.contains("No space left on device"),
        "{err}"
    );
    wait_until("the database shown failed", || async {
        hub.get("/healthz").await.0 == 503
    })
    .await;
    // An admin request meanwhile is told why, not "no such database".
    let (code, body) = hub.hub.post(
        "/admin/import?database=main",
        None,
        "{\"id\":\"notes/x\"}\n",
    );
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("database main failed") && body.contains("being reopened"),
        "{body}"
    );

    disk.free();
    wait_until("health back to ok", || async {
        hub.get("/healthz").await.0 == 200
    })
    .await;
    let (code, out, err) = import();
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("imported 4000 documents"), "{out}");
    assert_eq!(hub.documents().await, 4000);
    drop(hub);

    let store = FileStore::open(disk.path("data/main"), FileStoreOptions::default()).unwrap();
    let db: Db = Database::open(store, OpenOptions::default()).await.unwrap();
    let d = db.get("notes/03999").await.unwrap().unwrap();
    assert_eq!(d.body["n"], 3999);
    let report = db.integrity_check().await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    db.close().await.unwrap();
}
