//! Diagnostics: an error or warning about an input file (inventory, playbook) that points at
//! file:line:column and a field path, and says how to fix it. Imports nothing from pgha.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The inventory cannot be used.
    Error,
    /// The inventory works but has a risk worth knowing.
    Warning,
}

/// One finding about the inventory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The inventory file.
    pub file: PathBuf,
    /// 1-based line (0 when unknown).
    pub line: u64,
    /// 1-based column (0 when unknown).
    pub column: u64,
    /// Dotted field path, e.g. `hosts.node1.address` (empty for the whole file).
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Every part may quote the input: never let it carry a raw control character (a newline,
        // an escape sequence, a bidi override) to the terminal.
        f.write_str(&escape_controls(&self.file.display().to_string()))?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        f.write_str(": ")?;
        if !self.field.is_empty() {
            write!(f, "{}: ", escape_controls(&self.field))?;
        }
        f.write_str(&escape_controls(&self.message))?;
        if let Some(hint) = &self.hint {
            write!(f, "\n\n  hint: {}", escape_controls(hint))?;
        }
        Ok(())
    }
}

/// Whether `c` must not reach a terminal or a configuration file raw: C0/C1 controls (newline,
/// tab, ESC, NUL, DEL…), and the invisible characters that reorder or hide text (bidi
/// overrides and isolates, zero-width marks, the line and paragraph separators).
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// `s` with every [`is_unsafe_char`] written as an escape (`\n`, `\u{1b}`), everything else as is.
pub fn escape_controls(s: &str) -> String {
    if !s.chars().any(is_unsafe_char) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if is_unsafe_char(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Where a value sits in the file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
}

impl Pos {
    /// The position serde-saphyr recorded for a spanned value.
    pub fn of<T>(s: &serde_saphyr::Spanned<T>) -> Self {
        Self {
            line: s.referenced.line(),
            column: s.referenced.column(),
        }
    }
}

/// Suggests the closest of `candidates` to `word` when it is close enough to be a typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        assert_eq!(did_you_mean("adress", ["address", "dc", "roles"]), Some("address"));
        assert_eq!(did_you_mean("zzz", ["address", "dc", "roles"]), None);
    }

    #[test]
    fn display_escapes_control_characters_everywhere() {
        let d = Diagnostic {
            severity: Severity::Error,
            file: "inv\u{1b}[2J.yaml".into(),
            line: 1,
            column: 2,
            field: "hosts.a\nb".into(),
            message: "`x\ny\u{202e}z\0` is bad".into(),
            hint: Some("tab\there".into()),
        };
        let text = d.to_string();
        assert_eq!(
            text,
            "inv\\u{1b}[2J.yaml:1:2: hosts.a\\nb: `x\\ny\\u{202e}z\\u{0}` is bad\n\n  hint: tab\\there"
        );
        assert_eq!(text.matches('\n').count(), 2, "only the separator before the hint");
        assert!(!text.chars().any(|c| c != '\n' && is_unsafe_char(c)));
    }

    #[test]
    fn display_names_file_line_field_and_hint() {
        let d = Diagnostic {
            severity: Severity::Error,
            file: "inv.yaml".into(),
            line: 14,
            column: 9,
            field: "hosts.pg2.port".into(),
            message: "expected 1–65535".into(),
            hint: Some("use a port number".into()),
        };
        assert_eq!(
            d.to_string(),
            "inv.yaml:14:9: hosts.pg2.port: expected 1–65535\n\n  hint: use a port number"
        );
    }
}
