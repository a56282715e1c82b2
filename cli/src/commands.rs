//! The subcommands, over a [`Database`] on a [`FileStore`]. `import` and
//! `export` are the hub's too: `outpost_cmdline` reads, writes and reports
//! them for both command lines.

use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::Path;
use std::process::ExitCode;

use futures::executor::block_on;
use outpost::db::{Database, OpenOptions, PutOptions};
use outpost::index::{IndexQuery, KeyRange};
use outpost::jsonl::{doc_to_json, kind_of};
use outpost::store::file::{FileStore, FileStoreOptions};
use outpost_cmdline::ExportError;
use serde_json::{Value, json};

use crate::error::CliError;
use crate::{Cli, Command};

/// The database type the CLI works with.
type Db = Database<FileStore>;

/// Documents fetched per engine call when a command pages through results.
const PAGE: usize = 1000;

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let dir = cli.db.as_path();
    match cli.command {
        Command::Put {
            id,
            json,
            collection,
        } => {
            let text = match json.as_deref() {
                Some(t) if t != "-" => t.to_string(),
                _ => read_stdin_json()?,
            };
            let body = parse_body(&text)?;
            let db = open(dir, true)?;
            let opts = PutOptions {
                collection,
                ..PutOptions::default()
            };
            let r = block_on(db.put_with(&id, body, opts));
            let r = finish_write(&db, r)?;
            print_json(&write_json(&r))?;
        }
        Command::Get { id } => {
            let db = open_read_only(dir)?;
            let r = block_on(db.get(&id));
            match finish(&db, r)? {
                Some(doc) => print_pretty(&doc_to_json(&doc))?,
                None => return Err(not_found(&id)),
            }
        }
        Command::Delete { id } => {
            let db = open(dir, true)?;
            let r = block_on(db.delete(&id));
            match finish_write(&db, r)? {
                Some(r) => {
                    let mut out = write_json(&r);
                    out["deleted"] = Value::Bool(true);
                    print_json(&out)?;
                }
                None => return Err(not_found(&id)),
            }
        }
        Command::Scan {
            prefix,
            after,
            limit,
        } => {
            let db = open_read_only(dir)?;
            let r = scan(&db, &prefix, after, limit);
            finish(&db, r)?;
        }
        Command::Query {
            index,
            where_,
            eq,
            prefix,
            gt,
            gte,
            lt,
            lte,
            descending,
            limit,
            count,
        } => {
            let flags = [eq, prefix, gt, gte, lt, lte];
            let [eq, prefix, gt, gte, lt, lte] = match where_ {
                Some(_) if flags.iter().any(Option::is_some) => {
                    return Err(CliError::new(
                        "invalid_argument",
                        "--where or --eq/--prefix/--gt/--gte/--lt/--lte: not both",
                    ));
                }
                Some(expr) => crate::where_clause::parse(&expr)?,
                None => flags,
            };
            let range = key_range(eq, prefix, [gt, gte, lt, lte])?;
            let db = open_read_only(dir)?;
            let r = query(&db, &index, range, descending, limit, count);
            finish(&db, r)?;
        }
        Command::Changes { since, limit } => {
            let db = open_read_only(dir)?;
            let r = changes(&db, since, limit);
            finish(&db, r)?;
        }
        Command::Import { file, options } => {
            let opts = options.options()?;
            let input = outpost_cmdline::open_input(&file)
                .map_err(|e| CliError::io(format!("open {file}"), e))?;
            let db = open(dir, true)?;
            let r = block_on(outpost_cmdline::import(&db, input, &opts));
            let report = finish_write(&db, r)?;
            return Ok(report.print());
        }
        Command::Export { file, prefix } => {
            let db = open_read_only(dir)?;
            let r = export(&db, dir, file.as_deref(), &prefix);
            let (n, dest) = finish(&db, r)?;
            eprintln!("exported {n} documents to {dest}");
        }
        Command::Repair {
            dir: repair_dir,
            dry_run,
        } => {
            let dir = repair_dir.as_deref().unwrap_or(dir);
            let db = if dry_run {
                open_read_only(dir)?
            } else {
                open(dir, false)?
            };
            let r = repair(&db, dir, dry_run);
            return if dry_run {
                finish(&db, r)
            } else {
                finish_write(&db, r)
            };
        }
        Command::Stats => {
            let db = open_read_only(dir)?;
            let r = stats(&db);
            finish(&db, r)?;
        }
        Command::Vacuum => {
            let db = open(dir, false)?;
            let file = dir.join(outpost::store::file::DATA_FILE);
            let bytes = || std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            let before = bytes();
            let r = block_on(db.vacuum());
            let report = finish(&db, r)?;
            print_pretty(&json!({
                "pages_before": report.pages_before,
                "pages_after": report.pages_after,
                "pages_moved": report.moved,
                "rounds": report.rounds,
                "data_file_bytes_before": before,
                "data_file_bytes_after": bytes(),
            }))?;
        }
        Command::Check => {
            let db = open_read_only(dir)?;
            let r = block_on(db.integrity_check());
            let report = finish(&db, r)?;
            let recovery = db.store().recovery().clone();
            let mut out = serde_json::to_value(&report).unwrap_or(Value::Null);
            if let Some(o) = out.as_object_mut() {
                o.insert("wal".into(), recovery_json(&recovery));
            }
            print_pretty(&out)?;
            if !report.is_ok() {
                eprintln!("error: the integrity check found problems (corrupt)");
                return Ok(ExitCode::FAILURE);
            }
            if let Some(t) = recovery.dropped_tail {
                eprintln!(
                    "warning: the write-ahead log ends in {} bytes ({} frames, from offset {}) that \
                     were not replayed: the torn or unfinished write of a crash, never acknowledged \
                     as durable, was dropped; the data is consistent",
                    t.bytes, t.frames, t.offset
                );
            }
            eprintln!("ok: no problems found");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn no_database(dir: &Path) -> CliError {
    CliError::new(
        "not_found",
        format!(
            "no database at {} (set --db or OUTPOST_DB; `put` or `import` creates one)",
            dir.display()
        ),
    )
}

fn not_a_directory(dir: &Path) -> CliError {
    CliError::new(
        "not_a_directory",
        format!("{} is not a directory", dir.display()),
    )
}

/// Opens the database in `dir` for writing. With `create`, a missing directory
/// is created; without it, a missing directory is an error (a read of a
/// mistyped path should not leave an empty database behind). The database is
/// held exclusively until closed: another process using it is refused.
fn open(dir: &Path, create: bool) -> Result<Db, CliError> {
    if !dir.exists() {
        if !create {
            return Err(no_database(dir));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::io(format!("create {}", dir.display()), e))?;
    } else if !dir.is_dir() {
        return Err(not_a_directory(dir));
    }
    let store = FileStore::open(dir, FileStoreOptions::default())?;
    Ok(block_on(Database::open(store, OpenOptions::default()))?)
}

/// Opens the database in `dir` for reading only: nothing is written (not even
/// a checkpoint), so it works on a read-only file system and a full disk. It
/// shares the lock with other readers and is refused while a writer (a running
/// hub, a CLI write) holds the database.
fn open_read_only(dir: &Path) -> Result<Db, CliError> {
    if !dir.exists() {
        return Err(no_database(dir));
    }
    if !dir.is_dir() {
        return Err(not_a_directory(dir));
    }
    if !dir.join(outpost::store::file::DATA_FILE).exists() {
        return Err(no_database(dir));
    }
    let store = FileStore::open_read_only(dir, FileStoreOptions::default())?;
    block_on(Database::open_read_only(store, OpenOptions::default())).map_err(|e| match e {
        outpost::OpenError::NotFound(_) => no_database(dir),
        e => e.into(),
    })
}

/// Closes the database whatever `r` is, and returns `r` (or the close error).
fn finish<T, E: Into<CliError>>(db: &Db, r: Result<T, E>) -> Result<T, CliError> {
    let closed = block_on(db.close());
    let v = r.map_err(Into::into)?;
    closed?;
    Ok(v)
}

/// Like [`finish`] for a write: a write that succeeded was durably committed
/// before the close began, so a failing close (its checkpoint, say, on a full
/// disk) does not turn it into a failure. It is reported as a warning on
/// stderr, and the next open replays the write from the log.
fn finish_write<T, E: Into<CliError>>(db: &Db, r: Result<T, E>) -> Result<T, CliError> {
    let closed = block_on(db.close());
    let v = r.map_err(Into::into)?;
    if let Err(e) = closed {
        let e = CliError::from(e);
        eprintln!(
            "warning: the write was committed durably, but closing the database failed \
             afterwards: {e}. The write is in the write-ahead log and the next open recovers it."
        );
    }
    Ok(v)
}

fn recovery_json(r: &outpost::store::file::RecoveryReport) -> Value {
    json!({
        "replayed_transactions": r.replayed_transactions,
        "replayed_frames": r.replayed_frames,
        "dropped_tail": r.dropped_tail.map(|t| json!({
            "offset": t.offset,
            "frames": t.frames,
            "bytes": t.bytes,
        })),
    })
}

/// What `put` and `delete` print: the id, etag and change vector written.
fn write_json(r: &outpost::WriteResult) -> Value {
    json!({
        "id": r.id,
        "etag": r.etag,
        "change_vector": r.change_vector.to_string(),
    })
}

fn not_found(id: &str) -> CliError {
    CliError::new("not_found", format!("document {id:?} does not exist"))
}

fn read_stdin_json() -> Result<String, CliError> {
    let mut stdin = io::stdin();
    if stdin.is_terminal() {
        eprintln!("reading the JSON body from standard input (end with Ctrl-D)...");
    }
    let mut s = String::new();
    stdin
        .read_to_string(&mut s)
        .map_err(|e| CliError::io("read standard input", e))?;
    Ok(s)
}

fn parse_body(text: &str) -> Result<Value, CliError> {
    // As strictly as the engine checks what it stores (a duplicate key would
    // otherwise be dropped silently by the parse); syntax errors and
    // non-objects are reported by the parse below, with line and column.
    if let Err(e) = outpost::body::check_body(text.as_bytes())
        && !matches!(e.rule(), "syntax" | "not_object")
    {
        return Err(CliError::new(
            "invalid_json",
            format!("invalid JSON body: it breaks rule {}: {e}", e.rule()),
        ));
    }
    let v: Value = serde_json::from_str(text)
        .map_err(|e| CliError::new("invalid_json", format!("invalid JSON body: {e}")))?;
    if !v.is_object() {
        return Err(CliError::new(
            "invalid_json",
            format!("the body must be a JSON object, found {}", kind_of(&v)),
        ));
    }
    Ok(v)
}

fn print_json(v: &Value) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    writeln!(out, "{v}").map_err(|e| CliError::io("write stdout", e))
}

fn print_pretty(v: &Value) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    let text = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    writeln!(out, "{text}").map_err(|e| CliError::io("write stdout", e))
}

