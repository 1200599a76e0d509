//! Who holds a VIP: asked of each entry host itself (`ip -o -4 addr show to VIP/32`, one line
//! when the address is on any of its interfaces, nothing otherwise; exit 0 either way, so the
//! output decides). `pgha status` and the entry-loss drill read it from here.

use std::net::IpAddr;

use crate::transport::Cmd;

/// The command that tells whether a host holds `vip`.
pub fn holds_cmd(vip: IpAddr) -> Cmd {
    Cmd::new("ip")
        .args(["-o", "-4", "addr", "show", "to"])
        .arg(format!("{vip}/32"))
}

/// Whether `ip -o -4 addr show to VIP/32` printed an address.
pub fn parse_holds(stdout: &str) -> bool {
    stdout.lines().any(|l| l.split_whitespace().any(|w| w == "inet"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holding_is_read_from_ip_o() {
        assert!(parse_holds(
            "2: eth0    inet 10.213.77.10/32 scope global eth0\\       valid_lft forever\n"
        ));
        assert!(!parse_holds(""));
        assert_eq!(
            holds_cmd("10.0.0.30".parse().expect("ip")).command_line(false),
            "ip -o -4 addr show to 10.0.0.30/32"
        );
    }
}
