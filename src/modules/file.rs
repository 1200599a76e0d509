//! `file`: exact content, owner, group and mode; compares sha256 from facts, writes atomically
//! (temp file, fsync, rename) only when something differs.

use super::Mode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::facts::Facts;
use crate::plan::{Change, Plan};
use crate::transport::{self, FileKind, Transport};

use super::{Action, Applied, Managed, ModuleError, Rendered};

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

/// The wanted file: inline content, or pgha's rendered file for that path.
fn wanted(a: &FileArgs, rendered: &Rendered) -> Result<Managed, ModuleError> {
    match &a.content {
        Some(c) => Ok(Managed {
            content: c.as_bytes().to_vec(),
            owner: a.owner.clone().unwrap_or_else(|| "root".into()),
            group: a.group.clone().unwrap_or_else(|| "root".into()),
            mode: a.mode.map(|m| m.0).unwrap_or(0o644),
            secret: a.secret.unwrap_or(false),
            unit: None,
        }),
        None => {
            let mut m = rendered.get(&a.path).cloned().ok_or_else(|| {
                ModuleError::Invalid(format!(
                    "pgha renders no file at {} for this host (and the task gives no `content`)",
                    a.path
                ))
            })?;
            if let Some(o) = &a.owner {
                m.owner = o.clone();
            }
            if let Some(g) = &a.group {
                m.group = g.clone();
            }
            if let Some(mode) = a.mode {
                m.mode = mode.0;
            }
            Ok(m)
        }
    }
}

pub(super) fn plan(a: &FileArgs, facts: &Facts, rendered: &Rendered) -> Result<Plan<Action>, ModuleError> {
    let w = wanted(a, rendered)?;
    let sha = hex::encode(Sha256::digest(&w.content));
    let summary = match facts.file(&a.path) {
        FileKind::File {
            sha256,
            mode,
            owner,
            group,
        } => {
            let mut diffs = Vec::new();
            if *sha256 != sha {
                diffs.push("content".to_string());
            }
            if *mode != w.mode {
                diffs.push(format!("mode {mode:04o} → {:04o}", w.mode));
            }
            if *owner != w.owner || *group != w.group {
                diffs.push(format!("owner {owner}:{group} → {}:{}", w.owner, w.group));
            }
            if diffs.is_empty() {
                return Ok(Plan::Satisfied {
                    why: format!("{} up to date", a.path),
                });
            }
            format!("update {} ({})", a.path, diffs.join(", "))
        }
        FileKind::Missing => format!(
            "create {} ({} bytes, {}:{} {:04o})",
            a.path,
            w.content.len(),
            w.owner,
            w.group,
            w.mode
        ),
        FileKind::Dir { .. } | FileKind::Other => {
            return Err(ModuleError::Invalid(format!(
                "{} exists and is not a regular file; pgha will not replace it",
                a.path
            )));
        }
    };
    Ok(Plan::Change(Change {
        summary,
        diff: None,
        action: Action::Write {
            path: a.path.clone(),
            content: w.content,
            owner: w.owner,
            group: w.group,
            mode: w.mode,
            secret: w.secret,
            validate: a.validate.clone().unwrap_or_default(),
        },
    }))
}

pub(super) async fn apply(
    path: &str,
    content: &[u8],
    owner: &str,
    group: &str,
    mode: u32,
    validate: &[String],
    t: &dyn Transport,
) -> Result<Applied, ModuleError> {
    transport::install_checked(t, path, content, owner, group, mode, validate).await?;
    let kind = FileKind::File {
        sha256: hex::encode(Sha256::digest(content)),
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
