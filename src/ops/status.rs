//! `pgha status`: the cluster at a glance — etcd members and health, Patroni members (role,
//! state, timeline, lag), members joining or leaving (the cluster's members against the
//! inventory, `ops::members::standings`), HAProxy servers per port, PgBouncer pools, backup
//! health (last backup per type, archive lag and failures, `facts::pgbackrest`) — with
//! anything unhealthy named by the rules in `facts`. Read-only.

use std::path::Path;

use super::OpsError;
use super::pool::{self, Connect};
use super::verify::{self, Ctx};
use crate::facts::{haproxy, patroni, pgbouncer};
use crate::inventory::{Inventory, Role};
use crate::pki;
use crate::render::paths;
use crate::transport::DEFAULT_TIMEOUT;

/// What `pgha status` found.
#[derive(Clone, Debug)]
pub struct Status {
    /// The picture: `etcd`, `patroni` (`check`, `members`), `haproxy` (servers per host),
    /// `pgbouncer_pools` (SHOW POOLS per host).
    pub status: serde_json::Value,
    /// Everything unhealthy, one line each (empty: healthy).
    pub problems: Vec<String>,
}

/// Reads the cluster's state from every host.
pub async fn status(inv: &Inventory, state: Option<&Path>, connect: &Connect) -> Result<Status, OpsError> {
    let state = pki::StateDir::for_inventory(inv, state);
    let Ok(Some(bundle)) = pki::current_bundle(&state) else {
        return Err(OpsError::NotDeployed(format!(
            "{}: no CA bundle; deploy first",
            state.root().display()
        )));
    };
    let (conns, errors) = pool::connect_all(inv, connect).await;
    let mut problems: Vec<String> = errors.values().map(|e| e.to_string()).collect();
    let ctx = Ctx {
        inv,
        conns: &conns,
        ca_file: state.bundle(bundle.generation),
        remote_ca: paths::ca_bundle(&bundle.file_name()),
        password: pki::Secret::new(String::new()),
    };
    let etcd = verify::etcd(&ctx).await;
    if !etcd.ok {
        problems.push(format!("etcd: {}", etcd.detail));
    }
    let members = verify::patroni_members(&ctx).await;
    let patroni = verify::patroni(inv, &members);
    if !patroni.ok {
        problems.push(format!("patroni: {}", patroni.detail));
    }
    let live = super::members::read_live(inv, &conns, &ctx.remote_ca).await;
    let standings = super::members::standings(inv, &live);
    for s in standings.iter().filter(|s| s.state != "member") {
        problems.push(match s.state {
            "leaving" => format!(
                "members: {} {} is a member the inventory no longer lists (leaving: pgha deploy --remove-members)",
                s.layer, s.name
            ),
            _ => format!(
                "members: {} {} is joining (in the inventory, not a settled member yet: pgha deploy)",
                s.layer, s.name
            ),
        });
    }
    let leader = members.as_ref().ok().and_then(|m| patroni::leader(m));
    // Shown with its problems, not yet counted as unhealthy (docs/backup.md "Health").
    let backup = verify::backup_health(&ctx, leader).await;
    let mut haproxy = serde_json::Map::new();
    for h in inv.hosts_with(Role::Haproxy) {
        match verify::haproxy_servers(&ctx, h).await {
            Ok(servers) => {
                let up_rw = haproxy::rw_up(&servers);
                if up_rw.len() != 1 {
                    problems.push(format!("haproxy {}: {} RW servers UP", h.name, up_rw.len()));
                } else if let Err(e) = haproxy::check_rw(&servers, leader) {
                    problems.push(format!("haproxy {}: {e}", h.name));
                }
                let list = serde_json::to_value(&servers).unwrap_or_default();
                haproxy.insert(h.name.to_string(), list);
            }
            Err(e) => problems.push(format!("haproxy {}: {e}", h.name)),
        }
    }
    let mut pools = serde_json::Map::new();
    for b in inv.hosts_with(Role::Pgbouncer) {
        if let Some(c) = conns.get(b.name.as_str()) {
            match c.exec(&pgbouncer::pools_cmd(inv), None, DEFAULT_TIMEOUT).await {
                Ok(o) if o.success() => {
                    let text = o.stdout_text();
                    if let Err(e) = pgbouncer::parse_pools(&text) {
                        problems.push(format!("pgbouncer {}: {e}", b.name));
                    }
                    pools.insert(b.name.to_string(), serde_json::Value::String(text));
                }
                Ok(o) => problems.push(format!("pgbouncer {}: SHOW POOLS: {}", b.name, o.stderr_tail(2))),
                Err(e) => problems.push(e.to_string()),
            }
        }
    }
    // Which entry host holds the VIP, by each host's own addresses (docs/entry-points.md).
    let mut vip = serde_json::Value::Null;
    if let Some(v) = &inv.vip {
        let mut holders = Vec::new();
        for h in inv.entry_hosts() {
            if let Some(c) = conns.get(h.name.as_str()) {
                match c
                    .exec(&crate::facts::vip::holds_cmd(v.address), None, DEFAULT_TIMEOUT)
                    .await
                {
                    Ok(o) if o.success() && crate::facts::vip::parse_holds(&o.stdout_text()) => {
                        holders.push(h.name.to_string());
                    }
                    Ok(_) => {}
                    Err(e) => problems.push(e.to_string()),
                }
            }
        }
        if holders.len() != 1 {
            problems.push(format!(
                "vip {}: held by {} entry hosts ({})",
                v.address,
                holders.len(),
                holders.join(", ")
            ));
        }
        vip = serde_json::json!({ "address": v.address.to_string(), "holders": holders });
    }
    pool::close_all(&conns).await;
    let status = serde_json::json!({
        "etcd": etcd,
        "patroni": { "check": patroni, "members": members.unwrap_or_default() },
        "membership": standings,
        "haproxy": haproxy,
        "pgbouncer_pools": pools,
        "vip": vip,
        "backup": backup.as_ref().map(|h| serde_json::json!({ "health": h, "summary": h.summary() })),
    });
    Ok(Status { status, problems })
}
