//! Plans: what a task would do, computed from facts before anything changes. A task's plan is
//! [`Plan::Satisfied`] (with the reason nothing needs doing), [`Plan::Change`] (what apply will
//! do, and a diff to show) or [`Plan::Check`] (a probe such as wait_for that changes nothing).
//! No I/O here; `diff` renders unified diffs with secrets masked.

use serde::Serialize;

/// The outcome of planning one task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan<A> {
    /// Nothing to do, and why.
    Satisfied {
        /// Why nothing changes (pyinfra's noop).
        why: String,
    },
    /// Something to do.
    Change(Change<A>),
    /// A check that runs in apply but changes nothing (wait_for); skipped in check mode.
    Check {
        /// What is checked.
        what: String,
        /// How apply checks it.
        action: A,
    },
    /// Skipped (a `when:` was false, or its condition needs a change first).
    Skip {
        /// Why.
        why: String,
    },
}

/// A planned change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change<A> {
    /// One line: what will change.
    pub summary: String,
    /// Unified diff of a file's content (masked when secret).
    pub diff: Option<String>,
    /// The module's instructions for apply.
    pub action: A,
}

/// What apply did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Already right.
    Ok,
    /// Changed (or, in check mode, would change).
    Changed,
    /// Skipped.
    Skipped,
    /// Failed.
    Failed,
}

/// Unified diff between two texts, labelled with `path`. Binary content gives a one-line note.
pub fn unified_diff(path: &str, old: Option<&[u8]>, new: &[u8], secret: bool) -> String {
    if secret {
        return format!(
            "--- {path}\n+++ {path}\n(secret content: {} bytes, not shown)\n",
            new.len()
        );
    }
    let (Ok(old_text), Ok(new_text)) = (std::str::from_utf8(old.unwrap_or(b"")), std::str::from_utf8(new)) else {
        return format!("--- {path}\n+++ {path}\n(binary content: {} bytes)\n", new.len());
    };
    let diff = similar::TextDiff::from_lines(old_text, new_text);
    diff.unified_diff()
        .context_radius(3)
        .header(if old.is_some() { path } else { "/dev/null" }, path)
        .to_string()
}

/// Whether `content` holds a private key (shown as a one-line note, never diffed).
pub fn is_key_material(content: &[u8]) -> bool {
    content
        .windows(b"PRIVATE KEY-----".len())
        .any(|w| w == b"PRIVATE KEY-----")
}

/// Masks the secret values in a diff, line by line, so that a config diff never shows a
/// password: lines naming one (`password:`, `secret =`, a SCRAM verifier…) keep their key and
/// lose their value; PgBouncer auth-file lines (`"user" "secret"`) keep the user. Settings that
/// merely name passwords (`password_encryption`) stay visible.
pub fn mask_secrets(diff: &str) -> String {
    const WORDS: [&str; 5] = ["password", "secret", "passwd", "private", "scram-sha-256$"];
    const NOT_SECRET: [&str; 1] = ["password_encryption"];
    diff.lines()
        .map(|line| {
            let lower = line.to_ascii_lowercase();
            let body = line.get(1..).unwrap_or("").trim_start();
            if let Some(rest) = body.strip_prefix('"')
                && let Some(end) = rest.find("\" \"")
                && !line.starts_with("---")
                && !line.starts_with("+++")
            {
                // An auth file line: `"user" "password or verifier"`.
                let keep = line.len() - body.len() + 1 + end + 1;
                return format!("{} ***", &line[..keep]);
            }
            // A verifier is cut where it starts, whatever precedes it (`PASSWORD 'SCRAM-…'`):
            // its iteration count and salt are as private as the rest.
            if let Some(at) = lower.find("scram-sha-256$") {
                return format!("{}***", &line[..at]);
            }
            let named = WORDS.iter().any(|w| lower.contains(w));
            let harmless = NOT_SECRET.iter().any(|w| lower.contains(w)) && !lower.contains("scram-sha-256$");
            if named && !harmless {
                match line.find([':', '=']) {
                    Some(i) => format!("{} ***", &line[..=i]),
                    None => format!("{} ***", &line[..1.min(line.len())]),
                }
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_shows_changed_lines() {
        let d = unified_diff("/etc/x", Some(b"a\nb\n"), b"a\nc\n", false);
        assert!(d.contains("-b") && d.contains("+c") && d.contains("/etc/x"), "{d}");
    }

    #[test]
    fn secret_files_never_show_content() {
        let d = unified_diff("/etc/k", None, b"-----BEGIN PRIVATE KEY-----\nabc\n", true);
        assert!(!d.contains("abc") && !d.contains("BEGIN"), "{d}");
    }

    #[test]
    fn only_key_material_is_hidden_whole() {
        assert!(is_key_material(b"-----BEGIN PRIVATE KEY-----\nabc\n"));
        assert!(is_key_material(b"-----BEGIN EC PRIVATE KEY-----\n"));
        assert!(!is_key_material(b"postgresql:\n  password: x\n"));
    }

    #[test]
    fn secret_lines_are_masked() {
        let d = mask_secrets("+  password: hunter2\n+  port: 5432\n+\"app\" \"SCRAM-SHA-256$4096:abc\"\n");
        assert!(!d.contains("hunter2") && !d.contains("abc"), "{d}");
        assert!(d.contains("port: 5432"));
        let d = mask_secrets(
            "-\"pgbouncer_auth\" \"hunter2\"\n+\"app\" \"SCRAM-SHA-256$4096:abc\"\n     password_encryption: scram-sha-256\n",
        );
        assert!(!d.contains("hunter2") && !d.contains("abc"), "{d}");
        assert!(
            d.contains("-\"pgbouncer_auth\" ***") && d.contains("password_encryption: scram-sha-256"),
            "{d}"
        );
    }

    #[test]
    fn verifiers_in_sql_are_cut_where_they_start() {
        let d = mask_secrets("+ALTER ROLE \"app\" LOGIN CREATEDB PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$a:b';\n");
        assert!(
            !d.to_ascii_lowercase().contains("scram-sha-256$") && !d.contains("4096"),
            "{d}"
        );
        assert!(d.contains("ALTER ROLE \"app\" LOGIN CREATEDB PASSWORD '***"), "{d}");
    }
}
