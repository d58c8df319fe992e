//! The store under a full disk, a full queue, and a data dir that is not hookd's: 503s that store nothing,
//! deliveries that go on, and recovery when space returns. The disk tests use a real, small tmpfs (they need
//! root to mount it, as on CI; elsewhere they say so and stop).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::harness::{FAST_RETRY, HOOKD, Reply, TestDaemon, TestReceiver, endpoint, eventually};

const WAIT: Duration = Duration::from_secs(30);

/// A tmpfs of a few MiB, unmounted on drop.
struct SmallDisk {
    _dir: tempfile::TempDir,
    mount: PathBuf,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("fs");
        std::fs::create_dir(&mount).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mount)
            .status()
            .ok()?;
        if !status.success() {
            eprintln!("NOT RUN: mounting a tmpfs needs root (CI runs as root)");
            return None;
        }
        Some(SmallDisk { _dir: dir, mount })
    }

    fn data_dir(&self) -> PathBuf {
        self.mount.join("data")
    }

    fn free_bytes(&self) -> u64 {
        let stats = nix::sys::statvfs::statvfs(&self.mount).unwrap();
        stats.blocks_available() * stats.fragment_size()
    }

    /// Fills the disk until `leave` bytes are free.
    fn fill_leaving(&self, leave: u64) -> PathBuf {
        let filler = self.mount.join("filler");
        let size = self.free_bytes().saturating_sub(leave);
        let bytes = vec![0x5a_u8; 64 * 1024];
        let mut file = std::fs::File::create(&filler).unwrap();
        let mut written = 0;
        while written < size {
            let n = bytes.len().min((size - written) as usize);
            match std::io::Write::write(&mut file, &bytes[..n]) {
                Ok(n) => written += n as u64,
                Err(_) => break,
            }
        }
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

async fn enqueue_raw(daemon: &TestDaemon, n: u32) -> reqwest::Response {
    daemon
        .raw()
        .post("http://hookd/v1/messages")
        .json(&json!({"endpoint": "slow", "type": "event", "payload": {"n": n}}))
        .send()
        .await
        .unwrap()
}

async fn pending(daemon: &TestDaemon) -> u64 {
    let stats = daemon.client().stats().await.unwrap();
    stats.totals.queued + stats.totals.in_flight
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nearly_full_disk_refuses_enqueues_keeps_delivering_and_recovers() {
    let Some(disk) = SmallDisk::mount("24m") else {
        return;
    };
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let daemon = TestDaemon::start_with_data_dir(
        &[endpoint("slow", &receiver.url("/"), FAST_RETRY)],
        "min_free_disk_bytes = 4194304\nsled_cache_bytes = 1048576",
        Some(&disk.data_dir()),
    )
    .await;
    let (ok, _, stderr) = daemon.cli(&["endpoints", "pause", "slow"]);
    assert!(ok, "{stderr}");
    let mut accepted = Vec::new();
    for n in 0..20 {
        accepted.push(
            daemon
                .send("slow", "event", &format!(r#"{{"n":{n}}}"#))
                .await,
        );
    }

    let filler = disk.fill_leaving(2 * 1024 * 1024);
    let before = pending(&daemon).await;
    let refused = enqueue_raw(&daemon, 99).await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "disk_full", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("min_free_disk_bytes")
    );
    assert_eq!(
        pending(&daemon).await,
        before,
        "a refused enqueue stores nothing"
    );

    // What was accepted is still delivered while the disk is nearly full.
    let (ok, _, stderr) = daemon.cli(&["endpoints", "resume", "slow"]);
    assert!(ok, "{stderr}");
    for id in &accepted {
        daemon.wait_state(id, "delivered", WAIT).await;
    }

    // Space returns: enqueues are accepted again without a restart.
    std::fs::remove_file(filler).unwrap();
    let accepted_again = enqueue_raw(&daemon, 100).await;
    assert_eq!(accepted_again.status(), 202);
    let id = accepted_again.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    daemon.wait_state(&id, "delivered", WAIT).await;
}

async fn health(daemon: &TestDaemon) -> Option<serde_json::Value> {
    let answer = daemon
        .raw()
        .get("http://hookd/v1/health")
        .send()
        .await
        .ok()?;
    answer.json().await.ok()
}

/// Waits until `/v1/health` answers with `status`; returns the answer.
async fn health_becomes(daemon: &TestDaemon, status: &str) -> serde_json::Value {
    eventually(WAIT, || async {
        health(daemon).await.filter(|h| h["status"] == status)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "health did not become {status} within {WAIT:?}; log:\n{}",
            daemon.log()
        )
    })
}

/// The log says everything: no line lost on the way out, no panic.
fn assert_log_whole(log: &str) {
    assert!(!log.contains("Unable to write an event"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_error_keeps_the_daemon_up_degraded_and_it_reopens_the_store_when_space_returns() {
    let Some(disk) = SmallDisk::mount("24m") else {
        return;
    };
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let mut daemon = TestDaemon::start_with_data_dir(
        &[endpoint("slow", &receiver.url("/"), FAST_RETRY)],
        // No watermark: let the disk really fill up under sled.
        "min_free_disk_bytes = 0\nsled_cache_bytes = 1048576",
        Some(&disk.data_dir()),
    )
    .await;
    let (ok, _, stderr) = daemon.cli(&["endpoints", "pause", "slow"]);
    assert!(ok, "{stderr}");
    let filler = disk.fill_leaving(0);
    let mut acknowledged = Vec::new();
    let mut refused = None;
    for n in 0..5_000 {
        let answer = enqueue_raw(&daemon, n).await;
        match answer.status().as_u16() {
            202 => acknowledged.push(
                answer.json::<serde_json::Value>().await.unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ),
            503 => {
                refused = Some(answer.json::<serde_json::Value>().await.unwrap());
                break;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    let refused = refused.expect("a full disk must end in a 503");
    assert_eq!(refused["error"]["code"], "store_unavailable", "{refused}");

    // The daemon stays up: health says why, status and reads answer, every write is refused.
    let degraded = health_becomes(&daemon, "degraded").await;
    let reason = degraded["store_error"].as_str().unwrap().to_owned();
    assert!(reason.contains("No space left on device"), "{degraded}");
    let (ok, stdout, stderr) = daemon.cli(&["status"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("slow"), "{stdout}");
    if let Some(first) = acknowledged.first() {
        daemon.message(first).await;
    }
    let again = enqueue_raw(&daemon, 9_999).await;
    assert_eq!(again.status(), 503);
    let body: serde_json::Value = again.json().await.unwrap();
    assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
    let (ok, _, stderr) = daemon.cli(&["endpoints", "resume", "slow"]);
    assert!(!ok, "a write while the store is down is refused");
    assert!(stderr.contains("store_unavailable"), "{stderr}");
    let log = daemon.log();
    assert!(
        log.contains("store can no longer make writes durable"),
        "{log}"
    );
    assert!(log.contains(&reason), "the log keeps the reason: {log}");

    // Space returns: the daemon opens its store again by itself and delivers everything acknowledged.
    std::fs::remove_file(filler).unwrap();
    health_becomes(&daemon, "ok").await;
    let (ok, _, stderr) = daemon.cli(&["endpoints", "resume", "slow"]);
    assert!(ok, "{stderr}");
    let after = enqueue_raw(&daemon, 10_000).await;
    assert_eq!(after.status(), 202);
    acknowledged.push(
        after.json::<serde_json::Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    for id in &acknowledged {
        daemon.wait_state(id, "delivered", WAIT).await;
        assert!(
            !receiver.requests_for(id).is_empty(),
            "{id} reached the receiver"
        );
    }
    println!(
        "disk full: {} acknowledged before the 503 and after, all delivered without a restart",
        acknowledged.len()
    );

    // A start while the disk is full serves degraded instead of exiting; SIGTERM then stops it cleanly.
    let status = daemon.terminate();
    assert!(status.success(), "{status}");
    let filler = disk.fill_leaving(0);
    daemon.spawn().await;
    let degraded = health_becomes(&daemon, "degraded").await;
    assert!(degraded["store_error"].is_string(), "{degraded}");
    assert_eq!(enqueue_raw(&daemon, 10_001).await.status(), 503);
    let status = daemon.terminate();
    assert!(status.success(), "SIGTERM while degraded exits 0: {status}");

    // Started degraded, it opens the store once space returns.
    daemon.spawn().await;
    health_becomes(&daemon, "degraded").await;
    std::fs::remove_file(filler).unwrap();
    health_becomes(&daemon, "ok").await;
    let late = enqueue_raw(&daemon, 10_002).await;
    assert_eq!(late.status(), 202);
    let id = late.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    daemon.wait_state(&id, "delivered", WAIT).await;
    let status = daemon.terminate();
    assert!(status.success(), "{status}");
    let log = daemon.final_log();
    assert!(log.contains("hookd is serving without its store"), "{log}");
    assert_log_whole(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_max_queue_depth_enqueues_get_503_with_retry_after_and_nothing_is_dropped() {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let daemon = TestDaemon::start(
        &[endpoint("slow", &receiver.url("/"), FAST_RETRY)],
        "max_queue_depth = 5",
    )
    .await;
    let (ok, _, stderr) = daemon.cli(&["endpoints", "pause", "slow"]);
    assert!(ok, "{stderr}");
    let mut accepted = Vec::new();
    for n in 0..5 {
        accepted.push(
            daemon
                .send("slow", "event", &format!(r#"{{"n":{n}}}"#))
                .await,
        );
    }
    let refused = enqueue_raw(&daemon, 5).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "queue_full");
    // A batch that would cross the line is refused whole.
    let batch = daemon
        .raw()
        .post("http://hookd/v1/messages/batch")
        .json(&json!({"messages": [{"endpoint": "slow", "type": "event", "payload": {}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(batch.status(), 503);
    assert_eq!(pending(&daemon).await, 5);

    let (ok, _, stderr) = daemon.cli(&["endpoints", "resume", "slow"]);
    assert!(ok, "{stderr}");
    for id in &accepted {
        daemon.wait_state(id, "delivered", WAIT).await;
    }
    // Room again.
    assert_eq!(enqueue_raw(&daemon, 6).await.status(), 202);
}

fn serve(data_dir: &Path) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nsocket = {:?}\n",
            data_dir,
            dir.path().join("hookd.sock")
        ),
    )
    .unwrap();
    // `timeout`: a daemon that wrongly starts serving must not hang the test.
    Command::new("timeout")
        .args(["20", HOOKD, "serve", "--config"])
        .arg(&config)
        .output()
        .unwrap()
}

#[test]
fn a_corrupted_or_foreign_data_dir_is_a_clear_error_not_a_panic() {
    // Garbage where sled's files should be.
    let corrupted = tempfile::tempdir().unwrap();
    std::fs::write(corrupted.path().join("conf"), b"\x00\xffnot a sled config").unwrap();
    std::fs::write(corrupted.path().join("db"), vec![0xa5_u8; 64 * 1024]).unwrap();
    let output = serve(corrupted.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains(&corrupted.path().display().to_string()),
        "{stderr}"
    );

    // A directory full of someone else's files.
    let foreign = tempfile::tempdir().unwrap();
    std::fs::write(foreign.path().join("thesis.tex"), b"\\documentclass{book}").unwrap();
    let output = serve(foreign.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("not a hookd data dir"), "{stderr}");
    assert!(foreign.path().join("thesis.tex").exists());
    assert!(!foreign.path().join("db").exists(), "nothing was written");
}
