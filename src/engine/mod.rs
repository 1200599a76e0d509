//! The engine: runs a playbook over the inventory. Plays run in order, each a barrier; within a
//! play the selected hosts run in parallel (or `serial: N` at a time), each host going through
//! gather → plan → apply for every task, then its notified handlers. A failed host skips its
//! later plays; other hosts carry on. Check mode plans everything and applies nothing.
//!
//! Facts are gathered in one round trip per host for every play at once, before the first play,
//! together with every task's read-only check (`unless` snippets, one pass of each `wait_for`):
//! until something is changed on some host, tasks plan from that one probe, so a run with
//! nothing to change costs exactly one round trip per host. The first change anywhere makes
//! the checks run ahead stale for every host (a change on one host can change another's
//! checks): from then on checks run live, as each task comes. Facts are updated in place after
//! file writes, and re-gathered after a change that makes them stale (packages, services,
//! commands).

mod counting;
pub mod events;
mod handlers;
pub mod vars;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures::future::join_all;
use tokio::sync::Mutex;

pub use events::{Counts, Event, Recap, Reporter};

use crate::facts::{self, Facts, Query};
use crate::inventory::{Host, Inventory};
use crate::modules::{self, Action, Rendered};
use crate::plan::{Plan, Status, mask_secrets, unified_diff};
use crate::playbook::{ModuleSpec, Play, Playbook, Task};
use crate::transport::{self, Cmd, Conn, Endpoint, Transport, TransportError};

/// How to run.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Plan only; change nothing.
    pub check: bool,
    /// Show diffs of files in check mode.
    pub diff: bool,
    /// Report every command sent.
    pub verbose: bool,
    /// Only these hosts (None: all).
    pub limit: Option<BTreeSet<String>>,
    /// Facts the caller already gathered, by host, in a probe that included [`first_query`]
    /// (deploy merges its preflight into that one probe): those hosts start from them instead
    /// of probing again.
    pub gathered: BTreeMap<String, Gathered>,
}

/// Facts gathered by the caller for [`Options::gathered`].
#[derive(Clone, Debug, Default)]
pub struct Gathered {
    /// The facts, read with (at least) [`first_query`] of the host.
    pub facts: Facts,
    /// Round trips that took (counted in the host's recap).
    pub round_trips: u32,
}

/// What the engine's first probe of `host` asks (every play's facts and, nothing having
/// changed yet, every task's read-only check), for a caller that probes the host itself and
/// hands the facts over in [`Options::gathered`].
pub fn first_query(inv: &Inventory, playbook: &Playbook, host: &Host, input: &HostInput) -> Query {
    query_for(inv, playbook, host, input, (0, 0), true)
}

/// Facts every task from play `from.0`, task `from.1` on may need (paths expanded with empty
/// facts), and, `with_checks`, the tasks' read-only checks to run ahead.
fn query_for(
    inv: &Inventory,
    playbook: &Playbook,
    host: &Host,
    input: &HostInput,
    (from_play, from_task): (usize, usize),
    with_checks: bool,
) -> Query {
    let env = vars::environment();
    let ctx = vars::context(inv, host, &input.vars, &Facts::default());
    let mut q = Query::default();
    for (pi, play) in playbook.plays.iter().enumerate().skip(from_play) {
        if !play.select(inv).iter().any(|h| h.name == host.name) {
            continue;
        }
        let skip = if pi == from_play { from_task } else { 0 };
        for t in play.tasks.iter().skip(skip) {
            if let Ok(spec) = vars::expand(&env, &ctx, &t.module) {
                q.merge(&modules::query(&spec));
                if with_checks && let Some(c) = modules::survey_check(&spec) {
                    q.checks.insert(c.argv().to_vec());
                }
            }
        }
        for t in &play.handlers {
            if let Ok(spec) = vars::expand(&env, &ctx, &t.module) {
                q.merge(&modules::query(&spec));
            }
        }
    }
    q
}

/// Opens connections (SSH in real runs, fakes in tests).
#[async_trait::async_trait]
pub trait Connector: Send + Sync {
    /// A connection to `host`.
    async fn connect(&self, host: &Host) -> Result<Conn, TransportError>;

    /// Whether the run closes the connections it got when it ends (false: the caller opened
    /// them and goes on using them).
    fn closes_connections(&self) -> bool {
        true
    }
}

/// SSH connections with the chosen transport.
pub struct SshConnector {
    /// openssh or russh.
    pub kind: transport::Kind,
    /// Trust unknown host keys on first use.
    pub accept_new_host_keys: bool,
}

