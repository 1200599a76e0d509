//! Which hosts a drill faults and how, decided from the inventory, whether it is the lab, and
//! (once known) the leader. Pure: nothing here runs or reads anything.
//!
//! On the lab a fault is a machine-level event (`pgha lab stop` is a crash: SIGKILL of the
//! machine's init; `pgha lab partition` takes its bridge port down). A host that also carries
//! an entry point (HAProxy, PgBouncer) or, for etcd, other roles, gets the service-level fault
//! instead, so the drill measures what it says. On real hosts faults are services stopped over
//! SSH; a partition needs network control pgha does not have there, so it is refused.

use std::collections::BTreeMap;

use super::Kind;
use crate::inventory::{Host, Inventory, Role};
use crate::lab::state::LabState;

/// Why a drill cannot run on this cluster.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Failover and partition need a replica to take over.
    #[error(
        "{kind} needs at least two PostgreSQL nodes (a replica to take over); the inventory has {nodes}\n\nhint: add a PostgreSQL node, or run the quorum-loss drill"
    )]
    NeedsReplica {
        /// The drill.
        kind: Kind,
        /// PostgreSQL nodes in the inventory.
        nodes: usize,
    },
    /// A partition needs network control: the lab only.
    #[error(
        "the partition drill runs on the lab only: on real hosts pgha has no safe way to cut a host off and be sure to reconnect it\n\nhint: rehearse it on the lab (pgha lab up; pgha deploy inventory/lab.yaml), or cut the leader off with your own network tooling while `pgha verify` watches"
    )]
    PartitionNeedsLab,
    /// The leader's host also carries the entry point the writer goes through.
    #[error(
        "{kind}: the leader {host} also runs {what}, so cutting it off would cut the writer's path too\n\nhint: switch the leader to another node first (patronictl switchover), or keep HAProxy and PgBouncer on their own hosts"
    )]
    EntryPointOnLeader {
        /// The drill.
        kind: Kind,
        /// The leader's host.
        host: String,
        /// The roles in the way.
        what: String,
    },
    /// No etcd member to stop.
    #[error("quorum-loss: the inventory has no etcd member")]
    NoEtcd,
    /// entry-loss needs a VIP to move.
    #[error(
        "entry-loss: the inventory has no `vip`, so there is nothing to move when an entry host is lost\n\nhint: add a `vip:` section over two or more entry hosts (see inventory/entry-vip.yaml); without a VIP, clients fail over with `pgha uri --multi-host`"
    )]
    NeedsVip,
    /// The restore drill needs a pgBackRest repository.
    #[error(
        "restore: no host has the role `backup`, so there is no backup to restore\n\nhint: add `backup` to the roles of a host that is not a PostgreSQL node (docs/backup.md) and deploy"
    )]
    NeedsBackup,
}

/// One thing a drill does to a host, and how it is undone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Power a lab machine off abruptly (`pgha lab stop`); undone by `pgha lab start`.
    CrashLabHost {
        /// Inventory name.
        host: String,
        /// The lab's name for it.
        lab_name: String,
    },
    /// Cut a lab machine off the network (`pgha lab partition`); undone by `pgha lab heal`.
    PartitionLabHost {
        /// Inventory name.
        host: String,
        /// The lab's name for it.
        lab_name: String,
    },
    /// SIGKILL every process of a unit (`systemctl kill --kill-whom=all`); undone by a start.
    KillService {
        /// Inventory name.
        host: String,
        /// The unit.
        unit: &'static str,
    },
    /// Stop a unit (`systemctl stop`); undone by a start.
    StopService {
        /// Inventory name.
        host: String,
        /// The unit.
        unit: &'static str,
    },
}

impl Action {
    /// The inventory host it acts on.
    pub fn host(&self) -> &str {
        match self {
            Action::CrashLabHost { host, .. }
            | Action::PartitionLabHost { host, .. }
            | Action::KillService { host, .. }
            | Action::StopService { host, .. } => host,
        }
    }

