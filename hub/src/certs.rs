//! Certificate identities (`docs/security.md`, "Trust in keys, not
//! certificates"): what a presented chain proves ([`inspect`]), how it is
//! judged against an identity's pinned certificates ([`judge`]), the
//! replacement rules ([`replace`]) and the purge of expired certificates
//! ([`purge_expired`]). Pure logic over parsed certificates and the clock:
//! the hub's shells (TLS, sessions, the configuration file, the audit
//! trail) call it.
//!
//! An identity is pinned by its certificate's **public key** (SHA-256 of
//! the SubjectPublicKeyInfo) and **the chain of its issuers' public keys**
//! (the same hash of each issuer's key, the leaf's issuer first, the root
//! last), never by the certificate's bytes. A renewed certificate with the
//! same key from the same chain of issuer keys is the same identity; one
//! with the same key from any other issuer (made by the holder itself, or
//! by another CA with the same names) is not.
//!
//! A chain is checked with webpki, with the presented root as the trust
//! anchor: the signatures from the leaf up to the root, the validity
//! period of the leaf and of every intermediate, and the client-auth usage
//! if the leaf states usages. Trust in the root comes from the pin (its
//! key's hash), not from a trust store. The leaf's key must be ECDSA P-256:
//! the same key signs the handshake proof and every batch.

use std::time::Duration;

use outpost::codec::{from_hex, to_hex};
use outpost::keys::PublicKey;
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Most certificates in a chain (leaf, intermediates, root).
pub const MAX_CHAIN: usize = outpost::sync::frame::MAX_REPLACE_CERTS;

/// SHA-256 of a SubjectPublicKeyInfo (DER).
pub type KeyHash = [u8; 32];

/// What a verified chain says about its leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    /// The leaf's key hash.
    pub key: KeyHash,
    /// The issuers' key hashes, the leaf's issuer first, the root last (a
    /// self-signed leaf: its own key).
    pub issuers: Vec<KeyHash>,
    /// The leaf's key (it signs the handshake proof and batches).
    pub public_key: PublicKey,
    /// The leaf's subject (for people; never compared).
    pub subject: String,
    /// The leaf's serial number, hex.
    pub serial: String,
    /// Unix seconds: not valid before.
    pub not_before: i64,
    /// Unix seconds: not valid after.
    pub not_after: i64,
}

/// Why a certificate is refused: a stable code ([`Refusal::code`]) and
/// an explanation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not a readable X.509 certificate chain.
    #[error("the certificate chain cannot be read: {0}")]
    Malformed(String),
    /// The leaf's key is not ECDSA P-256.
    #[error(
        "the certificate's key is not an ECDSA P-256 key ({0}); only P-256 keys can sign Outpost batches"
    )]
    KeyAlgorithm(String),
    /// The chain does not end with a self-issued root.
    #[error(
        "the chain ends with {0:?}, which is not a root (self-issued): present the whole chain, leaf first, up to and including the root"
    )]
    Incomplete(String),
    /// A signature, a usage or the chain's shape does not check.
    #[error("the certificate chain does not verify: {0}")]
    Chain(String),
    /// Past its `notAfter`.
    #[error("the certificate expired at {}", iso(*.0))]
    Expired(i64),
    /// Before its `notBefore`.
    #[error("the certificate is not valid before {}", iso(*.0))]
    NotYetValid(i64),
    /// Same key, but issued by another chain of issuer keys.
    #[error("the certificate's key is pinned for this identity, but it was issued by another chain of issuer keys ({}) than the pinned one ({}): a certificate made by its holder, or by another CA, is not this identity", short_chain(.presented), short_chain(.pinned))]
    Issuer {
        /// The presented chain's issuer key hashes.
        presented: Vec<KeyHash>,
        /// The pinned ones.
        pinned: Vec<KeyHash>,
    },
    /// The certificate was replaced, and its replacement registered its
    /// own: it cannot act any more.
    #[error(
        "this certificate was replaced (its replacement registered a replacement of its own); it is no longer valid"
    )]
    Replaced,
    /// The identity authenticates with a client certificate, and none (or
    /// another key's) was presented over TLS.
    #[error(
        "identity {0} authenticates with a client certificate over TLS (wss://), and the connection presented none for this key"
    )]
    Required(String),
}

