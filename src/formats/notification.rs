//! The `notification` format: SMS and push notifications posted as JSON to the client's webhook (seed 000).
//!
//! The body is the payload object with `"message_type": "SMS"` or `"PUSH"` and the message `id` beside its
//! fields. The receiver answers `{"status_code","status_desc","error_message","delivery_id"}`: on a 2xx,
//! `000` is delivered, `001` is accepted (queued by the receiver), `900` and `999` are retried, `901`
//! (incorrect request parameters) is final, and anything else is a protocol error worth retrying. Non-2xx
//! statuses and transport errors follow [`super::classify_http`]. `delivery_id` becomes the receipt.

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{Answer, Classified, PayloadError, RenderedRequest, classify_http};
use crate::model::MessageRecord;
use crate::retry::Verdict;

pub const TYPES: &[&str] = &["sms", "push"];

/// The seed's `message_type` word for an enqueue type.
fn message_type(kind: &str) -> Option<&'static str> {
    match kind {
        "sms" => Some("SMS"),
        "push" => Some("PUSH"),
        _ => None,
    }
}

fn object(payload: &str) -> Result<Map<String, Value>, PayloadError> {
    match serde_json::from_str::<Value>(payload) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(PayloadError::new("payload", "must be a JSON object")),
        Err(e) => Err(PayloadError::new("payload", format!("is not JSON: {e}"))),
    }
}

/// The seed requires no field beyond the type; a `message_type` in the payload must agree with it.
pub fn validate(kind: &str, payload: &RawValue) -> Result<(), PayloadError> {
    let Some(expected) = message_type(kind) else {
        return Err(PayloadError::new(
            "type",
            format!("`{kind}` is not carried by the notification format (sms or push)"),
        ));
    };
    let fields = object(payload.get())?;
    match fields.get("message_type") {
        None => Ok(()),
        Some(Value::String(given)) if given.eq_ignore_ascii_case(expected) => Ok(()),
        Some(given) => Err(PayloadError::new(
            "payload.message_type",
            format!("{given} does not agree with type `{kind}` (expected \"{expected}\")"),
        )),
    }
}

/// One message per request: the payload's fields plus `message_type` and `id`.
pub fn render(messages: &[MessageRecord]) -> Result<RenderedRequest, PayloadError> {
    let [message] = messages else {
        return Err(PayloadError::new(
            "messages",
            "the notification format sends one message per request",
        ));
    };
    let expected = message_type(&message.kind).ok_or_else(|| {
        PayloadError::new("type", format!("`{}` is not sms or push", message.kind))
    })?;
    let mut body = object(&message.payload)?;
    body.insert("message_type".into(), Value::from(expected));
    // A payload's own `id` is the client's word for the notification and is kept.
    body.entry("id")
        .or_insert_with(|| Value::from(message.id.to_string()));
    let body = serde_json::to_vec(&body)
        .map_err(|e| PayloadError::new("payload", format!("cannot encode: {e}")))?;
    Ok(RenderedRequest {
        content_type: "application/json",
        body: Bytes::from(body),
    })
}

/// The longest receiver-supplied text kept in an attempt's reason.
const MAX_REASON_TEXT: usize = 200;

/// `delivery_id` as text, when the answer carries one. A number is kept exactly as the receiver wrote it
/// (read as raw JSON text: going through `f64` or `u64` could change a long or fractional id).
fn receipt(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Receipt<'a> {
        #[serde(borrow, default)]
        delivery_id: Option<&'a serde_json::value::RawValue>,
    }
    let raw = serde_json::from_slice::<Receipt<'_>>(body)
        .ok()?
        .delivery_id?;
    match serde_json::from_str::<Value>(raw.get()).ok()? {
        Value::String(s) if !s.is_empty() => Some(s),
        Value::Number(_) => Some(raw.get().trim().to_owned()),
        _ => None,
    }
}

