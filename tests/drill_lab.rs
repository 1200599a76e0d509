//! The failure drills on the lab (root; `#[ignore]`d, .ci/test runs it), run the way an
//! operator would: the lab cluster (deployed first when `pgha verify` does not pass on it), then
//! `pgha drill … --yes --json` for failover (leader crash), quorum-loss (two of three etcd
//! members down) and partition (leader cut off), each under a writer through PgBouncer. Every
//! drill: no acknowledged row lost, never two primaries, no interleaved writes, and
//! `pgha verify` passes afterwards. Failover: RW back within the code's own worst case, the old
//! leader rejoins. Quorum loss: RW refused while quorum is lost, RO served, RW back after.
//! Partition: a new leader elsewhere, the old one stops taking writes within the TTL.
//!
//! The drill's report is not the only evidence: during each drill the test runs its own
//! writer (psql on the controller through PgBouncer, verify-full, one connection per insert,
//! recording which ids were acknowledged) and its own sampler (`pg_is_in_recovery()` on every
//! node, all at once, every half second); afterwards it counts the acknowledged ids on the new
//! primary itself. The failover drill also runs through the real-host path (lab detection off:
//! `PGHA_LAB_DIR` pointing nowhere), where Patroni is SIGKILLed and must stay down until the
//! drill brings it back, and once with pgha itself SIGKILLed mid-drill, where the host's
//! dead-man timer brings Patroni back. `pgha verify` must fail, naming what, when a replica's
//! Patroni is stopped, when the RW server is in HAProxy maintenance, and when PgBouncer serves
//! a certificate the cluster's CA did not issue.
#![allow(clippy::disallowed_methods)] // runs the real binary, psql and openssl

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::{NODES, ok, on, pgha, text};

/// The lab's PostgreSQL nodes, by their own answer: `(host, in recovery)` for those that answer
/// within 3 s (a crashed or cut-off machine does not).
fn recovery_states() -> Vec<(String, bool)> {
    let handles: Vec<_> = NODES
        .iter()
        .map(|h| {
            std::thread::spawn(move || {
                let out = Command::new("timeout")
                    .args(["3", env!("CARGO_BIN_EXE_pgha"), "lab", "ssh", h, "--"])
                    .args(["runuser", "-u", "postgres", "--", "psql", "-XtAc", "select pg_is_in_recovery()"])
                    .output()
                    .ok()?;
                let t = String::from_utf8_lossy(&out.stdout).trim().to_string();
                (out.status.success() && (t == "t" || t == "f")).then(|| (h.to_string(), t == "t"))
            })
        })
        .collect();
    handles.into_iter().filter_map(|h| h.join().ok().flatten()).collect()
}

/// The one node that answers as a primary now.
fn primary_now() -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let primaries: Vec<String> = recovery_states().into_iter().filter(|(_, r)| !r).map(|(h, _)| h).collect();
        if primaries.len() == 1 {
            return primaries[0].clone();
        }
        assert!(Instant::now() < deadline, "no single primary for 60 s: {primaries:?}");
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The test's own witnesses of a drill: a writer through PgBouncer and a sampler of every node.
struct Oracle {
    drill: &'static str,
    stop: Arc<AtomicBool>,
    writer: JoinHandle<(Vec<u64>, u64)>,
    sampler: JoinHandle<Vec<(f64, Vec<String>)>>,
    started: Instant,
}

