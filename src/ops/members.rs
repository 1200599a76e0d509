//! Membership changes by editing the inventory and re-running `pgha deploy` (docs/day2.md):
//! which etcd members join or leave, which PostgreSQL nodes join or leave, and the refusals
//! that keep the cluster safe (an etcd change that would lose quorum on the way, removing the
//! Patroni leader or the last synchronous standby). The cluster's own view is the truth:
//! etcd's `member list` and Patroni's `/cluster`, compared with the inventory ([`plan`] is
//! pure and unit-tested). Joining etcd members are added by the deploy playbook's serial
//! `etcd members join` play from the variables [`MemberPlan::vars`] gives each host; departing
//! members are removed after the playbook by [`remove_departed`]. The membership record
//! (`STATE/members.json`) keeps what the cluster itself cannot tell: how each etcd member
//! bootstrapped (so its config never changes afterwards) and how to reach a host that left the
//! inventory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::pool::Conns;
use super::{Connect, OpsError, Reporter};
use crate::facts::{etcd, patroni};
use crate::inventory::{Host, Inventory, Role, SyncMode};
use crate::render::{EtcdBootstrap, Target, paths};
use crate::transport::{self, Cmd, Conn, DEFAULT_TIMEOUT, Endpoint};

/// The membership record's file name in the state directory.
pub const RECORD_FILE: &str = "members.json";

/// What the state directory remembers about the cluster's members.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Every host of the last deploy, by name: how to reach it once it left the inventory.
    #[serde(default)]
    pub hosts: BTreeMap<String, RecordedHost>,
    /// How each etcd member bootstrapped (its config keeps saying so).
    #[serde(default)]
    pub etcd_bootstrap: BTreeMap<String, EtcdBootstrap>,
}

/// A host as the last deploy knew it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedHost {
    /// Its address.
    pub address: String,
    /// Its roles.
    pub roles: Vec<String>,
    /// SSH user.
    pub ssh_user: String,
    /// SSH port.
    pub ssh_port: u16,
    /// SSH key file.
    #[serde(default)]
    pub ssh_key: Option<PathBuf>,
    /// known_hosts file.
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
    /// sudo.
    #[serde(default)]
    pub become_: bool,
}

impl RecordedHost {
    /// The record of an inventory host.
    pub fn of(h: &Host) -> Self {
        Self {
            address: h.address.to_string(),
            roles: h.roles.iter().map(|r| r.as_str().to_string()).collect(),
            ssh_user: h.ssh.user.clone(),
            ssh_port: h.ssh.port.get(),
            ssh_key: h.ssh.key.clone(),
            known_hosts: h.ssh.known_hosts.clone(),
            become_: h.ssh.become_,
        }
    }

