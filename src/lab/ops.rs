//! The lab's commands, each a sequence of idempotent steps: `up`, `down`, `status`, `stop`,
//! `start`, `partition`, `heal`, `ssh`. Each step checks before it acts, so `up` completes a
//! half-finished lab and only checks a complete one, and `down` removes whatever is left, from
//! what is on disk, even after the processes were killed from outside.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant, SystemTime};

use super::error::{LabError, Result};
use super::inventory::{self, Login};
use super::paths::LabPaths;
use super::state::{BRIDGE, LabState};
use super::topology::{
    DEFAULT_SUBNET, HostSpec, Release, Subnet, WantedHost, assign_addresses, default_hosts, diff_hosts,
};
use super::{Progress, base, cmd, from, fsutil, machine, mirror, net, preflight, procfs, sshkeys};

/// How long a host may take from boot to an answering sshd.
const SSH_TIMEOUT: Duration = Duration::from_secs(120);

/// What `pgha lab up` was asked for.
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// Release of the hosts (default: the running lab's, else trixie).
    pub release: Option<Release>,
    /// Lab subnet (default: the running lab's, else [`DEFAULT_SUBNET`]).
    pub subnet: Option<Subnet>,
    /// Debian mirror for the base image (default: from the machine's apt configuration).
    pub mirror: Option<String>,
    /// Where to write the inventory.
    pub inventory: PathBuf,
    /// Account the inventory logs in as.
    pub login: Login,
    /// One machine per host of this inventory, instead of the default eight.
    pub from: Option<PathBuf>,
}

