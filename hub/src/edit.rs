//! Writing the configuration file: the starter files of `init`, and the
//! `edge add` / `edge remove` / `edge enroll` / `edge revoke` edits and an
//! enrollment code's redemption by the running hub, which keep the file's
//! comments and layout (toml_edit) and are validated before the file is
//! replaced.

use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use outpost::keys::PublicKey;
use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, value};

use crate::config::{Config, token_sha256_hex};
use crate::error::{HubError, Result};

/// The demo edges of `init --demo`.
pub const DEMO_EDGES: [&str; 2] = ["alice", "bob"];

/// The file `init --demo` writes the demo edges' enrollment codes to (in
/// the configuration's directory, mode 0600).
pub const DEMO_CODES_FILE: &str = "enroll-codes.txt";

/// How long an enrollment code is valid by default (7 days, in seconds).
pub const DEFAULT_ENROLL_SECONDS: i64 = 7 * 86_400;

static CONFIG_WRITE: Mutex<()> = Mutex::new(());

/// Held while this process reads-then-rewrites the configuration file (an
/// enrollment redeemed) or reloads it, so the two never interleave.
pub fn config_write_lock() -> MutexGuard<'static, ()> {
    CONFIG_WRITE.lock().unwrap_or_else(|p| p.into_inner())
}

/// The demo configuration's admin token (public, like its edge tokens):
/// `outpost-hub status` uses it when the configuration is the demo's.
pub const DEMO_ADMIN_TOKEN: &str = "admin-demo-token";

const STARTER: &str = r#"# Outpost hub configuration.
#
# The hub re-reads this file when it changes (and on SIGHUP): edges added,
# removed or re-scoped take effect without a restart; an invalid edit is
# logged and the previous configuration stays in force. Relative paths are
# relative to this file's directory. `outpost-hub --help` lists the commands.
#
# Edges are added with `outpost-hub edge add NAME --read PREFIX --write PREFIX`,
# which appends an [[edge]] table like this one (only the token's SHA-256 is
# kept here, never the token itself):
#
#   [[edge]]
#   name = "laptop-7"              # the edge's identity
#   token_sha256 = "9f86d08..."    # SHA-256 of its secret token (hex)
#   database = "main"
#   read = ["patients/dr-7/"]      # id prefixes it may read (hub -> edge)
#   write = ["patients/dr-7/"]     # id prefixes it may write (edge -> hub)
#
# This hub can itself be an edge of another hub (a clinic of a cloud):
#
#   [[upstream]]
#   database = "main"
#   url = "wss://cloud.example.org/sync"
#   identity = "boston"
#   token = "..."                  # the token this hub presents (plain text)
#   ca_cert = "cloud.crt"          # optional: PEM certificate to trust
#
# /status and /metrics answer 401 until an admin token is set:
# `outpost-hub admin-token` writes [admin] token_sha256 and prints the token.
# Connection caps and timeouts ([limits]) have defaults; hub/README.md lists
# them (e.g. max_connections_per_address = 256, hello_timeout_ms = 10000).

# Address for HTTP and WebSocket; edges connect to ws://ADDRESS/sync.
listen = "127.0.0.1:4000"

# One sub-directory per database.
data_dir = "./hub-data"

# Static files served at / (optional).
# demo_site = "demo-site"

# TLS: serve https:// and wss:// (optional; without it, plain http:// and
# ws://). For local work, `outpost-hub serve --dev-tls` makes and uses a
# self-signed certificate instead.
# [tls]
# cert = "hub.crt"                 # PEM certificate chain, leaf first
# key = "hub.key"                  # PEM private key

[[database]]
name = "main"

# Conflict policy by collection: latest, hub-wins or manual; "*" is the default.
[database.conflicts]
"*" = "latest"
"#;

