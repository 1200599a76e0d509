//! Builds what the templates see for one host: every list, URL and version-dependent value is
//! computed here, in Rust, so templates only lay text out and unit tests can check the logic
//! (pg_hba lines, HAProxy servers, PgBouncer databases) without rendering. No I/O.

use std::collections::BTreeMap;

use serde::Serialize;

use super::RenderError;
use super::material::{LeafKind, Material};
use super::paths;
use super::target::{Target, Versions};
use crate::inventory::{Host, Inventory, Role, SyncMode};

/// Everything a template may use for one host.
#[derive(Clone, Debug, Serialize)]
pub struct HostContext {
    /// `debian13` or `debian12`.
    pub target: Target,
    /// Component versions of the target.
    pub v: Versions,
    /// Cluster name (Patroni scope, etcd token).
    pub cluster: String,
    /// The host being rendered.
    pub host: HostInfo,
    /// Certificate, key and bundle paths on the host.
    pub tls: TlsPaths,
    /// Role names pgha creates.
    pub users: Users,
    /// etcd settings, on etcd members.
    pub etcd: Option<EtcdContext>,
    /// Patroni settings, on PostgreSQL nodes.
    pub patroni: Option<PatroniContext>,
    /// HAProxy settings, on HAProxy hosts.
    pub haproxy: Option<HaproxyContext>,
    /// PgBouncer settings, on PgBouncer hosts.
    pub pgbouncer: Option<PgbouncerContext>,
    /// pgBackRest settings, on the repository host and every node when there is a `backup` host.
    pub backup: Option<BackupContext>,
    /// keepalived settings, on entry hosts when the inventory has a VIP.
    pub vip: Option<VipContext>,
}

/// keepalived on one entry host (docs/entry-points.md).
#[derive(Clone, Debug, Serialize)]
pub struct VipContext {
    /// The VIP.
    pub address: String,
    /// Its interface.
    pub interface: String,
    /// VRRP virtual router id.
    pub virtual_router_id: u8,
    /// `router_id` of `global_defs` (names this host in keepalived's logs).
    pub router_id: String,
    /// VRRP instance name.
    pub instance: String,
    /// Every other entry host's address (unicast peers).
    pub peers: Vec<String>,
    /// `auth_pass`: 8 alphanumerics from the state's secrets.
    pub auth_pass: String,
    /// The track script.
    pub check: String,
    /// HAProxy's admin socket (the track script reads `show stat`).
    pub admin_socket: String,
    /// PgBouncer's port (the track script pings it).
    pub pgbouncer_port: u16,
    /// A PgBouncer database alias to ping.
    pub pgbouncer_db: String,
    /// A user in PgBouncer's auth file (answered without a server connection).
    pub pgbouncer_user: &'static str,
}

/// One PostgreSQL node as the repository's `pgN-*` options see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackupNode {
    /// `N` of `pgN-host` (1-based, inventory order).
    pub index: usize,
    /// Host name (dialled, and the CN its client certificate carries).
    pub name: String,
}

/// pgBackRest configuration of one host (docs/backup.md).
#[derive(Clone, Serialize)]
pub struct BackupContext {
    /// Stanza (the cluster name).
    pub stanza: String,
    /// The repository host's name.
    pub repo_host: String,
    /// `repo1-path`.
    pub repo_path: String,
    /// Every PostgreSQL node.
    pub nodes: Vec<BackupNode>,
    /// `pgN-path` (the same on every node).
    pub data_dir: String,
    /// `pgN-port`.
    pub pg_port: u16,
    /// `pg1-socket-path` on the nodes.
    pub socket_dir: String,
    /// `tls-server-address`.
    pub server_address: String,
    /// `tls-server-port`.
    pub server_port: u16,
    /// `repo1-cipher-pass` (rendered on the repository host only).
    pub cipher_pass: String,
    /// `repo1-retention-full`.
    pub retention_full: u32,
    /// `repo1-retention-diff`.
    pub retention_diff: u32,
    /// Timers: backup type → `OnCalendar=`.
    pub timers: BTreeMap<String, String>,
}

impl std::fmt::Debug for BackupContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupContext")
            .field("stanza", &self.stanza)
            .field("repo_host", &self.repo_host)
            .field("nodes", &self.nodes)
            .field("cipher_pass", &"***")
            .finish_non_exhaustive()
    }
}

/// The rendered host.
#[derive(Clone, Debug, Serialize)]
pub struct HostInfo {
    /// Host name.
    pub name: String,
    /// Address.
    pub address: String,
    /// Data centre.
    pub dc: String,
    /// Roles, sorted.
    pub roles: Vec<String>,
}

/// Paths of the TLS material (same on every host; each host only gets its own files).
#[derive(Clone, Debug, Serialize)]
pub struct TlsPaths {
    /// The versioned CA bundle.
    pub ca_bundle: String,
    /// The current CA bundle at its fixed path (Patroni's etcd client only).
    pub ca_bundle_current: String,
    /// PostgreSQL server certificate and key.
    pub postgres_cert: String,
    /// PostgreSQL server key.
    pub postgres_key: String,
    /// Patroni REST server certificate.
    pub rest_cert: String,
    /// Patroni REST server key.
    pub rest_key: String,
    /// Patroni client certificate (ctl, etcd3).
    pub client_cert: String,
    /// Patroni client key.
    pub client_key: String,
    /// HAProxy check client certificate + key, one PEM.
    pub haproxy_check_pem: String,
    /// etcd client-port server certificate.
    pub etcd_server_cert: String,
    /// etcd client-port server key.
    pub etcd_server_key: String,
    /// etcd peer certificate.
    pub etcd_peer_cert: String,
    /// etcd peer key.
    pub etcd_peer_key: String,
    /// PgBouncer listener certificate.
    pub pgbouncer_cert: String,
    /// PgBouncer listener key.
    pub pgbouncer_key: String,
    /// pgBackRest TLS server and client certificate.
    pub pgbackrest_cert: String,
    /// pgBackRest key.
    pub pgbackrest_key: String,
}

