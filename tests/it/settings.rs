//! Endpoint settings changed at run time (seed 000: view and modify the webhook settings).

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{FAST_RETRY, Reply, TestDaemon, TestReceiver, endpoint};

const WAIT: Duration = Duration::from_secs(30);

async fn put(daemon: &TestDaemon, name: &str, body: Value) -> (u16, Value) {
    let response = daemon
        .raw()
        .put(format!("http://hookd/v1/endpoints/{name}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_change_at_run_time_are_validated_and_survive_a_restart() {
    let old = TestReceiver::start(|_| Reply::ok()).await;
    let new = TestReceiver::start(|_| Reply::ok()).await;
    let extra = format!("auth = {{ type = \"bearer\", token = \"s3cret\" }}\n{FAST_RETRY}");
    let mut daemon = TestDaemon::start(&[endpoint("hook", &old.url("/"), &extra)], "").await;

    // Refused changes change nothing.
    let (status, answer) = put(&daemon, "hook", json!({"url": "ftp://x"})).await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["error"]["message"].as_str().unwrap().contains("url"),
        "{answer}"
    );
    assert_eq!(put(&daemon, "hook", json!({"timeout_ms": 0})).await.0, 422);
    assert_eq!(put(&daemon, "hook", json!({"colour": "red"})).await.0, 422);
    assert_eq!(put(&daemon, "nope", json!({"timeout_ms": 5})).await.0, 404);
    let shown = daemon.client().endpoint("hook").await.unwrap();
    assert_eq!(shown.url, old.url("/"));

    let (ok, stdout, stderr) = daemon.cli(&[
        "endpoints",
        "set",
        "hook",
        "--url",
        &new.url("/v2"),
        "--timeout-ms",
        "1234",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("/v2") && stdout.contains("1234"),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cret"), "secrets masked: {stdout}");

    let id = daemon.send("hook", "event", "{}").await;
    daemon.wait_state(&id, "delivered", WAIT).await;
    assert_eq!(new.count(), 1, "the new URL is used at once");
    assert_eq!(old.count(), 0);

    assert!(daemon.terminate().success());
    daemon.spawn().await;
    let shown = daemon.client().endpoint("hook").await.unwrap();
    assert_eq!(shown.url, new.url("/v2"), "kept across a restart");
    assert_eq!(shown.timeout_ms, 1234);
    let id = daemon.send("hook", "event", "{}").await;
    daemon.wait_state(&id, "delivered", WAIT).await;
    assert_eq!(new.requests_for(&id).len(), 1);
    assert_eq!(old.count(), 0);
}
