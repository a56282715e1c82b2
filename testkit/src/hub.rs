//! A real `outpost-hub serve` process for the hub's integration tests: one
//! launcher instead of one per test file.
//!
//! The tests pass the binary (`env!("CARGO_BIN_EXE_outpost-hub")`, which
//! only the hub's own tests know) and a directory holding `outpost-hub.toml`.
//! The process runs there with `RUST_LOG=info` and its stderr captured in a
//! log; [`HubProcess::start`] waits (at most [`WAIT`]) until it logs
//! `listening on URL`, so a configuration's fixed port and `--listen
//! 127.0.0.1:0` work alike. It is killed on drop. [`http_get`] asks it (or
//! any address) for a page over plain HTTP; `wait_until` (feature `hub`)
//! polls an async condition with the same bound.
//!
//! `/status` and `/metrics` need the hub's admin token: a configuration
//! without an `[admin]` table gets one for [`ADMIN_TOKEN`] appended when
//! the process starts, and [`HubProcess::get`] sends it
//! ([`HubProcess::get_anonymous`] does not).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest a [`HubProcess`] wait (start, a log line, a clean stop) lasts
/// before the test fails.
pub const WAIT: Duration = Duration::from_secs(60);

/// The admin token of every [`HubProcess`] whose configuration has no
/// `[admin]` table of its own.
pub const ADMIN_TOKEN: &str = "testkit-admin-token";

/// SHA-256 of [`ADMIN_TOKEN`] (hex), as `[admin] token_sha256` holds it.
pub const ADMIN_TOKEN_SHA256: &str =
    "30f7c66afea1d9af04a1757219d6c9b060e8da1dc904050a44600db11247e0a7";

/// The public admin token of the demo configuration (`outpost-hub init
/// --demo`), and its SHA-256: a [`HubProcess`] on the demo configuration
/// uses it.
pub const DEMO_ADMIN_TOKEN: (&str, &str) = (
    "admin-demo-token",
    "9c588b0babd6a996be956ccc040751f16fb7f1c2cef21d40b265621d37b0a8bc",
);

/// What the hub logs once its socket is bound, followed by its URL.
const LISTENING: &str = "listening on ";

/// A port free on 127.0.0.1 right now, for a configuration's `listen` (a
/// hub restarted on it keeps its URL).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Polls `f` every 50 ms until it is true; fails the test, naming `what`,
/// after [`WAIT`] (feature `hub`: it sleeps on tokio's timer).
#[cfg(feature = "hub")]
pub async fn wait_until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = Instant::now();
    while !f().await {
        assert!(t.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A plain HTTP/1.1 GET of `path` at `addr` (`Connection: close`; 5 s to
/// connect, 10 s per read or write): the status code and the body. Panics
/// if there is no HTTP answer.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_get_as(addr, path, None)
}

/// [`http_get`] with `Authorization: Bearer <bearer>` when `bearer` is set.
pub fn http_get_as(addr: SocketAddr, path: &str, bearer: Option<&str>) -> (u16, String) {
    http_request(addr, "GET", path, bearer, None)
}

/// `POST path` with a JSON `body` (and `Authorization: Bearer <bearer>`
/// when set): the status and the body of the answer (read for up to 30 s:
/// an admin request may run a while).
pub fn http_post_as(
    addr: SocketAddr,
    path: &str,
    bearer: Option<&str>,
    body: &str,
) -> (u16, String) {
    http_request(addr, "POST", path, bearer, Some(body))
}

fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    try_http_request(addr, method, path, bearer, body)
        .unwrap_or_else(|e| panic!("{method} {path} at {addr}: {e}"))
}

/// [`http_get`] that says what went wrong instead of panicking: the
/// connection failed or was cut, or the answer is not HTTP (plain HTTP sent
/// to a TLS port, say).
pub fn try_http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    try_http_request(addr, "GET", path, None, None)
}

fn try_http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> Result<(u16, String), String> {
    let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| io("connect", e))?;
    let wait = if body.is_some() { 30 } else { 10 };
    s.set_read_timeout(Some(Duration::from_secs(wait)))
        .map_err(|e| io("read timeout", e))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| io("write timeout", e))?;
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let host = addr.to_string();
    s.write_all(request_text(method, path, &host, auth.as_deref(), body).as_bytes())
        .map_err(|e| io("write", e))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| io("read", e))?;
    parse_answer(&raw)
}

/// The text of an HTTP/1.1 request with `Connection: close`:
/// `authorization` is the whole `Authorization` header's value (`None`: no
/// header), `body` is sent as JSON.
pub fn request_text(
    method: &str,
    path: &str,
    host: &str,
    authorization: Option<&str>,
    body: Option<&str>,
) -> String {
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let content = body
        .map(|b| {
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            )
        })
        .unwrap_or_default();
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}{content}Connection: close\r\n\r\n{}",
        body.unwrap_or_default()
    )
}

/// The status code and the body of an HTTP answer (`raw`: all its bytes).
pub fn parse_answer(raw: &[u8]) -> Result<(u16, String), String> {
    let raw = String::from_utf8_lossy(raw);
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP header in {} bytes", raw.len()))?;
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP status in {:?}", head.lines().next().unwrap_or("")))?;
    Ok((code, body.to_string()))
}

/// A running `outpost-hub --config <dir>/outpost-hub.toml serve <args>`,
/// killed on drop.
#[derive(Debug)]
pub struct HubProcess {
    bin: PathBuf,
    dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    url: String,
    addr: SocketAddr,
    admin: &'static str,
}

