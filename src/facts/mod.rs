//! Facts: what is true on a host now, read in ONE round trip per host by a batched probe
//! (OS release, package versions, unit states, managed files' hashes, listening ports, clock,
//! free disk). `probe()` builds the command, `parse()` is pure and tested on recorded output.
//! Facts are cached for the run and re-read only after a change made them stale.

pub mod etcd;
pub mod haproxy;
pub mod patroni;
pub mod pgbackrest;
pub mod pgbouncer;
pub mod vip;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::transport::remote::{self, FileKind};
use crate::transport::{Cmd, Transport, TransportError};

/// What to ask a host about (the union of what the tasks to come need).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// Debian packages.
    pub packages: BTreeSet<String>,
    /// systemd units.
    pub units: BTreeSet<String>,
    /// Paths to hash and stat.
    pub files: BTreeSet<String>,
    /// Host names to resolve (IPv4), as the host's services would.
    pub names: BTreeSet<String>,
    /// Read-only checks (`unless` snippets, one pass of a `wait_for`) to run once each, so that
    /// a run with nothing to change costs this one probe: argv of each, exit status wanted.
    pub checks: BTreeSet<Vec<String>>,
}

impl Query {
    /// Adds everything `other` asks for.
    pub fn merge(&mut self, other: &Query) {
        self.packages.extend(other.packages.iter().cloned());
        self.units.extend(other.units.iter().cloned());
        self.files.extend(other.files.iter().cloned());
        self.names.extend(other.names.iter().cloned());
        self.checks.extend(other.checks.iter().cloned());
    }
}

/// /etc/os-release.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OsRelease {
    /// `ID`, e.g. debian.
    pub id: String,
    /// `VERSION_ID`, e.g. 13.
    pub version_id: String,
    /// `VERSION_CODENAME`, e.g. trixie.
    pub codename: String,
}

/// A package's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Package {
    /// Installed version (empty when not installed).
    pub version: String,
    /// Fully installed (dpkg status `ii`).
    pub installed: bool,
}

/// A unit's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Unit {
    /// Whether systemd knows the unit (LoadState loaded).
    pub loaded: bool,
    /// ActiveState: active, inactive, failed, activating…
    pub active: String,
    /// SubState: running, exited, dead…
    pub sub: String,
    /// UnitFileState: enabled, disabled, static, masked…
    pub enabled: String,
    /// MainPID (0 when none).
    pub main_pid: u32,
}

impl Unit {
    /// Running (or a oneshot that has run).
    pub fn is_active(&self) -> bool {
        self.active == "active"
    }

    /// Starts at boot.
    pub fn is_enabled(&self) -> bool {
        matches!(
            self.enabled.as_str(),
            "enabled" | "enabled-runtime" | "static" | "alias" | "indirect" | "generated"
        )
    }
}

/// Everything known about one host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Facts {
    /// OS release.
    pub os: OsRelease,
    /// Packages asked about.
    pub packages: BTreeMap<String, Package>,
    /// Units asked about.
    pub units: BTreeMap<String, Unit>,
    /// Files asked about.
    pub files: BTreeMap<String, FileKind>,
    /// TCP ports listening.
    pub listening: BTreeSet<u16>,
    /// Host clock, Unix seconds.
    pub clock: i64,
    /// Free space on /, KiB.
    pub disk_free_kib: u64,
    /// Names asked about → the IPv4 address they resolve to (None: they do not resolve).
    pub resolved: BTreeMap<String, Option<std::net::IpAddr>>,
    /// Checks asked about (argv) → whether each exited 0 when the probe ran.
    #[serde(skip)]
    pub checks: BTreeMap<Vec<String>, bool>,
    /// Checks asked about (argv) → their standard output (for rules judged in Rust).
    #[serde(skip)]
    pub outputs: BTreeMap<Vec<String>, String>,
}

impl Facts {
    /// Whether `pkg` is fully installed.
    pub fn installed(&self, pkg: &str) -> bool {
        self.packages.get(pkg).is_some_and(|p| p.installed)
    }

    /// The unit's state (a default, unloaded one when not asked about or unknown).
    pub fn unit(&self, name: &str) -> Unit {
        self.units.get(name).cloned().unwrap_or_default()
    }

    /// A file's state (Missing when not asked about).
    pub fn file(&self, path: &str) -> &FileKind {
        self.files.get(path).unwrap_or(&FileKind::Missing)
    }

    /// Whether the check `cmd` passed when the probe ran (None: it was not asked about).
    pub fn check(&self, cmd: &Cmd) -> Option<bool> {
        self.checks.get(cmd.argv()).copied()
    }

