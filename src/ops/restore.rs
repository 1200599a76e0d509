//! `pgha restore`: point-in-time recovery of the live cluster from the pgBackRest repository.
//! Checks first (a backup role, a backup that finished before the target, a target not in the
//! future), and without `yes` returns the plan only. With `yes`: `pgbackrest check` (the
//! newest WAL reaches the archive), Patroni stopped on every node (replicas first), every
//! node's data directory moved aside to `<data>.pre-restore-<UTC stamp>` (never deleted: the
//! undo), the cluster's keys removed from the DCS (what `patronictl remove` deletes), then on
//! ONE node `pgbackrest restore --type=… --target=… --target-action=promote`, PostgreSQL
//! started privately (Unix socket only) until recovery reaches the target and promotes to a
//! new timeline, stopped cleanly, and handed to Patroni, which adopts the data directory
//! (writes the initialize key with its system id, re-seeds the DCS config from
//! `bootstrap.dcs`) and becomes the leader. The other nodes start with no data directory and
//! Patroni clones them from the new leader (pg_basebackup). Ends with `pgbackrest check` on
//! the new timeline. Why not Patroni's custom bootstrap: docs/backup.md "Restore". Nothing
//! prints here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use serde::Serialize;
use time::OffsetDateTime;

use super::backup::{info, run, settings};
use super::switchover::Cluster;
use super::{Connect, OpsError, Reporter};
use crate::facts::pgbackrest::{self as pgbr, BackupEntry};
use crate::facts::{etcd, patroni};
use crate::inventory::{Inventory, Role};
use crate::render::{Target, paths};
use crate::transport::{Cmd, DEFAULT_TIMEOUT};

/// Longest `pgbackrest restore`, and recovery up to the target, may take.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// Longest Patroni may take to adopt the restored data directory and lead.
const LEAD_WAIT: Duration = Duration::from_secs(300);
/// Longest the other nodes may take to be cloned and stream.
const RECLONE_WAIT: Duration = Duration::from_secs(3600);

/// What to recover to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoveryTarget {
    /// The last commit at or before this time (the database's clock).
    Time(OffsetDateTime),
    /// This WAL location (`16/B374D848`).
    Lsn(String),
    /// A restore point made with `pg_create_restore_point(name)`.
    Name(String),
    /// The end of the archived WAL.
    Latest,
}

impl RecoveryTarget {
    /// pgBackRest's `--type`.
    pub fn kind(&self) -> &'static str {
        match self {
            RecoveryTarget::Time(_) => "time",
            RecoveryTarget::Lsn(_) => "lsn",
            RecoveryTarget::Name(_) => "name",
            RecoveryTarget::Latest => "default",
        }
    }

    /// pgBackRest's `--target` (none for the end of the archive).
    pub fn target(&self) -> Option<String> {
        match self {
            RecoveryTarget::Time(t) => Some(pg_time(*t)),
            RecoveryTarget::Lsn(l) => Some(l.clone()),
            RecoveryTarget::Name(n) => Some(n.clone()),
            RecoveryTarget::Latest => None,
        }
    }

    /// For the plan: `time 2026-12-02 03:40:00.000000+00`, `end of the archive`.
    pub fn describe(&self) -> String {
        match self.target() {
            Some(t) => format!("{} {t}", self.kind()),
            None => "the end of the archived WAL".into(),
        }
    }
}

