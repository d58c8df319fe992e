//! The configuration file, read in two stages.
//!
//! [`RawConfig`] is what serde reads from TOML (unknown keys refused); [`Config`] is what the daemon runs on,
//! produced by [`Config::load`] / [`RawConfig::validate`], which check every value and name the file, the key
//! and the reason when one is wrong. Nothing downstream re-validates: holding a `Config` means it is sound.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::endpoint_spec::{Defaults, SpecError, Table, Tables};
use crate::formats::FormatKind;
use crate::retry::{Backoff, RetryPolicy};

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

/// When an endpoint counts as failing and for how long its lane then stops sending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CircuitBreakerConfig {
    /// Consecutive failed attempts (transport errors, 5xx) that open the circuit.
    pub failure_threshold: u32,
    /// How long an open circuit waits before one probe attempt.
    pub cooldown: Duration,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        CircuitBreakerConfig {
            failure_threshold: 10,
            cooldown: Duration::from_secs(30),
        }
    }
}

/// Credentials sent with every request to an endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    Bearer { token: Secret },
    Basic { username: String, password: Secret },
}

/// One receiver and how to talk to it. `Debug` shows the URL masked (see [`masked_url`]).
#[derive(Clone)]
pub struct EndpointConfig {
    pub name: String,
    pub url: reqwest::Url,
    pub format: FormatKind,
    pub timeout: Duration,
    pub concurrency: usize,
    pub auth: Option<Auth>,
    pub retry: RetryPolicy,
    /// Messages per request (more than 1 only for formats that batch).
    pub batch_max: usize,
    /// How long a lane waits for a batch to fill before sending what it has.
    pub batch_linger: Duration,
    /// The handshake that must succeed before the first delivery (seed 002).
    pub verification: Option<Verification>,
    /// The endpoint's format verifies, but its table says `verification = "none"`: sent without a handshake
    /// (start-up warns about it).
    pub verification_waived: bool,
    /// Per message type, the URL its messages go to instead of `url` (`urls`, gateway-json: seed 003's two
    /// webhooks). A type not listed goes to `url`; so do the verification handshake and everything else.
    pub urls: std::collections::BTreeMap<String, reqwest::Url>,
    /// The most undelivered messages one contact may have on this endpoint (seed 004).
    pub max_pending_per_contact: Option<usize>,
    /// Standard Webhooks signing secrets (`whsec_` + base64); every request is signed with each of them, so
    /// a receiver can rotate. Empty: requests are not signed.
    pub signing_keys: Vec<crate::signing::SigningKey>,
    /// The most requests per second sent to this endpoint; `None`: no limit beyond `concurrency`.
    pub rate_limit: Option<f64>,
    pub circuit_breaker: CircuitBreakerConfig,
    /// The most messages this endpoint may have waiting (queued, held or in flight); more enqueues get 429.
    pub max_queued: u64,
}

impl fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointConfig")
            .field("name", &self.name)
            .field("url", &masked_url(&self.url))
            .field("format", &self.format)
            .field("timeout", &self.timeout)
            .field("concurrency", &self.concurrency)
            .field("auth", &self.auth)
            .field("retry", &self.retry)
            .field("batch_max", &self.batch_max)
            .field("batch_linger", &self.batch_linger)
            .field("verification", &self.verification)
            .field("verification_waived", &self.verification_waived)
            .field(
                "urls",
                &self
                    .urls
                    .iter()
                    .map(|(kind, url)| (kind, masked_url(url)))
                    .collect::<std::collections::BTreeMap<_, _>>(),
            )
            .field("max_pending_per_contact", &self.max_pending_per_contact)
            .field("signing_keys", &self.signing_keys)
            .field("rate_limit", &self.rate_limit)
            .field("circuit_breaker", &self.circuit_breaker)
            .field("max_queued", &self.max_queued)
            .finish()
    }
}

impl EndpointConfig {
    /// Where a message of type `kind` is sent: its type's own URL (`urls`), else `url`.
    pub fn url_for(&self, kind: &str) -> &reqwest::Url {
        self.urls.get(kind).unwrap_or(&self.url)
    }
}

/// The URL with its password and query values masked: customers put tokens there.
pub fn masked_url(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    if shown.query().is_some() {
        let masked: Vec<(String, String)> = url
            .query_pairs()
            .map(|(key, _)| (key.into_owned(), "***".to_owned()))
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(masked);
    }
    shown.to_string()
}