impl Oracle {
    fn start(drill: &'static str, uri: &str, password: &str) -> Oracle {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let (flag, uri, password) = (stop.clone(), uri.to_string(), password.to_string());
        let writer = std::thread::spawn(move || {
            let (mut acked, mut tried) = (Vec::new(), 0u64);
            while !flag.load(Ordering::SeqCst) {
                tried += 1;
                let sql = format!("insert into drill_oracle (drill, id) values ('{drill}', {tried}) returning id");
                let out = Command::new("timeout")
                    // -q: no `INSERT 0 1` after the returned id.
                    .args(["10", "psql", &uri, "-XqtAc", &sql])
                    .env("PGPASSWORD", &password)
                    .env("PGCONNECT_TIMEOUT", "3")
                    .output();
                if let Ok(o) = out
                    && o.status.success()
                    && String::from_utf8_lossy(&o.stdout).trim() == tried.to_string()
                {
                    acked.push(tried);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            (acked, tried)
        });
        let flag = stop.clone();
        let sampler = std::thread::spawn(move || {
            let mut rounds = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                let at = started.elapsed().as_secs_f64();
                let primaries: Vec<String> =
                    recovery_states().into_iter().filter(|(_, r)| !r).map(|(h, _)| h).collect();
                rounds.push((at, primaries));
                std::thread::sleep(Duration::from_millis(500));
            }
            rounds
        });
        Oracle {
            drill,
            stop,
            writer,
            sampler,
            started,
        }
    }

    /// Stops both, then checks on the primary itself that every acknowledged id is there and,
    /// unless `isolated_overlap` (a partition: the cut-off leader may still call itself primary
    /// until it demotes, unreachable by clients), that no round saw two primaries.
    fn finish(self, isolated_overlap: bool) {
        self.stop.store(true, Ordering::SeqCst);
        let (acked, tried) = self.writer.join().expect("writer");
        let rounds = self.sampler.join().expect("sampler");
        let primary = primary_now();
        let present: std::collections::BTreeSet<u64> = on(
            &primary,
            &[
                "runuser", "-u", "postgres", "--", "psql", "-d", "app", "-XtAc",
                &format!("select id from drill_oracle where drill = '{}'", self.drill),
            ],
        )
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
        let lost: Vec<&u64> = acked.iter().filter(|id| !present.contains(id)).collect();
        let two: Vec<&(f64, Vec<String>)> = rounds.iter().filter(|(_, p)| p.len() > 1).collect();
        eprintln!(
            "oracle {}: {tried} inserts tried, {} acknowledged, {} present on {primary}, {} lost; \
             {} sampling rounds in {:.0} s, {} with two primaries",
            self.drill,
            acked.len(),
            present.len(),
            lost.len(),
            rounds.len(),
            self.started.elapsed().as_secs_f64(),
            two.len()
        );
        assert!(acked.len() > 10, "{}: the oracle's writer got {} acknowledgements", self.drill, acked.len());
        assert!(lost.is_empty(), "{}: acknowledged ids missing on {primary}: {lost:?}", self.drill);
        assert!(rounds.len() > 10, "{}: only {} sampling rounds", self.drill, rounds.len());
        if !isolated_overlap {
            assert!(two.is_empty(), "{}: two primaries seen by the test's own sampler: {two:?}", self.drill);
        }
    }
}

/// `pgha verify` passes within two minutes (replicas catch up, HAProxy rechecks, PgBouncer
/// waits `server_login_retry` after failed logins).
fn verify_eventually(inv: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = pgha(&["verify", inv]);
        if out.status.success() {
            return;
        }
        let (o, e) = text(&out);
        assert!(
            Instant::now() < deadline,
            "pgha verify still fails 120 s after the drill:\n{o}\n{e}"
        );
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// The lab's inventory, deployed: as it is when `pgha verify` passes, else a fresh lab deployed
/// from scratch (its state directory is beside the inventory).
fn deployed_lab(dir: &Path) -> String {
    let inv = dir.join("drill-lab.yaml").display().to_string();
    ok(&["lab", "up", "--inventory", &inv]);
    if pgha(&["verify", &inv]).status.success() {
        return inv;
    }
    ok(&["lab", "down"]);
    let _ = std::fs::remove_dir_all(dir.join(".pgha"));
    ok(&["lab", "up", "--inventory", &inv]);
    ok(&["deploy", &inv]);
    verify_eventually(&inv);
    inv
}

fn num(r: &Value, key: &str) -> Option<f64> {
    r.get(key).and_then(Value::as_f64)
}

/// Runs a drill with `--yes --json`; its report, after the checks every drill shares.
fn drill(inv: &str, name: &str) -> Value {
    drill_env(inv, name, &[])
}

/// [`drill`] with extra environment (e.g. lab detection off).
fn drill_env(inv: &str, name: &str, env: &[(&str, &str)]) -> Value {
    let start = Instant::now();
    let args = ["drill", inv, name, "--yes", "--json"];
    let out = Command::new(env!("CARGO_BIN_EXE_pgha"))
        .args(args)
        .env("CI", "true")
        .envs(env.iter().copied())
        .output()
        .expect("pgha runs");
    let (o, e) = text(&out);
    common::record(&args, &o, &e);
    eprintln!("{e}");
    let r: Value = serde_json::from_str(&o)
        .unwrap_or_else(|err| panic!("drill {name}: no JSON report on stdout ({err}):\n{o}\n{e}"));
    eprintln!(
        "drill {name} ({:.0} s): rw_unavailable_s={:?} committed={} present={} lost={} two_primaries_s={} \
         old_leader={} new_leader={} ttl={} loop_wait={} haproxy inter={} rise={} failures={}",
        start.elapsed().as_secs_f64(),
        num(&r, "rw_unavailable_s"),
        r["committed"],
        r["present"],
        r["lost"],
        r["two_primaries_s"],
        r["old_leader"],
        r["new_leader"],
        r["ttl"],
        r["loop_wait"],
        r["haproxy_inter_ms"],
        r["haproxy_rise"],
        r["failures"]
    );
    assert_eq!(r["interrupted"], false, "{name}: {e}");
    assert!(
        r["faults"].as_array().is_some_and(|f| !f.is_empty()),
        "{name}: nothing was faulted: {}",
        r["failures"]
    );
    assert!(
        r["committed"].as_u64().is_some_and(|c| c > 0),
        "{name}: no row committed"
    );
    assert_eq!(r["lost"], 0, "{name}: acknowledged rows lost: {}", r["lost_rows"]);
    assert_eq!(
        num(&r, "two_primaries_s"),
        Some(0.0),
        "{name}: two primaries: {}",
        r["overlaps"]
    );
    assert_eq!(r["interleaved_writes"], false, "{name}: {}", r["interleaving"]);
    r
}

/// `pgha uri --database app --with-password` split into the URI and the password.
fn app_uri(inv: &str) -> (String, String) {
    let (o, _) = ok(&["uri", inv, "--database", "app", "--with-password"]);
    let uri = o.trim();
    let rest = uri.strip_prefix("postgresql://").expect("a postgresql:// URI");
    let (cred, after) = rest.split_once('@').expect("credentials");
    let (user, password) = cred.split_once(':').expect("user:password");
    (format!("postgresql://{user}@{after}"), password.to_string())
}

/// RW came back within the worst case of the drill's timings, computed here from the report's
/// ttl and HAProxy settings: ttl + 3 s promotion + rise × min(inter, 1 s) + PgBouncer's
/// server_login_retry (2 s, templates/pgbouncer) + 2 s of sampling.
fn rw_back_within_worst_case(r: &Value, name: &str) {
    let down = num(r, "rw_unavailable_s").expect("rw_unavailable_s");
    let ttl = num(r, "ttl").expect("ttl");
    let rise = num(r, "haproxy_rise").expect("rise");
    let inter = num(r, "haproxy_inter_ms").expect("inter").min(1000.0) / 1000.0;
    let worst = ttl + 3.0 + rise * inter + 2.0 + 2.0;
    assert!(
        down <= worst,
        "{name}: RW unavailable {down:.1} s > worst case {worst:.1} s (ttl {ttl}, loop_wait {}, HAProxy inter {} ms rise {rise}): {}",
        r["loop_wait"],
        r["haproxy_inter_ms"],
        r["tuning"]
    );
}

/// `pgha verify` exits 1 naming what is broken, for each of three breakages; passes again after
/// each is undone.
fn verify_fails_when_broken(inv: &str) {
    let expect_failure = |what: &str, needles: &[&str]| {
        let out = pgha(&["verify", inv]);
        let (o, e) = text(&out);
        assert_eq!(out.status.code(), Some(1), "verify with {what}: exit {:?}\n{o}\n{e}", out.status.code());
        let all = format!("{o}\n{e}");
        for n in needles {
            assert!(all.contains(n), "verify with {what} must name `{n}`:\n{all}");
        }
        eprintln!("verify with {what}: exit 1 as expected");
    };
    // Positive control: it passes now.
    let (o, _) = ok(&["verify", inv]);
    assert!(o.contains("checks passed"), "{o}");
    let leader = primary_now();
    let replica = NODES.iter().find(|n| **n != leader).expect("a replica").to_string();

    // 1. A replica's Patroni stopped.
    on(&replica, &["systemctl", "stop", "patroni"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = pgha(&["verify", inv]);
        if out.status.code() == Some(1) {
            break;
        }
        assert!(Instant::now() < deadline, "verify still passes 60 s after stopping patroni on {replica}");
        std::thread::sleep(Duration::from_secs(2));
    }
    expect_failure(&format!("patroni stopped on {replica}"), &["patroni", &replica]);
    on(&replica, &["systemctl", "start", "patroni"]);
    verify_eventually(inv);

    // 2. The RW server in maintenance on HAProxy (admin socket).
    let sock = |cmd: &str| {
        on(
            "haproxy",
            &["sh", "-c", &format!("echo '{cmd}' | socat stdio unix-connect:/run/haproxy/admin.sock")],
        )
    };
    sock(&format!("set server postgres_rw/{leader} state maint"));
    expect_failure(
        &format!("postgres_rw/{leader} in maintenance"),
        &["RW server UP", &format!("{leader} MAINT")],
    );
    sock(&format!("set server postgres_rw/{leader} state ready"));
    verify_eventually(inv);

    // 3. PgBouncer serving a certificate the cluster's CA did not issue.
    let dir = tempfile::tempdir().expect("tempdir");
    let (crt, key) = (dir.path().join("stale.crt"), dir.path().join("stale.key"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30"])
        .args(["-subj", "/CN=pgbouncer", "-addext", "subjectAltName=DNS:pgbouncer"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let b64 = |p: &Path| {
        use std::io::Write as _;
        let mut child = Command::new("base64")
            .arg("-w0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("base64");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(&std::fs::read(p).expect("read"))
            .expect("write");
        String::from_utf8(child.wait_with_output().expect("base64").stdout).expect("ascii")
    };
    let tls = "/etc/pgha/tls";
    on(
        "pgbouncer",
        &[
            "sh",
            "-c",
            &format!(
                "set -e; cp -p {tls}/pgbouncer-server.crt /root/pgbouncer-server.crt.keep; \
                 cp -p {tls}/pgbouncer-server.key /root/pgbouncer-server.key.keep; \
                 echo {} | base64 -d > {tls}/pgbouncer-server.crt; echo {} | base64 -d > {tls}/pgbouncer-server.key; \
                 systemctl restart pgbouncer",
                b64(&crt),
                b64(&key)
            ),
        ],
    );
    expect_failure("a stale certificate on pgbouncer", &["pgbouncer", "verify-full"]);
    on(
        "pgbouncer",
        &[
            "sh",
            "-c",
            &format!(
                "set -e; cp -p /root/pgbouncer-server.crt.keep {tls}/pgbouncer-server.crt; \
                 cp -p /root/pgbouncer-server.key.keep {tls}/pgbouncer-server.key; \
                 rm -f /root/pgbouncer-server.*.keep; systemctl restart pgbouncer"
            ),
        ],
    );
    verify_eventually(inv);
}

/// Starts the failover drill on the real-host path, SIGKILLs pgha once Patroni is held down on
/// the leader, checks it stays down (no systemd restart), then fires the dead-man timer's
/// service and checks Patroni is back and the hold gone.
fn deadman_restores_patroni(inv: &str) {
    let leader = primary_now();
    let n0 = on(&leader, &["systemctl", "show", "-p", "NRestarts", "--value", "patroni"]);
    let mut run = common::stream::spawn(&["drill", inv, "failover", "--yes"], &[("PGHA_LAB_DIR", "/nonexistent/pgha-lab")]);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let line = run
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the drill reaches the kill within 180 s");
        if line.contains("systemctl kill") {
            break;
        }
    }
    // The kill's own check takes ~1 s on the host; then pgha dies without undoing anything.
    std::thread::sleep(Duration::from_secs(3));
    run.child.kill().expect("SIGKILL pgha");
    let (_, _, printed) = run.finish();
    let state = || on(&leader, &["systemctl", "show", "-p", "ActiveState", "--value", "patroni"]);
    std::thread::sleep(Duration::from_secs(5));
    let (st, n1) = (state(), on(&leader, &["systemctl", "show", "-p", "NRestarts", "--value", "patroni"]));
    assert!(
        (st == "failed" || st == "inactive") && n1 == n0,
        "Patroni on {leader} must stay down after pgha died: ActiveState={st}, NRestarts {n0} -> {n1}\n{printed}"
    );
    let timers = on(
        &leader,
        &["sh", "-c", "systemctl list-timers --all --no-legend 'pgha-drill-*-undo-patroni.timer' | grep -o 'pgha-drill-[^ ]*-undo-patroni.timer'"],
    );
    let timer = timers.lines().next().unwrap_or_else(|| panic!("no dead-man timer armed on {leader}: {timers}"));
    let service = timer.trim_end_matches(".timer").to_string() + ".service";
    on(&leader, &["systemctl", "start", &service]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while state() != "active" {
        assert!(Instant::now() < deadline, "the dead-man timer's service did not start Patroni on {leader}");
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(
        on(&leader, &["sh", "-c", "ls /run/systemd/system/patroni.service.d 2>/dev/null | wc -l"]),
        "0",
        "the dead-man removed the hold on {leader}"
    );
    on(&leader, &["systemctl", "stop", timer]);
    eprintln!("dead-man: Patroni on {leader} stayed down after pgha was killed, and {service} brought it back");
}

fn new_leader_elsewhere(r: &Value, name: &str) {
    assert!(
        r["old_leader"].is_string() && r["new_leader"].is_string() && r["old_leader"] != r["new_leader"],
        "{name}: leader before {}, after {}",
        r["old_leader"],
        r["new_leader"]
    );
    assert!(
        num(r, "rejoined_after_s").is_some(),
        "{name}: the old leader did not rejoin"
    );
}

#[test]
#[ignore = "lab: needs root and the lab; .ci/test runs it (cargo test -- --include-ignored)"]
fn drills_on_the_lab() {
    let _scan = common::lab_test("drill lab test");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let inv = deployed_lab(&dir);

    // Without --yes: exit 2, says what it would do, does nothing.
    let out = pgha(&["drill", &inv, "failover"]);
    let (o, e) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{o}\n{e}");
    assert!(o.contains("pgha lab stop") && e.contains("--yes"), "{o}\n{e}");

    let (uri, password) = app_uri(&inv);
    let table = Command::new("psql")
        .args([
            &uri,
            "-XtAc",
            "create table if not exists drill_oracle (drill text, id bigint, primary key (drill, id))",
        ])
        .env("PGPASSWORD", &password)
        .output()
        .expect("psql");
    assert!(table.status.success(), "{}", String::from_utf8_lossy(&table.stderr));

    verify_fails_when_broken(&inv);

    // Failover: the leader's machine crashes; a replica takes over within the worst case the
    // drill's timings allow (ttl + promotion + HAProxy rise + PgBouncer's login retry).
    let oracle = Oracle::start("failover", &uri, &password);
    let r = drill(&inv, "failover");
    oracle.finish(false);
    new_leader_elsewhere(&r, "failover");
    rw_back_within_worst_case(&r, "failover");
    assert_eq!(r["passed"], true, "failover: {}", r["failures"]);
    verify_eventually(&inv);

    // The same on the real-host path (lab detection off): Patroni SIGKILLed, held down.
    let oracle = Oracle::start("failover-real-hosts", &uri, &password);
    let r = drill_env(&inv, "failover", &[("PGHA_LAB_DIR", "/nonexistent/pgha-lab")]);
    oracle.finish(false);
    let faults = r["faults"].to_string();
    assert!(faults.contains("systemctl kill") && !faults.contains("lab stop"), "real-host path: {faults}");
    new_leader_elsewhere(&r, "failover (real hosts)");
    rw_back_within_worst_case(&r, "failover (real hosts)");
    assert_eq!(r["passed"], true, "failover (real hosts): {}", r["failures"]);
    let old = r["old_leader"].as_str().expect("old leader").to_string();
    assert_eq!(
        on(&old, &["sh", "-c", "ls /run/systemd/system/patroni.service.d 2>/dev/null | wc -l"]),
        "0",
        "the hold is removed from {old}"
    );
    verify_eventually(&inv);

    // pgha SIGKILLed while Patroni is held down: the dead-man timer on the host brings it back
    // (fired now instead of in 10 minutes: the test starts the timer's own service).
    deadman_restores_patroni(&inv);
    verify_eventually(&inv);

    // Quorum loss: two of three etcd members down; the primary demotes (RW refused, RO
    // served), and RW comes back once etcd is restored.
    let oracle = Oracle::start("quorum-loss", &uri, &password);
    let r = drill(&inv, "quorum-loss");
    oracle.finish(false);
    assert!(
        num(&r, "rw_refused_after_s").is_some(),
        "quorum-loss: RW was never refused: {}",
        r["failures"]
    );
    assert_eq!(r["ro_served"], true, "quorum-loss: RO did not serve: {}", r["failures"]);
    assert!(
        num(&r, "rw_back_after_restore_s").is_some(),
        "quorum-loss: RW did not come back"
    );
    assert_eq!(r["passed"], true, "quorum-loss: {}", r["failures"]);
    verify_eventually(&inv);

    // Partition: the leader is cut off; it stops taking writes within the TTL and a new
    // leader is elected elsewhere.
    let oracle = Oracle::start("partition", &uri, &password);
    let r = drill(&inv, "partition");
    oracle.finish(true);
    new_leader_elsewhere(&r, "partition");
    let writable = num(&r, "old_leader_writable_s").expect("old_leader_writable_s");
    let ttl = num(&r, "ttl").expect("ttl");
    assert!(
        writable <= ttl,
        "partition: the old leader answered as a primary {writable:.1} s after the cut (ttl {ttl} s)"
    );
    assert_eq!(r["passed"], true, "partition: {}", r["failures"]);
    verify_eventually(&inv);

    // Quorum loss again with failsafe_mode (Patroni 4, opt-in): every member still answers
    // the leader, so the primary keeps taking writes while etcd is gone.
    let mut text = std::fs::read_to_string(&inv).expect("inventory");
    text.push_str("patroni:\n  failsafe_mode: true\n");
    std::fs::write(&inv, text).expect("inventory");
    ok(&["deploy", &inv]);
    // Failsafe mode on in the cluster itself (Patroni's DCS config), not just in the file.
    let config = on(
        &primary_now(),
        &["sh", "-c", "patronictl -c /etc/patroni/config.yml show-config 2>/dev/null"],
    );
    assert!(config.lines().any(|l| l.trim() == "failsafe_mode: true"), "DCS config:\n{config}");
    let oracle = Oracle::start("failsafe-quorum-loss", &uri, &password);
    let r = drill(&inv, "quorum-loss");
    oracle.finish(false);
    assert!(
        num(&r, "rw_refused_after_s").is_none(),
        "failsafe: RW was refused while etcd was down: {}",
        r["failures"]
    );
    let gap = num(&r, "rw_unavailable_s").unwrap_or(0.0);
    eprintln!("failsafe quorum loss: longest RW gap {gap:.1} s");
    assert_eq!(r["passed"], true, "failsafe quorum-loss: {}", r["failures"]);
    verify_eventually(&inv);
    ok(&["lab", "down"]);
}
