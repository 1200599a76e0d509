//! Helpers shared by the lab tests that run the real `pgha` binary: the gate, running pgha
//! (every output recorded for the secret scan), running a command on a lab host, and reading
//! the `total:` line of a run.
//!
//! Every lab test is `#[ignore = "lab: …"]`, so a plain `cargo test` lists it as *ignored*,
//! never as passed. `.ci/test` runs them with `--include-ignored`; a test that runs calls
//! [`lab_test`] first, which panics when a precondition (root, the lab's tools) is missing and
//! returns a guard that scans everything pgha printed in the test for secrets when it ends.
#![allow(dead_code, clippy::disallowed_methods)] // each test file uses a subset; they run the real binary

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod load;
pub mod stream;

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

/// Commands the lab tests call on the controller (besides pgha itself).
const LAB_TOOLS: [&str; 6] = ["debootstrap", "systemd-nspawn", "machinectl", "ip", "ssh", "psql"];

/// The start of every lab test (each is `#[ignore = "lab: …"]`, so it runs only when asked
/// for with `--include-ignored`): panics, naming what is missing, unless it runs as root with
/// the lab's tools installed; `PGHA_LAB_TESTS=0` asks for the lab tests not to run, and a lab
/// test that runs anyway fails rather than passing without doing anything. The guard it
/// returns scans everything pgha printed in the test for secrets when the test ends.
#[must_use = "keep the guard alive until the end of the test: it runs the secret scan on drop"]
pub fn lab_test(what: &str) -> SecretScan {
    assert_ne!(
        std::env::var("PGHA_LAB_TESTS").as_deref(),
        Ok("0"),
        "{what}: PGHA_LAB_TESTS=0 says not to run the lab tests, yet it was asked to run \
         (--include-ignored or --ignored); drop that flag and it is listed as ignored"
    );
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    assert_eq!(
        uid.as_deref().unwrap_or("?"),
        "0",
        "{what} needs root (systemd-nspawn, network namespaces); run it as root, or leave out \
         --include-ignored and it is listed as ignored"
    );
    for tool in LAB_TOOLS {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "{what} needs `{tool}`, which is not installed (.ci/test installs it)"
        );
    }
    PRINTED.with(|p| p.borrow_mut().clear());
    SecretScan { what: what.to_string() }
}

