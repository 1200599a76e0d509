//! pgBackRest facts, read on the repository host as postgres: `info --output=json` (the stanza,
//! its backups and WAL archive range) and `version`; and the archiver's side on the primary
//! (`pg_stat_archiver`: what was archived last, failures since). [`info_cmd`] and
//! [`archiver_cmd`] are the commands; [`parse_info`], [`parse_version`] and [`parse_archiver`]
//! are pure and tested (tests/fixtures/pgbackrest/). The one place that knows pgBackRest's JSON
//! layout and when a WAL segment counts as archived: `pgha backup`, `backup list`, the restore
//! drill and their lab tests read it here.

use serde::Serialize;
use serde_json::Value;

use crate::inventory::BackupType;
use crate::transport::Cmd;

/// `pgbackrest` as postgres (the owner of the repository and of the unit's files).
pub fn pgbackrest(stanza: &str) -> Cmd {
    Cmd::new("runuser")
        .args(["-u", "postgres", "--", "pgbackrest"])
        .arg(format!("--stanza={stanza}"))
}

/// `pgbackrest --stanza=S --output=json info`.
pub fn info_cmd(stanza: &str) -> Cmd {
    pgbackrest(stanza).args(["--output=json", "info"])
}

/// `pgbackrest version`.
pub fn version_cmd() -> Cmd {
    Cmd::new("pgbackrest").arg("version")
}

/// The `pgbackrest backup` command: on pgBackRest < 2.54 (no `prefer`), `--backup-standby` only
/// when a standby streams (with none, `y` fails); later ones follow the configured `prefer`.
pub fn backup_cmd(stanza: &str, kind: BackupType, version: (u32, u32), standby_streams: bool) -> Cmd {
    let mut c = pgbackrest(stanza)
        .arg(format!("--type={kind}"))
        .arg("--log-level-console=info");
    if !has_standby_prefer(version) && standby_streams {
        c = c.arg("--backup-standby");
    }
    c.arg("backup")
}

/// One backup of the stanza.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackupEntry {
    /// pgBackRest's label (`20261202-001530F`, `…_20261202-002000I`).
    pub label: String,
    /// `full`, `diff` or `incr`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Start, Unix seconds.
    pub start: i64,
    /// Stop, Unix seconds.
    pub stop: i64,
    /// Database size restored from it, bytes.
    pub size: u64,
    /// Its size in the repository (compressed, encrypted), bytes.
    pub repo_size: u64,
    /// First WAL segment it needs.
    pub wal_start: String,
    /// Last WAL segment it needs.
    pub wal_stop: String,
    /// The backup it depends on (diff/incr).
    pub prior: Option<String>,
    /// pgBackRest marked it as having errors (page checksums).
    pub error: bool,
}

/// The stanza as `info` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StanzaInfo {
    /// Stanza name.
    pub name: String,
    /// `status.code`: 0 ok, 1 missing stanza path, 2 no valid backups, 3 missing stanza data…
    pub status_code: i64,
    /// `status.message`.
    pub status_message: String,
    /// Repository cipher (`aes-256-cbc`, or `none`).
    pub cipher: String,
    /// A backup holds the stanza lock now.
    pub backup_running: bool,
    /// Backups, oldest first.
    pub backups: Vec<BackupEntry>,
    /// WAL archive ranges (`id` like `17-1`, `min`, `max` segment names).
    pub archive: Vec<ArchiveRange>,
}

/// One range of archived WAL for one database id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArchiveRange {
    /// `<pg version>-<db id>`.
    pub id: String,
    /// Oldest segment.
    pub min: String,
    /// Newest segment.
    pub max: String,
}

fn text(v: &Value, path: &[&str]) -> String {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str().unwrap_or_default().to_string()
}

fn num(v: &Value, path: &[&str]) -> i64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_i64().unwrap_or_default()
}

