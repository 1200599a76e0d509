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
                // The `backup` role (the repository host and every node).
                "pgbackrest",
                // The VIP of entry hosts (inventory `vip`).
                "keepalived",
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
    /// Its extra DNS names (the inventory's `names`): in every lab host's /etc/hosts, since
    /// deploy's preflight wants each of them to resolve to the host on every host.
    #[serde(default)]
    pub names: Vec<String>,
}

/// The first host number the lab hands out (.1 is the controller; .2–.10 stay free).
pub const FIRST_HOST_NUMBER: u32 = 11;

/// The longest host name the lab accepts: its veth is `pl-<host>` and Linux interface names have
/// at most 15 characters (IFNAMSIZ − 1).
pub const MAX_HOST_NAME: usize = 15 - "pl-".len();

impl Subnet {
    /// The host numbers the lab may hand out: [`FIRST_HOST_NUMBER`] up to the last address
    /// before the broadcast address.
    pub fn host_numbers(self) -> std::ops::RangeInclusive<u32> {
        let size = 1u64 << (32 - u32::from(self.prefix));
        let last = u32::try_from(size.saturating_sub(2)).unwrap_or(u32::MAX);
        FIRST_HOST_NUMBER..=last
    }

    /// Whether `addr` is one of [`Subnet::host_numbers`] of this subnet.
    pub fn holds_host(self, addr: Ipv4Addr) -> bool {
        let a = u32::from(addr);
        let n = u32::from(self.network);
        a >= n && self.host_numbers().contains(&(a - n))
    }
}

/// Checks a host name fits the lab's naming limits (veth `pl-<host>`, namespace
/// `pgha-<host>`, machine name `<host>`); the error says what is wrong.
pub fn check_lab_host_name(name: &str) -> std::result::Result<(), String> {
    if name.len() > MAX_HOST_NAME {
        return Err(format!(
            "`{name}` has {} characters; the lab names its network interface `pl-{name}` and Linux allows at most 15, so a lab host name has at most {MAX_HOST_NAME}",
            name.len()
        ));
    }
    if name.contains('.') {
        return Err(format!(
            "`{name}` contains `.`; a lab host name is one DNS label (it becomes a hostname, a network namespace `pgha-{name}` and an interface `pl-{name}`)"
        ));
    }
    Ok(())
}

/// A host the lab is asked for, before it has an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantedHost {
    /// Host name.
    pub name: String,
    /// Data centre label.
    pub dc: String,
    /// What pgha deploys on it.
    pub roles: Vec<Role>,
    /// Its extra DNS names.
    pub names: Vec<String>,
}

impl From<&HostSpec> for WantedHost {
    fn from(h: &HostSpec) -> Self {
        WantedHost {
            name: h.name.clone(),
            dc: h.dc.clone(),
            roles: h.roles.clone(),
            names: h.names.clone(),
        }
    }
}

/// The host numbers a new host prefers, by its first role (as the default topology numbers
/// them): postgres .11–.19, etcd .21–.29, haproxy .31–.39, pgbouncer .41–.49.
fn role_numbers(roles: &[Role]) -> std::ops::RangeInclusive<u32> {
    let tens = match roles.iter().min() {
        Some(Role::Postgres) | None => 10,
        Some(Role::Etcd) => 20,
        Some(Role::Haproxy) => 30,
        Some(Role::Pgbouncer) | Some(Role::Backup) => 40,
    };
    tens + 1..=tens + 9
}

/// First host number for hosts beyond their role's nine.
const OVERFLOW_NUMBER: u32 = 51;

