//! Access tokens (seed 000): once one exists, every socket request needs it.

use crate::harness::{FAST_RETRY, Reply, TestDaemon, TestReceiver, endpoint};

async fn status_of(daemon: &TestDaemon, token: Option<&str>) -> u16 {
    let mut request = daemon.raw().get("http://hookd/v1/endpoints/ok");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_a_token_exists_every_request_must_carry_it() {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let daemon = TestDaemon::start(&[endpoint("ok", &receiver.url("/"), FAST_RETRY)], "").await;
    assert_eq!(
        status_of(&daemon, None).await,
        200,
        "open while no token exists"
    );

    let (ok, token, stderr) = daemon.cli(&["tokens", "create", "ops"]);
    assert!(ok, "{stderr}");
    let token = token.trim().to_owned();
    assert!(token.starts_with("hkd_") && token.len() > 20, "{token}");

    assert_eq!(status_of(&daemon, None).await, 401);
    assert_eq!(status_of(&daemon, Some("hkd_wrong")).await, 401);
    assert_eq!(status_of(&daemon, Some(&token)).await, 200);
    let (ok, _, stderr) = daemon.cli(&["endpoints", "show", "ok"]);
    assert!(!ok && stderr.contains("access token"), "{stderr}");
    let (ok, stdout, stderr) = daemon.cli(&["tokens", "list", "--token", &token]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("ops") && !stdout.contains(&token),
        "the token is never shown again: {stdout}"
    );

    let (ok, _, stderr) = daemon.cli(&["tokens", "revoke", "ops", "--token", &token]);
    assert!(ok, "{stderr}");
    assert_eq!(
        status_of(&daemon, Some(&token)).await,
        200,
        "no token left: open again"
    );
    assert_eq!(status_of(&daemon, None).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_token_closes_the_api_before_any_token_exists() {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let daemon = TestDaemon::start(
        &[endpoint("ok", &receiver.url("/"), FAST_RETRY)],
        "[api]\nrequire_token = true",
    )
    .await;
    assert_eq!(status_of(&daemon, None).await, 401);
    let response = daemon
        .raw()
        .get("http://hookd/v1/health")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_and_revokes_leave_memory_as_the_store() {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let daemon = TestDaemon::start(&[endpoint("ok", &receiver.url("/"), FAST_RETRY)], "").await;
    let (ok, admin, stderr) = daemon.cli(&["tokens", "create", "admin"]);
    assert!(ok, "{stderr}");
    let admin = admin.trim().to_owned();
    let client = daemon.client().with_token(Some(admin.clone()));
    let mut first = Vec::new();
    for i in 0..16 {
        first.push(
            client
                .create_token(&format!("t{i}"), None)
                .await
                .unwrap()
                .token,
        );
    }
    // Revoke every token of the first round while a second round is created, all at once.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            client.revoke_token(&format!("t{i}")).await.unwrap();
            client
                .create_token(&format!("n{i}"), None)
                .await
                .unwrap()
                .token
        }));
    }
    let mut second = Vec::new();
    for task in tasks {
        second.push(task.await.unwrap());
    }
    for revoked in &first {
        assert_eq!(
            status_of(&daemon, Some(revoked)).await,
            401,
            "a revoked token stays revoked"
        );
    }
    for live in &second {
        assert_eq!(status_of(&daemon, Some(live)).await, 200);
    }
}
