//! Who may reach the socket, and what never comes out of it: every secret hookd holds (bearer tokens, Basic
//! passwords, the dlr-json validation key, Standard Webhooks signing secrets, passwords and query values in
//! endpoint URLs, API access tokens) is used on the wire and appears in no CLI output, no API answer, no
//! line of the daemon's log at `HOOKD_LOG=trace`, no `Debug` of the config and no file of the store. The
//! socket is 0600, or 0660 and owned by `socket_group` when one is configured.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hookd::api::client::Client;
use serde_json::{Value, json};

use crate::harness::{
    FAST_RETRY, HOOKD, Received, Reply, TestDaemon, TestReceiver, endpoint, eventually,
};

const WAIT: Duration = Duration::from_secs(30);

const BEARER: &str = "bearer-SECRET-7f3a9c01";
const DLR_BEARER: &str = "dlr-bearer-SECRET-55e0";
const BASIC_PASSWORD: &str = "basic-SECRET-41d2e8aa";
const VALIDATION_KEY: &str = "validation-SECRET-93b1";
const URL_PASSWORD: &str = "urlpw-SECRET-c4c4";
const URL_QUERY: &str = "query-SECRET-0d0d";
/// The 32 bytes behind the signing secret.
const SIGNING_KEY_BYTES: &str = "signing-SECRET-0123456789abcdef!";

fn signing_secret() -> String {
    format!("whsec_{}", BASE64.encode(SIGNING_KEY_BYTES))
}

/// A `hookd serve` on a [`TestDaemon`]'s config and socket, logging at `trace` into a file.
struct TracingDaemon {
    child: Child,
    log: PathBuf,
}

impl TracingDaemon {
    async fn start(config: &Path, log: PathBuf, client: &Client) -> TracingDaemon {
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(HOOKD)
            .args(["serve", "--config"])
            .arg(config)
            .env("HOOKD_LOG", "trace")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        let daemon = TracingDaemon { child, log };
        let up = eventually(WAIT, || async { client.health().await.ok() }).await;
        assert!(up.is_some(), "daemon did not start:\n{}", daemon.log());
        daemon
    }

    fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// SIGTERM, so every log line is written, and the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        self.child.wait().unwrap()
    }
}

