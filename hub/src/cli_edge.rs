//! `outpost-hub edge …` and `outpost-hub keygen`: managing the edges'
//! identities in the configuration file (keys, enrollment codes,
//! revocation, development tokens).

use std::io::Write;
use std::path::Path;

use clap::Subcommand;
use outpost::keys::{KeyPair, PublicKey, Signer};

use crate::cli::DatabaseArg;
use crate::config::Config;
use crate::edit::{self, NewCredential, NewEdge};
use crate::error::{HubError, Result};

/// `edge` subcommands.
#[derive(Subcommand, Debug)]
pub enum EdgeCommand {
    /// Add an edge: a new identity, its database and scope, and how it
    /// proves who it is.
    ///
    /// By default a one-time enrollment code is issued: printed once on
    /// standard output (only its SHA-256 is written to the configuration).
    /// Give it to the edge: the first device that presents it with its
    /// public key (`db.enroll({url, code})` in the browser, an
    /// `EdgeConfig::enrolling` client natively) becomes the edge; the hub
    /// then writes the key into the configuration and forgets the code.
    /// With --pubkey the key is registered now (no code). --token is the
    /// development mode (needs `[dev] tokens = true`).
    ///
    /// Prefixes are id prefixes on whole path segments: `patients/dr-7/`
    /// covers `patients/dr-7/0001`, not `patients/dr-70/x`; `*` covers
    /// everything.
    #[command(after_help = "\
Examples:
  outpost-hub edge add laptop-7 --read patients/dr-7/ --write patients/dr-7/
  outpost-hub edge add laptop-7 --read notes/ --write notes/ --expires 24h
  outpost-hub edge add boston --read clinics/boston/ shared/ --write clinics/boston/ --pubkey p256:04...
  outpost-hub edge add kiosk --read menu/            # read-only
  outpost-hub edge add chicago --read clinics/ --write clinics/chicago/ --cert chicago-chain.pem
  outpost-hub edge add test-edge --read '*' --write '*' --token known-test-token   # [dev] tokens = true")]
    Add {
        /// The edge's identity (letters, digits, '-', '_', '.', '@').
        name: String,
        /// Its database (may be omitted when the configuration has only one).
        #[command(flatten)]
        database: DatabaseArg,
        /// Id prefixes it may read (hub to edge); repeat or list several.
        #[arg(long, num_args = 1.., value_name = "PREFIX")]
        read: Vec<String>,
        /// Id prefixes it may write (edge to hub); repeat or list several.
        #[arg(long, num_args = 1.., value_name = "PREFIX")]
        write: Vec<String>,
        /// Register this public key (`p256:` + 130 hex digits, as
        /// `outpost-hub keygen` or the edge prints it) instead of issuing an
        /// enrollment code.
        #[arg(long, value_name = "KEY", conflicts_with = "token")]
        pubkey: Option<String>,
        /// Development mode: a shared-secret token instead of a key (random,
        /// or the one given); needs `[dev] tokens = true`.
        #[arg(long, value_name = "TOKEN", num_args = 0..=1, default_missing_value = "", conflicts_with = "cert")]
        token: Option<String>,
        /// A certificate identity: the PEM chain of its certificate (leaf
        /// first, up to and including the root). The hub pins its key and
        /// its issuers' keys: a renewed certificate with the same key from
        /// the same issuer keys is accepted with no further step. The edge
        /// connects over wss:// with this certificate (mutual TLS).
        #[arg(long, value_name = "FILE", conflicts_with = "pubkey")]
        cert: Option<std::path::PathBuf>,
        /// With --cert: admin permissions: its certificate opens /status,
        /// /metrics and /admin/* as the admin token does, and its
        /// certificates are replaced only by an operator (`edge cert-add`).
        #[arg(long, requires = "cert")]
        admin: bool,
        /// How long the enrollment code is valid: 7d (default), 24h, 30m,
        /// 3600s.
        #[arg(long, value_name = "DURATION", default_value = "7d")]
        expires: String,
    },
    /// Issue a new enrollment code for an existing edge (a wiped or
    /// replaced device).
    ///
    /// The code is printed once. The edge's current key, if any, stops
    /// working at once (its sessions end); a revocation is lifted. The scope
    /// is kept.
    #[command(after_help = "\
Examples:
  outpost-hub edge enroll laptop-7
  outpost-hub edge enroll laptop-7 --expires 2h")]
    Enroll {
        /// The edge's identity.
        name: String,
        /// How long the code is valid: 7d (default), 24h, 30m, 3600s.
        #[arg(long, value_name = "DURATION", default_value = "7d")]
        expires: String,
    },
    /// Pin one more certificate for a certificate identity (an operator's
    /// replacement: the only way for an admin identity).
    #[command(after_help = "Example:\n  outpost-hub edge cert-add ops --cert ops-2027.pem")]
    CertAdd {
        /// The edge's identity.
        name: String,
        /// The PEM chain (leaf first, up to and including the root).
        #[arg(long, value_name = "FILE")]
        cert: std::path::PathBuf,
    },
    /// Revoke an edge (a lost or stolen device): `revoked = true`.
    ///
    /// A running hub ends its sessions at once and refuses new ones with
    /// `Error(revoked)`; the refusal is final at the edge. The entry stays
    /// (the audit trail keeps naming it); `edge enroll` gives it a new
    /// device, `edge remove` deletes it.
    #[command(after_help = "Example:\n  outpost-hub edge revoke laptop-7")]
    Revoke {
        /// The edge's identity.
        name: String,
    },
    /// Show an edge's purge receipts: the purge order it still owes a
    /// receipt for (after its read scope narrowed or it was revoked) and
    /// the signed receipts received (from the audit trail).
    ///
    /// Reads the edge's database read-only when the hub is stopped; a
    /// running hub is asked (`POST /admin/audit`, with the admin token),
    /// like the `audit` commands.
    #[command(after_help = "Example:\n  outpost-hub edge status laptop-7")]
    Status {
        /// The edge's identity.
        name: String,
        /// For a running hub.
        #[command(flatten)]
        admin: crate::cli::AdminTokenArg,
    },
    /// List the edges: name, database, identity (key fingerprint, pending
    /// enrollment and its expiry, revoked, token), read and write prefixes.
    #[command(after_help = "Example:\n  outpost-hub edge list")]
    List,
    /// Remove an edge; a running hub refuses it from then on.
    #[command(after_help = "Example:\n  outpost-hub edge remove laptop-7")]
    Remove {
        /// The edge's identity.
        name: String,
    },
}

