//! `pgha drill`: failure drills against a deployed cluster — crash the leader, lose etcd quorum,
//! cut the leader off the network — while a writer commits numbered rows through PgBouncer;
//! then count what was acknowledged against what is there, and look for two primaries at once.
//! Printing and argument parsing live in `cli::drill`; nothing here prints.
//!
//! One module per job:
//! - [`plan`]: which hosts a drill faults and how (lab machine, or a service over SSH); pure.
//! - [`fault`]: inject and undo those actions (`crate::lab::ops`, or `systemctl` over SSH).
//! - [`cluster`]: connections that survive a host's crash; Patroni's `/cluster` and `/config`.
//! - [`writer`]: the controller-side writer (one `psql` per row) and the other SQL it runs.
//! - [`sampler`]: per-host `pg_is_in_recovery()` timelines kept by a transient systemd unit.
//! - [`analysis`]: gaps, lost rows, overlapping primaries, interleaved writes; pure.
//! - [`verdict`]: the report and the targets it is judged against; pure.
//! - [`sequence`]: the drill itself: preconditions, fault, observation, restore, counting.
//! - [`entry`]: the entry-loss drill (the VIP's holder lost under the writer), on its own.
//! - [`restore`]: the restore drill (a backup restored to a point T into a scratch instance:
//!   RTO, bytes, RPO in rows, consistency), on its own; its report and rules in
//!   [`restore_report`].

pub mod analysis;
pub mod cluster;
pub mod entry;
pub mod fault;
pub mod plan;
pub mod restore;
pub mod restore_report;
pub mod sampler;
pub mod sequence;
#[cfg(test)]
mod sequence_tests;
pub mod verdict;
pub mod writer;

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::inventory::{Inventory, SyncMode};

pub use plan::PlanError;
pub use verdict::Report;

/// Which drill to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Crash the leader's host (lab) or SIGKILL its Patroni and PostgreSQL (real hosts).
    Failover,
    /// Stop a majority of the etcd members, then start them again.
    QuorumLoss,
    /// Cut the leader's host off the network (lab only), then reconnect it.
    Partition,
    /// Crash the entry host holding the VIP (lab) or stop its keepalived, PgBouncer and HAProxy.
    EntryLoss,
    /// Restore a backup to a point in time into a scratch instance (the cluster is not faulted).
    Restore,
}

impl Kind {
    /// The name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Failover => "failover",
            Kind::QuorumLoss => "quorum-loss",
            Kind::Partition => "partition",
            Kind::EntryLoss => "entry-loss",
            Kind::Restore => "restore",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One drill's identity: tags its rows, its sampler units and their log files. Only lowercase
/// letters, digits and `-`, so it is safe in SQL literals, unit names and paths as is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct RunId(String);

impl RunId {
    /// Accepts `s` when it is 1–40 characters of `[a-z0-9-]`.
    pub fn new(s: &str) -> Option<Self> {
        let ok = !s.is_empty()
            && s.len() <= 40
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        ok.then(|| Self(s.to_string()))
    }

    /// A fresh id: `<UTC yyyymmdd-hhmmss>-<4 hex digits>` (units are `pgha-drill-<id>`).
    pub fn generate() -> Self {
        let now = time::OffsetDateTime::now_utc();
        let s = format!(
            "{:04}{:02}{:02}-{:02}{:02}{:02}-{:04x}",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            rand::random::<u16>()
        );
        Self::new(&s).expect("digits, lowercase hex and dashes only")
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a drill step failed. Every variant says which step.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// A command on a host failed or the host could not be reached.
    #[error("{host}: {detail}")]
    Host {
        /// Inventory name.
        host: String,
        /// What happened.
        detail: String,
    },
    /// A step failed for another reason.
    #[error("{step}: {detail}")]
    Step {
        /// The step.
        step: String,
        /// What happened.
        detail: String,
    },
    /// Ctrl-C.
    #[error("interrupted (Ctrl-C)")]
    Interrupted,
    /// The drill cannot be planned for this cluster.
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// The timings that decide how a drill goes, from the inventory.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Timings {
    /// Patroni leader key TTL, seconds.
    pub ttl: u32,
    /// Patroni loop period, seconds.
    pub loop_wait: u32,
    /// Patroni DCS and PostgreSQL retry timeout, seconds.
    pub retry_timeout: u32,
    /// HAProxy check interval, milliseconds.
    pub haproxy_inter_ms: u32,
    /// HAProxy failed checks before DOWN.
    pub haproxy_fall: u32,
    /// HAProxy passed checks before UP.
    pub haproxy_rise: u32,
    /// Patroni synchronous mode.
    pub synchronous_mode: SyncMode,
    /// Patroni failsafe mode (keep the primary when etcd is lost but every member answers).
    pub failsafe_mode: bool,
    /// Bytes a replica may lag and still be promoted (what asynchronous mode may lose).
    pub maximum_lag_on_failover: u64,
}

/// PgBouncer's `server_login_retry` as pgha sets it (templates/pgbouncer): after a failed server
/// login it refuses clients for this long before trying the server again.
pub const PGBOUNCER_LOGIN_RETRY_S: u32 = 2;

impl Timings {
    /// The inventory's timings.
    pub fn from_inventory(inv: &Inventory) -> Self {
        Self {
            ttl: inv.patroni.ttl,
            loop_wait: inv.patroni.loop_wait,
            retry_timeout: inv.patroni.retry_timeout,
            haproxy_inter_ms: inv.haproxy.check_interval_ms,
            haproxy_fall: inv.haproxy.check_fall,
            haproxy_rise: inv.haproxy.check_rise,
            synchronous_mode: inv.patroni.synchronous_mode,
            failsafe_mode: inv.patroni.failsafe_mode,
            maximum_lag_on_failover: inv.patroni.maximum_lag_on_failover,
        }
    }

