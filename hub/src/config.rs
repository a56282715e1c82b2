//! The hub's configuration file (TOML): parsing, validation, token checks.
//!
//! ```toml
//! listen = "127.0.0.1:4000"        # address for HTTP + WebSocket
//! data_dir = "./hub-data"          # one sub-directory per database
//! demo_site = "demo-site"          # optional: static files served at /
//! [tls]                            # optional; absent = plain ws://
//! cert = "hub.crt"                 # PEM chain
//! key = "hub.key"                  # PEM private key
//! [[database]]
//! name = "main"
//! never_delete = ["Invoices"]      # optional: documents of these collections are never deleted
//! indexes = ["indexes/mortgage.mjs"] # optional: JavaScript modules of index definitions
//! [database.conflicts]             # per-collection conflict policy; "*" = default
//! "*" = "latest"
//! Payments = "manual"
//! [dev]                            # optional: development mode
//! tokens = true                    # allow [[edge]] token_sha256 / [[upstream]] token
//! [[edge]]
//! name = "laptop-7"                # identity
//! pubkey = "p256:04..."            # its enrolled public key (absent until enrolled)
//! enroll_code_sha256 = "hex..."    # a pending one-time enrollment code (SHA-256)
//! enroll_expires = 1767225600      # unix seconds: the code is refused after it
//! revoked = true                   # optional: refused with Error(revoked)
//! token_sha256 = "hex..."          # dev mode only: SHA-256 of a secret token
//! database = "main"
//! read = ["patients/dr-7/"]        # id prefixes the edge may read (hub -> edge)
//! write = ["patients/dr-7/"]       # id prefixes the edge may write (edge -> hub)
//! # admin = true                   # certificate identities: admin permissions
//! # [[edge.cert]]                  # a certificate identity's pins (`outpost-hub edge add --cert`)
//! # key = "sha256:…"               # SHA-256 of its SubjectPublicKeyInfo
//! # issuers = ["sha256:…"]         # its issuers' key hashes, leaf's issuer first
//! # public_key = "p256:04…"        # its key; not_before / not_after: unix seconds
//! [[upstream]]                     # optional: this hub is an edge of another hub
//! database = "main"
//! url = "ws://127.0.0.1:4001/sync"
//! identity = "boston"
//! key_file = "boston.key"          # this hub's key there (`outpost-hub keygen`)
//! # token = "..."                  # or, dev mode only: a plain token it presents
//! ca_cert = "cloud.crt"            # optional PEM to trust for wss://
//! # cert = "boston.pem"            # or a certificate identity: chain + PKCS#8 key (wss:// only)
//! [admin]                          # optional: who may read /status, /metrics, /admin/*
//! token_sha256 = "hex..."          # SHA-256 of the admin token (`outpost-hub admin-token`)
//! [limits]                         # optional; every key has a default (see [`Limits`])
//! max_connections = 10000
//! [compaction]                     # optional (see [`CompactionConfig`])
//! retention_secs = 2592000         # an unseen device holds tombstones back this long (30 days)
//! interval_secs = 3600             # the running hub compacts every hour; 0 = never by itself
//! ```
//!
//! Relative paths (`data_dir`, `demo_site`, `tls.cert`, `tls.key`,
//! `upstream.ca_cert`, `upstream.key_file`) are taken relative to the directory of the
//! configuration file, so the hub behaves the same whatever its working
//! directory. Unknown fields are refused, and every error names the field.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use outpost::keys::PublicKey;
use outpost::sync::{ConflictPolicy, Prefixes};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{HubError, Result};

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4000";
/// The default data directory (relative to the configuration file).
pub const DEFAULT_DATA_DIR: &str = "./hub-data";
/// The name of the per-database lock file (the engine's store takes it).
pub use outpost::store::vfs::LOCK_FILE;
/// Written by `serve` in the data directory while it runs: where it actually
/// listens (after `--listen`, port 0, `--dev-tls`), for `status` to find it.
pub const SERVING_FILE: &str = "serving.json";

