//! `pgha drill`: what a drill would do (the preview shown without `--yes`), and running it:
//! credentials, the writer's target, Ctrl-C (undo the fault, then stop), progress through the
//! reporter. The drill itself is `crate::drill::sequence` (`crate::drill::restore` for the
//! restore drill, `crate::drill::entry` for entry-loss).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::{OpsError, Reporter, verify};
use crate::drill::cluster::Hosts;
use crate::drill::restore_report::RestoreReport;
use crate::drill::sequence::{self, LabTarget, Setup};
use crate::drill::writer::{self, SqlTarget};
use crate::drill::{Kind, Report, RunId, entry, plan, restore};
use crate::inventory::{Host, Inventory, Role};
use crate::lab::LabPaths;
use crate::lab::state::LabState;
use crate::render::paths;
use crate::transport;

/// What `pgha drill` runs.
#[derive(Clone, Debug)]
pub struct DrillOptions {
    /// Which drill.
    pub kind: Kind,
    /// State directory (default beside the inventory).
    pub state: Option<PathBuf>,
    /// SSH implementation.
    pub transport: transport::Kind,
    /// Trust the host key of a host seen for the first time.
    pub accept_new_host_keys: bool,
    /// Where the lab lives (the inventory may describe it).
    pub lab: LabPaths,
    /// Restore drill: restore this backup instead of taking one.
    pub set: Option<String>,
    /// Restore drill: leave the scratch instance running at the end.
    pub keep: bool,
}

/// A drill checked against the inventory, before anything runs.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The lab's machine names when the inventory is the lab that is up.
    pub lab_names: Option<BTreeMap<String, String>>,
    /// The database behind `<db>_rw` / `<db>_ro`.
    pub db: String,
}

/// The database behind `<db>_rw` / `<db>_ro` (the inventory's first, as `pgha verify` uses).
fn database(inv: &Inventory) -> String {
    inv.postgres
        .databases
        .first()
        .map_or_else(|| "postgres".to_string(), |d| d.name.clone())
}

/// The lab's machine names when `inv` describes the lab that is up.
fn lab_names(inv: &Inventory, lab: &LabPaths, rep: &dyn Reporter) -> Option<BTreeMap<String, String>> {
    match LabState::load(&lab.state()) {
        Ok(Some(state)) => plan::lab_names(inv, &state),
        Ok(None) => None,
        Err(e) => {
            rep.info(&format!("warning: {e}; treating the hosts as real hosts"));
            None
        }
    }
}

/// Checks that this inventory can run the drill ([`OpsError::Usage`] if not).
pub fn prepare(inv: &Inventory, o: &DrillOptions, rep: &dyn Reporter) -> Result<Prepared, OpsError> {
    let names = lab_names(inv, &o.lab, rep);
    plan::check(o.kind, inv, names.is_some()).map_err(|e| OpsError::Usage(e.to_string()))?;
    Ok(Prepared {
        lab_names: names,
        db: database(inv),
    })
}

/// What the drill would do, line by line (shown without `--yes`).
pub fn preview(inv: &Inventory, o: &DrillOptions, p: &Prepared) -> Vec<String> {
    match (&inv.vip, o.kind) {
        (Some(vip), Kind::EntryLoss) => entry::preview(inv, vip, &p.db, p.lab_names.is_some()),
        (_, Kind::Restore) => restore_preview(inv, o, &p.db),
        _ => plan::preview(o.kind, inv, &p.db, p.lab_names.is_some()),
    }
}

