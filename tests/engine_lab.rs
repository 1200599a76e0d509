//! The engine on the real lab (root; `#[ignore]`d, .ci/test runs it): the sample playbook applied to the
//! eight lab hosts over real SSH — first run changes, second run reports `changed=0` in one
//! round trip per host, with both transports and with a non-root user through sudo; check
//! mode changes nothing and shows a diff; an unreachable host is named and the others go on.
#![allow(clippy::disallowed_methods)] // runs the real binary

use std::path::PathBuf;
use std::time::{Duration, Instant};

mod common;

use common::{HOSTS, ok, pgha, total};

/// Round trips per host from the recap.
fn round_trips(stderr: &str) -> Vec<(String, u32)> {
    stderr
        .lines()
        .filter(|l| l.contains("round-trips="))
        .map(|l| {
            let host = l.split_whitespace().next().unwrap_or("").to_string();
            let n = l
                .split("round-trips=")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(u32::MAX);
            (host, n)
        })
        .collect()
}

#[test]
#[ignore = "lab: needs root and the lab; .ci/test runs it (cargo test -- --include-ignored)"]
fn sample_playbook_on_the_lab() {
    let _scan = common::lab_test("engine lab test");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let root_inv = dir.join("engine-lab-root.yaml").display().to_string();
    let sudo_inv = dir.join("engine-lab-pgha.yaml").display().to_string();
    ok(&["lab", "up", "--inventory", &root_inv]);
    ok(&["lab", "up", "--inventory", &sudo_inv, "--login", "pgha"]);
    for h in HOSTS {
        ok(&["lab", "ssh", h, "--", "rm", "-rf", "/etc/pgha-sample"]);
    }

    // First run: everything is created.
    let (o, e) = ok(&["run", &root_inv, "sample"]);
    let (_, changed, failed) = total(&o);
    assert_eq!(failed, 0, "{e}");
    assert!(changed >= 8 * 6, "every host gets its files: {o}\n{e}");
    let (content, _) = ok(&["lab", "ssh", "etcd2", "--", "cat", "/etc/pgha-sample/host.conf"]);
    assert!(
        content.contains("name = etcd2") && content.contains("dc = dc1"),
        "{content}"
    );
    let (mode, _) = ok(&[
        "lab",
        "ssh",
        "etcd2",
        "--",
        "stat",
        "-c",
        "%a %U",
        "/etc/pgha-sample/private.key",
    ]);
    assert_eq!(mode.trim(), "600 root");

    // Second run: nothing changes, one round trip per host.
    for transport in ["openssh", "russh"] {
        let (o, e) = ok(&["run", &root_inv, "sample", "--transport", transport]);
        assert_eq!(total(&o).1, 0, "{transport}: second run changed something:\n{e}");
        let trips = round_trips(&e);
        assert_eq!(trips.len(), 8, "{e}");
        for (host, n) in trips {
            assert_eq!(n, 1, "{transport}: {host} took {n} round trips");
        }
    }

    // A non-root login with become (sudo -n) sees the same converged state.
    let (o, e) = ok(&["run", &sudo_inv, "sample"]);
    assert_eq!(total(&o), (64, 0, 0), "{e}");

    // Check mode: shows the drift and its diff, changes nothing.
    ok(&[
        "lab",
        "ssh",
        "node2",
        "--",
        "sh",
        "-c",
        "echo drift > /etc/pgha-sample/cluster.conf",
    ]);
    let (o, e) = ok(&["run", &root_inv, "sample", "--check", "--diff", "--limit", "node2"]);
    assert!(total(&o).1 >= 1, "{e}");
    assert!(e.contains("-drift") && e.contains("+cluster = pgha-lab"), "{e}");
    assert!(!e.contains("not really a key"), "secret content never shown: {e}");
    let (after, _) = ok(&["lab", "ssh", "node2", "--", "cat", "/etc/pgha-sample/cluster.conf"]);
    assert_eq!(after.trim(), "drift", "check mode changed the file");

    // An unreachable host is named; the others converge; after healing, a re-run converges.
    ok(&["lab", "partition", "etcd3"]);
    let out = pgha(&["run", &root_inv, "sample"]);
    ok(&["lab", "heal", "etcd3"]);
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(out.status.code(), Some(1), "{o}\n{e}");
    assert!(e.contains("etcd3") && e.contains("cannot connect"), "{e}");
    assert!(e.contains("UNREACHABLE"), "{e}");
    let (after, _) = ok(&["lab", "ssh", "node2", "--", "cat", "/etc/pgha-sample/cluster.conf"]);
    assert_eq!(after.trim(), "cluster = pgha-lab", "the other hosts were converged");
    let (o, e) = ok(&["run", &root_inv, "sample"]);
    assert_eq!(total(&o).2, 0, "{e}");
    let (o, e) = ok(&["run", &root_inv, "sample"]);
    assert_eq!(total(&o).1, 0, "{e}");
}

