//! The private-network guard for webhook targets (SSRF). A target is refused when any address
//! its host resolves to is loopback, private, link-local, unspecified, a cloud metadata
//! address or otherwise not a public unicast address, unless the host or the address is
//! allow-listed. The check runs inside the HTTP client's resolver and the connection uses
//! exactly the addresses that passed it, so a DNS answer that changes between a check and the
//! connection (rebinding) cannot slip through.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Why an address is not a public destination.
pub fn blocked_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => blocked_v6(v6),
    }
}

fn blocked_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(if ip == Ipv4Addr::new(169, 254, 169, 254) {
        "cloud metadata"
    } else if ip.is_unspecified() || a == 0 {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() {
        "private"
    } else if ip.is_link_local() {
        "link-local"
    } else if a == 100 && (64..128).contains(&b) {
        "shared (carrier-grade NAT)"
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        "multicast or reserved"
    } else {
        return None;
    })
}

fn blocked_v6(ip: Ipv6Addr) -> Option<&'static str> {
    // An IPv4 address in IPv6 clothing is judged as IPv4: ::ffff:a.b.c.d (mapped) and the
    // NAT64 well-known prefix 64:ff9b::/96.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return blocked_v4(v4);
    }
    let s = ip.segments();
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        return blocked_v4(Ipv4Addr::new(a, b, c, d));
    }
    Some(
        if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
            "cloud metadata"
        } else if ip.is_unspecified() {
            "unspecified"
        } else if ip.is_loopback() {
            "loopback"
        } else if s[0] & 0xfe00 == 0xfc00 {
            "private (unique local)"
        } else if s[0] & 0xffc0 == 0xfe80 {
            "link-local"
        } else if ip.is_multicast() {
            "multicast or reserved"
        } else if s[0..6] == [0, 0, 0, 0, 0, 0] {
            // the deprecated IPv4-compatible ::a.b.c.d
            "multicast or reserved"
        } else {
            return None;
        },
    )
}

/// An address block, `10.0.0.0/8` or `2001:db8::/32`; a bare address is a block of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Self> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self {
            network: addr,
            prefix,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |prefix: u8, width: u32| -> u128 {
            if prefix == 0 {
                0
            } else {
                u128::MAX << (width - u32::from(prefix))
            }
        };
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                let mask = bits(self.prefix, 32) as u32;
                u32::from(n) & mask == u32::from(i) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                let mask = bits(self.prefix, 128);
                u128::from(n) & mask == u128::from(i) & mask
            }
            _ => false,
        }
    }
}

/// The configured exceptions and the check.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    hosts: Vec<String>,
    suffixes: Vec<String>,
    blocks: Vec<Cidr>,
}

/// A target the guard refused; the delivery is permanent-failed with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "webhook target refused: {host} is a {kind} address ({ip}); add it to webhook.allow to deliver there"
)]
pub struct Refused {
    pub host: String,
    pub ip: IpAddr,
    pub kind: &'static str,
}

impl Guard {
    /// `allow` holds host names (`hooks.internal`), wildcard suffixes (`*.internal`),
    /// addresses and CIDR blocks; anything else is an error naming the entry.
    pub fn new(allow: &[String]) -> Result<Self, String> {
        let mut guard = Guard::default();
        for entry in allow {
            let entry = entry.trim();
            if let Some(block) = Cidr::parse(entry) {
                guard.blocks.push(block);
            } else if let Some(suffix) = entry.strip_prefix("*.") {
                guard.suffixes.push(format!(".{}", normalize(suffix)));
            } else if !entry.is_empty()
                && !entry.contains('/')
                && entry
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
            {
                guard.hosts.push(normalize(entry));
            } else {
                return Err(format!(
                    "webhook.allow entry `{entry}` is neither a host name, `*.suffix`, an address nor a CIDR block"
                ));
            }
        }
        Ok(guard)
    }

    /// True when the host name itself is allow-listed (its addresses are then not checked).
    pub fn host_allowed(&self, host: &str) -> bool {
        let host = normalize(host);
        self.hosts.contains(&host) || self.suffixes.iter().any(|s| host.ends_with(s.as_str()))
    }

