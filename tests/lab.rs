//! End-to-end test of `pgha lab` with the real binary, as root, on a Debian machine.
//! `#[ignore]`d (listed as ignored by a plain `cargo test`); `.ci/test` runs it with
//! `--include-ignored`, and then a missing prerequisite fails it. One test function runs the whole sequence so the lab is built once:
//! up → SSH to every host with strict host key checking → systemd running → offline apt install
//! resolves → stop/start keeps the disk → partition/heal → a second up changes nothing → down
//! leaves nothing. It prints cold/warm `up` times and the machines' memory.
//!
//! `lab_of_any_shape` boots 16 machines from tests/inventories/lab-16.yaml, shrinks the lab to
//! lab-8.yaml (the removed machines leave no namespace, veth, mount, directory or process; the
//! kept ones keep their address and uptime), grows it back, turns it into the default lab, and
//! takes it down. The two lab tests hold one mutex: there is one lab.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod common;

use common::HOSTS;

fn lab_dir() -> String {
    std::env::var("PGHA_LAB_DIR").unwrap_or_else(|_| "/var/lib/pgha/lab".to_string())
}

// Integration tests run the real binary (STYLE.md habit 11).
#[allow(clippy::disallowed_methods)]
fn pgha(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgha"))
        .args(args)
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .output()
        .expect("the pgha binary runs")
}

fn ok(args: &[&str]) -> Output {
    let out = pgha(args);
    assert!(
        out.status.success(),
        "pgha {} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[allow(clippy::disallowed_methods)]
fn sh(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"))
}

/// Address of a host from the generated inventory.
fn address(inventory: &str, host: &str) -> String {
    let line = inventory
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{host}: ")))
        .expect("host in inventory");
    let rest = &line[line.find("address: ").expect("address") + 9..];
    rest.split(',').next().expect("address value").to_string()
}

/// ssh straight to an address with the lab key and strict host key checking (not via `lab ssh`).
fn ssh_direct(addr: &str, user: &str, cmd: &str) -> Output {
    let dir = lab_dir();
    sh(
        "ssh",
        &[
            "-i",
            &format!("{dir}/ssh/id_ed25519"),
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            &format!("UserKnownHostsFile={dir}/ssh/known_hosts"),
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=3",
            &format!("{user}@{addr}"),
            cmd,
        ],
    )
}

fn mem_available_kib() -> u64 {
    let m = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    m.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("MemAvailable")
}

fn status_memory_mib() -> u64 {
    let out = ok(&["lab", "status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json is JSON");
    v.as_array()
        .expect("array")
        .iter()
        .filter_map(|h| h["memory_kib"].as_u64())
        .sum::<u64>()
        / 1024
}

/// What the lab might leave behind: namespaces, links, mounts, processes.
fn leftovers() -> Vec<String> {
    let mut left = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/run/netns") {
        left.extend(
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("pgha-"))
                .map(|n| format!("netns {n}")),
        );
    }
    if let Ok(rd) = std::fs::read_dir("/sys/class/net") {
        left.extend(
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("pl-") || n == "pghalab0")
                .map(|n| format!("link {n}")),
        );
    }
    for cg in [
        "/sys/fs/cgroup/pgha-lab",
        "/sys/fs/cgroup/systemd/pgha-lab",
        "/sys/fs/cgroup/unified/pgha-lab",
    ] {
        if Path::new(cg).exists() {
            left.push(format!("cgroup {cg}"));
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let dir = lab_dir();
    left.extend(
        mounts
            .lines()
            .filter(|l| l.contains(&dir) || l.contains("/run/netns/pgha-"))
            .map(|l| format!("mount {l}")),
    );
    for e in std::fs::read_dir("/proc").expect("proc").flatten() {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let c = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if c.starts_with("systemd-nspawn") && c.contains(&dir) {
            left.push(format!("process {} {c}", e.file_name().to_string_lossy()));
        }
    }
    left
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Takes the lab down if the test fails half-way, so CI machines are left clean.
struct DownOnDrop;

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = pgha(&["lab", "down"]);
        }
    }
}