impl TlsPaths {
    fn new(bundle_file: &str) -> Self {
        use LeafKind::*;
        Self {
            ca_bundle: paths::ca_bundle(bundle_file),
            ca_bundle_current: paths::CA_BUNDLE_CURRENT.to_owned(),
            postgres_cert: paths::leaf_cert(PostgresServer),
            postgres_key: paths::leaf_key(PostgresServer),
            rest_cert: paths::leaf_cert(PatroniRest),
            rest_key: paths::leaf_key(PatroniRest),
            client_cert: paths::leaf_cert(PatroniClient),
            client_key: paths::leaf_key(PatroniClient),
            haproxy_check_pem: paths::haproxy_check_pem(),
            etcd_server_cert: paths::leaf_cert(EtcdServer),
            etcd_server_key: paths::leaf_key(EtcdServer),
            etcd_peer_cert: paths::leaf_cert(EtcdPeer),
            etcd_peer_key: paths::leaf_key(EtcdPeer),
            pgbouncer_cert: paths::leaf_cert(PgbouncerServer),
            pgbouncer_key: paths::leaf_key(PgbouncerServer),
            pgbackrest_cert: paths::leaf_cert(Pgbackrest),
            pgbackrest_key: paths::leaf_key(Pgbackrest),
        }
    }
}

/// Fixed role names.
#[derive(Clone, Debug, Serialize)]
pub struct Users {
    /// Superuser.
    pub superuser: &'static str,
    /// Replication.
    pub replication: &'static str,
    /// pg_rewind.
    pub rewind: &'static str,
    /// Patroni REST.
    pub patroni_rest: &'static str,
    /// PgBouncer auth user.
    pub pgbouncer_auth: &'static str,
}

const USERS: Users = Users {
    superuser: paths::SUPERUSER,
    replication: paths::REPLICATION_USER,
    rewind: paths::REWIND_USER,
    patroni_rest: paths::PATRONI_REST_USER,
    pgbouncer_auth: paths::PGBOUNCER_AUTH_USER,
};

/// etcd member configuration.
#[derive(Clone, Debug, Serialize)]
pub struct EtcdContext {
    /// Member name (the host name).
    pub name: String,
    /// Data directory.
    pub data_dir: String,
    /// Config file path (for the systemd drop-in).
    pub config_file: String,
    /// `listen-client-urls`.
    pub listen_client_urls: String,
    /// `advertise-client-urls`.
    pub advertise_client_urls: String,
    /// `listen-peer-urls`.
    pub listen_peer_urls: String,
    /// `initial-advertise-peer-urls`.
    pub initial_advertise_peer_urls: String,
    /// `initial-cluster`: every member with its https peer URL (for a member that joined a
    /// formed cluster, the members at its join).
    pub initial_cluster: String,
    /// `initial-cluster-state`: `new`, or `existing` for a member that joined a formed cluster.
    pub initial_cluster_state: String,
}

/// Patroni and PostgreSQL configuration of one node.
#[derive(Clone, Debug, Serialize)]
pub struct PatroniContext {
    /// Member name.
    pub name: String,
    /// `restapi.listen`.
    pub restapi_listen: String,
    /// `restapi.connect_address` (name:port, as in the REST certificate).
    pub restapi_connect: String,
    /// `restapi.allowlist`: the PostgreSQL nodes' addresses, the only sources Patroni accepts
    /// its unsafe endpoints from (switchover, restart, config…), so that HAProxy's host cannot
    /// use them even with a certificate of the CA (docs/security.md).
    pub restapi_allowlist: Vec<String>,
    /// `etcd3.hosts`.
    pub etcd_hosts: Vec<String>,
    /// `ttl`.
    pub ttl: u32,
    /// `loop_wait`.
    pub loop_wait: u32,
    /// `retry_timeout`.
    pub retry_timeout: u32,
    /// `maximum_lag_on_failover`.
    pub maximum_lag_on_failover: u64,
    /// `synchronous_mode` as a YAML scalar: `false`/`true` (Patroni 3 booleans), `quorum` (≥ 4).
    pub synchronous_mode: &'static str,
    /// `synchronous_node_count`.
    pub synchronous_node_count: u32,
    /// Write `failsafe_mode: true` (Patroni ≥ 4 only).
    pub failsafe_mode: bool,
    /// `postgresql.listen`.
    pub pg_listen: String,
    /// `postgresql.connect_address`.
    pub pg_connect: String,
    /// `data_dir` (also `config_dir`: never under /etc/postgresql, see docs/files.md).
    pub data_dir: String,
    /// `bin_dir`.
    pub bin_dir: String,
    /// `pgpass`.
    pub pgpass: String,
    /// Unix socket directory.
    pub socket_dir: String,
    /// PostgreSQL parameters written in the local config (inventory + pgha's TLS and logging).
    pub parameters: Vec<(String, String)>,
    /// Inventory parameters also seeded into the DCS at bootstrap (some are DCS-only).
    pub dcs_parameters: Vec<(String, String)>,
    /// pg_hba lines.
    pub pg_hba: Vec<String>,
    /// `recovery_conf.restore_command` (with a `backup` host): replicas fetch WAL from the archive.
    pub restore_command: Option<String>,
    /// `postgresql.pre_promote`: the helper's `pre-promote` (older timelines' WAL past their
    /// switch point marked archived before a promotion).
    pub pre_promote: String,
    /// Passwords (rendered into a 0600 file).
    pub secrets: PatroniSecrets,
}

/// The passwords Patroni's configuration carries.
#[derive(Clone, Serialize)]
pub struct PatroniSecrets {
    /// Superuser.
    pub superuser: String,
    /// Replication.
    pub replication: String,
    /// Rewind.
    pub rewind: String,
    /// REST API.
    pub rest: String,
}

impl std::fmt::Debug for PatroniSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PatroniSecrets(***)")
    }
}

