//! The `sms-status-xml` format: SMS/Viber delivery statuses POSTed as one XML document (seed 001).
//!
//! Each `sms_status` message becomes one `<state id_sms=".." time=".." sms=".." viber="..">status</state>`
//! in a `<response>` document, many per request. The receiver acknowledges by echoing the `id_sms` of each
//! state it took in `<response><id_sms>..</id_sms>...</response>`; a state it does not echo is re-sent, whatever
//! the HTTP status of the answer (the seed's 5 attempts are `DEFAULT_MAX_ATTEMPTS`). quick-xml writes the document, so every value is escaped,
//! and reads the answer as a stream of events, so a hostile body (invalid UTF-8, deep nesting, stray markup)
//! is an error to report rather than a panic or a recursion.

use std::collections::HashSet;

use bytes::Bytes;
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};
use quick_xml::reader::Reader;
use serde_json::Value;
use serde_json::value::RawValue;

use super::{Answer, Classified, PayloadError, RenderedRequest, classify_http};
use crate::model::MessageRecord;
use crate::retry::Verdict;

pub const TYPES: &[&str] = &["sms_status"];
pub const DEFAULT_BATCH_MAX: usize = 100;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// The statuses of seed 001.
const STATUSES: &[&str] = &[
    "send",
    "not_deliver",
    "expired",
    "deliver",
    "read",
    "partly_deliver",
];

/// One validated payload: a `<state>` element.
#[derive(Debug, Clone, PartialEq)]
struct State {
    id_sms: i64,
    time: String,
    sms: Option<String>,
    viber: Option<String>,
}

/// Checks the type and the payload `{"id_sms", "time", "sms"?, "viber"?}`; errors name the field.
pub fn validate(kind: &str, payload: &RawValue) -> Result<(), PayloadError> {
    if !TYPES.contains(&kind) {
        return Err(PayloadError::new(
            "type",
            format!("`{kind}` is not carried by sms-status-xml (expected sms_status)"),
        ));
    }
    parse(payload.get()).map(drop)
}

fn parse(payload: &str) -> Result<State, PayloadError> {
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(payload) else {
        return Err(PayloadError::new("payload", "must be a JSON object"));
    };
    if let Some(extra) = map
        .keys()
        .find(|k| !matches!(k.as_str(), "id_sms" | "time" | "sms" | "viber"))
    {
        return Err(PayloadError::new(
            format!("payload.{extra}"),
            "unknown field",
        ));
    }
    let id_sms = match map.get("id_sms").map(Value::as_i64) {
        None => return Err(PayloadError::new("payload.id_sms", "is required")),
        Some(Some(id)) if id >= 0 => id,
        Some(_) => {
            return Err(PayloadError::new(
                "payload.id_sms",
                "must be a non-negative integer",
            ));
        }
    };
    let time = match map.get("time") {
        None => return Err(PayloadError::new("payload.time", "is required")),
        Some(Value::String(t)) if t.is_empty() || plausible_time(t) => t.clone(),
        Some(_) => {
            return Err(PayloadError::new(
                "payload.time",
                "must be \"YYYY-MM-DD HH:MM:SS\" or \"\"",
            ));
        }
    };
    let status = |field: &str| match map.get(field) {
        None => Ok(None),
        Some(Value::String(s)) if STATUSES.contains(&s.as_str()) => Ok(Some(s.clone())),
        Some(_) => Err(PayloadError::new(
            format!("payload.{field}"),
            format!("must be one of {}", STATUSES.join(", ")),
        )),
    };
    let (sms, viber) = (status("sms")?, status("viber")?);
    if sms.is_none() && viber.is_none() {
        return Err(PayloadError::new(
            "payload.sms",
            "one of `sms` or `viber` is required",
        ));
    }
    Ok(State {
        id_sms,
        time,
        sms,
        viber,
    })
}

/// `YYYY-MM-DD HH:MM:SS` with a real month, day of that month, hour, minute and second.
fn plausible_time(t: &str) -> bool {
    let b = t.as_bytes();
    let shape = b.len() == 19
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b' ',
            13 | 16 => c == b':',
            _ => c.is_ascii_digit(),
        });
    if !shape {
        return false;
    }
    let num =
        |r: std::ops::Range<usize>| b[r].iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    let (year, month, day) = (num(0..4), num(5..7), num(8..10));
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day) && num(11..13) < 24 && num(14..16) < 60 && num(17..19) < 60
}