#[async_trait::async_trait]
impl Connector for SshConnector {
    async fn connect(&self, host: &Host) -> Result<Conn, TransportError> {
        transport::connect(self.kind, Endpoint::from_host(host, self.accept_new_host_keys)).await
    }
}

struct HostState {
    conn: Option<Arc<counting::Counting>>,
    facts: Option<Facts>,
    stale: bool,
    failed: bool,
    counts: Counts,
    /// Round trips the caller made for [`Options::gathered`].
    probed_ahead: u32,
}

/// What the caller gives each host: its rendered files and extra variables (`vars` in
/// playbooks).
#[derive(Clone, Debug, Default)]
pub struct HostInput {
    /// Files by absolute path (tasks without `content` install these).
    pub rendered: Rendered,
    /// Extra variables, seen as `vars` by expressions.
    pub vars: serde_json::Value,
}

/// Hands out connections opened earlier (so a command can read facts before running the
/// engine without connecting twice); hosts without one are unreachable.
pub struct PreOpened {
    /// Connections by host name.
    pub conns: BTreeMap<String, Conn>,
    /// Why the others could not be reached.
    pub errors: std::sync::Mutex<BTreeMap<String, TransportError>>,
}

#[async_trait::async_trait]
impl Connector for PreOpened {
    async fn connect(&self, host: &Host) -> Result<Conn, TransportError> {
        if let Some(c) = self.conns.get(host.name.as_str()) {
            return Ok(c.clone());
        }
        let taken = self.errors.lock().ok().and_then(|mut e| e.remove(host.name.as_str()));
        Err(taken.unwrap_or_else(|| TransportError::Unreachable {
            host: host.name.to_string(),
            target: host.address.to_string(),
            detail: "no connection".into(),
            hint: "check that the host is up and reachable over SSH".into(),
        }))
    }

    fn closes_connections(&self) -> bool {
        false
    }
}

