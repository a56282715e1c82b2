//! The JSON-lines format of documents shared by the `outpost` CLI (`scan`,
//! `changes`, `import`, `export`) and the hub (`import`, `export`), so files
//! move freely between them.
//!
//! A document is shown as its body with an `@metadata` object added:
//!
//! ```json
//! {"name":"Ada","@metadata":{"@id":"patients/dr-7/1","@collection":"Patients",
//!  "@change-vector":"…","@etag":12,"@last-modified":"2026-11-22T10:36:00.123Z"}}
//! ```
//!
//! `scan`, `changes` and `export` write one such object per line (JSON lines);
//! `import` reads the same lines back, so `export | import` round-trips. Import
//! takes the id from `@metadata.@id`, or else from a top-level string `"id"`
//! (which then stays part of the body), and the collection from
//! `@metadata.@collection`; every other `@metadata` entry is computed by the
//! database and ignored on import.

use crate::doc::{Document, validate_collection, validate_id};
use serde_json::{Map, Value};

/// The document as one JSON object: its body plus an `@metadata` object.
///
/// Tombstones (deleted documents, seen in the changes feed) have no body: they
/// are shown as `{"@metadata": {..., "@deleted": true}}`.
pub fn doc_to_json(doc: &Document) -> Value {
    let meta = doc.metadata_json();
    let mut out = match &doc.body {
        Value::Object(o) => {
            let mut o = o.clone();
            o.remove("@metadata");
            o
        }
        Value::Null => Map::new(),
        other => {
            let mut o = Map::new();
            o.insert("body".into(), other.clone());
            o
        }
    };
    out.insert("@metadata".into(), Value::Object(meta));
    Value::Object(out)
}

/// One document parsed from a line of an import file.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportDoc {
    /// The document id.
    pub id: String,
    /// The collection from `@metadata.@collection`, if any.
    pub collection: Option<String>,
    /// The body: the line's object without its `@metadata`.
    pub body: Value,
}

/// Parses one line of an import file (see the module docs for the shape).
/// The error text says what is wrong, for the "line N: ..." report, together
/// with a stable code.
pub fn parse_import_line(line: &str) -> Result<ImportDoc, (String, &'static str)> {
    let value: Value =
        serde_json::from_str(line).map_err(|e| (format!("invalid JSON: {e}"), "invalid_json"))?;
    let Value::Object(mut obj) = value else {
        return Err((
            format!("expected a JSON object, found {}", kind_of(&value)),
            "invalid_json",
        ));
    };
    let meta = match obj.remove("@metadata") {
        None => None,
        Some(Value::Object(m)) => Some(m),
        Some(other) => {
            return Err((
                format!("\"@metadata\" must be an object, found {}", kind_of(&other)),
                "invalid_json",
            ));
        }
    };
    let meta_str = |key: &str| -> Result<Option<String>, (String, &'static str)> {
        match meta.as_ref().and_then(|m| m.get(key)) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err((
                format!(
                    "\"@metadata.{key}\" must be a string, found {}",
                    kind_of(other)
                ),
                "invalid_json",
            )),
        }
    };
    let id = match meta_str("@id")? {
        Some(id) => id,
        None => match obj.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err((
                    format!("\"id\" must be a string, found {}", kind_of(other)),
                    "invalid_id",
                ));
            }
            None => {
                return Err((
                    "no document id: expected a string \"id\" or \"@metadata\": {\"@id\": ...}"
                        .to_string(),
                    "invalid_id",
                ));
            }
        },
    };
    validate_id(&id).map_err(|e| (e.to_string(), "invalid_id"))?;
    let collection = meta_str("@collection")?;
    if let Some(c) = &collection {
        validate_collection(c).map_err(|e| (e.to_string(), "invalid_collection"))?;
    }
    Ok(ImportDoc {
        id,
        collection,
        body: Value::Object(obj),
    })
}

/// A short name of a JSON value's kind, for error messages.
pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formats_timestamps() {
        assert_eq!(crate::doc::iso_time_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            crate::doc::iso_time_ms(951_782_400_123),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(
            crate::doc::iso_time_ms(1_795_343_760_000),
            "2026-11-22T10:36:00.000Z"
        );
        assert_eq!(crate::doc::iso_time_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn import_line_with_plain_id() {
        let d = parse_import_line(r#"{"id":"a/1","n":1}"#).unwrap();
        assert_eq!(d.id, "a/1");
        assert_eq!(d.collection, None);
        assert_eq!(d.body, json!({"id":"a/1","n":1}));
    }

    #[test]
    fn import_line_with_metadata() {
        let d = parse_import_line(
            r#"{"n":1,"@metadata":{"@id":"a/1","@collection":"As","@etag":4,"@change-vector":"x"}}"#,
        )
        .unwrap();
        assert_eq!(d.id, "a/1");
        assert_eq!(d.collection.as_deref(), Some("As"));
        assert_eq!(d.body, json!({"n":1}));
    }

    #[test]
    fn import_line_errors() {
        let code = |l: &str| parse_import_line(l).unwrap_err().1;
        assert_eq!(code("{not json"), "invalid_json");
        assert_eq!(code("[1,2]"), "invalid_json");
        assert_eq!(code(r#"{"n":1}"#), "invalid_id");
        assert_eq!(code(r#"{"id":7}"#), "invalid_id");
        assert_eq!(code(r#"{"id":""}"#), "invalid_id");
        assert_eq!(code(r#"{"id":"a\u0001b"}"#), "invalid_id");
        assert_eq!(code(r#"{"id":"a","@metadata":3}"#), "invalid_json");
        assert_eq!(
            code(r#"{"id":"a","@metadata":{"@collection":""}}"#),
            "invalid_collection"
        );
    }
}