    fn endpoint(&self, name: &str, accept_new_host_keys: bool) -> Endpoint {
        Endpoint {
            name: name.to_string(),
            address: self.address.clone(),
            port: self.ssh_port,
            user: self.ssh_user.clone(),
            key: self.ssh_key.as_deref().map(transport::expand_home),
            known_hosts: self.known_hosts.as_deref().map(transport::expand_home),
            become_: self.become_ && self.ssh_user != "root",
            accept_new_host_keys,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Reads `STATE/members.json` (an absent file is an empty record).
pub fn read_record(state_root: &Path) -> Result<Record, OpsError> {
    let path = state_root.join(RECORD_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            OpsError::NotDeployed(format!(
                "{}: {e}\n\n  hint: the membership record is pgha's; move it away and re-run to rebuild it",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Record::default()),
        Err(source) => Err(OpsError::Write {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Writes `STATE/members.json` atomically (0600).
pub fn write_record(state_root: &Path, record: &Record) -> Result<(), OpsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = state_root.join(RECORD_FILE);
    let tmp = state_root.join(format!("{RECORD_FILE}.tmp"));
    let err = |source| OpsError::Write {
        path: path.display().to_string(),
        source,
    };
    let body = serde_json::to_vec_pretty(record).expect("a record of strings always serializes");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(&body).and_then(|_| f.sync_all()).map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)
}

/// The cluster's own view of its members.
#[derive(Clone, Debug, Default)]
pub struct Live {
    /// etcd `member list` (None: no member answered — a new cluster, or etcd down).
    pub etcd: Option<Vec<etcd::Member>>,
    /// Health of every listed member's client URL.
    pub etcd_health: Vec<etcd::Health>,
    /// Patroni `/cluster` (None: no node answered).
    pub patroni: Option<Vec<patroni::Member>>,
}

/// An etcd member joining a formed cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EtcdJoin {
    /// Its name.
    pub name: String,
    /// Its peer URL.
    pub peer_url: String,
    /// `member add` still to do (false: added by an interrupted run, not started yet).
    pub needs_add: bool,
    /// The client URLs `member add` goes to (the members running before it).
    pub add_via: Vec<String>,
    /// Its `initial-cluster`: the members after its `member add`.
    pub initial_cluster: String,
}

/// An etcd member leaving.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EtcdLeave {
    /// Its name.
    pub name: String,
    /// Its member id (`member remove` takes it in hex).
    pub id: u64,
    /// Healthy now (an unhealthy one is removed first).
    pub healthy: bool,
}

/// What a deploy would change in the cluster's membership.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MemberPlan {
    /// etcd members joining, in order (one at a time).
    pub etcd_join: Vec<EtcdJoin>,
    /// etcd members leaving, in order (one at a time, after the joins).
    pub etcd_leave: Vec<EtcdLeave>,
    /// PostgreSQL nodes joining as replicas.
    pub pg_join: Vec<String>,
    /// PostgreSQL nodes leaving (Patroni stopped and disabled, member removed from the DCS).
    pub pg_leave: Vec<String>,
    /// Entry services on hosts that no longer have the role (from the record): `(host,
    /// unit)`, `haproxy` or `pgbouncer`, stopped and disabled.
    pub entry_leave: Vec<(String, String)>,
    /// Why the change is refused (nothing is done while any).
    pub refusals: Vec<String>,
    /// The bootstrap of every etcd member of the inventory (rendered into its config).
    #[serde(skip)]
    pub bootstrap: BTreeMap<String, EtcdBootstrap>,
}

impl MemberPlan {
    /// No member joins or leaves.
    pub fn is_empty(&self) -> bool {
        self.etcd_join.is_empty()
            && self.etcd_leave.is_empty()
            && self.pg_join.is_empty()
            && self.pg_leave.is_empty()
            && self.entry_leave.is_empty()
    }

    /// Something leaves (destructive: `--remove-members`).
    pub fn removes(&self) -> bool {
        !self.etcd_leave.is_empty() || !self.pg_leave.is_empty() || !self.entry_leave.is_empty()
    }

    /// The playbook variables of `host` for the `etcd members join` play.
    pub fn vars(&self, host: &str) -> MemberVars {
        match self.etcd_join.iter().find(|j| j.name == host) {
            Some(j) => MemberVars {
                etcd_joining: true,
                etcd_member_add: j.needs_add,
                etcd_join_endpoints: j.add_via.join(","),
                etcd_peer_url: j.peer_url.clone(),
            },
            None => MemberVars::default(),
        }
    }

    /// One line per change, for the plan and the deploy's progress.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for j in &self.etcd_join {
            out.push(format!(
                "etcd: {} joins ({}member add, then it starts with initial-cluster-state existing; healthy before the next)",
                j.name,
                if j.needs_add { "" } else { "already added: no " }
            ));
        }
        for l in &self.etcd_leave {
            out.push(format!(
                "etcd: {} leaves (member remove, then etcd stopped and disabled on it; its data directory moved aside, or deleted with --purge){}",
                l.name,
                if l.healthy { "" } else { " — unhealthy now" }
            ));
        }
        for n in &self.pg_join {
            out.push(format!(
                "postgres: {n} joins as a streaming replica; pg_hba and HAProxy follow"
            ));
        }
        for (h, unit) in &self.entry_leave {
            out.push(format!(
                "{unit}: {h} leaves ({unit} stopped and disabled on it; clients and configs stop naming it)"
            ));
        }
        for n in &self.pg_leave {
            out.push(format!(
                "postgres: {n} leaves (Patroni stopped and disabled on it, its member removed from the DCS; its data is kept unless --purge); pg_hba and HAProxy stop listing it"
            ));
        }
        out
    }
}

/// The playbook variables of the membership plays (`vars.*`, on every host).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MemberVars {
    /// This host's etcd joins a formed cluster in this run.
    pub etcd_joining: bool,
    /// `member add` is still to do for it.
    pub etcd_member_add: bool,
    /// The running members' client URLs (where `member add` goes).
    pub etcd_join_endpoints: String,
    /// Its peer URL.
    pub etcd_peer_url: String,
}

/// The member's inventory name: its name, or for a member added but never started (etcd lists
/// it without a name) the host of its peer URL.
pub fn member_name(m: &etcd::Member) -> String {
    if !m.name.is_empty() {
        return m.name.clone();
    }
    m.peer_urls.first().map(|u| url_host(u).to_string()).unwrap_or_default()
}

/// `https://name:2380` → `name`.
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.rsplit_once(':').map_or(rest, |(h, _)| h)
}

fn quorum(size: usize) -> usize {
    size / 2 + 1
}

/// The membership plan: the inventory against the cluster's view and the record.
pub fn plan(inv: &Inventory, live: &Live, record: &Record) -> MemberPlan {
    let mut p = MemberPlan::default();
    plan_etcd(inv, live, record, &mut p);
    plan_postgres(inv, live, record, &mut p);
    plan_entry(inv, record, &mut p);
    p
}

/// HAProxy and PgBouncer hosts the record has and the inventory no longer gives that role.
fn plan_entry(inv: &Inventory, record: &Record, p: &mut MemberPlan) {
    for (name, h) in &record.hosts {
        for (role, unit) in [(Role::Haproxy, "haproxy"), (Role::Pgbouncer, "pgbouncer")] {
            let had = h.roles.iter().any(|r| r == role.as_str());
            let has = inv.host(name).is_some_and(|x| x.has(role));
            if had && !has {
                p.entry_leave.push((name.clone(), unit.to_string()));
            }
        }
    }
}

