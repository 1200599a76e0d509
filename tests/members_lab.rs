//! Membership changes by editing the inventory and re-running deploy, on the lab (root;
//! `#[ignore]`d, .ci/test runs it), under `pgbench -C` through PgBouncer (a new verify-full TLS
//! connection per transaction): 3 → 4 PostgreSQL nodes and 3 → 5 etcd members
//! (tests/inventories/lab-members-{3,5}.yaml, `pgha lab up --from`), then back. Oracles of
//! their own, not pgha's output: `etcdctl member list` on a member, `pg_stat_replication`,
//! `pg_replication_slots` and `pg_hba_file_rules` on the primary, HAProxy's `show stat`,
//! `systemctl` on the departed hosts, psql verify-full through the second entry host (proxy2,
//! which joins and leaves too), pgbench's failed-transaction count (0). Refusals: a
//! removal without `--remove-members` (exit 2, nothing changed), removing the leader (exit 1).
#![allow(clippy::disallowed_methods)] // runs pgha, pgbench and psql like a user

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{ok, on, psql_on};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/inventories");

fn password_of(uri: &str) -> (String, String) {
    let rest = uri.strip_prefix("postgresql://").expect("a postgresql:// URI");
    let (cred, after) = rest.split_once('@').expect("credentials");
    let (user, password) = cred.split_once(':').expect("user:password");
    (format!("postgresql://{user}@{after}"), password.to_string())
}

fn code(args: &[&str]) -> (i32, String, String) {
    let out = common::pgha(args);
    let (o, e) = common::text(&out);
    (out.status.code().unwrap_or(-1), o, e)
}

/// etcd's own member list, read with etcdctl on `host` (names, sorted).
fn etcd_members(host: &str) -> Vec<String> {
    let out = on(
        host,
        &[
            "etcdctl",
            &format!("--endpoints=https://{host}:2379"),
            "--cacert=/etc/pgha/tls/ca-bundle.pem",
            "--cert=/etc/pgha/tls/etcd-server.crt",
            "--key=/etc/pgha/tls/etcd-server.key",
            "member",
            "list",
            "-w",
            "simple",
        ],
    );
    let mut names: Vec<String> = out
        .lines()
        .filter_map(|l| l.split(", ").nth(2).map(str::to_string))
        .collect();
    names.sort();
    names
}

/// The primary (`pg_is_in_recovery()` false) among `nodes`.
fn primary(nodes: &[&str]) -> String {
    let p: Vec<&str> = nodes
        .iter()
        .copied()
        .filter(|n| psql_on(n, "select pg_is_in_recovery()") == "f")
        .collect();
    assert_eq!(p.len(), 1, "exactly one primary: {p:?}");
    p[0].to_string()
}

/// Replicas streaming from `primary` (application names), sorted; waits (bounded) for `want`.
fn streaming(primary: &str, want: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = psql_on(
            primary,
            "select application_name from pg_stat_replication where state = 'streaming' order by 1",
        );
        let s: Vec<String> = out.lines().map(str::to_string).collect();
        if s.len() == want || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// HAProxy's servers (`show stat`) on the proxy: `proxy/server` names.
fn haproxy_servers() -> Vec<String> {
    let out = on(
        "proxy1",
        &[
            "sh",
            "-c",
            "echo 'show stat' | socat stdio unix-connect:/run/haproxy/admin.sock",
        ],
    );
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f.len() > 2 && f[0].starts_with("postgres_") && f[1] != "FRONTEND" && f[1] != "BACKEND")
                .then(|| format!("{}/{}", f[0], f[1]))
        })
        .collect()
}

/// The inventory line of `host` (`  host: {…}` or `  "host": {…}`).
fn is_host_line(line: &str, host: &str) -> bool {
    let l = line.trim_start();
    l.starts_with(&format!("{host}:")) || l.starts_with(&format!("\"{host}\":"))
}

