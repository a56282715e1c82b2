//! The command line's HTTP client of a running hub (plain, or TLS trusting a
//! given certificate): `outpost-hub status` (`GET /status`, rendered by
//! `crate::status`) and the admin
//! requests the commands send to the hub that holds a database (`POST
//! /admin/purge`, `/admin/compact`, `/admin/export` and `/admin/audit`,
//! whose answers are streamed: [`admin_stream`]; `/admin/import`, whose
//! request is: [`admin_upload`]). A minimal HTTP/1.1 client of our own: one
//! request per connection.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{HubError, Result};

/// Time allowed for connecting and for the whole exchange.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a `POST` (a purge on a running hub) may take.
const POST_TIMEOUT: Duration = Duration::from_secs(600);
/// Largest answer read whole: a status, a purge's or a compaction's
/// report, an `audit who` of a document with tens of thousands of versions
/// (the answers of any length are streamed: [`admin_stream`]).
const MAX_RESPONSE: u64 = 64 << 20;

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
        return Err(refusal(url, what, code, &answer));
    }
    eprintln!("(sent to the running hub at {url})");
    serde_json::from_slice(&answer)
        .map_err(|e| HubError::Other(format!("{url}{path}: invalid answer: {e}")))
}

/// [`get`], naming `start` as the command that starts the hub when nothing
/// answers.
pub(crate) async fn get_hinted(
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

/// A byte stream to a hub: TCP, or TLS over it.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Connects to `url` (TLS for `https://`, trusting `ca_cert`); `start`
/// names the command that starts the hub when nothing answers.
async fn connect(url: &HttpUrl, ca_cert: Option<&Path>, start: &str) -> Result<Box<dyn Io>> {
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
    if !url.tls {
        return Ok(Box::new(tcp));
    }
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
    Ok(Box::new(stream))
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
        let s = connect(url, ca_cert, start).await?;
        exchange(s, url, what, admin_token).await
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| HubError::Other(format!("{url} did not answer within {timeout:?}")))?
}

/// What [`admin_stream`] hands the answer's body to: a piece of it and the
/// answer's headers (lowercase names); an error ends the exchange.
pub type Sink<'a> = dyn FnMut(&[u8], &[(String, String)]) -> Result<()> + 'a;

/// How long [`admin_stream`] waits for each read of the answer.
const STREAM_READ_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest head (status line and headers) or chunk-size line read.
const MAX_HEAD: u64 = 64 << 10;

/// `POST path` with the admin token and a JSON `body`, whose answer may be
/// any length: its body is handed to `sink` a piece at a time as it arrives
/// (de-chunked), with the answer's headers (lowercase names). No overall
/// time limit, but each read must come within 2 minutes. A refusal (not
/// 200) is an error naming `what`, as in [`admin_request`]. An answer cut
/// short (the connection closed before its end) is an error.
pub async fn admin_stream(
    url: &HttpUrl,
    path: &str,
    ca_cert: Option<&Path>,
    admin_token: &str,
    body: &[u8],
    what: &str,
    sink: &mut Sink<'_>,
) -> Result<()> {
    let mut a = Answer::connect(url, ca_cert).await?;
    send_request(&mut a.r, url, ("POST", path, Some(body)), Some(admin_token)).await?;
    let head = a.head().await?;
    a.body(head, what, sink).await
}

/// How much of an upload [`admin_upload`] writes at a time (one chunk of
/// the chunked encoding).
const UPLOAD_PIECE: usize = 64 << 10;

