//! Map and map/reduce indexes: what an application defines and asks.
//!
//! An index is a **map** function (a document → zero or more entries, each
//! a key and a value) over some collections, and optionally a **reduce**
//! function (the values under one key → one result). The engine keeps an
//! index up to date from the changes feed, in steps: each step maps the
//! documents changed since the index's checkpoint and commits their entries,
//! the reductions they change and the new checkpoint in **one transaction**,
//! so a crash at any point resumes from the last step without loss or
//! double counting (`Database::update_index`, in `db/index/`).
//!
//! The functions are not stored: every process that updates an index
//! registers them ([`IndexFunctions`]: Rust closures natively, JavaScript
//! functions in the browser). The definition's `version` (the hash of the
//! functions' source, for JavaScript) is stored; a new version is built
//! beside the old one, which queries keep using until the new one has
//! caught up.
//!
//! A reduce must be commutative and associative: results are computed over
//! groups of entries (`rereduce = false`) and then over groups of results
//! (`rereduce = true`), in an order the application cannot see. See
//! docs/design.md, "Indexes".

pub mod key;

use std::sync::Arc;

use serde_json::Value;

use crate::platform::{MaybeSend, MaybeSync};

/// What a map function is given: one live document.
#[derive(Debug, Clone, Copy)]
pub struct MapDoc<'a> {
    /// The id, with its original case.
    pub id: &'a str,
    /// Its collection, if any.
    pub collection: Option<&'a str>,
    /// Its body, as stored (JSON text of an object).
    pub json: &'a [u8],
}

impl MapDoc<'_> {
    /// The body parsed.
    pub fn body(&self) -> Result<Value, String> {
        serde_json::from_slice(self.json).map_err(|e| e.to_string())
    }
}

/// One entry a map function emits.
#[derive(Debug, Clone, PartialEq)]
pub struct Emit {
    /// The key (null, a boolean, a number, a string or an array of those;
    /// see [`key`] for their order).
    pub key: Value,
    /// The value (any JSON).
    pub value: Value,
}

impl Emit {
    /// An entry.
    pub fn new(key: Value, value: Value) -> Emit {
        Emit { key, value }
    }
}

