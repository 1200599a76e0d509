//! `pgha uri`: a libpq connection URI for applications, with `sslmode=verify-full` and
//! `sslrootcert=` the CA bundle (its fixed name, which follows a CA rotation); the password
//! only when asked. With a VIP in the inventory the URI names the VIP; `--multi-host` lists
//! every entry host instead (libpq tries them in turn: `target_session_attrs=read-write` for
//! RW, `load_balance_hosts=random` for RO, which needs libpq ≥ 16). `--via haproxy
//! --direct-tls` ([`Via::HaproxyDirect`]) names HAProxy's direct-TLS ports with
//! `sslnegotiation=direct` (libpq ≥ 17) and `channel_binding=disable` (HAProxy re-encrypts,
//! so SCRAM's channel binding cannot match; docs/entry-points.md).

use std::path::{Path, PathBuf};

use super::OpsError;
use crate::inventory::{Inventory, Role};
use crate::pki;

/// Which entry point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// PgBouncer (pooled): databases `<db>_rw` / `<db>_ro`.
    Pgbouncer,
    /// HAProxy directly: the RW or RO port.
    Haproxy,
    /// HAProxy's direct-TLS ports (`haproxy.direct_tls`): `--via haproxy --direct-tls`.
    #[value(skip)]
    HaproxyDirect,
}

/// Which URI.
#[derive(Clone, Debug)]
pub struct UriOptions {
    /// Read-only (the replicas) instead of read-write.
    pub ro: bool,
    /// Entry point.
    pub via: Via,
    /// Role (default: the inventory's first application user).
    pub user: Option<String>,
    /// Database (default: [`default_database`]).
    pub database: Option<String>,
    /// Include the password (from the state directory).
    pub with_password: bool,
    /// Every entry host of the kind, for libpq's multi-host failover, instead of one host or
    /// the VIP.
    pub multi_host: bool,
    /// State directory (default beside the inventory).
    pub state: Option<PathBuf>,
}

/// The database a URI for `user` names by default: the first of the inventory's databases that
/// `user` owns, so that its first `CREATE TABLE` works (since PostgreSQL 15 only a database's
/// owner may create in its `public` schema: in `postgres` an application user gets
/// `permission denied for schema public`); else the first database; else `postgres`.
pub fn default_database(inv: &Inventory, user: &str) -> String {
    let dbs = &inv.postgres.databases;
    dbs.iter()
        .find(|d| d.owner == user)
        .or_else(|| dbs.first())
        .map_or_else(|| "postgres".to_string(), |d| d.name.clone())
}

/// The URI for `o`, reading the state directory for the bundle (and the password if asked).
pub fn connection_uri(inv: &Inventory, o: &UriOptions) -> Result<String, OpsError> {
    let Some(user) = o
        .user
        .clone()
        .or_else(|| inv.postgres.users.first().map(|u| u.name.clone()))
    else {
        return Err(OpsError::InvalidInput(format!(
            "{} declares no application user; pass --user NAME (or add one under postgres.users)",
            inv.path.display()
        )));
    };
    let db = o.database.clone().unwrap_or_else(|| default_database(inv, &user));
    let state = pki::StateDir::for_inventory(inv, o.state.as_deref());
    let ca = match pki::current_bundle(&state) {
        // The fixed name: it follows a CA rotation (old + new CA during the overlap).
        Ok(Some(b)) => match pki::bundle::sync_current(&state, &b) {
            Ok(()) => std::fs::canonicalize(state.current_bundle()).unwrap_or_else(|_| state.current_bundle()),
            Err(_) => state.bundle(b.generation),
        },
        _ => {
            return Err(OpsError::NotDeployed(format!(
                "{}: no CA bundle yet; run pgha deploy first",
                state.root().display()
            )));
        }
    };
    let password = if o.with_password {
        let account = pki::Account::App(user.clone());
        match pki::load_secrets(&state)?.password(&account) {
            Some(p) => Some(p.expose().clone()),
            None => {
                return Err(OpsError::NoPassword {
                    user,
                    state: state.root().to_path_buf(),
                });
            }
        }
    } else {
        None
    };
    if o.via == Via::HaproxyDirect && inv.haproxy.direct_tls.is_none() {
        return Err(OpsError::InvalidInput(format!(
            "{}: HAProxy has no direct-TLS frontends; add `direct_tls: {{}}` under `haproxy:` (PostgreSQL 17, docs/entry-points.md) and deploy, or drop --direct-tls",
            inv.path.display()
        )));
    }
    let shape = if o.multi_host { Shape::MultiHost } else { Shape::Single };
    uri(inv, o.via, o.ro, shape, &user, &db, password.as_deref(), &ca)
        .ok_or_else(|| OpsError::InvalidInput("the inventory has no host for that entry point".into()))
}

