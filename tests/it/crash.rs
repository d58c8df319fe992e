//! Crash safety: SIGKILL while acknowledged messages are pending or in flight loses none of them.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::harness::{FAST_RETRY, Reply, TestDaemon, TestReceiver, endpoint};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_message() {
    // A slowish receiver, so that at the kill some messages are in flight and most are still queued.
    let receiver = TestReceiver::start(|_| Reply::ok().delayed(Duration::from_millis(20))).await;
    let mut daemon = TestDaemon::start(
        &[endpoint(
            "sink",
            &receiver.url("/"),
            &format!("concurrency = 8\n{FAST_RETRY}"),
        )],
        "",
    )
    .await;

    // 500 acknowledged enqueues from 16 concurrent clients.
    let client = daemon.client();
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in (worker..500).step_by(16) {
                let request = hookd::api::wire::EnqueueRequest {
                    endpoint: "sink".into(),
                    kind: "event".into(),
                    payload: serde_json::value::RawValue::from_string(format!(r#"{{"n":{n}}}"#))
                        .unwrap(),
                    idempotency_key: None,
                };
                ids.push(client.enqueue(&request).await.unwrap().id);
            }
            ids
        }));
    }
    let mut acknowledged = Vec::new();
    for task in tasks {
        acknowledged.extend(task.await.unwrap());
    }
    assert_eq!(acknowledged.len(), 500);
    // Kill mid-delivery: some delivered, some in flight (8 at a time take 20 ms each), most still queued.
    receiver.wait_for(20, Duration::from_secs(30)).await;
    let before_kill = receiver.count();
    assert!(
        before_kill < 500,
        "the kill must find work pending (got {before_kill} already)"
    );
    daemon.kill();
    let at_kill = receiver.count();

    daemon.spawn().await;
    let wanted: Arc<HashSet<String>> = Arc::new(acknowledged.iter().cloned().collect());
    let delivered_all = crate::harness::eventually(Duration::from_secs(60), || {
        let seen: HashSet<String> = receiver
            .received()
            .into_iter()
            .map(|r| r.webhook_id)
            .collect();
        let wanted = Arc::clone(&wanted);
        async move { wanted.is_subset(&seen).then_some(()) }
    })
    .await;
    let seen: HashSet<String> = receiver
        .received()
        .into_iter()
        .map(|r| r.webhook_id)
        .collect();
    let lost: Vec<_> = wanted.difference(&seen).collect();
    assert!(
        delivered_all.is_some(),
        "lost {} acknowledged messages: {lost:?}",
        lost.len()
    );
    for id in &acknowledged {
        daemon
            .wait_state(id, "delivered", Duration::from_secs(30))
            .await;
    }
    let total = receiver.count();
    eprintln!(
        "crash test: acknowledged 500, received {at_kill} before the kill, {total} requests in all, {} duplicates",
        total - wanted.len()
    );
}
