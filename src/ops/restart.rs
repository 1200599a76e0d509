//! `pgha restart`: a rolling PostgreSQL restart through Patroni's REST API (`POST /restart` per
//! member; Patroni itself keeps running): the replicas one at a time, each streaming again
//! before the next, then a switchover (PgBouncer paused around it, as `pgha switchover`), then
//! the old primary, now a replica. `--pending` restarts only the members Patroni shows with
//! `pending_restart`; `--limit` only the hosts named. The order is decided by [`plan`], pure.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::switchover::{Cluster, SwitchoverRun};
use super::{Connect, OpsError, Reporter};
use crate::facts::patroni::{self, Member};
use crate::inventory::{Inventory, Role};

/// What `pgha restart` does.
#[derive(Clone, Debug, Default)]
pub struct RestartOptions {
    /// Only members with parameters waiting for a restart.
    pub pending: bool,
    /// Only these hosts (empty: every PostgreSQL node).
    pub limit: Vec<String>,
    /// Do it (without: the plan only).
    pub yes: bool,
    /// State directory (default beside the inventory).
    pub state: Option<PathBuf>,
    /// How to reach the hosts (every host is connected; `limit` is in [`RestartOptions::limit`]).
    pub connect: Connect,
}

/// The order of a rolling restart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RestartPlan {
    /// The leader now.
    pub leader: String,
    /// Replicas restarted one at a time, in this order.
    pub replicas: Vec<String>,
    /// The leader is restarted too: after a switchover, as a replica.
    pub primary: bool,
    /// Members left alone, and why.
    pub skipped: Vec<String>,
}

/// What a rolling restart did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RestartRun {
    /// Members restarted, in order.
    pub restarted: Vec<String>,
    /// The switchover, when the leader was in the plan.
    pub switchover: Option<SwitchoverRun>,
    /// Wall time (seconds).
    pub seconds: f64,
}

/// The pure decision: which members, in which order; `Err` says why not (unhealthy cluster).
pub fn plan(members: &[Member], pending: bool, limit: Option<&BTreeSet<String>>) -> Result<RestartPlan, String> {
    let leader =
        patroni::leader(members).ok_or("no single leader: the cluster must be healthy before a rolling restart")?;
    let not_streaming: Vec<String> = members
        .iter()
        .filter(|m| m.name != leader && !m.streams())
        .map(|m| format!("{} is {} {}", m.name, m.role, m.state))
        .collect();
    if !not_streaming.is_empty() {
        return Err(format!(
            "not every replica streams ({}); a rolling restart needs a healthy cluster (pgha reinit rebuilds a broken replica)",
            not_streaming.join(", ")
        ));
    }
    let mut p = RestartPlan {
        leader: leader.to_string(),
        ..RestartPlan::default()
    };
    for m in members {
        if limit.is_some_and(|l| !l.contains(&m.name)) {
            p.skipped.push(format!("{}: not in --limit", m.name));
            continue;
        }
        if pending && !m.pending_restart {
            p.skipped.push(format!("{}: no pending restart", m.name));
            continue;
        }
        if m.name == leader {
            p.primary = true;
        } else {
            p.replicas.push(m.name.clone());
        }
    }
    if p.primary && !members.iter().any(|m| m.name != leader && m.streams()) {
        return Err(format!("{leader} leads and no replica streams to take over from it"));
    }
    Ok(p)
}

