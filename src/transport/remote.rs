//! The small shell scripts pgha runs on hosts for file operations, and the pure parsers of
//! their output. Kept POSIX `sh` + coreutils only (Debian minbase has both).

use super::cmd::Cmd;

/// What pgha knows of one path on a host.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FileState {
    /// The path asked about.
    pub path: String,
    /// What is there.
    pub kind: FileKind,
}

/// What a path holds.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "type")]
pub enum FileKind {
    /// Nothing.
    Missing,
    /// A regular file.
    File {
        /// Hex SHA-256 of the content.
        sha256: String,
        /// Permission bits, e.g. 0o600.
        mode: u32,
        /// Owner name.
        owner: String,
        /// Group name.
        group: String,
    },
    /// A directory.
    Dir {
        /// Permission bits.
        mode: u32,
        /// Owner name.
        owner: String,
        /// Group name.
        group: String,
    },
    /// Something else (symlink to nowhere, socket, …).
    Other,
}

/// One round trip for many paths: hash, mode, owner and group of each.
pub fn stat_script(paths: &[String]) -> Cmd {
    Cmd::script(STAT_BODY, paths.iter().cloned())
}

/// The loop of [`stat_script`] over `"$@"`, reused by the facts probe.
pub const STAT_BODY: &str = r#"for p do
  if [ -f "$p" ]; then
    s=$(sha256sum -- "$p") || exit 1
    printf 'F\t%s\t%s\t%s\n' "$(stat -c '%a	%U	%G' -- "$p")" "${s%% *}" "$p"
  elif [ -d "$p" ]; then
    printf 'D\t%s\t%s\n' "$(stat -c '%a	%U	%G' -- "$p")" "$p"
  elif [ -e "$p" ] || [ -L "$p" ]; then
    printf 'O\t%s\n' "$p"
  else
    printf 'N\t%s\n' "$p"
  fi
done"#;

/// Parses [`stat_script`]'s output; `None` when it is not what the script prints.
pub fn parse_stat(out: &str) -> Option<Vec<FileState>> {
    out.lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let kind = match f.as_slice() {
                ["F", mode, owner, group, sha, _path] => FileKind::File {
                    sha256: (*sha).to_string(),
                    mode: u32::from_str_radix(mode, 8).ok()?,
                    owner: (*owner).to_string(),
                    group: (*group).to_string(),
                },
                ["D", mode, owner, group, _path] => FileKind::Dir {
                    mode: u32::from_str_radix(mode, 8).ok()?,
                    owner: (*owner).to_string(),
                    group: (*group).to_string(),
                },
                ["O", _path] => FileKind::Other,
                ["N", _path] => FileKind::Missing,
                _ => return None,
            };
            Some(FileState {
                path: (*f.last()?).to_string(),
                kind,
            })
        })
        .collect()
}

/// Shell function `root_only DIR WHAT`: exits 4 (naming WHAT) unless DIR and every directory
/// above it are owned by root and not writable by group or others — where no service user can
/// swap an entry for a symlink. DIR must be resolved (`readlink -f`) already.
pub const ROOT_ONLY: &str = r#"root_only() {
  a=$1
  while :; do
    st=$(stat -c '%u %a' -- "$a")
    uid=${st% *} bits=${st#* }
    if [ "$uid" != 0 ] || [ $(( 0$bits & 022 )) -ne 0 ]; then
      echo "pgha: refusing to install $2: $a (uid $uid, mode $bits) is writable by another user than root; make it root-owned and not group/other-writable (chown root; chmod go-w)" >&2
      exit 4
    fi
    [ "$a" = / ] && return 0
    a=$(dirname -- "$a")
  done
}"#;

