//! Injecting and undoing a drill's [`Action`]s. Lab actions call `crate::lab::ops` as a library
//! (they block: run on the blocking pool); service actions run `systemctl` over SSH, each
//! guarded by a dead-man timer on the host (`systemd-run --on-active`) that starts the service
//! again by itself if pgha dies before undoing it.
//!
//! A killed service must stay down until the drill brings it back: Debian's `patroni.service`
//! has `Restart=on-failure`, so a bare `systemctl kill` is undone by systemd within a second and
//! Patroni takes its leader key back before the TTL expires (nothing fails over). The kill
//! therefore first adds a runtime drop-in (`/run/systemd/system/<unit>.d/`, gone at reboot)
//! with `Restart=no`, and checks on the host that the unit went down and stayed down with
//! `NRestarts` unchanged; if not, the drill fails at once saying the fault had no effect. The
//! undo (and the dead-man timer) removes the drop-in before starting the unit.

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

/// The runtime drop-in that keeps a killed unit from being restarted by systemd.
pub const HOLD_DROPIN: &str = "pgha-drill-hold.conf";

/// Removes the hold (if any) and starts the unit: the undo of a kill or a stop, and what the
/// dead-man timer runs. `$1` is the unit.
const START_SCRIPT: &str = r#"case "$1" in *.*) u=$1 ;; *) u=$1.service ;; esac
if [ -e "/run/systemd/system/$u.d/pgha-drill-hold.conf" ]; then
  rm -f "/run/systemd/system/$u.d/pgha-drill-hold.conf"
  rmdir "/run/systemd/system/$u.d" 2>/dev/null
  systemctl daemon-reload
fi
systemctl reset-failed "$u" 2>/dev/null
systemctl start "$u""#;

/// SIGKILLs every process of the unit with systemd's restart held off, then checks on the host
/// that it went down and stayed down (exit 3 and says why when it did not). `$1` is the unit.
const KILL_SCRIPT: &str = r#"case "$1" in *.*) u=$1 ;; *) u=$1.service ;; esac
d=/run/systemd/system/$u.d
mkdir -p "$d" || exit 1
printf '[Service]\nRestart=no\n' > "$d/pgha-drill-hold.conf" || exit 1
systemctl daemon-reload || exit 1
n0=$(systemctl show -p NRestarts --value "$u")
systemctl kill --kill-whom=all --signal=SIGKILL "$u" || exit 1
i=0
while :; do
  st=$(systemctl show -p ActiveState --value "$u")
  case "$st" in failed|inactive) break ;; esac
  i=$((i+1))
  if [ "$i" -ge 50 ]; then echo "the fault had no effect: $u is still $st 5 s after SIGKILL"; exit 3; fi
  sleep 0.1
done
sleep 1
st=$(systemctl show -p ActiveState --value "$u")
n1=$(systemctl show -p NRestarts --value "$u")
if [ "$st" != failed ] && [ "$st" != inactive ] || [ "$n1" != "$n0" ]; then
  echo "the fault had no effect: systemd restarted $u (ActiveState=$st, NRestarts $n0 -> $n1)"
  exit 3
fi
echo "$u is $st, held down (NRestarts=$n1)""#;

/// Arms the dead-man timer: in [`DEADMAN_S`] seconds, remove the hold and start `unit`.
pub fn arm_cmd(run: &RunId, unit: &str) -> Cmd {
    Cmd::new("systemd-run")
        .arg(format!("--unit={}", deadman_unit(run, unit)))
        .args(["--quiet", "--collect"])
        .arg(format!("--on-active={DEADMAN_S}"))
        .arg("--timer-property=AccuracySec=1s")
        .args(["sh", "-c", START_SCRIPT, "pgha-deadman", unit])
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
        Action::KillService { unit, .. } => Some(Cmd::script(KILL_SCRIPT, [*unit])),
        Action::StopService { unit, .. } => Some(Cmd::new("systemctl").arg("stop").arg(*unit)),
        _ => None,
    }
}

/// The command that undoes a service action.
pub fn undo_cmd(action: &Action) -> Option<Cmd> {
    match action {
        Action::KillService { unit, .. } | Action::StopService { unit, .. } => Some(Cmd::script(START_SCRIPT, [*unit])),
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

    /// Injects `action`; a kill that systemd undid (or that left the unit running) is an error
    /// saying the fault had no effect.
    pub async fn inject(&self, action: &Action) -> Result<(), DrillError> {
        match inject_cmd(action) {
            Some(cmd) => {
                let out = self.hosts.exec(action.host(), &cmd, SERVICE_TIMEOUT).await?;
                if out.success() {
                    return Ok(());
                }
                let said = out.stdout_text().trim().to_string();
                Err(DrillError::Host {
                    host: action.host().to_string(),
                    detail: if said.is_empty() {
                        format!("{} failed: {}", action.describe(), out.stderr_tail(5))
                    } else {
                        said
                    },
                })
            }
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
        let killing = inject_cmd(&kill).map(|c| c.command_line(false)).unwrap_or_default();
        for part in [
            "Restart=no",
            "daemon-reload",
            "systemctl kill --kill-whom=all --signal=SIGKILL",
            "NRestarts",
            "the fault had no effect",
        ] {
            assert!(killing.contains(part), "{part} in {killing}");
        }
        assert!(killing.ends_with(" pgha patroni"), "{killing}");
        let undo = undo_cmd(&kill).map(|c| c.command_line(false)).unwrap_or_default();
        assert!(
            undo.contains("rm -f") && undo.contains(HOLD_DROPIN) && undo.contains("systemctl start \"$u\""),
            "{undo}"
        );
        let stop = Action::StopService {
            host: "etcd1".into(),
            unit: "etcd",
        };
        assert_eq!(
            inject_cmd(&stop).map(|c| c.command_line(false)),
            Some("systemctl stop etcd".into())
        );
        let arm = arm_cmd(&run, "etcd").command_line(true);
        assert!(
            arm.starts_with(
                "sudo -n -- systemd-run --unit=pgha-drill-drill-1-undo-etcd --quiet --collect --on-active=600 --timer-property=AccuracySec=1s sh -c "
            ) && arm.contains(HOLD_DROPIN)
                && arm.ends_with(" pgha-deadman etcd"),
            "{arm}"
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
