//! The `gateway-json` format: an SMS gateway's device webhooks, delivery statuses and incoming SMS (seed 003).
//!
//! `device_status` carries `{"sms_id","status_id","status_message","sendto","senttime","sim","device_id"}`
//! with `status_id` from the seed's table (1, 2, 3, 5-12, 100, 101); `incoming_sms` carries
//! `{"address","date","date_sent","body","internal_id","sim","sms_id","device_id","device_name"}`. The body
//! is the payload object as enqueued; answers follow [`super::classify_http`]. The seed's two webhooks have a
//! URL each: an endpoint's `urls` may send each type to its own (the config's concern, not this module's).

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{Answer, Classified, PayloadError, RenderedRequest, classify_http};
use crate::model::MessageRecord;

pub const TYPES: &[&str] = &["device_status", "incoming_sms"];

/// The `status_id` values of seed 003's table.
const STATUS_IDS: &[i64] = &[1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 100, 101];

/// The statuses of an SMS the phone has sent (6 sent, 7 delivered, 8 not delivered): only they have a
/// `senttime`. The others come before the sending (1 pending, 2 taken by the phone, 3 queued), instead of it
/// (9-12, 100, 101: not sent) or are not a sending at all (5, incoming).
const SENT_STATUS_IDS: &[i64] = &[6, 7, 8];

/// What a field must hold.
#[derive(Clone, Copy)]
enum Shape {
    Int,
    Text,
    /// A string that is not empty.
    NonEmptyText,
    /// The seed says int, but phone numbers are text: either, and not empty.
    IntOrText,
    /// `sim` on a status: 0 or 1.
    Sim,
    StatusId,
}

/// Whether a field must be present (and not null).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    Required,
    Optional,
    /// Required on a status of an SMS the phone has sent ([`SENT_STATUS_IDS`]), optional on the others.
    WhenSent,
}

use Need::{Optional, Required, WhenSent};

/// (field, shape, need) for each type.
const DEVICE_STATUS: &[(&str, Shape, Need)] = &[
    ("sms_id", Shape::Int, Required),
    ("status_id", Shape::StatusId, Required),
    ("device_id", Shape::Int, Required),
    ("status_message", Shape::Text, Required),
    ("sendto", Shape::NonEmptyText, Required),
    ("senttime", Shape::Text, WhenSent),
    ("sim", Shape::Sim, Optional),
];

const INCOMING_SMS: &[(&str, Shape, Need)] = &[
    ("address", Shape::IntOrText, Required),
    ("body", Shape::Text, Required),
    ("device_id", Shape::Int, Required),
    ("date", Shape::Text, Optional),
    ("date_sent", Shape::Text, Optional),
    ("internal_id", Shape::Int, Optional),
    ("sim", Shape::Int, Optional),
    ("sms_id", Shape::Int, Optional),
    ("device_name", Shape::Text, Optional),
];

/// Why `value` does not fit `shape`, if it does not.
fn misfit(value: &Value, shape: Shape) -> Option<String> {
    let is_int = value.is_i64() || value.is_u64();
    match shape {
        Shape::Int if !is_int => Some("must be an integer".into()),
        Shape::Text if !value.is_string() => Some("must be a string".into()),
        Shape::NonEmptyText => match value {
            Value::String(s) if s.is_empty() => Some("must not be empty".into()),
            Value::String(_) => None,
            _ => Some("must be a string".into()),
        },
        Shape::IntOrText => match value {
            Value::String(s) if s.is_empty() => Some("must not be empty".into()),
            Value::String(_) => None,
            _ if is_int => None,
            _ => Some("must be a string or an integer".into()),
        },
        Shape::Sim if !matches!(value.as_u64(), Some(0 | 1)) => Some("must be 0 or 1".into()),
        Shape::StatusId if !is_int => Some("must be an integer".into()),
        Shape::StatusId if !value.as_i64().is_some_and(|id| STATUS_IDS.contains(&id)) => Some(
            format!("{value} is not a status_id of the gateway (1, 2, 3, 5-12, 100, 101)"),
        ),
        _ => None,
    }
}

/// Required fields present (not null) and every known field of the right shape; other fields pass through.
pub fn validate(kind: &str, payload: &RawValue) -> Result<(), PayloadError> {
    let spec = match kind {
        "device_status" => DEVICE_STATUS,
        "incoming_sms" => INCOMING_SMS,
        _ => {
            return Err(PayloadError::new(
                "type",
                format!(
                    "`{kind}` is not carried by the gateway-json format (device_status or incoming_sms)"
                ),
            ));
        }
    };
    let fields: Map<String, Value> = match serde_json::from_str(payload.get()) {
        Ok(Value::Object(map)) => map,
        _ => return Err(PayloadError::new("payload", "must be a JSON object")),
    };
    // Fields are checked in table order, so `status_id` is known to be valid before `senttime` asks it.
    let sent = fields
        .get("status_id")
        .and_then(Value::as_i64)
        .is_some_and(|id| SENT_STATUS_IDS.contains(&id));
    for &(name, shape, need) in spec {
        let field = || format!("payload.{name}");
        match fields.get(name) {
            None | Some(Value::Null) if need == Required => {
                return Err(PayloadError::new(field(), "required"));
            }
            None | Some(Value::Null) if need == WhenSent && sent => {
                return Err(PayloadError::new(
                    field(),
                    "required when status_id says the phone sent the SMS (6, 7, 8)",
                ));
            }
            None | Some(Value::Null) => {}
            Some(value) => {
                if let Some(reason) = misfit(value, shape) {
                    return Err(PayloadError::new(field(), reason));
                }
            }
        }
    }
    Ok(())
}

