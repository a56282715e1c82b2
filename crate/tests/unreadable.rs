//! One unreadable record never stops the read path (issue 10, class 1, read
//! side): a document record that does not decode is skipped by the changes
//! feed (raw and parsed), scans and index reads, which go on past it; it is
//! counted and named; the integrity check lists it by key and etag; and
//! `quarantine_unreadable` sets it aside in one commit, after which the
//! database checks clean.

use std::sync::Arc;

use futures::executor::block_on;
use outpost::db::quarantine_key;
use outpost::doc::{self, DocFlags, DocumentMeta};
use outpost::store::MemoryStore;
use outpost::{
    Batch, ChangeVector, ConflictPolicy, Database, DbId, PutOptions, RawVersion, RemoteDoc,
};
use outpost_testkit::open;
use serde_json::json;

/// Bytes that are not a document record.
const GARBAGE: &[u8] = b"\x09not a record at all";

async fn put_in(db: &Database<Arc<MemoryStore>>, id: &str, coll: &str) -> u64 {
    let opts = PutOptions {
        collection: Some(coll.into()),
        ..Default::default()
    };
    db.put_with(id, json!({ "id": id }), opts)
        .await
        .unwrap()
        .etag
}

fn ids<T>(docs: &[T], id: impl Fn(&T) -> &str) -> Vec<String> {
    docs.iter().map(|d| id(d).to_string()).collect()
}

/// A database of five documents: `a/1`, `bad/1` (garbage), `a/2`, `bad/2`
/// (conflicted, then garbage), `a/3`.
async fn planted() -> (Arc<MemoryStore>, Database<Arc<MemoryStore>>) {
    let store = Arc::new(MemoryStore::new());
    let db = open(&store).await;
    put_in(&db, "a/1", "Things").await;
    put_in(&db, "bad/1", "Things").await;
    put_in(&db, "a/2", "Things").await;
    put_in(&db, "bad/2", "Other").await;
    // A concurrent version from another database: `bad/2` is conflicted
    // (so it is in the conflict index too).
    let mut b = Batch::new();
    b.apply_remote(
        RemoteDoc {
            id: "bad/2".into(),
            collection: Some("Other".into()),
            versions: vec![RawVersion {
                change_vector: ChangeVector::from_entries([(DbId([7; 16]), 1)]).unwrap(),
                last_modified_ms: 1,
                deleted: false,
                body: br#"{"theirs":true}"#.to_vec(),
            }],
            source: None,
        },
        ConflictPolicy::Manual,
    );
    db.commit(b).await.unwrap();
    assert_eq!(db.conflicts(None, 10).await.unwrap().len(), 1);
    put_in(&db, "a/3", "Things").await;
    assert!(db.integrity_check().await.unwrap().is_ok());
    db.testing_overwrite_record("bad/1", GARBAGE).await.unwrap();
    db.testing_overwrite_record("bad/2", GARBAGE).await.unwrap();
    (store, db)
}