/// Seed 002's verification handshake settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    pub validation_key: Secret,
}

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

impl RawEndpoint {
    /// Validates one endpoint; an error names the key (`retry.jitter`, `urls.incoming_sms`) and the reason.
    pub(crate) fn validate(self) -> Result<EndpointConfig, SpecError> {
        validate_endpoint_name(&self.name).map_err(|r| ("name", r))?;
        let url = parse_url(&self.url)?;
        let format = match self.format.as_deref() {
            None => FormatKind::Json,
            Some(name) => FormatKind::from_name(name).ok_or_else(|| {
                (
                    "format",
                    format!(
                        "unknown format `{name}` (known: {})",
                        FormatKind::NAMES.join(", ")
                    ),
                )
            })?,
        };
        let timeout_ms =
            positive(self.timeout_ms, 10_000, "timeout_ms").map_err(|r| ("timeout_ms", r))?;
        let concurrency =
            positive(self.concurrency, 16, "concurrency").map_err(|r| ("concurrency", r))?;
        let max_attempts = positive(
            self.max_attempts,
            format.default_max_attempts(),
            "max_attempts",
        )
        .map_err(|r| ("max_attempts", r))?;
        let max_age = duration(self.max_age.as_deref(), "24h").map_err(|r| ("max_age", r))?;
        let backoff = match self.retry {
            None => Backoff::default_schedule(),
            Some(raw) => raw.validate()?,
        };
        let batch_max = match (self.batch_max, format.batch_max()) {
            (None, default) => default,
            (Some(n), 1) if n != 1 => {
                return Err((
                    "batch_max",
                    format!("the {} format sends one message per request", format.name()),
                )
                    .into());
            }
            (Some(n), limit) if n == 0 || n > limit => {
                return Err(("batch_max", format!("{n} must be between 1 and {limit}")).into());
            }
            (Some(n), _) => n,
        };
        if self.batch_linger_ms.is_some() && format.batch_max() == 1 {
            return Err((
                "batch_linger_ms",
                format!("the {} format does not batch", format.name()),
            )
                .into());
        }
        let batch_linger = Duration::from_millis(self.batch_linger_ms.unwrap_or(100));
        let (verification, verification_waived) = match self.verification {
            Some(_) if !format.verifies() => {
                return Err((
                    "verification",
                    format!("the {} format has no verification handshake", format.name()),
                )
                    .into());
            }
            Some(RawVerification::Handshake { validation_key })
                if validation_key.expose().is_empty() =>
            {
                return Err(("verification.validation_key", "must not be empty".into()).into());
            }
            Some(RawVerification::Handshake { validation_key }) => {
                (Some(Verification { validation_key }), false)
            }
            Some(RawVerification::None) => (None, true),
            None if format.verifies() => {
                return Err((
                    "verification",
                    format!(
                        "endpoint `{}` is {}, whose webhook is verified before use (seed 002): give \
                         verification = {{ validation_key = \"...\" }}, or verification = \"none\" for a \
                         receiver without the handshake",
                        self.name,
                        format.name()
                    ),
                )
                    .into());
            }
            None => (None, false),
        };
        let urls = match self.urls {
            None => std::collections::BTreeMap::new(),
            Some(_) if !format.routes_by_type() => {
                return Err((
                    "urls",
                    format!(
                        "the {} format has one URL per endpoint (`urls`, a URL per message type, is for gateway-json)",
                        format.name()
                    ),
                )
                    .into());
            }
            Some(raw) => parse_urls(format, raw)?,
        };
        let max_pending_per_contact = match (self.max_pending_per_contact, format.caps_contacts()) {
            (Some(_), false) => {
                return Err((
                    "max_pending_per_contact",
                    format!("the {} format has no contacts", format.name()),
                )
                    .into());
            }
            (Some(0), true) => {
                return Err(("max_pending_per_contact", "must be greater than 0".into()).into());
            }
            (Some(n), true) => Some(n),
            (None, true) => Some(1000),
            (None, false) => None,
        };
        let signing_keys = self
            .signing_secret
            .map(OneOrMany::into_vec)
            .unwrap_or_default()
            .iter()
            .map(|secret| crate::signing::SigningKey::from_secret(secret.expose()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|problem| ("signing_secret", problem))?;
        let rate_limit = match self.rate_limit {
            Some(rate) if !(rate.is_finite() && rate > 0.0) => {
                return Err((
                    "rate_limit",
                    format!("{rate} must be a number of requests per second above 0"),
                )
                    .into());
            }
            other => other,
        };
        let circuit_breaker = match self.circuit_breaker {
            None => CircuitBreakerConfig::default(),
            Some(raw) => {
                let defaults = CircuitBreakerConfig::default();
                CircuitBreakerConfig {
                    failure_threshold: positive(
                        raw.failure_threshold,
                        defaults.failure_threshold,
                        "failure_threshold",
                    )
                    .map_err(|r| ("circuit_breaker.failure_threshold", r))?,
                    cooldown: duration(raw.cooldown.as_deref(), "30s")
                        .map_err(|r| ("circuit_breaker.cooldown", r))?,
                }
            }
        };
        let max_queued = positive(self.max_queued, DEFAULT_MAX_QUEUED, "max_queued")
            .map_err(|r| ("max_queued", r))?;
        let auth = self.auth.map(|a| match a {
            RawAuth::Bearer { token } => Auth::Bearer { token },
            RawAuth::Basic { username, password } => Auth::Basic { username, password },
        });
        Ok(EndpointConfig {
            name: self.name,
            url,
            format,
            timeout: Duration::from_millis(timeout_ms),
            concurrency,
            auth,
            retry: RetryPolicy {
                backoff,
                max_attempts,
                max_age,
            },
            batch_max,
            batch_linger,
            verification,
            verification_waived,
            urls,
            max_pending_per_contact,
            signing_keys,
            rate_limit,
            circuit_breaker,
            max_queued,
        })
    }
}

impl RawRetry {
    fn validate(self) -> Result<Backoff, (&'static str, String)> {
        let jitter = self.jitter.unwrap_or(0.2);
        if !(0.0..=1.0).contains(&jitter) {
            return Err((
                "retry.jitter",
                format!("{jitter} must be between 0.0 and 1.0"),
            ));
        }
        let exponential =
            self.initial_ms.is_some() || self.max_ms.is_some() || self.multiplier.is_some();
        match (self.schedule, exponential) {
            (Some(_), true) => Err((
                "retry",
                "give either `schedule` or `initial_ms`/`max_ms`/`multiplier`, not both".into(),
            )),
            (Some(list), false) => {
                if list.is_empty() {
                    return Err(("retry.schedule", "must list at least one delay".into()));
                }
                let delays = list
                    .iter()
                    .map(|d| duration(Some(d), "0s"))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|r| ("retry.schedule", r))?;
                Ok(Backoff::Schedule { delays, jitter })
            }
            (None, false) => Ok(Backoff::Schedule {
                delays: Backoff::default_schedule_delays(),
                jitter,
            }),
            (None, true) => {
                let initial = self.initial_ms.unwrap_or(1_000);
                let max = self.max_ms.unwrap_or(3_600_000);
                let multiplier = self.multiplier.unwrap_or(2.0);
                if initial == 0 {
                    return Err(("retry.initial_ms", "must be at least 1".into()));
                }
                if max < initial {
                    return Err((
                        "retry.max_ms",
                        format!("{max} is below initial_ms {initial}"),
                    ));
                }
                if !(multiplier >= 1.0 && multiplier.is_finite()) {
                    return Err((
                        "retry.multiplier",
                        format!("{multiplier} must be a number >= 1.0"),
                    ));
                }
                Ok(Backoff::Exponential {
                    initial: Duration::from_millis(initial),
                    max: Duration::from_millis(max),
                    multiplier,
                    jitter,
                })
            }
        }
    }
}

