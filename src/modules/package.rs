//! `package`: installs the Debian packages that are missing, non-interactively, keeping
//! existing configuration files. Works offline when apt's lists and cache are pre-filled; on a
//! host whose lists are stale, runs `apt-get update` once and retries.

use crate::facts::Facts;
use crate::plan::{Change, Plan};
use crate::transport::{Cmd, Transport};
use serde::{Deserialize, Serialize};

use super::{Action, Applied, ModuleError};

/// `package:` install Debian packages that are missing (apt, offline-capable).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageArgs {
    /// Package names.
    pub names: Vec<String>,
}

pub(super) fn plan(a: &PackageArgs, facts: &Facts) -> Plan<Action> {
    let missing: Vec<String> = a.names.iter().filter(|n| !facts.installed(n)).cloned().collect();
    if missing.is_empty() {
        let versions: Vec<String> = a
            .names
            .iter()
            .map(|n| {
                format!(
                    "{n} {}",
                    facts.packages.get(n).map(|p| p.version.as_str()).unwrap_or("?")
                )
            })
            .collect();
        return Plan::Satisfied {
            why: format!("installed: {}", versions.join(", ")),
        };
    }
    Plan::Change(Change {
        summary: format!("install {}", missing.join(" ")),
        diff: None,
        action: Action::Install(missing),
    })
}

fn install_cmd(pkgs: &[String]) -> Cmd {
    Cmd::new("env")
        .arg("DEBIAN_FRONTEND=noninteractive")
        .arg("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args([
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
        ])
        .args(pkgs.iter().cloned())
}

pub(super) async fn apply(pkgs: &[String], t: &dyn Transport) -> Result<Applied, ModuleError> {
    let timeout = std::time::Duration::from_secs(900);
    let first = t.exec(&install_cmd(pkgs), None, timeout).await?;
    if !first.success() {
        let err = String::from_utf8_lossy(&first.stderr);
        let stale = err.contains("Unable to locate package")
            || err.contains("has no installation candidate")
            || err.contains("404");
        if !stale {
            return Err(ModuleError::Command {
                cmd: install_cmd(pkgs).summary(),
                code: first.code.map(|c| c.to_string()).unwrap_or_default(),
                stderr: first.stderr_tail(8),
            });
        }
        super::run(t, &Cmd::new("apt-get").args(["update", "-q"]), timeout).await?;
        super::run(t, &install_cmd(pkgs), timeout).await?;
    }
    Ok(Applied {
        changed: true,
        file_update: None,
        stale: true,
    })
}