/// Plans and (with `yes`) does the rolling restart.
pub async fn restart(
    inv: &Inventory,
    o: &RestartOptions,
    rep: &Arc<dyn Reporter>,
) -> Result<(RestartPlan, Option<RestartRun>), OpsError> {
    for l in &o.limit {
        if !inv.hosts_with(Role::Postgres).any(|h| h.name.as_str() == l) {
            return Err(OpsError::InvalidInput(format!(
                "--limit {l}: not a PostgreSQL host of {}",
                inv.path.display()
            )));
        }
    }
    let c = Cluster::open(inv, o.state.as_deref(), &o.connect, "restart", rep).await?;
    let result = async {
        let members = c.members().await?;
        let limit: Option<BTreeSet<String>> = (!o.limit.is_empty()).then(|| o.limit.iter().cloned().collect());
        let p = plan(&members, o.pending, limit.as_ref())
            .map_err(|e| OpsError::Refused(format!("restart refused: {e}")))?;
        if !o.yes {
            return Ok((p, None));
        }
        let started = Instant::now();
        let mut run = RestartRun::default();
        let body = if o.pending {
            r#"{"restart_pending": true}"#
        } else {
            "{}"
        };
        for r in &p.replicas {
            restart_one(&c, r, body).await?;
            run.restarted.push(r.clone());
        }
        if p.primary {
            // A restarted synchronous standby takes a Patroni loop or two to be one again:
            // wait (bounded) for a candidate the checks accept.
            let deadline = Instant::now() + super::switchover::SWITCH_WAIT;
            let sp = loop {
                match c.plan(None, None).await {
                    Ok(sp) => break sp,
                    Err(OpsError::Refused(e)) if Instant::now() < deadline => {
                        rep.info(&format!("waiting for a switchover candidate: {e}"));
                        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                    }
                    Err(e) => return Err(e),
                }
            };
            run.switchover = Some(c.switch(&sp).await?);
            let members = c.members().await?;
            let still = members.iter().any(|m| m.name == p.leader && m.pending_restart);
            if o.pending && !still {
                rep.info(&format!(
                    "{}: no restart pending any more (the switchover's demotion restarted PostgreSQL)",
                    p.leader
                ));
            } else {
                restart_one(&c, &p.leader, body).await?;
            }
            run.restarted.push(p.leader.clone());
        }
        run.seconds = started.elapsed().as_secs_f64();
        Ok((p, Some(run)))
    }
    .await;
    c.close().await;
    result
}

/// Restarts one replica's PostgreSQL through Patroni and waits until it streams again.
async fn restart_one(c: &Cluster<'_>, member: &str, body: &str) -> Result<(), OpsError> {
    let t = Instant::now();
    // Synchronous: Patroni answers once PostgreSQL is back (a checkpoint can take a while).
    let answer = match c.post(member, "/restart", body, 300).await {
        // `restart_pending` and nothing pending any more (the flag in /cluster lags a loop):
        // nothing to restart.
        Err(OpsError::Day2(e))
            if body.contains("restart_pending") && e.contains("restart conditions are not satisfied") =>
        {
            c.rep
                .info(&format!("{member}: no restart pending any more; left alone"));
            return Ok(());
        }
        r => r?,
    };
    c.wait_rejoined(member).await?;
    c.rep.info(&format!(
        "{member}: restarted ({answer}) and streaming again in {:.1} s",
        t.elapsed().as_secs_f64()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, role: &str, state: &str, pending: bool) -> Member {
        Member {
            name: name.into(),
            role: role.into(),
            state: state.into(),
            lag: Some(0.into()),
            pending_restart: pending,
            ..Member::default()
        }
    }

    #[test]
    fn replicas_first_then_the_primary() {
        let ms = vec![
            m("a", "leader", "running", true),
            m("b", "sync_standby", "streaming", false),
            m("c", "replica", "streaming", true),
        ];
        let all = plan(&ms, false, None).unwrap();
        assert_eq!(all.replicas, ["b", "c"]);
        assert!(all.primary);
        let pending = plan(&ms, true, None).unwrap();
        assert_eq!(pending.replicas, ["c"]);
        assert!(pending.primary);
        assert_eq!(pending.skipped, ["b: no pending restart"]);
        let limit: BTreeSet<String> = ["b".to_string()].into();
        let limited = plan(&ms, false, Some(&limit)).unwrap();
        assert_eq!(limited.replicas, ["b"]);
        assert!(!limited.primary);
    }

    #[test]
    fn refuses_an_unhealthy_cluster() {
        let ms = vec![m("a", "leader", "running", false), m("b", "replica", "stopped", false)];
        let e = plan(&ms, false, None).unwrap_err();
        assert!(e.contains("b is replica stopped"), "{e}");
        let body = std::fs::read_to_string(format!(
            "{}/tests/fixtures/patroni/cluster-replica-stopped.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let captured = patroni::parse_cluster(&body).unwrap();
        assert!(plan(&captured, false, None).is_err());
        let body = std::fs::read_to_string(format!(
            "{}/tests/fixtures/patroni/cluster.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let healthy = patroni::parse_cluster(&body).unwrap();
        let p = plan(&healthy, false, None).unwrap();
        assert_eq!(p.replicas.len(), healthy.len() - 1);
        assert!(p.primary);
    }
}
