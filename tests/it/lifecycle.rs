//! The daemon's life: a second daemon on the same data dir or the same socket, readiness told to systemd,
//! graceful stop, held messages, CLI failures.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use hookd::api::client::Client;

use crate::harness::{FAST_RETRY, HOOKD, Reply, TestDaemon, TestReceiver, cli_at, endpoint};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_data_dir_fails_clearly() {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let daemon = TestDaemon::start(&[endpoint("ok", &receiver.url("/"), FAST_RETRY)], "").await;
    let output = std::process::Command::new(HOOKD)
        .args(["serve", "--config"])
        .arg(&daemon.config_path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("in use by another hookd process"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The first daemon still serves on its socket.
    daemon.client().health().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_attempt_in_flight_finish_and_exits_zero() {
    let receiver = TestReceiver::start(|_| Reply::ok().delayed(Duration::from_millis(500))).await;
    let mut daemon =
        TestDaemon::start(&[endpoint("slow", &receiver.url("/"), FAST_RETRY)], "").await;
    let id = daemon.send("slow", "event", "{}").await;
    receiver.wait_for(1, WAIT).await;
    let status = daemon.terminate();
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        daemon.log()
    );
    assert!(
        !daemon.socket.exists(),
        "the socket file is removed on a clean stop"
    );
    daemon.spawn().await;
    let view = daemon.message(&id).await;
    assert_eq!(
        view.state.as_str(),
        "delivered",
        "the attempt in flight finished before exit"
    );
    assert_eq!(view.attempts.len(), 1);
    assert_eq!(receiver.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_delivery_line_is_written_by_the_time_the_daemon_exits() {
    // Log lines are written by a thread of their own (src/main.rs); a clean stop writes out what it holds.
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let mut daemon = TestDaemon::start(&[endpoint("ok", &receiver.url("/"), FAST_RETRY)], "").await;
    let mut ids = Vec::new();
    for _ in 0..200 {
        ids.push(daemon.send("ok", "event", "{}").await);
    }
    for id in &ids {
        daemon.wait_state(id, "delivered", WAIT).await;
    }
    let status = daemon.terminate();
    assert!(status.success(), "exit status {status:?}");
    let log = daemon.final_log();
    let delivered: Vec<&str> = log.lines().filter(|l| l.contains(" delivered")).collect();
    assert_eq!(delivered.len(), ids.len(), "one line per delivery:\n{log}");
    for id in &ids {
        assert!(
            delivered.iter().any(|line| line.contains(id.as_str())),
            "no delivery line for {id}:\n{log}"
        );
    }
    assert!(
        log.trim_end().ends_with("hookd stopped"),
        "the last line is the stop:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_an_endpoint_missing_from_the_config_are_held_not_dropped() {
    let receiver = TestReceiver::start(|_| Reply::hang()).await;
    let mut daemon = TestDaemon::start(
        &[endpoint(
            "gone",
            &receiver.url("/"),
            "concurrency = 1\ntimeout_ms = 60000",
        )],
        "",
    )
    .await;
    let first = daemon.send("gone", "event", "{}").await;
    let second = daemon.send("gone", "event", "{}").await;
    receiver.wait_for(1, WAIT).await;
    daemon.kill();
    let healthy = TestReceiver::start(|_| Reply::ok()).await;
    daemon.rewrite_config(&[endpoint("other", &healthy.url("/"), FAST_RETRY)]);
    daemon.spawn().await;
    for id in [&first, &second] {
        assert_eq!(daemon.message(id).await.state.as_str(), "held", "{id}");
    }
    let stats = daemon.client().stats().await.unwrap();
    assert_eq!(stats.held_endpoints, vec!["gone".to_owned()]);

    daemon.kill();
    receiver.set_script(|_| Reply::ok());
    daemon.rewrite_config(&[endpoint("gone", &receiver.url("/"), FAST_RETRY)]);
    daemon.spawn().await;
    daemon.wait_state(&first, "delivered", WAIT).await;
    daemon.wait_state(&second, "delivered", WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_fails_with_one_line_when_the_daemon_is_not_running_or_the_id_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = cli_at(&dir.path().join("none.sock"), &["status"]);
    assert!(!ok);
    assert!(stderr.contains("hookd is not running"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let daemon = TestDaemon::start(&[endpoint("ok", &receiver.url("/"), FAST_RETRY)], "").await;
    let (ok, _, stderr) = daemon.cli(&["msg", "show", "0190d3a2-0000-7000-8000-000000000000"]);
    assert!(!ok);
    assert!(stderr.contains("no message"), "{stderr}");
    let (ok, _, stderr) = daemon.cli(&["send", "--endpoint", "ok", "--type", "event", "{broken"]);
    assert!(!ok);
    assert!(stderr.contains("not valid JSON"), "{stderr}");
    let (ok, stdout, _) = daemon.cli(&["endpoints", "list"]);
    assert!(ok);
    assert!(stdout.contains("ok") && stdout.contains("json"), "{stdout}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&daemon.socket).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the socket is private to its owner");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_the_grace_with_a_hanging_receiver_and_a_hanging_handshake() {
    // One receiver hangs on every request: the json endpoint's attempt and the dlr-json handshake.
    let hanging = TestReceiver::start(|_| Reply::hang()).await;
    let slow_handshake = "format = \"dlr-json\"\ntimeout_ms = 60000\nverification = { validation_key = \"k\" }\nauth = { type = \"bearer\", token = \"t\" }";
    let mut daemon = TestDaemon::start(
        &[
            endpoint("stuck", &hanging.url("/json"), "timeout_ms = 60000"),
            endpoint("dlr", &hanging.url("/dlr"), slow_handshake),
        ],
        "",
    )
    .await;
    let in_flight = daemon.send("stuck", "event", "{}").await;
    let waiting = daemon
        .send("dlr", "dlr", r#"{"id":"x:1","status":"DELIVRD"}"#)
        .await;
    // Both requests (the attempt and the handshake) reached the receiver and hang there.
    hanging.wait_for(2, Duration::from_secs(30)).await;

    let started = std::time::Instant::now();
    let status = daemon.terminate();
    let took = started.elapsed();
    assert!(status.success(), "exit code 0: {status:?}");
    // The harness's grace is 5 s; the handshake alone would hold the exit for its 60 s timeout.
    assert!(
        took < Duration::from_millis(6_000),
        "exited within the 5 s grace + 1 s (took {took:?}):\n{}",
        daemon.log()
    );
    // Nothing unfinished is lost: both are queued again.
    daemon.spawn().await;
    for id in [&in_flight, &waiting] {
        let state = daemon.message(id).await.state.to_string();
        assert!(
            state == "queued" || state == "held" || state == "in_flight",
            "{id}: {state}"
        );
        assert_eq!(
            daemon.message(id).await.attempts.len(),
            0,
            "no attempt counted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_never_takes_a_socket_another_daemon_answers_on() {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let mut daemon = TestDaemon::start(&[endpoint("ok", &receiver.url("/"), FAST_RETRY)], "").await;
    let other = tempfile::tempdir().unwrap();
    let data_dir = other.path().join("data");
    let config = other.path().join("hookd.toml");
    std::fs::write(
        &config,
        format!("data_dir = {data_dir:?}\nsocket = {:?}\n", daemon.socket),
    )
    .unwrap();
    let output = std::process::Command::new(HOOKD)
        .args(["serve", "--config"])
        .arg(&config)
        .env("HOOKD_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("socket {} is in use", daemon.socket.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("removed a stale socket file"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(!data_dir.exists(), "the second daemon created nothing");
    // The first daemon still answers on its socket.
    daemon.client().health().await.unwrap();

    // A socket nothing answers on (its daemon was killed) is stale: the next daemon takes it over.
    daemon.kill();
    assert!(daemon.socket.exists());
    daemon.spawn().await;
    daemon.client().health().await.unwrap();
    assert!(daemon.log().contains("removed a stale socket file"));
}

/// A `hookd serve` child, killed if the test ends early.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `hookd serve` on a fresh config in `dir` with `NOTIFY_SOCKET=notify_socket`, and checks what the
/// service manager hears: `READY=1` once the API answers, `STOPPING=1` at SIGTERM.
async fn readiness_is_notified(dir: &Path, listener: UnixDatagram, notify_socket: &str) {
    let socket = dir.join("hookd.sock");
    let config = dir.join("hookd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nsocket = {socket:?}\n[destinations]\nallow = [\"127.0.0.0/8\"]\n\
             [[endpoints]]\nname = \"ok\"\nurl = \"http://127.0.0.1:9/\"\n",
            dir.join("data")
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("hookd.log")).unwrap();
    let child = std::process::Command::new(HOOKD)
        .args(["serve", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", notify_socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let serving = Serving(child);
    listener.set_read_timeout(Some(WAIT)).unwrap();
    let receive = |listener: UnixDatagram| {
        tokio::task::spawn_blocking(move || {
            let mut buffer = [0u8; 512];
            let received = listener.recv(&mut buffer).map(|n| buffer[..n].to_vec());
            (listener, received)
        })
    };
    let (listener, ready) = receive(listener).await.unwrap();
    let ready = String::from_utf8(ready.unwrap_or_else(|e| {
        panic!(
            "no notification within {WAIT:?} ({e}); log:\n{}",
            std::fs::read_to_string(dir.join("hookd.log")).unwrap_or_default()
        )
    }))
    .unwrap();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    // Ready means ready: the API answers at once.
    Client::new(&socket).unwrap().health().await.unwrap();

    let pid = serving.0.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let (_, stopping) = receive(listener).await.unwrap();
    let stopping = String::from_utf8(stopping.unwrap()).unwrap();
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    let mut serving = serving;
    let status = serving.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_notifies_systemd_ready_once_the_api_answers_and_stopping_at_stop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let listener = UnixDatagram::bind(&path).unwrap();
    readiness_is_notified(dir.path(), listener, path.to_str().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_notifies_an_abstract_notify_socket_too() {
    use std::os::linux::net::SocketAddrExt;
    let dir = tempfile::tempdir().unwrap();
    let name = format!(
        "hookd-test-notify-{}-{}",
        std::process::id(),
        dir.path().file_name().unwrap().to_string_lossy()
    );
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let listener = UnixDatagram::bind_addr(&address).unwrap();
    readiness_is_notified(dir.path(), listener, &format!("@{name}")).await;
}
