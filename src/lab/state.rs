//! The lab's state on disk: `state.json` (release, subnet, bridge, hosts) written before anything
//! is created, so `up` can finish and `down` can undo whatever an interrupted run left; and one
//! `machine.json` per running host (PID and kernel start time of its systemd-nspawn, so a PID
//! reused after a reboot is never mistaken for the machine).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{LabError, Result};
use super::fsutil::write_atomic;
use super::topology::{HostSpec, Release, Subnet};

/// Name of the lab bridge in the root network namespace.
pub const BRIDGE: &str = "pghalab0";

/// The lab as set up by `up`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabState {
    /// Release of every host.
    pub release: Release,
    /// Lab subnet, e.g. `10.213.77.0/24`.
    pub subnet: String,
    /// The bridge in the root namespace.
    pub bridge: String,
    /// The hosts.
    pub hosts: Vec<HostSpec>,
    /// /run/netns was not a mount point before this lab: `down` undoes the mount `ip netns add`
    /// made there.
    #[serde(default)]
    pub made_netns_dir_mount: bool,
}

impl LabState {
    /// The subnet, parsed.
    pub fn subnet(&self) -> Result<Subnet> {
        self.subnet.parse()
    }

    /// Looks a host up by name.
    pub fn host(&self, name: &str) -> Result<&HostSpec> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| LabError::UnknownHost {
                name: name.to_string(),
                known: self
                    .hosts
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Reads the state file; `None` when there is none.
    pub fn load(path: &Path) -> Result<Option<LabState>> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|source| LabError::BadState {
                    path: path.into(),
                    source,
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LabError::io("reading", path)(e)),
        }
    }

    /// Writes the state file atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(|source| LabError::BadState {
            path: path.into(),
            source,
        })?;
        write_atomic(path, &json, 0o644).map(|_| ())
    }
}

/// The systemd-nspawn process of one running host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineRecord {
    /// PID of systemd-nspawn in the root PID namespace.
    pub pid: i32,
    /// Its start time in clock ticks since boot (field 22 of /proc/PID/stat).
    pub start_ticks: u64,
    /// Wall-clock start, seconds since the epoch.
    pub started_at: u64,
    /// The container's init (PID 1 inside), so it can be killed even if systemd-nspawn itself
    /// was killed from outside (the init survives its nspawn).
    #[serde(default)]
    pub init: Option<ProcessId>,
    /// The machine's own cgroup, removed when it stops.
    #[serde(default)]
    pub cgroup: Option<std::path::PathBuf>,
    /// Its mirror in the unmounted cgroup2 hierarchy (legacy-cgroup controllers only).
    #[serde(default)]
    pub cgroup_v2_mirror: Option<std::path::PathBuf>,
}

/// A process identified by PID and start time (a reused PID never matches).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    /// PID in the root PID namespace.
    pub pid: i32,
    /// Start time in clock ticks since boot.
    pub start_ticks: u64,
}

impl MachineRecord {
    /// Reads a host's record; `None` when there is none or it is unreadable (a crash mid-write
    /// cannot happen: it is written atomically).
    pub fn load(path: &Path) -> Option<MachineRecord> {
        std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok())
    }

    /// Writes it atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec(self).map_err(|source| LabError::BadState {
            path: path.into(),
            source,
        })?;
        write_atomic(path, &json, 0o644).map(|_| ())
    }
}
