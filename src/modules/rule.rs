//! Rules judged in Rust on what a URL answers — the cluster rules of `facts`, never a shell or
//! Python copy of one — for `wait_for`'s `rule` and `command`'s `unless_rule`. The fetch runs on
//! the host (inside the one facts probe when it runs ahead); the judgement runs here.

use serde::{Deserialize, Serialize};

use super::{ModuleError, Rendered};
use crate::facts::patroni;
use crate::transport::Cmd;

/// A rule a playbook names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Rule {
    /// Patroni's `/cluster` shows this member settled: the leader running, or a replica
    /// streaming (`facts::patroni::settled`).
    PatroniSettled(String),
    /// Patroni's `/config` (the DCS) holds what `bootstrap.dcs` of the rendered Patroni config
    /// at this path says (`facts::patroni::dcs_changes` finds nothing).
    PatroniDcsMatches(String),
    /// The rolling restart has nothing to do on this member in this turn: it has no restart
    /// pending, or it is not of the turn's kind (`facts::patroni::restart_due`).
    PatroniRestartNotDue(RestartTurn),
}

/// A turn of the rolling restart, and the member it is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartTurn {
    /// The member (the host's inventory name).
    pub member: String,
    /// Which members this turn restarts.
    pub turn: patroni::Turn,
}

/// A rule made ready to judge (what it compares with taken from the rendered files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judge {
    /// See [`Rule::PatroniSettled`].
    Settled(String),
    /// See [`Rule::PatroniDcsMatches`]: the wanted `bootstrap.dcs`.
    DcsMatches(serde_json::Value),
    /// See [`Rule::PatroniRestartNotDue`].
    RestartNotDue(RestartTurn),
}

impl Rule {
    /// The rule with its reference read from `rendered`.
    pub fn resolve(&self, rendered: &Rendered) -> Result<Judge, ModuleError> {
        match self {
            Rule::PatroniSettled(member) => Ok(Judge::Settled(member.clone())),
            Rule::PatroniDcsMatches(path) => {
                let file = rendered.get(path).ok_or_else(|| {
                    ModuleError::Invalid(format!("pgha renders no Patroni config at {path} for this host"))
                })?;
                patroni::wanted_dcs(&file.content)
                    .map(Judge::DcsMatches)
                    .map_err(ModuleError::Invalid)
            }
            Rule::PatroniRestartNotDue(t) => Ok(Judge::RestartNotDue(t.clone())),
        }
    }

    /// What it awaits or checks, for messages.
    pub fn describe(&self) -> String {
        match self {
            Rule::PatroniSettled(member) => format!("Patroni to show {member} settled"),
            Rule::PatroniDcsMatches(path) => format!("Patroni's dynamic configuration to match {path}"),
            Rule::PatroniRestartNotDue(t) => format!("no {} restart due on {}", t.turn.as_str(), t.member),
        }
    }
}

impl Judge {
    /// Whether the rule holds on `body`.
    pub fn holds(&self, body: &str) -> bool {
        match self {
            Judge::Settled(member) => patroni::parse_cluster(body)
                .map(|members| patroni::settled(&members, member))
                .unwrap_or(false),
            Judge::DcsMatches(want) => serde_json::from_str::<serde_json::Value>(body)
                .map(|have| patroni::dcs_changes(want, &have).is_empty())
                .unwrap_or(false),
            // An unreadable `/cluster` restarts nothing (as before: the rolling restart needs
            // Patroni's view, and the earlier plays already waited for every member to settle).
            Judge::RestartNotDue(t) => patroni::parse_cluster(body)
                .map(|members| !patroni::restart_due(&members, &t.member, t.turn))
                .unwrap_or(true),
        }
    }

    /// Whether the rule holds when its URL did not answer (the fetch failed: Patroni busy,
    /// just resumed, or reloading its certificate). Only "no restart due" does: a rolling
    /// restart turn never starts on a guess — seen on the lab, a Patroni resumed after a
    /// SIGSTOP timed the fetch out, and the primary's turn ran on a replica (a switchover
    /// Patroni refused for two minutes); during a rotation the same guess switched the real
    /// primary over, for nothing. The next deploy finds a restart that is really due.
    pub fn holds_unanswered(&self) -> bool {
        matches!(self, Judge::RestartNotDue(_))
    }
}

/// An HTTPS URL fetched on the host with curl (mutual TLS when a certificate is given).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleCheck {
    /// The URL.
    pub url: String,
    /// CA bundle.
    pub ca: Option<String>,
    /// Client certificate.
    pub cert: Option<String>,
    /// Client key.
    pub key: Option<String>,
    /// The rule its answer must satisfy.
    pub rule: Rule,
}

