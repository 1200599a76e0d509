//! The cluster-level half of `pgha plan`: what a deploy would change beyond the files —
//! Patroni's dynamic configuration (DCS, read from `/config`) before → after, which of those
//! parameters need a PostgreSQL restart, and the rolling restart with its switchover that the
//! deploy playbook would then do (replicas one at a time, then a switchover, then the old
//! primary). [`cluster_plan`] is pure; [`read_cluster_plan`] reads the facts it needs.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::pool::Conns;
use crate::engine::HostInput;
use crate::facts::patroni::{self, DcsChange, DcsConfig, Member};
use crate::inventory::{Inventory, Role};
use crate::render::paths;
use crate::transport::DEFAULT_TIMEOUT;

/// The rolling restart a deploy would do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RollingRestart {
    /// Replicas restarted first, one at a time.
    pub replicas: Vec<String>,
    /// The primary hands over to this member before its own restart (None: no healthy
    /// replica to take over; the deploy would wait for one).
    pub switchover_to: Option<String>,
    /// The primary, restarted last.
    pub primary: String,
}

/// What a deploy would change in the cluster itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ClusterPlan {
    /// DCS settings before → after (applied once, cluster-wide).
    pub dcs: Vec<DcsChange>,
    /// The changed PostgreSQL parameters that need a restart.
    pub restart_parameters: Vec<String>,
    /// Members that already wait for a restart (`pending_restart`).
    pub pending_restart: Vec<String>,
    /// The rolling restart (with its switchover) that follows, if any.
    pub rolling_restart: Option<RollingRestart>,
    /// Why the cluster could not be planned (not bootstrapped yet, no PostgreSQL host reached).
    pub note: Option<String>,
    /// Members joining or leaving (`ops::members`).
    pub members: super::members::MemberPlan,
}

impl ClusterPlan {
    /// Nothing changes in the cluster.
    pub fn is_empty(&self) -> bool {
        self.dcs.is_empty() && self.rolling_restart.is_none() && self.members.is_empty()
    }
}

/// `bootstrap.dcs` of a rendered Patroni config.yml: what the DCS should hold.
pub fn wanted_dcs(config_yml: &[u8]) -> Result<serde_json::Value, String> {
    patroni::wanted_dcs(config_yml)
}

/// The plan from the facts: `want` (bootstrap.dcs), the DCS now, the members, and the names of
/// PostgreSQL's `postmaster`-context settings (those only a restart applies).
pub fn cluster_plan(
    want: &serde_json::Value,
    have: &DcsConfig,
    members: &[Member],
    postmaster: &BTreeSet<String>,
) -> ClusterPlan {
    let dcs = patroni::dcs_changes(want, &have.raw);
    let restart_parameters: Vec<String> = dcs
        .iter()
        .filter_map(DcsChange::parameter)
        .filter(|p| postmaster.contains(*p))
        .map(str::to_string)
        .collect();
    let pending_restart: Vec<String> = members
        .iter()
        .filter(|m| m.pending_restart)
        .map(|m| m.name.clone())
        .collect();
    let rolling_restart = if restart_parameters.is_empty() && pending_restart.is_empty() {
        None
    } else {
        patroni::leader(members).map(|leader| RollingRestart {
            replicas: members
                .iter()
                .filter(|m| m.name != leader)
                .map(|m| m.name.clone())
                .collect(),
            switchover_to: patroni::switchover_candidate(members, leader).map(str::to_string),
            primary: leader.to_string(),
        })
    };
    ClusterPlan {
        dcs,
        restart_parameters,
        pending_restart,
        rolling_restart,
        note: None,
        members: Default::default(),
    }
}

