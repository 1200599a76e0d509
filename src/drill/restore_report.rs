//! The restore drill's report and the pure rules behind it: which of the writer's rows must be in
//! a restore to the point T (acknowledged before T was read) and which must not (started after
//! T was read), the server settings a copy of the cluster needs to replay its WAL
//! (`pg_controldata`), and the verdict. No I/O; the drill itself is [`super::restore`].

use std::collections::BTreeSet;

use serde::Serialize;

use super::writer::Attempt;

/// The restore drill's report (`pgha drill INVENTORY restore --json`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct RestoreReport {
    /// Always `restore`.
    pub drill: &'static str,
    /// The run id (the writer's rows carry it).
    pub run: String,
    /// Whether the inventory is the lab.
    pub lab: bool,
    /// The repository host.
    pub repo_host: String,
    /// The stanza.
    pub stanza: String,
    /// The PostgreSQL node the scratch instance ran on (a replica; never the primary's data).
    pub scratch_host: String,
    /// The scratch instance's data directory.
    pub scratch_dir: String,
    /// Its port (Unix socket only: it listens on no TCP address).
    pub scratch_port: u16,
    /// The primary when the drill started.
    pub primary: String,
    /// The database the writer wrote into (`pgha_verify.drill_rows`).
    pub database: String,
    /// The backup restored.
    pub backup: Option<BackupUsed>,
    /// The recovery target: the primary's clock when T was read (`YYYY-MM-DD HH:MM:SS.ffffff+00`).
    pub target_time: Option<String>,
    /// T's read window on this machine's clock, ms since the epoch: before sending, after the answer.
    pub target_window_ms: Option<(i64, i64)>,
    /// The WAL segment closed by `pg_switch_wal()` after T, which the restore needs.
    pub switched_wal: Option<String>,
    /// Seconds until the archiver had pushed it.
    pub archived_after_s: Option<f64>,
    /// `pgbackrest restore` alone, seconds.
    pub restore_s: Option<f64>,
    /// Recovery: from the instance's start until it accepted queries as a primary, seconds.
    pub recovery_s: Option<f64>,
    /// RTO: from the start of the restore until the instance accepted queries, seconds.
    pub rto_s: Option<f64>,
    /// Bytes in the scratch data directory after the restore (`du -sb`).
    pub bytes_restored: Option<u64>,
    /// The backup's database size (`info`), bytes.
    pub backup_size: Option<u64>,
    /// `bytes_restored` / `restore_s`, MB/s (10^6 bytes).
    pub restore_mb_per_s: Option<f64>,
    /// The writer's rows: what was acknowledged where, and what the copy holds.
    pub rows: Option<RowCheck>,
    /// The consistency check of the copy.
    pub consistency: Option<Consistency>,
    /// Every write of the drill's writer (the independent count of the test reads it).
    pub writes: Vec<Attempt>,
    /// Whether the scratch instance and its directory are gone.
    pub cleaned_up: bool,
    /// Asked to keep the scratch instance (`--keep`): it runs until `pgha drill … restore --clean`.
    pub kept: bool,
    /// Step timings, in order: (step, seconds).
    pub steps: Vec<(String, f64)>,
    /// What went wrong.
    pub failures: Vec<String>,
    /// Notes that do not fail the drill.
    pub warnings: Vec<String>,
    /// Ctrl-C: the scratch instance was removed and the drill stopped.
    pub interrupted: bool,
    /// Every target met.
    pub passed: bool,
}

/// The backup the drill restored.
#[derive(Clone, Debug, Serialize)]
pub struct BackupUsed {
    /// pgBackRest's label.
    pub label: String,
    /// `full`, `diff` or `incr`.
    pub kind: String,
    /// Taken by this drill (else picked with `--set`).
    pub taken: bool,
    /// How long the backup took, when taken, seconds.
    pub seconds: Option<f64>,
    /// Its stop, Unix seconds.
    pub stop: i64,
}

/// The writer's rows against the restored copy. "Before T" means acknowledged before T was
/// asked for; "after T" means sent after its answer came back; rows in flight meanwhile may be
/// on either side and are not judged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RowCheck {
    /// Writes tried.
    pub attempts: usize,
    /// Writes acknowledged.
    pub acknowledged: usize,
    /// Acknowledged before T: each must be in the copy.
    pub acked_before_t: usize,
    /// Acknowledged, sent after T: none may be in the copy.
    pub acked_after_t: usize,
    /// In flight while T was read (not judged).
    pub in_flight_at_t: Vec<u64>,
    /// Rows of the run in the copy.
    pub present: usize,
    /// Present, as ranges of row numbers.
    pub present_ranges: Vec<(u64, u64)>,
    /// Acknowledged before T and missing: the RPO, in rows (0 expected).
    pub missing: Vec<u64>,
    /// In the copy although sent after T: the restore went past its target.
    pub beyond_target: Vec<u64>,
}

