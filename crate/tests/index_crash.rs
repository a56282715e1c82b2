//! Crash tests of index maintenance on the file store (the method of
//! `engine_crash.rs`): a workload of document commits and index steps (a
//! reducing index with an output collection, a map index) crashes at every
//! I/O operation; each disk image a crash could leave is reopened and
//! - opens, passes the integrity check, and holds every acknowledged write;
//! - the index's checkpoint is not past the database;
//! - once caught up (by the same functions, as a restarted app would), the
//!   index rows, the reductions and the output documents equal a model
//!   computed from the documents: a step is never half-applied, lost, or
//!   counted twice.
//!
//! `OUTPOST_CRASH_WORKLOADS=<n>` raises the number of seeded workloads
//! (default 3).

#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{crash_db_opts, crash_store_opts};
use futures::executor::block_on;
use outpost::index::{Emit, FnIndex, Index, IndexDefinition, IndexQuery};
use outpost::rng::SplitMix;
use outpost::store::fault::{Fault, FaultVfs};
use outpost::store::file::{FileStore, FileStoreOptions};
use outpost::store::vfs::Vfs;
use outpost::{Batch, Database, OpenOptions, PageStore};
use serde_json::{Value, json};

const DIR: &str = "/crash/idx";

fn db_opts() -> OpenOptions {
    crash_db_opts(9)
}

fn store_opts(vfs: Arc<dyn Vfs>) -> FileStoreOptions {
    crash_store_opts(vfs)
}

/// Totals per key with an output collection.
fn totals() -> Index {
    Index::new(
        IndexDefinition::map_reduce("totals", "1", &["Sales"]).with_output("Totals"),
        FnIndex::map(|d| {
            let b = d.body()?;
            Ok(vec![Emit::new(b["k"].clone(), json!([b["v"], 1]))])
        })
        .with_reduce(|_k, vs, _| {
            let (mut s, mut n) = (0i64, 0i64);
            for v in vs {
                s += v[0].as_i64().ok_or("v")?;
                n += v[1].as_i64().ok_or("n")?;
            }
            Ok(json!([s, n]))
        }),
    )
}

/// Documents by value.
fn by_value() -> Index {
    Index::new(
        IndexDefinition::map("by-value", "1", &["Sales"]),
        FnIndex::map(|d| Ok(vec![Emit::new(d.body()?["v"].clone(), json!(null))])),
    )
}

enum Op {
    Commit(Batch),
    Step,
}

fn workload(seed: u64) -> Vec<Op> {
    let mut r = SplitMix(seed);
    let mut ops = Vec::new();
    for _ in 0..10 {
        let mut b = Batch::new();
        for _ in 0..1 + r.next_u64() % 6 {
            let id = format!("s/{:02}", r.next_u64() % 30);
            if r.next_u64().is_multiple_of(5) {
                b.delete(id);
            } else {
                b.put(
                    id,
                    json!({"k": format!("k{}", r.next_u64() % 4), "v": r.next_u64() % 100,
                           "@metadata": {"@collection": "Sales"}}),
                );
            }
        }
        ops.push(Op::Commit(b));
        if r.next_u64().is_multiple_of(2) {
            ops.push(Op::Step);
        }
    }
    ops.push(Op::Step);
    ops
}

/// Runs the workload; returns the last etag acknowledged durable.
async fn run<S: PageStore>(db: &Database<S>, ops: &[Op]) -> u64 {
    let (t, v) = (totals(), by_value());
    let mut acked = 0;
    for op in ops {
        match op {
            Op::Commit(b) => match db.commit(b.clone()).await {
                Ok(info) => {
                    let top = info.results.iter().flatten().map(|w| w.etag).max();
                    acked = acked.max(top.unwrap_or(0));
                }
                Err(_) => return acked,
            },
            Op::Step => {
                if db.catch_up_index(&t, None).await.is_err()
                    || db.catch_up_index(&v, None).await.is_err()
                {
                    return acked;
                }
                acked = acked.max(db.snapshot().last_etag());
            }
        }
    }
    acked
}

fn count_ops(ops: &[Op]) -> u64 {
    let vfs = Arc::new(FaultVfs::new());
    let store = FileStore::open(DIR, store_opts(vfs.clone())).unwrap();
    block_on(async {
        let db = Database::open(store, db_opts()).await.unwrap();
        run(&db, ops).await;
        db.close().await.unwrap();
    });
    vfs.op_count()
}

