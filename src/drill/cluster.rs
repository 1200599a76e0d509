//! The drill's view of the hosts: SSH connections that are dropped and opened again when a host
//! crashes, reboots or is cut off (an SSH master to a dead host would hang every command until
//! its timeout), and Patroni's REST API read with short timeouts from whichever PostgreSQL node
//! answers. The parsing and the cluster rules are `facts::patroni`'s (re-exported here for the
//! drill's steps).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::sync::Mutex;

use super::DrillError;
use crate::facts::patroni;
pub use crate::facts::patroni::{Healthy, Member, assess, leader, rejoined};
use crate::inventory::{Inventory, Role};
use crate::transport::{self, Cmd, Conn, Endpoint, Output, TransportError};

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
        let cmd = patroni::rest_cmd(inv, h.name.as_str(), remote_ca, path);
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
    patroni::parse_cluster(&body).map_err(|e| DrillError::Step {
        step: "Patroni /cluster".into(),
        detail: e.to_string(),
    })
}

/// The drill's reading of Patroni's `/config`: the facts' parse, with the error as the text
/// of a failed step.
pub struct DcsConfig;

impl DcsConfig {
    /// Parses `/config` (see [`patroni::DcsConfig`]).
    pub fn parse(body: &str) -> Result<patroni::DcsConfig, String> {
        patroni::DcsConfig::parse(body).map_err(|e| e.to_string())
    }
}
