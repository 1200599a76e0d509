//! The SQL the deploy runs once on the primary (as `postgres`, over the local socket): the
//! PgBouncer auth user, the `pgha_verify` role, the inventory's application roles and
//! databases, and in each database the `pgha.user_lookup` function PgBouncer's `auth_query`
//! calls plus the `pgha_verify` schema. Idempotent: re-running it changes nothing. Passwords
//! travel as SCRAM verifiers, never in clear.

use crate::inventory::Inventory;

/// `'text'` with quotes doubled.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `"ident"` with quotes doubled (inventory names are already `[a-z_][a-z0-9_]*`).
fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The roles PgBouncer serves, so the only ones whose SCRAM verifier `pgha.user_lookup` may
/// return: the inventory's application users and `pgha_verify` (verify and drill connect
/// through PgBouncer). Never replicator, rewind_user, the superuser, pgbouncer_auth itself or
/// any role created outside pgha: PgBouncer's host must not be able to read their verifiers
/// (a verifier is enough to log in as the role through PgBouncer's SCRAM pass-through, and
/// to attack its password offline).
pub fn served_roles<'a>(inv: &'a Inventory, verify: &'a str) -> Vec<&'a str> {
    inv.postgres
        .users
        .iter()
        .map(|u| u.name.as_str())
        .chain(std::iter::once(verify))
        .collect()
}

/// `pgha.user_lookup`: the verifier of `i_username` if it is one of `served` (and a login,
/// non-superuser role still valid), otherwise no row, which PgBouncer treats as an unknown user.
fn lookup_function(served: &[&str]) -> String {
    let list = served.iter().map(|n| literal(n)).collect::<Vec<_>>().join(", ");
    format!(
        "CREATE OR REPLACE FUNCTION pgha.user_lookup(i_username text, OUT uname text, OUT phash text)\n\
         RETURNS record LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$\n\
         \x20 SELECT rolname::text, rolpassword::text FROM pg_catalog.pg_authid\n\
         \x20 WHERE rolname = i_username AND rolcanlogin AND NOT rolsuper\n\
         \x20   AND rolname = ANY (ARRAY[{list}]::text[])\n\
         \x20   AND (rolvaliduntil IS NULL OR rolvaliduntil > now())\n\
         $$;\n"
    )
}

/// A login role and its SCRAM verifier.
pub struct Role<'a> {
    /// Role name.
    pub name: &'a str,
    /// `SCRAM-SHA-256$…` verifier.
    pub verifier: &'a str,
}

/// The whole script, for psql `-f` (uses `\gexec` and `\connect`).
pub fn bootstrap(inv: &Inventory, auth: Role<'_>, verify: Role<'_>, app_verifiers: &[(String, String)]) -> String {
    let mut s = String::from("-- Rendered by pgha: roles, databases and PgBouncer's auth function.\n");
    s.push_str("\\set ON_ERROR_STOP on\nSET client_min_messages = warning;\n");
    let mut roles: Vec<(String, String, Vec<String>)> = vec![
        (auth.name.to_string(), auth.verifier.to_string(), vec![]),
        (verify.name.to_string(), verify.verifier.to_string(), vec![]),
    ];
    for u in &inv.postgres.users {
        let verifier = app_verifiers
            .iter()
            .find(|(n, _)| n == &u.name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        roles.push((u.name.clone(), verifier, u.options.clone()));
    }
    for (name, verifier, options) in &roles {
        s.push_str(&format!(
            "SELECT format('CREATE ROLE %I LOGIN', {}) WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {}) \\gexec\n",
            literal(name),
            literal(name)
        ));
        let mut opts = vec!["LOGIN".to_string()];
        opts.extend(options.iter().cloned());
        s.push_str(&format!(
            "ALTER ROLE {} {} PASSWORD {};\n",
            ident(name),
            opts.join(" "),
            literal(verifier)
        ));
    }
    for db in &inv.postgres.databases {
        s.push_str(&format!(
            "SELECT format('CREATE DATABASE %I OWNER %I', {}, {}) WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = {}) \\gexec\n",
            literal(&db.name),
            literal(&db.owner),
            literal(&db.name)
        ));
    }
    for db in &inv.postgres.databases {
        s.push_str(&format!("\\connect {}\n", ident(&db.name)));
        s.push_str("CREATE SCHEMA IF NOT EXISTS pgha;\n");
        s.push_str(&format!(
            "CREATE SCHEMA IF NOT EXISTS pgha_verify AUTHORIZATION {};\n",
            ident(verify.name)
        ));
        s.push_str(&lookup_function(&served_roles(inv, verify.name)));
        s.push_str("REVOKE ALL ON FUNCTION pgha.user_lookup(text) FROM PUBLIC;\n");
        s.push_str(&format!("GRANT USAGE ON SCHEMA pgha TO {};\n", ident(auth.name)));
        s.push_str(&format!(
            "GRANT EXECUTE ON FUNCTION pgha.user_lookup(text) TO {};\n",
            ident(auth.name)
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_creates_roles_databases_and_the_lookup_function() {
        let text = include_str!("../../inventory/example.yaml");
        let inv = crate::inventory::parse(std::path::Path::new("e.yaml"), text.as_bytes())
            .expect("valid")
            .inventory;
        let sql = bootstrap(
            &inv,
            Role {
                name: "pgbouncer_auth",
                verifier: "SCRAM-SHA-256$4096:a$b:c",
            },
            Role {
                name: "pgha_verify",
                verifier: "SCRAM-SHA-256$4096:v$w:q",
            },
            &[("app".into(), "SCRAM-SHA-256$4096:x$y:z".into())],
        );
        assert!(
            sql.contains("ALTER ROLE \"app\" LOGIN CREATEDB PASSWORD 'SCRAM-SHA-256$4096:x$y:z';"),
            "{sql}"
        );
        assert!(
            sql.contains("ALTER ROLE \"pgha_verify\" LOGIN PASSWORD 'SCRAM-SHA-256$4096:v$w:q';"),
            "{sql}"
        );
        assert!(sql.contains("CREATE DATABASE %I OWNER %I', 'app', 'app'"));
        assert_eq!(sql.matches("\\connect").count(), 2, "the function in every database");
        assert_eq!(sql.matches("pgha_verify AUTHORIZATION").count(), 2);
        assert!(sql.contains("NOT rolsuper") && sql.contains("rolvaliduntil"));
        assert_eq!(
            sql.matches("AND rolname = ANY (ARRAY['app', 'pgha_verify']::text[])")
                .count(),
            2,
            "{sql}"
        );
    }

    #[test]
    fn the_lookup_serves_only_application_users_and_pgha_verify() {
        let text = include_str!("../../inventory/example.yaml");
        let inv = crate::inventory::parse(std::path::Path::new("e.yaml"), text.as_bytes())
            .expect("valid")
            .inventory;
        let served = served_roles(&inv, "pgha_verify");
        assert_eq!(served, ["app", "pgha_verify"]);
        for internal in crate::inventory::RESERVED_ROLES.iter().filter(|r| **r != "pgha_verify") {
            assert!(!served.contains(internal), "{internal} must not be served");
        }
        let f = lookup_function(&served);
        assert!(!f.contains("replicator") && !f.contains("rewind_user") && !f.contains("pgbouncer_auth"));
    }
}
