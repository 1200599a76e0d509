//! The per-host file list: which template (or which piece of TLS material) lands at which
//! absolute path, with owner, group, mode and the unit that must react when it changes.
//! docs/files.md is the human-readable copy of this table; keep them in step.

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
    /// Unit reacting to changes.
    pub unit: &'static str,
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
        unit: "etcd.service",
    },
    TemplateFile {
        role: Role::Etcd,
        template: "etcd/etcd.service.d-pgha.conf.j2",
        path: paths::ETCD_DROPIN,
        owner: "root",
        group: "root",
        mode: 0o644,
        secret: false,
        unit: "etcd.service",
    },
    TemplateFile {
        role: Role::Postgres,
        template: "postgres/createcluster.d-pgha.conf.j2",
        path: paths::CREATECLUSTER_DROPIN,
        owner: "root",
        group: "root",
        mode: 0o644,
        secret: false,
        unit: "postgresql.service",
    },
    TemplateFile {
        role: Role::Postgres,
        template: "patroni/config.yml.j2",
        path: paths::PATRONI_CONFIG,
        owner: "postgres",
        group: "postgres",
        mode: 0o600,
        secret: true,
        unit: "patroni.service",
    },
    TemplateFile {
        role: Role::Haproxy,
        template: "haproxy/haproxy.cfg.j2",
        path: paths::HAPROXY_CONFIG,
        owner: "root",
        group: "haproxy",
        mode: 0o640,
        secret: false,
        unit: "haproxy.service",
    },
    TemplateFile {
        role: Role::Haproxy,
        template: "haproxy/haproxy.service.d-pgha.conf.j2",
        path: paths::HAPROXY_DROPIN,
        owner: "root",
        group: "root",
        mode: 0o644,
        secret: false,
        unit: "haproxy.service",
    },
    TemplateFile {
        role: Role::Pgbouncer,
        template: "pgbouncer/pgbouncer.ini.j2",
        path: paths::PGBOUNCER_INI,
        owner: "postgres",
        group: "postgres",
        mode: 0o640,
        secret: false,
        unit: "pgbouncer.service",
    },
    TemplateFile {
        role: Role::Pgbouncer,
        template: "pgbouncer/pg_hba.conf.j2",
        path: paths::PGBOUNCER_HBA,
        owner: "postgres",
        group: "postgres",
        mode: 0o640,
        secret: false,
        unit: "pgbouncer.service",
    },
    TemplateFile {
        role: Role::Pgbouncer,
        template: "pgbouncer/userlist.txt.j2",
        path: paths::PGBOUNCER_USERLIST,
        owner: "postgres",
        group: "postgres",
        mode: 0o600,
        secret: true,
        unit: "pgbouncer.service",
    },
];

/// A certificate (and key) a role needs: its owner and the unit that reads it.
#[derive(Clone, Copy, Debug)]
pub struct LeafFile {
    /// Role whose hosts get it.
    pub role: Role,
    /// Leaf kind.
    pub kind: LeafKind,
    /// Service user owning it.
    pub owner: &'static str,
    /// Unit that reads it.
    pub unit: &'static str,
}

/// Every leaf per role. HAProxy's check client is one PEM (cert + key) for `crt`.
pub const LEAVES: &[LeafFile] = &[
    LeafFile {
        role: Role::Etcd,
        kind: LeafKind::EtcdServer,
        owner: "etcd",
        unit: "etcd.service",
    },
    LeafFile {
        role: Role::Etcd,
        kind: LeafKind::EtcdPeer,
        owner: "etcd",
        unit: "etcd.service",
    },
    LeafFile {
        role: Role::Postgres,
        kind: LeafKind::PostgresServer,
        owner: "postgres",
        unit: "patroni.service",
    },
    LeafFile {
        role: Role::Postgres,
        kind: LeafKind::PatroniRest,
        owner: "postgres",
        unit: "patroni.service",
    },
    LeafFile {
        role: Role::Postgres,
        kind: LeafKind::PatroniClient,
        owner: "postgres",
        unit: "patroni.service",
    },
    LeafFile {
        role: Role::Haproxy,
        kind: LeafKind::HaproxyCheck,
        owner: "haproxy",
        unit: "haproxy.service",
    },
    LeafFile {
        role: Role::Pgbouncer,
        kind: LeafKind::PgbouncerServer,
        owner: "postgres",
        unit: "pgbouncer.service",
    },
];