fn plan_etcd(inv: &Inventory, live: &Live, record: &Record, p: &mut MemberPlan) {
    let peer_port = inv.etcd.peer_port.get();
    let client_port = inv.etcd.client_port.get();
    let peer_url = |n: &str| format!("https://{}", paths::host_port(n, peer_port));
    let client_url = |n: &str| format!("https://{}", paths::host_port(n, client_port));
    let wanted: Vec<&str> = inv.hosts_with(Role::Etcd).map(|h| h.name.as_str()).collect();
    let inventory_list = || {
        wanted
            .iter()
            .map(|n| format!("{n}={}", peer_url(n)))
            .collect::<Vec<_>>()
            .join(",")
    };
    let Some(members) = &live.etcd else {
        // No member answered: a new cluster (every member `new`), unless the record says the
        // cluster was formed; then who joins cannot be told.
        if record.etcd_bootstrap.is_empty() {
            return;
        }
        let unknown: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|n| !record.etcd_bootstrap.contains_key(*n))
            .collect();
        for n in &wanted {
            if let Some(b) = record.etcd_bootstrap.get(*n) {
                p.bootstrap.insert(n.to_string(), b.clone());
            }
        }
        if !unknown.is_empty() {
            p.refusals.push(format!(
                "etcd: no member answered, so pgha cannot tell whether {} must join the formed cluster; start etcd on the members (systemctl start etcd) and re-run",
                unknown.join(", ")
            ));
        }
        return;
    };
    let healthy: BTreeSet<&str> = live
        .etcd_health
        .iter()
        .filter(|h| h.health)
        .map(|h| url_host(&h.endpoint))
        .collect();
    let named: Vec<(String, &etcd::Member)> = members.iter().map(|m| (member_name(m), m)).collect();
    let is_member = |n: &str| named.iter().any(|(x, _)| x == n);
    // The current members, as `name=peer-url` (etcd compares them as a set).
    let mut current: Vec<String> = named
        .iter()
        .map(|(n, m)| format!("{n}={}", m.peer_urls.first().cloned().unwrap_or_else(|| peer_url(n))))
        .collect();
    let running: Vec<String> = named
        .iter()
        .filter(|(n, m)| !m.name.is_empty() && healthy.contains(n.as_str()))
        .map(|(n, _)| client_url(n))
        .collect();
    // Members that formed the cluster before the record existed keep `new` and the list they
    // were rendered with (the inventory's at the time: the started members).
    let formed = || {
        let mut l: Vec<String> = named
            .iter()
            .filter(|(_, m)| !m.name.is_empty())
            .map(|(n, m)| format!("{n}={}", m.peer_urls.first().cloned().unwrap_or_else(|| peer_url(n))))
            .collect();
        l.sort_by_key(|e| {
            wanted
                .iter()
                .position(|w| e.starts_with(&format!("{w}=")))
                .unwrap_or(usize::MAX)
        });
        l.join(",")
    };
    let mut add_via = running.clone();
    for n in &wanted {
        if let Some(b) = record.etcd_bootstrap.get(*n) {
            p.bootstrap.insert(n.to_string(), b.clone());
            if is_member(n) {
                continue;
            }
        }
        let started = named.iter().any(|(x, m)| x == n && !m.name.is_empty());
        if started {
            p.bootstrap.entry(n.to_string()).or_insert_with(|| EtcdBootstrap {
                state: "new".into(),
                initial_cluster: formed(),
            });
            continue;
        }
        // Joins: added (or to add) now, started with the members at that moment.
        let needs_add = !is_member(n);
        if needs_add {
            current.push(format!("{n}={}", peer_url(n)));
        }
        let b = EtcdBootstrap {
            state: "existing".into(),
            initial_cluster: current.join(","),
        };
        p.bootstrap.insert(n.to_string(), b.clone());
        p.etcd_join.push(EtcdJoin {
            name: n.to_string(),
            peer_url: peer_url(n),
            needs_add,
            add_via: add_via.clone(),
            initial_cluster: b.initial_cluster,
        });
        add_via.push(client_url(n));
    }
    let _ = inventory_list;
    let mut leave: Vec<EtcdLeave> = named
        .iter()
        .filter(|(n, _)| !wanted.contains(&n.as_str()))
        .map(|(n, m)| EtcdLeave {
            name: n.clone(),
            id: m.id,
            healthy: healthy.contains(n.as_str()),
        })
        .collect();
    leave.sort_by_key(|l| l.healthy);
    p.etcd_leave = leave;
    if p.etcd_join.is_empty() && p.etcd_leave.is_empty() {
        return;
    }
    // Safety: every staying member healthy first, and a quorum running at every step.
    let unhealthy: Vec<&str> = named
        .iter()
        .filter(|(n, _)| wanted.contains(&n.as_str()) && !healthy.contains(n.as_str()))
        .filter(|(n, _)| !p.etcd_join.iter().any(|j| &j.name == n))
        .map(|(n, _)| n.as_str())
        .collect();
    if !unhealthy.is_empty() {
        p.refusals.push(format!(
            "etcd: {} unhealthy; a membership change waits until every staying member is healthy (pgha status)",
            unhealthy.join(", ")
        ));
        return;
    }
    let mut size = named.len();
    let mut up = named.iter().filter(|(n, _)| healthy.contains(n.as_str())).count();
    for j in &p.etcd_join {
        if j.needs_add {
            size += 1;
        }
        if up < quorum(size) {
            p.refusals.push(format!(
                "etcd: adding {} makes {size} members with {up} running, below the quorum of {}: etcd would stop answering until it starts; grow a cluster of 1 by redeploying it with 3",
                j.name,
                quorum(size)
            ));
            return;
        }
        up += 1;
    }
    for l in &p.etcd_leave {
        size -= 1;
        if l.healthy {
            up -= 1;
        }
        if size == 0 || up < quorum(size) {
            p.refusals.push(format!(
                "etcd: removing {} leaves {size} members with {up} running, below the quorum of {}; refused",
                l.name,
                quorum(size.max(1))
            ));
            return;
        }
    }
}

