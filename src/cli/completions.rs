//! `pgha completions SHELL` and `pgha man`: the shell completion scripts (clap_complete) and
//! the man pages (clap_mangen, roff), generated from the clap definition the binary itself
//! parses with, so they cannot drift from it. The Debian package (`cargo deb`, see
//! `packaging/build-deb`) ships both. Nothing here touches an inventory or a host.

use std::path::PathBuf;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::report::{self, exit};

/// `pgha completions`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  pgha completions bash > /usr/share/bash-completion/completions/pgha\n  pgha completions zsh > /usr/share/zsh/vendor-completions/_pgha\n  pgha completions fish > /usr/share/fish/vendor_completions.d/pgha.fish"
)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// `pgha man`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  pgha man | man -l -\n  pgha man --dir target/man    # pgha.1 and one pgha-SUBCOMMAND.1 per subcommand"
)]
pub struct ManArgs {
    /// Write every page (pgha.1, pgha-deploy.1, …) into this directory instead of printing
    /// pgha.1 on stdout.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Prints the completion script for `args.shell`.
pub fn completions(args: &CompletionsArgs) -> u8 {
    let mut cmd = super::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "pgha", &mut script);
    report::out(String::from_utf8_lossy(&script).trim_end());
    exit::OK
}

/// Prints pgha.1, or writes every page into `--dir`.
pub fn man(args: &ManArgs) -> u8 {
    let cmd = super::Cli::command();
    match &args.dir {
        Some(dir) => {
            if let Err(e) = std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(cmd, dir)) {
                report::error(format!("{}: cannot write the man pages: {e}", dir.display()));
                return exit::FAILED;
            }
            report::info(format!("man pages written to {}", dir.display()));
            exit::OK
        }
        None => {
            let mut page = Vec::new();
            if let Err(e) = clap_mangen::Man::new(cmd).render(&mut page) {
                report::error(format!("cannot render the man page: {e}"));
                return exit::FAILED;
            }
            report::out(String::from_utf8_lossy(&page).trim_end());
            exit::OK
        }
    }
}
