//! `pgha deploy` on bare lab hosts (root; `#[ignore]`d, .ci/test runs it), checked the way a user would:
//! deploy → `pgha verify` (psql with sslmode=verify-full through PgBouncer and HAProxy) → a
//! second deploy reports changed=0 and no service main PID nor postmaster start time moved →
//! a reloadable PostgreSQL parameter and a PgBouncer pool size change are applied by reload
//! alone → an application connects with `pgha uri` → a Debian 12 lab deploys and verifies too.
#![allow(clippy::disallowed_methods)] // runs the real binary and psql

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{HOSTS, NODES, on, psql_on, text, total};

fn ok(args: &[&str]) -> (String, String) {
    common::ok(args)
}

fn changed(stdout: &str) -> u32 {
    total(stdout).1
}

/// Main PIDs of the cluster's services, host by host.
fn service_pids() -> Vec<(String, String)> {
    HOSTS
        .iter()
        .map(|h| {
            (
                h.to_string(),
                on(
                    h,
                    &[
                        "systemctl",
                        "show",
                        "-p",
                        "Id,MainPID",
                        "etcd",
                        "patroni",
                        "haproxy",
                        "pgbouncer",
                    ],
                )
                .replace('\n', " "),
            )
        })
        .collect()
}

/// PostgreSQL's postmaster start time on each node.
fn postmasters() -> Vec<String> {
    NODES
        .iter()
        .map(|h| psql_on(h, "select pg_postmaster_start_time()"))
        .collect()
}

/// Both: a restart of any service or of PostgreSQL changes this.
fn pids() -> (Vec<(String, String)>, Vec<String>) {
    (service_pids(), postmasters())
}

