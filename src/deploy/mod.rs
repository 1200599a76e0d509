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

/// The variables deploy.yaml sees as `vars.*`: one typed struct, so a playbook naming a
/// variable that does not exist fails at expansion (strict undefined) and the list lives here.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeployVars {
    /// `debian13` or `debian12`.
    pub target: &'static str,
    /// PostgreSQL major version of the target (package names).
    pub pg_version: u32,
    /// The versioned CA bundle path.
    pub ca_bundle: String,
    /// Shell test: this etcd member is healthy over mutual TLS (empty off etcd hosts).
    pub etcd_member_healthy: String,
    /// Shell test: the etcd cluster is formed — any of its members answers healthy (empty off
    /// etcd hosts).
    pub etcd_cluster_formed: String,
    /// Directory of certificates and keys.
    pub tls_dir: &'static str,
    /// Every etcd client URL, comma-separated.
    pub etcd_endpoints: String,
    /// Where the bootstrap SQL is installed.
    pub bootstrap_sql: &'static str,
    /// First 16 hex digits of the bootstrap SQL's SHA-256 (recorded in the cluster).
    pub bootstrap_sql_sha: String,
    /// PostgreSQL data directory.
    pub data_dir: String,
    /// etcd data directory.
    pub etcd_data_dir: String,
    /// This host takes part in backups (a PostgreSQL node or the repository host, with a
    /// `backup` host in the inventory).
    pub backup: bool,
    /// pgBackRest stanza (empty without a `backup` host).
    pub stanza: String,
    /// Backup types with a timer (`full`, `diff`, `incr`).
    pub backup_timers: Vec<&'static str>,
    /// The PostgreSQL nodes' names, space-separated (validated DNS names: safe in sh).
    pub backup_nodes: String,
}

/// Builds each host's input: rendered files for its target, the bootstrap SQL on PostgreSQL
/// nodes, and `vars` (PostgreSQL version, CA bundle path, etcd endpoints, SQL marker). Hosts
/// missing from `targets` are rendered for Debian 13.
pub fn host_inputs(
    inv: &Inventory,
    material: &Material,
    auth_verifier: &str,
    verify_verifier: &str,
    targets: &BTreeMap<String, Target>,
    templates: &TemplateSource,
) -> Result<BTreeMap<String, HostInput>, RenderError> {
    let inputs = Inputs::new(inv, material, auth_verifier, verify_verifier, templates);
    let mut out = BTreeMap::new();
    for host in &inv.hosts {
        let target = targets.get(host.name.as_str()).copied().unwrap_or(Target::Debian13);
        out.insert(host.name.to_string(), inputs.host(host, target)?);
    }
    Ok(out)
}

/// What every host's input is made from (the bootstrap SQL is built once), so that one host
/// can be rendered again for another target (deploy guesses a host's release before its
/// first probe, and re-renders the host when the probe says otherwise).
pub struct Inputs<'a> {
    inv: &'a Inventory,
    material: &'a Material,
    templates: &'a TemplateSource,
    sql: String,
    sql_sha: String,
    etcd_endpoints: String,
}

impl<'a> Inputs<'a> {
    /// Builds the bootstrap SQL (verifiers of the PgBouncer auth user, the verify role and the
    /// inventory's users).
    pub fn new(
        inv: &'a Inventory,
        material: &'a Material,
        auth_verifier: &str,
        verify_verifier: &str,
        templates: &'a TemplateSource,
    ) -> Self {
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
        Inputs {
            inv,
            material,
            templates,
            sql,
            sql_sha,
            etcd_endpoints: etcd_endpoints.join(","),
        }
    }

