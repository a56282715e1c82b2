//! Who an edge is (`docs/protocol.md` §2, hub side): the key a key or
//! enrollment `Hello` must prove ([`lookup`]), and what a proven key, an
//! enrollment code or (development mode) a token is worth against the live
//! configuration ([`verify`]), including the one-time, atomic redemption of
//! an enrollment code: the hub rewrites its configuration file (`pubkey`
//! set, the code removed), puts the new configuration in force at once and
//! records the enrollment in the database's audit trail.

use outpost::Batch;
use outpost::cv::DbId;
use outpost::db::{AUDIT_RECORD_VERSION, AuditKind, AuditScope, encode_record};
use outpost::keys::PublicKey;
use outpost::sync::frame::AuthMode;
use outpost::sync::run::AuthRequest;
use outpost::sync::{Frame, HubEvent};

use crate::config::{Config, EdgeAccess};
use crate::edit;
use crate::state::Hub;

/// Seconds since the Unix epoch (enrollment expiry).
pub fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The stable code of a revoked identity's refusal.
pub const REVOKED: &str = "revoked";

/// The identity is revoked (answer with [`revoked_frame`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revoked;

/// The `Error(revoked)` frame for `identity`.
pub fn revoked_frame(identity: &str) -> Frame {
    Frame::Error {
        code: REVOKED.into(),
        message: revoked_message(identity),
    }
}

/// The message of [`revoked_frame`].
pub fn revoked_message(identity: &str) -> String {
    format!(
        "identity {identity} is revoked at this hub; an operator can issue it a new \
         enrollment code (`outpost-hub edge enroll {identity}`)"
    )
}

/// The edge `identity` of `database` in `config`.
fn edge_of<'a>(config: &'a Config, identity: &str, database: &str) -> Option<&'a EdgeAccess> {
    config.edge(identity).filter(|e| e.database == database)
}

/// The answer to a key or enrollment `Hello`: `Ok(Challenge)` always (the
/// key to prove, or `None` when nothing can succeed: unknown identity, no
/// key enrolled, a wrong, spent or expired code), so the answer does not
/// tell which identities exist. A revoked identity is challenged under its
/// key like any other: only a proof by that key learns it is revoked
/// ([`verify`] answers `Revoked` after the proof), so nobody else can probe
/// which identities are revoked. Reads no database and changes nothing.
pub fn lookup(
    hub: &Hub,
    database: &str,
    identity: &str,
    auth: AuthMode,
    key: PublicKey,
    credential: &str,
) -> HubEvent<'static> {
    // A certificate identity proves the key its `Hello` presents if that
    // key is pinned for it; the chain is judged after the proof
    // (`crate::cert_session::authenticate`), so that only the key's holder
    // learns why a certificate is refused.
    let config = hub.config();
    let hub_id = hub
        .database(database)
        .filter(|_| config.database(database).is_some())
        .map_or(DbId([0; 16]), |d| d.db.db_id());
    let edge = edge_of(&config, identity, database);
    let expected = match (auth, edge) {
        (AuthMode::Key, Some(e)) if !e.certs.is_empty() => {
            e.certs.iter().any(|c| c.public_key == key).then_some(key)
        }
        (AuthMode::Key, Some(e)) => e.pubkey.clone(),
        (AuthMode::Enroll, Some(e)) if !e.revoked => e
            .enroll
            .as_ref()
            .filter(|en| en.redeems(credential, now_s()))
            .map(|_| key),
        _ => None,
    };
    HubEvent::Challenge {
        hub_id,
        key: expected,
    }
}

/// What [`verify`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The edge is who it claims (the configuration in force names it).
    Accepted,
    /// Refused (`Error(unauthorized)`), with the reason for the log.
    Refused(String),
    /// The identity is revoked (`Error(revoked)`).
    Revoked,
    /// A certificate identity, accepted: its pin and expiry.
    Cert(crate::cert_session::CertSession),
    /// A certificate identity's certificate is refused (`Error(cert_…)`):
    /// its key was proven, so the reason may be told.
    CertRefused(crate::certs::Refusal),
}

impl Verdict {
    /// Whether the edge is accepted.
    pub fn accepted(&self) -> bool {
        matches!(self, Verdict::Accepted | Verdict::Cert(_))
    }
}

