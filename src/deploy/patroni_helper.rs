//! `/usr/local/sbin/pgha-patroni`, rendered per PostgreSQL node: the deploy's reload and rolling
//! restart steps (docs/design.md §5). It never restarts Patroni itself (that stops PostgreSQL on an
//! unpaused primary): it asks Patroni's REST API, over mutual TLS and with the REST password
//! read from Patroni's config (passed to curl on stdin, never on a command line), to restart
//! PostgreSQL for `pending_restart` parameters — replicas first, the primary after a switchover.

//!
//! The script is rendered from templates/patroni/pgha-patroni.j2 with every other installed
//! file (`render::files::TEMPLATES`; snapshot in tests/render.rs). What it still does on the
//! host is what must run there: SIGHUP and wait for Patroni's rewrite, the authenticated REST
//! calls (restart, switchover, PATCH /config) and their waits.
//!
//! The REST password reaches curl only as base64 inside one `header = "Authorization: Basic …"`
//! config line: the earlier `user = "name:password"` line let a password holding `"` and a
//! newline add curl options of its own (`output = FILE`: root's curl wrote a file of the
//! attacker's choosing, when postgres could write Patroni's config). Tested below.

use crate::render::paths;

/// Where the helper is installed.
pub const PATH: &str = paths::PATRONI_HELPER;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Role;
    use crate::render::{self, Target, TemplateSource};

    /// The helper as rendered for the first PostgreSQL node of inventory/example.yaml.
    fn rendered() -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory/example.yaml");
        let inv = crate::inventory::load(&path).expect("example inventory").inventory;
        let material = render::placeholder::placeholder_material(&inv);
        let host = inv.hosts_with(Role::Postgres).next().expect("a PostgreSQL node");
        render::render_host(&inv, &material, host, Target::Debian13, &TemplateSource::Embedded)
            .expect("renders")
            .into_iter()
            .find(|f| f.path == PATH)
            .expect("render lists the helper")
            .content
    }

    /// The Python the rendered helper runs to hand curl the REST credentials.
    fn auth_py() -> String {
        let helper = rendered();
        let start = helper.find("authed() {").expect("authed()");
        let rest = &helper[start..];
        let from = rest.find("python3 -c '").expect("python3 -c") + "python3 -c '".len();
        let to = rest[from..].find("' \"$CONFIG\"").expect("end of the snippet");
        rest[from..from + to].to_string()
    }

    #[test]
    #[allow(clippy::disallowed_methods)]
    fn the_rendered_helper_is_valid_sh() {
        let out = std::process::Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(rendered())
            .output()
            .expect("sh runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

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
        let new = run_py(&auth_py());
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
        assert!(new.ends_with("\"\n"), "{new}");
    }
}
