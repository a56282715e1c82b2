//! Unit tests of the document record codec (`crate::doc`).

use super::*;
use crate::cv::DbId;
use proptest::prelude::*;
use serde_json::json;

fn meta(collection: Option<&str>, flags: DocFlags) -> DocumentMeta {
    DocumentMeta {
        collection: collection.map(str::to_owned),
        change_vector: ChangeVector::from_entries([(DbId([1; 16]), 5), (DbId([2; 16]), 9)])
            .unwrap(),
        etag: 42,
        last_modified_ms: -1_700_000_000_123,
        flags,
        source: None,
    }
}

#[test]
fn arrivals_roundtrip_and_are_checked() {
    let m = meta(Some("Users"), DocFlags::default());
    let sib = vec![RawVersion {
        change_vector: ChangeVector::from_entries([(DbId([3; 16]), 7)]).unwrap(),
        last_modified_ms: 5,
        deleted: false,
        body: br#"{"a":2}"#.to_vec(),
    }];
    let arr = [
        Arrival {
            etag: 42,
            device: DbId([9; 16]),
        },
        Arrival {
            etag: 40,
            device: DbId([0; 16]),
        },
    ];
    let rec = encode_record_full("u/1", &m, br#"{"a":1}"#, &sib, &arr);
    let ((_, meta, _, sibs), got) = decode_raw_full(&rec).unwrap();
    assert_eq!(got, arr);
    assert_eq!(sibs, sib);
    assert_eq!(meta.flags.0 & DocFlags::ARRIVALS, 0);
    // A record without the section decodes with none.
    let plain = encode_record_with("u/1", &m, br#"{"a":1}"#, &sib);
    assert!(decode_raw_full(&plain).unwrap().1.is_empty());
    // The wrong number is not written, and refused when read.
    let rec = encode_record_full("u/1", &m, br#"{"a":1}"#, &sib, &arr[..1]);
    assert_eq!(rec, plain);
    let mut bad = encode_record_full("u/1", &m, br#"{"a":1}"#, &sib, &arr);
    let at = bad.len() - 2 * 24 - 2;
    bad[at] = 3;
    assert!(decode_raw_full(&bad).is_err());
}

#[test]
fn conflicts_and_source_roundtrip() {
    let mut m = meta(Some("Users"), DocFlags::default());
    m.source = Some("hub".into());
    let sib = vec![
        RawVersion {
            change_vector: ChangeVector::from_entries([(DbId([3; 16]), 7)]).unwrap(),
            last_modified_ms: 5,
            deleted: false,
            body: br#"{"a":2}"#.to_vec(),
        },
        RawVersion {
            change_vector: ChangeVector::from_entries([(DbId([4; 16]), 1)]).unwrap(),
            last_modified_ms: 6,
            deleted: true,
            body: Vec::new(),
        },
    ];
    let rec = encode_record_with("u/1", &m, br#"{"a":1}"#, &sib);
    let d = decode_record(&rec).unwrap();
    assert!(d.meta.flags.is_conflicted());
    assert_eq!(d.meta.source.as_deref(), Some("hub"));
    assert_eq!(d.conflicts.len(), 2);
    assert_eq!(d.conflicts[0].body, json!({"a": 2}));
    assert!(d.conflicts[1].deleted);
    let (_, _, body, raw) = decode_raw(&rec).unwrap();
    assert_eq!(body, br#"{"a":1}"#);
    assert_eq!(raw, sib);
    for k in 0..rec.len() {
        assert!(decode_record_meta(&rec[..k]).is_err(), "len {k}");
    }
}

#[test]
fn id_validation() {
    assert!(matches!(validate_id(""), Err(InputError::InvalidId { .. })));
    assert!(validate_id(&"a".repeat(512)).is_ok());
    assert!(validate_id(&"a".repeat(513)).is_err());
    // 2-byte chars: 256 of them = 512 bytes ok, 257 too long.
    assert!(validate_id(&"é".repeat(256)).is_ok());
    assert!(validate_id(&"é".repeat(257)).is_err());
    for bad in ["a\nb", "a\0", "\u{7f}", "x\u{85}y", "tab\t"] {
        assert!(validate_id(bad).is_err(), "{bad:?}");
    }
    for ok in ["users/1", "Ünïcödé/日本語", "a b", "emoji🎉"] {
        assert!(validate_id(ok).is_ok(), "{ok:?}");
    }
    let long = "x".repeat(1000);
    match validate_id(&long) {
        Err(InputError::InvalidId { id, .. }) => assert!(id.chars().count() <= 101),
        other => panic!("{other:?}"),
    }
}

#[test]
fn collection_validation() {
    assert!(matches!(
        validate_collection(""),
        Err(InputError::InvalidCollection { .. })
    ));
    assert!(validate_collection(&"c".repeat(128)).is_ok());
    assert!(validate_collection(&"c".repeat(129)).is_err());
    assert!(validate_collection("a\nb").is_err());
    assert!(validate_collection("Patients").is_ok());
}

#[test]
fn id_key_lowercases() {
    assert_eq!(id_key("Users/ABC"), b"users/abc".to_vec());
    assert_eq!(id_key("ÜBER"), "über".as_bytes().to_vec());
    assert_eq!(id_key("users/abc"), id_key("USERS/ABC"));
}

#[test]
fn collection_of_cases() {
    assert_eq!(
        collection_of(&json!({"@metadata": {"@collection": "Users"}, "a": 1})),
        Some("Users")
    );
    assert_eq!(
        collection_of(&json!({"@metadata": {"@collection": 5}})),
        None
    );
    assert_eq!(collection_of(&json!({"@metadata": {}})), None);
    assert_eq!(collection_of(&json!({"a": 1})), None);
    assert_eq!(collection_of(&json!([1, 2])), None);
    assert_eq!(collection_of(&json!(null)), None);
}

#[test]
fn flags() {
    let f = DocFlags::default();
    assert!(!f.is_tombstone() && !f.is_conflicted() && !f.is_from_index());
    let f = f
        .with(DocFlags::TOMBSTONE, true)
        .with(DocFlags::FROM_INDEX, true);
    assert!(f.is_tombstone() && !f.is_conflicted() && f.is_from_index());
    let f = f.with(DocFlags::TOMBSTONE, false);
    assert_eq!(f, DocFlags(DocFlags::FROM_INDEX));
}

#[test]
fn record_roundtrip() {
    let body = json!({"name": "Ann", "@metadata": {"@collection": "Users"}});
    let text = serde_json::to_vec(&body).unwrap();
    for (id, coll) in [("users/1", Some("Users")), ("Ünï/日本", None)] {
        let m = meta(coll, DocFlags::default().with(DocFlags::CONFLICTED, true));
        let rec = encode_record(id, &m, &text);
        let d = decode_record(&rec).unwrap();
        assert_eq!(d.id, id);
        assert_eq!(d.body, body);
        assert_eq!(d.meta, m);
        assert_eq!(decode_record_meta(&rec).unwrap(), (id.to_string(), m));
    }
}

#[test]
fn tombstone_roundtrip() {
    let m = meta(Some("Users"), DocFlags(DocFlags::TOMBSTONE));
    let rec = encode_record("users/1", &m, b"{\"ignored\":1}");
    let d = decode_record(&rec).unwrap();
    assert_eq!(d.body, serde_json::Value::Null);
    assert_eq!(d.meta, m);
    // A tombstone carrying a body is corrupt.
    let mut m2 = m.clone();
    m2.flags = DocFlags(0);
    let mut rec = encode_record("users/1", &m2, b"{}");
    rec[1] = DocFlags::TOMBSTONE;
    assert!(decode_record(&rec).is_err());
}

#[test]
fn every_truncation_fails() {
    let m = meta(Some("Users"), DocFlags::default());
    let rec = encode_record("users/1", &m, br#"{"a":[1,2,3]}"#);
    for k in 0..rec.len() {
        assert!(decode_record(&rec[..k]).is_err(), "len {k}");
        assert!(decode_record_meta(&rec[..k]).is_err(), "len {k}");
    }
    let mut long = rec.clone();
    long.push(0);
    assert!(decode_record(&long).is_err());
    assert!(decode_record_meta(&long).is_err());
}

#[test]
fn rejects_corruptions() {
    let m = meta(None, DocFlags::default());
    let rec = encode_record("id", &m, b"{}");
    let mut v = rec.clone();
    v[0] = 2;
    assert!(
        decode_record(&v)
            .unwrap_err()
            .to_string()
            .starts_with("corrupt document record: ")
    );
    let mut v = rec.clone();
    v[1] = 0x80;
    assert!(decode_record(&v).is_err());
    // Bad UTF-8 in the id (offset 20 is the first id byte).
    let mut v = rec.clone();
    v[20] = 0xff;
    assert!(decode_record(&v).is_err());
    // Bad JSON body: meta decodes, full decode fails.
    let bad = encode_record("id", &m, b"{nope");
    assert!(decode_record_meta(&bad).is_ok());
    assert!(decode_record(&bad).is_err());
}

#[test]
fn meta_serializes_readably() {
    let m = meta(Some("Users"), DocFlags(DocFlags::TOMBSTONE));
    let v = serde_json::to_value(&m).unwrap();
    assert_eq!(v["collection"], "Users");
    assert_eq!(v["change_vector"], m.change_vector.to_text());
    assert_eq!(v["etag"], 42);
    assert_eq!(v["tombstone"], true);
    assert_eq!(v["conflicted"], false);
    assert_eq!(v["from_index"], false);
    let d = Document {
        id: "a".into(),
        body: json!({}),
        meta: m,
        conflicts: Vec::new(),
    };
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["meta"]["etag"], 42);
}

proptest! {
    #[test]
    fn decode_arbitrary_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_record(&bytes);
        let _ = decode_record_meta(&bytes);
    }

    #[test]
    fn decode_mutated_never_panics(pos in 0usize..64, val in any::<u8>()) {
        let m = meta(Some("C"), DocFlags::default());
        let mut rec = encode_record("users/1", &m, br#"{"a":1}"#);
        let p = pos % rec.len();
        rec[p] = val;
        let _ = decode_record(&rec);
        let _ = decode_record_meta(&rec);
    }
}
