//! The writer: from this machine, one local `psql` per row through PgBouncer's `<db>_rw` with
//! `sslmode=verify-full`, as an application would, numbered 1, 2, 3… every ~100 ms, each bounded
//! by a hard timeout. A row counts as committed only when psql exited 0 and printed the server
//! address the `INSERT … RETURNING` gave back. Also the drill's other SQL (table, count, RO
//! probe). SQL text is built from a validated [`RunId`] and numbers only.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{RunId, now_ms};
use crate::inventory::Host;
use crate::pki::Secret;
use crate::transport::{Cmd, local};

/// Period of the writer.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// Hard bound of one write (connect_timeout in the conninfo is 2 s).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

/// Where and as whom the drill's SQL runs.
pub struct SqlTarget {
    /// The psql program (`psql`; tests give a stand-in).
    pub program: String,
    /// `<db>_rw` through PgBouncer.
    pub rw: String,
    /// `<db>_ro` through PgBouncer.
    pub ro: String,
    /// `pgha_verify`'s password (passed in a private passfile, never on a command line or in
    /// the environment).
    pub password: Secret<String>,
}

impl SqlTarget {
    /// Runs `sql` against `conninfo` (`self.rw` or `self.ro`) within `timeout`.
    pub async fn run(&self, conninfo: &str, sql: &str, timeout: Duration) -> Result<String, String> {
        psql(&self.program, conninfo, &self.password, sql, timeout).await
    }

    /// Retries `sql` until it succeeds or `bound` passes (PgBouncer refuses for
    /// `server_login_retry` after a failed login, a new primary takes HAProxy a few checks).
    pub async fn run_retry(&self, conninfo: &str, sql: &str, bound: Duration) -> Result<String, String> {
        let deadline = Instant::now() + bound;
        loop {
            match self.run(conninfo, sql, Duration::from_secs(10)).await {
                Ok(out) => return Ok(out),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }

    /// Whether the psql program runs here.
    pub async fn available(&self) -> bool {
        local::run(
            &Cmd::new(self.program.as_str()).arg("--version"),
            &[],
            Duration::from_secs(10),
        )
        .await
        .is_ok_and(|o| o.success())
    }
}

/// A libpq connection string to PgBouncer's `dbname` alias on `host`: dialled by address,
/// verified by name, short connect timeout.
pub fn conninfo(host: &Host, port: u16, dbname: &str, user: &str, ca: &Path) -> String {
    crate::conninfo::verify_full(host, port, dbname, user, ca, 2, "pgha-drill").to_keyword_string()
}

/// Creates the drill's table (idempotent) and drops rows of runs older than a week.
pub const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS pgha_verify.drill_rows (run text, n bigint, \
     at timestamptz DEFAULT clock_timestamp(), server inet, PRIMARY KEY (run, n)); \
     DELETE FROM pgha_verify.drill_rows WHERE at < now() - interval '7 days'";

/// The insert of row `n` of `run`; it returns the address of the server that took it.
pub fn insert_sql(run: &RunId, n: u64) -> String {
    format!(
        "INSERT INTO pgha_verify.drill_rows (run, n, server) VALUES ('{run}', {n}, inet_server_addr()) RETURNING server"
    )
}

/// The numbers of `run`'s rows that are present.
pub fn count_sql(run: &RunId) -> String {
    format!("SELECT n FROM pgha_verify.drill_rows WHERE run = '{run}' ORDER BY n")
}

/// The server address in psql's output (`10.0.0.1` or `10.0.0.1/32`).
pub fn parse_server(stdout: &str) -> Option<IpAddr> {
    stdout
        .lines()
        .filter_map(|l| l.trim().split('/').next().and_then(|a| a.parse().ok()))
        .next()
}

/// The row numbers in psql's output, one per line.
pub fn parse_rows(stdout: &str) -> Result<BTreeSet<u64>, String> {
    stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.parse::<u64>()
                .map_err(|_| format!("unexpected line {l:?} in the row numbers"))
        })
        .collect()
}

/// Runs `sql` with the local `program` (psql) against `conninfo` within `timeout`; stdout, or
/// the error.
pub async fn psql(
    program: &str,
    conninfo: &str,
    password: &Secret<String>,
    sql: &str,
    timeout: Duration,
) -> Result<String, String> {
    let cmd = Cmd::new(program).args([conninfo, "-XqtA", "-v", "ON_ERROR_STOP=1", "-c", sql]);
    let passfile = crate::conninfo::PassFile::new(password.expose())
        .map_err(|e| format!("cannot write a private passfile for psql: {e}"))?;
    let passfile_path = passfile.path().to_string_lossy().into_owned();
    let out = local::run(&cmd, &[("PGPASSFILE", passfile_path.as_str())], timeout).await?;
    if out.success() {
        Ok(out.stdout_text())
    } else {
        let err = out.stderr_tail(2);
        Err(if err.trim().is_empty() {
            format!("psql exited with {:?}", out.code)
        } else {
            err.trim().to_string()
        })
    }
}

