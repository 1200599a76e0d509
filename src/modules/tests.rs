//! Modules planned against recorded facts (no network): facts in, plan out.

use sha2::{Digest, Sha256};

use super::*;
use crate::facts::{Package, Unit};

fn facts() -> Facts {
    let mut f = Facts::default();
    f.packages.insert(
        "haproxy".into(),
        Package {
            version: "3.0.11-1".into(),
            installed: true,
        },
    );
    f.packages.insert(
        "pgbouncer".into(),
        Package {
            version: String::new(),
            installed: false,
        },
    );
    f.units.insert(
        "haproxy.service".into(),
        Unit {
            loaded: true,
            active: "active".into(),
            sub: "running".into(),
            enabled: "enabled".into(),
            main_pid: 7,
        },
    );
    f.units.insert(
        "pgbouncer.service".into(),
        Unit {
            loaded: true,
            active: "inactive".into(),
            sub: "dead".into(),
            enabled: "disabled".into(),
            main_pid: 0,
        },
    );
    f.files.insert(
        "/etc/x".into(),
        FileKind::File {
            sha256: hex::encode(Sha256::digest(b"same\n")),
            mode: 0o644,
            owner: "root".into(),
            group: "root".into(),
        },
    );
    f.files.insert(
        "/etc/d".into(),
        FileKind::Dir {
            mode: 0o755,
            owner: "root".into(),
            group: "root".into(),
        },
    );
    f
}

fn file(content: &str, mode: u32) -> ModuleSpec {
    ModuleSpec::File(FileArgs {
        path: "/etc/x".into(),
        content: Some(content.into()),
        owner: None,
        group: None,
        mode: Some(Mode(mode)),
        secret: None,
        validate: None,
    })
}

fn plan_of(spec: &ModuleSpec) -> Plan<Action> {
    plan(spec, &facts(), &Rendered::new(), None).expect("plans")
}

#[test]
fn file_with_same_content_and_mode_is_satisfied() {
    assert!(matches!(plan_of(&file("same\n", 0o644)), Plan::Satisfied { .. }));
}

#[test]
fn file_differences_are_named() {
    let Plan::Change(c) = plan_of(&file("other\n", 0o600)) else {
        panic!("must change")
    };
    assert!(
        c.summary.contains("content") && c.summary.contains("mode 0644 → 0600"),
        "{}",
        c.summary
    );
    assert!(matches!(c.action, Action::Write { mode: 0o600, .. }));
}

#[test]
fn file_from_render_uses_its_owner_and_mode() {
    let mut r = Rendered::new();
    r.insert(
        "/etc/x".into(),
        Managed {
            content: b"same\n".to_vec(),
            owner: "postgres".into(),
            group: "postgres".into(),
            mode: 0o600,
            secret: true,
            unit: None,
        },
    );
    let spec = ModuleSpec::File(FileArgs {
        path: "/etc/x".into(),
        content: None,
        owner: None,
        group: None,
        mode: None,
        secret: None,
        validate: None,
    });
    let Plan::Change(c) = plan(&spec, &facts(), &r, None).expect("plans") else {
        panic!("must change")
    };
    assert!(
        c.summary.contains("owner root:root → postgres:postgres"),
        "{}",
        c.summary
    );
    let missing = ModuleSpec::File(FileArgs {
        path: "/etc/none".into(),
        content: None,
        owner: None,
        group: None,
        mode: None,
        secret: None,
        validate: None,
    });
    assert!(
        plan(&missing, &facts(), &r, None).is_err(),
        "no rendered file and no content is an error"
    );
}

#[test]
fn a_directory_is_never_replaced_by_a_file() {
    let spec = ModuleSpec::File(FileArgs {
        path: "/etc/d".into(),
        content: Some("x".into()),
        owner: None,
        group: None,
        mode: None,
        secret: None,
        validate: None,
    });
    assert!(plan(&spec, &facts(), &Rendered::new(), None).is_err());
}

#[test]
fn packages_install_only_what_is_missing() {
    let spec = ModuleSpec::Package(PackageArgs {
        names: vec!["haproxy".into(), "pgbouncer".into()],
    });
    let Plan::Change(c) = plan_of(&spec) else {
        panic!("must change")
    };
    assert_eq!(c.action, Action::Install(vec!["pgbouncer".into()]));
    let spec = ModuleSpec::Package(PackageArgs {
        names: vec!["haproxy".into()],
    });
    assert!(matches!(plan_of(&spec), Plan::Satisfied { .. }));
}

#[test]
fn services_start_and_enable_only_when_needed() {
    let running = ModuleSpec::Service(ServiceArgs {
        name: "haproxy".into(),
        state: Some(ServiceState::Started),
        enabled: Some(true),
    });
    assert!(matches!(plan_of(&running), Plan::Satisfied { .. }));
    let stopped = ModuleSpec::Service(ServiceArgs {
        name: "pgbouncer".into(),
        state: Some(ServiceState::Started),
        enabled: Some(true),
    });
    let Plan::Change(c) = plan_of(&stopped) else {
        panic!("must change")
    };
    assert_eq!(
        c.action,
        Action::Systemctl(vec![
            vec!["enable".into(), "pgbouncer.service".into()],
            vec!["start".into(), "pgbouncer.service".into()]
        ])
    );
    let reload = ModuleSpec::Service(ServiceArgs {
        name: "haproxy".into(),
        state: Some(ServiceState::Reloaded),
        enabled: None,
    });
    assert!(
        matches!(plan_of(&reload), Plan::Change(_)),
        "a reload always acts (handlers only)"
    );
}

#[test]
fn commands_are_guarded() {
    let spec = |creates: &str| {
        ModuleSpec::Command(CommandArgs {
            argv: Some(vec!["touch".into(), "/x".into()]),
            sh: None,
            creates: Some(creates.into()),
            unless: None,
            unless_rule: None,
            timeout_s: None,
        })
    };
    assert!(matches!(plan_of(&spec("/etc/x")), Plan::Satisfied { .. }));
    assert!(matches!(plan_of(&spec("/etc/absent")), Plan::Change(_)));
    let unless = ModuleSpec::Command(CommandArgs {
        argv: None,
        sh: Some("do-it".into()),
        creates: None,
        unless: Some("test -e /x".into()),
        unless_rule: None,
        timeout_s: None,
    });
    assert!(probe(&unless).is_some());
    assert!(matches!(
        plan(&unless, &facts(), &Rendered::new(), Some(true)).expect("plans"),
        Plan::Satisfied { .. }
    ));
    assert!(matches!(
        plan(&unless, &facts(), &Rendered::new(), Some(false)).expect("plans"),
        Plan::Change(_)
    ));
}

#[test]
fn waits_are_checks_not_changes() {
    let spec = ModuleSpec::WaitFor(WaitForArgs {
        port: Some("5432".into()),
        url: None,
        status: None,
        ca: None,
        cert: None,
        key: None,
        sh: None,
        timeout_s: Some(5),
        if_changed: None,
        rule: None,
    });
    assert!(matches!(plan_of(&spec), Plan::Check { .. }));
}
