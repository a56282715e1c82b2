//! End-to-end tests of the `outpost-hub` binary: each test runs the real
//! program in a temporary directory, on 127.0.0.1 with a port the system
//! picks, with bounded waits everywhere; child processes are killed on drop.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use outpost_hub::hub_client::{self, HttpUrl};
use outpost_testkit::TempDir;
use outpost_testkit::hub::{ADMIN_TOKEN, ADMIN_TOKEN_SHA256, HubProcess, try_http_get};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_outpost-hub");
const WAIT: Duration = Duration::from_secs(30);

/// A fresh directory for one test under the system's temporary directory,
/// removed on drop.
fn temp_dir(tag: &str) -> TempDir {
    TempDir::new(std::env::temp_dir(), &format!("outpost-hub-test-{tag}"))
}

/// The hub's configuration file in a test directory.
trait HubDir {
    fn config(&self) -> PathBuf;
}

impl HubDir for TempDir {
    fn config(&self) -> PathBuf {
        self.join("outpost-hub.toml")
    }
}

fn hub(dir: &TempDir) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir.path())
        .env("OUTPOST_HUB_CONFIG", dir.config())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    // A configuration that HubProcess gave its admin token (the demo's has
    // its own public one, which `status` finds by itself).
    let cfg = std::fs::read_to_string(dir.config()).unwrap_or_default();
    if cfg.contains(ADMIN_TOKEN_SHA256) {
        c.env("OUTPOST_HUB_ADMIN_TOKEN", ADMIN_TOKEN);
    }
    c
}

fn run(dir: &TempDir, args: &[&str]) -> Output {
    hub(dir).args(args).output().unwrap()
}

