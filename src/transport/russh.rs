//! The pure-Rust transport (`--transport russh`), for controllers without an OpenSSH client.
//! One SSH connection per host with many channels on it. Host keys are checked against the
//! endpoint's known_hosts file (accept-new only when asked; a changed key is always refused).
//! Authenticates with the key file only (no agent, no ~/.ssh/config).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::ChannelMsg;
use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey};
use tokio::sync::Semaphore;

use super::{Cmd, Endpoint, Output, Transport, TransportError};

/// Channels in flight per host (sshd's MaxSessions defaults to 10).
pub const MAX_SESSIONS: usize = 8;

/// How the host key check went, for the error message.
#[derive(Clone, Debug, Default)]
enum KeyVerdict {
    #[default]
    Unchecked,
    Known,
    Learned,
    Unknown,
    Changed(usize),
    Error(String),
}

struct Checker {
    host: String,
    port: u16,
    known_hosts: PathBuf,
    accept_new: bool,
    verdict: Arc<Mutex<KeyVerdict>>,
}

impl client::Handler for Checker {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &russh::keys::PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            self.set(KeyVerdict::Error(
                "host certificates are not supported by the russh transport".into(),
            ));
            return Ok(false);
        };
        let verdict = match russh::keys::check_known_hosts_path(&self.host, self.port, key, &self.known_hosts) {
            Ok(true) => KeyVerdict::Known,
            Ok(false) if self.accept_new => match learn(&self.host, self.port, key, &self.known_hosts) {
                Ok(()) => KeyVerdict::Learned,
                Err(e) => KeyVerdict::Error(e),
            },
            Ok(false) => KeyVerdict::Unknown,
            Err(russh::keys::Error::KeyChanged { line }) => KeyVerdict::Changed(line),
            Err(e) => KeyVerdict::Error(e.to_string()),
        };
        let ok = matches!(verdict, KeyVerdict::Known | KeyVerdict::Learned);
        self.set(verdict);
        Ok(ok)
    }
}

impl Checker {
    fn set(&self, v: KeyVerdict) {
        if let Ok(mut g) = self.verdict.lock() {
            *g = v;
        }
    }
}

fn learn(host: &str, port: u16, key: &PublicKey, path: &std::path::Path) -> Result<(), String> {
    russh::keys::known_hosts::learn_known_hosts_path(host, port, key, path).map_err(|e| e.to_string())
}

/// An open connection.
pub struct RusshTransport {
    ep: Endpoint,
    handle: Handle<Checker>,
    slots: Semaphore,
}

fn default_keys() -> Vec<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    ["id_ed25519", "id_ecdsa", "id_rsa"]
        .iter()
        .map(|k| home.join(".ssh").join(k))
        .collect()
}