fn plan_postgres(inv: &Inventory, live: &Live, record: &Record, p: &mut MemberPlan) {
    let Some(members) = &live.patroni else { return };
    let wanted: Vec<&str> = inv.hosts_with(Role::Postgres).map(|h| h.name.as_str()).collect();
    p.pg_join = wanted
        .iter()
        .filter(|n| !members.iter().any(|m| m.name == **n))
        .map(|n| n.to_string())
        .collect();
    p.pg_leave = members
        .iter()
        .filter(|m| !wanted.contains(&m.name.as_str()))
        .map(|m| m.name.clone())
        .collect();
    for name in &p.pg_leave {
        let m = members
            .iter()
            .find(|m| &m.name == name)
            .expect("a leaving member is a member");
        if m.is_leader() {
            let to = patroni::switchover_candidate(members, name)
                .filter(|c| wanted.contains(c))
                .unwrap_or("NODE");
            p.refusals.push(format!(
                "postgres: {name} is the leader; switch over first (pgha switchover {} --to {to} --yes), then re-run",
                inv.path.display()
            ));
            continue;
        }
        let others_streaming = members
            .iter()
            .filter(|o| !o.is_leader() && o.streams() && wanted.contains(&o.name.as_str()))
            .count();
        if m.is_sync() && inv.patroni.synchronous_mode != SyncMode::Off && others_streaming == 0 {
            p.refusals.push(format!(
                "postgres: {name} is the only synchronous standby and no other replica streams to take over; add or repair a replica first"
            ));
        }
        if !record.hosts.contains_key(name) {
            p.refusals.push(format!(
                "postgres: {name} is a Patroni member but pgha has no record of how to reach it ({RECORD_FILE}); stop it by hand (systemctl disable --now patroni on it), then re-run"
            ));
        }
    }
}

/// How a member stands against the inventory, for `pgha status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Standing {
    /// `etcd` or `patroni`.
    pub layer: &'static str,
    /// The member.
    pub name: String,
    /// `member`, `joining` (in the inventory, not a member yet, or added and not started),
    /// `leaving` (a member the inventory no longer lists).
    pub state: &'static str,
}

/// Every member and inventory host, with how it stands (pure).
pub fn standings(inv: &Inventory, live: &Live) -> Vec<Standing> {
    let mut out = Vec::new();
    if let Some(members) = &live.etcd {
        let wanted: Vec<&str> = inv.hosts_with(Role::Etcd).map(|h| h.name.as_str()).collect();
        for m in members {
            let name = member_name(m);
            let state = match (wanted.contains(&name.as_str()), m.name.is_empty()) {
                (false, _) => "leaving",
                (true, true) => "joining",
                (true, false) => "member",
            };
            out.push(Standing {
                layer: "etcd",
                name,
                state,
            });
        }
        for w in wanted {
            if !members.iter().any(|m| member_name(m) == w) {
                out.push(Standing {
                    layer: "etcd",
                    name: w.to_string(),
                    state: "joining",
                });
            }
        }
    }
    if let Some(members) = &live.patroni {
        let wanted: Vec<&str> = inv.hosts_with(Role::Postgres).map(|h| h.name.as_str()).collect();
        for m in members {
            let state = if !wanted.contains(&m.name.as_str()) {
                "leaving"
            } else if m.settled() {
                "member"
            } else {
                "joining"
            };
            out.push(Standing {
                layer: "patroni",
                name: m.name.clone(),
                state,
            });
        }
        for w in wanted {
            if !members.iter().any(|m| m.name == w) {
                out.push(Standing {
                    layer: "patroni",
                    name: w.to_string(),
                    state: "joining",
                });
            }
        }
    }
    out
}

