//! What the lab is made of: the release, the subnet and its addresses, and the default eight
//! hosts with their data centres and roles. Pure values and parsing; no I/O.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::LabError;
use crate::inventory::Role;

/// The Debian release lab hosts run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Release {
    /// Debian 13, the primary platform.
    Trixie,
    /// Debian 12, the secondary platform.
    Bookworm,
}

impl Release {
    /// The codename debootstrap and apt use.
    pub fn as_str(self) -> &'static str {
        match self {
            Release::Trixie => "trixie",
            Release::Bookworm => "bookworm",
        }
    }

    /// The PostgreSQL major version Debian ships in this release.
    pub fn postgres_major(self) -> u32 {
        match self {
            Release::Trixie => 17,
            Release::Bookworm => 15,
        }
    }

    /// Every package pgha installs on hosts; their .debs are cached in the base image.
    pub fn cluster_packages(self) -> Vec<String> {
        let mut v = vec![format!("postgresql-{}", self.postgres_major())];
        v.extend(
            [
                "postgresql-client",
                "patroni",
                // Patroni's etcd3 client needs python-etcd; patroni only Depends on one of
                // several DCS libraries (apt picks consul).
                "python3-etcd",
                "etcd-server",
                "etcd-client",
                "haproxy",
                "pgbouncer",
                "curl",
                "openssl",
                // HAProxy's server-state save on reload (the haproxy.service drop-in).
                "socat",
            ]
            .map(String::from),
        );
        v
    }
}

impl FromStr for Release {
    type Err = LabError;
    fn from_str(s: &str) -> Result<Self, LabError> {
        match s {
            "trixie" => Ok(Release::Trixie),
            "bookworm" => Ok(Release::Bookworm),
            other => Err(LabError::BadRelease(other.to_string())),
        }
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An IPv4 network the lab owns, e.g. `10.213.77.0/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    network: Ipv4Addr,
    prefix: u8,
}

/// The default lab subnet: private, and rarely used by clouds, VPNs or container runtimes.
pub const DEFAULT_SUBNET: &str = "10.213.77.0/24";

impl Subnet {
    /// The network address.
    pub fn network(self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(self) -> u8 {
        self.prefix
    }

    /// The `n`-th address of the network.
    pub fn nth(self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + n)
    }

    /// The controller's address, carried by the lab bridge.
    pub fn gateway(self) -> Ipv4Addr {
        self.nth(1)
    }

    fn mask(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        }
    }

    /// Whether two networks share any address.
    pub fn overlaps(self, other: Subnet) -> bool {
        let p = self.prefix.min(other.prefix);
        let m = Self::mask(p);
        u32::from(self.network) & m == u32::from(other.network) & m
    }
}

impl FromStr for Subnet {
    type Err = LabError;
    /// Parses `a.b.c.d/len` (a bare address counts as /32).
    fn from_str(s: &str) -> Result<Self, LabError> {
        let bad = |why: &str| LabError::BadSubnet {
            value: s.to_string(),
            why: why.to_string(),
        };
        let (addr, len) = s.split_once('/').unwrap_or((s, "32"));
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad("not an IPv4 address"))?;
        let prefix: u8 = len.parse().map_err(|_| bad("prefix length is not a number"))?;
        if prefix > 32 {
            return Err(bad("prefix length above 32"));
        }
        let network = Ipv4Addr::from(u32::from(addr) & Self::mask(prefix));
        Ok(Subnet { network, prefix })
    }
}

impl Subnet {
    /// Parses a subnet the lab can use: /8 to /26 (room for the host numbers up to .41), given
    /// as its network address.
    pub fn parse_lab(s: &str) -> Result<Self, LabError> {
        let net: Subnet = s.parse()?;
        let bad = |why: &str| LabError::BadSubnet {
            value: s.to_string(),
            why: why.to_string(),
        };
        if !(8..=26).contains(&net.prefix) {
            return Err(bad("the prefix must be between /8 and /26"));
        }
        let given: Ipv4Addr = s
            .split('/')
            .next()
            .unwrap_or(s)
            .parse()
            .map_err(|_| bad("not an IPv4 address"))?;
        if given != net.network {
            return Err(bad(&format!(
                "host bits are set; the network is {}/{}",
                net.network, net.prefix
            )));
        }
        Ok(net)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// One lab host as planned: name, host number in the subnet, data centre and roles.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSpec {
    /// Host name, also the machine name and hostname.
    pub name: String,
    /// Its IPv4 address.
    pub address: Ipv4Addr,
    /// Data centre label.
    pub dc: String,
    /// What pgha deploys on it.
    pub roles: Vec<Role>,
}

/// The default topology of DESIGN.md §2 in `subnet`.
pub fn default_hosts(subnet: Subnet) -> Vec<HostSpec> {
    let h = |name: &str, n: u32, dc: &str, role: Role| HostSpec {
        name: name.to_string(),
        address: subnet.nth(n),
        dc: dc.to_string(),
        roles: vec![role],
    };
    vec![
        h("node1", 11, "dc1", Role::Postgres),
        h("node2", 12, "dc1", Role::Postgres),
        h("etcd1", 21, "dc1", Role::Etcd),
        h("etcd2", 22, "dc1", Role::Etcd),
        h("node3", 13, "dc2", Role::Postgres),
        h("etcd3", 23, "dc2", Role::Etcd),
        h("haproxy", 31, "dc2", Role::Haproxy),
        h("pgbouncer", 41, "dc2", Role::Pgbouncer),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_parse_and_overlap() {
        let lab = Subnet::parse_lab("10.213.77.0/24").expect("valid");
        assert_eq!(lab.gateway().to_string(), "10.213.77.1");
        assert!(lab.overlaps("10.0.0.0/8".parse().expect("valid")));
        assert!(lab.overlaps("10.213.77.5".parse().expect("valid")));
        assert!(!lab.overlaps("10.213.78.0/24".parse().expect("valid")));
        assert!(!lab.overlaps("192.0.2.0/24".parse().expect("valid")));
        assert!(Subnet::parse_lab("10.213.77.1/24").is_err());
        assert!(Subnet::parse_lab("10.213.77.0/28").is_err());
        assert!(Subnet::parse_lab("nope").is_err());
    }

    #[test]
    fn default_topology_has_eight_distinct_hosts() {
        let hosts = default_hosts(Subnet::parse_lab(DEFAULT_SUBNET).expect("valid"));
        assert_eq!(hosts.len(), 8);
        let mut addrs: Vec<_> = hosts.iter().map(|h| h.address).collect();
        addrs.sort();
        addrs.dedup();
        assert_eq!(addrs.len(), 8);
        assert!(hosts.iter().all(|h| format!("pl-{}", h.name).len() <= 15));
    }
}
