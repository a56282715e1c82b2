//! A hostile replication client: it speaks the real protocol
//! (docs/protocol.md) over a real WebSocket, but sends whatever a test
//! tells it to (any frame, any bytes, documents with any change vector,
//! collection, timestamp or body) and reports the hub's answer as a typed
//! [`Answer`]. Every receive is bounded ([`Hostile::timeout`], a few
//! seconds by default), so no attack test can hang.
//!
//! Protocol 3: an identity with a key in this process
//! ([`crate::keys::key_for`]) says a key `Hello`, answers the hub's
//! `Challenge` with a `Proof` ([`Hostile::auto_prove`]) and signs every push
//! as the next link of its chain; [`Hostile::push_signed`] sends any `seq`,
//! `prev` and signature instead. An identity without a key says a token
//! `Hello` (development mode).
//!
//! ```text
//! let mut m = Hostile::connect(&url).await?;
//! let w = m.hello("mallory", "mallory-token", DbId::random(), 0).await?;
//! m.pull(true).await?;                       // Changes … Live, acknowledged
//! let a = m.push(vec![doc("shared/x", "Cards", live(&[(m.db_id, 1)], b"{}"))]).await;
//! assert!(a.is_rejected("forged_change_vector"));
//! ```

mod answer;
pub mod raw;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use std::sync::Arc;

use outpost::DbId;
use outpost::keys::{KeyPair, Signer};
use outpost::sync::PurgeOrder;
use outpost::sync::frame::{AuthMode, WireWrite};
use outpost::sync::hub_write::HubWriteManifest;
use outpost::sync::signed::{AuthContext, BatchManifest, GENESIS, PurgeReceipt, auth_message};
use outpost::sync::{Frame, WireDoc};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpSocket;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub use answer::{Answer, Challenge, Incoming, Welcome};
pub use raw::{
    RawDoc, RawVer, cv, doc, docv, live, new_db_id, now_ms, push_frame, push_frame_signed,
    tombstone,
};

/// The highest version this client's `Hello`s offer (7: `Resync` after
/// tombstone compaction; a case that needs a protocol 5 or 6 session edits
/// the frame).
pub const HELLO_MAX_VERSION: u16 = 7;

/// The default bound of one receive.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);

/// The stream under a hostile WebSocket: plain TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A hostile client on one WebSocket.
pub struct Hostile {
    ws: WebSocketStream<Box<dyn Io>>,
    /// The bound of one receive.
    pub timeout: Duration,
    /// The database id stated in `Hello` (random until then).
    pub db_id: DbId,
    /// What `Welcome` said, once it came.
    pub welcome: Option<Welcome>,
    /// Documents received in `Changes`, by id (the latest copy).
    pub received: BTreeMap<String, WireDoc>,
    /// `Changes` frames received so far.
    pub changes_frames: usize,
    /// Highest `upto` acknowledged.
    pub acked: u64,
    /// Highest `upto` received (Changes or Live).
    pub seen_upto: u64,
    /// Whether `Live` came.
    pub live: bool,
    /// Acknowledge `Changes` while waiting for other answers.
    pub auto_ack: bool,
    /// Edge etag of the next push's `upto`.
    pub push_upto: u64,
    /// The key this client proves and signs with (key and enrollment
    /// sessions). [`Hostile::hello`] takes the identity's registered key
    /// ([`crate::keys::registered`]) when this is `None`.
    pub key: Option<Arc<KeyPair>>,
    /// Say a token `Hello` even when the identity has a key.
    pub token_mode: bool,
    /// Answer a `Challenge` with a `Proof` by [`Hostile::key`] (else the
    /// challenge is returned as `Answer::Unexpected`).
    pub auto_prove: bool,
    /// The last `Challenge` received.
    pub challenge: Option<Challenge>,
    /// How the last `Hello` authenticated.
    pub auth: AuthMode,
    /// Database and identity of the last `Hello` (bound into the proof).
    pub claimed: (String, String),
    /// The chain head as this client knows it (from `Welcome`, moved by
    /// each acknowledged signed push).
    pub chain: (u64, [u8; 32]),
    /// The link the last signed push would move the chain to.
    pending_link: Option<(u64, [u8; 32])>,
    /// Purge orders received (recorded, never answered unless asked:
    /// [`Hostile::purge_receipt`]).
    pub purges: Vec<PurgeOrder>,
    /// The last `Write` request number used.
    pub write_request: u64,
    /// `Resync` frames received (protocol 7): the horizon each stated and
    /// how many `Changes` frames had come before it.
    pub resyncs: Vec<(u64, usize)>,
    /// The horizons of the `Compacted` frames received (protocol 7).
    pub compacted: Vec<u64>,
}

