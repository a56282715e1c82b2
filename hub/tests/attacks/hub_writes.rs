//! Writes with safety `hub` (protocol 6: `Write`, a compare-and-set the hub
//! applies alone): a write is taken only from the session's proven key, in
//! that session, in a protocol 6 session, numbered upwards, inside the
//! identity's write **and read** prefixes, and under every rule a push is
//! under (guards, purged ids, bodies, sizes). Each refusal is typed,
//! audited, changes nothing, and (but for the session rules) leaves the
//! session open. The control cases: a write whose expectation holds is
//! applied and audited; a stale one is a conflict naming the hub's version.

use outpost::ChangeVector;
use outpost::sync::frame::{WireExpect, WireWrite, WriteAnswer};

use crate::common::*;

const ID: &str = "shared/names/ada";

fn put(id: &str, expect: WireExpect, body: Value) -> WireWrite {
    WireWrite {
        id: id.into(),
        collection: None,
        expect,
        deleted: false,
        body: js(body),
    }
}

fn del(id: &str, expect: WireExpect) -> WireWrite {
    WireWrite {
        id: id.into(),
        collection: None,
        expect,
        deleted: true,
        body: Vec::new(),
    }
}

fn refused(a: &Answer, code: &str, id: &str) {
    match a {
        Answer::WriteResult {
            answer: WriteAnswer::Refused { code: c, id: i, .. },
            ..
        } => assert_eq!((c.as_str(), i.as_str()), (code, id), "{a:?}"),
        other => panic!("expected a refused write ({code}): {other:?}"),
    }
}