/// What `up` did.
#[derive(Clone, Debug)]
pub struct UpReport {
    /// The base image was built by this run.
    pub built_base: bool,
    /// Hosts this run booted.
    pub booted: Vec<String>,
    /// Hosts this run removed (no longer wanted).
    pub removed: Vec<String>,
    /// How many hosts the lab has now.
    pub hosts: usize,
    /// Other things this run created or changed.
    pub changed: Vec<String>,
    /// The inventory written.
    pub inventory: PathBuf,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

fn require_state(paths: &LabPaths) -> Result<LabState> {
    LabState::load(&paths.state())?.ok_or_else(|| LabError::NoLab { path: paths.state() })
}

/// Settles the lab's settings: those on disk if a lab exists (refusing different ones), else the
/// options or the defaults; and its hosts: those wanted, with the addresses of those it has.
fn settle_state(old: Option<LabState>, opts: &UpOptions, wanted: &[WantedHost]) -> Result<(LabState, bool)> {
    if let Some(mut s) = old {
        if let Some(r) = opts.release.filter(|r| *r != s.release) {
            return Err(LabError::SettingsDiffer {
                what: "release",
                current: s.release.to_string(),
                requested: r.to_string(),
            });
        }
        if let Some(n) = opts.subnet.filter(|n| n.to_string() != s.subnet) {
            return Err(LabError::SettingsDiffer {
                what: "subnet",
                current: s.subnet.clone(),
                requested: n.to_string(),
            });
        }
        s.hosts = assign_addresses(s.subnet()?, wanted, &s.hosts)?;
        return Ok((s, false));
    }
    let subnet = match opts.subnet {
        Some(s) => s,
        None => Subnet::parse_lab(DEFAULT_SUBNET)?,
    };
    let state = LabState {
        release: opts.release.unwrap_or(Release::Trixie),
        subnet: subnet.to_string(),
        bridge: BRIDGE.to_string(),
        hosts: assign_addresses(subnet, wanted, &[])?,
        made_netns_dir_mount: !net::netns_dir_mounted(),
    };
    Ok((state, true))
}

/// The hosts this lab directory has machines (or leftovers) for: those of the state file and
/// those with a host directory.
fn present_hosts(paths: &LabPaths, state: Option<&LabState>) -> Vec<String> {
    let mut names: Vec<String> = state
        .map(|s| s.hosts.iter().map(|h| h.name.clone()).collect())
        .unwrap_or_default();
    if let Ok(rd) = std::fs::read_dir(paths.hosts()) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    names
}

/// Removes one machine and everything of it: its process, veth, namespace, overlay mount and
/// disk. The host directory goes last, so an interrupted removal is found and finished later.
fn remove_host(paths: &LabPaths, name: &str, progress: Progress) -> Result<()> {
    let hp = paths.host(name);
    if machine::stop(&hp, name)? {
        progress(&format!("lab: {name} powered off"));
    }
    net::remove_host_net(name)?;
    fsutil::remove_tree(&hp.dir)
}

/// Brings the lab up, or completes it, or checks it; then writes the inventory.
pub fn up(paths: &LabPaths, opts: &UpOptions, progress: Progress) -> Result<UpReport> {
    let t0 = Instant::now();
    // The inventory first: a bad one is refused before anything (even the root check).
    let shape = opts.from.as_deref().map(from::read).transpose()?;
    preflight::require_root()?;
    let _lock = fsutil::lock(&paths.lock())?;
    preflight::require_tools()?;
    let old = LabState::load(&paths.state())?;
    let present = present_hosts(paths, old.as_ref());
    let wanted: Vec<WantedHost> = match &shape {
        Some(s) => s.hosts.clone(),
        None => {
            // The default eight, at their default addresses unless a kept machine has another.
            let subnet = match (&old, opts.subnet) {
                (Some(s), _) => s.subnet()?,
                (None, Some(n)) => n,
                (None, None) => Subnet::parse_lab(DEFAULT_SUBNET)?,
            };
            default_hosts(subnet).iter().map(WantedHost::from).collect()
        }
    };
    let (state, fresh) = settle_state(old, opts, &wanted)?;
    let diff = diff_hosts(&present, &state.hosts);
    let subnet = state.subnet()?;
    let release = state.release;
    let need_base = !base::is_built(paths, release);
    // Base image ~0.5 GiB; a host with the cluster packages installed ~0.5-0.7 GiB of its own.
    preflight::require_disk(paths.root(), if need_base { 4096 } else { 3072 })?;
    if fresh {
        refuse_foreign_network(paths, &state.hosts, Some(&state.bridge))?;
    } else {
        let added: Vec<HostSpec> = state
            .hosts
            .iter()
            .filter(|h| diff.add.contains(&h.name))
            .cloned()
            .collect();
        refuse_foreign_network(paths, &added, None)?;
    }
    if !net::link_exists(&state.bridge) {
        net::check_subnet_free(subnet, &state.bridge)?;
    }
    let mirror = match (&opts.mirror, need_base) {
        (Some(m), _) => Some(m.clone()),
        (None, true) => Some(mirror::from_apt_config(Path::new("/etc/apt")).ok_or(LabError::NoMirror)?),
        (None, false) => None,
    };
    // Everything is checked: from here on, record first, then create.
    std::fs::create_dir_all(paths.root()).map_err(LabError::io("creating", paths.root()))?;
    // Hosts no longer wanted keep their directory until they are removed (below), so an
    // interrupted run still finds them.
    state.save(&paths.state())?;
    let mut changed = Vec::new();
    for name in &diff.remove {
        progress(&format!("lab: removing {name}"));
        remove_host(paths, name, progress)?;
    }
    let mut built_base = false;
    if need_base {
        let m = mirror.as_deref().unwrap_or_default();
        progress(&format!(
            "lab: building base image {release} (first time, about 1-2 min) from {m}"
        ));
        built_base = base::ensure_base(paths, release, m, progress)?;
    }
    if sshkeys::ensure_lab_key(paths)? {
        changed.push("lab key pair".to_string());
    }
    let public_key =
        std::fs::read_to_string(paths.public_key()).map_err(LabError::io("reading", paths.public_key()))?;
    if net::ensure_bridge(&state.bridge, subnet)? {
        changed.push(format!("bridge {}", state.bridge));
    }
    let base_dir = paths.base(release.as_str());
    let mut known = String::new();
    for h in &state.hosts {
        let hp = paths.host(&h.name);
        if machine::ensure_root(&hp, &base_dir)? {
            changed.push(format!("{}: overlay root mounted", h.name));
        }
        machine::personalize(&hp, h, &state.hosts, &public_key)?;
        if net::ensure_host_net(&h.name, h.address, subnet, &state.bridge)? {
            changed.push(format!("{}: network namespace and veth", h.name));
        }
        // A machine still running in a namespace that was deleted (and so replaced) above has no
        // network: power it off; it boots again below.
        if machine::running(&hp).is_some() && !machine::in_own_netns(&hp, &h.name) {
            progress(&format!("lab: {} lost its network namespace; restarting it", h.name));
            machine::stop(&hp, &h.name)?;
        }
        known.push_str(&sshkeys::known_hosts_lines(&hp.rootfs(), &h.name, h.address)?);
    }
    if sshkeys::write_known_hosts(paths, &known)? {
        changed.push("known_hosts".to_string());
    }
    let mut booted = Vec::new();
    for h in &state.hosts {
        if machine::start(&paths.host(&h.name), &h.name)? {
            booted.push(h.name.clone());
        }
    }
    if !booted.is_empty() {
        progress(&format!("lab: booting {}", booted.join(", ")));
    }
    wait_all_ssh(paths, &state.hosts, progress)?;
    let text = match &shape {
        Some(s) => {
            let subnet = state.subnet()?;
            let text = inventory::render_from(paths, &state.hosts, opts.login, &s.source, subnet);
            inventory::check_copy(&s.source, &opts.inventory, &text)?;
            text
        }
        None => inventory::render(paths, &state.hosts, opts.login),
    };
    if inventory::write(&opts.inventory, &text)? {
        changed.push(format!("inventory {}", opts.inventory.display()));
    }
    Ok(UpReport {
        built_base,
        booted,
        removed: diff.remove,
        hosts: state.hosts.len(),
        changed,
        inventory: opts.inventory.clone(),
        elapsed: t0.elapsed(),
    })
}

/// Before a new lab or new hosts are made: their bridge and namespaces must not exist yet
/// (another lab directory, or leftovers, would be disturbed or would disturb them).
fn refuse_foreign_network(paths: &LabPaths, hosts: &[HostSpec], bridge: Option<&str>) -> Result<()> {
    let mut found = Vec::new();
    if let Some(b) = bridge.filter(|b| net::link_exists(b)) {
        found.push(format!("bridge {b}"));
    }
    for h in hosts {
        if net::netns_exists(&h.name) {
            found.push(format!("network namespace {}", net::netns_name(&h.name)));
        }
        if net::link_exists(&net::veth_name(&h.name)) {
            found.push(format!("interface {}", net::veth_name(&h.name)));
        }
    }
    match found.is_empty() {
        true => Ok(()),
        false => Err(LabError::ForeignNetwork {
            what: found.join(", "),
            state: paths.state(),
        }),
    }
}

/// Waits for every host's sshd in parallel.
fn wait_all_ssh(paths: &LabPaths, hosts: &[HostSpec], progress: Progress) -> Result<()> {
    let results: Vec<(String, Result<(Duration, String)>)> = std::thread::scope(|s| {
        let handles: Vec<_> = hosts
            .iter()
            .map(|h| {
                let hp = paths.host(&h.name);
                s.spawn(move || {
                    let alive = || machine::running(&hp).is_some();
                    (
                        h.name.clone(),
                        sshkeys::wait_for_ssh(paths, &h.name, h.address, SSH_TIMEOUT, &hp.console(), &alive),
                    )
                })
            })
            .collect();
        handles.into_iter().filter_map(|t| t.join().ok()).collect()
    });
    let mut slowest = Duration::ZERO;
    for (name, r) in results {
        let (d, state) = r?;
        slowest = slowest.max(d);
        if state != "running" {
            progress(&format!("lab: warning: {name} is {state}"));
        }
    }
    progress(&format!(
        "lab: all {} hosts booted, sshd answers ({:.1} s)",
        hosts.len(),
        slowest.as_secs_f64()
    ));
    Ok(())
}

/// Removes the whole lab: machines, mounts, namespaces, veths, bridge, state; `purge` also the
/// cached base images and the lab key pair.
pub fn down(paths: &LabPaths, purge: bool, progress: Progress) -> Result<()> {
    preflight::require_root()?;
    let _lock = fsutil::lock(&paths.lock())?;
    let state = LabState::load(&paths.state())?;
    // Network objects have global names: only touch those this lab directory shows it made
    // (its state file, or a host directory).
    let names = present_hosts(paths, state.as_ref());
    for name in &names {
        remove_host(paths, name, progress)?;
    }
    let _ = std::fs::remove_dir(paths.hosts());
    base::remove_stale(paths)?;
    if state.is_some() || !names.is_empty() {
        net::remove_bridge(state.as_ref().map_or(BRIDGE, |s| s.bridge.as_str()))?;
    }
    if state.as_ref().is_some_and(|s| s.made_netns_dir_mount) {
        net::release_netns_dir()?;
    }
    for f in [paths.state(), paths.known_hosts()] {
        match std::fs::remove_file(&f) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(LabError::io("removing", f)(e));
            }
            _ => {}
        }
    }
    if purge {
        progress("lab: removing cached base images and the lab key");
        base::purge(paths)?;
        fsutil::remove_tree(&paths.ssh_dir())?;
        let _ = std::fs::remove_dir(paths.root());
    }
    Ok(())
}

