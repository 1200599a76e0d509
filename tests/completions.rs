//! `pgha completions SHELL` and `pgha man`, run as a packager would: every shell the Debian
//! package ships (bash, zsh, fish) gets a script naming the subcommands, the bash one passes
//! `bash -n` (and zsh/fish their own syntax check where installed), the man page is roff with
//! every subcommand, and `pgha man --dir` writes one page per subcommand. What the package
//! holds is these outputs (packaging/build-deb), so this is what a user's shell and `man` get.
//! Also, without a lab, the checks the lab tests rely on (tests/common): the JSON-lines check
//! and the secret scan fail on what they must catch.
#![allow(clippy::disallowed_methods)] // runs the real binary and the shells

use std::process::{Command, Output};

mod common;

fn pgha(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgha"))
        .args(args)
        .output()
        .expect("pgha runs")
}

fn has(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Subcommands every completion script and the man page must know.
const SUBCOMMANDS: [&str; 6] = ["deploy", "verify", "rotate-certs", "drill", "uri", "completions"];

#[test]
fn completion_scripts_name_every_subcommand_and_parse() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (shell, checker) in [("bash", "bash"), ("zsh", "zsh"), ("fish", "fish")] {
        let out = pgha(&["completions", shell]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let script = String::from_utf8(out.stdout).expect("UTF-8");
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell} completion lacks `{sub}`");
        }
        let file = dir.path().join(format!("pgha.{shell}"));
        std::fs::write(&file, &script).expect("write");
        if has(checker) {
            let args: Vec<&str> = if shell == "fish" {
                vec!["--no-execute"]
            } else {
                vec!["-n"]
            };
            let check = Command::new(checker)
                .args(&args)
                .arg(&file)
                .output()
                .expect("shell runs");
            assert!(
                check.status.success(),
                "{checker} rejects the {shell} completion: {}",
                String::from_utf8_lossy(&check.stderr)
            );
        } else {
            assert!(shell != "bash", "bash is needed to check the bash completion");
        }
    }
    // An unknown shell is a usage error naming the choices.
    let out = pgha(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bash"), "{out:?}");
}

#[test]
fn man_page_is_roff_and_one_page_per_subcommand_is_written() {
    let out = pgha(&["man"]);
    assert_eq!(out.status.code(), Some(0));
    // roff escapes hyphens (`rotate\-certs`).
    let page = String::from_utf8(out.stdout).expect("UTF-8").replace("\\-", "-");
    assert!(page.contains(".TH pgha 1"), "{}", &page[..page.len().min(300)]);
    assert!(page.contains(".SH NAME") && page.contains(".SH SYNOPSIS"), "sections");
    for sub in SUBCOMMANDS {
        assert!(page.contains(sub), "the man page lacks `{sub}`");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let out = pgha(&["man", "--dir", &dir.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    for name in ["pgha.1", "pgha-deploy.1", "pgha-rotate-certs.1", "pgha-lab-up.1"] {
        let text = std::fs::read_to_string(dir.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.contains(".TH"), "{name} is roff");
    }
    if has("man") {
        let render = Command::new("man")
            .args(["-l", "-P", "cat"])
            .arg(dir.path().join("pgha-verify.1"))
            .env("MANWIDTH", "80")
            .output()
            .expect("man runs");
        assert!(render.status.success(), "{}", String::from_utf8_lossy(&render.stderr));
        assert!(String::from_utf8_lossy(&render.stdout).contains("verify"));
    }
}

/// The `--json` check the lab tests use fails on an empty output and on a non-JSON line (it
/// used to pass on empty output: `lines().all(..)` of nothing is true).
#[test]
fn json_lines_refuse_empty_and_invalid_output() {
    assert_eq!(common::json_lines("{\"a\":1}\n{\"b\":2}\n").len(), 2);
    for bad in ["", "\n\n", "{\"a\":1}\nnot json\n"] {
        let r = std::panic::catch_unwind(|| common::json_lines(bad));
        assert!(r.is_err(), "{bad:?} must fail the check");
    }
}

/// The secret scan every lab test ends with finds each kind of secret: a password from a state
/// directory's secrets.json, a line of a private key found there, a PEM key header, a SCRAM
/// verifier; and passes clean output.
#[test]
fn the_secret_scan_finds_every_kind_of_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("lab").join(".pgha");
    std::fs::create_dir_all(state.join("ca")).expect("state");
    std::fs::write(
        state.join("secrets.json"),
        r#"{"accounts": {"app": {"password": "Zq8vW2xLr7Tn4mKp"}}}"#,
    )
    .expect("secrets");
    let body = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg3x1s8fKq2Zt7y0hN";
    std::fs::write(
        state.join("ca/ca.key"),
        format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"),
    )
    .expect("key");
    let s = common::known_secrets(dir.path());
    assert_eq!(s.passwords, ["Zq8vW2xLr7Tn4mKp"]);
    assert_eq!(s.key_lines, [body]);
    assert_eq!(common::leaked("total: ok=3 changed=0 failed=0", &s), None);
    for (out, kind) in [
        ("password=Zq8vW2xLr7Tn4mKp", "a password from secrets.json"),
        (body, "private key material"),
        ("-----BEGIN EC PRIVATE KEY-----", "a private key (PEM header)"),
        ("\"app\" \"SCRAM-SHA-256$4096:c2FsdA==$a2V5:c2Vy\"", "a SCRAM verifier"),
    ] {
        assert_eq!(common::leaked(out, &s), Some(kind), "{out}");
    }
}
