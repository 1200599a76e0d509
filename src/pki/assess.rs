//! Deciding whether a leaf on disk is still good: [`assess_leaf`] compares the files of one
//! [`LeafSpec`] with the spec, the current CA and the clock, and says why it must be re-issued.
//! Reads files, never writes them.

use std::fmt;

use rcgen::KeyPair;
use serde::Serialize;
use time::{Duration, OffsetDateTime};

use super::ca::Ca;
use super::error::PkiError;
use super::files::{read_optional, read_private_optional};
use super::inspect::CertInfo;
use super::spec::LeafSpec;
use super::state::StateDir;

/// Why a certificate must be (re)issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// The certificate or its key file does not exist.
    Missing,
    /// The certificate or key file cannot be parsed.
    Unreadable,
    /// Past its not-after.
    Expired,
    /// Ends within the renewal window (`tls.renew_within_days`).
    Expiring,
    /// Its SANs differ from what the inventory calls for (e.g. an HAProxy address changed).
    SansChanged,
    /// Its extended key usages differ from docs/design.md §3.
    EkusChanged,
    /// Its subject CN is not the host name.
    SubjectChanged,
    /// It was not signed by the current CA.
    OtherCa,
    /// The key file does not match the certificate (e.g. an interrupted write).
    KeyMismatch,
    /// Renewed on request (`pgha rotate-certs`), although still good.
    Requested,
}

impl Reason {
    /// The short name used in reports (`missing`, `sans-changed`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Unreadable => "unreadable",
            Reason::Expired => "expired",
            Reason::Expiring => "expiring",
            Reason::SansChanged => "sans-changed",
            Reason::EkusChanged => "ekus-changed",
            Reason::SubjectChanged => "subject-changed",
            Reason::OtherCa => "other-ca",
            Reason::KeyMismatch => "key-mismatch",
            Reason::Requested => "requested",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of comparing one leaf on disk with what it should be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Keep it; carries what the certificate says.
    Good(CertInfo),
    /// Issue it again; carries what the old certificate said, when readable.
    Renew(Reason, Option<CertInfo>),
}

/// Reads the leaf of `spec` from `state` and judges it against `ca` (None: no CA yet) at `now`.
pub fn assess_leaf(
    state: &StateDir,
    spec: &LeafSpec,
    ca: Option<&Ca>,
    now: OffsetDateTime,
    renew_within_days: u32,
) -> Result<Verdict, PkiError> {
    let cert_pem = read_optional(&state.leaf_cert(&spec.host, spec.kind))?;
    let key_pem = read_private_optional(&state.leaf_key(&spec.host, spec.kind))?;
    let (Some(cert_pem), Some(key_pem)) = (cert_pem, key_pem) else {
        return Ok(Verdict::Renew(Reason::Missing, None));
    };
    let Ok(info) = CertInfo::from_pem(&cert_pem) else {
        return Ok(Verdict::Renew(Reason::Unreadable, None));
    };
    Ok(match judge(spec, &info, &key_pem, ca, now, renew_within_days) {
        Some(reason) => Verdict::Renew(reason, Some(info)),
        None => Verdict::Good(info),
    })
}

/// The first reason to re-issue, in order of severity; `None` when the leaf is good.
fn judge(
    spec: &LeafSpec,
    info: &CertInfo,
    key_pem: &str,
    ca: Option<&Ca>,
    now: OffsetDateTime,
    renew_within_days: u32,
) -> Option<Reason> {
    let key_matches = KeyPair::from_pem(key_pem).map(|k| k.public_key_raw() == info.public_key.as_slice());
    let window = Duration::days(i64::from(renew_within_days));
    let checks = [
        (!ca.is_some_and(|ca| info.signed_by(&ca.info().der)), Reason::OtherCa),
        (key_matches.is_err(), Reason::Unreadable),
        (matches!(key_matches, Ok(false)), Reason::KeyMismatch),
        (
            info.common_name.as_deref() != Some(spec.common_name.as_str()),
            Reason::SubjectChanged,
        ),
        (info.sans != spec.sans, Reason::SansChanged),
        (info.ekus != spec.ekus, Reason::EkusChanged),
        (info.not_after <= now, Reason::Expired),
        (info.not_after <= now + window, Reason::Expiring),
    ];
    checks.into_iter().find(|(failed, _)| *failed).map(|(_, reason)| reason)
}
