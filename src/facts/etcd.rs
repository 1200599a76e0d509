//! etcd facts and the rules on them: every endpoint healthy, the members, and one leader agreed
//! by every endpoint. Commands are `etcdctl` over mutual TLS with the etcd server's certificate,
//! run on an etcd host; `parse_*` are pure and tested on output captured from etcd on the lab
//! (tests/fixtures/etcd/).

use serde::Deserialize;

use crate::inventory::{Inventory, Role};
use crate::render::{LeafKind, paths};
use crate::transport::Cmd;

/// The client URLs of every etcd member, comma-separated (as `--endpoints` takes them).
pub fn endpoints(inv: &Inventory) -> Vec<String> {
    inv.hosts_with(Role::Etcd)
        .map(|h| format!("https://{}:{}", h.name, inv.etcd.client_port))
        .collect()
}

/// `etcdctl … <args> -w json` against every endpoint. etcdctl exits non-zero when an endpoint
/// is unhealthy and then writes its JSON to stdout all the same, and errors on stderr: both are
/// kept (2>&1) and the exit status is not, so that the answer can be read.
pub fn etcdctl_cmd(inv: &Inventory, remote_ca: &str, args: &[&str]) -> Cmd {
    etcdctl_at(&endpoints(inv), remote_ca, args)
}

/// [`etcdctl_cmd`] against the given client URLs only (a membership change talks to the
/// members that run, not to the inventory's list).
pub fn etcdctl_at(endpoints: &[String], remote_ca: &str, args: &[&str]) -> Cmd {
    let mut argv = vec![
        endpoints.join(","),
        remote_ca.to_string(),
        paths::leaf_cert(LeafKind::EtcdServer),
        paths::leaf_key(LeafKind::EtcdServer),
    ];
    argv.extend(args.iter().map(|a| a.to_string()));
    Cmd::script(
        "e=$1 ca=$2 cert=$3 key=$4; shift 4; ETCDCTL_API=3 etcdctl --endpoints=\"$e\" --cacert=\"$ca\" --cert=\"$cert\" --key=\"$key\" \"$@\" -w json 2>&1 || true",
        argv,
    )
}

/// `endpoint health` of every member, as JSON, and as text too when the JSON form failed
/// (etcdctl exits non-zero when an endpoint is unhealthy, or if its release had no JSON form of
/// this command; the text form is `<endpoint> is healthy: …` / `is unhealthy: …`, on stderr in
/// 3.4 and stdout in 3.5).
pub fn health_cmd(inv: &Inventory, remote_ca: &str) -> Cmd {
    health_at(&endpoints(inv), remote_ca)
}

/// [`health_cmd`] of the given client URLs only.
pub fn health_at(endpoints: &[String], remote_ca: &str) -> Cmd {
    Cmd::script(
        "e=$1 ca=$2 cert=$3 key=$4; c() { ETCDCTL_API=3 etcdctl --endpoints=\"$e\" --cacert=\"$ca\" --cert=\"$cert\" --key=\"$key\" endpoint health \"$@\" 2>&1; }; c -w json || c || true",
        [
            endpoints.join(","),
            remote_ca.to_string(),
            paths::leaf_cert(LeafKind::EtcdServer),
            paths::leaf_key(LeafKind::EtcdServer),
        ],
    )
}

/// `endpoint status` of every member (leader, raft term, version).
pub fn status_cmd(inv: &Inventory, remote_ca: &str) -> Cmd {
    etcdctl_cmd(inv, remote_ca, &["endpoint", "status"])
}

/// `member list`.
pub fn members_cmd(inv: &Inventory, remote_ca: &str) -> Cmd {
    etcdctl_cmd(inv, remote_ca, &["member", "list"])
}

/// Why etcdctl's answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("etcdctl {what}: unexpected answer: {excerpt}")]
pub struct ParseError {
    /// Which command.
    pub what: &'static str,
    /// The start of the answer.
    pub excerpt: String,
}

fn parse_error(what: &'static str, text: &str) -> ParseError {
    ParseError {
        what,
        excerpt: text.trim().chars().take(300).collect(),
    }
}

