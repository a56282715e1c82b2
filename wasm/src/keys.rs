//! The edge's key pair in the browser: WebCrypto and IndexedDB, all of it
//! in this file.
//!
//! An identity's key is an ECDSA P-256 pair made by
//! `crypto.subtle.generateKey` with `extractable: false`: page script can
//! sign with the private key but never read it out (`exportKey` refuses).
//! The pair is kept as `CryptoKey` objects in the IndexedDB database
//! [`KEYS_DB`] (object store [`KEYS_STORE`]), under the key `[local
//! database name, identity]`; IndexedDB's structured clone keeps them
//! non-extractable across reloads and browser restarts. Next to it: the
//! public key's 65 raw bytes (`exportKey("raw")`, what the hub is given)
//! and whether the hub accepted it (`enrolled`).
//!
//! Where the global scope has no IndexedDB (Node), keys live in memory for
//! the life of the process (an enrolled key is then lost on exit: Node
//! edges that must survive a restart use the native client and its key
//! file).
//!
//! Not encryption at rest: the key bytes sit in the browser profile's
//! files. Non-extractable stops page script from copying the key, not
//! someone who reads the disk of a lost laptop (docs/security.md).
//!
//! Signatures: `subtle.sign({name: "ECDSA", hash: "SHA-256"})` gives the
//! 64-byte `r || s` form the hub verifies (`outpost::keys`).

use std::cell::RefCell;
use std::collections::HashMap;

use js_sys::{Array, Object, Reflect, Uint8Array};
use outpost::keys::{PublicKey, SIGNATURE_LEN};
use outpost::store::idb as records;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::IdbDatabase;
use web_sys::{CryptoKey, CryptoKeyPair, EcKeyGenParams, EcdsaParams, SubtleCrypto};

use crate::error::{js_error, message_of};

/// The IndexedDB database holding the edge keys of this origin.
pub const KEYS_DB: &str = "outpost-keys";
/// Its one object store.
pub const KEYS_STORE: &str = "keys";
/// Schema version of [`KEYS_DB`].
const KEYS_VERSION: u32 = 1;

/// An identity's key pair, as stored.
#[derive(Clone)]
pub struct EdgeKey {
    /// The private half (non-extractable; signs).
    pub private: CryptoKey,
    /// The public half, as the hub knows it.
    pub public: PublicKey,
    /// Whether a hub accepted the key (an enrollment was redeemed for it,
    /// or a session authenticated with it).
    pub enrolled: bool,
}

impl EdgeKey {
    /// `{ identity, publicKey, fingerprint, enrolled }` for JS.
    pub fn info(&self, identity: &str) -> JsValue {
        let o = Object::new();
        let set = |k: &str, v: JsValue| {
            // Setting a property of a fresh plain object cannot fail.
            let _ = Reflect::set(&o, &k.into(), &v);
        };
        set("identity", identity.into());
        set("publicKey", self.public.to_text().into());
        set("fingerprint", self.public.fingerprint().into());
        set("enrolled", self.enrolled.into());
        o.into()
    }
}

thread_local! {
    /// The keys of a scope without IndexedDB (Node): for the process's life.
    static MEMORY: RefCell<HashMap<(String, String), EdgeKey>> = RefCell::new(HashMap::new());
}

/// A key error as a JS `OutpostError`.
fn key_error(code: &str, what: &str, e: &JsValue) -> JsValue {
    js_error(code, &format!("edge key: {what}: {}", message_of(e)))
}

/// `crypto.subtle` of this scope (window, worker or Node).
fn subtle() -> Result<SubtleCrypto, JsValue> {
    let crypto = Reflect::get(&js_sys::global(), &"crypto".into()).unwrap_or(JsValue::UNDEFINED);
    let subtle = if crypto.is_object() {
        Reflect::get(&crypto, &"subtle".into()).unwrap_or(JsValue::UNDEFINED)
    } else {
        JsValue::UNDEFINED
    };
    subtle.dyn_into::<SubtleCrypto>().map_err(|_| {
        js_error(
            "unsupported",
            "edge keys need WebCrypto (crypto.subtle), which browsers give only to secure \
             contexts: serve the page over https:// or from localhost / 127.0.0.1",
        )
    })
}

/// Whether this scope has IndexedDB.
fn has_indexed_db() -> bool {
    Reflect::get(&js_sys::global(), &"indexedDB".into()).is_ok_and(|v| v.is_object())
}

/// The store key of an identity's key pair.
fn store_key(local: &str, identity: &str) -> JsValue {
    Array::of2(&local.into(), &identity.into()).into()
}

async fn open() -> Result<IdbDatabase, JsValue> {
    records::open_records(KEYS_DB, KEYS_VERSION, KEYS_STORE)
        .await
        .map_err(|e| idb_error("open", &e))
}

fn idb_error(what: &str, e: &JsValue) -> JsValue {
    let e = records::error_from_js(what, e);
    js_error("io", &format!("edge key: {e} (IndexedDB {KEYS_DB})"))
}

/// A stored record back as a key (`None` if it is not one of ours).
fn from_record(v: &JsValue) -> Option<EdgeKey> {
    if !v.is_object() {
        return None;
    }
    let private = Reflect::get(v, &"privateKey".into())
        .ok()?
        .dyn_into::<CryptoKey>()
        .ok()?;
    let raw = Reflect::get(v, &"publicRaw".into())
        .ok()?
        .dyn_into::<Uint8Array>()
        .ok()?
        .to_vec();
    let public = PublicKey::from_sec1(&raw).ok()?;
    let enrolled = Reflect::get(v, &"enrolled".into()).ok()?.as_bool() == Some(true);
    Some(EdgeKey {
        private,
        public,
        enrolled,
    })
}

