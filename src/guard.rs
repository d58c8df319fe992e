//! The destination guard: hookd posts to URLs that customers typed, so it must not be turned against the
//! network it runs in (SSRF).
//!
//! Every address a request would go to is checked: loopback, private, link-local (which includes cloud
//! metadata at 169.254.169.254), shared, multicast, broadcast, documentation and unspecified addresses are
//! refused unless a CIDR of `[destinations] allow` covers them. Host names are checked after resolution by
//! [`GuardedResolver`], whose vetted addresses are the ones the connection uses (no second lookup to race).
//! IP-literal URLs skip the resolver, so [`DestinationGuard::check_url`] checks them before sending; the `url`
//! crate has already normalised decimal, hex and octal IPv4 notations by then.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// A destination the guard refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("destination {address} refused: {category} address (allow it in [destinations] allow)")]
pub struct Refused {
    pub address: IpAddr,
    pub category: &'static str,
}

/// Which addresses hookd may send to.
#[derive(Debug, Clone, Default)]
pub struct DestinationGuard {
    allow: Vec<IpNet>,
}

impl DestinationGuard {
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self { allow }
    }

    /// Allows public addresses and allowlisted ones; refuses the rest with the reason.
    pub fn check(&self, address: IpAddr) -> Result<(), Refused> {
        let address = canonical(address);
        if self.allow.iter().any(|net| net.contains(&address)) {
            return Ok(());
        }
        match non_public_category(address) {
            None => Ok(()),
            Some(category) => Err(Refused { address, category }),
        }
    }

    /// Checks a URL whose host is an IP literal; names are left to [`GuardedResolver`].
    pub fn check_url(&self, url: &Url) -> Result<(), Refused> {
        match url.host() {
            Some(url::Host::Ipv4(v4)) => self.check(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => self.check(IpAddr::V6(v6)),
            _ => Ok(()),
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) are judged as the IPv4 address they carry.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn non_public_category(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => v4_category(v4),
        IpAddr::V6(v6) => v6_category(v6),
    }
}

fn v4_category(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT)")
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        Some("multicast or reserved")
    } else if ip.is_documentation() || (a == 198 && (b == 18 || b == 19)) {
        Some("documentation or benchmarking")
    } else {
        None
    }
}

fn v6_category(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if (first & 0xfe00) == 0xfc00 {
        Some("private (unique local)")
    } else if (first & 0xffc0) == 0xfe80 {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast or reserved")
    } else if first == 0x2001 && ip.segments()[1] == 0x0db8 {
        Some("documentation or benchmarking")
    } else {
        None
    }
}

/// A reqwest resolver that refuses a name if any of its addresses is refused, and otherwise hands reqwest
/// exactly the addresses it vetted.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    guard: Arc<DestinationGuard>,
}

impl GuardedResolver {
    pub fn new(guard: Arc<DestinationGuard>) -> Self {
        Self { guard }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = Arc::clone(&self.guard);
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for address in &addresses {
                guard.check(address.ip())?;
            }
            let addrs: Addrs = Box::new(addresses.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(guard: &DestinationGuard, url: &str) -> bool {
        guard.check_url(&Url::parse(url).unwrap()).is_err()
    }

    #[test]
    fn non_public_literals_are_refused_in_every_notation() {
        let guard = DestinationGuard::default();
        for url in [
            "http://127.0.0.1/",
            "http://2130706433/", // decimal
            "http://0x7f000001/", // hex
            "http://0177.0.0.1/", // octal
            "http://127.1/",      // short form
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/", // IPv4-mapped IPv6
            "http://0.0.0.0/",
            "http://[::]/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/", // cloud metadata
            "http://[fe80::1]/",
            "http://[fd00::1]/",
            "http://100.64.0.1/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
        ] {
            assert!(refused(&guard, url), "{url} should be refused");
        }
    }

    #[test]
    fn public_addresses_and_names_pass_the_literal_check() {
        let guard = DestinationGuard::default();
        assert!(!refused(&guard, "http://93.184.215.14/"));
        assert!(!refused(&guard, "http://[2606:4700::1111]/"));
        assert!(
            !refused(&guard, "https://example.com/"),
            "names are checked at resolution"
        );
    }

    #[test]
    fn an_allowlisted_range_opens_only_itself() {
        let guard = DestinationGuard::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(!refused(&guard, "http://127.0.0.1:9000/"));
        assert!(!refused(&guard, "http://[::ffff:127.0.0.1]/"));
        assert!(refused(&guard, "http://[::1]/"));
        assert!(refused(&guard, "http://10.0.0.1/"));
    }

    #[test]
    fn the_refusal_names_the_address_and_category() {
        let err = DestinationGuard::default()
            .check("10.0.0.1".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("10.0.0.1") && err.contains("private"), "{err}");
    }
}