/// The first JSON document of type `T` in `text` that starts a line: etcdctl 3.5 logs warnings
/// as JSON objects on stderr (kept with 2>&1) before its answer, and 3.4 writes `Error: …`
/// after it.
fn first_json<T: serde::de::DeserializeOwned>(text: &str) -> Option<T> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.starts_with(['[', '{'])
            && let Some(Ok(v)) = serde_json::Deserializer::from_str(&text[offset..])
                .into_iter::<T>()
                .next()
        {
            return Some(v);
        }
        offset += line.len();
    }
    None
}

/// One endpoint's health.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Health {
    /// Its client URL.
    pub endpoint: String,
    /// Healthy (a linearizable read succeeded).
    pub health: bool,
    /// Why not, when not.
    #[serde(default)]
    pub error: Option<String>,
}

/// Parses `endpoint health -w json`, or its text form when there is no JSON answer.
pub fn parse_health(text: &str) -> Result<Vec<Health>, ParseError> {
    if let Some(h) = first_json(text) {
        return Ok(h);
    }
    let h: Vec<Health> = text
        .lines()
        .filter_map(|l| {
            let (endpoint, rest) = l.split_once(" is ")?;
            let health = rest.starts_with("healthy");
            (health || rest.starts_with("unhealthy")).then(|| Health {
                endpoint: endpoint.trim().to_string(),
                health,
                error: (!health).then(|| rest.trim_start_matches("unhealthy:").trim().to_string()),
            })
        })
        .collect();
    if h.is_empty() {
        Err(parse_error("endpoint health", text))
    } else {
        Ok(h)
    }
}

/// The health rule: every one of `expected` endpoints healthy. `Ok` says `n/n healthy`.
pub fn check_health(health: &[Health], expected: usize) -> Result<String, String> {
    let healthy = health.iter().filter(|h| h.health).count();
    if healthy == expected && health.len() == expected {
        Ok(format!("{healthy}/{expected} healthy"))
    } else {
        let bad: Vec<String> = health
            .iter()
            .filter(|h| !h.health)
            .map(|h| format!("{}: {}", h.endpoint, h.error.as_deref().unwrap_or("unhealthy")))
            .collect();
        Err(format!("{healthy}/{expected} healthy: {}", bad.join("; ")))
    }
}

/// A member as `member list` shows it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Member {
    /// Member id.
    #[serde(rename = "ID")]
    pub id: u64,
    /// Its name (empty until it started once).
    #[serde(default)]
    pub name: String,
    /// Peer URLs.
    #[serde(rename = "peerURLs", default)]
    pub peer_urls: Vec<String>,
    /// Client URLs.
    #[serde(rename = "clientURLs", default)]
    pub client_urls: Vec<String>,
    /// A learner (not voting yet).
    #[serde(rename = "isLearner", default)]
    pub is_learner: bool,
}

/// Parses `member list -w json`.
pub fn parse_members(text: &str) -> Result<Vec<Member>, ParseError> {
    #[derive(Deserialize)]
    struct List {
        members: Vec<Member>,
    }
    first_json::<List>(text)
        .map(|l| l.members)
        .ok_or_else(|| parse_error("member list", text))
}

/// One endpoint's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointStatus {
    /// Its client URL.
    pub endpoint: String,
    /// The member answering.
    pub member_id: u64,
    /// The leader it follows.
    pub leader: u64,
    /// Raft term.
    pub raft_term: u64,
    /// etcd version.
    pub version: String,
}

/// Parses `endpoint status -w json`.
pub fn parse_status(text: &str) -> Result<Vec<EndpointStatus>, ParseError> {
    #[derive(Deserialize)]
    struct Header {
        #[serde(default)]
        member_id: u64,
    }
    #[derive(Deserialize)]
    struct Status {
        header: Header,
        #[serde(default)]
        leader: u64,
        #[serde(rename = "raftTerm", default)]
        raft_term: u64,
        #[serde(default)]
        version: String,
    }
    #[derive(Deserialize)]
    struct Entry {
        #[serde(rename = "Endpoint")]
        endpoint: String,
        #[serde(rename = "Status")]
        status: Status,
    }
    let entries: Vec<Entry> = first_json(text).ok_or_else(|| parse_error("endpoint status", text))?;
    Ok(entries
        .into_iter()
        .map(|e| EndpointStatus {
            endpoint: e.endpoint,
            member_id: e.status.header.member_id,
            leader: e.status.leader,
            raft_term: e.status.raft_term,
            version: e.status.version,
        })
        .collect())
}