/// One PostgreSQL node as HAProxy sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HaproxyServer {
    /// Server name (the node name).
    pub name: String,
    /// `address:port` of PostgreSQL.
    pub addr: String,
    /// Patroni REST port for the checks.
    pub check_port: u16,
    /// Name sent as SNI and verified in Patroni's certificate.
    pub sni: String,
}

/// HAProxy configuration.
#[derive(Clone, Debug, Serialize)]
pub struct HaproxyContext {
    /// RW bind `addr:port`.
    pub rw_bind: String,
    /// RO bind `addr:port`.
    pub ro_bind: String,
    /// RW bind on the VIP (`transparent`: before this host holds it), with a VIP.
    pub vip_rw_bind: Option<String>,
    /// RO bind on the VIP, with a VIP.
    pub vip_ro_bind: Option<String>,
    /// Stats bind (127.0.0.1 only).
    pub stats_bind: String,
    /// Frontend maxconn.
    pub maxconn: u32,
    /// Check interval, ms.
    pub inter_ms: u32,
    /// Check interval while a server changes state or is DOWN (`fastinter`, `downinter`), ms:
    /// a promoted replica is seen UP within about `rise` × this.
    pub fast_ms: u32,
    /// Checks to mark DOWN.
    pub fall: u32,
    /// Checks to mark UP.
    pub rise: u32,
    /// RO lag limit, bytes.
    pub ro_max_lag_bytes: u64,
    /// Every PostgreSQL node.
    pub servers: Vec<HaproxyServer>,
    /// Keep each node as a `backup` in RO, UP only while it is the primary.
    pub ro_primary_fallback: bool,
    /// Server-state file.
    pub state_file: String,
    /// Admin socket.
    pub admin_socket: String,
    /// The direct-TLS frontends (`haproxy.direct_tls`), if on.
    pub direct: Option<DirectTlsContext>,
}

/// HAProxy's direct-TLS frontends: TLS terminated with HAProxy's own certificate, re-encrypted
/// to the node with verification and ALPN (docs/entry-points.md).
#[derive(Clone, Debug, Serialize)]
pub struct DirectTlsContext {
    /// RW bind `addr:port`.
    pub rw_bind: String,
    /// RO bind `addr:port`.
    pub ro_bind: String,
    /// RW bind on the VIP, with a VIP.
    pub vip_rw_bind: Option<String>,
    /// RO bind on the VIP, with a VIP.
    pub vip_ro_bind: Option<String>,
    /// HAProxy's server certificate and key, one PEM.
    pub pem: String,
}

/// One `[databases]` line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PgbouncerDatabase {
    /// The name clients ask for (`<db>_rw`, `<db>_ro`).
    pub alias: String,
    /// HAProxy host name(s), comma-separated (PgBouncer ≥ 1.17 round-robins).
    pub host: String,
    /// HAProxy port (RW or RO).
    pub port: u16,
    /// The real database.
    pub dbname: String,
}

/// PgBouncer configuration.
#[derive(Clone, Debug, Serialize)]
pub struct PgbouncerContext {
    /// `listen_addr`.
    pub listen_addr: String,
    /// `listen_port`.
    pub port: u16,
    /// `[databases]`.
    pub databases: Vec<PgbouncerDatabase>,
    /// `auth_query`.
    pub auth_query: &'static str,
    /// `auth_dbname` (PgBouncer ≥ 1.20 only).
    pub auth_dbname: Option<String>,
    /// `pool_mode`.
    pub pool_mode: &'static str,
    /// `default_pool_size`.
    pub default_pool_size: u32,
    /// `max_client_conn`.
    pub max_client_conn: u32,
    /// `reserve_pool_size`.
    pub reserve_pool_size: u32,
    /// Lines of userlist.txt, already quoted.
    pub userlist: Vec<String>,
}

/// The function the deploy creates in each database for PgBouncer's `auth_query` (it honours
/// VALID UNTIL, CVE-2025-2291, and never returns superusers).
pub const PGBOUNCER_AUTH_QUERY: &str = "SELECT uname, phash FROM pgha.user_lookup($1)";

/// Builds the context of `host`.
pub fn build(inv: &Inventory, material: &Material, host: &Host, target: Target) -> Result<HostContext, RenderError> {
    Ok(HostContext {
        target,
        v: target.versions(),
        cluster: inv.cluster_name.clone(),
        host: HostInfo {
            name: host.name.to_string(),
            address: host.address.to_string(),
            dc: host.dc.to_string(),
            roles: host.roles.iter().map(|r| r.as_str().to_owned()).collect(),
        },
        tls: TlsPaths::new(&material.ca_bundle_file),
        users: USERS,
        etcd: host.has(Role::Etcd).then(|| etcd_member(inv, material, host)),
        patroni: match host.has(Role::Postgres) {
            true => Some(patroni(inv, material, host, target)?),
            false => None,
        },
        haproxy: host.has(Role::Haproxy).then(|| haproxy(inv, host)),
        pgbouncer: match host.has(Role::Pgbouncer) {
            true => Some(pgbouncer(inv, material, host, target)?),
            false => None,
        },
        backup: backup(inv, material, host, target),
        vip: vip(inv, material, host),
    })
}

/// keepalived settings of `host`, when the inventory has a VIP and `host` is an entry host.
pub fn vip(inv: &Inventory, material: &Material, host: &Host) -> Option<VipContext> {
    let v = inv.vip.as_ref()?;
    if !(host.has(Role::Haproxy) || host.has(Role::Pgbouncer)) {
        return None;
    }
    Some(VipContext {
        address: v.address.to_string(),
        interface: v.interface.clone(),
        virtual_router_id: v.virtual_router_id,
        router_id: format!("pgha-{}-{}", inv.cluster_name, host.name),
        instance: format!("pgha_{}", inv.cluster_name.replace('-', "_")),
        peers: inv
            .entry_hosts()
            .filter(|h| h.name != host.name)
            .map(|h| h.address.to_string())
            .collect(),
        auth_pass: material.secrets.vrrp_auth.clone(),
        check: paths::ENTRY_CHECK.to_owned(),
        admin_socket: paths::HAPROXY_ADMIN_SOCKET.to_owned(),
        pgbouncer_port: inv.pgbouncer.port.get(),
        pgbouncer_db: inv
            .postgres
            .databases
            .first()
            .map_or_else(|| "postgres_rw".to_string(), |d| format!("{}_rw", d.name)),
        pgbouncer_user: paths::PGBOUNCER_AUTH_USER,
    })
}