impl Refusal {
    /// The stable code (the `Error` or `ReplaceResult` code).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "cert_malformed",
            Refusal::KeyAlgorithm(_) => "cert_key_algorithm",
            Refusal::Incomplete(_) => "cert_chain_incomplete",
            Refusal::Chain(_) => "cert_chain",
            Refusal::Expired(_) => "cert_expired",
            Refusal::NotYetValid(_) => "cert_not_yet_valid",
            Refusal::Issuer { .. } => "cert_issuer",
            Refusal::Replaced => "cert_replaced",
            Refusal::Required(_) => "cert_required",
        }
    }
}

fn iso(s: i64) -> String {
    outpost::doc::iso_time_ms(s.saturating_mul(1000))
}

/// `ab12…` for each hash, `>`-joined (messages).
pub fn short_chain(chain: &[KeyHash]) -> String {
    chain
        .iter()
        .map(|h| to_hex(&h[..4]))
        .collect::<Vec<_>>()
        .join(">")
}

/// SHA-256 of a DER SubjectPublicKeyInfo.
fn key_hash(spki_der: &[u8]) -> KeyHash {
    Sha256::digest(spki_der).into()
}

/// The leaf's P-256 key of `chain` (parsed, not verified): what a key
/// `Hello` must present for the chain's identity.
pub fn leaf_key(chain: &[CertificateDer<'_>]) -> Result<PublicKey, Refusal> {
    let leaf = chain
        .first()
        .ok_or_else(|| Refusal::Malformed("no certificate".into()))?;
    let (_, cert) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|e| Refusal::Malformed(format!("certificate 1: {e}")))?;
    p256_key(&cert)
}

/// The leaf's key hash and validity (`notBefore`, `notAfter`, unix
/// seconds) of `chain`, parsed, not verified.
pub fn leaf_dates(chain: &[CertificateDer<'_>]) -> Option<(KeyHash, i64, i64)> {
    let (_, cert) = X509Certificate::from_der(chain.first()?.as_ref()).ok()?;
    let v = cert.validity();
    Some((
        key_hash(cert.tbs_certificate.subject_pki.raw),
        v.not_before.timestamp(),
        v.not_after.timestamp(),
    ))
}

fn p256_key(cert: &X509Certificate<'_>) -> Result<PublicKey, Refusal> {
    const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
    const P256: &str = "1.2.840.10045.3.1.7";
    let spki = &cert.tbs_certificate.subject_pki;
    let alg = spki.algorithm.algorithm.to_id_string();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string());
    if alg != EC_PUBLIC_KEY || curve.as_deref() != Some(P256) {
        return Err(Refusal::KeyAlgorithm(format!(
            "algorithm {alg}{}",
            curve.map(|c| format!(", curve {c}")).unwrap_or_default()
        )));
    }
    PublicKey::from_sec1(&spki.subject_public_key.data)
        .map_err(|e| Refusal::KeyAlgorithm(e.to_string()))
}

