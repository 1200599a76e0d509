//! `pgha rotate-certs`: parse the arguments, call `ops::rotate` (the plan with `--check`),
//! print the plan or the one-line JSON summary, map the outcome to an exit code.

use clap::Args;

use super::args::{InventoryArgs, RemoteArgs, runtime};
use super::output::CliReporter;
use super::report::{self, exit};
use crate::ops::rotate::{self, RotateOptions, RotatePlan};
use crate::pki::Phase;

/// Arguments of `pgha rotate-certs`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  pgha rotate-certs inventory/prod.yaml                      # every leaf, from the same CA\n  pgha rotate-certs inventory/prod.yaml --expiring-within 30  # for a timer: only what is due\n  pgha rotate-certs inventory/prod.yaml --ca --check          # the CA rotation plan\n  pgha rotate-certs inventory/prod.yaml --ca --stop-after trust-both\n  pgha rotate-certs inventory/prod.yaml --ca                  # resumes where it stopped\n\nLeaves are applied by reloads only: Patroni SIGHUP (REST API and PostgreSQL), HAProxy reload,\nPgBouncer PAUSE, RELOAD, RESUME (server connections renewed\nwithout failing a client); etcd reads its certificate per handshake. A CA rotation goes\ntrust first: bundle old + new CA everywhere (etcd restarts one member at a time), leaves from\nthe new CA, drain, bundle of the new CA alone. Its phase is kept in STATE/rotation.json; the\nold CA is archived in STATE/ca/archive/. Application clients: during the rotation trust the\nbundle printed (old + new CA); `pgha uri` points at it.\n\nExit codes: 0 done (or planned), 1 a step failed (re-run to continue), 3 invalid inventory,\n130 interrupted (re-run to continue)."
)]
pub struct RotateArgs {
    /// The inventory and state directory.
    #[command(flatten)]
    pub target: InventoryArgs,
    /// Rotate the CA itself (trust first), not only the leaves.
    #[arg(long)]
    pub ca: bool,
    /// Renew only leaves ending within DAYS (or missing, or no longer right).
    #[arg(long, value_name = "DAYS", conflicts_with = "ca")]
    pub expiring_within: Option<u32>,
    /// Print the plan; change nothing.
    #[arg(long)]
    pub check: bool,
    /// With --ca: stop once this phase is applied everywhere (trust-both: give application
    /// clients time to take the new bundle). A later run continues.
    #[arg(long, value_name = "PHASE", value_parser = parse_phase, requires = "ca")]
    pub stop_after: Option<Phase>,
    /// Connection and output options.
    #[command(flatten)]
    pub remote: RemoteArgs,
}

fn parse_phase(s: &str) -> Result<Phase, String> {
    Phase::ALL
        .into_iter()
        .find(|p| p.as_str() == s)
        .ok_or_else(|| format!("expected one of: {}", Phase::ALL.map(Phase::as_str).join(", ")))
}

/// Runs `pgha rotate-certs`.
pub fn run(args: &RotateArgs) -> u8 {
    let inv = match args.target.load(args.remote.json) {
        Ok(i) => i,
        Err(code) => return code,
    };
    if !args.remote.limit.is_empty() {
        report::error("rotate-certs applies to every host: --limit is not accepted");
        return exit::USAGE;
    }
    let o = RotateOptions {
        ca: args.ca,
        expiring_within: args.expiring_within,
        stop_after: args.stop_after,
        state: args.target.state.clone(),
        verbose: args.remote.verbose,
        quiet: args.remote.json,
        connect: args.remote.connect(),
    };
    if args.check {
        return match rotate::plan(&inv, &o) {
            Ok(p) => {
                print_plan(&p);
                exit::OK
            }
            Err(e) => report::fail(&e),
        };
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let rep = CliReporter::shared(args.remote.json, args.remote.verbose, args.remote.timings);
    let run = match rt.block_on(rotate::rotate(&inv, &o, &rep)) {
        Ok(r) => r,
        Err(e) => return report::fail(&e),
    };
    let code = match &run.outcome {
        Ok(()) => {
            report::info(format!("rotate-certs: done in {:.1} s", run.seconds));
            exit::OK
        }
        Err(e) => report::fail(e),
    };
    if args.remote.json {
        // One line, like the engine's events before it: the output stays JSON lines.
        report::out(
            serde_json::json!({
                "event": "rotate-certs",
                "ca": args.ca,
                "ok": code == exit::OK,
                "exit_code": code,
                "seconds": run.seconds,
                "renewed": run.renewed,
                "rotation_in_progress": run.rotation_in_progress,
                "client_bundle": run.client_bundle,
            })
            .to_string(),
        );
    }
    code
}

/// Prints what `--check` found.
fn print_plan(p: &RotatePlan) {
    match p {
        RotatePlan::Ca {
            rotation,
            applied,
            stop_after,
        } => {
            match rotation {
                Some(r) => report::out(format!("CA rotation in progress: {} → {}", r.old_ca, r.new_ca)),
                None => report::out("CA rotation: a new CA will be generated"),
            }
            for p in Phase::ALL {
                let mark = if Some(p) <= *applied { "done" } else { "todo" };
                report::out(format!("  [{mark}] {}: {}", p.as_str(), p.describe()));
            }
            if let Some(stop) = stop_after {
                report::out(format!("  (stops after {stop})"));
            }
        }
        RotatePlan::Leaves { due } => {
            for r in due {
                report::out(format!(
                    "renew {} on {} (ends {}, {} day(s) left)",
                    r.certificate,
                    r.host.as_ref().map_or("-".into(), ToString::to_string),
                    r.not_after.as_deref().unwrap_or("-"),
                    r.days_left.map_or("-".into(), |d| d.to_string())
                ));
            }
            report::out(format!(
                "{} certificate(s) to renew; then: install, Patroni SIGHUP (REST API, PostgreSQL), HAProxy reload, PgBouncer PAUSE + RELOAD + RESUME; check every TLS endpoint",
                due.len()
            ));
        }
    }
}