/// `limit` 0 means no limit.
fn remaining(limit: usize, done: usize) -> usize {
    if limit == 0 {
        PAGE
    } else {
        (limit - done).min(PAGE)
    }
}

/// Pages through one snapshot, so the pages of a long scan are consistent.
fn scan(db: &Db, prefix: &str, after: Option<String>, limit: usize) -> Result<(), CliError> {
    let snap = db.snapshot();
    let mut out = BufWriter::new(io::stdout().lock());
    let mut after = after;
    let mut done = 0usize;
    loop {
        let want = remaining(limit, done);
        if want == 0 {
            break;
        }
        let page = block_on(snap.scan(prefix, after.as_deref(), want))?;
        for doc in &page {
            writeln!(out, "{}", doc_to_json(doc)).map_err(|e| CliError::io("write stdout", e))?;
        }
        done += page.len();
        if page.len() < want {
            break;
        }
        after = page.last().map(|d| d.id.clone());
    }
    out.flush().map_err(|e| CliError::io("write stdout", e))
}

/// The key range of `outpost query`'s options.
fn key_range(
    eq: Option<String>,
    prefix: Option<String>,
    [gt, gte, lt, lte]: [Option<String>; 4],
) -> Result<KeyRange, CliError> {
    let json = |flag: &str, v: Option<String>| -> Result<Option<serde_json::Value>, CliError> {
        v.map(|t| {
            serde_json::from_str(&t).map_err(|e| {
                CliError::new(
                    "invalid_argument",
                    format!("--{flag} {t:?} is not JSON ({e}); a string key is quoted: '\"Oslo\"'"),
                )
            })
        })
        .transpose()
    };
    let (eq, prefix) = (json("eq", eq)?, json("prefix", prefix)?);
    let (gt, gte, lt, lte) = (
        json("gt", gt)?,
        json("gte", gte)?,
        json("lt", lt)?,
        json("lte", lte)?,
    );
    let bounds = [&gt, &gte, &lt, &lte].iter().any(|b| b.is_some());
    let bad = |m: &str| Err(CliError::new("invalid_argument", m.to_string()));
    match (eq, prefix) {
        (Some(_), Some(_)) => bad("--eq and --prefix: one or the other"),
        (Some(_), None) | (None, Some(_)) if bounds => {
            bad("--eq or --prefix, or bounds (--gt, --gte, --lt, --lte): not both")
        }
        (Some(v), None) => Ok(KeyRange::Eq(v)),
        (None, Some(v)) => Ok(KeyRange::Prefix(v)),
        (None, None) if (gt.is_some() && gte.is_some()) || (lt.is_some() && lte.is_some()) => {
            bad("at most one lower bound (--gt or --gte) and one upper bound (--lt or --lte)")
        }
        (None, None) if bounds => Ok(KeyRange::Range {
            from: gt.map(|v| (v, false)).or(gte.map(|v| (v, true))),
            to: lt.map(|v| (v, false)).or(lte.map(|v| (v, true))),
        }),
        (None, None) => Ok(KeyRange::All),
    }
}