/// Verifies `chain` (DER, leaf first, up to and including the root) at
/// `now` (unix seconds) and says what it proves: every signature from the
/// leaf to the root, the validity period of the leaf and intermediates,
/// the client-auth usage, a P-256 leaf key. Never panics on any input.
pub fn inspect(chain: &[CertificateDer<'_>], now: i64) -> Result<Presented, Refusal> {
    if chain.is_empty() || chain.len() > MAX_CHAIN {
        return Err(Refusal::Malformed(format!(
            "{} certificates (1 to {MAX_CHAIN})",
            chain.len()
        )));
    }
    let mut parsed = Vec::with_capacity(chain.len());
    for (i, c) in chain.iter().enumerate() {
        let (rest, cert) = X509Certificate::from_der(c.as_ref())
            .map_err(|e| Refusal::Malformed(format!("certificate {}: {e}", i + 1)))?;
        if !rest.is_empty() {
            return Err(Refusal::Malformed(format!(
                "certificate {}: trailing bytes",
                i + 1
            )));
        }
        parsed.push(cert);
    }
    let leaf = &parsed[0];
    let public_key = p256_key(leaf)?;
    let root = &parsed[parsed.len() - 1];
    if root.tbs_certificate.subject.as_raw() != root.tbs_certificate.issuer.as_raw() {
        return Err(Refusal::Incomplete(root.subject().to_string()));
    }
    let not_before = leaf.validity().not_before.timestamp();
    let not_after = leaf.validity().not_after.timestamp();
    // Time first, with the leaf's own dates: the reason an operator needs.
    if now > not_after {
        return Err(Refusal::Expired(not_after));
    }
    if now < not_before {
        return Err(Refusal::NotYetValid(not_before));
    }
    let anchors = [webpki::anchor_from_trusted_cert(&chain[chain.len() - 1])
        .map_err(|e| Refusal::Chain(format!("the root: {e:?}")))?];
    let ee = webpki::EndEntityCert::try_from(&chain[0])
        .map_err(|e| Refusal::Chain(format!("the leaf: {e:?}")))?;
    let intermediates: &[CertificateDer<'_>] = if chain.len() > 2 {
        &chain[1..chain.len() - 1]
    } else {
        &[]
    };
    let time = UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(now).unwrap_or(0)));
    let algs = rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all;
    let path = ee
        .verify_for_usage(
            algs,
            &anchors,
            intermediates,
            time,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(|e| match e {
            webpki::Error::CertExpired { .. } => {
                Refusal::Chain("an intermediate certificate of the chain has expired".into())
            }
            webpki::Error::CertNotValidYet { .. } => {
                Refusal::Chain("an intermediate certificate of the chain is not valid yet".into())
            }
            other => Refusal::Chain(format!("{other:?}")),
        })?;
    let used = path.intermediate_certificates().count();
    if used != intermediates.len() {
        return Err(Refusal::Chain(format!(
            "{} of its {} intermediate certificates are not on the path from the leaf to the root",
            intermediates.len() - used,
            intermediates.len()
        )));
    }
    let issuers = if chain.len() == 1 {
        vec![key_hash(leaf.tbs_certificate.subject_pki.raw)]
    } else {
        parsed[1..]
            .iter()
            .map(|c| key_hash(c.tbs_certificate.subject_pki.raw))
            .collect()
    };
    Ok(Presented {
        key: key_hash(leaf.tbs_certificate.subject_pki.raw),
        issuers,
        public_key,
        subject: leaf.subject().to_string(),
        serial: leaf.raw_serial_as_string(),
        not_before,
        not_after,
    })
}

/// One certificate pinned for an identity (`[[edge.cert]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedCert {
    /// Its key hash.
    pub key: KeyHash,
    /// Its issuers' key hashes (leaf's issuer first).
    pub issuers: Vec<KeyHash>,
    /// Its key.
    pub public_key: PublicKey,
    /// The subject of the certificate last seen with this key.
    pub subject: String,
    /// Its serial number (hex).
    pub serial: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// The certificate that registered it as its replacement (`None`: an
    /// operator did).
    pub registered_by: Option<KeyHash>,
    /// Replaced by a certificate that registered its own replacement: it
    /// cannot act any more.
    pub retired: bool,
    /// How many times a renewal (same key, same issuers, new dates) was
    /// accepted.
    pub renewals: u32,
    /// Its expiry is in the audit trail (`expired`): the hub records each
    /// expiry once, connected or not (`crate::cert_session::sweep_expiries`).
    pub expiry_recorded: bool,
}

