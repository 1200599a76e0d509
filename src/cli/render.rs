//! `pgha render`: write every file pgha would install on each host under `OUT/<host>/`,
//! mirroring the target paths, with a MANIFEST per host (path, owner, group, mode). Prints a
//! summary, never key material.

use std::path::PathBuf;

use clap::Args;

use super::args::load_inventory;
use super::output::CliReporter;
use super::report::{self, exit};
use crate::ops::render::{self, RenderOptions};
use crate::render::{Target, TemplateSource};

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
    let inv = match load_inventory(&args.inventory, false) {
        Ok(i) => i,
        Err(code) => return code,
    };
    let o = RenderOptions {
        out: args.out.clone(),
        target: args.target,
        templates: match &args.templates {
            Some(d) => TemplateSource::Dir(d.clone()),
            None => TemplateSource::Embedded,
        },
        state: args.state.clone(),
        placeholder_material: args.placeholder_material,
    };
    let rep = CliReporter::shared(false, false, false);
    match render::render_to_dir(&inv, &o, rep.as_ref()) {
        Ok(hosts) => {
            let mut rows = vec![vec!["host".into(), "files".into(), "secret".into(), "directory".into()]];
            for h in &hosts {
                rows.push(vec![
                    h.host.clone(),
                    h.files.to_string(),
                    h.secret.to_string(),
                    h.dir.display().to_string(),
                ]);
            }
            report::out(report::table(&rows).trim_end());
            report::info(format!(
                "rendered {} host(s) for {}; owners and modes: <dir>/MANIFEST",
                hosts.len(),
                args.target
            ));
            exit::OK
        }
        Err(e) => report::fail(&e),
    }
}
