//! `pgha backup` and `pgha backup list`: a pgBackRest backup of the cluster, taken on the
//! repository host (from a streaming standby where possible, so the primary does not pay for
//! it), and the repository's backups as `pgbackrest info` shows them. pgBackRest's JSON is
//! read only through [`crate::facts::pgbackrest`]. Nothing prints here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::switchover::Cluster;
use super::{Connect, OpsError, Reporter, pool};
use crate::facts::pgbackrest::{self as pgbr, BackupEntry, StanzaInfo};
use crate::inventory::{BackupType, Inventory};
use crate::transport::{Cmd, Conn, DEFAULT_TIMEOUT};

/// Longest a backup may take before pgha gives up waiting (pgBackRest keeps its lock; a
/// second run waits for it).
const BACKUP_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// What `pgha backup` does.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    /// full, diff or incr.
    pub kind: BackupType,
    /// State directory (default beside the inventory).
    pub state: Option<PathBuf>,
    /// How to reach the hosts.
    pub connect: Connect,
}

/// Where a backup read the data files from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A streaming standby (the primary only ran start/stop backup).
    Standby,
    /// The primary.
    Primary,
}

/// A backup taken.
#[derive(Clone, Debug, Serialize)]
pub struct BackupDone {
    /// The repository host.
    pub repo_host: String,
    /// The stanza.
    pub stanza: String,
    /// Where the data files were read.
    pub source: Source,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// The new backup, as `info` lists it.
    pub backup: BackupEntry,
}

/// The repository as `pgha backup list` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct BackupList {
    /// The repository host.
    pub repo_host: String,
    /// The stanza, its backups and WAL archive.
    pub stanza: StanzaInfo,
}

pub(super) fn settings(inv: &Inventory) -> Result<&crate::inventory::BackupSettings, OpsError> {
    inv.backup.as_ref().ok_or_else(|| {
        OpsError::Usage(format!(
            "{}: no host has the role `backup`; add it to a host that is not a PostgreSQL node and deploy (docs/backup.md)",
            inv.path.display()
        ))
    })
}

pub(super) async fn run(conn: &Conn, host: &str, cmd: &Cmd, timeout: Duration, what: &str) -> Result<String, OpsError> {
    let out = conn.exec(cmd, None, timeout).await?;
    if !out.success() {
        return Err(OpsError::Day2(format!("{host}: {what} failed: {}", out.stderr_tail(6))));
    }
    Ok(out.stdout_text())
}

/// Reads the stanza from the repository host.
pub(super) async fn info(conn: &Conn, host: &str, stanza: &str) -> Result<StanzaInfo, OpsError> {
    let body = run(conn, host, &pgbr::info_cmd(stanza), DEFAULT_TIMEOUT, "pgbackrest info").await?;
    pgbr::parse_info(&body, stanza).map_err(|e| OpsError::Day2(format!("{host}: {e}")))
}

/// The `pgbackrest backup` command (the rule is [`pgbr::backup_cmd`]'s).
pub fn backup_cmd(stanza: &str, kind: BackupType, version: (u32, u32), standby_streams: bool) -> Cmd {
    pgbr::backup_cmd(stanza, kind, version, standby_streams)
}

/// Where pgBackRest's console log says the files came from: a backup from a standby waits for
/// "replay on the standby" to reach the start LSN (`backup.c`).
pub fn source_of(log: &str) -> Source {
    if log.contains("on the standby") {
        Source::Standby
    } else {
        Source::Primary
    }
}

/// Takes a backup of `kind` on the repository host and returns it as `info` lists it.
pub async fn backup(inv: &Inventory, o: &BackupOptions, rep: &Arc<dyn Reporter>) -> Result<BackupDone, OpsError> {
    let b = settings(inv)?;
    let c = Cluster::open(inv, o.state.as_deref(), &o.connect, "backup", rep).await?;
    let result = async {
        let repo = b.host.as_str();
        let conn = c
            .conns
            .get(repo)
            .ok_or_else(|| OpsError::Day2(format!("{repo}: not connected")))?;
        let members = c.members().await?;
        let streams = members.iter().any(|m| m.streams());
        let version =
            pgbr::parse_version(&run(conn, repo, &pgbr::version_cmd(), DEFAULT_TIMEOUT, "pgbackrest version").await?)
                .ok_or_else(|| OpsError::Day2(format!("{repo}: cannot read `pgbackrest version`")))?;
        let before: Vec<String> = info(conn, repo, &b.stanza)
            .await?
            .backups
            .into_iter()
            .map(|e| e.label)
            .collect();
        rep.info(&format!(
            "{repo}: {} backup of stanza {} ({})",
            o.kind,
            b.stanza,
            if streams {
                "a standby streams: reading from it"
            } else {
                "no streaming standby: from the primary"
            }
        ));
        let t = Instant::now();
        let log = run(
            conn,
            repo,
            &backup_cmd(&b.stanza, o.kind, version, streams),
            BACKUP_TIMEOUT,
            "pgbackrest backup",
        )
        .await?;
        let seconds = t.elapsed().as_secs_f64();
        let after = info(conn, repo, &b.stanza).await?;
        let new = after
            .backups
            .into_iter()
            .rfind(|e| !before.contains(&e.label))
            .ok_or_else(|| {
                OpsError::Day2(format!(
                    "{repo}: pgbackrest backup succeeded but info lists no new backup"
                ))
            })?;
        let source = if streams { source_of(&log) } else { Source::Primary };
        rep.info(&format!(
            "{repo}: backup {} ({}, {} bytes, {} in the repository) in {seconds:.1} s",
            new.label, new.kind, new.size, new.repo_size
        ));
        Ok(BackupDone {
            repo_host: repo.to_string(),
            stanza: b.stanza.clone(),
            source,
            seconds,
            backup: new,
        })
    }
    .await;
    c.close().await;
    result
}

/// Lists the repository's backups and WAL archive (connects to the repository host only).
pub async fn list(inv: &Inventory, connect: &Connect) -> Result<BackupList, OpsError> {
    let b = settings(inv)?;
    let mut connect = connect.clone();
    connect.limit = vec![b.host.to_string()];
    let conns = pool::connect_every(inv, &connect, "backup list").await?;
    let result = async {
        let conn = conns
            .get(b.host.as_str())
            .ok_or_else(|| OpsError::Day2(format!("{}: not connected", b.host)))?;
        Ok(BackupList {
            repo_host: b.host.to_string(),
            stanza: info(conn, b.host.as_str(), &b.stanza).await?,
        })
    }
    .await;
    pool::close_all(&conns).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standby_flag_only_where_needed() {
        let argv = |v, s| backup_cmd("st", BackupType::Full, v, s).argv().to_vec();
        assert!(argv((2, 45), true).contains(&"--backup-standby".to_string()));
        assert!(!argv((2, 45), false).contains(&"--backup-standby".to_string()));
        assert!(!argv((2, 55), true).contains(&"--backup-standby".to_string()));
        let a = argv((2, 55), true);
        assert_eq!(a.last().map(String::as_str), Some("backup"));
        assert!(a.contains(&"--stanza=st".to_string()) && a.contains(&"--type=full".to_string()));
    }
}
