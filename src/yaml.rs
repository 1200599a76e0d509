//! Strict YAML for every file pgha reads (inventories, playbooks): a size cap, serde-saphyr's
//! budget (nesting depth, aliases, node count), duplicate keys refused, unknown fields refused
//! with a "did you mean", and every error turned into a [`Diagnostic`] with line, column and the
//! field path.

use std::io::Read;
use std::path::Path;

use crate::diagnostic::{Diagnostic, Severity, did_you_mean};

/// Largest YAML file pgha reads: far above any real inventory or playbook, small enough that
/// no input can make parsing use much memory.
pub const MAX_YAML_BYTES: u64 = 1024 * 1024;

/// Why a file could not be read at all (before any YAML is looked at).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Missing, unreadable, …
    #[error("{path}: cannot read: {source}\n\n  hint: check the path")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A directory or device was given.
    #[error("{path}: is not a regular file\n\n  hint: give the YAML file itself")]
    NotAFile {
        /// The path.
        path: String,
    },
    /// Over [`MAX_YAML_BYTES`].
    #[error(
        "{path}: is larger than {max} bytes; an inventory or playbook is a few kilobytes\n\n  hint: is this the right file?"
    )]
    TooLarge {
        /// The file.
        path: String,
        /// The limit.
        max: u64,
    },
}

/// Reads the file, refusing directories, devices and oversized files without reading them whole.
pub fn read_text(path: &Path) -> Result<Vec<u8>, ReadError> {
    let shown = path.display().to_string();
    let io = |source| ReadError::Io {
        path: shown.clone(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(ReadError::NotAFile { path: shown });
    }
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_YAML_BYTES + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_YAML_BYTES {
        return Err(ReadError::TooLarge {
            path: shown,
            max: MAX_YAML_BYTES,
        });
    }
    Ok(bytes)
}

fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = 32;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_nodes = 100_000;
    budget.max_events = 200_000;
    budget.max_documents = 1;
    budget.max_total_scalar_bytes = MAX_YAML_BYTES as usize;
    let mut opts = serde_saphyr::Options::default();
    opts.budget = Some(budget);
    opts.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    opts.with_snippet = false;
    opts
}

/// Parses YAML bytes into `T` (strict: unknown fields, duplicate keys and budget breaches are
/// errors), or one diagnostic saying where and why not.
pub fn parse_strict<T: serde::de::DeserializeOwned>(file: &Path, bytes: &[u8], example: &str) -> Result<T, Diagnostic> {
    let error = |line, column, field: String, message: String, hint: Option<String>| Diagnostic {
        severity: Severity::Error,
        file: file.to_path_buf(),
        line,
        column,
        field,
        message,
        hint,
    };
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let (line, column) = line_col(bytes, e.valid_up_to());
            return Err(error(
                line,
                column,
                String::new(),
                "not UTF-8 text (binary data?)".into(),
                Some(format!("expected a YAML text file; see {example}")),
            ));
        }
    };
    let has_content = text.trim_start_matches('\u{feff}').lines().any(|l| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#')
    });
    if !has_content {
        return Err(error(
            0,
            0,
            String::new(),
            "the file is empty (nothing but blank lines and comments)".into(),
            Some(format!("start from {example}")),
        ));
    }
    let mut track = serde_path_to_error::Track::new();
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options(), |de| {
        T::deserialize(serde_path_to_error::Deserializer::new(de, &mut track))
    });
    result.map_err(|e| {
        let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
        let field = clean_path(&track.path().to_string());
        let raw_message = e.without_snippet().to_string();
        let message = strip_location(&raw_message);
        let (message, hint) = explain(&message, &field, example);
        error(line, column, field, message, hint)
    })
}

