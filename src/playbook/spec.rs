//! The arguments of each module as written in a playbook: plain data, strictly deserialized
//! (unknown keys refused). String fields may hold `{{ … }}` expressions, expanded per host by the
//! engine before planning.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

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

/// `package:` install Debian packages that are missing (apt, offline-capable).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageArgs {
    /// Package names.
    pub names: Vec<String>,
}

/// `file:` a file with exact content, owner, group and mode. Without `content`, the content
/// (and owner, group, mode) come from pgha's rendered files for that path on that host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileArgs {
    /// Absolute path on the host.
    pub path: String,
    /// Inline content.
    pub content: Option<String>,
    /// Owner (default root).
    pub owner: Option<String>,
    /// Group (default root).
    pub group: Option<String>,
    /// Mode (default "0644").
    pub mode: Option<Mode>,
    /// Never show the content in diffs.
    pub secret: Option<bool>,
    /// Check the new file before it replaces the old one: an argv where `{}` is the new file,
    /// e.g. `[haproxy, -c, -f, "{}"]`.
    pub validate: Option<Vec<String>>,
}

/// `directory:` a directory with owner, group and mode (parents must exist).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryArgs {
    /// Absolute path.
    pub path: String,
    /// Owner (default root).
    pub owner: Option<String>,
    /// Group (default root).
    pub group: Option<String>,
    /// Mode (default "0755").
    pub mode: Option<Mode>,
}

/// What a service should be doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// Running (started if not).
    Started,
    /// Not running.
    Stopped,
    /// Restart (in handlers; as a task it always restarts).
    Restarted,
    /// Reload (in handlers; as a task it always reloads).
    Reloaded,
}

/// `service:` a systemd unit's state and whether it starts at boot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceArgs {
    /// Unit name (`.service` added when no suffix is given).
    pub name: String,
    /// Wanted state.
    pub state: Option<ServiceState>,
    /// Start at boot.
    pub enabled: Option<bool>,
}

/// `command:` a command guarded so that it runs only when needed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandArgs {
    /// The command as argv.
    pub argv: Option<Vec<String>>,
    /// Or a POSIX sh script.
    pub sh: Option<String>,
    /// Skip when this path exists.
    pub creates: Option<String>,
    /// Skip when this sh snippet exits 0.
    pub unless: Option<String>,
    /// Seconds before giving up (default 300).
    pub timeout_s: Option<u64>,
}

/// `wait_for:` wait until a port listens, an HTTPS endpoint answers, or a command succeeds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitForArgs {
    /// A TCP port that must be listening on the host.
    pub port: Option<String>,
    /// A URL fetched with curl on the host.
    pub url: Option<String>,
    /// Expected HTTP status (default 200).
    pub status: Option<u16>,
    /// CA bundle for the URL.
    pub ca: Option<String>,
    /// Client certificate for the URL.
    pub cert: Option<String>,
    /// Client key for the URL.
    pub key: Option<String>,
    /// Or a sh snippet that must exit 0.
    pub sh: Option<String>,
    /// Seconds before giving up (default 60).
    pub timeout_s: Option<u64>,
    /// Only wait when an earlier task of the play changed something on this host.
    pub if_changed: Option<bool>,
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