impl Drop for TracingDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn body_json(r: &Received) -> Value {
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

fn header(r: &Received, name: &str) -> Option<String> {
    r.headers.get(name).map(|v| v.to_str().unwrap().to_owned())
}

/// Every file under `dir`, read as bytes.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            found.push((path, bytes));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_any_output_log_or_store_file() {
    // The dlr-json customer answers handshakes with a wrong key until `verified` is set; the bearer
    // endpoint's `refuse` message gets a 401 (a dead letter to show), everything else a 200.
    let verified = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&verified);
    let receiver = TestReceiver::start(move |r| {
        let body = body_json(r);
        if body.get("challenge").is_some() {
            let key = match flag.load(Ordering::SeqCst) {
                false => json!("not-the-key"),
                true => body["validation_key"].clone(),
            };
            let mut reply = Reply::ok().header("content-type", "application/json");
            reply.body = json!({"validation_key": key, "challenge": body["challenge"]}).to_string();
            return reply;
        }
        match body["data"]["refuse"].as_bool() {
            Some(true) => Reply::status(401),
            _ => Reply::ok(),
        }
    })
    .await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let secret = signing_secret();
    let port = receiver.addr.port();
    let endpoints = [
        endpoint(
            "bearer",
            &format!("http://127.0.0.1:{port}/bearer?key={URL_QUERY}&plain=1"),
            &format!(
                "auth = {{ type = \"bearer\", token = \"{BEARER}\" }}\nsigning_secret = \"{secret}\"\n{FAST_RETRY}"
            ),
        ),
        endpoint(
            "basic",
            &receiver.url("/basic"),
            &format!(
                "auth = {{ type = \"basic\", username = \"hookd\", password = \"{BASIC_PASSWORD}\" }}\n{FAST_RETRY}"
            ),
        ),
        endpoint(
            "dlr",
            &receiver.url("/dlr"),
            &format!(
                "format = \"dlr-json\"\nauth = {{ type = \"bearer\", token = \"{DLR_BEARER}\" }}\nverification = {{ validation_key = \"{VALIDATION_KEY}\" }}\n{FAST_RETRY}"
            ),
        ),
        endpoint(
            "userinfo",
            &format!("http://hookd:{URL_PASSWORD}@127.0.0.1:{port}/userinfo?token={URL_QUERY}"),
            FAST_RETRY,
        ),
        endpoint(
            "unreachable",
            &format!("http://hookd:{URL_PASSWORD}@127.0.0.1:{closed_port}/?token={URL_QUERY}"),
            &format!("max_attempts = 1\n{FAST_RETRY}"),
        ),
    ];
    let mut harness = TestDaemon::start(&endpoints, "").await;
    harness.kill();
    let log_path = harness.config_path.with_file_name("trace.log");
    let mut daemon = TracingDaemon::start(&harness.config_path, log_path, &harness.client()).await;
    let mut outputs: Vec<(String, String)> = Vec::new();
    let run = |args: &[&str], outputs: &mut Vec<(String, String)>| {
        let (ok, stdout, stderr) = harness.cli(args);
        outputs.push((args.join(" "), format!("{stdout}\n{stderr}")));
        assert!(ok, "{args:?}: {stderr}");
        stdout
    };

    // The handshake failed first: the endpoint shows why, then passes on `verify`.
    let unverified = eventually(WAIT, || async {
        let view = harness.client().endpoint("dlr").await.ok()?;
        (view.state != "active").then_some(view)
    })
    .await
    .expect("the dlr endpoint reports its failed handshake");
    outputs.push((
        "dlr unverified".into(),
        serde_json::to_string(&unverified).unwrap(),
    ));
    run(&["endpoints", "show", "dlr", "--json"], &mut outputs);
    verified.store(true, Ordering::SeqCst);
    run(&["endpoints", "verify", "dlr", "--json"], &mut outputs);

    let refused = harness.send("bearer", "event", r#"{"refuse":true}"#).await;
    let mut delivered = Vec::new();
    delivered.push(harness.send("bearer", "event", r#"{"n":1}"#).await);
    delivered.push(harness.send("basic", "event", r#"{"n":2}"#).await);
    delivered.push(harness.send("userinfo", "event", r#"{"n":3}"#).await);
    delivered.push(
        harness
            .send("dlr", "dlr", r#"{"id":"dlr-1","status":"DELIVRD"}"#)
            .await,
    );
    let unreachable = harness.send("unreachable", "event", "{}").await;
    for id in &delivered {
        harness.wait_state(id, "delivered", WAIT).await;
    }
    harness.wait_state(&refused, "dead", WAIT).await;
    harness.wait_state(&unreachable, "dead", WAIT).await;

    // The secrets were really used: each went to its receiver, so their absence below means something.
    let requests = receiver.received();
    let by_path = |id: &str| {
        requests
            .iter()
            .find(|r| r.webhook_id == id)
            .unwrap()
            .clone()
    };
    assert_eq!(
        header(&by_path(&delivered[0]), "authorization").as_deref(),
        Some(format!("Bearer {BEARER}").as_str())
    );
    assert!(header(&by_path(&delivered[0]), "webhook-signature").is_some());
    let basic = BASE64.encode(format!("hookd:{BASIC_PASSWORD}"));
    assert_eq!(
        header(&by_path(&delivered[1]), "authorization").as_deref(),
        Some(format!("Basic {basic}").as_str())
    );
    let userinfo = BASE64.encode(format!("hookd:{URL_PASSWORD}"));
    assert_eq!(
        header(&by_path(&delivered[2]), "authorization").as_deref(),
        Some(format!("Basic {userinfo}").as_str())
    );
    assert_eq!(
        header(&by_path(&delivered[3]), "authorization").as_deref(),
        Some(format!("Bearer {DLR_BEARER}").as_str())
    );
    assert!(
        requests
            .iter()
            .any(|r| body_json(r)["validation_key"] == VALIDATION_KEY),
        "the handshake carried the key"
    );

    // Everything a user can ask for, before and after an access token exists.
    for args in [
        &["endpoints", "list", "--json"][..],
        &["endpoints", "list"],
        &["status", "--json"],
        &["status"],
        &["dlq", "list", "--json"],
        &["dlq", "show", &refused, "--json"],
        &["msg", "show", &unreachable, "--json"],
        &["msg", "show", &delivered[0]],
    ] {
        run(args, &mut outputs);
    }
    for name in ["bearer", "basic", "dlr", "userinfo", "unreachable"] {
        run(&["endpoints", "show", name, "--json"], &mut outputs);
        run(&["endpoints", "show", name], &mut outputs);
    }
    let token = run(&["tokens", "create", "ops"], &mut outputs)
        .trim()
        .to_owned();
    // The one output allowed to show the token is the one that created it.
    outputs.pop();
    assert!(token.starts_with("hkd_"), "{token}");
    for args in [
        &["tokens", "list", "--json"][..],
        &["tokens", "list"],
        &["status", "--json"],
        &["endpoints", "list", "--json"],
        &["endpoints", "show", "bearer", "--json"],
    ] {
        let mut args = args.to_vec();
        args.extend(["--token", &token]);
        run(&args, &mut outputs);
    }
    let client = harness.client().with_token(Some(token.clone()));
    outputs.push(("GET /metrics".into(), client.metrics().await.unwrap()));
    outputs.push((
        "GET /v1/stats".into(),
        serde_json::to_string(&client.stats().await.unwrap()).unwrap(),
    ));
    let shown = serde_json::to_string(&client.message(&unreachable).await.unwrap()).unwrap();
    assert!(shown.contains("connect"), "the failure is shown: {shown}");
    outputs.push(("GET /v1/messages/{unreachable}".into(), shown));

    let status = daemon.terminate();
    assert!(status.success(), "{status:?}");
    let log = daemon.log();
    assert!(
        log.contains("TRACE") && log.contains("hookd is serving"),
        "the log is at trace level: {} bytes",
        log.len()
    );
    outputs.push(("daemon log (HOOKD_LOG=trace)".into(), log));

    let secrets = [
        BEARER.to_owned(),
        DLR_BEARER.to_owned(),
        BASIC_PASSWORD.to_owned(),
        basic,
        VALIDATION_KEY.to_owned(),
        URL_PASSWORD.to_owned(),
        userinfo,
        URL_QUERY.to_owned(),
        secret.clone(),
        secret["whsec_".len()..].to_owned(),
        SIGNING_KEY_BYTES.to_owned(),
        token.clone(),
    ];
    let mut found = leaks(&outputs, &secrets);
    // `Debug` of the config (the URL secrets are also checked alone by `config_debug_masks_url_credentials`).
    let config = hookd::config::Config::load(&harness.config_path).unwrap();
    let debug = vec![(
        "Debug of Config".to_owned(),
        format!("{config:?} {config:#?}"),
    )];
    found.extend(leaks(&debug, &secrets));
    let data_dir = harness.config_path.with_file_name("data");
    for (path, bytes) in files_under(&data_dir) {
        for secret in &secrets {
            if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                found.push(format!("{} holds {secret:?}", path.display()));
            }
        }
    }
    assert!(found.is_empty(), "secrets leaked:\n{}", found.join("\n"));
}

/// Where each secret shows up in the outputs, with some context.
fn leaks(outputs: &[(String, String)], secrets: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for (what, text) in outputs {
        for secret in secrets {
            if let Some(at) = text.find(secret.as_str()) {
                let end = (at + secret.len() + 60).min(text.len());
                let around = String::from_utf8_lossy(&text.as_bytes()[at.saturating_sub(120)..end]);
                found.push(format!("{what} shows {secret:?}: ...{around}..."));
            }
        }
    }
    found
}

#[test]
fn config_debug_masks_url_credentials() {
    let text = format!(
        "[[endpoints]]\nname = \"a\"\nurl = \"http://u:{URL_PASSWORD}@example.com/?key={URL_QUERY}\"\n"
    );
    let config = hookd::config::Config::from_toml(&text, Path::new("test.toml")).unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains(URL_PASSWORD), "{debug}");
    assert!(!debug.contains(URL_QUERY), "{debug}");
}

/// The current process's effective group: (gid, name).
fn own_group() -> (u32, String) {
    let gid = nix::unistd::getegid();
    let group = nix::unistd::Group::from_gid(gid).unwrap().unwrap();
    (gid.as_raw(), group.name)
}

/// Another group this process may chown to: any group when root, else a supplementary one.
fn other_group() -> Option<(u32, String)> {
    let (own, _) = own_group();
    let candidates: Vec<nix::unistd::Gid> = if nix::unistd::geteuid().is_root() {
        (1..1000).map(nix::unistd::Gid::from_raw).collect()
    } else {
        nix::unistd::getgroups().unwrap_or_default()
    };
    candidates
        .into_iter()
        .filter(|gid| gid.as_raw() != own)
        .find_map(|gid| nix::unistd::Group::from_gid(gid).ok().flatten())
        .map(|g| (g.gid.as_raw(), g.name))
}

fn socket_mode_and_gid(socket: &Path) -> (u32, u32) {
    let meta = std::fs::metadata(socket).unwrap();
    (meta.permissions().mode() & 0o7777, meta.gid())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_is_0600_by_default_and_0660_for_its_socket_group() {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let ok = [endpoint("ok", &receiver.url("/"), FAST_RETRY)];

    let daemon = TestDaemon::start(&ok, "").await;
    let (mode, _) = socket_mode_and_gid(&daemon.socket);
    assert_eq!(mode, 0o600, "private to its owner without socket_group");
    drop(daemon);

    let (gid, name) = own_group();
    let mut daemon = TestDaemon::start(&ok, &format!("socket_group = {name:?}")).await;
    assert_eq!(socket_mode_and_gid(&daemon.socket), (0o660, gid));
    daemon.client().health().await.unwrap();
    let warning = "socket_group members cannot reach the socket";
    assert!(!daemon.log().contains(warning), "{}", daemon.log());
    // A socket directory the group cannot search makes the group useless: the daemon says so.
    daemon.kill();
    let dir = daemon.socket.parent().unwrap().to_owned();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    daemon.spawn().await;
    assert!(daemon.log().contains(warning), "{}", daemon.log());
    assert_eq!(socket_mode_and_gid(&daemon.socket), (0o660, gid));
    drop(daemon);

    // A group other than the daemon's own proves the socket was given to it, by name and by number.
    match other_group() {
        Some((gid, name)) => {
            for group in [name, gid.to_string()] {
                let daemon = TestDaemon::start(&ok, &format!("socket_group = {group:?}")).await;
                assert_eq!(socket_mode_and_gid(&daemon.socket), (0o660, gid), "{group}");
            }
        }
        None => eprintln!("no second group to chown to: only the primary group was checked"),
    }
}

#[test]
fn an_unknown_socket_group_fails_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookd.toml");
    let socket = dir.path().join("hookd.sock");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nsocket = {:?}\nsocket_group = \"no-such-group-hookd-test\"\n",
            dir.path().join("data"),
            socket
        ),
    )
    .unwrap();
    let output = Command::new(HOOKD)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("socket_group `no-such-group-hookd-test`: no such group"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(!socket.exists(), "nothing was bound");
    assert!(
        !dir.path().join("data").exists(),
        "the group is checked before the data dir is created or the store opened"
    );
}
