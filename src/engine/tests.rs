//! The engine against scripted hosts (`transport::Fake`): ordering, idempotence, check mode,
//! handlers and failure isolation. Never evidence that deploying works: the lab tests are.

use std::path::Path;
use std::sync::Mutex as StdMutex;

use sha2::{Digest, Sha256};

use super::*;
use crate::transport::fake::{Fake, Rule, answer};

struct Recorder(StdMutex<Vec<Event>>);

impl Reporter for Recorder {
    fn event(&self, e: &Event) {
        if let Ok(mut v) = self.0.lock() {
            v.push(e.clone());
        }
    }
}

/// Hosts answer from a table: `(host, rules)`; unknown hosts are unreachable.
struct FakeConnector {
    rules: BTreeMap<String, Vec<Rule>>,
    fakes: StdMutex<BTreeMap<String, Arc<Fake>>>,
}

#[async_trait::async_trait]
impl Connector for FakeConnector {
    async fn connect(&self, host: &Host) -> Result<Conn, TransportError> {
        let name = host.name.to_string();
        let Some(rules) = self.rules.get(&name) else {
            return Err(TransportError::Unreachable {
                host: name,
                target: "x".into(),
                detail: "refused".into(),
                hint: "none".into(),
            });
        };
        let fake = Arc::new(Fake::new(&name, rules.clone()));
        if let Ok(mut f) = self.fakes.lock() {
            f.insert(name, fake.clone());
        }
        Ok(fake)
    }
}

fn inv() -> Inventory {
    let text = "cluster: {name: t}\nhosts:\n  a: {address: 10.0.0.1, dc: x, roles: [postgres, etcd, haproxy, pgbouncer]}\n  b: {address: 10.0.0.2, dc: y, roles: [postgres]}\n";
    crate::inventory::parse(Path::new("t.yaml"), text.as_bytes())
        .expect("valid")
        .inventory
}

const PLAYBOOK: &str = "plays:
  - name: files
    hosts: all
    tasks:
      - name: conf
        file: { path: /etc/app.conf, content: \"hello {{ host.name }}\\n\" }
        notify: [reload app, restart app]
      - name: app running
        service: { name: app, state: started }
    handlers:
      - name: reload app
        service: { name: app, state: reloaded }
      - name: restart app
        service: { name: app, state: restarted }
  - name: second
    hosts: [b]
    tasks:
      - name: marker
        command: { argv: [touch, /etc/marker], creates: /etc/marker }
";

fn probe_output(host: &str, conf_matches: bool, marker: bool) -> String {
    let sha = hex::encode(Sha256::digest(format!("hello {host}\n").as_bytes()));
    let conf = if conf_matches {
        format!("F\t644\troot\troot\t{sha}\t/etc/app.conf")
    } else {
        "N\t/etc/app.conf".into()
    };
    let marker = if marker {
        "F\t644\troot\troot\tx\t/etc/marker"
    } else {
        "N\t/etc/marker"
    };
    format!(
        "@@pgha:os\nID=debian\nVERSION_CODENAME=trixie\n@@pgha:clock\n1\n@@pgha:disk\n@@pgha:ports\n@@pgha:packages\n@@pgha:units\nId=app.service\nLoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=enabled\nMainPID=9\n\n@@pgha:files\n{conf}\n{marker}\n"
    )
}

async fn run_with(
    rules: BTreeMap<String, Vec<Rule>>,
    check: bool,
) -> (Recap, Vec<Event>, BTreeMap<String, Vec<String>>) {
    run_playbook(PLAYBOOK, rules, check).await
}

async fn run_playbook(
    playbook: &str,
    rules: BTreeMap<String, Vec<Rule>>,
    check: bool,
) -> (Recap, Vec<Event>, BTreeMap<String, Vec<String>>) {
    let inv = inv();
    let pb = crate::playbook::parse(Path::new("pb.yaml"), playbook.as_bytes(), &inv).expect("playbook");
    let connector = FakeConnector {
        rules,
        fakes: StdMutex::new(BTreeMap::new()),
    };
    let rec = Arc::new(Recorder(StdMutex::new(Vec::new())));
    let opts = Options {
        check,
        ..Options::default()
    };
    let recap = run(
        &inv,
        &pb,
        &BTreeMap::new(),
        &opts,
        &connector,
        rec.clone(),
        Arc::new(AtomicBool::new(false)),
    )
    .await;
    let cmds = connector
        .fakes
        .lock()
        .expect("lock")
        .iter()
        .map(|(k, f)| (k.clone(), f.commands()))
        .collect();
    let events = rec.0.lock().expect("lock").clone();
    (recap, events, cmds)
}

fn rules(host: &str, converged: bool) -> Vec<Rule> {
    vec![answer("@@pgha:os", &probe_output(host, converged, converged))]
}

#[tokio::test]
async fn a_converged_host_costs_one_round_trip_and_changes_nothing() {
    let table = [("a", rules("a", true)), ("b", rules("b", true))]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let (recap, _, cmds) = run_with(table, false).await;
    assert_eq!(recap.total().changed, 0);
    assert_eq!(recap.total().failed, 0);
    assert_eq!(recap.hosts["a"].round_trips, 1, "{:?}", cmds["a"]);
    assert_eq!(recap.hosts["b"].round_trips, 1, "{:?}", cmds["b"]);
}

#[tokio::test]
async fn changes_are_applied_and_handlers_run_once_with_restart_covering_reload() {
    let table = [("a", rules("a", false)), ("b", rules("b", true))]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let (recap, _, cmds) = run_with(table, false).await;
    assert_eq!(recap.hosts["a"].changed, 2, "file + restart handler");
    assert_eq!(recap.hosts["b"].changed, 0);
    let a = &cmds["a"];
    assert!(
        a.iter().any(|c| c.contains("mktemp") && c.contains("/etc/app.conf")),
        "{a:?}"
    );
    assert!(a.iter().any(|c| c == "systemctl restart app.service"), "{a:?}");
    assert!(
        !a.iter().any(|c| c.contains("systemctl reload")),
        "restart covers reload: {a:?}"
    );
}

#[tokio::test]
async fn check_mode_sends_nothing_but_probes() {
    let table = [("a", rules("a", false)), ("b", rules("b", false))]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let (recap, events, cmds) = run_with(table, true).await;
    assert!(recap.check);
    // The file would change, so its notified handler would run (restart covering reload).
    assert_eq!(recap.hosts["a"].changed, 2, "file + restart");
    assert_eq!(recap.hosts["b"].changed, 3, "file + restart + marker");
    for (host, list) in &cmds {
        for c in list {
            assert!(
                c.contains("@@pgha:os"),
                "{host}: check mode sent a non-probe command: {c}"
            );
        }
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::TaskDone { summary, .. } if summary.contains("create /etc/app.conf")))
    );
}

