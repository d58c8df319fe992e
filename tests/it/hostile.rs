//! Hostile and broken receivers, end to end: whatever a receiver does (a 50 MB answer, an answer dripping one
//! byte at a time, no answer, garbage, invalid UTF-8, a redirect into the internal network, a TLS port
//! speaking something else, a connection dropped half-way), the message ends with a classified attempt a
//! user can read in `hookd msg show`, and the daemon stays up with bounded memory and no leaked descriptors.
//! The destination guard is proven here too: no notation of a loopback address and no name resolving to
//! one gets a connection out of a daemon whose allow list does not cover loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hookd::api::wire::MessageView;
use hookd::model::AttemptResult;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{
    EndpointSpec, FAST_RETRY, Reply, TestDaemon, TestReceiver, endpoint, eventually,
};
use crate::raw_receiver::{
    RawReceiver, answer_with, drip, hold_until_closed, read_request, stream_body,
};

const WAIT: Duration = Duration::from_secs(30);

/// Fast retries, and a circuit breaker that never opens: these tests count every failed attempt.
fn hostile(extra: &str) -> String {
    format!("{FAST_RETRY}\ncircuit_breaker = {{ failure_threshold = 100000 }}\n{extra}")
}

/// What the daemon's open descriptors point at, without its API connections (the test's own client keeps a
/// varying number of them alive): files, pipes, the listener's peers-to-be and outbound sockets.
fn descriptors(daemon: &TestDaemon) -> Vec<String> {
    let pid = daemon.pid();
    let api = daemon.socket.display().to_string();
    // /proc/<pid>/net/unix: `... Inode Path`; the daemon's ends of API connections carry the socket's path.
    let unix = std::fs::read_to_string(format!("/proc/{pid}/net/unix")).unwrap();
    let api_inodes: Vec<String> = unix
        .lines()
        .filter(|line| line.ends_with(&api))
        .filter_map(|line| {
            line.split_whitespace()
                .nth(6)
                .map(|i| format!("socket:[{i}]"))
        })
        .collect();
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .map(|target| target.display().to_string())
        .filter(|target| !api_inodes.contains(target))
        .collect()
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in bytes.
fn memory(pid: u32, field: &str) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kib: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib * 1024
}

/// The process runs (not a zombie) and its API answers.
async fn assert_alive(daemon: &TestDaemon) {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", daemon.pid()))
        .expect("the daemon process exists");
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap();
    assert_ne!(state, "Z", "the daemon exited; log:\n{}", daemon.log());
    daemon.client().health().await.unwrap();
    assert!(!daemon.log().contains("panicked"), "{}", daemon.log());
}

/// A daemon whose `[destinations] allow` is `list` instead of the harness's loopback range.
async fn start_with_allow(endpoints: &[EndpointSpec], list: &str) -> TestDaemon {
    let mut daemon = TestDaemon::start(endpoints, "").await;
    daemon.kill();
    set_allow(&daemon, list);
    daemon.spawn().await;
    daemon
}

fn set_allow(daemon: &TestDaemon, list: &str) {
    let text = std::fs::read_to_string(&daemon.config_path).unwrap();
    assert_eq!(text.matches("\nallow = ").count(), 1, "{text}");
    let text: Vec<String> = text
        .lines()
        .map(|line| match line.starts_with("allow = ") {
            true => format!("allow = {list}"),
            false => line.to_owned(),
        })
        .collect();
    std::fs::write(&daemon.config_path, text.join("\n") + "\n").unwrap();
}

