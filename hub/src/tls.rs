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

/// The names the development certificate always covers.
const DEV_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The names the development certificate should cover for a hub listening
/// on `listen`: localhost and its loopback addresses; the address itself
/// when it is another; when it is all addresses (`0.0.0.0`, `::`), this
/// machine's host name and the addresses it reaches other machines from
/// ([`this_machine`]), so that a browser on another machine that opens
/// one of them sees only the self-signed warning, not a name error too.
pub fn dev_cert_names(listen: std::net::SocketAddr) -> Vec<String> {
    let mut names: Vec<String> = DEV_NAMES.iter().map(|n| n.to_string()).collect();
    let ip = listen.ip();
    let more = if ip.is_unspecified() {
        this_machine(ip.is_ipv6())
    } else if ip.is_loopback() {
        Vec::new()
    } else {
        vec![ip.to_string()]
    };
    for n in more {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

/// This machine's host name (when it is a usable DNS name) and the
/// addresses its default routes leave from (a UDP socket "connected" to a
/// documentation address sends nothing; it only picks the route): the IPv4
/// one, and the IPv6 one too when `v6` (a hub listening on `::`; one on
/// `0.0.0.0` is not reachable over IPv6). Empty parts are skipped: no
/// network, no route, no readable host name.
fn this_machine(v6: bool) -> Vec<String> {
    let mut out = Vec::new();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let dns = !host.is_empty()
        && host.len() <= 253
        && host != "localhost"
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if dns {
        out.push(host);
    }
    let routes = [("0.0.0.0:0", "192.0.2.1:9"), ("[::]:0", "[2001:db8::1]:9")];
    for (bind, probe) in &routes[..if v6 { 2 } else { 1 }] {
        let local = std::net::UdpSocket::bind(bind)
            .and_then(|s| s.connect(probe).map(|()| s))
            .and_then(|s| s.local_addr());
        if let Ok(a) = local
            && !a.ip().is_loopback()
            && !a.ip().is_unspecified()
        {
            out.push(a.ip().to_string());
        }
    }
    out
}

/// The names (DNS names and IP addresses, as text) a PEM certificate is
/// for; `None` if it cannot be read.
fn cert_names(pem: &Path) -> Option<Vec<String>> {
    let der = load_certs(pem).ok()?.into_iter().next()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut names = Vec::new();
    for n in &san.value.general_names {
        match n {
            x509_parser::extensions::GeneralName::DNSName(d) => names.push(d.to_string()),
            x509_parser::extensions::GeneralName::IPAddress(b) => {
                let ip = match b.len() {
                    4 => <[u8; 4]>::try_from(*b).ok().map(std::net::IpAddr::from),
                    16 => <[u8; 16]>::try_from(*b).ok().map(std::net::IpAddr::from),
                    _ => None,
                };
                names.extend(ip.map(|ip| ip.to_string()));
            }
            _ => {}
        }
    }
    Some(names)
}

/// What [`ensure_dev_cert`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevCert {
    /// The pair in the data directory covers every name: kept.
    Kept,
    /// There was none: made.
    Made,
    /// The certificate there did not cover these names: made again for
    /// them and its own (clients that trusted the old one must trust the
    /// new one).
    Remade(Vec<String>),
}

/// The development certificate pair in `data_dir`, generated (self-signed)
/// for `names` ([`dev_cert_names`]) if it does not exist yet, or again if
/// the one there does not cover them all (with the names it had, so that
/// switching between addresses does not keep replacing it). Returns the
/// paths and what was done.
pub fn ensure_dev_cert(data_dir: &Path, names: &[String]) -> Result<(TlsConfig, DevCert)> {
    let cert = data_dir.join(DEV_CERT_FILE);
    let key = data_dir.join(DEV_KEY_FILE);
    let tls = TlsConfig {
        cert: cert.clone(),
        key: key.clone(),
    };
    let same =
        |a: &str, b: &str| match (a.parse::<std::net::IpAddr>(), b.parse::<std::net::IpAddr>()) {
            (Ok(x), Ok(y)) => x == y,
            _ => a.eq_ignore_ascii_case(b),
        };
    let (all, done) = if cert.exists() && key.exists() {
        let mut all = cert_names(&cert).unwrap_or_default();
        let missing: Vec<String> = names
            .iter()
            .filter(|n| !all.iter().any(|h| same(h, n)))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok((tls, DevCert::Kept));
        }
        // Its names first, in their order, then the missing ones.
        for n in DEV_NAMES
            .iter()
            .map(|n| n.to_string())
            .chain(missing.clone())
        {
            if !all.iter().any(|h| same(h, &n)) {
                all.push(n);
            }
        }
        (all, DevCert::Remade(missing))
    } else {
        (names.to_vec(), DevCert::Made)
    };
    std::fs::create_dir_all(data_dir)
        .map_err(|e| HubError::io(format!("create {}", data_dir.display()), e))?;
    let mut params = rcgen::CertificateParams::new(all)
        .map_err(|e| HubError::Tls(format!("certificate parameters: {e}")))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "Outpost hub development certificate",
    );
    let key_pair =
        rcgen::KeyPair::generate().map_err(|e| HubError::Tls(format!("generate a key: {e}")))?;
    let signed = params
        .self_signed(&key_pair)
        .map_err(|e| HubError::Tls(format!("self-sign the certificate: {e}")))?;
    write_file(&key, key_pair.serialize_pem().as_bytes(), true)?;
    write_file(&cert, signed.pem().as_bytes(), false)?;
    Ok((tls, done))
}

