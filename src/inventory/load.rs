//! Reading the inventory file: the strict YAML reader of [`crate::yaml`] applied to
//! [`RawInventory`].

use std::path::Path;

use crate::diagnostic::Diagnostic;
pub use crate::yaml::{MAX_YAML_BYTES as MAX_INVENTORY_BYTES, ReadError, read_text};

use super::raw::RawInventory;

/// Parses YAML bytes into the raw inventory, or one diagnostic saying where and why not.
pub fn parse_raw(file: &Path, bytes: &[u8]) -> Result<RawInventory, Diagnostic> {
    crate::yaml::parse_strict(file, bytes, "inventory/example.yaml")
}
