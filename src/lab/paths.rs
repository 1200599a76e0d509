//! Where the lab keeps things on disk. Only path arithmetic: nothing here touches the disk.
//!
//! ```text
//! /var/lib/pgha/lab.lock     held by every lab command that changes something
//! /var/lib/pgha/lab/
//!   base-<release>/          cached root file system (complete once renamed into place)
//!   base-<release>.partial/  a build in progress (deleted and restarted if found)
//!   ssh/id_ed25519{,.pub}    the lab key pair; ssh/known_hosts: every lab host's keys
//!   state.json               release, subnet and hosts of the lab that is up
//!   hosts/<name>/{upper,work,root}   overlay layers and mount point of one host
//!   hosts/<name>/machine.json        PID and start time of its systemd-nspawn
//!   hosts/<name>/console.log         its console
//! ```

use std::path::{Path, PathBuf};

/// The lab's directory tree.
#[derive(Clone, Debug)]
pub struct LabPaths {
    root: PathBuf,
}

/// The default lab directory.
pub const DEFAULT_ROOT: &str = "/var/lib/pgha/lab";

impl LabPaths {
    /// The tree under `root` (normally [`DEFAULT_ROOT`]; `PGHA_LAB_DIR` overrides it).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The tree under `PGHA_LAB_DIR`, or [`DEFAULT_ROOT`].
    pub fn from_env() -> Self {
        Self::new(std::env::var_os("PGHA_LAB_DIR").map_or_else(|| PathBuf::from(DEFAULT_ROOT), PathBuf::from))
    }

    /// The lab directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Lock file serializing lab commands that change things (next to the lab directory, so
    /// `down --purge` can remove the directory).
    pub fn lock(&self) -> PathBuf {
        self.root.with_extension("lock")
    }

    /// The finished base image of a release.
    pub fn base(&self, release: &str) -> PathBuf {
        self.root.join(format!("base-{release}"))
    }

    /// Where a base image is built before it is renamed into place.
    pub fn base_partial(&self, release: &str) -> PathBuf {
        self.root.join(format!("base-{release}.partial"))
    }

    /// The lab's SSH directory.
    pub fn ssh_dir(&self) -> PathBuf {
        self.root.join("ssh")
    }

    /// The lab's private key.
    pub fn key(&self) -> PathBuf {
        self.ssh_dir().join("id_ed25519")
    }

    /// The lab's public key.
    pub fn public_key(&self) -> PathBuf {
        self.ssh_dir().join("id_ed25519.pub")
    }

    /// Every lab host's keys.
    pub fn known_hosts(&self) -> PathBuf {
        self.ssh_dir().join("known_hosts")
    }

    /// The state of the lab that is up.
    pub fn state(&self) -> PathBuf {
        self.root.join("state.json")
    }

    /// All hosts' directories.
    pub fn hosts(&self) -> PathBuf {
        self.root.join("hosts")
    }

    /// One host's directory.
    pub fn host(&self, name: &str) -> HostPaths {
        HostPaths {
            dir: self.hosts().join(name),
        }
    }
}

/// One host's files.
#[derive(Clone, Debug)]
pub struct HostPaths {
    /// The host's directory.
    pub dir: PathBuf,
}

impl HostPaths {
    /// Overlay upper layer: everything the host wrote.
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    /// Overlay work directory.
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    /// The mounted root file system.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("root")
    }
    /// PID record of the running machine.
    pub fn machine(&self) -> PathBuf {
        self.dir.join("machine.json")
    }
    /// Empty directory a cgroup2 hierarchy is mounted on for a moment, to clean up.
    pub fn cgroup_scratch(&self) -> PathBuf {
        self.dir.join("cgroup2")
    }
    /// Console output of systemd-nspawn.
    pub fn console(&self) -> PathBuf {
        self.dir.join("console.log")
    }
}
