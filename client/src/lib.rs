//! # The native Outpost edge client
//!
//! Replicates a local [`outpost::Database`] with an Outpost hub over
//! WebSocket (tokio-tungstenite; `wss://` with rustls), reconnecting with
//! backoff and jitter. A thin shell around [`outpost::sync::EdgeSession`]:
//! frames in and out, storage actions through [`outpost::sync::driver`], the
//! actions run by [`outpost::sync::run::run_edge`], local commits learnt from
//! the engine's commit observer, a 1 s tick for heartbeats.
//!
//! For any native edge (a laptop app, a worker, the fan-out benchmark); the
//! hub uses it when it is itself an edge of another hub (`[[upstream]]`). It
//! depends on neither the hub's HTTP server nor its configuration.
//!
//! ```no_run
//! # async fn example(db: outpost::Database<outpost::store::MemoryStore>) {
//! use outpost::sync::EdgeConfig;
//! use outpost_client::{ClientOptions, spawn_edge};
//!
//! use outpost::keys::{KeyPair, Signer};
//! use std::sync::Arc;
//!
//! // The edge's key file (made once; its public key is enrolled at the hub
//! // with `outpost-hub edge add laptop --pubkey …`).
//! let (key, _made) = KeyPair::load_or_create("laptop.key".as_ref()).unwrap();
//! let opts = ClientOptions {
//!     url: "ws://127.0.0.1:4000/sync".into(),
//!     edge: EdgeConfig::with_key("main", "laptop", key.public_key().clone()),
//!     ca_cert: None,
//!     signer: Some(Arc::new(key)),
//!     client_cert: None,
//! };
//! let client = spawn_edge(db, opts, None);
//! // … local writes: the client pushes them.
//! client.stop().await;
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use outpost::sync::{EdgeConfig, SyncStatus};
use outpost::{Database, PageStore};
use tokio::sync::{Notify, watch};

mod connect;
mod safety;
mod session;
pub mod tls;

pub use safety::{HubOp, HubWriteError, NotReplicated};
pub use tls::TlsError;

/// Read buffer of each WebSocket connection (the hub's sessions and this
/// client). tungstenite's default is 128 KiB, and it zero-fills the free part
/// of the buffer before every read (also reads that find nothing), so the
/// default cost 128 KiB of resident memory per connection and a 128 KiB
/// memset per received frame: half the hub's CPU when a write fans out to
/// 5,000 idle edges (`docs/benchmarks.md`, "Fan-out"). A larger frame is
/// still received whole (the buffer grows to its size); it is read from the
/// socket in pieces of this size.
pub const WS_READ_BUFFER_BYTES: usize = 8 << 10;

/// Where and how to connect.
#[derive(Clone)]
pub struct ClientOptions {
    /// `ws://host:port/sync` or `wss://…`.
    pub url: String,
    /// Identity, credential, database, source tag, heartbeats.
    pub edge: EdgeConfig,
    /// PEM certificate to trust for `wss://` (required for `wss://`).
    pub ca_cert: Option<PathBuf>,
    /// The edge's key (key and enrollment modes: it signs the handshake
    /// proof and every batch); `None` for a token session.
    pub signer: Option<Arc<dyn outpost::keys::Signer>>,
    /// A certificate identity (`wss://` only): the chain presented over
    /// mutual TLS. Its key is the identity's key: `signer` should be
    /// [`tls::ClientCert::signer`] and `edge` made with its public key.
    pub client_cert: Option<Arc<tls::ClientCert>>,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("url", &self.url)
            .field("edge", &self.edge)
            .field("ca_cert", &self.ca_cert)
            .field("client_cert", &self.client_cert)
            .field(
                "signer",
                &self.signer.as_ref().map(|s| s.public_key().fingerprint()),
            )
            .finish()
    }
}

/// Counters of a running client.
#[derive(Debug, Default)]
pub struct ClientCounters {
    /// Sessions opened (Welcome received).
    pub sessions: AtomicU64,
    /// `Changes`/`Live` batches committed.
    pub batches_applied: AtomicU64,
    /// Documents pushed and acknowledged.
    pub docs_pushed: AtomicU64,
    /// `Push` frames acknowledged (empty ones, which only move the hub's
    /// push checkpoint, included).
    pub pushes_acked: AtomicU64,
    /// Connection attempts that failed.
    pub failed_attempts: AtomicU64,
    /// Storage actions on the local database that failed.
    pub storage_failures: AtomicU64,
}

