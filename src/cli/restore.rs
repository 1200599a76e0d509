//! `pgha restore`: parse the arguments (the recovery target checked here), call
//! `ops::restore` (checks, plan, and with `--yes` the point-in-time recovery of the whole
//! cluster), print the plan or the result, map the outcome to an exit code.

use clap::{ArgGroup, Args};

use super::args::{InventoryArgs, RemoteArgs, prepare};
use super::output::CliReporter;
use super::report::{self, exit};
use crate::ops::restore::{self, RecoveryTarget, RestoreOptions, RestorePlan};

/// Arguments of `pgha restore`.
#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("to").required(true).args(["time", "lsn", "name", "latest"])),
    after_help = "Examples:\n  pgha restore inventory/prod.yaml --time '2026-12-02 03:40:00+00'        # the plan; exits 2\n  pgha restore inventory/prod.yaml --time 2026-12-02T03:40:00Z --yes\n  pgha restore inventory/prod.yaml --name before-migration --yes          # select pg_create_restore_point('before-migration')\n  pgha restore inventory/prod.yaml --lsn 0/5A000060 --set 20261202-031500F --yes\n  pgha restore inventory/prod.yaml --latest --yes --json\n\nPoint-in-time recovery of the WHOLE cluster from the pgBackRest repository: the current data\nof every PostgreSQL node is replaced. Each node's data directory is moved aside to\n<data>.pre-restore-<UTC stamp> (never deleted: the undo, docs/backup.md). Patroni is stopped\neverywhere, the cluster's keys are removed from etcd, pgBackRest restores the backup on one\nnode (the leader now) and PostgreSQL recovers to the target and promotes to a new timeline;\nPatroni then leads from it and clones the other nodes. Ends with pgbackrest check passing on\nthe new timeline. Take a full backup afterwards (pgha backup).\n\nExit codes: 0 restored, 1 refused (no backup before the target, target in the future…) or\nfailed, 2 no --yes (the plan was printed) or bad usage, 3 invalid inventory or target (or no\nbackup role), 130 interrupted."
)]
pub struct RestoreArgs {
    /// The inventory and state directory.
    #[command(flatten)]
    pub target: InventoryArgs,
    /// Recover to this time (the database's clock, with a zone: '2026-12-02 03:40:00+00').
    #[arg(long, value_name = "TIME")]
    pub time: Option<String>,
    /// Recover to this WAL location (16/B374D848).
    #[arg(long, value_name = "LSN")]
    pub lsn: Option<String>,
    /// Recover to this restore point (pg_create_restore_point).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Recover to the end of the archived WAL.
    #[arg(long)]
    pub latest: bool,
    /// Start from this backup (default: the newest that finished before the target).
    #[arg(long, value_name = "LABEL")]
    pub set: Option<String>,
    /// Do it; without, print the plan and exit 2.
    #[arg(long)]
    pub yes: bool,
    /// Connection and output options.
    #[command(flatten)]
    pub remote: RemoteArgs,
}

fn recovery_target(args: &RestoreArgs) -> Result<RecoveryTarget, String> {
    if let Some(t) = &args.time {
        return restore::parse_time(t).map(RecoveryTarget::Time);
    }
    if let Some(l) = &args.lsn {
        return restore::parse_lsn(l).map(RecoveryTarget::Lsn);
    }
    if let Some(n) = &args.name {
        return restore::parse_name(n).map(RecoveryTarget::Name);
    }
    Ok(RecoveryTarget::Latest)
}

/// Prints a restore plan (stdout).
pub fn print_plan(p: &RestorePlan) {
    let to = match &p.target {
        Some(t) => format!("{} {t}", p.kind),
        None => "the end of the archived WAL".to_string(),
    };
    report::out(format!(
        "restore of cluster stanza {} from backup {} (repository {}) to {to}",
        p.stanza, p.backup, p.repo_host
    ));
    report::out(format!(
        "  DESTROYS the current data of every PostgreSQL node and timeline {} (leader now: {})",
        p.timeline_now.map_or("?".into(), |t| t.to_string()),
        p.leader_now.as_deref().unwrap_or("none")
    ));
    for n in &p.nodes {
        match (&n.data_dir, &n.kept_as) {
            (Some(d), Some(k)) => report::out(format!("  {}: {d} kept as {k}; then {}", n.node, n.action)),
            _ => report::out(format!("  {}: no data directory; then {}", n.node, n.action)),
        }
    }
    report::out(format!(
        "  Patroni stopped everywhere, etcd keys /service/<cluster>/ removed, pgbackrest restore on {}, recovery and promotion to a new timeline, Patroni leads there and clones the others",
        p.restore_node
    ));
}

/// Runs `pgha restore`.
pub fn run(args: &RestoreArgs) -> u8 {
    if !args.remote.limit.is_empty() {
        report::error("restore concerns the whole cluster: --limit is not accepted");
        return exit::USAGE;
    }
    let target = match recovery_target(args) {
        Ok(t) => t,
        Err(e) => {
            report::error(e);
            return exit::INVALID_INPUT;
        }
    };
    let (inv, rt) = match prepare(&args.target, args.remote.json) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let o = RestoreOptions {
        target,
        set: args.set.clone(),
        yes: args.yes,
        state: args.target.state.clone(),
        connect: args.remote.connect(),
    };
    let rep = CliReporter::shared(args.remote.json, args.remote.verbose, args.remote.timings);
    let (plan, done) = match rt.block_on(restore::restore(&inv, &o, &rep)) {
        Ok(r) => r,
        Err(e) => return report::fail_event("restore", args.remote.json, &e),
    };
    if args.remote.json {
        report::json(&serde_json::json!({"event": "restore", "ok": done.is_some(), "plan": plan, "run": done}));
    } else if let Some(r) = &done {
        report::out(format!(
            "restore: {} restored from {} on {} ({} bytes) to {}; timeline {}; every node streams; {:.1} s in all (restore {:.1} s, recovery {:.1} s, lead {:.1} s, re-clone {:.1} s)",
            plan.stanza,
            plan.backup,
            plan.restore_node,
            r.restored_bytes.map_or("?".into(), |b| b.to_string()),
            plan.target.as_deref().unwrap_or("the end of the archive"),
            r.timeline.map_or("?".into(), |t| t.to_string()),
            r.total_s,
            r.restore_s,
            r.recovery_s,
            r.lead_s,
            r.reclone_s
        ));
        report::out(format!(
            "  old data directories kept as <data>.pre-restore-{}; take a full backup now: pgha backup {}",
            plan.stamp,
            args.target.inventory.display()
        ));
    } else {
        print_plan(&plan);
    }
    if done.is_some() {
        exit::OK
    } else {
        report::nothing_done_without_yes("restore")
    }
}
