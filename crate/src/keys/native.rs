//! Native keys: ECDSA P-256 through `ring` (the crypto library the hub's and
//! the client's TLS already use). A key file holds the PKCS#8 document of
//! the private key as hex text, written with mode 0600.

use std::path::Path;

use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
    UnparsedPublicKey,
};

use super::{KeyError, PublicKey, Signer, Verifier};
use crate::codec::{from_hex, to_hex};

/// The first line of a key file.
const FILE_HEADER: &str = "outpost-key p256 pkcs8";

/// Checks ECDSA P-256 / SHA-256 signatures (fixed `r || s` form).
#[derive(Debug, Default, Clone, Copy)]
pub struct P256Verifier;

impl Verifier for P256Verifier {
    fn verify(&self, key: &PublicKey, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.as_bytes())
            .verify(message, signature)
            .is_ok()
    }
}

/// A private key held in memory (a native edge's or a hub's key file).
pub struct KeyPair {
    pair: EcdsaKeyPair,
    public: PublicKey,
    pkcs8: Vec<u8>,
    rng: SystemRandom,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyPair({})", self.public.fingerprint())
    }
}

impl KeyPair {
    /// A new random key.
    pub fn generate() -> Result<KeyPair, KeyError> {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| KeyError::Unavailable("the system random source failed".into()))?;
        KeyPair::from_pkcs8(doc.as_ref())
    }

    /// The key of a PKCS#8 document.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<KeyPair, KeyError> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
            .map_err(|e| KeyError::Malformed(format!("not a P-256 PKCS#8 key: {e}")))?;
        let public = PublicKey::from_sec1(pair.public_key().as_ref())?;
        Ok(KeyPair {
            pair,
            public,
            pkcs8: pkcs8.to_vec(),
            rng,
        })
    }

    /// Loads a key file written by [`KeyPair::save`].
    pub fn load(path: &Path) -> Result<KeyPair, KeyError> {
        let err = |reason: String| KeyError::File {
            path: path.display().to_string(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
        if meta.len() > 4096 {
            return Err(err("larger than a key file".into()));
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let mut lines = text.lines();
        if lines.next().map(str::trim) != Some(FILE_HEADER) {
            return Err(err(format!(
                "not an Outpost key file (no {FILE_HEADER:?} line)"
            )));
        }
        let hex: String = lines.map(str::trim).collect();
        let der = from_hex(&hex).ok_or_else(|| err("bad hex digits".into()))?;
        KeyPair::from_pkcs8(&der).map_err(|e| err(e.to_string()))
    }

    /// Writes the key to a new file `path` (mode 0600 on Unix); refuses to
    /// overwrite one.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        use std::io::Write;
        let err = |reason: String| KeyError::File {
            path: path.display().to_string(),
            reason,
        };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(|e| err(e.to_string()))?;
        let text = format!("{FILE_HEADER}\n{}\n", to_hex(&self.pkcs8));
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| err(e.to_string()))
    }

    /// Loads `path`, or makes a new key and saves it there when the file
    /// does not exist. Returns the key and whether it was made.
    pub fn load_or_create(path: &Path) -> Result<(KeyPair, bool), KeyError> {
        if path.exists() {
            return Ok((KeyPair::load(path)?, false));
        }
        let k = KeyPair::generate()?;
        k.save(path)?;
        Ok((k, true))
    }
}

impl Signer for KeyPair {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.pair
            .sign(&self.rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| KeyError::Unavailable("signing failed".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_verifies_and_refuses_other_messages_and_keys() {
        let a = KeyPair::generate().unwrap();
        let b = KeyPair::generate().unwrap();
        let sig = a.sign(b"hello").unwrap();
        assert_eq!(sig.len(), super::super::SIGNATURE_LEN);
        assert!(P256Verifier.verify(a.public_key(), b"hello", &sig));
        assert!(!P256Verifier.verify(a.public_key(), b"hellp", &sig));
        assert!(!P256Verifier.verify(b.public_key(), b"hello", &sig));
        let mut bad = sig.clone();
        bad[10] ^= 1;
        assert!(!P256Verifier.verify(a.public_key(), b"hello", &bad));
        assert!(!P256Verifier.verify(a.public_key(), b"hello", &sig[..63]));
        // A point not on the curve verifies nothing.
        let mut off = *a.public_key().as_bytes();
        off[40] ^= 1;
        let off = PublicKey::from_sec1(&off).unwrap();
        assert!(!P256Verifier.verify(&off, b"hello", &sig));
    }

    #[test]
    fn key_files_round_trip_and_bad_files_are_typed() {
        let dir = std::env::temp_dir().join(format!("outpost-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("edge.key");
        let _ = std::fs::remove_file(&path);
        let (k, made) = KeyPair::load_or_create(&path).unwrap();
        assert!(made);
        let (again, made) = KeyPair::load_or_create(&path).unwrap();
        assert!(!made);
        assert_eq!(k.public_key(), again.public_key());
        assert!(
            matches!(k.save(&path), Err(KeyError::File { .. })),
            "never overwrites"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        for (name, text) in [
            ("empty", ""),
            ("header", "something else\n00\n"),
            ("hex", "outpost-key p256 pkcs8\nzz\n"),
            ("der", "outpost-key p256 pkcs8\n3000\n"),
        ] {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            assert!(
                matches!(KeyPair::load(&p), Err(KeyError::File { .. })),
                "{name}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