/// The archive and restore commands Patroni's configuration carries with a `backup` host
/// (`pgbackrest check` insists that `archive_command` names pgbackrest).
pub fn archive_commands(stanza: &str) -> (String, String) {
    (
        format!("pgbackrest --stanza={stanza} archive-push %p"),
        format!("pgbackrest --stanza={stanza} archive-get %f \"%p\""),
    )
}

/// pgBackRest settings of a node or the repository host; `None` elsewhere or without a
/// `backup` host. Only the repository host gets the cipher passphrase.
pub fn backup(inv: &Inventory, material: &Material, host: &Host, target: Target) -> Option<BackupContext> {
    let b = inv.backup.as_ref()?;
    if !(host.has(Role::Postgres) || host.has(Role::Backup)) {
        return None;
    }
    let repo = host.has(Role::Backup);
    Some(BackupContext {
        stanza: b.stanza.clone(),
        repo_host: b.host.to_string(),
        repo_path: paths::PGBACKREST_REPO.to_owned(),
        nodes: inv
            .hosts_with(Role::Postgres)
            .enumerate()
            .map(|(i, n)| BackupNode {
                index: i + 1,
                name: n.name.to_string(),
            })
            .collect(),
        data_dir: paths::pg_data_dir(target, &inv.cluster_name),
        pg_port: inv.postgres.port.get(),
        socket_dir: paths::SOCKET_DIR.to_owned(),
        server_address: host.address.to_string(),
        server_port: paths::PGBACKREST_PORT,
        cipher_pass: if repo {
            material.secrets.repo_cipher.clone()
        } else {
            String::new()
        },
        retention_full: b.retention_full,
        retention_diff: b.retention_diff,
        timers: b
            .schedule
            .iter()
            .map(|s| (s.kind.as_str().to_owned(), s.on_calendar.clone()))
            .collect(),
    })
}

fn https(host: &str, port: u16) -> String {
    format!("https://{}", paths::host_port(host, port))
}

/// [`etcd`], with the bootstrap the membership record fixes for `host`, if any.
pub fn etcd_member(inv: &Inventory, material: &Material, host: &Host) -> EtcdContext {
    let mut e = etcd(inv, host);
    if let Some(b) = material.etcd_bootstrap.get(&host.name) {
        e.initial_cluster = b.initial_cluster.clone();
        e.initial_cluster_state = b.state.clone();
    }
    e
}

/// etcd member settings: listen on the address, advertise the name (as in its certificates).
pub fn etcd(inv: &Inventory, host: &Host) -> EtcdContext {
    let (client, peer) = (inv.etcd.client_port.get(), inv.etcd.peer_port.get());
    let initial_cluster = inv
        .hosts_with(Role::Etcd)
        .map(|m| format!("{}={}", m.name, https(m.name.as_str(), peer)))
        .collect::<Vec<_>>()
        .join(",");
    EtcdContext {
        name: host.name.to_string(),
        data_dir: paths::etcd_data_dir(&inv.cluster_name),
        config_file: paths::ETCD_CONFIG.to_owned(),
        listen_client_urls: https(&host.address.to_string(), client),
        advertise_client_urls: https(host.name.as_str(), client),
        listen_peer_urls: https(&host.address.to_string(), peer),
        initial_advertise_peer_urls: https(host.name.as_str(), peer),
        initial_cluster,
        initial_cluster_state: "new".to_owned(),
    }
}

/// The `synchronous_mode` scalar for the target's Patroni.
pub fn synchronous_mode(mode: SyncMode, target: Target) -> Result<&'static str, RenderError> {
    match mode {
        SyncMode::Off => Ok("false"),
        SyncMode::On => Ok("true"),
        SyncMode::Quorum if target.versions().patroni_major >= 4 => Ok("quorum"),
        SyncMode::Quorum => Err(RenderError::Unsupported {
            what: format!(
                "patroni.synchronous_mode: quorum needs Patroni 4; {target} ships Patroni {}",
                target.versions().patroni
            ),
            hint: "use `on` (one synchronous standby) on debian12".into(),
        }),
    }
}

/// Parameters pgha always sets: TLS from its material, SCRAM, and the client-address logging
/// of docs/design.md §3 (`%r` = client host:port, `%a` = application_name carrying PgBouncer's
/// `application_name_add_host`).
pub fn managed_parameters(tls: &TlsPaths) -> Vec<(&'static str, String)> {
    vec![
        ("ssl", "on".into()),
        ("ssl_cert_file", tls.postgres_cert.clone()),
        ("ssl_key_file", tls.postgres_key.clone()),
        ("ssl_ca_file", tls.ca_bundle.clone()),
        ("ssl_min_protocol_version", "TLSv1.2".into()),
        ("password_encryption", "scram-sha-256".into()),
        ("log_connections", "on".into()),
        ("log_disconnections", "on".into()),
        ("log_line_prefix", "%m [%p] %q%u@%d from %r app=%a ".into()),
        ("unix_socket_directories", paths::SOCKET_DIR.into()),
    ]
}

