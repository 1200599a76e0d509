//! The drill, step by step: preconditions (a healthy cluster, RW working, psql here) → samplers
//! → writer → baseline → fault → observe → undo → wait for the old leader (or RW) to come back →
//! a few more writes → count rows → read the samplers back → analysis and verdict. Every wait is
//! bounded; once a fault is injected it is undone on every path out, Ctrl-C included.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use futures::future::join_all;
use tokio::sync::watch;

use super::analysis;
use super::cluster::{self, Hosts};
use super::fault::Faulter;
use super::plan::{self, Action};
use super::sampler::{self, Sample};
use super::writer::{self, Attempt, SqlTarget, Writer};
use super::{DrillError, Kind, Progress, Report, RunId, Timings, now_ms};
use crate::inventory::{Inventory, Role};
use crate::lab::LabPaths;

/// How long the writer runs before the fault and after everything is back.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// Writes before the fault.
    pub baseline: Duration,
    /// Writes after everything is back.
    pub tail: Duration,
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            baseline: Duration::from_secs(5),
            tail: Duration::from_secs(5),
        }
    }
}
/// How long the old leader may take to rejoin after the fault is undone (a lab machine boots,
/// pg_rewind runs, the replica catches up).
pub const REJOIN_BOUND: Duration = Duration::from_secs(300);
/// How long RW may take to come back after etcd is restored.
pub const RW_BACK_BOUND: Duration = Duration::from_secs(180);
/// How long the RO probe retries while quorum is lost.
pub const RO_BOUND: Duration = Duration::from_secs(30);
/// How long counting the rows may retry.
pub const COUNT_BOUND: Duration = Duration::from_secs(90);
/// Failed writes in a row that mean "RW refuses".
pub const REFUSAL_RUN: usize = 3;
/// Poll period of Patroni's state.
const POLL: Duration = Duration::from_secs(1);

/// The lab, when the inventory is the lab.
pub struct LabTarget {
    /// Its directories.
    pub paths: LabPaths,
    /// Inventory name → lab machine name.
    pub names: BTreeMap<String, String>,
}

/// Everything a drill needs.
pub struct Setup {
    /// The inventory.
    pub inv: Inventory,
    /// Which drill.
    pub kind: Kind,
    /// Its id.
    pub run: RunId,
    /// SSH connections.
    pub hosts: Hosts,
    /// The lab, if the inventory is the lab.
    pub lab: Option<LabTarget>,
    /// The writer's target.
    pub sql: Arc<SqlTarget>,
    /// The database behind `<db>_rw` / `<db>_ro` (for messages).
    pub db: String,
    /// The CA bundle's path on the hosts.
    pub remote_ca: String,
    /// Progress lines.
    pub progress: Progress,
    /// Becomes true on Ctrl-C.
    pub cancel: watch::Receiver<bool>,
    /// Baseline and tail.
    pub pace: Pace,
}

/// Time labels relative to the fault: `[before]`, then `[t+12.3s]`.
#[derive(Default)]
pub struct Clock {
    fault_ms: AtomicI64,
}

impl Clock {
    /// Marks the fault.
    pub fn set_fault(&self, at_ms: i64) {
        self.fault_ms.store(at_ms, Ordering::SeqCst);
    }

    /// The label of `at_ms`.
    pub fn tag(&self, at_ms: i64) -> String {
        match self.fault_ms.load(Ordering::SeqCst) {
            0 => "[before]".to_string(),
            f => format!("[t{:+.1}s]", (at_ms - f) as f64 / 1000.0),
        }
    }
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// The inventory name of the host at `addr` (the address itself if none).
pub fn host_of(inv: &Inventory, addr: IpAddr) -> String {
    inv.hosts
        .iter()
        .find(|h| h.address == addr)
        .map_or_else(|| addr.to_string(), |h| h.name.to_string())
}

impl Setup {
    fn say(&self, clock: &Clock, msg: &str) {
        (self.progress)(&format!("{} {msg}", clock.tag(now_ms())));
    }

    fn cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Sleeps `d`, or fails at once on Ctrl-C.
    async fn pause(&self, d: Duration) -> Result<(), DrillError> {
        let mut rx = self.cancel.clone();
        if *rx.borrow() {
            return Err(DrillError::Interrupted);
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            r = rx.wait_for(|v| *v) => match r {
                Ok(_) => Err(DrillError::Interrupted),
                Err(_) => {
                    tokio::time::sleep(d).await;
                    Ok(())
                }
            },
        }
    }

