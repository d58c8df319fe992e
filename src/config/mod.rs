//! The configuration file, read in two stages.
//!
//! [`RawConfig`] is what serde reads from TOML (unknown keys refused); [`Config`] is what the daemon runs on,
//! produced by [`Config::load`] / [`RawConfig::validate`], which check every value and name the file, the key
//! and the reason when one is wrong. Nothing downstream re-validates: holding a `Config` means it is sound.
//!
//! One file per part: `raw.rs` holds what serde reads and the file-level checks, `endpoint.rs` one endpoint's
//! settings and their checks, `retry.rs` the `retry` table's; this file holds the result and the helpers they
//! share. Every item is re-exported here, so paths stay `crate::config::X`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::endpoint_spec::{Defaults, Tables};

mod endpoint;
mod raw;
mod retry;
#[cfg(test)]
mod tests;

pub use endpoint::{
    Auth, CircuitBreakerConfig, EndpointConfig, EndpointSettings, Verification, masked_url,
    validate_endpoint_name,
};
pub use raw::{
    OneOrMany, RawApi, RawAuth, RawCircuitBreaker, RawConfig, RawDestinations, RawEndpoint,
    RawRetry, RawVerification,
};

/// Default cap on one message's payload (1 MiB).
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// A configuration error: which file, which key, and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {file}: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {file}: {message}")]
    Parse { file: PathBuf, message: String },
    #[error("config file {file}: key `{key}`: {reason}")]
    Invalid {
        file: PathBuf,
        key: String,
        reason: String,
    },
}

/// A secret string (token, password): never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// The validated configuration the daemon runs on.
#[derive(Clone, Debug)]
pub struct Config {
    /// Which backend holds the queue: sled in `data_dir`, or a PostgreSQL database.
    pub store: crate::store_config::StoreChoice,
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    pub max_payload_bytes: usize,
    pub max_batch_bytes: usize,
    /// The most messages one `POST /v1/messages/batch` may carry.
    pub max_batch_messages: usize,
    pub shutdown_grace: Duration,
    pub retention: Duration,
    pub max_retry_after: Duration,
    pub response_body_cap: usize,
    pub connect_timeout: Duration,
    pub sled_cache_bytes: u64,
    /// Messages waiting (queued, held or in flight) above which enqueues answer 503 with `Retry-After`.
    pub max_queue_depth: u64,
    /// Free space the data dir's file system must keep; below it enqueues answer 503 (0: no check). Checked
    /// only when the queue is in the data dir (sled), not with a `[store] url`.
    pub min_free_disk_bytes: u64,
    pub log_format: LogFormat,
    /// The group given the socket (mode 0660) so that a platform user outside hookd's own can reach it.
    pub socket_group: Option<String>,
    /// A TCP address where `GET /metrics` is also served (the socket always serves it).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Every API request must carry an access token, even before one is created.
    pub require_token: bool,
    pub allow: Vec<IpNet>,
    /// `[defaults]` and `[defaults.<format>]`, laid under every endpoint's own keys.
    pub defaults: Defaults,
    /// The endpoints the file declares, validated, in file order.
    pub endpoints: Vec<EndpointConfig>,
    /// The same endpoints' tables as written (without the defaults), by name: run-time overrides are laid
    /// over these.
    pub declared: Tables,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl LogFormat {
    pub fn from_name(name: &str) -> Option<LogFormat> {
        match name {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// Default free space kept on the data dir's file system (64 MiB): sled fails for good on a full disk.
pub const DEFAULT_MIN_FREE_DISK_BYTES: u64 = 64 * 1024 * 1024;

/// Default maximum of one endpoint's waiting messages before its enqueues are refused with 429.
pub const DEFAULT_MAX_QUEUED: u64 = 1_000_000;

/// Default maximum of waiting messages before enqueues are refused with 503.
pub const DEFAULT_MAX_QUEUE_DEPTH: u64 = 5_000_000;

impl Config {
    /// Reads and validates a config file. Relative paths inside it are taken relative to the working
    /// directory (as an operator typing `data_dir = "data"` expects).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses and validates TOML text; `file` is only used to name the source in errors.
    pub fn from_toml(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        raw.validate(file)
    }

    pub fn endpoint(&self, name: &str) -> Option<&EndpointConfig> {
        self.endpoints.iter().find(|e| e.name == name)
    }
}

fn positive<T: PartialOrd + Default + Copy + fmt::Display>(
    value: Option<T>,
    default: T,
    _key: &str,
) -> Result<T, String> {
    match value {
        None => Ok(default),
        Some(v) if v > T::default() => Ok(v),
        Some(v) => Err(format!("{v} must be greater than 0")),
    }
}

/// Parses a human duration such as `"24h"`, `"5m"`, `"250ms"`.
pub fn duration(value: Option<&str>, default: &str) -> Result<Duration, String> {
    let text = value.unwrap_or(default);
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration like \"30s\" or \"24h\" ({e})"))
}