/// Runs the entry-loss drill: the writer on the VIP, the VIP's holder crashed (lab) or its
/// services stopped. Ctrl-C undoes the fault before the report comes back (`interrupted`).
pub async fn run_entry_loss(
    inv: &Inventory,
    o: &DrillOptions,
    p: Prepared,
    rep: &Arc<dyn Reporter>,
) -> Result<entry::EntryReport, OpsError> {
    if p.lab_names.is_some() {
        crate::lab::preflight::require_root()?;
    }
    let Some(vip) = &inv.vip else {
        return Err(OpsError::Usage(plan::PlanError::NeedsVip.to_string()));
    };
    let creds = verify::credentials(inv, o.state.as_deref())?;
    let ca = creds.state.bundle(creds.bundle.generation);
    let conninfo = |alias: String| {
        let mut info = crate::conninfo::ConnInfo::new();
        for (k, v) in [
            ("host", vip.client_name()),
            ("hostaddr", vip.address.to_string()),
            ("port", inv.pgbouncer.port.get().to_string()),
            ("dbname", alias),
            ("user", paths::VERIFY_USER.to_string()),
            ("sslmode", "verify-full".to_string()),
            ("sslrootcert", ca.display().to_string()),
            ("connect_timeout", "2".to_string()),
            ("application_name", "pgha-drill".to_string()),
        ] {
            info = info.with(k, v).map_err(|e| OpsError::InvalidInput(e.to_string()))?;
        }
        Ok::<_, OpsError>(info.to_keyword_string())
    };
    let sql = Arc::new(SqlTarget {
        program: "psql".into(),
        rw: conninfo(format!("{}_rw", p.db))?,
        ro: conninfo(format!("{}_ro", p.db))?,
        password: creds.password,
    });
    let (cancel, listener) = cancel_on_interrupt(
        rep,
        "interrupt: the drill undoes its fault, then exits",
        "interrupt: still undoing the fault; wait",
    );
    let progress = rep.clone();
    let setup = entry::EntrySetup {
        inv: inv.clone(),
        run: RunId::generate(),
        hosts: Arc::new(Hosts::new(inv, o.transport, o.accept_new_host_keys)),
        lab: p.lab_names.map(|names| (o.lab.clone(), names)),
        sql,
        progress: Arc::new(move |line: &str| progress.info(line)),
        cancel,
    };
    rep.info(&format!(
        "drill entry-loss: run {} on {} ({}), VIP {}",
        setup.run,
        if setup.lab.is_some() { "the lab" } else { "real hosts" },
        inv.path.display(),
        vip.address
    ));
    let report = entry::run(&setup).await;
    setup.hosts.close_all().await;
    listener.abort();
    Ok(report)
}

/// Runs the drill. Ctrl-C undoes the fault before the report comes back (`interrupted`).
pub async fn run(inv: &Inventory, o: &DrillOptions, p: Prepared, rep: &Arc<dyn Reporter>) -> Result<Report, OpsError> {
    if p.lab_names.is_some() {
        crate::lab::preflight::require_root()?;
    }
    let creds = verify::credentials(inv, o.state.as_deref())?;
    let Some(bouncer) = inv.hosts_with(Role::Pgbouncer).next() else {
        return Err(OpsError::InvalidInput("the inventory has no pgbouncer host".into()));
    };
    let db = p.db;
    let sql = bouncer_sql(inv, bouncer, &creds, &db);
    let (cancel, listener) = cancel_on_interrupt(
        rep,
        "interrupt: the drill undoes its fault, then exits (this can take a minute)",
        "interrupt: still undoing the fault; wait",
    );
    let progress = rep.clone();
    let setup = Setup {
        hosts: Hosts::new(inv, o.transport, o.accept_new_host_keys),
        kind: o.kind,
        run: RunId::generate(),
        lab: p.lab_names.map(|names| LabTarget {
            paths: o.lab.clone(),
            names,
        }),
        sql,
        db,
        remote_ca: paths::ca_bundle(&creds.bundle.file_name()),
        progress: Arc::new(move |line: &str| progress.info(line)),
        cancel,
        pace: sequence::Pace::default(),
        inv: inv.clone(),
    };
    rep.info(&format!(
        "drill {}: run {} on {} ({})",
        setup.kind,
        setup.run,
        if setup.lab.is_some() { "the lab" } else { "real hosts" },
        inv.path.display()
    ));
    let report = sequence::run(&setup).await;
    listener.abort();
    Ok(report)
}

/// What the restore drill would do (shown without `--yes`).
fn restore_preview(inv: &Inventory, o: &DrillOptions, db: &str) -> Vec<String> {
    let (repo, stanza) = inv.backup.as_ref().map_or(("-".to_string(), "-".to_string()), |b| {
        (b.host.to_string(), b.stanza.clone())
    });
    let bouncer = inv.hosts_with(Role::Pgbouncer).next().map_or("-", |h| h.name.as_str());
    let nodes: Vec<&str> = inv.hosts_with(Role::Postgres).map(|h| h.name.as_str()).collect();
    vec![
        format!("pgha drill restore ({}): the cluster itself is not touched", inv.path.display()),
        format!("  1. check the cluster is healthy; pick an asynchronous replica among {} for the scratch instance; remove a scratch instance an earlier run left", nodes.join(", ")),
        format!("  2. commit numbered rows into pgha_verify.drill_rows every 100 ms through {bouncer} {db}_rw"),
        match &o.set {
            Some(l) => format!("  3. use backup {l} of stanza {stanza} on {repo}"),
            None => format!("  3. take a backup on {repo} (incr, or full when the stanza has none) while the writer runs"),
        },
        "  4. read T on the primary's clock with rows acknowledged on both sides; pg_switch_wal() and wait until pg_stat_archiver has the segment holding T".to_string(),
        format!(
            "  5. on the replica's host: pgbackrest restore --type=time --target=T --target-action=promote --archive-mode=off into {} (about the backup's size of disk), then a scratch PostgreSQL as unit {} on socket {} port {} (no TCP, no archiving, no replication)",
            restore::SCRATCH_DIR,
            restore::UNIT,
            restore::SOCKET_DIR,
            restore::PORT
        ),
        "  6. report RTO (restore start → queries answered), bytes, rows acknowledged before T against rows present (RPO 0 expected), pg_amcheck".to_string(),
        if o.keep {
            "  7. keep the scratch instance (--keep): remove it later with --clean".to_string()
        } else {
            "  7. stop and remove the scratch instance (also on failure and Ctrl-C; a re-run removes leftovers)".to_string()
        },
    ]
}

