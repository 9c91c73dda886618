//! `trusted_proxies`: the reverse proxies and load balancers whose `X-Forwarded-For` is
//! believed, written `10.0.0.0/8,192.168.1.7,fd00::/8`. Parsed once at start (a bad entry is
//! a configuration error), so the per-request check is a scan of a few numbers.
//!
//! Why a list at all: every per-IP limit keys on the client address, and a header any client
//! can write would let one client pose as a new address on each request. Only a hop we run
//! ourselves may say who its client was.

use serde::Deserialize;
use std::fmt;
use std::net::IpAddr;

/// Entries a list may hold: a deployment has a handful of proxies, not thousands.
const MAX_ENTRIES: usize = 64;

const SHAPE: &str = "must be IP addresses or CIDR ranges, comma-separated (at most 64)";

/// One address or CIDR range, kept as an IPv6 network (IPv4 as IPv4-mapped, `::ffff:a.b.c.d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    bits: u128,
    prefix: u32,
}

impl Network {
    fn parse(entry: &str) -> Option<Network> {
        let (addr, prefix) = match entry.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix.parse::<u32>().ok()?)),
            None => (entry, None),
        };
        let addr: IpAddr = addr.parse().ok()?;
        // An IPv4 range counts its prefix within the last 32 bits of the mapped address.
        let (offset, width) = match addr {
            IpAddr::V4(_) => (96, 32),
            IpAddr::V6(_) => (0, 128),
        };
        let prefix = prefix.unwrap_or(width);
        if prefix > width {
            return None;
        }
        let prefix = offset + prefix;
        Some(Network {
            bits: mapped(addr) & mask(prefix),
            prefix,
        })
    }

    fn contains(&self, addr: IpAddr) -> bool {
        mapped(addr) & mask(self.prefix) == self.bits
    }
}

/// The address as 128 bits, IPv4 mapped into IPv6, so one comparison serves both families
/// (a dual-stack listener reports IPv4 peers as `::ffff:a.b.c.d`).
fn mapped(addr: IpAddr) -> u128 {
    match addr.to_canonical() {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn mask(prefix: u32) -> u128 {
    u128::MAX.checked_shl(128 - prefix).unwrap_or(0)
}

/// The trusted proxies; empty (the default) trusts none, so the socket peer is the client.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct TrustedProxies {
    networks: Vec<Network>,
    /// As configured, for `Debug`.
    text: String,
}

impl TrustedProxies {
    pub fn parse(text: &str) -> Result<TrustedProxies, &'static str> {
        let entries: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        if entries.len() > MAX_ENTRIES {
            return Err(SHAPE);
        }
        let networks = entries
            .iter()
            .map(|entry| Network::parse(entry).ok_or(SHAPE))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedProxies {
            networks,
            text: entries.join(","),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        self.networks.iter().any(|n| n.contains(addr))
    }
}

impl TryFrom<String> for TrustedProxies {
    type Error = &'static str;

    fn try_from(text: String) -> Result<TrustedProxies, &'static str> {
        TrustedProxies::parse(&text)
    }
}

impl fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn addresses_and_ranges_of_both_families() {
        let proxies = TrustedProxies::parse(" 10.0.0.0/8, 192.168.1.7 ,fd00::/8").unwrap();
        for inside in ["10.1.2.3", "192.168.1.7", "fd12::1", "::ffff:10.9.9.9"] {
            assert!(proxies.contains(ip(inside)), "{inside}");
        }
        for outside in ["11.0.0.1", "192.168.1.8", "fe80::1", "::a00:1"] {
            assert!(!proxies.contains(ip(outside)), "{outside}");
        }
        assert_eq!(
            format!("{proxies:?}"),
            "\"10.0.0.0/8,192.168.1.7,fd00::/8\""
        );
    }

    #[test]
    fn zero_prefixes_match_a_whole_family() {
        let v4 = TrustedProxies::parse("0.0.0.0/0").unwrap();
        assert!(v4.contains(ip("203.0.113.9")));
        assert!(!v4.contains(ip("2001:db8::1")));
        let all = TrustedProxies::parse("::/0").unwrap();
        assert!(all.contains(ip("2001:db8::1")) && all.contains(ip("203.0.113.9")));
    }

    #[test]
    fn empty_trusts_nobody_and_bad_entries_are_refused() {
        let none = TrustedProxies::parse("").unwrap();
        assert!(none.is_empty() && !none.contains(ip("127.0.0.1")));
        assert_eq!(none, TrustedProxies::default());
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "localhost",
            "10.0.0.1/",
            "1.2.3.4/-1",
        ] {
            assert_eq!(TrustedProxies::parse(bad), Err(SHAPE), "{bad}");
        }
        let many = vec!["10.0.0.1"; MAX_ENTRIES + 1].join(",");
        assert!(TrustedProxies::parse(&many).is_err());
    }
}
