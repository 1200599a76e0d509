//! The drill's report — every figure `--json` prints — and the targets it is judged against:
//! no acknowledged row lost (when synchronous mode is on), never two primaries, and per drill:
//! failover back within 30 s; quorum loss refuses writes but still serves reads (or keeps
//! writing with failsafe mode); a partitioned leader stops taking writes within the TTL. Pure.

use serde::Serialize;

use super::analysis::{Interleaving, Overlap};
use super::{Kind, Timings};
use crate::inventory::SyncMode;

/// The failover target: RW back through PgBouncer within this after a leader crash.
pub const FAILOVER_TARGET_S: f64 = 30.0;

/// With failsafe mode, the longest RW gap tolerated while etcd quorum is lost.
pub const FAILSAFE_GAP_S: f64 = 5.0;

/// Everything a drill measured, and the verdict.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The drill.
    pub drill: Kind,
    /// Its run id (tags the rows in `pgha_verify.drill_rows`).
    pub run: String,
    /// Whether it ran on the lab (machine-level faults).
    pub lab: bool,
    /// The timings from the inventory.
    #[serde(flatten)]
    pub timings: Timings,
    /// RW unavailability to expect after a leader crash with these timings, seconds (low, high).
    pub expected_failover_s: (f64, f64),
    /// Where the running cluster's settings differ from the inventory.
    pub config_differences: Vec<String>,
    /// The leader before the fault.
    pub old_leader: Option<String>,
    /// The leader after the drill.
    pub new_leader: Option<String>,
    /// What was done to which host.
    pub faults: Vec<String>,
    /// The longest stretch without an acknowledged write, seconds.
    pub rw_unavailable_s: Option<f64>,
    /// When it began, seconds after the fault (negative: before).
    pub rw_unavailable_from_s: Option<f64>,
    /// RW had not come back when the writer stopped.
    pub rw_never_returned: bool,
    /// Writes attempted.
    pub attempts: usize,
    /// Writes that failed.
    pub failed_attempts: usize,
    /// Rows acknowledged (committed).
    pub committed: usize,
    /// Rows present afterwards.
    pub present: Option<usize>,
    /// Acknowledged rows missing afterwards.
    pub lost: Option<usize>,
    /// The first missing row numbers (at most 20).
    pub lost_rows: Vec<u64>,
    /// Rows present whose commit was never acknowledged (answer lost; not a loss).
    pub unacknowledged_present: usize,
    /// Time two or more nodes were primaries at once, beyond sampling error, seconds.
    pub two_primaries_s: f64,
    /// Every overlap of primaries seen, counted or within sampling error.
    pub overlaps: Vec<Overlap>,
    /// Acknowledged writes went back to a server after another had taken over.
    pub interleaved_writes: bool,
    /// The evidence, when they did.
    pub interleaving: Option<Interleaving>,
    /// Seconds from the fault until a new leader was seen (failover, partition).
    pub new_leader_after_s: Option<f64>,
    /// Seconds from the fault until a write was acknowledged by a new primary (failover, partition).
    pub rw_back_after_s: Option<f64>,
    /// Seconds from the fault until writes were refused (quorum loss).
    pub rw_refused_after_s: Option<f64>,
    /// Whether `<db>_ro` answered while quorum was lost (quorum loss).
    pub ro_served: Option<bool>,
    /// Seconds from restoring etcd until a write was acknowledged again (quorum loss).
    pub rw_back_after_restore_s: Option<f64>,
    /// Longest RW gap while quorum was lost, seconds (quorum loss).
    pub rw_gap_during_quorum_loss_s: Option<f64>,
    /// Seconds after the fault the old leader last answered as a primary (partition).
    pub old_leader_writable_s: Option<f64>,
    /// Seconds from undoing the fault until the old leader streamed as a replica.
    pub rejoined_after_s: Option<f64>,
    /// What to tune, in words.
    pub tuning: String,
    /// Steps that failed and targets missed, each named.
    pub failures: Vec<String>,
    /// Notes that are not failures.
    pub warnings: Vec<String>,
    /// Ctrl-C stopped the drill (the fault was undone first).
    pub interrupted: bool,
    /// Every target met and every step done.
    pub passed: bool,
}

impl Report {
    /// An empty report for `drill`.
    pub fn new(drill: Kind, run: &str, lab: bool, timings: Timings) -> Self {
        Self {
            drill,
            run: run.to_string(),
            lab,
            expected_failover_s: timings.expected_failover_s(),
            tuning: timings.tuning_hint(),
            timings,
            config_differences: Vec::new(),
            old_leader: None,
            new_leader: None,
            faults: Vec::new(),
            rw_unavailable_s: None,
            rw_unavailable_from_s: None,
            rw_never_returned: false,
            attempts: 0,
            failed_attempts: 0,
            committed: 0,
            present: None,
            lost: None,
            lost_rows: Vec::new(),
            unacknowledged_present: 0,
            two_primaries_s: 0.0,
            overlaps: Vec::new(),
            interleaved_writes: false,
            interleaving: None,
            new_leader_after_s: None,
            rw_back_after_s: None,
            rw_refused_after_s: None,
            ro_served: None,
            rw_back_after_restore_s: None,
            rw_gap_during_quorum_loss_s: None,
            old_leader_writable_s: None,
            rejoined_after_s: None,
            failures: Vec::new(),
            warnings: Vec::new(),
            interrupted: false,
            passed: false,
        }
    }