/// A validated configuration. Paths are absolute (resolved against the
/// directory of the configuration file).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this configuration was read from (absolute).
    pub path: PathBuf,
    /// Address for HTTP and WebSocket.
    pub listen: SocketAddr,
    /// Directory holding one sub-directory per database.
    pub data_dir: PathBuf,
    /// Static files served at `/`, if any.
    pub demo_site: Option<PathBuf>,
    /// TLS certificate and key; `None` serves plain HTTP (`ws://`).
    pub tls: Option<TlsConfig>,
    /// The databases this hub serves, in file order.
    pub databases: Vec<DatabaseConfig>,
    /// The edges allowed to connect, in file order.
    pub edges: Vec<EdgeAccess>,
    /// Hubs this hub replicates with as an edge.
    pub upstreams: Vec<UpstreamConfig>,
    /// SHA-256 of the admin token (`[admin] token_sha256`): who may read
    /// `/status` and `/metrics`. `None`: nobody (both answer 401).
    pub admin_token_sha256: Option<[u8; 32]>,
    /// Connection and rate limits (`[limits]`).
    pub limits: Limits,
    /// Tombstone compaction (`[compaction]`).
    pub compaction: CompactionConfig,
    /// Development mode (`[dev] tokens = true`): shared-secret tokens are
    /// accepted (`[[edge]] token_sha256`, `[[upstream]] token`).
    pub dev_tokens: bool,
    /// Whether some edge is a certificate identity, worked out once by
    /// [`Config::parse`]: read at every TLS handshake
    /// ([`Config::has_certificate_identities`]), where walking ten thousand
    /// edges would be paid per connection.
    certificate_identities: bool,
}

/// The `[tls]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first).
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// One `[[database]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// The name (also its directory under `data_dir`).
    pub name: String,
    /// Conflict policies by collection.
    pub conflicts: ConflictPolicies,
    /// Collections whose documents are never deleted (`never_delete`):
    /// a delete, or a move out of the collection, is refused with
    /// `delete_forbidden` at the hub and, once told, at every edge.
    pub never_delete: Vec<String>,
    /// JavaScript modules of index definitions (`indexes`, resolved against
    /// the configuration file's directory), run by the hub's embedded engine
    /// (`crate::js`, `crate::indexes`).
    pub indexes: Vec<PathBuf>,
}

/// Per-collection conflict policies (`[database.conflicts]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConflictPolicies {
    default: ConflictPolicy,
    /// By lowercase collection name (collections are case-insensitive).
    by_collection: BTreeMap<String, ConflictPolicy>,
}

impl ConflictPolicies {
    /// The policy for documents of `collection` (`None`: no collection): the
    /// collection's own entry, else the `"*"` entry, else `latest`.
    pub fn policy_for(&self, collection: Option<&str>) -> ConflictPolicy {
        collection
            .and_then(|c| self.by_collection.get(&c.to_lowercase()))
            .copied()
            .unwrap_or(self.default)
    }

    /// The default policy (the `"*"` entry, else `latest`).
    pub fn default_policy(&self) -> ConflictPolicy {
        self.default
    }

