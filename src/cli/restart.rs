//! `pgha restart`: parse the arguments, call `ops::restart` (the rolling PostgreSQL restart),
//! print the plan or the result, map the outcome to an exit code.

use clap::Args;

use super::args::{InventoryArgs, RemoteArgs, prepare};
use super::output::CliReporter;
use super::report::{self, exit};
use crate::ops::restart::{self, RestartOptions};

/// Arguments of `pgha restart`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  pgha restart inventory/prod.yaml                    # the plan; exits 2\n  pgha restart inventory/prod.yaml --yes              # every node: replicas, switchover, old primary\n  pgha restart inventory/prod.yaml --pending --yes    # only members with pending_restart\n  pgha restart inventory/prod.yaml --limit node3 --yes\n\nPostgreSQL is restarted through Patroni's REST API (Patroni keeps running): replicas one at a\ntime, each streaming again before the next; then the primary role is handed over as `pgha\nswitchover` does (PgBouncer paused around it, no client fails), then the old primary restarts.\n\nExit codes: 0 done, 1 refused or failed, 2 no --yes (the plan was printed) or bad usage,\n3 invalid inventory or --limit, 130 interrupted."
)]
pub struct RestartArgs {
    /// The inventory and state directory.
    #[command(flatten)]
    pub target: InventoryArgs,
    /// Only members with parameters waiting for a restart (Patroni's pending_restart).
    #[arg(long)]
    pub pending: bool,
    /// Do it; without, print the plan and exit 2.
    #[arg(long)]
    pub yes: bool,
    /// Connection and output options (--limit: restart only these PostgreSQL hosts).
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// Runs `pgha restart`.
pub fn run(args: &RestartArgs) -> u8 {
    let (inv, rt) = match prepare(&args.target, args.remote.json) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let o = RestartOptions {
        pending: args.pending,
        limit: args.remote.limit.clone(),
        yes: args.yes,
        state: args.target.state.clone(),
        connect: args.remote.connect(),
    };
    let rep = CliReporter::shared(args.remote.json, args.remote.verbose, args.remote.timings);
    let (plan, run) = match rt.block_on(restart::restart(&inv, &o, &rep)) {
        Ok(r) => r,
        Err(e) => {
            return report::fail_event("restart", args.remote.json, &e);
        }
    };
    if args.remote.json {
        report::json(&serde_json::json!({"event": "restart", "ok": run.is_some(), "plan": plan, "run": run}));
    } else if let Some(r) = &run {
        let pause = r.switchover.as_ref().map_or(String::new(), |s| {
            format!(
                "; switchover {} → {}, PgBouncer paused {:.1} s",
                s.from, s.to, s.paused_s
            )
        });
        report::out(format!(
            "restart: {} restarted in {:.1} s{pause}",
            if r.restarted.is_empty() {
                "nothing".to_string()
            } else {
                r.restarted.join(", ")
            },
            r.seconds
        ));
    } else {
        report::out(format!("rolling restart (leader {}):", plan.leader));
        for r in &plan.replicas {
            report::out(format!("  restart replica {r}, wait until it streams"));
        }
        if plan.primary {
            report::out(format!(
                "  switchover from {} (PgBouncer paused), then restart {} as a replica",
                plan.leader, plan.leader
            ));
        }
        for s in &plan.skipped {
            report::out(format!("  skip {s}"));
        }
    }
    if run.is_some() {
        exit::OK
    } else {
        report::nothing_done_without_yes("restart")
    }
}