    /// Records a failed step.
    pub fn fail(&mut self, what: impl std::fmt::Display) {
        self.failures.push(what.to_string());
    }

    /// Judges the figures against the targets, adds the misses to `failures`, sets `passed`.
    pub fn judge(&mut self) {
        let missed = targets_missed(self);
        self.failures.extend(missed);
        self.passed = self.failures.is_empty() && !self.interrupted;
    }
}

/// The targets `r` misses, each in words.
pub fn targets_missed(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    if r.interrupted || r.faults.is_empty() {
        // Nothing was faulted (a step failed first, and says so) or Ctrl-C cut it short.
        return out;
    }
    match r.lost {
        Some(n) if n > 0 && r.timings.synchronous_mode != SyncMode::Off => out.push(format!(
            "data: {n} acknowledged row(s) missing although synchronous mode is on (first: {:?})",
            r.lost_rows
        )),
        None if r.committed > 0 => out.push("data: the rows could not be counted after the drill".to_string()),
        _ => {}
    }
    if r.two_primaries_s > 0.0 {
        let hosts: Vec<String> = r
            .overlaps
            .iter()
            .filter(|o| o.counted)
            .map(|o| o.hosts.join("+"))
            .collect();
        out.push(format!(
            "split brain: two primaries for {:.1} s ({})",
            r.two_primaries_s,
            hosts.join(", ")
        ));
    }
    if let Some(i) = &r.interleaving {
        out.push(format!(
            "split brain: {} acknowledged row {} after {} had taken over",
            i.first, i.n, i.second
        ));
    }
    let new_leader_elsewhere = matches!((&r.old_leader, &r.new_leader), (Some(o), Some(n)) if o != n);
    match r.drill {
        Kind::Failover | Kind::Partition | Kind::EntryLoss => {
            if !new_leader_elsewhere {
                out.push(format!(
                    "no new leader: before {}, after {}",
                    r.old_leader.as_deref().unwrap_or("?"),
                    r.new_leader.as_deref().unwrap_or("none")
                ));
            }
            if r.rw_back_after_s.is_none() {
                out.push("RW did not come back on a new primary".to_string());
            }
            if r.rejoined_after_s.is_none() {
                out.push(format!(
                    "{} did not rejoin as a streaming replica",
                    r.old_leader.as_deref().unwrap_or("the old leader")
                ));
            }
        }
        Kind::Restore => {}
        Kind::QuorumLoss => {
            if r.timings.failsafe_mode {
                if let Some(g) = r.rw_gap_during_quorum_loss_s.filter(|g| *g > FAILSAFE_GAP_S) {
                    out.push(format!(
                        "failsafe: RW stopped for {g:.1} s while etcd quorum was lost (failsafe_mode should keep the primary; target ≤ {FAILSAFE_GAP_S} s)"
                    ));
                }
            } else {
                if r.rw_refused_after_s.is_none() {
                    out.push(
                        "quorum loss: RW kept accepting writes without etcd quorum (without failsafe_mode the primary must demote)"
                            .to_string(),
                    );
                }
                if r.ro_served != Some(true) {
                    out.push("quorum loss: RO did not serve while etcd quorum was lost".to_string());
                }
            }
            if r.rw_back_after_restore_s.is_none() {
                out.push("quorum loss: RW did not come back after etcd was restored".to_string());
            }
        }
    }
    if r.drill == Kind::Failover
        && let Some(u) = r.rw_unavailable_s.filter(|u| *u > FAILOVER_TARGET_S)
    {
        out.push(format!(
            "failover: RW unavailable for {u:.1} s (target ≤ {FAILOVER_TARGET_S:.0} s with these timings; see tuning)"
        ));
    }
    if r.drill == Kind::Partition
        && let Some(w) = r.old_leader_writable_s.filter(|w| *w > f64::from(r.timings.ttl))
    {
        out.push(format!(
            "partition: the old leader still answered as a primary {w:.1} s after it was cut off (ttl {} s)",
            r.timings.ttl
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timings(failsafe: bool, sync: SyncMode) -> Timings {
        crate::drill::sample_timings(failsafe, sync)
    }

    fn good_failover() -> Report {
        let mut r = Report::new(Kind::Failover, "drill-1", true, timings(false, SyncMode::On));
        r.faults = vec!["crash node1 (pgha lab stop node1)".into()];
        r.old_leader = Some("node1".into());
        r.new_leader = Some("node2".into());
        r.rw_unavailable_s = Some(24.0);
        r.rw_back_after_s = Some(23.9);
        r.rejoined_after_s = Some(40.0);
        r.committed = 500;
        r.present = Some(501);
        r.lost = Some(0);
        r
    }

    fn quorum_loss(failsafe: bool) -> Report {
        let mut r = Report::new(Kind::QuorumLoss, "d", true, timings(failsafe, SyncMode::On));
        r.faults = vec!["crash etcd1".into(), "crash etcd2".into()];
        r.lost = Some(0);
        r
    }

    #[test]
    fn a_clean_failover_passes() {
        let mut r = good_failover();
        r.judge();
        assert!(r.passed, "{:?}", r.failures);
        let json = serde_json::to_value(&r).expect("serializes");
        for key in [
            "ttl",
            "loop_wait",
            "retry_timeout",
            "haproxy_inter_ms",
            "haproxy_fall",
            "haproxy_rise",
            "rw_unavailable_s",
            "attempts",
            "committed",
            "present",
            "lost",
            "two_primaries_s",
            "interleaved_writes",
            "new_leader",
            "old_leader",
            "passed",
            "failures",
        ] {
            assert!(json.get(key).is_some(), "no {key} in {json}");
        }
        assert_eq!(json["drill"], "failover");
        assert_eq!(json["synchronous_mode"], "on");
    }

    #[test]
    fn each_missed_target_is_named() {
        let mut r = good_failover();
        r.rw_unavailable_s = Some(41.5);
        r.lost = Some(2);
        r.lost_rows = vec![17, 18];
        r.two_primaries_s = 1.2;
        r.overlaps = vec![Overlap {
            from_ms: 0,
            to_ms: 1200,
            hosts: vec!["node1".into(), "node2".into()],
            counted: true,
        }];
        r.new_leader = Some("node1".into());
        r.judge();
        assert!(!r.passed);
        let all = r.failures.join("\n");
        assert!(all.contains("2 acknowledged row(s) missing"), "{all}");
        assert!(all.contains("two primaries for 1.2 s (node1+node2)"), "{all}");
        assert!(all.contains("RW unavailable for 41.5 s"), "{all}");
        assert!(all.contains("no new leader"), "{all}");
    }

    #[test]
    fn asynchronous_loss_is_reported_not_failed() {
        let mut r = good_failover();
        r.timings.synchronous_mode = SyncMode::Off;
        r.lost = Some(3);
        r.judge();
        assert!(r.passed, "{:?}", r.failures);
    }

    #[test]
    fn quorum_loss_must_refuse_writes_and_serve_reads_without_failsafe() {
        let mut r = quorum_loss(false);
        r.rw_back_after_restore_s = Some(20.0);
        r.judge();
        let all = r.failures.join("\n");
        assert!(all.contains("kept accepting writes"), "{all}");
        assert!(all.contains("RO did not serve"), "{all}");

        let mut r = quorum_loss(false);
        r.rw_refused_after_s = Some(14.0);
        r.ro_served = Some(true);
        r.rw_back_after_restore_s = Some(20.0);
        r.rw_unavailable_s = Some(75.0);
        r.judge();
        assert!(r.passed, "{:?}", r.failures);
    }

    #[test]
    fn quorum_loss_with_failsafe_must_keep_writing() {
        let mut r = quorum_loss(true);
        r.rw_back_after_restore_s = Some(0.1);
        r.rw_gap_during_quorum_loss_s = Some(0.2);
        r.judge();
        assert!(r.passed, "{:?}", r.failures);
        r.rw_gap_during_quorum_loss_s = Some(12.0);
        r.failures.clear();
        r.judge();
        assert!(r.failures.join("\n").contains("failsafe: RW stopped for 12.0 s"));
    }

    #[test]
    fn a_partitioned_leader_must_stop_within_the_ttl() {
        let mut r = good_failover();
        r.drill = Kind::Partition;
        r.rw_unavailable_s = Some(45.0);
        r.old_leader_writable_s = Some(18.0);
        r.judge();
        assert!(r.passed, "{:?}", r.failures);
        r.old_leader_writable_s = Some(31.0);
        r.failures.clear();
        r.judge();
        assert!(r.failures.join("\n").contains("31.0 s after it was cut off (ttl 30 s)"));
    }

    #[test]
    fn an_interrupted_drill_does_not_pass_but_is_not_judged() {
        let mut r = good_failover();
        r.new_leader = None;
        r.interrupted = true;
        r.judge();
        assert!(!r.passed);
        assert!(r.failures.is_empty());
    }

    #[test]
    fn without_a_fault_only_the_failed_step_is_reported() {
        let mut r = Report::new(Kind::Failover, "d", true, timings(false, SyncMode::On));
        r.fail("precondition: cluster not healthy: 0 leader(s) [], one expected");
        r.judge();
        assert!(!r.passed);
        assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
    }
}
