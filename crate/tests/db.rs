//! Engine tests over the in-memory store: the document API, atomicity,
//! optimistic concurrency, snapshots, group commit, reopen, bad input.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::executor::block_on;
use outpost::store::MemoryStore;
use outpost::{
    Batch, ChangeVector, CvOrder, Database, Error, Expected, OpenOptions, PageStore, PutOptions,
};
use outpost_testkit::store::TestStore;
use outpost_testkit::{open, opts, put_first_patient};
use serde_json::json;
use std::future::Future;

/// A fresh in-memory store and a database open on it (testkit options).
async fn fresh() -> (Arc<MemoryStore>, Database<Arc<MemoryStore>>) {
    let store = Arc::new(MemoryStore::new());
    let db = open(&store).await;
    (store, db)
}

/// Asserts that the integrity check of `db` finds no problem.
async fn assert_sound<S: PageStore>(db: &Database<S>) {
    let rep = db.integrity_check().await.unwrap();
    assert!(rep.is_ok(), "{:?}", rep.problems);
}

/// `scan_ids` lists exactly the ids `scan` returns (as written, in id
/// order, tombstones left out), with the same prefix, paging and limit.
#[test]
fn scan_ids_lists_what_scan_returns() {
    block_on(async {
        let (_store, db) = fresh().await;
        for i in 0..300 {
            let id = if i % 3 == 0 {
                format!("Notes/N{i:03}")
            } else {
                format!("notes/n{i:03}")
            };
            db.put(&id, json!({"i": i})).await.unwrap();
        }
        db.put("other/x", json!({})).await.unwrap();
        for i in (0..300).step_by(7) {
            db.delete(&format!("notes/n{i:03}")).await.unwrap();
        }
        for (prefix, after, limit) in [
            ("notes/", None, usize::MAX),
            ("NOTES/N1", None, usize::MAX),
            ("notes/", Some("notes/n100"), 50),
            ("", None, 10),
            ("none/", None, 10),
            ("notes/", None, 0),
        ] {
            let docs = db.scan(prefix, after, limit).await.unwrap();
            let ids = db.scan_ids(prefix, after, limit).await.unwrap();
            assert_eq!(
                ids,
                docs.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
                "{prefix} {after:?} {limit}"
            );
        }
        let all = db.scan_ids("notes/", None, usize::MAX).await.unwrap();
        assert_eq!(all.len(), 300 - 43);
        assert!(
            all.contains(&"Notes/N003".to_string()) && !all.contains(&"notes/n007".to_string())
        );
    });
}

/// `scan_within` pages by stored bytes as well as by count: pages of
/// small documents hold up to the limit, a large document ends its page
/// (and is never left out), tombstones are skipped, and paging through it
/// returns exactly what one `scan` does; only an empty page is the end.
#[test]
fn scan_within_ends_a_page_at_its_byte_budget() {
    block_on(async {
        let (_store, db) = fresh().await;
        let big = "b".repeat(50_000);
        for i in 0..200 {
            let body = if i % 50 == 7 {
                json!({"i": i, "big": big})
            } else {
                json!({"i": i})
            };
            db.put(&format!("notes/{i:03}"), body).await.unwrap();
        }
        for i in (0..200).step_by(9) {
            db.delete(&format!("notes/{i:03}")).await.unwrap();
        }
        let snap = db.snapshot();
        let all = snap.scan("notes/", None, usize::MAX).await.unwrap();
        let mut paged = Vec::new();
        let mut sizes = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = snap
                .scan_within("notes/", after.as_deref(), 30, 20_000)
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            sizes.push(page.len());
            // A large document is the last of its page.
            for d in &page[..page.len() - 1] {
                assert!(d.body.get("big").is_none(), "{} inside a page", d.id);
            }
            paged.extend(page);
        }
        let ids = |v: &[outpost::Document]| v.iter().map(|d| d.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&paged), ids(&all));
        assert!(sizes.iter().all(|&n| (1..=30).contains(&n)), "{sizes:?}");
        assert!(sizes.iter().filter(|&&n| n == 30).count() >= 2, "{sizes:?}");
        assert!(sizes.iter().filter(|&&n| n < 30).count() >= 4, "{sizes:?}");
        // A budget of one byte: one document per page.
        let one = snap.scan_within("notes/", None, 30, 1).await.unwrap();
        assert_eq!(ids(&one), ids(&all[..1]));
    })
}

