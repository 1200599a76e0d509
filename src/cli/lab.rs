//! `pgha lab ...`: clap types for the lab subcommands and the thin functions that call
//! `pgha::lab::ops` and print what they report. No lab logic lives here.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::lab::{self, LabPaths, Login, Release, Subnet, UpOptions};

/// `pgha lab`: Debian machines on this host for rehearsals and CI.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  pgha lab up                         # 8 trixie hosts, writes inventory/lab.yaml
  pgha lab up --from my-cluster.yaml  # one machine per host of that inventory
  pgha lab up --release bookworm --subnet 10.99.0.0/24
  pgha lab status
  pgha lab ssh node1                  # a root shell on node1
  pgha lab ssh node1 -- systemctl is-system-running
  pgha lab stop node2 && pgha lab start node2   # crash and reboot, same disk
  pgha lab partition etcd3 && pgha lab heal etcd3
  pgha lab down                       # nothing left; --purge also drops the base image

State lives in /var/lib/pgha/lab (PGHA_LAB_DIR overrides). Needs root and the packages
debootstrap, systemd-container, iproute2 and openssh-client.")]
pub struct LabArgs {
    /// What to do with the lab.
    #[command(subcommand)]
    pub command: LabCommand,
}

/// The lab subcommands.
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build (or complete, or check) the lab and write its inventory.
    #[command(after_help = "\
Examples:
  pgha lab up
  pgha lab up --release bookworm
  pgha lab up --subnet 10.99.0.0/24 --inventory /tmp/lab.yaml
  pgha lab up --login pgha            # inventory logs in as pgha with become: true
  pgha lab up --from tests/inventories/lab-16.yaml
  pgha lab up --from tests/inventories/lab-8.yaml    # removes the 8 hosts no longer listed

A second `up` only checks (seconds); after a reboot it boots the machines again from disk.
With --from, the lab has one machine per host of INVENTORY (its data centre and roles; the lab
assigns the addresses) and the written inventory copies every other setting of INVENTORY. A
later `up` with another shape (or none: the default eight) adds and removes machines; the ones
kept keep their disk, address and uptime.")]
    Up {
        /// Debian release of the hosts: trixie or bookworm [default: trixie, or the running lab's].
        #[arg(long)]
        release: Option<String>,
        /// IPv4 network for the lab [default: 10.213.77.0/24, or the running lab's].
        #[arg(long)]
        subnet: Option<String>,
        /// Debian mirror for the base image [default: the first deb source in /etc/apt].
        #[arg(long)]
        mirror: Option<String>,
        /// Where to write the lab inventory.
        #[arg(long, default_value = lab::inventory::DEFAULT_PATH)]
        inventory: PathBuf,
        /// Account the inventory logs in as: root, or pgha (with become: true).
        #[arg(long, default_value = "root", value_parser = ["root", "pgha"])]
        login: String,
        /// Shape the lab after this pgha inventory: one machine per host [default: the eight
        /// hosts of the reference topology].
        #[arg(long, value_name = "INVENTORY")]
        from: Option<PathBuf>,
    },
    /// Show each host's state, address, uptime and memory.
    #[command(after_help = "Examples:\n  pgha lab status\n  pgha lab status --json")]
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Open a shell, or run a command, on a lab host; its exit code is passed through.
    #[command(after_help = "\
Examples:
  pgha lab ssh node1
  pgha lab ssh node1 -- journalctl -u ssh --no-pager
  pgha lab ssh --user pgha haproxy -- sudo -n true
  pgha lab ssh node1 -- 'echo hi > /tmp/x && cat /tmp/x'

One word after -- is a shell command line, run by the remote shell as ssh does; several words
are an argv, each passed to the host unchanged (quoted for its shell).")]
    Ssh {
        /// Log in as this user (root or pgha).
        #[arg(long, default_value = "root")]
        user: String,
        /// The host.
        host: String,
        /// Command to run instead of a shell.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Power a host off abruptly, like a crash (its disk is kept).
    #[command(after_help = "Example:\n  pgha lab stop node1")]
    Stop {
        /// The host.
        host: String,
    },
    /// Boot a stopped host again on the same disk.
    #[command(after_help = "Example:\n  pgha lab start node1")]
    Start {
        /// The host.
        host: String,
    },
    /// Cut a host off the lab network.
    #[command(after_help = "Example:\n  pgha lab partition etcd3")]
    Partition {
        /// The host.
        host: String,
    },
    /// Reconnect a partitioned host.
    #[command(after_help = "Example:\n  pgha lab heal etcd3")]
    Heal {
        /// The host.
        host: String,
    },
    /// Remove every machine, mount, namespace, veth and the bridge.
    #[command(
        after_help = "Examples:\n  pgha lab down\n  pgha lab down --purge   # also the cached base images and lab key"
    )]
    Down {
        /// Also delete the cached base images and the lab key pair.
        #[arg(long)]
        purge: bool,
    },
}

