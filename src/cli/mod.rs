//! Command-line interface: clap types and dispatch. Only this layer prints.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

/// Parses arguments, runs the subcommand, returns the exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { .. } => ExitCode::SUCCESS,
    }
}