impl std::fmt::Debug for Hostile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hostile")
            .field("db_id", &self.db_id.to_string())
            .field("welcome", &self.welcome)
            .field("received", &self.received.len())
            .field("acked", &self.acked)
            .finish()
    }
}

/// `ws://host:port/sync` → `host:port`.
fn addr_of(url: &str) -> Result<SocketAddr, String> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| format!("{url:?}: only ws:// here"))?;
    let hp = rest.split('/').next().unwrap_or_default();
    hp.parse().map_err(|e| format!("{hp:?}: {e}"))
}

impl Hostile {
    /// Opens a WebSocket to `url` (`ws://127.0.0.1:PORT/sync`) with 64 MiB
    /// message limits on this side (the hub's are what is tested).
    pub async fn connect(url: &str) -> Result<Hostile, String> {
        Self::connect_from(url, None).await
    }

    /// Like [`Hostile::connect`], from a chosen local address (for example
    /// `127.0.0.2`, so a flood has its own peer address).
    pub async fn connect_from(url: &str, local: Option<SocketAddr>) -> Result<Hostile, String> {
        let addr = addr_of(url)?;
        let sock = TcpSocket::new_v4().map_err(|e| e.to_string())?;
        if let Some(l) = local {
            sock.bind(l).map_err(|e| format!("bind {l}: {e}"))?;
        }
        let tcp = tokio::time::timeout(RECV_TIMEOUT, sock.connect(addr))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        Self::over(url, Box::new(tcp)).await
    }

