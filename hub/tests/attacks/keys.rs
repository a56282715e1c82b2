//! Key identities (issue 10 §2, protocol 3): the handshake is a challenge
//! (a fresh nonce, the hub database's id, the protocol version) answered by
//! a proof signed with the identity's enrolled key; nothing but the
//! handshake is processed before it succeeds. Proofs replayed from another
//! session or made for another hub, unknown identities and wrong keys (the
//! same answer for both), enrollment codes reused, expired or raced,
//! version-2 and token `Hello`s while development mode is off.

use std::time::Duration;

use outpost::sync::frame::AuthMode;
use outpost_testkit::hostile::Challenge;
use outpost_testkit::keys;

use crate::common::*;

/// Sends `hello` without answering the challenge; returns the challenge.
async fn challenged(h: &mut Hostile, hello: &Frame) -> Challenge {
    h.auto_prove = false;
    h.send(hello).await.unwrap();
    match h.answer().await {
        Answer::Unexpected(f) if matches!(*f, Frame::Challenge { .. }) => {
            h.challenge.clone().unwrap()
        }
        other => panic!("expected a Challenge, got {other:?}"),
    }
}

/// Sends a proof and returns the answer.
async fn prove(h: &mut Hostile, signature: Vec<u8>) -> Answer {
    h.send(&Frame::Proof { signature }).await.unwrap();
    h.answer().await
}

/// An `[[edge]]` with a pending enrollment code.
fn enroll_toml(name: &str, code: &str, expires: i64) -> String {
    format!(
        "[[edge]]\nname = {name:?}\nenroll_code_sha256 = {:?}\nenroll_expires = {expires}\ndatabase = \"main\"\nread = [\"shared/\"]\nwrite = [\"shared/\"]\n\n",
        outpost_hub::config::token_sha256_hex(code)
    )
}

