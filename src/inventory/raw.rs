//! The inventory exactly as written in YAML: every field optional where a default exists,
//! unknown fields rejected, values kept with their source location ([`Spanned`]) so that
//! validation can point at them. Conversion to the checked model lives in `validate.rs`.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_saphyr::Spanned;

use super::names::{Port, Role};

/// The whole inventory file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInventory {
    /// Cluster identity.
    pub cluster: Spanned<RawCluster>,
    /// SSH defaults for every host.
    #[serde(default)]
    pub ssh: Option<Spanned<RawSsh>>,
    /// Hosts by name.
    pub hosts: Spanned<SpannedMap<Spanned<RawHost>>>,
    /// PostgreSQL settings.
    #[serde(default)]
    pub postgres: Option<Spanned<RawPostgres>>,
    /// Patroni settings.
    #[serde(default)]
    pub patroni: Option<Spanned<RawPatroni>>,
    /// etcd settings.
    #[serde(default)]
    pub etcd: Option<Spanned<RawEtcd>>,
    /// HAProxy settings.
    #[serde(default)]
    pub haproxy: Option<Spanned<RawHaproxy>>,
    /// PgBouncer settings.
    #[serde(default)]
    pub pgbouncer: Option<Spanned<RawPgbouncer>>,
    /// Certificate settings.
    #[serde(default)]
    pub tls: Option<Spanned<RawTls>>,
    /// A virtual IP over the entry hosts (keepalived), docs/entry-points.md.
    #[serde(default)]
    pub vip: Option<Spanned<RawVip>>,
    /// Backup schedules and retention (used when a host has the `backup` role).
    #[serde(default)]
    pub backup: Option<Spanned<RawBackup>>,
}

/// `vip:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVip {
    /// The virtual IPv4 address clients connect to.
    pub address: Spanned<String>,
    /// DNS names that resolve to it (added to the entry points' certificates).
    #[serde(default)]
    pub names: Vec<Spanned<String>>,
    /// The interface carrying it on every entry host (default `eth0`).
    pub interface: Option<Spanned<String>>,
    /// VRRP virtual router id, 1–255 (default: the address's last octet).
    pub virtual_router_id: Option<Spanned<u32>>,
}

/// `backup:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackup {
    /// Full backups kept (`repo1-retention-full`, count).
    pub retention_full: Option<Spanned<u32>>,
    /// Differential backups kept (`repo1-retention-diff`).
    pub retention_diff: Option<Spanned<u32>>,
    /// systemd `OnCalendar=` expressions per backup type; `""` turns a type's timer off.
    #[serde(default)]
    pub schedule: Option<Spanned<RawSchedule>>,
}

/// `backup.schedule:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    /// Full backups.
    pub full: Option<Spanned<String>>,
    /// Differential backups.
    pub diff: Option<Spanned<String>>,
    /// Incremental backups.
    pub incr: Option<Spanned<String>>,
}

/// `cluster:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// Patroni scope and etcd cluster token.
    pub name: Spanned<String>,
}

/// `ssh:` at the top level or under a host.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSsh {
    /// Login user.
    pub user: Option<Spanned<String>>,
    /// sshd port.
    pub port: Option<Spanned<Port>>,
    /// Private key file.
    pub key: Option<Spanned<String>>,
    /// known_hosts file to check host keys against.
    pub known_hosts: Option<Spanned<String>>,
    /// Use sudo for commands when the user is not root.
    #[serde(rename = "become")]
    pub become_: Option<Spanned<bool>>,
}

/// One entry under `hosts:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHost {
    /// IP address pgha and the cluster use to reach the host.
    pub address: Spanned<String>,
    /// Data centre label.
    pub dc: Spanned<String>,
    /// What the host runs.
    pub roles: Spanned<Vec<Spanned<Role>>>,
    /// Extra DNS names clients use for this host (added to its server certificates).
    #[serde(default)]
    pub names: Vec<Spanned<String>>,
    /// Per-host SSH overrides.
    #[serde(default)]
    pub ssh: Option<Spanned<RawSsh>>,
}

/// `postgres:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostgres {
    /// PostgreSQL listen port.
    pub port: Option<Spanned<Port>>,
    /// postgresql.conf parameters managed through Patroni.
    #[serde(default)]
    pub parameters: SpannedMap<Spanned<ParamValue>>,
    /// Application roles (passwords are generated).
    #[serde(default)]
    pub users: Vec<Spanned<RawUser>>,
    /// Databases to create.
    pub databases: Option<Vec<Spanned<RawDatabase>>>,
    /// Refused: see docs/design.md §3.
    pub proxy_protocol: Option<Spanned<ParamValue>>,
    /// The PostgreSQL major version the nodes run (17 on Debian 13, 15 on Debian 12); optional,
    /// checked against each node's release at deploy.
    pub major: Option<Spanned<u32>>,
}

/// One application role.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    /// Role name.
    pub name: Spanned<String>,
    /// Extra role options: `createdb`, `createrole`.
    #[serde(default)]
    pub options: Vec<Spanned<String>>,
}

