//! `pgha pki status` and `pgha pki issue`: the cluster CA, per-host certificates and generated
//! secrets in the state directory. Parses arguments, loads the inventory, calls `pki`, prints
//! through `report`. Never prints key material or passwords.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use time::OffsetDateTime;

use super::args::{load_inventory, runtime};
use super::report::{self, exit};
use crate::ops::{Connect, trust};
use crate::pki::{self, CertStatus, LeafAction, Report, SecretsReport, StateDir};

/// Arguments of `pgha pki`.
#[derive(Debug, Args)]
pub struct PkiArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: PkiCommand,
}

/// `pgha pki` subcommands.
#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Show every certificate the inventory calls for: SANs, not-after, days left, status.
    #[command(
        after_help = "Examples:\n  pgha pki status inventory/example.yaml\n  pgha pki status inventory/prod.yaml --live\n  pgha pki status inventory/prod.yaml --state /srv/pgha-state --json | jq '.[] | select(.status != \"ok\")'\n\nStatus: ok, expiring (within tls.renew_within_days), missing, mismatch (SANs, EKUs, CA or key).\nDuring a CA rotation it shows both CAs and the phase; --live connects to the hosts and shows\nwhich bundle each host's services trust and which CA signed what each TLS endpoint presents.\nWrites nothing. Exit codes: 0 shown, 1 unreadable state, 3 invalid inventory."
    )]
    Status(StatusArgs),
    /// Create the CA once, issue missing or outdated certificates, generate missing secrets.
    #[command(
        after_help = "Examples:\n  pgha pki issue inventory/example.yaml\n  pgha pki issue inventory/prod.yaml --state /srv/pgha-state\n\nIdempotent: a second run issues nothing. Keys and passwords are never printed.\nExit codes: 0 done, 1 failed, 3 invalid inventory."
    )]
    Issue(IssueArgs),
}

/// Arguments of `pgha pki status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The inventory file.
    pub inventory: PathBuf,
    /// State directory (default: `.pgha/` beside the inventory).
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Print the rows as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also connect to every host: which trust bundle its services are configured with, and
    /// which CA signed the certificate each TLS endpoint presents.
    #[arg(long)]
    pub live: bool,
}

/// Arguments of `pgha pki issue`.
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// The inventory file.
    pub inventory: PathBuf,
    /// State directory (default: `.pgha/` beside the inventory).
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
}

/// Runs `pgha pki …`.
pub fn run(args: &PkiArgs) -> u8 {
    match &args.command {
        PkiCommand::Status(a) => status(a),
        PkiCommand::Issue(a) => issue(a),
    }
}

fn status(args: &StatusArgs) -> u8 {
    let inv = match load_inventory(&args.inventory, false) {
        Ok(i) => i,
        Err(code) => return code,
    };
    let state = StateDir::for_inventory(&inv, args.state.as_deref());
    let rows = match pki::status(&inv, &state, OffsetDateTime::now_utc()) {
        Ok(rows) => rows,
        Err(e) => return fail(e),
    };
    let live = if args.live {
        match runtime() {
            Ok(rt) => Some(rt.block_on(trust::live(&inv, &state, &Connect::default()))),
            Err(code) => return code,
        }
    } else {
        None
    };
    if args.json {
        let value = match &live {
            Some(hosts) => serde_json::json!({ "certificates": rows, "hosts": hosts }),
            None => serde_json::to_value(&rows).unwrap_or_default(),
        };
        report::json(&value);
        return exit::OK;
    }
    report::out(report::table(&status_table(&rows)).trim_end());
    for line in trust::summary(&state) {
        report::out(line);
    }
    if let Some(hosts) = live {
        let mut table = vec![vec!["HOST".to_string(), "TRUSTS".into(), "PRESENTS".into()]];
        for h in hosts {
            table.push(vec![
                h.host,
                h.error.unwrap_or_else(|| h.trusts.join("; ")),
                h.presents.join(", "),
            ]);
        }
        report::out(report::table(&table).trim_end());
    }
    exit::OK
}

fn issue(args: &IssueArgs) -> u8 {
    let inv = match load_inventory(&args.inventory, false) {
        Ok(i) => i,
        Err(code) => return code,
    };
    let state = StateDir::for_inventory(&inv, args.state.as_deref());
    let done = pki::ensure(&inv, &state, OffsetDateTime::now_utc())
        .and_then(|r| Ok((r, pki::ensure_secrets(&inv, &state)?.1)));
    match done {
        Ok((certs, secrets)) => {
            report::out(issue_summary(state.root(), &certs, &secrets));
            exit::OK
        }
        Err(e) => fail(e),
    }
}

fn fail(e: pki::PkiError) -> u8 {
    report::error(e);
    exit::FAILED
}

/// The `pki status` table, header first.
fn status_table(rows: &[CertStatus]) -> Vec<Vec<String>> {
    let header = ["CERTIFICATE", "HOST", "SANS", "NOT AFTER", "DAYS LEFT", "STATUS"];
    let mut out = vec![header.map(String::from).to_vec()];
    for r in rows {
        let status = match r.reason {
            Some(reason) if reason.as_str() != r.status.as_str() => {
                format!("{} ({reason})", r.status.as_str())
            }
            _ => r.status.as_str().to_owned(),
        };
        out.push(vec![
            r.certificate.clone(),
            r.host.as_ref().map_or("-".into(), ToString::to_string),
            if r.sans.is_empty() {
                "-".into()
            } else {
                r.sans.join(",")
            },
            r.not_after.clone().unwrap_or_else(|| "-".into()),
            r.days_left.map_or("-".into(), |d| d.to_string()),
            status,
        ]);
    }
    out
}

/// What `pki issue` did, one line per change; never key material.
fn issue_summary(root: &Path, certs: &Report, secrets: &SecretsReport) -> String {
    let mut lines = vec![format!("state: {}", root.display())];
    lines.push(format!(
        "ca: {}",
        if certs.ca == pki::CaAction::Created {
            "created"
        } else {
            "kept"
        }
    ));
    let published = if certs.bundle_published {
        " (new generation)"
    } else {
        ""
    };
    lines.push(format!("trust bundle: {}{published}", certs.bundle));
    for l in certs.issued() {
        if let LeafAction::Issued(reason) = l.action {
            lines.push(format!("issued: {} {} ({reason})", l.host, l.kind));
        }
    }
    let kept = certs.leaves.len() - certs.issued().count();
    lines.push(format!("certificates: {} issued, {kept} kept", certs.issued().count()));
    for a in &secrets.created {
        lines.push(format!("secret generated: {a}"));
    }
    lines.push(format!(
        "secrets: {} generated, {} kept",
        secrets.created.len(),
        secrets.kept.len()
    ));
    lines.join("\n")
}
