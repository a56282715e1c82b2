//! The hub machine's handshake and batch signatures (`docs/protocol.md`
//! §2–§3): a key `Hello` is answered with a `Challenge` (a fresh nonce and
//! the hub database's id), the edge signs [`auth_message`] for this session,
//! and only a proof that verifies under the identity's enrolled key (or the
//! key an enrollment code is redeemed for) reaches `Authenticate`. Nothing
//! else is read or stored for the connection before that. In the session,
//! every `Push` must continue the identity's chain (`seq`, `prev`) and carry
//! the key's signature of its [`BatchManifest`].

use super::{HubAction, HubMetric, HubSession, Phase, RejectReason};
use crate::cv::DbId;
use crate::keys::PublicKey;
use crate::sync::frame::{AuthMode, Frame, WireDoc};
use crate::sync::signed::{AuthContext, BatchManifest, GENESIS, NONCE_LEN, auth_message};

/// A batch's key and signature.
type Signed = (PublicKey, Vec<u8>);

/// What a `Hello` asked for, kept until its proof is checked.
#[derive(Debug, Clone)]
pub(super) struct PendingHello {
    pub database: String,
    pub identity: String,
    pub credential: String,
    pub auth: AuthMode,
    /// The key the edge presents (key and enrollment sessions).
    pub key: Option<PublicKey>,
    pub pull_checkpoint: u64,
    pub checkpoint_hub: DbId,
    /// The hub id the challenge named.
    pub hub_id: DbId,
    /// The key the proof must verify under (from the lookup).
    pub expected: Option<PublicKey>,
}

/// A fresh random nonce from the platform's secure source.
pub(super) fn fresh_nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    crate::platform::random_bytes(&mut n);
    n
}

/// The one message of every failed authentication (it must not tell an
/// unknown identity from a wrong key or a spent code).
const UNAUTHORIZED: &str = "unknown identity, wrong key or credential, spent or expired enrollment code, or a database this identity may not use";

impl HubSession {
    /// Whether the session has not authenticated yet.
    pub(super) fn authenticating(&self) -> bool {
        matches!(
            self.phase,
            Phase::AwaitHello | Phase::LookingUp | Phase::AwaitProof | Phase::Authenticating
        )
    }

    /// A `Hello` in a version this hub speaks: a token goes straight to
    /// `Authenticate`; a key or an enrollment code to `Lookup`.
    pub(super) fn on_hello(
        &mut self,
        mut hello: PendingHello,
        key: &[u8],
        now: i64,
        out: &mut Vec<HubAction>,
    ) {
        if hello.auth == AuthMode::Token {
            self.phase = Phase::Authenticating;
            return self.authenticate(hello, out);
        }
        let key = match PublicKey::from_sec1(key) {
            Ok(k) => k,
            Err(e) => {
                return self.fail(out, now, "protocol", &format!("Hello: {e}"));
            }
        };
        if hello.auth == AuthMode::Enroll && hello.credential.is_empty() {
            return self.refuse(out, now, "unauthorized", UNAUTHORIZED);
        }
        hello.key = Some(key.clone());
        self.phase = Phase::LookingUp;
        out.push(HubAction::Lookup {
            database: hello.database.clone(),
            identity: hello.identity.clone(),
            auth: hello.auth,
            key,
            credential: hello.credential.clone(),
        });
        self.hello = Some(hello);
    }

    /// The lookup's answer: send the challenge (whatever the answer, so an
    /// unknown identity looks like a wrong key).
    pub(super) fn on_lookup(
        &mut self,
        hub_id: DbId,
        expected: Option<PublicKey>,
        now: i64,
        out: &mut Vec<HubAction>,
    ) {
        let Some(hello) = self.hello.as_mut() else {
            return;
        };
        hello.hub_id = hub_id;
        hello.expected = expected;
        self.phase = Phase::AwaitProof;
        let (version, nonce) = (self.version, self.challenge);
        self.send(
            out,
            now,
            Frame::Challenge {
                version,
                nonce,
                hub_id,
            },
        );
    }