    fn pg_hosts(&self) -> Vec<String> {
        self.inv
            .hosts_with(Role::Postgres)
            .map(|h| h.name.to_string())
            .collect()
    }

    fn faulter(&self) -> Faulter<'_> {
        Faulter {
            hosts: &self.hosts,
            lab: self.lab.as_ref().map(|l| &l.paths),
            run: &self.run,
            progress: self.progress.clone(),
        }
    }

    async fn members(&self, skip: &BTreeSet<String>) -> Result<Vec<cluster::Member>, DrillError> {
        cluster::members(&self.hosts, &self.inv, &self.remote_ca, skip).await
    }
}

/// What the fault phase did.
struct Faulted {
    /// Actions injected (and undone).
    injected: Vec<Action>,
    /// When, ms since the epoch (0: never).
    fault_ms: i64,
    /// Ctrl-C cut the drill short.
    interrupted: bool,
}

/// Runs the drill; the report says what happened (`passed`, `failures`, `interrupted`).
pub async fn run(s: &Setup) -> Report {
    let timings = Timings::from_inventory(&s.inv);
    let mut r = Report::new(s.kind, s.run.as_str(), s.lab.is_some(), timings);
    let clock = Arc::new(Clock::default());
    let actions = match prepare(s, &mut r, &clock).await {
        Ok(a) => a,
        Err(e) => {
            match e {
                DrillError::Interrupted => r.interrupted = true,
                e => r.fail(format!("precondition: {e}")),
            }
            s.hosts.close_all().await;
            r.judge();
            return r;
        }
    };
    let pg = s.pg_hosts();
    if let Err(e) = start_samplers(s, &pg).await {
        r.fail(format!("sampler: {e}"));
        let _ = read_samplers(s, &pg).await;
        s.hosts.close_all().await;
        r.judge();
        return r;
    }
    s.say(
        &clock,
        &format!("samplers recording pg_is_in_recovery() on {}", pg.join(", ")),
    );
    let writer = start_writer(s, &clock);
    s.say(
        &clock,
        &format!(
            "writer: a row every {} ms into pgha_verify.drill_rows through {}_rw",
            writer::INTERVAL.as_millis(),
            s.db
        ),
    );
    let faulted = match baseline(s, &mut r, &writer, &actions).await {
        Ok(armed) => fault_phase(s, &mut r, &writer, &clock, &armed).await,
        Err(interrupted) => Faulted {
            injected: Vec::new(),
            fault_ms: 0,
            interrupted,
        },
    };
    finish(s, r, writer, &clock, &pg, faulted).await
}

/// Writes for the baseline, then arms the actions' dead-man timers. `Ok`: the armed actions;
/// `Err(interrupted)`: nothing will be faulted (a failure is recorded unless interrupted).
async fn baseline(s: &Setup, r: &mut Report, writer: &Writer, actions: &[Action]) -> Result<Vec<Action>, bool> {
    if s.pause(s.pace.baseline).await.is_err() {
        return Err(true);
    }
    if !writer.snapshot().iter().any(Attempt::ok) {
        r.fail(format!(
            "baseline: no write acknowledged through {}_rw in {:.1} s; nothing was faulted",
            s.db,
            s.pace.baseline.as_secs_f64()
        ));
        return Err(false);
    }
    match arm(s, actions).await {
        Ok(()) => Ok(actions.to_vec()),
        Err(e) => {
            r.fail(format!("dead-man timer: {e}; nothing was faulted"));
            Err(false)
        }
    }
}

