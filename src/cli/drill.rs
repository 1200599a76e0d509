//! `pgha drill`: arguments, the refusal without `--yes` (what the drill would do, to which
//! hosts), and printing the progress and the report. Running it is `ops::drill`; the drill
//! itself is `crate::drill::sequence`.

use clap::Args;

use super::args::{InventoryArgs, runtime};
use super::output::CliReporter;
use super::report::{self, exit};
use crate::drill::entry::EntryReport;
use crate::drill::restore_report::RestoreReport;
use crate::drill::{Kind, Report};
use crate::lab::LabPaths;
use crate::ops::drill::{self, DrillOptions};
use crate::transport;

/// Arguments of `pgha drill`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  pgha drill inventory/lab.yaml failover              # says what it would do; changes nothing
  pgha drill inventory/lab.yaml failover --yes
  pgha drill inventory/lab.yaml quorum-loss --yes --json | jq '{passed, lost, rw_refused_after_s}'
  pgha drill inventory/lab.yaml partition --yes       # lab only
  pgha drill inventory/lab.yaml restore --yes --json | jq '{passed, rto_s, rows}'

While a writer commits numbered rows every 100 ms through PgBouncer <db>_rw (psql on this
machine, verify-full) and a sampler on each PostgreSQL node records pg_is_in_recovery():
  failover     crash the leader's host (lab: pgha lab stop; real hosts: SIGKILL of Patroni and
               its PostgreSQL); a replica takes over; the old leader rejoins as a replica
  quorum-loss  stop a majority of etcd members: the primary demotes (RW refused, RO serves) unless
               patroni.failsafe_mode is on; restore etcd; RW returns
  partition    cut the leader off the network (lab only); a new leader is elected elsewhere
  restore      (with a backup host) take a backup (or --set LABEL), read a point T on the
               primary's clock, archive the WAL holding it, restore the backup to T into a
               scratch instance on a replica's host (own directory and socket, no archiving,
               not in the cluster) and report RTO, bytes restored, rows acknowledged before T vs
               present (RPO 0 expected) and pg_amcheck; the scratch instance is removed at the
               end (--keep leaves it running, --clean removes it)
  entry-loss   (with a vip) crash the entry host holding the VIP (lab) or stop its keepalived,
               PgBouncer and HAProxy; the writer goes through the VIP; another entry host takes
               it; reported: RW gap (target 5 s), failed writes, whether two hosts held the VIP
Reported: RW unavailability, rows acknowledged vs present (lost), time with two primaries,
interleaved writes, and the Patroni and HAProxy timings used. Targets: lost 0 (synchronous mode),
two primaries 0 s, failover RW back within 30 s. Ctrl-C undoes the fault before exiting.

Exit codes: 0 the drill passed its targets, 1 a target missed or a step failed (named),
2 usage (no --yes: prints what the drill would do; or a drill this inventory cannot run),
3 invalid inventory, 130 interrupted (the fault was undone).")]
pub struct DrillArgs {
    /// The inventory and state directory.
    #[command(flatten)]
    pub target: InventoryArgs,
    /// Which drill.
    #[arg(value_enum)]
    pub drill: Kind,
    /// Really do it (it crashes or cuts off production hosts); without it, say what it would do.
    #[arg(long)]
    pub yes: bool,
    /// Print the report as one JSON object on stdout (progress stays on stderr).
    #[arg(long)]
    pub json: bool,
    /// SSH implementation: openssh (default) or russh.
    #[arg(long, value_enum, default_value_t = transport::Kind::Openssh)]
    pub transport: transport::Kind,
    /// Trust the host key of a host seen for the first time (a changed key is always refused).
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// restore: restore this backup (a label from `pgha backup list`) instead of taking one.
    #[arg(long, value_name = "LABEL")]
    pub set: Option<String>,
    /// restore: leave the scratch instance running at the end (remove it with --clean).
    #[arg(long)]
    pub keep: bool,
    /// restore: only remove what earlier restore drills left (scratch units and directory).
    #[arg(long)]
    pub clean: bool,
}

