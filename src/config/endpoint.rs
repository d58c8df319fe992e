//! One endpoint as the daemon runs it ([`EndpointConfig`] and its parts), and [`RawEndpoint::validate`], which
//! checks one endpoint's keys; kept apart from the file-level keys because run-time changes re-run it alone.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    DEFAULT_MAX_QUEUED, OneOrMany, RawAuth, RawEndpoint, RawVerification, Secret, duration,
    positive,
};
use crate::endpoint_spec::{SpecError, Table};
use crate::formats::FormatKind;
use crate::retry::{Backoff, RetryPolicy};

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