/// pg_hba: TLS + SCRAM only. Applications arrive from HAProxy's address(es) (PgBouncer too goes
/// through HAProxy); replication, rewind and the superuser from every node; local superuser by
/// peer; anything without TLS rejected.
pub fn pg_hba(inv: &Inventory) -> Vec<String> {
    let mut rows: Vec<[String; 5]> = Vec::new();
    let mut row = |kind: &str, db: &str, user: &str, addr: &str, method: &str| {
        rows.push([kind.into(), db.into(), user.into(), addr.into(), method.into()]);
    };
    row("local", "all", paths::SUPERUSER, "", "peer");
    for node in inv.hosts_with(Role::Postgres) {
        let cidr = paths::host_cidr(node.address);
        row(
            "hostssl",
            "replication",
            paths::REPLICATION_USER,
            &cidr,
            "scram-sha-256",
        );
        row("hostssl", "all", paths::REWIND_USER, &cidr, "scram-sha-256");
        row("hostssl", "all", paths::SUPERUSER, &cidr, "scram-sha-256");
    }
    let mut app_users: Vec<&str> = inv.postgres.users.iter().map(|u| u.name.as_str()).collect();
    app_users.push(paths::PGBOUNCER_AUTH_USER);
    app_users.push(paths::VERIFY_USER);
    let dbs: Vec<&str> = inv.postgres.databases.iter().map(|d| d.name.as_str()).collect();
    let dbs = if dbs.is_empty() {
        "all".to_owned()
    } else {
        dbs.join(",")
    };
    for proxy in inv.hosts_with(Role::Haproxy) {
        let cidr = paths::host_cidr(proxy.address);
        row("hostssl", &dbs, &app_users.join(","), &cidr, "scram-sha-256");
    }
    for any in ["0.0.0.0/0", "::/0"] {
        row("hostnossl", "all", "all", any, "reject");
        row("hostnossl", "replication", "all", any, "reject");
    }
    let mut widths = [0usize; 5];
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(cell.len());
        }
    }
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
            cells.join(" ").trim_end().to_owned()
        })
        .collect()
}

/// Patroni settings of one node.
pub fn patroni(
    inv: &Inventory,
    material: &Material,
    host: &Host,
    target: Target,
) -> Result<PatroniContext, RenderError> {
    let p = &inv.patroni;
    let failsafe_mode = match (p.failsafe_mode, target.versions().patroni_major >= 4) {
        (false, _) => false,
        (true, true) => true,
        (true, false) => {
            return Err(RenderError::Unsupported {
                what: format!(
                    "patroni.failsafe_mode: Patroni {} has known etcd3 failsafe bugs",
                    target.versions().patroni
                ),
                hint: "set failsafe_mode: false for debian12 (docs/design.md §1)".into(),
            });
        }
    };
    if let Some(m) = inv.postgres.major
        && m != target.versions().postgres
    {
        return Err(RenderError::Unsupported {
            what: format!(
                "postgres.major is {m}, but {} on {target} runs PostgreSQL {}",
                host.name,
                target.versions().postgres
            ),
            hint: format!(
                "set `postgres.major: {}` (and remove `haproxy.direct_tls` below 17), or run the node on the release the inventory means",
                target.versions().postgres
            ),
        });
    }
    let tls = TlsPaths::new(&material.ca_bundle_file);
    let mut params: BTreeMap<String, String> = inv.postgres.parameters.iter().cloned().collect();
    for (k, v) in managed_parameters(&tls) {
        params.insert(k.to_owned(), v);
    }
    let restore_command = inv.backup.as_ref().map(|b| {
        let (archive, restore) = archive_commands(&b.stanza);
        params.insert("archive_mode".into(), "on".into());
        params.insert("archive_command".into(), archive);
        restore
    });
    let (pg_port, rest_port) = (inv.postgres.port.get(), p.rest_port.get());
    let s = &material.secrets;
    Ok(PatroniContext {
        name: host.name.to_string(),
        restapi_listen: paths::addr_port(host.address, rest_port),
        restapi_connect: paths::host_port(host.name.as_str(), rest_port),
        restapi_allowlist: inv
            .hosts_with(Role::Postgres)
            .map(|n| paths::host_cidr(n.address))
            .collect(),
        etcd_hosts: inv
            .hosts_with(Role::Etcd)
            .map(|m| paths::host_port(m.name.as_str(), inv.etcd.client_port.get()))
            .collect(),
        ttl: p.ttl,
        loop_wait: p.loop_wait,
        retry_timeout: p.retry_timeout,
        maximum_lag_on_failover: p.maximum_lag_on_failover,
        synchronous_mode: synchronous_mode(p.synchronous_mode, target)?,
        synchronous_node_count: p.synchronous_node_count,
        failsafe_mode,
        pg_listen: paths::addr_port(host.address, pg_port),
        pg_connect: paths::host_port(host.name.as_str(), pg_port),
        data_dir: paths::pg_data_dir(target, &inv.cluster_name),
        bin_dir: paths::pg_bin_dir(target),
        pgpass: paths::pgpass(),
        socket_dir: paths::SOCKET_DIR.to_owned(),
        parameters: params.into_iter().collect(),
        dcs_parameters: inv.postgres.parameters.clone(),
        pg_hba: pg_hba(inv),
        restore_command,
        pre_promote: format!("{} pre-promote", paths::PATRONI_HELPER),
        secrets: PatroniSecrets {
            superuser: s.superuser.clone(),
            replication: s.replication.clone(),
            rewind: s.rewind.clone(),
            rest: s.patroni_rest.clone(),
        },
    })
}

