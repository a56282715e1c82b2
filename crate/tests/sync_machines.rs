//! The replication state machines without a network: handshake, flow
//! control, heartbeats, and hostile frames at the hub (every one answered
//! with a typed error, nothing stored, the session closed).
#![cfg(not(target_arch = "wasm32"))]

use std::collections::HashMap;

use outpost::doc::{RawDoc, RawVersion};
use outpost::sync::feed::FeedPage;
use outpost::sync::frame::{AuthMode, MAX_FRAME_BYTES};
use outpost::sync::hub::WINDOW;
use outpost::sync::{
    ConflictPolicy, EdgeAction, EdgeConfig, EdgeEvent, EdgePersisted, EdgeSession, Frame, Grant,
    HubAction, HubEvent, HubMetric, HubSession, Prefixes, RejectReason, SyncStatus, Violation,
    WireDoc, WireGrant,
};
use outpost::{ChangeVector, DbId, DocFlags, DocumentMeta};

const HUB: DbId = DbId([9; 16]);
const EDGE: DbId = DbId([1; 16]);

fn grant() -> Grant {
    Grant {
        identity: "laptop".into(),
        read: Prefixes::parse(&["notes/".into()]).unwrap(),
        write: Prefixes::parse(&["notes/".into()]).unwrap(),
        relay: false,
        policies: HashMap::new(),
        default_policy: ConflictPolicy::Latest,
        never_delete: Vec::new(),
        hub_outputs: Vec::new(),
    }
}

fn hello() -> Vec<u8> {
    Frame::Hello {
        min_version: 5,
        max_version: 5,
        db_id: EDGE,
        database: "main".into(),
        identity: "laptop".into(),
        credential: "t".into(),
        pull_checkpoint: 0,
        checkpoint_hub: DbId([0; 16]),
        auth: AuthMode::Token,
        key: Vec::new(),
    }
    .encode()
}

fn sent(acts: &[HubAction]) -> Vec<Frame> {
    acts.iter()
        .filter_map(|a| match a {
            HubAction::Send(b) => Some(Frame::decode(b, MAX_FRAME_BYTES).unwrap()),
            _ => None,
        })
        .collect()
}

