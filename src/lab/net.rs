//! The lab network: one bridge in the root namespace carrying the controller's address (its
//! connected route is the only route the lab adds), one network namespace per host, and a veth
//! pair from the bridge into each namespace. No NAT, no firewall rules, no default route.

use std::net::Ipv4Addr;
use std::path::Path;

use super::cmd::run_args;
use super::error::{LabError, Result};
use super::fsutil::is_mounted;
use super::topology::Subnet;

/// The network namespace of a host (`ip netns` name).
pub fn netns_name(host: &str) -> String {
    format!("pgha-{host}")
}

/// The path systemd-nspawn joins.
pub fn netns_path(host: &str) -> String {
    format!("/run/netns/{}", netns_name(host))
}

/// The root-namespace end of a host's veth (at most 15 characters for the default hosts).
pub fn veth_name(host: &str) -> String {
    format!("pl-{host}")
}

/// Whether an interface exists in the root namespace.
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Whether a network namespace of that name exists (its file is a mount of the namespace; a
/// plain file left there — /run survives a reboot on some machines — is not one).
pub fn netns_exists(host: &str) -> bool {
    is_mounted(Path::new(&netns_path(host))).unwrap_or(false)
}

/// Removes a stale namespace file that is not a mount (`ip netns add` would fail on it).
fn remove_stale_netns_file(host: &str) -> Result<()> {
    let p = netns_path(host);
    if !netns_exists(host) && Path::new(&p).exists() {
        std::fs::remove_file(&p).map_err(LabError::io("removing stale", &p))?;
    }
    Ok(())
}

/// The directory iproute2 keeps named namespaces in; `ip netns add` makes it a mount point.
pub const NETNS_DIR: &str = "/run/netns";

/// Whether [`NETNS_DIR`] is a mount point now.
pub fn netns_dir_mounted() -> bool {
    is_mounted(Path::new(NETNS_DIR)).unwrap_or(false)
}

/// Undoes the mount `ip netns add` made on [`NETNS_DIR`], if no namespace is left in it.
pub fn release_netns_dir() -> Result<()> {
    let empty = std::fs::read_dir(NETNS_DIR)
        .map(|mut rd| rd.next().is_none())
        .unwrap_or(false);
    if empty && netns_dir_mounted() {
        run_args("umount", &[NETNS_DIR])?;
    }
    Ok(())
}

/// Whether an interface is administratively up.
pub fn link_is_up(name: &str) -> bool {
    std::fs::read_to_string(Path::new("/sys/class/net").join(name).join("flags"))
        .ok()
        .and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
        .is_some_and(|f| f & 1 != 0)
}

/// Fails if `subnet` overlaps any IPv4 route of any table, except the default route and the
/// routes on the lab's own bridge.
pub fn check_subnet_free(subnet: Subnet, bridge: &str) -> Result<()> {
    let json = run_args("ip", &["-j", "-4", "route", "show", "table", "all"])?;
    let routes: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap_or_default();
    for r in routes {
        let dst = r.get("dst").and_then(|v| v.as_str()).unwrap_or("");
        let dev = r.get("dev").and_then(|v| v.as_str()).unwrap_or("");
        if dst.is_empty() || dst == "default" || dev == bridge {
            continue;
        }
        if let Ok(net) = dst.parse::<Subnet>()
            && net.overlaps(subnet)
        {
            let table = r
                .get("table")
                .and_then(|v| v.as_str())
                .map(|t| format!(" table {t}"))
                .unwrap_or_default();
            return Err(LabError::SubnetCollision {
                subnet: subnet.to_string(),
                route: format!("{dst} dev {dev}{table}"),
            });
        }
    }
    Ok(())
}

/// Creates the bridge with the controller's address, or checks the existing one. Returns whether
/// it created anything.
pub fn ensure_bridge(bridge: &str, subnet: Subnet) -> Result<bool> {
    let created = if link_exists(bridge) {
        false
    } else {
        run_args("ip", &["link", "add", bridge, "type", "bridge"])?;
        true
    };
    let addr = format!("{}/{}", subnet.gateway(), subnet.prefix());
    run_args("ip", &["addr", "replace", &addr, "dev", bridge])?;
    run_args("ip", &["link", "set", bridge, "up"])?;
    Ok(created)
}

/// Creates a host's namespace and veth and sets its address, or checks them. Returns whether it
/// created anything. Brings the host's link up (so it also heals a partition).
pub fn ensure_host_net(host: &str, address: Ipv4Addr, subnet: Subnet, bridge: &str) -> Result<bool> {
    let ns = netns_name(host);
    let veth = veth_name(host);
    let mut created = false;
    if !netns_exists(host) {
        remove_stale_netns_file(host)?;
        run_args("ip", &["netns", "add", &ns])?;
        created = true;
    }
    // A veth whose peer went with an older namespace of the same name is useless: replace it.
    if link_exists(&veth) && run_args("ip", &["-n", &ns, "link", "show", "eth0"]).is_err() {
        run_args("ip", &["link", "del", &veth])?;
    }
    if !link_exists(&veth) {
        run_args(
            "ip",
            &[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        )?;
        created = true;
    }
    run_args("ip", &["link", "set", &veth, "master", bridge])?;
    run_args("ip", &["link", "set", &veth, "up"])?;
    let cidr = format!("{address}/{}", subnet.prefix());
    run_args("ip", &["-n", &ns, "addr", "replace", &cidr, "dev", "eth0"])?;
    run_args("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
    run_args("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
    Ok(created)
}

/// The IPv4 addresses on a host's `eth0`, read from the root namespace (`ip -n … -o -4 addr`):
/// what the host's kernel answers ARP for.
pub fn addresses(host: &str) -> Result<Vec<Ipv4Addr>> {
    let out = run_args(
        "ip",
        &["-n", &netns_name(host), "-o", "-4", "addr", "show", "dev", "eth0"],
    )?;
    Ok(parse_addresses(&out))
}

/// The addresses in `ip -o -4 addr` output (`2: eth0    inet 10.0.0.5/24 brd … scope global eth0`).
pub fn parse_addresses(out: &str) -> Vec<Ipv4Addr> {
    out.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "inet")?;
            words.next()?.split('/').next()?.parse().ok()
        })
        .collect()
}

/// After a crash: removes every address but the host's own from its `eth0`. The namespace
/// outlives the machine, so a VIP keepalived had added would otherwise go on answering ARP as
/// if the dead host still held it (a crashed kernel holds nothing). keepalived adds it again
/// when it wins an election.
pub fn drop_foreign_addresses(host: &str, own: Ipv4Addr) -> Result<Vec<Ipv4Addr>> {
    let mut dropped = Vec::new();
    for a in addresses(host)?.into_iter().filter(|a| *a != own) {
        // Any prefix: `ip addr del A dev` removes A whatever its length (with a warning).
        let _ = run_args(
            "ip",
            &[
                "-n",
                &netns_name(host),
                "addr",
                "del",
                &format!("{a}/32"),
                "dev",
                "eth0",
            ],
        );
        dropped.push(a);
    }
    Ok(dropped)
}

/// Cuts a host off the lab network (its bridge port goes down; the host keeps its address).
pub fn partition(host: &str) -> Result<()> {
    run_args("ip", &["link", "set", &veth_name(host), "down"]).map(|_| ())
}

/// Reconnects a host cut off by [`partition`].
pub fn heal(host: &str) -> Result<()> {
    run_args("ip", &["link", "set", &veth_name(host), "up"]).map(|_| ())
}

/// Deletes a host's veth and namespace, whichever exist.
pub fn remove_host_net(host: &str) -> Result<()> {
    if link_exists(&veth_name(host)) {
        run_args("ip", &["link", "del", &veth_name(host)])?;
    }
    if netns_exists(host) {
        run_args("ip", &["netns", "del", &netns_name(host)])?;
    }
    remove_stale_netns_file(host)
}

/// Deletes the bridge if it exists.
pub fn remove_bridge(bridge: &str) -> Result<()> {
    if link_exists(bridge) {
        run_args("ip", &["link", "del", bridge])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses_parse_from_ip_o() {
        let out = "2: eth0    inet 10.213.77.31/24 brd 10.213.77.255 scope global eth0\\       valid_lft forever preferred_lft forever\n2: eth0    inet 10.213.77.10/32 scope global eth0\\       valid_lft forever preferred_lft forever\n";
        let got: Vec<String> = super::parse_addresses(out).iter().map(|a| a.to_string()).collect();
        assert_eq!(got, ["10.213.77.31", "10.213.77.10"]);
        assert!(super::parse_addresses("").is_empty());
    }
}
