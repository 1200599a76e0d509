//! The drill's view of the hosts: SSH connections that are dropped and opened again when a host
//! crashes, reboots or is cut off (an SSH master to a dead host would hang every command until
//! its timeout), and Patroni's REST API read with short timeouts from whichever PostgreSQL node
//! answers. Parsing and health rules are pure functions below the I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;

use super::DrillError;
use crate::inventory::{Inventory, Role, SyncMode};
use crate::render::{LeafKind, paths};
use crate::transport::{self, Cmd, Conn, Endpoint, Output, TransportError};
pub use crate::ops::verify::Member;

/// How long to wait for an SSH connection during a drill.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Every command of a poll is bounded by this.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(8);

/// SSH connections by host name, opened on first use and again after a failure.
pub struct Hosts {
    kind: transport::Kind,
    endpoints: BTreeMap<String, Endpoint>,
    conns: Mutex<BTreeMap<String, Conn>>,
}

impl Hosts {
    /// Connections to the inventory's hosts (none is opened yet).
    pub fn new(inv: &Inventory, kind: transport::Kind, accept_new_host_keys: bool) -> Self {
        let endpoints = inv
            .hosts
            .iter()
            .map(|h| {
                let mut ep = Endpoint::from_host(h, accept_new_host_keys);
                ep.connect_timeout = CONNECT_TIMEOUT;
                (h.name.to_string(), ep)
            })
            .collect();
        Self {
            kind,
            endpoints,
            conns: Mutex::new(BTreeMap::new()),
        }
    }

    /// Connections already open (tests give scripted transports); others open on first use.
    pub fn preopened(inv: &Inventory, kind: transport::Kind, conns: BTreeMap<String, Conn>) -> Self {
        let hosts = Self::new(inv, kind, false);
        Self {
            conns: Mutex::new(conns),
            ..hosts
        }
    }

    async fn conn(&self, host: &str) -> Result<Conn, DrillError> {
        if let Some(c) = self.conns.lock().await.get(host) {
            return Ok(c.clone());
        }
        let ep = self.endpoints.get(host).cloned().ok_or_else(|| DrillError::Host {
            host: host.to_string(),
            detail: "not in the inventory".into(),
        })?;
        let conn = tokio::time::timeout(CONNECT_TIMEOUT * 3, transport::connect(self.kind, ep))
            .await
            .map_err(|_| DrillError::Host {
                host: host.to_string(),
                detail: format!("no SSH connection within {} s", (CONNECT_TIMEOUT * 3).as_secs()),
            })?
            .map_err(|e| DrillError::Host {
                host: host.to_string(),
                detail: e.to_string(),
            })?;
        let mut conns = self.conns.lock().await;
        Ok(conns.entry(host.to_string()).or_insert(conn).clone())
    }

    /// Opens a connection to each of `hosts` (in parallel); the errors of those that failed.
    pub async fn connect(&self, hosts: &[String]) -> Vec<DrillError> {
        futures::future::join_all(hosts.iter().map(|h| self.conn(h)))
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect()
    }

    /// Runs `cmd` on `host` within `timeout`. A broken or hung connection is dropped, so the
    /// next command opens a new one.
    pub async fn exec(&self, host: &str, cmd: &Cmd, timeout: Duration) -> Result<Output, DrillError> {
        let conn = self.conn(host).await?;
        match conn.exec(cmd, None, timeout).await {
            Ok(out) => Ok(out),
            Err(e) => {
                if matches!(e, TransportError::Session { .. } | TransportError::Timeout { .. }) {
                    self.forget(host).await;
                }
                Err(DrillError::Host {
                    host: host.to_string(),
                    detail: e.to_string(),
                })
            }
        }
    }

    /// Like [`Hosts::exec`], and fails unless the command exits 0; its stdout.
    pub async fn run_ok(&self, host: &str, cmd: &Cmd, timeout: Duration) -> Result<String, DrillError> {
        let out = self.exec(host, cmd, timeout).await?;
        if out.success() {
            Ok(out.stdout_text())
        } else {
            Err(DrillError::Host {
                host: host.to_string(),
                detail: format!(
                    "`{}` exited with {}: {}",
                    cmd.summary(),
                    out.code.map_or("a signal".to_string(), |c| c.to_string()),
                    out.stderr_tail(3)
                ),
            })
        }
    }

