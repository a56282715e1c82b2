//! `outpost-hub purge` and `outpost-hub purge status`: the right to be
//! forgotten (docs/protocol.md §3 "Purge", README "Purging a subject").
//! The work is `outpost::sync::forget`; this is the command line.

use std::path::Path;

use clap::{Args, Subcommand};
use outpost::sync::forget::{self, SubjectRequest};

use crate::purge::{PurgeAnswer, PurgeRequest, documents};

use crate::cli::{DatabaseArg, pick_database, runtime};
use crate::config::Config;
use crate::error::{HubError, Result};
use crate::state::DbHandle;

/// `purge`: what to remove, or `status`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct PurgeCommand {
    /// `status`: which purges were made and which edges still owe a receipt.
    #[command(subcommand)]
    pub sub: Option<PurgeSub>,
    /// What to purge.
    #[command(flatten)]
    pub args: PurgeArgs,
}

/// The arguments of a purge.
#[derive(Args, Debug)]
pub struct PurgeArgs {
    /// A document id to purge (repeat for several).
    #[arg(long = "id", value_name = "ID")]
    pub ids: Vec<String>,
    /// Purge every document whose id starts with this prefix (repeat for
    /// several; case-insensitive, as ids are).
    #[arg(long = "prefix", value_name = "PREFIX")]
    pub prefixes: Vec<String>,
    /// Purge every document whose body (any version) has this top-level
    /// field equal to VALUE: NAME=VALUE, where VALUE is JSON (42, true,
    /// "x") or else taken as a string (patientId=p-123).
    #[arg(long, value_name = "NAME=VALUE")]
    pub field: Option<String>,
    /// Who asks for the purge (recorded in the audit trail): required.
    #[arg(long, value_name = "WHO")]
    pub by: Option<String>,
    /// Why (recorded), for example the request's reference.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub reason: String,
    /// Only count the documents that would be purged; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// For a running hub (the command is then sent to it).
    #[command(flatten)]
    pub admin: crate::cli::AdminTokenArg,
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArg,
}

/// `purge` subcommands.
#[derive(Subcommand, Debug)]
pub enum PurgeSub {
    /// List the purges made (number, when, who, why, how many documents)
    /// and, for each, the edges that may hold its documents and still owe
    /// a signed receipt, and those that answered. A running hub is asked
    /// (`POST /admin/audit`, with the admin token).
    Status {
        /// The database.
        #[command(flatten)]
        database: DatabaseArg,
        /// For a running hub.
        #[command(flatten)]
        admin: crate::cli::AdminTokenArg,
    },
}

/// Parses `--field NAME=VALUE`.
fn parse_field(s: &str) -> Result<(String, serde_json::Value)> {
    let Some((name, value)) = s.split_once('=') else {
        return Err(HubError::Other(format!(
            "--field {s:?}: give NAME=VALUE, e.g. --field patientId=p-123"
        )));
    };
    if name.is_empty() {
        return Err(HubError::Other(format!(
            "--field {s:?}: the field name is empty"
        )));
    }
    let v = serde_json::from_str(value)
        .ok()
        .filter(|v: &serde_json::Value| !v.is_object() && !v.is_array())
        .unwrap_or_else(|| serde_json::Value::String(value.to_string()));
    Ok((name.to_string(), v))
}

/// Opens a stopped hub's database for a purge (writable) with a clear error
/// when a running hub holds it (`write`: the raw `InUse` error, for the
/// caller to send the purge to the running hub instead).
async fn open(config: &Config, name: &str) -> Result<DbHandle> {
    let dir = config.database_dir(name);
    if !dir.join(outpost::store::file::DATA_FILE).exists() {
        return Err(HubError::Other(format!(
            "database {name} has no data yet ({} does not exist)",
            dir.display()
        )));
    }
    DbHandle::open(name, &dir).await
}

/// Runs `purge` or `purge status`.
pub fn run(path: &Path, cmd: PurgeCommand) -> Result<()> {
    let config = Config::load(path)?;
    match cmd.sub {
        Some(PurgeSub::Status { database, admin }) => {
            let name = pick_database(&config, database.database)?;
            let admin = config.admin_token_or_demo(admin.admin_token);
            let text = runtime()?.block_on(async {
                let Some(db) = crate::audit::open_unless_held(&config, &name).await? else {
                    return crate::audit_live::purge_status_remote(
                        &config,
                        &name,
                        admin.as_deref(),
                    )
                    .await;
                };
                let r = crate::purge::status_text(&db).await;
                let closed = db.close().await;
                let t = r?;
                closed?;
                Ok::<_, HubError>(t)
            })?;
            print!("{text}");
            Ok(())
        }
        None => purge(&config, cmd.args),
    }
}