/// What `status` reports for one host.
#[derive(Clone, Debug, serde::Serialize)]
pub struct HostStatus {
    /// Host name.
    pub name: String,
    /// running, partitioned or stopped.
    pub state: &'static str,
    /// Lab address.
    pub address: Ipv4Addr,
    /// Seconds since its machine started.
    pub uptime_secs: Option<u64>,
    /// Whether sshd answered (with the host key checked).
    pub ssh: bool,
    /// Number of processes in the machine.
    pub processes: usize,
    /// Proportional set size of those processes, KiB.
    pub memory_kib: u64,
}

/// The state of every host.
pub fn status(paths: &LabPaths) -> Result<Vec<HostStatus>> {
    preflight::require_root()?;
    let state = require_state(paths)?;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(std::thread::scope(|s| {
        let handles: Vec<_> = state
            .hosts
            .iter()
            .map(|h| {
                s.spawn(move || {
                    let rec = machine::running(&paths.host(&h.name));
                    let pids = rec.as_ref().map(machine::processes).unwrap_or_default();
                    let ssh = rec.is_some()
                        && cmd::output(sshkeys::ssh_command(paths, "root", h.address, false, &["true".into()]))
                            .is_ok_and(|o| o.status.success());
                    let state = match rec {
                        None => "stopped",
                        Some(_) if !net::link_exists(&net::veth_name(&h.name)) => "no-network",
                        Some(_) if !net::link_is_up(&net::veth_name(&h.name)) => "partitioned",
                        Some(_) => "running",
                    };
                    HostStatus {
                        name: h.name.clone(),
                        state,
                        address: h.address,
                        uptime_secs: rec.map(|r| now.saturating_sub(r.started_at)),
                        ssh,
                        processes: pids.len(),
                        memory_kib: procfs::pss_kib(&pids),
                    }
                })
            })
            .collect();
        handles.into_iter().filter_map(|t| t.join().ok()).collect()
    }))
}

