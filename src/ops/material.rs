//! The PKI material a render needs (CA bundle, leaves, passwords and SCRAM verifiers), taken
//! from the state directory after bringing it up to date (`pki::ensure` issues only what is
//! missing, expiring or stale) — or, for a plan, [`preview`]: the same decisions computed in
//! memory, writing nothing, with an [`Issuance`] saying what a deploy would issue.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::Reporter;
use crate::inventory::Inventory;
use serde::Serialize;

use crate::inventory::HostName;
use crate::pki::{self, Ca, LeafKind, PkiError, Reason, TrustBundle, Verdict};
use crate::render::{Leaf, Material, Secrets};

/// Why the material could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum MaterialError {
    /// The state directory could not be read or updated.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// No trust bundle was published.
    #[error("no CA bundle in {}", .0.display())]
    NoBundle(PathBuf),
    /// A certificate or key file could not be read.
    #[error("reading {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A generated password is missing.
    #[error("no password for {0}")]
    NoPassword(String),
}

/// SCRAM verifiers of pgha's own roles, for the bootstrap SQL (never printed).
pub struct Verifiers {
    /// PgBouncer's auth user.
    pub auth: String,
    /// The `pgha verify` role.
    pub verify: String,
}

/// The PKI material of `inv` from its state directory (issuing what is missing or stale), and
/// the SCRAM verifiers of pgha's roles (for the bootstrap SQL).
pub fn from_state(
    inv: &Inventory,
    state: Option<&Path>,
    rep: &dyn Reporter,
) -> Result<(Material, Verifiers), MaterialError> {
    let state = pki::StateDir::for_inventory(inv, state);
    let report = pki::ensure(inv, &state, OffsetDateTime::now_utc())?;
    let (secrets, secrets_report) = pki::ensure_secrets(inv, &state)?;
    let issued = report.issued().count();
    if issued > 0 || !secrets_report.created.is_empty() {
        rep.info(&format!(
            "{}: issued {issued} certificate(s), generated {} password(s)",
            state.root().display(),
            secrets_report.created.len()
        ));
    }
    let bundle = pki::current_bundle(&state)?.ok_or_else(|| MaterialError::NoBundle(state.root().to_path_buf()))?;
    let mut leaves = BTreeMap::new();
    for spec in pki::leaf_specs(inv) {
        let read = |path: PathBuf| fs::read_to_string(&path).map_err(|source| MaterialError::Read { path, source });
        let leaf = Leaf {
            cert_pem: read(state.leaf_cert(&spec.host, spec.kind))?,
            key_pem: state.read_leaf_key(&spec.host, spec.kind)?.expose().clone(),
        };
        leaves.insert((spec.host.clone(), spec.kind), leaf);
    }
    let password = |account: &pki::Account| -> Result<String, MaterialError> {
        Ok(secrets
            .password(account)
            .ok_or_else(|| MaterialError::NoPassword(account.to_string()))?
            .expose()
            .clone())
    };
    let verifier = |account: &pki::Account, what: &str| -> Result<String, MaterialError> {
        Ok(secrets
            .scram_verifier(account)
            .ok_or_else(|| MaterialError::NoPassword(what.to_string()))??
            .expose()
            .clone())
    };
    let mut app_verifiers = BTreeMap::new();
    for user in &inv.postgres.users {
        let account = pki::Account::App(user.name.clone());
        app_verifiers.insert(user.name.clone(), verifier(&account, &account.to_string())?);
    }
    let auth_verifier = verifier(&pki::Account::PgbouncerAuth, "the PgBouncer auth user")?;
    let verify_verifier = verifier(&pki::Account::Verify, "the verify role")?;
    let material = Material {
        etcd_bootstrap: Default::default(),
        ca_bundle_file: bundle.file_name(),
        ca_bundle_pem: bundle.pem,
        leaves,
        secrets: Secrets {
            superuser: password(&pki::Account::Superuser)?,
            replication: password(&pki::Account::Replication)?,
            rewind: password(&pki::Account::Rewind)?,
            patroni_rest: password(&pki::Account::PatroniRest)?,
            pgbouncer_auth: password(&pki::Account::PgbouncerAuth)?,
            app_verifiers,
            verify_verifier: verify_verifier.clone(),
            repo_cipher: match inv.backup {
                Some(_) => password(&pki::Account::RepoCipher)?,
                None => String::new(),
            },
            vrrp_auth: match inv.vip {
                Some(_) => vrrp_auth(&password(&pki::Account::Vrrp)?),
                None => String::new(),
            },
        },
    };
    Ok((
        material,
        Verifiers {
            auth: auth_verifier,
            verify: verify_verifier,
        },
    ))
}