fn purge(config: &Config, a: PurgeArgs) -> Result<()> {
    let Some(by) = a.by.filter(|b| !b.trim().is_empty()) else {
        return Err(HubError::Other(
            "say who asks for the purge: --by \"name or role\" (it is recorded in the audit trail)"
                .into(),
        ));
    };
    if a.ids.is_empty() && a.prefixes.is_empty() && a.field.is_none() {
        return Err(HubError::Other(
            "name what to purge: --id ID, --prefix PREFIX or --field NAME=VALUE (see --help)"
                .into(),
        ));
    }
    let field = a.field.as_deref().map(parse_field).transpose()?;
    let name = pick_database(config, a.database.database)?;
    let req = SubjectRequest {
        ids: a.ids,
        prefixes: a.prefixes,
        field,
        by,
        reason: a.reason,
        dry_run: a.dry_run,
    };
    let admin = config.admin_token_or_demo(a.admin.admin_token);
    let rep: PurgeAnswer = runtime()?.block_on(async {
        let db = match open(config, &name).await {
            Ok(db) => db,
            // A running hub holds it: the purge is sent to that hub.
            Err(HubError::InUse { .. }) => {
                return remote(config, &name, &req, admin.as_deref()).await;
            }
            Err(e) => return Err(e),
        };
        let r = forget::purge_subject(&db.db, &req, crate::session::now_ms()).await;
        let closed = db.close().await;
        let rep = r.map_err(|source| HubError::Database {
            database: name.clone(),
            source,
        })?;
        closed?;
        Ok::<_, HubError>(rep.into())
    })?;
    if req.dry_run {
        println!(
            "dry run: {} of database {name} would be purged",
            documents(rep.removed)
        );
        return Ok(());
    }
    let Some(marker) = rep.marker else {
        println!("nothing to purge: no document of database {name} matches");
        return Ok(());
    };
    println!(
        "purged {} of database {name}: purge marker {marker}, by {:?}{}",
        documents(rep.removed),
        req.by,
        if req.reason.is_empty() {
            String::new()
        } else {
            format!(", reason {:?}", req.reason)
        }
    );
    println!(
        "  their bytes are erased from the data file and the WAL ({} free pages zeroed)",
        rep.pages_erased
    );
    println!("  their ids are retired: an edge pushing them back is refused (purged)");
    if rep.owed.is_empty() {
        println!("  no edge was ever sent them: no receipt is owed");
    } else {
        println!(
            "  edges that may hold them, each told to erase them at its next session (a connected one reconnects now): {}",
            rep.owed.join(", ")
        );
        println!("  follow their receipts with: outpost-hub purge status");
    }
    Ok(())
}

/// Sends the purge to the hub that holds the database (`POST
/// /admin/purge`, where its serving file says it listens).
async fn remote(
    config: &Config,
    name: &str,
    req: &SubjectRequest,
    admin: Option<&str>,
) -> Result<PurgeAnswer> {
    let (url, ca, token) = crate::cli::send_to_holder(config, name, "purge", admin)?;
    let body = serde_json::to_vec(&PurgeRequest {
        database: name.to_string(),
        ids: req.ids.clone(),
        prefixes: req.prefixes.clone(),
        field: req.field.clone(),
        by: req.by.clone(),
        reason: req.reason.clone(),
        dry_run: req.dry_run,
    })
    .map_err(|e| HubError::Other(format!("encode the purge request: {e}")))?;
    crate::hub_client::admin_request(
        &url,
        crate::purge::PATH,
        ca.as_deref(),
        token,
        &body,
        "purge",
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_values_are_json_or_strings() {
        assert_eq!(
            parse_field("patientId=p-1").unwrap(),
            ("patientId".into(), serde_json::json!("p-1"))
        );
        assert_eq!(
            parse_field("n=42").unwrap(),
            ("n".into(), serde_json::json!(42))
        );
        assert_eq!(
            parse_field("s=\"42\"").unwrap(),
            ("s".into(), serde_json::json!("42"))
        );
        assert_eq!(
            parse_field("o={\"a\":1}").unwrap().1,
            serde_json::json!("{\"a\":1}")
        );
        assert_eq!(parse_field("a=b=c").unwrap().1, serde_json::json!("b=c"));
        assert!(parse_field("novalue").is_err());
        assert!(parse_field("=x").is_err());
    }
}
