//! What hookd tells monitoring: `GET /metrics` over the socket and over the optional TCP listener, checked
//! line by line against the Prometheus text format, and JSON log lines that name their message and endpoint.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::harness::{FAST_RETRY, Reply, TestDaemon, TestReceiver, endpoint, eventually};

const WAIT: Duration = Duration::from_secs(30);

/// One sample line: `name{label="value",...} value`.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed exposition: its samples, and the families declared by `# HELP` and `# TYPE`.
#[derive(Debug)]
struct Exposition {
    samples: Vec<Sample>,
    types: BTreeMap<String, String>,
}

impl Exposition {
    /// The value of the one sample with this name and these labels; panics when absent.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let found: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.name == name && s.labels == wanted)
            .collect();
        assert_eq!(found.len(), 1, "{name}{labels:?}: {found:?}");
        found[0].value
    }

    fn keys(&self) -> BTreeSet<String> {
        self.samples
            .iter()
            .map(|s| format!("{}{:?}", s.name, s.labels))
            .collect()
    }
}

/// Parses the text format 0.0.4 strictly enough to catch a malformed line: every line is a HELP, a TYPE or a
/// sample; every sample belongs to a family declared with both HELP and TYPE before it; counters end in
/// `_total`; label values are quoted with escapes.
fn parse(text: &str) -> Exposition {
    assert!(text.ends_with('\n'), "the exposition ends with a line feed");
    let mut helps = BTreeSet::new();
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP has a name and a text");
            assert!(valid_name(name), "bad metric name in {line:?}");
            assert!(!help.is_empty(), "empty help in {line:?}");
            assert!(helps.insert(name.to_owned()), "HELP twice for {name}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a name and a type");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "bad type in {line:?}"
            );
            assert!(helps.contains(name), "TYPE before HELP for {name}");
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "TYPE twice for {name}"
            );
            if kind == "counter" {
                assert!(
                    name.ends_with("_total"),
                    "counter {name} must end in _total"
                );
            }
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line:?}");
        let sample = parse_sample(line);
        let family = family_of(&sample.name, &types)
            .unwrap_or_else(|| panic!("sample {line:?} has no HELP and TYPE before it"));
        if types[&family] == "histogram" && sample.name.ends_with("_bucket") {
            assert!(
                sample.labels.contains_key("le"),
                "bucket without le: {line:?}"
            );
        }
        samples.push(sample);
    }
    for name in &helps {
        assert!(types.contains_key(name), "{name} has HELP but no TYPE");
    }
    Exposition { samples, types }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The declared family a sample belongs to (a histogram's `_bucket`, `_sum` and `_count` belong to it).
fn family_of(sample: &str, types: &BTreeMap<String, String>) -> Option<String> {
    if types.contains_key(sample) {
        return Some(sample.to_owned());
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = sample.strip_suffix(suffix)?;
        (types.get(base).map(String::as_str) == Some("histogram")).then(|| base.to_owned())
    })
}

fn parse_sample(line: &str) -> Sample {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("no value in {line:?}"));
    let name = &line[..name_end];
    assert!(valid_name(name), "bad metric name in {line:?}");
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let end = loop {
            // A label name, `=`, then a quoted value with \\, \" and \n escapes.
            let start = chars.peek().map(|(i, _)| *i).expect("unterminated labels");
            let mut key_end = start;
            for (i, c) in chars.by_ref() {
                if c == '=' {
                    key_end = i;
                    break;
                }
            }
            let key = &inner[start..key_end];
            assert!(valid_name(key), "bad label name {key:?} in {line:?}");
            assert_eq!(
                chars.next().map(|(_, c)| c),
                Some('"'),
                "unquoted value in {line:?}"
            );
            let mut value = String::new();
            loop {
                match chars.next().expect("unterminated label value") {
                    (_, '\\') => match chars.next().expect("dangling escape") {
                        (_, '\\') => value.push('\\'),
                        (_, '"') => value.push('"'),
                        (_, 'n') => value.push('\n'),
                        (_, other) => panic!("bad escape \\{other} in {line:?}"),
                    },
                    (_, '"') => break,
                    (_, c) => value.push(c),
                }
            }
            assert!(
                labels.insert(key.to_owned(), value).is_none(),
                "label twice in {line:?}"
            );
            match chars.next().expect("unterminated labels") {
                (_, ',') => continue,
                (i, '}') => break i,
                (_, c) => panic!("unexpected {c:?} in labels of {line:?}"),
            }
        };
        rest = &inner[end + 1..];
    }
    let value_text = rest
        .strip_prefix(' ')
        .unwrap_or_else(|| panic!("no space before the value in {line:?}"));
    assert!(
        !value_text.contains(' '),
        "timestamps are not written: {line:?}"
    );
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        text => text
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad value in {line:?}")),
    };
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