/// What a deploy would issue in the state directory (a plan writes none of it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Issuance {
    /// The state directory.
    pub state: PathBuf,
    /// A new cluster CA would be created.
    pub ca_created: bool,
    /// A new trust bundle generation would be published (its file name).
    pub bundle_published: Option<String>,
    /// Leaves (re)issued, with why.
    pub leaves: Vec<IssuedLeaf>,
    /// Passwords generated, by account.
    pub passwords: Vec<String>,
}

/// One leaf a deploy would (re)issue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IssuedLeaf {
    /// Its host.
    pub host: HostName,
    /// Its kind.
    pub kind: LeafKind,
    /// Why.
    pub reason: Reason,
}

impl Issuance {
    /// Nothing would be issued.
    pub fn is_empty(&self) -> bool {
        !self.ca_created && self.bundle_published.is_none() && self.leaves.is_empty() && self.passwords.is_empty()
    }
}

/// Stands for a password a deploy would generate (shown masked in diffs, never installed).
pub const PENDING_SECRET: &str = "(generated by pgha deploy)";

/// The material a deploy would use, computed in memory: the state directory is only read.
/// A missing CA is generated in memory, leaves that `pki::ensure` would re-issue are issued in
/// memory, missing passwords stand as [`PENDING_SECRET`]. The [`Issuance`] says what a deploy
/// would write.
pub fn preview(inv: &Inventory, state: Option<&Path>) -> Result<(Material, Verifiers, Issuance), MaterialError> {
    let state = pki::StateDir::for_inventory(inv, state);
    let now = OffsetDateTime::now_utc();
    let mut issuance = Issuance {
        state: state.root().to_path_buf(),
        ..Issuance::default()
    };
    let ca = match Ca::load(&state)? {
        Some(ca) => ca,
        None => {
            issuance.ca_created = true;
            Ca::generate(&inv.cluster_name, inv.tls.ca_validity_days, now)?
        }
    };
    let bundle = match pki::current_bundle(&state)? {
        Some(b) if b.contains(&ca.info().der) => b,
        current => {
            let b = TrustBundle {
                generation: current.map_or(1, |c| c.generation + 1),
                pem: ca.cert_pem().to_string(),
            };
            issuance.bundle_published = Some(b.file_name());
            b
        }
    };
    let mut leaves = BTreeMap::new();
    for spec in pki::leaf_specs(inv) {
        let verdict = if issuance.ca_created {
            Verdict::Renew(Reason::Missing, None)
        } else {
            pki::assess_leaf(&state, &spec, Some(&ca), now, inv.tls.renew_within_days)?
        };
        let keep = match &verdict {
            Verdict::Good(_) => true,
            // As `pki::ensure`: a leaf capped at the CA's end is not re-issued.
            Verdict::Renew(Reason::Expiring | Reason::Expired, Some(old)) => ca.info().not_after <= old.not_after,
            Verdict::Renew(..) => false,
        };
        let leaf = if keep {
            let read = |path: PathBuf| fs::read_to_string(&path).map_err(|source| MaterialError::Read { path, source });
            Leaf {
                cert_pem: read(state.leaf_cert(&spec.host, spec.kind))?,
                key_pem: read(state.leaf_key(&spec.host, spec.kind))?,
            }
        } else {
            if let Verdict::Renew(reason, _) = verdict {
                issuance.leaves.push(IssuedLeaf {
                    host: spec.host.clone(),
                    kind: spec.kind,
                    reason,
                });
            }
            let issued = ca.issue(&spec, now, inv.tls.leaf_validity_days)?;
            Leaf {
                cert_pem: issued.cert_pem.clone(),
                key_pem: issued.key_pem.expose().clone(),
            }
        };
        leaves.insert((spec.host.clone(), spec.kind), leaf);
    }
    let secrets = pki::load_secrets(&state)?;
    for account in pki::accounts(inv) {
        if secrets.password(&account).is_none() {
            issuance.passwords.push(account.to_string());
        }
    }
    let password = |account: &pki::Account| -> String {
        secrets
            .password(account)
            .map_or_else(|| PENDING_SECRET.to_string(), |p| p.expose().clone())
    };
    let verifier = |account: &pki::Account| -> Result<String, MaterialError> {
        match secrets.scram_verifier(account) {
            Some(v) => Ok(v?.expose().clone()),
            None => Ok(format!("SCRAM-SHA-256${PENDING_SECRET}")),
        }
    };
    let mut app_verifiers = BTreeMap::new();
    for user in &inv.postgres.users {
        app_verifiers.insert(user.name.clone(), verifier(&pki::Account::App(user.name.clone()))?);
    }
    let material = Material {
        etcd_bootstrap: Default::default(),
        ca_bundle_file: bundle.file_name(),
        ca_bundle_pem: bundle.pem,
        leaves,
        secrets: Secrets {
            superuser: password(&pki::Account::Superuser),
            replication: password(&pki::Account::Replication),
            rewind: password(&pki::Account::Rewind),
            patroni_rest: password(&pki::Account::PatroniRest),
            pgbouncer_auth: password(&pki::Account::PgbouncerAuth),
            app_verifiers,
            verify_verifier: verifier(&pki::Account::Verify)?,
            repo_cipher: match inv.backup {
                Some(_) => password(&pki::Account::RepoCipher),
                None => String::new(),
            },
            vrrp_auth: match inv.vip {
                Some(_) => vrrp_auth(&password(&pki::Account::Vrrp)),
                None => String::new(),
            },
        },
    };
    let verifiers = Verifiers {
        auth: verifier(&pki::Account::PgbouncerAuth)?,
        verify: verifier(&pki::Account::Verify)?,
    };
    Ok((material, verifiers, issuance))
}

