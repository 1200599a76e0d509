//! `pgha verify`: run the checks of DESIGN.md §6 and print a table; non-zero exit naming the
//! failed checks.

use std::path::PathBuf;

use clap::Args;

use super::deploy::{connect_all, load_inventory};
use super::report::{self, exit};
use super::run::{RemoteArgs, runtime};
use crate::pki;
use crate::render::paths;
use crate::verify::{self, Ctx};

/// Arguments of `pgha verify`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  pgha verify inventory/lab.yaml\n  pgha verify inventory/prod.yaml --json | jq '.checks[] | select(.ok == false)'\n\nChecks: etcd healthy over mutual TLS; Patroni has one leader and every replica streams;\neach HAProxy has exactly one RW server UP; through each PgBouncer (<db>_rw, <db>_ro) and each\nHAProxy (RW, RO port) a write with sslmode=verify-full, read back on a replica. Needs psql on\nthis machine (apt-get install postgresql-client).\n\nExit codes: 0 every check passed, 1 a check failed (named), 3 invalid inventory."
)]
pub struct VerifyArgs {
    /// The inventory file.
    pub inventory: PathBuf,
    /// State directory of the PKI and secrets (default: .pgha beside the inventory).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Connection and output options.
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// Runs `pgha verify`.
pub fn run(args: &VerifyArgs) -> u8 {
    let inv = match load_inventory(&args.inventory, true) {
        Ok(i) => i,
        Err(code) => return code,
    };
    let (state, bundle, password) = match verify_credentials(&inv, args.state.as_deref(), &args.inventory) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let checks = rt.block_on(async {
        let (conns, errors) = connect_all(&inv, &args.remote).await;
        for e in errors.values() {
            report::error(e);
        }
        let ctx = Ctx {
            inv: &inv,
            conns: &conns,
            ca_file: state.bundle(bundle.generation),
            remote_ca: paths::ca_bundle(&bundle.file_name()),
            password,
        };
        let checks = verify::run_all(&ctx).await;
        for c in conns.values() {
            let _ = c.close().await;
        }
        checks
    });
    let failed: Vec<&str> = checks.iter().filter(|c| !c.ok).map(|c| c.name.as_str()).collect();
    if args.remote.json {
        report::json(&serde_json::json!({ "ok": failed.is_empty(), "checks": checks }));
    } else {
        let mut rows = vec![vec!["check".to_string(), "result".into(), "detail".into()]];
        for c in &checks {
            rows.push(vec![
                c.name.clone(),
                if c.ok { "ok".into() } else { "FAILED".into() },
                c.detail.lines().next().unwrap_or("").to_string(),
            ]);
        }
        report::out(report::table(&rows).trim_end());
        if failed.is_empty() {
            report::out(format!("verify: all {} checks passed", checks.len()));
        } else {
            report::error(format!(
                "verify: {} check(s) failed: {}",
                failed.len(),
                failed.join("; ")
            ));
        }
    }
    if failed.is_empty() { exit::OK } else { exit::FAILED }
}

/// The state directory, its newest trust bundle and `pgha_verify`'s password: what a client
/// check needs. `Err` is the exit code, after saying what is missing (deploy first).
pub fn verify_credentials(
    inv: &crate::inventory::Inventory,
    state: Option<&std::path::Path>,
    inventory: &std::path::Path,
) -> Result<(pki::StateDir, pki::TrustBundle, pki::Secret<String>), u8> {
    let state = pki::StateDir::for_inventory(inv, state);
    let bundle = match pki::current_bundle(&state) {
        Ok(Some(b)) => b,
        Ok(None) => {
            report::error(format!(
                "{}: no CA bundle; deploy first (pgha deploy {})",
                state.root().display(),
                inventory.display()
            ));
            return Err(exit::FAILED);
        }
        Err(e) => {
            report::error(&e);
            return Err(exit::FAILED);
        }
    };
    let password = match pki::load_secrets(&state).map(|s| s.password(&pki::Account::Verify).cloned()) {
        Ok(Some(p)) => p,
        Ok(None) => {
            report::error(format!(
                "{}: no password for pgha_verify; run pgha deploy first",
                state.root().display()
            ));
            return Err(exit::FAILED);
        }
        Err(e) => {
            report::error(&e);
            return Err(exit::FAILED);
        }
    };
    Ok((state, bundle, password))
}