#[test]
fn the_parser_refuses_malformed_lines() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"q\\\"\"} 1\n";
    assert_eq!(parse(ok).value("a_total", &[("x", "q\"")]), 1.0);
    for bad in [
        "a_total 1\n",
        "# HELP a_total A.\n# TYPE a_total counter\na_total{x=q} 1\n",
        "# HELP a A.\n# TYPE a counter\na 1\n",
        "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"q\"}1\n",
    ] {
        assert!(
            std::panic::catch_unwind(|| parse(bad)).is_err(),
            "accepted {bad:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_deliveries_retries_and_dead_letters_per_endpoint() {
    let ok = TestReceiver::start(|_| Reply::ok()).await;
    // Each message fails once, then is accepted: one retry per message.
    let flaky = TestReceiver::start(|r| match r.nth_for_id {
        1 => Reply::status(503),
        _ => Reply::ok(),
    })
    .await;
    let refusing = TestReceiver::start(|_| Reply::status(400)).await;
    let daemon = TestDaemon::start(
        &[
            endpoint("ok", &ok.url("/"), FAST_RETRY),
            endpoint("flaky", &flaky.url("/"), FAST_RETRY),
            endpoint("refusing", &refusing.url("/"), FAST_RETRY),
        ],
        "",
    )
    .await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(daemon.send("ok", "event", &format!(r#"{{"n":{n}}}"#)).await);
    }
    let retried = daemon.send("flaky", "event", "{}").await;
    let dead = daemon.send("refusing", "event", "{}").await;
    for id in &ids {
        daemon.wait_state(id, "delivered", WAIT).await;
    }
    daemon.wait_state(&retried, "delivered", WAIT).await;
    daemon.wait_state(&dead, "dead", WAIT).await;

    let text = daemon.client().metrics().await.unwrap();
    let m = parse(&text);
    for (endpoint, enqueued) in [("ok", 3.0), ("flaky", 1.0), ("refusing", 1.0)] {
        assert_eq!(
            m.value("hookd_enqueued_total", &[("endpoint", endpoint)]),
            enqueued
        );
    }
    let attempts = |endpoint, outcome| {
        m.value(
            "hookd_attempts_total",
            &[("endpoint", endpoint), ("outcome", outcome)],
        )
    };
    assert_eq!(attempts("ok", "delivered"), 3.0);
    assert_eq!(attempts("ok", "retry"), 0.0);
    assert_eq!(attempts("flaky", "retry"), 1.0);
    assert_eq!(attempts("flaky", "delivered"), 1.0);
    assert_eq!(attempts("refusing", "dead"), 1.0);
    assert_eq!(attempts("refusing", "delivered"), 0.0);
    assert_eq!(
        m.value("hookd_deliveries_total", &[("endpoint", "ok")]),
        3.0
    );
    assert_eq!(
        m.value("hookd_retries_total", &[("endpoint", "flaky")]),
        1.0
    );
    assert_eq!(m.value("hookd_retries_total", &[("endpoint", "ok")]), 0.0);
    assert_eq!(
        m.value("hookd_dead_letters_total", &[("endpoint", "refusing")]),
        1.0
    );
    assert_eq!(
        m.value("hookd_dead_letters_total", &[("endpoint", "flaky")]),
        0.0
    );

    // The latency histogram: cumulative buckets ending in +Inf, equal to the count.
    assert_eq!(m.types["hookd_delivery_latency_seconds"], "histogram");
    let count = m.value(
        "hookd_delivery_latency_seconds_count",
        &[("endpoint", "ok")],
    );
    assert_eq!(count, 3.0);
    let inf = m.value(
        "hookd_delivery_latency_seconds_bucket",
        &[("endpoint", "ok"), ("le", "+Inf")],
    );
    assert_eq!(inf, count);
    let buckets: Vec<&Sample> = m
        .samples
        .iter()
        .filter(|s| {
            s.name == "hookd_delivery_latency_seconds_bucket" && s.labels["endpoint"] == "ok"
        })
        .collect();
    assert!(
        buckets.windows(2).all(|w| w[0].value <= w[1].value),
        "cumulative"
    );
    assert!(m.value("hookd_delivery_latency_seconds_sum", &[("endpoint", "ok")]) >= 0.0);
    assert_eq!(
        m.value(
            "hookd_delivery_latency_seconds_count",
            &[("endpoint", "flaky")]
        ),
        1.0
    );

    // Queue depth comes from the store; the lane state is a one-hot set per endpoint.
    let depth = |endpoint, state| {
        m.value(
            "hookd_queue_depth",
            &[("endpoint", endpoint), ("state", state)],
        )
    };
    assert_eq!(depth("refusing", "dead"), 1.0);
    assert_eq!(depth("ok", "dead"), 0.0);
    assert_eq!(depth("ok", "queued"), 0.0);
    assert_eq!(depth("ok", "in_flight"), 0.0);
    let state = |endpoint, state| {
        m.value(
            "hookd_endpoint_state",
            &[("endpoint", endpoint), ("state", state)],
        )
    };
    assert_eq!(state("ok", "active"), 1.0);
    assert_eq!(state("ok", "paused"), 0.0);
    let states: f64 = m
        .samples
        .iter()
        .filter(|s| s.name == "hookd_endpoint_state" && s.labels["endpoint"] == "flaky")
        .map(|s| s.value)
        .sum();
    assert_eq!(states, 1.0, "exactly one state per endpoint");
    assert_eq!(m.value("hookd_event_subscribers", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_over_tcp_without_a_token_and_nothing_else_is() {
    let ok = TestReceiver::start(|_| Reply::ok()).await;
    let daemon = TestDaemon::start(
        &[endpoint("ok", &ok.url("/"), FAST_RETRY)],
        "metrics_listen = \"127.0.0.1:0\"",
    )
    .await;
    let log = daemon.log();
    let addr = log
        .lines()
        .find(|l| l.contains("serving /metrics over TCP"))
        .and_then(|l| l.split("metrics=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no TCP metrics address in the log:\n{log}"))
        .to_owned();
    let id = daemon.send("ok", "event", "{}").await;
    daemon.wait_state(&id, "delivered", WAIT).await;

    // Tokens close the socket's /metrics like every other route, but not the TCP listener's.
    let (created, token, stderr) = daemon.cli(&["tokens", "create", "ops"]);
    assert!(created, "{stderr}");
    let refused = daemon.client().metrics().await.unwrap_err();
    assert!(refused.to_string().contains("unauthorized"), "{refused}");
    let socket_text = daemon
        .client()
        .with_token(Some(token.trim().to_owned()))
        .metrics()
        .await
        .unwrap();

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let answer = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let content_type = answer.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let tcp_text = answer.text().await.unwrap();
    let (over_tcp, over_socket) = (parse(&tcp_text), parse(&socket_text));
    assert_eq!(
        over_tcp.keys(),
        over_socket.keys(),
        "the same series on both"
    );
    assert_eq!(
        over_tcp.value("hookd_deliveries_total", &[("endpoint", "ok")]),
        1.0
    );
    let other = http
        .get(format!("http://{addr}/v1/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404, "only /metrics is served over TCP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_naming_message_and_endpoint() {
    let ok = TestReceiver::start(|_| Reply::ok()).await;
    let daemon = TestDaemon::start(
        &[endpoint("ok", &ok.url("/"), FAST_RETRY)],
        "log_format = \"json\"",
    )
    .await;
    let id = daemon.send("ok", "event", "{}").await;
    daemon.wait_state(&id, "delivered", WAIT).await;
    // The daemon wrote the line before recording the delivery; the harness copies stderr to the file.
    let log = eventually(WAIT, || {
        let log = daemon.log();
        async move { log.contains(r#""message":"delivered""#).then_some(log) }
    })
    .await
    .unwrap_or_else(|| panic!("no delivery line in the log:\n{}", daemon.log()));
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["timestamp"].is_string())
    );
    let delivered = lines.iter().find(|l| l["message"] == "delivered").unwrap();
    assert_eq!(delivered["message_id"], id.as_str());
    assert_eq!(delivered["endpoint"], "ok");
    assert_eq!(delivered["attempt"], 1);
}