    /// HAProxy checks a DOWN or changing server every `min(inter, 1 s)` (fastinter, downinter).
    fn checks_s(&self, n: u32) -> f64 {
        f64::from(n) * f64::from(self.haproxy_inter_ms.min(1000)) / 1000.0
    }

    /// RW unavailability to expect after a leader crash, seconds, as (typical low, worst):
    /// the leader key expires `ttl − loop_wait`…`ttl` after the last renewal, the synchronous
    /// standby promotes (1–3 s), HAProxy needs `rise` checks to mark it UP, and PgBouncer may
    /// wait `server_login_retry` after logins that failed during the outage.
    pub fn expected_failover_s(&self) -> (f64, f64) {
        let ttl = f64::from(self.ttl);
        let low = (ttl - f64::from(self.loop_wait)).max(0.0) + 1.0 + self.checks_s(self.haproxy_rise.saturating_sub(1));
        let high = ttl + 3.0 + self.checks_s(self.haproxy_rise) + f64::from(PGBOUNCER_LOGIN_RETRY_S);
        (low, high)
    }

    /// How long to wait for a new leader and RW after a leader fault before giving up.
    pub fn failover_bound(&self) -> Duration {
        let s = self.ttl
            + self.loop_wait
            + self.retry_timeout
            + (self.haproxy_fall + self.haproxy_rise) * self.haproxy_inter_ms / 1000
            + PGBOUNCER_LOGIN_RETRY_S
            + 60;
        Duration::from_secs(u64::from(s))
    }

    /// How long a primary that lost etcd may take to stop taking writes (it demotes after
    /// `retry_timeout` on its next loop; HAProxy needs `fall` checks), plus a margin.
    pub fn demote_bound(&self) -> Duration {
        let s = self.ttl + self.loop_wait + self.retry_timeout + self.haproxy_fall * self.haproxy_inter_ms / 1000 + 30;
        Duration::from_secs(u64::from(s))
    }

    /// With failsafe mode, how long to hold quorum lost while watching RW keep serving: past
    /// the point where a primary without failsafe would have demoted.
    pub fn failsafe_hold(&self) -> Duration {
        let s = self.ttl + self.loop_wait + self.retry_timeout + self.haproxy_fall * self.haproxy_inter_ms / 1000 + 10;
        Duration::from_secs(u64::from(s))
    }

    /// What can be tuned, in words, for the report.
    pub fn tuning_hint(&self) -> String {
        let (low, high) = self.expected_failover_s();
        format!(
            "after a leader crash expect {low:.0}–{high:.0} s of RW unavailability: the leader key expires \
             {}–{} s after its last renewal (patroni.ttl minus up to loop_wait), the synchronous standby \
             promotes, HAProxy marks it UP after rise × fastinter = {} × {} ms, and PgBouncer may wait \
             server_login_retry ({} s) after failed logins. Lower patroni.ttl (keeping loop_wait + \
             2 × retry_timeout ≤ ttl), haproxy.check_interval_ms or haproxy.check_rise to shorten it.",
            self.ttl.saturating_sub(self.loop_wait),
            self.ttl,
            self.haproxy_rise,
            self.haproxy_inter_ms.min(1000),
            PGBOUNCER_LOGIN_RETRY_S
        )
    }
}

/// `synchronous_mode` as the inventory spells it.
pub use crate::facts::patroni::sync_word;

/// Milliseconds since the Unix epoch on this machine (the writer's clock; the samplers use each
/// host's clock, which the lab shares and real hosts keep in sync).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Where progress lines go (the CLI prints them to stderr).
pub type Progress = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

/// Patroni's and HAProxy's stock timings (30/10/10, inter 3 s fall 3 rise 2), for tests.
#[cfg(test)]
pub(crate) fn sample_timings(failsafe_mode: bool, synchronous_mode: SyncMode) -> Timings {
    Timings {
        ttl: 30,
        loop_wait: 10,
        retry_timeout: 10,
        haproxy_inter_ms: 3000,
        haproxy_fall: 3,
        haproxy_rise: 2,
        synchronous_mode,
        failsafe_mode,
        maximum_lag_on_failover: 1_048_576,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_safe_words() {
        let id = RunId::generate();
        assert_eq!(id.as_str().len(), "20261129-081234-ab12".len(), "{id}");
        assert_eq!(RunId::new(id.as_str()), Some(id.clone()));
        assert!(RunId::new("").is_none());
        assert!(RunId::new("Drill").is_none());
        assert!(RunId::new("x'; drop table t; --").is_none());
        assert!(RunId::new(&"a".repeat(41)).is_none());
    }

    fn defaults() -> Timings {
        sample_timings(false, SyncMode::On)
    }

    #[test]
    fn bounds_follow_the_timings() {
        let t = defaults();
        assert_eq!(t.failover_bound(), Duration::from_secs(30 + 10 + 10 + 15 + 2 + 60));
        assert_eq!(t.demote_bound(), Duration::from_secs(30 + 10 + 10 + 9 + 30));
        let (low, high) = t.expected_failover_s();
        // ttl − loop_wait + promotion + (rise − 1) checks at 1 s; ttl + 3 + rise checks + retry.
        assert!((low - 22.0).abs() < 1e-9, "{low}");
        assert!((high - 37.0).abs() < 1e-9, "{high}");
        let fast = Timings {
            ttl: 10,
            loop_wait: 2,
            retry_timeout: 4,
            haproxy_inter_ms: 1000,
            ..t
        };
        assert!(fast.expected_failover_s().1 < 30.0 + 1.0);
        assert!(fast.tuning_hint().contains("8–10 s after its last renewal"));
    }
}
