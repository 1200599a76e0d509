//! Injecting and undoing a drill's [`Action`]s. Lab actions call `crate::lab::ops` as a library
//! (they block: run on the blocking pool); service actions run `systemctl` over SSH, each
//! guarded by a dead-man timer on the host (`systemd-run --on-active`) that starts the service
//! again by itself if pgha dies before undoing it.

use std::time::Duration;

use super::cluster::Hosts;
use super::plan::Action;
use super::{DrillError, Progress, RunId};
use crate::lab::LabPaths;
use crate::transport::Cmd;

/// The dead-man timer's delay: a service stopped by a drill starts again after this even if
/// pgha never comes back.
pub const DEADMAN_S: u64 = 600;

/// How long `systemctl start`/`stop`/`kill` may take.
const SERVICE_TIMEOUT: Duration = Duration::from_secs(120);

/// What faults need to act.
pub struct Faulter<'a> {
    /// SSH connections.
    pub hosts: &'a Hosts,
    /// The lab, when the inventory is the lab.
    pub lab: Option<&'a LabPaths>,
    /// The drill (names the dead-man timers).
    pub run: &'a RunId,
    /// Progress lines (the lab's own, while a machine boots).
    pub progress: Progress,
}

/// The dead-man timer's unit for `unit`.
pub fn deadman_unit(run: &RunId, unit: &str) -> String {
    format!("pgha-drill-{run}-undo-{unit}")
}

/// Arms the dead-man timer: `systemctl start <unit>` in [`DEADMAN_S`] seconds.
pub fn arm_cmd(run: &RunId, unit: &str) -> Cmd {
    Cmd::new("systemd-run")
        .arg(format!("--unit={}", deadman_unit(run, unit)))
        .args(["--quiet", "--collect"])
        .arg(format!("--on-active={DEADMAN_S}"))
        .arg("--timer-property=AccuracySec=1s")
        .args(["systemctl", "start", unit])
}

/// Disarms it (no error when it is gone).
pub fn disarm_cmd(run: &RunId, unit: &str) -> Cmd {
    Cmd::script(
        "systemctl stop \"$1.timer\" 2>/dev/null; true",
        [deadman_unit(run, unit)],
    )
}

/// The command that injects a service action.
pub fn inject_cmd(action: &Action) -> Option<Cmd> {
    match action {
        Action::KillService { unit, .. } => Some(
            Cmd::new("systemctl")
                .args(["kill", "--kill-whom=all", "--signal=SIGKILL"])
                .arg(*unit),
        ),
        Action::StopService { unit, .. } => Some(Cmd::new("systemctl").arg("stop").arg(*unit)),
        _ => None,
    }
}

/// The command that undoes a service action.
pub fn undo_cmd(action: &Action) -> Option<Cmd> {
    match action {
        Action::KillService { unit, .. } | Action::StopService { unit, .. } => {
            Some(Cmd::new("systemctl").arg("start").arg(*unit))
        }
        _ => None,
    }
}

fn lab_error(action: &Action, what: &str, e: impl std::fmt::Display) -> DrillError {
    DrillError::Step {
        step: format!("{what} ({})", action.host()),
        detail: e.to_string(),
    }
}