    /// Drops the connection to `host` (after its machine crashed, rebooted or was cut off);
    /// closing it runs in the background and is bounded.
    pub async fn forget(&self, host: &str) {
        if let Some(c) = self.conns.lock().await.remove(host) {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(3), c.close()).await;
            });
        }
    }

    /// Closes every connection (bounded).
    pub async fn close_all(&self) {
        let conns: Vec<Conn> = std::mem::take(&mut *self.conns.lock().await).into_values().collect();
        futures::future::join_all(conns.into_iter().map(|c| async move {
            let _ = tokio::time::timeout(Duration::from_secs(3), c.close()).await;
        }))
        .await;
    }
}

/// `curl` of Patroni's REST API on `host` itself, with its client certificate (mutual TLS).
pub fn rest_cmd(inv: &Inventory, host: &str, remote_ca: &str, path: &str) -> Cmd {
    Cmd::new("curl").args([
        "-sS".to_string(),
        "--fail".into(),
        "--max-time".into(),
        "3".into(),
        "--cacert".into(),
        remote_ca.to_string(),
        "--cert".into(),
        paths::leaf_cert(LeafKind::PatroniClient),
        "--key".into(),
        paths::leaf_key(LeafKind::PatroniClient),
        format!("https://{host}:{}{path}", inv.patroni.rest_port),
    ])
}

