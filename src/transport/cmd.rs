//! Commands as argv, never as interpolated shell strings: [`Cmd`] quotes every argument for the
//! remote shell (sshd runs the command line through the login user's shell), and adds
//! `sudo -n --` when the host needs `become`. Nothing here does I/O.

use std::fmt;

/// A command to run on a host: a program and its arguments, quoted only when sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmd {
    argv: Vec<String>,
}

impl Cmd {
    /// A command running `program`.
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            argv: vec![program.into()],
        }
    }

    /// A POSIX `sh` script; `args` become `$1`, `$2`, … inside it (never spliced into its text).
    pub fn script(body: &str, args: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let mut cmd = Self::new("sh").arg("-c").arg(body).arg("pgha");
        cmd.argv.extend(args.into_iter().map(Into::into));
        cmd
    }

    /// Appends an argument.
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.argv.push(a.into());
        self
    }

    /// Appends arguments.
    pub fn args(mut self, a: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.argv.extend(a.into_iter().map(Into::into));
        self
    }

    /// The argv.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// The command line sent to the remote shell, each argument single-quoted as needed;
    /// `become_` prefixes `sudo -n --` (non-interactive: fails instead of prompting).
    pub fn command_line(&self, become_: bool) -> String {
        let quoted = self.argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ");
        if become_ {
            format!("sudo -n -- {quoted}")
        } else {
            quoted
        }
    }

    /// A short form for messages and `-v` output: scripts show only their first line.
    pub fn summary(&self) -> String {
        if self.argv.len() >= 3 && self.argv[0] == "sh" && self.argv[1] == "-c" {
            let first = self.argv[2].lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
            return format!("sh -c '{first}…'");
        }
        self.argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

/// Quotes one word for a POSIX shell: bare when it is made of safe characters only,
/// otherwise inside single quotes with embedded `'` written as `'\''`.
pub fn quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_hostile_words() {
        assert_eq!(quote("systemctl"), "systemctl");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn become_prefixes_non_interactive_sudo() {
        let c = Cmd::new("systemctl").arg("reload").arg("patroni");
        assert_eq!(c.command_line(false), "systemctl reload patroni");
        assert_eq!(c.command_line(true), "sudo -n -- systemctl reload patroni");
    }

    #[test]
    fn script_arguments_are_positional() {
        let c = Cmd::script("echo \"$1\"", ["x y"]);
        assert_eq!(c.command_line(false), "sh -c 'echo \"$1\"' pgha 'x y'");
        assert_eq!(c.summary(), "sh -c 'echo \"$1\"…'");
    }
}
