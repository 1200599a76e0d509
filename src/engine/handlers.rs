//! Which handlers run at the end of a play: those notified by a task that changed something,
//! once each, in the order they are defined; a restart of a unit covers a reload of it.

use std::collections::BTreeSet;

use crate::modules::unit_name;
use crate::playbook::{ModuleSpec, ServiceState, Task};

/// The handlers to run, in definition order.
pub fn to_run<'a>(handlers: &'a [Task], notified: &BTreeSet<String>) -> Vec<&'a Task> {
    let chosen: Vec<&Task> = handlers.iter().filter(|h| notified.contains(&h.name)).collect();
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