/// Parses a duration: a number and a unit (`s`, `m`, `h`, `d`; a bare
/// number is seconds), in seconds.
pub fn parse_duration(s: &str) -> std::result::Result<i64, String> {
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "--expires {s:?}: expected a number and s, m, h or d (7d, 24h)"
            ));
        }
    };
    let n: i64 = num
        .parse()
        .map_err(|_| format!("--expires {s:?}: expected a number and s, m, h or d (7d, 24h)"))?;
    if n <= 0 {
        return Err(format!("--expires {s:?}: must be more than zero"));
    }
    n.checked_mul(mult)
        .filter(|v| *v <= 10 * 365 * 86_400)
        .ok_or_else(|| format!("--expires {s:?}: at most ten years"))
}

/// Writes `text` to a new or existing file readable by its owner only.
pub fn write_private(path: &Path, text: &str) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| HubError::io(format!("create {}", path.display()), e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| HubError::io(format!("chmod {}", path.display()), e))?;
    }
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| HubError::io(format!("write {}", path.display()), e))
}

/// `keygen FILE`: writes a new key file and prints its public key.
pub fn keygen(file: &Path) -> Result<()> {
    if file.exists() {
        return Err(HubError::Other(format!(
            "{} already exists; not overwriting a key (it may be an identity in use)",
            file.display()
        )));
    }
    let k = KeyPair::generate().map_err(|e| HubError::Other(e.to_string()))?;
    k.save(file).map_err(|e| HubError::Other(e.to_string()))?;
    eprintln!(
        "wrote a new key to {} (mode 0600; keep it secret: it is the identity). Its public key (fingerprint {}):",
        file.display(),
        k.public_key().fingerprint()
    );
    println!("{}", k.public_key().to_text());
    Ok(())
}

/// How an edge redeems a code (printed with it).
fn redeem_hint(name: &str, database: &str, expires: i64) -> String {
    format!(
        "The edge redeems it once, before {} (UTC): in the browser `db.enroll({{url, code}})` \
         (the demo app asks for it), natively `EdgeConfig::enrolling(\"{database}\", \"{name}\", key, code)`. \
         Its key is then written into the configuration and the code forgotten.",
        outpost::doc::iso_time_ms(expires.saturating_mul(1000))
    )
}

