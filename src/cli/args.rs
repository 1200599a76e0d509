//! Arguments shared by the subcommands — the inventory and state directory, how to reach the
//! hosts — and the one inventory loader of the CLI (it prints the warnings, or the errors and
//! the exit code). Subcommand files flatten these; nothing else is shared between them.

use std::path::{Path, PathBuf};

use clap::Args;

use super::report;
use crate::inventory::Inventory;
use crate::ops::{self, Connect};
use crate::transport;

/// The inventory file and the state directory: what every cluster command starts from.
#[derive(Debug, Args, Clone)]
pub struct InventoryArgs {
    /// The inventory file.
    pub inventory: PathBuf,
    /// State directory of the PKI and secrets (default: .pgha beside the inventory).
    #[arg(long)]
    pub state: Option<PathBuf>,
}

impl InventoryArgs {
    /// Loads the inventory (warnings printed unless `quiet_warnings`); `Err` is the exit code.
    pub fn load(&self, quiet_warnings: bool) -> Result<Inventory, u8> {
        load_inventory(&self.inventory, quiet_warnings)
    }
}

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

impl RemoteArgs {
    /// How ops reach the hosts.
    pub fn connect(&self) -> Connect {
        Connect {
            transport: self.transport,
            accept_new_host_keys: self.accept_new_host_keys,
            limit: self.limit.clone(),
        }
    }
}

/// The CLI's inventory loader: [`ops::load_inventory`], then its warnings (unless
/// `quiet_warnings`) or its errors printed; `Err` is the exit code (3: invalid input, also
/// for an unreadable file).
pub fn load_inventory(path: &Path, quiet_warnings: bool) -> Result<Inventory, u8> {
    match ops::load_inventory(path) {
        Ok(l) => {
            if !quiet_warnings {
                l.warnings.iter().for_each(report::diagnostic);
            }
            Ok(l.inventory)
        }
        Err(e) => Err(report::fail(&e)),
    }
}

/// What a command that talks to hosts needs first: the inventory (warnings printed unless
/// `quiet_warnings`) and a runtime; `Err` is the exit code.
pub fn prepare(target: &InventoryArgs, quiet_warnings: bool) -> Result<(Inventory, tokio::runtime::Runtime), u8> {
    let inv = target.load(quiet_warnings)?;
    Ok((inv, runtime()?))
}

/// A runtime for commands that talk to hosts; `Err` is the exit code.
pub fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .map_err(|e| {
            report::error(format!("cannot start the async runtime: {e}"));
            report::exit::FAILED
        })
}