async fn run_on(conn: &Conn, host: &str, cmd: &Cmd) -> Result<String, String> {
    match conn.exec(cmd, None, DEFAULT_TIMEOUT).await {
        Ok(o) if o.success() => Ok(o.stdout_text()),
        Ok(o) => Err(format!(
            "{host}: `{}` exited {:?}: {}",
            cmd.summary(),
            o.code,
            o.stderr_tail(3)
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Reads the cluster's view: `member list` and health on the first inventory etcd host that
/// answers, `/cluster` on the first PostgreSQL node that answers. Read-only; a host that cannot
/// answer (a new one, without etcdctl or certificates yet) is skipped.
pub async fn read_live(inv: &Inventory, conns: &Conns, remote_ca: &str) -> Live {
    let mut live = Live::default();
    for h in inv.hosts_with(Role::Etcd) {
        let Some(conn) = conns.get(h.name.as_str()) else {
            continue;
        };
        let Ok(text) = run_on(conn, h.name.as_str(), &etcd::members_cmd(inv, remote_ca)).await else {
            continue;
        };
        let Ok(members) = etcd::parse_members(&text) else {
            continue;
        };
        let urls: Vec<String> = members
            .iter()
            .filter(|m| !m.name.is_empty())
            .filter_map(|m| m.client_urls.first().cloned())
            .collect();
        if let Ok(text) = run_on(conn, h.name.as_str(), &etcd::health_at(&urls, remote_ca)).await {
            live.etcd_health = etcd::parse_health(&text).unwrap_or_default();
        }
        live.etcd = Some(members);
        break;
    }
    for h in inv.hosts_with(Role::Postgres) {
        let Some(conn) = conns.get(h.name.as_str()) else {
            continue;
        };
        let cmd = patroni::rest_cmd(inv, h.name.as_str(), remote_ca, "/cluster");
        if let Ok(body) = run_on(conn, h.name.as_str(), &cmd).await
            && let Ok(m) = patroni::parse_cluster(&body)
        {
            live.patroni = Some(m);
            break;
        }
    }
    live
}

/// The record after a successful deploy: the inventory's hosts and every etcd member's
/// bootstrap.
pub fn record_after(inv: &Inventory, plan: &MemberPlan) -> Record {
    Record {
        hosts: inv
            .hosts
            .iter()
            .map(|h| (h.name.to_string(), RecordedHost::of(h)))
            .collect(),
        etcd_bootstrap: plan.bootstrap.clone(),
    }
}

/// What [`remove_departed`] needs besides the plan.
pub struct Removal<'a> {
    /// The inventory (the staying hosts).
    pub inv: &'a Inventory,
    /// Connections to the inventory's hosts.
    pub conns: &'a Conns,
    /// The record (how to reach departed hosts).
    pub record: &'a Record,
    /// The CA bundle path on the hosts.
    pub remote_ca: String,
    /// Delete the departing members' data instead of keeping it (`--purge`).
    pub purge: bool,
    /// How to connect.
    pub connect: &'a Connect,
    /// Progress.
    pub rep: &'a Arc<dyn Reporter>,
}

/// Removes the departing members, after the playbook converged the staying hosts (they no
/// longer list them): PostgreSQL nodes first (Patroni stopped and disabled, member key deleted,
/// gone from `/cluster`), then etcd members one at a time (quorum checked before, `member
/// remove`, etcd stopped and disabled on the host and its data directory moved aside, the
/// staying members healthy after).
pub async fn remove_departed(r: &Removal<'_>, plan: &MemberPlan) -> Result<(), OpsError> {
    let (etcd_host, etcd_conn) = r
        .inv
        .hosts_with(Role::Etcd)
        .find_map(|h| r.conns.get(h.name.as_str()).map(|c| (h.name.to_string(), c.clone())))
        .ok_or_else(|| OpsError::Day2("no etcd host connected".into()))?;
    let staying = etcd::endpoints(r.inv);
    for (name, unit) in &plan.entry_leave {
        let conn = match r.conns.get(name) {
            Some(c) => c.clone(),
            None => connect_departed(r, name).await?,
        };
        run_on(
            &conn,
            name,
            &Cmd::new("systemctl").args(["disable", "--now", unit.as_str()]),
        )
        .await
        .map_err(|e| OpsError::Day2(format!("{unit}: {name} leaves: {e}")))?;
        if !r.conns.contains_key(name) {
            let _ = conn.close().await;
        }
        r.rep.info(&format!("members: {unit} stopped and disabled on {name}"));
    }
    for name in &plan.pg_leave {
        let t = Instant::now();
        let conn = connect_departed(r, name).await?;
        let res = run_on(&conn, name, &postgres_leave_cmd(&r.inv.cluster_name, r.purge)).await;
        let _ = conn.close().await;
        res.map_err(|e| OpsError::Day2(format!("postgres: {name} leaves: {e}")))?;
        let key = format!("/service/{}/members/{name}", r.inv.cluster_name);
        run_on(
            &etcd_conn,
            &etcd_host,
            &etcd::etcdctl_at(&staying, &r.remote_ca, &["del", &key]),
        )
        .await
        .map_err(|e| OpsError::Day2(format!("postgres: {name}: deleting its member key {key}: {e}")))?;
        wait_until(Duration::from_secs(60), || async {
            read_live(r.inv, r.conns, &r.remote_ca)
                .await
                .patroni
                .is_some_and(|m| !m.iter().any(|m| &m.name == name))
        })
        .await
        .map_err(|_| {
            OpsError::Day2(format!(
                "postgres: {name} still listed by Patroni's /cluster after 60 s"
            ))
        })?;
        r.rep.info(&format!(
            "members: postgres {name} left (Patroni stopped and disabled, member removed, data {}) in {:.1} s",
            if r.purge { "deleted" } else { "kept" },
            t.elapsed().as_secs_f64()
        ));
    }
    for l in &plan.etcd_leave {
        let t = Instant::now();
        let live = read_live(r.inv, r.conns, &r.remote_ca).await;
        let Some(members) = &live.etcd else {
            return Err(OpsError::Day2(format!(
                "etcd: no member answered before removing {}",
                l.name
            )));
        };
        let size = members.len() - 1;
        let up = live
            .etcd_health
            .iter()
            .filter(|h| h.health && url_host(&h.endpoint) != l.name)
            .count();
        if up < quorum(size) {
            return Err(OpsError::Refused(format!(
                "etcd: removing {} would leave {size} members with {up} healthy, below the quorum of {}; nothing removed",
                l.name,
                quorum(size)
            )));
        }
        let id = format!("{:x}", l.id);
        if members.iter().any(|m| m.id == l.id) {
            run_on(
                &etcd_conn,
                &etcd_host,
                &etcd::etcdctl_at(&staying, &r.remote_ca, &["member", "remove", &id]),
            )
            .await
            .map_err(|e| OpsError::Day2(format!("etcd: member remove {} ({id}): {e}", l.name)))?;
        }
        match connect_departed(r, &l.name).await {
            Ok(conn) => {
                let res = run_on(&conn, &l.name, &etcd_leave_cmd(&r.inv.cluster_name, r.purge)).await;
                let _ = conn.close().await;
                res.map_err(|e| OpsError::Day2(format!("etcd: stopping {} after its removal: {e}", l.name)))?;
            }
            Err(e) => r.rep.error(&format!(
                "etcd: {} removed from the cluster, but its host could not be reached to stop etcd ({e}); stop and disable it by hand",
                l.name
            )),
        }
        let expected = r.inv.hosts_with(Role::Etcd).count();
        let healthy = || async {
            let live = read_live(r.inv, r.conns, &r.remote_ca).await;
            live.etcd.as_ref().is_some_and(|m| m.len() == size)
                && live.etcd_health.iter().filter(|h| h.health).count() >= quorum(size)
        };
        wait_until(Duration::from_secs(60), healthy)
            .await
            .map_err(|_| OpsError::Day2(format!("etcd: the cluster is not healthy after removing {}", l.name)))?;
        let _ = expected;
        r.rep.info(&format!(
            "members: etcd {} left ({size} members) in {:.1} s",
            l.name,
            t.elapsed().as_secs_f64()
        ));
    }
    Ok(())
}

/// What runs on a departing PostgreSQL node: Patroni stopped and disabled (it stops
/// PostgreSQL with it); with `purge`, its data directory deleted (whichever Debian release's
/// layout the host has: the record does not say which release it runs).
pub fn postgres_leave_cmd(cluster: &str, purge: bool) -> Cmd {
    if !purge {
        return Cmd::new("systemctl").args(["disable", "--now", "patroni"]);
    }
    let dirs = Target::ALL.map(|t| paths::pg_data_dir(t, cluster));
    Cmd::script(
        "systemctl disable --now patroni && for d in \"$@\"; do rm -rf --one-file-system -- \"$d\"; done",
        dirs,
    )
}

/// What runs on a departing etcd member once it is out of the cluster: etcd stopped and
/// disabled, its data directory moved aside (`<dir>.removed-<unix time>`) or, with `purge`,
/// deleted.
pub fn etcd_leave_cmd(cluster: &str, purge: bool) -> Cmd {
    let dir = paths::etcd_data_dir(cluster);
    let script = if purge {
        "systemctl disable --now etcd && rm -rf --one-file-system -- \"$1\""
    } else {
        "systemctl disable --now etcd && if [ -d \"$1\" ]; then mv \"$1\" \"$1.removed-$(date +%s)\"; fi"
    };
    Cmd::script(script, [dir])
}

async fn connect_departed(r: &Removal<'_>, name: &str) -> Result<Conn, OpsError> {
    let h = r
        .record
        .hosts
        .get(name)
        .ok_or_else(|| OpsError::Refused(format!("{name}: no record of how to reach it in {RECORD_FILE}")))?;
    transport::connect(r.connect.transport, h.endpoint(name, r.connect.accept_new_host_keys))
        .await
        .map_err(OpsError::from)
}

async fn wait_until<F, Fut>(bound: Duration, mut f: F) -> Result<(), ()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + bound;
    loop {
        if f().await {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(yaml: &str) -> Inventory {
        crate::inventory::parse(Path::new("t.yaml"), yaml.as_bytes())
            .expect("valid inventory")
            .inventory
    }

    fn hosts(pg: &[&str], etcd: &[&str]) -> Inventory {
        let mut y = String::from("cluster: {name: t}\nhosts:\n");
        let mut i = 10;
        for n in pg {
            i += 1;
            y.push_str(&format!("  {n}: {{address: 10.0.0.{i}, dc: a, roles: [postgres]}}\n"));
        }
        for n in etcd {
            i += 1;
            y.push_str(&format!("  {n}: {{address: 10.0.0.{i}, dc: a, roles: [etcd]}}\n"));
        }
        y.push_str("  hp: {address: 10.0.0.99, dc: a, roles: [haproxy, pgbouncer]}\n");
        inv(&y)
    }

    fn em(id: u64, name: &str, started: bool) -> etcd::Member {
        etcd::Member {
            id,
            name: if started { name.into() } else { String::new() },
            peer_urls: vec![format!("https://{name}:2380")],
            client_urls: if started {
                vec![format!("https://{name}:2379")]
            } else {
                vec![]
            },
            is_learner: false,
        }
    }

    fn health(names: &[&str]) -> Vec<etcd::Health> {
        names
            .iter()
            .map(|n| etcd::Health {
                endpoint: format!("https://{n}:2379"),
                health: true,
                error: None,
            })
            .collect()
    }

    fn pm(name: &str, role: &str, state: &str) -> patroni::Member {
        patroni::Member {
            name: name.into(),
            role: role.into(),
            state: state.into(),
            timeline: Some(1),
            lag: Some(serde_json::json!(0)),
            pending_restart: false,
        }
    }

    fn three() -> Live {
        Live {
            etcd: Some(vec![em(1, "e1", true), em(2, "e2", true), em(3, "e3", true)]),
            etcd_health: health(&["e1", "e2", "e3"]),
            patroni: Some(vec![
                pm("n1", "leader", "running"),
                pm("n2", "sync_standby", "streaming"),
                pm("n3", "replica", "streaming"),
            ]),
        }
    }

    #[test]
    fn a_new_cluster_changes_no_membership() {
        let p = plan(
            &hosts(&["n1"], &["e1", "e2", "e3"]),
            &Live::default(),
            &Record::default(),
        );
        assert!(p.is_empty() && p.refusals.is_empty() && p.bootstrap.is_empty(), "{p:?}");
    }

    #[test]
    fn growing_etcd_adds_one_member_at_a_time_each_with_the_members_at_its_add() {
        let i = hosts(&["n1", "n2", "n3"], &["e1", "e2", "e3", "e4", "e5"]);
        let p = plan(&i, &three(), &Record::default());
        assert!(p.refusals.is_empty(), "{:?}", p.refusals);
        let names: Vec<&str> = p.etcd_join.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["e4", "e5"]);
        assert_eq!(
            p.etcd_join[0].initial_cluster,
            "e1=https://e1:2380,e2=https://e2:2380,e3=https://e3:2380,e4=https://e4:2380"
        );
        assert!(
            p.etcd_join[1]
                .initial_cluster
                .ends_with("e4=https://e4:2380,e5=https://e5:2380")
        );
        assert_eq!(p.etcd_join[1].add_via.len(), 4, "e5 is added through e1..e4");
        assert_eq!(p.bootstrap["e4"].state, "existing");
        // Members formed before the record keep `new` and the list they were rendered with.
        assert_eq!(p.bootstrap["e1"].state, "new");
        assert_eq!(
            p.bootstrap["e1"].initial_cluster,
            "e1=https://e1:2380,e2=https://e2:2380,e3=https://e3:2380"
        );
        assert!(p.vars("e4").etcd_member_add);
        assert!(!p.vars("e1").etcd_joining);
        assert!(!p.removes());
    }

    #[test]
    fn an_interrupted_join_is_resumed_without_a_second_member_add() {
        let i = hosts(&["n1", "n2", "n3"], &["e1", "e2", "e3", "e4", "e5"]);
        let mut live = three();
        live.etcd.as_mut().expect("etcd").push(em(4, "e4", false));
        let p = plan(&i, &live, &Record::default());
        assert!(p.refusals.is_empty(), "{:?}", p.refusals);
        assert!(!p.etcd_join[0].needs_add && p.etcd_join[0].name == "e4");
        assert!(p.etcd_join[1].needs_add);
        assert_eq!(p.etcd_join[0].initial_cluster.matches('=').count(), 4);
    }

    #[test]
    fn the_record_keeps_a_joined_member_stable() {
        let i = hosts(&["n1", "n2", "n3"], &["e1", "e2", "e3", "e4", "e5"]);
        let first = plan(&i, &three(), &Record::default());
        let record = record_after(&i, &first);
        let mut live = three();
        live.etcd
            .as_mut()
            .expect("etcd")
            .extend([em(4, "e4", true), em(5, "e5", true)]);
        live.etcd_health = health(&["e1", "e2", "e3", "e4", "e5"]);
        let again = plan(&i, &live, &record);
        assert!(again.is_empty() && again.refusals.is_empty(), "{again:?}");
        assert_eq!(again.bootstrap, first.bootstrap, "the configs do not change");
    }

    #[test]
    fn shrinking_etcd_removes_and_refuses_to_lose_quorum() {
        let i = hosts(&["n1", "n2", "n3"], &["e1", "e2", "e3"]);
        let mut live = three();
        live.etcd
            .as_mut()
            .expect("etcd")
            .extend([em(4, "e4", true), em(5, "e5", true)]);
        live.etcd_health = health(&["e1", "e2", "e3", "e4", "e5"]);
        let p = plan(&i, &live, &Record::default());
        assert!(p.refusals.is_empty(), "{:?}", p.refusals);
        assert_eq!(
            p.etcd_leave.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
            ["e4", "e5"]
        );
        assert!(p.removes());
        // e2 down: 5 → 3 would leave 2 running of 3 at the end, but a staying member is
        // unhealthy: refused before anything.
        live.etcd_health = health(&["e1", "e3", "e4", "e5"]);
        let p = plan(&i, &live, &Record::default());
        assert!(p.refusals[0].contains("e2 unhealthy"), "{:?}", p.refusals);
        // A single member cannot grow by member add.
        let one = hosts(&["n1"], &["e1", "e2", "e3"]);
        let live = Live {
            etcd: Some(vec![em(1, "e1", true)]),
            etcd_health: health(&["e1"]),
            patroni: None,
        };
        let p = plan(&one, &live, &Record::default());
        assert!(p.refusals[0].contains("below the quorum of 2"), "{:?}", p.refusals);
    }

    #[test]
    fn a_postgres_node_joins_and_leaves_but_not_the_leader() {
        let grown = hosts(&["n1", "n2", "n3", "n4"], &["e1", "e2", "e3"]);
        let p = plan(&grown, &three(), &Record::default());
        assert_eq!(p.pg_join, ["n4"]);
        assert!(p.refusals.is_empty() && !p.removes());
        let shrunk = hosts(&["n1", "n2"], &["e1", "e2", "e3"]);
        let record = record_after(&hosts(&["n1", "n2", "n3"], &["e1", "e2", "e3"]), &MemberPlan::default());
        let p = plan(&shrunk, &three(), &record);
        assert_eq!(p.pg_leave, ["n3"]);
        assert!(p.refusals.is_empty(), "{:?}", p.refusals);
        assert!(p.entry_leave.is_empty());
        // Without a record of n3, pgha cannot stop it.
        let p = plan(&shrunk, &three(), &Record::default());
        assert!(p.refusals[0].contains("no record"), "{:?}", p.refusals);
        // The leader leaving: refused, naming the switchover to run.
        let no_leader = hosts(&["n2", "n3"], &["e1", "e2", "e3"]);
        let p = plan(&no_leader, &three(), &record);
        assert!(
            p.refusals[0].contains("n1 is the leader") && p.refusals[0].contains("--to n2"),
            "{:?}",
            p.refusals
        );
        // The only synchronous standby, with no other replica streaming.
        let mut live = three();
        live.patroni.as_mut().expect("patroni")[2].state = "stopped".into();
        let p = plan(&hosts(&["n1", "n3"], &["e1", "e2", "e3"]), &live, &record);
        assert!(
            p.refusals.iter().any(|r| r.contains("only synchronous standby")),
            "{:?}",
            p.refusals
        );
    }

    #[test]
    fn an_entry_host_that_leaves_has_its_services_stopped() {
        let before = hosts(&["n1"], &["e1"]);
        let record = record_after(&before, &MemberPlan::default());
        let after = inv(
            "cluster: {name: t}\nhosts:\n  n1: {address: 10.0.0.11, dc: a, roles: [postgres]}\n  e1: {address: 10.0.0.12, dc: a, roles: [etcd]}\n  hp2: {address: 10.0.0.98, dc: a, roles: [haproxy, pgbouncer]}\n",
        );
        let p = plan(&after, &Live::default(), &record);
        assert_eq!(
            p.entry_leave,
            [
                ("hp".to_string(), "haproxy".to_string()),
                ("hp".to_string(), "pgbouncer".to_string())
            ]
        );
        assert!(p.removes());
    }

    #[test]
    fn status_shows_who_joins_and_who_leaves() {
        let i = hosts(&["n1", "n2", "n4"], &["e1", "e2", "e3"]);
        let mut live = three();
        live.etcd.as_mut().expect("etcd").push(em(4, "e4", false));
        let s = standings(&i, &live);
        let get = |layer: &str, n: &str| s.iter().find(|x| x.layer == layer && x.name == n).map(|x| x.state);
        assert_eq!(get("etcd", "e1"), Some("member"));
        assert_eq!(get("etcd", "e4"), Some("leaving"));
        assert_eq!(get("patroni", "n3"), Some("leaving"));
        assert_eq!(get("patroni", "n4"), Some("joining"));
        assert_eq!(url_host("https://e4:2380"), "e4");
    }

    #[test]
    fn a_joining_member_renders_existing_and_the_others_keep_their_config() {
        let i = hosts(&["n1", "n2", "n3"], &["e1", "e2", "e3", "e4", "e5"]);
        let p = plan(&i, &three(), &Record::default());
        let mut material = crate::render::placeholder::placeholder_material(&i);
        let conf = |m: &crate::render::Material, name: &str| {
            let host = i.host(name).expect("host");
            crate::render::render_host(
                &i,
                m,
                host,
                crate::render::Target::Debian13,
                &crate::render::TemplateSource::Embedded,
            )
            .expect("renders")
            .into_iter()
            .find(|f| f.path == paths::ETCD_CONFIG)
            .expect("etcd config")
            .content
        };
        let before = conf(&material, "e1");
        material.etcd_bootstrap = p
            .bootstrap
            .iter()
            .map(|(n, b)| (i.host(n).expect("host").name.clone(), b.clone()))
            .collect();
        let e4 = conf(&material, "e4");
        assert!(e4.contains("initial-cluster-state: existing\n"), "{e4}");
        assert!(
            e4.contains(
                "initial-cluster: \"e1=https://e1:2380,e2=https://e2:2380,e3=https://e3:2380,e4=https://e4:2380\""
            ),
            "{e4}"
        );
        let e1 = conf(&material, "e1");
        assert!(e1.contains("initial-cluster-state: new\n"), "{e1}");
        assert!(
            e1.contains("initial-cluster: \"e1=https://e1:2380,e2=https://e2:2380,e3=https://e3:2380\""),
            "{e1}"
        );
        assert_ne!(before, e1, "without the record e1 would list all five (and restart)");
    }

    #[test]
    fn a_departing_member_keeps_its_data_unless_purged() {
        let kept = postgres_leave_cmd("main", false);
        assert_eq!(kept.argv(), ["systemctl", "disable", "--now", "patroni"]);
        let purged = postgres_leave_cmd("main", true);
        let argv = purged.argv().join(" ");
        assert!(argv.contains("systemctl disable --now patroni && for d in"), "{argv}");
        for t in Target::ALL {
            assert!(purged.argv().contains(&paths::pg_data_dir(t, "main")), "{argv}");
        }
        let e = etcd_leave_cmd("main", false).argv().join(" ");
        assert!(e.contains("mv \"$1\" \"$1.removed-") && !e.contains("rm -rf"), "{e}");
        let e = etcd_leave_cmd("main", true);
        assert!(e.argv().join(" ").contains("rm -rf --one-file-system -- \"$1\""));
        assert_eq!(e.argv().last().map(String::as_str), Some("/var/lib/etcd/main"));
    }

    #[test]
    fn the_record_round_trips() {
        let dir = std::env::temp_dir().join(format!("pgha-members-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        assert_eq!(read_record(&dir).expect("absent is empty"), Record::default());
        let i = hosts(&["n1"], &["e1"]);
        let r = record_after(&i, &MemberPlan::default());
        write_record(&dir, &r).expect("writes");
        assert_eq!(read_record(&dir).expect("reads"), r);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
