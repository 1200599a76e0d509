//! [`StateDir`]: where the controller keeps the CA, the leaves, the trust bundles and the
//! secrets, and which path each one has. Layout only; the module doc of [`crate::pki`] shows it.

use std::path::{Path, PathBuf};

use super::error::PkiError;
use super::files::{FileMode, ensure_private_dir, read_optional, read_private_optional, write_atomic};
use super::secret::Secret;
use super::spec::LeafKind;
use crate::inventory::{HostName, Inventory};

/// What `.gitignore` in the state directory holds.
const GITIGNORE: &str = "# Written by pgha: this directory holds the CA key and passwords; never commit it.\n*\n";

/// The state directory (default `.pgha/` beside the inventory file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// A state directory at `root` (it may not exist yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `--state DIR` when given, else `.pgha/` beside the inventory file.
    pub fn for_inventory(inv: &Inventory, state: Option<&Path>) -> Self {
        match state {
            Some(dir) => Self::new(dir),
            None => Self::new(inv.dir().join(".pgha")),
        }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the directory tree, every directory mode 0700, and a `.gitignore` holding `*`
    /// so that the CA key and the secrets stay out of a repository the inventory lives in
    /// (`git add .` skips the whole directory, the `.gitignore` included).
    pub fn create(&self) -> Result<(), PkiError> {
        for dir in [
            self.root.clone(),
            self.ca_dir(),
            self.trust_dir(),
            self.root.join("certs"),
        ] {
            ensure_private_dir(&dir)?;
        }
        let ignore = self.gitignore();
        if read_optional(&ignore)?.as_deref() != Some(GITIGNORE) {
            write_atomic(&ignore, GITIGNORE.as_bytes(), FileMode::Public)?;
        }
        Ok(())
    }

    /// `.gitignore`: `*`, the whole state directory.
    pub fn gitignore(&self) -> PathBuf {
        self.root.join(".gitignore")
    }

    /// Reads the private key of a leaf, refusing it when group or others can read it (as ssh
    /// refuses a private key), so that a key copied in or restored with a loose mode is noticed
    /// before pgha installs it on a host.
    pub fn read_leaf_key(&self, host: &HostName, kind: LeafKind) -> Result<Secret<String>, PkiError> {
        let path = self.leaf_key(host, kind);
        match read_private_optional(&path)? {
            Some(pem) => Ok(Secret::new(pem)),
            None => Err(PkiError::io(
                &path,
                "read",
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            )),
        }
    }

    /// `ca/`: the current CA.
    pub fn ca_dir(&self) -> PathBuf {
        self.root.join("ca")
    }

    /// `ca/ca.crt`: the current CA certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.ca_dir().join("ca.crt")
    }

    /// `ca/ca.key`: the CA private key (0600; never leaves the controller).
    pub fn ca_key(&self) -> PathBuf {
        self.ca_dir().join("ca.key")
    }

    /// `ca/next.crt`: the CA a rotation introduces, until it becomes the current one.
    pub fn next_ca_cert(&self) -> PathBuf {
        self.ca_dir().join("next.crt")
    }

    /// `ca/next.key` (0600).
    pub fn next_ca_key(&self) -> PathBuf {
        self.ca_dir().join("next.key")
    }

    /// `ca/archive/<serial>/`: a CA replaced by a rotation, kept (never deleted).
    pub fn archived_ca_dir(&self, serial_hex: &str) -> PathBuf {
        self.ca_dir().join("archive").join(serial_hex.replace(':', ""))
    }

    /// `rotation.json`: the phase of a CA rotation in progress (absent otherwise).
    pub fn rotation(&self) -> PathBuf {
        self.root.join("rotation.json")
    }

    /// `trust/`: versioned CA bundles, kept apart from `ca/` so generations survive a new CA.
    pub fn trust_dir(&self) -> PathBuf {
        self.root.join("trust")
    }

    /// `trust/ca-bundle.pem`: the newest generation's content under a name that never changes,
    /// for application clients (`pgha uri` points at it): it holds old + new CA during a
    /// rotation's overlap, and only the new CA once every server presents it.
    pub fn current_bundle(&self) -> PathBuf {
        self.trust_dir().join("ca-bundle.pem")
    }

    /// `trust/ca-bundle-<generation>.pem`.
    pub fn bundle(&self, generation: u32) -> PathBuf {
        self.trust_dir().join(bundle_file_name(generation))
    }

    /// `certs/<host>/`: one host's certificates and keys.
    pub fn host_dir(&self, host: &HostName) -> PathBuf {
        self.root.join("certs").join(host.as_str())
    }

    /// `certs/<host>/<kind>.crt`.
    pub fn leaf_cert(&self, host: &HostName, kind: LeafKind) -> PathBuf {
        self.host_dir(host).join(format!("{}.crt", kind.as_str()))
    }

    /// `certs/<host>/<kind>.key` (0600).
    pub fn leaf_key(&self, host: &HostName, kind: LeafKind) -> PathBuf {
        self.host_dir(host).join(format!("{}.key", kind.as_str()))
    }

    /// `secrets.json` (0600): generated passwords and SCRAM salts.
    pub fn secrets(&self) -> PathBuf {
        self.root.join("secrets.json")
    }
}

/// The versioned bundle file name hosts install (`ca-bundle-<generation>.pem`): a new name per
/// generation, because Patroni ignores a CA change at the same path on SIGHUP (docs/design.md §5).
pub fn bundle_file_name(generation: u32) -> String {
    format!("ca-bundle-{generation}.pem")
}
