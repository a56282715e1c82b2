//! TLS for `wss://`: a rustls client configuration (ring provider) trusting
//! the PEM certificate(s) of a file, and the client certificate a native
//! peer with a certificate identity presents (mutual TLS).

use std::path::Path;
use std::sync::Arc;

use outpost::keys::{KeyPair, PublicKey, Signer};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate file could not be read or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

/// Reads a PEM certificate chain (leaf first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError(format!("read certificates from {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "{}: no PEM certificate found (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certs)
}

/// A certificate identity: the certificate chain a native peer presents
/// over mutual TLS (leaf first, up to and including the root, so the hub
/// can check every issuer's key) and the leaf's private key, an ECDSA P-256
/// key in PKCS#8 (`-----BEGIN PRIVATE KEY-----`). The same key signs the
/// handshake proof and every batch.
pub struct ClientCert {
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    pair: Arc<KeyPair>,
}

impl std::fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCert")
            .field("certificates", &self.chain.len())
            .field("key", &self.pair.public_key().fingerprint())
            .finish_non_exhaustive()
    }
}

impl ClientCert {
    /// Reads one PEM file holding the chain (leaf first) and the leaf's
    /// PKCS#8 private key: what a renewal job writes, in one file so that
    /// replacing it is one atomic rename.
    pub fn load(path: &Path) -> Result<ClientCert, TlsError> {
        let text =
            std::fs::read(path).map_err(|e| TlsError(format!("read {}: {e}", path.display())))?;
        ClientCert::from_pem(&text).map_err(|e| TlsError(format!("{}: {}", path.display(), e.0)))
    }

    /// The certificate identity of PEM text (chain and key, any order).
    pub fn from_pem(pem: &[u8]) -> Result<ClientCert, TlsError> {
        let chain = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError(format!("certificates: {e}")))?;
        if chain.is_empty() {
            return Err(TlsError(
                "no certificate (expected -----BEGIN CERTIFICATE-----)".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
            TlsError(format!(
                "no usable private key (expected -----BEGIN PRIVATE KEY-----, PKCS#8): {e}"
            ))
        })?;
        let PrivateKeyDer::Pkcs8(pkcs8) = &key else {
            return Err(TlsError(
                "the private key is not PKCS#8 (convert it: openssl pkcs8 -topk8 -nocrypt)".into(),
            ));
        };
        let pair = KeyPair::from_pkcs8(pkcs8.secret_pkcs8_der())
            .map_err(|e| TlsError(format!("the private key is not an ECDSA P-256 key: {e}")))?;
        Ok(ClientCert {
            chain,
            key,
            pair: Arc::new(pair),
        })
    }

    /// The leaf's public key (the identity's key at the hub).
    pub fn public_key(&self) -> &PublicKey {
        self.pair.public_key()
    }

    /// The signer of the handshake proof and of batches.
    pub fn signer(&self) -> Arc<dyn Signer> {
        self.pair.clone()
    }

    /// The chain as DER byte strings (what a `Replace` carries).
    pub fn chain_der(&self) -> Vec<Vec<u8>> {
        self.chain.iter().map(|c| c.as_ref().to_vec()).collect()
    }
}

/// The ALPN protocol a client that holds a certificate offers (besides
/// `http/1.1`, which the hub picks): a hub asks only such clients, and
/// clients that offer no ALPN at all, for a certificate, never browsers
/// (`outpost_hub::tls::ServerTls::for_hello`; docs/security.md, "Trust in
/// keys, not certificates").
pub const CLIENT_CERT_ALPN: &[u8] = b"outpost-client-cert";

/// A client configuration trusting only the certificate(s) in `ca_cert`
/// (PEM), for `wss://` to a hub with a private or self-signed certificate.
pub fn client_config(ca_cert: &Path) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    client_config_with(ca_cert, None)
}

/// [`client_config`], presenting `cert` when the hub asks for a client
/// certificate (mutual TLS).
pub fn client_config_with(
    ca_cert: &Path,
    cert: Option<&ClientCert>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(ca_cert)? {
        roots
            .add(cert)
            .map_err(|e| TlsError(format!("{}: {e}", ca_cert.display())))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_root_certificates(roots);
    let cfg = match cert {
        None => cfg.with_no_client_auth(),
        Some(c) => {
            let mut cfg = cfg
                .with_client_auth_cert(c.chain.clone(), c.key.clone_key())
                .map_err(|e| TlsError(format!("the client certificate cannot be used: {e}")))?;
            // Tells the hub to ask for it (the hub answers `http/1.1`).
            cfg.alpn_protocols = vec![CLIENT_CERT_ALPN.to_vec(), b"http/1.1".to_vec()];
            cfg
        }
    };
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_or_empty_certificate_files_are_errors() {
        let dir = std::env::temp_dir().join(format!("outpost-client-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let e = client_config(&missing).unwrap_err();
        assert!(e.0.starts_with("read certificates from "), "{e}");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = load_certs(&empty).unwrap_err();
        assert!(e.0.contains("no PEM certificate found"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
