//! Receiver protocols: what request to send for a message, and what the receiver's answer means.
//!
//! Each protocol is a module with the same three parts: its options and payload validation (run at enqueue),
//! `render` (messages to an HTTP request) and `classify` (an answer to one [`Verdict`] per message). They are
//! pure functions, so every outcome rule is tested without a network; the dispatcher does the I/O.

pub mod app_inbox;
pub mod dlr_json;
pub mod gateway_json;
pub mod json;
pub mod notification;
pub mod sms_status_xml;

use std::time::Duration;

use bytes::Bytes;

use crate::model::MessageRecord;
use crate::retry::Verdict;

/// The protocols an endpoint can speak (`format` in the config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatKind {
    /// The generic `{"id","type","timestamp","data"}` envelope for any event name.
    Json,
    /// Seed 000: SMS/PUSH notifications answered with a `status_code` model.
    Notification,
    /// Seed 001: SMS status reports batched in XML, acknowledged by echoed `id_sms`.
    SmsStatusXml,
    /// Seed 002: JSON delivery reports, bearer secret, verification handshake.
    DlrJson,
    /// Seed 003: device status and incoming-SMS webhooks.
    GatewayJson,
    /// Seed 004: App-Inbox messages, optional Basic auth, per-contact cap.
    AppInbox,
}

/// A payload or type refused at enqueue; the API answers 422 with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct PayloadError {
    /// The offending field (`type`, `payload.id_sms`, ...).
    pub field: String,
    pub reason: String,
}

impl PayloadError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// How a format reads the answer for one message: the verdict, and the receiver's own reference for it
/// (seed 000's `delivery_id`), kept on the attempt record.
#[derive(Debug, Clone, PartialEq)]
pub struct Classified {
    pub verdict: Verdict,
    pub receipt: Option<String>,
}

impl From<Verdict> for Classified {
    fn from(verdict: Verdict) -> Self {
        Classified {
            verdict,
            receipt: None,
        }
    }
}

/// The request a format builds; the HTTP layer adds `webhook-id`, auth and timeouts.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedRequest {
    pub content_type: &'static str,
    pub body: Bytes,
}

/// What came back from one HTTP exchange.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Response {
        status: u16,
        /// `Retry-After`, already turned into a delay.
        retry_after: Option<Duration>,
        /// The body, read up to the configured cap.
        body: Bytes,
    },
    /// No HTTP answer: the request could not be sent or the answer not read.
    Transport {
        kind: TransportKind,
        message: String,
    },
}

/// Why an exchange produced no HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    Connect,
    Timeout,
    /// The destination guard refused the address.
    Refused,
    /// The request could not be built (bad URL, bad payload).
    Request,
    /// The connection broke while sending or reading.
    Io,
}

impl TransportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Connect => "connect",
            TransportKind::Timeout => "timeout",
            TransportKind::Refused => "refused",
            TransportKind::Request => "request",
            TransportKind::Io => "io",
        }
    }
}

