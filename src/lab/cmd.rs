//! Running external programs from argv (never a shell string): capture output, turn failure into
//! a [`LabError`] that shows the command and the end of its stderr. The only place in the lab
//! that builds a `std::process::Command`.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use super::error::{LabError, Result};

/// Directories searched after PATH: root's tools live in sbin, which a non-login PATH may lack.
const SYSTEM_DIRS: [&str; 4] = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// PATH plus [`SYSTEM_DIRS`], for finding programs and for the programs the lab runs (debootstrap
/// itself runs chroot, mount...).
fn search_path() -> std::ffi::OsString {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain(SYSTEM_DIRS.iter().map(PathBuf::from))
        .collect();
    std::env::join_paths(dirs).unwrap_or(path)
}

/// The full path of `program` if it is an executable in the search path.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&search_path())
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
}

/// Builds a command from a program (found in PATH or the system directories) and its arguments.
// The lab is one of the two layers allowed to start processes (STYLE.md, Layout); clippy.toml
// bans Command::new elsewhere.
#[allow(clippy::disallowed_methods)]
pub fn command<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Command {
    let mut cmd = Command::new(which(program).unwrap_or_else(|| PathBuf::from(program)));
    cmd.args(args).env("PATH", search_path());
    cmd
}

/// A printable form of a command line, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command to completion with stdin closed, capturing its output.
pub fn output(mut cmd: Command) -> Result<Output> {
    cmd.stdin(Stdio::null());
    cmd.output().map_err(|source| LabError::Spawn {
        command: describe(&cmd),
        source,
    })
}

/// Runs a command and fails unless it exits 0; returns its stdout.
pub fn run(cmd: Command) -> Result<String> {
    let text = describe(&cmd);
    let out = output(cmd)?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(failed(text, &out))
}

/// Runs `program args...` and fails unless it exits 0; returns its stdout.
pub fn run_args<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Result<String> {
    run(command(program, args))
}

/// Builds the error for a command that exited non-zero.
pub fn failed(command: String, out: &Output) -> LabError {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let tail = lines[lines.len().saturating_sub(15)..].join("\n");
    LabError::CommandFailed {
        command,
        status: out.status.to_string(),
        stderr: tail,
    }
}

/// Whether `program` is an executable file in PATH (or in the system directories root uses).
pub fn in_path(program: &str) -> bool {
    which(program).is_some()
}

fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