#[test]
fn put_get_delete_roundtrip() {
    block_on(async {
        let (_store, db) = fresh().await;
        let r = put_first_patient(&db).await;
        assert_eq!(r.change_vector.get(&db.db_id()), 1);
        let d = db
            .get("Patients/DR-7/P1")
            .await
            .unwrap()
            .expect("case-insensitive lookup");
        assert_eq!(d.id, "patients/dr-7/p1");
        assert_eq!(d.body["name"], "Ada");
        assert_eq!(d.meta.collection.as_deref(), Some("Patients"));
        assert_eq!(d.meta.last_modified_ms, 1_700_000_000_000);
        // update keeps history in the change vector
        let r2 = db
            .put("patients/dr-7/p1", json!({"name": "Ada L."}))
            .await
            .unwrap();
        assert_eq!(r2.etag, 2);
        assert_eq!(r2.change_vector.compare(&r.change_vector), CvOrder::Newer);
        // delete writes a tombstone
        let del = db.delete("patients/dr-7/p1").await.unwrap().unwrap();
        assert!(del.deleted);
        assert_eq!(del.change_vector.compare(&r2.change_vector), CvOrder::Newer);
        assert!(db.get("patients/dr-7/p1").await.unwrap().is_none());
        let t = db.get_version("patients/dr-7/p1").await.unwrap().unwrap();
        assert!(t.meta.flags.is_tombstone());
        assert_eq!(t.meta.change_vector, del.change_vector);
        assert!(
            db.delete("patients/dr-7/p1").await.unwrap().is_none(),
            "second delete is a no-op"
        );
        assert!(db.delete("nope").await.unwrap().is_none());
        assert_eq!(db.count().await.unwrap(), 0);
        assert_eq!(db.stats().tombstones, 1);
        assert_sound(&db).await;
    });
}

