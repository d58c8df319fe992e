//! Name resolution through the guard: a name is refused if any of its addresses is.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::DestinationGuard;

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
    use crate::guard::Refused;

    #[tokio::test]
    async fn the_resolver_refuses_a_name_with_a_refused_address() {
        let resolver = GuardedResolver::new(Arc::new(DestinationGuard::default()));
        let error = match resolver.resolve("localhost".parse().unwrap()).await {
            Ok(addrs) => panic!("localhost resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(error) => error,
        };
        let refused = error.downcast_ref::<Refused>().expect("a Refused error");
        assert_eq!(refused.category, "loopback");

        let open = GuardedResolver::new(Arc::new(DestinationGuard::new(vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ])));
        let addrs: Vec<SocketAddr> = match open.resolve("localhost".parse().unwrap()).await {
            Ok(addrs) => addrs.collect(),
            Err(error) => panic!("allow-listed localhost refused: {error}"),
        };
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()));
    }
}
