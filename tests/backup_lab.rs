//! Lab test of the `backup` role (issue 15) on real pgBackRest: ONE `lab up` and ONE deploy of
//! the default lab (the repository shares the dc2 PgBouncer host), then every scenario on that
//! cluster: a second deploy changes nothing; `pgha backup` (full, from a standby); rows written
//! after it are archived (`pgbackrest check`, run here over `pgha lab ssh`, is the independent
//! oracle); `pgha backup list --json` agrees with `pgbackrest info` read on the repository
//! host; the repository is encrypted (the files themselves, not only pgha's word); the TLS
//! servers admit only the CNs configured (a certificate of the CA with another CN is denied);
//! archiving survives `pgha switchover --yes` (check passes after, the archive holds the new
//! timeline's WAL); and, as a negative control, check fails while the repository's TLS server
//! is down; and point-in-time recovery of the cluster (`pgha restore --time T`). Each step's
//! time is printed.

#![allow(clippy::disallowed_methods)] // runs psql through PgBouncer like a user

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use common::{NODES, ok, on, psql_on, total};

const REPO: &str = "pgbouncer";
const STANZA: &str = "pgha-lab";

/// The last JSON value of a `--json` run's stdout (pgha pretty-prints each value).
fn last_json(stdout: &str) -> serde_json::Value {
    serde_json::Deserializer::from_str(stdout)
        .into_iter::<serde_json::Value>()
        .map(|v| v.unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}")))
        .last()
        .unwrap_or_else(|| panic!("no JSON on stdout: {stdout:?}"))
}

fn step(t: &mut Instant, what: &str) {
    eprintln!("backup lab: {what}: {:.1} s", t.elapsed().as_secs_f64());
    *t = Instant::now();
}

fn primary() -> String {
    NODES
        .iter()
        .find(|n| psql_on(n, "select pg_is_in_recovery()") == "f")
        .expect("a primary")
        .to_string()
}

