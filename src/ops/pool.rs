//! The connection pool: one connection per host, opened in parallel once per command, closed
//! at the end. Every operation that talks to hosts goes through here.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::join_all;

use super::OpsError;
use crate::inventory::Inventory;
use crate::transport::{self, Conn, Endpoint, TransportError};

/// How to reach the hosts.
#[derive(Clone, Debug, Default)]
pub struct Connect {
    /// SSH implementation.
    pub transport: transport::Kind,
    /// Trust the host key of a host seen for the first time.
    pub accept_new_host_keys: bool,
    /// Only these hosts (empty: all).
    pub limit: Vec<String>,
}

impl Connect {
    /// `limit` as a set (None when empty), as the engine takes it.
    pub fn limit_set(&self) -> Option<std::collections::BTreeSet<String>> {
        if self.limit.is_empty() {
            None
        } else {
            Some(self.limit.iter().cloned().collect())
        }
    }

    /// Every `--limit` name must be a host of `inv`.
    pub fn check_limit(&self, inv: &Inventory) -> Result<(), OpsError> {
        for l in &self.limit {
            if inv.host(l).is_none() {
                return Err(OpsError::InvalidInput(format!(
                    "--limit {l}: no such host in {}",
                    inv.path.display()
                )));
            }
        }
        Ok(())
    }
}

/// Open connections by host name.
pub type Conns = BTreeMap<String, Conn>;

/// Opens one connection per host (in parallel, `limit` honoured); unreachable hosts come back
/// as errors.
pub async fn connect_all(inv: &Inventory, c: &Connect) -> (Conns, BTreeMap<String, TransportError>) {
    let wanted: Vec<_> = inv
        .hosts
        .iter()
        .filter(|h| c.limit.is_empty() || c.limit.iter().any(|l| l == h.name.as_str()))
        .collect();
    let results = join_all(wanted.iter().map(|h| async move {
        let ep = Endpoint::from_host(h, c.accept_new_host_keys);
        (h.name.to_string(), transport::connect(c.transport, ep).await)
    }))
    .await;
    let mut ok = BTreeMap::new();
    let mut err = BTreeMap::new();
    for (name, r) in results {
        match r {
            Ok(conn) => {
                ok.insert(name, conn);
            }
            Err(e) => {
                err.insert(name, e);
            }
        }
    }
    (ok, err)
}

/// Connects to every host (or `limit`); when some are unreachable, closes the others and
/// returns [`OpsError::Unreachable`] (nothing was changed).
pub async fn connect_every(inv: &Inventory, c: &Connect, what: &str) -> Result<Conns, OpsError> {
    let (conns, errors) = connect_all(inv, c).await;
    if errors.is_empty() {
        return Ok(conns);
    }
    close_all(&conns).await;
    Err(OpsError::Unreachable {
        what: what.to_string(),
        errors: errors.into_values().collect(),
    })
}

/// Closes every connection (errors ignored: the run is over).
pub async fn close_all(conns: &Conns) {
    join_all(conns.values().map(|c| {
        let c: Arc<dyn transport::Transport> = c.clone();
        async move {
            let _ = c.close().await;
        }
    }))
    .await;
}