impl RowCheck {
    /// Rows lost by the restore (the RPO, in rows).
    pub fn rpo_rows(&self) -> usize {
        self.missing.len()
    }
}

/// The result of the consistency check.
#[derive(Clone, Debug, Serialize)]
pub struct Consistency {
    /// What ran (`pg_amcheck --all --install-missing`).
    pub tool: String,
    /// No corruption reported.
    pub passed: bool,
    /// The tool's last lines, when it complained.
    pub detail: String,
}

/// Compares the writer's log with the row numbers present in the restored copy. T was read
/// between `before_ms` and `after_ms` (this machine's clock, as the writer's log is).
pub fn check_rows(writes: &[Attempt], before_ms: i64, after_ms: i64, present: &BTreeSet<u64>) -> RowCheck {
    let acked: Vec<&Attempt> = writes.iter().filter(|a| a.ok()).collect();
    let before: Vec<u64> = acked.iter().filter(|a| a.end_ms <= before_ms).map(|a| a.n).collect();
    let after: Vec<u64> = writes.iter().filter(|a| a.start_ms >= after_ms).map(|a| a.n).collect();
    let in_flight: Vec<u64> = writes
        .iter()
        .filter(|a| !(a.ok() && a.end_ms <= before_ms) && a.start_ms < after_ms)
        .filter(|a| a.end_ms > before_ms)
        .map(|a| a.n)
        .collect();
    RowCheck {
        attempts: writes.len(),
        acknowledged: acked.len(),
        acked_before_t: before.len(),
        acked_after_t: acked.iter().filter(|a| a.start_ms >= after_ms).count(),
        in_flight_at_t: in_flight,
        present: present.len(),
        present_ranges: ranges(present),
        missing: before.iter().copied().filter(|n| !present.contains(n)).collect(),
        beyond_target: after.iter().copied().filter(|n| present.contains(n)).collect(),
    }
}

/// `{1,2,3,5}` → `[(1,3),(5,5)]`.
pub fn ranges(set: &BTreeSet<u64>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &n in set {
        match out.last_mut() {
            Some((_, hi)) if *hi + 1 == n => *hi = n,
            _ => out.push((n, n)),
        }
    }
    out
}

/// The settings pg_control records from the primary (`pg_controldata`'s "… setting:" lines),
/// as `name=value` for `postgres -c`: a copy must run with at least these to replay the WAL as
/// a hot standby (Patroni passes them on its command line, so the copied configuration files
/// do not hold them).
pub fn controldata_settings(out: &str) -> Result<Vec<String>, String> {
    const NAMES: [(&str, &str); 6] = [
        ("max_connections setting", "max_connections"),
        ("max_worker_processes setting", "max_worker_processes"),
        ("max_wal_senders setting", "max_wal_senders"),
        ("max_prepared_xacts setting", "max_prepared_transactions"),
        ("max_locks_per_xact setting", "max_locks_per_transaction"),
        ("track_commit_timestamp setting", "track_commit_timestamp"),
    ];
    let mut found = Vec::new();
    for (label, guc) in NAMES {
        let value = out
            .lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.trim() == label)
                    .map(|(_, v)| v.trim())
            })
            .ok_or_else(|| format!("pg_controldata: no line `{label}`"))?;
        let ok = !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric());
        if !ok {
            return Err(format!("pg_controldata: unexpected value {value:?} for `{label}`"));
        }
        found.push(format!("{guc}={value}"));
    }
    Ok(found)
}

impl RestoreReport {
    /// Records a failure.
    pub fn fail(&mut self, what: impl Into<String>) {
        self.failures.push(what.into());
    }

    /// Records how long a step took.
    pub fn step(&mut self, name: &str, seconds: f64) {
        self.steps.push((name.to_string(), (seconds * 10.0).round() / 10.0));
    }

