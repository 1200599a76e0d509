//! [`Ca`]: the cluster CA, created once and loaded from `ca/ca.crt` + `ca/ca.key`. It signs
//! leaves; its key never leaves the controller. Rotation (a second CA) is a later issue: it
//! builds a new [`Ca`] with [`Ca::generate`] and publishes both through [`super::bundle`].

use rcgen::{Issuer, KeyPair};
use time::OffsetDateTime;

use super::error::PkiError;
use super::files::{FileMode, read_optional, read_private_optional, write_atomic};
use super::inspect::CertInfo;
use super::issue::{self, Issued, Validity};
use super::secret::Secret;
use super::spec::LeafSpec;
use super::state::StateDir;

/// The CA certificate with its private key.
#[derive(Debug)]
pub struct Ca {
    cert_pem: String,
    info: CertInfo,
    key: Secret<KeyPair>,
}

impl Ca {
    /// A new CA for `cluster`, valid `validity_days` from `now`.
    pub fn generate(cluster: &str, validity_days: u32, now: OffsetDateTime) -> Result<Self, PkiError> {
        let key = issue::new_key("the CA key")?;
        let issued = issue::self_signed_ca(cluster, &key, Validity::days_from(now, validity_days))?;
        let info = CertInfo::from_der(&issued.cert_der).map_err(|detail| PkiError::Generate {
            what: "the CA certificate".into(),
            detail,
            hint: "report a bug: pgha cannot read back the CA it generated",
        })?;
        Ok(Ca {
            cert_pem: issued.cert_pem,
            info,
            key: Secret::new(key),
        })
    }

    /// Loads the CA of `state`; `None` when neither file exists.
    pub fn load(state: &StateDir) -> Result<Option<Self>, PkiError> {
        Self::load_from(&state.ca_cert(), &state.ca_key())
    }

    /// Loads the CA a rotation introduces (`ca/next.*`); `None` when there is none.
    pub fn load_next(state: &StateDir) -> Result<Option<Self>, PkiError> {
        Self::load_from(&state.next_ca_cert(), &state.next_ca_key())
    }

    /// Loads a CA from a certificate and key file pair; `None` when neither exists.
    pub fn load_from(cert_path: &std::path::Path, key_path: &std::path::Path) -> Result<Option<Self>, PkiError> {
        let (cert_path, key_path) = (cert_path.to_path_buf(), key_path.to_path_buf());
        let cert_pem = read_optional(&cert_path)?;
        let key_pem = read_private_optional(&key_path)?;
        let (cert_pem, key_pem) = match (cert_pem, key_pem) {
            (None, None) => return Ok(None),
            (Some(c), Some(k)) => (c, k),
            (Some(_), None) => return Err(bad_key(&key_path, "missing, but ca.crt exists")),
            (None, Some(_)) => {
                return Err(PkiError::BadCertificate {
                    path: cert_path,
                    detail: "missing, but ca.key exists".into(),
                    hint: "restore ca.crt from a backup of the state directory",
                });
            }
        };
        let info = CertInfo::from_pem(&cert_pem).map_err(|detail| PkiError::BadCertificate {
            path: cert_path.clone(),
            detail,
            hint: "restore ca.crt from a backup of the state directory",
        })?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| bad_key(&key_path, &format!("not a private key: {e}")))?;
        if key.public_key_raw() != info.public_key.as_slice() {
            return Err(bad_key(&key_path, "does not match ca.crt"));
        }
        Ok(Some(Ca {
            cert_pem,
            info,
            key: Secret::new(key),
        }))
    }

    /// Writes `ca/ca.key` (0600) then `ca/ca.crt`, atomically each.
    pub fn save(&self, state: &StateDir) -> Result<(), PkiError> {
        self.save_to(&state.ca_cert(), &state.ca_key())
    }

    /// Writes the key (0600) then the certificate to the given paths, atomically each.
    pub fn save_to(&self, cert_path: &std::path::Path, key_path: &std::path::Path) -> Result<(), PkiError> {
        let key_pem = Secret::new(self.key.expose().serialize_pem());
        write_atomic(key_path, key_pem.expose().as_bytes(), FileMode::Private)?;
        write_atomic(cert_path, self.cert_pem.as_bytes(), FileMode::Public)
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// What the CA certificate says (validity, serial, DER).
    pub fn info(&self) -> &CertInfo {
        &self.info
    }

    /// Issues a leaf for `spec`, valid `days` from `now` but never beyond the CA's own end.
    pub fn issue(&self, spec: &LeafSpec, now: OffsetDateTime, days: u32) -> Result<Issued, PkiError> {
        let validity = Validity::days_from(now, days).capped_at(self.info.not_after);
        issue::leaf(spec, &self.issuer()?, validity)
    }

    fn issuer(&self) -> Result<Issuer<'_, &KeyPair>, PkiError> {
        Issuer::from_ca_cert_der(&self.info.der.as_slice().into(), self.key.expose()).map_err(|e| PkiError::Generate {
            what: "the CA issuer".into(),
            detail: e.to_string(),
            hint: "ca.crt cannot be used to sign; restore it from a backup",
        })
    }
}

fn bad_key(path: &std::path::Path, detail: &str) -> PkiError {
    PkiError::BadCaKey {
        path: path.to_path_buf(),
        detail: detail.to_owned(),
    }
}
