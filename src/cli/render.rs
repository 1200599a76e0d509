//! `pgha render`: write every file pgha would install on each host under `OUT/<host>/`,
//! mirroring the target paths, with a MANIFEST per host (path, owner, group, mode). Prints a
//! summary, never key material.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use anyhow::Context;
use clap::Args;
use time::OffsetDateTime;

use super::report::{self, exit};
use crate::inventory::{self, LoadError};
use crate::pki;
use crate::render::{self, Leaf, Material, RenderedFile, Secrets, Target, TemplateSource};

/// Arguments of `pgha render`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  pgha render inventory/example.yaml --out out/\n  pgha render inventory/example.yaml --out out12/ --target debian12\n  pgha render inventory/example.yaml --out out/ --templates my-templates/\n\nFiles land in OUT/<host>/<absolute target path>, e.g. out/haproxy/etc/haproxy/haproxy.cfg;\nOUT/<host>/MANIFEST lists owner, group and mode of each. Keys and files holding passwords are\nwritten 0600. --templates DIR overrides the built-in templates file by file (same relative\nnames, e.g. DIR/haproxy/haproxy.cfg.j2).\n\nExit codes: 0 written, 1 failed, 3 invalid inventory."
)]
pub struct RenderArgs {
    /// The inventory file.
    pub inventory: PathBuf,
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Debian release of the hosts: debian13 (trixie) or debian12 (bookworm).
    #[arg(long, default_value = "debian13", value_parser = parse_target)]
    pub target: Target,
    /// Directory of templates overriding the built-in ones.
    #[arg(long)]
    pub templates: Option<PathBuf>,
    /// State directory of the PKI and secrets (default: .pgha beside the inventory); missing or
    /// stale certificates and secrets are issued there first.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Use fixed fake certificates and passwords (template development only: never deploy).
    #[arg(long, hide = true)]
    pub placeholder_material: bool,
}

fn parse_target(s: &str) -> Result<Target, String> {
    s.parse()
}

/// Runs `pgha render`.
pub fn run(args: &RenderArgs) -> u8 {
    let loaded = match inventory::load(&args.inventory) {
        Ok(l) => l,
        Err(LoadError::Invalid { errors, .. }) => {
            for d in &errors {
                report::diagnostic(d);
            }
            return exit::INVALID_INPUT;
        }
        Err(LoadError::Read(e)) => {
            report::error(&e);
            return exit::FAILED;
        }
    };
    match render_to(args, &loaded.inventory) {
        Ok(()) => exit::OK,
        Err(e) => {
            report::error(format!("{e:#}"));
            exit::FAILED
        }
    }
}

/// SCRAM verifiers of pgha's own roles, for the bootstrap SQL (never printed).
pub struct Verifiers {
    /// PgBouncer's auth user.
    pub auth: String,
    /// The `pgha verify` role.
    pub verify: String,
}

/// Where the PKI material comes from: the state directory, brought up to date first
/// (`pki::ensure` issues nothing unless a leaf is missing, expiring or stale).
fn material(args: &RenderArgs, inv: &inventory::Inventory) -> anyhow::Result<Material> {
    if args.placeholder_material {
        return Ok(render::placeholder::placeholder_material(inv));
    }
    Ok(material_from_state(inv, args.state.as_deref())?.0)
}

