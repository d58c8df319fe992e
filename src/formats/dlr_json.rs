//! The `dlr-json` format: SMS delivery reports (DLRs) posted as a flat JSON object (seed 002).
//!
//! The body is the DLR object exactly as enqueued (`id`, `mobile`, `status`, `credits`, `units`,
//! `deliv_time`, `sent_time`, `submit_time`, `cid`, `custom`, ...); the endpoint's secret travels as
//! `Authorization: Bearer <secret>`, which the HTTP layer adds. Before any DLR the webhook is verified: a
//! `{"validation_key","challenge"}` POST must be answered with 200 and a JSON object echoing the key
//! ([`render_handshake`], [`check_handshake`]). Answers to DLRs follow [`super::classify_http`].

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{Answer, Classified, PayloadError, RenderedRequest, classify_http};
use crate::model::MessageRecord;

pub const TYPES: &[&str] = &["dlr"];

/// A DLR needs non-empty string `id` and `status`; `units`, when present, is an integer.
pub fn validate(kind: &str, payload: &RawValue) -> Result<(), PayloadError> {
    if !TYPES.contains(&kind) {
        return Err(PayloadError::new(
            "type",
            format!("`{kind}` is not carried by the dlr-json format (dlr)"),
        ));
    }
    let fields: Map<String, Value> = match serde_json::from_str(payload.get()) {
        Ok(Value::Object(map)) => map,
        _ => return Err(PayloadError::new("payload", "must be a JSON object")),
    };
    for name in ["id", "status"] {
        match fields.get(name) {
            Some(Value::String(s)) if !s.is_empty() => {}
            _ => {
                return Err(PayloadError::new(
                    format!("payload.{name}"),
                    "required, a non-empty string",
                ));
            }
        }
    }
    match fields.get("units") {
        None => Ok(()),
        Some(units) if units.is_i64() || units.is_u64() => Ok(()),
        Some(_) => Err(PayloadError::new("payload.units", "must be an integer")),
    }
}

/// One message per request: the stored payload, byte for byte.
pub fn render(messages: &[MessageRecord]) -> Result<RenderedRequest, PayloadError> {
    super::render_payload_as_is("dlr-json", messages)
}

/// Plain HTTP rules, the same verdict for every message.
pub fn classify(answer: &Answer, messages: &[MessageRecord]) -> Vec<Classified> {
    vec![classify_http(answer).into(); messages.len()]
}

/// The verification request: `{"validation_key": .., "challenge": ..}`.
pub fn render_handshake(validation_key: &str, challenge: &str) -> RenderedRequest {
    let body = serde_json::json!({ "validation_key": validation_key, "challenge": challenge });
    RenderedRequest {
        content_type: "application/json",
        body: Bytes::from(body.to_string()),
    }
}

