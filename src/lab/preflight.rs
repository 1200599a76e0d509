//! Checks made before the lab creates anything, so a refusal leaves nothing half-made: running as
//! root, the programs it needs, free disk.

use std::path::Path;

use super::cmd::in_path;
use super::error::{LabError, Result};
use super::fsutil::free_mib;

/// Programs the lab runs and the Debian package of each.
pub const TOOLS: [(&str, &str); 7] = [
    ("debootstrap", "debootstrap"),
    ("systemd-nspawn", "systemd-container"),
    ("ip", "iproute2"),
    ("ssh", "openssh-client"),
    ("ssh-keygen", "openssh-client"),
    ("mount", "mount"),
    ("chroot", "coreutils"),
];

/// Fails unless the effective user is root.
pub fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(LabError::NotRoot);
    }
    Ok(())
}

/// Fails naming the apt package of the first missing program.
pub fn require_tools() -> Result<()> {
    match TOOLS.iter().find(|(prog, _)| !in_path(prog)) {
        Some(&(program, package)) => Err(LabError::MissingTool { program, package }),
        None => Ok(()),
    }
}

/// Fails unless `need_mib` MiB are free on the file system of `dir`.
pub fn require_disk(dir: &Path, need_mib: u64) -> Result<()> {
    let free = free_mib(dir)?;
    if free < need_mib {
        return Err(LabError::NotEnoughDisk {
            path: dir.to_path_buf(),
            free_mib: free,
            need_mib,
        });
    }
    Ok(())
}
