//! Each receiver protocol of the seeds, end to end: a receiver on 127.0.0.1 that behaves like that
//! provider's customer, including the unhappy ones.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use hookd::api::wire::MessageView;
use hookd::model::AttemptResult;

use crate::harness::{
    Backend, FAST_RETRY, Received, Reply, TestDaemon, TestReceiver, answers_handshakes, body_json,
    endpoint, error_message, eventually, format_endpoint,
};

const WAIT: Duration = Duration::from_secs(30);

async fn enqueue_status(
    daemon: &TestDaemon,
    endpoint: &str,
    kind: &str,
    payload: Value,
) -> (u16, Value) {
    let response = daemon
        .raw()
        .post("http://hookd/v1/messages")
        .json(&json!({"endpoint": endpoint, "type": kind, "payload": payload}))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

// ---- seed 000: notification ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_reads_the_status_code_model() {
    notification_reads_the_status_code_model_on(Backend::Sled).await;
}

/// The test above, on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn notification_reads_the_status_code_model_on(backend: Backend) {
    // The customer answers by the payload's `answer` field: a script of status codes, one per attempt.
    let receiver = TestReceiver::start(|r| {
        let body = body_json(r);
        let codes: Vec<String> = body["answer"]
            .as_str()
            .unwrap()
            .split(',')
            .map(str::to_owned)
            .collect();
        let code = codes[(r.nth_for_id - 1).min(codes.len() - 1)].clone();
        if code == "garbage" {
            return Reply::ok().header("content-type", "text/plain");
        }
        Reply::json(&json!({
            "status_code": code,
            "status_desc": "desc",
            "error_message": if code == "901" { "phone number missing" } else { "" },
            "delivery_id": format!("D-{}", r.nth_for_id),
        }))
    })
    .await;
    let daemon = TestDaemon::start_on(
        backend,
        &[format_endpoint(
            "notify",
            &receiver.url("/"),
            "notification",
        )],
        "",
    )
    .await;
    let ok = daemon
        .send("notify", "sms", r#"{"answer":"000","text":"hi"}"#)
        .await;
    let queued = daemon
        .send("notify", "push", r#"{"answer":"001","title":"t"}"#)
        .await;
    let retried = daemon
        .send("notify", "sms", r#"{"answer":"900,999,000"}"#)
        .await;
    let bad = daemon.send("notify", "sms", r#"{"answer":"901"}"#).await;
    let protocol = daemon
        .send("notify", "sms", r#"{"answer":"garbage,000"}"#)
        .await;

    let view = daemon.wait_state(&ok, "delivered", WAIT).await;
    assert_eq!(
        view.attempts[0].receipt.as_deref(),
        Some("D-1"),
        "delivery_id kept on the attempt"
    );
    let sent = &receiver.requests_for(&ok)[0];
    assert_eq!(body_json(sent)["message_type"], "SMS");
    assert_eq!(body_json(sent)["text"], "hi");
    // Await the second message's delivery before reading what the receiver got for it.
    let view = daemon.wait_state(&queued, "delivered", WAIT).await;
    assert_eq!(
        body_json(&receiver.requests_for(&queued)[0])["message_type"],
        "PUSH"
    );
    assert!(
        view.attempts[0].reason.contains("001"),
        "{}",
        view.attempts[0].reason
    );
    assert!(
        view.attempts[0].reason.contains("queued"),
        "{}",
        view.attempts[0].reason
    );

    let view = daemon.wait_state(&retried, "delivered", WAIT).await;
    assert_eq!(view.attempts.len(), 3, "900 and 999 are retried");

    let view = daemon.wait_state(&bad, "dead", WAIT).await;
    assert_eq!(view.attempts.len(), 1, "901 is final");
    let reason = view.dead_reason.unwrap();
    assert!(
        reason.contains("901") && reason.contains("phone number missing"),
        "{reason}"
    );

    let view = daemon.wait_state(&protocol, "delivered", WAIT).await;
    assert_eq!(
        view.attempts.len(),
        2,
        "a 2xx without the model is a protocol error, retried"
    );
    assert!(
        view.attempts[0].reason.contains("protocol error"),
        "{}",
        view.attempts[0].reason
    );

    let (ok_cli, stdout, _) = daemon.cli(&["msg", "show", &ok]);
    assert!(ok_cli);
    assert!(
        stdout.contains("D-1"),
        "msg show lists the receipt: {stdout}"
    );

    let (status, answer) = enqueue_status(&daemon, "notify", "dlr", json!({})).await;
    assert_eq!(status, 422, "a type the format cannot carry: {answer}");
    assert!(error_message(&answer).contains("type"));
}

// ---- seed 001: sms-status-xml ----

/// The `id_sms` values of the states in an XML batch.
fn ids_in(body: &[u8]) -> Vec<i64> {
    let text = std::str::from_utf8(body).unwrap();
    let mut reader = quick_xml::Reader::from_str(text);
    let mut ids = Vec::new();
    loop {
        match reader.read_event().unwrap() {
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e)
                if e.name().as_ref() == "state" =>
            {
                let attr = e.try_get_attribute("id_sms").unwrap().unwrap();
                ids.push(attr.value.parse().unwrap());
            }
            quick_xml::events::Event::Eof => return ids,
            _ => {}
        }
    }
}

fn ack(ids: &[i64]) -> Reply {
    let items: String = ids
        .iter()
        .map(|id| format!("<id_sms>{id}</id_sms>"))
        .collect();
    Reply::xml(format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<response>{items}</response>"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_status_xml_batches_and_resends_what_was_not_echoed() {
    sms_status_xml_batches_and_resends_what_was_not_echoed_on(Backend::Sled).await;
}

/// The test above, on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn sms_status_xml_batches_and_resends_what_was_not_echoed_on(backend: Backend) {
    // First request: echo only even ids. Later requests: echo everything.
    let receiver = TestReceiver::start(|r| {
        let ids = ids_in(&r.body);
        if r.nth_for_id == 1 {
            let even: Vec<i64> = ids.iter().copied().filter(|id| id % 2 == 0).collect();
            ack(&even)
        } else {
            ack(&ids)
        }
    })
    .await;
    let daemon = TestDaemon::start_on(
        backend,
        &[endpoint(
            "dlr-xml",
            &receiver.url("/"),
            &format!(
                "format = \"sms-status-xml\"\nbatch_linger_ms = 300\nconcurrency = 1\n{FAST_RETRY}"
            ),
        )],
        "",
    )
    .await;
    let mut messages = Vec::new();
    for id_sms in 1..=6 {
        messages.push(json!({"endpoint":"dlr-xml","type":"sms_status",
            "payload":{"id_sms": id_sms, "time":"2011-01-01 12:57:46","sms":"deliver"}}));
    }
    let ids = daemon.send_batch(messages).await;
    for id in &ids {
        daemon.wait_state(id, "delivered", WAIT).await;
    }
    let requests = receiver.received();
    assert_eq!(
        ids_in(&requests[0].body),
        vec![1, 2, 3, 4, 5, 6],
        "one XML document for the batch"
    );
    assert_eq!(
        requests[0].headers["content-type"],
        "application/xml; charset=utf-8"
    );
    let body = String::from_utf8(requests[0].body.to_vec()).unwrap();
    assert!(
        body.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?>"),
        "{body}"
    );
    assert!(
        body.contains(
            r#"<state id_sms="1" time="2011-01-01 12:57:46" sms="deliver">deliver</state>"#
        ),
        "{body}"
    );
    let resent: BTreeSet<i64> = requests[1..].iter().flat_map(|r| ids_in(&r.body)).collect();
    assert_eq!(
        resent,
        BTreeSet::from([1, 3, 5]),
        "only the ids not echoed are sent again"
    );
    for (n, id) in ids.iter().enumerate() {
        let expected = if n % 2 == 1 { 1 } else { 2 };
        assert_eq!(
            daemon.message(id).await.attempts.len(),
            expected,
            "message id_sms {}",
            n + 1
        );
    }
}

/// A daemon with one `sms-status-xml` endpoint, `xml`, that sends to `receiver`, and the id of the status
/// `payload` enqueued on it.
async fn one_status_to(receiver: &TestReceiver, payload: &str) -> (TestDaemon, String) {
    let daemon = TestDaemon::start(
        &[format_endpoint("xml", &receiver.url("/"), "sms-status-xml")],
        "",
    )
    .await;
    let id = daemon.send("xml", "sms_status", payload).await;
    (daemon, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_status_xml_garbage_acknowledges_nothing_and_gives_up_after_five() {
    let receiver = TestReceiver::start(|_| {
        let mut reply = Reply::ok();
        reply.body = "<html>oops</notclosed".into();
        reply
    })
    .await;
    let (daemon, id) = one_status_to(&receiver, r#"{"id_sms":7,"time":"","sms":"send"}"#).await;
    let view = daemon.wait_state(&id, "dead", WAIT).await;
    assert_eq!(view.attempts.len(), 5, "the seed's 5 attempts");
    let (status, answer) = enqueue_status(
        &daemon,
        "xml",
        "sms_status",
        json!({"id_sms": 1, "time": "", "sms": "lost"}),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert!(error_message(&answer).contains("payload.sms"), "{answer}");
}

/// Waits until the message is delivered or dead (whichever comes first) and returns its view.
async fn wait_settled(daemon: &TestDaemon, id: &str) -> MessageView {
    let client = daemon.client();
    eventually(WAIT, || {
        let client = client.clone();
        async move {
            let view = client.message(id).await.ok()?;
            matches!(view.state.as_str(), "delivered" | "dead").then_some(view)
        }
    })
    .await
    .unwrap_or_else(|| panic!("message {id} was neither delivered nor dead within {WAIT:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_status_xml_retries_a_404_without_echo_and_delivers_on_attempt_three() {
    // Seed 001: an answer that does not transmit the id_sms means the status was not received, whatever the
    // HTTP status; the status is sent again. This receiver answers 404 twice, then echoes the id.
    let receiver = TestReceiver::start(|r| {
        if r.nth_for_id <= 2 {
            Reply::status(404)
        } else {
            ack(&ids_in(&r.body))
        }
    })
    .await;
    let (daemon, id) = one_status_to(
        &receiver,
        r#"{"id_sms":3234,"time":"2011-01-01 12:57:46","sms":"deliver"}"#,
    )
    .await;
    let view = wait_settled(&daemon, &id).await;
    assert_eq!(view.state.as_str(), "delivered", "{view:#?}");
    assert_eq!(view.attempts.len(), 3, "{view:#?}");
    for attempt in &view.attempts[..2] {
        assert_eq!(attempt.status, Some(404), "{view:#?}");
        assert_eq!(attempt.result, AttemptResult::Retry, "{view:#?}");
        assert_eq!(attempt.reason, "HTTP 404: no id_sms echoed", "{view:#?}");
    }
    let last = &view.attempts[2];
    assert_eq!((last.number, last.status), (3, Some(200)), "{view:#?}");
    assert_eq!(last.result, AttemptResult::Delivered, "{view:#?}");
    assert_eq!(last.reason, "id_sms 3234 acknowledged", "{view:#?}");
    let requests = receiver.requests_for(&id);
    assert_eq!(requests.len(), 3);
    assert!(requests.iter().all(|r| ids_in(&r.body) == vec![3234]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_status_xml_gives_up_after_five_answers_without_echo_whatever_their_status() {
    // 401, 403, 400, 500, then 404 for ever: five attempts (the seed's), then dead.
    let receiver = TestReceiver::start(|r| {
        Reply::status(match r.nth_for_id {
            1 => 401,
            2 => 403,
            3 => 400,
            4 => 500,
            _ => 404,
        })
    })
    .await;
    let (daemon, id) = one_status_to(&receiver, r#"{"id_sms":3235,"time":"","sms":"send"}"#).await;
    let view = wait_settled(&daemon, &id).await;
    assert_eq!(view.state.as_str(), "dead", "{view:#?}");
    let statuses: Vec<_> = view.attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [401, 403, 400, 500, 404].map(Some), "{view:#?}");
    assert!(
        view.attempts
            .iter()
            .all(|a| a.result == AttemptResult::Retry && a.reason.ends_with("no id_sms echoed")),
        "{view:#?}"
    );
    assert_eq!(
        view.dead_reason.as_deref(),
        Some("gave up after 5 attempts; last: HTTP 404: no id_sms echoed")
    );
    assert_eq!(receiver.count(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_status_xml_gone_disables_the_endpoint_and_keeps_the_status_as_a_retry() {
    // A 410 is an answer without the echo like any other (a retry, one of the five attempts), and it also
    // disables the endpoint: the status is kept, held, and delivered once the endpoint is enabled again.
    let back = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&back);
    let receiver = TestReceiver::start(move |r| {
        if flag.load(Ordering::SeqCst) {
            ack(&ids_in(&r.body))
        } else {
            Reply::status(410)
        }
    })
    .await;
    let (daemon, id) = one_status_to(&receiver, r#"{"id_sms":41,"time":"","sms":"send"}"#).await;
    let client = daemon.client();
    let view = eventually(WAIT, || {
        let client = client.clone();
        let id = id.clone();
        async move {
            let endpoint = client.endpoint("xml").await.ok()?;
            let view = client.message(&id).await.ok()?;
            (endpoint.state == "disabled" && view.attempts.len() == 1).then_some(view)
        }
    })
    .await
    .expect("the 410 disables the endpoint and is recorded");
    assert_eq!(view.state.as_str(), "held", "{view:#?}");
    assert_eq!(view.dead_reason, None, "{view:#?}");
    let attempt = &view.attempts[0];
    assert_eq!(attempt.status, Some(410), "{view:#?}");
    assert_eq!(attempt.result, AttemptResult::Retry, "{view:#?}");
    assert_eq!(attempt.reason, "HTTP 410: no id_sms echoed", "{view:#?}");

    back.store(true, Ordering::SeqCst);
    let (ok, _, stderr) = daemon.cli(&["endpoints", "enable", "xml"]);
    assert!(ok, "{stderr}");
    let view = daemon.wait_state(&id, "delivered", WAIT).await;
    assert_eq!(view.attempts.len(), 2, "{view:#?}");
    assert_eq!(receiver.count(), 2);
}

// ---- seed 002: dlr-json ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlr_json_verifies_first_and_sends_the_bearer_secret() {
    dlr_json_verifies_first_and_sends_the_bearer_secret_on(Backend::Sled).await;
}

/// The test above, on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn dlr_json_verifies_first_and_sends_the_bearer_secret_on(backend: Backend) {
    let handshake_ok = Arc::new(AtomicBool::new(false));
    let seen_tokens = Arc::new(Mutex::new(Vec::new()));
    let flag = Arc::clone(&handshake_ok);
    let tokens = Arc::clone(&seen_tokens);
    let receiver = TestReceiver::start(move |r| {
        let body = body_json(r);
        tokens.lock().unwrap().push(
            r.headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned()),
        );
        if body.get("challenge").is_some() && !flag.load(Ordering::SeqCst) {
            return Reply::status(500);
        }
        answers_handshakes(r)
    })
    .await;
    let extra = format!(
        "format = \"dlr-json\"\nauth = {{ type = \"bearer\", token = \"1233XXX\" }}\nverification = {{ validation_key = \"9012XX\" }}\n{FAST_RETRY}"
    );
    let daemon = TestDaemon::start_on(
        backend,
        &[endpoint("dlr", &receiver.url("/receive/callback"), &extra)],
        "",
    )
    .await;
    let payload = r#"{"id":"b34e35ad-fe34-4a8b-977c-b21cd76cd7d6:1","mobile":"918921269xxx","status":"DELIVRD","units":2}"#;
    let id = daemon.send("dlr", "dlr", payload).await;
    receiver.wait_for(1, WAIT).await;
    // The handshake failed: the message waits, visibly.
    let view = daemon.message(&id).await;
    assert_eq!(view.state.as_str(), "held");
    let (ok, stdout, _) = daemon.cli(&["endpoints", "show", "dlr"]);
    assert!(ok);
    assert!(
        stdout.contains("unverified") && stdout.contains("500"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("1233XXX") && !stdout.contains("9012XX"),
        "secrets masked: {stdout}"
    );

    handshake_ok.store(true, Ordering::SeqCst);
    let (ok, stdout, stderr) = daemon.cli(&["endpoints", "verify", "dlr"]);
    assert!(ok, "{stdout}{stderr}");
    daemon.wait_state(&id, "delivered", WAIT).await;
    let requests = receiver.received();
    let handshake = &requests[0];
    assert_eq!(body_json(handshake)["validation_key"], "9012XX");
    let delivered = requests.iter().find(|r| r.webhook_id == id).unwrap();
    assert_eq!(
        body_json(delivered),
        serde_json::from_str::<Value>(payload).unwrap(),
        "the DLR object as is"
    );
    for token in seen_tokens.lock().unwrap().iter() {
        assert_eq!(token.as_deref(), Some("Bearer 1233XXX"));
    }
}

// ---- seed 003: gateway-json ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_json_sends_device_status_and_incoming_sms_as_is() {
    gateway_json_sends_device_status_and_incoming_sms_as_is_on(Backend::Sled).await;
}

/// The test above, on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn gateway_json_sends_device_status_and_incoming_sms_as_is_on(backend: Backend) {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let daemon = TestDaemon::start_on(
        backend,
        &[format_endpoint("gw", &receiver.url("/"), "gateway-json")],
        "",
    )
    .await;
    let status = json!({"sms_id": 12, "status_id": 7, "status_message": "delivered", "sendto": "+551199",
        "senttime": "2024-01-01 10:00:00", "sim": 0, "device_id": 3});
    let incoming = json!({"address": "+551188", "date": "2024-01-01 10:00:00", "date_sent": "2024-01-01 09:59:59",
        "body": "olá", "internal_id": 5, "sim": 1, "sms_id": 99, "device_id": 3, "device_name": "moto"});
    let a = daemon
        .send("gw", "device_status", &status.to_string())
        .await;
    let b = daemon
        .send("gw", "incoming_sms", &incoming.to_string())
        .await;
    daemon.wait_state(&a, "delivered", WAIT).await;
    daemon.wait_state(&b, "delivered", WAIT).await;
    assert_eq!(body_json(&receiver.requests_for(&a)[0]), status);
    assert_eq!(body_json(&receiver.requests_for(&b)[0]), incoming);

    let mut unknown = status.clone();
    unknown["status_id"] = json!(4);
    let (code, answer) = enqueue_status(&daemon, "gw", "device_status", unknown).await;
    assert_eq!(code, 422);
    assert!(
        error_message(&answer).contains("payload.status_id"),
        "{answer}"
    );
    assert_eq!(receiver.count(), 2);
}

// ---- seed 004: app-inbox ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_inbox_answers_by_the_seed_table_with_basic_auth() {
    app_inbox_answers_by_the_seed_table_with_basic_auth_on(Backend::Sled).await;
}

/// The test above, on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn app_inbox_answers_by_the_seed_table_with_basic_auth_on(backend: Backend) {
    let receiver = TestReceiver::start(|r| {
        let body = body_json(r);
        match (body["title"].as_str().unwrap(), r.nth_for_id) {
            ("auth-then-ok", 1) => Reply::status(401),
            ("busy-then-ok", 1) => Reply::status(429),
            ("busy-then-ok", 2) => Reply::status(502),
            ("bad", _) => Reply::status(400),
            _ => Reply::ok(),
        }
    })
    .await;
    let extra = format!(
        "format = \"app-inbox\"\nauth = {{ type = \"basic\", username = \"acme\", password = \"pw\" }}\n{FAST_RETRY}"
    );
    let daemon = TestDaemon::start_on(
        backend,
        &[endpoint("inbox", &receiver.url("/"), &extra)],
        "",
    )
    .await;
    let message = |title: &str| {
        json!({"externalCustomerId": "cust-1", "id": "7d8e3d52-3f5e-4c1a-9e59-3c8a2b1f0a11",
            "createdDate": 1700000000000_i64, "title": title, "content": "c", "category": "news"})
        .to_string()
    };
    let retried = daemon
        .send("inbox", "app_inbox", &message("auth-then-ok"))
        .await;
    let busy = daemon
        .send("inbox", "app_inbox", &message("busy-then-ok"))
        .await;
    let bad = daemon.send("inbox", "app_inbox", &message("bad")).await;
    assert_eq!(
        daemon
            .wait_state(&retried, "delivered", WAIT)
            .await
            .attempts
            .len(),
        2,
        "401 is retried"
    );
    assert_eq!(
        daemon
            .wait_state(&busy, "delivered", WAIT)
            .await
            .attempts
            .len(),
        3,
        "429 and 502 are retried"
    );
    assert_eq!(
        daemon.wait_state(&bad, "dead", WAIT).await.attempts.len(),
        1,
        "400 is never retried"
    );
    let auth = receiver.received()[0].headers["authorization"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(auth, "Basic YWNtZTpwdw==", "basic auth acme:pw");

    let (status, answer) = enqueue_status(
        &daemon,
        "inbox",
        "app_inbox",
        json!({"id": "7d8e3d52-3f5e-4c1a-9e59-3c8a2b1f0a11", "createdDate": 1, "title": "t"}),
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        error_message(&answer).contains("externalCustomerId"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_inbox_refuses_a_contact_over_its_pending_cap() {
    app_inbox_refuses_a_contact_over_its_pending_cap_on(Backend::Sled).await;
}

/// The test above, on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn app_inbox_refuses_a_contact_over_its_pending_cap_on(backend: Backend) {
    let receiver = TestReceiver::start(|_| Reply::hang()).await;
    let extra =
        "format = \"app-inbox\"\nmax_pending_per_contact = 2\nconcurrency = 1\ntimeout_ms = 60000";
    let daemon =
        TestDaemon::start_on(backend, &[endpoint("inbox", &receiver.url("/"), extra)], "").await;
    let message = |customer: &str| {
        json!({"externalCustomerId": customer, "id": "7d8e3d52-3f5e-4c1a-9e59-3c8a2b1f0a11",
            "createdDate": 1700000000000_i64, "title": "t"})
    };
    for _ in 0..2 {
        let (status, _) = enqueue_status(&daemon, "inbox", "app_inbox", message("alice")).await;
        assert_eq!(status, 202);
    }
    let (status, answer) = enqueue_status(&daemon, "inbox", "app_inbox", message("alice")).await;
    assert_eq!(status, 429, "{answer}");
    assert_eq!(answer["error"]["code"], "contact_limit");
    assert!(error_message(&answer).contains("alice"));
    let (status, _) = enqueue_status(&daemon, "inbox", "app_inbox", message("bob")).await;
    assert_eq!(status, 202, "other contacts are not affected");
    let stats = daemon.client().stats().await.unwrap();
    let c = stats.by_endpoint["inbox"];
    assert_eq!(
        c.queued + c.in_flight,
        3,
        "nothing was dropped, the refused one was never queued"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlr_json_verifies_again_after_the_url_changes() {
    let answer_handshake =
        |r: &Received| Reply::json(&json!({"validation_key": body_json(r)["validation_key"]}));
    let first = TestReceiver::start(move |r| {
        if body_json(r).get("challenge").is_some() {
            answer_handshake(r)
        } else {
            Reply::ok()
        }
    })
    .await;
    // The new URL refuses the handshake: nothing but the handshake may reach it.
    let second = TestReceiver::start(|_| Reply::status(403)).await;
    let extra = format!(
        "format = \"dlr-json\"\nverification = {{ validation_key = \"K1\" }}\n{FAST_RETRY}"
    );
    let daemon = TestDaemon::start(&[endpoint("dlr", &first.url("/"), &extra)], "").await;
    let payload = r#"{"id":"x:1","status":"DELIVRD"}"#;
    let id = daemon.send("dlr", "dlr", payload).await;
    daemon.wait_state(&id, "delivered", WAIT).await;

    let (ok, _, stderr) = daemon.cli(&["endpoints", "set", "dlr", "--url", &second.url("/new")]);
    assert!(ok, "{stderr}");
    let id = daemon.send("dlr", "dlr", payload).await;
    second.wait_for(1, WAIT).await;
    let view = crate::harness::eventually(WAIT, || {
        let client = daemon.client();
        let id = id.clone();
        async move {
            let view = client.message(&id).await.ok()?;
            (view.state.as_str() == "held").then_some(view)
        }
    })
    .await
    .expect("the message waits for the new URL's handshake");
    assert!(view.attempts.is_empty());
    assert!(
        second
            .received()
            .iter()
            .all(|r| body_json(r).get("challenge").is_some()),
        "only handshakes reached the new URL"
    );
}