/// One lab on the machine: the lab tests of this file run one at a time.
static LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn lab_lock() -> std::sync::MutexGuard<'static, ()> {
    LAB.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
#[ignore = "lab: needs root and the lab; .ci/test runs it (cargo test -- --include-ignored)"]
fn lab_end_to_end() {
    assert_ne!(
        std::env::var("PGHA_LAB_TESTS").as_deref(),
        Ok("0"),
        "lab_end_to_end: PGHA_LAB_TESTS=0, yet asked to run (--include-ignored); without that flag it is listed as ignored"
    );
    let _lab = lab_lock();
    // Prerequisites: a lab test that runs fails without them, it does not skip.
    assert_eq!(text(&sh("id", &["-u"])), "0", "the lab tests need root");
    for p in ["debootstrap", "systemd-nspawn", "ip", "ssh"] {
        assert!(
            sh("sh", &["-c", &format!("command -v {p}")]).status.success(),
            "{p} is not installed"
        );
    }
    let release = std::env::var("PGHA_LAB_RELEASE").unwrap_or_else(|_| "trixie".to_string());
    let pg = if release == "bookworm" {
        "postgresql-15"
    } else {
        "postgresql-17"
    };
    let _down_on_failure = DownOnDrop;
    // From no lab at all (another test binary may have left its cluster up): hosts fresh from
    // the base image, nothing installed yet.
    ok(&["lab", "down"]);
    let cold_base = !Path::new(&format!("{}/base-{release}/.pgha-lab-base", lab_dir())).exists();
    let mem_before = mem_available_kib();

    // lab up, first time (cold if the base image was not cached).
    let t = Instant::now();
    ok(&["lab", "up", "--release", &release]);
    let first_up = t.elapsed();
    let inventory = std::fs::read_to_string(Path::new(env!("CARGO_TARGET_TMPDIR")).join("inventory/lab.yaml"))
        .expect("inventory written");
    assert!(inventory.starts_with("# Generated"), "inventory has a generated header");

    // Every host: SSH with the lab key and strict host key checking, as root and as pgha with sudo.
    let mut degraded = Vec::new();
    for h in HOSTS {
        let addr = address(&inventory, h);
        let o = ssh_direct(&addr, "root", "hostname");
        assert!(
            o.status.success(),
            "ssh root@{h}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(text(&o), h, "hostname of {h}");
        let o = ssh_direct(&addr, "pgha", "sudo -n id -u");
        assert_eq!(
            text(&o),
            "0",
            "pgha sudo on {h}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        // systemd: running, or degraded with the failed units named.
        let o = ssh_direct(&addr, "root", "timeout 120 systemctl is-system-running --wait");
        match text(&o).as_str() {
            "running" => {}
            "degraded" => {
                let failed = text(&ssh_direct(&addr, "root", "systemctl --failed --plain --no-legend"));
                degraded.push(format!("{h}: {failed}"));
            }
            other => panic!("systemd on {h} is {other:?}"),
        }
    }
    assert!(degraded.is_empty(), "degraded hosts: {degraded:?}");
    let ids: std::collections::BTreeSet<String> = HOSTS
        .iter()
        .map(|h| text(&ok(&["lab", "ssh", h, "--", "cat", "/etc/machine-id"])))
        .collect();
    assert_eq!(ids.len(), HOSTS.len(), "machine-ids are unique");
    let mem_booted_pss = status_memory_mib();
    let mem_booted_host = mem_before.saturating_sub(mem_available_kib()) / 1024;

    // Packages resolve offline inside a host (no route out of the lab).
    let o = pgha(&["lab", "ssh", "node1", "--", "ip", "route", "get", "192.0.2.1"]);
    assert!(!o.status.success(), "lab hosts must have no route out");
    let sim = format!("apt-get install -s {pg} patroni etcd-server haproxy pgbouncer");
    let o = ok(&["lab", "ssh", "node1", "--", &sim]);
    assert!(text(&o).contains(&format!("Inst {pg} ")), "apt-get -s resolves {pg}");
    let o = ok(&[
        "lab",
        "ssh",
        "node1",
        "--",
        "apt-get",
        "install",
        "-y",
        "-q",
        "--no-download",
        "-o",
        "Debug::NoLocking=1",
        "-s",
        "curl",
    ]);
    assert!(o.status.success());

    // Exit codes pass through `lab ssh`.
    assert_eq!(pgha(&["lab", "ssh", "etcd1", "--", "exit", "7"]).status.code(), Some(7));

    // stop (a crash) / start keeps a file written before the stop.
    // One word after `--` is a shell command line (as with ssh); several words are an argv.
    ok(&["lab", "ssh", "node2", "--", "echo before-crash > /root/marker && sync"]);
    assert_eq!(
        text(&ok(&["lab", "ssh", "node2", "--", "echo", "a > b"])),
        "a > b",
        "argv words reach the host unchanged"
    );
    ok(&["lab", "stop", "node2"]);
    assert!(
        !pgha(&["lab", "ssh", "node2", "--", "true"]).status.success(),
        "node2 is down after stop"
    );
    let st = text(&ok(&["lab", "status"]));
    assert!(
        st.lines().any(|l| l.starts_with("node2") && l.contains("stopped")),
        "status says stopped:\n{st}"
    );
    ok(&["lab", "start", "node2"]);
    assert_eq!(
        text(&ok(&["lab", "ssh", "node2", "--", "cat", "/root/marker"])),
        "before-crash"
    );

    // partition / heal cut and restore reachability, both from the controller and between hosts.
    let etcd3 = address(&inventory, "etcd3");
    ok(&["lab", "partition", "etcd3"]);
    assert!(
        !ssh_direct(&etcd3, "root", "true").status.success(),
        "etcd3 unreachable when partitioned"
    );
    let probe = format!("timeout 3 bash -c '</dev/tcp/{etcd3}/22'");
    assert!(
        !pgha(&["lab", "ssh", "node1", "--", &probe]).status.success(),
        "etcd3 unreachable from node1 when partitioned"
    );
    ok(&["lab", "heal", "etcd3"]);
    assert!(
        pgha(&["lab", "ssh", "node1", "--", &probe]).status.success(),
        "etcd3 reachable from node1 after heal"
    );
    let mut healed = false;
    for _ in 0..20 {
        if ssh_direct(&etcd3, "root", "true").status.success() {
            healed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(healed, "etcd3 reachable again after heal");

    // A second up is fast and changes nothing.
    let machines = || -> Vec<String> {
        HOSTS
            .iter()
            .map(|h| std::fs::read_to_string(format!("{}/hosts/{h}/machine.json", lab_dir())).expect("machine.json"))
            .collect()
    };
    let pids_before = machines();
    let t = Instant::now();
    let o = ok(&["lab", "up"]);
    let warm_up = t.elapsed();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("nothing changed"), "second up changed something:\n{err}");
    assert!(warm_up < Duration::from_secs(30), "second up took {}", secs(warm_up));
    assert_eq!(machines(), pids_before, "second up restarted a machine");

    // Optional: PostgreSQL installed and running on the three nodes, for the memory figure.
    let mut mem_pg = None;
    if std::env::var("PGHA_LAB_MEASURE_PG").as_deref() == Ok("1") {
        for n in ["node1", "node2", "node3"] {
            ok(&[
                "lab",
                "ssh",
                n,
                "--",
                "DEBIAN_FRONTEND=noninteractive",
                "apt-get",
                "install",
                "-y",
                "-q",
                pg,
            ]);
        }
        let major = &pg["postgresql-".len()..];
        for n in ["node1", "node2", "node3"] {
            let unit = format!("postgresql@{major}-main");
            assert_eq!(
                text(&ok(&["lab", "ssh", n, "--", "systemctl", "is-active", &unit])),
                "active",
                "{unit} on {n}"
            );
        }
        std::thread::sleep(Duration::from_secs(3));
        mem_pg = Some((
            status_memory_mib(),
            mem_before.saturating_sub(mem_available_kib()) / 1024,
        ));
    }

    // down leaves nothing.
    ok(&["lab", "down"]);
    let left = leftovers();
    assert!(left.is_empty(), "lab down left: {left:#?}");

    eprintln!("lab figures ({release}):");
    eprintln!(
        "  first up: {} ({})",
        secs(first_up),
        if cold_base {
            "cold: base image built"
        } else {
            "base image cached"
        }
    );
    eprintln!("  second up: {}", secs(warm_up));
    eprintln!(
        "  8 hosts booted: {mem_booted_pss} MiB PSS of their processes; host MemAvailable dropped {mem_booted_host} MiB"
    );
    if let Some((pss, host)) = mem_pg {
        eprintln!("  with {pg} running on node1..3: {pss} MiB PSS; host MemAvailable dropped {host} MiB");
    }
}

fn fixture(name: &str) -> String {
    format!("{}/tests/inventories/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A host's name and address in a written lab inventory, read with pgha's own loader.
fn hosts_of(inventory: &Path) -> Vec<(String, String)> {
    let inv = pgha::inventory::load(inventory)
        .unwrap_or_else(|e| panic!("{}: {e}", inventory.display()))
        .inventory;
    inv.hosts
        .iter()
        .map(|h| (h.name.to_string(), h.address.to_string()))
        .collect()
}

fn machine_record(host: &str) -> String {
    std::fs::read_to_string(format!("{}/hosts/{host}/machine.json", lab_dir()))
        .unwrap_or_else(|e| panic!("machine.json of {host}: {e}"))
}

/// What is left of one lab host on the controller: namespace, veth, directory, mounts, process.
fn traces_of(host: &str) -> Vec<String> {
    let dir = format!("{}/hosts/{host}", lab_dir());
    let mut left = Vec::new();
    if Path::new(&format!("/run/netns/pgha-{host}")).exists() {
        left.push(format!("netns pgha-{host}"));
    }
    if Path::new(&format!("/sys/class/net/pl-{host}")).exists() {
        left.push(format!("link pl-{host}"));
    }
    if Path::new(&dir).exists() {
        left.push(format!("directory {dir}"));
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    left.extend(
        mounts
            .lines()
            .filter(|l| l.contains(&format!("{dir}/")) || l.contains(&format!("/run/netns/pgha-{host} ")))
            .map(|l| format!("mount {l}")),
    );
    for e in std::fs::read_dir("/proc").expect("proc").flatten() {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let c = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if c.starts_with("systemd-nspawn") && c.contains(&format!("{dir}/root")) {
            left.push(format!("process {} {c}", e.file_name().to_string_lossy()));
        }
    }
    left
}

/// `ssh root@ADDR hostname` to every host at once (lab key, strict host keys).
fn hostnames(hosts: &[(String, String)]) -> Vec<Output> {
    std::thread::scope(|s| {
        let handles: Vec<_> = hosts
            .iter()
            .map(|(_, addr)| s.spawn(move || ssh_direct(addr, "root", "hostname")))
            .collect();
        handles.into_iter().map(|h| h.join().expect("ssh thread")).collect()
    })
}

/// Every host answers SSH (lab key, strict host keys) with its own hostname.
fn all_answer(hosts: &[(String, String)]) {
    for ((name, addr), o) in hosts.iter().zip(hostnames(hosts)) {
        assert!(o.status.success(), "ssh root@{name} ({addr}): {}", stderr(&o));
        assert_eq!(text(&o), *name, "hostname of {addr}");
    }
}

#[test]
#[ignore = "lab: needs root and the lab; .ci/test runs it (cargo test -- --include-ignored)"]
fn lab_of_any_shape() {
    assert_ne!(
        std::env::var("PGHA_LAB_TESTS").as_deref(),
        Ok("0"),
        "lab_of_any_shape: PGHA_LAB_TESTS=0, yet asked to run (--include-ignored); without that flag it is listed as ignored"
    );
    let _lab = lab_lock();
    assert_eq!(text(&sh("id", &["-u"])), "0", "the lab tests need root");
    let _down_on_failure = DownOnDrop;
    ok(&["lab", "down"]);
    let release = std::env::var("PGHA_LAB_RELEASE").unwrap_or_else(|_| "trixie".to_string());
    let inv_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("inventory/shape.yaml");
    let inv = inv_path.to_str().expect("utf-8 path");
    let (sixteen, eight) = (fixture("lab-16.yaml"), fixture("lab-8.yaml"));
    let mem_before = mem_available_kib();

    // 16 machines from an inventory, booted under `flock` (as a CI job or a user serializing
    // lab runs would): pgha inherits the lock's descriptor, and the machines must not, or the
    // lock stays held for as long as the lab is up.
    let lock = Path::new(env!("CARGO_TARGET_TMPDIR")).join("shape.lock");
    let lock = lock.to_str().expect("utf-8 path");
    let t = Instant::now();
    let pgha_bin = env!("CARGO_BIN_EXE_pgha");
    let args = [
        "lab",
        "up",
        "--release",
        &release,
        "--from",
        &sixteen,
        "--inventory",
        inv,
    ];
    let mut under_lock = vec![lock, pgha_bin];
    under_lock.extend(args);
    let out = sh("flock", &under_lock);
    assert!(
        out.status.success(),
        "flock pgha lab up failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let boot16 = t.elapsed();
    assert!(
        sh("flock", &["-n", lock, "true"]).status.success(),
        "the lab's machines kept the caller's lock descriptor: the lock is still held after `pgha lab up` returned"
    );
    eprintln!("  16 machines from lab-16.yaml: {}", secs(boot16));
    let full = hosts_of(&inv_path);
    assert_eq!(full.len(), 16, "one machine per host of lab-16.yaml");
    let loaded = pgha::inventory::load(&inv_path).expect("loads").inventory;
    assert_eq!(loaded.cluster_name, "shape16", "cluster name copied");
    assert_eq!(loaded.patroni.synchronous_node_count, 2, "patroni settings copied");
    assert_eq!(loaded.pgbouncer.default_pool_size, 15, "pgbouncer settings copied");
    assert_eq!(loaded.postgres.databases.len(), 3, "databases copied");
    assert!(
        full.iter().all(|(_, a)| a.starts_with("10.213.77.")),
        "addresses are the lab's: {full:?}"
    );
    let v = ok(&["validate", inv]);
    assert!(text(&v).contains("16 hosts"), "pgha validate accepts it: {}", text(&v));
    all_answer(&full);
    let etc_hosts = text(&ok(&["lab", "ssh", "edge3", "--", "cat", "/etc/hosts"]));
    assert!(
        full.iter().all(|(n, a)| etc_hosts.contains(&format!("{a}\t{n}"))),
        "{etc_hosts}"
    );
    let st: serde_json::Value =
        serde_json::from_slice(&ok(&["lab", "status", "--json"]).stdout).expect("status --json");
    let st = st.as_array().expect("array");
    assert_eq!(st.len(), 16);
    assert!(
        st.iter().all(|h| h["state"] == "running" && h["ssh"] == true),
        "all 16 running: {st:?}"
    );
    let pss16 = status_memory_mib();
    let host16 = mem_before.saturating_sub(mem_available_kib()) / 1024;

    // The same shape again: seconds, nothing changed, nothing restarted.
    let records: Vec<String> = full.iter().map(|(n, _)| machine_record(n)).collect();
    let t = Instant::now();
    let o = ok(&["lab", "up", "--from", &sixteen, "--inventory", inv]);
    let warm16 = t.elapsed();
    eprintln!("  warm up of 16: {}", secs(warm16));
    assert!(
        stderr(&o).contains("nothing changed"),
        "warm up changed something:\n{}",
        stderr(&o)
    );
    assert!(warm16 < Duration::from_secs(30), "warm up took {}", secs(warm16));
    assert_eq!(full.iter().map(|(n, _)| machine_record(n)).collect::<Vec<_>>(), records);

    // Shrink to eight: the others are gone without a trace; the kept keep address and uptime.
    let t = Instant::now();
    let o = ok(&["lab", "up", "--from", &eight, "--inventory", inv]);
    let shrink = t.elapsed();
    eprintln!("  shrink 16 -> 8: {}", secs(shrink));
    assert!(stderr(&o).contains("8 removed"), "{}", stderr(&o));
    let small = hosts_of(&inv_path);
    assert_eq!(small.len(), 8);
    for (name, addr) in &small {
        assert!(
            full.contains(&(name.clone(), addr.clone())),
            "{name} kept its address {addr}"
        );
        let i = full.iter().position(|(n, _)| n == name).expect("was there");
        assert_eq!(machine_record(name), records[i], "{name} was not restarted");
    }
    let removed: Vec<(String, String)> = full.iter().filter(|h| !small.contains(h)).cloned().collect();
    assert_eq!(removed.len(), 8);
    for ((name, addr), o) in removed.iter().zip(hostnames(&removed)) {
        let left = traces_of(name);
        assert!(left.is_empty(), "{name} removed but left: {left:#?}");
        assert!(!o.status.success(), "{name} ({addr}) still answers");
    }
    all_answer(&small);
    let etc_hosts = text(&ok(&["lab", "ssh", "node1", "--", "cat", "/etc/hosts"]));
    assert!(
        !etc_hosts.contains("edge3"),
        "removed hosts leave /etc/hosts: {etc_hosts}"
    );
    assert!(ok(&["validate", inv]).status.success());

    // Grow back to sixteen: eight boots, the kept eight untouched.
    let kept: Vec<String> = small.iter().map(|(n, _)| machine_record(n)).collect();
    let t = Instant::now();
    let o = ok(&["lab", "up", "--from", &sixteen, "--inventory", inv]);
    let grow = t.elapsed();
    eprintln!("  grow 8 -> 16: {}", secs(grow));
    assert!(stderr(&o).contains("8 booted"), "{}", stderr(&o));
    assert_eq!(small.iter().map(|(n, _)| machine_record(n)).collect::<Vec<_>>(), kept);
    let regrown = hosts_of(&inv_path);
    assert_eq!(regrown.len(), 16);
    all_answer(&regrown);

    // Plain `up` turns it into the default eight (node1..3 and etcd1..3 kept).
    let t = Instant::now();
    ok(&["lab", "up", "--inventory", inv]);
    eprintln!("  16 -> the default eight: {}", secs(t.elapsed()));
    let default = hosts_of(&inv_path);
    let mut names: Vec<&str> = default.iter().map(|(n, _)| n.as_str()).collect();
    let mut want = common::HOSTS.to_vec();
    names.sort_unstable();
    want.sort_unstable();
    assert_eq!(names, want, "the default lab again");
    assert!(traces_of("edge3").is_empty() && traces_of("haproxy1").is_empty());
    all_answer(&default);

    let t = Instant::now();
    ok(&["lab", "down"]);
    let down = t.elapsed();
    let left = leftovers();
    assert!(left.is_empty(), "lab down left: {left:#?}");

    eprintln!("lab of any shape ({release}, base image cached):");
    eprintln!("  16 machines from lab-16.yaml: {}", secs(boot16));
    eprintln!("  warm up of 16: {}", secs(warm16));
    eprintln!(
        "  shrink 16 -> 8: {}; grow 8 -> 16: {}; down: {}",
        secs(shrink),
        secs(grow),
        secs(down)
    );
    eprintln!("  16 booted: {pss16} MiB PSS of their processes; host MemAvailable dropped {host16} MiB");
}

/// A host name too long for the lab's interface names is refused before anything is created,
/// with the file, line and field, exit code 3 (needs neither root nor a lab).
#[test]
fn lab_up_from_refuses_names_the_lab_cannot_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "cluster: {name: t}\nhosts:\n  a: {address: 10.0.0.1, dc: x, roles: [postgres, etcd, haproxy, pgbouncer]}\n  much-too-long-name: {address: 10.0.0.2, dc: x, roles: [postgres]}\n",
    )
    .expect("write");
    let o = pgha(&[
        "lab",
        "up",
        "--from",
        bad.to_str().expect("utf-8"),
        "--inventory",
        "/dev/null/x",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("bad.yaml:4:") && e.contains("hosts.much-too-long-name"),
        "{e}"
    );
    assert!(e.contains("pl-much-too-long-name") && e.contains("at most 12"), "{e}");
    let o = pgha(&["lab", "up", "--from", "/nonexistent/inventory.yaml"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
}