/// Powers a host off abruptly (as a crash). Its disk is kept.
pub fn stop(paths: &LabPaths, host: &str) -> Result<bool> {
    preflight::require_root()?;
    let _lock = fsutil::lock(&paths.lock())?;
    let state = require_state(paths)?;
    let h = state.host(host)?;
    let stopped = machine::stop(&paths.host(&h.name), &h.name)?;
    if net::netns_exists(&h.name) {
        net::drop_foreign_addresses(&h.name, h.address)?;
    }
    Ok(stopped)
}

/// Boots a stopped host again on the same disk and waits for its sshd.
pub fn start(paths: &LabPaths, host: &str, progress: Progress) -> Result<bool> {
    preflight::require_root()?;
    let _lock = fsutil::lock(&paths.lock())?;
    preflight::require_tools()?;
    let state = require_state(paths)?;
    let h = state.host(host)?;
    let subnet = state.subnet()?;
    let hp = paths.host(&h.name);
    let public_key =
        std::fs::read_to_string(paths.public_key()).map_err(LabError::io("reading", paths.public_key()))?;
    net::ensure_bridge(&state.bridge, subnet)?;
    machine::ensure_root(&hp, &paths.base(state.release.as_str()))?;
    machine::personalize(&hp, h, &state.hosts, &public_key)?;
    net::ensure_host_net(&h.name, h.address, subnet, &state.bridge)?;
    let started = machine::start(&hp, &h.name)?;
    wait_all_ssh(paths, std::slice::from_ref(h), progress)?;
    Ok(started)
}

/// Cuts a host off the lab network.
pub fn partition(paths: &LabPaths, host: &str) -> Result<()> {
    preflight::require_root()?;
    let _lock = fsutil::lock(&paths.lock())?;
    let state = require_state(paths)?;
    net::partition(&state.host(host)?.name)
}

/// Reconnects a partitioned host.
pub fn heal(paths: &LabPaths, host: &str) -> Result<()> {
    preflight::require_root()?;
    let _lock = fsutil::lock(&paths.lock())?;
    let state = require_state(paths)?;
    net::heal(&state.host(host)?.name)
}

/// Runs ssh to a host with the terminal attached; returns ssh's exit status (the remote
/// command's, or 255 for ssh's own failures).
pub fn ssh(paths: &LabPaths, host: &str, user: &str, remote: &[String], tty: bool) -> Result<ExitStatus> {
    let state = require_state(paths)?;
    let h = state.host(host)?;
    let mut c = sshkeys::ssh_command(paths, user, h.address, tty, remote);
    let text = cmd::describe(&c);
    c.status().map_err(|source| LabError::Spawn { command: text, source })
}
