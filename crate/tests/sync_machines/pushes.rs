//! Pushes and frames the hub refuses, each with the rule it names.

use super::*;

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
