//! `hookd demo`: a first look at hookd in one command, with nothing to set up and nothing left behind.
//!
//! It starts two receivers on 127.0.0.1 (a healthy one that speaks every format's answer, and a flaky one
//! that answers 503 to each message's first attempt and 400 to a message marked `"poison": true`), writes a
//! config with one endpoint per format into a temp dir, runs the daemon in this process through the same
//! [`daemon::run`](crate::daemon::run) as `hookd serve`, sends a mix of messages through the socket API and
//! prints each message's state changes as the daemon reports them. The summary is counted from the daemon's
//! own view of the messages; the last lines are CLI commands to try against the demo's socket (`--keep` keeps
//! it serving until Ctrl-C).

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::api::client::{Client, ClientError};
use crate::api::wire::{EnqueueRequest, MessageView};
use crate::config::{Config, ConfigError};
use crate::daemon::DaemonError;
use crate::model::{State, now_millis};

/// How often message states are read while the demo runs.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// Every message is delivered or dead within a few seconds with the demo's fast retries; this is the bound.
const SETTLE_WITHIN: Duration = Duration::from_secs(60);
/// How long the in-process daemon may take to answer on its socket.
const START_WITHIN: Duration = Duration::from_secs(10);
/// The `dlr` endpoint's verification handshake key (seed 002), which the healthy receiver echoes.
const DEMO_VALIDATION_KEY: &str = "demo-validation-key";
/// Signs the `orders` endpoint's requests (see docs/SIGNING.md); a demo value, never one for production.
const DEMO_SIGNING_SECRET: &str = "whsec_ZGVtby1zZWNyZXQtbm90LWZvci1wcm9kdWN0aW9u";

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

/// One message the demo sent, and what it last printed about it.
struct Tracked {
    id: String,
    /// `endpoint/type`.
    label: String,
    /// The state and attempt count last seen (in flight is never recorded: it is too short to show).
    last: Option<(State, usize)>,
    /// The message was purged (the API no longer knows it).
    gone: bool,
    attempts: usize,
}

impl Tracked {
    fn new(id: String, label: String) -> Tracked {
        Tracked {
            id,
            label,
            last: None,
            gone: false,
            attempts: 0,
        }
    }

    fn state(&self) -> Option<State> {
        self.last.map(|(state, _)| state)
    }

    fn settled(&self) -> bool {
        self.gone || matches!(self.state(), Some(State::Delivered | State::Dead))
    }
}

/// Reads every tracked message once and prints what changed since the last read.
async fn poll(client: &Client, tracked: &mut [Tracked]) -> Result<(), ClientError> {
    for message in tracked.iter_mut().filter(|t| !t.gone) {
        let view = match client.message(&message.id).await {
            Ok(view) => view,
            Err(ClientError::Api { status: 404, .. }) => {
                message.gone = true;
                say(format!("gone       {}  {}", message.id, message.label));
                continue;
            }
            Err(error) => return Err(error),
        };
        let seen = (view.state, view.attempts.len());
        if view.state == State::InFlight || message.last == Some(seen) {
            continue;
        }
        for line in change_lines(message, &view) {
            say(line);
        }
        message.last = Some(seen);
        message.attempts = view.attempts.len();
    }
    Ok(())
}

