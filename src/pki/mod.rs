//! The cluster PKI and generated secrets, kept on the controller in the state directory.
//!
//! [`ensure`] creates the CA once and issues the leaves of docs/design.md §3 (see [`spec`] for the
//! table in code and the decisions beyond it), re-issuing a leaf only when it is missing,
//! expiring within the renewal window, no longer matches the inventory, does not chain to the
//! current CA, or does not match its key. [`status`] reports the same without writing.
//! [`ensure_secrets`] generates passwords once. Where files go *on the hosts* is decided by
//! `render`, not here.
//!
//! # State directory
//!
//! Default `.pgha/` beside the inventory file, `--state DIR` overrides. Every directory is mode
//! 0700, keys and secrets 0600; every file is written atomically (temp file, fsync, rename).
//!
//! ```text
//! .pgha/
//! ├── ca/
//! │   ├── ca.crt                 current CA certificate (ECDSA P-256, 10 years by default)
//! │   ├── ca.key                 CA private key, 0600 — never copied to a host
//! │   ├── next.crt, next.key     during a CA rotation: the CA replacing it
//! │   └── archive/<serial>/      CAs replaced by a rotation (kept, never deleted)
//! ├── trust/
//! │   ├── ca-bundle-<N>.pem      trust bundle generation N (hosts install it under this name)
//! │   └── ca-bundle.pem          the newest generation under a fixed name (`pgha uri` uses it)
//! ├── certs/
//! │   └── <host>/
//! │       ├── <kind>.crt         leaf certificate, kind = postgres-server, patroni-rest,
//! │       └── <kind>.key         patroni-client, haproxy-check, etcd-server, etcd-peer,
//! │                              pgbouncer-server; key 0600
//! ├── secrets.json               passwords + SCRAM salts per account, 0600
//! └── rotation.json              during a CA rotation: its next phase (see [`rotation`])
//! ```
//!
//! Nothing in this module prints: the CLI renders [`Report`] and [`CertStatus`]. Private keys
//! and passwords are [`Secret`]s.

mod assess;
pub mod bundle;
mod ca;
mod ensure;
mod error;
mod files;
mod inspect;
mod issue;
pub mod rotation;
mod scram;
mod secret;
mod secrets;
pub mod spec;
mod state;
mod status;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

/// The eight-host reference inventory the PKI unit tests use (for other modules' tests).
#[cfg(test)]
pub fn testutil_inventory() -> crate::inventory::Inventory {
    testutil::sample_inventory()
}

pub use assess::{Reason, Verdict, assess_leaf};
pub use bundle::{TrustBundle, current as current_bundle, publish as publish_bundle};
pub use ca::Ca;
pub use ensure::{CaAction, LeafAction, LeafOutcome, Report, ensure, write_leaf};
pub use error::PkiError;
pub use files::FileMode;
pub use inspect::CertInfo;
pub use issue::{BACKDATE, Issued, Validity};
pub use rotation::{Phase, Renew, Rotation, load_rotation, renew_leaves};
pub use scram::{SCRAM_ITERATIONS, scram_sha256_verifier};
pub use secret::Secret;
pub use secrets::{
    Account, PASSWORD_LEN, Secrets, SecretsReport, VRRP_AUTH_LEN, accounts, ensure_secrets, load_secrets,
};
pub use spec::{Eku, LeafKind, LeafSpec, San, leaf_specs};
pub use state::{StateDir, bundle_file_name};
pub use status::{CertStatus, Health, status};