/// The `id_sms` of a stored payload.
pub fn id_sms(payload: &str) -> Option<i64> {
    serde_json::from_str::<Value>(payload)
        .ok()?
        .get("id_sms")?
        .as_i64()
}

/// Many messages to one `<response>` document, one `<state>` per message in order.
pub fn render(messages: &[MessageRecord]) -> Result<RenderedRequest, PayloadError> {
    if messages.is_empty() {
        return Err(PayloadError::new("messages", "nothing to send"));
    }
    let states = messages
        .iter()
        .map(|m| parse(&m.payload))
        .collect::<Result<Vec<_>, _>>()?;
    let body = write_document(&states)
        .map_err(|e| PayloadError::new("payload", format!("cannot encode: {e}")))?;
    Ok(RenderedRequest {
        content_type: "application/xml; charset=utf-8",
        body: Bytes::from(body),
    })
}

fn write_document(states: &[State]) -> std::io::Result<Vec<u8>> {
    let mut writer = Writer::new(Vec::new());
    writer.write_event(Event::Decl(BytesDecl::new("1.0", Some("utf-8"), None)))?;
    writer.create_element("response").write_inner_content(|w| {
        for state in states {
            let id = state.id_sms.to_string();
            let mut attributes = vec![("id_sms", id.as_str()), ("time", state.time.as_str())];
            attributes.extend(state.sms.as_deref().map(|s| ("sms", s)));
            attributes.extend(state.viber.as_deref().map(|v| ("viber", v)));
            let text = state
                .sms
                .as_deref()
                .or(state.viber.as_deref())
                .unwrap_or("");
            w.create_element("state")
                .with_attributes(attributes)
                .write_text_content(BytesText::new(text))?;
        }
        Ok(())
    })?;
    Ok(writer.into_inner())
}

/// One verdict per message. Seed 001: "if the client server does not transmit id_sms, the status will be
/// considered as not received by the client. In this case 5 attempts will be made". So:
///
/// - a 2xx answer delivers exactly the messages whose `id_sms` it echoes; the others are retried (an
///   unreadable body echoes nothing);
/// - any other status echoes nothing, whatever it is: every message is retried, and the attempt counts
///   towards `max_attempts` (the seed's 5). `Retry-After` is honoured where the shared HTTP rules honour it
///   (408, 425, 429, 5xx). A 410 also disables the endpoint (`dispatch/attempt.rs`), which keeps the messages;
/// - no answer is judged by the shared HTTP rules: a connect error, timeout or broken exchange is retried,
///   while a destination the guard refused or a request that could not be built is final (that is not an
///   answer from the client server, and trying again cannot change it).
pub fn classify(answer: &Answer, messages: &[MessageRecord]) -> Vec<Classified> {
    let retry = |reason: String| Verdict::Retry {
        reason,
        retry_after: None,
    };
    let body = match answer {
        Answer::Response { status, body, .. } if (200..=299).contains(status) => body,
        Answer::Response { status, .. } => {
            let verdict = Verdict::Retry {
                reason: format!("{}: no id_sms echoed", describe_status(*status)),
                // The shared rules carry `Retry-After` only on the statuses they retry.
                retry_after: match classify_http(answer) {
                    Verdict::Retry { retry_after, .. } => retry_after,
                    _ => None,
                },
            };
            return vec![verdict.into(); messages.len()];
        }
        Answer::Transport { .. } => return vec![classify_http(answer).into(); messages.len()],
    };
    match acknowledged(body) {
        Err(e) => {
            // quick-xml's messages quote names from the body: keep the recorded reason short.
            let e: String = e.chars().take(200).collect();
            vec![retry(format!("unreadable acknowledgement: {e}")).into(); messages.len()]
        }
        Ok(acked) => messages
            .iter()
            .map(|m| match id_sms(&m.payload) {
                Some(id) if acked.contains(&id) => Verdict::Delivered {
                    reason: format!("id_sms {id} acknowledged"),
                },
                Some(id) => retry(format!("receiver did not echo id_sms {id}")),
                None => retry("receiver did not echo its id_sms (payload has none)".into()),
            })
            .map(Classified::from)
            .collect(),
    }
}