fn to_record(k: &EdgeKey) -> JsValue {
    let o = Object::new();
    let _ = Reflect::set(&o, &"privateKey".into(), &k.private);
    let raw = Uint8Array::from(&k.public.as_bytes()[..]);
    let _ = Reflect::set(&o, &"publicRaw".into(), &raw);
    let _ = Reflect::set(&o, &"enrolled".into(), &k.enrolled.into());
    let _ = Reflect::set(&o, &"created".into(), &js_sys::Date::now().into());
    o.into()
}

/// The stored key of `identity` for the local database `local`, if any.
pub async fn load(local: &str, identity: &str) -> Result<Option<EdgeKey>, JsValue> {
    if !has_indexed_db() {
        let k = (local.to_string(), identity.to_string());
        return Ok(MEMORY.with(|m| m.borrow().get(&k).cloned()));
    }
    let db = open().await?;
    let r = records::get(&db, KEYS_STORE, &store_key(local, identity))
        .await
        .map_err(|e| idb_error("read", &e));
    db.close();
    Ok(r?.as_ref().and_then(from_record))
}

/// The stored key, or a new one made and stored (another tab that made one
/// first wins: its key is returned).
pub async fn load_or_create(local: &str, identity: &str) -> Result<EdgeKey, JsValue> {
    if let Some(k) = load(local, identity).await? {
        return Ok(k);
    }
    let made = generate().await?;
    if !has_indexed_db() {
        let k = (local.to_string(), identity.to_string());
        return Ok(MEMORY.with(|m| m.borrow_mut().entry(k).or_insert(made).clone()));
    }
    let db = open().await?;
    // `add`: if the key exists, another tab made one first.
    let added = records::write(
        &db,
        KEYS_STORE,
        &store_key(local, identity),
        &to_record(&made),
        true,
    )
    .await
    .map_err(|e| idb_error("write", &e));
    db.close();
    match added? {
        true => Ok(made),
        false => load(local, identity).await?.ok_or_else(|| {
            js_error(
                "io",
                &format!("edge key: could not store the key of {identity} in {KEYS_DB}"),
            )
        }),
    }
}

/// Records that a hub accepted the key of `identity` (`enrolled`).
pub async fn mark_enrolled(local: &str, identity: &str) -> Result<(), JsValue> {
    if !has_indexed_db() {
        let k = (local.to_string(), identity.to_string());
        MEMORY.with(|m| {
            if let Some(e) = m.borrow_mut().get_mut(&k) {
                e.enrolled = true;
            }
        });
        return Ok(());
    }
    let Some(mut key) = load(local, identity).await? else {
        return Ok(());
    };
    if key.enrolled {
        return Ok(());
    }
    key.enrolled = true;
    let db = open().await?;
    let r = records::write(
        &db,
        KEYS_STORE,
        &store_key(local, identity),
        &to_record(&key),
        false,
    )
    .await
    .map_err(|e| idb_error("write", &e));
    db.close();
    r.map(|_| ())
}

/// Makes a new non-extractable ECDSA P-256 pair.
async fn generate() -> Result<EdgeKey, JsValue> {
    let subtle = subtle()?;
    let params = EcKeyGenParams::new("ECDSA", "P-256");
    let usages = Array::of2(&"sign".into(), &"verify".into());
    let p = subtle
        .generate_key_with_object(&params, false, &usages)
        .map_err(|e| key_error("unsupported", "generateKey", &e))?;
    let pair: CryptoKeyPair = JsFuture::from(p)
        .await
        .map_err(|e| key_error("unsupported", "generateKey", &e))?
        .unchecked_into();
    let private = pair.get_private_key();
    let public = pair.get_public_key();
    let p = subtle
        .export_key("raw", &public)
        .map_err(|e| key_error("other", "exportKey", &e))?;
    let raw = JsFuture::from(p)
        .await
        .map_err(|e| key_error("other", "exportKey", &e))?;
    let raw = Uint8Array::new(&raw).to_vec();
    let public = PublicKey::from_sec1(&raw)
        .map_err(|e| js_error("other", &format!("edge key: exported public key: {e}")))?;
    Ok(EdgeKey {
        private,
        public,
        enrolled: false,
    })
}

/// The 64-byte `r || s` ECDSA P-256 / SHA-256 signature of `message`.
pub async fn sign(key: &CryptoKey, message: &[u8]) -> Result<Vec<u8>, JsValue> {
    let subtle = subtle()?;
    let params = EcdsaParams::new_with_str("ECDSA", "SHA-256");
    let p = subtle
        .sign_with_object_and_u8_array(&params, key, message)
        .map_err(|e| key_error("other", "sign", &e))?;
    let sig = JsFuture::from(p)
        .await
        .map_err(|e| key_error("other", "sign", &e))?;
    let sig = Uint8Array::new(&sig).to_vec();
    if sig.len() != SIGNATURE_LEN {
        return Err(js_error(
            "other",
            &format!(
                "edge key: a signature of {} bytes, not {SIGNATURE_LEN}",
                sig.len()
            ),
        ));
    }
    Ok(sig)
}

/// The package's `db.identity(identity)`: `{ identity, publicKey,
/// fingerprint, enrolled }` of the identity's key for the local database
/// `local`, made first if `create` and there is none; `null` if there is
/// none and not `create`.
#[wasm_bindgen(js_name = "__edgeIdentity", skip_typescript)]
pub async fn edge_identity(
    local: String,
    identity: String,
    create: bool,
) -> Result<JsValue, JsValue> {
    let key = if create {
        Some(load_or_create(&local, &identity).await?)
    } else {
        load(&local, &identity).await?
    };
    Ok(key.map_or(JsValue::NULL, |k| k.info(&identity)))
}
