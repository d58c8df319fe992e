//! API errors and their stable JSON form: `{"error":{"code","message"}}` with a fitting status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::store::StoreError;

/// What a client is told to wait after a store failure (the daemon looks for free space to reopen the store
/// about this often).
pub const STORE_RETRY_AFTER_SECS: u64 = 5;

/// An error answered to a client. `code` is stable for scripts; `message` is for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (503s that will pass).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    /// A 503 the client should retry after `seconds`; nothing was accepted.
    pub fn unavailable(code: &'static str, message: impl Into<String>, seconds: u64) -> Self {
        Self {
            retry_after: Some(seconds),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }
    /// 503 `store_unavailable` while the store refuses every write (`reason`): nothing was stored; hookd
    /// opens the store again once the data dir has space.
    pub fn store_down(reason: &str) -> Self {
        Self::unavailable(
            "store_unavailable",
            format!(
                "the store cannot make writes durable ({reason}); hookd reopens it once the data dir has free space"
            ),
            STORE_RETRY_AFTER_SECS,
        )
    }
    pub fn bad_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed_json", message)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn unknown_endpoint(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown_endpoint",
            format!("no endpoint named `{name}`"),
        )
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        if let StoreError::ContactFull { .. } = error {
            return ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "contact_limit",
                error.to_string(),
            );
        }
        tracing::error!(%error, "store error answered as 503");
        ApiError::unavailable(
            "store_unavailable",
            format!("the store cannot take this now: {error}"),
            STORE_RETRY_AFTER_SECS,
        )
    }
}

/// A size as people read it: `16 MiB`, `1.5 KiB`, `900 bytes`.
pub fn size_in_words(bytes: usize) -> String {
    const UNITS: [(usize, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes >= unit {
            return if bytes % unit == 0 {
                format!("{} {name}", bytes / unit)
            } else {
                format!("{:.1} {name}", bytes as f64 / unit as f64)
            };
        }
    }
    format!("{bytes} bytes")
}

/// The wire form of an error.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

impl From<&ApiError> for ErrorDetail {
    fn from(e: &ApiError) -> Self {
        ErrorDetail {
            code: e.code.to_owned(),
            message: e.message.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail::from(&self),
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// Reads a JSON request body: syntax errors are 400, well-formed JSON of the wrong shape (missing or unknown
/// fields, wrong types) is 422 naming the field.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::invalid(e.to_string()),
        _ => ApiError::bad_json(format!("request body is not valid JSON: {e}")),
    })
}
