//! `pgha drill INVENTORY entry-loss`: lose the entry host holding the VIP under the drill's
//! writer, and measure what an application on the VIP sees. The writer ([`super::writer`])
//! commits a row every 100 ms through PgBouncer `<db>_rw` *on the VIP*; a sampler per entry host
//! asks that host every [`SAMPLE_EVERY`] whether it holds the VIP (`ip -o -4 addr show to
//! VIP/32` over SSH: the host's own view, so a VIP on two hosts is seen from both). The fault is
//! a crash on the lab (`pgha lab stop`, which also drops the addresses keepalived had added: a
//! crashed kernel answers no ARP) and `systemctl stop keepalived pgbouncer haproxy` on real
//! hosts (each with a dead-man timer). Reported: the longest RW gap, the failed attempts, when
//! the VIP moved and whether two hosts ever held it at once. Target: RW back within
//! [`TARGET_S`], never two holders. Printing lives in `cli::drill`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use super::analysis;
use super::cluster::Hosts;
use super::fault::Faulter;
use super::plan::Action;
use super::writer::{self, SqlTarget, Writer};
use super::{DrillError, Progress, RunId, now_ms};
use crate::inventory::{Inventory, Vip};
use crate::lab::LabPaths;

/// How often each entry host is asked whether it holds the VIP.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// RW must be back through the VIP within this many seconds of the crash.
pub const TARGET_S: f64 = 5.0;
/// How long RW may take to come back before the drill gives up waiting.
const RW_BACK_BOUND: Duration = Duration::from_secs(30);
/// Writes before the fault, and after RW is back.
const BASELINE: Duration = Duration::from_secs(3);
/// Sampling after the fault is undone: the returning host must not take the VIP back.
const SETTLE: Duration = Duration::from_secs(5);
/// The units stopped on a real entry host (keepalived first, so the VIP leaves at once).
pub const REAL_HOST_UNITS: [&str; 3] = ["keepalived", "pgbouncer", "haproxy"];

/// One answer of one entry host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VipSample {
    /// When the answer came, ms since the epoch.
    pub at_ms: i64,
    /// Whether the host holds the VIP; `None` when it did not answer (down, cut off).
    pub holds: Option<bool>,
}

/// Two hosts holding the VIP at once.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TwoHolders {
    /// The hosts.
    pub hosts: (String, String),
    /// When it began, seconds after the fault.
    pub from_s: f64,
    /// How long, seconds (0 for a single sample each).
    pub duration_s: f64,
}

/// What the entry-loss drill saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EntryReport {
    /// `entry-loss`.
    pub drill: &'static str,
    /// Its run id (tags the rows in `pgha_verify.drill_rows`).
    pub run: String,
    /// Whether it ran on the lab (a machine crash).
    pub lab: bool,
    /// The VIP.
    pub vip: String,
    /// Who held it before the fault.
    pub holder_before: Option<String>,
    /// Who held it at the end.
    pub holder_after: Option<String>,
    /// What was done.
    pub faults: Vec<String>,
    /// The longest stretch without an acknowledged write, seconds.
    pub rw_unavailable_s: Option<f64>,
    /// Seconds from the fault until the first acknowledged write.
    pub rw_back_after_s: Option<f64>,
    /// Seconds from the fault until another host was seen holding the VIP.
    pub vip_moved_after_s: Option<f64>,
    /// Writes attempted.
    pub attempts: usize,
    /// Writes that failed.
    pub failed_attempts: usize,
    /// Writes acknowledged.
    pub committed: usize,
    /// Answers per entry host (held / not held / no answer).
    pub samples: BTreeMap<String, (usize, usize, usize)>,
    /// Every time two hosts held the VIP at once.
    pub two_holders: Vec<TwoHolders>,
    /// The RW target, seconds.
    pub target_s: f64,
    /// Whether every target was met.
    pub passed: bool,
    /// The step that failed, if one did.
    pub failed_step: Option<String>,
    /// Stopped by Ctrl-C (the fault was undone).
    pub interrupted: bool,
}

/// Everything the drill needs.
pub struct EntrySetup {
    /// The inventory (it has a VIP).
    pub inv: Inventory,
    /// Its id.
    pub run: RunId,
    /// SSH connections.
    pub hosts: Arc<Hosts>,
    /// The lab and its machine names, when the inventory is the lab.
    pub lab: Option<(LabPaths, BTreeMap<String, String>)>,
    /// The writer's target: `<db>_rw` on the VIP.
    pub sql: Arc<SqlTarget>,
    /// Progress lines.
    pub progress: Progress,
    /// Becomes true on Ctrl-C.
    pub cancel: watch::Receiver<bool>,
}

pub use crate::facts::vip::{holds_cmd, parse_holds};

