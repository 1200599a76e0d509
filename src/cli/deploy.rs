//! `pgha deploy` and `pgha plan`: parse the arguments, call `ops::deploy::deploy`, map the
//! outcome to an exit code. Progress and the recap come through the CLI's reporter.

use std::path::PathBuf;

use clap::Args;

use super::args::{InventoryArgs, RemoteArgs, prepare};
use super::output::CliReporter;
use super::report::{self, exit};
use crate::ops::deploy::{self, DeployOptions, Deployed};
use crate::render::TemplateSource;

/// Arguments of `pgha deploy`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  pgha deploy inventory/lab.yaml\n  pgha deploy inventory/prod.yaml --check --diff     # same as pgha plan\n  pgha deploy inventory/prod.yaml --limit pgbouncer\n  pgha deploy inventory/prod.yaml --json > deploy.jsonl\n  pgha deploy inventory/prod.yaml --remove-members    # after removing hosts from it\n  pgha deploy inventory/prod.yaml --remove-members --purge   # ... and delete their data\n\nExit codes: 0 deployed (or planned), 1 a host failed, preflight or a membership check refused,\n2 a removal without --remove-members (or with --limit), 3 invalid inventory, 130 interrupted\n(re-run to converge)."
)]
pub struct DeployArgs {
    /// The inventory and state directory.
    #[command(flatten)]
    pub target: InventoryArgs,
    /// Plan only: print what would change on each host, change nothing.
    #[arg(long)]
    pub check: bool,
    /// With --check, show unified diffs of files (secrets masked).
    #[arg(long)]
    pub diff: bool,
    /// Directory of templates overriding the built-in ones.
    #[arg(long)]
    pub templates: Option<PathBuf>,
    /// Directory of playbooks overriding the embedded ones.
    #[arg(long)]
    pub playbooks: Option<PathBuf>,
    /// Take over PostgreSQL or etcd data found on the hosts that pgha did not configure
    /// (otherwise the deploy refuses to touch it).
    #[arg(long)]
    pub adopt_existing_data: bool,
    /// Carry out the removals the inventory asks for: etcd members and PostgreSQL nodes it no
    /// longer lists are removed from the cluster and stopped (their data is kept). Without
    /// it, a deploy that would remove a member changes nothing and exits 2.
    #[arg(long)]
    pub remove_members: bool,
    /// With --remove-members: delete the departing members' data (PostgreSQL's data
    /// directory, etcd's data directory) instead of keeping it. Cannot be undone.
    #[arg(long, requires = "remove_members")]
    pub purge: bool,
    /// Connection and output options.
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// Arguments of `pgha plan`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  pgha plan inventory/prod.yaml\n  pgha plan inventory/prod.yaml --limit node1,node2\n\nPrints per host what `pgha deploy` would change, with diffs (secrets masked); changes\nnothing on the hosts. Exit codes as pgha deploy."
)]
pub struct PlanArgs {
    /// The inventory and state directory.
    #[command(flatten)]
    pub target: InventoryArgs,
    /// Connection and output options.
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// Runs `pgha plan`.
pub fn plan(args: &PlanArgs) -> u8 {
    deploy(&DeployArgs {
        target: args.target.clone(),
        check: true,
        diff: true,
        templates: None,
        playbooks: None,
        adopt_existing_data: false,
        remove_members: false,
        purge: false,
        remote: args.remote.clone(),
    })
}

/// Runs `pgha deploy`.
pub fn deploy(args: &DeployArgs) -> u8 {
    let (inv, rt) = match prepare(&args.target, args.remote.json) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let o = DeployOptions {
        state: args.target.state.clone(),
        templates: match &args.templates {
            Some(d) => TemplateSource::Dir(d.clone()),
            None => TemplateSource::Embedded,
        },
        playbooks: args.playbooks.clone(),
        check: args.check,
        diff: args.diff,
        adopt_existing_data: args.adopt_existing_data,
        verbose: args.remote.verbose,
        quiet: args.remote.json,
        connect: args.remote.connect(),
        remove_members: args.remove_members,
        purge: args.purge,
    };
    let rep = CliReporter::shared(args.remote.json, args.remote.verbose, args.remote.timings);
    match rt.block_on(deploy::deploy(&inv, &o, &rep)) {
        Ok(d) => {
            print_plan(&d, args.remote.json);
            exit::OK
        }
        Err(e) => report::fail(&e),
    }
}

/// With `--check`: what the state directory and the cluster itself would get.
fn print_plan(d: &Deployed, json: bool) {
    let (Some(pki), Some(cluster)) = (&d.issuance, &d.cluster) else {
        return;
    };
    if json {
        report::out(serde_json::json!({ "event": "plan", "pki": pki, "cluster": cluster }).to_string());
        return;
    }
    let mut lines = vec!["\nPKI".to_string()];
    if pki.is_empty() {
        lines.push(format!("{}: nothing to issue", pki.state.display()));
    } else {
        lines.push(format!(
            "{}: a deploy would issue (nothing was written):",
            pki.state.display()
        ));
        if pki.ca_created {
            lines.push("  the cluster CA (new)".into());
        }
        if let Some(b) = &pki.bundle_published {
            lines.push(format!("  trust bundle {b}"));
        }
        for l in &pki.leaves {
            lines.push(format!(
                "  {} certificate for {} ({})",
                l.kind,
                l.host,
                l.reason.as_str()
            ));
        }
        if !pki.passwords.is_empty() {
            lines.push(format!("  passwords: {}", pki.passwords.join(", ")));
        }
    }
    lines.push("\nCLUSTER".into());
    if let Some(note) = &cluster.note {
        lines.push(note.clone());
    } else if cluster.is_empty() {
        lines.push("Patroni's dynamic configuration is as wanted; no restart".into());
    }
    if !cluster.dcs.is_empty() {
        lines.push("Patroni dynamic configuration (cluster-wide, applied once):".into());
        let show = |v: &Option<serde_json::Value>| match v {
            None => "(unset)".to_string(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        for c in &cluster.dcs {
            let restart = if c
                .parameter()
                .is_some_and(|p| cluster.restart_parameters.iter().any(|r| r == p))
            {
                " (needs a PostgreSQL restart)"
            } else {
                ""
            };
            lines.push(format!(
                "  {}: {} → {}{restart}",
                c.key,
                show(&c.before),
                show(&c.after)
            ));
        }
    }
    if !cluster.members.is_empty() {
        lines.push("members (one at a time):".into());
        for l in cluster.members.lines() {
            lines.push(format!("  {l}"));
        }
        if cluster.members.removes() {
            lines.push("  removals need `pgha deploy --remove-members`".into());
        }
    }
    for r in &cluster.members.refusals {
        lines.push(format!("refused: {r}"));
    }
    if !cluster.pending_restart.is_empty() {
        lines.push(format!(
            "waiting for a restart already: {}",
            cluster.pending_restart.join(", ")
        ));
    }
    if let Some(r) = &cluster.rolling_restart {
        let handover = match &r.switchover_to {
            Some(to) => format!("switchover {} → {to}", r.primary),
            None => format!("switchover of {} once a replica streams", r.primary),
        };
        lines.push(format!(
            "rolling restart of PostgreSQL: {} (one at a time), then {handover}, then {}",
            if r.replicas.is_empty() {
                "no replica".to_string()
            } else {
                r.replicas.join(", ")
            },
            r.primary
        ));
    }
    report::info(lines.join("\n"));
}
