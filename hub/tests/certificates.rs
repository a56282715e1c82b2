//! Certificate identities (`docs/security.md`, "Trust in keys, not
//! certificates"): the pinning and replacement rules on minted PKIs, then
//! real hub processes over mutual TLS with real native clients: a
//! certificate identity syncing and replacing itself, a forged certificate
//! with a stolen key, expiry during a live session, and the clinics case (a
//! Boston hub under a cloud hub) with a certificate replacement in the
//! middle.

#[path = "certificates/pki.rs"]
mod pki;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use outpost::sync::{EdgeConfig, ReplaceOutcome, SyncStatus};
use outpost_client::tls::ClientCert;
use outpost_client::{ClientOptions, SyncHandle, spawn_edge};
use outpost_hub::certs::{
    self, Judged, PinnedCert, Refusal, ReplaceRefusal, inspect, judge, purge_expired, replace,
};
use outpost_testkit::TempDir;
use outpost_testkit::hub::{HubProcess, free_port, wait_until};
use pki::{Ca, TlsHub, chain_pem, ders, identity_pem, key, now, self_made};

const BIN: &str = env!("CARGO_BIN_EXE_outpost-hub");
const WAIT: Duration = Duration::from_secs(60);

fn pin(chain: &[rustls_pki_types::CertificateDer<'_>]) -> PinnedCert {
    PinnedCert::from_presented(&inspect(chain, now()).unwrap())
}

// ---------------------------------------------------------------------------
// The rules

#[test]
fn renewal_by_the_same_issuer_chain_is_accepted() {
    let root = Ca::root("Clinics root");
    let int = root.intermediate("Clinics issuing CA");
    let k = key();
    let first = int.issue(&k, "boston", 60);
    let pins = vec![pin(&first)];
    // Same key, same issuer keys, new dates and serial: a renewal.
    let renewed = int.leaf(&k, "boston", now() - 60, now() + 90 * 86400);
    let p = inspect(&renewed, now()).unwrap();
    assert_eq!(judge(&pins, &p), Ok((0, Judged::Renewed)));
    // The intermediate re-issued by the root with the same key (a CA
    // renewing its own certificate) changes nothing either.
    assert_eq!(p.issuers, pins[0].issuers);
    // The certificate itself: accepted as is; and once the pin holds the
    // renewal, the older certificate is accepted without moving it back.
    let same = inspect(&first, now()).unwrap();
    assert_eq!(judge(&pins, &same), Ok((0, Judged::Accepted)));
    let mut pins = pins;
    certs::renew(&mut pins, 0, &p);
    assert_eq!(judge(&pins, &same), Ok((0, Judged::Accepted)));
    assert_eq!(pins[0].not_after, p.not_after);
}

#[test]
fn a_self_made_certificate_with_the_same_key_is_refused() {
    let root = Ca::root("Clinics root");
    let k = key();
    let pins = vec![pin(&root.issue(&k, "boston", 60))];
    let forged = inspect(&self_made(&k, "boston"), now()).unwrap();
    match judge(&pins, &forged) {
        Err(Some(r @ Refusal::Issuer { .. })) => assert_eq!(r.code(), "cert_issuer"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_certificate_from_another_ca_with_the_same_subject_is_refused() {
    let root = Ca::root("Clinics root");
    // Another CA with the very same name, and the same key for the leaf.
    let impostor = Ca::root("Clinics root");
    let k = key();
    let pins = vec![pin(&root.issue(&k, "boston", 60))];
    let other = inspect(&impostor.issue(&k, "boston", 60), now()).unwrap();
    assert!(matches!(
        judge(&pins, &other),
        Err(Some(Refusal::Issuer { .. }))
    ));
    // A stranger's key is refused without a reason.
    let stranger = inspect(&root.issue(&key(), "boston", 60), now()).unwrap();
    assert_eq!(judge(&pins, &stranger), Err(None));
}

#[test]
fn expired_and_not_yet_valid_certificates_are_refused() {
    let root = Ca::root("Clinics root");
    let k = key();
    let old = root.leaf(&k, "boston", now() - 90 * 86400, now() - 60);
    assert!(matches!(inspect(&old, now()), Err(Refusal::Expired(_))));
    let early = root.leaf(&k, "boston", now() + 3600, now() + 90 * 86400);
    assert!(matches!(
        inspect(&early, now()),
        Err(Refusal::NotYetValid(_))
    ));
    // A chain without its root, a tampered chain, garbage: typed refusals.
    let full = root.issue(&k, "boston", 60);
    assert!(matches!(
        inspect(&full[..1], now()),
        Err(Refusal::Incomplete(_))
    ));
    let other_root = Ca::root("Clinics root");
    let spliced = vec![full[0].clone(), other_root.der.clone()];
    assert!(matches!(inspect(&spliced, now()), Err(Refusal::Chain(_))));
    let junk = vec![rustls_pki_types::CertificateDer::from(vec![
        0x30, 3, 1, 2, 3,
    ])];
    assert!(matches!(inspect(&junk, now()), Err(Refusal::Malformed(_))));
    assert!(matches!(inspect(&[], now()), Err(Refusal::Malformed(_))));
}

#[test]
fn a_non_p256_key_is_refused() {
    let root = Ca::root("Clinics root");
    let k = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let chain = root.issue(&k, "boston", 60);
    assert!(matches!(
        inspect(&chain, now()),
        Err(Refusal::KeyAlgorithm(_))
    ));
}

/// A, B, C, D: four certificates of one identity from one CA.
fn four() -> (Ca, Vec<Vec<rustls_pki_types::CertificateDer<'static>>>) {
    let root = Ca::root("Clinics root");
    let chains = (0..4).map(|_| root.issue(&key(), "boston", 60)).collect();
    (root, chains)
}

fn presented(chain: &[rustls_pki_types::CertificateDer<'_>]) -> certs::Presented {
    inspect(chain, now()).unwrap()
}

#[test]
fn a_registers_b_and_both_are_valid() {
    let (_, c) = four();
    let (a, b) = (presented(&c[0]), presented(&c[1]));
    let mut pins = vec![PinnedCert::from_presented(&a)];
    let done = replace(&mut pins, "boston", false, &a.key, &b, now()).unwrap();
    assert!(done.dropped.is_empty() && done.retired.is_none() && !done.again);
    assert_eq!(judge(&pins, &a), Ok((0, Judged::Accepted)));
    assert_eq!(judge(&pins, &b), Ok((1, Judged::Accepted)));
    assert_eq!(pins[1].registered_by, Some(a.key));
    // Registering B again is harmless.
    let again = replace(&mut pins, "boston", false, &a.key, &b, now()).unwrap();
    assert!(again.again);
    assert_eq!(pins.len(), 2);
}

#[test]
fn a_registers_c_instead_and_b_is_dropped() {
    let (_, c) = four();
    let (a, b, cc) = (presented(&c[0]), presented(&c[1]), presented(&c[2]));
    let mut pins = vec![PinnedCert::from_presented(&a)];
    replace(&mut pins, "boston", false, &a.key, &b, now()).unwrap();
    let done = replace(&mut pins, "boston", false, &a.key, &cc, now()).unwrap();
    assert_eq!(done.dropped, vec![b.key]);
    assert_eq!(judge(&pins, &b), Err(None), "B is dropped at once");
    assert!(judge(&pins, &a).is_ok() && judge(&pins, &cc).is_ok());
    // A dropped certificate cannot register anything.
    let d = presented(&c[3]);
    match replace(&mut pins, "boston", false, &b.key, &d, now()) {
        Err(r @ ReplaceRefusal::NotValid(_)) => assert_eq!(r.code(), "replace_not_valid"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn c_registers_d_and_a_is_no_longer_valid() {
    let (_, c) = four();
    let (a, cc, d) = (presented(&c[0]), presented(&c[2]), presented(&c[3]));
    let mut pins = vec![PinnedCert::from_presented(&a)];
    replace(&mut pins, "boston", false, &a.key, &cc, now()).unwrap();
    let done = replace(&mut pins, "boston", false, &cc.key, &d, now()).unwrap();
    assert_eq!(done.retired, Some(a.key));
    assert_eq!(judge(&pins, &a), Err(Some(Refusal::Replaced)));
    assert!(judge(&pins, &cc).is_ok() && judge(&pins, &d).is_ok());
    // A cannot act any more: no replacement from it.
    let e = presented(&four().1[0]);
    assert!(matches!(
        replace(&mut pins, "boston", false, &a.key, &e, now()),
        Err(ReplaceRefusal::NotValid(_))
    ));
}

#[test]
fn replacement_by_an_admin_identity_is_refused() {
    let (_, c) = four();
    let (a, b) = (presented(&c[0]), presented(&c[1]));
    let mut pins = vec![PinnedCert::from_presented(&a)];
    let r = replace(&mut pins, "ops", true, &a.key, &b, now()).unwrap_err();
    assert_eq!(r.code(), "replace_admin");
    assert_eq!(pins.len(), 1);
}

#[test]
fn replacement_by_an_expired_certificate_is_refused() {
    let root = Ca::root("Clinics root");
    let a = presented(&root.leaf(&key(), "boston", now() - 86400, now() + 5));
    let b = presented(&root.issue(&key(), "boston", 60));
    let mut pins = vec![PinnedCert::from_presented(&a)];
    let r = replace(&mut pins, "boston", false, &a.key, &b, now() + 10).unwrap_err();
    assert_eq!(r.code(), "replace_not_valid");
    assert!(r.to_string().contains("expired"), "{r}");
}

#[test]
fn a_replacement_from_another_issuer_or_with_the_same_key_is_refused() {
    let root = Ca::root("Clinics root");
    let k = key();
    let a = presented(&root.issue(&k, "boston", 60));
    let mut pins = vec![PinnedCert::from_presented(&a)];
    let own = presented(&self_made(&key(), "boston"));
    assert_eq!(
        replace(&mut pins, "boston", false, &a.key, &own, now())
            .unwrap_err()
            .code(),
        "replace_issuer"
    );
    let same = presented(&root.issue(&k, "boston", 90));
    assert_eq!(
        replace(&mut pins, "boston", false, &a.key, &same, now())
            .unwrap_err()
            .code(),
        "replace_same_key"
    );
}

#[test]
fn purge_expired_never_removes_the_last_certificate() {
    let root = Ca::root("Clinics root");
    let old = |until: i64| {
        let mut p = pin(&root.issue(&key(), "boston", 60));
        p.not_after = until;
        p
    };
    let mut pins = vec![
        old(now() - 100),
        old(now() - 50),
        pin(&root.issue(&key(), "b", 60)),
    ];
    let gone = purge_expired(&mut pins, now());
    assert_eq!(gone.len(), 2);
    assert_eq!(pins.len(), 1);
    // All expired: the one that expired last stays.
    let mut all = vec![old(now() - 100), old(now() - 50)];
    let kept = all[1].key;
    let gone = purge_expired(&mut all, now());
    assert_eq!(gone.len(), 1);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].key, kept);
}

// ---------------------------------------------------------------------------
// Real hubs over mutual TLS

type Db = outpost::Database<outpost::store::MemoryStore>;

async fn memory_db() -> Db {
    outpost::Database::open(
        outpost::store::MemoryStore::new(),
        outpost::OpenOptions::default(),
    )
    .await
    .unwrap()
}

fn cert_client(db: &Db, hub: &TlsHub, identity: &str, pem: &str) -> SyncHandle {
    let cert = Arc::new(ClientCert::from_pem(pem.as_bytes()).unwrap());
    let mut edge = EdgeConfig::with_key("main", identity, cert.public_key().clone());
    edge.heartbeat_ms = 2_000;
    edge.timeout_ms = 6_000;
    let opts = ClientOptions {
        url: hub.url(),
        edge,
        ca_cert: Some(hub.ca()),
        signer: Some(cert.signer()),
        client_cert: Some(cert),
    };
    spawn_edge(db.clone(), opts, None)
}

async fn live(c: &SyncHandle, hub: &TlsHub) {
    assert!(
        c.wait_for(WAIT, |s| matches!(s, SyncStatus::Live)).await,
        "not live: {:?}\nhub log:\n{}",
        c.status(),
        hub.proc.log()
    );
}

/// Waits for an `Error` status and returns its code.
async fn error_code(c: &SyncHandle) -> String {
    assert!(
        c.wait_for(WAIT, |s| matches!(s, SyncStatus::Error { .. }))
            .await,
        "no error: {:?}",
        c.status()
    );
    match c.status() {
        SyncStatus::Error { code, .. } => code,
        other => panic!("{other:?}"),
    }
}

async fn put(db: &Db, id: &str, v: serde_json::Value) {
    db.put(id, v).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_identity_syncs_over_mutual_tls_and_replaces_itself() {
    let tmp = TempDir::new(std::env::temp_dir(), "outpost-certs-sync");
    let hub = TlsHub::start(tmp.path(), "cloud", "");
    let root = Ca::root("Clinics root");
    let (ka, kb) = (key(), key());
    let a = root.issue(&ka, "boston", 60);
    hub.add_cert_edge("boston", &a, &[]);
    let (ok, list, _) = hub.cli(&["edge", "list"]);
    assert!(
        ok && list.contains("cert sha256:") && list.contains("valid"),
        "{list}"
    );

    // A syncs over mutual TLS.
    let db = memory_db().await;
    let c = cert_client(&db, &hub, "boston", &identity_pem(&a, &ka));
    live(&c, &hub).await;
    put(&db, "clinics/boston/1", serde_json::json!({"n": 1})).await;
    c.local_changed();

    // A registers B over its session: both work.
    let b = root.issue(&kb, "boston", 90);
    assert_eq!(
        c.register_replacement(ders(&b), WAIT).await,
        ReplaceOutcome::Registered
    );
    assert!(
        hub.config().matches("[[edge.cert]]").count() == 2,
        "{}",
        hub.config()
    );
    let db2 = memory_db().await;
    let c2 = cert_client(&db2, &hub, "boston", &identity_pem(&b, &kb));
    live(&c2, &hub).await;
    wait_until("B receives A's document", || {
        let db2 = db2.clone();
        async move { db2.get("clinics/boston/1").await.ok().flatten().is_some() }
    })
    .await;
    c2.stop().await;

    // A replacement from another issuer, or with the same key: refused
    // with a typed reason, and the session goes on.
    match c
        .register_replacement(ders(&self_made(&key(), "boston")), WAIT)
        .await
    {
        ReplaceOutcome::Refused { code, .. } => assert_eq!(code, "replace_issuer"),
        other => panic!("{other:?}"),
    }
    match c
        .register_replacement(ders(&root.issue(&ka, "boston", 90)), WAIT)
        .await
    {
        ReplaceOutcome::Refused { code, .. } => assert_eq!(code, "replace_same_key"),
        other => panic!("{other:?}"),
    }
    c.stop().await;

    // A thief with A's key makes a certificate for itself: refused, and
    // told why (it proved the key).
    let forged_db = memory_db().await;
    let forged = cert_client(
        &forged_db,
        &hub,
        "boston",
        &identity_pem(&self_made(&ka, "boston"), &ka),
    );
    assert_eq!(error_code(&forged).await, "cert_issuer");
    forged.stop().await;
    // Another CA with the same subject, same key: refused alike.
    let impostor = Ca::root("Clinics root");
    let other = cert_client(
        &forged_db,
        &hub,
        "boston",
        &identity_pem(&impostor.issue(&ka, "boston", 60), &ka),
    );
    assert_eq!(error_code(&other).await, "cert_issuer");
    other.stop().await;

    // A renewal of A (same key, same CA): accepted with no operator step,
    // and recorded.
    let renewed = root.issue(&ka, "boston", 120);
    let r = cert_client(&db, &hub, "boston", &identity_pem(&renewed, &ka));
    live(&r, &hub).await;
    r.stop().await;
    assert!(hub.config().contains("renewals = 1"), "{}", hub.config());

    // The audit trail holds the registration, the replacement, the
    // refusals and the renewal.
    let mut hub = hub;
    hub.proc.kill();
    let (ok, out, err) = hub.cli(&["audit", "export"]);
    assert!(ok, "{err}");
    for event in [
        "\"registered\"",
        "\"replaced\"",
        "\"refused\"",
        "\"renewed\"",
        "cert_issuer",
        "replace_issuer",
    ] {
        assert!(
            out.contains(event),
            "{event} missing from the audit trail:\n{out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_during_a_live_session_ends_it() {
    let tmp = TempDir::new(std::env::temp_dir(), "outpost-certs-expiry");
    let mut hub = TlsHub::start(tmp.path(), "cloud", "");
    let root = Ca::root("Clinics root");
    let k = key();
    // Valid for a few seconds more.
    let short = root.leaf(&k, "boston", now() - 60, now() + 4);
    hub.add_cert_edge("boston", &short, &[]);
    let db = memory_db().await;
    let c = cert_client(&db, &hub, "boston", &identity_pem(&short, &k));
    live(&c, &hub).await;
    assert_eq!(error_code(&c).await, "cert_expired");
    c.stop().await;
    // And an expired certificate is refused at once.
    let again = cert_client(&db, &hub, "boston", &identity_pem(&short, &k));
    assert_eq!(error_code(&again).await, "cert_expired");
    again.stop().await;
    // The hub records the expiry itself too, once, connected or not: its
    // sweep at start (then every 30 s) marks the pin.
    hub.proc.kill();
    hub.proc.restart();
    let t = std::time::Instant::now();
    while !hub.config().contains("expiry_recorded = true") {
        assert!(
            t.elapsed() < WAIT,
            "no expiry recorded:\n{}",
            hub.proc.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    hub.proc.kill();
    let (ok, out, err) = hub.cli(&["audit", "export"]);
    assert!(ok, "{err}");
    assert!(out.contains("\"expired\""), "{out}");
    let sweep = "\"message\":\"the certificate expired\"";
    assert_eq!(out.matches(sweep).count(), 1, "one sweep entry: {out}");

    // `certs purge-expired` on the stopped hub: the only certificate stays
    // (an identity keeps its last one); a second, expired one goes, and
    // the removal is in the audit trail.
    let (ok, _, err) = hub.cli(&["certs", "purge-expired"]);
    assert!(ok, "{err}");
    assert!(err.contains("0 expired certificate(s) removed"), "{err}");
    let k2 = key();
    let later = root.leaf(&k2, "boston", now() - 60, now() + 2);
    let f = hub.dir.join("later.pem");
    std::fs::write(&f, chain_pem(&later)).unwrap();
    let (ok, _, err) = hub.cli(&["edge", "cert-add", "boston", "--cert", &f.to_string_lossy()]);
    assert!(ok, "{err}");
    std::thread::sleep(Duration::from_secs(4));
    let (ok, _, err) = hub.cli(&["certs", "purge-expired"]);
    assert!(ok, "{err}");
    assert!(err.contains("1 expired certificate(s) removed"), "{err}");
    assert_eq!(
        hub.config().matches("[[edge.cert]]").count(),
        1,
        "{}",
        hub.config()
    );
    let (_, out, _) = hub.cli(&["audit", "export"]);
    assert!(out.contains("\"purged\""), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clinics_case_over_mutual_tls_with_a_replacement_in_the_middle() {
    let tmp = TempDir::new(std::env::temp_dir(), "outpost-certs-clinics");
    let cloud = TlsHub::start(tmp.path(), "cloud", "");
    let root = Ca::root("Clinics root");
    let int = root.intermediate("Clinics issuing CA");
    let (ka, kb, kh) = (key(), key(), key());
    let a = int.issue(&ka, "boston", 60);
    let hq = int.issue(&kh, "hq", 60);
    cloud.add_cert_edge("boston", &a, &[]);
    cloud.add_cert_edge("hq", &hq, &[]);

    // Boston: a hub whose database is an edge of the cloud, with its
    // certificate identity in one PEM file.
    let bdir = tmp.path().join("boston");
    std::fs::create_dir_all(&bdir).unwrap();
    let bcert = bdir.join("boston.pem");
    std::fs::write(&bcert, identity_pem(&a, &ka)).unwrap();
    let bport = free_port();
    std::fs::write(
        bdir.join("outpost-hub.toml"),
        format!(
            "listen = \"127.0.0.1:{bport}\"\ndata_dir = \"data\"\n[[database]]\nname = \"main\"\n\n[[upstream]]\ndatabase = \"main\"\nurl = \"{}\"\nidentity = \"boston\"\ncert = \"boston.pem\"\nca_cert = \"{}\"\n",
            cloud.url(),
            cloud.ca().display()
        ),
    )
    .unwrap();
    let boston = HubProcess::start(BIN, &bdir, &[]);
    let docs = |h: &HubProcess| {
        let (_, body) = h.get("/status");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["databases"][0]["documents"].as_u64().unwrap_or(0)
    };

    // The cloud's writes reach Boston.
    let db = memory_db().await;
    let c = cert_client(&db, &cloud, "hq", &identity_pem(&hq, &kh));
    live(&c, &cloud).await;
    put(&db, "clinics/boston/1", serde_json::json!({"n": 1})).await;
    c.local_changed();
    wait_until("Boston receives the first document", || async {
        docs(&boston) >= 1
    })
    .await;

    // Boston's renewal job drops a certificate with a new key beside the
    // old one: Boston registers it with the cloud, then switches.
    let b = int.issue(&kb, "boston", 90);
    let next = outpost_hub::upstream::next_path(&bcert);
    std::fs::write(&next, identity_pem(&b, &kb)).unwrap();
    let b_key = certs::hash_text(&inspect(&b, now()).unwrap().key);
    wait_until("the cloud pins Boston's new certificate", || {
        let cfg = cloud.config();
        let b_key = b_key.clone();
        async move { cfg.contains(&b_key) }
    })
    .await;
    wait_until("Boston switches to its new certificate", || {
        let next = next.clone();
        async move { !next.exists() }
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(&bcert).unwrap(),
        identity_pem(&b, &kb)
    );
    wait_until("Boston reconnects with its new certificate", || async {
        boston.log().contains("reconnecting with it")
    })
    .await;

    // The cloud never loses Boston: later writes still arrive.
    put(&db, "clinics/boston/2", serde_json::json!({"n": 2})).await;
    c.local_changed();
    wait_until("Boston receives the second document", || async {
        docs(&boston) >= 2
    })
    .await;
    c.stop().await;
    assert!(
        !cloud.proc.log().contains("certificate refused"),
        "{}",
        cloud.proc.log()
    );
}

/// An HTTPS GET of `path` at the hub presenting `cert` (or none): the
/// status code.
async fn https_get(hub: &TlsHub, path: &str, cert: Option<&ClientCert>) -> u16 {
    https_request(hub, "GET", path, cert, "").await.0
}

/// An HTTPS request (`body` sent as JSON unless empty) at the hub
/// presenting `cert` (or none): the status code and the answer's body.
async fn https_request(
    hub: &TlsHub,
    method: &str,
    path: &str,
    cert: Option<&ClientCert>,
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cfg = outpost_client::tls::client_config_with(&hub.ca(), cert).unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", hub.port))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut s = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .unwrap();
    let body = (!body.is_empty()).then_some(body);
    let req = outpost_testkit::hub::request_text(method, path, "localhost", None, body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    outpost_testkit::hub::parse_answer(&out).unwrap_or((0, String::new()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_certificate_opens_the_admin_pages_and_only_an_operator_replaces_it() {
    let tmp = TempDir::new(std::env::temp_dir(), "outpost-certs-admin");
    let mut hub = TlsHub::start(tmp.path(), "cloud", "");
    let root = Ca::root("Ops root");
    let (ko, kb) = (key(), key());
    let ops = root.issue(&ko, "ops", 60);
    let boston = root.issue(&kb, "boston", 60);
    hub.add_cert_edge("ops", &ops, &["--admin"]);
    hub.add_cert_edge("boston", &boston, &[]);
    let ops_id = ClientCert::from_pem(identity_pem(&ops, &ko).as_bytes()).unwrap();
    let boston_id = ClientCert::from_pem(identity_pem(&boston, &kb).as_bytes()).unwrap();

    // The admin identity's certificate opens /status; another identity's,
    // or none, does not; a self-made one with the admin's key neither.
    assert_eq!(https_get(&hub, "/status", Some(&ops_id)).await, 200);
    assert_eq!(https_get(&hub, "/metrics", Some(&ops_id)).await, 200);
    assert_eq!(https_get(&hub, "/status", Some(&boston_id)).await, 401);
    assert_eq!(https_get(&hub, "/status", None).await, 401);
    let forged =
        ClientCert::from_pem(identity_pem(&self_made(&ko, "ops"), &ko).as_bytes()).unwrap();
    assert_eq!(https_get(&hub, "/status", Some(&forged)).await, 401);
    // The same for the operator's routes: Boston, an edge with a valid
    // certificate, may not export the database (nor may the forged one);
    // the admin identity may.
    let export = r#"{"database":"main","end_line":true}"#;
    for who in [Some(&boston_id), Some(&forged), None] {
        let (code, answer) = https_request(&hub, "POST", "/admin/export", who, export).await;
        assert_eq!(code, 401, "{answer}");
        assert!(!answer.contains("@export"), "{answer}");
        // Without a certificate, the refusal says how a client is asked
        // for one (curl offers ALPN and would not be).
        assert_eq!(answer.contains("--no-alpn"), who.is_none(), "{answer}");
    }
    let (code, answer) = https_request(&hub, "POST", "/admin/export", Some(&ops_id), export).await;
    assert_eq!(code, 200, "{answer}");
    assert!(answer.contains("\"@export\""), "{answer}");

    // Its session may not register a replacement: an operator does.
    let db = memory_db().await;
    let c = cert_client(&db, &hub, "ops", &identity_pem(&ops, &ko));
    live(&c, &hub).await;
    let next_key = key();
    let next = root.issue(&next_key, "ops", 90);
    match c.register_replacement(ders(&next), WAIT).await {
        ReplaceOutcome::Refused { code, .. } => assert_eq!(code, "replace_admin"),
        other => panic!("{other:?}"),
    }
    c.stop().await;
    assert_eq!(hub.config().matches("[[edge.cert]]").count(), 2);
    let f = hub.dir.join("ops-next.pem");
    std::fs::write(&f, chain_pem(&next)).unwrap();
    let reloads = hub.reloads();
    let (ok, _, err) = hub.cli(&["edge", "cert-add", "ops", "--cert", &f.to_string_lossy()]);
    assert!(ok, "{err}");
    hub.wait_reload(reloads);
    let next_id = ClientCert::from_pem(identity_pem(&next, &next_key).as_bytes()).unwrap();
    assert_eq!(https_get(&hub, "/status", Some(&next_id)).await, 200);
    hub.proc.kill();
    let (_, out, _) = hub.cli(&["audit", "export"]);
    assert!(
        out.contains("replace_admin"),
        "the refusal is audited: {out}"
    );
}

/// A Boston hub in `dir` whose database is an edge of each of `urls`, all
/// with the certificate file `boston.pem` (`pem`).
fn boston_hub(dir: &Path, pem: &str, upstreams: &[(String, std::path::PathBuf)]) -> HubProcess {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("boston.pem"), pem).unwrap();
    let mut cfg = format!(
        "listen = \"127.0.0.1:{}\"\ndata_dir = \"data\"\n[[database]]\nname = \"main\"\n",
        free_port()
    );
    for (url, ca) in upstreams {
        cfg.push_str(&format!(
            "\n[[upstream]]\ndatabase = \"main\"\nurl = \"{url}\"\nidentity = \"boston\"\ncert = \"boston.pem\"\nca_cert = \"{}\"\n",
            ca.display()
        ));
    }
    std::fs::write(dir.join("outpost-hub.toml"), cfg).unwrap();
    HubProcess::start(BIN, dir, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_holds_the_switch_until_the_certificate_nears_its_expiry() {
    let tmp = TempDir::new(std::env::temp_dir(), "outpost-certs-unreachable");
    let cloud = TlsHub::start(tmp.path(), "cloud", "");
    // A second upstream that never answers (nothing listens there).
    let dead = format!("wss://localhost:{}/sync", free_port());
    let root = Ca::root("Clinics root");
    let ups = vec![(cloud.url(), cloud.ca()), (dead, cloud.ca())];

    // A long-lived certificate: the new one is registered where it can be,
    // and the switch waits for the unreachable upstream.
    let (ka, kb) = (key(), key());
    let a = root.issue(&ka, "boston", 60);
    cloud.add_cert_edge("boston", &a, &[]);
    let bdir = tmp.path().join("boston");
    let boston = boston_hub(&bdir, &identity_pem(&a, &ka), &ups);
    let next = outpost_hub::upstream::next_path(&bdir.join("boston.pem"));
    let b = root.issue(&kb, "boston", 90);
    std::fs::write(&next, identity_pem(&b, &kb)).unwrap();
    let b_key = certs::hash_text(&inspect(&b, now()).unwrap().key);
    wait_until("the reachable upstream pins the new certificate", || {
        let cfg = cloud.config();
        let b_key = b_key.clone();
        async move { cfg.contains(&b_key) }
    })
    .await;
    tokio::time::sleep(outpost_hub::upstream::RENEWAL_POLL * 3).await;
    assert!(
        next.exists(),
        "no switch while an upstream has not registered it"
    );
    assert_eq!(
        std::fs::read_to_string(bdir.join("boston.pem")).unwrap(),
        identity_pem(&a, &ka)
    );
    drop(boston);

    // A certificate within a tenth of its lifetime of its expiry: the hub
    // switches anyway, and says which upstream is missing.
    let (kc, kd) = (key(), key());
    let c = root.leaf(&kc, "boston-2", now() - 3600, now() + 120);
    let f = cloud.dir.join("c.pem");
    std::fs::write(&f, chain_pem(&c)).unwrap();
    let reloads = cloud.reloads();
    let (ok, _, err) = cloud.cli(&["edge", "cert-add", "boston", "--cert", &f.to_string_lossy()]);
    assert!(ok, "{err}");
    cloud.wait_reload(reloads);
    let bdir2 = tmp.path().join("boston-2");
    let boston2 = boston_hub(&bdir2, &identity_pem(&c, &kc), &ups);
    let next2 = outpost_hub::upstream::next_path(&bdir2.join("boston.pem"));
    let d = root.issue(&kd, "boston-2", 90);
    std::fs::write(&next2, identity_pem(&d, &kd)).unwrap();
    wait_until("the hub switches near the expiry", || {
        let next2 = next2.clone();
        async move { !next2.exists() }
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(bdir2.join("boston.pem")).unwrap(),
        identity_pem(&d, &kd)
    );
    assert!(
        boston2.log().contains("nears its expiry"),
        "{}",
        boston2.log()
    );
    // It switched only once the reachable upstream had registered it.
    let d_key = certs::hash_text(&inspect(&d, now()).unwrap().key);
    assert!(cloud.config().contains(&d_key), "{}", cloud.config());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_renewal_revives_a_link_whose_certificate_expired() {
    let tmp = TempDir::new(std::env::temp_dir(), "outpost-certs-late");
    let cloud = TlsHub::start(tmp.path(), "cloud", "");
    let root = Ca::root("Clinics root");
    let (ka, kh) = (key(), key());
    let a = root.leaf(&ka, "boston", now() - 60, now() + 4);
    let hq = root.issue(&kh, "hq", 60);
    cloud.add_cert_edge("boston", &a, &[]);
    cloud.add_cert_edge("hq", &hq, &[]);
    let bdir = tmp.path().join("boston");
    let boston = boston_hub(&bdir, &identity_pem(&a, &ka), &[(cloud.url(), cloud.ca())]);
    let docs = |h: &HubProcess| {
        let (_, body) = h.get("/status");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["databases"][0]["documents"].as_u64().unwrap_or(0)
    };
    // Boston's certificate expires: the cloud ends its session for good.
    wait_until("Boston's link is refused at expiry", || async {
        boston
            .log()
            .contains("waiting for its certificate file to change")
    })
    .await;
    // The renewal job was late: the renewed certificate (same key) revives
    // the link.
    let renewed = root.issue(&ka, "boston", 90);
    std::fs::write(
        outpost_hub::upstream::next_path(&bdir.join("boston.pem")),
        identity_pem(&renewed, &ka),
    )
    .unwrap();
    let db = memory_db().await;
    let c = cert_client(&db, &cloud, "hq", &identity_pem(&hq, &kh));
    live(&c, &cloud).await;
    put(&db, "clinics/boston/late", serde_json::json!({"n": 1})).await;
    c.local_changed();
    wait_until("Boston receives the document after the renewal", || async {
        docs(&boston) >= 1
    })
    .await;
    c.stop().await;
}

/// A TLS client's certificate resolver that counts the hub's requests for a
/// certificate (rustls calls it only when the handshake has a
/// `CertificateRequest`) and presents none.
#[derive(Debug, Default)]
struct CountsRequests(std::sync::atomic::AtomicUsize);

impl rustls::client::ResolvesClientCert for CountsRequests {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        None
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// One HTTPS `GET /healthz` as a client holding certificates (a browser
/// whose user has some installed): whether the hub asked for one, and the
/// status code.
/// Whether the hub asks a TLS client offering the ALPN protocols `alpn`
/// for a certificate, and the answer to its `GET /healthz`.
async fn asked_for_a_certificate(hub: &TlsHub, alpn: &[&[u8]]) -> (bool, u16) {
    use rustls_pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(hub.ca()).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let counts = Arc::new(CountsRequests::default());
    let cfg = rustls::ClientConfig::builder_with_provider(outpost_hub::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_cert_resolver(counts.clone());
    let mut cfg = cfg;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", hub.port))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    let req = outpost_testkit::hub::request_text("GET", "/healthz", "localhost", None, None);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let code = outpost_testkit::hub::parse_answer(&out).map_or(0, |(c, _)| c);
    let asked = counts.0.load(std::sync::atomic::Ordering::SeqCst) > 0;
    (asked, code)
}

/// A hub with no certificate identity does not ask TLS clients for a
/// certificate (a browser whose user has client certificates installed is
/// not made to pick one); it asks once an `[[edge.cert]]` is added (the
/// reload, no restart), and stops asking when the last one is removed.
/// Even then it asks only clients that may present one: those offering the
/// native client's ALPN marker, or no ALPN at all; never one offering the
/// browsers' `h2` and `http/1.1` alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_asks_for_a_client_certificate_only_while_it_has_a_certificate_identity() {
    let tmp = TempDir::new(std::env::temp_dir(), "outpost-certs-ask");
    let hub = TlsHub::start(tmp.path(), "cloud", "");
    let browser: &[&[u8]] = &[b"h2", b"http/1.1"];
    let native: &[&[u8]] = &[outpost_client::tls::CLIENT_CERT_ALPN, b"http/1.1"];
    for alpn in [&[][..], browser, native] {
        assert_eq!(asked_for_a_certificate(&hub, alpn).await, (false, 200));
    }
    let root = Ca::root("Ops root");
    let ko = key();
    hub.add_cert_edge("ops", &root.issue(&ko, "ops", 60), &[]);
    assert_eq!(asked_for_a_certificate(&hub, &[]).await, (true, 200));
    assert_eq!(asked_for_a_certificate(&hub, native).await, (true, 200));
    assert_eq!(asked_for_a_certificate(&hub, browser).await, (false, 200));
    assert_eq!(
        asked_for_a_certificate(&hub, &[b"http/1.1"]).await,
        (false, 200)
    );
    let reloads = hub.reloads();
    let (ok, _, err) = hub.cli(&["edge", "remove", "ops"]);
    assert!(ok, "{err}");
    hub.wait_reload(reloads);
    for alpn in [&[][..], browser, native] {
        assert_eq!(asked_for_a_certificate(&hub, alpn).await, (false, 200));
    }
}