impl PinnedCert {
    /// A certificate an operator registers.
    pub fn from_presented(p: &Presented) -> PinnedCert {
        PinnedCert {
            key: p.key,
            issuers: p.issuers.clone(),
            public_key: p.public_key.clone(),
            subject: p.subject.clone(),
            serial: p.serial.clone(),
            not_before: p.not_before,
            not_after: p.not_after,
            registered_by: None,
            retired: false,
            renewals: 0,
            expiry_recorded: false,
        }
    }

    /// Whether it may authenticate and act at `now` (not retired, within
    /// its dates).
    pub fn valid_at(&self, now: i64) -> bool {
        !self.retired && self.not_before <= now && now <= self.not_after
    }
}

/// What [`judge`] decided for an accepted certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judged {
    /// The pinned certificate itself.
    Accepted,
    /// A renewal: same key, same issuers, a later `notAfter` (the pin is
    /// to be updated and the renewal audited).
    Renewed,
}

/// Judges a verified chain against an identity's pins: `Ok((index of the
/// pin, how))`, `Err(None)` when no pin has its key (a stranger: refuse
/// without a reason), `Err(Some(why))` otherwise.
pub fn judge(pins: &[PinnedCert], p: &Presented) -> Result<(usize, Judged), Option<Refusal>> {
    let i = pins.iter().position(|c| c.key == p.key).ok_or(None)?;
    let pin = &pins[i];
    if pin.retired {
        return Err(Some(Refusal::Replaced));
    }
    if pin.issuers != p.issuers {
        return Err(Some(Refusal::Issuer {
            presented: p.issuers.clone(),
            pinned: pin.issuers.clone(),
        }));
    }
    // A renewal ends later than the pin: an older certificate of the same
    // key and issuers (a device not yet switched) is accepted as it is,
    // without moving the pin back.
    let renewed = p.not_after > pin.not_after;
    Ok((
        i,
        if renewed {
            Judged::Renewed
        } else {
            Judged::Accepted
        },
    ))
}

/// Applies an accepted renewal to pin `i`.
pub fn renew(pins: &mut [PinnedCert], i: usize, p: &Presented) {
    if let Some(pin) = pins.get_mut(i) {
        pin.subject = p.subject.clone();
        pin.serial = p.serial.clone();
        pin.not_before = p.not_before;
        if pin.not_after != p.not_after {
            pin.expiry_recorded = false;
        }
        pin.not_after = p.not_after;
        pin.renewals = pin.renewals.saturating_add(1);
    }
}

/// Why a replacement is refused: code and explanation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplaceRefusal {
    /// The identity has admin permissions.
    #[error(
        "identity {0} has admin permissions: its certificates are replaced by an operator (`outpost-hub edge cert-add`), never by the certificate itself"
    )]
    Admin(String),
    /// The registering certificate cannot act (expired, retired, unknown).
    #[error("the registering certificate cannot act: {0}")]
    NotValid(String),
    /// The replacement has the registering certificate's key.
    #[error(
        "the replacement has the same key as the registering certificate: a renewal with the same key needs no registration (present it)"
    )]
    SameKey,
    /// The replacement itself does not check.
    #[error("the replacement certificate is refused: {0}")]
    Invalid(Refusal),
    /// The replacement comes from another chain of issuer keys.
    #[error("the replacement was issued by another chain of issuer keys ({}) than the registering certificate ({}): a replacement comes from the same CA", short_chain(.presented), short_chain(.pinned))]
    Issuer {
        /// The replacement's issuer key hashes.
        presented: Vec<KeyHash>,
        /// The registering certificate's.
        pinned: Vec<KeyHash>,
    },
    /// Its key is already pinned (for this identity, not as this
    /// certificate's replacement, or for another identity).
    #[error("the replacement's key is already pinned {0}")]
    Taken(String),
}