fn now_s() -> i64 {
    now_ms() / 1000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proof_replayed_from_another_session() {
    let hub = Hub::start();
    let key = keys::key_for("alice");
    let db = new_db_id();
    let hello = Hostile::hello_key_frame("alice", &key, db, 0);
    // Session 1: a valid proof (recorded by the attacker).
    let mut s1 = hub.connect().await;
    let c1 = challenged(&mut s1, &hello).await;
    let old = Hostile::proof(&key, &c1, "main", "alice", db);
    assert!(matches!(
        prove(&mut s1, old.clone()).await,
        Answer::Welcome(_)
    ));
    s1.close().await;
    // Session 2: a new nonce; the old proof does not answer it.
    let mut s2 = hub.connect().await;
    let c2 = challenged(&mut s2, &hello).await;
    assert_ne!(c1.nonce, c2.nonce, "a fresh nonce per connection");
    assert_eq!(c1.hub_id, c2.hub_id);
    assert_error(&prove(&mut s2, old).await, "unauthorized");
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proof_made_for_another_hub_or_database() {
    let hub = Hub::start();
    let key = keys::key_for("alice");
    let db = new_db_id();
    let hello = Hostile::hello_key_frame("alice", &key, db, 0);
    for variant in 0..3 {
        let mut s = hub.connect().await;
        let mut c = challenged(&mut s, &hello).await;
        let (database, identity) = match variant {
            0 => {
                c.hub_id = new_db_id();
                ("main", "alice")
            }
            1 => ("other", "alice"),
            _ => ("main", "bob"),
        };
        let sig = Hostile::proof(&key, &c, database, identity, db);
        assert_error(&prove(&mut s, sig).await, "unauthorized");
    }
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_identity_and_wrong_key_get_the_same_answer() {
    let hub = Hub::start();
    let stranger = keys::fresh_key();
    let mut answers = Vec::new();
    for (who, key) in [
        ("nobody", stranger.clone()),
        ("alice", stranger.clone()),
        ("alice", keys::key_for("bob")),
    ] {
        let db = new_db_id();
        let mut s = hub.connect().await;
        let c = challenged(&mut s, &Hostile::hello_key_frame(who, &key, db, 0)).await;
        let sig = Hostile::proof(&key, &c, "main", who, db);
        let a = prove(&mut s, sig).await;
        assert_error(&a, "unauthorized");
        answers.push((c.version, c.hub_id, a));
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "the answers tell identities apart: {answers:?}"
    );
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_but_the_handshake_before_the_proof() {
    let hub = Hub::start();
    let key = keys::key_for("alice");
    let db = new_db_id();
    let mut s = hub.connect().await;
    challenged(&mut s, &Hostile::hello_key_frame("alice", &key, db, 0)).await;
    // A push instead of the proof.
    let f = Frame::Push {
        upto: 1,
        seq: 1,
        prev: [0; 32],
        signature: vec![0; 64],
        docs: vec![doc("shared/notes/pre", "Notes", live(&[(db, 1)], b"{}"))],
    };
    s.send(&f).await.unwrap();
    let a = s.until_end().await;
    assert!(a.is_end(), "{a:?}");
    assert!(!hub.view().await.contains_key("shared/notes/pre"));
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_code_is_redeemed_once() {
    let code = "enroll-me-0001";
    let hub = Hub::start_with_edges(&enroll_toml("newbie", code, now_s() + 3600));
    let k1 = keys::fresh_key();
    let k2 = keys::fresh_key();
    // The first device redeems the code for its key.
    let mut d1 = hub.connect().await;
    d1.key = Some(k1.clone());
    let w = d1
        .hello_with(Hostile::hello_enroll_frame(
            "newbie",
            &k1,
            code,
            new_db_id(),
        ))
        .await;
    assert!(w.is_ok(), "{w:?}");
    let a = d1
        .push(vec![doc(
            "shared/notes/newbie",
            "Notes",
            live(&[(d1.db_id, 1)], b"{\"n\":1}"),
        )])
        .await;
    assert_acked(&a);
    d1.close().await;
    let cfg = hub.config_text();
    assert!(cfg.contains(&k1.public_key_text()), "{cfg}");
    assert!(!cfg.contains(&outpost_hub::config::token_sha256_hex(code)));
    // A second device with the same code: refused, the key unchanged.
    let mut d2 = hub.connect().await;
    d2.key = Some(k2.clone());
    let r = d2
        .hello_with(Hostile::hello_enroll_frame(
            "newbie",
            &k2,
            code,
            new_db_id(),
        ))
        .await;
    assert_error(&r.expect_err("a spent code"), "unauthorized");
    assert!(!hub.config_text().contains(&k2.public_key_text()));
    // The enrolled key works from now on, alone.
    let mut d3 = hub.connect().await;
    d3.key = Some(k1.clone());
    assert!(d3.hello("newbie", "", new_db_id(), 0).await.is_ok());
    d3.close().await;
    let (_, audit) = hub.finish_audited().await;
    let enrolled: Vec<&Value> = audit
        .iter()
        .filter(|l| l["record"]["edge"] == "newbie" && l["record"]["change"] == "enrolled")
        .filter(|l| l["record"]["key_id"].is_string())
        .collect();
    assert_eq!(enrolled.len(), 1, "{audit:#?}");
    assert_eq!(
        enrolled[0]["record"]["key_id"],
        outpost::keys::Signer::public_key(&*k1).fingerprint()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_code_raced_by_two_devices() {
    let code = "race-code-0002";
    let hub = Hub::start_with_edges(&enroll_toml("racer", code, now_s() + 3600));
    let mut devices = Vec::new();
    for _ in 0..4 {
        let k = keys::fresh_key();
        let mut d = hub.connect().await;
        d.key = Some(k.clone());
        devices.push((d, k));
    }
    let results = futures::future::join_all(devices.iter_mut().map(|(d, k)| {
        let f = Hostile::hello_enroll_frame("racer", k, code, new_db_id());
        d.hello_with(f)
    }))
    .await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "{results:?}");
    for r in results.iter().filter(|r| r.is_err()) {
        assert_error(r.as_ref().unwrap_err(), "unauthorized");
    }
    let cfg = hub.config_text();
    let keys_in = devices
        .iter()
        .filter(|(_, k)| cfg.contains(&k.public_key_text()))
        .count();
    assert_eq!(keys_in, 1, "{cfg}");
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_or_wrong_enrollment_code() {
    let hub = Hub::start_with_edges(
        &(enroll_toml("late", "late-code", now_s() - 10)
            + &enroll_toml("early", "right-code", now_s() + 3600)),
    );
    let before = hub.config_text();
    for (who, code) in [
        ("late", "late-code"),
        ("early", "wrong-code"),
        ("early", ""),
    ] {
        let k = keys::fresh_key();
        let mut d = hub.connect().await;
        d.key = Some(k.clone());
        let r = d
            .hello_with(Hostile::hello_enroll_frame(who, &k, code, new_db_id()))
            .await;
        assert_error(&r.expect_err("refused"), "unauthorized");
    }
    assert_eq!(hub.config_text(), before, "nothing redeemed");
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolled_identity_cannot_enroll_another_key_without_a_code() {
    // Alice (enrolled) presents an enrollment Hello with a made-up code and
    // her stranger key: refused; her enrolled key is kept.
    let hub = Hub::start();
    let k = keys::fresh_key();
    let mut d = hub.connect().await;
    d.key = Some(k.clone());
    let r = d
        .hello_with(Hostile::hello_enroll_frame(
            "alice",
            &k,
            "guess",
            new_db_id(),
        ))
        .await;
    assert_error(&r.expect_err("refused"), "unauthorized");
    assert!(!hub.config_text().contains(&k.public_key_text()));
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_2_hello_is_unsupported() {
    let hub = Hub::start();
    let mut s = hub.connect().await;
    let mut hello = Hostile::hello_frame("alice", "alice-token", new_db_id(), 0);
    if let Frame::Hello {
        min_version,
        max_version,
        ..
    } = &mut hello
    {
        *min_version = 1;
        *max_version = 2;
    }
    let r = s.hello_with(hello).await;
    assert_error(&r.expect_err("refused"), "unsupported_version");
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_hello_when_development_mode_is_off() {
    // No [dev] tokens: a token Hello is refused whatever it says.
    let hub = Hub::start();
    let mut s = hub.connect().await;
    s.token_mode = true;
    let r = s.hello("alice", "alice-token", new_db_id(), 0).await;
    assert_error(&r.expect_err("refused"), "unauthorized");
    // The operator's log says why (the edge is not told).
    let t = std::time::Instant::now();
    while !hub.proc().log().contains("tokens are off") {
        assert!(t.elapsed() < WAIT, "no log line: {}", hub.proc().log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_hello_without_a_key_is_a_protocol_error() {
    let hub = Hub::start();
    let mut s = hub.connect().await;
    let mut hello = Hostile::hello_key_frame("alice", &keys::key_for("alice"), new_db_id(), 0);
    if let Frame::Hello { key, auth, .. } = &mut hello {
        *key = vec![4; 10];
        *auth = AuthMode::Key;
    }
    s.timeout = Duration::from_secs(5);
    let r = s.hello_with(hello).await;
    assert_error(&r.expect_err("refused"), "protocol");
    hub.finish().await;
}

/// The text form of a key pair's public key.
trait KeyText {
    fn public_key_text(&self) -> String;
}

impl KeyText for outpost::keys::KeyPair {
    fn public_key_text(&self) -> String {
        outpost::keys::Signer::public_key(self).to_text()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_code_presented_for_another_identity() {
    // A valid code is bound to its edge: presented as another identity (one
    // with a key, one with a code of its own) it redeems nothing.
    let hub = Hub::start_with_edges(
        &(enroll_toml("newbie", "newbie-code", now_s() + 3600)
            + &enroll_toml("other", "other-code", now_s() + 3600)),
    );
    let before = hub.config_text();
    for who in ["alice", "other", "mallory"] {
        let k = keys::fresh_key();
        let mut d = hub.connect().await;
        d.key = Some(k.clone());
        let r = d
            .hello_with(Hostile::hello_enroll_frame(
                who,
                &k,
                "newbie-code",
                new_db_id(),
            ))
            .await;
        assert_error(&r.expect_err("refused"), "unauthorized");
    }
    assert_eq!(hub.config_text(), before, "nothing redeemed");
    hub.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_identity_is_told_so_only_after_proving_its_key() {
    // Whoever claims a revoked identity without its key gets the answer of
    // any failed proof: revocation is not an oracle of which identities
    // exist. The holder of the key learns it is revoked.
    let hub = Hub::start();
    let revoked = edges().replace(
        "name = \"mallory\"\n",
        "name = \"mallory\"\nrevoked = true\n",
    );
    hub.set_edges(&revoked);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut s = hub.connect().await;
    s.key = Some(keys::fresh_key());
    let r = s.hello("mallory", "", new_db_id(), 0).await;
    assert_error(&r.expect_err("refused"), "unauthorized");
    let mut s = hub.connect().await;
    let r = s.hello("mallory", "", new_db_id(), 0).await;
    assert_error(&r.expect_err("refused"), "revoked");
    hub.finish().await;
}
