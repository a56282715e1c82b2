//! Minting test PKIs with rcgen (CAs, intermediates and leaf certificates
//! with chosen keys and dates), and a hub process serving TLS with client
//! certificates ([`TlsHub`]): shared by `certificates.rs` and the attack
//! catalogue (`attacks/certs.rs`).
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use outpost_testkit::hub::{HubProcess, free_port};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

/// Unix seconds now.
pub fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn at(s: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(s).unwrap()
}

/// A certificate authority: its key, its parameters, its certificate.
pub struct Ca {
    pub key: KeyPair,
    pub params: CertificateParams,
    pub der: CertificateDer<'static>,
    /// Its own chain above it (empty for a root).
    pub above: Vec<CertificateDer<'static>>,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.not_before = at(now() - 3600);
    p.not_after = at(now() + 10 * 365 * 86400);
    p
}

impl Ca {
    /// A root CA named `name` with a new key.
    pub fn root(name: &str) -> Ca {
        Ca::root_with(name, KeyPair::generate().unwrap())
    }

    /// A root CA named `name` with `key`.
    pub fn root_with(name: &str, key: KeyPair) -> Ca {
        let params = ca_params(name);
        let cert = params.self_signed(&key).unwrap();
        Ca {
            der: cert.der().clone(),
            key,
            params,
            above: Vec::new(),
        }
    }

    /// An intermediate CA under this one.
    pub fn intermediate(&self, name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let params = ca_params(name);
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let mut above = vec![self.der.clone()];
        above.extend(self.above.iter().cloned());
        Ca {
            der: cert.der().clone(),
            key,
            params,
            above,
        }
    }

    /// A leaf for `key`, named `cn`, valid from `from` to `until` (unix
    /// seconds): its whole chain, leaf first, up to the root.
    pub fn leaf(
        &self,
        key: &KeyPair,
        cn: &str,
        from: i64,
        until: i64,
    ) -> Vec<CertificateDer<'static>> {
        let mut p = CertificateParams::new(vec![format!("{cn}.example")]).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.not_before = at(from);
        p.not_after = at(until);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = p.signed_by(key, &issuer).unwrap();
        let mut chain = vec![cert.der().clone(), self.der.clone()];
        chain.extend(self.above.iter().cloned());
        chain
    }

    /// A leaf valid from an hour ago for `days`.
    pub fn issue(&self, key: &KeyPair, cn: &str, days: i64) -> Vec<CertificateDer<'static>> {
        self.leaf(key, cn, now() - 3600, now() + days * 86400)
    }
}

/// A new leaf key (ECDSA P-256).
pub fn key() -> KeyPair {
    KeyPair::generate().unwrap()
}

/// A certificate `key` signs for itself, named `cn`.
pub fn self_made(key: &KeyPair, cn: &str) -> Vec<CertificateDer<'static>> {
    let mut p = CertificateParams::new(vec![format!("{cn}.example")]).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.not_before = at(now() - 3600);
    p.not_after = at(now() + 90 * 86400);
    vec![p.self_signed(key).unwrap().der().clone()]
}

/// The PEM of a chain.
pub fn chain_pem(chain: &[CertificateDer<'_>]) -> String {
    chain
        .iter()
        .map(|c| pem::encode(&pem::Pem::new("CERTIFICATE", c.as_ref().to_vec())))
        .collect()
}

/// One PEM file with a chain and its leaf's key (what a peer presents).
pub fn identity_pem(chain: &[CertificateDer<'_>], key: &KeyPair) -> String {
    format!("{}{}", chain_pem(chain), key.serialize_pem())
}

/// DER byte strings of a chain (a `Replace`).
pub fn ders(chain: &[CertificateDer<'_>]) -> Vec<Vec<u8>> {
    chain.iter().map(|c| c.as_ref().to_vec()).collect()
}

const BIN: &str = env!("CARGO_BIN_EXE_outpost-hub");
const WAIT: Duration = Duration::from_secs(60);

/// A hub with TLS (its server certificate from its own CA) in `dir`.
pub struct TlsHub {
    pub proc: HubProcess,
    pub dir: std::path::PathBuf,
    pub port: u16,
}

impl TlsHub {
    pub fn start(dir: &Path, name: &str, body: &str) -> TlsHub {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let server_ca = Ca::root(&format!("{name} server CA"));
        let server_key = key();
        let mut p =
            rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} hub"));
        let issuer = rcgen::Issuer::from_params(&server_ca.params, &server_ca.key);
        let cert = p.signed_by(&server_key, &issuer).unwrap();
        std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
        std::fs::write(
            dir.join("server-ca.pem"),
            chain_pem(std::slice::from_ref(&server_ca.der)),
        )
        .unwrap();
        let port = free_port();
        let cfg = format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"data\"\n[tls]\ncert = \"server.pem\"\nkey = \"server.key\"\n\n[[database]]\nname = \"main\"\n\n{body}"
        );
        std::fs::write(dir.join("outpost-hub.toml"), cfg).unwrap();
        let proc = HubProcess::start(BIN, &dir, &[]);
        TlsHub { proc, dir, port }
    }

    pub fn url(&self) -> String {
        format!("wss://localhost:{}/sync", self.port)
    }

    pub fn ca(&self) -> std::path::PathBuf {
        self.dir.join("server-ca.pem")
    }

    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = std::process::Command::new(BIN)
            .current_dir(&self.dir)
            .args(["--config", "outpost-hub.toml"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    pub fn config(&self) -> String {
        std::fs::read_to_string(self.dir.join("outpost-hub.toml")).unwrap()
    }

    /// Registers certificate identity `name` from `chain` with the CLI.
    pub fn add_cert_edge(
        &self,
        name: &str,
        chain: &[rustls_pki_types::CertificateDer<'_>],
        extra: &[&str],
    ) {
        let file = self.dir.join(format!("{name}-chain.pem"));
        std::fs::write(&file, chain_pem(chain)).unwrap();
        let f = file.to_string_lossy().to_string();
        let mut args = vec![
            "edge", "add", name, "--read", "*", "--write", "*", "--cert", &f,
        ];
        args.extend_from_slice(extra);
        let reloads = self.reloads();
        let (ok, _, err) = self.cli(&args);
        assert!(ok, "{err}");
        self.wait_reload(reloads);
    }

    pub fn reloads(&self) -> usize {
        self.proc.log().matches("configuration reloaded").count()
    }

    /// Waits until the hub reloaded its configuration once more than `n`.
    pub fn wait_reload(&self, n: usize) {
        let t = std::time::Instant::now();
        while self.reloads() <= n {
            assert!(t.elapsed() < WAIT, "no reload:\n{}", self.proc.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
