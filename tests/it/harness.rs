//! The test harness: a real `hookd serve` process on a temp socket, and scriptable HTTP receivers on
//! 127.0.0.1. Tests await events (a receiver got its Nth request, the daemon printed that it serves) rather
//! than sleeping; where only the daemon's state can tell, [`eventually`] polls the API with a deadline.
//!
//! A daemon keeps its queue in sled in its data dir, or ([`TestDaemon::start_on_postgres`], [`Backend`]) in a fresh
//! database of the binary's throwaway PostgreSQL cluster (`tests/support/postgres_cluster.rs`, started on first use).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hookd::api::client::Client;
use hookd::api::wire::{EnqueueRequest, MessageView};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::watch;

#[path = "../support/postgres_cluster.rs"]
pub mod postgres_cluster;

pub const HOOKD: &str = env!("CARGO_BIN_EXE_hookd");

/// One request a receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub webhook_id: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
    /// 1 for the first request carrying this webhook-id, 2 for the second, ...
    pub nth_for_id: usize,
}

/// What a receiver answers.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Never answer (the connection stays open until the client gives up).
    pub hang: bool,
    pub delay: Option<Duration>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: String::new(),
            hang: false,
            delay: None,
        }
    }
    pub fn ok() -> Reply {
        Reply::status(200)
    }
    pub fn hang() -> Reply {
        Reply {
            hang: true,
            ..Reply::ok()
        }
    }
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }
    pub fn delayed(mut self, delay: Duration) -> Reply {
        self.delay = Some(delay);
        self
    }
    /// 200 with `body` as `application/json`: how the JSON formats' customers answer.
    pub fn json(body: &Value) -> Reply {
        Reply {
            body: body.to_string(),
            ..Reply::ok().header("content-type", "application/json")
        }
    }
    /// 200 with `body` as `application/xml`: how the XML format's customers answer.
    pub fn xml(body: String) -> Reply {
        Reply {
            body,
            ..Reply::ok().header("content-type", "application/xml")
        }
    }
}

/// A request's body read as JSON (it must be JSON).
pub fn body_json(r: &Received) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

/// A request's header as text, if it has it.
pub fn header<'a>(r: &'a Received, name: &str) -> Option<&'a str> {
    r.headers.get(name).map(|v| v.to_str().unwrap())
}

/// Answers seed 002's handshake (echoing key and challenge) and 200 to anything else.
pub fn answers_handshakes(r: &Received) -> Reply {
    let body = body_json(r);
    if body.get("challenge").is_some() {
        return Reply::json(
            &json!({"validation_key": body["validation_key"], "challenge": body["challenge"]}),
        );
    }
    Reply::ok()
}

type Script = Arc<dyn Fn(&Received) -> Reply + Send + Sync>;

struct ReceiverState {
    script: Mutex<Script>,
    log: Mutex<Vec<Received>>,
    per_id: Mutex<HashMap<String, usize>>,
    count: watch::Sender<usize>,
}

/// An HTTP receiver on 127.0.0.1 that answers by script and records every request.
#[derive(Clone)]
pub struct TestReceiver {
    pub addr: SocketAddr,
    state: Arc<ReceiverState>,
}

