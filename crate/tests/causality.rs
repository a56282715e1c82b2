//! The causality rules a hub applies to what untrusted edges push
//! (`docs/security.md`, "Causality"; `crate/src/db/remote.rs`), checked in
//! the transaction that stores a batch: each rule, with the attack it stops
//! and the honest case it must keep working.
#![cfg(not(target_arch = "wasm32"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use futures::executor::block_on;
use outpost::policy::Policies;
use outpost::store::MemoryStore;
use outpost::{
    Batch, ChangeVector, ConflictPolicy, Database, DbId, Error, OpenOptions, PushGuard, RawVersion,
    Refusal, RemoteDoc, WriteOutcome,
};
use serde_json::json;

const HUB: DbId = DbId([0xAA; 16]);
const ALICE: DbId = DbId([0xA1; 16]);
const BOB: DbId = DbId([0xB1; 16]);
const NOW: i64 = 1_800_000_000_000;

type Hub = Database<Arc<MemoryStore>>;

fn hub() -> Hub {
    let t = Arc::new(AtomicI64::new(NOW));
    block_on(Database::open(
        Arc::new(MemoryStore::new()),
        OpenOptions {
            db_id: Some(HUB),
            clock: Some(Arc::new(move || t.fetch_add(1, Ordering::Relaxed))),
            ..Default::default()
        },
    ))
    .unwrap()
}

fn policies() -> Policies {
    Policies::new(
        [
            ("Notes".to_string(), ConflictPolicy::Latest),
            ("Charts".to_string(), ConflictPolicy::Manual),
            ("Orders".to_string(), ConflictPolicy::HubWins),
        ],
        ConflictPolicy::Latest,
    )
}

fn guard(identity: &str, device: DbId, seen_upto: u64) -> Arc<PushGuard> {
    Arc::new(PushGuard {
        owner: format!("edge:{identity}"),
        device,
        source: format!("edge:{identity}/{device}"),
        seen_upto,
        policies: policies(),
        relay: false,
    })
}

fn cv(entries: &[(DbId, u64)]) -> ChangeVector {
    ChangeVector::from_entries(entries.iter().copied()).unwrap()
}

fn doc(id: &str, coll: Option<&str>, c: ChangeVector, body: &str) -> RemoteDoc {
    doc_at(id, coll, c, body, NOW - 1_000)
}

fn doc_at(id: &str, coll: Option<&str>, c: ChangeVector, body: &str, lm: i64) -> RemoteDoc {
    RemoteDoc {
        id: id.into(),
        collection: coll.map(str::to_string),
        versions: vec![RawVersion {
            change_vector: c,
            last_modified_ms: lm,
            deleted: false,
            body: body.as_bytes().to_vec(),
        }],
        source: None,
    }
}

/// Pushes one document as `g`'s device; returns the outcome or the refusal.
fn push(
    db: &Hub,
    g: &Arc<PushGuard>,
    mut d: RemoteDoc,
    readable: bool,
) -> Result<Option<WriteOutcome>, Refusal> {
    d.source = Some(g.source.clone());
    let mut b = Batch::new();
    b.apply_pushed(d, g.clone(), readable);
    match block_on(db.commit(b)) {
        Ok(info) => Ok(info.results[0].as_ref().map(|r| r.outcome)),
        Err(Error::Refused(r)) => Err(r),
        Err(e) => panic!("unexpected error {e}"),
    }
}

fn body(db: &Hub, id: &str) -> serde_json::Value {
    block_on(db.get(id)).unwrap().expect(id).body
}

