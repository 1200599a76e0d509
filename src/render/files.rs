//! The per-host file list: which template (or which piece of TLS material) lands at which
//! absolute path, with owner, group, mode and the unit that must react when it changes.
//! docs/files.md is the human-readable copy of this table; keep them in step.
//!
//! No path from a service user to root (issue 12): every file a service reads is owned by
//! root and readable through the service's group (0640 for keys and passwords, which
//! PostgreSQL accepts for a root-owned key), so a compromised `postgres`, `etcd` or `haproxy`
//! can read what it already could, but cannot rewrite a file root later parses or installs.

use serde::Serialize;

use super::material::LeafKind;
use super::paths;
use crate::inventory::Role;

/// One file pgha installs on a host.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct RenderedFile {
    /// Absolute path on the host.
    pub path: String,
    /// Contents.
    pub content: String,
    /// Owning user.
    pub owner: &'static str,
    /// Owning group.
    pub group: &'static str,
    /// Permission bits.
    pub mode: u32,
    /// Holds a private key or password: never print it, never log a diff of it.
    pub secret: bool,
    /// The systemd unit that must reload or restart when it changes (docs/files.md says which).
    pub unit: Option<&'static str>,
    /// The template it came from (None for certificates and keys).
    pub template: Option<&'static str>,
}

impl std::fmt::Debug for RenderedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderedFile")
            .field("path", &self.path)
            .field("owner", &self.owner)
            .field("group", &self.group)
            .field("mode", &format_args!("{:04o}", self.mode))
            .field("secret", &self.secret)
            .field("bytes", &self.content.len())
            .finish()
    }
}

/// A templated file of a role.
#[derive(Clone, Copy, Debug)]
pub struct TemplateFile {
    /// Role whose hosts get it.
    pub role: Role,
    /// Template name under templates/.
    pub template: &'static str,
    /// Target path.
    pub path: &'static str,
    /// Owner.
    pub owner: &'static str,
    /// Group.
    pub group: &'static str,
    /// Mode.
    pub mode: u32,
    /// Contains passwords.
    pub secret: bool,
    /// Unit reacting to changes (None: a helper script, read when run).
    pub unit: Option<&'static str>,
}

