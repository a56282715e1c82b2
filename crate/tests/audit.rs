//! The audit trail in the engine (`docs/audit.md`): entries appended in the
//! same commit as the batch they record, none left by a refused or failed
//! batch, a chain that verifies, and a changed entry named by the verifier.
#![cfg(not(target_arch = "wasm32"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use futures::executor::block_on;
use outpost::db::{AuditPush, AuditRefusal, GENESIS_HASH, chain_hash, decode_entry};
use outpost::policy::Policies;
use outpost::store::MemoryStore;
use outpost::sync::driver::hub_storage;
use outpost::sync::hub::{HubAction, HubEvent};
use outpost::{
    AuditKind, Batch, ChangeVector, ConflictPolicy, Database, DbId, Error, Expected, OpenOptions,
    PushGuard, PutOptions, RawVersion, RemoteDoc,
};
use serde_json::json;

const HUB: DbId = DbId([0xAA; 16]);
const ALICE: DbId = DbId([0xA1; 16]);
const BOB: DbId = DbId([0xB1; 16]);
const NOW: i64 = 1_800_000_000_000;

type Db = Database<Arc<MemoryStore>>;

fn open(store: Arc<MemoryStore>) -> Db {
    let t = Arc::new(AtomicI64::new(NOW));
    block_on(Database::open(
        store,
        OpenOptions {
            db_id: Some(HUB),
            clock: Some(Arc::new(move || t.fetch_add(1, Ordering::Relaxed))),
            ..Default::default()
        },
    ))
    .unwrap()
}

fn count(db: &Db) -> u64 {
    block_on(db.snapshot().audit_len()).unwrap()
}

fn guard(identity: &str, device: DbId) -> Arc<PushGuard> {
    Arc::new(PushGuard {
        owner: format!("edge:{identity}"),
        device,
        source: format!("edge:{identity}/{device}"),
        seen_upto: 0,
        policies: Policies::new([], ConflictPolicy::Latest),
        relay: false,
    })
}

fn doc(id: &str, entries: &[(DbId, u64)], body: &str) -> RemoteDoc {
    RemoteDoc {
        id: id.into(),
        collection: Some("Notes".into()),
        versions: vec![RawVersion {
            change_vector: ChangeVector::from_entries(entries.iter().copied()).unwrap(),
            last_modified_ms: NOW,
            deleted: false,
            body: body.as_bytes().to_vec(),
        }],
        source: None,
    }
}

fn apply_push(db: &Db, identity: &str, device: DbId, upto: u64, d: RemoteDoc) -> HubEvent<'static> {
    let g = guard(identity, device);
    let mut d = d;
    d.source = Some(g.source.clone());
    let wire = outpost::sync::WireDoc {
        id: d.id.clone(),
        collection: d.collection.clone(),
        versions: d.versions.clone(),
    };
    let manifest = outpost::sync::signed::BatchManifest::of(device, 0, [0; 32], upto, &[wire]);
    let action = HubAction::ApplyPush {
        edge_db_id: device,
        upto,
        docs: vec![(d, true)],
        guard: g,
        manifest,
        signed: None,
    };
    block_on(hub_storage(db, identity, &action, |_| {})).expect("an event")
}

