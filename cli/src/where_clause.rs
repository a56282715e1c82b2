//! `outpost query INDEX --where '…'`: the key conditions of a query in one
//! expression, turned into the options `--eq`, `--prefix`, `--gt`, `--gte`,
//! `--lt`, `--lte` (whose checks then apply).
//!
//! An expression is one or more conditions joined by `and`; each is an
//! optional `key`, an operator (`=` or `==`, `>`, `>=`, `<`, `<=`,
//! `starts with` or `^=`) and a value: JSON (`10`, `"Oslo"`, `["L1"]`,
//! `null`), or a bare word, read as a string (`key = Oslo`).

use crate::error::CliError;

/// The options an expression stands for, in the order `[eq, prefix, gt,
/// gte, lt, lte]` (each the JSON text of a key).
pub type Options = [Option<String>; 6];

/// Operators, longest first (so `>=` is not read as `>`).
const OPERATORS: [(&str, usize); 8] = [
    ("starts with", 1),
    ("^=", 1),
    (">=", 3),
    ("<=", 5),
    ("==", 0),
    ("=", 0),
    (">", 2),
    ("<", 4),
];

fn bad(expr: &str, why: &str) -> CliError {
    CliError::new(
        "invalid_argument",
        format!(
            "--where {expr:?}: {why} (conditions like 'key >= 10 and key < 20', 'key = \"Oslo\"', 'key starts with [\"L1\"]')"
        ),
    )
}

/// Splits `expr` at each ` and ` outside strings and brackets.
fn clauses(expr: &str) -> Vec<&str> {
    let (mut out, mut depth, mut in_str, mut escaped, mut from) =
        (Vec::new(), 0i32, false, false, 0);
    let b = expr.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if in_str {
            match c {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_str = false,
                _ => {}
            }
        } else {
            match c {
                b'"' => in_str = true,
                b'[' | b'{' => depth += 1,
                b']' | b'}' => depth -= 1,
                _ if depth == 0
                    && b[i..].len() >= 5
                    && b[i].is_ascii_whitespace()
                    && b[i + 1..i + 4].eq_ignore_ascii_case(b"and")
                    && b[i + 4].is_ascii_whitespace() =>
                {
                    out.push(&expr[from..i]);
                    from = i + 5;
                    i += 5;
                    continue;
                }
                _ => {}
            }
        }
        i += 1;
    }
    out.push(&expr[from..]);
    out
}

/// The options `expr` stands for.
pub fn parse(expr: &str) -> Result<Options, CliError> {
    let mut opts: Options = Default::default();
    for clause in clauses(expr) {
        let mut c = clause.trim();
        if c.len() >= 3 && c[..3].eq_ignore_ascii_case("key") {
            let rest = &c[3..];
            if rest.starts_with(|ch: char| ch.is_whitespace() || "=<>^".contains(ch)) {
                c = rest.trim_start();
            }
        }
        if c.is_empty() {
            return Err(bad(expr, "an empty condition"));
        }
        let Some((op, slot)) = OPERATORS.iter().find(|(op, _)| {
            c.len() >= op.len()
                && c.is_char_boundary(op.len())
                && c[..op.len()].eq_ignore_ascii_case(op)
        }) else {
            return Err(bad(expr, &format!("{c:?} has no operator")));
        };
        let value = c[op.len()..].trim();
        if value.is_empty() {
            return Err(bad(expr, &format!("{c:?} has no value")));
        }
        let json = match serde_json::from_str::<serde_json::Value>(value) {
            Ok(_) => value.to_string(),
            Err(_)
                if value
                    .chars()
                    .all(|ch| ch.is_alphanumeric() || "-_./:@".contains(ch)) =>
            {
                serde_json::Value::String(value.to_string()).to_string()
            }
            Err(e) => return Err(bad(expr, &format!("{value:?} is not JSON ({e})"))),
        };
        if opts[*slot].replace(json).is_some() {
            return Err(bad(expr, &format!("two conditions with {op}")));
        }
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(e: &str) -> Vec<Option<&'static str>> {
        parse(e)
            .unwrap()
            .into_iter()
            .map(|o| o.map(|s| &*Box::leak(s.into_boxed_str())))
            .collect()
    }

    #[test]
    fn conditions_become_options() {
        assert_eq!(
            p("key = \"Oslo\""),
            [Some("\"Oslo\""), None, None, None, None, None]
        );
        assert_eq!(
            p("key == Oslo"),
            [Some("\"Oslo\""), None, None, None, None, None]
        );
        assert_eq!(p("= 7"), [Some("7"), None, None, None, None, None]);
        assert_eq!(
            p("key >= 10 AND key < 20"),
            [None, None, None, Some("10"), Some("20"), None]
        );
        assert_eq!(
            p("key > [\"L1\", \"2026-01\"] and key <= [\"L1\", \"2026-03\"]"),
            [
                None,
                None,
                Some("[\"L1\", \"2026-01\"]"),
                None,
                None,
                Some("[\"L1\", \"2026-03\"]")
            ]
        );
        assert_eq!(
            p("key starts with [\"L1\"]"),
            [None, Some("[\"L1\"]"), None, None, None, None]
        );
        assert_eq!(
            p("key ^= \"Os\""),
            [None, Some("\"Os\""), None, None, None, None]
        );
        // " and " inside a string or an array is part of the value.
        assert_eq!(
            p("key = \"salt and pepper\""),
            [Some("\"salt and pepper\""), None, None, None, None, None]
        );
        assert_eq!(
            p("key = [\"a and b\", 1]"),
            [Some("[\"a and b\", 1]"), None, None, None, None, None]
        );
        assert_eq!(p("KEY<=-3.5"), [None, None, None, None, None, Some("-3.5")]);
    }

    #[test]
    fn bad_expressions_are_typed_errors() {
        for e in [
            "",
            "key",
            "keystone = 1",
            "key 7",
            "key =",
            "key = Oslo city",
            "key > 1 and key > 2",
            "key = [1",
            " and ",
            "key = 1 and",
        ] {
            let err = parse(e).unwrap_err();
            assert_eq!(err.code, "invalid_argument", "{e}");
            assert!(err.message.contains("--where"), "{}", err.message);
        }
    }
}
