//! How a replication authenticates: a development token, the identity's
//! key kept in this browser ([`crate::keys`]), or an enrollment code
//! redeemed for that key.

use outpost::sync::EdgeConfig;
use wasm_bindgen::prelude::*;

use super::{Inner, web_sys_log};
use crate::error::{js_error, message_of};
use crate::keys;

/// How the replication authenticates (docs/protocol.md §2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Auth {
    /// A shared-secret token (the hub's development mode).
    Token,
    /// The identity's key, kept in this browser ([`keys`]).
    Key,
    /// Redeeming this one-time enrollment code for the identity's key (made
    /// if there is none yet); then [`Auth::Key`].
    Enroll(String),
}

/// Loads the identity's key for a key or enrollment session (made, for an
/// enrollment, if this browser has none yet) and sets the sessions'
/// settings to use it. Fails with code `no_key` when a key session finds
/// none (enroll first), or the key store's error.
pub(super) async fn prepare_key(inner: &Inner) -> Result<(), JsValue> {
    let auth = inner.auth.borrow().clone();
    if auth == Auth::Token || inner.key.borrow().is_some() {
        return Ok(());
    }
    let (database, identity) = {
        let c = inner.cfg.borrow();
        (c.database.clone(), c.identity.clone())
    };
    let key = match &auth {
        Auth::Enroll(_) => keys::load_or_create(&inner.local, &identity).await?,
        _ => keys::load(&inner.local, &identity).await?.ok_or_else(|| {
            js_error(
                "no_key",
                &format!(
                    "sync: this browser holds no key for identity {identity:?} of database \
                     {:?}: enroll it first (db.enroll with the code the hub's operator gave)",
                    inner.local
                ),
            )
        })?,
    };
    let cfg = match &auth {
        Auth::Enroll(code) => EdgeConfig::enrolling(&database, &identity, key.public.clone(), code),
        _ => EdgeConfig::with_key(&database, &identity, key.public.clone()),
    };
    *inner.cfg.borrow_mut() = cfg;
    *inner.key.borrow_mut() = Some(key);
    Ok(())
}

/// The hub accepted the identity's key: recorded in the key store.
pub(super) async fn key_accepted(inner: &Inner) {
    let identity = inner.cfg.borrow().identity.clone();
    match keys::mark_enrolled(&inner.local, &identity).await {
        Ok(()) => {
            if let Some(k) = inner.key.borrow_mut().as_mut() {
                k.enrolled = true;
            }
        }
        Err(e) => web_sys_log(&format!(
            "Outpost sync: cannot record the enrollment of {identity}: {}",
            message_of(&e)
        )),
    }
}