/// The lines for a message that reached a new state or made a new attempt (none for a first sighting while
/// queued: its "sent" line said it).
fn change_lines(message: &Tracked, view: &MessageView) -> Vec<String> {
    let head = format!("{}  {:<28}", message.id, message.label);
    let attempts = view.attempts.len();
    let last_reason = view.attempts.last().map_or("", |a| a.reason.as_str());
    let tried = |n: usize| format!("{n} attempt{}", if n == 1 { "" } else { "s" });
    let mut lines = Vec::new();
    // A replay may have been attempted, even have died again, between two reads.
    if message.state() == Some(State::Dead)
        && (view.state != State::Dead || attempts > message.attempts)
    {
        lines.push(format!("replayed   {head}  queued again"));
    }
    let line = match view.state {
        State::Delivered => Some(format!(
            "delivered  {head}  after {} ({last_reason})",
            tried(attempts)
        )),
        State::Dead => Some(format!(
            "dead       {head}  after {}: {}",
            tried(attempts),
            view.dead_reason.as_deref().unwrap_or(last_reason)
        )),
        State::Queued if attempts > message.attempts => {
            let wait = view
                .next_attempt_at
                .map_or(0, |at| at.saturating_sub(now_millis()));
            Some(format!(
                "retry      {head}  attempt {attempts} failed ({last_reason}); next in {wait} ms"
            ))
        }
        State::Held => Some(format!("held       {head}  its endpoint is not active")),
        State::Queued | State::InFlight => None,
    };
    lines.extend(line);
    lines
}

fn print_summary(tracked: &[Tracked]) {
    let count = |state: State| tracked.iter().filter(|t| t.state() == Some(state)).count();
    let dead = count(State::Dead);
    let attempts: usize = tracked.iter().map(|t| t.attempts).sum();
    say(format!(
        "summary: {} delivered, {dead} dead letter{} ({} messages, {attempts} attempts)",
        count(State::Delivered),
        if dead == 1 { "" } else { "s" },
        tracked.len(),
    ));
}

fn print_commands(socket: &Path, tracked: &[Tracked]) {
    let program = std::env::args_os()
        .next()
        .map_or_else(|| "hookd".to_owned(), |p| p.to_string_lossy().into_owned());
    let program = shell_word(&program);
    let socket = shell_word(&socket.to_string_lossy());
    let dead = tracked.iter().find(|t| t.state() == Some(State::Dead));
    let any = dead.or(tracked.first());
    say("try:".into());
    say(format!("  {program} status --socket {socket}"));
    say(format!("  {program} dlq list --socket {socket}"));
    if let Some(message) = any {
        say(format!(
            "  {program} msg show {} --socket {socket}",
            message.id
        ));
    }
    match dead {
        Some(message) => {
            say(format!(
                "  {program} dlq show {} --socket {socket}",
                message.id
            ));
            say(format!(
                "  {program} dlq replay {} --socket {socket}",
                message.id
            ));
        }
        None => say(format!("  {program} dlq replay --all --socket {socket}")),
    }
    say(format!("  {program} dlq purge --all --socket {socket}"));
}