#[allow(clippy::print_stderr)]
fn progress(line: &str) {
    eprintln!("{line}");
}

/// Runs a lab subcommand.
pub fn run(args: LabArgs) -> Result<ExitCode> {
    let paths = LabPaths::from_env();
    match args.command {
        LabCommand::Up {
            release,
            subnet,
            mirror,
            inventory,
            login,
            from,
        } => {
            let opts = UpOptions {
                release: release.as_deref().map(str::parse::<Release>).transpose()?,
                subnet: subnet.as_deref().map(Subnet::parse_lab).transpose()?,
                mirror,
                inventory,
                login: if login == "pgha" {
                    Login::PghaWithSudo
                } else {
                    Login::Root
                },
                from,
            };
            let r = match lab::ops::up(&paths, &opts, &progress) {
                Ok(r) => r,
                // A bad --from inventory is invalid input (exit 3), as with `pgha validate`.
                Err(e @ (lab::LabError::Inventory(_) | lab::LabError::HostNames(_))) => {
                    super::report::error(&e);
                    return Ok(ExitCode::from(super::report::exit::INVALID_INPUT));
                }
                Err(e) => return Err(e.into()),
            };
            let what = if r.booted.is_empty() && r.removed.is_empty() && r.changed.is_empty() && !r.built_base {
                format!("lab: up, {} hosts, nothing changed", r.hosts)
            } else {
                format!(
                    "lab: up, {} hosts ({} booted, {} removed, {} other changes)",
                    r.hosts,
                    r.booted.len(),
                    r.removed.len(),
                    r.changed.len()
                )
            };
            progress(&format!(
                "{what}; inventory {} ({:.1} s)",
                r.inventory.display(),
                r.elapsed.as_secs_f64()
            ));
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Status { json } => {
            let hosts = lab::ops::status(&paths)?;
            print_out(&if json {
                serde_json::to_string_pretty(&hosts)? + "\n"
            } else {
                status_table(&hosts)
            });
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Ssh { user, host, command } => {
            let tty = command.is_empty() && std::io::stdin().is_terminal();
            let status = lab::ops::ssh(&paths, &host, &user, &command, tty)?;
            Ok(ExitCode::from(
                status.code().map_or(255, |c| u8::try_from(c).unwrap_or(255)),
            ))
        }
        LabCommand::Stop { host } => {
            let was = lab::ops::stop(&paths, &host)?;
            progress(&format!(
                "lab: {host} {}",
                if was { "powered off" } else { "was not running" }
            ));
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Start { host } => {
            let started = lab::ops::start(&paths, &host, &progress)?;
            progress(&format!(
                "lab: {host} {}",
                if started { "booted" } else { "was already running" }
            ));
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Partition { host } => {
            lab::ops::partition(&paths, &host)?;
            progress(&format!("lab: {host} cut off the lab network"));
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Heal { host } => {
            lab::ops::heal(&paths, &host)?;
            progress(&format!("lab: {host} back on the lab network"));
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Down { purge } => {
            lab::ops::down(&paths, purge, &progress)?;
            progress("lab: down, nothing left");
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[allow(clippy::print_stdout)]
fn print_out(s: &str) {
    print!("{s}");
}

fn status_table(hosts: &[lab::HostStatus]) -> String {
    let mut s = format!(
        "{:<12} {:<12} {:<15} {:>9} {:<4} {:>6} {:>9}\n",
        "HOST", "STATE", "ADDRESS", "UPTIME", "SSH", "PROCS", "MEMORY"
    );
    for h in hosts {
        let up = h
            .uptime_secs
            .map_or("-".to_string(), |u| format!("{}m{:02}s", u / 60, u % 60));
        let mem = if h.memory_kib == 0 {
            "-".to_string()
        } else {
            format!("{} MiB", h.memory_kib / 1024)
        };
        s.push_str(&format!(
            "{:<12} {:<12} {:<15} {:>9} {:<4} {:>6} {:>9}\n",
            h.name,
            h.state,
            h.address.to_string(),
            up,
            if h.ssh { "yes" } else { "no" },
            h.processes,
            mem
        ));
    }
    let total: u64 = hosts.iter().map(|h| h.memory_kib).sum();
    s.push_str(&format!("total memory of the machines (PSS): {} MiB\n", total / 1024));
    s
}
