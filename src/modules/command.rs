//! `command`: runs a command only when needed — skipped when `creates` exists (from facts) or
//! when the read-only `unless` snippet exits 0, or what `unless_rule`'s URL answers satisfies
//! its rule (probed before planning). Without a guard it is not idempotent and says so: it runs
//! every time.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::facts::Facts;
use crate::plan::{Change, Plan};
use crate::transport::{Cmd, FileKind, Transport};

use super::{Action, Applied, ModuleError, Rendered, RuleCheck};

/// `command:` a command guarded so that it runs only when needed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandArgs {
    /// The command as argv.
    pub argv: Option<Vec<String>>,
    /// Or a POSIX sh script.
    pub sh: Option<String>,
    /// Skip when this path exists.
    pub creates: Option<String>,
    /// Skip when this sh snippet exits 0.
    pub unless: Option<String>,
    /// Or skip when what this URL answers satisfies a rule judged in Rust (`modules::rule`).
    pub unless_rule: Option<RuleCheck>,
    /// Seconds before giving up (default 300).
    pub timeout_s: Option<u64>,
}

fn cmd_of(a: &CommandArgs) -> Cmd {
    match (&a.argv, &a.sh) {
        (Some(argv), _) if !argv.is_empty() => Cmd::new(argv[0].clone()).args(argv[1..].iter().cloned()),
        (_, Some(sh)) => Cmd::script(sh, Vec::<String>::new()),
        _ => Cmd::new("true"),
    }
}

pub(super) fn probe(a: &CommandArgs) -> Option<Cmd> {
    if let Some(r) = &a.unless_rule {
        return Some(r.fetch());
    }
    a.unless.as_ref().map(|u| Cmd::script(u, Vec::<String>::new()))
}

/// Whether the probe's result (exit status and output) means the `unless` check holds.
pub(super) fn verdict(a: &CommandArgs, rendered: &Rendered, passed: bool, out: &str) -> bool {
    match &a.unless_rule {
        Some(r) => r
            .rule
            .resolve(rendered)
            .is_ok_and(|j| if passed { j.holds(out) } else { j.holds_unanswered() }),
        None => passed,
    }
}

pub(super) fn plan(a: &CommandArgs, facts: &Facts, probed: Option<bool>) -> Plan<Action> {
    if let Some(c) = &a.creates
        && !matches!(facts.file(c), FileKind::Missing)
    {
        return Plan::Satisfied {
            why: format!("{c} exists"),
        };
    }
    if probed == Some(true) {
        return Plan::Satisfied {
            why: "its `unless` check passed".into(),
        };
    }
    let cmd = cmd_of(a);
    let why = if a.creates.is_some() || a.unless.is_some() || a.unless_rule.is_some() {
        ""
    } else {
        " (unguarded: runs every time)"
    };
    Plan::Change(Change {
        summary: format!("run {}{why}", cmd.summary()),
        diff: None,
        action: Action::Run {
            cmd,
            timeout: Duration::from_secs(a.timeout_s.unwrap_or(300)),
        },
    })
}

pub(super) async fn apply(cmd: &Cmd, timeout: Duration, t: &dyn Transport) -> Result<Applied, ModuleError> {
    super::run(t, cmd, timeout).await?;
    Ok(Applied {
        changed: true,
        file_update: None,
        stale: true,
    })
}