/// Injects the actions, observes, undoes them (on every path), and waits for the cluster to
/// come back; then a few more writes.
async fn fault_phase(s: &Setup, r: &mut Report, writer: &Writer, clock: &Clock, armed: &[Action]) -> Faulted {
    let faulter = s.faulter();
    let fault_ms = now_ms();
    clock.set_fault(fault_ms);
    let mut injected: Vec<Action> = Vec::new();
    let mut inject_error = None;
    for a in armed {
        s.say(clock, &a.describe());
        // Recorded before it runs: undoing a fault that did not happen is harmless.
        injected.push(a.clone());
        r.faults.push(a.describe());
        if let Err(e) = faulter.inject(a).await {
            inject_error = Some(e);
            break;
        }
    }
    // A fault that failed or had no effect (systemd restarted the killed unit) is reported at
    // once: nothing to observe, nothing to wait for after the undo.
    let inject_failed = inject_error.is_some();
    let observed = match inject_error {
        Some(e) => Err(e),
        None => observe(s, r, writer, clock, fault_ms, armed).await,
    };
    let mut interrupted = false;
    match observed {
        Ok(()) => {}
        Err(DrillError::Interrupted) => interrupted = true,
        Err(e) => r.fail(e),
    }
    interrupted |= s.cancelled();
    if interrupted {
        s.say(clock, "interrupted: undoing the fault before exiting");
    }
    let restore_ms = now_ms();
    undo_all(s, r, clock, &injected).await;
    if s.kind == Kind::QuorumLoss {
        r.rw_gap_during_quorum_loss_s =
            analysis::longest_gap_within(&writer.snapshot(), now_ms(), fault_ms, restore_ms).map(|g| g.secs());
    }
    if !interrupted && !inject_failed {
        let back = match s.kind {
            Kind::Failover | Kind::Partition | Kind::EntryLoss => wait_rejoin(s, r, clock, restore_ms).await,
            Kind::QuorumLoss | Kind::Restore => wait_rw_back(s, r, writer, clock, restore_ms).await,
        };
        interrupted = back.is_err() || s.pause(s.pace.tail).await.is_err();
    }
    Faulted {
        injected,
        fault_ms,
        interrupted,
    }
}

/// Stops the writer, counts the rows, reads the samplers back, and judges.
async fn finish(s: &Setup, mut r: Report, writer: Writer, clock: &Clock, pg: &[String], f: Faulted) -> Report {
    let attempts = writer.stop().await;
    let end_ms = now_ms();
    s.say(clock, &format!("writer stopped after {} attempts", attempts.len()));
    let faulted = !f.injected.is_empty();
    if faulted
        && r.new_leader.is_none()
        && let Ok(m) = s.members(&BTreeSet::new()).await
    {
        r.new_leader = cluster::leader(&m).map(str::to_string);
    }
    if faulted {
        count_rows(s, &mut r, &attempts, f.interrupted).await;
    }
    let timelines = match read_samplers(s, pg).await {
        Ok(t) => t,
        Err(errors) => {
            for e in errors {
                r.fail(format!("sampler: {e}"));
            }
            BTreeMap::new()
        }
    };
    s.hosts.close_all().await;
    figures(s, &mut r, &attempts, &timelines, f.fault_ms, end_ms, faulted);
    r.interrupted = f.interrupted;
    r.judge();
    r
}

/// Checks everything that can be checked before touching the cluster; the actions to take.
async fn prepare(s: &Setup, r: &mut Report, clock: &Clock) -> Result<Vec<Action>, DrillError> {
    if !s.sql.available().await {
        return Err(DrillError::Step {
            step: "psql on this machine".into(),
            detail: format!(
                "`{} --version` failed; install it (apt-get install postgresql-client)",
                s.sql.program
            ),
        });
    }
    let mut wanted = s.pg_hosts();
    wanted.extend(s.inv.hosts_with(Role::Etcd).map(|h| h.name.to_string()));
    wanted.sort();
    wanted.dedup();
    let errors = s.hosts.connect(&wanted).await;
    if !errors.is_empty() {
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        return Err(DrillError::Step {
            step: "SSH".into(),
            detail: text.join("; "),
        });
    }
    let members = s.members(&BTreeSet::new()).await?;
    let expected = s.pg_hosts();
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    let healthy =
        cluster::assess(&members, &expected, s.inv.patroni.synchronous_mode).map_err(|detail| DrillError::Step {
            step: "cluster not healthy".into(),
            detail,
        })?;
    r.old_leader = Some(healthy.leader.clone());
    match cluster::rest_get(&s.hosts, &s.inv, &s.remote_ca, "/config", &BTreeSet::new())
        .await
        .and_then(|b| {
            cluster::DcsConfig::parse(&b).map_err(|detail| DrillError::Step {
                step: "Patroni /config".into(),
                detail,
            })
        }) {
        Ok(c) => r.config_differences = c.differences(&s.inv),
        Err(e) => r.warnings.push(format!("could not read Patroni's /config: {e}")),
    }
    for d in &r.config_differences {
        s.say(clock, &format!("warning: {d} (pgha deploy reconciles it)"));
    }
    let actions = plan::actions(s.kind, &s.inv, &healthy.leader, s.lab.as_ref().map(|l| &l.names))?;
    s.sql
        .run_retry(&s.sql.rw, writer::CREATE_TABLE, Duration::from_secs(30))
        .await
        .map_err(|detail| DrillError::Step {
            step: format!("RW through PgBouncer ({}_rw)", s.db),
            detail,
        })?;
    s.say(
        clock,
        &format!(
            "cluster healthy: leader {}, synchronous standby {}; run {}",
            healthy.leader,
            if healthy.sync.is_empty() {
                "none".to_string()
            } else {
                healthy.sync.join(", ")
            },
            s.run
        ),
    );
    Ok(actions)
}

