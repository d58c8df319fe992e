//! Delivery, retries, Retry-After and endpoint isolation.

use std::collections::HashSet;
use std::time::Duration;

use crate::harness::{Backend, FAST_RETRY, Reply, TestDaemon, TestReceiver, endpoint};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_200_messages_each_with_one_attempt() {
    delivers_200_messages_each_with_one_attempt_on(Backend::Sled).await;
}

/// The test above, on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn delivers_200_messages_each_with_one_attempt_on(backend: Backend) {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let daemon = TestDaemon::start_on(
        backend,
        &[endpoint("ok", &receiver.url("/hook"), FAST_RETRY)],
        "",
    )
    .await;
    let mut ids = Vec::new();
    for n in 0..200 {
        ids.push(
            daemon
                .send("ok", "order.created", &format!(r#"{{"n":{n}}}"#))
                .await,
        );
    }
    receiver.wait_for(200, WAIT).await;
    for id in &ids {
        let view = daemon.wait_state(id, "delivered", WAIT).await;
        assert_eq!(view.attempts.len(), 1, "{id}");
        assert_eq!(view.attempts[0].status, Some(200));
    }
    let seen: HashSet<String> = receiver
        .received()
        .iter()
        .map(|r| r.webhook_id.clone())
        .collect();
    assert_eq!(
        seen,
        ids.iter().cloned().collect::<HashSet<_>>(),
        "every request carries its message id"
    );
    let first = &receiver.received()[0];
    assert_eq!(first.headers["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_slice(&first.body).unwrap();
    assert_eq!(body["id"], first.webhook_id.as_str());
    assert_eq!(body["type"], "order.created");
    assert!(body["data"]["n"].is_u64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_503_twice_then_delivers_with_three_attempts() {
    retries_503_twice_then_delivers_with_three_attempts_on(Backend::Sled).await;
}

/// The test above, on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn retries_503_twice_then_delivers_with_three_attempts_on(backend: Backend) {
    let receiver = TestReceiver::start(|r| {
        if r.nth_for_id <= 2 {
            Reply::status(503).header("content-type", "text/plain")
        } else {
            Reply::ok()
        }
    })
    .await;
    let daemon = TestDaemon::start_on(
        backend,
        &[endpoint("flaky", &receiver.url("/"), FAST_RETRY)],
        "",
    )
    .await;
    let id = daemon.send("flaky", "event", r#"{"a":1}"#).await;
    let view = daemon.wait_state(&id, "delivered", WAIT).await;
    let statuses: Vec<_> = view.attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(503), Some(503), Some(200)]);
    assert_eq!(
        receiver.requests_for(&id).len(),
        3,
        "exactly three attempts reached the receiver"
    );

    let (ok, stdout, stderr) = daemon.cli(&["msg", "show", &id]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("delivered"), "{stdout}");
    let attempt_lines: Vec<&str> = stdout
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .collect();
    assert_eq!(attempt_lines.len(), 3, "{stdout}");
    assert!(
        attempt_lines[0].contains("503") && attempt_lines[1].contains("503"),
        "{stdout}"
    );
    assert!(attempt_lines[2].contains("200"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honours_retry_after_on_429() {
    let receiver = TestReceiver::start(|r| {
        if r.nth_for_id == 1 {
            Reply::status(429).header("retry-after", "2")
        } else {
            Reply::ok()
        }
    })
    .await;
    // Without Retry-After the retry would come after 50 ms.
    let daemon =
        TestDaemon::start(&[endpoint("limited", &receiver.url("/"), FAST_RETRY)], "").await;
    let id = daemon.send("limited", "event", "{}").await;
    receiver.wait_for(2, WAIT).await;
    let requests = receiver.requests_for(&id);
    let gap = requests[1].at - requests[0].at;
    assert!(gap >= Duration::from_secs(2), "retried after {gap:?}");
    daemon.wait_state(&id, "delivered", WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_ties_up_only_its_own_endpoint() {
    let hanging = TestReceiver::start(|_| Reply::hang()).await;
    let healthy = TestReceiver::start(|_| Reply::ok()).await;
    let daemon = TestDaemon::start(
        &[
            endpoint(
                "hanging",
                &hanging.url("/"),
                "timeout_ms = 60000\nconcurrency = 2",
            ),
            endpoint("healthy", &healthy.url("/"), "concurrency = 4"),
        ],
        "",
    )
    .await;
    for _ in 0..10 {
        daemon.send("hanging", "event", "{}").await;
    }
    hanging.wait_for(2, WAIT).await;
    let mut ids = Vec::new();
    for _ in 0..100 {
        ids.push(daemon.send("healthy", "event", "{}").await);
    }
    healthy.wait_for(100, WAIT).await;
    for id in &ids {
        daemon.wait_state(id, "delivered", WAIT).await;
    }
    assert_eq!(
        hanging.count(),
        2,
        "the hanging endpoint holds at most its concurrency in flight"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_released_at_once_fills_every_permit_and_no_more() {
    // Paused, then resumed: all 20 messages are due at once and the lane's 4 permits are all free, the case in
    // which one scan of the due index leases a message for every free permit.
    let hanging = TestReceiver::start(|_| Reply::hang()).await;
    let healthy = TestReceiver::start(|_| Reply::ok()).await;
    let daemon = TestDaemon::start(
        &[
            endpoint(
                "busy",
                &hanging.url("/"),
                "timeout_ms = 60000\nconcurrency = 4",
            ),
            endpoint("healthy", &healthy.url("/"), ""),
        ],
        "",
    )
    .await;
    let (ok, _, stderr) = daemon.cli(&["endpoints", "pause", "busy"]);
    assert!(ok, "{stderr}");
    let mut ids = HashSet::new();
    for _ in 0..20 {
        ids.insert(daemon.send("busy", "event", "{}").await);
    }
    let (ok, _, stderr) = daemon.cli(&["endpoints", "resume", "busy"]);
    assert!(ok, "{stderr}");
    hanging.wait_for(4, WAIT).await;
    // Deliveries to another endpoint give the busy lane time to overstep its limit, if it would.
    for _ in 0..50 {
        daemon.send("healthy", "event", "{}").await;
    }
    healthy.wait_for(50, WAIT).await;
    let sent: HashSet<String> = hanging
        .received()
        .into_iter()
        .map(|r| r.webhook_id)
        .collect();
    assert_eq!(hanging.count(), 4, "no more requests than permits");
    assert_eq!(sent.len(), 4, "four different messages: {sent:?}");
    assert!(sent.is_subset(&ids));
    let status = daemon.client().status().await.unwrap();
    let busy = &status.endpoints["busy"];
    assert_eq!((busy.in_flight, busy.queued), (4, 16));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed() {
    let target = TestReceiver::start(|_| Reply::ok()).await;
    let location = target.url("/elsewhere");
    let receiver =
        TestReceiver::start(move |_| Reply::status(302).header("location", &location)).await;
    let daemon = TestDaemon::start(&[endpoint("moved", &receiver.url("/"), FAST_RETRY)], "").await;
    let id = daemon.send("moved", "event", "{}").await;
    let view = daemon.wait_state(&id, "dead", WAIT).await;
    assert_eq!(view.attempts.len(), 1);
    assert!(view.dead_reason.unwrap().contains("redirect not followed"));
    assert_eq!(target.count(), 0, "the redirect target was never called");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_queues_once() {
    an_idempotency_key_queues_once_on(Backend::Sled).await;
}

/// The test above, on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn an_idempotency_key_queues_once_on(backend: Backend) {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let daemon = TestDaemon::start_on(
        backend,
        &[endpoint("ok", &receiver.url("/"), FAST_RETRY)],
        "",
    )
    .await;
    let (ok, first, err) = daemon.cli(&[
        "send",
        "--endpoint",
        "ok",
        "--type",
        "event",
        "--idempotency-key",
        "k1",
        "{}",
    ]);
    assert!(ok, "{err}");
    let (ok, second, err) = daemon.cli(&[
        "send",
        "--json",
        "--endpoint",
        "ok",
        "--type",
        "event",
        "--idempotency-key",
        "k1",
        "{}",
    ]);
    assert!(ok, "{err}");
    let second: serde_json::Value = serde_json::from_str(&second).unwrap();
    assert_eq!(second["id"], first.trim());
    assert_eq!(second["duplicate"], true);
    daemon.wait_state(first.trim(), "delivered", WAIT).await;
    let stats = daemon.client().stats().await.unwrap();
    assert_eq!(
        stats.totals.delivered + stats.totals.queued + stats.totals.in_flight,
        1
    );
    assert_eq!(receiver.count(), 1);
}
