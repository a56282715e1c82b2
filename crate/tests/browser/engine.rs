//! The engine over the IndexedDB page store.

use super::*;

#[wasm_bindgen_test]
async fn database_put_get_scan_changes() {
    let name = unique_name("db");
    let db = open_db(&name).await;
    put_first_patient(&db).await;
    db.put("patients/dr-7/p2", json!({"name": "Grace"}))
        .await
        .unwrap();
    db.put("patients/dr-8/p3", json!({"name": "Edsger"}))
        .await
        .unwrap();
    db.put("invoices/1", json!({"total": 12})).await.unwrap();

    let d = db.get("Patients/DR-7/P1").await.unwrap().unwrap();
    assert_eq!(d.id, "patients/dr-7/p1");
    assert_eq!(d.body["name"], "Ada");
    assert_eq!(d.meta.collection.as_deref(), Some("Patients"));
    assert!(db.get("patients/none").await.unwrap().is_none());

    let scan = db.scan("patients/dr-7/", None, 100).await.unwrap();
    let ids: Vec<&str> = scan.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["patients/dr-7/p1", "patients/dr-7/p2"]);
    let page2 = db
        .scan("patients/", Some("patients/dr-7/p2"), 100)
        .await
        .unwrap();
    assert_eq!(page2.len(), 1);
    assert_eq!(page2[0].id, "patients/dr-8/p3");

    let del = db.delete("patients/dr-7/p2").await.unwrap().unwrap();
    assert!(del.deleted);
    let changes = db.changes(0, 100).await.unwrap();
    let ids: Vec<&str> = changes.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "patients/dr-7/p1",
            "patients/dr-8/p3",
            "invoices/1",
            "patients/dr-7/p2"
        ]
    );
    assert!(changes[3].body.is_null());
    assert_eq!(db.changes(4, 100).await.unwrap().len(), 1);
    assert_eq!(db.count().await.unwrap(), 3);
    assert_eq!(
        db.collections().await.unwrap(),
        vec![("Patients".to_string(), 1)]
    );
    assert!(db.integrity_check().await.unwrap().is_ok());
    db.close().await.unwrap();
    drop(db);
    IdbStore::destroy(&name).await.unwrap();
}

#[wasm_bindgen_test]
async fn database_survives_close_and_reopen() {
    let name = unique_name("reopen");
    let db = open_db(&name).await;
    let id = db.db_id();
    let mut batch = Batch::new();
    for i in 0..50 {
        batch.put(format!("notes/{i:03}"), json!({"n": i}));
    }
    db.commit(batch).await.unwrap();
    db.delete("notes/007").await.unwrap();
    db.close().await.unwrap();
    drop(db);

    let db = open_db(&name).await;
    assert_eq!(db.db_id(), id, "the database id is persisted");
    assert_eq!(db.count().await.unwrap(), 49);
    assert_eq!(db.get("notes/042").await.unwrap().unwrap().body["n"], 42);
    assert!(db.get("notes/007").await.unwrap().is_none());
    assert_eq!(db.changes(0, 1000).await.unwrap().len(), 50);
    // And it keeps accepting writes after the reopen.
    let r = db.put("notes/100", json!({"n": 100})).await.unwrap();
    assert_eq!(r.etag, 52);
    assert!(db.integrity_check().await.unwrap().is_ok());
    db.close().await.unwrap();
    drop(db);
    IdbStore::destroy(&name).await.unwrap();
}