    /// Checks one address `host` resolved to (or is).
    pub fn check(&self, host: &str, ip: IpAddr) -> Result<(), Refused> {
        if self.blocks.iter().any(|b| b.contains(ip)) {
            return Ok(());
        }
        match blocked_kind(ip) {
            None => Ok(()),
            Some(kind) => Err(Refused {
                host: host.to_owned(),
                ip,
                kind,
            }),
        }
    }

    /// Checks every address; one bad address refuses the host, so a name cannot mix a public
    /// and a private answer and hope the private one is tried.
    pub fn check_all(&self, host: &str, addrs: &[SocketAddr]) -> Result<(), Refused> {
        if self.host_allowed(host) {
            return Ok(());
        }
        addrs.iter().try_for_each(|a| self.check(host, a.ip()))
    }
}

fn normalize(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// The webhook client's resolver: the system resolver, then the guard. The client connects
/// only to the addresses returned here.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    guard: Arc<Guard>,
}

impl GuardedResolver {
    pub fn new(guard: Arc<Guard>) -> Self {
        Self { guard }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.guard.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            guard.check_all(&host, &addrs)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_and_special_addresses_are_blocked() {
        for (addr, kind) in [
            ("127.0.0.1", "loopback"),
            ("127.8.9.10", "loopback"),
            ("10.0.0.1", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.1.1", "link-local"),
            ("169.254.169.254", "cloud metadata"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("100.64.0.1", "shared (carrier-grade NAT)"),
            ("224.0.0.1", "multicast or reserved"),
            ("255.255.255.255", "multicast or reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fc00::1", "private (unique local)"),
            ("fd12:3456::1", "private (unique local)"),
            ("fe80::1", "link-local"),
            ("fd00:ec2::254", "cloud metadata"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "cloud metadata"),
            ("64:ff9b::a00:1", "private"),
            ("ff02::1", "multicast or reserved"),
        ] {
            assert_eq!(blocked_kind(ip(addr)), Some(kind), "{addr}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for addr in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(blocked_kind(ip(addr)), None, "{addr}");
        }
    }

    #[test]
    fn cidr_blocks_match_by_prefix() {
        let block = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(block.contains(ip("10.1.200.3")));
        assert!(!block.contains(ip("10.2.0.1")));
        assert!(!block.contains(ip("::1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("127.0.0.1")));
        assert!(Cidr::parse("::1").unwrap().contains(ip("::1")));
        assert!(
            Cidr::parse("fd00::/8")
                .unwrap()
                .contains(ip("fd00:ec2::254"))
        );
        assert_eq!(Cidr::parse("10.0.0.0/33"), None);
        assert_eq!(Cidr::parse("hooks.internal"), None);
    }

    #[test]
    fn allow_list_exempts_hosts_and_blocks() {
        let guard = Guard::new(&[
            "127.0.0.0/8".into(),
            "Hooks.Internal".into(),
            "*.corp.example".into(),
        ])
        .unwrap();
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let private: SocketAddr = "10.0.0.1:0".parse().unwrap();
        assert_eq!(guard.check_all("anything", &[loopback]), Ok(()));
        assert_eq!(guard.check_all("hooks.internal.", &[private]), Ok(()));
        assert_eq!(guard.check_all("a.corp.example", &[private]), Ok(()));
        let refused = guard
            .check_all("evil.example", &[loopback, private])
            .unwrap_err();
        assert_eq!(refused.kind, "private");
        assert_eq!(refused.ip, ip("10.0.0.1"));
        assert!(Guard::new(&["http://x/".into()]).is_err());
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_that_resolves_to_loopback() {
        let resolver = GuardedResolver::new(Arc::new(Guard::default()));
        let err = match resolver.resolve("localhost".parse().unwrap()).await {
            Ok(_) => panic!("localhost resolved through the guard"),
            Err(e) => e,
        };
        let refused = err.downcast_ref::<Refused>().unwrap();
        assert_eq!(refused.kind, "loopback");
    }
}