/// Checks a reopened image as the module doc says.
fn check_image(files: outpost::store::fault::FileImages, acked: u64, what: &str) {
    let vfs = Arc::new(FaultVfs::with_files(files));
    let store = FileStore::open(DIR, store_opts(vfs))
        .unwrap_or_else(|e| panic!("{what}: store failed to open: {e}"));
    block_on(async {
        let db = Database::open(store, db_opts())
            .await
            .unwrap_or_else(|e| panic!("{what}: db failed to open: {e}"));
        let rep = db.integrity_check().await.unwrap();
        assert!(rep.is_ok(), "{what}: integrity: {:?}", rep.problems);
        assert!(
            db.snapshot().last_etag() >= acked,
            "{what}: acknowledged etag {acked} lost"
        );
        if let Ok(st) = db.index_status("totals").await {
            assert!(
                st[0].indexed_etag <= st[0].db_etag,
                "{what}: checkpoint past the database"
            );
        }
        let (t, v) = (totals(), by_value());
        db.catch_up_index(&t, None).await.unwrap();
        db.catch_up_index(&v, None).await.unwrap();
        // The model, from the documents.
        let mut want: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        let mut values = Vec::new();
        for d in db.by_collection("Sales", None, usize::MAX).await.unwrap() {
            let e = want
                .entry(d.body["k"].as_str().unwrap().to_string())
                .or_default();
            e.0 += d.body["v"].as_i64().unwrap();
            e.1 += 1;
            values.push(d.body["v"].as_i64().unwrap());
        }
        values.sort_unstable();
        let snap = db.snapshot();
        let rows = snap
            .query("totals", &IndexQuery::default())
            .await
            .unwrap()
            .rows;
        let got: BTreeMap<String, (i64, i64)> = rows
            .iter()
            .map(|r| {
                let k = r.key.as_str().unwrap().to_string();
                (
                    k,
                    (r.value[0].as_i64().unwrap(), r.value[1].as_i64().unwrap()),
                )
            })
            .collect();
        assert_eq!(got, want, "{what}: reductions");
        let outputs: BTreeMap<String, (i64, i64)> = db
            .by_collection("Totals", None, usize::MAX)
            .await
            .unwrap()
            .into_iter()
            .map(|d| {
                assert!(d.meta.flags.is_from_index(), "{what}: output not flagged");
                let v: &Value = &d.body["value"];
                let k = d.id.trim_start_matches("Totals/").to_string();
                (k, (v[0].as_i64().unwrap(), v[1].as_i64().unwrap()))
            })
            .collect();
        assert_eq!(outputs, want, "{what}: output documents");
        let by_v: Vec<i64> = snap
            .query("by-value", &IndexQuery::default())
            .await
            .unwrap()
            .rows
            .iter()
            .map(|r| r.key.as_i64().unwrap())
            .collect();
        assert_eq!(by_v, values, "{what}: map entries");
        assert!(
            db.integrity_check().await.unwrap().is_ok(),
            "{what}: integrity after catching up"
        );
    });
}

#[test]
fn index_steps_survive_a_crash_at_every_io_operation() {
    let workloads: u64 = std::env::var("OUTPOST_CRASH_WORKLOADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut images = 0usize;
    for seed in 1..=workloads {
        let ops = workload(seed);
        let total = count_ops(&ops);
        for n in 1..=total {
            let vfs = Arc::new(FaultVfs::new());
            vfs.set_fault(Some(Fault::CrashAt(n)));
            let acked = match FileStore::open(DIR, store_opts(vfs.clone())) {
                Ok(store) => block_on(async {
                    match Database::open(store, db_opts()).await {
                        Ok(db) => run(&db, &ops).await,
                        Err(_) => 0,
                    }
                }),
                Err(_) => 0,
            };
            for (i, img) in vfs
                .crash_image_files(4, seed * 7_919 + n)
                .into_iter()
                .enumerate()
            {
                check_image(
                    img,
                    acked,
                    &format!("seed {seed}, crash at op {n}, image {i}"),
                );
                images += 1;
            }
        }
    }
    println!("index crash images checked: {images}");
    assert!(images >= 200, "only {images} crash images");
}