const DEMO: &str = r#"# Outpost hub: DEMO configuration (`outpost-hub init --demo`).
#
# Two demo edges, alice and bob, share the notes/ prefix of database "main".
# Each has a one-time enrollment code (printed by `init --demo` and kept in
# enroll-codes.txt next to this file): the first device that presents it
# with its key becomes that edge. Shared-secret tokens are off ([dev]).
# Start the hub with `outpost-hub serve` and open http://127.0.0.1:4000/.
#
# The hub re-reads this file when it changes (and on SIGHUP). Relative paths
# are relative to this file's directory.

listen = "127.0.0.1:4000"
data_dir = "./hub-data"

# The demo web app, served at /.
demo_site = "demo-site"

[[database]]
name = "main"
# Notes pinned in the demo (collection Pinned) are never deleted: a delete is
# refused with delete_forbidden, at the hub and in every browser, offline too.
never_delete = ["Pinned"]

[database.conflicts]
"*" = "latest"
"#;

/// The text `init` writes: a commented starter configuration, or with
/// `demo` the demo configuration (database `main`, edges alice and bob,
/// each with a pending enrollment code: `demo_codes` gives (name, code)
/// pairs, valid until `expires`, unix seconds).
pub fn starter_config(demo: bool) -> String {
    if demo {
        demo_config(&[], 0)
    } else {
        STARTER.to_string()
    }
}

/// The demo configuration with these enrollment codes ((edge, code) pairs,
/// valid until `expires`, unix seconds); a demo edge without a code is
/// written without any credential.
pub fn demo_config(codes: &[(&str, &str)], expires: i64) -> String {
    let mut text = DEMO.to_string();
    text.push_str(&format!(
        "\n# /status, /metrics and /admin/* need `Authorization: Bearer {DEMO_ADMIN_TOKEN}`\n\
         # (public, so honoured only from this machine: `outpost-hub admin-token`\n\
         # sets a secret one).\n[admin]\ntoken_sha256 = \"{}\"\n",
        token_sha256_hex(DEMO_ADMIN_TOKEN)
    ));
    for name in DEMO_EDGES {
        text.push_str(&format!("\n[[edge]]\nname = \"{name}\"\n"));
        if let Some((_, code)) = codes.iter().find(|(n, _)| *n == name) {
            text.push_str(&format!(
                "enroll_code_sha256 = \"{}\"\nenroll_expires = {expires}\n",
                token_sha256_hex(code)
            ));
        }
        text.push_str("database = \"main\"\nread = [\"notes/\"]\nwrite = [\"notes/\"]\n");
    }
    text
}

/// How a new edge will prove who it is.
#[derive(Debug, Clone)]
pub enum NewCredential {
    /// Its public key, registered now.
    Key(PublicKey),
    /// A one-time enrollment code (only its SHA-256 is written), valid
    /// until `expires` (unix seconds).
    Enroll {
        /// The code.
        code: String,
        /// Unix seconds.
        expires: i64,
    },
    /// A shared-secret token (development mode; only its SHA-256 is written).
    Token(String),
    /// A certificate identity: its first pinned certificate
    /// (`[[edge.cert]]`), and whether it has admin permissions.
    Cert {
        /// The pin.
        pin: Box<crate::certs::PinnedCert>,
        /// `admin = true`.
        admin: bool,
    },
}

/// An edge to add.
#[derive(Debug, Clone)]
pub struct NewEdge {
    /// Its identity.
    pub name: String,
    /// Its database.
    pub database: String,
    /// Prefixes it may read.
    pub read: Vec<String>,
    /// Prefixes it may write.
    pub write: Vec<String>,
    /// How it proves who it is.
    pub credential: NewCredential,
}

fn parse_doc(text: &str) -> std::result::Result<DocumentMut, String> {
    text.parse::<DocumentMut>().map_err(|e| e.to_string())
}

fn string_array(items: &[String]) -> Array {
    items.iter().map(String::as_str).collect()
}

