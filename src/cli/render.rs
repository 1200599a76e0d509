//! `pgha render`: write every file pgha would install on each host under `OUT/<host>/`,
//! mirroring the target paths, with a MANIFEST per host (path, owner, group, mode). Prints a
//! summary, never key material.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;

use super::report::{self, exit};
use crate::inventory::{self, LoadError};
use crate::render::{self, Material, RenderedFile, Target, TemplateSource};

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
    /// State directory of the PKI and secrets (default: .pgha beside the inventory).
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

/// Where the PKI material comes from. The `pki` module is wired in here.
fn material(args: &RenderArgs, inv: &inventory::Inventory) -> anyhow::Result<Material> {
    if args.placeholder_material {
        return Ok(render::placeholder::placeholder_material(inv));
    }
    let state = args
        .state
        .clone()
        .unwrap_or_else(|| inv.dir().join(".pgha"));
    bail!(
        "reading certificates and secrets from {} is not wired yet\n\nhint: until then, \
         --placeholder-material renders with fake material (never deploy it)",
        state.display()
    )
}

fn render_to(args: &RenderArgs, inv: &inventory::Inventory) -> anyhow::Result<()> {
    let material = material(args, inv)?;
    let source = match &args.templates {
        Some(d) => TemplateSource::Dir(d.clone()),
        None => TemplateSource::Embedded,
    };
    let all = render::render_all(inv, &material, args.target, &source)?;
    let mut rows = vec![vec![
        "host".into(),
        "files".into(),
        "secret".into(),
        "directory".into(),
    ]];
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
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    let mut manifest = String::from("# path\towner\tgroup\tmode\tunit\n");
    for f in files {
        let rel = f.path.trim_start_matches('/');
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)?;
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
