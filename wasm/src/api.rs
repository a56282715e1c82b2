//! The `Outpost` class: a database handle for JS.
//!
//! Every method that touches data returns a promise; argument errors reject it
//! (they are not thrown synchronously), always with an `OutpostError` carrying a
//! stable `code`.

use js_sys::{Array, Promise};
use outpost::store::MemoryStore;
use outpost::store::idb::IdbStore;
use outpost::{Batch, Database, OpenOptions};
use wasm_bindgen::prelude::*;

use crate::convert::{
    body_from_js, check_options, expected_from, expected_of, id_from_js, json_parse, opt_count,
    opt_string, opt_write_result_to_js, prop, spliced_to_js, string_value, value_to_js,
    write_result_to_js,
};
use crate::error::{invalid_argument, js_error, open_error_to_js, to_js};
use crate::host_store::JsPageStore;
use crate::panic::{Panicked, run};
use crate::store::AnyStore;

/// Whether this JS global scope has IndexedDB (browsers and web workers do;
/// Node and most edge runtimes do not).
fn has_indexed_db() -> bool {
    js_sys::Reflect::get(&js_sys::global(), &"indexedDB".into())
        .map(|v| !v.is_undefined() && !v.is_null())
        .unwrap_or(false)
}

/// Chooses the page store `Outpost.open` uses: the host's `store` if given;
/// else `storage` — `"indexeddb"` (the IndexedDB database `name`), `"opfs"`
/// (the Origin Private File System, in a dedicated worker), or
/// `"memory"`; without either, IndexedDB where the global scope has it, memory
/// elsewhere.
async fn choose_store(name: &str, opts: &JsValue) -> Result<AnyStore, JsValue> {
    let host = prop(opts, "store");
    if !host.is_undefined() && !host.is_null() {
        if let Some(name) = host.as_string() {
            // `store` is a host page store object; the built-in stores are
            // chosen with `storage`.
            return Err(js_error(
                "invalid_options",
                &format!(
                    "option store must be a page store object (readPage, readMeta, commit); \
                     for a built-in store use storage: {name:?} (\"indexeddb\", \"opfs\" or \"memory\")"
                ),
            ));
        }
        let store = JsPageStore::new(host).map_err(|m| js_error("invalid_options", &m))?;
        return Ok(AnyStore::Host(store));
    }
    let storage = opt_string(opts, "storage")?;
    let storage = storage.as_deref().unwrap_or(if has_indexed_db() {
        "indexeddb"
    } else {
        "memory"
    });
    match storage {
        "memory" => Ok(AnyStore::Memory(MemoryStore::new())),
        "opfs" => {
            if !outpost::store::opfs::available() {
                return Err(js_error(
                    "unsupported",
                    "storage \"opfs\": needs a dedicated worker of a browser with OPFS synchronous \
                     access handles (FileSystemSyncAccessHandle); open the database in a Worker \
                     (openInWorker) or use storage \"indexeddb\"",
                ));
            }
            let store = outpost::store::opfs::open(name)
                .await
                .map_err(|e| to_js(e.into()))?;
            Ok(AnyStore::Opfs(store))
        }
        "indexeddb" => {
            if !has_indexed_db() {
                return Err(js_error(
                    "invalid_options",
                    "storage \"indexeddb\": this JS environment has no indexedDB",
                ));
            }
            if prop(opts, "persist").as_bool() == Some(true) {
                // A refusal is the browser's choice, not an error: the database
                // still works, its storage is only "best effort".
                let _ = IdbStore::request_persistence().await;
            }
            let store = IdbStore::open(name).await.map_err(|e| to_js(e.into()))?;
            Ok(AnyStore::Idb(store))
        }
        other => Err(js_error(
            "invalid_options",
            &format!("unknown storage {other:?}: expected \"indexeddb\", \"opfs\" or \"memory\""),
        )),
    }
}

