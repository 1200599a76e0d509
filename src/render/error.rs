//! Rendering errors. Template errors name the template file and line.

use thiserror::Error;

use super::material::LeafKind;

/// Why a host's files could not be rendered.
#[derive(Debug, Error)]
pub enum RenderError {
    /// A template failed to parse or render.
    #[error("templates/{template}:{line}: {message}\n\nhint: {hint}")]
    Template {
        /// Template name, relative to templates/.
        template: String,
        /// Line in the template (0 when unknown).
        line: usize,
        /// What went wrong.
        message: String,
        /// How to fix it.
        hint: String,
    },
    /// A certificate the host needs was not issued.
    #[error("no {kind:?} certificate for host {host}\n\nhint: run the PKI step (`pgha pki`) first")]
    MissingLeaf {
        /// Host name.
        host: String,
        /// Leaf kind.
        kind: LeafKind,
    },
    /// A secret the host needs is missing.
    #[error("missing secret: {what}\n\nhint: run the PKI step (`pgha pki`) so secrets are generated")]
    MissingSecret {
        /// Which one.
        what: String,
    },
    /// The inventory asks for something the target cannot do.
    #[error("{what}\n\nhint: {hint}")]
    Unsupported {
        /// What.
        what: String,
        /// How to fix it.
        hint: String,
    },
}

impl RenderError {
    /// Converts a minijinja error, keeping the template name and line.
    pub fn from_template(template: &str, err: &minijinja::Error) -> Self {
        let mut message = match err.detail() {
            Some(d) => format!("{}: {d}", err.kind()),
            None => err.kind().to_string(),
        };
        let mut source = std::error::Error::source(err);
        while let Some(s) = source {
            message.push_str(&format!(": {s}"));
            source = s.source();
        }
        let hint = match err.kind() {
            minijinja::ErrorKind::UndefinedError => {
                "the template uses a variable the context does not have; see src/render/context.rs"
            }
            minijinja::ErrorKind::TemplateNotFound => {
                "check the --templates directory mirrors templates/ (e.g. haproxy/haproxy.cfg.j2)"
            }
            _ => "fix the template syntax at that line",
        };
        RenderError::Template {
            template: err.name().unwrap_or(template).to_owned(),
            line: err.line().unwrap_or(0),
            message,
            hint: hint.to_owned(),
        }
    }
}
