//! Property tests (proptest) for every function that reads bytes hookd does not control: the socket API's
//! enqueue parser and each format's payload validation (the platform's input), and the answer classifiers
//! of every format, the `sms-status-xml` acknowledgement parser and the `notification` status model above
//! all (the receivers' input). Nothing may panic, errors are typed and name what was wrong, every message of
//! a request gets exactly one verdict, and where an oracle exists (a well-formed acknowledgement, the
//! `status_code` table, a payload that passed validation) the outcome is the one the protocol says.
//!
//! The default case count (256 per property) keeps this file at a few seconds in a debug build. A long run:
//! `PROPTEST_CASES=100000 cargo test --release --test fuzz` (results recorded in docs/RELIABILITY.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use hookd::api::error::parse_json;
use hookd::api::wire::{BatchRequest, EnqueueRequest};
use hookd::formats::{Answer, Classified, FormatKind, TransportKind, classify_http};
use hookd::model::{MessageId, MessageRecord};
use hookd::retry::Verdict;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

fn formats() -> Vec<FormatKind> {
    FormatKind::NAMES
        .iter()
        .map(|name| FormatKind::from_name(name).unwrap())
        .collect()
}

/// Every type any format carries, and some no format carries.
fn types() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = formats()
        .into_iter()
        .flat_map(|f| f.types().unwrap_or(&[]))
        .copied()
        .collect();
    all.extend([
        "event",
        "order.created",
        "",
        "SMS",
        "no spaces",
        "dlr\0",
        "é",
    ]);
    all
}

fn record(kind: &str, payload: &str) -> MessageRecord {
    MessageRecord::new_queued(MessageId::new(), "e", kind, payload, 1_700_000_000_123)
}

fn word(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Delivered { .. } => "delivered",
        Verdict::Retry { .. } => "retry",
        Verdict::Final { .. } => "final",
    }
}

/// proptest's defaults (256 cases, or `PROPTEST_CASES`), with failures kept beside this file
/// (`tests/fuzz.proptest-regressions`) and replayed first on the next run.
fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

// ---- strategies ----

/// Field names the formats and the API read, so random objects hit the interesting paths.
const KEYS: &[&str] = &[
    "endpoint",
    "type",
    "payload",
    "idempotency_key",
    "id_sms",
    "time",
    "sms",
    "viber",
    "id",
    "status",
    "units",
    "message_type",
    "externalCustomerId",
    "createdDate",
    "title",
    "content",
    "image",
    "sms_id",
    "status_id",
    "device_id",
    "sim",
    "address",
    "body",
    "status_code",
    "delivery_id",
    "error_message",
];

/// Strings close to what validation accepts or just misses.
const WORDS: &[&str] = &[
    "",
    " ",
    "ok",
    "send",
    "deliver",
    "read",
    "not_deliver",
    "partly_deliver",
    "expired",
    "SMS",
    "PUSH",
    "sms",
    "push",
    "2024-02-29 23:59:59",
    "2023-02-29 12:00:00",
    "2011-01-01 24:00:00",
    "2011-1-01 12:00:00",
    "0190d3a2-0000-7000-8000-000000000000",
    "not-a-uuid",
    "DELIVRD",
    "000",
    "001",
    "900",
    "901",
    "999",
    "\u{0}",
    "\u{feff}",
    "<![CDATA[",
    "]]>",
    "&amp;",
    "<",
    "𝄞",
    "\u{202e}",
    "ok",
];

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(WORDS).prop_map(str::to_owned),
        any::<String>(),
        "[ -~]{0,40}",
    ]
}

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

fn arb_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-3i64..200).prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        prop::sample::select(&[1, 2, 3, 5, 12, 100, 101, 13][..]).prop_map(Value::from),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        arb_number(),
        arb_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((arb_key(), inner), 0..8)
                .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// An object with some of `keys`, each holding a near-valid or random value.
fn arb_object(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let value = prop_oneof![
        3 => arb_string().prop_map(Value::String),
        3 => arb_number(),
        1 => arb_json(),
    ];
    prop::collection::vec((prop::sample::select(keys), value), 0..keys.len() + 2).prop_map(
        |fields| Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()),
    )
}