/// Gives every wanted host an address in `subnet`, in this order of preference: the address it
/// has in `current` (a kept machine never moves); the lowest free number of its first role's
/// range ([`role_numbers`]; so the default topology gets .11–.13, .21–.23, .31, .41); the lowest
/// free from .51; the lowest free from .11. Hosts come out in the order of `wanted`.
pub fn assign_addresses(
    subnet: Subnet,
    wanted: &[WantedHost],
    current: &[HostSpec],
) -> Result<Vec<HostSpec>, LabError> {
    let mut used = std::collections::BTreeSet::new();
    let mut out: Vec<Option<Ipv4Addr>> = vec![None; wanted.len()];
    // 1. Kept machines keep their address.
    for (slot, w) in out.iter_mut().zip(wanted) {
        if let Some(c) = current.iter().find(|c| c.name == w.name)
            && subnet.holds_host(c.address)
            && used.insert(c.address)
        {
            *slot = Some(c.address);
        }
    }
    // 2. New hosts: the lowest free number of their role's range.
    let all = subnet.host_numbers();
    for (slot, w) in out.iter_mut().zip(wanted) {
        if slot.is_none()
            && let Some(a) = role_numbers(&w.roles)
                .filter(|n| all.contains(n))
                .map(|n| subnet.nth(n))
                .find(|a| !used.contains(a))
        {
            used.insert(a);
            *slot = Some(a);
        }
    }
    // 3. Everyone else: the lowest free number from .51, then from .11.
    let mut numbers = (OVERFLOW_NUMBER..=*all.end()).chain(all.clone()).map(|n| subnet.nth(n));
    for slot in out.iter_mut().filter(|s| s.is_none()) {
        let free = numbers
            .by_ref()
            .find(|a| !used.contains(a))
            .ok_or(LabError::SubnetFull {
                subnet: subnet.to_string(),
                hosts: wanted.len(),
                capacity: subnet.host_numbers().count(),
            })?;
        used.insert(free);
        *slot = Some(free);
    }
    Ok(wanted
        .iter()
        .zip(out)
        .map(|(w, a)| HostSpec {
            name: w.name.clone(),
            address: a.expect("every slot was filled above or the function returned"),
            dc: w.dc.clone(),
            roles: w.roles.clone(),
            names: w.names.clone(),
        })
        .collect())
}

/// Which machines `up` adds, removes and keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostDiff {
    /// Wanted, not there yet.
    pub add: Vec<String>,
    /// There, not wanted any more.
    pub remove: Vec<String>,
    /// There and wanted.
    pub keep: Vec<String>,
}

/// Compares the machines there are (`present`, any order) with those wanted.
pub fn diff_hosts(present: &[String], wanted: &[HostSpec]) -> HostDiff {
    let mut d = HostDiff::default();
    for w in wanted {
        if present.contains(&w.name) {
            d.keep.push(w.name.clone());
        } else {
            d.add.push(w.name.clone());
        }
    }
    d.remove = present
        .iter()
        .filter(|p| !wanted.iter().any(|w| &w.name == *p))
        .cloned()
        .collect();
    d.remove.sort();
    d.remove.dedup();
    d
}

