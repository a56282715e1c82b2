//! Write safety `hub` (protocol 6) without a network: the hub machine's
//! checks of a `Write` and its one-at-a-time rule, the transaction at the
//! hub (all or nothing, expectations, deletion guards, retired ids, the
//! audit entry), and the edge machine's queue and answers (applied only
//! once pulled, offline, unknown). The real-hub races are in
//! `hub/tests/safety.rs`; the hostile frames in `hub/tests/attacks/`.
#![cfg(not(target_arch = "wasm32"))]

use futures::executor::block_on;
use outpost::db::{AuditKind, Batch};
use outpost::policy::{DeletionGuards, GUARDS_KEY};
use outpost::store::MemoryStore;
use outpost::sync::forget::{SubjectRequest, purge_subject};
use outpost::sync::frame::{MAX_FRAME_BYTES, WireExpect, WireWrite, WriteAnswer};
use outpost::sync::hub_write::{AuditHubWrite, HubWriteManifest, HubWriteOutcome, apply};
use outpost::sync::{
    EdgeAction, EdgeConfig, EdgeEvent, EdgePersisted, EdgeSession, Frame, HubAction, HubEvent,
    HubSession,
};
use outpost::{ChangeVector, Database, DbId, OpenOptions};
use outpost_testkit::machines::{self, closed_with, sent};
use serde_json::json;

const HUB: DbId = DbId([9; 16]);
const EDGE: DbId = DbId([1; 16]);

/// A token session of protocol `version` past its handshake.
fn hub(version: u16) -> HubSession {
    let mut h = HubSession::new(0);
    let hello = machines::token_hello(EDGE, (5, version));
    h.handle(HubEvent::Received(&hello), 0);
    h.handle(
        HubEvent::Authorized {
            grant: machines::grant(&["names/", "profiles/"], &["names/", "secret/"]),
            hub_db_id: HUB,
            hub_last_etag: 10,
            push_checkpoint: 0,
            pending: 0,
            pull_from: 0,
            batch_head: (0, [0; 32]),
            purge: None,
            resync: None,
        },
        0,
    );
    h
}

fn op(id: &str, expect: WireExpect, body: &str) -> WireWrite {
    WireWrite {
        id: id.into(),
        collection: None,
        expect,
        deleted: body.is_empty(),
        body: body.as_bytes().to_vec(),
    }
}

fn write(request: u64, ops: Vec<WireWrite>) -> Vec<u8> {
    Frame::Write {
        request,
        signature: Vec::new(),
        ops,
    }
    .encode()
}

#[test]
fn the_hub_takes_one_write_at_a_time_in_protocol_6_sessions_only() {
    // A version 5 session has no `Write`.
    let mut h = hub(5);
    let a = h.handle(
        HubEvent::Received(&write(1, vec![op("names/a", WireExpect::Missing, "{}")])),
        0,
    );
    assert!(closed_with(&a, "protocol"), "{a:?}");

    let mut h = hub(6);
    let a = h.handle(
        HubEvent::Received(&write(1, vec![op("names/a", WireExpect::Missing, "{}")])),
        0,
    );
    assert!(
        matches!(&a[..], [HubAction::ApplyWrite { ops, .. }] if ops.len() == 1),
        "{a:?}"
    );
    // A second one before the answer ends the session.
    let mut h2 = hub(6);
    h2.handle(
        HubEvent::Received(&write(1, vec![op("names/a", WireExpect::Missing, "{}")])),
        0,
    );
    let a = h2.handle(
        HubEvent::Received(&write(2, vec![op("names/b", WireExpect::Missing, "{}")])),
        0,
    );
    assert!(closed_with(&a, "protocol"), "{a:?}");
    // The answer goes back as a `WriteResult` of that request.
    let answer = WriteAnswer::Conflict {
        id: "names/a".into(),
        current: ChangeVector::new().with(HUB, 3),
    };
    let a = h.handle(HubEvent::WriteDone(answer.clone()), 0);
    assert!(
        sent(&a).contains(&Frame::WriteResult { request: 1, answer }),
        "{a:?}"
    );
    // A request number that does not increase ends the session.
    let a = h.handle(
        HubEvent::Received(&write(1, vec![op("names/a", WireExpect::Any, "{}")])),
        0,
    );
    assert!(closed_with(&a, "protocol"), "{a:?}");
}