/// Waits (30 s at most) until `setting` is `want` on every PostgreSQL node.
fn wait_setting(setting: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: Vec<String> = NODES.iter().map(|h| psql_on(h, &format!("show {setting}"))).collect();
        if got.iter().all(|w| w == want) {
            return;
        }
        assert!(Instant::now() < deadline, "{setting} is not {want} everywhere: {got:?}");
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn fresh_lab(release: &str, dir: &Path) -> String {
    ok(&["lab", "down"]);
    let inv = dir.join(format!("deploy-{release}.yaml"));
    let _ = std::fs::remove_dir_all(dir.join(".pgha"));
    ok(&[
        "lab",
        "up",
        "--release",
        release,
        "--inventory",
        &inv.display().to_string(),
    ]);
    let mut text = std::fs::read_to_string(&inv).expect("lab inventory");
    assert!(
        text.contains("    work_mem: 4MB\n") && text.contains("    - name: app\n"),
        "the lab inventory declares an app user: {text}"
    );
    text.push_str("pgbouncer:\n  default_pool_size: 20\n");
    std::fs::write(&inv, text).expect("inventory");
    inv.display().to_string()
}

fn deploy_and_verify(inv: &str, label: &str) {
    let start = Instant::now();
    let (o, e) = ok(&["deploy", inv, "--timings"]);
    eprintln!(
        "{label}: fresh deploy to a converged cluster: {:.1} s",
        start.elapsed().as_secs_f64()
    );
    eprintln!(
        "{}",
        e.lines()
            .skip_while(|l| !l.starts_with("TIMINGS"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(changed(&o) > 50, "a fresh deploy changes a lot: {o}");
    let (o, e) = ok(&["verify", inv]);
    assert!(o.contains("verify: all 7 checks passed"), "{o}\n{e}");
}

#[test]
#[ignore = "lab: needs root and the lab; .ci/test runs it (cargo test -- --include-ignored)"]
fn deploy_bare_hosts_then_converge() {
    let _scan = common::lab_test("deploy lab test");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let inv = fresh_lab("trixie", &dir);
    deploy_and_verify(&inv, "debian13");
    hardened(&dir);

    // Second deploy: nothing changes, nothing restarts or reloads.
    let before = pids();
    let start = Instant::now();
    let (o, e) = ok(&["deploy", &inv]);
    eprintln!("debian13: no-op re-deploy: {:.2} s", start.elapsed().as_secs_f64());
    assert_eq!(changed(&o), 0, "{e}");
    assert_eq!(pids(), before, "a no-op deploy restarted something");
    let start = Instant::now();
    let (o, e) = ok(&["plan", &inv]);
    eprintln!(
        "debian13: plan on a converged cluster: {:.2} s",
        start.elapsed().as_secs_f64()
    );
    assert_eq!(changed(&o), 0, "{e}");

    // A reloadable PostgreSQL parameter and a PgBouncer pool size: applied by reload alone.
    let original = std::fs::read_to_string(&inv).expect("read");
    std::fs::write(
        &inv,
        original
            .replace("work_mem: 4MB", "work_mem: 8MB")
            .replace("default_pool_size: 20", "default_pool_size: 25"),
    )
    .expect("write");
    let (plan, _) = ok(&["plan", &inv]);
    assert!(changed(&plan) >= 2, "{plan}");
    let (o, e) = ok(&["deploy", &inv]);
    assert!(changed(&o) >= 2, "{e}");
    assert!(e.contains("reload patroni") && e.contains("reload pgbouncer"), "{e}");
    assert_eq!(pids(), before, "a reloadable change restarted something");
    wait_setting("work_mem", "8MB");
    let pool = on(
        "pgbouncer",
        &[
            "runuser",
            "-u",
            "postgres",
            "--",
            "psql",
            "-XtA",
            "-h",
            "/var/run/postgresql",
            "-p",
            "6432",
            "-U",
            "postgres",
            "pgbouncer",
            "-c",
            "show config",
        ],
    );
    assert!(pool.lines().any(|l| l.starts_with("default_pool_size|25|")), "{pool}");
    let (o, e) = ok(&["deploy", &inv]);
    assert_eq!(changed(&o), 0, "{e}");

    // A parameter that needs a restart: PostgreSQL restarts rolling (replicas, then a
    // switchover, then the old primary); Patroni and every other service keep their PIDs.
    let original = std::fs::read_to_string(&inv).expect("read");
    std::fs::write(
        &inv,
        original.replace("    work_mem: 8MB\n", "    work_mem: 8MB\n    max_connections: 120\n"),
    )
    .expect("write");
    let (services, starts) = pids();
    let start = Instant::now();
    let (_, e) = ok(&["deploy", &inv]);
    eprintln!(
        "debian13: rolling restart for max_connections: {:.1} s",
        start.elapsed().as_secs_f64()
    );
    assert!(
        e.contains("restart PostgreSQL for pending parameters") && e.contains("switch over"),
        "{e}"
    );
    assert_eq!(
        service_pids(),
        services,
        "Patroni or another service was restarted:\n{e}"
    );
    for (before, after) in starts.iter().zip(postmasters()) {
        assert_ne!(
            before, &after,
            "a node kept its postmaster: rolling restart incomplete\n{e}"
        );
    }
    wait_setting("max_connections", "120");
    let (v, _) = ok(&["verify", &inv]);
    assert!(v.contains("all 7 checks passed"), "{v}");
    let (o, e) = ok(&["deploy", &inv]);
    assert_eq!(changed(&o), 0, "{e}");

    // An application connects with the URI pgha prints (TLS verify-full, SCRAM), as a new user
    // would: no --database, and its first CREATE TABLE works (the default is a database the
    // user owns; in `postgres`, PostgreSQL 15+ refuses it: permission denied for schema public).
    let (uri, _) = ok(&["uri", &inv, "--with-password"]);
    let psql = Command::new("psql")
        .args([
            uri.trim(),
            "-XtAc",
            "create table if not exists t(x int); insert into t values (1); select current_user, current_database(), pg_is_in_recovery()",
        ])
        .output()
        .expect("psql runs");
    let (o, e) = text(&psql);
    assert!(psql.status.success(), "CREATE TABLE through the default URI: {e}");
    assert!(o.contains("app|app|f"), "{o}");
    // --ro reaches a replica.
    let (ro, _) = ok(&["uri", &inv, "--ro", "--with-password"]);
    let psql = Command::new("psql")
        .args([ro.trim(), "-XtAc", "select pg_is_in_recovery()"])
        .output()
        .expect("psql runs");
    let (o, e) = text(&psql);
    assert!(psql.status.success(), "{e}");
    assert_eq!(o.trim(), "t", "--ro lands on a replica");
    let (plain, _) = ok(&["uri", &inv, "--user", "app"]);
    assert!(
        plain
            .trim()
            .starts_with("postgresql://app@pgbouncer:6432/app_rw?sslmode=verify-full"),
        "no password without --with-password: {plain}"
    );

    // Debian 12 (bookworm: PostgreSQL 15, Patroni 3.0, etcd 3.4, HAProxy 2.6, PgBouncer 1.18).
    let inv12 = fresh_lab("bookworm", &dir);
    deploy_and_verify(&inv12, "debian12");
    let (o, e) = ok(&["deploy", &inv12]);
    assert_eq!(changed(&o), 0, "{e}");
    ok(&["lab", "down"]);
}

/// What docs/design.md promises about secrets and TLS, checked on the deployed hosts.
fn hardened(dir: &Path) {
    // Key files and files holding passwords: 0600/0640, owned by root and readable by their
    // service's group only (issue 12: no file a service user could rewrite is parsed or
    // installed by root).
    let expect = [
        ("node1", "/etc/pgha/tls/postgres-server.key", "postgres"),
        ("node1", "/etc/pgha/tls/patroni-rest.key", "postgres"),
        ("node1", "/etc/pgha/tls/patroni-client.key", "postgres"),
        ("node1", "/etc/patroni/config.yml", "postgres"),
        ("node1", "/etc/patroni/pgha-bootstrap.sql", "postgres"),
        ("etcd1", "/etc/pgha/tls/etcd-server.key", "etcd"),
        ("etcd1", "/etc/pgha/tls/etcd-peer.key", "etcd"),
        ("haproxy", "/etc/pgha/tls/haproxy-check.pem", "haproxy"),
        ("pgbouncer", "/etc/pgha/tls/pgbouncer-server.key", "postgres"),
        ("pgbouncer", "/etc/pgbouncer/userlist.txt", "postgres"),
    ];
    for (host, path, group) in expect {
        let st = on(host, &["stat", "-c", "%a %U %G", path]);
        let f: Vec<&str> = st.split(' ').collect();
        assert!(
            f.len() == 3 && (f[0] == "600" || f[0] == "640"),
            "{host}:{path} is {st}"
        );
        assert_eq!((f[1], f[2]), ("root", group), "{host}:{path}");
    }
    // Every file and directory pgha installs on a node, and each directory above it, is owned by
    // root and writable by root only (a service user can neither swap a file root installs
    // nor rewrite a helper or configuration root runs or parses).
    for (host, paths) in [
        (
            "node1",
            "/etc/patroni /etc/patroni/config.yml /etc/pgha /etc/pgha/tls /usr/local/sbin/pgha-patroni /etc/postgresql-common/createcluster.d/pgha.conf",
        ),
        (
            "etcd1",
            "/etc/etcd /etc/etcd/etcd.conf.yml /etc/systemd/system/etcd.service.d/pgha.conf",
        ),
        (
            "haproxy",
            "/etc/haproxy/haproxy.cfg /etc/systemd/system/haproxy.service.d/pgha.conf",
        ),
        (
            "pgbouncer",
            "/etc/pgbouncer /etc/pgbouncer/pgbouncer.ini /etc/pgbouncer/pg_hba.conf /usr/local/sbin/pgha-pgbouncer",
        ),
    ] {
        let script = format!(
            "for p in {paths} /etc/pgha/tls/*; do while :; do s=$(stat -c '%U %a' \"$p\"); [ \"${{s%% *}}\" = root ] && [ $(( 0${{s#* }} & 022 )) -eq 0 ] || echo \"$p $s\"; [ \"$p\" = / ] && break; p=$(dirname \"$p\"); done; done"
        );
        let bad = on(host, &["sh", "-c", &script]);
        assert!(bad.is_empty(), "{host}: not root-only: {bad}");
    }
    assert_eq!(
        on("node1", &["stat", "-c", "%U:%G %a", "/etc/patroni"]),
        "root:postgres 750"
    );
    // The CA key never leaves the controller.
    let ca_key = std::fs::read_to_string(dir.join(".pgha/ca/ca.key")).expect("CA key");
    let needle = ca_key.lines().nth(1).expect("a base64 line");
    for h in HOSTS {
        let found = on(
            h,
            &[
                "sh",
                "-c",
                &format!("grep -rlF '{needle}' /etc /var/lib 2>/dev/null | wc -l"),
            ],
        );
        assert_eq!(found, "0", "{h} holds the CA key");
    }
    // Refused: plaintext to PostgreSQL, etcd and Patroni's API without a client certificate.
    let plain = on(
        "pgbouncer",
        &[
            "sh",
            "-c",
            "psql 'host=node1 port=5432 dbname=postgres user=app sslmode=disable connect_timeout=5' -c 'select 1' 2>&1 || true",
        ],
    );
    assert!(
        plain.contains("no encryption"),
        "plaintext to PostgreSQL must be refused by pg_hba: {plain}"
    );
    // etcd and Patroni's API without a client certificate: refused in the TLS handshake (curl
    // 35 or 56 with the server's alert), and the same request with a client certificate the
    // CA issued answers (positive control: the refusal is the certificate's absence, not a
    // wrong name, port or CA).
    let curl = |url: &str, cert: bool| {
        let cert = if cert {
            "--cert /etc/pgha/tls/patroni-client.crt --key /etc/pgha/tls/patroni-client.key"
        } else {
            ""
        };
        on(
            "node1",
            &[
                "sh",
                "-c",
                &format!(
                    "curl -sS --max-time 5 --cacert /etc/pgha/tls/ca-bundle-1.pem {cert} {url} 2>&1; rc=$?; echo; echo rc=$rc"
                ),
            ],
        )
    };
    for url in ["https://etcd1:2379/health", "https://node1:8008/health"] {
        let refused = curl(url, false);
        let rc = refused.rsplit("rc=").next().unwrap_or("").trim().to_string();
        assert!(
            (rc == "35" || rc == "56") && refused.contains("alert"),
            "{url} without a client certificate must be refused in the TLS handshake (curl 35/56, alert): {refused}"
        );
        let answered = curl(url, true);
        assert!(
            answered.ends_with("rc=0") && (url.contains("8008") || answered.contains("\"health\":\"true\"")),
            "{url} with Patroni's client certificate must answer (positive control): {answered}"
        );
    }
}
