//! Playbook parsing and validation.

use std::path::Path;

use super::*;

fn inv() -> Inventory {
    let text = include_str!("../../tests/inventories/minimal.yaml");
    crate::inventory::parse(Path::new("minimal.yaml"), text.as_bytes())
        .expect("valid")
        .inventory
}

fn err_of(text: &str) -> Vec<Diagnostic> {
    match parse(Path::new("pb.yaml"), text.as_bytes(), &inv()) {
        Err(PlaybookError::Invalid(d)) => d,
        other => panic!("expected invalid, got {other:?}"),
    }
}

#[test]
fn embedded_sample_is_valid() {
    let pb = load("sample", None, &inv()).expect("sample loads");
    assert_eq!(pb.plays.len(), 1);
    assert_eq!(pb.plays[0].select(&inv()).len(), 6);
    assert!(pb.plays[0].tasks.len() >= 8);
    assert_eq!(pb.plays[0].handlers.len(), 1);
}

#[test]
fn unknown_keys_name_line_and_suggest() {
    let d = err_of(
        "plays:\n  - name: p\n    hosts: all\n    tasks:\n      - name: t\n        file: { path: /x, contnet: y }\n",
    );
    assert_eq!(d[0].line, 6);
    assert!(d[0].message.contains("unknown field `contnet`"), "{:?}", d[0]);
    assert!(d[0].hint.as_deref().unwrap_or("").contains("did you mean `content`"));
}

#[test]
fn a_task_runs_exactly_one_module() {
    let d = err_of(
        "plays:\n  - name: p\n    hosts: all\n    tasks:\n      - name: t\n        file: { path: /x, content: y }\n        package: { names: [a] }\n",
    );
    assert!(d[0].message.contains("names 2 modules"), "{:?}", d[0]);
    let d = err_of("plays:\n  - name: p\n    hosts: all\n    tasks:\n      - name: t\n");
    assert!(d[0].message.contains("names no module"));
}

#[test]
fn notify_must_name_a_handler() {
    let d = err_of(
        "plays:\n  - name: p\n    hosts: all\n    tasks:\n      - name: t\n        file: { path: /x, content: y }\n        notify: [restart haproxi]\n    handlers:\n      - name: restart haproxy\n        service: { name: haproxy, state: restarted }\n",
    );
    assert!(d[0].message.contains("no handler named `restart haproxi`"));
    assert!(d[0].hint.as_deref().unwrap_or("").contains("restart haproxy"));
}

#[test]
fn host_selectors_are_checked_against_the_inventory() {
    let d = err_of("plays:\n  - name: p\n    hosts: [postgress]\n    tasks: []\n");
    assert!(d[0].message.contains("`postgress`"));
    assert!(d[0].hint.as_deref().unwrap_or("").contains("did you mean `postgres`"));
    let ok = parse(
        Path::new("pb.yaml"),
        b"plays:\n  - name: p\n    hosts: [pg1, etcd]\n    tasks: []\n",
        &inv(),
    )
    .expect("valid");
    let names: Vec<String> = ok.plays[0].select(&inv()).iter().map(|h| h.name.to_string()).collect();
    assert_eq!(names, ["pg1", "e1", "e2", "e3"]);
}

#[test]
fn modes_must_be_quoted_octal() {
    let d = err_of(
        "plays:\n  - name: p\n    hosts: all\n    tasks:\n      - name: t\n        file: { path: /x, content: y, mode: 0644 }\n",
    );
    assert!(d[0].message.contains("quoted octal"), "{:?}", d[0]);
}

#[test]
fn relative_paths_and_missing_commands_are_refused() {
    let d = err_of(
        "plays:\n  - name: p\n    hosts: all\n    tasks:\n      - name: t\n        file: { path: etc/x, content: y }\n",
    );
    assert!(d[0].message.contains("must be absolute"));
    let d =
        err_of("plays:\n  - name: p\n    hosts: all\n    tasks:\n      - name: t\n        command: { creates: /x }\n");
    assert!(d[0].message.contains("exactly one of `argv` or `sh`"));
}

#[test]
fn role_slices_pick_hosts_in_inventory_order() {
    let pb = parse(Path::new("pb.yaml"), b"plays:\n  - name: a\n    hosts: \"etcd[0]\"\n    tasks: []\n  - name: b\n    hosts: \"etcd[1:]\"\n    tasks: []\n", &inv()).expect("valid");
    let names = |i: usize| {
        pb.plays[i]
            .select(&inv())
            .iter()
            .map(|h| h.name.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(0), ["e1"]);
    assert_eq!(names(1), ["e2", "e3"]);
}

/// The fresh deploy installs every role's packages in one play, on all hosts at once, before
/// any play configures a service: no host waits for another's apt-get.
#[test]
fn deploy_installs_every_package_in_one_play_first() {
    let pb = load("deploy", None, &inv()).expect("deploy loads");
    let with_packages: Vec<&str> = pb
        .plays
        .iter()
        .filter(|p| p.tasks.iter().any(|t| matches!(t.module, ModuleSpec::Package(_))))
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(with_packages, ["packages"]);
    let at = pb
        .plays
        .iter()
        .position(|p| p.name == "packages")
        .expect("packages play");
    assert_eq!(pb.plays[at].select(&inv()).len(), inv().hosts.len(), "on every host");
    let services = pb
        .plays
        .iter()
        .position(|p| p.tasks.iter().any(|t| matches!(t.module, ModuleSpec::Service(_))))
        .expect("a service play");
    assert!(at < services);
}