/// The default topology of docs/design.md §2 in `subnet`.
pub fn default_hosts(subnet: Subnet) -> Vec<HostSpec> {
    let h = |name: &str, n: u32, dc: &str, role: Role| HostSpec {
        name: name.to_string(),
        address: subnet.nth(n),
        dc: dc.to_string(),
        roles: vec![role],
        names: Vec::new(),
    };
    // The pgBackRest repository shares the dc2 PgBouncer host: no ninth machine (issue 15).
    let mut bouncer = h("pgbouncer", 41, "dc2", Role::Pgbouncer);
    bouncer.roles.push(Role::Backup);
    vec![
        h("node1", 11, "dc1", Role::Postgres),
        h("node2", 12, "dc1", Role::Postgres),
        h("etcd1", 21, "dc1", Role::Etcd),
        h("etcd2", 22, "dc1", Role::Etcd),
        h("node3", 13, "dc2", Role::Postgres),
        h("etcd3", 23, "dc2", Role::Etcd),
        h("haproxy", 31, "dc2", Role::Haproxy),
        bouncer,
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
        assert!(hosts.iter().all(|h| check_lab_host_name(&h.name).is_ok()));
    }

    fn subnet() -> Subnet {
        Subnet::parse_lab(DEFAULT_SUBNET).expect("valid")
    }

    fn want(names: &[&str]) -> Vec<WantedHost> {
        names
            .iter()
            .map(|n| WantedHost {
                name: n.to_string(),
                dc: "dc1".into(),
                roles: vec![Role::Postgres],
                names: Vec::new(),
            })
            .collect()
    }

    fn addr(hosts: &[HostSpec], name: &str) -> String {
        hosts
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.address.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn fresh_default_topology_gets_the_default_addresses() {
        let wanted: Vec<WantedHost> = default_hosts(subnet()).iter().map(WantedHost::from).collect();
        let got = assign_addresses(subnet(), &wanted, &[]).expect("fits");
        assert_eq!(got, default_hosts(subnet()));
    }

    #[test]
    fn kept_hosts_keep_their_address_and_new_ones_take_the_lowest_free() {
        let first = assign_addresses(subnet(), &want(&["a", "b", "c"]), &[]).expect("fits");
        assert_eq!(
            [addr(&first, "a"), addr(&first, "b"), addr(&first, "c")],
            ["10.213.77.11", "10.213.77.12", "10.213.77.13"]
        );
        // b removed, d and e added in front: c keeps .13, the new ones fill .12 then .14.
        let second = assign_addresses(subnet(), &want(&["d", "c", "a", "e"]), &first).expect("fits");
        assert_eq!(
            second.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
            ["d", "c", "a", "e"]
        );
        assert_eq!(addr(&second, "a"), "10.213.77.11");
        assert_eq!(addr(&second, "c"), "10.213.77.13");
        assert_eq!(addr(&second, "d"), "10.213.77.12");
        assert_eq!(addr(&second, "e"), "10.213.77.14");
    }

    #[test]
    fn new_hosts_are_numbered_by_their_first_role_then_overflow_from_51() {
        let w = |name: &str, roles: &[Role]| WantedHost {
            name: name.into(),
            dc: "dc1".into(),
            roles: roles.to_vec(),
            names: Vec::new(),
        };
        let mut wanted: Vec<WantedHost> = (1..=10).map(|i| w(&format!("pg{i}"), &[Role::Postgres])).collect();
        wanted.push(w("lb", &[Role::Pgbouncer, Role::Haproxy]));
        wanted.push(w("e1", &[Role::Etcd]));
        let got = assign_addresses(subnet(), &wanted, &[]).expect("fits");
        assert_eq!(addr(&got, "pg1"), "10.213.77.11");
        assert_eq!(addr(&got, "pg9"), "10.213.77.19");
        assert_eq!(addr(&got, "pg10"), "10.213.77.51", "beyond nine, from .51");
        assert_eq!(addr(&got, "lb"), "10.213.77.31", "first role in role order: haproxy");
        assert_eq!(addr(&got, "e1"), "10.213.77.21");
        // A kept host sitting in another role's range keeps its address; the newcomer moves on.
        let current = vec![HostSpec {
            name: "y".into(),
            address: subnet().nth(21),
            dc: "dc1".into(),
            roles: vec![Role::Postgres],
            names: Vec::new(),
        }];
        let got =
            assign_addresses(subnet(), &[w("y", &[Role::Postgres]), w("e1", &[Role::Etcd])], &current).expect("fits");
        assert_eq!(addr(&got, "y"), "10.213.77.21");
        assert_eq!(addr(&got, "e1"), "10.213.77.22");
    }

    #[test]
    fn a_kept_address_outside_the_subnet_is_replaced() {
        let current = vec![HostSpec {
            name: "a".into(),
            address: "192.0.2.5".parse().expect("ip"),
            dc: "dc1".into(),
            roles: vec![Role::Etcd],
            names: Vec::new(),
        }];
        let got = assign_addresses(subnet(), &want(&["a"]), &current).expect("fits");
        assert_eq!(addr(&got, "a"), "10.213.77.11");
    }

    #[test]
    fn too_many_hosts_for_the_subnet_is_an_error() {
        let small = Subnet::parse_lab("10.9.0.0/26").expect("valid");
        assert_eq!(small.host_numbers(), 11..=62);
        let names: Vec<String> = (0..53).map(|i| format!("h{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(
            assign_addresses(small, &want(&refs[..52]), &[]).expect("fits").len(),
            52
        );
        let err = assign_addresses(small, &want(&refs), &[]).expect_err("53 do not fit");
        assert!(err.to_string().contains("53 hosts"), "{err}");
        assert!(!small.holds_host("10.9.0.63".parse().expect("ip")));
        assert!(!small.holds_host("10.9.0.10".parse().expect("ip")));
        assert!(small.holds_host("10.9.0.62".parse().expect("ip")));
    }

    #[test]
    fn diff_names_hosts_to_add_remove_and_keep() {
        let wanted = assign_addresses(subnet(), &want(&["a", "c", "d"]), &[]).expect("fits");
        let present = vec!["c".to_string(), "b".into(), "a".into(), "b".into()];
        let d = diff_hosts(&present, &wanted);
        assert_eq!(d.add, ["d"]);
        assert_eq!(d.keep, ["a", "c"]);
        assert_eq!(d.remove, ["b"]);
        assert_eq!(diff_hosts(&[], &wanted).add.len(), 3);
    }

    #[test]
    fn lab_host_names_are_checked_for_interface_limits() {
        assert!(check_lab_host_name("pgbouncer-12").is_ok());
        let e = check_lab_host_name("pgbouncer-123").expect_err("13 characters");
        assert!(e.contains("pl-pgbouncer-123") && e.contains("at most 12"), "{e}");
        assert!(check_lab_host_name("db.example").is_err());
    }
}
