//! `/usr/local/sbin/pgha-pgbouncer`, rendered per PgBouncer host: reload and drain without
//! failing a client. PgBouncer's RELOAD (when TLS settings change, and on every RELOAD with
//! server TLS before 1.24) and RECONNECT mark pools dirty, which closes server connections still
//! logging in; PgBouncer then caches that as a failed login and answers every client of the pool
//! "server login has been failing" for `server_login_retry` (seen on the lab under `pgbench -C`
//! during a CA rotation). PAUSE first waits for each server connection to be released and closes
//! it, so nothing is logging in when RELOAD runs; clients wait meanwhile instead of failing, and
//! RESUME opens new server connections (the drain: new TLS sessions, verified against the
//! current bundle).

//!
//! The script itself is rendered from templates/pgbouncer/pgha-pgbouncer.j2 with every other
//! installed file (`render::files::TEMPLATES`; snapshot in tests/render.rs).

use crate::render::paths;

/// Where the helper is installed.
pub const PATH: &str = paths::PGBOUNCER_HELPER;
