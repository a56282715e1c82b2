//! `outpost-hub status`: asks a running hub for `GET /status` over a minimal
//! HTTP/1.1 client (plain, or TLS trusting a given certificate).

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{HubError, Result};

/// Time allowed for connecting and for the whole exchange.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a `POST` (a purge on a running hub) may take.
const POST_TIMEOUT: Duration = Duration::from_secs(600);
/// Largest response read.
const MAX_RESPONSE: u64 = 4 << 20;

/// An `http://` or `https://` URL, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Whether it is `https://`.
    pub tls: bool,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port (80 or 443 when absent).
    pub port: u16,
}

impl HttpUrl {
    /// Parses `http://HOST[:PORT][/...]` or `https://...`.
    pub fn parse(url: &str) -> Result<HttpUrl> {
        let bad = || {
            HubError::Other(format!(
                "invalid URL {url:?}: expected http://HOST:PORT or https://HOST:PORT"
            ))
        };
        let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(bad());
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(bad)?;
            (h, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad());
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if tls => 443,
            None => 80,
        };
        Ok(HttpUrl {
            tls,
            host: host.to_string(),
            port,
        })
    }

    fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.host_header())
    }
}

/// `GET path` on `url`; returns the status code and the body. `ca_cert`:
/// the certificate to trust for `https://`.
pub async fn get(url: &HttpUrl, path: &str, ca_cert: Option<&Path>) -> Result<(u16, Vec<u8>)> {
    get_hinted(url, path, ca_cert, None, "outpost-hub serve").await
}

/// [`get`] with `Authorization: Bearer <admin_token>` (for `/status` and
/// `/metrics`).
pub async fn get_as_admin(
    url: &HttpUrl,
    path: &str,
    ca_cert: Option<&Path>,
    admin_token: &str,
) -> Result<(u16, Vec<u8>)> {
    get_hinted(url, path, ca_cert, Some(admin_token), "outpost-hub serve").await
}

/// `POST path` on `url` with a JSON `body` and the admin token; returns
/// the status code and the body.
pub async fn post_as_admin(
    url: &HttpUrl,
    path: &str,
    ca_cert: Option<&Path>,
    admin_token: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>)> {
    request(
        url,
        ("POST", path, Some(body)),
        ca_cert,
        Some(admin_token),
        ("outpost-hub serve", POST_TIMEOUT),
    )
    .await
}

/// An admin request a command sends to the running hub (`POST path` with
/// `body`, `what` naming it in errors: "purge", "compaction"): its JSON
/// answer, or the hub's refusal as an error (its `{"error": …}` when it
/// gives one). Notes on standard error that the running hub did it.
pub async fn admin_request<T: serde::de::DeserializeOwned>(
    url: &HttpUrl,
    path: &str,
    ca_cert: Option<&Path>,
    admin_token: &str,
    body: &[u8],
    what: &str,
) -> Result<T> {
    let (code, answer) = post_as_admin(url, path, ca_cert, admin_token, body).await?;
    if code != 200 {
        let text = String::from_utf8_lossy(&answer);
        let why = serde_json::from_slice::<Value>(&answer)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| text.trim().to_string());
        return Err(HubError::Other(format!(
            "the hub at {url} refused the {what} (HTTP {code}): {why}"
        )));
    }
    eprintln!("(sent to the running hub at {url})");
    serde_json::from_slice(&answer)
        .map_err(|e| HubError::Other(format!("{url}{path}: invalid answer: {e}")))
}

/// [`get`], naming `start` as the command that starts the hub when nothing
/// answers.
async fn get_hinted(
    url: &HttpUrl,
    path: &str,
    ca_cert: Option<&Path>,
    admin_token: Option<&str>,
    start: &str,
) -> Result<(u16, Vec<u8>)> {
    request(
        url,
        ("GET", path, None),
        ca_cert,
        admin_token,
        (start, TIMEOUT),
    )
    .await
}

/// One HTTP/1.1 exchange: `(method, path, JSON body)`.
async fn request(
    url: &HttpUrl,
    what: (&str, &str, Option<&[u8]>),
    ca_cert: Option<&Path>,
    admin_token: Option<&str>,
    (start, timeout): (&str, Duration),
) -> Result<(u16, Vec<u8>)> {
    let exchange = async {
        let tcp = TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(|e| {
                let hint = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                    format!(" (is the hub running? start it with `{start}`)")
                } else {
                    String::new()
                };
                HubError::Other(format!("cannot connect to {url}: {e}{hint}"))
            })?;
        if url.tls {
            let Some(ca) = ca_cert else {
                return Err(HubError::Other(format!(
                    "{url} is https: pass --ca-cert FILE (the hub's certificate, e.g. its dev-tls-cert.pem)"
                )));
            };
            let connector = tokio_rustls::TlsConnector::from(crate::tls::client_config(ca)?);
            let name = rustls_pki_types::ServerName::try_from(url.host.clone())
                .map_err(|e| HubError::Other(format!("{url}: {e}")))?;
            let stream = connector
                .connect(name, tcp)
                .await
                .map_err(|e| HubError::Other(format!("TLS with {url}: {e}")))?;
            exchange(stream, url, what, admin_token).await
        } else {
            exchange(tcp, url, what, admin_token).await
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| HubError::Other(format!("{url} did not answer within {timeout:?}")))?
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    url: &HttpUrl,
    (method, path, body): (&str, &str, Option<&[u8]>),
    admin_token: Option<&str>,
) -> Result<(u16, Vec<u8>)> {
    let auth = admin_token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let content = body
        .map(|b| {
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            )
        })
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: outpost-hub/{}\r\nAccept: application/json\r\n{auth}{content}Connection: close\r\n\r\n",
        url.host_header(),
        env!("CARGO_PKG_VERSION")
    );
    let io = |e| HubError::io(format!("talk to {url}"), e);
    s.write_all(request.as_bytes()).await.map_err(io)?;
    if let Some(b) = body {
        s.write_all(b).await.map_err(io)?;
    }
    s.flush().await.map_err(io)?;
    let mut raw = Vec::new();
    let read = (&mut s).take(MAX_RESPONSE).read_to_end(&mut raw).await;
    // A TLS peer that closes without close_notify still sent a whole response.
    if let Err(e) = read
        && raw.is_empty()
    {
        return Err(io(e));
    }
    parse_response(&raw).ok_or_else(|| HubError::Other(format!("{url}: not an HTTP response")))
}

/// Splits an HTTP/1.1 response into status and body (de-chunked).
fn parse_response(raw: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let body = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if !chunked {
        return Some((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some((status, out));
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

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
    fn urls() {
        let u = HttpUrl::parse("http://127.0.0.1:4000").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (false, "127.0.0.1", 4000));
        let u = HttpUrl::parse("https://localhost/status").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (true, "localhost", 443));
        let u = HttpUrl::parse("http://[::1]:9/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9));
        assert_eq!(u.to_string(), "http://[::1]:9");
        for bad in ["ftp://x", "http://", "http://h:port", "127.0.0.1:4000"] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn responses() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!(r, (200, b"{}".to_vec()));
        let r = parse_response(
            b"HTTP/1.1 503 X\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r, (503, b"abcde".to_vec()));
        assert!(parse_response(b"garbage").is_none());
        assert_eq!(human_duration(3725.0), "1h 2m 5s");
    }
}
