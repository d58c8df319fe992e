//! The `sms-status-xml` format's unit tests: validating a payload, rendering a batch as one document, reading the
//! answer's echoed `id_sms` (and the shared HTTP rules around it), hostile bodies.

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
        100, 101, 199, 300, 301, 302, 304, 307, 308, 399, 400, 401, 402, 403, 404, 405, 406, 408,
        409, 410, 411, 413, 415, 418, 422, 425, 429, 451, 499, 500, 501, 502, 503, 504, 507, 599,
        600, 999,
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
        b"<!DOCTYPE r [<!ENTITY a \"b\">]><response>&a;<id_sms>&a;</id_sms></response>".to_vec(),
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
