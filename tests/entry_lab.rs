//! Entry points behind a VIP on the lab (root; `#[ignore]`d, .ci/test runs it): one
//! `pgha lab up --from inventory/entry-vip.yaml` (two co-located HAProxy + PgBouncer hosts in two
//! data centres, a VIP) and one deploy, then every scenario on that cluster:
//!
//! 1. psql `sslmode=verify-full` through the VIP by its name (`db.example.com`, which only the
//!    VIP's certificates carry), through PgBouncer (a write) and through HAProxy (RW and RO);
//! 2. `pgha drill entry-loss --yes --json` (the VIP's holder crashed under the drill's writer),
//!    [`DRILLS`] times (env `PGHA_ENTRY_DRILLS` for more): RW back within 5 s, the VIP moved,
//!    never on two hosts by the drill's report — and by the test's own sampler, which reads
//!    both hosts' network namespaces from the controller every 100 ms, independent of SSH and
//!    of pgha;
//! 3. the `--multi-host` RW URI still connects (and writes) with one entry host stopped;
//! 4. HAProxy-terminated direct TLS (`haproxy.direct_tls`), with psql 17 on a lab host:
//!    `sslnegotiation=direct sslmode=verify-full` writes on the primary and reads on a replica
//!    (`pg_is_in_recovery()`, `inet_server_addr()`), channel binding refused as documented,
//!    SSLRequest through PgBouncer unchanged; connection setup figures (direct vs SSLRequest);
//! 5. `pgha rotate-certs` under `pgbench -C` with direct TLS (lab host) and through PgBouncer
//!    (controller): 0 failed transactions, HAProxy serves the new certificate (`openssl
//!    s_client -alpn postgresql`, serial against the state);
//! 6. a second deploy changes nothing; `pgha status` names the VIP's holder;
//!
//! then `lab down`. Step timings are printed.
#![allow(clippy::disallowed_methods)] // runs the real binary, psql and ip

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::{ok, text};

/// Entry-loss drills per run (each crashes the current holder).
const DRILLS: usize = 2;
const ENTRIES: [&str; 2] = ["entry1", "entry2"];

fn step(t: &mut Instant, what: &str) {
    eprintln!("entry lab: {what}: {:.1} s", t.elapsed().as_secs_f64());
    *t = Instant::now();
}

/// The VIP the lab gave the inventory (`vip:\n  address: …`).
fn vip_of(inv: &str) -> String {
    let text = std::fs::read_to_string(inv).expect("lab inventory");
    let after = text.split("\nvip:\n").nth(1).expect("the lab inventory has a vip");
    after
        .lines()
        .find_map(|l| l.trim().strip_prefix("address: "))
        .expect("vip address")
        .trim()
        .to_string()
}

