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