/// Parses `info --output=json` and returns the stanza called `stanza`.
pub fn parse_info(body: &str, stanza: &str) -> Result<StanzaInfo, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("pgbackrest info is not JSON: {e}"))?;
    let list = v
        .as_array()
        .ok_or("pgbackrest info: expected a JSON array of stanzas")?;
    let s = list
        .iter()
        .find(|s| s["name"].as_str() == Some(stanza))
        .ok_or_else(|| format!("pgbackrest info: no stanza `{stanza}`"))?;
    let backups = s["backup"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|b| BackupEntry {
                    label: text(b, &["label"]),
                    kind: text(b, &["type"]),
                    start: num(b, &["timestamp", "start"]),
                    stop: num(b, &["timestamp", "stop"]),
                    size: num(b, &["info", "size"]).max(0) as u64,
                    repo_size: num(b, &["info", "repository", "delta"]).max(0) as u64,
                    wal_start: text(b, &["archive", "start"]),
                    wal_stop: text(b, &["archive", "stop"]),
                    prior: b["prior"].as_str().map(str::to_string),
                    error: b["error"].as_bool().unwrap_or(false),
                })
                .collect()
        })
        .unwrap_or_default();
    let archive = s["archive"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| ArchiveRange {
                    id: text(r, &["id"]),
                    min: text(r, &["min"]),
                    max: text(r, &["max"]),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(StanzaInfo {
        name: stanza.to_string(),
        status_code: num(s, &["status", "code"]),
        status_message: text(s, &["status", "message"]),
        cipher: text(s, &["cipher"]),
        backup_running: s["status"]["lock"]["backup"]["held"].as_bool().unwrap_or(false),
        backups,
        archive,
    })
}

/// `pgBackRest 2.45` → (2, 45).
pub fn parse_version(out: &str) -> Option<(u32, u32)> {
    let v = out.split_whitespace().nth(1)?;
    let mut it = v.split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Whether this pgBackRest knows `backup-standby=prefer` (2.54+): then the repository's
/// configuration decides; 2.45 has y/n only, and `y` fails without a streaming standby.
pub fn has_standby_prefer(version: (u32, u32)) -> bool {
    version >= (2, 54)
}

/// The archiver's state on the primary, from `pg_stat_archiver` (PostgreSQL's own record of
/// what `archive_command` pushed and what it failed to push).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Archiver {
    /// Last WAL file archived (a segment, a `.partial`, `.history` or `.backup` file).
    pub last_archived_wal: Option<String>,
    /// Seconds since it was archived.
    pub last_archived_age_s: Option<f64>,
    /// Failed `archive_command` runs since the statistics were reset.
    pub failed_count: u64,
    /// The file of the last failure.
    pub last_failed_wal: Option<String>,
    /// Seconds since the last failure.
    pub last_failed_age_s: Option<f64>,
    /// The segment being written now (`pg_walfile_name(pg_current_wal_lsn())`).
    pub current_wal: String,
    /// Segments waiting for the archiver (`.ready` files in `pg_wal/archive_status`).
    pub ready: u64,
}

/// The query behind [`Archiver`], one `|`-separated line (run on the primary: the current WAL
/// position does not exist on a standby).
pub const ARCHIVER_SQL: &str = "SELECT coalesce(last_archived_wal, ''), \
     coalesce(extract(epoch FROM clock_timestamp() - last_archived_time)::text, ''), failed_count, \
     coalesce(last_failed_wal, ''), coalesce(extract(epoch FROM clock_timestamp() - last_failed_time)::text, ''), \
     pg_walfile_name(pg_current_wal_lsn()), \
     (SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready') \
     FROM pg_stat_archiver";

/// `psql` as postgres on the node's own socket (peer authentication), unaligned, tuples only.
pub fn local_psql(port: u16, sql: &str) -> Cmd {
    Cmd::new("runuser")
        .args(["-u", "postgres", "--", "psql", "-p"])
        .arg(port.to_string())
        .args(["-XqtA", "-v", "ON_ERROR_STOP=1", "-c", sql])
}

/// [`ARCHIVER_SQL`] on the node (the primary).
pub fn archiver_cmd(port: u16) -> Cmd {
    local_psql(port, ARCHIVER_SQL)
}

/// Parses [`ARCHIVER_SQL`]'s line.
pub fn parse_archiver(out: &str) -> Result<Archiver, String> {
    let line = out
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or("pg_stat_archiver: no row")?;
    let f: Vec<&str> = line.split('|').collect();
    if f.len() != 7 {
        return Err(format!(
            "pg_stat_archiver: expected 7 fields, found {}: {line:?}",
            f.len()
        ));
    }
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let age = |s: &str| s.parse::<f64>().ok();
    let count = |s: &str, what: &str| {
        s.parse::<u64>()
            .map_err(|_| format!("pg_stat_archiver: {what} {s:?} is not a number"))
    };
    Ok(Archiver {
        last_archived_wal: opt(f[0]),
        last_archived_age_s: age(f[1]),
        failed_count: count(f[2], "failed_count")?,
        last_failed_wal: opt(f[3]),
        last_failed_age_s: age(f[4]),
        current_wal: f[5].to_string(),
        ready: count(f[6], "ready")?,
    })
}

impl Archiver {
    /// Whether archiving is failing now: the last attempt failed (a failure newer than the last
    /// success, or failures and never a success).
    pub fn failing(&self) -> bool {
        match (self.last_failed_age_s, self.last_archived_age_s) {
            (Some(failed), Some(ok)) => failed < ok,
            (Some(_), None) => true,
            _ => false,
        }
    }

    /// Whether `segment` (24 hex digits) is in the archive: the archiver pushes in order, so
    /// it is once the last archived file's segment part is at or past it.
    pub fn has_archived(&self, segment: &str) -> bool {
        self.last_archived_wal
            .as_deref()
            .is_some_and(|w| segment_at_or_after(w, segment))
    }
}

/// Whether the WAL file `file` (`<24 hex>`, or with `.partial` / `.<offset>.backup`) is at or past
/// the segment `segment`. History files (`00000002.history`) are not segments: false.
pub fn segment_at_or_after(file: &str, segment: &str) -> bool {
    let is_seg = |s: &str| s.len() >= 24 && s[..24].bytes().all(|b| b.is_ascii_hexdigit());
    is_seg(file) && is_seg(segment) && file[..24].to_ascii_uppercase() >= segment[..24].to_ascii_uppercase()
}

/// Backup health: the newest backup of each type, the archiver on the primary, and what is
/// wrong (what `pgha verify` fails on and `pgha status` flags).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Health {
    /// The stanza's `status.code` and message (0 ok, 2 no valid backup yet).
    pub stanza_status: Option<(i64, String)>,
    /// Seconds since the newest good backup of each type stopped (`full`, `diff`, `incr`);
    /// `None`: none of that type.
    pub last_backup_age_s: Vec<(String, Option<i64>)>,
    /// The primary's archiver.
    pub archiver: Option<Archiver>,
    /// Problems, each with its fix.
    pub problems: Vec<String>,
}