impl HubProcess {
    /// Starts `bin --config outpost-hub.toml serve <args>` in `dir` and waits
    /// until it listens. Panics (with its log) if it exits first or takes
    /// longer than [`WAIT`].
    pub fn start(bin: impl AsRef<Path>, dir: impl AsRef<Path>, args: &[&str]) -> HubProcess {
        let mut hub = HubProcess {
            bin: bin.as_ref().to_path_buf(),
            dir: dir.as_ref().to_path_buf(),
            args: args.iter().map(|a| a.to_string()).collect(),
            child: None,
            log: Arc::new(Mutex::new(String::new())),
            url: String::new(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: ADMIN_TOKEN,
        };
        hub.restart();
        hub
    }

    /// Starts the same command again (after [`HubProcess::kill`], say: a
    /// configuration's fixed port stays the same) and waits until it
    /// listens. Its log is appended to the same [`HubProcess::log`].
    pub fn restart(&mut self) {
        self.kill();
        self.admin = ensure_admin(&self.dir.join("outpost-hub.toml"));
        let mut child = Command::new(&self.bin)
            .current_dir(&self.dir)
            .arg("--config")
            .arg(self.dir.join("outpost-hub.toml"))
            .arg("serve")
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let from = self.log().len();
        self.child = Some(child);
        let rest = self.wait_log_from(from, LISTENING);
        self.url = rest
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        let host_port = self.url.split("://").nth(1).unwrap_or_default();
        self.addr = host_port
            .parse()
            .unwrap_or_else(|e| panic!("no address after {LISTENING:?} in {rest:?}: {e}"));
    }

    /// Kills the process (SIGKILL) and reaps it; nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM (what Ctrl-C or a service manager sends): the hub
    /// begins its clean shutdown; nothing is waited for.
    pub fn ask_to_stop(&self) {
        let pid = self.pid().expect("the hub is running").to_string();
        let ok = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(ok.success());
    }

    /// Sends SIGTERM and waits (at most [`WAIT`]) for a clean exit; returns
    /// the whole log. Panics if it exits with a failure or does not stop.
    pub fn terminate(mut self) -> String {
        self.ask_to_stop();
        let mut child = self.child.take().expect("the hub is running");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                // Let the reader thread drain the pipe.
                std::thread::sleep(Duration::from_millis(100));
                let log = self.log();
                assert!(status.success(), "exit {status}:\n{log}");
                return log;
            }
            assert!(
                start.elapsed() < WAIT,
                "the hub did not stop:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything the process (and those before a restart) wrote on stderr.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log holds `needle`. Panics if the process exits first
    /// or after [`WAIT`].
    pub fn wait_log(&mut self, needle: &str) {
        self.wait_log_from(0, needle);
    }

    /// Waits until the log after byte `from` holds `needle`; returns what
    /// follows it on its line.
    fn wait_log_from(&mut self, from: usize, needle: &str) -> String {
        let start = Instant::now();
        loop {
            let log = self.log();
            let tail = log.get(from..).unwrap_or_default();
            if let Some(at) = tail.find(needle) {
                let rest = &tail[at + needle.len()..];
                return rest.lines().next().unwrap_or_default().to_string();
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("the hub exited ({status}) before logging {needle:?}:\n{log}");
            }
            assert!(
                start.elapsed() < WAIT,
                "timed out waiting for {needle:?} in the log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its URL, as logged: `http://127.0.0.1:PORT` (`https://` with TLS).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `GET path` over plain HTTP ([`http_get_as`]) with the admin token
    /// ([`ADMIN_TOKEN`]): the status code and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get_as(self.addr, path, Some(self.admin))
    }

    /// The admin token [`HubProcess::get`] sends: [`ADMIN_TOKEN`], or the
    /// demo's ([`DEMO_ADMIN_TOKEN`]) on the demo configuration.
    pub fn admin_token(&self) -> &'static str {
        self.admin
    }

    /// `POST path` with a JSON body and the admin token, or `token`
    /// (`Some("")`: none).
    pub fn post(&self, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
        let bearer = match token {
            None => Some(self.admin),
            Some("") => None,
            t => t,
        };
        http_post_as(self.addr, path, bearer, body)
    }

    /// `GET path` without any credential.
    pub fn get_anonymous(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path)
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its resident memory (`VmRSS` of `/proc/<pid>/status`, KiB; Linux),
    /// if it runs and that can be read.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// The directory it runs in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Appends an `[admin]` table for [`ADMIN_TOKEN`] to the configuration at
/// `path` if it has none (nothing if the file cannot be read); returns the
/// admin token to use.
fn ensure_admin(path: &Path) -> &'static str {
    let Ok(text) = std::fs::read_to_string(path) else {
        return ADMIN_TOKEN;
    };
    if text.contains(DEMO_ADMIN_TOKEN.1) {
        return DEMO_ADMIN_TOKEN.0;
    }
    if text.lines().any(|l| l.trim() == "[admin]") {
        return ADMIN_TOKEN;
    }
    let sep = if text.ends_with('\n') { "" } else { "\n" };
    let text = format!("{text}{sep}\n[admin]\ntoken_sha256 = \"{ADMIN_TOKEN_SHA256}\"\n");
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    ADMIN_TOKEN
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(all(test, feature = "hub"))]
mod tests {
    #[test]
    fn the_admin_digests_are_the_tokens() {
        use outpost_hub::config::token_sha256_hex;
        assert_eq!(
            token_sha256_hex(super::ADMIN_TOKEN),
            super::ADMIN_TOKEN_SHA256
        );
        assert_eq!(
            token_sha256_hex(super::DEMO_ADMIN_TOKEN.0),
            super::DEMO_ADMIN_TOKEN.1
        );
        assert_eq!(
            outpost_hub::edit::DEMO_ADMIN_TOKEN,
            super::DEMO_ADMIN_TOKEN.0
        );
    }
}
