//! `pgha run`: apply a playbook (embedded or a file) to the inventory's hosts through
//! `ops::run::run_playbook`.

use std::path::PathBuf;

use clap::Args;

use super::args::{RemoteArgs, load_inventory, runtime};
use super::output::CliReporter;
use super::report::{self, exit};
use crate::ops::run::{self, RunOptions};

/// Arguments of `pgha run`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  pgha run inventory/lab.yaml sample --check --diff\n  pgha run inventory/lab.yaml sample --timings\n  pgha run inventory/prod.yaml ./my-playbook.yaml --limit node1,node2\n\nExit codes: 0 success, 1 a host failed, 3 invalid inventory or playbook, 130 interrupted."
)]
pub struct RunArgs {
    /// The inventory file.
    pub inventory: PathBuf,
    /// An embedded playbook name (see `pgha run --list`) or a playbook file.
    pub playbook: String,
    /// Plan only: print what would change, change nothing.
    #[arg(long)]
    pub check: bool,
    /// With --check, show unified diffs of files (secrets masked).
    #[arg(long)]
    pub diff: bool,
    /// Directory of playbooks overriding the embedded ones.
    #[arg(long)]
    pub playbooks: Option<PathBuf>,
    /// Connection and output options.
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// Runs `pgha run`.
pub fn run(args: &RunArgs) -> u8 {
    let inv = match load_inventory(&args.inventory, true) {
        Ok(i) => i,
        Err(code) => return code,
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let o = RunOptions {
        playbook: args.playbook.clone(),
        playbooks: args.playbooks.clone(),
        check: args.check,
        diff: args.diff,
        verbose: args.remote.verbose,
        connect: args.remote.connect(),
    };
    let rep = CliReporter::shared(args.remote.json, args.remote.verbose, args.remote.timings);
    match rt.block_on(run::run_playbook(&inv, &o, &rep)) {
        Ok(_) => exit::OK,
        Err(e) => report::fail(&e),
    }
}
