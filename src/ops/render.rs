//! `pgha render`: every file pgha installs on each host, rendered into a local directory
//! (OUT/<host>/<absolute path>, with a MANIFEST of owners, groups, modes and units).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{OpsError, Reporter, material};
use crate::inventory::Inventory;
use crate::render::{self, RenderedFile, Target, TemplateSource};

/// What to render.
#[derive(Clone, Debug)]
pub struct RenderOptions {
    /// Output directory (created if missing).
    pub out: PathBuf,
    /// Debian release of the hosts.
    pub target: Target,
    /// Where templates come from.
    pub templates: TemplateSource,
    /// State directory (default beside the inventory).
    pub state: Option<PathBuf>,
    /// Fixed fake certificates and passwords (template development only).
    pub placeholder_material: bool,
}

/// One host's rendered directory.
#[derive(Clone, Debug)]
pub struct RenderedHost {
    /// The host.
    pub host: String,
    /// How many files.
    pub files: usize,
    /// How many of them hold secrets.
    pub secret: usize,
    /// Where they were written.
    pub dir: PathBuf,
}

/// Renders every host's files into `o.out`.
pub fn render_to_dir(inv: &Inventory, o: &RenderOptions, rep: &dyn Reporter) -> Result<Vec<RenderedHost>, OpsError> {
    let material = if o.placeholder_material {
        render::placeholder::placeholder_material(inv)
    } else {
        material::from_state(inv, o.state.as_deref(), rep)?.0
    };
    let all = render::render_all(inv, &material, o.target, &o.templates)?;
    let mut out = Vec::new();
    for (host, files) in &all {
        let dir = o.out.join(host);
        write_host(&dir, files).map_err(|source| OpsError::Write {
            path: format!("writing {}", dir.display()),
            source,
        })?;
        out.push(RenderedHost {
            host: host.clone(),
            files: files.len(),
            secret: files.iter().filter(|f| f.secret).count(),
            dir,
        });
    }
    Ok(out)
}

fn named(path: &Path, what: &str) -> impl FnOnce(std::io::Error) -> std::io::Error {
    let msg = format!("{what} {}", path.display());
    move |e| std::io::Error::new(e.kind(), format!("{msg}: {e}"))
}

/// Writes one host's files under `dir` (mode 0700: it holds keys) and its MANIFEST.
pub fn write_host(dir: &Path, files: &[RenderedFile]) -> std::io::Result<()> {
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
            .map_err(named(&path, "creating"))?;
        out.write_all(f.content.as_bytes()).map_err(named(&path, "writing"))?;
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