/// Runs the restore drill. Ctrl-C removes the scratch instance before the report comes back.
pub async fn run_restore(
    inv: &Inventory,
    o: &DrillOptions,
    p: Prepared,
    rep: &Arc<dyn Reporter>,
) -> Result<RestoreReport, OpsError> {
    let (setup, listener) = restore_setup(inv, o, p, rep)?;
    rep.info(&format!(
        "drill restore: run {} on {} ({})",
        setup.run,
        if setup.lab { "the lab" } else { "real hosts" },
        inv.path.display()
    ));
    let report = restore::run(&setup).await;
    listener.abort();
    Ok(report)
}

/// Removes what restore drills left (`--clean`): the scratch units and directory on every
/// PostgreSQL node. The hosts cleaned.
pub async fn clean_restore(
    inv: &Inventory,
    o: &DrillOptions,
    p: Prepared,
    rep: &Arc<dyn Reporter>,
) -> Result<Vec<String>, OpsError> {
    let (setup, listener) = restore_setup(inv, o, p, rep)?;
    let errors = restore::clean_all(&setup.hosts, inv).await;
    setup.hosts.close_all().await;
    listener.abort();
    if errors.is_empty() {
        Ok(inv.hosts_with(Role::Postgres).map(|h| h.name.to_string()).collect())
    } else {
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        Err(OpsError::Day2(format!("drill restore --clean: {}", text.join("; "))))
    }
}

fn restore_setup(
    inv: &Inventory,
    o: &DrillOptions,
    p: Prepared,
    rep: &Arc<dyn Reporter>,
) -> Result<(restore::RestoreSetup, tokio::task::JoinHandle<()>), OpsError> {
    let creds = verify::credentials(inv, o.state.as_deref())?;
    let Some(bouncer) = inv.hosts_with(Role::Pgbouncer).next() else {
        return Err(OpsError::InvalidInput("the inventory has no pgbouncer host".into()));
    };
    let sql = bouncer_sql(inv, bouncer, &creds, &p.db);
    let (cancel, listener) = cancel_on_interrupt(
        rep,
        "interrupt: the drill removes its scratch instance, then exits",
        "interrupt: still removing the scratch instance; wait",
    );
    let progress = rep.clone();
    Ok((
        restore::RestoreSetup {
            inv: inv.clone(),
            run: RunId::generate(),
            hosts: Hosts::new(inv, o.transport, o.accept_new_host_keys),
            lab: p.lab_names.is_some(),
            sql,
            db: p.db,
            remote_ca: paths::ca_bundle(&creds.bundle.file_name()),
            progress: Arc::new(move |line: &str| progress.info(line)),
            cancel,
            set: o.set.clone(),
            keep: o.keep,
        },
        listener,
    ))
}

/// The drill writer's RW and RO targets: `{db}_rw` and `{db}_ro` through `bouncer`,
/// verify-full against the state's current CA bundle, as the verify user.
fn bouncer_sql(inv: &Inventory, bouncer: &Host, creds: &verify::Credentials, db: &str) -> Arc<SqlTarget> {
    let ca = creds.state.bundle(creds.bundle.generation);
    let port = inv.pgbouncer.port.get();
    Arc::new(SqlTarget {
        program: "psql".into(),
        rw: writer::conninfo(bouncer, port, &format!("{db}_rw"), paths::VERIFY_USER, &ca),
        ro: writer::conninfo(bouncer, port, &format!("{db}_ro"), paths::VERIFY_USER, &ca),
        password: creds.password.clone(),
    })
}

/// A Ctrl-C listener for a drill: the first interrupt says `first` and flips the returned
/// flag (the drill undoes its fault and returns `interrupted`); later ones only say `again`.
/// Abort the handle once the drill is over.
fn cancel_on_interrupt(
    rep: &Arc<dyn Reporter>,
    first: &'static str,
    again: &'static str,
) -> (tokio::sync::watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
    let (cancel_tx, cancel) = tokio::sync::watch::channel(false);
    let on_signal = rep.clone();
    let listener = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.info(first);
            let _ = cancel_tx.send(true);
            // Further Ctrl-C are ignored while the fault is undone.
            loop {
                if tokio::signal::ctrl_c().await.is_err() {
                    break;
                }
                on_signal.info(again);
            }
        }
    });
    (cancel, listener)
}
