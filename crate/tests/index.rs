//! Map and map/reduce indexes over the in-memory store: entries follow
//! writes, deletes and moves; queries by equality, prefix and range, sorted
//! both ways, in pages; reductions checked against a brute-force model
//! through splits and collapses of the reduce trees; the cost of one
//! update bounded by the depth; output collections and a chained index
//! (the shopping carts of issue 13); a new version built beside the old;
//! two steps racing; failing functions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::executor::block_on;
use outpost::index::{
    Emit, FnIndex, Index, IndexDefinition, IndexQuery, IndexRow, KeyRange, QueryResult,
};
use outpost::store::MemoryStore;
use outpost::{Batch, Database, Error, PageStore};
use outpost_testkit::open;
use serde_json::{Value, json};

async fn fresh() -> Database<Arc<MemoryStore>> {
    open(&Arc::new(MemoryStore::new())).await
}

async fn assert_sound<S: PageStore>(db: &Database<S>) {
    let rep = db.integrity_check().await.unwrap();
    assert!(rep.is_ok(), "{:?}", rep.problems);
}

/// Users by city (a map index over the `Users` collection).
fn by_city() -> Index {
    Index::new(
        IndexDefinition::map("users/by-city", "1", &["Users"]),
        FnIndex::map(|d| {
            let b = d.body()?;
            Ok(match b.get("city") {
                Some(c) => vec![Emit::new(c.clone(), json!(b["name"]))],
                None => vec![],
            })
        }),
    )
}

async fn query<S: PageStore>(db: &Database<S>, name: &str, q: IndexQuery) -> QueryResult {
    db.snapshot().query(name, &q).await.unwrap()
}

fn ids(rows: &[IndexRow]) -> Vec<&str> {
    rows.iter().map(|r| r.id.as_deref().unwrap()).collect()
}

fn user(name: &str, city: &str) -> Value {
    json!({"name": name, "city": city, "@metadata": {"@collection": "Users"}})
}

#[test]
fn a_map_index_follows_puts_deletes_and_moves() {
    block_on(async {
        let db = fresh().await;
        let idx = by_city();
        let mut b = Batch::new();
        b.put("users/1", user("Ann", "Oslo"))
            .put("users/2", user("Bob", "Bergen"))
            .put("users/3", user("Cy", "Oslo"))
            .put("users/4", user("Di", "Os"))
            .put("notes/1", json!({"city": "Oslo"}));
        db.commit(b).await.unwrap();
        // Not built yet: stale, empty.
        db.define_index(&idx.def).await.unwrap();
        let r = query(&db, "users/by-city", IndexQuery::default()).await;
        assert!(r.stale && r.rows.is_empty());
        let p = db.catch_up_index(&idx, None).await.unwrap();
        assert!(p.caught_up());
        let r = query(&db, "users/by-city", IndexQuery::default()).await;
        assert!(!r.stale);
        assert_eq!(ids(&r.rows), ["users/2", "users/4", "users/1", "users/3"]);
        assert_eq!(r.rows[0].key, json!("Bergen"));
        assert_eq!(r.rows[0].value, json!("Bob"));

        let eq = IndexQuery {
            range: KeyRange::Eq(json!("Oslo")),
            ..Default::default()
        };
        assert_eq!(
            ids(&query(&db, "users/by-city", eq.clone()).await.rows),
            ["users/1", "users/3"]
        );
        let prefix = IndexQuery {
            range: KeyRange::Prefix(json!("Os")),
            ..Default::default()
        };
        assert_eq!(
            ids(&query(&db, "users/by-city", prefix).await.rows),
            ["users/4", "users/1", "users/3"]
        );
        let range = IndexQuery {
            range: KeyRange::Range {
                from: Some((json!("Bergen"), false)),
                to: Some((json!("Oslo"), true)),
            },
            descending: true,
            ..Default::default()
        };
        assert_eq!(
            ids(&query(&db, "users/by-city", range).await.rows),
            ["users/3", "users/1", "users/4"]
        );
        let snap = db.snapshot();
        assert_eq!(
            snap.query_count("users/by-city", &KeyRange::Eq(json!("Oslo")))
                .await
                .unwrap(),
            2
        );

        // A move, a delete, a move out of the collection, a new one.
        let mut b = Batch::new();
        b.put("users/1", user("Ann", "Bergen"))
            .delete("users/3")
            .put(
                "users/4",
                json!({"name": "Di", "city": "Os", "@metadata": {"@collection": "Other"}}),
            )
            .put("users/5", user("Ed", "Oslo"));
        db.commit(b).await.unwrap();
        let r = query(&db, "users/by-city", eq.clone()).await;
        assert!(r.stale, "the index has not seen the last writes");
        db.catch_up_index(&idx, None).await.unwrap();
        let r = query(&db, "users/by-city", IndexQuery::default()).await;
        assert_eq!(ids(&r.rows), ["users/1", "users/2", "users/5"]);
        assert_eq!(r.rows[0].key, json!("Bergen"));
        assert_sound(&db).await;
    });
}