    /// The per-collection entries (lowercase names).
    pub fn collections(&self) -> impl Iterator<Item = (&str, ConflictPolicy)> {
        self.by_collection.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

/// One `[[edge]]` of the hub's configuration: an identity allowed to
/// replicate, how it proves who it is (its key, a pending enrollment code,
/// or in development mode a token), and its scope. (The edge's own side of a session is
/// configured by [`outpost::sync::EdgeConfig`].)
#[derive(Clone, PartialEq, Eq)]
pub struct EdgeAccess {
    /// The identity.
    pub name: String,
    /// SHA-256 of the edge's secret token (development mode only).
    pub token_sha256: Option<[u8; 32]>,
    /// Its enrolled public key.
    pub pubkey: Option<PublicKey>,
    /// A pending one-time enrollment code: its SHA-256 and when it expires
    /// (unix seconds).
    pub enroll: Option<Enrollment>,
    /// Revoked: every session is refused (and ended) with `Error(revoked)`.
    pub revoked: bool,
    /// The database it replicates.
    pub database: String,
    /// Id prefixes it may read (hub to edge).
    pub read: Prefixes,
    /// Id prefixes it may write (edge to hub).
    pub write: Prefixes,
    /// Whether it is a hub relaying its own edges' writes (`relay = true`):
    /// it may introduce database ids other than its own
    /// (`docs/security.md`, "Causality").
    pub relay: bool,
    /// Its own push and session budgets (`[edge.limits]`), in place of
    /// `[limits]`'s for this identity.
    pub limits: EdgeLimits,
    /// A certificate identity: its pinned certificates (`[[edge.cert]]`,
    /// `crate::certs`); empty for a key, enrollment or token identity.
    pub certs: Vec<crate::certs::PinnedCert>,
    /// Admin permissions (`admin = true`, a certificate identity): its
    /// client certificate opens `/status`, `/metrics` and `/admin/*` as the
    /// admin token does, and its certificates are never replaced by a
    /// certificate itself, only by an operator (`outpost-hub edge cert-add`).
    pub admin: bool,
}

impl fmt::Debug for EdgeAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeAccess")
            .field("name", &self.name)
            .field("database", &self.database)
            .field("read", &self.read)
            .field("write", &self.write)
            .field("relay", &self.relay)
            .field("pubkey", &self.pubkey)
            .field("revoked", &self.revoked)
            .field("certs", &self.certs.len())
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

/// A pending enrollment code of an `[[edge]]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Enrollment {
    /// SHA-256 of the code.
    pub code_sha256: [u8; 32],
    /// Unix seconds after which the code is refused.
    pub expires: i64,
}

impl fmt::Debug for Enrollment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enrollment")
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

impl Enrollment {
    /// Whether `code` is this enrollment's code and `now` (unix seconds) is
    /// not past its expiry (the digests compared in constant time).
    pub fn redeems(&self, code: &str, now: i64) -> bool {
        let equal = constant_time_eq(&token_digest(code), &self.code_sha256);
        equal && !code.is_empty() && now <= self.expires
    }
}

// ---------------------------------------------------------------------------
// The file as written

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    demo_site: Option<PathBuf>,
    tls: Option<RawTls>,
    #[serde(default, rename = "database")]
    databases: Vec<RawDatabase>,
    #[serde(default, rename = "edge")]
    edges: Vec<RawEdge>,
    #[serde(default, rename = "upstream")]
    upstreams: Vec<RawUpstream>,
    admin: Option<RawAdmin>,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    compaction: CompactionConfig,
    dev: Option<RawDev>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDev {
    #[serde(default)]
    tokens: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    token_sha256: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    name: String,
    #[serde(default)]
    conflicts: BTreeMap<String, String>,
    #[serde(default)]
    never_delete: Vec<String>,
    #[serde(default)]
    indexes: Vec<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEdge {
    name: String,
    token_sha256: Option<String>,
    pubkey: Option<String>,
    enroll_code_sha256: Option<String>,
    enroll_expires: Option<i64>,
    #[serde(default)]
    revoked: bool,
    database: String,
    #[serde(default)]
    read: Vec<String>,
    #[serde(default)]
    write: Vec<String>,
    #[serde(default)]
    relay: bool,
    #[serde(default)]
    limits: EdgeLimits,
    #[serde(default)]
    cert: Vec<crate::certs::RawCert>,
    #[serde(default)]
    admin: bool,
}

// ---------------------------------------------------------------------------
// Loading and validation

impl Config {
    /// Reads, parses and validates the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                HubError::config(
                    path,
                    "no such file (create one with `outpost-hub init`, or pass --config)",
                )
            } else {
                HubError::io(format!("read {}", path.display()), e)
            }
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates configuration text. `path` is where it comes
    /// from: relative paths in it are resolved against its directory, and
    /// errors name it.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let path = std::path::absolute(path)
            .map_err(|e| HubError::io(format!("resolve {}", path.display()), e))?;
        let err = |msg: String| HubError::config(&path, msg);
        let raw: RawConfig = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("/")).to_path_buf();

        let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            err(format!(
                "listen: {listen_text:?} is not a socket address (expected IP:PORT, like {DEFAULT_LISTEN:?})"
            ))
        })?;
        let data_dir = resolve(
            &base,
            raw.data_dir
                .as_deref()
                .unwrap_or(Path::new(DEFAULT_DATA_DIR)),
        );
        if raw
            .data_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return Err(err("data_dir: must not be empty".into()));
        }
        let demo_site = raw.demo_site.as_deref().map(|d| resolve(&base, d));
        let tls = match raw.tls {
            None => None,
            Some(t) => {
                if t.cert.as_os_str().is_empty() {
                    return Err(err("tls.cert: must not be empty".into()));
                }
                if t.key.as_os_str().is_empty() {
                    return Err(err("tls.key: must not be empty".into()));
                }
                Some(TlsConfig {
                    cert: resolve(&base, &t.cert),
                    key: resolve(&base, &t.key),
                })
            }
        };

        let mut databases = Vec::with_capacity(raw.databases.len());
        let mut db_names = BTreeSet::new();
        for (i, d) in raw.databases.into_iter().enumerate() {
            let at = format!("database #{} ({:?})", i + 1, d.name);
            check_name(&d.name, 64, false).map_err(|m| err(format!("{at}: name: {m}")))?;
            if !db_names.insert(d.name.to_lowercase()) {
                return Err(err(format!(
                    "{at}: name: a database named {:?} is already defined (names are case-insensitive)",
                    d.name
                )));
            }
            let conflicts = parse_conflicts(&d.conflicts).map_err(|m| err(format!("{at}: {m}")))?;
            for c in &d.never_delete {
                outpost::doc::validate_collection(c)
                    .map_err(|e| err(format!("{at}: never_delete {c:?}: {e}")))?;
            }
            if d.never_delete.len() > outpost::policy::MAX_GUARDS {
                return Err(err(format!(
                    "{at}: never_delete: at most {} collections",
                    outpost::policy::MAX_GUARDS
                )));
            }
            databases.push(DatabaseConfig {
                name: d.name,
                conflicts,
                never_delete: d.never_delete,
                indexes: d.indexes.iter().map(|p| resolve(&base, p)).collect(),
            });
        }
        let known_db = |name: &str| databases.iter().any(|d| d.name == name);
        let db_list = || {
            let names: Vec<&str> = databases.iter().map(|d| d.name.as_str()).collect();
            if names.is_empty() {
                "none is defined: add a [[database]]".to_string()
            } else {
                format!("defined: {}", names.join(", "))
            }
        };

        let dev_tokens = raw.dev.as_ref().is_some_and(|d| d.tokens);
        let mut edges = Vec::with_capacity(raw.edges.len());
        let mut edge_names = BTreeSet::new();
        let mut pinned_keys: BTreeMap<crate::certs::KeyHash, String> = BTreeMap::new();
        for (i, e) in raw.edges.into_iter().enumerate() {
            let at = format!("edge #{} ({:?})", i + 1, e.name);
            check_name(&e.name, 128, true).map_err(|m| err(format!("{at}: name: {m}")))?;
            if !edge_names.insert(e.name.to_lowercase()) {
                return Err(err(format!(
                    "{at}: name: an edge named {:?} is already defined (names are case-insensitive)",
                    e.name
                )));
            }
            let token_sha256 = match &e.token_sha256 {
                None => None,
                Some(_) if !dev_tokens => {
                    return Err(err(format!(
                        "{at}: token_sha256: shared-secret tokens are a development mode, off by default; \
                         give the edge a key (`outpost-hub edge enroll {0}` issues an enrollment code, \
                         `outpost-hub edge add {0} --pubkey KEY` registers a key), or allow tokens with \
                         `[dev] tokens = true`",
                        e.name
                    )));
                }
                Some(t) => {
                    Some(parse_sha256_hex(t).map_err(|m| err(format!("{at}: token_sha256: {m}")))?)
                }
            };
            let pubkey = e
                .pubkey
                .as_deref()
                .map(PublicKey::parse_text)
                .transpose()
                .map_err(|k| {
                    err(format!(
                        "{at}: pubkey: {k} (the edge's public key, as `outpost-hub keygen` or the edge prints it)"
                    ))
                })?;
            let enroll = match (&e.enroll_code_sha256, e.enroll_expires) {
                (None, None) => None,
                (Some(c), Some(expires)) => Some(Enrollment {
                    code_sha256: parse_sha256_hex(c)
                        .map_err(|m| err(format!("{at}: enroll_code_sha256: {m}")))?,
                    expires,
                }),
                (Some(_), None) => {
                    return Err(err(format!(
                        "{at}: enroll_expires: missing (unix seconds after which the enrollment code is refused)"
                    )));
                }
                (None, Some(_)) => {
                    return Err(err(format!(
                        "{at}: enroll_expires: given without enroll_code_sha256"
                    )));
                }
            };
            if !known_db(&e.database) {
                return Err(err(format!(
                    "{at}: database: no database named {:?} ({})",
                    e.database,
                    db_list()
                )));
            }
            e.limits.validate().map_err(|m| err(format!("{at}: {m}")))?;
            let read = parse_prefixes(&e.read).map_err(|m| err(format!("{at}: read: {m}")))?;
            let write = parse_prefixes(&e.write).map_err(|m| err(format!("{at}: write: {m}")))?;
            let mut certs = Vec::with_capacity(e.cert.len());
            for (j, c) in e.cert.into_iter().enumerate() {
                let pin = c
                    .parse()
                    .map_err(|m| err(format!("{at}: cert #{}: {m}", j + 1)))?;
                if let Some(other) = pinned_keys.insert(pin.key, e.name.clone()) {
                    return Err(err(format!(
                        "{at}: cert #{}: key {} is already pinned for edge {other:?} (a key is one identity's)",
                        j + 1,
                        crate::certs::hash_text(&pin.key)
                    )));
                }
                certs.push(pin);
            }
            if !certs.is_empty() && (pubkey.is_some() || enroll.is_some() || token_sha256.is_some())
            {
                return Err(err(format!(
                    "{at}: a certificate identity ([[edge.cert]]) has no pubkey, enrollment code or token: \
                     it authenticates with its client certificate"
                )));
            }
            edges.push(EdgeAccess {
                name: e.name,
                token_sha256,
                pubkey,
                enroll,
                revoked: e.revoked,
                database: e.database,
                read,
                write,
                relay: e.relay,
                limits: e.limits,
                certs,
                admin: e.admin,
            });
        }

        let mut upstreams = Vec::with_capacity(raw.upstreams.len());
        for (i, u) in raw.upstreams.into_iter().enumerate() {
            let at = format!("upstream #{} ({:?})", i + 1, u.url);
            if !known_db(&u.database) {
                return Err(err(format!(
                    "{at}: database: no database named {:?} ({})",
                    u.database,
                    db_list()
                )));
            }
            if !(u.url.starts_with("ws://") || u.url.starts_with("wss://"))
                || u.url.len() <= "wss://".len()
            {
                return Err(err(format!(
                    "{at}: url: expected a ws:// or wss:// URL, like \"ws://127.0.0.1:4001/sync\""
                )));
            }
            upstreams.push(u.parse(&at, &base, dev_tokens).map_err(err)?);
        }

        let admin_token_sha256 = match raw.admin {
            None => None,
            Some(a) => Some(
                parse_sha256_hex(&a.token_sha256)
                    .map_err(|m| err(format!("admin: token_sha256: {m}")))?,
            ),
        };
        let limits = raw.limits;
        limits.validate().map_err(err)?;
        let compaction = raw.compaction;
        compaction.validate().map_err(err)?;

        let certificate_identities = edges.iter().any(|e| !e.certs.is_empty());
        Ok(Config {
            path,
            listen,
            data_dir,
            demo_site,
            tls,
            databases,
            edges,
            upstreams,
            admin_token_sha256,
            limits,
            compaction,
            dev_tokens,
            certificate_identities,
        })
    }

    /// Whether some edge is a certificate identity (`[[edge.cert]]`): the
    /// hub's TLS asks clients for a certificate only then
    /// (`crate::tls::ClientCerts`, at each handshake). Worked out when the
    /// file was read: an edit of `edges` in memory does not change it (the
    /// hub only ever replaces its whole configuration, on a reload).
    pub fn has_certificate_identities(&self) -> bool {
        self.certificate_identities
    }

    /// The database named `name`.
    pub fn database(&self, name: &str) -> Option<&DatabaseConfig> {
        self.databases.iter().find(|d| d.name == name)
    }

    /// The edge named `name`.
    pub fn edge(&self, name: &str) -> Option<&EdgeAccess> {
        self.edges.iter().find(|e| e.name == name)
    }

    /// The limits of identity `name`: `[limits]` with its `[edge.limits]`.
    pub fn limits_for(&self, name: &str) -> Limits {
        match self.edge(name) {
            Some(e) => self.limits.with(&e.limits),
            None => self.limits.clone(),
        }
    }

    /// The directory of database `name`: `data_dir/<name>`.
    pub fn database_dir(&self, name: &str) -> PathBuf {
        self.data_dir.join(name)
    }

    /// The edge named `edge_name` if `token` is its token and tokens are
    /// allowed (`[dev] tokens = true`). The SHA-256 digests are compared in
    /// constant time, and a digest is computed and compared even for an
    /// unknown name.
    pub fn authenticate(&self, edge_name: &str, token: &str) -> Option<&EdgeAccess> {
        let digest = token_digest(token);
        let edge = self.edge(edge_name);
        let expected = edge.and_then(|e| e.token_sha256);
        let equal = constant_time_eq(&digest, &expected.unwrap_or([0u8; 32]));
        match edge {
            Some(e) if equal && expected.is_some() && !token.is_empty() && self.dev_tokens => {
                Some(e)
            }
            _ => None,
        }
    }
}

