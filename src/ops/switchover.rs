//! `pgha switchover`: hand the primary role to a streaming replica without failing a client.
//! Checks first, from the facts (`facts::patroni`): one leader running, the candidate (`--to`,
//! or the synchronous standby, else a streaming replica) streaming with a lag under
//! `maximum_lag_on_failover`, a synchronous standby when synchronous mode is on. Then PgBouncer's
//! pools are PAUSEd (clients wait instead of failing; server connections are closed once
//! released), Patroni switches over (`POST /switchover`, sent from a PostgreSQL node: the REST
//! allowlist only accepts unsafe endpoints from their addresses), pgha waits until Patroni shows
//! the new leader running and every HAProxy routes RW to it (`facts::haproxy::check_rw`), and
//! RESUMEs — on every way out, errors and Ctrl-C included. `--at` hands the time to Patroni
//! (`scheduled_at`); then nothing is paused. The session ([`Cluster`]) is shared with
//! `ops::restart` and `ops::reinit`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use serde::Serialize;

use super::pool::{self, Conns};
use super::verify::{self, Ctx};
use super::{Connect, OpsError, Reporter};
use crate::facts::{haproxy, patroni};
use crate::inventory::{Host, Inventory, Role, SyncMode};
use crate::pki;
use crate::render::{LeafKind, paths};
use crate::transport::{Cmd, DEFAULT_TIMEOUT};

/// How long the role change may take until HAProxy routes RW to the new leader.
pub const SWITCH_WAIT: Duration = Duration::from_secs(60);
/// How long a restarted or rebuilt member may take to stream again.
pub const REJOIN_WAIT: Duration = Duration::from_secs(180);

/// What `pgha switchover` does.
#[derive(Clone, Debug, Default)]
pub struct SwitchoverOptions {
    /// The replica to hand over to (default: the synchronous standby, else a streaming replica).
    pub to: Option<String>,
    /// Schedule the switchover at this time (ISO 8601 with a time zone), through Patroni.
    pub at: Option<String>,
    /// Do it (without: the checks and the plan only).
    pub yes: bool,
    /// State directory (default beside the inventory).
    pub state: Option<PathBuf>,
    /// How to reach the hosts (every host).
    pub connect: Connect,
}

/// The checked plan of a switchover.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SwitchoverPlan {
    /// The leader now.
    pub leader: String,
    /// The replica that takes over.
    pub candidate: String,
    /// Its replication lag (bytes), when Patroni knows it.
    pub lag: Option<u64>,
    /// Synchronous mode in force (`off`, `on`, `quorum`).
    pub sync_mode: String,
    /// The scheduled time, when scheduled.
    pub at: Option<String>,
    /// The PgBouncer hosts whose pools are paused around the role change.
    pub pause: Vec<String>,
}

/// What a switchover did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SwitchoverRun {
    /// The leader before.
    pub from: String,
    /// The leader after (the candidate; for `--at`, the one scheduled).
    pub to: String,
    /// Scheduled by Patroni rather than done now.
    pub scheduled: bool,
    /// How long PgBouncer's pools were paused (seconds; clients waited at most this long).
    pub paused_s: f64,
    /// From the switchover request until HAProxy routed RW to the new leader (seconds).
    pub switch_s: f64,
}

