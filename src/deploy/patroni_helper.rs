//! `/usr/local/sbin/pgha-patroni`, rendered per PostgreSQL node: the deploy's reload and rolling
//! restart steps (DESIGN.md §5). It never restarts Patroni itself (that stops PostgreSQL on an
//! unpaused primary): it asks Patroni's REST API, over mutual TLS and with the REST password
//! read from Patroni's config (passed to curl on stdin, never on a command line), to restart
//! PostgreSQL for `pending_restart` parameters — replicas first, the primary after a switchover.

use crate::inventory::{Host, Inventory};
use crate::render::{LeafKind, paths};

/// Where the helper is installed.
pub const PATH: &str = "/usr/local/sbin/pgha-patroni";

/// The script for `host` (a PostgreSQL node).
pub fn script(inv: &Inventory, host: &Host, ca_bundle: &str, data_dir: &str) -> String {
    format!(
        r#"#!/bin/sh
# pgha-patroni: installed by pgha; do not edit. Reload and rolling-restart steps of the deploy:
#   reload      SIGHUP Patroni if it runs, then wait until it has rewritten PostgreSQL's config
#   pending     exit 0 when this member has parameters waiting for a restart
#   is-primary  exit 0 when this member is the primary
#   restart     restart PostgreSQL (not Patroni) through Patroni, wait until it runs again
#   switchover  hand the primary role to a healthy (synchronous) replica, wait for it
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
authed() {{
  python3 -c 'import sys,yaml; a=yaml.safe_load(open(sys.argv[1]))["restapi"]["authentication"]; print("user = \"%s:%s\"" % (a["username"], a["password"]))' "$CONFIG" \
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
not_primary() {{ member 'sys.exit(0 if d.get("role") not in ("primary", "master") and d.get("state") in ("running", "streaming") else 1)' 2>/dev/null; }}
newer_config() {{ [ "$DATA/postgresql.conf" -nt "$CONFIG" ] || [ "$DATA/pg_hba.conf" -nt "$CONFIG" ]; }}
case "${{1:-}}" in
  reload)
    systemctl is-active --quiet patroni || exit 0
    systemctl reload patroni
    # Patroni applies a SIGHUP on its next loop; wait (bounded) until it rewrote the config.
    i=0
    until newer_config; do i=$((i + 1)); [ "$i" -lt 20 ] || exit 0; sleep 1; done
    ;;
  pending) member 'sys.exit(0 if d.get("pending_restart") else 1)' ;;
  is-primary) member 'sys.exit(0 if d.get("role") in ("primary", "master") else 1)' ;;
  restart)
    authed -X POST -d '{{"restart_pending": true}}' "$API/restart"
    echo
    wait_until running_not_pending
    ;;
  switchover)
    cand=$(call "$API/cluster" | python3 -c '
import json, sys
members = json.load(sys.stdin)["members"]
ok = [m for m in members if m["name"] != sys.argv[1] and m.get("state") in ("running", "streaming") and m["role"] in ("sync_standby", "replica")]
ok.sort(key=lambda m: m["role"] != "sync_standby")
print(ok[0]["name"] if ok else "")' "$NAME")
    [ -n "$cand" ] || {{ echo "pgha-patroni: no healthy replica to switch over to; restart $NAME by hand in a maintenance window" >&2; exit 1; }}
    authed -X POST -d "{{\"leader\": \"$NAME\", \"candidate\": \"$cand\"}}" "$API/switchover"
    echo
    wait_until not_primary
    ;;
  *) echo "usage: pgha-patroni reload|pending|is-primary|restart|switchover" >&2; exit 2 ;;
esac
"#,
        name = host.name,
        port = inv.patroni.rest_port,
        ca = ca_bundle,
        cert = paths::leaf_cert(LeafKind::PatroniClient),
        key = paths::leaf_key(LeafKind::PatroniClient),
        config = paths::PATRONI_CONFIG,
        data = data_dir,
    )
}