impl RusshTransport {
    /// Connects, checks the host key, authenticates with the key file.
    pub async fn connect(ep: Endpoint) -> Result<Self, TransportError> {
        let target = format!("{}@{}:{}", ep.user, ep.address, ep.port);
        let known_hosts = ep
            .known_hosts
            .clone()
            .unwrap_or_else(|| super::expand_home(std::path::Path::new("~/.ssh/known_hosts")));
        let verdict = Arc::new(Mutex::new(KeyVerdict::Unchecked));
        let checker = Checker {
            host: ep.address.clone(),
            port: ep.port,
            known_hosts: known_hosts.clone(),
            accept_new: ep.accept_new_host_keys,
            verdict: verdict.clone(),
        };
        let config = Arc::new(client::Config {
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(5)),
            ..Default::default()
        });
        let addr = (ep.address.as_str(), ep.port);
        let connected = tokio::time::timeout(ep.connect_timeout, client::connect(config, addr, checker)).await;
        let mut handle = match connected {
            Err(_) => {
                return Err(TransportError::Unreachable {
                    host: ep.name.clone(),
                    target,
                    detail: format!("no answer within {} s", ep.connect_timeout.as_secs()),
                    hint: "the host does not answer: is it up, and is the address right?".into(),
                });
            }
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                let v = verdict.lock().map(|g| g.clone()).unwrap_or_default();
                let kh = known_hosts.display().to_string();
                return Err(match v {
                    KeyVerdict::Changed(line) => TransportError::HostKey {
                        host: ep.name.clone(),
                        target,
                        what: "CHANGED".into(),
                        hint: format!(
                            "{kh}:{line} records a different key: a reinstalled host, or a man in the middle. Check, then remove that line"
                        ),
                    },
                    KeyVerdict::Unknown => TransportError::HostKey {
                        host: ep.name.clone(),
                        target,
                        what: "not known".into(),
                        hint: format!(
                            "add the host's key to {kh}, or pass --accept-new-host-keys to trust it on first use"
                        ),
                    },
                    KeyVerdict::Error(msg) => TransportError::HostKey {
                        host: ep.name.clone(),
                        target,
                        what: "not verifiable".into(),
                        hint: format!("{msg} (known_hosts: {kh})"),
                    },
                    _ => TransportError::Unreachable {
                        host: ep.name.clone(),
                        target,
                        detail: e.to_string(),
                        hint: "check the address and `ssh.port`; sshd must be running".into(),
                    },
                });
            }
        };
        let keys = match &ep.key {
            Some(k) => vec![k.clone()],
            None => default_keys().into_iter().filter(|p| p.exists()).collect(),
        };
        let mut last = String::from("no key file (set ssh.key in the inventory)");
        for path in keys {
            let key = match russh::keys::load_secret_key(&path, None) {
                Ok(k) => k,
                Err(e) => {
                    last = format!("{}: {e}", path.display());
                    continue;
                }
            };
            let hash: Option<HashAlg> = handle.best_supported_rsa_hash().await.ok().flatten().flatten();
            let auth = handle
                .authenticate_publickey(ep.user.clone(), PrivateKeyWithHashAlg::new(Arc::new(key), hash))
                .await
                .map_err(|e| TransportError::Auth {
                    host: ep.name.clone(),
                    target: target.clone(),
                    detail: e.to_string(),
                })?;
            if auth.success() {
                return Ok(Self {
                    ep,
                    handle,
                    slots: Semaphore::new(MAX_SESSIONS),
                });
            }
            last = format!("{} was refused", path.display());
        }
        Err(TransportError::Auth {
            host: ep.name.clone(),
            target,
            detail: last,
        })
    }

    fn session_error(&self, cmd: &Cmd, detail: String) -> TransportError {
        TransportError::Session {
            host: self.ep.name.clone(),
            cmd: cmd.summary(),
            detail,
        }
    }
}

#[async_trait::async_trait]
impl Transport for RusshTransport {
    fn endpoint(&self) -> &Endpoint {
        &self.ep
    }

    async fn exec(&self, cmd: &Cmd, stdin: Option<&[u8]>, timeout: Duration) -> Result<Output, TransportError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|e| self.session_error(cmd, e.to_string()))?;
        let line = cmd.command_line(self.ep.become_);
        let run = async {
            let mut ch = self.handle.channel_open_session().await?;
            ch.exec(true, line.as_bytes()).await?;
            if let Some(data) = stdin {
                ch.data(data).await?;
            }
            ch.eof().await?;
            let mut out = Output::default();
            let mut code = None;
            while let Some(msg) = ch.wait().await {
                match msg {
                    ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
                    ChannelMsg::ExtendedData { data, ext: 1 } => out.stderr.extend_from_slice(&data),
                    ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status as i32),
                    _ => {}
                }
            }
            out.code = code;
            Ok::<_, russh::Error>(out)
        };
        match tokio::time::timeout(timeout, run).await {
            Err(_) => Err(TransportError::Timeout {
                host: self.ep.name.clone(),
                cmd: cmd.summary(),
                secs: timeout.as_secs(),
            }),
            Ok(Err(e)) => Err(self.session_error(cmd, e.to_string())),
            Ok(Ok(o)) => Ok(o),
        }
    }

    async fn close(&self) -> Result<(), TransportError> {
        self.handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await
            .map_err(|e| TransportError::Session {
                host: self.ep.name.clone(),
                cmd: "close".into(),
                detail: e.to_string(),
            })
    }
}