/// Parses a `--time`: RFC 3339 or PostgreSQL's `YYYY-MM-DD HH:MM:SS[.frac]±HH[:MM]` (what
/// `select now()` prints); a zone is required (the database's clock is compared in UTC).
pub fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    let t = s.trim();
    let mut norm = t.replacen(' ', "T", 1);
    // `+00` / `-05` (psql) → `+00:00`; `+0530` → `+05:30`.
    if let Some(pos) = norm.rfind(['+', '-']).filter(|p| *p > 10) {
        let zone = norm[pos + 1..].to_string();
        if zone.len() == 2 && zone.chars().all(|c| c.is_ascii_digit()) {
            norm.push_str(":00");
        } else if zone.len() == 4 && zone.chars().all(|c| c.is_ascii_digit()) {
            norm = format!("{}{}:{}", &norm[..=pos], &zone[..2], &zone[2..]);
        }
    }
    OffsetDateTime::parse(&norm, &time::format_description::well_known::Rfc3339).map_err(|e| {
        format!(
            "--time {s:?}: {e}; give a date, a time and a zone, e.g. \"2026-12-02 03:40:00+00\" or 2026-12-02T03:40:00Z (select now() prints this form)"
        )
    })
}

/// A time as PostgreSQL's `recovery_target_time` takes it, in UTC with microseconds.
pub fn pg_time(t: OffsetDateTime) -> String {
    let u = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00",
        u.year(),
        u8::from(u.month()),
        u.day(),
        u.hour(),
        u.minute(),
        u.second(),
        u.microsecond()
    )
}

/// Checks an `--lsn`: two hexadecimal halves, `16/B374D848`.
pub fn parse_lsn(s: &str) -> Result<String, String> {
    let ok = s.split_once('/').is_some_and(|(a, b)| {
        [a, b]
            .iter()
            .all(|h| (1..=8).contains(&h.len()) && h.chars().all(|c| c.is_ascii_hexdigit()))
    });
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "--lsn {s:?}: expected a WAL location like 16/B374D848 (select pg_current_wal_lsn() prints one)"
        ))
    }
}

/// Checks a `--name` (a restore point: what PostgreSQL accepts, at most 63 bytes).
pub fn parse_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 63 || s.chars().any(char::is_control) {
        return Err(format!(
            "--name {s:?}: a restore point name has 1 to 63 printable characters"
        ));
    }
    Ok(s.to_string())
}

/// The pure choice of the backup to restore from: `set` when given (it must exist, hold no
/// errors and, for a time target, have finished before it), else the newest good backup that
/// finished before a time target (the newest good one for the other targets). `now` is the
/// restoring node's clock (Unix seconds): a time target after it is refused.
pub fn choose_backup(
    backups: &[BackupEntry],
    target: &RecoveryTarget,
    set: Option<&str>,
    now: i64,
) -> Result<String, String> {
    if let RecoveryTarget::Time(t) = target
        && t.unix_timestamp() > now
    {
        return Err(format!(
            "the target {} is in the future (the node's clock says {}): nothing to recover to yet",
            pg_time(*t),
            OffsetDateTime::from_unix_timestamp(now)
                .map(pg_time)
                .unwrap_or_else(|_| now.to_string())
        ));
    }
    let before = |b: &BackupEntry| match target {
        RecoveryTarget::Time(t) => b.stop < t.unix_timestamp(),
        _ => true,
    };
    let good: Vec<&BackupEntry> = backups.iter().filter(|b| !b.error).collect();
    if let Some(label) = set {
        let b = backups.iter().find(|b| b.label == label).ok_or_else(|| {
            format!(
                "--set {label}: no such backup; the repository has: {}",
                backups.iter().map(|b| b.label.as_str()).collect::<Vec<_>>().join(", ")
            )
        })?;
        if b.error {
            return Err(format!(
                "--set {label}: pgBackRest marked this backup as having errors; pick another"
            ));
        }
        if !before(b) {
            return Err(format!(
                "--set {label}: this backup finished at {}, after the target {}; pick an older backup",
                OffsetDateTime::from_unix_timestamp(b.stop)
                    .map(pg_time)
                    .unwrap_or_default(),
                target.describe()
            ));
        }
        return Ok(label.to_string());
    }
    match good.iter().rev().find(|b| before(b)) {
        Some(b) => Ok(b.label.clone()),
        None if good.is_empty() => Err("the repository holds no usable backup: take one first (pgha backup)".into()),
        None => Err(format!(
            "no backup finished before the target {} (the oldest finished at {}): a backup is the starting point of a recovery; pick a later target",
            target.describe(),
            OffsetDateTime::from_unix_timestamp(good[0].stop)
                .map(pg_time)
                .unwrap_or_default()
        )),
    }
}

