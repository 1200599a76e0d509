//! The inventory: YAML in, a validated [`Inventory`] out, with errors that point at
//! file:line:column and the field path, and topology warnings. No I/O beyond reading the file.
//!
//! `load.rs` reads and parses (limits, duplicate keys), `raw.rs` is the YAML shape,
//! `validate.rs` checks rules and applies defaults, `topology.rs` finds risks, `model.rs` is
//! what the rest of pgha reads.

mod diagnostic;
mod load;
pub mod model;
pub mod names;
pub mod raw;
pub mod topology;
mod validate;

use std::path::Path;

pub use diagnostic::{Diagnostic, Severity, did_you_mean};
pub use load::{MAX_INVENTORY_BYTES, ReadError};
pub use model::*;
pub use names::{DcName, HostName, Port, Role};
pub use validate::RESERVED_ROLES;

/// A valid inventory and the warnings about it.
#[derive(Debug)]
pub struct Loaded {
    /// The inventory.
    pub inventory: Inventory,
    /// Topology and other warnings.
    pub warnings: Vec<Diagnostic>,
}

/// Why an inventory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The file was read but is not a valid inventory.
    #[error("{}", render_all(.errors))]
    Invalid {
        /// Every error found, in file order.
        errors: Vec<Diagnostic>,
        /// Warnings found along the way.
        warnings: Vec<Diagnostic>,
    },
}

fn render_all(errors: &[Diagnostic]) -> String {
    errors.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n\n")
}

/// Reads and validates the inventory at `path`.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    let bytes = load::read_text(path)?;
    parse(path, &bytes)
}

/// Validates inventory bytes; `path` is only used in messages and as the inventory's location.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Loaded, LoadError> {
    let raw = load::parse_raw(path, bytes).map_err(|d| LoadError::Invalid { errors: vec![d], warnings: Vec::new() })?;
    let mut findings = validate::Findings::new(path);
    let hosts_pos: Vec<(String, diagnostic::Pos)> =
        raw.hosts.value.0.iter().map(|(k, _)| (k.value.clone(), diagnostic::Pos::of(k))).collect();
    let hosts_root = diagnostic::Pos::of(&raw.hosts);
    let inv = validate::from_raw(path, raw, &mut findings);
    let Some(inventory) = inv else {
        let mut errors = findings.errors;
        errors.sort_by_key(|d| (d.line, d.column));
        return Err(LoadError::Invalid { errors, warnings: findings.warnings });
    };
    for risk in topology::risks(&inventory) {
        let pos = risk
            .host
            .as_ref()
            .and_then(|h| hosts_pos.iter().find(|(k, _)| k == h).map(|(_, p)| *p))
            .unwrap_or(hosts_root);
        findings.warn(pos, &risk.field, risk.message, Some(risk.hint));
    }
    Ok(Loaded { inventory, warnings: findings.warnings })
}
