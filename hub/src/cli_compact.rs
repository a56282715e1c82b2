//! `outpost-hub compact`: remove the tombstones every device has
//! acknowledged (docs/protocol.md §4, "Tombstone compaction"). The work is
//! `outpost::sync::compact` (`crate::compact` on the hub); this is the
//! command line: on a stopped hub's database directly, or sent to the
//! running hub that holds it (`POST /admin/compact`).

use std::path::{Path, PathBuf};

use clap::Args;

use crate::cli::{DatabaseArg, pick_database, runtime};
use crate::compact::{CompactAnswer, CompactRequest};
use crate::config::{Config, check_retention};
use crate::error::{HubError, Result};
use crate::hub_client::HttpUrl;
use crate::state::DbHandle;

/// The arguments of `compact`.
#[derive(Args, Debug)]
pub struct CompactArgs {
    /// How long a device may stay unseen and still hold compaction back: a
    /// number and s, m, h or d (30d, 12h; a bare number is seconds).
    /// Default: the configuration's `[compaction] retention_secs` (30 days
    /// unless set).
    #[arg(long, value_name = "DURATION")]
    pub retention: Option<String>,
    /// For a running hub (the command is then sent to it).
    #[command(flatten)]
    pub admin: crate::cli::AdminTokenArg,
    /// Send the compaction to the hub at this address (http://HOST:PORT)
    /// instead of finding out: by default a stopped hub's database is
    /// compacted directly, and a running hub of this configuration gets it
    /// where its `serving.json` says it listens.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Certificate (PEM) to trust for an https:// --url.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArg,
}

/// Parses `--retention`, in seconds.
fn parse_retention(s: &str) -> Result<u64> {
    let secs = crate::cli_edge::parse_duration(s)
        .map_err(|e| HubError::Other(e.replacen("--expires", "--retention", 1)))?;
    let secs = u64::try_from(secs).unwrap_or(0);
    check_retention(secs).map_err(|m| HubError::Other(format!("--retention {s:?}: {m}")))?;
    Ok(secs)
}

