//! Standard Webhooks signing, end to end: every request the real daemon sends to an endpoint with
//! `signing_secret` is checked as a receiver would check it, with the `standardwebhooks` crate (an
//! implementation of the specification independent of hookd's own `signing.rs`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderValue;
use serde_json::json;
use standardwebhooks::{Webhook, WebhookError};

use crate::harness::{
    Backend, FAST_RETRY, Received, Reply, TestDaemon, TestReceiver, endpoint, header,
};

const WAIT: Duration = Duration::from_secs(30);
/// The secret of the Standard Webhooks specification's test vector.
const OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NEW: &str = "whsec_dGhpcyBpcyBhIG5ldyBzZWNyZXQga2V5ISE=";
/// Configured nowhere: it must never verify.
const UNRELATED: &str = "whsec_YW4gdW5yZWxhdGVkIGtleSwgbmV2ZXIgY29uZmlndXJlZA==";

fn verify(secret: &str, request: &Received) -> Result<(), WebhookError> {
    Webhook::new(secret)
        .unwrap()
        .verify(&request.body, &request.headers)
}

/// The `v1,...` entries of the `webhook-signature` header.
fn signatures(request: &Received) -> Vec<String> {
    header(request, "webhook-signature")
        .unwrap()
        .split(' ')
        .map(str::to_owned)
        .collect()
}

/// The request with its `webhook-signature` replaced (to check each signature on its own).
fn with_signature(request: &Received, signature: &str) -> Received {
    let mut copy = request.clone();
    copy.headers.insert(
        "webhook-signature",
        HeaderValue::from_str(signature).unwrap(),
    );
    copy
}

