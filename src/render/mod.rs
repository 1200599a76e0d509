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
    for role in Role::ALL.into_iter().filter(|r| host.has(*r)) {
        for t in files::TEMPLATES.iter().filter(|t| t.role == role && files::template_wanted(t, host, inv)) {
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
        for l in files::LEAVES.iter().filter(|l| l.role == role && files::leaf_wanted(l, host, inv)) {
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
    if l.kind == LeafKind::HaproxyCheck {
        let mut pem = leaf.cert_pem.clone();
        if !pem.ends_with('\n') {
            pem.push('\n');
        }
        pem.push_str(&leaf.key_pem);
        return Ok(vec![file(paths::haproxy_check_pem(), pem, 0o640, true)]);
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
