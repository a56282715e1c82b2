//! `outpost-hub certs …` and the certificate parts of `outpost-hub edge …`:
//! registering a certificate identity from its chain file, listing its
//! pinned certificates, and purging the expired ones
//! (`docs/security.md`, "Trust in keys, not certificates").

use std::path::Path;

use clap::Subcommand;

use crate::certs::{self, PinnedCert};
use crate::config::{Config, EdgeAccess};
use crate::edit;
use crate::error::{HubError, Result};

/// `certs` subcommands.
#[derive(Subcommand, Debug)]
pub enum CertsCommand {
    /// Remove expired certificates from every certificate identity.
    ///
    /// An identity's last certificate is never removed: when all of its
    /// certificates have expired, the one that expired last stays (its
    /// pin lets a renewal with the same key in). A running hub records each
    /// removal in the audit trail (`certificate`, event `purged`).
    #[command(after_help = "Example:\n  outpost-hub certs purge-expired")]
    PurgeExpired,
}

/// Reads a PEM chain file (leaf first, up to and including the root) and
/// verifies it now: the pin an operator registers.
pub fn pin_from_file(file: &Path) -> Result<PinnedCert> {
    let chain = outpost_client::tls::load_certs(file).map_err(|e| HubError::Tls(e.0))?;
    let p = certs::inspect(&chain, crate::identity::now_s())
        .map_err(|e| HubError::Other(format!("{}: {e} ({})", file.display(), e.code())))?;
    Ok(PinnedCert::from_presented(&p))
}

/// Adds the certificate of `file` as one more pin of certificate identity
/// `name` (an operator's replacement, for instance of an admin identity).
pub fn cert_add(path: &Path, name: &str, file: &Path) -> Result<()> {
    let pin = pin_from_file(file)?;
    let _writing = edit::config_write_lock();
    let text = std::fs::read_to_string(path)
        .map_err(|e| HubError::io(format!("read {}", path.display()), e))?;
    let config = Config::parse(&text, path)?;
    let Some(e) = config.edge(name) else {
        return Err(HubError::Other(format!(
            "no edge named {name:?} (see `outpost-hub edge list`)"
        )));
    };
    if e.certs.is_empty() {
        return Err(HubError::Other(format!(
            "edge {name:?} is not a certificate identity (it has no [[edge.cert]]); add one with `outpost-hub edge add NAME --cert FILE`"
        )));
    }
    if e.certs.iter().any(|c| c.key == pin.key) {
        return Err(HubError::Other(format!(
            "this key ({}) is already pinned for {name:?}: a renewed certificate with the same key and issuers needs no registration",
            certs::hash_text(&pin.key)
        )));
    }
    let mut pins = e.certs.clone();
    pins.push(pin.clone());
    let edited = edit::set_certs(&text, name, &pins).map_err(|m| HubError::config(path, m))?;
    edit::replace_config(path, &edited)?;
    eprintln!(
        "pinned certificate {} for edge {name} (issuers {}, valid until {}).",
        certs::hash_text(&pin.key),
        certs::short_chain(&pin.issuers),
        when(pin.not_after)
    );
    Ok(())
}

/// Runs a `certs` subcommand.
pub fn certs_command(path: &Path, cmd: CertsCommand) -> Result<()> {
    match cmd {
        CertsCommand::PurgeExpired => {
            let _writing = edit::config_write_lock();
            let mut text = std::fs::read_to_string(path)
                .map_err(|e| HubError::io(format!("read {}", path.display()), e))?;
            let config = Config::parse(&text, path)?;
            let now = crate::identity::now_s();
            let mut removed = 0;
            let mut audit: Vec<(String, String, crate::cert_session::Event)> = Vec::new();
            for e in config.edges.iter().filter(|e| !e.certs.is_empty()) {
                let mut pins = e.certs.clone();
                let gone = certs::purge_expired(&mut pins, now);
                for g in &gone {
                    audit.push((
                        e.database.clone(),
                        e.name.clone(),
                        crate::cert_session::Event::of("purged", g),
                    ));
                    eprintln!(
                        "edge {}: removed certificate {} (expired {})",
                        e.name,
                        certs::hash_text(&g.key),
                        when(g.not_after)
                    );
                }
                if !gone.is_empty() {
                    removed += gone.len();
                    text = edit::set_certs(&text, &e.name, &pins)
                        .map_err(|m| HubError::config(path, m))?;
                }
            }
            if removed > 0 {
                let written = edit::replace_config(path, &text)?;
                record_purges(&written, &audit)?;
            }
            eprintln!("{removed} expired certificate(s) removed.");
            Ok(())
        }
    }
}

/// Writes the `purged` audit entries into each database of a stopped hub;
/// a database a running hub holds is left to it (its configuration reload
/// records the removal).
fn record_purges(
    config: &Config,
    audit: &[(String, String, crate::cert_session::Event)],
) -> Result<()> {
    let mut dbs: Vec<&str> = audit.iter().map(|(d, ..)| d.as_str()).collect();
    dbs.sort_unstable();
    dbs.dedup();
    crate::cli::runtime()?.block_on(async {
        for name in dbs {
            let dir = config.database_dir(name);
            if !dir.join(outpost::store::file::DATA_FILE).exists() {
                eprintln!("database {name} has no data yet: nothing to record the removals in.");
                continue;
            }
            match crate::state::DbHandle::open(name, &dir).await {
                Ok(h) => {
                    for (_, identity, e) in audit.iter().filter(|(d, ..)| d == name) {
                        crate::cert_session::record_in(&h.db, identity, std::slice::from_ref(e))
                            .await
                            .map_err(|source| HubError::Database {
                                database: name.to_string(),
                                source,
                            })?;
                    }
                    h.close().await?;
                    eprintln!("database {name}: the removals are in its audit trail.");
                }
                Err(HubError::InUse { .. }) => {
                    eprintln!(
                        "database {name} is in use: the running hub records the removals in its audit trail as it reloads the configuration."
                    );
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })
}

fn when(s: i64) -> String {
    outpost::doc::iso_time_ms(s.saturating_mul(1000))
}

/// The identity cell of a certificate identity in `edge list`: each pin's
/// key hash, issuer chain, expiry, state and replacements.
pub fn cert_cell(e: &EdgeAccess, now: i64) -> String {
    let mut parts = Vec::new();
    if e.admin {
        parts.push("ADMIN".to_string());
    }
    for c in &e.certs {
        let state = if c.retired {
            "retired"
        } else if now > c.not_after {
            "EXPIRED"
        } else if now < c.not_before {
            "not yet valid"
        } else {
            "valid"
        };
        let mut s = format!(
            "cert {} issuers {} until {} {state}",
            &certs::hash_text(&c.key)[..19],
            certs::short_chain(&c.issuers),
            when(c.not_after)
        );
        if let Some(by) = &c.registered_by {
            s.push_str(&format!(
                " (replacement by {})",
                &certs::hash_text(by)[..19]
            ));
        }
        if c.renewals > 0 {
            s.push_str(&format!(" renewed {}x", c.renewals));
        }
        parts.push(s);
    }
    parts.join("; ")
}