fn address_of(inv: &str, host: &str) -> String {
    let text = std::fs::read_to_string(inv).expect("lab inventory");
    let line = text
        .lines()
        .find(|l| is_host_line(l, host))
        .unwrap_or_else(|| panic!("{host} in {inv}"));
    line.split("address: ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .expect("an address")
        .trim()
        .to_string()
}

/// The deploy's per-play timings and the membership lines, from its stderr.
fn print_timings(stderr: &str) {
    let mut on = false;
    for l in stderr.lines() {
        on |= l.contains("TIMINGS");
        if on || l.contains("members: ") {
            eprintln!("  {l}");
        }
    }
}

fn step(t: &mut Instant, what: &str) {
    eprintln!("step: {what}: {:.1} s", t.elapsed().as_secs_f64());
    *t = Instant::now();
}

#[test]
#[ignore = "lab: needs root and the lab; .ci/test runs it (cargo test -- --include-ignored)"]
fn members_join_and_leave_by_editing_the_inventory_without_failing_a_client() {
    let _scan = common::lab_test("membership lab test");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("members");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    // Both lab inventories in one directory: one state directory (.pgha) for the cluster.
    let small = dir.join("small.yaml").display().to_string();
    let big = dir.join("big.yaml").display().to_string();
    let total = Instant::now();
    let mut t = Instant::now();
    ok(&["lab", "down"]);
    ok(&[
        "lab",
        "up",
        "--from",
        &format!("{SRC}/lab-members-3.yaml"),
        "--inventory",
        &small,
    ]);
    step(&mut t, "lab up (4 machines)");
    ok(&["deploy", &small]);
    step(&mut t, "deploy 3 PostgreSQL nodes, 3 etcd members");
    assert_eq!(etcd_members("node1"), ["node1", "node2", "node3"]);
    let nodes3 = ["node1", "node2", "node3"];
    let leader = primary(&nodes3);

    // The workload: one row per new TLS connection through PgBouncer, for the whole test.
    let (rw, password) = password_of(ok(&["uri", &small, "--database", "app", "--with-password"]).0.trim());
    let setup = Command::new("psql")
        .args([
            &rw,
            "-XtAc",
            "create table if not exists members_load (id bigserial primary key)",
        ])
        .env("PGPASSWORD", &password)
        .output()
        .expect("psql");
    assert!(setup.status.success(), "{}", String::from_utf8_lossy(&setup.stderr));
    let script = dir.join("load.sql");
    std::fs::write(&script, "insert into members_load default values;\n").expect("script");
    let load = common::load::pgbench(rw, password, script, 5, None);

    // Grow: node4, etcd4, etcd5, proxy2 (the lab keeps the other machines and their addresses).
    ok(&[
        "lab",
        "up",
        "--from",
        &format!("{SRC}/lab-members-5.yaml"),
        "--inventory",
        &big,
    ]);
    step(&mut t, "lab up --from the bigger inventory (+4 machines)");
    let (o, e) = ok(&["plan", &big]);
    let plan = format!("{o}{e}");
    for want in [
        "etcd: etcd4 joins",
        "etcd: etcd5 joins",
        "postgres: node4 joins as a streaming replica",
    ] {
        assert!(plan.contains(want), "the plan shows `{want}`:\n{plan}");
    }
    let (_, e) = ok(&["deploy", &big, "--timings"]);
    print_timings(&e);
    step(&mut t, "deploy: node4 joins, etcd 3 → 5");
    assert_eq!(etcd_members("etcd5"), ["etcd4", "etcd5", "node1", "node2", "node3"]);
    let conf = on("etcd4", &["cat", "/etc/etcd/etcd.conf.yml"]);
    assert!(conf.contains("initial-cluster-state: existing"), "{conf}");
    let nodes4 = ["node1", "node2", "node3", "node4"];
    assert_eq!(primary(&nodes4), leader, "the primary stayed");
    let s = streaming(&leader, 3);
    assert!(s.iter().any(|n| n == "node4"), "node4 streams from {leader}: {s:?}");
    assert!(
        haproxy_servers().iter().any(|s| s == "postgres_rw/node4"),
        "HAProxy lists node4"
    );
    assert_eq!(psql_on("node4", "select pg_is_in_recovery()"), "t");
    // proxy2 joined as a second entry host: through its PgBouncer and its HAProxy (verify-full,
    // its own certificates) a session lands on the primary; the multi-host URI lists both.
    let (p1, p2) = (address_of(&big, "proxy1"), address_of(&big, "proxy2"));
    for via in ["pgbouncer", "haproxy"] {
        let (uri, pw) = password_of(
            ok(&["uri", &big, "--via", via, "--database", "app", "--with-password"])
                .0
                .trim(),
        );
        assert!(uri.contains("proxy1") && uri.contains(&p1), "{uri}");
        let uri2 = uri.replace("proxy1", "proxy2").replace(&p1, &p2);
        let out = Command::new("psql")
            .args([&uri2, "-XtAc", "select pg_is_in_recovery()"])
            .env("PGPASSWORD", &pw)
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "through proxy2's {via}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "f",
            "proxy2's {via} reaches the primary"
        );
    }
    let (o, _) = ok(&["uri", &big, "--multi-host", "--database", "app"]);
    assert!(
        o.contains(&p1) && o.contains(&p2),
        "the multi-host URI lists both entry hosts: {o}"
    );
    step(
        &mut t,
        "proxy2 (HAProxy + PgBouncer) serves verify-full sessions on the primary",
    );
    let (o, _) = ok(&["deploy", &big]);
    assert_eq!(common::total(&o).1, 0, "a second deploy changes nothing:\n{o}");
    step(&mut t, "second deploy (changed=0)");
    let (o, _) = ok(&["verify", &big]);
    assert!(o.contains("checks passed"), "{o}");
    let (o, _) = ok(&["status", &big]);
    assert!(o.contains("as the inventory lists them"), "{o}");

    // Shrink back, with the small lab inventory (same machines and addresses).
    let node4 = address_of(&big, "node4");
    let (c, o, e) = code(&["deploy", &small]);
    assert_eq!(c, 2, "a removal without --remove-members exits 2:\n{o}\n{e}");
    assert!(e.contains("--remove-members") && e.contains("node4 leaves"), "{e}");
    assert_eq!(etcd_members("node1").len(), 5, "nothing changed");
    let (c, o, _) = code(&["status", &small]);
    assert_eq!(c, 1, "status flags the members the inventory no longer lists:\n{o}");
    assert!(
        o.contains("patroni node4 leaving") && o.contains("etcd etcd5 leaving"),
        "{o}"
    );
    // The leader cannot leave: an inventory in which the leader keeps only its etcd role.
    let text = std::fs::read_to_string(&small).expect("small inventory");
    let no_leader: String = text
        .lines()
        .map(|l| {
            if is_host_line(l, &leader) {
                l.replace("roles: [postgres, etcd]", "roles: [etcd]")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(no_leader, text.trim_end(), "the leader's line was edited");
    let no_leader_path = dir.join("no-leader.yaml").display().to_string();
    std::fs::write(&no_leader_path, no_leader + "\n").expect("write");
    let (c, o, e) = code(&["deploy", &no_leader_path, "--remove-members"]);
    assert_eq!(c, 1, "removing the leader is refused:\n{o}\n{e}");
    assert!(
        e.contains(&format!("{leader} is the leader")) && e.contains("pgha switchover"),
        "{e}"
    );
    assert_eq!(primary(&nodes4), leader, "nothing changed");
    step(&mut t, "refusals (no --remove-members; the leader)");
    let (o, e) = ok(&["plan", &small]);
    let plan = format!("{o}{e}");
    assert!(
        plan.contains("etcd: etcd4 leaves") && plan.contains("postgres: node4 leaves"),
        "{plan}"
    );
    assert!(
        plan.contains("haproxy: proxy2 leaves") && plan.contains("pgbouncer: proxy2 leaves"),
        "{plan}"
    );
    let (_, e) = ok(&["deploy", &small, "--remove-members", "--purge", "--timings"]);
    print_timings(&e);
    step(&mut t, "deploy --remove-members --purge: node4 leaves, etcd 5 → 3");
    assert_eq!(etcd_members("node2"), ["node1", "node2", "node3"]);
    let leader = primary(&nodes3);
    assert_eq!(streaming(&leader, 2).len(), 2, "two replicas stream");
    assert!(
        !haproxy_servers().iter().any(|s| s.contains("node4")),
        "HAProxy no longer lists node4"
    );
    assert_eq!(
        psql_on(
            &leader,
            &format!("select count(*) from pg_hba_file_rules where address = '{node4}'")
        ),
        "0",
        "pg_hba no longer lists node4 ({node4})"
    );
    // Patroni >= 4.0 keeps a departed member's physical slot for `member_slots_ttl` (30 min by
    // default) in case it comes back, then drops it; until then nothing may stream from it.
    assert_eq!(
        psql_on(
            &leader,
            "select count(*) from pg_replication_slots where slot_name = 'node4' and active"
        ),
        "0",
        "nothing streams from node4's slot any more"
    );
    let state = |h: &str, unit: &str| {
        let out = common::pgha(&["lab", "ssh", h, "--", "systemctl", "is-active", unit]);
        let en = common::pgha(&["lab", "ssh", h, "--", "systemctl", "is-enabled", unit]);
        format!("{} {}", common::text(&out).0.trim(), common::text(&en).0.trim())
    };
    assert_eq!(
        state("node4", "patroni"),
        "inactive disabled",
        "Patroni stopped and disabled on node4"
    );
    assert_eq!(
        state("etcd4", "etcd"),
        "inactive disabled",
        "etcd stopped and disabled on etcd4"
    );
    for unit in ["haproxy", "pgbouncer"] {
        assert_eq!(
            state("proxy2", unit),
            "inactive disabled",
            "{unit} stopped and disabled on proxy2"
        );
    }
    let (o, _) = ok(&["uri", &small, "--multi-host", "--database", "app"]);
    assert!(!o.contains(&p2), "the multi-host URI no longer lists proxy2: {o}");
    // --purge: the departed members' data is gone (without it, it is kept: unit-tested in
    // ops::members; the earlier rounds' lab runs saw it kept).
    assert_eq!(
        on(
            "node4",
            &["sh", "-c", "ls -d /var/lib/postgresql/*/members* 2>/dev/null | wc -l"]
        ),
        "0",
        "--purge deleted node4's data directory"
    );
    assert_eq!(
        on(
            "etcd4",
            &["sh", "-c", "ls -d /var/lib/etcd/members* 2>/dev/null | wc -l"]
        ),
        "0",
        "--purge deleted etcd4's data directory (not moved aside)"
    );
    let (o, _) = ok(&["deploy", &small]);
    assert_eq!(common::total(&o).1, 0, "a second deploy changes nothing:\n{o}");
    step(&mut t, "second deploy (changed=0)");
    let (o, _) = ok(&["verify", &small]);
    assert!(o.contains("checks passed"), "{o}");

    let common::load::Totals {
        processed,
        failed,
        problems,
        ..
    } = load.finish();
    eprintln!("pgbench -C through PgBouncer during grow and shrink: {processed} transactions, {failed} failed");
    assert!(processed > 100, "the load ran: {processed}");
    assert_eq!(failed, 0, "zero failed transactions: {problems:?}");
    eprintln!("members lab test: {:.1} s in all", total.elapsed().as_secs_f64());
    ok(&["lab", "down"]);
}
