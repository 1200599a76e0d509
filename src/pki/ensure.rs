//! [`ensure`]: make the state directory hold a CA, a trust bundle and every leaf the inventory
//! calls for, issuing only what is missing or no longer right; [`Report`] says what it did and
//! why. Idempotent: a second run issues nothing and rewrites no file.

use serde::Serialize;
use time::OffsetDateTime;

use super::assess::{Reason, Verdict, assess_leaf};
use super::bundle::{self, TrustBundle};
use super::ca::Ca;
use super::error::PkiError;
use super::files::{FileMode, ensure_private_dir, write_atomic};
use super::inspect::CertInfo;
use super::issue::Issued;
use super::spec::{LeafKind, LeafSpec, leaf_specs};
use super::state::StateDir;
use crate::inventory::{HostName, Inventory};

/// What happened to the CA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaAction {
    /// It already existed.
    Kept,
    /// It was created by this run.
    Created,
}

/// What happened to one leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "action", content = "reason")]
pub enum LeafAction {
    /// Still good: nothing written.
    Kept,
    /// (Re)issued, for this reason.
    Issued(Reason),
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LeafOutcome {
    /// The certificate kind.
    pub kind: LeafKind,
    /// The host holding it.
    pub host: HostName,
    /// What `ensure` did.
    pub action: LeafAction,
}

/// What [`ensure`] did: never contains key material.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The CA.
    pub ca: CaAction,
    /// The current trust bundle's file name (`ca-bundle-<N>.pem`).
    pub bundle: String,
    /// Whether this run published a new bundle generation.
    pub bundle_published: bool,
    /// Every leaf, in [`leaf_specs`] order.
    pub leaves: Vec<LeafOutcome>,
}

impl Report {
    /// The leaves this run (re)issued.
    pub fn issued(&self) -> impl Iterator<Item = &LeafOutcome> {
        self.leaves.iter().filter(|l| l.action != LeafAction::Kept)
    }

    /// Whether the run wrote nothing at all.
    pub fn unchanged(&self) -> bool {
        self.ca == CaAction::Kept && !self.bundle_published && self.issued().next().is_none()
    }
}

/// Creates what is missing in `state` and re-issues leaves that are missing, expiring within
/// `inv.tls.renew_within_days`, no longer match the inventory, or do not chain to the CA.
pub fn ensure(inv: &Inventory, state: &StateDir, now: OffsetDateTime) -> Result<Report, PkiError> {
    state.create()?;
    let (ca, ca_action) = load_or_create_ca(inv, state, now)?;
    let (bundle, bundle_published) = ensure_bundle(state, &ca)?;
    let leaves = leaf_specs(inv)
        .iter()
        .map(|spec| ensure_leaf(inv, state, &ca, spec, now))
        .collect::<Result<_, _>>()?;
    Ok(Report {
        ca: ca_action,
        bundle: bundle.file_name(),
        bundle_published,
        leaves,
    })
}

/// Writes a leaf's key (0600) then its certificate; a crash in between leaves a key that does
/// not match, which the next run re-issues (`key-mismatch`).
pub fn write_leaf(state: &StateDir, spec: &LeafSpec, issued: &Issued) -> Result<(), PkiError> {
    ensure_private_dir(&state.host_dir(&spec.host))?;
    let key = issued.key_pem.expose();
    write_atomic(
        &state.leaf_key(&spec.host, spec.kind),
        key.as_bytes(),
        FileMode::Private,
    )?;
    write_atomic(
        &state.leaf_cert(&spec.host, spec.kind),
        issued.cert_pem.as_bytes(),
        FileMode::Public,
    )
}

/// Whether re-issuing would extend `leaf` (leaves are capped at the CA's end).
fn ca_outlives(ca: &Ca, leaf: &CertInfo) -> bool {
    ca.info().not_after > leaf.not_after
}

fn load_or_create_ca(inv: &Inventory, state: &StateDir, now: OffsetDateTime) -> Result<(Ca, CaAction), PkiError> {
    if let Some(ca) = Ca::load(state)? {
        return Ok((ca, CaAction::Kept));
    }
    let ca = Ca::generate(&inv.cluster_name, inv.tls.ca_validity_days, now)?;
    ca.save(state)?;
    Ok((ca, CaAction::Created))
}

/// Keeps the newest bundle while it trusts the current CA; otherwise publishes one that does
/// (the first run, or a CA replaced by hand: a planned rotation publishes old + new itself).
fn ensure_bundle(state: &StateDir, ca: &Ca) -> Result<(TrustBundle, bool), PkiError> {
    match bundle::current(state)? {
        Some(b) if b.contains(&ca.info().der) => {
            bundle::sync_current(state, &b)?;
            Ok((b, false))
        }
        _ => Ok((bundle::publish(state, &[ca.cert_pem()])?, true)),
    }
}

fn ensure_leaf(
    inv: &Inventory,
    state: &StateDir,
    ca: &Ca,
    spec: &LeafSpec,
    now: OffsetDateTime,
) -> Result<LeafOutcome, PkiError> {
    let action = match assess_leaf(state, spec, Some(ca), now, inv.tls.renew_within_days)? {
        Verdict::Good(_) => LeafAction::Kept,
        Verdict::Renew(Reason::Expiring | Reason::Expired, Some(old)) if !ca_outlives(ca, &old) => {
            // A new leaf would end with the CA too: re-issuing on every run would change
            // nothing. The CA row of `pki status` says a CA rotation is due.
            LeafAction::Kept
        }
        Verdict::Renew(reason, _) => {
            write_leaf(state, spec, &ca.issue(spec, now, inv.tls.leaf_validity_days)?)?;
            LeafAction::Issued(reason)
        }
    };
    Ok(LeafOutcome {
        kind: spec.kind,
        host: spec.host.clone(),
        action,
    })
}