/// One database.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    /// Database name.
    pub name: Spanned<String>,
    /// Owning role (default: postgres).
    pub owner: Option<Spanned<String>>,
}

/// `patroni:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPatroni {
    /// REST API port.
    pub rest_port: Option<Spanned<Port>>,
    /// Leader key TTL, seconds.
    pub ttl: Option<Spanned<u32>>,
    /// Main loop period, seconds.
    pub loop_wait: Option<Spanned<u32>>,
    /// DCS and PostgreSQL operation retry timeout, seconds.
    pub retry_timeout: Option<Spanned<u32>>,
    /// Replicas further behind (bytes) are not promoted.
    pub maximum_lag_on_failover: Option<Spanned<u64>>,
    /// off | on | quorum.
    pub synchronous_mode: Option<Spanned<ParamValue>>,
    /// Number of synchronous standbys.
    pub synchronous_node_count: Option<Spanned<u32>>,
    /// Keep the primary running when the DCS is unreachable (Patroni ≥ 4).
    pub failsafe_mode: Option<Spanned<bool>>,
}

/// `etcd:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEtcd {
    /// Client port.
    pub client_port: Option<Spanned<Port>>,
    /// Peer port.
    pub peer_port: Option<Spanned<Port>>,
}

/// `haproxy:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHaproxy {
    /// Port routing to the primary.
    pub rw_port: Option<Spanned<Port>>,
    /// Port routing to replicas.
    pub ro_port: Option<Spanned<Port>>,
    /// Stats page port, bound to localhost only.
    pub stats_port: Option<Spanned<Port>>,
    /// Replicas lagging more than this many bytes leave the RO pool.
    pub ro_max_lag_bytes: Option<Spanned<u64>>,
    /// Keep the primary as a backup server of the RO pool.
    pub ro_primary_fallback: Option<Spanned<bool>>,
    /// Health check interval, milliseconds.
    pub check_interval_ms: Option<Spanned<u32>>,
    /// Failed checks before a server is marked DOWN.
    pub check_fall: Option<Spanned<u32>>,
    /// Passed checks before a server is marked UP.
    pub check_rise: Option<Spanned<u32>>,
    /// Maximum client connections per frontend.
    pub maxconn: Option<Spanned<u32>>,
    /// Refused: see docs/design.md §3.
    pub proxy_protocol: Option<Spanned<ParamValue>>,
    /// HAProxy-terminated direct TLS (PostgreSQL ≥ 17), docs/entry-points.md; absent: off.
    pub direct_tls: Option<Spanned<RawDirectTls>>,
}

/// `haproxy.direct_tls:` (an empty map `{}` turns it on with the default ports).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDirectTls {
    /// Port of the direct-TLS frontend routing to the primary.
    pub rw_port: Option<Spanned<Port>>,
    /// Port of the direct-TLS frontend routing to replicas.
    pub ro_port: Option<Spanned<Port>>,
}

/// `pgbouncer:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPgbouncer {
    /// Listen port.
    pub port: Option<Spanned<Port>>,
    /// session | transaction | statement.
    pub pool_mode: Option<Spanned<String>>,
    /// Server connections per user/database pair.
    pub default_pool_size: Option<Spanned<u32>>,
    /// Client connections accepted in all.
    pub max_client_conn: Option<Spanned<u32>>,
    /// Extra connections allowed when a pool is exhausted.
    pub reserve_pool_size: Option<Spanned<u32>>,
    /// Refused: see docs/design.md §3.
    pub proxy_protocol: Option<Spanned<ParamValue>>,
}

/// `tls:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// CA validity, days.
    pub ca_validity_days: Option<Spanned<u32>>,
    /// Leaf certificate validity, days.
    pub leaf_validity_days: Option<Spanned<u32>>,
    /// Renew leaves expiring within this many days.
    pub renew_within_days: Option<Spanned<u32>>,
}

/// A scalar parameter value (string, number or boolean), kept as the text PostgreSQL expects.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamValue {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Str(s) => f.write_str(s),
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Float(x) => write!(f, "{x}"),
            ParamValue::Bool(b) => f.write_str(if *b { "on" } else { "off" }),
        }
    }
}

impl<'de> Deserialize<'de> for ParamValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ParamValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ParamValue, E> {
                Ok(ParamValue::Str(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ParamValue, E> {
                Ok(ParamValue::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ParamValue, E> {
                i64::try_from(v)
                    .map(ParamValue::Int)
                    .map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ParamValue, E> {
                Ok(ParamValue::Float(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ParamValue, E> {
                Ok(ParamValue::Bool(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// A YAML mapping kept in file order (serde-saphyr already refuses duplicate keys). Keys are
/// plain strings so that error paths name them (`hosts.node1.port`); the value's span locates
/// the entry.
#[derive(Debug)]
pub struct SpannedMap<V>(pub Vec<(String, V)>);

impl<V> Default for SpannedMap<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for SpannedMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = SpannedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value = map.next_value::<V>()?;
                    out.push((key, value));
                }
                Ok(SpannedMap(out))
            }
        }
        d.deserialize_map(MapVisitor(std::marker::PhantomData))
    }
}
