//! Which Debian mirror to debootstrap from: the first non-security `deb` source in the machine's
//! own apt configuration (deb822 `*.sources` first, then `sources.list`), unless `--mirror` says
//! otherwise. Parsing is pure; [`from_apt_config`] reads the files.

use std::path::Path;

/// Finds the mirror in `/etc/apt`, or `None` when there is no usable `deb` source.
pub fn from_apt_config(etc_apt: &Path) -> Option<String> {
    let mut files: Vec<_> = std::fs::read_dir(etc_apt.join("sources.list.d"))
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    for f in files.iter().filter(|p| p.extension().is_some_and(|e| e == "sources")) {
        if let Some(m) = std::fs::read_to_string(f).ok().and_then(|t| parse_deb822(&t)) {
            return Some(m);
        }
    }
    let mut lists = vec![etc_apt.join("sources.list")];
    lists.extend(files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "list")));
    lists
        .iter()
        .find_map(|f| std::fs::read_to_string(f).ok().and_then(|t| parse_one_line(&t)))
}

fn is_security(suite: &str) -> bool {
    suite.ends_with("-security") || suite.ends_with("/updates")
}

/// The first `URIs:` of a deb822 stanza with `Types: deb` whose suites are not security suites.
pub fn parse_deb822(text: &str) -> Option<String> {
    for stanza in text.split("\n\n") {
        let mut types = "deb";
        let (mut uris, mut suites, mut enabled) = (None, "", true);
        for line in stanza.lines().filter(|l| !l.trim_start().starts_with('#')) {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            match k.trim().to_ascii_lowercase().as_str() {
                "types" => types = v.trim(),
                "uris" => uris = v.split_whitespace().next(),
                "suites" => suites = v.trim(),
                "enabled" => enabled = v.trim() != "no",
                _ => {}
            }
        }
        let deb = types.split_whitespace().any(|t| t == "deb");
        if enabled
            && deb
            && !suites.split_whitespace().any(is_security)
            && let Some(u) = uris
        {
            return Some(u.to_string());
        }
    }
    None
}

/// The URI of the first one-line `deb` source that is not a security suite.
pub fn parse_one_line(text: &str) -> Option<String> {
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        if words.next() != Some("deb") {
            continue;
        }
        let mut rest: Vec<&str> = words.collect();
        if rest.first().is_some_and(|w| w.starts_with('[')) {
            let end = rest.iter().position(|w| w.ends_with(']'))?;
            rest.drain(..=end);
        }
        if let [uri, suite, ..] = rest[..]
            && !is_security(suite)
        {
            return Some(uri.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_skips_security() {
        let t = "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n\n\
                 Types: deb\n# comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n";
        assert_eq!(parse_deb822(t).as_deref(), Some("http://mirror.example/debian"));
    }

    #[test]
    fn one_line_with_options() {
        let t = "# x\ndeb-src http://a.example/debian bookworm main\n\
                 deb [arch=amd64 signed-by=/k.gpg] http://b.example/debian bookworm main\n";
        assert_eq!(parse_one_line(t).as_deref(), Some("http://b.example/debian"));
        assert_eq!(parse_one_line("deb http://s.example/ bookworm-security main\n"), None);
    }
}