fn closed_with(acts: &[HubAction], code: &str) -> bool {
    acts.iter()
        .any(|a| matches!(a, HubAction::Close { code: c, .. } if c == code))
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

#[test]
fn hostile_pushes_are_rejected_whole_with_the_rule_named() {
    let ok = || ChangeVector::new().with(EDGE, 3);
    let cases: Vec<(Vec<WireDoc>, &str, &str)> = vec![
        (vec![wire("other/x", ok(), "{}")], "write_denied", "other/x"),
        (
            vec![wire("NOTES2/x", ok(), "{}")],
            "write_denied",
            "NOTES2/x",
        ),
        (
            vec![wire("notes/../secret", ok(), "{}")],
            "invalid_id",
            "notes/../secret",
        ),
        (vec![wire("notes//x", ok(), "{}")], "invalid_id", "notes//x"),
        (vec![wire("notes/x/", ok(), "{}")], "invalid_id", "notes/x/"),
        (
            vec![wire("notes/a", ok(), "{}"), wire("Notes/A", ok(), "{}")],
            "duplicate_id",
            "Notes/A",
        ),
        (
            vec![wire("notes/a", ok(), "[1,2]")],
            "invalid_document",
            "notes/a",
        ),
        (
            vec![wire("notes/a", ok(), "{\"a\":")],
            "invalid_document",
            "notes/a",
        ),
        (
            vec![wire("notes/a", ChangeVector::new(), "{}")],
            "invalid_change_vector",
            "notes/a",
        ),
        (
            vec![wire("notes/a", ok().with(HUB, 101), "{}")],
            "forged_change_vector",
            "notes/a",
        ),
        // One bad document refuses the good ones with it.
        (
            vec![
                wire("notes/good", ok(), "{}"),
                wire("etc/passwd", ok(), "{}"),
            ],
            "write_denied",
            "etc/passwd",
        ),
    ];
    for (docs, code, id) in cases {
        let mut h = open_hub();
        let a = h.handle(HubEvent::Received(&push(docs)), 0);
        assert!(
            !a.iter().any(|x| matches!(x, HubAction::ApplyPush { .. })),
            "{code}: something would be stored"
        );
        assert_eq!(rejected(&a), Some((code.to_string(), id.to_string())));
        // The session goes on: a good batch is then accepted.
        let a = h.handle(
            HubEvent::Received(&push(vec![wire("notes/ok", ok(), "{}")])),
            0,
        );
        assert!(a.iter().any(|x| matches!(x, HubAction::ApplyPush { .. })));
    }
    // A claim of hub history this edge was sent is fine.
    let mut h = open_hub_from(100);
    let a = h.handle(
        HubEvent::Received(&push(vec![wire("notes/a", ok().with(HUB, 100), "{}")])),
        0,
    );
    assert!(a.iter().any(|x| matches!(x, HubAction::ApplyPush { .. })));
}

/// The refusal names the exact rule broken (a typed `Violation`, also counted
/// as a metric), while the wire keeps its code, rule and message texts.
#[test]
fn a_refusal_names_the_exact_rule_and_keeps_the_wire_texts() {
    let ok = || ChangeVector::new().with(EDGE, 3);
    let cases: Vec<(WireDoc, Violation, &str, &str)> = vec![
        (
            wire("notes/a", ok(), "[1,2]"),
            Violation::BodyNotObject {
                id: "notes/a".into(),
            },
            "bodies are JSON objects of at most 16777216 bytes",
            "the body is not a JSON object or is too large",
        ),
        (
            wire("notes/f", ok().with(HUB, 101), "{}"),
            Violation::ForgedChangeVector {
                id: "notes/f".into(),
                claimed: 101,
                seen_upto: 0,
            },
            "a change vector may not claim hub history the hub has not written",
            "claims hub etag 101; this edge was sent the hub's changes up to 0",
        ),
    ];
    for (doc, want, rule_text, message_text) in cases {
        let mut h = open_hub();
        let a = h.handle(HubEvent::Received(&push(vec![doc])), 0);
        let counted: Vec<&Violation> = a
            .iter()
            .filter_map(|x| match x {
                HubAction::Metric(HubMetric::Rejected(RejectReason::Violation(v))) => Some(v),
                _ => None,
            })
            .collect();
        assert_eq!(counted, vec![&want]);
        let frame = sent(&a).into_iter().find_map(|f| match f {
            Frame::PushRejected {
                code,
                id,
                rule,
                message,
                ..
            } => Some((code, id, rule, message)),
            _ => None,
        });
        assert_eq!(
            frame,
            Some((
                want.code().to_string(),
                want.id().to_string(),
                rule_text.to_string(),
                message_text.to_string()
            ))
        );
    }
}

#[test]
fn protocol_violations_end_the_session_with_a_typed_error() {
    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff],
        vec![3, 1, 2],
        Frame::Welcome {
            version: 5,
            hub_db_id: HUB,
            push_checkpoint: 0,
            hub_last_etag: 0,
            pending: 0,
            max_frame_bytes: 0,
            heartbeat_ms: 0,
            grant: None,
            batch_seq: 0,
            batch_head: [0; 32],
        }
        .encode(),
        Frame::ChangesAck { upto: 77 }.encode(),
        {
            let mut b = hello();
            b.push(0);
            b
        },
    ];
    for g in garbage {
        let mut h = open_hub();
        let a = h.handle(HubEvent::Received(&g), 0);
        assert!(closed_with(&a, "protocol"), "{g:?}: {a:?}");
        assert!(matches!(sent(&a).last(), Some(Frame::Error { .. })));
        assert!(h.is_closed());
    }
    // Before the handshake, anything but Hello is refused.
    let mut h = HubSession::new(0);
    let a = h.handle(HubEvent::Received(&push(vec![])), 0);
    assert!(closed_with(&a, "protocol"));
    // A second Push before the first is acknowledged.
    let mut h = open_hub();
    let d = || vec![wire("notes/a", ChangeVector::new().with(EDGE, 1), "{}")];
    h.handle(HubEvent::Received(&push(d())), 0);
    let a = h.handle(HubEvent::Received(&push(d())), 0);
    assert!(closed_with(&a, "protocol"));
    // Unsupported version, and a refused credential.
    let mut h = HubSession::new(0);
    let mut b = hello();
    b[5] = 10; // min version 10
    b[7] = 11;
    let a = h.handle(HubEvent::Received(&b), 0);
    assert!(closed_with(&a, "unsupported_version"));
    // ... also when the rest of that Hello has another layout.
    let mut h = HubSession::new(0);
    b.extend_from_slice(&[1, 2, 3]);
    let a = h.handle(HubEvent::Received(&b), 0);
    assert!(closed_with(&a, "unsupported_version"), "{a:?}");
    let mut h = HubSession::new(0);
    h.handle(HubEvent::Received(&hello()), 0);
    let a = h.handle(HubEvent::Unauthorized, 0);
    assert!(closed_with(&a, "unauthorized"));
    // Oversized frames.
    let mut h = open_hub();
    let big = vec![6u8; MAX_FRAME_BYTES + 1];
    let a = h.handle(HubEvent::Received(&big), 0);
    assert!(closed_with(&a, "protocol"));
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