/// Runs an `edge` subcommand.
pub fn edge(path: &Path, cmd: EdgeCommand) -> Result<()> {
    match cmd {
        EdgeCommand::Add {
            name,
            database,
            read,
            write,
            pubkey,
            token,
            cert,
            admin,
            expires,
        } => {
            let (text, config) = crate::cli::read_config_text(path)?;
            if config.edge(&name).is_some() {
                return Err(HubError::Other(format!(
                    "an edge named {name:?} already exists (remove it first with `outpost-hub edge remove {name}`)"
                )));
            }
            let database = crate::cli::pick_database(&config, database.database)?;
            let seconds = parse_duration(&expires).map_err(HubError::Other)?;
            let expires_at = crate::identity::now_s() + seconds;
            let credential = match (pubkey, token) {
                _ if cert.is_some() => {
                    let file = cert.as_deref().unwrap_or(Path::new(""));
                    let pin = crate::cli_certs::pin_from_file(file)?;
                    if let Some(other) = config
                        .edges
                        .iter()
                        .find(|e| e.certs.iter().any(|c| c.key == pin.key))
                    {
                        return Err(HubError::Other(format!(
                            "--cert: this key is already pinned for edge {:?} (a key is one identity's)",
                            other.name
                        )));
                    }
                    NewCredential::Cert {
                        pin: Box::new(pin),
                        admin,
                    }
                }
                (Some(k), _) => NewCredential::Key(
                    PublicKey::parse_text(&k)
                        .map_err(|e| HubError::Other(format!("--pubkey: {e}")))?,
                ),
                (None, Some(t)) => {
                    if !config.dev_tokens {
                        return Err(HubError::Other(format!(
                            "--token: shared-secret tokens are a development mode, off in {}; \
                             add `[dev] tokens = true` to it, or leave --token out (an enrollment code is issued)",
                            config.path.display()
                        )));
                    }
                    NewCredential::Token(if t.is_empty() {
                        edit::generate_token()?
                    } else {
                        t
                    })
                }
                (None, None) => NewCredential::Enroll {
                    code: edit::generate_code()?,
                    expires: expires_at,
                },
            };
            let new = NewEdge {
                name: name.clone(),
                database: database.clone(),
                read,
                write,
                credential: credential.clone(),
            };
            let edited =
                edit::add_edge(&text, &new).map_err(|e| HubError::config(&config.path, e))?;
            let updated = edit::replace_config(path, &edited)?;
            let e = updated
                .edge(&name)
                .ok_or_else(|| HubError::Other("the edge was not written".into()))?;
            eprintln!(
                "added edge {name} to {} (database {database}, read {}, write {}).",
                updated.path.display(),
                e.read,
                e.write
            );
            match credential {
                NewCredential::Key(k) => {
                    eprintln!("Its key {} is registered.", k.fingerprint());
                }
                NewCredential::Enroll { code, expires } => {
                    eprintln!(
                        "Its one-time enrollment code follows, shown this once (only its SHA-256 is stored). {}",
                        redeem_hint(&name, &database, expires)
                    );
                    println!("{code}");
                }
                NewCredential::Token(t) => {
                    eprintln!(
                        "Its token follows, shown this once: only its SHA-256 is stored. Give it to the edge (development mode):"
                    );
                    println!("{t}");
                }
                NewCredential::Cert { pin, .. } => {
                    eprintln!(
                        "Its certificate is pinned: key {}, issuers {}. It connects over wss:// with it (mutual TLS); \
                         a renewal with the same key from the same issuer keys needs no step here.",
                        crate::certs::hash_text(&pin.key),
                        crate::certs::short_chain(&pin.issuers)
                    );
                }
            }
        }
        EdgeCommand::Enroll { name, expires } => {
            let (text, config) = crate::cli::read_config_text(path)?;
            let Some(e) = config.edge(&name) else {
                return Err(HubError::Other(format!(
                    "no edge named {name:?} (add it with `outpost-hub edge add {name}`)"
                )));
            };
            let database = e.database.clone();
            let seconds = parse_duration(&expires).map_err(HubError::Other)?;
            let expires_at = crate::identity::now_s() + seconds;
            let code = edit::generate_code()?;
            let _writing = edit::config_write_lock();
            let edited = edit::set_enrollment(&text, &name, &code, expires_at)
                .map_err(|e| HubError::config(&config.path, e))?;
            edit::replace_config(path, &edited)?;
            eprintln!(
                "issued a new enrollment code for edge {name}; its previous key, if any, no longer works. \
                 The code follows, shown this once. {}",
                redeem_hint(&name, &database, expires_at)
            );
            println!("{code}");
        }
        EdgeCommand::Revoke { name } => {
            let (text, config) = crate::cli::read_config_text(path)?;
            let edited =
                edit::revoke_edge(&text, &name).map_err(|e| HubError::config(&config.path, e))?;
            edit::replace_config(path, &edited)?;
            eprintln!(
                "revoked edge {name}: a running hub ends its sessions at once and refuses it with \
                 Error(revoked). `outpost-hub edge enroll {name}` gives it a new device."
            );
        }
        EdgeCommand::CertAdd { name, cert } => crate::cli_certs::cert_add(path, &name, &cert)?,
        EdgeCommand::List => {
            let config = Config::load(path)?;
            print!("{}", edge_table(&config));
        }
        EdgeCommand::Status { name, admin } => {
            let config = Config::load(path)?;
            let Some(e) = config.edge(&name) else {
                return Err(HubError::Other(format!(
                    "no edge named {name:?} (see `outpost-hub edge list`)"
                )));
            };
            let database = e.database.clone();
            let state = if e.revoked { "revoked" } else { "active" };
            let rt = crate::cli::runtime()?;
            let admin = config.admin_token_or_demo(admin.admin_token);
            let text = rt.block_on(async {
                let Some(db) = crate::audit::open_unless_held(&config, &database).await? else {
                    return crate::audit_live::edge_status_remote(
                        &config,
                        &database,
                        &name,
                        admin.as_deref(),
                    )
                    .await;
                };
                let r = crate::audit::purge_status(&db, &name).await;
                let closed = db.close().await;
                let s = r?;
                closed?;
                Ok::<_, HubError>(crate::audit::render_purge_status(&s))
            })?;
            println!("edge {name} (database {database}): {state}");
            print!("{text}");
        }
        EdgeCommand::Remove { name } => {
            let (text, config) = crate::cli::read_config_text(path)?;
            let edited =
                edit::remove_edge(&text, &name).map_err(|e| HubError::config(&config.path, e))?;
            let updated = edit::replace_config(path, &edited)?;
            eprintln!(
                "removed edge {name} from {} ({} edges left); a running hub refuses it from now on.",
                updated.path.display(),
                updated.edges.len()
            );
        }
    }
    Ok(())
}

