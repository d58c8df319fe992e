//! Crash safety: SIGKILL while acknowledged messages are pending or in flight loses none of them.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::harness::{FAST_RETRY, Reply, TestDaemon, TestReceiver, endpoint};

/// The distinct `webhook-id`s the receiver got.
fn webhook_ids(receiver: &TestReceiver) -> HashSet<String> {
    receiver
        .received()
        .into_iter()
        .map(|r| r.webhook_id)
        .collect()
}

/// Waits until every id in `wanted` reached the receiver; `None` when some had not within `within`.
async fn all_arrive(
    receiver: &TestReceiver,
    wanted: &Arc<HashSet<String>>,
    within: Duration,
) -> Option<()> {
    crate::harness::eventually(within, || {
        let seen = webhook_ids(receiver);
        let wanted = Arc::clone(wanted);
        async move { wanted.is_subset(&seen).then_some(()) }
    })
    .await
}

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
    let delivered_all = all_arrive(&receiver, &wanted, Duration::from_secs(60)).await;
    let seen = webhook_ids(&receiver);
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

/// Kills the daemon at random moments while several clients enqueue without pause to three endpoints (a
/// healthy receiver, one answering 503 to half its requests, one taking 200 ms), 25 times over, and then
/// proves: every acknowledged message was delivered at least once, and every message delivered was one a
/// client sent (so nothing was made up or reported for a request that never reached the store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_sigkill_under_concurrent_enqueues_loses_nothing_acknowledged() {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    const KILLS: usize = 25;
    const CLIENTS: usize = 6;
    const ENDPOINTS: [&str; 3] = ["healthy", "flaky", "slow"];
    let healthy = TestReceiver::start(|_| Reply::ok()).await;
    // Half of its answers are 503: every odd request for a message (the first, the third, ...).
    let flaky = TestReceiver::start(|r| {
        if r.nth_for_id % 2 == 1 {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    })
    .await;
    let slow = TestReceiver::start(|_| Reply::ok().delayed(Duration::from_millis(200))).await;
    let receivers = [&healthy, &flaky, &slow];
    let mut daemon = TestDaemon::start(
        &[
            endpoint("healthy", &healthy.url("/"), &format!("concurrency = 8\n{FAST_RETRY}")),
            // Half its answers fail: enough attempts that none runs out, and a breaker that stays out of the
            // way (this test is about crashes, not about the breaker).
            endpoint(
                "flaky",
                &flaky.url("/"),
                &format!("concurrency = 8\nmax_attempts = 40\nmax_age = \"1h\"\ncircuit_breaker = {{ failure_threshold = 1000000 }}\n{FAST_RETRY}"),
            ),
            endpoint("slow", &slow.url("/"), &format!("concurrency = 8\n{FAST_RETRY}")),
        ],
        "",
    )
    .await;
    // (endpoint index, id, nonce) of every acknowledged enqueue.
    let acknowledged = Arc::new(Mutex::new(Vec::<(usize, String, String)>::new()));
    let unanswered = Arc::new(AtomicUsize::new(0));
    let sent_nonces = Arc::new(Mutex::new(HashSet::<String>::new()));
    for round in 0..=KILLS {
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = Vec::new();
        for worker in 0..CLIENTS {
            let client = daemon.client();
            let stop = Arc::clone(&stop);
            let acknowledged = Arc::clone(&acknowledged);
            let unanswered = Arc::clone(&unanswered);
            let sent_nonces = Arc::clone(&sent_nonces);
            clients.push(tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let target = (worker + n) % ENDPOINTS.len();
                    let nonce = format!("r{round}-w{worker}-n{n}");
                    sent_nonces.lock().unwrap().insert(nonce.clone());
                    let request = hookd::api::wire::EnqueueRequest {
                        endpoint: ENDPOINTS[target].into(),
                        kind: "event".into(),
                        payload: serde_json::value::RawValue::from_string(format!(
                            r#"{{"nonce":"{nonce}"}}"#
                        ))
                        .unwrap(),
                        idempotency_key: None,
                    };
                    match client.enqueue(&request).await {
                        Ok(answer) => acknowledged
                            .lock()
                            .unwrap()
                            .push((target, answer.id, nonce)),
                        // The daemon died under this request: not acknowledged, may or may not arrive.
                        Err(_) => {
                            unanswered.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                    }
                }
            }));
        }
        if round < KILLS {
            // A random moment: between 50 and 400 ms of continuous enqueueing and delivering.
            let after = Duration::from_millis(50 + rand::random::<u64>() % 350);
            tokio::time::sleep(after).await;
            daemon.kill();
            stop.store(true, Ordering::SeqCst);
            for client in clients {
                client.await.unwrap();
            }
            daemon.spawn().await;
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            stop.store(true, Ordering::SeqCst);
            for client in clients {
                client.await.unwrap();
            }
        }
    }

    let acknowledged = acknowledged.lock().unwrap().clone();
    let mut lost = Vec::new();
    let (mut wanted_all, mut seen_all, mut requests) = (0, HashSet::new(), 0);
    let sent_nonces = sent_nonces.lock().unwrap().clone();
    for (target, receiver) in receivers.iter().enumerate() {
        let wanted: Arc<HashSet<String>> = Arc::new(
            acknowledged
                .iter()
                .filter(|(t, ..)| *t == target)
                .map(|(_, id, _)| id.clone())
                .collect(),
        );
        wanted_all += wanted.len();
        // A message has arrived once a request for it was answered 200: for the flaky receiver, an even one.
        let delivered = |receiver: &TestReceiver| -> HashSet<String> {
            receiver
                .received()
                .into_iter()
                .filter(|r| target != 1 || r.nth_for_id % 2 == 0)
                .map(|r| r.webhook_id)
                .collect()
        };
        crate::harness::eventually(Duration::from_secs(120), || {
            let seen = delivered(receiver);
            let wanted = Arc::clone(&wanted);
            async move { wanted.is_subset(&seen).then_some(()) }
        })
        .await;
        let received = receiver.received();
        requests += received.len();
        let seen = delivered(receiver);
        let missing: Vec<String> = wanted.difference(&seen).cloned().collect();
        if !missing.is_empty() {
            eprintln!(
                "{}: {} of {} acknowledged not delivered",
                ENDPOINTS[target],
                missing.len(),
                wanted.len()
            );
        }
        lost.extend(missing);
        // Everything that arrived was sent by a client: its nonce is one we generated, for this endpoint.
        for request in &received {
            let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
            let nonce = body["data"]["nonce"]
                .as_str()
                .or_else(|| body["nonce"].as_str())
                .unwrap_or_else(|| panic!("no nonce in {body}"));
            assert!(sent_nonces.contains(nonce), "{nonce} was never sent");
            if let Some((t, _, acked_nonce)) = acknowledged
                .iter()
                .find(|(_, id, _)| *id == request.webhook_id)
            {
                assert_eq!(
                    *t, target,
                    "message {} went to another endpoint",
                    request.webhook_id
                );
                assert_eq!(
                    acked_nonce, nonce,
                    "message {} carries another message's payload",
                    request.webhook_id
                );
            }
        }
        seen_all.extend(seen);
    }
    eprintln!(
        "repeated crash test: kills {KILLS}, acknowledged {wanted_all}, unanswered at a kill {}, delivered {} \
         distinct, requests {requests}, lost {}",
        unanswered.load(Ordering::SeqCst),
        seen_all.len(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "lost {} acknowledged messages: {lost:?}",
        lost.len()
    );
    assert!(
        wanted_all > 100,
        "the clients barely enqueued: {wanted_all}"
    );
}
