//! The audit trail with a real hub process (`docs/audit.md`): two edges
//! push, one is refused, the configuration revokes one and enrolls
//! another; with the hub stopped, `outpost-hub audit verify` passes,
//! `audit export --edge` lists exactly the expected entries, `audit who`
//! names the identity and device that wrote a version; then a byte of the
//! database file is flipped and `audit verify` names what is damaged.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use outpost::store::file::{DATA_FILE, FileStore, FileStoreOptions};
use outpost::sync::{EdgeConfig, SyncStatus};
use outpost::{Batch, Database, OpenOptions, PutOptions};
use outpost_client::{ClientOptions, SyncHandle, client_rejections, spawn_edge};
use outpost_testkit::hub::{HubProcess, free_port, wait_until};
use outpost_testkit::{TempDir, key_edge_toml, keys};

/// One `[[edge]]` with the identity's key ([`keys::key_for`]; the token is
/// not used): the audited pushes are signed.
fn edge_toml(name: &str, _token: &str, read: &[&str], write: &[&str]) -> String {
    key_edge_toml(name, read, write)
}
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_outpost-hub");
const WAIT: Duration = Duration::from_secs(60);

type Db = Database<FileStore>;

async fn open_edge_db(dir: &Path) -> Db {
    let store = FileStore::open(dir, FileStoreOptions::default()).unwrap();
    Database::open(store, OpenOptions::default()).await.unwrap()
}

fn edge_cfg(identity: &str, _token: &str) -> EdgeConfig {
    let mut e = EdgeConfig::with_key("main", identity, keys::public_key(identity));
    e.heartbeat_ms = 2_000;
    e.timeout_ms = 6_000;
    e
}

fn client(db: &Db, url: &str, identity: &str, token: &str) -> SyncHandle {
    let opts = ClientOptions {
        url: url.into(),
        edge: edge_cfg(identity, token),
        ca_cert: None,
        signer: Some(keys::signer(identity)),
        client_cert: None,
    };
    spawn_edge(db.clone(), opts, None)
}

async fn wait_live(c: &SyncHandle) {
    assert!(
        c.wait_for(WAIT, |s| matches!(s, SyncStatus::Live)).await,
        "never live: {:?}",
        c.status()
    );
}

fn opts() -> PutOptions {
    PutOptions {
        collection: Some("Notes".into()),
        ..Default::default()
    }
}

