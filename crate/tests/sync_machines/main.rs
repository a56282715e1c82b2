//! The replication state machines without a network: handshake, flow
//! control, heartbeats, and hostile frames at the hub (every one answered
//! with a typed error, nothing stored, the session closed). The helpers
//! every test uses are here; the tests are in this directory's modules.
#![cfg(not(target_arch = "wasm32"))]

mod devices;
mod feed;
mod pushes;
mod timers;

use outpost::doc::{RawDoc, RawVersion};
use outpost::sync::feed::FeedPage;
use outpost::sync::frame::MAX_FRAME_BYTES;
use outpost::sync::hub::WINDOW;
use outpost::sync::{
    EdgeAction, EdgeConfig, EdgeEvent, EdgePersisted, EdgeSession, Frame, Grant, HubAction,
    HubEvent, HubMetric, HubSession, Prefixes, RejectReason, SyncStatus, Violation, WireDoc,
    WireGrant,
};
use outpost::{ChangeVector, DbId, DocFlags, DocumentMeta};
use outpost_testkit::machines::{self, closed_with, sent};

const HUB: DbId = DbId([9; 16]);
const EDGE: DbId = DbId([1; 16]);

fn grant() -> Grant {
    machines::grant(&["notes/"], &["notes/"])
}

fn hello() -> Vec<u8> {
    machines::token_hello(EDGE, (5, 5))
}

/// A version 5 `Welcome` (no grant, heartbeat 15 s) from a hub whose last
/// etag is `hub_last_etag`.
fn welcome_v5(hub_last_etag: u64) -> Vec<u8> {
    Frame::Welcome {
        version: 5,
        hub_db_id: HUB,
        push_checkpoint: 0,
        hub_last_etag,
        pending: 0,
        max_frame_bytes: MAX_FRAME_BYTES as u32,
        heartbeat_ms: 15_000,
        grant: None,
        batch_seq: 0,
        batch_head: [0; 32],
    }
    .encode()
}

/// An edge session of identity `laptop` that has never synced.
fn fresh_edge() -> EdgeSession {
    EdgeSession::new(
        EdgeConfig::new("main", "laptop", "t"),
        EdgePersisted {
            db_id: EDGE,
            pull_checkpoint: 0,
            checkpoint_hub: None,
            rejected: Default::default(),
            resync_from: None,
        },
        0,
    )
}

/// A hub session past its handshake, with hub last etag 100.
fn open_hub() -> HubSession {
    open_hub_from(0)
}

/// [`open_hub`] for an edge whose pull checkpoint is `pull_from` (what it was
/// sent of the hub's feed).
fn open_hub_from(pull_from: u64) -> HubSession {
    let mut h = HubSession::new(0);
    let a = h.handle(HubEvent::Received(&hello()), 0);
    assert!(matches!(a[0], HubAction::Authenticate { .. }));
    let a = h.handle(
        HubEvent::Authorized {
            grant: grant(),
            hub_db_id: HUB,
            hub_last_etag: 100,
            push_checkpoint: 0,
            pending: 0,
            pull_from,
            batch_head: (0, [0; 32]),
            purge: None,
            resync: None,
        },
        0,
    );
    assert!(matches!(sent(&a)[0], Frame::Welcome { .. }));
    assert!(matches!(
        a.last(),
        Some(HubAction::ReadChanges { after, .. }) if *after == pull_from
    ));
    h
}

fn version(cv: ChangeVector, body: &str) -> RawVersion {
    RawVersion {
        change_vector: cv,
        last_modified_ms: 0,
        deleted: false,
        body: body.as_bytes().to_vec(),
    }
}

fn wire(id: &str, cv: ChangeVector, body: &str) -> WireDoc {
    WireDoc {
        id: id.into(),
        collection: None,
        versions: vec![version(cv, body)],
    }
}

fn push(docs: Vec<WireDoc>) -> Vec<u8> {
    Frame::Push {
        upto: 5,
        seq: 0,
        prev: [0; 32],
        signature: Vec::new(),
        docs,
    }
    .encode()
}

fn rejected(acts: &[HubAction]) -> Option<(String, String)> {
    sent(acts).into_iter().find_map(|f| match f {
        Frame::PushRejected { code, id, .. } => Some((code, id)),
        _ => None,
    })
}

fn sent_edge(acts: &[EdgeAction]) -> Vec<Frame> {
    acts.iter()
        .filter_map(|a| match a {
            EdgeAction::Send(b) => Some(Frame::decode(b, MAX_FRAME_BYTES).unwrap()),
            _ => None,
        })
        .collect()
}

/// A hub session of identity "laptop" on device `device`, handshaken with
/// protocol versions `min..=max`; returns it and the frames it sent.
fn hub_for(device: DbId, min: u16, max: u16, g: Grant) -> (HubSession, Vec<Frame>) {
    hub_from(device, min, max, g, 0)
}

/// [`hub_for`], sending from hub etag `pull_from`.
fn hub_from(
    device: DbId,
    min: u16,
    max: u16,
    g: Grant,
    pull_from: u64,
) -> (HubSession, Vec<Frame>) {
    let mut h = HubSession::new(0);
    let hello = machines::token_hello(device, (min, max));
    h.handle(HubEvent::Received(&hello), 0);
    let a = h.handle(
        HubEvent::Authorized {
            grant: g,
            hub_db_id: HUB,
            hub_last_etag: 100,
            push_checkpoint: 0,
            pending: 0,
            pull_from,
            batch_head: (0, [0; 32]),
            purge: None,
            resync: None,
        },
        0,
    );
    (h, sent(&a))
}

fn doc(id: &str, etag: u64, body_len: usize) -> RawDoc {
    let cv = ChangeVector::new().with(HUB, etag);
    RawDoc {
        id: id.into(),
        meta: DocumentMeta {
            collection: None,
            change_vector: cv.clone(),
            etag,
            last_modified_ms: 0,
            flags: DocFlags::default(),
            source: None,
        },
        versions: vec![version(
            cv,
            &format!("{{\"t\":\"{}\"}}", "x".repeat(body_len)),
        )],
    }
}
