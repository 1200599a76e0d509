//! SSH for the lab: the lab key pair, each host's own host keys (made before its first boot, so
//! they are known before it answers), the lab known_hosts file, and the ssh argv that checks host
//! keys strictly against it.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::cmd::{self, run_args};
use super::error::{LabError, Result};
use super::fsutil::write_atomic;
use super::paths::LabPaths;

/// Creates the lab key pair unless it exists.
pub fn ensure_lab_key(paths: &LabPaths) -> Result<bool> {
    let key = paths.key();
    if key.exists() && paths.public_key().exists() {
        return Ok(false);
    }
    let dir = paths.ssh_dir();
    std::fs::create_dir_all(&dir).map_err(LabError::io("creating", &dir))?;
    let _ = std::fs::remove_file(&key);
    let _ = std::fs::remove_file(paths.public_key());
    let mut args: Vec<std::ffi::OsString> = ["-q", "-t", "ed25519", "-N", "", "-C", "pgha-lab", "-f"]
        .iter()
        .map(Into::into)
        .collect();
    args.push(key.into_os_string());
    run_args("ssh-keygen", &args)?;
    Ok(true)
}

/// Host key types each lab host gets. RSA is left out: generating a 3072-bit key costs ~0.5 s
/// per host, and sshd is told (in [`SSHD_DROP_IN`]) to offer only these.
pub const HOST_KEY_TYPES: [&str; 2] = ["ed25519", "ecdsa"];

/// sshd drop-in naming the host keys the lab generates (written into each host).
pub const SSHD_DROP_IN: &str = "# pgha lab: each host has its own keys, made before its first boot.\n\
HostKey /etc/ssh/ssh_host_ed25519_key\n\
HostKey /etc/ssh/ssh_host_ecdsa_key\n";

/// Gives a host root its own host keys unless it has them.
pub fn ensure_host_keys(rootfs: &Path) -> Result<bool> {
    let mut made = false;
    for kind in HOST_KEY_TYPES {
        let key = rootfs.join(format!("etc/ssh/ssh_host_{kind}_key"));
        if key.exists() && key.with_extension("pub").exists() {
            continue;
        }
        let _ = std::fs::remove_file(&key);
        let mut args: Vec<std::ffi::OsString> = ["-q", "-t", kind, "-N", "", "-C", "root@pgha-lab", "-f"]
            .iter()
            .map(Into::into)
            .collect();
        args.push(key.into_os_string());
        run_args("ssh-keygen", &args)?;
        made = true;
    }
    Ok(made)
}

/// known_hosts lines for one host: every public host key, under its name and address.
pub fn known_hosts_lines(rootfs: &Path, name: &str, address: Ipv4Addr) -> Result<String> {
    let mut out = String::new();
    for kind in HOST_KEY_TYPES {
        let p = rootfs.join(format!("etc/ssh/ssh_host_{kind}_key.pub"));
        let Ok(text) = std::fs::read_to_string(&p) else {
            continue;
        };
        let mut w = text.split_whitespace();
        if let (Some(t), Some(k)) = (w.next(), w.next()) {
            out.push_str(&format!("{name},{address} {t} {k}\n"));
        }
    }
    Ok(out)
}

/// Writes the lab known_hosts file (atomically; unchanged content is not rewritten).
pub fn write_known_hosts(paths: &LabPaths, content: &str) -> Result<bool> {
    write_atomic(&paths.known_hosts(), content.as_bytes(), 0o644)
}

/// The ssh options every lab connection uses: the lab key only, strict host key checking
/// against the lab known_hosts, no prompts.
pub fn ssh_options(paths: &LabPaths) -> Vec<String> {
    let o = |s: String| ["-o".to_string(), s];
    let mut v = vec!["-i".to_string(), paths.key().display().to_string()];
    v.extend(o("IdentitiesOnly=yes".into()));
    v.extend(o("StrictHostKeyChecking=yes".into()));
    v.extend(o(format!("UserKnownHostsFile={}", paths.known_hosts().display())));
    v.extend(o("GlobalKnownHostsFile=/dev/null".into()));
    v.extend(o("BatchMode=yes".into()));
    v.extend(o("ConnectTimeout=3".into()));
    v.extend(o("LogLevel=ERROR".into()));
    v
}

/// `ssh [options] USER@ADDRESS [COMMAND...]` as a command ready to run.
pub fn ssh_command(paths: &LabPaths, user: &str, address: Ipv4Addr, tty: bool, remote: &[String]) -> Command {
    let mut args = ssh_options(paths);
    if tty {
        args.push("-t".into());
    }
    args.push(format!("{user}@{address}"));
    // One word is a shell command line (as with `ssh host 'cmd'`); several words are an argv,
    // each quoted so that the remote shell sees them unchanged.
    match remote {
        [] => {}
        [line] => {
            args.push("--".into());
            args.push(line.clone());
        }
        words => {
            args.push("--".into());
            args.push(
                words
                    .iter()
                    .map(|w| crate::transport::cmd::quote(w))
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
    }
    cmd::command("ssh", &args)
}

/// Waits until `ssh root@address` answers (host key checked), then until systemd in the host has
/// finished booting (`systemctl is-system-running --wait`: before that, pam_nologin refuses
/// non-root logins). Fails after `timeout`. `alive` is asked between attempts and stops the wait
/// early when the machine died. Returns the time waited and the final system state
/// (`running`, or `degraded` with the failed units).
pub fn wait_for_ssh(
    paths: &LabPaths,
    host: &str,
    address: Ipv4Addr,
    timeout: Duration,
    log: &Path,
    alive: &dyn Fn() -> bool,
) -> Result<(Duration, String)> {
    let start = Instant::now();
    let wait = format!("timeout {} systemctl is-system-running --wait", timeout.as_secs());
    loop {
        let out = cmd::output(ssh_command(paths, "root", address, false, std::slice::from_ref(&wait)))?;
        let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.code() != Some(255) && (state == "running" || state == "degraded") {
            let state = if state == "degraded" {
                let failed = cmd::output(ssh_command(
                    paths,
                    "root",
                    address,
                    false,
                    &["systemctl --failed --plain --no-legend".to_string()],
                ))?;
                format!(
                    "degraded ({})",
                    String::from_utf8_lossy(&failed.stdout)
                        .split_whitespace()
                        .filter(|w| w.contains('.'))
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            } else {
                state
            };
            return Ok((start.elapsed(), state));
        }
        let last = if state.is_empty() {
            String::from_utf8_lossy(&out.stderr).trim().to_string()
        } else {
            format!("systemd is {state}")
        };
        if !alive() {
            return Err(LabError::MachineDied {
                host: host.to_string(),
                log: log.to_path_buf(),
            });
        }
        if start.elapsed() > timeout {
            return Err(LabError::Timeout {
                host: host.to_string(),
                what: "sshd",
                secs: timeout.as_secs(),
                detail: last,
                log: log.to_path_buf(),
            });
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
