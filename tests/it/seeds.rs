//! The seeds to the letter: seed 002's verification before use (an endpoint without the handshake says so),
//! seed 003's two webhooks with a URL each, every request naming its message type, seed 000's settings behind
//! a token (the first one created offline) and credentials changed without a restart.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{
    FAST_RETRY, HOOKD, Received, Reply, TestDaemon, TestReceiver, answers_handshakes, body_json,
    cli_at, endpoint, error_message, eventually, format_endpoint, header,
};

const WAIT: Duration = Duration::from_secs(30);

// ---- seed 002: verify before use ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dlr_json_endpoint_without_verification_does_not_load() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nsocket = {:?}\n[[endpoints]]\nname = \"other\"\nurl = \"http://127.0.0.1:9/\"\n\
             [[endpoints]]\nname = \"dlr\"\nurl = \"http://127.0.0.1:9/cb\"\nformat = \"dlr-json\"\n",
            dir.path().join("data"),
            dir.path().join("hookd.sock"),
        ),
    )
    .unwrap();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(HOOKD)
            .args(["serve", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("key `endpoints[1].verification`") && stderr.contains("`dlr`"),
        "names the endpoint and the key: {stderr}"
    );
    assert!(
        stderr.contains("verification = \"none\""),
        "says how to declare a receiver without the handshake: {stderr}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "refused before the data dir"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_none_sends_at_once_and_start_up_warns_about_it() {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let daemon = TestDaemon::start(
        &[endpoint(
            "dlr",
            &receiver.url("/cb"),
            &format!("format = \"dlr-json\"\nverification = \"none\"\n{FAST_RETRY}"),
        )],
        "",
    )
    .await;
    let warning = daemon
        .log()
        .lines()
        .find(|line| line.contains("WARN") && line.contains("verification = \"none\""))
        .map(str::to_owned);
    let warning = warning.unwrap_or_else(|| panic!("no start-up warning:\n{}", daemon.log()));
    assert!(warning.contains("dlr"), "{warning}");

    let payload = r#"{"id":"x:1","status":"DELIVRD"}"#;
    let id = daemon.send("dlr", "dlr", payload).await;
    daemon.wait_state(&id, "delivered", WAIT).await;
    let received = receiver.received();
    assert_eq!(received.len(), 1, "no handshake, the DLR only");
    assert_eq!(received[0].webhook_id, id);
    assert_eq!(received[0].body, payload.as_bytes());
    let (_, view) = daemon.get("/v1/endpoints/dlr").await;
    assert_eq!(view["state"], "active", "{view}");
    assert_eq!(view["verification"], "none", "{view}");
    assert_eq!(view["settings"]["verification"], "none", "{view}");
    let (ok, stdout, stderr) = daemon.cli(&["endpoints", "show", "dlr"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("verification: none"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_a_dlr_json_endpoint_that_does_not_say_how_it_is_verified() {
    let receiver = TestReceiver::start(answers_handshakes).await;
    let daemon = TestDaemon::start(&[], "").await;
    let post = reqwest::Method::POST;
    let patch = reqwest::Method::PATCH;
    let (status, answer) = daemon
        .request(
            post.clone(),
            "/v1/endpoints",
            None,
            Some(json!({"name": "dlr", "format": "dlr-json", "url": receiver.url("/cb")})),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    let message = error_message(&answer);
    assert!(message.starts_with("verification:"), "{message}");
    let (status, _) = daemon.get("/v1/endpoints/dlr").await;
    assert_eq!(status, 404, "nothing was created");

    let (status, answer) = daemon
        .request(
            post.clone(),
            "/v1/endpoints",
            None,
            Some(
                json!({"name": "dlr", "format": "dlr-json", "url": receiver.url("/cb"),
                    "verification": "none", "retry": {"initial_ms": 50, "jitter": 0.0}}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(
        answer["state"], "active",
        "no handshake to wait for: {answer}"
    );
    let id = daemon
        .send("dlr", "dlr", r#"{"id":"x:1","status":"DELIVRD"}"#)
        .await;
    daemon.wait_state(&id, "delivered", WAIT).await;
    assert_eq!(receiver.count(), 1, "the DLR, no handshake");

    // Dropping the key is dropping the declaration: refused, the endpoint unchanged.
    let (status, answer) = daemon
        .request(
            patch.clone(),
            "/v1/endpoints/dlr",
            None,
            Some(json!({"verification": null})),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        error_message(&answer).starts_with("verification:"),
        "{answer}"
    );
    // Turning the handshake on runs it, and the DLRs go on once it passed.
    let (status, answer) = daemon
        .request(
            patch,
            "/v1/endpoints/dlr",
            None,
            Some(json!({"verification": {"validation_key": "k2"}})),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    receiver.wait_for(2, WAIT).await;
    assert_eq!(
        body_json(&receiver.received()[1])["validation_key"],
        "k2",
        "the handshake"
    );
    let id = daemon
        .send("dlr", "dlr", r#"{"id":"x:2","status":"DELIVRD"}"#)
        .await;
    daemon.wait_state(&id, "delivered", WAIT).await;
}

/// Writes, as an earlier release did, an endpoint created through the API: dlr-json without `verification`.
fn store_an_earlier_releases_dlr_endpoint(data_dir: std::path::PathBuf, url: String) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let store = hookd::store::Store::open(&data_dir, 1 << 20).unwrap();
        let mut definition = serde_json::Map::new();
        definition.insert("format".into(), json!("dlr-json"));
        definition.insert("url".into(), json!(url));
        definition.insert(
            "retry".into(),
            json!({"initial_ms": 50, "max_ms": 200, "jitter": 0.0}),
        );
        let state = hookd::store::EndpointState {
            definition: Some(definition),
            ..Default::default()
        };
        store.set_endpoint_state("old-dlr", &state).await.unwrap();
    });
    // Dropping the runtime ends the store's commit task, which lets go of the data dir.
    drop(runtime);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_created_without_verification_by_an_earlier_release_keeps_sending() {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("data");
    let (dir, url) = (data_dir.clone(), receiver.url("/old"));
    tokio::task::spawn_blocking(move || store_an_earlier_releases_dlr_endpoint(dir, url))
        .await
        .unwrap();
    let daemon = TestDaemon::start_with_data_dir(&[], "", Some(&data_dir)).await;
    let log = daemon.log();
    assert!(
        log.contains("old-dlr") && log.contains("recorded as verification = \"none\""),
        "the upgrade says what it did:\n{log}"
    );
    let (status, view) = daemon.get("/v1/endpoints/old-dlr").await;
    assert_eq!(status, 200, "the endpoint is still there: {view}");
    assert_eq!(view["settings"]["verification"], "none", "{view}");
    let id = daemon
        .send("old-dlr", "dlr", r#"{"id":"x:1","status":"DELIVRD"}"#)
        .await;
    daemon.wait_state(&id, "delivered", WAIT).await;
    assert_eq!(receiver.count(), 1, "as before the upgrade: no handshake");
}

// ---- seed 003: two webhooks, two URLs ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_json_sends_each_message_type_to_its_own_url() {
    let statuses = TestReceiver::start(|_| Reply::ok()).await;
    let incoming = TestReceiver::start(|_| Reply::ok()).await;
    let fallback = TestReceiver::start(|_| Reply::ok()).await;
    let extra = format!(
        "format = \"gateway-json\"\nurls = {{ device_status = {:?}, incoming_sms = {:?} }}\n{FAST_RETRY}",
        statuses.url("/statuses"),
        incoming.url("/incoming"),
    );
    let daemon = TestDaemon::start(&[endpoint("gw", &fallback.url("/all"), &extra)], "").await;
    let status = json!({"sms_id": 12, "status_id": 7, "status_message": "SMS delivered",
        "sendto": "+5511999999999", "senttime": "2024-01-02 10:00:00", "sim": 0, "device_id": 3});
    let sms = json!({"address": "+5511988887777", "body": "olá", "device_id": 3});
    let a = daemon
        .send("gw", "device_status", &status.to_string())
        .await;
    let b = daemon.send("gw", "incoming_sms", &sms.to_string()).await;
    daemon.wait_state(&a, "delivered", WAIT).await;
    daemon.wait_state(&b, "delivered", WAIT).await;
    let got_status = statuses.received();
    let got_sms = incoming.received();
    assert_eq!(got_status.len(), 1);
    assert_eq!(got_sms.len(), 1);
    assert_eq!(fallback.count(), 0, "every type had a URL of its own");
    assert_eq!(got_status[0].webhook_id, a);
    assert_eq!(body_json(&got_status[0]), status);
    assert_eq!(header(&got_status[0], "hookd-type"), Some("device_status"));
    assert_eq!(got_sms[0].webhook_id, b);
    assert_eq!(header(&got_sms[0], "hookd-type"), Some("incoming_sms"));
    let (_, view) = daemon.get("/v1/endpoints/gw").await;
    assert_eq!(
        view["urls"]["incoming_sms"],
        incoming.url("/incoming"),
        "{view}"
    );
    let (ok, stdout, stderr) = daemon.cli(&["endpoints", "show", "gw"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(&format!(
            "url (device_status): {}",
            statuses.url("/statuses")
        )),
        "{stdout}"
    );

    // At run time: one type's URL only; the other type falls back to `url`.
    let (code, answer) = daemon
        .request(
            reqwest::Method::PATCH,
            "/v1/endpoints/gw",
            None,
            Some(json!({"urls": {"incoming_sms": incoming.url("/incoming")}})),
        )
        .await;
    assert_eq!(code, 200, "{answer}");
    let c = daemon
        .send("gw", "device_status", &status.to_string())
        .await;
    let d = daemon.send("gw", "incoming_sms", &sms.to_string()).await;
    daemon.wait_state(&c, "delivered", WAIT).await;
    daemon.wait_state(&d, "delivered", WAIT).await;
    assert_eq!(fallback.requests_for(&c).len(), 1, "device_status to `url`");
    assert_eq!(
        incoming.requests_for(&d).len(),
        1,
        "incoming_sms to its own"
    );
    assert_eq!(statuses.count(), 1, "nothing more to the dropped URL");

    // A URL is checked as `url` is, and named by its type.
    let (code, answer) = daemon
        .request(
            reqwest::Method::PATCH,
            "/v1/endpoints/gw",
            None,
            Some(json!({"urls": {"incoming_sms": "ftp://127.0.0.1/x"}})),
        )
        .await;
    assert_eq!(code, 422, "{answer}");
    assert!(
        error_message(&answer).starts_with("urls.incoming_sms:"),
        "{answer}"
    );
    let (code, answer) = daemon
        .request(
            reqwest::Method::POST,
            "/v1/endpoints",
            None,
            Some(
                json!({"name": "j", "format": "json", "url": fallback.url("/j"),
                    "urls": {"x": fallback.url("/x")}}),
            ),
        )
        .await;
    assert_eq!(code, 422, "{answer}");
    assert!(error_message(&answer).starts_with("urls:"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_names_its_message_type_and_a_handshake_does_not() {
    // One receiver for every format, answering each in its own words.
    let receiver = TestReceiver::start(|r| {
        let content_type = header(r, "content-type").unwrap_or_default();
        if content_type.starts_with("application/xml") {
            let text = String::from_utf8_lossy(&r.body).into_owned();
            let ids: String = text
                .split("id_sms=\"")
                .skip(1)
                .filter_map(|rest| rest.split('"').next())
                .map(|id| format!("<id_sms>{id}</id_sms>"))
                .collect();
            return Reply::xml(format!("<response>{ids}</response>"));
        }
        let body = body_json(r);
        if body.get("message_type").is_some() {
            return Reply::json(&json!({"status_code": "000"}));
        }
        answers_handshakes(r)
    })
    .await;
    let daemon = TestDaemon::start(
        &[
            endpoint("j", &receiver.url("/j"), FAST_RETRY),
            format_endpoint("n", &receiver.url("/n"), "notification"),
            endpoint(
                "x",
                &receiver.url("/x"),
                &format!(
                    "format = \"sms-status-xml\"\nbatch_max = 10\nbatch_linger_ms = 300\n{FAST_RETRY}"
                ),
            ),
            endpoint(
                "d",
                &receiver.url("/d"),
                &format!(
                    "format = \"dlr-json\"\nverification = {{ validation_key = \"K\" }}\n{FAST_RETRY}"
                ),
            ),
            format_endpoint("i", &receiver.url("/i"), "app-inbox"),
        ],
        "",
    )
    .await;
    let mut sent = vec![
        (
            daemon.send("j", "order.created", r#"{"order":1}"#).await,
            "order.created",
        ),
        (daemon.send("n", "sms", r#"{"text":"hi"}"#).await, "sms"),
        (daemon.send("n", "push", r#"{"title":"t"}"#).await, "push"),
        (
            daemon
                .send("d", "dlr", r#"{"id":"x:1","status":"DELIVRD"}"#)
                .await,
            "dlr",
        ),
        (
            daemon
                .send(
                    "i",
                    "app_inbox",
                    r#"{"externalCustomerId":"c","id":"7d8e3d52-3f5e-4c1a-9e59-3c8a2b1f0a11","createdDate":1}"#,
                )
                .await,
            "app_inbox",
        ),
    ];
    for n in 0..3 {
        let payload = format!(r#"{{"id_sms":{n},"time":"","sms":"deliver"}}"#);
        sent.push((daemon.send("x", "sms_status", &payload).await, "sms_status"));
    }
    for (id, _) in &sent {
        daemon.wait_state(id, "delivered", WAIT).await;
    }
    let received = receiver.received();
    for (id, kind) in &sent {
        // In a batch, the message's id is listed in `webhook-batch`; the header is the batch's one type.
        let carried = received.iter().find(|r| {
            r.webhook_id == *id
                || header(r, "webhook-batch").is_some_and(|all| all.split(',').any(|x| x == id))
        });
        let carried = carried.unwrap_or_else(|| panic!("no request carried {id}"));
        assert_eq!(header(carried, "hookd-type"), Some(*kind), "{id}");
    }
    let handshakes: Vec<&Received> = received
        .iter()
        .filter(|r| body_json_or_null(r).get("challenge").is_some())
        .collect();
    assert!(!handshakes.is_empty(), "the dlr endpoint was verified");
    for handshake in handshakes {
        assert_eq!(
            header(handshake, "hookd-type"),
            None,
            "a handshake carries no message"
        );
    }
}

fn body_json_or_null(r: &Received) -> Value {
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

// ---- seed 000: settings behind a token ----

/// Runs `hookd` with these arguments, away from any daemon's socket: (success, stdout, stderr).
async fn hookd(args: Vec<String>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let output = Command::new(HOOKD)
            .args(&args)
            .env_remove("HOOKD_SOCKET")
            .env_remove("HOOKD_TOKEN")
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_token_created_offline_guards_the_api_from_the_next_start() {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let mut daemon = TestDaemon::start(&[endpoint("ok", &receiver.url("/"), FAST_RETRY)], "").await;
    let config = daemon.config_path.to_string_lossy().into_owned();
    let offline = |name: &str, more: &[&str]| {
        let mut args: Vec<String> = ["tokens", "create", name, "--offline", "--config", &config]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(more.iter().map(|s| s.to_string()));
        args
    };

    // While the daemon runs, the data dir is its own.
    let (ok, stdout, stderr) = hookd(offline("ops", &[])).await;
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("in use by a running hookd") && stderr.contains("stop the daemon"),
        "{stderr}"
    );
    assert!(stdout.is_empty(), "no token printed: {stdout}");
    let (status, _) = daemon.get("/v1/endpoints/ok").await;
    assert_eq!(status, 200, "nothing was created: the API is still open");

    assert!(daemon.terminate().success());
    let (ok, stdout, stderr) = hookd(offline("ops", &[])).await;
    assert!(ok, "{stderr}");
    let token = stdout.trim().to_owned();
    assert!(token.starts_with("hkd_"), "{stdout}");
    assert!(stderr.contains("shown only this once"), "{stderr}");
    let (ok, _, stderr) = hookd(offline("ops", &[])).await;
    assert!(!ok && stderr.contains("exists already"), "{stderr}");
    let (ok, _, stderr) = hookd(offline("cust", &["--endpoint", "nope"])).await;
    assert!(!ok && stderr.contains("`nope`"), "{stderr}");
    let (ok, scoped, stderr) = hookd(offline("cust", &["--endpoint", "ok"])).await;
    assert!(ok, "{stderr}");
    let scoped = scoped.trim().to_owned();

    let mut text = std::fs::read_to_string(&daemon.config_path).unwrap();
    text.push_str("\n[api]\nrequire_token = true\n");
    std::fs::write(&daemon.config_path, text).unwrap();
    daemon.spawn().await;
    let get = reqwest::Method::GET;
    let (status, answer) = daemon
        .request(get.clone(), "/v1/endpoints/ok", None, None)
        .await;
    assert_eq!(status, 401, "{answer}");
    let (status, _) = daemon
        .request(get.clone(), "/v1/endpoints/ok", Some("hkd_x"), None)
        .await;
    assert_eq!(status, 401);
    let (status, view) = daemon
        .request(get.clone(), "/v1/endpoints/ok", Some(&token), None)
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["name"], "ok");
    let (status, _) = daemon
        .request(get.clone(), "/v1/endpoints/ok", Some(&scoped), None)
        .await;
    assert_eq!(status, 200, "the scoped token reads its endpoint");
    let (status, _) = daemon.request(get, "/v1/stats", Some(&scoped), None).await;
    assert_eq!(status, 403, "and nothing else");
    let socket = daemon.socket.clone();
    let (ok, stdout, stderr) = tokio::task::spawn_blocking(move || {
        cli_at(&socket, &["tokens", "list", "--token", &token])
    })
    .await
    .unwrap();
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("ops") && stdout.contains("cust"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_credentials_change_without_a_restart() {
    let receiver =
        TestReceiver::start(|_| Reply::json(&json!({"status_code": "000", "delivery_id": "D-1"})))
            .await;
    let extra = format!(
        "format = \"notification\"\nauth = {{ type = \"basic\", username = \"u1\", password = \"p1\" }}\n{FAST_RETRY}"
    );
    let daemon = TestDaemon::start(&[endpoint("notify", &receiver.url("/n"), &extra)], "").await;
    let pid = daemon.pid();
    // Settings are read and changed with an access token (seed 000).
    let (ok, token, stderr) = daemon.cli(&["tokens", "create", "ops"]);
    assert!(ok, "{stderr}");
    let token = token.trim().to_owned();

    let first = daemon
        .send_with_token(&token, "notify", "sms", r#"{"text":"1"}"#)
        .await;
    wait_delivered(&daemon, &token, &first).await;
    assert_eq!(
        header(&receiver.requests_for(&first)[0], "authorization"),
        Some("Basic dTE6cDE="),
        "u1:p1"
    );

    let change = json!({"auth": {"type": "basic", "username": "u2", "password": "p2"}});
    let patch = reqwest::Method::PATCH;
    let (status, _) = daemon
        .request(
            patch.clone(),
            "/v1/endpoints/notify",
            None,
            Some(change.clone()),
        )
        .await;
    assert_eq!(status, 401, "no token, no change");
    let (status, view) = daemon
        .request(patch, "/v1/endpoints/notify", Some(&token), Some(change))
        .await;
    assert_eq!(status, 200, "{view}");
    assert!(
        !view.to_string().contains("p2"),
        "the password is never shown: {view}"
    );

    let second = daemon
        .send_with_token(&token, "notify", "sms", r#"{"text":"2"}"#)
        .await;
    wait_delivered(&daemon, &token, &second).await;
    assert_eq!(
        header(&receiver.requests_for(&second)[0], "authorization"),
        Some("Basic dTI6cDI="),
        "u2:p2 on the next message"
    );
    assert_eq!(daemon.pid(), pid, "the same daemon, not restarted");
}

async fn wait_delivered(daemon: &TestDaemon, token: &str, id: &str) {
    let path = format!("/v1/messages/{id}");
    let delivered = eventually(WAIT, || async {
        let (_, view) = daemon
            .request(reqwest::Method::GET, &path, Some(token), None)
            .await;
        (view["state"] == "delivered").then_some(())
    })
    .await;
    assert!(delivered.is_some(), "message {id} was not delivered");
}
