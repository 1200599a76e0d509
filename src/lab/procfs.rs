//! Reading /proc: a process's start time, its PID namespace, the processes inside a machine's
//! PID namespace and their memory. Signals are sent by PID only.

use std::path::Path;

use super::state::{MachineRecord, ProcessId};

/// Start time of `pid` in clock ticks since boot, or `None` if it does not exist.
pub fn start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ')' come fields 3..; starttime is field 22, i.e. index 19 here.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the systemd-nspawn a record describes is still that process (not a reused PID) and alive.
pub fn is_alive(rec: &MachineRecord) -> bool {
    is_alive_id(ProcessId {
        pid: rec.pid,
        start_ticks: rec.start_ticks,
    })
}

/// Whether a process is still that process (not a reused PID) and not a zombie.
pub fn is_alive_id(id: ProcessId) -> bool {
    start_ticks(id.pid) == Some(id.start_ticks) && !is_zombie(id.pid)
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 1..].trim_start().starts_with('Z')))
        .unwrap_or(true)
}

/// The PID namespace inode of a process (`pid:[4026532…]`).
pub fn pid_ns(pid: i32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Every PID in /proc.
pub fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|rd| rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

fn status_field(pid: i32, key: &str) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
}

/// The container's init: a child of systemd-nspawn that is PID 1 in a PID namespace of its own.
pub fn container_init(nspawn_pid: i32) -> Option<i32> {
    let own = pid_ns(nspawn_pid)?;
    all_pids().into_iter().find(|&p| {
        status_field(p, "PPid:").is_some_and(|pp| pp == nspawn_pid.to_string())
            && status_field(p, "NSpid:").is_some_and(|ns| ns.split_whitespace().last() == Some("1"))
            && pid_ns(p).is_some_and(|ns| ns != own)
    })
}

/// Every process whose PID namespace is `ns`.
pub fn pids_in_ns(ns: &str) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&p| pid_ns(p).as_deref() == Some(ns))
        .collect()
}

/// Sends SIGKILL to one PID.
pub fn kill(pid: i32) {
    // SAFETY: kill(2) with a PID we tracked; no memory is involved.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// Sum of the proportional set size (KiB) of every process in PID namespace `ns`.
pub fn pss_kib(pids: &[i32]) -> u64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .sum()
}

/// Seconds since boot.
pub fn uptime_secs() -> Option<f64> {
    std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Clock ticks per second.
pub fn ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// Whether a path is an executable's /proc entry that still exists.
pub fn exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_readable() {
        let me = std::process::id() as i32;
        assert!(start_ticks(me).is_some());
        assert!(pid_ns(me).is_some());
    }
}
