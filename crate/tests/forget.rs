//! Subject purges at the hub (`outpost::sync::forget`) on the real file
//! store: what is removed (by ids, prefix, field value, in any version),
//! what is recorded in the same transaction (marker, retired ids, owed
//! receipts, audit entry without contents), the raw bytes of the files,
//! the purge order an identity's next session gets, and a purge that
//! cannot record refusing to remove anything.

#![cfg(not(target_arch = "wasm32"))]

use std::path::Path;

use futures::executor::block_on;
use outpost::cv::{ChangeVector, DbId};
use outpost::db::{AuditKind, purged_id_hash};
use outpost::doc::id_key;
use outpost::store::file::{FileStore, FileStoreOptions};
use outpost::sync::driver::plan_purge;
use outpost::sync::forget::{self, AuditSubjectPurge, SubjectRequest};
use outpost::sync::purge::{Served, served_key};
use outpost::{Batch, ConflictPolicy, Database, PurgeScope, RawVersion, RemoteDoc};
use outpost_testkit::{TempDir, opts};
use serde_json::json;

const MARK: &[u8] = b"subj-4e1c";

type Db = Database<FileStore>;

fn open(dir: &Path) -> Db {
    let store = FileStore::open(dir, FileStoreOptions::default()).unwrap();
    block_on(Database::open(store, opts())).unwrap()
}

fn dump_holds(dir: &Path, mark: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|e| {
        let b = std::fs::read(e.unwrap().path()).unwrap();
        b.windows(mark.len()).any(|w| w == mark)
    })
}

/// The device of `who` in these tests.
fn device(who: &str) -> DbId {
    DbId([who.len() as u8; 16])
}

fn set_served(db: &Db, who: &str, prefixes: &[&str]) {
    let s = Served {
        prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
        ..Served::default()
    };
    let mut b = Batch::new();
    b.set_local(served_key(who, &device(who)), Some(s.encode()));
    block_on(db.commit(b)).unwrap();
}

fn req(
    ids: &[&str],
    prefixes: &[&str],
    field: Option<(&str, serde_json::Value)>,
) -> SubjectRequest {
    SubjectRequest {
        ids: ids.iter().map(|s| s.to_string()).collect(),
        prefixes: prefixes.iter().map(|s| s.to_string()).collect(),
        field: field.map(|(f, v)| (f.to_string(), v)),
        by: "dpo".into(),
        reason: "request 7".into(),
        dry_run: false,
    }
}

