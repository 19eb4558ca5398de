//! Address ranges for `trusted_proxies`: `Cidr` (one `10.0.0.0/8`) and how
//! the client's address is found behind trusted proxies.
//! Invariant: a `Cidr`'s network has no host bits set; IPv4-mapped IPv6
//! addresses are compared as IPv4.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` lies in the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask_v4(u32::from(ip), self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask_v6(u128::from(ip), self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask_v4(bits: u32, prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => bits & (u32::MAX << (32 - u32::from(p))),
    }
}

fn mask_v6(bits: u128, prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        p => bits & (u128::MAX << (128 - u32::from(p))),
    }
}

/// `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a single host). Host
/// bits are cleared: `10.1.2.3/8` is `10.0.0.0/8`.
impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let expected = || {
            format!(r#"expected an address or a CIDR like "10.0.0.0/8" or "fd00::/8", got {s:?}"#)
        };
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| expected())?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => {
                    return Err(format!(
                        "expected a prefix length in 0..={max} after '/', got {p:?} in {s:?}"
                    ));
                }
            },
        };
        let network = match addr {
            IpAddr::V4(a) => IpAddr::V4(mask_v4(u32::from(a), prefix).into()),
            IpAddr::V6(a) => IpAddr::V6(mask_v6(u128::from(a), prefix).into()),
        };
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The client's address: walking `X-Forwarded-For` (all its headers, in
/// order, joined) from the right, starting at the TCP `peer`, the first
/// address not in `trusted`. Malformed entries are skipped. When every
/// address is trusted, the leftmost valid one.
pub fn client_address<'a>(
    peer: IpAddr,
    forwarded_for: impl DoubleEndedIterator<Item = &'a [u8]>,
    trusted: &[Cidr],
) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    let peer = peer.to_canonical();
    if !is_trusted(peer) {
        return peer;
    }
    let mut leftmost = peer;
    for value in forwarded_for.rev() {
        for entry in value.rsplit(|&b| b == b',') {
            let Some(ip) = parse_entry(entry) else {
                continue;
            };
            if !is_trusted(ip) {
                return ip;
            }
            leftmost = ip;
        }
    }
    leftmost
}

/// One XFF entry: an address, maybe with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    let (host, _port) = text.rsplit_once(':')?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|s| s.parse().expect("cidr")).collect()
    }

    #[test]
    fn parsing_and_containment() {
        let cases: &[(&str, &str, bool)] = &[
            ("10.0.0.0/8", "10.200.1.1", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("10.1.2.3/8", "10.9.9.9", true),
            ("192.168.1.7", "192.168.1.7", true),
            ("192.168.1.7/32", "192.168.1.8", false),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("10.0.0.0/8", "::ffff:10.0.0.1", true),
            ("fd00::/8", "fd12::1", true),
            ("fd00::/8", "fe80::1", false),
            ("::/0", "10.0.0.1", false),
        ];
        for (cidr, ip, expected) in cases {
            let c: Cidr = cidr.parse().expect("cidr");
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(c.contains(ip), *expected, "{cidr} {ip}");
        }
        for bad in ["10.0.0.0/33", "10.0.0/8", "x", "10.0.0.0/", "fd00::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        assert_eq!(
            "10.1.2.3/8".parse::<Cidr>().expect("cidr").to_string(),
            "10.0.0.0/8"
        );
    }

    fn check(peer: &str, xff: &[&str], trusted: &[&str], expected: &str) {
        let got = client_address(
            peer.parse().expect("peer"),
            xff.iter().map(|v| v.as_bytes()),
            &cidrs(trusted),
        );
        assert_eq!(got.to_string(), expected, "{peer} {xff:?} {trusted:?}");
    }

    #[test]
    fn client_address_is_the_rightmost_untrusted() {
        check("1.1.1.1", &["2.2.2.2"], &[], "1.1.1.1");
        check("10.0.0.1", &["2.2.2.2"], &["10.0.0.0/8"], "2.2.2.2");
        check(
            "10.0.0.1",
            &["6.6.6.6, 2.2.2.2, 10.0.0.9"],
            &["10.0.0.0/8"],
            "2.2.2.2",
        );
        check(
            "10.0.0.1",
            &["6.6.6.6", "2.2.2.2, garbage"],
            &["10.0.0.0/8"],
            "2.2.2.2",
        );
        check("10.0.0.1", &["10.0.0.3"], &["10.0.0.0/8"], "10.0.0.3");
        check("10.0.0.1", &[], &["10.0.0.0/8"], "10.0.0.1");
        check(
            "10.0.0.1",
            &["[2001:db8::1]:80"],
            &["10.0.0.0/8"],
            "2001:db8::1",
        );
        check("10.0.0.1", &["3.3.3.3:443"], &["10.0.0.0/8"], "3.3.3.3");
    }
}
