//! `wait_for`: waits, on the host itself, until a TCP port listens, an HTTPS URL answers with
//! the expected status (with a client certificate), or a snippet exits 0. The loop runs on the
//! host in one command, so waiting costs one round trip.

use serde::{Deserialize, Serialize};
use std::time::Duration;

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
}

const LOOP: &str = r#"deadline=$(( $(date +%s) + $1 )); shift
while :; do
  out=$("$@" 2>&1) && exit 0
  [ "$(date +%s)" -ge "$deadline" ] && { printf '%s\n' "$out" | tail -n 3 >&2; exit 1; }
  sleep 1
done"#;

/// One pass of the wait's check (no loop): what the engine runs ahead in the facts probe.
pub(super) fn check_once(a: &WaitForArgs) -> Cmd {
    let (_, check) = check_of(a);
    match check.split_first() {
        Some((program, args)) => Cmd::new(program.clone()).args(args.iter().cloned()),
        None => Cmd::new("true"),
    }
}

/// Plans the wait: already true when its check passed ahead (`probed`), else the loop.
pub(super) fn plan(a: &WaitForArgs, probed: Option<bool>) -> Plan<Action> {
    let timeout = a.timeout_s.unwrap_or(60);
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
