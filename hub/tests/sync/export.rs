//! `export` of a running hub's database (`POST /admin/export`): one
//! snapshot, streamed while an edge goes on writing; a client that goes
//! away and a hub that stops end it, and the client can tell.

use super::*;
use std::sync::mpsc;

use outpost_hub::hub_client::{self, HttpUrl};
use outpost_hub::transfer::{self, ExportEnd, ExportRequest};

/// Documents in the hub before the export: about 22 MB of JSON lines, more
/// than the sockets' buffers and the export's queue hold, so that the last
/// ones are still unread at the hub while the test holds the stream.
const DOCS: usize = 20_000;

/// The headers (lowercase names) and the whole body of an export.
type Answer = (Vec<(String, String)>, Vec<u8>);

fn doc_id(i: usize) -> String {
    format!("notes/a-{i:05}")
}

/// An export asked with the product's streaming client, on a thread of its
/// own, held after the first piece of the answer: returns once that piece
/// came, with the thread (its result: the headers and the whole body) and
/// the sender that lets it read on.
async fn hold_export(
    port: u16,
    token: &'static str,
) -> (
    std::thread::JoinHandle<Result<Answer, String>>,
    mpsc::Sender<()>,
) {
    let (started_tx, started) = mpsc::channel();
    let (go, go_rx) = mpsc::channel::<()>();
    let thread = on_own_thread(move || async move {
        {
            let url = HttpUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
            let body = serde_json::to_vec(&ExportRequest {
                database: "main".into(),
                prefix: String::new(),
                end_line: true,
            })
            .unwrap();
            let mut all = Vec::new();
            let mut headers = Vec::new();
            let mut first = true;
            hub_client::admin_stream(
                &url,
                transfer::PATH,
                None,
                token,
                &body,
                "export",
                &mut |piece, h| {
                    if first {
                        first = false;
                        headers = h.to_vec();
                        started_tx.send(()).unwrap();
                        go_rx.recv_timeout(WAIT).unwrap();
                    }
                    all.extend_from_slice(piece);
                    Ok(())
                },
            )
            .await
            .map_err(|e| e.to_string())?;
            Ok((headers, all))
        }
    });
    tokio::task::spawn_blocking(move || started.recv_timeout(WAIT))
        .await
        .unwrap()
        .expect("the export's first bytes");
    (thread, go)
}

/// An edge updates the first and the last document and creates one while
/// the export of the running hub is held after its first bytes: the export
/// is the database as it was when it began (none of the three changes), its
/// count is the header's and the end line's; the next export has all three.
/// Without a snapshot the last document, read long after the update, would
/// come out updated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_hub_exports_one_snapshot_while_an_edge_writes() {
    let tmp = temp_dir("export");
    let mut hub = HubProc::new(
        tmp.join("hub"),
        free_port(),
        &edge_toml("alice", "a-token", &["notes/"], &["notes/"]),
    );
    hub.kill();
    let filler = "x".repeat(1_000);
    let mut lines = String::new();
    for i in 0..DOCS {
        lines.push_str(&format!(
            "{{\"id\":\"{}\",\"n\":{i},\"text\":\"{filler}\",\"@metadata\":{{\"@collection\":\"Notes\"}}}}\n",
            doc_id(i)
        ));
    }
    hub.import(&lines);
    drop(lines);
    hub.start();

    let laptop = open_edge_db(&tmp.join("laptop")).await;
    let c = client(&laptop, &hub.url(), "alice", "a-token");
    wait_live(&c).await;
    wait_until("the edge holds every document", || async {
        laptop.count().await.unwrap() == DOCS as u64
    })
    .await;

    let (export, go) = hold_export(hub.port, hub.proc.admin_token()).await;

    let last = doc_id(DOCS - 1);
    for id in [doc_id(0), last.clone()] {
        put(
            &laptop,
            None,
            &id,
            json!({"n": -1, "updated": true}),
            "Notes",
        )
        .await;
    }
    put(&laptop, None, "notes/b-new", json!({"n": -2}), "Notes").await;
    c.local_changed();
    wait_until("the hub has the edge's writes", || async {
        hub.documents() == DOCS as u64 + 1
    })
    .await;
    go.send(()).unwrap();
    let (headers, body) = joined(export).await.unwrap();

    let header = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(header(transfer::DOCUMENTS_HEADER), Some(DOCS.to_string()));
    assert_eq!(
        header("content-type").as_deref(),
        Some("application/x-ndjson")
    );
    let text = String::from_utf8(body).unwrap();
    let mut docs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let end: ExportEnd =
        serde_json::from_value(docs.pop().unwrap()[transfer::END_KEY].take()).unwrap();
    assert_eq!(end.documents, DOCS as u64);
    assert!(end.skipped.is_empty());
    assert_eq!(docs.len(), DOCS);
    for (i, d) in docs.iter().enumerate() {
        assert_eq!(d["@metadata"]["@id"], doc_id(i));
        assert_eq!(d["n"], i, "{} changed after the export began", doc_id(i));
    }
    assert!(
        hub.log().contains("export sent"),
        "the hub logs the export: {}",
        hub.log()
    );

    // The command line, with the hub still running: the edge's writes are in.
    let out = Command::new(BIN)
        .current_dir(&hub.dir)
        .args(["--config", "outpost-hub.toml", "export", "after.jsonl"])
        .env("OUTPOST_HUB_ADMIN_TOKEN", hub.proc.admin_token())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("exported by the running hub"), "{err}");
    assert!(
        err.contains(&format!("exported {} documents", DOCS + 1)),
        "{err}"
    );
    let after = std::fs::read_to_string(hub.dir.join("after.jsonl")).unwrap();
    let after: Vec<serde_json::Value> = after
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(after.len(), DOCS + 1);
    assert_eq!(after[0]["updated"], true);
    assert_eq!(after[DOCS - 1]["@metadata"]["@id"], last);
    assert_eq!(after[DOCS - 1]["updated"], true);
    assert_eq!(after[DOCS]["@metadata"]["@id"], "notes/b-new");

    // A client that goes away mid-export: the hub ends the export (and its
    // snapshot) and says so, and goes on serving.
    let port = hub.port;
    let token = hub.proc.admin_token();
    let gone = joined(on_own_thread(move || async move {
        let url = HttpUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let body = br#"{"database":"main"}"#;
        hub_client::admin_stream(
            &url,
            transfer::PATH,
            None,
            token,
            body,
            "export",
            &mut |_, _| Err(outpost_hub::error::HubError::Other("enough".into())),
        )
        .await
    }))
    .await;
    assert!(gone.unwrap_err().to_string().contains("enough"));
    hub.proc.wait_log("export cut short: the client went away");
    put(
        &laptop,
        Some(&c),
        "notes/b-later",
        json!({"n": -3}),
        "Notes",
    )
    .await;
    wait_until("the hub still takes the edge's writes", || async {
        hub.documents() == DOCS as u64 + 2
    })
    .await;

    // The hub asked to stop mid-export: the export ends (the hub says so)
    // and the client sees a stream cut short, not a whole one.
    let (export, go) = hold_export(hub.port, hub.proc.admin_token()).await;
    hub.proc.ask_to_stop();
    hub.proc
        .wait_log("export cut short: the hub is shutting down");
    go.send(()).unwrap();
    let cut = joined(export)
        .await
        .map(|(_, body)| format!("a whole answer of {} bytes", body.len()))
        .unwrap_err();
    assert!(cut.contains("before the answer's end"), "{cut}");
    c.stop().await;
}
