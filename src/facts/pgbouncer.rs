//! PgBouncer facts: its pools (`SHOW POOLS` on the admin console, through the local socket as
//! the postgres user), parsed by column name. [`pools_cmd`] is the command; [`parse_pools`] is
//! pure and tested on output captured from PgBouncer on the lab (tests/fixtures/pgbouncer/).

use std::collections::BTreeMap;

use crate::inventory::Inventory;
use crate::render::paths;
use crate::transport::Cmd;

/// `psql` on PgBouncer's admin console (local socket, as the postgres user) running `command`,
/// with `format` options before it (e.g. `-A -F '\t'` for parseable rows, `-q` for none).
pub fn admin_cmd(inv: &Inventory, format: &[&str], command: &str) -> Cmd {
    Cmd::new("runuser")
        .args(["-u", "postgres", "--", "psql", "-X"])
        .args(format.iter().copied())
        .args(["-h", paths::SOCKET_DIR, "-p"])
        .arg(inv.pgbouncer.port.to_string())
        .args(["-U", "postgres", "-d", "pgbouncer", "-c", command])
}

/// `SHOW POOLS` as tab-separated rows with a header line (psql `-A -F '\t'`).
pub fn pools_cmd(inv: &Inventory) -> Cmd {
    admin_cmd(inv, &["-A", "-F", "\t"], "SHOW POOLS")
}

/// One pool: a (database, user) pair with its client and server connection counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    /// The PgBouncer database (e.g. `app_rw`).
    pub database: String,
    /// The user.
    pub user: String,
    /// Every column by name, as text (`cl_active`, `cl_waiting`, `sv_active`, `sv_idle`…).
    pub columns: BTreeMap<String, String>,
}

impl Pool {
    /// A numeric column (0 when absent or not a number).
    pub fn count(&self, column: &str) -> u64 {
        self.columns.get(column).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// Clients waiting for a server connection.
    pub fn waiting(&self) -> u64 {
        self.count("cl_waiting")
    }
}

/// Why `SHOW POOLS` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("PgBouncer SHOW POOLS: {0}")]
pub struct ParseError(pub String);

/// Parses `SHOW POOLS` (header line, tab-separated rows, then `(N rows)`).
pub fn parse_pools(text: &str) -> Result<Vec<Pool>, ParseError> {
    let mut lines = text.lines().filter(|l| !l.is_empty() && !l.starts_with('('));
    let header: Vec<&str> = lines
        .next()
        .map(|h| h.split('\t').collect())
        .filter(|h: &Vec<&str>| h.first() == Some(&"database"))
        .ok_or_else(|| {
            ParseError(format!(
                "no header line: {}",
                text.chars().take(120).collect::<String>()
            ))
        })?;
    Ok(lines
        .map(|l| {
            let columns: BTreeMap<String, String> = header
                .iter()
                .zip(l.split('\t'))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Pool {
                database: columns.get("database").cloned().unwrap_or_default(),
                user: columns.get("user").cloned().unwrap_or_default(),
                columns,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_by_column_name() {
        let text = "database\tuser\tcl_active\tcl_waiting\tsv_active\tsv_idle\n\
app_rw\tapp\t1\t2\t1\t0\npgbouncer\tpgbouncer\t1\t0\t0\t0\n(2 rows)\n";
        let p = parse_pools(text).expect("parses");
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].database.as_str(), p[0].user.as_str(), p[0].waiting()),
            ("app_rw", "app", 2)
        );
        assert_eq!(p[1].count("sv_idle"), 0);
        assert!(parse_pools("psql: error: connection refused").is_err());
    }

    #[test]
    fn the_real_show_pools() {
        let path = format!("{}/tests/fixtures/pgbouncer/show-pools.tsv", env!("CARGO_MANIFEST_DIR"));
        let p = parse_pools(&std::fs::read_to_string(&path).expect("fixture")).expect("parses");
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].database.as_str(), p[0].user.as_str()), ("pgbouncer", "pgbouncer"));
        assert_eq!((p[0].count("cl_active"), p[0].waiting()), (1, 0));
        assert_eq!(p[0].columns.get("pool_mode").map(String::as_str), Some("statement"));
    }
}