/// `POST path` with the admin token and `input` as the body, streamed with
/// the chunked encoding (a file or a pipe of any size, read a piece at a
/// time, `on_sent` told the bytes sent so far), whose answer is handed to
/// `sink` as [`admin_stream`] does. The request says `Expect:
/// 100-continue`: the hub checks the token and the request's line first and
/// refuses (the error names `what`) before a byte of the body is sent. Each
/// write, like each read, must go through within 2 minutes (the hub takes
/// the body as fast as it stores it).
pub async fn admin_upload(
    url: &HttpUrl,
    path: &str,
    (ca_cert, admin_token): (Option<&Path>, &str),
    input: &mut dyn std::io::Read,
    on_sent: &mut dyn FnMut(u64),
    what: &str,
    sink: &mut Sink<'_>,
) -> Result<()> {
    let mut a = Answer::connect(url, ca_cert).await?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: outpost-hub/{}\r\nAuthorization: Bearer {admin_token}\r\n\
         Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\
         Connection: close\r\n\r\n",
        url.host_header(),
        env!("CARGO_PKG_VERSION")
    );
    a.write(request.as_bytes()).await?;
    let head = a.head().await?;
    if head.status != Some(100) {
        // Refused before the body (or a hub that does not know
        // `Expect`): its answer says which.
        return a.body(head, what, sink).await;
    }
    let mut buf = vec![0u8; UPLOAD_PIECE];
    let mut sent = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(HubError::io("read the input", e)),
        };
        let mut piece = format!("{n:x}\r\n").into_bytes();
        piece.extend_from_slice(&buf[..n]);
        piece.extend_from_slice(b"\r\n");
        if n == 0 {
            piece.extend_from_slice(b"\r\n");
        }
        a.write(&piece).await.map_err(|e| {
            HubError::Other(format!(
                "the upload to {url} broke after {sent} bytes: {e}; what the hub committed before stays"
            ))
        })?;
        if n == 0 {
            break;
        }
        sent += n as u64;
        on_sent(sent);
    }
    let head = a.head().await?;
    a.body(head, what, sink).await
}

/// The status line and headers of an answer.
struct Head {
    /// The status line and headers as read (for a refusal's message).
    raw: Vec<u8>,
    status: Option<u16>,
    /// The headers, names in lowercase.
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The body of an [`admin_stream`] answer, read as it arrives, each read
/// within [`STREAM_READ_TIMEOUT`].
struct Answer<'u> {
    r: tokio::io::BufReader<Box<dyn Io>>,
    url: &'u HttpUrl,
}

/// `read`, within [`STREAM_READ_TIMEOUT`], its errors naming `url`.
async fn timed<T>(url: &HttpUrl, read: impl Future<Output = std::io::Result<T>>) -> Result<T> {
    tokio::time::timeout(STREAM_READ_TIMEOUT, read)
        .await
        .map_err(|_| {
            HubError::Other(format!(
                "{url} stopped answering for {STREAM_READ_TIMEOUT:?}"
            ))
        })?
        .map_err(|e| HubError::io(format!("talk to {url}"), e))
}

impl<'u> Answer<'u> {
    /// Connects to `url` within [`TIMEOUT`].
    async fn connect(url: &'u HttpUrl, ca_cert: Option<&Path>) -> Result<Answer<'u>> {
        let s = tokio::time::timeout(TIMEOUT, connect(url, ca_cert, "outpost-hub serve"))
            .await
            .map_err(|_| HubError::Other(format!("{url} did not answer within {TIMEOUT:?}")))??;
        Ok(Answer {
            r: tokio::io::BufReader::new(s),
            url,
        })
    }

    /// Writes (and flushes) `bytes`, within [`STREAM_READ_TIMEOUT`].
    async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        timed(self.url, async {
            self.r.write_all(bytes).await?;
            self.r.flush().await
        })
        .await
    }