/// How many hosts the URI names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// The VIP when the inventory has one, else the first entry host.
    Single,
    /// Every host of the entry point, in inventory order.
    MultiHost,
}

/// The minimum libpq a URI of `via`, `shape` and `ro` needs, when above what pgha assumes
/// anyway (14), and the parameter that needs it: `sslnegotiation` arrived in libpq 17,
/// `load_balance_hosts` in libpq 16.
pub fn libpq_needed(via: Via, shape: Shape, ro: bool) -> Option<(u32, &'static str)> {
    if via == Via::HaproxyDirect {
        return Some((17, "sslnegotiation"));
    }
    (shape == Shape::MultiHost && ro).then_some((16, "load_balance_hosts"))
}

/// The URI (password included only when given).
#[allow(clippy::too_many_arguments)]
pub fn uri(
    inv: &Inventory,
    via: Via,
    ro: bool,
    shape: Shape,
    user: &str,
    db: &str,
    password: Option<&str>,
    ca: &Path,
) -> Option<String> {
    let (role, port, dbname) = match via {
        Via::Pgbouncer => (
            Role::Pgbouncer,
            inv.pgbouncer.port.get(),
            format!("{db}_{}", if ro { "ro" } else { "rw" }),
        ),
        Via::Haproxy => (
            Role::Haproxy,
            if ro {
                inv.haproxy.ro_port.get()
            } else {
                inv.haproxy.rw_port.get()
            },
            db.to_string(),
        ),
        Via::HaproxyDirect => {
            let d = inv.haproxy.direct_tls.as_ref()?;
            (
                Role::Haproxy,
                if ro { d.ro_port.get() } else { d.rw_port.get() },
                db.to_string(),
            )
        }
    };
    let entries: Vec<_> = inv.hosts_with(role).collect();
    // (name verified, address dialled) per host.
    let targets: Vec<(String, String)> = match (shape, &inv.vip) {
        (Shape::Single, Some(vip)) => vec![(vip.client_name(), vip.address.to_string())],
        (Shape::Single, None) => entries.iter().take(1).map(|h| name_addr(h)).collect(),
        (Shape::MultiHost, _) => entries.iter().map(|h| name_addr(h)).collect(),
    };
    if targets.is_empty() {
        return None;
    }
    let join = |f: fn(&(String, String)) -> &String| targets.iter().map(f).cloned().collect::<Vec<_>>().join(",");
    // Every component percent-encoded: a state directory under "My Clusters/" or a password
    // holding `@`, `&` or `/` stays one value (src/conninfo.rs).
    let mut parts = vec![("user", user.to_string())];
    if let Some(p) = password {
        parts.push(("password", p.to_string()));
    }
    parts.extend([
        ("host", join(|t| &t.0)),
        ("port", port.to_string()),
        ("dbname", dbname.to_string()),
        ("sslmode", "verify-full".to_string()),
        ("sslrootcert", ca.display().to_string()),
        ("hostaddr", join(|t| &t.1)),
    ]);
    if via == Via::HaproxyDirect {
        // TLS at once with ALPN `postgresql` (no SSLRequest round trip), to HAProxy's own
        // certificate; HAProxy's second TLS session to the node cannot carry SCRAM's channel
        // binding (tls-server-end-point hashes the certificate the client saw).
        parts.push(("sslnegotiation", "direct".to_string()));
        parts.push(("channel_binding", "disable".to_string()));
    }
    if shape == Shape::MultiHost {
        parts.push(("connect_timeout", "3".to_string()));
        if ro {
            // Spread sessions over the entry hosts (libpq ≥ 16); each one balances over the
            // replicas itself.
            parts.push(("load_balance_hosts", "random".to_string()));
        } else {
            // Every RW entry reaches the same primary; this refuses a session that is not
            // writable (an entry host routing to a demoted primary) and tries the next host.
            parts.push(("target_session_attrs", "read-write".to_string()));
        }
    }
    let mut info = crate::conninfo::ConnInfo::new();
    for (key, value) in parts {
        info = info.with(key, value).ok()?;
    }
    Some(info.to_uri())
}