async fn start_samplers(s: &Setup, pg: &[String]) -> Result<(), DrillError> {
    let port = s.inv.postgres.port.get();
    let cmd = sampler::start_cmd(&s.run, port);
    let results = join_all(pg.iter().map(|h| s.hosts.run_ok(h, &cmd, Duration::from_secs(30)))).await;
    results.into_iter().find_map(Result::err).map_or(Ok(()), Err)
}

/// Stops every sampler and reads its log back (then removes it).
async fn read_samplers(s: &Setup, pg: &[String]) -> Result<BTreeMap<String, Vec<Sample>>, Vec<DrillError>> {
    let t = Duration::from_secs(20);
    let results = join_all(pg.iter().map(|h| async move {
        let _ = s.hosts.exec(h, &sampler::stop_cmd(&s.run), t).await;
        let text = s.hosts.run_ok(h, &sampler::read_cmd(&s.run), t).await?;
        let _ = s.hosts.exec(h, &sampler::remove_cmd(&s.run), t).await;
        Ok::<_, DrillError>((h.clone(), sampler::parse(&text)))
    }))
    .await;
    let mut ok = BTreeMap::new();
    let mut errors = Vec::new();
    for res in results {
        match res {
            Ok((h, samples)) => {
                ok.insert(h, samples);
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() { Ok(ok) } else { Err(errors) }
}

fn start_writer(s: &Setup, clock: &Arc<Clock>) -> Writer {
    let progress = s.progress.clone();
    let clock = clock.clone();
    let names: Vec<(IpAddr, String)> = s.inv.hosts.iter().map(|h| (h.address, h.name.to_string())).collect();
    let on_change: writer::OnChange = Arc::new(move |a: &Attempt| {
        let tag = clock.tag(a.end_ms);
        let line = match (a.server, &a.error) {
            (Some(ip), _) => {
                let name = names
                    .iter()
                    .find(|(addr, _)| *addr == ip)
                    .map_or_else(|| ip.to_string(), |(_, n)| n.clone());
                format!("{tag} RW ok: row {} acknowledged by {name}", a.n)
            }
            (None, e) => format!("{tag} RW failing: {}", e.as_deref().unwrap_or("no answer")),
        };
        progress(&line);
    });
    Writer::start(s.sql.clone(), s.run.clone(), on_change)
}

async fn arm(s: &Setup, actions: &[Action]) -> Result<(), DrillError> {
    let f = s.faulter();
    for (i, a) in actions.iter().enumerate() {
        if let Err(e) = f.arm(a).await {
            for done in &actions[..i] {
                f.disarm(done).await;
            }
            return Err(e);
        }
    }
    Ok(())
}

async fn undo_all(s: &Setup, r: &mut Report, clock: &Clock, injected: &[Action]) {
    let f = s.faulter();
    for a in injected {
        s.say(clock, &a.describe_undo());
    }
    let results = join_all(injected.iter().map(|a| f.undo(a))).await;
    for (a, res) in injected.iter().zip(results) {
        if let Err(e) = res {
            s.say(
                clock,
                &format!("could not undo: {e}; do it by hand: {}", a.describe_undo()),
            );
            r.fail(format!("undo ({}): {e}", a.describe_undo()));
        }
    }
}

async fn observe(
    s: &Setup,
    r: &mut Report,
    w: &Writer,
    clock: &Clock,
    fault_ms: i64,
    actions: &[Action],
) -> Result<(), DrillError> {
    match s.kind {
        Kind::Failover | Kind::Partition | Kind::EntryLoss => observe_takeover(s, r, w, clock, fault_ms, actions).await,
        Kind::QuorumLoss | Kind::Restore => observe_quorum_loss(s, r, w, clock, fault_ms).await,
    }
}

/// Failover and partition: until a new leader is elected and a write is acknowledged by
/// another server than the old leader.
async fn observe_takeover(
    s: &Setup,
    r: &mut Report,
    w: &Writer,
    clock: &Clock,
    fault_ms: i64,
    actions: &[Action],
) -> Result<(), DrillError> {
    let old = r.old_leader.clone().unwrap_or_default();
    let old_addr = s.inv.host(&old).map(|h| h.address);
    let skip: BTreeSet<String> = actions
        .iter()
        .filter(|a| a.patroni_down())
        .map(|a| a.host().to_string())
        .collect();
    let bound = Timings::from_inventory(&s.inv).failover_bound();
    let deadline = Instant::now() + bound;
    loop {
        if r.new_leader.is_none()
            && let Ok(m) = s.members(&skip).await
            && let Some(l) = cluster::leader(&m).filter(|l| *l != old)
        {
            r.new_leader = Some(l.to_string());
            r.new_leader_after_s = Some(secs(now_ms() - fault_ms));
            s.say(clock, &format!("new leader {l}"));
        }
        if r.rw_back_after_s.is_none()
            && let Some(a) = analysis::first_ack_after(&w.snapshot(), fault_ms, old_addr)
        {
            r.rw_back_after_s = Some(secs(a.end_ms - fault_ms));
            let by = a.server.map(|ip| host_of(&s.inv, ip)).unwrap_or_default();
            s.say(
                clock,
                &format!(
                    "RW back through PgBouncer on {by}, {:.1} s after the fault",
                    secs(a.end_ms - fault_ms)
                ),
            );
        }
        if r.new_leader.is_some() && r.rw_back_after_s.is_some() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            s.say(
                clock,
                &format!(
                    "gave up after {} s: {}",
                    bound.as_secs(),
                    if r.new_leader.is_none() {
                        "no new leader"
                    } else {
                        "no write acknowledged by the new primary"
                    }
                ),
            );
            return Ok(());
        }
        s.pause(POLL).await?;
    }
}

/// Quorum loss: until writes are refused (or, with failsafe mode, through a hold while they
/// should keep going), then whether `<db>_ro` still answers.
async fn observe_quorum_loss(
    s: &Setup,
    r: &mut Report,
    w: &Writer,
    clock: &Clock,
    fault_ms: i64,
) -> Result<(), DrillError> {
    let t = Timings::from_inventory(&s.inv);
    if t.failsafe_mode {
        let hold = t.failsafe_hold();
        s.say(
            clock,
            &format!(
                "failsafe_mode is on: holding etcd quorum lost for {} s; RW should keep serving",
                hold.as_secs()
            ),
        );
        s.pause(hold).await?;
        if let Some(a) = analysis::first_refusal(&w.snapshot(), fault_ms, REFUSAL_RUN) {
            r.rw_refused_after_s = Some(secs(a.start_ms - fault_ms));
        }
    } else {
        let bound = t.demote_bound();
        let deadline = Instant::now() + bound;
        loop {
            if let Some(a) = analysis::first_refusal(&w.snapshot(), fault_ms, REFUSAL_RUN) {
                r.rw_refused_after_s = Some(secs(a.start_ms - fault_ms));
                s.say(
                    clock,
                    &format!(
                        "RW refuses writes, {:.1} s after the fault: {}",
                        secs(a.start_ms - fault_ms),
                        a.error.as_deref().unwrap_or("")
                    ),
                );
                break;
            }
            if Instant::now() >= deadline {
                s.say(
                    clock,
                    &format!("RW still accepts writes {} s after etcd lost quorum", bound.as_secs()),
                );
                break;
            }
            s.pause(Duration::from_millis(500)).await?;
        }
    }
    let sql = "SELECT pg_is_in_recovery()";
    match s.sql.run_retry(&s.sql.ro, sql, RO_BOUND).await {
        Ok(answer) => {
            r.ro_served = Some(true);
            s.say(
                clock,
                &format!("RO serves through {}_ro (pg_is_in_recovery: {})", s.db, answer.trim()),
            );
        }
        Err(e) => {
            r.ro_served = Some(false);
            s.say(clock, &format!("RO does not serve through {}_ro: {e}", s.db));
        }
    }
    Ok(())
}

/// After a failover or partition is undone: until the old leader streams as a replica.
async fn wait_rejoin(s: &Setup, r: &mut Report, clock: &Clock, restore_ms: i64) -> Result<(), DrillError> {
    let old = r.old_leader.clone().unwrap_or_default();
    let deadline = Instant::now() + REJOIN_BOUND;
    loop {
        if let Ok(m) = s.members(&BTreeSet::new()).await
            && cluster::rejoined(&m, &old)
        {
            r.rejoined_after_s = Some(secs(now_ms() - restore_ms));
            if let Some(l) = cluster::leader(&m) {
                r.new_leader = Some(l.to_string());
            }
            s.say(clock, &format!("{old} rejoined as a streaming replica"));
            return Ok(());
        }
        if Instant::now() >= deadline {
            s.say(
                clock,
                &format!("{old} has not rejoined as a replica after {} s", REJOIN_BOUND.as_secs()),
            );
            return Ok(());
        }
        s.pause(POLL * 2).await?;
    }
}

/// After etcd is restored: until a write is acknowledged again, then until the cluster is
/// healthy (bounded; `pgha verify` tells the rest).
async fn wait_rw_back(s: &Setup, r: &mut Report, w: &Writer, clock: &Clock, restore_ms: i64) -> Result<(), DrillError> {
    let deadline = Instant::now() + RW_BACK_BOUND;
    loop {
        if let Some(a) = analysis::first_ack_after(&w.snapshot(), restore_ms, None) {
            r.rw_back_after_restore_s = Some(secs(a.end_ms - restore_ms));
            s.say(
                clock,
                &format!("RW back, {:.1} s after etcd was restored", secs(a.end_ms - restore_ms)),
            );
            break;
        }
        if Instant::now() >= deadline {
            s.say(
                clock,
                &format!("RW not back {} s after etcd was restored", RW_BACK_BOUND.as_secs()),
            );
            return Ok(());
        }
        s.pause(Duration::from_millis(500)).await?;
    }
    let expected = s.pg_hosts();
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(m) = s.members(&BTreeSet::new()).await
            && let Ok(h) = cluster::assess(&m, &expected, s.inv.patroni.synchronous_mode)
        {
            r.new_leader = Some(h.leader.clone());
            s.say(clock, &format!("cluster healthy again, leader {}", h.leader));
            return Ok(());
        }
        if Instant::now() >= deadline {
            r.warnings
                .push("the cluster was not healthy (one leader, replicas streaming) 120 s after RW came back".into());
            return Ok(());
        }
        s.pause(POLL * 2).await?;
    }
}

async fn count_rows(s: &Setup, r: &mut Report, attempts: &[Attempt], interrupted: bool) {
    let acked = analysis::acknowledged(attempts);
    r.committed = acked.len();
    let bound = if interrupted {
        Duration::from_secs(15)
    } else {
        COUNT_BOUND
    };
    let counted = s
        .sql
        .run_retry(&s.sql.rw, &writer::count_sql(&s.run), bound)
        .await
        .and_then(|out| writer::parse_rows(&out));
    match counted {
        Ok(present) => {
            let lost = analysis::lost(&acked, &present);
            r.present = Some(present.len());
            r.lost = Some(lost.len());
            r.lost_rows = lost.into_iter().take(20).collect();
            r.unacknowledged_present = analysis::unacknowledged_present(&acked, &present).len();
        }
        Err(e) => r.fail(format!("count: could not read the rows back through {}_rw: {e}", s.db)),
    }
}

/// Fills the report's figures from the writer's attempts and the samplers' timelines.
fn figures(
    s: &Setup,
    r: &mut Report,
    attempts: &[Attempt],
    timelines: &BTreeMap<String, Vec<Sample>>,
    fault_ms: i64,
    end_ms: i64,
    faulted: bool,
) {
    r.attempts = attempts.len();
    r.failed_attempts = analysis::failed(attempts);
    if let Some(g) = analysis::longest_gap(attempts, end_ms) {
        r.rw_unavailable_s = Some(g.secs());
        r.rw_unavailable_from_s = faulted.then(|| secs(g.from_ms - fault_ms));
        r.rw_never_returned = g.open;
    }
    r.overlaps = analysis::overlaps(timelines, analysis::OVERLAP_TOLERANCE_MS);
    r.two_primaries_s = secs(analysis::two_primaries_ms(&r.overlaps));
    r.interleaving = analysis::interleaving(attempts);
    r.interleaved_writes = r.interleaving.is_some();
    if s.kind == Kind::Partition
        && faulted
        && let Some(samples) = r.old_leader.as_ref().and_then(|o| timelines.get(o))
    {
        r.old_leader_writable_s =
            Some(analysis::last_primary_after(samples, fault_ms).map_or(0.0, |t| secs(t - fault_ms)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_relative_to_the_fault() {
        let c = Clock::default();
        assert_eq!(c.tag(5000), "[before]");
        c.set_fault(10_000);
        assert_eq!(c.tag(12_345), "[t+2.3s]");
        assert_eq!(c.tag(9_000), "[t-1.0s]");
    }
}
