//! One lab machine: its overlay root over the shared base, the files that make it itself
//! (hostname, /etc/hosts, machine-id, host keys, authorized keys), and its systemd-nspawn process
//! — started detached, tracked by PID and start time, and stopped like a power cut by SIGKILL to
//! the container's init, which takes its whole PID namespace down.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use super::cgroup;
use super::cmd;
use super::error::{LabError, Result};
use super::fsutil::{is_mounted, write_atomic};
use super::net;
use super::paths::HostPaths;
use super::procfs;
use super::sshkeys;
use super::state::{MachineRecord, ProcessId};
use super::topology::HostSpec;

/// Mounts the host's overlay root (base image below, the host's own upper layer above) unless it
/// is mounted. Returns whether it mounted it.
pub fn ensure_root(hp: &HostPaths, base: &Path) -> Result<bool> {
    let root = hp.rootfs();
    for d in [hp.upper(), hp.work(), root.clone()] {
        std::fs::create_dir_all(&d).map_err(LabError::io("creating", &d))?;
    }
    if is_mounted(&root)? {
        return Ok(false);
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        base.display(),
        hp.upper().display(),
        hp.work().display()
    );
    cmd::run_args(
        "mount",
        &["-t", "overlay", "overlay", "-o", &opts, &root.display().to_string()],
    )?;
    Ok(true)
}

/// The /etc/hosts every lab host gets: localhost and every lab host by name and by its extra
/// names.
pub fn etc_hosts(hosts: &[HostSpec]) -> String {
    let mut s =
        String::from("# written by pgha lab\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for h in hosts {
        s.push_str(&format!("{}\t{}", h.address, h.name));
        for n in &h.names {
            s.push_str(&format!(" {n}"));
        }
        s.push('\n');
    }
    s
}

/// Writes what makes the host itself into its (mounted) root. Idempotent: unchanged files are not
/// rewritten, an existing machine-id and host keys are kept.
pub fn personalize(hp: &HostPaths, host: &HostSpec, all: &[HostSpec], public_key: &str) -> Result<()> {
    let root = hp.rootfs();
    write_atomic(&root.join("etc/hostname"), format!("{}\n", host.name).as_bytes(), 0o644)?;
    write_atomic(&root.join("etc/hosts"), etc_hosts(all).as_bytes(), 0o644)?;
    let mid = root.join("etc/machine-id");
    if std::fs::read_to_string(&mid)
        .map(|s| s.trim().len() != 32)
        .unwrap_or(true)
    {
        write_atomic(&mid, format!("{}\n", random_hex16()?).as_bytes(), 0o444)?;
    }
    sshkeys::ensure_host_keys(&root)?;
    write_atomic(
        &root.join("etc/ssh/sshd_config.d/pgha-lab.conf"),
        sshkeys::SSHD_DROP_IN.as_bytes(),
        0o644,
    )?;
    let (uid, gid) = user_ids(&root, "pgha").unwrap_or((0, 0));
    for (home, uid, gid) in [(root.join("root"), 0, 0), (root.join("home/pgha"), uid, gid)] {
        let dir = home.join(".ssh");
        std::fs::create_dir_all(&dir).map_err(LabError::io("creating", &dir))?;
        set_mode(&dir, 0o700)?;
        let ak = dir.join("authorized_keys");
        write_atomic(&ak, public_key.as_bytes(), 0o600)?;
        for p in [&dir, &ak] {
            std::os::unix::fs::lchown(p, Some(uid), Some(gid)).map_err(LabError::io("chown", p.as_path()))?;
        }
    }
    Ok(())
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(LabError::io("chmod", p))
}

fn random_hex16() -> Result<String> {
    use std::io::Read;
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(LabError::io("reading", "/dev/urandom"))?;
    Ok(hex::encode(b))
}

