//! The `outpost` binary against real files in the situations an operator
//! meets: a second process on one database, a full disk, a read-only file
//! system, a damaged page, a torn write-ahead log.
//!
//! The full-disk and read-only cases mount a small tmpfs, which needs root (CI
//! and the developers' machines run as root). Run as another user they print
//! why they did not run; as root, a refused mount fails the test.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::{fails, ok, outpost, run, run_in, text};

use outpost::store::fault::FaultVfs;
use outpost::store::file::{FileStore, FileStoreOptions, wal_frame_len};
use outpost::store::{Commit, Durability, PAGE_SIZE, PageStore};
use outpost_testkit::TempDir;

/// A fresh directory under cargo's per-target temp dir, removed on drop.
fn temp_dir(name: &str) -> TempDir {
    TempDir::new(env!("CARGO_TARGET_TMPDIR"), &format!("storage-{name}"))
}

fn lens(db: &Path) -> Vec<(String, u64)> {
    ["outpost.db", "outpost.wal"]
        .iter()
        .map(|f| {
            let len = std::fs::metadata(db.join(f)).map(|m| m.len()).unwrap_or(0);
            (f.to_string(), len)
        })
        .collect()
}

/// A process that holds the database open: `outpost import -` waiting for
/// its standard input. The caller closes its stdin and waits for it.
#[allow(clippy::zombie_processes)] // on a panic here the test fails anyway
fn holder(db: &Path) -> Child {
    let mut child = outpost(db)
        .args(["import", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start outpost import");
    // One line, so the database is certainly open before the test goes on.
    let stdin = child.stdin.as_mut().unwrap();
    writeln!(stdin, r#"{{"@metadata":{{"@id":"held/1"}},"n":1}}"#).unwrap();
    stdin.flush().unwrap();
    let lock = db.join("LOCK");
    for _ in 0..200 {
        if std::fs::read_to_string(&lock).is_ok_and(|s| s.contains(&child.id().to_string())) {
            return child;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("the import never took the database lock");
}

#[test]
fn a_second_process_is_refused_while_one_holds_the_database() {
    let t = temp_dir("second");
    let db = t.join("db");
    ok(run(&db, &["put", "a", r#"{"v":1}"#]));
    let mut first = holder(&db);
    let pid = first.id().to_string();
    // Writers and readers alike are refused, naming the holder; nothing they
    // do touches the files.
    for args in [
        &["put", "b", r#"{"v":2}"#][..],
        &["delete", "a"][..],
        &["get", "a"][..],
        &["stats"][..],
        &["check"][..],
        &["export"][..],
    ] {
        let err = fails(run(&db, args));
        assert!(
            err.contains("in use") && err.contains(&pid) && err.contains("(locked)"),
            "{args:?}: {err}"
        );
    }
    drop(first.stdin.take());
    let status = first.wait().unwrap();
    assert!(status.success(), "{}", {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(first.stderr.as_mut().unwrap(), &mut s);
        s
    });
    // Released: both documents of the two writers' turns, nothing else.
    ok(run(&db, &["put", "b", r#"{"v":2}"#]));
    let out = ok(run(&db, &["scan"]));
    assert_eq!(out.lines().count(), 3, "{out}");
    ok(run(&db, &["check"]));
}

#[test]
fn concurrent_writers_never_lose_acknowledged_puts() {
    let t = temp_dir("loops");
    let db = t.join("db");
    ok(run(&db, &["put", "seed", "{}"]));
    // Two loops of puts on one directory: each put either succeeds (and must
    // be there at the end) or is refused as locked.
    let loops: Vec<_> = (0..2)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0..40 {
                    let id = format!("w{w}/{i}");
                    let o = run(&db, &["put", &id, r#"{"x":1}"#]);
                    if o.status.success() {
                        acked.push(id);
                    } else {
                        let e = text(&o.stderr);
                        assert!(e.contains("(locked)"), "{id}: {e}");
                    }
                }
                acked
            })
        })
        .collect();
    let acked: Vec<String> = loops.into_iter().flat_map(|h| h.join().unwrap()).collect();
    assert!(!acked.is_empty());
    for id in &acked {
        ok(run(&db, &["get", id]));
    }
    let out = ok(run(&db, &["scan"]));
    assert_eq!(out.lines().count(), acked.len() + 1, "{out}");
    ok(run(&db, &["check"]));
}

#[test]
fn a_damaged_page_is_reported_with_its_file_and_offset() {
    let t = temp_dir("corrupt");
    let db = t.join("db");
    for i in 0..50 {
        ok(run(
            &db,
            &[
                "put",
                &format!("doc/{i}"),
                r#"{"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#,
            ],
        ));
    }
    // Damage every page's checksum: whatever page is read first is caught.
    let path = db.join("outpost.db");
    let mut bytes = std::fs::read(&path).unwrap();
    let mut off = 8192;
    while off < bytes.len() {
        bytes[off] ^= 0x5A;
        off += PAGE_SIZE;
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = fails(run(&db, &["get", "doc/7"]));
    // "corrupt page N (<dir>/outpost.db at byte offset X): ..."
    let page: u64 = err
        .split("corrupt page ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no page number in: {err}"));
    let want = format!(
        "outpost.db at byte offset {}",
        8192 + (page - 1) * PAGE_SIZE as u64
    );
    assert!(err.contains(&want), "want {want:?} in: {err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
}

#[test]
fn check_reports_a_dropped_wal_tail() {
    let t = temp_dir("tail");
    let db = t.join("db");
    // Build the files in memory (a crash after one durable commit, with a
    // second commit whose last frame never fully reached the disk), then lay
    // them out as real files.
    let vfs = FaultVfs::new();
    let opts = FileStoreOptions {
        vfs: std::sync::Arc::new(vfs.clone()),
        ..FileStoreOptions::default()
    };
    {
        let store = FileStore::open(&db, opts.clone()).unwrap();
        let db_handle = futures::executor::block_on(outpost::Database::open(
            store,
            outpost::db::OpenOptions::default(),
        ))
        .unwrap();
        futures::executor::block_on(db_handle.put("kept", serde_json::json!({"v": 1}))).unwrap();
        let store = db_handle.store();
        let page = std::sync::Arc::new(vec![7u8; PAGE_SIZE]);
        futures::executor::block_on(store.commit(Commit {
            pages: vec![(900, page.clone()), (901, page)],
            meta: b"not a real meta record".to_vec(),
            durability: Durability::Durable,
        }))
        .unwrap();
        // The image as the crash left it: the dropped commit's last frame torn.
        let mut files = vfs.current_files();
        let wal = files.get_mut(&db.join("outpost.wal")).unwrap();
        // Frames follow each other from offset 0, each as long as its
        // header says; the log ends where no frame header follows.
        let (mut at, mut last) = (0, 0);
        while let Some(len) = wal_frame_len(&wal[at..]) {
            (last, at) = (at, at + len);
        }
        // A byte of the commit frame's meta record.
        wal[last + 64 + 1] ^= 0xFF;
        std::fs::create_dir_all(&db).unwrap();
        for (path, bytes) in files {
            std::fs::write(&path, bytes).unwrap();
        }
        // Dropping the handle checkpoints into the in-memory files only.
    }
    let out = run(&db, &["check"]);
    let err = text(&out.stderr);
    let report = ok(out);
    assert!(
        // Two whole pages (4,160 bytes each) and a commit frame storing the
        // 22-byte meta record (88 bytes).
        err.contains("warning: the write-ahead log ends in 8408 bytes (3 frames"),
        "{err}"
    );
    assert!(report.contains("\"dropped_tail\""), "{report}");
    let got = ok(run(&db, &["get", "kept"]));
    assert!(got.contains("\"v\": 1"), "{got}");
    // check is read-only: the tail is still there for the next look ...
    let err = text(&run(&db, &["check"]).stderr);
    assert!(
        err.contains("warning: the write-ahead log ends in"),
        "{err}"
    );
    // ... until a writer opens the database and starts a new WAL generation.
    ok(run(&db, &["put", "more", "{}"]));
    let err = text(&ok_output(run(&db, &["check"])).stderr);
    assert!(!err.contains("warning"), "{err}");
}

#[track_caller]
fn ok_output(o: Output) -> Output {
    assert!(o.status.success(), "{}", text(&o.stderr));
    o
}

/// A small tmpfs mounted for one test; unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` (with the reason printed) when not running as root.
    fn mount(name: &str, bytes: u64) -> Option<Tmpfs> {
        let uid = Command::new("id").arg("-u").output().ok()?;
        if text(&uid.stdout).trim() != "0" {
            println!("not run: mounting a tmpfs needs root");
            return None;
        }
        let t = temp_dir(name);
        let dir = t.path().to_path_buf();
        std::mem::forget(t);
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}")])
            .arg("tmpfs")
            .arg(&dir)
            .output()
            .expect("run mount");
        assert!(o.status.success(), "mount tmpfs: {}", text(&o.stderr));
        Some(Tmpfs(dir))
    }

    fn remount(&self, opt: &str) {
        let o = Command::new("mount")
            .args(["-o", &format!("remount,{opt}")])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(o.status.success(), "remount {opt}: {}", text(&o.stderr));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Fills the file system holding `dir` with a file `dir/filler` until a write
/// fails for lack of space.
fn fill(dir: &Path) {
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let block = vec![0xA5u8; 4096];
    loop {
        match f.write_all(&block) {
            Ok(()) => {}
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC, got {e}");
                break;
            }
        }
    }
    let _ = f.sync_all();
}

#[test]
fn a_full_disk_and_a_read_only_file_system_keep_the_data_readable() {
    let Some(fs) = Tmpfs::mount("full", 16 << 20) else {
        return;
    };
    let db = fs.0.join("db");
    let big = format!(r#"{{"blob":"{}"}}"#, "z".repeat(200_000));
    ok(run(&db, &["put", "a", r#"{"v":1}"#]));
    fill(&fs.0);

    // A put on the full disk: its WAL space was allocated earlier, so it
    // commits; the checkpoint of the close needs new data-file pages and
    // fails. The put is reported as committed, with a separate warning.
    let o = run_in(&db, &["put", "big", "-"], &big);
    let err = text(&o.stderr);
    let out = ok(o);
    assert!(out.contains("\"etag\""), "{out}");
    assert!(
        err.contains("warning: the write was committed durably, but closing the database failed"),
        "{err}"
    );

    // Reads, check and export work on the full disk (read-only open), and
    // see the write that only lives in the WAL.
    let before = lens(&db);
    let got = ok(run(&db, &["get", "big"]));
    assert!(got.contains("zzzz"), "get big");
    ok(run(&db, &["get", "a"]));
    ok(run(&db, &["check"]));
    let exported = ok(run(&db, &["export"]));
    assert_eq!(exported.lines().count(), 2, "{exported}");
    ok(run(&db, &["stats"]));
    assert_eq!(lens(&db), before, "a read-only open changed the files");

    // A write cannot open (its recovery checkpoint needs space): a clear
    // error, and the files are no longer than they were.
    let err = fails(run(&db, &["put", "c", "{}"]));
    assert!(
        err.contains("No space left") || err.contains("space"),
        "{err}"
    );
    assert_eq!(lens(&db), before, "a failed open grew the files");

    // A read-only file system: the same reads work.
    fs.remount("ro");
    assert!(ok(run(&db, &["get", "big"])).contains("zzzz"));
    ok(run(&db, &["check"]));
    assert_eq!(ok(run(&db, &["export"])).lines().count(), 2);
    let err = fails(run(&db, &["put", "c", "{}"]));
    assert!(err.to_lowercase().contains("read-only"), "{err}");

    // Space comes back: writes work again and nothing was lost.
    fs.remount("rw");
    std::fs::remove_file(fs.0.join("filler")).unwrap();
    ok(run(&db, &["put", "c", "{}"]));
    let all = ok(run(&db, &["scan"]));
    assert_eq!(all.lines().count(), 3, "{all}");
    ok(run(&db, &["check"]));
}