/// A descending query walks the tree backwards and stops after its page:
/// for every kind of range (all, equality, string and array prefixes,
/// bounds inclusive or not, a bound past every key) and both kinds of
/// index, its rows are the ascending rows reversed, whole and in pages of 3.
#[test]
fn descending_queries_are_the_ascending_rows_reversed() {
    block_on(async {
        let db = fresh().await;
        let keys = [
            json!(null),
            json!(false),
            json!(-3.5),
            json!(0),
            json!(7),
            json!(""),
            json!("Os"),
            json!("Osaka"),
            json!("Oslo"),
            json!("Oslo"),
            json!("\u{10FFFF}z"),
            json!(["a", 1]),
            json!(["a", 2]),
            json!(["a", 2, "x"]),
            json!(["b"]),
        ];
        let mut b = Batch::new();
        for (i, k) in keys.iter().enumerate() {
            b.put(format!("d/{i:02}"), json!({ "k": k }));
        }
        db.commit(b).await.unwrap();
        let map = Index::new(
            IndexDefinition::map("m", "1", &[]),
            FnIndex::map(|d| Ok(vec![Emit::new(d.body()?["k"].clone(), json!(1))])),
        );
        let reduce = Index::new(
            IndexDefinition::map_reduce("r", "1", &[]),
            FnIndex::map(|d| Ok(vec![Emit::new(d.body()?["k"].clone(), json!(1))])).with_reduce(
                |_, values, _| Ok(json!(values.iter().filter_map(Value::as_i64).sum::<i64>())),
            ),
        );
        db.catch_up_index(&map, None).await.unwrap();
        db.catch_up_index(&reduce, None).await.unwrap();
        let ranges = [
            KeyRange::All,
            KeyRange::Eq(json!("Oslo")),
            KeyRange::Eq(json!("nowhere")),
            KeyRange::Prefix(json!("Os")),
            KeyRange::Prefix(json!("")),
            KeyRange::Prefix(json!(["a"])),
            KeyRange::Prefix(json!(["a", 2])),
            KeyRange::Range {
                from: Some((json!(0), true)),
                to: Some((json!("Oslo"), true)),
            },
            KeyRange::Range {
                from: Some((json!(0), false)),
                to: Some((json!("Oslo"), false)),
            },
            KeyRange::Range {
                from: None,
                to: Some((json!(7), true)),
            },
            KeyRange::Range {
                from: Some((json!("Osaka"), true)),
                to: None,
            },
            KeyRange::Range {
                from: Some((json!(["z"]), true)),
                to: None,
            },
        ];
        let rows = |r: &QueryResult| -> Vec<(Value, Option<String>)> {
            r.rows
                .iter()
                .map(|x| (x.key.clone(), x.id.clone()))
                .collect()
        };
        for name in ["m", "r"] {
            for range in &ranges {
                let q = |descending, limit, after| IndexQuery {
                    range: range.clone(),
                    descending,
                    limit,
                    after,
                };
                let mut want = rows(&query(&db, name, q(false, 0, None)).await);
                want.reverse();
                let whole = rows(&query(&db, name, q(true, 0, None)).await);
                assert_eq!(whole, want, "{name} {range:?}");
                let mut paged = Vec::new();
                let mut after = None;
                for _ in 0..20 {
                    let r = query(&db, name, q(true, 3, after)).await;
                    paged.extend(rows(&r));
                    after = r.next;
                    if after.is_none() {
                        break;
                    }
                }
                assert_eq!(paged, want, "{name} {range:?} in pages");
            }
        }
        let all = query(
            &db,
            "m",
            IndexQuery {
                descending: true,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(all.rows.len(), keys.len());
        assert_eq!(all.rows[0].key, json!(["b"]));
    });
}

#[test]
fn pages_of_a_query_join_up_in_both_directions() {
    block_on(async {
        let db = fresh().await;
        let idx = Index::new(
            IndexDefinition::map("by-n", "1", &[]),
            FnIndex::map(|d| {
                let b = d.body()?;
                // Two entries per document: its number and a tag array.
                Ok(vec![
                    Emit::new(b["n"].clone(), json!(null)),
                    Emit::new(json!(["tag", b["n"].as_i64().unwrap() % 3]), json!(1)),
                ])
            }),
        );
        for chunk in (0..250).collect::<Vec<i64>>().chunks(50) {
            let mut b = Batch::new();
            for n in chunk {
                b.put(format!("d/{n:03}"), json!({"n": n}));
            }
            db.commit(b).await.unwrap();
        }
        db.catch_up_index(&idx, None).await.unwrap();
        for descending in [false, true] {
            let range = KeyRange::Range {
                from: Some((json!(10), true)),
                to: Some((json!(200), false)),
            };
            let mut seen = Vec::new();
            let mut after = None;
            loop {
                let r = query(
                    &db,
                    "by-n",
                    IndexQuery {
                        range: range.clone(),
                        limit: 17,
                        descending,
                        after: after.clone(),
                    },
                )
                .await;
                seen.extend(r.rows.iter().map(|r| r.key.as_i64().unwrap()));
                match r.next {
                    Some(c) => after = Some(c),
                    None => break,
                }
            }
            let mut want: Vec<i64> = (10..200).collect();
            if descending {
                want.reverse();
            }
            assert_eq!(seen, want, "descending {descending}");
        }
        // An array prefix.
        let r = query(
            &db,
            "by-n",
            IndexQuery {
                range: KeyRange::Prefix(json!(["tag", 1])),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(r.rows.len(), (0..250).filter(|n| n % 3 == 1).count());
    });
}

/// A sum and count per key, counting its calls and the values it is given.
fn sum_index(name: &str, calls: Arc<AtomicUsize>, values: Arc<AtomicUsize>) -> Index {
    Index::new(
        IndexDefinition::map_reduce(name, "1", &["Sales"]),
        FnIndex::map(|d| {
            let b = d.body()?;
            Ok(vec![Emit::new(
                b["k"].clone(),
                json!({"sum": b["v"], "n": 1}),
            )])
        })
        .with_reduce(move |_k, vs, _re| {
            calls.fetch_add(1, Ordering::Relaxed);
            values.fetch_add(vs.len(), Ordering::Relaxed);
            let mut sum = 0i64;
            let mut n = 0i64;
            for v in vs {
                sum += v["sum"].as_i64().ok_or("no sum")?;
                n += v["n"].as_i64().ok_or("no n")?;
            }
            Ok(json!({"sum": sum, "n": n}))
        }),
    )
}

fn sale(k: &str, v: i64) -> Value {
    json!({"k": k, "v": v, "@metadata": {"@collection": "Sales"}})
}

/// The reduced rows must equal a model kept beside them, through keys that
/// grow past a leaf (64), past two levels, and shrink back.
#[test]
fn reductions_match_a_model_through_splits_and_collapses() {
    block_on(async {
        let db = fresh().await;
        let idx = sum_index("sums", Default::default(), Default::default());
        let mut model: BTreeMap<String, (String, i64)> = BTreeMap::new();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |m: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % m
        };
        // Key "big" grows to ~5,000 entries (two levels), then most go.
        for round in 0..40 {
            let mut b = Batch::new();
            for _ in 0..150 {
                let doc = if round < 30 {
                    next(6000)
                } else {
                    next(6000) % 400
                };
                let id = format!("s/{doc}");
                let shrinking = round >= 30;
                if shrinking || next(10) == 0 {
                    b.delete(id.clone());
                    model.remove(&id);
                } else {
                    let k = if next(4) == 0 {
                        format!("k{}", next(5))
                    } else {
                        "big".into()
                    };
                    let v = next(1000) as i64;
                    b.put(id.clone(), sale(&k, v));
                    model.insert(id, (k, v));
                }
            }
            db.commit(b).await.unwrap();
            db.catch_up_index(&idx, None).await.unwrap();
            let mut want: BTreeMap<String, (i64, i64)> = BTreeMap::new();
            for (k, v) in model.values() {
                let e = want.entry(k.clone()).or_default();
                e.0 += v;
                e.1 += 1;
            }
            let r = query(&db, "sums", IndexQuery::default()).await;
            let got: BTreeMap<String, (i64, i64)> = r
                .rows
                .iter()
                .map(|row| {
                    (
                        row.key.as_str().unwrap().to_string(),
                        (
                            row.value["sum"].as_i64().unwrap(),
                            row.value["n"].as_i64().unwrap(),
                        ),
                    )
                })
                .collect();
            assert_eq!(got, want, "round {round}");
        }
        assert_sound(&db).await;
    });
}

/// One document changed under a key of n entries re-reduces a leaf and
/// each branch above it: at most 64 values per level, whatever n.
#[test]
fn one_update_reduces_a_bounded_number_of_values() {
    block_on(async {
        for n in [1_000usize, 10_000] {
            let db = fresh().await;
            let calls = Arc::new(AtomicUsize::new(0));
            let values = Arc::new(AtomicUsize::new(0));
            let idx = sum_index("sums", calls.clone(), values.clone());
            for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
                let mut b = Batch::new();
                for i in chunk {
                    b.put(format!("s/{i}"), sale("one", 1));
                }
                db.commit(b).await.unwrap();
            }
            db.catch_up_index(&idx, None).await.unwrap();
            let mut per_update = Vec::new();
            for i in 0..20 {
                values.store(0, Ordering::Relaxed);
                calls.store(0, Ordering::Relaxed);
                db.put(&format!("s/{}", i * 37), sale("one", 2))
                    .await
                    .unwrap();
                db.catch_up_index(&idx, None).await.unwrap();
                per_update.push((
                    calls.load(Ordering::Relaxed),
                    values.load(Ordering::Relaxed),
                ));
            }
            let r = query(&db, "sums", IndexQuery::default()).await;
            assert_eq!(r.rows[0].value, json!({"sum": n + 20, "n": n}));
            let worst = per_update.iter().map(|p| p.1).max().unwrap();
            // Depth: 1 branch level at 1,000 entries, 2 at 10,000.
            let levels = if n <= 4096 { 2 } else { 3 };
            assert!(
                worst <= 64 * levels,
                "{n} entries: {worst} values reduced for one update ({per_update:?})"
            );
            eprintln!(
                "{n} entries under one key: reduce calls and values per update {per_update:?}"
            );
        }
    });
}

/// The shopping carts of issue 13: cart events reduce into a
/// `ShoppingCarts` output collection; a chained index over paid carts
/// gives the sales per product.
#[test]
fn output_collections_feed_a_chained_index() {
    block_on(async {
        let db = fresh().await;
        let carts = Index::new(
            IndexDefinition::map_reduce("carts", "1", &["CartEvents"]).with_output("ShoppingCarts"),
            FnIndex::map(|d| {
                let b = d.body()?;
                let mut items = serde_json::Map::new();
                if let Some(p) = b["product"].as_str() {
                    items.insert(p.into(), b["qty"].clone());
                }
                Ok(vec![Emit::new(
                    b["cart"].clone(),
                    json!({"items": items, "paid": b["type"] == "paid"}),
                )])
            })
            .with_reduce(|_k, vs, _| {
                let mut items: BTreeMap<String, i64> = BTreeMap::new();
                let mut paid = false;
                for v in vs {
                    for (p, q) in v["items"].as_object().ok_or("items")? {
                        *items.entry(p.clone()).or_default() += q.as_i64().unwrap_or(0);
                    }
                    paid |= v["paid"].as_bool().unwrap_or(false);
                }
                items.retain(|_, q| *q != 0);
                Ok(json!({"items": items, "paid": paid}))
            }),
        );
        let sales = Index::new(
            IndexDefinition::map_reduce("sales-per-product", "1", &["ShoppingCarts"]),
            FnIndex::map(|d| {
                let b = d.body()?;
                if b["paid"] != json!(true) {
                    return Ok(vec![]);
                }
                Ok(b["items"]
                    .as_object()
                    .ok_or("items")?
                    .iter()
                    .map(|(p, q)| Emit::new(json!(p), q.clone()))
                    .collect())
            })
            .with_reduce(|_k, vs, _| Ok(json!(vs.iter().filter_map(Value::as_i64).sum::<i64>()))),
        );
        let ev = |cart: &str, t: &str, product: Option<&str>, qty: i64| {
            json!({"cart": cart, "type": t, "product": product, "qty": qty,
                   "@metadata": {"@collection": "CartEvents"}})
        };
        let mut b = Batch::new();
        b.put("e/1", ev("c1", "add", Some("apple"), 3))
            .put("e/2", ev("c1", "add", Some("pear"), 1))
            .put("e/3", ev("c1", "remove", Some("apple"), -1))
            .put("e/4", ev("c1", "paid", None, 0))
            .put("e/5", ev("c2", "add", Some("apple"), 5))
            .put("e/6", ev("c3", "add", Some("pear"), 2))
            .put("e/7", ev("c3", "paid", None, 0));
        db.commit(b).await.unwrap();
        db.catch_up_index(&carts, None).await.unwrap();
        db.catch_up_index(&sales, None).await.unwrap();
        let c1 = db
            .get("ShoppingCarts/c1")
            .await
            .unwrap()
            .expect("the output of cart c1");
        assert_eq!(c1.body["items"], json!({"apple": 2, "pear": 1}));
        assert!(
            c1.meta.flags.is_from_index(),
            "flagged as produced by an index"
        );
        assert_eq!(c1.meta.collection.as_deref(), Some("ShoppingCarts"));
        let r = query(&db, "carts", IndexQuery::default()).await;
        assert!(
            !r.stale,
            "an index is not stale by its own output documents"
        );
        assert_eq!(r.rows.len(), 3);
        let totals = |r: QueryResult| -> BTreeMap<String, i64> {
            r.rows
                .into_iter()
                .map(|row| {
                    (
                        row.key.as_str().unwrap().to_string(),
                        row.value.as_i64().unwrap(),
                    )
                })
                .collect()
        };
        let r = query(&db, "sales-per-product", IndexQuery::default()).await;
        assert_eq!(
            totals(r),
            BTreeMap::from([("apple".into(), 2), ("pear".into(), 3)])
        );

        // Cart 2 pays; cart 3's events are deleted: its output document goes.
        let mut b = Batch::new();
        b.put("e/8", ev("c2", "paid", None, 0))
            .delete("e/6")
            .delete("e/7");
        db.commit(b).await.unwrap();
        db.catch_up_index(&carts, None).await.unwrap();
        db.catch_up_index(&sales, None).await.unwrap();
        assert!(db.get("ShoppingCarts/c3").await.unwrap().is_none());
        let r = query(&db, "sales-per-product", IndexQuery::default()).await;
        assert_eq!(
            totals(r),
            BTreeMap::from([("apple".into(), 7), ("pear".into(), 1)])
        );
        assert_sound(&db).await;
    });
}

/// A new version is built beside the old one; queries use the old one
/// until the new one has caught up; the old one's entries are removed.
#[test]
fn a_new_version_replaces_the_old_once_caught_up() {
    block_on(async {
        let db = fresh().await;
        let v1 = by_city();
        // More documents than one step maps.
        let n = outpost::db::STEP_DOCS + 500;
        let mut b = Batch::new();
        for i in 0..n {
            b.put(
                format!("users/{i}"),
                user(&format!("u{i}"), if i % 2 == 0 { "Oslo" } else { "Rome" }),
            );
        }
        db.commit(b).await.unwrap();
        db.catch_up_index(&v1, None).await.unwrap();
        let v2 = Index::new(
            IndexDefinition::map("users/by-city", "2", &["Users"]),
            FnIndex::map(|d| {
                let b = d.body()?;
                Ok(vec![Emit::new(
                    json!(b["city"].as_str().unwrap_or("").to_uppercase()),
                    json!(null),
                )])
            }),
        );
        // One step of v2 (`STEP_DOCS` of the documents): queries still see v1.
        let p = db.update_index(&v2).await.unwrap();
        assert!(p.building && !p.caught_up());
        assert_eq!(p.mapped, outpost::db::STEP_DOCS);
        let r = query(&db, "users/by-city", IndexQuery::default()).await;
        assert_eq!(r.rows[0].key, json!("Oslo"));
        assert_eq!(r.rows.len(), n);
        let p = db.catch_up_index(&v2, None).await.unwrap();
        assert!(!p.building && p.caught_up());
        let r = query(&db, "users/by-city", IndexQuery::default()).await;
        assert_eq!(r.rows[0].key, json!("OSLO"));
        assert_eq!(r.rows.len(), n);
        let status = db.index_status("users/by-city").await.unwrap();
        assert_eq!(status.len(), 1, "no version left building");
        db.clean_indexes().await.unwrap();
        // The same version defined with another meaning is refused.
        let mut bad = v2.def.clone();
        bad.collections = vec!["Other".into()];
        let e = db.define_index(&bad).await.unwrap_err();
        assert_eq!(e.code(), "invalid_argument", "{e}");
        db.drop_index("users/by-city").await.unwrap();
        db.clean_indexes().await.unwrap();
        assert!(matches!(
            db.snapshot()
                .query("users/by-city", &IndexQuery::default())
                .await,
            Err(Error::NoIndex(_))
        ));
        assert_sound(&db).await;
    });
}

/// A step ends once its documents have emitted `STEP_ENTRIES` entries (what
/// its commit applies in one go), before `STEP_DOCS` documents; a step told
/// that others wait maps on natively (it never waits for a next task).
#[test]
fn a_step_is_bounded_by_the_entries_its_documents_emit() {
    block_on(async {
        let db = fresh().await;
        const PER_DOC: usize = 10;
        let docs = outpost::db::STEP_ENTRIES / PER_DOC + 700;
        assert!(docs < outpost::db::STEP_DOCS);
        let mut b = Batch::new();
        for i in 0..docs {
            b.put(format!("users/{i:05}"), user(&format!("u{i}"), "Oslo"));
        }
        db.commit(b).await.unwrap();
        let many = Index::new(
            IndexDefinition::map("many", "1", &["Users"]),
            FnIndex::map(|d| {
                Ok((0..PER_DOC)
                    .map(|n| Emit::new(json!([d.id, n]), json!(null)))
                    .collect())
            }),
        );
        let p = db.update_index_unless(&many, &|| true).await.unwrap();
        assert_eq!(p.mapped, outpost::db::STEP_ENTRIES / PER_DOC, "{p:?}");
        assert!(!p.caught_up(), "{p:?}");
        let p = db.catch_up_index(&many, None).await.unwrap();
        assert!(p.caught_up(), "{p:?}");
        let r = query(&db, "many", IndexQuery::default()).await;
        assert_eq!(r.rows.len(), docs * PER_DOC);
        assert_sound(&db).await;
    });
}

/// Two steps of one index at once: the second to commit finds the
/// checkpoint moved and stores nothing (no double counting).
#[test]
fn racing_steps_count_once() {
    block_on(async {
        let db = fresh().await;
        let idx = sum_index("sums", Default::default(), Default::default());
        let mut b = Batch::new();
        for i in 0..300 {
            b.put(format!("s/{i}"), sale("k", 1));
        }
        db.commit(b).await.unwrap();
        let (a, b) = futures::join!(db.update_index(&idx), db.update_index(&idx));
        a.unwrap();
        b.unwrap();
        db.catch_up_index(&idx, None).await.unwrap();
        let r = query(&db, "sums", IndexQuery::default()).await;
        assert_eq!(r.rows[0].value, json!({"sum": 300, "n": 300}));
    });
}

#[test]
fn failing_functions_and_bad_keys_are_typed_errors_that_store_nothing() {
    block_on(async {
        let db = fresh().await;
        db.put("users/1", user("Ann", "Oslo")).await.unwrap();
        db.put(
            "users/2",
            json!({"name": "Bob", "city": {"no": 1}, "@metadata": {"@collection": "Users"}}),
        )
        .await
        .unwrap();
        let e = db.catch_up_index(&by_city(), None).await.unwrap_err();
        match &e {
            Error::Index {
                index,
                doc,
                message,
            } => {
                assert_eq!(index, "users/by-city");
                assert_eq!(doc.as_deref(), Some("users/2"));
                assert!(message.contains("object"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(e.code(), "index_failed");
        let r = query(&db, "users/by-city", IndexQuery::default()).await;
        assert!(
            r.rows.is_empty() && r.indexed_etag == 0,
            "nothing of the failed step is stored"
        );
        let throws = Index::new(
            IndexDefinition::map("t", "1", &[]),
            FnIndex::map(|_| Err("boom".into())),
        );
        let e = db.update_index(&throws).await.unwrap_err();
        assert!(e.to_string().contains("boom"), "{e}");
        let e = db
            .snapshot()
            .query("nope", &IndexQuery::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), "no_index");
        let bad_out = IndexDefinition::map_reduce("o", "1", &["A"]).with_output("A");
        assert_eq!(
            db.define_index(&bad_out).await.unwrap_err().code(),
            "invalid_argument"
        );
        assert_sound(&db).await;
    });
}
