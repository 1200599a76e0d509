//! Day-2 verbs on a deployed lab cluster (root; `#[ignore]`d, .ci/test runs it), under `pgbench
//! -C` (a new verify-full TLS connection per transaction) writing through PgBouncer:
//! `pgha switchover --to` a named replica, `pgha restart --pending` after a restart-only
//! parameter was changed through the DCS, and `pgha reinit` of a replica whose data directory
//! was deliberately broken. Oracles of their own, not pgha's output: pgbench's failed-transaction
//! count (0), `pg_is_in_recovery()` on every node, `SHOW max_connections` and `pg_settings`
//! on every node, `pg_stat_replication` on the primary. The longest client pause is measured
//! from pgbench's per-transaction log: the longest time in which no transaction completed.
#![allow(clippy::disallowed_methods)] // runs pgha, pgbench and psql like a user

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{NODES, ok, on, psql_on};

fn password_of(uri: &str) -> (String, String) {
    let rest = uri.strip_prefix("postgresql://").expect("a postgresql:// URI");
    let (cred, after) = rest.split_once('@').expect("credentials");
    let (user, password) = cred.split_once(':').expect("user:password");
    (format!("postgresql://{user}@{after}"), password.to_string())
}

/// The primary, read on every node (`pg_is_in_recovery()`): exactly one says false.
fn primary() -> String {
    let primaries: Vec<&str> = NODES
        .iter()
        .copied()
        .filter(|n| psql_on(n, "select pg_is_in_recovery()") == "f")
        .collect();
    assert_eq!(primaries.len(), 1, "exactly one node is out of recovery: {primaries:?}");
    primaries[0].to_string()
}

/// The replicas streaming from the primary (`pg_stat_replication`), by application name.
fn streaming(primary: &str) -> Vec<String> {
    let out = psql_on(
        primary,
        "select application_name || ':' || sync_state from pg_stat_replication where state = 'streaming' order by 1",
    );
    out.lines().map(str::to_string).collect()
}

