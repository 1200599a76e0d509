//! `pgha lab`: real Debian machines on one Linux host, for CI and rehearsals: the default eight,
//! or one per host of an inventory (`up --from`).
//!
//! Each lab host is a systemd-nspawn container booting systemd from an overlay root over one
//! cached base image, in its own network namespace, joined to a lab bridge by a veth. `up` also
//! writes a pgha inventory for the lab. See docs/lab.md.
//!
//! One module per job:
//! - [`ops`]: the commands (up, down, status, stop, start, partition, heal, ssh);
//! - [`base`]: the cached base image; [`machine`]: overlay root, host identity, nspawn process;
//! - [`net`]: bridge, namespaces, veths; [`sshkeys`]: lab key, host keys, known_hosts, ssh argv;
//! - [`state`]: what is on disk; [`paths`]: where; [`inventory`]: the lab inventory;
//! - [`topology`]: release, subnet, default hosts, address assignment and the add/remove diff;
//!   [`from`]: the hosts of an `up --from` inventory; [`mirror`]: the apt mirror;
//! - [`cgroup`]: one cgroup per machine;
//! - [`preflight`]: checks before anything is created; [`procfs`], [`fsutil`], [`cmd`]: helpers.

pub mod base;
pub mod cgroup;
pub mod cmd;
pub mod error;
pub mod from;
pub mod fsutil;
pub mod inventory;
pub mod machine;
pub mod mirror;
pub mod net;
pub mod ops;
pub mod paths;
pub mod preflight;
pub mod procfs;
pub mod sshkeys;
pub mod state;
pub mod topology;

pub use error::LabError;
pub use inventory::Login;
pub use ops::{HostStatus, UpOptions, UpReport};
pub use paths::LabPaths;
pub use topology::{Release, Subnet};

/// Where progress lines go (the CLI prints them to stderr; the lab never prints).
pub type Progress<'a> = &'a (dyn Fn(&str) + Sync);