/// What `edge list` shows of an edge's identity.
fn identity_cell(e: &crate::config::EdgeAccess, now: i64) -> String {
    let mut parts = Vec::new();
    if e.revoked {
        parts.push("REVOKED".to_string());
    }
    if let Some(k) = &e.pubkey {
        parts.push(format!("key {}", k.fingerprint()));
    }
    if let Some(en) = &e.enroll {
        let when = outpost::doc::iso_time_ms(en.expires.saturating_mul(1000));
        if en.expires < now {
            parts.push(format!("enrollment code EXPIRED {when}"));
        } else {
            parts.push(format!("enrollment pending until {when}"));
        }
    }
    if e.token_sha256.is_some() {
        parts.push("token (dev)".to_string());
    }
    if !e.certs.is_empty() {
        parts.push(crate::cli_certs::cert_cell(e, now));
    }
    if parts.is_empty() {
        "none (`edge enroll` issues a code)".to_string()
    } else {
        parts.join(", ")
    }
}

/// The `edge list` table.
pub fn edge_table(config: &Config) -> String {
    let show = |p: &outpost::sync::Prefixes| -> String {
        if p.is_empty() {
            "-".to_string()
        } else {
            p.as_slice()
                .iter()
                .map(|s| if s.is_empty() { "*" } else { s.as_str() })
                .collect::<Vec<_>>()
                .join(" ")
        }
    };
    let now = crate::identity::now_s();
    let rows: Vec<[String; 5]> = config
        .edges
        .iter()
        .map(|e| {
            [
                e.name.clone(),
                e.database.clone(),
                show(&e.read),
                show(&e.write),
                identity_cell(e, now),
            ]
        })
        .collect();
    if rows.is_empty() {
        return format!(
            "no edges in {} (add one with `outpost-hub edge add NAME --read PREFIX --write PREFIX`)\n",
            config.path.display()
        );
    }
    let header = ["NAME", "DATABASE", "READ", "WRITE", "IDENTITY"].map(String::from);
    let mut widths = [0usize; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line = format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("7d"), Ok(7 * 86_400));
        assert_eq!(parse_duration("24h"), Ok(86_400));
        assert_eq!(parse_duration("90"), Ok(90));
        for bad in ["", "0d", "7w", "-1h", "99999d", "d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn edge_table_shows_identities() {
        let k = KeyPair::generate().unwrap();
        let text = edit::demo_config(&[("alice", "c")], crate::identity::now_s() + 100);
        let text = edit::redeem_enrollment(&text, "bob", k.public_key()).unwrap();
        let text = edit::revoke_edge(&text, "bob").unwrap();
        let c = Config::parse(&text, Path::new("/tmp/h.toml")).unwrap();
        let t = edge_table(&c);
        assert!(t.starts_with("NAME "), "{t}");
        assert!(
            t.contains("alice  main      notes/  notes/  enrollment pending until "),
            "{t}"
        );
        assert!(
            t.contains(&format!("REVOKED, key {}", k.public_key().fingerprint())),
            "{t}"
        );
    }
}
