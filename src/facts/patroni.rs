//! Patroni facts and the cluster rules on them, written once: who leads, who streams, whether a
//! member has settled, which replica may take over, and how the dynamic configuration (DCS,
//! `/config`) differs from what the inventory wants. [`rest_cmd`] is the command (curl with
//! Patroni's client certificate, mutual TLS); every `parse_*` is pure and tested on outputs
//! captured from Patroni on the lab (tests/fixtures/patroni/). Deploy's waits, verify, status
//! and drills call these; no other copy of these rules belongs anywhere (docs/design.md §10).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::inventory::{Inventory, SyncMode};
use crate::render::{LeafKind, paths};
use crate::transport::Cmd;

/// Seconds curl may take for one REST call (a partitioned node must not stall a poll).
pub const REST_MAX_TIME_S: u32 = 3;

/// `curl` of `path` (e.g. `/cluster`, `/config`, `/patroni`) of Patroni's REST API on `host`,
/// run on that host with Patroni's client certificate; fails on an HTTP error.
pub fn rest_cmd(inv: &Inventory, host: &str, remote_ca: &str, path: &str) -> Cmd {
    Cmd::new("curl").args([
        "-sS".to_string(),
        "--fail".into(),
        "--max-time".into(),
        REST_MAX_TIME_S.to_string(),
        "--cacert".into(),
        remote_ca.to_string(),
        "--cert".into(),
        paths::leaf_cert(LeafKind::PatroniClient),
        "--key".into(),
        paths::leaf_key(LeafKind::PatroniClient),
        format!("https://{host}:{}{path}", inv.patroni.rest_port),
    ])
}

/// The names of PostgreSQL's settings that only a restart applies (`context = 'postmaster'`),
/// read on a PostgreSQL node as the postgres user.
pub fn postmaster_settings_cmd() -> Cmd {
    Cmd::new("runuser").args([
        "-u",
        "postgres",
        "--",
        "psql",
        "-XtA",
        "-c",
        "select name from pg_settings where context = 'postmaster' order by 1",
    ])
}

/// Parses [`postmaster_settings_cmd`]'s output (one name per line).
pub fn parse_postmaster_settings(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// When PostgreSQL cannot be asked: the restart-only settings an inventory commonly sets
/// (PostgreSQL's documentation, "context: postmaster").
pub const POSTMASTER_FALLBACK: &[&str] = &[
    "max_connections",
    "max_locks_per_transaction",
    "max_prepared_transactions",
    "max_wal_senders",
    "max_worker_processes",
    "max_replication_slots",
    "shared_buffers",
    "shared_preload_libraries",
    "track_commit_timestamp",
    "wal_level",
    "wal_log_hints",
    "huge_pages",
    "port",
    "listen_addresses",
];

/// A member as Patroni's `/cluster` lists it (what etcd holds, refreshed by each member's loop).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Member {
    /// Member name (the host's inventory name).
    pub name: String,
    /// `leader`, `replica`, `sync_standby`, `quorum_standby` (`master` before Patroni 3).
    pub role: String,
    /// `running`, `streaming`, `starting`, `stopped`…
    pub state: String,
    /// Timeline.
    #[serde(default)]
    pub timeline: Option<u64>,
    /// Replication lag in bytes (a number), or `"unknown"`, when Patroni knows it.
    #[serde(default)]
    pub lag: Option<serde_json::Value>,
    /// Parameters wait for a PostgreSQL restart.
    #[serde(default, skip_serializing)]
    pub pending_restart: bool,
}

impl Member {
    /// The leader (`standby_leader` in a standby cluster, `master` before Patroni 3).
    pub fn is_leader(&self) -> bool {
        matches!(self.role.as_str(), "leader" | "master" | "primary" | "standby_leader")
    }

    /// A synchronous (or quorum) standby.
    pub fn is_sync(&self) -> bool {
        matches!(self.role.as_str(), "sync_standby" | "quorum_standby")
    }

