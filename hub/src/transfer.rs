//! `import` and `export`: JSON lines in and out of a hub database (with the
//! hub stopped: they take the database's lock). The routines, their progress
//! bars and reports are `outpost_cmdline`'s, shared with the `outpost` tool;
//! this file names the errors after the hub's database.

use std::io::Write;

use crate::error::{HubError, Result};
use crate::state::DbHandle;

pub use outpost_cmdline::{ImportOptions, ImportReport, Input};

/// Imports JSON lines from `input` into `db` with [`outpost_cmdline::import`]
/// (bounded memory, atomic batches, bad lines reported on stderr by number
/// and skipped, or with `strict` ending the import); `counts.bad` says how
/// many were skipped.
pub async fn import(db: &DbHandle, input: Input, opts: &ImportOptions) -> Result<ImportReport> {
    outpost_cmdline::import(&db.db, input, opts)
        .await
        .map_err(|e| HubError::Other(format!("database {}: {e}", db.name)))
}

/// Exports every live document of `db` (with an id starting with `prefix`)
/// as JSON lines, from one consistent snapshot. Returns the count. A record
/// that does not decode is skipped with a warning naming it and the command
/// that sets it aside (`outpost repair <database dir>`, hub stopped).
pub async fn export<W: Write>(db: &DbHandle, prefix: &str, w: W) -> Result<u64> {
    let repair = format!("outpost repair {}", db.dir().display());
    outpost_cmdline::export(&db.db, prefix, w, &repair)
        .await
        .map_err(|e| match e {
            outpost_cmdline::ExportError::Read(source) => HubError::Database {
                database: db.name.clone(),
                source,
            },
            outpost_cmdline::ExportError::Write(e) => HubError::io("write the export", e),
        })
}
