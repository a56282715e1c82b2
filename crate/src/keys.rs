//! Identities as key pairs: the public key an edge is enrolled with, and the
//! small provider seam for signing and checking signatures.
//!
//! One algorithm: ECDSA over P-256 with SHA-256, signatures in the fixed
//! 64-byte `r || s` form (IEEE P1363) — what WebCrypto produces in every
//! browser, and what `ring` signs and checks natively. A public key is the
//! 65-byte uncompressed SEC1 point; its text form is `p256:` and 130 hex
//! digits (what `outpost-hub edge add --pubkey` takes and the audit trail
//! records).
//!
//! The providers: [`Verifier`] (the hub checks handshake proofs and batch
//! signatures through it; tests inject their own) and the edge shells'
//! `sign` (WebCrypto with a non-extractable key kept in IndexedDB in the
//! browser, [`KeyPair`] from a key file natively). What is signed is
//! defined once, in [`crate::sync::signed`].

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::codec::{from_hex, to_hex};

/// Bytes of a public key (uncompressed SEC1 P-256 point).
pub const PUBLIC_KEY_LEN: usize = 65;
/// Bytes of a signature (`r || s`).
pub const SIGNATURE_LEN: usize = 64;
/// The text prefix of a public key.
pub const KEY_PREFIX: &str = "p256:";

/// A key could not be parsed, loaded, made or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not a public key of the form `p256:` + 130 hex digits (a 65-byte
    /// uncompressed point).
    #[error("not a public key: {0} (expected \"p256:\" and 130 hex digits)")]
    Malformed(String),
    /// A key file that could not be read, written or understood.
    #[error("key file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The platform could not sign (no key, no crypto provider).
    #[error("cannot sign: {0}")]
    Unavailable(String),
}

/// An edge's public key: ECDSA P-256, 65 bytes uncompressed.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; PUBLIC_KEY_LEN]);

impl PublicKey {
    /// The key of these 65 bytes (an uncompressed point: first byte 4).
    /// Whether the point is on the curve is checked when a signature is
    /// verified under it.
    pub fn from_sec1(b: &[u8]) -> Result<PublicKey, KeyError> {
        let arr: [u8; PUBLIC_KEY_LEN] = b
            .try_into()
            .map_err(|_| KeyError::Malformed(format!("{} bytes, not {PUBLIC_KEY_LEN}", b.len())))?;
        if arr[0] != 4 {
            return Err(KeyError::Malformed("not an uncompressed point".into()));
        }
        Ok(PublicKey(arr))
    }

    /// Its 65 bytes.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }

    /// `p256:` and 130 lowercase hex digits.
    pub fn to_text(&self) -> String {
        format!("{KEY_PREFIX}{}", to_hex(&self.0))
    }

    /// Parses [`PublicKey::to_text`]'s form (surrounding spaces allowed).
    pub fn parse_text(s: &str) -> Result<PublicKey, KeyError> {
        let s = s.trim();
        let Some(hex) = s.strip_prefix(KEY_PREFIX) else {
            return Err(KeyError::Malformed("no \"p256:\" prefix".into()));
        };
        let bytes = from_hex(hex).ok_or_else(|| KeyError::Malformed("bad hex digits".into()))?;
        PublicKey::from_sec1(&bytes)
    }

    /// A short name of the key: the first 16 hex digits of its SHA-256
    /// (logs, `edge list`, the audit trail's `key_id`).
    pub fn fingerprint(&self) -> String {
        to_hex(&Sha256::digest(self.0)[..8])
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<PublicKey, KeyError> {
        PublicKey::parse_text(s)
    }
}

/// Checks signatures: the hub's side of the provider seam.
pub trait Verifier: Send + Sync + fmt::Debug {
    /// Whether `signature` is `key`'s signature of `message`.
    fn verify(&self, key: &PublicKey, message: &[u8], signature: &[u8]) -> bool;
}

/// A verifier that accepts nothing (a platform without one: every key
/// session is then refused).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoVerifier;

impl Verifier for NoVerifier {
    fn verify(&self, _: &PublicKey, _: &[u8], _: &[u8]) -> bool {
        false
    }
}

/// Signs with an edge's private key: the native side of the provider seam
/// (the browser signs through WebCrypto in the wasm bindings).
pub trait Signer: Send + Sync + fmt::Debug {
    /// The public key the signatures verify under.
    fn public_key(&self) -> &PublicKey;
    /// The 64-byte signature of `message`.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError>;
}

/// The platform's verifier: ECDSA P-256 through `ring` natively; none in
/// the browser (a hub does not run there).
pub fn default_verifier() -> Arc<dyn Verifier> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        Arc::new(native::P256Verifier)
    }
    #[cfg(target_arch = "wasm32")]
    {
        Arc::new(NoVerifier)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(not(target_arch = "wasm32"))]
pub use native::{KeyPair, P256Verifier};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_text_round_trips_and_bad_input_is_typed() {
        let mut b = [7u8; PUBLIC_KEY_LEN];
        b[0] = 4;
        let k = PublicKey::from_sec1(&b).unwrap();
        let t = k.to_text();
        assert!(t.starts_with("p256:04"));
        assert_eq!(t.len(), 5 + 130);
        assert_eq!(PublicKey::parse_text(&format!("  {t}\n")).unwrap(), k);
        assert_eq!(k.fingerprint().len(), 16);
        for bad in [
            "",
            "p256:",
            "ed25519:04",
            &t[..t.len() - 2],
            &format!("{t}00"),
            &t.replace("p256:04", "p256:02"),
            &t.replace("07", "zz"),
        ] {
            assert!(
                matches!(PublicKey::parse_text(bad), Err(KeyError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn no_verifier_accepts_nothing() {
        let mut b = [1u8; PUBLIC_KEY_LEN];
        b[0] = 4;
        let k = PublicKey::from_sec1(&b).unwrap();
        assert!(!NoVerifier.verify(&k, b"m", &[0; SIGNATURE_LEN]));
    }
}
