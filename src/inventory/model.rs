//! The validated inventory: what every other part of pgha reads. Built only by
//! `validate::from_raw`, so its invariants (odd etcd count, unique names and addresses, every
//! role present) hold wherever an [`Inventory`] exists.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Serialize;

use super::names::{DcName, HostName, Port, Role};

/// A checked inventory.
#[derive(Clone, Debug, Serialize)]
pub struct Inventory {
    /// The file it was read from.
    pub path: PathBuf,
    /// Cluster name: Patroni scope, etcd token.
    pub cluster_name: String,
    /// Hosts in file order.
    pub hosts: Vec<Host>,
    /// PostgreSQL settings.
    pub postgres: PostgresSettings,
    /// Patroni settings.
    pub patroni: PatroniSettings,
    /// etcd settings.
    pub etcd: EtcdSettings,
    /// HAProxy settings.
    pub haproxy: HaproxySettings,
    /// PgBouncer settings.
    pub pgbouncer: PgbouncerSettings,
    /// Certificate settings.
    pub tls: TlsSettings,
    /// The virtual IP over the entry hosts, if any.
    pub vip: Option<Vip>,
    /// The pgBackRest repository and its schedules; `None` without a `backup` host.
    pub backup: Option<BackupSettings>,
}

/// A virtual IP held by one entry host at a time (keepalived, VRRP with unicast peers). Every
/// entry host (HAProxy and PgBouncer, co-located) is a candidate.
#[derive(Clone, Debug, Serialize)]
pub struct Vip {
    /// The address clients dial.
    pub address: IpAddr,
    /// DNS names resolving to it; clients verify these (they go into the certificates).
    pub names: Vec<HostName>,
    /// The interface carrying it on every entry host.
    pub interface: String,
    /// VRRP virtual router id (unique per L2 segment).
    pub virtual_router_id: u8,
}

impl Vip {
    /// The name a client verifies: the first DNS name, else the address.
    pub fn client_name(&self) -> String {
        self.names
            .first()
            .map_or_else(|| self.address.to_string(), |n| n.to_string())
    }
}

/// A pgBackRest backup type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupType {
    /// Everything.
    Full,
    /// Changes since the last full backup.
    Diff,
    /// Changes since the last backup of any type.
    Incr,
}

impl BackupType {
    /// Every type, in the order schedules are listed.
    pub const ALL: [BackupType; 3] = [BackupType::Full, BackupType::Diff, BackupType::Incr];

    /// pgBackRest's name (`--type=`).
    pub fn as_str(self) -> &'static str {
        match self {
            BackupType::Full => "full",
            BackupType::Diff => "diff",
            BackupType::Incr => "incr",
        }
    }
}

impl std::fmt::Display for BackupType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One backup timer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackupSchedule {
    /// Backup type.
    #[serde(rename = "type")]
    pub kind: BackupType,
    /// systemd `OnCalendar=` expression.
    pub on_calendar: String,
}

/// The backup role's settings (docs/backup.md).
#[derive(Clone, Debug, Serialize)]
pub struct BackupSettings {
    /// The repository host.
    pub host: HostName,
    /// pgBackRest stanza: the cluster name.
    pub stanza: String,
    /// Full backups kept.
    pub retention_full: u32,
    /// Differential backups kept.
    pub retention_diff: u32,
    /// Timers, in [`BackupType::ALL`] order; a type without one has no timer.
    pub schedule: Vec<BackupSchedule>,
}

/// One host with its SSH settings resolved (host overrides over defaults).
#[derive(Clone, Debug, Serialize)]
pub struct Host {
    /// Its name.
    pub name: HostName,
    /// The address everything dials.
    pub address: IpAddr,
    /// Its data centre.
    pub dc: DcName,
    /// What it runs.
    pub roles: BTreeSet<Role>,
    /// Extra DNS names clients use for it.
    pub names: Vec<HostName>,
    /// How pgha reaches it.
    pub ssh: SshSettings,
}

impl Host {
    /// Whether this host carries `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Its own name followed by its extra names.
    pub fn dns_names(&self) -> Vec<HostName> {
        std::iter::once(self.name.clone())
            .chain(self.names.iter().cloned())
            .collect()
    }
}

/// SSH settings of one host.
#[derive(Clone, Debug, Serialize)]
pub struct SshSettings {
    /// Login user.
    pub user: String,
    /// sshd port.
    pub port: Port,
    /// Private key file (None: agent / ~/.ssh/config).
    pub key: Option<PathBuf>,
    /// known_hosts file (None: the user's default).
    pub known_hosts: Option<PathBuf>,
    /// Run commands through `sudo -n` (only meaningful when `user` is not root).
    pub become_: bool,
}

/// Application role.
#[derive(Clone, Debug, Serialize)]
pub struct DbUser {
    /// Role name.
    pub name: String,
    /// Role options (`CREATEDB`, `CREATEROLE`).
    pub options: Vec<String>,
}