    /// A replica that streams from the leader (Patroni 3.0 says `running` with a numeric lag;
    /// 3.1+ says `streaming`).
    pub fn streams(&self) -> bool {
        matches!(self.role.as_str(), "replica" | "sync_standby" | "quorum_standby")
            && (self.state == "streaming"
                || (self.state == "running" && self.lag.as_ref().is_some_and(serde_json::Value::is_number)))
    }

    /// Settled: the leader running, or a replica streaming — what HAProxy's checks and clients
    /// then see.
    pub fn settled(&self) -> bool {
        (self.is_leader() && self.state == "running") || self.streams()
    }
}

/// Why Patroni's answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Patroni {what}: unexpected answer ({detail}): {excerpt}")]
pub struct ParseError {
    /// Which endpoint.
    pub what: &'static str,
    /// The JSON error.
    pub detail: String,
    /// The start of the body.
    pub excerpt: String,
}

fn parse_error(what: &'static str, e: &serde_json::Error, body: &str) -> ParseError {
    ParseError {
        what,
        detail: e.to_string(),
        excerpt: body.chars().take(200).collect(),
    }
}

/// Parses `/cluster`.
pub fn parse_cluster(body: &str) -> Result<Vec<Member>, ParseError> {
    #[derive(Deserialize)]
    struct Cluster {
        members: Vec<Member>,
    }
    serde_json::from_str::<Cluster>(body)
        .map(|c| c.members)
        .map_err(|e| parse_error("/cluster", &e, body))
}

/// The leader's name, when exactly one member leads.
pub fn leader(members: &[Member]) -> Option<&str> {
    let mut leaders = members.iter().filter(|m| m.is_leader());
    match (leaders.next(), leaders.next()) {
        (Some(l), None) => Some(l.name.as_str()),
        _ => None,
    }
}

/// Whether `name` is back as a streaming replica.
pub fn rejoined(members: &[Member], name: &str) -> bool {
    members.iter().any(|m| m.name == name && m.streams())
}

/// Whether member `name` has settled (see [`Member::settled`]).
pub fn settled(members: &[Member], name: &str) -> bool {
    members.iter().any(|m| m.name == name && m.settled())
}

/// A turn of the rolling restart for pending parameters: the replicas first, then the primary
/// (after a switchover).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Turn {
    /// The members that are not the leader.
    Replica,
    /// The leader.
    Primary,
}

impl Turn {
    /// The name used in playbooks and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Turn::Replica => "replica",
            Turn::Primary => "primary",
        }
    }
}

/// `name` waits for a PostgreSQL restart (`pending_restart`) and it is its turn: a replica in
/// the replicas' turn, the leader in the primary's.
pub fn restart_due(members: &[Member], name: &str, turn: Turn) -> bool {
    members
        .iter()
        .any(|m| m.name == name && m.pending_restart && (m.is_leader() == (turn == Turn::Primary)))
}

/// The replica a switchover of `leader` should hand over to: a streaming synchronous standby
/// when there is one (with synchronous replication only it may take over), else a streaming
/// replica.
pub fn switchover_candidate<'a>(members: &'a [Member], leader: &str) -> Option<&'a str> {
    let others = || members.iter().filter(|m| m.name != leader && m.streams());
    others()
        .find(|m| m.is_sync())
        .or_else(|| others().next())
        .map(|m| m.name.as_str())
}

/// A healthy cluster: one leader, every expected node a streaming member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Healthy {
    /// The leader.
    pub leader: String,
    /// The synchronous standbys.
    pub sync: Vec<String>,
    /// The replicas that stream (synchronous standbys included).
    pub streaming: usize,
}

