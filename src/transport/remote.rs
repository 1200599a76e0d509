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

/// Installs stdin at `path` atomically: a temp file in the same directory, owner, mode, fsync,
/// then rename over the target (a reader sees the old or the new file, never a part), then
/// fsync of the directory. On any failure the temp file is removed.
///
/// With `validate` (an argv where `{}` stands for the new file), the new file is checked in
/// place before the rename; a failed check exits 3 and leaves the old file untouched.
pub fn install_script(path: &str, owner: &str, group: &str, mode: u32, validate: &[String]) -> Cmd {
    const BODY: &str = r#"set -e
p=$1 d=$(dirname -- "$1") o=$2 g=$3 m=$4
shift 4
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
    Cmd::script(BODY, args)
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
