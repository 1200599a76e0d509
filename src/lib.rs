//! pgha turns Debian hosts into a PostgreSQL high-availability cluster over SSH.
//!
//! Architecture (dependencies point down):
//!
//! - [`cli`]: clap types, one file per subcommand, and the only printers (`cli::report`,
//!   `cli::output`). The only place `anyhow` is used.
//! - [`ops`]: what each command does (deploy/converge, plan, rotate-certs, status, verify, trust,
//!   drill, uri, render, run): typed options in, typed result or `OpsError` out, progress
//!   through `ops::Reporter`; no printing. The inventory loader, the connection pool and the
//!   engine run with Ctrl-C live here once.
//! - [`deploy`]: what `pgha deploy` adds around the engine (preflight, per-host targets and
//!   inputs, bootstrap SQL); [`endpoints`]: the certificate each TLS endpoint presents, read
//!   on its host.
//! - [`drill`]: failure drills on a deployed cluster (leader crash, etcd quorum loss, partition)
//!   with a writer, per-host samplers, and the verdict: RW downtime, rows lost, split brain.
//!   Faults go through [`lab`] on the lab and `systemctl` over [`transport`] elsewhere.
//! - [`engine`]: runs a [`playbook`] over the inventory: plays in order, hosts in parallel,
//!   gather → plan → apply per task, handlers; check mode; events for the printers.
//! - [`playbook`]: playbooks/*.yaml (embedded) → validated plays, tasks and handlers (data only).
//! - [`modules`]: package, file, directory, service, command, wait_for — `plan` from facts (no
//!   I/O) and `apply` of a planned action only; [`plan`] holds the plan types and diffs.
//! - [`facts`]: one batched probe per host (OS, packages, units, files, ports, names) + parser.
//! - [`render`]: minijinja templates → the files pgha installs on each host.
//! - [`pki`]: the cluster CA, per-host certificates and generated secrets, kept in the state dir.
//! - [`lab`]: systemd-nspawn lab machines for CI and rehearsals; writes a lab inventory.
//! - [`transport`]: run commands and install files on a host (openssh, russh, local, fake).
//! - [`inventory`], [`yaml`], [`diagnostic`]: strict YAML → validated inventory, with
//!   file:line:column diagnostics.
#![deny(missing_docs)]
// Only `cli::report` prints (docs/design.md §11).
#![deny(clippy::print_stdout, clippy::print_stderr, clippy::dbg_macro)]

pub mod cli;
pub mod conninfo;
pub mod deploy;
pub mod diagnostic;
pub mod drill;
pub mod endpoints;
pub mod engine;
pub mod facts;
pub mod inventory;
pub mod lab;
pub mod modules;
pub mod ops;
pub mod pki;
pub mod plan;
pub mod playbook;
pub mod render;
pub mod transport;
pub mod yaml;
