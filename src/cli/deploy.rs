//! `pgha deploy` and `pgha plan`: connect to every host once, check them (preflight), issue the
//! PKI, render each host's files for its Debian release, then run the embedded deploy playbook
//! (or only plan it).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use futures::future::join_all;

use super::report::{self, exit};
use super::run::{RemoteArgs, execute, limit, runtime};
use crate::deploy::{self, preflight};
use crate::engine::{Options, PreOpened};
use crate::facts;
use crate::inventory::{self, Inventory, LoadError};
use crate::playbook;
use crate::render::{Target, TemplateSource};
use crate::transport::{self, Conn, Endpoint};

/// Arguments of `pgha deploy`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  pgha deploy inventory/lab.yaml\n  pgha deploy inventory/prod.yaml --check --diff     # same as pgha plan\n  pgha deploy inventory/prod.yaml --limit pgbouncer\n  pgha deploy inventory/prod.yaml --json > deploy.jsonl\n\nExit codes: 0 deployed (or planned), 1 a host failed or preflight refused, 3 invalid\ninventory, 130 interrupted (re-run to converge)."
)]
pub struct DeployArgs {
    /// The inventory file.
    pub inventory: PathBuf,
    /// Plan only: print what would change on each host, change nothing.
    #[arg(long)]
    pub check: bool,
    /// With --check, show unified diffs of files (secrets masked).
    #[arg(long)]
    pub diff: bool,
    /// State directory of the PKI and secrets (default: .pgha beside the inventory).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Directory of templates overriding the built-in ones.
    #[arg(long)]
    pub templates: Option<PathBuf>,
    /// Directory of playbooks overriding the embedded ones.
    #[arg(long)]
    pub playbooks: Option<PathBuf>,
    /// Take over PostgreSQL or etcd data found on the hosts that pgha did not configure
    /// (otherwise the deploy refuses to touch it).
    #[arg(long)]
    pub adopt_existing_data: bool,
    /// Connection and output options.
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// Arguments of `pgha plan`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  pgha plan inventory/prod.yaml\n  pgha plan inventory/prod.yaml --limit node1,node2\n\nPrints per host what `pgha deploy` would change, with diffs (secrets masked); changes\nnothing on the hosts. Exit codes as pgha deploy."
)]
pub struct PlanArgs {
    /// The inventory file.
    pub inventory: PathBuf,
    /// State directory of the PKI and secrets (default: .pgha beside the inventory).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Connection and output options.
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// Runs `pgha plan`.
pub fn plan(args: &PlanArgs) -> u8 {
    deploy(&DeployArgs {
        inventory: args.inventory.clone(),
        check: true,
        diff: true,
        state: args.state.clone(),
        templates: None,
        playbooks: None,
        adopt_existing_data: false,
        remote: args.remote.clone(),
    })
}

/// Loads the inventory, printing warnings; `Err` is the exit code.
pub fn load_inventory(path: &std::path::Path, quiet_warnings: bool) -> Result<Inventory, u8> {
    match inventory::load(path) {
        Ok(l) => {
            if !quiet_warnings {
                for w in &l.warnings {
                    report::diagnostic(w);
                }
            }
            Ok(l.inventory)
        }
        Err(LoadError::Invalid { errors, .. }) => {
            for d in &errors {
                report::diagnostic(d);
            }
            Err(exit::INVALID_INPUT)
        }
        Err(LoadError::Read(e)) => {
            report::error(&e);
            Err(exit::FAILED)
        }
    }
}

/// Opens one connection per host (in parallel); unreachable hosts come back as errors.
pub async fn connect_all(
    inv: &Inventory,
    remote: &RemoteArgs,
) -> (BTreeMap<String, Conn>, BTreeMap<String, transport::TransportError>) {
    let wanted: Vec<_> = inv
        .hosts
        .iter()
        .filter(|h| remote.limit.is_empty() || remote.limit.iter().any(|l| l == h.name.as_str()))
        .collect();
    let results = join_all(wanted.iter().map(|h| async move {
        let ep = Endpoint::from_host(h, remote.accept_new_host_keys);
        (h.name.to_string(), transport::connect(remote.transport, ep).await)
    }))
    .await;
    let mut ok = BTreeMap::new();
    let mut err = BTreeMap::new();
    for (name, r) in results {
        match r {
            Ok(c) => {
                ok.insert(name, c);
            }
            Err(e) => {
                err.insert(name, e);
            }
        }
    }
    (ok, err)
}

/// Runs `pgha deploy`.
pub fn deploy(args: &DeployArgs) -> u8 {
    let inv = match load_inventory(&args.inventory, args.remote.json) {
        Ok(i) => i,
        Err(code) => return code,
    };
    for l in &args.remote.limit {
        if inv.host(l).is_none() {
            report::error(format!("--limit {l}: no such host in {}", args.inventory.display()));
            return exit::INVALID_INPUT;
        }
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let conns = match rt.block_on(connect_or_report(&inv, &args.remote, "deploy")) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let templates = match &args.templates {
        Some(d) => TemplateSource::Dir(d.clone()),
        None => TemplateSource::Embedded,
    };
    let code = converge(
        &rt,
        &Converge {
            inv: &inv,
            state: args.state.as_deref(),
            templates: &templates,
            playbooks: args.playbooks.as_deref(),
            check: args.check,
            diff: args.diff,
            adopt_existing_data: args.adopt_existing_data,
            remote: &args.remote,
        },
        &conns,
    );
    rt.block_on(close_all(&conns));
    code
}

/// Connects to every host (or `--limit`); when some are unreachable, prints why and returns
/// the exit code (nothing was changed).
pub async fn connect_or_report(inv: &Inventory, remote: &RemoteArgs, what: &str) -> Result<BTreeMap<String, Conn>, u8> {
    let (conns, errors) = connect_all(inv, remote).await;
    if errors.is_empty() {
        return Ok(conns);
    }
    for e in errors.values() {
        report::error(e);
    }
    report::info(format!(
        "{what}: {} host(s) unreachable; nothing was changed. Fix them, or leave them out with --limit.",
        errors.len()
    ));
    close_all(&conns).await;
    Err(exit::FAILED)
}

/// One convergence run of the deploy playbook over open connections.
pub struct Converge<'a> {
    /// The inventory.
    pub inv: &'a Inventory,
    /// `--state DIR`.
    pub state: Option<&'a std::path::Path>,
    /// Where templates come from.
    pub templates: &'a TemplateSource,
    /// `--playbooks DIR`.
    pub playbooks: Option<&'a std::path::Path>,
    /// Plan only.
    pub check: bool,
    /// Show diffs (with `check`).
    pub diff: bool,
    /// `--adopt-existing-data`.
    pub adopt_existing_data: bool,
    /// Connection and output options.
    pub remote: &'a RemoteArgs,
}

/// Preflight, PKI (issuing what is missing or stale), rendering, then the deploy playbook on
/// `conns`. Returns the exit code; the connections stay open.
pub fn converge(rt: &tokio::runtime::Runtime, c: &Converge<'_>, conns: &BTreeMap<String, Conn>) -> u8 {
    let inv = c.inv;
    let pb = match playbook::load("deploy", c.playbooks, inv) {
        Ok(p) => p,
        Err(e) => {
            report::error(&e);
            return exit::INVALID_INPUT;
        }
    };
    let (material, verifiers) = match super::render::material_from_state(inv, c.state) {
        Ok(m) => m,
        Err(e) => {
            report::error(format!("{e:#}"));
            return exit::FAILED;
        }
    };
    // Preflight: one probe per host (it also tells each host's Debian release).
    let q = preflight::query(inv);
    let gathered = rt.block_on(join_all(conns.iter().map(|(name, conn)| {
        let q = q.clone();
        async move { (name.clone(), facts::gather(conn.as_ref(), &q).await) }
    })));
    let mut all_facts = BTreeMap::new();
    for (name, r) in gathered {
        match r {
            Ok(f) => {
                all_facts.insert(name, f);
            }
            Err(e) => {
                report::error(&e);
                return exit::FAILED;
            }
        }
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let problems = preflight::check_all(inv, &all_facts, now, c.adopt_existing_data);
    if !problems.is_empty() {
        for p in &problems {
            report::error(p);
        }
        report::info(format!("preflight: {} problem(s); nothing was changed", problems.len()));
        return exit::FAILED;
    }
    let targets: BTreeMap<String, Target> = all_facts
        .iter()
        .filter_map(|(h, f)| preflight::target(f).map(|t| (h.clone(), t)))
        .collect();
    let mut releases: Vec<&str> = targets.values().map(|t| t.as_str()).collect();
    releases.sort();
    releases.dedup();
    if !c.remote.json {
        report::info(format!(
            "preflight: {} host(s) ready ({})",
            targets.len(),
            releases.join(", ")
        ));
    }
    let inputs = match deploy::host_inputs(
        inv,
        &material,
        &verifiers.auth,
        &verifiers.verify,
        &targets,
        c.templates,
    ) {
        Ok(i) => i,
        Err(e) => {
            report::error(&e);
            return exit::FAILED;
        }
    };
    let opts = Options {
        check: c.check,
        diff: c.diff,
        verbose: c.remote.verbose,
        limit: limit(&c.remote.limit),
    };
    let connector = PreOpened {
        conns: conns.clone(),
        errors: std::sync::Mutex::new(BTreeMap::new()),
    };
    let (_recap, code) = execute(rt, inv, &pb, &inputs, &opts, c.remote, &connector);
    code
}

/// Closes every connection (errors ignored: the run is over).
pub async fn close_all(conns: &BTreeMap<String, Conn>) {
    join_all(conns.values().map(|c| {
        let c: Arc<dyn transport::Transport> = c.clone();
        async move {
            let _ = c.close().await;
        }
    }))
    .await;
}
