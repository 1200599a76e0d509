//! `pgha rotate-certs`: renew the leaves, or rotate the CA trust first (DESIGN.md §5), with
//! zero downtime. Each step changes the state directory, then converges the hosts with the
//! deploy playbook (whose handlers reload, never restart, except etcd one member at a time),
//! then drains PgBouncer's server connections and reads back what every TLS endpoint presents.
//! A CA rotation advances its recorded phase only once every host has it, so a re-run after an
//! interruption continues from there.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use futures::future::join_all;
use time::OffsetDateTime;

use super::deploy::{Converge, close_all, connect_or_report, converge, load_inventory};
use super::report::{self, exit};
use super::run::{RemoteArgs, runtime};
use crate::endpoints::{self, Presented};
use crate::inventory::{Inventory, Role};
use crate::pki::{self, CertInfo, LeafAction, Phase, Renew, Rotation, StateDir};
use crate::render::TemplateSource;
use crate::transport::{Cmd, Conn, DEFAULT_TIMEOUT};

/// Arguments of `pgha rotate-certs`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  pgha rotate-certs inventory/prod.yaml                      # every leaf, from the same CA\n  pgha rotate-certs inventory/prod.yaml --expiring-within 30  # for a timer: only what is due\n  pgha rotate-certs inventory/prod.yaml --ca --check          # the CA rotation plan\n  pgha rotate-certs inventory/prod.yaml --ca --stop-after trust-both\n  pgha rotate-certs inventory/prod.yaml --ca                  # resumes where it stopped\n\nLeaves are applied by reloads only: Patroni SIGHUP (REST API and PostgreSQL), HAProxy reload,\nPgBouncer PAUSE, RELOAD, RESUME (server connections renewed\nwithout failing a client); etcd reads its certificate per handshake. A CA rotation goes\ntrust first: bundle old + new CA everywhere (etcd restarts one member at a time), leaves from\nthe new CA, drain, bundle of the new CA alone. Its phase is kept in STATE/rotation.json; the\nold CA is archived in STATE/ca/archive/. Application clients: during the rotation trust the\nbundle printed (old + new CA); `pgha uri` points at it.\n\nExit codes: 0 done (or planned), 1 a step failed (re-run to continue), 3 invalid inventory,\n130 interrupted (re-run to continue)."
)]
pub struct RotateArgs {
    /// The inventory file.
    pub inventory: PathBuf,
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
    /// State directory of the PKI and secrets (default: .pgha beside the inventory).
    #[arg(long)]
    pub state: Option<PathBuf>,
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
    let inv = match load_inventory(&args.inventory, args.remote.json) {
        Ok(i) => i,
        Err(code) => return code,
    };
    if !args.remote.limit.is_empty() {
        report::error("rotate-certs applies to every host: --limit is not accepted");
        return exit::USAGE;
    }
    let state = StateDir::for_inventory(&inv, args.state.as_deref());
    let rotation = match pki::load_rotation(&state) {
        Ok(r) => r,
        Err(e) => {
            report::error(&e);
            return exit::FAILED;
        }
    };
    if !args.ca
        && let Some(r) = &rotation
    {
        report::error(format!(
            "{}: a CA rotation is in progress (next phase: {}); finish it first: pgha rotate-certs --ca {}",
            state.rotation().display(),
            r.phase,
            args.inventory.display()
        ));
        return exit::FAILED;
    }
    if args.check {
        return plan(&inv, &state, args, rotation.as_ref());
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let conns = match rt.block_on(connect_or_report(&inv, &args.remote, "rotate-certs")) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let session = Session {
        rt: &rt,
        inv: &inv,
        state: &state,
        args,
        conns: &conns,
        renewed: std::cell::Cell::new(0),
    };
    let started = Instant::now();
    let code = if args.ca {
        session.rotate_ca()
    } else {
        session.rotate_leaves()
    };
    let secs = started.elapsed().as_secs_f64();
    if code == exit::OK {
        report::info(format!("rotate-certs: done in {secs:.1} s"));
    }
    if args.remote.json {
        let rotation = pki::load_rotation(&state).ok().flatten();
        // One line, like the engine's events before it: the output stays JSON lines.
        report::out(
            serde_json::json!({
                "event": "rotate-certs",
                "ca": args.ca,
                "ok": code == exit::OK,
                "exit_code": code,
                "seconds": secs,
                "renewed": session.renewed.get(),
                "rotation_in_progress": rotation,
                "client_bundle": state.current_bundle(),
            })
            .to_string(),
        );
    }
    rt.block_on(close_all(&conns));
    code
}

struct Session<'a> {
    rt: &'a tokio::runtime::Runtime,
    inv: &'a Inventory,
    state: &'a StateDir,
    args: &'a RotateArgs,
    conns: &'a BTreeMap<String, Conn>,
    /// Leaves renewed by this run (for `--json`).
    renewed: std::cell::Cell<usize>,
}