#[test]
fn scan_changes_collections() {
    block_on(async {
        let (_store, db) = fresh().await;
        for i in 0..300 {
            let (prefix, coll) = if i % 3 == 0 {
                ("patients/dr-7/", "Patients")
            } else {
                ("invoices/", "Invoices")
            };
            db.put(
                &format!("{prefix}{i:04}"),
                json!({"n": i, "@metadata": {"@collection": coll}}),
            )
            .await
            .unwrap();
        }
        let page1 = db.scan("patients/dr-7/", None, 40).await.unwrap();
        assert_eq!(page1.len(), 40);
        let page2 = db
            .scan("patients/dr-7/", Some(&page1[39].id), 1000)
            .await
            .unwrap();
        assert_eq!(page2.len(), 60);
        assert!(
            page1
                .iter()
                .chain(&page2)
                .all(|d| d.id.starts_with("patients/dr-7/"))
        );
        let ids: Vec<_> = page1.iter().chain(&page2).map(|d| d.id.clone()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        // prefix is case-insensitive
        assert_eq!(db.scan("PATIENTS/", None, 1000).await.unwrap().len(), 100);
        // changes feed in etag order, tombstones included
        db.delete("invoices/0001").await.unwrap();
        db.put("patients/dr-7/0000", json!({"n": "again"}))
            .await
            .unwrap();
        let ch = db.changes(295, 100).await.unwrap();
        let etags: Vec<u64> = ch.iter().map(|d| d.meta.etag).collect();
        assert_eq!(etags, vec![296, 297, 298, 299, 300, 301, 302]);
        assert!(ch[5].meta.flags.is_tombstone());
        assert_eq!(ch[6].id, "patients/dr-7/0000");
        assert_eq!(db.changes(0, 10_000).await.unwrap().len(), 300);
        let colls = db.collections().await.unwrap();
        assert_eq!(
            colls,
            vec![("Invoices".to_string(), 199), ("Patients".to_string(), 100)]
        );
        let inv = db.by_collection("invoices", None, 10).await.unwrap();
        assert_eq!(inv.len(), 10);
        assert_eq!(db.count().await.unwrap(), 299);
        assert_sound(&db).await;
    });
}

#[test]
fn batch_is_atomic_and_expected_change_vectors() {
    block_on(async {
        let (_store, db) = fresh().await;
        let a = db.put("a", json!({"v": 1})).await.unwrap();
        let mut b = Batch::new();
        b.put("b", json!({"v": 2}));
        b.put_with(
            "a",
            json!({"v": 3}),
            PutOptions {
                expected: Expected::Cv(ChangeVector::new()),
                ..Default::default()
            },
        );
        let err = db.commit(b).await.unwrap_err();
        assert!(matches!(err, Error::ConcurrencyConflict { .. }), "{err}");
        assert_eq!(err.code(), "concurrency_conflict");
        assert!(
            db.get("b").await.unwrap().is_none(),
            "nothing of a failed batch is written"
        );
        assert_eq!(db.get("a").await.unwrap().unwrap().body["v"], 1);
        // a matching expectation succeeds
        let mut b = Batch::new();
        b.put("b", json!({"v": 2}));
        b.put_with(
            "a",
            json!({"v": 3}),
            PutOptions {
                expected: Expected::Cv(a.change_vector.clone()),
                ..Default::default()
            },
        );
        let info = db.commit(b).await.unwrap();
        assert_eq!(info.results.len(), 2);
        assert_eq!(db.get("a").await.unwrap().unwrap().body["v"], 3);
        // Expected::Missing reserves a name once
        let reserve = |db: Database<Arc<MemoryStore>>| async move {
            db.put_with(
                "names/alice",
                json!({}),
                PutOptions {
                    expected: Expected::Missing,
                    ..Default::default()
                },
            )
            .await
        };
        assert!(reserve(db.clone()).await.is_ok());
        assert!(matches!(
            reserve(db.clone()).await,
            Err(Error::ConcurrencyConflict { .. })
        ));
        // a bad op anywhere rejects the batch before anything is applied
        let mut b = Batch::new();
        b.put("c", json!({}));
        b.put("", json!({}));
        assert_eq!(db.commit(b).await.unwrap_err().code(), "invalid_id");
        assert!(db.get("c").await.unwrap().is_none());
        assert_sound(&db).await;
    });
}

/// A batch large enough to be prepared on a thread of its own while it
/// applies (natively, from 256 operations) is as atomic as a small one, and
/// a refusal found while preparing wins over one found while applying, as
/// when every operation was prepared first.
#[test]
fn a_large_batch_prepared_ahead_is_atomic() {
    block_on(async {
        let (_store, db) = fresh().await;
        let big = |bad: Option<usize>, missing: Option<usize>| {
            let mut b = Batch::new();
            for i in 0..1_000 {
                let id = format!("big/{i:04}");
                if bad == Some(i) {
                    b.put_json(id, b"{\"a\": 1, \"a\": 2}".to_vec(), PutOptions::default());
                } else if missing == Some(i) {
                    let opts = PutOptions {
                        expected: Expected::Missing,
                        ..Default::default()
                    };
                    b.put_with("big/0000", json!({"i": i}), opts);
                } else {
                    b.put_json(
                        id,
                        format!("{{\"i\": {i}}}").into_bytes(),
                        PutOptions::default(),
                    );
                }
            }
            b
        };
        let info = db.commit(big(None, None)).await.unwrap();
        assert_eq!(info.results.len(), 1_000);
        assert_eq!(db.count().await.unwrap(), 1_000);
        let last = db.get("big/0999").await.unwrap().unwrap();
        assert_eq!(last.body["i"], 999);
        let cv_of_500 = || async {
            db.get("big/0500")
                .await
                .unwrap()
                .unwrap()
                .meta
                .change_vector
        };
        let before = cv_of_500().await;

        // A body refused in the last chunks: nothing of the batch is written.
        let err = db.commit(big(Some(990), None)).await.unwrap_err();
        assert_eq!(err.code(), "invalid_json", "{err}");
        // A conflict found while applying an early operation, a body refused
        // later: the body's refusal is the answer.
        let err = db.commit(big(Some(800), Some(10))).await.unwrap_err();
        assert_eq!(err.code(), "invalid_json", "{err}");
        // A conflict alone, past the first chunks.
        let err = db.commit(big(None, Some(700))).await.unwrap_err();
        assert_eq!(err.code(), "concurrency_conflict", "{err}");

        assert_eq!(db.count().await.unwrap(), 1_000);
        let after = cv_of_500().await;
        assert_eq!(before, after, "no failed batch changed a document");
        assert_sound(&db).await;
    });
}

#[test]
fn bad_input_is_typed_errors() {
    block_on(async {
        let (_store, db) = fresh().await;
        let long = "x".repeat(513);
        for (id, code) in [
            ("", "invalid_id"),
            ("a\nb", "invalid_id"),
            ("\u{0}", "invalid_id"),
            (long.as_str(), "invalid_id"),
        ] {
            assert_eq!(
                db.put(id, json!({})).await.unwrap_err().code(),
                code,
                "{id:?}"
            );
            assert_eq!(db.get(id).await.unwrap_err().code(), code);
        }
        assert_eq!(
            db.put("ok", json!([1, 2])).await.unwrap_err().code(),
            "invalid_json"
        );
        assert_eq!(
            db.put("ok", json!("str")).await.unwrap_err().code(),
            "invalid_json"
        );
        assert_eq!(
            db.put_with(
                "ok",
                json!({}),
                PutOptions {
                    collection: Some("bad\u{7}".into()),
                    ..Default::default()
                }
            )
            .await
            .unwrap_err()
            .code(),
            "invalid_collection"
        );
        assert_eq!(
            db.put("ok", json!({"@metadata": {"@collection": ""}}))
                .await
                .unwrap_err()
                .code(),
            "invalid_collection"
        );
        assert_eq!(db.count().await.unwrap(), 0);
        assert_sound(&db).await;
    });
}

#[test]
fn large_documents_use_overflow_pages_and_are_freed() {
    block_on(async {
        let (_store, db) = fresh().await;
        let big = "z".repeat(300_000);
        db.put("big", json!({"blob": big})).await.unwrap();
        assert_eq!(
            db.get("big").await.unwrap().unwrap().body["blob"]
                .as_str()
                .unwrap()
                .len(),
            300_000
        );
        let pages_with_big = db.stats().pages;
        db.put("big", json!({"blob": "small now"})).await.unwrap();
        db.put("other", json!({"blob": "y".repeat(250_000)}))
            .await
            .unwrap();
        // the overflow pages of the first version were reused for the second document
        assert!(
            db.stats().pages < pages_with_big + 20,
            "{} vs {}",
            db.stats().pages,
            pages_with_big
        );
        assert_sound(&db).await;
    });
}

#[test]
fn reopen_keeps_everything() {
    block_on(async {
        let (store, db) = fresh().await;
        let id = db.db_id();
        for i in 0..2000 {
            db.put(
                &format!("docs/{i}"),
                json!({"i": i, "pad": "p".repeat(i % 700)}),
            )
            .await
            .unwrap();
        }
        for i in (0..2000).step_by(3) {
            db.delete(&format!("docs/{i}")).await.unwrap();
        }
        let before = db.stats();
        db.close().await.unwrap();
        assert_eq!(db.put("x", json!({})).await.unwrap_err().code(), "closed");
        store.reopen();
        let db = open(&store).await;
        assert_eq!(db.db_id(), id);
        let after = db.stats();
        assert_eq!(
            (after.documents, after.tombstones, after.last_etag),
            (before.documents, before.tombstones, before.last_etag)
        );
        assert_eq!(db.get("docs/1").await.unwrap().unwrap().body["i"], 1);
        assert!(db.get("docs/3").await.unwrap().is_none());
        let r = db.put("docs/3", json!({"back": true})).await.unwrap();
        assert_eq!(r.etag, before.last_etag + 1);
        assert_sound(&db).await;
    });
}

#[test]
fn snapshots_are_stable_while_writes_commit() {
    block_on(async {
        let (_store, db) = fresh().await;
        for i in 0..200 {
            db.put(
                &format!("k/{i:04}"),
                json!({"v": 0, "pad": "a".repeat(200)}),
            )
            .await
            .unwrap();
        }
        let snap = db.snapshot();
        for round in 1..=3 {
            for i in 0..200 {
                if i % 2 == 0 {
                    db.put(
                        &format!("k/{i:04}"),
                        json!({"v": round, "pad": "b".repeat(200)}),
                    )
                    .await
                    .unwrap();
                } else {
                    db.delete(&format!("k/{i:04}")).await.unwrap();
                    db.put(&format!("k/{i:04}"), json!({"v": round}))
                        .await
                        .unwrap();
                }
            }
        }
        // the old snapshot still sees version 0 everywhere, page reuse notwithstanding
        let all = snap.scan("k/", None, 10_000).await.unwrap();
        assert_eq!(all.len(), 200);
        assert!(all.iter().all(|d| d.body["v"] == 0));
        assert!(snap.integrity_check().await.unwrap().is_ok());
        drop(snap);
        let now = db.scan("k/", None, 10_000).await.unwrap();
        assert!(now.iter().all(|d| d.body["v"] == 3));
        assert_sound(&db).await;
    });
}

/// `OpenOptions::durability`: strict by default (no relaxed commit);
/// relaxed asks the store for relaxed commits, and `close` makes them
/// durable with a barrier.
#[test]
fn relaxed_durability_is_asked_of_the_store_and_close_syncs() {
    block_on(async {
        let mem = Arc::new(MemoryStore::new());
        let store = Arc::new(TestStore::new(mem.clone(), false));
        let db = Database::open(store.clone(), opts()).await.unwrap();
        db.put("a", json!({"a": 1})).await.unwrap();
        assert_eq!(
            store.relaxed.load(Ordering::Relaxed),
            0,
            "strict by default"
        );
        db.close().await.unwrap();

        mem.reopen();
        let store = Arc::new(TestStore::new(mem.clone(), false));
        let relaxed = OpenOptions {
            durability: outpost::store::Durability::Relaxed,
            ..opts()
        };
        let db = Database::open(store.clone(), relaxed).await.unwrap();
        for i in 0..5 {
            db.put(&format!("r/{i}"), json!({"i": i})).await.unwrap();
        }
        assert_eq!(store.relaxed.load(Ordering::Relaxed), 5);
        let syncs = store.syncs.load(Ordering::Relaxed);
        db.close().await.unwrap();
        assert_eq!(
            store.syncs.load(Ordering::Relaxed),
            syncs + 1,
            "close syncs"
        );
        mem.reopen();
        let db = Database::open(mem.clone(), opts()).await.unwrap();
        assert_eq!(db.count().await.unwrap(), 6);
    });
}

/// `Batch::durability`: a write may ask for relaxed durability on a strict
/// database, or for durability on a relaxed one; a group commit is relaxed
/// only when every write in it asked so, and durable when one did.
#[test]
fn a_write_may_ask_its_own_durability() {
    use outpost::store::Durability;
    block_on(async {
        let mem = Arc::new(MemoryStore::new());
        let store = Arc::new(TestStore::new(mem.clone(), true));
        let db = Database::open(store.clone(), opts()).await.unwrap();
        let relaxed = || store.relaxed.load(Ordering::Relaxed);
        let commits = || store.inner.commit_count();
        let mut b = Batch::new();
        b.put("a", json!({"a": 1})).durability(Durability::Relaxed);
        db.commit(b).await.unwrap();
        assert_eq!(relaxed(), 1, "a relaxed write on a strict database");
        db.put("b", json!({"b": 1})).await.unwrap();
        assert_eq!(relaxed(), 1, "the default stays strict");
        // Relaxed writes alone: every group commit relaxed.
        let (r0, c0) = (relaxed(), commits());
        // 40 concurrent writes under `prefix`, write i relaxed when `relaxed(i)`.
        let concurrent = |prefix: &'static str, relaxed: fn(i32) -> bool| {
            let writes: Vec<_> = (0..40)
                .map(|i| {
                    let db = db.clone();
                    async move {
                        let mut b = Batch::new();
                        b.put(format!("{prefix}/{i:02}"), json!({ "i": i }));
                        if relaxed(i) {
                            b.durability(Durability::Relaxed);
                        }
                        db.commit(b).await
                    }
                })
                .collect::<Vec<_>>();
            futures::future::join_all(writes)
        };
        assert!(concurrent("r", |_| true).await.iter().all(Result::is_ok));
        assert!(commits() > c0);
        assert_eq!(relaxed() - r0, commits() - c0, "only relaxed commits");
        // Mixed with strict writes: the groups holding them are durable.
        let (r0, c0) = (relaxed(), commits());
        assert!(
            concurrent("m", |i| i % 10 != 0)
                .await
                .iter()
                .all(Result::is_ok)
        );
        let durable = (commits() - c0) - (relaxed() - r0);
        assert!(durable >= 1, "the strict writes' groups were durable");
        db.close().await.unwrap();

        // A relaxed database: a write asking for durability gets it.
        mem.reopen();
        let store = Arc::new(TestStore::new(mem.clone(), false));
        let relaxed_db = OpenOptions {
            durability: Durability::Relaxed,
            ..opts()
        };
        let db = Database::open(store.clone(), relaxed_db).await.unwrap();
        let r0 = store.relaxed.load(Ordering::Relaxed);
        db.put("c", json!({"c": 1})).await.unwrap();
        assert_eq!(store.relaxed.load(Ordering::Relaxed), r0 + 1);
        let mut b = Batch::new();
        b.put("d", json!({"d": 1})).durability(Durability::Durable);
        db.commit(b).await.unwrap();
        assert_eq!(
            store.relaxed.load(Ordering::Relaxed),
            r0 + 1,
            "a durable write on a relaxed database"
        );
        db.close().await.unwrap();
        mem.reopen();
        let db = Database::open(mem.clone(), opts()).await.unwrap();
        assert_eq!(db.count().await.unwrap(), 84);
    });
}