/// A payload each format accepts, per type.
fn valid_payloads() -> Vec<(FormatKind, &'static str, Value)> {
    let f = |name| FormatKind::from_name(name).unwrap();
    vec![
        (
            f("json"),
            "order.created",
            json!({"a": 1, "b": [true, null]}),
        ),
        (
            f("notification"),
            "sms",
            json!({"text": "hi", "to": ["+1"], "message_type": "SMS"}),
        ),
        (
            f("notification"),
            "push",
            json!({"title": "t", "id": "client-1"}),
        ),
        (
            f("sms-status-xml"),
            "sms_status",
            json!({"id_sms": 7, "time": "2024-02-29 23:59:59", "sms": "deliver", "viber": "read"}),
        ),
        (
            f("dlr-json"),
            "dlr",
            json!({"id": "x:1", "status": "DELIVRD", "units": 2}),
        ),
        (
            f("gateway-json"),
            "device_status",
            json!({"sms_id": 1, "status_id": 5, "device_id": 3, "status_message": "ok", "sendto": "+1", "sim": 1}),
        ),
        (
            f("gateway-json"),
            "incoming_sms",
            json!({"address": "+1", "body": "hi", "device_id": 3, "sim": 0}),
        ),
        (
            f("app-inbox"),
            "app_inbox",
            json!({"externalCustomerId": "c1", "id": "0190d3a2-0000-7000-8000-000000000000",
                   "createdDate": 1_700_000_000_000u64, "title": "t"}),
        ),
    ]
}

/// A change to one field of a valid payload.
#[derive(Clone, Debug)]
enum Edit {
    Remove(prop::sample::Index),
    Set(prop::sample::Index, Value),
    Add(String, Value),
}

fn arb_edit() -> impl Strategy<Value = Edit> {
    let value = prop_oneof![
        3 => arb_string().prop_map(Value::String),
        3 => arb_number(),
        1 => Just(Value::Null),
        1 => arb_json(),
    ];
    prop_oneof![
        1 => any::<prop::sample::Index>().prop_map(Edit::Remove),
        4 => (any::<prop::sample::Index>(), value.clone()).prop_map(|(i, v)| Edit::Set(i, v)),
        1 => (arb_key(), value).prop_map(|(k, v)| Edit::Add(k, v)),
    ]
}

fn apply(payload: &Value, edits: &[Edit]) -> Value {
    let mut fields = payload.as_object().cloned().unwrap_or_default();
    for edit in edits {
        let keys: Vec<String> = fields.keys().cloned().collect();
        match edit {
            Edit::Remove(i) if !keys.is_empty() => {
                fields.remove(&keys[i.index(keys.len())]);
            }
            Edit::Set(i, v) if !keys.is_empty() => {
                fields.insert(keys[i.index(keys.len())].clone(), v.clone());
            }
            Edit::Add(k, v) => {
                fields.insert(k.clone(), v.clone());
            }
            _ => {}
        }
    }
    Value::Object(fields)
}

fn arb_transport() -> impl Strategy<Value = Answer> {
    (
        prop::sample::select(
            &[
                TransportKind::Connect,
                TransportKind::Timeout,
                TransportKind::Refused,
                TransportKind::Request,
                TransportKind::Io,
            ][..],
        ),
        any::<String>(),
    )
        .prop_map(|(kind, message)| Answer::Transport { kind, message })
}

fn response(status: u16, body: Vec<u8>, retry_after: Option<u64>) -> Answer {
    Answer::Response {
        status,
        retry_after: retry_after.map(Duration::from_secs),
        body: Bytes::from(body),
    }
}

/// Any answer: a status (mostly plausible ones), any body, or a transport failure.
fn arb_answer() -> impl Strategy<Value = Answer> {
    let status = prop_oneof![4 => 100u16..600, 1 => any::<u16>()];
    prop_oneof![
        4 => (status, prop::collection::vec(any::<u8>(), 0..512), prop::option::of(0u64..100_000))
            .prop_map(|(s, b, r)| response(s, b, r)),
        1 => arb_transport(),
    ]
}

// ---- the platform's input: the enqueue request and its payload ----

/// What the API does with an enqueue body (`api::messages::enqueue` / `validate`), minus the store.
fn enqueue_path(body: &[u8]) -> Result<(), String> {
    let request: EnqueueRequest = parse_json(body).map_err(|e| {
        assert!(matches!(e.status.as_u16(), 400 | 422), "{e:?}");
        assert!(matches!(e.code, "malformed_json" | "invalid"), "{e:?}");
        assert!(!e.message.is_empty());
        e.message
    })?;
    for format in formats() {
        check_payload(format, &request.kind, &request.payload);
    }
    Ok(())
}

