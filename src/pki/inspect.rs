//! Reading certificates back with x509-parser: [`CertInfo`] holds what `ensure` and `status`
//! compare against a [`LeafSpec`](super::spec::LeafSpec). No I/O and no generation here.

use std::collections::BTreeSet;
use std::net::IpAddr;

use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::spec::{Eku, San};

/// What pgha needs to know about one certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// DER bytes (for signature checks).
    pub der: Vec<u8>,
    /// Serial number, big-endian, without leading zero octets.
    pub serial: Vec<u8>,
    /// First subject CN, if any.
    pub common_name: Option<String>,
    /// Subject alternative names (DNS and IP; others are ignored).
    pub sans: BTreeSet<San>,
    /// serverAuth / clientAuth from extendedKeyUsage.
    pub ekus: BTreeSet<Eku>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// basicConstraints CA:true.
    pub is_ca: bool,
    /// The subject public key (for an EC key: the uncompressed point).
    pub public_key: Vec<u8>,
}

impl CertInfo {
    /// Parses the first certificate of a PEM text.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
        if pem.label != "CERTIFICATE" {
            return Err(format!("expected a CERTIFICATE block, found `{}`", pem.label));
        }
        Self::from_der(&pem.contents)
    }

    /// Parses a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        Ok(CertInfo {
            der: der.to_vec(),
            serial: strip_zeros(cert.raw_serial()),
            common_name: common_name(&cert),
            sans: sans(&cert)?,
            ekus: ekus(&cert)?,
            not_before: time_of(cert.validity().not_before.timestamp())?,
            not_after: time_of(cert.validity().not_after.timestamp())?,
            is_ca: cert.is_ca(),
            public_key: cert.public_key().subject_public_key.data.to_vec(),
        })
    }

    /// Whether `issuer_der` (a CA certificate) signed this certificate and is named its issuer.
    pub fn signed_by(&self, issuer_der: &[u8]) -> bool {
        let (Ok((_, cert)), Ok((_, ca))) = (
            X509Certificate::from_der(&self.der),
            X509Certificate::from_der(issuer_der),
        ) else {
            return false;
        };
        cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok()
    }

    /// Whole days from `now` to `not_after` (negative once expired).
    pub fn days_left(&self, now: OffsetDateTime) -> i64 {
        (self.not_after - now).whole_days()
    }

    /// The serial as colon-separated hex, as `openssl x509 -serial` shows it.
    pub fn serial_hex(&self) -> String {
        self.serial
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// Every CERTIFICATE block of a PEM text, as DER (for bundles).
pub fn pem_certificates(pem: &str) -> Vec<Vec<u8>> {
    Pem::iter_from_buffer(pem.as_bytes())
        .filter_map(Result::ok)
        .filter(|p| p.label == "CERTIFICATE")
        .map(|p| p.contents)
        .collect()
}

fn strip_zeros(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes[start..].to_vec()
}

fn common_name(cert: &X509Certificate<'_>) -> Option<String> {
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

fn sans(cert: &X509Certificate<'_>) -> Result<BTreeSet<San>, String> {
    let Some(ext) = cert.subject_alternative_name().map_err(|e| e.to_string())? else {
        return Ok(BTreeSet::new());
    };
    Ok(ext.value.general_names.iter().filter_map(san).collect())
}

fn san(name: &GeneralName<'_>) -> Option<San> {
    match name {
        GeneralName::DNSName(n) => Some(San::Dns((*n).to_owned())),
        GeneralName::IPAddress(b) => match b.len() {
            4 => <[u8; 4]>::try_from(*b).ok().map(|a| San::Ip(IpAddr::from(a))),
            16 => <[u8; 16]>::try_from(*b).ok().map(|a| San::Ip(IpAddr::from(a))),
            _ => None,
        },
        _ => None,
    }
}

fn ekus(cert: &X509Certificate<'_>) -> Result<BTreeSet<Eku>, String> {
    let Some(ext) = cert.extended_key_usage().map_err(|e| e.to_string())? else {
        return Ok(BTreeSet::new());
    };
    let mut set = BTreeSet::new();
    if ext.value.server_auth {
        set.insert(Eku::ServerAuth);
    }
    if ext.value.client_auth {
        set.insert(Eku::ClientAuth);
    }
    Ok(set)
}

fn time_of(unix: i64) -> Result<OffsetDateTime, String> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(|e| e.to_string())
}
