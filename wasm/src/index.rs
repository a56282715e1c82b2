//! Indexes for JS: map and reduce functions written in JavaScript,
//! registered on a handle, run by the engine's index steps; queries.
//!
//! The package's JS layer (`pkg-js/src/indexes.js`) wraps the application's
//! functions so that only JSON text crosses the boundary: the map wrapper
//! takes `(bodyJson, id, collection)` and returns the JSON text of a flat
//! array `[key, value, key, value, ...]`; the reduce wrapper takes the JSON
//! text of `[key, values, rereduce]` and returns its result's JSON text. A
//! throw becomes `Error::Index` (code `"index_failed"`) naming the index and
//! the document.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use js_sys::{Function, Object, Promise, Reflect};
use outpost::Database;
use outpost::index::{
    Cursor, Emit, Index, IndexDefinition, IndexFunctions, IndexQuery, KeyRange, MapDoc, js_wire,
};
use serde_json::Value;
use wasm_bindgen::prelude::*;

use crate::api::Outpost;
use crate::convert::{check_options, opt_count, opt_string, prop, value_to_js};
use crate::error::{invalid_argument, message_of, to_js};
use crate::store::AnyStore;

/// The indexes registered on one handle.
pub(crate) type Registry = Rc<RefCell<Vec<Index>>>;

/// The index registered as `name`.
fn registered(r: &Registry, name: &str) -> Option<Index> {
    r.borrow().iter().find(|i| i.def.name == name).cloned()
}

/// An index's JavaScript functions (the package's wrappers).
struct JsFunctions {
    map: Function,
    reduce: Option<Function>,
}

impl IndexFunctions for JsFunctions {
    fn map(&self, doc: &MapDoc<'_>) -> Result<Vec<Emit>, String> {
        let body = std::str::from_utf8(doc.json).map_err(|e| e.to_string())?;
        let collection = doc.collection.map_or(JsValue::NULL, JsValue::from_str);
        let out = self
            .map
            .call3(
                &JsValue::NULL,
                &JsValue::from_str(body),
                &JsValue::from_str(doc.id),
                &collection,
            )
            .map_err(|e| message_of(&e))?;
        let text = out
            .as_string()
            .ok_or("the map wrapper returned no JSON text")?;
        js_wire::emits(&text)
    }

    fn reduce(&self, key: &Value, values: &[Value], rereduce: bool) -> Result<Value, String> {
        let Some(f) = &self.reduce else {
            return Err("this index has no reduce function".into());
        };
        let arg = js_wire::reduce_arg(key, values, rereduce)?;
        let out = f
            .call1(&JsValue::NULL, &JsValue::from_str(&arg))
            .map_err(|e| message_of(&e))?;
        let text = out
            .as_string()
            .ok_or("the reduce wrapper returned no JSON text")?;
        js_wire::result(&text)
    }
}

/// A JS value as JSON (through `JSON.stringify`).
fn json_of(v: &JsValue, what: &str) -> Result<Value, JsValue> {
    let text = js_sys::JSON::stringify(v)
        .ok()
        .and_then(|s| s.as_string())
        .ok_or_else(|| invalid_argument(format!("{what} is not JSON")))?;
    serde_json::from_str(&text).map_err(|e| invalid_argument(format!("{what}: {e}")))
}

/// The definition part of `defineIndex`'s argument.
fn definition_from_js(def: &JsValue) -> Result<IndexDefinition, JsValue> {
    let name = opt_string(def, "name")?.ok_or_else(|| invalid_argument("an index needs a name"))?;
    let version =
        opt_string(def, "version")?.ok_or_else(|| invalid_argument("an index needs a version"))?;
    let collections = match prop(def, "collections") {
        v if v.is_undefined() || v.is_null() => Vec::new(),
        v => {
            let arr = v
                .dyn_ref::<js_sys::Array>()
                .ok_or_else(|| invalid_argument("collections is an array of names"))?;
            arr.iter()
                .map(|c| {
                    c.as_string()
                        .ok_or_else(|| invalid_argument("collections is an array of names"))
                })
                .collect::<Result<_, _>>()?
        }
    };
    Ok(IndexDefinition {
        name,
        version,
        collections,
        reduce: prop(def, "reduce").as_bool() == Some(true),
        output: opt_string(def, "output")?,
    })
}

