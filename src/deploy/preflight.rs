//! Preflight: what must hold on every host before the deploy changes anything, checked from
//! facts alone (one probe per host): a supported Debian release, a sane clock, disk space,
//! every cluster name resolving to its inventory address, and no stranger on a port the
//! cluster needs.

use std::collections::BTreeMap;

use crate::facts::Facts;
use crate::inventory::{Host, Inventory, Role};
use crate::render::{Target, paths};
use crate::transport::FileKind;

/// Largest tolerated clock difference with the controller (TLS validity, etcd leases).
pub const MAX_SKEW_SECS: i64 = 5;
/// Least free space on / (packages and a fresh cluster).
pub const MIN_DISK_KIB: u64 = 1024 * 1024;

/// A blocking problem on a host, with the fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Host.
    pub host: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}\n\n  hint: {}", self.host, self.message, self.hint)
    }
}

/// The Debian release of a host, from facts.
pub fn target(facts: &Facts) -> Option<Target> {
    match (facts.os.id.as_str(), facts.os.version_id.as_str()) {
        ("debian", "13") => Some(Target::Debian13),
        ("debian", "12") => Some(Target::Debian12),
        _ => None,
    }
}

/// Every name a host must resolve: all hosts' names and extra names.
pub fn names(inv: &Inventory) -> Vec<(String, std::net::IpAddr)> {
    inv.hosts
        .iter()
        .flat_map(|h| h.dns_names().into_iter().map(move |n| (n.to_string(), h.address)))
        .collect()
}

/// Ports the roles of `host` will listen on, with the package that owns them.
fn ports(inv: &Inventory, host: &Host) -> Vec<(u16, &'static str)> {
    let mut v = Vec::new();
    if host.has(Role::Postgres) {
        v.push((inv.postgres.port.get(), "patroni"));
        v.push((inv.patroni.rest_port.get(), "patroni"));
    }
    if host.has(Role::Etcd) {
        v.push((inv.etcd.client_port.get(), "etcd-server"));
        v.push((inv.etcd.peer_port.get(), "etcd-server"));
    }
    if host.has(Role::Haproxy) {
        v.push((inv.haproxy.rw_port.get(), "haproxy"));
        v.push((inv.haproxy.ro_port.get(), "haproxy"));
    }
    if host.has(Role::Pgbouncer) {
        v.push((inv.pgbouncer.port.get(), "pgbouncer"));
    }
    if inv.backup.is_some() && (host.has(Role::Postgres) || host.has(Role::Backup)) {
        v.push((paths::PGBACKREST_PORT, "pgbackrest"));
    }
    v
}

/// Files whose presence tells that a host already holds cluster data pgha did not write.
fn data_markers(inv: &Inventory) -> Vec<String> {
    let mut v: Vec<String> = Target::ALL
        .iter()
        .map(|t| format!("{}/PG_VERSION", paths::pg_data_dir(*t, &inv.cluster_name)))
        .collect();
    v.push(format!("{}/member", paths::etcd_data_dir(&inv.cluster_name)));
    v.push(paths::PATRONI_CONFIG.to_string());
    v.push(paths::ETCD_CONFIG.to_string());
    v
}

