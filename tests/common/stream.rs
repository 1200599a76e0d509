//! Running pgha with its output read as it comes: lines of stderr (progress, recap) arrive on
//! a channel so a test can act at a given moment (send SIGINT, stop a host), and both streams
//! are drained on threads (a long run prints more than a pipe holds).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;

/// A pgha process whose stderr lines arrive on [`Streamed::lines`].
pub struct Streamed {
    /// The process (its PID for signals).
    pub child: Child,
    /// Each stderr line, as printed.
    pub lines: Receiver<String>,
    args: Vec<String>,
    stdout: JoinHandle<String>,
    stderr: JoinHandle<String>,
}

/// Starts the real binary with `CI=true` and `envs`.
pub fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Streamed {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgha"))
        .args(args)
        .env("CI", "true")
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pgha runs");
    let out = child.stdout.take().expect("stdout");
    let err = child.stderr.take().expect("stderr");
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    let stderr = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let stdout = std::thread::spawn(move || std::io::read_to_string(out).unwrap_or_default());
    Streamed {
        child,
        lines,
        args: args.iter().map(|a| a.to_string()).collect(),
        stdout,
        stderr,
    }
}

impl Streamed {
    /// The process ID, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the exit; returns the status, stdout and stderr (recorded for the secret scan).
    pub fn finish(mut self) -> (ExitStatus, String, String) {
        let status = self.child.wait().expect("pgha exits");
        let o = self.stdout.join().expect("stdout");
        let e = self.stderr.join().expect("stderr");
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        super::record(&args, &o, &e);
        (status, o, e)
    }
}