/// The configuration text with `edge` appended as an `[[edge]]` table.
/// Comments and layout of the rest are kept.
pub fn add_edge(text: &str, edge: &NewEdge) -> std::result::Result<String, String> {
    let mut doc = parse_doc(text)?;
    let entry = doc
        .entry("edge")
        .or_insert_with(|| Item::ArrayOfTables(ArrayOfTables::new()));
    let Some(edges) = entry.as_array_of_tables_mut() else {
        return Err(
            "\"edge\" is not written as [[edge]] tables; edit the file by hand".to_string(),
        );
    };
    let mut t = Table::new();
    t.insert("name", value(&edge.name));
    match &edge.credential {
        NewCredential::Key(k) => {
            t.insert("pubkey", value(k.to_text()));
        }
        NewCredential::Enroll { code, expires } => {
            t.insert("enroll_code_sha256", value(token_sha256_hex(code)));
            t.insert("enroll_expires", value(*expires));
        }
        NewCredential::Token(token) => {
            t.insert("token_sha256", value(token_sha256_hex(token)));
        }
        NewCredential::Cert { admin, .. } => {
            if *admin {
                t.insert("admin", value(true));
            }
        }
    }
    t.insert("database", value(&edge.database));
    t.insert("read", value(string_array(&edge.read)));
    t.insert("write", value(string_array(&edge.write)));
    if let NewCredential::Cert { pin, .. } = &edge.credential {
        let mut certs = ArrayOfTables::new();
        certs.push(crate::certs::to_table(pin));
        t.insert("cert", Item::ArrayOfTables(certs));
    }
    let when = outpost::doc::iso_time_ms(now_ms());
    t.decor_mut()
        .set_prefix(format!("\n# added by `outpost-hub edge add` on {when}\n"));
    edges.push(t);
    Ok(doc.to_string())
}

/// The `[[edge]]` table named `name`, or an error listing the edges.
fn edge_table_mut<'a>(
    doc: &'a mut DocumentMut,
    name: &str,
) -> std::result::Result<&'a mut Table, String> {
    let Some(edges) = doc.get_mut("edge").and_then(Item::as_array_of_tables_mut) else {
        return Err(format!("no edge named {name:?} (the file has no [[edge]])"));
    };
    let names: Vec<String> = edges
        .iter()
        .filter_map(|t| t.get("name").and_then(Item::as_str).map(str::to_string))
        .collect();
    match edges
        .iter_mut()
        .find(|t| t.get("name").and_then(Item::as_str) == Some(name))
    {
        Some(t) => Ok(t),
        None => Err(format!(
            "no edge named {name:?} (edges: {})",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )),
    }
}

/// Inserts `key = v` after `name` (or replaces it where it is), so the
/// edge's credentials stay near its name.
fn set_field(t: &mut Table, key: &str, v: Item) {
    t.insert(key, v);
}

/// The text with the enrollment code of edge `name` redeemed for `key`:
/// `pubkey` set, the enrollment fields removed.
pub fn redeem_enrollment(
    text: &str,
    name: &str,
    key: &PublicKey,
) -> std::result::Result<String, String> {
    let mut doc = parse_doc(text)?;
    let t = edge_table_mut(&mut doc, name)?;
    t.remove("enroll_code_sha256");
    t.remove("enroll_expires");
    set_field(t, "pubkey", value(key.to_text()));
    Ok(doc.to_string())
}

/// The text with a new enrollment code for edge `name` (its SHA-256, valid
/// until `expires`): its key, if any, is removed (the device it belonged to
/// is replaced), and so is a revocation.
pub fn set_enrollment(
    text: &str,
    name: &str,
    code: &str,
    expires: i64,
) -> std::result::Result<String, String> {
    let mut doc = parse_doc(text)?;
    let t = edge_table_mut(&mut doc, name)?;
    t.remove("pubkey");
    t.remove("revoked");
    set_field(t, "enroll_code_sha256", value(token_sha256_hex(code)));
    set_field(t, "enroll_expires", value(expires));
    Ok(doc.to_string())
}

