//! Running a playbook through the engine (`pgha run`, and every converge of deploy and
//! rotate-certs): Ctrl-C stops between tasks, the reporter gets the events and the recap.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Connect, OpsError, Reporter};
use crate::engine::{self, Options, Recap, SshConnector};
use crate::inventory::Inventory;
use crate::playbook::{self, Playbook};

/// What `pgha run` needs besides the inventory.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// An embedded playbook name or a playbook file.
    pub playbook: String,
    /// Directory of playbooks overriding the embedded ones.
    pub playbooks: Option<PathBuf>,
    /// Plan only.
    pub check: bool,
    /// With `check`, diffs of files.
    pub diff: bool,
    /// Report every command sent.
    pub verbose: bool,
    /// How to reach the hosts.
    pub connect: Connect,
}

/// Loads the playbook and applies it (or plans it) to the inventory's hosts.
pub async fn run_playbook(inv: &Inventory, o: &RunOptions, rep: &Arc<dyn Reporter>) -> Result<Recap, OpsError> {
    let pb = playbook::load(&o.playbook, o.playbooks.as_deref(), inv)?;
    let opts = Options {
        check: o.check,
        diff: o.diff,
        verbose: o.verbose,
        limit: o.connect.limit_set(),
        ..Options::default()
    };
    let connector = SshConnector {
        kind: o.connect.transport,
        accept_new_host_keys: o.connect.accept_new_host_keys,
    };
    execute(inv, &pb, &BTreeMap::new(), &opts, &connector, rep).await
}

/// Set once Ctrl-C (SIGINT) has been received, for the rest of the process.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static LISTENING: std::sync::Once = std::sync::Once::new();

/// Starts the one Ctrl-C listener of the process (idempotent; needs a tokio runtime). Once
/// tokio handles SIGINT it no longer kills the process, so the listener lives as long as the
/// process: a signal between two engine runs is never lost.
pub fn listen_for_interrupt() {
    LISTENING.call_once(|| {
        tokio::spawn(async {
            while tokio::signal::ctrl_c().await.is_ok() {
                INTERRUPTED.store(true, Ordering::SeqCst);
            }
        });
    });
}

/// Runs the engine with Ctrl-C handling; the reporter gets every event and then the recap.
/// `Ok` when every host succeeded; [`OpsError::HostsFailed`] or [`OpsError::Interrupted`]
/// otherwise (the recap has shown the detail).
pub async fn execute(
    inv: &Inventory,
    pb: &Playbook,
    inputs: &BTreeMap<String, engine::HostInput>,
    opts: &Options,
    connector: &dyn engine::Connector,
    rep: &Arc<dyn Reporter>,
) -> Result<Recap, OpsError> {
    listen_for_interrupt();
    let cancel = Arc::new(AtomicBool::new(INTERRUPTED.load(Ordering::SeqCst)));
    let flag = cancel.clone();
    // The process-wide flag is copied into this run's: a Ctrl-C that arrived between two
    // engine runs (e.g. while a rotation issues the next phase's leaves) stops the next one.
    let listener = tokio::spawn(async move {
        while !INTERRUPTED.load(Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        flag.store(true, Ordering::SeqCst);
    });
    let events: Arc<dyn engine::Reporter> = rep.clone();
    let recap = engine::run(inv, pb, inputs, opts, connector, events, cancel).await;
    listener.abort();
    rep.recap(&recap);
    if recap.interrupted {
        Err(OpsError::Interrupted)
    } else if recap.success() {
        Ok(recap)
    } else {
        Err(OpsError::HostsFailed)
    }
}
