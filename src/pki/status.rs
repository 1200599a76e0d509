//! [`status`]: a read-only view of every certificate the inventory calls for — what it says,
//! how long it has left, and whether `ensure` would re-issue it. Writes nothing.

use serde::Serialize;
use time::{Duration, OffsetDateTime};

use super::assess::{Reason, Verdict, assess_leaf};
use super::ca::Ca;
use super::error::PkiError;
use super::inspect::CertInfo;
use super::spec::{LeafSpec, leaf_specs};
use super::state::StateDir;
use crate::inventory::{HostName, Inventory};

/// The status column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Good; nothing to do.
    Ok,
    /// Expired or within the renewal window.
    Expiring,
    /// Not issued yet.
    Missing,
    /// Does not match the inventory, the CA or its key.
    Mismatch,
}

impl Health {
    /// The word shown in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Expiring => "expiring",
            Health::Missing => "missing",
            Health::Mismatch => "mismatch",
        }
    }

    fn of(reason: Reason) -> Self {
        match reason {
            Reason::Missing => Health::Missing,
            Reason::Expired | Reason::Expiring => Health::Expiring,
            _ => Health::Mismatch,
        }
    }
}

/// One row of `pgha pki status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertStatus {
    /// `ca` or the leaf kind (`postgres-server`, …).
    pub certificate: String,
    /// The host holding it (`None` for the CA).
    pub host: Option<HostName>,
    /// SANs of the certificate on disk, else the ones it will get.
    pub sans: Vec<String>,
    /// End of validity, RFC 3339.
    pub not_after: Option<String>,
    /// Whole days left (negative once expired).
    pub days_left: Option<i64>,
    /// The verdict.
    pub status: Health,
    /// Why it is not ok.
    pub reason: Option<Reason>,
}

/// The CA and every leaf of `inv`, as found in `state` at `now`.
pub fn status(inv: &Inventory, state: &StateDir, now: OffsetDateTime) -> Result<Vec<CertStatus>, PkiError> {
    let ca = Ca::load(state)?;
    let mut rows = vec![ca_row(ca.as_ref(), now, inv.tls.renew_within_days)];
    // During a CA rotation: the CA replacing the current one, or the one it replaced.
    if let Some(r) = super::rotation::load_rotation(state)? {
        if let Some(next) = Ca::load_next(state)? {
            let mut row = ca_row(Some(&next), now, inv.tls.renew_within_days);
            row.certificate = format!("ca (next, rotation phase {})", r.phase);
            rows.push(row);
        } else {
            let dir = state.archived_ca_dir(&r.old_ca);
            if let Some(old) = Ca::load_from(&dir.join("ca.crt"), &dir.join("ca.key"))? {
                let mut row = ca_row(Some(&old), now, inv.tls.renew_within_days);
                row.certificate = format!("ca (old, rotation phase {})", r.phase);
                rows.push(row);
            }
        }
    }
    for spec in leaf_specs(inv) {
        let verdict = assess_leaf(state, &spec, ca.as_ref(), now, inv.tls.renew_within_days)?;
        rows.push(leaf_row(&spec, verdict, now));
    }
    Ok(rows)
}

fn ca_row(ca: Option<&Ca>, now: OffsetDateTime, renew_within_days: u32) -> CertStatus {
    let Some(ca) = ca else {
        return row("ca".into(), None, None, vec![], Some(Reason::Missing), now);
    };
    let window = Duration::days(i64::from(renew_within_days));
    let reason = (ca.info().not_after <= now + window).then_some(Reason::Expiring);
    row("ca".into(), None, Some(ca.info()), vec![], reason, now)
}

fn leaf_row(spec: &LeafSpec, verdict: Verdict, now: OffsetDateTime) -> CertStatus {
    let (info, reason) = match verdict {
        Verdict::Good(info) => (Some(info), None),
        Verdict::Renew(reason, info) => (info, Some(reason)),
    };
    let sans = info
        .as_ref()
        .map_or(&spec.sans, |i| &i.sans)
        .iter()
        .map(ToString::to_string)
        .collect();
    row(
        spec.kind.as_str().into(),
        Some(spec.host.clone()),
        info.as_ref(),
        sans,
        reason,
        now,
    )
}

fn row(
    certificate: String,
    host: Option<HostName>,
    info: Option<&CertInfo>,
    sans: Vec<String>,
    reason: Option<Reason>,
    now: OffsetDateTime,
) -> CertStatus {
    CertStatus {
        certificate,
        host,
        sans,
        not_after: info.and_then(|i| i.not_after.format(&time::format_description::well_known::Rfc3339).ok()),
        days_left: info.map(|i| i.days_left(now)),
        status: reason.map_or(Health::Ok, Health::of),
        reason,
    }
}