/// HAProxy settings: every PostgreSQL node, checked over HTTPS on its REST port.
pub fn haproxy(inv: &Inventory, host: &Host) -> HaproxyContext {
    let h = &inv.haproxy;
    HaproxyContext {
        rw_bind: paths::haproxy_addr_port(host.address, h.rw_port.get()),
        ro_bind: paths::haproxy_addr_port(host.address, h.ro_port.get()),
        vip_rw_bind: inv
            .vip
            .as_ref()
            .map(|v| paths::haproxy_addr_port(v.address, h.rw_port.get())),
        vip_ro_bind: inv
            .vip
            .as_ref()
            .map(|v| paths::haproxy_addr_port(v.address, h.ro_port.get())),
        stats_bind: format!("127.0.0.1:{}", h.stats_port.get()),
        maxconn: h.maxconn,
        inter_ms: h.check_interval_ms,
        fast_ms: h.check_interval_ms.min(1000),
        fall: h.check_fall,
        rise: h.check_rise,
        ro_max_lag_bytes: h.ro_max_lag_bytes,
        servers: haproxy_servers(inv),
        ro_primary_fallback: h.ro_primary_fallback,
        state_file: paths::HAPROXY_STATE_FILE.to_owned(),
        admin_socket: paths::HAPROXY_ADMIN_SOCKET.to_owned(),
        direct: h.direct_tls.as_ref().map(|d| DirectTlsContext {
            rw_bind: paths::haproxy_addr_port(host.address, d.rw_port.get()),
            ro_bind: paths::haproxy_addr_port(host.address, d.ro_port.get()),
            vip_rw_bind: inv
                .vip
                .as_ref()
                .map(|v| paths::haproxy_addr_port(v.address, d.rw_port.get())),
            vip_ro_bind: inv
                .vip
                .as_ref()
                .map(|v| paths::haproxy_addr_port(v.address, d.ro_port.get())),
            pem: paths::haproxy_server_pem(),
        }),
    }
}

/// The PostgreSQL nodes as HAProxy servers.
pub fn haproxy_servers(inv: &Inventory) -> Vec<HaproxyServer> {
    inv.hosts_with(Role::Postgres)
        .map(|n| HaproxyServer {
            name: n.name.to_string(),
            addr: paths::haproxy_addr_port(n.address, inv.postgres.port.get()),
            check_port: inv.patroni.rest_port.get(),
            sni: n.name.to_string(),
        })
        .collect()
}

/// The HAProxy host a PgBouncer host sends its server connections to: its own when it runs
/// HAProxy, else one in its data centre, else the first. One host, not PgBouncer's multi-host
/// `host=a,b`: PgBouncer before 1.25 (Debian 12 and 13 ship 1.18 and 1.24) checks the whole
/// string `a,b` against the server certificate under `server_tls_sslmode = verify-full`, so
/// every server login fails (pgbouncer/pgbouncer#1300, fixed by #1303 in 1.25; seen on the
/// lab when a second entry host joined: `name 'proxy1,proxy2' not present in server
/// certificate`). Behind a VIP this is also what keeps the holder serving on its own.
pub fn pgbouncer_haproxy(inv: &Inventory, host: &Host) -> String {
    if host.has(Role::Haproxy) {
        return host.name.to_string();
    }
    let mut all = inv.hosts_with(Role::Haproxy);
    let first = all.next();
    first
        .into_iter()
        .chain(all)
        .find(|h| h.dc == host.dc)
        .or(first)
        .map(|h| h.name.to_string())
        .unwrap_or_default()
}

/// `[databases]` of `host`: `<db>_rw` and `<db>_ro` for each inventory database, through its
/// HAProxy ([`pgbouncer_haproxy`]) by name (the name every PostgreSQL certificate carries,
/// docs/design.md §3).
pub fn pgbouncer_databases(inv: &Inventory, host: &Host) -> Vec<PgbouncerDatabase> {
    let haproxy = pgbouncer_haproxy(inv, host);
    let mut out = Vec::new();
    for db in &inv.postgres.databases {
        for (suffix, port) in [("rw", inv.haproxy.rw_port), ("ro", inv.haproxy.ro_port)] {
            out.push(PgbouncerDatabase {
                alias: format!("{}_{suffix}", db.name),
                host: haproxy.clone(),
                port: port.get(),
                dbname: db.name.clone(),
            });
        }
    }
    out
}

