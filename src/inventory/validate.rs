//! Raw inventory → [`Inventory`]: applies defaults and checks every rule that YAML types cannot
//! express (addresses, uniqueness, etcd member count, roles present, port clashes, Patroni
//! timings, the PROXY-protocol refusal). Collects every error rather than stopping at the first.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_saphyr::Spanned;

use super::model::*;
use super::names::{DcName, HostName, Port, Role};
use super::raw::*;
use crate::diagnostic::{Diagnostic, Pos, Severity, did_you_mean, escape_controls, is_unsafe_char};

/// Collects diagnostics against one file.
pub(crate) struct Findings {
    file: PathBuf,
    /// Errors found so far.
    pub errors: Vec<Diagnostic>,
    /// Warnings found so far.
    pub warnings: Vec<Diagnostic>,
}

impl Findings {
    pub(crate) fn new(file: &Path) -> Self {
        Self {
            file: file.to_path_buf(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn diag(&self, severity: Severity, pos: Pos, field: &str, message: String, hint: Option<String>) -> Diagnostic {
        Diagnostic {
            severity,
            file: self.file.clone(),
            line: pos.line,
            column: pos.column,
            field: field.to_string(),
            message,
            hint,
        }
    }

    pub(crate) fn error(&mut self, pos: Pos, field: &str, message: impl Into<String>, hint: impl Into<Option<String>>) {
        let d = self.diag(Severity::Error, pos, field, message.into(), hint.into());
        self.errors.push(d);
    }

    pub(crate) fn warn(&mut self, pos: Pos, field: &str, message: impl Into<String>, hint: impl Into<Option<String>>) {
        let d = self.diag(Severity::Warning, pos, field, message.into(), hint.into());
        self.warnings.push(d);
    }
}

const PROXY_PROTOCOL_WHY: &str = "no PostgreSQL or PgBouncer release parses the PROXY protocol: \
PostgreSQL rejects the header (\"invalid length of startup packet\") and every connection fails; \
behind PgBouncer a PROXY header would carry the pooler's address anyway";
const PROXY_PROTOCOL_HINT: &str = "remove `proxy_protocol`; pgha keeps the client address visible \
with PgBouncer `application_name_add_host = 1`, `log_connections` and %a/%r in `log_line_prefix` \
(docs/design.md §3, §7)";

/// Parameters pgha sets itself (in Patroni's config or through Patroni); the inventory may not
/// override them. `render::context::managed_parameters` must stay a subset (a test checks it).
pub const MANAGED_PARAMETERS: &[&str] = &[
    "port",
    "listen_addresses",
    "data_directory",
    "hba_file",
    "ident_file",
    "config_file",
    "ssl",
    "ssl_cert_file",
    "ssl_key_file",
    "ssl_ca_file",
    "ssl_min_protocol_version",
    "password_encryption",
    "synchronous_standby_names",
    "primary_conninfo",
    "cluster_name",
    "log_connections",
    "log_disconnections",
    "log_line_prefix",
    "unix_socket_directories",
];

/// Why a TLS parameter of PostgreSQL 15–18 that pgha does not manage is refused (every `ssl*`
/// name is refused; these say what the specific one could do). pgha's TLS is fixed: its own CA
/// and leaves, TLS ≥ 1.2, OpenSSL's default cipher and group choice.
fn tls_parameter_why(name: &str) -> &'static str {
    match name {
        "ssl_ciphers" | "ssl_tls13_ciphers" | "ssl_prefer_server_ciphers" => {
            "it chooses the cipher suites every node offers, and could enable weak ones"
        }
        "ssl_max_protocol_version" => "it caps the TLS version every node speaks",
        "ssl_passphrase_command" | "ssl_passphrase_command_supports_reload" => {
            "it runs a command as `postgres` on every node (pgha's keys have no passphrase)"
        }
        "ssl_crl_file" | "ssl_crl_dir" => {
            "pgha issues no revocation lists: it replaces certificates instead (`pgha rotate-certs`), and a stale list would refuse every client"
        }
        "ssl_ecdh_curve" | "ssl_groups" | "ssl_dh_params_file" => {
            "it chooses the key exchange groups every node offers, and could weaken or break TLS"
        }
        "ssl_library" => "it is read-only (set by PostgreSQL at build time)",
        _ => "pgha manages PostgreSQL's TLS from its own certificates",
    }
}

/// Role names pgha creates and owns.
pub const RESERVED_ROLES: &[&str] = &[
    "postgres",
    "replicator",
    "rewind_user",
    "pgbouncer_auth",
    "pgha_verify",
    "patroni",
];

pub(crate) fn from_raw(file: &Path, raw: RawInventory, f: &mut Findings) -> Option<Inventory> {
    let cluster_name = cluster_name(&raw.cluster, f);
    let defaults = raw.ssh.as_ref().map(|s| &s.value);
    if let Some(d) = defaults {
        check_ssh(d, "ssh", f);
    }
    let hosts = hosts(&raw.hosts, defaults, f);
    let postgres = postgres(raw.postgres.as_ref(), f);
    let patroni = patroni(raw.patroni.as_ref(), hosts.len(), f);
    let etcd = etcd(raw.etcd.as_ref());
    let haproxy = haproxy(raw.haproxy.as_ref(), f);
    let pgbouncer = pgbouncer(raw.pgbouncer.as_ref(), f);
    let tls = tls(raw.tls.as_ref(), f);
    let vip = raw.vip.as_ref().and_then(|v| vip(v, &hosts, f));
    let backup = backup(
        &cluster_name,
        &hosts,
        &raw.hosts,
        raw.backup.as_ref(),
        raw.postgres.as_ref(),
        f,
    );
    let inv = Inventory {
        path: file.to_path_buf(),
        cluster_name,
        hosts,
        postgres,
        patroni,
        etcd,
        haproxy,
        pgbouncer,
        tls,
        vip,
        backup,
    };
    roles_present(&inv, &raw.hosts, f);
    port_clashes(&inv, &raw.hosts, f);
    sync_mode_fits(&inv, raw.patroni.as_ref(), f);
    direct_tls_fits(&inv, raw.haproxy.as_ref(), raw.postgres.as_ref(), f);
    if f.errors.is_empty() { Some(inv) } else { None }
}

/// Parameters pgha sets when a host has the `backup` role (archiving through pgBackRest).
pub const BACKUP_MANAGED_PARAMETERS: &[&str] =
    &["archive_mode", "archive_command", "restore_command", "archive_library"];

/// Default timers: a weekly full backup, a daily differential one (systemd `OnCalendar=`).
const DEFAULT_SCHEDULE: [(BackupType, &str); 2] = [
    (BackupType::Full, "Sun *-*-* 01:00:00"),
    (BackupType::Diff, "Mon..Sat *-*-* 01:00:00"),
];

/// The `backup` role and section: at most one repository host, never a PostgreSQL node,
/// archiving parameters left to pgha, schedules that are plain `OnCalendar=` text. Without a
/// backup host: a warning saying what is missing.
fn backup(
    cluster: &str,
    hosts: &[Host],
    raw_hosts: &Spanned<SpannedMap<Spanned<RawHost>>>,
    raw: Option<&Spanned<RawBackup>>,
    raw_pg: Option<&Spanned<RawPostgres>>,
    f: &mut Findings,
) -> Option<BackupSettings> {
    let repos: Vec<&Host> = hosts.iter().filter(|h| h.has(Role::Backup)).collect();
    let pos_of = |name: &str| {
        raw_hosts
            .value
            .0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, h)| Pos::of(&h.value.roles))
            .unwrap_or_else(|| Pos::of(raw_hosts))
    };
    let Some(repo) = repos.first() else {
        if !hosts.is_empty() {
            let (pos, field) = match raw {
                Some(b) => (Pos::of(b), "backup"),
                None => (Pos::of(raw_hosts), "hosts"),
            };
            f.warn(
                pos,
                field,
                "no host has the role `backup`: no backups, no WAL archive, no point-in-time recovery; high availability does not protect against a DROP TABLE or a bad migration replicated to every node",
                Some("add `backup` to the roles of a host that is not a PostgreSQL node, ideally in another data centre than the primary (docs/backup.md)".to_string()),
            );
        }
        return None;
    };
    for extra in repos.iter().skip(1) {
        f.error(
            pos_of(extra.name.as_str()),
            &format!("hosts.{}.roles", extra.name),
            format!(
                "a second `backup` host (the first is {}): pgha manages one pgBackRest repository",
                repo.name
            ),
            Some("keep `backup` on one host".to_string()),
        );
    }
    for h in repos.iter().filter(|h| h.has(Role::Postgres)) {
        f.error(
            pos_of(h.name.as_str()),
            &format!("hosts.{}.roles", h.name),
            "`backup` on a PostgreSQL node: the repository would be lost with the node it backs up, and one pgBackRest configuration cannot be both repository and database host",
            Some("put `backup` on a host without `postgres` (it may share one with etcd, HAProxy or PgBouncer)".to_string()),
        );
    }
    if let Some(pg) = raw_pg {
        for (k, v) in &pg.value.parameters.0 {
            if BACKUP_MANAGED_PARAMETERS.contains(&k.as_str()) {
                f.error(
                    Pos::of(v),
                    &format!("postgres.parameters.{k}"),
                    format!(
                        "`{k}` is set by pgha when a host has the `backup` role (WAL archiving through pgBackRest)"
                    ),
                    Some(format!(
                        "remove it; with a backup host pgha manages {}",
                        BACKUP_MANAGED_PARAMETERS.join(", ")
                    )),
                );
            }
        }
    }
    let empty = RawBackup::default();
    let r = raw.map(|r| &r.value).unwrap_or(&empty);
    let count = |v: &Option<Spanned<u32>>, default: u32, field: &str, f: &mut Findings| match v {
        Some(n) if n.value == 0 || n.value > 9_999_999 => {
            f.error(
                Pos::of(n),
                field,
                format!("{} is out of range", n.value),
                Some("keep 1 to 9999999 backups".to_string()),
            );
            default
        }
        Some(n) => n.value,
        None => default,
    };
    let retention_full = count(&r.retention_full, 2, "backup.retention_full", f);
    let retention_diff = count(&r.retention_diff, 7, "backup.retention_diff", f);
    let mut schedule = Vec::new();
    let given = r.schedule.as_ref().map(|s| &s.value);
    for kind in BackupType::ALL {
        let written = given.and_then(|s| match kind {
            BackupType::Full => s.full.as_ref(),
            BackupType::Diff => s.diff.as_ref(),
            BackupType::Incr => s.incr.as_ref(),
        });
        let text = match (written, given) {
            (Some(w), _) => {
                let field = format!("backup.schedule.{kind}");
                let ok = w
                    .value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || " *:,./~-".contains(c));
                if !ok {
                    f.error(
                        Pos::of(w),
                        &field,
                        format!("`{}` is not a systemd calendar expression", escape_controls(&w.value)),
                        Some("write an OnCalendar= value such as `Sun *-*-* 01:00:00` or `daily` (see `systemd-analyze calendar`), or \"\" for no timer".to_string()),
                    );
                    continue;
                }
                w.value.trim().to_string()
            }
            // A `schedule:` section lists every timer wanted; without one, the defaults.
            (None, Some(_)) => continue,
            (None, None) => match DEFAULT_SCHEDULE.iter().find(|(k, _)| *k == kind) {
                Some((_, d)) => d.to_string(),
                None => continue,
            },
        };
        if !text.is_empty() {
            schedule.push(BackupSchedule {
                kind,
                on_calendar: text,
            });
        }
    }
    Some(BackupSettings {
        host: repo.name.clone(),
        stanza: cluster.to_string(),
        retention_full,
        retention_diff,
        schedule,
    })
}

