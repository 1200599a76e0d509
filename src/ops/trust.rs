//! The trust half of `pgha pki status`: which CA each trust bundle of the state directory
//! holds, and with `--live`, which bundle each host's services are configured with and which
//! CA signed the certificate each TLS endpoint presents — the picture to read during a CA
//! rotation.

use std::collections::BTreeMap;

use futures::future::join_all;
use serde::Serialize;

use super::pool::{Connect, close_all, connect_all};
use crate::endpoints;
use crate::inventory::Inventory;
use crate::pki::{self, Ca, CertInfo, StateDir};
use crate::render::paths;
use crate::transport::{Cmd, DEFAULT_TIMEOUT};

/// A CA the state directory knows, with the label used in reports.
struct KnownCa {
    label: String,
    der: Vec<u8>,
}

fn known_cas(state: &StateDir) -> Vec<KnownCa> {
    let mut out = Vec::new();
    let mut add = |label: &str, ca: Option<Ca>| {
        if let Some(ca) = ca {
            out.push(KnownCa {
                label: format!("{label} {}", short(&ca.info().serial_hex())),
                der: ca.info().der.clone(),
            });
        }
    };
    add("current", Ca::load(state).ok().flatten());
    add("next", Ca::load_next(state).ok().flatten());
    if let Ok(entries) = std::fs::read_dir(state.ca_dir().join("archive")) {
        for e in entries.flatten() {
            let dir = e.path();
            add(
                "old",
                Ca::load_from(&dir.join("ca.crt"), &dir.join("ca.key")).ok().flatten(),
            );
        }
    }
    out
}

fn short(serial: &str) -> String {
    serial.replace(':', "").chars().take(8).collect()
}

fn label_of(cas: &[KnownCa], der: &[u8]) -> String {
    cas.iter()
        .find(|c| c.der == der)
        .map_or_else(|| "unknown CA".into(), |c| c.label.clone())
}

fn issuer_label(cas: &[KnownCa], cert: &CertInfo) -> String {
    cas.iter()
        .find(|c| cert.signed_by(&c.der))
        .map_or_else(|| "unknown CA".into(), |c| c.label.clone())
}

/// What a bundle generation holds, e.g. `ca-bundle-2.pem: current 1a2b3c4d + next 5e6f7a8b`.
fn bundle_line(state: &StateDir, cas: &[KnownCa], file: &str) -> String {
    let path = state.trust_dir().join(file);
    match std::fs::read_to_string(&path) {
        Ok(pem) => {
            let labels: Vec<String> = pki::bundle::ders(&pem).iter().map(|d| label_of(cas, d)).collect();
            format!("{file}: {}", labels.join(" + "))
        }
        Err(_) => format!("{file}: not in the state directory"),
    }
}

/// Lines for the text report: the rotation phase and what the newest bundles hold.
pub fn summary(state: &StateDir) -> Vec<String> {
    let cas = known_cas(state);
    let mut lines = Vec::new();
    if let Ok(Some(r)) = pki::load_rotation(state) {
        lines.push(format!(
            "CA rotation in progress: {} → {}, next phase {}",
            short(&r.old_ca),
            short(&r.new_ca),
            r.phase
        ));
    }
    if let Ok(Some(b)) = pki::current_bundle(state) {
        lines.push(format!(
            "newest trust bundle {}",
            bundle_line(state, &cas, &b.file_name())
        ));
        lines.push(format!(
            "application clients: {} (same content, fixed name)",
            state.current_bundle().display()
        ));
    }
    lines
}

/// One host as seen live.
#[derive(Debug, Serialize)]
pub struct HostTrust {
    /// The host.
    pub host: String,
    /// The bundle(s) its service configurations name, with the CAs each holds.
    pub trusts: Vec<String>,
    /// `port: CA label` for each TLS endpoint it serves.
    pub presents: Vec<String>,
    /// Why it could not be read, if so.
    pub error: Option<String>,
}

/// Connects to every host and reads which bundle its services use and what it presents.
pub async fn live(inv: &Inventory, state: &StateDir, connect: &Connect) -> Vec<HostTrust> {
    let (conns, errors) = connect_all(inv, connect).await;
    let cas = known_cas(state);
    let configs = [
        paths::ETCD_CONFIG,
        paths::PATRONI_CONFIG,
        paths::HAPROXY_CONFIG,
        paths::PGBOUNCER_INI,
    ];
    let grep = Cmd::script(
        "grep -ho 'ca-bundle-[0-9]*\\.pem' \"$@\" 2>/dev/null | sort -u; true",
        configs,
    );
    let trusts: BTreeMap<String, Result<Vec<String>, String>> = join_all(conns.iter().map(|(name, c)| {
        let grep = grep.clone();
        async move {
            let r = match c.exec(&grep, None, DEFAULT_TIMEOUT).await {
                Ok(o) if o.success() => Ok(o.stdout_text().lines().map(str::to_owned).collect()),
                Ok(o) => Err(o.stderr_tail(2)),
                Err(e) => Err(e.to_string()),
            };
            (name.clone(), r)
        }
    }))
    .await
    .into_iter()
    .collect();
    let presented = endpoints::probe(inv, &conns).await;
    close_all(&conns).await;
    inv.hosts
        .iter()
        .map(|h| {
            let name = h.name.to_string();
            if let Some(e) = errors.get(&name) {
                return HostTrust {
                    host: name,
                    trusts: vec![],
                    presents: vec![],
                    error: Some(e.to_string()),
                };
            }
            let (trusts, error) = match trusts.get(&name) {
                Some(Ok(files)) => (files.iter().map(|f| bundle_line(state, &cas, f)).collect(), None),
                Some(Err(e)) => (vec![], Some(e.clone())),
                None => (vec![], Some("not connected".into())),
            };
            let presents = presented
                .iter()
                .filter(|p| p.endpoint.host == h.name)
                .map(|p| match &p.cert {
                    Ok(c) => format!("{}: {}", p.endpoint.port, issuer_label(&cas, c)),
                    Err(e) => format!("{}: {e}", p.endpoint.port),
                })
                .collect();
            HostTrust {
                host: name,
                trusts,
                presents,
                error,
            }
        })
        .collect()
}
