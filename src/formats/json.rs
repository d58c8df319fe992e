//! The generic `json` format: `{"id","type","timestamp","data"}` for any event name.
//!
//! `type` is the event name the platform chose (`event`, `order.created`); `data` is the payload exactly as
//! enqueued. The answer follows the plain HTTP rules of [`super::classify_http`].

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use super::{PayloadError, RenderedRequest};
use crate::model::MessageRecord;

/// Event names: 1 to 128 characters of letters, digits and `.`, `_`, `-`, `:`.
pub fn validate(kind: &str, _payload: &RawValue) -> Result<(), PayloadError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':');
    if kind.is_empty() || kind.len() > 128 || !kind.chars().all(plain) {
        return Err(PayloadError::new(
            "type",
            format!(
                "`{kind}` must be 1 to 128 characters of letters, digits, `.`, `_`, `-` or `:`"
            ),
        ));
    }
    Ok(())
}

#[derive(Serialize)]
struct Envelope<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'a str,
    timestamp: String,
    data: &'a RawValue,
}

/// One message per request (the format does not batch).
pub fn render(messages: &[MessageRecord]) -> Result<RenderedRequest, PayloadError> {
    let [message] = messages else {
        return Err(PayloadError::new(
            "messages",
            "the json format sends one message per request",
        ));
    };
    let data: &RawValue = serde_json::from_str(&message.payload)
        .map_err(|e| PayloadError::new("payload", format!("stored payload is not JSON: {e}")))?;
    let created = std::time::UNIX_EPOCH + std::time::Duration::from_millis(message.created_at);
    let envelope = Envelope {
        id: message.id.to_string(),
        kind: &message.kind,
        timestamp: humantime::format_rfc3339_millis(created).to_string(),
        data,
    };
    let body = serde_json::to_vec(&envelope)
        .map_err(|e| PayloadError::new("payload", format!("cannot encode: {e}")))?;
    Ok(RenderedRequest {
        content_type: "application/json",
        body: Bytes::from(body),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MessageId;

    fn record(kind: &str, payload: &str) -> MessageRecord {
        MessageRecord::new_queued(MessageId::new(), "e", kind, payload, 1_700_000_000_123)
    }

    #[test]
    fn renders_the_envelope_with_the_payload_untouched() {
        let m = record("order.created", r#"{"b":1,"a":[true,null]}"#);
        let request = render(std::slice::from_ref(&m)).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["id"], m.id.to_string());
        assert_eq!(body["type"], "order.created");
        assert_eq!(body["timestamp"], "2023-11-14T22:13:20.123Z");
        assert_eq!(body["data"], serde_json::json!({"b":1,"a":[true,null]}));
        assert_eq!(request.content_type, "application/json");
    }

    #[test]
    fn event_names_are_checked() {
        let payload: &RawValue = serde_json::from_str("{}").unwrap();
        assert!(validate("order.created", payload).is_ok());
        assert!(validate("event", payload).is_ok());
        let err = validate("has space", payload).unwrap_err();
        assert_eq!(err.field, "type");
        assert!(validate("", payload).is_err());
    }
}