#[test]
fn entries_chain_and_commit_with_their_batch() {
    let db = open(Arc::new(MemoryStore::new()));
    assert_eq!(count(&db), 0);
    let report = block_on(db.verify_audit_chain()).unwrap();
    assert!(report.is_ok() && report.entries == 0 && report.head == GENESIS_HASH);

    // An audit entry and a document in one batch: both or neither.
    let mut b = Batch::new();
    b.put("notes/1", json!({"v": 1}));
    b.audit(AuditKind::ScopeChange, b"{\"x\":1}".to_vec());
    block_on(db.commit(b)).unwrap();
    assert_eq!(count(&db), 1);

    // A batch that fails (a concurrency check) leaves no entry.
    let mut b = Batch::new();
    b.audit(AuditKind::ScopeChange, b"{\"x\":2}".to_vec());
    b.put_with(
        "notes/1",
        json!({"v": 2}),
        PutOptions {
            expected: Expected::Missing,
            ..Default::default()
        },
    );
    assert!(matches!(
        block_on(db.commit(b)),
        Err(Error::ConcurrencyConflict { .. })
    ));
    assert_eq!(count(&db), 1);

    // The next entry chains on entry 1 (the rolled-back one left no trace
    // in the cached tail either).
    let mut b = Batch::new();
    b.audit(AuditKind::PushRefused, b"{\"x\":3}".to_vec());
    block_on(db.commit(b)).unwrap();
    let es = block_on(db.audit_entries(1, 10)).unwrap();
    assert_eq!(es.len(), 2);
    assert_eq!(es[0].seq, 1);
    assert_eq!(es[0].prev_hash, GENESIS_HASH);
    assert_eq!(es[1].seq, 2);
    assert_eq!(es[1].prev_hash, es[0].hash);
    assert_eq!(es[1].kind, AuditKind::PushRefused);
    assert_eq!(es[1].payload, b"{\"x\":3}");
    assert!(es[1].time_ms >= NOW);
    let report = block_on(db.verify_audit_chain()).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.entries, report.head), (2, es[1].hash));
    // Reading from the middle, and a limit.
    let es2 = block_on(db.audit_entries(2, 1)).unwrap();
    assert_eq!(es2, vec![es[1].clone()]);
    // The integrity check walks the audit tree (catalog).
    let ic = block_on(db.integrity_check()).unwrap();
    assert!(ic.is_ok(), "{:?}", ic.problems);
}

#[test]
fn the_chain_survives_a_reopen_and_many_entries() {
    let store = Arc::new(MemoryStore::new());
    let db = open(store.clone());
    for i in 0..300u32 {
        let mut b = Batch::new();
        b.audit(
            AuditKind::ScopeChange,
            format!("{{\"i\":{i}}}").into_bytes(),
        );
        block_on(db.commit(b)).unwrap();
    }
    drop(db);
    let db = open(store);
    // The tail is found again in the tree (no gap, no fork).
    let mut b = Batch::new();
    b.audit(AuditKind::ScopeChange, b"{}".to_vec());
    block_on(db.commit(b)).unwrap();
    assert_eq!(count(&db), 301);
    let report = block_on(db.verify_audit_chain()).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.entries, 301);
}