/// A running client: status, counters, and control.
pub struct SyncHandle {
    status: watch::Receiver<SyncStatus>,
    purges: watch::Receiver<u64>,
    acks: Arc<safety::Acks>,
    hub_calls: tokio::sync::mpsc::UnboundedSender<safety::HubCall>,
    stop: watch::Sender<bool>,
    wake: Arc<Notify>,
    counters: Arc<ClientCounters>,
    task: tokio::task::JoinHandle<()>,
}

impl SyncHandle {
    /// The current status.
    pub fn status(&self) -> SyncStatus {
        self.status.borrow().clone()
    }

    /// A receiver of status changes.
    pub fn watch_status(&self) -> watch::Receiver<SyncStatus> {
        self.status.clone()
    }

    /// A receiver of the number of purges this client carried out (purge
    /// orders, and pushes refused as purged); it changes after each. A
    /// hub's upstream link watches it: what such a purge removed is owed by
    /// the hub's own edges ([`outpost::sync::received`]).
    pub fn watch_purges(&self) -> watch::Receiver<u64> {
        self.purges.clone()
    }

    /// Tells the client that the local database committed (it pushes). Not
    /// needed: the client watches the database's commits; it only makes the
    /// client look at its changes feed once more.
    pub fn local_changed(&self) {
        self.wake.notify_one();
    }

    /// Counters.
    pub fn counters(&self) -> &ClientCounters {
        &self.counters
    }

    /// Waits until `pred` holds for the status, or `timeout`.
    pub async fn wait_for(&self, timeout: Duration, pred: impl Fn(&SyncStatus) -> bool) -> bool {
        let mut rx = self.status.clone();
        tokio::time::timeout(timeout, async {
            loop {
                if pred(&rx.borrow_and_update()) {
                    return;
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await
        .is_ok()
    }

    /// Registers `chain` (DER, leaf first, up to the root) as the
    /// replacement of the certificate this client's session authenticated
    /// with (protocol version 8): the hub gives it the same permissions.
    /// `Offline` at once when no session is open; registering the same
    /// replacement again is harmless.
    pub async fn register_replacement(
        &self,
        chain: Vec<Vec<u8>>,
        timeout: Duration,
    ) -> outpost::sync::ReplaceOutcome {
        use outpost::sync::ReplaceOutcome;
        let (answer, rx) = tokio::sync::oneshot::channel();
        if self
            .hub_calls
            .send(safety::HubCall::Replace { chain, answer })
            .is_err()
        {
            return ReplaceOutcome::Offline {
                reason: "the client has stopped".into(),
            };
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(o)) => o,
            Ok(Err(_)) | Err(_) => ReplaceOutcome::Unknown,
        }
    }

    /// Stops the client (closing the connection) and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Starts replicating `db` with the hub of `opts`. The client learns of the
/// database's commits from the engine's commit observer
/// ([`Database::watch_commits`]) and pushes what they wrote; the batches it
/// applies from the hub wake everyone else watching the database (a hub's
/// edge sessions), not itself. `on_applied`, if given, runs after every
/// batch from the hub is committed (the fan-out benchmark times arrivals with
/// it).
pub fn spawn_edge<S>(
    db: Database<S>,
    opts: ClientOptions,
    on_applied: Option<Arc<dyn Fn() + Send + Sync>>,
) -> SyncHandle
where
    S: PageStore + Send + Sync + 'static,
{
    let (status_tx, status) = watch::channel(SyncStatus::Offline);
    let (purges_tx, purges) = watch::channel(0);
    let (stop, stop_rx) = watch::channel(false);
    let wake = Arc::new(Notify::new());
    let counters = Arc::new(ClientCounters::default());
    let acks = Arc::new(safety::Acks::new());
    let (hub_calls, calls) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(session::run(
        session::Client {
            acks: acks.clone(),
            db,
            opts,
            on_applied,
            status: status_tx,
            purges: purges_tx,
            stop: stop_rx,
            wake: wake.clone(),
            counters: counters.clone(),
            enrolled: std::sync::atomic::AtomicBool::new(false),
        },
        calls,
    ));
    SyncHandle {
        status,
        purges,
        acks,
        hub_calls,
        stop,
        wake,
        counters,
        task,
    }
}

/// The rejections the hub sent this client (recorded in the database).
pub use outpost::sync::driver::rejections as client_rejections;
