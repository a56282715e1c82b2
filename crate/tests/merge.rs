//! Engine support for replication: applying received versions, conflicts
//! (kept, listed, resolved, settled by policy), local records.
#![cfg(not(target_arch = "wasm32"))]

use std::sync::Arc;

use futures::executor::block_on;
use outpost::store::MemoryStore;
use outpost::{
    Batch, ConflictPolicy, CvOrder, Database, Document, RawVersion, RemoteDoc, WriteOutcome,
};
use outpost_testkit::open;
use serde_json::json;

type Db = Database<Arc<MemoryStore>>;

/// The document as a peer would send it.
fn as_remote(d: &Document, source: &str) -> RemoteDoc {
    let mut versions = vec![RawVersion {
        change_vector: d.meta.change_vector.clone(),
        last_modified_ms: d.meta.last_modified_ms,
        deleted: d.meta.flags.is_tombstone(),
        body: if d.meta.flags.is_tombstone() {
            Vec::new()
        } else {
            serde_json::to_vec(&d.body).unwrap()
        },
    }];
    for c in &d.conflicts {
        versions.push(RawVersion {
            change_vector: c.change_vector.clone(),
            last_modified_ms: c.last_modified_ms,
            deleted: c.deleted,
            body: if c.deleted {
                Vec::new()
            } else {
                serde_json::to_vec(&c.body).unwrap()
            },
        });
    }
    RemoteDoc {
        id: d.id.clone(),
        collection: d.meta.collection.clone(),
        versions,
        source: Some(source.into()),
    }
}

async fn send(from: &Db, to: &Db, id: &str, policy: ConflictPolicy) -> Option<WriteOutcome> {
    let d = from.get_version(id).await.unwrap().unwrap();
    let mut b = Batch::new();
    b.apply_remote(as_remote(&d, "peer"), policy);
    let r = to.commit(b).await.unwrap();
    r.results[0].as_ref().map(|w| w.outcome)
}

#[test]
fn newer_applies_older_is_ignored_and_source_is_recorded() {
    block_on(async {
        let (a, b) = (
            open(&Arc::new(MemoryStore::new())).await,
            open(&Arc::new(MemoryStore::new())).await,
        );
        a.put("n/1", json!({"v": 1})).await.unwrap();
        assert_eq!(
            send(&a, &b, "n/1", ConflictPolicy::Manual).await,
            Some(WriteOutcome::Applied)
        );
        let got = b.get("n/1").await.unwrap().unwrap();
        assert_eq!(got.body, json!({"v": 1}));
        assert_eq!(got.meta.source.as_deref(), Some("peer"));
        // Again: nothing new.
        assert_eq!(send(&a, &b, "n/1", ConflictPolicy::Manual).await, None);
        // b edits (its own version supersedes), a's old copy is ignored by b.
        b.put("n/1", json!({"v": 2})).await.unwrap();
        assert_eq!(b.get("n/1").await.unwrap().unwrap().meta.source, None);
        assert_eq!(send(&a, &b, "n/1", ConflictPolicy::Manual).await, None);
        assert_eq!(
            send(&b, &a, "n/1", ConflictPolicy::Manual).await,
            Some(WriteOutcome::Applied)
        );
        assert_eq!(a.get("n/1").await.unwrap().unwrap().body, json!({"v": 2}));
        // Deletes travel as tombstones.
        a.delete("n/1").await.unwrap();
        assert_eq!(
            send(&a, &b, "n/1", ConflictPolicy::Manual).await,
            Some(WriteOutcome::Applied)
        );
        assert!(b.get("n/1").await.unwrap().is_none());
        assert!(
            b.get_version("n/1")
                .await
                .unwrap()
                .unwrap()
                .meta
                .flags
                .is_tombstone()
        );
        assert!(b.integrity_check().await.unwrap().is_ok());
    });
}

