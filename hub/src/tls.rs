//! TLS for `wss://` and `https://`: rustls (ring provider), PEM loading, and
//! the self-signed development certificate of `serve --dev-tls`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{Config, TlsConfig};
use crate::error::{HubError, Result};

/// File name of the development certificate, in the data directory.
pub const DEV_CERT_FILE: &str = "dev-tls-cert.pem";
/// File name of the development private key, in the data directory.
pub const DEV_KEY_FILE: &str = "dev-tls-key.pem";

/// The crypto provider the hub uses (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain (leaf first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    outpost_client::tls::load_certs(path).map_err(|e| HubError::Tls(e.0))
}

/// Reads a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| HubError::Tls(format!("read private key from {}: {e}", path.display())))
}

/// The server side: the two configurations of a TLS listener, one per
/// kind of client, chosen from each connection's `ClientHello`
/// ([`ServerTls::for_hello`]).
#[derive(Debug)]
pub struct ServerTls {
    /// Asks for a client certificate while the configuration has a
    /// certificate identity ([`ClientCerts`]).
    asking: Arc<rustls::ServerConfig>,
    /// Never asks.
    plain: Arc<rustls::ServerConfig>,
}

impl ServerTls {
    /// The configuration for a client whose `ClientHello` is `hello`. A
    /// client that may present a certificate offers
    /// [`outpost_client::tls::CLIENT_CERT_ALPN`] among its ALPN protocols
    /// (the native client does whenever it holds one), or offers no ALPN
    /// at all (`openssl s_client`, `curl --no-alpn`): it is asked for one
    /// (while there are certificate identities). A client that offers
    /// ALPN without it, which every browser does (`http/1.1`, `h2`), is
    /// never asked, so a user with client certificates installed (a smart
    /// card, a company's certificates) is not made to pick one for a hub
    /// that identifies browsers by their keys.
    pub fn for_hello(&self, hello: &rustls::server::ClientHello<'_>) -> Arc<rustls::ServerConfig> {
        let may_present = match hello.alpn() {
            None => true,
            Some(mut offered) => offered.any(|p| p == outpost_client::tls::CLIENT_CERT_ALPN),
        };
        if may_present {
            self.asking.clone()
        } else {
            self.plain.clone()
        }
    }
}

/// The server side: certificate chain and key from `tls`, HTTP/1.1 by ALPN;
/// a client certificate is asked for while `config` (the live
/// configuration) has a certificate identity ([`ClientCerts`]), from the
/// clients that may present one ([`ServerTls::for_hello`]).
pub fn server_config(
    tls: &TlsConfig,
    config: tokio::sync::watch::Receiver<Arc<Config>>,
) -> Result<Arc<ServerTls>> {
    let certs = load_certs(&tls.cert)?;
    let key = load_key(&tls.key)?;
    let unusable = |e: rustls::Error| {
        HubError::Tls(format!(
            "certificate {} and key {} do not make a usable pair: {e}",
            tls.cert.display(),
            tls.key.display()
        ))
    };
    let builder = || {
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| HubError::Tls(e.to_string()))
    };
    let mut asking = builder()?
        .with_client_cert_verifier(Arc::new(ClientCerts::new(config)))
        .with_single_cert(certs.clone(), key.clone_key())
        .map_err(unusable)?;
    let mut plain = builder()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(unusable)?;
    for cfg in [&mut asking, &mut plain] {
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    }
    Ok(Arc::new(ServerTls {
        asking: Arc::new(asking),
        plain: Arc::new(plain),
    }))
}

/// Client certificates over mutual TLS (certificate identities,
/// `crate::certs`): asked for only while the configuration has a
/// certificate identity (an `[[edge.cert]]`; read at each handshake, so an
/// `edge add --cert` takes effect with the reload), and only from clients
/// that may present one ([`ServerTls::for_hello`]), never required (key
/// identities present none). The handshake checks only that the
/// client holds the leaf's key (its `CertificateVerify` signature); the
/// chain is judged when the session's `Hello` names an identity, against
/// that identity's pins, so that a refusal can say why (`Error(cert_…)`)
/// instead of ending in a TLS alert. The hub trusts no CA: trust comes from
/// the pinned key hashes.
#[derive(Debug)]
pub struct ClientCerts {
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
    config: tokio::sync::watch::Receiver<Arc<Config>>,
}

