//! `pgha uri`: a libpq connection URI for applications, with `sslmode=verify-full` and
//! `sslrootcert=` the CA bundle (its fixed name, which follows a CA rotation); the password
//! only when asked.

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
    uri(inv, o.via, o.ro, &user, &db, password.as_deref(), &ca)
        .ok_or_else(|| OpsError::InvalidInput("the inventory has no host for that entry point".into()))
}

/// The URI (password included only when given).
pub fn uri(inv: &Inventory, via: Via, ro: bool, user: &str, db: &str, password: Option<&str>, ca: &Path) -> Option<String> {
    let (host, port, dbname) = match via {
        Via::Pgbouncer => {
            let h = inv.hosts_with(Role::Pgbouncer).next()?;
            (
                h,
                inv.pgbouncer.port.get(),
                format!("{db}_{}", if ro { "ro" } else { "rw" }),
            )
        }
        Via::Haproxy => {
            let h = inv.hosts_with(Role::Haproxy).next()?;
            (
                h,
                if ro {
                    inv.haproxy.ro_port.get()
                } else {
                    inv.haproxy.rw_port.get()
                },
                db.to_string(),
            )
        }
    };
    let name = host.names.first().unwrap_or(&host.name);
    // Every component percent-encoded: a state directory under "My Clusters/" or a password
    // holding `@`, `&` or `/` stays one value (src/conninfo.rs).
    let mut parts = vec![("user", user.to_string())];
    if let Some(p) = password {
        parts.push(("password", p.to_string()));
    }
    parts.extend([
        ("host", name.to_string()),
        ("port", port.to_string()),
        ("dbname", dbname.to_string()),
        ("sslmode", "verify-full".to_string()),
        ("sslrootcert", ca.display().to_string()),
        ("hostaddr", host.address.to_string()),
    ]);
    let mut info = crate::conninfo::ConnInfo::new();
    for (key, value) in parts {
        info = info.with(key, value).ok()?;
    }
    Some(info.to_uri())
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
        let u = uri(&inv, Via::Pgbouncer, false, "app", "app", None, ca).expect("uri");
        assert_eq!(
            u,
            "postgresql://app@pool.example.com:6432/app_rw?sslmode=verify-full&sslrootcert=/s/trust/ca-bundle-1.pem&hostaddr=198.51.100.41"
        );
        let u = uri(&inv, Via::Haproxy, true, "app", "app", Some("pw"), ca).expect("uri");
        assert!(u.starts_with("postgresql://app:pw@db.example.com:5001/app?"), "{u}");
        let spaced = std::path::Path::new("/home/me/My Clusters/.pgha/trust/ca-bundle.pem");
        let u = uri(&inv, Via::Pgbouncer, false, "app", "app", Some("a@b&c"), spaced).expect("uri");
        assert_eq!(
            u,
            "postgresql://app:a%40b%26c@pool.example.com:6432/app_rw?sslmode=verify-full&sslrootcert=/home/me/My%20Clusters/.pgha/trust/ca-bundle.pem&hostaddr=198.51.100.41"
        );
    }
}
