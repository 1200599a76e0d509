//! `wait_for`: waits, on the host itself, until a TCP port listens, an HTTPS URL answers with
//! the expected status (with a client certificate), or a snippet exits 0. The loop runs on the
//! host in one command, so waiting costs one round trip. With a `rule`, the URL's answer is
//! judged by a cluster rule written once in Rust (`facts`), so the loop runs here instead: one
//! fetch per second until the rule holds.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::facts::patroni;
use crate::plan::Plan;
use crate::transport::{Cmd, Transport};

use super::{Action, Applied, ModuleError};

/// `wait_for:` wait until a port listens, an HTTPS endpoint answers, or a command succeeds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitForArgs {
    /// A TCP port that must be listening on the host.
    pub port: Option<String>,
    /// A URL fetched with curl on the host.
    pub url: Option<String>,
    /// Expected HTTP status (default 200).
    pub status: Option<u16>,
    /// CA bundle for the URL.
    pub ca: Option<String>,
    /// Client certificate for the URL.
    pub cert: Option<String>,
    /// Client key for the URL.
    pub key: Option<String>,
    /// Or a sh snippet that must exit 0.
    pub sh: Option<String>,
    /// Seconds before giving up (default 60).
    pub timeout_s: Option<u64>,
    /// Only wait when an earlier task of the play changed something on this host.
    pub if_changed: Option<bool>,
    /// Judge the URL's answer by this rule instead of its status.
    pub rule: Option<WaitRule>,
}

/// A cluster rule on what a URL answers (the rules of `facts`, never a shell copy).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum WaitRule {
    /// Patroni's `/cluster` shows this member settled: the leader running, or a replica
    /// streaming (`facts::patroni::settled`).
    PatroniSettled(String),
}

impl WaitRule {
    /// Whether the rule holds on `body`.
    pub fn holds(&self, body: &str) -> bool {
        match self {
            WaitRule::PatroniSettled(member) => patroni::parse_cluster(body)
                .map(|members| patroni::settled(&members, member))
                .unwrap_or(false),
        }
    }

    fn describe(&self) -> String {
        match self {
            WaitRule::PatroniSettled(member) => format!("Patroni to show {member} settled"),
        }
    }
}

/// Whether a check of `a` that exited `passed` and printed `out` means the wait is over.
pub(super) fn verdict(a: &WaitForArgs, passed: bool, out: &str) -> bool {
    match &a.rule {
        Some(rule) => passed && rule.holds(out),
        None => passed,
    }
}

/// The fetch of a `rule`'s URL: its body on stdout, failing on an HTTP error.
fn fetch_of(a: &WaitForArgs, url: &str) -> Cmd {
    let mut c = Cmd::new("curl").args(["-sS", "--fail", "--max-time", "5"]);
    for (flag, v) in [("--cacert", &a.ca), ("--cert", &a.cert), ("--key", &a.key)] {
        if let Some(v) = v {
            c = c.arg(flag).arg(v.clone());
        }
    }
    c.arg(url.to_string())
}

const LOOP: &str = r#"deadline=$(( $(date +%s) + $1 )); shift
while :; do
  out=$("$@" 2>&1) && exit 0
  [ "$(date +%s)" -ge "$deadline" ] && { printf '%s\n' "$out" | tail -n 3 >&2; exit 1; }
  sleep 1
done"#;

/// One pass of the wait's check (no loop): what the engine runs ahead in the facts probe.
pub(super) fn check_once(a: &WaitForArgs) -> Cmd {
    if let (Some(_), Some(url)) = (&a.rule, &a.url) {
        return fetch_of(a, url);
    }
    let (_, check) = check_of(a);
    match check.split_first() {
        Some((program, args)) => Cmd::new(program.clone()).args(args.iter().cloned()),
        None => Cmd::new("true"),
    }
}

/// Plans the wait: already true when its check passed ahead (`probed`), else the loop.
pub(super) fn plan(a: &WaitForArgs, probed: Option<bool>) -> Plan<Action> {
    let timeout = a.timeout_s.unwrap_or(60);
    if let (Some(rule), Some(url)) = (&a.rule, &a.url) {
        let what = rule.describe();
        if probed == Some(true) {
            return Plan::Satisfied {
                why: format!("{what}: already true"),
            };
        }
        return Plan::Check {
            what: format!("wait for {what}"),
            action: Action::WaitRule {
                fetch: fetch_of(a, url),
                rule: rule.clone(),
                what,
                timeout: Duration::from_secs(timeout),
            },
        };
    }
    let (what, check) = check_of(a);
    if probed == Some(true) {
        return Plan::Satisfied {
            why: format!("{what}: already true"),
        };
    }
    let cmd = Cmd::script(LOOP, std::iter::once(timeout.to_string()).chain(check));
    Plan::Check {
        what: format!("wait for {what}"),
        action: Action::Wait {
            cmd,
            what,
            timeout: Duration::from_secs(timeout),
        },
    }
}