/// Every templated file, in install order per role.
pub const TEMPLATES: &[TemplateFile] = &[
    TemplateFile {
        role: Role::Etcd,
        template: "etcd/etcd.conf.yml.j2",
        path: paths::ETCD_CONFIG,
        owner: "root",
        group: "etcd",
        mode: 0o640,
        secret: false,
        unit: Some("etcd.service"),
    },
    TemplateFile {
        role: Role::Etcd,
        template: "etcd/etcd.service.d-pgha.conf.j2",
        path: paths::ETCD_DROPIN,
        owner: "root",
        group: "root",
        mode: 0o644,
        secret: false,
        unit: Some("etcd.service"),
    },
    TemplateFile {
        role: Role::Postgres,
        template: "postgres/createcluster.d-pgha.conf.j2",
        path: paths::CREATECLUSTER_DROPIN,
        owner: "root",
        group: "root",
        mode: 0o644,
        secret: false,
        unit: Some("postgresql.service"),
    },
    TemplateFile {
        role: Role::Postgres,
        template: "patroni/config.yml.j2",
        path: paths::PATRONI_CONFIG,
        owner: "root",
        group: "postgres",
        mode: 0o640,
        secret: true,
        unit: Some("patroni.service"),
    },
    TemplateFile {
        role: Role::Postgres,
        template: "patroni/pgha-patroni.j2",
        path: paths::PATRONI_HELPER,
        owner: "root",
        group: "root",
        mode: 0o755,
        secret: false,
        unit: None,
    },
    TemplateFile {
        role: Role::Haproxy,
        template: "haproxy/haproxy.cfg.j2",
        path: paths::HAPROXY_CONFIG,
        owner: "root",
        group: "haproxy",
        mode: 0o640,
        secret: false,
        unit: Some("haproxy.service"),
    },
    TemplateFile {
        role: Role::Haproxy,
        template: "haproxy/haproxy.service.d-pgha.conf.j2",
        path: paths::HAPROXY_DROPIN,
        owner: "root",
        group: "root",
        mode: 0o644,
        secret: false,
        unit: Some("haproxy.service"),
    },
    TemplateFile {
        role: Role::Pgbouncer,
        template: "pgbouncer/pgbouncer.ini.j2",
        path: paths::PGBOUNCER_INI,
        owner: "root",
        group: "postgres",
        mode: 0o640,
        secret: false,
        unit: Some("pgbouncer.service"),
    },
    TemplateFile {
        role: Role::Pgbouncer,
        template: "pgbouncer/pg_hba.conf.j2",
        path: paths::PGBOUNCER_HBA,
        owner: "root",
        group: "postgres",
        mode: 0o640,
        secret: false,
        unit: Some("pgbouncer.service"),
    },
    TemplateFile {
        role: Role::Pgbouncer,
        template: "pgbouncer/userlist.txt.j2",
        path: paths::PGBOUNCER_USERLIST,
        owner: "root",
        group: "postgres",
        mode: 0o640,
        secret: true,
        unit: Some("pgbouncer.service"),
    },
    TemplateFile {
        role: Role::Pgbouncer,
        template: "pgbouncer/pgha-pgbouncer.j2",
        path: paths::PGBOUNCER_HELPER,
        owner: "root",
        group: "root",
        mode: 0o755,
        secret: false,
        unit: None,
    },
    TemplateFile {
        role: Role::Postgres,
        template: "pgbackrest/pgbackrest-node.conf.j2",
        path: paths::PGBACKREST_CONFIG,
        owner: "root",
        group: "postgres",
        mode: 0o640,
        secret: false,
        unit: Some("pgbackrest.service"),
    },
    TemplateFile {
        role: Role::Backup,
        template: "pgbackrest/pgbackrest-repo.conf.j2",
        path: paths::PGBACKREST_CONFIG,
        owner: "root",
        group: "postgres",
        mode: 0o640,
        secret: true,
        unit: Some("pgbackrest.service"),
    },
    TemplateFile {
        role: Role::Backup,
        template: "pgbackrest/pgha-backup@.service.j2",
        path: paths::BACKUP_SERVICE,
        owner: "root",
        group: "root",
        mode: 0o644,
        secret: false,
        unit: None,
    },
    TemplateFile {
        role: Role::Backup,
        template: "pgbackrest/pgha-backup-full.timer.j2",
        path: paths::BACKUP_TIMER_FULL,
        owner: "root",
        group: "root",
        mode: 0o644,
        secret: false,
        unit: Some("pgha-backup-full.timer"),
    },
    TemplateFile {
        role: Role::Backup,
        template: "pgbackrest/pgha-backup-diff.timer.j2",
        path: paths::BACKUP_TIMER_DIFF,
        owner: "root",
        group: "root",
        mode: 0o644,
        secret: false,
        unit: Some("pgha-backup-diff.timer"),
    },
    TemplateFile {
        role: Role::Backup,
        template: "pgbackrest/pgha-backup-incr.timer.j2",
        path: paths::BACKUP_TIMER_INCR,
        owner: "root",
        group: "root",
        mode: 0o644,
        secret: false,
        unit: Some("pgha-backup-incr.timer"),
    },
];

/// Whether `host` gets template `t`: its role, pgBackRest's files only with a `backup` host,
/// and a backup timer only when the inventory schedules that type.
pub fn template_wanted(t: &TemplateFile, host: &crate::inventory::Host, inv: &crate::inventory::Inventory) -> bool {
    if !host.has(t.role) {
        return false;
    }
    if !t.template.starts_with("pgbackrest/") {
        return true;
    }
    let Some(b) = &inv.backup else { return false };
    match t
        .template
        .strip_prefix("pgbackrest/pgha-backup-")
        .and_then(|r| r.strip_suffix(".timer.j2"))
    {
        Some(kind) => b.schedule.iter().any(|s| s.kind.as_str() == kind),
        None => true,
    }
}

