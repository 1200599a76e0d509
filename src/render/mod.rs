//! Rendering: the inventory, the PKI material and a target release in, the exact files pgha
//! installs on each host out ([`RenderedFile`]: absolute path, content, owner, group, mode).
//! No I/O except reading `--templates` overrides; writing files is the caller's job.
//!
//! - [`context`] computes everything templates print (pure, unit-tested);
//! - [`env`] is the minijinja environment and loader (embedded `templates/`);
//! - [`files`] is the per-role table of templates and certificates;
//! - [`material`] is the plain-data input from the PKI;
//! - [`paths`] holds every target path; [`target`] the Debian 13/12 versions.

pub mod context;
pub mod env;
pub mod error;
pub mod files;
pub mod material;
pub mod paths;
pub mod placeholder;
pub mod target;

use std::collections::BTreeMap;

pub use env::TemplateSource;
pub use error::RenderError;
pub use files::RenderedFile;
pub use material::{EtcdBootstrap, Leaf, LeafKind, Material, Secrets};
pub use target::{Target, Versions};

use crate::inventory::{Host, Inventory, Role};

/// Renders every file `host` gets, in install order (CA bundle, then per role: configs, then
/// certificates and keys).
pub fn render_host(
    inv: &Inventory,
    material: &Material,
    host: &Host,
    target: Target,
    templates: &TemplateSource,
) -> Result<Vec<RenderedFile>, RenderError> {
    let ctx = context::build(inv, material, host, target)?;
    let env = env::environment(templates);
    let bundle_at = |path: String| RenderedFile {
        path,
        content: material.ca_bundle_pem.clone(),
        owner: "root",
        group: "root",
        mode: 0o644,
        secret: false,
        unit: None,
        template: None,
    };
    let mut out = vec![
        bundle_at(paths::ca_bundle(&material.ca_bundle_file)),
        bundle_at(paths::CA_BUNDLE_CURRENT.to_owned()),
    ];
    let vip_files = files::VIP_TEMPLATES.iter().filter(|_| ctx.vip.is_some());
    let per_role = Role::ALL.into_iter().filter(|r| host.has(*r)).map(Some).chain([None]);
    for role in per_role {
        let templates: Vec<&files::TemplateFile> = match role {
            Some(role) => files::TEMPLATES
                .iter()
                .filter(|t| t.role == role && files::template_wanted(t, host, inv))
                .collect(),
            None => vip_files.clone().collect(),
        };
        for t in templates {
            let tmpl = env
                .get_template(t.template)
                .map_err(|e| RenderError::from_template(t.template, &e))?;
            let content = tmpl
                .render(minijinja::value::Serde(&ctx))
                .map_err(|e| RenderError::from_template(t.template, &e))?;
            out.push(RenderedFile {
                path: t.path.to_owned(),
                content,
                owner: t.owner,
                group: t.group,
                mode: t.mode,
                secret: t.secret,
                unit: t.unit,
                template: Some(t.template),
            });
        }
        for l in files::LEAVES
            .iter()
            .filter(|l| Some(l.role) == role && files::leaf_wanted(l, host, inv))
        {
            out.extend(leaf_files(material, host, l)?);
        }
    }
    Ok(out)
}

fn leaf_files(material: &Material, host: &Host, l: &files::LeafFile) -> Result<Vec<RenderedFile>, RenderError> {
    let leaf = material
        .leaf(&host.name, l.kind)
        .ok_or_else(|| RenderError::MissingLeaf {
            host: host.name.to_string(),
            kind: l.kind,
        })?;
    let file = |path: String, content: String, mode: u32, secret: bool| RenderedFile {
        path,
        content,
        owner: "root",
        group: l.group,
        mode,
        secret,
        unit: Some(l.unit),
        template: None,
    };
    // HAProxy wants certificate and key in one file (`crt`): root:haproxy 0640.
    let one_pem = match l.kind {
        LeafKind::HaproxyCheck => Some(paths::haproxy_check_pem()),
        LeafKind::HaproxyServer => Some(paths::haproxy_server_pem()),
        _ => None,
    };
    if let Some(path) = one_pem {
        let mut pem = leaf.cert_pem.clone();
        if !pem.ends_with('\n') {
            pem.push('\n');
        }
        pem.push_str(&leaf.key_pem);
        return Ok(vec![file(path, pem, 0o640, true)]);
    }
    Ok(vec![
        file(paths::leaf_cert(l.kind), leaf.cert_pem.clone(), 0o644, false),
        file(paths::leaf_key(l.kind), leaf.key_pem.clone(), 0o640, true),
    ])
}

/// Renders every host of the inventory, by host name.
pub fn render_all(
    inv: &Inventory,
    material: &Material,
    target: Target,
    templates: &TemplateSource,
) -> Result<BTreeMap<String, Vec<RenderedFile>>, RenderError> {
    let mut out = BTreeMap::new();
    for host in &inv.hosts {
        out.insert(
            host.name.to_string(),
            render_host(inv, material, host, target, templates)?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_hosts_with_a_vip_get_keepalived_and_the_others_do_not() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory/entry-vip.yaml");
        let inv = crate::inventory::load(&path).expect("valid").inventory;
        let material = placeholder::placeholder_material(&inv);
        let files = |name: &str| {
            let host = inv.host(name).expect("host");
            render_host(&inv, &material, host, Target::Debian13, &TemplateSource::Embedded).expect("renders")
        };
        let entry = files("entry2");
        let conf = entry
            .iter()
            .find(|f| f.path == paths::KEEPALIVED_CONFIG)
            .expect("keepalived.conf");
        assert!(conf.secret && conf.mode == 0o600 && conf.unit == Some("keepalived.service"));
        for want in [
            "unicast_src_ip 192.0.2.32\n",
            "unicast_peer {\n        192.0.2.31\n    }",
            "auth_pass PlAcE8ch\n",
            "192.0.2.30/32 dev eth0",
            "state BACKUP",
            "virtual_router_id 30\n",
            "script \"/usr/local/lib/pgha/entry-check serves\"",
            "weight -30",
            "enable_script_security",
        ] {
            assert!(conf.content.contains(want), "{want:?} in\n{}", conf.content);
        }
        assert!(!conf.content.contains("vrrp_strict") && !conf.content.contains("state MASTER"));
        let check = entry
            .iter()
            .find(|f| f.path == paths::ENTRY_CHECK)
            .expect("track script");
        assert_eq!((check.owner, check.mode), ("root", 0o755));
        assert!(
            check
                .content
                .contains("pg_isready -q -h 192.0.2.32 -p 6432 -U pgbouncer_auth -d postgres_rw")
        );
        assert!(entry.iter().any(|f| f.path == paths::VIP_SYSCTL));
        assert!(
            files("node1")
                .iter()
                .all(|f| !f.path.contains("keepalived") && f.path != paths::VIP_SYSCTL)
        );
    }
}
