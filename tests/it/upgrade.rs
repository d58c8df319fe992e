//! Upgrading from a released build: a data dir written by release `a0a70a5` (the last one before the store
//! split and endpoints as data) opens in this build and carries over everything it held. Issue "Endpoints as
//! data" asks for it; until this test it was checked by hand.
//!
//! The fixture (`tests/fixtures/release-a0a70a5/`, made by its `make-fixture.sh` with that release's binary;
//! its README says how) is that release's data dir after a clean stop, and the config it ran on with the
//! paths and receiver URLs left as placeholders. The test runs the current daemon on a copy, with the URLs
//! pointing at its own receivers, and checks what the fixture recorded: endpoints, the pause, the run-time
//! override, the access token, the dead letters, the queued messages (delivered once each), the idempotency
//! keys; then that a second restart changes nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hookd::api::client::{Client, ClientError};
use hookd::api::wire::{EnqueueRequest, EnqueueResponse};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::harness::{Reply, TestDaemon, TestReceiver};

const WAIT: Duration = Duration::from_secs(30);

/// The fixture: `data/` (the data dir), `hookd.toml` (the config, with placeholders).
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/release-a0a70a5"
);

/// The admin token `hookd tokens create ops` printed to the old release.
const TOKEN: &str = "hkd_MYcDtXkE4Da7gpxvuu9bK6WxJffGTRP4JgLUubdV";

/// `orders` (json, answered 503): queued, two failed attempts each, the first two with idempotency keys.
const ORDER_1: &str = "01a2485f-3600-7609-a9b9-e125761faf66"; // key order-1
const ORDER_2: &str = "01a2485f-3600-7609-a9b9-e126d96bc705"; // key order-2
const ORDER_3: &str = "01a2485f-3600-7609-a9b9-e12760df6d8e";
const ORDERS: [&str; 3] = [ORDER_1, ORDER_2, ORDER_3];
/// Failed attempts (HTTP 503) each `orders` message had when the old release stopped.
const ORDER_ATTEMPTS_BEFORE: usize = 2;

/// `notify` (notification): two delivered (receipts `D-1`, `D-2`), then the endpoint paused and one held.
const NOTIFY_1: &str = "01a2485f-223e-71e8-9ece-9ab44e3735f3"; // key notify-1, receipt D-1
const NOTIFY_2: &str = "01a2485f-27d2-7340-99a5-09bbeed17824"; // receipt D-2
const NOTIFY_HELD: &str = "01a2485f-3fa1-759d-9ad9-d3105ad995ec"; // key notify-3

/// `gateway` (gateway-json, answered 400): two dead letters; then url, timeout_ms and max_attempts set at
/// run time.
const GATEWAY_1: &str = "01a2485f-2bc8-71bf-b384-8861d5e5eff0"; // key gateway-1
const GATEWAY_2: &str = "01a2485f-307a-74e5-80e3-a80a03bd4303"; // a status without status_message, sendto
const GATEWAY_OVERRIDE_URL: &str = "http://127.0.0.1:9/gateway-v2";

const ALL_MESSAGES: [&str; 8] = [
    ORDER_1,
    ORDER_2,
    ORDER_3,
    NOTIFY_1,
    NOTIFY_2,
    NOTIFY_HELD,
    GATEWAY_1,
    GATEWAY_2,
];

/// A copy of the fixture's data dir in a temp dir of its own (the fixture itself is never opened).
fn copy_fixture_data_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    for entry in std::fs::read_dir(Path::new(FIXTURE).join("data")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), data.join(entry.file_name())).unwrap();
    }
    (dir, data)
}

/// The fixture's config with this test's data dir, socket and receivers filled in.
fn fixture_config(
    data_dir: &Path,
    socket: &Path,
    orders: &TestReceiver,
    notify: &TestReceiver,
    gateway: &TestReceiver,
) -> String {
    let template = std::fs::read_to_string(Path::new(FIXTURE).join("hookd.toml")).unwrap();
    let text = template
        .replace("@DATA_DIR@", data_dir.to_str().unwrap())
        .replace("@SOCKET@", socket.to_str().unwrap())
        .replace("@ORDERS_URL@", &orders.url("/orders"))
        .replace("@NOTIFY_URL@", &notify.url("/notify"))
        .replace("@GATEWAY_URL@", &gateway.url("/gateway"));
    assert!(
        !text.contains("\"@"),
        "a placeholder left unfilled:\n{text}"
    );
    text
}

/// A notification receiver's `000 delivered` answer.
fn notification_delivered() -> Reply {
    let mut reply = Reply::ok().header("content-type", "application/json");
    reply.body = json!({"status_code": "000", "status_desc": "ok", "error_message": "", "delivery_id": "D-new"})
        .to_string();
    reply
}

/// Enqueues with an idempotency key.
async fn enqueue_keyed(
    client: &Client,
    endpoint: &str,
    kind: &str,
    payload: &str,
    key: &str,
) -> EnqueueResponse {
    client
        .enqueue(&EnqueueRequest {
            endpoint: endpoint.into(),
            kind: kind.into(),
            payload: RawValue::from_string(payload.into()).unwrap(),
            idempotency_key: Some(key.into()),
        })
        .await
        .unwrap()
}