/// The leader every answering endpoint agrees on, if they agree.
pub fn agreed_leader(status: &[EndpointStatus]) -> Option<u64> {
    let first = status.first()?.leader;
    (first != 0 && status.iter().all(|s| s.leader == first)).then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_rule_names_the_unhealthy() {
        let h = parse_health(
            r#"[{"endpoint":"https://e1:2379","health":true,"took":"1ms"},{"endpoint":"https://e2:2379","health":false,"took":"5s","error":"context deadline exceeded"}]"#,
        )
        .expect("parses");
        let e = check_health(&h, 2).expect_err("one down");
        assert!(
            e.starts_with("1/2 healthy: https://e2:2379: context deadline exceeded"),
            "{e}"
        );
        assert_eq!(check_health(&h[..1], 1), Ok("1/1 healthy".into()));
        assert!(check_health(&h[..1], 3).is_err());
        assert!(parse_health("Error: open /etc/ssl/x: no such file").is_err());
        // etcdctl 3.5 logs a retry as JSON before the answer (stderr kept with 2>&1).
        let logged = "{\"level\":\"warn\",\"msg\":\"retrying of unary invoker failed\"}\n[{\"endpoint\":\"https://e1:2379\",\"health\":true}]\nError: unhealthy cluster\n";
        assert_eq!(parse_health(logged).expect("skips the log line").len(), 1);
        assert!(parse_members("{\"level\":\"warn\"}\n").is_err());
        // The text form (etcdctl 3.4 on stderr, kept with 2>&1).
        let text = "https://e1:2379 is healthy: successfully committed proposal: took = 2.1ms\nhttps://e2:2379 is unhealthy: failed to commit proposal: context deadline exceeded\nError: unhealthy cluster\n";
        let h = parse_health(text).expect("text form");
        assert_eq!(h.len(), 2);
        assert!(h[0].health && !h[1].health);
        assert_eq!(
            h[1].error.as_deref(),
            Some("failed to commit proposal: context deadline exceeded")
        );
    }

    #[test]
    fn status_agrees_on_a_leader() {
        let s = parse_status(
            r#"[{"Endpoint":"https://e1:2379","Status":{"header":{"member_id":1,"raft_term":2},"version":"3.5.16","leader":1,"raftTerm":2}},
                {"Endpoint":"https://e2:2379","Status":{"header":{"member_id":2,"raft_term":2},"version":"3.5.16","leader":1,"raftTerm":2}}]"#,
        )
        .expect("parses");
        assert_eq!(agreed_leader(&s), Some(1));
        assert_eq!(s[1].member_id, 2);
        assert_eq!(agreed_leader(&[]), None);
    }

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/etcd/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn the_real_etcd_answers() {
        let h = parse_health(&fixture("endpoint-health.json")).expect("parses");
        assert_eq!(check_health(&h, 3), Ok("3/3 healthy".into()));
        // etcd3 stopped: a JSON log line first, then the answer, then `Error: unhealthy cluster`.
        let h = parse_health(&fixture("endpoint-health-one-down.txt")).expect("parses");
        let e = check_health(&h, 3).expect_err("one down");
        assert_eq!(e, "2/3 healthy: https://etcd3:2379: context deadline exceeded");
        let s = parse_status(&fixture("endpoint-status.json")).expect("parses");
        assert_eq!(s.len(), 3);
        assert_eq!(agreed_leader(&s), Some(12590126685950953770));
        assert!(s.iter().all(|x| x.version == "3.5.16" && x.raft_term == 2));
        let down = parse_status(&fixture("endpoint-status-one-down.txt")).expect("parses");
        assert_eq!(down.len(), 2);
        assert_eq!(agreed_leader(&down), Some(12590126685950953770));
        let m = parse_members(&fixture("member-list.json")).expect("parses");
        let names: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["etcd3", "etcd2", "etcd1"]);
        assert_eq!(m[2].id, 12590126685950953770);
        assert_eq!(m[0].peer_urls, ["https://etcd3:2380"]);
    }
}
