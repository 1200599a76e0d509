//! What the drill's records say, as pure functions: the writer's gaps and failures, rows lost
//! (acknowledged but absent), whether acknowledged writes interleaved between two servers, and
//! from the samplers' timelines how long two nodes were primaries at once.
//!
//! Sample granularity: each `f` sample stands for the half period either side of it, so a run
//! of `f` samples `t1…tn` covers `[t1 − p/2, tn + p/2]`. Overlaps between two hosts' runs no
//! longer than the tolerance are kept in the list but not counted: they are within what
//! sampling (period, probe time, clock skew) cannot resolve.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::Serialize;

use super::sampler::{PERIOD_MS, PgState, Sample};
use super::writer::Attempt;

/// Overlaps of primaries at most this long are sampling error, not split brain.
pub const OVERLAP_TOLERANCE_MS: i64 = 500;

/// A stretch without acknowledged writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// The last acknowledged write before it (or the writer's start), ms since the epoch.
    pub from_ms: i64,
    /// The next acknowledged write (or the writer's end when none came).
    pub to_ms: i64,
    /// No acknowledged write ended it: RW never came back.
    pub open: bool,
}

impl Gap {
    /// Its length in seconds.
    pub fn secs(&self) -> f64 {
        (self.to_ms - self.from_ms) as f64 / 1000.0
    }
}

/// Gaps between consecutive acknowledged writes, measured between their acknowledgements;
/// the stretch from the last one to `end_ms` is an open gap. Attempts are in order.
pub fn gaps(attempts: &[Attempt], end_ms: i64) -> Vec<Gap> {
    let Some(first) = attempts.first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut last = first.start_ms;
    for a in attempts.iter().filter(|a| a.ok()) {
        out.push(Gap {
            from_ms: last,
            to_ms: a.end_ms,
            open: false,
        });
        last = a.end_ms;
    }
    if attempts.last().is_some_and(|a| !a.ok()) {
        out.push(Gap {
            from_ms: last,
            to_ms: end_ms.max(last),
            open: true,
        });
    }
    out
}

/// The longest gap.
pub fn longest_gap(attempts: &[Attempt], end_ms: i64) -> Option<Gap> {
    gaps(attempts, end_ms).into_iter().max_by_key(|g| g.to_ms - g.from_ms)
}

/// The longest gap that overlaps `[from_ms, to_ms]`.
pub fn longest_gap_within(attempts: &[Attempt], end_ms: i64, from_ms: i64, to_ms: i64) -> Option<Gap> {
    gaps(attempts, end_ms)
        .into_iter()
        .filter(|g| g.to_ms >= from_ms && g.from_ms <= to_ms)
        .max_by_key(|g| g.to_ms - g.from_ms)
}

/// Attempts that failed.
pub fn failed(attempts: &[Attempt]) -> usize {
    attempts.iter().filter(|a| !a.ok()).count()
}

/// Row numbers that were acknowledged.
pub fn acknowledged(attempts: &[Attempt]) -> BTreeSet<u64> {
    attempts.iter().filter(|a| a.ok()).map(|a| a.n).collect()
}

/// Acknowledged rows that are not present: committed data lost.
pub fn lost(acked: &BTreeSet<u64>, present: &BTreeSet<u64>) -> Vec<u64> {
    acked.difference(present).copied().collect()
}

/// Present rows that were never acknowledged (the commit happened, its answer was lost): not a
/// loss, reported for completeness.
pub fn unacknowledged_present(acked: &BTreeSet<u64>, present: &BTreeSet<u64>) -> Vec<u64> {
    present.difference(acked).copied().collect()
}

/// The first attempt that started at or after `t_ms` and began a run of `k` failures in a row.
pub fn first_refusal(attempts: &[Attempt], t_ms: i64, k: usize) -> Option<&Attempt> {
    let after: Vec<&Attempt> = attempts.iter().filter(|a| a.start_ms >= t_ms).collect();
    after
        .windows(k.max(1))
        .find(|w| w.iter().all(|a| !a.ok()))
        .map(|w| w[0])
}