#[wasm_bindgen_test]
async fn ten_thousand_documents() {
    let name = unique_name("10k");
    let db = open_db(&name).await;
    let t0 = js_sys::Date::now();
    for b in 0..20 {
        let mut batch = Batch::new();
        for i in 0..500 {
            let n = b * 500 + i;
            batch.put(
                format!("items/{n:05}"),
                json!({"n": n, "label": format!("item number {n}"), "tags": ["a", "b"]}),
            );
        }
        db.commit(batch).await.unwrap();
    }
    let pages = db.stats().pages;
    db.close().await.unwrap();
    drop(db);
    let wrote = js_sys::Date::now() - t0;

    let db = open_db(&name).await;
    assert_eq!(db.count().await.unwrap(), 10_000);
    // A cold scan: its leaves come from IndexedDB in read-ahead batches.
    let all = db.scan("items/", None, 20_000).await.unwrap();
    assert_eq!(all.len(), 10_000);
    assert_eq!(all[9_999].id, "items/09999");
    for (i, d) in all.iter().enumerate() {
        assert_eq!(d.body["n"], i, "{}", d.id);
    }
    assert_eq!(
        db.get("items/04321").await.unwrap().unwrap().body["n"],
        4321
    );
    assert_eq!(db.changes(9_990, 100).await.unwrap().len(), 10);
    let report = db.integrity_check().await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.documents, 10_000);
    web_sys_log(&format!(
        "10,000 documents in 20 batches: {wrote:.0} ms, {pages} pages of {PAGE_SIZE} bytes"
    ));
    db.close().await.unwrap();
    drop(db);
    IdbStore::destroy(&name).await.unwrap();
}

#[wasm_bindgen_test]
async fn large_document_uses_overflow_pages() {
    let name = unique_name("large");
    let db = open_db(&name).await;
    // ~400 KB of text that does not repeat page-aligned.
    let text: String = (0..40_000).map(|i| format!("{i:09}|")).collect();
    assert!(text.len() >= 300_000);
    db.put("blobs/big", json!({"text": text})).await.unwrap();
    db.put("blobs/small", json!({"x": 1})).await.unwrap();
    assert!(db.stats().pages > (300_000 / PAGE_SIZE) as u64);
    db.close().await.unwrap();
    drop(db);

    let db = open_db(&name).await;
    let d = db.get("blobs/big").await.unwrap().unwrap();
    assert_eq!(d.body["text"].as_str().unwrap(), text);
    // Replace it with a smaller version, then delete it: pages are reused.
    db.put("blobs/big", json!({"text": "short"})).await.unwrap();
    assert_eq!(
        db.get("blobs/big").await.unwrap().unwrap().body["text"],
        "short"
    );
    db.delete("blobs/big").await.unwrap();
    assert!(db.integrity_check().await.unwrap().is_ok());
    db.close().await.unwrap();
    drop(db);
    IdbStore::destroy(&name).await.unwrap();
}

fn holds(bytes: &[u8], marker: &str) -> bool {
    bytes.windows(marker.len()).any(|w| w == marker.as_bytes())
}