/// Cuts receiver-supplied text to [`MAX_REASON_TEXT`] characters.
fn clip(text: String) -> String {
    match text.char_indices().nth(MAX_REASON_TEXT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// `status_code` as three digits; a JSON number is accepted (`1` is `"001"`).
fn status_code(model: &Map<String, Value>) -> Option<String> {
    match model.get("status_code")? {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => n.as_u64().map(|n| format!("{n:03}")),
        _ => None,
    }
}

/// Reads the answer; every message of the request gets the same verdict.
pub fn classify(answer: &Answer, messages: &[MessageRecord]) -> Vec<Classified> {
    vec![classify_one(answer); messages.len()]
}

fn classify_one(answer: &Answer) -> Classified {
    let Answer::Response {
        status,
        retry_after,
        body,
    } = answer
    else {
        return classify_http(answer).into();
    };
    let model = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    };
    let receipt = model.as_ref().and_then(|_| receipt(body));
    if !(200..=299).contains(status) {
        return Classified {
            verdict: classify_http(answer),
            receipt,
        };
    }
    let retry = |reason: String| Verdict::Retry {
        reason,
        retry_after: *retry_after,
    };
    let Some((model, code)) = model.and_then(|m| status_code(&m).map(|c| (m, c))) else {
        return Classified {
            verdict: retry(format!(
                "protocol error: HTTP {status} answer is not the status_code JSON model"
            )),
            receipt,
        };
    };
    let error_message = clip(match model.get("error_message") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Null) | None => "no error_message".to_owned(),
        Some(other) => other.to_string(),
    });
    let verdict = match code.as_str() {
        "000" => Verdict::Delivered {
            reason: "000 delivered".into(),
        },
        "001" => Verdict::Delivered {
            reason: "001 accepted: queued by the receiver".into(),
        },
        "900" => retry(format!("900 delivery not successful: {error_message}")),
        "999" => retry(format!(
            "999 critical error at the receiver: {error_message}"
        )),
        "901" => Verdict::Final {
            reason: format!("901 request parameters incorrect: {error_message}"),
        },
        other => retry(format!(
            "protocol error: unknown status_code `{other}` (HTTP {status})"
        )),
    };
    Classified { verdict, receipt }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::formats::TransportKind;
    use crate::model::MessageId;

    fn record(kind: &str, payload: &str) -> MessageRecord {
        MessageRecord::new_queued(MessageId::new(), "e", kind, payload, 1_700_000_000_123)
    }

    fn raw(s: &str) -> &RawValue {
        serde_json::from_str(s).unwrap()
    }

    fn response(status: u16, body: &str) -> Answer {
        Answer::Response {
            status,
            retry_after: Some(Duration::from_secs(7)),
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn validation_table() {
        #[rustfmt::skip]
        let table: &[(&str, &str, Option<&str>)] = &[
            ("sms", r#"{"text":"hi"}"#, None),
            ("push", "{}", None),
            ("sms", r#"{"message_type":"SMS"}"#, None),
            ("sms", r#"{"message_type":"sms"}"#, None),
            ("push", r#"{"message_type":"PUSH","title":"t"}"#, None),
            ("sms", r#"{"message_type":"PUSH"}"#, Some("payload.message_type")),
            ("push", r#"{"message_type":"SMS"}"#, Some("payload.message_type")),
            ("sms", r#"{"message_type":1}"#, Some("payload.message_type")),
            ("sms", "[1]", Some("payload")),
            ("sms", r#""text""#, Some("payload")),
            ("email", "{}", Some("type")),
            ("SMS", "{}", Some("type")),
        ];
        for &(kind, payload, field) in table {
            let got = validate(kind, raw(payload)).err().map(|e| e.field);
            assert_eq!(got.as_deref(), field, "{kind} {payload}");
        }
    }

    #[test]
    fn renders_message_type_id_and_the_payload_fields() {
        for (kind, word) in [("sms", "SMS"), ("push", "PUSH")] {
            let m = record(kind, r#"{"text":"hi","to":["1"],"message_type":"x"}"#);
            let request = render(std::slice::from_ref(&m)).unwrap();
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            let expected = serde_json::json!({
                "message_type": word, "id": m.id.to_string(), "text": "hi", "to": ["1"]
            });
            assert_eq!(body, expected);
            assert_eq!(request.content_type, "application/json");
        }
        let own_id = record("sms", r#"{"id":"client-7"}"#);
        let body: Value =
            serde_json::from_slice(&render(std::slice::from_ref(&own_id)).unwrap().body).unwrap();
        assert_eq!(body["id"], "client-7");
    }

    #[test]
    fn renders_exactly_one_message() {
        let m = record("sms", "{}");
        assert!(render(&[]).is_err());
        assert!(render(&[m.clone(), m]).is_err());
        assert!(render(&[record("sms", "[]")]).is_err());
    }

    /// HTTP status, answer body, outcome, words the reason must contain, receipt.
    type Row = (
        u16,
        &'static str,
        &'static str,
        &'static [&'static str],
        Option<&'static str>,
    );

    #[test]
    fn outcome_table() {
        let retry_after = Some(Duration::from_secs(7));
        #[rustfmt::skip]
        let table: &[Row] = &[
            (200, r#"{"status_code":"000","delivery_id":"d1"}"#, "delivered", &["000 delivered"], Some("d1")),
            (200, r#"{"status_code":0,"delivery_id":42}"#, "delivered", &["000 delivered"], Some("42")),
            (202, r#"{"status_code":"001"}"#, "delivered", &["001 accepted", "queued by the receiver"], None),
            (200, r#"{"status_code":1}"#, "delivered", &["001 accepted"], None),
            (200, r#"{"status_code":"900","error_message":"busy"}"#, "retry", &["900", "busy"], None),
            (200, r#"{"status_code":900,"error_message":"busy"}"#, "retry", &["900", "busy"], None),
            (200, r#"{"status_code":"999","error_message":"boom","delivery_id":"d9"}"#, "retry", &["999", "boom"], Some("d9")),
            (200, r#"{"status_code":"901","error_message":"bad phone"}"#, "final", &["901", "bad phone"], None),
            (200, r#"{"status_code":"901","delivery_id":""}"#, "final", &["901", "no error_message"], None),
            (200, r#"{"status_code":"123"}"#, "retry", &["protocol error", "123"], None),
            (200, r#"{"status_code":"ok"}"#, "retry", &["protocol error"], None),
            (200, r#"{"status_code":null}"#, "retry", &["protocol error"], None),
            (200, r#"{"status_desc":"fine","delivery_id":"d2"}"#, "retry", &["protocol error"], Some("d2")),
            (200, r#"["000"]"#, "retry", &["protocol error"], None),
            (200, "OK", "retry", &["protocol error"], None),
            (204, "", "retry", &["protocol error"], None),
            (500, r#"{"status_code":"000","delivery_id":"d5"}"#, "retry", &["HTTP 500"], Some("d5")),
            (429, "", "retry", &["HTTP 429"], None),
            (408, "", "retry", &["HTTP 408"], None),
            (400, r#"{"status_code":"000"}"#, "final", &["HTTP 400"], None),
            (404, "", "final", &["HTTP 404"], None),
            (302, "", "final", &["redirect"], None),
        ];
        for &(status, body, outcome, reason, receipt) in table {
            let m = record("sms", "{}");
            let got = classify(&response(status, body), &[m.clone(), m]);
            assert_eq!(got.len(), 2, "one verdict per message");
            assert_eq!(got[0], got[1]);
            let c = &got[0];
            let (word, after) = match &c.verdict {
                Verdict::Delivered { .. } => ("delivered", None),
                Verdict::Retry { retry_after, .. } => ("retry", *retry_after),
                Verdict::Final { .. } => ("final", None),
            };
            assert_eq!(word, outcome, "{status} {body}");
            for words in reason {
                assert!(
                    c.verdict.reason().contains(words),
                    "{status} {body}: {:?}",
                    c.verdict
                );
            }
            assert_eq!(c.receipt.as_deref(), receipt, "{status} {body}");
            if word == "retry" {
                assert_eq!(after, retry_after, "{status} {body}");
            }
        }
    }

    #[test]
    fn transport_errors_follow_the_http_rules() {
        for (kind, outcome) in [
            (TransportKind::Connect, "retry"),
            (TransportKind::Timeout, "retry"),
            (TransportKind::Io, "retry"),
            (TransportKind::Refused, "final"),
            (TransportKind::Request, "final"),
        ] {
            let answer = Answer::Transport {
                kind,
                message: "x".into(),
            };
            let got = classify(&answer, &[record("push", "{}")]);
            let word = match got[0].verdict {
                Verdict::Retry { .. } => "retry",
                Verdict::Final { .. } => "final",
                Verdict::Delivered { .. } => "delivered",
            };
            assert_eq!(word, outcome, "{kind:?}");
            assert_eq!(got[0].receipt, None);
        }
    }
}
