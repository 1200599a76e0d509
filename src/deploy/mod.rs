//! What `pgha deploy` adds around the engine: preflight from facts, each host's target from its
//! OS release, and the per-host inputs of the deploy playbook — the rendered files (as the
//! engine's managed files), the bootstrap SQL, and the variables the playbook uses.

pub mod patroni_helper;
pub mod pgbouncer_helper;
pub mod preflight;
pub mod sql;

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::engine::HostInput;
use crate::inventory::{Inventory, Role};
use crate::modules::{Managed, Rendered};
use crate::render::{self, Material, RenderError, Target, TemplateSource};

/// Where the bootstrap SQL is installed on PostgreSQL nodes (root:postgres 0640: holds
/// verifiers; `psql -f` reads it as postgres).
pub const BOOTSTRAP_SQL: &str = "/etc/patroni/pgha-bootstrap.sql";

/// Builds each host's input: rendered files for its target, the bootstrap SQL on PostgreSQL
/// nodes, and `vars` (PostgreSQL version, CA bundle path, etcd endpoints, SQL marker).
pub fn host_inputs(
    inv: &Inventory,
    material: &Material,
    auth_verifier: &str,
    verify_verifier: &str,
    targets: &BTreeMap<String, Target>,
    templates: &TemplateSource,
) -> Result<BTreeMap<String, HostInput>, RenderError> {
    let app: Vec<(String, String)> = material
        .secrets
        .app_verifiers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let auth = sql::Role {
        name: render::paths::PGBOUNCER_AUTH_USER,
        verifier: auth_verifier,
    };
    let verify = sql::Role {
        name: render::paths::VERIFY_USER,
        verifier: verify_verifier,
    };
    let body = sql::bootstrap(inv, auth, verify, &app);
    let sql_sha = hex::encode(Sha256::digest(body.as_bytes()));
    // The last statement records which script ran, in the cluster itself (a role comment is
    // cluster-wide and replicated), so a new primary after a switchover does not run it again.
    let sql = format!(
        "{body}COMMENT ON ROLE {} IS 'pgha-sql {}';\n",
        render::paths::PGBOUNCER_AUTH_USER,
        &sql_sha[..16]
    );
    let etcd_endpoints: Vec<String> = inv
        .hosts_with(Role::Etcd)
        .map(|h| format!("https://{}:{}", h.name, inv.etcd.client_port))
        .collect();
    let mut out = BTreeMap::new();
    for host in &inv.hosts {
        let target = targets.get(host.name.as_str()).copied().unwrap_or(Target::Debian13);
        let files = render::render_host(inv, material, host, target, templates)?;
        let mut rendered: Rendered = files
            .into_iter()
            .map(|f| {
                let managed = Managed {
                    content: f.content.into_bytes(),
                    owner: f.owner.to_string(),
                    group: f.group.to_string(),
                    mode: f.mode,
                    secret: f.secret,
                };
                (f.path, managed)
            })
            .collect();
        if host.has(Role::Postgres) {
            let helper = patroni_helper::script(
                inv,
                host,
                &render::paths::ca_bundle(&material.ca_bundle_file),
                &render::paths::pg_data_dir(target, &inv.cluster_name),
            );
            rendered.insert(
                patroni_helper::PATH.to_string(),
                Managed {
                    content: helper.into_bytes(),
                    owner: "root".into(),
                    group: "root".into(),
                    mode: 0o755,
                    secret: false,
                },
            );
            rendered.insert(
                BOOTSTRAP_SQL.to_string(),
                Managed {
                    content: sql.clone().into_bytes(),
                    owner: "root".into(),
                    group: "postgres".into(),
                    mode: 0o640,
                    secret: true,
                },
            );
        }
        if host.has(Role::Pgbouncer) {
            rendered.insert(
                pgbouncer_helper::PATH.to_string(),
                Managed {
                    content: pgbouncer_helper::script(inv).into_bytes(),
                    owner: "root".into(),
                    group: "root".into(),
                    mode: 0o755,
                    secret: false,
                },
            );
        }
        let v = target.versions();
        let ca_bundle = render::paths::ca_bundle(&material.ca_bundle_file);
        let vars = serde_json::json!({
            "target": target.as_str(),
            "pg_version": v.postgres,
            "ca_bundle": &ca_bundle,
            "etcd_member_healthy": etcd_member_healthy(inv, host, &ca_bundle),
            "tls_dir": render::paths::TLS_DIR,
            "etcd_endpoints": etcd_endpoints.join(","),
            "bootstrap_sql": BOOTSTRAP_SQL,
            "bootstrap_sql_sha": &sql_sha[..16],
            "data_dir": render::paths::pg_data_dir(target, &inv.cluster_name),
            "etcd_data_dir": render::paths::etcd_data_dir(&inv.cluster_name),
        });
        out.insert(host.name.to_string(), HostInput { rendered, vars });
    }
    Ok(out)
}

/// Shell test: this etcd member answers a linearizable health check over mutual TLS (it is part
/// of a quorum). Empty for hosts that run no etcd.
fn etcd_member_healthy(inv: &Inventory, host: &crate::inventory::Host, ca_bundle: &str) -> String {
    if !host.has(Role::Etcd) {
        return String::new();
    }
    format!(
        "ETCDCTL_API=3 etcdctl --endpoints=https://{}:{} --cacert={ca_bundle} --cert={} --key={} --dial-timeout=3s --command-timeout=5s endpoint health >/dev/null 2>&1",
        host.name,
        inv.etcd.client_port,
        render::paths::leaf_cert(render::LeafKind::EtcdServer),
        render::paths::leaf_key(render::LeafKind::EtcdServer),
    )
}
