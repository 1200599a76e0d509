//! The only place pgha prints. Results go to stdout, diagnostics and progress to stderr, so
//! `--json` output on stdout stays machine-readable. Output reads correctly without colour.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    reason = "the one printer: every line pgha shows goes through here"
)]

use std::io::Write;

use crate::inventory::{Diagnostic, LoadError, Severity};
use crate::ops::OpsError;
use crate::ops::error::ErrorKind;

/// Exit codes: documented in `pgha --help` and the README.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The operation failed (a host, a check, a file).
    pub const FAILED: u8 = 1;
    /// Bad command line (clap's own code).
    pub const USAGE: u8 = 2;
    /// The inventory (or another input file) is invalid or unreadable.
    pub const INVALID_INPUT: u8 = 3;
    /// Interrupted (Ctrl-C); re-run to converge.
    pub const INTERRUPTED: u8 = 130;
}

/// The one mapping from an operation's error to the exit code.
pub fn exit_code(e: &OpsError) -> u8 {
    match e.kind() {
        ErrorKind::Failed => exit::FAILED,
        ErrorKind::Usage => exit::USAGE,
        ErrorKind::InvalidInput => exit::INVALID_INPUT,
        ErrorKind::Interrupted => exit::INTERRUPTED,
    }
}

/// Prints `e` (each detail of a list on its own line, then the summary) and returns its exit
/// code.
pub fn fail(e: &OpsError) -> u8 {
    show(e);
    exit_code(e)
}

/// [`fail`] for a command with a `--json` final line: with `json`, also prints
/// `{"event": event, "ok": false, "exit_code", "error"}` so scripts see how it ended.
pub fn fail_event(event: &str, json: bool, e: &OpsError) -> u8 {
    let code = fail(e);
    if json {
        self::json(&serde_json::json!({"event": event, "ok": false, "exit_code": code, "error": e.to_string()}));
    }
    code
}

/// The end of a destructive command run without `--yes` (its plan printed): says so, exit 2.
pub fn nothing_done_without_yes(verb: &str) -> u8 {
    info(format!("{verb}: nothing done; re-run with --yes to do it"));
    exit::USAGE
}

/// Prints an operation's error: lists one line per item, then the summary as information;
/// nothing for what was reported as it happened (a failed host's recap).
pub fn show(e: &OpsError) {
    match e {
        OpsError::Inventory(LoadError::Invalid { errors, warnings }) => {
            errors.iter().chain(warnings).for_each(diagnostic);
        }
        OpsError::Unreachable { errors, .. } => {
            for err in errors {
                error(err);
            }
            info(e.to_string());
        }
        OpsError::Preflight { problems } => {
            for p in problems {
                error(p);
            }
            info(e.to_string());
        }
        OpsError::PhaseNotApplied { source, .. } => {
            show(source);
            info(e.to_string());
        }
        OpsError::Endpoints(list) => {
            for p in list {
                error(p);
            }
        }
        e if e.already_reported() => {}
        e => error(e),
    }
}

/// Prints a line of results to stdout.
pub fn out(line: impl AsRef<str>) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{}", line.as_ref());
}

/// Prints a JSON value to stdout.
pub fn json(value: &serde_json::Value) {
    out(serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into()));
}

/// Whether stderr is a terminal (progress bars are drawn there).
pub fn stderr_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

/// Prints an informational line to stderr.
pub fn info(line: impl AsRef<str>) {
    let _ = writeln!(std::io::stderr().lock(), "{}", line.as_ref());
}

/// Prints an error to stderr, prefixed `error: `.
pub fn error(message: impl std::fmt::Display) {
    let _ = writeln!(std::io::stderr().lock(), "error: {message}");
}

/// Prints a diagnostic to stderr with its severity.
pub fn diagnostic(d: &Diagnostic) {
    let label = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let _ = writeln!(std::io::stderr().lock(), "{label}: {d}");
}

/// Formats rows as an aligned plain-text table (first row is the header).
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut s = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}
