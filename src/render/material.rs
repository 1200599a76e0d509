//! What rendering needs from the PKI and the secret store, as plain data: the CA bundle, each
//! host's leaf certificates and keys, and the generated passwords. The `pki` module fills it;
//! tests fill it with fixed fake text. Nothing here generates or reads anything.

use std::collections::BTreeMap;
use std::fmt;

use crate::inventory::HostName;

/// The kinds of leaf certificate of docs/design.md §3: the PKI's own type (one concept, one type).
pub use crate::pki::LeafKind;

/// One issued leaf: the certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct Leaf {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key, PEM. Never printed: `Debug` shows `***`.
    pub key_pem: String,
}

impl fmt::Debug for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leaf")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &"***")
            .finish()
    }
}

/// The generated passwords, plus the SCRAM verifiers PgBouncer's auth file needs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    /// PostgreSQL superuser (`postgres`) password.
    pub superuser: String,
    /// Replication user password.
    pub replication: String,
    /// pg_rewind user password.
    pub rewind: String,
    /// Patroni REST API password (unsafe endpoints, patronictl).
    pub patroni_rest: String,
    /// PgBouncer `auth_user` password (written in clear in its auth file).
    pub pgbouncer_auth: String,
    /// Application role → SCRAM-SHA-256 verifier, exactly as stored in PostgreSQL.
    pub app_verifiers: BTreeMap<String, String>,
    /// `pgha_verify`'s SCRAM-SHA-256 verifier, exactly as stored in PostgreSQL: in PgBouncer's
    /// auth file like the application roles, so that verify and the drills log in without
    /// `auth_query` (which needs a server of the auth database: during an etcd quorum loss the
    /// primary is demoted, and an RO login that asked the RW pool failed).
    pub verify_verifier: String,
    /// pgBackRest `repo1-cipher-pass` (empty without a `backup` host); only the repository
    /// host's configuration carries it.
    pub repo_cipher: String,
    /// keepalived's `auth_pass` (8 alphanumerics; empty without a VIP).
    pub vrrp_auth: String,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("app_users", &self.app_verifiers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Everything rendering needs from the PKI.
#[derive(Clone, Debug, Default)]
pub struct Material {
    /// File name of the CA bundle on hosts, versioned (e.g. `ca-bundle-1.pem`, docs/design.md §5):
    /// a new bundle gets a new name so that Patroni's SIGHUP picks it up.
    pub ca_bundle_file: String,
    /// The CA bundle, PEM (one or more CA certificates).
    pub ca_bundle_pem: String,
    /// Leaves by host and kind.
    pub leaves: BTreeMap<(HostName, LeafKind), Leaf>,
    /// Passwords and verifiers.
    pub secrets: Secrets,
    /// etcd members whose bootstrap settings are fixed by the membership record (a member that
    /// joined a formed cluster: `existing` and the members at its join). Others: `new` and
    /// every inventory member.
    pub etcd_bootstrap: BTreeMap<HostName, EtcdBootstrap>,
}

/// How an etcd member bootstraps: `initial-cluster-state` and `initial-cluster` (read by etcd
/// only at its first start; kept the same afterwards so its config never changes).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EtcdBootstrap {
    /// `new` (forming the cluster) or `existing` (joining it after `member add`).
    pub state: String,
    /// `name=peer-url,…`: for a joining member, exactly the members after its `member add`.
    pub initial_cluster: String,
}

impl Material {
    /// The leaf of `kind` for `host`, if issued.
    pub fn leaf(&self, host: &HostName, kind: LeafKind) -> Option<&Leaf> {
        self.leaves.get(&(host.clone(), kind))
    }
}
