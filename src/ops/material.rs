//! The PKI material a render needs (CA bundle, leaves, passwords and SCRAM verifiers), taken
//! from the state directory after bringing it up to date (`pki::ensure` issues only what is
//! missing, expiring or stale).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::Reporter;
use crate::inventory::Inventory;
use crate::pki::{self, PkiError};
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
