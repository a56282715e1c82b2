//! Documents, results and options between JS values and the engine.
//!
//! A document read back is its body with an `@metadata` object added, the shape
//! the CLI prints:
//!
//! ```js
//! { name: "Ada", "@metadata": { "@id": "patients/1", "@collection": "Patients",
//!   "@change-vector": "…", "@etag": 12, "@last-modified": "2026-11-22T10:36:00.123Z" } }
//! ```
//!
//! A document written may carry an `@metadata` object too (so `put(id, await
//! get(id))` round-trips): it is not stored; only its `@collection` is used,
//! when no `collection` option is given.

use js_sys::{Array, Object, Reflect};
use outpost::{Batch, ChangeVector, Document, Expected, PutOptions, Spliced, WriteResult};
use serde::Serialize;
use serde_json::Value;
use wasm_bindgen::prelude::*;

use crate::error::{invalid_argument, invalid_json, js_error, message_of, to_js};

/// Property `name` of `obj` (`undefined` if `obj` is not an object).
pub(crate) fn prop(obj: &JsValue, name: &str) -> JsValue {
    if !obj.is_object() {
        return JsValue::UNDEFINED;
    }
    Reflect::get(obj, &name.into()).unwrap_or(JsValue::UNDEFINED)
}

/// The options each operation knows (a key not listed is refused with
/// `invalid_options`, so a misspelt or unsupported option never passes
/// silently: `scan({ where: ... })` is an error, not a full scan).
const KNOWN_OPTIONS: &[(&str, &[&str])] = &[
    (
        "open",
        &["store", "storage", "persist", "cacheBytes", "durability"],
    ),
    ("put", &["collection", "changeVector", "durability"]),
    ("delete", &["changeVector", "durability"]),
    ("transaction", &["durability", "results"]),
    ("scan", &["prefix", "after", "limit", "keysOnly"]),
    ("changes", &["since", "limit"]),
    ("conflicts", &["after", "limit"]),
    (
        "query",
        &[
            "eq",
            "prefix",
            "gt",
            "gte",
            "lt",
            "lte",
            "descending",
            "limit",
            "after",
            "wait",
        ],
    ),
    ("resolve", &["collection"]),
    (
        "sync",
        &["url", "identity", "credential", "code", "database"],
    ),
    ("transaction operation", &OP_KEYS),
];

/// The keys of a transaction operation, in the order `api::OpKeys` indexes them.
pub(crate) const OP_KEYS: [&str; 5] = ["type", "id", "doc", "collection", "changeVector"];