impl Config {
    /// Whether `token` is the admin token (`[admin] token_sha256`), compared
    /// in constant time; always `false` when no admin is configured.
    pub fn is_admin(&self, token: &str) -> bool {
        let digest = token_digest(token);
        let expected = self.admin_token_sha256.unwrap_or([0u8; 32]);
        let equal = constant_time_eq(&digest, &expected);
        equal && self.admin_token_sha256.is_some() && !token.is_empty()
    }

    /// The admin token a command sends to a running hub: `given` (its
    /// `--admin-token`), else the demo configuration's public one when this
    /// is the demo's configuration (`outpost-hub init --demo`).
    pub fn admin_token_or_demo(&self, given: Option<String>) -> Option<String> {
        let demo = crate::edit::DEMO_ADMIN_TOKEN;
        given.or_else(|| self.is_admin(demo).then(|| demo.to_string()))
    }
}

/// SHA-256 of a token.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// SHA-256 of a token, as the 64 lowercase hex digits the configuration holds.
pub fn token_sha256_hex(token: &str) -> String {
    outpost::codec::to_hex(&token_digest(token))
}

/// Whether two digests are equal, in time independent of where they differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    std::hint::black_box(diff) == 0
}

fn parse_sha256_hex(s: &str) -> std::result::Result<[u8; 32], String> {
    let s = s.trim();
    if s.len() != 64 {
        return Err(format!(
            "expected 64 hex digits (the SHA-256 of the token; `outpost-hub edge add` writes it), found {} characters",
            s.len()
        ));
    }
    outpost::codec::from_hex(s)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| "expected 64 hex digits (0-9, a-f)".into())
}

