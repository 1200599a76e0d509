//! [`PkiError`]: everything that can go wrong while reading or writing the state directory,
//! each variant naming the file and saying what to do. The CLI adds nothing but the exit code.

use std::io;
use std::path::PathBuf;

/// A PKI or secrets failure; the message names the file and ends with a hint.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file or directory could not be read, written or created.
    #[error("{}: cannot {action}: {source}\n\nhint: {hint}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What pgha was doing (`read`, `write`, `create directory`, …).
        action: &'static str,
        /// The OS error.
        source: io::Error,
        /// How to fix it.
        hint: &'static str,
    },
    /// A certificate file is not a PEM certificate pgha can parse.
    #[error("{}: not a readable PEM certificate: {detail}\n\nhint: {hint}", path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
        /// How to fix it (differs for the CA and for a leaf).
        hint: &'static str,
    },
    /// The CA private key is missing, unreadable, or does not match the CA certificate.
    #[error(
        "{}: {detail}\n\nhint: the CA key cannot be re-created; restore `ca.key` from a backup of \
         the state directory. Only if the CA must be replaced, move the whole `ca/` directory away \
         and run `pgha pki issue` (every host then needs the new bundle and new certificates)",
        path.display()
    )]
    BadCaKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A private file (key, secrets) is readable by other users.
    #[error(
        "{}: mode {mode:04o} lets other users read a private file\n\nhint: `chmod 600 {}` \
         (and check who could have read it)",
        path.display(),
        path.display()
    )]
    InsecureMode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The secrets file is not the JSON pgha writes.
    #[error(
        "{}: not a pgha secrets file: {detail}\n\nhint: restore it from a backup; deleting it \
         generates new passwords, which the running cluster does not know",
        path.display()
    )]
    BadSecrets {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
    /// rcgen refused to build a key or certificate (a name it cannot encode, a crypto failure).
    #[error("cannot generate {what}: {detail}\n\nhint: {hint}")]
    Generate {
        /// What was being generated (`CA certificate`, `postgres-server certificate for node1`).
        what: String,
        /// rcgen's message.
        detail: String,
        /// How to fix it.
        hint: &'static str,
    },
    /// The CA rotation state cannot be used as it is (unreadable, or out of step with `ca/`).
    #[error("{}: {detail}\n\nhint: {hint}", path.display())]
    Rotation {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong.
        detail: String,
        /// How to fix it.
        hint: &'static str,
    },
    /// A password contains characters pgha cannot hash like PostgreSQL (non-ASCII: SASLprep).
    #[error("cannot compute a SCRAM verifier for a non-ASCII password\n\nhint: use ASCII passwords")]
    NonAsciiPassword,
}

impl PkiError {
    /// An I/O error on `path` while doing `action`.
    pub fn io(path: impl Into<PathBuf>, action: &'static str, source: io::Error) -> Self {
        let hint = match source.kind() {
            io::ErrorKind::PermissionDenied => {
                "check the owner and permissions of the state directory (it should be yours, mode 0700)"
            }
            io::ErrorKind::NotFound => "check the path; `--state DIR` selects another state directory",
            _ => "check the disk (space, read-only file system) and try again",
        };
        PkiError::Io {
            path: path.into(),
            action,
            source,
            hint,
        }
    }
}
