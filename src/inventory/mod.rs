//! The inventory: YAML in, a validated [`Inventory`] out, with errors that point at
//! file:line:column and the field path, and topology warnings. No I/O beyond reading the file.
//!
//! `load.rs` reads and parses (limits, duplicate keys), `raw.rs` is the YAML shape,
//! `validate.rs` checks rules and applies defaults, `topology.rs` finds risks, `model.rs` is
//! what the rest of pgha reads.

mod load;
pub mod model;
pub mod names;
pub mod raw;
pub mod topology;
mod validate;

use std::path::Path;

pub use crate::diagnostic::{Diagnostic, Pos, Severity, did_you_mean};
pub use load::{MAX_INVENTORY_BYTES, ReadError};
pub use model::*;
pub use names::{DcName, HostName, Port, Role};
pub use validate::{MANAGED_PARAMETERS, RESERVED_ROLES};

/// A valid inventory and the warnings about it.
#[derive(Debug)]
pub struct Loaded {
    /// The inventory.
    pub inventory: Inventory,
    /// Topology and other warnings.
    pub warnings: Vec<Diagnostic>,
}

/// Why an inventory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The file was read but is not a valid inventory.
    #[error("{}", render_all(.errors))]
    Invalid {
        /// Every error found, in file order.
        errors: Vec<Diagnostic>,
        /// Warnings found along the way.
        warnings: Vec<Diagnostic>,
    },
}

fn render_all(errors: &[Diagnostic]) -> String {
    errors.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n\n")
}

/// Reads and validates the inventory at `path`.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    let bytes = load::read_text(path)?;
    parse(path, &bytes)
}

