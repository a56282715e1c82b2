//! Helpers shared by Outpost's tests and benchmarks: one home instead of a copy
//! per test file. Not shipped (`publish = false`); the crates use it as a
//! dev-dependency (the benchmarks as a dependency).
//!
//! - [`TempDir`]: a fresh directory, removed on drop;
//! - [`opts`], [`open`]: database options with a deterministic clock, an
//!   in-memory database;
//! - [`hub::HubProcess`]: a real `outpost-hub serve` process (hub tests);
//! - [`key_edge_toml`]: one `[[edge]]` of a hub configuration with the
//!   identity's key ([`keys::key_for`]); [`edge_toml`] (feature `hub`): one
//!   with a token (development mode: the configuration needs [`DEV_TOKENS`]);
//! - [`keys`]: one key pair per identity name in a test process;
//! - [`store::TestStore`]: a memory store that counts reads, commits and
//!   durability requests, and can slow or fail its commits (engine tests);
//! - [`machines`]: a grant, a token `Hello` and the frames a hub session
//!   sent, for tests of the pure replication state machines;
//! - [`hostile`] (feature `hub`): a hostile replication client for the
//!   attack catalogue (`hub/tests/attacks/`).

#[cfg(feature = "hub")]
pub mod hostile;
pub mod hub;
#[cfg(not(target_arch = "wasm32"))]
pub mod keys;
pub mod machines;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

use outpost::store::MemoryStore;
use outpost::{Database, OpenOptions, PageStore, WriteResult};

/// A fresh directory under a given root, removed (with everything in it) on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `root/<name>-<process id>-<counter>` (emptied first if a
    /// previous run left it behind).
    pub fn new(root: impl AsRef<Path>, name: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = root
            .as_ref()
            .join(format!("{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `p` inside the directory.
    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Database options with a deterministic clock: it starts at
/// 1_700_000_000_000 ms and ticks one millisecond per reading.
pub fn opts() -> OpenOptions {
    let t = Arc::new(AtomicI64::new(1_700_000_000_000));
    OpenOptions {
        clock: Some(Arc::new(move || t.fetch_add(1, Ordering::Relaxed))),
        ..Default::default()
    }
}

/// Opens a database over `store` with [`opts`].
pub async fn open(store: &Arc<MemoryStore>) -> Database<Arc<MemoryStore>> {
    Database::open(store.clone(), opts()).await.unwrap()
}

/// Puts the first document of the engine tests into the new database `db`
/// (`patients/dr-7/p1`, in collection `Patients`, body `{"name": "Ada"}`) and
/// checks that it got etag 1.
pub async fn put_first_patient<S: PageStore>(db: &Database<S>) -> WriteResult {
    let r = db
        .put(
            "patients/dr-7/p1",
            serde_json::json!({"name": "Ada", "@metadata": {"@collection": "Patients"}}),
        )
        .await
        .unwrap();
    assert_eq!(r.etag, 1);
    r
}

/// The table a hub configuration with token edges ([`edge_toml`]) needs:
/// tokens are a development mode, refused at load without it.
pub const DEV_TOKENS: &str = "\n[dev]\ntokens = true\n\n";

/// One `[[edge]]` entry of the hub configuration (database `main`) whose
/// identity is the key [`keys::key_for`] gives `name`.
#[cfg(not(target_arch = "wasm32"))]
pub fn key_edge_toml(name: &str, read: &[&str], write: &[&str]) -> String {
    let list = |l: &[&str]| {
        l.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "[[edge]]\nname = {name:?}\npubkey = {:?}\ndatabase = \"main\"\nread = [{}]\nwrite = [{}]\n\n",
        keys::public_key(name).to_text(),
        list(read),
        list(write)
    )
}

/// One `[[edge]]` entry of the hub configuration (database `main`) with a
/// shared-secret token: development mode (the configuration needs
/// [`DEV_TOKENS`]).
#[cfg(feature = "hub")]
pub fn edge_toml(name: &str, token: &str, read: &[&str], write: &[&str]) -> String {
    let list = |l: &[&str]| {
        l.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "[[edge]]\nname = {name:?}\ntoken_sha256 = {:?}\ndatabase = \"main\"\nread = [{}]\nwrite = [{}]\n\n",
        outpost_hub::config::token_sha256_hex(token),
        list(read),
        list(write)
    )
}
