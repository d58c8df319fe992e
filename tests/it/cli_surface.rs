//! What a person reads: every flag described in `--help`, the man pages, an exit code per kind of failure,
//! errors that say what to do (a token, a limit, a missing file, a size), and log times as RFC 3339.

use std::process::{Command, Stdio};
use std::time::Duration;

use clap::CommandFactory;
use hookd::cli::{Cli, EXIT_CODES};

use crate::harness::{
    FAST_RETRY, HOOKD, Reply, TestDaemon, TestReceiver, cli_code_at, endpoint, eventually,
};

const WAIT: Duration = Duration::from_secs(30);

/// Every argument (flag or positional) of every verb, nested ones too, with the verb's full name; clap's own
/// `--help` and `--version` left out.
fn every_argument(command: &clap::Command, path: &str, found: &mut Vec<(String, clap::Arg)>) {
    for arg in command.get_arguments() {
        if ["help", "version"].contains(&arg.get_id().as_str()) {
            continue;
        }
        found.push((path.to_owned(), arg.clone()));
    }
    // clap's own `help` verbs are left out too.
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        every_argument(sub, &format!("{path} {}", sub.get_name()), found);
    }
}

#[test]
fn every_flag_and_positional_of_every_verb_has_help_text() {
    let mut command = Cli::command();
    command.build();
    let mut arguments = Vec::new();
    every_argument(&command, "hookd", &mut arguments);
    assert!(arguments.len() > 40, "walked {} arguments", arguments.len());
    let undocumented: Vec<String> = arguments
        .iter()
        .filter(|(_, arg)| {
            arg.get_help()
                .or(arg.get_long_help())
                .is_none_or(|h| h.to_string().trim().is_empty())
        })
        .map(|(path, arg)| format!("{path}: {}", arg.get_id()))
        .collect();
    assert!(undocumented.is_empty(), "no help text: {undocumented:#?}");

    fn verbs_without_about(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for sub in command.get_subcommands() {
            let name = format!("{path} {}", sub.get_name());
            if sub.get_name() != "help" && sub.get_about().is_none() {
                missing.push(name.clone());
            }
            verbs_without_about(sub, &name, missing);
        }
    }
    let mut missing = Vec::new();
    verbs_without_about(&command, "hookd", &mut missing);
    assert!(
        missing.is_empty(),
        "verbs without a description: {missing:?}"
    );
}