#[test]
fn the_hub_refuses_a_write_it_may_not_take_and_the_session_goes_on() {
    let mut h = hub(6);
    let cases = [
        (op("other/a", WireExpect::Missing, "{}"), "write_denied"),
        // Writable but not readable: a compare-and-set would be an oracle.
        (op("secret/a", WireExpect::Missing, "{}"), "write_denied"),
        (op("names/../x", WireExpect::Missing, "{}"), "invalid_id"),
        (
            op("names/a", WireExpect::Missing, "[1]"),
            "invalid_document",
        ),
        (
            op("names/a", WireExpect::Missing, "{\"a\":1,\"a\":2}"),
            "invalid_document",
        ),
    ];
    for (i, (o, code)) in cases.into_iter().enumerate() {
        let a = h.handle(HubEvent::Received(&write(i as u64 + 1, vec![o])), 0);
        match &sent(&a)[..] {
            [
                Frame::WriteResult {
                    answer: WriteAnswer::Refused { code: c, .. },
                    ..
                },
            ] => assert_eq!(c, code),
            other => panic!("{code}: {other:?}"),
        }
        assert!(
            a.iter()
                .any(|x| matches!(x, HubAction::RecordRefusal { code: c, .. } if c == code)),
            "audited: {a:?}"
        );
        assert!(!a.iter().any(|x| matches!(x, HubAction::Close { .. })));
    }
    // The same id twice in one write.
    let a = h.handle(
        HubEvent::Received(&write(
            9,
            vec![
                op("names/a", WireExpect::Any, "{}"),
                op("NAMES/A", WireExpect::Any, "{}"),
            ],
        )),
        0,
    );
    assert!(matches!(
        &sent(&a)[..],
        [Frame::WriteResult { answer: WriteAnswer::Refused { code, .. }, .. }] if code == "duplicate_id"
    ));
}

fn db() -> Database<MemoryStore> {
    block_on(Database::open(MemoryStore::new(), OpenOptions::default())).unwrap()
}

fn apply_ops(db: &Database<MemoryStore>, request: u64, ops: &[WireWrite]) -> WriteAnswer {
    let m = HubWriteManifest::of(HUB, EDGE, [0; 32], request, ops);
    block_on(apply(db, "laptop", ops, &m, None)).unwrap()
}

#[test]
fn the_transaction_at_the_hub_is_all_or_nothing() {
    let db = db();
    // Must-not-exist: the first claim applies, the second is a conflict
    // naming the hub's version.
    let a = apply_ops(&db, 1, &[op("names/ada", WireExpect::Missing, "{\"o\":1}")]);
    let cv = match a {
        WriteAnswer::Applied {
            etag,
            change_vectors,
        } => {
            assert_eq!(etag, db.stats().last_etag);
            change_vectors[0].clone()
        }
        other => panic!("{other:?}"),
    };
    let before = db.stats().last_etag;
    // A transaction whose second document conflicts writes nothing.
    let a = apply_ops(
        &db,
        2,
        &[
            op("names/bob", WireExpect::Missing, "{\"o\":2}"),
            op("names/ada", WireExpect::Missing, "{\"o\":2}"),
        ],
    );
    assert_eq!(
        a,
        WriteAnswer::Conflict {
            id: "names/ada".into(),
            current: cv.clone()
        }
    );
    assert_eq!(db.stats().last_etag, before);
    assert!(block_on(db.get("names/bob")).unwrap().is_none());
    // Against the current vector it applies; against a stale one it does not.
    let a = apply_ops(
        &db,
        3,
        &[op("names/ada", WireExpect::Cv(cv.clone()), "{\"o\":3}")],
    );
    assert!(matches!(a, WriteAnswer::Applied { .. }), "{a:?}");
    let a = apply_ops(&db, 4, &[op("names/ada", WireExpect::Cv(cv), "{\"o\":4}")]);
    assert!(matches!(a, WriteAnswer::Conflict { .. }), "{a:?}");
    let d = block_on(db.get("names/ada")).unwrap().unwrap();
    assert_eq!(d.body, json!({"o": 3}));
    // A deleted document counts as missing: released, claimed again.
    let cv = d.meta.change_vector.clone();
    let a = apply_ops(&db, 5, &[op("names/ada", WireExpect::Cv(cv), "")]);
    assert!(matches!(a, WriteAnswer::Applied { .. }), "{a:?}");
    let a = apply_ops(&db, 6, &[op("names/ada", WireExpect::Missing, "{\"o\":6}")]);
    assert!(matches!(a, WriteAnswer::Applied { .. }), "{a:?}");
    // Every applied write has its audit entry, signed fields and hashes
    // only (no body).
    let trail = block_on(db.audit_entries(0, 1000)).unwrap();
    let writes: Vec<AuditHubWrite> = trail
        .iter()
        .filter(|e| e.kind == AuditKind::HubWrite)
        .map(|e| serde_json::from_slice(&e.payload).unwrap())
        .collect();
    assert_eq!(
        writes.iter().map(|w| w.request).collect::<Vec<_>>(),
        [1, 3, 5, 6]
    );
    assert_eq!(writes[0].ops[0].expect, "missing");
    assert!(!String::from_utf8_lossy(&trail[0].payload).contains("\"o\""));
}