fn cluster_name(c: &Spanned<RawCluster>, f: &mut Findings) -> String {
    let name = &c.value.name;
    let ok = !name.value.is_empty()
        && name.value.len() <= 63
        && name
            .value
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '_');
    if !ok {
        f.error(
            Pos::of(name),
            "cluster.name",
            format!("`{}` is not a valid cluster name", name.value),
            Some(
                "use 1–63 lowercase letters, digits, `-` or `_` (it becomes Patroni's scope and etcd's cluster token)"
                    .to_string(),
            ),
        );
    }
    name.value.clone()
}

/// Checks one `ssh:` section as written (the top-level defaults under `ssh`, a host's
/// overrides under `hosts.<name>.ssh`), so that each value is reported once, where it is.
fn check_ssh(raw: &RawSsh, field: &str, f: &mut Findings) {
    if let Some(u) = &raw.user
        && let Err(why) = check_ssh_user(&u.value)
    {
        f.error(
            Pos::of(u),
            &format!("{field}.user"),
            format!("`{}` is not a valid SSH user name: {why}", u.value),
            Some(
                "use 1–32 letters, digits, `_`, `.` or `-`, starting with a letter or `_` (the name is passed to ssh and printed in hints)"
                    .to_string(),
            ),
        );
    }
    for (name, value) in [("key", raw.key.as_ref()), ("known_hosts", raw.known_hosts.as_ref())] {
        let Some(v) = value else { continue };
        let field = format!("{field}.{name}");
        if !plain_text(v, &field, f) {
            continue;
        }
        if v.value.is_empty() {
            f.error(
                Pos::of(v),
                &field,
                "an empty path",
                Some(format!("give the file's path, or remove `{name}`")),
            );
        } else if name == "known_hosts" && v.value.chars().any(char::is_whitespace) {
            f.error(
                Pos::of(v),
                &field,
                format!("`{}` contains whitespace", v.value),
                Some(
                    "ssh splits UserKnownHostsFile at whitespace into several files; use a path without spaces"
                        .to_string(),
                ),
            );
        }
    }
}