/// `pgbackrest restore` on a node, as postgres, into its (empty) data directory.
pub fn restore_cmd(stanza: &str, target: &RecoveryTarget, set: &str) -> Cmd {
    let mut c = pgbr::pgbackrest(stanza)
        .arg(format!("--set={set}"))
        .arg(format!("--type={}", target.kind()))
        .arg("--log-level-console=info");
    if let Some(t) = target.target() {
        c = c.arg(format!("--target={t}")).arg("--target-action=promote");
    }
    c.arg("restore")
}

/// The new name of a node's data directory.
pub fn kept_as(data_dir: &str, stamp: &str) -> String {
    format!("{data_dir}.pre-restore-{stamp}")
}

/// One PostgreSQL node in the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodePlan {
    /// The node.
    pub node: String,
    /// Its data directory now (`None`: it has none; nothing to keep).
    pub data_dir: Option<String>,
    /// Where its data directory is moved (kept, never deleted).
    pub kept_as: Option<String>,
    /// `restore` (the new leader) or `re-clone` (copied from it by Patroni).
    pub action: String,
}

/// What a restore would do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RestorePlan {
    /// The repository host.
    pub repo_host: String,
    /// The stanza (unchanged: a restore keeps the system id).
    pub stanza: String,
    /// pgBackRest's `--type`.
    pub kind: String,
    /// pgBackRest's `--target`, if any.
    pub target: Option<String>,
    /// The backup restored.
    pub backup: String,
    /// The node restored (the leader now, when it has a data directory).
    pub restore_node: String,
    /// The leader now and its timeline (Patroni's view), if any.
    pub leader_now: Option<String>,
    /// The timeline now.
    pub timeline_now: Option<u64>,
    /// Every PostgreSQL node.
    pub nodes: Vec<NodePlan>,
    /// The stamp of the kept directories.
    pub stamp: String,
}

/// What a restore did, with the time each phase took (seconds).
#[derive(Clone, Debug, Default, Serialize)]
pub struct RestoreRun {
    /// Patroni stopped everywhere, data moved aside, DCS keys removed.
    pub teardown_s: f64,
    /// `pgbackrest restore` on the restore node.
    pub restore_s: f64,
    /// Recovery to the target until promoted.
    pub recovery_s: f64,
    /// Patroni adopting the data directory until it leads.
    pub lead_s: f64,
    /// The other nodes cloned until they stream.
    pub reclone_s: f64,
    /// From `--yes` to `pgbackrest check` passing on the new timeline.
    pub total_s: f64,
    /// The leader's timeline at the end.
    pub timeline: Option<u64>,
    /// Bytes in the restored data directory (`du`).
    pub restored_bytes: Option<u64>,
}

/// What `pgha restore` does.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// The recovery target.
    pub target: RecoveryTarget,
    /// The backup to start from (default: the newest before the target).
    pub set: Option<String>,
    /// Do it (without: the checks and the plan only).
    pub yes: bool,
    /// State directory (default beside the inventory).
    pub state: Option<PathBuf>,
    /// How to reach the hosts (every host).
    pub connect: Connect,
}

