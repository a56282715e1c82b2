//! Key identities and signed batches through the two real machines
//! (docs/protocol.md §2–§3): the handshake challenge and proof, the chain of
//! signed batches, and what the hub refuses — a proof from another session
//! or key, a replayed, reordered, truncated or re-signed batch — plus the
//! chain's compare-and-set in the commit (two sessions of one identity).
#![cfg(not(target_arch = "wasm32"))]

use std::sync::Arc;

use futures::executor::block_on;
use outpost::db::PurgeReport;
use outpost::keys::{KeyPair, P256Verifier, PublicKey, Signer, Verifier};
use outpost::store::MemoryStore;
use outpost::sync::driver::{batch_chain_key, hub_storage};
use outpost::sync::frame::{AuthMode, MAX_FRAME_BYTES};
use outpost::sync::purge::PurgeOrder;
use outpost::sync::signed::{BatchManifest, GENESIS, PurgeReceipt};
use outpost::sync::{
    EdgeAction, EdgeConfig, EdgeEvent, EdgePersisted, EdgeSession, Frame, Grant, HubAction,
    HubEvent, HubSession, WireDoc,
};
use outpost::{ChangeVector, Database, DbId, DocFlags, DocumentMeta, OpenOptions, RawVersion};
use outpost_testkit::machines::{self, closed_with, sent};

const EDGE: DbId = DbId([7; 16]);
const HUB: DbId = DbId([9; 16]);
const NONCE: [u8; 32] = [0x5A; 32];

fn grant() -> Grant {
    machines::grant(&["notes/"], &["notes/"])
}

fn hub(nonce: [u8; 32]) -> HubSession {
    HubSession::new(0).with_keys(Arc::new(P256Verifier), nonce)
}