fn resolve_ssh(defaults: Option<&RawSsh>, over: Option<&RawSsh>) -> SshSettings {
    let pick = |get: fn(&RawSsh) -> Option<&Spanned<String>>| over.and_then(get).or_else(|| defaults.and_then(get));
    let user = pick(|s| s.user.as_ref());
    let port = over
        .and_then(|s| s.port.as_ref())
        .or_else(|| defaults.and_then(|s| s.port.as_ref()))
        .map(|p| p.value)
        .unwrap_or(Port::new(22).expect("22 is a valid port"));
    let become_ = over
        .and_then(|s| s.become_.as_ref())
        .or_else(|| defaults.and_then(|s| s.become_.as_ref()))
        .map(|b| b.value)
        .unwrap_or(false);
    SshSettings {
        user: user.map(|u| u.value.clone()).unwrap_or_else(|| "root".into()),
        port,
        key: pick(|s| s.key.as_ref()).map(|k| PathBuf::from(&k.value)),
        known_hosts: pick(|s| s.known_hosts.as_ref()).map(|k| PathBuf::from(&k.value)),
        become_,
    }
}

fn hosts(raw: &Spanned<SpannedMap<Spanned<RawHost>>>, defaults: Option<&RawSsh>, f: &mut Findings) -> Vec<Host> {
    let mut out = Vec::new();
    let mut addresses: BTreeMap<IpAddr, String> = BTreeMap::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    if raw.value.0.is_empty() {
        f.error(
            Pos::of(raw),
            "hosts",
            "no hosts",
            Some("list the cluster's hosts; see inventory/example.yaml".to_string()),
        );
    }
    for (key, host) in &raw.value.0 {
        let field = format!("hosts.{key}");
        let name = match HostName::new(key) {
            Ok(n) if n.as_str().ends_with(".invalid") || n.as_str() == "invalid" => {
                f.error(
                    Pos::of(host),
                    &field,
                    format!("`{n}` is under `.invalid`, the domain pgha reserves for names that must never resolve"),
                    Some("give the host its real DNS name; pgha's client certificates carry `….pgha.invalid` names so that etcd's peer port refuses them (docs/security.md)".to_string()),
                );
                continue;
            }
            Ok(n) => n,
            Err(why) => {
                f.error(
                    Pos::of(host),
                    &field,
                    format!("invalid host name: {why}"),
                    Some("host names become etcd/Patroni member names and certificate names".to_string()),
                );
                continue;
            }
        };
        if let Some(first) = names.insert(name.to_string(), field.clone()) {
            f.error(
                Pos::of(host),
                &field,
                format!("name `{name}` is already used by {first}"),
                None,
            );
        }
        let h = &host.value;
        let address = match h.address.value.trim().parse::<IpAddr>() {
            Ok(IpAddr::V6(a)) => {
                f.error(
                    Pos::of(&h.address),
                    &format!("{field}.address"),
                    format!("IPv6 address `{a}` is not supported"),
                    Some(
                        "give the host's IPv4 address: preflight resolves cluster names as IPv4 only, so an IPv6 host could never pass it, and pgha has not run over IPv6 end to end (docs/security.md)"
                            .to_string(),
                    ),
                );
                None
            }
            Ok(a) if a.is_unspecified() || a.is_multicast() => {
                f.error(
                    Pos::of(&h.address),
                    &format!("{field}.address"),
                    format!("`{a}` cannot be a host's address"),
                    Some("give the unicast IP address other hosts use to reach it".to_string()),
                );
                None
            }
            Ok(a) => Some(a),
            Err(_) => {
                f.error(
                    Pos::of(&h.address),
                    &format!("{field}.address"),
                    format!("expected an IPv4 or IPv6 address, found \"{}\"", h.address.value),
                    Some("write the IP address, e.g. 192.0.2.11; the host name is the key above".to_string()),
                );
                None
            }
        };
        if let Some(a) = address
            && let Some(first) = addresses.insert(a, field.clone())
        {
            f.error(
                Pos::of(&h.address),
                &format!("{field}.address"),
                format!("address {a} is already used by {first}"),
                Some(
                    "give each host its own address; to run several roles on one host list them under its `roles`"
                        .to_string(),
                ),
            );
        }
        let dc = match DcName::new(&h.dc.value) {
            Ok(d) => d,
            Err(why) => {
                f.error(
                    Pos::of(&h.dc),
                    &format!("{field}.dc"),
                    why,
                    Some("a data-centre label such as `dc1` or `eu-west-1a` (it becomes a Patroni tag)".to_string()),
                );
                DcName::new("invalid").expect("literal is valid")
            }
        };
        let mut roles = BTreeSet::new();
        for r in &h.roles.value {
            if !roles.insert(r.value) {
                f.error(
                    Pos::of(r),
                    &format!("{field}.roles"),
                    format!("role `{}` is listed twice", r.value),
                    None,
                );
            }
        }
        if roles.is_empty() {
            f.error(
                Pos::of(&h.roles),
                &format!("{field}.roles"),
                "a host needs at least one role",
                Some("roles: postgres, etcd, haproxy, pgbouncer".to_string()),
            );
        }
        let mut extra = Vec::new();
        for n in &h.names {
            match HostName::new(&n.value) {
                Ok(hn) if hn.as_str().ends_with(".invalid") => f.error(
                    Pos::of(n),
                    &format!("{field}.names"),
                    format!("`{hn}` is under `.invalid`, which pgha reserves for names that must never resolve"),
                    Some("list the DNS names clients really use".to_string()),
                ),
                Ok(hn) => {
                    if let Some(first) = names.insert(hn.to_string(), field.clone()) {
                        f.error(
                            Pos::of(n),
                            &format!("{field}.names"),
                            format!("name `{hn}` is already used by {first}"),
                            None,
                        );
                    }
                    extra.push(hn);
                }
                Err(why) => f.error(
                    Pos::of(n),
                    &format!("{field}.names"),
                    why,
                    Some("list the exact DNS names clients use (no wildcards); each goes into the host's server certificates".to_string()),
                ),
            }
        }
        if let Some(over) = &h.ssh {
            check_ssh(&over.value, &format!("{field}.ssh"), f);
        }
        let ssh = resolve_ssh(defaults, h.ssh.as_ref().map(|s| &s.value));
        if let Some(address) = address {
            out.push(Host {
                name,
                address,
                dc,
                roles,
                names: extra,
                ssh,
            });
        }
    }
    out
}

