//! Playbooks: playbooks/*.yaml (embedded in the binary, overridable with a directory) →
//! validated [`Playbook`]s of ordered plays, tasks naming one module each, and handlers. Data
//! only, no I/O beyond reading the file; unknown keys and bad references are errors with
//! file:line:column, as for the inventory.

pub mod raw;
pub mod spec;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use include_dir::{Dir, include_dir};

use crate::diagnostic::{Diagnostic, Pos, Severity, did_you_mean};
use crate::inventory::{Inventory, Role};
pub use spec::*;

static EMBEDDED: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/playbooks");

/// A validated playbook.
#[derive(Clone, Debug)]
pub struct Playbook {
    /// Its name.
    pub name: String,
    /// Where it came from (for messages).
    pub file: PathBuf,
    /// Plays in order.
    pub plays: Vec<Play>,
}

/// Which hosts a play runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// Every host.
    All,
    /// Hosts with a role.
    Role(Role),
    /// A named host.
    Host(String),
    /// Hosts `from..to` (in inventory order) among those with a role: `postgres[0]`,
    /// `postgres[1:]`.
    Slice(Role, usize, Option<usize>),
}

fn parse_role(s: &str) -> Option<Role> {
    match s {
        "postgres" => Some(Role::Postgres),
        "etcd" => Some(Role::Etcd),
        "haproxy" => Some(Role::Haproxy),
        "pgbouncer" => Some(Role::Pgbouncer),
        "backup" => Some(Role::Backup),
        _ => None,
    }
}

/// `role[i]` or `role[i:]` / `role[i:j]`.
fn parse_slice(s: &str) -> Option<Selector> {
    let (role, rest) = s.split_once('[')?;
    let inner = rest.strip_suffix(']')?;
    let role = parse_role(role)?;
    match inner.split_once(':') {
        None => {
            let i: usize = inner.parse().ok()?;
            Some(Selector::Slice(role, i, Some(i + 1)))
        }
        Some((a, b)) => {
            let from = if a.is_empty() { 0 } else { a.parse().ok()? };
            let to = if b.is_empty() { None } else { Some(b.parse().ok()?) };
            Some(Selector::Slice(role, from, to))
        }
    }
}

/// One play.
#[derive(Clone, Debug)]
pub struct Play {
    /// Its name.
    pub name: String,
    /// Line in the file.
    pub line: u64,
    /// Host selectors (union).
    pub hosts: Vec<Selector>,
    /// Rolling batch size.
    pub serial: Option<u32>,
    /// Condition over facts.
    pub when: Option<String>,
    /// Tasks.
    pub tasks: Vec<Task>,
    /// Handlers.
    pub handlers: Vec<Task>,
}

/// One task.
#[derive(Clone, Debug)]
pub struct Task {
    /// Its name.
    pub name: String,
    /// Line in the file.
    pub line: u64,
    /// Condition.
    pub when: Option<String>,
    /// Handlers to notify.
    pub notify: Vec<String>,
    /// Handlers only: the unit (`etcd.service`) whose rendered files, when a task of the play
    /// changes one, make this handler run.
    pub handles: Option<String>,
    /// What it does.
    pub module: ModuleSpec,
}

impl Play {
    /// The inventory hosts this play runs on, in inventory order.
    pub fn select<'a>(&self, inv: &'a Inventory) -> Vec<&'a crate::inventory::Host> {
        inv.hosts
            .iter()
            .filter(|h| {
                self.hosts.iter().any(|s| match s {
                    Selector::All => true,
                    Selector::Role(r) => h.has(*r),
                    Selector::Host(n) => h.name.as_str() == n,
                    Selector::Slice(r, from, to) => {
                        let index = inv.hosts_with(*r).position(|x| x.name == h.name);
                        index.is_some_and(|i| i >= *from && to.is_none_or(|t| i < t))
                    }
                })
            })
            .collect()
    }
}

/// Why a playbook cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PlaybookError {
    /// Not readable.
    #[error(transparent)]
    Read(#[from] crate::yaml::ReadError),
    /// No such embedded playbook.
    #[error("no playbook named `{name}`{}\n\n  hint: embedded playbooks: {}", did_you_mean(name, available.iter().map(String::as_str)).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default(), available.join(", "))]
    Unknown {
        /// Asked name.
        name: String,
        /// What exists.
        available: Vec<String>,
    },
    /// Invalid content.
    #[error("{}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n\n"))]
    Invalid(Vec<Diagnostic>),
}