fn stamp() -> String {
    let t = OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The data directory a node holds (of the targets pgha knows), and that target.
async fn data_dir_of(c: &Cluster<'_>, node: &str, cluster: &str) -> Result<Option<(String, Target)>, OpsError> {
    let dirs: Vec<(String, Target)> = Target::ALL
        .iter()
        .map(|t| (paths::pg_data_dir(*t, cluster), *t))
        .collect();
    let cmd = Cmd::script(
        r#"for d in "$@"; do if [ -f "$d/PG_VERSION" ]; then echo "$d"; fi; done"#,
        dirs.iter().map(|(d, _)| d.clone()),
    );
    let out = exec(c, node, &cmd, DEFAULT_TIMEOUT, "looking for the data directory").await?;
    Ok(out
        .lines()
        .next()
        .and_then(|l| dirs.iter().find(|(d, _)| d == l.trim()).cloned()))
}

async fn exec(c: &Cluster<'_>, host: &str, cmd: &Cmd, timeout: Duration, what: &str) -> Result<String, OpsError> {
    let conn = c
        .conns
        .get(host)
        .ok_or_else(|| OpsError::Day2(format!("{host}: not connected")))?;
    run(conn, host, cmd, timeout, what).await
}

/// The target Debian release of the node that holds `dir`.
fn target_of(nodes: &[(String, Option<(String, Target)>)], node: &str) -> Option<(String, Target)> {
    nodes.iter().find(|(n, _)| n == node).and_then(|(_, d)| d.clone())
}

/// Checks and plans; with `yes`, restores. Returns the plan and, when done, the run.
pub async fn restore(
    inv: &Inventory,
    o: &RestoreOptions,
    rep: &Arc<dyn Reporter>,
) -> Result<(RestorePlan, Option<RestoreRun>), OpsError> {
    let b = settings(inv).map_err(|_| {
        OpsError::InvalidInput(format!(
            "{}: no host has the role `backup`: there is no repository to restore from; add one and deploy, then take a backup (docs/backup.md)",
            inv.path.display()
        ))
    })?;
    let c = Cluster::open(inv, o.state.as_deref(), &o.connect, "restore", rep).await?;
    let result = async {
        let plan = plan(&c, inv, b, o).await?;
        if !o.yes {
            return Ok((plan, None));
        }
        let r = apply(&c, inv, &plan, o, rep).await?;
        Ok((plan, Some(r)))
    }
    .await;
    c.close().await;
    result
}

async fn plan(
    c: &Cluster<'_>,
    inv: &Inventory,
    b: &crate::inventory::BackupSettings,
    o: &RestoreOptions,
) -> Result<RestorePlan, OpsError> {
    let repo = b.host.as_str();
    let conn = c
        .conns
        .get(repo)
        .ok_or_else(|| OpsError::Day2(format!("{repo}: not connected")))?;
    let stanza = info(conn, repo, &b.stanza).await?;
    let members = c.members().await.unwrap_or_default();
    let leader = patroni::leader(&members).map(str::to_string);
    let timeline_now = leader
        .as_ref()
        .and_then(|l| members.iter().find(|m| &m.name == l))
        .and_then(|m| m.timeline);
    let pg: Vec<String> = inv.hosts_with(Role::Postgres).map(|h| h.name.to_string()).collect();
    let mut found = Vec::new();
    for n in &pg {
        found.push((n.clone(), data_dir_of(c, n, &inv.cluster_name).await?));
    }
    let restore_node = leader
        .clone()
        .filter(|l| target_of(&found, l).is_some())
        .or_else(|| found.iter().find(|(_, d)| d.is_some()).map(|(n, _)| n.clone()))
        .ok_or_else(|| {
            OpsError::Refused(format!(
                "restore refused: no PostgreSQL node holds a data directory ({}): pgha cannot tell the PostgreSQL version to restore; deploy first",
                pg.join(", ")
            ))
        })?;
    let now: i64 = exec(
        c,
        &restore_node,
        &Cmd::new("date").arg("+%s"),
        DEFAULT_TIMEOUT,
        "reading the clock",
    )
    .await?
    .trim()
    .parse()
    .map_err(|_| OpsError::Day2(format!("{restore_node}: `date +%s` did not print a number")))?;
    let backup = choose_backup(&stanza.backups, &o.target, o.set.as_deref(), now)
        .map_err(|e| OpsError::Refused(format!("restore refused: {e}")))?;
    let stamp = stamp();
    let nodes = found
        .iter()
        .map(|(n, d)| NodePlan {
            node: n.clone(),
            data_dir: d.as_ref().map(|(d, _)| d.clone()),
            kept_as: d.as_ref().map(|(d, _)| kept_as(d, &stamp)),
            action: if *n == restore_node { "restore" } else { "re-clone" }.to_string(),
        })
        .collect();
    Ok(RestorePlan {
        repo_host: repo.to_string(),
        stanza: b.stanza.clone(),
        kind: o.target.kind().to_string(),
        target: o.target.target(),
        backup,
        restore_node,
        leader_now: leader,
        timeline_now,
        nodes,
        stamp,
    })
}

async fn systemctl(c: &Cluster<'_>, node: &str, verb: &str) -> Result<(), OpsError> {
    exec(
        c,
        node,
        &Cmd::new("systemctl").arg(verb).arg("patroni"),
        Duration::from_secs(300),
        &format!("systemctl {verb} patroni"),
    )
    .await
    .map(|_| ())
}

fn psql_local(port: u16, sql: &str) -> Cmd {
    Cmd::new("runuser")
        .args(["-u", "postgres", "--", "psql", "-h", paths::SOCKET_DIR, "-p"])
        .arg(port.to_string())
        .args(["-XtAc", sql])
}

async fn apply(
    c: &Cluster<'_>,
    inv: &Inventory,
    plan: &RestorePlan,
    o: &RestoreOptions,
    rep: &Arc<dyn Reporter>,
) -> Result<RestoreRun, OpsError> {
    let start = Instant::now();
    let mut r = RestoreRun::default();
    let repo = plan.repo_host.as_str();
    let node = plan.restore_node.as_str();
    let np = plan
        .nodes
        .iter()
        .find(|n| n.node == node)
        .expect("the restore node is in the plan");
    let data = np
        .data_dir
        .clone()
        .expect("the restore node holds a data directory (plan)");
    let t = Target::ALL
        .into_iter()
        .find(|t| paths::pg_data_dir(*t, &inv.cluster_name) == data)
        .expect("data_dir_of returns a target's directory");
    let bin = paths::pg_bin_dir(t);
    let port = inv.postgres.port.get();

    // 1. The newest WAL into the archive while the cluster still runs.
    if plan.leader_now.is_some() {
        rep.info(&format!(
            "{repo}: pgbackrest check (the newest WAL reaches the archive)"
        ));
        exec(
            c,
            repo,
            &pgbr::pgbackrest(&plan.stanza).arg("check"),
            Duration::from_secs(300),
            "pgbackrest check (before stopping anything; nothing was changed)",
        )
        .await?;
    }
    // 2. Patroni stopped everywhere, replicas first; no postmaster left.
    let mut order: Vec<&NodePlan> = plan
        .nodes
        .iter()
        .filter(|n| Some(&n.node) != plan.leader_now.as_ref())
        .collect();
    order.extend(plan.nodes.iter().filter(|n| Some(&n.node) == plan.leader_now.as_ref()));
    for n in &order {
        rep.info(&format!("{}: stopping Patroni (and its PostgreSQL)", n.node));
        systemctl(c, &n.node, "stop").await?;
    }
    for n in &order {
        if let Some(d) = &n.data_dir {
            let alive = Cmd::script(
                r#"if [ -f "$1/postmaster.pid" ] && runuser -u postgres -- "$2/pg_ctl" -D "$1" status >/dev/null 2>&1; then echo running; fi"#,
                [d.clone(), bin.clone()],
            );
            if exec(c, &n.node, &alive, DEFAULT_TIMEOUT, "checking for a postmaster")
                .await?
                .trim()
                == "running"
            {
                return Err(OpsError::Day2(format!(
                    "{}: PostgreSQL still runs in {d} after Patroni stopped; stop it (pg_ctl -D {d} stop), then re-run; Patroni is stopped on {}",
                    n.node,
                    order.iter().map(|n| n.node.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
        }
    }
    // 3. Every data directory moved aside (same filesystem: a rename), never deleted.
    for n in &order {
        if let (Some(d), Some(k)) = (&n.data_dir, &n.kept_as) {
            rep.info(&format!("{}: {d} kept as {k}", n.node));
            let mv = Cmd::script(
                r#"if [ -e "$2" ]; then echo "$2 exists" >&2; exit 1; fi; mv -T -- "$1" "$2""#,
                [d.clone(), k.clone()],
            );
            exec(c, &n.node, &mv, DEFAULT_TIMEOUT, "moving the data directory aside").await?;
        }
    }
    // 4. The cluster's keys out of the DCS (initialize, config, history, members, leader…).
    let etcd_host = inv
        .hosts_with(Role::Etcd)
        .next()
        .ok_or_else(|| OpsError::Day2("no etcd host in the inventory".into()))?
        .name
        .to_string();
    let prefix = format!("/service/{}/", inv.cluster_name);
    let out = exec(
        c,
        &etcd_host,
        &etcd::etcdctl_cmd(inv, &c.remote_ca, &["del", "--prefix", &prefix]),
        DEFAULT_TIMEOUT,
        "etcdctl del",
    )
    .await?;
    let deleted = serde_json::from_str::<serde_json::Value>(out.trim())
        .ok()
        .and_then(|v| v["deleted"].as_u64().or(Some(0)).filter(|_| v["header"].is_object()))
        .ok_or_else(|| {
            OpsError::Day2(format!(
                "{etcd_host}: etcdctl del --prefix {prefix} failed: {}",
                out.trim()
            ))
        })?;
    rep.info(&format!("etcd: {deleted} key(s) under {prefix} removed"));
    r.teardown_s = start.elapsed().as_secs_f64();

    // 5. pgbackrest restore on the restore node into a fresh directory.
    let t0 = Instant::now();
    exec(
        c,
        node,
        &Cmd::new("install")
            .args(["-d", "-o", "postgres", "-g", "postgres", "-m", "0700"])
            .arg(&data),
        DEFAULT_TIMEOUT,
        "creating the data directory",
    )
    .await?;
    rep.info(&format!(
        "{node}: pgbackrest restore of {} to {}",
        plan.backup,
        o.target.describe()
    ));
    exec(
        c,
        node,
        &restore_cmd(&plan.stanza, &o.target, &plan.backup),
        RESTORE_TIMEOUT,
        "pgbackrest restore",
    )
    .await?;
    r.restore_s = t0.elapsed().as_secs_f64();
    r.restored_bytes = exec(c, node, &Cmd::new("du").args(["-sb"]).arg(&data), DEFAULT_TIMEOUT, "du")
        .await
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()));

    // 6. Recovery to the target, privately (socket only, no hot standby), until promoted.
    let t0 = Instant::now();
    let log = format!("/var/lib/postgresql/pgha-restore-{}.log", plan.stamp);
    let pg_ctl = format!("{bin}/pg_ctl");
    let start_pg = Cmd::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(&pg_ctl)
        .args(["-D", &data, "-l", &log, "-W", "-o"])
        .arg(format!("-c listen_addresses='' -c hot_standby=off -c port={port}"))
        .arg("start");
    rep.info(&format!("{node}: PostgreSQL recovers to the target (log {log})"));
    exec(c, node, &start_pg, DEFAULT_TIMEOUT, "pg_ctl start (recovery)").await?;
    let probe = Cmd::script(
        r#"if ! runuser -u postgres -- "$1" -D "$2" status >/dev/null 2>&1; then echo dead; else runuser -u postgres -- psql -h "$3" -p "$4" -XtAc 'select pg_is_in_recovery()' 2>/dev/null || echo wait; fi"#,
        [
            pg_ctl.clone(),
            data.clone(),
            paths::SOCKET_DIR.to_string(),
            port.to_string(),
        ],
    );
    let deadline = Instant::now() + RESTORE_TIMEOUT;
    // `pg_ctl -W` returns before the postmaster writes its pid file: "not running" counts
    // only when seen three times in a row.
    let mut dead = 0;
    loop {
        let s = exec(c, node, &probe, DEFAULT_TIMEOUT, "probing recovery").await?;
        dead = if s.trim() == "dead" { dead + 1 } else { 0 };
        match s.trim() {
            "f" => break,
            "dead" if dead >= 3 => {
                let tail = exec(
                    c,
                    node,
                    &Cmd::new("tail").args(["-n", "15"]).arg(&log),
                    DEFAULT_TIMEOUT,
                    "tail",
                )
                .await
                .unwrap_or_default();
                return Err(OpsError::Day2(format!(
                    "{node}: PostgreSQL stopped during recovery (a target after the end of the archive stops it: \"recovery ended before configured recovery target was reached\"). Patroni is stopped on every node; the old data directories are kept as *.pre-restore-{} (docs/backup.md: undo). Log {log}:\n{tail}",
                    plan.stamp
                )));
            }
            _ if Instant::now() > deadline => {
                return Err(OpsError::Day2(format!(
                    "{node}: recovery did not finish within {} s (log {log})",
                    RESTORE_TIMEOUT.as_secs()
                )));
            }
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
    r.recovery_s = t0.elapsed().as_secs_f64();
    rep.info(&format!(
        "{node}: recovered and promoted in {:.1} s; stopping it cleanly for Patroni",
        r.recovery_s
    ));
    exec(c, node, &psql_local(port, "checkpoint"), DEFAULT_TIMEOUT, "checkpoint").await?;
    let stop_pg = Cmd::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(&pg_ctl)
        .args(["-D", &data, "-m", "fast", "-w", "-t", "300", "stop"]);
    exec(c, node, &stop_pg, Duration::from_secs(330), "pg_ctl stop").await?;

    // 7. Patroni adopts it and leads; then the others are cloned from it.
    let t0 = Instant::now();
    systemctl(c, node, "start").await?;
    c.wait_members(&format!("{node} leads"), LEAD_WAIT, |m| {
        m.iter()
            .any(|x| x.name == node && x.is_leader() && x.state == "running")
    })
    .await?;
    r.lead_s = t0.elapsed().as_secs_f64();
    rep.info(&format!(
        "{node}: Patroni leads the restored cluster ({:.1} s)",
        r.lead_s
    ));
    let t0 = Instant::now();
    let others: Vec<&str> = plan
        .nodes
        .iter()
        .filter(|n| n.node != node)
        .map(|n| n.node.as_str())
        .collect();
    for res in join_all(others.iter().map(|n| systemctl(c, n, "start"))).await {
        res?;
    }
    let ms = c
        .wait_members("every node streams from the restored leader", RECLONE_WAIT, |m| {
            others.iter().all(|n| m.iter().any(|x| x.name == *n && x.streams()))
        })
        .await?;
    r.reclone_s = t0.elapsed().as_secs_f64();
    r.timeline = ms.iter().find(|m| m.name == node).and_then(|m| m.timeline);
    rep.info(&format!(
        "{} cloned and streaming ({:.1} s)",
        others.join(", "),
        r.reclone_s
    ));

    // 8. Archiving on the new timeline.
    exec(
        c,
        repo,
        &pgbr::pgbackrest(&plan.stanza).arg("check"),
        Duration::from_secs(300),
        "pgbackrest check on the new timeline",
    )
    .await?;
    r.total_s = start.elapsed().as_secs_f64();
    rep.info(&format!(
        "{repo}: pgbackrest check passes on timeline {}",
        r.timeline.map_or("?".into(), |t| t.to_string())
    ));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(label: &str, stop: i64, error: bool) -> BackupEntry {
        BackupEntry {
            label: label.into(),
            kind: "full".into(),
            start: stop - 10,
            stop,
            size: 1,
            repo_size: 1,
            wal_start: String::new(),
            wal_stop: String::new(),
            prior: None,
            error,
        }
    }

    #[test]
    fn times_parse_in_psql_and_rfc3339_forms() {
        let a = parse_time("2026-12-02 03:40:00.123456+00").unwrap();
        let b = parse_time("2026-12-02T03:40:00.123456Z").unwrap();
        let c = parse_time("2026-12-02 04:40:00.123456+01").unwrap();
        let d = parse_time("2026-12-02 09:10:00.123456+0530").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a, d);
        assert_eq!(pg_time(c), "2026-12-02 03:40:00.123456+00");
        let e = parse_time("2026-12-02 03:40:00").unwrap_err();
        assert!(e.contains("zone"), "{e}");
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn lsn_and_name_checked() {
        assert!(parse_lsn("16/B374D848").is_ok());
        assert!(parse_lsn("0/0").is_ok());
        assert!(parse_lsn("16B374D848").is_err());
        assert!(parse_lsn("x/1").is_err());
        assert!(parse_name("before-migration").is_ok());
        assert!(parse_name("").is_err());
        assert!(parse_name(&"a".repeat(64)).is_err());
    }

    #[test]
    fn backup_chosen_before_the_target() {
        let bs = [entry("A", 1000, false), entry("B", 2000, false), entry("C", 3000, true)];
        let at = |s| RecoveryTarget::Time(OffsetDateTime::from_unix_timestamp(s).unwrap());
        assert_eq!(choose_backup(&bs, &at(2500), None, 5000).unwrap(), "B");
        assert_eq!(choose_backup(&bs, &at(3500), None, 5000).unwrap(), "B", "C has errors");
        assert_eq!(choose_backup(&bs, &at(1500), None, 5000).unwrap(), "A");
        let e = choose_backup(&bs, &at(900), None, 5000).unwrap_err();
        assert!(e.contains("no backup finished before"), "{e}");
        let e = choose_backup(&bs, &at(6000), None, 5000).unwrap_err();
        assert!(e.contains("in the future"), "{e}");
        assert_eq!(choose_backup(&bs, &at(2500), Some("A"), 5000).unwrap(), "A");
        let e = choose_backup(&bs, &at(1500), Some("B"), 5000).unwrap_err();
        assert!(e.contains("after the target"), "{e}");
        assert!(
            choose_backup(&bs, &at(4000), Some("C"), 5000)
                .unwrap_err()
                .contains("errors")
        );
        assert!(
            choose_backup(&bs, &at(4000), Some("Z"), 5000)
                .unwrap_err()
                .contains("no such backup")
        );
        assert_eq!(choose_backup(&bs, &RecoveryTarget::Latest, None, 0).unwrap(), "B");
        assert!(
            choose_backup(&[], &RecoveryTarget::Latest, None, 0)
                .unwrap_err()
                .contains("no usable backup")
        );
    }

    #[test]
    fn restore_command_per_target() {
        let t = RecoveryTarget::Time(parse_time("2026-12-02 03:40:00+00").unwrap());
        let a = restore_cmd("st", &t, "L").argv().to_vec();
        for want in [
            "--stanza=st",
            "--set=L",
            "--type=time",
            "--target=2026-12-02 03:40:00.000000+00",
            "--target-action=promote",
        ] {
            assert!(a.contains(&want.to_string()), "{want} in {a:?}");
        }
        assert_eq!(a.last().map(String::as_str), Some("restore"));
        let a = restore_cmd("st", &RecoveryTarget::Latest, "L").argv().to_vec();
        assert!(a.contains(&"--type=default".to_string()));
        assert!(!a.iter().any(|x| x.starts_with("--target")), "{a:?}");
        assert_eq!(
            kept_as("/var/lib/postgresql/17/c", "20261202T034000Z"),
            "/var/lib/postgresql/17/c.pre-restore-20261202T034000Z"
        );
    }
}
