//! `/usr/local/sbin/pgha-patroni`, rendered per PostgreSQL node: the deploy's reload and rolling
//! restart steps (docs/design.md §5). It never restarts Patroni itself (that stops PostgreSQL on an
//! unpaused primary): it asks Patroni's REST API, over mutual TLS and with the REST password
//! read from Patroni's config (passed to curl on stdin, never on a command line), to restart
//! PostgreSQL for `pending_restart` parameters — replicas first, the primary after a switchover.

use crate::inventory::{Host, Inventory};
use crate::render::{LeafKind, paths};

/// Where the helper is installed.
pub const PATH: &str = "/usr/local/sbin/pgha-patroni";

/// The Python that turns Patroni's REST credentials (from the config file, argv[1]) into the
/// one curl config line `header = "Authorization: Basic …"`. Only base64 reaches curl's config
/// parser, so no password can close the quoted string and add a curl option (the earlier
/// `user = "name:password"` let a password holding `"` and a newline add `output = …`: root's
/// curl then wrote a file of the attacker's choosing). No single quote inside (the helper
/// quotes it for sh).
pub const AUTH_PY: &str = r#"import base64, sys, yaml
a = yaml.safe_load(open(sys.argv[1]))["restapi"]["authentication"]
cred = ("%s:%s" % (a["username"], a["password"])).encode()
print("header = \"Authorization: Basic %s\"" % base64.b64encode(cred).decode("ascii"))"#;

