//! `pgha backup` and `pgha backup list`: parse the arguments, call `ops::backup`, print the
//! new backup or the repository's backups, map the outcome to an exit code.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::args::{InventoryArgs, RemoteArgs, runtime};
use super::output::CliReporter;
use super::report::{self, exit};
use crate::inventory::BackupType;
use crate::ops::backup::{self, BackupOptions};

/// `--type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TypeArg {
    /// Everything.
    Full,
    /// Changes since the last full backup.
    Diff,
    /// Changes since the last backup.
    Incr,
}

impl From<TypeArg> for BackupType {
    fn from(t: TypeArg) -> Self {
        match t {
            TypeArg::Full => BackupType::Full,
            TypeArg::Diff => BackupType::Diff,
            TypeArg::Incr => BackupType::Incr,
        }
    }
}

/// Arguments of `pgha backup`.
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Examples:\n  pgha backup inventory/prod.yaml                 # a full backup\n  pgha backup inventory/prod.yaml --type incr\n  pgha backup list inventory/prod.yaml --json\n\nRuns pgBackRest on the host with the `backup` role, reading the data files from a streaming\nstandby where there is one (the primary only runs start/stop backup). Scheduled backups run\nfrom systemd timers on that host (the inventory's backup.schedule). docs/backup.md.\n\nExit codes: 0 done, 1 failed, 2 no backup host or bad usage, 3 invalid inventory,\n130 interrupted."
)]
pub struct BackupArgs {
    /// `list`: the repository's backups.
    #[command(subcommand)]
    pub action: Option<BackupAction>,
    /// The inventory file.
    #[arg(required = true)]
    pub inventory: Option<PathBuf>,
    /// State directory of the PKI and secrets (default: .pgha beside the inventory).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Backup type.
    #[arg(long = "type", value_enum, default_value_t = TypeArg::Full)]
    pub kind: TypeArg,
    /// Connection and output options.
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// `pgha backup list`.
#[derive(Debug, Subcommand)]
pub enum BackupAction {
    /// The repository's backups (label, type, times, sizes) and WAL archive range.
    List {
        /// The inventory and state directory.
        #[command(flatten)]
        target: InventoryArgs,
        /// Connection and output options.
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

fn utc(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| secs.to_string())
}

/// Runs `pgha backup` or `pgha backup list`.
pub fn run(args: &BackupArgs) -> u8 {
    match &args.action {
        Some(BackupAction::List { target, remote }) => list(target, remote),
        None => {
            let Some(inventory) = args.inventory.clone() else {
                report::error("pgha backup: give the inventory file");
                return exit::USAGE;
            };
            let target = InventoryArgs {
                inventory,
                state: args.state.clone(),
            };
            take(&target, args.kind.into(), &args.remote)
        }
    }
}

fn take(target: &InventoryArgs, kind: BackupType, remote: &RemoteArgs) -> u8 {
    let inv = match target.load(remote.json) {
        Ok(i) => i,
        Err(code) => return code,
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let o = BackupOptions {
        kind,
        state: target.state.clone(),
        connect: remote.connect(),
    };
    let rep = CliReporter::shared(remote.json, remote.verbose, remote.timings);
    match rt.block_on(backup::backup(&inv, &o, &rep)) {
        Ok(done) => {
            if remote.json {
                report::json(&serde_json::json!({"event": "backup", "ok": true, "backup": done}));
            } else {
                report::out(format!(
                    "backup {} ({}) of stanza {} on {}: {} bytes ({} in the repository), from the {}, in {:.1} s",
                    done.backup.label,
                    done.backup.kind,
                    done.stanza,
                    done.repo_host,
                    done.backup.size,
                    done.backup.repo_size,
                    serde_json::to_value(done.source)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default(),
                    done.seconds
                ));
            }
            exit::OK
        }
        Err(e) => report::fail_event("backup", remote.json, &e),
    }
}

fn list(target: &InventoryArgs, remote: &RemoteArgs) -> u8 {
    let inv = match target.load(remote.json) {
        Ok(i) => i,
        Err(code) => return code,
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(backup::list(&inv, &remote.connect())) {
        Ok(l) => {
            if remote.json {
                report::json(
                    &serde_json::json!({"event": "backup-list", "ok": true, "repo_host": l.repo_host, "stanza": l.stanza}),
                );
                return exit::OK;
            }
            let s = &l.stanza;
            report::out(format!(
                "stanza {} on {}: {} (code {}), cipher {}, {} backup(s)",
                s.name,
                l.repo_host,
                s.status_message,
                s.status_code,
                s.cipher,
                s.backups.len()
            ));
            for b in &s.backups {
                report::out(format!(
                    "  {:<36} {:<4} {} → {}  {} bytes ({} in repo){}",
                    b.label,
                    b.kind,
                    utc(b.start),
                    utc(b.stop),
                    b.size,
                    b.repo_size,
                    if b.error { "  ERRORS" } else { "" }
                ));
            }
            for a in &s.archive {
                report::out(format!("  WAL archive {}: {} … {}", a.id, a.min, a.max));
            }
            exit::OK
        }
        Err(e) => report::fail_event("backup-list", remote.json, &e),
    }
}
