//! The restore drill: while the writer commits numbered rows through PgBouncer, take a backup
//! (or use `--set`), read a point T on the primary's clock with rows acknowledged on both sides,
//! close and archive the WAL segment holding T, restore the backup to T into a scratch instance
//! on a replica's host (its own directory, Unix socket only, archiving off, no Patroni), and
//! measure RTO, bytes, the rows present against the rows acknowledged before T, and
//! `pg_amcheck`. The scratch instance is removed at the end, on failure and on Ctrl-C; every run
//! (and `--clean`) first removes what an earlier one left. The rules are
//! [`super::restore_report`]'s; docs/backup.md "Restore drill" explains the procedure.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::cluster::{self, Hosts};
use super::restore_report::{self as rr, BackupUsed, Consistency, RestoreReport};
use super::writer::{self, Attempt, SqlTarget, Writer};
use super::{DrillError, Progress, RunId, now_ms};
use crate::facts::patroni::Member;
use crate::facts::pgbackrest as pgbr;
use crate::inventory::{BackupType, Inventory, Role};
use crate::transport::Cmd;

/// The scratch instance's data directory on the chosen host (never a cluster's: those are
/// `/var/lib/postgresql/<major>/<cluster>`).
pub const SCRATCH_DIR: &str = "/var/lib/postgresql/pgha-drill-restore";
/// Its Unix socket directory (a systemd `RuntimeDirectory`, gone when the unit stops).
pub const SOCKET_DIR: &str = "/run/pgha-drill-restore";
/// Its port (on the socket only; it listens on no TCP address).
pub const PORT: u16 = 5499;
/// The transient unit running the scratch PostgreSQL.
pub const UNIT: &str = "pgha-drill-restore.service";
/// The transient unit running `pgbackrest restore` (so Ctrl-C and a re-run can stop it).
pub const COPY_UNIT: &str = "pgha-drill-restore-copy.service";
/// The scratch instance stops by itself after this long, if nothing removed it.
pub const SCRATCH_MAX_S: u64 = 4 * 3600;
/// Rows the writer must have acknowledged after each mark (backup, T) before the next step.
const ROWS_EACH_SIDE: usize = 5;

/// Everything the restore drill needs.
pub struct RestoreSetup {
    /// The inventory.
    pub inv: Inventory,
    /// The run id (tags the writer's rows).
    pub run: RunId,
    /// SSH connections.
    pub hosts: Hosts,
    /// The inventory is the lab.
    pub lab: bool,
    /// The writer's target (PgBouncer `<db>_rw`).
    pub sql: Arc<SqlTarget>,
    /// The database the writer writes into.
    pub db: String,
    /// The CA bundle's path on the hosts (Patroni's REST API).
    pub remote_ca: String,
    /// Progress lines.
    pub progress: Progress,
    /// Becomes true on Ctrl-C.
    pub cancel: watch::Receiver<bool>,
    /// Restore this backup instead of taking one.
    pub set: Option<String>,
    /// Leave the scratch instance running at the end (for inspection; `--clean` removes it).
    pub keep: bool,
}

impl RestoreSetup {
    fn say(&self, msg: &str) {
        (self.progress)(msg);
    }

    fn pg_port(&self) -> u16 {
        self.inv.postgres.port.get()
    }

    fn nodes(&self) -> Vec<String> {
        self.inv
            .hosts_with(Role::Postgres)
            .map(|h| h.name.to_string())
            .collect()
    }

