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
mod tests;