/// The text with edge `name` revoked (`revoked = true`; a pending
/// enrollment code is removed too).
pub fn revoke_edge(text: &str, name: &str) -> std::result::Result<String, String> {
    let mut doc = parse_doc(text)?;
    let t = edge_table_mut(&mut doc, name)?;
    t.remove("enroll_code_sha256");
    t.remove("enroll_expires");
    set_field(t, "revoked", value(true));
    Ok(doc.to_string())
}

/// The text with the pinned certificates of edge `name` set to `pins`
/// (its `[[edge.cert]]` tables, in order).
pub fn set_certs(
    text: &str,
    name: &str,
    pins: &[crate::certs::PinnedCert],
) -> std::result::Result<String, String> {
    let mut doc = parse_doc(text)?;
    let t = edge_table_mut(&mut doc, name)?;
    let mut certs = ArrayOfTables::new();
    for p in pins {
        certs.push(crate::certs::to_table(p));
    }
    t.insert("cert", Item::ArrayOfTables(certs));
    Ok(doc.to_string())
}

/// The configuration text without the `[[edge]]` named `name`.
pub fn remove_edge(text: &str, name: &str) -> std::result::Result<String, String> {
    let mut doc = parse_doc(text)?;
    let Some(edges) = doc.get_mut("edge").and_then(Item::as_array_of_tables_mut) else {
        return Err(format!("no edge named {name:?} (the file has no [[edge]])"));
    };
    let Some(i) = edges
        .iter()
        .position(|t| t.get("name").and_then(Item::as_str) == Some(name))
    else {
        let names: Vec<String> = edges
            .iter()
            .filter_map(|t| t.get("name").and_then(Item::as_str).map(str::to_string))
            .collect();
        return Err(format!(
            "no edge named {name:?} (edges: {})",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ));
    };
    edges.remove(i);
    if edges.is_empty() {
        doc.remove("edge");
    }
    Ok(doc.to_string())
}

/// Changes the configuration file at `path` under the configuration-write
/// lock: the file is read again and parsed, `change` makes the new text
/// from the text and the configuration as they are now (or refuses), and
/// the file is replaced ([`replace_config`]) before the lock is let go, so
/// two changes never overwrite each other. Returns the new configuration
/// (for the running hub to put in force) and what `change` returned.
pub fn rewrite_config<T>(
    path: &Path,
    change: impl FnOnce(&str, &Config) -> std::result::Result<(String, T), String>,
) -> std::result::Result<(Config, T), String> {
    let _writing = config_write_lock();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let current = Config::parse(&text, path).map_err(|e| e.to_string())?;
    let (edited, out) = change(&text, &current)?;
    let new = replace_config(path, &edited).map_err(|e| e.to_string())?;
    Ok((new, out))
}

/// Validates `text` as the configuration at `path`, then replaces the file
/// atomically (a temporary file in the same directory, renamed over it),
/// keeping the file's permissions.
pub fn replace_config(path: &Path, text: &str) -> Result<Config> {
    let config = Config::parse(text, path).map_err(|e| {
        HubError::Other(format!(
            "the file was not changed: the edit would make it invalid: {e}"
        ))
    })?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config".into());
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        if let Ok(meta) = std::fs::metadata(path) {
            f.set_permissions(meta.permissions())?;
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(HubError::io(format!("write {}", path.display()), e));
    }
    Ok(config)
}

/// A new random enrollment code: 16 bytes from the operating system, as
/// 32 hex digits in groups of 8 (easy to read out and type).
pub fn generate_code() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| HubError::Other(format!("no randomness from the operating system: {e}")))?;
    let hex = outpost::codec::to_hex(&bytes);
    Ok(hex
        .as_bytes()
        .chunks(8)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-"))
}

