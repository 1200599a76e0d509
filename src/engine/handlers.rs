//! Which handlers run at the end of a play: those notified by a task that changed something
//! (`notify:`), and those that `handles:` the unit of a rendered file a task changed (render
//! decides each file's unit, so playbooks do not repeat paths), once each, in the order they
//! are defined; a restart of a unit covers a reload of it. A changed unit file or drop-in
//! makes the engine run `systemctl daemon-reload` first, as a built-in handler.

use std::collections::BTreeSet;

use crate::modules::CommandArgs;
use crate::modules::unit_name;
use crate::playbook::{ModuleSpec, ServiceState, Task};

/// Where systemd reads units and drop-ins that pgha installs.
const UNIT_DIR: &str = "/etc/systemd/system/";

/// The handlers to run, in definition order.
pub fn to_run<'a>(handlers: &'a [Task], notified: &BTreeSet<String>, units: &BTreeSet<String>) -> Vec<&'a Task> {
    let chosen: Vec<&Task> = handlers
        .iter()
        .filter(|h| notified.contains(&h.name) || h.handles.as_ref().is_some_and(|u| units.contains(u)))
        .collect();
    let restarted: BTreeSet<String> = chosen
        .iter()
        .filter_map(|h| match &h.module {
            ModuleSpec::Service(s) if s.state == Some(ServiceState::Restarted) => Some(unit_name(&s.name)),
            _ => None,
        })
        .collect();
    chosen
        .into_iter()
        .filter(|h| !matches!(&h.module, ModuleSpec::Service(s) if s.state == Some(ServiceState::Reloaded) && restarted.contains(&unit_name(&s.name))))
        .collect()
}

/// Whether a change of `path` needs `systemctl daemon-reload` (a unit file or drop-in).
pub fn is_unit_file(path: &str) -> bool {
    path.starts_with(UNIT_DIR)
}

/// The built-in handler run after a unit file or drop-in changed, before the play's handlers.
pub fn daemon_reload() -> Task {
    Task {
        name: "daemon-reload".into(),
        line: 0,
        when: None,
        notify: Vec::new(),
        handles: None,
        module: ModuleSpec::Command(CommandArgs {
            argv: Some(vec!["systemctl".into(), "daemon-reload".into()]),
            sh: None,
            creates: None,
            unless: None,
            unless_rule: None,
            timeout_s: None,
        }),
    }
}

/// Whether the play's own handler `h` already is a daemon-reload (the built-in then stays out).
pub fn is_daemon_reload(h: &Task) -> bool {
    matches!(&h.module, ModuleSpec::Command(c) if c.argv.as_deref().is_some_and(|a| a.len() == 2 && a[0] == "systemctl" && a[1] == "daemon-reload"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler(name: &str, handles: Option<&str>, module: ModuleSpec) -> Task {
        Task {
            name: name.into(),
            line: 1,
            when: None,
            notify: Vec::new(),
            handles: handles.map(str::to_string),
            module,
        }
    }

    fn service(name: &str, state: ServiceState) -> ModuleSpec {
        ModuleSpec::Service(crate::modules::ServiceArgs {
            name: name.into(),
            state: Some(state),
            enabled: None,
        })
    }

    #[test]
    fn a_changed_unit_runs_its_handlers_and_a_restart_covers_a_reload() {
        let hs = vec![
            handler(
                "reload etcd",
                Some("etcd.service"),
                service("etcd", ServiceState::Reloaded),
            ),
            handler(
                "restart etcd",
                Some("etcd.service"),
                service("etcd", ServiceState::Restarted),
            ),
            handler(
                "reload haproxy",
                Some("haproxy.service"),
                service("haproxy", ServiceState::Reloaded),
            ),
        ];
        let none = BTreeSet::new();
        let units: BTreeSet<String> = ["etcd.service".to_string()].into();
        let names: Vec<&str> = to_run(&hs, &none, &units).iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["restart etcd"]);
        let notified: BTreeSet<String> = ["reload haproxy".to_string()].into();
        assert_eq!(to_run(&hs, &notified, &none).len(), 1);
        assert!(to_run(&hs, &none, &none).is_empty());
    }

    #[test]
    fn unit_files_need_a_daemon_reload() {
        assert!(is_unit_file("/etc/systemd/system/etcd.service.d/pgha.conf"));
        assert!(!is_unit_file("/etc/etcd/etcd.conf.yml"));
        assert!(is_daemon_reload(&daemon_reload()));
    }
}
