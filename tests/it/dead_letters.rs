//! The dead-letter queue: what goes there, and getting it out again.

use std::time::Duration;

use crate::harness::{Backend, FAST_RETRY, Reply, TestDaemon, TestReceiver, endpoint};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_and_exhausted_messages_are_dead_lettered_and_replayable() {
    final_and_exhausted_messages_are_dead_lettered_and_replayable_on(Backend::Sled).await;
}

/// The test above, on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn final_and_exhausted_messages_are_dead_lettered_and_replayable_on(backend: Backend) {
    let refusing = TestReceiver::start(|_| Reply::status(400)).await;
    let failing = TestReceiver::start(|_| Reply::status(500)).await;
    let extra = format!("max_attempts = 3\n{FAST_RETRY}");
    let daemon = TestDaemon::start_on(
        backend,
        &[
            endpoint("refusing", &refusing.url("/"), &extra),
            endpoint("failing", &failing.url("/"), &extra),
        ],
        "",
    )
    .await;
    let bad = daemon.send("refusing", "event", r#"{"x":1}"#).await;
    let down = daemon.send("failing", "event", r#"{"x":2}"#).await;
    let bad_view = daemon.wait_state(&bad, "dead", WAIT).await;
    let down_view = daemon.wait_state(&down, "dead", WAIT).await;
    assert_eq!(bad_view.attempts.len(), 1, "400 is final at once");
    assert_eq!(
        down_view.attempts.len(),
        3,
        "500 is retried up to max_attempts"
    );
    assert_eq!(refusing.count(), 1);
    assert_eq!(failing.count(), 3);

    let (ok, stdout, stderr) = daemon.cli(&["dlq", "list", "--json"]);
    assert!(ok, "{stderr}");
    let list: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let reason_of = |id: &str| {
        items.iter().find(|i| i["id"] == id).unwrap()["reason"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(reason_of(&bad), "HTTP 400");
    assert!(
        reason_of(&down).contains("gave up after 3 attempts")
            && reason_of(&down).contains("HTTP 500")
    );

    let (ok, stdout, _) = daemon.cli(&["dlq", "list", "--json", "--endpoint", "failing"]);
    assert!(ok);
    let filtered: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(filtered["items"].as_array().unwrap().len(), 1);
    assert_eq!(filtered["items"][0]["id"], down.as_str());

    let (ok, stdout, _) = daemon.cli(&["dlq", "show", &down]);
    assert!(ok);
    assert!(stdout.contains("gave up after 3 attempts"), "{stdout}");

    refusing.set_script(|_| Reply::ok());
    failing.set_script(|_| Reply::ok());
    let (ok, stdout, stderr) = daemon.cli(&["dlq", "replay", "--all"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("replayed 2"), "{stdout}");
    let bad_view = daemon.wait_state(&bad, "delivered", WAIT).await;
    let down_view = daemon.wait_state(&down, "delivered", WAIT).await;
    assert_eq!(
        bad_view.attempts.len(),
        2,
        "history is kept across a replay"
    );
    assert_eq!(down_view.attempts.len(), 4);
    assert_eq!(
        down_view.cycle_attempts, 1,
        "attempts are counted anew after a replay"
    );
    let (ok, stdout, _) = daemon.cli(&["dlq", "list", "--json"]);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap()["items"],
        serde_json::json!([])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_one_id_and_purge() {
    replay_of_one_id_and_purge_on(Backend::Sled).await;
}

/// The test above, on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn replay_of_one_id_and_purge_on(backend: Backend) {
    let receiver = TestReceiver::start(|_| Reply::status(400)).await;
    let daemon = TestDaemon::start_on(
        backend,
        &[endpoint("r", &receiver.url("/"), FAST_RETRY)],
        "",
    )
    .await;
    let a = daemon.send("r", "event", "{}").await;
    let b = daemon.send("r", "event", "{}").await;
    daemon.wait_state(&a, "dead", WAIT).await;
    daemon.wait_state(&b, "dead", WAIT).await;

    receiver.set_script(|_| Reply::ok());
    let (ok, stdout, stderr) = daemon.cli(&["dlq", "replay", &a]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("replayed 1"));
    daemon.wait_state(&a, "delivered", WAIT).await;
    assert_eq!(
        daemon.message(&b).await.state.as_str(),
        "dead",
        "only the named id is replayed"
    );

    let (ok, stdout, _) = daemon.cli(&["dlq", "purge", "--yes", &b]);
    assert!(ok);
    assert!(stdout.contains("purged 1"));
    let (ok, _, stderr) = daemon.cli(&["msg", "show", &b]);
    assert!(!ok, "a purged message is gone");
    assert!(stderr.contains("no message"), "{stderr}");

    // Ids that are not dead letters are reported and make the command fail.
    let (ok, _, stderr) = daemon.cli(&["dlq", "replay", &a]);
    assert!(!ok);
    assert!(stderr.contains("not in the dead-letter queue"), "{stderr}");
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "one-line reason: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_list_pages_with_a_cursor() {
    dlq_list_pages_with_a_cursor_on(Backend::Sled).await;
}

/// The test above, on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn dlq_list_pages_with_a_cursor_on(backend: Backend) {
    let receiver = TestReceiver::start(|_| Reply::status(400)).await;
    let daemon = TestDaemon::start_on(
        backend,
        &[endpoint("r", &receiver.url("/"), FAST_RETRY)],
        "",
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(daemon.send("r", "event", "{}").await);
    }
    for id in &ids {
        daemon.wait_state(id, "dead", WAIT).await;
    }
    let client = daemon.client();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = client
            .dlq_list(None, Some(2), after.as_deref())
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|i| i.id.clone()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every dead letter once, oldest first");
}
