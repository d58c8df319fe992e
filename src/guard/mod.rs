//! The destination guard: hookd posts to URLs that customers typed, so it must not be turned against the
//! network it runs in (SSRF).
//!
//! Every address a request would go to is checked: loopback, private, link-local (which includes cloud
//! metadata at 169.254.169.254), shared, multicast, broadcast, documentation, reserved and unspecified
//! addresses are refused unless a CIDR of `[destinations] allow` covers them. IPv6 addresses that carry an
//! IPv4 address are judged by it: IPv4-mapped (`::ffff:127.0.0.1`, judged exactly as the IPv4 address, since
//! the kernel connects to that very address), IPv4-compatible (`::127.0.0.1`, deprecated, always refused),
//! IPv4-translated (`::ffff:0:a.b.c.d`), NAT64 (`64:ff9b::/96`) and 6to4 (`2002::/16`); outside those, only
//! global unicast (`2000::/3`) minus its special-purpose blocks passes. Host names are checked after
//! resolution by [`GuardedResolver`], whose vetted addresses are the ones the connection uses (no second
//! lookup to race). IP-literal URLs skip the resolver, so [`DestinationGuard::check_url`] checks them before
//! sending; the `url` crate has already turned decimal, hex, octal and short IPv4 notations (and full-width
//! digits, percent-encoding and a trailing dot) into an IPv4 host by then, which the tests below pin.
//!
//! An allow-list entry opens exactly the addresses it contains: `127.0.0.0/8` opens `127.0.0.1` and
//! `::ffff:127.0.0.1` (the same socket address), but not `::1`, nor `64:ff9b::7f00:1` or `2002:7f00:1::`,
//! which reach another machine's idea of 127.0.0.1 through a translator or relay.

mod address_categories;
mod destination_guard;
mod resolver;

pub use destination_guard::{DestinationGuard, Embedded, Refused};
pub use resolver::GuardedResolver;
