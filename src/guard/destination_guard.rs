//! The guard's verdict on one address: allowed, or refused with its category and the IPv4 address it carries.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use reqwest::Url;

use super::address_categories::{
    IPV4_COMPATIBLE, canonical, embedded_v4, v4_category, v6_category,
};

/// A destination the guard refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "destination {address} refused: {category} address{} (allow it in [destinations] allow)",
    Carried(.embedded)
)]
pub struct Refused {
    pub address: IpAddr,
    pub category: &'static str,
    /// The IPv4 address an IPv6 address carries, when that is what was judged.
    pub embedded: Option<Embedded>,
}

/// An IPv4 address inside an IPv6 one, and the scheme that put it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Embedded {
    pub address: Ipv4Addr,
    /// `IPv4-compatible`, `IPv4-translated`, `NAT64` or `6to4`.
    pub scheme: &'static str,
}

/// Displays `" (127.0.0.1 carried by NAT64)"`, or nothing.
struct Carried<'a>(&'a Option<Embedded>);

impl fmt::Display for Carried<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(e) => write!(f, " ({} carried by {})", e.address, e.scheme),
            None => Ok(()),
        }
    }
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
        let refused = |category, embedded| {
            Err(Refused {
                address,
                category,
                embedded,
            })
        };
        match address {
            IpAddr::V4(v4) => match v4_category(v4) {
                None => Ok(()),
                Some(category) => refused(category, None),
            },
            IpAddr::V6(v6) => match embedded_v4(v6) {
                Some(embedded) => match v4_category(embedded.address) {
                    Some(category) => refused(category, Some(embedded)),
                    // A deprecated form no network routes as the IPv4 address it names.
                    None if embedded.scheme == IPV4_COMPATIBLE => {
                        refused("reserved (deprecated IPv4-compatible)", Some(embedded))
                    }
                    None => Ok(()),
                },
                None => match v6_category(v6) {
                    None => Ok(()),
                    Some(category) => refused(category, None),
                },
            },
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The daemon's path: the config (and `PUT /v1/endpoints`) parse the URL with `reqwest::Url::parse`, and
    /// `HttpSender::send` calls `check_url` on it.
    fn verdict(guard: &DestinationGuard, url: &str) -> Result<(), Refused> {
        let url = Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        guard.check_url(&url)
    }

    fn host_ip(url: &str) -> Option<IpAddr> {
        match Url::parse(url).unwrap().host()? {
            url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
            url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
            url::Host::Domain(_) => None,
        }
    }

    #[test]
    fn every_ipv4_notation_of_loopback_reaches_the_guard_as_an_ip_literal() {
        let guard = DestinationGuard::default();
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        for url in [
            "http://127.0.0.1/",
            "http://2130706433/",                     // decimal
            "http://0x7f000001/",                     // hex
            "http://0X7F000001/",                     // hex, upper case
            "http://0x7f.0x0.0x0.0x1/",               // hex per part
            "http://0177.0.0.1/",                     // octal
            "http://0177.0000.0000.0001/",            // octal, padded
            "http://017700000001/",                   // octal, one part
            "http://0177.1/",                         // octal, short
            "http://127.1/",                          // short
            "http://127.0.1/",                        // short, three parts
            "http://0x7f.1/",                         // hex, short
            "http://127.0.0.1./",                     // trailing dot
            "http://%31%32%37.0.0.1/",                // percent-encoded digits
            "http://\u{ff11}\u{ff12}\u{ff17}.0.0.1/", // full-width digits
            "http://127.0.0.1:9000/path?q=1",         // with port, path, query
            "https://user:pw@127.0.0.1/",             // with userinfo
        ] {
            assert_eq!(host_ip(url), Some(loopback), "{url} is an IPv4 literal");
            let refused = verdict(&guard, url).expect_err(url);
            assert_eq!(refused.category, "loopback", "{url}");
            assert_eq!(refused.address, loopback, "{url}");
        }
    }

    #[test]
    fn non_public_literals_are_refused_in_every_notation_with_their_category() {
        let guard = DestinationGuard::default();
        #[rustfmt::skip]
        let table: &[(&str, &str)] = &[
            // IPv6 forms of loopback.
            ("http://[::1]/", "loopback"),
            ("http://[0:0:0:0:0:0:0:1]/", "loopback"),
            ("http://[::ffff:127.0.0.1]/", "loopback"),            // IPv4-mapped
            ("http://[::ffff:7f00:1]/", "loopback"),               // IPv4-mapped, hex
            ("http://[0:0:0:0:0:ffff:127.0.0.1]/", "loopback"),    // IPv4-mapped, long
            ("http://[::127.0.0.1]/", "loopback"),                 // IPv4-compatible
            ("http://[::7f00:1]/", "loopback"),                    // IPv4-compatible, hex
            ("http://[::ffff:0:127.0.0.1]/", "loopback"),          // IPv4-translated (SIIT)
            ("http://[64:ff9b::127.0.0.1]/", "loopback"),          // NAT64
            ("http://[64:ff9b::7f00:1]/", "loopback"),             // NAT64, hex
            ("http://[2002:7f00:1::]/", "loopback"),               // 6to4
            // Unspecified ("this host" on Linux).
            ("http://0.0.0.0/", "unspecified"),
            ("http://0/", "unspecified"),
            ("http://0.1.2.3/", "unspecified"),
            ("http://[::]/", "unspecified"),
            ("http://[::ffff:0.0.0.0]/", "unspecified"),
            // Private.
            ("http://10.1.2.3/", "private"),
            ("http://167772161/", "private"),                      // 10.0.0.1, decimal
            ("http://012.0.0.1/", "private"),                      // 10.0.0.1, octal
            ("http://172.16.0.1/", "private"),
            ("http://172.31.255.255/", "private"),
            ("http://192.168.1.1/", "private"),
            ("http://0xc0a80101/", "private"),                     // 192.168.1.1, hex
            ("http://[::ffff:10.0.0.1]/", "private"),
            ("http://[64:ff9b::10.0.0.1]/", "private"),            // NAT64 to a private address
            ("http://[64:ff9b::c0a8:101]/", "private"),
            ("http://[2002:c0a8:101::1]/", "private"),             // 6to4 of 192.168.1.1
            ("http://[2002:a00:1::]/", "private"),                 // 6to4 of 10.0.0.1
            ("http://[::10.0.0.1]/", "private"),                   // IPv4-compatible
            ("http://[fc00::1]/", "private (unique local)"),
            ("http://[fd12:3456:789a::1]/", "private (unique local)"),
            ("http://[fec0::1]/", "private (deprecated site-local)"),
            ("http://[64:ff9b:1::a00:1]/", "private (local-use NAT64)"),
            // Link-local, cloud metadata included.
            ("http://169.254.169.254/", "link-local"),
            ("http://2852039166/", "link-local"),                  // 169.254.169.254, decimal
            ("http://0xa9.0xfe.0xa9.0xfe/", "link-local"),
            ("http://169.254.0.1/", "link-local"),
            ("http://[::ffff:169.254.169.254]/", "link-local"),
            ("http://[64:ff9b::a9fe:a9fe]/", "link-local"),
            ("http://[2002:a9fe:a9fe::]/", "link-local"),
            ("http://[fe80::1]/", "link-local"),
            ("http://[febf:ffff::1]/", "link-local"),
            ("http://[fd00:ec2::254]/", "private (unique local)"),  // AWS IMDS over IPv6
            // Shared address space (carrier-grade NAT).
            ("http://100.64.0.1/", "shared (carrier-grade NAT)"),
            ("http://100.127.255.254/", "shared (carrier-grade NAT)"),
            ("http://[64:ff9b::6440:1]/", "shared (carrier-grade NAT)"),
            // Multicast, broadcast, reserved.
            ("http://224.0.0.1/", "multicast or reserved"),
            ("http://239.255.255.250/", "multicast or reserved"),
            ("http://255.255.255.255/", "multicast or reserved"),
            ("http://4294967295/", "multicast or reserved"),       // broadcast, decimal
            ("http://240.0.0.1/", "multicast or reserved"),
            ("http://[ff02::1]/", "multicast or reserved"),
            ("http://[ff0e::1]/", "multicast or reserved"),
            ("http://[::ffff:224.0.0.1]/", "multicast or reserved"),
            ("http://192.0.0.8/", "reserved (IETF protocol assignments)"),
            ("http://[100::1]/", "reserved (discard-only)"),
            ("http://[2001::1]/", "reserved (IETF protocol assignments, Teredo, benchmarking)"),
            ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "reserved (IETF protocol assignments, Teredo, benchmarking)"),
            ("http://[4000::1]/", "reserved (not global unicast)"),
            ("http://[5f00::1]/", "reserved (not global unicast)"),
            ("http://[::8.8.8.8]/", "reserved (deprecated IPv4-compatible)"),
            // Documentation and benchmarking.
            ("http://192.0.2.1/", "documentation or benchmarking"),
            ("http://198.51.100.7/", "documentation or benchmarking"),
            ("http://203.0.113.9/", "documentation or benchmarking"),
            ("http://198.18.0.1/", "documentation or benchmarking"),
            ("http://198.19.255.255/", "documentation or benchmarking"),
            ("http://[2001:db8::1]/", "documentation or benchmarking"),
            ("http://[3fff::1]/", "documentation or benchmarking"),
            ("http://[2001:2::1]/", "reserved (IETF protocol assignments, Teredo, benchmarking)"),
        ];
        for &(url, category) in table {
            assert!(
                host_ip(url).is_some(),
                "{url} reaches the guard as an IP literal"
            );
            match verdict(&guard, url) {
                Err(refused) => assert_eq!(refused.category, category, "{url}"),
                Ok(()) => panic!("{url} should be refused as {category}"),
            }
        }
    }

    #[test]
    fn public_addresses_pass_including_public_ones_carried_by_ipv6() {
        let guard = DestinationGuard::default();
        for url in [
            "http://93.184.215.14/",
            "http://8.8.8.8/",
            "http://134744072/",  // 8.8.8.8, decimal
            "http://172.32.0.1/", // just above 172.16.0.0/12
            "http://172.15.255.255/",
            "http://100.63.255.255/", // just below 100.64.0.0/10
            "http://100.128.0.1/",
            "http://192.0.3.1/",
            "http://198.20.0.1/",
            "http://169.253.255.255/",
            "http://223.255.255.255/",
            "http://[2606:4700::1111]/",
            "http://[2a00:1450:4001::200e]/",
            "http://[2001:200::1]/", // just above 2001::/23
            "http://[3ffe::1]/",
            "http://[::ffff:8.8.8.8]/",
            "http://[64:ff9b::8.8.8.8]/", // NAT64 to a public address
            "http://[2002:808:808::1]/",  // 6to4 of 8.8.8.8
        ] {
            if let Err(refused) = verdict(&guard, url) {
                panic!("{url} is public: {refused}");
            }
        }
        for url in [
            "https://example.com/",
            "http://localhost/",
            "http://127.0.0.1.nip.io/",
        ] {
            assert_eq!(host_ip(url), None, "{url} is a name");
            assert!(
                verdict(&guard, url).is_ok(),
                "names are checked at resolution"
            );
        }
    }

    #[test]
    fn urls_the_config_cannot_parse_never_reach_a_connection() {
        // Zone ids, out-of-range parts and bad brackets are refused by the URL parser the config uses.
        for url in [
            "http://[fe80::1%25eth0]/",
            "http://256.0.0.1/",
            "http://127.0.0.0.1/",
            "http://0x100000000/",
            "http://[::1/",
            "http://[127.0.0.1]/",
        ] {
            assert!(Url::parse(url).is_err(), "{url} parses");
        }
    }

    #[test]
    fn an_allowlisted_range_opens_only_itself() {
        let guard = |cidrs: &[&str]| {
            DestinationGuard::new(cidrs.iter().map(|c| c.parse().unwrap()).collect())
        };
        let cases: &[(&[&str], &[&str], &[&str])] = &[
            (
                &["127.0.0.0/8"],
                &[
                    "http://127.0.0.1:9000/",
                    "http://127.255.255.254/",
                    "http://2130706433/",
                    "http://127.1/",
                    "http://[::ffff:127.0.0.1]/",
                ],
                &[
                    "http://[::1]/",
                    "http://10.0.0.1/",
                    "http://[::ffff:10.0.0.1]/",
                    "http://0.0.0.0/",
                    "http://169.254.169.254/",
                    "http://[::127.0.0.1]/",
                    "http://[64:ff9b::7f00:1]/",
                    "http://[2002:7f00:1::]/",
                ],
            ),
            (
                &["10.1.0.0/16"],
                &["http://10.1.2.3/", "http://10.1.255.255/"],
                &[
                    "http://10.2.0.1/",
                    "http://10.0.255.255/",
                    "http://192.168.1.1/",
                ],
            ),
            (
                &["::1/128"],
                &["http://[::1]/"],
                &[
                    "http://127.0.0.1/",
                    "http://[::2]/",
                    "http://[::ffff:127.0.0.1]/",
                ],
            ),
            (
                &["fd00::/8"],
                &["http://[fd00::1]/", "http://[fdff::1]/"],
                &["http://[fc00::1]/", "http://[fe80::1]/"],
            ),
            (
                &["64:ff9b::/96"],
                &["http://[64:ff9b::10.0.0.1]/"],
                &["http://10.0.0.1/", "http://[64:ff9b:1::a00:1]/"],
            ),
        ];
        for (cidrs, open, closed) in cases {
            let guard = guard(cidrs);
            for url in *open {
                assert!(verdict(&guard, url).is_ok(), "{cidrs:?} opens {url}");
            }
            for url in *closed {
                assert!(
                    verdict(&guard, url).is_err(),
                    "{cidrs:?} must not open {url}"
                );
            }
        }
    }

    #[test]
    fn the_refusal_names_the_address_category_and_carrier() {
        let err = DestinationGuard::default()
            .check("10.0.0.1".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("10.0.0.1") && err.contains("private"), "{err}");
        let err = DestinationGuard::default()
            .check("64:ff9b::7f00:1".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("64:ff9b::7f00:1")
                && err.contains("loopback")
                && err.contains("127.0.0.1 carried by NAT64"),
            "{err}"
        );
    }
}