/// The functions of an index. An error (the `String`) fails the step that
/// called it with [`crate::Error::Index`], naming the index and the
/// document; nothing of that step is stored.
pub trait IndexFunctions: MaybeSend + MaybeSync {
    /// The entries of one document (none: the document is not in the index).
    fn map(&self, doc: &MapDoc<'_>) -> Result<Vec<Emit>, String>;

    /// The result of the values under `key`: entries' values
    /// (`rereduce = false`) or earlier results (`rereduce = true`). Only
    /// called for an index defined with `reduce: true`.
    fn reduce(&self, key: &Value, values: &[Value], rereduce: bool) -> Result<Value, String> {
        let _ = (key, values, rereduce);
        Err("this index has no reduce function".into())
    }
}

/// Boxed map function of [`FnIndex`].
pub type MapFn = Box<dyn Fn(&MapDoc<'_>) -> Result<Vec<Emit>, String> + Send + Sync>;
/// Boxed reduce function of [`FnIndex`].
pub type ReduceFn = Box<dyn Fn(&Value, &[Value], bool) -> Result<Value, String> + Send + Sync>;

/// [`IndexFunctions`] from Rust closures.
pub struct FnIndex {
    map: MapFn,
    reduce: Option<ReduceFn>,
}

impl FnIndex {
    /// A map-only index.
    pub fn map(
        f: impl Fn(&MapDoc<'_>) -> Result<Vec<Emit>, String> + Send + Sync + 'static,
    ) -> Self {
        FnIndex {
            map: Box::new(f),
            reduce: None,
        }
    }

    /// Adds the reduce function.
    pub fn with_reduce(
        mut self,
        f: impl Fn(&Value, &[Value], bool) -> Result<Value, String> + Send + Sync + 'static,
    ) -> Self {
        self.reduce = Some(Box::new(f));
        self
    }
}

impl IndexFunctions for FnIndex {
    fn map(&self, doc: &MapDoc<'_>) -> Result<Vec<Emit>, String> {
        (self.map)(doc)
    }

    fn reduce(&self, key: &Value, values: &[Value], rereduce: bool) -> Result<Value, String> {
        match &self.reduce {
            Some(r) => r(key, values, rereduce),
            None => Err("this index has no reduce function".into()),
        }
    }
}

/// What is stored of an index: its name and what its entries mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexDefinition {
    /// The name (1 to 128 bytes, no control characters).
    pub name: String,
    /// The version of the functions (for JavaScript, the hash of their
    /// source); a new version is built beside the old one.
    pub version: String,
    /// The collections whose documents are mapped (case-insensitive);
    /// empty: every document.
    pub collections: Vec<String>,
    /// Whether the index reduces (its rows are one per key).
    pub reduce: bool,
    /// For a reducing index: the collection its results are written to as
    /// documents (flagged as produced by an index), which other indexes may
    /// read. Not one of `collections`.
    pub output: Option<String>,
}

impl IndexDefinition {
    /// A map-only index over `collections`.
    pub fn map(name: &str, version: &str, collections: &[&str]) -> Self {
        IndexDefinition {
            name: name.into(),
            version: version.into(),
            collections: collections.iter().map(|c| c.to_string()).collect(),
            reduce: false,
            output: None,
        }
    }

    /// A map/reduce index over `collections`.
    pub fn map_reduce(name: &str, version: &str, collections: &[&str]) -> Self {
        IndexDefinition {
            reduce: true,
            ..Self::map(name, version, collections)
        }
    }

    /// Sets the output collection.
    pub fn with_output(mut self, collection: &str) -> Self {
        self.output = Some(collection.into());
        self
    }
}

/// An index as a process runs it: its definition and its functions.
#[derive(Clone)]
pub struct Index {
    /// The definition.
    pub def: IndexDefinition,
    /// The functions.
    pub fns: Arc<dyn IndexFunctions>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("def", &self.def)
            .finish_non_exhaustive()
    }
}

impl Index {
    /// An index.
    pub fn new(def: IndexDefinition, fns: impl IndexFunctions + 'static) -> Self {
        Index {
            def,
            fns: Arc::new(fns),
        }
    }
}

/// Which keys a query reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum KeyRange {
    /// Every key.
    #[default]
    All,
    /// Keys equal to this one.
    Eq(Value),
    /// Keys that start with this one: a string's prefix, or an array's
    /// first elements ([`key::prefix_bytes`]).
    Prefix(Value),
    /// Keys between two bounds.
    Range {
        /// Lower bound, if any: the key and whether it is included.
        from: Option<(Value, bool)>,
        /// Upper bound, if any: the key and whether it is included.
        to: Option<(Value, bool)>,
    },
}

/// A query of one index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexQuery {
    /// The keys to read.
    pub range: KeyRange,
    /// Largest number of rows (0: no limit).
    pub limit: usize,
    /// Rows in descending key order.
    pub descending: bool,
    /// Continue after the row this cursor names ([`QueryResult::next`]).
    pub after: Option<Cursor>,
}

/// Where a page of results ended; pass it as [`IndexQuery::after`] for the
/// next page. Opaque; valid for the same query on the same index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(pub Vec<u8>);

/// One row of a query: an entry of a map index (with the id of the
/// document that emitted it) or the result of one key of a reducing index.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexRow {
    /// The key.
    pub key: Value,
    /// The entry's value, or the key's reduced result.
    pub value: Value,
    /// The document that emitted the entry (map indexes only).
    pub id: Option<String>,
}

/// The rows of a query, and how fresh the index is.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    /// The rows, in key order (then by document id).
    pub rows: Vec<IndexRow>,
    /// Set when `limit` cut the rows short: where to continue.
    pub next: Option<Cursor>,
    /// The changes feed position the index reflects.
    pub indexed_etag: u64,
    /// The database's position when the query ran.
    pub db_etag: u64,
    /// Whether documents changed since `indexed_etag` (the rows may miss them).
    pub stale: bool,
}

/// How far an index is, after a step or on request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexProgress {
    /// The changes feed position the index reflects.
    pub indexed_etag: u64,
    /// The database's position.
    pub db_etag: u64,
    /// Documents the last step mapped (0 for a status).
    pub mapped: usize,
    /// Whether this is the version being built beside the one queries use.
    pub building: bool,
}