/// Runs `playbook`; `inputs` holds each host's rendered files and vars (may be empty for hosts whose
/// tasks use inline content); `cancel` stops the run between tasks (Ctrl-C).
pub async fn run(
    inv: &Inventory,
    playbook: &Playbook,
    inputs: &BTreeMap<String, HostInput>,
    opts: &Options,
    connector: &dyn Connector,
    reporter: Arc<dyn Reporter>,
    cancel: Arc<AtomicBool>,
) -> Recap {
    let start = Instant::now();
    let mut recap = Recap {
        check: opts.check,
        ..Recap::default()
    };
    let wanted: Vec<&Host> = inv
        .hosts
        .iter()
        .filter(|h| opts.limit.as_ref().is_none_or(|l| l.contains(h.name.as_str())))
        .filter(|h| {
            playbook
                .plays
                .iter()
                .any(|p| p.select(inv).iter().any(|s| s.name == h.name))
        })
        .collect();
    let states: BTreeMap<String, Mutex<HostState>> = wanted
        .iter()
        .map(|h| {
            let gathered = opts.gathered.get(h.name.as_str());
            (
                h.name.to_string(),
                Mutex::new(HostState {
                    conn: None,
                    facts: gathered.map(|g| g.facts.clone()),
                    stale: false,
                    failed: false,
                    counts: Counts::default(),
                    probed_ahead: gathered.map(|g| g.round_trips).unwrap_or(0),
                }),
            )
        })
        .collect();

    // Connect to every host at once.
    let connections = join_all(
        wanted
            .iter()
            .map(|h| async move { (h.name.to_string(), connector.connect(h).await) }),
    )
    .await;
    for (name, result) in connections {
        let Some(state) = states.get(&name) else {
            continue;
        };
        let mut st = state.lock().await;
        match result {
            Ok(c) => st.conn = Some(Arc::new(counting::Counting::new(c, opts.verbose, reporter.clone()))),
            Err(e) => {
                st.failed = true;
                st.counts.unreachable = true;
                reporter.event(&Event::HostFailed {
                    host: name.clone(),
                    play: "connect".into(),
                    task: "connect".into(),
                    error: e.to_string(),
                });
            }
        }
    }

    let empty = HostInput::default();
    // Nothing changed yet: the checks run ahead are still true.
    let dirty = AtomicBool::new(false);
    // One probe per host, all at once, for every play.
    let gathers = states.iter().map(|(name, state)| {
        let host = wanted.iter().find(|h| h.name.as_str() == name.as_str());
        let input = inputs.get(name.as_str()).unwrap_or(&empty);
        let reporter = reporter.as_ref();
        let dirty = &dirty;
        let cancel = &cancel;
        async move {
            let Some(host) = host else { return };
            let ctx = HostRun {
                inv,
                playbook,
                play_index: 0,
                host,
                input,
                opts,
                reporter,
                cancel,
                dirty,
            };
            let mut st = state.lock().await;
            if st.failed {
                return;
            }
            if let Err(e) = ctx.facts(&mut st, 0).await {
                st.failed = true;
                st.counts.failed += 1;
                reporter.event(&Event::HostFailed {
                    host: name.clone(),
                    play: "gather facts".into(),
                    task: "gather facts".into(),
                    error: e,
                });
            }
        }
    });
    join_all(gathers).await;
    for (pi, play) in playbook.plays.iter().enumerate() {
        if cancel.load(Ordering::SeqCst) {
            recap.interrupted = true;
            break;
        }
        let hosts: Vec<&Host> = play
            .select(inv)
            .into_iter()
            .filter(|h| states.contains_key(h.name.as_str()))
            .collect();
        if hosts.is_empty() {
            continue;
        }
        let play_start = Instant::now();
        reporter.event(&Event::PlayStart {
            play: play.name.clone(),
            hosts: hosts.iter().map(|h| h.name.to_string()).collect(),
        });
        let batch = play.serial.map(|s| s as usize).unwrap_or(hosts.len()).max(1);
        for chunk in hosts.chunks(batch) {
            let runs = chunk.iter().map(|h| {
                let state = &states[h.name.as_str()];
                let input = inputs.get(h.name.as_str()).unwrap_or(&empty);
                let ctx = HostRun {
                    inv,
                    playbook,
                    play_index: pi,
                    host: h,
                    input,
                    opts,
                    reporter: reporter.as_ref(),
                    cancel: &cancel,
                    dirty: &dirty,
                };
                async move {
                    let mut st = state.lock().await;
                    if !st.failed {
                        ctx.run_play(play, &mut st).await;
                    }
                }
            });
            join_all(runs).await;
        }
        let elapsed = play_start.elapsed();
        reporter.event(&Event::PlayDone {
            play: play.name.clone(),
            elapsed,
        });
        recap.plays.push((play.name.clone(), elapsed.as_secs_f64()));
    }
    if cancel.load(Ordering::SeqCst) {
        recap.interrupted = true;
    }
    // Close every connection cleanly, at once (unless the caller keeps using them).
    if connector.closes_connections() {
        let closes = states.values().map(|s| async move {
            let st = s.lock().await;
            if let Some(c) = &st.conn {
                let _ = c.close().await;
            }
        });
        join_all(closes).await;
    }
    for (name, s) in states {
        let st = s.into_inner();
        let mut counts = st.counts;
        counts.round_trips = st.probed_ahead + st.conn.as_ref().map(|c| c.count()).unwrap_or(0);
        recap.hosts.insert(name, counts);
    }
    recap.elapsed = start.elapsed().as_secs_f64();
    recap
}

struct HostRun<'a> {
    inv: &'a Inventory,
    playbook: &'a Playbook,
    play_index: usize,
    host: &'a Host,
    input: &'a HostInput,
    opts: &'a Options,
    reporter: &'a dyn Reporter,
    cancel: &'a AtomicBool,
    /// Something was (or is being) changed on some host: checks gathered ahead are stale.
    dirty: &'a AtomicBool,
}

/// How one task went.
enum Outcome {
    Done {
        status: Status,
        summary: String,
        diff: Option<String>,
        changed: bool,
        /// The file it wrote (or in check mode would write).
        wrote: Option<String>,
    },
    Failed(String),
}

