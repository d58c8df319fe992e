//! `hookd demo`: a first look at hookd in one command, with nothing to set up and nothing left behind.
//!
//! It starts two receivers on 127.0.0.1 (a healthy one that speaks every format's answer, and a flaky one
//! that answers 503 to each message's first attempt and 400 to a message marked `"poison": true`), writes a
//! config with one endpoint per format into a temp dir, runs the daemon in this process through the same
//! [`daemon::run`](crate::daemon::run) as `hookd serve`, sends a mix of messages through the socket API and
//! prints each message's state changes as the daemon reports them. The summary is counted from the daemon's
//! own view of the messages; the last lines are CLI commands to try against the demo's socket (`--keep` keeps
//! it serving until Ctrl-C).
//!
//! The submodules hold the parts that stand on their own: `scenario` the config and messages the demo sends,
//! `receivers` the two local receivers, `progress` the tracking and printing of each message's changes.

mod progress;
mod receivers;
mod scenario;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::api::client::{Client, ClientError};
use crate::api::wire::EnqueueRequest;
use crate::config::{Config, ConfigError};
use crate::daemon::DaemonError;
use progress::{Tracked, poll, print_commands, print_summary};
use receivers::{Behaviour, start_receiver};
use scenario::{config_text, messages};

/// How often message states are read while the demo runs.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// Every message is delivered or dead within a few seconds with the demo's fast retries; this is the bound.
const SETTLE_WITHIN: Duration = Duration::from_secs(60);
/// How long the in-process daemon may take to answer on its socket.
const START_WITHIN: Duration = Duration::from_secs(10);

/// Why the demo could not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo: cannot create a temp dir: {0}")]
    TempDir(#[source] std::io::Error),
    #[error("demo: cannot start a receiver on 127.0.0.1: {0}")]
    Receiver(#[source] std::io::Error),
    #[error("demo: cannot write {path}: {source}")]
    WriteConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("demo daemon: {0}")]
    Daemon(#[from] DaemonError),
    #[error("demo: the daemon stopped before it was asked to")]
    DaemonStopped,
    #[error("demo: the daemon did not answer on {0} within 10 s")]
    NotReady(PathBuf),
    #[error("demo: {0}")]
    Client(#[from] ClientError),
    #[error("demo: cannot encode a payload: {0}")]
    Payload(#[from] serde_json::Error),
    #[error("demo: {unsettled} of {total} messages were neither delivered nor dead after 60 s")]
    NotSettled { unsettled: usize, total: usize },
}

/// Runs the demo; with `keep`, serves until Ctrl-C (or SIGTERM) after everything settled.
pub async fn run(keep: bool) -> Result<(), DemoError> {
    let dir = tempfile::Builder::new()
        .prefix("hookd-demo-")
        .tempdir()
        .map_err(DemoError::TempDir)?;
    let interrupted = CancellationToken::new();
    let on_signal = interrupted.clone();
    tokio::spawn(async move {
        crate::daemon::shutdown_signal().await;
        on_signal.cancel();
    });
    let receivers_stop = CancellationToken::new();
    let healthy = start_receiver(Behaviour::Healthy, receivers_stop.clone()).await?;
    let flaky = start_receiver(Behaviour::flaky(), receivers_stop.clone()).await?;

    let config_path = dir.path().join("hookd.toml");
    std::fs::write(&config_path, config_text(dir.path(), healthy, flaky)).map_err(|source| {
        DemoError::WriteConfig {
            path: config_path.clone(),
            source,
        }
    })?;
    let config = Config::load(&config_path)?;
    let socket = config.socket.clone();
    say(format!("hookd demo in {}", dir.path().display()));
    say(format!(
        "  healthy receiver  http://{healthy}  (answers 200, in each format's own words)"
    ));
    say(format!(
        "  flaky receiver    http://{flaky}  (503 to every first attempt, 400 to a \"poison\" message)"
    ));
    say(format!(
        "  config            {}  ({} endpoints)",
        config_path.display(),
        config.endpoints.len()
    ));
    say(format!("  socket            {}", socket.display()));

    let daemon_stop = CancellationToken::new();
    let daemon = crate::daemon::run(config, daemon_stop.clone().cancelled_owned());
    tokio::pin!(daemon);
    let shown = tokio::select! {
        stopped = &mut daemon => {
            receivers_stop.cancel();
            return Err(stopped.err().map_or(DemoError::DaemonStopped, DemoError::Daemon));
        }
        shown = show(&socket, keep, &interrupted) => shown,
    };
    say("stopping the daemon".into());
    daemon_stop.cancel();
    let stopped = daemon.await;
    receivers_stop.cancel();
    shown?;
    stopped?;
    say(format!("stopped; removing {}", dir.path().display()));
    Ok(())
}

/// Sends the messages, prints their changes until all are settled, then the summary and commands to try.
async fn show(socket: &Path, keep: bool, interrupted: &CancellationToken) -> Result<(), DemoError> {
    let client = Client::new(socket)?;
    wait_ready(&client, socket).await?;
    let mut tracked = Vec::new();
    for (endpoint, kind, payload) in messages() {
        let answer = client
            .enqueue(&EnqueueRequest {
                endpoint: endpoint.into(),
                kind: kind.into(),
                payload: serde_json::value::to_raw_value(&payload)?,
                idempotency_key: None,
            })
            .await?;
        let message = Tracked::new(answer.id, format!("{endpoint}/{kind}"));
        say(format!("sent       {}  {}", message.id, message.label));
        tracked.push(message);
    }

    let deadline = Instant::now() + SETTLE_WITHIN;
    let mut ticker = tokio::time::interval(POLL_EVERY);
    while !tracked.iter().all(Tracked::settled) {
        tokio::select! {
            _ = interrupted.cancelled() => {
                say("interrupted before every message settled".into());
                return Ok(());
            }
            _ = ticker.tick() => {}
        }
        poll(&client, &mut tracked).await?;
        if Instant::now() >= deadline {
            let unsettled = tracked.iter().filter(|t| !t.settled()).count();
            return Err(DemoError::NotSettled {
                unsettled,
                total: tracked.len(),
            });
        }
    }
    print_summary(&tracked);
    print_commands(socket, &tracked);
    if !keep {
        say("(run `hookd demo --keep` to keep the daemon serving and try them)".into());
        return Ok(());
    }
    say("serving until Ctrl-C; changes to the demo's messages are printed as they happen".into());
    loop {
        tokio::select! {
            _ = interrupted.cancelled() => return Ok(()),
            _ = ticker.tick() => {}
        }
        if let Err(error) = poll(&client, &mut tracked).await {
            say(format!(
                "(live view stopped: {error}; still serving until Ctrl-C)"
            ));
            interrupted.cancelled().await;
            return Ok(());
        }
    }
}

/// Waits until the daemon answers on its socket (it is started in this process, so there is no event to
/// await from outside it).
async fn wait_ready(client: &Client, socket: &Path) -> Result<(), DemoError> {
    let deadline = Instant::now() + START_WITHIN;
    while client.health().await.is_err() {
        if Instant::now() >= deadline {
            return Err(DemoError::NotReady(socket.to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Prints one line; a closed stdout does not stop the demo (it still shuts down cleanly).
fn say(line: String) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}
