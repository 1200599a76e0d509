//! What certificates the inventory calls for: [`LeafKind`] and [`LeafSpec`], built from the
//! inventory by [`leaf_specs`]. Pure data, no I/O and no cryptography: this file is docs/design.md §3's
//! certificate table in code, and its tests check the table.
//!
//! Decisions beyond the table (keep these in sync with docs/design.md):
//!
//! - **etcd server certificate carries serverAuth *and* clientAuth.** etcd's gRPC gateway (which
//!   Patroni's etcd3 client talks to over `/v3/...`) dials the member's own client port with a
//!   clone of the *server* TLS config, presenting the server certificate as its client
//!   certificate (`server/embed/serve.go`: `dtls := tlscfg.Clone()`, same in 3.4's
//!   `embed/serve.go`). With `client-cert-auth: true` etcd then rejects it ("certificate specifies
//!   an incompatible key usage") unless the certificate allows clientAuth: etcd-io/etcd#9785,
//!   #15755, #16590; kubeadm (kubernetes#65020) and openshift-ansible add clientAuth for this
//!   reason. The table's "serverAuth" alone would break the gateway pgha depends on.
//! - **No PgBouncer client certificate toward PostgreSQL**: pg_hba authenticates PgBouncer with
//!   SCRAM over `hostssl`; PgBouncer only verifies the server (verify-full against HAProxy's
//!   name), so a client certificate would be unused.
//! - **No replication client certificate**: replicas and pg_rewind authenticate with SCRAM over
//!   TLS verify-full, as the table says.
//! - Client-only certificates (Patroni's client, HAProxy's check) carry one DNS SAN that never
//!   resolves, `<kind>.<host>.pgha.invalid` (RFC 6761 reserves `.invalid`), and their CN is the
//!   host name. The SAN keeps them off etcd's peer port: etcd checks a peer client's SANs
//!   against its remote address, but skips the check for a certificate without any SAN
//!   (`checkCertSAN` in etcd's `pkg/transport/listener_tls.go`, 3.4 and 3.5), so without it any
//!   client certificate of the CA could talk raft to the members (measured on the lab:
//!   HAProxy's check certificate got HTTP 200 from `:2380/version`). Nothing checks a client
//!   certificate's name otherwise (Patroni, etcd's client port), so the SAN changes nothing else.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use crate::inventory::{Host, HostName, Inventory, Role};

/// One kind of leaf certificate of docs/design.md §3; a host gets one per kind its roles need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeafKind {
    /// PostgreSQL server, per node: its own names and every HAProxy name and address.
    PostgresServer,
    /// Patroni REST API server (:8008), per node.
    PatroniRest,
    /// Patroni as a client: `ctl` toward other nodes' REST API and the etcd3 client.
    PatroniClient,
    /// HAProxy's client certificate for its HTTPS checks against Patroni.
    HaproxyCheck,
    /// etcd client port (:2379) server certificate, per member.
    EtcdServer,
    /// etcd peer (:2380) certificate, per member: both ends of mutual TLS.
    EtcdPeer,
    /// PgBouncer's listener (:6432) server certificate.
    PgbouncerServer,
    /// pgBackRest's TLS server (:8432) and client, on the repository host and every node when
    /// the inventory has a `backup` host: both EKUs, DNS SANs (pgBackRest 2.45 ignores IP SANs),
    /// and the CN the peer's `tls-server-auth` checks.
    Pgbackrest,
    /// HAProxy's server certificate for its direct-TLS frontends (`haproxy.direct_tls`): the
    /// host's names and address and the VIP's, presented to clients that connect with
    /// `sslnegotiation=direct` (docs/entry-points.md).
    HaproxyServer,
}

impl LeafKind {
    /// Every kind, in bring-up order of the services that use them.
    pub const ALL: [LeafKind; 9] = [
        LeafKind::EtcdServer,
        LeafKind::EtcdPeer,
        LeafKind::PostgresServer,
        LeafKind::PatroniRest,
        LeafKind::PatroniClient,
        LeafKind::HaproxyCheck,
        LeafKind::PgbouncerServer,
        LeafKind::Pgbackrest,
        LeafKind::HaproxyServer,
    ];