/// An open Outpost database.
///
/// ```js
/// const db = await Outpost.open("clinic");
/// await db.put("patients/1", { name: "Ada" }, { collection: "Patients" });
/// const ada = await db.get("patients/1");
/// console.log(ada.name, ada["@metadata"]["@change-vector"]);
/// await db.close();
/// ```
#[wasm_bindgen]
pub struct Outpost {
    db: Database<AnyStore>,
    name: String,
    /// What the browser said when IndexedDB opened (None: another store).
    report: Option<outpost::store::idb::OpenReport>,
    /// Set once an operation on this handle panicked (see `crate::panic`).
    panicked: Panicked,
    /// The indexes whose functions this handle registered (`crate::index`).
    indexes: crate::index::Registry,
}

impl Outpost {
    /// The database (for the index bindings).
    pub(crate) fn database(&self) -> Database<AnyStore> {
        self.db.clone()
    }

    /// The indexes registered on this handle.
    pub(crate) fn registry(&self) -> crate::index::Registry {
        self.indexes.clone()
    }

    /// Runs an operation of this handle as a promise (for the index
    /// bindings: boxed, so their operations share one instance of the
    /// promise machinery in the size-budgeted build).
    pub(crate) fn run_op(
        &self,
        f: std::pin::Pin<Box<dyn std::future::Future<Output = Result<JsValue, JsValue>>>>,
    ) -> Promise {
        self.run(f)
    }

    /// The database and the panic flag of this handle (for the sync client).
    pub(crate) fn parts(&self) -> (Database<AnyStore>, Panicked) {
        (self.db.clone(), self.panicked.clone())
    }

    /// Runs an operation of this handle as a promise.
    fn run<F>(&self, f: F) -> Promise
    where
        F: std::future::Future<Output = Result<JsValue, JsValue>> + 'static,
    {
        run(self.panicked.clone(), f)
    }
}

#[wasm_bindgen]
impl Outpost {
    /// Opens (or creates) a database.
    ///
    /// In a browser or web worker the pages are kept in the IndexedDB database
    /// `name`; elsewhere (Node, edge runtimes) in memory, gone when the handle
    /// is dropped, unless the host supplies a page store:
    ///
    /// ```js
    /// const pages = new Map(); let meta;
    /// const store = {
    ///   readPage: (no) => pages.get(no),
    ///   readMeta: () => meta,
    ///   commit: (batch, m) => { for (const [no, b] of batch) pages.set(no, b); meta = m; },
    /// };
    /// const db = await Outpost.open("notes", { store });
    /// ```
    ///
    /// Rejects with code `"invalid_options"` for a bad options object,
    /// `"corrupt"` if the stored data is damaged.
    #[wasm_bindgen(unchecked_return_type = "Promise<Outpost>")]
    pub fn open(
        name: String,
        #[wasm_bindgen(unchecked_optional_param_type = "OpenOptions")] options: JsValue,
    ) -> Promise {
        run(Panicked::default(), async move {
            check_options(&options, "open")?;
            let mut opts = OpenOptions::default();
            if let Some(n) = opt_count(&options, "cacheBytes")? {
                opts.cache_bytes = usize::try_from(n).unwrap_or(usize::MAX);
            }
            if let Some(d) = durability_from(&options)? {
                opts.durability = d;
            }
            let store = choose_store(&name, &options).await?;
            let report = match &store {
                AnyStore::Idb(s) => Some(s.open_report().clone()),
                _ => None,
            };
            let db = Database::open(store, opts)
                .await
                .map_err(open_error_to_js)?;
            Ok(Outpost {
                db,
                name,
                report,
                panicked: Panicked::default(),
                indexes: Default::default(),
            }
            .into())
        })
    }