    /// Whether the host cannot be reached over SSH while the fault lasts.
    pub fn host_unreachable(&self) -> bool {
        matches!(self, Action::CrashLabHost { .. } | Action::PartitionLabHost { .. })
    }

    /// Whether the host's Patroni cannot answer while the fault lasts.
    pub fn patroni_down(&self) -> bool {
        self.host_unreachable() || matches!(self, Action::KillService { unit: "patroni", .. })
    }

    /// What it does, for progress lines and the report.
    pub fn describe(&self) -> String {
        match self {
            Action::CrashLabHost { host, lab_name } => format!("crash {host} (pgha lab stop {lab_name})"),
            Action::PartitionLabHost { host, lab_name } => {
                format!("cut {host} off the network (pgha lab partition {lab_name})")
            }
            Action::KillService { host, unit } => {
                format!("{host}: systemctl kill --kill-whom=all --signal=SIGKILL {unit}")
            }
            Action::StopService { host, unit } => format!("{host}: systemctl stop {unit}"),
        }
    }

    /// How it is undone.
    pub fn describe_undo(&self) -> String {
        match self {
            Action::CrashLabHost { host, lab_name } => format!("boot {host} again (pgha lab start {lab_name})"),
            Action::PartitionLabHost { host, lab_name } => {
                format!("reconnect {host} (pgha lab heal {lab_name})")
            }
            Action::KillService { host, unit } | Action::StopService { host, unit } => {
                format!("{host}: systemctl start {unit}")
            }
        }
    }
}

/// Inventory host name → lab machine name, when every inventory host's address is a lab
/// machine's address (the inventory describes the lab that is up); `None` otherwise.
pub fn lab_names(inv: &Inventory, lab: &LabState) -> Option<BTreeMap<String, String>> {
    inv.hosts
        .iter()
        .map(|h| {
            lab.hosts
                .iter()
                .find(|l| std::net::IpAddr::V4(l.address) == h.address)
                .map(|l| (h.name.to_string(), l.name.clone()))
        })
        .collect()
}

fn entry_roles(h: &Host) -> Vec<&'static str> {
    [Role::Haproxy, Role::Pgbouncer]
        .into_iter()
        .filter(|r| h.has(*r))
        .map(|r| r.as_str())
        .collect()
}

/// Checks what can be checked before the leader is known: enough nodes, partition on the lab.
pub fn check(kind: Kind, inv: &Inventory, lab: bool) -> Result<(), PlanError> {
    let nodes = inv.hosts_with(Role::Postgres).count();
    match kind {
        Kind::Failover | Kind::Partition if nodes < 2 => Err(PlanError::NeedsReplica { kind, nodes }),
        Kind::Partition if !lab => Err(PlanError::PartitionNeedsLab),
        Kind::QuorumLoss if inv.hosts_with(Role::Etcd).next().is_none() => Err(PlanError::NoEtcd),
        Kind::EntryLoss if inv.vip.is_none() => Err(PlanError::NeedsVip),
        Kind::Restore if inv.backup.is_none() => Err(PlanError::NeedsBackup),
        _ => Ok(()),
    }
}

/// How many etcd members must stop for the cluster to lose quorum: a majority.
pub fn quorum_breakers(members: usize) -> usize {
    members / 2 + 1
}

/// The etcd members a quorum-loss drill stops: a majority, preferring members that do not share
/// the leader's host (file order otherwise).
pub fn etcd_victims<'a>(inv: &'a Inventory, leader: &str) -> Vec<&'a Host> {
    let members: Vec<&Host> = inv.hosts_with(Role::Etcd).collect();
    let mut ordered: Vec<&Host> = members.iter().copied().filter(|h| h.name.as_str() != leader).collect();
    ordered.extend(members.iter().copied().filter(|h| h.name.as_str() == leader));
    ordered.truncate(quorum_breakers(members.len()));
    ordered
}