/// What a hub session of protocol `version` sends of a page holding a
/// plain document, an output of an index the hub shares (`WardCensus`), one
/// of an index it keeps (`MonthlyStatus`), and a shared output outside the
/// read prefixes: ids of the documents sent.
fn sent_of_outputs(version: u16) -> Vec<String> {
    let mut h = HubSession::new(0);
    let mut hello = Frame::decode(&hello(), MAX_FRAME_BYTES).unwrap();
    if let Frame::Hello { max_version, .. } = &mut hello {
        *max_version = version;
    }
    h.handle(HubEvent::Received(&hello.encode()), 0);
    let mut g = grant();
    g.read = Prefixes::parse(&[
        "notes/".into(),
        "wardcensus/".into(),
        "monthlystatus/".into(),
    ])
    .unwrap();
    g.hub_outputs = vec!["WardCensus".into()];
    let a = h.handle(
        HubEvent::Authorized {
            grant: g,
            hub_db_id: HUB,
            hub_last_etag: 4,
            push_checkpoint: 0,
            pending: 0,
            pull_from: 0,
            batch_head: (0, [0; 32]),
            purge: None,
            resync: None,
        },
        0,
    );
    match &sent(&a)[0] {
        Frame::Welcome { grant, .. } => assert_eq!(
            grant.as_ref().unwrap().hub_outputs,
            if version >= 9 {
                vec!["WardCensus".to_string()]
            } else {
                vec![]
            }
        ),
        other => panic!("{other:?}"),
    }
    let output = |id: &str, coll: &str, etag: u64| {
        let mut d = doc(id, etag, 5);
        d.meta.collection = Some(coll.into());
        d.meta.flags = DocFlags(DocFlags::FROM_INDEX);
        d
    };
    let docs = vec![
        doc("notes/1", 1, 5),
        output("WardCensus/north", "WardCensus", 2),
        output(r#"MonthlyStatus/["L1","2026-02"]"#, "MonthlyStatus", 3),
        output("elsewhere/south", "WardCensus", 4),
    ];
    let a = h.handle(
        HubEvent::ChangesRead {
            docs: FeedPage::new(docs),
            complete: true,
            last_etag: 4,
            horizon: 0,
            compacted: 0,
        },
        0,
    );
    sent(&a)
        .into_iter()
        .flat_map(|f| match f {
            Frame::Changes { docs, .. } => docs.into_iter().map(|d| d.id).collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// Index outputs stay at the hub except those of the indexes it shares,
/// sent to sessions of protocol 9 within their read prefixes; a session of
/// protocol 8 (which would not keep them read-only) is sent none.
#[test]
fn only_shared_outputs_leave_the_hub_and_only_to_protocol_9() {
    assert_eq!(sent_of_outputs(9), ["notes/1", "WardCensus/north"]);
    assert_eq!(sent_of_outputs(8), ["notes/1"]);
}

#[test]
fn the_hub_filters_reads_and_never_has_more_than_the_window_in_flight() {
    let mut h = open_hub();
    let mut in_flight = 0;
    let mut etag = 0;
    let mut sent_ids = Vec::new();
    // Feed reads until the window is full: each read returns 500 docs, half
    // outside the read prefixes.
    for _ in 0..WINDOW + 2 {
        let docs: Vec<RawDoc> = (0..500)
            .map(|i| {
                etag += 1;
                let id = if i % 2 == 0 {
                    format!("notes/{etag}")
                } else {
                    format!("secret/{etag}")
                };
                doc(&id, etag, 100)
            })
            .collect();
        let a = h.handle(
            HubEvent::ChangesRead {
                docs: FeedPage::new(docs),
                complete: false,
                last_etag: 1_000_000,
                horizon: 0,
                compacted: 0,
            },
            0,
        );
        for f in sent(&a) {
            if let Frame::Changes { docs, .. } = f {
                in_flight += 1;
                sent_ids.extend(docs.into_iter().map(|d| d.id));
            }
        }
        let reads = a
            .iter()
            .filter(|x| matches!(x, HubAction::ReadChanges { .. }))
            .count();
        if in_flight >= WINDOW {
            assert_eq!(
                reads, 0,
                "the hub reads more while {in_flight} batches are unacked"
            );
            break;
        }
    }
    assert_eq!(in_flight, WINDOW);
    assert!(sent_ids.iter().all(|id| id.starts_with("notes/")));
    assert!(!sent_ids.is_empty());
}

/// Sessions woken by one commit share the page of the feed they read
/// (`outpost::sync::feed`). A session that may read every document of it
/// sends the page's shared batch: byte for byte the frame it would have
/// built alone, cut at `BATCH_BYTES` like any batch. A session that may
/// not read all of it filters the same page for itself, whichever session
/// used the page first.
#[test]
fn a_shared_page_is_sent_whole_only_to_sessions_that_may_read_all_of_it() {
    let wide = Grant {
        read: Prefixes::parse(&["notes/".into(), "secret/".into()]).unwrap(),
        ..grant()
    };
    // 400 documents of ~2 KiB, alternating scopes: more than one batch.
    let docs: Vec<RawDoc> = (1..=400u64)
        .map(|etag| {
            let p = if etag % 2 == 0 { "notes" } else { "secret" };
            doc(&format!("{p}/{etag}"), etag, 2000)
        })
        .collect();
    let mut k = 0;
    let mut bytes = 0;
    for d in &docs {
        let len = outpost::sync::wire_doc(d).encoded_len();
        if k > 0 && bytes + len > outpost::sync::BATCH_BYTES {
            break;
        }
        bytes += len;
        k += 1;
    }
    assert!(k > 0 && k < docs.len(), "the page is cut: {k}");
    let expected = Frame::Changes {
        upto: docs[k - 1].meta.etag,
        docs: docs[..k].iter().map(outpost::sync::wire_doc).collect(),
    }
    .encode();
    let page = FeedPage::new(docs);
    let read = |page: &std::sync::Arc<FeedPage>| HubEvent::ChangesRead {
        docs: page.clone(),
        complete: true,
        last_etag: 400,
        horizon: 0,
        compacted: 0,
    };
    for narrow_first in [true, false] {
        let page = FeedPage::new(page.docs().to_vec());
        let (mut w, _) = hub_for(DbId([3; 16]), 5, 5, wide.clone());
        let (mut n, _) = hub_for(DbId([4; 16]), 5, 5, grant());
        let (wa, na) = if narrow_first {
            let na = n.handle(read(&page), 0);
            (w.handle(read(&page), 0), na)
        } else {
            let wa = w.handle(read(&page), 0);
            (wa, n.handle(read(&page), 0))
        };
        let first_send = wa.iter().find_map(|a| match a {
            HubAction::Send(b) => Some(b.clone()),
            _ => None,
        });
        assert_eq!(
            first_send.as_ref(),
            Some(&expected),
            "the wide session's batch"
        );
        let narrow: Vec<String> = sent(&na)
            .into_iter()
            .flat_map(|f| match f {
                Frame::Changes { docs, .. } => docs.into_iter().map(|d| d.id).collect(),
                _ => Vec::new(),
            })
            .collect();
        assert!(!narrow.is_empty());
        assert!(
            narrow.iter().all(|id| id.starts_with("notes/")),
            "the narrow session sent {narrow:?}"
        );
    }
}

#[test]
fn heartbeats_ping_when_idle_and_close_dead_connections() {
    let mut e = fresh_edge();
    e.handle(EdgeEvent::Opened, 0);
    let a = e.handle(EdgeEvent::Tick, 16_000);
    assert!(
        a.iter().any(|x| matches!(x, EdgeAction::Send(b) if matches!(Frame::decode(b, MAX_FRAME_BYTES), Ok(Frame::Ping { .. })))),
        "{a:?}"
    );
    let a = e.handle(EdgeEvent::Tick, 46_000);
    assert!(
        a.iter().any(
            |x| matches!(x, EdgeAction::Close { code, fatal: false, .. } if code == "timeout")
        )
    );
    assert!(a.contains(&EdgeAction::Status(SyncStatus::Offline)));
    let mut h = open_hub();
    let a = h.handle(HubEvent::Tick, 46_000);
    assert!(closed_with(&a, "timeout"));
}

/// `HubSession::next_tick` (and `EdgeSession::next_tick`) is the session's
/// earliest deadline: a `Tick`
/// one millisecond before it does nothing, a `Tick` at it acts (a hello
/// timeout, a heartbeat, an acknowledgement record, the dead-connection
/// timeout), so a shell may sleep until it instead of ticking every second.
#[test]
fn a_sessions_next_tick_is_its_earliest_deadline() {
    // Not authenticated: the hello timeout.
    let mut h = HubSession::new(0);
    let t = h.next_tick();
    assert_eq!(t, 10_001);
    assert!(h.handle(HubEvent::Tick, t - 1).is_empty());
    assert!(closed_with(&h.handle(HubEvent::Tick, t), "timeout"));
    assert_eq!(h.next_tick(), i64::MAX);
    // Open and live, one batch sent and acknowledged, then silence.
    let mut h = open_hub();
    let a = h.handle(
        HubEvent::ChangesRead {
            docs: FeedPage::new(vec![doc("notes/1", 1, 10)]),
            complete: true,
            last_etag: 1,
            horizon: 0,
            compacted: 0,
        },
        0,
    );
    assert!(sent(&a).iter().any(|f| matches!(f, Frame::Live { .. })));
    let ack = Frame::ChangesAck { upto: 1 }.encode();
    h.handle(HubEvent::Received(&ack), 100);
    let mut kinds = Vec::new();
    for _ in 0..20 {
        let t = h.next_tick();
        if t == i64::MAX {
            break;
        }
        assert!(
            h.handle(HubEvent::Tick, t - 1).is_empty(),
            "a Tick before the deadline {t} acted"
        );
        let a = h.handle(HubEvent::Tick, t);
        assert!(!a.is_empty(), "a Tick at the deadline {t} did nothing");
        kinds.push(match &a[0] {
            HubAction::Send(b) => match Frame::decode(b, MAX_FRAME_BYTES).unwrap() {
                Frame::Ping { .. } => "ping",
                other => panic!("{other:?}"),
            },
            HubAction::RecordAck { .. } => "record",
            HubAction::Close { .. } => "close",
            other => panic!("{other:?}"),
        });
    }
    // Recorded at 5,000 (acknowledged at 100); pings at 15, 30 and 45 s of
    // silence from the hub; closed 45 s after the last frame received.
    assert_eq!(kinds, ["record", "ping", "ping", "ping", "close"]);
    // The edge's side: heartbeats, then the dead-connection timeout.
    let mut e = fresh_edge();
    assert_eq!(e.next_tick(), i64::MAX, "not connected: no deadline");
    e.handle(EdgeEvent::Opened, 0);
    let mut kinds = Vec::new();
    for _ in 0..10 {
        let t = e.next_tick();
        if t == i64::MAX {
            break;
        }
        assert!(
            e.handle(EdgeEvent::Tick, t - 1).is_empty(),
            "edge Tick before {t}"
        );
        let a = e.handle(EdgeEvent::Tick, t);
        kinds.push(if a.iter().any(|x| matches!(x, EdgeAction::Close { .. })) {
            "close"
        } else if a.iter().any(|x| matches!(x, EdgeAction::Send(_))) {
            "ping"
        } else {
            panic!("{a:?}")
        });
    }
    assert_eq!(kinds, ["ping", "ping", "ping", "close"]);
}

/// A live edge acknowledges every second batch, or 1 s after the first,
/// and always before anything else it sends (the hub judges a pushed
/// change vector against the acknowledged etag); during the initial sync
/// it acknowledges each batch at once.
#[test]
fn a_live_edge_coalesces_acknowledgements_and_sends_them_before_a_push() {
    let mut e = fresh_edge();
    e.handle(EdgeEvent::Opened, 0);
    let welcome = welcome_v5(0);
    e.handle(EdgeEvent::Received(&welcome), 0);
    e.handle(
        EdgeEvent::LocalRead {
            docs: vec![],
            complete: true,
        },
        0,
    );
    let acks = |a: &[EdgeAction]| -> Vec<u64> {
        sent_edge(a)
            .into_iter()
            .filter_map(|f| match f {
                Frame::ChangesAck { upto } => Some(upto),
                _ => None,
            })
            .collect()
    };
    // One batch, applied: returns what applying it sent.
    let batch = |e: &mut EdgeSession, upto: u64, now: i64| {
        let changes = Frame::Changes {
            upto,
            docs: vec![outpost::sync::wire_doc(&doc(
                &format!("notes/{upto}"),
                upto,
                5,
            ))],
        }
        .encode();
        e.handle(EdgeEvent::Received(&changes), now);
        e.handle(EdgeEvent::Applied, now)
    };
    // Initial sync: at once.
    assert_eq!(acks(&batch(&mut e, 1, 10)), [1]);
    let live = Frame::Live { upto: 1 }.encode();
    e.handle(EdgeEvent::Received(&live), 20);
    e.handle(EdgeEvent::Applied, 20);
    assert!(e.is_live());
    // Live: the first waits, the second sends one for both.
    assert!(acks(&batch(&mut e, 2, 100)).is_empty());
    assert!(!e.is_idle(), "an acknowledgement is waiting");
    assert_eq!(e.next_tick(), 1_100);
    assert_eq!(acks(&batch(&mut e, 3, 200)), [3]);
    // One alone goes 1 s after it was applied.
    assert!(acks(&batch(&mut e, 4, 300)).is_empty());
    assert!(acks(&e.handle(EdgeEvent::Tick, 1_299)).is_empty());
    assert_eq!(acks(&e.handle(EdgeEvent::Tick, 1_300)), [4]);
    assert!(e.is_idle());
    // Waiting when the edge pushes: the acknowledgement goes first.
    assert!(acks(&batch(&mut e, 5, 400)).is_empty());
    let a = e.handle(EdgeEvent::LocalChanged, 500);
    assert!(
        a.iter().any(|x| matches!(x, EdgeAction::ReadLocal { .. })),
        "{a:?}"
    );
    let a = e.handle(
        EdgeEvent::LocalRead {
            docs: vec![doc("notes/mine", 9, 5)],
            complete: true,
        },
        500,
    );
    let frames = sent_edge(&a);
    let ack_at = frames
        .iter()
        .position(|f| matches!(f, Frame::ChangesAck { upto: 5 }));
    let push_at = frames.iter().position(|f| matches!(f, Frame::Push { .. }));
    assert!(
        matches!((ack_at, push_at), (Some(x), Some(y)) if x < y),
        "the acknowledgement precedes the push: {frames:?}"
    );
}

#[test]
fn an_edge_records_a_rejection_and_does_not_retry_it() {
    let mut e = fresh_edge();
    e.handle(EdgeEvent::Opened, 0);
    let welcome = welcome_v5(0);
    let a = e.handle(EdgeEvent::Received(&welcome), 0);
    assert!(a.contains(&EdgeAction::ReadLocal {
        after: 0,
        max_docs: 500
    }));
    let local = vec![doc("notes/a", 1, 10), doc("secret/b", 2, 10)];
    let a = e.handle(
        EdgeEvent::LocalRead {
            docs: local.clone(),
            complete: true,
        },
        0,
    );
    assert!(matches!(sent_edge(&a)[..], [Frame::Push { upto: 2, .. }]));
    let rej = Frame::PushRejected {
        upto: 2,
        code: "write_denied".into(),
        id: "secret/b".into(),
        rule: "write prefixes [notes/]".into(),
        message: "no".into(),
    }
    .encode();
    let a = e.handle(EdgeEvent::Received(&rej), 0);
    assert!(a.iter().any(|x| matches!(x, EdgeAction::RecordRejection(r) if r.id == "secret/b" && r.code == "write_denied")));
    assert!(a.contains(&EdgeAction::ReadLocal {
        after: 0,
        max_docs: 500
    }));
    // The re-read batch goes without the refused version.
    let a = e.handle(
        EdgeEvent::LocalRead {
            docs: local,
            complete: true,
        },
        0,
    );
    match &sent_edge(&a)[..] {
        [Frame::Push { upto: 2, docs, .. }] => {
            assert_eq!(docs.len(), 1);
            assert_eq!(docs[0].id, "notes/a");
        }
        other => panic!("{other:?}"),
    }
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
    let hello = Frame::Hello {
        min_version: min,
        max_version: max,
        db_id: device,
        database: "main".into(),
        identity: "laptop".into(),
        credential: "t".into(),
        pull_checkpoint: 0,
        checkpoint_hub: DbId([0; 16]),
        auth: AuthMode::Token,
        key: Vec::new(),
    }
    .encode();
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

#[test]
fn the_hub_holds_back_only_what_this_device_sent() {
    let device = DbId([1; 16]);
    let twin = DbId([2; 16]);
    // A session that resumes from a checkpoint; one from 0 (a first sync,
    // a resync) is sent everything, below.
    let (mut h, _) = hub_from(device, 5, 5, grant(), 1);
    let g = grant();
    let tagged = |id: &str, etag: u64, source: Option<String>| {
        let mut d = doc(id, etag, 1);
        d.meta.source = source;
        d
    };
    let (mut fresh, _) = hub_for(device, 5, 5, grant());
    let mine = vec![tagged("notes/mine", 1, Some(g.source_for(&device)))];
    let a = fresh.handle(
        HubEvent::ChangesRead {
            docs: FeedPage::new(mine),
            complete: true,
            last_etag: 1,
            horizon: 0,
            compacted: 0,
        },
        0,
    );
    assert!(
        sent(&a)
            .iter()
            .any(|f| matches!(f, Frame::Changes { docs, .. } if docs.len() == 1)),
        "a session from 0 sends the device's own versions: {a:?}"
    );
    let docs = vec![
        // Pushed by this very device: it has it.
        tagged("notes/mine", 1, Some(g.source_for(&device))),
        // Pushed by another device of the same identity.
        tagged("notes/twin", 2, Some(g.source_for(&twin))),
        // Tagged by an older hub with the identity only (no device).
        tagged("notes/legacy", 3, Some("edge:laptop".into())),
        // Pushed by another identity; and written at the hub.
        tagged(
            "notes/other",
            4,
            Some("edge:desktop/AAAAAAAAAAAAAAAAAAAAAA".into()),
        ),
        tagged("notes/hub", 5, None),
    ];
    let a = h.handle(
        HubEvent::ChangesRead {
            docs: FeedPage::new(docs),
            complete: true,
            last_etag: 5,
            horizon: 0,
            compacted: 0,
        },
        0,
    );
    let ids: Vec<String> = sent(&a)
        .into_iter()
        .flat_map(|f| match f {
            Frame::Changes { docs, .. } => docs.into_iter().map(|d| d.id).collect(),
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(
        ids,
        ["notes/twin", "notes/legacy", "notes/other", "notes/hub"]
    );
    // What the device pushes is tagged with the device, not only the identity.
    let a = h.handle(
        HubEvent::Received(&push(vec![wire(
            "notes/new",
            ChangeVector::new().with(device, 3),
            "{}",
        )])),
        0,
    );
    match a.iter().find(|x| matches!(x, HubAction::ApplyPush { .. })) {
        Some(HubAction::ApplyPush { docs, .. }) => {
            assert_eq!(
                docs[0].0.source.as_deref(),
                Some(format!("edge:laptop/{device}").as_str())
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_welcome_states_the_grant_and_older_edges_are_refused() {
    let mut ro = grant();
    ro.read = Prefixes::parse(&["notes/".into(), "*".into()]).unwrap();
    ro.write = Prefixes::parse(&[]).unwrap();
    let (_, f) = hub_for(EDGE, 5, 5, ro.clone());
    let welcome = match &f[0] {
        Frame::Welcome {
            version: 5, grant, ..
        } => {
            assert_eq!(
                grant.as_ref().unwrap(),
                &WireGrant {
                    read: vec!["*".into(), "notes/".into()],
                    write: vec![],
                    never_delete: vec![],
                    hub_outputs: Vec::new(),
                }
            );
            f[0].encode()
        }
        other => panic!("{other:?}"),
    };
    // Version 1 to 4 edges (tokens, unsigned pushes, no purge orders, no
    // subject purges) are refused.
    for (min, max) in [(1, 1), (1, 2), (2, 2), (3, 3), (1, 3), (4, 4), (1, 4)] {
        let mut h = HubSession::new(0);
        let hello = Frame::Hello {
            min_version: min,
            max_version: max,
            db_id: EDGE,
            database: "main".into(),
            identity: "laptop".into(),
            credential: "t".into(),
            pull_checkpoint: 0,
            checkpoint_hub: DbId([0; 16]),
            auth: AuthMode::Token,
            key: Vec::new(),
        }
        .encode();
        let a = h.handle(HubEvent::Received(&hello), 0);
        assert!(
            closed_with(&a, "unsupported_version"),
            "{min}..{max}: {a:?}"
        );
        assert!(
            !a.iter()
                .any(|x| matches!(x, HubAction::Authenticate { .. }))
        );
    }
    // The edge offers 5 to 9 and reports the grant to its shell.
    let mut e = fresh_edge();
    let a = e.handle(EdgeEvent::Opened, 0);
    assert!(matches!(
        sent_edge(&a)[..],
        [Frame::Hello {
            min_version: 5,
            max_version: 9,
            ..
        }]
    ));
    let a = e.handle(EdgeEvent::Received(&welcome), 0);
    assert!(a.contains(&EdgeAction::Granted(WireGrant {
        read: vec!["*".into(), "notes/".into()],
        write: vec![],
        never_delete: vec![],
        hub_outputs: Vec::new(),
    })));
}

/// Storage of an edge: applying what the hub sent, then reading what to push.
#[test]
fn a_read_only_edge_pushes_nothing_it_received_even_a_conflict() {
    use futures::executor::block_on;
    use outpost::sync::driver::edge_storage;
    use outpost::{Database, OpenOptions, store::MemoryStore};
    block_on(async {
        let db = Database::open(MemoryStore::new(), OpenOptions::default())
            .await
            .unwrap();
        let cfg = EdgeConfig::new("main", "reader", "t");
        let (w1, w2) = (DbId([3; 16]), DbId([4; 16]));
        let v0 = ChangeVector::new().with(w1, 1);
        let remote = |versions: Vec<RawVersion>| outpost::db::RemoteDoc {
            id: "notes/card".into(),
            collection: Some("Cards".into()),
            versions,
            source: Some("hub".into()),
        };
        let apply = |docs, upto| EdgeAction::ApplyRemote {
            docs,
            upto,
            from: upto - 1,
            hub_db_id: HUB,
        };
        // First the document, then the conflict two writers made of it (the
        // hub keeps both versions: manual policy), in two batches.
        let ev = edge_storage(
            &db,
            &cfg,
            &apply(vec![remote(vec![version(v0.clone(), "{\"v\":0}")])], 1),
        )
        .await;
        assert!(matches!(ev, Some(EdgeEvent::Applied)));
        let a = version(v0.with(w1, 2), "{\"v\":\"a\"}");
        let b = version(v0.with(w2, 1), "{\"v\":\"b\"}");
        let ev = edge_storage(&db, &cfg, &apply(vec![remote(vec![b.clone()])], 2)).await;
        assert!(matches!(ev, Some(EdgeEvent::Applied)));
        let ev = edge_storage(&db, &cfg, &apply(vec![remote(vec![a, b])], 3)).await;
        assert!(matches!(ev, Some(EdgeEvent::Applied)));
        let held = db.get("notes/card").await.unwrap().unwrap();
        assert_eq!(held.conflicts.len(), 1, "the edge keeps the conflict");
        assert_eq!(held.meta.source.as_deref(), Some("hub"));
        // The edge's push: nothing but the checkpoint move.
        let mut e = EdgeSession::new(
            cfg.clone(),
            EdgePersisted {
                db_id: EDGE,
                pull_checkpoint: 3,
                checkpoint_hub: Some(HUB),
                rejected: Default::default(),
                resync_from: None,
            },
            0,
        );
        e.handle(EdgeEvent::Opened, 0);
        let welcome = welcome_v5(3);
        let mut acts = e.handle(EdgeEvent::Received(&welcome), 0);
        let mut pushed = Vec::new();
        for _ in 0..10 {
            let Some(read) = acts
                .iter()
                .find(|x| matches!(x, EdgeAction::ReadLocal { .. }))
            else {
                break;
            };
            let ev = edge_storage(&db, &cfg, read).await.unwrap();
            acts = e.handle(ev, 0);
            pushed.extend(sent_edge(&acts));
        }
        match &pushed[..] {
            [Frame::Push { docs, .. }] => assert!(docs.is_empty(), "pushed {docs:?}"),
            other => panic!("{other:?}"),
        }
    });
}

/// Class 2 of the hostile-edge issue: the hub's last etag is in every
/// `Welcome`, so "not above the hub's last etag" proves nothing. An edge may
/// claim only hub history it was sent and acknowledged.
#[test]
fn an_edge_may_claim_only_hub_history_it_was_sent() {
    let ok = || ChangeVector::new().with(EDGE, 3);
    // Sent up to 50 (its pull checkpoint): 80 is below the hub's last etag
    // (100), and still forged.
    let mut h = open_hub_from(50);
    let a = h.handle(
        HubEvent::Received(&push(vec![wire("notes/a", ok().with(HUB, 80), "{}")])),
        0,
    );
    assert_eq!(
        rejected(&a),
        Some(("forged_change_vector".to_string(), "notes/a".to_string()))
    );
    let a = h.handle(
        HubEvent::Received(&push(vec![wire("notes/a", ok().with(HUB, 50), "{}")])),
        0,
    );
    assert!(a.iter().any(|x| matches!(x, HubAction::ApplyPush { .. })));
}

/// Nothing but the handshake before authentication: a `Ping` does not keep
/// an unauthenticated connection open, and the `Hello` deadline holds.
#[test]
fn nothing_but_a_hello_keeps_an_unauthenticated_connection() {
    let mut h = HubSession::new(0).with_hello_timeout(1_000);
    let a = h.handle(HubEvent::Received(&Frame::Ping { nonce: 1 }.encode()), 10);
    assert!(matches!(
        sent(&a).first(),
        Some(Frame::Error { code, .. }) if code == "protocol"
    ));
    assert!(h.is_closed());
    let mut h = HubSession::new(0).with_hello_timeout(1_000);
    assert!(h.handle(HubEvent::Tick, 900).is_empty());
    let a = h.handle(HubEvent::Tick, 1_001);
    assert!(matches!(
        sent(&a).first(),
        Some(Frame::Error { code, .. }) if code == "timeout"
    ));
    assert!(h.is_closed());
}

#[test]
fn the_welcome_states_the_deletion_guards_and_the_edge_keeps_them() {
    let mut g = grant();
    g.never_delete = vec!["Invoices".into()];
    let (_, f) = hub_for(EDGE, 5, 5, g);
    let welcome = match &f[0] {
        Frame::Welcome { grant, .. } => {
            assert_eq!(grant.as_ref().unwrap().never_delete, ["Invoices"]);
            f[0].encode()
        }
        other => panic!("{other:?}"),
    };
    let mut e = fresh_edge();
    e.handle(EdgeEvent::Opened, 0);
    let a = e.handle(EdgeEvent::Received(&welcome), 0);
    assert!(
        a.contains(&EdgeAction::KeepGuards(vec!["Invoices".into()])),
        "{a:?}"
    );
}