impl HostRun<'_> {
    fn name(&self) -> String {
        self.host.name.to_string()
    }

    /// Facts every task from this play on may need and, while nothing has changed, the tasks'
    /// read-only checks to run ahead.
    fn query(&self, from_play: usize, from_task: usize) -> Query {
        let with_checks = !self.dirty.load(Ordering::SeqCst);
        query_for(
            self.inv,
            self.playbook,
            self.host,
            self.input,
            (from_play, from_task),
            with_checks,
        )
    }

    async fn facts(&self, st: &mut HostState, task_index: usize) -> Result<(), String> {
        if st.facts.is_some() && !st.stale {
            return Ok(());
        }
        let conn = st.conn.clone().ok_or("not connected")?;
        let q = self.query(self.play_index, task_index);
        let f = facts::gather(conn.as_ref(), &q).await.map_err(|e| e.to_string())?;
        st.facts = Some(f);
        st.stale = false;
        Ok(())
    }

    async fn run_play(&self, play: &Play, st: &mut HostState) {
        if let Err(e) = self.facts(st, 0).await {
            self.fail(st, play, "gather facts", e);
            return;
        }
        let env = vars::environment();
        if let Some(w) = &play.when {
            let ctx = vars::context(
                self.inv,
                self.host,
                &self.input.vars,
                st.facts.as_ref().expect("facts gathered above"),
            );
            match vars::when(&env, &ctx, w) {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => return self.fail(st, play, "when", e),
            }
        }
        let mut changed_in_play = false;
        let mut notified: BTreeSet<String> = BTreeSet::new();
        // Units whose rendered files changed (their `handles:` handlers run), and whether a
        // unit file or drop-in changed (systemd must re-read them first).
        let mut units: BTreeSet<String> = BTreeSet::new();
        let mut daemon_reload = false;
        for (ti, task) in play.tasks.iter().enumerate() {
            if self.cancel.load(Ordering::SeqCst) {
                return;
            }
            if let Err(e) = self.facts(st, ti).await {
                return self.fail(st, play, &task.name, e);
            }
            match self.task(task, st, changed_in_play).await {
                Outcome::Done {
                    status,
                    summary,
                    diff,
                    changed,
                    wrote,
                } => {
                    self.done(st, play, task, status, summary, diff);
                    if changed {
                        changed_in_play = true;
                        notified.extend(task.notify.iter().cloned());
                        if let Some(path) = wrote {
                            units.extend(self.input.rendered.get(&path).and_then(|m| m.unit.clone()));
                            daemon_reload |= handlers::is_unit_file(&path);
                        }
                    }
                }
                Outcome::Failed(e) => return self.fail(st, play, &task.name, e),
            }
        }
        let builtin = handlers::daemon_reload();
        let explicit = handlers::to_run(&play.handlers, &notified, &units);
        let first = (daemon_reload && !explicit.iter().any(|h| handlers::is_daemon_reload(h))).then_some(&builtin);
        for handler in first.into_iter().chain(explicit) {
            if self.cancel.load(Ordering::SeqCst) {
                return;
            }
            if let Err(e) = self.facts(st, play.tasks.len()).await {
                return self.fail(st, play, &handler.name, e);
            }
            match self.task(handler, st, true).await {
                Outcome::Done {
                    status, summary, diff, ..
                } => self.done(st, play, handler, status, summary, diff),
                Outcome::Failed(e) => return self.fail(st, play, &handler.name, e),
            }
        }
    }

    async fn task(&self, task: &Task, st: &mut HostState, changed_in_play: bool) -> Outcome {
        self.reporter.event(&Event::TaskStart {
            host: self.name(),
            task: task.name.clone(),
        });
        let env = vars::environment();
        let facts = st.facts.clone().unwrap_or_default();
        let ctx = vars::context(self.inv, self.host, &self.input.vars, &facts);
        if let Some(w) = &task.when {
            match vars::when(&env, &ctx, w) {
                Ok(true) => {}
                Ok(false) => {
                    return Outcome::Done {
                        status: Status::Skipped,
                        summary: format!("when `{w}` is false"),
                        diff: None,
                        changed: false,
                        wrote: None,
                    };
                }
                Err(e) => return Outcome::Failed(e),
            }
        }
        let spec = match vars::expand(&env, &ctx, &task.module) {
            Ok(s) => s,
            Err(e) => return Outcome::Failed(format!("cannot expand the task's arguments: {e}")),
        };
        let Some(conn) = st.conn.clone() else {
            return Outcome::Failed("not connected".into());
        };
        // A check run ahead holds while nothing has changed anywhere; else probe live.
        let ahead = match modules::survey_check(&spec) {
            Some(c) if !self.dirty.load(Ordering::SeqCst) => facts
                .check_output(&c)
                .map(|(passed, out)| modules::verdict(&spec, &self.input.rendered, passed, out)),
            _ => None,
        };
        let probed = match (ahead, modules::probe(&spec)) {
            (Some(passed), _) => Some(passed),
            (None, Some(cmd)) => match conn.exec(&cmd, None, transport::DEFAULT_TIMEOUT).await {
                Ok(out) => Some(modules::verdict(
                    &spec,
                    &self.input.rendered,
                    out.success(),
                    &out.stdout_text(),
                )),
                Err(e) => return Outcome::Failed(e.to_string()),
            },
            (None, None) => None,
        };
        let plan = match modules::plan(&spec, &facts, &self.input.rendered, probed) {
            Ok(p) => p,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        match plan {
            Plan::Satisfied { why } => Outcome::Done {
                status: Status::Ok,
                summary: why,
                diff: None,
                changed: false,
                wrote: None,
            },
            Plan::Skip { why } => Outcome::Done {
                status: Status::Skipped,
                summary: why,
                diff: None,
                changed: false,
                wrote: None,
            },
            Plan::Check { what, action } => {
                let if_changed = matches!(&spec, ModuleSpec::WaitFor(w) if w.if_changed == Some(true));
                if self.opts.check || (if_changed && !changed_in_play) {
                    return Outcome::Done {
                        status: Status::Skipped,
                        summary: format!("{what}: not needed"),
                        diff: None,
                        changed: false,
                        wrote: None,
                    };
                }
                match modules::apply(&action, conn.as_ref()).await {
                    Ok(_) => Outcome::Done {
                        status: Status::Ok,
                        summary: what,
                        diff: None,
                        changed: false,
                        wrote: None,
                    },
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            }
            Plan::Change(change) => {
                let wrote = match &change.action {
                    Action::Write { path, .. } => Some(path.clone()),
                    _ => None,
                };
                if self.opts.check {
                    let diff = if self.opts.diff {
                        self.diff_of(&change.action, conn.as_ref(), &facts).await
                    } else {
                        None
                    };
                    return Outcome::Done {
                        status: Status::Changed,
                        summary: change.summary,
                        diff,
                        changed: true,
                        wrote,
                    };
                }
                self.dirty.store(true, Ordering::SeqCst);
                match modules::apply(&change.action, conn.as_ref()).await {
                    Ok(applied) => {
                        if let (Some((path, kind)), Some(f)) = (applied.file_update, st.facts.as_mut()) {
                            f.files.insert(path, kind);
                        }
                        st.stale |= applied.stale;
                        let status = if applied.changed { Status::Changed } else { Status::Ok };
                        Outcome::Done {
                            status,
                            summary: change.summary,
                            diff: None,
                            changed: applied.changed,
                            wrote,
                        }
                    }
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            }
        }
    }

    /// The diff of a planned file write: reads the current file (unless secret).
    async fn diff_of(&self, action: &Action, t: &dyn Transport, facts: &Facts) -> Option<String> {
        let Action::Write {
            path, content, secret, ..
        } = action
        else {
            return None;
        };
        let exists = matches!(facts.file(path), transport::FileKind::File { .. });
        // Keys are never shown; other files holding secrets (passwords, SCRAM verifiers) show
        // their diff with the secret values masked (`mask_secrets`).
        if *secret && crate::plan::is_key_material(content) {
            return Some(unified_diff(path, None, content, true));
        }
        let old = if exists {
            match t
                .exec(&Cmd::new("cat").arg(path.clone()), None, transport::DEFAULT_TIMEOUT)
                .await
            {
                Ok(o) if o.success() => Some(o.stdout),
                _ => None,
            }
        } else {
            None
        };
        let diff = unified_diff(path, old.as_deref(), content, false);
        if diff.trim().is_empty() {
            None
        } else {
            Some(mask_secrets(&diff))
        }
    }

    fn done(
        &self,
        st: &mut HostState,
        play: &Play,
        task: &Task,
        status: Status,
        summary: String,
        diff: Option<String>,
    ) {
        match status {
            Status::Ok => st.counts.ok += 1,
            Status::Changed => st.counts.changed += 1,
            Status::Skipped => st.counts.skipped += 1,
            Status::Failed => st.counts.failed += 1,
        }
        self.reporter.event(&Event::TaskDone {
            host: self.name(),
            play: play.name.clone(),
            task: task.name.clone(),
            status,
            summary,
            diff,
        });
    }

    fn fail(&self, st: &mut HostState, play: &Play, task: &str, error: String) {
        st.failed = true;
        st.counts.failed += 1;
        self.reporter.event(&Event::HostFailed {
            host: self.name(),
            play: play.name.clone(),
            task: task.to_string(),
            error,
        });
    }
}

#[cfg(test)]
mod tests;