/// Validates inventory bytes; `path` is only used in messages and as the inventory's location.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Loaded, LoadError> {
    let raw = load::parse_raw(path, bytes).map_err(|d| LoadError::Invalid {
        errors: vec![d],
        warnings: Vec::new(),
    })?;
    let mut findings = validate::Findings::new(path);
    let hosts_pos: Vec<(String, Pos)> = raw.hosts.value.0.iter().map(|(k, v)| (k.clone(), Pos::of(v))).collect();
    let hosts_root = Pos::of(&raw.hosts);
    let inv = validate::from_raw(path, raw, &mut findings);
    let Some(inventory) = inv else {
        let mut errors = findings.errors;
        errors.sort_by_key(|d| (d.line, d.column));
        return Err(LoadError::Invalid {
            errors,
            warnings: findings.warnings,
        });
    };
    for risk in topology::risks(&inventory) {
        let pos = risk
            .host
            .as_ref()
            .and_then(|h| hosts_pos.iter().find(|(k, _)| k == h).map(|(_, p)| *p))
            .unwrap_or(hosts_root);
        findings.warn(pos, &risk.field, risk.message, Some(risk.hint));
    }
    Ok(Loaded {
        inventory,
        warnings: findings.warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../inventory/example.yaml");

    fn example() -> Loaded {
        parse(Path::new("inventory/example.yaml"), EXAMPLE.as_bytes()).expect("example is valid")
    }

    #[test]
    fn example_has_the_reference_topology() {
        let inv = example().inventory;
        let names = |role| inv.hosts_with(role).map(|h| h.name.to_string()).collect::<Vec<_>>();
        assert_eq!(names(Role::Postgres), ["node1", "node2", "node3"]);
        assert_eq!(names(Role::Etcd), ["etcd1", "etcd2", "etcd3"]);
        assert_eq!(names(Role::Haproxy), ["haproxy"]);
        assert_eq!(names(Role::Pgbouncer), ["pgbouncer"]);
        let node3 = inv.host("node3").expect("node3");
        assert_eq!(node3.dc.as_str(), "dc2");
        assert_eq!(node3.address.to_string(), "198.51.100.13");
        assert_eq!(inv.host("haproxy").expect("haproxy").dns_names().len(), 2);
        assert_eq!(inv.patroni.synchronous_mode, SyncMode::On);
        assert_eq!(
            inv.postgres
                .databases
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>(),
            ["postgres", "app"]
        );
        assert!(
            inv.postgres
                .parameters
                .contains(&("shared_buffers".to_string(), "256MB".to_string()))
        );
    }

    #[test]
    fn defaults_fill_every_optional_section() {
        let text = "cluster: {name: t}\nhosts:\n  a: {address: 10.0.0.1, dc: x, roles: [postgres, etcd, haproxy, pgbouncer]}\n";
        let inv = parse(Path::new("t.yaml"), text.as_bytes()).expect("valid").inventory;
        assert_eq!(inv.postgres.port.get(), 5432);
        assert_eq!(inv.patroni.rest_port.get(), 8008);
        assert_eq!(
            (inv.patroni.ttl, inv.patroni.loop_wait, inv.patroni.retry_timeout),
            (25, 5, 10)
        );
        assert_eq!((inv.etcd.client_port.get(), inv.etcd.peer_port.get()), (2379, 2380));
        assert_eq!((inv.haproxy.rw_port.get(), inv.haproxy.ro_port.get()), (5000, 5001));
        assert_eq!(inv.pgbouncer.port.get(), 6432);
        assert_eq!(inv.pgbouncer.pool_mode, PoolMode::Transaction);
        assert_eq!(inv.postgres.databases.len(), 1);
        assert_eq!(inv.hosts[0].ssh.user, "root");
        assert_eq!(inv.hosts[0].ssh.port.get(), 22);
        assert_eq!(inv.tls.leaf_validity_days, 365);
    }

    #[test]
    fn host_ssh_overrides_defaults() {
        let text = "cluster: {name: t}\nssh: {user: ops, port: 2222, become: true}\nhosts:\n  a: {address: 10.0.0.1, dc: x, roles: [postgres, etcd, haproxy, pgbouncer], ssh: {port: 22}}\n";
        let inv = parse(Path::new("t.yaml"), text.as_bytes()).expect("valid").inventory;
        let ssh = &inv.hosts[0].ssh;
        assert_eq!((ssh.user.as_str(), ssh.port.get(), ssh.become_), ("ops", 22, true));
    }

    /// One inventory per refused class of issue 12 item 3: the field named, nothing else wrong.
    #[test]
    fn every_hostile_class_is_refused_with_its_field() {
        let hosts = "hosts:\n  a: {address: 10.0.0.1, dc: x, roles: [postgres, etcd, haproxy, pgbouncer]}\n";
        let cases: &[(&str, &str, &str)] = &[
            (
                "",
                "postgres: {parameters: {ssl_ciphers: 'NULL'}}",
                "postgres.parameters.ssl_ciphers",
            ),
            (
                "",
                "postgres: {parameters: {ssl_passphrase_command: 'id'}}",
                "postgres.parameters.ssl_passphrase_command",
            ),
            (
                "",
                "postgres: {parameters: {ssl_crl_file: /x}}",
                "postgres.parameters.ssl_crl_file",
            ),
            (
                "",
                "postgres: {parameters: {ssl_max_protocol_version: TLSv1}}",
                "postgres.parameters.ssl_max_protocol_version",
            ),
            (
                "",
                "postgres: {parameters: {ssl_min_protocol_version: TLSv1}}",
                "postgres.parameters.ssl_min_protocol_version",
            ),
            (
                "",
                "postgres: {parameters: {ssl_groups: X25519}}",
                "postgres.parameters.ssl_groups",
            ),
            (
                "",
                "postgres: {parameters: {work_mem: \"4MB\\nx = 1\"}}",
                "postgres.parameters.work_mem",
            ),
            (
                "",
                "postgres: {parameters: {application_name: \"a\\u202Eb\"}}",
                "postgres.parameters.application_name",
            ),
            ("", "postgres: {parameters: {\"a'b\": 1}}", "postgres.parameters.a'b"),
            ("ssh: {user: -oProxyCommand=x}\n", "", "ssh.user"),
            ("ssh: {user: \"a\\nb\"}\n", "", "ssh.user"),
            ("ssh: {key: \"/k\\u001b\"}\n", "", "ssh.key"),
            ("ssh: {known_hosts: /a b}\n", "", "ssh.known_hosts"),
            ("", "postgres: {users: [{name: pg_x}]}", "postgres.users[0].name"),
            (
                "",
                "postgres: {databases: [{name: template0}]}",
                "postgres.databases[0].name",
            ),
        ];
        for (top, tail, field) in cases {
            let text = format!("cluster: {{name: t}}\n{top}{hosts}{tail}\n");
            let Err(LoadError::Invalid { errors, .. }) = parse(Path::new("t.yaml"), text.as_bytes()) else {
                panic!("{field}: must be refused:\n{text}")
            };
            assert!(
                errors.iter().any(|e| e.field == *field && e.hint.is_some()),
                "{field}: {errors:?}"
            );
            assert!(errors.iter().all(|e| e.line > 0 && e.column > 0), "{field}: {errors:?}");
        }
        let v6 = "cluster: {name: t}\nhosts:\n  a: {address: '2001:db8::1', dc: x, roles: [postgres, etcd, haproxy, pgbouncer]}\n";
        let Err(LoadError::Invalid { errors, .. }) = parse(Path::new("t.yaml"), v6.as_bytes()) else {
            panic!("IPv6 must be refused")
        };
        assert!(
            errors
                .iter()
                .any(|e| e.field == "hosts.a.address" && e.message.contains("IPv6"))
        );
    }

    #[test]
    fn the_vip_example_has_no_single_point_of_failure() {
        let text = include_str!("../../inventory/entry-vip.yaml");
        let loaded = parse(Path::new("inventory/entry-vip.yaml"), text.as_bytes()).expect("valid");
        let vip = loaded.inventory.vip.as_ref().expect("a vip");
        assert_eq!(
            (vip.address.to_string(), vip.virtual_router_id, vip.interface.as_str()),
            ("192.0.2.30".into(), 30, "eth0")
        );
        assert_eq!(vip.client_name(), "db.example.com");
        assert_eq!(loaded.inventory.entry_hosts().count(), 2);
        assert!(
            loaded
                .warnings
                .iter()
                .all(|w| !w.message.contains("single point of failure")),
            "{:?}",
            loaded.warnings
        );
        assert!(
            example()
                .warnings
                .iter()
                .any(|w| w.message.contains("single point of failure"))
        );
    }

    #[test]
    fn vip_mistakes_are_refused_with_their_field() {
        let two = "hosts:\n  a: {address: 10.0.0.1, dc: x, roles: [postgres, etcd]}\n  e1: {address: 10.0.0.31, dc: x, roles: [haproxy, pgbouncer]}\n  e2: {address: 10.0.0.32, dc: y, roles: [haproxy, pgbouncer]}\n";
        let split = "hosts:\n  a: {address: 10.0.0.1, dc: x, roles: [postgres, etcd]}\n  e1: {address: 10.0.0.31, dc: x, roles: [haproxy]}\n  e2: {address: 10.0.0.32, dc: y, roles: [pgbouncer]}\n";
        let one = "hosts:\n  a: {address: 10.0.0.1, dc: x, roles: [postgres, etcd, haproxy, pgbouncer]}\n";
        let cases: &[(&str, &str, &str)] = &[
            (two, "vip: {address: 10.0.0.31}", "vip.address"),
            (two, "vip: {address: '2001:db8::1'}", "vip.address"),
            (two, "vip: {address: 224.0.0.1}", "vip.address"),
            (two, "vip: {address: 10.0.0.30, names: [e1]}", "vip.names"),
            (two, "vip: {address: 10.0.0.30, interface: 'eth0; x'}", "vip.interface"),
            (
                two,
                "vip: {address: 10.0.0.30, virtual_router_id: 256}",
                "vip.virtual_router_id",
            ),
            (
                two,
                "vip: {address: 10.0.0.30, virtual_router_id: 0}",
                "vip.virtual_router_id",
            ),
            (two, "vip: {address: 10.0.0.30, password: x}", "vip"),
            (split, "vip: {address: 10.0.0.30}", "vip"),
            (one, "vip: {address: 10.0.0.30}", "vip"),
        ];
        for (hosts, tail, field) in cases {
            let text = format!("cluster: {{name: t}}\n{hosts}{tail}\n");
            let Err(LoadError::Invalid { errors, .. }) = parse(Path::new("t.yaml"), text.as_bytes()) else {
                panic!("{field}: must be refused:\n{text}")
            };
            assert!(errors.iter().any(|e| e.field.starts_with(field)), "{field}: {errors:?}");
        }
        let text = format!("cluster: {{name: t}}\n{two}vip: {{address: 10.0.0.30}}\n");
        let inv = parse(Path::new("t.yaml"), text.as_bytes()).expect("valid").inventory;
        assert_eq!(
            inv.vip.map(|v| (v.virtual_router_id, v.interface)),
            Some((30, "eth0".to_string()))
        );
    }

    #[test]
    fn direct_tls_needs_postgres_17_stated() {
        let hosts = "hosts:\n  a: {address: 10.0.0.1, dc: x, roles: [postgres, etcd, haproxy, pgbouncer]}\n";
        let cases: &[(&str, &str, u32)] = &[
            ("haproxy: {direct_tls: {}}", "does not say", 3),
            (
                "postgres: {major: 15}\nhaproxy: {direct_tls: {}}",
                "postgres.major is 15",
                3,
            ),
            (
                "postgres: {major: 17}\nhaproxy: {direct_tls: {rw_port: 6432}}",
                "are both 6432",
                4,
            ),
            (
                "postgres: {major: 17}\nhaproxy: {direct_tls: {port: 1}}",
                "unknown field",
                4,
            ),
            ("postgres: {major: 170}", "not a PostgreSQL major", 4),
        ];
        for (tail, says, line) in cases {
            let text = format!("cluster: {{name: t}}\n{hosts}{tail}\n");
            let Err(LoadError::Invalid { errors, .. }) = parse(Path::new("t.yaml"), text.as_bytes()) else {
                panic!("must be refused:\n{text}")
            };
            assert!(
                errors
                    .iter()
                    .any(|e| e.message.contains(says) && e.line as u32 >= *line - 1),
                "{says}: {errors:?}"
            );
        }
        let text = format!("cluster: {{name: t}}\n{hosts}postgres: {{major: 17}}\nhaproxy: {{direct_tls: {{}}}}\n");
        let inv = parse(Path::new("t.yaml"), text.as_bytes()).expect("valid").inventory;
        let d = inv.haproxy.direct_tls.expect("on");
        assert_eq!((d.rw_port.get(), d.ro_port.get()), (5002, 5003));
    }

    #[test]
    fn ssh_user_grammar() {
        for ok in ["root", "ops", "deploy-user", "first.last", "_svc", "host$"] {
            assert!(validate::check_ssh_user(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-oX",
            "a b",
            "a@b",
            "a:b",
            "1abc",
            "$",
            &"a".repeat(33),
            "a\nb",
            "ä",
        ] {
            assert!(validate::check_ssh_user(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn several_errors_are_all_reported_in_file_order() {
        let text = "cluster: {name: t}\nhosts:\n  a: {address: 10.0.0.1, dc: x, roles: [postgres, etcd]}\n  b: {address: 10.0.0.1, dc: x, roles: [etcd]}\n";
        let Err(LoadError::Invalid { errors, .. }) = parse(Path::new("t.yaml"), text.as_bytes()) else {
            panic!("must be invalid")
        };
        let fields: Vec<_> = errors.iter().map(|e| (e.line, e.field.as_str())).collect();
        assert!(fields.contains(&(4, "hosts.b.address")), "{fields:?}");
        assert!(errors.iter().any(|e| e.message.contains("odd number")));
        assert!(errors.iter().any(|e| e.message.contains("role `haproxy`")));
        assert!(
            errors
                .windows(2)
                .all(|w| (w[0].line, w[0].column) <= (w[1].line, w[1].column))
        );
    }
}
