//! `pgha run`: apply a playbook (embedded or a file) to the inventory's hosts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Args;

use super::output::{self, Printer, Style};
use super::report::{self, exit};
use crate::engine::{self, Options, SshConnector};
use crate::inventory;
use crate::playbook;
use crate::transport;

/// Connection and output options shared by commands that talk to hosts.
#[derive(Debug, Args, Clone)]
pub struct RemoteArgs {
    /// SSH implementation: openssh (default; honours ~/.ssh/config, agent, ProxyJump) or russh.
    #[arg(long, value_enum, default_value_t = transport::Kind::Openssh)]
    pub transport: transport::Kind,
    /// Trust the host key of a host seen for the first time (a changed key is always refused).
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// Only these hosts (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    pub limit: Vec<String>,
    /// JSON lines on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Print wall time per play.
    #[arg(long)]
    pub timings: bool,
    /// Show every command sent and every task's outcome.
    #[arg(short, long)]
    pub verbose: bool,
}

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
    let inv = match inventory::load(&args.inventory) {
        Ok(l) => l.inventory,
        Err(e) => {
            report::error(&e);
            return exit::INVALID_INPUT;
        }
    };
    let pb = match playbook::load(&args.playbook, args.playbooks.as_deref(), &inv) {
        Ok(p) => p,
        Err(e) => {
            report::error(&e);
            return exit::INVALID_INPUT;
        }
    };
    let opts = Options {
        check: args.check,
        diff: args.diff,
        verbose: args.remote.verbose,
        limit: limit(&args.remote.limit),
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let connector = SshConnector {
        kind: args.remote.transport,
        accept_new_host_keys: args.remote.accept_new_host_keys,
    };
    execute(&rt, &inv, &pb, &BTreeMap::new(), &opts, &args.remote, &connector).1
}

/// `--limit` as a set (None when empty).
pub fn limit(l: &[String]) -> Option<std::collections::BTreeSet<String>> {
    if l.is_empty() {
        None
    } else {
        Some(l.iter().cloned().collect())
    }
}

/// A runtime for commands that talk to hosts.
pub fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .map_err(|e| {
            report::error(format!("cannot start the async runtime: {e}"));
            exit::FAILED
        })
}

/// Runs the engine with printing and Ctrl-C handling; returns the recap and the exit code.
pub fn execute(
    rt: &tokio::runtime::Runtime,
    inv: &inventory::Inventory,
    pb: &playbook::Playbook,
    inputs: &BTreeMap<String, engine::HostInput>,
    opts: &Options,
    remote: &RemoteArgs,
    connector: &dyn engine::Connector,
) -> (engine::Recap, u8) {
    let style = Style::detect(remote.json);
    let printer = Arc::new(Printer::new(style, remote.verbose));
    let cancel = Arc::new(AtomicBool::new(false));
    let recap = rt.block_on(async {
        let flag = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                flag.store(true, Ordering::SeqCst);
            }
        });
        engine::run(inv, pb, inputs, opts, connector, printer.clone(), cancel.clone()).await
    });
    printer.finish();
    output::recap(style, &recap, remote.timings);
    let code = if recap.interrupted {
        130
    } else if recap.success() {
        exit::OK
    } else {
        exit::FAILED
    };
    (recap, code)
}