/// A purge leaves no plaintext of the purged documents (bodies, old
/// versions, large bodies, ids) in any IndexedDB record of the database,
/// the images in runs that page records replaced included.
#[wasm_bindgen_test]
async fn purge_leaves_no_plaintext_in_indexeddb() {
    const GONE: &str = "GONE-b71";
    let name = unique_name("purge");
    let db = open_db(&name).await;
    for i in 0..20 {
        db.put(&format!("keep/{i}"), json!({"n": i, "s": "KEEP-c3"}))
            .await
            .unwrap();
    }
    let gone = format!("private/{GONE}-1");
    for v in 0..3 {
        db.put(&gone, json!({"s": format!("{GONE} version {v}")}))
            .await
            .unwrap();
    }
    let big: String = (0..5_000).map(|i| format!("{GONE}{i:05}")).collect();
    db.put("private/big", json!({"s": big})).await.unwrap();
    db.delete("private/big").await.unwrap();
    db.put("private/big2", json!({"s": big})).await.unwrap();
    // Runs (a large commit) whose pages then get page records: their old
    // images stay in the run until the move. Kept documents share the runs,
    // so the purge does not replace every page of them.
    let mut b = Batch::new();
    for i in 0..100 {
        b.put(
            format!("keep/bulk{i:03}"),
            json!({"s": "KEEP-c3", "pad": "k".repeat(300)}),
        );
    }
    for i in 0..300 {
        b.put(
            format!("private/bulk{i:03}"),
            json!({"s": format!("{GONE} bulk {i}"), "pad": "p".repeat(300)}),
        );
    }
    db.commit(b).await.unwrap();
    for i in (0..300).step_by(7) {
        db.put(&format!("private/bulk{i:03}"), json!({"s": "rewritten"}))
            .await
            .unwrap();
    }
    let bucket = db.store().bucket();
    db.close().await.unwrap();
    drop(db);
    assert!(
        count(&name, bucket.clone(), "runs").await > 0,
        "the test writes runs"
    );
    assert!(
        holds(&every_record(&name, bucket).await, GONE),
        "the test can fail"
    );

    let db = open_db(&name).await;
    let report = db
        .purge(&outpost::db::PurgeScope {
            prefixes: vec!["private/".into()],
            keep: vec![],
            ids: vec![],
            id_hashes: vec![],
        })
        .await
        .unwrap();
    assert_eq!(report.removed, 303);
    assert!(db.get(&gone).await.unwrap().is_none());
    assert_eq!(db.count().await.unwrap(), 120);
    assert!(db.integrity_check().await.unwrap().is_ok());
    let bucket = db.store().bucket();
    db.close().await.unwrap();
    drop(db);
    // The purge moved the database to a new storage bucket: its copy of the
    // runs has no layout record until its first fold (its reads take the
    // runs' keys), and that fold writes one listing every run.
    if bucket.is_some() {
        assert!(count(&name, bucket.clone(), "runs").await > 0);
        assert_eq!(layout(&name, bucket.clone()).await, None);
        let db = open_db(&name).await;
        assert_eq!(db.count().await.unwrap(), 120);
        let mut b = Batch::new();
        for i in 0..100 {
            b.put(format!("after/{i:03}"), json!({"pad": "z".repeat(900)}));
        }
        db.commit(b).await.unwrap();
        assert_layout(&name, bucket.clone(), false).await;
        assert_eq!(db.count().await.unwrap(), 220);
        assert!(db.integrity_check().await.unwrap().is_ok());
        db.close().await.unwrap();
    }
    // Every record of every object store, old images in runs included.
    let dump = every_record(&name, bucket).await;
    assert!(!holds(&dump, GONE), "no plaintext of purged documents");
    assert!(holds(&dump, "KEEP-c3"));
    IdbStore::destroy(&name).await.unwrap();
}

#[wasm_bindgen_test]
async fn bad_input_is_refused_with_typed_errors() {
    let name = unique_name("bad");
    let db = open_db(&name).await;
    db.put("ok/1", json!({"a": 1})).await.unwrap();

    let e = db.put("", json!({"a": 1})).await.unwrap_err();
    assert_eq!(e.code(), "invalid_id");
    let e = db.put("bad\u{0}id", json!({"a": 1})).await.unwrap_err();
    assert_eq!(e.code(), "invalid_id");
    let e = db.put(&"x".repeat(600), json!({"a": 1})).await.unwrap_err();
    assert_eq!(e.code(), "invalid_id");
    assert!(matches!(e, Error::Input(_)));

    // A batch with one bad operation writes nothing.
    let mut batch = Batch::new();
    batch.put("ok/2", json!({"a": 2}));
    batch.put("", json!({"a": 3}));
    assert_eq!(db.commit(batch).await.unwrap_err().code(), "invalid_id");
    assert!(db.get("ok/2").await.unwrap().is_none());
    assert_eq!(db.count().await.unwrap(), 1);

    // The database is still healthy, also after a reopen.
    db.put("ok/3", json!({"a": 3})).await.unwrap();
    db.close().await.unwrap();
    drop(db);
    let db = open_db(&name).await;
    assert_eq!(db.count().await.unwrap(), 2);
    db.close().await.unwrap();
    drop(db);
    IdbStore::destroy(&name).await.unwrap();
}

