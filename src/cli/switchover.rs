//! `pgha switchover`: parse the arguments, call `ops::switchover` (checks, plan, and with
//! `--yes` the paused switchover), print the plan or the result, map the outcome to an exit code.

use clap::Args;

use super::args::{InventoryArgs, RemoteArgs, prepare};
use super::output::CliReporter;
use super::report::{self, exit};
use crate::ops::switchover::{self, SwitchoverOptions, SwitchoverPlan};

/// Arguments of `pgha switchover`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  pgha switchover inventory/prod.yaml                  # checks and the plan; exits 2\n  pgha switchover inventory/prod.yaml --yes            # to the synchronous standby (else a streaming replica)\n  pgha switchover inventory/prod.yaml --to node2 --yes\n  pgha switchover inventory/prod.yaml --to node2 --at 2026-12-02T03:00+00:00 --yes  # Patroni schedules it\n\nChecks first: one leader running, the candidate streaming with a lag under\nmaximum_lag_on_failover, and a synchronous standby when synchronous mode is on. Then PgBouncer's\npools are PAUSEd (clients wait, none fails), Patroni switches over, pgha waits until every\nHAProxy routes RW to the new leader, and RESUMEs (also on an error or Ctrl-C). With --at\nnothing is paused: clients may see errors at that time.\n\nExit codes: 0 done, 1 refused or failed (the reason is printed), 2 no --yes (the plan was\nprinted) or bad usage, 3 invalid inventory, 130 interrupted (PgBouncer was resumed)."
)]
pub struct SwitchoverArgs {
    /// The inventory and state directory.
    #[command(flatten)]
    pub target: InventoryArgs,
    /// The replica to hand over to (a streaming replica; the synchronous standby in sync mode).
    #[arg(long, value_name = "NODE")]
    pub to: Option<String>,
    /// Let Patroni switch over at this time (ISO 8601 with a time zone); nothing is paused.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Do it; without, print the plan and exit 2.
    #[arg(long)]
    pub yes: bool,
    /// Connection and output options.
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// Prints a switchover plan (stdout).
pub fn print_plan(p: &SwitchoverPlan) {
    let lag = p.lag.map_or("unknown".to_string(), |l| format!("{l} bytes"));
    report::out(format!(
        "switchover {} → {} (lag {lag}, synchronous mode {})",
        p.leader, p.candidate, p.sync_mode
    ));
    match &p.at {
        Some(at) => report::out(format!("  scheduled by Patroni at {at}; PgBouncer is not paused")),
        None => report::out(format!(
            "  PAUSE PgBouncer on {}, POST /switchover, wait until HAProxy routes RW to {}, RESUME",
            p.pause.join(", "),
            p.candidate
        )),
    }
}

/// Runs `pgha switchover`.
pub fn run(args: &SwitchoverArgs) -> u8 {
    if !args.remote.limit.is_empty() {
        report::error("switchover concerns the whole cluster: --limit is not accepted");
        return exit::USAGE;
    }
    let (inv, rt) = match prepare(&args.target, args.remote.json) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let o = SwitchoverOptions {
        to: args.to.clone(),
        at: args.at.clone(),
        yes: args.yes,
        state: args.target.state.clone(),
        connect: args.remote.connect(),
    };
    let rep = CliReporter::shared(args.remote.json, args.remote.verbose, args.remote.timings);
    let (plan, run) = match rt.block_on(switchover::switchover(&inv, &o, &rep)) {
        Ok(r) => r,
        Err(e) => {
            return report::fail_event("switchover", args.remote.json, &e);
        }
    };
    if args.remote.json {
        report::json(&serde_json::json!({"event": "switchover", "ok": run.is_some(), "plan": plan, "run": run}));
    } else if let Some(r) = &run {
        report::out(format!(
            "switchover {} → {}: {}",
            r.from,
            r.to,
            if r.scheduled {
                "scheduled".to_string()
            } else {
                format!(
                    "done; PgBouncer paused {:.1} s, role change {:.1} s",
                    r.paused_s, r.switch_s
                )
            }
        ));
    } else {
        print_plan(&plan);
    }
    if run.is_some() {
        exit::OK
    } else {
        report::nothing_done_without_yes("switchover")
    }
}
