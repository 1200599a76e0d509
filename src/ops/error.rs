//! The ops layer's typed errors. Each variant says what went wrong in words an operator can act
//! on; `cli` prints them and maps each to an exit code (`cli::report::exit_code`). Variants
//! whose detail was already shown while it happened (a host failing in the engine run) say so
//! through [`OpsError::already_reported`].

use std::path::PathBuf;

use crate::deploy::preflight::Problem;
use crate::facts::FactsError;
use crate::inventory::LoadError;
use crate::pki::{Phase, PkiError};
use crate::playbook::PlaybookError;
use crate::render::RenderError;
use crate::transport::TransportError;

use super::material::MaterialError;

/// Why an operation did not complete.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The inventory file is unreadable or invalid.
    #[error(transparent)]
    Inventory(#[from] LoadError),
    /// The playbook is unreadable or invalid.
    #[error(transparent)]
    Playbook(#[from] PlaybookError),
    /// Another input contradicts the inventory (an unknown `--limit` host, a missing role).
    #[error("{0}")]
    InvalidInput(String),
    /// The request cannot be carried out as asked (e.g. a drill this inventory cannot run).
    #[error("{0}")]
    Usage(String),
    /// Some hosts could not be reached; nothing was changed.
    #[error(
        "{what}: {} host(s) unreachable; nothing was changed. Fix them, or leave them out with --limit.",
        .errors.len()
    )]
    Unreachable {
        /// The command, for the message.
        what: String,
        /// Why each host could not be reached.
        errors: Vec<TransportError>,
    },
    /// Preflight found problems on the hosts; nothing was changed.
    #[error("preflight: {} problem(s); nothing was changed", .problems.len())]
    Preflight {
        /// Every problem found.
        problems: Vec<Problem>,
    },
    /// The state directory (CA, certificates, secrets) could not be used.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The PKI material for rendering could not be assembled.
    #[error(transparent)]
    Material(#[from] MaterialError),
    /// A template failed to render.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// A host could not be talked to.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A host's facts could not be read.
    #[error(transparent)]
    Facts(#[from] FactsError),
    /// A local file could not be written.
    #[error("{path}: {source}")]
    Write {
        /// The file or directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The state directory lacks what the command needs (deploy first).
    #[error("{0}")]
    NotDeployed(String),
    /// The engine run failed on some host; the recap has already shown which.
    #[error("a host failed")]
    HostsFailed,
    /// A leaf renewal was asked while a CA rotation is in progress.
    #[error(
        "{}: a CA rotation is in progress (next phase: {phase}); finish it first: pgha rotate-certs --ca {}",
        .rotation_file.display(),
        .inventory.display()
    )]
    RotationInProgress {
        /// STATE/rotation.json.
        rotation_file: PathBuf,
        /// Its next phase.
        phase: Phase,
        /// The inventory, for the command to run.
        inventory: PathBuf,
    },
    /// Draining PgBouncer's server connections failed on a host.
    #[error("{0}")]
    Drain(String),
    /// TLS endpoints still present other certificates than expected (one line each).
    #[error("{}", .0.join("\n"))]
    Endpoints(Vec<String>),
    /// An application user has no password in the state directory.
    #[error("no password for `{user}` in {}: is it in postgres.users?", .state.display())]
    NoPassword {
        /// The user.
        user: String,
        /// The state directory.
        state: PathBuf,
    },
    /// The lab could not be driven (not root).
    #[error("the drill drives the lab: {0}")]
    Lab(#[from] crate::lab::LabError),
    /// A CA rotation phase failed (`source`); a re-run continues from it.
    #[error(
        "rotate-certs: phase {phase} is not applied everywhere; fix the cause and re-run `pgha rotate-certs --ca {}` to continue from it",
        .inventory.display()
    )]
    PhaseNotApplied {
        /// The phase.
        phase: Phase,
        /// The inventory, for the command to re-run.
        inventory: PathBuf,
        /// Why.
        source: Box<OpsError>,
    },
    /// A day-2 operation (switchover, restart, reinit) refused to start: the cluster is not in
    /// a state where it is safe (the sentence says why).
    #[error("{0}")]
    Refused(String),
    /// A day-2 operation failed on the way (a Patroni call refused, a bounded wait gave up).
    #[error("{0}")]
    Day2(String),
    /// Interrupted (Ctrl-C) between steps; re-run to converge.
    #[error("interrupted")]
    Interrupted,
}

impl OpsError {
    /// True when the details were already reported as they happened (the engine's recap).
    pub fn already_reported(&self) -> bool {
        matches!(self, OpsError::HostsFailed | OpsError::Interrupted)
    }

    /// The kind of failure, for the exit code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            OpsError::Inventory(_) | OpsError::Playbook(_) | OpsError::InvalidInput(_) => ErrorKind::InvalidInput,
            OpsError::Usage(_) => ErrorKind::Usage,
            OpsError::Interrupted => ErrorKind::Interrupted,
            OpsError::PhaseNotApplied { source, .. } => source.kind(),
            _ => ErrorKind::Failed,
        }
    }
}

/// What kind of failure an [`OpsError`] is (the exit code follows from it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Something failed (a host, a check, a file).
    Failed,
    /// The request cannot be carried out as asked.
    Usage,
    /// The inventory, playbook or another input is invalid or unreadable.
    InvalidInput,
    /// Interrupted by the user.
    Interrupted,
}