/// `hookd msg show --json`: what a user sees.
fn shown(daemon: &TestDaemon, id: &str) -> MessageView {
    let (ok, stdout, stderr) = daemon.cli(&["msg", "show", id, "--json"]);
    assert!(ok, "{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Every attempt is a retry with this transport error kind and a reason naming it.
fn assert_transport_retries(view: &MessageView, kind: &str, attempts: usize) {
    assert_eq!(view.attempts.len(), attempts, "{view:#?}");
    for attempt in &view.attempts {
        assert_eq!(attempt.error.as_deref(), Some(kind), "{view:#?}");
        assert_eq!(attempt.status, None, "{view:#?}");
        assert_eq!(attempt.result, AttemptResult::Retry, "{view:#?}");
        assert!(attempt.reason.starts_with(kind), "{view:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_answer_is_read_only_up_to_the_cap_and_memory_stays_bounded() {
    const BODY: usize = 50 * 1024 * 1024;
    const MESSAGES: usize = 3;
    let written = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&written);
    let receiver = RawReceiver::start(move |mut stream| {
        let counter = Arc::clone(&counter);
        async move {
            if read_request(&mut stream).await.is_none() {
                return;
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {BODY}\r\n\r\n"
            );
            stream_body(&mut stream, head.as_bytes(), BODY, &counter).await;
        }
    })
    .await;
    let daemon = TestDaemon::start(
        &[endpoint("huge", &receiver.url("/"), &hostile(""))],
        "response_body_cap = 65536",
    )
    .await;
    let pid = daemon.pid();
    let rss_before = memory(pid, "VmRSS");
    let mut ids = Vec::new();
    for _ in 0..MESSAGES {
        ids.push(daemon.send("huge", "event", "{}").await);
    }
    for id in &ids {
        daemon.wait_state(id, "delivered", WAIT).await;
        let view = shown(&daemon, id);
        assert_eq!(view.attempts.len(), 1, "{view:#?}");
        let attempt = &view.attempts[0];
        assert_eq!(attempt.status, Some(200));
        assert_eq!(attempt.result, AttemptResult::Delivered);
        assert!(
            attempt.body_excerpt.len() <= 512 && attempt.body_excerpt.bytes().all(|b| b == b'x'),
            "{attempt:?}"
        );
    }
    // The daemon hung up after the cap: every connection ended with most of the body never sent.
    eventually(WAIT, || async {
        (receiver.finished() == MESSAGES).then_some(())
    })
    .await
    .expect("the daemon closes each connection once it read its cap");
    let sent = written.load(Ordering::SeqCst);
    assert!(
        sent < MESSAGES * BODY / 4,
        "the receiver got {sent} bytes out; the daemon read on past its cap"
    );
    // Memory: the peak over the daemon's whole life grew by far less than one answer body.
    let peak = memory(pid, "VmHWM");
    assert!(
        peak < rss_before + 16 * 1024 * 1024,
        "peak RSS {peak} vs {rss_before} before three {BODY}-byte answers"
    );
    assert_alive(&daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_drip_answer_ends_at_the_endpoint_timeout() {
    // Headers, then one body byte every 100 ms, forever.
    let body_drip = RawReceiver::start(|mut stream| async move {
        if read_request(&mut stream).await.is_none() {
            return;
        }
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n";
        if stream.write_all(head).await.is_ok() {
            drip(&mut stream, b"x", Duration::from_millis(100)).await;
        }
    })
    .await;
    // The status line, then a header that never ends.
    let head_drip = RawReceiver::start(|mut stream| async move {
        if read_request(&mut stream).await.is_none() {
            return;
        }
        if stream
            .write_all(b"HTTP/1.1 200 OK\r\nx-slow: ")
            .await
            .is_ok()
        {
            drip(&mut stream, b"a", Duration::from_millis(100)).await;
        }
    })
    .await;
    let extra = hostile("timeout_ms = 1000\nmax_attempts = 2");
    let daemon = TestDaemon::start(
        &[
            endpoint("body-drip", &body_drip.url("/"), &extra),
            endpoint("head-drip", &head_drip.url("/"), &extra),
        ],
        "",
    )
    .await;
    let body_id = daemon.send("body-drip", "event", "{}").await;
    let head_id = daemon.send("head-drip", "event", "{}").await;
    for (id, receiver) in [(&body_id, &body_drip), (&head_id, &head_drip)] {
        daemon.wait_state(id, "dead", WAIT).await;
        let view = shown(&daemon, id);
        assert_transport_retries(&view, "timeout", 2);
        for attempt in &view.attempts {
            assert!(
                (1000..5000).contains(&attempt.duration_ms),
                "the 1 s total timeout ends the attempt: {attempt:?}"
            );
        }
        assert!(view.dead_reason.is_some(), "{view:#?}");
        assert_eq!(receiver.connections(), 2);
        // The daemon closed both connections it gave up on: the drips ended.
        eventually(WAIT, || async { (receiver.finished() == 2).then_some(()) })
            .await
            .expect("the daemon closes a connection it timed out");
    }
    assert_alive(&daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_never_answered_times_out_and_is_closed() {
    let receiver = RawReceiver::start(|mut stream| async move {
        hold_until_closed(&mut stream).await;
    })
    .await;
    let daemon = TestDaemon::start(
        &[endpoint(
            "silent",
            &receiver.url("/"),
            &hostile("timeout_ms = 500\nmax_attempts = 2"),
        )],
        "",
    )
    .await;
    let id = daemon.send("silent", "event", "{}").await;
    daemon.wait_state(&id, "dead", WAIT).await;
    let view = shown(&daemon, &id);
    assert_transport_retries(&view, "timeout", 2);
    assert!(
        view.attempts.iter().all(|a| a.duration_ms >= 500),
        "{view:#?}"
    );
    assert_eq!(receiver.connections(), 2, "one connection per attempt");
    eventually(WAIT, || async { (receiver.finished() == 2).then_some(()) })
        .await
        .expect("the daemon closes the connections it gave up on");
    assert_alive(&daemon).await;
}

fn body_of(r: &crate::harness::Received) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_answers_are_retried_never_delivered() {
    // Attempts 1 to 3 get garbage with a 200; the 4th gets the protocol's real acknowledgement, so the
    // garbage, not the receiver, is what kept the message from being delivered.
    let notification = TestReceiver::start(|r| {
        let body = match r.nth_for_id {
            1 => r#"{"status_code":"000","delivery_id":"#,
            2 => "<html><body>502 Bad Gateway</body></html>",
            3 => "\u{0}\u{1}{{{{[[[[",
            _ => r#"{"status_code":"000","delivery_id":"d-1"}"#,
        };
        Reply {
            body: body.into(),
            ..Reply::ok().header("content-type", "application/json")
        }
    })
    .await;
    let xml = TestReceiver::start(|r| {
        let body = match r.nth_for_id {
            1 => "<response><id_sms>7</id_sms>",
            2 => "<response><id_sms>7</id_sms></response><response>",
            3 => "<<<>>>&&&<id_sms>7",
            _ => "<response><id_sms>7</id_sms></response>",
        };
        Reply {
            body: body.into(),
            ..Reply::ok().header("content-type", "application/xml")
        }
    })
    .await;
    let daemon = TestDaemon::start(
        &[
            endpoint(
                "notify",
                &notification.url("/"),
                &hostile("format = \"notification\"\nmax_attempts = 4"),
            ),
            endpoint(
                "sms",
                &xml.url("/"),
                &hostile("format = \"sms-status-xml\"\nmax_attempts = 4"),
            ),
        ],
        "",
    )
    .await;
    let notify_id = daemon.send("notify", "sms", r#"{"text":"hi"}"#).await;
    let sms_id = daemon
        .send(
            "sms",
            "sms_status",
            r#"{"id_sms":7,"time":"","sms":"deliver"}"#,
        )
        .await;
    for (id, words) in [
        (&notify_id, "protocol error"),
        (&sms_id, "unreadable acknowledgement"),
    ] {
        let view = daemon.wait_state(id, "delivered", WAIT).await;
        let view = shown(&daemon, &view.id);
        assert_eq!(view.attempts.len(), 4, "{view:#?}");
        for attempt in &view.attempts[..3] {
            assert_eq!(attempt.status, Some(200));
            assert_eq!(attempt.result, AttemptResult::Retry, "{view:#?}");
            assert!(attempt.reason.contains(words), "{view:#?}");
        }
        assert_eq!(view.attempts[3].result, AttemptResult::Delivered);
    }
    assert_eq!(body_of(&notification.received()[0])["message_type"], "SMS");
    assert_alive(&daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_utf8_answer_is_classified_by_each_format() {
    // Invalid UTF-8 in the body and in a header value, answered by path.
    let receiver = RawReceiver::start(|mut stream| async move {
        let Some((head, _)) = read_request(&mut stream).await else {
            return;
        };
        let body: &[u8] = if head.starts_with("POST /sms") {
            b"<response><id_sms>7\xff</id_sms></response>"
        } else {
            b"\xff\xfe{\"status_code\":\"000\"}\xc3\x28"
        };
        let mut answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\nx-junk: ",
            body.len()
        )
        .into_bytes();
        answer.extend_from_slice(b"\xfe\xff\r\n\r\n");
        answer.extend_from_slice(body);
        let _ = stream.write_all(&answer).await;
        let _ = stream.shutdown().await;
    })
    .await;
    let daemon = TestDaemon::start(
        &[
            endpoint("json", &receiver.url("/json"), &hostile("")),
            endpoint(
                "notify",
                &receiver.url("/notify"),
                &hostile("format = \"notification\"\nmax_attempts = 2"),
            ),
            endpoint(
                "sms",
                &receiver.url("/sms"),
                &hostile("format = \"sms-status-xml\"\nmax_attempts = 2"),
            ),
        ],
        "",
    )
    .await;
    let json_id = daemon.send("json", "event", "{}").await;
    let notify_id = daemon.send("notify", "push", "{}").await;
    let sms_id = daemon
        .send(
            "sms",
            "sms_status",
            r#"{"id_sms":7,"time":"","sms":"send"}"#,
        )
        .await;

    // The plain HTTP rules look only at the status; the excerpt is kept, lossily decoded.
    daemon.wait_state(&json_id, "delivered", WAIT).await;
    let view = shown(&daemon, &json_id);
    assert_eq!(view.attempts[0].status, Some(200));
    assert!(
        view.attempts[0].body_excerpt.contains('\u{fffd}'),
        "{view:#?}"
    );
    for (id, words) in [(&notify_id, "protocol error"), (&sms_id, "not UTF-8")] {
        daemon.wait_state(id, "dead", WAIT).await;
        let view = shown(&daemon, id);
        assert_eq!(view.attempts.len(), 2, "{view:#?}");
        for attempt in &view.attempts {
            assert_eq!(attempt.status, Some(200));
            assert_eq!(attempt.result, AttemptResult::Retry, "{view:#?}");
            assert!(attempt.reason.contains(words), "{view:#?}");
        }
    }
    assert_alive(&daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_into_the_internal_network_is_not_followed() {
    // An allow-listed internal service the redirects point at: it must never see a connection.
    let internal = RawReceiver::start(|mut stream| async move {
        hold_until_closed(&mut stream).await;
    })
    .await;
    let receiver = TestReceiver::start(|r| {
        let data = body_of(r)["data"].clone();
        let code = data["code"].as_u64().unwrap() as u16;
        Reply::status(code).header("location", data["to"].as_str().unwrap())
    })
    .await;
    let daemon =
        TestDaemon::start(&[endpoint("redir", &receiver.url("/"), &hostile(""))], "").await;
    let targets = [
        (302, "http://169.254.169.254/latest/meta-data/".to_owned()),
        (301, "http://[fd00:ec2::254]/latest/meta-data/".to_owned()),
        (307, internal.url("/admin")),
        (308, format!("http://localhost:{}/", internal.addr.port())),
        (303, format!("http://2130706433:{}/", internal.addr.port())),
    ];
    let mut ids = Vec::new();
    for (code, to) in &targets {
        let payload = serde_json::json!({ "code": code, "to": to }).to_string();
        ids.push((*code, daemon.send("redir", "event", &payload).await));
    }
    for (code, id) in &ids {
        daemon.wait_state(id, "dead", WAIT).await;
        let view = shown(&daemon, id);
        assert_eq!(view.attempts.len(), 1, "a redirect is final: {view:#?}");
        let attempt = &view.attempts[0];
        assert_eq!(attempt.status, Some(*code));
        assert_eq!(attempt.result, AttemptResult::Final);
        assert_eq!(
            attempt.reason,
            format!("HTTP {code}: redirect not followed")
        );
    }
    assert_eq!(receiver.count(), targets.len());
    assert_eq!(internal.connections(), 0, "no redirect was followed");
    assert_alive(&daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_a_port_that_does_not_speak_tls_is_a_connect_failure() {
    // A plain HTTP server reading the ClientHello and answering 400, as nginx does.
    let plain = RawReceiver::start(|mut stream| async move {
        let mut hello = [0u8; 1024];
        if stream.read(&mut hello).await.is_ok() {
            let _ = stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
        hold_until_closed(&mut stream).await;
    })
    .await;
    // Bytes that start like a TLS record and go on as noise.
    let garbage = RawReceiver::start(|mut stream| async move {
        let mut hello = [0u8; 1024];
        if stream.read(&mut hello).await.is_ok() {
            let mut noise = vec![0x16, 0x03, 0x03, 0x00, 0x40];
            noise.extend((0u8..=255).cycle().take(4096));
            let _ = stream.write_all(&noise).await;
        }
        hold_until_closed(&mut stream).await;
    })
    .await;
    // Accepts and closes at once.
    let closer = RawReceiver::start(|stream| async move {
        drop(stream);
    })
    .await;
    let extra = hostile("max_attempts = 2\ntimeout_ms = 5000");
    let daemon = TestDaemon::start(
        &[
            endpoint("plain", &plain.https_url("/"), &extra),
            endpoint("garbage", &garbage.https_url("/"), &extra),
            endpoint("closer", &closer.https_url("/"), &extra),
        ],
        "",
    )
    .await;
    for (name, receiver) in [
        ("plain", &plain),
        ("garbage", &garbage),
        ("closer", &closer),
    ] {
        let id = daemon.send(name, "event", "{}").await;
        daemon.wait_state(&id, "dead", WAIT).await;
        let view = shown(&daemon, &id);
        assert_transport_retries(&view, "connect", 2);
        assert_eq!(receiver.connections(), 2, "{name}");
    }
    assert_alive(&daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_resolving_to_loopback_is_refused_without_connecting() {
    let receiver = RawReceiver::start(|stream| async move {
        answer_with(stream, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
    })
    .await;
    let url = format!("http://localhost:{}/hook", receiver.addr.port());
    let daemon = start_with_allow(&[endpoint("local", &url, &hostile(""))], "[]").await;
    let id = daemon.send("local", "event", "{}").await;
    daemon.wait_state(&id, "dead", WAIT).await;
    let view = shown(&daemon, &id);
    assert_eq!(view.attempts.len(), 1, "a refusal is final: {view:#?}");
    let attempt = &view.attempts[0];
    assert_eq!(attempt.error.as_deref(), Some("refused"));
    assert_eq!(attempt.result, AttemptResult::Final);
    assert!(
        attempt.reason.contains("loopback") && attempt.reason.contains("[destinations] allow"),
        "{attempt:?}"
    );
    assert_eq!(
        receiver.connections(),
        0,
        "the guard decided before connecting"
    );
    assert_alive(&daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_dropping_the_connection_mid_request_is_an_io_error_counted_once() {
    // Reads 16 bytes of the request, then closes with the rest unread (the kernel answers with a reset).
    let cut = RawReceiver::start(|mut stream| async move {
        let mut part = [0u8; 16];
        let _ = stream.read_exact(&mut part).await;
    })
    .await;
    // Reads the whole request, then closes without a word.
    let mute = RawReceiver::start(|mut stream| async move {
        let _ = read_request(&mut stream).await;
    })
    .await;
    let extra = hostile("max_attempts = 3");
    let daemon = TestDaemon::start(
        &[
            endpoint("cut", &cut.url("/"), &extra),
            endpoint("mute", &mute.url("/"), &extra),
        ],
        "",
    )
    .await;
    let big = format!(r#"{{"blob":"{}"}}"#, "y".repeat(512 * 1024));
    for (name, receiver) in [("cut", &cut), ("mute", &mute)] {
        let id = daemon.send(name, "event", &big).await;
        daemon.wait_state(&id, "dead", WAIT).await;
        let view = shown(&daemon, &id);
        assert_transport_retries(&view, "io", 3);
        assert_eq!(
            receiver.connections(),
            3,
            "{name}: exactly one connection per recorded attempt (nothing retried behind our back)"
        );
    }
    assert_alive(&daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_refuses_loopback_in_every_notation_end_to_end() {
    let receiver = RawReceiver::start(|stream| async move {
        answer_with(stream, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
    })
    .await;
    let port = receiver.addr.port();
    // (endpoint, URL, the category the refusal names, delivered once 127.0.0.0/8 is allowed)
    let cases = [
        (
            "decimal",
            format!("http://2130706433:{port}/"),
            "loopback",
            true,
        ),
        (
            "hex",
            format!("http://0x7f000001:{port}/"),
            "loopback",
            true,
        ),
        (
            "octal",
            format!("http://0177.0.0.1:{port}/"),
            "loopback",
            true,
        ),
        ("short", format!("http://127.1:{port}/"), "loopback", true),
        (
            "mapped",
            format!("http://[::ffff:127.0.0.1]:{port}/"),
            "loopback",
            true,
        ),
        (
            "unspecified",
            format!("http://0.0.0.0:{port}/"),
            "unspecified",
            false,
        ),
        (
            "nat64",
            format!("http://[64:ff9b::7f00:1]:{port}/"),
            "loopback",
            false,
        ),
        (
            "compatible",
            format!("http://[::127.0.0.1]:{port}/"),
            "loopback",
            false,
        ),
        (
            "v6-loopback",
            format!("http://[::1]:{port}/"),
            "loopback",
            false,
        ),
    ];
    let specs: Vec<EndpointSpec> = cases
        .iter()
        .map(|(name, url, ..)| endpoint(name, url, &hostile("")))
        .collect();
    let mut daemon = start_with_allow(&specs, "[]").await;
    let mut ids = Vec::new();
    for (name, ..) in &cases {
        ids.push(daemon.send(name, "event", "{}").await);
    }
    for ((name, _, category, _), id) in cases.iter().zip(&ids) {
        daemon.wait_state(id, "dead", WAIT).await;
        let view = shown(&daemon, id);
        assert_eq!(view.attempts.len(), 1, "{name}: {view:#?}");
        let attempt = &view.attempts[0];
        assert_eq!(attempt.error.as_deref(), Some("refused"), "{name}");
        assert_eq!(attempt.result, AttemptResult::Final, "{name}");
        assert!(
            attempt.reason.contains(&format!("{category} address")),
            "{name}: {attempt:?}"
        );
    }
    assert_eq!(receiver.connections(), 0, "no notation got a connection");
    assert_alive(&daemon).await;

    // The same URLs with 127.0.0.0/8 allowed: exactly the IPv4 notations of 127.0.0.1 are opened, so the
    // receiver was reachable all along and the refusals above were the guard's.
    daemon.kill();
    set_allow(&daemon, "[\"127.0.0.0/8\"]");
    daemon.spawn().await;
    let mut args = vec!["dlq", "replay"];
    args.extend(ids.iter().map(String::as_str));
    let (ok, _, stderr) = daemon.cli(&args);
    assert!(ok, "{stderr}");
    let mut opened = 0;
    for ((name, _, _, delivered), id) in cases.iter().zip(&ids) {
        if *delivered {
            daemon.wait_state(id, "delivered", WAIT).await;
            opened += 1;
        } else {
            let view = daemon.wait_state(id, "dead", WAIT).await;
            let last = view.attempts.last().unwrap();
            assert_eq!(view.attempts.len(), 2, "{name}: {view:#?}");
            assert_eq!(last.error.as_deref(), Some("refused"), "{name}: {view:#?}");
        }
    }
    assert_eq!(receiver.connections(), opened);
    assert_alive(&daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_hostile_receivers_leaks_no_descriptors() {
    const EACH: usize = 8;
    let silent = RawReceiver::start(|mut stream| async move {
        hold_until_closed(&mut stream).await;
    })
    .await;
    let cut = RawReceiver::start(|mut stream| async move {
        let mut part = [0u8; 16];
        let _ = stream.read_exact(&mut part).await;
    })
    .await;
    let dripping = RawReceiver::start(|mut stream| async move {
        if read_request(&mut stream).await.is_some()
            && stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 99999\r\n\r\n")
                .await
                .is_ok()
        {
            drip(&mut stream, b"x", Duration::from_millis(50)).await;
        }
    })
    .await;
    let written = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&written);
    let huge = RawReceiver::start(move |mut stream| {
        let counter = Arc::clone(&counter);
        async move {
            if read_request(&mut stream).await.is_some() {
                let head = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 20000000\r\n\r\n";
                stream_body(&mut stream, head, 20_000_000, &counter).await;
            }
        }
    })
    .await;
    let tls = RawReceiver::start(|stream| async move {
        drop(stream);
    })
    .await;
    let garbage = RawReceiver::start(|stream| async move {
        answer_with(
            stream,
            b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{{{{{{{{{",
        )
        .await;
    })
    .await;
    let extra = hostile("timeout_ms = 400\nmax_attempts = 2\nconcurrency = 4");
    let notify = hostile("timeout_ms = 400\nmax_attempts = 2\nformat = \"notification\"");
    let daemon = TestDaemon::start(
        &[
            endpoint("silent", &silent.url("/"), &extra),
            endpoint("cut", &cut.url("/"), &extra),
            endpoint("dripping", &dripping.url("/"), &extra),
            endpoint("huge", &huge.url("/"), &extra),
            endpoint("tls", &tls.https_url("/"), &extra),
            endpoint("garbage", &garbage.url("/"), &notify),
        ],
        "",
    )
    .await;
    // One round first, so lazily opened descriptors (sled files, the resolver, TLS roots) are counted in
    // the baseline.
    let warm = daemon.send("silent", "event", "{}").await;
    daemon.wait_state(&warm, "dead", WAIT).await;
    eventually(WAIT, || async { (silent.finished() == 2).then_some(()) })
        .await
        .unwrap();
    let before = descriptors(&daemon);

    let mut ids = Vec::new();
    for _ in 0..EACH {
        for name in ["silent", "cut", "dripping", "huge", "tls"] {
            ids.push(daemon.send(name, "event", "{}").await);
        }
        ids.push(daemon.send("garbage", "sms", "{}").await);
    }
    for id in &ids {
        let view = daemon.wait_state(id, "dead", WAIT).await;
        assert_eq!(view.attempts.len(), 2, "{view:#?}");
        assert!(
            view.attempts
                .iter()
                .all(|a| a.result == AttemptResult::Retry),
            "{view:#?}"
        );
    }
    let settled = eventually(WAIT, || async {
        (descriptors(&daemon).len() <= before.len()).then_some(())
    })
    .await;
    assert!(
        settled.is_some(),
        "descriptors before the burst: {before:?}\nafter: {:?}",
        descriptors(&daemon)
    );
    assert!(
        written.load(Ordering::SeqCst) < EACH * 2 * 20_000_000 / 4,
        "the 20 MB answers were cut at the cap"
    );
    assert_alive(&daemon).await;
}