/// An index step in the browser maps one task budget
/// (`outpost::platform::TASK_BUDGET_MS`) at a time and then waits for the
/// next task, for at most `STEP_TASKS` budgets; then it commits. With a map
/// function that takes 1-2 ms a document, no task maps more documents than
/// fit its budget, one step maps some of 200 documents, not all, and the
/// steps that follow catch the index up, every document once. A message
/// sent round a `MessageChannel` without pause counts the tasks: its
/// handler runs between any two of the step's tasks. (Natively a step maps
/// up to `STEP_DOCS` in one go.)
#[wasm_bindgen_test]
async fn a_slow_map_function_maps_one_task_budget_at_a_time() {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    use outpost::db::STEP_TASKS;
    use outpost::index::{Emit, FnIndex, Index, IndexDefinition, IndexQuery, MapDoc};
    use wasm_bindgen::JsCast;
    use wasm_bindgen::closure::Closure;

    static TICKS: AtomicU32 = AtomicU32::new(0);
    /// The tick count at each call of the map function.
    static SEEN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

    const DOCS: i64 = 200;
    let name = unique_name("slowmap");
    let db = open_db(&name).await;
    let mut batch = Batch::new();
    for n in 0..DOCS {
        batch.put(format!("d/{n:03}"), json!({ "n": n }));
    }
    db.commit(batch).await.unwrap();
    fn slow(d: &MapDoc<'_>) -> Result<Vec<Emit>, String> {
        SEEN.lock().unwrap().push(TICKS.load(Ordering::Relaxed));
        let until = js_sys::Date::now() + 2.0;
        while js_sys::Date::now() < until {}
        Ok(vec![Emit::new(d.body()?["n"].clone(), json!(null))])
    }
    let index = Index::new(IndexDefinition::map("slow", "1", &[]), FnIndex::map(slow));
    let ch = web_sys::MessageChannel::new().unwrap();
    let back = ch.port2();
    let tick = Closure::<dyn FnMut()>::new(move || {
        TICKS.fetch_add(1, Ordering::Relaxed);
        let _ = back.post_message(&JsValue::UNDEFINED);
    });
    ch.port1()
        .set_onmessage(Some(tick.as_ref().unchecked_ref()));
    ch.port2().post_message(&JsValue::UNDEFINED).unwrap();

    let budget = outpost::platform::TASK_BUDGET_MS.expect("a budget in the browser");
    let first = db.update_index(&index).await.unwrap();
    ch.port1().close();
    drop(tick);
    let seen = std::mem::take(&mut *SEEN.lock().unwrap());
    assert_eq!(seen.len(), first.mapped);
    // Calls in the same task see the same count.
    let mut per_task: Vec<usize> = Vec::new();
    for (i, t) in seen.iter().enumerate() {
        if i == 0 || seen[i - 1] != *t {
            per_task.push(0);
        }
        *per_task.last_mut().unwrap() += 1;
    }
    // The budget is looked at after each document; each takes at least
    // 1 ms, and `Date.now()` counts whole milliseconds.
    let most = per_task.iter().copied().max().unwrap();
    assert!(
        most as i64 <= budget + 2,
        "{most} documents of at least 1 ms each in one task, against a budget of {budget} ms \
         (per task: {per_task:?})"
    );
    assert!(
        per_task.len() > 1 && per_task.len() <= STEP_TASKS as usize,
        "the step mapped in {} tasks (at most {STEP_TASKS}): {per_task:?}",
        per_task.len()
    );
    assert!(
        first.mapped >= 1 && (first.mapped as i64) < DOCS,
        "one step mapped {} of {DOCS} documents",
        first.mapped
    );
    assert!(first.indexed_etag < first.db_etag, "{first:?}");
    let done = db.catch_up_index(&index, None).await.unwrap();
    assert_eq!(done.indexed_etag, done.db_etag, "{done:?}");
    let rows = db
        .snapshot()
        .query("slow", &IndexQuery::default())
        .await
        .unwrap()
        .rows;
    let ns: Vec<i64> = rows.iter().map(|r| r.key.as_i64().unwrap()).collect();
    assert_eq!(ns, (0..DOCS).collect::<Vec<i64>>());
    // A step told that other operations wait ends at its first wait for the
    // next task: it maps one task budget's documents and commits them.
    let other = Index::new(IndexDefinition::map("slow2", "1", &[]), FnIndex::map(slow));
    let p = db.update_index_unless(&other, &|| true).await.unwrap();
    assert!(
        p.mapped >= 1 && p.mapped as i64 <= budget + 2,
        "a step with others waiting mapped {} documents",
        p.mapped
    );
    assert!(p.indexed_etag < p.db_etag, "{p:?}");
    let p = db.catch_up_index(&other, None).await.unwrap();
    assert_eq!(p.indexed_etag, p.db_etag, "{p:?}");
    db.close().await.unwrap();
    drop(db);
    IdbStore::destroy(&name).await.unwrap();
}
