//! One control group per lab machine. With `--keep-unit` and no systemd on the controller,
//! systemd-nspawn puts every container in `<our cgroup>/payload`: eight containers' systemds
//! would then manage one shared cgroup tree and break each other's units at random ("Failed to
//! spawn executor: No such file or directory", degraded boots). So each machine's nspawn is
//! started inside `<our cgroup>/pgha-lab/<host>`, and the tree is removed when the machine stops.
//!
//! Works on a unified (cgroup v2) controller and on a legacy/hybrid one (named `systemd`
//! hierarchy, where nspawn mirrors the path into a cgroup2 hierarchy it mounts privately).

use std::fs::File;
use std::path::{Path, PathBuf};

use super::cmd::run_args;
use super::error::{LabError, Result};

const V2_ROOT: &str = "/sys/fs/cgroup";
const NAMED_ROOT: &str = "/sys/fs/cgroup/systemd";

/// Where cgroups of this kind live and our own path in them.
fn hierarchy() -> Option<(PathBuf, String)> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path_of = |prefix: &str| own.lines().find_map(|l| l.strip_prefix(prefix)).map(str::to_string);
    if Path::new(V2_ROOT).join("cgroup.controllers").exists() {
        return Some((PathBuf::from(V2_ROOT), path_of("0::")?));
    }
    if Path::new(NAMED_ROOT).join("cgroup.procs").exists() {
        let p = own
            .lines()
            .find_map(|l| l.split_once(":name=systemd:").map(|(_, p)| p.to_string()))?;
        return Some((PathBuf::from(NAMED_ROOT), p));
    }
    None
}

/// A machine's cgroup, created and opened so the child can move itself in before exec.
pub struct HostCgroup {
    /// The cgroup directory (in the mounted hierarchy).
    pub dir: PathBuf,
    /// On a legacy controller: the path of the same cgroup in the cgroup2 hierarchy, which is not
    /// mounted on the controller but which systemd-nspawn reads its own cgroup from.
    pub v2_mirror: Option<PathBuf>,
    /// `cgroup.procs` of each, open for writing.
    pub procs: Vec<File>,
}

fn open_procs(dir: &Path) -> Result<File> {
    std::fs::create_dir_all(dir).map_err(LabError::io("creating cgroup", dir))?;
    let p = dir.join("cgroup.procs");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .map_err(LabError::io("opening", &p))
}

/// Creates `<our cgroup>/pgha-lab/<host>`; `None` when the controller has no cgroup file system
/// the lab understands (nspawn then uses its default). `scratch` is an empty directory the
/// cgroup2 hierarchy can be mounted on for a moment.
pub fn create(host: &str, scratch: &Path) -> Result<Option<HostCgroup>> {
    let Some((root, own)) = hierarchy() else {
        return Ok(None);
    };
    let dir = root.join(own.trim_start_matches('/')).join("pgha-lab").join(host);
    let mut procs = vec![open_procs(&dir)?];
    let mut v2_mirror = None;
    if root == Path::new(NAMED_ROOT) {
        let own_v2 = std::fs::read_to_string("/proc/self/cgroup")
            .ok()
            .and_then(|t| t.lines().find_map(|l| l.strip_prefix("0::").map(str::to_string)))
            .unwrap_or_else(|| "/".to_string());
        let rel = PathBuf::from(own_v2.trim_start_matches('/'))
            .join("pgha-lab")
            .join(host);
        with_v2_mounted(scratch, |mnt| {
            procs.push(open_procs(&mnt.join(&rel))?);
            Ok(())
        })?;
        v2_mirror = Some(rel);
    }
    Ok(Some(HostCgroup { dir, v2_mirror, procs }))
}

/// Mounts the cgroup2 hierarchy on `scratch`, runs `f`, unmounts (lazily: descriptors opened
/// meanwhile stay usable) and removes `scratch`.
fn with_v2_mounted(scratch: &Path, f: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    std::fs::create_dir_all(scratch).map_err(LabError::io("creating", scratch))?;
    let s = scratch.display().to_string();
    run_args("mount", &["-t", "cgroup2", "none", &s])?;
    let r = f(scratch);
    let u = run_args("umount", &["-l", &s]);
    let _ = std::fs::remove_dir(scratch);
    r?;
    u.map(|_| ())
}

/// Removes a machine's cgroup tree (every process in it must be gone), and its cgroup2 mirror.
pub fn remove(dir: &Path, v2_mirror: Option<&Path>, scratch: &Path) -> Result<()> {
    rmdir_tree(dir)?;
    remove_parent_if_empty(dir);
    if let Some(rel) = v2_mirror {
        with_v2_mounted(scratch, |mnt| {
            let d = mnt.join(rel);
            rmdir_tree(&d)?;
            remove_parent_if_empty(&d);
            Ok(())
        })?;
    }
    Ok(())
}

/// Drops the shared `pgha-lab` cgroup once its last machine is gone (fails harmlessly before).
fn remove_parent_if_empty(dir: &Path) {
    if let Some(parent) = dir.parent().filter(|p| p.ends_with("pgha-lab")) {
        let _ = std::fs::remove_dir(parent);
    }
}

/// rmdir a cgroup and its children, deepest first (a cgroup directory holds only control files).
fn rmdir_tree(dir: &Path) -> Result<()> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            rmdir_tree(&e.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(LabError::io("removing cgroup", dir)(e)),
        _ => Ok(()),
    }
}