    /// Applies the targets: every row acknowledged before T present (RPO 0), none sent after T,
    /// rows on both sides of T, the copy consistent, the scratch instance gone (unless kept).
    pub fn judge(&mut self) {
        if self.interrupted {
            self.passed = false;
            return;
        }
        let mut more = Vec::new();
        match &self.rows {
            Some(r) => {
                if !r.missing.is_empty() {
                    more.push(format!(
                        "RPO: {} row(s) acknowledged before T missing in the restored copy: {:?}",
                        r.missing.len(),
                        r.missing
                    ));
                }
                if !r.beyond_target.is_empty() {
                    more.push(format!(
                        "the restore went past T: {} row(s) sent after T are present: {:?}",
                        r.beyond_target.len(),
                        r.beyond_target
                    ));
                }
                if r.acked_before_t == 0 || r.acked_after_t == 0 {
                    more.push(format!(
                        "no rows on both sides of T ({} before, {} after): nothing was proven",
                        r.acked_before_t, r.acked_after_t
                    ));
                }
            }
            None if self.failures.is_empty() => more.push("the rows were not counted".to_string()),
            None => {}
        }
        match &self.consistency {
            Some(c) if !c.passed => more.push(format!("consistency check ({}) failed: {}", c.tool, c.detail)),
            None if self.failures.is_empty() => more.push("no consistency check ran".to_string()),
            _ => {}
        }
        if !self.cleaned_up && !self.kept {
            more.push(format!(
                "the scratch instance on {} was not removed; run `pgha drill INVENTORY restore --clean`",
                self.scratch_host
            ));
        }
        self.failures.extend(more);
        self.passed = self.failures.is_empty();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(n: u64, start_ms: i64, end_ms: i64, ok: bool) -> Attempt {
        Attempt {
            n,
            start_ms,
            end_ms,
            server: ok.then(|| "10.0.0.1".parse().expect("address")),
            error: (!ok).then(|| "refused".to_string()),
        }
    }

    #[test]
    fn rows_are_judged_on_each_side_of_t() {
        // T read between 1000 and 1010: 1, 2 before; 3 in flight; 4, 5 after; 6 failed after.
        let writes = [
            w(1, 800, 850, true),
            w(2, 900, 990, true),
            w(3, 995, 1020, true),
            w(4, 1030, 1060, true),
            w(5, 1100, 1130, true),
            w(6, 1200, 1300, false),
        ];
        let present = BTreeSet::from([1, 2, 3]);
        let r = check_rows(&writes, 1000, 1010, &present);
        assert_eq!(
            (r.acked_before_t, r.acked_after_t, r.acknowledged, r.attempts),
            (2, 2, 5, 6)
        );
        assert_eq!(r.in_flight_at_t, vec![3]);
        assert!(r.missing.is_empty() && r.beyond_target.is_empty());
        assert_eq!(r.present_ranges, vec![(1, 3)]);
        // A restore that stopped early loses 2; one that ran past T holds 4 (and 6, never acked).
        let early = check_rows(&writes, 1000, 1010, &BTreeSet::from([1]));
        assert_eq!(early.missing, vec![2]);
        assert_eq!(early.rpo_rows(), 1);
        let late = check_rows(&writes, 1000, 1010, &BTreeSet::from([1, 2, 3, 4, 6]));
        assert_eq!(late.beyond_target, vec![4, 6]);
    }

    #[test]
    fn the_verdict_names_each_miss() {
        let writes = [w(1, 0, 10, true), w(2, 2000, 2010, true)];
        let mut r = RestoreReport {
            rows: Some(check_rows(&writes, 1000, 1010, &BTreeSet::from([1]))),
            consistency: Some(Consistency {
                tool: "pg_amcheck".into(),
                passed: true,
                detail: String::new(),
            }),
            cleaned_up: true,
            ..RestoreReport::default()
        };
        r.judge();
        assert!(r.passed, "{:?}", r.failures);
        let mut lost = RestoreReport {
            rows: Some(check_rows(&writes, 1000, 1010, &BTreeSet::new())),
            scratch_host: "node2".into(),
            ..r.clone()
        };
        lost.passed = false;
        lost.cleaned_up = false;
        lost.judge();
        let all = lost.failures.join("\n");
        assert!(!lost.passed);
        assert!(
            all.contains("RPO: 1 row(s)") && all.contains("node2 was not removed"),
            "{all}"
        );
        let mut one_side = RestoreReport {
            rows: Some(check_rows(&writes[..1], 1000, 1010, &BTreeSet::from([1]))),
            ..r.clone()
        };
        one_side.judge();
        assert!(one_side.failures.join(" ").contains("both sides of T"));
    }

    #[test]
    fn controldata_gives_the_replay_settings() {
        let out = "pg_control version number:            1700\n\
                   wal_level setting:                    replica\n\
                   max_connections setting:              120\n\
                   max_worker_processes setting:         8\n\
                   max_wal_senders setting:              10\n\
                   max_prepared_xacts setting:           0\n\
                   max_locks_per_xact setting:           64\n\
                   track_commit_timestamp setting:       off\n";
        let s = controldata_settings(out).expect("parses");
        assert_eq!(s[0], "max_connections=120");
        assert!(s.contains(&"max_prepared_transactions=0".to_string()));
        assert!(s.contains(&"track_commit_timestamp=off".to_string()));
        assert!(controldata_settings("nothing").is_err());
        assert!(controldata_settings(&out.replace("120", "1 2")).is_err());
    }

    #[test]
    fn ranges_compress() {
        assert_eq!(
            ranges(&BTreeSet::from([1, 2, 3, 5, 7, 8])),
            vec![(1, 3), (5, 5), (7, 8)]
        );
        assert!(ranges(&BTreeSet::new()).is_empty());
    }
}