/// The fetch of `url`: its body on stdout, failing on an HTTP error.
pub fn fetch(url: &str, ca: Option<&String>, cert: Option<&String>, key: Option<&String>) -> Cmd {
    let mut c = Cmd::new("curl").args(["-sS", "--fail", "--max-time", "5"]);
    for (flag, v) in [("--cacert", ca), ("--cert", cert), ("--key", key)] {
        if let Some(v) = v {
            c = c.arg(flag).arg(v.clone());
        }
    }
    c.arg(url.to_string())
}

impl RuleCheck {
    /// Its fetch, retried twice a second apart (a `command`'s guard is asked once, unlike a
    /// `wait_for` that polls).
    pub fn fetch(&self) -> Cmd {
        fetch(&self.url, self.ca.as_ref(), self.cert.as_ref(), self.key.as_ref()).args([
            "--retry",
            "2",
            "--retry-delay",
            "1",
            "--retry-all-errors",
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::Managed;

    #[test]
    fn the_dcs_rule_compares_with_the_rendered_bootstrap_dcs() {
        let mut r = Rendered::new();
        r.insert(
            "/etc/patroni/config.yml".into(),
            Managed {
                content: b"scope: x\nbootstrap:\n  dcs:\n    ttl: 30\n    postgresql:\n      parameters:\n        max_connections: 100\n".to_vec(),
                owner: "root".into(),
                group: "postgres".into(),
                mode: 0o640,
                secret: true,
                unit: None,
            },
        );
        let j = Rule::PatroniDcsMatches("/etc/patroni/config.yml".into())
            .resolve(&r)
            .expect("resolves");
        assert!(j.holds(r#"{"ttl": 30, "loop_wait": 10, "postgresql": {"parameters": {"max_connections": "100"}}}"#));
        assert!(!j.holds(r#"{"ttl": 30, "postgresql": {"parameters": {"max_connections": 200}}}"#));
        assert!(
            !j.holds(r#"{"ttl": 30, "postgresql": {"parameters": {"max_connections": 100, "work_mem": "4MB"}}}"#),
            "an unwanted parameter"
        );
        assert!(!j.holds("curl: (7) refused"));
        assert!(Rule::PatroniDcsMatches("/nope".into()).resolve(&r).is_err());
    }

    #[test]
    fn the_restart_rule_reads_the_member_in_patronis_cluster_view() {
        let yaml = "patroni_restart_not_due: { member: b, turn: replica }";
        let rule: Rule = serde_saphyr::from_str(yaml).expect("parses");
        let j = rule.resolve(&Rendered::new()).expect("resolves");
        let cluster = |b_role: &str, pending: bool| {
            format!(
                r#"{{"members": [{{"name": "a", "role": "leader", "state": "running", "pending_restart": true}}, {{"name": "b", "role": "{b_role}", "state": "streaming", "pending_restart": {pending}}}]}}"#
            )
        };
        assert!(
            !j.holds(&cluster("replica", true)),
            "a replica with a pending restart: due"
        );
        assert!(j.holds(&cluster("replica", false)), "nothing pending");
        assert!(j.holds(&cluster("leader", true)), "not the replicas' turn");
        assert!(j.holds("curl: (7) refused"), "unreadable: nothing restarted");
        let primary: Rule =
            serde_saphyr::from_str("patroni_restart_not_due: { member: a, turn: primary }").expect("parses");
        let j = primary.resolve(&Rendered::new()).expect("resolves");
        assert!(!j.holds(&cluster("replica", false)), "the leader's turn");
    }

    #[test]
    fn only_the_restart_rule_holds_when_the_url_does_not_answer() {
        use crate::modules::command::{CommandArgs, verdict};
        let guarded = |rule: &str| CommandArgs {
            argv: None,
            sh: Some("pgha-patroni switchover".into()),
            creates: None,
            unless: None,
            unless_rule: Some(RuleCheck {
                url: "https://a:8008/cluster".into(),
                ca: None,
                cert: None,
                key: None,
                rule: serde_saphyr::from_str(rule).expect("parses"),
            }),
            timeout_s: None,
        };
        let mut r = Rendered::new();
        r.insert(
            "/c.yml".into(),
            Managed {
                content: b"bootstrap:\n  dcs:\n    ttl: 30\n".to_vec(),
                owner: "root".into(),
                group: "postgres".into(),
                mode: 0o640,
                secret: false,
                unit: None,
            },
        );
        let restart = guarded("patroni_restart_not_due: { member: a, turn: primary }");
        assert!(verdict(&restart, &r, false, ""), "a failed fetch starts no switchover");
        let dcs = guarded("patroni_dcs_matches: /c.yml");
        assert!(
            !verdict(&dcs, &r, false, ""),
            "a failed fetch does not prove the DCS matches"
        );
        let argv = restart.unless_rule.as_ref().expect("a rule").fetch().argv().join(" ");
        assert!(
            argv.contains("--retry 2") && argv.contains("--retry-all-errors"),
            "{argv}"
        );
    }
}