#[test]
fn concurrent_writers_share_flushes() {
    block_on(async {
        let store = Arc::new(TestStore::new(Arc::new(MemoryStore::new()), true));
        let db = Database::open(store.clone(), opts()).await.unwrap();
        let commits_before = store.inner.commit_count();
        let futs: Vec<_> = (0..200)
            .map(|i| {
                let db = db.clone();
                async move { db.put(&format!("c/{i:03}"), json!({"i": i})).await }
            })
            .collect();
        let results = futures::future::join_all(futs).await;
        assert!(results.iter().all(|r| r.is_ok()));
        let commits = store.inner.commit_count() - commits_before;
        assert!(
            commits <= 10,
            "{commits} store commits for 200 concurrent writes"
        );
        assert_eq!(db.count().await.unwrap(), 200);
        let etags: std::collections::BTreeSet<u64> =
            results.iter().map(|r| r.as_ref().unwrap().etag).collect();
        assert_eq!(etags.len(), 200, "every write got its own etag");
        assert_sound(&db).await;
    });
}

/// Writers that each write one document after another (as a server's
/// sessions do): the writers a flush releases apply their next write before
/// the next flush takes the generation, so each round of writes is one
/// store commit, not two alternating halves of the writers.
#[test]
fn writers_a_flush_released_join_the_next_flush_together() {
    block_on(async {
        let store = Arc::new(TestStore::new(Arc::new(MemoryStore::new()), true));
        let db = Database::open(store.clone(), opts()).await.unwrap();
        let before = store.inner.commit_count();
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let db = db.clone();
                async move {
                    for k in 0..20 {
                        db.put(&format!("w{w}/{k:02}"), json!({ "k": k })).await?;
                    }
                    Ok::<_, Error>(())
                }
            })
            .collect();
        for r in futures::future::join_all(writers).await {
            r.unwrap();
        }
        let commits = store.inner.commit_count() - before;
        // 20 rounds of 8 writes; two groups a round was 40 or more.
        assert!(
            commits <= 24,
            "{commits} store commits for 8 writers writing 20 documents each"
        );
        assert_eq!(db.count().await.unwrap(), 160);
        assert_sound(&db).await;
    });
}

