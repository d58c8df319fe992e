//! What serde reads from the file (unknown keys refused), and [`RawConfig::validate`], the second stage that
//! checks the file-level keys and turns each `[[endpoints]]` table into an endpoint over the defaults.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::{
    Config, ConfigError, DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_MAX_QUEUE_DEPTH,
    DEFAULT_MIN_FREE_DISK_BYTES, LogFormat, Secret, duration, positive,
};
use crate::endpoint_spec::{Defaults, Table, Tables};

/// The file as serde reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub data_dir: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub max_payload_bytes: Option<usize>,
    pub max_batch_bytes: Option<usize>,
    pub max_batch_messages: Option<usize>,
    pub shutdown_grace_ms: Option<u64>,
    pub retention: Option<String>,
    pub max_retry_after: Option<String>,
    pub response_body_cap: Option<usize>,
    pub connect_timeout_ms: Option<u64>,
    pub sled_cache_bytes: Option<u64>,
    pub max_queue_depth: Option<u64>,
    pub min_free_disk_bytes: Option<u64>,
    pub log_format: Option<String>,
    pub socket_group: Option<String>,
    pub metrics_listen: Option<String>,
    #[serde(default)]
    pub api: RawApi,
    /// `[store]`: PostgreSQL instead of the embedded sled (`store_config.rs`).
    #[serde(default)]
    pub store: crate::store_config::RawStore,
    #[serde(default)]
    pub destinations: RawDestinations,
    /// `[defaults]`: endpoint keys for every endpoint, and `[defaults.<format>]` tables for one format's.
    #[serde(default)]
    pub defaults: Table,
    /// Each `[[endpoints]]` table as written; read as a [`RawEndpoint`] over the defaults.
    #[serde(default)]
    pub endpoints: Vec<Table>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    #[serde(default)]
    pub require_token: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDestinations {
    #[serde(default)]
    pub allow: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    pub name: String,
    pub url: String,
    pub format: Option<String>,
    pub timeout_ms: Option<u64>,
    pub max_attempts: Option<u32>,
    pub max_age: Option<String>,
    pub concurrency: Option<usize>,
    pub auth: Option<RawAuth>,
    pub retry: Option<RawRetry>,
    pub batch_max: Option<usize>,
    pub batch_linger_ms: Option<u64>,
    pub verification: Option<RawVerification>,
    pub urls: Option<std::collections::BTreeMap<String, String>>,
    pub max_pending_per_contact: Option<usize>,
    pub signing_secret: Option<OneOrMany<Secret>>,
    pub rate_limit: Option<f64>,
    pub circuit_breaker: Option<RawCircuitBreaker>,
    pub max_queued: Option<u64>,
}

/// A key that takes one value or a list of them (`signing_secret = "..."` or `signing_secret = ["...", "..."]`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCircuitBreaker {
    pub failure_threshold: Option<u32>,
    pub cooldown: Option<String>,
}

/// `verification`: the handshake's table `{ validation_key = "..." }`, or the word `"none"` for a receiver
/// that has no handshake (seed 002 asks for one; an endpoint without it must say so).
#[derive(Debug)]
pub enum RawVerification {
    Handshake { validation_key: Secret },
    None,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHandshake {
    validation_key: Secret,
}

impl<'de> Deserialize<'de> for RawVerification {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(word) if word == "none" => Ok(RawVerification::None),
            table @ serde_json::Value::Object(_) => serde_json::from_value::<RawHandshake>(table)
                .map(|raw| RawVerification::Handshake {
                    validation_key: raw.validation_key,
                })
                .map_err(D::Error::custom),
            other => Err(D::Error::custom(format!(
                "{other} is neither \"none\" nor a table {{ validation_key = \"...\" }}"
            ))),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "lowercase")]
pub enum RawAuth {
    Bearer { token: Secret },
    Basic { username: String, password: Secret },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub schedule: Option<Vec<String>>,
    pub initial_ms: Option<u64>,
    pub max_ms: Option<u64>,
    pub multiplier: Option<f64>,
    pub jitter: Option<f64>,
}

