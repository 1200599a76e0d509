//! A transport wrapper that counts round trips (commands sent) and reports each command to
//! the reporter when `-v` is on, so the recap can show how many round trips each host cost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::events::{Event, Reporter};
use crate::transport::{Cmd, Conn, Endpoint, Output, Transport, TransportError};

/// Counts every `exec` of the wrapped transport.
pub struct Counting {
    inner: Conn,
    count: AtomicU32,
    verbose: bool,
    reporter: Arc<dyn Reporter>,
}

impl Counting {
    /// Wraps `inner`.
    pub fn new(inner: Conn, verbose: bool, reporter: Arc<dyn Reporter>) -> Self {
        Self {
            inner,
            count: AtomicU32::new(0),
            verbose,
            reporter,
        }
    }

    /// Commands sent so far.
    pub fn count(&self) -> u32 {
        self.count.load(Ordering::Relaxed)
    }
}

#[async_trait::async_trait]
impl Transport for Counting {
    fn endpoint(&self) -> &Endpoint {
        self.inner.endpoint()
    }

    async fn exec(&self, cmd: &Cmd, stdin: Option<&[u8]>, timeout: Duration) -> Result<Output, TransportError> {
        self.count.fetch_add(1, Ordering::Relaxed);
        if self.verbose {
            self.reporter.event(&Event::Command {
                host: self.endpoint().name.clone(),
                cmd: cmd.summary(),
            });
        }
        self.inner.exec(cmd, stdin, timeout).await
    }

    async fn close(&self) -> Result<(), TransportError> {
        self.inner.close().await
    }
}