/// The first acknowledged write that started at or after `t_ms`, from a server other than
/// `not_from` when given.
pub fn first_ack_after(attempts: &[Attempt], t_ms: i64, not_from: Option<IpAddr>) -> Option<&Attempt> {
    attempts
        .iter()
        .find(|a| a.start_ms >= t_ms && a.ok() && (not_from.is_none() || a.server != not_from))
}

/// Evidence that two primaries accepted writes: acknowledged rows came from `first`, then from
/// `second`, then from `first` again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Interleaving {
    /// The server that was replaced and then wrote again.
    pub first: IpAddr,
    /// The server that had replaced it.
    pub second: IpAddr,
    /// The row `first` acknowledged after `second` had started.
    pub n: u64,
    /// When, ms since the epoch.
    pub at_ms: i64,
}

/// Finds acknowledged writes going back to a server after another had taken over. (A second
/// failover back to the first server would look the same; a drill makes only one.)
pub fn interleaving(attempts: &[Attempt]) -> Option<Interleaving> {
    let mut current: Option<IpAddr> = None;
    let mut replaced: Vec<(IpAddr, IpAddr)> = Vec::new();
    for a in attempts.iter().filter(|a| a.ok()) {
        let Some(s) = a.server else { continue };
        match current {
            Some(c) if c == s => {}
            Some(c) => {
                if let Some((_, by)) = replaced.iter().find(|(old, _)| *old == s) {
                    return Some(Interleaving {
                        first: s,
                        second: *by,
                        n: a.n,
                        at_ms: a.end_ms,
                    });
                }
                replaced.push((c, s));
                current = Some(s);
            }
            None => current = Some(s),
        }
    }
    None
}

/// The stretches during which one host answered "not in recovery", with the half-period margin.
pub fn primary_runs(samples: &[Sample]) -> Vec<(i64, i64)> {
    let half = PERIOD_MS / 2;
    let mut out = Vec::new();
    let mut run: Option<(i64, i64)> = None;
    for s in samples {
        match (s.state, run) {
            (PgState::Primary, None) => run = Some((s.at_ms, s.at_ms)),
            (PgState::Primary, Some((a, _))) => run = Some((a, s.at_ms)),
            (_, Some((a, b))) => {
                out.push((a - half, b + half));
                run = None;
            }
            (_, None) => {}
        }
    }
    if let Some((a, b)) = run {
        out.push((a - half, b + half));
    }
    out
}

/// A stretch during which two or more hosts were primaries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Overlap {
    /// Start, ms since the epoch.
    pub from_ms: i64,
    /// End.
    pub to_ms: i64,
    /// The hosts.
    pub hosts: Vec<String>,
    /// Longer than the tolerance: counted as two primaries.
    pub counted: bool,
}

/// Every stretch during which ≥ 2 hosts were primaries, merged when contiguous.
pub fn overlaps(timelines: &BTreeMap<String, Vec<Sample>>, tolerance_ms: i64) -> Vec<Overlap> {
    let runs: Vec<(&str, (i64, i64))> = timelines
        .iter()
        .flat_map(|(h, s)| primary_runs(s).into_iter().map(move |r| (h.as_str(), r)))
        .collect();
    let mut cuts: Vec<i64> = runs.iter().flat_map(|(_, (a, b))| [*a, *b]).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut out: Vec<Overlap> = Vec::new();
    for w in cuts.windows(2) {
        let (a, b) = (w[0], w[1]);
        let mut hosts: Vec<String> = runs
            .iter()
            .filter(|(_, (s, e))| *s <= a && b <= *e)
            .map(|(h, _)| h.to_string())
            .collect();
        hosts.sort();
        hosts.dedup();
        if hosts.len() < 2 {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.to_ms == a => {
                last.to_ms = b;
                for h in hosts {
                    if !last.hosts.contains(&h) {
                        last.hosts.push(h);
                    }
                }
                last.hosts.sort();
            }
            _ => out.push(Overlap {
                from_ms: a,
                to_ms: b,
                hosts,
                counted: false,
            }),
        }
    }
    for o in &mut out {
        o.counted = o.to_ms - o.from_ms > tolerance_ms;
    }
    out
}

