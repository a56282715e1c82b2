//! The strict body check on the write paths (issue 10, class 6): a local put
//! and a received version whose body readers could not parse back are
//! refused with `InvalidJson` naming the rule; nothing is stored.

use std::sync::Arc;

use futures::executor::block_on;
use outpost::store::MemoryStore;
use outpost::{
    Batch, ChangeVector, ConflictPolicy, Database, DbId, Error, InputError, RawVersion, RemoteDoc,
};
use outpost_testkit::open;
use serde_json::{Value, json};

fn fresh() -> Database<Arc<MemoryStore>> {
    block_on(open(&Arc::new(MemoryStore::new())))
}

fn invalid_json(e: Error) -> String {
    match e {
        Error::Input(InputError::InvalidJson(m)) => m,
        e => panic!("expected InvalidJson, got {e:?}"),
    }
}

#[test]
fn a_local_put_nested_too_deep_is_refused() {
    let db = fresh();
    let mut v = json!(1);
    for _ in 0..64 {
        v = json!([v]);
    }
    // 1 (the object) + 64 arrays: too deep.
    let e = block_on(db.put("deep", json!({ "x": v.clone() }))).unwrap_err();
    let m = invalid_json(e);
    assert!(m.contains("too_deep") && m.contains("\"deep\""), "{m}");
    // One level less is fine.
    let Value::Array(inner) = v else {
        unreachable!()
    };
    block_on(db.put("ok", json!({ "x": inner[0].clone() }))).unwrap();
    assert_eq!(db.stats().documents, 1);
}

fn remote(body: &[u8]) -> Result<(), Error> {
    let db = fresh();
    let mut b = Batch::new();
    b.apply_remote(
        RemoteDoc {
            id: "r/1".into(),
            collection: None,
            versions: vec![RawVersion {
                change_vector: ChangeVector::from_entries([(DbId([9; 16]), 1)]).unwrap(),
                last_modified_ms: 1,
                deleted: false,
                body: body.to_vec(),
            }],
            source: None,
        },
        ConflictPolicy::Manual,
    );
    let r = block_on(db.commit(b)).map(|_| ());
    if r.is_err() {
        assert_eq!(db.stats().documents, 0, "nothing stored");
    }
    r
}

#[test]
fn received_versions_are_checked_strictly() {
    let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
    for (body, rule) in [
        (deep.as_bytes(), "too_deep"),
        (&b"{\"a\":\"\xff\"}"[..], "invalid_utf8"),
        (br#"{"a":"\ud800"}"#, "lone_surrogate"),
        (br#"{"a":"\udc00"}"#, "lone_surrogate"),
        (br#"{"a":1e400}"#, "number_out_of_range"),
        (br#"{"a":-1e400}"#, "number_out_of_range"),
        (br#"{"a":1,"\u0061":2}"#, "duplicate_key"),
        (br#"[1]"#, "not_object"),
        (br#"{"a":1} x"#, "syntax"),
    ] {
        let m = invalid_json(remote(body).unwrap_err());
        assert!(m.contains(rule) && m.contains("\"r/1\""), "{rule}: {m}");
    }
    remote(br#"{"big":123456789012345678901234567890,"ok":"\ud83d\ude00"}"#).unwrap();
}

/// A put of JSON text (`put_json`) passes the same rules as a received
/// version, stores the text as given, and takes its collection from
/// `@metadata.@collection` (a non-string one is no collection) unless the
/// options name one.
#[test]
fn a_put_of_json_text_is_checked_strictly_and_stored_as_given() {
    use outpost::PutOptions;
    let db = fresh();
    let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
    for (body, rule) in [
        (deep.as_bytes(), "too_deep"),
        (&b"{\"a\":\"\xff\"}"[..], "invalid_utf8"),
        (br#"{"a":"\ud800"}"#, "lone_surrogate"),
        (br#"{"a":1e400}"#, "number_out_of_range"),
        (
            br#"{"@metadata":{"@collection":"A"},"@metadata":{}}"#,
            "duplicate_key",
        ),
        (br#"[1]"#, "not_object"),
        (br#""#, "not_object"),
        (br#"{"a":1} x"#, "syntax"),
    ] {
        let e = block_on(db.put_json("t/1", body, PutOptions::default())).unwrap_err();
        let m = invalid_json(e);
        assert!(m.contains(rule) && m.contains("\"t/1\""), "{rule}: {m}");
    }
    assert_eq!(db.stats().documents, 0, "nothing stored");

    let text = br#"{ "n": 1, "@metadata": { "@collection": "Notes", "x": [1, {"y": 2}] } }"#;
    block_on(db.put_json("t/1", &text[..], PutOptions::default())).unwrap();
    let raw = block_on(db.changes_raw(0, 10)).unwrap();
    assert_eq!(raw[0].versions[0].body, text, "stored as given");
    assert_eq!(raw[0].meta.collection.as_deref(), Some("Notes"));
    let d = block_on(db.get("t/1")).unwrap().unwrap();
    assert_eq!(d.body["n"], 1);

    block_on(db.put_json(
        "t/2",
        &br#"{"@metadata":{"@collection":7}}"#[..],
        PutOptions::default(),
    ))
    .unwrap();
    let opts = PutOptions {
        collection: Some("Other".into()),
        ..PutOptions::default()
    };
    block_on(db.put_json(
        "t/3",
        &br#"{"@metadata":{"@collection":"Notes"}}"#[..],
        opts,
    ))
    .unwrap();
    let raw = block_on(db.changes_raw(1, 10)).unwrap();
    assert_eq!(
        raw[0].meta.collection, None,
        "a non-string collection is none"
    );
    assert_eq!(raw[1].meta.collection.as_deref(), Some("Other"));
    // A collection name the engine refuses is refused here too.
    let bad = format!(
        r#"{{"@metadata":{{"@collection":"{}"}}}}"#,
        "c".repeat(10_000)
    );
    assert!(block_on(db.put_json("t/4", bad, PutOptions::default())).is_err());
    assert_eq!(db.stats().documents, 3);
}