/// `outpost-hub --config <dir>/outpost-hub.toml <args>`.
fn hub_cmd(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .arg("--config")
        .arg(dir.join("outpost-hub.toml"))
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The document `id` as the running hub's export shows it.
fn export_docs(dir: &Path, token: &str, id: &str) -> Value {
    let out = hub_cmd(dir, &["export", "--prefix", id, "--admin-token", token]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_str(text(&out.stdout).lines().next().unwrap()).unwrap()
}

/// `audit export <args>` as parsed JSON lines.
fn export(dir: &Path, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit", "export"];
    all.extend_from_slice(args);
    let out = hub_cmd(dir, &all);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `lines` without the empty pushes (checkpoint moves) before the first
/// refusal.
fn without_early_moves(lines: &[Value]) -> Vec<Value> {
    let refused_at = lines.iter().position(|l| l["kind"] == "push_refused");
    lines
        .iter()
        .enumerate()
        .filter(|(i, l)| {
            !(l["kind"] == "push_accepted"
                && l["record"]["docs"] == json!([])
                && refused_at.is_some_and(|r| *i < r))
        })
        .map(|(_, l)| l.clone())
        .collect()
}

fn kinds(lines: &[Value]) -> Vec<&str> {
    lines.iter().map(|l| l["kind"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_refusals_and_scope_changes_are_audited_and_verified() {
    let tmp = TempDir::new(std::env::temp_dir(), "outpost-audit-test");
    let dir: PathBuf = tmp.join("hub");
    std::fs::create_dir_all(&dir).unwrap();
    let alice_toml = edge_toml("alice", "a-token", &["notes/"], &["notes/"]);
    let bob_toml = edge_toml("bob", "b-token", &["notes/"], &["notes/bob/"]);
    let head = format!(
        "listen = \"127.0.0.1:{}\"\ndata_dir = \"data\"\n\n[[database]]\nname = \"main\"\n\n",
        free_port()
    );
    let cfg_path = dir.join("outpost-hub.toml");
    std::fs::write(&cfg_path, format!("{head}{alice_toml}{bob_toml}")).unwrap();
    let hub = HubProcess::start(BIN, &dir, &[]);
    let url = format!("ws://{}/sync", hub.addr());

    let adb = open_edge_db(&tmp.join("alice")).await;
    let bdb = open_edge_db(&tmp.join("bob")).await;
    let ca = client(&adb, &url, "alice", "a-token");
    let cb = client(&bdb, &url, "bob", "b-token");
    wait_live(&ca).await;
    wait_live(&cb).await;

    // Alice: one commit of two documents (one push).
    let mut b = Batch::new();
    b.put_with("notes/a1", json!({"t": "alice 1"}), opts());
    b.put_with("notes/a2", json!({"t": "alice 2"}), opts());
    adb.commit(b).await.unwrap();
    ca.local_changed();
    // Bob: an accepted document, then one outside his write prefixes.
    bdb.put_with("notes/bob/1", json!({"t": "bob"}), opts())
        .await
        .unwrap();
    cb.local_changed();
    wait_until("alice gets bob's note and bob gets alice's", || async {
        adb.get("notes/bob/1").await.unwrap().is_some()
            && bdb.get("notes/a2").await.unwrap().is_some()
    })
    .await;
    bdb.put_with("notes/x", json!({"t": "not bob's"}), opts())
        .await
        .unwrap();
    cb.local_changed();
    let bob_edge = edge_cfg("bob", "b-token");
    wait_until("bob's refusal is recorded", || async {
        client_rejections(&bdb, &bob_edge).await.unwrap().len() == 1
    })
    .await;
    // The edge then moves its push checkpoint past the refused change with
    // an empty push (an accepted batch too: it sets the checkpoint).
    wait_until("bob's checkpoint push is acknowledged", || async {
        cb.counters()
            .pushes_acked
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    })
    .await;

    // While the hub runs, the audit commands ask it, which needs its admin
    // token: this hub has none, and the command says so.
    let out = hub_cmd(&dir, &["audit", "verify"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("admin token"),
        "{}",
        text(&out.stderr)
    );

    // Revoke bob and enroll carol, live.
    let carol_toml = edge_toml("carol", "c-token", &["notes/"], &[]);
    std::fs::write(&cfg_path, format!("{head}{alice_toml}{carol_toml}")).unwrap();
    assert!(
        cb.wait_for(
            WAIT,
            |s| matches!(s, SyncStatus::Error { code, .. } if code == "unauthorized")
        )
        .await,
        "{:?}",
        cb.status()
    );
    wait_until("both access changes are audited", || async {
        hub.log().matches("audit: edge access changed").count() == 2
    })
    .await;
    ca.stop().await;
    cb.stop().await;
    let log = hub.terminate();

    // The chain verifies.
    let out = hub_cmd(&dir, &["audit", "verify"]);
    assert!(out.status.success(), "{}\n{log}", text(&out.stderr));
    let stdout = text(&out.stdout);
    // Everything, in order.
    let all = export(&dir, &[]);
    // Bob may have moved his push checkpoint past alice's notes (received
    // before his refused write) with an empty push of its own: timing.
    let extra = all.len() - without_early_moves(&all).len();
    assert!(
        stdout.contains(&format!(
            "database main: {} audit entries verified ({} signatures of batches, purge receipts and hub writes",
            6 + extra,
            3 + extra
        )),
        "{stdout}{all:#?}"
    );
    assert_eq!(all.len(), 6 + extra, "{all:#?}");
    for (i, l) in all.iter().enumerate() {
        assert_eq!(l["seq"], i as u64 + 1);
        assert_eq!(l["database"], "main");
    }
    let pushes: Vec<&Value> = all
        .iter()
        .filter(|l| l["kind"] == "push_accepted")
        .collect();
    assert_eq!(pushes.len(), 3 + extra, "{all:#?}");

    // Alice: exactly her one push, with a manifest of hashes, not bodies.
    let a = export(&dir, &["--edge", "alice"]);
    assert_eq!(kinds(&a), ["push_accepted"], "{a:#?}");
    let rec = &a[0]["record"];
    assert_eq!(rec["identity"], "alice");
    assert_eq!(rec["device"], adb.db_id().to_string());
    // Signed by alice's key: the key, the signature, her chain's first link.
    let alice_key = keys::public_key("alice");
    assert_eq!(rec["key_id"], alice_key.fingerprint());
    assert_eq!(rec["public_key"], alice_key.to_text());
    assert_eq!(rec["signature"].as_str().unwrap().len(), 128);
    assert_eq!(
        (rec["seq"].as_u64(), rec["prev"].as_str()),
        (Some(1), Some("0".repeat(64).as_str()))
    );
    let ids: Vec<&str> = rec["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["notes/a1", "notes/a2"]);
    assert_eq!(
        rec["docs"][0]["versions"][0]["body_sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    assert!(
        !a[0].to_string().contains("alice 1"),
        "no body in the trail"
    );

    // Bob: his accepted push, his refusal, his checkpoint push (no
    // documents), his revocation.
    let b = without_early_moves(&export(&dir, &["--edge", "bob"]));
    assert_eq!(
        kinds(&b),
        [
            "push_accepted",
            "push_refused",
            "push_accepted",
            "scope_change"
        ],
        "{b:#?}"
    );
    assert_eq!(b[2]["record"]["docs"], json!([]));
    assert_eq!(b[2]["record"]["upto"], b[1]["record"]["upto"]);
    assert_eq!(b[0]["record"]["docs"][0]["id"], "notes/bob/1");
    let refusal = &b[1]["record"];
    assert_eq!(refusal["code"], "write_denied");
    assert_eq!(refusal["id"], "notes/x");
    assert_eq!(refusal["device"], bdb.db_id().to_string());
    let revoked = &b[3]["record"];
    assert_eq!(revoked["change"], "revoked");
    assert_eq!(revoked["old_write"], json!(["notes/bob/"]));
    assert_eq!(revoked["new_read"], Value::Null);

    // Carol: enrolled, read-only.
    let c = export(&dir, &["--edge", "carol"]);
    assert_eq!(kinds(&c), ["scope_change"]);
    assert_eq!(c[0]["record"]["change"], "enrolled");
    assert_eq!(c[0]["record"]["new_write"], json!([]));

    // By id (case-insensitive), and by time.
    let x = export(&dir, &["--id", "NOTES/X"]);
    assert_eq!(kinds(&x), ["push_refused"]);
    let since = all[3]["time_ms"].as_i64().unwrap();
    let later = export(&dir, &["--since", &since.to_string()]);
    assert!(
        later
            .iter()
            .all(|l| l["time_ms"].as_i64().unwrap() >= since)
    );
    assert!(later.len() >= 3, "{later:#?}");
    assert!(export(&dir, &["--since", "2999-01-01T00:00:00Z"]).is_empty());
    let out = hub_cmd(&dir, &["audit", "export", "--since", "yesterday"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("RFC 3339"),
        "{}",
        text(&out.stderr)
    );

    // Who wrote bob's note, and alice's version of a1.
    let out = hub_cmd(&dir, &["audit", "who", "notes/bob/1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let who = text(&out.stdout);
    assert!(who.contains("written by identity bob"), "{who}");
    assert!(who.contains(&format!("device {}", bdb.db_id())), "{who}");
    let bob_key = keys::public_key("bob");
    assert!(
        who.contains(&format!(
            "key: {} (signed batch 1; public key {})",
            bob_key.fingerprint(),
            bob_key.to_text()
        )),
        "{who}"
    );
    let a1 = adb.get("notes/a1").await.unwrap().unwrap();
    let cv = a1.meta.change_vector.to_text();
    let out = hub_cmd(&dir, &["audit", "who", "notes/a1", &format!("--cv={cv}")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let who = text(&out.stdout);
    assert!(who.contains("written by identity alice"), "{who}");
    assert!(who.contains(&format!("device {}", adb.db_id())), "{who}");
    // A version no push carried, and a document never pushed.
    let other = format!("{}:99", adb.db_id());
    let out = hub_cmd(
        &dir,
        &["audit", "who", "notes/a1", &format!("--cv={other}")],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no accepted push"),
        "{}",
        text(&out.stderr)
    );
    let out = hub_cmd(&dir, &["audit", "who", "notes/none"]);
    assert!(!out.status.success());

    // A byte of the database file flipped (in the refusal's message, which
    // only the audit trail holds): `verify` names the entry whose page is
    // damaged, and fails.
    let data = dir.join("data/main");
    let mut flipped = 0;
    for f in std::fs::read_dir(&data).unwrap() {
        let f = f.unwrap().path();
        let mut bytes = std::fs::read(&f).unwrap();
        // Every copy: stale page images (free pages, old WAL frames) may
        // hold it too, and only the live one is what verify reads.
        let mut from = 0;
        while let Some(at) = find(&bytes[from..], b"notes/x") {
            bytes[from + at + 6] ^= 0x01;
            from += at + 7;
            flipped += 1;
        }
        std::fs::write(&f, bytes).unwrap();
    }
    assert!(
        flipped >= 1,
        "the refusal's bytes are in {}",
        data.join(DATA_FILE).display()
    );
    let out = hub_cmd(&dir, &["audit", "verify"]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(err.contains("audit entry"), "{err}");
    assert!(err.contains("BAD"), "{err}");
    assert!(err.contains("damaged") && err.contains("page"), "{err}");
    eprintln!("audit verify after the flip: {err}");
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Copies the files of `from` into a new directory `to`.
fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for f in std::fs::read_dir(from).unwrap() {
        let f = f.unwrap();
        if f.file_type().unwrap().is_file() {
            std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
        }
    }
}

/// A signed batch's entry that was changed or added after the fact, through
/// the engine (so the hash chain of the entries is intact and only the
/// signature checks can tell): a flipped signature byte, a batch re-signed
/// by another key (under its own key, or presented as alice's), a batch
/// replayed into the trail. `audit verify` fails and names the entry and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_a_changed_signature_a_foreign_key_and_a_replayed_batch() {
    use outpost::db::{AuditKind, AuditPush, encode_record};
    use outpost::keys::Signer;
    use outpost::sync::signed::BatchManifest;

    let tmp = TempDir::new(std::env::temp_dir(), "outpost-audit-sig");
    let dir: PathBuf = tmp.join("hub");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = format!(
        "listen = \"127.0.0.1:{}\"\ndata_dir = \"data\"\n\n[[database]]\nname = \"main\"\n\n{}",
        free_port(),
        key_edge_toml("alice", &["notes/"], &["notes/"])
    );
    std::fs::write(dir.join("outpost-hub.toml"), cfg).unwrap();
    let hub = HubProcess::start(BIN, &dir, &[]);
    let url = format!("ws://{}/sync", hub.addr());
    let adb = open_edge_db(&tmp.join("alice")).await;
    let ca = client(&adb, &url, "alice", "");
    wait_live(&ca).await;
    for i in 0..2 {
        adb.put_with(&format!("notes/{i}"), json!({"i": i}), opts())
            .await
            .unwrap();
        ca.local_changed();
        wait_until("the note is acknowledged", || async {
            ca.counters()
                .docs_pushed
                .load(std::sync::atomic::Ordering::Relaxed)
                == i + 1
        })
        .await;
    }
    ca.stop().await;
    hub.terminate();
    let out = hub_cmd(&dir, &["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let all = export(&dir, &[]);
    let n = all.len() as u64;
    let last: AuditPush = serde_json::from_value(
        all.iter()
            .rev()
            .find(|l| l["kind"] == "push_accepted")
            .unwrap()["record"]
            .clone(),
    )
    .unwrap();
    assert_eq!(last.key_id, keys::public_key("alice").fingerprint());

    let (m, _, _) = BatchManifest::from_audit(&last).unwrap().unwrap();
    let other = keys::fresh_key();
    let resigned = outpost::codec::to_hex(&other.sign(&m.message()).unwrap());
    let flipped = {
        let mut p = last.clone();
        let c = if p.signature.starts_with('0') {
            "1"
        } else {
            "0"
        };
        p.signature.replace_range(0..1, c);
        p
    };
    let foreign_as_alice = AuditPush {
        signature: resigned.clone(),
        ..last.clone()
    };
    let foreign_own_key = AuditPush {
        signature: resigned,
        public_key: other.public_key().to_text(),
        key_id: other.public_key().fingerprint(),
        ..last.clone()
    };
    let data = dir.join("data/main");
    let backup = tmp.join("backup");
    copy_dir(&data, &backup);
    for (what, record, reason) in [
        ("a flipped signature byte", flipped, "does not verify"),
        (
            "re-signed by another key",
            foreign_as_alice,
            "does not verify",
        ),
        (
            "another key's own batch",
            foreign_own_key,
            "out of sequence",
        ),
        ("a replayed batch", last.clone(), "out of sequence"),
    ] {
        copy_dir(&backup, &data);
        let h = outpost_hub::DbHandle::open("main", &data).await.unwrap();
        let mut b = Batch::new();
        b.audit(AuditKind::PushAccepted, encode_record(&record));
        h.db.commit(b).await.unwrap();
        h.close().await.unwrap();
        let out = hub_cmd(&dir, &["audit", "verify"]);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{what}: {}", text(&out.stdout));
        assert!(
            err.contains(&format!("audit entry {} is BAD", n + 1)) && err.contains(reason),
            "{what}: {err}"
        );
        assert!(
            err.contains(&format!("({n} entries before it verified)")),
            "{what}: {err}"
        );
    }
}

/// While the hub runs, `audit verify`, `who` and `export` are sent to it
/// (`POST /admin/audit`, the admin token) and print what the same commands
/// print once the hub is stopped, byte for byte; without the token, or with
/// a wrong one, they are refused and print nothing of the trail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_hub_answers_the_audit_commands_as_a_stopped_one_does() {
    const TOKEN: &str = "audit-admin-token";
    let tmp = TempDir::new(std::env::temp_dir(), "outpost-audit-live");
    let dir: PathBuf = tmp.join("hub");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("outpost-hub.toml"),
        format!(
            "listen = \"127.0.0.1:{}\"\ndata_dir = \"data\"\n\n[admin]\ntoken_sha256 = {:?}\n\n[[database]]\nname = \"main\"\n\n{}",
            free_port(),
            outpost_hub::config::token_sha256_hex(TOKEN),
            edge_toml("alice", "a-token", &["notes/"], &["notes/"])
        ),
    )
    .unwrap();
    let hub = HubProcess::start(BIN, &dir, &[]);
    let adb = open_edge_db(&tmp.join("alice")).await;
    let ca = client(
        &adb,
        &format!("ws://{}/sync", hub.addr()),
        "alice",
        "a-token",
    );
    wait_live(&ca).await;
    let mut b = Batch::new();
    b.put_with("notes/a1", json!({"t": "alice 1"}), opts());
    b.put_with("notes/a2", json!({"t": "alice 2"}), opts());
    adb.commit(b).await.unwrap();
    ca.local_changed();
    adb.put_with("notes/a1", json!({"t": "alice 1, again"}), opts())
        .await
        .unwrap();
    ca.local_changed();
    wait_until("both pushes are acknowledged", || async {
        ca.counters()
            .pushes_acked
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    })
    .await;
    ca.stop().await;
    // An operator's import into the running hub overwrites notes/a2: each
    // batch is recorded with who ran it (as said), the request as the hub
    // saw it, the file and the line.
    let lines = tmp.join("restore.jsonl");
    std::fs::write(
        &lines,
        "{\"id\":\"notes/i1\",\"t\":\"imported\"}\n{\"id\":\"notes/a2\",\"t\":\"restored\"}\n",
    )
    .unwrap();
    let file = lines.to_str().unwrap();
    let out = hub_cmd(
        &dir,
        &["import", "--by", "ada@clinic", "--admin-token", TOKEN, file],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Nothing writes from here on: the answers can be compared.

    let asks: [&[&str]; 5] = [
        &["audit", "verify"],
        &["audit", "who", "notes/a1"],
        &["audit", "export"],
        &["audit", "export", "--id", "notes/a2"],
        &["audit", "who", "notes/a2"],
    ];
    let mut live = Vec::new();
    for ask in asks {
        let mut args = ask.to_vec();
        args.extend(["--admin-token", TOKEN]);
        let out = hub_cmd(&dir, &args);
        assert!(out.status.success(), "{ask:?}: {}", text(&out.stderr));
        live.push(text(&out.stdout));
    }
    assert!(live[0].contains("audit entries verified"), "{}", live[0]);
    assert_eq!(
        live[1].matches("written by identity alice").count(),
        2,
        "{}",
        live[1]
    );
    assert!(live[2].lines().count() >= 3, "{}", live[2]);
    // notes/a2: alice's push, then the import.
    assert_eq!(live[3].lines().count(), 2, "{}", live[3]);
    let imported: Value = serde_json::from_str(live[3].lines().nth(1).unwrap()).unwrap();
    assert_eq!(imported["kind"], "import", "{imported}");
    let who = &live[4];
    assert!(who.contains("written by identity alice"), "{who}");
    assert!(
        who.contains(
            "written by an import, by ada@clinic (as given), via POST /admin/import from 127.0.0.1:"
        ),
        "{who}"
    );
    assert!(who.contains("with the admin token"), "{who}");
    assert!(
        who.contains(&format!("from {file}, line 2 (its SHA-256: ")),
        "{who}"
    );
    // The version the import wrote is the one the hub holds: asked by its
    // change vector, only the import answers.
    let held = export_docs(&dir, TOKEN, "notes/a2");
    let cv = held["@metadata"]["@change-vector"]
        .as_str()
        .unwrap()
        .to_string();
    let by_cv = hub_cmd(
        &dir,
        &[
            "audit",
            "who",
            "notes/a2",
            &format!("--cv={cv}"),
            "--admin-token",
            TOKEN,
        ],
    );
    let by_cv = text(&by_cv.stdout);
    assert!(by_cv.contains("written by an import"), "{by_cv}");
    assert!(!by_cv.contains("written by identity alice"), "{by_cv}");
    // Refused without the token or with a wrong one: nothing of the trail.
    for bad in [&[][..], &["--admin-token", "not-the-token"][..]] {
        for ask in asks {
            let mut args = ask.to_vec();
            args.extend_from_slice(bad);
            let out = hub_cmd(&dir, &args);
            assert!(!out.status.success(), "{args:?}");
            assert!(
                text(&out.stdout).is_empty(),
                "{args:?}: {}",
                text(&out.stdout)
            );
            let err = text(&out.stderr);
            assert!(
                err.contains("admin token") || err.contains("401"),
                "{args:?}: {err}"
            );
        }
    }

    let log = hub.terminate();
    assert!(log.contains("audit export sent"), "{log}");
    for (ask, live) in asks.iter().zip(&live) {
        let out = hub_cmd(&dir, ask);
        assert!(out.status.success(), "{ask:?}: {}", text(&out.stderr));
        assert_eq!(
            &text(&out.stdout),
            live,
            "{ask:?}: the running hub's answer differs"
        );
    }
    // The import's `via` is what the hub saw; a stopped hub's import says so.
    let out = hub_cmd(&dir, &["import", "--by", "bo", file]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = hub_cmd(&dir, &["audit", "who", "notes/i1"]);
    let who = text(&out.stdout);
    assert!(
        who.contains("by ada@clinic (as given), via POST /admin/import"),
        "{who}"
    );
    assert!(
        who.contains("by bo (as given), via outpost-hub import, the hub stopped"),
        "{who}"
    );
    let out = hub_cmd(&dir, &["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}