    async fn until_cancelled(&self) {
        let mut rx = self.cancel.clone();
        loop {
            if *rx.borrow() {
                return;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Runs `f`, or fails with [`DrillError::Interrupted`] at Ctrl-C.
    async fn or_cancel<T>(&self, f: impl Future<Output = Result<T, DrillError>>) -> Result<T, DrillError> {
        if *self.cancel.borrow() {
            return Err(DrillError::Interrupted);
        }
        tokio::select! {
            v = f => v,
            () = self.until_cancelled() => Err(DrillError::Interrupted),
        }
    }

    async fn sleep(&self, d: Duration) -> Result<(), DrillError> {
        self.or_cancel(async {
            tokio::time::sleep(d).await;
            Ok(())
        })
        .await
    }

    async fn run_ok(&self, host: &str, cmd: &Cmd, timeout: Duration) -> Result<String, DrillError> {
        self.or_cancel(self.hosts.run_ok(host, cmd, timeout)).await
    }
}

fn step(step: &str, detail: impl Into<String>) -> DrillError {
    DrillError::Step {
        step: step.to_string(),
        detail: detail.into(),
    }
}

/// The node for the scratch instance: a streaming asynchronous replica, else any replica, else
/// (a one-node cluster) the leader's host.
pub fn scratch_host(members: &[Member], leader: &str) -> String {
    let replicas: Vec<&Member> = members.iter().filter(|m| m.name != leader).collect();
    replicas
        .iter()
        .find(|m| m.streams() && !m.is_sync())
        .or_else(|| replicas.iter().find(|m| m.streams()))
        .or_else(|| replicas.first())
        .map_or_else(|| leader.to_string(), |m| m.name.clone())
}

/// `psql` as postgres on the scratch instance's socket.
fn scratch_psql(db: &str, sql: &str) -> Cmd {
    Cmd::new("runuser")
        .args(["-u", "postgres", "--", "psql", "-h", SOCKET_DIR, "-p"])
        .arg(PORT.to_string())
        .args(["-d", db, "-XqtA", "-v", "ON_ERROR_STOP=1", "-c", sql])
}

/// `pgbackrest restore` of `label` to `target` into [`SCRATCH_DIR`], as a transient unit (so
/// it can be stopped): archiving off in the copy (it must never push into the repository),
/// promoted at the target. `RemainAfterExit` keeps the unit's result readable (`systemd-run
/// --wait` needs D-Bus, which minimal hosts and the lab's containers do not run); the unit is
/// followed with [`unit_state_cmd`] and stopped by [`clean_host`].
pub fn restore_cmd(stanza: &str, label: &str, target: &str) -> Cmd {
    Cmd::new("systemd-run")
        .arg(format!("--unit={COPY_UNIT}"))
        .args(["--quiet", "-p", "RemainAfterExit=yes"])
        .args(["-p", "User=postgres", "-p", "Group=postgres"])
        .arg("-p")
        .arg(format!("RuntimeMaxSec={SCRATCH_MAX_S}"))
        .arg("pgbackrest")
        .arg(format!("--stanza={stanza}"))
        .arg(format!("--pg1-path={SCRATCH_DIR}"))
        .arg(format!("--set={label}"))
        .arg("--type=time")
        .arg(format!("--target={target}"))
        .args(["--target-action=promote", "--archive-mode=off", "--process-max=2"])
        .args(["--log-level-console=info", "restore"])
}

/// `ActiveState`, `SubState`, `Result` and `ExecMainStatus` of `unit`, one per line.
pub fn unit_state_cmd(unit: &str) -> Cmd {
    Cmd::new("systemctl").args(["show", "-p", "ActiveState,SubState,Result,ExecMainStatus", unit])
}

/// What [`unit_state_cmd`] says about a oneshot-like unit with `RemainAfterExit`.
#[derive(Debug, PartialEq, Eq)]
pub enum UnitState {
    /// Still running.
    Running,
    /// Its process exited 0.
    Succeeded,
    /// It failed (the words say how).
    Failed(String),
}

/// Parses [`unit_state_cmd`]'s `key=value` lines.
pub fn parse_unit_state(out: &str) -> UnitState {
    let get = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let (active, sub, result, status) = (
        get("ActiveState"),
        get("SubState"),
        get("Result"),
        get("ExecMainStatus"),
    );
    match active.as_str() {
        "active" if sub == "exited" && result == "success" && status == "0" => UnitState::Succeeded,
        "active" | "activating" | "reloading" => UnitState::Running,
        _ => UnitState::Failed(format!("{active} ({sub}), result {result}, exit status {status}")),
    }
}

/// The last lines `unit` logged.
fn journal_cmd(unit: &str) -> Cmd {
    Cmd::new("journalctl").args(["-u", unit, "-n", "12", "--no-pager", "-o", "cat"])
}

/// The scratch PostgreSQL as a transient unit: its own directory, socket and port, no TCP
/// listener, no archiving, no TLS, no replication settings, logging to the journal, and the
/// settings pg_control requires (`replay`, from `pg_controldata`).
pub fn start_cmd(bin_dir: &str, replay: &[String]) -> Cmd {
    let mut c = Cmd::new("systemd-run")
        .arg(format!("--unit={UNIT}"))
        .args(["--collect", "--quiet", "-p", "User=postgres", "-p", "Group=postgres"])
        .args([
            "-p",
            "RuntimeDirectory=pgha-drill-restore",
            "-p",
            "RuntimeDirectoryMode=0755",
        ])
        .args(["-p", "KillSignal=SIGINT", "-p", "TimeoutStopSec=60"])
        .arg("-p")
        .arg(format!("RuntimeMaxSec={SCRATCH_MAX_S}"))
        .arg(format!("{bin_dir}/postgres"))
        .args(["-D", SCRATCH_DIR]);
    let mut settings = vec![
        format!("data_directory={SCRATCH_DIR}"),
        format!("config_file={SCRATCH_DIR}/postgresql.conf"),
        format!("hba_file={SCRATCH_DIR}/pg_hba.conf"),
        format!("ident_file={SCRATCH_DIR}/pg_ident.conf"),
        format!("port={PORT}"),
        "listen_addresses=".to_string(),
        format!("unix_socket_directories={SOCKET_DIR}"),
        "archive_mode=off".to_string(),
        "ssl=off".to_string(),
        "cluster_name=pgha-drill-restore".to_string(),
        "primary_conninfo=".to_string(),
        "primary_slot_name=".to_string(),
        "synchronous_standby_names=".to_string(),
        "hot_standby=on".to_string(),
        "logging_collector=off".to_string(),
        "log_destination=stderr".to_string(),
        "external_pid_file=".to_string(),
    ];
    settings.extend(replay.iter().cloned());
    for s in settings {
        c = c.arg("-c").arg(s);
    }
    c
}

/// Removes a scratch instance: stops both units, forgets their failures, deletes the
/// directory. Idempotent; the result says whether anything is left.
pub async fn clean_host(hosts: &Hosts, host: &str) -> Result<(), DrillError> {
    let t = Duration::from_secs(90);
    // Not loaded (nothing to stop) exits 5: fine.
    let _ = hosts
        .exec(host, &Cmd::new("systemctl").args(["stop", UNIT, COPY_UNIT]), t)
        .await?;
    let _ = hosts
        .exec(host, &Cmd::new("systemctl").args(["reset-failed", UNIT, COPY_UNIT]), t)
        .await;
    hosts
        .run_ok(host, &Cmd::new("rm").args(["-rf", "--one-file-system", SCRATCH_DIR]), t)
        .await?;
    let active = hosts
        .exec(host, &Cmd::new("systemctl").args(["is-active", UNIT, COPY_UNIT]), t)
        .await?
        .stdout_text();
    let left = hosts
        .exec(host, &Cmd::new("test").args(["-e", SCRATCH_DIR]), t)
        .await?
        .success();
    if active
        .lines()
        .any(|l| matches!(l.trim(), "active" | "activating" | "deactivating"))
        || left
    {
        return Err(DrillError::Host {
            host: host.to_string(),
            detail: format!(
                "the scratch instance is still there after cleaning ({UNIT}: {}; {SCRATCH_DIR} exists: {left})",
                active.trim()
            ),
        });
    }
    Ok(())
}

/// Removes scratch instances from every PostgreSQL node (an earlier run may have chosen
/// another one); the errors.
pub async fn clean_all(hosts: &Hosts, inv: &Inventory) -> Vec<DrillError> {
    let nodes: Vec<String> = inv.hosts_with(Role::Postgres).map(|h| h.name.to_string()).collect();
    futures::future::join_all(nodes.iter().map(|h| clean_host(hosts, h)))
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect()
}

/// Runs the drill; the report (never an error: a failed step is a failure in it).
pub async fn run(s: &RestoreSetup) -> RestoreReport {
    let b = s.inv.backup.as_ref();
    let mut r = RestoreReport {
        drill: "restore",
        run: s.run.to_string(),
        lab: s.lab,
        repo_host: b.map(|b| b.host.to_string()).unwrap_or_default(),
        stanza: b.map(|b| b.stanza.clone()).unwrap_or_default(),
        scratch_dir: SCRATCH_DIR.to_string(),
        scratch_port: PORT,
        database: s.db.clone(),
        ..RestoreReport::default()
    };
    let result = drill(s, &mut r).await;
    match result {
        Ok(()) => {}
        Err(DrillError::Interrupted) => r.interrupted = true,
        Err(e) => r.fail(e.to_string()),
    }
    if r.kept && result_ok(&r) {
        s.say(&format!(
            "kept: the scratch instance runs on {} (runuser -u postgres -- psql -h {SOCKET_DIR} -p {PORT}); it stops by itself after {} h; remove it with `pgha drill {} restore --clean`",
            r.scratch_host,
            SCRATCH_MAX_S / 3600,
            s.inv.path.display()
        ));
    } else {
        r.kept = false;
        let t = Instant::now();
        let errors = clean_all(&s.hosts, &s.inv).await;
        r.step("clean up", t.elapsed().as_secs_f64());
        r.cleaned_up = errors.is_empty();
        for e in errors {
            r.fail(format!("clean up: {e}"));
        }
        if r.cleaned_up {
            s.say("scratch instance removed");
        }
    }
    s.hosts.close_all().await;
    r.judge();
    r
}

fn result_ok(r: &RestoreReport) -> bool {
    r.failures.is_empty() && !r.interrupted
}

async fn drill(s: &RestoreSetup, r: &mut RestoreReport) -> Result<(), DrillError> {
    let Some(b) = s.inv.backup.as_ref() else {
        return Err(step(
            "backup role",
            "no host has the role `backup`; add one and deploy (docs/backup.md)",
        ));
    };
    let (repo, stanza) = (b.host.to_string(), b.stanza.clone());
    if !s.sql.available().await {
        return Err(step(
            "psql on this machine",
            format!(
                "`{} --version` failed; install it (apt-get install postgresql-client)",
                s.sql.program
            ),
        ));
    }
    let t = Instant::now();
    let mut wanted = s.nodes();
    wanted.push(repo.clone());
    let errors = s.hosts.connect(&wanted).await;
    if !errors.is_empty() {
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        return Err(step("SSH", text.join("; ")));
    }
    let members = s
        .or_cancel(cluster::members(&s.hosts, &s.inv, &s.remote_ca, &BTreeSet::new()))
        .await?;
    let nodes = s.nodes();
    let expected: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let healthy = cluster::assess(&members, &expected, s.inv.patroni.synchronous_mode)
        .map_err(|d| step("cluster not healthy", d))?;
    let leader = healthy.leader.clone();
    r.primary = leader.clone();
    let scratch = scratch_host(&members, &leader);
    if scratch == leader {
        r.warnings.push(format!(
            "no replica: the scratch instance runs on the primary's host {leader} (its disk and IO)"
        ));
    }
    r.scratch_host = scratch.clone();
    if let Some(e) = clean_all(&s.hosts, &s.inv).await.into_iter().next() {
        return Err(step("removing an earlier scratch instance", e.to_string()));
    }
    let version_num = s
        .run_ok(
            &scratch,
            &pgbr::local_psql(s.pg_port(), "SELECT current_setting('server_version_num')"),
            cluster::POLL_TIMEOUT,
        )
        .await?;
    let major = version_num.trim().parse::<u32>().map(|v| v / 10000).map_err(|_| {
        step(
            "PostgreSQL version",
            format!("{scratch}: unexpected server_version_num {:?}", version_num.trim()),
        )
    })?;
    let bin_dir = format!("/usr/lib/postgresql/{major}/bin");
    let version = pgbr::parse_version(&s.run_ok(&repo, &pgbr::version_cmd(), cluster::POLL_TIMEOUT).await?)
        .ok_or_else(|| {
            step(
                "pgbackrest version",
                format!("{repo}: cannot read `pgbackrest version`"),
            )
        })?;
    let info = read_info(s, &repo, &stanza).await?;
    let picked = match &s.set {
        Some(label) => Some(
            info.backups
                .iter()
                .find(|e| &e.label == label)
                .cloned()
                .ok_or_else(|| {
                    step(
                        "--set",
                        format!(
                            "no backup {label} in stanza {stanza}; the repository has: {}",
                            info.backups
                                .iter()
                                .map(|e| e.label.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?,
        ),
        None => None,
    };
    r.step("preconditions", t.elapsed().as_secs_f64());
    s.say(&format!(
        "cluster healthy: primary {leader}; scratch instance on {scratch} ({SCRATCH_DIR}, socket {SOCKET_DIR} port {PORT}); repository {repo}, stanza {stanza}"
    ));

    s.or_cancel(async {
        s.sql
            .run_retry(&s.sql.rw, writer::CREATE_TABLE, Duration::from_secs(30))
            .await
            .map_err(|d| step(&format!("RW through PgBouncer ({}_rw)", s.db), d))
    })
    .await?;
    let progress = s.progress.clone();
    let w = Writer::start(
        s.sql.clone(),
        s.run.clone(),
        Arc::new(move |a: &Attempt| {
            progress(&format!(
                "writer: row {} {}",
                a.n,
                if a.ok() {
                    "acknowledged".to_string()
                } else {
                    format!("failed: {}", a.error.as_deref().unwrap_or("?"))
                }
            ))
        }),
    );
    s.say(&format!(
        "writer: a row every {} ms into pgha_verify.drill_rows through {}_rw (run {})",
        writer::INTERVAL.as_millis(),
        s.db,
        s.run
    ));
    let marked = mark_target(
        s,
        r,
        &w,
        &repo,
        &stanza,
        &leader,
        version,
        healthy_streams(&members),
        picked,
    )
    .await;
    r.writes = w.stop().await;
    let (label, target) = marked?;
    let attempts = r.writes.len();
    s.say(&format!("writer stopped after {attempts} writes"));

    restore_and_check(s, r, &scratch, &stanza, &label, &target, &bin_dir).await
}

fn healthy_streams(members: &[Member]) -> bool {
    members.iter().any(Member::streams)
}

async fn read_info(s: &RestoreSetup, repo: &str, stanza: &str) -> Result<pgbr::StanzaInfo, DrillError> {
    let body = s.run_ok(repo, &pgbr::info_cmd(stanza), Duration::from_secs(60)).await?;
    pgbr::parse_info(&body, stanza).map_err(|e| step("pgbackrest info", format!("{repo}: {e}")))
}

/// Waits until the writer has `n` rows acknowledged that were sent at or after `since_ms`.
async fn rows_after(s: &RestoreSetup, w: &Writer, since_ms: i64, n: usize, what: &str) -> Result<(), DrillError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = w.snapshot().iter().filter(|a| a.ok() && a.start_ms >= since_ms).count();
        if got >= n {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(step(
                "writer",
                format!(
                    "only {got} row(s) acknowledged {what} within 60 s (RW through PgBouncer {}_rw)",
                    s.db
                ),
            ));
        }
        s.sleep(Duration::from_millis(200)).await?;
    }
}

/// Takes (or picks) the backup, reads T with rows on both sides, closes and archives its
/// WAL segment. Returns the backup's label and T.
#[allow(clippy::too_many_arguments)]
async fn mark_target(
    s: &RestoreSetup,
    r: &mut RestoreReport,
    w: &Writer,
    repo: &str,
    stanza: &str,
    leader: &str,
    version: (u32, u32),
    streams: bool,
    picked: Option<pgbr::BackupEntry>,
) -> Result<(String, String), DrillError> {
    rows_after(s, w, 0, ROWS_EACH_SIDE, "before the backup").await?;
    let (entry, taken, seconds) = match picked {
        Some(e) => {
            s.say(&format!("using backup {} ({}) from --set", e.label, e.kind));
            (e, false, None)
        }
        None => {
            let before = read_info(s, repo, stanza).await?;
            let kind = if before.backups.iter().any(|e| e.kind == "full" && !e.error) {
                BackupType::Incr
            } else {
                BackupType::Full
            };
            s.say(&format!(
                "{repo}: {kind} backup of stanza {stanza} while the writer runs"
            ));
            let t = Instant::now();
            s.run_ok(
                repo,
                &pgbr::backup_cmd(stanza, kind, version, streams),
                Duration::from_secs(6 * 3600),
            )
            .await?;
            let secs = t.elapsed().as_secs_f64();
            r.step("backup", secs);
            let after = read_info(s, repo, stanza).await?;
            let labels: Vec<&str> = before.backups.iter().map(|e| e.label.as_str()).collect();
            let new = after
                .backups
                .iter()
                .rfind(|e| !labels.contains(&e.label.as_str()))
                .cloned()
                .ok_or_else(|| {
                    step(
                        "backup",
                        format!("{repo}: pgbackrest backup succeeded but info lists no new backup"),
                    )
                })?;
            s.say(&format!(
                "backup {} ({}, {} bytes) in {secs:.1} s",
                new.label, new.kind, new.size
            ));
            (new, true, Some(secs))
        }
    };
    r.backup_size = Some(entry.size);
    r.backup = Some(BackupUsed {
        label: entry.label.clone(),
        kind: entry.kind.clone(),
        taken,
        seconds,
        stop: entry.stop,
    });
    let after_backup = now_ms();
    rows_after(s, w, after_backup, ROWS_EACH_SIDE, "after the backup").await?;

    // T on the primary's clock: every row acknowledged before we asked committed before it,
    // every row sent after the answer commits after it.
    let t_sql = "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'";
    let before_ms = now_ms();
    let target = s
        .run_ok(leader, &pgbr::local_psql(s.pg_port(), t_sql), cluster::POLL_TIMEOUT)
        .await?;
    let after_ms = now_ms();
    let target = target.trim().to_string();
    if target.len() != "2026-12-02 03:00:00.000000+00".len() {
        return Err(step(
            "target time",
            format!("{leader}: unexpected clock_timestamp() {target:?}"),
        ));
    }
    r.target_time = Some(target.clone());
    r.target_window_ms = Some((before_ms, after_ms));
    s.say(&format!("T = {target} (primary {leader}'s clock)"));
    rows_after(s, w, after_ms, ROWS_EACH_SIDE, "after T").await?;

    // The segment holding T must be in the archive before the restore can reach T.
    let t = Instant::now();
    let seg = s
        .run_ok(
            leader,
            &pgbr::local_psql(s.pg_port(), "SELECT pg_walfile_name(pg_switch_wal())"),
            cluster::POLL_TIMEOUT,
        )
        .await?
        .trim()
        .to_string();
    r.switched_wal = Some(seg.clone());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let a = pgbr::parse_archiver(
            &s.run_ok(leader, &pgbr::archiver_cmd(s.pg_port()), cluster::POLL_TIMEOUT)
                .await?,
        )
        .map_err(|e| step("pg_stat_archiver", format!("{leader}: {e}")))?;
        if a.has_archived(&seg) {
            break;
        }
        if Instant::now() >= deadline {
            return Err(step(
                "archiving",
                format!(
                    "{leader}: WAL segment {seg} (holding T) not archived within 120 s: last archived {}, {} failure(s){}",
                    a.last_archived_wal.as_deref().unwrap_or("none"),
                    a.failed_count,
                    if a.failing() {
                        ", archiving is failing now (pgha verify names why)"
                    } else {
                        ""
                    }
                ),
            ));
        }
        s.sleep(Duration::from_millis(500)).await?;
    }
    let secs = t.elapsed().as_secs_f64();
    r.archived_after_s = Some((secs * 10.0).round() / 10.0);
    r.step("switch and archive the WAL holding T", secs);
    s.say(&format!("WAL segment {seg} (holding T) archived after {secs:.1} s"));
    Ok((entry.label, target))
}

/// Disk, restore, start, wait, count, check.
async fn restore_and_check(
    s: &RestoreSetup,
    r: &mut RestoreReport,
    host: &str,
    stanza: &str,
    label: &str,
    target: &str,
    bin_dir: &str,
) -> Result<(), DrillError> {
    let avail = s
        .run_ok(
            host,
            &Cmd::new("df").args(["-B1", "--output=avail", "/var/lib/postgresql"]),
            cluster::POLL_TIMEOUT,
        )
        .await?;
    let avail: u64 = avail.lines().filter_map(|l| l.trim().parse().ok()).next().unwrap_or(0);
    let need = r.backup_size.unwrap_or(0) / 10 * 11 + (256 << 20);
    if avail < need {
        return Err(step(
            "disk",
            format!(
                "{host}: {avail} bytes free under /var/lib/postgresql, the restore needs about {need}; free space or restore a smaller backup"
            ),
        ));
    }
    s.run_ok(
        host,
        &Cmd::new("install").args(["-d", "-o", "postgres", "-g", "postgres", "-m", "0700", SCRATCH_DIR]),
        cluster::POLL_TIMEOUT,
    )
    .await?;
    s.say(&format!(
        "{host}: pgbackrest restore of {label} to T into {SCRATCH_DIR}"
    ));
    let t0 = Instant::now();
    s.run_ok(host, &restore_cmd(stanza, label, target), cluster::POLL_TIMEOUT)
        .await
        .map_err(|e| step("pgbackrest restore", e.to_string()))?;
    wait_copy(s, host).await?;
    let restore_s = t0.elapsed().as_secs_f64();
    r.restore_s = Some(round1(restore_s));
    r.step("pgbackrest restore", restore_s);
    let du = s
        .run_ok(
            host,
            &Cmd::new("du").args(["-sb", SCRATCH_DIR]),
            Duration::from_secs(300),
        )
        .await?;
    let bytes = du.split_whitespace().next().and_then(|n| n.parse::<u64>().ok());
    r.bytes_restored = bytes;
    r.restore_mb_per_s = bytes
        .filter(|_| restore_s > 0.0)
        .map(|b| round1(b as f64 / 1e6 / restore_s));
    let control = s
        .run_ok(
            host,
            &Cmd::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(format!("{bin_dir}/pg_controldata"))
                .arg(SCRATCH_DIR),
            cluster::POLL_TIMEOUT,
        )
        .await?;
    let replay = rr::controldata_settings(&control).map_err(|e| step("pg_controldata", format!("{host}: {e}")))?;
    let t1 = Instant::now();
    s.run_ok(host, &start_cmd(bin_dir, &replay), cluster::POLL_TIMEOUT)
        .await?;
    s.say(&format!(
        "{host}: scratch PostgreSQL started ({UNIT}); waiting for recovery to T and promotion"
    ));
    wait_ready(s, host).await?;
    let recovery_s = t1.elapsed().as_secs_f64();
    r.recovery_s = Some(round1(recovery_s));
    r.rto_s = Some(round1(t0.elapsed().as_secs_f64()));
    r.step("recovery to T until queries are answered", recovery_s);
    s.say(&format!(
        "scratch instance accepts queries: RTO {:.1} s (restore {restore_s:.1} s, recovery {recovery_s:.1} s), {} bytes",
        t0.elapsed().as_secs_f64(),
        bytes.map_or("?".into(), |b| b.to_string())
    ));

    let rows = s
        .run_ok(
            host,
            &scratch_psql(&s.db, &writer::count_sql(&s.run)),
            Duration::from_secs(120),
        )
        .await
        .map_err(|e| step("counting rows in the scratch instance", e.to_string()))?;
    let present = writer::parse_rows(&rows).map_err(|e| step("counting rows in the scratch instance", e))?;
    let (before_ms, after_ms) = r.target_window_ms.unwrap_or((0, 0));
    let check = rr::check_rows(&r.writes, before_ms, after_ms, &present);
    s.say(&format!(
        "rows: {} acknowledged before T, {} present in the copy, {} missing, {} past T",
        check.acked_before_t,
        check.present,
        check.missing.len(),
        check.beyond_target.len()
    ));
    r.rows = Some(check);

    let t2 = Instant::now();
    r.consistency = Some(consistency(s, host, bin_dir).await?);
    r.step("consistency check", t2.elapsed().as_secs_f64());
    if s.keep {
        r.kept = true;
    }
    Ok(())
}

/// Waits until the restore unit is done (6 h at most); fails with its journal when it failed.
async fn wait_copy(s: &RestoreSetup, host: &str) -> Result<(), DrillError> {
    let deadline = Instant::now() + Duration::from_secs(6 * 3600);
    loop {
        let out = s
            .run_ok(host, &unit_state_cmd(COPY_UNIT), cluster::POLL_TIMEOUT)
            .await?;
        match parse_unit_state(&out) {
            UnitState::Succeeded => return Ok(()),
            UnitState::Running if Instant::now() < deadline => s.sleep(Duration::from_millis(500)).await?,
            state => {
                let log = s
                    .hosts
                    .exec(host, &journal_cmd(COPY_UNIT), cluster::POLL_TIMEOUT)
                    .await
                    .map(|o| o.stdout_text())
                    .unwrap_or_default();
                return Err(step(
                    "pgbackrest restore",
                    format!("{host}: {COPY_UNIT} {state:?}: {}", log.trim()),
                ));
            }
        }
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Waits until the scratch instance answers as a primary (recovery reached T and promoted);
/// fails with the journal's last lines when its unit stopped.
async fn wait_ready(s: &RestoreSetup, host: &str) -> Result<(), DrillError> {
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let out = s
            .or_cancel(s.hosts.exec(
                host,
                &scratch_psql("postgres", "SELECT pg_is_in_recovery()"),
                cluster::POLL_TIMEOUT,
            ))
            .await?;
        if out.success() && out.stdout_text().trim() == "f" {
            return Ok(());
        }
        let state = s
            .hosts
            .exec(
                host,
                &Cmd::new("systemctl").args(["is-active", UNIT]),
                cluster::POLL_TIMEOUT,
            )
            .await?
            .stdout_text();
        if !matches!(state.trim(), "active" | "activating") || Instant::now() >= deadline {
            let log = s
                .hosts
                .exec(host, &journal_cmd(UNIT), cluster::POLL_TIMEOUT)
                .await
                .map(|o| o.stdout_text())
                .unwrap_or_default();
            return Err(step(
                "recovery to T",
                format!(
                    "{host}: the scratch instance {} ({UNIT} {}): {}",
                    if Instant::now() >= deadline {
                        "did not promote within 30 min"
                    } else {
                        "stopped"
                    },
                    state.trim(),
                    log.trim()
                ),
            ));
        }
        s.sleep(Duration::from_millis(300)).await?;
    }
}

/// `pg_amcheck --all --install-missing` on the copy (heap and B-tree checks of every database;
/// it installs the amcheck extension into the copy, never into the cluster).
async fn consistency(s: &RestoreSetup, host: &str, bin_dir: &str) -> Result<Consistency, DrillError> {
    let tool = format!("{bin_dir}/pg_amcheck");
    let present = s
        .hosts
        .exec(host, &Cmd::new("test").args(["-x", &tool]), cluster::POLL_TIMEOUT)
        .await?;
    if !present.success() {
        return Ok(Consistency {
            tool: "pg_amcheck".into(),
            passed: false,
            detail: format!("{host}: {tool} not found (it ships with the PostgreSQL client package)"),
        });
    }
    let cmd = Cmd::new("runuser")
        .args(["-u", "postgres", "--", &tool, "-h", SOCKET_DIR, "-p"])
        .arg(PORT.to_string())
        .args(["--all", "--install-missing"]);
    let out = s.or_cancel(s.hosts.exec(host, &cmd, Duration::from_secs(3600))).await?;
    let text = format!("{}\n{}", out.stdout_text(), out.stderr_tail(6));
    let tail: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let detail = tail[tail.len().saturating_sub(6)..].join("\n");
    s.say(&format!(
        "consistency: pg_amcheck --all --install-missing {}",
        if out.success() {
            "reports no corruption".to_string()
        } else {
            format!("exited {:?}: {detail}", out.code)
        }
    ));
    Ok(Consistency {
        tool: "pg_amcheck --all --install-missing".into(),
        passed: out.success(),
        detail: if out.success() { String::new() } else { detail },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, role: &str, state: &str) -> Member {
        serde_json::from_value(serde_json::json!({"name": name, "role": role, "state": state, "timeline": 1}))
            .expect("member")
    }

    #[test]
    fn the_scratch_host_is_an_async_replica_where_there_is_one() {
        let m = vec![
            member("node1", "leader", "running"),
            member("node2", "sync_standby", "streaming"),
            member("node3", "replica", "streaming"),
        ];
        assert_eq!(scratch_host(&m, "node1"), "node3");
        assert_eq!(scratch_host(&m[..2], "node1"), "node2");
        assert_eq!(scratch_host(&m[..1], "node1"), "node1");
    }

    #[test]
    fn unit_states_parse() {
        let done = "ActiveState=active\nSubState=exited\nResult=success\nExecMainStatus=0\n";
        assert_eq!(parse_unit_state(done), UnitState::Succeeded);
        let running = "ActiveState=active\nSubState=running\nResult=success\nExecMainStatus=0\n";
        assert_eq!(parse_unit_state(running), UnitState::Running);
        let failed = "ActiveState=failed\nSubState=failed\nResult=exit-code\nExecMainStatus=56\n";
        assert!(matches!(parse_unit_state(failed), UnitState::Failed(w) if w.contains("exit status 56")));
        assert!(matches!(
            parse_unit_state("ActiveState=inactive\n"),
            UnitState::Failed(_)
        ));
    }

    #[test]
    fn the_copy_never_archives_nor_listens() {
        let restore = restore_cmd("st", "20261202-010000F", "2026-12-02 03:00:00.123456+00")
            .argv()
            .join(" ");
        assert!(
            restore.contains("--archive-mode=off") && restore.contains("--target-action=promote"),
            "{restore}"
        );
        assert!(
            restore.contains("--type=time") && restore.contains("--set=20261202-010000F"),
            "{restore}"
        );
        assert!(restore.contains(&format!("--pg1-path={SCRATCH_DIR}")), "{restore}");
        let start = start_cmd("/usr/lib/postgresql/17/bin", &["max_connections=100".to_string()]);
        let argv = start.argv();
        for want in [
            "listen_addresses=",
            "archive_mode=off",
            "primary_conninfo=",
            "port=5499",
            "max_connections=100",
        ] {
            assert!(argv.iter().any(|a| a == want), "{want} missing: {argv:?}");
        }
        assert!(argv.iter().any(|a| a == "/usr/lib/postgresql/17/bin/postgres"));
    }
}
