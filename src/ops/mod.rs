//! What each command does, as library functions: deploy/converge, plan, rotate-certs, status,
//! verify, trust inspection, drills, URIs, day-2 operations (switchover, rolling restart, reinit), rendering to a directory, running a playbook.
//!
//! Each takes the validated inventory and a typed options struct, reports progress through a
//! [`Reporter`] (never prints), and returns a typed result or an [`OpsError`]; `cli` parses
//! arguments, calls one function here, prints the result and maps the error to an exit code.
//! Shared plumbing lives here once: the inventory loader ([`load_inventory`]), the connection
//! pool ([`pool`]) and the engine run with Ctrl-C ([`run`]). See docs/design.md §9.

pub mod backup;
pub mod deploy;
pub mod drill;
pub mod error;
pub mod material;
pub mod members;
pub mod plan;
pub mod pool;
pub mod reinit;
pub mod render;
pub mod report;
pub mod restart;
pub mod restore;
pub mod rotate;
pub mod run;
pub mod status;
pub mod switchover;
pub mod trust;
pub mod uri;
pub mod verify;

pub use error::OpsError;
pub use pool::Connect;
pub use report::Reporter;

use std::path::Path;

use crate::inventory::{self, Loaded};

/// The one inventory loader: reads and validates `path`. Warnings come back in [`Loaded`] for
/// the caller to show; an unreadable or invalid file is [`OpsError::Inventory`] (invalid input).
pub fn load_inventory(path: &Path) -> Result<Loaded, OpsError> {
    Ok(inventory::load(path)?)
}