impl IndexProgress {
    /// Whether the index reflects every change.
    pub fn caught_up(&self) -> bool {
        self.indexed_etag >= self.db_etag
    }
}

/// Checks an index name: 1 to 128 bytes, no control characters.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err(format!(
            "an index name is 1 to 128 bytes (got {})",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("an index name has no control characters".into());
    }
    Ok(())
}

/// The 64-bit hash that places a document's entries in a reduce tree:
/// FNV-1a over the id key, then the MurmurHash3 finaliser. Stored layout:
/// it never changes.
pub fn doc_hash(id_key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in id_key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The id of the output document of one reduce key: the collection, `/`,
/// and the key: a string as itself, unless it is JSON text (`"[1]"`,
/// `"42"`, `"\"a\""`), which is written as JSON text too, quoted; any other
/// key as its JSON text. So two keys never share an id: a suffix that is
/// JSON text is that JSON value, any other suffix is a string.
pub fn output_id(collection: &str, key: &Value) -> String {
    match key {
        Value::String(s) if serde_json::from_str::<Value>(s).is_err() => {
            format!("{collection}/{s}")
        }
        other => format!("{collection}/{other}"),
    }
}

/// The JSON text a JavaScript host's function wrappers exchange with the
/// engine (the npm package's `pkg-js/src/indexes.js`, loaded by the browser
/// bindings and by the hub's embedded engine alike): the map wrapper
/// returns the JSON text of `[key, value, key, value, ...]`; the reduce
/// wrapper takes the JSON text of `[key, values, rereduce]` and returns its
/// result's JSON text.
pub mod js_wire {
    use super::Emit;
    use serde_json::Value;

    /// The entries in a map wrapper's answer.
    pub fn emits(text: &str) -> Result<Vec<Emit>, String> {
        let flat: Vec<Value> = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if !flat.len().is_multiple_of(2) {
            return Err("the map wrapper returned an odd number of items".into());
        }
        let mut emits = Vec::with_capacity(flat.len() / 2);
        let mut it = flat.into_iter();
        while let (Some(key), Some(value)) = (it.next(), it.next()) {
            emits.push(Emit { key, value });
        }
        Ok(emits)
    }

    /// The reduce wrapper's argument.
    pub fn reduce_arg(key: &Value, values: &[Value], rereduce: bool) -> Result<String, String> {
        serde_json::to_string(&(key, values, rereduce)).map_err(|e| e.to_string())
    }

    /// The reduce wrapper's answer.
    pub fn result(text: &str) -> Result<Value, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_ids_name_one_key_each() {
        use serde_json::json;
        let keys = [
            json!("c1"),
            json!("[1]"),
            json!([1]),
            json!("42"),
            json!(42),
            json!("\"a\""),
            json!("a"),
            json!("null"),
            json!(null),
            json!(["L1", "2026-02"]),
        ];
        let ids: std::collections::HashSet<String> =
            keys.iter().map(|k| output_id("Out", k)).collect();
        assert_eq!(ids.len(), keys.len(), "{ids:?}");
        assert_eq!(output_id("Out", &json!("c1")), "Out/c1");
        assert_eq!(output_id("Out", &json!("[1]")), "Out/\"[1]\"");
        assert_eq!(output_id("Out", &json!([1])), "Out/[1]");
        assert_eq!(
            output_id("MonthlyStatus", &json!(["L1", "2026-02"])),
            r#"MonthlyStatus/["L1","2026-02"]"#
        );
    }

    #[test]
    fn doc_hash_is_fixed() {
        // Stored layout: these values must never change.
        assert_eq!(doc_hash(b""), 0xefd0_1f60_ba99_2926);
        assert_eq!(doc_hash(b"users/1"), 0xe5b3_9397_1fcd_2993);
        let spread: std::collections::HashSet<u64> = (0..1000)
            .map(|i| doc_hash(format!("doc{i}").as_bytes()) >> 58)
            .collect();
        assert_eq!(spread.len(), 64, "the top 6 bits spread over every child");
    }
}