/// keepalived's `auth_pass` from a generated password: its first 8 characters (alphanumerics,
/// so nothing in keepalived's config syntax: no `!`, `#` or `$`).
fn vrrp_auth(password: &str) -> String {
    password
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(pki::VRRP_AUTH_LEN)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preview_on_a_fresh_inventory_writes_nothing_and_says_what_it_would_issue() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inv = pki::testutil_inventory();
        let state = dir.path().join("state");
        let (material, _, issuance) = preview(&inv, Some(&state)).expect("preview");
        assert!(!state.exists(), "a preview wrote the state directory");
        assert!(issuance.ca_created);
        assert_eq!(issuance.bundle_published.as_deref(), Some("ca-bundle-1.pem"));
        assert_eq!(issuance.leaves.len(), pki::leaf_specs(&inv).len());
        assert_eq!(issuance.passwords.len(), pki::accounts(&inv).len());
        assert_eq!(material.secrets.superuser, PENDING_SECRET);
        // Once deployed (ensure), the preview issues nothing and uses the state's material.
        let root = pki::StateDir::for_inventory(&inv, Some(&state));
        pki::ensure(&inv, &root, OffsetDateTime::now_utc()).expect("ensure");
        pki::ensure_secrets(&inv, &root).expect("secrets");
        let (material, verifiers, issuance) = preview(&inv, Some(&state)).expect("preview");
        assert!(issuance.is_empty(), "{issuance:?}");
        let (real, real_verifiers) = from_state(&inv, Some(&state), &super::super::report::Quiet).expect("material");
        assert_eq!(material.secrets.superuser, real.secrets.superuser);
        assert_eq!(material.leaves, real.leaves);
        assert_eq!(verifiers.auth, real_verifiers.auth);
    }
}
