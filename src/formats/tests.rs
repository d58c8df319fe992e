//! The HTTP-level classification shared by the formats (`classify_http`), rule by rule.

use super::*;

fn status(code: u16) -> Answer {
    Answer::Response {
        status: code,
        retry_after: None,
        body: Bytes::new(),
    }
}

#[test]
fn http_outcome_table() {
    let table: &[(u16, &str)] = &[
        (200, "delivered"),
        (204, "delivered"),
        (299, "delivered"),
        (301, "final"),
        (302, "final"),
        (307, "final"),
        (400, "final"),
        (401, "final"),
        (404, "final"),
        (410, "final"),
        (408, "retry"),
        (425, "retry"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
        (599, "retry"),
    ];
    for &(code, expected) in table {
        let got = match classify_http(&status(code)) {
            Verdict::Delivered { .. } => "delivered",
            Verdict::Retry { .. } => "retry",
            Verdict::Final { .. } => "final",
        };
        assert_eq!(got, expected, "HTTP {code}");
    }
}

#[test]
fn transport_errors_retry_unless_refused() {
    let t = |kind| Answer::Transport {
        kind,
        message: "x".into(),
    };
    assert!(matches!(
        classify_http(&t(TransportKind::Connect)),
        Verdict::Retry { .. }
    ));
    assert!(matches!(
        classify_http(&t(TransportKind::Timeout)),
        Verdict::Retry { .. }
    ));
    assert!(matches!(
        classify_http(&t(TransportKind::Io)),
        Verdict::Retry { .. }
    ));
    assert!(matches!(
        classify_http(&t(TransportKind::Refused)),
        Verdict::Final { .. }
    ));
}

#[test]
fn retry_after_is_carried_into_the_verdict() {
    let answer = Answer::Response {
        status: 429,
        retry_after: Some(Duration::from_secs(2)),
        body: Bytes::new(),
    };
    assert_eq!(
        classify_http(&answer),
        Verdict::Retry {
            reason: "HTTP 429".into(),
            retry_after: Some(Duration::from_secs(2))
        }
    );
}