    /// The edge's `Proof`: the signature of this session's auth message
    /// under the expected key, or the session is refused.
    pub(super) fn on_proof(&mut self, signature: &[u8], now: i64, out: &mut Vec<HubAction>) {
        let Some(hello) = self.hello.take() else {
            return self.refuse(out, now, "unauthorized", UNAUTHORIZED);
        };
        let verified = match (&hello.key, &hello.expected) {
            (Some(key), Some(expected)) if key == expected => {
                let msg = auth_message(&AuthContext {
                    version: self.version,
                    hub_id: hello.hub_id,
                    nonce: self.challenge,
                    database: &hello.database,
                    identity: &hello.identity,
                    edge_db: self.edge_db_id,
                    key,
                });
                self.verifier.verify(key, &msg, signature)
            }
            _ => false,
        };
        if !verified {
            return self.refuse(out, now, "unauthorized", UNAUTHORIZED);
        }
        self.phase = Phase::Authenticating;
        self.key = hello.key.clone();
        self.authenticate(hello, out);
    }

    fn authenticate(&mut self, hello: PendingHello, out: &mut Vec<HubAction>) {
        out.push(HubAction::Authenticate {
            database: hello.database,
            identity: hello.identity,
            auth: hello.auth,
            key: hello.key,
            credential: hello.credential,
            edge_db_id: self.edge_db_id,
            pull_checkpoint: hello.pull_checkpoint,
            checkpoint_hub: hello.checkpoint_hub,
        });
    }

    /// A `Push`'s place in the identity's chain and its signature (key
    /// sessions), before any other rule: its manifest, and the key and
    /// signature to record. `None` when the session was refused (replayed,
    /// reordered or truncated batches: `batch_sequence`; a signature that
    /// does not verify under this session's key: `bad_signature`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn check_signed(
        &mut self,
        upto: u64,
        seq: u64,
        prev: [u8; 32],
        signature: Vec<u8>,
        docs: &[WireDoc],
        now: i64,
        out: &mut Vec<HubAction>,
    ) -> Option<(BatchManifest, Option<Signed>)> {
        let Some(key) = self.key.clone() else {
            // A token session (development mode): unsigned, no chain.
            return Some((
                BatchManifest::of(self.edge_db_id, 0, GENESIS, upto, docs),
                None,
            ));
        };
        let (head_seq, head_hash) = self.batch_head;
        if seq != head_seq.wrapping_add(1) || prev != head_hash {
            let msg = format!(
                "batch {seq} does not continue this edge's chain (the hub accepted batch {head_seq} last): replayed, reordered, or another session moved it; reconnect"
            );
            self.chain_refused(out, now, upto, "batch_sequence", &msg);
            return None;
        }
        let manifest = BatchManifest::of(self.edge_db_id, seq, prev, upto, docs);
        if !self.verifier.verify(&key, &manifest.message(), &signature) {
            let msg = format!(
                "the signature of batch {seq} does not verify under this session's key {}",
                key.fingerprint()
            );
            self.chain_refused(out, now, upto, "bad_signature", &msg);
            return None;
        }
        Some((manifest, Some((key, signature))))
    }

    /// Ends the session over a batch that cannot be taken whole (its chain
    /// or signature): audited, counted, `Error(code)`.
    pub(super) fn chain_refused(
        &mut self,
        out: &mut Vec<HubAction>,
        now: i64,
        upto: u64,
        code: &'static str,
        message: &str,
    ) {
        out.push(HubAction::RecordRefusal {
            edge_db_id: self.edge_db_id,
            upto,
            code: code.into(),
            id: String::new(),
            rule: "signed batches".into(),
            message: message.into(),
        });
        out.push(HubAction::Metric(HubMetric::Rejected(
            RejectReason::Session(code),
        )));
        self.fail(out, now, code, message);
    }
}
