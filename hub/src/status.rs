//! `outpost-hub status`: a running hub's `GET /status`, fetched with the
//! command line's client (`crate::hub_client`) and rendered for a terminal.

use std::path::Path;

use serde_json::Value;

use crate::error::{HubError, Result};
use crate::hub_client::{HttpUrl, get_hinted};

/// Fetches and parses `GET /status` with the admin token.
pub async fn fetch(
    url: &HttpUrl,
    ca_cert: Option<&Path>,
    admin_token: Option<&str>,
) -> Result<Value> {
    fetch_hinted(url, ca_cert, admin_token, "outpost-hub serve").await
}

/// [`fetch`], naming `start` as the command that starts the hub when nothing
/// answers (e.g. `outpost-hub --config FILE serve`).
pub async fn fetch_hinted(
    url: &HttpUrl,
    ca_cert: Option<&Path>,
    admin_token: Option<&str>,
    start: &str,
) -> Result<Value> {
    let (code, body) = get_hinted(url, "/status", ca_cert, admin_token, start).await?;
    if code == 401 {
        let hint = if admin_token.is_some() {
            "the admin token given is not the hub's ([admin] token_sha256)"
        } else {
            "pass the admin token with --admin-token or OUTPOST_HUB_ADMIN_TOKEN (`outpost-hub admin-token` sets one)"
        };
        return Err(HubError::Other(format!(
            "{url}/status answered HTTP 401: {hint}"
        )));
    }
    if code != 200 {
        return Err(HubError::Other(format!(
            "{url}/status answered HTTP {code}: {}",
            String::from_utf8_lossy(&body).trim()
        )));
    }
    serde_json::from_slice(&body)
        .map_err(|e| HubError::Other(format!("{url}/status: invalid JSON: {e}")))
}

/// The status as text for a terminal.
pub fn render(url: &HttpUrl, s: &Value) -> String {
    let num = |v: &Value| v.as_u64().unwrap_or(0);
    let uptime = s["uptime_seconds"].as_f64().unwrap_or(0.0);
    let mut out = format!(
        "Outpost hub {} at {url}{}, up {}\n",
        s["version"].as_str().unwrap_or("?"),
        if s["shutting_down"].as_bool() == Some(true) {
            " (shutting down)"
        } else {
            ""
        },
        human_duration(uptime)
    );
    out.push_str(&format!(
        "config:    {}\nedges:     {} connected, {} configured\nupstreams: {}\n",
        s["config"].as_str().unwrap_or("?"),
        s["edges_connected"].as_i64().unwrap_or(0),
        num(&s["edges_configured"]),
        num(&s["upstreams"]),
    ));
    let empty = Vec::new();
    let dbs = s["databases"].as_array().unwrap_or(&empty);
    let width = dbs
        .iter()
        .filter_map(|d| d["name"].as_str())
        .map(str::len)
        .chain(["database".len()])
        .max()
        .unwrap_or(8);
    out.push_str(&format!(
        "\n{:<width$}  {:>12}  {:>12}  {:>12}\n",
        "database", "documents", "tombstones", "last etag"
    ));
    for d in dbs {
        if d["state"].as_str() == Some("failed") {
            out.push_str(&format!(
                "{:<width$}  FAILED since {}: {} (reopen attempts: {}{})\n",
                d["name"].as_str().unwrap_or("?"),
                d["since"].as_str().unwrap_or("?"),
                d["error"].as_str().unwrap_or("?"),
                num(&d["reopen_attempts"]),
                d["next_attempt"]
                    .as_str()
                    .map(|t| format!(", next at {t}"))
                    .unwrap_or_default(),
            ));
            continue;
        }
        out.push_str(&format!(
            "{:<width$}  {:>12}  {:>12}  {:>12}\n",
            d["name"].as_str().unwrap_or("?"),
            num(&d["documents"]),
            num(&d["tombstones"]),
            num(&d["last_etag"]),
        ));
    }
    for d in dbs {
        let c = &d["compaction"];
        if let Some(at) = c["last_run"].as_str() {
            out.push_str(&format!(
                "{}: tombstones compacted up to etag {} ({} removed in all), last run {at}\n",
                d["name"].as_str().unwrap_or("?"),
                num(&c["horizon"]),
                num(&c["removed"]),
            ));
        }
    }
    out
}

fn human_duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d {h}h {m}m")
    } else if h > 0 {
        format!("{h}h {m}m {s}s")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(human_duration(3725.0), "1h 2m 5s");
    }
}
