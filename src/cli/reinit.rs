//! `pgha reinit`: parse the arguments, call `ops::reinit` (rebuild a replica from the leader),
//! print the plan or the result, map the outcome to an exit code.

use clap::Args;

use super::args::{InventoryArgs, RemoteArgs, prepare};
use super::output::CliReporter;
use super::report::{self, exit};
use crate::ops::reinit::{self, ReinitOptions};

/// Arguments of `pgha reinit`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  pgha reinit inventory/prod.yaml node3          # the plan; exits 2\n  pgha reinit inventory/prod.yaml node3 --yes\n\nPatroni removes the replica's data directory and copies it again from the leader\n(pg_basebackup); pgha waits until it streams. Patroni is started on the node first if it is\nstopped. The leader is refused: switch over first.\n\nExit codes: 0 streaming again, 1 refused (the leader) or failed, 2 no --yes (the plan was\nprinted) or bad usage, 3 invalid inventory or NODE, 130 interrupted."
)]
pub struct ReinitArgs {
    /// The inventory and state directory.
    #[command(flatten)]
    pub target: InventoryArgs,
    /// The replica to rebuild (a PostgreSQL host of the inventory).
    pub node: String,
    /// Do it; without, print the plan and exit 2.
    #[arg(long)]
    pub yes: bool,
    /// Connection and output options.
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// Runs `pgha reinit`.
pub fn run(args: &ReinitArgs) -> u8 {
    if !args.remote.limit.is_empty() {
        report::error("reinit names its node: --limit is not accepted");
        return exit::USAGE;
    }
    let (inv, rt) = match prepare(&args.target, args.remote.json) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let o = ReinitOptions {
        node: args.node.clone(),
        yes: args.yes,
        state: args.target.state.clone(),
        connect: args.remote.connect(),
    };
    let rep = CliReporter::shared(args.remote.json, args.remote.verbose, args.remote.timings);
    let (plan, secs) = match rt.block_on(reinit::reinit(&inv, &o, &rep)) {
        Ok(r) => r,
        Err(e) => {
            return report::fail_event("reinit", args.remote.json, &e);
        }
    };
    if args.remote.json {
        report::json(&serde_json::json!({"event": "reinit", "ok": secs.is_some(), "plan": plan, "seconds": secs}));
    } else if let Some(s) = secs {
        report::out(format!(
            "reinit {}: rebuilt from {} and streaming in {s:.1} s",
            plan.node, plan.leader
        ));
    } else {
        report::out(format!(
            "reinit {} (now {}): remove its data directory and copy it again from the leader {}, wait until it streams",
            plan.node, plan.now, plan.leader
        ));
    }
    if secs.is_some() {
        exit::OK
    } else {
        report::nothing_done_without_yes("reinit")
    }
}
