//! Atomic, permission-aware file writes and reads for the state directory.
//!
//! Every write goes to a temporary file in the same directory, is fsynced, renamed over the
//! target and the directory is fsynced, so an interrupted run leaves either the old file or the
//! new one, never half of one. Private files are created 0600 from the start (no window where
//! they are world-readable). Nothing here knows what the files contain.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::error::PkiError;

/// Who may read a file pgha writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileMode {
    /// Certificates and bundles: 0644 (the state directory itself is 0700).
    Public,
    /// Private keys and secrets: 0600.
    Private,
}

impl FileMode {
    /// The permission bits.
    pub fn bits(self) -> u32 {
        match self {
            FileMode::Public => 0o644,
            FileMode::Private => 0o600,
        }
    }
}

/// Creates `dir` (and missing parents) mode 0700, and tightens it to 0700 if it exists.
pub fn ensure_private_dir(dir: &Path) -> Result<(), PkiError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| PkiError::io(dir, "create directory", e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| PkiError::io(dir, "set mode 0700 on", e))
}

/// Writes `bytes` to `path` atomically with `mode`; the parent directory must exist.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: FileMode) -> Result<(), PkiError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = temp_name(path);
    let result = write_new(&tmp, bytes, mode)
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(|e| PkiError::io(path, "write", e));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir)
}

/// Reads `path` as UTF-8, or `None` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PkiError::io(path, "read", e)),
    }
}

/// Reads a private file, refusing it when group or others can read it (as ssh does).
pub fn read_private_optional(path: &Path) -> Result<Option<String>, PkiError> {
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    let mode = fs::metadata(path)
        .map_err(|e| PkiError::io(path, "stat", e))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(PkiError::InsecureMode {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(Some(text))
}

fn temp_name(path: &Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nonce: u64 = rand::random();
    path.with_file_name(format!(".{name}.tmp-{nonce:016x}"))
}

fn write_new(tmp: &Path, bytes: &[u8], mode: FileMode) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode.bits())
        .open(tmp)?;
    // The umask may have cleared bits of Public; set them explicitly.
    f.set_permissions(fs::Permissions::from_mode(mode.bits()))?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn sync_dir(dir: &Path) -> Result<(), PkiError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| PkiError::io(dir, "sync directory", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).expect("exists").permissions().mode() & 0o777
    }

    #[test]
    fn writes_replace_atomically_with_mode() {
        let t = tempfile::tempdir().expect("tempdir");
        let dir = t.path().join("a/b");
        ensure_private_dir(&dir).expect("dir");
        assert_eq!(mode(&dir), 0o700);
        let f = dir.join("k.key");
        write_atomic(&f, b"one", FileMode::Private).expect("write");
        write_atomic(&f, b"two", FileMode::Private).expect("rewrite");
        assert_eq!(fs::read(&f).expect("read"), b"two");
        assert_eq!(mode(&f), 0o600);
        let leftovers: Vec<_> = fs::read_dir(&dir).expect("ls").collect();
        assert_eq!(leftovers.len(), 1, "no temporary files left behind");
    }

    #[test]
    fn private_files_readable_by_others_are_refused() {
        let t = tempfile::tempdir().expect("tempdir");
        let f = t.path().join("secrets.json");
        write_atomic(&f, b"{}", FileMode::Private).expect("write");
        assert!(read_private_optional(&f).expect("ok").is_some());
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = read_private_optional(&f).expect_err("refused");
        assert!(err.to_string().contains("chmod 600"), "{err}");
        assert!(read_optional(&t.path().join("none")).expect("ok").is_none());
    }
}
