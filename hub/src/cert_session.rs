//! Certificate identities at the running hub: the effects around the pure
//! rules of [`crate::certs`]. A session's `Hello` is judged against the
//! identity's pins ([`authenticate`]); a renewal (same key, same issuer
//! keys, new dates) and a registered replacement ([`register`]) rewrite the
//! configuration file under the configuration-write lock and put it in
//! force at once; every registration, renewal, replacement, refusal and
//! expiry is written to the database's audit trail ([`record`]).

use outpost::Batch;
use outpost::db::{AUDIT_RECORD_VERSION, AuditCertificate, AuditKind, encode_record};
use outpost::keys::PublicKey;
use rustls_pki_types::CertificateDer;

use crate::certs::{self, Judged, KeyHash, PinnedCert, Presented, Refusal, ReplaceRefusal};
use crate::config::{Config, EdgeAccess};
use crate::edit;
use crate::identity::now_s;
use crate::state::Hub;

/// A certificate session, once accepted: the pin it authenticated as and
/// when its certificate expires (the session ends then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertSession {
    /// The certificate's key hash.
    pub key: KeyHash,
    /// Unix seconds: its `notAfter`.
    pub not_after: i64,
}

/// What [`authenticate`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertVerdict {
    /// Accepted.
    Accepted(CertSession),
    /// Refused with a reason the holder of the key may learn.
    Refused(Refusal),
    /// Refused without a reason (the key is not this identity's).
    Stranger,
}

/// One audit record of `identity` in `database`.
#[derive(Debug, Clone, Default)]
pub struct Event {
    /// `registered`, `renewed`, `replaced`, `dropped`, `retired`,
    /// `refused`, `expired`, `purged`.
    pub event: &'static str,
    /// The certificate's key hash.
    pub key: KeyHash,
    /// The acting certificate (a replacement's registrar).
    pub by: Option<KeyHash>,
    /// Its issuers.
    pub issuers: Vec<KeyHash>,
    /// Its `notAfter`.
    pub not_after: i64,
    /// A refusal's code.
    pub code: String,
    /// A refusal's explanation, or a note.
    pub message: String,
}

impl Event {
    /// The event of pin `c`.
    pub fn of(event: &'static str, c: &PinnedCert) -> Event {
        Event {
            event,
            key: c.key,
            issuers: c.issuers.clone(),
            not_after: c.not_after,
            ..Event::default()
        }
    }
}

/// Writes `events` of `identity` to `database`'s audit trail, in one
/// commit (a failure is logged: what happened stands).
pub async fn record(hub: &Hub, database: &str, identity: &str, events: &[Event]) {
    if events.is_empty() {
        return;
    }
    let Some(handle) = hub.database(database) else {
        tracing::warn!(%database, %identity, "audit: a certificate event on a database that is not open; not recorded");
        return;
    };
    if let Err(err) = record_in(&handle.db, identity, events).await {
        tracing::error!(%database, %identity, error = %err, "audit: could not record a certificate event");
    }
}

/// Writes `events` of `identity` to the audit trail of `db`, in one commit
/// (the hub's sessions through [`record`]; `outpost-hub certs
/// purge-expired` on a stopped hub's database).
pub async fn record_in(
    db: &outpost::Database<outpost::store::file::FileStore>,
    identity: &str,
    events: &[Event],
) -> Result<(), outpost::Error> {
    let mut b = Batch::new();
    for e in events {
        let r = AuditCertificate {
            v: AUDIT_RECORD_VERSION,
            identity: identity.to_string(),
            event: e.event.to_string(),
            key: certs::hash_text(&e.key),
            by: e.by.as_ref().map(certs::hash_text).unwrap_or_default(),
            issuers: e.issuers.iter().map(certs::hash_text).collect(),
            not_after: e.not_after,
            code: e.code.clone(),
            message: e.message.clone(),
        };
        b.audit(AuditKind::Certificate, encode_record(&r));
    }
    db.commit(b).await.map(|_| ())
}

fn edge_of<'a>(config: &'a Config, identity: &str, database: &str) -> Option<&'a EdgeAccess> {
    config.edge(identity).filter(|e| e.database == database)
}