/// Checks that an options argument is an object, `undefined` or `null`, and
/// that it holds only options `what` knows (see [`KNOWN_OPTIONS`]); an unknown
/// key is refused with code `invalid_options`, naming the known ones.
pub(crate) fn check_options(v: &JsValue, what: &str) -> Result<(), JsValue> {
    if v.is_undefined() || v.is_null() {
        return Ok(());
    }
    if !v.is_object() || Array::is_array(v) {
        return Err(invalid_argument(format!(
            "{what} options must be an object, got {}",
            describe(v)
        )));
    }
    let Some((_, known)) = KNOWN_OPTIONS.iter().find(|(w, _)| *w == what) else {
        return Ok(());
    };
    for key in Object::keys(v.unchecked_ref::<Object>()).iter() {
        let key = key.as_string().unwrap_or_default();
        if !known.contains(&key.as_str()) {
            // `change_vector`, `@change-vector`, `ChangeVector`: other
            // spellings of an option are named.
            let squash = |k: &str| {
                k.chars()
                    .filter(|c| c.is_ascii_alphanumeric())
                    .map(|c| c.to_ascii_lowercase())
                    .collect::<String>()
            };
            let hint = known
                .iter()
                .find(|k| squash(k) == squash(&key))
                .map(|k| format!(" Did you mean {k}?"))
                .unwrap_or_default();
            return Err(js_error(
                "invalid_options",
                &format!(
                    "{what}: unknown option {key:?} (known options: {}).{hint}",
                    known.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// A short description of a JS value for error messages: its type and, for
/// primitives, its value (`number 42`, `undefined`, `an array`, `an object`).
pub(crate) fn describe(v: &JsValue) -> String {
    if v.is_undefined() {
        "undefined".into()
    } else if v.is_null() {
        "null".into()
    } else if let Some(n) = v.as_f64() {
        format!("number {n}")
    } else if let Some(b) = v.as_bool() {
        format!("boolean {b}")
    } else if let Some(s) = v.as_string() {
        let short: String = s.chars().take(40).collect();
        format!("string {short:?}")
    } else if v.is_bigint() {
        "a bigint".into()
    } else if v.is_symbol() {
        "a symbol".into()
    } else if v.is_function() {
        "a function".into()
    } else if Array::is_array(v) {
        "an array".into()
    } else {
        "an object".into()
    }
}

fn set(obj: &Object, name: &str, v: &JsValue) {
    // Setting a property on a fresh plain object cannot fail.
    let _ = Reflect::set(obj, &name.into(), v);
}

/// A document id: must be a string (its content is checked by the engine).
pub(crate) fn id_from_js(v: &JsValue) -> Result<String, JsValue> {
    v.as_string().ok_or_else(|| {
        js_error(
            "invalid_id",
            &format!("a document id must be a string, got {}", describe(v)),
        )
    })
}

/// Optional string property `name` of an options object.
pub(crate) fn opt_string(obj: &JsValue, name: &str) -> Result<Option<String>, JsValue> {
    string_value(prop(obj, name), name)
}

/// [`opt_string`] of the value `v` of option `name`.
pub(crate) fn string_value(v: JsValue, name: &str) -> Result<Option<String>, JsValue> {
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    v.as_string()
        .map(Some)
        .ok_or_else(|| invalid_argument(format!("option {name} must be a string")))
}

/// Optional non-negative integer property `name` of an options object.
pub(crate) fn opt_count(obj: &JsValue, name: &str) -> Result<Option<u64>, JsValue> {
    let v = prop(obj, name);
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    match v.as_f64() {
        Some(n) if n >= 0.0 && n.fract() == 0.0 && n <= 9_007_199_254_740_991.0 => {
            Ok(Some(n as u64))
        }
        _ => Err(invalid_argument(format!(
            "option {name} must be a non-negative integer"
        ))),
    }
}

/// The optimistic-concurrency check of a write from its `changeVector` option:
/// absent: no check; `null`: the document must not exist; a string: the
/// document's current change vector must be this one.
pub(crate) fn expected_from(obj: &JsValue) -> Result<Expected, JsValue> {
    expected_of(prop(obj, "changeVector"))
}

/// [`expected_from`] of the `changeVector` option's value `v`.
pub(crate) fn expected_of(v: JsValue) -> Result<Expected, JsValue> {
    if v.is_undefined() {
        Ok(Expected::Any)
    } else if v.is_null() {
        Ok(Expected::Missing)
    } else if let Some(s) = v.as_string() {
        ChangeVector::parse_text(&s)
            .map(Expected::Cv)
            .map_err(|e| to_js(e.into()))
    } else {
        Err(invalid_argument(
            "option changeVector must be a string, null or undefined",
        ))
    }
}

/// A document body from JS: a plain object, converted with `JSON.stringify`
/// (one call into the engine's JSON instead of one per property), so it has
/// JSON's semantics: `toJSON` is honoured (a `Date` becomes its ISO string),
/// functions and `undefined` properties are dropped, `NaN` becomes `null`, and
/// a `BigInt` or a cycle is refused with `invalid_json`.
///
/// A body without `@metadata` is stored as that text, keys in the
/// application's order ([`JsBody::Text`]); one with `@metadata` is parsed to
/// take it out ([`JsBody::Parsed`]).
pub(crate) fn body_from_js(doc: &JsValue) -> Result<JsBody, JsValue> {
    if !doc.is_object() || Array::is_array(doc) {
        return Err(invalid_json("a document must be a plain object"));
    }
    let text = js_sys::JSON::stringify(doc)
        .map_err(|e| invalid_json(format!("the document is not JSON: {}", message_of(&e))))?;
    let text = String::from(text);
    if !names_metadata(text.as_bytes()) {
        return Ok(JsBody::Text(text));
    }
    let (body, collection) = without_metadata(&text)?;
    Ok(JsBody::Parsed(body, collection))
}

/// Whether the `JSON.stringify` text `t` holds the string `"@metadata"`
/// (as a key or a value, at any depth). `JSON.stringify` writes `@` as
/// itself, never escaped, so a text without it has no `@metadata` member.
/// (A byte loop: `str::contains` cost 0.5 KB of wasm; the check's time
/// was not measurable in a bulk insert.)
fn names_metadata(t: &[u8]) -> bool {
    const NAME: &[u8] = b"metadata\"";
    t.iter()
        .enumerate()
        .any(|(i, &b)| b == b'@' && i > 0 && t[i - 1] == b'"' && t[i + 1..].starts_with(NAME))
}

/// A document body from JS, as [`body_from_js`] read it.
pub(crate) enum JsBody {
    /// The `JSON.stringify` text, stored as given ([`Batch::put_json`]: the
    /// engine checks it in one pass, no [`Value`] is built).
    Text(String),
    /// The body without its `@metadata`, and `@metadata.@collection`.
    Parsed(Value, Option<String>),
}

impl JsBody {
    /// Adds the put of this body to `batch`; the collection is `collection`,
    /// else the body's `@metadata.@collection`.
    pub(crate) fn put(
        self,
        batch: &mut Batch,
        id: String,
        collection: Option<String>,
        expected: Expected,
    ) {
        match self {
            JsBody::Text(text) => {
                let opts = PutOptions {
                    collection,
                    expected,
                };
                batch.put_json(id, text, opts);
            }
            JsBody::Parsed(body, named) => {
                let opts = PutOptions {
                    collection: collection.or(named),
                    expected,
                };
                batch.put_with(id, body, opts);
            }
        }
    }

    /// The body as a [`Value`] without `@metadata`, and `@metadata.@collection`.
    pub(crate) fn into_value(self) -> Result<(Value, Option<String>), JsValue> {
        match self {
            JsBody::Text(text) => without_metadata(&text),
            JsBody::Parsed(body, collection) => Ok((body, collection)),
        }
    }
}

/// Parses a body's JSON text, and takes its `@metadata` out: the body, and
/// `@metadata.@collection` if there is one.
fn without_metadata(text: &str) -> Result<(Value, Option<String>), JsValue> {
    let mut body: Value = serde_json::from_str(text)
        .map_err(|e| invalid_json(format!("the document is not JSON: {e}")))?;
    let mut collection = None;
    let meta = match &mut body {
        Value::Object(o) => o.remove("@metadata"),
        _ => None,
    };
    match meta.as_ref().and_then(|m| m.get("@collection")) {
        Some(Value::String(c)) => collection = Some(c.clone()),
        None | Some(Value::Null) => {}
        Some(_) => return Err(invalid_json("@metadata.@collection must be a string")),
    }
    Ok((body, collection))
}

/// The document as one JSON object: its body plus `@metadata` (`@deleted` on
/// tombstones, which have no body). Serializes straight from the document,
/// without copying the body.
pub(crate) struct DocOut<'a>(pub(crate) &'a Document);

impl Serialize for DocOut<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let doc = self.0;
        let meta = doc.metadata_json();
        let mut out = ser.serialize_map(None)?;
        match &doc.body {
            Value::Object(o) => {
                for (k, v) in o {
                    if k != "@metadata" {
                        out.serialize_entry(k, v)?;
                    }
                }
            }
            Value::Null => {}
            other => out.serialize_entry("body", other)?,
        }
        out.serialize_entry("@metadata", &meta)?;
        out.end()
    }
}

/// A serializable value as a plain JS value, through JSON (`JSON.parse` of the
/// engine's JSON text is faster than building the object property by property
/// across the wasm boundary, and needs no extra conversion code in the .wasm).
pub(crate) fn value_to_js(v: &impl Serialize) -> Result<JsValue, JsValue> {
    let text = serde_json::to_string(v)
        .map_err(|e| invalid_json(format!("a value cannot be converted to JSON: {e}")))?;
    js_sys::JSON::parse(&text)
        .map_err(|e| invalid_json(format!("JSON.parse failed: {}", message_of(&e))))
}

/// Documents as a JS array of plain objects (one `JSON.parse` for all).
pub(crate) fn docs_to_js(docs: &[Document]) -> Result<JsValue, JsValue> {
    value_to_js(&docs.iter().map(DocOut).collect::<Vec<_>>())
}

/// A spliced read's documents as a JS array of plain objects, the shape
/// [`docs_to_js`] makes: the engine's one array text
/// ([`outpost::doc::spliced_array`]) parsed once by `JSON.parse`, with
/// nothing parsed in wasm; or, when that text did not splice or parse,
/// what the engine parsed ([`Spliced::Parsed`]).
pub(crate) fn spliced_to_js(s: Spliced<JsValue>) -> Result<JsValue, JsValue> {
    match s {
        Spliced::Text(v) => Ok(v),
        Spliced::Parsed(docs) => docs_to_js(&docs),
    }
}

/// The parse of a spliced read: `JSON.parse`, `None` for text it refuses.
pub(crate) fn json_parse(text: &str) -> Option<JsValue> {
    js_sys::JSON::parse(text).ok()
}

/// `{ id, etag, changeVector, deleted }`.
pub(crate) fn write_result_to_js(r: &WriteResult) -> JsValue {
    let o = Object::new();
    set(&o, "id", &JsValue::from_str(&r.id));
    set(&o, "etag", &JsValue::from_f64(r.etag as f64));
    set(
        &o,
        "changeVector",
        &JsValue::from_str(&r.change_vector.to_string()),
    );
    set(&o, "deleted", &JsValue::from_bool(r.deleted));
    o.into()
}

/// A write result, or `null` (a delete of a document that did not exist).
pub(crate) fn opt_write_result_to_js(r: &Option<WriteResult>) -> JsValue {
    r.as_ref().map_or(JsValue::NULL, write_result_to_js)
}

/// A rejection the hub sent (`Outpost.rejections`, the sync hooks), as
/// `{ id, changeVector, code, rule, message }`.
pub(crate) fn rejection_to_js(r: &outpost::sync::Rejection) -> Result<JsValue, JsValue> {
    value_to_js(&serde_json::json!({
        "id": r.id,
        "changeVector": r.change_vector,
        "code": r.code,
        "rule": r.rule,
        "message": r.message,
    }))
}