impl ClientCerts {
    /// The verifier, with the ring provider's signature algorithms, asking
    /// for certificates while `config` has a certificate identity.
    pub fn new(config: tokio::sync::watch::Receiver<Arc<Config>>) -> ClientCerts {
        ClientCerts {
            algorithms: provider().signature_verification_algorithms,
            config,
        }
    }
}

impl rustls::server::danger::ClientCertVerifier for ClientCerts {
    fn offer_client_auth(&self) -> bool {
        self.config.borrow().has_certificate_identities()
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: rustls_pki_types::UnixTime,
    ) -> std::result::Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        // Judged later, at the `Hello` (see above); only the shape here.
        if intermediates.len() + 1 > crate::certs::MAX_CHAIN || end_entity.as_ref().is_empty() {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            ));
        }
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A client configuration trusting only the certificate(s) in `ca_cert`
/// (PEM), for `wss://` to a hub with a private or self-signed certificate
/// (the native edge client's, [`outpost_client::tls::client_config`]).
pub fn client_config(ca_cert: &Path) -> Result<Arc<rustls::ClientConfig>> {
    outpost_client::tls::client_config(ca_cert).map_err(|e| HubError::Tls(e.0))
}

/// The development certificate pair in `data_dir`, generated (self-signed,
/// for `localhost` and `127.0.0.1`) if it does not exist yet. Returns the
/// paths and whether it was just created.
pub fn ensure_dev_cert(data_dir: &Path) -> Result<(TlsConfig, bool)> {
    let cert = data_dir.join(DEV_CERT_FILE);
    let key = data_dir.join(DEV_KEY_FILE);
    let tls = TlsConfig {
        cert: cert.clone(),
        key: key.clone(),
    };
    if cert.exists() && key.exists() {
        return Ok((tls, false));
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|e| HubError::io(format!("create {}", data_dir.display()), e))?;
    let mut params = rcgen::CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])
    .map_err(|e| HubError::Tls(format!("certificate parameters: {e}")))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "Outpost hub development certificate (localhost)",
    );
    let key_pair =
        rcgen::KeyPair::generate().map_err(|e| HubError::Tls(format!("generate a key: {e}")))?;
    let signed = params
        .self_signed(&key_pair)
        .map_err(|e| HubError::Tls(format!("self-sign the certificate: {e}")))?;
    write_file(&key, key_pair.serialize_pem().as_bytes(), true)?;
    write_file(&cert, signed.pem().as_bytes(), false)?;
    Ok((tls, true))
}

/// How to trust the development certificate, for the operator's terminal.
pub fn dev_trust_instructions(cert: &Path, listen: std::net::SocketAddr) -> String {
    let c = cert.display();
    let port = listen.port();
    format!(
        "\
Development TLS: self-signed certificate for localhost and 127.0.0.1
  certificate: {c}
The hub serves https://localhost:{port}/ and wss://localhost:{port}/sync. To trust it:
  curl:        curl --cacert {c} https://localhost:{port}/healthz
  this tool:   outpost-hub status --url https://localhost:{port} --ca-cert {c}
  upstream:    ca_cert = \"{c}\" in an [[upstream]] of another hub
  Node.js:     NODE_EXTRA_CA_CERTS={c} node app.js
  Chromium:    certutil -d sql:$HOME/.pki/nssdb -A -t \"P,,\" -n outpost-hub-dev -i {c}
               (or start it with --ignore-certificate-errors, for tests only)
Do not use this certificate in production: configure [tls] cert/key instead."
    )
}

fn write_file(path: &PathBuf, bytes: &[u8], private: bool) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts
        .open(path)
        .map_err(|e| HubError::io(format!("create {}", path.display()), e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| HubError::io(format!("write {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_cert_is_generated_once_and_loads() {
        let dir = std::env::temp_dir().join(format!(
            "outpost-hub-tls-{}-{:?}",
            std::process::id(),
            std::time::Instant::now()
        ));
        let (tls, created) = ensure_dev_cert(&dir).unwrap();
        assert!(created);
        let pem = std::fs::read(&tls.cert).unwrap();
        let (again, created) = ensure_dev_cert(&dir).unwrap();
        assert!(!created);
        assert_eq!(std::fs::read(&again.cert).unwrap(), pem);
        let config = Config::parse(
            "listen = \"127.0.0.1:4000\"\ndata_dir = \"d\"\n[[database]]\nname = \"main\"\n",
            &dir.join("outpost-hub.toml"),
        )
        .unwrap();
        let (_tx, rx) = tokio::sync::watch::channel(Arc::new(config));
        server_config(&tls, rx).unwrap();
        client_config(&tls.cert).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&tls.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