/// `secs` as the largest whole unit: "30d", "12h", "90m", "45s".
pub fn human_secs(secs: u64) -> String {
    match secs {
        0 => "0s".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Runs `compact`.
pub fn run(path: &Path, a: CompactArgs) -> Result<()> {
    let config = Config::load(path)?;
    let name = pick_database(&config, a.database.database)?;
    let retention = a.retention.as_deref().map(parse_retention).transpose()?;
    let admin = config.admin_token_or_demo(a.admin.admin_token);
    let req = CompactRequest {
        database: name.clone(),
        retention_secs: retention,
    };
    let answer = runtime()?.block_on(async {
        if let Some(url) = &a.url {
            let url = HttpUrl::parse(url)?;
            return remote(&url, a.ca_cert.as_deref(), &req, admin.as_deref()).await;
        }
        let dir = config.database_dir(&name);
        if !dir.join(outpost::store::file::DATA_FILE).exists() {
            return Err(HubError::Other(format!(
                "database {name} has no data yet ({} does not exist)",
                dir.display()
            )));
        }
        let db = match DbHandle::open(&name, &dir).await {
            Ok(db) => db,
            // A running hub holds it: the compaction is sent to that hub.
            Err(HubError::InUse { .. }) => {
                let Some((url, ca)) = crate::cli::serving(&config) else {
                    return Err(HubError::Other(format!(
                        "database {name} is locked, but no running hub of this configuration says \
                         where it listens ({}): is another process holding it? (--url sends the \
                         compaction to a hub)",
                        config.data_dir.join(crate::config::SERVING_FILE).display()
                    )));
                };
                let ca = a.ca_cert.clone().or(ca);
                return remote(&url, ca.as_deref(), &req, admin.as_deref()).await;
            }
            Err(e) => return Err(e),
        };
        let secs = retention.unwrap_or(config.compaction.retention_secs);
        let r = crate::compact::compact_db(&db, secs).await;
        let closed = db.close().await;
        let answer = r.map_err(|source| HubError::Database {
            database: name.clone(),
            source,
        })?;
        closed?;
        Ok::<_, HubError>(answer)
    })?;
    if a.json {
        let text = serde_json::to_string_pretty(&answer)
            .map_err(|e| HubError::Other(format!("encode the report: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", render(&answer));
    }
    Ok(())
}

/// Sends the compaction to the hub at `url` (`POST /admin/compact`).
async fn remote(
    url: &HttpUrl,
    ca: Option<&Path>,
    req: &CompactRequest,
    admin: Option<&str>,
) -> Result<CompactAnswer> {
    let Some(token) = admin else {
        return Err(HubError::Other(format!(
            "the hub at {url} holds database {}: the compaction is sent to it, which needs its \
             admin token (--admin-token or OUTPOST_HUB_ADMIN_TOKEN; `outpost-hub admin-token` sets one)",
            req.database
        )));
    };
    let body = serde_json::to_vec(req)
        .map_err(|e| HubError::Other(format!("encode the compaction request: {e}")))?;
    crate::hub_client::admin_request(url, crate::compact::PATH, ca, token, &body, "compaction")
        .await
}

/// The report as text.
pub fn render(a: &CompactAnswer) -> String {
    let retention = human_secs(a.retention_secs);
    let mut out = format!(
        "compacted database {}: {} tombstone{} removed\n",
        a.database,
        a.removed,
        if a.removed == 1 { "" } else { "s" }
    );
    out.push_str(&format!(
        "  watermark:       etag {} (every device seen within {retention} acknowledged the changes up to it)\n",
        a.watermark
    ));
    out.push_str(&format!(
        "  held back by:    {}\n",
        a.held_back_by.as_deref().unwrap_or("none")
    ));
    out.push_str(&format!(
        "  horizon:         etag {} (an edge whose checkpoint is below it resyncs)\n",
        a.horizon
    ));
    if a.expired.is_empty() {
        out.push_str("  expired devices: none\n");
    } else {
        out.push_str(&format!(
            "  expired devices: {} (not seen within {retention}: they resync when they come back)\n",
            a.expired.join(", ")
        ));
    }
    out.push_str(&format!("  tombstones left: {}\n", a.tombstones_left));
    let mib = |pages: u64| pages as f64 * 4096.0 / (1024.0 * 1024.0);
    out.push_str(&format!(
        "  data file:       {} pages ({:.1} MiB) before, {} pages ({:.1} MiB) after\n",
        a.pages_before,
        mib(a.pages_before),
        a.pages_after,
        mib(a.pages_after)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retentions() {
        assert_eq!(parse_retention("30d").unwrap(), 30 * 86_400);
        assert_eq!(parse_retention("90").unwrap(), 90);
        for bad in ["0", "-1", "3w", "", "99999d"] {
            let e = parse_retention(bad).unwrap_err().to_string();
            assert!(e.contains("--retention"), "{bad}: {e}");
        }
        assert_eq!(human_secs(30 * 86_400), "30d");
        assert_eq!(human_secs(7200), "2h");
        assert_eq!(human_secs(61), "61s");
    }

    #[test]
    fn the_report_names_everything() {
        let text = render(&CompactAnswer {
            database: "main".into(),
            retention_secs: 86_400,
            watermark: 40,
            held_back_by: Some("alice/XYZ".into()),
            expired: vec!["carol/ABC".into()],
            removed: 1,
            horizon: 40,
            tombstones_left: 3,
            pages_before: 2560,
            pages_after: 256,
        });
        for s in [
            "1 tombstone removed",
            "etag 40",
            "alice/XYZ",
            "carol/ABC",
            "within 1d",
            "tombstones left: 3",
            "2560 pages (10.0 MiB) before, 256 pages (1.0 MiB) after",
        ] {
            assert!(text.contains(s), "{s}: {text}");
        }
    }
}