/// The script for `host` (a PostgreSQL node).
pub fn script(inv: &Inventory, host: &Host, ca_bundle: &str, data_dir: &str) -> String {
    format!(
        r#"#!/bin/sh
# pgha-patroni: installed by pgha; do not edit. Reload and rolling-restart steps of the deploy:
#   reload      SIGHUP Patroni if it runs, then wait until it has rewritten PostgreSQL's config
#   pending     exit 0 when PostgreSQL has parameters waiting for a restart (pg_settings)
#   is-primary  exit 0 when this member is the primary
#   settled     exit 0 when the cluster (etcd) shows this member as the leader running, or a
#               replica streaming: what `pgha verify` and HAProxy's users see
#   restart     restart PostgreSQL (not Patroni) through Patroni, wait until it runs again
#   switchover  hand the primary role to a healthy (synchronous) replica, wait for it
#   dcs-in-sync exit 0 when Patroni's dynamic configuration matches bootstrap.dcs
#   dcs-apply   PATCH the dynamic configuration to match (cluster-wide: ttl, synchronous_mode,
#               and the parameters Patroni only takes from there, e.g. max_connections)
set -eu
NAME={name}
API=https://{name}:{port}
CA={ca}
CERT={cert}
KEY={key}
CONFIG={config}
DATA={data}
call() {{ curl -sS --max-time 10 --cacert "$CA" --cert "$CERT" --key "$KEY" "$@"; }}
member() {{ call "$API/patroni" | python3 -c "import json,sys; d=json.load(sys.stdin); $1"; }}
# The REST credentials go to curl as one config line holding only base64 (never the values
# themselves, which could close the quoted string and add options), on stdin (never argv).
authed() {{
  python3 -c '{auth_py}' "$CONFIG" \
    | call --config - --fail-with-body -H 'Content-Type: application/json' "$@"
}}
wait_until() {{
  i=0
  until "$@"; do
    i=$((i + 1))
    [ "$i" -lt 120 ] || {{ echo "pgha-patroni: gave up waiting for: $*" >&2; exit 1; }}
    sleep 1
  done
}}
running_not_pending() {{ member 'sys.exit(0 if d.get("state") in ("running", "streaming") and not d.get("pending_restart") else 1)' 2>/dev/null; }}
# After a switchover the old primary restarts as a replica: done once it streams again.
# Read from /cluster (what etcd holds, refreshed by each member's loop), so that every client
# of Patroni, HAProxy and `pgha verify` included, sees the settled cluster too.
not_primary() {{
  call "$API/cluster" 2>/dev/null | python3 -c '
import json, sys
me = [m for m in json.load(sys.stdin)["members"] if m["name"] == sys.argv[1]]
ok = me and me[0]["role"] in ("replica", "sync_standby") and (me[0].get("state") == "streaming" or (me[0].get("state") == "running" and isinstance(me[0].get("lag"), int)))
sys.exit(0 if ok else 1)' "$NAME"
}}
# The PATCH that brings Patroni's dynamic configuration (in etcd) to bootstrap.dcs of the config
# file — bootstrap.dcs is only read when the cluster is created. Empty when in sync.
dcs_patch() {{
  call "$API/config" | python3 -c '
import json, sys, yaml
want = yaml.safe_load(open(sys.argv[1]))["bootstrap"]["dcs"]
have = json.load(sys.stdin)
patch = {{}}
for key, value in want.items():
    if key != "postgresql":
        if have.get(key) != value:
            patch[key] = value
        continue
    have_pg = have.get("postgresql") or {{}}
    for pk, pv in value.items():
        if pk != "parameters":
            if have_pg.get(pk) != pv:
                patch.setdefault("postgresql", {{}})[pk] = pv
            continue
        hp = have_pg.get("parameters") or {{}}
        diff = {{k: v for k, v in (pv or {{}}).items() if str(hp.get(k)) != str(v)}}
        diff.update({{k: None for k in hp if k not in (pv or {{}})}})
        if diff:
            patch.setdefault("postgresql", {{}})["parameters"] = diff
print(json.dumps(patch) if patch else "")' "$CONFIG"
}}
newer_config() {{ [ "$DATA/postgresql.conf" -nt "$CONFIG" ] || [ "$DATA/pg_hba.conf" -nt "$CONFIG" ]; }}
# PostgreSQL knows at once which settings wait for a restart; Patroni notices on its next loop.
pg_pending() {{ [ "$(runuser -u postgres -- psql -XtAc 'select count(*) from pg_settings where pending_restart' 2>/dev/null)" -gt 0 ] 2>/dev/null; }}
patroni_pending() {{ member 'sys.exit(0 if d.get("pending_restart") else 1)' 2>/dev/null; }}
case "${{1:-}}" in
  reload)
    systemctl is-active --quiet patroni || exit 0
    changed=
    newer_config || changed=1
    systemctl reload patroni
    # Patroni applies a SIGHUP on its next loop; after a config change wait (bounded) until it
    # rewrote PostgreSQL's config.
    if [ -n "$changed" ]; then
      i=0
      until newer_config; do i=$((i + 1)); [ "$i" -lt 20 ] || break; sleep 1; done
      sleep 1
    fi
    # Certificates and keys keep their paths, so Patroni sees no parameter change: PostgreSQL
    # re-reads them on a reload (new connections get the new certificate).
    runuser -u postgres -- psql -XtAc 'select pg_reload_conf()' > /dev/null 2>&1 || true
    ;;
  pending) pg_pending ;;
  settled)
    call "$API/cluster" 2>/dev/null | python3 -c '
