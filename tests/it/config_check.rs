//! `hookd config check`: a config validated without starting the daemon, with warnings about refused
//! destinations and run-time overrides; and the shipped config's walk-through endpoint, which shows a retry
//! and a dead letter within a minute.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use hookd::api::client::Client;
use hookd::config::Config;
use hookd::retry::{CycleFacts, Decision, Verdict, decide};

use crate::harness::{FAST_RETRY, HOOKD, Reply, TestDaemon, TestReceiver, endpoint};

const WAIT: Duration = Duration::from_secs(30);

/// `hookd config check --config PATH`: (exit code, stdout, stderr).
fn check(config: &Path) -> (Option<i32>, String, String) {
    let output = Command::new(HOOKD)
        .args(["config", "check", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn config_check_validates_without_starting_and_warns_about_refused_destinations() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let socket = dir.path().join("hookd.sock");
    let config = dir.path().join("hookd.toml");
    let head = format!(
        "data_dir = {data_dir:?}\nsocket = {socket:?}\n[destinations]\nallow = [\"127.0.0.0/8\"]\n"
    );
    std::fs::write(
        &config,
        format!(
            "{head}[[endpoints]]\nname = \"local\"\nurl = \"http://127.0.0.1:9/\"\n\
             [[endpoints]]\nname = \"internal\"\nurl = \"http://10.1.2.3/hooks?key=s3cret\"\n\
             [[endpoints]]\nname = \"named\"\nurl = \"https://example.com/hooks\"\n"
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = check(&config);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout.trim(),
        format!(
            "{}: valid: 3 endpoints declared, data dir {}, socket {}",
            config.display(),
            data_dir.display(),
            socket.display()
        )
    );
    let warnings: Vec<&str> = stderr.lines().collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("endpoint `internal`")
            && warnings[0].contains("10.1.2.3")
            && warnings[0].contains("[destinations] allow"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("s3cret"),
        "the URL's secrets are not shown"
    );
    assert!(!data_dir.exists() && !socket.exists(), "nothing started");

    // A bad value: exit 2 and the config error, naming the key.
    std::fs::write(
        &config,
        format!(
            "{head}[[endpoints]]\nname = \"a\"\nurl = \"http://127.0.0.1/\"\nmax_age = \"soon\"\n"
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = check(&config);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("endpoints[0].max_age"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    let (code, _, stderr) = check(&dir.path().join("absent.toml"));
    assert_eq!(code, Some(2), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_warns_about_run_time_overrides_once_no_daemon_holds_the_data_dir() {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let mut daemon = TestDaemon::start(
        &[
            endpoint("tuned", &receiver.url("/"), FAST_RETRY),
            endpoint("plain", &receiver.url("/"), FAST_RETRY),
        ],
        "",
    )
    .await;
    let (ok, _, stderr) = daemon.cli(&["endpoints", "set", "tuned", "--max-attempts", "3"]);
    assert!(ok, "{stderr}");

    // While the daemon holds the data dir, the overrides are not read: a note says so.
    let (code, stdout, stderr) = check(&daemon.config_path);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("valid: 2 endpoints declared"), "{stdout}");
    assert!(
        stderr.contains("held by a running hookd") && stderr.contains("not checked"),
        "{stderr}"
    );
    daemon.client().health().await.unwrap();

    assert!(daemon.terminate().success());
    let (code, _, stderr) = check(&daemon.config_path);
    assert_eq!(code, Some(0), "{stderr}");
    let warnings: Vec<&str> = stderr.lines().collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("endpoint `tuned`")
            && warnings[0].contains("max_attempts")
            && warnings[0].contains("hookd endpoints reset tuned"),
        "{stderr}"
    );

    // The check let go of the store: the daemon starts again, its override still there.
    daemon.spawn().await;
    assert_eq!(
        daemon
            .client()
            .endpoint("tuned")
            .await
            .unwrap()
            .max_attempts,
        3
    );
}

fn shipped_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/hookd.toml")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough_endpoint_retries_in_seconds_and_dead_letters_within_a_minute() {
    let shipped = shipped_config();
    let (code, stdout, stderr) = check(&shipped);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("valid:"), "{stdout}");
    assert!(
        stderr.is_empty(),
        "no warnings about the shipped config: {stderr}"
    );

    // Its schedule: a retry within seconds, dead within a minute (every attempt fails at once: nothing
    // listens on its port).
    let config = Config::load(&shipped).unwrap();
    let fast = config
        .endpoint("example-fast")
        .expect("the walk-through's endpoint");
    let connect = Verdict::Retry {
        reason: "connect".into(),
        retry_after: None,
    };
    let mut now = 0;
    let mut retries = Vec::new();
    for attempts in 1.. {
        let facts = CycleFacts {
            attempts,
            cycle_started_at: 0,
            now,
        };
        match decide(&fast.retry, facts, &connect, config.max_retry_after, 0.999) {
            Decision::RetryAt(at) => {
                retries.push(at - now);
                now = at;
            }
            Decision::Dead { reason } => {
                assert!(reason.starts_with("gave up after"), "{reason}");
                break;
            }
            Decision::Delivered => unreachable!(),
        }
    }
    assert!(retries.len() >= 2, "{retries:?}");
    assert!(
        retries[0] <= 10_000,
        "the first retry within seconds: {retries:?}"
    );
    assert!(now <= 60_000, "dead within a minute: {now} ms, {retries:?}");

    // And the real daemon on the shipped config does that: the first attempt at once, the next one due
    // the schedule's first delay later. Run in a temp dir (the config's paths are relative).
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(WAIT)).unwrap();
    let _daemon = KillOnDrop(
        Command::new(HOOKD)
            .args(["serve", "--config"])
            .arg(&shipped)
            .current_dir(dir.path())
            .env("NOTIFY_SOCKET", &notify_path)
            .env("HOOKD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ready = tokio::task::spawn_blocking(move || {
        let mut buffer = [0u8; 256];
        notify.recv(&mut buffer).map(|n| buffer[..n].to_vec())
    })
    .await
    .unwrap();
    let socket = dir.path().join(&config.socket);
    let outcome = async {
        let ready = String::from_utf8(ready.expect("READY=1 from the daemon")).unwrap();
        assert!(ready.contains("READY=1"), "{ready}");
        let client = Client::new(&socket).unwrap();
        let id = client
            .enqueue(&hookd::api::wire::EnqueueRequest {
                endpoint: "example-fast".into(),
                kind: "order.created".into(),
                payload: serde_json::value::RawValue::from_string(r#"{"order_id":43}"#.into())
                    .unwrap(),
                idempotency_key: None,
            })
            .await
            .unwrap()
            .id;
        let view = crate::harness::eventually(WAIT, || {
            let client = client.clone();
            let id = id.clone();
            async move {
                let view = client.message(&id).await.ok()?;
                (view.attempts.len() == 1 && view.next_attempt_at.is_some()).then_some(view)
            }
        })
        .await
        .expect("the first attempt fails and a retry is scheduled");
        assert_eq!(
            view.attempts[0].error.as_deref(),
            Some("connect"),
            "{view:?}"
        );
        let due_in = view.next_attempt_at.unwrap() - view.attempts[0].started_at;
        assert!(
            (retries[0]..retries[0] + 2_000).contains(&due_in),
            "the retry is due {due_in} ms after the attempt"
        );
    };
    tokio::time::timeout(WAIT, outcome)
        .await
        .expect("the walk-through ran");
}

/// A child process killed when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
