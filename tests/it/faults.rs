//! Recovery without a restart: with faults injected into a debug build of the daemon (src/faults.rs), every
//! message is still delivered while the daemon keeps running, and nothing stays in flight.

use std::time::Duration;

use crate::harness::{FAST_RETRY, Reply, TestDaemon, TestReceiver, endpoint};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_attempt_gives_its_message_back_and_it_is_delivered() {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let daemon = TestDaemon::start_with_faults(
        &[endpoint("ok", &receiver.url("/"), FAST_RETRY)],
        "",
        "attempt_panic=2",
    )
    .await;
    let first = daemon.send("ok", "event", "{}").await;
    let second = daemon.send("ok", "event", "{}").await;
    for id in [&first, &second] {
        let view = daemon.wait_state(id, "delivered", WAIT).await;
        assert_eq!(
            view.attempts.len(),
            1,
            "the panicked attempts are not counted"
        );
    }
    assert!(
        daemon.log().contains("an attempt panicked"),
        "{}",
        daemon.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_outcome_write_is_tried_again() {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let daemon = TestDaemon::start_with_faults(
        &[endpoint("ok", &receiver.url("/"), FAST_RETRY)],
        "",
        "outcome_write=2",
    )
    .await;
    let id = daemon.send("ok", "event", "{}").await;
    let view = daemon.wait_state(&id, "delivered", WAIT).await;
    assert_eq!(view.attempts.len(), 1);
    assert_eq!(receiver.count(), 1, "written on a retry: no second request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_that_cannot_be_written_gives_the_message_back() {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    // The first write and its three retries fail: the message is given back and sent again.
    let daemon = TestDaemon::start_with_faults(
        &[endpoint("ok", &receiver.url("/"), FAST_RETRY)],
        "",
        "outcome_write=4",
    )
    .await;
    let id = daemon.send("ok", "event", "{}").await;
    let view = daemon.wait_state(&id, "delivered", WAIT).await;
    assert_eq!(view.attempts.len(), 1, "the lost outcome is not counted");
    assert_eq!(receiver.count(), 2, "at least once: delivered again");
}

/// A batch larger than one chunk is written chunk by chunk; when a later chunk fails, the chunks written
/// before it are deleted again: the refused batch stores nothing (no message, no idempotency key), and sent
/// again it is accepted whole and delivered once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_batch_refused_part_way_stores_nothing() {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let daemon = TestDaemon::start_with_faults(
        &[endpoint("ok", &receiver.url("/"), FAST_RETRY)],
        "",
        "later_chunk_write=1",
    )
    .await;
    const N: usize = 700; // three chunks of at most 256
    let messages: Vec<serde_json::Value> = (0..N)
        .map(|n| {
            serde_json::json!({"endpoint": "ok", "type": "event", "payload": {"n": n},
                               "idempotency_key": format!("k{n}")})
        })
        .collect();
    let send = || async {
        let response = daemon
            .raw()
            .post("http://hookd/v1/messages/batch")
            .json(&serde_json::json!({ "messages": messages }))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json::<serde_json::Value>().await.unwrap())
    };

    let (status, answer) = send().await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["code"], "store_unavailable", "{answer}");
    let stats = daemon.client().stats().await.unwrap();
    assert_eq!(
        stats.totals.queued + stats.totals.in_flight + stats.totals.delivered,
        0,
        "nothing of the refused batch is shown"
    );

    let (status, answer) = send().await;
    assert_eq!(status, 202, "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), N);
    assert!(
        results.iter().all(|r| r["duplicate"] != true),
        "no key of the refused batch was kept: {answer}"
    );
    receiver.wait_for(N, WAIT).await;
    assert_eq!(receiver.count(), N, "each message delivered once");

    // A restart recounts every record in the data dir: nothing of the refused batch is left there.
    let mut daemon = daemon;
    assert!(daemon.terminate().success());
    daemon.spawn().await;
    let stats = daemon.client().stats().await.unwrap();
    assert_eq!(
        (stats.totals.queued, stats.totals.delivered),
        (0, N as u64),
        "after the restart"
    );
}
