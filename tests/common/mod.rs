//! Helpers shared by the lab tests that run the real `pgha` binary: the gate, running pgha,
//! running a command on a lab host, and reading the `total:` line of a run.
#![allow(dead_code, clippy::disallowed_methods)] // each test file uses a subset; they run the real binary

use std::process::{Command, Output};

/// The default lab topology's hosts.
pub const HOSTS: [&str; 8] = [
    "node1",
    "node2",
    "node3",
    "etcd1",
    "etcd2",
    "etcd3",
    "haproxy",
    "pgbouncer",
];

/// The PostgreSQL nodes of the lab.
pub const NODES: [&str; 3] = ["node1", "node2", "node3"];

/// Whether lab tests run (`PGHA_LAB_TESTS=1`, as root); says so when they do not.
pub fn gated(what: &str) -> bool {
    if std::env::var("PGHA_LAB_TESTS").as_deref() != Ok("1") {
        eprintln!("{what} not run: set PGHA_LAB_TESTS=1 (as root) to run it");
        return false;
    }
    true
}

/// Runs the real binary (plain output, as in CI).
pub fn pgha(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgha"))
        .args(args)
        .env("CI", "true")
        .output()
        .expect("pgha runs")
}

/// Stdout and stderr as text.
pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Runs pgha and fails the test unless it exits 0.
pub fn ok(args: &[&str]) -> (String, String) {
    let out = pgha(args);
    let (o, e) = text(&out);
    assert!(
        out.status.success(),
        "pgha {} failed ({}):\n{o}\n{e}",
        args.join(" "),
        out.status
    );
    (o, e)
}

/// A command on a lab host (argv words), its trimmed stdout.
pub fn on(host: &str, cmd: &[&str]) -> String {
    let mut args = vec!["lab", "ssh", host, "--"];
    args.extend_from_slice(cmd);
    ok(&args).0.trim().to_string()
}

/// A SQL query run as `postgres` over the local socket of a lab node.
pub fn psql_on(host: &str, sql: &str) -> String {
    on(host, &["runuser", "-u", "postgres", "--", "psql", "-XtAc", sql])
}

/// `(ok, changed, failed)` from a run's `total:` line.
pub fn total(stdout: &str) -> (u32, u32, u32) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("total: "))
        .unwrap_or_else(|| panic!("no total line in {stdout}"));
    let num = |k: &str| {
        line.split(&format!("{k}="))
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {k}= in {line}"))
    };
    (num("ok"), num("changed"), num("failed"))
}
