//! Building certificates with rcgen: the CA's and the leaves' parameters, random serials and
//! explicit validity. Pure apart from the CSPRNG: nothing here reads or writes files.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use super::error::PkiError;
use super::secret::Secret;
use super::spec::{Eku, LeafSpec, San};

/// How far `not_before` is backdated, so a host whose clock lags a little accepts a fresh
/// certificate.
pub const BACKDATE: Duration = Duration::hours(1);

/// An explicit validity period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// Start (backdated by [`BACKDATE`]).
    pub not_before: OffsetDateTime,
    /// End: `now + days`, whole seconds.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// `days` from `now`, truncated to whole seconds (X.509 times carry no fraction).
    pub fn days_from(now: OffsetDateTime, days: u32) -> Self {
        let now = now.replace_nanosecond(0).expect("0 is a valid nanosecond");
        Validity {
            not_before: now - BACKDATE,
            not_after: now + Duration::days(i64::from(days)),
        }
    }

    /// The same period, ending no later than `limit` (a leaf never outlives its CA).
    pub fn capped_at(self, limit: OffsetDateTime) -> Self {
        Validity {
            not_after: self.not_after.min(limit),
            ..self
        }
    }
}

/// A new certificate and its private key, both PEM.
#[derive(Debug)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The PKCS#8 private key.
    pub key_pem: Secret<String>,
}

/// A random, positive, 128-bit serial number (RFC 5280 allows up to 20 octets).
pub fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    while bytes.iter().all(|b| *b == 0) {
        rand::fill(&mut bytes);
    }
    SerialNumber::from_slice(&bytes)
}

/// A new ECDSA P-256 key (Ed25519 keys fail to load in OpenSSL 3.0: docs/design.md §3).
pub fn new_key(what: &str) -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| gen_error(what, e))
}

/// A self-signed CA certificate: basicConstraints CA:true (critical, path length 0), keyUsage
/// keyCertSign + cRLSign, subject key identifier.
pub fn self_signed_ca(cluster: &str, key: &KeyPair, validity: Validity) -> Result<Issued, PkiError> {
    let mut params = CertificateParams::default();
    // The creation time in the name tells two CAs apart during a rotation (leaves carry the
    // authority key identifier, so chain building never depends on it).
    let created = validity
        .not_before
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]Z"
        ))
        .unwrap_or_default();
    params.distinguished_name = name(&format!("pgha {cluster} CA {created}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    params.serial_number = Some(random_serial());
    let cert = params
        .self_signed(key)
        .map_err(|e| gen_error("the CA certificate", e))?;
    Ok(Issued {
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
        key_pem: Secret::new(key.serialize_pem()),
    })
}

/// A leaf for `spec`, with a new key, signed by `issuer`, carrying an authority key identifier.
pub fn leaf(spec: &LeafSpec, issuer: &Issuer<'_, &KeyPair>, validity: Validity) -> Result<Issued, PkiError> {
    let what = format!("the {} certificate of {}", spec.kind, spec.host);
    let key = new_key(&what)?;
    let params = leaf_params(spec, validity).map_err(|e| gen_error(&what, e))?;
    let cert = params.signed_by(&key, issuer).map_err(|e| gen_error(&what, e))?;
    Ok(Issued {
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
        key_pem: Secret::new(key.serialize_pem()),
    })
}

fn leaf_params(spec: &LeafSpec, validity: Validity) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(&spec.common_name);
    params.subject_alt_names = spec.sans.iter().map(san).collect::<Result<_, _>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = spec.ekus.iter().map(|e| eku(*e)).collect();
    params.use_authority_key_identifier_extension = true;
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    params.serial_number = Some(random_serial());
    Ok(params)
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn san(s: &San) -> Result<SanType, rcgen::Error> {
    Ok(match s {
        San::Dns(n) => SanType::DnsName(n.as_str().try_into()?),
        San::Ip(a) => SanType::IpAddress(*a),
    })
}

fn eku(e: Eku) -> ExtendedKeyUsagePurpose {
    match e {
        Eku::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
        Eku::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
    }
}

fn gen_error(what: &str, e: rcgen::Error) -> PkiError {
    PkiError::Generate {
        what: what.to_owned(),
        detail: e.to_string(),
        hint: "check the host names in the inventory (plain ASCII DNS names); otherwise report a bug",
    }
}