/// Reads `/cluster`, `/config` and PostgreSQL's restart-only settings on the first PostgreSQL
/// node that answers, and plans against the rendered Patroni config. Problems become the
/// plan's note (a plan must not fail because the cluster does not exist yet).
pub async fn read_cluster_plan(
    inv: &Inventory,
    conns: &Conns,
    inputs: &BTreeMap<String, HostInput>,
    remote_ca: &str,
) -> ClusterPlan {
    let noted = |note: String| ClusterPlan {
        note: Some(note),
        ..ClusterPlan::default()
    };
    let pg: Vec<&str> = inv
        .hosts_with(Role::Postgres)
        .map(|h| h.name.as_str())
        .filter(|h| conns.contains_key(*h))
        .collect();
    let Some(config) = pg
        .iter()
        .find_map(|h| inputs.get(*h)?.rendered.get(paths::PATRONI_CONFIG))
    else {
        return noted("no PostgreSQL host in this run: the cluster was not planned".into());
    };
    let want = match wanted_dcs(&config.content) {
        Ok(w) => w,
        Err(e) => return noted(e),
    };
    let mut last = String::from("no PostgreSQL host answered");
    for host in pg {
        let Some(conn) = conns.get(host) else { continue };
        let get = |path: &'static str| {
            let cmd = patroni::rest_cmd(inv, host, remote_ca, path);
            async move {
                match conn.exec(&cmd, None, DEFAULT_TIMEOUT).await {
                    Ok(o) if o.success() => Ok(o.stdout_text()),
                    Ok(o) => Err(format!("{host}: Patroni {path}: {}", o.stderr_tail(1))),
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        let (cluster, config) = match (get("/cluster").await, get("/config").await) {
            (Ok(c), Ok(d)) => (c, d),
            (Err(e), _) | (_, Err(e)) => {
                last = e;
                continue;
            }
        };
        let members = match patroni::parse_cluster(&cluster) {
            Ok(m) => m,
            Err(e) => return noted(e.to_string()),
        };
        let have = match DcsConfig::parse(&config) {
            Ok(h) => h,
            Err(e) => return noted(e.to_string()),
        };
        let postmaster = match conn
            .exec(&patroni::postmaster_settings_cmd(), None, DEFAULT_TIMEOUT)
            .await
        {
            Ok(o) if o.success() => patroni::parse_postmaster_settings(&o.stdout_text()),
            _ => patroni::POSTMASTER_FALLBACK.iter().map(|s| s.to_string()).collect(),
        };
        return cluster_plan(&want, &have, &members, &postmaster);
    }
    noted(format!(
        "Patroni's configuration could not be read ({last}); on a new cluster, bootstrap.dcs creates it"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, role: &str, state: &str) -> Member {
        Member {
            name: name.into(),
            role: role.into(),
            state: state.into(),
            timeline: Some(1),
            lag: Some(serde_json::json!(0)),
            pending_restart: false,
        }
    }

    #[test]
    fn a_restart_parameter_plans_a_rolling_restart_with_a_switchover() {
        let want =
            serde_json::json!({"ttl": 25, "postgresql": {"parameters": {"max_connections": 200, "work_mem": "8MB"}}});
        let have = DcsConfig::from_value(
            serde_json::json!({"ttl": 25, "postgresql": {"parameters": {"max_connections": 100, "work_mem": "4MB"}}}),
        );
        let members = [
            member("node1", "leader", "running"),
            member("node2", "sync_standby", "streaming"),
            member("node3", "replica", "streaming"),
        ];
        let postmaster: BTreeSet<String> = ["max_connections".to_string()].into();
        let p = cluster_plan(&want, &have, &members, &postmaster);
        assert_eq!(p.dcs.len(), 2);
        assert_eq!(p.restart_parameters, ["max_connections"]);
        assert_eq!(
            p.rolling_restart,
            Some(RollingRestart {
                replicas: vec!["node2".into(), "node3".into()],
                switchover_to: Some("node2".into()),
                primary: "node1".into(),
            })
        );
        // work_mem alone: a DCS change, no restart.
        let want =
            serde_json::json!({"ttl": 25, "postgresql": {"parameters": {"max_connections": 100, "work_mem": "8MB"}}});
        let p = cluster_plan(&want, &have, &members, &postmaster);
        assert_eq!(p.dcs.len(), 1);
        assert!(p.restart_parameters.is_empty() && p.rolling_restart.is_none());
        // In sync: nothing.
        assert!(cluster_plan(&have.raw, &have, &members, &postmaster).is_empty());
    }

    #[test]
    fn a_patroni_config_diff_shows_the_change_and_masks_only_the_secrets() {
        let inv = crate::pki::testutil_inventory();
        let material = crate::render::placeholder::placeholder_material(&inv);
        let host = inv.hosts_with(Role::Postgres).next().expect("a postgres host");
        let all = crate::render::render_all(
            &inv,
            &material,
            crate::render::Target::Debian13,
            &crate::render::TemplateSource::Embedded,
        )
        .expect("renders");
        let new = all[host.name.as_str()]
            .iter()
            .find(|f| f.path == paths::PATRONI_CONFIG)
            .expect("patroni config")
            .content
            .clone();
        assert!(new.contains("use_slots"), "bootstrap.dcs sets use_slots");
        let old = new.replacen("use_slots", "use_slots_before", 1);
        let d = crate::plan::mask_secrets(&crate::plan::unified_diff(
            paths::PATRONI_CONFIG,
            Some(old.as_bytes()),
            new.as_bytes(),
            false,
        ));
        assert!(d.contains("+") && d.contains("use_slots_before"), "{d}");
        // The whole file as new: every line shows, the passwords masked.
        let whole = crate::plan::mask_secrets(&crate::plan::unified_diff(
            paths::PATRONI_CONFIG,
            None,
            new.as_bytes(),
            false,
        ));
        assert!(whole.matches("password: ***").count() >= 4, "{whole}");
        // Every placeholder secret starts `placeholder-` (the REST password also holds a quote
        // and a backslash, escaped in YAML).
        assert!(new.matches("placeholder-").count() >= 4, "the config holds the secrets");
        assert!(!d.contains("placeholder-"), "a secret shows in the diff: {d}");
        assert!(!whole.contains("placeholder-"), "a secret shows in the diff: {whole}");
        assert!(!crate::plan::is_key_material(new.as_bytes()));
        // PgBouncer's auth file: the auth user's own password and the verifiers, whole-file.
        let bouncer = inv.hosts_with(Role::Pgbouncer).next().expect("a pgbouncer host");
        let userlist = &all[bouncer.name.as_str()]
            .iter()
            .find(|f| f.path == paths::PGBOUNCER_USERLIST)
            .expect("userlist")
            .content;
        assert!(userlist.contains("placeholder-"), "{userlist}");
        let whole = crate::plan::mask_secrets(&crate::plan::unified_diff(
            paths::PGBOUNCER_USERLIST,
            None,
            userlist.as_bytes(),
            false,
        ));
        assert!(!whole.contains("placeholder-"), "a secret shows in the diff: {whole}");
        assert!(
            !whole.contains("SCRAM-SHA-256$4096:"),
            "a verifier shows in the diff: {whole}"
        );
    }

    #[test]
    fn bootstrap_dcs_is_read_from_the_rendered_config() {
        let yml = b"scope: x\nbootstrap:\n  dcs:\n    ttl: 25\n    postgresql:\n      parameters:\n        max_connections: 100\n";
        let want = wanted_dcs(yml).expect("parses");
        assert_eq!(
            want.pointer("/postgresql/parameters/max_connections"),
            Some(&serde_json::json!(100))
        );
        assert!(wanted_dcs(b"scope: x\n").is_err());
    }
}
