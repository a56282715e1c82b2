//! `outpost-hub index list|status|rebuild`: the indexes of a stopped hub's
//! database (a running hub shows them in `outpost-hub status`, under each
//! database's `indexes`; `crate::indexes` keeps them up to date).

use std::path::Path;

use clap::Subcommand;
use serde_json::json;

use crate::cli::{DatabaseArg, pick_database, runtime};
use crate::config::Config;
use crate::error::{HubError, Result};
use crate::state::DbHandle;

/// `index` subcommands.
#[derive(Subcommand, Debug)]
pub enum IndexCommand {
    /// List the indexes of a database: name, kind, output collection, the
    /// changes-feed position each reflects and whether it is behind.
    #[command(after_help = "\
Examples:
  outpost-hub index list
  outpost-hub index list --database main --json")]
    List {
        /// The database.
        #[command(flatten)]
        database: DatabaseArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One index: its definition, how far it is, and the version being
    /// built beside it, if any.
    #[command(after_help = "\
Examples:
  outpost-hub index status mortgage/loan-status")]
    Status {
        /// The index name.
        name: String,
        /// The database.
        #[command(flatten)]
        database: DatabaseArg,
    },
    /// Rebuild an index from nothing: its entries, reductions and state
    /// are removed now (the hub must be stopped); the hub builds it again
    /// from every document when it next starts. Output documents it wrote
    /// are rewritten then.
    #[command(after_help = "\
Examples:
  outpost-hub index rebuild mortgage/monthly-status")]
    Rebuild {
        /// The index name.
        name: String,
        /// The database.
        #[command(flatten)]
        database: DatabaseArg,
    },
}

/// Runs an `index` subcommand.
pub fn run(path: &Path, cmd: IndexCommand) -> Result<()> {
    let config = Config::load(path)?;
    match cmd {
        IndexCommand::List { database, json } => {
            let name = pick_database(&config, database.database)?;
            let dir = config.database_dir(&name);
            let list = on_database(&name, &dir, false, |db| async move {
                Ok(crate::indexes::status_json(&db.snapshot()).await)
            })?;
            if json {
                println!("{}", json!({ "database": name, "indexes": list }));
                return Ok(());
            }
            let rows = list.as_array().cloned().unwrap_or_default();
            if rows.is_empty() {
                println!("database {name}: no index (define them in [[database]] indexes = [...])");
            }
            for i in rows {
                println!(
                    "{:<32} {:<10} output {:<20} indexed to etag {:<8} {}",
                    i["name"].as_str().unwrap_or(""),
                    if i["reduce"] == true {
                        "map/reduce"
                    } else {
                        "map"
                    },
                    i["output"].as_str().unwrap_or("-"),
                    i["indexed_etag"],
                    if i["stale"] == true {
                        "behind"
                    } else {
                        "up to date"
                    },
                );
            }
        }
        IndexCommand::Status {
            name: index,
            database,
        } => {
            let name = pick_database(&config, database.database)?;
            let dir = config.database_dir(&name);
            let target = index.clone();
            let progress = on_database(&name, &dir, false, |db| async move {
                db.index_status(&target).await
            })?;
            for p in progress {
                println!(
                    "{}{index}: indexed to etag {} of {} ({})",
                    if p.building { "building: " } else { "" },
                    p.indexed_etag,
                    p.db_etag,
                    if p.caught_up() {
                        "up to date"
                    } else {
                        "behind"
                    }
                );
            }
        }
        IndexCommand::Rebuild {
            name: index,
            database,
        } => {
            let name = pick_database(&config, database.database)?;
            let dir = config.database_dir(&name);
            let target = index.clone();
            on_database(&name, &dir, true, |db| async move {
                db.index_status(&target).await?;
                db.drop_index(&target).await?;
                db.clean_indexes().await
            })?;
            eprintln!(
                "index {index} of database {name} removed: the hub builds it again from every document when it next starts"
            );
        }
    }
    Ok(())
}

/// Runs `f` on the database `name` in `dir`, opened read-only or for
/// writing, and closes it.
fn on_database<T, F, Fut>(name: &str, dir: &Path, write: bool, f: F) -> Result<T>
where
    F: FnOnce(outpost::Database<outpost::store::file::FileStore>) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, outpost::Error>>,
{
    runtime()?.block_on(async {
        let db = if write {
            DbHandle::open(name, dir).await
        } else {
            DbHandle::open_read_only(name, dir).await
        }
        .map_err(running)?;
        let r = f(db.db.clone()).await;
        db.close().await?;
        r.map_err(|e| HubError::Other(format!("database {name}: {e}")))
    })
}

/// A lock held by the running hub, said so.
fn running(e: HubError) -> HubError {
    let m = e.to_string();
    if m.contains("lock") {
        HubError::Other(format!(
            "{m} (is the hub running? `outpost-hub status` shows its indexes; stop it to rebuild one)"
        ))
    } else {
        e
    }
}