/// Validates and normalises a list of id prefixes (see
/// [`outpost::sync::Prefixes`]).
pub fn parse_prefixes(list: &[String]) -> std::result::Result<Prefixes, String> {
    Prefixes::parse(list).map_err(|e| e.to_string())
}

fn parse_conflicts(
    raw: &BTreeMap<String, String>,
) -> std::result::Result<ConflictPolicies, String> {
    let mut out = ConflictPolicies::default();
    for (coll, policy) in raw {
        let p: ConflictPolicy = policy
            .parse()
            .map_err(|e: outpost::InputError| format!("conflicts.{coll:?}: {e}"))?;
        if coll == "*" {
            out.default = p;
            continue;
        }
        outpost::doc::validate_collection(coll).map_err(|e| format!("conflicts.{coll:?}: {e}"))?;
        if out.by_collection.insert(coll.to_lowercase(), p).is_some() {
            return Err(format!(
                "conflicts.{coll:?}: collection given twice (collection names are case-insensitive)"
            ));
        }
    }
    Ok(out)
}

/// Checks a database, edge or identity name. Database names become directory
/// names, so they are kept to letters, digits, `-` and `_`; identities may
/// also hold `.` and `@`.
fn check_name(name: &str, max: usize, identity: bool) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > max {
        return Err(format!("at most {max} characters"));
    }
    let ok = |c: char| {
        c.is_ascii_alphanumeric() || c == '-' || c == '_' || (identity && (c == '.' || c == '@'))
    };
    if let Some(bad) = name.chars().find(|&c| !ok(c)) {
        let allowed = if identity {
            "letters, digits, '-', '_', '.' and '@'"
        } else {
            "letters, digits, '-' and '_'"
        };
        return Err(format!(
            "{name:?} contains {bad:?}; only {allowed} are allowed"
        ));
    }
    if name.starts_with(['-', '.']) {
        return Err(format!("{name:?} must not start with '-' or '.'"));
    }
    Ok(())
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    // Drop `.` components for tidier messages (`..` is kept: it may cross a symlink).
    joined
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

