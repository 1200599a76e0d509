//! The `pgha` binary: parse arguments, run, map the outcome to an exit code.
//! Nothing else belongs here; see `pgha::cli`.

#![deny(clippy::print_stdout, clippy::print_stderr, clippy::dbg_macro)]

fn main() -> std::process::ExitCode {
    pgha::cli::run()
}