/// Waits (bounded) until both replicas stream from `primary`.
fn wait_streaming(primary: &str, bound: Duration) -> Vec<String> {
    let deadline = Instant::now() + bound;
    loop {
        let s = streaming(primary);
        if s.len() == 2 || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn code(args: &[&str]) -> (i32, String, String) {
    let out = common::pgha(args);
    let (o, e) = common::text(&out);
    (out.status.code().unwrap_or(-1), o, e)
}

fn timed(args: &[&str]) -> f64 {
    let t = Instant::now();
    let (o, e) = ok(args);
    let secs = t.elapsed().as_secs_f64();
    eprintln!("pgha {}: {secs:.1} s\n{o}{e}", args.join(" "));
    secs
}

#[test]
#[ignore = "lab: needs root and the lab; .ci/test runs it (cargo test -- --include-ignored)"]
fn switchover_restart_and_reinit_fail_no_client() {
    let _scan = common::lab_test("day-2 lab test");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("day2");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let inv_path = dir.join("day2-lab.yaml");
    let inv = inv_path.display().to_string();
    ok(&["lab", "down"]);
    ok(&["lab", "up", "--inventory", &inv]);
    let t = Instant::now();
    ok(&["deploy", &inv]);
    eprintln!("deploy: {:.1} s", t.elapsed().as_secs_f64());

    let leader0 = primary();
    let s0 = wait_streaming(&leader0, Duration::from_secs(30));
    assert_eq!(s0.len(), 2, "both replicas stream: {s0:?}");
    // The named target: the synchronous standby when there is one (sync mode), else a replica.
    let target = s0
        .iter()
        .find(|s| s.ends_with(":sync") || s.ends_with(":quorum"))
        .unwrap_or(&s0[0])
        .split(':')
        .next()
        .expect("a name")
        .to_string();

    // Without --yes: the plan, exit 2, nothing changes. The leader is refused by reinit (1).
    for args in [
        vec!["switchover", inv.as_str(), "--to", target.as_str()],
        vec!["restart", inv.as_str()],
        vec!["reinit", inv.as_str(), target.as_str()],
    ] {
        let (c, o, e) = code(&args);
        assert_eq!(c, 2, "pgha {} without --yes exits 2:\n{o}\n{e}", args.join(" "));
        assert!(o.contains(&leader0), "the plan names the leader {leader0}: {o}");
    }
    let (c, o, e) = code(&["reinit", &inv, &leader0, "--yes"]);
    assert_eq!(c, 1, "reinit of the leader is refused:\n{o}\n{e}");
    assert!(e.contains("is the leader"), "{e}");
    let (c, _, e) = code(&["switchover", &inv, "--to", &leader0, "--yes"]);
    assert_eq!(c, 1, "switchover to the leader is refused: {e}");
    assert!(e.contains("already the leader"), "{e}");
    assert_eq!(primary(), leader0, "nothing changed");

    // The workload: pgbench writing one row per new TLS connection through PgBouncer.
    let (rw, password) = password_of(ok(&["uri", &inv, "--database", "app", "--with-password"]).0.trim());
    let setup = Command::new("psql")
        .args([
            &rw,
            "-XtAc",
            "create table if not exists day2_load (id bigserial primary key, at timestamptz default now())",
        ])
        .env("PGPASSWORD", &password)
        .output()
        .expect("psql");
    assert!(setup.status.success(), "{}", String::from_utf8_lossy(&setup.stderr));
    let script = dir.join("load.sql");
    std::fs::write(&script, "insert into day2_load default values;\n").expect("script");
    let load = common::load::pgbench(rw.clone(), password.clone(), script, 8, Some(dir.join("pgbench-logs")));
    std::thread::sleep(Duration::from_secs(3));

    // 1. Switchover to the named replica.
    let switch_secs = timed(&["switchover", &inv, "--to", &target, "--yes"]);
    assert_eq!(primary(), target, "pg_is_in_recovery(): {target} is the primary now");
    let s1 = wait_streaming(&target, Duration::from_secs(60));
    assert!(
        s1.iter().any(|s| s.starts_with(&format!("{leader0}:"))),
        "the old primary streams from {target}: {s1:?}"
    );

    // 2. A restart-only parameter changed through the DCS, then restart --pending.
    let before: u32 = psql_on(&target, "show max_connections").parse().expect("a number");
    let want = before + 7;
    on(
        &target,
        &[
            "patronictl",
            "-c",
            "/etc/patroni/config.yml",
            "edit-config",
            "--force",
            "-p",
            &format!("max_connections={want}"),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = on(
            &target,
            &["patronictl", "-c", "/etc/patroni/config.yml", "list", "-f", "json"],
        );
        let members: serde_json::Value = serde_json::from_str(&listed).expect("patronictl list JSON");
        let pending = members
            .as_array()
            .expect("members")
            .iter()
            .filter(|m| m.get("Pending restart").is_some_and(|v| !v.is_null() && v != ""))
            .count();
        if pending == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Patroni shows a pending restart on every member: {listed}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let restart_secs = timed(&["restart", &inv, "--pending", "--yes"]);
    let leader2 = primary();
    assert_ne!(leader2, target, "the restart switched the primary over");
    for n in NODES {
        assert_eq!(
            psql_on(n, "show max_connections"),
            want.to_string(),
            "{n} runs with the new value"
        );
        assert_eq!(
            psql_on(n, "select count(*) from pg_settings where pending_restart"),
            "0",
            "{n}: nothing pending"
        );
    }
    let s2 = wait_streaming(&leader2, Duration::from_secs(60));
    assert_eq!(s2.len(), 2, "both replicas stream after the restart: {s2:?}");

    // 3. A replica whose data directory is broken (pg_control removed), rebuilt by reinit.
    let victim = NODES.iter().find(|n| **n != leader2).expect("a replica").to_string();
    let data = psql_on(&victim, "show data_directory");
    on(&victim, &["systemctl", "stop", "patroni"]);
    on(&victim, &["rm", "-f", &format!("{data}/global/pg_control")]);
    on(&victim, &["systemctl", "start", "patroni"]);
    std::thread::sleep(Duration::from_secs(15));
    let broken = common::pgha(&[
        "lab", "ssh", &victim, "--", "runuser", "-u", "postgres", "--", "psql", "-XtAc", "select 1",
    ]);
    assert!(
        !broken.status.success(),
        "{victim} is really broken: PostgreSQL does not answer"
    );
    assert!(
        !streaming(&leader2).iter().any(|s| s.starts_with(&format!("{victim}:"))),
        "{victim} does not stream while broken"
    );
    let reinit_secs = timed(&["reinit", &inv, &victim, "--yes"]);
    let s3 = wait_streaming(&leader2, Duration::from_secs(60));
    assert!(
        s3.iter().any(|s| s.starts_with(&format!("{victim}:"))),
        "{victim} streams again: {s3:?}"
    );
    assert_eq!(
        psql_on(&victim, "select pg_is_in_recovery()"),
        "t",
        "{victim} is a replica"
    );
    assert_eq!(primary(), leader2, "reinit left the primary alone");

    std::thread::sleep(Duration::from_secs(2));
    let common::load::Totals {
        processed,
        failed,
        problems,
        longest_pause,
    } = load.finish();
    let gap = longest_pause.expect("logged");
    eprintln!(
        "pgbench -C through PgBouncer: {processed} transactions, {failed} failed; longest time without a completed transaction: {gap:.2} s"
    );
    assert!(processed > 100, "the load ran: {processed}");
    assert_eq!(failed, 0, "zero failed transactions: {problems:?}");
    let (o, _) = ok(&["verify", &inv]);
    assert!(o.contains("checks passed"), "{o}");
    eprintln!(
        "figures: switchover {switch_secs:.1} s, restart --pending {restart_secs:.1} s, reinit {reinit_secs:.1} s, longest client pause {gap:.2} s"
    );
    ok(&["lab", "down"]);
}
