//! `pgha deploy` on bad days, on bare lab hosts (root; `#[ignore]`d, .ci/test runs it): a host down before
//! the run (clear error naming it, nothing changed anywhere), Ctrl-C in the middle (exit 130, a
//! recap), a host killed in the middle (its failure named, the other hosts finish), then a
//! re-run once it is back converges and `pgha verify` passes. Across every output collected —
//! plain lines, `--json`, `plan --diff` of files holding secrets, error messages — no password
//! and no private key appears.
#![allow(clippy::disallowed_methods)] // runs the real binary and signals it like a user

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{ok, on, pgha, text};

/// Runs `pgha deploy` with plain output; when a progress line contains `trigger`, runs `act`
/// (with the child's PID). Returns (exit code, stdout, stderr).
fn deploy_with(inv: &str, trigger: &str, act: impl FnOnce(u32)) -> (i32, String, String) {
    // Progress lines and the recap go to stderr, the total line to stdout.
    let run = common::stream::spawn(&["deploy", inv], &[]);
    let pid = run.pid();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut act = Some(act);
    while let Ok(line) = run
        .lines
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
    {
        if line.contains(trigger)
            && let Some(a) = act.take()
        {
            a(pid);
        }
    }
    let (status, out, err) = run.finish();
    assert!(act.is_none(), "never saw {trigger:?} in:\n{out}\n{err}");
    (status.code().unwrap_or(-1), out, err)
}

fn recap_line<'a>(out: &'a str, host: &str) -> &'a str {
    out.lines()
        .skip_while(|l| !l.starts_with("RECAP"))
        .find(|l| l.split_whitespace().next() == Some(host))
        .unwrap_or_else(|| panic!("no recap line for {host} in:\n{out}"))
}

#[test]
#[ignore = "lab: needs root and the lab; .ci/test runs it (cargo test -- --include-ignored)"]
fn deploy_survives_a_host_down_ctrl_c_and_a_host_killed_mid_run() {
    let _scan = common::lab_test("deploy-under-faults lab test");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("faults");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let inv_path = dir.join("faults-lab.yaml");
    let inv = inv_path.display().to_string();
    ok(&["lab", "down"]);
    ok(&["lab", "up", "--inventory", &inv]);
    let mut printed = String::new();

    // 1. A host down before the run: named, and nothing changed on any host.
    ok(&["lab", "stop", "node3"]);
    let out = pgha(&["deploy", &inv]);
    let (o, e) = text(&out);
    printed.push_str(&o);
    printed.push_str(&e);
    assert_eq!(out.status.code(), Some(1), "{o}\n{e}");
    assert!(e.contains("node3") && e.contains("nothing was changed"), "{e}");
    assert_eq!(
        on(
            "node1",
            &["sh", "-c", "test -e /etc/pgha && echo touched || echo untouched"]
        ),
        "untouched"
    );
    ok(&["lab", "start", "node3"]);

    // 2. Ctrl-C in the middle: stops between tasks, exit 130 with a recap.
    let (code, o, e) = deploy_with(&inv, "PLAY etcd health", |pid| {
        let _ = Command::new("kill").args(["-INT", &pid.to_string()]).status();
    });
    printed.push_str(&o);
    printed.push_str(&e);
    assert_eq!(code, 130, "{o}\n{e}");
    assert!(e.contains("RECAP"), "a recap after Ctrl-C: {e}");
    assert!(!e.contains("PLAY pgbouncer"), "it stopped before the end: {e}");

    // 3. A host killed in the middle: the failure names it, the others finish their plays.
    let (code, o, e) = deploy_with(&inv, "PLAY other PostgreSQL nodes", |_| {
        ok(&["lab", "stop", "node3"]);
    });
    printed.push_str(&o);
    printed.push_str(&e);
    assert_eq!(code, 1, "{o}\n{e}");
    assert!(recap_line(&e, "node3").contains("failed=1"), "{e}");
    for h in ["node1", "node2", "etcd1", "haproxy", "pgbouncer"] {
        assert!(recap_line(&e, h).contains("failed=0"), "{h} unharmed:\n{e}");
    }
    assert!(e.contains("PLAY pgbouncer"), "the other hosts went on to the end: {e}");
    assert!(
        o.lines()
            .chain(e.lines())
            .any(|l| l.contains("node3") && (l.contains("failed") || l.contains("SSH"))),
        "the error names node3:\n{o}\n{e}"
    );

    // 4. Back, a re-run converges (JSON output this time) and the cluster verifies.
    ok(&["lab", "start", "node3"]);
    let (o, e) = ok(&["deploy", &inv, "--json"]);
    printed.push_str(&o);
    printed.push_str(&e);
    let events = common::json_lines(&o);
    assert!(events.len() > 10, "a deploy reports its tasks as JSON lines: {o}");
    let (o, e) = ok(&["verify", &inv]);
    printed.push_str(&o);
    printed.push_str(&e);
    assert!(o.contains("verify: all 7 checks passed"), "{o}");

    // 5. Diffs of files holding secrets are masked: a new application user changes the
    // PgBouncer auth file and the bootstrap SQL (SCRAM verifiers).
    let mut text_inv = std::fs::read_to_string(&inv_path).expect("inventory");
    text_inv = text_inv.replacen("    - name: app\n", "    - name: app\n    - name: reporting\n", 1);
    std::fs::write(&inv_path, &text_inv).expect("inventory");
    let (o, e) = ok(&["plan", &inv]);
    printed.push_str(&o);
    printed.push_str(&e);
    assert!(o.contains("userlist.txt") || e.contains("userlist.txt"), "{o}\n{e}");
    let (o, e) = ok(&["deploy", &inv, "--json", "-v"]);
    printed.push_str(&o);
    printed.push_str(&e);
    let (o, e) = ok(&["uri", &inv, "--database", "app"]);
    printed.push_str(&o);
    printed.push_str(&e);

    // No password, no private key, anywhere in what pgha printed.
    let secrets: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(".pgha/secrets.json")).expect("secrets")).expect("json");
    let accounts = secrets["accounts"].as_object().expect("accounts");
    assert!(accounts.len() >= 6, "{accounts:?}");
    for (name, acc) in accounts {
        let pw = acc["password"].as_str().expect("password");
        assert!(pw.len() >= 16);
        assert!(!printed.contains(pw), "the password of {name} was printed");
    }
    assert!(!printed.contains("PRIVATE KEY"), "a private key was printed");
    eprintln!("{} bytes of pgha output checked for secrets", printed.len());
    ok(&["lab", "down"]);
}