/// Installs stdin at `path` atomically: a temp file in the same directory, owner, mode, fsync,
/// then rename over the target (a reader sees the old or the new file, never a part), then
/// fsync of the directory. On any failure the temp file is removed.
///
/// Only where only root can write: the directory is resolved (`readlink -f`) and each
/// component of it, `/` included, must be owned by root and not writable by group or others,
/// else the script exits 4 and writes nothing. So no service user can swap the temp file (or a
/// directory above it) for a symlink between its creation and the `chown`/`chmod`/`mv` that
/// follow; the final rename replaces whatever is at `path` without following it.
///
/// With `validate` (an argv where `{}` stands for the new file), the new file is checked in
/// place before the rename; a failed check exits 3 and leaves the old file untouched.
pub fn install_script(path: &str, owner: &str, group: &str, mode: u32, validate: &[String]) -> Cmd {
    const BODY: &str = r#"set -e
umask 077
{root_only}
d=$(readlink -f -- "$(dirname -- "$1")") || d=
[ -n "$d" ] && [ -d "$d" ] || { echo "pgha: cannot install $1: its directory does not exist" >&2; exit 4; }
p=$d/$(basename -- "$1") o=$2 g=$3 m=$4
shift 4
root_only "$d" "$p"
t=$(mktemp -- "$d/.pgha-tmp.XXXXXX")
trap 'rm -f -- "$t"' EXIT
cat > "$t"
chown -- "$o:$g" "$t"
chmod -- "$m" "$t"
if [ $# -gt 0 ]; then
  for a do shift; if [ "$a" = "{}" ]; then set -- "$@" "$t"; else set -- "$@" "$a"; fi; done
  "$@" >&2 || { echo "pgha: the new $p failed validation ($*); the old file is kept" >&2; exit 3; }
fi
sync -- "$t"
mv -f -- "$t" "$p"
trap - EXIT
sync -- "$d""#;
    let mut args = vec![
        path.to_string(),
        owner.to_string(),
        group.to_string(),
        format!("{mode:o}"),
    ];
    args.extend(validate.iter().cloned());
    Cmd::script(&BODY.replace("{root_only}", ROOT_ONLY), args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        let out = "F\t600\tpostgres\tpostgres\tabc123\t/etc/x\nD\t755\troot\troot\t/etc\nN\t/nope\nO\t/dev/null\n";
        let st = parse_stat(out).expect("parses");
        assert_eq!(st.len(), 4);
        assert_eq!(
            st[0].kind,
            FileKind::File {
                sha256: "abc123".into(),
                mode: 0o600,
                owner: "postgres".into(),
                group: "postgres".into()
            }
        );
        assert_eq!(st[0].path, "/etc/x");
        assert!(matches!(st[1].kind, FileKind::Dir { mode: 0o755, .. }));
        assert_eq!(st[2].kind, FileKind::Missing);
        assert_eq!(st[3].kind, FileKind::Other);
    }

    #[test]
    fn refuses_garbage() {
        assert!(parse_stat("hello\n").is_none());
        assert!(parse_stat("F\tzz\ta\tb\tc\t/p\n").is_none());
    }

    /// Runs the install script with this machine's `sh` (as root, like on the hosts).
    #[allow(clippy::disallowed_methods)]
    fn install_locally(path: &std::path::Path, content: &str) -> std::process::Output {
        use std::io::Write;
        let c = install_script(&path.display().to_string(), "root", "root", 0o640, &[]);
        let mut child = std::process::Command::new(&c.argv()[0])
            .args(&c.argv()[1..])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("sh runs");
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(content.as_bytes())
            .expect("stdin");
        child.wait_with_output().expect("sh ends")
    }

    #[test]
    #[allow(clippy::print_stderr)] // says why it did not run
    fn install_refuses_a_directory_another_user_can_write() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        // The refusal is about ownership, which only root can set up (as on the hosts), below
        // directories only root can write: the checkout's target/ if it is such a place (a
        // checkout under /tmp is not), else /var/lib (root's on Debian).
        let root_only = |dir: &std::path::Path| {
            dir.ancestors()
                .all(|a| std::fs::metadata(a).is_ok_and(|m| m.uid() == 0 && m.permissions().mode() & 0o022 == 0))
        };
        let is_root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        let place = [
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/target")),
            std::path::Path::new("/var/lib"),
        ]
        .into_iter()
        .find(|d| is_root && d.is_dir() && root_only(d));
        let Some(place) = place else {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "CI=true: run as root (the test chowns), with target/ or /var/lib writable only by root"
            );
            eprintln!("not run: needs root and a directory only root can write (chown)");
            return;
        };
        let base = tempfile::Builder::new()
            .prefix(".pgha-install-test")
            .tempdir_in(place)
            .expect("tmp");
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let ok_dir = base.path().join("root-only");
        std::fs::create_dir(&ok_dir).expect("mkdir");
        let out = install_locally(&ok_dir.join("a.conf"), "hello\n");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let meta = std::fs::metadata(ok_dir.join("a.conf")).expect("installed");
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
        assert_eq!(std::fs::read_to_string(ok_dir.join("a.conf")).expect("read"), "hello\n");

        // A directory a service user owns (or anyone may write) is refused, through a symlink too.
        let svc_dir = base.path().join("service-owned");
        std::fs::create_dir(&svc_dir).expect("mkdir");
        std::os::unix::fs::chown(&svc_dir, Some(65534), Some(65534)).expect("chown");
        let out = install_locally(&svc_dir.join("b.conf"), "x");
        assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to install"));
        assert!(!svc_dir.join("b.conf").exists());
        assert_eq!(std::fs::read_dir(&svc_dir).expect("ls").count(), 0, "no temp file left");
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&svc_dir, &link).expect("symlink");
        let out = install_locally(&link.join("c.conf"), "x");
        assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
        let open = base.path().join("world-writable");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        let out = install_locally(&open.join("d.conf"), "x");
        assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
        // Below a service-owned directory, a root-owned one is still refused (it can be renamed).
        let below = svc_dir.join("root-owned");
        std::fs::create_dir(&below).expect("mkdir");
        let out = install_locally(&below.join("e.conf"), "x");
        assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    }

    #[test]
    fn install_passes_values_as_arguments() {
        let c = install_script(
            "/etc/a b",
            "root",
            "root",
            0o640,
            &["haproxy".into(), "-c".into(), "-f".into(), "{}".into()],
        );
        assert_eq!(
            &c.argv()[4..],
            ["/etc/a b", "root", "root", "640", "haproxy", "-c", "-f", "{}"]
        );
    }
}
