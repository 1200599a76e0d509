//! Transports: how pgha runs commands and installs files on a host. One trait, [`Transport`],
//! with an OpenSSH implementation (the default: one multiplexed master connection per host,
//! `~/.ssh/config`, agent, ProxyJump), a pure-Rust russh one, and a scripted [`fake::Fake`] for
//! unit tests. Only this module (and `lab`) starts processes.
//!
//! File operations (`install`, `stat`) are built once, on top of `exec`, as small POSIX shell
//! scripts (`remote.rs`), so every transport behaves the same.

pub mod cmd;
pub mod fake;
pub mod local;
pub mod openssh;
pub mod remote;
pub mod russh;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use cmd::Cmd;
pub use remote::{FileKind, FileState};

/// What a command produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// Exit code; `None` when the command was killed by a signal.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
}

impl Output {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Stdout as text (lossy).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The last `n` lines of stderr, for error messages.
    pub fn stderr_tail(&self, n: usize) -> String {
        let text = String::from_utf8_lossy(&self.stderr);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// Where and how to reach one host.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The inventory name (used in every message).
    pub name: String,
    /// Address or DNS name to dial.
    pub address: String,
    /// SSH port.
    pub port: u16,
    /// Login user.
    pub user: String,
    /// Private key file.
    pub key: Option<PathBuf>,
    /// known_hosts file; None: `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// Prefix commands with `sudo -n --` (set when the user is not root and `become` is on).
    pub become_: bool,
    /// Trust a host key seen for the first time (never a changed one).
    pub accept_new_host_keys: bool,
    /// Connection timeout.
    pub connect_timeout: Duration,
}

impl Endpoint {
    /// The endpoint of an inventory host.
    pub fn from_host(h: &crate::inventory::Host, accept_new_host_keys: bool) -> Self {
        Self {
            name: h.name.to_string(),
            address: h.address.to_string(),
            port: h.ssh.port.get(),
            user: h.ssh.user.clone(),
            key: h.ssh.key.as_deref().map(expand_home),
            known_hosts: h.ssh.known_hosts.as_deref().map(expand_home),
            become_: h.ssh.become_ && h.ssh.user != "root",
            accept_new_host_keys,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// `~/x` → `$HOME/x`.
pub fn expand_home(p: &std::path::Path) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => p.to_path_buf(),
    }
}

/// Why talking to a host failed. Every variant names the host.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// TCP or SSH handshake failed.
    #[error("{host}: cannot connect over SSH to {target}: {detail}\n\n  hint: {hint}")]
    Unreachable {
        /// Inventory name.
        host: String,
        /// user@address:port.
        target: String,
        /// What ssh said.
        detail: String,
        /// What to check.
        hint: String,
    },
    /// The host's key is unknown (strict checking) or changed.
    #[error("{host}: SSH host key {what} for {target}; refusing to connect\n\n  hint: {hint}")]
    HostKey {
        /// Inventory name.
        host: String,
        /// user@address:port.
        target: String,
        /// "not known" or "CHANGED".
        what: String,
        /// What to do.
        hint: String,
    },
    /// Authentication failed.
    #[error(
        "{host}: SSH authentication failed for {target}: {detail}\n\n  hint: check `ssh.user` and `ssh.key` in the inventory, and that the key is in the user's authorized_keys"
    )]
    Auth {
        /// Inventory name.
        host: String,
        /// user@address:port.
        target: String,
        /// Details.
        detail: String,
    },
    /// The command did not finish in time.
    #[error("{host}: `{cmd}` did not finish within {secs} s")]
    Timeout {
        /// Inventory name.
        host: String,
        /// Command summary.
        cmd: String,
        /// Timeout.
        secs: u64,
    },
    /// The channel broke.
    #[error("{host}: SSH session failed while running `{cmd}`: {detail}")]
    Session {
        /// Inventory name.
        host: String,
        /// Command summary.
        cmd: String,
        /// Details.
        detail: String,
    },
    /// A helper script's output was not understood.
    #[error("{host}: unexpected output from `{cmd}`: {detail}")]
    Protocol {
        /// Inventory name.
        host: String,
        /// Command summary.
        cmd: String,
        /// Details.
        detail: String,
    },
    /// A command exited non-zero where success was required.
    #[error("{host}: `{cmd}` exited with {code}{}", if stderr.is_empty() { String::new() } else { format!(":\n{stderr}") })]
    Failed {
        /// Inventory name.
        host: String,
        /// Command summary.
        cmd: String,
        /// Exit code text.
        code: String,
        /// Tail of stderr.
        stderr: String,
    },
}