/// How to trust the development certificate, for the operator's terminal,
/// and where other machines reach the hub: at the names of `reach` (those
/// of [`dev_cert_names`] for the listen address) other than localhost's.
pub fn dev_trust_instructions(
    cert: &Path,
    listen: std::net::SocketAddr,
    reach: &[String],
) -> String {
    let c = cert.display();
    let port = listen.port();
    let names = cert_names(cert).unwrap_or_default();
    let elsewhere: Vec<String> = reach
        .iter()
        .filter(|n| !DEV_NAMES.contains(&n.as_str()))
        .map(|n| match n.parse::<std::net::Ipv6Addr>() {
            Ok(_) => format!("https://[{n}]:{port}/"),
            Err(_) => format!("https://{n}:{port}/"),
        })
        .collect();
    let others = if listen.ip().is_loopback() || elsewhere.is_empty() {
        String::new()
    } else {
        format!(
            "From other machines: {} (the browser warns once that the certificate is self-signed)\n",
            elsewhere.join(", ")
        )
    };
    format!(
        "\
Development TLS: self-signed certificate for {}
  certificate: {c}
The hub serves https://localhost:{port}/ and wss://localhost:{port}/sync. To trust it:
  curl:        curl --cacert {c} https://localhost:{port}/healthz
  this tool:   outpost-hub status --url https://localhost:{port} --ca-cert {c}
  upstream:    ca_cert = \"{c}\" in an [[upstream]] of another hub
  Node.js:     NODE_EXTRA_CA_CERTS={c} node app.js
  Chromium:    certutil -d sql:$HOME/.pki/nssdb -A -t \"P,,\" -n outpost-hub-dev -i {c}
               (or start it with --ignore-certificate-errors, for tests only)
{others}Do not use this certificate in production: configure [tls] cert/key instead.",
        names.join(", ")
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
        let local = dev_cert_names("127.0.0.1:4000".parse().unwrap());
        assert_eq!(local, ["localhost", "127.0.0.1", "::1"]);
        let (tls, done) = ensure_dev_cert(&dir, &local).unwrap();
        assert_eq!(done, DevCert::Made);
        let pem = std::fs::read(&tls.cert).unwrap();
        let (again, done) = ensure_dev_cert(&dir, &local).unwrap();
        assert_eq!(done, DevCert::Kept);
        assert_eq!(std::fs::read(&again.cert).unwrap(), pem);
        // Listening on another address: made again for it too, keeping
        // the names it had; then kept for any of them.
        let lan = dev_cert_names("192.0.2.7:4000".parse().unwrap());
        assert_eq!(lan.last().map(String::as_str), Some("192.0.2.7"));
        let (_, done) = ensure_dev_cert(&dir, &lan).unwrap();
        assert_eq!(done, DevCert::Remade(vec!["192.0.2.7".to_string()]));
        let other = dev_cert_names("[2001:db8::5]:4000".parse().unwrap());
        ensure_dev_cert(&dir, &other).unwrap();
        let names = cert_names(&tls.cert).unwrap();
        for n in ["localhost", "127.0.0.1", "::1", "192.0.2.7", "2001:db8::5"] {
            assert!(names.iter().any(|h| h == n), "{n}: {names:?}");
        }
        let pem = std::fs::read(&tls.cert).unwrap();
        assert_eq!(ensure_dev_cert(&dir, &lan).unwrap().1, DevCert::Kept);
        assert_eq!(std::fs::read(&tls.cert).unwrap(), pem);
        let mut reach = lan.clone();
        reach.push("2001:db8::5".into());
        let text = dev_trust_instructions(&tls.cert, "0.0.0.0:4000".parse().unwrap(), &reach);
        assert!(
            text.contains(
                "From other machines: https://192.0.2.7:4000/, https://[2001:db8::5]:4000/"
            ),
            "{text}"
        );
        assert!(
            text.contains("certificate for localhost, 127.0.0.1, ::1, 192.0.2.7, 2001:db8::5"),
            "{text}"
        );
        let text = dev_trust_instructions(&tls.cert, "127.0.0.1:4000".parse().unwrap(), &local);
        assert!(!text.contains("From other machines"), "{text}");
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