/// The PKI material of `inv` from its state directory (issuing what is missing or stale), and
/// the PgBouncer auth user's SCRAM verifier (for the bootstrap SQL).
pub fn material_from_state(inv: &inventory::Inventory, state: Option<&Path>) -> anyhow::Result<(Material, Verifiers)> {
    let state = pki::StateDir::for_inventory(inv, state);
    let report = pki::ensure(inv, &state, OffsetDateTime::now_utc())?;
    let (secrets, secrets_report) = pki::ensure_secrets(inv, &state)?;
    let issued = report.issued().count();
    if issued > 0 || !secrets_report.created.is_empty() {
        report::info(format!(
            "{}: issued {issued} certificate(s), generated {} password(s)",
            state.root().display(),
            secrets_report.created.len()
        ));
    }
    let bundle = pki::current_bundle(&state)?.with_context(|| format!("no CA bundle in {}", state.root().display()))?;
    let mut leaves = BTreeMap::new();
    for spec in pki::leaf_specs(inv) {
        let read =
            |path: std::path::PathBuf| fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()));
        let leaf = Leaf {
            cert_pem: read(state.leaf_cert(&spec.host, spec.kind))?,
            key_pem: read(state.leaf_key(&spec.host, spec.kind))?,
        };
        leaves.insert((spec.host.clone(), spec.kind), leaf);
    }
    let password = |account: &pki::Account| -> anyhow::Result<String> {
        Ok(secrets
            .password(account)
            .with_context(|| format!("no password for {account}"))?
            .expose()
            .clone())
    };
    let mut app_verifiers = BTreeMap::new();
    for user in &inv.postgres.users {
        let account = pki::Account::App(user.name.clone());
        let verifier = secrets
            .scram_verifier(&account)
            .with_context(|| format!("no password for {account}"))??;
        app_verifiers.insert(user.name.clone(), verifier.expose().clone());
    }
    let auth_verifier = secrets
        .scram_verifier(&pki::Account::PgbouncerAuth)
        .context("no password for the PgBouncer auth user")??
        .expose()
        .clone();
    let verify_verifier = secrets
        .scram_verifier(&pki::Account::Verify)
        .context("no password for the verify role")??
        .expose()
        .clone();
    let material = Material {
        ca_bundle_file: bundle.file_name(),
        ca_bundle_pem: bundle.pem,
        leaves,
        secrets: Secrets {
            superuser: password(&pki::Account::Superuser)?,
            replication: password(&pki::Account::Replication)?,
            rewind: password(&pki::Account::Rewind)?,
            patroni_rest: password(&pki::Account::PatroniRest)?,
            pgbouncer_auth: password(&pki::Account::PgbouncerAuth)?,
            app_verifiers,
        },
    };
    Ok((
        material,
        Verifiers {
            auth: auth_verifier,
            verify: verify_verifier,
        },
    ))
}

fn render_to(args: &RenderArgs, inv: &inventory::Inventory) -> anyhow::Result<()> {
    let material = material(args, inv)?;
    let source = match &args.templates {
        Some(d) => TemplateSource::Dir(d.clone()),
        None => TemplateSource::Embedded,
    };
    let all = render::render_all(inv, &material, args.target, &source)?;
    let mut rows = vec![vec!["host".into(), "files".into(), "secret".into(), "directory".into()]];
    for (host, files) in &all {
        let dir = args.out.join(host);
        write_host(&dir, files).with_context(|| format!("writing {}", dir.display()))?;
        rows.push(vec![
            host.clone(),
            files.len().to_string(),
            files.iter().filter(|f| f.secret).count().to_string(),
            dir.display().to_string(),
        ]);
    }
    report::out(report::table(&rows).trim_end());
    report::info(format!(
        "rendered {} host(s) for {}; owners and modes: <dir>/MANIFEST",
        all.len(),
        args.target
    ));
    Ok(())
}

/// Writes one host's files under `dir` (mode 0700: it holds keys) and its MANIFEST.
pub fn write_host(dir: &Path, files: &[RenderedFile]) -> anyhow::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    let mut manifest = String::from("# path\towner\tgroup\tmode\tunit\n");
    for f in files {
        let rel = f.path.trim_start_matches('/');
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            fs::DirBuilder::new().recursive(true).mode(0o755).create(parent)?;
        }
        let mode = if f.secret { 0o600 } else { f.mode };
        let _ = fs::remove_file(&path);
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        out.write_all(f.content.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
        manifest.push_str(&format!(
            "{}\t{}\t{}\t{:04o}\t{}\n",
            f.path,
            f.owner,
            f.group,
            f.mode,
            f.unit.unwrap_or("-")
        ));
    }
    fs::write(dir.join("MANIFEST"), manifest)?;
    Ok(())
}