#[test]
fn a_dropped_transaction_leaves_nothing_behind() {
    block_on(async {
        let store = Arc::new(TestStore::new(Arc::new(MemoryStore::new()), true));
        let db = Database::open(store.clone(), opts()).await.unwrap();
        for i in 0..50 {
            db.put(&format!("d/{i}"), json!({"i": i})).await.unwrap();
        }
        // Start a big batch and drop it after its first poll (mid-flush or mid-apply).
        let mut b = Batch::new();
        for i in 0..500 {
            b.put(format!("e/{i}"), json!({"i": i}));
        }
        {
            let mut fut = Box::pin(db.commit(b));
            let waker = futures::task::noop_waker();
            let mut cx = std::task::Context::from_waker(&waker);
            let _ = fut.as_mut().poll(&mut cx);
        }
        db.put("after", json!({})).await.unwrap();
        assert_sound(&db).await;
    });
}

#[test]
fn open_reads_almost_nothing_and_the_cache_is_bounded() {
    block_on(async {
        let (store, db) = fresh().await;
        let mut b = Batch::new();
        for i in 0..20_000 {
            b.put(
                format!("docs/{i:06}"),
                json!({"i": i, "pad": "q".repeat(400)}),
            );
        }
        db.commit(b).await.unwrap();
        for i in (0..20_000).step_by(7) {
            db.delete(&format!("docs/{i:06}")).await.unwrap();
        }
        let pages = db.stats().pages;
        assert!(pages > 2_000, "{pages} pages");
        db.close().await.unwrap();
        store.reopen();
        let counting = Arc::new(TestStore::new(store.clone(), false));
        let opts = OpenOptions {
            cache_bytes: 32 * 4096,
            ..opts()
        };
        let db = Database::open(counting.clone(), opts).await.unwrap();
        let at_open = counting.reads.load(Ordering::Relaxed);
        // The open reads the meta record only: no page (the free list is
        // read by the first write).
        assert_eq!(at_open, 0, "page reads to open {pages} pages");
        let before = counting.reads.load(Ordering::Relaxed);
        assert_eq!(
            db.get("docs/012345").await.unwrap().unwrap().body["i"],
            12345
        );
        let per_get = counting.reads.load(Ordering::Relaxed) - before;
        assert!(per_get <= 6, "{per_get} page reads for one get");
        // A full scan goes through a 32-page cache, its leaves read ahead
        // in batches of at most 8 pages (a quarter of the cache), each page
        // read once.
        let (singles, batched) = (
            counting.reads.load(Ordering::Relaxed),
            counting.batched.load(Ordering::Relaxed),
        );
        let mut after = None;
        let mut seen = 0;
        loop {
            let page = db.scan("docs/", after.as_deref(), 1000).await.unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            seen += page.len();
        }
        assert_eq!(seen as u64, db.count().await.unwrap());
        let cache = db.stats().cache;
        assert!(cache.pages <= 32 && cache.capacity_pages == 32, "{cache:?}");
        let singles = counting.reads.load(Ordering::Relaxed) - singles;
        let batched = counting.batched.load(Ordering::Relaxed) - batched;
        let batches = counting.batches.load(Ordering::Relaxed);
        assert!(
            batched > 8 * singles && batched <= 8 * batches,
            "{singles} single page reads, {batched} read ahead in {batches} batches"
        );
        assert!(
            batched + singles < pages + pages / 10,
            "{singles} + {batched} page reads for {pages} pages"
        );
    });
}