#[test]
fn an_edge_cannot_raise_another_edges_entry() {
    let db = hub();
    let (a, b) = (guard("alice", ALICE, 0), guard("bob", BOB, 0));
    assert_eq!(
        push(
            &db,
            &a,
            doc("notes/a", Some("Notes"), cv(&[(ALICE, 5)]), r#"{"v":1}"#),
            true
        ),
        Ok(Some(WriteOutcome::Applied))
    );
    // Bob claims alice's entry far beyond what the hub holds for it.
    let r = push(
        &db,
        &b,
        doc(
            "notes/a",
            Some("Notes"),
            cv(&[(ALICE, 1_000_000), (BOB, 1)]),
            r#"{"v":"bob"}"#,
        ),
        true,
    );
    assert!(
        matches!(r, Err(Refusal::ForgedEntry { ref db, claimed: 1_000_000, held: 5, .. }) if *db == ALICE),
        "{r:?}"
    );
    assert_eq!(body(&db, "notes/a"), json!({"v": 1}));
    // Squatting failed, so alice's later honest edit is not "old news".
    assert_eq!(
        push(
            &db,
            &a,
            doc("notes/a", Some("Notes"), cv(&[(ALICE, 6)]), r#"{"v":2}"#),
            true
        ),
        Ok(Some(WriteOutcome::Applied))
    );
    assert_eq!(body(&db, "notes/a"), json!({"v": 2}));
    // Bob may claim alice's entry up to what the hub holds (he was sent it).
    let g = guard("bob", BOB, block_on(async { db.stats().last_etag }));
    assert_eq!(
        push(
            &db,
            &g,
            doc(
                "notes/a",
                Some("Notes"),
                cv(&[(ALICE, 6), (BOB, 2)]),
                r#"{"v":3}"#
            ),
            true
        ),
        Ok(Some(WriteOutcome::Applied))
    );
}

#[test]
fn a_device_id_belongs_to_the_identity_that_first_pushed_under_it() {
    let db = hub();
    let a = guard("alice", ALICE, 0);
    push(&db, &a, doc("notes/a", None, cv(&[(ALICE, 1)]), "{}"), true).unwrap();
    let mallory = guard("mallory", ALICE, 0);
    let r = push(
        &db,
        &mallory,
        doc("notes/m", None, cv(&[(ALICE, 2)]), "{}"),
        true,
    );
    assert_eq!(r, Err(Refusal::DbIdTaken { db: ALICE }));
    // The hub's own id is nobody's device.
    let r = push(
        &db,
        &guard("mallory", HUB, 0),
        doc("notes/m", None, cv(&[(HUB, 1)]), "{}"),
        true,
    );
    assert_eq!(r, Err(Refusal::DbIdTaken { db: HUB }));
    let o = block_on(db.snapshot().origin(&ALICE)).unwrap().unwrap();
    assert_eq!((o.high_water, o.owner.as_deref()), (1, Some("edge:alice")));
}

#[test]
fn the_hubs_own_entry_is_limited_to_what_the_edge_was_sent() {
    let db = hub();
    for i in 0..10 {
        block_on(db.put(&format!("notes/{i}"), json!({}))).unwrap();
    }
    let r = push(
        &db,
        &guard("alice", ALICE, 4),
        doc("notes/1", None, cv(&[(ALICE, 1), (HUB, 9)]), "{}"),
        true,
    );
    assert!(
        matches!(
            r,
            Err(Refusal::ForgedEntry {
                claimed: 9,
                held: 4,
                ..
            })
        ),
        "{r:?}"
    );
}

#[test]
fn write_only_is_create_only_and_the_answer_is_the_same() {
    let db = hub();
    block_on(db.put("inbox/secret", json!({"v": "hub"}))).unwrap();
    let a = guard("alice", ALICE, 0);
    // A blind overwrite, even with a vector that dominates, changes nothing.
    let kept = push(
        &db,
        &a,
        doc("inbox/secret", None, cv(&[(ALICE, 3)]), r#"{"v":"alice"}"#),
        false,
    );
    assert_eq!(kept, Ok(Some(WriteOutcome::Kept)));
    assert_eq!(body(&db, "inbox/secret"), json!({"v": "hub"}));
    // A delete neither.
    let mut del = doc("inbox/secret", None, cv(&[(ALICE, 4)]), "");
    del.versions[0].deleted = true;
    del.versions[0].body.clear();
    assert_eq!(push(&db, &a, del, false), Ok(Some(WriteOutcome::Kept)));
    assert_eq!(body(&db, "inbox/secret"), json!({"v": "hub"}));
    // A new id is created, and this device may edit what it created.
    assert_eq!(
        push(
            &db,
            &a,
            doc("inbox/mine", None, cv(&[(ALICE, 5)]), r#"{"n":1}"#),
            false
        ),
        Ok(Some(WriteOutcome::Applied))
    );
    assert_eq!(
        push(
            &db,
            &a,
            doc("inbox/mine", None, cv(&[(ALICE, 6)]), r#"{"n":2}"#),
            false
        ),
        Ok(Some(WriteOutcome::Applied))
    );
    assert_eq!(body(&db, "inbox/mine"), json!({"n": 2}));
    // Another device may not.
    let b = guard("bob", BOB, 0);
    assert_eq!(
        push(
            &db,
            &b,
            doc("inbox/mine", None, cv(&[(BOB, 1)]), r#"{"n":"bob"}"#),
            false
        ),
        Ok(Some(WriteOutcome::Kept))
    );
    assert_eq!(body(&db, "inbox/mine"), json!({"n": 2}));
}

#[test]
fn a_version_may_supersede_only_what_the_edge_was_sent() {
    // hub-wins: a dominating version of a document the edge was not sent
    // does not replace it; the policy settles a conflict (the hub's wins).
    let db = hub();
    let b = guard("bob", BOB, 0);
    push(
        &db,
        &b,
        doc("orders/1", Some("Orders"), cv(&[(BOB, 7)]), r#"{"qty":1}"#),
        true,
    )
    .unwrap();
    let a = guard("alice", ALICE, 0); // sent nothing
    let r = push(
        &db,
        &a,
        doc(
            "orders/1",
            Some("Orders"),
            cv(&[(ALICE, 1), (BOB, 7)]),
            r#"{"qty":1000}"#,
        ),
        true,
    );
    assert_eq!(r, Ok(Some(WriteOutcome::Resolved)));
    assert_eq!(body(&db, "orders/1"), json!({"qty": 1}));
    // Once sent (its cursor past the document), the same edit is informed.
    let last = db.stats().last_etag;
    let d = block_on(db.get("orders/1")).unwrap().unwrap();
    let informed = d.meta.change_vector.with(ALICE, 2);
    let r = push(
        &db,
        &guard("alice", ALICE, last),
        doc("orders/1", Some("Orders"), informed, r#"{"qty":2}"#),
        true,
    );
    assert_eq!(r, Ok(Some(WriteOutcome::Applied)));
    assert_eq!(body(&db, "orders/1"), json!({"qty": 2}));

    // manual: the held version stays as a conflict, everywhere.
    let db = hub();
    push(
        &db,
        &b,
        doc(
            "charts/1",
            Some("Charts"),
            cv(&[(BOB, 7)]),
            r#"{"dx":"flu"}"#,
        ),
        true,
    )
    .unwrap();
    let r = push(
        &db,
        &a,
        doc(
            "charts/1",
            Some("Charts"),
            cv(&[(ALICE, 1), (BOB, 7)]),
            r#"{"dx":"none"}"#,
        ),
        true,
    );
    assert_eq!(r, Ok(Some(WriteOutcome::Conflict)));
    let d = block_on(db.get("charts/1")).unwrap().unwrap();
    let mut bodies = vec![d.body.clone(), d.conflicts[0].body.clone()];
    bodies.sort_by_key(|b| b.to_string());
    assert_eq!(bodies, vec![json!({"dx": "flu"}), json!({"dx": "none"})]);
}

#[test]
fn an_edge_supersedes_its_own_versions_before_it_pulls_them() {
    // Alice pushes, then edits again before her pull reaches her first push;
    // bob's concurrent version arrives in between (a manual conflict).
    let db = hub();
    let a = guard("alice", ALICE, 0);
    push(
        &db,
        &a,
        doc("charts/1", Some("Charts"), cv(&[(ALICE, 3)]), r#"{"v":1}"#),
        true,
    )
    .unwrap();
    let b = guard("bob", BOB, 0);
    assert_eq!(
        push(
            &db,
            &b,
            doc(
                "charts/1",
                Some("Charts"),
                cv(&[(BOB, 1)]),
                r#"{"v":"bob"}"#
            ),
            true
        ),
        Ok(Some(WriteOutcome::Conflict))
    );
    assert_eq!(
        push(
            &db,
            &a,
            doc("charts/1", Some("Charts"), cv(&[(ALICE, 4)]), r#"{"v":2}"#),
            true
        ),
        Ok(Some(WriteOutcome::Conflict))
    );
    let d = block_on(db.get("charts/1")).unwrap().unwrap();
    assert_eq!(
        d.conflicts.len(),
        1,
        "alice's first version was superseded by her second"
    );
    let mut bodies = vec![d.body.clone(), d.conflicts[0].body.clone()];
    bodies.sort_by_key(|b| b.to_string());
    assert_eq!(bodies, vec![json!({"v": "bob"}), json!({"v": 2})]);
}

#[test]
fn the_policy_and_collection_come_from_the_stored_document() {
    let db = hub();
    let b = guard("bob", BOB, 0);
    push(
        &db,
        &b,
        doc(
            "charts/1",
            Some("Charts"),
            cv(&[(BOB, 1)]),
            r#"{"v":"bob"}"#,
        ),
        true,
    )
    .unwrap();
    // Alice names a `latest` collection (or none) to win a manual conflict.
    let a = guard("alice", ALICE, 0);
    for (n, coll) in [(1, Some("Notes")), (2, None)] {
        let r = push(
            &db,
            &a,
            doc("charts/1", coll, cv(&[(ALICE, n)]), r#"{"v":"alice"}"#),
            true,
        );
        assert_eq!(r, Ok(Some(WriteOutcome::Conflict)), "{coll:?}");
    }
    let d = block_on(db.get("charts/1")).unwrap().unwrap();
    assert_eq!(d.meta.collection.as_deref(), Some("Charts"));
    assert!(d.meta.flags.is_conflicted());
}

#[test]
fn a_future_timestamp_does_not_pick_the_displayed_winner() {
    let db = hub();
    let b = guard("bob", BOB, 0);
    push(
        &db,
        &b,
        doc_at(
            "charts/1",
            Some("Charts"),
            cv(&[(BOB, 1)]),
            r#"{"v":"bob"}"#,
            NOW - 10,
        ),
        true,
    )
    .unwrap();
    let a = guard("alice", ALICE, 0);
    push(
        &db,
        &a,
        doc_at(
            "charts/1",
            Some("Charts"),
            cv(&[(ALICE, 1)]),
            r#"{"v":"alice"}"#,
            i64::MAX,
        ),
        true,
    )
    .unwrap();
    let d = block_on(db.get("charts/1")).unwrap().unwrap();
    let all = std::iter::once(d.meta.last_modified_ms)
        .chain(d.conflicts.iter().map(|c| c.last_modified_ms));
    for t in all {
        assert!(t < NOW + 1_000_000, "a stored time {t} is in the future");
    }
}

#[test]
fn caps_are_checked_before_anything_is_stored() {
    let db = hub();
    // A conflict flood in a manual collection stops at 32 versions.
    for i in 0..32u8 {
        let g = guard(&format!("e{i}"), DbId([i + 1; 16]), 0);
        push(
            &db,
            &g,
            doc(
                "charts/flood",
                Some("Charts"),
                cv(&[(DbId([i + 1; 16]), 1)]),
                "{}",
            ),
            true,
        )
        .unwrap();
    }
    let g = guard("e99", DbId([99; 16]), 0);
    let r = push(
        &db,
        &g,
        doc(
            "charts/flood",
            Some("Charts"),
            cv(&[(DbId([99; 16]), 1)]),
            "{}",
        ),
        true,
    );
    assert_eq!(
        r,
        Err(Refusal::TooManyVersions {
            id: "charts/flood".into(),
            count: 33
        })
    );
    // A 4,096-entry vector the hub's resolution would extend.
    let big: Vec<(DbId, u64)> = (0..4096u32)
        .map(|i| {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&i.to_be_bytes());
            b[15] = 0x77;
            (DbId(b), 1)
        })
        .collect();
    let device = big[0].0;
    // From an ordinary edge, invented ids are forged; a relay may introduce
    // them, and then the cap stops the resolution's vector.
    let g = guard("wide", device, 0);
    let r = push(
        &db,
        &g,
        doc("notes/wide", Some("Notes"), cv(&big), "{}"),
        true,
    );
    assert!(matches!(r, Err(Refusal::ForgedEntry { .. })), "{r:?}");
    let mut relay = (*guard("wide", device, 0)).clone();
    relay.relay = true;
    let g = Arc::new(relay);
    block_on(db.put("notes/wide", json!({"v": "hub"}))).unwrap();
    let r = push(
        &db,
        &g,
        doc("notes/wide", Some("Notes"), cv(&big), "{}"),
        true,
    );
    assert!(
        matches!(r, Err(Refusal::ChangeVectorTooLarge { entries: 4097, .. })),
        "{r:?}"
    );
    // Everything still reads, and the database checks clean.
    assert_eq!(
        block_on(db.get("charts/flood"))
            .unwrap()
            .unwrap()
            .conflicts
            .len(),
        31
    );
    assert!(block_on(db.changes(0, 1000)).is_ok());
    assert!(block_on(db.integrity_check()).unwrap().is_ok());
}

#[test]
fn a_refused_document_refuses_the_whole_batch() {
    let db = hub();
    let a = guard("alice", ALICE, 0);
    push(&db, &a, doc("notes/a", None, cv(&[(ALICE, 1)]), "{}"), true).unwrap();
    let before = db.stats().last_etag;
    let b = guard("bob", BOB, 0);
    let mut batch = Batch::new();
    batch.apply_pushed(
        doc("notes/fine", None, cv(&[(BOB, 1)]), "{}"),
        b.clone(),
        true,
    );
    batch.apply_pushed(
        doc("notes/a", None, cv(&[(ALICE, 99), (BOB, 2)]), "{}"),
        b.clone(),
        true,
    );
    assert!(matches!(
        block_on(db.commit(batch)),
        Err(Error::Refused(Refusal::ForgedEntry { .. }))
    ));
    assert_eq!(db.stats().last_etag, before);
    assert!(block_on(db.get("notes/fine")).unwrap().is_none());
    // And bob's device was not bound by the refused batch... but may be now.
    assert_eq!(
        push(
            &db,
            &b,
            doc("notes/fine", None, cv(&[(BOB, 1)]), "{}"),
            true
        ),
        Ok(Some(WriteOutcome::Applied))
    );
}

/// Deletion guards (`outpost::policy::DeletionGuards`): the record the hub
/// (or an edge, told in `Welcome`) keeps.
fn guard_invoices(db: &Hub) {
    let g = outpost::policy::DeletionGuards::new(["Invoices".to_string()]);
    let mut b = Batch::new();
    b.set_local(outpost::policy::GUARDS_KEY.to_vec(), Some(g.encode()));
    block_on(db.commit(b)).unwrap();
}

fn put_in(db: &Hub, id: &str, coll: &str, v: serde_json::Value) -> Result<(), Error> {
    let opts = outpost::PutOptions {
        collection: Some(coll.into()),
        ..Default::default()
    };
    block_on(db.put_with(id, v, opts)).map(|_| ())
}

fn forbidden(r: Result<(), Error>) {
    match r {
        Err(e @ Error::Refused(Refusal::DeleteForbidden { .. })) => {
            assert_eq!(e.code(), "delete_forbidden")
        }
        other => panic!("expected delete_forbidden, got {other:?}"),
    }
}

#[test]
fn a_guarded_collection_is_never_deleted_locally_nor_moved_out_of() {
    let db = hub();
    guard_invoices(&db);
    put_in(&db, "invoices/1", "Invoices", json!({"total": 10})).unwrap();
    put_in(&db, "notes/1", "Notes", json!({"n": 1})).unwrap();
    forbidden(block_on(db.delete("invoices/1")).map(|_| ()));
    // In a transaction: nothing of it is written.
    let mut b = Batch::new();
    b.put("notes/2", json!({"n": 2}));
    b.delete("invoices/1");
    forbidden(block_on(db.commit(b)).map(|_| ()));
    assert!(block_on(db.get("notes/2")).unwrap().is_none());
    // Moving it out of its collection is a delete from it.
    forbidden(put_in(&db, "invoices/1", "Notes", json!({"total": 0})));
    // Editing it (same collection, any case) is fine, and so is deleting
    // what is not guarded.
    put_in(
        &db,
        "invoices/1",
        "INVOICES",
        json!({"total": 10, "cancelled": true}),
    )
    .unwrap();
    block_on(db.put(
        "invoices/1",
        json!({"total": 10, "cancelled": true, "note": "x"}),
    ))
    .unwrap();
    assert!(block_on(db.delete("notes/1")).unwrap().is_some());
    assert!(body(&db, "invoices/1")["cancelled"].as_bool().unwrap());
    assert!(block_on(db.integrity_check()).unwrap().is_ok());
}

#[test]
fn a_pushed_deletion_of_a_guarded_document_refuses_the_batch() {
    let db = hub();
    guard_invoices(&db);
    put_in(&db, "invoices/1", "Invoices", json!({"total": 10})).unwrap();
    let held = block_on(db.get("invoices/1")).unwrap().unwrap();
    let a = guard("alice", ALICE, held.meta.etag);
    let next = held.meta.change_vector.clone().with(ALICE, 1);
    let tomb = |id: &str, coll: Option<&str>| RemoteDoc {
        id: id.into(),
        collection: coll.map(str::to_string),
        versions: vec![RawVersion {
            change_vector: next.clone(),
            last_modified_ms: NOW - 10,
            deleted: true,
            body: Vec::new(),
        }],
        source: None,
    };
    let refused = |r: Result<Option<WriteOutcome>, Refusal>| {
        assert!(
            matches!(r, Err(Refusal::DeleteForbidden { ref collection, .. }) if collection.eq_ignore_ascii_case("invoices")),
            "{r:?}"
        )
    };
    // The deletion, whatever collection the edge names.
    refused(push(&db, &a, tomb("invoices/1", Some("Invoices")), true));
    refused(push(&db, &a, tomb("invoices/1", Some("Notes")), true));
    refused(push(&db, &a, tomb("invoices/1", None), true));
    // A move out of the collection (an informed edit naming another one).
    refused(push(
        &db,
        &a,
        doc("invoices/1", Some("Notes"), next.clone(), r#"{"total":0}"#),
        true,
    ));
    // A new document born deleted in a guarded collection.
    refused(push(&db, &a, tomb("invoices/2", Some("Invoices")), true));
    assert_eq!(body(&db, "invoices/1")["total"], 10);
    // An edit in place is taken.
    assert_eq!(
        push(
            &db,
            &a,
            doc(
                "invoices/1",
                Some("Invoices"),
                next.clone(),
                r#"{"total":10,"cancelled":true}"#
            ),
            true
        ),
        Ok(Some(WriteOutcome::Applied))
    );
    // A trusted peer (an upstream hub) is not held to this hub's guards.
    let mut b = Batch::new();
    let mut t = tomb("invoices/1", Some("Invoices"));
    t.versions[0].change_vector = next.clone().with(HUB, 999);
    b.apply_remote(t, ConflictPolicy::Latest);
    block_on(db.commit(b)).unwrap();
    assert!(block_on(db.get("invoices/1")).unwrap().is_none());
}
