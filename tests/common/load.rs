//! Client load for the lab tests: `pgbench -C` (a new verify-full TLS connection per
//! transaction) in back-to-back runs on a thread until stopped, counting processed and failed
//! transactions from pgbench's own report (an oracle independent of pgha), optionally with a
//! per-transaction log from which the longest client pause is read.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// What a finished load saw.
#[derive(Debug)]
pub struct Totals {
    /// Transactions pgbench reported as processed.
    pub processed: u64,
    /// Failed transactions, plus one per pgbench run that exited non-zero or printed an error.
    pub failed: u64,
    /// pgbench's error output, one entry per failed run.
    pub problems: Vec<String>,
    /// The longest time in seconds in which no transaction completed (with a log directory).
    pub longest_pause: Option<f64>,
}

/// A running load.
pub struct Load {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<(u64, u64, Vec<String>)>,
    logs: Option<PathBuf>,
}

/// Starts `pgbench -n -C -c 2 -T <run_seconds> -f script uri` in a loop; with `logs`, each run
/// writes its per-transaction log there (`-l`).
pub fn pgbench(uri: String, password: String, script: PathBuf, run_seconds: u32, logs: Option<PathBuf>) -> Load {
    if let Some(d) = &logs {
        std::fs::create_dir_all(d).expect("log dir");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let dir = logs.clone();
    let handle = std::thread::spawn(move || {
        let (mut processed, mut failed, mut problems, mut n) = (0u64, 0u64, Vec::new(), 0u32);
        while !flag.load(Ordering::SeqCst) {
            n += 1;
            let mut cmd = Command::new("timeout");
            cmd.arg((run_seconds * 20).max(60).to_string()).args([
                "pgbench",
                "-n",
                "-C",
                "-c",
                "2",
                "-T",
                &run_seconds.to_string(),
            ]);
            if let Some(d) = &dir {
                cmd.arg("-l").arg(format!("--log-prefix={}/run{n}", d.display()));
            }
            let out = cmd
                .arg("-f")
                .arg(&script)
                .arg(&uri)
                .env("PGPASSWORD", &password)
                .output()
                .expect("pgbench runs");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            processed += report_number(&text, "number of transactions actually processed:").unwrap_or(0);
            failed += report_number(&text, "number of failed transactions:").unwrap_or(0);
            if !out.status.success() || err.contains("aborted") || err.contains("error") {
                failed += 1;
                problems.push(format!("pgbench exited {}: {err}", out.status));
            }
        }
        (processed, failed, problems)
    });
    Load { stop, handle, logs }
}

impl Load {
    /// Stops the load after its current run and returns what it saw.
    pub fn finish(self) -> Totals {
        self.stop.store(true, Ordering::SeqCst);
        let (processed, failed, problems) = self.handle.join().expect("load thread");
        Totals {
            processed,
            failed,
            problems,
            longest_pause: self.logs.as_deref().map(longest_gap),
        }
    }
}

/// The number after `key` in pgbench's report (`12/34` reads as 12).
fn report_number(report: &str, key: &str) -> Option<u64> {
    report
        .lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.split('/').next())
        .and_then(|n| n.parse::<u64>().ok())
}

/// The longest time (seconds) between two consecutive transaction ends in pgbench's logs.
fn longest_gap(dir: &Path) -> f64 {
    let mut ends: Vec<u64> = Vec::new();
    for e in std::fs::read_dir(dir).expect("logs").flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        for l in text.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if let (Some(s), Some(us)) = (f.get(4), f.get(5))
                && let (Ok(s), Ok(us)) = (s.parse::<u64>(), us.parse::<u64>())
            {
                ends.push(s * 1_000_000 + us);
            }
        }
    }
    ends.sort_unstable();
    assert!(ends.len() > 100, "pgbench logged transactions: {}", ends.len());
    ends.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0) as f64 / 1e6
}
