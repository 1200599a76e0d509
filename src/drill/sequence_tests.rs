//! The drill's sequence end to end without a cluster: scripted hosts whose Patroni answers
//! follow the faults they are sent, and a stand-in psql (a shell script keeping the rows in a
//! file, refusing writes while a `down` file exists). Never evidence that a real cluster
//! behaves so; the lab test (tests/drill_lab.rs) is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::cluster::Hosts;
use super::sequence::{self, Pace, Setup};
use super::writer::SqlTarget;
use super::{Kind, Report, RunId, now_ms};
use crate::inventory::Inventory;
use crate::pki::Secret;
use crate::transport::{self, Cmd, Conn, Endpoint, Output, Transport, TransportError};

const INVENTORY: &str = "cluster: { name: t }\nhosts:\n\
    \x20 node1: { address: 192.0.2.11, dc: dc1, roles: [postgres] }\n\
    \x20 node2: { address: 192.0.2.12, dc: dc1, roles: [postgres] }\n\
    \x20 node3: { address: 192.0.2.13, dc: dc2, roles: [postgres] }\n\
    \x20 etcd1: { address: 192.0.2.21, dc: dc1, roles: [etcd] }\n\
    \x20 etcd2: { address: 192.0.2.22, dc: dc1, roles: [etcd] }\n\
    \x20 etcd3: { address: 192.0.2.23, dc: dc2, roles: [etcd] }\n\
    \x20 haproxy: { address: 192.0.2.31, dc: dc2, roles: [haproxy] }\n\
    \x20 pgbouncer: { address: 192.0.2.41, dc: dc2, roles: [pgbouncer] }\n";

/// Stands in for psql: `$6` is the SQL (argv: conninfo -XqtA -v ON_ERROR_STOP=1 -c SQL).
const PSQL: &str = r#"#!/bin/sh
d="$(dirname "$0")"
[ "$1" = --version ] && { echo "psql (stand-in)"; exit 0; }
sql=$6
case "$sql" in
  CREATE*) ;;
  INSERT*)
    if [ -e "$d/down" ]; then echo "psql: error: server closed the connection unexpectedly" >&2; exit 2; fi
    n=${sql#*\', }
    n=${n%%,*}
    echo "$n" >> "$d/rows"
    cat "$d/server"
    ;;
  "SELECT n "*) cat "$d/rows" 2>/dev/null ;;
  "SELECT pg_is_in_recovery()") echo t ;;
  *) echo "unexpected SQL: $sql" >&2; exit 3 ;;
esac
"#;

