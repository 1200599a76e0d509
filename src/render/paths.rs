//! Where pgha installs things on a host, and the fixed role names it creates. One place, so the
//! templates, the file list and docs/files.md agree. Pure functions, no I/O.

use std::net::IpAddr;

use super::material::LeafKind;
use super::target::Target;

/// Directory of every certificate, key and CA bundle pgha installs.
pub const TLS_DIR: &str = "/etc/pgha/tls";
/// etcd's configuration file, read through `ETCD_CONFIG_FILE`.
pub const ETCD_CONFIG: &str = "/etc/etcd/etcd.conf.yml";
/// systemd drop-in pointing Debian's etcd unit at [`ETCD_CONFIG`].
pub const ETCD_DROPIN: &str = "/etc/systemd/system/etcd.service.d/pgha.conf";
/// Patroni's configuration, the file Debian's plain `patroni.service` runs.
pub const PATRONI_CONFIG: &str = "/etc/patroni/config.yml";
/// postgresql-common drop-in that stops Debian creating a `main` cluster.
pub const CREATECLUSTER_DROPIN: &str = "/etc/postgresql-common/createcluster.d/pgha.conf";
/// HAProxy's configuration.
pub const HAPROXY_CONFIG: &str = "/etc/haproxy/haproxy.cfg";
/// keepalived's configuration (entry hosts, with a VIP).
pub const KEEPALIVED_CONFIG: &str = "/etc/keepalived/keepalived.conf";
/// keepalived's track script: root-owned, in a root-only path (`enable_script_security`).
pub const ENTRY_CHECK: &str = "/usr/local/lib/pgha/entry-check";
/// `net.ipv4.ip_nonlocal_bind = 1`, so PgBouncer can listen on the VIP before it holds it.
pub const VIP_SYSCTL: &str = "/etc/sysctl.d/60-pgha-vip.conf";
/// systemd drop-in saving HAProxy's server state before each reload.
pub const HAPROXY_DROPIN: &str = "/etc/systemd/system/haproxy.service.d/pgha.conf";
/// HAProxy's server-state file (kept across reloads, docs/design.md §3).
pub const HAPROXY_STATE_FILE: &str = "/var/lib/haproxy/server-state";
/// HAProxy's admin socket (local only).
pub const HAPROXY_ADMIN_SOCKET: &str = "/run/haproxy/admin.sock";
/// PgBouncer's configuration.
pub const PGBOUNCER_INI: &str = "/etc/pgbouncer/pgbouncer.ini";
/// PgBouncer's auth file (SCRAM verifiers, the auth user's password).
pub const PGBOUNCER_USERLIST: &str = "/etc/pgbouncer/userlist.txt";
/// PgBouncer's HBA file.
pub const PGBOUNCER_HBA: &str = "/etc/pgbouncer/pg_hba.conf";
/// The deploy's reload and rolling-restart helper on PostgreSQL nodes (templates/patroni).
pub const PATRONI_HELPER: &str = "/usr/local/sbin/pgha-patroni";
/// The PgBouncer reload-and-drain helper (templates/pgbouncer).
pub const PGBOUNCER_HELPER: &str = "/usr/local/sbin/pgha-pgbouncer";
/// pgBackRest's configuration directory (not shipped by Debian; its own `/etc/pgbackrest.conf`
/// is read only when [`PGBACKREST_CONFIG`] does not exist, and is left alone).
pub const PGBACKREST_DIR: &str = "/etc/pgbackrest";
/// pgBackRest's configuration, the default `--config` path.
pub const PGBACKREST_CONFIG: &str = "/etc/pgbackrest/pgbackrest.conf";
/// pgBackRest's repository on the backup host (Debian creates it, postgres 0750).
pub const PGBACKREST_REPO: &str = "/var/lib/pgbackrest";
/// pgBackRest's TLS server port (its default).
pub const PGBACKREST_PORT: u16 = 8432;
/// The backup service template on the repository host (`pgha-backup@full.service`, …).
pub const BACKUP_SERVICE: &str = "/etc/systemd/system/pgha-backup@.service";
/// The full backup timer.
pub const BACKUP_TIMER_FULL: &str = "/etc/systemd/system/pgha-backup-full.timer";
/// The differential backup timer.
pub const BACKUP_TIMER_DIFF: &str = "/etc/systemd/system/pgha-backup-diff.timer";
/// The incremental backup timer.
pub const BACKUP_TIMER_INCR: &str = "/etc/systemd/system/pgha-backup-incr.timer";

