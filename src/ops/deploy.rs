//! `pgha deploy` and `pgha plan`: connect to every host once while the PKI is issued and each
//! host's files rendered (for Debian 13 until its probe says otherwise), probe every host ONCE
//! for preflight and the playbook's facts and checks together, then run the embedded deploy
//! playbook from those facts (or only plan it: then nothing is written, locally or on the
//! hosts, and the plan also says what the state directory and the cluster itself would get).
//! A converged cluster costs one round trip per host after connecting. [`converge`] is the
//! same over already open connections (rotate-certs converges several times over one pool).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;

use super::material::Issuance;
use super::members::{self, MemberPlan};
use super::plan::{self, ClusterPlan};
use super::pool::{self, Conns};
use super::{Connect, OpsError, Reporter, material, run};
use crate::deploy::{self, preflight};
use crate::engine::{self, Gathered, HostInput, Options, PreOpened, Recap};
use crate::facts;
use crate::inventory::Inventory;
use crate::playbook;
use crate::render::paths;
use crate::render::{Target, TemplateSource};

/// What a deploy (or its plan) does besides the inventory.
#[derive(Clone, Debug, Default)]
pub struct DeployOptions {
    /// State directory of the PKI and secrets (default beside the inventory).
    pub state: Option<PathBuf>,
    /// Where templates come from.
    pub templates: TemplateSource,
    /// Directory of playbooks overriding the embedded ones.
    pub playbooks: Option<PathBuf>,
    /// Plan only: change nothing on the hosts.
    pub check: bool,
    /// With `check`, diffs of files (secrets masked).
    pub diff: bool,
    /// Take over PostgreSQL or etcd data pgha did not configure.
    pub adopt_existing_data: bool,
    /// Report every command sent.
    pub verbose: bool,
    /// No preflight summary line (JSON output).
    pub quiet: bool,
    /// How to reach the hosts.
    pub connect: Connect,
    /// Carry out membership removals the inventory asks for (members it no longer lists):
    /// without it, a deploy whose plan removes a member refuses before changing anything.
    pub remove_members: bool,
    /// With `remove_members`: delete the departing members' data instead of keeping it.
    pub purge: bool,
}

/// What a deploy did, or with `check`, what it would do.
#[derive(Debug)]
pub struct Deployed {
    /// The engine's recap.
    pub recap: Recap,
    /// With `check`: what the state directory would get (nothing was written).
    pub issuance: Option<Issuance>,
    /// With `check`: what would change in the cluster itself (DCS, rolling restart).
    pub cluster: Option<ClusterPlan>,
}

