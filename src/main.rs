//! The `pgha` binary: parse arguments, run, map the outcome to an exit code.
//! Nothing else belongs here; see `pgha::cli`.

fn main() -> std::process::ExitCode {
    pgha::cli::run()
}
