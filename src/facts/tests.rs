//! Facts parsing against recorded probe output (no network).

use super::*;

fn query() -> Query {
    Query {
        packages: ["haproxy", "patroni", "etcd-server"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        units: ["haproxy.service", "patroni.service"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        files: ["/etc/haproxy/haproxy.cfg", "/etc/patroni/config.yml"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        names: Default::default(),
        checks: Default::default(),
    }
}

const RECORDED: &str = "@@pgha:os
PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"
NAME=\"Debian GNU/Linux\"
VERSION_ID=\"13\"
VERSION_CODENAME=trixie
ID=debian
@@pgha:clock
1764400000
@@pgha:disk
/dev/root 51290592 9876543 38765432 21% /
@@pgha:ports
LISTEN 0      4096         0.0.0.0:5000       0.0.0.0:*
LISTEN 0      128             [::]:22            [::]:*
@@pgha:packages
haproxy\t3.0.11-1\tii 
patroni\t4.0.7-1\trc 
@@pgha:units
Id=haproxy.service
LoadState=loaded
ActiveState=active
SubState=running
UnitFileState=enabled
MainPID=412

Id=patroni.service
LoadState=not-found
ActiveState=inactive
SubState=dead
UnitFileState=
MainPID=0
@@pgha:files
F\t644\troot\troot\tdeadbeef\t/etc/haproxy/haproxy.cfg
N\t/etc/patroni/config.yml
";

#[test]
fn parses_a_recorded_probe() {
    let f = parse(RECORDED, &query()).expect("parses");
    assert_eq!(f.os.codename, "trixie");
    assert_eq!(f.os.version_id, "13");
    assert_eq!(f.clock, 1_764_400_000);
    assert_eq!(f.disk_free_kib, 38_765_432);
    assert!(f.listening.contains(&5000) && f.listening.contains(&22));
    assert!(f.installed("haproxy"));
    assert!(!f.installed("patroni"), "rc = removed, config left: not installed");
    assert!(!f.installed("etcd-server"), "absent from dpkg output: not installed");
    let h = f.unit("haproxy.service");
    assert!(h.is_active() && h.is_enabled() && h.loaded);
    assert_eq!(h.main_pid, 412);
    assert!(!f.unit("patroni.service").loaded);
    assert!(matches!(f.file("/etc/haproxy/haproxy.cfg"), FileKind::File { sha256, .. } if sha256 == "deadbeef"));
    assert_eq!(f.file("/etc/patroni/config.yml"), &FileKind::Missing);
}

#[test]
fn a_truncated_probe_is_an_error() {
    assert!(parse("@@pgha:os\nID=debian\n", &query()).is_err());
}

#[test]
fn probe_passes_names_as_arguments() {
    let cmd = probe(&query());
    let argv = cmd.argv();
    assert_eq!(&argv[4..8], ["3", "2", "0", "0"]);
    assert!(argv.iter().any(|a| a == "/etc/patroni/config.yml"));
    assert!(!argv[2].contains("haproxy"), "names never appear in the script text");
}

/// Runs the real probe script with this machine's `sh` (a Debian host like the targets).
#[test]
#[allow(clippy::disallowed_methods)]
fn probe_runs_on_a_real_debian_shell() {
    let q = Query {
        packages: ["dpkg", "no-such-package-pgha"].iter().map(|s| s.to_string()).collect(),
        units: Default::default(),
        files: ["/etc/os-release", "/etc", "/no/such/file"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        names: ["localhost", "no-such-host.invalid"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        checks: [
            vec!["true"],
            vec!["sh", "-c", "exit 3"],
            vec![
                "sh",
                "-c",
                "[ \"$1\" = 'a b' ] && [ \"$2\" = '$(x)' ] && ! read -r l",
                "pgha",
                "a b",
                "$(x)",
            ],
            vec!["sh", "-c", "[ \"$#\" -eq 0 ]"],
            vec!["sh", "-c", "printf '{\"a\": 1}\\n@x\\n'; exit 4"],
        ]
        .iter()
        .map(|c| c.iter().map(|w| w.to_string()).collect())
        .collect(),
    };
    let cmd = probe(&q);
    let out = std::process::Command::new(&cmd.argv()[0])
        .args(&cmd.argv()[1..])
        .output()
        .expect("sh runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let f = parse(&text, &q).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(f.os.id, "debian");
    assert!(f.installed("dpkg"));
    assert!(!f.installed("no-such-package-pgha"));
    assert!(matches!(f.file("/etc/os-release"), FileKind::File { .. }));
    assert!(matches!(f.file("/etc"), FileKind::Dir { .. }));
    assert_eq!(f.file("/no/such/file"), &FileKind::Missing);
    assert!(f.clock > 1_700_000_000);
    assert_eq!(
        f.resolved
            .get("localhost")
            .copied()
            .flatten()
            .map(|a| a.to_string())
            .as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(f.resolved.get("no-such-host.invalid"), Some(&None));
    let passed = |c: &[&str]| {
        f.checks
            .get(&c.iter().map(|w| w.to_string()).collect::<Vec<_>>())
            .copied()
    };
    assert_eq!(passed(&["true"]), Some(true));
    assert_eq!(passed(&["sh", "-c", "exit 3"]), Some(false));
    assert_eq!(
        passed(&[
            "sh",
            "-c",
            "[ \"$1\" = 'a b' ] && [ \"$2\" = '$(x)' ] && ! read -r l",
            "pgha",
            "a b",
            "$(x)"
        ]),
        Some(true),
        "arguments reach the check verbatim, stdin is empty"
    );
    assert_eq!(
        passed(&["sh", "-c", "[ \"$#\" -eq 0 ]"]),
        Some(true),
        "each check gets only its own words"
    );
    let printed = Cmd::new("sh").arg("-c").arg("printf '{\"a\": 1}\\n@x\\n'; exit 4");
    let (ok, out) = f.check_output(&printed).expect("asked about");
    assert!(!ok, "its own exit status, not the capture's");
    assert_eq!(
        out.trim_end(),
        "{\"a\": 1}\n@x",
        "what the check printed, for rules judged in Rust"
    );
    assert_eq!(f.check_output(&Cmd::new("true")), Some((true, "")));
}