/// The cluster rule: exactly one leader, every node of `expected` a member, every other member
/// a streaming replica, and a synchronous standby when synchronous mode is on. `Err` says what
/// is wrong, in words for an operator.
pub fn assess(members: &[Member], expected: &[&str], sync: SyncMode) -> Result<Healthy, String> {
    let leaders: Vec<&str> = members
        .iter()
        .filter(|m| m.is_leader())
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
        .filter(|m| !m.is_leader() && !m.streams())
        .map(|m| format!("{} is {} {}", m.name, m.role, m.state))
        .collect();
    if !lagging.is_empty() {
        return Err(format!("not streaming: {}", lagging.join(", ")));
    }
    let sync_members: Vec<String> = members.iter().filter(|m| m.is_sync()).map(|m| m.name.clone()).collect();
    if sync != SyncMode::Off && sync_members.is_empty() {
        return Err(
            "synchronous mode is on but no member is a synchronous standby yet (a failover could lose commits)".into(),
        );
    }
    Ok(Healthy {
        leader: leaders[0].to_string(),
        sync: sync_members,
        streaming: members.iter().filter(|m| m.streams()).count(),
    })
}

/// Patroni's dynamic configuration (`/config`, held in etcd): the settings pgha reads by name,
/// and the whole document for comparisons.
#[derive(Clone, Debug, Default, PartialEq)]
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
    /// The whole document.
    pub raw: serde_json::Value,
}

impl DcsConfig {
    /// Parses `/config`.
    pub fn parse(body: &str) -> Result<Self, ParseError> {
        let raw: serde_json::Value = serde_json::from_str(body).map_err(|e| parse_error("/config", &e, body))?;
        Ok(Self::from_value(raw))
    }