/// The write is refused with `code` naming `id`, nothing is stored, the
/// refusal is audited, and mallory's session goes on (a write after it is
/// applied).
async fn refused_and_nothing_written(hub: Hub, mut m: Hostile, a: Answer, code: &str, id: &str) {
    refused(&a, code, id);
    assert!(!hub.view().await.contains_key(id), "nothing was stored");
    let ok = m
        .write(vec![put(
            "shared/names/after",
            WireExpect::Missing,
            json!({}),
        )])
        .await;
    assert!(
        matches!(
            &ok,
            Answer::WriteResult {
                answer: WriteAnswer::Applied { .. },
                ..
            }
        ),
        "{ok:?}"
    );
    let (_, audit) = hub.finish_audited().await;
    assert!(
        audit.iter().any(|e| e["kind"] == "push_refused"
            && e["record"]["code"] == code
            && e["record"]["rule"]
                .as_str()
                .is_some_and(|r| r.starts_with("hub write"))),
        "the refusal is audited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_expectation_holds_is_applied_and_audited() {
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let a = m
        .write(vec![put(ID, WireExpect::Missing, json!({"o": "m"}))])
        .await;
    let cv = match a {
        Answer::WriteResult {
            request: 1,
            answer: WriteAnswer::Applied { change_vectors, .. },
        } => change_vectors[0].clone(),
        other => panic!("{other:?}"),
    };
    let d = hub.doc(ID).await;
    assert_eq!(d.versions[0].change_vector, cv);
    assert_eq!(body(&d), json!({"o": "m"}));
    // The same claim again: a conflict naming the hub's version.
    let a = m
        .write(vec![put(ID, WireExpect::Missing, json!({"o": "x"}))])
        .await;
    match a {
        Answer::WriteResult {
            answer: WriteAnswer::Conflict { id, current },
            ..
        } => assert_eq!((id.as_str(), &current), (ID, &cv)),
        other => panic!("{other:?}"),
    }
    assert_eq!(body(&hub.doc(ID).await), json!({"o": "m"}));
    let (_, audit, who) = hub
        .finish_audited_then(|dir| {
            let out = std::process::Command::new(BIN)
                .current_dir(dir)
                .args(["--config", "outpost-hub.toml", "audit", "who", ID])
                .arg(format!("--cv={}", cv.to_text()))
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .await;
    let w: Vec<_> = audit.iter().filter(|e| e["kind"] == "hub_write").collect();
    assert_eq!(w.len(), 1, "one write applied, one audit entry");
    assert_eq!(w[0]["record"]["identity"], "mallory");
    assert!(!w[0]["record"]["signature"].as_str().unwrap().is_empty());
    // The entry names the version the write produced, and `audit who` finds
    // the write by it.
    assert_eq!(w[0]["record"]["ops"][0]["change_vector"], cv.to_text());
    assert!(who.contains("written by identity mallory"), "{who}");
    assert!(
        who.contains("in its write with safety hub, request 1 of its session"),
        "{who}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_expectation_is_only_a_conflict() {
    // A vector claiming history nobody wrote matches nothing: no overwrite.
    let hub = Hub::seeded(&[seed(ID, "Names", json!({"o": "alice"}))]);
    let mut m = hub.mallory().await;
    let forged = ChangeVector::new().with(m.db_id, u64::MAX / 2);
    let a = m
        .write(vec![put(ID, WireExpect::Cv(forged), json!({"o": "m"}))])
        .await;
    assert!(
        matches!(
            &a,
            Answer::WriteResult {
                answer: WriteAnswer::Conflict { .. },
                ..
            }
        ),
        "{a:?}"
    );
    assert_unchanged(&hub, ID, "Names", json!({"o": "alice"})).await;
    hub.finish_audited().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_signed_by_another_key_is_refused() {
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let other = outpost_testkit::keys::fresh_key();
    let f = m.write_frame(1, vec![put(ID, WireExpect::Any, json!({}))], Some(&other));
    m.send(&f).await.unwrap();
    let a = m.answer().await;
    assert_error(&a, "bad_signature");
    assert!(!hub.view().await.contains_key(ID));
    let (_, audit) = hub.finish_audited().await;
    assert!(
        audit
            .iter()
            .any(|e| e["kind"] == "push_refused" && e["record"]["code"] == "bad_signature")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_replayed_in_another_session_is_refused() {
    // The signature binds the session's nonce: a write captured from one
    // session (applied there) is worthless in the next.
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let f = m.write_frame(1, vec![put(ID, WireExpect::Any, json!({"v": 1}))], None);
    m.send(&f).await.unwrap();
    assert!(matches!(
        m.answer().await,
        Answer::WriteResult {
            answer: WriteAnswer::Applied { .. },
            ..
        }
    ));
    let device = m.db_id;
    m.close().await;
    hub.alice_writes(ID, "Names", json!({"v": 2}))
        .await
        .close()
        .await;
    let mut m2 = hub.device("mallory", device).await;
    m2.send(&f).await.unwrap();
    assert_error(&m2.answer().await, "bad_signature");
    assert_eq!(
        body(&hub.doc(ID).await),
        json!({"v": 2}),
        "the replay changed nothing"
    );
    hub.finish_audited().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_number_used_twice_ends_the_session() {
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let f = m.write_frame(1, vec![put(ID, WireExpect::Any, json!({"v": 1}))], None);
    m.send(&f).await.unwrap();
    assert!(matches!(m.answer().await, Answer::WriteResult { .. }));
    let f = m.write_frame(1, vec![put(ID, WireExpect::Any, json!({"v": 2}))], None);
    m.send(&f).await.unwrap();
    assert_error(&m.answer().await, "protocol");
    assert_eq!(body(&hub.doc(ID).await), json!({"v": 1}));
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_in_a_protocol_5_session_is_a_protocol_error() {
    let hub = Hub::start();
    let mut m = hub.session_at("mallory", 5).await;
    let f = m.write_frame(1, vec![put(ID, WireExpect::Missing, json!({}))], None);
    m.send(&f).await.unwrap();
    assert_error(&m.answer().await, "protocol");
    assert!(!hub.view().await.contains_key(ID));
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_before_authentication_is_a_protocol_error() {
    let hub = Hub::start();
    let mut m = hub.connect().await;
    let f = Frame::Write {
        request: 1,
        signature: vec![0; 64],
        ops: vec![put(ID, WireExpect::Any, json!({}))],
    };
    m.send(&f).await.unwrap();
    assert_error(&m.answer().await, "protocol");
    assert!(!hub.view().await.contains_key(ID));
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_of_65_documents_is_malformed() {
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let ops = (0..65)
        .map(|i| put(&format!("shared/n/{i}"), WireExpect::Missing, json!({})))
        .collect();
    let f = m.write_frame(1, ops, None);
    m.send(&f).await.unwrap();
    assert_error(&m.answer().await, "protocol");
    assert!(!hub.view().await.contains_key("shared/n/0"));
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_outside_the_write_prefixes_is_refused() {
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let id = "alice/names/x";
    let a = m.write(vec![put(id, WireExpect::Missing, json!({}))]).await;
    refused_and_nothing_written(hub, m, a, "write_denied", id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_under_a_write_only_prefix_is_refused_no_existence_oracle() {
    // `drop/` is write-only for mallory: a compare-and-set there would tell
    // her whether a document exists.
    let hub = Hub::start();
    hub.alice_writes("drop/box/1", "Notes", json!({"secret": 1}))
        .await
        .close()
        .await;
    let mut m = hub.mallory().await;
    for expect in [WireExpect::Missing, WireExpect::Any] {
        let r = m.write(vec![put("drop/box/1", expect, json!({}))]).await;
        refused(&r, "write_denied", "drop/box/1");
    }
    assert_unchanged(&hub, "drop/box/1", "Notes", json!({"secret": 1})).await;
    hub.finish_audited().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_deleting_a_guarded_document_is_refused() {
    let hub = Hub::seeded(&[seed("shared/invoices/1", "Invoices", json!({"total": 10}))]);
    let mut m = hub.mallory().await;
    let a = m
        .write(vec![del("shared/invoices/1", WireExpect::Any)])
        .await;
    refused(&a, "delete_forbidden", "shared/invoices/1");
    let mut mv = put("shared/invoices/1", WireExpect::Any, json!({"total": 0}));
    mv.collection = Some("Notes".into());
    let a = m.write(vec![mv]).await;
    refused(&a, "delete_forbidden", "shared/invoices/1");
    assert_unchanged(&hub, "shared/invoices/1", "Invoices", json!({"total": 10})).await;
    let (_, audit) = hub.finish_audited().await;
    assert!(
        audit
            .iter()
            .any(|e| e["kind"] == "push_refused" && e["record"]["code"] == "delete_forbidden")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_cannot_bring_back_a_purged_id() {
    let mut hub = Hub::seeded(&[seed(ID, "Names", json!({"patientId": "p-1"}))]);
    hub.purge(&["--id", ID]);
    let mut m = hub.mallory().await;
    for (i, expect) in [WireExpect::Missing, WireExpect::Any]
        .into_iter()
        .enumerate()
    {
        let id = if i == 0 {
            ID.to_string()
        } else {
            ID.to_uppercase()
        };
        let a = m
            .write(vec![put(&id, expect, json!({"patientId": "p-1"}))])
            .await;
        match &a {
            Answer::WriteResult {
                answer: WriteAnswer::Refused { code, .. },
                ..
            } => {
                assert_eq!(code, "purged", "{a:?}")
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(!hub.view().await.contains_key(ID));
    let (export, _) = hub.finish_audited().await;
    assert!(!export.contains_key(ID));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_body_is_not_an_object_is_refused() {
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let mut op = put(ID, WireExpect::Missing, json!({}));
    op.body = b"[1,2]".to_vec();
    let a = m.write(vec![op]).await;
    refused_and_nothing_written(hub, m, a, "invalid_document", ID).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_with_one_bad_document_writes_nothing() {
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let a = m
        .write(vec![
            put("shared/names/ok", WireExpect::Missing, json!({})),
            put("alice/names/no", WireExpect::Missing, json!({})),
        ])
        .await;
    refused(&a, "write_denied", "alice/names/no");
    assert!(!hub.view().await.contains_key("shared/names/ok"));
    hub.finish_audited().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_naming_one_id_twice_is_refused() {
    // Two versions of one document in one write (in two cases): which would
    // win is not the edge's to decide.
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let a = m
        .write(vec![
            put(ID, WireExpect::Missing, json!({"v": 1})),
            put(&ID.to_uppercase(), WireExpect::Any, json!({"v": 2})),
        ])
        .await;
    assert!(
        !hub.view().await.contains_key(ID),
        "neither version was stored"
    );
    refused_and_nothing_written(hub, m, a, "duplicate_id", &ID.to_uppercase()).await;
}
