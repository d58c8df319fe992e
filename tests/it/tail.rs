//! `hookd tail`: attempt outcomes followed live from `GET /v1/events`, as JSON lines or for people; filters;
//! a clean exit on Ctrl-C and on a closed stdout; the stream ends (and does not hold up) a daemon shutdown.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::harness::{FAST_RETRY, HOOKD, Reply, TestDaemon, TestReceiver, endpoint};

const WAIT: Duration = Duration::from_secs(30);

/// A running `hookd tail` with its output lines delivered as they come.
struct Tail {
    /// Taken by [`Tail::exit`].
    child: Option<Child>,
    stdout: mpsc::UnboundedReceiver<String>,
    stderr: mpsc::UnboundedReceiver<String>,
}

impl Tail {
    /// Starts `hookd tail ARGS` and waits until it says it follows the feed (from then on, nothing is missed).
    async fn start(socket: &Path, args: &[&str]) -> Tail {
        Tail::start_reading(socket, args, true).await
    }

    /// As [`Tail::start`]; without `read_stdout`, the reading end of its stdout is closed at once.
    async fn start_reading(socket: &Path, args: &[&str], read_stdout: bool) -> Tail {
        let mut child = Command::new(HOOKD)
            .arg("tail")
            .args(args)
            .env("HOOKD_SOCKET", socket)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pipe = child.stdout.take().unwrap();
        let stdout = if read_stdout {
            lines(pipe)
        } else {
            drop(pipe);
            mpsc::unbounded_channel().1
        };
        let stderr = lines(child.stderr.take().unwrap());
        let mut tail = Tail {
            child: Some(child),
            stdout,
            stderr,
        };
        let note = tail.next_stderr().await;
        assert!(note.contains("following attempt events"), "{note}");
        tail
    }

    async fn next_stdout(&mut self) -> String {
        tokio::time::timeout(WAIT, self.stdout.recv())
            .await
            .expect("tail printed nothing in time")
            .expect("tail closed its stdout")
    }

    async fn next_stderr(&mut self) -> String {
        tokio::time::timeout(WAIT, self.stderr.recv())
            .await
            .expect("tail said nothing in time")
            .expect("tail closed its stderr")
    }

