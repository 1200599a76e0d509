//! pgBackRest facts, read on the repository host as postgres: `info --output=json` (the stanza,
//! its backups and WAL archive range) and `version`. [`info_cmd`] is the command; [`parse_info`]
//! and [`parse_version`] are pure and tested (tests/fixtures/pgbackrest/). The one place that
//! knows pgBackRest's JSON layout: `pgha backup`, `backup list` and their lab test read it here.

use serde::Serialize;
use serde_json::Value;

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
    let list = v.as_array().ok_or("pgbackrest info: expected a JSON array of stanzas")?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> String {
        std::fs::read_to_string(format!("{}/tests/fixtures/pgbackrest/info.json", env!("CARGO_MANIFEST_DIR")))
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
    fn version_decides_standby_handling() {
        assert_eq!(parse_version("pgBackRest 2.45\n"), Some((2, 45)));
        assert_eq!(parse_version("pgBackRest 2.55.1"), Some((2, 55)));
        assert!(!has_standby_prefer((2, 45)));
        assert!(has_standby_prefer((2, 55)));
        assert_eq!(parse_version("garbage"), None);
    }
}