/// The free list is read by the first write after an open, not by the
/// open: a reopen and its first reads read no free-list page. A free list
/// that does not read fails that write with a typed error (the data and
/// the reads intact, nothing written), not the open.
#[test]
fn the_free_list_is_read_by_the_first_write_not_the_open() {
    block_on(async {
        let (store, db) = fresh().await;
        let mut b = Batch::new();
        // Bodies in overflow pages, which a delete frees.
        for i in 0..500 {
            b.put(format!("docs/{i:05}"), json!({"pad": "f".repeat(5_000)}));
        }
        db.commit(b).await.unwrap();
        let mut b = Batch::new();
        for i in (0..500).filter(|i| i % 10 != 1) {
            b.delete(format!("docs/{i:05}"));
        }
        db.commit(b).await.unwrap();
        let free = db.stats().free_pages;
        // More than one free-list page (500 entries each).
        assert!(free > 600, "{free} free pages");
        db.close().await.unwrap();
        store.reopen();

        let counting = Arc::new(TestStore::new(store.clone(), false));
        let db = Database::open(counting.clone(), opts()).await.unwrap();
        assert_eq!(counting.reads.load(Ordering::Relaxed), 0);
        assert!(db.get("docs/00001").await.unwrap().is_some());
        let for_get = counting.reads.load(Ordering::Relaxed);
        // The write reads the free list (a chain of pages), then reuses it:
        // the file does not grow.
        let pages = db.stats().pages;
        db.put("docs/new", json!({"a": 1})).await.unwrap();
        let for_put = counting.reads.load(Ordering::Relaxed) - for_get;
        assert!(for_put >= 2, "{for_put} page reads for the first write");
        assert_eq!(db.stats().pages, pages);
        assert_sound(&db).await;
        db.close().await.unwrap();
        store.reopen();

        // The head of the free-list chain overwritten with garbage.
        let db = open(&store).await;
        let pages = db.stats().pages;
        let meta = store.read_meta().await.unwrap();
        db.close().await.unwrap();
        store.reopen();
        let mut head = None;
        for no in 1..pages {
            if let Ok(b) = store.read_page(no).await
                && b[12] == 4
            {
                head = Some(no);
                break;
            }
        }
        let head = head.expect("a free-list page");
        store
            .commit(outpost::store::Commit {
                pages: vec![(head, Arc::new(vec![0xA5; 4096]))],
                meta: meta.unwrap(),
                durability: outpost::store::Durability::Durable,
            })
            .await
            .unwrap();
        store.reopen();
        let db = open(&store).await;
        assert_eq!(
            db.get("docs/00001").await.unwrap().unwrap().id,
            "docs/00001"
        );
        let commits = store.commit_count();
        for _ in 0..2 {
            match db.put("docs/other", json!({"a": 2})).await {
                Err(Error::CorruptRecord { record, .. }) => assert_eq!(record, "free list"),
                other => panic!("expected a corrupt free list, got {other:?}"),
            }
        }
        assert_eq!(store.commit_count(), commits, "nothing written");
        assert!(db.get("docs/other").await.unwrap().is_none());
        assert_eq!(db.count().await.unwrap(), 51);
    })
}