/// The stretches a host held the VIP: runs of consecutive holding answers, `[first, last]`.
pub fn holding_runs(samples: &[VipSample]) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut run: Option<(i64, i64)> = None;
    for s in samples {
        match (s.holds, run) {
            (Some(true), None) => run = Some((s.at_ms, s.at_ms)),
            (Some(true), Some((a, _))) => run = Some((a, s.at_ms)),
            (_, Some(r)) => {
                out.push(r);
                run = None;
            }
            (_, None) => {}
        }
    }
    out.extend(run);
    out
}

/// Every overlap of two hosts' holding runs (touching runs count: both answered "mine" at
/// the same instant).
pub fn two_holders(samples: &BTreeMap<String, Vec<VipSample>>, fault_ms: i64) -> Vec<TwoHolders> {
    let runs: Vec<(&String, Vec<(i64, i64)>)> = samples.iter().map(|(h, s)| (h, holding_runs(s))).collect();
    let mut out = Vec::new();
    for (i, (a, ra)) in runs.iter().enumerate() {
        for (b, rb) in runs.iter().skip(i + 1) {
            for &(a0, a1) in ra {
                for &(b0, b1) in rb {
                    let (from, to) = (a0.max(b0), a1.min(b1));
                    if from <= to {
                        out.push(TwoHolders {
                            hosts: ((*a).clone(), (*b).clone()),
                            from_s: (from - fault_ms) as f64 / 1000.0,
                            duration_s: (to - from) as f64 / 1000.0,
                        });
                    }
                }
            }
        }
    }
    out
}

/// The fault for the VIP's holder: a machine crash on the lab, else its services stopped.
pub fn actions(holder: &str, lab_name: Option<&String>) -> Vec<Action> {
    match lab_name {
        Some(lab_name) => vec![Action::CrashLabHost {
            host: holder.to_string(),
            lab_name: lab_name.clone(),
        }],
        None => REAL_HOST_UNITS
            .iter()
            .map(|unit| Action::StopService {
                host: holder.to_string(),
                unit,
            })
            .collect(),
    }
}

/// What the drill would do (shown without `--yes`).
pub fn preview(inv: &Inventory, vip: &Vip, db: &str, lab: bool) -> Vec<String> {
    let entries: Vec<&str> = inv.entry_hosts().map(|h| h.name.as_str()).collect();
    vec![
        format!(
            "pgha drill entry-loss on {} ({}):",
            if lab { "the lab" } else { "these hosts" },
            inv.path.display()
        ),
        format!(
            "  1. find which of {} holds the VIP {} (each host asked: ip -o -4 addr show to {}/32)",
            entries.join(", "),
            vip.address,
            vip.address
        ),
        format!(
            "  2. commit numbered rows into pgha_verify.drill_rows every 100 ms through PgBouncer {db}_rw on the VIP ({}); sample every entry host every {} ms",
            vip.client_name(),
            SAMPLE_EVERY.as_millis()
        ),
        if lab {
            "  3. crash the holder's machine (pgha lab stop), wait for another entry host to take the VIP and RW to return, then boot it again (pgha lab start)".to_string()
        } else {
            format!(
                "  3. on the holder: systemctl stop {} (each guarded by a dead-man timer); wait for another entry host to take the VIP and RW to return; start them again",
                REAL_HOST_UNITS.join(" ")
            )
        },
        format!(
            "  4. report the longest RW gap (target {TARGET_S} s), failed writes, when the VIP moved and whether two hosts ever held it (Ctrl-C undoes the fault first)"
        ),
    ]
}

type Samples = Arc<Mutex<BTreeMap<String, Vec<VipSample>>>>;