/// A new random token: 32 bytes from the operating system, as 64 hex digits.
pub fn generate_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| HubError::Other(format!("no randomness from the operating system: {e}")))?;
    Ok(outpost::codec::to_hex(&bytes))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse(text, Path::new("/tmp/x/hub.toml")).unwrap()
    }

    #[test]
    fn starters_are_valid() {
        let c = parse(&starter_config(false));
        assert_eq!(c.databases.len(), 1);
        assert!(c.edges.is_empty());
        let d = parse(&demo_config(&[("alice", "code-a"), ("bob", "code-b")], 99));
        assert_eq!(d.edges.len(), 2);
        assert!(!d.dev_tokens);
        let a = d.edge("alice").unwrap();
        let e = a.enroll.as_ref().unwrap();
        assert!(e.redeems("code-a", 99) && !e.redeems("code-b", 99) && !e.redeems("code-a", 100));
        assert!(a.token_sha256.is_none() && a.pubkey.is_none());
    }

    #[test]
    fn enrollment_edits() {
        let k = outpost::keys::KeyPair::generate().unwrap();
        let k = outpost::keys::Signer::public_key(&k).clone();
        let start = demo_config(&[("alice", "c1")], 50);
        let redeemed = redeem_enrollment(&start, "alice", &k).unwrap();
        let c = parse(&redeemed);
        let a = c.edge("alice").unwrap();
        assert_eq!(a.pubkey.as_ref(), Some(&k));
        assert!(a.enroll.is_none());
        let again = set_enrollment(&redeemed, "alice", "c2", 70).unwrap();
        let a2 = parse(&again).edge("alice").unwrap().clone();
        assert!(a2.pubkey.is_none() && a2.enroll.unwrap().redeems("c2", 70));
        let revoked = revoke_edge(&again, "alice").unwrap();
        let a3 = parse(&revoked).edge("alice").unwrap().clone();
        assert!(a3.revoked && a3.enroll.is_none());
        assert!(
            revoke_edge(&revoked, "nobody")
                .unwrap_err()
                .contains("no edge named")
        );
    }

    #[test]
    fn add_and_remove_keep_comments() {
        let start = starter_config(false);
        let edge = NewEdge {
            name: "laptop-7".into(),
            database: "main".into(),
            read: vec!["patients/dr-7/".into()],
            write: vec!["patients/dr-7/".into(), "visits/dr-7/".into()],
            credential: NewCredential::Token("tok-xyz-123".into()),
        };
        let start = format!("{start}\n[dev]\ntokens = true\n");
        let added = add_edge(&start, &edge).unwrap();
        assert!(added.starts_with(&start), "appended at the end:\n{added}");
        assert!(added.contains("# added by `outpost-hub edge add` on "));
        assert!(!added.contains("tok-xyz-123"));
        let c = parse(&added);
        assert_eq!(
            c.authenticate("laptop-7", "tok-xyz-123").unwrap().database,
            "main"
        );
        let twice = add_edge(
            &added,
            &NewEdge {
                name: "other".into(),
                ..edge
            },
        )
        .unwrap();
        assert_eq!(parse(&twice).edges.len(), 2);

        let removed = remove_edge(&twice, "laptop-7").unwrap();
        let c = parse(&removed);
        assert_eq!(c.edges.len(), 1);
        assert_eq!(c.edges[0].name, "other");
        assert!(removed.contains("# Conflict policy by collection"));
        let none = remove_edge(&removed, "other").unwrap();
        assert!(parse(&none).edges.is_empty());
        assert_eq!(none.trim_end(), start.trim_end());
        let _ = DEFAULT_ENROLL_SECONDS;
        let e = remove_edge(&none, "other").unwrap_err();
        assert!(e.contains("no edge named"), "{e}");
    }

    #[test]
    fn tokens_are_random() {
        let a = generate_token().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, generate_token().unwrap());
    }
}