/// Whether `host` gets leaf file `l` (pgBackRest's only with a `backup` host).
pub fn leaf_wanted(l: &LeafFile, host: &crate::inventory::Host, inv: &crate::inventory::Inventory) -> bool {
    host.has(l.role) && l.kind.wanted_by(host, inv)
}

/// The files of an entry host when the inventory has a VIP (`role` is unused: every entry
/// host gets them), in install order: the sysctl, the track script, then keepalived's config
/// (which `keepalived -t` checks against the installed script).
pub const VIP_TEMPLATES: &[TemplateFile] = &[
    TemplateFile {
        role: Role::Haproxy,
        template: "keepalived/sysctl-vip.conf.j2",
        path: paths::VIP_SYSCTL,
        owner: "root",
        group: "root",
        mode: 0o644,
        secret: false,
        unit: None,
    },
    TemplateFile {
        role: Role::Haproxy,
        template: "keepalived/pgha-entry-check.j2",
        path: paths::ENTRY_CHECK,
        owner: "root",
        group: "root",
        mode: 0o755,
        secret: false,
        unit: None,
    },
    TemplateFile {
        role: Role::Haproxy,
        template: "keepalived/keepalived.conf.j2",
        path: paths::KEEPALIVED_CONFIG,
        owner: "root",
        group: "root",
        mode: 0o600,
        secret: true,
        unit: Some("keepalived.service"),
    },
];

/// A certificate (and key) a role needs: the group of the service that reads it (files are
/// root-owned) and the unit that reads it.
#[derive(Clone, Copy, Debug)]
pub struct LeafFile {
    /// Role whose hosts get it.
    pub role: Role,
    /// Leaf kind.
    pub kind: LeafKind,
    /// Group of the service user reading it (owner: root).
    pub group: &'static str,
    /// Unit that reads it.
    pub unit: &'static str,
}

/// Every leaf per role. HAProxy's check client is one PEM (cert + key) for `crt`.
pub const LEAVES: &[LeafFile] = &[
    LeafFile {
        role: Role::Etcd,
        kind: LeafKind::EtcdServer,
        group: "etcd",
        unit: "etcd.service",
    },
    LeafFile {
        role: Role::Etcd,
        kind: LeafKind::EtcdPeer,
        group: "etcd",
        unit: "etcd.service",
    },
    LeafFile {
        role: Role::Postgres,
        kind: LeafKind::PostgresServer,
        group: "postgres",
        unit: "patroni.service",
    },
    LeafFile {
        role: Role::Postgres,
        kind: LeafKind::PatroniRest,
        group: "postgres",
        unit: "patroni.service",
    },
    LeafFile {
        role: Role::Postgres,
        kind: LeafKind::PatroniClient,
        group: "postgres",
        unit: "patroni.service",
    },
    LeafFile {
        role: Role::Haproxy,
        kind: LeafKind::HaproxyCheck,
        group: "haproxy",
        unit: "haproxy.service",
    },
    LeafFile {
        role: Role::Haproxy,
        kind: LeafKind::HaproxyServer,
        group: "haproxy",
        unit: "haproxy.service",
    },
    LeafFile {
        role: Role::Pgbouncer,
        kind: LeafKind::PgbouncerServer,
        group: "postgres",
        unit: "pgbouncer.service",
    },
    LeafFile {
        role: Role::Postgres,
        kind: LeafKind::Pgbackrest,
        group: "postgres",
        unit: "pgbackrest.service",
    },
    LeafFile {
        role: Role::Backup,
        kind: LeafKind::Pgbackrest,
        group: "postgres",
        unit: "pgbackrest.service",
    },
];