/// Settings changed at run time (`PUT /v1/endpoints/{name}`, `hookd endpoints set`), kept in the store and
/// laid over the config file's endpoint on every start. Absent fields keep the file's value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
}

impl EndpointSettings {
    /// The same change as a table of config-file keys.
    pub fn to_table(&self) -> Table {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(table)) => table,
            _ => Table::new(),
        }
    }
}

fn parse_url(text: &str) -> Result<reqwest::Url, (&'static str, String)> {
    let url =
        reqwest::Url::parse(text).map_err(|e| ("url", format!("`{text}` is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err((
            "url",
            format!("`{text}` must be an http(s) URL with a host"),
        ));
    }
    Ok(url)
}

/// `urls`: each key a message type of the format, each value checked as `url` is.
fn parse_urls(
    format: FormatKind,
    raw: std::collections::BTreeMap<String, String>,
) -> Result<std::collections::BTreeMap<String, reqwest::Url>, SpecError> {
    let types = format.types().unwrap_or_default();
    raw.into_iter()
        .map(|(kind, text)| {
            let key = format!("urls.{kind}");
            if !types.contains(&kind.as_str()) {
                return Err(SpecError::new(
                    key,
                    format!(
                        "`{kind}` is not a message type of the {} format (it carries: {})",
                        format.name(),
                        types.join(", ")
                    ),
                ));
            }
            let url = parse_url(&text).map_err(|(_, reason)| SpecError::new(key, reason))?;
            Ok((kind, url))
        })
        .collect()
}