/// Each key the fixture recorded answers as a duplicate of its first message, in `state`.
async fn assert_keys_dedupe(client: &Client, expected: &[(&str, &str, &str, &str)]) {
    for &(endpoint, key, id, state) in expected {
        let (kind, payload) = match endpoint {
            "orders" => ("order.created", r#"{"order":99}"#),
            "notify" => ("sms", r#"{"text":"again"}"#),
            // Valid for this build, which wants status_message and sendto.
            _ => (
                "device_status",
                r#"{"sms_id":9,"status_id":2,"device_id":3,"status_message":"queued","sendto":"+1555"}"#,
            ),
        };
        let answer = enqueue_keyed(client, endpoint, kind, payload, key).await;
        assert!(answer.duplicate, "{endpoint} key {key}: {answer:?}");
        assert_eq!(answer.id, id, "{endpoint} key {key}");
        assert_eq!(answer.status.as_str(), state, "{endpoint} key {key}");
    }
}

/// `GET` as JSON, with the token.
async fn get_json(daemon: &TestDaemon, path: &str) -> Value {
    let response = daemon
        .raw()
        .get(format!("http://hookd{path}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "GET {path}");
    response.json().await.unwrap()
}

/// What the daemon shows of the stored state: endpoints, dead letters, every fixture message with its
/// attempts, tokens, and the store's counts (not the run-time ones, which start at zero with each run).
async fn stored_state(daemon: &TestDaemon) -> Value {
    let mut messages = Vec::new();
    for id in ALL_MESSAGES {
        messages.push(get_json(daemon, &format!("/v1/messages/{id}")).await);
    }
    let stats = get_json(daemon, "/v1/stats").await;
    json!({
        "endpoints": get_json(daemon, "/v1/endpoints").await,
        "dlq": get_json(daemon, "/v1/dlq").await,
        "messages": messages,
        "tokens": get_json(daemon, "/v1/tokens").await,
        "totals": stats["totals"],
        "by_endpoint": stats["by_endpoint"],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_release_a0a70a5_opens_and_keeps_everything() {
    let orders = TestReceiver::start(|_| Reply::ok()).await;
    let notify = TestReceiver::start(|_| notification_delivered()).await;
    let gateway = TestReceiver::start(|_| Reply::ok()).await;
    let (_data_parent, data_dir) = copy_fixture_data_dir();
    let mut daemon = TestDaemon::start_with_config(|socket| {
        fixture_config(&data_dir, socket, &orders, &notify, &gateway)
    })
    .await;

    // The token still authenticates, and is still needed; it is an admin token (it may list tokens).
    for (token, case) in [
        (None, "without a token"),
        (Some("hkd_wrong"), "with a wrong token"),
    ] {
        match daemon
            .client()
            .with_token(token.map(str::to_owned))
            .health()
            .await
        {
            Err(ClientError::Api { status: 401, .. }) => {}
            other => panic!("{case}: {other:?}"),
        }
    }
    daemon.use_token(TOKEN);
    let admin = daemon.client();
    admin.health().await.unwrap();
    let tokens = admin.tokens().await.unwrap();
    let names: Vec<&str> = tokens.tokens.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["ops"]);

    // Every endpoint (listed in name order by this build), with its pause and its run-time override.
    let endpoints = admin.endpoints("").await.unwrap().endpoints;
    let shown: Vec<(&str, &str, &str)> = endpoints
        .iter()
        .map(|e| (e.name.as_str(), e.format.as_str(), e.origin.as_str()))
        .collect();
    assert_eq!(
        shown,
        [
            ("gateway", "gateway-json", "config"),
            ("notify", "notification", "config"),
            ("orders", "json", "config"),
        ]
    );
    let notify_view = admin.endpoint("notify").await.unwrap();
    assert_eq!(notify_view.state, "paused");
    assert_eq!(notify_view.url, notify.url("/notify"));
    assert!(notify_view.overrides.is_empty(), "{notify_view:?}");
    let gateway_view = admin.endpoint("gateway").await.unwrap();
    assert_eq!(gateway_view.state, "active");
    assert_eq!(
        gateway_view.overrides,
        ["max_attempts", "timeout_ms", "url"]
    );
    assert_eq!(gateway_view.url, GATEWAY_OVERRIDE_URL);
    assert_eq!(gateway_view.timeout_ms, 4321);
    assert_eq!(gateway_view.max_attempts, 3);
    let orders_view = admin.endpoint("orders").await.unwrap();
    assert!(orders_view.overrides.is_empty(), "{orders_view:?}");
    assert_eq!(orders_view.url, orders.url("/orders"));

    // The dead letters are listed, with their attempts; the old payload reads back as it was stored.
    let dead = admin.dlq_list(None, None, None).await.unwrap();
    let listed: Vec<(&str, &str, Option<u16>, u32)> = dead
        .items
        .iter()
        .map(|d| {
            (
                d.id.as_str(),
                d.endpoint.as_str(),
                d.last_status,
                d.attempts,
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (GATEWAY_1, "gateway", Some(400), 1),
            (GATEWAY_2, "gateway", Some(400), 1)
        ]
    );
    assert_eq!(dead.next, None);
    let old_status = admin.dlq_show(GATEWAY_2).await.unwrap();
    assert_eq!(old_status.dead_reason.as_deref(), Some("HTTP 400"));
    let payload: Value = serde_json::from_str(old_status.payload.get()).unwrap();
    assert_eq!(
        payload,
        json!({"sms_id": 2, "status_id": 2, "device_id": 3})
    );

    // The delivered messages keep their attempt and receipt.
    for (id, receipt) in [(NOTIFY_1, "D-1"), (NOTIFY_2, "D-2")] {
        let view = admin.message(id).await.unwrap();
        assert_eq!(view.state.as_str(), "delivered", "{id}");
        assert_eq!(view.attempts.len(), 1, "{id}");
        assert_eq!(view.attempts[0].receipt.as_deref(), Some(receipt), "{id}");
    }

    // The paused endpoint's message is held, and its key answers as a duplicate.
    let held = admin.message(NOTIFY_HELD).await.unwrap();
    assert_eq!(held.state.as_str(), "held");
    assert!(held.attempts.is_empty());
    assert_keys_dedupe(&admin, &[("notify", "notify-3", NOTIFY_HELD, "held")]).await;

    // The queued messages go out once each, their earlier attempts kept before the delivery.
    orders.wait_for(ORDERS.len(), WAIT).await;
    for id in ORDERS {
        let view = daemon.wait_state(id, "delivered", WAIT).await;
        let attempts: Vec<(u32, Option<u16>, &str)> = view
            .attempts
            .iter()
            .map(|a| (a.number, a.status, a.reason.as_str()))
            .collect();
        let mut expected: Vec<(u32, Option<u16>, &str)> = (1..=ORDER_ATTEMPTS_BEFORE as u32)
            .map(|n| (n, Some(503), "HTTP 503"))
            .collect();
        expected.push((ORDER_ATTEMPTS_BEFORE as u32 + 1, Some(200), "HTTP 200"));
        assert_eq!(attempts, expected, "{id}");
    }

    // Resumed, the paused endpoint sends its held message.
    let resumed = admin.control_endpoint("notify", "resume").await.unwrap();
    assert_eq!(resumed.state, "active");
    notify.wait_for(1, WAIT).await;
    daemon.wait_state(NOTIFY_HELD, "delivered", WAIT).await;

    // Every key recorded by the old release still dedupes.
    assert_keys_dedupe(
        &admin,
        &[
            ("orders", "order-1", ORDER_1, "delivered"),
            ("orders", "order-2", ORDER_2, "delivered"),
            ("notify", "notify-1", NOTIFY_1, "delivered"),
            ("notify", "notify-3", NOTIFY_HELD, "delivered"),
            ("gateway", "gateway-1", GATEWAY_1, "dead"),
        ],
    )
    .await;

    let delivered_once = |receiver: &TestReceiver, ids: &[&str]| {
        let mut got: Vec<String> = receiver
            .received()
            .into_iter()
            .map(|r| r.webhook_id)
            .collect();
        got.sort();
        let mut expected: Vec<String> = ids.iter().map(|id| (*id).to_owned()).collect();
        expected.sort();
        assert_eq!(got, expected, "one request per message, by webhook-id");
    };
    delivered_once(&orders, &ORDERS);
    delivered_once(&notify, &[NOTIFY_HELD]);
    delivered_once(&gateway, &[]);

    let stats = admin.stats().await.unwrap();
    let by_endpoint: Vec<(&str, u64, u64, u64)> = stats
        .by_endpoint
        .iter()
        .map(|(name, c)| (name.as_str(), c.queued + c.in_flight, c.delivered, c.dead))
        .collect();
    assert_eq!(
        by_endpoint,
        [
            ("gateway", 0, 0, 2),
            ("notify", 0, 3, 0),
            ("orders", 0, 3, 0)
        ]
    );

    // A second restart changes nothing: the upgraded dir reads back the same, and nothing is sent again.
    let before = stored_state(&daemon).await;
    let status = daemon.terminate();
    assert!(status.success(), "exit status {status:?}");
    daemon.spawn().await;
    let after = stored_state(&daemon).await;
    assert_eq!(before, after);
    assert_keys_dedupe(&admin, &[("orders", "order-1", ORDER_1, "delivered")]).await;
    delivered_once(&orders, &ORDERS);
    delivered_once(&notify, &[NOTIFY_HELD]);
    delivered_once(&gateway, &[]);
    assert_eq!(
        std::fs::read_to_string(data_dir.join("hookd-data")).unwrap(),
        "hookd data dir, format 5\n"
    );
}
