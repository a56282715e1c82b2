//! The `OutpostErrorCode` union of the npm package's typings
//! (`pkg-js/src/index.d.ts`) against the codes that can reach JS as an
//! `OutpostError`'s `code`: the engine's `Error::code`, `OpenError::code`
//! and `StoreError::code` (every `fn code` of crate/src outside `sync/` and
//! `jsonl.rs`), the hub's refusal codes (`VIOLATION_CODES`: a write with
//! safety `hub` rejects with them), the bindings' own `js_error("...")` (wasm/src), and the JS layer's
//! `new OutpostError(..., "...")` (pkg-js/src). A native test reading the
//! sources: it runs with `cargo test --workspace` (scripts/test.sh) without a
//! wasm build. It fails when a code is emitted that the union lacks, and when
//! the union lists a code nothing emits.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    let p = repo().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// The `.rs` (or `.js`) files of a directory, recursively.
fn sources(rel: &str, ext: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![repo().join(rel)];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == ext) {
                let text = std::fs::read_to_string(&p).unwrap();
                out.push((p.display().to_string(), text));
            }
        }
    }
    out.sort();
    out
}

/// The string literals made of `[a-z_]` in `text`.
fn code_literals(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('"') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('"') else { break };
        let lit = &after[..end];
        if !lit.is_empty() && lit.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            out.push(lit.to_string());
        }
        rest = &after[end + 1..];
    }
    out
}

/// The literals of every `fn code(&self) -> &'static str` body in `text`.
fn rust_code_fns(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices("pub fn code(&self) -> &'static str {") {
        let body = &text[at..];
        // The body ends at the first line closing the function (4 spaces).
        let end = body.find("\n    }\n").expect("the end of fn code");
        out.extend(code_literals(&body[..end]));
    }
    assert!(!out.is_empty(), "no fn code(&self) found");
    out
}

/// The code of every call `name(` whose first argument is a string literal
/// (`js_error("closed", ...)`).
fn first_literal_args(text: &str, name: &str) -> Vec<String> {
    text.match_indices(name)
        .filter_map(|(at, _)| {
            let args = text[at + name.len()..].trim_start();
            let lit = args.strip_prefix('"')?;
            Some(lit[..lit.find('"')?].to_string())
        })
        .collect()
}

/// The last argument of every `new OutpostError(...)` when it is a string
/// literal (the code), scanning to the matching parenthesis past strings
/// and template literals.
fn outpost_error_codes(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, m) in text.match_indices("new OutpostError(") {
        let args = &text[at + m.len()..];
        let (mut depth, mut quote, mut escaped) = (1usize, None::<char>, false);
        let mut end = None;
        for (i, c) in args.char_indices() {
            if let Some(q) = quote {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
                continue;
            }
            match c {
                '"' | '\'' | '`' => quote = Some(c),
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let args = &args[..end.expect("the end of new OutpostError(...)")];
        let last = args.trim_end().trim_end_matches(',').trim_end();
        if let Some(lit) = last.strip_suffix('"')
            && let Some(open) = lit.rfind('"')
        {
            out.push(lit[open + 1..].to_string());
        }
    }
    out
}

/// The members of `export type OutpostErrorCode = ...;` in the typings.
fn union() -> BTreeSet<String> {
    let dts = read("pkg-js/src/index.d.ts");
    let start = dts
        .find("export type OutpostErrorCode =")
        .expect("pkg-js/src/index.d.ts declares `export type OutpostErrorCode`");
    let decl = &dts[start..];
    let decl = &decl[..decl.find(';').expect("the end of OutpostErrorCode")];
    code_literals(decl).into_iter().collect()
}

/// Every code that can reach JS, with where it comes from.
fn emitted() -> Vec<(String, String)> {
    let mut out = Vec::new();
    // The engine's error codes, wherever their `fn code` lives, except the
    // replication core's (hub refusals travel as sync statuses and
    // rejections, not as errors) and the JSON-lines import's (CLI and hub).
    let mut engine = 0;
    for (file, text) in sources("crate/src", "rs") {
        let f = file.replace('\\', "/");
        if f.contains("crate/src/sync/") || f.ends_with("crate/src/jsonl.rs") {
            continue;
        }
        if text.contains("pub fn code(&self) -> &'static str {") {
            engine += 1;
            for c in rust_code_fns(&text) {
                out.push((c, file.clone()));
            }
        }
    }
    assert!(
        engine >= 2,
        "the engine's fn code (Error, OpenError, StoreError) not found"
    );
    // A write with safety `hub` rejects with the hub's refusal code: every
    // code of `VIOLATION_CODES` (docs/protocol.md §5) can reach JS.
    let v = read("crate/src/sync/violation.rs");
    let start = v
        .find("pub const VIOLATION_CODES")
        .expect("crate/src/sync/violation.rs declares VIOLATION_CODES");
    let decl = &v[start..];
    let decl = &decl[decl.find('=').expect("its value")..decl.find("];").expect("its end")];
    for c in code_literals(decl) {
        out.push((
            c,
            "crate/src/sync/violation.rs (a hub refusal of a hub write)".into(),
        ));
    }
    for (file, text) in sources("wasm/src", "rs") {
        for c in first_literal_args(&text, "js_error(") {
            out.push((c, file.clone()));
        }
    }
    for (file, text) in sources("pkg-js/src", "js") {
        for c in outpost_error_codes(&text) {
            out.push((c, file.clone()));
        }
    }
    out
}

#[test]
fn the_typescript_union_lists_every_error_code_the_package_emits() {
    let union = union();
    let emitted = emitted();
    let missing: BTreeSet<String> = emitted
        .iter()
        .filter(|(c, _)| !union.contains(c))
        .map(|(c, from)| format!("{c:?} (from {from})"))
        .collect();
    assert!(
        missing.is_empty(),
        "codes emitted to JS that OutpostErrorCode (pkg-js/src/index.d.ts) lacks: {missing:?}"
    );
    let used: BTreeSet<&String> = emitted.iter().map(|(c, _)| c).collect();
    let unused: Vec<&String> = union.iter().filter(|c| !used.contains(c)).collect();
    assert!(
        unused.is_empty(),
        "OutpostErrorCode lists codes nothing emits: {unused:?}"
    );
}

#[test]
fn the_scanners_find_what_they_look_for() {
    let js = r#"throw new OutpostError(`a ${f("x")} (b)`, "invalid_argument");
        throw new OutpostError(
          "multi-line",
          "transaction_finished",
        );"#;
    assert_eq!(
        outpost_error_codes(js),
        ["invalid_argument", "transaction_finished"]
    );
    let rs = "js_error(\n    \"panic\",\n    &msg)\n js_error(code, &m)";
    assert_eq!(first_literal_args(rs, "js_error("), ["panic"]);
    let f = "    pub fn code(&self) -> &'static str {\n        match self {\n            A => \"a_b\",\n        }\n    }\n    \"not_me\"";
    assert_eq!(rust_code_fns(f), ["a_b"]);
}