#[test]
fn refresh_picks_up_another_handles_commits() {
    block_on(async {
        let store = Arc::new(MemoryStore::new());
        let a = open(&store).await;
        let b = Database::open(store.clone(), opts()).await.unwrap();
        assert_eq!(
            a.db_id(),
            b.db_id(),
            "the second handle opens the same database"
        );
        assert!(!b.refresh().await.unwrap(), "nothing changed yet");
        // Take turns, as tabs holding a cross-tab lock do: refresh, then write.
        for round in 0..20 {
            let (w, r) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
            w.refresh().await.unwrap();
            let mut batch = Batch::new();
            for i in 0..50 {
                batch.put(
                    format!("r{round:02}/{i:02}"),
                    json!({"round": round, "pad": "z".repeat(300)}),
                );
            }
            w.commit(batch).await.unwrap();
            w.delete(&format!("r{round:02}/00")).await.unwrap();
            assert!(
                r.refresh().await.unwrap(),
                "round {round}: the other handle sees a change"
            );
            assert_eq!(r.count().await.unwrap(), (round + 1) * 49);
            assert_eq!(
                r.get(&format!("r{round:02}/07"))
                    .await
                    .unwrap()
                    .unwrap()
                    .body["round"],
                round
            );
        }
        for db in [&a, &b] {
            db.refresh().await.unwrap();
            assert_sound(db).await;
            assert_eq!(db.count().await.unwrap(), 20 * 49);
        }
        // A reopened handle agrees.
        let c = Database::open(store.clone(), opts()).await.unwrap();
        assert_eq!(c.count().await.unwrap(), 20 * 49);
        assert_eq!(c.stats().last_etag, a.stats().last_etag);
    });
}

