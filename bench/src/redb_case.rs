//! The redb peer of `outpost-bench`: one `redb::Database`, one table
//! `docs: &str -> &str` (id to JSON text, stored as given). Writers: one OS
//! thread per writer, each document in its own write transaction committed
//! with redb's default durability (`Durability::Immediate`: synced before
//! `commit` returns); `begin_write` serializes the writers. Bulk:
//! [`BULK`](super::BULK) documents per write transaction.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTableMetadata, TableDefinition};

use super::{BoxError, Case, Measured, bulk_rounds, thread_writers};

const DOCS: TableDefinition<&str, &str> = TableDefinition::new("docs");

/// One write transaction storing these documents, committed with the default
/// (synced) durability.
fn put<'a>(
    db: &Database,
    docs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), redb::Error> {
    let tx = db.begin_write()?;
    {
        let mut table = tx.open_table(DOCS)?;
        for (id, json) in docs {
            table.insert(id, json)?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Runs one case on a fresh database in `dir` and verifies the count.
pub(crate) fn run(
    dir: &Path,
    case: Case,
    docs: u64,
    limit: Duration,
) -> Result<Measured, BoxError> {
    let db = Arc::new(Database::create(dir.join("bench.redb"))?);
    // The table exists before the clocks start.
    put(&db, [])?;
    let m = match case {
        Case::Writers(writers) => {
            let db = Arc::clone(&db);
            thread_writers(writers, docs, limit, move |w| {
                w.run(|id, json| put(&db, [(id, json)]))
            })?
        }
        Case::Bulk => bulk_rounds(docs, limit, |rows| {
            put(
                &db,
                rows.iter().map(|(id, json)| (id.as_str(), json.as_str())),
            )
        })?,
    };
    let count = db.begin_read()?.open_table(DOCS)?.len()?;
    if count != m.docs {
        return Err(format!("redb: wrote {} documents but counted {count}", m.docs).into());
    }
    Ok(m)
}
