//! Certificate rotation in the state directory: renewing leaves from the current CA
//! ([`renew_leaves`]), and the CA rotation of docs/design.md §5, trust first, as a sequence of
//! [`Phase`]s recorded in `rotation.json` so that an interrupted rotation resumes where it
//! stopped. This module only changes files on the controller; applying each phase to the hosts
//! (and advancing only once every host has it) is the caller's job.
//!
//! ```text
//! begin      new CA in ca/next.*, bundle N+1 = old + new CA     phase trust-both
//! (apply bundle N+1 everywhere)
//! promote    old CA → ca/archive/<serial>/, next → ca/ca.*       phase new-leaves
//! (leaves re-issued from the new CA by `ensure`; apply; drain)
//! trust_new  bundle N+2 = new CA only                            phase trust-new
//! (apply; then `finish` removes rotation.json)
//! ```
//!
//! Invariant: a bundle without the old CA is published only in phase `trust-new`, which the
//! caller enters once every host presents leaves of the new CA.

use std::fs;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::assess::{Reason, Verdict, assess_leaf};
use super::bundle::{self, TrustBundle};
use super::ca::Ca;
use super::ensure::{LeafAction, LeafOutcome, write_leaf};
use super::error::PkiError;
use super::files::{FileMode, ensure_private_dir, read_optional, write_atomic};
use super::inspect::pem_certificates;
use super::spec::leaf_specs;
use super::state::StateDir;
use crate::inventory::Inventory;

/// Where a CA rotation stands: the next thing to apply to every host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The bundle holding the old and the new CA is to be applied everywhere.
    TrustBoth,
    /// The new CA is current: leaves from it are to be applied, then old sessions drained.
    NewLeaves,
    /// The bundle holding only the new CA is to be applied everywhere.
    TrustNew,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 3] = [Phase::TrustBoth, Phase::NewLeaves, Phase::TrustNew];

    /// The name used in `rotation.json` and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::TrustBoth => "trust-both",
            Phase::NewLeaves => "new-leaves",
            Phase::TrustNew => "trust-new",
        }
    }

    /// What applying the phase does, for the plan.
    pub fn describe(self) -> &'static str {
        match self {
            Phase::TrustBoth => {
                "install the bundle of old + new CA on every host under a new name; etcd restarts one member at a time, Patroni, PostgreSQL, HAProxy and PgBouncer reload"
            }
            Phase::NewLeaves => {
                "issue every leaf from the new CA and install it; reloads only (Patroni SIGHUP, PostgreSQL, HAProxy, PgBouncer PAUSE + RELOAD + RESUME; etcd re-reads per handshake)"
            }
            Phase::TrustNew => {
                "once every endpoint presents a new-CA certificate: install the bundle of the new CA alone; etcd rolling restart, reloads elsewhere"
            }
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `rotation.json`: a CA rotation in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    /// The next phase to apply.
    pub phase: Phase,
    /// Serial (hex) of the CA being replaced.
    pub old_ca: String,
    /// Serial (hex) of the CA replacing it.
    pub new_ca: String,
    /// When the rotation began (RFC 3339).
    pub started: String,
    /// The last phase applied on every host (a re-run applies `phase` again anyway: hosts may
    /// have drifted).
    #[serde(default)]
    pub applied: Option<Phase>,
}

/// The rotation in progress, if any.
pub fn load_rotation(state: &StateDir) -> Result<Option<Rotation>, PkiError> {
    let path = state.rotation();
    let Some(text) = read_optional(&path)? else {
        return Ok(None);
    };
    serde_json::from_str(&text).map(Some).map_err(|e| PkiError::Rotation {
        path,
        detail: format!("not a pgha rotation file: {e}"),
        hint: "restore it from a backup of the state directory; without it, `pgha pki status` shows which CA is current",
    })
}

fn save_rotation(state: &StateDir, r: &Rotation) -> Result<(), PkiError> {
    let text = serde_json::to_string_pretty(r).map_err(|e| PkiError::Rotation {
        path: state.rotation(),
        detail: e.to_string(),
        hint: "report a bug",
    })?;
    write_atomic(&state.rotation(), format!("{text}\n").as_bytes(), FileMode::Private)
}

/// Starts a CA rotation, or returns the one in progress: a new CA in `ca/next.*` and a bundle
/// holding the old and the new CA. Idempotent (an interrupted start completes).
pub fn begin(inv: &Inventory, state: &StateDir, now: OffsetDateTime) -> Result<Rotation, PkiError> {
    if let Some(r) = load_rotation(state)? {
        return Ok(r);
    }
    let old = Ca::load(state)?.ok_or_else(|| PkiError::Rotation {
        path: state.ca_cert(),
        detail: "no CA to rotate".into(),
        hint: "deploy first (`pgha deploy`): it creates the CA",
    })?;
    let new = match Ca::load_next(state)? {
        Some(n) => n,
        None => {
            let n = Ca::generate(&inv.cluster_name, inv.tls.ca_validity_days, now)?;
            n.save_to(&state.next_ca_cert(), &state.next_ca_key())?;
            n
        }
    };
    publish_unless_newest(state, &[old.cert_pem(), new.cert_pem()])?;
    let r = Rotation {
        phase: Phase::TrustBoth,
        old_ca: old.info().serial_hex(),
        new_ca: new.info().serial_hex(),
        started: now
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        applied: None,
    };
    save_rotation(state, &r)?;
    Ok(r)
}

