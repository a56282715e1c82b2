//! `scripts/run.sh`, the main command, run for real by bash on a copy of the
//! repository's layout in a temporary directory: `cargo`, the wasm build
//! and the `outpost` CLI are stubs that record how they were called (no
//! builds), and `outpost-hub` is the real binary behind a wrapper that
//! records its arguments and stands in for `serve` (so no test starts a hub
//! on a fixed port).

use std::path::Path;
use std::process::{Command, Output, Stdio};

use outpost_testkit::TempDir;
use outpost_testkit::hub::HubProcess;

const BIN: &str = env!("CARGO_BIN_EXE_outpost-hub");

/// A fake repository root with the real `scripts/run.sh`, removed on drop.
struct Root(TempDir);

fn write_exe(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

impl Root {
    fn new(tag: &str) -> Root {
        let root = TempDir::new(std::env::temp_dir(), &format!("outpost-run-sh-{tag}"));
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        std::fs::create_dir_all(root.join("scripts")).unwrap();
        std::fs::copy(repo.join("scripts/run.sh"), root.join("scripts/run.sh")).unwrap();
        std::fs::write(root.join("scripts/sample.jsonl"), "{\"id\":\"a/1\"}\n").unwrap();
        let log = root.join("calls.log");
        let log = log.display();
        write_exe(
            &root.join("scripts/build-wasm.sh"),
            &format!("#!/bin/sh\necho \"build-wasm $*\" >> '{log}'\n"),
        );
        write_exe(
            &root.join("scripts/ensure-build-tools.sh"),
            &format!("#!/bin/sh\necho \"ensure-build-tools $*\" >> '{log}'\n"),
        );
        write_exe(
            &root.join("bin/cargo"),
            &format!("#!/bin/sh\necho \"cargo $*\" >> '{log}'\n"),
        );
        write_exe(
            &root.join("target/release/outpost"),
            &format!("#!/bin/sh\necho \"outpost $*\" >> '{log}'\n"),
        );
        write_exe(
            &root.join("target/release/outpost-hub"),
            &format!(
                "#!/bin/sh\necho \"outpost-hub $*\" >> '{log}'\ncase \" $* \" in *\" serve \"*) exit 0 ;; esac\nexec '{BIN}' \"$@\"\n"
            ),
        );
        // A built wasm package, newer than the (absent) sources.
        for f in [
            "pkg-js/dist/web/outpost_wasm_bg.wasm",
            "pkg-js/dist/nodejs/outpost_wasm_bg.wasm",
            "pkg-js/src/core.js",
            "pkg-js/src/turns.js",
            "pkg-js/src/indexes.js",
            "pkg-js/src/web.js",
            "pkg-js/src/remote.js",
        ] {
            std::fs::create_dir_all(root.join(f).parent().unwrap()).unwrap();
            std::fs::write(root.join(f), "").unwrap();
        }
        Root(root)
    }

    fn run(&self, args: &[&str]) -> Output {
        let path = format!(
            "{}:{}",
            self.0.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new("bash")
            .arg(self.0.join("scripts/run.sh"))
            .args(args)
            .current_dir(self.0.path())
            .env("PATH", path)
            .env("CARGO_TARGET_DIR", self.0.join("target"))
            .env_remove("OUTPOST_DEMO_DIR")
            .env_remove("OUTPOST_DB")
            .env_remove("OUTPOST_HUB_CONFIG")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(self.0.join("calls.log")).unwrap_or_default()
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn cli_without_arguments_runs_its_demo_and_stops_there() {
    let root = Root::new("cli");
    let o = root.run(&["cli"]);
    assert!(o.status.success(), "{}", text(&o));
    let calls = root.calls();
    assert!(calls.contains("outpost import"), "{calls}");
    assert!(calls.contains("outpost check"), "{calls}");
    // Nothing of the hub's path ran after the CLI demo.
    assert!(!calls.contains("build-wasm"), "{calls}");
    assert!(!calls.contains("outpost-hub"), "{calls}");
    assert!(!calls.contains("-p outpost-hub"), "{calls}");
}

#[test]
fn hints_name_commands_that_exist() {
    let root = Root::new("hints");
    let o = root.run(&["status"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("./scripts/run.sh hub status"), "{err}");
    assert!(!err.contains("cli status"), "{err}");

    let o = root.run(&["get", "a/1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("./scripts/run.sh cli get a/1"), "{err}");

    let o = root.run(&["--bogus"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("see ./scripts/run.sh --help"), "{err}");
    assert!(!err.contains("cli --bogus"), "{err}");
}

#[test]
fn the_demo_does_not_tell_to_start_the_hub_it_is_starting() {
    let root = Root::new("demo");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let o = root.run(&["--port", &port]);
    assert!(o.status.success(), "{}", text(&o));
    let all = text(&o);
    assert!(!all.contains("Start the hub with"), "{all}");
    assert!(all.contains("Writing the demo configuration"), "{all}");
    let calls = root.calls();
    assert!(
        calls.contains(&format!("serve --listen 127.0.0.1:{port}")),
        "{calls}"
    );
    // The build tools are checked before the hub is built.
    let tools = calls
        .find("ensure-build-tools")
        .expect("build tools checked");
    let build = calls.find("-p outpost-hub").expect("hub built");
    assert!(tools < build, "{calls}");
    assert!(root.0.join("outpost-hub-demo/outpost-hub.toml").exists());
}

#[test]
fn hub_takes_dir_and_status_finds_the_running_hub() {
    let root = Root::new("hub");
    let demo = root.0.join("other-demo");
    std::fs::create_dir_all(&demo).unwrap();
    let o = Command::new(BIN)
        .current_dir(&demo)
        .args(["--config", "outpost-hub.toml", "init", "--demo"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    // The configuration's port has nothing on it; the hub runs elsewhere
    // (as after `./scripts/run.sh --port N`).
    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg_path = demo.join("outpost-hub.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    std::fs::write(
        &cfg_path,
        cfg.replace("127.0.0.1:4000", &format!("127.0.0.1:{unused}")),
    )
    .unwrap();
    let hub = HubProcess::start(BIN, &demo, &["--listen", "127.0.0.1:0"]);

    for args in [
        &["hub", "--dir", "other-demo", "status"][..],
        &["--dir", "other-demo", "hub", "status"][..],
    ] {
        let o = root.run(args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains(&format!("at {}", hub.url())),
            "{args:?}: {out}"
        );
    }

    // No hub running: the hint is this script, not a bare `outpost-hub serve`.
    drop(hub);
    let o = root.run(&["hub", "--dir", "other-demo", "status"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("is the hub running? start it with `./scripts/run.sh --dir other-demo`"),
        "{err}"
    );

    // No configuration there: a clear error, not outpost-hub's.
    let o = root.run(&["hub", "--dir", "nowhere", "status"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no demo configuration nowhere/outpost-hub.toml"),
        "{err}"
    );
}
