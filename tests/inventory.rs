//! `pgha validate` end to end: the example inventory, every broken inventory of the corpus
//! (tests/inventories/broken/*.yaml, each naming what its message must contain in
//! `# expect:` lines), the hostile corpus (tests/inventories/hostile/*.yaml: values that could
//! weaken TLS, inject into configs, SQL or ssh, or reach the terminal raw; each names the field
//! its refusal must name in a `# field:` line), and hostile inputs that must fail fast and never
//! panic.

#![allow(clippy::disallowed_methods)] // tests run the real binary

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn pgha() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pgha"))
}

/// Runs `pgha validate PATH`, killing it after 20 s (a hang is a failure).
fn validate(path: &Path) -> Output {
    let mut child = pgha()
        .arg("validate")
        .arg(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pgha runs");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait works").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("pgha validate {} hung for 20 s", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn example_inventory_is_valid_with_topology_warnings() {
    let out = validate(&root().join("inventory/example.yaml"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(stdout.contains("valid: cluster pgha-demo, 8 hosts"), "{stdout}");
    // docs/design.md §7: etcd 2+1 loses quorum with dc1; single HAProxy and PgBouncer.
    assert!(stderr.contains("losing dc1 (2 of 3 etcd members"), "{stderr}");
    assert!(stderr.contains("haproxy is the only HAProxy host"), "{stderr}");
    assert!(stderr.contains("pgbouncer is the only PgBouncer host"), "{stderr}");
    assert_eq!(stderr.matches("warning:").count(), 3, "{stderr}");
}

#[test]
fn minimal_inventory_is_valid_without_quorum_warning() {
    let out = validate(&root().join("tests/inventories/minimal.yaml"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(!stderr.contains("etcd quorum"), "{stderr}");
    // No `backup` role: a warning that says what that means (issue 15).
    assert!(stderr.contains("no host has the role `backup`: no backups"), "{stderr}");
}

#[test]
fn every_broken_inventory_gets_its_message() {
    let dir = root().join("tests/inventories/broken");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 30, "corpus shrank to {}", files.len());
    for file in files {
        let text = std::fs::read_to_string(&file).expect("corpus file is text");
        let expects: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# expect: ")).collect();
        assert!(!expects.is_empty(), "{} has no `# expect:` line", file.display());
        let out = validate(&file);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{}: exit {:?}, stderr: {stderr}",
            file.display(),
            out.status.code()
        );
        assert!(!stderr.contains("panicked"), "{}: {stderr}", file.display());
        for e in expects {
            assert!(stderr.contains(e), "{}: expected `{e}` in:\n{stderr}", file.display());
        }
        // Every error names the file, and (except whole-file errors) line:column.
        let first = stderr.lines().next().unwrap_or("");
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        assert!(first.starts_with("error: ") && first.contains(name), "{first}");
        if !text.lines().all(|l| l.trim().is_empty() || l.starts_with('#')) {
            let after = first.split(name).nth(1).unwrap_or("");
            let mut parts = after.trim_start_matches(':').splitn(3, ':');
            let line: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            let col: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            assert!(line > 0 && col > 0, "{}: no line:column in `{first}`", file.display());
        }
    }
}

#[test]
fn every_hostile_inventory_is_refused_cleanly() {
    let dir = root().join("tests/inventories/hostile");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("hostile corpus dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 45, "hostile corpus shrank to {}", files.len());
    for file in files {
        let text = std::fs::read_to_string(&file).expect("corpus file is text");
        let field = text
            .lines()
            .find_map(|l| l.strip_prefix("# field: "))
            .unwrap_or_else(|| panic!("{} has no `# field:` line", file.display()));
        let out = validate(&file);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let name = file.display();
        assert_eq!(
            out.status.code(),
            Some(3),
            "{name}: exit {:?}: {stderr}",
            out.status.code()
        );
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        let first = stderr.lines().next().unwrap_or("");
        assert!(first.starts_with("error: "), "{name}: {first}");
        // file:line:column: field: …
        let after = first.split(".yaml:").nth(1).unwrap_or("");
        let mut parts = after.splitn(3, ':');
        let line: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let col: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        assert!(line > 0 && col > 0, "{name}: no line:column in `{first}`");
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with("error: ") && l.contains(&format!(": {field}"))),
            "{name}: no error names `{field}`:\n{stderr}"
        );
        assert!(stderr.contains("hint: "), "{name}: no fix given:\n{stderr}");
        let raw = stderr
            .chars()
            .find(|c| *c != '\n' && (c.is_control() || ('\u{202a}'..='\u{202e}').contains(c)));
        assert!(
            raw.is_none(),
            "{name}: raw control character {raw:?} echoed:\n{stderr:?}"
        );
    }
}

fn hostile(name: &str, bytes: &[u8]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write");
    let out = validate(&path);
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The minimal inventory (valid) followed by `postgres.parameters` as given.
fn minimal_with_parameters(parameters: &str) -> String {
    let base = std::fs::read_to_string(root().join("tests/inventories/minimal.yaml")).expect("minimal");
    format!("{base}postgres:\n  parameters:{parameters}\n")
}

/// `n` alias references to 110 anchored scalars (fewer than 10 per anchor, so the
/// alias/anchor ratio heuristic stays quiet), each a valid parameter: only the alias budget
/// (1 000) can refuse it.
fn alias_count(n: usize) -> String {
    let anchors = 110;
    let mut p = String::from("\n");
    for a in 0..anchors {
        p.push_str(&format!("    a{a}: &s{a} 4MB\n"));
    }
    for i in 0..n {
        p.push_str(&format!("    p{i}: *s{}\n", i % anchors));
    }
    minimal_with_parameters(&p)
}

/// A billion-laughs shape that is valid YAML for the inventory: `levels` nested merge keys,
/// each merging its anchor ten times, all resolving to `{work_mem: 4MB}`; 10^levels nodes
/// (the node budget is 100 000).
fn merge_bomb(levels: usize) -> String {
    let mut expr = "&a0 {work_mem: 4MB}".to_string();
    for i in 1..=levels {
        expr = format!("&a{i} {{<<: [{expr}{}]}}", format!(", *a{}", i - 1).repeat(9));
    }
    let expr = expr.split_once(' ').expect("anchor, space, mapping").1;
    minimal_with_parameters(&format!(" {expr}"))
}

/// `cluster:` holding `depth` nested empty merge keys (flow or block style): valid, it merges
/// nothing, so only the depth budget (32) can refuse it.
fn deep_merge(depth: usize, block: bool) -> String {
    let base = std::fs::read_to_string(root().join("tests/inventories/minimal.yaml")).expect("minimal");
    let nested = if block {
        let mut s = String::new();
        for i in 0..depth {
            s.push_str(&format!("{}<<:\n", "  ".repeat(i + 2)));
        }
        s.push_str(&format!("{}{{}}\n", "  ".repeat(depth + 2)));
        s
    } else {
        format!("  <<: {}{{}}{}\n", "{<<: ".repeat(depth), "}".repeat(depth))
    };
    let nested = if block {
        format!(
            "  <<:\n{}",
            nested.lines().skip(1).map(|l| format!("{l}\n")).collect::<String>()
        )
    } else {
        nested
    };
    base.replacen(
        "cluster:\n  name: tiny\n",
        &format!("cluster:\n  name: tiny\n{nested}"),
        1,
    )
}

#[test]
fn yaml_budgets_refuse_bombs_that_are_otherwise_valid() {
    // (name, just under the limit: must be valid, over it: must be refused naming the budget)
    let cases: Vec<(&str, String, String, &str)> = vec![
        (
            "alias-bomb",
            alias_count(999),
            alias_count(1_001),
            "budget breached: Aliases",
        ),
        ("merge-bomb", merge_bomb(4), merge_bomb(5), "budget breached: Nodes"),
        (
            "deep-flow",
            deep_merge(28, false),
            deep_merge(40, false),
            "budget breached: Depth",
        ),
        (
            "deep-block",
            deep_merge(28, true),
            deep_merge(40, true),
            "budget breached: Depth",
        ),
    ];
    for (name, under, over, expect) in cases {
        let (code, stderr) = hostile(&format!("{name}-under.yaml"), under.as_bytes());
        assert_eq!(
            code,
            Some(0),
            "{name} under the limit must be valid (positive control): {stderr}"
        );
        let (code, stderr) = hostile(&format!("{name}.yaml"), over.as_bytes());
        assert_eq!(code, Some(3), "{name}: exit {code:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert!(
            stderr.contains("refused: ") && stderr.contains(expect),
            "{name}: expected `{expect}` in {stderr}"
        );
    }
}

#[test]
fn hostile_inputs_fail_cleanly() {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let garbage: Vec<u8> = (0..100_000)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("garbage.yaml", garbage, "not UTF-8"),
        // The parser's own flow-nesting limit (255), below any budget.
        (
            "deep-brackets.yaml",
            format!("{}{}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
            "refused: recursion limit exceeded",
        ),
        (
            "huge.yaml",
            format!("cluster:\n  name: {}\n", "a".repeat(2_000_000)).into_bytes(),
            "larger than",
        ),
        ("nul.yaml", b"cluster:\n  name: a\0b\n".to_vec(), "error:"),
        ("bom.yaml", b"\xef\xbb\xbf".to_vec(), "empty"),
    ];
    for (name, bytes, expect) in cases {
        let (code, stderr) = hostile(name, &bytes);
        assert!(matches!(code, Some(1) | Some(3)), "{name}: exit {code:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert!(stderr.contains(expect), "{name}: expected `{expect}` in {stderr}");
    }
}

#[test]
fn directory_and_missing_file_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = validate(dir.path());
    // Unreadable is invalid input (3), as for every command.
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a regular file"));
    let out = validate(&dir.path().join("nope.yaml"));
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nope.yaml") && stderr.contains("cannot read"),
        "{stderr}"
    );
}

#[test]
fn json_output_is_machine_readable() {
    let out = pgha()
        .args(["validate", "--json"])
        .arg(root().join("tests/inventories/broken/bad-address.yaml"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"][0]["field"], "hosts.pg2.address");
    assert!(v["errors"][0]["line"].as_u64().unwrap_or(0) > 0);
}