/// Unix socket directory of PostgreSQL and PgBouncer (Debian's default).
pub const SOCKET_DIR: &str = "/var/run/postgresql";

/// PostgreSQL superuser role.
pub const SUPERUSER: &str = "postgres";
/// Physical replication role.
pub const REPLICATION_USER: &str = "replicator";
/// pg_rewind role.
pub const REWIND_USER: &str = "rewind_user";
/// Patroni REST API user for unsafe endpoints.
pub const PATRONI_REST_USER: &str = "patroni";
/// PgBouncer's `auth_user`.
pub const PGBOUNCER_AUTH_USER: &str = "pgbouncer_auth";
/// The role `pgha verify` uses (its own schema `pgha_verify` only; never application data).
pub const VERIFY_USER: &str = "pgha_verify";

/// The current CA bundle under a path that never changes, its content replaced at each
/// generation. Patroni's etcd client takes its CA path only at start (a SIGHUP does not rebuild
/// it) but reads the file again for every new connection, so it must not follow the versioned
/// name; everything else uses the versioned one.
pub const CA_BUNDLE_CURRENT: &str = "/etc/pgha/tls/ca-bundle.pem";

/// The CA bundle's path for a bundle file name such as `ca-bundle-1.pem`.
pub fn ca_bundle(file: &str) -> String {
    format!("{TLS_DIR}/{file}")
}

/// Certificate path of a leaf kind.
pub fn leaf_cert(kind: LeafKind) -> String {
    format!("{TLS_DIR}/{}.crt", kind.as_str())
}

/// Key path of a leaf kind.
pub fn leaf_key(kind: LeafKind) -> String {
    format!("{TLS_DIR}/{}.key", kind.as_str())
}

/// HAProxy wants certificate and key in one file for `crt`.
pub fn haproxy_check_pem() -> String {
    format!("{TLS_DIR}/{}.pem", LeafKind::HaproxyCheck.as_str())
}

/// HAProxy's direct-TLS server certificate and key, one file for `bind … ssl crt`.
pub fn haproxy_server_pem() -> String {
    format!("{TLS_DIR}/{}.pem", LeafKind::HaproxyServer.as_str())
}

/// PostgreSQL binaries of the target's major version.
pub fn pg_bin_dir(target: Target) -> String {
    format!("/usr/lib/postgresql/{}/bin", target.versions().postgres)
}

/// Data directory: Debian's layout, named after the cluster (not `main`).
pub fn pg_data_dir(target: Target, cluster: &str) -> String {
    format!("/var/lib/postgresql/{}/{cluster}", target.versions().postgres)
}

/// The pgpass file Patroni writes for replication and rewind.
pub fn pgpass() -> String {
    "/var/lib/postgresql/.pgpass_patroni".to_owned()
}

/// etcd data directory: a fresh one per cluster, never Debian's `/var/lib/etcd/default`.
pub fn etcd_data_dir(cluster: &str) -> String {
    format!("/var/lib/etcd/{cluster}")
}

/// `host:port` for URLs and libpq-style lists: IPv6 addresses get brackets.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `addr:port` as HAProxy and etcd's listen URLs want it.
pub fn addr_port(addr: IpAddr, port: u16) -> String {
    host_port(&addr.to_string(), port)
}

/// `addr:port` as HAProxy wants it: no brackets, HAProxy splits on the last colon.
pub fn haproxy_addr_port(addr: IpAddr, port: u16) -> String {
    format!("{addr}:{port}")
}

/// The single-address CIDR of an address (`/32` or `/128`), for pg_hba.
pub fn host_cidr(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}/32"),
        IpAddr::V6(a) => format!("{a}/128"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_gets_brackets_and_128() {
        let v6: IpAddr = "2001:db8::1".parse().expect("literal");
        assert_eq!(addr_port(v6, 5432), "[2001:db8::1]:5432");
        assert_eq!(host_cidr(v6), "2001:db8::1/128");
        let v4: IpAddr = "192.0.2.1".parse().expect("literal");
        assert_eq!(addr_port(v4, 5432), "192.0.2.1:5432");
        assert_eq!(host_cidr(v4), "192.0.2.1/32");
    }

    #[test]
    fn version_paths_follow_the_target() {
        assert_eq!(pg_bin_dir(Target::Debian12), "/usr/lib/postgresql/15/bin");
        assert_eq!(pg_data_dir(Target::Debian13, "pgha"), "/var/lib/postgresql/17/pgha");
    }
}