/// Judges a key `Hello` of certificate identity `identity` (proven with
/// `key`) over a connection that presented `chain`.
pub async fn authenticate(
    hub: &Hub,
    identity: &str,
    database: &str,
    key: &PublicKey,
    chain: &[CertificateDer<'static>],
) -> CertVerdict {
    let config = hub.config();
    let Some(edge) = edge_of(&config, identity, database) else {
        return CertVerdict::Stranger;
    };
    if !edge.certs.iter().any(|c| &c.public_key == key) {
        return CertVerdict::Stranger;
    }
    let refuse = async |r: Refusal, key_hash: Option<KeyHash>, issuers: Vec<KeyHash>| {
        let pin = edge.certs.iter().find(|c| &c.public_key == key);
        let e = Event {
            event: "refused",
            key: key_hash.or(pin.map(|c| c.key)).unwrap_or_default(),
            issuers,
            code: r.code().to_string(),
            message: r.to_string(),
            ..Event::default()
        };
        tracing::warn!(%identity, %database, code = r.code(), reason = %r, "certificate refused");
        record(hub, database, identity, &[e]).await;
        CertVerdict::Refused(r)
    };
    if chain.is_empty() || certs::leaf_key(chain).ok().as_ref() != Some(key) {
        return refuse(Refusal::Required(identity.to_string()), None, Vec::new()).await;
    }
    let presented = match certs::inspect(chain, now_s()) {
        Ok(p) => p,
        Err(r) => return refuse(r, None, Vec::new()).await,
    };
    match certs::judge(&edge.certs, &presented) {
        Err(None) => CertVerdict::Stranger,
        Err(Some(r)) => refuse(r, Some(presented.key), presented.issuers.clone()).await,
        Ok((_, Judged::Accepted)) => CertVerdict::Accepted(CertSession {
            key: presented.key,
            not_after: presented.not_after,
        }),
        Ok((_, Judged::Renewed)) => {
            let renewed = update_pins(hub, identity, database, |pins| {
                match certs::judge(pins, &presented) {
                    Ok((i, _)) => {
                        certs::renew(pins, i, &presented);
                        Ok(())
                    }
                    Err(_) => Err("the pin changed meanwhile".to_string()),
                }
            });
            match renewed {
                Ok(()) => {
                    tracing::info!(%identity, %database, key = %certs::hash_text(&presented.key), not_after = presented.not_after, "certificate renewed: same key, same issuer keys");
                    let mut e = event_of_presented("renewed", &presented);
                    e.message =
                        format!("serial {}, subject {}", presented.serial, presented.subject);
                    record(hub, database, identity, &[e]).await;
                }
                Err(why) => {
                    // The renewal is valid; only its record in the file
                    // failed: the session goes on, the next one retries.
                    tracing::error!(%identity, %database, error = %why, "a certificate renewal could not be written to the configuration file");
                }
            }
            CertVerdict::Accepted(CertSession {
                key: presented.key,
                not_after: presented.not_after,
            })
        }
    }
}

fn event_of_presented(event: &'static str, p: &Presented) -> Event {
    Event {
        event,
        key: p.key,
        issuers: p.issuers.clone(),
        not_after: p.not_after,
        ..Event::default()
    }
}

/// Re-reads the configuration file under the configuration-write lock,
/// applies `change` to the pins of `identity`, writes the file and puts it
/// in force.
pub fn update_pins<T>(
    hub: &Hub,
    identity: &str,
    database: &str,
    change: impl FnOnce(&mut Vec<PinnedCert>) -> Result<T, String>,
) -> Result<T, String> {
    let path = hub.config().path.clone();
    let (new, out) = edit::rewrite_config(&path, |text, current| {
        let edge = edge_of(current, identity, database)
            .ok_or_else(|| "no such edge in the configuration file".to_string())?;
        let mut pins = edge.certs.clone();
        let out = change(&mut pins)?;
        Ok((edit::set_certs(text, identity, &pins)?, out))
    })?;
    hub.publish_config(new);
    Ok(out)
}

/// Judges and registers a replacement `chain` sent by the session of
/// `identity` authenticated as pin `actor`: `Ok(())` registered (or
/// registered before), `Err` with the refusal. Every outcome is audited.
pub async fn register(
    hub: &Hub,
    identity: &str,
    database: &str,
    actor: &KeyHash,
    chain: &[Vec<u8>],
) -> Result<(), ReplaceRefusal> {
    let now = now_s();
    let ders: Vec<CertificateDer<'_>> = chain
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let refused = async |r: ReplaceRefusal, key: KeyHash| {
        tracing::warn!(%identity, %database, code = r.code(), reason = %r, "certificate replacement refused");
        let e = Event {
            event: "refused",
            key,
            by: Some(*actor),
            code: r.code().to_string(),
            message: r.to_string(),
            ..Event::default()
        };
        record(hub, database, identity, &[e]).await;
        Err(r)
    };
    let new = match certs::inspect(&ders, now) {
        Ok(p) => p,
        Err(r) => return refused(ReplaceRefusal::Invalid(r), KeyHash::default()).await,
    };
    let config = hub.config();
    let admin = edge_of(&config, identity, database).is_some_and(|e| e.admin);
    if let Some(other) = config
        .edges
        .iter()
        .find(|e| e.name != identity && e.certs.iter().any(|c| c.key == new.key))
    {
        let r = ReplaceRefusal::Taken(format!("for identity {:?}", other.name));
        return refused(r, new.key).await;
    }
    let result = update_pins(hub, identity, database, |pins| {
        Ok(certs::replace(pins, identity, admin, actor, &new, now))
    });
    let outcome = match result {
        Ok(o) => o,
        Err(why) => {
            tracing::error!(%identity, %database, error = %why, "a certificate replacement could not be written to the configuration file");
            let r = ReplaceRefusal::NotValid(format!("the hub could not record it: {why}"));
            return refused(r, new.key).await;
        }
    };
    match outcome {
        Err(r) => refused(r, new.key).await,
        Ok(done) => {
            let mut events = Vec::new();
            if !done.again {
                let mut e = event_of_presented("replaced", &new);
                e.by = Some(*actor);
                e.message = format!("serial {}, subject {}", new.serial, new.subject);
                events.push(e);
                for k in &done.dropped {
                    events.push(Event {
                        event: "dropped",
                        key: *k,
                        by: Some(*actor),
                        ..Event::default()
                    });
                }
                if let Some(k) = done.retired {
                    events.push(Event {
                        event: "retired",
                        key: k,
                        by: Some(*actor),
                        ..Event::default()
                    });
                }
            }
            tracing::info!(%identity, %database, new = %certs::hash_text(&new.key), by = %certs::hash_text(actor), again = done.again, dropped = done.dropped.len(), retired = done.retired.is_some(), "certificate replacement registered");
            record(hub, database, identity, &events).await;
            Ok(())
        }
    }
}

/// Whether pin `key` of `identity` may still act at `now` (for the
/// sessions open under it when the configuration changes).
pub fn still_valid(edge: &EdgeAccess, key: &KeyHash, now: i64) -> bool {
    edge.certs
        .iter()
        .any(|c| &c.key == key && !c.retired && now <= c.not_after)
}

/// How often the running hub looks for certificates that expired.
pub const EXPIRY_SWEEP: std::time::Duration = std::time::Duration::from_secs(30);

/// Records every certificate expiry in the audit trail, once, whether or
/// not a session was open: at start, then every [`EXPIRY_SWEEP`]. Runs
/// until aborted.
pub async fn record_expiries(hub: std::sync::Arc<Hub>) {
    let mut t = tokio::time::interval(EXPIRY_SWEEP);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        t.tick().await;
        sweep_expiries(&hub).await;
    }
}

