//! `import` into a running hub's database (`POST /admin/import`): the
//! command line sends the lines to the hub, which imports them as they
//! arrive while an edge is live (the edge receives them); one import per
//! database at a time; an upload cut short, a `--strict` stop and a hub
//! asked to stop mid-import each end it with what was committed kept and
//! the next import possible.

use super::*;
use std::io::Read;
use std::sync::mpsc;

use outpost_hub::hub_client::{self, HttpUrl};
use outpost_hub::import_live::{self, ImportEnd, ImportQuery};

fn lines(prefix: &str, n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!(
            "{{\"id\":\"notes/{prefix}-{i:05}\",\"n\":{i},\"@metadata\":{{\"@collection\":\"Notes\"}}}}\n"
        ));
    }
    s
}

/// An input that hands out `head`, then waits for a word on its channel:
/// `Ok(())` ends it (EOF), `Err(())` fails it (a read error: the client
/// gives up mid-body).
struct Held {
    head: std::io::Cursor<Vec<u8>>,
    go: mpsc::Receiver<std::result::Result<(), ()>>,
}

impl Read for Held {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.head.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        match self.go.recv_timeout(WAIT) {
            Ok(Ok(())) => Ok(0),
            _ => Err(std::io::Error::other("the test ended the input")),
        }
    }
}

/// An upload with the product's client on a thread of its own, whose input
/// is `head` and then held: returns once the hub has taken it (`import
/// started` in its log), with the thread (the answer's end, or the error)
/// and the sender that ends the input.
async fn hold_import(
    hub: &HubProc,
    head: String,
) -> (
    std::thread::JoinHandle<std::result::Result<ImportEnd, String>>,
    mpsc::Sender<std::result::Result<(), ()>>,
) {
    let (go, go_rx) = mpsc::channel();
    let port = hub.port;
    let token = hub.proc.admin_token();
    let started = hub.log().matches("import started").count();
    let thread = on_own_thread(move || async move {
        {
            let url = HttpUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
            let query = ImportQuery {
                database: "main".into(),
                batch: Some(100),
                ..ImportQuery::default()
            };
            let mut input = Held {
                head: std::io::Cursor::new(head.into_bytes()),
                go: go_rx,
            };
            let mut answer = Vec::new();
            hub_client::admin_upload(
                &url,
                &format!("{}?{}", import_live::PATH, query.to_query()),
                (None, token),
                &mut input,
                &mut |_| {},
                "import",
                &mut |piece, _| {
                    answer.extend_from_slice(piece);
                    Ok(())
                },
            )
            .await
            .map_err(|e| e.to_string())?;
            let mut v: serde_json::Value =
                serde_json::from_slice(&answer).map_err(|e| e.to_string())?;
            serde_json::from_value(v[import_live::END_KEY].take()).map_err(|e| e.to_string())
        }
    });
    wait_until("the hub takes the upload", || {
        let n = hub.log().matches("import started").count();
        async move { n > started }
    })
    .await;
    (thread, go)
}