/// The key range of a query's options (`eq`, `prefix`, or `gt`/`gte` and
/// `lt`/`lte`).
fn range_from_js(opts: &JsValue) -> Result<KeyRange, JsValue> {
    let get = |k: &str| -> Result<Option<Value>, JsValue> {
        let v = prop(opts, k);
        if v.is_undefined() {
            Ok(None)
        } else {
            json_of(&v, k).map(Some)
        }
    };
    let (eq, prefix) = (get("eq")?, get("prefix")?);
    let (gt, gte, lt, lte) = (get("gt")?, get("gte")?, get("lt")?, get("lte")?);
    let bounds = gt.is_some() || gte.is_some() || lt.is_some() || lte.is_some();
    match (eq, prefix) {
        (Some(_), Some(_)) => Err(invalid_argument("a query has eq or prefix, not both")),
        (Some(_), None) | (None, Some(_)) if bounds => Err(invalid_argument(
            "a query has eq, prefix or bounds (gt, gte, lt, lte), one of them",
        )),
        (Some(v), None) => Ok(KeyRange::Eq(v)),
        (None, Some(v)) => Ok(KeyRange::Prefix(v)),
        (None, None) if !bounds => Ok(KeyRange::All),
        (None, None) => {
            if (gt.is_some() && gte.is_some()) || (lt.is_some() && lte.is_some()) {
                return Err(invalid_argument(
                    "a query has at most one lower and one upper bound",
                ));
            }
            Ok(KeyRange::Range {
                from: gt.map(|v| (v, false)).or(gte.map(|v| (v, true))),
                to: lt.map(|v| (v, false)).or(lte.map(|v| (v, true))),
            })
        }
    }
}

/// How far a query waits for its index: not at all, every write, or the
/// writes up to an etag (a write result's, say).
#[derive(Clone, Copy)]
enum Wait {
    No,
    All,
    Upto(u64),
}

/// A query's options.
fn query_from_js(opts: &JsValue) -> Result<(IndexQuery, Wait), JsValue> {
    check_options(opts, "query")?;
    let after = match opt_string(opts, "after")? {
        Some(h) => Some(Cursor(
            outpost::codec::from_hex(&h).ok_or_else(|| invalid_argument("after: not a cursor"))?,
        )),
        None => None,
    };
    let q = IndexQuery {
        range: range_from_js(opts)?,
        limit: opt_count(opts, "limit")?.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX)),
        descending: prop(opts, "descending").as_bool() == Some(true),
        after,
    };
    let w = prop(opts, "wait");
    let wait = match (w.as_bool(), w.as_f64()) {
        (Some(false), _) => Wait::No,
        (Some(true), _) => Wait::All,
        (_, Some(e)) if e >= 0.0 && e.fract() == 0.0 && e <= 9_007_199_254_740_991.0 => {
            Wait::Upto(e as u64)
        }
        _ if w.is_undefined() || w.is_null() => Wait::All,
        _ => {
            return Err(invalid_argument(
                "wait: true, false, or an etag (a non-negative integer)",
            ));
        }
    };
    Ok((q, wait))
}

/// The registered indexes a query of `name` depends on, the ones it reads
/// the output collection of first (depth first, each once), `name` last.
fn chain(all: &[Index], name: &str) -> Vec<Index> {
    fn visit(all: &[Index], i: usize, seen: &mut Vec<usize>, out: &mut Vec<Index>) {
        if seen.contains(&i) {
            return;
        }
        seen.push(i);
        let reads = &all[i].def.collections;
        for (j, up) in all.iter().enumerate() {
            let feeds = up
                .def
                .output
                .as_deref()
                .is_some_and(|o| reads.iter().any(|c| c.to_lowercase() == o.to_lowercase()));
            if feeds {
                visit(all, j, seen, out);
            }
        }
        out.push(all[i].clone());
    }
    let mut out = Vec::new();
    if let Some(i) = all.iter().position(|x| x.def.name == name) {
        visit(all, i, &mut Vec::new(), &mut out);
    }
    out
}