/// Whether `line` is the undo of a kill or a stop of `unit` (the hold removed, then started),
/// not the dead-man timer that would run the same later.
fn is_start(line: &str, unit: &str) -> bool {
    !line.contains("systemd-run") && line.contains("systemctl start") && line.ends_with(&format!(" pgha {unit}"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Healthy,
    Promoted,
    Rejoined,
}

/// What the scripted hosts share: Patroni's state, the stand-in psql's directory, every command.
struct World {
    dir: PathBuf,
    start_ms: i64,
    phase: Mutex<Phase>,
    /// A killed leader is replaced (false: nobody takes over).
    promote: bool,
    /// node3 is stopped: the cluster is unhealthy from the start.
    unhealthy: bool,
    kill_ms: AtomicI64,
    promoted_ms: AtomicI64,
    etcd_down: AtomicBool,
    log: Mutex<Vec<(String, String)>>,
    /// Ctrl-C, pressed this long after the kill.
    interrupt: Mutex<Option<(Duration, Arc<watch::Sender<bool>>)>>,
    /// systemd restarts the killed unit (the host-side check of the kill reports it).
    restarts: AtomicBool,
}

impl World {
    fn new(dir: &Path, promote: bool, unhealthy: bool) -> Arc<Self> {
        std::fs::write(dir.join("psql"), PSQL).expect("write psql");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.join("psql"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        std::fs::write(dir.join("server"), "192.0.2.11\n").expect("write server");
        Arc::new(Self {
            dir: dir.to_path_buf(),
            start_ms: now_ms(),
            phase: Mutex::new(Phase::Healthy),
            promote,
            unhealthy,
            kill_ms: AtomicI64::new(0),
            promoted_ms: AtomicI64::new(0),
            etcd_down: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
            interrupt: Mutex::new(None),
            restarts: AtomicBool::new(false),
        })
    }

    fn phase(&self) -> Phase {
        *self.phase.lock().expect("lock")
    }

    fn set_down(&self, down: bool) {
        let f = self.dir.join("down");
        if down {
            std::fs::write(&f, "").expect("down");
        } else {
            let _ = std::fs::remove_file(&f);
        }
    }

    fn cluster(&self) -> String {
        let member = |name: &str, role: &str, state: &str| {
            format!(r#"{{"name": "{name}", "role": "{role}", "state": "{state}", "timeline": 2, "lag": 0}}"#)
        };
        let node3 = if self.unhealthy {
            member("node3", "replica", "stopped")
        } else {
            member("node3", "replica", "streaming")
        };
        let members = match self.phase() {
            Phase::Healthy => vec![
                member("node1", "leader", "running"),
                member("node2", "sync_standby", "streaming"),
                node3,
            ],
            Phase::Promoted => vec![
                member("node2", "leader", "running"),
                member("node3", "sync_standby", "streaming"),
            ],
            Phase::Rejoined => vec![
                member("node1", "replica", "streaming"),
                member("node2", "leader", "running"),
                member("node3", "sync_standby", "streaming"),
            ],
        };
        format!(r#"{{"members": [{}], "scope": "t"}}"#, members.join(", "))
    }

    /// A sampler log: node1 primary until killed (then no answer), node2 primary once promoted.
    fn samples(&self, host: &str) -> String {
        let (kill, promoted) = (
            self.kill_ms.load(Ordering::SeqCst),
            self.promoted_ms.load(Ordering::SeqCst),
        );
        let mut out = String::new();
        let mut t = self.start_ms;
        while t < now_ms() {
            let state = match host {
                "node1" if kill == 0 || t < kill => "f",
                "node1" if self.phase() == Phase::Rejoined => "t",
                "node1" => "x",
                "node2" if promoted != 0 && t >= promoted => "f",
                _ => "t",
            };
            out.push_str(&format!("{t} {state}\n"));
            t += 200;
        }
        out
    }

    fn answer(self: &Arc<Self>, host: &str, line: &str) -> String {
        if line.contains("systemd-run") {
            return String::new();
        }
        if line.contains("/cluster") {
            return self.cluster();
        }
        if line.contains("/config") {
            return r#"{"ttl": 30, "loop_wait": 10, "retry_timeout": 10, "synchronous_mode": "on"}"#.into();
        }
        if line.contains("systemctl kill") {
            self.kill_ms.store(now_ms(), Ordering::SeqCst);
            self.set_down(true);
            if let Some((after, tx)) = self.interrupt.lock().expect("lock").take() {
                std::thread::spawn(move || {
                    std::thread::sleep(after);
                    let _ = tx.send(true);
                });
            }
            if self.promote {
                *self.phase.lock().expect("lock") = Phase::Promoted;
                let world = self.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(500));
                    world.promoted_ms.store(now_ms(), Ordering::SeqCst);
                    std::fs::write(world.dir.join("server.new"), "192.0.2.12\n").expect("write");
                    std::fs::rename(world.dir.join("server.new"), world.dir.join("server")).expect("rename");
                    world.set_down(false);
                });
            }
            return String::new();
        }
        if is_start(line, "patroni") && self.phase() == Phase::Promoted {
            *self.phase.lock().expect("lock") = Phase::Rejoined;
        }
        if line == "systemctl stop etcd" {
            self.etcd_down.store(true, Ordering::SeqCst);
            self.set_down(true);
        }
        if is_start(line, "etcd") {
            self.etcd_down.store(false, Ordering::SeqCst);
            self.set_down(false);
        }
        if line.contains("cat ") && line.contains("/var/tmp/pgha-drill-") {
            return self.samples(host);
        }
        String::new()
    }

    fn commands(&self) -> Vec<(String, String)> {
        self.log.lock().expect("lock").clone()
    }

    /// Index of the first command on `host` containing `needle`.
    fn position(&self, host: &str, needle: &str) -> Option<usize> {
        self.commands()
            .iter()
            .position(|(h, l)| h == host && l.contains(needle))
    }
}

struct Scripted {
    ep: Endpoint,
    world: Arc<World>,
}

#[async_trait::async_trait]
impl Transport for Scripted {
    fn endpoint(&self) -> &Endpoint {
        &self.ep
    }

    async fn exec(&self, cmd: &Cmd, _stdin: Option<&[u8]>, _timeout: Duration) -> Result<Output, TransportError> {
        let line = cmd.command_line(false);
        self.world
            .log
            .lock()
            .expect("lock")
            .push((self.ep.name.clone(), line.clone()));
        if line.contains("systemctl kill") && self.world.restarts.load(Ordering::SeqCst) {
            return Ok(Output {
                code: Some(3),
                stdout: b"the fault had no effect: systemd restarted patroni.service (ActiveState=active, NRestarts 0 -> 1)\n"
                    .to_vec(),
                stderr: Vec::new(),
            });
        }
        Ok(Output {
            code: Some(0),
            stdout: self.world.answer(&self.ep.name, &line).into_bytes(),
            stderr: Vec::new(),
        })
    }

    async fn close(&self) -> Result<(), TransportError> {
        Ok(())
    }
}

fn inventory() -> Inventory {
    crate::inventory::parse(Path::new("t.yaml"), INVENTORY.as_bytes())
        .expect("valid")
        .inventory
}

struct Drill {
    world: Arc<World>,
    report: Report,
    progress: Vec<String>,
}

/// Runs a drill on scripted hosts; `interrupt_after`: Ctrl-C that long after the kill.
async fn drill(kind: Kind, promote: bool, unhealthy: bool, interrupt_after: Option<Duration>) -> Drill {
    drill_in(World::new, kind, promote, unhealthy, interrupt_after, false).await
}

async fn drill_in(
    new: fn(&Path, bool, bool) -> Arc<World>,
    kind: Kind,
    promote: bool,
    unhealthy: bool,
    interrupt_after: Option<Duration>,
    restarts: bool,
) -> Drill {
    let dir = tempfile::tempdir().expect("tempdir");
    let world = new(dir.path(), promote, unhealthy);
    world.restarts.store(restarts, Ordering::SeqCst);
    let inv = inventory();
    let conns: BTreeMap<String, Conn> = inv
        .hosts
        .iter()
        .map(|h| {
            let conn: Conn = Arc::new(Scripted {
                ep: Endpoint::from_host(h, false),
                world: world.clone(),
            });
            (h.name.to_string(), conn)
        })
        .collect();
    let (tx, cancel) = watch::channel(false);
    let tx = Arc::new(tx);
    if let Some(after) = interrupt_after {
        *world.interrupt.lock().expect("lock") = Some((after, tx.clone()));
    }
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let setup = Setup {
        hosts: Hosts::preopened(&inv, transport::Kind::Openssh, conns),
        kind,
        run: RunId::new("test-1").expect("valid"),
        lab: None,
        sql: Arc::new(SqlTarget {
            program: dir.path().join("psql").display().to_string(),
            rw: "host=pgbouncer dbname=postgres_rw".into(),
            ro: "host=pgbouncer dbname=postgres_ro".into(),
            password: Secret::new("pw".to_string()),
        }),
        db: "postgres".into(),
        remote_ca: "/etc/pgha/tls/ca-bundle-1.pem".into(),
        progress: Arc::new(move |l: &str| sink.lock().expect("lock").push(l.to_string())),
        cancel,
        pace: Pace {
            baseline: Duration::from_millis(500),
            tail: Duration::from_millis(300),
        },
        inv,
    };
    let report = sequence::run(&setup).await;
    let progress = lines.lock().expect("lock").clone();
    drop(tx);
    drop(dir);
    Drill {
        world,
        report,
        progress,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_on_real_hosts_kills_patroni_and_counts_every_row() {
    let d = drill(Kind::Failover, true, false, None).await;
    let r = &d.report;
    let progress = d.progress.join("\n");
    assert!(r.passed, "{:?}\n{progress}", r.failures);
    assert_eq!(r.old_leader.as_deref(), Some("node1"));
    assert_eq!(r.new_leader.as_deref(), Some("node2"));
    assert!(r.committed > 5, "{r:?}");
    assert_eq!(r.present, Some(r.committed));
    assert_eq!(r.lost, Some(0));
    assert_eq!(r.two_primaries_s, 0.0, "{:?}", r.overlaps);
    assert!(!r.interleaved_writes);
    let down = r.rw_unavailable_s.expect("measured");
    assert!((0.3..5.0).contains(&down), "{down}\n{progress}");
    assert!(r.rw_back_after_s.is_some() && r.rejoined_after_s.is_some(), "{r:?}");
    assert_eq!(
        r.faults,
        ["node1: systemctl kill --kill-whom=all --signal=SIGKILL patroni"]
    );
    // Dead-man armed before the kill; Patroni started again; the dead-man disarmed after.
    let w = &d.world;
    let armed = w
        .position("node1", "pgha-drill-test-1-undo-patroni --quiet")
        .expect("armed");
    let killed = w.position("node1", "systemctl kill").expect("killed");
    let started = w
        .commands()
        .iter()
        .position(|(h, l)| h == "node1" && is_start(l, "patroni"))
        .expect("started");
    let disarmed = w
        .commands()
        .iter()
        .position(|(h, l)| h == "node1" && l.contains(".timer") && l.contains("pgha-drill-test-1-undo-patroni"));
    assert!(armed < killed && killed < started, "{:?}", w.commands());
    assert!(disarmed.is_some_and(|i| i > started), "{:?}", w.commands());
    // A sampler on every PostgreSQL node, stopped and its log removed at the end.
    for node in ["node1", "node2", "node3"] {
        assert!(
            w.position(node, "systemd-run --unit=pgha-drill-test-1 ").is_some(),
            "{node}"
        );
        assert!(
            w.position(node, "rm -f /var/tmp/pgha-drill-test-1.log").is_some(),
            "{node}"
        );
    }
    assert!(progress.contains("new leader node2"), "{progress}");
    assert!(progress.contains("[t+"), "{progress}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_loss_refuses_writes_serves_reads_and_recovers() {
    let d = drill(Kind::QuorumLoss, true, false, None).await;
    let r = &d.report;
    let progress = d.progress.join("\n");
    assert!(r.passed, "{:?}\n{progress}", r.failures);
    assert_eq!(r.faults, ["etcd1: systemctl stop etcd", "etcd2: systemctl stop etcd"]);
    assert!(r.rw_refused_after_s.is_some(), "{progress}");
    assert_eq!(r.ro_served, Some(true));
    assert!(r.rw_back_after_restore_s.is_some(), "{progress}");
    assert_eq!(r.lost, Some(0));
    assert!(!d.world.etcd_down.load(Ordering::SeqCst), "etcd left stopped");
    assert!(
        d.world.position("etcd3", "systemctl").is_none(),
        "the third member is left alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_undoes_the_fault_before_returning() {
    // Nobody takes over: the drill would wait for minutes; Ctrl-C comes 1.5 s after the kill.
    let d = drill(Kind::Failover, false, false, Some(Duration::from_millis(1500))).await;
    let r = &d.report;
    assert!(r.interrupted && !r.passed, "{r:?}");
    let w = &d.world;
    let killed = w.position("node1", "systemctl kill").expect("killed");
    let started = w
        .commands()
        .iter()
        .position(|(h, l)| h == "node1" && is_start(l, "patroni"))
        .expect("Patroni started again");
    assert!(killed < started);
    assert!(d.progress.join("\n").contains("interrupted: undoing the fault"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_cluster_is_not_faulted() {
    let d = drill(Kind::Failover, true, true, None).await;
    let r = &d.report;
    assert!(!r.passed);
    assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
    assert!(r.failures[0].contains("node3 is replica stopped"), "{:?}", r.failures);
    assert!(r.faults.is_empty());
    let touched: Vec<(String, String)> = d
        .world
        .commands()
        .into_iter()
        .filter(|(_, l)| l.contains("systemctl") || l.contains("systemd-run"))
        .collect();
    assert!(touched.is_empty(), "{touched:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_that_systemd_undid_fails_the_drill_at_once() {
    // The host-side check of the kill sees systemd restart Patroni: the drill says so and
    // undoes, instead of waiting out the failover bound (minutes) for a leader that never moves.
    let started = std::time::Instant::now();
    let d = drill_in(World::new, Kind::Failover, false, false, None, true).await;
    let r = &d.report;
    assert!(!r.passed, "{r:?}");
    assert!(
        r.failures
            .iter()
            .any(|f| f.contains("node1: the fault had no effect: systemd restarted patroni")),
        "{:?}",
        r.failures
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        d.world
            .commands()
            .iter()
            .any(|(h, l)| h == "node1" && is_start(l, "patroni")),
        "undone anyway: {:?}",
        d.world.commands()
    );
}