#[test]
fn concurrent_versions_are_kept_listed_and_resolved_everywhere() {
    block_on(async {
        let sa = Arc::new(MemoryStore::new());
        let (a, b) = (open(&sa).await, open(&Arc::new(MemoryStore::new())).await);
        a.put("n/1", json!({"v": 0})).await.unwrap();
        send(&a, &b, "n/1", ConflictPolicy::Manual).await;
        a.put("n/1", json!({"v": "a"})).await.unwrap();
        b.put("n/1", json!({"v": "b"})).await.unwrap();
        assert_eq!(
            send(&b, &a, "n/1", ConflictPolicy::Manual).await,
            Some(WriteOutcome::Conflict)
        );
        assert_eq!(
            send(&a, &b, "n/1", ConflictPolicy::Manual).await,
            Some(WriteOutcome::Conflict)
        );
        let (da, db_) = (
            a.get("n/1").await.unwrap().unwrap(),
            b.get("n/1").await.unwrap().unwrap(),
        );
        // Both peers show the same winner and the same concurrent version.
        assert_eq!(da.body, db_.body);
        assert_eq!(da.meta.change_vector, db_.meta.change_vector);
        assert_eq!(da.conflicts, db_.conflicts);
        assert_eq!(da.conflicts.len(), 1);
        assert!(da.meta.flags.is_conflicted());
        let bodies = [da.body.clone(), da.conflicts[0].body.clone()];
        assert!(bodies.contains(&json!({"v": "a"})) && bodies.contains(&json!({"v": "b"})));
        let listed = a.conflicts(None, 10).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, "n/1");
        // Re-sending either side changes nothing.
        assert_eq!(send(&a, &b, "n/1", ConflictPolicy::Manual).await, None);
        // A resolution (like any local write of the document) ends it.
        let mut r = Batch::new();
        r.resolve("n/1", Some(json!({"v": "merged"})), None);
        let res = a.commit(r).await.unwrap().results[0].clone().unwrap();
        assert!(a.conflicts(None, 10).await.unwrap().is_empty());
        assert_eq!(
            res.change_vector.compare(&db_.meta.change_vector),
            CvOrder::Newer
        );
        assert_eq!(
            send(&a, &b, "n/1", ConflictPolicy::Manual).await,
            Some(WriteOutcome::Applied)
        );
        let fb = b.get("n/1").await.unwrap().unwrap();
        assert_eq!(fb.body, json!({"v": "merged"}));
        assert!(fb.conflicts.is_empty() && !fb.meta.flags.is_conflicted());
        assert!(b.conflicts(None, 10).await.unwrap().is_empty());
        for d in [&a, &b] {
            assert!(d.integrity_check().await.unwrap().is_ok());
        }
        // A plain put on a conflicted document resolves it too.
        b.put("n/2", json!({"v": 0})).await.unwrap();
        send(&b, &a, "n/2", ConflictPolicy::Manual).await;
        a.put("n/2", json!({"v": "a"})).await.unwrap();
        b.put("n/2", json!({"v": "b"})).await.unwrap();
        send(&b, &a, "n/2", ConflictPolicy::Manual).await;
        assert_eq!(a.conflicts(None, 10).await.unwrap().len(), 1);
        a.put("n/2", json!({"v": "a2"})).await.unwrap();
        assert!(a.conflicts(None, 10).await.unwrap().is_empty());
        assert_eq!(
            send(&a, &b, "n/2", ConflictPolicy::Manual).await,
            Some(WriteOutcome::Applied)
        );
        assert_eq!(
            b.get("n/2").await.unwrap().unwrap().body,
            json!({"v": "a2"})
        );
        // Survives reopen.
        a.close().await.unwrap();
        sa.reopen();
        let a2 = open(&sa).await;
        assert_eq!(
            a2.get("n/1").await.unwrap().unwrap().body,
            json!({"v": "merged"})
        );
    });
}