    /// Whether the check `cmd` passed when the probe ran, and what it printed.
    pub fn check_output(&self, cmd: &Cmd) -> Option<(bool, &str)> {
        let passed = self.check(cmd)?;
        Some((passed, self.outputs.get(cmd.argv()).map(String::as_str).unwrap_or("")))
    }
}

const MARK: &str = "@@pgha:";

/// Seconds each check may take inside the probe before it counts as failed (`timeout`).
pub const CHECK_TIMEOUT_S: u64 = 20;

/// Bytes of each check's standard output the probe keeps (a rule judged in Rust reads them,
/// e.g. Patroni's `/cluster`).
pub const CHECK_MAX_OUTPUT: usize = 256 * 1024;

/// The probe: one `sh` script whose sections are separated by `@@pgha:<name>` lines. Names of
/// packages, units and files, and the checks' argv, travel as positional arguments
/// (`NP NU NN NC (K w1…wK)… p… u… n… f…`); the script only ever `eval`s positional references
/// like `"${3}"`, never a value. The checks start first, all at once in the background (each a
/// subshell with its own copy of the arguments, stdin from /dev/null, output discarded,
/// bounded by [`CHECK_TIMEOUT_S`]), while the rest is read; their exit statuses, kept in a
/// private `mktemp -d` directory, print in order at the end (255 when one is missing), then
/// each one's standard output (bounded by [`CHECK_MAX_OUTPUT`]) in an `out.<i>` section.
pub fn probe(q: &Query) -> Cmd {
    let body = format!(
        r#"export LC_ALL=C
np=$1 nu=$2 nn=$3 nc=$4; shift 4
refs() {{ [ "$1" -gt 0 ] && seq -f '"${{%.0f}}"' 1 "$1" | tr '\n' ' '; }}
results=
[ "$nc" -gt 0 ] && results=$(mktemp -d)
i=0
while [ "$i" -lt "$nc" ]; do
  k=$1; shift
  [ -n "$results" ] && ( eval "timeout {timeout} $(refs "$k")" </dev/null >"$results/$i.out" 2>/dev/null; echo "$?" > "$results/$i" ) &
  shift "$k"; i=$((i + 1))
done
echo '{MARK}os'; cat /etc/os-release 2>/dev/null
echo '{MARK}clock'; date +%s
echo '{MARK}disk'; df -Pk / | tail -n 1
echo '{MARK}ports'; ss -ltnH 2>/dev/null
echo '{MARK}packages'
[ "$np" -gt 0 ] && eval "dpkg-query -W -f='\${{Package}}\t\${{Version}}\t\${{db:Status-Abbrev}}\n' $(refs "$np")" 2>/dev/null
shift "$np"
echo '{MARK}units'
[ "$nu" -gt 0 ] && eval "systemctl show -p Id,LoadState,ActiveState,SubState,UnitFileState,MainPID $(refs "$nu")" 2>/dev/null
shift "$nu"
echo '{MARK}resolve'
[ "$nn" -gt 0 ] && eval "for n in $(refs "$nn"); do a=\$(getent ahostsv4 \"\$n\" | head -n 1 | cut -d' ' -f1); printf '%s\t%s\n' \"\$n\" \"\${{a:--}}\"; done"
shift "$nn"
echo '{MARK}files'
{stat}
echo '{MARK}checks'
wait
i=0
while [ "$i" -lt "$nc" ]; do cat "$results/$i" 2>/dev/null || echo 255; i=$((i + 1)); done
i=0
while [ "$i" -lt "$nc" ]; do echo "{MARK}out.$i"; head -c {max_out} "$results/$i.out" 2>/dev/null; echo; i=$((i + 1)); done
[ -n "$results" ] && rm -rf -- "$results"
exit 0
"#,
        stat = remote::STAT_BODY,
        timeout = CHECK_TIMEOUT_S,
        max_out = CHECK_MAX_OUTPUT,
    );
    let mut args = vec![
        q.packages.len().to_string(),
        q.units.len().to_string(),
        q.names.len().to_string(),
        q.checks.len().to_string(),
    ];
    for c in &q.checks {
        args.push(c.len().to_string());
        args.extend(c.iter().cloned());
    }
    args.extend(q.packages.iter().cloned());
    args.extend(q.units.iter().cloned());
    args.extend(q.names.iter().cloned());
    args.extend(q.files.iter().cloned());
    Cmd::script(&body, args)
}

