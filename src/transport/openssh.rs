//! The default transport: the system's OpenSSH client with one multiplexed master connection
//! per host (openssh crate, native mux). It honours `~/.ssh/config`, the agent and ProxyJump,
//! checks host keys strictly (accept-new only when asked) and runs with BatchMode (never
//! prompts).

use std::time::Duration;

use openssh::{KnownHosts, Session, SessionBuilder, Stdio};
use tokio::io::AsyncWriteExt;
use tokio::sync::{RwLock, Semaphore};

use super::{Cmd, Endpoint, Output, Transport, TransportError};

/// Commands in flight per host; sshd's MaxSessions defaults to 10.
pub const MAX_SESSIONS: usize = 8;

/// An open multiplexed connection.
pub struct OpensshTransport {
    ep: Endpoint,
    session: RwLock<Option<Session>>,
    slots: Semaphore,
}

impl OpensshTransport {
    /// Opens the master connection (one TCP connection and handshake for the whole run).
    pub async fn connect(ep: Endpoint) -> Result<Self, TransportError> {
        let mut b = SessionBuilder::default();
        b.user(ep.user.clone())
            .port(ep.port)
            .connect_timeout(ep.connect_timeout)
            .server_alive_interval(Duration::from_secs(5))
            .control_directory(std::env::temp_dir())
            .known_hosts_check(if ep.accept_new_host_keys {
                KnownHosts::Add
            } else {
                KnownHosts::Strict
            });
        if let Some(k) = &ep.key {
            b.keyfile(k);
        }
        if let Some(kh) = &ep.known_hosts {
            b.user_known_hosts_file(kh);
        }
        let session = b.connect_mux(&ep.address).await.map_err(|e| classify(&ep, &e))?;
        Ok(Self {
            ep,
            session: RwLock::new(Some(session)),
            slots: Semaphore::new(MAX_SESSIONS),
        })
    }
}

fn error_text(e: &openssh::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Turns ssh's words into an error that names the host and says what to do.
fn classify(ep: &Endpoint, e: &openssh::Error) -> TransportError {
    let detail = error_text(e);
    let target = format!("{}@{}:{}", ep.user, ep.address, ep.port);
    let host = ep.name.clone();
    let known_hosts = ep
        .known_hosts
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "~/.ssh/known_hosts".into());
    if detail.contains("IDENTIFICATION HAS CHANGED")
        || detail.contains("Host key for") && detail.contains("has changed")
    {
        return TransportError::HostKey {
            host,
            target,
            what: "CHANGED".into(),
            hint: format!(
                "the host presents a different key than {known_hosts} records: a reinstalled host, or a man in the middle. Check with the host's administrator, then remove the old line (ssh-keygen -R {} -f {known_hosts})",
                ep.address
            ),
        };
    }
    if detail.contains("Host key verification failed")
        || detail.contains("No ED25519 host key is known")
        || detail.contains("host key is known")
    {
        return TransportError::HostKey {
            host,
            target,
            what: "not known".into(),
            hint: format!(
                "add the host's key to {known_hosts} (ssh-keyscan -p {} {} after checking its fingerprint), or pass --accept-new-host-keys to trust it on first use",
                ep.port, ep.address
            ),
        };
    }
    if detail.contains("Permission denied") || detail.contains("Too many authentication failures") {
        return TransportError::Auth {
            host,
            target,
            detail: last_line(&detail),
        };
    }
    let hint = if detail.contains("Connection refused") {
        "sshd is not listening there: check the address and `ssh.port`".to_string()
    } else if detail.contains("timed out")
        || detail.contains("No route to host")
        || detail.contains("Network is unreachable")
    {
        "the host does not answer: is it up, and is the address right?".to_string()
    } else if detail.contains("No such file or directory") && detail.contains("ssh") {
        "the OpenSSH client is missing: apt-get install openssh-client, or use --transport russh".to_string()
    } else {
        format!("try `ssh -p {} {}@{}` by hand", ep.port, ep.user, ep.address)
    };
    TransportError::Unreachable {
        host,
        target,
        detail: last_line(&detail),
        hint,
    }
}

fn last_line(s: &str) -> String {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_string()
}

#[async_trait::async_trait]
impl Transport for OpensshTransport {
    fn endpoint(&self) -> &Endpoint {
        &self.ep
    }

    async fn exec(&self, cmd: &Cmd, stdin: Option<&[u8]>, timeout: Duration) -> Result<Output, TransportError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|e| self.session_error(cmd, e.to_string()))?;
        let guard = self.session.read().await;
        let session = guard
            .as_ref()
            .ok_or_else(|| self.session_error(cmd, "connection already closed".into()))?;
        let line = cmd.command_line(self.ep.become_);
        let run = async {
            let mut c = session.raw_command(&line);
            c.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = c.spawn().await?;
            let writer = child.stdin().take();
            let feed = async {
                if let (Some(mut w), Some(data)) = (writer, stdin) {
                    w.write_all(data).await?;
                    w.shutdown().await?;
                }
                Ok::<(), std::io::Error>(())
            };
            let (fed, out) = tokio::join!(feed, child.wait_with_output());
            let out = out?;
            fed.map_err(openssh::Error::ChildIo)?;
            Ok::<_, openssh::Error>(out)
        };
        match tokio::time::timeout(timeout, run).await {
            Err(_) => Err(TransportError::Timeout {
                host: self.ep.name.clone(),
                cmd: cmd.summary(),
                secs: timeout.as_secs(),
            }),
            Ok(Err(e)) => Err(self.session_error(cmd, error_text(&e))),
            Ok(Ok(o)) => Ok(Output {
                code: o.status.code(),
                stdout: o.stdout,
                stderr: o.stderr,
            }),
        }
    }

    async fn close(&self) -> Result<(), TransportError> {
        let session = self.session.write().await.take();
        if let Some(s) = session {
            s.close().await.map_err(|e| TransportError::Session {
                host: self.ep.name.clone(),
                cmd: "close".into(),
                detail: error_text(&e),
            })?;
        }
        Ok(())
    }
}

impl OpensshTransport {
    fn session_error(&self, cmd: &Cmd, detail: String) -> TransportError {
        TransportError::Session {
            host: self.ep.name.clone(),
            cmd: cmd.summary(),
            detail,
        }
    }
}
