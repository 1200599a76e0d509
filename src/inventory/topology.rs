//! Topology analysis (docs/design.md §7): warnings, never errors, about what a data-centre loss or a
//! single host failure would do to the cluster. Pure: reads a valid [`Inventory`].

use std::collections::BTreeMap;

use super::model::{Inventory, SyncMode};
use super::names::Role;

/// A risk in the topology, with what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Risk {
    /// Field the risk relates to (for the diagnostic), e.g. `hosts.haproxy`.
    pub field: String,
    /// The host the risk is anchored at, if one.
    pub host: Option<String>,
    /// What would happen.
    pub message: String,
    /// What to change.
    pub hint: String,
}

/// Every topology risk of `inv`.
pub fn risks(inv: &Inventory) -> Vec<Risk> {
    let mut out = Vec::new();
    etcd_quorum(inv, &mut out);
    postgres_spread(inv, &mut out);
    single_points(inv, &mut out);
    async_replication(inv, &mut out);
    out
}

fn per_dc(inv: &Inventory, role: Role) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for h in inv.hosts_with(role) {
        m.entry(h.dc.to_string()).or_default().push(h.name.to_string());
    }
    m
}

fn etcd_quorum(inv: &Inventory, out: &mut Vec<Risk>) {
    let members = per_dc(inv, Role::Etcd);
    let total: usize = members.values().map(Vec::len).sum();
    if total == 0 {
        return;
    }
    let quorum = total / 2 + 1;
    if total == 1 {
        out.push(Risk {
            field: "hosts".into(),
            host: members.values().flatten().next().cloned(),
            message: "a single etcd member: losing it stops automatic failover and demotes the primary".into(),
            hint: "run 3 etcd members, ideally across 3 data centres".into(),
        });
        return;
    }
    for (dc, names) in &members {
        let left = total - names.len();
        if left < quorum {
            let failover = if members.len() < 3 {
                " PostgreSQL nodes elsewhere cannot be promoted, and the primary (if it survives) demotes to read-only."
            } else {
                ""
            };
            out.push(Risk {
                field: "hosts".into(),
                host: names.first().cloned(),
                message: format!(
                    "losing {dc} ({} of {total} etcd members: {}) loses etcd quorum ({quorum} needed): no automatic failover.{failover}",
                    names.len(),
                    names.join(", ")
                ),
                hint: "place etcd members so that no data centre holds a majority (e.g. 1+1+1 over three sites, a third site can be a small witness VM)".into(),
            });
        }
    }
}

fn postgres_spread(inv: &Inventory, out: &mut Vec<Risk>) {
    let nodes = per_dc(inv, Role::Postgres);
    if nodes.len() == 1
        && let Some((dc, names)) = nodes.iter().next()
    {
        out.push(Risk {
            field: "hosts".into(),
            host: names.first().cloned(),
            message: format!("every PostgreSQL node is in {dc}: losing {dc} loses the database"),
            hint: "put at least one node in another data centre".into(),
        });
    }
    if inv.hosts_with(Role::Postgres).count() == 1 {
        out.push(Risk {
            field: "hosts".into(),
            host: inv.hosts_with(Role::Postgres).next().map(|h| h.name.to_string()),
            message: "a single PostgreSQL node: no replica to fail over to".into(),
            hint: "run at least 2 (3 recommended) PostgreSQL nodes".into(),
        });
    }
}

fn single_points(inv: &Inventory, out: &mut Vec<Risk>) {
    for (role, what) in [(Role::Haproxy, "HAProxy"), (Role::Pgbouncer, "PgBouncer")] {
        let hosts: Vec<_> = inv.hosts_with(role).collect();
        if let [only] = hosts.as_slice() {
            out.push(Risk {
                field: format!("hosts.{}", only.name),
                host: Some(only.name.to_string()),
                message: format!(
                    "{} is the only {what} host: a single point of failure for every client connecting through it (and losing {} loses it too)",
                    only.name, only.dc
                ),
                hint: format!("add a second {what} host in another data centre, with a virtual IP or client-side multi-host URIs"),
            });
        }
    }
    for host in &inv.hosts {
        if host.has(Role::Etcd) && host.has(Role::Postgres) {
            out.push(Risk {
                field: format!("hosts.{}", host.name),
                host: Some(host.name.to_string()),
                message: format!("{} runs both etcd and PostgreSQL: one host failure costs an etcd member and a database node at once", host.name),
                hint: "fine for small clusters; keep etcd on its own hosts when you can".into(),
            });
        }
    }
}

fn async_replication(inv: &Inventory, out: &mut Vec<Risk>) {
    if inv.patroni.synchronous_mode == SyncMode::Off && inv.hosts_with(Role::Postgres).count() > 1 {
        out.push(Risk {
            field: "patroni.synchronous_mode".into(),
            host: None,
            message: "asynchronous replication: a failover can lose the last committed transactions (up to maximum_lag_on_failover bytes)".into(),
            hint: "set patroni.synchronous_mode: on (the default) to lose none".into(),
        });
    }
}
