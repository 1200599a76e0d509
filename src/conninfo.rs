//! libpq connection strings and URIs built from parts that may hold anything a path can: a
//! state directory under `/home/me/My Clusters/`, a password with `&` or `'`. Every value is
//! quoted (keyword/value form) or percent-encoded (URI form) as libpq parses it
//! (PostgreSQL docs, "Connection Strings": single quotes around a value with spaces, `\'` and
//! `\\` inside; URIs percent-decode every component), so no value can end early or add a
//! parameter (`sslmode=disable` smuggled in through a path). Also [`PassFile`], how a password
//! reaches a local `psql`: a 0600 passfile in a private temporary directory named by
//! `PGPASSFILE`, never `PGPASSWORD` (the environment of a process is readable through
//! `/proc/<pid>/environ` by its user and shows in crash reports and `ps e`). Imports only
//! the inventory's `Host`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A passfile holding one password for every host, port, database and user, in a private
/// temporary directory (mode 0700) that is removed when this is dropped. Give `psql`
/// `PGPASSFILE=`[`PassFile::path`].
#[derive(Debug)]
pub struct PassFile {
    dir: PathBuf,
    path: PathBuf,
}

impl Drop for PassFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Creates a new directory (mode 0700, refusing one that exists: no other user can have
/// prepared it) under the system's temporary directory.
fn private_temp_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut last = None;
    for _ in 0..16 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("pgha-pass-{}-{nanos:x}-{n}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free temporary directory name")))
}

impl PassFile {
    /// Writes `password` into a new passfile (created 0600, never wider).
    pub fn new(password: &str) -> std::io::Result<Self> {
        let dir = private_temp_dir()?;
        let path = dir.join("pgpass");
        let pass = Self { dir, path };
        let path = pass.path.clone();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        file.write_all(pgpass_line(password).as_bytes())?;
        Ok(pass)
    }

    /// The file, for `PGPASSFILE`.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The passfile line `*:*:*:*:password`, with `\` and `:` escaped as libpq reads them.
pub fn pgpass_line(password: &str) -> String {
    let mut line = String::from("*:*:*:*:");
    for c in password.chars() {
        if c == '\\' || c == ':' {
            line.push('\\');
        }
        line.push(c);
    }
    line.push('\n');
    line
}

/// A value libpq cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnInfoError {
    /// libpq strings are C strings: a NUL would cut the value.
    #[error("the value of `{key}` contains a NUL byte, which libpq cannot carry")]
    Nul {
        /// The parameter.
        key: String,
    },
}

/// The parameters pgha's own psql uses toward `host`: dialled by address, the certificate checked
/// against the name (`sslmode=verify-full` with `ca`), a short connect timeout.
pub fn verify_full(
    host: &crate::inventory::Host,
    port: u16,
    dbname: &str,
    user: &str,
    ca: &Path,
    connect_timeout_s: u32,
    application_name: &str,
) -> ConnInfo {
    let mut info = ConnInfo::new();
    for (key, value) in [
        ("host", host.name.to_string()),
        ("hostaddr", host.address.to_string()),
        ("port", port.to_string()),
        ("dbname", dbname.to_owned()),
        ("user", user.to_owned()),
        ("sslmode", "verify-full".to_owned()),
        ("sslrootcert", ca.display().to_string()),
        ("connect_timeout", connect_timeout_s.to_string()),
        ("application_name", application_name.to_owned()),
    ] {
        // Host names, databases and users are validated identifiers, and a path from the
        // command line or the inventory's location cannot hold NUL (argv and paths are C
        // strings), so nothing here can be refused.
        info.params.push((key, value.replace('\0', "")));
    }
    info
}

/// Ordered libpq parameters (`host`, `port`, `sslrootcert`…), rendered either way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnInfo {
    params: Vec<(&'static str, String)>,
}

impl ConnInfo {
    /// No parameters yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `key=value`; the key is a libpq keyword written by pgha, the value anything but NUL.
    pub fn with(mut self, key: &'static str, value: impl Into<String>) -> Result<Self, ConnInfoError> {
        let value = value.into();
        if value.contains('\0') {
            return Err(ConnInfoError::Nul { key: key.to_owned() });
        }
        self.params.push((key, value));
        Ok(self)
    }