/// Total milliseconds of counted overlaps.
pub fn two_primaries_ms(overlaps: &[Overlap]) -> i64 {
    overlaps.iter().filter(|o| o.counted).map(|o| o.to_ms - o.from_ms).sum()
}

/// The last time at or after `t_ms` that `samples` saw a primary (None: never after `t_ms`).
pub fn last_primary_after(samples: &[Sample], t_ms: i64) -> Option<i64> {
    samples
        .iter()
        .filter(|s| s.at_ms >= t_ms && s.state == PgState::Primary)
        .map(|s| s.at_ms)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(n: u64, at: i64, server: &str) -> Attempt {
        Attempt {
            n,
            start_ms: at,
            end_ms: at + 20,
            server: server.parse().ok(),
            error: None,
        }
    }

    fn err(n: u64, at: i64) -> Attempt {
        Attempt {
            n,
            start_ms: at,
            end_ms: at + 3000,
            server: None,
            error: Some("refused".into()),
        }
    }

    const A: &str = "10.0.0.11";
    const B: &str = "10.0.0.12";

    #[test]
    fn the_longest_gap_is_between_acknowledgements() {
        let w = vec![
            ok(1, 0, A),
            ok(2, 100, A),
            err(3, 200),
            err(4, 3200),
            ok(5, 6200, B),
            ok(6, 6300, B),
        ];
        let g = longest_gap(&w, 7000).expect("a gap");
        assert_eq!((g.from_ms, g.to_ms, g.open), (120, 6220, false));
        assert!((g.secs() - 6.1).abs() < 1e-9);
        assert_eq!(failed(&w), 2);
        assert_eq!(acknowledged(&w), BTreeSet::from([1, 2, 5, 6]));
        let within = longest_gap_within(&w, 7000, 6250, 7000).expect("a gap");
        assert_eq!((within.from_ms, within.to_ms), (6220, 6320));
    }

    #[test]
    fn rw_that_never_returns_is_an_open_gap() {
        let w = vec![ok(1, 0, A), err(2, 100), err(3, 3100)];
        let g = longest_gap(&w, 10_000).expect("a gap");
        assert_eq!((g.from_ms, g.to_ms, g.open), (20, 10_000, true));
        let none = vec![err(1, 0), err(2, 3000)];
        let g = longest_gap(&none, 9000).expect("a gap");
        assert_eq!((g.from_ms, g.to_ms, g.open), (0, 9000, true));
        assert_eq!(longest_gap(&[], 9000), None);
    }

    #[test]
    fn lost_rows_are_acknowledged_and_absent() {
        let acked = BTreeSet::from([1, 2, 3, 5]);
        let present = BTreeSet::from([1, 2, 4, 5]);
        assert_eq!(lost(&acked, &present), vec![3]);
        assert_eq!(unacknowledged_present(&acked, &present), vec![4]);
        assert!(lost(&acked, &acked).is_empty());
    }

    #[test]
    fn refusal_needs_failures_in_a_row_after_the_fault() {
        let w = vec![
            err(1, 0),
            ok(2, 3000, A),
            err(3, 5000),
            ok(4, 8000, A),
            err(5, 9000),
            err(6, 12_000),
            err(7, 15_000),
        ];
        assert_eq!(first_refusal(&w, 1000, 3).map(|a| a.n), Some(5));
        assert_eq!(first_refusal(&w, 1000, 1).map(|a| a.n), Some(3));
        assert_eq!(first_refusal(&w, 13_000, 3), None);
        assert_eq!(first_ack_after(&w, 1000, None).map(|a| a.n), Some(2));
        assert_eq!(first_ack_after(&w, 1000, A.parse().ok()).map(|a| a.n), None);
    }

    #[test]
    fn a_clean_handover_does_not_interleave() {
        let w = vec![ok(1, 0, A), ok(2, 100, A), err(3, 200), ok(4, 9000, B), ok(5, 9100, B)];
        assert_eq!(interleaving(&w), None);
    }

    #[test]
    fn writes_going_back_to_a_replaced_server_interleave() {
        let w = vec![ok(1, 0, A), ok(2, 100, B), ok(3, 200, B), ok(4, 300, A), ok(5, 400, B)];
        let i = interleaving(&w).expect("interleaved");
        assert_eq!(i.first, A.parse::<IpAddr>().expect("ip"));
        assert_eq!(i.second, B.parse::<IpAddr>().expect("ip"));
        assert_eq!((i.n, i.at_ms), (4, 320));
    }

    fn timeline(states: &str, start: i64) -> Vec<Sample> {
        states
            .chars()
            .enumerate()
            .map(|(i, c)| Sample {
                at_ms: start + i as i64 * PERIOD_MS,
                state: match c {
                    'f' => PgState::Primary,
                    't' => PgState::Replica,
                    _ => PgState::NoAnswer,
                },
            })
            .collect()
    }

    #[test]
    fn primary_runs_cover_half_a_period_each_side() {
        assert_eq!(primary_runs(&timeline("ffxtf", 1000)), vec![(900, 1300), (1700, 1900)]);
        assert!(primary_runs(&timeline("ttx", 0)).is_empty());
    }

    #[test]
    fn a_failover_with_a_gap_has_no_overlap() {
        // node1 primary until 2.0 s, then crashed (no samples); node2 primary from 25 s.
        let mut t = BTreeMap::new();
        t.insert("node1".to_string(), timeline("ffffffffff", 0));
        t.insert("node2".to_string(), {
            let mut s = timeline(&"t".repeat(125), 0);
            s.extend(timeline("fffff", 25_000));
            s
        });
        let o = overlaps(&t, OVERLAP_TOLERANCE_MS);
        assert!(o.is_empty(), "{o:?}");
        assert_eq!(two_primaries_ms(&o), 0);
    }

    #[test]
    fn a_handover_within_sampling_error_is_listed_not_counted() {
        // node1's last f at 1800, node2's first f at 1900: the half-periods touch for 100 ms.
        let mut t = BTreeMap::new();
        t.insert("node1".to_string(), timeline("ffffffffff", 0));
        t.insert("node2".to_string(), timeline("fffff", 1900));
        let o = overlaps(&t, OVERLAP_TOLERANCE_MS);
        assert_eq!(o.len(), 1, "{o:?}");
        assert_eq!((o[0].from_ms, o[0].to_ms, o[0].counted), (1800, 1900, false));
        assert_eq!(o[0].hosts, ["node1", "node2"]);
        assert_eq!(two_primaries_ms(&o), 0);
    }

    #[test]
    fn two_primaries_at_once_are_counted() {
        // node1 stays primary for 4 s after node2 promoted at 2 s: split brain for ~2 s.
        let mut t = BTreeMap::new();
        t.insert("node1".to_string(), timeline(&"f".repeat(21), 0)); // 0..4000
        t.insert("node2".to_string(), timeline(&"f".repeat(21), 2000)); // 2000..6000
        t.insert("node3".to_string(), timeline(&"t".repeat(40), 0));
        let o = overlaps(&t, OVERLAP_TOLERANCE_MS);
        assert_eq!(o.len(), 1, "{o:?}");
        assert_eq!((o[0].from_ms, o[0].to_ms, o[0].counted), (1900, 4100, true));
        assert_eq!(two_primaries_ms(&o), 2200);
    }

    #[test]
    fn three_way_overlaps_merge_into_one_stretch() {
        let mut t = BTreeMap::new();
        t.insert("a".to_string(), timeline(&"f".repeat(11), 0)); // -100..2100
        t.insert("b".to_string(), timeline(&"f".repeat(11), 1000)); // 900..3100
        t.insert("c".to_string(), timeline(&"f".repeat(11), 1500)); // 1400..3600
        let o = overlaps(&t, OVERLAP_TOLERANCE_MS);
        assert_eq!(o.len(), 1, "{o:?}");
        assert_eq!((o[0].from_ms, o[0].to_ms), (900, 3100));
        assert_eq!(o[0].hosts, ["a", "b", "c"]);
    }

    #[test]
    fn the_last_primary_sample_after_a_fault() {
        let s = timeline("fffffttt", 0); // f until 800
        assert_eq!(last_primary_after(&s, 300), Some(800));
        assert_eq!(last_primary_after(&s, 900), None);
    }
}