/// The actions of `kind` once the leader is known. `lab` maps inventory names to lab machines.
pub fn actions(
    kind: Kind,
    inv: &Inventory,
    leader: &str,
    lab: Option<&BTreeMap<String, String>>,
) -> Result<Vec<Action>, PlanError> {
    check(kind, inv, lab.is_some())?;
    let lab_name = |h: &str| lab.and_then(|m| m.get(h).cloned());
    let leader_host = inv.host(leader);
    let entry = leader_host.map(entry_roles).unwrap_or_default();
    match kind {
        Kind::Failover => {
            let host = leader.to_string();
            Ok(vec![match lab_name(leader) {
                Some(lab_name) if entry.is_empty() => Action::CrashLabHost { host, lab_name },
                _ => Action::KillService { host, unit: "patroni" },
            }])
        }
        Kind::Partition => {
            if !entry.is_empty() {
                return Err(PlanError::EntryPointOnLeader {
                    kind,
                    host: leader.to_string(),
                    what: entry.join(" and "),
                });
            }
            let lab_name = lab_name(leader).ok_or(PlanError::PartitionNeedsLab)?;
            Ok(vec![Action::PartitionLabHost {
                host: leader.to_string(),
                lab_name,
            }])
        }
        Kind::EntryLoss | Kind::Restore => Ok(Vec::new()),
        Kind::QuorumLoss => Ok(etcd_victims(inv, leader)
            .into_iter()
            .map(|h| {
                let host = h.name.to_string();
                match lab_name(&host) {
                    Some(lab_name) if h.roles.len() == 1 => Action::CrashLabHost { host, lab_name },
                    _ => Action::StopService { host, unit: "etcd" },
                }
            })
            .collect()),
    }
}

