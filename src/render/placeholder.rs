//! Placeholder material: fixed, obviously fake certificates, keys and passwords for every host
//! of an inventory. For snapshot tests and template development (`pgha render
//! --placeholder-material`); nothing rendered from it can work on a host.

use std::collections::BTreeMap;

use super::files::LEAVES;
use super::material::{Leaf, Material, Secrets};
use crate::inventory::Inventory;

/// The bundle file name placeholders use.
pub const PLACEHOLDER_BUNDLE: &str = "ca-bundle-1.pem";

/// Fake material covering every leaf every host of `inv` needs. The REST password holds a
/// double quote and a backslash so that snapshots show the escaping.
pub fn placeholder_material(inv: &Inventory) -> Material {
    let mut leaves = BTreeMap::new();
    for host in &inv.hosts {
        for l in LEAVES.iter().filter(|l| super::files::leaf_wanted(l, host, inv)) {
            let leaf = Leaf {
                cert_pem: format!(
                    "-----BEGIN CERTIFICATE-----\nPLACEHOLDER {} certificate of {}\n-----END CERTIFICATE-----\n",
                    l.kind.as_str(),
                    host.name
                ),
                key_pem: "-----BEGIN PRIVATE KEY-----\nREDACTED\n-----END PRIVATE KEY-----\n".to_owned(),
            };
            leaves.insert((host.name.clone(), l.kind), leaf);
        }
    }
    let app_verifiers = inv
        .postgres
        .users
        .iter()
        .map(|u| {
            (
                u.name.clone(),
                format!(
                    "SCRAM-SHA-256$4096:PLACEHOLDER-SALT$STORED-KEY-{0}:SERVER-KEY-{0}",
                    u.name
                ),
            )
        })
        .collect();
    Material {
        etcd_bootstrap: Default::default(),
        ca_bundle_file: PLACEHOLDER_BUNDLE.to_owned(),
        ca_bundle_pem: "-----BEGIN CERTIFICATE-----\nPLACEHOLDER CA\n-----END CERTIFICATE-----\n".to_owned(),
        leaves,
        secrets: Secrets {
            superuser: "placeholder-superuser-password".into(),
            replication: "placeholder-replication-password".into(),
            rewind: "placeholder-rewind-password".into(),
            patroni_rest: "placeholder-rest-\"password\\".into(),
            pgbouncer_auth: "placeholder-pgbouncer-auth-password".into(),
            app_verifiers,
            verify_verifier: "SCRAM-SHA-256$4096:PLACEHOLDER-SALT$STORED-KEY-pgha_verify:SERVER-KEY-pgha_verify".into(),
            repo_cipher: "placeholder-repo-cipher-passphrase".into(),
            vrrp_auth: "PlAcE8ch".into(),
        },
    }
}
