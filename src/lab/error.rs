//! The lab's error type: one variant per thing that can fail, each naming what failed and how to
//! fix it. Nothing here runs anything.

use std::path::PathBuf;

/// Everything `pgha lab` can fail with.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The lab creates namespaces, mounts and machines: only root can.
    #[error("pgha lab must run as root (it creates network namespaces, mounts and machines)\n\nhint: run it with sudo")]
    NotRoot,
    /// A program the lab needs is not installed.
    #[error("`{program}` was not found in PATH\n\nhint: apt-get install -y {package}")]
    MissingTool {
        /// The program looked for.
        program: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// Too little free space where the lab keeps its disks.
    #[error("not enough free disk in {}: {free_mib} MiB free, the lab needs {need_mib} MiB\n\nhint: free some space or `pgha lab down --purge` an old base image", path.display())]
    NotEnoughDisk {
        /// The directory checked.
        path: PathBuf,
        /// MiB available.
        free_mib: u64,
        /// MiB needed.
        need_mib: u64,
    },
    /// The requested lab subnet overlaps a route that already exists on this machine.
    #[error(
        "lab subnet {subnet} overlaps the existing route `{route}`\n\nhint: pass a network no route covers (see `ip -4 route show table all`) with --subnet"
    )]
    SubnetCollision {
        /// The lab subnet.
        subnet: String,
        /// The route it overlaps, as `ip route` prints it.
        route: String,
    },
    /// `--subnet` is not an IPv4 CIDR the lab can use.
    #[error("invalid subnet `{value}`: {why}\n\nhint: give an IPv4 network such as 10.213.77.0/24 (prefix /8 to /26)")]
    BadSubnet {
        /// What was given.
        value: String,
        /// What is wrong with it.
        why: String,
    },
    /// `--release` is not one the lab supports.
    #[error("unsupported release `{0}`\n\nhint: use trixie or bookworm")]
    BadRelease(String),
    /// The machine's apt configuration names no mirror.
    #[error(
        "no Debian mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d/*.sources\n\nhint: pass one with --mirror URL"
    )]
    NoMirror,
    /// A lab is already up with other settings.
    #[error(
        "a lab is already set up with {what} {current}, not {requested}\n\nhint: run `pgha lab down` first, or drop the option"
    )]
    SettingsDiffer {
        /// Which setting.
        what: &'static str,
        /// The one on disk.
        current: String,
        /// The one asked for.
        requested: String,
    },
    /// Network objects with the lab's names exist but this lab directory did not make them.
    #[error("{what} already exists, but {} has no lab that owns it\n\nhint: it belongs to another lab directory (PGHA_LAB_DIR) or was left behind; take that lab down, or delete it with `ip link del` / `ip netns del`", state.display())]
    ForeignNetwork {
        /// The interface or namespace found.
        what: String,
        /// This lab's state file.
        state: PathBuf,
    },
    /// The lab's subnet has fewer host numbers than hosts were asked for.
    #[error(
        "{hosts} hosts do not fit in the lab subnet {subnet} ({capacity} host addresses from .11)\n\nhint: take the lab down and bring it up with a larger --subnet, e.g. 10.213.64.0/20"
    )]
    SubnetFull {
        /// The subnet.
        subnet: String,
        /// Hosts asked for.
        hosts: usize,
        /// Addresses available.
        capacity: usize,
    },
    /// The inventory given with `--from` cannot be used (as `pgha validate` would say).
    #[error("{0}")]
    Inventory(#[from] crate::inventory::LoadError),
    /// Host names of the `--from` inventory the lab cannot use.
    #[error("{}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n\n"))]
    HostNames(Vec<crate::diagnostic::Diagnostic>),
    /// The lab inventory written from `--from` would not say what the source says: a pgha bug
    /// (a setting the lab's writer does not know yet).
    #[error("the lab inventory written from {} differs from it in `{field}`; refusing to write it\n\nhint: this is a pgha bug: src/lab/inventory.rs must copy `{field}`", source_path.display())]
    InventoryCopy {
        /// The `--from` inventory.
        source_path: PathBuf,
        /// The first field that differs.
        field: String,
    },
    /// A command was asked about a host the lab does not have.
    #[error("no lab host named `{name}`\n\nhint: lab hosts are: {known}")]
    UnknownHost {
        /// The name given.
        name: String,
        /// The names that exist.
        known: String,
    },
    /// A command needs a lab that is up.
    #[error("there is no lab (no {})\n\nhint: run `pgha lab up`", path.display())]
    NoLab {
        /// The state file looked for.
        path: PathBuf,
    },
    /// An external program could not be started.
    #[error("could not run `{command}`")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// An external program failed.
    #[error("`{command}` failed ({status}){}", if stderr.is_empty() { String::new() } else { format!(":\n{stderr}") })]
    CommandFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The end of its standard error.
        stderr: String,
    },
    /// Reading or writing a file failed.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done ("reading", "writing", ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The lab's state file cannot be parsed.
    #[error("cannot parse {} (`pgha lab down` then `pgha lab up` rebuilds it)", path.display())]
    BadState {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// A host did not come up in time.
    #[error("{what} on lab host {host} did not answer within {secs} s{}\n\nhint: look at {}", if detail.is_empty() { String::new() } else { format!(": {detail}") }, log.display())]
    Timeout {
        /// The host.
        host: String,
        /// What was waited for.
        what: &'static str,
        /// Seconds waited.
        secs: u64,
        /// The last error seen.
        detail: String,
        /// Where to look.
        log: PathBuf,
    },
    /// The lab machine process vanished while booting.
    #[error("lab host {host} exited while booting\n\nhint: look at {}", log.display())]
    MachineDied {
        /// The host.
        host: String,
        /// Its console log.
        log: PathBuf,
    },
    /// A machine could not be stopped.
    #[error("lab host {host} still has processes after SIGKILL: {pids:?}")]
    StillRunning {
        /// The host.
        host: String,
        /// Survivors.
        pids: Vec<i32>,
    },
    /// Something is mounted under a directory the lab wants to delete.
    #[error("{} still has mounts under it ({mounts:?}); refusing to delete it\n\nhint: unmount them, then run the command again", path.display())]
    StillMounted {
        /// The directory.
        path: PathBuf,
        /// What is still mounted.
        mounts: Vec<String>,
    },
}

impl LabError {
    /// Wraps an I/O error with the action and the file.
    pub fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LabError {
        let path = path.into();
        move |source| LabError::Io { action, path, source }
    }
}

/// Shorthand for results in this module.
pub type Result<T, E = LabError> = std::result::Result<T, E>;
