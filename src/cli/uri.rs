//! `pgha uri`: a libpq connection URI for applications, with `sslmode=verify-full` and
//! `sslrootcert=` the CA bundle; the password only when asked.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::deploy::load_inventory;
use super::report::{self, exit};
use crate::inventory::{Inventory, Role};
use crate::pki;

/// Which entry point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Via {
    /// PgBouncer (pooled): databases `<db>_rw` / `<db>_ro`.
    Pgbouncer,
    /// HAProxy directly: the RW or RO port.
    Haproxy,
}

/// Arguments of `pgha uri`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  pgha uri inventory/lab.yaml                       # read-write through PgBouncer\n  pgha uri inventory/lab.yaml --ro --via haproxy\n  psql \"$(pgha uri inventory/lab.yaml --user app --with-password)\"\n\nThe URI carries hostaddr= so it works without DNS for the cluster's names; TLS still\nverifies the name. The password is printed only with --with-password."
)]
pub struct UriArgs {
    /// The inventory file.
    pub inventory: PathBuf,
    /// Read-write (the primary); the default.
    #[arg(long, conflicts_with = "ro")]
    pub rw: bool,
    /// Read-only (the replicas).
    #[arg(long)]
    pub ro: bool,
    /// Entry point.
    #[arg(long, value_enum, default_value_t = Via::Pgbouncer)]
    pub via: Via,
    /// Role to connect as (default: the inventory's first application user).
    #[arg(long)]
    pub user: Option<String>,
    /// Database (default: the inventory's first database).
    #[arg(long)]
    pub database: Option<String>,
    /// Include the password (from the state directory).
    #[arg(long)]
    pub with_password: bool,
    /// State directory of the PKI and secrets (default: .pgha beside the inventory).
    #[arg(long)]
    pub state: Option<PathBuf>,
}

/// The URI (password included only when given).
pub fn uri(
    inv: &Inventory,
    via: Via,
    ro: bool,
    user: &str,
    db: &str,
    password: Option<&str>,
    ca: &std::path::Path,
) -> Option<String> {
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
    let auth = match password {
        Some(p) => format!("{user}:{p}"),
        None => user.to_string(),
    };
    Some(format!(
        "postgresql://{auth}@{name}:{port}/{dbname}?sslmode=verify-full&sslrootcert={}&hostaddr={}",
        ca.display(),
        host.address
    ))
}

/// Runs `pgha uri`.
pub fn run(args: &UriArgs) -> u8 {
    let inv = match load_inventory(&args.inventory, true) {
        Ok(i) => i,
        Err(code) => return code,
    };
    let Some(user) = args
        .user
        .clone()
        .or_else(|| inv.postgres.users.first().map(|u| u.name.clone()))
    else {
        report::error(format!(
            "{} declares no application user; pass --user NAME (or add one under postgres.users)",
            args.inventory.display()
        ));
        return exit::INVALID_INPUT;
    };
    let db = args
        .database
        .clone()
        .or_else(|| inv.postgres.databases.first().map(|d| d.name.clone()))
        .unwrap_or_else(|| "postgres".into());
    let state = pki::StateDir::for_inventory(&inv, args.state.as_deref());
    let ca = match pki::current_bundle(&state) {
        // The fixed name: it follows a CA rotation (old + new CA during the overlap).
        Ok(Some(b)) => match pki::bundle::sync_current(&state, &b) {
            Ok(()) => std::fs::canonicalize(state.current_bundle()).unwrap_or_else(|_| state.current_bundle()),
            Err(_) => state.bundle(b.generation),
        },
        _ => {
            report::error(format!(
                "{}: no CA bundle yet; run pgha deploy first",
                state.root().display()
            ));
            return exit::FAILED;
        }
    };
    let password = if args.with_password {
        let account = pki::Account::App(user.clone());
        match pki::load_secrets(&state).map(|s| s.password(&account).map(|p| p.expose().clone())) {
            Ok(Some(p)) => Some(p),
            Ok(None) => {
                report::error(format!(
                    "no password for `{user}` in {}: is it in postgres.users?",
                    state.root().display()
                ));
                return exit::FAILED;
            }
            Err(e) => {
                report::error(&e);
                return exit::FAILED;
            }
        }
    } else {
        None
    };
    match uri(&inv, args.via, args.ro, &user, &db, password.as_deref(), &ca) {
        Some(u) => {
            report::out(u);
            exit::OK
        }
        None => {
            report::error("the inventory has no host for that entry point");
            exit::INVALID_INPUT
        }
    }
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
    }
}