/// What is awaited (for messages) and the argv of one check.
fn check_of(a: &WaitForArgs) -> (String, Vec<String>) {
    if let Some(port) = &a.port {
        (
            format!("port {port} to listen"),
            vec![
                "sh".into(),
                "-c".into(),
                "ss -ltnH \"sport = :$1\" | grep -q .".to_string(),
                "pgha".into(),
                port.clone(),
            ],
        )
    } else if let Some(url) = &a.url {
        let status = a.status.unwrap_or(200).to_string();
        let mut curl = String::from("code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5");
        let mut args = vec![url.clone(), status.clone()];
        for (flag, v) in [("--cacert", &a.ca), ("--cert", &a.cert), ("--key", &a.key)] {
            if let Some(v) = v {
                args.push(v.clone());
                curl.push_str(&format!(" {flag} \"${}\"", args.len()));
            }
        }
        curl.push_str(" \"$1\"); [ \"$code\" = \"$2\" ] || { echo \"HTTP $code\"; exit 1; }");
        let mut check = vec!["sh".into(), "-c".into(), curl, "pgha".into()];
        check.extend(args);
        (format!("{url} to answer {status}"), check)
    } else {
        let sh = a.sh.clone().unwrap_or_else(|| "true".into());
        (
            format!("`{}`", sh.lines().next().unwrap_or("")),
            vec!["sh".into(), "-c".into(), sh],
        )
    }
}

pub(super) async fn apply(cmd: &Cmd, what: &str, timeout: Duration, t: &dyn Transport) -> Result<Applied, ModuleError> {
    let out = t.exec(cmd, None, timeout + Duration::from_secs(15)).await?;
    if out.success() {
        Ok(Applied {
            changed: false,
            file_update: None,
            stale: false,
        })
    } else {
        Err(ModuleError::WaitTimeout {
            what: what.to_string(),
            secs: timeout.as_secs(),
            detail: out.stderr_tail(3),
        })
    }
}

/// Waits here until `rule` holds on what `fetch` prints (one try per second).
pub(super) async fn apply_rule(
    fetch: &Cmd,
    rule: &WaitRule,
    what: &str,
    timeout: Duration,
    t: &dyn Transport,
) -> Result<Applied, ModuleError> {
    let start = std::time::Instant::now();
    loop {
        let out = t.exec(fetch, None, Duration::from_secs(15)).await?;
        if out.success() && rule.holds(&out.stdout_text()) {
            return Ok(Applied::default());
        }
        if start.elapsed() >= timeout {
            let detail = if out.success() { out.stdout_text().chars().take(300).collect() } else { out.stderr_tail(3) };
            return Err(ModuleError::WaitTimeout {
                what: what.to_string(),
                secs: timeout.as_secs(),
                detail,
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settled_wait() -> WaitForArgs {
        WaitForArgs {
            port: None,
            url: Some("https://pg1:8008/cluster".into()),
            status: None,
            ca: Some("/ca.pem".into()),
            cert: None,
            key: None,
            sh: None,
            timeout_s: Some(5),
            if_changed: None,
            rule: Some(WaitRule::PatroniSettled("pg2".into())),
        }
    }

    #[test]
    fn a_rule_judges_the_answer_not_the_status() {
        let a = settled_wait();
        let streaming = r#"{"members": [{"name": "pg1", "role": "leader", "state": "running"}, {"name": "pg2", "role": "replica", "state": "streaming", "lag": 0}]}"#;
        let starting = r#"{"members": [{"name": "pg1", "role": "leader", "state": "running"}, {"name": "pg2", "role": "replica", "state": "starting"}]}"#;
        assert!(verdict(&a, true, streaming));
        assert!(!verdict(&a, true, starting));
        assert!(!verdict(&a, false, streaming), "a failed fetch never passes");
        assert!(!verdict(&a, true, "<html>"), "an unreadable answer does not pass");
        assert_eq!(
            check_once(&a).argv(),
            ["curl", "-sS", "--fail", "--max-time", "5", "--cacert", "/ca.pem", "https://pg1:8008/cluster"]
        );
        assert!(matches!(plan(&a, Some(true)), Plan::Satisfied { .. }));
        assert!(matches!(plan(&a, Some(false)), Plan::Check { action: Action::WaitRule { .. }, .. }));
    }
}
