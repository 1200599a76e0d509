//! The minijinja environment: strict undefined, no auto-escaping, trailing newlines kept,
//! templates embedded in the binary (`templates/`), optionally overridden file by file from a
//! directory (`--templates DIR`). Only reads template files.

use std::path::{Path, PathBuf};

use include_dir::{Dir, include_dir};
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior};

/// The templates shipped in the binary.
pub static EMBEDDED: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/templates");

/// Where templates come from.
#[derive(Clone, Debug, Default)]
pub enum TemplateSource {
    /// Only the embedded templates.
    #[default]
    Embedded,
    /// A directory first (same relative names), then the embedded templates.
    Dir(PathBuf),
}

/// Builds the environment for `source`.
pub fn environment(source: &TemplateSource) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    let mut syntax = minijinja::syntax::SyntaxConfig::builder();
    syntax.keep_trailing_newline(true).trim_blocks(true).lstrip_blocks(true);
    env.set_syntax(syntax.build().expect("default delimiters are valid"));
    env.add_filter("yaml", yaml_scalar);
    let dir = match source {
        TemplateSource::Embedded => None,
        TemplateSource::Dir(d) => Some(d.clone()),
    };
    env.set_loader(move |name| load(dir.as_deref(), name));
    env
}

fn load(dir: Option<&Path>, name: &str) -> Result<Option<String>, Error> {
    if let Some(dir) = dir {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(s) => return Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::TemplateNotFound,
                    format!("cannot read {}: {e}", path.display()),
                ));
            }
        }
    }
    match EMBEDDED.get_file(name) {
        Some(f) => match f.contents_utf8() {
            Some(s) => Ok(Some(s.to_owned())),
            None => Err(Error::new(ErrorKind::InvalidOperation, format!("{name} is not UTF-8"))),
        },
        None => Ok(None),
    }
}

/// `{{ x | yaml }}`: a YAML double-quoted scalar (JSON string syntax is valid YAML), so
/// passwords and parameter values need no other escaping.
fn yaml_scalar(value: String) -> String {
    serde_json::to_string(&value).expect("a String always serializes")
}

/// Every embedded template name (for tests and `--templates` documentation).
pub fn embedded_names() -> Vec<String> {
    fn walk(dir: &Dir<'_>, out: &mut Vec<String>) {
        for f in dir.files() {
            out.push(f.path().to_string_lossy().into_owned());
        }
        for d in dir.dirs() {
            walk(d, out);
        }
    }
    let mut out = Vec::new();
    walk(&EMBEDDED, &mut out);
    out.sort();
    out
}
