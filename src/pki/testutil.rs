//! Test fixtures for the PKI unit tests: a sample inventory built in code (3 PostgreSQL nodes,
//! 3 etcd members, 1 HAProxy with an extra name, 1 PgBouncer with an extra name). Test-only.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::inventory::*;

fn port(n: u16) -> Port {
    Port::new(n).expect("non-zero port")
}

fn host(name: &str, addr: &str, dc: &str, role: Role, extra: &[&str]) -> Host {
    Host {
        name: HostName::new(name).expect("valid name"),
        address: addr.parse().expect("valid address"),
        dc: DcName::new(dc).expect("valid dc"),
        roles: BTreeSet::from([role]),
        names: extra.iter().map(|n| HostName::new(n).expect("valid name")).collect(),
        ssh: SshSettings {
            user: "root".into(),
            port: port(22),
            key: None,
            known_hosts: None,
            become_: false,
        },
    }
}

/// The eight-host inventory of docs/design.md §2 on documentation addresses, with app users.
pub fn sample_inventory() -> Inventory {
    Inventory {
        path: PathBuf::from("/nonexistent/inventory.yaml"),
        cluster_name: "demo".into(),
        hosts: vec![
            host("node1", "192.0.2.11", "dc1", Role::Postgres, &[]),
            host("node2", "192.0.2.12", "dc1", Role::Postgres, &[]),
            host("node3", "192.0.2.13", "dc2", Role::Postgres, &[]),
            host("etcd1", "192.0.2.21", "dc1", Role::Etcd, &[]),
            host("etcd2", "192.0.2.22", "dc1", Role::Etcd, &[]),
            host("etcd3", "192.0.2.23", "dc2", Role::Etcd, &[]),
            host("haproxy", "192.0.2.41", "dc2", Role::Haproxy, &["db.example.com"]),
            host("pgbouncer", "192.0.2.51", "dc2", Role::Pgbouncer, &["pool.example.com"]),
        ],
        postgres: PostgresSettings {
            port: port(5432),
            parameters: vec![],
            users: vec![
                DbUser {
                    name: "app".into(),
                    options: vec![],
                },
                DbUser {
                    name: "reporting".into(),
                    options: vec![],
                },
            ],
            databases: vec![Database {
                name: "app".into(),
                owner: "app".into(),
            }],
            major: None,
        },
        patroni: PatroniSettings {
            rest_port: port(8008),
            ttl: 30,
            loop_wait: 10,
            retry_timeout: 10,
            maximum_lag_on_failover: 1 << 20,
            synchronous_mode: SyncMode::On,
            synchronous_node_count: 1,
            failsafe_mode: false,
        },
        etcd: EtcdSettings {
            client_port: port(2379),
            peer_port: port(2380),
        },
        haproxy: HaproxySettings {
            rw_port: port(5000),
            ro_port: port(5001),
            stats_port: port(7000),
            ro_max_lag_bytes: 1 << 20,
            ro_primary_fallback: true,
            check_interval_ms: 3000,
            check_fall: 3,
            check_rise: 2,
            maxconn: 1000,
            direct_tls: None,
        },
        pgbouncer: PgbouncerSettings {
            port: port(6432),
            pool_mode: PoolMode::Transaction,
            default_pool_size: 20,
            max_client_conn: 1000,
            reserve_pool_size: 5,
        },
        tls: TlsSettings {
            ca_validity_days: 3650,
            leaf_validity_days: 365,
            renew_within_days: 30,
        },
        vip: None,
        backup: None,
    }
}