#[test]
fn an_accepted_push_is_recorded_in_its_commit_and_a_refused_one_is_not() {
    let db = open(Arc::new(MemoryStore::new()));
    let ev = apply_push(
        &db,
        "alice",
        ALICE,
        7,
        doc("notes/a", &[(ALICE, 5)], r#"{"v":1}"#),
    );
    assert!(matches!(ev, HubEvent::PushApplied { .. }), "{ev:?}");
    let es = block_on(db.audit_entries(1, 10)).unwrap();
    assert_eq!(es.len(), 1);
    assert_eq!(es[0].kind, AuditKind::PushAccepted);
    let rec: AuditPush = serde_json::from_slice(&es[0].payload).unwrap();
    assert_eq!(rec.identity, "alice");
    assert_eq!(rec.device, ALICE.to_string());
    assert_eq!(rec.upto, 7);
    assert_eq!((rec.key_id.as_str(), rec.signature.as_str()), ("", ""));
    assert_eq!(rec.docs.len(), 1);
    assert_eq!(rec.docs[0].id, "notes/a");
    assert_eq!(rec.docs[0].collection.as_deref(), Some("Notes"));
    let v = &rec.docs[0].versions[0];
    assert_eq!(
        v.change_vector,
        ChangeVector::from_entries([(ALICE, 5)]).unwrap().to_text()
    );
    assert_eq!(v.body_sha256, outpost::db::sha256_hex(br#"{"v":1}"#));
    // No body in the trail.
    assert!(!String::from_utf8_lossy(&es[0].payload).contains(r#"{"v":1}"#));

    // Bob forges alice's entry: refused in the transaction, no entry.
    let ev = apply_push(
        &db,
        "bob",
        BOB,
        3,
        doc("notes/a", &[(ALICE, 1_000), (BOB, 1)], r#"{"v":"bob"}"#),
    );
    assert!(matches!(ev, HubEvent::PushRefused(_)), "{ev:?}");
    assert_eq!(count(&db), 1);

    // The machine then asks for the refusal's own entry.
    let action = HubAction::RecordRefusal {
        edge_db_id: BOB,
        upto: 3,
        code: "forged_change_vector".into(),
        id: "notes/a".into(),
        rule: "r".into(),
        message: "m".into(),
    };
    assert!(block_on(hub_storage(&db, "bob", &action, |_| {})).is_none());
    let es = block_on(db.audit_entries(2, 10)).unwrap();
    assert_eq!(es.len(), 1);
    assert_eq!(es[0].kind, AuditKind::PushRefused);
    let r: AuditRefusal = serde_json::from_slice(&es[0].payload).unwrap();
    assert_eq!(
        (
            r.identity.as_str(),
            r.device,
            r.code.as_str(),
            r.id.as_str()
        ),
        ("bob", BOB.to_string(), "forged_change_vector", "notes/a")
    );
    assert!(block_on(db.verify_audit_chain()).unwrap().is_ok());
}

#[test]
fn a_changed_entry_is_named_by_the_verifier() {
    let db = open(Arc::new(MemoryStore::new()));
    for i in 1..=5u32 {
        let mut b = Batch::new();
        b.audit(
            AuditKind::ScopeChange,
            format!("{{\"i\":{i}}}").into_bytes(),
        );
        block_on(db.commit(b)).unwrap();
    }
    assert!(block_on(db.verify_audit_chain()).unwrap().is_ok());
    let es = block_on(db.audit_entries(1, 10)).unwrap();

    // Entry 3's payload changed, its stored hash left as it was.
    let original = raw_value(&es[2]);
    let mut changed = original.clone();
    let at = changed.len() - 32 - 2;
    changed[at] ^= 0x01; // a digit of the payload
    tamper(&db, 3, changed.clone());
    let r = block_on(db.verify_audit_chain()).unwrap();
    let bad = r.first_bad.expect("entry 3 is bad");
    assert_eq!(
        (bad.seq, r.entries, bad.page_damaged),
        (3, 2, false),
        "{}",
        bad.reason
    );
    assert!(
        bad.reason.contains("does not match its hash"),
        "{}",
        bad.reason
    );

    // Rehashing entry 3 is not enough: entry 4 names the old hash.
    let (enc, _) = changed.split_at(changed.len() - 32);
    let mut rehashed = enc.to_vec();
    rehashed.extend_from_slice(&chain_hash(&es[2].prev_hash, enc));
    tamper(&db, 3, rehashed);
    let r = block_on(db.verify_audit_chain()).unwrap();
    let bad = r.first_bad.expect("entry 4 is bad");
    assert_eq!(bad.seq, 4, "{}", bad.reason);
    assert!(bad.reason.contains("previous hash"), "{}", bad.reason);

    // The last entry changed: its own stored hash tells.
    tamper(&db, 3, original);
    assert!(block_on(db.verify_audit_chain()).unwrap().is_ok());
    let mut last = raw_value(&es[4]);
    let n = last.len();
    last[n - 40] ^= 0x01;
    tamper(&db, 5, last);
    let r = block_on(db.verify_audit_chain()).unwrap();
    assert_eq!(r.first_bad.map(|b| b.seq), Some(5));

    // Garbage under a key, and a missing entry.
    tamper(&db, 5, vec![1, 2, 3]);
    let r = block_on(db.verify_audit_chain()).unwrap();
    let bad = r.first_bad.unwrap();
    assert_eq!(bad.seq, 5);
    assert!(bad.reason.contains("does not decode"), "{}", bad.reason);
    assert!(matches!(
        block_on(db.audit_entries(5, 1)),
        Err(Error::CorruptRecord { .. })
    ));
}

/// The stored bytes of a decoded entry (re-encoded; checked to round-trip).
fn raw_value(e: &outpost::AuditEntry) -> Vec<u8> {
    let mut b = Vec::new();
    b.push(1u8);
    b.extend_from_slice(&e.seq.to_le_bytes());
    b.extend_from_slice(&e.time_ms.to_le_bytes());
    b.extend_from_slice(&e.kind.code().to_le_bytes());
    b.extend_from_slice(&e.prev_hash);
    b.extend_from_slice(&(e.payload.len() as u32).to_le_bytes());
    b.extend_from_slice(&e.payload);
    b.extend_from_slice(&e.hash);
    assert_eq!(&decode_entry(&b).unwrap(), e);
    assert_eq!(chain_hash(&e.prev_hash, &b[..b.len() - 32]), e.hash);
    b
}

fn tamper(db: &Db, seq: u64, value: Vec<u8>) {
    let mut b = Batch::new();
    b.tamper_audit_entry(seq, value);
    block_on(db.commit(b)).unwrap();
}

/// The hub machine asks for a refusal's audit entry next to its metric,
/// both for a refusal it decides itself and for one the engine returns.
#[test]
fn the_hub_machine_records_every_push_refusal() {
    use outpost::sync::{Frame, Grant, HubSession, Prefixes, WireDoc};
    use std::collections::HashMap;
    let mut h = HubSession::new(0);
    let hello = Frame::Hello {
        min_version: 5,
        max_version: 5,
        db_id: ALICE,
        database: "main".into(),
        identity: "alice".into(),
        credential: "t".into(),
        pull_checkpoint: 0,
        checkpoint_hub: DbId([0; 16]),
        auth: outpost::sync::frame::AuthMode::Token,
        key: Vec::new(),
    }
    .encode();
    h.handle(HubEvent::Received(&hello), 0);
    let grant = Grant {
        identity: "alice".into(),
        read: Prefixes::parse(&["notes/".into()]).unwrap(),
        write: Prefixes::parse(&["notes/".into()]).unwrap(),
        relay: false,
        policies: HashMap::new(),
        default_policy: ConflictPolicy::Latest,
        never_delete: Vec::new(),
        hub_outputs: Vec::new(),
    };
    h.handle(
        HubEvent::Authorized {
            grant,
            hub_db_id: HUB,
            hub_last_etag: 0,
            push_checkpoint: 0,
            pending: 0,
            pull_from: 0,
            batch_head: (0, [0; 32]),
            purge: None,
            resync: None,
        },
        0,
    );
    let wire = |id: &str, upto: u64| {
        Frame::Push {
            upto,
            seq: 0,
            prev: [0; 32],
            signature: Vec::new(),
            docs: vec![WireDoc {
                id: id.into(),
                collection: None,
                versions: vec![RawVersion {
                    change_vector: ChangeVector::from_entries([(ALICE, upto)]).unwrap(),
                    last_modified_ms: 0,
                    deleted: false,
                    body: b"{}".to_vec(),
                }],
            }],
        }
        .encode()
    };
    let record = |acts: &[HubAction]| {
        acts.iter().find_map(|a| match a {
            HubAction::RecordRefusal {
                edge_db_id,
                upto,
                code,
                id,
                ..
            } => Some((*edge_db_id, *upto, code.clone(), id.clone())),
            _ => None,
        })
    };
    // Decided by the machine (outside the write prefixes).
    let acts = h.handle(HubEvent::Received(&wire("private/1", 1)), 1);
    assert_eq!(
        record(&acts),
        Some((
            ALICE,
            1,
            "write_denied".to_string(),
            "private/1".to_string()
        ))
    );
    // Decided by the engine, in the transaction.
    let acts = h.handle(HubEvent::Received(&wire("notes/1", 2)), 2);
    assert!(
        acts.iter()
            .any(|a| matches!(a, HubAction::ApplyPush { .. }))
    );
    let acts = h.handle(
        HubEvent::PushRefused(outpost::Refusal::UnseenVersion {
            id: "notes/1".into(),
        }),
        3,
    );
    assert_eq!(
        record(&acts),
        Some((
            ALICE,
            2,
            "unseen_version".to_string(),
            "notes/1".to_string()
        ))
    );
}

/// An import with `audit` set records each batch in that batch's commit:
/// per document its line, id, collection, the SHA-256 of the line and the
/// change vector the commit gave it; the chain verifies. A batch the
/// engine refuses as a whole is committed a document at a time, each with
/// its own entry; a refused document has none. Without `audit`, nothing.
#[test]
fn an_audited_import_records_each_batch_with_the_versions_it_wrote() {
    use outpost::db::{AuditImport, sha256_hex};
    use outpost::jsonl::{ImportAudit, ImportOptions, import};
    let db = open(Arc::new(MemoryStore::new()));
    let mut input = String::new();
    for i in 0..5 {
        input.push_str(&format!("{{\"id\":\"notes/{i}\",\"n\":{i}}}\n"));
    }
    // Line 6 is not JSON (skipped before any batch); line 7 is refused by
    // the engine (a body just past its size limit, on a line within the
    // import's), so its batch with line 5 goes one document at a time.
    input.push_str("not json\n");
    input.push_str(&format!(
        "{{\"id\":\"big\",\"x\":\"{}\"}}\n",
        "x".repeat(outpost::doc::MAX_BODY_BYTES)
    ));
    input.push_str("{\"id\":\"notes/7\",\"@metadata\":{\"@collection\":\"Notes\"}}\n");
    let opts = ImportOptions {
        batch_docs: 2,
        batch_bytes: 64 << 20,
        audit: Some(ImportAudit {
            by: "ops@clinic".into(),
            via: "a test".into(),
            source: "notes.jsonl".into(),
        }),
        ..ImportOptions::default()
    };
    let (st, r) = block_on(import(&db, input.as_bytes(), &opts, |_| {}));
    r.unwrap();
    assert_eq!((st.imported, st.bad), (6, 2), "{st:?}");
    let entries = block_on(db.snapshot().audit_entries(1, 100)).unwrap();
    let recorded: Vec<AuditImport> = entries
        .iter()
        .map(|e| {
            assert_eq!(e.kind, AuditKind::Import);
            serde_json::from_slice(&e.payload).unwrap()
        })
        .collect();
    // Batches: lines 1-2, 3-4, then 5 and 7 (6 skipped) refused together
    // and retried alone: 5 is written, 7 refused, then 8.
    let lines: Vec<Vec<u64>> = recorded
        .iter()
        .map(|r| r.docs.iter().map(|d| d.line).collect())
        .collect();
    assert_eq!(lines, [vec![1, 2], vec![3, 4], vec![5], vec![8]]);
    let text: Vec<&str> = input.lines().collect();
    for r in &recorded {
        assert_eq!((r.by.as_str(), r.via.as_str()), ("ops@clinic", "a test"));
        assert_eq!(r.source, "notes.jsonl");
        for d in &r.docs {
            let held = block_on(db.get(&d.id)).unwrap().unwrap();
            assert_eq!(
                d.change_vector,
                held.meta.change_vector.to_text(),
                "{}",
                d.id
            );
            assert!(!d.change_vector.is_empty());
            assert_eq!(
                d.line_sha256,
                sha256_hex(text[d.line as usize - 1].as_bytes())
            );
        }
    }
    assert_eq!(recorded[3].docs[0].collection.as_deref(), Some("Notes"));
    assert!(
        block_on(db.snapshot().verify_audit_chain())
            .unwrap()
            .is_ok()
    );

    // Without `audit`, the same import records nothing.
    let plain = open(Arc::new(MemoryStore::new()));
    let (st, r) = block_on(import(
        &plain,
        input.as_bytes(),
        &ImportOptions::default(),
        |_| {},
    ));
    r.unwrap();
    assert_eq!(st.imported, 6);
    assert_eq!(count(&plain), 0);
}

/// A hub's upstream link (`EdgeConfig::hub_link`, set by the hub for
/// `[[upstream]]`) records each batch it stores in that batch's commit: per
/// document the versions as received, what storing them did and the
/// version written; a batch of many documents in several entries, each
/// naming its own. Without the setting (browsers, the `outpost` tool),
/// nothing is recorded.
#[test]
fn what_an_upstream_link_receives_is_recorded_in_its_commit() {
    use outpost::db::sha256_hex;
    use outpost::sync::driver::edge_storage;
    use outpost::sync::received::{AuditUpstream, HubLink};
    use outpost::sync::{EdgeAction, EdgeConfig, EdgeEvent};
    const CLOUD: DbId = DbId([0xC1; 16]);
    let db = open(Arc::new(MemoryStore::new()));
    let mut cfg = EdgeConfig::new("main", "boston", "");
    cfg.source = "upstream:boston".into();
    cfg.hub_link = Some(HubLink::new(
        "wss://cloud.example/sync database main as boston",
    ));
    let apply = |db: &Db, cfg: &EdgeConfig, docs: Vec<RemoteDoc>, upto: u64| {
        let action = EdgeAction::ApplyRemote {
            docs,
            upto,
            from: 0,
            hub_db_id: CLOUD,
        };
        let ev = block_on(edge_storage(db, cfg, &action));
        assert!(matches!(ev, Some(EdgeEvent::Applied)), "{ev:?}");
    };
    let upstream_entries = |db: &Db, from: u64| -> Vec<AuditUpstream> {
        block_on(db.snapshot().audit_entries(from, 1000))
            .unwrap()
            .iter()
            .map(|e| {
                assert_eq!(e.kind, AuditKind::Upstream);
                serde_json::from_slice(&e.payload).unwrap()
            })
            .collect()
    };
    // A version of notes/c written here, concurrent with the one that comes.
    block_on(db.put("notes/c", json!({"here": true}))).unwrap();
    let first = vec![
        doc("notes/a", &[(CLOUD, 1)], r#"{"a":1}"#),
        doc("notes/c", &[(CLOUD, 2)], r#"{"c":2}"#),
    ];
    apply(&db, &cfg, first.clone(), 2);
    // The same version again: already held, nothing written.
    apply(&db, &cfg, vec![first[0].clone()], 3);
    let recs = upstream_entries(&db, 1);
    assert_eq!(recs.len(), 2);
    let r = &recs[0];
    assert_eq!(
        (r.source.as_str(), r.link.as_str(), r.upto),
        (
            "upstream:boston",
            "wss://cloud.example/sync database main as boston",
            2
        )
    );
    assert_eq!(r.upstream_db, CLOUD.to_string());
    let held_a = block_on(db.get("notes/a")).unwrap().unwrap();
    let d = &r.docs[0];
    assert_eq!((d.id.as_str(), d.outcome.as_str()), ("notes/a", "applied"));
    // Stored as received: the version written is the one received, named
    // once.
    assert_eq!(
        d.versions[0].change_vector,
        held_a.meta.change_vector.to_text()
    );
    assert_eq!(d.change_vector, "");
    assert_eq!(d.collection.as_deref(), Some("Notes"));
    assert_eq!(
        d.versions[0].change_vector,
        first[0].versions[0].change_vector.to_text()
    );
    assert_eq!(d.versions[0].body_sha256, sha256_hex(br#"{"a":1}"#));
    let c = &r.docs[1];
    assert_eq!((c.id.as_str(), c.outcome.as_str()), ("notes/c", "conflict"));
    // A conflict: both versions kept, the received one current, so the
    // version written is the one received, named once.
    let held_c = block_on(db.get("notes/c")).unwrap().unwrap();
    assert_eq!(held_c.conflicts.len(), 1);
    assert_eq!(
        held_c.meta.change_vector.to_text(),
        c.versions[0].change_vector
    );
    assert_eq!(c.change_vector, "");
    let again = &recs[1].docs[0];
    assert_eq!(
        (again.outcome.as_str(), again.change_vector.as_str()),
        ("held", "")
    );

    // 45,000 documents in one batch: more than one entry's worth of record
    // (`AUDIT_CHUNK_BYTES`), so several entries, each naming the versions
    // written just before it, all in the batch's one commit.
    let n = 45_000u64;
    let many: Vec<RemoteDoc> = (0..n)
        .map(|i| doc(&format!("bulk/{i}"), &[(CLOUD, 10 + i)], "{}"))
        .collect();
    let before = count(&db);
    let etag = db.last_etag();
    apply(&db, &cfg, many, 10 + n);
    let recs = upstream_entries(&db, before + 1);
    assert!(recs.len() >= 2, "{} entries", recs.len());
    let ids: Vec<&str> = recs
        .iter()
        .flat_map(|r| r.docs.iter().map(|d| d.id.as_str()))
        .collect();
    let want: Vec<String> = (0..n).map(|i| format!("bulk/{i}")).collect();
    assert_eq!(ids, want);
    for (i, d) in recs.iter().flat_map(|r| r.docs.iter()).enumerate() {
        assert_eq!(d.outcome, "applied", "{}", d.id);
        assert_eq!(
            d.versions[0].change_vector,
            format!("{}:{}", CLOUD, 10 + i as u64),
            "{}",
            d.id
        );
    }
    // One commit: the documents took the etags right after the last one.
    assert_eq!(db.last_etag(), etag + n);
    assert!(
        block_on(db.snapshot().verify_audit_chain())
            .unwrap()
            .is_ok()
    );

    // Without the setting, the same batch records nothing.
    let plain = open(Arc::new(MemoryStore::new()));
    let mut edge = cfg.clone();
    edge.hub_link = None;
    apply(&plain, &edge, first, 2);
    assert!(block_on(plain.get("notes/a")).unwrap().is_some());
    assert_eq!(count(&plain), 0);
}