/// uid and gid of `user` in the host's /etc/passwd.
fn user_ids(root: &Path, user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&user) && f.len() > 3).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// The running machine of a host, if its recorded process is still alive.
pub fn running(hp: &HostPaths) -> Option<MachineRecord> {
    MachineRecord::load(&hp.machine()).filter(procfs::is_alive)
}

/// Boots the host with systemd-nspawn in its network namespace, detached from this process, and
/// records its PID and its init's. Does nothing if it already runs. Returns whether it started it.
pub fn start(hp: &HostPaths, name: &str) -> Result<bool> {
    if running(hp).is_some() {
        return Ok(false);
    }
    // A container whose nspawn was killed from outside keeps running: end it first.
    stop(hp, name)?;
    let log_path = hp.console();
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(LabError::io("opening", &log_path))?;
    let err = log.try_clone().map_err(LabError::io("opening", &log_path))?;
    let args = [
        "--quiet".to_string(),
        "-D".into(),
        hp.rootfs().display().to_string(),
        "--boot".into(),
        // No systemd as PID 1 on the controller: without these nspawn wants the system bus.
        "--keep-unit".into(),
        "--register=no".into(),
        format!("--network-namespace-path={}", net::netns_path(name)),
        // With a namespace path this unshares nothing (systemd 252 nspawn.c: the pair is
        // allowed); it keeps CAP_NET_ADMIN and a writable /proc/sys/net in the machine, which
        // keepalived needs to add and remove a VIP (docs/entry-points.md).
        "--private-network".into(),
        format!("--machine={name}"),
        "--console=read-only".into(),
    ];
    let mut c = cmd::command("systemd-nspawn", &args);
    c.stdin(Stdio::null()).stdout(log).stderr(err).process_group(0);
    let cg = cgroup::create(name, &hp.cgroup_scratch())?;
    let fds: Vec<i32> = cg
        .iter()
        .flat_map(|cg| cg.procs.iter().map(|f| f.as_raw_fd()))
        .collect();
    // SAFETY: runs in the forked child before exec; it only calls write(2) and close_range(2),
    // which are async-signal-safe, on descriptors opened by the parent (the Vec is only read).
    unsafe {
        c.pre_exec(move || {
            // Writing "0" to cgroup.procs moves the writing process into that cgroup.
            for &fd in &fds {
                if libc::write(fd, b"0".as_ptr().cast(), 1) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // The machine outlives this process: it must not keep any descriptor it inherited
            // (a caller's lock file, a test harness's pipe), or that lock stays held and that
            // pipe never reaches EOF while the lab is up. Every descriptor above stderr closes
            // at exec; std's own exec-error pipe is close-on-exec already.
            if libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as i32) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let text = cmd::describe(&c);
    let child = c.spawn().map_err(|source| LabError::Spawn { command: text, source })?;
    let pid = child.id() as i32;
    let start_ticks = procfs::start_ticks(pid).unwrap_or(0);
    let started_at = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut rec = MachineRecord {
        pid,
        start_ticks,
        started_at,
        init: None,
        cgroup: None,
        cgroup_v2_mirror: None,
    };
    if let Some(cg) = cg {
        rec.cgroup = Some(cg.dir);
        rec.cgroup_v2_mirror = cg.v2_mirror;
    }
    rec.save(&hp.machine())?;
    // The init appears within milliseconds; record it so it can be ended even without its nspawn.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && procfs::is_alive(&rec) {
        if let Some(init) = procfs::container_init(pid) {
            rec.init = procfs::start_ticks(init).map(|t| ProcessId {
                pid: init,
                start_ticks: t,
            });
            rec.save(&hp.machine())?;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(true)
}

/// Powers the host off abruptly, like a crash: SIGKILL to its init kills every process in its PID
/// namespace; then waits for systemd-nspawn to exit and checks that nothing of it is left. Works
/// from the record alone when systemd-nspawn was killed from outside. Returns whether anything of
/// the host was running.
pub fn stop(hp: &HostPaths, name: &str) -> Result<bool> {
    let Some(rec) = MachineRecord::load(&hp.machine()) else {
        return Ok(false);
    };
    let nspawn_alive = procfs::is_alive(&rec);
    let init = if nspawn_alive {
        procfs::container_init(rec.pid)
    } else {
        None
    }
    .or_else(|| rec.init.filter(|i| procfs::is_alive_id(*i)).map(|i| i.pid));
    if !nspawn_alive && init.is_none() {
        if let Some(dir) = &rec.cgroup {
            cgroup::remove(dir, rec.cgroup_v2_mirror.as_deref(), &hp.cgroup_scratch())?;
        }
        std::fs::remove_file(hp.machine()).map_err(LabError::io("removing", hp.machine()))?;
        return Ok(false);
    }
    let ns = init.and_then(procfs::pid_ns);
    match init {
        Some(p) => procfs::kill(p),
        None => procfs::kill(rec.pid),
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut nspawn_killed = init.is_none();
    loop {
        let left = ns.as_deref().map(procfs::pids_in_ns).unwrap_or_default();
        let nspawn_alive = procfs::is_alive(&rec);
        if left.is_empty() && !nspawn_alive {
            break;
        }
        if !nspawn_killed && Instant::now() + Duration::from_secs(10) > deadline {
            // nspawn should exit by itself once its container died; make sure it does.
            procfs::kill(rec.pid);
            nspawn_killed = true;
        }
        if Instant::now() > deadline {
            let mut pids = left;
            if nspawn_alive {
                pids.push(rec.pid);
            }
            return Err(LabError::StillRunning {
                host: name.to_string(),
                pids,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(dir) = &rec.cgroup {
        cgroup::remove(dir, rec.cgroup_v2_mirror.as_deref(), &hp.cgroup_scratch())?;
    }
    std::fs::remove_file(hp.machine()).map_err(LabError::io("removing", hp.machine()))?;
    Ok(true)
}

/// Whether a running host's init is in the network namespace now named for it.
pub fn in_own_netns(hp: &HostPaths, name: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(init) = running(hp).and_then(|r| procfs::container_init(r.pid)) else {
        return true;
    };
    let ours = std::fs::metadata(format!("/proc/{init}/ns/net")).map(|m| m.ino());
    let named = std::fs::metadata(net::netns_path(name)).map(|m| m.ino());
    matches!((ours, named), (Ok(a), Ok(b)) if a == b)
}

/// Processes of a running host (everything in its PID namespace).
pub fn processes(rec: &MachineRecord) -> Vec<i32> {
    procfs::container_init(rec.pid)
        .and_then(procfs::pid_ns)
        .map(|ns| procfs::pids_in_ns(&ns))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::topology::{DEFAULT_SUBNET, Subnet, default_hosts};

    #[test]
    fn hosts_file_names_every_host() {
        let hosts = default_hosts(Subnet::parse_lab(DEFAULT_SUBNET).expect("valid"));
        let text = etc_hosts(&hosts);
        assert!(text.contains("10.213.77.11\tnode1\n"));
        assert!(text.contains("10.213.77.41\tpgbouncer\n"));
    }

    #[test]
    fn hosts_file_names_extra_names_on_their_host_line() {
        let mut hosts = default_hosts(Subnet::parse_lab(DEFAULT_SUBNET).expect("valid"));
        hosts[6].names = vec!["db.example.com".into(), "db2.example.com".into()];
        let text = etc_hosts(&hosts);
        assert!(
            text.contains(&format!(
                "{}\t{} db.example.com db2.example.com\n",
                hosts[6].address, hosts[6].name
            )),
            "{text}"
        );
    }

    #[test]
    fn finds_user_ids() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(d.path().join("etc")).expect("mkdir");
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\npgha:x:1000:1001::/home/pgha:/bin/bash\n",
        )
        .expect("write");
        assert_eq!(user_ids(d.path(), "pgha"), Some((1000, 1001)));
        assert_eq!(user_ids(d.path(), "nobody"), None);
    }
}
