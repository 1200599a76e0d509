//! `pgha deploy` and `pgha plan`: connect to every host once, check them (preflight), issue the
//! PKI, render each host's files for its Debian release, then run the embedded deploy playbook
//! (or only plan it: then nothing is written, locally or on the hosts, and the plan also says
//! what the state directory and the cluster itself would get). [`converge`] is the same over already open connections (rotate-certs
//! converges several times over one pool).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use futures::future::join_all;

use super::pool::{self, Conns};
use super::material::Issuance;
use super::members::{self, MemberPlan};
use super::plan::{self, ClusterPlan};
use super::{Connect, OpsError, Reporter, material, run};
use crate::deploy::{self, preflight};
use crate::engine::{Options, PreOpened, Recap};
use crate::render::paths;
use crate::facts;
use crate::inventory::Inventory;
use crate::playbook;
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

/// Connects to every host (or `--limit`), converges them, closes the connections.
pub async fn deploy(inv: &Inventory, o: &DeployOptions, rep: &Arc<dyn Reporter>) -> Result<Deployed, OpsError> {
    o.connect.check_limit(inv)?;
    let conns = pool::connect_every(inv, &o.connect, "deploy").await?;
    let result = converge(inv, o, &conns, rep).await;
    pool::close_all(&conns).await;
    result
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
    let pb = playbook::load("deploy", o.playbooks.as_deref(), inv)?;
    let (material, verifiers, issuance) = if o.check {
        let (m, v, i) = material::preview(inv, o.state.as_deref())?;
        (m, v, Some(i))
    } else {
        let (m, v) = material::from_state(inv, o.state.as_deref(), rep.as_ref())?;
        (m, v, None)
    };
    // Preflight: one probe per host (it also tells each host's Debian release).
    let q = preflight::query(inv);
    let gathered = join_all(conns.iter().map(|(name, conn)| {
        let q = q.clone();
        async move { (name.clone(), facts::gather(conn.as_ref(), &q).await) }
    }))
    .await;
    let mut all_facts = BTreeMap::new();
    for (name, r) in gathered {
        all_facts.insert(name, r?);
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let problems = preflight::check_all(inv, &all_facts, now, o.adopt_existing_data);
    if !problems.is_empty() {
        return Err(OpsError::Preflight { problems });
    }
    let targets: BTreeMap<String, Target> = all_facts
        .iter()
        .filter_map(|(h, f)| preflight::target(f).map(|t| (h.clone(), t)))
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
    let remote_ca = paths::ca_bundle(&material.ca_bundle_file);
    let state_root = crate::pki::StateDir::for_inventory(inv, o.state.as_deref()).root().to_path_buf();
    let record = members::read_record(&state_root)?;
    let live = members::read_live(inv, conns, &remote_ca).await;
    let member_plan = members::plan(inv, &live, &record);
    check_members(inv, o, &member_plan, rep.as_ref())?;
    let mut material = material;
    material.etcd_bootstrap = member_plan
        .bootstrap
        .iter()
        .filter_map(|(n, b)| Some((inv.host(n)?.name.clone(), b.clone())))
        .collect();
    if !o.check && !member_plan.etcd_join.is_empty() {
        // The joiners' bootstrap is recorded before they start: an interrupted run renders
        // the same config again.
        let mut r = record.clone();
        r.etcd_bootstrap.extend(member_plan.bootstrap.clone());
        members::write_record(&state_root, &r)?;
    }
    let mut inputs = deploy::host_inputs(
        inv,
        &material,
        &verifiers.auth,
        &verifiers.verify,
        &targets,
        &o.templates,
    )?;
    for (host, input) in inputs.iter_mut() {
        let extra = serde_json::to_value(member_plan.vars(host)).expect("plain fields serialize");
        if let (Some(vars), serde_json::Value::Object(extra)) = (input.vars.as_object_mut(), extra) {
            vars.extend(extra);
        }
    }
    let opts = Options {
        check: o.check,
        diff: o.diff,
        verbose: o.verbose,
        limit: o.connect.limit_set(),
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
        {
            if member_plan.removes() {
                let removal = members::Removal {
                    inv,
                    conns,
                    record: &record,
                    remote_ca: remote_ca.clone(),
                    connect: &o.connect,
                    rep,
                };
                members::remove_departed(&removal, &member_plan).await?;
            }
            if o.connect.limit.is_empty() {
                members::write_record(&state_root, &members::record_after(inv, &member_plan))?;
            }
        }
        None
    };
    Ok(Deployed {
        recap,
        issuance,
        cluster,
    })
}

/// Refuses a membership change that is unsafe (the plan's refusals), that `--limit` would do
/// half, or that removes a member without `--remove-members`; otherwise says what changes.
fn check_members(inv: &Inventory, o: &DeployOptions, p: &MemberPlan, rep: &dyn super::Reporter) -> Result<(), OpsError> {
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