/// Runs `hookd ARGS` (no daemon involved): (exit code, stdout, stderr).
fn run_hookd(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(HOOKD)
        .args(args)
        .env_remove("HOOKD_SOCKET")
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

#[test]
fn help_lists_the_exit_codes_and_the_environment() {
    let (code, stdout, _) = run_hookd(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("Exit status:"), "{stdout}");
    for (number, meaning) in EXIT_CODES {
        assert!(
            stdout.contains(&format!("  {number}  {meaning}")),
            "{number}: {stdout}"
        );
    }
    for variable in ["HOOKD_SOCKET", "HOOKD_TOKEN", "HOOKD_LOG", "NOTIFY_SOCKET"] {
        assert!(stdout.contains(variable), "{variable}: {stdout}");
    }
    let (_, purge, _) = run_hookd(&["dlq", "purge", "--help"]);
    assert!(
        purge.contains("--yes") && purge.contains("--dry-run"),
        "{purge}"
    );
}

#[test]
fn man_writes_a_page_for_hookd_and_for_every_verb() {
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    let (code, stdout, stderr) = run_hookd(&["man", "--dir", pages.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    for page in [
        "hookd.1",
        "hookd-serve.1",
        "hookd-send.1",
        "hookd-msg.1",
        "hookd-msg-show.1",
        "hookd-dlq.1",
        "hookd-dlq-list.1",
        "hookd-dlq-purge.1",
        "hookd-endpoints.1",
        "hookd-endpoints-delete.1",
        "hookd-tokens-create.1",
        "hookd-config-check.1",
        "hookd-man.1",
    ] {
        let path = pages.join(page);
        assert!(path.exists(), "{page} missing; wrote:\n{stdout}");
        assert!(
            stdout.lines().any(|l| l == path.to_str().unwrap()),
            "{page} not listed:\n{stdout}"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(".TH"), "{page} is roff");
    }
    assert!(
        !pages.join("hookd-help.1").exists(),
        "no page for clap's help"
    );
    let purge = std::fs::read_to_string(pages.join("hookd-dlq-purge.1")).unwrap();
    assert!(purge.contains("\\-\\-yes"), "{purge}");
    assert!(
        purge.contains("HOOKD_SOCKET") && purge.contains("HOOKD_TOKEN"),
        "a verb's page names the variables its options read: {purge}"
    );
    let top = std::fs::read_to_string(pages.join("hookd.1")).unwrap();
    for needle in [
        ".SH ENVIRONMENT",
        "HOOKD_SOCKET",
        "HOOKD_TOKEN",
        "HOOKD_LOG",
        "NOTIFY_SOCKET",
        ".SH \"EXIT STATUS\"",
        "hookd\\-dlq(1)",
    ] {
        assert!(top.contains(needle), "{needle} not in hookd.1:\n{top}");
    }
    // Without --dir the top page goes to stdout, as before.
    let (code, stdout, _) = run_hookd(&["man"]);
    assert_eq!(code, Some(0));
    assert_eq!(stdout, top);
}

#[test]
fn a_missing_config_file_is_said_once_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.toml");
    for verb in ["serve", "status"] {
        let (code, _, stderr) = run_hookd(&[verb, "--config", missing.to_str().unwrap()]);
        assert_eq!(code, Some(2), "{verb}: {stderr}");
        assert_eq!(
            stderr.matches("No such file or directory").count(),
            1,
            "{verb}: {stderr}"
        );
        assert!(stderr.contains("absent.toml"), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_failure_has_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    // 3: nothing answers on the socket.
    let (code, _, stderr) = cli_code_at(&dir.path().join("none.sock"), &["status"]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("hookd is not running"), "{stderr}");

    let receiver = TestReceiver::start(|_| Reply::status(400)).await;
    let daemon = TestDaemon::start(
        &[endpoint(
            "ok",
            &receiver.url("/"),
            &format!("max_attempts = 1\n{FAST_RETRY}"),
        )],
        "",
    )
    .await;
    // 4: not found.
    let unknown = "0190d3a2-0000-7000-8000-000000000000";
    for args in [
        vec!["msg", "show", unknown],
        vec!["dlq", "show", unknown],
        vec!["endpoints", "show", "nope"],
        vec!["send", "--endpoint", "nope", "--type", "t", "{}"],
    ] {
        let (code, _, stderr) = daemon.cli_code(&args);
        assert_eq!(code, Some(4), "{args:?}: {stderr}");
    }
    // 2: invalid input, whether clap, the CLI or the daemon finds it.
    for args in [
        vec!["dlq", "list", "--bogus"],
        vec!["send", "--endpoint", "ok", "--type", "t", "{broken"],
        vec!["send", "--endpoint", "ok", "--type", "no spaces", "{}"],
        vec!["dlq", "list", "--limit", "0"],
        vec!["msg", "show", "not-a-uuid"],
    ] {
        let (code, _, stderr) = daemon.cli_code(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
    }
    // 1: anything else, e.g. ids that are not dead letters.
    let dead = daemon.send("ok", "event", "{}").await;
    daemon.wait_state(&dead, "dead", WAIT).await;
    let (code, _, stderr) = daemon.cli_code(&["dlq", "replay", &dead, unknown]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("not in the dead-letter queue"), "{stderr}");
    // 5: unauthorised, once a token exists; and forbidden for a scoped token.
    let (code, admin, stderr) = daemon.cli_code(&["tokens", "create", "ops"]);
    assert_eq!(code, Some(0), "{stderr}");
    let admin = admin.trim().to_owned();
    let (code, scoped, _) = daemon.cli_code(&[
        "tokens",
        "create",
        "shop",
        "--endpoint",
        "ok",
        "--token",
        &admin,
    ]);
    assert_eq!(code, Some(0));
    let (code, _, stderr) = daemon.cli_code(&["status"]);
    assert_eq!(code, Some(5), "{stderr}");
    let (code, _, stderr) = daemon.cli_code(&["status", "--token", scoped.trim()]);
    assert_eq!(code, Some(5), "{stderr}");
    assert!(stderr.contains("forbidden"), "{stderr}");
    let (code, _, stderr) = daemon.cli_code(&["status", "--token", &admin]);
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_token_exists_a_401_says_how_to_pass_one() {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let daemon = TestDaemon::start(&[endpoint("ok", &receiver.url("/"), FAST_RETRY)], "").await;
    let (code, token, stderr) = daemon.cli_code(&["tokens", "create", "ops"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("every request to the API now needs a token")
            && stderr.contains("--token")
            && stderr.contains("HOOKD_TOKEN"),
        "tokens create says what changed: {stderr}"
    );
    let token = token.trim().to_owned();

    let (code, _, stderr) = daemon.cli_code(&["endpoints", "list"]);
    assert_eq!(code, Some(5));
    assert!(
        stderr.contains("requires an access token")
            && stderr.contains("--token TOKEN")
            && stderr.contains("HOOKD_TOKEN"),
        "{stderr}"
    );
    let (code, _, stderr) = daemon.cli_code(&["endpoints", "list", "--token", "hkd_wrong"]);
    assert_eq!(code, Some(5));
    assert!(
        stderr.contains("not valid") && stderr.contains("--token"),
        "{stderr}"
    );
    let output = Command::new(HOOKD)
        .args(["endpoints", "list"])
        .env("HOOKD_SOCKET", &daemon.socket)
        .env("HOOKD_TOKEN", &token)
        .output()
        .unwrap();
    assert!(output.status.success(), "HOOKD_TOKEN is taken");

    // The API's own answer says it too, for curl users.
    let answer: serde_json::Value = daemon
        .raw()
        .get("http://hookd/v1/health")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("Authorization: Bearer") && message.contains("HOOKD_TOKEN"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_of_range_limit_is_refused_naming_limit_not_clamped() {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let daemon = TestDaemon::start(&[endpoint("ok", &receiver.url("/"), FAST_RETRY)], "").await;
    for limit in ["0", "1001", "5000"] {
        let response = daemon
            .raw()
            .get(format!("http://hookd/v1/dlq?limit={limit}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 422, "limit={limit}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("limit: {limit} must be between 1 and 1000")),
            "{body}"
        );
        for verb in [["dlq", "list"], ["endpoints", "list"]] {
            let (code, _, stderr) = daemon.cli_code(&[verb[0], verb[1], "--limit", limit]);
            assert_eq!(code, Some(2), "{verb:?} --limit {limit}: {stderr}");
            assert!(stderr.contains("limit:"), "{stderr}");
        }
    }
    let (code, _, stderr) = daemon.cli_code(&["dlq", "list", "--limit", "1000"]);
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_body_is_told_its_limit_in_words() {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let daemon = TestDaemon::start(
        &[endpoint("ok", &receiver.url("/"), FAST_RETRY)],
        "max_payload_bytes = 1024\nmax_batch_bytes = 65536",
    )
    .await;
    let payload = format!(r#"{{"blob":"{}"}}"#, "x".repeat(2000));
    let (code, _, stderr) = daemon.cli_code(&["send", "--endpoint", "ok", "--type", "t", &payload]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("at most 1 KiB") && stderr.contains("max_payload_bytes"),
        "{stderr}"
    );
    let response = daemon
        .raw()
        .post("http://hookd/v1/messages/batch")
        .body("x".repeat(100 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let body: serde_json::Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("over the limit of 64 KiB") && message.contains("max_batch_bytes"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_print_times_as_rfc_3339() {
    let receiver = TestReceiver::start(|_| Reply::status(503)).await;
    let daemon = TestDaemon::start(
        &[endpoint(
            "flaky",
            &receiver.url("/"),
            "retry = { schedule = [\"1h\"], jitter = 0.0 }",
        )],
        "",
    )
    .await;
    daemon.send("flaky", "event", "{}").await;
    receiver.wait_for(1, WAIT).await;
    let line = eventually(WAIT, || {
        let log = daemon.log();
        async move {
            log.lines()
                .find(|l| l.contains("retry scheduled"))
                .map(str::to_owned)
        }
    })
    .await
    .expect("a retry is logged");
    let (time, rest) = line.split_once(' ').unwrap();
    assert!(is_rfc3339_millis(time), "the line's time: {line}");
    let retry_at = rest
        .split_whitespace()
        .find_map(|field| field.strip_prefix("retry_at="))
        .unwrap_or_else(|| panic!("no retry_at: {line}"));
    assert!(is_rfc3339_millis(retry_at), "retry_at: {line}");
    for line in daemon.log().lines() {
        let time = line.split(' ').next().unwrap_or_default();
        assert!(is_rfc3339_millis(time), "{line}");
    }
}

/// `2026-11-21T09:50:06.964Z`.
fn is_rfc3339_millis(text: &str) -> bool {
    text.len() == 24
        && text.ends_with('Z')
        && text.as_bytes()[10] == b'T'
        && humantime::parse_rfc3339(text).is_ok()
}
