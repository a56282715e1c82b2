//! # The Outpost hub
//!
//! The native peer that Outpost edges (browser apps, laptops, other hubs)
//! replicate with over WebSocket. This crate is the `outpost-hub` binary's
//! library:
//!
//! - [`config`]: the TOML configuration (databases, edges and their scopes,
//!   upstream hubs), validated on load; [`reload`] watches it and publishes
//!   each valid new version, so edge changes take effect live;
//! - [`state`]: the shared [`Hub`]: open databases ([`DbHandle`], each behind
//!   an exclusive lock file), [`Metrics`], the shutdown flag;
//! - [`server`]: HTTP (health, status, Prometheus metrics, static files) and
//!   the `/sync` WebSocket, plain or over TLS ([`tls`]); [`conn`]: accepting
//!   connections under the `[limits]` caps;
//! - [`identity`]: who an edge is (its key, an enrollment code redeemed
//!   once, development tokens, revocation);
//! - [`session`]: the replication protocol, hub side; [`upstream`]: the hub
//!   as an edge of another hub, over the native edge client
//!   ([`outpost_client`], its own crate: any native edge uses it without the
//!   hub's server or configuration);
//! - [`cli`]: the command line (`serve`, `init`, `edge`, `keygen`, `import`,
//!   `export`, `status`, `audit`; [`cli_edge`]: the edge commands);
//!   [`audit`]: verifying (hash chain, batch signatures and chains),
//!   exporting and questioning the audit trail.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod audit;
pub mod audit_live;
pub mod cert_session;
pub mod certs;
pub mod cli;
pub mod cli_certs;
pub mod cli_compact;
pub mod cli_edge;
pub mod cli_index;
pub mod cli_purge;
pub mod compact;
pub mod config;
pub mod conn;
pub mod edit;
pub mod error;
pub mod hub_client;
pub mod identity;
pub mod import_live;
pub mod indexes;
pub mod js;
pub mod metrics;
pub mod purge;
pub mod ratelimit;
pub mod reload;
pub mod server;
pub mod session;
pub mod state;
pub mod status;
pub mod tls;
pub mod transfer;
pub mod upstream;

pub use config::{Config, EdgeAccess, UpstreamConfig};
pub use error::HubError;
pub use metrics::Metrics;
pub use state::{DbHandle, Hub};
