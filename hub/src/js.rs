//! The hub's embedded JavaScript engine: index definitions loaded from
//! JavaScript modules (the same files a browser app imports), their map and
//! reduce functions run by QuickJS (through rquickjs) in a sandbox.
//!
//! - **One definition everywhere.** The module is evaluated as an ES module;
//!   its default export (an array of definitions) or else every named export
//!   that has a `map` function is an index. Each goes through the npm
//!   package's own `prepareDefinition` (`pkg-js/src/indexes.js`, compiled
//!   into this binary), so the version (the hash of the functions' source)
//!   and the wrappers are the browser's exactly.
//! - **Sandbox.** QuickJS as embedded here has no I/O at all (no file,
//!   network, process or timer API: only the language and its built-ins),
//!   and a module may not import anything. Each module gets its own runtime
//!   with a memory limit ([`JsLimits::memory`]) and a stack limit; each call
//!   of a function gets a time limit ([`JsLimits::time`]), enforced by the
//!   interrupt handler. A throw, a timeout or memory exhaustion is an
//!   `Error::Index` naming the index and the document; the hub goes on.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outpost::index::{Emit, Index, IndexDefinition, IndexFunctions, MapDoc, js_wire};
use rquickjs::{Array, CatchResultExt, Context, Ctx, Function, Module, Object, Runtime, Value};
use serde_json::Value as Json;

/// The npm package's index wrappers (one source for both peers).
const WRAPPERS: &str = include_str!("../../pkg-js/src/indexes.js");

/// Limits of the embedded engine.
#[derive(Debug, Clone, Copy)]
pub struct JsLimits {
    /// Longest one call of a map or reduce function (and the module's
    /// evaluation) may run.
    pub time: Duration,
    /// Most memory one module's runtime may allocate.
    pub memory: usize,
}

impl Default for JsLimits {
    fn default() -> Self {
        JsLimits {
            time: Duration::from_secs(1),
            memory: 64 << 20,
        }
    }
}

/// One module's runtime and context, with the deadline its interrupt
/// handler checks.
struct Engine {
    context: Context,
    deadline: Arc<Mutex<Option<Instant>>>,
    limits: JsLimits,
    _runtime: Runtime,
}

impl Engine {
    /// Runs `f` in the context under the time limit; a JS exception (or an
    /// interruption) becomes its message.
    fn call<R>(&self, f: impl FnOnce(&Ctx<'_>) -> rquickjs::Result<R>) -> Result<R, String> {
        let start = Instant::now();
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = Some(start + self.limits.time);
        let r = self
            .context
            .with(|ctx| f(&ctx).catch(&ctx).map_err(|e| e.to_string()));
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = None;
        r.map_err(|m| {
            if start.elapsed() >= self.limits.time && m.contains("interrupted") {
                format!(
                    "stopped after {} ms (the time limit of one call)",
                    self.limits.time.as_millis()
                )
            } else {
                m
            }
        })
    }
}

/// Where a module's wrapped functions are kept in its context (an array
/// on the global object; handles to JS values cannot cross threads, their
/// positions can).
const FUNCTIONS: &str = "__outpostIndexFunctions";

/// The function at `n` of [`FUNCTIONS`].
fn function<'js>(ctx: &Ctx<'js>, n: u32) -> rquickjs::Result<Function<'js>> {
    ctx.globals().get::<_, Array>(FUNCTIONS)?.get(n as usize)
}

/// Appends `f` to [`FUNCTIONS`]; returns its position.
fn keep<'js>(kept: &Array<'js>, f: Function<'js>) -> rquickjs::Result<u32> {
    let n = kept.len();
    kept.set(n, f)?;
    Ok(n as u32)
}

/// An index's functions in the engine: their positions in [`FUNCTIONS`].
struct JsFunctions {
    engine: Arc<Engine>,
    map: u32,
    reduce: Option<u32>,
}

impl IndexFunctions for JsFunctions {
    fn map(&self, doc: &MapDoc<'_>) -> Result<Vec<Emit>, String> {
        let body = std::str::from_utf8(doc.json).map_err(|e| e.to_string())?;
        let text: String = self
            .engine
            .call(|ctx| function(ctx, self.map)?.call((body, doc.id, doc.collection)))?;
        js_wire::emits(&text)
    }