/// The name a client verifies for `host` (its first extra name, else its own) and its address.
fn name_addr(host: &crate::inventory::Host) -> (String, String) {
    let name = host.names.first().unwrap_or(&host.name);
    (name.to_string(), host.address.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_name_the_entry_point_and_verify_full() {
        let text = include_str!("../../inventory/example.yaml");
        let inv = crate::inventory::parse(std::path::Path::new("e.yaml"), text.as_bytes())
            .expect("valid")
            .inventory;
        let ca = std::path::Path::new("/s/trust/ca-bundle-1.pem");
        let u = uri(&inv, Via::Pgbouncer, false, Shape::Single, "app", "app", None, ca).expect("uri");
        assert_eq!(
            u,
            "postgresql://app@pool.example.com:6432/app_rw?sslmode=verify-full&sslrootcert=/s/trust/ca-bundle-1.pem&hostaddr=198.51.100.41"
        );
        let u = uri(&inv, Via::Haproxy, true, Shape::Single, "app", "app", Some("pw"), ca).expect("uri");
        assert!(u.starts_with("postgresql://app:pw@db.example.com:5001/app?"), "{u}");
        let spaced = std::path::Path::new("/home/me/My Clusters/.pgha/trust/ca-bundle.pem");
        let u = uri(
            &inv,
            Via::Pgbouncer,
            false,
            Shape::Single,
            "app",
            "app",
            Some("a@b&c"),
            spaced,
        )
        .expect("uri");
        assert_eq!(
            u,
            "postgresql://app:a%40b%26c@pool.example.com:6432/app_rw?sslmode=verify-full&sslrootcert=/home/me/My%20Clusters/.pgha/trust/ca-bundle.pem&hostaddr=198.51.100.41"
        );
    }

    #[test]
    fn multi_host_and_vip_uris() {
        let text = include_str!("../../inventory/entry-vip.yaml");
        let mut inv = crate::inventory::parse(std::path::Path::new("e.yaml"), text.as_bytes())
            .expect("valid")
            .inventory;
        let ca = std::path::Path::new("/s/ca.pem");
        let u = uri(&inv, Via::Pgbouncer, false, Shape::Single, "app", "app", None, ca).expect("uri");
        assert_eq!(
            u,
            "postgresql://app@db.example.com:6432/app_rw?sslmode=verify-full&sslrootcert=/s/ca.pem&hostaddr=192.0.2.30"
        );
        let u = uri(&inv, Via::Pgbouncer, false, Shape::MultiHost, "app", "app", None, ca).expect("uri");
        assert_eq!(
            u,
            "postgresql://app@entry1:6432,entry2:6432/app_rw?sslmode=verify-full&sslrootcert=/s/ca.pem&hostaddr=192.0.2.31%2C192.0.2.32&connect_timeout=3&target_session_attrs=read-write"
        );
        let u = uri(&inv, Via::Haproxy, true, Shape::MultiHost, "app", "app", None, ca).expect("uri");
        assert!(
            u.starts_with("postgresql://app@entry1:5001,entry2:5001/app?") && u.ends_with("&load_balance_hosts=random"),
            "{u}"
        );
        assert_eq!(
            libpq_needed(Via::Haproxy, Shape::MultiHost, true),
            Some((16, "load_balance_hosts"))
        );
        assert_eq!(libpq_needed(Via::Pgbouncer, Shape::MultiHost, false), None);
        assert_eq!(
            libpq_needed(Via::HaproxyDirect, Shape::Single, false),
            Some((17, "sslnegotiation"))
        );
        let u = uri(&inv, Via::HaproxyDirect, false, Shape::Single, "app", "app", None, ca).expect("uri");
        assert_eq!(
            u,
            "postgresql://app@db.example.com:5002/app?sslmode=verify-full&sslrootcert=/s/ca.pem&hostaddr=192.0.2.30&sslnegotiation=direct&channel_binding=disable"
        );
        let u = uri(&inv, Via::HaproxyDirect, true, Shape::MultiHost, "app", "app", None, ca).expect("uri");
        assert!(u.starts_with("postgresql://app@entry1:5003,entry2:5003/app?"), "{u}");
        inv.haproxy.direct_tls = None;
        assert!(uri(&inv, Via::HaproxyDirect, false, Shape::Single, "app", "app", None, ca).is_none());
        inv.vip = None;
        let u = uri(&inv, Via::Pgbouncer, false, Shape::Single, "app", "app", None, ca).expect("uri");
        assert!(u.starts_with("postgresql://app@entry1:6432/app_rw?"), "{u}");
    }
}
