//! Endpoint health: the circuit breaker, 410 Gone disabling an endpoint, pause/resume, and rate limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{FAST_RETRY, Reply, TestDaemon, TestReceiver, endpoint, eventually};

const WAIT: Duration = Duration::from_secs(30);

/// The endpoint as `hookd endpoints show --json` gives it.
fn show(daemon: &TestDaemon, name: &str) -> serde_json::Value {
    let (ok, stdout, stderr) = daemon.cli(&["endpoints", "show", name, "--json"]);
    assert!(ok, "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

async fn wait_endpoint_state(daemon: &TestDaemon, name: &str, state: &str) -> serde_json::Value {
    let client = daemon.client();
    let found = eventually(WAIT, || {
        let client = client.clone();
        async move {
            let view = client.endpoint(name).await.ok()?;
            (view.state == state).then_some(())
        }
    })
    .await;
    assert!(
        found.is_some(),
        "endpoint {name} never reached {state}: {}",
        show(daemon, name)
    );
    show(daemon, name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_opens_after_consecutive_failures_probes_once_and_closes() {
    let healthy = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&healthy);
    let receiver = TestReceiver::start(move |_| {
        if flag.load(Ordering::SeqCst) {
            Reply::ok()
        } else {
            Reply::status(503)
        }
    })
    .await;
    let extra = format!(
        "max_attempts = 100\nconcurrency = 1\ncircuit_breaker = {{ failure_threshold = 3, cooldown = \"1500ms\" }}\n{FAST_RETRY}"
    );
    let daemon = TestDaemon::start(&[endpoint("flaky", &receiver.url("/"), &extra)], "").await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            daemon
                .send("flaky", "event", &format!(r#"{{"n":{i}}}"#))
                .await,
        );
    }
    receiver.wait_for(3, WAIT).await;
    let view = wait_endpoint_state(&daemon, "flaky", "circuit_open").await;
    let opened = Instant::now();
    assert_eq!(view["circuit"]["state"], "open");
    assert_eq!(view["circuit"]["consecutive_failures"], 3);
    // While open, messages wait as held with their attempts untouched.
    let sent_when_open = receiver.count();
    assert_eq!(
        sent_when_open, 3,
        "concurrency 1: nothing else was in flight"
    );
    let (ok, stdout, _) = daemon.cli(&["status"]);
    assert!(ok);
    assert!(stdout.contains("flaky"), "{stdout}");

    // The probe comes after the cooldown, alone; it fails, so the circuit opens again.
    receiver.wait_for(4, WAIT).await;
    assert!(
        opened.elapsed() >= Duration::from_millis(1_000),
        "the probe came {:?} after opening, before the cooldown",
        opened.elapsed()
    );
    wait_endpoint_state(&daemon, "flaky", "circuit_open").await;
    assert_eq!(receiver.count(), 4, "exactly one probe per cooldown");

    // The receiver recovers: the next probe succeeds, the circuit closes, every message is delivered.
    healthy.store(true, Ordering::SeqCst);
    for id in &ids {
        daemon.wait_state(id, "delivered", WAIT).await;
    }
    let view = show(&daemon, "flaky");
    assert_eq!(view["state"], "active");
    assert_eq!(view["circuit"]["state"], "closed");
    assert_eq!(view["circuit"]["consecutive_failures"], 0);
    let total_attempts: usize = {
        let mut total = 0;
        for id in &ids {
            total += daemon.message(id).await.attempts.len();
        }
        total
    };
    assert_eq!(
        total_attempts,
        receiver.count(),
        "every request is one recorded attempt"
    );
    assert!(
        total_attempts <= 4 + 4 + 1,
        "attempts were spent while the circuit was open: {total_attempts}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_the_endpoint_keeps_messages_and_enable_resumes() {
    let back = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&back);
    let receiver = TestReceiver::start(move |_| {
        if flag.load(Ordering::SeqCst) {
            Reply::ok()
        } else {
            Reply::status(410)
        }
    })
    .await;
    let extra = format!("max_attempts = 2\nconcurrency = 1\n{FAST_RETRY}");
    let mut daemon = TestDaemon::start(&[endpoint("gone", &receiver.url("/"), &extra)], "").await;
    let first = daemon.send("gone", "event", r#"{"n":1}"#).await;
    receiver.wait_for(1, WAIT).await;
    let view = wait_endpoint_state(&daemon, "gone", "disabled").await;
    assert!(
        view["state_reason"].as_str().unwrap().contains("410"),
        "{view}"
    );
    let second = daemon.send("gone", "event", r#"{"n":2}"#).await;
    for id in [&first, &second] {
        let message = daemon.wait_state(id, "held", WAIT).await;
        assert_eq!(message.state.as_str(), "held");
    }
    assert_eq!(receiver.count(), 1, "nothing sent while disabled");

    // Disabled survives a restart.
    daemon.terminate();
    daemon.spawn().await;
    assert_eq!(show(&daemon, "gone")["state"], "disabled");

    back.store(true, Ordering::SeqCst);
    let (ok, stdout, stderr) = daemon.cli(&["endpoints", "enable", "gone"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("active"), "{stdout}");
    for id in [&first, &second] {
        daemon.wait_state(id, "delivered", WAIT).await;
    }
    assert_eq!(receiver.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_messages_across_a_restart_and_resume_delivers_them() {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let mut daemon =
        TestDaemon::start(&[endpoint("paused", &receiver.url("/"), FAST_RETRY)], "").await;
    let (ok, stdout, stderr) = daemon.cli(&["endpoints", "pause", "paused", "--json"]);
    assert!(ok, "{stderr}");
    let view: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(view["state"], "paused");
    let id = daemon.send("paused", "event", r#"{"n":1}"#).await;
    let message = daemon.wait_state(&id, "held", WAIT).await;
    assert!(message.attempts.is_empty());

    daemon.terminate();
    daemon.spawn().await;
    assert_eq!(show(&daemon, "paused")["state"], "paused");
    assert_eq!(daemon.message(&id).await.state.as_str(), "held");
    assert_eq!(receiver.count(), 0);

    let (ok, _, stderr) = daemon.cli(&["endpoints", "resume", "paused"]);
    assert!(ok, "{stderr}");
    let delivered = daemon.wait_state(&id, "delivered", WAIT).await;
    assert_eq!(delivered.attempts.len(), 1);
    assert_eq!(receiver.count(), 1);

    let (ok, _, stderr) = daemon.cli(&["endpoints", "pause", "nope"]);
    assert!(!ok);
    assert!(stderr.contains("nope"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_spaces_requests_even_with_spare_concurrency() {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let extra = format!("rate_limit = 20\nconcurrency = 8\n{FAST_RETRY}");
    let daemon = TestDaemon::start(&[endpoint("limited", &receiver.url("/"), &extra)], "").await;
    let (ok, _, stderr) = daemon.cli(&["endpoints", "pause", "limited"]);
    assert!(ok, "{stderr}");
    const N: usize = 30;
    for i in 0..N {
        daemon
            .send("limited", "event", &format!(r#"{{"n":{i}}}"#))
            .await;
    }
    // A full backlog at once: only the limit may hold it back.
    let (ok, _, stderr) = daemon.cli(&["endpoints", "resume", "limited"]);
    assert!(ok, "{stderr}");
    receiver.wait_for(N, WAIT).await;
    let mut arrivals: Vec<Instant> = receiver.received().iter().map(|r| r.at).collect();
    arrivals.sort();
    // 20/s is one request per 50 ms: any 10 consecutive gaps span at least ~500 ms. The slack covers the
    // variation in how long a request takes to travel, not a burst.
    for window in arrivals.windows(11) {
        let span = window[10] - window[0];
        assert!(
            span >= Duration::from_millis(450),
            "11 requests within {span:?} at 20/s"
        );
    }
    let span = arrivals[N - 1] - arrivals[0];
    assert!(
        span >= Duration::from_millis(50 * (N as u64 - 1) - 50),
        "{span:?}"
    );
}
