//! The SQLite peer of `outpost-bench` (rusqlite, bundled SQLite):
//! `journal_mode=WAL`, `synchronous=FULL`, table
//! `docs(id TEXT PRIMARY KEY, body TEXT NOT NULL)`. Writers: one thread and
//! connection per writer, each document in its own (autocommit) transaction.
//! Bulk: [`BULK`](super::BULK) documents per `BEGIN IMMEDIATE … COMMIT`. The
//! JSON text is bound as given.

use std::path::Path;
use std::time::Duration;

use super::{BoxError, Case, Measured, bulk_rounds, thread_writers};

fn connect(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(60))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode is {mode}, not wal"
        )));
    }
    // `synchronous` is per connection: set it on every one.
    conn.execute_batch("PRAGMA synchronous=FULL;")?;
    Ok(conn)
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

const INSERT: &str = "INSERT INTO docs(id, body) VALUES (?1, ?2)";

/// Runs one case on a fresh database in `dir` and verifies the count.
pub(crate) fn run(
    dir: &Path,
    case: Case,
    docs: u64,
    limit: Duration,
) -> Result<Measured, BoxError> {
    let path = dir.join("bench.sqlite");
    let mut conn = connect(&path)?;
    conn.execute_batch("CREATE TABLE docs(id TEXT PRIMARY KEY, body TEXT NOT NULL);")?;
    let m = match case {
        Case::Writers(writers) => thread_writers(writers, docs, limit, move |w| {
            // Connected and prepared before the clocks start.
            let conn = connect(&path).map_err(|e| e.to_string())?;
            let mut stmt = conn.prepare(INSERT).map_err(|e| e.to_string())?;
            // Autocommit: one document per transaction.
            w.run(|id, json| {
                loop {
                    match stmt.execute(rusqlite::params![id, json]) {
                        Ok(_) => return Ok(()),
                        Err(e) if is_busy(&e) => continue,
                        Err(e) => return Err(e),
                    }
                }
            })
        })?,
        Case::Bulk => bulk_rounds(docs, limit, |rows| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                let mut stmt = tx.prepare_cached(INSERT)?;
                for (id, json) in &rows {
                    stmt.execute(rusqlite::params![id, json])?;
                }
            }
            tx.commit()
        })?,
    };
    let count: i64 = conn.query_row("SELECT count(*) FROM docs", [], |r| r.get(0))?;
    if u64::try_from(count).ok() != Some(m.docs) {
        return Err(format!("sqlite: wrote {} documents but counted {count}", m.docs).into());
    }
    Ok(m)
}