/// psql with the password in the environment (test code only), `-c sql`; (ok, stdout+stderr).
fn psql(uri: &str, password: &str, sql: &str) -> (bool, String) {
    let out = Command::new("psql")
        .args([uri, "-XqtA", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .expect("psql runs");
    let (o, e) = text(&out);
    (out.status.success(), format!("{o}{e}"))
}

/// `pgha uri … --with-password` split into the URI without the password and the password.
fn uri(inv: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec!["uri", inv, "--with-password"];
    args.extend_from_slice(extra);
    let (o, _) = ok(&args);
    let u = o.trim();
    let rest = u.strip_prefix("postgresql://").expect("a postgresql:// URI");
    let (cred, after) = rest.split_once('@').expect("credentials");
    let (user, password) = cred.split_once(':').expect("user:password");
    (format!("postgresql://{user}@{after}"), password.to_string())
}

/// Whether `host`'s kernel has `vip` (read from the root namespace: `ip -n pgha-<host>`).
fn holds(host: &str, vip: &str) -> Option<bool> {
    let out = Command::new("ip")
        .args([
            "-n",
            &format!("pgha-{host}"),
            "-o",
            "-4",
            "addr",
            "show",
            "to",
            &format!("{vip}/32"),
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).contains("inet "))
}

/// The test's own VIP oracle: both namespaces every 100 ms; every instant (seconds since
/// its start) both held it.
struct Sampler {
    t0: Instant,
    stop: Arc<AtomicBool>,
    both: Arc<Mutex<Vec<f64>>>,
    rounds: Arc<Mutex<usize>>,
    handle: std::thread::JoinHandle<()>,
}

impl Sampler {
    fn start(vip: &str) -> Self {
        let (stop, both, rounds) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(Mutex::new(0)),
        );
        let (s, b, r, vip) = (stop.clone(), both.clone(), rounds.clone(), vip.to_string());
        let t0 = Instant::now();
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let now: Vec<bool> = ENTRIES.iter().map(|h| holds(h, &vip) == Some(true)).collect();
                if now.iter().all(|x| *x) {
                    b.lock().expect("lock").push(t0.elapsed().as_secs_f64());
                }
                *r.lock().expect("lock") += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Self {
            t0,
            stop,
            both,
            rounds,
            handle,
        }
    }

    /// Seconds since the sampler started.
    fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    /// Stops; fails if the VIP was on both hosts outside `control` (the window in which the
    /// test put it there on purpose), or if the sampler missed that control.
    fn finish(self, control: (f64, f64)) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.handle.join();
        let rounds = *self.rounds.lock().expect("lock");
        let both = self.both.lock().expect("lock").clone();
        let (inside, outside): (Vec<f64>, Vec<f64>) =
            both.iter().partition(|t| **t >= control.0 && **t <= control.1 + 0.2);
        eprintln!(
            "entry lab: own VIP sampler: {rounds} rounds; VIP on both hosts: {} in the control window, {} outside",
            inside.len(),
            outside.len()
        );
        assert!(rounds > 50, "the sampler barely ran ({rounds} rounds)");
        assert!(
            !inside.is_empty(),
            "the sampler did not see the VIP the test put on both hosts: it cannot see a duplicate"
        );
        assert!(
            outside.is_empty(),
            "the VIP was on both entry hosts at once (own sampler), at t = {outside:?} s"
        );
    }
}

/// Negative control for the sampler: the VIP added by hand for 1 s to the host that does not
/// hold it, then removed. Returns the window (sampler seconds).
fn duplicate_for_a_second(sampler: &Sampler, vip: &str) -> (f64, f64) {
    let other = ENTRIES
        .iter()
        .find(|h| holds(h, vip) == Some(false))
        .expect("one entry host does not hold the VIP");
    let ns = format!("pgha-{other}");
    let cidr = format!("{vip}/32");
    let from = sampler.now();
    let added = Command::new("ip")
        .args(["-n", &ns, "addr", "add", &cidr, "dev", "eth0"])
        .status()
        .expect("ip");
    assert!(added.success(), "adding the control duplicate failed");
    std::thread::sleep(Duration::from_secs(1));
    let removed = Command::new("ip")
        .args(["-n", &ns, "addr", "del", &cidr, "dev", "eth0"])
        .status()
        .expect("ip");
    assert!(removed.success(), "removing the control duplicate failed");
    (from, sampler.now())
}

/// One entry-loss drill: its report, after the targets.
fn entry_loss(inv: &str, n: usize) -> Value {
    let args = ["drill", inv, "entry-loss", "--yes", "--json"];
    let out = Command::new(env!("CARGO_BIN_EXE_pgha"))
        .args(args)
        .env("CI", "true")
        .output()
        .expect("pgha runs");
    let (o, e) = text(&out);
    common::record(&args, &o, &e);
    eprintln!("{e}");
    let r: Value =
        serde_json::from_str(&o).unwrap_or_else(|err| panic!("entry-loss {n}: no JSON report ({err}):\n{o}\n{e}"));
    eprintln!(
        "entry lab: drill {n}: rw_unavailable_s={} rw_back_after_s={} vip_moved_after_s={} failed={} of {} holder {} -> {} two_holders={} samples={}",
        r["rw_unavailable_s"],
        r["rw_back_after_s"],
        r["vip_moved_after_s"],
        r["failed_attempts"],
        r["attempts"],
        r["holder_before"],
        r["holder_after"],
        r["two_holders"],
        r["samples"]
    );
    assert_eq!(r["failed_step"], Value::Null, "drill {n}: {e}");
    assert!(
        r["rw_unavailable_s"].as_f64().is_some_and(|g| g <= 5.0),
        "drill {n}: RW gap over 5 s: {}",
        r["rw_unavailable_s"]
    );
    assert_eq!(
        r["two_holders"].as_array().map(Vec::len),
        Some(0),
        "drill {n}: {}",
        r["two_holders"]
    );
    assert_ne!(r["holder_before"], r["holder_after"], "drill {n}: the VIP did not move");
    assert_eq!(r["passed"], true, "drill {n}: {r}");
    assert!(out.status.success(), "drill {n}: exit {}", out.status);
    r
}