fn run_ok(dir: &TempDir, args: &[&str]) -> Output {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "outpost-hub {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A running `outpost-hub serve` ([`HubProcess`]: killed on drop) on a port
/// the system picks.
struct Server {
    hub: HubProcess,
    url: String,
    addr: SocketAddr,
}

impl Server {
    fn start(dir: &TempDir, extra: &[&str]) -> Server {
        let mut args = vec!["--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let hub = HubProcess::start(BIN, dir.path(), &args);
        Server {
            url: hub.url().to_string(),
            addr: hub.addr(),
            hub,
        }
    }

    fn log(&self) -> String {
        self.hub.log()
    }

    /// Waits until the log holds `needle` (panics after a bounded wait).
    fn wait_log(&mut self, needle: &str) {
        self.hub.wait_log(needle);
    }

    fn get(&self, path: &str) -> (u16, String) {
        self.hub.get(path)
    }

    fn status(&self) -> Value {
        let (code, body) = self.get("/status");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Polls `/status` until `pred` holds (panics after [`WAIT`]).
    fn wait_status(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let s = self.status();
            if pred(&s) {
                return s;
            }
            assert!(start.elapsed() < WAIT, "timed out waiting for {what}: {s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit.
    fn terminate(self) -> String {
        self.hub.terminate()
    }
}

fn append(path: &Path, extra: &str) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(extra.as_bytes()).unwrap();
}

#[test]
fn serves_health_metrics_status_and_stops_cleanly() {
    let dir = temp_dir("serve");
    run_ok(&dir, &["init", "--demo"]);
    let server = Server::start(&dir, &[]);

    let (code, body) = server.get("/healthz");
    assert_eq!(code, 200, "{body}");
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["databases"], serde_json::json!(["main"]));

    let (code, metrics) = server.get("/metrics");
    assert_eq!(code, 200);
    for name in [
        "outpost_edges_connected",
        "outpost_documents_sent_total",
        "outpost_documents_received_total",
        "outpost_rejections_total",
        "outpost_conflicts_total",
        "outpost_commit_latency_seconds_bucket{le=\"0.001\"}",
        "outpost_commit_latency_seconds_bucket{le=\"5\"}",
        "outpost_frames_total{direction=\"in\"}",
        "outpost_bytes_total{direction=\"out\"}",
        "outpost_database_documents{database=\"main\"} 0",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }

    let s = server.status();
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["edges_configured"], 2);
    assert_eq!(s["edges_connected"], 0);
    assert_eq!(s["tls"], false);
    assert_eq!(s["databases"][0]["name"], "main");
    assert_eq!(s["databases"][0]["documents"], 0);

    // No demo site in this directory: a placeholder page at /, 404 elsewhere.
    let (code, body) = server.get("/");
    assert_eq!(code, 200);
    assert!(body.contains("Outpost hub"), "{body}");
    assert_eq!(server.get("/nope.js").0, 404);
    // /sync is a WebSocket endpoint: a plain GET is refused.
    let (code, _) = server.get("/sync");
    assert!((400..500).contains(&code), "{code}");

    // The status command reads the configuration for the address (here
    // overridden, since the hub listens on a port of its own).
    let out = run_ok(&dir, &["status", "--url", &server.url]);
    let shown = text(&out.stdout);
    assert!(shown.contains("2 configured"), "{shown}");
    assert!(shown.contains("main"), "{shown}");

    let log = server.terminate();
    assert!(log.contains("SIGTERM: shutting down"), "{log}");
    assert!(log.contains("database closed"), "{log}");
    // The lock is released: the database opens again.
    run_ok(&dir, &["export", "-"]);
}

#[test]
fn serves_the_demo_site() {
    let dir = temp_dir("site");
    run_ok(&dir, &["init", "--demo"]);
    let site = dir.path().join("demo-site");
    std::fs::create_dir_all(site.join("pkg")).unwrap();
    std::fs::write(site.join("index.html"), "<h1>demo</h1>").unwrap();
    std::fs::write(site.join("pkg/app.wasm"), b"\0asm").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "no").unwrap();
    let server = Server::start(&dir, &[]);
    assert_eq!(server.get("/"), (200, "<h1>demo</h1>".to_string()));
    assert_eq!(server.get("/pkg/app.wasm").0, 200);
    assert_eq!(server.get("/pkg").0, 308);
    assert_eq!(server.get("/../secret.txt").0, 400);
    assert_eq!(server.get("/%2e%2e/secret.txt").0, 400);
}

/// `init --demo` issues enrollment codes (printed, and in a 0600 file);
/// `edge enroll`, `edge revoke`, `edge list` and `keygen` from the command
/// line; bad keys and durations are refused with the field named.
#[test]
fn enrollment_codes_revocation_and_keys_from_the_command_line() {
    let dir = temp_dir("keys");
    let out = run_ok(&dir, &["init", "--demo"]);
    let printed = text(&out.stdout);
    let file = dir.path().join("enroll-codes.txt");
    let listed = std::fs::read_to_string(&file).unwrap();
    assert_eq!(printed, listed);
    assert!(
        listed.starts_with("alice ") && listed.contains("\nbob "),
        "{listed}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let config = std::fs::read_to_string(dir.config()).unwrap();
    assert!(!config.contains("token_sha256 = \"") || config.contains("[admin]"));
    assert!(
        !config.lines().any(|l| l.trim() == "[dev]"),
        "no tokens in the demo:\n{config}"
    );
    let list = text(&run_ok(&dir, &["edge", "list"]).stdout);
    assert!(list.contains("IDENTITY"), "{list}");
    assert!(list.contains("enrollment pending until"), "{list}");

    // A key file: the public key printed, never overwritten.
    let key = text(&run_ok(&dir, &["keygen", "me.key"]).stdout)
        .trim()
        .to_string();
    assert!(key.starts_with("p256:"), "{key}");
    let again = run(&dir, &["keygen", "me.key"]);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("already exists"));
    run_ok(
        &dir,
        &["edge", "add", "kiosk", "--read", "menu/", "--pubkey", &key],
    );
    let list = text(&run_ok(&dir, &["edge", "list"]).stdout);
    let fp = &list
        .lines()
        .find(|l| l.starts_with("kiosk"))
        .unwrap()
        .to_string();
    assert!(fp.contains("key "), "{list}");

    // Revoked, then re-enrolled (a new code; the key is dropped).
    run_ok(&dir, &["edge", "revoke", "kiosk"]);
    let list = text(&run_ok(&dir, &["edge", "list"]).stdout);
    assert!(list.contains("REVOKED, key "), "{list}");
    let out = run_ok(&dir, &["edge", "enroll", "kiosk", "--expires", "2h"]);
    let code = text(&out.stdout).trim().to_string();
    assert_eq!(code.len(), 35, "{code}");
    let list = text(&run_ok(&dir, &["edge", "list"]).stdout);
    let row = list.lines().find(|l| l.starts_with("kiosk")).unwrap();
    assert!(
        row.contains("enrollment pending until")
            && !row.contains("REVOKED")
            && !row.contains("key "),
        "{row}"
    );

    // Refusals name what is wrong.
    for (args, needle) in [
        (
            vec!["edge", "add", "x", "--read", "a/", "--pubkey", "p256:04zz"],
            "--pubkey",
        ),
        (
            vec!["edge", "add", "x", "--read", "a/", "--expires", "3w"],
            "--expires",
        ),
        (vec!["edge", "revoke", "nobody"], "no edge named"),
        (vec!["edge", "enroll", "nobody"], "no edge named"),
    ] {
        let out = run(&dir, &args);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            text(&out.stderr).contains(needle),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    // A token in the file without [dev]: the load error says how to fix it.
    append(
        &dir.config(),
        "\n[[edge]]\nname = \"t\"\ntoken_sha256 = \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"\ndatabase = \"main\"\n",
    );
    let out = run(&dir, &["edge", "list"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("token_sha256") && err.contains("[dev] tokens = true"),
        "{err}"
    );
}

#[test]
fn edge_changes_and_bad_edits_reload_live() {
    let dir = temp_dir("reload");
    run_ok(&dir, &["init", "--demo"]);
    let mut server = Server::start(&dir, &[]);
    assert_eq!(server.status()["edges_configured"], 2);

    let out = run_ok(
        &dir,
        &[
            "edge", "add", "carol", "--read", "notes/", "todo/", "--write", "notes/",
        ],
    );
    // An enrollment code: printed once, only its SHA-256 stored.
    let code = text(&out.stdout).trim().to_string();
    assert_eq!(code.len(), 35, "{code}");
    assert!(code.chars().all(|c| c.is_ascii_hexdigit() || c == '-'));
    let said = text(&out.stderr);
    assert!(said.contains("only its SHA-256 is stored"), "{said}");
    assert!(
        said.contains("db.enroll"),
        "how the edge redeems it: {said}"
    );
    let config = std::fs::read_to_string(dir.config()).unwrap();
    assert!(!config.contains(&code), "the code itself is never stored");
    assert!(config.contains("enroll_code_sha256"), "{config}");
    assert!(
        config.contains("# Two demo edges, alice and bob"),
        "comments kept"
    );

    let list = text(&run_ok(&dir, &["edge", "list"]).stdout);
    assert!(
        list.contains("carol  main      notes/ todo/  notes/"),
        "{list}"
    );

    server.wait_log("configuration reloaded");
    server.wait_status("3 edges", |s| s["edges_configured"] == 3);

    // Tokens are development mode: refused here. A registered key, then
    // a removal.
    let out = run(
        &dir,
        &[
            "edge",
            "add",
            "dave",
            "--read",
            "*",
            "--token",
            "dave-token",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("[dev] tokens = true"),
        "{}",
        text(&out.stderr)
    );
    let key = text(&run_ok(&dir, &["keygen", "dave.key"]).stdout)
        .trim()
        .to_string();
    assert!(key.starts_with("p256:04") && key.len() == 135, "{key}");
    run_ok(
        &dir,
        &["edge", "add", "dave", "--read", "*", "--pubkey", &key],
    );
    server.wait_status("4 edges", |s| s["edges_configured"] == 4);
    run_ok(&dir, &["edge", "remove", "bob"]);
    server.wait_status("3 edges again", |s| s["edges_configured"] == 3);
    let list = text(&run_ok(&dir, &["edge", "list"]).stdout);
    assert!(!list.contains("bob"), "{list}");
    assert!(list.contains("dave   main      *"), "{list}");

    // Refused edits leave the file alone.
    let out = run(&dir, &["edge", "add", "carol", "--read", "x/"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("already exists"));
    let out = run(&dir, &["edge", "add", "eve", "--read", "a/../b"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("read"), "{}", text(&out.stderr));
    let out = run(&dir, &["edge", "remove", "nobody"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no edge named"));

    // An invalid file: the hub warns and keeps the previous configuration.
    append(&dir.config(), "\nbogus_field = 1\n");
    server.wait_log("configuration not reloaded");
    // The warning spans several lines (the TOML error's excerpt); the line
    // naming the field may reach the log a moment after its first line.
    server.wait_log("bogus_field");
    assert_eq!(server.get("/healthz").0, 200);
    assert_eq!(server.status()["edges_configured"], 3);
    let out = run(&dir, &["edge", "list"]);
    assert!(!out.status.success(), "edge list reports the bad file");

    // Fixed again: reloaded again.
    let fixed = std::fs::read_to_string(dir.config())
        .unwrap()
        .replace("\nbogus_field = 1\n", "\n");
    let tmp = dir.path().join("fixed.tmp");
    std::fs::write(&tmp, fixed).unwrap();
    std::fs::rename(&tmp, dir.config()).unwrap();
    server.wait_log("configuration file is valid again");
    assert_eq!(server.status()["edges_configured"], 3);
    assert_eq!(server.log().matches("configuration reloaded").count(), 3);

    // A database added live is opened without a restart.
    let cfg = std::fs::read_to_string(dir.config()).unwrap();
    let tmp = dir.path().join("more.tmp");
    std::fs::write(&tmp, format!("{cfg}\n[[database]]\nname = \"second\"\n")).unwrap();
    std::fs::rename(&tmp, dir.config()).unwrap();
    let s = server.wait_status("a second database", |s| {
        s["databases"].as_array().is_some_and(|d| d.len() == 2)
    });
    assert_eq!(s["databases"][1]["name"], "second");
}

#[test]
fn a_database_is_used_by_one_process_at_a_time() {
    let dir = temp_dir("lock");
    run_ok(&dir, &["init", "--demo"]);
    let _server = Server::start(&dir, &[]);

    let out = run(&dir, &["serve", "--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("database main is in use by another process (lock file"),
        "{err}"
    );

    let data = dir.path().join("in.jsonl");
    std::fs::write(&data, "{\"id\":\"notes/1\"}\n").unwrap();
    // The import and the export never open the files a live writer holds:
    // the running hub imports the lines itself (the demo's admin token,
    // from this machine).
    let out = run_ok(&dir, &["import", data.to_str().unwrap()]);
    assert!(
        text(&out.stderr).contains("sent to the running hub"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("imported 1 documents"));
    // An export never reads the files a live writer is changing (it could
    // see a state that never existed): the running hub streams it instead.
    let out = run_ok(&dir, &["export"]);
    assert!(
        text(&out.stderr).contains("exported by the running hub"),
        "{}",
        text(&out.stderr)
    );
}

/// `export` while the hub runs: with the admin token the hub streams the
/// same lines a stopped hub's export writes; without it, or with a wrong
/// one, a clear refusal; the endpoint refuses anonymous and malformed
/// requests and unknown databases.
#[test]
fn export_of_a_running_hub_needs_the_admin_token_and_matches_a_stopped_export() {
    let dir = temp_dir("live-export");
    run_ok(&dir, &["init"]);
    let input = dir.path().join("in.jsonl");
    let mut lines = String::new();
    for i in 0..2500 {
        lines.push_str(&format!(
            "{{\"id\":\"notes/{i:05}\",\"n\":{i},\"@metadata\":{{\"@collection\":\"Notes\"}}}}\n"
        ));
    }
    std::fs::write(&input, &lines).unwrap();
    run_ok(&dir, &["import", input.to_str().unwrap()]);
    let stopped = dir.path().join("stopped.jsonl");
    run_ok(&dir, &["export", stopped.to_str().unwrap()]);
    // A full disk (`/dev/full`: every write fails with ENOSPC), stopped and
    // running: exit 1 naming the cause, the database untouched.
    let full_disk = |running: bool| {
        let out = run(&dir, &["export", "/dev/full"]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("No space left on device"), "{err}");
        assert_eq!(err.contains("INCOMPLETE"), running, "{err}");
    };
    full_disk(false);

    let server = Server::start(&dir, &[]);
    full_disk(true);
    let live = dir.path().join("live.jsonl");
    let out = run_ok(&dir, &["export", live.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert!(err.contains("exported 2500 documents"), "{err}");
    assert!(err.contains("exported by the running hub"), "{err}");
    assert_eq!(
        std::fs::read(&live).unwrap(),
        std::fs::read(&stopped).unwrap()
    );
    let out = run_ok(&dir, &["export", "--prefix", "NOTES/001"]);
    assert_eq!(text(&out.stdout).lines().count(), 100);

    // No token: the error says what to do; a wrong one: the hub's 401.
    let out = hub(&dir)
        .env_remove("OUTPOST_HUB_ADMIN_TOKEN")
        .args(["export", "-"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("needs its admin token"),
        "{}",
        text(&out.stderr)
    );
    let out = hub(&dir)
        .args(["export", "--admin-token", "wrong", "-"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("refused the export (HTTP 401)"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());

    // `None`: the admin token; `Some("")`: none.
    let post = |token: Option<&str>, body: &str| server.hub.post("/admin/export", token, body);
    let token = None;
    assert_eq!(post(Some(""), "{\"database\":\"main\"}").0, 401);
    let (code, body) = post(token, "{\"database\":\"nope\"}");
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("no open database named"), "{body}");
    let (code, body) = post(token, "{\"database\":\"main\",\"bogus\":1}");
    assert_eq!(code, 400, "{body}");
    // Without `end_line`: the documents' lines alone (what curl saves).
    let (code, body) = post(token, "{\"database\":\"main\",\"prefix\":\"notes/0249\"}");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"n\":2490"), "{body}");
    assert!(!body.contains("\"n\":2489"), "{body}");
    assert!(!body.contains("@export"), "{body}");
}

#[test]
fn import_then_export_round_trips() {
    let dir = temp_dir("transfer");
    run_ok(&dir, &["init"]);
    let input = dir.path().join("in.jsonl");
    let mut lines = String::new();
    for i in 0..2500 {
        lines.push_str(&format!(
            "{{\"id\":\"notes/{i:05}\",\"n\":{i},\"text\":\"note {i}\",\"@metadata\":{{\"@collection\":\"Notes\"}}}}\n"
        ));
        if i == 1234 {
            lines.push_str("{not json\n\n");
        }
    }
    std::fs::write(&input, &lines).unwrap();
    let out = run(
        &dir,
        &["import", input.to_str().unwrap(), "--database", "main"],
    );
    // A line was skipped: the distinct exit status 3, and the summary says so.
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let summary = text(&out.stdout);
    assert!(summary.contains("imported 2500 documents"), "{summary}");
    assert!(summary.contains("in 3 batches"), "{summary}");
    assert!(
        summary.contains("1 bad lines skipped (INCOMPLETE"),
        "{summary}"
    );
    assert!(text(&out.stderr).contains("line 1236: invalid JSON"));
    assert!(text(&out.stderr).contains("exit status 3"));

    let exported = dir.path().join("out.jsonl");
    let out = run_ok(&dir, &["export", exported.to_str().unwrap()]);
    assert!(text(&out.stderr).contains("exported 2500 documents"));
    let back = std::fs::read_to_string(&exported).unwrap();
    let docs: Vec<Value> = back
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 2500);
    for (i, d) in docs.iter().enumerate() {
        assert_eq!(d["@metadata"]["@id"], format!("notes/{i:05}"));
        assert_eq!(d["@metadata"]["@collection"], "Notes");
        assert_eq!(d["n"], i);
        assert_eq!(d["text"], format!("note {i}"));
    }

    // The export imports as is into another database.
    let cfg = std::fs::read_to_string(dir.config()).unwrap();
    std::fs::write(
        dir.config(),
        format!("{cfg}\n[[database]]\nname = \"copy\"\n"),
    )
    .unwrap();
    let out = run(&dir, &["import", exported.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("choose one with --database"));
    run_ok(&dir, &["import", exported.to_str().unwrap(), "-d", "copy"]);
    let out = run_ok(&dir, &["export", "-d", "copy", "--prefix", "notes/0000"]);
    assert_eq!(text(&out.stdout).lines().count(), 10);
}

#[test]
fn dev_tls_serves_https_with_a_generated_certificate() {
    let dir = temp_dir("tls");
    run_ok(&dir, &["init", "--demo"]);
    let mut server = Server::start(&dir, &["--dev-tls"]);
    server.wait_log("certutil");
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    let cert = dir.path().join("hub-data").join("dev-tls-cert.pem");
    assert!(server.log().contains(&cert.display().to_string()));
    assert!(cert.exists());

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for host in ["127.0.0.1", "localhost"] {
        let url = HttpUrl::parse(&format!("https://{host}:{}", server.addr.port())).unwrap();
        let (code, body) = rt
            .block_on(hub_client::get(&url, "/healthz", Some(&cert)))
            .unwrap();
        assert_eq!(code, 200);
        assert!(text(&body).contains("\"ok\""));
    }
    // Not trusted without the certificate.
    let other = temp_dir("tls-other");
    let localhost = outpost_hub::tls::dev_cert_names("127.0.0.1:1".parse().unwrap());
    let (other_cert, _) = outpost_hub::tls::ensure_dev_cert(other.path(), &localhost).unwrap();
    let url = HttpUrl::parse(&format!("https://127.0.0.1:{}", server.addr.port())).unwrap();
    let err = rt
        .block_on(hub_client::get(&url, "/healthz", Some(&other_cert.cert)))
        .unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");
    // Plain HTTP to the TLS port gets no HTTP answer, and the hub carries on.
    let plain = try_http_get(server.addr, "/healthz");
    assert!(!matches!(plain, Ok((200, _))), "{plain:?}");

    // The status command trusts the data directory's dev certificate.
    let out = run_ok(&dir, &["status", "--url", &server.url]);
    assert!(text(&out.stdout).contains("2 configured"));
    let s: Value =
        serde_json::from_slice(&run_ok(&dir, &["status", "--url", &server.url, "--json"]).stdout)
            .unwrap();
    assert_eq!(s["tls"], true);

    // An export of the running hub goes over TLS too (the serving file names
    // the certificate), with the demo's admin token.
    let out = run_ok(&dir, &["export", "-d", "main", "-"]);
    assert!(
        text(&out.stderr).contains("exported by the running hub at https://"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn init_refuses_to_overwrite_and_status_needs_a_hub() {
    let dir = temp_dir("init");
    run_ok(&dir, &["init"]);
    let before = std::fs::read_to_string(dir.config()).unwrap();
    let out = run(&dir, &["init", "--demo"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("already exists"));
    assert_eq!(std::fs::read_to_string(dir.config()).unwrap(), before);

    // A free port with nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run(
        &dir,
        &["status", "--url", &format!("http://127.0.0.1:{port}")],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is the hub running?"),
        "{}",
        text(&out.stderr)
    );

    let out = run_ok(&dir, &["--help"]);
    assert!(text(&out.stdout).contains("Examples:"));
    let out = run(&dir, &["--config", "/nonexistent/x.toml", "serve"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("outpost-hub init"));
}

#[test]
fn status_finds_the_hub_where_serve_put_it() {
    let dir = temp_dir("status-where");
    run_ok(&dir, &["init", "--demo"]);
    // The configuration names a port nothing listens on; the hub is started
    // on another one, with TLS (as `run.sh --port` and `serve --dev-tls` do).
    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = std::fs::read_to_string(dir.config()).unwrap();
    std::fs::write(
        dir.config(),
        cfg.replace("127.0.0.1:4000", &format!("127.0.0.1:{unused}")),
    )
    .unwrap();
    let mut server = Server::start(&dir, &["--dev-tls"]);
    server.wait_log("certutil");
    assert!(server.url.starts_with("https://"), "{}", server.url);

    let out = run_ok(&dir, &["status"]);
    let shown = text(&out.stdout);
    assert!(
        shown.contains(&format!("at {} ", server.url))
            || shown.contains(&format!("at {},", server.url)),
        "{shown}"
    );
    let s: Value = serde_json::from_slice(&run_ok(&dir, &["status", "--json"]).stdout).unwrap();
    assert_eq!(s["tls"], true);

    // Stopped cleanly, it leaves no trace: status falls back to the
    // configuration's address, where nothing answers.
    server.terminate();
    assert!(!dir.path().join("hub-data").join("serving.json").exists());
    let out = run(&dir, &["status"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("127.0.0.1:{unused}")) && err.contains("is the hub running?"),
        "{err}"
    );
    let start = format!(
        "start it with `outpost-hub --config {} serve`",
        dir.config().display()
    );
    assert!(err.contains(&start), "{err}");
}
