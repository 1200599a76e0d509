//! `pgha status`: the cluster at a glance — etcd members and health, Patroni members (role,
//! state, timeline, lag), HAProxy servers per port, PgBouncer pools — with anything unhealthy
//! flagged. Read-only. The reading is `ops::status`; this file prints it.

use clap::Args;

use super::args::{InventoryArgs, RemoteArgs, prepare};
use super::report::{self, exit};
use crate::ops::status;

/// Arguments of `pgha status`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  pgha status inventory/lab.yaml\n  pgha status inventory/prod.yaml --json | jq .patroni\n\nExit codes: 0 healthy, 1 something is flagged unhealthy, 3 invalid inventory."
)]
pub struct StatusArgs {
    /// The inventory and state directory.
    #[command(flatten)]
    pub target: InventoryArgs,
    /// Connection and output options.
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// Runs `pgha status`.
pub fn run(args: &StatusArgs) -> u8 {
    let (inv, rt) = match prepare(&args.target, true) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let st = match rt.block_on(status::status(
        &inv,
        args.target.state.as_deref(),
        &args.remote.connect(),
    )) {
        Ok(s) => s,
        Err(e) => return report::fail(&e),
    };
    let problems = &st.problems;
    if args.remote.json {
        report::json(&serde_json::json!({ "healthy": problems.is_empty(), "problems": problems, "status": st.status }));
    } else {
        print_text(&st.status);
        for p in problems {
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
    if let Some(b) = v["backup"]["summary"].as_str() {
        report::out(format!("backup    {b}"));
        for p in v["backup"]["health"]["problems"].as_array().into_iter().flatten() {
            report::out(format!("WARNING: backup: {}", p.as_str().unwrap_or("?")));
        }
    }
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
    let changing: Vec<String> = v["membership"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["state"] != "member")
        .map(|m| {
            format!(
                "{} {} {}",
                m["layer"].as_str().unwrap_or("?"),
                m["name"].as_str().unwrap_or("?"),
                m["state"].as_str().unwrap_or("?")
            )
        })
        .collect();
    report::out(format!(
        "\nMEMBERS   {}",
        if changing.is_empty() {
            "as the inventory lists them".to_string()
        } else {
            changing.join(", ")
        }
    ));
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
    if let Some(addr) = v["vip"]["address"].as_str() {
        let holders: Vec<&str> = v["vip"]["holders"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| h.as_str())
            .collect();
        report::out(format!(
            "\nVIP {addr}: held by {}",
            if holders.is_empty() {
                "no entry host".to_string()
            } else {
                holders.join(", ")
            }
        ));
    }
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
