//! Command-line interface: clap types, one file per subcommand, and dispatch. Each subcommand
//! file parses its arguments, calls one `ops` function and prints its result; shared arguments
//! and the inventory loader are in `args`. Only this layer prints (through `report` and
//! `output`), and only here is `anyhow` used; no file here starts a remote command.

pub mod args;
pub mod backup;
pub mod completions;
pub mod deploy;
pub mod drill;
// cli/lab.rs (the lab helper's) still prints directly; it moves to `report` next.
#[allow(clippy::print_stdout, clippy::print_stderr)]
pub mod lab;
pub mod output;
pub mod pki;
pub mod reinit;
pub mod render;
pub mod report;
pub mod restart;
pub mod restore;
pub mod rotate;
pub mod run;
pub mod status;
pub mod switchover;
pub mod uri;
pub mod validate;
pub mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// pgha: a PostgreSQL high-availability cluster (etcd, Patroni, HAProxy, PgBouncer, TLS
/// everywhere) on Debian hosts over SSH.
#[derive(Debug, Parser)]
#[command(
    name = "pgha",
    version,
    about,
    after_help = "Examples:\n  pgha lab up                                  # eight Debian machines on this host\n  pgha validate inventory/lab.yaml\n  pgha deploy inventory/lab.yaml               # idempotent: a second run changes nothing\n  pgha plan inventory/lab.yaml                 # what deploy would change, with diffs\n  pgha verify inventory/lab.yaml               # end to end, psql with sslmode=verify-full\n  pgha switchover inventory/lab.yaml --to node2 --yes  # PgBouncer paused: no client fails\n  pgha drill inventory/lab.yaml failover --yes # crash the leader under writes: downtime, rows lost\n  psql \"$(pgha uri inventory/lab.yaml --database app --with-password)\"\n\nExit codes: 0 success, 1 failure, 2 usage error, 3 invalid input (inventory, playbook),\n130 interrupted (re-run to converge)."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check an inventory: errors with file:line:column, topology warnings.
    Validate(validate::ValidateArgs),
    /// Render every file pgha installs on each host into a directory.
    Render(render::RenderArgs),
    /// Cluster CA, per-host certificates and generated secrets (state directory).
    Pki(pki::PkiArgs),
    /// Deploy the cluster: preflight, PKI, rendered files, the deploy playbook.
    Deploy(deploy::DeployArgs),
    /// Show what `pgha deploy` would change on each host, with diffs; change nothing.
    Plan(deploy::PlanArgs),
    /// Check a deployed cluster end to end with real clients (verify-full TLS).
    Verify(verify::VerifyArgs),
    /// Renew the certificates (--ca: rotate the CA, trust first) with zero downtime.
    RotateCerts(rotate::RotateArgs),
    /// The cluster at a glance: etcd, Patroni members, HAProxy servers, PgBouncer pools.
    Status(status::StatusArgs),
    /// A libpq URI for applications (verify-full TLS; password only when asked).
    Uri(uri::UriArgs),
    /// Hand the primary role to a streaming replica (PgBouncer paused: no client fails).
    Switchover(switchover::SwitchoverArgs),
    /// Rolling PostgreSQL restart through Patroni: replicas, switchover, old primary.
    Restart(restart::RestartArgs),
    /// Rebuild a replica from the leader (refuses the leader).
    Reinit(reinit::ReinitArgs),
    /// Point-in-time recovery of the whole cluster from pgBackRest (old data kept; --yes).
    Restore(restore::RestoreArgs),
    /// pgBackRest backup of the cluster (from a standby where possible); `backup list`.
    Backup(backup::BackupArgs),
    /// Failure drill under writes: crash the leader, lose etcd quorum, or partition the leader.
    Drill(drill::DrillArgs),
    /// Apply a playbook to the inventory's hosts (or plan it with --check).
    Run(run::RunArgs),
    /// Debian lab machines on this host (systemd-nspawn) for rehearsals and CI.
    Lab(lab::LabArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
    /// Print the man page (roff), or write every page into a directory.
    Man(completions::ManArgs),
}

/// Parses arguments, runs the subcommand, returns the exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Render(args) => render::run(&args),
        Command::Pki(args) => pki::run(&args),
        Command::Deploy(args) => deploy::deploy(&args),
        Command::Plan(args) => deploy::plan(&args),
        Command::Verify(args) => verify::run(&args),
        Command::RotateCerts(args) => rotate::run(&args),
        Command::Status(args) => status::run(&args),
        Command::Uri(args) => uri::run(&args),
        Command::Switchover(args) => switchover::run(&args),
        Command::Restart(args) => restart::run(&args),
        Command::Reinit(args) => reinit::run(&args),
        Command::Restore(args) => restore::run(&args),
        Command::Drill(args) => drill::run(&args),
        Command::Backup(args) => backup::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Completions(args) => completions::completions(&args),
        Command::Man(args) => completions::man(&args),
        Command::Lab(args) => {
            return lab::run(args).unwrap_or_else(|e| {
                report::error(format!("{e:#}"));
                ExitCode::FAILURE
            });
        }
    };
    ExitCode::from(code)
}
