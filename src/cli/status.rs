//! `pgha status`: the cluster at a glance — etcd members and health, Patroni members (role,
//! state, timeline, lag), HAProxy servers per port, PgBouncer pools — with anything unhealthy
//! flagged. Read-only.

use std::path::PathBuf;

use clap::Args;

use super::deploy::{connect_all, load_inventory};
use super::report::{self, exit};
use super::run::{RemoteArgs, runtime};
use crate::inventory::Role;
use crate::pki;
use crate::render::paths;
use crate::transport::{Cmd, DEFAULT_TIMEOUT};
use crate::verify::{self, Ctx};

/// Arguments of `pgha status`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  pgha status inventory/lab.yaml\n  pgha status inventory/prod.yaml --json | jq .patroni\n\nExit codes: 0 healthy, 1 something is flagged unhealthy, 3 invalid inventory."
)]
pub struct StatusArgs {
    /// The inventory file.
    pub inventory: PathBuf,
    /// State directory (default: .pgha beside the inventory).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Connection and output options.
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// Runs `pgha status`.
pub fn run(args: &StatusArgs) -> u8 {
    let inv = match load_inventory(&args.inventory, true) {
        Ok(i) => i,
        Err(code) => return code,
    };
    let state = pki::StateDir::for_inventory(&inv, args.state.as_deref());
    let Ok(Some(bundle)) = pki::current_bundle(&state) else {
        report::error(format!("{}: no CA bundle; deploy first", state.root().display()));
        return exit::FAILED;
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let (json, problems) = rt.block_on(async {
        let (conns, errors) = connect_all(&inv, &args.remote).await;
        let mut problems: Vec<String> = errors.values().map(|e| e.to_string()).collect();
        let ctx = Ctx {
            inv: &inv,
            conns: &conns,
            ca_file: state.bundle(bundle.generation),
            remote_ca: paths::ca_bundle(&bundle.file_name()),
            password: pki::Secret::new(String::new()),
        };
        let etcd = verify::etcd(&ctx).await;
        if !etcd.ok {
            problems.push(format!("etcd: {}", etcd.detail));
        }
        let members = verify::patroni_members(&ctx).await;
        let patroni = verify::patroni(&ctx).await;
        if !patroni.ok {
            problems.push(format!("patroni: {}", patroni.detail));
        }
        let mut haproxy = serde_json::Map::new();
        for h in inv.hosts_with(Role::Haproxy) {
            match verify::haproxy_servers(&ctx, h).await {
                Ok(servers) => {
                    let up_rw = servers
                        .iter()
                        .filter(|(p, _, s)| p == "postgres_rw" && s.starts_with("UP"))
                        .count();
                    if up_rw != 1 {
                        problems.push(format!("haproxy {}: {up_rw} RW servers UP", h.name));
                    }
                    let list: Vec<serde_json::Value> = servers
                        .iter()
                        .map(|(p, s, st)| serde_json::json!({ "proxy": p, "server": s, "status": st }))
                        .collect();
                    haproxy.insert(h.name.to_string(), serde_json::Value::Array(list));
                }
                Err(e) => problems.push(format!("haproxy {}: {e}", h.name)),
            }
        }
        let mut pools = serde_json::Map::new();
        for b in inv.hosts_with(Role::Pgbouncer) {
            let cmd = Cmd::new("runuser")
                .args([
                    "-u",
                    "postgres",
                    "--",
                    "psql",
                    "-X",
                    "-A",
                    "-F",
                    "\t",
                    "-h",
                    paths::SOCKET_DIR,
                    "-p",
                ])
                .arg(inv.pgbouncer.port.to_string())
                .args(["-U", "postgres", "pgbouncer", "-c", "SHOW POOLS"]);
            if let Some(c) = conns.get(b.name.as_str()) {
                match c.exec(&cmd, None, DEFAULT_TIMEOUT).await {
                    Ok(o) if o.success() => {
                        pools.insert(b.name.to_string(), serde_json::Value::String(o.stdout_text()));
                    }
                    Ok(o) => problems.push(format!("pgbouncer {}: SHOW POOLS: {}", b.name, o.stderr_tail(2))),
                    Err(e) => problems.push(e.to_string()),
                }
            }
        }
        for c in conns.values() {
            let _ = c.close().await;
        }
        let json = serde_json::json!({
            "etcd": etcd,
            "patroni": { "check": patroni, "members": members.unwrap_or_default() },
            "haproxy": haproxy,
            "pgbouncer_pools": pools,
        });
        (json, problems)
    });
    if args.remote.json {
        report::json(&serde_json::json!({ "healthy": problems.is_empty(), "problems": problems, "status": json }));
    } else {
        print_text(&json);
        for p in &problems {
            report::out(format!("UNHEALTHY: {p}"));
        }
        if problems.is_empty() {
            report::out("status: healthy");
        }
    }
    if problems.is_empty() { exit::OK } else { exit::FAILED }
}

fn print_text(v: &serde_json::Value) {
    report::out(format!("etcd      {}", v["etcd"]["detail"].as_str().unwrap_or("?")));
    let mut rows = vec![vec![
        "member".to_string(),
        "role".into(),
        "state".into(),
        "timeline".into(),
        "lag".into(),
    ]];
    for m in v["patroni"]["members"].as_array().into_iter().flatten() {
        let s = |k: &str| match &m[k] {
            serde_json::Value::Null => "-".to_string(),
            serde_json::Value::String(x) => x.clone(),
            other => other.to_string(),
        };
        rows.push(vec![s("name"), s("role"), s("state"), s("timeline"), s("lag")]);
    }
    report::out("\nPATRONI");
    report::out(report::table(&rows).trim_end());
    report::out("\nHAPROXY");
    let mut rows = vec![vec![
        "haproxy".to_string(),
        "proxy".into(),
        "server".into(),
        "status".into(),
    ]];
    for (h, list) in v["haproxy"].as_object().into_iter().flatten() {
        for s in list.as_array().into_iter().flatten() {
            rows.push(vec![
                h.clone(),
                s["proxy"].as_str().unwrap_or("").into(),
                s["server"].as_str().unwrap_or("").into(),
                s["status"].as_str().unwrap_or("").into(),
            ]);
        }
    }
    report::out(report::table(&rows).trim_end());
    report::out("\nPGBOUNCER POOLS");
    for (h, text) in v["pgbouncer_pools"].as_object().into_iter().flatten() {
        for line in text.as_str().unwrap_or("").lines().filter(|l| !l.starts_with('(')) {
            let cols: Vec<&str> = line.split('\t').collect();
            report::out(format!(
                "{h:<10} {}",
                cols.iter().take(6).copied().collect::<Vec<_>>().join("  ")
            ));
        }
    }
}