/// Runs `pgha drill`.
pub fn run(args: &DrillArgs) -> u8 {
    run_with(args, &LabPaths::from_env())
}

/// Runs `pgha drill` against the lab in `lab` (if the inventory is that lab).
pub fn run_with(args: &DrillArgs, lab: &LabPaths) -> u8 {
    let inv = match args.target.load(true) {
        Ok(i) => i,
        Err(code) => return code,
    };
    let rep = CliReporter::shared(true, false, false);
    if args.drill != Kind::Restore && (args.set.is_some() || args.keep || args.clean) {
        report::error(format!(
            "--set, --keep and --clean belong to the restore drill, not to {}",
            args.drill
        ));
        return exit::USAGE;
    }
    let o = DrillOptions {
        kind: args.drill,
        state: args.target.state.clone(),
        transport: args.transport,
        accept_new_host_keys: args.accept_new_host_keys,
        lab: lab.clone(),
        set: args.set.clone(),
        keep: args.keep,
    };
    let prepared = match drill::prepare(&inv, &o, rep.as_ref()) {
        Ok(p) => p,
        Err(e) => return report::fail(&e),
    };
    if args.clean {
        let rt = match runtime() {
            Ok(rt) => rt,
            Err(code) => return code,
        };
        return match rt.block_on(drill::clean_restore(&inv, &o, prepared, &rep)) {
            Ok(hosts) => {
                report::out(format!("no scratch instance left on {}", hosts.join(", ")));
                exit::OK
            }
            Err(e) => report::fail(&e),
        };
    }
    if !args.yes {
        for line in drill::preview(&inv, &o, &prepared) {
            report::out(line);
        }
        report::error(format!(
            "pgha drill faults the cluster on purpose: re-run with --yes to run it (pgha drill {} {} --yes)",
            args.target.inventory.display(),
            args.drill
        ));
        return exit::USAGE;
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    if args.drill == Kind::Restore {
        let report = match rt.block_on(drill::run_restore(&inv, &o, prepared, &rep)) {
            Ok(r) => r,
            Err(e) => return report::fail(&e),
        };
        print_restore_report(&report, args.json);
        return outcome(report.interrupted, report.passed);
    }
    if args.drill == Kind::EntryLoss {
        let report = match rt.block_on(drill::run_entry_loss(&inv, &o, prepared, &rep)) {
            Ok(r) => r,
            Err(e) => return report::fail(&e),
        };
        print_entry_report(&report, args.json);
        return outcome(report.interrupted, report.passed);
    }
    let report = match rt.block_on(drill::run(&inv, &o, prepared, &rep)) {
        Ok(r) => r,
        Err(e) => return report::fail(&e),
    };
    print_report(&report, args.json);
    outcome(report.interrupted, report.passed)
}

/// A drill's exit code: interrupted (130) before passed (0) or failed (1).
fn outcome(interrupted: bool, passed: bool) -> u8 {
    if interrupted {
        exit::INTERRUPTED
    } else if passed {
        exit::OK
    } else {
        exit::FAILED
    }
}

fn print_entry_report(r: &EntryReport, json: bool) {
    if json {
        report::json(&serde_json::to_value(r).unwrap_or_default());
        return;
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut row = |k: &str, v: String| rows.push(vec![k.to_string(), v]);
    row(
        "drill",
        format!(
            "entry-loss (run {}, {})",
            r.run,
            if r.lab { "lab" } else { "real hosts" }
        ),
    );
    row("VIP", r.vip.clone());
    row(
        "holder",
        format!(
            "{} before, {} after",
            r.holder_before.as_deref().unwrap_or("?"),
            r.holder_after.as_deref().unwrap_or("none")
        ),
    );
    for f in &r.faults {
        row("fault", f.clone());
    }
    row(
        "RW unavailable",
        format!("{} (target {:.1} s)", opt(r.rw_unavailable_s), r.target_s),
    );
    row("RW back after", opt(r.rw_back_after_s));
    row("VIP moved after", opt(r.vip_moved_after_s));
    row(
        "writes",
        format!(
            "{} attempted, {} failed, {} acknowledged",
            r.attempts, r.failed_attempts, r.committed
        ),
    );
    row(
        "VIP on two hosts",
        if r.two_holders.is_empty() {
            "never".to_string()
        } else {
            r.two_holders
                .iter()
                .map(|t| {
                    format!(
                        "{} and {} at t{:+.1}s for {:.1} s",
                        t.hosts.0, t.hosts.1, t.from_s, t.duration_s
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        },
    );
    for (h, (held, not, none)) in &r.samples {
        row("samples", format!("{h}: {held} holding, {not} not, {none} no answer"));
    }
    if let Some(step) = &r.failed_step {
        row("failed step", step.clone());
    }
    row(
        "result",
        if r.interrupted {
            "interrupted (the fault was undone)".into()
        } else if r.passed {
            "PASSED".into()
        } else {
            "FAILED".into()
        },
    );
    report::out(report::table(&rows));
}

fn print_restore_report(r: &RestoreReport, json: bool) {
    if json {
        report::json(&serde_json::to_value(r).unwrap_or_default());
        return;
    }
    let mut rows: Vec<Vec<String>> = vec![vec!["figure".to_string(), "value".to_string()]];
    let mut row = |k: &str, v: String| rows.push(vec![k.to_string(), v]);
    row(
        "drill",
        format!("restore (run {}, {})", r.run, if r.lab { "lab" } else { "real hosts" }),
    );
    row("repository", format!("{} stanza {}", r.repo_host, r.stanza));
    if let Some(b) = &r.backup {
        row(
            "backup",
            format!(
                "{} ({}{})",
                b.label,
                b.kind,
                match (b.taken, b.seconds) {
                    (true, Some(s)) => format!(", taken by the drill in {s:.1} s"),
                    _ => ", from --set".to_string(),
                }
            ),
        );
    }
    row("target T", r.target_time.clone().unwrap_or_else(|| "-".into()));
    row(
        "WAL holding T",
        format!(
            "{} archived after {}",
            r.switched_wal.as_deref().unwrap_or("-"),
            opt(r.archived_after_s)
        ),
    );
    row(
        "scratch instance",
        format!("{}:{} (socket port {})", r.scratch_host, r.scratch_dir, r.scratch_port),
    );
    row(
        "RTO",
        format!(
            "{} (restore {}, recovery to T {})",
            opt(r.rto_s),
            opt(r.restore_s),
            opt(r.recovery_s)
        ),
    );
    row(
        "bytes restored",
        format!(
            "{} on disk (backup size {}){}",
            r.bytes_restored.map_or("-".into(), |b| b.to_string()),
            r.backup_size.map_or("-".into(), |b| b.to_string()),
            r.restore_mb_per_s.map(|t| format!(", {t:.1} MB/s")).unwrap_or_default()
        ),
    );
    if let Some(c) = &r.rows {
        row(
            "rows",
            format!(
                "{} acknowledged before T, {} present, {} missing (RPO), {} past T; {} in flight at T not judged; {} acknowledged after T",
                c.acked_before_t,
                c.present,
                c.missing.len(),
                c.beyond_target.len(),
                c.in_flight_at_t.len(),
                c.acked_after_t
            ),
        );
    }
    if let Some(c) = &r.consistency {
        row(
            "consistency",
            format!(
                "{}: {}",
                c.tool,
                if c.passed {
                    "no corruption".to_string()
                } else {
                    format!("FAILED {}", c.detail)
                }
            ),
        );
    }
    row(
        "scratch instance",
        if r.kept {
            "kept (remove it with --clean)".to_string()
        } else if r.cleaned_up {
            "removed".to_string()
        } else {
            "NOT removed (run --clean)".to_string()
        },
    );
    row(
        "steps",
        r.steps
            .iter()
            .map(|(s, t)| format!("{s} {t:.1} s"))
            .collect::<Vec<_>>()
            .join("; "),
    );
    report::out(report::table(&rows).trim_end());
    for w in &r.warnings {
        report::out(format!("warning: {w}"));
    }
    if r.interrupted {
        report::error("drill restore interrupted; the scratch instance was removed".to_string());
    } else if r.passed {
        report::out(format!("drill restore: passed (run {})", r.run));
    } else {
        report::error(format!(
            "drill restore: {} failure(s):\n  - {}",
            r.failures.len(),
            r.failures.join("\n  - ")
        ));
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.1} s"))
}

fn print_report(r: &Report, json: bool) {
    if json {
        report::json(&serde_json::to_value(r).unwrap_or_default());
        return;
    }
    let t = &r.timings;
    let mut rows = vec![vec!["figure".to_string(), "value".to_string()]];
    let mut row = |k: &str, v: String| rows.push(vec![k.to_string(), v]);
    row(
        "leader",
        format!(
            "{} → {}",
            r.old_leader.as_deref().unwrap_or("?"),
            r.new_leader.as_deref().unwrap_or("?")
        ),
    );
    row(
        "faults",
        if r.faults.is_empty() {
            "none".into()
        } else {
            r.faults.join("; ")
        },
    );
    row(
        "RW unavailable",
        format!(
            "{}{} (longest gap between acknowledged writes{})",
            opt(r.rw_unavailable_s),
            if r.rw_never_returned { ", never returned" } else { "" },
            r.rw_unavailable_from_s
                .map(|f| format!(", from t{f:+.1}s"))
                .unwrap_or_default()
        ),
    );
    row(
        "writes",
        format!("{} attempted, {} failed", r.attempts, r.failed_attempts),
    );
    row(
        "rows",
        format!(
            "{} committed, {} present, {} lost{}",
            r.committed,
            r.present.map_or("?".into(), |p| p.to_string()),
            r.lost.map_or("?".into(), |l| l.to_string()),
            if r.unacknowledged_present > 0 {
                format!(" ({} present but never acknowledged)", r.unacknowledged_present)
            } else {
                String::new()
            }
        ),
    );
    row(
        "two primaries",
        format!(
            "{:.1} s (samplers, {} overlap(s) within sampling error); interleaved writes: {}",
            r.two_primaries_s,
            r.overlaps.iter().filter(|o| !o.counted).count(),
            if r.interleaved_writes { "YES" } else { "no" }
        ),
    );
    match r.drill {
        Kind::Failover | Kind::Partition | Kind::EntryLoss => {
            row("new leader after", opt(r.new_leader_after_s));
            row("RW back after", opt(r.rw_back_after_s));
            row("old leader rejoined", opt(r.rejoined_after_s));
            if r.drill == Kind::Partition {
                row("old leader writable for", opt(r.old_leader_writable_s));
            }
        }
        Kind::Restore => {}
        Kind::QuorumLoss => {
            row("RW refused after", opt(r.rw_refused_after_s));
            row(
                "RO served",
                r.ro_served
                    .map_or("-".into(), |b| if b { "yes".into() } else { "NO".into() }),
            );
            row("RW back after restore", opt(r.rw_back_after_restore_s));
        }
    }
    row(
        "timings",
        format!(
            "Patroni ttl {} s, loop_wait {} s, retry_timeout {} s; HAProxy inter {} ms fall {} rise {}; synchronous_mode {}, failsafe_mode {}",
            t.ttl,
            t.loop_wait,
            t.retry_timeout,
            t.haproxy_inter_ms,
            t.haproxy_fall,
            t.haproxy_rise,
            crate::drill::sync_word(t.synchronous_mode),
            t.failsafe_mode
        ),
    );
    report::out(report::table(&rows).trim_end());
    report::out(format!("tuning: {}", r.tuning));
    for d in &r.config_differences {
        report::out(format!("note: {d}"));
    }
    for w in &r.warnings {
        report::out(format!("warning: {w}"));
    }
    if r.interrupted {
        report::error(format!("drill {} interrupted; the fault was undone", r.drill));
    } else if r.passed {
        report::out(format!("drill {}: passed (run {})", r.drill, r.run));
    } else {
        report::error(format!(
            "drill {}: {} failure(s):\n  - {}",
            r.drill,
            r.failures.len(),
            r.failures.join("\n  - ")
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    const LAB_LIKE: &str = "cluster: { name: t }\nhosts:\n\
        \x20 node1: { address: 192.0.2.11, dc: dc1, roles: [postgres] }\n\
        \x20 node2: { address: 192.0.2.12, dc: dc1, roles: [postgres] }\n\
        \x20 etcd1: { address: 192.0.2.21, dc: dc1, roles: [etcd] }\n\
        \x20 haproxy: { address: 192.0.2.31, dc: dc1, roles: [haproxy] }\n\
        \x20 pgbouncer: { address: 192.0.2.41, dc: dc1, roles: [pgbouncer] }\n";

    fn args(dir: &std::path::Path, drill: &str, extra: &[&str]) -> DrillArgs {
        let inv = dir.join("inv.yaml");
        std::fs::write(&inv, LAB_LIKE).expect("write");
        let mut argv = vec![
            "pgha".to_string(),
            "drill".into(),
            inv.display().to_string(),
            drill.into(),
        ];
        argv.extend(extra.iter().map(|s| s.to_string()));
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Drill(a) => a,
            other => panic!("not a drill: {other:?}"),
        }
    }

    #[test]
    fn without_yes_it_refuses_and_does_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = args(dir.path(), "failover", &[]);
        assert!(!a.yes);
        assert_eq!(run_with(&a, &LabPaths::new(dir.path().join("no-lab"))), exit::USAGE);
        // Nothing was created: no state directory, no lab.
        assert!(!dir.path().join(".pgha").exists());
        assert!(!dir.path().join("no-lab").exists());
    }

    #[test]
    fn partition_off_the_lab_is_a_usage_error_even_with_yes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = args(dir.path(), "partition", &["--yes"]);
        assert_eq!(run_with(&a, &LabPaths::new(dir.path().join("no-lab"))), exit::USAGE);
        assert!(!dir.path().join(".pgha").exists());
    }

    #[test]
    fn an_invalid_inventory_is_exit_3() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut a = args(dir.path(), "failover", &["--yes"]);
        a.target.inventory = dir.path().join("bad.yaml");
        std::fs::write(&a.target.inventory, "cluster: { name: t }\nhosts: {}\nbogus: 1\n").expect("write");
        assert_eq!(
            run_with(&a, &LabPaths::new(dir.path().join("no-lab"))),
            exit::INVALID_INPUT
        );
    }

    #[test]
    fn with_yes_and_no_deploy_it_fails_before_touching_anything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = args(dir.path(), "quorum-loss", &["--yes", "--json"]);
        assert!(a.yes && a.json);
        assert_eq!(run_with(&a, &LabPaths::new(dir.path().join("no-lab"))), exit::FAILED);
    }

    #[test]
    fn restore_needs_a_backup_host_and_its_flags_need_restore() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lab = LabPaths::new(dir.path().join("no-lab"));
        // The inventory has no backup host: a usage error, before anything is touched.
        assert_eq!(run_with(&args(dir.path(), "restore", &["--yes"]), &lab), exit::USAGE);
        assert_eq!(run_with(&args(dir.path(), "restore", &[]), &lab), exit::USAGE);
        assert_eq!(run_with(&args(dir.path(), "failover", &["--keep"]), &lab), exit::USAGE);
        assert_eq!(
            run_with(&args(dir.path(), "quorum-loss", &["--set", "x"]), &lab),
            exit::USAGE
        );
        assert!(!dir.path().join(".pgha").exists());
        assert_eq!(
            args(dir.path(), "restore", &["--set", "L", "--keep"]).set.as_deref(),
            Some("L")
        );
    }

    #[test]
    fn drills_are_named_on_the_command_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(args(dir.path(), "quorum-loss", &[]).drill, Kind::QuorumLoss);
        assert_eq!(args(dir.path(), "partition", &[]).drill, Kind::Partition);
        let e = Cli::try_parse_from(["pgha", "drill", "inv.yaml", "meteor"]).expect_err("unknown drill");
        assert!(e.to_string().contains("failover, quorum-loss, partition"), "{e}");
    }
}