#[test]
fn guards_and_purged_ids_refuse_a_write_at_the_hub() {
    let db = db();
    let mut b = Batch::new();
    b.set_local(
        GUARDS_KEY.to_vec(),
        Some(DeletionGuards::new(["Invoices".to_string()]).encode()),
    );
    block_on(db.commit(b)).unwrap();
    let mut inv = op("names/inv", WireExpect::Missing, "{}");
    inv.collection = Some("Invoices".into());
    assert!(matches!(
        apply_ops(&db, 1, &[inv]),
        WriteAnswer::Applied { .. }
    ));
    let a = apply_ops(&db, 2, &[op("names/inv", WireExpect::Any, "")]);
    assert!(
        matches!(&a, WriteAnswer::Refused { code, .. } if code == "delete_forbidden"),
        "{a:?}"
    );
    // A purged id is never taken back, whatever the write expects.
    assert!(matches!(
        apply_ops(&db, 3, &[op("names/p", WireExpect::Missing, "{}")]),
        WriteAnswer::Applied { .. }
    ));
    let req = SubjectRequest {
        ids: vec!["names/p".into()],
        prefixes: vec![],
        field: None,
        by: "dpo".into(),
        reason: "erasure".into(),
        dry_run: false,
    };
    block_on(purge_subject(&db, &req, 1)).unwrap();
    for expect in [WireExpect::Missing, WireExpect::Any] {
        let a = apply_ops(&db, 4, &[op("NAMES/P", expect, "{}")]);
        assert!(
            matches!(&a, WriteAnswer::Refused { code, .. } if code == "purged"),
            "{a:?}"
        );
    }
    assert!(block_on(db.get("names/p")).unwrap().is_none());
}