/// Records that `phase` is applied on every host.
pub fn mark_applied(state: &StateDir, r: &mut Rotation, phase: Phase) -> Result<(), PkiError> {
    if r.applied < Some(phase) {
        r.applied = Some(phase);
        save_rotation(state, r)?;
    }
    Ok(())
}

/// After `trust-both` is applied everywhere: archives the old CA and makes the new one current
/// (leaves are then re-issued from it by `ensure`). Idempotent.
pub fn promote(state: &StateDir, r: &mut Rotation) -> Result<(), PkiError> {
    let current = Ca::load(state)?;
    if current.as_ref().map(|c| c.info().serial_hex()) != Some(r.new_ca.clone()) {
        let next = Ca::load_next(state)?.ok_or_else(|| out_of_step(state, "ca/next.crt is missing"))?;
        if next.info().serial_hex() != r.new_ca {
            return Err(out_of_step(state, "ca/next.crt is not the CA this rotation began with"));
        }
        let old = current.ok_or_else(|| out_of_step(state, "ca/ca.crt is missing"))?;
        let archive = state.archived_ca_dir(&r.old_ca);
        ensure_private_dir(archive.parent().unwrap_or(&archive))?;
        ensure_private_dir(&archive)?;
        old.save_to(&archive.join("ca.crt"), &archive.join("ca.key"))?;
        next.save(state)?;
    }
    for path in [state.next_ca_key(), state.next_ca_cert()] {
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(PkiError::io(path, "remove", e)),
        }
    }
    advance(state, r, Phase::NewLeaves)
}

/// Once every host presents leaves of the new CA: publishes the bundle of the new CA alone.
/// Idempotent.
pub fn trust_new(state: &StateDir, r: &mut Rotation) -> Result<TrustBundle, PkiError> {
    let ca = Ca::load(state)?.ok_or_else(|| out_of_step(state, "ca/ca.crt is missing"))?;
    if ca.info().serial_hex() != r.new_ca {
        return Err(out_of_step(state, "ca/ca.crt is not the rotation's new CA"));
    }
    let bundle = publish_unless_newest(state, &[ca.cert_pem()])?;
    advance(state, r, Phase::TrustNew)?;
    Ok(bundle)
}

/// The rotation is complete: removes `rotation.json` (the old CA stays archived).
pub fn finish(state: &StateDir) -> Result<(), PkiError> {
    match fs::remove_file(state.rotation()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(PkiError::io(state.rotation(), "remove", e)),
    }
}

fn advance(state: &StateDir, r: &mut Rotation, to: Phase) -> Result<(), PkiError> {
    if r.phase < to {
        r.phase = to;
        save_rotation(state, r)?;
    }
    Ok(())
}

fn out_of_step(state: &StateDir, detail: &str) -> PkiError {
    PkiError::Rotation {
        path: state.rotation(),
        detail: format!("the CA rotation is out of step with ca/: {detail}"),
        hint: "restore the state directory from a backup taken during the rotation",
    }
}

/// Publishes `pems` as the next bundle generation unless the newest already holds exactly them.
fn publish_unless_newest(state: &StateDir, pems: &[&str]) -> Result<TrustBundle, PkiError> {
    let want: Vec<Vec<u8>> = pems.iter().flat_map(|p| pem_certificates(p)).collect();
    if let Some(b) = bundle::current(state)?
        && pem_certificates(&b.pem) == want
    {
        return Ok(b);
    }
    bundle::publish(state, pems)
}

/// Which leaves to renew.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renew {
    /// Every leaf.
    All,
    /// Leaves ending within this many days (or missing, or no longer right).
    ExpiringWithin(u32),
}

/// Re-issues leaves from the current CA: all of them, or those ending within the window (and
/// any that `ensure` would re-issue anyway). Returns every leaf with what was done.
pub fn renew_leaves(
    inv: &Inventory,
    state: &StateDir,
    now: OffsetDateTime,
    which: Renew,
) -> Result<Vec<LeafOutcome>, PkiError> {
    let ca = Ca::load(state)?.ok_or_else(|| PkiError::Rotation {
        path: state.ca_cert(),
        detail: "no CA".into(),
        hint: "deploy first (`pgha deploy`): it creates the CA and the certificates",
    })?;
    let window = match which {
        Renew::All => None,
        Renew::ExpiringWithin(days) => Some(days),
    };
    leaf_specs(inv)
        .iter()
        .map(|spec| {
            let verdict = assess_leaf(state, spec, Some(&ca), now, window.unwrap_or(inv.tls.renew_within_days))?;
            let reason = match (verdict, window) {
                (Verdict::Renew(reason, _), _) => Some(reason),
                (Verdict::Good(_), None) => Some(Reason::Requested),
                (Verdict::Good(_), Some(_)) => None,
            };
            let action = match reason {
                Some(reason) => {
                    write_leaf(state, spec, &ca.issue(spec, now, inv.tls.leaf_validity_days)?)?;
                    LeafAction::Issued(reason)
                }
                None => LeafAction::Kept,
            };
            Ok(LeafOutcome {
                kind: spec.kind,
                host: spec.host.clone(),
                action,
            })
        })
        .collect()
}
