//! pgha turns Debian hosts into a PostgreSQL high-availability cluster over SSH.
//!
//! Architecture (dependencies point down):
//!
//! - [`cli`]: clap types, one file per subcommand, and the only printer (`cli::report`).
//! - [`lab`]: systemd-nspawn lab machines for CI and rehearsals; writes a lab inventory.
//! - [`render`]: minijinja templates → the files pgha installs on each host.
//! - [`pki`]: the cluster CA, per-host certificates and generated secrets, kept in the state dir.
//! - [`transport`]: run commands and install files on a host over SSH (openssh, russh, fake).
//! - [`yaml`], [`diagnostic`]: strict YAML reading and file:line:column diagnostics.
//! - [`inventory`]: YAML → validated [`inventory::Inventory`] (host names, roles, ports, settings).
#![deny(missing_docs)]

pub mod cli;
pub mod deploy;
pub mod diagnostic;
pub mod engine;
pub mod facts;
pub mod inventory;
pub mod lab;
pub mod modules;
pub mod pki;
pub mod plan;
pub mod playbook;
pub mod render;
pub mod transport;
pub mod verify;
pub mod yaml;
