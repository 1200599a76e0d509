//! `pgha lab up --from INVENTORY`: reads a pgha inventory with the real loader (so it is exactly
//! as valid as `pgha validate` says) and turns its hosts into the machines the lab should have.
//! Its host names must also fit the lab's naming limits ([`check_lab_host_name`]). Addresses are
//! not taken from it: the lab assigns its own ([`super::topology::assign_addresses`]). Writing
//! the lab inventory lives in [`super::inventory`].

use std::path::Path;

use super::error::{LabError, Result};
use super::topology::{WantedHost, check_lab_host_name};
use crate::diagnostic::{Diagnostic, Pos, Severity};
use crate::inventory::{self, Inventory};

/// What a `--from` inventory asks the lab for.
#[derive(Clone, Debug)]
pub struct Shape {
    /// The machines, in the inventory's order.
    pub hosts: Vec<WantedHost>,
    /// The validated inventory (its settings are copied into the lab inventory).
    pub source: Inventory,
}

/// Reads and validates `path`, and checks its host names for the lab.
pub fn read(path: &Path) -> Result<Shape> {
    let bytes = crate::yaml::read_text(path).map_err(|e| LabError::Inventory(e.into()))?;
    shape(path, &bytes)
}

/// Validates inventory bytes (`path` names them in messages) and checks its host names.
pub fn shape(path: &Path, bytes: &[u8]) -> Result<Shape> {
    let source = inventory::parse(path, bytes)?.inventory;
    let bad: Vec<(String, String)> = source
        .hosts
        .iter()
        .filter_map(|h| {
            check_lab_host_name(h.name.as_str())
                .err()
                .map(|e| (h.name.to_string(), e))
        })
        .collect();
    if !bad.is_empty() {
        return Err(LabError::HostNames(host_diagnostics(path, bytes, bad)));
    }
    let hosts = source
        .hosts
        .iter()
        .map(|h| WantedHost {
            name: h.name.to_string(),
            dc: h.dc.to_string(),
            roles: h.roles.iter().copied().collect(),
            names: h.names.iter().map(ToString::to_string).collect(),
        })
        .collect();
    Ok(Shape { hosts, source })
}

/// One diagnostic per refused host name, at the line and column of its entry (from the same
/// strict YAML reader the loader uses; 0:0 if that somehow fails).
fn host_diagnostics(path: &Path, bytes: &[u8], bad: Vec<(String, String)>) -> Vec<Diagnostic> {
    let raw: Option<inventory::raw::RawInventory> =
        crate::yaml::parse_strict(path, bytes, "inventory/example.yaml").ok();
    bad.into_iter()
        .map(|(name, message)| {
            let pos = raw
                .as_ref()
                .and_then(|r| {
                    r.hosts
                        .value
                        .0
                        .iter()
                        .find(|(k, _)| *k == name)
                        .map(|(_, v)| Pos::of(v))
                })
                .unwrap_or_default();
            Diagnostic {
                severity: Severity::Error,
                file: path.to_path_buf(),
                line: pos.line,
                column: pos.column,
                field: format!("hosts.{name}"),
                message,
                hint: Some(format!(
                    "rename the host for the lab (at most {} characters, letters, digits and `-`)",
                    super::topology::MAX_HOST_NAME
                )),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIXTEEN: &str = include_str!("../../tests/inventories/lab-16.yaml");

    #[test]
    fn reads_hosts_in_order_with_roles_and_dcs() {
        let s = shape(Path::new("lab-16.yaml"), SIXTEEN.as_bytes()).expect("valid");
        assert_eq!(s.hosts.len(), 16);
        assert_eq!(s.hosts[0].name, "node1");
        assert_eq!(s.hosts[0].roles, [inventory::Role::Postgres]);
        assert!(s.hosts.iter().any(|h| h.dc == "dc3"));
    }

    #[test]
    fn refuses_long_host_names_at_their_line() {
        let text = "cluster: {name: t}\nhosts:\n  a: {address: 10.0.0.1, dc: x, roles: [postgres, etcd, haproxy, pgbouncer]}\n  a-very-long-name: {address: 10.0.0.2, dc: x, roles: [postgres]}\n";
        let e = shape(Path::new("t.yaml"), text.as_bytes()).expect_err("too long");
        let msg = e.to_string();
        assert!(msg.starts_with("t.yaml:4:"), "{msg}");
        assert!(
            msg.contains("hosts.a-very-long-name") && msg.contains("pl-a-very-long-name"),
            "{msg}"
        );
        assert!(msg.contains("hint: rename"), "{msg}");
    }

    #[test]
    fn an_invalid_inventory_is_reported_as_validate_would() {
        let text = "cluster: {name: t}\nhosts:\n  a: {address: 10.0.0.1, dc: x, roles: [postgres]}\n";
        let e = shape(Path::new("t.yaml"), text.as_bytes()).expect_err("invalid");
        assert!(matches!(e, LabError::Inventory(_)), "{e}");
        assert!(e.to_string().contains("t.yaml"), "{e}");
    }
}