/// `pgbackrest info --output=json` read on the repository host, without pgha's parser.
fn repo_info() -> serde_json::Value {
    let body = on(
        REPO,
        &[
            "runuser",
            "-u",
            "postgres",
            "--",
            "pgbackrest",
            "--stanza",
            STANZA,
            "--output=json",
            "info",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&body).expect("info is JSON");
    v.as_array().and_then(|a| a.first()).cloned().expect("one stanza")
}

/// `pgbackrest check` on the repository host (as postgres), with its exit status.
fn check() -> (bool, String) {
    check_with(&[])
}

fn check_with(extra: &[&str]) -> (bool, String) {
    let mut args = vec![
        "lab",
        "ssh",
        REPO,
        "--",
        "runuser",
        "-u",
        "postgres",
        "--",
        "pgbackrest",
        "--stanza",
        STANZA,
    ];
    args.extend_from_slice(extra);
    args.push("check");
    let out = common::pgha(&args);
    let (o, e) = common::text(&out);
    (out.status.success(), format!("{o}{e}"))
}

#[test]
#[ignore = "lab: needs root and the lab; .ci/test runs it (cargo test -- --include-ignored)"]
fn backup_archive_encrypt_switchover() {
    let _scan = common::lab_test("backup lab test");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("backup-lab");
    std::fs::create_dir_all(&dir).expect("dir");
    let _ = std::fs::remove_dir_all(dir.join(".pgha"));
    let inv = dir.join("lab.yaml").display().to_string();
    let mut t = Instant::now();
    ok(&["lab", "down"]);
    ok(&["lab", "up", "--inventory", &inv]);
    let text = std::fs::read_to_string(&inv).expect("lab inventory");
    assert!(
        text.contains("roles: [pgbouncer, backup]"),
        "the default lab puts the repository on pgbouncer: {text}"
    );
    step(&mut t, "lab up");

    let (o, e) = ok(&["deploy", &inv]);
    assert!(total(&o).1 > 50, "a fresh deploy changes a lot: {o}\n{e}");
    step(&mut t, "fresh deploy (pgBackRest, stanza-create, check)");
    let (o, e) = ok(&["deploy", &inv]);
    assert_eq!(total(&o).1, 0, "a second deploy changes nothing: {o}\n{e}");
    step(&mut t, "second deploy, changed=0");

    // The TLS servers run on every node and on the repository host (Debian enables none).
    for h in NODES.iter().chain([&REPO]) {
        assert_eq!(on(h, &["systemctl", "is-active", "pgbackrest"]), "active", "{h}");
    }
    // Archiving is on through Patroni, and the repository is encrypted.
    let p0 = primary();
    assert_eq!(psql_on(&p0, "show archive_mode"), "on");
    assert!(psql_on(&p0, "show archive_command").contains("pgbackrest"));
    let info = repo_info();
    assert_eq!(info["cipher"], "aes-256-cbc", "{info}");
    let archive_info = on(
        REPO,
        &[
            "sh",
            "-c",
            &format!("head -c 8 /var/lib/pgbackrest/archive/{STANZA}/archive.info"),
        ],
    );
    assert_eq!(
        archive_info, "Salted__",
        "archive.info is OpenSSL-encrypted, not plain text"
    );
    let wal = on(
        REPO,
        &[
            "sh",
            "-c",
            &format!(
                "f=$(find /var/lib/pgbackrest/archive/{STANZA} -name '0000000*-*' | head -1) && [ -n \"$f\" ] && head -c 8 \"$f\""
            ),
        ],
    );
    assert_eq!(wal, "Salted__", "an archived WAL segment is encrypted");
    step(&mut t, "services, archiving and encryption checked");

    // Client identity: the repository's TLS server admits the nodes' CNs only. The repository
    // host's own certificate (same CA, CN pgbouncer) is denied; node1's is let in.
    let probe = |host: &str| {
        common::pgha(&[
            "lab",
            "ssh",
            host,
            "--",
            "runuser",
            "-u",
            "postgres",
            "--",
            "pgbackrest",
            "--config=/dev/null",
            "--stanza",
            STANZA,
            "--repo1-host",
            REPO,
            "--repo1-host-type=tls",
            "--repo1-host-cert-file=/etc/pgha/tls/pgbackrest.crt",
            "--repo1-host-key-file=/etc/pgha/tls/pgbackrest.key",
            "--repo1-host-ca-file=/etc/pgha/tls/ca-bundle.pem",
            "--log-level-console=warn",
            "info",
        ])
    };
    // (`info` exits 0 and reports a repository error in its text.)
    let (o, e) = common::text(&probe(REPO));
    assert!(
        format!("{o}{e}").contains("access denied"),
        "CN pgbouncer must be refused: {o}{e}"
    );
    let (o, e) = common::text(&probe("node1"));
    let both = format!("{o}{e}");
    assert!(
        !both.contains("access denied") && both.contains("aes-256-cbc"),
        "CN node1 is admitted (and learns the cipher from the repository): {both}"
    );
    step(&mut t, "tls-server-auth: other CN denied, node CN admitted");

    // A full backup through pgha, from a standby.
    let (o, e) = ok(&["backup", &inv, "--type", "full", "--json"]);
    let done = last_json(&o);
    assert_eq!(done["ok"], true, "{o}\n{e}");
    let label = done["backup"]["backup"]["label"].as_str().expect("label").to_string();
    assert_eq!(done["backup"]["backup"]["type"], "full");
    assert_eq!(
        done["backup"]["source"], "standby",
        "three streaming nodes: read from a standby: {o}\n{e}"
    );
    step(&mut t, &format!("pgha backup --type full ({label})"));

    // Rows after the backup, then pgBackRest's own check: WAL reaches the repository.
    psql_on(
        &p0,
        "create table backup_probe(n int primary key, at timestamptz default now())",
    );
    psql_on(&p0, "insert into backup_probe(n) select generate_series(1, 1000)");
    let (passed, out) = check();
    assert!(passed, "pgbackrest check after writes: {out}");
    step(&mut t, "rows written, pgbackrest check");

    // `backup list --json` and pgbackrest info agree.
    let (o, _) = ok(&["backup", "list", &inv, "--json"]);
    let list = last_json(&o);
    let listed: Vec<&str> = list["stanza"]["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .filter_map(|b| b["label"].as_str())
        .collect();
    let info = repo_info();
    let truth: Vec<&str> = info["backup"]
        .as_array()
        .expect("backup")
        .iter()
        .filter_map(|b| b["label"].as_str())
        .collect();
    assert_eq!(listed, truth, "backup list agrees with pgbackrest info");
    assert!(truth.contains(&label.as_str()), "{label} in {truth:?}");
    assert_eq!(list["stanza"]["cipher"], "aes-256-cbc");
    step(&mut t, "backup list --json = pgbackrest info");

    // Archiving across a switchover: a new timeline, still archived, check passes.
    let tl_before = psql_on(&p0, "select timeline_id from pg_control_checkpoint()");
    ok(&["switchover", &inv, "--yes"]);
    let p1 = primary();
    assert_ne!(p1, p0, "switchover moved the primary");
    psql_on(&p1, "insert into backup_probe(n) select generate_series(1001, 2000)");
    let tl: u32 = psql_on(&p1, "select timeline_id from pg_control_checkpoint()")
        .parse()
        .expect("timeline");
    assert!(
        tl > tl_before.parse::<u32>().expect("timeline"),
        "new timeline {tl} after {tl_before}"
    );
    let (passed, out) = check();
    assert!(passed, "pgbackrest check after the switchover: {out}");
    let prefix = format!("{tl:08X}");
    let found = on(
        REPO,
        &[
            "sh",
            "-c",
            &format!("find /var/lib/pgbackrest/archive/{STANZA} -name '{prefix}*' | wc -l"),
        ],
    );
    assert!(
        found.parse::<u32>().unwrap_or(0) >= 2,
        "the archive holds timeline {tl} (history + WAL): {found}"
    );
    let info = repo_info();
    let max = info["archive"][0]["max"].as_str().unwrap_or_default().to_string();
    assert!(max.starts_with(&prefix), "archive max {max} is on timeline {prefix}");
    step(
        &mut t,
        &format!("switchover {p0} → {p1}: timeline {tl} archived, check passes"),
    );

    // Negative control: the oracle can fail. With the repository's TLS server stopped, WAL
    // cannot reach the repository and check says so; started again, archiving resumes.
    on(REPO, &["systemctl", "stop", "pgbackrest"]);
    let (passed, out) = check_with(&["--archive-timeout=10"]);
    on(REPO, &["systemctl", "start", "pgbackrest"]);
    assert!(
        !passed,
        "check must fail while the repository's TLS server is down: {out}"
    );
    let (passed, out) = check();
    assert!(passed, "check passes again once the server is back: {out}");
    step(
        &mut t,
        "negative control: repository server down → check fails; back → passes",
    );

    restore_point_in_time(&inv, &mut t, &label);

    ok(&["lab", "down"]);
    step(&mut t, "lab down");
}

/// `pgha uri --database app --with-password` split into the URI (PgBouncer, verify-full) and
/// the password.
fn app_uri(inv: &str) -> (String, String) {
    let (o, _) = ok(&["uri", inv, "--database", "app", "--with-password"]);
    let uri = o.trim();
    assert!(uri.contains("sslmode=verify-full"), "{uri}");
    let rest = uri.strip_prefix("postgresql://").expect("a postgresql:// URI");
    let (cred, after) = rest.split_once('@').expect("credentials");
    let (user, password) = cred.split_once(':').expect("user:password");
    (format!("postgresql://{user}@{after}"), password.to_string())
}

/// psql through PgBouncer from the controller (a real client, verify-full): the trimmed output.
fn app_sql(uri: &(String, String), sql: &str) -> String {
    let out = Command::new("psql")
        .args([uri.0.as_str(), "-XqtA", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGPASSWORD", &uri.1)
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .expect("psql runs");
    let (o, e) = common::text(&out);
    assert!(out.status.success(), "psql {sql:?} through PgBouncer: {o}{e}");
    o.trim().to_string()
}

fn exit_of(args: &[&str]) -> (i32, String, String) {
    let out = common::pgha(args);
    let (o, e) = common::text(&out);
    (out.status.code().unwrap_or(-1), o, e)
}

/// Issue 15 item 4: rows committed through PgBouncer, the time T read from the database, rows
/// after T, the table dropped; `pgha restore --time T` refuses without --yes (changes nothing)
/// and refuses targets it cannot reach; with --yes exactly the rows committed before T are
/// back, every node streams, `verify` passes, a deploy changes nothing, the old data
/// directories are kept on every node, and a new backup and `pgbackrest check` pass.
fn restore_point_in_time(inv: &str, t: &mut Instant, backup_label: &str) {
    let app = app_uri(inv);
    app_sql(
        &app,
        "create table pitr_probe(n int primary key, at timestamptz default clock_timestamp())",
    );
    app_sql(&app, "insert into pitr_probe(n) select generate_series(1, 300)");
    app_sql(&app, "insert into pitr_probe(n) select generate_series(301, 500)");
    // T: the database's clock, read after the last commit that must survive.
    let target = app_sql(&app, "select clock_timestamp()");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    app_sql(&app, "insert into pitr_probe(n) select generate_series(501, 800)");
    app_sql(&app, "drop table pitr_probe");
    let p = primary();
    let tl_before: u32 = psql_on(&p, "select timeline_id from pg_control_checkpoint()")
        .parse()
        .expect("timeline");
    step(t, &format!("rows 1-500, T = {target}, rows 501-800, drop table"));

    // Without --yes: the plan (destroys, keeps), exit 2, nothing changed.
    let (c, o, e) = exit_of(&["restore", inv, "--time", &target]);
    assert_eq!(c, 2, "restore without --yes exits 2:\n{o}\n{e}");
    assert!(
        o.contains("DESTROYS") && o.contains(".pre-restore-") && o.contains(backup_label),
        "the plan says what it destroys, keeps and restores: {o}"
    );
    assert_eq!(
        app_sql(&app, "select to_regclass('pitr_probe') is null"),
        "t",
        "nothing restored without --yes"
    );
    assert_eq!(psql_on(&primary(), "select count(*) from backup_probe"), "2000");
    for n in NODES {
        assert_eq!(
            on(
                n,
                &[
                    "sh",
                    "-c",
                    "ls -d /var/lib/postgresql/*/*.pre-restore-* 2>/dev/null | wc -l"
                ]
            ),
            "0",
            "{n}: nothing moved"
        );
    }
    // Refusals: a target in the future (1), one before every backup (1), no zone (3).
    let (c, _, e) = exit_of(&["restore", inv, "--time", "2999-01-01 00:00:00+00", "--yes"]);
    assert!(
        c == 1 && e.contains("in the future"),
        "future target refused ({c}): {e}"
    );
    let (c, _, e) = exit_of(&["restore", inv, "--time", "2000-01-01 00:00:00+00", "--yes"]);
    assert!(
        c == 1 && e.contains("no backup finished before"),
        "target before every backup refused ({c}): {e}"
    );
    let (c, _, e) = exit_of(&["restore", inv, "--time", "2026-12-02 03:00:00", "--yes"]);
    assert!(
        c == 3 && e.contains("zone"),
        "a time without a zone is invalid ({c}): {e}"
    );
    assert_eq!(primary(), p, "refusals changed nothing");
    step(
        t,
        "restore without --yes: plan, exit 2; future / too early / no zone refused",
    );

    // The restore.
    let (o, e) = ok(&["restore", inv, "--time", &target, "--yes", "--json"]);
    let r = last_json(&o);
    assert_eq!(r["ok"], true, "{o}\n{e}");
    eprintln!(
        "backup lab: restore figures: restore {} s, recovery {} s, lead {} s, re-clone {} s, total {} s, {} bytes",
        r["run"]["restore_s"],
        r["run"]["recovery_s"],
        r["run"]["lead_s"],
        r["run"]["reclone_s"],
        r["run"]["total_s"],
        r["run"]["restored_bytes"]
    );
    step(
        t,
        &format!("pgha restore --time T --yes (from {})", r["plan"]["backup"]),
    );

    // Exactly the rows committed before T, read through PgBouncer.
    assert_eq!(
        app_sql(
            &app,
            "select count(*) || ' ' || min(n) || ' ' || max(n) from pitr_probe"
        ),
        "500 1 500",
        "exactly the rows committed before T"
    );
    let p2 = primary();
    assert_eq!(
        psql_on(&p2, "select count(*) from backup_probe"),
        "2000",
        "the postgres database's rows (before T) too"
    );
    let tl: u32 = psql_on(&p2, "select timeline_id from pg_control_checkpoint()")
        .parse()
        .expect("timeline");
    assert!(tl > tl_before, "a new timeline: {tl} after {tl_before}");
    let streaming = psql_on(
        &p2,
        "select count(*) from pg_stat_replication where state = 'streaming'",
    );
    assert_eq!(streaming, "2", "both other nodes stream from {p2}");
    for n in NODES {
        let kept = on(
            n,
            &[
                "sh",
                "-c",
                "for d in /var/lib/postgresql/*/*.pre-restore-*; do [ -f \"$d/PG_VERSION\" ] && echo \"$d\"; done",
            ],
        );
        assert_eq!(kept.lines().count(), 1, "{n}: the old data directory is kept: {kept:?}");
    }
    step(
        t,
        &format!("500 rows back, timeline {tl_before} → {tl}, 2 streaming, old data kept on every node"),
    );

    ok(&["verify", inv]);
    let (o, e) = ok(&["deploy", inv]);
    assert_eq!(total(&o).1, 0, "a deploy after the restore changes nothing: {o}\n{e}");
    let (passed, out) = check();
    assert!(passed, "pgbackrest check on the new timeline: {out}");
    let (o, e) = ok(&["backup", inv, "--type", "full", "--json"]);
    assert_eq!(last_json(&o)["ok"], true, "{o}\n{e}");
    step(t, "verify, deploy changed=0, pgbackrest check, new full backup");
}