/// One message per request: the stored payload, byte for byte.
pub fn render(messages: &[MessageRecord]) -> Result<RenderedRequest, PayloadError> {
    super::render_payload_as_is("gateway-json", messages)
}

/// Plain HTTP rules, the same verdict for every message.
pub fn classify(answer: &Answer, messages: &[MessageRecord]) -> Vec<Classified> {
    vec![classify_http(answer).into(); messages.len()]
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::formats::TransportKind;
    use crate::model::MessageId;
    use crate::retry::Verdict;

    fn record(kind: &str, payload: &str) -> MessageRecord {
        MessageRecord::new_queued(MessageId::new(), "e", kind, payload, 1_700_000_000_123)
    }

    /// A complete payload of `kind` with one field replaced (`None` removes it).
    fn with(kind: &str, name: &str, value: Option<Value>) -> String {
        let mut v = if kind == "device_status" {
            serde_json::json!({"sms_id": 10, "status_id": 7, "status_message": "Delivered",
                "sendto": "+5511999999999", "senttime": "2024-01-02 10:00:00", "sim": 0, "device_id": 3})
        } else {
            serde_json::json!({"address": "+5511988887777", "date": "2024-01-02 10:00:00",
                "date_sent": "2024-01-02 09:59:58", "body": "oi", "internal_id": 5, "sim": 1,
                "sms_id": 11, "device_id": 3, "device_name": "Moto G"})
        };
        match value {
            Some(x) => v[name] = x,
            None => drop(v.as_object_mut().unwrap().remove(name)),
        }
        v.to_string()
    }

    /// The field `validate` names for `kind`'s payload with `name` replaced by `value`.
    fn check(kind: &str, name: &str, value: Option<Value>) -> Option<String> {
        let payload = with(kind, name, value);
        let raw: &RawValue = serde_json::from_str(&payload).unwrap();
        validate(kind, raw).err().map(|e| e.field)
    }

    #[test]
    fn every_status_id_of_the_seed_is_accepted() {
        for id in STATUS_IDS {
            assert_eq!(
                check("device_status", "status_id", Some((*id).into())),
                None
            );
        }
    }

    #[test]
    fn field_table() {
        use serde_json::json;
        let (ds, inc) = ("device_status", "incoming_sms");
        #[rustfmt::skip]
        let table: &[(&str, &str, Option<Value>, Option<&str>)] = &[
            (ds, "sms_id", None, Some("payload.sms_id")),
            (ds, "sms_id", Some(json!("10")), Some("payload.sms_id")),
            (ds, "status_id", None, Some("payload.status_id")),
            (ds, "status_id", Some(Value::Null), Some("payload.status_id")),
            (ds, "status_id", Some(json!(0)), Some("payload.status_id")),
            (ds, "status_id", Some(json!(4)), Some("payload.status_id")),
            (ds, "status_id", Some(json!(13)), Some("payload.status_id")),
            (ds, "status_id", Some(json!(99)), Some("payload.status_id")),
            (ds, "status_id", Some(json!(102)), Some("payload.status_id")),
            (ds, "status_id", Some(json!(-1)), Some("payload.status_id")),
            (ds, "status_id", Some(json!("7")), Some("payload.status_id")),
            (ds, "status_id", Some(json!(7.5)), Some("payload.status_id")),
            (ds, "device_id", None, Some("payload.device_id")),
            (ds, "device_id", Some(json!(3.5)), Some("payload.device_id")),
            (ds, "status_message", None, Some("payload.status_message")),
            (ds, "status_message", Some(Value::Null), Some("payload.status_message")),
            (ds, "status_message", Some(json!("")), None),
            (ds, "status_message", Some(json!(5)), Some("payload.status_message")),
            (ds, "sendto", None, Some("payload.sendto")),
            (ds, "sendto", Some(json!("")), Some("payload.sendto")),
            (ds, "sendto", Some(json!(5511)), Some("payload.sendto")),
            // The complete payload's status_id is 7 (delivered): the phone sent it, so it has a senttime.
            (ds, "senttime", None, Some("payload.senttime")),
            (ds, "senttime", Some(Value::Null), Some("payload.senttime")),
            (ds, "senttime", Some(json!(1_700_000_000)), Some("payload.senttime")),
            (ds, "sim", None, None),
            (ds, "sim", Some(json!(1)), None),
            (ds, "sim", Some(json!(2)), Some("payload.sim")),
            (ds, "sim", Some(json!("0")), Some("payload.sim")),
            (ds, "extra", Some(json!({"any": true})), None),
            (inc, "address", None, Some("payload.address")),
            (inc, "address", Some(json!(5511988887777_i64)), None),
            (inc, "address", Some(json!("")), Some("payload.address")),
            (inc, "address", Some(json!(true)), Some("payload.address")),
            (inc, "body", None, Some("payload.body")),
            (inc, "body", Some(json!("")), None),
            (inc, "body", Some(json!(1)), Some("payload.body")),
            (inc, "device_id", None, Some("payload.device_id")),
            (inc, "device_id", Some(json!("3")), Some("payload.device_id")),
            (inc, "date", None, None),
            (inc, "date", Some(json!(1)), Some("payload.date")),
            (inc, "date_sent", Some(json!(false)), Some("payload.date_sent")),
            (inc, "internal_id", Some(json!("5")), Some("payload.internal_id")),
            (inc, "sim", Some(json!(2)), None),
            (inc, "sim", Some(json!("1")), Some("payload.sim")),
            (inc, "sms_id", None, None),
            (inc, "sms_id", Some(json!(1.5)), Some("payload.sms_id")),
            (inc, "device_name", Some(json!(7)), Some("payload.device_name")),
            (inc, "device_name", Some(Value::Null), None),
        ];
        for (kind, name, value, field) in table {
            let got = check(kind, name, value.clone());
            assert_eq!(got.as_deref(), *field, "{kind} {name} {value:?}");
        }
    }

    #[test]
    fn senttime_is_required_only_once_the_phone_sent_the_sms() {
        let status = |id: i64, senttime: Option<&str>| {
            let mut v = serde_json::json!({"sms_id": 10, "status_id": id, "status_message": "m",
                "sendto": "+5511999999999", "device_id": 3});
            if let Some(at) = senttime {
                v["senttime"] = at.into();
            }
            v.to_string()
        };
        let field = |payload: String| {
            let raw: &RawValue = serde_json::from_str(&payload).unwrap();
            validate("device_status", raw).err().map(|e| e.field)
        };
        for id in STATUS_IDS {
            let sent = SENT_STATUS_IDS.contains(id);
            assert_eq!(
                field(status(*id, None)).is_some(),
                sent,
                "status_id {id} without senttime"
            );
            assert_eq!(field(status(*id, Some("2024-01-02 10:00:00"))), None);
        }
        assert_eq!(SENT_STATUS_IDS, &[6, 7, 8]);
        // No sim on any status: the seed's 0 or 1 is a SIM slot, unknown before the phone takes the SMS.
        assert_eq!(field(status(1, None)), None);
    }

    #[test]
    fn types_and_shape_are_checked() {
        let raw = |s| serde_json::from_str::<&RawValue>(s).unwrap();
        let status = with("device_status", "sim", None);
        assert_eq!(validate("dlr", raw(&status)).unwrap_err().field, "type");
        assert_eq!(
            validate("device_status", raw("[1]")).unwrap_err().field,
            "payload"
        );
        assert_eq!(
            validate("incoming_sms", raw("\"hi\"")).unwrap_err().field,
            "payload"
        );
        // A status is not an incoming SMS: the required fields differ.
        let err = validate("incoming_sms", raw(&status)).unwrap_err();
        assert_eq!(err.field, "payload.address");
    }

    #[test]
    fn renders_the_payload_byte_for_byte_one_at_a_time() {
        for (kind, payload) in [
            ("device_status", with("device_status", "sim", None)),
            ("incoming_sms", with("incoming_sms", "sim", None)),
        ] {
            let m = record(kind, &payload);
            let request = render(std::slice::from_ref(&m)).unwrap();
            assert_eq!(request.body, Bytes::from(payload.clone()));
            assert_eq!(request.content_type, "application/json");
            assert!(render(&[m.clone(), m]).is_err());
        }
        assert!(render(&[]).is_err());
    }

    #[test]
    fn answers_follow_the_http_rules() {
        #[rustfmt::skip]
        let table: &[(u16, &str)] = &[
            (200, "delivered"), (204, "delivered"), (302, "final"), (400, "final"),
            (404, "final"), (429, "retry"), (500, "retry"), (502, "retry"),
        ];
        let word = |c: &Classified| match c.verdict {
            Verdict::Delivered { .. } => "delivered",
            Verdict::Retry { .. } => "retry",
            Verdict::Final { .. } => "final",
        };
        for &(status, outcome) in table {
            let answer = Answer::Response {
                status,
                retry_after: None,
                body: Bytes::new(),
            };
            let m = record("device_status", "{}");
            let got = classify(&answer, &[m.clone(), m]);
            assert_eq!(got.len(), 2, "one verdict per message");
            assert_eq!(word(&got[0]), outcome, "HTTP {status}");
        }
        let reset = Answer::Transport {
            kind: TransportKind::Io,
            message: "reset".into(),
        };
        assert_eq!(
            word(&classify(&reset, &[record("incoming_sms", "{}")])[0]),
            "retry"
        );
    }
}