mod compaction;
mod limits;
mod upstream;
pub use self::compaction::{check_retention, retention_ms};
pub use compaction::CompactionConfig;
pub use limits::{EdgeLimits, Limits};
use upstream::RawUpstream;
pub use upstream::UpstreamConfig;

#[cfg(test)]
mod key_tests;

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
listen = "127.0.0.1:4000"
data_dir = "./hub-data"
demo_site = "demo-site"
[dev]
tokens = true
[tls]
cert = "hub.crt"
key = "/etc/hub.key"
[[database]]
name = "main"
[database.conflicts]
"*" = "latest"
Payments = "manual"
[[database]]
name = "other"
[[edge]]
name = "laptop-7"
token_sha256 = "TOKEN"
database = "main"
read = ["patients/dr-7/"]
write = ["Patients/dr-7"]
[[upstream]]
database = "main"
url = "ws://127.0.0.1:4001/sync"
identity = "boston"
token = "s3cret"
ca_cert = "cloud.crt"
"#;

    fn good() -> String {
        GOOD.replace("TOKEN", &token_sha256_hex("tok"))
    }

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, Path::new("/etc/outpost/hub.toml"))
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn parses_the_documented_example() {
        let c = parse(&good()).unwrap();
        assert_eq!(c.listen, "127.0.0.1:4000".parse().unwrap());
        assert_eq!(c.data_dir, Path::new("/etc/outpost/hub-data"));
        assert_eq!(
            c.demo_site.as_deref(),
            Some(Path::new("/etc/outpost/demo-site"))
        );
        let tls = c.tls.as_ref().unwrap();
        assert_eq!(tls.cert, Path::new("/etc/outpost/hub.crt"));
        assert_eq!(tls.key, Path::new("/etc/hub.key"));
        assert_eq!(c.databases.len(), 2);
        let main = c.database("main").unwrap();
        assert_eq!(
            main.conflicts.policy_for(Some("payments")),
            ConflictPolicy::Manual
        );
        assert_eq!(
            main.conflicts.policy_for(Some("Visits")),
            ConflictPolicy::Latest
        );
        assert_eq!(main.conflicts.policy_for(None), ConflictPolicy::Latest);
        let e = c.edge("laptop-7").unwrap();
        assert_eq!(e.read, e.write);
        assert!(e.read.allows("patients/dr-7/1"));
        assert!(!e.read.allows("patients/dr-8/1"));
        let u = &c.upstreams[0];
        assert_eq!(
            u.ca_cert.as_deref(),
            Some(Path::new("/etc/outpost/cloud.crt"))
        );
        assert!(!format!("{u:?}").contains("s3cret"));
    }

    #[test]
    fn defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.data_dir, Path::new("/etc/outpost/hub-data"));
        assert!(c.tls.is_none() && c.demo_site.is_none());
        assert!(c.databases.is_empty() && c.edges.is_empty());
    }

    #[test]
    fn limits_and_admin() {
        let c = parse("").unwrap();
        assert_eq!(c.limits, Limits::default());
        assert!(c.admin_token_sha256.is_none() && !c.is_admin("") && !c.is_admin("x"));
        let c = parse(&format!(
            "[admin]\ntoken_sha256 = \"{}\"\n[limits]\nmax_connections = 7\npushes_per_second = 0\n",
            token_sha256_hex("root")
        ))
        .unwrap();
        assert!(c.is_admin("root") && !c.is_admin("roo") && !c.is_admin(""));
        assert_eq!(c.limits.max_connections, 7);
        assert_eq!(c.limits.pushes_per_second, 0);
        assert_eq!(c.limits.hello_timeout_ms, 10_000);
        assert!(err("[limits]\nmax_connections = 0\n").contains("limits.max_connections"));
        assert!(err("[limits]\nhello_timeout_ms = 99999999\n").contains("hello_timeout_ms"));
        assert!(err("[limits]\nmax_sockets = 1\n").contains("max_sockets"));
        assert!(err("[admin]\ntoken_sha256 = \"abc\"\n").contains("admin: token_sha256"));
    }

    #[test]
    fn compaction() {
        let c = parse("").unwrap();
        assert_eq!(c.compaction, CompactionConfig::default());
        assert_eq!(c.compaction.retention_secs, 30 * 86_400);
        assert_eq!(c.compaction.interval_secs, 3600);
        assert_eq!(c.compaction.retention_ms(), 30 * 86_400 * 1000);
        let c = parse("[compaction]\nretention_secs = 60\ninterval_secs = 0\n").unwrap();
        assert_eq!(c.compaction.retention_secs, 60);
        assert_eq!(c.compaction.interval_secs, 0);
        for (bad, key) in [
            (
                "[compaction]\nretention_secs = 0\n",
                "compaction.retention_secs",
            ),
            (
                "[compaction]\nretention_secs = 999999999999\n",
                "compaction.retention_secs",
            ),
            (
                "[compaction]\ninterval_secs = 999999999999\n",
                "compaction.interval_secs",
            ),
            ("[compaction]\nretention_secs = -1\n", "retention_secs"),
            ("[compaction]\nretention_secs = \"30d\"\n", "retention_secs"),
            ("[compaction]\nevery = 5\n", "every"),
        ] {
            let e = err(bad);
            assert!(e.contains(key), "{bad}: {e}");
        }
    }

    #[test]
    fn authenticates_by_digest() {
        let c = parse(&good()).unwrap();
        assert_eq!(c.authenticate("laptop-7", "tok").unwrap().name, "laptop-7");
        assert!(c.authenticate("laptop-7", "tok2").is_none());
        assert!(c.authenticate("laptop-7", "").is_none());
        assert!(c.authenticate("nobody", "tok").is_none());
        assert_eq!(
            token_sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let g = good();
        assert!(err("bogus = 1").contains("bogus"));
        assert!(err("listen = \"nope\"").contains("listen"));
        let e = err(&g.replace("[[upstream]]", "[[upstream]]\nextra = 1"));
        assert!(e.contains("extra"), "{e}");
        let e = err(&g.replace("\"manual\"", "\"sometimes\""));
        assert!(
            e.contains("conflicts.\"Payments\"") && e.contains("sometimes"),
            "{e}"
        );
        let e = err(&g.replace("name = \"other\"", "name = \"Main\""));
        assert!(e.contains("already defined"), "{e}");
        let e = err(&format!(
            "{g}\n[[edge]]\nname = \"laptop-7\"\ntoken_sha256 = \"{}\"\ndatabase = \"main\"\n",
            token_sha256_hex("x")
        ));
        assert!(
            e.contains("edge #2") && e.contains("already defined"),
            "{e}"
        );
        let e = err(&g.replace("database = \"main\"\nread", "database = \"nope\"\nread"));
        assert!(
            e.contains("edge #1") && e.contains("database") && e.contains("nope"),
            "{e}"
        );
        let e = err(&g.replace("read = [\"patients/dr-7/\"]", "read = [\"a/../b\"]"));
        assert!(e.contains("read:") && e.contains("a/../b"), "{e}");
        let e = err(&g.replace(&token_sha256_hex("tok"), "abc"));
        assert!(e.contains("token_sha256"), "{e}");
        let e = err(&g.replace("name = \"main\"", "name = \"../x\""));
        assert!(e.contains("name"), "{e}");
        let e = err(&g.replace("ws://127.0.0.1:4001/sync", "http://x"));
        assert!(e.contains("url"), "{e}");
        assert!(e.starts_with("/etc/outpost/hub.toml: "), "{e}");
    }
}