/// Segments waiting and nothing archived for this long, seconds: archiving stalls (an
/// `archive-push` waiting on an unreachable repository fails only after its timeouts).
pub const STALL_S: f64 = 300.0;

/// The health of `info` (read on `repo`) and the primary's `archiver` at Unix time `now_s`.
/// Archiving that fails now is a problem (WAL piles up in `pg_wal` until the disk fills, and
/// point-in-time recovery stops at the last archived segment); so is a stanza in error. No
/// backup yet is not (a fresh deploy has none), but its age shows as none.
pub fn health(info: Option<&StanzaInfo>, archiver: Option<&Archiver>, primary: &str, repo: &str, now_s: i64) -> Health {
    let mut problems = Vec::new();
    let ages = BackupType::ALL
        .iter()
        .map(|t| {
            let newest = info
                .into_iter()
                .flat_map(|i| i.backups.iter())
                .filter(|b| b.kind == t.as_str() && !b.error)
                .map(|b| b.stop)
                .max();
            (t.as_str().to_string(), newest.map(|stop| (now_s - stop).max(0)))
        })
        .collect();
    if let Some(i) = info
        && !matches!(i.status_code, 0 | 2)
    {
        problems.push(format!(
            "pgbackrest stanza {}: status {} ({}); run `pgbackrest --stanza={} check` on {repo} as postgres for the cause",
            i.name, i.status_code, i.status_message, i.name
        ));
    }
    if let Some(a) = archiver
        && a.failing()
    {
        problems.push(format!(
            "archiving is failing on the primary {primary}: {} failed attempt(s), the last for {} {} ago, last success {} ({} segment(s) waiting in pg_wal); \
             archive-push's error is in PostgreSQL's log on {primary} (journalctl -u patroni), and `pgbackrest --stanza=S check` on {repo} names the cause \
             (repository unreachable: pgbackrest.service on {repo}, TLS certificates; \"already exists … different checksum\": two primaries archived the same segment)",
            a.failed_count,
            a.last_failed_wal.as_deref().unwrap_or("?"),
            a.last_failed_age_s.map_or("?".to_string(), |s| format!("{s:.0} s")),
            match (&a.last_archived_wal, a.last_archived_age_s) {
                (Some(w), Some(s)) => format!("{w} {s:.0} s ago"),
                _ => "never".to_string(),
            },
            a.ready
        ));
    }
    if let Some(a) = archiver
        && !a.failing()
        && a.ready > 0
        && a.last_archived_age_s.is_none_or(|s| s > STALL_S)
    {
        problems.push(format!(
            "archiving stalls on the primary {primary}: {} segment(s) waiting in pg_wal and nothing archived for {} \
             (archive-push hangs: is the repository {repo} reachable on pgBackRest's port, pgbackrest.service running there?)",
            a.ready,
            a.last_archived_age_s.map_or("ever".to_string(), |s| format!("{s:.0} s")),
        ));
    }
    Health {
        stanza_status: info.map(|i| (i.status_code, i.status_message.clone())),
        last_backup_age_s: ages,
        archiver: archiver.cloned(),
        problems,
    }
}

