//! Playbook YAML as written; strict (unknown keys refused), with locations for messages.

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::spec::*;

/// A playbook file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlaybook {
    /// Its name.
    pub name: Option<String>,
    /// Plays, run in order.
    pub plays: Vec<Spanned<RawPlay>>,
}

/// `hosts:` a selector or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawHosts {
    /// One selector.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// One play.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlay {
    /// Its name.
    pub name: Spanned<String>,
    /// `all`, a role (postgres, etcd, haproxy, pgbouncer) or host names.
    pub hosts: Spanned<RawHosts>,
    /// Run hosts N at a time (rolling); default all at once.
    pub serial: Option<Spanned<u32>>,
    /// Run only on hosts where this expression over facts is true.
    pub when: Option<Spanned<String>>,
    /// Tasks, in order.
    pub tasks: Vec<Spanned<RawTask>>,
    /// Handlers, run once at the end of the play when notified.
    #[serde(default)]
    pub handlers: Vec<Spanned<RawTask>>,
}

/// One task: a name, one module key, and options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTask {
    /// Its name.
    pub name: Spanned<String>,
    /// Run only when this expression is true.
    pub when: Option<Spanned<String>>,
    /// Handlers to notify when this task changed something.
    #[serde(default)]
    pub notify: Vec<Spanned<String>>,
    /// Handlers only: the systemd unit this handler reacts for. It runs when a task of the play
    /// changed a rendered file whose unit (decided by `render`) is this one, with no `notify:`.
    pub handles: Option<Spanned<String>>,
    /// package module.
    pub package: Option<PackageArgs>,
    /// file module.
    pub file: Option<FileArgs>,
    /// directory module.
    pub directory: Option<DirectoryArgs>,
    /// service module.
    pub service: Option<ServiceArgs>,
    /// command module.
    pub command: Option<CommandArgs>,
    /// wait_for module.
    pub wait_for: Option<WaitForArgs>,
}
