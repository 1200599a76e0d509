//! Modules: the closed set of things a task can do. Each turns its arguments and the host's
//! facts into a [`Plan`] without I/O (`plan`), and carries out only a planned [`Action`]
//! (`apply`), so a check run and a real run compute the same thing.
//!
//! `package` (apt, missing only) · `file` (sha256 compare, atomic write, owner, mode) ·
//! `directory` · `service` (enabled, started; restart or reload on demand) · `command` (guarded
//! by `creates` / `unless`) · `wait_for` (TCP port, HTTPS status with a client certificate, or
//! a command), each in its own file — with its argument type as written in a playbook
//! (strictly deserialized, unknown keys refused; `playbook` parses into these, modules never
//! import `playbook`).

mod command;
mod directory;
mod file;
mod package;
pub mod rule;
pub mod service;
mod wait_for;

pub use command::CommandArgs;
pub use directory::DirectoryArgs;
pub use file::FileArgs;
pub use package::PackageArgs;
pub use rule::{Rule, RuleCheck};
pub use service::{ServiceArgs, ServiceState};
pub use wait_for::WaitForArgs;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::facts::{Facts, Query};
use crate::plan::Plan;
use crate::transport::{Cmd, FileKind, Transport, TransportError};

/// A file mode written as an octal string, e.g. "0640" (a YAML integer 0640 would be read as
/// decimal 640 by YAML 1.2, so integers are refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode(pub u32);

