//! Commands run on the controller itself (the `psql` of `pgha verify`): argv with extra
//! environment (passwords go through a private passfile named by `PGPASSFILE`, never on a
//! command line or in `PGPASSWORD`: see `crate::conninfo::PassFile`), a timeout, and the child
//! killed if it overruns.

use std::time::Duration;

use super::{Cmd, Output};

/// Runs `cmd` locally with `env` added; `Err` says why it could not run at all.
#[allow(clippy::disallowed_methods)] // this module is the controller's process runner
pub async fn run(cmd: &Cmd, env: &[(&str, &str)], timeout: Duration) -> Result<Output, String> {
    let argv = cmd.argv();
    let mut c = tokio::process::Command::new(&argv[0]);
    c.args(&argv[1..]).stdin(std::process::Stdio::null()).kill_on_drop(true);
    // An inherited PGPASSWORD would win over pgha's passfile (libpq reads it first).
    c.env_remove("PGPASSWORD");
    for (k, v) in env {
        c.env(k, v);
    }
    match tokio::time::timeout(timeout, c.output()).await {
        Err(_) => Err(format!(
            "`{}` did not finish within {} s",
            cmd.summary(),
            timeout.as_secs()
        )),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("`{}` is not installed on this machine", argv[0]))
        }
        Ok(Err(e)) => Err(format!("cannot run `{}`: {e}", argv[0])),
        Ok(Ok(o)) => Ok(Output {
            code: o.status.code(),
            stdout: o.stdout,
            stderr: o.stderr,
        }),
    }
}