/// `HTTP 404`, or `HTTP 302 (redirect not followed)`.
fn describe_status(status: u16) -> String {
    if (300..=399).contains(&status) {
        format!("HTTP {status} (redirect not followed)")
    } else {
        format!("HTTP {status}")
    }
}

/// The ids in `<response><id_sms>N</id_sms>...</response>`. Other elements inside `<response>` and text
/// directly in it are ignored; anything that makes the document or an `<id_sms>` unreadable is an error.
fn acknowledged(body: &[u8]) -> Result<HashSet<i64>, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("not UTF-8: {e}"))?;
    let mut reader = Reader::from_str(text.strip_prefix('\u{feff}').unwrap_or(text));
    let mut ids = HashSet::new();
    let mut depth = 0usize;
    let mut seen_root = false;
    // The text of the `<id_sms>` being read, while inside one.
    let mut number: Option<String> = None;
    loop {
        let event = reader.read_event().map_err(|e| e.to_string())?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                if number.is_some() {
                    return Err("element inside <id_sms>".into());
                }
                let name = e.name();
                if depth == 0 {
                    if seen_root {
                        return Err("more than one root element".into());
                    }
                    if name.as_ref() != "response" {
                        return Err("root element is not <response>".into());
                    }
                    seen_root = true;
                }
                let is_id = depth == 1 && name.as_ref() == "id_sms";
                if let Event::Start(_) = event {
                    depth += 1;
                    number = is_id.then(String::new);
                } else if is_id {
                    return Err("empty <id_sms>".into());
                }
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if let Some(n) = number.take() {
                    let id = n.trim().parse::<i64>();
                    ids.insert(id.map_err(|_| "an <id_sms> is not an integer".to_string())?);
                }
            }
            Event::Text(t) => match &mut number {
                Some(n) => n.push_str(&t.xml10_content()),
                None if depth == 0 && !t.trim().is_empty() => {
                    return Err("text outside <response>".into());
                }
                None => {}
            },
            Event::CData(c) => {
                if let Some(n) = &mut number {
                    n.push_str(&c.into_inner());
                }
            }
            Event::GeneralRef(r) => match (&mut number, r.resolve_char_ref()) {
                (Some(n), Ok(Some(c))) => n.push(c),
                (Some(_), _) => return Err("an <id_sms> is not an integer".into()),
                (None, _) if depth == 0 => return Err("text outside <response>".into()),
                (None, _) => {}
            },
            Event::Eof if !seen_root => return Err("no <response> element".into()),
            Event::Eof if depth > 0 => return Err("unclosed element".into()),
            Event::Eof => return Ok(ids),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::formats::TransportKind;
    use crate::model::MessageId;

    fn record(payload: &str) -> MessageRecord {
        MessageRecord::new_queued(
            MessageId::new(),
            "e",
            "sms_status",
            payload,
            1_700_000_000_123,
        )
    }

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn validation_table() {
        // (the field the error names, or "" when valid; payload)
        #[rustfmt::skip]
        let table: &[(&str, &str)] = &[
            ("", r#"{"id_sms":0,"time":"","sms":"send"}"#),
            ("", r#"{"id_sms":2,"time":"2011-01-01 12:57:46","sms":"send"}"#),
            ("", r#"{"id_sms":3,"time":"2024-02-29 23:59:59","viber":"read"}"#),
            ("", r#"{"id_sms":4,"time":"","sms":"expired","viber":"partly_deliver"}"#),
            ("", r#"{"id_sms":5,"time":"","sms":"not_deliver","viber":"deliver"}"#),
            ("payload", "[1]"),
            ("payload.id_sms", r#"{"time":"","sms":"send"}"#),
            ("payload.id_sms", r#"{"id_sms":"1","time":"","sms":"send"}"#),
            ("payload.id_sms", r#"{"id_sms":1.5,"time":"","sms":"send"}"#),
            ("payload.id_sms", r#"{"id_sms":-1,"time":"","sms":"send"}"#),
            ("payload.time", r#"{"id_sms":1,"sms":"send"}"#),
            ("payload.time", r#"{"id_sms":1,"time":null,"sms":"send"}"#),
            ("payload.time", r#"{"id_sms":1,"time":"2011-01-01T12:57:46","sms":"send"}"#),
            ("payload.time", r#"{"id_sms":1,"time":"2011-13-01 12:57:46","sms":"send"}"#),
            ("payload.time", r#"{"id_sms":1,"time":"2023-02-29 12:57:46","sms":"send"}"#),
            ("payload.time", r#"{"id_sms":1,"time":"2011-01-01 24:00:00","sms":"send"}"#),
            ("payload.time", r#"{"id_sms":1,"time":"2011-01-01 12:60:00","sms":"send"}"#),
            ("payload.time", r#"{"id_sms":1,"time":"2011-01-01 12:57:4x","sms":"send"}"#),
            ("payload.time", r#"{"id_sms":1,"time":" 2011-01-01 12:57:4","sms":"send"}"#),
            ("payload.sms", r#"{"id_sms":1,"time":""}"#),
            ("payload.sms", r#"{"id_sms":1,"time":"","sms":"lost"}"#),
            ("payload.sms", r#"{"id_sms":1,"time":"","sms":null}"#),
            ("payload.viber", r#"{"id_sms":1,"time":"","viber":"<&\""}"#),
            ("payload.extra", r#"{"id_sms":1,"time":"","sms":"send","extra":1}"#),
        ];
        for &(field, payload) in table {
            let got = validate("sms_status", &raw(payload));
            let named = got.as_ref().err().map_or("", |e| e.field.as_str());
            assert_eq!(named, field, "{payload}: {got:?}");
        }
        let good = raw(r#"{"id_sms":1,"time":"","sms":"send"}"#);
        assert_eq!(validate("sms", &good).unwrap_err().field, "type");
    }

    #[test]
    fn renders_one_document_for_the_batch() {
        let batch = [
            record(r#"{"id_sms":3234,"time":"2011-01-01 12:57:46","sms":"deliver"}"#),
            record(r#"{"viber":"read","id_sms":3235,"time":""}"#),
            record(r#"{"id_sms":7,"time":"","sms":"send","viber":"expired"}"#),
        ];
        let request = render(&batch).unwrap();
        assert_eq!(request.content_type, "application/xml; charset=utf-8");
        let expected = concat!(
            r#"<?xml version="1.0" encoding="utf-8"?><response>"#,
            r#"<state id_sms="3234" time="2011-01-01 12:57:46" sms="deliver">deliver</state>"#,
            r#"<state id_sms="3235" time="" viber="read">read</state>"#,
            r#"<state id_sms="7" time="" sms="send" viber="expired">send</state>"#,
            "</response>"
        );
        assert_eq!(std::str::from_utf8(&request.body).unwrap(), expected);
    }

    #[test]
    fn render_refuses_an_empty_batch_and_a_bad_stored_payload() {
        assert_eq!(render(&[]).unwrap_err().field, "messages");
        let bad = [record(r#"{"id_sms":1,"time":""}"#)];
        assert_eq!(render(&bad).unwrap_err().field, "payload.sms");
    }

    #[test]
    fn values_are_escaped_and_read_back() {
        let hostile = r#"a<&"b'>"#;
        let state = State {
            id_sms: 9,
            time: hostile.into(),
            sms: None,
            viber: Some(hostile.into()),
        };
        let body = write_document(&[state]).unwrap();
        let text = String::from_utf8(body).unwrap();
        assert!(
            text.contains(r#"time="a&lt;&amp;&quot;b&apos;&gt;""#),
            "{text}"
        );
        let mut reader = Reader::from_str(&text);
        let (mut attrs, mut content) = (Vec::new(), String::new());
        loop {
            match reader.read_event().unwrap() {
                Event::Start(e) if e.name().as_ref() == "state" => {
                    for a in e.attributes() {
                        let a = a.unwrap();
                        let key = a.key.as_ref().to_owned();
                        attrs.push((
                            key,
                            a.normalized_value(quick_xml::XmlVersion::Explicit1_0)
                                .unwrap()
                                .into_owned(),
                        ));
                    }
                }
                Event::Text(t) => content.push_str(&t.xml10_content()),
                Event::GeneralRef(r) => {
                    let entity = quick_xml::escape::resolve_predefined_entity(&r);
                    content.push_str(entity.unwrap());
                }
                Event::Eof => break,
                _ => {}
            }
        }
        let expected = [("id_sms", "9"), ("time", hostile), ("viber", hostile)];
        let expected: Vec<_> = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(attrs, expected);
        assert_eq!(content, hostile);
    }

    #[test]
    fn id_sms_of_a_stored_payload() {
        assert_eq!(
            id_sms(r#"{"id_sms":3234,"time":"","sms":"send"}"#),
            Some(3234)
        );
        assert_eq!(id_sms(r#"{"id_sms":"3234"}"#), None);
        assert_eq!(id_sms("not json"), None);
    }

    fn ok(body: &[u8]) -> Answer {
        Answer::Response {
            status: 200,
            retry_after: None,
            body: Bytes::copy_from_slice(body),
        }
    }

    fn letters(got: &[Classified]) -> String {
        let letter = |c: &Classified| match c.verdict {
            Verdict::Delivered { .. } => 'D',
            Verdict::Retry { .. } => 'R',
            Verdict::Final { .. } => 'F',
        };
        got.iter().map(letter).collect()
    }

    #[test]
    fn classify_table() {
        // Two messages share id_sms 7: one echo acknowledges both.
        let batch = [
            record(r#"{"id_sms":7,"time":"","sms":"send"}"#),
            record(r#"{"id_sms":8,"time":"","viber":"read"}"#),
            record(r#"{"id_sms":7,"time":"","sms":"deliver"}"#),
        ];
        let full = "<?xml version=\"1.0\" encoding=\"utf-8\" ?>\n<response>\n  <id_sms> 7 </id_sms>\n  <id_sms>8</id_sms>\n</response>\n";
        let deep = "<response>".repeat(20_000) + &"</response>".repeat(20_000);
        let long = format!("<response></{}>", "r".repeat(5_000));
        const U: &str = "unreadable acknowledgement: ";
        // (2xx body, verdicts Delivered/Retry/Final per message, what the first message's reason holds)
        #[rustfmt::skip]
        let table: &[(&[u8], &str, &str)] = &[
            (full.as_bytes(), "DDD", "id_sms 7 acknowledged"),
            ("\u{feff}<response><id_sms>7</id_sms></response>".as_bytes(), "DRD", "acknowledged"),
            (b"<response><id_sms>8</id_sms></response>", "RDR", "did not echo id_sms 7"),
            (b"<response><id_sms>7</id_sms><id_sms>99</id_sms></response>", "DRD", "acknowledged"),
            (b"<response>.<note>x</note><id_sms>7</id_sms></response>", "DRD", "acknowledged"),
            (b"<response/>", "RRR", "did not echo id_sms 7"),
            (b"<response></response>", "RRR", "did not echo"),
            (deep.as_bytes(), "RRR", "did not echo"),
            (b"", "RRR", U),
            (b"OK, thanks", "RRR", U),
            (b"<response><id_sms>7</id_sms>", "RRR", U),
            (b"<response><id_sms>7</id_sms></reply>", "RRR", U),
            (long.as_bytes(), "RRR", U),
            (b"<response></response><response/>", "RRR", U),
            (b"\xff\xfe<response><id_sms>7</id_sms></response>", "RRR", U),
            (b"<reply><id_sms>7</id_sms></reply>", "RRR", U),
            (b"<response><id_sms>7a</id_sms><id_sms>8</id_sms></response>", "RRR", U),
            (b"<response><id_sms/></response>", "RRR", U),
            (b"<response><id_sms><b>7</b></id_sms></response>", "RRR", U),
            (b"<response><id_sms>99999999999999999999</id_sms></response>", "RRR", U),
        ];
        for &(body, expected, reason) in table {
            let got = classify(&ok(body), &batch);
            assert_eq!(letters(&got), expected, "{body:?}: {got:?}");
            assert!(got[0].verdict.reason().contains(reason), "{got:?}");
            assert!(got[0].verdict.reason().len() < 300, "{got:?}");
        }
    }

    fn answer(code: u16, body: &'static [u8], retry_after: Option<u64>) -> Answer {
        Answer::Response {
            status: code,
            retry_after: retry_after.map(Duration::from_secs),
            body: Bytes::from_static(body),
        }
    }

    fn batch() -> [MessageRecord; 3] {
        [
            record(r#"{"id_sms":7,"time":"","sms":"send"}"#),
            record(r#"{"id_sms":8,"time":"","viber":"read"}"#),
            record(r#"{"id_sms":7,"time":"","sms":"deliver"}"#),
        ]
    }

    #[test]
    fn any_other_status_echoes_nothing_and_is_retried() {
        // Seed 001: no id_sms transmitted, the status is not received, and it is sent again. A non-2xx body is
        // not read, so even one that echoes an id acknowledges nothing; and no status kills the document.
        let batch = batch();
        let codes = [
            100, 101, 199, 300, 301, 302, 304, 307, 308, 399, 400, 401, 402, 403, 404, 405, 406,
            408, 409, 410, 411, 413, 415, 418, 422, 425, 429, 451, 499, 500, 501, 502, 503, 504,
            507, 599, 600, 999,
        ];
        for code in codes {
            for body in [
                &b""[..],
                b"<response><id_sms>7</id_sms><id_sms>8</id_sms></response>",
            ] {
                let got = classify(&answer(code, body, None), &batch);
                assert_eq!(letters(&got), "RRR", "HTTP {code} {body:?}: {got:?}");
                for c in &got {
                    let reason = c.verdict.reason();
                    assert!(reason.starts_with(&format!("HTTP {code}")), "{got:?}");
                    assert!(reason.ends_with("no id_sms echoed"), "{got:?}");
                }
            }
        }
        let reason = |code| {
            classify(&answer(code, b"", None), &batch)[0]
                .verdict
                .clone()
        };
        #[rustfmt::skip]
        let reasons = [
            (404, "HTTP 404: no id_sms echoed"),
            (401, "HTTP 401: no id_sms echoed"),
            (403, "HTTP 403: no id_sms echoed"),
            (400, "HTTP 400: no id_sms echoed"),
            (410, "HTTP 410: no id_sms echoed"),
            (500, "HTTP 500: no id_sms echoed"),
            (302, "HTTP 302 (redirect not followed): no id_sms echoed"),
        ];
        for (code, expected) in reasons {
            assert_eq!(reason(code).reason(), expected);
        }
    }

    #[test]
    fn retry_after_is_kept_where_the_shared_rules_keep_it() {
        let batch = batch();
        // (status, whether its Retry-After is honoured)
        #[rustfmt::skip]
        let table = [
            (429, true), (503, true), (500, true), (599, true), (408, true), (425, true),
            (404, false), (401, false), (403, false), (400, false), (410, false), (302, false),
        ];
        for (code, honoured) in table {
            let got = classify(&answer(code, b"", Some(3)), &batch);
            let expected = Verdict::Retry {
                reason: format!("{}: no id_sms echoed", describe_status(code)),
                retry_after: honoured.then_some(Duration::from_secs(3)),
            };
            assert_eq!(got, vec![expected.into(); 3], "HTTP {code}");
        }
    }

    #[test]
    fn a_2xx_delivers_the_echoed_ids_and_retries_the_others() {
        let batch = batch();
        // (status, body, verdicts per message)
        #[rustfmt::skip]
        let table: &[(u16, &[u8], &str)] = &[
            (200, b"<response><id_sms>7</id_sms></response>", "DRD"),
            (201, b"<response><id_sms>8</id_sms></response>", "RDR"),
            (202, b"<response><id_sms>8</id_sms><id_sms>7</id_sms></response>", "DDD"),
            (204, b"", "RRR"),
            (299, b"<response/>", "RRR"),
        ];
        for &(code, body, expected) in table {
            let got = classify(&answer(code, body, Some(3)), &batch);
            assert_eq!(letters(&got), expected, "HTTP {code} {body:?}: {got:?}");
            for c in &got {
                if let Verdict::Retry { retry_after, .. } = &c.verdict {
                    assert_eq!(*retry_after, None, "a 2xx carries no hint: {got:?}");
                }
            }
        }
    }

    #[test]
    fn no_answer_follows_the_shared_rules() {
        let batch = batch();
        let transport = |kind| Answer::Transport {
            kind,
            message: "no luck".into(),
        };
        #[rustfmt::skip]
        let table = [
            (TransportKind::Connect, "RRR", "connect: no luck"),
            (TransportKind::Timeout, "RRR", "timeout: no luck"),
            (TransportKind::Io, "RRR", "io: no luck"),
            // The destination guard refused the URL, or the request could not be built: no answer was given,
            // and another attempt cannot change that.
            (TransportKind::Refused, "FFF", "refused: no luck"),
            (TransportKind::Request, "FFF", "request: no luck"),
        ];
        for (kind, expected, reason) in table {
            let got = classify(&transport(kind), &batch);
            assert_eq!(letters(&got), expected, "{kind:?}: {got:?}");
            assert_eq!(got[0].verdict.reason(), reason);
        }
    }

    #[test]
    fn each_answer_without_the_echo_is_one_of_the_five_attempts() {
        use crate::retry::{Backoff, CycleFacts, Decision, RetryPolicy, decide};
        let policy = RetryPolicy {
            backoff: Backoff::default_schedule(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            max_age: Duration::from_secs(86_400),
        };
        let one = [record(r#"{"id_sms":7,"time":"","sms":"send"}"#)];
        let run = |answers: &[Answer]| -> Vec<Decision> {
            answers
                .iter()
                .enumerate()
                .map(|(n, answer)| {
                    let facts = CycleFacts {
                        attempts: n as u32 + 1,
                        cycle_started_at: 0,
                        now: 0,
                    };
                    let verdict = &classify(answer, &one)[0].verdict;
                    decide(&policy, facts, verdict, Duration::from_secs(3600), 0.0)
                })
                .collect()
        };
        // 404, 404, then the echo: delivered at attempt 3.
        let echo = ok(b"<response><id_sms>7</id_sms></response>");
        let got = run(&[answer(404, b"", None), answer(404, b"", None), echo]);
        assert!(
            matches!(got[..2], [Decision::RetryAt(_), Decision::RetryAt(_)]),
            "{got:?}"
        );
        assert_eq!(got[2], Decision::Delivered);
        // A receiver that never echoes (here a mix of 4xx) gets the status five times, then it is dead.
        let never = [401, 403, 404, 400, 404].map(|code| answer(code, b"", None));
        let got = run(&never);
        assert!(
            got[..4].iter().all(|d| matches!(d, Decision::RetryAt(_))),
            "{got:?}"
        );
        assert_eq!(
            got[4],
            Decision::Dead {
                reason: "gave up after 5 attempts; last: HTTP 404: no id_sms echoed".into()
            }
        );
    }

    #[test]
    fn hostile_bodies_never_panic() {
        let batch = [record(r#"{"id_sms":1,"time":"","sms":"send"}"#)];
        let mut bodies: Vec<Vec<u8>> = (0u8..=255).map(|b| vec![b'<', b, b'>', b'1']).collect();
        bodies.push(b"<response><id_sms>&#49;</id_sms><!--c--><![CDATA[x]]></response>".to_vec());
        bodies.push(
            b"<!DOCTYPE r [<!ENTITY a \"b\">]><response>&a;<id_sms>&a;</id_sms></response>"
                .to_vec(),
        );
        bodies.push("<response>".repeat(30_000).into_bytes());
        bodies.push(vec![b'<'; 65_536]);
        for body in bodies {
            assert_eq!(classify(&ok(&body), &batch).len(), 1);
        }
        let echoed = ok(b"<response><id_sms>&#49;</id_sms></response>");
        assert!(matches!(
            classify(&echoed, &batch)[0].verdict,
            Verdict::Delivered { .. }
        ));
    }
}