/// Checks one host; `now` is the controller's clock (Unix seconds). `adopt` accepts existing
/// PostgreSQL or etcd data that pgha's configuration does not describe yet.
pub fn check(inv: &Inventory, host: &Host, facts: &Facts, now: i64, adopt: bool) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut problem = |message: String, hint: String| {
        out.push(Problem {
            host: host.name.to_string(),
            message,
            hint,
        })
    };
    if target(facts).is_none() {
        problem(
            format!(
                "unsupported OS: {} {} ({})",
                facts.os.id, facts.os.version_id, facts.os.codename
            ),
            "pgha deploys on Debian 13 (trixie) and Debian 12 (bookworm)".into(),
        );
    }
    let skew = facts.clock - now;
    if skew.abs() > MAX_SKEW_SECS {
        problem(
            format!("its clock is {skew:+} s off the controller's"),
            "synchronise clocks (systemd-timesyncd or chrony): TLS validity and etcd leases depend on them".into(),
        );
    }
    if facts.disk_free_kib < MIN_DISK_KIB {
        problem(
            format!("only {} MiB free on /", facts.disk_free_kib / 1024),
            format!("free at least {} MiB", MIN_DISK_KIB / 1024),
        );
    }
    for (name, want) in names(inv) {
        match facts.resolved.get(&name) {
            Some(Some(got)) if *got == want => {}
            Some(Some(got)) => problem(
                format!("`{name}` resolves to {got}, but the inventory says {want}"),
                format!("fix DNS or /etc/hosts so that `{name}` is {want}: certificates and every service use names"),
            ),
            _ => problem(
                format!("`{name}` does not resolve"),
                format!(
                    "add `{want} {name}` to /etc/hosts or DNS on {}: Patroni, etcd and PgBouncer dial names",
                    host.name
                ),
            ),
        }
    }
    let exists = |p: &str| !matches!(facts.file(p), FileKind::Missing);
    if !adopt && let Some(t) = target(facts) {
        let pg_version = format!("{}/PG_VERSION", paths::pg_data_dir(t, &inv.cluster_name));
        if host.has(Role::Postgres) && exists(&pg_version) && !exists(paths::PATRONI_CONFIG) {
            problem(
                format!("{} already holds a PostgreSQL data directory that pgha did not configure", paths::pg_data_dir(t, &inv.cluster_name)),
                "pgha never wipes or re-initialises data: move it away, or pass --adopt-existing-data to let Patroni take it over as is".into(),
            );
        }
        let member = format!("{}/member", paths::etcd_data_dir(&inv.cluster_name));
        if host.has(Role::Etcd) && exists(&member) && !exists(paths::ETCD_CONFIG) {
            problem(
                format!("{} already holds an etcd member that pgha did not configure", paths::etcd_data_dir(&inv.cluster_name)),
                "pgha never wipes an etcd member: move it away, or pass --adopt-existing-data to start it with pgha's configuration".into(),
            );
        }
    }
    for (port, package) in ports(inv, host) {
        if facts.listening.contains(&port) && !facts.installed(package) {
            problem(
                format!("port {port} is already in use, and {package} is not installed"),
                format!("stop what listens on {port}, or choose another port in the inventory"),
            );
        }
    }
    out
}

