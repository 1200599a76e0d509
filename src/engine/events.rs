//! What the engine tells the outside world while it runs. The CLI turns these into progress
//! bars, plain lines or JSON; the engine never prints.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::plan::Status;

/// One thing that happened.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A play starts on these hosts.
    PlayStart {
        /// Play name.
        play: String,
        /// Hosts it runs on.
        hosts: Vec<String>,
    },
    /// A host starts a task.
    TaskStart {
        /// Host.
        host: String,
        /// Task name.
        task: String,
    },
    /// A host finished a task.
    TaskDone {
        /// Host.
        host: String,
        /// Play name.
        play: String,
        /// Task name.
        task: String,
        /// Outcome.
        status: Status,
        /// What changed, or why nothing did.
        summary: String,
        /// Unified diff (check mode; secrets masked).
        #[serde(skip_serializing_if = "Option::is_none")]
        diff: Option<String>,
    },
    /// A command was sent (with -v).
    Command {
        /// Host.
        host: String,
        /// Command summary.
        cmd: String,
    },
    /// A host failed; its later plays are skipped.
    HostFailed {
        /// Host.
        host: String,
        /// Play.
        play: String,
        /// Task.
        task: String,
        /// The error, naming command, exit code and stderr tail.
        error: String,
    },
    /// A play ended.
    PlayDone {
        /// Play name.
        play: String,
        /// Wall time.
        #[serde(serialize_with = "secs")]
        elapsed: Duration,
    },
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Receives events (implemented by the CLI's printers).
pub trait Reporter: Send + Sync {
    /// Called for each event, from any task.
    fn event(&self, e: &Event);
}

/// Counts per host, as Ansible's recap.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Tasks already right.
    pub ok: u32,
    /// Tasks that changed something.
    pub changed: u32,
    /// Tasks that failed.
    pub failed: u32,
    /// Tasks skipped.
    pub skipped: u32,
    /// The host could not be reached.
    pub unreachable: bool,
    /// Commands sent to the host (SSH round trips), connection setup excluded.
    pub round_trips: u32,
}

/// The outcome of a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Recap {
    /// Per host.
    pub hosts: BTreeMap<String, Counts>,
    /// Wall time per play, in order.
    pub plays: Vec<(String, f64)>,
    /// Total wall time, seconds.
    pub elapsed: f64,
    /// Stopped by Ctrl-C.
    pub interrupted: bool,
    /// Check mode (nothing was changed).
    pub check: bool,
}

impl Recap {
    /// Sum over hosts.
    pub fn total(&self) -> Counts {
        let mut t = Counts::default();
        for c in self.hosts.values() {
            t.ok += c.ok;
            t.changed += c.changed;
            t.failed += c.failed + u32::from(c.unreachable);
            t.skipped += c.skipped;
            t.round_trips += c.round_trips;
        }
        t
    }

    /// No failure, no interruption.
    pub fn success(&self) -> bool {
        !self.interrupted && self.total().failed == 0
    }
}