/// Whether the webhook passed verification: HTTP 200 and a JSON object echoing `validation_key` (and the
/// `challenge`, if it returns one). The reason never repeats the key.
pub fn check_handshake(
    answer: &Answer,
    validation_key: &str,
    challenge: &str,
) -> Result<(), String> {
    let body = match answer {
        Answer::Transport { kind, message } => {
            return Err(format!(
                "handshake not answered: {}: {message}",
                kind.as_str()
            ));
        }
        Answer::Response {
            status: 200, body, ..
        } => body,
        Answer::Response { status, .. } => {
            return Err(format!("handshake answered HTTP {status}, expected 200"));
        }
    };
    let fields = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err("handshake answer is not a JSON object".into()),
        Err(_) => return Err("handshake answer is not JSON".into()),
    };
    match fields.get("validation_key") {
        None => return Err("handshake answer has no validation_key".into()),
        Some(Value::String(key)) if key == validation_key => {}
        Some(_) => return Err("handshake answer's validation_key does not match".into()),
    }
    match fields.get("challenge") {
        None => Ok(()),
        Some(Value::String(echo)) if echo == challenge => Ok(()),
        Some(_) => Err("handshake answer's challenge does not match the one sent".into()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::formats::TransportKind;
    use crate::model::MessageId;
    use crate::retry::Verdict;

    fn record(kind: &str, payload: &str) -> MessageRecord {
        MessageRecord::new_queued(MessageId::new(), "e", kind, payload, 1_700_000_000_123)
    }

    fn response(status: u16, body: &str) -> Answer {
        Answer::Response {
            status,
            retry_after: None,
            body: Bytes::from(body.to_owned()),
        }
    }

    const SEED_DLR: &str = r#"{"id":"b34e35ad-fe34-4a8b-977c-b21cd76cd7d6:1","mobile":"918921269xxx","status":"DELIVRD","credits":"2.0000","units":2,"deliv_time":"2021-04-09 16:27:51","cid":"1234444XXXX","custom":"9882XXXX"}"#;

    #[test]
    fn validation_table() {
        #[rustfmt::skip]
        let table: &[(&str, &str, Option<&str>)] = &[
            ("dlr", SEED_DLR, None),
            ("dlr", r#"{"id":"a","status":"UNDELIV"}"#, None),
            ("dlr", r#"{"id":"a","status":"DELIVRD","units":0}"#, None),
            ("sms", SEED_DLR, Some("type")),
            ("dlr", "[]", Some("payload")),
            ("dlr", r#"{"status":"DELIVRD"}"#, Some("payload.id")),
            ("dlr", r#"{"id":"","status":"DELIVRD"}"#, Some("payload.id")),
            ("dlr", r#"{"id":7,"status":"DELIVRD"}"#, Some("payload.id")),
            ("dlr", r#"{"id":"a"}"#, Some("payload.status")),
            ("dlr", r#"{"id":"a","status":""}"#, Some("payload.status")),
            ("dlr", r#"{"id":"a","status":null}"#, Some("payload.status")),
            ("dlr", r#"{"id":"a","status":"D","units":"2"}"#, Some("payload.units")),
            ("dlr", r#"{"id":"a","status":"D","units":2.5}"#, Some("payload.units")),
        ];
        for &(kind, payload, field) in table {
            let raw: &RawValue = serde_json::from_str(payload).unwrap();
            let got = validate(kind, raw).err().map(|e| e.field);
            assert_eq!(got.as_deref(), field, "{kind} {payload}");
        }
    }

    #[test]
    fn renders_the_payload_byte_for_byte_one_at_a_time() {
        let m = record("dlr", SEED_DLR);
        let request = render(std::slice::from_ref(&m)).unwrap();
        assert_eq!(request.body, Bytes::from(SEED_DLR));
        assert_eq!(request.content_type, "application/json");
        assert!(render(&[]).is_err());
        assert!(render(&[m.clone(), m]).is_err());
        assert!(render(&[record("dlr", "{not json")]).is_err());
    }

    #[test]
    fn answers_follow_the_http_rules() {
        #[rustfmt::skip]
        let table: &[(u16, &str)] = &[
            (200, "delivered"),
            (204, "delivered"),
            (301, "final"),
            (400, "final"),
            (401, "final"),
            (404, "final"),
            (408, "retry"),
            (429, "retry"),
            (500, "retry"),
            (503, "retry"),
        ];
        for &(status, outcome) in table {
            let m = record("dlr", SEED_DLR);
            let got = classify(&response(status, ""), &[m.clone(), m]);
            assert_eq!(got.len(), 2, "one verdict per message");
            let word = match got[0].verdict {
                Verdict::Delivered { .. } => "delivered",
                Verdict::Retry { .. } => "retry",
                Verdict::Final { .. } => "final",
            };
            assert_eq!(word, outcome, "HTTP {status}");
        }
        let timeout = Answer::Transport {
            kind: TransportKind::Timeout,
            message: "slow".into(),
        };
        let got = classify(&timeout, &[record("dlr", SEED_DLR)]);
        assert!(matches!(got[0].verdict, Verdict::Retry { .. }));
        let later = Answer::Response {
            status: 503,
            retry_after: Some(Duration::from_secs(3)),
            body: Bytes::new(),
        };
        let got = classify(&later, &[record("dlr", SEED_DLR)]);
        assert!(matches!(
            got[0].verdict,
            Verdict::Retry { retry_after: Some(d), .. } if d == Duration::from_secs(3)
        ));
    }

    #[test]
    fn handshake_request_carries_key_and_challenge() {
        let request = render_handshake("9012XX", "a234qwe");
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"validation_key": "9012XX", "challenge": "a234qwe"})
        );
        assert_eq!(request.content_type, "application/json");
    }

    #[test]
    fn handshake_answer_table() {
        let ok = r#"{"validation_key":"9012XX","challenge":"a234qwe"}"#;
        #[rustfmt::skip]
        let table: &[(u16, &str, Option<&str>)] = &[
            (200, ok, None),
            (200, r#"{"validation_key":"9012XX"}"#, None),
            (200, r#"{"validation_key":"9012XX","other":1}"#, None),
            (201, ok, Some("HTTP 201")),
            (204, "", Some("HTTP 204")),
            (401, ok, Some("HTTP 401")),
            (500, ok, Some("HTTP 500")),
            (200, "9012XX", Some("not JSON")),
            (200, r#"["9012XX"]"#, Some("not a JSON object")),
            (200, r#"{"challenge":"a234qwe"}"#, Some("no validation_key")),
            (200, r#"{"validation_key":"wrong"}"#, Some("does not match")),
            (200, r#"{"validation_key":9012}"#, Some("does not match")),
            (200, r#"{"validation_key":"9012XX","challenge":"x"}"#, Some("challenge")),
            (200, r#"{"validation_key":"9012XX","challenge":null}"#, Some("challenge")),
        ];
        for &(status, body, expected) in table {
            let got = check_handshake(&response(status, body), "9012XX", "a234qwe");
            match expected {
                None => assert_eq!(got, Ok(()), "{status} {body}"),
                Some(words) => {
                    let reason = got.unwrap_err();
                    assert!(reason.contains(words), "{status} {body}: {reason}");
                    assert!(!reason.contains("9012XX"), "the key leaked: {reason}");
                }
            }
        }
        let refused = Answer::Transport {
            kind: TransportKind::Connect,
            message: "connection refused".into(),
        };
        let reason = check_handshake(&refused, "9012XX", "a234qwe").unwrap_err();
        assert!(reason.contains("connect"), "{reason}");
    }
}
