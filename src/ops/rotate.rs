//! `pgha rotate-certs`: renew the leaves, or rotate the CA trust first (docs/design.md §5), with zero downtime. Each step changes the state directory, then
//! converges the hosts with the deploy playbook (whose handlers reload, never restart, except
//! etcd one member at a time), then drains PgBouncer's server connections and reads back what
//! every TLS endpoint presents. A CA rotation advances its recorded phase only once every host
//! has it, so a re-run after an interruption continues from there.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use time::OffsetDateTime;

use super::deploy::{DeployOptions, converge};
use super::pool::{self, Conns};
use super::{Connect, OpsError, Reporter};
use crate::endpoints::{self, Presented};
use crate::inventory::{Inventory, Role};
use crate::pki::{self, CertInfo, CertStatus, LeafAction, Phase, Renew, Rotation, StateDir};
use crate::transport::{Cmd, DEFAULT_TIMEOUT};

/// What `pgha rotate-certs` does.
#[derive(Clone, Debug, Default)]
pub struct RotateOptions {
    /// Rotate the CA itself (trust first), not only the leaves.
    pub ca: bool,
    /// Renew only leaves ending within this many days (or missing, or no longer right).
    pub expiring_within: Option<u32>,
    /// With `ca`: stop once this phase is applied everywhere.
    pub stop_after: Option<Phase>,
    /// State directory (default beside the inventory).
    pub state: Option<PathBuf>,
    /// Report every command sent.
    pub verbose: bool,
    /// No preflight summary lines (JSON output).
    pub quiet: bool,
    /// How to reach the hosts (every host: no limit).
    pub connect: Connect,
}

/// What a run did, also when it failed (for `--json`).
#[derive(Debug)]
pub struct RotateRun {
    /// Done, or why not.
    pub outcome: Result<(), OpsError>,
    /// Wall time of the run.
    pub seconds: f64,
    /// Leaves renewed by this run.
    pub renewed: usize,
    /// The CA rotation still in progress after the run, if any.
    pub rotation_in_progress: Option<Rotation>,
    /// The bundle application clients should trust (fixed name).
    pub client_bundle: PathBuf,
}

/// What `--check` would do, from the state directory alone.
#[derive(Debug)]
pub enum RotatePlan {
    /// A CA rotation: its phases, done or to do.
    Ca {
        /// The rotation in progress (None: a new CA will be generated).
        rotation: Option<Rotation>,
        /// The last phase applied so far.
        applied: Option<Phase>,
        /// Stops after this phase, as asked.
        stop_after: Option<Phase>,
    },
    /// Leaves to renew.
    Leaves {
        /// Each leaf due.
        due: Vec<CertStatus>,
    },
}

/// Refuses a leaf renewal while a CA rotation is in progress; returns the state directory and
/// the rotation in progress.
fn prepare(inv: &Inventory, o: &RotateOptions) -> Result<(StateDir, Option<Rotation>), OpsError> {
    let state = StateDir::for_inventory(inv, o.state.as_deref());
    let rotation = pki::load_rotation(&state)?;
    if !o.ca
        && let Some(r) = &rotation
    {
        return Err(OpsError::RotationInProgress {
            rotation_file: state.rotation(),
            phase: r.phase,
            inventory: inv.path.clone(),
        });
    }
    Ok((state, rotation))
}

/// `--check`: what a run would do; writes nothing.
pub fn plan(inv: &Inventory, o: &RotateOptions) -> Result<RotatePlan, OpsError> {
    let (state, rotation) = prepare(inv, o)?;
    if o.ca {
        let applied = rotation.as_ref().and_then(|r| r.applied);
        return Ok(RotatePlan::Ca {
            rotation,
            applied,
            stop_after: o.stop_after,
        });
    }
    let rows = pki::status(inv, &state, OffsetDateTime::now_utc())?;
    let due = rows
        .into_iter()
        .filter(|r| r.host.is_some())
        .filter(|r| match o.expiring_within {
            None => true,
            Some(days) => r.reason.is_some() || r.days_left.is_none_or(|d| d <= i64::from(days)),
        })
        .collect();
    Ok(RotatePlan::Leaves { due })
}

/// Renews (or rotates the CA) and converges every host. An error before anything started
/// (state unreadable, hosts unreachable) is `Err`; once started, the outcome is in the run.
pub async fn rotate(inv: &Inventory, o: &RotateOptions, rep: &Arc<dyn Reporter>) -> Result<RotateRun, OpsError> {
    let (state, _) = prepare(inv, o)?;
    let conns = pool::connect_every(inv, &o.connect, "rotate-certs").await?;
    let session = Session {
        inv,
        state: &state,
        o,
        conns: &conns,
        rep,
        renewed: std::sync::atomic::AtomicUsize::new(0),
    };
    let started = Instant::now();
    let outcome = if o.ca {
        session.rotate_ca().await
    } else {
        session.rotate_leaves().await
    };
    let seconds = started.elapsed().as_secs_f64();
    pool::close_all(&conns).await;
    Ok(RotateRun {
        outcome,
        seconds,
        renewed: session.renewed.load(std::sync::atomic::Ordering::SeqCst),
        rotation_in_progress: pki::load_rotation(&state).ok().flatten(),
        client_bundle: state.current_bundle(),
    })
}

