//! A scripted transport for unit tests of facts, modules and the engine: answers each command
//! line by the first matching rule and records every command it was asked to run. Never
//! evidence that anything works on a real host.

use std::sync::Mutex;
use std::time::Duration;

use super::{Cmd, Endpoint, Output, Transport, TransportError};

/// One scripted answer: commands whose line contains `needle` get `output`.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Substring of the command line.
    pub needle: String,
    /// The answer.
    pub output: Output,
}

/// The fake.
pub struct Fake {
    ep: Endpoint,
    rules: Vec<Rule>,
    /// Every command line run, in order, with its stdin.
    pub log: Mutex<Vec<(String, Option<Vec<u8>>)>>,
}

impl Fake {
    /// A fake host called `name` answering by `rules` (unmatched commands exit 0 silently).
    pub fn new(name: &str, rules: Vec<Rule>) -> Self {
        Self {
            ep: Endpoint {
                name: name.into(),
                address: "192.0.2.1".into(),
                port: 22,
                user: "root".into(),
                key: None,
                known_hosts: None,
                become_: false,
                accept_new_host_keys: false,
                connect_timeout: Duration::from_secs(1),
            },
            rules,
            log: Mutex::new(Vec::new()),
        }
    }

    /// The command lines run so far.
    pub fn commands(&self) -> Vec<String> {
        self.log
            .lock()
            .map(|l| l.iter().map(|(c, _)| c.clone()).collect())
            .unwrap_or_default()
    }
}

/// A rule answering `stdout` with exit 0.
pub fn answer(needle: &str, stdout: &str) -> Rule {
    Rule {
        needle: needle.into(),
        output: Output {
            code: Some(0),
            stdout: stdout.as_bytes().to_vec(),
            stderr: Vec::new(),
        },
    }
}

#[async_trait::async_trait]
impl Transport for Fake {
    fn endpoint(&self) -> &Endpoint {
        &self.ep
    }

    async fn exec(&self, cmd: &Cmd, stdin: Option<&[u8]>, _timeout: Duration) -> Result<Output, TransportError> {
        let line = cmd.command_line(false);
        if let Ok(mut log) = self.log.lock() {
            log.push((line.clone(), stdin.map(<[u8]>::to_vec)));
        }
        Ok(self
            .rules
            .iter()
            .find(|r| line.contains(&r.needle))
            .map(|r| r.output.clone())
            .unwrap_or(Output {
                code: Some(0),
                ..Output::default()
            }))
    }

    async fn close(&self) -> Result<(), TransportError> {
        Ok(())
    }
}
