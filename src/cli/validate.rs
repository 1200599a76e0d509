//! `pgha validate`: check an inventory, print its errors or warnings.

use std::path::PathBuf;

use clap::Args;

use super::report::{self, exit};
use crate::inventory::{LoadError, Role};
use crate::ops::{self, OpsError};

/// Arguments of `pgha validate`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  pgha validate inventory/example.yaml\n  pgha validate inventory/prod.yaml --json | jq '.warnings[].message'\n\nExit codes: 0 valid (warnings may be printed), 3 invalid or unreadable."
)]
pub struct ValidateArgs {
    /// The inventory file.
    pub inventory: PathBuf,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs `pgha validate`.
pub fn run(args: &ValidateArgs) -> u8 {
    match ops::load_inventory(&args.inventory) {
        Ok(loaded) => {
            if args.json {
                report::json(&serde_json::json!({
                    "valid": true,
                    "errors": [],
                    "warnings": loaded.warnings,
                    "inventory": loaded.inventory,
                }));
            } else {
                for w in &loaded.warnings {
                    report::diagnostic(w);
                }
                let inv = &loaded.inventory;
                let counts: Vec<String> = Role::ALL
                    .iter()
                    .map(|r| format!("{} {r}", inv.hosts_with(*r).count()))
                    .collect();
                report::out(format!(
                    "{}: valid: cluster {}, {} hosts ({}), {} warning(s)",
                    args.inventory.display(),
                    inv.cluster_name,
                    inv.hosts.len(),
                    counts.join(", "),
                    loaded.warnings.len()
                ));
            }
            exit::OK
        }
        Err(OpsError::Inventory(LoadError::Invalid { errors, warnings })) => {
            if args.json {
                report::json(&serde_json::json!({ "valid": false, "errors": errors, "warnings": warnings }));
            } else {
                for d in &errors {
                    report::diagnostic(d);
                }
                report::info(format!(
                    "{}: invalid: {} error(s)",
                    args.inventory.display(),
                    errors.len()
                ));
            }
            exit::INVALID_INPUT
        }
        Err(e) => {
            if args.json {
                report::json(&serde_json::json!({ "valid": false, "errors": [{"message": e.to_string()}] }));
                report::exit_code(&e)
            } else {
                report::fail(&e)
            }
        }
    }
}