/// Drops serde-saphyr's own " at line L, column C" suffix (we print the position first).
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// `hosts.node1.port.value` → `hosts.node1.port`; `?` (an unknown map key) dropped.
fn clean_path(path: &str) -> String {
    if path == "." {
        return String::new();
    }
    path.replace(".value[", "[")
        .split('.')
        .map(|seg| {
            seg.strip_prefix("value[")
                .map(|rest| format!("[{rest}"))
                .unwrap_or_else(|| seg.to_string())
        })
        .filter(|seg| seg != "value" && seg != "?")
        .collect::<Vec<_>>()
        .join(".")
        .replace(".[", "[")
}

/// Adds a hint (and a "did you mean") to the parser's message.
fn explain(message: &str, field: &str, example: &str) -> (String, Option<String>) {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (name, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let candidates: Vec<&str> = expected
            .trim_start_matches(", expected one of ")
            .trim_start_matches(", expected ")
            .split(", ")
            .map(|c| c.trim_matches('`'))
            .filter(|c| !c.is_empty() && !c.starts_with("there are no"))
            .collect();
        let hint = match did_you_mean(name, candidates.iter().copied()) {
            Some(best) => format!("did you mean `{best}`? known fields here: {}", candidates.join(", ")),
            None => format!("known fields here: {}", candidates.join(", ")),
        };
        return (format!("unknown field `{name}`"), Some(hint));
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let (name, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let candidates: Vec<&str> = expected
            .trim_start_matches(", expected one of ")
            .trim_start_matches(", expected ")
            .split(", ")
            .map(|c| c.trim_matches('`'))
            .collect();
        let hint = match did_you_mean(name, candidates.iter().copied()) {
            Some(best) => format!("did you mean `{best}`? allowed: {}", candidates.join(", ")),
            None => format!("allowed: {}", candidates.join(", ")),
        };
        return (format!("unknown value `{name}`"), Some(hint));
    }
    if message.starts_with("duplicate mapping key") {
        let key = message
            .trim_start_matches("duplicate mapping key: ")
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or("");
        return (
            format!("duplicate key `{key}`"),
            Some("each key may appear once in a mapping; remove or rename one (YAML loaders that keep the last one silently would drop the first)".into()),
        );
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or(rest);
        return (
            format!("missing field `{name}`"),
            Some(format!("add `{name}:` here; {example} shows every field")),
        );
    }
    if message.contains("budget")
        || message.contains("depth")
        || message.contains("alias")
        || message.contains("recursion limit")
    {
        return (
            format!("refused: {message}"),
            Some(
                "the inventory nests or repeats far more than any real inventory; limits protect pgha from YAML bombs"
                    .into(),
            ),
        );
    }
    if message == "expected sequence start" {
        return (
            "expected a list here".into(),
            Some("write a list: `[a, b]`, or one `- item` per line".into()),
        );
    }
    if message == "expected mapping start" {
        return (
            "expected a mapping here".into(),
            Some(format!("write `key: value` lines (see {example})")),
        );
    }
    let syntax = [
        "while parsing",
        "while scanning",
        "unclosed",
        "did not find",
        "tabs",
        "unexpected end",
        "invalid indentation",
    ];
    let hint = if field.is_empty() || syntax.iter().any(|s| message.contains(s)) {
        Some("fix the YAML syntax at that position (a YAML linter such as yamllint shows more)".into())
    } else {
        Some(format!("see {example} for the expected shape of this field"))
    };
    (message.to_string(), hint)
}

/// 1-based line and column of byte offset `at`.
fn line_col(bytes: &[u8], at: usize) -> (u64, u64) {
    let before = &bytes[..at.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() as u64 + 1;
    let col = before.iter().rev().take_while(|b| **b != b'\n').count() as u64 + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_drop_spanned_wrappers() {
        assert_eq!(clean_path("hosts.node1.port.value"), "hosts.node1.port");
        assert_eq!(clean_path("hosts.?"), "hosts");
        assert_eq!(
            clean_path("hosts.value.pg1.value.roles.value[1].value"),
            "hosts.pg1.roles[1]"
        );
        assert_eq!(clean_path("."), "");
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col(b"ab\ncd", 4), (2, 2));
        assert_eq!(line_col(b"x", 0), (1, 1));
    }
}
