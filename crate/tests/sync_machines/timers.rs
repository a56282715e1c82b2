//! Heartbeats, deadlines, coalesced acknowledgements, recorded rejections.

use super::*;

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

/// A live edge acknowledges every third batch, or 2 s after the first,
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
    // Live: the first two wait, the third sends one for all three.
    assert!(acks(&batch(&mut e, 2, 100)).is_empty());
    assert!(!e.is_idle(), "an acknowledgement is waiting");
    assert_eq!(e.next_tick(), 2_100);
    assert!(acks(&batch(&mut e, 3, 150)).is_empty());
    assert_eq!(e.next_tick(), 2_100, "timed from the first waiting");
    assert_eq!(acks(&batch(&mut e, 4, 200)), [4]);
    // One alone goes 2 s after it was applied.
    assert!(acks(&batch(&mut e, 5, 300)).is_empty());
    assert!(acks(&e.handle(EdgeEvent::Tick, 2_299)).is_empty());
    assert_eq!(acks(&e.handle(EdgeEvent::Tick, 2_300)), [5]);
    assert!(e.is_idle());
    // Waiting when the edge pushes: the acknowledgement goes first.
    assert!(acks(&batch(&mut e, 6, 400)).is_empty());
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
        .position(|f| matches!(f, Frame::ChangesAck { upto: 6 }));
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