/// A query's options, after (if the query waits) the index, when registered
/// on this handle, has caught up with every write, and before it the
/// registered indexes whose output collections it reads (a chain), so the
/// rows include the caller's own writes. Boxed: `query` and `queryCount`
/// share it.
fn caught_up(
    db: Database<AnyStore>,
    registry: &Registry,
    name: &str,
    opts: &JsValue,
) -> Pin<Box<dyn Future<Output = Result<IndexQuery, JsValue>>>> {
    let parsed = query_from_js(opts);
    let chain = chain(&registry.borrow(), name);
    Box::pin(async move {
        let (q, wait) = parsed?;
        let upto = match wait {
            Wait::No => return Ok(q),
            Wait::All => None,
            Wait::Upto(e) => Some(e),
        };
        for index in &chain {
            db.catch_up_index(index, upto).await.map_err(to_js)?;
        }
        Ok(q)
    })
}

fn set(o: &Object, k: &str, v: &JsValue) {
    // Setting a property on a fresh plain object cannot fail.
    let _ = Reflect::set(o, &k.into(), v);
}

#[wasm_bindgen]
impl Outpost {
    /// Registers an index's functions on this handle and stores its
    /// definition (the package's `defineIndex` passes its wrappers here).
    #[wasm_bindgen(js_name = "__defineIndex", skip_typescript)]
    pub fn define_index_raw(&self, def: JsValue, map: Function, reduce: JsValue) -> Promise {
        let (db, registry) = (self.database(), self.registry());
        self.run_op(Box::pin(async move {
            let def = definition_from_js(&def)?;
            let reduce = reduce.dyn_into::<Function>().ok();
            if def.reduce && reduce.is_none() {
                return Err(invalid_argument(format!(
                    "index {:?} reduces: it needs a reduce function",
                    def.name
                )));
            }
            db.define_index(&def).await.map_err(to_js)?;
            let index = Index::new(def.clone(), JsFunctions { map, reduce });
            let mut r = registry.borrow_mut();
            r.retain(|i| i.def.name != def.name);
            r.push(index);
            Ok(JsValue::UNDEFINED)
        }))
    }

    /// Rows of an index (see the package's `query`): with `wait` (the
    /// default) an index registered on this handle first catches up with
    /// every write, so the rows include the caller's own.
    #[wasm_bindgen(js_name = "query", skip_typescript)]
    pub fn query(&self, name: String, opts: JsValue) -> Promise {
        let (db, registry) = (self.database(), self.registry());
        self.run_op(Box::pin(async move {
            let q = caught_up(db.clone(), &registry, &name, &opts).await?;
            let r = db.snapshot().query(&name, &q).await.map_err(to_js)?;
            let rows = js_sys::Array::new_with_length(r.rows.len() as u32);
            for (i, row) in r.rows.iter().enumerate() {
                let o = Object::new();
                set(&o, "key", &value_to_js(&row.key)?);
                set(&o, "value", &value_to_js(&row.value)?);
                if let Some(id) = &row.id {
                    set(&o, "id", &JsValue::from_str(id));
                }
                rows.set(i as u32, o.into());
            }
            let o = Object::new();
            set(&o, "rows", &rows);
            let next = r
                .next
                .map_or(JsValue::NULL, |c| outpost::codec::to_hex(&c.0).into());
            set(&o, "next", &next);
            set(&o, "stale", &r.stale.into());
            set(&o, "indexedEtag", &(r.indexed_etag as f64).into());
            set(&o, "dbEtag", &(r.db_etag as f64).into());
            Ok(o.into())
        }))
    }

    /// How many rows of an index a key range holds (`eq`, `prefix`, bounds).
    #[wasm_bindgen(js_name = "queryCount", skip_typescript)]
    pub fn query_count(&self, name: String, opts: JsValue) -> Promise {
        let (db, registry) = (self.database(), self.registry());
        self.run_op(Box::pin(async move {
            let q = caught_up(db.clone(), &registry, &name, &opts).await?;
            let n = db
                .snapshot()
                .query_count(&name, &q.range)
                .await
                .map_err(to_js)?;
            Ok((n as f64).into())
        }))
    }