    /// Reads an answer's status line and headers.
    async fn head(&mut self) -> Result<Head> {
        let url = self.url;
        let mut raw = Vec::new();
        loop {
            let start = raw.len();
            if self.line(&mut raw).await? == 0 || raw.len() as u64 > MAX_HEAD {
                return Err(HubError::Other(format!("{url}: not an HTTP response")));
            }
            if raw[start..] == *b"\r\n" {
                break;
            }
        }
        let text = String::from_utf8_lossy(&raw);
        let mut lines = text.split("\r\n");
        let status: Option<u16> = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok());
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Ok(Head {
            raw,
            status,
            headers,
        })
    }

    /// The body of the answer whose `head` was read: to `sink` if it is a
    /// 200, else the refusal (naming `what`) as the error.
    async fn body(&mut self, head: Head, what: &str, sink: &mut Sink<'_>) -> Result<()> {
        let url = self.url;
        if head.status != Some(200) {
            let mut raw = head.raw;
            let _ = (&mut self.r).take(MAX_RESPONSE).read_to_end(&mut raw).await;
            let (code, answer) = parse_response(&raw)
                .ok_or_else(|| HubError::Other(format!("{url}: not an HTTP response")))?;
            return Err(refusal(url, what, code, &answer));
        }
        let headers = &head.headers;
        let mut sink = |piece: &[u8]| sink(piece, headers);
        if head
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            return self.chunks(&mut sink).await;
        }
        let Some(len) = head
            .header("content-length")
            .and_then(|v| v.parse::<u64>().ok())
        else {
            return Err(HubError::Other(format!(
                "{url}: an answer of unknown length (neither chunked nor Content-Length)"
            )));
        };
        self.exactly(len, &mut sink).await
    }

    /// Appends one line (at most [`MAX_HEAD`] bytes) to `out`: the bytes
    /// read, 0 at the end of the stream.
    async fn line(&mut self, out: &mut Vec<u8>) -> Result<usize> {
        let mut limited = (&mut self.r).take(MAX_HEAD);
        timed(self.url, limited.read_until(b'\n', out)).await
    }

    fn cut(&self) -> HubError {
        HubError::Other(format!(
            "{} closed the connection before the answer's end",
            self.url
        ))
    }

    /// Hands the next `left` bytes to `sink`.
    async fn exactly(
        &mut self,
        mut left: u64,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut buf = vec![0u8; 64 << 10];
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = timed(self.url, self.r.read(&mut buf[..want])).await?;
            if n == 0 {
                return Err(self.cut());
            }
            sink(&buf[..n])?;
            left -= n as u64;
        }
        Ok(())
    }

    /// Hands the chunks of a chunked body to `sink`, to its last (empty)
    /// chunk and the trailer's end.
    async fn chunks(&mut self, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let mut line = Vec::new();
        loop {
            line.clear();
            self.line(&mut line).await?;
            if !line.ends_with(b"\n") {
                return Err(self.cut());
            }
            let size = std::str::from_utf8(&line)
                .ok()
                .and_then(|t| u64::from_str_radix(t.split(';').next()?.trim(), 16).ok())
                .ok_or_else(|| {
                    HubError::Other(format!("{}: a malformed chunk in the answer", self.url))
                })?;
            if size == 0 {
                // The trailer (none expected) and the empty line that ends it.
                loop {
                    line.clear();
                    if self.line(&mut line).await? == 0 || line == b"\r\n" {
                        return Ok(());
                    }
                }
            }
            self.exactly(size, sink).await?;
            let mut crlf = [0u8; 2];
            timed(self.url, self.r.read_exact(&mut crlf)).await?;
            if crlf != *b"\r\n" {
                return Err(HubError::Other(format!(
                    "{}: a malformed chunk in the answer",
                    self.url
                )));
            }
        }
    }
}

/// The error for a refused admin request (`answer`: the body, with the
/// hub's `{"error": …}` when it gives one).
fn refusal(url: &HttpUrl, what: &str, code: u16, answer: &[u8]) -> HubError {
    let text = String::from_utf8_lossy(answer);
    let why = serde_json::from_slice::<Value>(answer)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| text.trim().to_string());
    HubError::Other(format!(
        "the hub at {url} refused the {what} (HTTP {code}): {why}"
    ))
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    url: &HttpUrl,
    what: (&str, &str, Option<&[u8]>),
    admin_token: Option<&str>,
) -> Result<(u16, Vec<u8>)> {
    send_request(&mut s, url, what, admin_token).await?;
    let io = |e| HubError::io(format!("talk to {url}"), e);
    let mut raw = Vec::new();
    let read = (&mut s).take(MAX_RESPONSE + 1).read_to_end(&mut raw).await;
    // A TLS peer that closes without close_notify still sent a whole response.
    if let Err(e) = read
        && raw.is_empty()
    {
        return Err(io(e));
    }
    if raw.len() as u64 > MAX_RESPONSE {
        return Err(HubError::Other(format!(
            "{url}: the answer is over {} MiB, more than this command reads; run it with the hub stopped",
            MAX_RESPONSE >> 20
        )));
    }
    parse_response(&raw)
        .ok_or_else(|| HubError::Other(format!("{url}: not an HTTP response, or one cut short")))
}