impl Session<'_> {
    fn rotate_leaves(&self) -> u8 {
        let which = self.args.expiring_within.map_or(Renew::All, Renew::ExpiringWithin);
        let outcomes = match pki::renew_leaves(self.inv, self.state, OffsetDateTime::now_utc(), which) {
            Ok(o) => o,
            Err(e) => {
                report::error(&e);
                return exit::FAILED;
            }
        };
        let renewed = outcomes.iter().filter(|o| o.action != LeafAction::Kept).count();
        self.renewed.set(renewed);
        report::info(format!(
            "rotate-certs: {renewed} of {} certificate(s) renewed in {}",
            outcomes.len(),
            self.state.root().display()
        ));
        if renewed == 0 {
            return exit::OK;
        }
        self.apply_and_check("leaves", Expect::StateLeaves)
    }

    fn rotate_ca(&self) -> u8 {
        let mut r = match pki::rotation::begin(self.inv, self.state, OffsetDateTime::now_utc()) {
            Ok(r) => r,
            Err(e) => {
                report::error(&e);
                return exit::FAILED;
            }
        };
        report::info(format!(
            "rotate-certs: CA {} → {}, next phase: {}",
            r.old_ca, r.new_ca, r.phase
        ));
        loop {
            let phase = r.phase;
            let step_started = Instant::now();
            report::info(format!("phase {phase}: {}", phase.describe()));
            let code = match phase {
                Phase::TrustBoth => self.apply_and_check(phase.as_str(), Expect::Listening),
                Phase::NewLeaves => self.apply_and_check(phase.as_str(), Expect::StateLeaves),
                Phase::TrustNew => self.apply_and_check(phase.as_str(), Expect::StateLeaves),
            };
            if code != exit::OK {
                report::info(format!(
                    "rotate-certs: phase {phase} is not applied everywhere; fix the cause and re-run `pgha rotate-certs --ca {}` to continue from it",
                    self.args.inventory.display()
                ));
                return code;
            }
            report::info(format!(
                "phase {phase}: applied on every host in {:.1} s",
                step_started.elapsed().as_secs_f64()
            ));
            if let Err(e) = pki::rotation::mark_applied(self.state, &mut r, phase) {
                report::error(&e);
                return exit::FAILED;
            }
            if phase == Phase::TrustBoth {
                self.tell_clients();
            }
            if self.args.stop_after == Some(phase) {
                report::info(format!(
                    "rotate-certs: stopped after {phase} as asked; `pgha rotate-certs --ca {}` continues",
                    self.args.inventory.display()
                ));
                return exit::OK;
            }
            let next = match phase {
                Phase::TrustBoth => pki::rotation::promote(self.state, &mut r),
                Phase::NewLeaves => pki::rotation::trust_new(self.state, &mut r).map(|_| ()),
                Phase::TrustNew => pki::rotation::finish(self.state).map(|()| {
                    report::info(format!(
                        "rotate-certs: CA rotation complete; the old CA is archived in {}",
                        self.state.archived_ca_dir(&r.old_ca).display()
                    ));
                }),
            };
            if let Err(e) = next {
                report::error(&e);
                return exit::FAILED;
            }
            if phase == Phase::TrustNew {
                return exit::OK;
            }
        }
    }

    /// Where application clients find the bundle to trust during the overlap.
    fn tell_clients(&self) {
        if let Ok(Some(b)) = pki::current_bundle(self.state) {
            report::info(format!(
                "application clients: trust {} (old + new CA, the same as {}) before the new leaves go out; `pgha uri` points at it",
                self.state.current_bundle().display(),
                self.state.bundle(b.generation).display()
            ));
        }
    }

    /// Converges the hosts, drains PgBouncer's server connections, then waits until every
    /// endpoint presents what `expect` says.
    fn apply_and_check(&self, what: &str, expect: Expect) -> u8 {
        let templates = TemplateSource::Embedded;
        let code = converge(
            self.rt,
            &Converge {
                inv: self.inv,
                state: self.args.state.as_deref(),
                templates: &templates,
                playbooks: None,
                check: false,
                diff: false,
                adopt_existing_data: false,
                remote: &self.args.remote,
            },
            self.conns,
        );
        if code != exit::OK {
            return code;
        }
        if let Err(e) = self.rt.block_on(self.drain()) {
            report::error(e);
            return exit::FAILED;
        }
        match self.rt.block_on(self.check_endpoints(expect)) {
            Ok(n) => {
                report::info(format!("{what}: {n} TLS endpoint(s) present the expected certificate"));
                exit::OK
            }
            Err(problems) => {
                for p in problems {
                    report::error(p);
                }
                exit::FAILED
            }
        }
    }

    /// PgBouncer: PAUSE then RESUME, so every server connection is renewed (each closes once
    /// released) without failing a client (see `deploy::pgbouncer_helper`).
    async fn drain(&self) -> Result<(), String> {
        let results = join_all(self.inv.hosts_with(Role::Pgbouncer).map(|h| async move {
            let conn = self
                .conns
                .get(h.name.as_str())
                .ok_or_else(|| format!("{}: not connected", h.name))?;
            let cmd = Cmd::new(crate::deploy::pgbouncer_helper::PATH).arg("drain");
            let out = conn
                .exec(&cmd, None, DEFAULT_TIMEOUT)
                .await
                .map_err(|e| e.to_string())?;
            if out.success() {
                Ok(())
            } else {
                Err(format!(
                    "{}: PgBouncer drain (PAUSE, RESUME) failed: {}",
                    h.name,
                    out.stderr_tail(2)
                ))
            }
        }))
        .await;
        results.into_iter().collect()
    }

    /// Reads every endpoint's certificate until all are as expected (bounded: Patroni applies a
    /// SIGHUP within a loop). A REST API still on its old certificate gets one more SIGHUP:
    /// Patroni misses a new certificate when the same SIGHUP also changed its config.
    async fn check_endpoints(&self, expect: Expect) -> Result<usize, Vec<String>> {
        let deadline = Instant::now() + Duration::from_secs(45);
        let nudge_at = Instant::now() + Duration::from_secs(10);
        let mut nudged = false;
        loop {
            let presented = endpoints::probe(self.inv, self.conns).await;
            let problems: Vec<(Presented, String)> = presented
                .iter()
                .filter_map(|p| self.judge(p, expect).err().map(|e| (p.clone(), e)))
                .collect();
            if problems.is_empty() {
                return Ok(presented.len());
            }
            if Instant::now() > deadline {
                return Err(problems.into_iter().map(|(_, e)| e).collect());
            }
            if !nudged && Instant::now() > nudge_at {
                nudged = true;
                let stale_rest = problems
                    .iter()
                    .filter(|(p, _)| p.endpoint.kind == pki::LeafKind::PatroniRest && p.cert.is_ok());
                for (p, _) in stale_rest {
                    if let Some(c) = self.conns.get(p.endpoint.host.as_str()) {
                        let _ = c
                            .exec(
                                &Cmd::new("systemctl").args(["reload", "patroni"]),
                                None,
                                DEFAULT_TIMEOUT,
                            )
                            .await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    fn judge(&self, p: &Presented, expect: Expect) -> Result<(), String> {
        let e = &p.endpoint;
        let cert = p.cert.as_ref().map_err(Clone::clone)?;
        match expect {
            Expect::Listening => Ok(()),
            Expect::StateLeaves => {
                let want = std::fs::read_to_string(self.state.leaf_cert(&e.host, e.kind))
                    .map_err(|err| format!("{}: {err}", self.state.leaf_cert(&e.host, e.kind).display()))?;
                let want = CertInfo::from_pem(&want)?;
                if want.der == cert.der {
                    Ok(())
                } else {
                    Err(format!(
                        "{}:{} ({}) still presents serial {}, not the new {}",
                        e.host,
                        e.port,
                        e.kind,
                        cert.serial_hex(),
                        want.serial_hex()
                    ))
                }
            }
        }
    }
}

/// What endpoints must present after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Any certificate (the leaves did not change).
    Listening,
    /// Exactly the leaf in the state directory.
    StateLeaves,
}

/// `--check`: what a run would do, from the state directory alone.
fn plan(inv: &Inventory, state: &StateDir, args: &RotateArgs, rotation: Option<&Rotation>) -> u8 {
    if args.ca {
        let applied = rotation.and_then(|r| r.applied);
        match rotation {
            Some(r) => report::out(format!("CA rotation in progress: {} → {}", r.old_ca, r.new_ca)),
            None => report::out("CA rotation: a new CA will be generated"),
        }
        for p in Phase::ALL {
            let mark = if Some(p) <= applied { "done" } else { "todo" };
            report::out(format!("  [{mark}] {}: {}", p.as_str(), p.describe()));
        }
        if let Some(stop) = args.stop_after {
            report::out(format!("  (stops after {stop})"));
        }
        return exit::OK;
    }
    let rows = match pki::status(inv, state, OffsetDateTime::now_utc()) {
        Ok(r) => r,
        Err(e) => {
            report::error(&e);
            return exit::FAILED;
        }
    };
    let mut n = 0;
    for r in rows.iter().filter(|r| r.host.is_some()) {
        let due = match args.expiring_within {
            None => true,
            Some(days) => r.reason.is_some() || r.days_left.is_none_or(|d| d <= i64::from(days)),
        };
        if due {
            n += 1;
            report::out(format!(
                "renew {} on {} (ends {}, {} day(s) left)",
                r.certificate,
                r.host.as_ref().map_or("-".into(), ToString::to_string),
                r.not_after.as_deref().unwrap_or("-"),
                r.days_left.map_or("-".into(), |d| d.to_string())
            ));
        }
    }
    report::out(format!(
        "{n} certificate(s) to renew; then: install, Patroni SIGHUP (REST API, PostgreSQL), HAProxy reload, PgBouncer PAUSE + RELOAD + RESUME; check every TLS endpoint"
    ));
    exit::OK
}