impl Faulter<'_> {
    async fn lab_op(&self, action: &Action, undo: bool) -> Result<(), DrillError> {
        let paths = self.lab.cloned().ok_or_else(|| DrillError::Step {
            step: action.describe(),
            detail: "no lab on this machine".into(),
        })?;
        let progress = self.progress.clone();
        let act = action.clone();
        let what = if undo {
            action.describe_undo()
        } else {
            action.describe()
        };
        let joined = tokio::task::spawn_blocking(move || {
            let say = move |line: &str| progress(line);
            match (&act, undo) {
                (Action::CrashLabHost { lab_name, .. }, false) => crate::lab::ops::stop(&paths, lab_name).map(|_| ()),
                (Action::CrashLabHost { lab_name, .. }, true) => {
                    crate::lab::ops::start(&paths, lab_name, &say).map(|_| ())
                }
                (Action::PartitionLabHost { lab_name, .. }, false) => crate::lab::ops::partition(&paths, lab_name),
                (Action::PartitionLabHost { lab_name, .. }, true) => crate::lab::ops::heal(&paths, lab_name),
                _ => Ok(()),
            }
        })
        .await;
        match joined {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(lab_error(action, &what, e)),
            Err(e) => Err(lab_error(action, &what, e)),
        }
    }

    /// Prepares `action` before any fault: arms the dead-man timer of a service action.
    pub async fn arm(&self, action: &Action) -> Result<(), DrillError> {
        match action {
            Action::KillService { host, unit } | Action::StopService { host, unit } => self
                .hosts
                .run_ok(host, &arm_cmd(self.run, unit), SERVICE_TIMEOUT)
                .await
                .map(|_| ()),
            _ => Ok(()),
        }
    }

    /// Injects `action`.
    pub async fn inject(&self, action: &Action) -> Result<(), DrillError> {
        match inject_cmd(action) {
            Some(cmd) => self
                .hosts
                .run_ok(action.host(), &cmd, SERVICE_TIMEOUT)
                .await
                .map(|_| ()),
            None => self.lab_op(action, false).await,
        }
    }

    /// Undoes `action`, then disarms its dead-man timer; drops the SSH connection of a host
    /// that was down or cut off, so the next command opens a fresh one.
    pub async fn undo(&self, action: &Action) -> Result<(), DrillError> {
        let result = match undo_cmd(action) {
            Some(cmd) => self
                .hosts
                .run_ok(action.host(), &cmd, SERVICE_TIMEOUT)
                .await
                .map(|_| ()),
            None => {
                self.hosts.forget(action.host()).await;
                self.lab_op(action, true).await
            }
        };
        if result.is_ok() {
            self.disarm(action).await;
        }
        if action.host_unreachable() {
            self.hosts.forget(action.host()).await;
        }
        result
    }

    /// Disarms the dead-man timer of `action` (best effort: it only starts a running service).
    pub async fn disarm(&self, action: &Action) {
        if let Action::KillService { host, unit } | Action::StopService { host, unit } = action {
            let _ = self
                .hosts
                .exec(host, &disarm_cmd(self.run, unit), Duration::from_secs(20))
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_faults_are_systemctl_commands_with_a_dead_man() {
        let run = RunId::new("drill-1").expect("valid");
        let kill = Action::KillService {
            host: "node1".into(),
            unit: "patroni",
        };
        assert_eq!(
            inject_cmd(&kill).map(|c| c.command_line(false)),
            Some("systemctl kill --kill-whom=all --signal=SIGKILL patroni".into())
        );
        assert_eq!(
            undo_cmd(&kill).map(|c| c.command_line(false)),
            Some("systemctl start patroni".into())
        );
        let stop = Action::StopService {
            host: "etcd1".into(),
            unit: "etcd",
        };
        assert_eq!(
            inject_cmd(&stop).map(|c| c.command_line(false)),
            Some("systemctl stop etcd".into())
        );
        assert_eq!(
            arm_cmd(&run, "etcd").command_line(true),
            "sudo -n -- systemd-run --unit=pgha-drill-drill-1-undo-etcd --quiet --collect --on-active=600 --timer-property=AccuracySec=1s systemctl start etcd"
        );
        assert!(
            disarm_cmd(&run, "etcd")
                .command_line(false)
                .contains("pgha-drill-drill-1-undo-etcd")
        );
        let crash = Action::CrashLabHost {
            host: "node1".into(),
            lab_name: "node1".into(),
        };
        assert_eq!(inject_cmd(&crash), None);
        assert_eq!(undo_cmd(&crash), None);
    }
}
