//! `pgha verify`: run the end-to-end checks (`ops::verify`, docs/design.md §6)
//! and print a table; non-zero exit naming the failed checks.

use clap::Args;

use super::args::{InventoryArgs, RemoteArgs, prepare};
use super::output::CliReporter;
use super::report::{self, exit};
use crate::ops::verify;

/// Arguments of `pgha verify`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  pgha verify inventory/lab.yaml\n  pgha verify inventory/prod.yaml --json | jq '.checks[] | select(.ok == false)'\n\nChecks: etcd healthy over mutual TLS; Patroni has one leader and every replica streams;\neach HAProxy has exactly one RW server UP; through each PgBouncer (<db>_rw, <db>_ro) and each\nHAProxy (RW, RO port) a write with sslmode=verify-full, read back on a replica. Needs psql on\nthis machine (apt-get install postgresql-client).\n\nExit codes: 0 every check passed, 1 a check failed (named), 3 invalid inventory."
)]
pub struct VerifyArgs {
    /// The inventory and state directory.
    #[command(flatten)]
    pub target: InventoryArgs,
    /// Connection and output options.
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// Runs `pgha verify`.
pub fn run(args: &VerifyArgs) -> u8 {
    let (inv, rt) = match prepare(&args.target, true) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let rep = CliReporter::shared(args.remote.json, args.remote.verbose, args.remote.timings);
    let checks = match rt.block_on(verify::verify(
        &inv,
        args.target.state.as_deref(),
        &args.remote.connect(),
        rep.as_ref(),
    )) {
        Ok(c) => c,
        Err(e) => return report::fail(&e),
    };
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
