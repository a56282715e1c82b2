//! Certificate replacement on the wire (protocol 8: `Replace`, answered by
//! `ReplaceResult`): a `Replace` is taken only in an open version-8 session
//! of a certificate identity; before authentication or in a version-7
//! session it is a protocol error, from a key identity it is refused
//! (`replace_not_certificate`) and changes nothing, and an oversized one
//! does not decode. Over mutual TLS (`tls_*`: a hub serving `wss://` with
//! certificate identities, the hostile client presenting what it likes): a
//! stolen key with a self-made certificate or another CA's, a key without
//! its certificate or with another identity's, an expired certificate, a
//! retired one, a dropped replacement, and a replacement from another
//! issuer are each refused with their code, and the hub keeps serving the
//! honest certificate. The rules themselves, and the clinics case, are in
//! `hub/tests/certificates.rs`.

use std::sync::Arc;

use outpost::keys::KeyPair;
use outpost_client::tls::ClientCert;

use crate::common::*;
use crate::pki::{Ca, TlsHub, ders, identity_pem, key, now, self_made};

fn replace_result(a: &Answer) -> (u64, String) {
    match a {
        Answer::Unexpected(f) => match f.as_ref() {
            Frame::ReplaceResult { request, code, .. } => (*request, code.clone()),
            other => panic!("expected ReplaceResult, got {other:?}"),
        },
        other => panic!("expected ReplaceResult, got {other:?}"),
    }
}

