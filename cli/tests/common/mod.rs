//! Helpers shared by the `outpost` binary's test files (`cli.rs`,
//! `storage.rs`): running the binary on a database directory and checking
//! how it exited. Each test file uses a part of them.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// `outpost --db <db>`, with `OUTPOST_DB` unset.
pub fn outpost(db: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_outpost"));
    c.arg("--db").arg(db).env_remove("OUTPOST_DB");
    c
}

/// Runs `outpost --db <db> args...` with nothing on standard input.
pub fn run(db: &Path, args: &[&str]) -> Output {
    outpost(db)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run outpost")
}

/// Runs `outpost --db <db> args...` with `input` on standard input.
pub fn run_in(db: &Path, args: &[&str], input: &str) -> Output {
    let mut child = outpost(db)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start outpost");
    {
        let mut i = child.stdin.take().unwrap();
        // The command may exit before reading its input; ignore EPIPE.
        let _ = i.write_all(input.as_bytes());
    }
    child.wait_with_output().expect("wait for outpost")
}

/// Bytes as text (lossy).
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Its standard output.
pub fn stdout(o: &Output) -> String {
    text(&o.stdout)
}

/// Its standard error.
pub fn stderr(o: &Output) -> String {
    text(&o.stderr)
}

/// Asserts success and returns stdout.
#[track_caller]
pub fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "expected success, got {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Asserts failure and returns stderr.
#[track_caller]
pub fn fails(o: Output) -> String {
    assert!(
        !o.status.success(),
        "expected failure\nstdout: {}\nstderr: {}",
        stdout(&o),
        stderr(&o)
    );
    stderr(&o)
}