struct Session<'a> {
    inv: &'a Inventory,
    state: &'a StateDir,
    o: &'a RotateOptions,
    conns: &'a Conns,
    rep: &'a Arc<dyn Reporter>,
    /// Leaves renewed by this run (for `--json`).
    renewed: std::sync::atomic::AtomicUsize,
}

impl Session<'_> {
    fn info(&self, line: String) {
        self.rep.info(&line);
    }

    async fn rotate_leaves(&self) -> Result<(), OpsError> {
        let which = self.o.expiring_within.map_or(Renew::All, Renew::ExpiringWithin);
        let outcomes = pki::renew_leaves(self.inv, self.state, OffsetDateTime::now_utc(), which)?;
        let renewed = outcomes.iter().filter(|o| o.action != LeafAction::Kept).count();
        self.renewed.store(renewed, std::sync::atomic::Ordering::SeqCst);
        self.info(format!(
            "rotate-certs: {renewed} of {} certificate(s) renewed in {}",
            outcomes.len(),
            self.state.root().display()
        ));
        if renewed == 0 {
            return Ok(());
        }
        self.apply_and_check("leaves", Expect::StateLeaves).await
    }

    async fn rotate_ca(&self) -> Result<(), OpsError> {
        let mut r = pki::rotation::begin(self.inv, self.state, OffsetDateTime::now_utc())?;
        self.info(format!(
            "rotate-certs: CA {} → {}, next phase: {}",
            r.old_ca, r.new_ca, r.phase
        ));
        loop {
            let phase = r.phase;
            let step_started = Instant::now();
            self.info(format!("phase {phase}: {}", phase.describe()));
            let step = match phase {
                Phase::TrustBoth => self.apply_and_check(phase.as_str(), Expect::Listening).await,
                Phase::NewLeaves => self.apply_and_check(phase.as_str(), Expect::StateLeaves).await,
                Phase::TrustNew => self.apply_and_check(phase.as_str(), Expect::StateLeaves).await,
            };
            if let Err(e) = step {
                return Err(self.not_applied(phase, e));
            }
            self.info(format!(
                "phase {phase}: applied on every host in {:.1} s",
                step_started.elapsed().as_secs_f64()
            ));
            pki::rotation::mark_applied(self.state, &mut r, phase)?;
            if phase == Phase::TrustBoth {
                self.tell_clients();
            }
            if self.o.stop_after == Some(phase) {
                self.info(format!(
                    "rotate-certs: stopped after {phase} as asked; `pgha rotate-certs --ca {}` continues",
                    self.inv.path.display()
                ));
                return Ok(());
            }
            match phase {
                Phase::TrustBoth => pki::rotation::promote(self.state, &mut r)?,
                Phase::NewLeaves => {
                    pki::rotation::trust_new(self.state, &mut r)?;
                }
                Phase::TrustNew => {
                    pki::rotation::finish(self.state)?;
                    self.info(format!(
                        "rotate-certs: CA rotation complete; the old CA is archived in {}",
                        self.state.archived_ca_dir(&r.old_ca).display()
                    ));
                    return Ok(());
                }
            }
        }
    }

    /// `e`, with how to continue.
    fn not_applied(&self, phase: Phase, e: OpsError) -> OpsError {
        OpsError::PhaseNotApplied {
            phase,
            inventory: self.inv.path.clone(),
            source: Box::new(e),
        }
    }

    /// Where application clients find the bundle to trust during the overlap.
    fn tell_clients(&self) {
        if let Ok(Some(b)) = pki::current_bundle(self.state) {
            self.info(format!(
                "application clients: trust {} (old + new CA, the same as {}) before the new leaves go out; `pgha uri` points at it",
                self.state.current_bundle().display(),
                self.state.bundle(b.generation).display()
            ));
        }
    }

    /// Converges the hosts, drains PgBouncer's server connections, then waits until every
    /// endpoint presents what `expect` says.
    async fn apply_and_check(&self, what: &str, expect: Expect) -> Result<(), OpsError> {
        let opts = DeployOptions {
            state: self.o.state.clone(),
            verbose: self.o.verbose,
            quiet: self.o.quiet,
            connect: self.o.connect.clone(),
            ..DeployOptions::default()
        };
        converge(self.inv, &opts, self.conns, self.rep).await?;
        self.drain().await.map_err(OpsError::Drain)?;
        let n = self.check_endpoints(expect).await.map_err(OpsError::Endpoints)?;
        self.info(format!("{what}: {n} TLS endpoint(s) present the expected certificate"));
        Ok(())
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