fn roles_present(inv: &Inventory, raw: &Spanned<SpannedMap<Spanned<RawHost>>>, f: &mut Findings) {
    let pos = Pos::of(raw);
    for role in Role::REQUIRED {
        if inv.hosts_with(role).next().is_none() && !inv.hosts.is_empty() {
            f.error(
                pos,
                "hosts",
                format!("no host has the role `{role}`"),
                Some(format!("add `{role}` to the `roles` of at least one host")),
            );
        }
    }
    let etcd = inv.hosts_with(Role::Etcd).count();
    if etcd > 0 && etcd.is_multiple_of(2) {
        f.error(
            pos,
            "hosts",
            format!("{etcd} hosts have the role `etcd`; etcd needs an odd number of members"),
            Some(format!(
                "an even count adds no fault tolerance ({etcd} members tolerate as many failures as {}) and can split evenly; use {} or {}",
                etcd - 1,
                etcd - 1,
                etcd + 1
            )),
        );
    }
}

fn proxy_protocol(v: Option<&Spanned<ParamValue>>, field: &str, f: &mut Findings) {
    if let Some(v) = v
        && v.value != ParamValue::Bool(false)
    {
        f.error(
            Pos::of(v),
            field,
            format!(
                "PROXY protocol toward {} is not supported: {PROXY_PROTOCOL_WHY}",
                if field.starts_with("pgbouncer") {
                    "PgBouncer"
                } else {
                    "PostgreSQL"
                }
            ),
            Some(PROXY_PROTOCOL_HINT.to_string()),
        );
    }
}

fn port_or(p: Option<&Spanned<Port>>, default: u16) -> Port {
    p.map(|p| p.value)
        .unwrap_or(Port::new(default).expect("default ports are non-zero"))
}

fn identifier(s: &Spanned<String>, field: &str, what: &str, f: &mut Findings) -> bool {
    let v = &s.value;
    let ok = !v.is_empty()
        && v.len() <= 63
        && v.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        f.error(
            Pos::of(s),
            field,
            format!("`{v}` is not a valid {what} name"),
            Some("use 1–63 lowercase letters, digits and `_`, starting with a letter".to_string()),
        );
    }
    ok
}

/// Refuses a string holding a control or invisible formatting character (a newline would end a
/// line of postgresql.conf, pgbouncer.ini or a shell command; an escape sequence would reach the
/// terminal). The message shows the value escaped. Returns whether the value is clean.
fn plain_text(s: &Spanned<String>, field: &str, f: &mut Findings) -> bool {
    plain_str(&s.value, Pos::of(s), field, f)
}

fn plain_str(v: &str, pos: Pos, field: &str, f: &mut Findings) -> bool {
    let Some((at, bad)) = v.char_indices().find(|(_, c)| is_unsafe_char(*c)) else {
        return true;
    };
    f.error(
        pos,
        field,
        format!(
            "\"{}\" contains the control character `{}` at byte {at}",
            escape_controls(v),
            bad.escape_default()
        ),
        Some(
            "remove it: values reach configuration files, SQL and commands on every host, where a newline or control character changes their meaning"
                .to_string(),
        ),
    );
    false
}

/// An SSH login name: 1–32 of `A-Z a-z 0-9 _ . -`, starting with a letter or `_` (never `-`,
/// which ssh would read as an option), optionally ending in `$` (Samba machine accounts).
pub(crate) fn check_ssh_user(s: &str) -> Result<(), String> {
    let body = s.strip_suffix('$').unwrap_or(s);
    if body.is_empty() || s.len() > 32 {
        return Err("it must have 1 to 32 characters".into());
    }
    let first = body.chars().next().expect("non-empty checked above");
    if !(first.is_ascii_alphabetic() || first == '_') {
        return Err(format!("it starts with `{}`", first.escape_default()));
    }
    if let Some(c) = body
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!("it contains `{}`", c.escape_default()));
    }
    Ok(())
}