/// Runs commands on one host. Implementations multiplex many commands over one connection and
/// bound how many run at once (sshd's MaxSessions defaults to 10).
#[async_trait::async_trait]
pub trait Transport: Send + Sync {
    /// The endpoint this transport talks to.
    fn endpoint(&self) -> &Endpoint;

    /// Runs `cmd` (with `sudo -n` when the endpoint needs it), feeding `stdin`, within `timeout`.
    async fn exec(&self, cmd: &Cmd, stdin: Option<&[u8]>, timeout: Duration) -> Result<Output, TransportError>;

    /// Closes the connection cleanly.
    async fn close(&self) -> Result<(), TransportError>;
}

/// A shared handle to a host's transport.
pub type Conn = Arc<dyn Transport>;

/// Default timeout of ordinary commands.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `cmd` and fails unless it exits 0.
pub async fn run_ok(t: &dyn Transport, cmd: &Cmd, timeout: Duration) -> Result<Output, TransportError> {
    let out = t.exec(cmd, None, timeout).await?;
    if out.success() {
        Ok(out)
    } else {
        Err(failed(t, cmd, &out))
    }
}

fn failed(t: &dyn Transport, cmd: &Cmd, out: &Output) -> TransportError {
    TransportError::Failed {
        host: t.endpoint().name.clone(),
        cmd: cmd.summary(),
        code: out.code.map(|c| c.to_string()).unwrap_or_else(|| "a signal".into()),
        stderr: out.stderr_tail(5),
    }
}

/// Installs `content` at `path` atomically with owner, group and mode.
pub async fn install(
    t: &dyn Transport,
    path: &str,
    content: &[u8],
    owner: &str,
    group: &str,
    mode: u32,
) -> Result<(), TransportError> {
    install_checked(t, path, content, owner, group, mode, &[]).await
}

/// [`install`], with the new file validated by `validate` (`{}` = the new file) before it
/// replaces the old one.
pub async fn install_checked(
    t: &dyn Transport,
    path: &str,
    content: &[u8],
    owner: &str,
    group: &str,
    mode: u32,
    validate: &[String],
) -> Result<(), TransportError> {
    let cmd = remote::install_script(path, owner, group, mode, validate);
    let out = t.exec(&cmd, Some(content), DEFAULT_TIMEOUT).await?;
    if out.success() {
        Ok(())
    } else {
        Err(failed(t, &cmd, &out))
    }
}

/// Hash, mode and owner of many paths, in one round trip.
pub async fn stat(t: &dyn Transport, paths: &[String]) -> Result<Vec<FileState>, TransportError> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let cmd = remote::stat_script(paths);
    let out = run_ok(t, &cmd, DEFAULT_TIMEOUT).await?;
    remote::parse_stat(&out.stdout_text()).ok_or_else(|| TransportError::Protocol {
        host: t.endpoint().name.clone(),
        cmd: cmd.summary(),
        detail: out.stdout_text().lines().next().unwrap_or("").to_string(),
    })
}

/// Which implementation to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// The system's OpenSSH client, one multiplexed master per host (honours ~/.ssh/config).
    #[default]
    Openssh,
    /// Pure-Rust SSH (no OpenSSH client needed); known_hosts and key file only.
    Russh,
}

/// Connects to `ep` with the chosen implementation.
pub async fn connect(kind: Kind, ep: Endpoint) -> Result<Conn, TransportError> {
    Ok(match kind {
        Kind::Openssh => Arc::new(openssh::OpensshTransport::connect(ep).await?),
        Kind::Russh => Arc::new(russh::RusshTransport::connect(ep).await?),
    })
}
