//! Command-line interface: clap types and dispatch. Only this layer prints.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod lab;

/// pgha: a PostgreSQL high-availability cluster over SSH.
#[derive(Debug, Parser)]
#[command(name = "pgha", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check an inventory file.
    Validate {
        /// The inventory file.
        inventory: std::path::PathBuf,
    },
    /// Debian lab machines on this host (systemd-nspawn) for rehearsals and CI.
    Lab(lab::LabArgs),
}

/// Parses arguments, runs the subcommand, returns the exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { .. } => ExitCode::SUCCESS,
        Command::Lab(args) => lab::run(args).unwrap_or_else(|e| {
            report_error(&e);
            ExitCode::FAILURE
        }),
    }
}

/// Prints an error and its causes to stderr.
#[allow(clippy::print_stderr)]
fn report_error(e: &anyhow::Error) {
    eprintln!("error: {e:#}");
}
