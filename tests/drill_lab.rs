//! The failure drills on the lab (root; `#[ignore]`d, .ci/test runs it), run the way an operator would:
//! the lab cluster (deployed first when `pgha verify` does not pass on it), then
//! `pgha drill … --yes --json` for failover (leader crash), quorum-loss (two of three etcd
//! members down) and partition (leader cut off), each under a writer through PgBouncer. Every
//! drill: no acknowledged row lost, never two primaries, no interleaved writes, and
//! `pgha verify` passes afterwards. Failover: RW back within 30 s, the old leader rejoins.
//! Quorum loss: RW refused while quorum is lost, RO served, RW back after. Partition: a new
//! leader elsewhere, the old one stops taking writes within the TTL.
#![allow(clippy::disallowed_methods)] // runs the real binary

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::{ok, pgha, text};

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
    let start = Instant::now();
    let out = pgha(&["drill", inv, name, "--yes", "--json"]);
    let (o, e) = text(&out);
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

    // Failover: the leader's machine crashes; a replica takes over within 30 s.
    let r = drill(&inv, "failover");
    new_leader_elsewhere(&r, "failover");
    let down = num(&r, "rw_unavailable_s").expect("rw_unavailable_s");
    assert!(
        down <= 30.0,
        "failover: RW unavailable {down:.1} s > 30 s (ttl {}, loop_wait {}, HAProxy inter {} ms rise {}): {}",
        r["ttl"],
        r["loop_wait"],
        r["haproxy_inter_ms"],
        r["haproxy_rise"],
        r["tuning"]
    );
    assert_eq!(r["passed"], true, "failover: {}", r["failures"]);
    verify_eventually(&inv);

    // Quorum loss: two of three etcd members down; the primary demotes (RW refused, RO
    // served), and RW comes back once etcd is restored.
    let r = drill(&inv, "quorum-loss");
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
    let r = drill(&inv, "partition");
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
    let r = drill(&inv, "quorum-loss");
    assert_eq!(r["failsafe_mode"], true, "{r}");
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