impl FormatKind {
    /// The names accepted in `format = ".."`.
    pub const NAMES: &'static [&'static str] = &[
        "json",
        "notification",
        "sms-status-xml",
        "dlr-json",
        "gateway-json",
        "app-inbox",
    ];

    const ALL: [FormatKind; 6] = [
        FormatKind::Json,
        FormatKind::Notification,
        FormatKind::SmsStatusXml,
        FormatKind::DlrJson,
        FormatKind::GatewayJson,
        FormatKind::AppInbox,
    ];

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            FormatKind::Json => "json",
            FormatKind::Notification => "notification",
            FormatKind::SmsStatusXml => "sms-status-xml",
            FormatKind::DlrJson => "dlr-json",
            FormatKind::GatewayJson => "gateway-json",
            FormatKind::AppInbox => "app-inbox",
        }
    }

    /// The message types the format carries; `None` means any event name (`json`).
    pub fn types(self) -> Option<&'static [&'static str]> {
        match self {
            FormatKind::Json => None,
            FormatKind::Notification => Some(notification::TYPES),
            FormatKind::SmsStatusXml => Some(sms_status_xml::TYPES),
            FormatKind::DlrJson => Some(dlr_json::TYPES),
            FormatKind::GatewayJson => Some(gateway_json::TYPES),
            FormatKind::AppInbox => Some(app_inbox::TYPES),
        }
    }

    /// `max_attempts` when the config does not say: the default schedule's nine retries plus the first try,
    /// or the seed's own number.
    pub fn default_max_attempts(self) -> u32 {
        match self {
            FormatKind::SmsStatusXml => sms_status_xml::DEFAULT_MAX_ATTEMPTS,
            _ => 10,
        }
    }

    /// The most messages one request may carry (and the default `batch_max`).
    pub fn batch_max(self) -> usize {
        match self {
            FormatKind::SmsStatusXml => sms_status_xml::DEFAULT_BATCH_MAX,
            _ => 1,
        }
    }

    /// Whether the endpoint verifies its webhook before use (seed 002): its `verification` is required, a
    /// handshake table or `"none"`.
    pub fn verifies(self) -> bool {
        self == FormatKind::DlrJson
    }

    /// Whether each message type may have a URL of its own (`urls`): seed 003's two webhooks.
    pub fn routes_by_type(self) -> bool {
        self == FormatKind::GatewayJson
    }

    /// Whether messages belong to contacts with a pending cap (seed 004).
    pub fn caps_contacts(self) -> bool {
        self == FormatKind::AppInbox
    }

    /// The contact a message belongs to, for formats that cap pending messages per contact.
    pub fn contact(self, payload: &str) -> Option<String> {
        match self {
            FormatKind::AppInbox => app_inbox::contact(payload),
            _ => None,
        }
    }

    /// Checks that `kind` is a type this format carries and that the payload has what it needs.
    pub fn validate(
        self,
        kind: &str,
        payload: &serde_json::value::RawValue,
    ) -> Result<(), PayloadError> {
        if let Some(types) = self.types() {
            if !types.contains(&kind) {
                return Err(PayloadError::new(
                    "type",
                    format!(
                        "`{kind}` cannot be carried by the {} format (it carries: {})",
                        self.name(),
                        types.join(", ")
                    ),
                ));
            }
        }
        match self {
            FormatKind::Json => json::validate(kind, payload),
            FormatKind::Notification => notification::validate(kind, payload),
            FormatKind::SmsStatusXml => sms_status_xml::validate(kind, payload),
            FormatKind::DlrJson => dlr_json::validate(kind, payload),
            FormatKind::GatewayJson => gateway_json::validate(kind, payload),
            FormatKind::AppInbox => app_inbox::validate(kind, payload),
        }
    }

    pub fn render(self, messages: &[MessageRecord]) -> Result<RenderedRequest, PayloadError> {
        match self {
            FormatKind::Json => json::render(messages),
            FormatKind::Notification => notification::render(messages),
            FormatKind::SmsStatusXml => sms_status_xml::render(messages),
            FormatKind::DlrJson => dlr_json::render(messages),
            FormatKind::GatewayJson => gateway_json::render(messages),
            FormatKind::AppInbox => app_inbox::render(messages),
        }
    }

    /// One verdict per message, in the order given.
    pub fn classify(self, answer: &Answer, messages: &[MessageRecord]) -> Vec<Classified> {
        match self {
            FormatKind::Json => vec![classify_http(answer).into(); messages.len()],
            FormatKind::Notification => notification::classify(answer, messages),
            FormatKind::SmsStatusXml => sms_status_xml::classify(answer, messages),
            FormatKind::DlrJson => dlr_json::classify(answer, messages),
            FormatKind::GatewayJson => gateway_json::classify(answer, messages),
            FormatKind::AppInbox => app_inbox::classify(answer, messages),
        }
    }
}

/// The one message of a request, for formats that send one message per request.
pub fn single<'a>(
    format: &str,
    messages: &'a [MessageRecord],
) -> Result<&'a MessageRecord, PayloadError> {
    match messages {
        [message] => Ok(message),
        _ => Err(PayloadError::new(
            "messages",
            format!("the {format} format sends one message per request"),
        )),
    }
}

/// A request whose body is the stored payload, byte for byte (dlr-json, gateway-json, app-inbox).
pub fn render_payload_as_is(
    format: &str,
    messages: &[MessageRecord],
) -> Result<RenderedRequest, PayloadError> {
    let message = single(format, messages)?;
    serde_json::from_str::<&serde_json::value::RawValue>(&message.payload)
        .map_err(|e| PayloadError::new("payload", format!("stored payload is not JSON: {e}")))?;
    Ok(RenderedRequest {
        content_type: "application/json",
        body: Bytes::from(message.payload.clone()),
    })
}

/// The plain HTTP rules most formats share: 2xx delivered; transport trouble, 408, 425, 429 and 5xx retried;
/// 3xx (redirects are not followed) and other 4xx final.
pub fn classify_http(answer: &Answer) -> Verdict {
    match answer {
        Answer::Transport { kind, message } => match kind {
            TransportKind::Connect | TransportKind::Timeout | TransportKind::Io => Verdict::Retry {
                reason: format!("{}: {message}", kind.as_str()),
                retry_after: None,
            },
            TransportKind::Refused | TransportKind::Request => Verdict::Final {
                reason: format!("{}: {message}", kind.as_str()),
            },
        },
        Answer::Response {
            status,
            retry_after,
            ..
        } => match *status {
            200..=299 => Verdict::Delivered {
                reason: format!("HTTP {status}"),
            },
            408 | 425 | 429 | 500..=599 => Verdict::Retry {
                reason: format!("HTTP {status}"),
                retry_after: *retry_after,
            },
            300..=399 => Verdict::Final {
                reason: format!("HTTP {status}: redirect not followed"),
            },
            _ => Verdict::Final {
                reason: format!("HTTP {status}"),
            },
        },
    }
}

#[cfg(test)]
mod tests;