/// A PostgreSQL parameter name as pgha accepts it: `name` or `extension.name`, each part
/// `[a-z_][a-z0-9_]*`, at most 63 characters.
fn parameter_name_ok(k: &str) -> bool {
    let part = |p: &str| {
        p.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    k.len() <= 63
        && match k.split_once('.') {
            None => part(k),
            Some((a, b)) => part(a) && part(b),
        }
}

fn postgres(raw: Option<&Spanned<RawPostgres>>, f: &mut Findings) -> PostgresSettings {
    let empty = RawPostgres::default();
    let r = raw.map(|r| &r.value).unwrap_or(&empty);
    proxy_protocol(r.proxy_protocol.as_ref(), "postgres.proxy_protocol", f);
    let mut parameters = BTreeMap::new();
    for (k, v) in &r.parameters.0 {
        let field = format!("postgres.parameters.{k}");
        if !parameter_name_ok(k) {
            f.error(
                Pos::of(v),
                &field,
                format!("`{k}` is not a PostgreSQL parameter name"),
                Some(
                    "use lowercase letters, digits and `_` (`extension.name` for an extension's parameter)".to_string(),
                ),
            );
        } else if MANAGED_PARAMETERS.contains(&k.as_str()) {
            f.error(
                Pos::of(v),
                &field,
                format!("`{k}` is set by pgha and cannot be overridden"),
                Some(format!("remove it; pgha manages: {}", MANAGED_PARAMETERS.join(", "))),
            );
        } else if k.starts_with("ssl") {
            f.error(
                Pos::of(v),
                &field,
                format!("`{k}` is refused: {}", tls_parameter_why(k)),
                Some(
                    "remove it; pgha manages TLS itself (docs/security.md lists every TLS parameter and why)"
                        .to_string(),
                ),
            );
        }
        if let ParamValue::Str(text) = &v.value {
            plain_str(text, Pos::of(v), &field, f);
        }
        parameters.insert(k.clone(), v.value.to_string());
    }
    let mut users = Vec::new();
    let mut user_names = BTreeSet::new();
    for (i, u) in r.users.iter().enumerate() {
        let field = format!("postgres.users[{i}].name");
        if !identifier(&u.value.name, &field, "role", f) {
            continue;
        }
        let name = u.value.name.value.clone();
        if name.starts_with("pg_") {
            f.error(
                Pos::of(&u.value.name),
                &field,
                format!("`{name}`: PostgreSQL reserves role names starting with `pg_`"),
                Some("choose a name without the `pg_` prefix".to_string()),
            );
        }
        if RESERVED_ROLES.contains(&name.as_str()) {
            f.error(
                Pos::of(&u.value.name),
                &field,
                format!("`{name}` is a role pgha creates itself"),
                Some(format!("choose another name; reserved: {}", RESERVED_ROLES.join(", "))),
            );
        }
        if !user_names.insert(name.clone()) {
            f.error(
                Pos::of(&u.value.name),
                &field,
                format!("user `{name}` is listed twice"),
                None,
            );
        }
        let mut options = Vec::new();
        for o in &u.value.options {
            match o.value.to_ascii_lowercase().as_str() {
                "createdb" => options.push("CREATEDB".to_string()),
                "createrole" => options.push("CREATEROLE".to_string()),
                other => {
                    let hint = did_you_mean(other, ["createdb", "createrole"])
                        .map(|s| format!("did you mean `{s}`?"))
                        .or(Some(
                            "pgha grants only createdb and createrole; grant anything else yourself, knowingly"
                                .to_string(),
                        ));
                    f.error(
                        Pos::of(o),
                        &format!("postgres.users[{i}].options"),
                        format!("unknown role option `{}` (allowed: createdb, createrole)", o.value),
                        hint,
                    );
                }
            }
        }
        users.push(DbUser { name, options });
    }
    let mut databases = Vec::new();
    match &r.databases {
        None => databases.push(Database {
            name: "postgres".into(),
            owner: "postgres".into(),
        }),
        Some(list) => {
            let mut seen = BTreeSet::new();
            for (i, d) in list.iter().enumerate() {
                let field = format!("postgres.databases[{i}]");
                if !identifier(&d.value.name, &format!("{field}.name"), "database", f) {
                    continue;
                }
                let name = d.value.name.value.clone();
                if matches!(name.as_str(), "template0" | "template1") {
                    f.error(
                        Pos::of(&d.value.name),
                        &format!("{field}.name"),
                        format!("`{name}` is a template database PostgreSQL keeps for itself"),
                        Some("choose another name".to_string()),
                    );
                } else if name.len() > 60 {
                    f.error(
                        Pos::of(&d.value.name),
                        &format!("{field}.name"),
                        format!(
                            "`{name}` has {} characters; PgBouncer names it `{name}_rw`, which must fit 63",
                            name.len()
                        ),
                        Some("use at most 60 characters".to_string()),
                    );
                }
                if !seen.insert(name.clone()) {
                    f.error(
                        Pos::of(&d.value.name),
                        &format!("{field}.name"),
                        format!("database `{name}` is listed twice"),
                        None,
                    );
                }
                let owner = d
                    .value
                    .owner
                    .as_ref()
                    .map(|o| o.value.clone())
                    .unwrap_or_else(|| "postgres".into());
                if owner != "postgres" && !user_names.contains(&owner) {
                    let pos = d.value.owner.as_ref().map(Pos::of).unwrap_or(Pos::of(d));
                    f.error(
                        pos,
                        &format!("{field}.owner"),
                        format!("owner `{owner}` is not a declared user"),
                        Some("declare it under postgres.users, or use `postgres`".to_string()),
                    );
                }
                databases.push(Database { name, owner });
            }
            if list.is_empty() {
                f.error(
                    Pos::of(raw.expect("databases present implies section present")),
                    "postgres.databases",
                    "no databases",
                    Some("list at least one, e.g. `- name: postgres`".to_string()),
                );
            }
        }
    }
    let major = r.major.as_ref().map(|m| {
        if !(10..=99).contains(&m.value) {
            f.error(
                Pos::of(m),
                "postgres.major",
                format!("{} is not a PostgreSQL major version", m.value),
                Some("write the major version the nodes run: 17 on Debian 13, 15 on Debian 12".to_string()),
            );
        }
        m.value
    });
    PostgresSettings {
        port: port_or(r.port.as_ref(), 5432),
        parameters: parameters.into_iter().collect(),
        users,
        databases,
        major,
    }
}

/// `haproxy.direct_tls` needs PostgreSQL ≥ 17, and the inventory must say so: HAProxy cannot
/// send PostgreSQL's in-band SSLRequest, so re-encrypting to a node is possible only where the
/// node accepts a TLS handshake at once (direct TLS with ALPN `postgresql`, PostgreSQL 17).
fn direct_tls_fits(
    inv: &Inventory,
    raw_h: Option<&Spanned<RawHaproxy>>,
    raw_pg: Option<&Spanned<RawPostgres>>,
    f: &mut Findings,
) {
    let Some(raw) = raw_h.and_then(|h| h.value.direct_tls.as_ref()) else {
        return;
    };
    let why = "HAProxy cannot send PostgreSQL's SSLRequest, so it can re-encrypt to a node only with direct TLS (ALPN `postgresql`), which PostgreSQL accepts from 17 on";
    match inv.postgres.major {
        None => f.error(
            Pos::of(raw),
            "haproxy.direct_tls",
            format!("needs PostgreSQL {DIRECT_TLS_MIN_MAJOR} or later, and the inventory does not say which PostgreSQL the nodes run: {why}"),
            Some(format!("add `major: {DIRECT_TLS_MIN_MAJOR}` under `postgres:` (Debian 13 ships PostgreSQL 17; Debian 12's 15 cannot do it), or remove `direct_tls`")),
        ),
        Some(m) if m < DIRECT_TLS_MIN_MAJOR => f.error(
            raw_pg.and_then(|p| p.value.major.as_ref().map(Pos::of)).unwrap_or_else(|| Pos::of(raw)),
            "haproxy.direct_tls",
            format!("needs PostgreSQL {DIRECT_TLS_MIN_MAJOR} or later, and postgres.major is {m}: {why}"),
            Some("remove `direct_tls` (clients keep SSLRequest through the RW and RO ports), or run the nodes on Debian 13 (PostgreSQL 17)".to_string()),
        ),
        Some(_) => {}
    }
}

fn patroni(raw: Option<&Spanned<RawPatroni>>, _hosts: usize, f: &mut Findings) -> PatroniSettings {
    let empty = RawPatroni::default();
    let r = raw.map(|r| &r.value).unwrap_or(&empty);
    let num = |v: &Option<Spanned<u32>>, d: u32| v.as_ref().map(|v| v.value).unwrap_or(d);
    // Shorter than Patroni's 30/10: RW back within 30 s after a leader crash (docs/notes.md).
    let ttl = num(&r.ttl, 25);
    let loop_wait = num(&r.loop_wait, 5);
    let retry_timeout = num(&r.retry_timeout, 10);
    if loop_wait == 0 || retry_timeout == 0 {
        let pos = r
            .loop_wait
            .as_ref()
            .or(r.retry_timeout.as_ref())
            .map(Pos::of)
            .unwrap_or_default();
        f.error(
            pos,
            "patroni",
            "loop_wait and retry_timeout must be at least 1 second",
            None,
        );
    }
    if u64::from(loop_wait) + 2 * u64::from(retry_timeout) > u64::from(ttl) {
        let pos = r.ttl.as_ref().map(Pos::of).or(raw.map(Pos::of)).unwrap_or_default();
        f.error(
            pos,
            "patroni.ttl",
            format!("ttl {ttl} is shorter than loop_wait + 2 × retry_timeout = {}", loop_wait + 2 * retry_timeout),
            Some("Patroni requires loop_wait + 2*retry_timeout <= ttl, or a leader can lose its key while healthy; raise ttl or lower the others".to_string()),
        );
    }
    let synchronous_mode = match r.synchronous_mode.as_ref() {
        None => SyncMode::On,
        Some(v) => match &v.value {
            ParamValue::Bool(true) => SyncMode::On,
            ParamValue::Bool(false) => SyncMode::Off,
            ParamValue::Str(s) if s == "on" => SyncMode::On,
            ParamValue::Str(s) if s == "off" => SyncMode::Off,
            ParamValue::Str(s) if s == "quorum" => SyncMode::Quorum,
            other => {
                let word = other.to_string();
                let hint = did_you_mean(&word, ["on", "off", "quorum"])
                    .map(|s| format!("did you mean `{s}`? allowed: on, off, quorum"));
                f.error(
                    Pos::of(v),
                    "patroni.synchronous_mode",
                    format!("expected on, off or quorum, found `{word}`"),
                    hint.or(Some("allowed: on, off, quorum".into())),
                );
                SyncMode::On
            }
        },
    };
    let synchronous_node_count = num(&r.synchronous_node_count, 1);
    if synchronous_node_count == 0 {
        f.error(
            r.synchronous_node_count.as_ref().map(Pos::of).unwrap_or_default(),
            "patroni.synchronous_node_count",
            "must be at least 1",
            None,
        );
    }
    PatroniSettings {
        rest_port: port_or(r.rest_port.as_ref(), 8008),
        ttl,
        loop_wait,
        retry_timeout,
        maximum_lag_on_failover: r.maximum_lag_on_failover.as_ref().map(|v| v.value).unwrap_or(1_048_576),
        synchronous_mode,
        synchronous_node_count,
        failsafe_mode: r.failsafe_mode.as_ref().map(|v| v.value).unwrap_or(false),
    }
}

fn sync_mode_fits(inv: &Inventory, raw: Option<&Spanned<RawPatroni>>, f: &mut Findings) {
    let nodes = inv.hosts_with(Role::Postgres).count() as u32;
    let pos = raw
        .and_then(|r| r.value.synchronous_mode.as_ref().map(Pos::of))
        .unwrap_or_default();
    if inv.patroni.synchronous_mode != SyncMode::Off && nodes > 0 && inv.patroni.synchronous_node_count >= nodes {
        f.warn(
            pos,
            "patroni.synchronous_node_count",
            format!("{} synchronous standby(s) wanted but only {} replica(s) exist", inv.patroni.synchronous_node_count, nodes.saturating_sub(1)),
            Some("Patroni then runs without enough synchronous standbys (writes continue, unprotected); add nodes or lower synchronous_node_count".to_string()),
        );
    }
}

fn etcd(raw: Option<&Spanned<RawEtcd>>) -> EtcdSettings {
    let empty = RawEtcd::default();
    let r = raw.map(|r| &r.value).unwrap_or(&empty);
    EtcdSettings {
        client_port: port_or(r.client_port.as_ref(), 2379),
        peer_port: port_or(r.peer_port.as_ref(), 2380),
    }
}

fn haproxy(raw: Option<&Spanned<RawHaproxy>>, f: &mut Findings) -> HaproxySettings {
    let empty = RawHaproxy::default();
    let r = raw.map(|r| &r.value).unwrap_or(&empty);
    proxy_protocol(r.proxy_protocol.as_ref(), "haproxy.proxy_protocol", f);
    let num = |v: &Option<Spanned<u32>>, d: u32| v.as_ref().map(|v| v.value).unwrap_or(d);
    let check_interval_ms = num(&r.check_interval_ms, 3000);
    if check_interval_ms < 100 {
        f.error(
            r.check_interval_ms.as_ref().map(Pos::of).unwrap_or_default(),
            "haproxy.check_interval_ms",
            format!("{check_interval_ms} ms is too short"),
            Some("use at least 100 ms; 1000–3000 is typical".to_string()),
        );
    }
    for (v, name) in [(&r.check_fall, "check_fall"), (&r.check_rise, "check_rise")] {
        if let Some(v) = v
            && v.value == 0
        {
            f.error(Pos::of(v), &format!("haproxy.{name}"), "must be at least 1", None);
        }
    }
    HaproxySettings {
        rw_port: port_or(r.rw_port.as_ref(), 5000),
        ro_port: port_or(r.ro_port.as_ref(), 5001),
        stats_port: port_or(r.stats_port.as_ref(), 7000),
        ro_max_lag_bytes: r.ro_max_lag_bytes.as_ref().map(|v| v.value).unwrap_or(1_048_576),
        ro_primary_fallback: r.ro_primary_fallback.as_ref().map(|v| v.value).unwrap_or(true),
        check_interval_ms,
        check_fall: num(&r.check_fall, 3),
        check_rise: num(&r.check_rise, 2),
        maxconn: num(&r.maxconn, 1000),
        direct_tls: r.direct_tls.as_ref().map(|d| DirectTls {
            rw_port: port_or(d.value.rw_port.as_ref(), 5002),
            ro_port: port_or(d.value.ro_port.as_ref(), 5003),
        }),
    }
}

fn pgbouncer(raw: Option<&Spanned<RawPgbouncer>>, f: &mut Findings) -> PgbouncerSettings {
    let empty = RawPgbouncer::default();
    let r = raw.map(|r| &r.value).unwrap_or(&empty);
    proxy_protocol(r.proxy_protocol.as_ref(), "pgbouncer.proxy_protocol", f);
    let pool_mode = match r.pool_mode.as_ref() {
        None => PoolMode::Transaction,
        Some(m) => match m.value.as_str() {
            "session" => PoolMode::Session,
            "transaction" => PoolMode::Transaction,
            "statement" => PoolMode::Statement,
            other => {
                let hint = did_you_mean(other, ["session", "transaction", "statement"])
                    .map(|s| format!("did you mean `{s}`?"));
                f.error(
                    Pos::of(m),
                    "pgbouncer.pool_mode",
                    format!("expected session, transaction or statement, found `{other}`"),
                    hint,
                );
                PoolMode::Transaction
            }
        },
    };
    let num = |v: &Option<Spanned<u32>>, d: u32| v.as_ref().map(|v| v.value).unwrap_or(d);
    let default_pool_size = num(&r.default_pool_size, 20);
    if default_pool_size == 0 {
        f.error(
            r.default_pool_size.as_ref().map(Pos::of).unwrap_or_default(),
            "pgbouncer.default_pool_size",
            "must be at least 1",
            None,
        );
    }
    PgbouncerSettings {
        port: port_or(r.port.as_ref(), 6432),
        pool_mode,
        default_pool_size,
        max_client_conn: num(&r.max_client_conn, 1000),
        reserve_pool_size: num(&r.reserve_pool_size, 0),
    }
}

fn tls(raw: Option<&Spanned<RawTls>>, f: &mut Findings) -> TlsSettings {
    let empty = RawTls::default();
    let r = raw.map(|r| &r.value).unwrap_or(&empty);
    let num = |v: &Option<Spanned<u32>>, d: u32| v.as_ref().map(|v| v.value).unwrap_or(d);
    let t = TlsSettings {
        ca_validity_days: num(&r.ca_validity_days, 3650),
        leaf_validity_days: num(&r.leaf_validity_days, 365),
        renew_within_days: num(&r.renew_within_days, 30),
    };
    let pos = |v: &Option<Spanned<u32>>| v.as_ref().map(Pos::of).unwrap_or_default();
    if t.leaf_validity_days == 0 || t.ca_validity_days == 0 {
        f.error(
            pos(&r.leaf_validity_days),
            "tls",
            "validity must be at least 1 day",
            None,
        );
    } else if t.leaf_validity_days > t.ca_validity_days {
        f.error(
            pos(&r.leaf_validity_days),
            "tls.leaf_validity_days",
            format!(
                "leaves ({} days) would outlive the CA ({} days)",
                t.leaf_validity_days, t.ca_validity_days
            ),
            Some("keep leaf_validity_days ≤ ca_validity_days".to_string()),
        );
    }
    if t.renew_within_days >= t.leaf_validity_days && t.leaf_validity_days > 0 {
        f.error(
            pos(&r.renew_within_days),
            "tls.renew_within_days",
            format!(
                "a {}-day renewal window on {}-day leaves renews them on every run",
                t.renew_within_days, t.leaf_validity_days
            ),
            Some("keep renew_within_days well below leaf_validity_days".to_string()),
        );
    }
    t
}

/// `vip:`: an IPv4 address no host has, valid names no host uses, an interface name, a router
/// id 1–255; and a layout keepalived can serve: at least two entry hosts, each running both
/// HAProxy and PgBouncer (one VRRP instance whose track script checks both services).
fn vip(raw: &Spanned<RawVip>, hosts: &[Host], f: &mut Findings) -> Option<Vip> {
    let r = &raw.value;
    let mut ok = true;
    let address = match r.address.value.trim().parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) if !a.is_unspecified() && !a.is_multicast() && !a.is_broadcast() && !a.is_loopback() => {
            if let Some(h) = hosts.iter().find(|h| h.address == IpAddr::V4(a)) {
                f.error(
                    Pos::of(&r.address),
                    "vip.address",
                    format!("{a} is the address of host {}", h.name),
                    Some(
                        "the VIP must be a free address in the entry hosts' subnet, held by one of them at a time"
                            .to_string(),
                    ),
                );
                ok = false;
            }
            IpAddr::V4(a)
        }
        _ => {
            f.error(
                Pos::of(&r.address),
                "vip.address",
                format!("expected a unicast IPv4 address, found \"{}\"", r.address.value),
                Some("a free IPv4 address on the entry hosts' L2 segment, e.g. 198.51.100.30 (keepalived's VRRPv2 with authentication is IPv4 only)".to_string()),
            );
            return None;
        }
    };
    let mut names = Vec::new();
    for n in &r.names {
        match HostName::new(&n.value) {
            Ok(hn) if hn.as_str().ends_with(".invalid") => {
                f.error(
                    Pos::of(n),
                    "vip.names",
                    format!("`{hn}` is under `.invalid`, which pgha reserves"),
                    None,
                );
                ok = false;
            }
            Ok(hn) if hosts.iter().any(|h| h.dns_names().contains(&hn)) => {
                f.error(
                    Pos::of(n),
                    "vip.names",
                    format!("`{hn}` is already a host's name"),
                    Some("a VIP name must resolve to the VIP only, or clients would reach one host and lose it with that host".to_string()),
                );
                ok = false;
            }
            Ok(hn) => names.push(hn),
            Err(why) => {
                f.error(
                    Pos::of(n),
                    "vip.names",
                    why,
                    Some("the exact DNS names that resolve to the VIP".to_string()),
                );
                ok = false;
            }
        }
    }
    let interface = match &r.interface {
        None => "eth0".to_string(),
        Some(i) => {
            let v = i.value.as_str();
            let valid = !v.is_empty()
                && v.len() <= 15
                && !v.starts_with('-')
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
            if !valid {
                f.error(
                    Pos::of(i),
                    "vip.interface",
                    format!("`{}` is not a network interface name", escape_controls(v)),
                    Some("the interface holding the entry hosts' addresses, as `ip -o addr` shows it (1-15 of a-z A-Z 0-9 . _ -)".to_string()),
                );
                ok = false;
            }
            v.to_string()
        }
    };
    let virtual_router_id = match &r.virtual_router_id {
        Some(v) => match u8::try_from(v.value) {
            Ok(id) if id >= 1 => id,
            _ => {
                f.error(
                    Pos::of(v),
                    "vip.virtual_router_id",
                    format!("expected 1–255, found {}", v.value),
                    Some("VRRP router ids are 1–255 and unique per network segment".to_string()),
                );
                ok = false;
                1
            }
        },
        None => match address {
            IpAddr::V4(a) => match a.octets()[3] {
                0 => 51,
                n => n,
            },
            IpAddr::V6(_) => 51,
        },
    };
    let entry: Vec<&Host> = hosts
        .iter()
        .filter(|h| h.has(Role::Haproxy) || h.has(Role::Pgbouncer))
        .collect();
    for h in &entry {
        if !(h.has(Role::Haproxy) && h.has(Role::Pgbouncer)) {
            f.error(
                Pos::of(raw),
                "vip",
                format!("{} runs {} only: with a VIP every entry host runs both HAProxy and PgBouncer", h.name, if h.has(Role::Haproxy) { "HAProxy" } else { "PgBouncer" }),
                Some("co-locate HAProxy and PgBouncer on each entry host (roles: [haproxy, pgbouncer]); separate HAProxy and PgBouncer hosts behind two VIPs are not supported yet".to_string()),
            );
            ok = false;
        }
    }
    if entry.len() < 2 {
        f.error(
            Pos::of(raw),
            "vip",
            format!(
                "a VIP needs at least two entry hosts to move between; the inventory has {}",
                entry.len()
            ),
            Some(
                "add a second host with roles [haproxy, pgbouncer], ideally in another data centre, or remove `vip`"
                    .to_string(),
            ),
        );
        ok = false;
    }
    ok.then_some(Vip {
        address,
        names,
        interface,
        virtual_router_id,
    })
}

