//! Admission per endpoint: one endpoint's backlog fills only its own `max_queued`, never another endpoint's
//! room; the daemon-wide `max_queue_depth` is a memory guard whose refusal names who holds the most.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{FAST_RETRY, Reply, TestDaemon, TestReceiver, endpoint};

const WAIT: Duration = Duration::from_secs(30);

async fn enqueue(daemon: &TestDaemon, endpoint: &str) -> (u16, Value) {
    let response = daemon
        .raw()
        .post("http://hookd/v1/messages")
        .json(&json!({"endpoint": endpoint, "type": "t", "payload": {}}))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_endpoint_refuses_only_its_own_enqueues() {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let daemon = TestDaemon::start(
        &[
            endpoint("down", &receiver.url("/down"), FAST_RETRY),
            endpoint("healthy", &receiver.url("/ok"), FAST_RETRY),
            endpoint(
                "other",
                &receiver.url("/other"),
                &format!("{FAST_RETRY}\nmax_queued = 1000"),
            ),
        ],
        "max_queue_depth = 150\n[defaults]\nmax_queued = 100\n",
    )
    .await;
    daemon
        .client()
        .control_endpoint("down", "pause")
        .await
        .unwrap();
    for _ in 0..100 {
        assert_eq!(enqueue(&daemon, "down").await.0, 202);
    }
    let (status, answer) = enqueue(&daemon, "down").await;
    assert_eq!(status, 429, "{answer}");
    assert_eq!(answer["error"]["code"], "endpoint_full");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`down`"),
        "{answer}"
    );

    // Another endpoint is not affected.
    let (status, answer) = enqueue(&daemon, "healthy").await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["id"].as_str().unwrap().to_owned();
    daemon.wait_state(&id, "delivered", WAIT).await;

    // A batch: the full endpoint's items are refused, the others' accepted.
    let response = daemon
        .raw()
        .post("http://hookd/v1/messages/batch")
        .json(&json!({"messages": [
            {"endpoint": "down", "type": "t", "payload": {}},
            {"endpoint": "healthy", "type": "t", "payload": {}},
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let results: Value = response.json().await.unwrap();
    assert_eq!(
        results["results"][0]["error"]["code"], "endpoint_full",
        "{results}"
    );
    assert!(results["results"][1]["id"].is_string(), "{results}");

    // The daemon-wide guard names the endpoints holding the most.
    daemon
        .client()
        .control_endpoint("other", "pause")
        .await
        .unwrap();
    for _ in 0..50 {
        assert_eq!(enqueue(&daemon, "other").await.0, 202);
    }
    let (status, answer) = enqueue(&daemon, "other").await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["code"], "queue_full");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("down (100)"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_is_admitted_within_the_endpoints_bound() {
    let receiver = TestReceiver::start(|_| Reply::status(400)).await;
    let daemon = TestDaemon::start(
        &[endpoint(
            "refusing",
            &receiver.url("/"),
            &format!("{FAST_RETRY}\nmax_queued = 2"),
        )],
        "",
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, answer) = enqueue(&daemon, "refusing").await;
        assert_eq!(status, 202, "{answer}");
        let id = answer["id"].as_str().unwrap().to_owned();
        daemon.wait_state(&id, "dead", WAIT).await;
        ids.push(id);
    }
    let (status, answer) = enqueue(&daemon, "refusing").await;
    assert_eq!(status, 202, "{answer}");
    let third = answer["id"].as_str().unwrap().to_owned();
    daemon.wait_state(&third, "dead", WAIT).await;
    daemon
        .client()
        .control_endpoint("refusing", "pause")
        .await
        .unwrap();

    // Three dead letters, room for two: the replay is refused whole and nothing moves.
    let (ok, _, stderr) = daemon.cli(&["dlq", "replay", "--all"]);
    assert!(!ok, "refused");
    assert!(stderr.contains("max_queued"), "{stderr}");
    for id in ids.iter().chain([&third]) {
        assert_eq!(daemon.message(id).await.state.to_string(), "dead");
    }
    let (ok, stdout, stderr) = daemon.cli(&["dlq", "replay", &ids[0], &ids[1]]);
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(daemon.message(&ids[0]).await.state.to_string(), "held");
}