/// Endpoint names appear in store keys, URLs and CLI arguments: keep them plain.
pub fn validate_endpoint_name(name: &str) -> Result<(), String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > 64 || !name.chars().all(plain) {
        return Err(format!(
            "`{name}` must be 1 to 64 characters of letters, digits, `-`, `_` or `.`"
        ));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("test.toml"))
    }

    #[test]
    fn the_shipped_example_config_loads() {
        let config = Config::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/hookd.toml"
        )))
        .expect("config/hookd.toml is valid");
        assert!(!config.endpoints.is_empty());
    }

    #[test]
    fn the_example_configs_provider_examples_load_when_uncommented() {
        let text = include_str!("../config/hookd.toml");
        let (head, examples) = text
            .split_once("# Examples for the provider formats")
            .expect("the example config has provider examples");
        let mut uncommented = head.to_owned();
        for line in examples.lines() {
            let Some(rest) = line.strip_prefix("# ") else {
                continue;
            };
            let key = rest.split(" = ").next().unwrap_or_default();
            let is_key = !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_');
            if rest == "[[endpoints]]" || (is_key && rest.contains(" = ")) {
                uncommented.push_str(rest);
                uncommented.push('\n');
            }
        }
        let config = load(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
        let names: Vec<&str> = config.endpoints.iter().map(|e| e.name.as_str()).collect();
        for name in ["sdk-notify", "sms-status", "dlr", "gateway", "inbox"] {
            assert!(names.contains(&name), "{name} in {names:?}");
        }
        let dlr = config.endpoint("dlr").unwrap();
        assert!(
            dlr.verification.is_some(),
            "the example verifies its webhook"
        );
        let gateway = config.endpoint("gateway").unwrap();
        assert_ne!(
            gateway.url_for("device_status"),
            gateway.url_for("incoming_sms"),
            "the seed's two webhooks, two URLs"
        );
    }

    #[test]
    fn errors_name_file_key_and_reason() {
        let err = load("[[endpoints]]\nname = \"a\"\nurl = \"http://x\"\nmax_age = \"soon\"\n")
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("test.toml"), "{text}");
        assert!(text.contains("endpoints[0].max_age"), "{text}");
        assert!(text.contains("soon"), "{text}");
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let err = load("data_dr = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("data_dr"), "{err}");
    }

    #[test]
    fn duplicate_endpoint_names_are_refused() {
        let text = "[[endpoints]]\nname = \"a\"\nurl = \"http://x\"\n[[endpoints]]\nname = \"a\"\nurl = \"http://y\"\n";
        let err = load(text).unwrap_err().to_string();
        assert!(
            err.contains("endpoints[1].name") && err.contains("twice"),
            "{err}"
        );
    }

    #[test]
    fn fast_exponential_retry_is_accepted() {
        let text = "[[endpoints]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/\"\nmax_attempts = 3\n\
                    retry = { initial_ms = 50, max_ms = 200, multiplier = 2.0, jitter = 0.0 }\n";
        let config = load(text).unwrap();
        let retry = &config.endpoints[0].retry;
        assert_eq!(retry.max_attempts, 3);
        assert!(matches!(retry.backoff, Backoff::Exponential { jitter, .. } if jitter == 0.0));
    }

    #[test]
    fn bad_cidr_and_bad_format_are_named() {
        let err = load("[destinations]\nallow = [\"127.0.0.0/33\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("destinations.allow[0]"), "{err}");
        let err = load("[[endpoints]]\nname = \"a\"\nurl = \"http://x\"\nformat = \"yaml\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("endpoints[0].format") && err.contains("yaml"),
            "{err}"
        );
    }

    #[test]
    fn a_dlr_json_endpoint_must_say_how_it_is_verified() {
        let endpoint = |extra: &str| {
            format!(
                "[[endpoints]]\nname = \"a\"\nurl = \"http://x\"\n[[endpoints]]\nname = \"dlr\"\n\
                 url = \"http://x/cb\"\nformat = \"dlr-json\"\n{extra}\n"
            )
        };
        let err = load(&endpoint("")).unwrap_err().to_string();
        assert!(
            err.contains("endpoints[1].verification") && err.contains("`dlr`"),
            "names the key and the endpoint: {err}"
        );
        assert!(err.contains("\"none\""), "says how to opt out: {err}");
        let config = load(&endpoint("verification = \"none\"")).unwrap();
        let dlr = config.endpoint("dlr").unwrap();
        assert!(dlr.verification.is_none() && dlr.verification_waived);
        let config = load(&endpoint("verification = { validation_key = \"k\" }")).unwrap();
        let dlr = config.endpoint("dlr").unwrap();
        assert_eq!(
            dlr.verification.as_ref().map(|v| v.validation_key.expose()),
            Some("k")
        );
        assert!(!dlr.verification_waived);
        for bad in [
            "verification = \"None\"",
            "verification = \"\"",
            "verification = true",
            "verification = { key = \"k\" }",
        ] {
            let err = load(&endpoint(bad)).unwrap_err().to_string();
            assert!(err.contains("endpoints[1].verification"), "{bad}: {err}");
        }
        let err = load(&endpoint("verification = { validation_key = \"\" }"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("endpoints[1].verification.validation_key"),
            "{err}"
        );
    }

    #[test]
    fn verification_is_refused_on_a_format_without_the_handshake() {
        for value in ["\"none\"", "{ validation_key = \"k\" }"] {
            let text = format!(
                "[[endpoints]]\nname = \"gw\"\nurl = \"http://x\"\nformat = \"gateway-json\"\nverification = {value}\n"
            );
            let err = load(&text).unwrap_err().to_string();
            assert!(
                err.contains("endpoints[0].verification")
                    && err.contains("no verification handshake"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_gateway_endpoint_takes_a_url_per_message_type() {
        let gateway = |urls: &str| {
            load(&format!(
                "[[endpoints]]\nname = \"gw\"\nurl = \"https://gw.example/all\"\nformat = \"gateway-json\"\nurls = {urls}\n"
            ))
        };
        let config = gateway(
            "{ device_status = \"https://gw.example/status\", incoming_sms = \"http://gw.example/in?k=1\" }",
        )
        .unwrap();
        let gw = config.endpoint("gw").unwrap();
        assert_eq!(
            gw.url_for("device_status").as_str(),
            "https://gw.example/status"
        );
        assert_eq!(
            gw.url_for("incoming_sms").as_str(),
            "http://gw.example/in?k=1"
        );
        assert!(
            !format!("{gw:?}").contains("k=1"),
            "urls are masked in Debug"
        );
        let config = gateway("{ incoming_sms = \"https://gw.example/in\" }").unwrap();
        let gw = config.endpoint("gw").unwrap();
        assert_eq!(
            gw.url_for("device_status").as_str(),
            "https://gw.example/all",
            "a type without its own URL goes to `url`"
        );
        for (urls, key) in [
            (
                "{ incoming_sms = \"ftp://gw.example/in\" }",
                "endpoints[0].urls.incoming_sms",
            ),
            (
                "{ incoming_sms = \"not a url\" }",
                "endpoints[0].urls.incoming_sms",
            ),
            (
                "{ device_status = \"mailto:a@gw.example\" }",
                "endpoints[0].urls.device_status",
            ),
            (
                "{ sms = \"https://gw.example/x\" }",
                "endpoints[0].urls.sms",
            ),
            ("\"https://gw.example/x\"", "endpoints[0].urls"),
        ] {
            let err = gateway(urls).unwrap_err().to_string();
            assert!(err.contains(&format!("key `{key}`")), "{urls}: {err}");
        }
        let err = load(
            "[[endpoints]]\nname = \"n\"\nurl = \"http://x\"\nformat = \"notification\"\n\
             urls = { sms = \"http://x/sms\" }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("key `endpoints[0].urls`") && err.contains("gateway-json"),
            "{err}"
        );
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let text = "[[endpoints]]\nname = \"a\"\nurl = \"http://x\"\nauth = { type = \"bearer\", token = \"s3cr3t\" }\n";
        let config = load(text).unwrap();
        assert!(!format!("{config:?}").contains("s3cr3t"));
    }
}