#[test]
fn a_subject_purge_removes_records_and_erases_in_one_go() {
    let t = TempDir::new(std::env::temp_dir(), "outpost-forget");
    let db = open(t.path());
    let mark = String::from_utf8_lossy(MARK).to_string();
    // The subject's documents: by field (one only in a conflict version),
    // by id, by prefix; and others.
    block_on(db.put(
        "visits/1",
        json!({ "patient": "S-1", "t": format!("{mark} a") }),
    ))
    .unwrap();
    block_on(db.put(
        "visits/1",
        json!({ "patient": "S-1", "t": format!("{mark} b") }),
    ))
    .unwrap();
    block_on(db.put("visits/2", json!({ "patient": "S-2", "t": "other" }))).unwrap();
    let mut b = Batch::new();
    b.apply_remote(
        RemoteDoc {
            id: "visits/2".into(),
            collection: None,
            versions: vec![RawVersion {
                change_vector: ChangeVector::from_entries([(DbId([9; 16]), 1)]).unwrap(),
                last_modified_ms: 1,
                deleted: false,
                body: format!(r#"{{"patient":"S-1","t":"{mark} c"}}"#).into_bytes(),
            }],
            source: None,
        },
        ConflictPolicy::Manual,
    );
    block_on(db.commit(b)).unwrap();
    block_on(db.put("Subject/S-1", json!({ "t": format!("{mark} d") }))).unwrap();
    block_on(db.put("files/s-1/a", json!({ "t": format!("{mark} e") }))).unwrap();
    block_on(db.put("files/s-1/b", json!({ "t": format!("{mark} f") }))).unwrap();
    block_on(db.delete("files/s-1/b")).unwrap();
    block_on(db.put("visits/3", json!({ "patient": "S-3", "t": "kept-91" }))).unwrap();
    set_served(&db, "alice", &["visits/"]);
    set_served(&db, "bob", &["files/"]);
    set_served(&db, "carol", &["other/"]);
    assert!(dump_holds(t.path(), MARK), "the test can fail");

    // A dry run changes nothing.
    let mut dry = req(
        &["subject/s-1"],
        &["FILES/S-1/"],
        Some(("patient", json!("S-1"))),
    );
    dry.dry_run = true;
    let r = block_on(forget::purge_subject(&db, &dry, 1_000)).unwrap();
    // Live matches: visits/1, visits/2 (by a conflict version),
    // subject/s-1, files/s-1/a.
    assert_eq!((r.marker, r.removed), (None, 4), "{r:?}");
    assert!(block_on(db.get("visits/1")).unwrap().is_some());
    assert!(block_on(forget::markers(&db)).unwrap().is_empty());

    let r = block_on(forget::purge_subject(
        &db,
        &req(
            &["subject/s-1"],
            &["FILES/S-1/"],
            Some(("patient", json!("S-1"))),
        ),
        1_000,
    ))
    .unwrap();
    // visits/1, visits/2 (its conflict version), subject/s-1, files/s-1/a
    // and the tombstone files/s-1/b.
    assert_eq!(r.removed, 5, "{r:?}");
    assert_eq!(r.marker, Some(1));
    let alice = forget::holder("alice", Some(&device("alice")));
    let bob = forget::holder("bob", Some(&device("bob")));
    assert_eq!(r.owed, [alice.clone(), bob.clone()]);
    for id in [
        "visits/1",
        "visits/2",
        "Subject/S-1",
        "files/s-1/a",
        "files/s-1/b",
    ] {
        assert!(block_on(db.get(id)).unwrap().is_none(), "{id}");
        assert_eq!(
            block_on(forget::retired_by(&db, id)).unwrap(),
            Some(1),
            "{id}"
        );
    }
    assert!(block_on(db.get("visits/3")).unwrap().is_some());
    assert_eq!(block_on(forget::retired_by(&db, "visits/3")).unwrap(), None);
    // The marker, and the ids it retired by hash.
    let m = &block_on(forget::markers(&db)).unwrap()[0];
    assert_eq!((m.number, m.removed, m.by.as_str()), (1, 5, "dpo"));
    assert_eq!(m.request, "1 id, 1 prefix, field patient");
    let mut want: Vec<[u8; 32]> = [
        "visits/1",
        "visits/2",
        "subject/s-1",
        "files/s-1/a",
        "files/s-1/b",
    ]
    .iter()
    .map(|i| purged_id_hash(&id_key(i)))
    .collect();
    want.sort();
    assert_eq!(block_on(forget::marker_ids(&db, 1)).unwrap(), want);
    // Owed receipts, and the order alice's next session gets.
    let owed = block_on(forget::owed(&db)).unwrap();
    assert_eq!(owed, [(alice.clone(), vec![1]), (bob.clone(), vec![1])]);
    let alice_device = device("alice");
    let o = block_on(plan_purge(
        &db,
        "alice",
        &alice_device,
        &["visits/".into()],
        false,
    ))
    .unwrap()
    .expect("an order");
    assert_eq!(
        (o.reason.as_str(), o.prefixes.len(), o.markers.clone()),
        ("purged", 0, vec![1])
    );
    assert_eq!(o.ids, want);
    assert_eq!(
        block_on(plan_purge(
            &db,
            "carol",
            &device("carol"),
            &["other/".into()],
            false
        ))
        .unwrap(),
        None
    );
    // Another device of alice was never served: it owes nothing.
    let other = DbId([77; 16]);
    assert_eq!(
        block_on(plan_purge(&db, "alice", &other, &["visits/".into()], false)).unwrap(),
        None
    );
    // The audit entry: who, why, hashes; no id, no body, no field value.
    let entries = block_on(db.audit_entries(1, 100)).unwrap();
    let e = entries
        .iter()
        .find(|e| e.kind == AuditKind::SubjectPurge)
        .expect("an audit entry");
    let text = String::from_utf8_lossy(&e.payload);
    for secret in [mark.as_str(), "visits/1", "subject/s-1", "S-1", "s-1"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let a: AuditSubjectPurge = serde_json::from_slice(&e.payload).unwrap();
    assert_eq!((a.marker, a.removed, a.docs.len()), (1, 5, 5));
    assert_eq!(a.owed, [alice, bob]);
    assert!(block_on(db.verify_audit_chain()).unwrap().is_ok());
    // No plaintext left in the files, while the store holds what is kept.
    block_on(db.close()).unwrap();
    assert!(
        !dump_holds(t.path(), MARK),
        "no purged plaintext in the files"
    );
    assert!(dump_holds(t.path(), b"kept-91"));
    // Reopened, everything holds; a second purge takes the next number.
    let db = open(t.path());
    assert_eq!(
        block_on(forget::retired_by(&db, "VISITS/1")).unwrap(),
        Some(1)
    );
    let r = block_on(forget::purge_subject(
        &db,
        &req(&["visits/3"], &[], None),
        2_000,
    ))
    .unwrap();
    assert_eq!((r.marker, r.removed), (Some(2), 1));
    // Nothing that matches: no marker.
    let r = block_on(forget::purge_subject(
        &db,
        &req(&["visits/9"], &[], None),
        3_000,
    ))
    .unwrap();
    assert_eq!((r.marker, r.removed), (None, 0));
}

#[test]
fn bad_requests_are_refused_and_change_nothing() {
    let t = TempDir::new(std::env::temp_dir(), "outpost-forget-bad");
    let db = open(t.path());
    block_on(db.put("a/1", json!({ "x": 1 }))).unwrap();
    let bad = [
        req(&[], &[], None),
        req(&[], &[""], None),
        req(&["\u{0}bad"], &[], None),
        SubjectRequest {
            by: " ".into(),
            ..req(&["a/1"], &[], None)
        },
    ];
    for r in bad {
        let e = block_on(forget::purge_subject(&db, &r, 1)).unwrap_err();
        assert!(!e.to_string().is_empty());
    }
    assert!(block_on(db.get("a/1")).unwrap().is_some());
    // A purge whose record step fails removes nothing.
    let e = block_on(db.purge_recorded(
        &PurgeScope {
            ids: vec!["a/1".into()],
            ..PurgeScope::default()
        },
        |_| {
            let mut b = Batch::new();
            b.put("b/1", json!({}));
            Ok(b)
        },
    ))
    .unwrap_err();
    assert!(e.to_string().contains("only local records"), "{e}");
    assert!(block_on(db.get("a/1")).unwrap().is_some());
    assert!(block_on(forget::markers(&db)).unwrap().is_empty());
}

/// An upstream's purge order at a hub (`received::purge_ordered`, what a
/// hub's upstream link does): the documents it names by id hash become a
/// subject purge of this hub (marker by the upstream, retired ids, owed by
/// the edges that may hold them, an audit entry without ids); what it names
/// by prefix (the hub's own scope at the upstream narrowed) is only
/// removed. The report covers both, for the receipt.
#[test]
fn an_upstream_order_is_carried_out_as_this_hubs_own_subject_purge() {
    use outpost::sync::EdgeConfig;
    use outpost::sync::purge::PurgeOrder;
    use outpost::sync::received::{HubLink, purge_ordered};
    let tmp = TempDir::new(std::env::temp_dir(), "outpost-forget-ordered");
    let db = open(tmp.path());
    for (id, body) in [
        ("patients/p1", json!({ "s": "subject" })),
        ("patients/p2", json!({ "s": "other" })),
        ("old/x", json!({ "s": "narrowed" })),
    ] {
        block_on(db.put(id, body)).unwrap();
    }
    set_served(&db, "lap", &["patients/"]);
    set_served(&db, "desk", &["old/"]);
    let link = HubLink::new("ws://cloud/sync database main as clinic");
    let mut cfg = EdgeConfig::new("main", "clinic", "");
    cfg.source = "upstream:clinic".into();
    cfg.hub_link = Some(link.clone());
    let order = PurgeOrder {
        order: 3,
        reason: "narrowed".into(),
        prefixes: vec!["old/".into()],
        keep: vec!["patients/".into()],
        ids: vec![purged_id_hash(&id_key("patients/p1"))],
        markers: Vec::new(),
    };
    let rep = block_on(purge_ordered(&db, &cfg, &link, &order, 1_000)).unwrap();
    assert_eq!(rep.removed, 2);
    for (id, kept) in [
        ("patients/p1", false),
        ("patients/p2", true),
        ("old/x", false),
    ] {
        assert_eq!(block_on(db.get(id)).unwrap().is_some(), kept, "{id}");
    }
    // The subject's id alone is retired, by marker 1.
    assert_eq!(
        block_on(forget::retired_by(&db, "patients/p1")).unwrap(),
        Some(1)
    );
    assert_eq!(block_on(forget::retired_by(&db, "old/x")).unwrap(), None);
    let markers = block_on(forget::markers(&db)).unwrap();
    assert_eq!(markers.len(), 1);
    let m = &markers[0];
    assert_eq!(m.removed, 1);
    assert_eq!(m.by, "the upstream ws://cloud/sync database main as clinic");
    assert_eq!(m.reason, "its purge order 3 (narrowed)");
    assert_eq!(m.request, "1 ids by their hashes");
    // Owed by the edge that may hold it, not by the one under old/.
    let owed = block_on(forget::owed(&db)).unwrap();
    assert_eq!(owed.len(), 1, "{owed:?}");
    assert!(owed[0].0.starts_with("lap "), "{owed:?}");
    let entries = block_on(db.snapshot().audit_entries(1, 10)).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].kind, AuditKind::SubjectPurge);
    let text = String::from_utf8_lossy(&entries[0].payload).to_string();
    assert!(
        !text.contains("patients/p1") && !text.contains("subject"),
        "{text}"
    );

    // An order naming nothing by hash only removes, as at any edge.
    block_on(db.put("old/y", json!({ "s": "narrowed" }))).unwrap();
    let order = PurgeOrder {
        order: 4,
        ids: Vec::new(),
        ..order
    };
    let rep = block_on(purge_ordered(&db, &cfg, &link, &order, 2_000)).unwrap();
    assert_eq!(rep.removed, 1);
    assert_eq!(block_on(forget::markers(&db)).unwrap().len(), 1);

    // Order 0: the ids of a push the upstream refused as purged (a
    // document this hub relayed from one of its edges): marked too, so the
    // edge that wrote it is ordered to erase it and cannot push it again.
    let order = PurgeOrder {
        order: 0,
        reason: "purged".into(),
        ids: vec![purged_id_hash(&id_key("patients/p2"))],
        ..PurgeOrder::default()
    };
    block_on(purge_ordered(&db, &cfg, &link, &order, 3_000)).unwrap();
    assert!(block_on(db.get("patients/p2")).unwrap().is_none());
    assert_eq!(
        block_on(forget::retired_by(&db, "patients/p2")).unwrap(),
        Some(2)
    );
    let markers = block_on(forget::markers(&db)).unwrap();
    assert_eq!(markers[1].reason, "a push it refused as purged");
}
