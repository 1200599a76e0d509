//! The certificate each TLS endpoint of the cluster actually presents, read where the network
//! certainly allows it: on the host itself, over its SSH connection, with `openssl s_client`
//! (`-starttls postgres` for PostgreSQL and PgBouncer). One round trip per host, hosts in
//! parallel. `pgha rotate-certs` uses it to check that every process serves the new material
//! before it removes trust in the old CA, and `pgha pki status --live` shows it.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;
use serde::Serialize;

use crate::inventory::{Host, HostName, Inventory, Role};
use crate::pki::{CertInfo, LeafKind};
use crate::render::paths;
use crate::transport::{Cmd, Conn};

/// One TLS endpoint: which certificate it should present.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// The host serving it.
    pub host: HostName,
    /// Its TCP port.
    pub port: u16,
    /// The leaf it presents.
    pub kind: LeafKind,
}

/// Every TLS endpoint of the inventory: PostgreSQL and Patroni's REST API on PostgreSQL
/// nodes, client and peer ports on etcd members, PgBouncer's listener, and HAProxy's
/// direct-TLS frontends with `haproxy.direct_tls` (otherwise HAProxy passes TLS through and
/// its own certificate is a client one).
pub fn endpoints(inv: &Inventory) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for h in &inv.hosts {
        let mut add = |port: u16, kind| {
            out.push(Endpoint {
                host: h.name.clone(),
                port,
                kind,
            })
        };
        if h.has(Role::Postgres) {
            add(inv.postgres.port.get(), LeafKind::PostgresServer);
            add(inv.patroni.rest_port.get(), LeafKind::PatroniRest);
        }
        if h.has(Role::Etcd) {
            add(inv.etcd.client_port.get(), LeafKind::EtcdServer);
            add(inv.etcd.peer_port.get(), LeafKind::EtcdPeer);
        }
        if h.has(Role::Pgbouncer) {
            add(inv.pgbouncer.port.get(), LeafKind::PgbouncerServer);
        }
        if let Some(d) = inv.haproxy.direct_tls.as_ref().filter(|_| h.has(Role::Haproxy)) {
            add(d.rw_port.get(), LeafKind::HaproxyServer);
            add(d.ro_port.get(), LeafKind::HaproxyServer);
        }
    }
    out
}

/// What one endpoint presented.
#[derive(Clone, Debug)]
pub struct Presented {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Its certificate, or why it could not be read.
    pub cert: Result<CertInfo, String>,
}

/// Reads every endpoint's certificate (one command per host, hosts in parallel).
pub async fn probe(inv: &Inventory, conns: &BTreeMap<String, Conn>) -> Vec<Presented> {
    let all = endpoints(inv);
    let per_host = join_all(inv.hosts.iter().map(|h| {
        let mine: Vec<Endpoint> = all.iter().filter(|e| e.host == h.name).cloned().collect();
        async move { probe_host(h, conns.get(h.name.as_str()), mine).await }
    }))
    .await;
    per_host.into_iter().flatten().collect()
}