/// One write.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Attempt {
    /// Row number.
    pub n: u64,
    /// When psql started, ms since the epoch.
    pub start_ms: i64,
    /// When it ended.
    pub end_ms: i64,
    /// The server that acknowledged it (only when committed).
    pub server: Option<IpAddr>,
    /// Why it failed (first line).
    pub error: Option<String>,
}

impl Attempt {
    /// Whether the row was acknowledged.
    pub fn ok(&self) -> bool {
        self.server.is_some()
    }
}

/// Called on each change between failing and succeeding writes (the attempt that changed it).
pub type OnChange = Arc<dyn Fn(&Attempt) + Send + Sync>;

/// A running writer.
pub struct Writer {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
    log: Arc<Mutex<Vec<Attempt>>>,
}

impl Writer {
    /// Starts writing rows of `run` through `target.rw`.
    pub fn start(target: Arc<SqlTarget>, run: RunId, on_change: OnChange) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = log.clone();
        let handle = tokio::spawn(async move {
            let mut was_ok: Option<bool> = None;
            for n in 1u64.. {
                if *stopped.borrow() {
                    break;
                }
                let t0 = Instant::now();
                let start_ms = now_ms();
                let r = target.run(&target.rw, &insert_sql(&run, n), ATTEMPT_TIMEOUT).await;
                let end_ms = now_ms();
                let attempt = match r {
                    Ok(out) => match parse_server(&out) {
                        Some(server) => Attempt {
                            n,
                            start_ms,
                            end_ms,
                            server: Some(server),
                            error: None,
                        },
                        None => Attempt {
                            n,
                            start_ms,
                            end_ms,
                            server: None,
                            error: Some(format!("no server address in {:?}", out.trim())),
                        },
                    },
                    Err(e) => Attempt {
                        n,
                        start_ms,
                        end_ms,
                        server: None,
                        error: Some(first_line(&e)),
                    },
                };
                if was_ok != Some(attempt.ok()) {
                    was_ok = Some(attempt.ok());
                    on_change(&attempt);
                }
                if let Ok(mut l) = shared.lock() {
                    l.push(attempt);
                }
                if let Some(rest) = INTERVAL.checked_sub(t0.elapsed()) {
                    tokio::select! {
                        _ = tokio::time::sleep(rest) => {}
                        _ = stopped.changed() => {}
                    }
                }
            }
        });
        Self { stop, handle, log }
    }

    /// Every attempt so far.
    pub fn snapshot(&self) -> Vec<Attempt> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Stops after the write in flight (bounded by [`ATTEMPT_TIMEOUT`]); every attempt.
    pub async fn stop(self) -> Vec<Attempt> {
        let _ = self.stop.send(true);
        let _ = self.handle.await;
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

fn first_line(s: &str) -> String {
    let line = s.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    line.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_is_built_from_safe_words() {
        let run = RunId::new("drill-1").expect("valid");
        assert_eq!(
            insert_sql(&run, 42),
            "INSERT INTO pgha_verify.drill_rows (run, n, server) VALUES ('drill-1', 42, inet_server_addr()) RETURNING server"
        );
        assert!(count_sql(&run).contains("WHERE run = 'drill-1' ORDER BY n"));
        assert!(CREATE_TABLE.contains("PRIMARY KEY (run, n)"));
    }

    #[test]
    fn psql_output_parses() {
        assert_eq!(parse_server("10.213.77.12\n"), "10.213.77.12".parse().ok());
        assert_eq!(
            parse_server("10.213.77.12/32\nINSERT 0 1\n"),
            "10.213.77.12".parse().ok()
        );
        assert_eq!(parse_server("\n"), None);
        assert_eq!(parse_server("INSERT 0 1"), None);
        assert_eq!(parse_rows("1\n2\n\n5\n").expect("numbers"), BTreeSet::from([1, 2, 5]));
        assert!(parse_rows("1\nx\n").is_err());
        assert_eq!(parse_rows("").expect("none"), BTreeSet::new());
    }

    #[test]
    fn conninfo_verifies_the_name_and_connects_fast() {
        let text = "cluster: { name: c }\nhosts:\n  a: { address: 192.0.2.1, dc: d, roles: [postgres, etcd, haproxy, pgbouncer] }\n";
        let inv = crate::inventory::parse(Path::new("i.yaml"), text.as_bytes())
            .expect("valid")
            .inventory;
        let c = conninfo(
            &inv.hosts[0],
            6432,
            "postgres_rw",
            "pgha_verify",
            Path::new("/s/ca.pem"),
        );
        assert_eq!(
            c,
            "host=a hostaddr=192.0.2.1 port=6432 dbname=postgres_rw user=pgha_verify sslmode=verify-full sslrootcert=/s/ca.pem connect_timeout=2 application_name=pgha-drill"
        );
    }

    #[test]
    fn errors_keep_their_first_line() {
        assert_eq!(first_line("\n  psql: error: x\nmore"), "psql: error: x");
        assert_eq!(first_line(&"e".repeat(300)).len(), 200);
    }
}