impl Health {
    /// One line: backup ages and archive lag.
    pub fn summary(&self) -> String {
        let age = |s: &Option<i64>| match s {
            None => "none".to_string(),
            Some(s) if *s < 3600 => format!("{} min ago", s / 60),
            Some(s) if *s < 172_800 => format!("{:.1} h ago", *s as f64 / 3600.0),
            Some(s) => format!("{:.1} d ago", *s as f64 / 86400.0),
        };
        let backups: Vec<String> = self
            .last_backup_age_s
            .iter()
            .map(|(t, s)| format!("last {t} {}", age(s)))
            .collect();
        let archive = match &self.archiver {
            Some(a) => format!(
                "archived {} ({}), writing {}, {} segment(s) waiting, {} failure(s){}",
                a.last_archived_wal.as_deref().unwrap_or("nothing yet"),
                a.last_archived_age_s
                    .map_or("-".to_string(), |s| format!("{s:.0} s ago")),
                a.current_wal,
                a.ready,
                a.failed_count,
                if a.failing() { " — FAILING NOW" } else { "" }
            ),
            None => "archiver not read".to_string(),
        };
        format!("{}; {archive}", backups.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> String {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/pgbackrest/info.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("fixture")
    }

    #[test]
    fn info_gives_backups_archive_and_cipher() {
        let s = parse_info(&fixture(), "pgha-lab").expect("parses");
        assert_eq!(s.status_code, 0);
        assert_eq!(s.cipher, "aes-256-cbc");
        assert_eq!(s.backups.len(), 2);
        assert_eq!(s.backups[0].kind, "full");
        assert_eq!(s.backups[0].size, 31_584_731);
        assert_eq!(s.backups[1].prior.as_deref(), Some("20261202-001530F"));
        assert_eq!(s.archive[0].max, "000000020000000000000009");
        assert!(!s.backup_running);
        assert!(parse_info(&fixture(), "other").unwrap_err().contains("no stanza"));
        assert!(parse_info("nope", "x").is_err());
    }

    #[test]
    fn archiver_line_parses_and_judges() {
        let a = parse_archiver("000000010000000000000005|3.25|0|||000000010000000000000006|0\n").expect("parses");
        assert_eq!(a.last_archived_wal.as_deref(), Some("000000010000000000000005"));
        assert!(!a.failing());
        assert!(a.has_archived("000000010000000000000005"));
        assert!(!a.has_archived("000000010000000000000006"));
        let f =
            parse_archiver("000000010000000000000005|120.5|4|000000010000000000000006|2.0|000000010000000000000007|2")
                .expect("parses");
        assert!(f.failing() && f.failed_count == 4 && f.ready == 2);
        let recovered = Archiver {
            last_failed_age_s: Some(300.0),
            ..f.clone()
        };
        assert!(!recovered.failing());
        let never = parse_archiver("||2|000000010000000000000001|1.0|000000010000000000000001|1").expect("parses");
        assert!(never.failing() && !never.has_archived("000000010000000000000001"));
        assert!(parse_archiver("a|b").is_err());
        assert!(parse_archiver("").is_err());
        assert!(segment_at_or_after(
            "000000020000000000000003.partial",
            "000000010000000000000009"
        ));
        assert!(segment_at_or_after(
            "000000010000000000000002.00000028.backup",
            "000000010000000000000002"
        ));
        assert!(!segment_at_or_after("00000002.history", "000000010000000000000001"));
    }

    #[test]
    fn health_names_failing_archiving_and_backup_ages() {
        let info = parse_info(&fixture(), "pgha-lab").expect("parses");
        let stop = info
            .backups
            .iter()
            .filter(|b| b.kind == "full")
            .map(|b| b.stop)
            .max()
            .expect("a full");
        let ok = parse_archiver("000000010000000000000005|3.25|0|||000000010000000000000006|0").expect("parses");
        let h = health(Some(&info), Some(&ok), "node1", "repo", stop + 7200);
        assert!(h.problems.is_empty(), "{:?}", h.problems);
        assert_eq!(h.last_backup_age_s[0], ("full".to_string(), Some(7200)));
        assert_eq!(h.last_backup_age_s[1], ("diff".to_string(), None));
        assert_eq!(h.last_backup_age_s[2], ("incr".to_string(), Some(7200 - 265)));
        assert!(
            h.summary().contains("last full 2.0 h ago") && h.summary().contains("0 failure(s)"),
            "{}",
            h.summary()
        );
        let bad =
            parse_archiver("000000010000000000000005|120|4|000000010000000000000006|2|000000010000000000000007|2")
                .expect("parses");
        let h = health(Some(&info), Some(&bad), "node1", "repo", stop);
        assert_eq!(h.problems.len(), 1);
        assert!(
            h.problems[0].contains("archiving is failing on the primary node1: 4 failed"),
            "{}",
            h.problems[0]
        );
        assert!(h.problems[0].contains("check` on repo"), "{}", h.problems[0]);
        assert!(h.summary().contains("FAILING NOW"));
        let broken = StanzaInfo {
            status_code: 99,
            status_message: "other".into(),
            ..info.clone()
        };
        assert!(health(Some(&broken), None, "node1", "repo", stop).problems[0].contains("status 99"));
        let hung = parse_archiver("000000010000000000000005|400|0|||000000010000000000000007|2").expect("parses");
        let p = health(Some(&info), Some(&hung), "node1", "repo", stop).problems;
        assert!(
            p.len() == 1 && p[0].contains("archiving stalls on the primary node1: 2 segment(s)"),
            "{p:?}"
        );
        let idle = parse_archiver("000000010000000000000005|4000|0|||000000010000000000000006|0").expect("parses");
        assert!(
            health(Some(&info), Some(&idle), "node1", "repo", stop)
                .problems
                .is_empty(),
            "idle is not stalled"
        );
        let fresh = StanzaInfo {
            status_code: 2,
            backups: Vec::new(),
            ..info
        };
        let h = health(Some(&fresh), Some(&ok), "node1", "repo", stop);
        assert!(h.problems.is_empty() && h.summary().contains("last full none"));
    }

    #[test]
    fn standby_flag_only_where_needed() {
        let argv = |v, s| backup_cmd("st", BackupType::Full, v, s).argv().to_vec();
        assert!(argv((2, 45), true).contains(&"--backup-standby".to_string()));
        assert!(!argv((2, 45), false).contains(&"--backup-standby".to_string()));
        assert!(!argv((2, 55), true).contains(&"--backup-standby".to_string()));
    }

    #[test]
    fn version_decides_standby_handling() {
        assert_eq!(parse_version("pgBackRest 2.45\n"), Some((2, 45)));
        assert_eq!(parse_version("pgBackRest 2.55.1"), Some((2, 55)));
        assert!(!has_standby_prefer((2, 45)));
        assert!(has_standby_prefer((2, 55)));
        assert_eq!(parse_version("garbage"), None);
    }
}
