//! Least privilege between components, on a deployed lab cluster (root; `#[ignore]`d, .ci/test
//! runs it), with the real certificates pgha installed and real clients (curl on the lab hosts
//! and on this machine):
//!
//! - PostgreSQL's and PgBouncer's server certificates are refused by etcd (client and peer
//!   ports) and by Patroni's REST API; HAProxy's check certificate and Patroni's client
//!   certificate are refused by etcd's peer port (their SAN names no address), HAProxy's check
//!   certificate by Patroni's unsafe endpoints (even with the REST password: only the PostgreSQL nodes
//!   may use them), while it still passes the health checks; Patroni's own client certificate
//!   still reads etcd and a member may still use the unsafe endpoints.
//! - The state directory's path holds a space: `deploy`, `verify` (psql with quoted conninfo
//!   and a passfile) and `uri` (percent-encoded) work.
//!
//! Known hole, printed and not asserted: HAProxy's check certificate is still accepted on
//! etcd's client port (one CA; see docs/security.md, "Decision: a separate etcd CA").
#![allow(clippy::disallowed_methods)] // runs pgha, curl and psql like a user

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::ok;

/// What a curl probe got: its exit code and the HTTP status (`000` when TLS failed).
#[derive(Debug)]
struct Probe {
    rc: i32,
    code: String,
}

impl Probe {
    /// TLS (or the HTTP layer behind it) let the request through.
    fn accepted(&self) -> bool {
        self.rc == 0 && self.code != "000"
    }
}