/// `text` as one shell word: quoted when it holds anything but plain path characters.
fn shell_word(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+');
    if !text.is_empty() && text.chars().all(plain) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Prints one line; a closed stdout does not stop the demo (it still shuts down cleanly).
fn say(line: String) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// The demo's messages: (endpoint, type, payload), every type of every endpoint, one of them poison.
fn messages() -> Vec<(&'static str, &'static str, Value)> {
    let inbox = |title: &str, poison: bool| {
        let mut payload = json!({
            "externalCustomerId": "cust-42",
            "id": uuid::Uuid::now_v7().to_string(),
            "createdDate": now_millis(),
            "title": title,
            "content": "Parcel 1001 is on its way",
        });
        if poison {
            payload["poison"] = json!(true);
        }
        payload
    };
    let status =
        |id_sms: u64, time: &str, sms: &str| json!({"id_sms": id_sms, "time": time, "sms": sms});
    vec![
        (
            "orders",
            "order.created",
            json!({"order_id": 1001, "amount": {"value": 25.5, "currency": "EUR"}}),
        ),
        ("orders", "order.paid", json!({"order_id": 1001})),
        (
            "orders",
            "order.shipped",
            json!({"order_id": 1001, "carrier": "DHL"}),
        ),
        (
            "notify",
            "sms",
            json!({"to": "+4915112345678", "text": "Your code is 4711"}),
        ),
        (
            "notify",
            "push",
            json!({"title": "Hello", "text": "Your order shipped"}),
        ),
        (
            "sms-status",
            "sms_status",
            status(3234, "2024-01-02 10:00:00", "deliver"),
        ),
        (
            "sms-status",
            "sms_status",
            status(3235, "2024-01-02 10:00:01", "expired"),
        ),
        ("sms-status", "sms_status", status(3236, "", "send")),
        (
            "dlr",
            "dlr",
            json!({"id": "b34e35ad:1", "mobile": "918921269000", "status": "DELIVRD", "units": 1}),
        ),
        (
            "gateway",
            "device_status",
            json!({"sms_id": 12, "status_id": 7, "device_id": 3, "status_message": "SMS delivered",
                   "sendto": "+5511999999999", "senttime": "2024-01-02 10:00:00", "sim": 0}),
        ),
        (
            "gateway",
            "incoming_sms",
            json!({"address": "+5511988887777", "body": "hi", "device_id": 3}),
        ),
        ("inbox", "app_inbox", inbox("Your order shipped", false)),
        ("inbox", "app_inbox", inbox("Rate your delivery", false)),
        ("inbox", "app_inbox", inbox("poison", true)),
        (
            "billing",
            "invoice.created",
            json!({"invoice": "INV-7", "amount": 99}),
        ),
    ]
}

/// The demo's config: one endpoint per format, fast retries, loopback allowed.
fn config_text(dir: &Path, healthy: SocketAddr, flaky: SocketAddr) -> String {
    let quote = |text: &str| serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into());
    let common = "timeout_ms = 2000\nmax_attempts = 3\n\
                  retry = { initial_ms = 200, max_ms = 1000, multiplier = 2.0, jitter = 0.0 }";
    let endpoint = |name: &str, addr: SocketAddr, format: &str, extra: &str| {
        format!(
            "\n[[endpoints]]\nname = \"{name}\"\nurl = \"http://{addr}/{name}\"\n\
             format = \"{format}\"\n{common}\n{extra}"
        )
    };
    let mut text = format!(
        "# Written by `hookd demo`; removed when it stops.\n\
         data_dir = {}\nsocket = {}\nshutdown_grace_ms = 2000\n\n\
         [destinations]\nallow = [\"127.0.0.0/8\"]\n",
        quote(&dir.join("data").to_string_lossy()),
        quote(&dir.join("hookd.sock").to_string_lossy()),
    );
    text.push_str(&endpoint(
        "orders",
        healthy,
        "json",
        &format!("signing_secret = \"{DEMO_SIGNING_SECRET}\"\n"),
    ));
    text.push_str(&endpoint("notify", healthy, "notification", ""));
    text.push_str(&endpoint(
        "sms-status",
        healthy,
        "sms-status-xml",
        "batch_max = 10\nbatch_linger_ms = 200\n",
    ));
    text.push_str(&endpoint(
        "dlr",
        healthy,
        "dlr-json",
        &format!(
            "auth = {{ type = \"bearer\", token = \"demo-dlr-secret\" }}\n\
             verification = {{ validation_key = \"{DEMO_VALIDATION_KEY}\" }}\n"
        ),
    ));
    text.push_str(&endpoint(
        "gateway",
        healthy,
        "gateway-json",
        &format!("urls = {{ incoming_sms = \"http://{healthy}/gateway-incoming\" }}\n"),
    ));
    text.push_str(&endpoint("inbox", flaky, "app-inbox", ""));
    text.push_str(&endpoint("billing", flaky, "json", ""));
    text
}

/// How a demo receiver answers.
enum Behaviour {
    /// 200, in the words each format expects (a `status_code` model, echoed `id_sms`).
    Healthy,
    /// 400 to a poison message, 503 to the first attempt of any other, then 200.
    Flaky {
        /// Requests seen per `webhook-id`.
        seen: Mutex<HashMap<String, u32>>,
    },
}

