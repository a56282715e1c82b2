//! Key identities for tests: one key pair per identity name, made once per
//! test process ([`key_for`]) and remembered, so a hub configuration written
//! with [`crate::key_edge_toml`] and the edges that connect to it (the
//! native client's [`signer`], the hostile client of [`crate::hostile`])
//! agree on the key without passing it around.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use outpost::keys::{KeyPair, PublicKey, Signer};

fn registry() -> &'static Mutex<BTreeMap<String, Arc<KeyPair>>> {
    static R: OnceLock<Mutex<BTreeMap<String, Arc<KeyPair>>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// The key of identity `name` in this process (made on first use).
pub fn key_for(name: &str) -> Arc<KeyPair> {
    let mut r = registry().lock().unwrap_or_else(|p| p.into_inner());
    r.entry(name.to_string())
        .or_insert_with(|| Arc::new(KeyPair::generate().expect("generate a key")))
        .clone()
}

/// The key of identity `name` if [`key_for`] made one in this process.
pub fn registered(name: &str) -> Option<Arc<KeyPair>> {
    let r = registry().lock().unwrap_or_else(|p| p.into_inner());
    r.get(name).cloned()
}

/// A fresh key that is nobody's (not registered).
pub fn fresh_key() -> Arc<KeyPair> {
    Arc::new(KeyPair::generate().expect("generate a key"))
}

/// The public key of identity `name` ([`key_for`]).
pub fn public_key(name: &str) -> PublicKey {
    key_for(name).public_key().clone()
}

/// `key_for(name)` as the native client's signer.
pub fn signer(name: &str) -> Arc<dyn Signer> {
    key_for(name)
}