/// Names of the embedded playbooks.
pub fn embedded_names() -> Vec<String> {
    let mut v: Vec<String> = EMBEDDED
        .files()
        .filter_map(|f| f.path().file_stem().and_then(|s| s.to_str()).map(str::to_string))
        .collect();
    v.sort();
    v
}

/// Loads a playbook: a path to a file, or the name of an embedded one (`deploy`), looked up
/// first in `dir` when given.
pub fn load(name_or_path: &str, dir: Option<&Path>, inv: &Inventory) -> Result<Playbook, PlaybookError> {
    let as_path = Path::new(name_or_path);
    if as_path.extension().is_some_and(|e| e == "yaml" || e == "yml") || name_or_path.contains('/') {
        let bytes = crate::yaml::read_text(as_path)?;
        return parse(as_path, &bytes, inv);
    }
    if let Some(d) = dir {
        let p = d.join(format!("{name_or_path}.yaml"));
        if p.exists() {
            let bytes = crate::yaml::read_text(&p)?;
            return parse(&p, &bytes, inv);
        }
    }
    match EMBEDDED.get_file(format!("{name_or_path}.yaml")) {
        Some(f) => parse(&Path::new("playbooks").join(f.path()), f.contents(), inv),
        None => Err(PlaybookError::Unknown {
            name: name_or_path.to_string(),
            available: embedded_names(),
        }),
    }
}

/// Parses and validates playbook bytes against `inv` (host names in selectors must exist).
pub fn parse(file: &Path, bytes: &[u8], inv: &Inventory) -> Result<Playbook, PlaybookError> {
    let raw: raw::RawPlaybook =
        crate::yaml::parse_strict(file, bytes, "playbooks/sample.yaml").map_err(|d| PlaybookError::Invalid(vec![d]))?;
    let mut errors = Vec::new();
    let mut err = |pos: Pos, field: String, message: String, hint: Option<String>| {
        errors.push(Diagnostic {
            severity: Severity::Error,
            file: file.to_path_buf(),
            line: pos.line,
            column: pos.column,
            field,
            message,
            hint,
        })
    };
    let host_names: Vec<&str> = inv.hosts.iter().map(|h| h.name.as_str()).collect();
    let mut plays = Vec::new();
    for (pi, rp) in raw.plays.iter().enumerate() {
        let p = &rp.value;
        let field = format!("plays[{pi}]");
        let selectors: Vec<String> = match &p.hosts.value {
            raw::RawHosts::One(s) => vec![s.clone()],
            raw::RawHosts::Many(v) => v.clone(),
        };
        let mut hosts = Vec::new();
        for s in selectors {
            let sel = match s.as_str() {
                "all" => Selector::All,
                role if parse_role(role).is_some() => Selector::Role(parse_role(role).expect("checked just above")),
                name if host_names.contains(&name) => Selector::Host(name.to_string()),
                slice if parse_slice(slice).is_some() => parse_slice(slice).expect("checked just above"),
                other => {
                    let mut known: Vec<&str> = vec!["all", "postgres", "etcd", "haproxy", "pgbouncer", "backup"];
                    known.extend(host_names.iter().copied());
                    let hint = did_you_mean(other, known.iter().copied()).map(|s| format!("did you mean `{s}`?"));
                    err(
                        Pos::of(&p.hosts),
                        format!("{field}.hosts"),
                        format!(
                            "`{other}` is neither `all`, a role, a role slice (`postgres[0]`, `postgres[1:]`), nor a host of the inventory"
                        ),
                        hint,
                    );
                    continue;
                }
            };
            hosts.push(sel);
        }
        let tasks = tasks_of(&p.tasks, &format!("{field}.tasks"), &mut err);
        let handlers = tasks_of(&p.handlers, &format!("{field}.handlers"), &mut err);
        let handler_names: BTreeSet<&str> = handlers.iter().map(|h| h.name.as_str()).collect();
        for (ti, t) in p.tasks.iter().enumerate() {
            if let Some(h) = &t.value.handles {
                err(
                    Pos::of(h),
                    format!("{field}.tasks[{ti}].handles"),
                    "only a handler takes `handles:` (the unit it reacts for)".into(),
                    Some("move the task under `handlers:`, or drop `handles:`".into()),
                );
            }
            for n in &t.value.notify {
                if !handler_names.contains(n.value.as_str()) {
                    let hint =
                        did_you_mean(&n.value, handler_names.iter().copied()).map(|s| format!("did you mean `{s}`?"));
                    err(
                        Pos::of(n),
                        format!("{field}.tasks[{ti}].notify"),
                        format!("no handler named `{}` in this play", n.value),
                        hint,
                    );
                }
            }
        }
        if let Some(s) = &p.serial
            && s.value == 0
        {
            err(
                Pos::of(s),
                format!("{field}.serial"),
                "serial must be at least 1".into(),
                None,
            );
        }
        plays.push(Play {
            name: p.name.value.clone(),
            line: rp.referenced.line(),
            hosts,
            serial: p.serial.as_ref().map(|s| s.value),
            when: p.when.as_ref().map(|w| w.value.clone()),
            tasks,
            handlers,
        });
    }
    if !errors.is_empty() {
        return Err(PlaybookError::Invalid(errors));
    }
    let name = raw.name.unwrap_or_else(|| {
        file.file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("playbook")
            .to_string()
    });
    Ok(Playbook {
        name,
        file: file.to_path_buf(),
        plays,
    })
}