#[tokio::test]
async fn a_failed_host_stops_its_later_plays_only() {
    let mut b = rules("b", false);
    b.insert(
        0,
        Rule {
            needle: "touch".into(),
            output: crate::transport::Output {
                code: Some(1),
                stdout: vec![],
                stderr: b"touch: cannot touch\n".to_vec(),
            },
        },
    );
    let table = [("a", rules("a", true)), ("b", b)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let (recap, events, _) = run_with(table, false).await;
    assert_eq!(recap.hosts["b"].failed, 1);
    assert_eq!(recap.hosts["a"].failed, 0);
    let failure = events.iter().find_map(|e| match e {
        Event::HostFailed {
            host,
            play,
            task,
            error,
        } => Some((host.clone(), play.clone(), task.clone(), error.clone())),
        _ => None,
    });
    let (host, play, task, error) = failure.expect("a failure event");
    assert_eq!((host.as_str(), play.as_str(), task.as_str()), ("b", "second", "marker"));
    assert!(
        error.contains("touch /etc/marker") && error.contains("exited with 1") && error.contains("cannot touch"),
        "{error}"
    );
}

#[tokio::test]
async fn an_unreachable_host_is_reported_and_others_run() {
    let table = [("a", rules("a", true))]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let (recap, events, _) = run_with(table, false).await;
    assert!(recap.hosts["b"].unreachable);
    assert_eq!(recap.hosts["a"].ok, 2);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::HostFailed { host, .. } if host == "b"))
    );
    assert!(!recap.success());
}