/// The client host of the direct-TLS scenario: a Debian 13 lab host with libpq 17 (the
/// controller's psql 15 has no `sslnegotiation`); its copy of the current CA bundle.
const CLIENT: &str = "node1";
const CLIENT_CA: &str = "/etc/pgha/tls/ca-bundle.pem";

/// `uri` with the controller's `sslrootcert=` replaced by [`CLIENT_CA`].
fn on_client(u: &str) -> String {
    let (head, tail) = u.split_once("sslrootcert=").expect("sslrootcert");
    let rest = tail.split_once('&').map_or(String::new(), |(_, r)| format!("&{r}"));
    format!("{head}sslrootcert={CLIENT_CA}{rest}")
}

/// A shell script on the [`CLIENT`] host: `$1` is the password, `$2`.. `args`; (ok, output).
fn client_sh(script: &str, password: &str, args: &[&str]) -> (bool, String) {
    let mut argv = vec!["lab", "ssh", CLIENT, "--", "sh", "-c", script, "sh", password];
    argv.extend_from_slice(args);
    let out = common::pgha(&argv);
    let (o, e) = text(&out);
    (out.status.success(), format!("{o}{e}"))
}

/// psql on the [`CLIENT`] host (libpq 17); (ok, output).
fn client_psql(u: &str, password: &str, sql: &str) -> (bool, String) {
    client_sh(
        r#"PGPASSWORD="$1" PGCONNECT_TIMEOUT=5 psql "$2" -XqtA -v ON_ERROR_STOP=1 -c "$3""#,
        password,
        &[u, sql],
    )
}