    /// Reads JSON lines until `done` says the events seen so far are enough.
    async fn read_until(
        &mut self,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let mut seen = Vec::new();
        while !done(&seen) {
            let line = self.next_stdout().await;
            seen.push(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}")));
        }
        seen
    }

    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([signal, &self.child.as_ref().unwrap().id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Waits for the process to end (off the async threads).
    /// Waits for the process to end (off the async threads); answers its status and the rest of its stderr.
    async fn exit(mut self) -> (ExitStatus, Vec<String>) {
        let mut child = self.child.take().unwrap();
        let status = tokio::time::timeout(WAIT, tokio::task::spawn_blocking(move || child.wait()))
            .await
            .expect("tail did not exit in time")
            .unwrap()
            .unwrap();
        // The pipe's reader thread ends at the process's end; collect what it still forwards.
        let mut rest = Vec::new();
        while let Ok(Some(line)) = tokio::time::timeout(WAIT, self.stderr.recv()).await {
            rest.push(line);
        }
        (status, rest)
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Forwards each line of a pipe to a channel, from a thread.
fn lines(pipe: impl std::io::Read + Send + 'static) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn is_event(e: &serde_json::Value, id: &str, result: &str) -> bool {
    e["message_id"] == id && e["result"] == result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_json_streams_every_outcome_and_filters_by_result() {
    // Each message fails once with 503, then is accepted.
    let flaky = TestReceiver::start(|r| match r.nth_for_id {
        1 => Reply::status(503),
        _ => Reply::ok(),
    })
    .await;
    let refusing = TestReceiver::start(|_| Reply::status(400)).await;
    let daemon = TestDaemon::start(
        &[
            endpoint("flaky", &flaky.url("/"), FAST_RETRY),
            endpoint("refusing", &refusing.url("/"), FAST_RETRY),
        ],
        "",
    )
    .await;
    let mut all = Tail::start(&daemon.socket, &["--json"]).await;
    let mut dead_only = Tail::start(&daemon.socket, &["--json", "--result", "dead"]).await;

    let retried = daemon.send("flaky", "order.created", r#"{"n":1}"#).await;
    let dead = daemon.send("refusing", "order.created", r#"{"n":2}"#).await;
    let seen = all
        .read_until(|seen| {
            seen.iter().any(|e| is_event(e, &retried, "delivered"))
                && seen.iter().any(|e| is_event(e, &dead, "dead"))
        })
        .await;

    let retry = seen
        .iter()
        .find(|e| is_event(e, &retried, "retry"))
        .expect("the 503 shows as a retry");
    assert_eq!(retry["endpoint"], "flaky");
    assert_eq!(retry["type"], "order.created");
    assert_eq!(retry["attempt"], 1);
    assert_eq!(retry["status"], 503);
    assert_eq!(retry["verdict"], "retry");
    assert!(retry["retry_at"].as_u64().unwrap() >= retry["at"].as_u64().unwrap());
    let delivered = seen
        .iter()
        .find(|e| is_event(e, &retried, "delivered"))
        .unwrap();
    assert_eq!(delivered["attempt"], 2);
    assert_eq!(delivered["status"], 200);
    let dead_event = seen.iter().find(|e| is_event(e, &dead, "dead")).unwrap();
    assert_eq!(dead_event["status"], 400);
    assert_eq!(dead_event["verdict"], "final");
    assert_eq!(dead_event["dead_reason"], "HTTP 400");
    assert!(
        seen.iter().all(|e| e["duration_ms"].is_u64()),
        "every line is an event: {seen:?}"
    );
    assert_eq!(
        seen.iter()
            .filter(|e| e["message_id"] == retried.as_str())
            .count(),
        2,
        "one event per attempt"
    );

    // The filtered tail saw the same feed, but its first (and only) line is the dead letter.
    let first = dead_only.read_until(|seen| !seen.is_empty()).await;
    assert!(is_event(&first[0], &dead, "dead"), "{first:?}");

    // Ctrl-C ends a tail quietly and successfully.
    all.signal("-INT");
    let (status, stderr) = all.exit().await;
    assert!(status.success(), "{status:?} {stderr:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_lines_for_people_and_ends_with_the_daemon() {
    let ok = TestReceiver::start(|_| Reply::ok()).await;
    let other = TestReceiver::start(|_| Reply::ok()).await;
    let mut daemon = TestDaemon::start(
        &[
            endpoint("ok", &ok.url("/"), FAST_RETRY),
            endpoint("other", &other.url("/"), FAST_RETRY),
        ],
        "",
    )
    .await;
    let (unknown, _, stderr) = daemon.cli(&["tail", "--endpoint", "nope"]);
    assert!(!unknown);
    assert!(stderr.contains("unknown_endpoint"), "{stderr}");

    let mut tail = Tail::start(&daemon.socket, &["--endpoint", "ok"]).await;
    let skipped = daemon.send("other", "event", "{}").await;
    let id = daemon.send("ok", "event", "{}").await;
    let line = tail.next_stdout().await;
    assert!(!line.contains(&skipped), "filtered by endpoint: {line}");
    for part in [id.as_str(), "  ok  ", "#1", "200", "-> delivered"] {
        assert!(line.contains(part), "{part:?} missing in {line:?}");
    }

    // Shutting the daemon down ends the stream rather than waiting for it.
    let stopped = tokio::time::timeout(
        WAIT,
        tokio::task::spawn_blocking(move || {
            let status = daemon.terminate();
            (daemon, status)
        }),
    )
    .await
    .expect("the daemon stopped despite an open tail")
    .unwrap();
    assert!(stopped.1.success());
    let (status, stderr) = tail.exit().await;
    assert!(!status.success());
    assert!(
        stderr.iter().any(|l| l.contains("ended the event stream")),
        "{stderr:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_exits_cleanly_when_its_reader_goes_away() {
    let ok = TestReceiver::start(|_| Reply::ok()).await;
    let daemon = TestDaemon::start(&[endpoint("ok", &ok.url("/"), FAST_RETRY)], "").await;
    // Like `hookd tail | head -0`: the reading end of stdout is closed before anything is printed.
    let tail = Tail::start_reading(&daemon.socket, &["--json"], false).await;
    let id = daemon.send("ok", "event", "{}").await;
    daemon.wait_state(&id, "delivered", WAIT).await;
    let (status, stderr) = tail.exit().await;
    assert!(status.success(), "{status:?} {stderr:?}");
    assert!(stderr.is_empty(), "no panic, no complaint: {stderr:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_shows_an_endpoints_life_pause_resume_and_its_circuit_opening() {
    let failing = TestReceiver::start(|_| Reply::status(503)).await;
    let quiet = TestReceiver::start(|_| Reply::ok()).await;
    let extra = format!(
        "max_attempts = 100\nconcurrency = 1\ncircuit_breaker = {{ failure_threshold = 2, cooldown = \"60s\" }}\n{FAST_RETRY}"
    );
    let daemon = TestDaemon::start(
        &[
            endpoint("failing", &failing.url("/"), &extra),
            endpoint("quiet", &quiet.url("/"), FAST_RETRY),
        ],
        "",
    )
    .await;
    let mut all = Tail::start(&daemon.socket, &["--json"]).await;
    // `--result` filters attempt lines only: endpoint lines still come; `--endpoint` filters both.
    let mut dead_only = Tail::start(
        &daemon.socket,
        &["--json", "--result", "dead", "--endpoint", "quiet"],
    )
    .await;
    let mut people = Tail::start(&daemon.socket, &["--endpoint", "quiet"]).await;

    let (ok, _, stderr) = daemon.cli(&["endpoints", "pause", "quiet"]);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = daemon.cli(&["endpoints", "resume", "quiet"]);
    assert!(ok, "{stderr}");
    daemon.send("failing", "event", "{}").await;

    let is = |e: &serde_json::Value, event: &str, endpoint: &str| {
        e["event"] == event && e["endpoint"] == endpoint
    };
    let seen = all
        .read_until(|seen| {
            seen.iter().any(|e| is(e, "paused", "quiet"))
                && seen.iter().any(|e| is(e, "resumed", "quiet"))
                && seen.iter().any(|e| is(e, "circuit_opened", "failing"))
        })
        .await;
    let opened = seen
        .iter()
        .find(|e| is(e, "circuit_opened", "failing"))
        .unwrap();
    assert!(opened["at"].is_u64(), "{opened}");
    assert!(
        opened["detail"]
            .as_str()
            .unwrap()
            .contains("2 consecutive failures"),
        "{opened}"
    );
    let paused_at = seen.iter().position(|e| is(e, "paused", "quiet")).unwrap();
    let resumed_at = seen.iter().position(|e| is(e, "resumed", "quiet")).unwrap();
    assert!(paused_at < resumed_at, "{seen:?}");
    // Attempt lines keep their shape (no `event`).
    let attempt = seen
        .iter()
        .find(|e| e["message_id"].is_string())
        .expect("the failing attempts show too");
    assert!(attempt.get("event").is_none(), "{attempt}");
    assert_eq!(attempt["result"], "retry");

    let filtered = dead_only.read_until(|seen| seen.len() >= 2).await;
    assert!(is(&filtered[0], "paused", "quiet"), "{filtered:?}");
    assert!(is(&filtered[1], "resumed", "quiet"), "{filtered:?}");

    let line = people.next_stdout().await;
    assert!(line.contains("quiet") && line.contains("paused"), "{line}");
    let line = people.next_stdout().await;
    assert!(line.contains("quiet") && line.contains("resumed"), "{line}");
}