    /// From an already parsed document (e.g. `bootstrap.dcs` of a rendered config.yml).
    pub fn from_value(raw: serde_json::Value) -> Self {
        let u32_of = |k: &str| {
            raw.get(k)
                .and_then(serde_json::Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
        };
        Self {
            ttl: u32_of("ttl"),
            loop_wait: u32_of("loop_wait"),
            retry_timeout: u32_of("retry_timeout"),
            synchronous_mode: raw.get("synchronous_mode").cloned(),
            failsafe_mode: raw.get("failsafe_mode").and_then(serde_json::Value::as_bool),
            raw,
        }
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

    /// PostgreSQL parameters set through the DCS (`postgresql.parameters`).
    pub fn parameters(&self) -> BTreeMap<String, serde_json::Value> {
        self.raw
            .pointer("/postgresql/parameters")
            .and_then(serde_json::Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    /// Where the running cluster differs from the inventory in the settings a drill depends
    /// on (it keeps what it was bootstrapped with until `pgha deploy` reconciles it).
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
                sync_word(self.sync_mode()),
                sync_word(p.synchronous_mode)
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

/// `on`, `off` or `quorum`, as Patroni 4 writes `synchronous_mode`.
pub fn sync_word(mode: SyncMode) -> &'static str {
    match mode {
        SyncMode::Off => "off",
        SyncMode::On => "on",
        SyncMode::Quorum => "quorum",
    }
}

/// `bootstrap.dcs` of a rendered Patroni config.yml: what the DCS should hold.
pub fn wanted_dcs(config_yml: &[u8]) -> Result<serde_json::Value, String> {
    let file = "/etc/patroni/config.yml";
    let text = std::str::from_utf8(config_yml).map_err(|e| format!("{file}: {e}"))?;
    let doc: serde_json::Value = serde_saphyr::from_str(text).map_err(|e| format!("{file}: {e}"))?;
    doc.pointer("/bootstrap/dcs")
        .cloned()
        .ok_or_else(|| format!("{file}: no bootstrap.dcs"))
}

/// One setting that differs between the DCS and what is wanted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DcsChange {
    /// `ttl`, `synchronous_mode`, `postgresql.use_pg_rewind`, or a PostgreSQL parameter as
    /// `postgresql.parameters.max_connections`.
    pub key: String,
    /// The value in the DCS now (None: not set).
    pub before: Option<serde_json::Value>,
    /// The value wanted (None: removed).
    pub after: Option<serde_json::Value>,
}

impl DcsChange {
    /// The PostgreSQL parameter this change sets, if it is one.
    pub fn parameter(&self) -> Option<&str> {
        self.key.strip_prefix("postgresql.parameters.")
    }
}

/// PostgreSQL compares settings as text: `100` and `"100"` are the same value.
fn same_setting(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    text(a) == text(b)
}

/// The changes that bring the DCS (`have`, from `/config`) to `want` (`bootstrap.dcs` of the
/// rendered Patroni config, which Patroni only reads when the cluster is created): top-level
/// keys and `postgresql.*` compared as values, `postgresql.parameters` compared as text with
/// parameters absent from `want` removed. Keys of `have` that `want` does not name are Patroni's
/// own and left alone.
pub fn dcs_changes(want: &serde_json::Value, have: &serde_json::Value) -> Vec<DcsChange> {
    let mut out = Vec::new();
    let Some(want) = want.as_object() else {
        return out;
    };
    let change = |key: String, before: Option<&serde_json::Value>, after: Option<&serde_json::Value>| DcsChange {
        key,
        before: before.cloned(),
        after: after.cloned(),
    };
    for (key, value) in want {
        if key != "postgresql" {
            if have.get(key) != Some(value) {
                out.push(change(key.clone(), have.get(key), Some(value)));
            }
            continue;
        }
        let have_pg = have.get("postgresql");
        for (pk, pv) in value.as_object().into_iter().flatten() {
            let before = have_pg.and_then(|h| h.get(pk));
            if pk != "parameters" {
                if before != Some(pv) {
                    out.push(change(format!("postgresql.{pk}"), before, Some(pv)));
                }
                continue;
            }
            let empty = serde_json::Map::new();
            let want_params = pv.as_object().unwrap_or(&empty);
            let have_params = before.and_then(serde_json::Value::as_object).unwrap_or(&empty);
            for (name, v) in want_params {
                let had = have_params.get(name);
                if !had.is_some_and(|h| same_setting(h, v)) {
                    out.push(change(format!("postgresql.parameters.{name}"), had, Some(v)));
                }
            }
            for (name, v) in have_params {
                if !want_params.contains_key(name) {
                    out.push(change(format!("postgresql.parameters.{name}"), Some(v), None));
                }
            }
        }
    }
    out
}

/// The PATCH body for `/config` that applies `changes` (None removes a key, as Patroni's API
/// takes `null`); None when nothing changes.
pub fn dcs_patch(changes: &[DcsChange]) -> Option<serde_json::Value> {
    if changes.is_empty() {
        return None;
    }
    let mut patch = serde_json::Map::new();
    for c in changes {
        let value = c.after.clone().unwrap_or(serde_json::Value::Null);
        let mut parts = c.key.split('.').peekable();
        let mut node = &mut patch;
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                node.insert(part.to_string(), value);
                break;
            }
            node = node
                .entry(part.to_string())
                .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()))
                .as_object_mut()
                .expect("inserted as an object just above");
        }
    }
    Some(serde_json::Value::Object(patch))
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
            pending_restart: false,
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
        assert_eq!(h.streaming, 2);
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
        assert!(settled(&members, "b") && settled(&members, "c") && !settled(&members, "a"));
        let stopped_leader = [m("b", "leader", "stopped", None)];
        assert!(!settled(&stopped_leader, "b"));
    }

    #[test]
    fn the_switchover_candidate_is_the_synchronous_standby_first() {
        let members = [
            m("a", "leader", "running", None),
            m("b", "replica", "streaming", Some(0)),
            m("c", "sync_standby", "streaming", Some(0)),
        ];
        assert_eq!(switchover_candidate(&members, "a"), Some("c"));
        let no_sync = [
            m("a", "leader", "running", None),
            m("b", "replica", "streaming", Some(0)),
        ];
        assert_eq!(switchover_candidate(&no_sync, "a"), Some("b"));
        let none = [m("a", "leader", "running", None), m("b", "replica", "starting", None)];
        assert_eq!(switchover_candidate(&none, "a"), None);
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

    #[test]
    fn dcs_changes_compare_parameters_as_text_and_remove_the_unwanted() {
        let want = serde_json::json!({
            "ttl": 25,
            "postgresql": {"use_pg_rewind": true, "parameters": {"max_connections": 200, "work_mem": "4MB"}}
        });
        let have = serde_json::json!({
            "ttl": 25, "loop_wait": 5,
            "postgresql": {"use_pg_rewind": true, "parameters": {"max_connections": "100", "work_mem": "4MB", "old": "x"}}
        });
        let c = dcs_changes(&want, &have);
        let keys: Vec<&str> = c.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(
            keys,
            ["postgresql.parameters.max_connections", "postgresql.parameters.old"]
        );
        assert_eq!(c[0].before, Some(serde_json::json!("100")));
        assert_eq!(c[0].after, Some(serde_json::json!(200)));
        assert_eq!(c[0].parameter(), Some("max_connections"));
        assert_eq!(c[1].after, None);
        assert_eq!(
            dcs_patch(&c),
            Some(serde_json::json!({"postgresql": {"parameters": {"max_connections": 200, "old": null}}}))
        );
        assert!(dcs_changes(&want, &want).is_empty());
        assert_eq!(dcs_patch(&[]), None);
        let loose = serde_json::json!({"postgresql": {"parameters": {"max_connections": "200", "work_mem": "4MB"}}});
        assert!(
            dcs_changes(
                &loose,
                &serde_json::json!({"postgresql": {"parameters": {"max_connections": 200, "work_mem": "4MB"}}})
            )
            .is_empty()
        );
    }

    /// Captured on the lab: tests/fixtures/patroni/.
    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/patroni/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn the_real_cluster_is_healthy_and_its_dcs_parsed() {
        let members = parse_cluster(&fixture("cluster.json")).expect("parses");
        assert_eq!(leader(&members), Some("node1"));
        let h = assess(&members, &["node1", "node2", "node3"], SyncMode::On).expect("healthy");
        assert_eq!(
            (h.leader.as_str(), h.sync.as_slice(), h.streaming),
            ("node1", &["node3".to_string()][..], 2)
        );
        assert!(["node1", "node2", "node3"].iter().all(|n| settled(&members, n)));
        assert_eq!(switchover_candidate(&members, "node1"), Some("node3"));
        let config = DcsConfig::parse(&fixture("config.json")).expect("parses");
        assert_eq!(
            (config.ttl, config.loop_wait, config.retry_timeout),
            (Some(25), Some(5), Some(10))
        );
        assert_eq!(config.sync_mode(), SyncMode::On);
        assert_eq!(config.parameters().get("work_mem"), Some(&serde_json::json!("4MB")));
        // The DCS wants what it has: no change; a new parameter is one change.
        assert!(dcs_changes(&config.raw, &config.raw).is_empty());
        let mut want = config.raw.clone();
        want["postgresql"]["parameters"]["max_connections"] = serde_json::json!("150");
        let c = dcs_changes(&want, &config.raw);
        assert_eq!((c.len(), c[0].parameter()), (1, Some("max_connections")));
    }

    #[test]
    fn a_stopped_replica_is_not_streaming_nor_settled() {
        let members = parse_cluster(&fixture("cluster-replica-stopped.json")).expect("parses");
        let e = assess(&members, &["node1", "node2", "node3"], SyncMode::On).expect_err("node3 stopped");
        assert_eq!(e, "not streaming: node3 is replica stopped");
        assert!(!settled(&members, "node3") && !rejoined(&members, "node3"));
        // Patroni 4 says `"lag": "unknown"` for it: not a number, so not streaming.
        assert_eq!(members[2].lag, Some(serde_json::json!("unknown")));
        assert_eq!(switchover_candidate(&members, "node1"), Some("node2"));
    }

    #[test]
    fn the_restart_only_settings_come_from_pg_settings() {
        let path = format!(
            "{}/tests/fixtures/postgres/postmaster-settings.txt",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).expect("fixture");
        let s = parse_postmaster_settings(&text);
        assert!(s.contains("max_connections") && s.contains("shared_buffers"), "{s:?}");
        assert!(!s.contains("work_mem"));
        for name in POSTMASTER_FALLBACK {
            assert!(s.contains(*name), "{name} is not postmaster-context on PostgreSQL 17");
        }
    }
}