impl RawConfig {
    /// The second stage: every value checked, defaults filled in.
    pub fn validate(self, file: &Path) -> Result<Config, ConfigError> {
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            file: file.to_owned(),
            key: key.to_owned(),
            reason,
        };
        let store = self
            .store
            .validate()
            .map_err(|(key, reason)| invalid(&key, reason))?;
        let data_dir = self.data_dir.unwrap_or_else(|| PathBuf::from("data"));
        let socket = self.socket.unwrap_or_else(|| data_dir.join("hookd.sock"));
        let max_payload_bytes = positive(
            self.max_payload_bytes,
            DEFAULT_MAX_PAYLOAD_BYTES,
            "max_payload_bytes",
        )
        .map_err(|r| invalid("max_payload_bytes", r))?;
        let max_batch_bytes = positive(self.max_batch_bytes, 16 * 1024 * 1024, "max_batch_bytes")
            .map_err(|r| invalid("max_batch_bytes", r))?;
        let max_batch_messages = positive(self.max_batch_messages, 10_000, "max_batch_messages")
            .map_err(|r| invalid("max_batch_messages", r))?;
        let retention =
            duration(self.retention.as_deref(), "7d").map_err(|r| invalid("retention", r))?;
        let max_retry_after = duration(self.max_retry_after.as_deref(), "1h")
            .map_err(|r| invalid("max_retry_after", r))?;
        let response_body_cap = positive(self.response_body_cap, 64 * 1024, "response_body_cap")
            .map_err(|r| invalid("response_body_cap", r))?;
        let connect_timeout = Duration::from_millis(
            positive(self.connect_timeout_ms, 5_000, "connect_timeout_ms")
                .map_err(|r| invalid("connect_timeout_ms", r))?,
        );
        let log_format = match self.log_format.as_deref() {
            None => LogFormat::Text,
            Some(name) => LogFormat::from_name(name).ok_or_else(|| {
                invalid("log_format", format!("`{name}` is not one of: text, json"))
            })?,
        };
        let max_queue_depth = positive(
            self.max_queue_depth,
            DEFAULT_MAX_QUEUE_DEPTH,
            "max_queue_depth",
        )
        .map_err(|r| invalid("max_queue_depth", r))?;
        if let Some(group) = &self.socket_group
            && group.trim().is_empty()
        {
            return Err(invalid("socket_group", "must name a group".into()));
        }
        let metrics_listen = match &self.metrics_listen {
            None => None,
            Some(text) => Some(text.parse::<std::net::SocketAddr>().map_err(|e| {
                invalid(
                    "metrics_listen",
                    format!("`{text}` is not an address like \"127.0.0.1:9464\" ({e})"),
                )
            })?),
        };
        let allow = self
            .destinations
            .allow
            .iter()
            .enumerate()
            .map(|(i, cidr)| {
                cidr.parse::<IpNet>().map_err(|e| {
                    invalid(
                        &format!("destinations.allow[{i}]"),
                        format!("`{cidr}` is not a CIDR ({e})"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let defaults =
            Defaults::from_table(self.defaults).map_err(|e| invalid(&e.field, e.reason))?;
        let mut names = HashSet::new();
        let mut endpoints = Vec::with_capacity(self.endpoints.len());
        let mut declared = std::collections::HashMap::new();
        for (i, table) in self.endpoints.into_iter().enumerate() {
            let key = |field: &str| {
                if field.is_empty() {
                    format!("endpoints[{i}]")
                } else {
                    format!("endpoints[{i}].{field}")
                }
            };
            let endpoint = defaults
                .validate(&table)
                .map_err(|e| invalid(&key(&e.field), e.reason))?;
            if !names.insert(endpoint.name.clone()) {
                return Err(invalid(
                    &key("name"),
                    format!("endpoint `{}` is defined twice", endpoint.name),
                ));
            }
            declared.insert(endpoint.name.clone(), table);
            endpoints.push(endpoint);
        }
        Ok(Config {
            store,
            data_dir,
            socket,
            max_payload_bytes,
            max_batch_bytes,
            max_batch_messages,
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms.unwrap_or(10_000)),
            retention,
            max_retry_after,
            response_body_cap,
            connect_timeout,
            sled_cache_bytes: self.sled_cache_bytes.unwrap_or(64 * 1024 * 1024),
            max_queue_depth,
            min_free_disk_bytes: self
                .min_free_disk_bytes
                .unwrap_or(DEFAULT_MIN_FREE_DISK_BYTES),
            log_format,
            socket_group: self.socket_group,
            metrics_listen,
            require_token: self.api.require_token,
            allow,
            defaults,
            endpoints,
            declared: Tables(declared),
        })
    }
}
