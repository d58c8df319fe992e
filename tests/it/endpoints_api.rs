//! Endpoints as data: created, changed, reset and deleted through the socket API and the CLI, kept across
//! restarts (and a SIGKILL), with access tokens scoped to one endpoint (seeds 000, 002, 004).

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{FAST_RETRY, Reply, TestDaemon, TestReceiver, endpoint, eventually};

const WAIT: Duration = Duration::from_secs(30);

/// Sends a JSON request with an optional token; answers (status, body).
async fn call(
    daemon: &TestDaemon,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (u16, Value) {
    let mut request = daemon.raw().request(method, format!("http://hookd{path}"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn post(daemon: &TestDaemon, path: &str, body: Value) -> (u16, Value) {
    call(daemon, reqwest::Method::POST, path, Some(body), None).await
}

async fn patch(daemon: &TestDaemon, name: &str, body: Value) -> (u16, Value) {
    let path = format!("/v1/endpoints/{name}");
    call(daemon, reqwest::Method::PATCH, &path, Some(body), None).await
}

async fn get(daemon: &TestDaemon, path: &str) -> (u16, Value) {
    call(daemon, reqwest::Method::GET, path, None, None).await
}

async fn delete(daemon: &TestDaemon, path: &str) -> (u16, Value) {
    call(daemon, reqwest::Method::DELETE, path, None, None).await
}

fn authorization(received: &crate::harness::Received) -> Option<&str> {
    received
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
}

fn code(answer: &Value) -> &str {
    answer["error"]["code"].as_str().unwrap_or("")
}

fn message(answer: &Value) -> &str {
    answer["error"]["message"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_created_through_the_api_delivers_changes_and_is_deleted_across_restarts() {
    let first = TestReceiver::start(|_| Reply::ok()).await;
    let second = TestReceiver::start(|_| Reply::ok()).await;
    // No [[endpoints]] at all; the json format's defaults give fast retries.
    let defaults = format!("[defaults.json]\n{FAST_RETRY}\nmax_attempts = 3\n");
    let mut daemon = TestDaemon::start(&[], &defaults).await;

    let created = json!({"name": "acme", "format": "json", "url": first.url("/hooks"),
        "auth": {"type": "bearer", "token": "first-s3cret"}});
    let (status, view) = post(&daemon, "/v1/endpoints", created.clone()).await;
    assert_eq!(status, 201, "{view}");
    assert_eq!(view["origin"], "api");
    assert_eq!(
        view["max_attempts"], 3,
        "the format's defaults apply: {view}"
    );
    assert!(!view.to_string().contains("first-s3cret"), "{view}");

    // Bad input: a clear error naming the key, and nothing changes.
    let (status, answer) = post(&daemon, "/v1/endpoints", created).await;
    assert_eq!((status, code(&answer)), (409, "exists"), "{answer}");
    for (body, key) in [
        (
            json!({"name": "b", "format": "json", "url": "ftp://x/"}),
            "url",
        ),
        (
            json!({"name": "b", "format": "yaml", "url": first.url("/")}),
            "format",
        ),
        (json!({"name": "b", "url": first.url("/")}), "format"),
        (
            json!({"name": "b", "format": "json", "url": "http://10.1.2.3/"}),
            "url",
        ),
        (
            json!({"name": "b", "format": "json", "url": first.url("/"), "timeout_ms": "soon"}),
            "timeout_ms",
        ),
        (
            json!({"name": "b", "format": "json", "url": first.url("/"), "colour": "red"}),
            "colour",
        ),
        (
            json!({"name": "b c", "format": "json", "url": first.url("/")}),
            "name",
        ),
    ] {
        let (status, answer) = post(&daemon, "/v1/endpoints", body.clone()).await;
        assert_eq!(
            (status, code(&answer)),
            (422, "invalid"),
            "{body}: {answer}"
        );
        assert!(message(&answer).contains(key), "{body}: {answer}");
    }
    assert_eq!(get(&daemon, "/v1/endpoints/b").await.0, 404);

    let id = daemon.send("acme", "order.created", "{}").await;
    daemon.wait_state(&id, "delivered", WAIT).await;
    assert_eq!(
        authorization(&first.received()[0]),
        Some("Bearer first-s3cret")
    );

    // Any key changes at run time, credentials included; the next attempt uses them.
    let (status, view) = patch(
        &daemon,
        "acme",
        json!({"url": second.url("/v2"), "auth": {"type": "basic", "username": "u", "password": "p2"},
               "concurrency": 2, "max_attempts": null}),
    )
    .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["concurrency"], 2);
    let (status, answer) = patch(&daemon, "acme", json!({"format": "xml"})).await;
    assert_eq!((status, code(&answer)), (422, "invalid"), "{answer}");
    let id = daemon.send("acme", "order.created", "{}").await;
    daemon.wait_state(&id, "delivered", WAIT).await;
    assert_eq!(second.count(), 1, "the new URL is used at once");
    assert_eq!(authorization(&second.received()[0]), Some("Basic dTpwMg=="));

    // A restart keeps the endpoint exactly as changed.
    daemon.terminate();
    daemon.spawn().await;
    let (status, view) = get(&daemon, "/v1/endpoints/acme").await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["concurrency"], 2);
    assert_eq!(view["max_attempts"], 3, "null went back to the default");
    assert!(view["url"].as_str().unwrap().ends_with("/v2"), "{view}");

    // Not deleted while messages wait, unless told what becomes of them.
    daemon
        .client()
        .control_endpoint("acme", "pause")
        .await
        .unwrap();
    let held = daemon.send("acme", "order.created", "{}").await;
    let (status, answer) = delete(&daemon, "/v1/endpoints/acme").await;
    assert_eq!((status, code(&answer)), (409, "not_empty"), "{answer}");
    let (status, answer) = delete(&daemon, "/v1/endpoints/acme?messages=dead-letter").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["retired"], 1);
    let dead = daemon.message(&held).await;
    assert_eq!(dead.state.to_string(), "dead");
    assert_eq!(dead.dead_reason.as_deref(), Some("endpoint deleted"));
    let (status, answer) = post(
        &daemon,
        "/v1/messages",
        json!({"endpoint": "acme", "type": "t", "payload": {}}),
    )
    .await;
    assert_eq!(
        (status, code(&answer)),
        (404, "unknown_endpoint"),
        "{answer}"
    );

    // Gone after a restart too; its dead letters stay listable and purgeable.
    daemon.terminate();
    daemon.spawn().await;
    assert_eq!(get(&daemon, "/v1/endpoints/acme").await.0, 404);
    let (status, list) = get(&daemon, "/v1/dlq?endpoint=acme").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["items"][0]["id"], held.as_str(), "{list}");
    let purged = daemon
        .client()
        .dlq_purge(&hookd::api::wire::DlqSelection {
            ids: vec![held.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(purged.purged, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_endpoint_shows_its_run_time_overrides_and_reset_drops_them() {
    let file = TestReceiver::start(|_| Reply::ok()).await;
    let edited = TestReceiver::start(|_| Reply::ok()).await;
    let runtime = TestReceiver::start(|_| Reply::ok()).await;
    let mut daemon = TestDaemon::start(&[endpoint("hook", &file.url("/v1"), FAST_RETRY)], "").await;

    let (ok, stdout, stderr) = daemon.cli(&[
        "endpoints",
        "set",
        "hook",
        "--url",
        &runtime.url("/v2"),
        "--set",
        "rate_limit=50",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("overrides:") && stdout.contains("url"),
        "{stdout}"
    );
    let (_, view) = get(&daemon, "/v1/endpoints/hook").await;
    assert_eq!(view["origin"], "config");
    assert_eq!(view["overrides"], json!(["rate_limit", "url"]), "{view}");

    // The file changes; the override still wins, and the start-up log says so.
    daemon.rewrite_config(&[endpoint("hook", &edited.url("/v3"), FAST_RETRY)]);
    daemon.terminate();
    daemon.spawn().await;
    assert!(
        daemon.log().contains("run-time overrides"),
        "{}",
        daemon.log()
    );
    let (_, view) = get(&daemon, "/v1/endpoints/hook").await;
    assert!(view["url"].as_str().unwrap().ends_with("/v2"), "{view}");

    let (status, answer) = delete(&daemon, "/v1/endpoints/hook").await;
    assert_eq!(
        (status, code(&answer)),
        (409, "declared_in_config"),
        "{answer}"
    );

    let (ok, stdout, stderr) = daemon.cli(&["endpoints", "reset", "hook", "--json"]);
    assert!(ok, "{stderr}");
    let view: Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        view.get("overrides").is_none_or(|o| o == &json!([])),
        "{view}"
    );
    assert!(view["url"].as_str().unwrap().ends_with("/v3"), "{view}");
    let id = daemon.send("hook", "event", "{}").await;
    daemon.wait_state(&id, "delivered", WAIT).await;
    assert_eq!(edited.count(), 1, "the file's URL applies again");
    assert_eq!(runtime.count(), 0);

    // Reset survives a restart; an API endpoint has nothing to reset to.
    daemon.terminate();
    daemon.spawn().await;
    let (_, view) = get(&daemon, "/v1/endpoints/hook").await;
    assert!(view["url"].as_str().unwrap().ends_with("/v3"), "{view}");
    let (ok, _, stderr) = daemon.cli(&[
        "endpoints",
        "create",
        "made",
        "--format",
        "json",
        "--url",
        &file.url("/m"),
    ]);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = daemon.cli(&["endpoints", "reset", "made"]);
    assert!(!ok && stderr.contains("no config-file table"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_lists_and_deletes_endpoints_and_reads_secrets_from_a_file() {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let mut daemon = TestDaemon::start(&[], "").await;
    let secret_file = daemon.config_path.with_file_name("token.txt");
    std::fs::write(&secret_file, "from-a-file\n").unwrap();
    let at_file = format!("@{}", secret_file.display());
    for name in ["shop-1", "shop-2", "other"] {
        let (ok, stdout, stderr) = daemon.cli(&[
            "endpoints",
            "create",
            name,
            "--format",
            "json",
            "--url",
            &receiver.url("/"),
            "--auth-bearer",
            &at_file,
            "--set",
            "retry.initial_ms=50",
            "--set",
            "retry.jitter=0",
        ]);
        assert!(ok, "{stderr}");
        assert!(!stdout.contains("from-a-file"), "never echoed: {stdout}");
    }
    let id = daemon.send("shop-2", "event", "{}").await;
    daemon.wait_state(&id, "delivered", WAIT).await;
    assert_eq!(
        authorization(&receiver.received()[0]),
        Some("Bearer from-a-file")
    );

    let (ok, stdout, stderr) = daemon.cli(&[
        "endpoints",
        "list",
        "--prefix",
        "shop-",
        "--limit",
        "1",
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let page: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(page["endpoints"][0]["name"], "shop-1");
    assert_eq!(page["next"], "shop-1");
    let (ok, stdout, _) = daemon.cli(&[
        "endpoints",
        "list",
        "--prefix",
        "shop-",
        "--after",
        "shop-1",
        "--json",
    ]);
    assert!(ok);
    let page: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(page["endpoints"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["endpoints"][0]["name"], "shop-2");
    assert!(page.get("next").is_none(), "{page}");
    let (status, answer) = get(&daemon, "/v1/endpoints?limit=0").await;
    assert_eq!((status, code(&answer)), (422, "invalid"), "{answer}");

    let (ok, stdout, stderr) = daemon.cli(&["endpoints", "delete", "other"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("deleted other"), "{stdout}");
    let (ok, _, stderr) = daemon.cli(&["endpoints", "show", "other"]);
    assert!(!ok && stderr.contains("other"), "{stderr}");

    // A SIGKILL right after a 201 keeps the endpoint.
    let (status, _) = post(
        &daemon,
        "/v1/endpoints",
        json!({"name": "late", "format": "json", "url": receiver.url("/late")}),
    )
    .await;
    assert_eq!(status, 201);
    daemon.kill();
    daemon.spawn().await;
    assert_eq!(get(&daemon, "/v1/endpoints/late").await.0, 200);
    assert_eq!(get(&daemon, "/v1/endpoints/other").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_scoped_to_an_endpoint_reaches_that_endpoint_and_nothing_else() {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let daemon = TestDaemon::start(
        &[
            endpoint("acme", &receiver.url("/acme"), FAST_RETRY),
            endpoint("other", &receiver.url("/other"), FAST_RETRY),
        ],
        "",
    )
    .await;
    let own = daemon.send("acme", "event", "{}").await;
    let foreign = daemon.send("other", "event", "{}").await;
    daemon.wait_state(&own, "delivered", WAIT).await;
    daemon.wait_state(&foreign, "delivered", WAIT).await;

    // The first token must be an admin token: a scoped one alone would lock everyone else out.
    let (status, answer) = post(
        &daemon,
        "/v1/tokens",
        json!({"name": "early", "endpoint": "acme"}),
    )
    .await;
    assert_eq!((status, code(&answer)), (409, "no_admin_token"), "{answer}");
    let (ok, admin, stderr) = daemon.cli(&["tokens", "create", "ops"]);
    assert!(ok, "{stderr}");
    let admin = admin.trim().to_owned();
    let (status, created) = call(
        &daemon,
        reqwest::Method::POST,
        "/v1/tokens",
        Some(json!({"name": "acme-token", "endpoint": "acme"})),
        Some(&admin),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let scoped = created["token"].as_str().unwrap().to_owned();
    let (status, answer) = call(
        &daemon,
        reqwest::Method::POST,
        "/v1/tokens",
        Some(json!({"name": "ghost", "endpoint": "nope"})),
        Some(&admin),
    )
    .await;
    assert_eq!(
        (status, code(&answer)),
        (404, "unknown_endpoint"),
        "{answer}"
    );

    use reqwest::Method as M;
    let allowed = [
        (M::GET, "/v1/endpoints/acme".to_owned(), None),
        (
            M::PATCH,
            "/v1/endpoints/acme".to_owned(),
            Some(json!({"timeout_ms": 4000})),
        ),
        (
            M::PUT,
            "/v1/endpoints/acme".to_owned(),
            Some(json!({"max_attempts": 4})),
        ),
        (M::GET, format!("/v1/messages/{own}"), None),
        (M::GET, "/v1/dlq?endpoint=acme".to_owned(), None),
    ];
    for (method, path, body) in allowed {
        let (status, answer) = call(&daemon, method.clone(), &path, body, Some(&scoped)).await;
        assert_eq!(status, 200, "{method} {path}: {answer}");
    }
    let forbidden = [
        (M::GET, "/v1/endpoints/other".to_owned(), None),
        (
            M::PATCH,
            "/v1/endpoints/other".to_owned(),
            Some(json!({"timeout_ms": 4000})),
        ),
        (M::GET, "/v1/endpoints".to_owned(), None),
        (M::DELETE, "/v1/endpoints/acme".to_owned(), None),
        (M::POST, "/v1/endpoints/acme/pause".to_owned(), None),
        (M::GET, format!("/v1/messages/{foreign}"), None),
        (M::GET, "/v1/dlq".to_owned(), None),
        (
            M::POST,
            "/v1/messages".to_owned(),
            Some(json!({"endpoint": "acme", "type": "t", "payload": {}})),
        ),
        (M::GET, "/v1/tokens".to_owned(), None),
        (M::GET, "/v1/stats".to_owned(), None),
    ];
    for (method, path, body) in forbidden {
        let (status, answer) = call(&daemon, method.clone(), &path, body, Some(&scoped)).await;
        assert_eq!(
            (status, code(&answer)),
            (403, "forbidden"),
            "{method} {path}: {answer}"
        );
    }
    let (status, _) = call(
        &daemon,
        M::GET,
        "/v1/endpoints/acme",
        None,
        Some("hkd_wrong"),
    )
    .await;
    assert_eq!(status, 401);
    let (_, view) = call(&daemon, M::GET, "/v1/endpoints/acme", None, Some(&admin)).await;
    assert_eq!(view["timeout_ms"], 4000, "the scoped change took: {view}");
    assert_eq!(view["max_attempts"], 4, "{view}");

    // Deleting an endpoint revokes its scoped tokens: they do not reach a new endpoint of the same name.
    let temp = json!({"name": "temp", "format": "json", "url": receiver.url("/temp")});
    let (status, _) = call(
        &daemon,
        M::POST,
        "/v1/endpoints",
        Some(temp.clone()),
        Some(&admin),
    )
    .await;
    assert_eq!(status, 201);
    let (_, created) = call(
        &daemon,
        M::POST,
        "/v1/tokens",
        Some(json!({"name": "temp-token", "endpoint": "temp"})),
        Some(&admin),
    )
    .await;
    let temp_token = created["token"].as_str().unwrap().to_owned();
    let (status, _) = call(&daemon, M::DELETE, "/v1/endpoints/temp", None, Some(&admin)).await;
    assert_eq!(status, 200);
    let (status, _) = call(&daemon, M::POST, "/v1/endpoints", Some(temp), Some(&admin)).await;
    assert_eq!(status, 201);
    let (status, _) = call(
        &daemon,
        M::GET,
        "/v1/endpoints/temp",
        None,
        Some(&temp_token),
    )
    .await;
    assert_eq!(status, 401, "the deleted endpoint's token was revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_racing_a_410_disable_loses_neither_change() {
    let receiver = TestReceiver::start(|_| Reply::status(410)).await;
    let mut daemon = TestDaemon::start(&[], "").await;
    let (status, _) = post(
        &daemon,
        "/v1/endpoints",
        json!({"name": "gone", "format": "json", "url": receiver.url("/"), "retry": {"initial_ms": 50, "jitter": 0.0}}),
    )
    .await;
    assert_eq!(status, 201);
    // The 410 arrives while PATCHes stream in; each PATCH sets a new timeout.
    daemon.send("gone", "event", "{}").await;
    let mut last = 0;
    for timeout in 1000..1040u64 {
        let (status, view) = patch(&daemon, "gone", json!({"timeout_ms": timeout})).await;
        assert_eq!(status, 200, "{view}");
        last = timeout;
    }
    let disabled = eventually(WAIT, || async {
        let (_, view) = get(&daemon, "/v1/endpoints/gone").await;
        (view["state"] == "disabled").then_some(view)
    })
    .await
    .expect("the 410 disabled the endpoint");
    assert_eq!(disabled["timeout_ms"], last, "{disabled}");
    daemon.terminate();
    daemon.spawn().await;
    let (_, view) = get(&daemon, "/v1/endpoints/gone").await;
    assert_eq!(view["state"], "disabled", "{view}");
    assert_eq!(view["timeout_ms"], last, "{view}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dlr_endpoint_created_through_the_api_is_verified_at_creation() {
    // Seed 002: "On creating a webhook, we request you to verify."
    let receiver = TestReceiver::start(|r| {
        let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        match body.get("challenge") {
            Some(challenge) => Reply {
                body: json!({"validation_key": body["validation_key"], "challenge": challenge})
                    .to_string(),
                ..Reply::ok()
            }
            .header("content-type", "application/json"),
            None => Reply::ok(),
        }
    })
    .await;
    let daemon = TestDaemon::start(&[], "").await;
    let (status, view) = post(
        &daemon,
        "/v1/endpoints",
        json!({"name": "dlr", "format": "dlr-json", "url": receiver.url("/dlr"),
               "auth": {"type": "bearer", "token": "t"}, "verification": {"validation_key": "k1"}}),
    )
    .await;
    assert_eq!(status, 201, "{view}");
    // No message sent: the handshake alone reaches the receiver, and the endpoint turns active.
    receiver.wait_for(1, WAIT).await;
    let active = eventually(WAIT, || async {
        let (_, view) = get(&daemon, "/v1/endpoints/dlr").await;
        (view["state"] == "active").then_some(view)
    })
    .await;
    assert!(active.is_some(), "verified without a message");
    let handshake: Value = serde_json::from_slice(&receiver.received()[0].body).unwrap();
    assert_eq!(handshake["validation_key"], "k1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_lane_takes_new_concurrency_and_breaker_settings_at_once() {
    // Every request hangs: with concurrency 1 only one would ever reach the receiver.
    let hanging = TestReceiver::start(|_| Reply::hang()).await;
    let failing = TestReceiver::start(|_| Reply::status(500)).await;
    let daemon = TestDaemon::start(&[], "").await;
    for (name, url) in [("slow", hanging.url("/")), ("failing", failing.url("/"))] {
        let (status, view) = post(
            &daemon,
            "/v1/endpoints",
            json!({"name": name, "format": "json", "url": url, "concurrency": 1, "timeout_ms": 60000,
                   "max_attempts": 3, "retry": {"initial_ms": 50, "max_ms": 50, "jitter": 0.0},
                   "circuit_breaker": {"failure_threshold": 10, "cooldown": "1h"}}),
        )
        .await;
        assert_eq!(status, 201, "{view}");
        // Paused with messages queued: the lane is running and waiting.
        daemon
            .client()
            .control_endpoint(name, "pause")
            .await
            .unwrap();
    }
    for _ in 0..3 {
        daemon.send("slow", "event", "{}").await;
    }
    let failing_id = daemon.send("failing", "event", "{}").await;

    let (status, view) = patch(&daemon, "slow", json!({"concurrency": 3})).await;
    assert_eq!((status, &view["concurrency"]), (200, &json!(3)), "{view}");
    let (status, _) = patch(
        &daemon,
        "failing",
        json!({"circuit_breaker": {"failure_threshold": 2, "cooldown": "1h"}}),
    )
    .await;
    assert_eq!(status, 200);
    daemon
        .client()
        .control_endpoint("slow", "resume")
        .await
        .unwrap();
    daemon
        .client()
        .control_endpoint("failing", "resume")
        .await
        .unwrap();

    hanging.wait_for(3, WAIT).await;
    let open = eventually(WAIT, || async {
        let (_, view) = get(&daemon, "/v1/endpoints/failing").await;
        (view["state"] == "circuit_open").then_some(view)
    })
    .await;
    assert!(
        open.is_some(),
        "the circuit opened after 2 failures, the new threshold"
    );
    assert_eq!(failing.count(), 2);
    assert_ne!(daemon.message(&failing_id).await.state.to_string(), "dead");
}