/// Parses the probe's output.
pub fn parse(out: &str, q: &Query) -> Result<Facts, String> {
    let mut sections: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut current = "";
    for line in out.lines() {
        if let Some(name) = line.strip_prefix(MARK) {
            current = name;
            sections.entry(name).or_default();
        } else {
            sections.entry(current).or_default().push(line);
        }
    }
    for needed in ["os", "clock", "packages", "units", "files"] {
        if !sections.contains_key(needed) {
            return Err(format!("the probe printed no `{needed}` section"));
        }
    }
    let get = |n: &str| sections.get(n).cloned().unwrap_or_default();
    let mut facts = Facts {
        os: parse_os(&get("os")),
        ..Facts::default()
    };
    facts.clock = get("clock").first().and_then(|l| l.trim().parse().ok()).unwrap_or(0);
    facts.disk_free_kib = get("disk")
        .first()
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    facts.listening = parse_ports(&get("ports"));
    for p in &q.packages {
        facts.packages.insert(
            p.clone(),
            Package {
                version: String::new(),
                installed: false,
            },
        );
    }
    for line in get("packages") {
        let f: Vec<&str> = line.split('\t').collect();
        if let [name, version, status] = f.as_slice() {
            let installed = status.trim() == "ii";
            facts.packages.insert(
                (*name).to_string(),
                Package {
                    version: if installed {
                        (*version).to_string()
                    } else {
                        String::new()
                    },
                    installed,
                },
            );
        }
    }
    for line in get("resolve") {
        if let Some((name, addr)) = line.split_once('\t') {
            facts.resolved.insert(name.to_string(), addr.parse().ok());
        }
    }
    let codes = get("checks");
    if codes.len() != q.checks.len() {
        return Err(format!(
            "the probe printed {} check result(s) for {} check(s)",
            codes.len(),
            q.checks.len()
        ));
    }
    for (i, (c, code)) in q.checks.iter().zip(codes).enumerate() {
        facts.checks.insert(c.clone(), code.trim() == "0");
        if let Some(out) = sections.get(format!("out.{i}").as_str()) {
            facts.outputs.insert(c.clone(), out.join("\n"));
        }
    }
    facts.units = parse_units(&get("units"));
    for u in &q.units {
        facts.units.entry(u.clone()).or_default();
    }
    let files = get("files").join("\n");
    let stats = remote::parse_stat(&files).ok_or_else(|| "unreadable file section".to_string())?;
    for p in &q.files {
        facts.files.insert(p.clone(), FileKind::Missing);
    }
    for s in stats {
        facts.files.insert(s.path, s.kind);
    }
    Ok(facts)
}

fn parse_os(lines: &[&str]) -> OsRelease {
    let mut os = OsRelease::default();
    for l in lines {
        if let Some((k, v)) = l.split_once('=') {
            let v = v.trim_matches('"').to_string();
            match k {
                "ID" => os.id = v,
                "VERSION_ID" => os.version_id = v,
                "VERSION_CODENAME" => os.codename = v,
                _ => {}
            }
        }
    }
    os
}

fn parse_ports(lines: &[&str]) -> BTreeSet<u16> {
    lines
        .iter()
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter_map(|local| local.rsplit(':').next())
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn parse_units(lines: &[&str]) -> BTreeMap<String, Unit> {
    let mut out = BTreeMap::new();
    let mut id = String::new();
    let mut unit = Unit::default();
    let mut flush = |id: &mut String, unit: &mut Unit| {
        if !id.is_empty() {
            out.insert(std::mem::take(id), std::mem::take(unit));
        }
    };
    for l in lines {
        if l.trim().is_empty() {
            flush(&mut id, &mut unit);
            continue;
        }
        if let Some((k, v)) = l.split_once('=') {
            match k {
                "Id" => id = v.to_string(),
                "LoadState" => unit.loaded = v == "loaded",
                "ActiveState" => unit.active = v.to_string(),
                "SubState" => unit.sub = v.to_string(),
                "UnitFileState" => unit.enabled = v.to_string(),
                "MainPID" => unit.main_pid = v.parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    flush(&mut id, &mut unit);
    out
}

/// Why facts could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The probe's output made no sense.
    #[error("{host}: could not read facts: {detail}")]
    Parse {
        /// Host.
        host: String,
        /// What was wrong.
        detail: String,
    },
}

/// Gathers facts in one round trip.
pub async fn gather(t: &dyn Transport, q: &Query) -> Result<Facts, FactsError> {
    let cmd = probe(q);
    let checks = std::time::Duration::from_secs(if q.checks.is_empty() { 0 } else { CHECK_TIMEOUT_S });
    let out = crate::transport::run_ok(t, &cmd, crate::transport::DEFAULT_TIMEOUT + checks).await?;
    parse(&out.stdout_text(), q).map_err(|detail| FactsError::Parse {
        host: t.endpoint().name.clone(),
        detail,
    })
}

#[cfg(test)]
mod tests;
