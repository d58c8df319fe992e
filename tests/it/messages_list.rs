//! Finding messages in any state (`GET /v1/messages`, `hookd msg list`), an operator's retry and resend
//! (`hookd msg retry`, `hookd msg resend`), and `dlq list --until --type`.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{FAST_RETRY, Reply, TestDaemon, TestReceiver, endpoint, eventually};

const WAIT: Duration = Duration::from_secs(30);

/// `GET path` on the socket: (status, JSON body).
async fn get(daemon: &TestDaemon, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = daemon.raw().get(format!("http://hookd{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn post(daemon: &TestDaemon, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = daemon.raw().post(format!("http://hookd{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn ids(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

/// `hookd msg list ARGS --json`, parsed.
fn cli_list(daemon: &TestDaemon, args: &[&str]) -> Value {
    let mut all = vec!["msg", "list", "--json"];
    all.extend_from_slice(args);
    let (ok, stdout, stderr) = daemon.cli(&all);
    assert!(ok, "{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msg_list_finds_messages_in_every_state_by_filter_in_id_order_and_pages() {
    let ok = TestReceiver::start(|_| Reply::ok()).await;
    let refusing = TestReceiver::start(|_| Reply::status(400)).await;
    let daemon = TestDaemon::start(
        &[
            endpoint("ok", &ok.url("/"), FAST_RETRY),
            endpoint("refusing", &refusing.url("/"), FAST_RETRY),
            endpoint("parked", &ok.url("/"), FAST_RETRY),
        ],
        "",
    )
    .await;
    let delivered = daemon.send("ok", "order.created", r#"{"n":1}"#).await;
    let dead = daemon.send("refusing", "order.created", r#"{"n":2}"#).await;
    daemon.wait_state(&delivered, "delivered", WAIT).await;
    daemon.wait_state(&dead, "dead", WAIT).await;
    let (ok_pause, _, stderr) = daemon.cli(&["endpoints", "pause", "parked"]);
    assert!(ok_pause, "{stderr}");
    let mut held = Vec::new();
    for n in 0..5 {
        let kind = if n % 2 == 0 {
            "order.created"
        } else {
            "order.paid"
        };
        held.push(
            daemon
                .send("parked", kind, &format!(r#"{{"n":{n}}}"#))
                .await,
        );
    }

    // Every message, in id order (enqueue order).
    let all = cli_list(&daemon, &[]);
    let mut expected = vec![delivered.clone(), dead.clone()];
    expected.extend(held.iter().cloned());
    assert_eq!(ids(&all), expected, "{all}");
    assert!(all.get("next").is_none(), "{all}");
    let first = &all["items"][0];
    assert_eq!(first["endpoint"], "ok");
    assert_eq!(first["type"], "order.created");
    assert_eq!(first["state"], "delivered");
    assert_eq!(first["attempts"], 1);
    assert!(first["created_at"].is_u64());
    assert!(first.get("next_attempt_at").is_none(), "{first}");
    assert_eq!(all["items"][2]["state"], "held");
    assert!(all["items"][2]["next_attempt_at"].is_u64());

    // By state.
    assert_eq!(
        ids(&cli_list(&daemon, &["--state", "delivered"])),
        [delivered.as_str()]
    );
    assert_eq!(
        ids(&cli_list(&daemon, &["--state", "dead"])),
        [dead.as_str()]
    );
    assert_eq!(ids(&cli_list(&daemon, &["--state", "held"])), held);
    assert!(ids(&cli_list(&daemon, &["--state", "queued"])).is_empty());
    assert!(ids(&cli_list(&daemon, &["--state", "in_flight"])).is_empty());
    // By endpoint and state, and by type.
    let (status, list) = get(&daemon, "/v1/messages?endpoint=parked&state=held", None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(ids(&list), held);
    let paid = cli_list(&daemon, &["--endpoint", "parked", "--type", "order.paid"]);
    assert_eq!(ids(&paid), [held[1].clone(), held[3].clone()]);
    let (_, paid_held) = get(
        &daemon,
        "/v1/messages?endpoint=parked&state=held&type=order.paid",
        None,
    )
    .await;
    assert_eq!(ids(&paid_held), [held[1].clone(), held[3].clone()]);

    // Pages: `limit`, then `after` the `next` cursor, until no `next`.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = "/v1/messages?endpoint=parked&state=held&limit=2".to_owned();
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let (status, page) = get(&daemon, &path, None).await;
        assert_eq!(status, 200, "{page}");
        assert!(page["items"].as_array().unwrap().len() <= 2);
        seen.extend(ids(&page));
        match page.get("next").and_then(Value::as_str) {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, held);
    // The CLI says where the next page starts.
    let (ok_list, stdout, stderr) =
        daemon.cli(&["msg", "list", "--endpoint", "parked", "--limit", "2"]);
    assert!(ok_list, "{stderr}");
    assert!(
        stdout.contains("STATE") && stdout.contains("held"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("more: --after {}", held[1])),
        "{stdout}"
    );

    // Time windows by enqueue time, as Unix ms and as RFC 3339.
    let created = |i: usize| all["items"][i]["created_at"].as_u64().unwrap();
    let (_, none_yet) = get(&daemon, &format!("/v1/messages?until={}", created(0)), None).await;
    assert!(ids(&none_yet).is_empty(), "{none_yet}");
    let (_, from_now) = get(&daemon, "/v1/messages?since=2999-01-01T00:00:00Z", None).await;
    assert!(ids(&from_now).is_empty(), "{from_now}");
    let (_, everything) = get(&daemon, "/v1/messages?since=2000-01-01T00:00:00Z", None).await;
    assert_eq!(ids(&everything), expected);
    let (_, windowed) = get(
        &daemon,
        &format!(
            "/v1/messages?since={}&until={}",
            created(0),
            created(6) + 60_000
        ),
        None,
    )
    .await;
    assert_eq!(ids(&windowed), expected);
    let recent = cli_list(&daemon, &["--since", "1h"]);
    assert_eq!(ids(&recent), expected);

    // Refusals: limit out of range, an unknown endpoint, an unknown state, a time that is neither.
    for limit in ["0", "1001"] {
        let (status, body) = get(&daemon, &format!("/v1/messages?limit={limit}"), None).await;
        assert_eq!(status, 422, "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("limit"),
            "{body}"
        );
    }
    let (status, body) = get(&daemon, "/v1/messages?endpoint=nope", None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "unknown_endpoint", "{body}");
    let (status, body) = get(&daemon, "/v1/messages?state=lost", None).await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = get(&daemon, "/v1/messages?since=yesterday", None).await;
    assert_eq!(status, 422, "{body}");
    let (code, _, stderr) = daemon.cli_code(&["msg", "list", "--endpoint", "nope"]);
    assert_eq!(code, Some(4), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msg_retry_makes_a_waiting_message_due_now_and_resend_sends_a_delivered_one_again() {
    // The first attempt of each message fails; the retry after it is due only in an hour.
    let receiver = TestReceiver::start(|r| match r.nth_for_id {
        1 => Reply::status(503),
        _ => Reply::ok(),
    })
    .await;
    let slow_retry =
        "retry = { initial_ms = 3600000, max_ms = 3600000, multiplier = 2.0, jitter = 0.0 }";
    let daemon = TestDaemon::start(&[endpoint("slow", &receiver.url("/"), slow_retry)], "").await;
    let id = daemon.send("slow", "event", r#"{"n":1}"#).await;
    let waiting = eventually(WAIT, || {
        let client = daemon.client();
        let id = id.clone();
        async move {
            let view = client.message(&id).await.ok()?;
            (view.state.as_str() == "queued" && view.attempts.len() == 1).then_some(view)
        }
    })
    .await
    .expect("the first attempt failed and the message waits");
    assert!(waiting.next_attempt_at.unwrap() > waiting.created_at + 3_000_000);

    // Resend applies only to delivered messages: 409 with the way to go.
    let (status, body) = post(&daemon, &format!("/v1/messages/{id}/resend"), None).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("msg retry"),
        "{body}"
    );

    // The operator's retry: due now, no attempt added by the retry itself; then delivered.
    let (ok, stdout, stderr) = daemon.cli(&["msg", "retry", &id]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("due now"), "{stdout}");
    let view = daemon.wait_state(&id, "delivered", WAIT).await;
    assert_eq!(
        view.attempts.len(),
        2,
        "one failed attempt, one delivered: {view:?}"
    );
    assert_eq!(receiver.requests_for(&id).len(), 2);

    // Retry of a delivered message: 409, pointing at resend.
    let (code, _, stderr) = daemon.cli_code(&["msg", "retry", &id]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("msg resend"), "{stderr}");

    // Resend: queued again with a fresh cycle, sent again with the same webhook-id.
    let (ok, stdout, stderr) = daemon.cli(&["msg", "resend", &id, "--json"]);
    assert!(ok, "{stderr}");
    let answer: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(answer["id"], id.as_str());
    receiver.wait_for(3, WAIT).await;
    let view = daemon.wait_state(&id, "delivered", WAIT).await;
    assert_eq!(view.attempts.len(), 3, "{view:?}");
    assert_eq!(view.cycle_attempts, 1, "a fresh cycle: {view:?}");
    let sent = receiver.requests_for(&id);
    assert_eq!(
        sent.len(),
        3,
        "the resend went out with the same webhook-id"
    );

    // Unknown ids: 404.
    let unknown = "01890a5d-ac96-774b-bcce-b302099a8057";
    let (status, _) = post(&daemon, &format!("/v1/messages/{unknown}/retry"), None).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_message_is_replayed_not_retried_and_dlq_list_filters_by_until_and_type() {
    let refusing = TestReceiver::start(|_| Reply::status(400)).await;
    let daemon =
        TestDaemon::start(&[endpoint("refusing", &refusing.url("/"), FAST_RETRY)], "").await;
    let created = daemon.send("refusing", "order.created", "{}").await;
    let paid = daemon.send("refusing", "order.paid", "{}").await;
    daemon.wait_state(&created, "dead", WAIT).await;
    daemon.wait_state(&paid, "dead", WAIT).await;

    let (status, body) = post(&daemon, &format!("/v1/messages/{created}/retry"), None).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("dlq replay"),
        "{body}"
    );
    let (status, body) = post(&daemon, &format!("/v1/messages/{created}/resend"), None).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("dlq replay"),
        "{body}"
    );

    let (ok, stdout, stderr) = daemon.cli(&["dlq", "list", "--type", "order.paid", "--json"]);
    assert!(ok, "{stderr}");
    let list: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(ids(&list), [paid.as_str()]);
    let (ok, stdout, stderr) = daemon.cli(&["dlq", "list", "--until", "1h", "--json"]);
    assert!(ok, "{stderr}");
    let list: Value = serde_json::from_str(&stdout).unwrap();
    assert!(ids(&list).is_empty(), "dead within the hour: {list}");
    let (status, list) = get(
        &daemon,
        "/v1/dlq?until=2999-01-01T00:00:00Z&type=order.created",
        None,
    )
    .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(ids(&list), [created.as_str()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_token_lists_its_own_endpoint_only_and_cannot_retry_or_resend() {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let daemon = TestDaemon::start(
        &[
            endpoint("mine", &receiver.url("/"), FAST_RETRY),
            endpoint("theirs", &receiver.url("/"), FAST_RETRY),
        ],
        "",
    )
    .await;
    let (ok, admin, stderr) = daemon.cli(&["tokens", "create", "ops"]);
    assert!(ok, "{stderr}");
    let admin = admin.trim().to_owned();
    let (ok, scoped, stderr) = daemon.cli(&[
        "tokens",
        "create",
        "customer",
        "--endpoint",
        "mine",
        "--token",
        &admin,
    ]);
    assert!(ok, "{stderr}");
    let scoped = scoped.trim().to_owned();
    let id = daemon.send_with_token(&admin, "mine", "event", "{}").await;
    daemon
        .send_with_token(&admin, "theirs", "event", "{}")
        .await;

    let (status, list) = get(&daemon, "/v1/messages?endpoint=mine", Some(&scoped)).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(ids(&list), [id.as_str()]);
    for path in ["/v1/messages", "/v1/messages?endpoint=theirs"] {
        let (status, body) = get(&daemon, path, Some(&scoped)).await;
        assert_eq!(status, 403, "{path}: {body}");
    }
    for verb in ["retry", "resend"] {
        let (status, body) =
            post(&daemon, &format!("/v1/messages/{id}/{verb}"), Some(&scoped)).await;
        assert_eq!(status, 403, "{verb}: {body}");
    }
    let (status, list) = get(&daemon, "/v1/messages", Some(&admin)).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&list).len(), 2);
}