fn query(
    db: &Db,
    index: &str,
    range: KeyRange,
    descending: bool,
    limit: usize,
    count: bool,
) -> Result<(), CliError> {
    let snap = db.snapshot();
    let mut out = BufWriter::new(io::stdout().lock());
    if count {
        let n = block_on(snap.query_count(index, &range))?;
        writeln!(out, "{n}").map_err(|e| CliError::io("write stdout", e))?;
        return out.flush().map_err(|e| CliError::io("write stdout", e));
    }
    let mut after = None;
    let mut done = 0usize;
    loop {
        let want = remaining(limit, done).min(1000);
        if want == 0 {
            break;
        }
        let q = IndexQuery {
            range: range.clone(),
            limit: want,
            descending,
            after,
        };
        let page = block_on(snap.query(index, &q))?;
        if done == 0 && page.stale {
            eprintln!(
                "note: index {index} reflects the changes feed up to etag {} of {}: rows may be missing",
                page.indexed_etag, page.db_etag
            );
        }
        for row in &page.rows {
            let mut o = serde_json::json!({ "key": row.key, "value": row.value });
            if let Some(id) = &row.id {
                o["id"] = serde_json::Value::String(id.clone());
            }
            writeln!(out, "{o}").map_err(|e| CliError::io("write stdout", e))?;
        }
        done += page.rows.len();
        match page.next {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    out.flush().map_err(|e| CliError::io("write stdout", e))
}

fn changes(db: &Db, since: u64, limit: usize) -> Result<(), CliError> {
    let snap = db.snapshot();
    let mut out = BufWriter::new(io::stdout().lock());
    let mut since = since;
    let mut done = 0usize;
    loop {
        let want = remaining(limit, done);
        if want == 0 {
            break;
        }
        let page = block_on(snap.changes(since, want))?;
        for doc in &page {
            writeln!(out, "{}", doc_to_json(doc)).map_err(|e| CliError::io("write stdout", e))?;
        }
        done += page.len();
        match page.last() {
            Some(last) if page.len() == want => since = last.meta.etag,
            _ => break,
        }
    }
    out.flush().map_err(|e| CliError::io("write stdout", e))
}

/// Exports one consistent snapshot to `file` (standard output when absent or
/// `-`); returns the count and where it went.
fn export(
    db: &Db,
    dir: &Path,
    file: Option<&str>,
    prefix: &str,
) -> Result<(u64, String), CliError> {
    let (out, dest) = outpost_cmdline::create_output(file)
        .map_err(|e| CliError::io(format!("create {}", file.unwrap_or("stdout")), e))?;
    let repair = format!("outpost repair {}", dir.display());
    let n = block_on(outpost_cmdline::export(db, prefix, out, &repair)).map_err(|e| match e {
        ExportError::Read(e) => CliError::from(e),
        ExportError::Write(e) => CliError::io(format!("write {dest}"), e),
    })?;
    Ok((n, dest))
}

fn stats(db: &Db) -> Result<(), CliError> {
    let count = block_on(db.count())?;
    let collections = block_on(db.collections())?;
    let engine = db.stats();
    let coll: serde_json::Map<String, Value> = collections
        .into_iter()
        .map(|(name, n)| (name, Value::from(n)))
        .collect();
    print_pretty(&json!({
        "documents": count,
        "collections": coll,
        "engine": serde_json::to_value(&engine).unwrap_or(Value::Null),
        "wal": recovery_json(db.store().recovery()),
    }))
}

/// `repair`: lists the records that do not decode (JSON lines on stdout) and,
/// unless `dry_run`, sets them aside in one commit.
fn repair(db: &Db, dir: &Path, dry_run: bool) -> Result<ExitCode, CliError> {
    let found = if dry_run {
        block_on(db.find_unreadable())?
    } else {
        block_on(db.quarantine_unreadable())?
    };
    let mut out = BufWriter::new(io::stdout().lock());
    for r in &found {
        let mut line = serde_json::to_value(r).unwrap_or(Value::Null);
        if !dry_run {
            let to = outpost::db::quarantine_key(r.key.as_bytes(), r.etag);
            line["moved_to"] = Value::String(String::from_utf8_lossy(&to).into_owned());
        }
        writeln!(out, "{line}").map_err(|e| CliError::io("write stdout", e))?;
    }
    out.flush().map_err(|e| CliError::io("write stdout", e))?;
    let n = found.len();
    if n == 0 {
        eprintln!("ok: no unreadable records");
    } else if dry_run {
        eprintln!(
            "found {n} unreadable record(s); nothing changed (dry run). Set them aside with \
             `outpost repair {}`",
            dir.display()
        );
    } else {
        eprintln!(
            "moved {n} unreadable record(s) aside: their raw bytes are kept in local records \
             under quarantine/, and they left the documents and the changes feed"
        );
    }
    Ok(ExitCode::SUCCESS)
}
