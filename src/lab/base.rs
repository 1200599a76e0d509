//! The cached base image of a release: debootstrap minbase + systemd, sshd, sudo, iproute2 and
//! ca-certificates, a `pgha` sudo user, and the apt lists and .deb cache pre-filled with every
//! package pgha installs, so lab hosts install them with no network. Built in
//! `base-<release>.partial` and renamed into place only when complete, so a killed build never
//! leaves an image that looks finished.

use std::ffi::OsString;
use std::path::Path;

use super::Progress;
use super::cmd::{self, run};
use super::error::{LabError, Result};
use super::fsutil::{remove_tree, unmount_under, write_atomic};
use super::paths::LabPaths;
use super::topology::Release;

/// Written last into a complete image; its absence means "not built".
pub const MARKER: &str = ".pgha-lab-base";

/// Packages debootstrap adds to minbase.
pub const INCLUDE: &str = "systemd,systemd-sysv,openssh-server,sudo,iproute2,ca-certificates";

/// Whether the base image of `release` is complete and caches today's package list.
pub fn is_built(paths: &LabPaths, release: Release) -> bool {
    let want = format!("packages: {}", release.cluster_packages().join(" "));
    std::fs::read_to_string(paths.base(release.as_str()).join(MARKER)).is_ok_and(|m| m.lines().any(|l| l == want))
}

/// Base images whose package list is outdated, set aside (running machines may still have
/// them as their overlay's lower layer); removed by `down`.
fn stale_dir(paths: &LabPaths, release: Release) -> std::path::PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    paths.root().join(format!("base-{}.stale-{stamp}", release.as_str()))
}

/// Removes set-aside base images (call only when no machine runs).
pub fn remove_stale(paths: &LabPaths) -> Result<()> {
    if let Ok(rd) = std::fs::read_dir(paths.root()) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().contains(".stale-") {
                remove_tree(&e.path())?;
            }
        }
    }
    Ok(())
}

/// Builds the base image unless it is already complete. Returns whether it built one.
pub fn ensure_base(paths: &LabPaths, release: Release, mirror: &str, progress: Progress) -> Result<bool> {
    let rel = release.as_str();
    let base = paths.base(rel);
    if is_built(paths, release) {
        return Ok(false);
    }
    if base.join(MARKER).exists() {
        // Complete, but it caches an older package list: set it aside (machines still running
        // on it keep working) and build a new one.
        let aside = stale_dir(paths, release);
        std::fs::rename(&base, &aside).map_err(LabError::io("setting aside", &base))?;
    }
    // An image directory without its marker was not made by a completed build: rebuild.
    remove_tree(&base)?;
    let partial = paths.base_partial(rel);
    remove_tree(&partial)?;
    std::fs::create_dir_all(&partial).map_err(LabError::io("creating", &partial))?;
    let result = build(&partial, release, mirror, progress);
    // debootstrap mounts /proc and /sys inside the target while it runs; never leave them.
    unmount_under(&partial)?;
    result?;
    std::fs::rename(&partial, &base).map_err(LabError::io("renaming into place", &base))?;
    Ok(true)
}

fn build(root: &Path, release: Release, mirror: &str, progress: Progress) -> Result<()> {
    let rel = release.as_str();
    progress(&format!("lab: debootstrap {rel} (minbase + systemd, sshd, sudo)"));
    let args: Vec<OsString> = vec![
        "--variant=minbase".into(),
        format!("--include={INCLUDE}").into(),
        rel.into(),
        root.as_os_str().to_owned(),
        mirror.into(),
    ];
    run(cmd::command("debootstrap", &args))?;

    progress(&format!(
        "lab: caching the cluster packages in the {rel} image (apt-get install --download-only)"
    ));
    chroot(root, &["apt-get", "-q", "update"])?;
    let mut install = vec!["apt-get", "-q", "-y", "install", "--download-only"];
    let pkgs = release.cluster_packages();
    install.extend(pkgs.iter().map(String::as_str));
    chroot(root, &install)?;

    progress("lab: adding user pgha (passwordless sudo), clearing host identity");
    chroot(root, &["useradd", "--create-home", "--shell", "/bin/bash", "pgha"])?;
    write_atomic(
        &root.join("etc/sudoers.d/pgha"),
        b"pgha ALL=(ALL:ALL) NOPASSWD: ALL\n",
        0o440,
    )?;
    write_atomic(
        &root.join("etc/apt/apt.conf.d/90pgha-lab"),
        b"// pgha lab: keep the pre-filled .deb cache; hosts have no network.\n\
          Binary::apt::APT::Keep-Downloaded-Packages \"true\";\n\
          APT::Keep-Downloaded-Packages \"true\";\n\
          Acquire::Retries \"0\";\n",
        0o644,
    )?;
    for entry in std::fs::read_dir(root.join("etc/ssh")).map_err(LabError::io("listing", root.join("etc/ssh")))? {
        let p = entry.map_err(LabError::io("listing", root.join("etc/ssh")))?.path();
        if p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("ssh_host_"))
        {
            std::fs::remove_file(&p).map_err(LabError::io("removing", &p))?;
        }
    }
    // Empty machine-id: each host gets its own before first boot.
    write_atomic(&root.join("etc/machine-id"), b"", 0o444)?;
    let dbus_id = root.join("var/lib/dbus/machine-id");
    if dbus_id.symlink_metadata().is_ok_and(|m| m.is_file()) {
        std::fs::remove_file(&dbus_id).map_err(LabError::io("removing", &dbus_id))?;
    }
    let marker = format!("release: {rel}\nmirror: {mirror}\npackages: {}\n", pkgs.join(" "));
    write_atomic(&root.join(MARKER), marker.as_bytes(), 0o644)?;
    Ok(())
}

fn chroot(root: &Path, argv: &[&str]) -> Result<String> {
    let mut args: Vec<OsString> = vec![root.as_os_str().to_owned()];
    args.extend(argv.iter().map(OsString::from));
    let mut c = cmd::command("chroot", &args);
    c.env("DEBIAN_FRONTEND", "noninteractive");
    run(c)
}

/// Deletes the cached base images of every release (and any partial build).
pub fn purge(paths: &LabPaths) -> Result<()> {
    remove_stale(paths)?;
    for rel in [Release::Trixie, Release::Bookworm] {
        remove_tree(&paths.base_partial(rel.as_str()))?;
        remove_tree(&paths.base(rel.as_str()))?;
    }
    Ok(())
}
