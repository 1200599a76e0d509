//! File-system helpers the lab needs: atomic writes, the mount table, unmounting and deleting a
//! tree only when nothing is mounted inside it.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::cmd;
use super::error::{LabError, Result};

/// Writes `data` to `path` through a temporary file in the same directory and a rename, so a
/// reader sees the old file or the new one, never half of one. Returns whether it changed.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<bool> {
    use std::os::unix::fs::OpenOptionsExt;
    if std::fs::read(path).is_ok_and(|old| old == data) {
        return Ok(false);
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(LabError::io("creating", dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(LabError::io("creating", &tmp))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(LabError::io("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(LabError::io("renaming into place", path))?;
    Ok(true)
}

/// Takes an exclusive lock on `path` (created if needed), waiting for another holder; released
/// when the returned file is dropped. The descriptor is close-on-exec, so machines started
/// meanwhile do not keep it.
pub fn lock(path: &Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(LabError::io("creating", dir))?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(LabError::io("opening", path))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(LabError::io("locking", path)(std::io::Error::last_os_error()));
    }
    Ok(f)
}

/// Mount points currently in this mount namespace (decoded from /proc/self/mountinfo).
pub fn mount_points() -> Result<Vec<PathBuf>> {
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(LabError::io("reading", "/proc/self/mountinfo"))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mount(p)))
        .collect())
}

/// mountinfo escapes space, tab, newline and backslash as octal `\040` etc.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok())
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `path` is a mount point.
pub fn is_mounted(path: &Path) -> Result<bool> {
    Ok(mount_points()?.iter().any(|m| m == path))
}

/// Mount points at or below `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = mount_points()?.into_iter().filter(|m| m.starts_with(dir)).collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v.dedup();
    Ok(v)
}

/// Unmounts everything at or below `dir` (deepest first, lazily if busy).
pub fn unmount_under(dir: &Path) -> Result<()> {
    for _ in 0..4 {
        let mounts = mounts_under(dir)?;
        if mounts.is_empty() {
            return Ok(());
        }
        for m in mounts {
            if cmd::run_args("umount", &[m.as_os_str()]).is_err() {
                cmd::run_args("umount", &[std::ffi::OsStr::new("-l"), m.as_os_str()])?;
            }
        }
    }
    Ok(())
}

/// Deletes a directory tree after making sure nothing is mounted inside it, without crossing
/// into other file systems.
pub fn remove_tree(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    unmount_under(dir)?;
    let left = mounts_under(dir)?;
    if !left.is_empty() {
        return Err(LabError::StillMounted {
            path: dir.to_path_buf(),
            mounts: left.iter().map(|p| p.display().to_string()).collect(),
        });
    }
    cmd::run_args(
        "rm",
        &[
            std::ffi::OsStr::new("-rf"),
            std::ffi::OsStr::new("--one-file-system"),
            dir.as_os_str(),
        ],
    )?;
    Ok(())
}

/// Free space, in MiB, on the file system holding `path` (or its nearest existing parent).
pub fn free_mib(path: &Path) -> Result<u64> {
    let mut p = path;
    while !p.exists() {
        p = p.parent().unwrap_or(Path::new("/"));
    }
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).map_err(|_| LabError::Io {
        action: "checking free space of",
        path: p.into(),
        source: std::io::ErrorKind::InvalidInput.into(),
    })?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and st a properly sized out-parameter.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(LabError::Io {
            action: "checking free space of",
            path: p.into(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64 / (1024 * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo() {
        assert_eq!(unescape_mount("/a\\040b"), "/a b");
        assert_eq!(unescape_mount("/plain"), "/plain");
    }

    #[test]
    fn atomic_write_reports_change() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("x.yaml");
        assert!(write_atomic(&p, b"a", 0o644).expect("write"));
        assert!(!write_atomic(&p, b"a", 0o644).expect("write"));
        assert!(write_atomic(&p, b"b", 0o644).expect("write"));
        assert_eq!(std::fs::read(&p).expect("read"), b"b");
    }
}