    /// The name used for files (`<name>.crt`, `<name>.key`) and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            LeafKind::PostgresServer => "postgres-server",
            LeafKind::PatroniRest => "patroni-rest",
            LeafKind::PatroniClient => "patroni-client",
            LeafKind::HaproxyCheck => "haproxy-check",
            LeafKind::EtcdServer => "etcd-server",
            LeafKind::EtcdPeer => "etcd-peer",
            LeafKind::PgbouncerServer => "pgbouncer-server",
            LeafKind::Pgbackrest => "pgbackrest",
            LeafKind::HaproxyServer => "haproxy-server",
        }
    }

    /// The roles of which a host needs one to get this certificate.
    pub fn roles(self) -> &'static [Role] {
        match self {
            LeafKind::PostgresServer | LeafKind::PatroniRest | LeafKind::PatroniClient => &[Role::Postgres],
            LeafKind::HaproxyCheck | LeafKind::HaproxyServer => &[Role::Haproxy],
            LeafKind::EtcdServer | LeafKind::EtcdPeer => &[Role::Etcd],
            LeafKind::PgbouncerServer => &[Role::Pgbouncer],
            LeafKind::Pgbackrest => &[Role::Postgres, Role::Backup],
        }
    }

    /// Whether `host` of `inv` gets this certificate (pgBackRest's only with a `backup` host,
    /// HAProxy's server certificate only with `haproxy.direct_tls`).
    pub fn wanted_by(self, host: &Host, inv: &Inventory) -> bool {
        let role = self.roles().iter().any(|r| host.has(*r));
        role && match self {
            LeafKind::Pgbackrest => inv.backup.is_some(),
            LeafKind::HaproxyServer => inv.haproxy.direct_tls.is_some(),
            _ => true,
        }
    }

    /// Extended key usages, exactly (see the module doc for etcd-server).
    pub fn ekus(self) -> BTreeSet<Eku> {
        let list: &[Eku] = match self {
            LeafKind::PostgresServer | LeafKind::PatroniRest | LeafKind::PgbouncerServer | LeafKind::HaproxyServer => {
                &[Eku::ServerAuth]
            }
            LeafKind::PatroniClient | LeafKind::HaproxyCheck => &[Eku::ClientAuth],
            LeafKind::EtcdServer | LeafKind::EtcdPeer | LeafKind::Pgbackrest => &[Eku::ServerAuth, Eku::ClientAuth],
        };
        list.iter().copied().collect()
    }

    /// Subject alternative names for this kind on `host`.
    pub fn sans(self, host: &Host, inv: &Inventory) -> BTreeSet<San> {
        match self {
            LeafKind::PatroniClient | LeafKind::HaproxyCheck => {
                [San::Dns(format!("{}.{}.pgha.invalid", self.as_str(), host.name))].into()
            }
            LeafKind::PatroniRest | LeafKind::EtcdServer | LeafKind::EtcdPeer | LeafKind::Pgbackrest => {
                own_names(host, false)
            }
            LeafKind::PgbouncerServer | LeafKind::HaproxyServer => {
                let mut sans = own_names(host, true);
                sans.extend(vip_names(inv));
                sans
            }
            LeafKind::PostgresServer => {
                let mut sans = own_names(host, false);
                for proxy in inv.hosts_with(Role::Haproxy) {
                    sans.extend(own_names(proxy, true));
                }
                // Clients dialling HAProxy through the VIP verify the node's certificate
                // (HAProxy passes TLS through).
                sans.extend(vip_names(inv));
                sans
            }
        }
    }
}

impl fmt::Display for LeafKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The VIP's names and address (none without a VIP): every entry point's certificate carries
/// them, since any entry host may hold the VIP.
fn vip_names(inv: &Inventory) -> BTreeSet<San> {
    inv.vip
        .iter()
        .flat_map(|v| {
            v.names
                .iter()
                .map(|n| San::Dns(n.as_str().to_owned()))
                .chain(std::iter::once(San::Ip(v.address)))
        })
        .collect()
}

/// The node name and address; with `extra`, also the host's extra DNS names.
fn own_names(host: &Host, extra: bool) -> BTreeSet<San> {
    let names = if extra {
        host.dns_names()
    } else {
        vec![host.name.clone()]
    };
    names
        .into_iter()
        .map(|n| San::Dns(n.as_str().to_owned()))
        .chain(std::iter::once(San::Ip(host.address)))
        .collect()
}

/// A subject alternative name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum San {
    /// A DNS name.
    Dns(String),
    /// An IP address.
    Ip(IpAddr),
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(n) => write!(f, "DNS:{n}"),
            San::Ip(a) => write!(f, "IP:{a}"),
        }
    }
}

