//! `[[upstream]]`: another hub this hub replicates with, as an edge
//! (`crate::upstream`), and how its entry is checked.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{check_name, resolve};

/// One `[[upstream]]`: another hub this hub replicates with, as an edge.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// The local database replicated.
    pub database: String,
    /// The other hub's WebSocket URL (`ws://` or `wss://`).
    pub url: String,
    /// This hub's identity at the other hub.
    pub identity: String,
    /// The token this hub presents (plain text; development mode; empty
    /// when `key_file` is set).
    pub token: String,
    /// This hub's key file as an edge of the other hub (absolute path).
    pub key_file: Option<PathBuf>,
    /// A PEM certificate to trust for `wss://` (absolute path), if any.
    pub ca_cert: Option<PathBuf>,
    /// A certificate identity (`wss://`, mutual TLS): one PEM file with the
    /// chain (leaf first, up to the root) and the leaf's PKCS#8 key
    /// (absolute path). A renewal job drops the next one beside it as
    /// `<cert>.next` (`crate::upstream`).
    pub cert: Option<PathBuf>,
}

impl fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("database", &self.database)
            .field("url", &self.url)
            .field("identity", &self.identity)
            .field("token", &"<redacted>")
            .field("key_file", &self.key_file)
            .field("ca_cert", &self.ca_cert)
            .field("cert", &self.cert)
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    pub(super) database: String,
    pub(super) url: String,
    identity: String,
    token: Option<String>,
    key_file: Option<PathBuf>,
    ca_cert: Option<PathBuf>,
    cert: Option<PathBuf>,
}

impl RawUpstream {
    /// The checked entry (`at` names it in errors; relative paths are
    /// taken from `base`). Its database is checked by the caller.
    pub(super) fn parse(
        self,
        at: &str,
        base: &Path,
        dev_tokens: bool,
    ) -> Result<UpstreamConfig, String> {
        check_name(&self.identity, 128, true).map_err(|m| format!("{at}: identity: {m}"))?;
        let cert = match &self.cert {
            Some(_) if self.token.is_some() || self.key_file.is_some() => {
                return Err(format!(
                    "{at}: cert: a certificate identity has no key_file or token (its certificate's key is its key)"
                ));
            }
            Some(c) if c.as_os_str().is_empty() => {
                return Err(format!("{at}: cert: must not be empty"));
            }
            Some(_) if !self.url.starts_with("wss://") => {
                return Err(format!(
                    "{at}: cert: a client certificate is presented over TLS only: the url must be wss://"
                ));
            }
            Some(c) => Some(resolve(base, c)),
            None => None,
        };
        let key_file = match (&self.token, &self.key_file) {
            _ if cert.is_some() => None,
            (Some(_), Some(_)) => {
                return Err(format!("{at}: give either key_file or token, not both"));
            }
            (None, None) => {
                return Err(format!(
                    "{at}: key_file: missing (this hub's key at the upstream hub: \
                     `outpost-hub keygen FILE` makes one and prints the public key to enroll there)"
                ));
            }
            (Some(t), None) => {
                if !dev_tokens {
                    return Err(format!(
                        "{at}: token: shared-secret tokens are a development mode, off by default; \
                         use key_file (`outpost-hub keygen FILE`), or allow tokens with `[dev] tokens = true`"
                    ));
                }
                if t.is_empty() {
                    return Err(format!("{at}: token: must not be empty"));
                }
                None
            }
            (None, Some(k)) => {
                if k.as_os_str().is_empty() {
                    return Err(format!("{at}: key_file: must not be empty"));
                }
                Some(resolve(base, k))
            }
        };
        if self
            .ca_cert
            .as_ref()
            .is_some_and(|c| c.as_os_str().is_empty())
        {
            return Err(format!("{at}: ca_cert: must not be empty"));
        }
        Ok(UpstreamConfig {
            database: self.database,
            url: self.url,
            identity: self.identity,
            token: self.token.unwrap_or_default(),
            key_file,
            ca_cert: self.ca_cert.as_deref().map(|c| resolve(base, c)),
            cert,
        })
    }
}