    /// Deletes the IndexedDB database `name` and everything in it (close every
    /// handle on it first, in every tab: deletion waits for them), and its
    /// OPFS files (`storage: "opfs"`; rejected with `"locked"` while a worker
    /// has it open). Does nothing where there is neither; a host-supplied
    /// store is the host's to clear.
    ///
    /// ```js
    /// await db.close();
    /// await Outpost.destroy("clinic");
    /// ```
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn destroy(name: String) -> Promise {
        run(Panicked::default(), async move {
            if has_indexed_db() {
                IdbStore::destroy(&name)
                    .await
                    .map_err(|e| to_js(e.into()))?;
            }
            // And its OPFS files, if any (any context: the page may delete
            // what a worker wrote; refused while a worker has it open).
            outpost::store::opfs::destroy(&name)
                .await
                .map_err(|e| to_js(e.into()))?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// The name the database was opened with.
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        self.name.clone()
    }

    /// What the browser said when it opened the IndexedDB database: `{
    /// created, dataLoss, dataLossMessage }` (`created`: this open created
    /// it, empty; `dataLoss`: `"none"`, `"total"` or `null` when no
    /// `upgradeneeded` fired), or `null` for other stores. The package's JS
    /// layer turns a loss into the `storage_lost` error or event.
    #[wasm_bindgen(getter, js_name = "__openReport", skip_typescript)]
    pub fn open_report(&self) -> JsValue {
        let Some(r) = &self.report else {
            return JsValue::NULL;
        };
        let o = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&o, &"created".into(), &r.created.into());
        let loss = r
            .data_loss
            .as_deref()
            .map_or(JsValue::NULL, JsValue::from_str);
        let _ = js_sys::Reflect::set(&o, &"dataLoss".into(), &loss);
        let _ = js_sys::Reflect::set(
            &o,
            &"dataLossMessage".into(),
            &JsValue::from_str(&r.data_loss_message),
        );
        o.into()
    }

    /// The id of this database (its identity in change vectors).
    #[wasm_bindgen(getter, js_name = "dbId")]
    pub fn db_id(&self) -> String {
        self.db.db_id().to_string()
    }

    /// Writes a document (creating or replacing it); resolves once it is
    /// committed.
    ///
    /// ```js
    /// const { etag, changeVector } = await db.put("patients/1", { name: "Ada" },
    ///   { collection: "Patients" });
    /// // Only if nobody changed it since we read it:
    /// await db.put("patients/1", { name: "Ada L." }, { changeVector });
    /// ```
    ///
    /// Rejects with code `"invalid_id"`, `"invalid_json"` (not a plain object),
    /// `"invalid_collection"`, `"too_large"` or `"concurrency_conflict"`.
    #[wasm_bindgen(unchecked_return_type = "Promise<WriteResult>")]
    pub fn put(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] id: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Record<string, unknown>")] doc: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "PutOptions")] opts: JsValue,
    ) -> Promise {
        let db = self.db.clone();
        self.run(async move {
            check_options(&opts, "put")?;
            let id = id_from_js(&id)?;
            let body = body_from_js(&doc)?;
            let mut b = Batch::new();
            body.put(
                &mut b,
                id,
                opt_string(&opts, "collection")?,
                expected_from(&opts)?,
            );
            let r = commit_one(&db, b, &opts).await?;
            match r {
                Some(r) => Ok(write_result_to_js(&r)),
                None => Err(to_js(outpost::Error::Poisoned(
                    "put produced no result".into(),
                ))),
            }
        })
    }

    /// Reads a document: its body plus `@metadata`, or `null` if it does not
    /// exist (or was deleted).
    ///
    /// ```js
    /// const doc = await db.get("patients/1");
    /// if (doc) console.log(doc.name, doc["@metadata"]["@etag"]);
    /// ```
    #[wasm_bindgen(unchecked_return_type = "Promise<OutpostDocument | null>")]
    pub fn get(&self, #[wasm_bindgen(unchecked_param_type = "string")] id: JsValue) -> Promise {
        let db = self.db.clone();
        self.run(async move {
            let id = id_from_js(&id)?;
            match db.get_spliced(&id, json_parse).await.map_err(to_js)? {
                Some(d) => Ok(spliced_to_js(d)?.unchecked_ref::<Array>().get(0)),
                None => Ok(JsValue::NULL),
            }
        })
    }