/// A guarded command, then a wait in a later play: both checks run ahead in the probe.
const GUARDED: &str = "plays:
  - name: guarded
    hosts: all
    tasks:
      - name: init
        command: { argv: [init-thing], unless: \"test -e /etc/inited\" }
  - name: wait
    hosts: all
    tasks:
      - name: up
        wait_for: { sh: is-up, timeout_s: 5 }
";

/// The probe's answer with the checks' exit codes in their (sorted) order: `is-up`, then the
/// `unless`.
fn guarded_rules(is_up: u8, inited: u8) -> Vec<Rule> {
    vec![
        // Re-gathered after a change: no checks asked for any more.
        answer(
            "' pgha 0 0 0 0",
            "@@pgha:os\nID=debian\n@@pgha:clock\n1\n@@pgha:packages\n@@pgha:units\n@@pgha:files\n@@pgha:checks\n",
        ),
        answer(
            "@@pgha:os",
            &format!(
                "@@pgha:os\nID=debian\n@@pgha:clock\n1\n@@pgha:packages\n@@pgha:units\n@@pgha:files\n@@pgha:checks\n{is_up}\n{inited}\n"
            ),
        ),
    ]
}

#[tokio::test]
async fn checks_run_ahead_in_the_one_probe_when_nothing_changes() {
    let table = [("a", guarded_rules(0, 0)), ("b", guarded_rules(0, 0))]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let (recap, _, cmds) = run_playbook(GUARDED, table, false).await;
    assert_eq!(recap.total().changed, 0);
    assert_eq!(recap.total().ok, 4, "both tasks ok on both hosts");
    for host in ["a", "b"] {
        assert_eq!(recap.hosts[host].round_trips, 1, "{:?}", cmds[host]);
        let probe = &cmds[host][0];
        assert!(
            probe.contains("test -e /etc/inited") && probe.contains("is-up"),
            "{probe}"
        );
    }
}

#[tokio::test]
async fn after_a_change_checks_run_live_on_every_host() {
    // a's `unless` fails: it runs the command; from then on no check gathered ahead is trusted,
    // so both hosts wait for `is-up` live although their probe said it was true.
    let table = [("a", guarded_rules(0, 1)), ("b", guarded_rules(0, 0))]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let (recap, _, cmds) = run_playbook(GUARDED, table, false).await;
    assert_eq!(recap.hosts["a"].changed, 1);
    assert!(cmds["a"].iter().any(|c| c == "init-thing"), "{:?}", cmds["a"]);
    assert!(!cmds["b"].iter().any(|c| c == "init-thing"), "{:?}", cmds["b"]);
    for host in ["a", "b"] {
        assert!(
            cmds[host]
                .iter()
                .any(|c| c.contains("deadline=") && c.contains("is-up")),
            "{host} waited live: {:?}",
            cmds[host]
        );
    }
}

#[tokio::test]
async fn a_failed_check_ahead_waits_live_and_changes_nothing() {
    let table = [("a", guarded_rules(1, 0)), ("b", guarded_rules(0, 0))]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let (recap, _, cmds) = run_playbook(GUARDED, table, false).await;
    assert_eq!(recap.total().changed, 0);
    assert_eq!(recap.hosts["a"].round_trips, 2, "probe + the wait: {:?}", cmds["a"]);
    assert_eq!(recap.hosts["b"].round_trips, 1, "{:?}", cmds["b"]);
}

#[tokio::test]
async fn facts_gathered_by_the_caller_replace_the_first_probe() {
    let inv = inv();
    let pb = crate::playbook::parse(Path::new("pb.yaml"), PLAYBOOK.as_bytes(), &inv).expect("playbook");
    let input = HostInput::default();
    let mut gathered = BTreeMap::new();
    for h in &inv.hosts {
        let q = first_query(&inv, &pb, h, &input);
        assert!(
            q.files.contains("/etc/app.conf") && q.units.contains("app.service"),
            "{q:?}"
        );
        let facts = crate::facts::parse(&probe_output(h.name.as_str(), true, true), &q).expect("parses");
        gathered.insert(h.name.to_string(), Gathered { facts, round_trips: 1 });
    }
    // The hosts answer nothing: any command sent would fail the run.
    let connector = FakeConnector {
        rules: [("a", vec![]), ("b", vec![])]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        fakes: StdMutex::new(BTreeMap::new()),
    };
    let opts = Options {
        gathered,
        ..Options::default()
    };
    let rec = Arc::new(Recorder(StdMutex::new(Vec::new())));
    let recap = run(
        &inv,
        &pb,
        &BTreeMap::new(),
        &opts,
        &connector,
        rec,
        Arc::new(AtomicBool::new(false)),
    )
    .await;
    let cmds: BTreeMap<String, Vec<String>> = connector
        .fakes
        .lock()
        .expect("lock")
        .iter()
        .map(|(k, f)| (k.clone(), f.commands()))
        .collect();
    assert_eq!(recap.total().failed, 0, "{cmds:?}");
    assert_eq!(recap.total().changed, 0);
    assert!(cmds.values().all(|c| c.is_empty()), "no command sent: {cmds:?}");
    assert_eq!(recap.hosts["a"].round_trips, 1, "the caller's probe is counted");
}