thread_local! {
    /// Everything pgha printed in this test (libtest runs each test on its own thread), except
    /// output pgha prints by request (`uri --with-password`) or relays from a host (`lab ssh`).
    static PRINTED: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Adds what a pgha run printed to the secret scan (for tests that spawn pgha themselves).
pub fn record(args: &[&str], stdout: &str, stderr: &str) {
    if args.contains(&"--with-password") || (args.first() == Some(&"lab") && args.get(1) == Some(&"ssh")) {
        return;
    }
    PRINTED.with(|p| {
        p.borrow_mut()
            .push(format!("$ pgha {}\n{stdout}\n{stderr}", args.join(" ")))
    });
}

/// Scans what pgha printed for secrets when the test ends (see [`lab_test`]).
pub struct SecretScan {
    what: String,
}

impl SecretScan {
    /// Runs the scan now (also run on drop); panics naming the secret's kind and the command.
    pub fn check(&self) {
        let printed = PRINTED.with(|p| p.borrow().clone());
        let secrets = known_secrets(Path::new(env!("CARGO_TARGET_TMPDIR")));
        // A test that deployed must find the passwords it deployed with (else the scan would
        // look for nothing); one that only runs playbooks has none.
        let deployed = printed.iter().any(|o| {
            ["$ pgha deploy ", "$ pgha rotate-certs ", "$ pgha verify "]
                .iter()
                .any(|c| o.starts_with(c))
        });
        assert!(
            !deployed || !secrets.passwords.is_empty(),
            "{}: the secret scan found no secrets.json under {} to scan for",
            self.what,
            env!("CARGO_TARGET_TMPDIR")
        );
        let mut bytes = 0;
        for out in printed.iter() {
            bytes += out.len();
            let cmd = out.lines().next().unwrap_or("");
            if let Some(k) = leaked(out, &secrets) {
                panic!("{}: `{cmd}` printed {k}", self.what);
            }
        }
        eprintln!(
            "{}: secret scan: {} pgha outputs, {bytes} bytes, {} passwords and {} key lines looked for",
            self.what,
            printed.len(),
            secrets.passwords.len(),
            secrets.key_lines.len()
        );
    }
}

impl Drop for SecretScan {
    fn drop(&mut self) {
        if std::thread::panicking() {
            dump_lab_journals();
        } else {
            self.check();
        }
    }
}

/// Journal lines that explain most lab failures (a demotion, a restart Patroni thought due, an
/// etcd member restarting or losing its leader), from every lab host, printed when a lab test
/// fails: CI keeps only the test's output, and the lab is gone once the next test starts.
fn dump_lab_journals() {
    let Ok(hosts) = std::fs::read_dir("/var/lib/pgha/lab/hosts") else {
        return;
    };
    let mut hosts: Vec<String> = hosts
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    hosts.sort();
    let filter = "restart might|pending|demot|promot|Lock owner|switchover|Exception|refused|failsafe|\\bERROR|WARNING|lost leader|elected leader|became leader|Stopping|Started|Failed|FATAL|PANIC";
    for host in hosts {
        let script = format!(
            "journalctl --no-pager -o short-precise --since -30min -u patroni -u etcd -u haproxy -u pgbouncer -u keepalived -u pgbackrest 2>/dev/null | grep -E -i '{filter}' | grep -v -E 'PEER_DID_NOT_RETURN|ConnectionReset' | tail -n 60"
        );
        let out = Command::new("timeout")
            .args([
                "20",
                env!("CARGO_BIN_EXE_pgha"),
                "lab",
                "ssh",
                &host,
                "--",
                "sh",
                "-c",
                &script,
            ])
            .output();
        if let Ok(out) = out {
            eprintln!(
                "---- journal of {host} (filtered, last 60 lines) ----\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}

/// What must never appear in pgha's output.
pub struct Secrets {
    /// Every account password of every `secrets.json` found.
    pub passwords: Vec<String>,
    /// Base64 body lines of every private key found in a state directory.
    pub key_lines: Vec<String>,
}

/// The secrets of every pgha state directory (`.pgha/`) under `root` (three levels deep).
pub fn known_secrets(root: &Path) -> Secrets {
    let mut s = Secrets {
        passwords: Vec::new(),
        key_lines: Vec::new(),
    };
    let mut stack: Vec<(PathBuf, u32)> = vec![(root.to_path_buf(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let in_state = path.components().any(|c| c.as_os_str() == ".pgha");
            if path.is_dir() && !path.is_symlink() {
                if depth < 4 && (in_state || name == ".pgha" || depth < 3) {
                    stack.push((path, depth + 1));
                }
            } else if in_state && name == "secrets.json" {
                let v: serde_json::Value = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or_default();
                if let Some(accounts) = v["accounts"].as_object() {
                    s.passwords.extend(
                        accounts
                            .values()
                            .filter_map(|a| a["password"].as_str().map(str::to_string)),
                    );
                }
            } else if in_state && name.ends_with(".key") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                s.key_lines.extend(
                    text.lines()
                        .filter(|l| !l.starts_with("-----") && l.len() >= 40)
                        .take(2)
                        .map(str::to_string),
                );
            }
        }
    }
    s.passwords.retain(|p| p.len() >= 8);
    s.passwords.sort();
    s.passwords.dedup();
    s
}

/// The kind of secret `out` contains, if any.
pub fn leaked(out: &str, secrets: &Secrets) -> Option<&'static str> {
    if out.contains("PRIVATE KEY") {
        return Some("a private key (PEM header)");
    }
    if out.contains("SCRAM-SHA-256$") {
        return Some("a SCRAM verifier");
    }
    if secrets.passwords.iter().any(|p| out.contains(p.as_str())) {
        return Some("a password from secrets.json");
    }
    if secrets.key_lines.iter().any(|l| out.contains(l.as_str())) {
        return Some("private key material");
    }
    None
}

/// Runs the real binary (plain output, as in CI); what it prints goes to the secret scan.
pub fn pgha(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_pgha"))
        .args(args)
        .env("CI", "true")
        .output()
        .expect("pgha runs");
    let (o, e) = text(&out);
    record(args, &o, &e);
    out
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

/// The JSON lines of a `--json` run's stdout: at least one, and every line valid JSON (an
/// empty output is a failure, not a vacuous pass).
pub fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no JSON line on stdout");
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
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