    /// Deletes a document (writes a tombstone that replicates). Resolves to the
    /// write result, or `null` if the document did not exist.
    ///
    /// ```js
    /// await db.delete("patients/1");
    /// ```
    #[wasm_bindgen(unchecked_return_type = "Promise<WriteResult | null>")]
    pub fn delete(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] id: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "DeleteOptions")] opts: JsValue,
    ) -> Promise {
        let db = self.db.clone();
        self.run(async move {
            check_options(&opts, "delete")?;
            let id = id_from_js(&id)?;
            let mut b = Batch::new();
            b.delete_with(id, expected_from(&opts)?);
            Ok(opt_write_result_to_js(&commit_one(&db, b, &opts).await?))
        })
    }

    /// Applies several writes atomically: all of them or, if any is refused,
    /// none. Resolves to one result per operation (`null` for a delete of a
    /// missing document).
    ///
    /// ```js
    /// await db.transaction([
    ///   { type: "put", id: "accounts/a", doc: { balance: 50 } },
    ///   { type: "put", id: "accounts/b", doc: { balance: 150 } },
    ///   { type: "delete", id: "transfers/pending/7" },
    /// ]);
    /// ```
    ///
    /// (The npm package also accepts `db.transaction(async (tx) => { tx.put(...) })`.)
    #[wasm_bindgen(unchecked_return_type = "Promise<Array<WriteResult | null>>")]
    pub fn transaction(
        &self,
        #[wasm_bindgen(unchecked_param_type = "TransactionOp[]")] ops: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "TransactionOptions")] opts: JsValue,
    ) -> Promise {
        let db = self.db.clone();
        self.run(async move {
            check_options(&opts, "transaction")?;
            let mut batch = batch_from_js(&ops)?;
            if let Some(d) = durability_from(&opts)? {
                batch.durability(d);
            }
            let info = db.commit(batch).await.map_err(to_js)?;
            if prop(&opts, "results").as_bool() == Some(false) {
                // A bulk write that needs no result per document: how many
                // were written, and the last etag.
                let written = info.results.iter().flatten();
                let (n, etag) = written.fold((0u32, 0u64), |(n, e), r| (n + 1, e.max(r.etag)));
                let o = js_sys::Object::new();
                let _ = js_sys::Reflect::set(&o, &"written".into(), &n.into());
                let _ = js_sys::Reflect::set(&o, &"etag".into(), &(etag as f64).into());
                return Ok(o.into());
            }
            let out = Array::new_with_length(info.results.len() as u32);
            for (i, r) in info.results.iter().enumerate() {
                out.set(i as u32, opt_write_result_to_js(r));
            }
            Ok(out.into())
        })
    }

    /// Live documents whose id starts with `prefix` (case-insensitive), in id
    /// order, after the id `after`, at most `limit`; with `keysOnly`, their
    /// ids only.
    ///
    /// ```js
    /// let page = await db.scan({ prefix: "patients/", limit: 100 });
    /// while (page.length) {
    ///   const last = page[page.length - 1]["@metadata"]["@id"];
    ///   page = await db.scan({ prefix: "patients/", after: last, limit: 100 });
    /// }
    /// ```
    #[wasm_bindgen(unchecked_return_type = "Promise<OutpostDocument[] | string[]>")]
    pub fn scan(
        &self,
        #[wasm_bindgen(unchecked_optional_param_type = "ScanOptions")] opts: JsValue,
    ) -> Promise {
        let db = self.db.clone();
        self.run(async move {
            check_options(&opts, "scan")?;
            let prefix = opt_string(&opts, "prefix")?.unwrap_or_default();
            let after = opt_string(&opts, "after")?;
            let limit = limit_of(&opts)?;
            if prop(&opts, "keysOnly").as_bool() == Some(true) {
                let ids = db
                    .scan_ids(&prefix, after.as_deref(), limit)
                    .await
                    .map_err(to_js)?;
                return Ok(ids.into_iter().map(JsValue::from).collect::<Array>().into());
            }
            let page = db.scan_spliced(&prefix, after.as_deref(), limit, json_parse);
            spliced_to_js(page.await.map_err(to_js)?)
        })
    }

    /// Document versions written after etag `since`, in etag order, tombstones
    /// included (with `"@deleted": true`): the feed a replicator or a cache
    /// follows.
    ///
    /// ```js
    /// let since = 0;
    /// for (const d of await db.changes({ since, limit: 500 })) {
    ///   since = d["@metadata"]["@etag"];
    /// }
    /// ```
    #[wasm_bindgen(unchecked_return_type = "Promise<OutpostDocument[]>")]
    pub fn changes(
        &self,
        #[wasm_bindgen(unchecked_optional_param_type = "ChangesOptions")] opts: JsValue,
    ) -> Promise {
        let db = self.db.clone();
        self.run(async move {
            check_options(&opts, "changes")?;
            let since = opt_count(&opts, "since")?.unwrap_or(0);
            let limit = limit_of(&opts)?;
            spliced_to_js(
                db.changes_spliced(since, limit, json_parse)
                    .await
                    .map_err(to_js)?,
            )
        })
    }

    /// Picks up what another tab (another handle on the same IndexedDB
    /// database) committed: re-reads the committed state and, if it changed,
    /// drops this handle's page cache. Resolves to `true` if anything changed.
    /// Call it only while holding the cross-tab lock and with no write of this
    /// handle in flight (the package's JS layer does both).
    ///
    /// ```js
    /// await navigator.locks.request("outpost:notes", async () => {
    ///   await raw.refresh();
    ///   return raw.get("notes/1");
    /// });
    /// ```
    #[wasm_bindgen(unchecked_return_type = "Promise<boolean>")]
    pub fn refresh(&self) -> Promise {
        let db = self.db.clone();
        self.run(async move {
            let changed = db.refresh().await.map_err(to_js)?;
            Ok(JsValue::from_bool(changed))
        })
    }

    /// Takes the database over from the handle that held the cross-tab lock
    /// before this one took it by force (`navigator.locks.request(name,
    /// { steal: true }, ...)`, because that holder stopped answering: a frozen
    /// or hung tab). From then on the old holder's commits fail with
    /// `"locked"` and write nothing, until its next turn reads the state again
    /// (docs/design.md, "Several tabs"). Call it inside the stolen lock,
    /// before `refresh()`. Does nothing for a store other than IndexedDB.
    #[wasm_bindgen(js_name = takeOver, unchecked_return_type = "Promise<void>")]
    pub fn take_over(&self) -> Promise {
        let db = self.db.clone();
        self.run(async move {
            if let AnyStore::Idb(s) = db.store() {
                s.take_over()
                    .await
                    .map_err(|e| to_js(outpost::Error::Store(e)))?;
            }
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Conflicted documents (concurrent versions kept by replication, see
    /// `docs/protocol.md`), in id order, after the id `after`, at most
    /// `limit`, each with all its versions.
    ///
    /// ```js
    /// for (const c of await db.conflicts()) {
    ///   console.log(c.id, c.versions.map((v) => v.body));
    /// }
    /// ```
    #[wasm_bindgen(unchecked_return_type = "Promise<ConflictedDocument[]>")]
    pub fn conflicts(
        &self,
        #[wasm_bindgen(unchecked_optional_param_type = "ConflictsOptions")] opts: JsValue,
    ) -> Promise {
        let db = self.db.clone();
        self.run(async move {
            check_options(&opts, "conflicts")?;
            let after = opt_string(&opts, "after")?;
            let limit = limit_of(&opts)?;
            let docs = db.conflicts(after.as_deref(), limit).await.map_err(to_js)?;
            value_to_js(&docs.iter().map(conflict_json).collect::<Vec<_>>())
        })
    }

    /// Ends a conflict: writes `body` (or, with `null`, a deletion) as a new
    /// version that supersedes every concurrent version, so the conflict ends
    /// everywhere once it replicates. On a document that is not conflicted it
    /// is a plain put (or delete). The collection is kept unless
    /// `options.collection` names another.
    ///
    /// ```js
    /// const [c] = await db.conflicts();
    /// await db.resolve(c.id, c.versions[1].body); // keep the second version
    /// ```
    #[wasm_bindgen(unchecked_return_type = "Promise<WriteResult | null>")]
    pub fn resolve(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] id: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Record<string, unknown> | null")] body: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "{ collection?: string }")] opts: JsValue,
    ) -> Promise {
        let db = self.db.clone();
        self.run(async move {
            check_options(&opts, "resolve")?;
            let id = id_from_js(&id)?;
            let (body, meta_collection) = if body.is_null() {
                (None, None)
            } else if body.is_undefined() {
                return Err(crate::error::invalid_argument(
                    "resolve expects the body to keep, or null to delete the document",
                ));
            } else {
                let (b, c) = body_from_js(&body)?.into_value()?;
                (Some(b), c)
            };
            let collection = opt_string(&opts, "collection")?.or(meta_collection);
            let mut batch = Batch::new();
            batch.resolve(id, body, collection);
            let info = db.commit(batch).await.map_err(to_js)?;
            Ok(info
                .results
                .first()
                .map_or(JsValue::NULL, opt_write_result_to_js))
        })
    }

    /// The changes the hub refused when this database replicated (`db.sync`),
    /// as recorded here: `{ id, changeVector, code, rule, message }`.
    #[wasm_bindgen(unchecked_return_type = "Promise<Rejection[]>")]
    pub fn rejections(&self) -> Promise {
        let db = self.db.clone();
        self.run(async move {
            let cfg = outpost::sync::EdgeConfig::new("", "", "");
            let list = outpost::sync::driver::rejections(&db, &cfg)
                .await
                .map_err(to_js)?;
            let out = Array::new();
            for r in &list {
                out.push(&crate::convert::rejection_to_js(r)?);
            }
            Ok(out.into())
        })
    }

    /// Number of live documents.
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn count(&self) -> Promise {
        let db = self.db.clone();
        self.run(async move {
            let n = db.count().await.map_err(to_js)?;
            Ok(JsValue::from_f64(n as f64))
        })
    }

    /// Collections with their numbers of live documents, by name.
    #[wasm_bindgen(unchecked_return_type = "Promise<CollectionInfo[]>")]
    pub fn collections(&self) -> Promise {
        let db = self.db.clone();
        self.run(async move {
            let list = db.collections().await.map_err(to_js)?;
            let out = Array::new();
            for (name, count) in list {
                let o = js_sys::Object::new();
                let _ = js_sys::Reflect::set(&o, &"name".into(), &name.into());
                let _ = js_sys::Reflect::set(&o, &"count".into(), &(count as f64).into());
                out.push(&o);
            }
            Ok(out.into())
        })
    }

    /// Counters of the database and its page cache (documents, tombstones,
    /// pages, cache hits and misses, ...).
    #[wasm_bindgen(unchecked_return_type = "Record<string, unknown>")]
    pub fn stats(&self) -> Result<JsValue, JsValue> {
        value_to_js(&self.db.stats())
    }

    /// Panics inside an operation of this handle: lets the package's tests
    /// check that the promise rejects with code `"panic"`. Not part of the API.
    #[doc(hidden)]
    #[wasm_bindgen(js_name = "__panicForTests", skip_typescript)]
    pub fn panic_in_operation(&self) -> Promise {
        self.run(async { panic!("deliberate panic in an operation (test)") })
    }

    /// Waits for pending writes, then closes the page store. Later calls reject
    /// with code `"closed"`. Closing twice is harmless.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn close(&self) -> Promise {
        let db = self.db.clone();
        self.run(async move {
            db.close().await.map_err(to_js)?;
            Ok(JsValue::UNDEFINED)
        })
    }
}

/// A conflicted document as `{ id, collection, versions: [...] }`.
fn conflict_json(d: &outpost::Document) -> serde_json::Value {
    use serde_json::{Value, json};
    let version = |cv: String, ms: i64, deleted: bool, body: &Value| {
        json!({
            "changeVector": cv,
            "lastModified": outpost::doc::iso_time_ms(ms),
            "deleted": deleted,
            "body": if deleted { Value::Null } else { body.clone() },
        })
    };
    let mut versions = vec![version(
        d.meta.change_vector.to_text(),
        d.meta.last_modified_ms,
        d.meta.flags.is_tombstone(),
        &d.body,
    )];
    for c in &d.conflicts {
        versions.push(version(
            c.change_vector.to_text(),
            c.last_modified_ms,
            c.deleted,
            &c.body,
        ));
    }
    let mut o = json!({ "id": d.id, "versions": versions });
    if let Some(c) = &d.meta.collection {
        o["collection"] = Value::String(c.clone());
    }
    o
}

/// The `limit` option (default: no limit).
fn limit_of(opts: &JsValue) -> Result<usize, JsValue> {
    Ok(opt_count(opts, "limit")?.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX)))
}