/// The facts preflight needs (the probe asks every host to resolve every name).
pub fn query(inv: &Inventory) -> crate::facts::Query {
    crate::facts::Query {
        names: names(inv).into_iter().map(|(n, _)| n).collect(),
        packages: ["patroni", "etcd-server", "haproxy", "pgbouncer", "pgbackrest"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        files: data_markers(inv).into_iter().collect(),
        ..Default::default()
    }
}

/// Problems of every host, then the cross-host rule of the `backup` role: the repository host
/// runs the nodes' Debian release (pgBackRest refuses a peer of another version).
pub fn check_all(inv: &Inventory, facts: &BTreeMap<String, Facts>, now: i64, adopt: bool) -> Vec<Problem> {
    let mut out: Vec<Problem> = inv
        .hosts
        .iter()
        .filter_map(|h| facts.get(h.name.as_str()).map(|f| check(inv, h, f, now, adopt)))
        .flatten()
        .collect();
    out.extend(backup_release(inv, facts));
    out
}

/// The repository host must run the same Debian release as every PostgreSQL node: pgBackRest's
/// protocol greeting compares exact versions (2.55.1 on Debian 13, 2.45 on Debian 12).
fn backup_release(inv: &Inventory, facts: &BTreeMap<String, Facts>) -> Option<Problem> {
    let b = inv.backup.as_ref()?;
    let repo = target(facts.get(b.host.as_str())?)?;
    let other: Vec<String> = inv
        .hosts_with(Role::Postgres)
        .filter_map(|n| {
            let t = target(facts.get(n.name.as_str())?)?;
            (t != repo).then(|| format!("{} runs {t}", n.name))
        })
        .collect();
    if other.is_empty() {
        return None;
    }
    Some(Problem {
        host: b.host.to_string(),
        message: format!(
            "the backup host runs {repo} (pgBackRest {}), but {}: pgBackRest refuses a peer of another version",
            repo.versions().pgbackrest,
            other.join(", ")
        ),
        hint: "put the `backup` role on a host with the PostgreSQL nodes' Debian release".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{OsRelease, Package};

    fn inv() -> Inventory {
        let text = include_str!("../../tests/inventories/minimal.yaml");
        crate::inventory::parse(std::path::Path::new("m.yaml"), text.as_bytes())
            .expect("valid")
            .inventory
    }

    fn good(inv: &Inventory) -> Facts {
        let mut f = Facts {
            os: OsRelease {
                id: "debian".into(),
                version_id: "13".into(),
                codename: "trixie".into(),
            },
            clock: 1000,
            disk_free_kib: 10 * 1024 * 1024,
            ..Facts::default()
        };
        for (n, a) in names(inv) {
            f.resolved.insert(n, Some(a));
        }
        f
    }

    #[test]
    fn a_good_host_passes() {
        let inv = inv();
        assert!(check(&inv, &inv.hosts[0], &good(&inv), 1002, false).is_empty());
    }

    #[test]
    fn each_problem_is_named_with_a_fix() {
        let inv = inv();
        let mut f = good(&inv);
        f.os.version_id = "11".into();
        f.clock = 1100;
        f.disk_free_kib = 1000;
        f.resolved.insert("e2".into(), None);
        f.resolved.insert("e3".into(), Some("10.9.9.9".parse().expect("ip")));
        f.listening.insert(5432);
        let p = check(&inv, &inv.hosts[0], &f, 1000, false);
        let text: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        let all = text.join("\n");
        for needle in [
            "unsupported OS",
            "+100 s off",
            "MiB free",
            "`e2` does not resolve",
            "`e3` resolves to 10.9.9.9",
            "port 5432 is already in use",
        ] {
            assert!(all.contains(needle), "missing `{needle}` in {all}");
        }
        assert!(p.iter().all(|p| p.host == "pg1" && !p.hint.is_empty()));
        f.packages.insert(
            "patroni".into(),
            Package {
                version: "4".into(),
                installed: true,
            },
        );
        assert!(
            !check(&inv, &inv.hosts[0], &f, 1000, false)
                .iter()
                .any(|p| p.message.contains("port 5432")),
            "ours once installed"
        );
    }

    #[test]
    fn foreign_data_is_refused_unless_adopted() {
        let inv = inv();
        let mut f = good(&inv);
        let file = FileKind::File {
            sha256: "x".into(),
            mode: 0o600,
            owner: "postgres".into(),
            group: "postgres".into(),
        };
        f.files
            .insert("/var/lib/postgresql/17/tiny/PG_VERSION".into(), file.clone());
        let p = check(&inv, &inv.hosts[0], &f, 1000, false);
        assert!(
            p.iter()
                .any(|p| p.message.contains("already holds a PostgreSQL data directory")
                    && p.hint.contains("--adopt-existing-data")),
            "{p:?}"
        );
        assert!(check(&inv, &inv.hosts[0], &f, 1000, true).is_empty());
        f.files.insert(paths::PATRONI_CONFIG.into(), file);
        assert!(
            check(&inv, &inv.hosts[0], &f, 1000, false).is_empty(),
            "pgha's own cluster: fine"
        );
    }

    #[test]
    fn a_backup_host_on_another_release_is_refused() {
        let text = include_str!("../../tests/inventories/minimal.yaml")
            .replace("[haproxy, pgbouncer]", "[haproxy, pgbouncer, backup]");
        let inv = crate::inventory::parse(std::path::Path::new("m.yaml"), text.as_bytes())
            .expect("valid")
            .inventory;
        let mut all: BTreeMap<String, Facts> = inv.hosts.iter().map(|h| (h.name.to_string(), good(&inv))).collect();
        assert!(check_all(&inv, &all, 1000, false).is_empty(), "one release: fine");
        let lb = all.get_mut("lb").expect("lb");
        lb.os.version_id = "12".into();
        lb.os.codename = "bookworm".into();
        let p = check_all(&inv, &all, 1000, false);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].host, "lb");
        assert!(
            p[0].message.contains("debian12 (pgBackRest 2.45)") && p[0].message.contains("pg1 runs debian13"),
            "{}",
            p[0]
        );
    }
}