/// Validation never panics, names a field when it refuses, and what it accepts can be rendered and
/// classified.
fn check_payload(format: FormatKind, kind: &str, payload: &RawValue) {
    let _ = format.contact(payload.get());
    match format.validate(kind, payload) {
        Err(e) => {
            assert!(
                e.field == "type" || e.field == "payload" || e.field.starts_with("payload."),
                "{format:?}: {e:?}"
            );
            assert!(!e.reason.is_empty(), "{format:?}: {e:?}");
        }
        Ok(()) => {
            let message = record(kind, payload.get());
            let request = format
                .render(std::slice::from_ref(&message))
                .unwrap_or_else(|e| {
                    panic!(
                        "{format:?} accepted {kind} {} but cannot render it: {e}",
                        payload.get()
                    )
                });
            assert!(!request.content_type.is_empty());
            let answer = response(200, Vec::new(), None);
            assert_eq!(format.classify(&answer, &[message]).len(), 1);
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn enqueue_parser_takes_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..1024)) {
        let _ = enqueue_path(&body);
    }

    #[test]
    fn enqueue_parser_takes_arbitrary_json(body in arb_json()) {
        let _ = enqueue_path(body.to_string().as_bytes());
    }

    #[test]
    fn enqueue_parser_takes_near_valid_requests(
        kind in prop_oneof![prop::sample::select(types()).prop_map(str::to_owned), arb_string()],
        payload in arb_json(),
        key in prop::option::of(arb_string()),
        extra in prop::option::of((arb_key(), arb_json())),
    ) {
        let mut request = json!({"endpoint": "e", "type": kind, "payload": payload});
        if let Some(key) = key {
            request["idempotency_key"] = Value::String(key);
        }
        if let Some((name, value)) = extra {
            request[name] = value;
        }
        let _ = enqueue_path(request.to_string().as_bytes());
    }

    #[test]
    fn batch_parser_takes_arbitrary_items(items in prop::collection::vec(arb_json(), 0..8)) {
        let body = json!({ "messages": items }).to_string();
        let batch: BatchRequest = parse_json(body.as_bytes()).unwrap();
        for item in &batch.messages {
            let _ = enqueue_path(item.get().as_bytes());
        }
    }

    #[test]
    fn every_format_validates_near_valid_payloads(
        edits in prop::collection::vec(arb_edit(), 0..3),
        random in arb_object(KEYS),
    ) {
        for (format, kind, valid) in valid_payloads() {
            let raw = RawValue::from_string(valid.to_string()).unwrap();
            prop_assert!(format.validate(kind, &raw).is_ok(), "{:?} {} {}", format, kind, valid);
            let edited = RawValue::from_string(apply(&valid, &edits).to_string()).unwrap();
            check_payload(format, kind, &edited);
            let random = RawValue::from_string(random.to_string()).unwrap();
            check_payload(format, kind, &random);
        }
    }
}

// ---- the receivers' input: answers ----

fn sms_record(id_sms: i64) -> MessageRecord {
    record(
        "sms_status",
        &json!({"id_sms": id_sms, "time": "", "sms": "deliver"}).to_string(),
    )
}

/// One piece of a `<response>` acknowledgement.
#[derive(Clone, Debug)]
enum Piece {
    /// `<id_sms>` echoing this id, written in one of several equivalent ways.
    Echo(i64, u8),
    Other(&'static str),
    Comment,
    Whitespace,
    Instruction,
}

fn arb_piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        4 => (0i64..8, 0u8..5).prop_map(|(id, style)| Piece::Echo(id, style)),
        1 => prop::sample::select(&["status", "id", "state", "ID_SMS", "x:id_sms"][..]).prop_map(Piece::Other),
        1 => Just(Piece::Comment),
        1 => Just(Piece::Whitespace),
        1 => Just(Piece::Instruction),
    ]
}

/// A well-formed acknowledgement and the ids it echoes.
fn write_ack(pieces: &[Piece], declaration: bool, bom: bool) -> (String, Vec<i64>) {
    let mut doc = String::new();
    if bom {
        doc.push('\u{feff}');
    }
    if declaration {
        doc.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    }
    doc.push_str("<response>");
    let mut echoed = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Echo(id, style) => {
                echoed.push(*id);
                let text = match style {
                    0 => id.to_string(),
                    1 => format!(" \n\t{id} "),
                    2 => id
                        .to_string()
                        .chars()
                        .map(|c| format!("&#{};", c as u32))
                        .collect(),
                    3 => format!("<![CDATA[{id}]]>"),
                    _ => format!("<!-- before -->{id}"),
                };
                doc.push_str(&format!("<id_sms>{text}</id_sms>"));
            }
            Piece::Other(name) => doc.push_str(&format!("<{name}>9</{name}><{name}/>")),
            Piece::Comment => doc.push_str("<!-- <id_sms>5</id_sms> -->"),
            Piece::Whitespace => doc.push_str("\n  "),
            Piece::Instruction => doc.push_str("<?note 1?>"),
        }
    }
    doc.push_str("</response>\n");
    (doc, echoed)
}