#[test]
fn a_failed_commit_poisons_and_refresh_recovers() {
    block_on(async {
        let store = Arc::new(TestStore::new(Arc::new(MemoryStore::new()), false));
        let db = Database::open(store.clone(), opts()).await.unwrap();
        db.put("a", json!({"v": 1})).await.unwrap();
        store.fail.store(true, Ordering::Relaxed);
        assert_eq!(
            db.put("b", json!({"v": 2})).await.unwrap_err().code(),
            "quota_exceeded"
        );
        // Reads of the committed state still work; writes are refused.
        assert_eq!(db.get("a").await.unwrap().unwrap().body["v"], 1);
        assert_eq!(db.put("c", json!({})).await.unwrap_err().code(), "poisoned");
        store.fail.store(false, Ordering::Relaxed);
        assert_eq!(db.put("c", json!({})).await.unwrap_err().code(), "poisoned");
        // refresh() starts over from the store, which never saw the failed commit.
        assert!(db.refresh().await.unwrap());
        assert!(db.get("b").await.unwrap().is_none());
        db.put("c", json!({"v": 3})).await.unwrap();
        assert_eq!(db.count().await.unwrap(), 2);
        assert_sound(&db).await;
        db.close().await.unwrap();
        // A poisoned handle still closes.
        store.inner.reopen();
        let db = Database::open(store.clone(), opts()).await.unwrap();
        store.fail.store(true, Ordering::Relaxed);
        assert!(db.put("d", json!({})).await.is_err());
        db.close().await.unwrap();
    });
}

#[test]
fn commit_observer_reports_durable_commits_then_the_end() {
    block_on(async {
        let (_store, db) = fresh().await;
        db.put("a", json!({})).await.unwrap();
        let mut w = db.watch_commits();
        assert_eq!(w.seen(), 1);
        // Subscribed after etag 1: nothing to report yet.
        assert!(futures::FutureExt::now_or_never(w.changed()).is_none());
        let waiter = {
            let mut w = w.clone();
            async move { w.changed().await }
        };
        let (got, _) = futures::join!(waiter, async {
            db.put("b", json!({})).await.unwrap();
            db.put("c", json!({})).await.unwrap();
        });
        // Woken by a durable commit (the second may already be in when it runs).
        assert!(matches!(got, Some(2 | 3)), "{got:?}");
        // Two commits since `w` last looked: coalesced into the newest etag.
        assert_eq!(w.changed().await, Some(3));
        assert_eq!(w.last_etag(), 3);
        // A commit that writes no document does not wake anyone.
        let mut b = Batch::new();
        b.set_local(b"k".to_vec(), Some(b"v".to_vec()));
        db.commit(b).await.unwrap();
        assert!(futures::FutureExt::now_or_never(w.changed()).is_none());
        db.close().await.unwrap();
        assert_eq!(w.changed().await, None, "closed: no commit will follow");
    });
}
