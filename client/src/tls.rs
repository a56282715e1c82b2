//! TLS for `wss://`: a rustls client configuration (ring provider) trusting
//! the PEM certificate(s) of a file.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

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

/// A client configuration trusting only the certificate(s) in `ca_cert`
/// (PEM), for `wss://` to a hub with a private or self-signed certificate.
pub fn client_config(ca_cert: &Path) -> Result<Arc<rustls::ClientConfig>, TlsError> {
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
        .with_root_certificates(roots)
        .with_no_client_auth();
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