/// Writes an HTTP/1.1 request: `(method, path, JSON body)`.
async fn send_request<S: AsyncWrite + Unpin>(
    s: &mut S,
    url: &HttpUrl,
    (method, path, body): (&str, &str, Option<&[u8]>),
    admin_token: Option<&str>,
) -> Result<()> {
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
    s.flush().await.map_err(io)
}

/// Splits an HTTP/1.1 response into status and body (de-chunked).
fn parse_response(raw: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let body = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut chunked = false;
    let mut length = None;
    for l in lines {
        let l = l.to_ascii_lowercase();
        if let Some(v) = l.strip_prefix("content-length:") {
            length = Some(v.trim().parse::<usize>().ok()?);
        }
        chunked |= l.starts_with("transfer-encoding:") && l.contains("chunked");
    }
    if !chunked {
        // A body shorter than announced was cut short: not an answer.
        let body = match length {
            Some(n) => body.get(..n)?,
            None => body,
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A server on 127.0.0.1 that takes one request (its head and its
    /// 2-byte body, `{}`: a server that closed with them unread would reset
    /// the connection), answers `answer` and closes: its URL and its task.
    async fn answer_once(answer: Vec<u8>) -> (HttpUrl, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                s.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            let mut body = [0u8; 2];
            s.read_exact(&mut body).await.unwrap();
            // The client may stop reading early (an answer over its limit).
            let _ = s.write_all(&answer).await;
        });
        let url = HttpUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        (url, server)
    }

    /// [`admin_stream`] against a server on 127.0.0.1 that answers `answer`
    /// and closes: what the sink got, or the error.
    async fn stream_from(answer: &[u8]) -> std::result::Result<Vec<u8>, String> {
        let (url, server) = answer_once(answer.to_vec()).await;
        let mut got = Vec::new();
        let r = admin_stream(&url, "/x", None, "t", b"{}", "export", &mut |piece, _| {
            got.extend_from_slice(piece);
            Ok(())
        })
        .await;
        server.await.unwrap();
        r.map(|()| got).map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn a_streamed_answer_is_dechunked_and_one_cut_short_is_an_error() {
        let whole = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\nline1\n\r\nc;ext=1\r\nline2\nline3\n\r\n0\r\n\r\n";
        assert_eq!(stream_from(whole).await.unwrap(), b"line1\nline2\nline3\n");
        let sized = b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nline1\n";
        assert_eq!(stream_from(sized).await.unwrap(), b"line1\n");
        // Cut inside a chunk, between chunks, inside a size line, and a
        // length-delimited body cut short: each an error.
        for cut in [
            &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nc\r\nline2\n"[..],
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\nline1\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\nline1\n\r\n1",
            b"HTTP/1.1 200 OK\r\ncontent-length: 60\r\n\r\nline1\n",
        ] {
            let e = stream_from(cut).await.unwrap_err();
            assert!(e.contains("before the answer's end"), "{e}");
        }
        let e = stream_from(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n")
            .await
            .unwrap_err();
        assert!(e.contains("malformed chunk"), "{e}");
        let e = stream_from(b"HTTP/1.1 200 OK\r\n\r\nline1\n")
            .await
            .unwrap_err();
        assert!(e.contains("unknown length"), "{e}");
        let refused =
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 25\r\n\r\n{\"error\":\"no such thing\"}";
        let e = stream_from(refused).await.unwrap_err();
        assert!(
            e.contains("refused the export (HTTP 404): no such thing"),
            "{e}"
        );
        let e = stream_from(b"nonsense\r\n\r\n").await.unwrap_err();
        assert!(
            e.contains("refused the export") || e.contains("not an HTTP"),
            "{e}"
        );
    }

    /// [`admin_upload`] of `input` against a server on 127.0.0.1 that reads
    /// the request's head, answers `first`, and, if that was `100
    /// Continue`, reads the chunked body to its end and answers `then`:
    /// the request's head, the body bytes the server received (de-chunked)
    /// or, after a refusal, every byte that came after the head, and what
    /// the client returned.
    async fn upload_to(
        input: &[u8],
        first: &'static [u8],
        then: &'static [u8],
    ) -> (String, Vec<u8>, std::result::Result<Vec<u8>, String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let mut s = tokio::io::BufReader::new(s);
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                s.read_until(b'\n', &mut head).await.unwrap();
            }
            s.write_all(first).await.unwrap();
            let mut body = Vec::new();
            if !first.starts_with(b"HTTP/1.1 100") {
                // The client must not send the body: all that comes is the
                // end of the connection.
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut body)).await;
                return (String::from_utf8(head).unwrap(), body);
            }
            loop {
                let mut size = String::new();
                s.read_line(&mut size).await.unwrap();
                let n = usize::from_str_radix(size.trim(), 16).unwrap();
                let mut chunk = vec![0u8; n + 2];
                s.read_exact(&mut chunk).await.unwrap();
                assert!(chunk.ends_with(b"\r\n"));
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            s.write_all(then).await.unwrap();
            (String::from_utf8(head).unwrap(), body)
        });
        let url = HttpUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let mut got = Vec::new();
        let mut sent = 0;
        let mut reader = input;
        let r = admin_upload(
            &url,
            "/admin/import?database=main",
            (None, "t"),
            &mut reader,
            &mut |n| sent = n,
            "import",
            &mut |piece, _| {
                got.extend_from_slice(piece);
                Ok(())
            },
        )
        .await;
        let (head, body) = server.await.unwrap();
        if r.is_ok() {
            assert_eq!(sent, input.len() as u64);
        }
        (head, body, r.map(|()| got).map_err(|e| e.to_string()))
    }

    #[tokio::test]
    async fn an_upload_waits_for_100_continue_and_sends_nothing_when_refused() {
        let input: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("{{\"id\":\"n/{i}\"}}\n").into_bytes())
            .collect();
        let (head, body, r) = upload_to(
            &input,
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\ndone\n",
        )
        .await;
        assert!(
            head.starts_with("POST /admin/import?database=main HTTP/1.1\r\n"),
            "{head}"
        );
        for h in [
            "Expect: 100-continue",
            "Transfer-Encoding: chunked",
            "Authorization: Bearer t",
        ] {
            assert!(head.contains(h), "{head}");
        }
        assert_eq!(r.unwrap(), b"done\n");
        assert!(
            body == input,
            "the server got {} bytes of {}",
            body.len(),
            input.len()
        );
        // An empty input: the last chunk alone.
        let (_, body, r) = upload_to(
            b"",
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        )
        .await;
        assert_eq!((body.len(), r.unwrap().len()), (0, 0));
        // Refused before the body: the refusal is the error, and not a
        // byte of the body was sent.
        let (_, body, r) = upload_to(
            &input,
            b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 23\r\n\r\n{\"error\":\"wrong token\"}",
            b"",
        )
        .await;
        let e = r.unwrap_err();
        assert!(
            e.contains("refused the import (HTTP 401): wrong token"),
            "{e}"
        );
        assert!(body.is_empty(), "{} bytes sent after a refusal", body.len());
    }

    #[tokio::test]
    async fn an_answer_over_the_limit_is_an_error_that_says_so() {
        let len = MAX_RESPONSE as usize;
        let mut answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n").into_bytes();
        answer.resize(answer.len() + len, b' ');
        let (url, server) = answer_once(answer).await;
        let e = post_as_admin(&url, "/admin/audit", None, "t", b"{}")
            .await
            .map(|(code, body)| format!("{code} and {} bytes", body.len()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("the answer is over 64 MiB"), "{e}");
        server.await.unwrap();
    }

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
        // Cut short (a connection reset mid-body): no answer.
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n{}").is_none());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n{}").is_none());
    }
}