fn tasks_of(
    raw: &[serde_saphyr::Spanned<raw::RawTask>],
    field: &str,
    err: &mut impl FnMut(Pos, String, String, Option<String>),
) -> Vec<Task> {
    let mut out = Vec::new();
    for (i, rt) in raw.iter().enumerate() {
        let t = &rt.value;
        let mut modules: Vec<ModuleSpec> = Vec::new();
        if let Some(a) = &t.package {
            modules.push(ModuleSpec::Package(a.clone()));
        }
        if let Some(a) = &t.file {
            modules.push(ModuleSpec::File(a.clone()));
        }
        if let Some(a) = &t.directory {
            modules.push(ModuleSpec::Directory(a.clone()));
        }
        if let Some(a) = &t.service {
            modules.push(ModuleSpec::Service(a.clone()));
        }
        if let Some(a) = &t.command {
            modules.push(ModuleSpec::Command(a.clone()));
        }
        if let Some(a) = &t.wait_for {
            modules.push(ModuleSpec::WaitFor(a.clone()));
        }
        let f = format!("{field}[{i}]");
        if modules.len() != 1 {
            let names: Vec<&str> = modules.iter().map(ModuleSpec::name).collect();
            let msg = if names.is_empty() {
                "names no module".to_string()
            } else {
                format!(
                    "names {} modules ({}); a task runs exactly one",
                    names.len(),
                    names.join(", ")
                )
            };
            err(
                Pos::of(rt),
                f,
                format!("task `{}` {msg}", t.name.value),
                Some("modules: package, file, directory, service, command, wait_for".into()),
            );
            continue;
        }
        let module = modules.remove(0);
        if let Some(problem) = check_module(&module) {
            err(Pos::of(rt), format!("{f}.{}", module.name()), problem, None);
            continue;
        }
        out.push(Task {
            name: t.name.value.clone(),
            line: rt.referenced.line(),
            when: t.when.as_ref().map(|w| w.value.clone()),
            notify: t.notify.iter().map(|n| n.value.clone()).collect(),
            handles: t.handles.as_ref().map(|u| crate::modules::unit_name(&u.value)),
            module,
        });
    }
    out
}

/// Rules a module's arguments must follow beyond their types.
fn check_module(m: &ModuleSpec) -> Option<String> {
    let abs = |p: &str| p.starts_with('/') || p.starts_with("{{");
    match m {
        ModuleSpec::Package(a) if a.names.is_empty() => Some("`names` is empty".into()),
        ModuleSpec::File(a) if !abs(&a.path) => Some(format!("path `{}` must be absolute", a.path)),
        ModuleSpec::Directory(a) if !abs(&a.path) => Some(format!("path `{}` must be absolute", a.path)),
        ModuleSpec::Command(a) if a.argv.is_some() == a.sh.is_some() => {
            Some("give exactly one of `argv` or `sh`".into())
        }
        ModuleSpec::Command(a) if a.argv.as_ref().is_some_and(Vec::is_empty) => Some("`argv` is empty".into()),
        ModuleSpec::WaitFor(a)
            if [a.port.is_some(), a.url.is_some(), a.sh.is_some()]
                .iter()
                .filter(|b| **b)
                .count()
                != 1 =>
        {
            Some("give exactly one of `port`, `url` or `sh`".into())
        }
        ModuleSpec::WaitFor(a) if a.rule.is_some() && a.url.is_none() => {
            Some("a `rule` judges what `url` answers: give the `url`".into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