/// Starts one sampler per entry host; they stop when `stop` becomes true.
fn start_samplers(
    s: &EntrySetup,
    vip: IpAddr,
    stop: &watch::Receiver<bool>,
) -> (Samples, Vec<tokio::task::JoinHandle<()>>) {
    let samples: Samples = Arc::new(Mutex::new(BTreeMap::new()));
    let mut handles = Vec::new();
    for h in s.inv.entry_hosts() {
        let (name, hosts, samples, mut stop) = (h.name.to_string(), s.hosts.clone(), samples.clone(), stop.clone());
        handles.push(tokio::spawn(async move {
            let cmd = holds_cmd(vip);
            loop {
                if *stop.borrow() {
                    break;
                }
                let t0 = Instant::now();
                let holds = match hosts.exec(&name, &cmd, Duration::from_secs(1)).await {
                    Ok(out) if out.success() => Some(parse_holds(&out.stdout_text())),
                    _ => None,
                };
                if let Ok(mut m) = samples.lock() {
                    m.entry(name.clone())
                        .or_default()
                        .push(VipSample { at_ms: now_ms(), holds });
                }
                if let Some(rest) = SAMPLE_EVERY.checked_sub(t0.elapsed()) {
                    tokio::select! {
                        _ = tokio::time::sleep(rest) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        }));
    }
    (samples, handles)
}

/// The hosts holding the VIP right now (each asked once).
async fn holders(s: &EntrySetup, vip: IpAddr) -> Result<Vec<String>, DrillError> {
    let mut out = Vec::new();
    for h in s.inv.entry_hosts() {
        let text = s
            .hosts
            .run_ok(h.name.as_str(), &holds_cmd(vip), Duration::from_secs(20))
            .await?;
        if parse_holds(&text) {
            out.push(h.name.to_string());
        }
    }
    Ok(out)
}

/// The host seen holding the VIP last, and when another than `not` first held it after `after_ms`.
fn latest_holder(samples: &BTreeMap<String, Vec<VipSample>>) -> Option<String> {
    samples
        .iter()
        .filter_map(|(h, v)| {
            v.iter()
                .rev()
                .find(|s| s.holds.is_some())
                .filter(|s| s.holds == Some(true))
                .map(|s| (s.at_ms, h))
        })
        .max()
        .map(|(_, h)| h.clone())
}

fn moved_at(samples: &BTreeMap<String, Vec<VipSample>>, not: &str, after_ms: i64) -> Option<i64> {
    samples
        .iter()
        .filter(|(h, _)| h.as_str() != not)
        .filter_map(|(_, v)| {
            v.iter()
                .find(|s| s.at_ms >= after_ms && s.holds == Some(true))
                .map(|s| s.at_ms)
        })
        .min()
}

impl EntrySetup {
    fn say(&self, msg: &str) {
        (self.progress)(msg);
    }

    fn cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    async fn pause(&self, d: Duration) -> Result<(), DrillError> {
        let mut rx = self.cancel.clone();
        if *rx.borrow() {
            return Err(DrillError::Interrupted);
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            r = rx.wait_for(|v| *v) => match r {
                Ok(_) => Err(DrillError::Interrupted),
                Err(_) => { tokio::time::sleep(d).await; Ok(()) }
            },
        }
    }
}

/// Runs the drill; every way out undoes the fault first.
pub async fn run(s: &EntrySetup) -> EntryReport {
    let mut r = EntryReport {
        drill: "entry-loss",
        run: s.run.to_string(),
        lab: s.lab.is_some(),
        target_s: TARGET_S,
        ..EntryReport::default()
    };
    let Some(vip) = s.inv.vip.clone() else {
        r.failed_step = Some("the inventory has no vip".into());
        return r;
    };
    r.vip = vip.address.to_string();
    match observe(s, &vip, &mut r).await {
        Ok(()) => {}
        Err(DrillError::Interrupted) => r.interrupted = true,
        Err(e) => r.failed_step = Some(e.to_string()),
    }
    r.passed = !r.interrupted
        && r.failed_step.is_none()
        && r.rw_unavailable_s.is_some_and(|g| g <= TARGET_S)
        && r.two_holders.is_empty()
        && r.holder_after.is_some()
        && r.holder_after != r.holder_before;
    r
}

async fn observe(s: &EntrySetup, vip: &Vip, r: &mut EntryReport) -> Result<(), DrillError> {
    let entries: Vec<String> = s.inv.entry_hosts().map(|h| h.name.to_string()).collect();
    let errors = s.hosts.connect(&entries).await;
    if let Some(e) = errors.into_iter().next() {
        return Err(e);
    }
    let now = holders(s, vip.address).await?;
    let [holder] = now.as_slice() else {
        return Err(DrillError::Step {
            step: "find the VIP's holder".into(),
            detail: format!(
                "{} entry host(s) hold {} ({}); expected exactly one",
                now.len(),
                vip.address,
                now.join(", ")
            ),
        });
    };
    let holder = holder.clone();
    r.holder_before = Some(holder.clone());
    s.say(&format!("{} holds the VIP {}", holder, vip.address));
    s.sql
        .run_retry(&s.sql.rw, writer::CREATE_TABLE, Duration::from_secs(30))
        .await
        .map_err(|e| DrillError::Step {
            step: format!("RW through the VIP ({})", vip.client_name()),
            detail: e,
        })?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (samples, handles) = start_samplers(s, vip.address, &stop_rx);
    let progress = s.progress.clone();
    let w = Writer::start(
        s.sql.clone(),
        s.run.clone(),
        Arc::new(move |a| {
            progress(&if a.ok() {
                format!("writes acknowledged again (row {})", a.n)
            } else {
                format!("writes failing (row {}): {}", a.n, a.error.as_deref().unwrap_or("-"))
            })
        }),
    );
    let lab_name = s.lab.as_ref().and_then(|(_, names)| names.get(&holder));
    let acts = actions(&holder, lab_name);
    let faulter = Faulter {
        hosts: &s.hosts,
        lab: s.lab.as_ref().map(|(p, _)| p),
        run: &s.run,
        progress: s.progress.clone(),
    };
    let mut fault_ms = 0;
    let mut injected = Vec::new();
    let outcome: Result<(), DrillError> = async {
        s.pause(BASELINE).await?;
        for a in &acts {
            faulter.arm(a).await?;
        }
        fault_ms = now_ms();
        for a in &acts {
            s.say(&a.describe());
            injected.push(a.clone());
            faulter.inject(a).await?;
            r.faults.push(a.describe());
        }
        let deadline = Instant::now() + RW_BACK_BOUND;
        loop {
            let back = w.snapshot().iter().any(|a| a.ok() && a.start_ms > fault_ms);
            let moved = samples
                .lock()
                .map(|m| moved_at(&m, &holder, fault_ms).is_some())
                .unwrap_or(false);
            if back && moved {
                break;
            }
            if Instant::now() >= deadline {
                return Err(DrillError::Step {
                    step: "wait for RW through the VIP".into(),
                    detail: format!(
                        "{} {}s after the fault",
                        if back {
                            "another host did not take the VIP within"
                        } else {
                            "no write was acknowledged within"
                        },
                        RW_BACK_BOUND.as_secs()
                    ),
                });
            }
            s.pause(Duration::from_millis(100)).await?;
        }
        s.pause(BASELINE).await
    }
    .await;
    let attempts = w.stop().await;
    // Undo on every way out (Ctrl-C included), then watch the returning host stay a backup.
    let mut undo_error = None;
    for a in injected.iter().rev() {
        s.say(&a.describe_undo());
        if let Err(e) = faulter.undo(a).await {
            undo_error.get_or_insert(e);
        }
    }
    if outcome.is_ok() && undo_error.is_none() && !s.cancelled() {
        s.say(&format!("watching the VIP for {} s more", SETTLE.as_secs()));
        let _ = s.pause(SETTLE).await;
    }
    let _ = stop_tx.send(true);
    for h in handles {
        let _ = h.await;
    }
    let samples = samples.lock().map(|m| m.clone()).unwrap_or_default();
    let end_ms = now_ms();
    r.attempts = attempts.len();
    r.failed_attempts = analysis::failed(&attempts);
    r.committed = attempts.iter().filter(|a| a.ok()).count();
    r.rw_unavailable_s = analysis::longest_gap(&attempts, end_ms).map(|g| g.secs());
    if fault_ms > 0 {
        r.rw_back_after_s =
            analysis::first_ack_after(&attempts, fault_ms, None).map(|a| (a.end_ms - fault_ms) as f64 / 1000.0);
        r.vip_moved_after_s = moved_at(&samples, &holder, fault_ms).map(|t| (t - fault_ms) as f64 / 1000.0);
    }
    r.two_holders = two_holders(&samples, fault_ms);
    r.holder_after = latest_holder(&samples);
    r.samples = samples
        .iter()
        .map(|(h, v)| {
            let count = |want: Option<bool>| v.iter().filter(|s| s.holds == want).count();
            (h.clone(), (count(Some(true)), count(Some(false)), count(None)))
        })
        .collect();
    outcome?;
    match undo_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at_ms: i64, holds: Option<bool>) -> VipSample {
        VipSample { at_ms, holds }
    }

    #[test]
    fn two_holders_are_overlapping_runs_only() {
        let a = vec![s(0, Some(true)), s(200, Some(true)), s(400, None), s(600, None)];
        let b = vec![
            s(100, Some(false)),
            s(300, Some(false)),
            s(500, Some(true)),
            s(700, Some(true)),
        ];
        assert_eq!(holding_runs(&a), [(0, 200)]);
        assert_eq!(holding_runs(&b), [(500, 700)]);
        let mut m = BTreeMap::from([("e1".to_string(), a), ("e2".to_string(), b)]);
        assert!(two_holders(&m, 0).is_empty());
        assert_eq!(moved_at(&m, "e1", 100), Some(500));
        assert_eq!(latest_holder(&m).as_deref(), Some("e2"));
        m.get_mut("e1").expect("e1").push(s(650, Some(true)));
        let two = two_holders(&m, 0);
        assert_eq!(two.len(), 1);
        assert_eq!(two[0].hosts, ("e1".to_string(), "e2".to_string()));
        assert!((two[0].from_s - 0.65).abs() < 1e-9 && two[0].duration_s == 0.0);
    }

    #[test]
    fn the_fault_is_a_crash_on_the_lab_and_stopped_services_elsewhere() {
        let lab = actions("entry1", Some(&"entry1".to_string()));
        assert!(matches!(&lab[..], [Action::CrashLabHost { host, .. }] if host == "entry1"));
        let real = actions("entry1", None);
        assert_eq!(real.len(), 3);
        assert!(matches!(&real[0], Action::StopService { unit: "keepalived", .. }));
    }
}
