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