import json, sys
me = [m for m in json.load(sys.stdin)["members"] if m["name"] == sys.argv[1]]
m = me[0] if me else {{}}
leader = m.get("role") in ("leader", "master", "primary") and m.get("state") == "running"
replica = m.get("state") == "streaming" or (m.get("state") == "running" and isinstance(m.get("lag"), int))
sys.exit(0 if leader or replica else 1)' "$NAME"
    ;;
  is-primary) member 'sys.exit(0 if d.get("role") in ("primary", "master") else 1)' ;;
  restart)
    # A switchover restarts the old primary as a replica, which may already have applied them.
    pg_pending || exit 0
    wait_until patroni_pending
    # Synchronous: Patroni answers once PostgreSQL is back (a checkpoint can take a while).
    authed --max-time 300 -X POST -d '{{"restart_pending": true}}' "$API/restart"
    echo
    wait_until running_not_pending
    ;;
  switchover)
    # With synchronous replication only the synchronous standby may take over: wait until one
    # streams (the replicas were just restarted), else any streaming replica.
    candidate() {{
      cand=$(call "$API/cluster" | python3 -c '
import json, sys
members = [m for m in json.load(sys.stdin)["members"] if m["name"] != sys.argv[1]]
sync = [m for m in members if m["role"] == "sync_standby"]
pool = sync if sync else [m for m in members if m["role"] == "replica"]
ok = [m for m in pool if m.get("state") in ("running", "streaming")]
print(ok[0]["name"] if ok else "")' "$NAME")
      [ -n "$cand" ]
    }}
    # Patroni answers 412 while the synchronous standby it records is settling (it was just
    # restarted): pick again and retry, bounded.
    i=0
    until candidate && authed --max-time 120 -X POST -d "{{\"leader\": \"$NAME\", \"candidate\": \"$cand\"}}" "$API/switchover" 2>/dev/null; do
      i=$((i + 1))
      [ "$i" -lt 60 ] || {{ echo "pgha-patroni: Patroni refused every switchover of $NAME for 2 minutes (no healthy synchronous standby?); run patronictl switchover by hand" >&2; exit 1; }}
      sleep 2
    done
    echo
    wait_until not_primary
    ;;
  dcs-in-sync)
    [ -z "$(dcs_patch)" ]
    ;;
  dcs-apply)
    patch=$(dcs_patch)
    [ -n "$patch" ] || exit 0
    body=$(mktemp)
    trap 'rm -f "$body"' EXIT
    printf '%s' "$patch" > "$body"
    authed -X PATCH --data-binary "@$body" "$API/config" > /dev/null
    # Members apply the new dynamic configuration on their next loop; parameters that need a
    # restart then show as pending, which the rolling-restart plays act on.
    case "$patch" in
      *'"parameters"'*)
        i=0
        until call "$API/cluster" | python3 -c 'import json,sys; m=json.load(sys.stdin)["members"]; sys.exit(0 if all(x.get("pending_restart") for x in m) else 1)'; do
          i=$((i + 1)); [ "$i" -lt 30 ] || break; sleep 1
        done
        ;;
    esac
    ;;
  *) echo "usage: pgha-patroni reload|pending|is-primary|settled|restart|switchover|dcs-in-sync|dcs-apply" >&2; exit 2 ;;
esac
"#,
        name = host.name,
        port = inv.patroni.rest_port,
        ca = ca_bundle,
        cert = paths::leaf_cert(LeafKind::PatroniClient),
        key = paths::leaf_key(LeafKind::PatroniClient),
        config = paths::PATRONI_CONFIG,
        data = data_dir,
        auth_py = AUTH_PY,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "restapi:\n  authentication:\n    username: patroni\n    password: \"x\\\"\\noutput = /tmp/pgha-pwned\\nurl = \\\"file:///etc/shadow\"\n";

    /// The snippet before the fix, kept to show the injection it allowed.
    const OLD_PY: &str = r#"import sys,yaml; a=yaml.safe_load(open(sys.argv[1]))["restapi"]["authentication"]; print("user = \"%s:%s\"" % (a["username"], a["password"]))"#;

    #[allow(clippy::disallowed_methods)]
    fn run_py(code: &str) -> String {
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, HOSTILE).expect("write");
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(code)
            .arg(&cfg)
            .output()
            .expect("python3 runs (apt-get install python3-yaml)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8")
    }

    #[test]
    fn a_crafted_password_cannot_add_curl_options() {
        use base64::Engine;
        // Before: the password's quote and newlines became curl config lines of their own.
        let old = run_py(OLD_PY);
        assert!(old.lines().any(|l| l.starts_with("output = ")), "{old}");
        // Now: one line, base64 only, decoding to exactly the credential.
        let new = run_py(AUTH_PY);
        let lines: Vec<&str> = new.lines().collect();
        assert_eq!(lines.len(), 1, "{new}");
        let b64 = lines[0]
            .strip_prefix("header = \"Authorization: Basic ")
            .and_then(|r| r.strip_suffix('"'))
            .unwrap_or_else(|| panic!("unexpected line {new}"));
        assert!(b64.chars().all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c)));
        let decoded = base64::engine::general_purpose::STANDARD.decode(b64).expect("base64");
        assert_eq!(
            String::from_utf8(decoded).expect("utf-8"),
            "patroni:x\"\noutput = /tmp/pgha-pwned\nurl = \"file:///etc/shadow"
        );
        assert!(!AUTH_PY.contains('\''), "the helper single-quotes the snippet for sh");
    }
}
