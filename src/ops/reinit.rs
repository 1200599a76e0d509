//! `pgha reinit`: rebuild a replica from the leader (Patroni's `POST /reinitialize`: its data
//! directory is removed and copied again with `pg_basebackup`), then wait until it streams.
//! Refuses the leader and a cluster without one. When Patroni is not running on the node (it
//! was stopped, e.g. to repair the node), it is started first so that it can take the request.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::switchover::Cluster;
use super::{Connect, OpsError, Reporter};
use crate::facts::patroni::{self, Member};
use crate::inventory::{Inventory, Role};
use crate::transport::{Cmd, DEFAULT_TIMEOUT};

/// What `pgha reinit` does.
#[derive(Clone, Debug, Default)]
pub struct ReinitOptions {
    /// The replica to rebuild.
    pub node: String,
    /// Do it (without: the plan only).
    pub yes: bool,
    /// State directory (default beside the inventory).
    pub state: Option<PathBuf>,
    /// How to reach the hosts.
    pub connect: Connect,
}

/// What a reinit would do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReinitPlan {
    /// The replica rebuilt.
    pub node: String,
    /// The leader it is copied from.
    pub leader: String,
    /// Its state now (`role state`, or `not a member`).
    pub now: String,
}

/// The pure check: `node` may be rebuilt (not the leader, a leader exists).
pub fn check(members: &[Member], node: &str) -> Result<ReinitPlan, String> {
    let leader = patroni::leader(members).ok_or("the cluster has no single leader to copy from")?;
    if leader == node {
        return Err(format!(
            "{node} is the leader: a reinit would remove the primary's data; switch over first (pgha switchover --to another node), then reinit {node}"
        ));
    }
    let now = members
        .iter()
        .find(|m| m.name == node)
        .map_or("not a member".to_string(), |m| format!("{} {}", m.role, m.state));
    Ok(ReinitPlan {
        node: node.to_string(),
        leader: leader.to_string(),
        now,
    })
}

/// Checks and (with `yes`) rebuilds the replica; returns the seconds until it streamed.
pub async fn reinit(
    inv: &Inventory,
    o: &ReinitOptions,
    rep: &Arc<dyn Reporter>,
) -> Result<(ReinitPlan, Option<f64>), OpsError> {
    if !inv.hosts_with(Role::Postgres).any(|h| h.name.as_str() == o.node) {
        return Err(OpsError::InvalidInput(format!(
            "{}: not a PostgreSQL host of {}",
            o.node,
            inv.path.display()
        )));
    }
    let c = Cluster::open(inv, o.state.as_deref(), &o.connect, "reinit", rep).await?;
    let result = async {
        let members = c.members().await?;
        let p = check(&members, &o.node).map_err(|e| OpsError::Refused(format!("reinit refused: {e}")))?;
        if !o.yes {
            return Ok((p, None));
        }
        let t = Instant::now();
        ensure_patroni(&c, &o.node).await?;
        let answer = c.post(&o.node, "/reinitialize", r#"{"force": true}"#, 30).await?;
        rep.info(&format!(
            "{}: Patroni: {answer}; waiting until it streams again",
            o.node
        ));
        c.wait_rejoined(&o.node).await?;
        let secs = t.elapsed().as_secs_f64();
        rep.info(&format!(
            "{}: rebuilt from {} and streaming in {secs:.1} s",
            o.node, p.leader
        ));
        Ok((p, Some(secs)))
    }
    .await;
    c.close().await;
    result
}

/// Starts Patroni on `node` when it is not running, and waits (bounded) until its REST API
/// answers (any HTTP status: a member whose PostgreSQL fails to start answers 503).
async fn ensure_patroni(c: &Cluster<'_>, node: &str) -> Result<(), OpsError> {
    let conn = c
        .conns
        .get(node)
        .ok_or_else(|| OpsError::Day2(format!("{node}: not connected")))?;
    let start = Cmd::script(
        "systemctl is-active --quiet patroni || systemctl start patroni",
        Vec::<String>::new(),
    );
    let out = conn.exec(&start, None, DEFAULT_TIMEOUT).await?;
    if !out.success() {
        return Err(OpsError::Day2(format!(
            "{node}: starting Patroni failed: {}",
            out.stderr_tail(3)
        )));
    }
    let probe = patroni::rest_cmd(c.inv, node, &c.remote_ca, "/patroni");
    let probe = Cmd::new("curl").args(probe.argv().iter().skip(1).filter(|a| *a != "--fail").cloned());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = conn.exec(&probe, None, DEFAULT_TIMEOUT).await?;
        if out.success() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(OpsError::Day2(format!(
                "{node}: Patroni's REST API does not answer after 60 s: {}",
                out.stderr_tail(2)
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_the_leader_and_names_why() {
        let body = std::fs::read_to_string(format!(
            "{}/tests/fixtures/patroni/cluster.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let ms = patroni::parse_cluster(&body).unwrap();
        let leader = patroni::leader(&ms).unwrap().to_string();
        let e = check(&ms, &leader).unwrap_err();
        assert!(e.contains("is the leader") && e.contains("switch over first"), "{e}");
        let replica = ms.iter().find(|m| !m.is_leader()).unwrap().name.clone();
        let p = check(&ms, &replica).unwrap();
        assert_eq!(p.leader, leader);
        let body = std::fs::read_to_string(format!(
            "{}/tests/fixtures/patroni/cluster-replica-stopped.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let broken = patroni::parse_cluster(&body).unwrap();
        let stopped = broken.iter().find(|m| !m.streams() && !m.is_leader());
        if let Some(s) = stopped {
            assert!(check(&broken, &s.name).is_ok(), "a stopped replica may be rebuilt");
        }
        assert!(check(&[], "x").unwrap_err().contains("no single leader"));
    }
}