fn config_of(hub: &Hub) -> String {
    std::fs::read_to_string(hub.dir().join("outpost-hub.toml")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_before_authentication_is_a_protocol_error() {
    let hub = Hub::start();
    let mut m = hub.connect().await;
    let f = Frame::Replace {
        request: 1,
        chain: vec![vec![0x30, 0]],
    };
    m.send(&f).await.unwrap();
    assert_error(&m.answer().await, "protocol");
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_in_a_protocol_7_session_is_a_protocol_error() {
    let hub = Hub::start();
    let mut m = hub.session_at("mallory", 7).await;
    let f = Frame::Replace {
        request: 1,
        chain: vec![vec![0x30, 0]],
    };
    m.send(&f).await.unwrap();
    assert_error(&m.answer().await, "protocol");
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_from_a_key_identity_is_refused_and_changes_nothing() {
    let hub = Hub::start();
    let before = config_of(&hub);
    let mut m = hub
        .session_at("mallory", outpost::sync::frame::REPLACE_VERSION)
        .await;
    // Garbage, then a well-formed self-signed chain: neither is looked at.
    for (request, chain) in [(1, vec![vec![0xff; 40]]), (2, vec![vec![0x30, 3, 1, 2, 3]])] {
        m.send(&Frame::Replace { request, chain }).await.unwrap();
        let (r, code) = replace_result(&m.answer().await);
        assert_eq!((r, code.as_str()), (request, "replace_not_certificate"));
    }
    assert_eq!(config_of(&hub), before, "the configuration is unchanged");
    // The session goes on: a push after it is acknowledged.
    assert_acked(&Hub::honest_put(&mut m, "shared/after-replace", "Notes", json!({"v": 1})).await);
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_keeps_sending_replace_is_ended() {
    let hub = Hub::start();
    let mut m = hub
        .session_at("mallory", outpost::sync::frame::REPLACE_VERSION)
        .await;
    let max = u64::from(outpost::sync::hub::MAX_REPLACES_PER_SESSION);
    for request in 1..=max {
        m.send(&Frame::Replace {
            request,
            chain: vec![vec![0x30, 0]],
        })
        .await
        .unwrap();
        replace_result(&m.answer().await);
    }
    m.send(&Frame::Replace {
        request: max + 1,
        chain: vec![vec![0x30, 0]],
    })
    .await
    .unwrap();
    assert_error(&m.answer().await, "protocol");
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_of_nine_certificates_does_not_decode() {
    let hub = Hub::start();
    let mut m = hub.mallory().await;
    let mut raw = vec![20u8];
    raw.extend_from_slice(&1u64.to_le_bytes());
    raw.push(9);
    for _ in 0..9 {
        raw.extend_from_slice(&[1, 0, 0x30]);
    }
    m.send_bytes(raw).await.unwrap();
    let a = m.answer().await;
    assert!(a.is_end(), "the session ends: {a:?}");
    assert!(
        a.code().is_some_and(|c| !c.is_empty()),
        "a typed error: {a:?}"
    );
    hub.finish().await;
}

// ---------------------------------------------------------------------------
// Over mutual TLS

/// A TLS hub with certificate identity `boston` (certificate A from the
/// clinics root) and `hq`.
struct Clinic {
    hub: TlsHub,
    _tmp: outpost_testkit::TempDir,
    root: Ca,
    a_key: rcgen::KeyPair,
    a: Vec<rustls_pki_types::CertificateDer<'static>>,
    hq_key: rcgen::KeyPair,
    hq: Vec<rustls_pki_types::CertificateDer<'static>>,
}

impl Clinic {
    fn start(name: &str) -> Clinic {
        let tmp = outpost_testkit::TempDir::new(std::env::temp_dir(), name);
        let hub = TlsHub::start(tmp.path(), "cloud", "");
        let root = Ca::root("Clinics root");
        let (a_key, hq_key) = (key(), key());
        let a = root.issue(&a_key, "boston", 60);
        let hq = root.issue(&hq_key, "hq", 60);
        hub.add_cert_edge("boston", &a, &[]);
        hub.add_cert_edge("hq", &hq, &[]);
        Clinic {
            hub,
            _tmp: tmp,
            root,
            a_key,
            a,
            hq_key,
            hq,
        }
    }

    /// A hostile session presenting `cert` over TLS and claiming
    /// `identity` with `key` (a version 8 key `Hello`): the answer.
    async fn attempt(
        &self,
        cert: Option<&ClientCert>,
        identity: &str,
        key: &rcgen::KeyPair,
    ) -> (Hostile, Result<outpost_testkit::hostile::Welcome, Answer>) {
        let mut m = Hostile::connect_tls(&self.hub.url(), &self.hub.ca(), cert)
            .await
            .expect("connect");
        let k = KeyPair::from_pkcs8(&key.serialize_der()).unwrap();
        let mut hello = Hostile::hello_key_frame(identity, &k, new_db_id(), 0);
        if let Frame::Hello { max_version, .. } = &mut hello {
            *max_version = outpost::sync::frame::REPLACE_VERSION;
        }
        m.key = Some(Arc::new(k));
        let r = m.hello_with(hello).await;
        (m, r)
    }

    /// The honest `boston` with certificate A still gets in, and the hub
    /// logged no panic.
    async fn still_serves_boston(&self) {
        let a = identity(&self.a, &self.a_key);
        let (_, r) = self.attempt(Some(&a), "boston", &self.a_key).await;
        assert!(r.is_ok(), "the honest certificate is refused: {r:?}");
        assert!(
            !self.hub.proc.log().contains("panicked"),
            "{}",
            self.hub.proc.log()
        );
    }
}

fn identity(chain: &[rustls_pki_types::CertificateDer<'_>], key: &rcgen::KeyPair) -> ClientCert {
    ClientCert::from_pem(identity_pem(chain, key).as_bytes()).unwrap()
}

fn refused_with(r: &Result<outpost_testkit::hostile::Welcome, Answer>, code: &str) {
    match r {
        Err(a) => assert_error(a, code),
        Ok(w) => panic!("expected Error({code}), got Welcome {w:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_a_stolen_key_with_a_self_made_certificate_is_refused() {
    let c = Clinic::start("attack-cert-self-made");
    let forged = identity(&self_made(&c.a_key, "boston"), &c.a_key);
    let (_, r) = c.attempt(Some(&forged), "boston", &c.a_key).await;
    refused_with(&r, "cert_issuer");
    c.still_serves_boston().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_a_stolen_key_with_another_cas_certificate_under_the_same_names_is_refused() {
    let c = Clinic::start("attack-cert-other-ca");
    let impostor = Ca::root("Clinics root");
    let forged = identity(&impostor.issue(&c.a_key, "boston", 60), &c.a_key);
    let (_, r) = c.attempt(Some(&forged), "boston", &c.a_key).await;
    refused_with(&r, "cert_issuer");
    c.still_serves_boston().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_a_key_without_its_certificate_or_with_another_identitys_is_refused() {
    let c = Clinic::start("attack-cert-required");
    let (_, r) = c.attempt(None, "boston", &c.a_key).await;
    refused_with(&r, "cert_required");
    let hq = identity(&c.hq, &c.hq_key);
    let (_, r) = c.attempt(Some(&hq), "boston", &c.a_key).await;
    refused_with(&r, "cert_required");
    c.still_serves_boston().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_an_expired_certificate_is_refused() {
    let c = Clinic::start("attack-cert-expired");
    let k = key();
    let short = c.root.leaf(&k, "boston", now() - 60, now() + 1);
    let f = c.hub.dir.join("short.pem");
    std::fs::write(&f, crate::pki::chain_pem(&short)).unwrap();
    let reloads = c.hub.reloads();
    let (ok, _, err) = c
        .hub
        .cli(&["edge", "cert-add", "boston", "--cert", &f.to_string_lossy()]);
    assert!(ok, "{err}");
    c.hub.wait_reload(reloads);
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let (_, r) = c.attempt(Some(&identity(&short, &k)), "boston", &k).await;
    refused_with(&r, "cert_expired");
    c.still_serves_boston().await;
}

/// Registers `chain` as the replacement of the session's certificate: the
/// `ReplaceResult` code.
async fn replace(
    m: &mut Hostile,
    request: u64,
    chain: &[rustls_pki_types::CertificateDer<'_>],
) -> String {
    m.send(&Frame::Replace {
        request,
        chain: ders(chain),
    })
    .await
    .unwrap();
    replace_result(&m.answer().await).1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_retired_and_dropped_certificates_cannot_act() {
    let c = Clinic::start("attack-cert-retired");
    let (kb, kc, kd) = (key(), key(), key());
    let (b, cc, d) = (
        c.root.issue(&kb, "boston", 60),
        c.root.issue(&kc, "boston", 60),
        c.root.issue(&kd, "boston", 60),
    );
    // A registers B, then C instead: B is dropped.
    let (mut a_session, r) = c
        .attempt(Some(&identity(&c.a, &c.a_key)), "boston", &c.a_key)
        .await;
    r.expect("A gets in");
    assert_eq!(replace(&mut a_session, 1, &b).await, "");
    assert_eq!(replace(&mut a_session, 2, &cc).await, "");
    let (_, r) = c.attempt(Some(&identity(&b, &kb)), "boston", &kb).await;
    refused_with(&r, "unauthorized");
    // C registers D: A is retired, and A's new sessions are refused.
    let (mut c_session, r) = c.attempt(Some(&identity(&cc, &kc)), "boston", &kc).await;
    r.expect("C gets in");
    assert_eq!(replace(&mut c_session, 1, &d).await, "");
    let (_, r) = c
        .attempt(Some(&identity(&c.a, &c.a_key)), "boston", &c.a_key)
        .await;
    refused_with(&r, "cert_replaced");
    let (_, r) = c.attempt(Some(&identity(&d, &kd)), "boston", &kd).await;
    assert!(r.is_ok(), "D gets in: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_a_replacement_from_another_issuer_is_refused_and_changes_nothing() {
    let c = Clinic::start("attack-cert-replace-issuer");
    let before = c.hub.config();
    let (mut m, r) = c
        .attempt(Some(&identity(&c.a, &c.a_key)), "boston", &c.a_key)
        .await;
    r.expect("A gets in");
    assert_eq!(
        replace(&mut m, 1, &self_made(&key(), "boston")).await,
        "replace_issuer"
    );
    let impostor = Ca::root("Clinics root");
    assert_eq!(
        replace(&mut m, 2, &impostor.issue(&key(), "boston", 60)).await,
        "replace_issuer"
    );
    // Its own key again, or garbage: refused too.
    assert_eq!(
        replace(&mut m, 3, &c.root.issue(&c.a_key, "boston", 90)).await,
        "replace_same_key"
    );
    let junk = [rustls_pki_types::CertificateDer::from(vec![0x30, 1, 0])];
    assert_eq!(replace(&mut m, 4, &junk).await, "replace_invalid");
    assert_eq!(c.hub.config(), before, "the configuration is unchanged");
    c.still_serves_boston().await;
}