fn edge() -> EdgeSession {
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

fn welcome(version: u16) -> Vec<u8> {
    Frame::Welcome {
        version,
        hub_db_id: HUB,
        push_checkpoint: 0,
        hub_last_etag: 0,
        pending: 0,
        max_frame_bytes: MAX_FRAME_BYTES as u32,
        heartbeat_ms: 15_000,
        grant: None,
        batch_seq: 0,
        batch_head: [0; 32],
    }
    .encode()
}

fn done(acts: &[EdgeAction]) -> Vec<(u64, HubWriteOutcome)> {
    acts.iter()
        .filter_map(|a| match a {
            EdgeAction::HubWriteDone { token, outcome } => Some((*token, outcome.clone())),
            _ => None,
        })
        .collect()
}

fn writes_sent(acts: &[EdgeAction]) -> Vec<u64> {
    acts.iter()
        .filter_map(|a| match a {
            EdgeAction::Send(b) => match Frame::decode(b, MAX_FRAME_BYTES).unwrap() {
                Frame::Write { request, .. } => Some(request),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[test]
fn the_edge_sends_after_the_handshake_and_answers_once_it_holds_the_result() {
    let mut e = edge();
    e.handle(EdgeEvent::Opened, 0);
    // Before `Welcome`: queued, nothing sent.
    let a = e.handle(
        EdgeEvent::HubWrite {
            token: 7,
            ops: vec![op("names/a", WireExpect::Missing, "{}")],
        },
        0,
    );
    assert!(writes_sent(&a).is_empty() && done(&a).is_empty(), "{a:?}");
    let a = e.handle(EdgeEvent::Received(&welcome(6)), 0);
    assert_eq!(writes_sent(&a), [1]);
    // A second write waits for the first's answer.
    let a = e.handle(
        EdgeEvent::HubWrite {
            token: 8,
            ops: vec![op("names/b", WireExpect::Missing, "{}")],
        },
        0,
    );
    assert!(writes_sent(&a).is_empty());
    // Applied at hub etag 5: answered only once the pull brought etag 5.
    let result = Frame::WriteResult {
        request: 1,
        answer: WriteAnswer::Applied {
            etag: 5,
            change_vectors: vec![ChangeVector::new().with(HUB, 5)],
        },
    }
    .encode();
    let a = e.handle(EdgeEvent::Received(&result), 0);
    assert!(done(&a).is_empty(), "not yet pulled: {a:?}");
    assert_eq!(writes_sent(&a), [2], "the next write goes out");
    let changes = Frame::Changes {
        upto: 5,
        docs: vec![],
    }
    .encode();
    e.handle(EdgeEvent::Received(&changes), 0);
    let a = e.handle(EdgeEvent::Applied, 0);
    assert!(
        matches!(
            &done(&a)[..],
            [(7, HubWriteOutcome::Applied { hub_etag: 5, .. })]
        ),
        "{a:?}"
    );
    // The session ends before the second's answer: its outcome is unknown;
    // a write handed over afterwards is offline.
    let a = e.handle(EdgeEvent::Closed, 0);
    assert!(
        matches!(&done(&a)[..], [(8, HubWriteOutcome::Unknown { .. })]),
        "{a:?}"
    );
    let a = e.handle(
        EdgeEvent::HubWrite {
            token: 9,
            ops: vec![op("names/c", WireExpect::Any, "{}")],
        },
        0,
    );
    assert!(matches!(
        &done(&a)[..],
        [(9, HubWriteOutcome::Offline { .. })]
    ));
}

#[test]
fn a_protocol_5_hub_makes_hub_writes_fail_offline_and_a_stray_result_is_refused() {
    let mut e = edge();
    e.handle(EdgeEvent::Opened, 0);
    e.handle(
        EdgeEvent::HubWrite {
            token: 1,
            ops: vec![op("names/a", WireExpect::Missing, "{}")],
        },
        0,
    );
    let a = e.handle(EdgeEvent::Received(&welcome(5)), 0);
    match &done(&a)[..] {
        [(1, HubWriteOutcome::Offline { reason })] => assert!(reason.contains("protocol 5")),
        other => panic!("{other:?}"),
    }
    assert!(writes_sent(&a).is_empty());
    // A `WriteResult` for no write sent is a protocol error.
    let stray = Frame::WriteResult {
        request: 4,
        answer: WriteAnswer::Conflict {
            id: "x".into(),
            current: ChangeVector::default(),
        },
    }
    .encode();
    let a = e.handle(EdgeEvent::Received(&stray), 0);
    assert!(
        a.iter()
            .any(|x| matches!(x, EdgeAction::Close { code, .. } if code == "protocol"))
    );
}

#[test]
fn one_signature_at_a_time_whatever_arrives_meanwhile() {
    use outpost::doc::{RawDoc, RawVersion};
    use outpost::keys::PublicKey;
    use outpost::{DocFlags, DocumentMeta};
    let mut k = [3u8; 65];
    k[0] = 4;
    let key = PublicKey::from_sec1(&k).unwrap();
    let mut e = EdgeSession::new(
        EdgeConfig::with_key("main", "laptop", key),
        EdgePersisted {
            db_id: EDGE,
            pull_checkpoint: 0,
            checkpoint_hub: None,
            rejected: Default::default(),
            resync_from: None,
        },
        0,
    );
    let signs = |a: &[EdgeAction]| {
        a.iter()
            .filter(|x| matches!(x, EdgeAction::Sign(_)))
            .count()
    };
    e.handle(EdgeEvent::Opened, 0);
    let c = Frame::Challenge {
        version: 6,
        nonce: [8; 32],
        hub_id: HUB,
    }
    .encode();
    assert_eq!(signs(&e.handle(EdgeEvent::Received(&c), 0)), 1);
    e.handle(EdgeEvent::Signed(vec![1]), 0);
    let a = e.handle(EdgeEvent::Received(&welcome(6)), 0);
    assert!(a.iter().any(|x| matches!(x, EdgeAction::ReadLocal { .. })));
    // A write starts signing while the push reads its batch.
    let a = e.handle(
        EdgeEvent::HubWrite {
            token: 1,
            ops: vec![op("names/a", WireExpect::Missing, "{}")],
        },
        0,
    );
    assert_eq!(signs(&a), 1);
    // The batch arrives meanwhile: its signature waits its turn.
    let cv = ChangeVector::new().with(EDGE, 1);
    let local = RawDoc {
        id: "names/b".into(),
        meta: DocumentMeta {
            collection: None,
            change_vector: cv.clone(),
            etag: 1,
            last_modified_ms: 0,
            flags: DocFlags::default(),
            source: None,
        },
        versions: vec![RawVersion {
            change_vector: cv,
            last_modified_ms: 0,
            deleted: false,
            body: b"{}".to_vec(),
        }],
    };
    let a = e.handle(
        EdgeEvent::LocalRead {
            docs: vec![local],
            complete: true,
        },
        0,
    );
    assert_eq!(
        signs(&a),
        0,
        "no second signature while one is under way: {a:?}"
    );
    // The write's signature goes with the write; then the batch is signed.
    let a = e.handle(EdgeEvent::Signed(vec![7; 64]), 0);
    let frames: Vec<Frame> = a
        .iter()
        .filter_map(|x| match x {
            EdgeAction::Send(b) => Some(Frame::decode(b, MAX_FRAME_BYTES).unwrap()),
            _ => None,
        })
        .collect();
    assert!(
        matches!(&frames[..], [Frame::Write { signature, .. }] if signature == &vec![7; 64]),
        "{frames:?}"
    );
    assert_eq!(signs(&a), 1);
    let a = e.handle(EdgeEvent::Signed(vec![9; 64]), 0);
    assert!(a.iter().any(|x| matches!(x, EdgeAction::Send(b)
        if matches!(Frame::decode(b, MAX_FRAME_BYTES), Ok(Frame::Push { signature, .. }) if signature == vec![9; 64]))));
}
