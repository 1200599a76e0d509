//! `wait_for`: waits, on the host itself, until a TCP port listens, an HTTPS URL answers with
//! the expected status (with a client certificate), or a snippet exits 0. The loop runs on the
//! host in one command, so waiting costs one round trip. With a `rule`, the URL's answer is
//! judged by a cluster rule written once in Rust (`facts`), so the loop runs here instead: one
//! fetch per second until the rule holds.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::plan::Plan;
use crate::transport::{Cmd, Transport};

use super::rule::{self, Judge, Rule};
use super::{Action, Applied, ModuleError, Rendered};

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
    /// Judge the URL's answer by this rule (see `modules::rule`) instead of its status.
    pub rule: Option<Rule>,
}

/// Whether a check of `a` that exited `passed` and printed `out` means the wait is over.
pub(super) fn verdict(a: &WaitForArgs, rendered: &Rendered, passed: bool, out: &str) -> bool {
    match &a.rule {
        Some(rule) => passed && rule.resolve(rendered).is_ok_and(|j| j.holds(out)),
        None => passed,
    }
}

/// The fetch of a `rule`'s URL: its body on stdout, failing on an HTTP error.
fn fetch_of(a: &WaitForArgs, url: &str) -> Cmd {
    rule::fetch(url, a.ca.as_ref(), a.cert.as_ref(), a.key.as_ref())
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
pub(super) fn plan(a: &WaitForArgs, rendered: &Rendered, probed: Option<bool>) -> Result<Plan<Action>, ModuleError> {
    let timeout = a.timeout_s.unwrap_or(60);
    if let (Some(rule), Some(url)) = (&a.rule, &a.url) {
        let what = rule.describe();
        if probed == Some(true) {
            return Ok(Plan::Satisfied {
                why: format!("{what}: already true"),
            });
        }
        return Ok(Plan::Check {
            what: format!("wait for {what}"),
            action: Action::WaitRule {
                fetch: fetch_of(a, url),
                judge: rule.resolve(rendered)?,
                what,
                timeout: Duration::from_secs(timeout),
            },
        });
    }
    let (what, check) = check_of(a);
    if probed == Some(true) {
        return Ok(Plan::Satisfied {
            why: format!("{what}: already true"),
        });
    }
    let cmd = Cmd::script(LOOP, std::iter::once(timeout.to_string()).chain(check));
    Ok(Plan::Check {
        what: format!("wait for {what}"),
        action: Action::Wait {
            cmd,
            what,
            timeout: Duration::from_secs(timeout),
        },
    })
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

/// Waits here until `judge` holds on what `fetch` prints (one try per second).
pub(super) async fn apply_rule(
    fetch: &Cmd,
    judge: &Judge,
    what: &str,
    timeout: Duration,
    t: &dyn Transport,
) -> Result<Applied, ModuleError> {
    let start = std::time::Instant::now();
    loop {
        let out = t.exec(fetch, None, Duration::from_secs(15)).await?;
        if out.success() && judge.holds(&out.stdout_text()) {
            return Ok(Applied::default());
        }
        if start.elapsed() >= timeout {
            let detail = if out.success() {
                out.stdout_text().chars().take(300).collect()
            } else {
                out.stderr_tail(3)
            };
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
            rule: Some(Rule::PatroniSettled("pg2".into())),
        }
    }

    #[test]
    fn a_rule_judges_the_answer_not_the_status() {
        let a = settled_wait();
        let streaming = r#"{"members": [{"name": "pg1", "role": "leader", "state": "running"}, {"name": "pg2", "role": "replica", "state": "streaming", "lag": 0}]}"#;
        let starting = r#"{"members": [{"name": "pg1", "role": "leader", "state": "running"}, {"name": "pg2", "role": "replica", "state": "starting"}]}"#;
        let r = Rendered::new();
        assert!(verdict(&a, &r, true, streaming));
        assert!(!verdict(&a, &r, true, starting));
        assert!(!verdict(&a, &r, false, streaming), "a failed fetch never passes");
        assert!(!verdict(&a, &r, true, "<html>"), "an unreadable answer does not pass");
        assert_eq!(
            check_once(&a).argv(),
            [
                "curl",
                "-sS",
                "--fail",
                "--max-time",
                "5",
                "--cacert",
                "/ca.pem",
                "https://pg1:8008/cluster"
            ]
        );
        assert!(matches!(plan(&a, &r, Some(true)), Ok(Plan::Satisfied { .. })));
        assert!(matches!(
            plan(&a, &r, Some(false)),
            Ok(Plan::Check {
                action: Action::WaitRule { .. },
                ..
            })
        ));
    }
}
