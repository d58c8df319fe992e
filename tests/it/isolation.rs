//! No endpoint can hurt another, nor itself: a receiver's `Retry-After` slows its whole lane, and bulk work
//! (large batches, replaying or purging every dead letter) is bounded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{FAST_RETRY, Reply, TestDaemon, TestReceiver, endpoint, eventually};

const WAIT: Duration = Duration::from_secs(30);

/// Enqueues `n` messages to `endpoint` in one batch; returns their ids.
async fn enqueue_batch(daemon: &TestDaemon, endpoint: &str, n: usize) -> Vec<String> {
    let messages: Vec<Value> = (0..n)
        .map(|i| json!({"endpoint": endpoint, "type": "event", "payload": {"n": i}}))
        .collect();
    let response = daemon
        .raw()
        .post("http://hookd/v1/messages/batch")
        .json(&json!({ "messages": messages }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let answer: Value = response.json().await.unwrap();
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().expect("queued").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_pauses_the_whole_lane_without_spending_attempts() {
    // The first request gets 429 with Retry-After: 2; every other is answered 200 after 300 ms, so that the
    // answers that free the lane's places come after the daemon has seen the 429.
    let seen = Arc::new(AtomicUsize::new(0));
    let throttled_id = Arc::new(Mutex::new(String::new()));
    let (count, first) = (Arc::clone(&seen), Arc::clone(&throttled_id));
    let receiver = TestReceiver::start(move |request| {
        if count.fetch_add(1, Ordering::SeqCst) == 0 {
            *first.lock().unwrap() = request.webhook_id.clone();
            Reply::status(429).header("retry-after", "2")
        } else {
            Reply::ok().delayed(Duration::from_millis(300))
        }
    })
    .await;
    let extra = format!("concurrency = 4\nmax_attempts = 10\n{FAST_RETRY}");
    let daemon = TestDaemon::start(&[endpoint("paced", &receiver.url("/"), &extra)], "").await;
    let client = daemon.client();
    // Paused while the batch is written, so the lane starts with all ten due: four go out at once.
    client.control_endpoint("paced", "pause").await.unwrap();
    let ids = enqueue_batch(&daemon, "paced", 10).await;
    client.control_endpoint("paced", "resume").await.unwrap();

    receiver.wait_for(1, WAIT).await;
    // While it waits, the endpoint says so.
    let view = eventually(WAIT, || {
        let client = client.clone();
        async move {
            let view = client.endpoint("paced").await.ok()?;
            (view.state == "throttled").then_some(view)
        }
    })
    .await
    .expect("the endpoint shows as throttled");
    let reason = view.state_reason.unwrap_or_default();
    assert!(
        reason.contains("receiver asked to wait until"),
        "state_reason: {reason}"
    );

    // Every message delivered: ten requests plus the throttled one's second.
    receiver.wait_for(11, WAIT).await;
    for id in &ids {
        daemon.wait_state(id, "delivered", WAIT).await;
    }
    let received = receiver.received();
    let throttled_id = throttled_id.lock().unwrap().clone();
    let answered_429 = received
        .iter()
        .find(|r| r.webhook_id == throttled_id && r.nth_for_id == 1)
        .expect("the 429's request")
        .at;
    // Nothing but the requests already in flight with the 429 (at most the lane's concurrency, 4) reached
    // the receiver before the Retry-After was over.
    let before_the_time: Vec<_> = received
        .iter()
        .filter(|r| r.at < answered_429 + Duration::from_millis(1_950))
        .collect();
    assert!(
        before_the_time.len() <= 4,
        "{} requests arrived within the 2 s the receiver asked for (only the 4 in flight may): {:?}",
        before_the_time.len(),
        received
            .iter()
            .map(|r| r.at.saturating_duration_since(answered_429))
            .collect::<Vec<_>>()
    );
    // Only the message that got the 429 had an attempt counted beyond its delivery.
    for id in &ids {
        let attempts = daemon.message(id).await.attempts.len();
        let expected = if *id == throttled_id { 2 } else { 1 };
        assert_eq!(attempts, expected, "attempts of {id}");
    }
    let log = daemon.log();
    assert!(log.contains("throttling started"), "{log}");
    let ended = eventually(WAIT, || async {
        daemon.log().contains("throttling ended").then_some(())
    })
    .await;
    assert!(ended.is_some(), "{}", daemon.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_without_retry_after_defers_only_its_message() {
    let seen = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&seen);
    let receiver = TestReceiver::start(move |_| {
        if count.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::status(429)
        } else {
            Reply::ok()
        }
    })
    .await;
    let extra = format!("concurrency = 1\nmax_attempts = 10\n{FAST_RETRY}");
    let daemon = TestDaemon::start(&[endpoint("plain", &receiver.url("/"), &extra)], "").await;
    let ids = enqueue_batch(&daemon, "plain", 3).await;
    for id in &ids {
        daemon.wait_state(id, "delivered", WAIT).await;
    }
    assert!(!daemon.log().contains("throttling started"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_max_batch_messages_is_refused_whole_with_413_naming_the_limit() {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let daemon = TestDaemon::start(
        &[endpoint("e", &receiver.url("/"), "")],
        "max_batch_messages = 5",
    )
    .await;
    let messages: Vec<Value> = (0..6)
        .map(|i| json!({"endpoint": "e", "type": "event", "payload": {"n": i}}))
        .collect();
    let response = daemon
        .raw()
        .post("http://hookd/v1/messages/batch")
        .json(&json!({ "messages": messages }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "payload_too_large", "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("max_batch_messages = 5") && message.contains("6 messages"),
        "{message}"
    );
    let stats = daemon.client().stats().await.unwrap();
    assert_eq!(
        stats.totals.queued + stats.totals.delivered,
        0,
        "nothing of it was written"
    );
    // At the limit it is taken.
    assert_eq!(enqueue_batch(&daemon, "e", 5).await.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_and_purge_of_every_dead_letter_go_in_chunks_and_reach_them_all() {
    // More dead letters than one chunk (500) holds.
    const N: usize = 1_200;
    let receiver = TestReceiver::start(|_| Reply::status(400)).await;
    let extra = "concurrency = 8\nmax_attempts = 1";
    let daemon = TestDaemon::start(&[endpoint("bulk", &receiver.url("/"), extra)], "").await;
    let client = daemon.client();
    for _ in 0..(N / 400) {
        enqueue_batch(&daemon, "bulk", 400).await;
    }
    let dead = |n: u64| {
        let client = client.clone();
        async move {
            let stats = client.stats().await.ok()?;
            (stats.totals.dead == n && stats.totals.queued == 0).then_some(())
        }
    };
    assert!(
        eventually(WAIT, || dead(N as u64)).await.is_some(),
        "{N} dead letters"
    );
    let (ok, stdout, stderr) = daemon.cli(&["dlq", "replay", "--all", "--endpoint", "bulk"]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains(&N.to_string()), "{stdout}");
    receiver.wait_for(2 * N, WAIT).await;
    assert!(
        eventually(WAIT, || dead(N as u64)).await.is_some(),
        "dead again"
    );
    let (ok, stdout, stderr) = daemon.cli(&["dlq", "purge", "--all", "--yes"]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains(&N.to_string()), "{stdout}");
    assert!(
        eventually(WAIT, || dead(0)).await.is_some(),
        "every dead letter purged"
    );
}
