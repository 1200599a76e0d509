//! The split-brain sampler: on each PostgreSQL node a transient systemd unit
//! (`pgha-drill-<run>`, started with `systemd-run`) appends `<epoch-ms> <t|f|x>` every 200 ms to
//! `/var/tmp/pgha-drill-<run>.log` — `pg_is_in_recovery()` over the local socket, `x` when
//! PostgreSQL did not answer within a second. It runs on the host, so it keeps recording while
//! the host is cut off, and `RuntimeMaxSec` bounds it if pgha never comes back to stop it. The
//! files are read back over SSH once every host is back. Commands and parsing here; the merge
//! of the timelines is in `analysis`.

use super::RunId;
use crate::render::paths;
use crate::transport::Cmd;

/// Sampling period, milliseconds.
pub const PERIOD_MS: i64 = 200;

/// Upper bound of a sampler's life (systemd stops it after this), seconds.
pub const MAX_LIFE_S: u64 = 1800;

/// What one sample saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgState {
    /// Not in recovery: a primary that accepts writes (`f`).
    Primary,
    /// In recovery: a replica (`t`).
    Replica,
    /// No answer within a second (`x`).
    NoAnswer,
}

/// One line of a sampler's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// When the answer came, ms since the epoch (the host's clock).
    pub at_ms: i64,
    /// What it was.
    pub state: PgState,
}

/// The sampler's unit name.
pub fn unit(run: &RunId) -> String {
    format!("pgha-drill-{run}")
}

/// The sampler's log file on the host.
pub fn log_path(run: &RunId) -> String {
    format!("/var/tmp/pgha-drill-{run}.log")
}

/// The loop the unit runs; `$1` log file, `$2` socket directory, `$3` port, `$4` period (s).
const LOOP: &str = r#"f=$1
while :; do
  a=$(timeout 1 runuser -u postgres -- psql -XtA -h "$2" -p "$3" -d postgres -c 'select pg_is_in_recovery()' 2>/dev/null)
  case "$a" in t|f) ;; *) a=x ;; esac
  echo "$(date +%s%3N) $a" >> "$f"
  sleep "$4"
done"#;

/// Starts the sampler unit (fails if one of that name exists).
pub fn start_cmd(run: &RunId, pg_port: u16) -> Cmd {
    Cmd::new("systemd-run")
        .arg(format!("--unit={}", unit(run)))
        .args(["--quiet", "--collect"])
        .arg(format!("--property=RuntimeMaxSec={MAX_LIFE_S}"))
        .args(["sh", "-c", LOOP, "pgha-drill-sampler"])
        .arg(log_path(run))
        .arg(paths::SOCKET_DIR)
        .arg(pg_port.to_string())
        .arg(format!("{:.1}", PERIOD_MS as f64 / 1000.0))
}

/// Stops the unit if it still runs (after a crash it does not exist any more).
pub fn stop_cmd(run: &RunId) -> Cmd {
    Cmd::script("systemctl stop \"$1.service\" 2>/dev/null; true", [unit(run)])
}

/// Prints the log (nothing when there is none).
pub fn read_cmd(run: &RunId) -> Cmd {
    Cmd::script("cat \"$1\" 2>/dev/null; true", [log_path(run)])
}

/// Removes the log.
pub fn remove_cmd(run: &RunId) -> Cmd {
    Cmd::new("rm").arg("-f").arg(log_path(run))
}

/// Parses a log; malformed lines (a crash can cut the last one) are skipped. Sorted by time.
pub fn parse(text: &str) -> Vec<Sample> {
    let mut out: Vec<Sample> = text
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let at_ms = w.next()?.parse().ok()?;
            let state = match w.next()? {
                "f" => PgState::Primary,
                "t" => PgState::Replica,
                "x" => PgState::NoAnswer,
                _ => return None,
            };
            w.next().is_none().then_some(Sample { at_ms, state })
        })
        .collect();
    out.sort_by_key(|s| s.at_ms);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_is_bounded_and_named_after_the_run() {
        let run = RunId::new("drill-x").expect("valid");
        let line = start_cmd(&run, 5432).command_line(true);
        assert!(
            line.starts_with("sudo -n -- systemd-run --unit=pgha-drill-drill-x --quiet --collect --property=RuntimeMaxSec=1800 sh -c "),
            "{line}"
        );
        assert!(
            line.ends_with(" pgha-drill-sampler /var/tmp/pgha-drill-drill-x.log /var/run/postgresql 5432 0.2"),
            "{line}"
        );
        assert!(stop_cmd(&run).command_line(false).contains("pgha-drill-drill-x"));
        assert_eq!(
            remove_cmd(&run).command_line(false),
            "rm -f /var/tmp/pgha-drill-drill-x.log"
        );
    }

    #[test]
    fn logs_parse_and_cut_lines_are_skipped() {
        let s = parse("1000 f\n1200 t\n1400 x\n900 f\n1600 \n16\n1800 q\n2000 f extra\n");
        assert_eq!(
            s,
            vec![
                Sample {
                    at_ms: 900,
                    state: PgState::Primary
                },
                Sample {
                    at_ms: 1000,
                    state: PgState::Primary
                },
                Sample {
                    at_ms: 1200,
                    state: PgState::Replica
                },
                Sample {
                    at_ms: 1400,
                    state: PgState::NoAnswer
                },
            ]
        );
        assert!(parse("").is_empty());
    }
}