    /// Opens a `wss://` WebSocket to `url` (`wss://localhost:PORT/sync`)
    /// trusting the PEM certificate `ca`, presenting `cert` (a certificate
    /// identity's chain and key, or a forged one) when the hub asks for a
    /// client certificate.
    pub async fn connect_tls(
        url: &str,
        ca: &std::path::Path,
        cert: Option<&outpost_client::tls::ClientCert>,
    ) -> Result<Hostile, String> {
        let port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.split('/').next())
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| format!("no port in {url}"))?;
        let tcp = tokio::time::timeout(
            RECV_TIMEOUT,
            tokio::net::TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let cfg = outpost_client::tls::client_config_with(ca, cert).map_err(|e| e.0)?;
        let name =
            rustls_pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        let tls = tokio::time::timeout(
            RECV_TIMEOUT,
            tokio_rustls::TlsConnector::from(cfg).connect(name, tcp),
        )
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS: {e}"))?;
        Self::over(url, Box::new(tls)).await
    }

    /// The WebSocket handshake over `stream`.
    async fn over(url: &str, stream: Box<dyn Io>) -> Result<Hostile, String> {
        let cfg = WebSocketConfig::default()
            .max_message_size(Some(64 << 20))
            .max_frame_size(Some(64 << 20));
        let (ws, _) = tokio::time::timeout(
            RECV_TIMEOUT,
            tokio_tungstenite::client_async_with_config(url, stream, Some(cfg)),
        )
        .await
        .map_err(|_| "WebSocket handshake timed out".to_string())?
        .map_err(|e| format!("WebSocket handshake: {e}"))?;
        Ok(Hostile {
            ws,
            timeout: RECV_TIMEOUT,
            db_id: DbId::random(),
            welcome: None,
            received: BTreeMap::new(),
            changes_frames: 0,
            acked: 0,
            seen_upto: 0,
            live: false,
            auto_ack: true,
            push_upto: 0,
            key: None,
            token_mode: false,
            auto_prove: true,
            challenge: None,
            auth: AuthMode::Token,
            claimed: (String::new(), String::new()),
            chain: (0, GENESIS),
            pending_link: None,
            purges: Vec::new(),
            write_request: 0,
            resyncs: Vec::new(),
            compacted: Vec::new(),
        })
    }

    /// Sends one binary message of arbitrary bytes.
    pub async fn send_bytes(&mut self, b: Vec<u8>) -> Result<(), String> {
        self.send_msg(Message::Binary(b.into())).await
    }

    /// Sends one WebSocket message as is (text, ping, close…).
    pub async fn send_msg(&mut self, m: Message) -> Result<(), String> {
        tokio::time::timeout(RECV_TIMEOUT * 4, self.ws.send(m))
            .await
            .map_err(|_| "send timed out".to_string())?
            .map_err(|e| e.to_string())
    }

    /// Sends a frame through the real encoder.
    pub async fn send(&mut self, f: &Frame) -> Result<(), String> {
        self.send_bytes(f.encode()).await
    }

    /// Receives one frame (bounded by [`Hostile::timeout`]); answers the
    /// hub's WebSocket pings, skips pongs.
    pub async fn recv(&mut self) -> Incoming {
        loop {
            let next = match tokio::time::timeout(self.timeout, self.ws.next()).await {
                Err(_) => return Incoming::Timeout,
                Ok(n) => n,
            };
            match next {
                None => return Incoming::Closed("end of stream".into()),
                Some(Err(e)) => return Incoming::Closed(e.to_string()),
                Some(Ok(Message::Close(c))) => return Incoming::Closed(format!("close {c:?}")),
                Some(Ok(Message::Binary(b))) => {
                    return match Frame::decode(&b, usize::MAX) {
                        Ok(f) => Incoming::Frame(f),
                        Err(e) => Incoming::Undecodable(e.to_string()),
                    };
                }
                Some(Ok(Message::Text(t))) => {
                    return Incoming::Undecodable(format!("text message {t:?}"));
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The `Hello` of `identity` (protocol 4, database `main`): a key
    /// `Hello` when the identity has a key in this process
    /// ([`crate::keys::registered`]; the token is then not used), else a
    /// token `Hello` ([`Hostile::token_hello_frame`]).
    pub fn hello_frame(identity: &str, token: &str, db_id: DbId, pull_checkpoint: u64) -> Frame {
        match crate::keys::registered(identity) {
            Some(k) => Self::hello_key_frame(identity, &k, db_id, pull_checkpoint),
            None => Self::token_hello_frame(identity, token, db_id, pull_checkpoint),
        }
    }

    /// A token `Hello` (protocol 4, database `main`; development mode).
    pub fn token_hello_frame(
        identity: &str,
        token: &str,
        db_id: DbId,
        pull_checkpoint: u64,
    ) -> Frame {
        Frame::Hello {
            min_version: 5,
            max_version: HELLO_MAX_VERSION,
            db_id,
            database: "main".into(),
            identity: identity.into(),
            credential: token.into(),
            pull_checkpoint,
            checkpoint_hub: DbId([0; 16]),
            auth: AuthMode::Token,
            key: Vec::new(),
        }
    }

    /// A key `Hello` presenting `key` (protocol 4, database `main`).
    pub fn hello_key_frame(
        identity: &str,
        key: &KeyPair,
        db_id: DbId,
        pull_checkpoint: u64,
    ) -> Frame {
        Frame::Hello {
            min_version: 5,
            max_version: HELLO_MAX_VERSION,
            db_id,
            database: "main".into(),
            identity: identity.into(),
            credential: String::new(),
            pull_checkpoint,
            checkpoint_hub: DbId([0; 16]),
            auth: AuthMode::Key,
            key: key.public_key().as_bytes().to_vec(),
        }
    }

    /// An enrollment `Hello`: redeem `code` for `key` (database `main`).
    pub fn hello_enroll_frame(identity: &str, key: &KeyPair, code: &str, db_id: DbId) -> Frame {
        Frame::Hello {
            min_version: 5,
            max_version: HELLO_MAX_VERSION,
            db_id,
            database: "main".into(),
            identity: identity.into(),
            credential: code.into(),
            pull_checkpoint: 0,
            checkpoint_hub: DbId([0; 16]),
            auth: AuthMode::Enroll,
            key: key.public_key().as_bytes().to_vec(),
        }
    }

    /// The proof of this session's challenge by `key`, for the claimed
    /// database and identity (any of which a test may change).
    pub fn proof(
        key: &KeyPair,
        c: &Challenge,
        database: &str,
        identity: &str,
        edge_db: DbId,
    ) -> Vec<u8> {
        let msg = auth_message(&AuthContext {
            version: c.version,
            hub_id: c.hub_id,
            nonce: c.nonce,
            database,
            identity,
            edge_db,
            key: key.public_key(),
        });
        key.sign(&msg).expect("sign")
    }

    /// `key`'s signature of a batch (what an honest edge signs).
    pub fn sign_batch(
        key: &KeyPair,
        device: DbId,
        seq: u64,
        prev: [u8; 32],
        upto: u64,
        docs: &[WireDoc],
    ) -> Vec<u8> {
        let m = BatchManifest::of(device, seq, prev, upto, docs);
        key.sign(&m.message()).expect("sign")
    }

    /// Connects and says `Hello` like an honest client that backs off: a
    /// refusal over a connection cap (`too_many_connections`, or an upgrade
    /// refused while a previous session of the identity is still being torn
    /// down) is retried every 100 ms for up to `within`. Any other refusal
    /// is returned at once.
    pub async fn connect_hello(
        url: &str,
        identity: &str,
        token: &str,
        db_id: DbId,
        within: Duration,
    ) -> Result<Hostile, Answer> {
        let end = tokio::time::Instant::now() + within;
        loop {
            let last = match Hostile::connect(url).await {
                Ok(mut h) => match h.hello(identity, token, db_id, 0).await {
                    Ok(_) => return Ok(h),
                    Err(a) if a.is_error("too_many_connections") => a,
                    Err(a) => return Err(a),
                },
                Err(e) => Answer::Closed(e),
            };
            if tokio::time::Instant::now() >= end {
                return Err(last);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends `Hello` and waits for `Welcome`; any other answer is the error.
    pub async fn hello(
        &mut self,
        identity: &str,
        token: &str,
        db_id: DbId,
        pull_checkpoint: u64,
    ) -> Result<Welcome, Answer> {
        if self.key.is_none() && !self.token_mode {
            self.key = crate::keys::registered(identity);
        }
        let frame = match (&self.key, self.token_mode) {
            (Some(k), false) => Self::hello_key_frame(identity, k, db_id, pull_checkpoint),
            _ => Self::token_hello_frame(identity, token, db_id, pull_checkpoint),
        };
        self.hello_with(frame).await
    }

    /// Sends a prepared `Hello` (any checkpoint hub, versions…) and waits
    /// for `Welcome`.
    pub async fn hello_with(&mut self, hello: Frame) -> Result<Welcome, Answer> {
        if let Frame::Hello {
            db_id,
            auth,
            database,
            identity,
            ..
        } = &hello
        {
            self.db_id = *db_id;
            self.auth = *auth;
            self.claimed = (database.clone(), identity.clone());
            if self.key.is_none() && *auth != AuthMode::Token {
                self.key = crate::keys::registered(identity);
            }
        }
        if let Err(e) = self.send(&hello).await {
            return Err(Answer::Closed(e));
        }
        match self.answer().await {
            Answer::Welcome(w) => Ok(w),
            other => Err(other),
        }
    }

    /// Waits for the next answer: `Welcome`, `PushAck`, `PushRejected`,
    /// `Error`, the end of the connection or the bound. `Changes` and
    /// `Live` meanwhile are recorded (and acknowledged if
    /// [`Hostile::auto_ack`]); the hub's `Ping`s are answered.
    pub async fn answer(&mut self) -> Answer {
        loop {
            match self.recv().await {
                Incoming::Timeout => return Answer::Timeout,
                Incoming::Closed(why) => return Answer::Closed(why),
                Incoming::Undecodable(e) => return Answer::Undecodable(e),
                Incoming::Frame(f) => {
                    if let Some(a) = self.take(f).await {
                        return a;
                    }
                }
            }
        }
    }

    /// Handles one frame; `Some` when it is an answer.
    async fn take(&mut self, f: Frame) -> Option<Answer> {
        match f {
            Frame::Welcome {
                version,
                hub_db_id,
                push_checkpoint,
                hub_last_etag,
                pending,
                grant,
                batch_seq,
                batch_head,
                ..
            } => {
                let w = Welcome {
                    version,
                    hub_db_id,
                    push_checkpoint,
                    hub_last_etag,
                    pending,
                    grant,
                    batch_seq,
                    batch_head,
                };
                self.chain = (batch_seq, batch_head);
                self.push_upto = push_checkpoint;
                self.welcome = Some(w.clone());
                Some(Answer::Welcome(w))
            }
            Frame::Changes { upto, docs } => {
                self.changes_frames += 1;
                self.seen_upto = self.seen_upto.max(upto);
                for d in docs {
                    self.received.insert(d.id.clone(), d);
                }
                if self.auto_ack {
                    self.acked = upto;
                    if let Err(e) = self.send(&Frame::ChangesAck { upto }).await {
                        return Some(Answer::Closed(e));
                    }
                }
                None
            }
            Frame::Live { upto } => {
                self.live = true;
                self.seen_upto = self.seen_upto.max(upto);
                None
            }
            Frame::Ping { nonce } => {
                if let Err(e) = self.send(&Frame::Pong { nonce }).await {
                    return Some(Answer::Closed(e));
                }
                None
            }
            Frame::Pong { .. } => None,
            Frame::Resync { horizon } => {
                // Recorded, not an answer: the session goes on from 0.
                self.resyncs.push((horizon, self.changes_frames));
                None
            }
            Frame::Compacted { horizon } => {
                // Recorded, not an answer (an honest edge compacts).
                self.compacted.push(horizon);
                None
            }
            Frame::Purge {
                order,
                reason,
                prefixes,
                keep,
                ids,
            } => {
                self.purges.push(PurgeOrder {
                    order,
                    reason,
                    prefixes,
                    keep,
                    ids,
                    markers: Vec::new(),
                });
                None
            }
            Frame::Challenge {
                version,
                nonce,
                hub_id,
            } => {
                let c = Challenge {
                    version,
                    nonce,
                    hub_id,
                };
                self.challenge = Some(c.clone());
                match (&self.key, self.auto_prove) {
                    (Some(k), true) => {
                        let (database, identity) = self.claimed.clone();
                        let signature = Self::proof(k, &c, &database, &identity, self.db_id);
                        if let Err(e) = self.send(&Frame::Proof { signature }).await {
                            return Some(Answer::Closed(e));
                        }
                        None
                    }
                    _ => Some(Answer::Unexpected(Box::new(Frame::Challenge {
                        version,
                        nonce,
                        hub_id,
                    }))),
                }
            }
            Frame::PushAck {
                upto,
                applied,
                conflicts,
                resolved,
            } => {
                if let Some(link) = self.pending_link.take() {
                    self.chain = link;
                }
                Some(Answer::PushAck {
                    upto,
                    applied,
                    conflicts,
                    resolved,
                })
            }
            Frame::PushRejected {
                upto,
                code,
                id,
                rule,
                message,
            } => Some(Answer::PushRejected {
                upto,
                code,
                id,
                rule,
                message,
            }),
            Frame::Error { code, message } => Some(Answer::Error { code, message }),
            Frame::WriteResult { request, answer } => Some(Answer::WriteResult { request, answer }),
            other => Some(Answer::Unexpected(Box::new(other))),
        }
    }

    /// The `PurgeReceipt` of the last order received, stating `removed`
    /// and `ids_hash`, signed by `key` (this client's key when `None`; an
    /// empty signature in a token session): what an honest edge would
    /// send, or a lie about it.
    pub fn purge_receipt(&self, removed: u64, ids_hash: [u8; 32], key: Option<&KeyPair>) -> Frame {
        let o = self.purges.last().cloned().unwrap_or_default();
        let hub_id = self
            .welcome
            .as_ref()
            .map(|w| w.hub_db_id)
            .or(self.challenge.as_ref().map(|c| c.hub_id))
            .unwrap_or(DbId([0; 16]));
        let r = PurgeReceipt {
            hub_id,
            device: self.db_id,
            order: o.order,
            reason: o.reason,
            prefixes: o.prefixes,
            keep: o.keep,
            order_ids: outpost::sync::signed::order_ids_digest(&o.ids),
            removed,
            ids_hash,
        };
        let signature = match key.or(self.key.as_deref()) {
            Some(k) if self.auth != AuthMode::Token => k.sign(&r.message()).unwrap_or_default(),
            _ => Vec::new(),
        };
        Frame::PurgeReceipt {
            order: o.order,
            removed,
            ids_hash,
            signature,
        }
    }

    /// Receives until `Live` (acknowledging each `Changes` if `ack`).
    /// `Err` with the answer that stopped it (an `Error`, the end, the
    /// bound, or an undecodable frame).
    pub async fn pull(&mut self, ack: bool) -> Result<(), Answer> {
        let keep = self.auto_ack;
        self.auto_ack = ack;
        let r = loop {
            if self.live {
                break Ok(());
            }
            match self.recv().await {
                Incoming::Timeout => break Err(Answer::Timeout),
                Incoming::Closed(why) => break Err(Answer::Closed(why)),
                Incoming::Undecodable(e) => break Err(Answer::Undecodable(e)),
                Incoming::Frame(f) => {
                    if let Some(a) = self.take(f).await {
                        break Err(a);
                    }
                }
            }
        };
        self.auto_ack = keep;
        r
    }

    /// Receives for `d` (acknowledging as [`Hostile::auto_ack`] says):
    /// live changes that arrive meanwhile. `Err` if the session ended.
    pub async fn drain_for(&mut self, d: Duration) -> Result<(), Answer> {
        let keep = self.timeout;
        let end = tokio::time::Instant::now() + d;
        let r = loop {
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break Ok(());
            }
            self.timeout = left;
            match self.recv().await {
                Incoming::Timeout => break Ok(()),
                Incoming::Closed(why) => break Err(Answer::Closed(why)),
                Incoming::Undecodable(e) => break Err(Answer::Undecodable(e)),
                Incoming::Frame(f) => {
                    if let Some(a) = self.take(f).await {
                        break Err(a);
                    }
                }
            }
        };
        self.timeout = keep;
        r
    }

    /// Whether this session signs its pushes (a key or enrollment session
    /// with a key).
    pub fn signs(&self) -> bool {
        self.auth != AuthMode::Token && self.key.is_some()
    }

    /// Pushes `docs` (through the real encoder) with the next `upto` and
    /// waits for the answer; in a key session signed as the next link of
    /// the chain, like an honest edge.
    pub async fn push(&mut self, docs: Vec<WireDoc>) -> Answer {
        self.push_upto += 1;
        let upto = self.push_upto;
        if !self.signs() {
            return self.push_signed(docs, upto, 0, GENESIS, Vec::new()).await;
        }
        let (seq, prev) = (self.chain.0 + 1, self.chain.1);
        let key = self.key.clone().expect("a key");
        let signature = Self::sign_batch(&key, self.db_id, seq, prev, upto, &docs);
        self.push_signed(docs, upto, seq, prev, signature).await
    }

    /// `Push` frames of `batches` ((upto, docs) each) that continue this
    /// session's chain one after the other, signed like an honest edge's
    /// (unsigned in a token session); sent with [`Hostile::send`] they do
    /// not move [`Hostile::chain`].
    pub fn signed_pushes(&self, batches: Vec<(u64, Vec<WireDoc>)>) -> Vec<Frame> {
        let (mut seq, mut prev) = self.chain;
        let mut out = Vec::with_capacity(batches.len());
        for (upto, docs) in batches {
            let Some(key) = self.key.as_ref().filter(|_| self.signs()) else {
                out.push(Frame::Push {
                    upto,
                    seq: 0,
                    prev: GENESIS,
                    signature: Vec::new(),
                    docs,
                });
                continue;
            };
            seq += 1;
            let signature = Self::sign_batch(key, self.db_id, seq, prev, upto, &docs);
            let next = BatchManifest::of(self.db_id, seq, prev, upto, &docs).hash();
            out.push(Frame::Push {
                upto,
                seq,
                prev,
                signature,
                docs,
            });
            prev = next;
        }
        out
    }

    /// A `Write` of `ops` numbered `request`, signed as an honest edge
    /// signs it (this session's nonce, its hub and device) by `key` (this
    /// client's key when `None`; unsigned in a token session).
    pub fn write_frame(&self, request: u64, ops: Vec<WireWrite>, key: Option<&KeyPair>) -> Frame {
        let hub_id = self.welcome.as_ref().map_or(DbId([0; 16]), |w| w.hub_db_id);
        let nonce = match (&self.challenge, self.signs()) {
            (Some(c), true) => c.nonce,
            _ => GENESIS,
        };
        let m = HubWriteManifest::of(hub_id, self.db_id, nonce, request, &ops);
        let signature = match key.or(self.key.as_deref()) {
            Some(k) if self.signs() => k.sign(&m.message()).expect("sign"),
            _ => Vec::new(),
        };
        Frame::Write {
            request,
            signature,
            ops,
        }
    }

    /// Sends a signed `Write` of `ops` (the next request number) and
    /// returns the hub's answer.
    pub async fn write(&mut self, ops: Vec<WireWrite>) -> Answer {
        self.write_request += 1;
        let f = self.write_frame(self.write_request, ops, None);
        if let Err(e) = self.send(&f).await {
            return Answer::Closed(e);
        }
        self.answer().await
    }

    /// One [`Hostile::signed_pushes`] frame.
    pub fn signed_push_frame(&self, upto: u64, docs: Vec<WireDoc>) -> Frame {
        self.signed_pushes(vec![(upto, docs)]).remove(0)
    }

    /// Sends a `Push` with exactly these fields and waits for the answer
    /// (a `PushAck` moves [`Hostile::chain`] to this batch).
    pub async fn push_signed(
        &mut self,
        docs: Vec<WireDoc>,
        upto: u64,
        seq: u64,
        prev: [u8; 32],
        signature: Vec<u8>,
    ) -> Answer {
        self.pending_link = (seq > 0).then(|| {
            (
                seq,
                BatchManifest::of(self.db_id, seq, prev, upto, &docs).hash(),
            )
        });
        let f = Frame::Push {
            upto,
            seq,
            prev,
            signature,
            docs,
        };
        if let Err(e) = self.send(&f).await {
            return Answer::Closed(e);
        }
        self.answer().await
    }

    /// Sends raw bytes as one message and waits for the answer.
    pub async fn push_bytes(&mut self, b: Vec<u8>) -> Answer {
        if let Err(e) = self.send_bytes(b).await {
            return Answer::Closed(e);
        }
        self.answer().await
    }

    /// Pushes raw documents ([`RawDoc`]) and waits for the answer; in a key
    /// session signed over what the hub will decode (when it decodes at
    /// all), so the documents' own faults are what is tested.
    pub async fn push_raw(&mut self, docs: &[RawDoc]) -> Answer {
        self.push_upto += 1;
        let upto = self.push_upto;
        if !self.signs() {
            return self.push_bytes(push_frame(upto, docs, None)).await;
        }
        let (seq, prev) = (self.chain.0 + 1, self.chain.1);
        let unsigned = push_frame_signed(upto, seq, prev, &[], docs, None);
        let signature = match Frame::decode(&unsigned, usize::MAX) {
            Ok(Frame::Push { docs: wire, .. }) => {
                let key = self.key.clone().expect("a key");
                self.pending_link = Some((
                    seq,
                    BatchManifest::of(self.db_id, seq, prev, upto, &wire).hash(),
                ));
                Self::sign_batch(&key, self.db_id, seq, prev, upto, &wire)
            }
            _ => Vec::new(),
        };
        self.push_bytes(push_frame_signed(upto, seq, prev, &signature, docs, None))
            .await
    }

    /// Waits for the session to end: the `Error` or closing that ends it
    /// (frames meanwhile are handled as in [`Hostile::answer`]), `Timeout`
    /// if it is still open after the bound.
    pub async fn until_end(&mut self) -> Answer {
        loop {
            let a = self.answer().await;
            match a {
                Answer::PushAck { .. } | Answer::PushRejected { .. } | Answer::Welcome(_) => {
                    continue;
                }
                Answer::Unexpected(_) => continue,
                other => return other,
            }
        }
    }

    /// Whether the hub closes the connection within the bound after an
    /// answer (reads and drops anything until then).
    pub async fn closes(&mut self) -> bool {
        loop {
            match self.recv().await {
                Incoming::Closed(_) => return true,
                Incoming::Timeout => return false,
                _ => continue,
            }
        }
    }

    /// The hub's db id from `Welcome` (panics before it).
    pub fn hub_db_id(&self) -> DbId {
        self.welcome.as_ref().expect("Welcome").hub_db_id
    }

    /// The hub's last etag from `Welcome` (panics before it).
    pub fn hub_last_etag(&self) -> u64 {
        self.welcome.as_ref().expect("Welcome").hub_last_etag
    }

    /// Closes the WebSocket (best effort).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
    }
}

/// The body bytes of the first version of `d` as text (lossy).
pub fn body_text(d: &WireDoc) -> String {
    d.versions
        .first()
        .map(|v| String::from_utf8_lossy(&v.body).into_owned())
        .unwrap_or_default()
}