/// Reads `path` of Patroni's API from the first PostgreSQL node not in `skip` that answers.
pub async fn rest_get(
    hosts: &Hosts,
    inv: &Inventory,
    remote_ca: &str,
    path: &str,
    skip: &BTreeSet<String>,
) -> Result<String, DrillError> {
    let mut last = DrillError::Step {
        step: format!("Patroni {path}"),
        detail: "no PostgreSQL node to ask".into(),
    };
    for h in inv.hosts_with(Role::Postgres) {
        if skip.contains(h.name.as_str()) {
            continue;
        }
        let cmd = rest_cmd(inv, h.name.as_str(), remote_ca, path);
        match hosts.run_ok(h.name.as_str(), &cmd, POLL_TIMEOUT).await {
            Ok(body) => return Ok(body),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Patroni's members, as `/cluster` lists them (read on a node not in `skip`).
pub async fn members(
    hosts: &Hosts,
    inv: &Inventory,
    remote_ca: &str,
    skip: &BTreeSet<String>,
) -> Result<Vec<Member>, DrillError> {
    let body = rest_get(hosts, inv, remote_ca, "/cluster", skip).await?;
    parse_cluster(&body).map_err(|detail| DrillError::Step {
        step: "Patroni /cluster".into(),
        detail,
    })
}

/// Parses `/cluster`.
pub fn parse_cluster(body: &str) -> Result<Vec<Member>, String> {
    #[derive(Deserialize)]
    struct Cluster {
        members: Vec<Member>,
    }
    serde_json::from_str::<Cluster>(body).map(|c| c.members).map_err(|e| {
        format!(
            "unexpected answer ({e}): {}",
            body.chars().take(200).collect::<String>()
        )
    })
}

/// The settings of Patroni's dynamic configuration (`/config`) a drill depends on.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct DcsConfig {
    /// Leader key TTL.
    pub ttl: Option<u32>,
    /// Loop period.
    pub loop_wait: Option<u32>,
    /// Retry timeout.
    pub retry_timeout: Option<u32>,
    /// `synchronous_mode`: a boolean (Patroni 3) or `on`/`off`/`quorum` text (Patroni 4).
    pub synchronous_mode: Option<serde_json::Value>,
    /// Failsafe mode.
    pub failsafe_mode: Option<bool>,
}

impl DcsConfig {
    /// Parses `/config`.
    pub fn parse(body: &str) -> Result<Self, String> {
        serde_json::from_str(body).map_err(|e| format!("/config: {e}"))
    }

    /// The synchronous mode in force.
    pub fn sync_mode(&self) -> SyncMode {
        match &self.synchronous_mode {
            Some(serde_json::Value::Bool(true)) => SyncMode::On,
            Some(serde_json::Value::String(s)) if s == "on" || s == "true" => SyncMode::On,
            Some(serde_json::Value::String(s)) if s == "quorum" => SyncMode::Quorum,
            _ => SyncMode::Off,
        }
    }

    /// Where the running cluster differs from the inventory (it keeps what it was bootstrapped
    /// with until `pgha deploy` reconciles it).
    pub fn differences(&self, inv: &Inventory) -> Vec<String> {
        let p = &inv.patroni;
        let mut out = Vec::new();
        for (name, live, want) in [
            ("ttl", self.ttl, p.ttl),
            ("loop_wait", self.loop_wait, p.loop_wait),
            ("retry_timeout", self.retry_timeout, p.retry_timeout),
        ] {
            if let Some(v) = live.filter(|v| *v != want) {
                out.push(format!("{name} is {v} in the cluster, {want} in the inventory"));
            }
        }
        if self.sync_mode() != p.synchronous_mode {
            out.push(format!(
                "synchronous_mode is {} in the cluster, {} in the inventory",
                super::sync_word(self.sync_mode()),
                super::sync_word(p.synchronous_mode)
            ));
        }
        if self.failsafe_mode.unwrap_or(false) != p.failsafe_mode {
            out.push(format!(
                "failsafe_mode is {} in the cluster, {} in the inventory",
                self.failsafe_mode.unwrap_or(false),
                p.failsafe_mode
            ));
        }
        out
    }
}

/// Whether `m` is the leader.
pub fn is_leader(m: &Member) -> bool {
    matches!(m.role.as_str(), "leader" | "master" | "primary")
}

/// Whether `m` is a synchronous (or quorum) standby.
pub fn is_sync(m: &Member) -> bool {
    matches!(m.role.as_str(), "sync_standby" | "quorum_standby")
}

/// Whether `m` is a replica that streams from the leader (Patroni 3.0 says `running` with a
/// numeric lag; 3.1+ says `streaming`).
pub fn streams(m: &Member) -> bool {
    matches!(m.role.as_str(), "replica" | "sync_standby" | "quorum_standby")
        && (m.state == "streaming" || (m.state == "running" && m.lag.as_ref().is_some_and(|l| l.is_number())))
}

/// The leader's name, when exactly one member leads.
pub fn leader(members: &[Member]) -> Option<&str> {
    let mut leaders = members.iter().filter(|m| is_leader(m));
    match (leaders.next(), leaders.next()) {
        (Some(l), None) => Some(l.name.as_str()),
        _ => None,
    }
}

/// A cluster fit for a drill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Healthy {
    /// The leader.
    pub leader: String,
    /// The synchronous standbys.
    pub sync: Vec<String>,
}

/// Checks the drill's precondition: exactly one leader, every node of `expected` a member and
/// streaming, and a synchronous standby when synchronous mode is on. `Err` says what is wrong.
pub fn assess(members: &[Member], expected: &[&str], sync: SyncMode) -> Result<Healthy, String> {
    let leaders: Vec<&str> = members
        .iter()
        .filter(|m| is_leader(m))
        .map(|m| m.name.as_str())
        .collect();
    if leaders.len() != 1 {
        return Err(format!("{} leader(s) {leaders:?}, one expected", leaders.len()));
    }
    let missing: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|e| !members.iter().any(|m| m.name == *e))
        .collect();
    if !missing.is_empty() {
        return Err(format!("not a Patroni member: {}", missing.join(", ")));
    }
    let lagging: Vec<String> = members
        .iter()
        .filter(|m| !is_leader(m) && !streams(m))
        .map(|m| format!("{} is {} {}", m.name, m.role, m.state))
        .collect();
    if !lagging.is_empty() {
        return Err(format!("not streaming: {}", lagging.join(", ")));
    }
    let sync_members: Vec<String> = members.iter().filter(|m| is_sync(m)).map(|m| m.name.clone()).collect();
    if sync != SyncMode::Off && sync_members.is_empty() {
        return Err(
            "synchronous mode is on but no member is a synchronous standby yet (a failover could lose commits)".into(),
        );
    }
    Ok(Healthy {
        leader: leaders[0].to_string(),
        sync: sync_members,
    })
}

