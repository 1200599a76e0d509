//! `directory`: a directory with owner, group and mode (its parent must exist).

use super::Mode;
use crate::facts::Facts;
use crate::plan::{Change, Plan};
use crate::transport::{Cmd, FileKind, Transport};
use serde::{Deserialize, Serialize};

use super::{Action, Applied, ModuleError};

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

pub(super) fn plan(a: &DirectoryArgs, facts: &Facts) -> Plan<Action> {
    let owner = a.owner.clone().unwrap_or_else(|| "root".into());
    let group = a.group.clone().unwrap_or_else(|| "root".into());
    let mode = a.mode.map(|m| m.0).unwrap_or(0o755);
    let summary = match facts.file(&a.path) {
        FileKind::Dir {
            mode: m,
            owner: o,
            group: g,
        } if *m == mode && *o == owner && *g == group => {
            return Plan::Satisfied {
                why: format!("{} exists", a.path),
            };
        }
        FileKind::Dir {
            mode: m,
            owner: o,
            group: g,
        } => format!("fix {} ({o}:{g} {m:04o} → {owner}:{group} {mode:04o})", a.path),
        FileKind::Missing => format!("create {} ({owner}:{group} {mode:04o})", a.path),
        _ => format!("replace {} (not a directory)", a.path),
    };
    Plan::Change(Change {
        summary,
        diff: None,
        action: Action::Directory {
            path: a.path.clone(),
            owner,
            group,
            mode,
        },
    })
}

pub(super) async fn apply(
    path: &str,
    owner: &str,
    group: &str,
    mode: u32,
    t: &dyn Transport,
) -> Result<Applied, ModuleError> {
    // Only below directories only root can write, and never through a symlink: chown and chmod
    // follow one (transport::remote::ROOT_ONLY).
    let body = format!(
        "set -e\n{}\nparent=$(readlink -f -- \"$(dirname -- \"$1\")\")\nroot_only \"$parent\" \"$1\"\n[ -L \"$1\" ] && {{ echo \"pgha: refusing: $1 is a symlink\" >&2; exit 4; }}\n[ -d \"$1\" ] || mkdir -m \"$4\" -- \"$1\"\nchown -- \"$2:$3\" \"$1\"\nchmod -- \"$4\" \"$1\"",
        crate::transport::remote::ROOT_ONLY
    );
    let cmd = Cmd::script(
        &body,
        [
            path.to_string(),
            owner.to_string(),
            group.to_string(),
            format!("{mode:o}"),
        ],
    );
    super::run(t, &cmd, crate::transport::DEFAULT_TIMEOUT).await?;
    let kind = FileKind::Dir {
        mode,
        owner: owner.into(),
        group: group.into(),
    };
    Ok(Applied {
        changed: true,
        file_update: Some((path.to_string(), kind)),
        stale: false,
    })
}
