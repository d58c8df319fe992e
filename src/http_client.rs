//! The one place an outbound `reqwest::Client` is built, and the one function that sends a request.
//!
//! The client has explicit connect and total timeouts, follows no redirects, reads no proxy from the
//! environment, makes no retries of its own (so attempt counts are exact) and resolves through the
//! destination guard. [`HttpSender::send`] reads at most `body_cap` bytes of an answer, so a hostile receiver
//! cannot exhaust memory, and turns every failure into an [`Answer`]: a receiver's trouble is data, not an error.

use std::error::Error as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};

use crate::config::{Auth, EndpointConfig};
use crate::formats::{Answer, RenderedRequest, TransportKind};
use crate::guard::{DestinationGuard, GuardedResolver, Refused};
use crate::model::MessageId;
use crate::signing::signature_header;

/// The header that carries the message type of every message request (never of a handshake).
pub const TYPE_HEADER: &str = "hookd-type";

/// Errors building the client (a startup failure, never a delivery outcome).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct ClientBuildError(#[from] reqwest::Error);

/// Sends rendered requests to receivers.
#[derive(Clone, Debug)]
pub struct HttpSender {
    client: reqwest::Client,
    guard: Arc<DestinationGuard>,
    body_cap: usize,
}

impl HttpSender {
    pub fn new(
        guard: DestinationGuard,
        connect_timeout: Duration,
        body_cap: usize,
    ) -> Result<HttpSender, ClientBuildError> {
        let guard = Arc::new(guard);
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never())
            .no_proxy()
            .dns_resolver(GuardedResolver::new(Arc::clone(&guard)))
            .user_agent(concat!("hookd/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(HttpSender {
            client,
            guard,
            body_cap,
        })
    }

    /// One HTTP exchange for a rendered request. `ids` go in `webhook-id` (the first; a batch also lists all
    /// in `webhook-batch`), `kind` (the messages' type) in `hookd-type`; the endpoint's timeout bounds the
    /// whole exchange, body included.
    pub async fn send(
        &self,
        endpoint: &EndpointConfig,
        url: &reqwest::Url,
        ids: &[MessageId],
        kind: Option<&str>,
        request: RenderedRequest,
    ) -> Answer {
        if let Err(refused) = self.guard.check_url(url) {
            return transport(TransportKind::Refused, refused.to_string());
        }
        let mut builder = self
            .client
            .post(url.clone())
            .timeout(endpoint.timeout)
            .header(CONTENT_TYPE, request.content_type);
        if let Some(first) = ids.first() {
            let id = first.to_string();
            if !endpoint.signing_keys.is_empty() {
                let timestamp = unix_seconds(SystemTime::now());
                let signature =
                    signature_header(&endpoint.signing_keys, &id, timestamp, &request.body);
                builder = builder
                    .header("webhook-timestamp", timestamp)
                    .header("webhook-signature", signature);
            }
            builder = builder.header("webhook-id", id);
        }
        if let Some(kind) = kind {
            match HeaderValue::from_str(kind) {
                Ok(value) => builder = builder.header(TYPE_HEADER, value),
                Err(_) => {
                    return transport(
                        TransportKind::Request,
                        format!("message type {kind:?} is not a valid header value"),
                    );
                }
            }
        }
        builder = builder.body(request.body);
        if ids.len() > 1 {
            let all: Vec<String> = ids.iter().map(ToString::to_string).collect();
            builder = builder.header("webhook-batch", all.join(","));
        }
        builder = match &endpoint.auth {
            None => builder,
            Some(Auth::Bearer { token }) => {
                match HeaderValue::from_str(&format!("Bearer {}", token.expose())) {
                    Ok(mut value) => {
                        value.set_sensitive(true);
                        builder.header(AUTHORIZATION, value)
                    }
                    Err(_) => {
                        return transport(
                            TransportKind::Request,
                            "bearer token is not a valid header value".into(),
                        );
                    }
                }
            }
            Some(Auth::Basic { username, password }) => {
                builder.basic_auth(username, Some(password.expose()))
            }
        };
        let response = match builder.send().await {
            Ok(response) => response,
            Err(error) => return classify_error(&error),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        match read_capped(response, self.body_cap).await {
            Ok(body) => Answer::Response {
                status,
                retry_after,
                body,
            },
            Err(error) => classify_error(&error),
        }
    }
}

fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn transport(kind: TransportKind, message: String) -> Answer {
    Answer::Transport { kind, message }
}

/// Reads the body up to `cap` bytes and stops there (the rest is dropped with the connection).
async fn read_capped(mut response: reqwest::Response, cap: usize) -> Result<Bytes, reqwest::Error> {
    let mut body = BytesMut::new();
    while body.len() < cap {
        match response.chunk().await? {
            Some(chunk) => {
                let room = cap - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            None => break,
        }
    }
    Ok(body.freeze())
}

fn classify_error(error: &reqwest::Error) -> Answer {
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<Refused>() {
            return transport(TransportKind::Refused, refused.to_string());
        }
        source = cause.source();
    }
    let kind = if error.is_timeout() {
        TransportKind::Timeout
    } else if error.is_connect() {
        TransportKind::Connect
    } else if error.is_builder() {
        TransportKind::Request
    } else {
        TransportKind::Io
    };
    transport(kind, error_chain(error))
}

/// The error's causes on one line. reqwest's own message is left out: it names the URL, which may carry a
/// secret in its query.
fn error_chain(error: &reqwest::Error) -> String {
    let mut text = String::from("request failed");
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `Retry-After` as delay-seconds or an HTTP date; a date in the past means "now".
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }
}