/// What a drill would do, in words, before anything is known about the running cluster (what
/// `pgha drill` prints without `--yes`).
pub fn preview(kind: Kind, inv: &Inventory, db: &str, lab: bool) -> Vec<String> {
    let nodes: Vec<&str> = inv.hosts_with(Role::Postgres).map(|h| h.name.as_str()).collect();
    let etcd: Vec<&str> = inv.hosts_with(Role::Etcd).map(|h| h.name.as_str()).collect();
    let bouncer = inv.hosts_with(Role::Pgbouncer).next().map_or("-", |h| h.name.as_str());
    let where_ = if lab { "the lab" } else { "these hosts" };
    let mut lines = vec![format!("pgha drill {kind} on {where_} ({}):", inv.path.display())];
    lines.push(format!(
        "  1. check the cluster is healthy: one Patroni leader among {}, every replica streaming",
        nodes.join(", ")
    ));
    lines.push(format!(
        "  2. start a sampler unit on {} (pg_is_in_recovery() every 200 ms, systemd-run, bounded)",
        nodes.join(", ")
    ));
    lines.push(format!(
        "  3. commit numbered rows into pgha_verify.drill_rows every 100 ms through {bouncer} {db}_rw"
    ));
    let fault = match (kind, lab) {
        (Kind::Failover, true) => format!(
            "crash the current leader's host (one of {}; found when the drill starts) with `pgha lab stop`, wait for a replica to take over and RW to return, then boot it with `pgha lab start` and wait until it rejoins as a replica",
            nodes.join(", ")
        ),
        (Kind::Failover, false) => format!(
            "on the current leader (one of {}): systemctl kill --kill-whom=all --signal=SIGKILL patroni (Patroni and its PostgreSQL); wait for a replica to take over and RW to return; systemctl start patroni; wait until it rejoins as a replica",
            nodes.join(", ")
        ),
        (Kind::QuorumLoss, _) => format!(
            "stop {} of the {} etcd members ({}), preferring those not on the leader's host ({}); wait until RW refuses and check RO still serves{}; start them again and wait for RW",
            quorum_breakers(etcd.len()),
            etcd.len(),
            etcd.join(", "),
            if lab {
                "`pgha lab stop` for etcd-only hosts, else systemctl stop etcd"
            } else {
                "systemctl stop etcd"
            },
            if inv.patroni.failsafe_mode {
                " (failsafe_mode is on: RW is expected to keep serving)"
            } else {
                ""
            }
        ),
        (Kind::EntryLoss, _) => {
            "crash the entry host holding the VIP (see `pgha drill INVENTORY entry-loss`)".to_string()
        }
        (Kind::Restore, _) => {
            "restore a backup into a scratch instance (see `pgha drill INVENTORY restore`)".to_string()
        }
        (Kind::Partition, _) => format!(
            "cut the current leader's host (one of {}) off the network with `pgha lab partition`; wait for a new leader elsewhere and RW to return; reconnect it with `pgha lab heal` and wait until it rejoins as a replica",
            nodes.join(", ")
        ),
    };
    lines.push(format!("  4. {fault}"));
    lines.push(
        "  5. count rows acknowledged against rows present, read the samplers back, report (Ctrl-C undoes the fault first)"
            .to_string(),
    );
    if kind != Kind::QuorumLoss && !lab {
        lines.push(
            "     (a host-level crash is a lab-only fault; on real hosts only Patroni and PostgreSQL are killed)"
                .into(),
        );
    }
    lines.push(if lab {
        "     if pgha itself dies mid-drill, bring the host back by hand: pgha lab start HOST / pgha lab heal HOST".into()
    } else {
        format!(
            "     each stopped service is guarded by a dead-man timer on its host: it starts again by itself after {} min if pgha dies mid-drill",
            super::fault::DEADMAN_S / 60
        )
    });
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::topology::{DEFAULT_SUBNET, Release, Subnet, default_hosts};
    use crate::lab::{LabPaths, Login};

    fn lab_state() -> LabState {
        LabState {
            release: Release::Trixie,
            subnet: DEFAULT_SUBNET.into(),
            bridge: "pghalab0".into(),
            hosts: default_hosts(Subnet::parse_lab(DEFAULT_SUBNET).expect("valid")),
            made_netns_dir_mount: false,
        }
    }

    fn parse(text: &str) -> Inventory {
        crate::inventory::parse(std::path::Path::new("lab.yaml"), text.as_bytes())
            .unwrap_or_else(|e| panic!("valid inventory: {e}"))
            .inventory
    }

    /// The lab's own inventory.
    pub(crate) fn lab_inventory() -> Inventory {
        let text = crate::lab::inventory::render(&LabPaths::new("/nonexistent"), &lab_state().hosts, Login::Root);
        parse(&text)
    }

    /// Same hosts, other addresses: not the lab.
    fn real_inventory() -> Inventory {
        let text = crate::lab::inventory::render(&LabPaths::new("/nonexistent"), &lab_state().hosts, Login::Root)
            .replace("10.213.77.", "192.0.2.");
        parse(&text)
    }

    #[test]
    fn the_lab_is_recognised_by_its_addresses() {
        let names = lab_names(&lab_inventory(), &lab_state()).expect("the lab inventory is the lab");
        assert_eq!(names.len(), 8);
        assert_eq!(names["node1"], "node1");
        assert!(lab_names(&real_inventory(), &lab_state()).is_none());
    }

    #[test]
    fn failover_crashes_the_leader_on_the_lab_and_kills_patroni_elsewhere() {
        let inv = lab_inventory();
        let names = lab_names(&inv, &lab_state());
        let a = actions(Kind::Failover, &inv, "node2", names.as_ref()).expect("plannable");
        assert_eq!(
            a,
            vec![Action::CrashLabHost {
                host: "node2".into(),
                lab_name: "node2".into()
            }]
        );
        assert!(a[0].host_unreachable() && a[0].patroni_down());
        let a = actions(Kind::Failover, &real_inventory(), "node2", None).expect("plannable");
        assert_eq!(
            a,
            vec![Action::KillService {
                host: "node2".into(),
                unit: "patroni"
            }]
        );
        assert!(!a[0].host_unreachable() && a[0].patroni_down());
    }

    #[test]
    fn quorum_loss_stops_a_majority_away_from_the_leader() {
        let inv = lab_inventory();
        let names = lab_names(&inv, &lab_state());
        let a = actions(Kind::QuorumLoss, &inv, "node1", names.as_ref()).expect("plannable");
        let hosts: Vec<&str> = a.iter().map(Action::host).collect();
        assert_eq!(hosts, ["etcd1", "etcd2"]);
        assert!(matches!(a[0], Action::CrashLabHost { .. }));
        let a = actions(Kind::QuorumLoss, &real_inventory(), "node1", None).expect("plannable");
        assert!(a.iter().all(|x| matches!(x, Action::StopService { unit: "etcd", .. })));
        assert_eq!(quorum_breakers(1), 1);
        assert_eq!(quorum_breakers(3), 2);
        assert_eq!(quorum_breakers(5), 3);
    }

    #[test]
    fn quorum_loss_prefers_members_off_the_leaders_host() {
        // etcd shares the PostgreSQL nodes: the leader's member is stopped last.
        let inv = parse(
            "cluster: { name: c }\nhosts:\n\
             \x20 a: { address: 192.0.2.1, dc: d, roles: [postgres, etcd] }\n\
             \x20 b: { address: 192.0.2.2, dc: d, roles: [postgres, etcd] }\n\
             \x20 c: { address: 192.0.2.3, dc: d, roles: [postgres, etcd, haproxy, pgbouncer] }\n",
        );
        let v: Vec<&str> = etcd_victims(&inv, "a").iter().map(|h| h.name.as_str()).collect();
        assert_eq!(v, ["b", "c"]);
        let v: Vec<&str> = etcd_victims(&inv, "c").iter().map(|h| h.name.as_str()).collect();
        assert_eq!(v, ["a", "b"]);
        // On a lab, a shared host gets the service stopped, never crashed.
        let lab: BTreeMap<String, String> = ["a", "b", "c"].iter().map(|h| (h.to_string(), h.to_string())).collect();
        let a = actions(Kind::QuorumLoss, &inv, "a", Some(&lab)).expect("plannable");
        assert!(a.iter().all(|x| matches!(x, Action::StopService { .. })), "{a:?}");
        // The leader carries the entry points: no crash, no partition.
        let a = actions(Kind::Failover, &inv, "c", Some(&lab)).expect("plannable");
        assert!(matches!(a[0], Action::KillService { .. }));
        let e = actions(Kind::Partition, &inv, "c", Some(&lab)).expect_err("refused");
        assert!(e.to_string().contains("haproxy and pgbouncer"), "{e}");
    }

    #[test]
    fn partition_is_refused_off_the_lab_and_single_nodes_cannot_fail_over() {
        assert_eq!(
            check(Kind::Partition, &real_inventory(), false),
            Err(PlanError::PartitionNeedsLab)
        );
        assert_eq!(check(Kind::Partition, &lab_inventory(), true), Ok(()));
        let single = parse(
            "cluster: { name: c }\nhosts:\n  a: { address: 192.0.2.1, dc: d, roles: [postgres, etcd, haproxy, pgbouncer] }\n",
        );
        assert_eq!(
            check(Kind::Failover, &single, true),
            Err(PlanError::NeedsReplica {
                kind: Kind::Failover,
                nodes: 1
            })
        );
        assert_eq!(check(Kind::QuorumLoss, &single, false), Ok(()));
    }

    #[test]
    fn preview_names_the_hosts_and_the_commands() {
        let p = preview(Kind::Failover, &lab_inventory(), "postgres", true).join("\n");
        assert!(p.contains("one of node1, node2, node3"), "{p}");
        assert!(p.contains("pgha lab stop") && p.contains("pgha lab start"), "{p}");
        assert!(p.contains("pgbouncer postgres_rw"), "{p}");
        let p = preview(Kind::QuorumLoss, &real_inventory(), "postgres", false).join("\n");
        assert!(p.contains("stop 2 of the 3 etcd members (etcd1, etcd2, etcd3)"), "{p}");
        let p = preview(Kind::Failover, &real_inventory(), "postgres", false).join("\n");
        assert!(p.contains("SIGKILL patroni"), "{p}");
        assert!(p.contains("dead-man timer") && p.contains("after 10 min"), "{p}");
    }
}