fn assert_secret_not_shown(daemon: &TestDaemon, endpoint: &str, secret: &str) {
    let encoded = secret.trim_start_matches("whsec_");
    let log = daemon.log();
    assert!(
        !log.is_empty() && !log.contains(encoded),
        "the secret is in the log:\n{log}"
    );
    for args in [
        vec!["endpoints", "show", endpoint, "--json"],
        vec!["endpoints", "show", endpoint],
        vec!["endpoints", "list", "--json"],
    ] {
        let (ok, stdout, stderr) = daemon.cli(&args);
        assert!(ok && stdout.contains(endpoint), "{args:?}: {stderr}");
        assert!(
            !stdout.contains(encoded),
            "{args:?} shows the secret: {stdout}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_is_signed_and_a_tampered_request_fails_verification() {
    every_attempt_is_signed_and_a_tampered_request_fails_verification_on(Backend::Sled).await;
}

/// The test above, on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn every_attempt_is_signed_and_a_tampered_request_fails_verification_on(
    backend: Backend,
) {
    let receiver = TestReceiver::start(|r| {
        if r.nth_for_id == 1 {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    })
    .await;
    let daemon = TestDaemon::start_on(
        backend,
        &[endpoint(
            "signed",
            &receiver.url("/hooks"),
            &format!("{FAST_RETRY}\nsigning_secret = \"{OLD}\""),
        )],
        "",
    )
    .await;
    let id = daemon
        .send(
            "signed",
            "order.created",
            r#"{"order": 42, "note": "héllo"}"#,
        )
        .await;
    daemon.wait_state(&id, "delivered", WAIT).await;

    let requests = receiver.requests_for(&id);
    assert_eq!(requests.len(), 2, "a 503, then the retry");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for request in &requests {
        verify(OLD, request).unwrap();
        assert_eq!(signatures(request).len(), 1);
        let timestamp: u64 = header(request, "webhook-timestamp")
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            now.abs_diff(timestamp) < 60,
            "timestamp {timestamp}, now {now}"
        );

        let mut tampered = request.clone();
        let mut body = request.body.to_vec();
        let at = body.iter().position(|b| *b == b'4').unwrap();
        body[at] = b'5';
        tampered.body = body.into();
        assert!(matches!(
            verify(OLD, &tampered),
            Err(WebhookError::InvalidSignature)
        ));
        let mut other_id = request.clone();
        other_id.headers.insert(
            "webhook-id",
            HeaderValue::from_static("01a1fd8d-b671-765a-b597-daba10410fe0"),
        );
        assert!(matches!(
            verify(OLD, &other_id),
            Err(WebhookError::InvalidSignature)
        ));
        assert!(matches!(
            verify(UNRELATED, request),
            Err(WebhookError::InvalidSignature)
        ));
    }
    assert_secret_not_shown(&daemon, "signed", OLD);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_secrets_each_one_alone_verifies_so_receivers_can_rotate() {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let daemon = TestDaemon::start(
        &[endpoint(
            "rotating",
            &receiver.url("/hooks"),
            &format!("{FAST_RETRY}\nsigning_secret = [\"{OLD}\", \"{NEW}\"]"),
        )],
        "",
    )
    .await;
    let id = daemon
        .send("rotating", "order.paid", r#"{"order": 42}"#)
        .await;
    receiver.wait_for(1, WAIT).await;
    let request = &receiver.requests_for(&id)[0];

    // A receiver that knows only the old secret, and one that knows only the new one, both accept.
    verify(OLD, request).unwrap();
    verify(NEW, request).unwrap();
    assert!(verify(UNRELATED, request).is_err());
    // Two signatures, in the configured order: the first one is the old secret's, the second the new one's.
    let [first, second] = <[String; 2]>::try_from(signatures(request)).unwrap();
    assert!(first.starts_with("v1,") && second.starts_with("v1,"));
    verify(OLD, &with_signature(request, &first)).unwrap();
    assert!(verify(NEW, &with_signature(request, &first)).is_err());
    verify(NEW, &with_signature(request, &second)).unwrap();
    assert!(verify(OLD, &with_signature(request, &second)).is_err());
    assert_secret_not_shown(&daemon, "rotating", OLD);
    assert_secret_not_shown(&daemon, "rotating", NEW);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_signed_once_under_its_first_message_id() {
    let receiver = TestReceiver::start(|r| {
        let body = String::from_utf8_lossy(&r.body).into_owned();
        let echoed: String = body
            .split("id_sms=\"")
            .skip(1)
            .map(|rest| format!("<id_sms>{}</id_sms>", rest.split('"').next().unwrap()))
            .collect();
        Reply::xml(format!("<response>{echoed}</response>"))
    })
    .await;
    let daemon = TestDaemon::start(
        &[endpoint(
            "statuses",
            &receiver.url("/xml"),
            &format!(
                "format = \"sms-status-xml\"\nbatch_linger_ms = 500\n{FAST_RETRY}\nsigning_secret = \"{NEW}\""
            ),
        )],
        "",
    )
    .await;
    let item = |id_sms: u64| {
        json!({"endpoint": "statuses", "type": "sms_status",
               "payload": {"id_sms": id_sms, "time": "", "sms": "deliver"}})
    };
    let ids = daemon.send_batch(vec![item(1), item(2), item(3)]).await;
    for id in &ids {
        daemon.wait_state(id, "delivered", WAIT).await;
    }

    let requests = receiver.received();
    let batch = requests
        .iter()
        .find(|r| header(r, "webhook-batch").is_some())
        .expect("the three statuses travel in one document");
    let listed: Vec<&str> = header(batch, "webhook-batch").unwrap().split(',').collect();
    assert!(listed.len() > 1);
    assert_eq!(header(batch, "webhook-id"), Some(listed[0]));
    for request in &requests {
        verify(NEW, request).unwrap();
        assert!(verify(OLD, request).is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_without_a_secret_gets_no_signature_headers() {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let daemon = TestDaemon::start(
        &[
            endpoint("plain", &receiver.url("/plain"), FAST_RETRY),
            endpoint(
                "signed",
                &receiver.url("/signed"),
                &format!("{FAST_RETRY}\nsigning_secret = \"{OLD}\""),
            ),
        ],
        "",
    )
    .await;
    let plain = daemon.send("plain", "ping", "{}").await;
    let signed = daemon.send("signed", "ping", "{}").await;
    receiver.wait_for(2, WAIT).await;

    let request = &receiver.requests_for(&plain)[0];
    assert_eq!(header(request, "webhook-id"), Some(plain.as_str()));
    assert_eq!(header(request, "webhook-signature"), None);
    assert_eq!(header(request, "webhook-timestamp"), None);
    assert!(matches!(
        verify(OLD, request),
        Err(WebhookError::MissingHeader(_))
    ));
    // The same daemon does sign the other endpoint: the difference is the configuration, not the daemon.
    verify(OLD, &receiver.requests_for(&signed)[0]).unwrap();
}