    /// The value given for `key`, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
    }

    /// The keyword/value form: `host=a port=5432 sslrootcert='/my dir/ca.pem'`.
    pub fn to_keyword_string(&self) -> String {
        self.params
            .iter()
            .map(|(k, v)| format!("{k}={}", quote_value(v)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The URI form: `postgresql://user[:password]@host:port/dbname?rest…`, taking `user`,
    /// `password`, `host`, `port` and `dbname` from the parameters (when present) and every
    /// other parameter into the query, each component percent-encoded.
    pub fn to_uri(&self) -> String {
        let mut uri = String::from("postgresql://");
        if let Some(user) = self.get("user") {
            uri.push_str(&percent_encode(user, false));
            if let Some(password) = self.get("password") {
                uri.push(':');
                uri.push_str(&percent_encode(password, false));
            }
            uri.push('@');
        }
        // Several hosts (libpq's comma-separated `host`): `h1:p1,h2:p2` in the authority, each
        // part encoded on its own (a `%2C` would make one host of them); one port is every
        // host's.
        let hosts: Vec<&str> = self.get("host").map(|h| h.split(',').collect()).unwrap_or_default();
        let ports: Vec<&str> = self.get("port").map(|p| p.split(',').collect()).unwrap_or_default();
        for (i, host) in hosts.iter().enumerate() {
            if i > 0 {
                uri.push(',');
            }
            uri.push_str(&percent_encode(host, false));
            if let Some(port) = ports.get(i).or(if ports.len() == 1 { ports.first() } else { None }) {
                uri.push(':');
                uri.push_str(&percent_encode(port, false));
            }
        }
        if hosts.is_empty()
            && let Some(port) = self.get("port")
        {
            uri.push(':');
            uri.push_str(&percent_encode(port, false));
        }
        uri.push('/');
        if let Some(db) = self.get("dbname") {
            uri.push_str(&percent_encode(db, false));
        }
        let query: Vec<String> = self
            .params
            .iter()
            .filter(|(k, _)| !matches!(*k, "user" | "password" | "host" | "port" | "dbname"))
            .map(|(k, v)| format!("{k}={}", percent_encode(v, true)))
            .collect();
        if !query.is_empty() {
            uri.push('?');
            uri.push_str(&query.join("&"));
        }
        uri
    }
}

/// One value of the keyword/value form: as is when it is non-empty and holds no space, quote or
/// backslash; otherwise in single quotes with `'` and `\` backslash-escaped (libpq's rule).
pub fn quote_value(v: &str) -> String {
    let plain = !v.is_empty() && !v.chars().any(|c| c.is_whitespace() || c == '\'' || c == '\\');
    if plain {
        return v.to_owned();
    }
    let mut out = String::with_capacity(v.len() + 2);
    out.push('\'');
    for c in v.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// Percent-encodes every byte but RFC 3986's unreserved characters (and `/` in a query value,
/// where it is literal, so paths stay readable). libpq decodes `%XX` in every component and
/// does not read `+` as a space, so a space is `%20`.
pub fn percent_encode(v: &str, in_query: bool) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        let keep = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || (in_query && b == b'/');
        if keep {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(root: &str) -> ConnInfo {
        ConnInfo::new()
            .with("host", "pool.example.com")
            .and_then(|c| c.with("hostaddr", "192.0.2.51"))
            .and_then(|c| c.with("port", "6432"))
            .and_then(|c| c.with("dbname", "app_rw"))
            .and_then(|c| c.with("user", "app"))
            .and_then(|c| c.with("sslmode", "verify-full"))
            .and_then(|c| c.with("sslrootcert", format!("{root}/trust/ca-bundle.pem")))
            .expect("no NUL")
    }

    #[test]
    fn plain_values_stay_plain() {
        assert_eq!(
            sample("/s").to_keyword_string(),
            "host=pool.example.com hostaddr=192.0.2.51 port=6432 dbname=app_rw user=app sslmode=verify-full sslrootcert=/s/trust/ca-bundle.pem"
        );
    }

    #[test]
    fn a_path_with_spaces_and_quotes_is_one_quoted_value() {
        let text = sample("/home/me/My Clusters/it's \\here").to_keyword_string();
        assert!(
            text.ends_with(r"sslrootcert='/home/me/My Clusters/it\'s \\here/trust/ca-bundle.pem'"),
            "{text}"
        );
    }

    #[test]
    fn a_path_cannot_smuggle_a_parameter() {
        // Unquoted, this path would end the value at the space and set sslmode=disable.
        let text = sample("/tmp/x sslmode=disable").to_keyword_string();
        assert!(
            text.contains("sslrootcert='/tmp/x sslmode=disable/trust/ca-bundle.pem'"),
            "{text}"
        );
        assert_eq!(
            text.matches(" sslmode=").count(),
            2,
            "one real, one inside quotes: {text}"
        );
        let uri = sample("/tmp/x&sslmode=disable").to_uri();
        assert!(
            uri.contains("sslrootcert=/tmp/x%26sslmode%3Ddisable/trust/ca-bundle.pem"),
            "{uri}"
        );
        assert_eq!(uri.matches("sslmode=").count(), 1, "{uri}");
    }

    #[test]
    fn empty_values_are_quoted() {
        assert_eq!(quote_value(""), "''");
    }

    #[test]
    fn uri_encodes_every_component() {
        let c = sample("/My Clusters")
            .with("password", "p@ss:w/rd&x=1 %")
            .expect("no NUL");
        assert_eq!(
            c.to_uri(),
            "postgresql://app:p%40ss%3Aw%2Frd%26x%3D1%20%25@pool.example.com:6432/app_rw?hostaddr=192.0.2.51&sslmode=verify-full&sslrootcert=/My%20Clusters/trust/ca-bundle.pem"
        );
    }

    #[test]
    fn non_ascii_is_percent_encoded_as_utf8() {
        assert_eq!(percent_encode("é", true), "%C3%A9");
    }

    #[test]
    fn passfile_is_private_and_escaped() {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(pgpass_line(r"a:b\c"), "*:*:*:*:a\\:b\\\\c\n");
        let pf = PassFile::new("s3cret").expect("passfile");
        let meta = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(meta(pf.path()), 0o600);
        assert_eq!(meta(pf.path().parent().expect("dir")), 0o700);
        assert_eq!(std::fs::read_to_string(pf.path()).expect("read"), "*:*:*:*:s3cret\n");
        let dir = pf.path().parent().expect("dir").to_path_buf();
        drop(pf);
        assert!(!dir.exists(), "removed on drop");
    }

    #[test]
    fn nul_is_refused() {
        let err = ConnInfo::new().with("sslrootcert", "a\0b").expect_err("NUL");
        assert_eq!(
            err,
            ConnInfoError::Nul {
                key: "sslrootcert".into()
            }
        );
    }
}