/// Connects to every host (or `--limit`), converges them, closes the connections. The local
/// work (PKI, rendering) runs on a thread of its own while the connections open.
pub async fn deploy(inv: &Inventory, o: &DeployOptions, rep: &Arc<dyn Reporter>) -> Result<Deployed, OpsError> {
    o.connect.check_limit(inv)?;
    let start = Instant::now();
    let local = {
        let (inv, o, rep) = (inv.clone(), o.clone(), rep.clone());
        tokio::task::spawn_blocking(move || prepare(&inv, &o, rep.as_ref()))
    };
    let connect = async {
        let conns = pool::connect_every(inv, &o.connect, "deploy").await;
        (conns, start.elapsed())
    };
    let ((conns, connected), local) = tokio::join!(connect, local);
    let local = match local {
        Ok(l) => l,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    let conns = conns?;
    let result = match local {
        Ok(local) => {
            if o.verbose {
                rep.info(&format!(
                    "deploy: connected in {:.3} s; PKI and rendering took {:.3} s meanwhile",
                    connected.as_secs_f64(),
                    local.took.as_secs_f64()
                ));
            }
            converge_prepared(inv, o, &conns, local, rep).await
        }
        Err(e) => Err(e),
    };
    pool::close_all(&conns).await;
    result
}

/// What a converge computes before it touches a host: the playbook, the PKI material (issued,
/// or with `check` only previewed) and each host's input rendered for the guessed target
/// (Debian 13; the probe corrects a host that runs another release).
struct Prepared {
    pb: playbook::Playbook,
    material: crate::render::Material,
    verifiers: material::Verifiers,
    issuance: Option<Issuance>,
    inputs: BTreeMap<String, HostInput>,
    state_root: PathBuf,
    record: members::Record,
    took: Duration,
}

/// The local half of a converge (no I/O on hosts).
fn prepare(inv: &Inventory, o: &DeployOptions, rep: &dyn Reporter) -> Result<Prepared, OpsError> {
    let start = Instant::now();
    let pb = playbook::load("deploy", o.playbooks.as_deref(), inv)?;
    let (material, verifiers, issuance) = if o.check {
        let (m, v, i) = material::preview(inv, o.state.as_deref())?;
        (m, v, Some(i))
    } else {
        let (m, v) = material::from_state(inv, o.state.as_deref(), rep)?;
        (m, v, None)
    };
    let state_root = crate::pki::StateDir::for_inventory(inv, o.state.as_deref())
        .root()
        .to_path_buf();
    let record = members::read_record(&state_root)?;
    // The membership plan when the cluster agrees with the record (every deploy but one that
    // changes members): render with it now; the probe's answers confirm it or re-render.
    let predicted = members::plan(inv, &members::Live::default(), &record);
    let mut material = material;
    material.etcd_bootstrap = bootstrap_of(inv, &predicted);
    let inputs = inputs_for(inv, &material, &verifiers, &o.templates, &BTreeMap::new(), &predicted)?;
    Ok(Prepared {
        pb,
        material,
        verifiers,
        issuance,
        inputs,
        state_root,
        record,
        took: start.elapsed(),
    })
}

/// Each host's etcd bootstrap (`initial-cluster-state`, `initial-cluster`) from a membership plan.
fn bootstrap_of(inv: &Inventory, p: &MemberPlan) -> BTreeMap<crate::inventory::HostName, crate::render::EtcdBootstrap> {
    p.bootstrap
        .iter()
        .filter_map(|(n, b)| Some((inv.host(n)?.name.clone(), b.clone())))
        .collect()
}

/// Every host's input for its release (`targets`, Debian 13 when unknown), with the membership
/// plan's variables.
fn inputs_for(
    inv: &Inventory,
    material: &crate::render::Material,
    verifiers: &material::Verifiers,
    templates: &TemplateSource,
    targets: &BTreeMap<String, Target>,
    plan: &MemberPlan,
) -> Result<BTreeMap<String, HostInput>, OpsError> {
    let mut inputs = deploy::host_inputs(inv, material, &verifiers.auth, &verifiers.verify, targets, templates)?;
    for (host, input) in inputs.iter_mut() {
        let extra = serde_json::to_value(plan.vars(host)).expect("plain fields serialize");
        if let (Some(vars), serde_json::Value::Object(extra)) = (input.vars.as_object_mut(), extra) {
            vars.extend(extra);
        }
    }
    Ok(inputs)
}

/// Preflight, PKI (issuing what is missing or stale), rendering, then the deploy playbook on
/// `conns`. The connections stay open. With `check`, nothing is written: the PKI material is
/// computed in memory ([`material::preview`]) and the cluster-level changes are planned too.
pub async fn converge(
    inv: &Inventory,
    o: &DeployOptions,
    conns: &Conns,
    rep: &Arc<dyn Reporter>,
) -> Result<Deployed, OpsError> {
    let local = prepare(inv, o, rep.as_ref())?;
    converge_prepared(inv, o, conns, local, rep).await
}

/// One probe per host: preflight's facts together with everything the engine's first probe
/// reads (`engine::first_query` of the host's input). A host whose probe shows another
/// release than the input was rendered for is rendered again and probed once more.
async fn probe_all(
    inv: &Inventory,
    pb: &playbook::Playbook,
    conns: &Conns,
    inputs: &BTreeMap<String, HostInput>,
) -> Vec<(String, Result<facts::Facts, facts::FactsError>)> {
    let pre = preflight::query(inv);
    let empty = HostInput::default();
    join_all(conns.iter().map(|(name, conn)| {
        let mut q = pre.clone();
        if let Some(host) = inv.host(name) {
            q.merge(&engine::first_query(inv, pb, host, inputs.get(name).unwrap_or(&empty)));
        }
        async move { (name.clone(), facts::gather(conn.as_ref(), &q).await) }
    }))
    .await
}

/// The converge after [`prepare`].
async fn converge_prepared(
    inv: &Inventory,
    o: &DeployOptions,
    conns: &Conns,
    local: Prepared,
    rep: &Arc<dyn Reporter>,
) -> Result<Deployed, OpsError> {
    let Prepared {
        pb,
        mut material,
        verifiers,
        issuance,
        inputs: guessed,
        state_root,
        record,
        ..
    } = local;
    let remote_ca = paths::ca_bundle(&material.ca_bundle_file);
    let probe_start = Instant::now();
    // The controller's clock when the probes leave: each host prints its own at the start of
    // its probe, which then waits for the checks (and read_live runs meanwhile), so a clock
    // read after them would show a skew that is not there.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // The one probe per host, and the cluster's own view of its members, at once.
    let (probed, live) = tokio::join!(
        probe_all(inv, &pb, conns, &guessed),
        members::read_live(inv, conns, &remote_ca)
    );
    let mut all_facts = BTreeMap::new();
    for (name, r) in probed {
        all_facts.insert(name, (r?, 1));
    }
    let facts_of = |all: &BTreeMap<String, (facts::Facts, u32)>| -> BTreeMap<String, facts::Facts> {
        all.iter().map(|(h, (f, _))| (h.clone(), f.clone())).collect()
    };
    let problems = preflight::check_all(inv, &facts_of(&all_facts), now, o.adopt_existing_data);
    if !problems.is_empty() {
        return Err(OpsError::Preflight { problems });
    }
    let targets: BTreeMap<String, Target> = all_facts
        .iter()
        .filter_map(|(h, (f, _))| preflight::target(f).map(|t| (h.clone(), t)))
        .collect();
    let mut releases: Vec<&str> = targets.values().map(|t| t.as_str()).collect();
    releases.sort();
    releases.dedup();
    if !o.quiet {
        rep.info(&format!(
            "preflight: {} host(s) ready ({})",
            targets.len(),
            releases.join(", ")
        ));
    }
    let member_plan = members::plan(inv, &live, &record);
    check_members(inv, o, &member_plan, rep.as_ref())?;
    material.etcd_bootstrap = bootstrap_of(inv, &member_plan);
    if !o.check && !member_plan.etcd_join.is_empty() {
        // The joiners' bootstrap is recorded before they start: an interrupted run renders
        // the same config again.
        let mut r = record.clone();
        r.etcd_bootstrap.extend(member_plan.bootstrap.clone());
        members::write_record(&state_root, &r)?;
    }
    // Rendered again for each host's release and the live membership plan (cheap); a host whose
    // input differs from the guessed one (another release, a membership change) is probed again.
    let inputs = inputs_for(inv, &material, &verifiers, &o.templates, &targets, &member_plan)?;
    let again: Conns = conns
        .iter()
        .filter(|(h, _)| {
            let (a, b) = (guessed.get(*h), inputs.get(*h));
            !a.zip(b)
                .is_some_and(|(a, b)| a.rendered == b.rendered && a.vars == b.vars)
        })
        .map(|(h, c)| (h.clone(), c.clone()))
        .collect();
    for (name, r) in probe_all(inv, &pb, &again, &inputs).await {
        all_facts.insert(name, (r?, 2));
    }
    if o.verbose {
        rep.info(&format!(
            "deploy: facts and checks of {} host(s) in {:.3} s ({} probed twice: another release than {} or a membership change)",
            all_facts.len(),
            probe_start.elapsed().as_secs_f64(),
            again.len(),
            GUESS.as_str()
        ));
    }
    let opts = Options {
        check: o.check,
        diff: o.diff,
        verbose: o.verbose,
        limit: o.connect.limit_set(),
        gathered: all_facts
            .into_iter()
            .map(|(h, (facts, round_trips))| (h, Gathered { facts, round_trips }))
            .collect(),
    };
    let connector = PreOpened {
        conns: conns.clone(),
        errors: std::sync::Mutex::new(BTreeMap::new()),
    };
    let recap = run::execute(inv, &pb, &inputs, &opts, &connector, rep).await?;
    let cluster = if o.check {
        let mut c = plan::read_cluster_plan(inv, conns, &inputs, &remote_ca).await;
        c.members = member_plan;
        Some(c)
    } else {
        if member_plan.removes() {
            let removal = members::Removal {
                inv,
                conns,
                record: &record,
                remote_ca: remote_ca.clone(),
                purge: o.purge,
                connect: &o.connect,
                rep,
            };
            members::remove_departed(&removal, &member_plan).await?;
        }
        if o.connect.limit.is_empty() {
            members::write_record(&state_root, &members::record_after(inv, &member_plan))?;
        }
        None
    };
    Ok(Deployed {
        recap,
        issuance,
        cluster,
    })
}

/// The release each host's input is rendered for before its probe says which it runs.
const GUESS: Target = Target::Debian13;

/// Refuses a membership change that is unsafe (the plan's refusals), that `--limit` would do
/// half, or that removes a member without `--remove-members`; otherwise says what changes.
fn check_members(
    inv: &Inventory,
    o: &DeployOptions,
    p: &MemberPlan,
    rep: &dyn super::Reporter,
) -> Result<(), OpsError> {
    if !p.refusals.is_empty() {
        return Err(OpsError::Refused(format!(
            "membership change refused; nothing was changed:\n  {}",
            p.refusals.join("\n  ")
        )));
    }
    if p.is_empty() || o.check {
        return Ok(());
    }
    if !o.connect.limit.is_empty() {
        return Err(OpsError::Usage(format!(
            "members join or leave ({}); that needs a deploy of every host: run it without --limit",
            p.lines().join("; ")
        )));
    }
    if p.removes() && !o.remove_members {
        return Err(OpsError::Usage(format!(
            "the inventory no longer lists some members; nothing was changed:\n  {}\n\n  hint: check `pgha plan {}`, then run `pgha deploy {} --remove-members`",
            p.lines().join("\n  "),
            inv.path.display(),
            inv.path.display()
        )));
    }
    for l in p.lines() {
        rep.info(&format!("members: {l}"));
    }
    Ok(())
}
