//! `pgha uri`: print a libpq connection URI for applications (`ops::uri`): `sslmode=verify-full`
//! and `sslrootcert=` the CA bundle; the password only when asked.

use clap::Args;

use super::args::InventoryArgs;
use super::report::{self, exit};
use crate::ops::uri::{self, UriOptions, Via};

/// Arguments of `pgha uri`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  pgha uri inventory/lab.yaml                       # read-write through PgBouncer\n  pgha uri inventory/lab.yaml --ro --via haproxy\n  psql \"$(pgha uri inventory/lab.yaml --user app --with-password)\"\n  pgha uri inventory/lab.yaml --multi-host         # every PgBouncer host, libpq tries them in turn\n  pgha uri inventory/lab.yaml --via haproxy --direct-tls   # TLS terminated by HAProxy (libpq 17)\n\nThe URI carries hostaddr= so it works without DNS for the cluster's names; TLS still\nverifies the name. The password is printed only with --with-password."
)]
pub struct UriArgs {
    /// The inventory and state directory.
    #[command(flatten)]
    pub target: InventoryArgs,
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
    /// Database (default: the first database the user owns, so CREATE TABLE works; else the
    /// inventory's first database).
    #[arg(long)]
    pub database: Option<String>,
    /// Include the password (from the state directory).
    #[arg(long)]
    pub with_password: bool,
    /// List every entry host (libpq multi-host: tried in turn, `target_session_attrs=read-write`
    /// for RW, `load_balance_hosts=random` for RO, which needs libpq 16) instead of one host or
    /// the VIP.
    #[arg(long)]
    pub multi_host: bool,
    /// With `--via haproxy`: HAProxy's direct-TLS ports (`haproxy.direct_tls`, PostgreSQL 17):
    /// `sslnegotiation=direct` (libpq 17) and `channel_binding=disable` (HAProxy re-encrypts).
    #[arg(long)]
    pub direct_tls: bool,
}

/// Runs `pgha uri`.
pub fn run(args: &UriArgs) -> u8 {
    let inv = match args.target.load(true) {
        Ok(i) => i,
        Err(code) => return code,
    };
    let via = match (args.via, args.direct_tls) {
        (Via::Haproxy, true) => Via::HaproxyDirect,
        (_, true) => {
            report::info(
                "error: --direct-tls needs --via haproxy (PgBouncer cannot do direct TLS on Debian: 1.25 or later only)",
            );
            return exit::USAGE;
        }
        (v, false) => v,
    };
    let o = UriOptions {
        ro: args.ro,
        via,
        user: args.user.clone(),
        database: args.database.clone(),
        with_password: args.with_password,
        multi_host: args.multi_host,
        state: args.target.state.clone(),
    };
    match uri::connection_uri(&inv, &o) {
        Ok(u) => {
            let shape = if args.multi_host {
                uri::Shape::MultiHost
            } else {
                uri::Shape::Single
            };
            if let Some((v, param)) = uri::libpq_needed(via, shape, args.ro) {
                report::info(format!(
                    "note: this URI needs libpq {v} or later ({param}); older clients refuse it"
                ));
            }
            report::out(u);
            exit::OK
        }
        Err(e) => report::fail(&e),
    }
}
