//! Replication with real processes: a real `outpost-hub` process on
//! 127.0.0.1 and real WebSocket clients (the native edge client over real
//! file-backed databases). Bounded waits everywhere; hub processes are
//! killed on drop.
//!
//! - two native edges editing offline, reconnecting, converging (conflicts
//!   settled by `latest` and kept by `manual`);
//! - the hub killed (SIGKILL) mid-batch in both directions and restarted:
//!   nothing acknowledged lost, nothing applied twice;
//! - the clinics case: Boston and Chicago hubs as edges of a cloud hub;
//! - write-prefix rejections: typed, recorded by the edge, nothing stored;
//! - narrowing and revoking an edge in the configuration, without a restart;
//! - garbage frames: they end only that session;
//! - a hub database replaced: its edges resync from zero;
//! - a damaged document at the hub: the others still reach an edge;
//! - devices of one identity (two devices, a wiped one, a replaced one) and
//!   a read-only edge that gets no rejection for a conflict it did not make;
//! - `export` of the running hub: one snapshot while an edge writes;
//! - `import` into the running hub while an edge is live.
//!
//! The hub processes are `outpost_testkit::hub::HubProcess`es.

mod convergence;
mod damage;
mod devices;
mod erasure;
mod export;
mod import;
mod scopes;

#[path = "../common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use outpost::sync::{EdgeConfig, SyncStatus};
use outpost::{Batch, PutOptions};
use outpost_client::{ClientOptions, client_rejections, spawn_edge};
use outpost_testkit::hub::{free_port, wait_until};
use outpost_testkit::keys;
use serde_json::json;

/// Ids under `prefix` that `db` holds (lowercase).
async fn ids(db: &Db, prefix: &str) -> Vec<String> {
    state(db, prefix).await.into_keys().collect()
}