impl Behaviour {
    fn flaky() -> Behaviour {
        Behaviour::Flaky {
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn answer(&self, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Response {
        match self {
            Behaviour::Healthy => match uri.path() {
                // Seed 002's handshake: echo the validation key and the challenge.
                "/dlr" if uri.query().is_some_and(|q| q.contains("token=")) => {
                    let sent: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                    (
                        [("content-type", "application/json")],
                        json!({"validation_key": sent["validation_key"], "challenge": sent["challenge"]})
                            .to_string(),
                    )
                        .into_response()
                }
                "/notify" => (
                    [("content-type", "application/json")],
                    json!({"status_code": "000", "status_desc": "delivered", "error_message": "",
                           "delivery_id": format!("D-{}", now_millis())})
                    .to_string(),
                )
                    .into_response(),
                "/sms-status" => (
                    [("content-type", "application/xml")],
                    format!(
                        "<?xml version=\"1.0\" encoding=\"utf-8\"?><response>{}</response>",
                        echoed_ids(body)
                    ),
                )
                    .into_response(),
                _ => StatusCode::OK.into_response(),
            },
            Behaviour::Flaky { seen } => {
                if marked_poison(body) {
                    return (StatusCode::BAD_REQUEST, "poison message: cannot process it")
                        .into_response();
                }
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let nth = {
                    let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
                    let count = seen.entry(id).or_insert(0);
                    *count += 1;
                    *count
                };
                if nth == 1 {
                    (StatusCode::SERVICE_UNAVAILABLE, "warming up").into_response()
                } else {
                    StatusCode::OK.into_response()
                }
            }
        }
    }
}

/// `<id_sms>N</id_sms>` for every `id_sms="N"` of an sms-status-xml document.
fn echoed_ids(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .split("id_sms=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()))
        .map(|id| format!("<id_sms>{id}</id_sms>"))
        .collect()
}

/// A JSON body whose payload (or the `json` format's `data`) has `"poison": true`.
fn marked_poison(body: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    [&value["poison"], &value["data"]["poison"]]
        .iter()
        .any(|flag| flag.as_bool() == Some(true))
}

/// Starts a receiver on a free 127.0.0.1 port; it stops when `stop` is cancelled.
async fn start_receiver(
    behaviour: Behaviour,
    stop: CancellationToken,
) -> Result<SocketAddr, DemoError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(DemoError::Receiver)?;
    let addr = listener.local_addr().map_err(DemoError::Receiver)?;
    let behaviour = Arc::new(behaviour);
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
        let behaviour = Arc::clone(&behaviour);
        async move { behaviour.answer(&uri, &headers, &body) }
    });
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    });
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_config_loads_with_one_endpoint_per_format() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let text = config_text(Path::new("/tmp/hookd-demo-x"), addr, addr);
        let config = Config::from_toml(&text, Path::new("demo.toml")).unwrap();
        let mut formats: Vec<&str> = config.endpoints.iter().map(|e| e.format.name()).collect();
        formats.sort_unstable();
        formats.dedup();
        assert_eq!(formats.len(), crate::formats::FormatKind::NAMES.len());
    }

    #[test]
    fn every_demo_message_is_valid_for_its_endpoint() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let config =
            Config::from_toml(&config_text(Path::new("/d"), addr, addr), Path::new("d")).unwrap();
        for (endpoint, kind, payload) in messages() {
            let format = config.endpoint(endpoint).unwrap().format;
            let raw = serde_json::value::to_raw_value(&payload).unwrap();
            assert!(
                format.validate(kind, &raw).is_ok(),
                "{endpoint}/{kind}: {:?}",
                format.validate(kind, &raw)
            );
        }
        assert_eq!(
            messages()
                .iter()
                .filter(|(_, _, p)| marked_poison(p.to_string().as_bytes()))
                .count(),
            1
        );
    }

    #[test]
    fn the_healthy_receiver_echoes_every_id_sms() {
        let body = concat!(
            r#"<response><state id_sms="3234" time="">x</state>"#,
            r#"<state id_sms="7" sms="send">y</state></response>"#
        )
        .as_bytes();
        assert_eq!(echoed_ids(body), "<id_sms>3234</id_sms><id_sms>7</id_sms>");
    }
}