fn parse(out: &str) -> Probe {
    let last = out.lines().last().unwrap_or("");
    let code = last
        .split("code=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("000");
    let rc = last
        .split("rc=")
        .nth(1)
        .and_then(|r| r.trim().parse().ok())
        .unwrap_or(-1);
    Probe {
        rc,
        code: code.to_string(),
    }
}

/// curl on a lab host, as root there (its real files under /etc/pgha/tls).
fn curl_on(host: &str, args: &str) -> Probe {
    let script = format!(
        "curl -sS --http1.1 --max-time 5 -o /dev/null -w 'code=%{{http_code}} ' --cacert /etc/pgha/tls/ca-bundle.pem {args}; echo rc=$?"
    );
    let out = ok(&["lab", "ssh", host, "--", "sh", "-c", &script]).0;
    parse(&out)
}

/// curl on this machine with a certificate from the state directory, to `https://host:port/path`
/// (the name resolved to the inventory's address: this machine need not know the lab's names).
fn curl_here(inv: &Path, state: &Path, cert_host: &str, kind: &str, target: (&str, u16, &str)) -> Probe {
    let (host, port, path) = target;
    let loaded = pgha::inventory::load(inv).expect("lab inventory loads");
    let addr = loaded.inventory.host(host).expect("host in the lab inventory").address;
    let dir = state.join("certs").join(cert_host);
    let out = Command::new("curl")
        .args([
            "-sS",
            "--http1.1",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "code=%{http_code} ",
        ])
        .arg("--resolve")
        .arg(format!("{host}:{port}:{addr}"))
        .arg("--cacert")
        .arg(state.join("trust/ca-bundle.pem"))
        .arg("--cert")
        .arg(dir.join(format!("{kind}.crt")))
        .arg("--key")
        .arg(dir.join(format!("{kind}.key")))
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .expect("curl runs");
    let text = format!(
        "{} rc={}",
        String::from_utf8_lossy(&out.stdout),
        out.status.code().unwrap_or(-1)
    );
    parse(&text)
}

fn rest_password(state: &Path) -> String {
    let text = std::fs::read_to_string(state.join("secrets.json")).expect("secrets.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    v["accounts"]["patroni-rest"]["password"]
        .as_str()
        .expect("a patroni-rest password")
        .to_string()
}

const ETCD_READ: &str = "-X POST -d '{\"key\":\"Lw==\"}' https://etcd1:2379/v3/kv/range";

#[test]
#[ignore = "lab: needs root and the lab; .ci/test runs it (cargo test -- --include-ignored)"]
fn certificates_are_accepted_only_where_their_holder_needs_them() {
    let _scan = common::lab_test("security lab test");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("security lab");
    std::fs::create_dir_all(&dir).expect("dir");
    let inv_path = dir.join("security-lab.yaml");
    let inv = inv_path.display().to_string();
    let state = dir.join(".pgha");
    ok(&["lab", "down"]);
    let _ = std::fs::remove_dir_all(&state);
    ok(&["lab", "up", "--inventory", &inv]);
    ok(&["deploy", &inv]);

    // A state directory whose path holds a space: verify's psql (quoted conninfo, passfile)
    // and uri (percent-encoded) work.
    assert!(state.display().to_string().contains(' '));
    let (o, _) = ok(&["verify", &inv]);
    assert!(o.contains("verify: all 7 checks passed"), "{o}");
    let (uri, _) = ok(&["uri", &inv, "--database", "app"]);
    let uri = uri.trim().to_string();
    assert!(uri.contains("security%20lab/.pgha/trust/ca-bundle.pem"), "{uri}");
    let (with_pw, _) = ok(&["uri", &inv, "--database", "app", "--with-password"]);
    let one = Command::new("psql")
        .args([with_pw.trim(), "-XtAc", "select 1"])
        .env_remove("PGPASSWORD")
        .output()
        .expect("psql");
    assert_eq!(
        String::from_utf8_lossy(&one.stdout).trim(),
        "1",
        "psql with the uri: {}",
        String::from_utf8_lossy(&one.stderr)
    );

    let pg = "--cert /etc/pgha/tls/postgres-server.crt --key /etc/pgha/tls/postgres-server.key";
    let client = "--cert /etc/pgha/tls/patroni-client.crt --key /etc/pgha/tls/patroni-client.key";
    let check = "--cert /etc/pgha/tls/haproxy-check.pem";
    let mut refused = Vec::new();
    let mut want_refused = |what: &str, p: Probe| {
        eprintln!("{what}: {p:?}");
        refused.push((what.to_string(), p));
    };

    // etcd's client port.
    let positive = curl_on("node1", &format!("{client} {ETCD_READ}"));
    assert!(
        positive.accepted() && positive.code == "200",
        "Patroni's client certificate reads etcd: {positive:?}"
    );
    let here = curl_here(
        &inv_path,
        &state,
        "node1",
        "patroni-client",
        ("etcd1", 2379, "/version"),
    );
    assert!(
        here.accepted(),
        "this machine reaches etcd with Patroni's client certificate: {here:?}"
    );
    want_refused(
        "PostgreSQL server cert → etcd client port",
        curl_on("node1", &format!("{pg} {ETCD_READ}")),
    );
    want_refused(
        "PgBouncer server cert → etcd client port",
        curl_here(
            &inv_path,
            &state,
            "pgbouncer",
            "pgbouncer-server",
            ("etcd1", 2379, "/version"),
        ),
    );
    let hole = curl_on("haproxy", &format!("{check} {ETCD_READ}"));
    eprintln!(
        "KNOWN HOLE (issue 12 item 1, docs/security.md): HAProxy check cert → etcd client port: {hole:?} ({})",
        if hole.accepted() { "still accepted" } else { "refused" }
    );

    // etcd's peer port: only members (their certificates name their own address).
    want_refused(
        "HAProxy check cert → etcd peer port",
        curl_on("haproxy", &format!("{check} https://etcd1:2380/version")),
    );
    want_refused(
        "PostgreSQL server cert → etcd peer port",
        curl_on("node1", &format!("{pg} https://etcd1:2380/version")),
    );
    want_refused(
        "Patroni client cert → etcd peer port",
        curl_on("node1", &format!("{client} https://etcd1:2380/version")),
    );
    want_refused(
        "PgBouncer server cert → etcd peer port",
        curl_here(
            &inv_path,
            &state,
            "pgbouncer",
            "pgbouncer-server",
            ("etcd1", 2380, "/version"),
        ),
    );

    // Patroni's REST API.
    let health = curl_on("haproxy", &format!("{check} https://node1:8008/health"));
    assert!(
        health.accepted(),
        "HAProxy's check certificate passes the health check: {health:?}"
    );
    let pw = rest_password(&state);
    let auth = format!("-u patroni:{pw}");
    for (what, args) in [
        // Bodies that would change nothing if access were granted (a restart only below
        // PostgreSQL 1.0, a switchover from a member that does not exist, an empty patch).
        (
            "POST /restart",
            "-X POST -d '{\"postgres_version\":\"1.0\"}' https://node1:8008/restart",
        ),
        (
            "POST /switchover",
            "-X POST -d '{\"leader\":\"nobody\"}' https://node1:8008/switchover",
        ),
        ("PATCH /config", "-X PATCH -d '{}' https://node1:8008/config"),
    ] {
        let p = curl_on("haproxy", &format!("{check} {args}"));
        assert!(
            matches!(p.code.as_str(), "401" | "403"),
            "HAProxy's check certificate, no password, {what}: {p:?}"
        );
        let p = curl_on("haproxy", &format!("{check} {auth} {args}"));
        assert_eq!(
            p.code, "403",
            "HAProxy's host with the REST password, {what}: the allowlist refuses it: {p:?}"
        );
    }
    let member = curl_on("node2", &format!("{client} {auth} -X POST https://node1:8008/reload"));
    assert!(
        matches!(member.code.as_str(), "200" | "202"),
        "a member with the password may use an unsafe endpoint: {member:?}"
    );
    want_refused(
        "PostgreSQL server cert → Patroni REST",
        curl_on("node1", &format!("{pg} https://node2:8008/health")),
    );
    want_refused(
        "PgBouncer server cert → Patroni REST",
        curl_here(
            &inv_path,
            &state,
            "pgbouncer",
            "pgbouncer-server",
            ("node1", 8008, "/health"),
        ),
    );

    // Refused by TLS, not unreachable: curl's 6 (no such name) and 7 (no connection) would
    // prove nothing.
    let unreachable: Vec<_> = refused.iter().filter(|(_, p)| matches!(p.rc, 6 | 7 | 28)).collect();
    assert!(unreachable.is_empty(), "probes that never reached TLS: {unreachable:?}");
    let accepted: Vec<_> = refused.iter().filter(|(_, p)| p.accepted()).collect();
    assert!(accepted.is_empty(), "accepted where they must be refused: {accepted:?}");
    assert!(refused.len() >= 8, "{refused:?}");

    // Patroni still works after all that.
    let (o, _) = ok(&["verify", &inv]);
    assert!(o.contains("verify: all 7 checks passed"), "{o}");
    ok(&["lab", "down"]);
}
