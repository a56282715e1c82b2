//! End-to-end tests of the `outpost` binary on temporary database directories.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{ok, run, run_in, stderr, stdout};
use outpost_testkit::TempDir;
use serde_json::Value;

/// A fresh, empty directory for one test (under cargo's per-target temp dir),
/// removed when dropped.
fn temp_dir(name: &str) -> TempDir {
    TempDir::new(env!("CARGO_TARGET_TMPDIR"), &format!("cli-{name}"))
}

/// The database directory inside a test directory.
trait DbDir {
    fn db(&self) -> PathBuf;
}

impl DbDir for TempDir {
    fn db(&self) -> PathBuf {
        self.join("db")
    }
}

/// Asserts failure with `error: ... (code)` on stderr and returns stderr.
#[track_caller]
fn fails_with(o: Output, code: &str) -> String {
    let err = stderr(&o);
    assert!(
        !o.status.success(),
        "expected failure, got success\nstdout: {}\nstderr: {err}",
        stdout(&o)
    );
    assert!(
        err.contains("error: ") && err.contains(&format!("({code})")),
        "expected `error: ... ({code})` on stderr, got: {err}"
    );
    assert!(!err.contains("panicked"), "the CLI panicked: {err}");
    err
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

fn meta_id(v: &Value) -> &str {
    v["@metadata"]["@id"].as_str().unwrap()
}

#[test]
fn put_get_delete_round_trip() {
    let t = temp_dir("crud");
    let db = t.db();
    let out = ok(run(
        &db,
        &[
            "put",
            "patients/dr-7/0001",
            r#"{"name":"Ada Lovelace","born":1815}"#,
            "--collection",
            "Patients",
        ],
    ));
    let put: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(put["id"], "patients/dr-7/0001");
    let etag = put["etag"].as_u64().unwrap();
    assert!(etag > 0);

    let got: Value = serde_json::from_str(&ok(run(&db, &["get", "patients/dr-7/0001"]))).unwrap();
    assert_eq!(got["name"], "Ada Lovelace");
    assert_eq!(got["born"], 1815);
    assert_eq!(got["@metadata"]["@id"], "patients/dr-7/0001");
    assert_eq!(got["@metadata"]["@collection"], "Patients");
    assert_eq!(got["@metadata"]["@etag"].as_u64(), Some(etag));
    assert_eq!(got["@metadata"]["@change-vector"], put["change_vector"]);

    // Body from stdin, replacing the document.
    ok(run_in(
        &db,
        &["put", "patients/dr-7/0001"],
        r#"{"name":"Ada King"}"#,
    ));
    let got: Value = serde_json::from_str(&ok(run(&db, &["get", "patients/dr-7/0001"]))).unwrap();
    assert_eq!(got["name"], "Ada King");
    assert!(got["@metadata"]["@etag"].as_u64().unwrap() > etag);

    let del: Value =
        serde_json::from_str(ok(run(&db, &["delete", "patients/dr-7/0001"])).trim()).unwrap();
    assert_eq!(del["deleted"], true);
    fails_with(run(&db, &["get", "patients/dr-7/0001"]), "not_found");
    fails_with(run(&db, &["delete", "patients/dr-7/0001"]), "not_found");
}

#[test]
fn scan_pages_by_prefix_and_changes_include_deletes() {
    let t = temp_dir("scan");
    let db = t.db();
    for id in [
        "patients/dr-7/03",
        "patients/dr-7/01",
        "patients/dr-8/01",
        "invoices/1",
        "patients/dr-7/02",
    ] {
        ok(run(&db, &["put", id, r#"{"x":1}"#]));
    }
    let ids = |out: String| {
        json_lines(&out)
            .iter()
            .map(|v| meta_id(v).to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(ok(run(&db, &["scan", "--prefix", "patients/dr-7/"]))),
        ["patients/dr-7/01", "patients/dr-7/02", "patients/dr-7/03"]
    );
    assert_eq!(
        ids(ok(run(
            &db,
            &[
                "scan",
                "--prefix",
                "patients/dr-7/",
                "--after",
                "patients/dr-7/01",
                "--limit",
                "1"
            ]
        ))),
        ["patients/dr-7/02"]
    );
    assert_eq!(ids(ok(run(&db, &["scan", "--limit", "0"]))).len(), 5);

    ok(run(&db, &["delete", "invoices/1"]));
    let feed = json_lines(&ok(run(&db, &["changes", "--limit", "0"])));
    // Five puts, then one delete, in etag order; the deleted document appears
    // once, as the tombstone at the end.
    assert_eq!(feed.len(), 5);
    let etags: Vec<u64> = feed
        .iter()
        .map(|v| v["@metadata"]["@etag"].as_u64().unwrap())
        .collect();
    assert!(etags.windows(2).all(|w| w[0] < w[1]), "{etags:?}");
    let last = feed.last().unwrap();
    assert_eq!(meta_id(last), "invoices/1");
    assert_eq!(last["@metadata"]["@deleted"], true);

    let since = etags[1].to_string();
    let tail = json_lines(&ok(run(&db, &["changes", "--since", &since])));
    assert_eq!(tail.len(), 3);
    // scan shows live documents only.
    assert_eq!(
        ids(ok(run(&db, &["scan", "--prefix", "invoices/"]))).len(),
        0
    );
}

#[test]
fn import_export_round_trip() {
    let t = temp_dir("import");
    let db = t.db();
    let mut lines = String::new();
    for i in 0..2500 {
        if i % 2 == 0 {
            lines.push_str(&format!(
                "{{\"id\":\"patients/dr-7/{i:05}\",\"name\":\"P {i}\",\"tags\":[\"a\",{i}]}}\n"
            ));
        } else {
            lines.push_str(&format!(
                "{{\"total\":{i}.5,\"@metadata\":{{\"@id\":\"invoices/{i:05}\",\"@collection\":\"Invoices\"}}}}\n"
            ));
        }
    }
    let file = t.join("in.jsonl");
    std::fs::write(&file, &lines).unwrap();
    let summary = ok(run(
        &db,
        &["import", file.to_str().unwrap(), "--batch", "1000"],
    ));
    assert!(summary.contains("imported 2500 documents"), "{summary}");
    assert!(summary.contains("in 3 batches"), "{summary}");

    let got: Value = serde_json::from_str(&ok(run(&db, &["get", "invoices/00003"]))).unwrap();
    assert_eq!(got["total"], 3.5);
    assert_eq!(got["@metadata"]["@collection"], "Invoices");

    let out = t.join("out.jsonl");
    ok(run(&db, &["export", out.to_str().unwrap()]));
    let exported = json_lines(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(exported.len(), 2500);

    // The export imports into a second database as is, via stdin.
    let db2 = t.join("db2");
    let text = std::fs::read_to_string(&out).unwrap();
    let summary = ok(run_in(&db2, &["import", "-"], &text));
    assert!(summary.contains("imported 2500 documents"), "{summary}");
    let again = json_lines(&ok(run(&db2, &["export"])));
    let strip = |v: &Value| {
        let mut v = v.clone();
        let m = v["@metadata"].as_object_mut().unwrap();
        m.retain(|k, _| k == "@id" || k == "@collection");
        v
    };
    assert_eq!(
        exported.iter().map(strip).collect::<Vec<_>>(),
        again.iter().map(strip).collect::<Vec<_>>()
    );
    ok(run(&db2, &["check"]));
}

#[test]
fn import_reports_bad_lines_with_numbers() {
    let t = temp_dir("badlines");
    let db = t.db();
    let input = concat!(
        "{\"id\":\"a/1\",\"n\":1}\n",
        "{\"id\":\"a/2\",\"n\":\n",
        "\n",
        "[1,2,3]\n",
        "{\"n\":4}\n",
        "{\"id\":\"bad\\u0007id\"}\n",
        "{\"id\":\"a/7\",\"n\":7}\n",
    );
    let o = run_in(&db, &["import", "-"], input);
    let err = stderr(&o);
    // Skipped lines: the distinct exit status 3, not success.
    assert_eq!(o.status.code(), Some(3), "{err}");
    let out = stdout(&o);
    assert!(out.contains("imported 2 documents"), "{out}");
    assert!(out.contains("4 bad lines skipped"), "{out}");
    for n in [2, 4, 5, 6] {
        assert!(
            err.contains(&format!("line {n}: ")),
            "line {n} not reported: {err}"
        );
    }
    assert!(
        err.contains("(invalid_json)") && err.contains("(invalid_id)"),
        "{err}"
    );
    ok(run(&db, &["get", "a/7"]));

    // --strict stops at the first bad line and fails.
    let t2 = temp_dir("strict");
    let err = fails_with(
        run_in(&t2.db(), &["import", "--strict", "-"], input),
        "invalid_json",
    );
    assert!(err.contains("line 2: "), "{err}");
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let t = temp_dir("bad");
    let db = t.db();
    fails_with(run(&db, &["put", "a/1", "{not json"]), "invalid_json");
    fails_with(run(&db, &["put", "a/1", "[1,2]"]), "invalid_json");
    fails_with(run_in(&db, &["put", "a/1"], ""), "invalid_json");
    fails_with(run(&db, &["put", "", "{}"]), "invalid_id");
    fails_with(run(&db, &["put", "a\u{1}b", "{}"]), "invalid_id");
    let long = "x".repeat(513);
    fails_with(run(&db, &["put", &long, "{}"]), "invalid_id");
    fails_with(
        run(&db, &["put", "a/1", "{}", "--collection", ""]),
        "invalid_collection",
    );
    fails_with(run(&db, &["import", "/nonexistent/file.jsonl"]), "io");

    // Reading a database that does not exist does not create one.
    let missing = t.join("missing");
    fails_with(run(&missing, &["get", "a/1"]), "not_found");
    assert!(!missing.exists());

    // Usage errors come from clap, with its exit status 2.
    let o = run(&db, &["scan", "--limit", "many"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn stats_and_check() {
    let t = temp_dir("stats");
    let db = t.db();
    ok(run(
        &db,
        &["put", "p/1", r#"{"a":1}"#, "--collection", "Ps"],
    ));
    ok(run(
        &db,
        &["put", "p/2", r#"{"a":2}"#, "--collection", "Ps"],
    ));
    ok(run(&db, &["put", "q/1", r#"{"a":3}"#]));
    let stats: Value = serde_json::from_str(&ok(run(&db, &["stats"]))).unwrap();
    assert_eq!(stats["documents"], 3);
    assert_eq!(stats["collections"]["Ps"], 2);
    let o = run(&db, &["check"]);
    assert!(stderr(&o).contains("ok"), "{}", stderr(&o));
    ok(o);
}

#[test]
fn vacuum_shrinks_the_file_and_keeps_the_documents() {
    let t = temp_dir("vacuum");
    let db = t.db();
    // 1,500 documents of ~3 KB, then the same ids again with small bodies:
    // most pages are free, the file keeps its size.
    let write = |name: &str, pad: usize| {
        let file = t.join(name);
        let mut f = std::fs::File::create(&file).unwrap();
        for i in 0..1500 {
            writeln!(f, r#"{{"id":"n/{i:04}","pad":"{}"}}"#, "x".repeat(pad)).unwrap();
        }
        ok(run(&db, &["import", file.to_str().unwrap()]));
    };
    write("big.jsonl", 3000);
    write("small.jsonl", 10);
    let size = || std::fs::metadata(db.join("outpost.db")).unwrap().len();
    let before = size();
    let out: Value = serde_json::from_str(&ok(run(&db, &["vacuum"]))).unwrap();
    let after = size();
    assert_eq!(out["data_file_bytes_before"], before, "{out}");
    assert_eq!(out["data_file_bytes_after"], after, "{out}");
    assert!(after < before / 4, "{before} -> {after}: {out}");
    assert!(
        out["pages_after"].as_u64() < out["pages_before"].as_u64(),
        "{out}"
    );
    let doc: Value = serde_json::from_str(&ok(run(&db, &["get", "n/0777"]))).unwrap();
    assert_eq!(doc["pad"], "x".repeat(10));
    let stats: Value = serde_json::from_str(&ok(run(&db, &["stats"]))).unwrap();
    assert_eq!(stats["documents"], 1500);
    ok(run(&db, &["check"]));
    let help = ok(run(&db, &["vacuum", "--help"]));
    assert!(
        help.contains("file system") && help.contains("Example"),
        "{help}"
    );
}

#[test]
fn help_has_examples() {
    let t = temp_dir("help");
    let top = ok(run(&t.db(), &["--help"]));
    assert!(top.contains("Examples:") && top.contains("import"), "{top}");
    let import = ok(run(&t.db(), &["import", "--help"]));
    assert!(
        import.contains("--strict") && import.contains("Examples:"),
        "{import}"
    );
}

/// Runs `outpost --db <db> import <file>` and returns its output and its peak
/// resident memory in KiB (GNU time's "%M" when /usr/bin/time exists, else
/// the last VmHWM read from /proc while it runs).
fn import_with_peak(db: &Path, file: &Path) -> (Output, u64) {
    let bin = env!("CARGO_BIN_EXE_outpost");
    // `[wrapper args…] outpost --db DB import FILE`, with no inherited db.
    let import = |program: &Path, wrapper: &[&std::ffi::OsStr]| {
        let mut c = Command::new(program);
        c.args(wrapper)
            .arg("--db")
            .arg(db)
            .arg("import")
            .arg(file)
            .env_remove("OUTPOST_DB")
            .stdin(Stdio::null());
        c
    };
    let time = Path::new("/usr/bin/time");
    if time.exists() {
        let report = file.with_extension("rss");
        let o = import(
            time,
            &[
                "-f".as_ref(),
                "%M".as_ref(),
                "-o".as_ref(),
                report.as_ref(),
                bin.as_ref(),
            ],
        )
        .output()
        .unwrap();
        let kib = std::fs::read_to_string(&report).unwrap_or_default();
        let kib = kib.lines().last().unwrap_or("").trim().parse().unwrap();
        return (o, kib);
    }
    let mut child = import(Path::new(bin), &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        if let Ok(s) = std::fs::read_to_string(&status)
            && let Some(l) = s.lines().find(|l| l.starts_with("VmHWM:"))
        {
            let kib: u64 = l
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            peak = peak.max(kib);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    (child.wait_with_output().unwrap(), peak)
}

/// The documented bound of import memory (`outpost import --help`).
const IMPORT_MEMORY_BOUND_KIB: u64 = 400 << 10;

/// Asserts that the import summary says `n` documents were imported and that
/// its peak memory (`peak` KiB, for `what`) stayed under the documented bound.
#[track_caller]
fn assert_imported_within_bound(o: &Output, n: u64, peak: u64, what: &str) {
    assert!(
        stdout(o).contains(&format!("imported {n} documents")),
        "{}",
        stdout(o)
    );
    assert!(peak < IMPORT_MEMORY_BOUND_KIB, "peak {peak} KiB for {what}");
}

#[test]
fn import_memory_is_bounded_whatever_the_input() {
    let t = temp_dir("memory");

    // One line of 200 MB: refused while it is read, never held whole.
    let one = t.join("one.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&one).unwrap());
        f.write_all(b"{\"id\":\"big\",\"pad\":\"").unwrap();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..200 {
            f.write_all(&chunk).unwrap();
        }
        f.write_all(b"\"}\n{\"id\":\"after\",\"n\":1}\n").unwrap();
    }
    let (o, peak) = import_with_peak(&t.join("db1"), &one);
    std::fs::remove_file(&one).unwrap();
    println!("one 200 MiB line: peak {} MiB", peak >> 10);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("line 1: the line is"), "{}", stderr(&o));
    assert!(stderr(&o).contains("(too_large)"), "{}", stderr(&o));
    assert_imported_within_bound(&o, 1, peak, "a 200 MiB line");

    // Eight documents of 15 MiB: batches are bounded in bytes, not only
    // in documents (the default --batch is 1,000).
    let docs = t.join("docs.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&docs).unwrap());
        let pad = "y".repeat(15 << 20);
        for i in 0..8 {
            writeln!(f, "{{\"id\":\"d/{i}\",\"pad\":\"{pad}\"}}").unwrap();
        }
    }
    let (o, peak) = import_with_peak(&t.join("db2"), &docs);
    std::fs::remove_file(&docs).unwrap();
    println!("8 documents of 15 MiB: peak {} MiB", peak >> 10);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_imported_within_bound(&o, 8, peak, "8 documents of 15 MiB");
}

#[test]
fn importing_random_bytes_exits_3_and_says_lines_were_skipped() {
    let t = temp_dir("random");
    let file = t.join("random.bin");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes: Vec<u8> = (0..(1 << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(&file, &bytes).unwrap();
    let o = run(&t.db(), &["import", file.to_str().unwrap()]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(3), "{out}\n{err}");
    assert!(out.contains("imported 0 documents"), "{out}");
    assert!(out.contains("bad lines skipped (INCOMPLETE"), "{out}");
    assert!(err.contains("lines were skipped"), "{err}");
    assert!(err.contains("exit status 3"), "{err}");
    let help = ok(run(&t.db(), &["import", "--help"]));
    assert!(
        help.contains("Exit status: 0 every line imported; 3"),
        "{help}"
    );

    // A clean import still exits 0.
    let clean = t.join("clean.jsonl");
    std::fs::write(&clean, "{\"id\":\"a/1\"}\n").unwrap();
    let o = run(&t.db(), &["import", clean.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stdout(&o).contains("INCOMPLETE"), "{}", stdout(&o));
}

/// `outpost query`: the rows of an index an application built (here with
/// Rust closures), by equality, prefix and bounds, descending, counted,
/// with a note when the index is behind; bad keys and unknown indexes are
/// typed errors.
#[test]
fn query_reads_an_index_by_key() {
    use futures::executor::block_on;
    use outpost::index::{Emit, FnIndex, Index, IndexDefinition};
    use outpost::store::file::{FileStore, FileStoreOptions};
    let t = temp_dir("query");
    let db = t.db();
    {
        let store = FileStore::open(&db, FileStoreOptions::default()).unwrap();
        let d = block_on(outpost::Database::open(store, Default::default())).unwrap();
        let idx = Index::new(
            IndexDefinition::map("by-city", "1", &["Users"]),
            FnIndex::map(|d| {
                let b = d.body()?;
                Ok(vec![Emit::new(b["city"].clone(), b["n"].clone())])
            }),
        );
        for (i, city) in ["Oslo", "Bergen", "Os", "Oslo", "Rome"].iter().enumerate() {
            let body = serde_json::json!({ "city": city, "n": i, "@metadata": { "@collection": "Users" } });
            block_on(d.put(&format!("users/{i}"), body)).unwrap();
        }
        block_on(d.catch_up_index(&idx, None)).unwrap();
        block_on(d.put("users/9", serde_json::json!({ "city": "Oslo", "n": 9 }))).unwrap();
        block_on(d.close()).unwrap();
    }
    let q = |args: &[&str]| {
        let mut all = vec!["query", "by-city"];
        all.extend_from_slice(args);
        run(&db, &all)
    };
    let o = q(&["--eq", "\"Oslo\""]);
    assert!(
        stderr(&o).contains("note: index by-city reflects"),
        "{}",
        stderr(&o)
    );
    let rows = json_lines(&ok(o));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["id"], "users/0");
    assert_eq!(rows[1]["value"], 3);
    let rows = json_lines(&ok(q(&["--prefix", "\"Os\"", "--descending"])));
    let keys: Vec<&str> = rows.iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["Oslo", "Oslo", "Os"]);
    let rows = json_lines(&ok(q(&[
        "--gt",
        "\"Bergen\"",
        "--lte",
        "\"Oslo\"",
        "--limit",
        "2",
    ])));
    assert_eq!(rows.len(), 2);
    assert_eq!(ok(q(&["--count"])).trim(), "5");
    // The same conditions as one --where expression.
    let rows = json_lines(&ok(q(&[
        "--where",
        "key > Bergen and key <= \"Oslo\"",
        "--limit",
        "2",
    ])));
    assert_eq!(rows.len(), 2);
    let rows = json_lines(&ok(q(&["--where", "key starts with Os", "--descending"])));
    let keys: Vec<&str> = rows.iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["Oslo", "Oslo", "Os"]);
    assert_eq!(ok(q(&["--where", "key = Oslo", "--count"])).trim(), "2");
    fails_with(
        q(&["--where", "key = Oslo", "--eq", "\"Oslo\""]),
        "invalid_argument",
    );
    fails_with(q(&["--where", "key ~ 3"]), "invalid_argument");
    fails_with(q(&["--where", "key = 1 and key = 2"]), "invalid_argument");
    fails_with(q(&["--eq", "Oslo"]), "invalid_argument");
    fails_with(q(&["--eq", "\"a\"", "--gt", "\"b\""]), "invalid_argument");
    fails_with(run(&db, &["query", "nope"]), "no_index");
}