/// The messages of a batch (ids 0..8, some repeated) classified against `body` with a 200.
fn classify_sms(body: &[u8], ids: &[i64]) -> Vec<Classified> {
    let batch: Vec<MessageRecord> = ids.iter().map(|&id| sms_record(id)).collect();
    let got = FormatKind::SmsStatusXml.classify(&response(200, body.to_vec(), None), &batch);
    assert_eq!(got.len(), batch.len(), "one verdict per message");
    for c in &got {
        assert!(c.verdict.reason().len() < 400, "{c:?}");
    }
    got
}

/// The `status_code` table of seed 000 for a 2xx answer.
fn notification_expectation(model: &Value) -> &'static str {
    let code = match model.get("status_code") {
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(n) => format!("{n:03}"),
            None => return "retry",
        },
        _ => return "retry",
    };
    match code.as_str() {
        "000" | "001" => "delivered",
        "901" => "final",
        _ => "retry",
    }
}

fn arb_status_code() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(
            &[
                "000", "001", "900", "901", "999", " 000 ", "0", "1000", "", "abc"
            ][..]
        )
        .prop_map(Value::from),
        prop::sample::select(&[0u64, 1, 900, 901, 999, 1000, 42][..]).prop_map(Value::from),
        arb_json(),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_format_gives_one_verdict_per_message_for_any_answer(
        answer in arb_answer(),
        count in 1usize..5,
    ) {
        for format in formats() {
            let kind = format.types().map_or("event", |t| t[0]);
            let messages: Vec<MessageRecord> = (0..count).map(|i| match format {
                FormatKind::SmsStatusXml => sms_record(i as i64),
                _ => record(kind, "{}"),
            }).collect();
            let got = format.classify(&answer, &messages);
            prop_assert_eq!(got.len(), count, "{:?}", format);
            if let Answer::Transport { kind: TransportKind::Refused, .. } = answer {
                prop_assert!(got.iter().all(|c| word(&c.verdict) == "final"), "a refusal is final");
            }
        }
    }

    #[test]
    fn sms_status_xml_survives_arbitrary_bodies(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..2048),
            any::<String>().prop_map(String::into_bytes),
            "[<>/a-z_ &#;0-9!\\[\\]?-]{0,200}".prop_map(String::into_bytes),
        ],
        ids in prop::collection::vec(0i64..8, 1..6),
    ) {
        let got = classify_sms(&body, &ids);
        let text = String::from_utf8_lossy(&body);
        for (c, id) in got.iter().zip(&ids) {
            if word(&c.verdict) == "delivered" {
                // Only an echo can deliver: the body names this id somehow.
                prop_assert!(text.contains("id_sms") && text.contains("response"), "{:?} for {}", c, id);
            } else {
                prop_assert_eq!(word(&c.verdict), "retry", "a 2xx is never final: {:?}", c);
            }
        }
    }

    #[test]
    fn sms_status_xml_delivers_exactly_what_a_well_formed_answer_echoes(
        pieces in prop::collection::vec(arb_piece(), 0..10),
        declaration in any::<bool>(),
        bom in any::<bool>(),
        ids in prop::collection::vec(0i64..8, 1..6),
    ) {
        let (doc, echoed) = write_ack(&pieces, declaration, bom);
        let got = classify_sms(doc.as_bytes(), &ids);
        for (c, id) in got.iter().zip(&ids) {
            let expected = if echoed.contains(id) { "delivered" } else { "retry" };
            prop_assert_eq!(word(&c.verdict), expected, "id {} in {:?}: {:?}", id, doc, c);
        }
    }

    #[test]
    fn sms_status_xml_survives_a_damaged_acknowledgement(
        pieces in prop::collection::vec(arb_piece(), 0..10),
        ids in prop::collection::vec(0i64..8, 1..6),
        cut in any::<prop::sample::Index>(),
        insert in prop::option::of((any::<prop::sample::Index>(), prop::sample::select(&["<", ">", "&", "</", "<id_sms>", "\u{0}", "]]>", "<response>", "&#x;"][..]))),
    ) {
        let (doc, _) = write_ack(&pieces, true, false);
        let mut damaged = doc.into_bytes();
        if let Some((at, text)) = insert {
            let at = at.index(damaged.len() + 1);
            damaged.splice(at..at, text.bytes());
        } else {
            damaged.truncate(cut.index(damaged.len() + 1));
        }
        classify_sms(&damaged, &ids);
    }

    #[test]
    fn sms_status_xml_renders_what_it_validates_and_reads_its_own_echo(
        batch in prop::collection::vec(prop::collection::vec(arb_edit(), 0..2), 1..8),
    ) {
        let valid = json!({"id_sms": 7, "time": "2024-02-29 23:59:59", "sms": "deliver", "viber": "read"});
        // The unedited payload leads, so every batch has at least one message to send.
        let payloads: Vec<Value> = std::iter::once(valid.clone())
            .chain(batch.iter().map(|edits| apply(&valid, edits)))
            .collect();
        let accepted: Vec<MessageRecord> = payloads
            .iter()
            .map(Value::to_string)
            .filter(|p| FormatKind::SmsStatusXml.validate("sms_status", &RawValue::from_string(p.clone()).unwrap()).is_ok())
            .map(|p| record("sms_status", &p))
            .collect();
        prop_assert!(!accepted.is_empty());
        let request = FormatKind::SmsStatusXml.render(&accepted).unwrap();
        let text = std::str::from_utf8(&request.body).unwrap();
        prop_assert_eq!(text.matches("<state ").count(), accepted.len());
        // A receiver echoing every id_sms it got acknowledges the whole batch.
        let echo: String = accepted
            .iter()
            .map(|m| format!("<id_sms>{}</id_sms>", serde_json::from_str::<Value>(&m.payload).unwrap()["id_sms"]))
            .collect();
        let answer = response(200, format!("<response>{echo}</response>").into_bytes(), None);
        let got = FormatKind::SmsStatusXml.classify(&answer, &accepted);
        prop_assert!(got.iter().all(|c| word(&c.verdict) == "delivered"), "{:?}", got);
    }

    #[test]
    fn notification_follows_the_status_code_table(
        status in prop_oneof![3 => 200u16..300, 1 => 100u16..600],
        code in prop::option::of(arb_status_code()),
        error_message in prop::option::of(arb_json()),
        delivery_id in prop::option::of(arb_json()),
        retry_after in prop::option::of(0u64..1000),
    ) {
        let mut model = Map::new();
        if let Some(code) = code {
            model.insert("status_code".into(), code);
        }
        if let Some(message) = error_message {
            model.insert("error_message".into(), message);
        }
        if let Some(id) = delivery_id.clone() {
            model.insert("delivery_id".into(), id);
        }
        let model = Value::Object(model);
        let answer = response(status, model.to_string().into_bytes(), retry_after);
        let got = FormatKind::Notification.classify(&answer, &[record("sms", "{}"), record("push", "{}")]);
        prop_assert_eq!(got.len(), 2);
        prop_assert_eq!(&got[0], &got[1]);
        let expected = if (200..300).contains(&status) {
            notification_expectation(&model)
        } else {
            word(&classify_http(&answer))
        };
        prop_assert_eq!(word(&got[0].verdict), expected, "{} {}", status, model);
        match delivery_id {
            Some(Value::String(s)) if !s.is_empty() => prop_assert_eq!(got[0].receipt.as_deref(), Some(s.as_str())),
            // A numeric id, integer or fractional, is kept exactly as the receiver wrote it (the first long
            // run found fractional ids changed in their last digit; see docs/RELIABILITY.md).
            Some(Value::Number(n)) => prop_assert_eq!(got[0].receipt.clone(), Some(n.to_string())),
            _ => prop_assert_eq!(&got[0].receipt, &None),
        }
        if let Verdict::Retry { retry_after: after, .. } = &got[0].verdict {
            prop_assert_eq!(*after, retry_after.map(Duration::from_secs));
        }
    }

    #[test]
    fn notification_survives_arbitrary_bodies(
        status in 100u16..600,
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..1024),
            arb_json().prop_map(|v| v.to_string().into_bytes()),
        ],
    ) {
        let answer = response(status, body, None);
        let got = FormatKind::Notification.classify(&answer, &[record("sms", "{}")]);
        prop_assert_eq!(got.len(), 1);
        if !(200..300).contains(&status) {
            prop_assert_eq!(word(&got[0].verdict), word(&classify_http(&answer)));
        }
    }
}
