//! `/usr/local/sbin/pgha-patroni`, rendered per PostgreSQL node: the deploy's reload and rolling
//! restart steps (docs/design.md §5). It never restarts Patroni itself (that stops PostgreSQL on an
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
    )
}
