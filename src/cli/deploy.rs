//! `pgha deploy` and `pgha plan`: parse the arguments, call `ops::deploy::deploy`, map the
//! outcome to an exit code. Progress and the recap come through the CLI's reporter.

use std::path::PathBuf;

use clap::Args;

use super::args::{InventoryArgs, RemoteArgs, runtime};
use super::output::CliReporter;
use super::report::{self, exit};
use crate::ops::deploy::{self, DeployOptions};
use crate::render::TemplateSource;

/// Arguments of `pgha deploy`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  pgha deploy inventory/lab.yaml\n  pgha deploy inventory/prod.yaml --check --diff     # same as pgha plan\n  pgha deploy inventory/prod.yaml --limit pgbouncer\n  pgha deploy inventory/prod.yaml --json > deploy.jsonl\n\nExit codes: 0 deployed (or planned), 1 a host failed or preflight refused, 3 invalid\ninventory, 130 interrupted (re-run to converge)."
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
        remote: args.remote.clone(),
    })
}

/// Runs `pgha deploy`.
pub fn deploy(args: &DeployArgs) -> u8 {
    let inv = match args.target.load(args.remote.json) {
        Ok(i) => i,
        Err(code) => return code,
    };
    let rt = match runtime() {
        Ok(rt) => rt,
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
    };
    let rep = CliReporter::shared(args.remote.json, args.remote.verbose, args.remote.timings);
    match rt.block_on(deploy::deploy(&inv, &o, &rep)) {
        Ok(_) => exit::OK,
        Err(e) => report::fail(&e),
    }
}