impl ReplaceRefusal {
    /// The stable code (the `ReplaceResult` code).
    pub fn code(&self) -> &'static str {
        match self {
            ReplaceRefusal::Admin(_) => "replace_admin",
            ReplaceRefusal::NotValid(_) => "replace_not_valid",
            ReplaceRefusal::SameKey => "replace_same_key",
            ReplaceRefusal::Invalid(_) => "replace_invalid",
            ReplaceRefusal::Issuer { .. } => "replace_issuer",
            ReplaceRefusal::Taken(_) => "replace_taken",
        }
    }
}

/// What a registered replacement changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Replaced {
    /// The same replacement was registered before: nothing changed.
    pub again: bool,
    /// Earlier replacements of the registering certificate, dropped.
    pub dropped: Vec<KeyHash>,
    /// The certificate that had registered the registering one, retired.
    pub retired: Option<KeyHash>,
}

/// Registers `new` (a verified chain) as the replacement of pin `actor`
/// at `now`. The rules (`../shared/DESIGN.md`): A registers B, and both are
/// valid until A expires; A registers C instead, and B is dropped; C
/// registers D, and A is retired. Only a valid certificate registers, the
/// replacement comes from the same chain of issuer keys, keeps the
/// identity's permissions (it is a pin of the same identity), and identities
/// with admin permissions refuse replacements (`admin`).
pub fn replace(
    pins: &mut Vec<PinnedCert>,
    identity: &str,
    admin: bool,
    actor: &KeyHash,
    new: &Presented,
    now: i64,
) -> Result<Replaced, ReplaceRefusal> {
    if admin {
        return Err(ReplaceRefusal::Admin(identity.to_string()));
    }
    let Some(a) = pins.iter().position(|c| &c.key == actor) else {
        return Err(ReplaceRefusal::NotValid(
            "it is no longer pinned for this identity".into(),
        ));
    };
    let pin = pins[a].clone();
    if pin.retired {
        return Err(ReplaceRefusal::NotValid(Refusal::Replaced.to_string()));
    }
    if now > pin.not_after {
        return Err(ReplaceRefusal::NotValid(
            Refusal::Expired(pin.not_after).to_string(),
        ));
    }
    if now < pin.not_before {
        return Err(ReplaceRefusal::NotValid(
            Refusal::NotYetValid(pin.not_before).to_string(),
        ));
    }
    if new.key == pin.key {
        return Err(ReplaceRefusal::SameKey);
    }
    if new.issuers != pin.issuers {
        return Err(ReplaceRefusal::Issuer {
            presented: new.issuers.clone(),
            pinned: pin.issuers.clone(),
        });
    }
    if let Some(e) = pins.iter().position(|c| c.key == new.key) {
        if pins[e].registered_by == Some(pin.key) && !pins[e].retired {
            renew(pins, e, new);
            return Ok(Replaced {
                again: true,
                ..Replaced::default()
            });
        }
        return Err(ReplaceRefusal::Taken("for this identity".into()));
    }
    let dropped: Vec<KeyHash> = pins
        .iter()
        .filter(|c| c.registered_by == Some(pin.key))
        .map(|c| c.key)
        .collect();
    pins.retain(|c| c.registered_by != Some(pin.key));
    let mut retired = None;
    if let Some(parent) = pin.registered_by
        && let Some(p) = pins.iter_mut().find(|c| c.key == parent && !c.retired)
    {
        p.retired = true;
        retired = Some(parent);
    }
    let mut added = PinnedCert::from_presented(new);
    added.registered_by = Some(pin.key);
    pins.push(added);
    Ok(Replaced {
        again: false,
        dropped,
        retired,
    })
}

