//! The platforms pgha renders for (docs/design.md §1) and the component versions each one ships.
//! Templates branch on these facts, never on the release name alone.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// A Debian release pgha supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Debian 13 trixie, the primary platform.
    Debian13,
    /// Debian 12 bookworm, the secondary platform.
    Debian12,
}

impl Target {
    /// Every target, primary first.
    pub const ALL: [Target; 2] = [Target::Debian13, Target::Debian12];

    /// The name used on the command line and in templates.
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Debian13 => "debian13",
            Target::Debian12 => "debian12",
        }
    }

    /// The component versions Debian ships on this release.
    pub fn versions(self) -> Versions {
        match self {
            Target::Debian13 => Versions {
                postgres: 17,
                patroni: "4.0.7",
                patroni_major: 4,
                etcd: "3.5",
                haproxy: "3.0",
                pgbouncer: "1.24",
                pgbackrest: "2.55.1",
                backup_standby: "prefer",
            },
            Target::Debian12 => Versions {
                postgres: 15,
                patroni: "3.0.2",
                patroni_major: 3,
                etcd: "3.4",
                haproxy: "2.6",
                pgbouncer: "1.18",
                pgbackrest: "2.45",
                backup_standby: "n",
            },
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "debian13" | "trixie" => Ok(Target::Debian13),
            "debian12" | "bookworm" => Ok(Target::Debian12),
            other => Err(format!("unknown target `{other}`: expected debian13 or debian12")),
        }
    }
}

/// Component versions of one target (docs/design.md §1), as the templates see them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Versions {
    /// PostgreSQL major version (paths `/usr/lib/postgresql/<v>/bin`).
    pub postgres: u32,
    /// Patroni version.
    pub patroni: &'static str,
    /// Patroni major version: `synchronous_mode` is a boolean and failsafe is off below 4.
    pub patroni_major: u32,
    /// etcd minor series.
    pub etcd: &'static str,
    /// HAProxy minor series.
    pub haproxy: &'static str,
    /// PgBouncer minor series: `auth_dbname` exists from 1.20.
    pub pgbouncer: &'static str,
    /// pgBackRest version: every host of a stanza must run exactly the same (protocol check).
    pub pgbackrest: &'static str,
    /// `backup-standby` for scheduled backups: `prefer` (2.54+) falls back to the primary;
    /// 2.45 knows only y/n and `y` fails without a standby, so `n` (`pgha backup` picks per run).
    pub backup_standby: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_by_name_and_codename() {
        assert_eq!("debian12".parse::<Target>(), Ok(Target::Debian12));
        assert_eq!("trixie".parse::<Target>(), Ok(Target::Debian13));
        assert!(
            "debian11"
                .parse::<Target>()
                .unwrap_err()
                .contains("debian13 or debian12")
        );
    }
}
