//! `service`: a systemd unit enabled or not, started or stopped; `restarted` / `reloaded`
//! always act (they are meant for handlers, which run only when notified).

use crate::facts::Facts;
use crate::plan::{Change, Plan};
use crate::transport::{Cmd, Transport};
use serde::{Deserialize, Serialize};

use super::{Action, Applied, ModuleError};

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

/// `patroni` → `patroni.service`; names with a suffix are kept.
pub fn unit_name(name: &str) -> String {
    if name.contains('.') {
        name.to_string()
    } else {
        format!("{name}.service")
    }
}

pub(super) fn plan(a: &ServiceArgs, facts: &Facts) -> Plan<Action> {
    let unit = unit_name(&a.name);
    let u = facts.unit(&unit);
    let mut calls: Vec<Vec<String>> = Vec::new();
    let mut what = Vec::new();
    if let Some(enabled) = a.enabled
        && enabled != u.is_enabled()
    {
        calls.push(vec![if enabled { "enable" } else { "disable" }.into(), unit.clone()]);
        what.push(if enabled { "enable" } else { "disable" });
    }
    match a.state {
        Some(ServiceState::Started) if !u.is_active() => {
            calls.push(vec!["start".into(), unit.clone()]);
            what.push("start");
        }
        Some(ServiceState::Stopped) if u.is_active() => {
            calls.push(vec!["stop".into(), unit.clone()]);
            what.push("stop");
        }
        Some(ServiceState::Restarted) => {
            calls.push(vec!["restart".into(), unit.clone()]);
            what.push("restart");
        }
        Some(ServiceState::Reloaded) => {
            calls.push(vec!["reload".into(), unit.clone()]);
            what.push("reload");
        }
        _ => {}
    }
    if calls.is_empty() {
        return Plan::Satisfied {
            why: format!(
                "{unit} is {} and {}",
                u.active,
                if u.enabled.is_empty() {
                    "not installed"
                } else {
                    &u.enabled
                }
            ),
        };
    }
    let note = if u.loaded {
        String::new()
    } else {
        " (unit not installed yet)".to_string()
    };
    Plan::Change(Change {
        summary: format!("{} {unit}{note}", what.join(" + ")),
        diff: None,
        action: Action::Systemctl(calls),
    })
}

pub(super) async fn apply(calls: &[Vec<String>], t: &dyn Transport) -> Result<Applied, ModuleError> {
    for call in calls {
        let cmd = Cmd::new("systemctl").args(call.iter().cloned());
        let out = t.exec(&cmd, None, std::time::Duration::from_secs(300)).await?;
        if !out.success() {
            let unit = call.last().cloned().unwrap_or_default();
            let status = t
                .exec(
                    &Cmd::new("journalctl").args(["-u", &unit, "-n", "15", "--no-pager", "-q"]),
                    None,
                    crate::transport::DEFAULT_TIMEOUT,
                )
                .await;
            let journal = status.map(|o| o.stdout_text()).unwrap_or_default();
            return Err(ModuleError::Command {
                cmd: cmd.summary(),
                code: out.code.map(|c| c.to_string()).unwrap_or_default(),
                stderr: format!("{}\n-- last journal lines of {unit}:\n{journal}", out.stderr_tail(4)),
            });
        }
    }
    Ok(Applied {
        changed: true,
        file_update: None,
        stale: true,
    })
}