/// The pure check: whom to hand over to, or why not (an operator's sentence).
pub fn check(
    members: &[patroni::Member],
    to: Option<&str>,
    sync: SyncMode,
    max_lag: u64,
) -> Result<(String, String, Option<u64>), String> {
    let leader = patroni::leader(members).ok_or_else(|| {
        let leaders: Vec<&str> = members
            .iter()
            .filter(|m| m.is_leader())
            .map(|m| m.name.as_str())
            .collect();
        format!("no single leader ({leaders:?}): the cluster must be healthy before a switchover")
    })?;
    let lm = members
        .iter()
        .find(|m| m.name == leader)
        .expect("the leader is a member");
    if lm.state != "running" {
        return Err(format!("the leader {leader} is {}, not running", lm.state));
    }
    let candidate = match to {
        Some(t) if t == leader => return Err(format!("{t} is already the leader")),
        Some(t) => {
            let m = members
                .iter()
                .find(|m| m.name == t)
                .ok_or_else(|| format!("{t} is not a Patroni member of this cluster"))?;
            if !m.streams() {
                return Err(format!("{t} is {} {}, not a streaming replica", m.role, m.state));
            }
            if sync != SyncMode::Off && !m.is_sync() {
                return Err(format!(
                    "synchronous mode is on and {t} is not a synchronous standby (it could lack committed transactions); pick one of: {}",
                    members
                        .iter()
                        .filter(|m| m.is_sync())
                        .map(|m| m.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            t
        }
        None => {
            let c = patroni::switchover_candidate(members, leader)
                .ok_or_else(|| "no streaming replica to hand over to".to_string())?;
            let m = members.iter().find(|m| m.name == c).expect("the candidate is a member");
            if sync != SyncMode::Off && !m.is_sync() {
                return Err(
                    "synchronous mode is on but no streaming synchronous standby: a switchover could lose commits"
                        .into(),
                );
            }
            c
        }
    };
    let m = members.iter().find(|m| m.name == candidate).expect("a member");
    let lag = m.lag.as_ref().and_then(serde_json::Value::as_u64);
    match lag {
        Some(l) if l > max_lag => Err(format!(
            "{candidate} lags {l} bytes behind, more than maximum_lag_on_failover ({max_lag}); wait for it to catch up"
        )),
        None if m.state != "streaming" => Err(format!("{candidate}'s lag is unknown")),
        _ => Ok((leader.to_string(), candidate.to_string(), lag)),
    }
}

/// An open session on every host of the cluster: the connections and the CA bundle's path.
pub struct Cluster<'a> {
    /// The inventory.
    pub inv: &'a Inventory,
    /// Connections by host name.
    pub conns: Conns,
    /// The CA bundle's path on the hosts.
    pub remote_ca: String,
    ca_file: PathBuf,
    /// Progress.
    pub rep: &'a Arc<dyn Reporter>,
}

impl<'a> Cluster<'a> {
    /// Connects to every host (all must answer).
    pub async fn open(
        inv: &'a Inventory,
        state: Option<&std::path::Path>,
        connect: &Connect,
        what: &str,
        rep: &'a Arc<dyn Reporter>,
    ) -> Result<Cluster<'a>, OpsError> {
        let state = pki::StateDir::for_inventory(inv, state);
        let Ok(Some(bundle)) = pki::current_bundle(&state) else {
            return Err(OpsError::NotDeployed(format!(
                "{}: no CA bundle; deploy first",
                state.root().display()
            )));
        };
        let mut connect = connect.clone();
        connect.limit.clear();
        let conns = pool::connect_every(inv, &connect, what).await?;
        Ok(Cluster {
            inv,
            conns,
            remote_ca: paths::ca_bundle(&bundle.file_name()),
            ca_file: state.bundle(bundle.generation),
            rep,
        })
    }

    /// Closes the connections.
    pub async fn close(&self) {
        pool::close_all(&self.conns).await;
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            inv: self.inv,
            conns: &self.conns,
            ca_file: self.ca_file.clone(),
            remote_ca: self.remote_ca.clone(),
            password: pki::Secret::new(String::new()),
        }
    }

    fn host(&self, name: &str) -> Result<&'a Host, OpsError> {
        self.inv
            .hosts
            .iter()
            .find(|h| h.name.as_str() == name && h.has(Role::Postgres))
            .ok_or_else(|| {
                OpsError::InvalidInput(format!("{name}: not a PostgreSQL host of {}", self.inv.path.display()))
            })
    }

    /// Patroni's members (`/cluster`, from the first node that answers).
    pub async fn members(&self) -> Result<Vec<patroni::Member>, OpsError> {
        verify::patroni_members(&self.ctx()).await.map_err(OpsError::Day2)
    }

    /// The synchronous mode in force (Patroni's `/config`; the inventory's when unreadable).
    pub async fn sync_mode(&self) -> SyncMode {
        for h in self.inv.hosts_with(Role::Postgres) {
            let cmd = patroni::rest_cmd(self.inv, h.name.as_str(), &self.remote_ca, "/config");
            if let Ok(body) = self.exec(h.name.as_str(), &cmd, DEFAULT_TIMEOUT).await
                && let Ok(c) = patroni::DcsConfig::parse(&body)
            {
                return c.sync_mode();
            }
        }
        self.inv.patroni.synchronous_mode
    }

    async fn exec(&self, host: &str, cmd: &Cmd, timeout: Duration) -> Result<String, String> {
        let conn = self.conns.get(host).ok_or_else(|| format!("{host}: not connected"))?;
        let out = conn.exec(cmd, None, timeout).await.map_err(|e| e.to_string())?;
        if out.success() {
            Ok(out.stdout_text())
        } else {
            Err(format!(
                "{host}: `{}` exited {:?}: {} {}",
                cmd.summary(),
                out.code,
                out.stdout_text().trim(),
                out.stderr_tail(3)
            ))
        }
    }

    /// An unsafe REST call (`POST path` with a JSON `body`) to `member`'s Patroni, sent from
    /// that member itself (a PostgreSQL node, which the REST allowlist accepts) with the client
    /// certificate and the REST password read from Patroni's config (base64 in an Authorization
    /// header on curl's stdin, never on a command line). Returns Patroni's answer.
    pub async fn post(&self, member: &str, path: &str, body: &str, max_time: u32) -> Result<String, OpsError> {
        self.host(member)?;
        // The credentials reach curl as one config line holding only base64 (never the values
        // themselves, which could close the quoted string and add options), on stdin.
        let script = r#"python3 -c 'import base64, sys, yaml
a = yaml.safe_load(open(sys.argv[1]))["restapi"]["authentication"]
cred = ("%s:%s" % (a["username"], a["password"])).encode()
print("header = \"Authorization: Basic %s\"" % base64.b64encode(cred).decode("ascii"))' "$1" | curl -sS --fail-with-body --max-time "$2" --cacert "$3" --cert "$4" --key "$5" --config - -H 'Content-Type: application/json' -X POST -d "$6" "$7""#;
        let cmd = Cmd::script(
            script,
            [
                paths::PATRONI_CONFIG.to_string(),
                max_time.to_string(),
                self.remote_ca.clone(),
                paths::leaf_cert(LeafKind::PatroniClient),
                paths::leaf_key(LeafKind::PatroniClient),
                body.to_string(),
                format!("https://{member}:{}{path}", self.inv.patroni.rest_port),
            ],
        );
        self.exec(member, &cmd, Duration::from_secs(u64::from(max_time) + 30))
            .await
            .map(|s| s.trim().to_string())
            .map_err(|e| OpsError::Day2(format!("Patroni POST {path} on {member}: {e}")))
    }

    /// Waits (bounded) until `done(members)`; `what` names the wait in the error.
    pub async fn wait_members(
        &self,
        what: &str,
        bound: Duration,
        done: impl Fn(&[patroni::Member]) -> bool,
    ) -> Result<Vec<patroni::Member>, OpsError> {
        let deadline = Instant::now() + bound;
        loop {
            let last = match self.members().await {
                Ok(m) if done(&m) => return Ok(m),
                Ok(m) => m
                    .iter()
                    .map(|m| format!("{} {} {}", m.name, m.role, m.state))
                    .collect::<Vec<_>>()
                    .join(", "),
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                return Err(OpsError::Day2(format!(
                    "gave up after {} s waiting until {what} (last seen: {last})",
                    bound.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until `member` is back as a streaming replica.
    pub async fn wait_rejoined(&self, member: &str) -> Result<(), OpsError> {
        self.wait_members(&format!("{member} streams"), REJOIN_WAIT, |m| {
            patroni::rejoined(m, member)
        })
        .await
        .map(|_| ())
    }

    /// Whether every HAProxy routes RW to `leader` (exactly one RW server UP, and it).
    async fn routes_rw_to(&self, leader: &str) -> Result<(), String> {
        let ctx = self.ctx();
        for h in self.inv.hosts_with(Role::Haproxy) {
            let servers = verify::haproxy_servers(&ctx, h).await?;
            haproxy::check_rw(&servers, Some(leader)).map_err(|e| format!("haproxy {}: {e}", h.name))?;
        }
        Ok(())
    }

    /// PAUSE on every PgBouncer (waits, bounded, for running transactions; then every server
    /// connection is closed and new clients wait).
    async fn pause(&self) -> Result<(), OpsError> {
        let results = join_all(self.inv.hosts_with(Role::Pgbouncer).map(|h| async move {
            let cmd = Cmd::new("timeout")
                .arg("60")
                .args(self.admin_cmd("PAUSE").argv().iter().cloned());
            self.exec(h.name.as_str(), &cmd, DEFAULT_TIMEOUT).await
        }))
        .await;
        let errors: Vec<String> = results.into_iter().filter_map(Result::err).collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(OpsError::Drain(format!("PgBouncer PAUSE: {}", errors.join("; "))))
        }
    }

    /// RESUME on every PgBouncer (every host tried; errors reported, not returned: this runs
    /// on the way out).
    async fn resume(&self) -> bool {
        let results = join_all(self.inv.hosts_with(Role::Pgbouncer).map(|h| async move {
            self.exec(h.name.as_str(), &self.admin_cmd("RESUME"), DEFAULT_TIMEOUT)
                .await
        }))
        .await;
        let mut ok = true;
        for e in results.into_iter().filter_map(Result::err) {
            ok = false;
            self.rep.error(&format!(
                "PgBouncer RESUME failed (run `RESUME` on its admin console): {e}"
            ));
        }
        ok
    }

    fn admin_cmd(&self, command: &str) -> Cmd {
        crate::facts::pgbouncer::admin_cmd(self.inv, &["-q"], command)
    }

    /// The checks and the plan.
    pub async fn plan(&self, to: Option<&str>, at: Option<&str>) -> Result<SwitchoverPlan, OpsError> {
        if let Some(t) = to {
            self.host(t)?;
        }
        let members = self.members().await?;
        let sync = self.sync_mode().await;
        let (leader, candidate, lag) = check(&members, to, sync, self.inv.patroni.maximum_lag_on_failover)
            .map_err(|e| OpsError::Refused(format!("switchover refused: {e}")))?;
        Ok(SwitchoverPlan {
            leader,
            candidate,
            lag,
            sync_mode: patroni::sync_word(sync).to_string(),
            at: at.map(str::to_string),
            pause: if at.is_some() {
                Vec::new()
            } else {
                self.inv
                    .hosts_with(Role::Pgbouncer)
                    .map(|h| h.name.to_string())
                    .collect()
            },
        })
    }

    /// Carries out a checked plan: pause, switch over, wait for the new leader behind HAProxy,
    /// resume (always, Ctrl-C included).
    pub async fn switch(&self, plan: &SwitchoverPlan) -> Result<SwitchoverRun, OpsError> {
        let mut run = SwitchoverRun {
            from: plan.leader.clone(),
            to: plan.candidate.clone(),
            ..SwitchoverRun::default()
        };
        if let Some(at) = &plan.at {
            let body = serde_json::json!({"leader": plan.leader, "candidate": plan.candidate, "scheduled_at": at});
            let answer = self.post(&plan.leader, "/switchover", &body.to_string(), 30).await?;
            self.rep.info(&format!(
                "switchover {} → {} scheduled by Patroni at {at}: {answer}; PgBouncer is NOT paused for a scheduled switchover (clients may see errors at that time)",
                plan.leader, plan.candidate
            ));
            run.scheduled = true;
            return Ok(run);
        }
        self.rep.info(&format!(
            "switchover {} → {}: pausing PgBouncer ({})",
            plan.leader,
            plan.candidate,
            plan.pause.join(", ")
        ));
        let paused_at = Instant::now();
        let body = async {
            self.pause().await?;
            self.rep.info(&format!(
                "PgBouncer paused in {:.1} s; POST /switchover",
                paused_at.elapsed().as_secs_f64()
            ));
            let started = Instant::now();
            let req = serde_json::json!({"leader": plan.leader, "candidate": plan.candidate});
            let answer = self.post(&plan.leader, "/switchover", &req.to_string(), 90).await?;
            self.rep.info(&format!("Patroni: {answer}"));
            let deadline = Instant::now() + SWITCH_WAIT;
            loop {
                let last = match self.members().await {
                    Ok(m)
                        if patroni::leader(&m) == Some(plan.candidate.as_str())
                            && patroni::settled(&m, &plan.candidate) =>
                    {
                        match self.routes_rw_to(&plan.candidate).await {
                            Ok(()) => break,
                            Err(e) => e,
                        }
                    }
                    Ok(m) => format!("leader {:?}", patroni::leader(&m)),
                    Err(e) => e.to_string(),
                };
                if Instant::now() > deadline {
                    return Err(OpsError::Day2(format!(
                        "{} is not the leader behind HAProxy after {} s ({last})",
                        plan.candidate,
                        SWITCH_WAIT.as_secs()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Ok::<f64, OpsError>(started.elapsed().as_secs_f64())
        };
        let outcome = tokio::select! {
            r = body => r,
            _ = tokio::signal::ctrl_c() => Err(OpsError::Interrupted),
        };
        let resumed = self.resume().await;
        run.paused_s = paused_at.elapsed().as_secs_f64();
        if resumed {
            self.rep
                .info(&format!("PgBouncer resumed; paused {:.1} s", run.paused_s));
        }
        run.switch_s = outcome?;
        if !resumed {
            return Err(OpsError::Drain("PgBouncer RESUME failed (see above)".into()));
        }
        self.rep.info(&format!(
            "{} leads and HAProxy routes RW to it ({:.1} s after the request); waiting for {} to stream",
            plan.candidate, run.switch_s, plan.leader
        ));
        self.wait_rejoined(&plan.leader).await?;
        Ok(run)
    }
}

/// Checks, and (with `yes`) switches over. Without `yes`: the plan only (`Ok((plan, None))`).
pub async fn switchover(
    inv: &Inventory,
    o: &SwitchoverOptions,
    rep: &Arc<dyn Reporter>,
) -> Result<(SwitchoverPlan, Option<SwitchoverRun>), OpsError> {
    let c = Cluster::open(inv, o.state.as_deref(), &o.connect, "switchover", rep).await?;
    let result = async {
        let plan = c.plan(o.to.as_deref(), o.at.as_deref()).await?;
        if !o.yes {
            return Ok((plan, None));
        }
        let run = c.switch(&plan).await?;
        Ok((plan, Some(run)))
    }
    .await;
    c.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(file: &str) -> Vec<patroni::Member> {
        let body = std::fs::read_to_string(format!("{}/tests/fixtures/patroni/{file}", env!("CARGO_MANIFEST_DIR")))
            .expect("fixture");
        patroni::parse_cluster(&body).expect("parses")
    }

    fn m(name: &str, role: &str, state: &str, lag: Option<u64>) -> patroni::Member {
        patroni::Member {
            name: name.into(),
            role: role.into(),
            state: state.into(),
            lag: lag.map(serde_json::Value::from),
            ..patroni::Member::default()
        }
    }

    #[test]
    fn a_named_streaming_replica_is_accepted_on_the_captured_cluster() {
        let ms = members("cluster.json");
        let leader = patroni::leader(&ms).expect("a leader").to_string();
        let replica = ms.iter().find(|m| !m.is_leader()).expect("a replica").name.clone();
        let (l, c, _) = check(&ms, Some(&replica), SyncMode::Off, 1 << 20).expect("accepted");
        assert_eq!((l.as_str(), c.as_str()), (leader.as_str(), replica.as_str()));
        let e = check(&ms, Some(&leader), SyncMode::Off, 1 << 20).unwrap_err();
        assert!(e.contains("already the leader"), "{e}");
    }

    #[test]
    fn refusals_name_why() {
        let healthy = vec![
            m("a", "leader", "running", None),
            m("b", "sync_standby", "streaming", Some(0)),
            m("c", "replica", "streaming", Some(0)),
        ];
        assert_eq!(check(&healthy, None, SyncMode::On, 100).unwrap().1, "b");
        let e = check(&healthy, Some("c"), SyncMode::On, 100).unwrap_err();
        assert!(e.contains("not a synchronous standby"), "{e}");
        assert_eq!(check(&healthy, Some("c"), SyncMode::Off, 100).unwrap().1, "c");
        let e = check(&healthy, Some("zz"), SyncMode::Off, 100).unwrap_err();
        assert!(e.contains("not a Patroni member"), "{e}");
        let lagging = vec![
            m("a", "leader", "running", None),
            m("b", "replica", "streaming", Some(5000)),
        ];
        let e = check(&lagging, None, SyncMode::Off, 100).unwrap_err();
        assert!(e.contains("lags 5000 bytes"), "{e}");
        let stopped = vec![m("a", "leader", "running", None), m("b", "replica", "stopped", None)];
        let e = check(&stopped, Some("b"), SyncMode::Off, 100).unwrap_err();
        assert!(e.contains("not a streaming replica"), "{e}");
        assert!(
            check(&stopped, None, SyncMode::Off, 100)
                .unwrap_err()
                .contains("no streaming replica")
        );
        let two = vec![m("a", "leader", "running", None), m("b", "leader", "running", None)];
        assert!(
            check(&two, None, SyncMode::Off, 100)
                .unwrap_err()
                .contains("no single leader")
        );
        let down = vec![
            m("a", "leader", "stopped", None),
            m("b", "replica", "streaming", Some(0)),
        ];
        assert!(
            check(&down, None, SyncMode::Off, 100)
                .unwrap_err()
                .contains("not running")
        );
        let no_sync = vec![
            m("a", "leader", "running", None),
            m("b", "replica", "streaming", Some(0)),
        ];
        assert!(
            check(&no_sync, None, SyncMode::On, 100)
                .unwrap_err()
                .contains("no streaming synchronous standby")
        );
    }
}