    /// One step of every index registered on this handle (at most
    /// `STEP_DOCS` changes each, one transaction each). Resolves to
    /// `{ mapped, done, error? }`: the documents mapped, whether every
    /// index that did not fail reflects every write and none is building a
    /// new version, and the first failure (an index whose function threw
    /// stops only itself). The
    /// package's `updateIndexes` and its background maintenance call it in
    /// a loop, one turn per step, so other operations run between steps.
    ///
    /// `others_wait`, if a function, is asked at each of a step's waits for
    /// the next task whether other operations wait for this one; if it
    /// answers true, the step commits what it mapped and the call resolves
    /// (see `Database::update_index_unless`).
    #[wasm_bindgen(js_name = "__stepIndexes", skip_typescript)]
    pub fn step_indexes(&self, others_wait: JsValue) -> Promise {
        let (db, registry) = (self.database(), self.registry());
        let others_wait: Option<Function> = others_wait.dyn_into().ok();
        let waiting = move || {
            others_wait
                .as_ref()
                .and_then(|f| f.call0(&JsValue::NULL).ok())
                .is_some_and(|v| v.is_truthy())
        };
        self.run_op(Box::pin(async move {
            let all: Vec<Index> = registry.borrow().clone();
            let (mut mapped, mut done, mut error) = (0usize, true, None);
            for index in all {
                // A failing index stops only itself: the others go on.
                match db.update_index_unless(&index, &waiting).await {
                    Ok(p) => {
                        mapped += p.mapped;
                        done &= p.caught_up() && !p.building;
                    }
                    Err(e) => {
                        error.get_or_insert_with(|| to_js(e));
                    }
                }
            }
            let out = js_sys::Object::new();
            js_sys::Reflect::set(&out, &"mapped".into(), &(mapped as f64).into())?;
            js_sys::Reflect::set(&out, &"done".into(), &done.into())?;
            if let Some(e) = error {
                js_sys::Reflect::set(&out, &"error".into(), &e)?;
            }
            Ok(out.into())
        }))
    }

    /// Removes an index (and forgets its functions on this handle).
    #[wasm_bindgen(js_name = "dropIndex", skip_typescript)]
    pub fn drop_index(&self, name: String) -> Promise {
        let (db, registry) = (self.database(), self.registry());
        self.run_op(Box::pin(async move {
            registry.borrow_mut().retain(|i| i.def.name != name);
            db.drop_index(&name).await.map_err(to_js)?;
            db.clean_indexes().await.map_err(to_js)?;
            Ok(JsValue::UNDEFINED)
        }))
    }

    /// Every defined index: `{ name, version, collections, reduce, output,
    /// indexedEtag, dbEtag, stale, registered }`.
    #[wasm_bindgen(js_name = "indexes", skip_typescript)]
    pub fn indexes(&self) -> Promise {
        let (db, registry) = (self.database(), self.registry());
        self.run_op(Box::pin(async move {
            let list = db.snapshot().indexes().await.map_err(to_js)?;
            let out = js_sys::Array::new();
            for (def, p) in list {
                let o = Object::new();
                set(&o, "name", &JsValue::from_str(&def.name));
                set(&o, "version", &JsValue::from_str(&def.version));
                let colls: js_sys::Array = def.collections.iter().map(JsValue::from).collect();
                set(&o, "collections", &colls);
                set(&o, "reduce", &def.reduce.into());
                set(
                    &o,
                    "output",
                    &def.output
                        .as_deref()
                        .map_or(JsValue::NULL, JsValue::from_str),
                );
                set(&o, "indexedEtag", &(p.indexed_etag as f64).into());
                set(&o, "dbEtag", &(p.db_etag as f64).into());
                set(&o, "stale", &(!p.caught_up()).into());
                set(
                    &o,
                    "registered",
                    &registered(&registry, &def.name).is_some().into(),
                );
                out.push(&o);
            }
            Ok(out.into())
        }))
    }
}
