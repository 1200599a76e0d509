//! `/usr/local/sbin/pgha-pgbouncer`, rendered per PgBouncer host: reload and drain without
//! failing a client. PgBouncer's RELOAD (when TLS settings change, and on every RELOAD with
//! server TLS before 1.24) and RECONNECT mark pools dirty, which closes server connections still
//! logging in; PgBouncer then caches that as a failed login and answers every client of the pool
//! "server login has been failing" for `server_login_retry` (seen on the lab under `pgbench -C`
//! during a CA rotation). PAUSE first waits for each server connection to be released and closes
//! it, so nothing is logging in when RELOAD runs; clients wait meanwhile instead of failing, and
//! RESUME opens new server connections (the drain: new TLS sessions, verified against the
//! current bundle).

use crate::inventory::Inventory;
use crate::render::paths;

/// Where the helper is installed.
pub const PATH: &str = "/usr/local/sbin/pgha-pgbouncer";

/// The script for a PgBouncer host.
pub fn script(inv: &Inventory) -> String {
    format!(
        r#"#!/bin/sh
# pgha-pgbouncer: installed by pgha; do not edit.
#   reload  PAUSE (server connections closed once released), RELOAD, RESUME
#   drain   PAUSE, RESUME: every server connection renewed, no client failed
set -u
admin() {{ runuser -u postgres -- psql -X -q -h {socket} -p {port} -d pgbouncer "$@"; }}
# Not reachable on the admin console (not running yet, or Debian's own config): plain reload.
if ! admin -c 'SHOW VERSION' > /dev/null 2>&1; then
  case "${{1:-}}" in
    reload) exec systemctl reload pgbouncer ;;
    drain) exit 0 ;;
  esac
fi
case "${{1:-}}" in
  reload) set -- -c PAUSE -c RELOAD ;;
  drain) set -- -c PAUSE ;;
  *) echo "usage: pgha-pgbouncer reload|drain" >&2; exit 2 ;;
esac
rc=0
# PAUSE waits for running transactions: bounded, and RESUME whatever happened.
timeout 60 runuser -u postgres -- psql -X -q -h {socket} -p {port} -d pgbouncer "$@" > /dev/null || rc=$?
admin -c RESUME > /dev/null 2>&1 || true
[ "$rc" -eq 0 ] || echo "pgha-pgbouncer: PAUSE did not complete within 60 s (a transaction still running?); nothing reloaded" >&2
exit "$rc"
"#,
        socket = paths::SOCKET_DIR,
        port = inv.pgbouncer.port.get(),
    )
}
