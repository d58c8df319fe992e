//! The durability point, observed from outside: under `strace`, the 202 answering an enqueue is written to
//! the socket only after an `fdatasync` of sled's log file that began after the request was read.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::harness::HOOKD;

/// One traced system call line of interest, in the order strace saw it finish.
#[derive(Debug, PartialEq)]
enum Event {
    RequestRead,
    LogSynced,
    AcceptedWritten,
}

/// Reads strace's output (`-f -y -s`) into the events that matter for the enqueue carrying `nonce`.
fn events(trace: &str, nonce: &str, log_file: &Path) -> Vec<(usize, Event)> {
    let log_file = log_file.display().to_string();
    let mut events = Vec::new();
    for (n, line) in trace.lines().enumerate() {
        let finished_ok =
            line.trim_end().ends_with("= 0") || line.contains(") = ") && !line.contains("= -1");
        if line.contains(nonce) && (line.contains("read(") || line.contains("recv")) && finished_ok
        {
            events.push((n, Event::RequestRead));
        } else if line.contains("fdatasync")
            && line.contains(&log_file)
            && line.trim_end().ends_with("= 0")
            || line.contains("<... fdatasync resumed>") && line.trim_end().ends_with("= 0")
        {
            events.push((n, Event::LogSynced));
        } else if line.contains("202 Accepted") && (line.contains("write") || line.contains("send"))
        {
            events.push((n, Event::AcceptedWritten));
        }
    }
    events
}

/// `hookd serve --config CONFIG` under `strace -f -y` tracing `syscalls` into `trace`; answers once the
/// daemon says it is serving.
async fn serve_traced(config: &Path, trace: &Path, syscalls: &str) -> std::process::Child {
    let mut strace = Command::new("strace")
        .args(["-f", "-y", "-s", "512", "-o"])
        .arg(trace)
        .args([
            "-e",
            &format!("trace={syscalls}"),
            HOOKD,
            "serve",
            "--config",
        ])
        .arg(config)
        .env("HOOKD_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = strace.stderr.take().unwrap();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut ready = Some(ready_tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("hookd is serving")
                && let Some(tx) = ready.take()
            {
                let _ = tx.send(());
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(60), ready_rx)
        .await
        .expect("the traced daemon starts")
        .unwrap();
    strace
}

/// Stops the traced daemon (not strace, so the trace is complete) and waits for strace to end.
fn stop_traced(mut strace: std::process::Child) {
    let pgrep = Command::new("pgrep")
        .args(["-P", &strace.id().to_string()])
        .output()
        .unwrap();
    let daemon_pid = String::from_utf8_lossy(&pgrep.stdout).trim().to_owned();
    assert!(!daemon_pid.is_empty(), "the daemon runs under strace");
    Command::new("kill")
        .args(["-TERM", &daemon_pid])
        .status()
        .unwrap();
    strace.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_is_acknowledged_only_after_its_data_is_fdatasynced() {
    if Command::new("strace").arg("-V").output().is_err() {
        panic!("strace is needed for this test (.ci/run installs it)");
    }
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let socket = dir.path().join("hookd.sock");
    let config = dir.path().join("hookd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {data_dir:?}\nsocket = {socket:?}\n[[endpoints]]\nname = \"sink\"\nurl = \"http://127.0.0.1:9/\"\n"
        ),
    )
    .unwrap();
    let trace_path = dir.path().join("trace.txt");
    let strace = serve_traced(
        &config,
        &trace_path,
        "fdatasync,fsync,read,recvfrom,recvmsg,write,writev,sendto,sendmsg",
    )
    .await;

    let nonce = format!("durability-{}", uuid::Uuid::now_v7());
    let client = reqwest::Client::builder()
        .unix_socket(socket.as_path())
        .build()
        .unwrap();
    let answer = client
        .post("http://hookd/v1/messages")
        .json(&json!({"endpoint": "sink", "type": "event", "payload": {"nonce": nonce}}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);

    stop_traced(strace);

    let trace = std::fs::read_to_string(&trace_path).unwrap();
    let events = events(&trace, &nonce, &data_dir.join("db"));
    let read_at = events
        .iter()
        .find(|(_, e)| *e == Event::RequestRead)
        .map(|(n, _)| *n)
        .unwrap_or_else(|| panic!("the request was never read in the trace: {events:?}"));
    let accepted_at = events
        .iter()
        .find(|(n, e)| *e == Event::AcceptedWritten && *n > read_at)
        .map(|(n, _)| *n)
        .unwrap_or_else(|| panic!("no 202 written after the request: {events:?}"));
    let synced_between = events
        .iter()
        .any(|(n, e)| *e == Event::LogSynced && *n > read_at && *n < accepted_at);
    assert!(
        synced_between,
        "the 202 (trace line {accepted_at}) was written without an fdatasync of {} after the request \
         (line {read_at}): {events:?}",
        data_dir.join("db").display()
    );
    println!(
        "durability: request read at trace line {read_at}, fdatasync of the log completed before the 202 at line {accepted_at}"
    );
}

/// The data dir marker is synced before it is renamed into place, and the rename and the data dir's own
/// entry are synced too: after a power loss the marker is whole, so the dir opens again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_dir_marker_is_synced_before_and_after_its_rename() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let socket = dir.path().join("hookd.sock");
    let config = dir.path().join("hookd.toml");
    std::fs::write(
        &config,
        format!("data_dir = {data_dir:?}\nsocket = {socket:?}\n"),
    )
    .unwrap();
    let trace_path = dir.path().join("trace.txt");
    let strace = serve_traced(
        &config,
        &trace_path,
        "fsync,fdatasync,rename,renameat,renameat2",
    )
    .await;
    stop_traced(strace);

    let trace = std::fs::read_to_string(&trace_path).unwrap();
    let lines: Vec<&str> = trace.lines().collect();
    let staged = format!("{}>", data_dir.join("hookd-data.new").display());
    let synced_staged = lines
        .iter()
        // strace may split a call in two lines ("<unfinished ...>", "<... resumed>"): its first names the file.
        .position(|l| l.contains("fsync(") && l.contains(&staged) && !l.contains("= -1"))
        .unwrap_or_else(|| panic!("the staged marker is never fsynced:\n{trace}"));
    let renamed = lines
        .iter()
        .position(|l| l.contains("rename") && l.contains("hookd-data.new") && !l.contains("= -1"))
        .unwrap_or_else(|| panic!("no rename of the marker:\n{trace}"));
    assert!(
        synced_staged < renamed,
        "synced before the rename:\n{trace}"
    );
    let data_dir_entry = format!("{}>", data_dir.display());
    let parent_entry = format!("{}>", dir.path().display());
    assert!(
        lines[renamed..]
            .iter()
            .any(|l| l.contains("fsync(") && l.contains(&data_dir_entry)),
        "the rename is synced (an fsync of the data dir after it):\n{trace}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("fsync(") && l.contains(&parent_entry)),
        "the data dir's entry in its parent is synced:\n{trace}"
    );
}