/// The operations of `transaction` as a batch.
/// The `durability` option of a write or an open: `"strict"` or
/// `"relaxed"` (`None`: not given).
fn durability_from(opts: &JsValue) -> Result<Option<outpost::store::Durability>, JsValue> {
    use outpost::store::Durability;
    match opt_string(opts, "durability")?.as_deref() {
        None => Ok(None),
        Some("strict") => Ok(Some(Durability::Durable)),
        Some("relaxed") => Ok(Some(Durability::Relaxed)),
        Some(other) => Err(js_error(
            "invalid_options",
            &format!("durability {other:?}: expected \"strict\" or \"relaxed\""),
        )),
    }
}

/// Commits a one-write batch with the write's `durability` option.
async fn commit_one(
    db: &Database<AnyStore>,
    mut b: Batch,
    opts: &JsValue,
) -> Result<Option<outpost::WriteResult>, JsValue> {
    if let Some(d) = durability_from(opts)? {
        b.durability(d);
    }
    Ok(db.commit(b).await.map_err(to_js)?.results.pop().flatten())
}

/// The keys of a transaction operation as JS strings, made once per thread:
/// a JS string made from a Rust `&str` is a `TextDecoder` call, and a bulk
/// write looked up five per operation.
struct OpKeys([JsValue; 5]);