#[test]
fn the_feed_goes_on_past_an_unreadable_record() {
    block_on(async {
        let (store, db) = planted().await;
        assert_eq!(db.stats().unreadable_records, 0);
        let raw = db.changes_raw(0, 100).await.unwrap();
        assert_eq!(ids(&raw, |d| &d.id), ["a/1", "a/2", "a/3"]);
        let docs = db.changes(0, 100).await.unwrap();
        assert_eq!(ids(&docs, |d| &d.id), ["a/1", "a/2", "a/3"]);
        // A page still fills past the bad records: a page of 2 read from the
        // start holds a/1 and a/2, the next one a/3 (the cursor moved past).
        let page = db.changes_raw(0, 2).await.unwrap();
        assert_eq!(ids(&page, |d| &d.id), ["a/1", "a/2"]);
        let next = db.changes_raw(page[1].meta.etag, 2).await.unwrap();
        assert_eq!(ids(&next, |d| &d.id), ["a/3"]);
        // A page of one after a/1 skips bad/1.
        let last = db.changes_raw(page[0].meta.etag, 1).await.unwrap();
        assert_eq!(ids(&last, |d| &d.id), ["a/2"]);
        // Scans and index reads skip them too.
        let scan = db.scan("", None, 100).await.unwrap();
        assert_eq!(ids(&scan, |d| &d.id), ["a/1", "a/2", "a/3"]);
        let coll = db.by_collection("things", None, 2).await.unwrap();
        assert_eq!(ids(&coll, |d| &d.id), ["a/1", "a/2"]);
        assert!(db.conflicts(None, 10).await.unwrap().is_empty());
        // Counted and named, once each however often met.
        let seen = db.unreadable_seen();
        assert_eq!(db.stats().unreadable_records, 2);
        assert_eq!(seen[0].key, "bad/1");
        assert_eq!(seen[0].etag, Some(2));
        assert_eq!(seen[0].bytes, GARBAGE.len() as u64);
        assert!(
            seen[0].error.contains("format version"),
            "{}",
            seen[0].error
        );
        assert_eq!(seen[1].key, "bad/2");
        // A direct read of the bad id is still an error naming it.
        let e = db.get("bad/1").await.unwrap_err();
        assert!(e.to_string().contains("bad/1"), "{e}");
        // After a restart too.
        drop(db);
        let db = open(&store).await;
        let raw = db.changes_raw(0, 100).await.unwrap();
        assert_eq!(raw.len(), 3);
        assert_eq!(db.stats().unreadable_records, 2);
    });
}

#[test]
fn check_lists_it_and_repair_sets_it_aside() {
    block_on(async {
        let (_store, db) = planted().await;
        let rep = db.integrity_check().await.unwrap();
        let named: Vec<&String> = rep
            .problems
            .iter()
            .filter(|p| p.starts_with("unreadable record"))
            .collect();
        assert_eq!(named.len(), 2, "{:?}", rep.problems);
        assert!(
            named[0].contains("\"bad/1\" (etag 2, 20 bytes)"),
            "{}",
            named[0]
        );
        assert!(named[0].contains("outpost repair"), "{}", named[0]);
        let found = db.find_unreadable().await.unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!((found[0].key.as_str(), found[0].etag), ("bad/1", Some(2)));
        let bad2_etag = found[1].etag.expect("bad/2 has an etag");
        // Nothing changed by listing.
        assert_eq!(db.find_unreadable().await.unwrap(), found);

        let moved = db.quarantine_unreadable().await.unwrap();
        assert_eq!(moved, found);
        let rep = db.integrity_check().await.unwrap();
        assert!(rep.is_ok(), "{:?}", rep.problems);
        assert_eq!(rep.documents, 3);
        assert_eq!(db.count().await.unwrap(), 3);
        assert_eq!(
            db.collections().await.unwrap(),
            vec![("Things".to_string(), 3)]
        );
        assert_eq!(db.stats().unreadable_records, 0);
        // The raw bytes are kept for forensics.
        let kept = db
            .get_local(&quarantine_key(b"bad/1", Some(2)))
            .await
            .unwrap();
        assert_eq!(kept.as_deref(), Some(GARBAGE));
        let kept = db
            .get_local(&quarantine_key(b"bad/2", Some(bad2_etag)))
            .await
            .unwrap();
        assert_eq!(kept.as_deref(), Some(GARBAGE));
        assert_eq!(db.scan_locals(b"quarantine/", 10).await.unwrap().len(), 2);
        // The feed no longer meets them; a second repair finds nothing; the
        // ids can be written again.
        assert_eq!(db.changes_raw(0, 100).await.unwrap().len(), 3);
        assert!(db.quarantine_unreadable().await.unwrap().is_empty());
        put_in(&db, "bad/1", "Things").await;
        let rep = db.integrity_check().await.unwrap();
        assert!(rep.is_ok(), "{:?}", rep.problems);
        assert_eq!(
            db.collections().await.unwrap(),
            vec![("Things".to_string(), 4)]
        );
    });
}