/// Database to create.
#[derive(Clone, Debug, Serialize)]
pub struct Database {
    /// Name; PgBouncer exposes `<name>_rw` and `<name>_ro`.
    pub name: String,
    /// Owning role.
    pub owner: String,
}

/// PostgreSQL settings.
#[derive(Clone, Debug, Serialize)]
pub struct PostgresSettings {
    /// Listen port.
    pub port: Port,
    /// Parameters (name → value as PostgreSQL text), sorted by name.
    pub parameters: Vec<(String, String)>,
    /// Application roles.
    pub users: Vec<DbUser>,
    /// Databases.
    pub databases: Vec<Database>,
    /// The PostgreSQL major version the inventory says the nodes run (`None`: not stated).
    pub major: Option<u32>,
}

/// Patroni `synchronous_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Asynchronous replication: a failover may lose the last commits.
    Off,
    /// One synchronous standby: no committed transaction is lost on failover.
    On,
    /// Quorum commit (Patroni ≥ 4).
    Quorum,
}

/// Patroni settings.
#[derive(Clone, Debug, Serialize)]
pub struct PatroniSettings {
    /// REST API port.
    pub rest_port: Port,
    /// Leader key TTL, seconds.
    pub ttl: u32,
    /// Loop period, seconds.
    pub loop_wait: u32,
    /// Retry timeout, seconds.
    pub retry_timeout: u32,
    /// Maximum lag (bytes) of a promotable replica.
    pub maximum_lag_on_failover: u64,
    /// Synchronous replication mode.
    pub synchronous_mode: SyncMode,
    /// Synchronous standby count.
    pub synchronous_node_count: u32,
    /// DCS failsafe mode.
    pub failsafe_mode: bool,
}

/// etcd settings.
#[derive(Clone, Debug, Serialize)]
pub struct EtcdSettings {
    /// Client port.
    pub client_port: Port,
    /// Peer port.
    pub peer_port: Port,
}

/// HAProxy settings.
#[derive(Clone, Debug, Serialize)]
pub struct HaproxySettings {
    /// RW port.
    pub rw_port: Port,
    /// RO port.
    pub ro_port: Port,
    /// Stats port (127.0.0.1 only).
    pub stats_port: Port,
    /// Lag limit for the RO pool, bytes.
    pub ro_max_lag_bytes: u64,
    /// Keep the primary as RO backup.
    pub ro_primary_fallback: bool,
    /// Check interval, ms.
    pub check_interval_ms: u32,
    /// Checks to mark DOWN.
    pub check_fall: u32,
    /// Checks to mark UP.
    pub check_rise: u32,
    /// Frontend maxconn.
    pub maxconn: u32,
    /// HAProxy-terminated direct TLS frontends (`None`: off).
    pub direct_tls: Option<DirectTls>,
}

/// HAProxy-terminated direct TLS (`haproxy.direct_tls`, PostgreSQL ≥ 17): HAProxy presents its
/// own certificate to clients connecting with `sslnegotiation=direct` and re-encrypts to the
/// node (docs/entry-points.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DirectTls {
    /// RW frontend port.
    pub rw_port: Port,
    /// RO frontend port.
    pub ro_port: Port,
}

/// The first PostgreSQL major that accepts direct TLS (ALPN `postgresql`, no SSLRequest).
pub const DIRECT_TLS_MIN_MAJOR: u32 = 17;

/// PgBouncer `pool_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// One server connection per client session.
    Session,
    /// Server connection returned after each transaction.
    Transaction,
    /// Returned after each statement.
    Statement,
}

impl PoolMode {
    /// The value PgBouncer expects.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
            PoolMode::Statement => "statement",
        }
    }
}

/// PgBouncer settings.
#[derive(Clone, Debug, Serialize)]
pub struct PgbouncerSettings {
    /// Listen port.
    pub port: Port,
    /// Pool mode.
    pub pool_mode: PoolMode,
    /// Default pool size.
    pub default_pool_size: u32,
    /// Max client connections.
    pub max_client_conn: u32,
    /// Reserve pool size.
    pub reserve_pool_size: u32,
}

/// Certificate settings.
#[derive(Clone, Debug, Serialize)]
pub struct TlsSettings {
    /// CA validity, days.
    pub ca_validity_days: u32,
    /// Leaf validity, days.
    pub leaf_validity_days: u32,
    /// Renewal window, days.
    pub renew_within_days: u32,
}

impl Inventory {
    /// Hosts carrying `role`, in file order.
    pub fn hosts_with(&self, role: Role) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(move |h| h.has(role))
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name.as_str() == name)
    }

    /// The hosts a VIP moves between: every host running HAProxy or PgBouncer, in file order.
    pub fn entry_hosts(&self) -> impl Iterator<Item = &Host> {
        self.hosts
            .iter()
            .filter(|h| h.has(Role::Haproxy) || h.has(Role::Pgbouncer))
    }

    /// The directory holding the inventory file (the default state dir is `<dir>/.pgha`).
    pub fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }
}