/// Removes the certificates expired at `now` and returns them; the last
/// certificate of an identity is never removed (when all are expired, the
/// one that expired last stays: its pin lets a renewal of the same key in,
/// and the identity keeps a record of its key).
pub fn purge_expired(pins: &mut Vec<PinnedCert>, now: i64) -> Vec<PinnedCert> {
    let keep_last = if pins.iter().all(|c| now > c.not_after || c.retired) {
        pins.iter()
            .filter(|c| !c.retired)
            .max_by_key(|c| c.not_after)
            .or_else(|| pins.iter().max_by_key(|c| c.not_after))
            .map(|c| c.key)
    } else {
        None
    };
    let (gone, kept): (Vec<PinnedCert>, Vec<PinnedCert>) = std::mem::take(pins)
        .into_iter()
        .partition(|c| now > c.not_after && Some(c.key) != keep_last);
    *pins = kept;
    gone
}

/// `sha256:` and 64 hex digits.
pub fn hash_text(h: &KeyHash) -> String {
    format!("sha256:{}", to_hex(h))
}

/// A hash of [`hash_text`] form (the `sha256:` prefix is optional).
pub fn parse_hash(s: &str) -> Result<KeyHash, String> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    let b = from_hex(hex).ok_or_else(|| format!("{s:?} is not hex"))?;
    b.try_into()
        .map_err(|_| format!("{s:?} is not 64 hex digits (a SHA-256)"))
}

/// One `[[edge.cert]]` as written in the configuration file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCert {
    key: String,
    issuers: Vec<String>,
    public_key: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    serial: String,
    not_before: i64,
    not_after: i64,
    registered_by: Option<String>,
    #[serde(default)]
    retired: bool,
    #[serde(default)]
    renewals: u32,
    #[serde(default)]
    expiry_recorded: bool,
}

impl RawCert {
    /// The pin, checked (the key hash is recomputed from nothing: the
    /// file is the operator's; it is checked for form only).
    pub(crate) fn parse(self) -> Result<PinnedCert, String> {
        let key = parse_hash(&self.key).map_err(|m| format!("key: {m}"))?;
        if self.issuers.is_empty() || self.issuers.len() > MAX_CHAIN {
            return Err(format!("issuers: 1 to {MAX_CHAIN} key hashes"));
        }
        let issuers = self
            .issuers
            .iter()
            .map(|h| parse_hash(h))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| format!("issuers: {m}"))?;
        let public_key =
            PublicKey::parse_text(&self.public_key).map_err(|e| format!("public_key: {e}"))?;
        let registered_by = self
            .registered_by
            .as_deref()
            .map(parse_hash)
            .transpose()
            .map_err(|m| format!("registered_by: {m}"))?;
        Ok(PinnedCert {
            key,
            issuers,
            public_key,
            subject: self.subject,
            serial: self.serial,
            not_before: self.not_before,
            not_after: self.not_after,
            registered_by,
            retired: self.retired,
            renewals: self.renewals,
            expiry_recorded: self.expiry_recorded,
        })
    }
}

/// A pin as a `[[edge.cert]]` table (what `RawCert` reads back).
pub fn to_table(c: &PinnedCert) -> toml_edit::Table {
    use toml_edit::{Array, value};
    let mut t = toml_edit::Table::new();
    t.insert("key", value(hash_text(&c.key)));
    let issuers: Array = c.issuers.iter().map(hash_text).collect();
    t.insert("issuers", value(issuers));
    t.insert("public_key", value(c.public_key.to_text()));
    t.insert("subject", value(&c.subject));
    t.insert("serial", value(&c.serial));
    t.insert("not_before", value(c.not_before));
    t.insert("not_after", value(c.not_after));
    if let Some(by) = &c.registered_by {
        t.insert("registered_by", value(hash_text(by)));
    }
    if c.retired {
        t.insert("retired", value(true));
    }
    if c.renewals > 0 {
        t.insert("renewals", value(i64::from(c.renewals)));
    }
    if c.expiry_recorded {
        t.insert("expiry_recorded", value(true));
    }
    t
}
