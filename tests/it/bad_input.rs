//! Bad input gets its status and a JSON error, and changes nothing.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{FAST_RETRY, Reply, TestDaemon, TestReceiver, endpoint};

async fn post(daemon: &TestDaemon, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let response = daemon
        .raw()
        .post(format!("http://hookd{path}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_enqueue_gets_its_status_and_changes_nothing() {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let daemon = TestDaemon::start(
        &[endpoint("ok", &receiver.url("/"), FAST_RETRY)],
        "max_payload_bytes = 1024",
    )
    .await;
    let big = format!(
        r#"{{"endpoint":"ok","type":"event","payload":{{"blob":"{}"}}}}"#,
        "x".repeat(2000)
    );
    let huge = "x".repeat(64 * 1024);
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "malformed JSON",
            r#"{"endpoint":"ok","#.into(),
            400,
            "malformed_json",
        ),
        ("not JSON at all", "hello".into(), 400, "malformed_json"),
        (
            "unknown endpoint",
            r#"{"endpoint":"nope","type":"event","payload":{}}"#.into(),
            404,
            "unknown_endpoint",
        ),
        ("oversize payload", big, 413, "payload_too_large"),
        ("oversize body", huge, 413, "payload_too_large"),
        (
            "missing type",
            r#"{"endpoint":"ok","payload":{}}"#.into(),
            422,
            "invalid",
        ),
        (
            "missing payload",
            r#"{"endpoint":"ok","type":"event"}"#.into(),
            422,
            "invalid",
        ),
        (
            "missing endpoint",
            r#"{"type":"event","payload":{}}"#.into(),
            422,
            "invalid",
        ),
        (
            "payload not an object",
            r#"{"endpoint":"ok","type":"event","payload":[1]}"#.into(),
            422,
            "invalid",
        ),
        (
            "bad event type",
            r#"{"endpoint":"ok","type":"no spaces","payload":{}}"#.into(),
            422,
            "invalid",
        ),
        (
            "unknown field",
            r#"{"endpoint":"ok","type":"e","payload":{},"priority":1}"#.into(),
            422,
            "invalid",
        ),
        (
            "empty idempotency key",
            r#"{"endpoint":"ok","type":"e","payload":{},"idempotency_key":""}"#.into(),
            422,
            "invalid",
        ),
    ];
    for (what, body, status, code) in cases {
        let (got, answer) = post(&daemon, "/v1/messages", body).await;
        assert_eq!(got, status, "{what}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{what}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}"
        );
    }
    let (got, answer) = post(&daemon, "/v1/messages", r#"{"endpoint":"ok","payload":{}}"#).await;
    assert_eq!(got, 422);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("type"),
        "the message names the field"
    );

    // Unknown paths and bad ids.
    let response = daemon
        .raw()
        .get("http://hookd/v1/nothing")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let response = daemon
        .raw()
        .get("http://hookd/v1/messages/not-an-id")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let (got, _) = post(&daemon, "/v1/dlq/replay", r#"{"ids":["not-an-id"]}"#).await;
    assert_eq!(got, 400);
    let (got, _) = post(&daemon, "/v1/dlq/replay", "{}").await;
    assert_eq!(got, 422);

    let stats = daemon.client().stats().await.unwrap();
    assert!(
        stats.by_endpoint.is_empty(),
        "nothing was queued: {stats:?}"
    );
    assert_eq!(receiver.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answers_each_item_and_queues_only_the_good_ones() {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let daemon = TestDaemon::start(&[endpoint("ok", &receiver.url("/"), FAST_RETRY)], "").await;
    let body = r#"{"messages":[
        {"endpoint":"ok","type":"event","payload":{"n":1}},
        {"endpoint":"nope","type":"event","payload":{}},
        {"endpoint":"ok","payload":{}},
        {"endpoint":"ok","type":"event","payload":{"n":2}}
    ]}"#;
    let (status, answer) = post(&daemon, "/v1/messages/batch", body).await;
    assert_eq!(status, 202, "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert!(results[0]["id"].is_string());
    assert_eq!(results[1]["error"]["code"], "unknown_endpoint");
    assert_eq!(results[2]["error"]["code"], "invalid");
    assert!(results[3]["id"].is_string());
    receiver.wait_for(2, Duration::from_secs(30)).await;
    for i in [0, 3] {
        daemon
            .wait_state(
                results[i]["id"].as_str().unwrap(),
                "delivered",
                Duration::from_secs(30),
            )
            .await;
    }
    let (status, answer) = post(&daemon, "/v1/messages/batch", r#"{"messages":[{"endpoint""#).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(receiver.count(), 2);
}