/// Every listening port each host would open, per role; two services on one port is an error.
fn port_clashes(inv: &Inventory, raw: &Spanned<SpannedMap<Spanned<RawHost>>>, f: &mut Findings) {
    for host in &inv.hosts {
        let mut used: BTreeMap<u16, &str> = BTreeMap::new();
        let mut ports: Vec<(Port, &str)> = Vec::new();
        if host.has(Role::Postgres) {
            ports.push((inv.postgres.port, "postgres.port"));
            ports.push((inv.patroni.rest_port, "patroni.rest_port"));
        }
        if host.has(Role::Etcd) {
            ports.push((inv.etcd.client_port, "etcd.client_port"));
            ports.push((inv.etcd.peer_port, "etcd.peer_port"));
        }
        if host.has(Role::Haproxy) {
            ports.push((inv.haproxy.rw_port, "haproxy.rw_port"));
            ports.push((inv.haproxy.ro_port, "haproxy.ro_port"));
            ports.push((inv.haproxy.stats_port, "haproxy.stats_port"));
            if let Some(d) = &inv.haproxy.direct_tls {
                ports.push((d.rw_port, "haproxy.direct_tls.rw_port"));
                ports.push((d.ro_port, "haproxy.direct_tls.ro_port"));
            }
        }
        if host.has(Role::Pgbouncer) {
            ports.push((inv.pgbouncer.port, "pgbouncer.port"));
        }
        for (port, what) in ports {
            if let Some(first) = used.insert(port.get(), what) {
                let pos = raw
                    .value
                    .0
                    .iter()
                    .find(|(k, _)| k == host.name.as_str())
                    .map(|(_, v)| Pos::of(v))
                    .unwrap_or_default();
                f.error(
                    pos,
                    &format!("hosts.{}", host.name),
                    format!("{first} and {what} are both {port} on this host"),
                    Some("give each service on a shared host its own port".to_string()),
                );
            }
        }
    }
}
