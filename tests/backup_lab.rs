//! Lab test of the `backup` role (issue 15) on real pgBackRest: ONE `lab up` and ONE deploy of
//! the default lab (the repository shares the dc2 PgBouncer host), then every scenario on that
//! cluster: a second deploy changes nothing; `pgha backup` (full, from a standby); rows written
//! after it are archived (`pgbackrest check`, run here over `pgha lab ssh`, is the independent
//! oracle); `pgha backup list --json` agrees with `pgbackrest info` read on the repository
//! host; the repository is encrypted (the files themselves, not only pgha's word); the TLS
//! servers admit only the CNs configured (a certificate of the CA with another CN is denied);
//! archiving survives `pgha switchover --yes` (check passes after, the archive holds the new
//! timeline's WAL); and, as a negative control, check fails while the repository's TLS server
//! is down. Each step's time is printed.

mod common;

use std::path::PathBuf;
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
    let body = on(REPO, &["runuser", "-u", "postgres", "--", "pgbackrest", "--stanza", STANZA, "--output=json", "info"]);
    let v: serde_json::Value = serde_json::from_str(&body).expect("info is JSON");
    v.as_array().and_then(|a| a.first()).cloned().expect("one stanza")
}

/// `pgbackrest check` on the repository host (as postgres), with its exit status.
fn check() -> (bool, String) {
    check_with(&[])
}

fn check_with(extra: &[&str]) -> (bool, String) {
    let mut args = vec!["lab", "ssh", REPO, "--", "runuser", "-u", "postgres", "--", "pgbackrest", "--stanza", STANZA];
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
    assert!(text.contains("roles: [pgbouncer, backup]"), "the default lab puts the repository on pgbouncer: {text}");
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
    let archive_info = on(REPO, &["sh", "-c", &format!("head -c 8 /var/lib/pgbackrest/archive/{STANZA}/archive.info")]);
    assert_eq!(archive_info, "Salted__", "archive.info is OpenSSL-encrypted, not plain text");
    let wal = on(REPO, &["sh", "-c", &format!("f=$(find /var/lib/pgbackrest/archive/{STANZA} -name '0000000*-*' | head -1) && [ -n \"$f\" ] && head -c 8 \"$f\"")]);
    assert_eq!(wal, "Salted__", "an archived WAL segment is encrypted");
    step(&mut t, "services, archiving and encryption checked");

    // Client identity: the repository's TLS server admits the nodes' CNs only. The repository
    // host's own certificate (same CA, CN pgbouncer) is denied; node1's is let in.
    let probe = |host: &str| {
        common::pgha(&[
            "lab", "ssh", host, "--", "runuser", "-u", "postgres", "--", "pgbackrest", "--config=/dev/null",
            "--stanza", STANZA, "--repo1-host", REPO, "--repo1-host-type=tls",
            "--repo1-host-cert-file=/etc/pgha/tls/pgbackrest.crt", "--repo1-host-key-file=/etc/pgha/tls/pgbackrest.key",
            "--repo1-host-ca-file=/etc/pgha/tls/ca-bundle.pem", "--log-level-console=warn", "info",
        ])
    };
    // (`info` exits 0 and reports a repository error in its text.)
    let (o, e) = common::text(&probe(REPO));
    assert!(format!("{o}{e}").contains("access denied"), "CN pgbouncer must be refused: {o}{e}");
    let (o, e) = common::text(&probe("node1"));
    let both = format!("{o}{e}");
    assert!(!both.contains("access denied") && both.contains("aes-256-cbc"), "CN node1 is admitted (and learns the cipher from the repository): {both}");
    step(&mut t, "tls-server-auth: other CN denied, node CN admitted");

    // A full backup through pgha, from a standby.
    let (o, e) = ok(&["backup", &inv, "--type", "full", "--json"]);
    let done = last_json(&o);
    assert_eq!(done["ok"], true, "{o}\n{e}");
    let label = done["backup"]["backup"]["label"].as_str().expect("label").to_string();
    assert_eq!(done["backup"]["backup"]["type"], "full");
    assert_eq!(done["backup"]["source"], "standby", "three streaming nodes: read from a standby: {o}\n{e}");
    step(&mut t, &format!("pgha backup --type full ({label})"));

    // Rows after the backup, then pgBackRest's own check: WAL reaches the repository.
    psql_on(&p0, "create table backup_probe(n int primary key, at timestamptz default now())");
    psql_on(&p0, "insert into backup_probe(n) select generate_series(1, 1000)");
    let (passed, out) = check();
    assert!(passed, "pgbackrest check after writes: {out}");
    step(&mut t, "rows written, pgbackrest check");

    // `backup list --json` and pgbackrest info agree.
    let (o, _) = ok(&["backup", "list", &inv, "--json"]);
    let list = last_json(&o);
    let listed: Vec<&str> = list["stanza"]["backups"].as_array().expect("backups").iter().filter_map(|b| b["label"].as_str()).collect();
    let info = repo_info();
    let truth: Vec<&str> = info["backup"].as_array().expect("backup").iter().filter_map(|b| b["label"].as_str()).collect();
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
    let tl: u32 = psql_on(&p1, "select timeline_id from pg_control_checkpoint()").parse().expect("timeline");
    assert!(tl > tl_before.parse::<u32>().expect("timeline"), "new timeline {tl} after {tl_before}");
    let (passed, out) = check();
    assert!(passed, "pgbackrest check after the switchover: {out}");
    let prefix = format!("{tl:08X}");
    let found = on(REPO, &["sh", "-c", &format!("find /var/lib/pgbackrest/archive/{STANZA} -name '{prefix}*' | wc -l")]);
    assert!(found.parse::<u32>().unwrap_or(0) >= 2, "the archive holds timeline {tl} (history + WAL): {found}");
    let info = repo_info();
    let max = info["archive"][0]["max"].as_str().unwrap_or_default().to_string();
    assert!(max.starts_with(&prefix), "archive max {max} is on timeline {prefix}");
    step(&mut t, &format!("switchover {p0} → {p1}: timeline {tl} archived, check passes"));

    // Negative control: the oracle can fail. With the repository's TLS server stopped, WAL
    // cannot reach the repository and check says so; started again, archiving resumes.
    on(REPO, &["systemctl", "stop", "pgbackrest"]);
    let (passed, out) = check_with(&["--archive-timeout=10"]);
    on(REPO, &["systemctl", "start", "pgbackrest"]);
    assert!(!passed, "check must fail while the repository's TLS server is down: {out}");
    let (passed, out) = check();
    assert!(passed, "check passes again once the server is back: {out}");
    step(&mut t, "negative control: repository server down → check fails; back → passes");

    ok(&["lab", "down"]);
    step(&mut t, "lab down");
}
