//! Which special-purpose block an address falls in, and the IPv4 address an IPv6 one carries.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::Embedded;

/// IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) are judged as the IPv4 address they carry: a socket
/// connecting to one connects to that IPv4 address.
pub(super) fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

pub(super) const IPV4_COMPATIBLE: &str = "IPv4-compatible";

/// The IPv4 address carried by an IPv6 address of a scheme that embeds one (`::1` and `::` excluded).
pub(super) fn embedded_v4(ip: Ipv6Addr) -> Option<Embedded> {
    let s = ip.segments();
    let [.., a, b, c, d] = ip.octets();
    let low = Ipv4Addr::new(a, b, c, d);
    let embedded = |scheme, address| Some(Embedded { address, scheme });
    match s {
        [0, 0, 0, 0, 0, 0, 0, 0 | 1] => None,
        [0, 0, 0, 0, 0, 0, _, _] => embedded(IPV4_COMPATIBLE, low),
        [0, 0, 0, 0, 0xffff, 0, _, _] => embedded("IPv4-translated", low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => embedded("NAT64", low),
        [0x2002, hi, lo, ..] => {
            let [a, b] = hi.to_be_bytes();
            let [c, d] = lo.to_be_bytes();
            embedded("6to4", Ipv4Addr::new(a, b, c, d))
        }
        _ => None,
    }
}

pub(super) fn v4_category(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
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
    } else if a == 192 && b == 0 && c == 0 {
        Some("reserved (IETF protocol assignments)")
    } else {
        None
    }
}

/// IPv6 addresses that carry no IPv4 address: only global unicast outside its special blocks passes.
pub(super) fn v6_category(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if (s[0] & 0xfe00) == 0xfc00 {
        Some("private (unique local)")
    } else if (s[0] & 0xffc0) == 0xfe80 {
        Some("link-local")
    } else if (s[0] & 0xffc0) == 0xfec0 {
        Some("private (deprecated site-local)")
    } else if ip.is_multicast() {
        Some("multicast or reserved")
    } else if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        Some("private (local-use NAT64)")
    } else if s[..4] == [0x100, 0, 0, 0] {
        Some("reserved (discard-only)")
    } else if (s[0] == 0x2001 && s[1] == 0x0db8) || (s[0] == 0x3fff && s[1] < 0x1000) {
        Some("documentation or benchmarking")
    } else if s[0] == 0x2001 && s[1] < 0x0200 {
        Some("reserved (IETF protocol assignments, Teredo, benchmarking)")
    } else if (s[0] & 0xe000) != 0x2000 {
        Some("reserved (not global unicast)")
    } else {
        None
    }
}