/// A host's address in the lab inventory (`  name: { address: X, …`).
fn address_of(inv: &str, host: &str) -> String {
    let text = std::fs::read_to_string(inv).expect("lab inventory");
    let line = text
        .lines()
        .find(|l| {
            let l = l.trim_start().trim_start_matches('"');
            l.starts_with(&format!("{host}: {{ address: ")) || l.starts_with(&format!("{host}\": {{ address: "))
        })
        .unwrap_or_else(|| panic!("{host} in the lab inventory"));
    line.split("address: ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .expect("address")
        .trim()
        .to_string()
}

/// The serial of the certificate HAProxy presents on the VIP's `port` to a direct-TLS client
/// (`openssl s_client -alpn postgresql`, from the [`CLIENT`] host).
fn served_serial(vip: &str, port: u16) -> String {
    let (good, out) = client_sh(
        r#"openssl s_client -connect "$2" -servername db.example.com -alpn postgresql < /dev/null 2> /dev/null | openssl x509 -noout -serial"#,
        "-",
        &[&format!("{vip}:{port}")],
    );
    assert!(
        good && out.contains("serial="),
        "openssl s_client on {vip}:{port}: {out}"
    );
    out.trim().trim_start_matches("serial=").to_uppercase()
}

/// The serial of a certificate file on the controller.
fn file_serial(path: &std::path::Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(path)
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_uppercase()
}

/// Connection setup through `u` on the [`CLIENT`] host: the median of `n` `psql -c 'select 1'`
/// runs in milliseconds (each a new connection; psql's own start-up is in every sample).
fn median_connect_ms(u: &str, password: &str, n: u32) -> f64 {
    let (good, out) = client_sh(
        r#"i=0; while [ $i -lt "$3" ]; do a=$(date +%s%N); PGPASSWORD="$1" psql "$2" -XqtA -c 'select 1' > /dev/null || exit 1; b=$(date +%s%N); echo $(( (b - a) / 1000 )); i=$((i + 1)); done"#,
        password,
        &[u, &n.to_string()],
    );
    assert!(good, "timing loop: {out}");
    let mut us: Vec<f64> = out.lines().filter_map(|l| l.trim().parse::<f64>().ok()).collect();
    assert_eq!(us.len(), n as usize, "{out}");
    us.sort_by(f64::total_cmp);
    us[us.len() / 2] / 1000.0
}

#[test]
#[ignore = "lab: boots five machines from inventory/entry-vip.yaml, deploys, crashes entry hosts"]
fn entry_points_behind_a_vip() {
    let _scan = common::lab_test("entry lab test");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("entry-lab");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");
    let inv = dir.join("entry-lab.yaml").display().to_string();
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/inventory/entry-vip.yaml");
    let total = Instant::now();
    let result = std::panic::catch_unwind(|| {
        let mut t = Instant::now();
        ok(&["lab", "up", "--from", source, "--inventory", &inv]);
        step(&mut t, "lab up --from inventory/entry-vip.yaml");
        ok(&["deploy", &inv]);
        step(&mut t, "deploy");
        let vip = vip_of(&inv);

        // 1. verify-full through the VIP by its name, PgBouncer and HAProxy.
        let (bouncer, password) = uri(&inv, &["--database", "app"]);
        assert!(
            bouncer.contains("@db.example.com:6432/") && bouncer.contains(&format!("hostaddr={vip}")),
            "{bouncer}"
        );
        let (good, said) = psql(
            &bouncer,
            &password,
            "CREATE TABLE IF NOT EXISTS entry_t (x int); INSERT INTO entry_t VALUES (1); SELECT count(*) FROM entry_t",
        );
        assert!(good, "psql verify-full through the VIP (PgBouncer): {said}");
        for ro in [false, true] {
            let mut extra = vec!["--database", "app", "--via", "haproxy"];
            if ro {
                extra.push("--ro");
            }
            let (u, p) = uri(&inv, &extra);
            let (good, said) = psql(&u, &p, "SELECT pg_is_in_recovery()");
            assert!(good, "psql verify-full through the VIP (HAProxy, ro={ro}): {said}");
            assert_eq!(
                said.trim(),
                if ro { "t" } else { "f" },
                "HAProxy ro={ro} routed to the wrong kind of node"
            );
        }
        // verify-full checks the name: one the entry points' certificates lack fails on the VIP.
        let wrong = bouncer.replace("@db.example.com:", "@node1:");
        let (good, said) = psql(&wrong, &password, "SELECT 1");
        assert!(
            !good && said.contains("certificate"),
            "a name the VIP's certificate lacks must fail verify-full: {said}"
        );
        let out = common::pgha(&["status", &inv]);
        let (o, e) = text(&out);
        assert!(
            o.contains(&format!("VIP {vip}: held by entry")),
            "pgha status names the VIP's holder:\n{o}\n{e}"
        );
        step(&mut t, "psql verify-full through the VIP, status");

        // 2. entry-loss drills under the drill's writer and the test's own sampler.
        let drills = std::env::var("PGHA_ENTRY_DRILLS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(DRILLS);
        let sampler = Sampler::start(&vip);
        let mut gaps = Vec::new();
        for n in 1..=drills {
            let r = entry_loss(&inv, n);
            gaps.push(r["rw_unavailable_s"].as_f64().unwrap_or(f64::NAN));
            step(&mut t, &format!("entry-loss drill {n}"));
        }
        let control = duplicate_for_a_second(&sampler, &vip);
        std::thread::sleep(Duration::from_millis(300));
        sampler.finish(control);
        gaps.sort_by(f64::total_cmp);
        eprintln!("entry lab: RW gaps {gaps:?}, median {:.2} s", gaps[gaps.len() / 2]);

        // 3. multi-host RW URI with one entry host stopped.
        let (multi, password) = uri(&inv, &["--database", "app", "--multi-host"]);
        assert!(
            multi.contains("@entry1:6432,entry2:6432/") && multi.contains("target_session_attrs=read-write"),
            "{multi}"
        );
        ok(&["lab", "stop", "entry1"]);
        let (good, said) = psql(&multi, &password, "INSERT INTO entry_t VALUES (2) RETURNING x");
        ok(&["lab", "start", "entry1"]);
        assert!(good && said.trim() == "2", "multi-host URI with entry1 stopped: {said}");
        let (o, e) = ok(&["uri", &inv, "--ro", "--multi-host"]);
        assert!(
            o.contains("load_balance_hosts=random") && e.contains("libpq 16"),
            "{o}{e}"
        );
        step(&mut t, "multi-host URI with entry1 stopped");

        // 4. HAProxy-terminated direct TLS (haproxy.direct_tls in inventory/entry-vip.yaml),
        //    psql 17 on a lab host: writes on the primary, reads on a replica.
        let (direct_rw, password) = uri(&inv, &["--database", "app", "--via", "haproxy", "--direct-tls"]);
        assert!(
            direct_rw.contains("@db.example.com:5002/")
                && direct_rw.contains("sslnegotiation=direct")
                && direct_rw.contains("channel_binding=disable"),
            "{direct_rw}"
        );
        let direct_rw = on_client(&direct_rw);
        let direct_ro = on_client(&uri(&inv, &["--database", "app", "--via", "haproxy", "--direct-tls", "--ro"]).0);
        let nodes: Vec<(String, String)> = ["node1", "node2"]
            .iter()
            .map(|n| (n.to_string(), address_of(&inv, n)))
            .collect();
        let recovery_of = |addr: &str| {
            let (node, _) = nodes
                .iter()
                .find(|(_, a)| a == addr)
                .unwrap_or_else(|| panic!("{addr} is no node: {nodes:?}"));
            common::psql_on(node, "select pg_is_in_recovery()")
        };
        let (good, said) = client_psql(
            &direct_rw,
            &password,
            "INSERT INTO entry_t VALUES (3); SELECT pg_is_in_recovery()::text || ' ' || host(inet_server_addr())",
        );
        assert!(good, "direct TLS through HAProxy (RW): {said}");
        let (rec, addr) = said.trim().split_once(' ').unwrap_or_else(|| panic!("{said}"));
        assert_eq!(
            (rec, recovery_of(addr).as_str()),
            ("false", "f"),
            "RW direct TLS reached {addr}, not the primary"
        );
        let (good, said) = client_psql(
            &direct_ro,
            &password,
            "SELECT pg_is_in_recovery()::text || ' ' || host(inet_server_addr())",
        );
        assert!(good, "direct TLS through HAProxy (RO): {said}");
        let (rec, addr) = said.trim().split_once(' ').unwrap_or_else(|| panic!("{said}"));
        assert_eq!(
            (rec, recovery_of(addr).as_str()),
            ("true", "t"),
            "RO direct TLS reached {addr}, not a replica"
        );
        // Channel binding cannot survive the re-encryption: libpq's default (prefer) picks
        // SCRAM-SHA-256-PLUS and PostgreSQL refuses it (why the URI says disable).
        let (good, said) = client_psql(
            &direct_rw.replace("&channel_binding=disable", ""),
            &password,
            "SELECT 1",
        );
        assert!(
            !good && said.contains("channel binding"),
            "channel_binding=prefer through a re-encrypting HAProxy: {said}"
        );
        // A plain SSLRequest client still works through PgBouncer (end-to-end TLS), and the
        // pass-through port is untouched.
        let (good, said) = psql(&bouncer, &password, "SELECT 1");
        assert!(good && said.trim() == "1", "SSLRequest through PgBouncer: {said}");
        step(&mut t, "direct TLS through HAProxy: RW on the primary, RO on a replica");

        // Negative control: the same frontends without `alpn postgresql` on the bind (a
        // template override) must fail, as libpq 17 refuses a direct session without ALPN;
        // then the real template again.
        let broken = dir.join("templates-no-alpn");
        std::fs::create_dir_all(broken.join("haproxy")).expect("override dir");
        let cfg = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/templates/haproxy/haproxy.cfg.j2"))
            .expect("template");
        let no_alpn = cfg.replace(" alpn postgresql ssl-min-ver", " ssl-min-ver");
        assert_ne!(no_alpn, cfg, "the bind lines carry alpn postgresql");
        std::fs::write(broken.join("haproxy/haproxy.cfg.j2"), no_alpn).expect("override");
        ok(&["deploy", &inv, "--templates", &broken.display().to_string()]);
        let (good, said) = client_psql(&direct_rw, &password, "SELECT 1");
        ok(&["deploy", &inv]);
        assert!(
            !good && said.contains("ALPN"),
            "without alpn on HAProxy's bind a direct-TLS client must fail: {said}"
        );
        let (good, said) = client_psql(&direct_rw, &password, "SELECT 1");
        assert!(good, "direct TLS again after the real template is back: {said}");
        step(&mut t, "negative control: no ALPN on the bind fails, restored");

        // Connection setup: direct TLS terminated by HAProxy vs SSLRequest passed through.
        let sslrequest_rw = on_client(&uri(&inv, &["--database", "app", "--via", "haproxy"]).0);
        let n = 50;
        let direct_ms = median_connect_ms(&direct_rw, &password, n);
        let request_ms = median_connect_ms(&sslrequest_rw, &password, n);
        eprintln!(
            "entry lab: connection setup on {CLIENT} (psql -c 'select 1', median of {n}): direct TLS via HAProxy termination {direct_ms:.1} ms, SSLRequest via HAProxy pass-through {request_ms:.1} ms"
        );
        step(&mut t, "connection setup figures");

        // 5. A leaf rotation under both kinds of clients: pgbench -C with direct TLS on the
        //    lab host, pgbench -C with SSLRequest through PgBouncer on the controller.
        let before = served_serial(&vip, 5002);
        let script = dir.join("load.sql");
        std::fs::write(&script, "INSERT INTO entry_t VALUES (4);\n").expect("script");
        let bouncer_load = common::load::pgbench(bouncer.clone(), password.clone(), script, 5, None);
        let stop = Arc::new(AtomicBool::new(false));
        let direct_load = {
            let (stop, u, pw) = (stop.clone(), direct_rw.clone(), password.clone());
            std::thread::spawn(move || {
                let (mut processed, mut failed, mut problems) = (0u64, 0u64, Vec::new());
                while !stop.load(Ordering::SeqCst) {
                    let (good, out) = client_sh(
                        r#"echo 'INSERT INTO entry_t VALUES (5);' > /tmp/direct.sql && PGPASSWORD="$1" timeout 60 /usr/lib/postgresql/17/bin/pgbench -n -C -c 2 -T 5 -f /tmp/direct.sql "$2""#,
                        &pw,
                        &[&u],
                    );
                    let num = |key: &str| {
                        out.lines()
                            .find_map(|l| l.trim().strip_prefix(key))
                            .and_then(|r| r.split_whitespace().next())
                            .and_then(|n| n.split('/').next())
                            .and_then(|n| n.parse::<u64>().ok())
                    };
                    processed += num("number of transactions actually processed:").unwrap_or(0);
                    failed += num("number of failed transactions:").unwrap_or(0);
                    if !good || out.contains("aborted") {
                        failed += 1;
                        problems.push(out);
                    }
                }
                (processed, failed, problems)
            })
        };
        std::thread::sleep(Duration::from_secs(3));
        let rotation = Instant::now();
        ok(&["rotate-certs", &inv]);
        let rotate_s = rotation.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::SeqCst);
        let bouncer_totals = bouncer_load.finish();
        let (processed, failed, problems) = direct_load.join().expect("direct load");
        eprintln!(
            "entry lab: rotate-certs {rotate_s:.1} s under load: direct TLS pgbench {processed} transactions, {failed} failed; PgBouncer pgbench {} transactions, {} failed",
            bouncer_totals.processed, bouncer_totals.failed
        );
        assert!(processed > 0 && bouncer_totals.processed > 0, "both loads ran");
        assert_eq!(failed, 0, "direct-TLS clients failed during the rotation: {problems:?}");
        assert_eq!(
            bouncer_totals.failed, 0,
            "PgBouncer clients failed during the rotation: {:?}",
            bouncer_totals.problems
        );
        let after = served_serial(&vip, 5002);
        let state = std::path::Path::new(&inv).parent().expect("dir").join(".pgha/certs");
        let issued: Vec<String> = ENTRIES
            .iter()
            .map(|h| file_serial(&state.join(h).join("haproxy-server.crt")))
            .collect();
        assert!(
            after != before && issued.contains(&after),
            "after the rotation HAProxy serves {after} (before {before}, issued {issued:?})"
        );
        step(&mut t, "leaf rotation under direct-TLS and PgBouncer load");

        // 6. a second deploy changes nothing.
        let (o, _) = ok(&["deploy", &inv]);
        let (_, changed, failed) = common::total(&o);
        assert_eq!((changed, failed), (0, 0), "the second deploy changed something:\n{o}");
        step(&mut t, "second deploy");
    });
    let down = Instant::now();
    let _ = common::pgha(&["lab", "down"]);
    eprintln!("entry lab: lab down: {:.1} s", down.elapsed().as_secs_f64());
    eprintln!("entry lab: total {:.1} s", total.elapsed().as_secs_f64());
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}