impl TestReceiver {
    pub async fn start(
        script: impl Fn(&Received) -> Reply + Send + Sync + 'static,
    ) -> TestReceiver {
        let (count, _) = watch::channel(0);
        let state = Arc::new(ReceiverState {
            script: Mutex::new(Arc::new(script)),
            log: Mutex::new(Vec::new()),
            per_id: Mutex::new(HashMap::new()),
            count,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::clone(&state);
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let state = Arc::clone(&shared);
            async move { handle(state, headers, body).await }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        TestReceiver { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Replaces the script (e.g. a failing receiver starts answering 200).
    pub fn set_script(&self, script: impl Fn(&Received) -> Reply + Send + Sync + 'static) {
        *self.state.script.lock().unwrap() = Arc::new(script);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.log.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        *self.state.count.borrow()
    }

    pub fn requests_for(&self, id: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.webhook_id == id)
            .collect()
    }

    /// Waits until at least `n` requests have arrived; panics after `within`.
    pub async fn wait_for(&self, n: usize, within: Duration) {
        let mut rx = self.state.count.subscribe();
        let waited = tokio::time::timeout(within, rx.wait_for(|c| *c >= n)).await;
        assert!(
            waited.is_ok(),
            "receiver {} got {} requests, expected {n} within {within:?}",
            self.addr,
            self.count()
        );
    }
}

async fn handle(state: Arc<ReceiverState>, headers: HeaderMap, body: Bytes) -> Response {
    let webhook_id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let nth_for_id = {
        let mut per_id = state.per_id.lock().unwrap();
        let n = per_id.entry(webhook_id.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let received = Received {
        webhook_id,
        headers,
        body,
        at: Instant::now(),
        nth_for_id,
    };
    let script = Arc::clone(&*state.script.lock().unwrap());
    let reply = script(&received);
    state.log.lock().unwrap().push(received);
    state.count.send_modify(|c| *c += 1);
    if reply.hang {
        std::future::pending::<()>().await;
    }
    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    response
}

/// One endpoint of a test daemon's config.
pub struct EndpointSpec {
    pub name: String,
    pub url: String,
    /// Extra TOML lines inside the `[[endpoints]]` table.
    pub extra: String,
}

/// Fast retries so tests finish quickly: 50 ms doubling to 200 ms, no jitter.
pub const FAST_RETRY: &str =
    "retry = { initial_ms = 50, max_ms = 200, multiplier = 2.0, jitter = 0.0 }";

pub fn endpoint(name: &str, url: &str, extra: &str) -> EndpointSpec {
    EndpointSpec {
        name: name.into(),
        url: url.into(),
        extra: extra.into(),
    }
}

/// An endpoint that speaks `format`, with [`FAST_RETRY`] and nothing else set.
pub fn format_endpoint(name: &str, url: &str, format: &str) -> EndpointSpec {
    endpoint(name, url, &format!("format = \"{format}\"\n{FAST_RETRY}"))
}

/// The `error.message` of an API error answer (it must have one).
pub fn error_message(answer: &Value) -> &str {
    answer["error"]["message"].as_str().unwrap()
}

/// The store a test daemon keeps its queue in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// sled in the daemon's data dir (the default).
    Sled,
    /// A fresh database of this test binary's throwaway PostgreSQL cluster (`tests/support/postgres_cluster.rs`).
    Postgres,
}

/// A `hookd serve` process with its own data dir and socket.
pub struct TestDaemon {
    /// Kept so the temp dir lives as long as the daemon.
    _dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub socket: PathBuf,
    child: Option<Child>,
    pub log_path: PathBuf,
    /// The thread copying the running process's stderr to `log_path`; it ends when stderr closes.
    log_copier: Option<std::thread::JoinHandle<()>>,
    /// Built once: a reqwest client with TLS support is costly to build.
    client: Client,
    /// `HOOKD_FAULTS` for the daemon (a debug build fails on purpose at these points: src/faults.rs).
    pub faults: Option<String>,
    /// The URL of the daemon's PostgreSQL database (`[store] url`), when it runs on PostgreSQL.
    pub database_url: Option<String>,
}

impl TestDaemon {
    /// Writes a config (loopback allowed, fast retries by default) and starts the daemon.
    pub async fn start(endpoints: &[EndpointSpec], top_level: &str) -> TestDaemon {
        Self::start_with_data_dir(endpoints, top_level, None).await
    }

    /// Like [`TestDaemon::start`], on `backend`.
    pub async fn start_on(
        backend: Backend,
        endpoints: &[EndpointSpec],
        top_level: &str,
    ) -> TestDaemon {
        match backend {
            Backend::Sled => Self::start(endpoints, top_level).await,
            Backend::Postgres => Self::start_on_postgres(endpoints, top_level).await,
        }
    }

    /// Like [`TestDaemon::start`], with the queue in a fresh database of this binary's PostgreSQL cluster
    /// (`[store] url`; the daemon applies the schema when it connects).
    pub async fn start_on_postgres(endpoints: &[EndpointSpec], top_level: &str) -> TestDaemon {
        let url = postgres_cluster::cluster().fresh_database().await;
        Self::start_with(endpoints, top_level, None, Some(url)).await
    }

    /// Like [`TestDaemon::start`], with the data dir at `data_dir` (a small file system, say).
    pub async fn start_with_data_dir(
        endpoints: &[EndpointSpec],
        top_level: &str,
        data_dir: Option<&Path>,
    ) -> TestDaemon {
        Self::start_with(endpoints, top_level, data_dir, None).await
    }

    /// Writes the config (with a `[store]` table for `database_url`, if any) and starts the daemon.
    async fn start_with(
        endpoints: &[EndpointSpec],
        top_level: &str,
        data_dir: Option<&Path>,
        database_url: Option<String>,
    ) -> TestDaemon {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("hookd.toml");
        let socket = dir.path().join("hookd.sock");
        let data_dir = data_dir.map_or_else(|| dir.path().join("data"), Path::to_owned);
        let mut text = format!(
            "data_dir = {:?}\nsocket = {:?}\nshutdown_grace_ms = 5000\n{top_level}\n[destinations]\nallow = [\"127.0.0.0/8\"]\n",
            data_dir, socket
        );
        if let Some(url) = &database_url {
            // Small pools: many daemons of one test binary share the cluster.
            text.push_str(&format!("[store]\nurl = {url:?}\nmax_connections = 8\n"));
        }
        for e in endpoints {
            text.push_str(&format!(
                "[[endpoints]]\nname = {:?}\nurl = {:?}\n{}\n",
                e.name, e.url, e.extra
            ));
        }
        std::fs::write(&config_path, text).unwrap();
        Self::launch(dir, database_url).await
    }

    /// Starts the daemon on a config file of the caller's (a fixture's, say): `config_text` is given the socket
    /// path the harness uses and returns the whole file, which must put `socket` there.
    pub async fn start_with_config(config_text: impl FnOnce(&Path) -> String) -> TestDaemon {
        let dir = tempfile::tempdir().unwrap();
        let text = config_text(&dir.path().join("hookd.sock"));
        std::fs::write(dir.path().join("hookd.toml"), text).unwrap();
        Self::launch(dir, None).await
    }

    /// Starts the daemon on `dir/hookd.toml`, with its socket at `dir/hookd.sock` and its log in `dir/hookd.log`.
    async fn launch(dir: tempfile::TempDir, database_url: Option<String>) -> TestDaemon {
        let socket = dir.path().join("hookd.sock");
        let mut daemon = TestDaemon {
            config_path: dir.path().join("hookd.toml"),
            log_path: dir.path().join("hookd.log"),
            _dir: dir,
            socket: socket.clone(),
            child: None,
            client: Client::new(&socket).unwrap(),
            log_copier: None,
            faults: None,
            database_url,
        };
        daemon.spawn().await;
        daemon
    }

    /// Like [`TestDaemon::start`], with faults injected (`HOOKD_FAULTS`, src/faults.rs) into its first run.
    pub async fn start_with_faults(
        endpoints: &[EndpointSpec],
        top_level: &str,
        faults: &str,
    ) -> TestDaemon {
        let mut daemon = Self::start_with_data_dir(endpoints, top_level, None).await;
        daemon.kill();
        daemon.faults = Some(faults.to_owned());
        daemon.spawn().await;
        daemon
    }

    /// Rewrites the endpoints of the config (for restarts with another configuration).
    pub fn rewrite_config(&self, endpoints: &[EndpointSpec]) {
        let text = std::fs::read_to_string(&self.config_path).unwrap();
        let head = text.split("[[endpoints]]").next().unwrap().to_owned();
        let mut text = head;
        for e in endpoints {
            text.push_str(&format!(
                "[[endpoints]]\nname = {:?}\nurl = {:?}\n{}\n",
                e.name, e.url, e.extra
            ));
        }
        std::fs::write(&self.config_path, text).unwrap();
    }

    /// Starts the process and waits until it says it is serving.
    pub async fn spawn(&mut self) {
        let mut child = Command::new(HOOKD)
            .args(["serve", "--config"])
            .arg(&self.config_path)
            .env("HOOKD_LOG", "info")
            .env("HOOKD_FAULTS", self.faults.as_deref().unwrap_or(""))
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log_path = self.log_path.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let copier = std::thread::spawn(move || {
            let mut log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log_path)
                .unwrap();
            let mut ready = Some(ready_tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                if line.contains("hookd is serving") {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                }
            }
        });
        self.child = Some(child);
        self.log_copier = Some(copier);
        let started = tokio::time::timeout(Duration::from_secs(30), ready_rx).await;
        assert!(
            matches!(started, Ok(Ok(()))),
            "daemon did not start; log:\n{}",
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Everything the last process wrote to stderr, once it has exited and its stderr has closed.
    pub fn final_log(&mut self) -> String {
        if let Some(copier) = self.log_copier.take() {
            copier.join().unwrap();
        }
        self.log()
    }

    /// The daemon's process id, for reading its state (open descriptors, memory) from `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the daemon is running").id()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        child.wait().unwrap()
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// From now on [`TestDaemon::client`], and the helpers built on it, send `token` (tokens are in force).
    pub fn use_token(&mut self, token: &str) {
        self.client = self.client.clone().with_token(Some(token.to_owned()));
    }

    /// A raw HTTP client on the socket, for requests the typed client would never send.
    pub fn raw(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .unix_socket(self.socket.as_path())
            .build()
            .unwrap()
    }

    /// Enqueues one message and returns its id.
    pub async fn send(&self, endpoint: &str, kind: &str, payload: &str) -> String {
        self.client()
            .enqueue(&EnqueueRequest {
                endpoint: endpoint.into(),
                kind: kind.into(),
                payload: RawValue::from_string(payload.into()).unwrap(),
                idempotency_key: None,
            })
            .await
            .unwrap()
            .id
    }

    /// Enqueues one message with an access token and returns its id.
    pub async fn send_with_token(
        &self,
        token: &str,
        endpoint: &str,
        kind: &str,
        payload: &str,
    ) -> String {
        self.client()
            .with_token(Some(token.to_owned()))
            .enqueue(&EnqueueRequest {
                endpoint: endpoint.into(),
                kind: kind.into(),
                payload: RawValue::from_string(payload.into()).unwrap(),
                idempotency_key: None,
            })
            .await
            .unwrap()
            .id
    }

    /// Enqueues `messages` (each `{"endpoint", "type", "payload"}`) in one batch on the raw socket and
    /// returns their ids, in order.
    pub async fn send_batch(&self, messages: Vec<Value>) -> Vec<String> {
        let answer: Value = self
            .raw()
            .post("http://hookd/v1/messages/batch")
            .json(&json!({ "messages": messages }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// A JSON request on the socket, with `token` if any: (status, body, or `null` when it is not JSON).
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut builder = self.raw().request(method, format!("http://hookd{path}"));
        if let Some(token) = token {
            builder = builder.bearer_auth(token);
        }
        if let Some(body) = body {
            builder = builder.json(&body);
        }
        let response = builder.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A GET on the socket without token: (status, body, or `null` when it is not JSON).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.request(reqwest::Method::GET, path, None, None).await
    }

    pub async fn message(&self, id: &str) -> MessageView {
        self.client().message(id).await.unwrap()
    }

    /// Waits until the message reaches `state`; panics with its last view after `within`.
    pub async fn wait_state(&self, id: &str, state: &str, within: Duration) -> MessageView {
        let client = self.client();
        let id = id.to_owned();
        let wanted = state.to_owned();
        eventually(within, || {
            let client = client.clone();
            let id = id.clone();
            let wanted = wanted.clone();
            async move {
                let view = client.message(&id).await.ok()?;
                (view.state.as_str() == wanted).then_some(view)
            }
        })
        .await
        .unwrap_or_else(|| panic!("message {id} did not become {state} within {within:?}"))
    }

    /// Runs the CLI against this daemon: (exit code, stdout, stderr).
    pub fn cli_code(&self, args: &[&str]) -> (Option<i32>, String, String) {
        cli_code_at(&self.socket, args)
    }

    /// Runs the CLI against this daemon: (exit success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        cli_at(&self.socket, args)
    }
}

/// Runs the CLI against `socket` with stdin closed (not a terminal): (exit code, stdout, stderr).
pub fn cli_code_at(socket: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(HOOKD)
        .args(args)
        .env("HOOKD_SOCKET", socket)
        .env_remove("HOOKD_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

pub fn cli_at(socket: &Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(HOOKD)
        .args(args)
        .env("HOOKD_SOCKET", socket)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` every 20 ms until it yields a value or `within` passes. Only for daemon state, which has no
/// event to await from outside.
pub async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