fn edge(key: &KeyPair) -> EdgeSession {
    EdgeSession::new(
        EdgeConfig::with_key("main", "laptop", key.public_key().clone()),
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

fn bytes_of_edge(acts: &[EdgeAction]) -> Vec<Vec<u8>> {
    acts.iter()
        .filter_map(|a| match a {
            EdgeAction::Send(b) => Some(b.clone()),
            _ => None,
        })
        .collect()
}

fn to_sign(acts: &[EdgeAction]) -> Option<Vec<u8>> {
    acts.iter().find_map(|a| match a {
        EdgeAction::Sign(m) => Some(m.clone()),
        _ => None,
    })
}

/// Runs the handshake between a real edge machine signing with `signer` and
/// a hub machine whose lookup answers `expected`; returns the hub's actions
/// after the proof (an `Authenticate`, or a refusal).
fn handshake(
    h: &mut HubSession,
    e: &mut EdgeSession,
    signer: &KeyPair,
    expected: Option<PublicKey>,
) -> Vec<HubAction> {
    let hello = bytes_of_edge(&e.handle(EdgeEvent::Opened, 0)).remove(0);
    let a = h.handle(HubEvent::Received(&hello), 0);
    assert!(
        matches!(
            &a[..],
            [HubAction::Lookup {
                auth: AuthMode::Key,
                ..
            }]
        ),
        "{a:?}"
    );
    let a = h.handle(
        HubEvent::Challenge {
            hub_id: HUB,
            key: expected,
        },
        0,
    );
    let challenge = match sent(&a).remove(0) {
        f @ Frame::Challenge { .. } => f.encode(),
        other => panic!("{other:?}"),
    };
    let msg = to_sign(&e.handle(EdgeEvent::Received(&challenge), 0)).expect("signs the proof");
    let sig = signer.sign(&msg).unwrap();
    let proof = bytes_of_edge(&e.handle(EdgeEvent::Signed(sig), 0)).remove(0);
    h.handle(HubEvent::Received(&proof), 0)
}

fn authorize(h: &mut HubSession, head: (u64, [u8; 32])) -> Vec<u8> {
    authorize_with(h, head, None)
}

fn authorize_with(h: &mut HubSession, head: (u64, [u8; 32]), purge: Option<PurgeOrder>) -> Vec<u8> {
    let a = h.handle(
        HubEvent::Authorized {
            grant: grant(),
            hub_db_id: HUB,
            hub_last_etag: 0,
            push_checkpoint: 0,
            pending: 0,
            pull_from: 0,
            batch_head: head,
            purge: purge.clone(),
            resync: None,
        },
        0,
    );
    let frames = sent(&a);
    if let Some(o) = purge {
        // The order follows the Welcome at once.
        assert!(
            matches!(&frames[..], [Frame::Welcome { .. }, Frame::Purge { order, .. }, ..] if *order == o.order),
            "{frames:?}"
        );
    }
    frames
        .into_iter()
        .find(|f| matches!(f, Frame::Welcome { .. }))
        .expect("a Welcome")
        .encode()
}

#[test]
fn a_proof_under_the_enrolled_key_opens_the_session() {
    let key = KeyPair::generate().unwrap();
    let (mut h, mut e) = (hub(NONCE), edge(&key));
    let a = handshake(&mut h, &mut e, &key, Some(key.public_key().clone()));
    match &a[..] {
        [HubAction::Authenticate { key: k, auth, .. }] => {
            assert_eq!(k.as_ref(), Some(key.public_key()));
            assert_eq!(*auth, AuthMode::Key);
        }
        other => panic!("{other:?}"),
    }
    assert!(h.identity().is_none(), "not open before Authorized");
}

#[test]
fn a_wrong_key_an_unknown_identity_and_a_replayed_proof_are_refused_alike() {
    let key = KeyPair::generate().unwrap();
    let other = KeyPair::generate().unwrap();
    // Signed by another key than the enrolled one.
    let a = handshake(
        &mut hub(NONCE),
        &mut edge(&key),
        &other,
        Some(key.public_key().clone()),
    );
    assert!(closed_with(&a, "unauthorized"), "{a:?}");
    let wrong_key = sent(&a);
    // Unknown identity (nothing to verify under): the same answer.
    let a = handshake(&mut hub(NONCE), &mut edge(&key), &key, None);
    assert!(closed_with(&a, "unauthorized"));
    assert_eq!(sent(&a), wrong_key, "the answers must not differ");
    // The edge claims a key other than the enrolled one (and proves it).
    let a = handshake(
        &mut hub(NONCE),
        &mut edge(&other),
        &other,
        Some(key.public_key().clone()),
    );
    assert!(closed_with(&a, "unauthorized"));
    // A proof made for one session (nonce) replayed in another.
    let mut h1 = hub(NONCE);
    let mut e1 = edge(&key);
    let hello = bytes_of_edge(&e1.handle(EdgeEvent::Opened, 0)).remove(0);
    h1.handle(HubEvent::Received(&hello), 0);
    let a = h1.handle(
        HubEvent::Challenge {
            hub_id: HUB,
            key: Some(key.public_key().clone()),
        },
        0,
    );
    let ch = sent(&a).remove(0).encode();
    let msg = to_sign(&e1.handle(EdgeEvent::Received(&ch), 0)).unwrap();
    let proof = Frame::Proof {
        signature: key.sign(&msg).unwrap(),
    }
    .encode();
    let mut h2 = hub([0x11; 32]);
    h2.handle(HubEvent::Received(&hello), 0);
    h2.handle(
        HubEvent::Challenge {
            hub_id: HUB,
            key: Some(key.public_key().clone()),
        },
        0,
    );
    let a = h2.handle(HubEvent::Received(&proof), 0);
    assert!(closed_with(&a, "unauthorized"), "a replayed proof: {a:?}");
    // The same proof for another hub database id.
    let mut h3 = hub(NONCE);
    h3.handle(HubEvent::Received(&hello), 0);
    h3.handle(
        HubEvent::Challenge {
            hub_id: DbId([1; 16]),
            key: Some(key.public_key().clone()),
        },
        0,
    );
    let a = h3.handle(HubEvent::Received(&proof), 0);
    assert!(
        closed_with(&a, "unauthorized"),
        "another hub's proof: {a:?}"
    );
    // Nothing but the handshake before it: a Push is a protocol error.
    let mut h4 = hub(NONCE);
    h4.handle(HubEvent::Received(&hello), 0);
    let push = Frame::Push {
        upto: 1,
        seq: 1,
        prev: GENESIS,
        signature: vec![0; 64],
        docs: vec![],
    }
    .encode();
    let a = h4.handle(HubEvent::Received(&push), 0);
    assert!(closed_with(&a, "protocol"), "{a:?}");
}

fn local_doc(id: &str, etag: u64) -> outpost::doc::RawDoc {
    let cv = ChangeVector::new().with(EDGE, etag);
    outpost::doc::RawDoc {
        id: id.into(),
        meta: DocumentMeta {
            collection: None,
            change_vector: cv.clone(),
            etag,
            last_modified_ms: 0,
            flags: DocFlags::default(),
            source: None,
        },
        versions: vec![RawVersion {
            change_vector: cv,
            last_modified_ms: 0,
            deleted: false,
            body: format!("{{\"n\":{etag}}}").into_bytes(),
        }],
    }
}

/// An open key session on both sides; the edge pushes one local document
/// per call to [`push_one`].
struct Pair {
    h: HubSession,
    e: EdgeSession,
    key: KeyPair,
}

fn open_pair(head: (u64, [u8; 32])) -> Pair {
    let key = KeyPair::generate().unwrap();
    let (mut h, mut e) = (hub(NONCE), edge(&key));
    let a = handshake(&mut h, &mut e, &key, Some(key.public_key().clone()));
    assert!(matches!(a[..], [HubAction::Authenticate { .. }]));
    let welcome = authorize(&mut h, head);
    e.handle(EdgeEvent::Received(&welcome), 0);
    Pair { h, e, key }
}

/// The edge reads one local document and signs its batch: the Push bytes.
fn signed_push(p: &mut Pair, etag: u64) -> Vec<u8> {
    let a = p.e.handle(
        EdgeEvent::LocalRead {
            docs: vec![local_doc(&format!("notes/{etag}"), etag)],
            complete: true,
        },
        0,
    );
    let msg = to_sign(&a).expect("a batch to sign");
    let sig = p.key.sign(&msg).unwrap();
    bytes_of_edge(&p.e.handle(EdgeEvent::Signed(sig), 0)).remove(0)
}

fn applied(p: &mut Pair, push: &[u8]) -> (u64, [u8; 32]) {
    let a = p.h.handle(HubEvent::Received(push), 0);
    let (manifest, signed) = a
        .iter()
        .find_map(|x| match x {
            HubAction::ApplyPush {
                manifest, signed, ..
            } => Some((manifest.clone(), signed.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("not applied: {a:?}"));
    assert!(signed.is_some());
    let a = p.h.handle(
        HubEvent::PushApplied {
            applied: 1,
            conflicts: 0,
            resolved: 0,
            last_etag: 1,
        },
        0,
    );
    let ack = sent(&a)
        .into_iter()
        .find(|f| matches!(f, Frame::PushAck { .. }))
        .unwrap()
        .encode();
    p.e.handle(EdgeEvent::Received(&ack), 0);
    (manifest.seq, manifest.hash())
}

#[test]
fn signed_batches_chain_and_replays_reorders_and_forgeries_are_refused() {
    let mut p = open_pair((0, GENESIS));
    // The edge asks to read its feed after the Welcome; answer with batches.
    let first = signed_push(&mut p, 1);
    let (seq, _) = applied(&mut p, &first);
    assert_eq!(seq, 1);
    let second = signed_push(&mut p, 2);
    assert_eq!(applied(&mut p, &second).0, 2);
    // Replaying the first batch in the same session.
    let a = p.h.handle(HubEvent::Received(&first), 0);
    assert!(closed_with(&a, "batch_sequence"), "{a:?}");
    assert!(
        a.iter().any(
            |x| matches!(x, HubAction::RecordRefusal { code, .. } if code == "batch_sequence")
        )
    );

    // A new session told the head (2, h2): a replay of batch 2 is refused,
    // and so is a batch that skips a number.
    let mut p = open_pair((2, [3; 32]));
    let a = p.h.handle(HubEvent::Received(&second), 0);
    assert!(closed_with(&a, "batch_sequence"));
    let mut p2 = open_pair((0, GENESIS));
    let f = Frame::decode(&signed_push(&mut p2, 1), MAX_FRAME_BYTES).unwrap();
    let Frame::Push {
        upto,
        prev,
        signature,
        docs,
        ..
    } = f
    else {
        panic!()
    };
    let skip = Frame::Push {
        upto,
        seq: 2,
        prev,
        signature: signature.clone(),
        docs: docs.clone(),
    }
    .encode();
    let mut p3 = open_pair((0, GENESIS));
    assert!(closed_with(
        &p3.h.handle(HubEvent::Received(&skip), 0),
        "batch_sequence"
    ));

    // Truncated after signing: a document removed.
    let mut p4 = open_pair((0, GENESIS));
    let truncated = Frame::Push {
        upto,
        seq: 1,
        prev,
        signature: signature.clone(),
        docs: vec![],
    }
    .encode();
    let a = p4.h.handle(HubEvent::Received(&truncated), 0);
    assert!(closed_with(&a, "bad_signature"), "{a:?}");
    // Re-signed by another key (the session's key is p5's).
    let mut p5 = open_pair((0, GENESIS));
    let other = KeyPair::generate().unwrap();
    let m = BatchManifest::of(EDGE, 1, GENESIS, upto, &docs);
    let resigned = Frame::Push {
        upto,
        seq: 1,
        prev,
        signature: other.sign(&m.message()).unwrap(),
        docs: docs.clone(),
    }
    .encode();
    assert!(closed_with(
        &p5.h.handle(HubEvent::Received(&resigned), 0),
        "bad_signature"
    ));
    // Signed over another encoding (the frame's bytes), by the right key.
    let mut p6 = open_pair((0, GENESIS));
    let mut body = Frame::Push {
        upto,
        seq: 1,
        prev,
        signature: vec![],
        docs: docs.clone(),
    }
    .encode();
    let sig = p6.key.sign(&body).unwrap();
    body = Frame::Push {
        upto,
        seq: 1,
        prev,
        signature: sig,
        docs: docs.clone(),
    }
    .encode();
    assert!(closed_with(
        &p6.h.handle(HubEvent::Received(&body), 0),
        "bad_signature"
    ));
    // The same batch honestly signed by the session's key is accepted.
    let mut p8 = open_pair((0, GENESIS));
    let m8 = BatchManifest::of(EDGE, 1, GENESIS, upto, &[]);
    let ok = Frame::Push {
        upto,
        seq: 1,
        prev: GENESIS,
        signature: p8.key.sign(&m8.message()).unwrap(),
        docs: vec![],
    }
    .encode();
    let a = p8.h.handle(HubEvent::Received(&ok), 0);
    assert!(
        a.iter().any(|x| matches!(x, HubAction::ApplyPush { .. })),
        "{a:?}"
    );
}

#[test]
fn the_commit_refuses_a_batch_whose_place_in_the_chain_was_taken() {
    block_on(async {
        let db = Database::open(MemoryStore::new(), OpenOptions::default())
            .await
            .unwrap();
        let key = KeyPair::generate().unwrap();
        let apply = |seq: u64, prev: [u8; 32], id: &str| {
            let wire = WireDoc {
                id: id.into(),
                collection: None,
                versions: vec![RawVersion {
                    change_vector: ChangeVector::new().with(EDGE, seq),
                    last_modified_ms: 0,
                    deleted: false,
                    body: b"{}".to_vec(),
                }],
            };
            let manifest = BatchManifest::of(EDGE, seq, prev, seq, std::slice::from_ref(&wire));
            let sig = key.sign(&manifest.message()).unwrap();
            let g = grant();
            HubAction::ApplyPush {
                edge_db_id: EDGE,
                upto: seq,
                docs: vec![(wire.into_remote(Some(g.source_for(&EDGE))), true)],
                guard: Arc::new(outpost::PushGuard {
                    owner: "edge:laptop".into(),
                    device: EDGE,
                    source: g.source_for(&EDGE),
                    seen_upto: 0,
                    policies: Default::default(),
                    relay: false,
                }),
                manifest,
                signed: Some((key.public_key().clone(), sig)),
            }
        };
        let first = apply(1, GENESIS, "notes/a");
        let HubAction::ApplyPush { manifest, .. } = &first else {
            panic!()
        };
        let h1 = manifest.hash();
        let ev = hub_storage(&db, "laptop", &first, |_| {}).await;
        assert!(matches!(ev, Some(HubEvent::PushApplied { .. })), "{ev:?}");
        // A second session of the identity, also at head 0, pushes its own
        // batch 1: refused in the commit, nothing of it stored.
        let ev = hub_storage(&db, "laptop", &apply(1, GENESIS, "notes/b"), |_| {}).await;
        assert!(
            matches!(&ev, Some(HubEvent::PushRefused(r)) if r.code() == "batch_sequence"),
            "{ev:?}"
        );
        assert!(db.get("notes/b").await.unwrap().is_none());
        // Batch 2 after batch 1 is taken.
        let ev = hub_storage(&db, "laptop", &apply(2, h1, "notes/c"), |_| {}).await;
        assert!(matches!(ev, Some(HubEvent::PushApplied { .. })), "{ev:?}");
        let head = db
            .snapshot()
            .get_local(&batch_chain_key("laptop"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&head[..8], &2u64.to_le_bytes());
        // The audit entries carry the key, the signature and the link, and
        // verify from the record alone.
        let entries = db.audit_entries(0, 100).await.unwrap();
        let pushes: Vec<outpost::db::AuditPush> = entries
            .iter()
            .filter(|e| e.kind == outpost::AuditKind::PushAccepted)
            .map(|e| serde_json::from_slice(&e.payload).unwrap())
            .collect();
        assert_eq!(pushes.len(), 2);
        for a in &pushes {
            let (m, k, sig) = BatchManifest::from_audit(a).unwrap().unwrap();
            assert_eq!(&k, key.public_key());
            assert!(P256Verifier.verify(&k, &m.message(), &sig));
        }
        assert_eq!(pushes[1].prev, outpost::codec::to_hex(&h1));
    });
}

/// What signing costs per batch (a measurement, not a check: run with
/// `cargo test --release -p outpost --features testing --test sync_keys --
/// --ignored --nocapture signing_cost`): the edge's manifest hash and
/// signature, the hub's manifest hash and verification, for a full batch of
/// 500 documents of ~200-byte bodies.
#[test]
#[ignore = "a measurement; prints its figures"]
fn signing_cost() {
    use std::time::Instant;
    let key = KeyPair::generate().unwrap();
    let docs: Vec<WireDoc> = (0..500u64)
        .map(|i| WireDoc {
            id: format!("notes/{i:06}"),
            collection: Some("Notes".into()),
            versions: vec![RawVersion {
                change_vector: ChangeVector::new().with(EDGE, i + 1),
                last_modified_ms: 0,
                deleted: false,
                body: format!(
                    "{{\"title\":\"note {i}\",\"text\":\"{}\"}}",
                    "x".repeat(170)
                )
                .into_bytes(),
            }],
        })
        .collect();
    let rounds = 50u32;
    let t = Instant::now();
    let mut sig = Vec::new();
    for seq in 1..=u64::from(rounds) {
        let m = BatchManifest::of(EDGE, seq, GENESIS, seq, &docs);
        sig = key.sign(&m.message()).unwrap();
    }
    let edge = t.elapsed() / rounds;
    let t = Instant::now();
    let mut ok = true;
    for _ in 0..rounds {
        let m = BatchManifest::of(EDGE, u64::from(rounds), GENESIS, u64::from(rounds), &docs);
        ok &= P256Verifier.verify(key.public_key(), &m.message(), &sig);
    }
    let hub = t.elapsed() / rounds;
    assert!(ok);
    let t = Instant::now();
    for _ in 0..rounds {
        let _ = key.sign(b"x").unwrap();
    }
    let sign_only = t.elapsed() / rounds;
    eprintln!(
        "500-document batch (~200-byte bodies): edge manifest + sign {edge:?}, hub manifest + verify {hub:?}; one signature alone {sign_only:?}"
    );
}

fn order(n: u64, reason: &str) -> PurgeOrder {
    PurgeOrder {
        order: n,
        reason: reason.into(),
        prefixes: vec!["notes/".into()],
        keep: if reason == "revoked" {
            vec![]
        } else {
            vec!["notes/mine/".into()]
        },
        ids: vec![],
        markers: vec![],
    }
}

fn report(removed: u64) -> PurgeReport {
    PurgeReport {
        removed,
        ids_hash: [0xEE; 32],
        pages_erased: 0,
        pages_deferred: 0,
    }
}

/// The edge's side of an order: erase, report, sign; returns the receipt
/// frame's bytes and what the edge reported.
fn edge_answers(
    e: &mut EdgeSession,
    key: &KeyPair,
    purge: &[u8],
    removed: u64,
) -> (Vec<u8>, Vec<EdgeAction>) {
    let a = e.handle(EdgeEvent::Received(purge), 0);
    let o = a
        .iter()
        .find_map(|a| match a {
            EdgeAction::Purge { order } => Some(order.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("the edge erases at once: {a:?}"));
    let a = e.handle(EdgeEvent::PurgeDone(report(removed)), 0);
    assert!(
        a.iter().any(|x| matches!(x, EdgeAction::Purged { order, removed: r, .. } if *order == o.order && *r == removed)),
        "{a:?}"
    );
    let msg = to_sign(&a).expect("the receipt is signed");
    let sig = key.sign(&msg).unwrap();
    let sent = bytes_of_edge(&e.handle(EdgeEvent::Signed(sig), 0));
    let receipt = sent
        .into_iter()
        .find(|b| b[0] == 15)
        .expect("a PurgeReceipt goes out");
    (receipt, a)
}

fn recorded(acts: &[HubAction]) -> Option<(PurgeReceipt, bool)> {
    acts.iter().find_map(|a| match a {
        HubAction::RecordPurgeReceipt { receipt, signed } => {
            Some((receipt.clone(), signed.is_some()))
        }
        _ => None,
    })
}

#[test]
fn a_narrowed_edge_erases_and_its_signed_receipt_is_recorded() {
    let key = KeyPair::generate().unwrap();
    let (mut h, mut e) = (hub(NONCE), edge(&key));
    handshake(&mut h, &mut e, &key, Some(key.public_key().clone()));
    let welcome = authorize_with(&mut h, (0, GENESIS), Some(order(3, "narrowed")));
    e.handle(EdgeEvent::Received(&welcome), 0);
    // The edge read its (empty) feed: no push under way.
    e.handle(
        EdgeEvent::LocalRead {
            docs: vec![],
            complete: true,
        },
        0,
    );
    let purge = Frame::Purge {
        order: 3,
        reason: "narrowed".into(),
        prefixes: vec!["notes/".into()],
        keep: vec!["notes/mine/".into()],
        ids: vec![],
    }
    .encode();
    let (receipt, _) = edge_answers(&mut e, &key, &purge, 12);
    let a = h.handle(HubEvent::Received(&receipt), 0);
    let (r, signed) = recorded(&a).expect("recorded");
    assert!(signed);
    assert_eq!((r.order, r.removed, r.hub_id, r.device), (3, 12, HUB, EDGE));
    assert_eq!(r.keep, vec!["notes/mine/".to_string()]);
    assert!(P256Verifier.verify(key.public_key(), &r.message(), &{
        match Frame::decode(&receipt, MAX_FRAME_BYTES).unwrap() {
            Frame::PurgeReceipt { signature, .. } => signature,
            f => panic!("{f:?}"),
        }
    }));
    assert!(!closed_with(&a, "protocol"));
    // A second receipt (a replay) answers no order: refused.
    let a = h.handle(HubEvent::Received(&receipt), 0);
    assert!(closed_with(&a, "protocol"), "{a:?}");
    assert!(recorded(&a).is_none());
}

#[test]
fn a_forged_or_misdirected_receipt_is_refused() {
    let key = KeyPair::generate().unwrap();
    let thief = KeyPair::generate().unwrap();
    // Signed by another key.
    let (mut h, mut e) = (hub(NONCE), edge(&key));
    handshake(&mut h, &mut e, &key, Some(key.public_key().clone()));
    authorize_with(&mut h, (0, GENESIS), Some(order(1, "narrowed")));
    let r = PurgeReceipt {
        hub_id: HUB,
        device: EDGE,
        order: 1,
        reason: "narrowed".into(),
        prefixes: vec!["notes/".into()],
        keep: vec!["notes/mine/".into()],
        order_ids: None,
        removed: 0,
        ids_hash: [0; 32],
    };
    let forged = Frame::PurgeReceipt {
        order: 1,
        removed: 0,
        ids_hash: [0; 32],
        signature: thief.sign(&r.message()).unwrap(),
    }
    .encode();
    let a = h.handle(HubEvent::Received(&forged), 0);
    assert!(closed_with(&a, "bad_signature"), "{a:?}");
    assert!(recorded(&a).is_none());
    // Signed by the right key over other numbers than it claims.
    let (mut h, mut e) = (hub(NONCE), edge(&key));
    handshake(&mut h, &mut e, &key, Some(key.public_key().clone()));
    authorize_with(&mut h, (0, GENESIS), Some(order(1, "narrowed")));
    let lying = Frame::PurgeReceipt {
        order: 1,
        removed: 99,
        ids_hash: [0; 32],
        signature: key.sign(&r.message()).unwrap(),
    }
    .encode();
    let a = h.handle(HubEvent::Received(&lying), 0);
    assert!(closed_with(&a, "bad_signature"), "{a:?}");
    // For another order than the one sent.
    let (mut h, mut e) = (hub(NONCE), edge(&key));
    handshake(&mut h, &mut e, &key, Some(key.public_key().clone()));
    authorize_with(&mut h, (0, GENESIS), Some(order(2, "narrowed")));
    let a = h.handle(HubEvent::Received(&forged), 0);
    assert!(closed_with(&a, "protocol"), "{a:?}");
    // With no order sent at all.
    let (mut h, mut e) = (hub(NONCE), edge(&key));
    handshake(&mut h, &mut e, &key, Some(key.public_key().clone()));
    authorize(&mut h, (0, GENESIS));
    let a = h.handle(HubEvent::Received(&forged), 0);
    assert!(closed_with(&a, "protocol"), "{a:?}");
}

#[test]
fn a_revoked_identity_erases_then_is_refused() {
    let key = KeyPair::generate().unwrap();
    let (mut h, mut e) = (hub(NONCE), edge(&key));
    handshake(&mut h, &mut e, &key, Some(key.public_key().clone()));
    let a = h.handle(
        HubEvent::RevokedPurge {
            hub_db_id: HUB,
            order: order(5, "revoked"),
            message: "identity laptop is revoked".into(),
        },
        0,
    );
    let frames = sent(&a);
    assert!(
        matches!(&frames[..], [Frame::Purge { order: 5, reason, keep, .. }] if reason == "revoked" && keep.is_empty()),
        "no Welcome, only the order: {frames:?}"
    );
    // Nothing but the receipt is accepted.
    let mut h2 = hub(NONCE);
    let mut e2 = edge(&key);
    handshake(&mut h2, &mut e2, &key, Some(key.public_key().clone()));
    h2.handle(
        HubEvent::RevokedPurge {
            hub_db_id: HUB,
            order: order(5, "revoked"),
            message: "revoked".into(),
        },
        0,
    );
    let push = Frame::Push {
        upto: 1,
        seq: 1,
        prev: GENESIS,
        signature: vec![],
        docs: vec![],
    }
    .encode();
    // A push sent before the edge read the order is not acted on...
    let a = h2.handle(HubEvent::Received(&push), 0);
    assert!(
        !a.iter()
            .any(|x| matches!(x, HubAction::ApplyPush { .. } | HubAction::Send(_))),
        "{a:?}"
    );
    // ... and anything but the receipt, a Ping or those ends the session.
    let live = Frame::Live { upto: 1 }.encode();
    assert!(closed_with(
        &h2.handle(HubEvent::Received(&live), 0),
        "protocol"
    ));
    // The edge (in its handshake: no Welcome came) erases at once.
    let (receipt, _) = edge_answers(&mut e, &key, &frames[0].encode(), 4);
    let a = h.handle(HubEvent::Received(&receipt), 0);
    let (r, signed) = recorded(&a).expect("recorded");
    assert!(signed && r.order == 5 && r.removed == 4 && r.hub_id == HUB);
    assert!(closed_with(&a, "revoked"), "{a:?}");
    // The edge hears Error(revoked): fatal.
    let err = sent(&a)
        .into_iter()
        .find(|f| matches!(f, Frame::Error { .. }))
        .unwrap()
        .encode();
    let a = e.handle(EdgeEvent::Received(&err), 0);
    assert!(
        a.iter()
            .any(|x| matches!(x, EdgeAction::Close { fatal: true, code, .. } if code == "revoked"))
    );
    // A revoked edge that never answers is cut off.
    let mut h3 = hub(NONCE);
    let mut e3 = edge(&key);
    handshake(&mut h3, &mut e3, &key, Some(key.public_key().clone()));
    h3.handle(
        HubEvent::RevokedPurge {
            hub_db_id: HUB,
            order: order(5, "revoked"),
            message: "revoked".into(),
        },
        0,
    );
    let ping = Frame::Ping { nonce: 1 }.encode();
    h3.handle(HubEvent::Received(&ping), 30_000);
    let a = h3.handle(HubEvent::Tick, 50_000);
    assert!(closed_with(&a, "timeout"), "{a:?}");
}

#[test]
fn an_order_waits_for_the_push_under_way() {
    let key = KeyPair::generate().unwrap();
    let (mut h, mut e) = (hub(NONCE), edge(&key));
    handshake(&mut h, &mut e, &key, Some(key.public_key().clone()));
    let welcome = authorize(&mut h, (0, GENESIS));
    let a = e.handle(EdgeEvent::Received(&welcome), 0);
    assert!(a.iter().any(|x| matches!(x, EdgeAction::ReadLocal { .. })));
    let purge = Frame::Purge {
        order: 1,
        reason: "narrowed".into(),
        prefixes: vec!["notes/".into()],
        keep: vec![],
        ids: vec![],
    }
    .encode();
    // The edge is reading its feed to push: the erasure waits.
    let a = e.handle(EdgeEvent::Received(&purge), 0);
    assert!(
        !a.iter().any(|x| matches!(x, EdgeAction::Purge { .. })),
        "{a:?}"
    );
    let a = e.handle(
        EdgeEvent::LocalRead {
            docs: vec![],
            complete: true,
        },
        0,
    );
    assert!(
        a.iter().any(|x| matches!(x, EdgeAction::Purge { .. })),
        "{a:?}"
    );
    // While it erases, a local write does not start a push.
    let a = e.handle(EdgeEvent::LocalChanged, 0);
    assert!(
        !a.iter()
            .any(|x| matches!(x, EdgeAction::ReadLocal { .. } | EdgeAction::Sign(_))),
        "{a:?}"
    );
    let a = e.handle(EdgeEvent::PurgeDone(report(0)), 0);
    let sig = key.sign(&to_sign(&a).unwrap()).unwrap();
    // Once the receipt is out, the write is pushed.
    let a = e.handle(EdgeEvent::Signed(sig), 0);
    assert!(bytes_of_edge(&a).iter().any(|b| b[0] == 15));
    assert!(
        a.iter().any(|x| matches!(x, EdgeAction::ReadLocal { .. })),
        "{a:?}"
    );
}