/// Quotes one userlist.txt field: double quotes, inner `"` doubled.
fn userlist_field(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// PgBouncer settings.
pub fn pgbouncer(
    inv: &Inventory,
    material: &Material,
    host: &Host,
    target: Target,
) -> Result<PgbouncerContext, RenderError> {
    let b = &inv.pgbouncer;
    let databases = pgbouncer_databases(inv, host);
    let auth_dbname = match target {
        Target::Debian13 => databases.first().map(|d| d.alias.clone()),
        Target::Debian12 => None,
    };
    let mut userlist = vec![
        format!(
            "{} {}",
            userlist_field(paths::PGBOUNCER_AUTH_USER),
            userlist_field(&material.secrets.pgbouncer_auth)
        ),
        // The admin user must be known here, else PgBouncer sends it to auth_query (and waits
        // on a server for the admin console). No password: the HBA file admits it by peer on
        // the Unix socket only and rejects it over TCP.
        format!("{} \"\"", userlist_field(paths::SUPERUSER)),
    ];
    for user in &inv.postgres.users {
        let verifier = material
            .secrets
            .app_verifiers
            .get(&user.name)
            .ok_or_else(|| RenderError::MissingSecret {
                what: format!("SCRAM verifier of role `{}`", user.name),
            })?;
        userlist.push(format!("{} {}", userlist_field(&user.name), userlist_field(verifier)));
    }
    userlist.push(format!(
        "{} {}",
        userlist_field(paths::VERIFY_USER),
        userlist_field(&material.secrets.verify_verifier)
    ));
    Ok(PgbouncerContext {
        // With a VIP also on it (net.ipv4.ip_nonlocal_bind: before this host holds it).
        listen_addr: match &inv.vip {
            Some(v) if inv.entry_hosts().any(|h| h.name == host.name) => format!("{},{}", host.address, v.address),
            _ => host.address.to_string(),
        },
        port: b.port.get(),
        databases,
        auth_query: PGBOUNCER_AUTH_QUERY,
        auth_dbname,
        pool_mode: b.pool_mode.as_str(),
        default_pool_size: b.default_pool_size,
        max_client_conn: b.max_client_conn,
        reserve_pool_size: b.reserve_pool_size,
        userlist,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::placeholder::placeholder_material;

    fn example() -> Inventory {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory/example.yaml");
        crate::inventory::load(&path).expect("example is valid").inventory
    }

    fn host<'a>(inv: &'a Inventory, name: &str) -> &'a Host {
        inv.host(name).expect("host in example")
    }

    #[test]
    fn pgbouncer_exposes_rw_and_ro_per_database_through_haproxy_by_name() {
        let inv = example();
        let dbs = pgbouncer_databases(&inv, host(&inv, "pgbouncer"));
        let lines: Vec<String> = dbs
            .iter()
            .map(|d| format!("{} {}:{} {}", d.alias, d.host, d.port, d.dbname))
            .collect();
        assert_eq!(
            lines,
            [
                "postgres_rw haproxy:5000 postgres",
                "postgres_ro haproxy:5001 postgres",
                "app_rw haproxy:5000 app",
                "app_ro haproxy:5001 app",
            ]
        );
    }

    #[test]
    fn each_pgbouncer_uses_one_haproxy_its_own_else_its_dcs() {
        let mut inv = example();
        let mut second = host(&inv, "haproxy").clone();
        second.name = crate::inventory::HostName::new("haproxy2").expect("valid");
        second.address = "198.51.100.32".parse().expect("literal");
        second.dc = crate::inventory::DcName::new("dc1").expect("valid");
        inv.hosts.push(second);
        // Never `haproxy,haproxy2`: PgBouncer < 1.25 would check that string against the
        // certificate (pgbouncer#1300).
        let pgb = host(&inv, "pgbouncer");
        assert!(
            pgbouncer_databases(&inv, pgb).iter().all(|d| d.host == "haproxy"),
            "dc2's HAProxy"
        );
        let mut near = pgb.clone();
        near.dc = crate::inventory::DcName::new("dc1").expect("valid");
        assert_eq!(
            pgbouncer_haproxy(&inv, &near),
            "haproxy2",
            "the HAProxy of its data centre"
        );
        let mut edge = host(&inv, "haproxy").clone();
        edge.name = crate::inventory::HostName::new("edge").expect("valid");
        edge.roles.insert(Role::Pgbouncer);
        assert_eq!(pgbouncer_haproxy(&inv, &edge), "edge", "its own HAProxy");
        let mut far = pgb.clone();
        far.dc = crate::inventory::DcName::new("dc9").expect("valid");
        assert_eq!(
            pgbouncer_haproxy(&inv, &far),
            "haproxy",
            "no HAProxy in its dc: the first"
        );
        // ...and pg_hba admits application traffic from both.
        let hba = pg_hba(&inv);
        assert!(hba.iter().any(|l| l.contains("198.51.100.31/32")));
        assert!(hba.iter().any(|l| l.contains("198.51.100.32/32")));
    }

    #[test]
    fn auth_dbname_only_on_pgbouncer_1_24() {
        let inv = example();
        let m = placeholder_material(&inv);
        let h = host(&inv, "pgbouncer");
        let b13 = pgbouncer(&inv, &m, h, Target::Debian13).expect("renders");
        let b12 = pgbouncer(&inv, &m, h, Target::Debian12).expect("renders");
        assert_eq!(b13.auth_dbname.as_deref(), Some("postgres_rw"));
        assert_eq!(b12.auth_dbname, None);
    }

    #[test]
    fn userlist_quotes_and_needs_every_app_verifier() {
        let inv = example();
        let mut m = placeholder_material(&inv);
        m.secrets.pgbouncer_auth = "a\"b".into();
        let h = host(&inv, "pgbouncer");
        let b = pgbouncer(&inv, &m, h, Target::Debian13).expect("renders");
        assert_eq!(b.userlist[0], "\"pgbouncer_auth\" \"a\"\"b\"");
        assert_eq!(b.userlist[1], "\"postgres\" \"\"");
        assert!(b.userlist[2].starts_with("\"app\" \"SCRAM-SHA-256$"));
        m.secrets.app_verifiers.clear();
        let err = pgbouncer(&inv, &m, h, Target::Debian13).expect_err("no verifier for app");
        assert!(err.to_string().contains("`app`"), "{err}");
    }

    #[test]
    fn pg_hba_is_tls_and_scram_only_with_lines_per_node() {
        let inv = example();
        let hba = pg_hba(&inv);
        let words: Vec<Vec<&str>> = hba.iter().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(words[0], ["local", "all", "postgres", "peer"]);
        for addr in ["192.0.2.11/32", "192.0.2.12/32", "198.51.100.13/32"] {
            assert!(words.contains(&vec!["hostssl", "replication", "replicator", addr, "scram-sha-256"]));
            assert!(words.contains(&vec!["hostssl", "all", "rewind_user", addr, "scram-sha-256"]));
            assert!(words.contains(&vec!["hostssl", "all", "postgres", addr, "scram-sha-256"]));
        }
        assert!(words.contains(&vec![
            "hostssl",
            "postgres,app",
            "app,pgbouncer_auth,pgha_verify",
            "198.51.100.31/32",
            "scram-sha-256"
        ]));
        // Nothing admits a connection without TLS or without SCRAM, and the rejects come last.
        for w in &words[1..words.len() - 4] {
            assert_eq!(w[0], "hostssl", "{w:?}");
            assert_eq!(w[4], "scram-sha-256", "{w:?}");
        }
        assert!(
            words[words.len() - 4..]
                .iter()
                .all(|w| w[0] == "hostnossl" && w[4] == "reject")
        );
        // The PgBouncer host itself is not admitted: it comes through HAProxy.
        assert!(!hba.iter().any(|l| l.contains("198.51.100.41")));
    }

    #[test]
    fn haproxy_ro_keeps_every_node_as_tracked_backup_when_asked() {
        let mut inv = example();
        let h = host(&inv, "haproxy").clone();
        let ctx = haproxy(&inv, &h);
        assert!(ctx.ro_primary_fallback);
        assert_eq!(
            ctx.servers.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["node1", "node2", "node3"]
        );
        assert_eq!(ctx.servers[2].addr, "198.51.100.13:5432");
        assert_eq!(ctx.servers[2].check_port, 8008);
        assert_eq!(ctx.servers[2].sni, "node3");
        assert_eq!(ctx.rw_bind, "198.51.100.31:5000");
        assert_eq!(ctx.stats_bind, "127.0.0.1:7000");
        inv.haproxy.ro_primary_fallback = false;
        assert!(!haproxy(&inv, &h).ro_primary_fallback);
    }

    #[test]
    fn a_vip_makes_keepalived_peers_and_listeners_on_every_entry_host() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory/entry-vip.yaml");
        let inv = crate::inventory::load(&path).expect("valid").inventory;
        let m = placeholder_material(&inv);
        let e1 = host(&inv, "entry1");
        let v = vip(&inv, &m, e1).expect("entry1 runs keepalived");
        assert_eq!(
            (v.address.as_str(), v.virtual_router_id, v.peers.clone()),
            ("192.0.2.30", 30, vec!["192.0.2.32".to_string()])
        );
        assert_eq!(v.auth_pass.len(), 8);
        assert!(vip(&inv, &m, host(&inv, "node1")).is_none());
        let b = pgbouncer(&inv, &m, e1, Target::Debian13).expect("context");
        assert_eq!(b.listen_addr, "192.0.2.31,192.0.2.30");
        assert!(b.databases.iter().all(|d| d.host == "entry1"), "{:?}", b.databases);
        let h = haproxy(&inv, host(&inv, "entry2"));
        assert_eq!(h.vip_rw_bind.as_deref(), Some("192.0.2.30:5000"));
        let plain = example();
        assert!(haproxy(&plain, host(&plain, "haproxy")).vip_rw_bind.is_none());
    }

    #[test]
    fn synchronous_mode_follows_patroni_version() {
        assert_eq!(synchronous_mode(SyncMode::On, Target::Debian12).expect("ok"), "true");
        assert_eq!(synchronous_mode(SyncMode::Off, Target::Debian12).expect("ok"), "false");
        assert_eq!(synchronous_mode(SyncMode::On, Target::Debian13).expect("ok"), "true");
        assert_eq!(
            synchronous_mode(SyncMode::Quorum, Target::Debian13).expect("ok"),
            "quorum"
        );
        let err = synchronous_mode(SyncMode::Quorum, Target::Debian12).expect_err("Patroni 3");
        assert!(err.to_string().contains("Patroni 4"), "{err}");
    }

    #[test]
    fn failsafe_only_on_patroni_4() {
        let mut inv = example();
        inv.patroni.failsafe_mode = true;
        let m = placeholder_material(&inv);
        let n = host(&inv, "node1").clone();
        assert!(patroni(&inv, &m, &n, Target::Debian13).expect("ok").failsafe_mode);
        let err = patroni(&inv, &m, &n, Target::Debian12).expect_err("Patroni 3.0");
        assert!(err.to_string().contains("failsafe"), "{err}");
        inv.patroni.failsafe_mode = false;
        assert!(!patroni(&inv, &m, &n, Target::Debian12).expect("ok").failsafe_mode);
    }

    #[test]
    fn patroni_addresses_names_and_paths() {
        let inv = example();
        let m = placeholder_material(&inv);
        let n = host(&inv, "node3").clone();
        let p = patroni(&inv, &m, &n, Target::Debian12).expect("ok");
        assert_eq!(p.restapi_listen, "198.51.100.13:8008");
        assert_eq!(p.restapi_connect, "node3:8008");
        assert_eq!(p.pg_connect, "node3:5432");
        assert_eq!(p.etcd_hosts, ["etcd1:2379", "etcd2:2379", "etcd3:2379"]);
        assert_eq!(p.bin_dir, "/usr/lib/postgresql/15/bin");
        assert_eq!(p.data_dir, "/var/lib/postgresql/15/pgha-demo");
        let params: BTreeMap<_, _> = p.parameters.iter().cloned().collect();
        assert_eq!(params["ssl"], "on");
        assert_eq!(params["password_encryption"], "scram-sha-256");
        assert!(params["log_line_prefix"].contains("%a") && params["log_line_prefix"].contains("%r"));
        assert_eq!(params["max_connections"], "200");
    }

    #[test]
    fn every_parameter_pgha_manages_is_refused_by_validate() {
        let tls = TlsPaths::new("ca-bundle-1.pem");
        for (name, _) in managed_parameters(&tls) {
            assert!(
                crate::inventory::MANAGED_PARAMETERS.contains(&name),
                "{name} is set by render but an inventory may still set it"
            );
        }
    }

    #[test]
    fn pgha_managed_parameters_override_the_inventory() {
        let mut inv = example();
        inv.postgres.parameters.push(("ssl".into(), "off".into()));
        let m = placeholder_material(&inv);
        let n = host(&inv, "node1").clone();
        let p = patroni(&inv, &m, &n, Target::Debian13).expect("ok");
        assert!(p.parameters.contains(&("ssl".to_owned(), "on".to_owned())));
        assert!(!p.parameters.contains(&("ssl".to_owned(), "off".to_owned())));
    }

    #[test]
    fn etcd_listens_on_the_address_and_advertises_the_name() {
        let inv = example();
        let e = etcd(&inv, host(&inv, "etcd3"));
        assert_eq!(e.listen_client_urls, "https://198.51.100.23:2379");
        assert_eq!(e.advertise_client_urls, "https://etcd3:2379");
        assert_eq!(e.listen_peer_urls, "https://198.51.100.23:2380");
        assert_eq!(e.initial_advertise_peer_urls, "https://etcd3:2380");
        assert_eq!(
            e.initial_cluster,
            "etcd1=https://etcd1:2380,etcd2=https://etcd2:2380,etcd3=https://etcd3:2380"
        );
        assert_eq!(e.data_dir, "/var/lib/etcd/pgha-demo");
    }
}
