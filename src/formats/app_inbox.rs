//! The `app-inbox` format: App-Inbox messages posted as JSON to the client's webhook (seed 004).
//!
//! The body is the message object as enqueued: `externalCustomerId` (the receiver, required: the seed sends
//! only to contacts that have one), `id` (a UUID), `createdDate` (milliseconds), and optional `title`,
//! `content`, `image`, `link`, `category`. Optional Basic auth is added by the HTTP layer. The answer follows
//! the seed's table: 200 is success; 401, 429, 500, 502 and 503 are retried; 400 is not. Other statuses:
//! other 2xx delivered, 3xx and other 4xx final, other 5xx retried.

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{Answer, Classified, PayloadError, RenderedRequest, classify_http};
use crate::model::MessageRecord;
use crate::retry::Verdict;

pub const TYPES: &[&str] = &["app_inbox"];

fn object(payload: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str(payload) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// The contact a message is for (its `externalCustomerId`), for the per-contact cap.
pub fn contact(payload: &str) -> Option<String> {
    match object(payload)?.remove("externalCustomerId")? {
        Value::String(s) if !s.is_empty() => Some(s),
        _ => None,
    }
}

pub fn validate(kind: &str, payload: &RawValue) -> Result<(), PayloadError> {
    if !TYPES.contains(&kind) {
        return Err(PayloadError::new(
            "type",
            format!("`{kind}` is not carried by the app-inbox format (app_inbox)"),
        ));
    }
    let fields = object(payload.get())
        .ok_or_else(|| PayloadError::new("payload", "must be a JSON object"))?;
    let bad = |name: &str, reason: &str| Err(PayloadError::new(format!("payload.{name}"), reason));
    match fields.get("externalCustomerId") {
        Some(Value::String(s)) if !s.is_empty() => {}
        _ => {
            return bad(
                "externalCustomerId",
                "required, a non-empty string: the seed delivers only to contacts that have one",
            );
        }
    }
    match fields.get("id") {
        Some(Value::String(s)) if uuid::Uuid::parse_str(s).is_ok() => {}
        _ => return bad("id", "required, a UUID string"),
    }
    match fields.get("createdDate") {
        Some(v) if v.is_i64() || v.is_u64() => {}
        _ => {
            return bad(
                "createdDate",
                "required, an integer timestamp in milliseconds",
            );
        }
    }
    for name in ["title", "content", "image", "link", "category"] {
        if let Some(v) = fields.get(name) {
            if !(v.is_string() || v.is_null()) {
                return bad(name, "must be a string");
            }
        }
    }
    Ok(())
}

/// One message per request: the stored payload, byte for byte.
pub fn render(messages: &[MessageRecord]) -> Result<RenderedRequest, PayloadError> {
    super::render_payload_as_is("app-inbox", messages)
}

/// The seed's status table, the same verdict for every message.
pub fn classify(answer: &Answer, messages: &[MessageRecord]) -> Vec<Classified> {
    vec![classify_one(answer).into(); messages.len()]
}

fn classify_one(answer: &Answer) -> Verdict {
    let Answer::Response {
        status,
        retry_after,
        ..
    } = answer
    else {
        return classify_http(answer);
    };
    let status = *status;
    let retry = |why: &str| Verdict::Retry {
        reason: format!("HTTP {status}: {why}"),
        retry_after: *retry_after,
    };
    let last = |why: &str| Verdict::Final {
        reason: format!("HTTP {status}: {why}"),
    };
    match status {
        200 => Verdict::Delivered {
            reason: "HTTP 200".into(),
        },
        201..=299 => Verdict::Delivered {
            reason: format!("HTTP {status} (2xx)"),
        },
        401 => retry("authentication failed (retried, per the receiver)"),
        429 => retry("message limit exceeded"),
        500 | 502 | 503 => retry("temporary processing issue"),
        400 => last("the receiver could not process the payload (not retried)"),
        300..=399 => last("redirect not followed"),
        402..=499 => last("client error"),
        501..=599 => retry("server error"),
        _ => last("unexpected status"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::formats::TransportKind;
    use crate::model::MessageId;

    fn record(kind: &str, payload: &str) -> MessageRecord {
        MessageRecord::new_queued(MessageId::new(), "e", kind, payload, 1_700_000_000_123)
    }

    const UUID: &str = "0b6f5d1e-3c1a-4f2e-9d8b-7a6c5e4d3b2a";

    /// A complete message with one field replaced (`None` removes it).
    fn message_with(name: &str, value: Option<Value>) -> String {
        let mut v = serde_json::json!({"externalCustomerId": "c-1", "id": UUID,
            "createdDate": 1_700_000_000_123_u64, "title": "Hi", "content": "Hello",
            "image": "https://x/i.png", "link": "https://x/", "category": "promo"});
        match value {
            Some(x) => v[name] = x,
            None => drop(v.as_object_mut().unwrap().remove(name)),
        }
        v.to_string()
    }

    #[test]
    fn validation_table() {
        use serde_json::json;
        #[rustfmt::skip]
        let table: &[(&str, Option<Value>, Option<&str>)] = &[
            ("none", None, None),
            ("externalCustomerId", None, Some("payload.externalCustomerId")),
            ("externalCustomerId", Some(json!("")), Some("payload.externalCustomerId")),
            ("externalCustomerId", Some(json!(12)), Some("payload.externalCustomerId")),
            ("externalCustomerId", Some(Value::Null), Some("payload.externalCustomerId")),
            ("id", None, Some("payload.id")),
            ("id", Some(json!("not-a-uuid")), Some("payload.id")),
            ("id", Some(json!(5)), Some("payload.id")),
            ("createdDate", None, Some("payload.createdDate")),
            ("createdDate", Some(json!("1700000000123")), Some("payload.createdDate")),
            ("createdDate", Some(json!(1.5)), Some("payload.createdDate")),
            ("title", None, None),
            ("title", Some(json!(1)), Some("payload.title")),
            ("content", Some(json!(["x"])), Some("payload.content")),
            ("image", Some(json!(false)), Some("payload.image")),
            ("link", Some(json!({})), Some("payload.link")),
            ("category", Some(json!(3)), Some("payload.category")),
            ("category", Some(Value::Null), None),
        ];
        for (name, value, field) in table {
            let payload = message_with(name, value.clone());
            let raw: &RawValue = serde_json::from_str(&payload).unwrap();
            let got = validate("app_inbox", raw).err().map(|e| e.field);
            assert_eq!(got.as_deref(), *field, "{name} {value:?}");
        }
        let whole = message_with("none", None);
        let raw: &RawValue = serde_json::from_str(&whole).unwrap();
        assert_eq!(validate("sms", raw).unwrap_err().field, "type");
        let list: &RawValue = serde_json::from_str("[]").unwrap();
        assert_eq!(validate("app_inbox", list).unwrap_err().field, "payload");
    }

    #[test]
    fn contact_is_the_external_customer_id() {
        assert_eq!(contact(&message_with("none", None)).as_deref(), Some("c-1"));
        assert_eq!(contact(&message_with("externalCustomerId", None)), None);
        assert_eq!(
            contact(&message_with("externalCustomerId", Some("".into()))),
            None
        );
        assert_eq!(contact("not json"), None);
    }

    #[test]
    fn renders_the_payload_byte_for_byte_one_at_a_time() {
        let payload = message_with("none", None);
        let m = record("app_inbox", &payload);
        let request = render(std::slice::from_ref(&m)).unwrap();
        assert_eq!(request.body, Bytes::from(payload));
        assert_eq!(request.content_type, "application/json");
        assert!(render(&[]).is_err());
        assert!(render(&[m.clone(), m]).is_err());
    }

    #[test]
    fn outcome_table() {
        let after = Some(Duration::from_secs(9));
        #[rustfmt::skip]
        let table: &[(u16, &str, &str)] = &[
            (200, "delivered", "HTTP 200"),
            (201, "delivered", "HTTP 201 (2xx)"),
            (204, "delivered", "HTTP 204 (2xx)"),
            (401, "retry", "HTTP 401"),
            (429, "retry", "HTTP 429"),
            (500, "retry", "HTTP 500"),
            (502, "retry", "HTTP 502"),
            (503, "retry", "HTTP 503"),
            (504, "retry", "HTTP 504"),
            (400, "final", "HTTP 400"),
            (301, "final", "redirect"),
            (307, "final", "redirect"),
            (403, "final", "HTTP 403"),
            (404, "final", "HTTP 404"),
            (408, "final", "HTTP 408"),
            (422, "final", "HTTP 422"),
            (199, "final", "HTTP 199"),
        ];
        for &(status, outcome, reason) in table {
            let answer = Answer::Response {
                status,
                retry_after: after,
                body: Bytes::new(),
            };
            let m = record("app_inbox", "{}");
            let got = classify(&answer, &[m.clone(), m]);
            assert_eq!(got.len(), 2, "one verdict per message");
            assert_eq!(got[0].receipt, None);
            let verdict = &got[0].verdict;
            let word = match verdict {
                Verdict::Delivered { .. } => "delivered",
                Verdict::Retry { retry_after, .. } => {
                    assert_eq!(*retry_after, after, "HTTP {status} keeps Retry-After");
                    "retry"
                }
                Verdict::Final { .. } => "final",
            };
            assert_eq!(word, outcome, "HTTP {status}");
            assert!(verdict.reason().contains(reason), "{verdict:?}");
        }
    }

    #[test]
    fn transport_errors_follow_the_http_rules() {
        for (kind, retried) in [
            (TransportKind::Connect, true),
            (TransportKind::Timeout, true),
            (TransportKind::Io, true),
            (TransportKind::Refused, false),
            (TransportKind::Request, false),
        ] {
            let answer = Answer::Transport {
                kind,
                message: "x".into(),
            };
            let got = classify(&answer, &[record("app_inbox", "{}")]);
            assert_eq!(
                matches!(got[0].verdict, Verdict::Retry { .. }),
                retried,
                "{kind:?}"
            );
            assert!(!matches!(got[0].verdict, Verdict::Delivered { .. }));
        }
    }
}