    fn reduce(&self, key: &Json, values: &[Json], rereduce: bool) -> Result<Json, String> {
        let Some(reduce) = self.reduce else {
            return Err("this index has no reduce function".into());
        };
        let arg = js_wire::reduce_arg(key, values, rereduce)?;
        let text: String = self
            .engine
            .call(|ctx| function(ctx, reduce)?.call((arg.as_str(),)))?;
        js_wire::result(&text)
    }
}

/// A definition as `prepareDefinition` stored it.
#[derive(serde::Deserialize)]
struct Stored {
    name: String,
    version: String,
    collections: Vec<String>,
    reduce: bool,
    output: Option<String>,
    /// `hubComputed`: the hub shares the output collection with edges.
    #[serde(default, rename = "hubComputed")]
    hub_computed: bool,
}

/// An index of a module, and whether it is computed here for the edges
/// (`hubComputed`: its output collection replicates to them, read-only).
#[derive(Debug)]
pub struct Loaded {
    /// The index.
    pub index: Index,
    /// Whether its output collection is shared with the edges.
    pub hub_computed: bool,
}

/// Loads the index definitions of the module at `path`.
pub fn load_module(path: &Path, limits: JsLimits) -> Result<Vec<Loaded>, String> {
    let source = std::fs::read_to_string(path).map_err(|e| format!("read: {e}"))?;
    let runtime = Runtime::new().map_err(|e| format!("start the JavaScript engine: {e}"))?;
    runtime.set_memory_limit(limits.memory);
    runtime.set_max_stack_size(1 << 20);
    let deadline: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let seen = deadline.clone();
    runtime.set_interrupt_handler(Some(Box::new(move || {
        seen.lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|d| Instant::now() > d)
    })));
    let context =
        Context::full(&runtime).map_err(|e| format!("start the JavaScript engine: {e}"))?;
    let engine = Arc::new(Engine {
        context,
        deadline,
        limits,
        _runtime: runtime,
    });
    let name = path.display().to_string();
    let prepared = engine.call(|ctx| {
        let (wrappers, done) = Module::declare(ctx.clone(), "outpost:indexes", WRAPPERS)?.eval()?;
        done.finish::<()>()?;
        let prepare: Function = wrappers.namespace()?.get("prepareDefinition")?;
        let (module, done) =
            Module::declare(ctx.clone(), name.as_str(), source.as_str())?.eval()?;
        done.finish::<()>()?;
        let ns = module.namespace()?;
        let mut defs: Vec<Object> = Vec::new();
        let default: Value = ns.get("default")?;
        if let Some(list) = default.as_array() {
            for d in list.iter::<Object>() {
                defs.push(d?);
            }
        } else {
            for key in ns.keys::<String>() {
                let v: Value = ns.get(key?)?;
                if let Some(o) = v.as_object()
                    && o.get::<_, Value>("map")?.is_function()
                {
                    defs.push(o.clone());
                }
            }
        }
        let fail: Function = ctx.eval("(message, code) => new Error(message)")?;
        let kept = Array::new(ctx.clone())?;
        ctx.globals().set(FUNCTIONS, kept.clone())?;
        let mut out = Vec::with_capacity(defs.len());
        for d in defs {
            let r: Array = prepare.call((d, fail.clone()))?;
            let stored: Value = r.get(0)?;
            let json = ctx
                .json_stringify(stored)?
                .map(|s| s.to_string())
                .transpose()?
                .unwrap_or_default();
            let map: Function = r.get(1)?;
            let reduce: Option<Function> = r.get(2)?;
            let map = keep(&kept, map)?;
            let reduce = match reduce {
                Some(f) => Some(keep(&kept, f)?),
                None => None,
            };
            out.push((json, map, reduce));
        }
        Ok(out)
    })?;
    if prepared.is_empty() {
        return Err("the module exports no index definition (a default export array, or named exports with a map function)".into());
    }
    let mut indexes = Vec::with_capacity(prepared.len());
    for (json, map, reduce) in prepared {
        let s: Stored = serde_json::from_str(&json).map_err(|e| format!("a definition: {e}"))?;
        let def = IndexDefinition {
            name: s.name,
            version: s.version,
            collections: s.collections,
            reduce: s.reduce,
            output: s.output,
        };
        if s.hub_computed && def.output.is_none() {
            return Err(format!(
                "index {:?} is hubComputed but has no output collection to share",
                def.name
            ));
        }
        indexes.push(Loaded {
            index: Index::new(
                def,
                JsFunctions {
                    engine: engine.clone(),
                    map,
                    reduce,
                },
            ),
            hub_computed: s.hub_computed,
        });
    }
    Ok(indexes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost::index::MapDoc;
    use serde_json::json;

    fn module(src: &str) -> tempfile_path::Path {
        tempfile_path::write(src)
    }

    /// A throwaway module file.
    mod tempfile_path {
        pub struct Path(pub std::path::PathBuf);
        impl Drop for Path {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
        pub fn write(src: &str) -> Path {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("outpost-js-{}-{n}.mjs", std::process::id()));
            std::fs::write(&p, src).unwrap();
            Path(p)
        }
    }

    fn doc<'a>(id: &'a str, json: &'a [u8]) -> MapDoc<'a> {
        MapDoc {
            id,
            collection: Some("Things"),
            json,
        }
    }

    #[test]
    fn a_hub_computed_index_is_marked_and_needs_an_output() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/indexes/clinic.mjs");
        let idx = load_module(&p, JsLimits::default()).unwrap();
        assert_eq!(idx.len(), 1);
        assert!(idx[0].hub_computed);
        assert_eq!(idx[0].index.def.output.as_deref(), Some("WardCensus"));
        let mortgage =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/indexes/mortgage.mjs");
        assert!(
            load_module(&mortgage, JsLimits::default())
                .unwrap()
                .iter()
                .all(|l| !l.hub_computed)
        );
        let m = module(
            "export const a = { name: 'a', hubComputed: true, map(d, emit) { emit(1, 1); }, reduce(k, v) { return v.length; } };",
        );
        let e = load_module(&m.0, JsLimits::default()).unwrap_err();
        assert!(e.contains("hubComputed") && e.contains("output"), "{e}");
    }

    #[test]
    fn the_mortgage_module_loads_with_the_browsers_versions() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/indexes/mortgage.mjs");
        let idx = load_module(&p, JsLimits::default()).unwrap();
        let names: Vec<&str> = idx.iter().map(|i| i.index.def.name.as_str()).collect();
        assert_eq!(names, ["mortgage/monthly-status", "mortgage/loan-status"]);
        assert_eq!(idx[0].index.def.output.as_deref(), Some("MonthlyStatus"));
        assert!(idx[0].index.def.reduce);
        assert_eq!(idx[0].index.def.version.len(), 16);
        let e = idx[0]
            .index
            .fns
            .map(&doc(
                "e/1",
                br#"{"type":"payment","loan":"L1","month":"2026-02","amount":500}"#,
            ))
            .unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].key, json!(["L1", "2026-02"]));
        assert_eq!(e[0].value, json!({"paid": 500}));
        let r = idx[0]
            .index
            .fns
            .reduce(
                &json!(["L1", "2026-02"]),
                &[
                    json!({"paid": 500}),
                    json!({"interestDue": 110, "principalDue": 1000}),
                ],
                false,
            )
            .unwrap();
        assert_eq!(r["interestPaid"], json!(110));
        assert_eq!(r["principalPaid"], json!(390));
        assert_eq!(r["short"], json!(610));
    }

    #[test]
    fn throws_loops_memory_and_io_are_contained() {
        let m = module(
            r#"export const t = { name: "t", map(d, emit) {
                 if (d.kind === "throw") throw new Error("bad thing " + d.n);
                 if (d.kind === "loop") for (;;) {}
                 if (d.kind === "grow") { const a = []; for (;;) a.push(new Array(100000).fill(1)); }
                 if (d.kind === "io") emit(typeof require + typeof process + typeof fetch + typeof setTimeout, 1);
                 emit(d.n, null);
               } };"#,
        );
        let limits = JsLimits {
            time: Duration::from_millis(200),
            memory: 16 << 20,
        };
        let idx = load_module(&m.0, limits).unwrap();
        let f = &idx[0].index.fns;
        let e = f.map(&doc("x", br#"{"kind":"throw","n":7}"#)).unwrap_err();
        assert!(e.contains("bad thing 7"), "{e}");
        let e = f.map(&doc("x", br#"{"kind":"loop"}"#)).unwrap_err();
        assert!(e.contains("time limit"), "{e}");
        let e = f.map(&doc("x", br#"{"kind":"grow"}"#)).unwrap_err();
        assert!(e.to_lowercase().contains("memory"), "{e}");
        let io = f.map(&doc("x", br#"{"kind":"io"}"#)).unwrap();
        assert_eq!(io[0].key, json!("undefinedundefinedundefinedundefined"));
        // Still usable after all that.
        assert_eq!(f.map(&doc("x", br#"{"n":3}"#)).unwrap()[0].key, json!(3));
    }

    /// The cost of a call into the engine, against the same map and reduce
    /// as Rust closures (not a test: `cargo test -p outpost-hub --release
    /// --lib js::tests::call_cost -- --ignored --nocapture`; figures in
    /// docs/benchmarks.md, "Indexes").
    #[test]
    #[ignore]
    fn call_cost() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/indexes/mortgage.mjs");
        let js = load_module(&p, JsLimits::default()).unwrap();
        let rust = outpost::index::FnIndex::map(|d| {
            let b: Json = d.body()?;
            Ok(vec![Emit::new(
                json!([b["loan"], b["month"]]),
                json!({ "paid": b["amount"] }),
            )])
        })
        .with_reduce(|_k, vs, _| {
            let paid: i64 = vs.iter().filter_map(|v| v["paid"].as_i64()).sum();
            Ok(json!({ "paid": paid }))
        });
        let bodies: Vec<String> = (0..20_000)
            .map(|i| {
                format!(
                    r#"{{"type":"payment","loan":"L{}","month":"2026-{:02}","amount":{i}}}"#,
                    i % 97,
                    i % 12 + 1
                )
            })
            .collect();
        let values: Vec<Json> = (0..64).map(|i| json!({ "paid": i })).collect();
        for (what, f) in [
            ("QuickJS", &*js[0].index.fns),
            ("Rust", &rust as &dyn IndexFunctions),
        ] {
            let t = Instant::now();
            for b in &bodies {
                f.map(&doc("e/1", b.as_bytes())).unwrap();
            }
            let map_us = t.elapsed().as_secs_f64() * 1e6 / bodies.len() as f64;
            let t = Instant::now();
            for _ in 0..2_000 {
                f.reduce(&json!(["L1", "2026-01"]), &values, false).unwrap();
            }
            let reduce_us = t.elapsed().as_secs_f64() * 1e6 / 2_000.0;
            println!(
                "{what:8} map {map_us:6.2} us/document   reduce of 64 values {reduce_us:7.2} us/call"
            );
        }
    }

    #[test]
    fn bad_modules_are_refused_with_their_reason() {
        let m = module("export const x = 1;");
        assert!(
            load_module(&m.0, JsLimits::default())
                .unwrap_err()
                .contains("no index definition")
        );
        let m = module("export const a = { name: 'a', map( };");
        let e = load_module(&m.0, JsLimits::default()).unwrap_err();
        assert!(
            e.contains("missing formal parameter") && e.contains(".mjs:1"),
            "{e}"
        );
        let m = module("import fs from 'fs'; export const a = { name: 'a', map() {} };");
        assert!(load_module(&m.0, JsLimits::default()).is_err());
        let m = module("export const a = { name: 'a', map() {}, reduce: 3 };");
        assert!(
            load_module(&m.0, JsLimits::default())
                .unwrap_err()
                .contains("reduce must be a function")
        );
        assert!(
            load_module(Path::new("/nonexistent.mjs"), JsLimits::default())
                .unwrap_err()
                .contains("read")
        );
    }
}