/// One sweep: the pins past their `notAfter` not yet recorded get an
/// `expired` entry (committed first), then are marked (`expiry_recorded =
/// true` in the configuration file) so that no later sweep or restart
/// records them again. A database that is not open is left for a later
/// sweep; a mark that cannot be written means the entry may be written
/// again at the next sweep, never lost.
pub async fn sweep_expiries(hub: &Hub) {
    let now = now_s();
    let config = hub.config();
    let due = |c: &PinnedCert| now > c.not_after && !c.expiry_recorded;
    for e in config.edges.iter().filter(|e| e.certs.iter().any(due)) {
        let Some(handle) = hub.database(&e.database) else {
            continue;
        };
        let newly: Vec<&PinnedCert> = e.certs.iter().filter(|c| due(c)).collect();
        let events: Vec<Event> = newly
            .iter()
            .map(|c| {
                let mut ev = Event::of("expired", c);
                ev.message = "the certificate expired".into();
                ev
            })
            .collect();
        if let Err(err) = record_in(&handle.db, &e.name, &events).await {
            tracing::error!(identity = %e.name, database = %e.database, error = %err, "audit: could not record a certificate's expiry; retrying at the next sweep");
            continue;
        }
        for c in &newly {
            tracing::warn!(identity = %e.name, database = %e.database, key = %certs::hash_text(&c.key), not_after = c.not_after, "a pinned certificate expired");
        }
        let keys: Vec<KeyHash> = newly.iter().map(|c| c.key).collect();
        let marked = update_pins(hub, &e.name, &e.database, |pins| {
            for c in pins.iter_mut().filter(|c| keys.contains(&c.key)) {
                c.expiry_recorded = true;
            }
            Ok(())
        });
        if let Err(why) = marked {
            tracing::error!(identity = %e.name, error = %why, "cannot mark a recorded expiry in the configuration file; the next sweep records it again");
        }
    }
}

/// The identity with admin permissions (`admin = true`) whose certificate
/// a connection presented, judged like a session's (chain, dates, pins, not
/// retired, not revoked); `None` otherwise. The TLS handshake proved the
/// client holds the leaf's key.
pub fn admin_identity(config: &Config, chain: &[CertificateDer<'static>]) -> Option<String> {
    if chain.is_empty() {
        return None;
    }
    let key = certs::leaf_key(chain).ok()?;
    let edge = config
        .edges
        .iter()
        .find(|e| e.admin && !e.revoked && e.certs.iter().any(|c| c.public_key == key))?;
    let presented = certs::inspect(chain, now_s()).ok()?;
    certs::judge(&edge.certs, &presented).ok()?;
    Some(edge.name.clone())
}
