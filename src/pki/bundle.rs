//! [`TrustBundle`]: the versioned CA bundle hosts trust (`trust/ca-bundle-<N>.pem`).
//!
//! Hosts install the bundle under its versioned file name, so a new generation is a new path
//! (Patroni ignores a same-path CA change on SIGHUP, docs/design.md §5). A CA rotation (later issue)
//! publishes old + new CA with [`publish`], issues leaves from the new CA, then publishes the new
//! CA alone: each step is one generation.

use std::fs;

use super::error::PkiError;
use super::files::{FileMode, write_atomic};
use super::inspect::pem_certificates;
use super::state::{StateDir, bundle_file_name};

/// One generation of the trust bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustBundle {
    /// Generation number, from 1.
    pub generation: u32,
    /// Concatenated CA certificates, PEM.
    pub pem: String,
}

impl TrustBundle {
    /// The file name hosts install it under: `ca-bundle-<generation>.pem`.
    pub fn file_name(&self) -> String {
        bundle_file_name(self.generation)
    }

    /// Whether the bundle contains the certificate `der`.
    pub fn contains(&self, der: &[u8]) -> bool {
        pem_certificates(&self.pem).iter().any(|c| c == der)
    }
}

/// The newest bundle of `state`, or `None` before the first `ensure`.
pub fn current(state: &StateDir) -> Result<Option<TrustBundle>, PkiError> {
    let Some(generation) = newest_generation(state)? else {
        return Ok(None);
    };
    let path = state.bundle(generation);
    let pem = fs::read_to_string(&path).map_err(|e| PkiError::io(&path, "read", e))?;
    Ok(Some(TrustBundle { generation, pem }))
}

/// Writes the CA certificates `ca_pems` as the next generation and returns it.
pub fn publish(state: &StateDir, ca_pems: &[&str]) -> Result<TrustBundle, PkiError> {
    let generation = newest_generation(state)?.map_or(1, |g| g + 1);
    let pem: String = ca_pems.iter().map(|p| ensure_newline(p)).collect();
    write_atomic(&state.bundle(generation), pem.as_bytes(), FileMode::Public)?;
    let bundle = TrustBundle { generation, pem };
    sync_current(state, &bundle)?;
    Ok(bundle)
}

/// Makes `trust/ca-bundle.pem` (the fixed name for application clients) hold `bundle`.
pub fn sync_current(state: &StateDir, bundle: &TrustBundle) -> Result<(), PkiError> {
    let path = state.current_bundle();
    match fs::read_to_string(&path) {
        Ok(have) if have == bundle.pem => Ok(()),
        _ => write_atomic(&path, bundle.pem.as_bytes(), FileMode::Public),
    }
}

fn newest_generation(state: &StateDir) -> Result<Option<u32>, PkiError> {
    let dir = state.trust_dir();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(PkiError::io(&dir, "list", e)),
    };
    let mut newest = None;
    for entry in entries {
        let entry = entry.map_err(|e| PkiError::io(&dir, "list", e))?;
        let name = entry.file_name();
        let generation = name
            .to_str()
            .and_then(|n| n.strip_prefix("ca-bundle-"))
            .and_then(|n| n.strip_suffix(".pem"))
            .and_then(|n| n.parse::<u32>().ok());
        newest = newest.max(generation);
    }
    Ok(newest)
}

/// The DER of every certificate in a bundle's PEM text.
pub fn ders(pem: &str) -> Vec<Vec<u8>> {
    pem_certificates(pem)
}

fn ensure_newline(pem: &str) -> String {
    if pem.ends_with('\n') {
        pem.to_owned()
    } else {
        format!("{pem}\n")
    }
}
