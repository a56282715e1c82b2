//! Helpers shared by the tests that run real hub processes with real
//! native edges (`sync.rs`, `forget.rs`, `compact.rs`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use outpost::store::file::{FileStore, FileStoreOptions};
use outpost::sync::{EdgeConfig, SyncStatus};
use outpost::{Database, OpenOptions, PutOptions};
use outpost_client::{ClientOptions, SyncHandle, spawn_edge};
use outpost_testkit::hub::HubProcess;
use outpost_testkit::{TempDir, key_edge_toml, keys};

/// One `[[edge]]` with the identity's key ([`keys::key_for`]): these tests
/// run the product path (key identities, signed batches). The second
/// argument (a token in development mode) is not used.
pub fn edge_toml(name: &str, _token: &str, read: &[&str], write: &[&str]) -> String {
    key_edge_toml(name, read, write)
}
pub const BIN: &str = env!("CARGO_BIN_EXE_outpost-hub");
pub const WAIT: Duration = Duration::from_secs(60);

pub type Db = Database<FileStore>;

/// Runs `outpost-hub --config outpost-hub.toml ARGS` in the hub's directory:
/// (success, stdout, stderr).
pub fn run(hub: &HubProc, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .current_dir(&hub.dir)
        .args(["--config", "outpost-hub.toml"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// A fresh directory under the system's temporary directory.
pub fn temp_dir(tag: &str) -> TempDir {
    TempDir::new(std::env::temp_dir(), &format!("outpost-sync-test-{tag}"))
}

/// A hub process ([`HubProcess`]: killed on drop) with its own directory
/// and port (a restart keeps both).
pub struct HubProc {
    pub dir: PathBuf,
    pub port: u16,
    pub proc: HubProcess,
}

impl HubProc {
    pub fn new(dir: PathBuf, port: u16, body: &str) -> HubProc {
        Self::with_database(dir, port, "", body)
    }

    /// [`HubProc::new`] with more keys in the database "main"'s table
    /// (`db_keys`: TOML lines such as `indexes = [...]`).
    pub fn with_database(dir: PathBuf, port: u16, db_keys: &str, body: &str) -> HubProc {
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"data\"\n\n[[database]]\nname = \"main\"\nnever_delete = [\"Invoices\"]\n{db_keys}\n[database.conflicts]\n\"*\" = \"latest\"\nCards = \"manual\"\n\n{body}"
        );
        std::fs::write(dir.join("outpost-hub.toml"), cfg).unwrap();
        let proc = HubProcess::start(BIN, &dir, &[]);
        HubProc { dir, port, proc }
    }

    /// Starts the hub again (after [`HubProc::kill`]), on the same port.
    pub fn start(&mut self) {
        self.proc.restart();
    }

    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Its log, across restarts.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/sync", self.port)
    }

    pub fn import(&self, jsonl: &str) {
        let f = self.dir.join("import.jsonl");
        std::fs::write(&f, jsonl).unwrap();
        let out = Command::new(BIN)
            .current_dir(&self.dir)
            .args(["--config", "outpost-hub.toml", "import", "import.jsonl"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Opens the hub's database directly (the hub must be stopped).
    pub async fn open_db(&self) -> Db {
        let store =
            FileStore::open(self.dir.join("data/main"), FileStoreOptions::default()).unwrap();
        Database::open(store, OpenOptions::default()).await.unwrap()
    }

    /// Documents in the hub's database "main" (from `GET /status`).
    pub fn documents(&self) -> u64 {
        let (_, body) = self.proc.get("/status");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["databases"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["name"] == "main"))
            .and_then(|d| d["documents"].as_u64())
            .unwrap_or(0)
    }

    /// `GET /metrics`.
    pub fn metrics(&self) -> String {
        self.proc.get("/metrics").1
    }
}

pub async fn open_edge_db(dir: &Path) -> Db {
    let store = FileStore::open(dir, FileStoreOptions::default()).unwrap();
    Database::open(store, OpenOptions::default()).await.unwrap()
}

pub fn client(db: &Db, url: &str, identity: &str, token: &str) -> SyncHandle {
    let opts = ClientOptions {
        url: url.into(),
        edge: edge_cfg(identity, token),
        ca_cert: None,
        signer: Some(keys::signer(identity)),
        client_cert: None,
    };
    spawn_edge(db.clone(), opts, None)
}

/// The settings of `identity`'s key sessions (its key: [`keys::key_for`]).
pub fn edge_cfg(identity: &str, _token: &str) -> EdgeConfig {
    let mut e = EdgeConfig::with_key("main", identity, keys::public_key(identity));
    e.heartbeat_ms = 2_000;
    e.timeout_ms = 6_000;
    e
}

/// id → (change vector, body, conflict count), live documents and tombstones.
pub async fn state(db: &Db, prefix: &str) -> BTreeMap<String, (String, String, usize)> {
    db.changes(0, 10_000_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.id.to_lowercase().starts_with(prefix))
        .map(|d| {
            (
                d.id.to_lowercase(),
                (
                    d.meta.change_vector.to_text(),
                    d.body.to_string(),
                    d.conflicts.len(),
                ),
            )
        })
        .collect()
}

pub async fn wait_live(c: &SyncHandle) {
    assert!(
        c.wait_for(WAIT, |s| matches!(s, SyncStatus::Live)).await,
        "never live: {:?}",
        c.status()
    );
}

pub async fn put(db: &Db, c: Option<&SyncHandle>, id: &str, body: serde_json::Value, coll: &str) {
    db.put_with(
        id,
        body,
        PutOptions {
            collection: Some(coll.into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    if let Some(c) = c {
        c.local_changed();
    }
}

/// Every byte of every file under `dir`.
pub fn raw_dump(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            all.extend(std::fs::read(&p).unwrap());
        }
    }
    all
}

pub fn holds(bytes: &[u8], marker: &str) -> bool {
    bytes.windows(marker.len()).any(|w| w == marker.as_bytes())
}

/// Runs the future `make` returns on a thread of its own, in a runtime of
/// its own: a client the test holds (an upload, a streamed answer) while
/// its own runtime goes on. The thread's result is the future's.
pub fn on_own_thread<T, F>(make: impl FnOnce() -> F + Send + 'static) -> std::thread::JoinHandle<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = T>,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(make())
    })
}

/// Waits for a thread of [`on_own_thread`] without blocking the runtime.
pub async fn joined<T: Send + 'static>(t: std::thread::JoinHandle<T>) -> T {
    tokio::task::spawn_blocking(move || t.join().unwrap())
        .await
        .unwrap()
}