#[test]
fn a_body_readers_cannot_parse_is_unreadable_for_parsed_reads() {
    block_on(async {
        let store = Arc::new(MemoryStore::new());
        let db = open(&store).await;
        put_in(&db, "a/1", "Things").await;
        put_in(&db, "deep", "Things").await;
        put_in(&db, "a/2", "Things").await;
        // A record stored before bodies were checked: framing fine, a body
        // nested past serde_json's limit.
        let deep = format!("{{\"x\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        let d = db.get("deep").await.unwrap().unwrap();
        let meta = DocumentMeta {
            flags: DocFlags::default(),
            ..d.meta.clone()
        };
        let rec = doc::encode_record("deep", &meta, deep.as_bytes());
        db.testing_overwrite_record("deep", &rec).await.unwrap();
        // And one with a duplicate key: serde_json reads it (the last value
        // wins), the strict check does not.
        put_in(&db, "dup", "Things").await;
        let d = db.get("dup").await.unwrap().unwrap();
        let rec = doc::encode_record("dup", &d.meta, br#"{"k":1,"\u006b":2}"#);
        db.testing_overwrite_record("dup", &rec).await.unwrap();
        let docs = db.changes(0, 10).await.unwrap();
        assert_eq!(ids(&docs, |d| &d.id), ["a/1", "a/2", "dup"]);
        assert_eq!(db.stats().unreadable_records, 1);
        // The raw feed (what replication sends) skips both: no peer is sent
        // a body it would refuse.
        let raw = db.changes_raw(0, 10).await.unwrap();
        assert_eq!(ids(&raw, |d| &d.id), ["a/1", "a/2"]);
        let seen = db.unreadable_seen();
        assert_eq!(seen.len(), 2);
        assert!(seen[1].error.contains("duplicate_key"), "{:?}", seen[1]);
        let rep = db.integrity_check().await.unwrap();
        for id in ["\"deep\"", "\"dup\""] {
            assert!(
                rep.problems.iter().any(|p| p.contains(id)),
                "{id}: {:?}",
                rep.problems
            );
        }
        assert_eq!(db.quarantine_unreadable().await.unwrap().len(), 2);
        let rep = db.integrity_check().await.unwrap();
        assert!(rep.is_ok(), "{:?}", rep.problems);
        assert_eq!(rep.documents, 2);
    });
}

#[test]
fn the_hub_storage_read_of_a_session_goes_on_past_it() {
    use outpost::sync::driver::hub_storage;
    use outpost::sync::{HubAction, HubEvent};
    block_on(async {
        let (_store, db) = planted().await;
        // What a hub session reads for an edge whose cursor is behind the
        // bad records: pages of 2, until the feed is complete; the same
        // for a session whose read scope is narrow.
        let narrow = outpost::sync::Prefixes::parse(&["a".into(), "bad".into()]).unwrap();
        for scope in [None, Some(narrow)] {
            let mut after = 0;
            let mut got = Vec::new();
            loop {
                let action = HubAction::ReadChanges {
                    after,
                    max_docs: 2,
                    scope: scope.clone(),
                };
                match hub_storage(&db, "edge", &action, |_| {}).await {
                    Some(HubEvent::ChangesRead {
                        docs,
                        complete,
                        last_etag,
                        horizon: 0,
                        compacted: 0,
                    }) => {
                        got.extend(docs.docs().iter().map(|d| d.id.clone()));
                        if complete {
                            assert_eq!(last_etag, db.stats().last_etag);
                            break;
                        }
                        after = docs.docs().last().unwrap().meta.etag;
                    }
                    other => panic!("expected ChangesRead, got {other:?}"),
                }
            }
            assert_eq!(got, ["a/1", "a/2", "a/3"], "scope {scope:?}");
        }
    });
}

/// The spliced reads (what the bindings hand `JSON.parse`) with a body
/// whose framing is sound but whose members are not JSON: the text does
/// not parse, so the read is made again the engine's way, which skips and
/// remembers the record and still fills the page, as `scan` and `changes`
/// do; a `get` of it is `CorruptRecord`. Without the damaged body the
/// caller gets the spliced text, in the shape of the parsed read.
#[test]
fn a_spliced_read_of_a_body_that_does_not_parse_falls_back_to_the_engines_read() {
    use outpost::Spliced;
    use serde_json::Value;
    let parse = |t: &str| serde_json::from_str::<Value>(t).ok();
    let as_docs = |d: &outpost::Document| {
        let mut o = d.body.as_object().cloned().unwrap_or_default();
        o.insert("@metadata".into(), Value::Object(d.metadata_json()));
        Value::Object(o)
    };
    block_on(async {
        let store = Arc::new(MemoryStore::new());
        let db = open(&store).await;
        for id in ["a/1", "a/2", "a/3", "a/4"] {
            put_in(&db, id, "Things").await;
        }
        db.delete("a/4").await.unwrap();
        // Undamaged: the spliced text is the parsed read's JSON form.
        let want: Vec<Value> = db
            .scan("a/", None, 10)
            .await
            .unwrap()
            .iter()
            .map(as_docs)
            .collect();
        match db.scan_spliced("a/", None, 10, parse).await.unwrap() {
            Spliced::Text(v) => assert_eq!(v, Value::Array(want)),
            Spliced::Parsed(d) => panic!("an undamaged page was parsed: {d:?}"),
        }
        let want: Vec<Value> = db
            .changes(0, 10)
            .await
            .unwrap()
            .iter()
            .map(as_docs)
            .collect();
        match db.changes_spliced(0, 10, parse).await.unwrap() {
            Spliced::Text(v) => assert_eq!(v, Value::Array(want)),
            Spliced::Parsed(d) => panic!("an undamaged feed page was parsed: {d:?}"),
        }

        // `a/2`'s body: one object by its brackets, not JSON inside.
        let d = db.get("a/2").await.unwrap().unwrap();
        let rec = doc::encode_record("a/2", &d.meta, br#"{"id":tru}"#);
        db.testing_overwrite_record("a/2", &rec).await.unwrap();
        assert_eq!(db.unreadable_seen().len(), 0);

        // A page of two: the parsed read skips `a/2` and still has two.
        match db.scan_spliced("a/", None, 2, parse).await.unwrap() {
            Spliced::Parsed(d) => assert_eq!(ids(&d, |d| &d.id), ["a/1", "a/3"]),
            Spliced::Text(v) => panic!("a page with a damaged body was spliced: {v}"),
        }
        let seen = db.unreadable_seen();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].key, "a/2");
        match db.changes_spliced(0, 3, parse).await.unwrap() {
            Spliced::Parsed(d) => assert_eq!(ids(&d, |d| &d.id), ["a/1", "a/3", "a/4"]),
            Spliced::Text(v) => panic!("a feed page with a damaged body was spliced: {v}"),
        }
        // Pages that do not hold it are still spliced.
        assert!(matches!(
            db.scan_spliced("a/", Some("a/2"), 10, parse).await.unwrap(),
            Spliced::Text(_)
        ));
        let e = db.get_spliced("a/2", parse).await.unwrap_err();
        assert_eq!(e.code(), "corrupt", "{e}");
        assert!(matches!(
            db.get_spliced("a/1", parse).await.unwrap(),
            Some(Spliced::Text(_))
        ));
        assert!(db.get_spliced("a/4", parse).await.unwrap().is_none());
        assert!(db.get_spliced("a/9", parse).await.unwrap().is_none());
    });
}

/// A record whose value's overflow chain is damaged (its second page points
/// back to the first, so the pages after it are lost to the tree): a read of
/// it fails naming a page, the scans and the changes feed skip it, the
/// integrity check names it as an unreadable record, and the repair sets it
/// aside and frees the pages past the damage, after which the database
/// checks clean (no page leaked) and reuses them.
#[test]
fn a_damaged_overflow_chain_is_set_aside_and_its_lost_pages_freed() {
    // A chain that comes back to its first page, and one whose second page
    // does not read at all.
    for unreadable in [false, true] {
        block_on(damaged_chain(unreadable));
    }
}

async fn damaged_chain(unreadable: bool) {
    let store = Arc::new(MemoryStore::new());
    let db = open(&store).await;
    put_in(&db, "a/1", "Things").await;
    let opts = || PutOptions {
        collection: Some("Things".into()),
        ..Default::default()
    };
    let text = "x".repeat(6 * 4096);
    db.put_with("big/1", json!({ "text": text }), opts())
        .await
        .unwrap();
    put_in(&db, "a/2", "Things").await;
    let chain = db
        .testing_break_overflow_chain("big/1", unreadable)
        .await
        .unwrap();
    assert!(chain.len() >= 6, "{chain:?}");

    // A read of it names the damage; the scans and the changes feed
    // skip it, remember it, and go on past it.
    let e = db.get("big/1").await.unwrap_err();
    assert_eq!(e.code(), "corrupt", "{e}");
    assert_eq!(db.unreadable_seen().len(), 0);
    let all = db.scan("", None, 10).await.unwrap();
    assert_eq!(ids(&all, |d| &d.id), ["a/1", "a/2"]);
    assert_eq!(db.scan_ids("", None, 10).await.unwrap(), ["a/1", "a/2"]);
    let feed = db.changes_raw(0, 10).await.unwrap();
    assert_eq!(ids(&feed, |d| &d.id), ["a/1", "a/2"]);
    let listed = db.by_collection("Things", None, 10).await.unwrap();
    assert_eq!(ids(&listed, |d| &d.id), ["a/1", "a/2"]);
    let seen = db.unreadable_seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].key, "big/1");
    assert!(
        seen[0].error.contains("a page holding it is damaged"),
        "{seen:?}"
    );
    let rep = db.integrity_check().await.unwrap();
    assert!(
        rep.problems
            .iter()
            .any(|p| p.starts_with("unreadable record \"big/1\"")
                && p.contains("a page holding it is damaged")
                && p.contains("outpost repair")),
        "{:?}",
        rep.problems
    );
    let found = db.find_unreadable().await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].key.as_str(), found[0].bytes), ("big/1", 0));
    assert!(found[0].etag.is_some());

    let moved = db.quarantine_unreadable().await.unwrap();
    assert_eq!(moved, found);
    let rep = db.integrity_check().await.unwrap();
    assert!(rep.is_ok(), "{:?}", rep.problems);
    assert_eq!(db.count().await.unwrap(), 2);
    assert_eq!(
        db.collections().await.unwrap(),
        vec![("Things".to_string(), 2)]
    );
    let kept = db
        .get_local(&quarantine_key(b"big/1", found[0].etag))
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some(&[][..]), "an empty record marks it");
    assert!(db.find_unreadable().await.unwrap().is_empty());

    // The freed pages serve new writes; the database reopens clean.
    let pages = store.page_count();
    db.put_with("big/2", json!({ "text": text }), opts())
        .await
        .unwrap();
    assert!(
        store.page_count() < pages + chain.len(),
        "a value as long as the lost chain went to freed pages: {pages} -> {}",
        store.page_count()
    );
    db.close().await.unwrap();
    store.reopen();
    let db = open(&store).await;
    let rep = db.integrity_check().await.unwrap();
    assert!(rep.is_ok(), "{:?}", rep.problems);
    assert_eq!(db.get("big/2").await.unwrap().unwrap().body["text"], text);
}
