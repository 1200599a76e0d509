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
//!
//! Backups (the lab's `backup` role on the dc2 PgBouncer host): after the failover drill,
//! `pgbackrest check` passes on the new primary, the archive has every WAL segment up to the
//! switch point the new timeline's history names and on from there, `pgbackrest verify`
//! passes and a backup succeeds. The restore drill (`drill … restore --keep`) must pass, and
//! the test re-counts its rows itself: psql in the kept scratch instance against the writer's
//! log in the report (every row acknowledged before T present, none sent after T), and the
//! live primary holds every restored row.
#![allow(clippy::disallowed_methods)] // runs the real binary, psql and openssl

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::{NODES, ok, on, pgha, psql_on, text};

/// The lab's PostgreSQL nodes, by their own answer: `(host, in recovery)` for those that answer
/// within 3 s (a crashed or cut-off machine does not).
fn recovery_states() -> Vec<(String, bool)> {
    let handles: Vec<_> = NODES
        .iter()
        .map(|h| {
            std::thread::spawn(move || {
                let out = Command::new("timeout")
                    .args(["3", env!("CARGO_BIN_EXE_pgha"), "lab", "ssh", h, "--"])
                    .args([
                        "runuser",
                        "-u",
                        "postgres",
                        "--",
                        "psql",
                        "-XtAc",
                        "select pg_is_in_recovery()",
                    ])
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
        let primaries: Vec<String> = recovery_states()
            .into_iter()
            .filter(|(_, r)| !r)
            .map(|(h, _)| h)
            .collect();
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
                let primaries: Vec<String> = recovery_states()
                    .into_iter()
                    .filter(|(_, r)| !r)
                    .map(|(h, _)| h)
                    .collect();
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
                "runuser",
                "-u",
                "postgres",
                "--",
                "psql",
                "-d",
                "app",
                "-XtAc",
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
        assert!(
            acked.len() > 10,
            "{}: the oracle's writer got {} acknowledgements",
            self.drill,
            acked.len()
        );
        assert!(
            lost.is_empty(),
            "{}: acknowledged ids missing on {primary}: {lost:?}",
            self.drill
        );
        assert!(
            rounds.len() > 10,
            "{}: only {} sampling rounds",
            self.drill,
            rounds.len()
        );
        if !isolated_overlap {
            assert!(
                two.is_empty(),
                "{}: two primaries seen by the test's own sampler: {two:?}",
                self.drill
            );
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
        assert_eq!(
            out.status.code(),
            Some(1),
            "verify with {what}: exit {:?}\n{o}\n{e}",
            out.status.code()
        );
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
        assert!(
            Instant::now() < deadline,
            "verify still passes 60 s after stopping patroni on {replica}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    expect_failure(&format!("patroni stopped on {replica}"), &["patroni", &replica]);
    on(&replica, &["systemctl", "start", "patroni"]);
    verify_eventually(inv);

    // 2. The RW server in maintenance on HAProxy (admin socket).
    let sock = |cmd: &str| {
        on(
            "haproxy",
            &[
                "sh",
                "-c",
                &format!("echo '{cmd}' | socat stdio unix-connect:/run/haproxy/admin.sock"),
            ],
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
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "30",
        ])
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
    let mut run = common::stream::spawn(
        &["drill", inv, "failover", "--yes"],
        &[("PGHA_LAB_DIR", "/nonexistent/pgha-lab")],
    );
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
    let state = || {
        on(
            &leader,
            &["systemctl", "show", "-p", "ActiveState", "--value", "patroni"],
        )
    };
    std::thread::sleep(Duration::from_secs(5));
    let (st, n1) = (
        state(),
        on(&leader, &["systemctl", "show", "-p", "NRestarts", "--value", "patroni"]),
    );
    assert!(
        (st == "failed" || st == "inactive") && n1 == n0,
        "Patroni on {leader} must stay down after pgha died: ActiveState={st}, NRestarts {n0} -> {n1}\n{printed}"
    );
    let timers = on(
        &leader,
        &[
            "sh",
            "-c",
            "systemctl list-timers --all --no-legend 'pgha-drill-*-undo-patroni.timer' | grep -o 'pgha-drill-[^ ]*-undo-patroni.timer'",
        ],
    );
    let timer = timers
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no dead-man timer armed on {leader}: {timers}"));
    let service = timer.trim_end_matches(".timer").to_string() + ".service";
    on(&leader, &["systemctl", "start", &service]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while state() != "active" {
        assert!(
            Instant::now() < deadline,
            "the dead-man timer's service did not start Patroni on {leader}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(
        on(
            &leader,
            &[
                "sh",
                "-c",
                "ls /run/systemd/system/patroni.service.d 2>/dev/null | wc -l"
            ]
        ),
        "0",
        "the dead-man removed the hold on {leader}"
    );
    on(&leader, &["systemctl", "stop", timer]);
    eprintln!("dead-man: Patroni on {leader} stayed down after pgha was killed, and {service} brought it back");
}

/// The repository host and stanza, as `pgha backup list --json` names them.
fn repository(inv: &str) -> (String, String) {
    let (o, _) = ok(&["backup", "list", inv, "--json"]);
    let v: Value = serde_json::from_str(&o).unwrap_or_else(|e| panic!("backup list --json ({e}): {o}"));
    (
        v["repo_host"].as_str().expect("repo_host").to_string(),
        v["stanza"]["name"].as_str().expect("stanza name").to_string(),
    )
}

/// `(timeline, segment number, partial)` of an archived WAL segment file
/// (`<tli><log><seg>-<sha1>.gz`, `<…>.partial-<sha1>.gz`; 16 MiB segments); `None` for history
/// and backup-label files.
fn wal_segment(path: &str) -> Option<(u32, u64, bool)> {
    let base = path.rsplit('/').next()?;
    if base.len() < 25 || !base[..24].bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let partial = base[24..].starts_with(".partial");
    if !partial && !base[24..].starts_with('-') {
        return None;
    }
    let hex = |r: std::ops::Range<usize>| u64::from_str_radix(&base[r], 16).ok();
    Some((
        u32::try_from(hex(0..8)?).ok()?,
        hex(8..16)? * 256 + hex(16..24)?,
        partial,
    ))
}

/// After a failover: `pgbackrest check` on the new primary; every segment of the parent
/// timeline up to the switch point its history file names, and every segment of the new
/// timeline from there on, in the archive; `pgbackrest verify`; a backup. Returns the parent
/// timeline and the switch segment's number.
fn archive_survives_failover(inv: &str, new_leader: &str) -> (u32, u64) {
    let t = Instant::now();
    let (repo, stanza) = repository(inv);
    let st = format!("--stanza={stanza}");
    let pgbr = |host: &str, args: &[&str]| {
        let mut argv = vec!["runuser", "-u", "postgres", "--", "pgbackrest", st.as_str()];
        argv.extend_from_slice(args);
        on(host, &argv)
    };
    pgbr(new_leader, &["check"]);
    eprintln!(
        "archive after failover: pgbackrest check passed on the new primary {new_leader} ({:.1} s)",
        t.elapsed().as_secs_f64()
    );
    let listing = pgbr(&repo, &["repo-ls", "--recurse", &format!("archive/{stanza}")]);
    let segs: Vec<(u32, u64, bool)> = listing.lines().filter_map(wal_segment).collect();
    let newest = segs.iter().map(|s| s.0).max().expect("archived WAL");
    assert!(
        newest >= 2,
        "no new timeline in the archive after a failover:\n{listing}"
    );
    let hist = format!("{newest:08X}.history");
    let hist_path = listing
        .lines()
        .find(|l| l.ends_with(&hist))
        .unwrap_or_else(|| panic!("{hist} is not in the archive:\n{listing}"));
    let history = pgbr(&repo, &["repo-get", &format!("archive/{stanza}/{hist_path}")]);
    let last = history.lines().rfind(|l| !l.trim().is_empty()).expect("a history line");
    let mut f = last.split_whitespace();
    let parent: u32 = f
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("history line {last:?}"));
    let (hi, lo) = f
        .next()
        .and_then(|l| l.split_once('/'))
        .unwrap_or_else(|| panic!("history line {last:?}"));
    let (hi, lo) = (
        u64::from_str_radix(hi, 16).expect("hex"),
        u64::from_str_radix(lo, 16).expect("hex"),
    );
    let switch = hi * 256 + (lo >> 24);
    let full = |tli: u32| -> BTreeSet<u64> { segs.iter().filter(|s| s.0 == tli && !s.2).map(|s| s.1).collect() };
    let (old, new) = (full(parent), full(newest));
    let first = *old.first().expect("segments of the parent timeline");
    let gap: Vec<u64> = (first..switch).filter(|n| !old.contains(n)).collect();
    assert!(
        gap.is_empty(),
        "timeline {parent}: segments {gap:?} missing before the switch at {last:?}:\n{listing}"
    );
    if lo & 0xFF_FFFF != 0 {
        assert!(
            old.contains(&switch) || segs.contains(&(parent, switch, true)),
            "timeline {parent}: the switch segment {switch:#x} is neither archived nor .partial:\n{listing}"
        );
    }
    let last_new = *new.last().expect("segments of the new timeline");
    let gap: Vec<u64> = (switch..=last_new).filter(|n| !new.contains(n)).collect();
    assert!(
        gap.is_empty(),
        "timeline {newest}: segments {gap:?} missing after the switch:\n{listing}"
    );
    eprintln!(
        "archive after failover: timeline {parent} segments {first:#x}..{switch:#x} (switch at {}), timeline {newest} {switch:#x}..{last_new:#x}: no gap",
        last.split_whitespace().nth(1).unwrap_or("?")
    );
    pgbr(&repo, &["verify"]);
    let (o, _) = ok(&["backup", inv, "--json"]);
    let b: Value = serde_json::from_str(&o).unwrap_or_else(|e| panic!("backup --json ({e}): {o}"));
    assert_eq!(b["ok"], true, "backup after the failover: {o}");
    let done = &b["backup"];
    eprintln!(
        "archive after failover: pgbackrest verify passed; backup {} ({}) in {:.1} s; step {:.0} s",
        done["backup"]["label"],
        done["backup"]["type"],
        done["seconds"].as_f64().unwrap_or(0.0),
        t.elapsed().as_secs_f64()
    );
    (parent, switch)
}

/// The WAL file name of segment `n` (`log * 256 + seg`, 16 MiB segments) of timeline `tli`.
fn wal_name(tli: u32, n: u64) -> String {
    format!("{tli:08X}{:08X}{:08X}", n / 256, n % 256)
}

/// What a walreceiver leaves when it stops in the middle of a segment (its primary crashed):
/// the old timeline's switch segment without an archive status file. Done on every replica
/// that has the segment; returns how many.
fn forget_archived(segment: &str) -> usize {
    let script = format!(
        "d=$(runuser -u postgres -- psql -XtAc 'show data_directory'); \
         if [ -e \"$d/pg_wal/{segment}\" ]; then rm -f \"$d/pg_wal/archive_status/{segment}.done\" \"$d/pg_wal/archive_status/{segment}.ready\"; echo removed; fi"
    );
    let replicas: Vec<String> = recovery_states()
        .into_iter()
        .filter(|(_, r)| *r)
        .map(|(h, _)| h)
        .collect();
    let n = replicas
        .iter()
        .filter(|h| on(h, &["sh", "-c", &script]) == "removed")
        .count();
    eprintln!("archive status of {segment} removed on {n} of the replicas {replicas:?}");
    n
}

/// The full-named segments of timeline `tli` from segment `switch` on in the repository (read
/// with pgBackRest on the repository host). The old primary may have put its own there: Patroni
/// archives a rejoining node's `.ready` WAL before `pg_rewind`.
fn old_timeline_in_repo(inv: &str, tli: u32, switch: u64) -> Vec<String> {
    let (repo, stanza) = repository(inv);
    let listing = on(
        &repo,
        &[
            "runuser",
            "-u",
            "postgres",
            "--",
            "pgbackrest",
            &format!("--stanza={stanza}"),
            "repo-ls",
            "--recurse",
            &format!("archive/{stanza}"),
        ],
    );
    listing
        .lines()
        .filter(|l| wal_segment(l).is_some_and(|(t, n, partial)| t == tli && n >= switch && !partial))
        .map(String::from)
        .collect()
}

/// After a promotion: the new primary's checkpoints pass the old timeline's switch segment
/// (WAL switches and CHECKPOINT), its archiver catches up, and neither queued nor archived
/// that segment (or any later one of the old timeline): no `.ready` for it, no failure on it,
/// and the repository's segments of the old timeline from the switch on are the ones it held
/// before the promotion (`before`).
fn old_timeline_not_archived(inv: &str, leader: &str, tli: u32, switch: u64, before: &[String]) {
    let segment = wal_name(tli, switch);
    for _ in 0..3 {
        psql_on(leader, "select pg_switch_wal()");
        psql_on(leader, "checkpoint");
    }
    let ready = || {
        on(
            leader,
            &[
                "sh",
                "-c",
                "d=$(runuser -u postgres -- psql -XtAc 'show data_directory'); ls $d/pg_wal/archive_status | grep '[.]ready$' || true",
            ],
        )
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut waiting = ready();
    while !waiting.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(2));
        waiting = ready();
    }
    let archiver = psql_on(
        leader,
        "select failed_count, coalesce(last_failed_wal, '-'), coalesce(last_archived_wal, '-') from pg_stat_archiver",
    );
    assert!(
        !waiting.contains(&segment),
        "{leader} queued the old timeline's switch segment {segment}: {waiting}; archiver {archiver}"
    );
    assert!(
        waiting.is_empty(),
        "{leader}: archiving did not catch up within 60 s: {waiting}; archiver {archiver}"
    );
    assert!(
        !archiver.contains(&segment),
        "{leader} tried to archive {segment}: {archiver}"
    );
    let after = old_timeline_in_repo(inv, tli, switch);
    assert_eq!(
        after, before,
        "{leader} archived segments of timeline {tli} from its switch segment {segment} on (before the promotion: {before:?})"
    );
    eprintln!(
        "archive after the second failover: {leader} archived its timeline, nothing of timeline {tli} from {segment} on (in the repository before and after: {before:?}; archiver {archiver})"
    );
}

/// What the new primary's archiver does after the second failover (printed for the record:
/// docs/backup.md "Found on the lab"): pg_stat_archiver, the WAL and its archive status files,
/// and archive-push's own errors, 20 s after the drill.
fn archiver_report(leader: &str) {
    let script = "d=$(runuser -u postgres -- psql -XtAc 'show data_directory'); \
        runuser -u postgres -- psql -Xc 'select * from pg_stat_archiver' -c 'select timeline_id from pg_control_checkpoint()'; \
        ls -la $d/pg_wal $d/pg_wal/archive_status; \
        grep -h 'ERROR\\|WARN' /var/log/pgbackrest/*archive-push* 2>/dev/null | tail -n 20; \
        journalctl -u patroni --no-pager -n 400 2>/dev/null | grep -i 'archiv\\|timeline\\|rewind' | tail -n 30";
    eprintln!(
        "archiver of the new primary {leader} after the second failover:\n{}",
        on(leader, &["sh", "-c", script])
    );
}

/// The restore drill, checked by the test's own count: rows in the kept scratch instance
/// (psql there) against the writer's log in the report, and against the live primary.
fn restore_drill(inv: &str) {
    let t = Instant::now();
    let out = pgha(&["drill", inv, "restore"]);
    let (o, e) = text(&out);
    assert_eq!(out.status.code(), Some(2), "restore without --yes: {o}\n{e}");
    assert!(o.contains("--type=time") && o.contains("--archive-mode=off"), "{o}");
    let args = ["drill", inv, "restore", "--yes", "--json", "--keep"];
    let out = Command::new(env!("CARGO_BIN_EXE_pgha"))
        .args(args)
        .env("CI", "true")
        .output()
        .expect("pgha runs");
    let (o, e) = text(&out);
    common::record(&args, &o, &e);
    eprintln!("{e}");
    let r: Value = serde_json::from_str(&o).unwrap_or_else(|err| panic!("drill restore: no JSON ({err}):\n{o}\n{e}"));
    eprintln!(
        "drill restore ({:.0} s): passed={} rto_s={} restore_s={} recovery_s={} bytes_restored={} backup={} T={} rows={} consistency={} steps={}",
        t.elapsed().as_secs_f64(),
        r["passed"],
        r["rto_s"],
        r["restore_s"],
        r["recovery_s"],
        r["bytes_restored"],
        r["backup"],
        r["target_time"],
        serde_json::json!({"before": r["rows"]["acked_before_t"], "after": r["rows"]["acked_after_t"], "present": r["rows"]["present"], "missing": r["rows"]["missing"], "beyond": r["rows"]["beyond_target"]}),
        r["consistency"],
        r["steps"]
    );
    assert_eq!(r["passed"], true, "drill restore: {}", r["failures"]);
    assert_eq!(out.status.code(), Some(0));
    let host = r["scratch_host"].as_str().expect("scratch_host").to_string();
    let run = r["run"].as_str().expect("run");
    let db = r["database"].as_str().expect("database");
    let sql = format!("select n from pgha_verify.drill_rows where run = '{run}'");
    let ids = |s: String| -> BTreeSet<u64> { s.lines().filter_map(|l| l.trim().parse().ok()).collect() };
    let scratch = |q: &str| {
        on(
            &host,
            &[
                "runuser",
                "-u",
                "postgres",
                "--",
                "psql",
                "-h",
                "/run/pgha-drill-restore",
                "-p",
                "5499",
                "-d",
                db,
                "-XtAc",
                q,
            ],
        )
    };
    let present = ids(scratch(&sql));
    let (before, after) = (
        r["target_window_ms"][0].as_i64().expect("window"),
        r["target_window_ms"][1].as_i64().expect("window"),
    );
    let writes = r["writes"].as_array().expect("writes");
    let n = |w: &Value| w["n"].as_u64().expect("n");
    let acked = |w: &&Value| !w["server"].is_null();
    let acked_before: Vec<u64> = writes
        .iter()
        .filter(acked)
        .filter(|w| w["end_ms"].as_i64() <= Some(before))
        .map(n)
        .collect();
    let sent_after: Vec<u64> = writes
        .iter()
        .filter(|w| w["start_ms"].as_i64() >= Some(after))
        .map(n)
        .collect();
    let acked_after = writes
        .iter()
        .filter(acked)
        .filter(|w| w["start_ms"].as_i64() >= Some(after))
        .count();
    assert!(
        acked_before.len() >= 5 && acked_after >= 5,
        "rows on both sides of T: {} before, {acked_after} after",
        acked_before.len()
    );
    let missing: Vec<&u64> = acked_before.iter().filter(|i| !present.contains(i)).collect();
    let beyond: Vec<&u64> = sent_after.iter().filter(|i| present.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "RPO: rows acknowledged before T missing in the scratch instance: {missing:?}"
    );
    assert!(
        beyond.is_empty(),
        "rows sent after T present in the scratch instance: {beyond:?}"
    );
    assert_eq!(
        Some(present.len() as u64),
        r["rows"]["present"].as_u64(),
        "the report's count of present rows"
    );
    let live = ids(on(
        &primary_now(),
        &["runuser", "-u", "postgres", "--", "psql", "-d", db, "-XtAc", &sql],
    ));
    assert!(
        present.is_subset(&live),
        "rows in the copy that the cluster never had: {:?}",
        present.difference(&live).collect::<Vec<_>>()
    );
    let all_acked: BTreeSet<u64> = writes.iter().filter(acked).map(n).collect();
    assert!(
        all_acked.is_subset(&live),
        "acknowledged rows missing in the live cluster"
    );
    assert_eq!(
        scratch(
            "select current_setting('archive_mode') || ',' || current_setting('listen_addresses') || ',' || pg_is_in_recovery()::text"
        ),
        "off,,false",
        "the scratch instance must not archive nor listen on TCP"
    );
    assert_eq!(r["consistency"]["passed"], true, "{}", r["consistency"]);
    assert!(
        r["rto_s"].as_f64().is_some_and(|s| s > 0.0) && r["bytes_restored"].as_u64().is_some_and(|b| b > 1_000_000),
        "{r}"
    );
    eprintln!(
        "restore drill oracle: {} acknowledged before T all present, {} sent after T absent, {} rows in the copy (counted on {host})",
        acked_before.len(),
        sent_after.len(),
        present.len()
    );
    ok(&["drill", inv, "restore", "--clean"]);
    ok(&["drill", inv, "restore", "--clean"]);
    let left = on(
        &host,
        &[
            "sh",
            "-c",
            "systemctl is-active pgha-drill-restore.service; test -e /var/lib/postgresql/pgha-drill-restore && echo left || echo gone",
        ],
    );
    assert!(
        left.ends_with("gone") && !left.starts_with("active"),
        "after --clean on {host}: {left}"
    );
    eprintln!("restore drill scenario: {:.0} s", t.elapsed().as_secs_f64());
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

    // Backups across the failover, and the restore drill.
    let (tli, switch) = archive_survives_failover(&inv, r["new_leader"].as_str().expect("new leader"));
    restore_drill(&inv);
    // A replica whose walreceiver stopped inside the old timeline's switch segment, then
    // promoted: Patroni's pre_promote (pgha-patroni pre-promote) keeps that segment out of the
    // new primary's archive queue.
    assert!(
        forget_archived(&wal_name(tli, switch)) > 0,
        "no replica holds the old timeline's switch segment: the scenario cannot be set up"
    );
    let old_in_repo = old_timeline_in_repo(&inv, tli, switch);

    // The same on the real-host path (lab detection off): Patroni SIGKILLed, held down.
    let oracle = Oracle::start("failover-real-hosts", &uri, &password);
    let r = drill_env(&inv, "failover", &[("PGHA_LAB_DIR", "/nonexistent/pgha-lab")]);
    oracle.finish(false);
    let faults = r["faults"].to_string();
    assert!(
        faults.contains("systemctl kill") && !faults.contains("lab stop"),
        "real-host path: {faults}"
    );
    new_leader_elsewhere(&r, "failover (real hosts)");
    rw_back_within_worst_case(&r, "failover (real hosts)");
    assert_eq!(r["passed"], true, "failover (real hosts): {}", r["failures"]);
    archiver_report(r["new_leader"].as_str().expect("new leader"));
    old_timeline_not_archived(
        &inv,
        r["new_leader"].as_str().expect("new leader"),
        tli,
        switch,
        &old_in_repo,
    );
    let old = r["old_leader"].as_str().expect("old leader").to_string();
    assert_eq!(
        on(
            &old,
            &[
                "sh",
                "-c",
                "ls /run/systemd/system/patroni.service.d 2>/dev/null | wc -l"
            ]
        ),
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
        &[
            "sh",
            "-c",
            "patronictl -c /etc/patroni/config.yml show-config 2>/dev/null",
        ],
    );
    assert!(
        config.lines().any(|l| l.trim() == "failsafe_mode: true"),
        "DCS config:\n{config}"
    );
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