impl Serialize for Mode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:04o}", self.0))
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Mode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an octal mode in quotes, e.g. \"0640\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Mode, E> {
                let ok = !v.is_empty() && v.len() <= 4 && v.chars().all(|c| ('0'..='7').contains(&c));
                match u32::from_str_radix(v, 8) {
                    Ok(m) if ok => Ok(Mode(m)),
                    _ => Err(E::custom(format!(
                        "expected an octal mode such as \"0640\", found \"{v}\""
                    ))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Mode, E> {
                Err(E::custom(format!(
                    "write the mode as a quoted octal string (\"0{v}\"), not the number {v}"
                )))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Mode, E> {
                Err(E::custom(format!(
                    "write the mode as a quoted octal string, not the number {v}"
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Mode, E> {
                Err(E::custom(format!(
                    "write the mode as a quoted octal string, not the number {v}"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// A task's module and its arguments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModuleSpec {
    /// apt packages.
    Package(PackageArgs),
    /// A file.
    File(FileArgs),
    /// A directory.
    Directory(DirectoryArgs),
    /// A systemd unit.
    Service(ServiceArgs),
    /// A guarded command.
    Command(CommandArgs),
    /// A wait.
    WaitFor(WaitForArgs),
}

impl ModuleSpec {
    /// The module's name as written in playbooks.
    pub fn name(&self) -> &'static str {
        match self {
            ModuleSpec::Package(_) => "package",
            ModuleSpec::File(_) => "file",
            ModuleSpec::Directory(_) => "directory",
            ModuleSpec::Service(_) => "service",
            ModuleSpec::Command(_) => "command",
            ModuleSpec::WaitFor(_) => "wait_for",
        }
    }
}

/// A file pgha renders for a host (owner, group, mode decided by `render`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Managed {
    /// Bytes to install.
    pub content: Vec<u8>,
    /// Owner.
    pub owner: String,
    /// Group.
    pub group: String,
    /// Mode.
    pub mode: u32,
    /// Keys and passwords: never shown in diffs.
    pub secret: bool,
    /// The systemd unit that must react when it changes (render decides): the engine runs the
    /// play's handlers that `handles:` it.
    pub unit: Option<String>,
}

/// Rendered files of one host, by absolute path.
pub type Rendered = BTreeMap<String, Managed>;

/// What apply will do: built by `plan`, never by hand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// apt-get install these packages.
    Install(Vec<String>),
    /// Write a file atomically.
    Write {
        /// Path.
        path: String,
        /// Content.
        content: Vec<u8>,
        /// Owner.
        owner: String,
        /// Group.
        group: String,
        /// Mode.
        mode: u32,
        /// Secret (for diffs).
        secret: bool,
        /// Validation argv (`{}` = the new file), empty for none.
        validate: Vec<String>,
    },
    /// Create a directory or fix its owner and mode.
    Directory {
        /// Path.
        path: String,
        /// Owner.
        owner: String,
        /// Group.
        group: String,
        /// Mode.
        mode: u32,
    },
    /// systemctl calls, in this order.
    Systemctl(Vec<Vec<String>>),
    /// Run a command.
    Run {
        /// The command.
        cmd: Cmd,
        /// Its timeout.
        timeout: Duration,
    },
    /// Wait until a rule holds on what a fetch prints (it loops here, one fetch a second).
    WaitRule {
        /// One fetch.
        fetch: Cmd,
        /// The rule on its output.
        judge: rule::Judge,
        /// What is awaited (for messages).
        what: String,
        /// Overall timeout.
        timeout: Duration,
    },
    /// Wait until a check command succeeds (it loops on the host).
    Wait {
        /// The looping check.
        cmd: Cmd,
        /// What is awaited (for messages).
        what: String,
        /// Overall timeout.
        timeout: Duration,
    },
}

/// A module's failure, naming what failed.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The task cannot be planned (e.g. a rendered file is missing).
    #[error("{0}")]
    Invalid(String),
    /// A command failed.
    #[error("`{cmd}` exited with {code}{}", if stderr.is_empty() { String::new() } else { format!("; stderr:\n{stderr}") })]
    Command {
        /// Command summary.
        cmd: String,
        /// Exit code text.
        code: String,
        /// Tail of stderr.
        stderr: String,
    },
    /// A wait timed out.
    #[error("gave up waiting for {what} after {secs} s{}", if detail.is_empty() { String::new() } else { format!(": {detail}") })]
    WaitTimeout {
        /// What was awaited.
        what: String,
        /// Timeout.
        secs: u64,
        /// Last output.
        detail: String,
    },
}

/// What apply did to the host's facts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Whether anything changed.
    pub changed: bool,
    /// Facts the engine can update without asking the host again.
    pub file_update: Option<(String, FileKind)>,
    /// Facts are stale: re-gather before planning the next task.
    pub stale: bool,
}

pub use service::unit_name;

/// The read-only probe some modules need before planning (`command`'s `unless`), if any.
pub fn probe(spec: &ModuleSpec) -> Option<Cmd> {
    match spec {
        ModuleSpec::Command(a) => command::probe(a),
        _ => None,
    }
}

/// The read-only check of a task that the engine can run ahead, inside the one facts probe of a
/// host: `command`'s `unless`, and one pass of a `wait_for` that always waits (an `if_changed`
/// wait is skipped when nothing changed, so it needs none). Its exit status is what [`plan`]
/// takes as `probed`.
pub fn survey_check(spec: &ModuleSpec) -> Option<Cmd> {
    match spec {
        ModuleSpec::Command(a) => command::probe(a),
        ModuleSpec::WaitFor(a) if a.if_changed != Some(true) => Some(wait_for::check_once(a)),
        _ => None,
    }
}

/// Whether a [`survey_check`] that exited `passed` and printed `out` means the task's check
/// holds (a `wait_for` with a `rule` judges the output; every other check is its exit status).
pub fn verdict(spec: &ModuleSpec, rendered: &Rendered, passed: bool, out: &str) -> bool {
    match spec {
        ModuleSpec::WaitFor(a) => wait_for::verdict(a, rendered, passed, out),
        ModuleSpec::Command(a) => command::verdict(a, rendered, passed, out),
        _ => passed,
    }
}

/// The facts a task needs.
pub fn query(spec: &ModuleSpec) -> Query {
    let mut q = Query::default();
    match spec {
        ModuleSpec::Package(a) => q.packages.extend(a.names.iter().cloned()),
        ModuleSpec::File(a) => {
            q.files.insert(a.path.clone());
        }
        ModuleSpec::Directory(a) => {
            q.files.insert(a.path.clone());
        }
        ModuleSpec::Service(a) => {
            q.units.insert(service::unit_name(&a.name));
        }
        ModuleSpec::Command(a) => {
            if let Some(c) = &a.creates {
                q.files.insert(c.clone());
            }
        }
        ModuleSpec::WaitFor(_) => {}
    }
    q
}

/// Plans a task: no I/O. `probed` is whether [`probe`]'s command (or, run ahead, the
/// [`survey_check`]) exited 0, when it ran.
pub fn plan(
    spec: &ModuleSpec,
    facts: &Facts,
    rendered: &Rendered,
    probed: Option<bool>,
) -> Result<Plan<Action>, ModuleError> {
    match spec {
        ModuleSpec::Package(a) => Ok(package::plan(a, facts)),
        ModuleSpec::File(a) => file::plan(a, facts, rendered),
        ModuleSpec::Directory(a) => Ok(directory::plan(a, facts)),
        ModuleSpec::Service(a) => Ok(service::plan(a, facts)),
        ModuleSpec::Command(a) => Ok(command::plan(a, facts, probed)),
        ModuleSpec::WaitFor(a) => wait_for::plan(a, rendered, probed),
    }
}

/// Carries out a planned action.
pub async fn apply(action: &Action, t: &dyn Transport) -> Result<Applied, ModuleError> {
    match action {
        Action::Install(pkgs) => package::apply(pkgs, t).await,
        Action::Write {
            path,
            content,
            owner,
            group,
            mode,
            validate,
            ..
        } => file::apply(path, content, owner, group, *mode, validate, t).await,
        Action::Directory {
            path,
            owner,
            group,
            mode,
        } => directory::apply(path, owner, group, *mode, t).await,
        Action::Systemctl(calls) => service::apply(calls, t).await,
        Action::Run { cmd, timeout } => command::apply(cmd, *timeout, t).await,
        Action::Wait { cmd, what, timeout } => wait_for::apply(cmd, what, *timeout, t).await,
        Action::WaitRule {
            fetch,
            judge,
            what,
            timeout,
        } => wait_for::apply_rule(fetch, judge, what, *timeout, t).await,
    }
}

/// Runs `cmd`; a non-zero exit becomes [`ModuleError::Command`].
pub(crate) async fn run(
    t: &dyn Transport,
    cmd: &Cmd,
    timeout: Duration,
) -> Result<crate::transport::Output, ModuleError> {
    let out = t.exec(cmd, None, timeout).await?;
    if out.success() {
        Ok(out)
    } else {
        Err(ModuleError::Command {
            cmd: cmd.summary(),
            code: out.code.map(|c| c.to_string()).unwrap_or_else(|| "a signal".into()),
            stderr: out.stderr_tail(8),
        })
    }
}

#[cfg(test)]
mod tests;