async fn probe_host(host: &Host, conn: Option<&Conn>, mine: Vec<Endpoint>) -> Vec<Presented> {
    if mine.is_empty() {
        return Vec::new();
    }
    let fail = |mine: Vec<Endpoint>, why: String| {
        mine.into_iter()
            .map(|endpoint| Presented {
                endpoint,
                cert: Err(why.clone()),
            })
            .collect()
    };
    let Some(conn) = conn else {
        return fail(mine, format!("{}: not connected", host.name));
    };
    // $1 address, $2 SNI name, then per endpoint: port, mode, client cert, client key.
    let mut script = String::from("addr=$1 name=$2\n");
    let mut args = vec![host.address.to_string(), host.name.to_string()];
    for (i, e) in mine.iter().enumerate() {
        let (mode, client) = match e.kind {
            LeafKind::PostgresServer | LeafKind::PgbouncerServer => ("pg", None),
            // Direct TLS: a plain handshake with the ALPN libpq 17 sends.
            LeafKind::HaproxyServer => ("direct", None),
            LeafKind::PatroniRest => ("tls", Some(LeafKind::PatroniClient)),
            _ => ("tls", Some(LeafKind::EtcdServer)),
        };
        // Arguments by position: $3.. per endpoint, four each.
        let base = 3 + i * 4;
        let starttls = match mode {
            "pg" => "-starttls postgres",
            "direct" => "-alpn postgresql",
            _ => "",
        };
        let client_args = match client {
            Some(_) => format!("-cert \"${{{}}}\" -key \"${{{}}}\"", base + 2, base + 3),
            None => String::new(),
        };
        script.push_str(&format!(
            "echo '== {port}'\ntimeout 10 openssl s_client -connect \"$addr:${{{base}}}\" -servername \"$name\" {starttls} {client_args} < /dev/null 2> /dev/null | openssl x509 2> /dev/null || true\n",
            port = e.port,
        ));
        args.push(e.port.to_string());
        args.push(mode.to_string());
        args.push(client.map_or("-".into(), paths::leaf_cert));
        args.push(client.map_or("-".into(), paths::leaf_key));
    }
    let cmd = Cmd::script(&script, args);
    let out = match conn.exec(&cmd, None, Duration::from_secs(60)).await {
        Ok(o) if o.success() => o.stdout_text(),
        Ok(o) => {
            return fail(
                mine,
                format!("{}: probe exited {:?}: {}", host.name, o.code, o.stderr_tail(2)),
            );
        }
        Err(e) => return fail(mine, e.to_string()),
    };
    let sections = split_sections(&out);
    mine.into_iter()
        .map(|endpoint| {
            let cert = match sections.get(&endpoint.port) {
                Some(pem) if pem.contains("BEGIN CERTIFICATE") => CertInfo::from_pem(pem),
                _ => Err(format!(
                    "{}:{}: no certificate (not listening, or TLS refused)",
                    host.name, endpoint.port
                )),
            };
            Presented { endpoint, cert }
        })
        .collect()
}

/// Splits the probe's output into `port → PEM text`.
fn split_sections(out: &str) -> BTreeMap<u16, String> {
    let mut map = BTreeMap::new();
    let mut current: Option<u16> = None;
    for line in out.lines() {
        if let Some(port) = line.strip_prefix("== ").and_then(|p| p.trim().parse().ok()) {
            current = Some(port);
            map.entry(port).or_insert_with(String::new);
        } else if let Some(port) = current {
            let s = map.entry(port).or_insert_with(String::new);
            s.push_str(line);
            s.push('\n');
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tls_endpoint_of_the_reference_layout() {
        let inv = crate::pki::testutil_inventory();
        let eps = endpoints(&inv);
        let count = |kind| eps.iter().filter(|e| e.kind == kind).count();
        assert_eq!(eps.len(), 13, "{eps:?}");
        assert_eq!(count(LeafKind::PostgresServer), 3);
        assert_eq!(count(LeafKind::PatroniRest), 3);
        assert_eq!(count(LeafKind::EtcdServer), 3);
        assert_eq!(count(LeafKind::EtcdPeer), 3);
        assert_eq!(count(LeafKind::PgbouncerServer), 1);
        assert!(
            eps.iter().all(|e| e.kind != LeafKind::HaproxyCheck),
            "HAProxy passes TLS through"
        );
        let pgb = eps
            .iter()
            .find(|e| e.kind == LeafKind::PgbouncerServer)
            .expect("pgbouncer");
        assert_eq!((pgb.host.as_str(), pgb.port), ("pgbouncer", 6432));
    }

    #[test]
    fn direct_tls_adds_haproxy_endpoints() {
        let mut inv = crate::pki::testutil_inventory();
        inv.haproxy.direct_tls = Some(crate::inventory::DirectTls {
            rw_port: crate::inventory::Port::new(5002).expect("port"),
            ro_port: crate::inventory::Port::new(5003).expect("port"),
        });
        let eps = endpoints(&inv);
        let direct: Vec<(&str, u16)> = eps
            .iter()
            .filter(|e| e.kind == LeafKind::HaproxyServer)
            .map(|e| (e.host.as_str(), e.port))
            .collect();
        assert_eq!(direct, [("haproxy", 5002), ("haproxy", 5003)]);
    }

    #[test]
    fn sections_split_by_port() {
        let out = "== 5432\n-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n== 8008\n";
        let s = split_sections(out);
        assert!(s[&5432].contains("AAA"));
        assert_eq!(s[&8008], "");
    }
}