#[test]
fn hub_policies_settle_conflicts_with_a_superseding_version() {
    block_on(async {
        for (policy, want) in [
            (ConflictPolicy::Latest, json!({"v": "edge"})),
            (ConflictPolicy::HubWins, json!({"v": "hub"})),
        ] {
            let (hub, edge) = (
                open(&Arc::new(MemoryStore::new())).await,
                open(&Arc::new(MemoryStore::new())).await,
            );
            hub.put("n/1", json!({"v": 0})).await.unwrap();
            send(&hub, &edge, "n/1", ConflictPolicy::Manual).await;
            hub.put("n/1", json!({"v": "hub"})).await.unwrap();
            edge.put("n/1", json!({"v": "edge"})).await.unwrap();
            assert_eq!(
                send(&edge, &hub, "n/1", policy).await,
                Some(WriteOutcome::Resolved),
                "{policy}"
            );
            let h = hub.get("n/1").await.unwrap().unwrap();
            assert_eq!(h.body, want, "{policy}");
            assert!(h.conflicts.is_empty());
            assert_eq!(h.meta.change_vector.get(&hub.db_id()), h.meta.etag);
            // The resolution supersedes the edge's version there too.
            assert_eq!(
                send(&hub, &edge, "n/1", ConflictPolicy::Manual).await,
                Some(WriteOutcome::Applied)
            );
            assert_eq!(edge.get("n/1").await.unwrap().unwrap().body, want);
        }
    });
}

#[test]
fn local_records_commit_atomically_and_stay_out_of_the_feed() {
    block_on(async {
        let s = Arc::new(MemoryStore::new());
        let db = open(&s).await;
        let mut b = Batch::new();
        b.put("n/1", json!({}))
            .set_local(b"ckpt/hub".to_vec(), Some(7u64.to_le_bytes().to_vec()));
        db.commit(b).await.unwrap();
        assert_eq!(
            db.get_local(b"ckpt/hub").await.unwrap(),
            Some(7u64.to_le_bytes().to_vec())
        );
        assert_eq!(db.changes(0, 10).await.unwrap().len(), 1);
        // A failing batch writes neither.
        let mut b = Batch::new();
        b.set_local(b"ckpt/hub".to_vec(), Some(vec![9]))
            .put("", json!({}));
        assert!(db.commit(b).await.is_err());
        assert_eq!(
            db.get_local(b"ckpt/hub").await.unwrap(),
            Some(7u64.to_le_bytes().to_vec())
        );
        let mut b = Batch::new();
        b.set_local(b"rej/a".to_vec(), Some(vec![1]))
            .set_local(b"rej/b".to_vec(), Some(vec![2]));
        db.commit(b).await.unwrap();
        assert_eq!(db.scan_locals(b"rej/", 10).await.unwrap().len(), 2);
        let mut b = Batch::new();
        b.set_local(b"rej/a".to_vec(), None);
        db.commit(b).await.unwrap();
        assert_eq!(
            db.scan_locals(b"rej/", 10).await.unwrap(),
            vec![(b"rej/b".to_vec(), vec![2])]
        );
        db.close().await.unwrap();
        s.reopen();
        let db = open(&s).await;
        assert_eq!(
            db.get_local(b"ckpt/hub").await.unwrap(),
            Some(7u64.to_le_bytes().to_vec())
        );
        assert!(db.integrity_check().await.unwrap().is_ok());
    });
}

#[test]
fn bad_received_versions_are_refused() {
    block_on(async {
        let db = open(&Arc::new(MemoryStore::new())).await;
        let good = RawVersion {
            change_vector: outpost::ChangeVector::new().with(outpost::DbId([1; 16]), 1),
            last_modified_ms: 0,
            deleted: false,
            body: b"{}".to_vec(),
        };
        let cases: Vec<RawVersion> = vec![
            RawVersion {
                body: b"[1]".to_vec(),
                ..good.clone()
            },
            RawVersion {
                body: b"{".to_vec(),
                ..good.clone()
            },
            RawVersion {
                change_vector: outpost::ChangeVector::new(),
                ..good.clone()
            },
            RawVersion {
                deleted: true,
                ..good.clone()
            },
        ];
        for v in cases {
            let mut b = Batch::new();
            b.apply_remote(
                RemoteDoc {
                    id: "x".into(),
                    collection: None,
                    versions: vec![v],
                    source: None,
                },
                ConflictPolicy::Manual,
            );
            assert!(db.commit(b).await.is_err());
        }
        let mut b = Batch::new();
        b.apply_remote(
            RemoteDoc {
                id: "x".into(),
                collection: None,
                versions: vec![],
                source: None,
            },
            ConflictPolicy::Manual,
        );
        assert!(db.commit(b).await.is_err());
        assert_eq!(db.count().await.unwrap(), 0);
    });
}