/// An extended key usage pgha issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Eku {
    /// TLS server (`id-kp-serverAuth`).
    ServerAuth,
    /// TLS client (`id-kp-clientAuth`).
    ClientAuth,
}

impl fmt::Display for Eku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Eku::ServerAuth => "serverAuth",
            Eku::ClientAuth => "clientAuth",
        })
    }
}

/// The certificate one host should hold for one kind: what `ensure` compares files against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LeafSpec {
    /// Which certificate.
    pub kind: LeafKind,
    /// The host holding it.
    pub host: HostName,
    /// Subject CN: the host name.
    pub common_name: String,
    /// Exact SAN set.
    pub sans: BTreeSet<San>,
    /// Exact EKU set.
    pub ekus: BTreeSet<Eku>,
}

/// Every leaf the inventory calls for, host by host in file order, kinds in [`LeafKind::ALL`] order.
pub fn leaf_specs(inv: &Inventory) -> Vec<LeafSpec> {
    inv.hosts
        .iter()
        .flat_map(|host| {
            LeafKind::ALL
                .into_iter()
                .filter(|k| k.wanted_by(host, inv))
                .map(move |kind| LeafSpec {
                    kind,
                    host: host.name.clone(),
                    common_name: host.name.as_str().to_owned(),
                    sans: kind.sans(host, inv),
                    ekus: kind.ekus(),
                })
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::pki::testutil::sample_inventory;

    fn dns(s: &str) -> San {
        San::Dns(s.into())
    }
    fn ip(s: &str) -> San {
        San::Ip(s.parse().expect("ip"))
    }
    fn spec<'a>(specs: &'a [LeafSpec], host: &str, kind: LeafKind) -> &'a LeafSpec {
        specs
            .iter()
            .find(|s| s.host.as_str() == host && s.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} for {host}"))
    }

    #[test]
    fn table_of_design_section_3() {
        let inv = sample_inventory();
        let specs = leaf_specs(&inv);
        // 3 nodes × 3 + 3 etcd × 2 + 1 haproxy + 1 pgbouncer.
        assert_eq!(specs.len(), 9 + 6 + 1 + 1);

        let pg = spec(&specs, "node1", LeafKind::PostgresServer);
        let want: BTreeSet<San> = [
            dns("node1"),
            ip("192.0.2.11"),
            dns("haproxy"),
            dns("db.example.com"),
            ip("192.0.2.41"),
        ]
        .into();
        assert_eq!(pg.sans, want);
        assert_eq!(pg.ekus, [Eku::ServerAuth].into());
        assert_eq!(pg.common_name, "node1");

        let rest = spec(&specs, "node2", LeafKind::PatroniRest);
        assert_eq!(rest.sans, [dns("node2"), ip("192.0.2.12")].into());
        assert_eq!(rest.ekus, [Eku::ServerAuth].into());

        let client = spec(&specs, "node3", LeafKind::PatroniClient);
        assert_eq!(client.sans, [dns("patroni-client.node3.pgha.invalid")].into());
        assert_eq!(client.ekus, [Eku::ClientAuth].into());
        assert_eq!(client.common_name, "node3");

        let check = spec(&specs, "haproxy", LeafKind::HaproxyCheck);
        assert_eq!(check.sans, [dns("haproxy-check.haproxy.pgha.invalid")].into());
        // Never an address nor a name any host has: etcd's peer port refuses it.
        assert!(
            specs
                .iter()
                .filter(|s| matches!(s.kind, LeafKind::PatroniClient | LeafKind::HaproxyCheck))
                .all(|s| s
                    .sans
                    .iter()
                    .all(|n| matches!(n, San::Dns(d) if d.ends_with(".invalid"))))
        );
        assert_eq!(check.ekus, [Eku::ClientAuth].into());

        let etcd = spec(&specs, "etcd2", LeafKind::EtcdServer);
        assert_eq!(etcd.sans, [dns("etcd2"), ip("192.0.2.22")].into());
        assert_eq!(etcd.ekus, [Eku::ServerAuth, Eku::ClientAuth].into());

        let peer = spec(&specs, "etcd3", LeafKind::EtcdPeer);
        assert_eq!(peer.sans, [dns("etcd3"), ip("192.0.2.23")].into());
        assert_eq!(peer.ekus, [Eku::ServerAuth, Eku::ClientAuth].into());

        let bouncer = spec(&specs, "pgbouncer", LeafKind::PgbouncerServer);
        assert_eq!(
            bouncer.sans,
            [dns("pgbouncer"), dns("pool.example.com"), ip("192.0.2.51")].into()
        );
        assert_eq!(bouncer.ekus, [Eku::ServerAuth].into());
    }

    #[test]
    fn the_vip_is_in_every_entry_point_certificate() {
        let mut inv = sample_inventory();
        inv.vip = Some(crate::inventory::Vip {
            address: "192.0.2.30".parse().expect("ip"),
            names: vec![HostName::new("db-vip.example.com").expect("name")],
            interface: "eth0".into(),
            virtual_router_id: 30,
        });
        let specs = leaf_specs(&inv);
        for (host, kind) in [
            ("node1", LeafKind::PostgresServer),
            ("pgbouncer", LeafKind::PgbouncerServer),
        ] {
            let s = spec(&specs, host, kind);
            assert!(
                s.sans.contains(&dns("db-vip.example.com")) && s.sans.contains(&ip("192.0.2.30")),
                "{host}: {:?}",
                s.sans
            );
        }
        let rest = spec(&specs, "node1", LeafKind::PatroniRest);
        assert!(!rest.sans.contains(&ip("192.0.2.30")));
    }

    #[test]
    fn haproxy_server_certificate_only_with_direct_tls() {
        let mut inv = sample_inventory();
        assert!(!leaf_specs(&inv).iter().any(|s| s.kind == LeafKind::HaproxyServer));
        inv.haproxy.direct_tls = Some(crate::inventory::DirectTls {
            rw_port: crate::inventory::Port::new(5002).expect("port"),
            ro_port: crate::inventory::Port::new(5003).expect("port"),
        });
        inv.vip = Some(crate::inventory::Vip {
            address: "192.0.2.30".parse().expect("ip"),
            names: vec![HostName::new("db-vip.example.com").expect("name")],
            interface: "eth0".into(),
            virtual_router_id: 30,
        });
        let specs = leaf_specs(&inv);
        let s = spec(&specs, "haproxy", LeafKind::HaproxyServer);
        assert_eq!(
            s.sans,
            [
                dns("haproxy"),
                dns("db.example.com"),
                ip("192.0.2.41"),
                dns("db-vip.example.com"),
                ip("192.0.2.30")
            ]
            .into()
        );
        assert_eq!(s.ekus, [Eku::ServerAuth].into());
        assert_eq!(specs.iter().filter(|s| s.kind == LeafKind::HaproxyServer).count(), 1);
    }

    #[test]
    fn hosts_without_the_role_get_no_certificate() {
        let specs = leaf_specs(&sample_inventory());
        assert!(!specs.iter().any(
            |s| s.host.as_str() == "haproxy" && !matches!(s.kind, LeafKind::HaproxyCheck | LeafKind::HaproxyServer)
        ));
        assert!(
            !specs
                .iter()
                .any(|s| s.host.as_str().starts_with("etcd") && !s.kind.roles().contains(&Role::Etcd))
        );
    }

    #[test]
    fn pgbackrest_leaves_only_with_a_backup_host() {
        let mut inv = sample_inventory();
        let specs = leaf_specs(&inv);
        assert!(
            !specs.iter().any(|s| s.kind == LeafKind::Pgbackrest),
            "no backup host: none"
        );
        let bouncer = inv
            .hosts
            .iter_mut()
            .find(|h| h.name.as_str() == "pgbouncer")
            .expect("pgbouncer");
        bouncer.roles.insert(Role::Backup);
        inv.backup = Some(crate::inventory::BackupSettings {
            host: HostName::new("pgbouncer").expect("name"),
            stanza: "demo".into(),
            retention_full: 2,
            retention_diff: 7,
            schedule: vec![],
        });
        let specs = leaf_specs(&inv);
        let holders: Vec<&str> = specs
            .iter()
            .filter(|s| s.kind == LeafKind::Pgbackrest)
            .map(|s| s.host.as_str())
            .collect();
        assert_eq!(holders, ["node1", "node2", "node3", "pgbouncer"]);
        let s = spec(&specs, "pgbouncer", LeafKind::Pgbackrest);
        // tls-server-auth checks the CN; 2.45 verifies DNS SANs only.
        assert_eq!(s.common_name, "pgbouncer");
        assert!(s.sans.contains(&dns("pgbouncer")));
        assert_eq!(s.ekus, [Eku::ServerAuth, Eku::ClientAuth].into());
    }
}