/// `outpost-hub import` with the hub running and an edge live: the hub
/// imports the lines (bad ones reported by number, exit status 3 as on a
/// stopped hub) and the edge receives every document; no token, a wrong
/// one: refused, nothing imported. A second import while one is under way:
/// 409. An upload cut short: the hub says so and what it committed stays;
/// `--strict`: stopped at the bad line, exit 1. The hub asked to stop
/// mid-import: it ends the import and exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_hub_imports_while_an_edge_is_live() {
    let tmp = temp_dir("import");
    let mut hub = HubProc::new(
        tmp.join("hub"),
        free_port(),
        &edge_toml("alice", "a-token", &["notes/"], &["notes/"]),
    );
    let laptop = open_edge_db(&tmp.join("laptop")).await;
    let c = client(&laptop, &hub.url(), "alice", "a-token");
    wait_live(&c).await;

    let mut input = lines("a", 3000);
    input.insert_str(0, "{not json\n");
    std::fs::write(hub.dir.join("in.jsonl"), &input).unwrap();
    let dir = hub.dir.clone();
    let import = |token: Option<&str>, args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(&dir)
            .args(["--config", "outpost-hub.toml", "import"])
            .args(args)
            .env_remove("OUTPOST_HUB_ADMIN_TOKEN");
        if let Some(t) = token {
            cmd.args(["--admin-token", t]);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let token = hub.proc.admin_token();

    // Refused: nothing imported.
    let (code, _, err) = import(None, &["in.jsonl"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("needs its admin token"), "{err}");
    let (code, _, err) = import(Some("wrong"), &["in.jsonl"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("refused the import (HTTP 401)"), "{err}");
    assert_eq!(hub.documents(), 0);

    let (code, out, err) = import(Some(token), &["in.jsonl", "--batch", "500"]);
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(err.contains("sent to the running hub"), "{err}");
    assert!(err.contains("line 1: invalid JSON"), "{err}");
    assert!(
        out.contains("imported 3000 documents from 3001 lines") && out.contains("in 6 batches"),
        "{out}"
    );
    assert_eq!(hub.documents(), 3000);
    wait_until("the edge receives the imported documents", || async {
        laptop.count().await.unwrap() == 3000
    })
    .await;
    let d = laptop.get("notes/a-02999").await.unwrap().unwrap();
    assert_eq!(
        (d.body["n"].clone(), d.meta.collection.as_deref()),
        (json!(2999), Some("Notes"))
    );
    assert!(hub.log().contains("import done"), "{}", hub.log());

    // `--strict`: stops at the bad line (the batch under way not written).
    std::fs::write(
        hub.dir.join("strict.jsonl"),
        format!("{}[1]\n{}", lines("s", 150), lines("t", 10)),
    )
    .unwrap();
    let (code, _, err) = import(Some(token), &["strict.jsonl", "--strict", "--batch", "100"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("import stopped: imported 100 documents"),
        "{err}"
    );
    assert!(err.contains("line 151: "), "{err}");
    assert_eq!(hub.documents(), 3100);
    // Stopped early in a file larger than the sockets hold: the command,
    // still sending, gets the hub's answer (the hub reads the rest and
    // drops it), not a connection closed under its upload.
    std::fs::write(
        hub.dir.join("strict-big.jsonl"),
        format!("{}{{\"id\":7}}\n{}", lines("u", 1), lines("v", 80_000)),
    )
    .unwrap();
    let (code, _, err) = import(Some(token), &["strict-big.jsonl", "--strict"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("import stopped: imported 0 documents"),
        "{err}"
    );
    assert!(err.contains("line 2: "), "{err}");
    assert_eq!(hub.documents(), 3100);

    // One import at a time: a second one while the first is held open.
    let (held, go) = hold_import(&hub, lines("h", 250)).await;
    let (code, _, err) = import(Some(token), &["in.jsonl"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("(HTTP 409)") && err.contains("under way"),
        "{err}"
    );
    go.send(Ok(())).unwrap();
    let end = joined(held).await.unwrap();
    assert_eq!(
        (end.summary.imported, end.summary.batches, end.stopped),
        (250, 3, None)
    );
    assert_eq!(hub.documents(), 3350);

    // An upload cut short: the hub ends the import, says so, keeps the
    // batches it committed (the 250 lines it had are 2 batches of 100 and
    // 50 waiting), and takes the next import.
    let (held, go) = hold_import(&hub, lines("c", 250)).await;
    wait_until("the hub commits what it has", || async {
        hub.documents() == 3550
    })
    .await;
    go.send(Err(())).unwrap();
    let err = joined(held).await.unwrap_err();
    assert!(err.contains("read the input"), "{err}");
    hub.proc
        .wait_log("import stopped: the upload was cut short");
    assert_eq!(hub.documents(), 3550);
    let (code, out, err) = import(Some(token), &["in.jsonl"]);
    assert_eq!(code, Some(3), "{out}{err}");

    // The hub asked to stop mid-import: it ends the import and exits.
    let (held, go) = hold_import(&hub, lines("d", 10)).await;
    hub.proc.ask_to_stop();
    hub.proc
        .wait_log("import stopped: the hub is shutting down");
    let _ = go.send(Ok(()));
    let _ = joined(held).await;
    c.stop().await;
}
