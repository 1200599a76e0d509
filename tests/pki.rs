//! `pgha pki issue` and `pgha pki status` end to end on the example inventory: idempotent,
//! honours `--state`, prints no key material or password, and `--json` parses.

#![allow(clippy::disallowed_methods)] // tests run the real binary

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn pgha(args: &[&str], state: &Path) -> Output {
    let inventory = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("inventory/example.yaml");
    Command::new(env!("CARGO_BIN_EXE_pgha"))
        .args(args)
        .arg(&inventory)
        .arg("--state")
        .arg(state)
        .output()
        .expect("pgha runs")
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn issue_is_idempotent_and_never_prints_secrets() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");

    let before = stdout(&pgha(&["pki", "status", "--json"], &state));
    let rows: serde_json::Value = serde_json::from_str(&before).expect("json");
    assert!(rows.as_array().expect("array").iter().all(|r| r["status"] == "missing"));
    assert!(!state.exists(), "status writes nothing");

    let first = pgha(&["pki", "issue"], &state);
    let out = stdout(&first);
    assert!(
        out.contains("ca: created") && out.contains("issued: node1 postgres-server (missing)"),
        "{out}"
    );
    let second = stdout(&pgha(&["pki", "issue"], &state));
    assert!(
        second.contains("certificates: 0 issued") && second.contains("secrets: 0 generated"),
        "{second}"
    );

    let secrets = std::fs::read_to_string(state.join("secrets.json")).expect("secrets");
    let secrets: serde_json::Value = serde_json::from_str(&secrets).expect("json");
    let passwords: Vec<String> = secrets["accounts"]
        .as_object()
        .expect("accounts")
        .values()
        .map(|a| a["password"].as_str().expect("password").to_owned())
        .collect();
    assert!(!passwords.is_empty());
    let table = stdout(&pgha(&["pki", "status"], &state));
    assert!(
        table.starts_with("CERTIFICATE") && !table.contains("missing"),
        "{table}"
    );
    for o in [&first.stdout, &first.stderr, table.as_bytes()] {
        let text = String::from_utf8_lossy(o);
        assert!(!text.contains("PRIVATE KEY"));
        assert!(
            passwords.iter().all(|p| !text.contains(p.as_str())),
            "a password was printed"
        );
    }
}