    /// One host's input for `target`.
    pub fn host(&self, host: &crate::inventory::Host, target: Target) -> Result<HostInput, RenderError> {
        let (inv, material) = (self.inv, self.material);
        let files = render::render_host(inv, material, host, target, self.templates)?;
        let mut rendered: Rendered = files
            .into_iter()
            .map(|f| {
                let managed = Managed {
                    content: f.content.into_bytes(),
                    owner: f.owner.to_string(),
                    group: f.group.to_string(),
                    mode: f.mode,
                    secret: f.secret,
                    unit: f.unit.map(str::to_string),
                };
                (f.path, managed)
            })
            .collect();
        if host.has(Role::Postgres) {
            rendered.insert(
                BOOTSTRAP_SQL.to_string(),
                Managed {
                    content: self.sql.clone().into_bytes(),
                    owner: "root".into(),
                    group: "postgres".into(),
                    mode: 0o640,
                    secret: true,
                    unit: None,
                },
            );
        }
        let ca_bundle = render::paths::ca_bundle(&material.ca_bundle_file);
        let vars = DeployVars {
            target: target.as_str(),
            pg_version: target.versions().postgres,
            etcd_member_healthy: etcd_member_healthy(inv, host, &ca_bundle),
            etcd_cluster_formed: etcd_cluster_formed(inv, host, &ca_bundle),
            ca_bundle,
            tls_dir: render::paths::TLS_DIR,
            etcd_endpoints: self.etcd_endpoints.clone(),
            bootstrap_sql: BOOTSTRAP_SQL,
            bootstrap_sql_sha: self.sql_sha[..16].to_string(),
            data_dir: render::paths::pg_data_dir(target, &inv.cluster_name),
            etcd_data_dir: render::paths::etcd_data_dir(&inv.cluster_name),
            backup: inv.backup.is_some() && (host.has(Role::Postgres) || host.has(Role::Backup)),
            stanza: inv.backup.as_ref().map(|b| b.stanza.clone()).unwrap_or_default(),
            backup_timers: inv
                .backup
                .as_ref()
                .map(|b| b.schedule.iter().map(|s| s.kind.as_str()).collect())
                .unwrap_or_default(),
            backup_nodes: inv
                .hosts_with(Role::Postgres)
                .map(|h| h.name.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        };
        let vars = serde_json::to_value(&vars).expect("a struct of strings and numbers always serializes");
        Ok(HostInput { rendered, vars })
    }
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

/// Shell test: some member of the etcd cluster answers a linearizable health check over mutual
/// TLS, so a quorum exists and members must restart one at a time (the rolling play), never
/// together. Asking every member, not only this one, keeps one slow answer on a loaded host
/// from restarting a formed cluster all at once (a quorum loss). Empty off etcd hosts.
fn etcd_cluster_formed(inv: &Inventory, host: &crate::inventory::Host, ca_bundle: &str) -> String {
    if !host.has(Role::Etcd) {
        return String::new();
    }
    let members: Vec<String> = inv
        .hosts_with(Role::Etcd)
        .map(|h| format!("https://{}:{}", h.name, inv.etcd.client_port))
        .collect();
    format!(
        "for e in {}; do ETCDCTL_API=3 etcdctl --endpoints=$e --cacert={ca_bundle} --cert={} --key={} --dial-timeout=3s --command-timeout=5s endpoint health >/dev/null 2>&1 && exit 0; done; exit 1",
        members.join(" "),
        render::paths::leaf_cert(render::LeafKind::EtcdServer),
        render::paths::leaf_key(render::LeafKind::EtcdServer),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::vars;
    use crate::facts::Facts;
    use crate::playbook::ModuleSpec;

    /// Units whose rendered files need no reaction from the deploy: the createcluster drop-in
    /// only matters while the postgresql package installs (no `main` cluster).
    const NO_HANDLER: &[&str] = &["postgresql.service"];

    /// Render is the only list of installed files: deploy.yaml names no handler per path, and
    /// every rendered file it installs that a unit reacts to has a handler for that unit in the
    /// same play (else a change would silently not be applied).
    #[test]
    fn every_rendered_unit_has_its_handler_in_the_play_that_installs_it() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory/example.yaml");
        let inv = crate::inventory::load(&path).expect("example inventory").inventory;
        let material = render::placeholder::placeholder_material(&inv);
        let pb = crate::playbook::load("deploy", None, &inv).expect("deploy playbook");
        let inputs =
            host_inputs(&inv, &material, "v1", "v2", &BTreeMap::new(), &TemplateSource::Embedded).expect("renders");
        let env = vars::environment();
        let mut installed = 0;
        for host in &inv.hosts {
            let input = &inputs[host.name.as_str()];
            let ctx = vars::context(&inv, host, &input.vars, &Facts::default());
            for play in pb
                .plays
                .iter()
                .filter(|p| p.select(&inv).iter().any(|h| h.name == host.name))
            {
                for task in &play.tasks {
                    assert!(
                        task.notify.is_empty(),
                        "{}: `{}` lists handlers by hand",
                        play.name,
                        task.name
                    );
                    if let Some(w) = &task.when
                        && !vars::when(&env, &ctx, w).expect("a valid `when`")
                    {
                        continue;
                    }
                    let Ok(ModuleSpec::File(f)) = vars::expand(&env, &ctx, &task.module) else {
                        continue;
                    };
                    if f.content.is_some() {
                        continue;
                    }
                    let m = input
                        .rendered
                        .get(&f.path)
                        .unwrap_or_else(|| panic!("{}: {} is not rendered for {}", play.name, f.path, host.name));
                    installed += 1;
                    let Some(unit) = m.unit.as_deref().filter(|u| !NO_HANDLER.contains(u)) else {
                        continue;
                    };
                    assert!(
                        play.handlers.iter().any(|h| h.handles.as_deref() == Some(unit)),
                        "play `{}` installs {} (unit {unit}) but no handler `handles: {unit}`",
                        play.name,
                        f.path
                    );
                }
            }
        }
        assert!(installed > 20, "only {installed} rendered files installed");
    }
}