/// Ctrl-C: the engine lets running tasks finish, starts no new one, prints the recap and exits
/// 130; a re-run converges.
#[test]
#[ignore = "lab: needs root and the lab; .ci/test runs it (cargo test -- --include-ignored)"]
fn interrupted_run_stops_between_tasks_and_a_rerun_converges() {
    let _scan = common::lab_test("engine lab test");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let inv = dir.join("engine-lab-interrupt.yaml").display().to_string();
    ok(&["lab", "up", "--inventory", &inv]);
    for h in ["node1", "etcd1"] {
        ok(&[
            "lab",
            "ssh",
            h,
            "--",
            "rm",
            "-f",
            "/root/pgha-slow-done",
            "/root/pgha-after",
        ]);
    }
    let playbook = dir.join("slow.yaml");
    std::fs::write(
        &playbook,
        "plays:\n  - name: slow\n    hosts: [node1, etcd1]\n    tasks:\n      - name: slow step\n        command: { sh: \"sleep 3; touch /root/pgha-slow-done\", creates: /root/pgha-slow-done }\n      - name: after\n        file: { path: /root/pgha-after, content: \"x\\n\" }\n",
    )
    .expect("playbook");
    let pb = playbook.display().to_string();
    // -v prints each command as it is sent (`HH:MM:SS host $ cmd`): SIGINT once both hosts have started the slow
    // step (3 s long), so the interrupt lands inside a running task, not before it.
    let run = common::stream::spawn(&["run", &inv, &pb, "-v"], &[]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut started: Vec<&str> = Vec::new();
    while started.len() < 2 {
        let line = run
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("both hosts start the slow step within 120 s");
        for h in ["node1", "etcd1"] {
            if line.split_whitespace().any(|w| w == h) && line.contains("sleep 3") && !started.contains(&h) {
                started.push(h);
            }
        }
    }
    let pid = i32::try_from(run.pid()).expect("pid fits");
    // SAFETY: signalling a child process this test started, by its PID.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let (status, o, e) = run.finish();
    assert_eq!(status.code(), Some(130), "{o}\n{e}");
    assert!(
        e.contains("interrupted") && o.contains("total: "),
        "recap printed: {o}\n{e}"
    );
    for h in ["node1", "etcd1"] {
        let (done, _) = ok(&[
            "lab",
            "ssh",
            h,
            "--",
            "sh",
            "-c",
            "ls /root/pgha-slow-done /root/pgha-after 2>/dev/null | wc -l",
        ]);
        assert_eq!(
            done.trim(),
            "1",
            "{h}: the running task finished, the next one never started"
        );
    }
    let (o, e) = ok(&["run", &inv, &pb]);
    assert_eq!(total(&o).2, 0, "{e}");
    let (o, e) = ok(&["run", &inv, &pb]);
    assert_eq!(total(&o).1, 0, "a re-run after the interruption converged: {e}");
}