/// Whether `name` is back as a streaming replica.
pub fn rejoined(members: &[Member], name: &str) -> bool {
    members.iter().any(|m| m.name == name && streams(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, role: &str, state: &str, lag: Option<i64>) -> Member {
        Member {
            name: name.into(),
            role: role.into(),
            state: state.into(),
            timeline: Some(3),
            lag: lag.map(serde_json::Value::from),
        }
    }

    #[test]
    fn cluster_json_parses_patroni_4_and_3() {
        let body = r#"{"members": [
            {"name": "node1", "role": "leader", "state": "running", "api_url": "https://node1:8008/patroni", "host": "node1", "port": 5432, "timeline": 4},
            {"name": "node2", "role": "sync_standby", "state": "streaming", "timeline": 4, "lag": 0},
            {"name": "node3", "role": "replica", "state": "running", "timeline": 4, "lag": 16}
        ], "scope": "pgha-lab"}"#;
        let members = parse_cluster(body).expect("parses");
        assert_eq!(leader(&members), Some("node1"));
        let h = assess(&members, &["node1", "node2", "node3"], SyncMode::On).expect("healthy");
        assert_eq!(h.leader, "node1");
        assert_eq!(h.sync, ["node2"]);
        assert!(parse_cluster("<html>").is_err());
    }

    #[test]
    fn unhealthy_clusters_are_named() {
        let two = [m("a", "leader", "running", None), m("b", "leader", "running", None)];
        assert!(
            assess(&two, &["a", "b"], SyncMode::Off)
                .expect_err("two")
                .contains("2 leader(s)")
        );
        let stopped = [m("a", "leader", "running", None), m("b", "replica", "stopped", None)];
        assert!(
            assess(&stopped, &["a", "b"], SyncMode::Off)
                .expect_err("b")
                .contains("b is replica stopped")
        );
        let missing = [m("a", "leader", "running", None)];
        assert!(
            assess(&missing, &["a", "b"], SyncMode::Off)
                .expect_err("b")
                .contains("not a Patroni member: b")
        );
        let no_sync = [
            m("a", "leader", "running", None),
            m("b", "replica", "streaming", Some(0)),
        ];
        assert!(
            assess(&no_sync, &["a", "b"], SyncMode::On)
                .expect_err("sync")
                .contains("synchronous")
        );
        assert!(assess(&no_sync, &["a", "b"], SyncMode::Off).is_ok());
        assert_eq!(leader(&two), None);
    }

    #[test]
    fn a_rejoined_member_streams_as_a_replica() {
        let members = [
            m("a", "replica", "starting", None),
            m("b", "leader", "running", None),
            m("c", "replica", "running", Some(0)),
        ];
        assert!(!rejoined(&members, "a"));
        assert!(rejoined(&members, "c"));
        assert!(!rejoined(&members, "b"));
        assert!(!rejoined(&members, "z"));
    }

    #[test]
    fn dcs_config_differences_are_named() {
        let text = crate::lab::inventory::render(
            &crate::lab::LabPaths::new("/nonexistent"),
            &crate::lab::topology::default_hosts(
                crate::lab::Subnet::parse_lab(crate::lab::topology::DEFAULT_SUBNET).expect("valid"),
            ),
            crate::lab::Login::Root,
        );
        let inv = crate::inventory::parse(std::path::Path::new("lab.yaml"), text.as_bytes())
            .expect("valid")
            .inventory;
        let same = DcsConfig::parse(r#"{"ttl": 25, "loop_wait": 5, "retry_timeout": 10, "synchronous_mode": "on"}"#)
            .expect("parses");
        assert_eq!(same.differences(&inv), Vec::<String>::new());
        let patroni3 =
            DcsConfig::parse(r#"{"ttl": 20, "synchronous_mode": true, "failsafe_mode": true}"#).expect("parses");
        assert_eq!(patroni3.sync_mode(), SyncMode::On);
        let d = patroni3.differences(&inv);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].starts_with("ttl is 20 in the cluster, 25"), "{d:?}");
        assert!(d[1].starts_with("failsafe_mode is true"), "{d:?}");
    }
}
