//! The `[store]` table: which backend holds the queue. Without it (or without its `url`) hookd keeps the
//! queue in sled in `data_dir`, the embedded default for one machine; with `url` it joins a cluster of
//! nodes sharing one PostgreSQL database.

use std::time::Duration;

use serde::Deserialize;

use crate::config::Secret;
use crate::store::PgOptions;

/// `[store]` as the file has it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `postgresql://user:password@host:port/db` (or `postgres://`); absent: sled in `data_dir`.
    pub url: Option<String>,
    /// Connections in this node's pool.
    pub max_connections: Option<u32>,
    /// How long a claim or a lane lease outlives its node's last heartbeat.
    pub lease_ttl_ms: Option<u64>,
    /// How often the node renews its claims and lane leases.
    pub heartbeat_ms: Option<u64>,
    /// How the node names itself in the database (`hookd_nodes`); host name and pid by default.
    pub node_name: Option<String>,
}

/// Which backend the daemon runs on.
#[derive(Clone, Debug)]
pub enum StoreChoice {
    /// sled in `data_dir`.
    Sled,
    /// A PostgreSQL database shared by several nodes.
    Postgres { url: Secret, options: PgOptions },
}

impl RawStore {
    /// Checks the table; an error names the key.
    pub fn validate(self) -> Result<StoreChoice, (String, String)> {
        let Some(url) = self.url else {
            let set = self.max_connections.is_some()
                || self.lease_ttl_ms.is_some()
                || self.heartbeat_ms.is_some()
                || self.node_name.is_some();
            if set {
                return Err((
                    "store.url".into(),
                    "the [store] settings apply to PostgreSQL: set `url` too, or remove them"
                        .into(),
                ));
            }
            return Ok(StoreChoice::Sled);
        };
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err((
                "store.url".into(),
                "must be a PostgreSQL URL: postgresql://user@host/database".into(),
            ));
        }
        let defaults = PgOptions::default();
        let lease_ttl = Duration::from_millis(self.lease_ttl_ms.unwrap_or(15_000));
        let heartbeat = Duration::from_millis(self.heartbeat_ms.unwrap_or(3_000));
        if heartbeat.is_zero() || heartbeat * 2 > lease_ttl {
            return Err((
                "store.heartbeat_ms".into(),
                format!(
                    "must be above 0 and at most half of lease_ttl_ms ({} ms), so that a live node renews its leases in time",
                    lease_ttl.as_millis()
                ),
            ));
        }
        let max_connections = self.max_connections.unwrap_or(defaults.max_connections);
        if max_connections < 2 {
            return Err(("store.max_connections".into(), "must be at least 2".into()));
        }
        let label = self.node_name.unwrap_or_else(default_node_name);
        Ok(StoreChoice::Postgres {
            url: Secret::new(url),
            options: PgOptions {
                max_connections,
                lease_ttl,
                heartbeat,
                label,
                ..defaults
            },
        })
    }
}

fn default_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    format!("{host} pid {}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(url: Option<&str>) -> RawStore {
        RawStore {
            url: url.map(str::to_owned),
            ..RawStore::default()
        }
    }

    fn refused_key(raw: RawStore) -> String {
        match raw.validate() {
            Err((key, _)) => key,
            Ok(choice) => panic!("accepted: {choice:?}"),
        }
    }

    #[test]
    fn no_url_is_sled_and_a_postgres_url_is_postgres() {
        assert!(matches!(raw(None).validate(), Ok(StoreChoice::Sled)));
        let Ok(StoreChoice::Postgres { url, options }) =
            raw(Some("postgresql://hookd@db/hookd")).validate()
        else {
            panic!("a PostgreSQL URL selects PostgreSQL");
        };
        assert_eq!(url.expose(), "postgresql://hookd@db/hookd");
        assert_eq!(options.lease_ttl, Duration::from_secs(15));
        assert_eq!(options.heartbeat, Duration::from_secs(3));
    }

    #[test]
    fn a_url_of_another_scheme_is_refused_naming_the_key() {
        assert_eq!(refused_key(raw(Some("mysql://db/hookd"))), "store.url");
    }

    #[test]
    fn postgres_settings_without_a_url_are_refused() {
        let settings = RawStore {
            max_connections: Some(8),
            ..raw(None)
        };
        assert_eq!(refused_key(settings), "store.url");
    }

    #[test]
    fn a_heartbeat_slower_than_half_the_lease_is_refused() {
        let slow = RawStore {
            lease_ttl_ms: Some(10_000),
            heartbeat_ms: Some(6_000),
            ..raw(Some("postgres://db/hookd"))
        };
        assert_eq!(refused_key(slow), "store.heartbeat_ms");
    }

    #[test]
    fn a_pool_of_one_is_refused() {
        let tiny = RawStore {
            max_connections: Some(1),
            ..raw(Some("postgres://db/hookd"))
        };
        assert_eq!(refused_key(tiny), "store.max_connections");
    }
}