/// Checks an authentication request against the live configuration: a
/// token (only in development mode), a proven key (still the identity's),
/// or an enrollment code redeemed for the proven key (one redemption wins).
/// `Revoked` only for a caller who proved the identity's key or token: to
/// anyone else a revoked identity looks like any refusal.
pub async fn verify(
    hub: &Hub,
    r: &AuthRequest,
    chain: &[rustls_pki_types::CertificateDer<'static>],
) -> Verdict {
    let config = hub.config();
    let (identity, database) = (r.identity.as_str(), r.database.as_str());
    let edge = edge_of(&config, identity, database);
    let revoked = edge.is_some_and(|e| e.revoked);
    match r.auth {
        AuthMode::Token => {
            if !config.dev_tokens {
                return Verdict::Refused(
                    "a token Hello, but shared-secret tokens are off ([dev] tokens = true enables them)"
                        .into(),
                );
            }
            match config.authenticate(identity, &r.credential) {
                Some(e) if e.database == database && revoked => Verdict::Revoked,
                Some(e) if e.database == database => Verdict::Accepted,
                _ => Verdict::Refused("unknown identity or wrong token".into()),
            }
        }
        AuthMode::Key => match (edge, &r.key) {
            (Some(e), Some(k))
                if !e.certs.is_empty() && e.certs.iter().any(|c| &c.public_key == k) =>
            {
                if revoked {
                    return Verdict::Revoked;
                }
                use crate::cert_session::{CertVerdict, authenticate};
                match authenticate(hub, identity, database, k, chain).await {
                    CertVerdict::Accepted(s) => Verdict::Cert(s),
                    CertVerdict::Refused(why) => Verdict::CertRefused(why),
                    CertVerdict::Stranger => {
                        Verdict::Refused("the key is not (any more) this identity's".into())
                    }
                }
            }
            (Some(e), Some(k)) if e.pubkey.as_ref() == Some(k) && revoked => Verdict::Revoked,
            (Some(e), Some(k)) if e.pubkey.as_ref() == Some(k) => Verdict::Accepted,
            _ => Verdict::Refused("the key is not (any more) this identity's".into()),
        },
        AuthMode::Enroll if revoked => Verdict::Refused("revoked: no enrollment".into()),
        AuthMode::Enroll => {
            let Some(key) = &r.key else {
                return Verdict::Refused("an enrollment without a key".into());
            };
            match redeem(hub, identity, database, &r.credential, key) {
                Ok(()) => {
                    record_enrollment(hub, identity, database, key).await;
                    Verdict::Accepted
                }
                Err(why) => Verdict::Refused(why),
            }
        }
    }
}

/// Redeems `code` of edge `identity` for `key`, once: under the
/// configuration-write lock, the file is read again, the code checked in
/// it, the file rewritten (`pubkey` set, the code removed) and the new
/// configuration put in force before the lock is let go, so a second
/// redemption of the same code finds it gone.
fn redeem(
    hub: &Hub,
    identity: &str,
    database: &str,
    code: &str,
    key: &PublicKey,
) -> Result<(), String> {
    let path = hub.config().path.clone();
    let (new, ()) = edit::rewrite_config(&path, |text, current| {
        let edge = edge_of(current, identity, database)
            .ok_or_else(|| "no such edge in the configuration file".to_string())?;
        if edge.revoked {
            return Err("revoked".into());
        }
        if !edge
            .enroll
            .as_ref()
            .is_some_and(|en| en.redeems(code, now_s()))
        {
            return Err("the enrollment code is wrong, spent or expired".into());
        }
        Ok((edit::redeem_enrollment(text, identity, key)?, ()))
    })?;
    hub.publish_config(new);
    tracing::info!(%identity, %database, key = %key.fingerprint(), "enrollment code redeemed: the key is enrolled");
    Ok(())
}

/// Writes the `enrolled` entry of `identity`'s key in `database`'s audit
/// trail (a failure is logged: the enrollment stands).
async fn record_enrollment(hub: &Hub, identity: &str, database: &str, key: &PublicKey) {
    let config = hub.config();
    let scope = edge_of(&config, identity, database)
        .map(|e| (e.read.as_slice().to_vec(), e.write.as_slice().to_vec()));
    let (read, write) = scope.map_or((None, None), |(r, w)| (Some(r), Some(w)));
    let record = AuditScope {
        v: AUDIT_RECORD_VERSION,
        edge: identity.to_string(),
        change: "enrolled".into(),
        old_read: read.clone(),
        old_write: write.clone(),
        new_read: read,
        new_write: write,
        key_id: key.fingerprint(),
        public_key: key.to_text(),
    };
    let Some(handle) = hub.database(database) else {
        tracing::warn!(%database, %identity, "audit: enrollment on a database that is not open; not recorded");
        return;
    };
    let mut b = Batch::new();
    b.audit(AuditKind::ScopeChange, encode_record(&record));
    if let Err(e) = handle.db.commit(b).await {
        tracing::error!(%database, %identity, error = %e, "audit: could not record an enrollment");
    }
}

/// What a configuration change means for an open session of `identity`
/// on `database` (proven with `key`; `None`: a token session): `Err` with
/// the frame that ends it when the identity is revoked; `Ok(None)` when
/// its access is gone (removed, another database, its key replaced);
/// `Ok(Some(grant))` otherwise.
pub fn session_grant(
    config: &Config,
    identity: &str,
    database: &str,
    key: Option<&PublicKey>,
) -> Result<Option<outpost::sync::Grant>, Revoked> {
    let Some(e) = edge_of(config, identity, database) else {
        return Ok(None);
    };
    if e.revoked {
        return Err(Revoked);
    }
    let still = match key {
        Some(k) if !e.certs.is_empty() => e
            .certs
            .iter()
            .any(|c| &c.public_key == k && c.valid_at(now_s())),
        Some(k) => e.pubkey.as_ref() == Some(k),
        None => config.dev_tokens && e.token_sha256.is_some(),
    };
    if !still {
        return Ok(None);
    }
    Ok(crate::session::grant_for(config, identity, database))
}