impl OpKeys {
    const NAMES: [&'static str; 5] = crate::convert::OP_KEYS;

    /// Whether `op` has only these keys (else `check_options` names the
    /// one it does not know).
    fn only_known(&self, op: &JsValue) -> bool {
        js_sys::Object::keys(op.unchecked_ref::<js_sys::Object>())
            .iter()
            .all(|k| self.0.contains(&k))
    }

    /// Property `k` (an index into [`OpKeys::NAMES`]) of the operation `op`.
    fn get(&self, op: &JsValue, k: usize) -> JsValue {
        js_sys::Reflect::get(op, &self.0[k]).unwrap_or(JsValue::UNDEFINED)
    }
}

thread_local! {
    static OP_KEYS: OpKeys = OpKeys(OpKeys::NAMES.map(JsValue::from_str));
}

fn batch_from_js(ops: &JsValue) -> Result<Batch, JsValue> {
    let ops = ops
        .dyn_ref::<Array>()
        .ok_or_else(|| invalid_argument("transaction expects an array of operations"))?;
    OP_KEYS.with(|keys| {
        let mut batch = Batch::new();
        for (i, op) in ops.iter().enumerate() {
            add_op(&mut batch, keys, i, &op)?;
        }
        Ok(batch)
    })
}

/// Adds operation `i` of a transaction, `op`, to `batch`.
fn add_op(batch: &mut Batch, keys: &OpKeys, i: usize, op: &JsValue) -> Result<(), JsValue> {
    let [ty, id, doc, collection, change_vector] = [0, 1, 2, 3, 4];
    if !op.is_object() {
        return Err(invalid_argument(format!("operation {i} is not an object")));
    }
    if Array::is_array(op) || !keys.only_known(op) {
        check_options(op, "transaction operation")?;
    }
    let id = id_from_js(&keys.get(op, id))?;
    match string_value(keys.get(op, ty), OpKeys::NAMES[ty])?.as_deref() {
        Some("put") => {
            let body = body_from_js(&keys.get(op, doc))?;
            body.put(
                batch,
                id,
                string_value(keys.get(op, collection), OpKeys::NAMES[collection])?,
                expected_of(keys.get(op, change_vector))?,
            );
        }
        Some("delete") => {
            batch.delete_with(id, expected_of(keys.get(op, change_vector))?);
        }
        _ => {
            return Err(invalid_argument(format!(
                "operation {i}: type must be \"put\" or \"delete\""
            )));
        }
    }
    Ok(())
}

/// Panics synchronously: lets the package's tests check how a Rust panic
/// surfaces in JS. Not part of the API.
#[doc(hidden)]
#[wasm_bindgen(js_name = "__panicForTests", skip_typescript)]
pub fn panic_for_tests() {
    panic!("deliberate panic (test)")
}
