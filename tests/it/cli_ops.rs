//! The operator's verbs: `hookd dlq list` filters, `dlq replay|purge --dry-run` (which changes nothing),
//! filtered bulk replays, destructive verbs that need `--yes` without a terminal, tables fitted to the
//! terminal width, and `hookd status`.

use std::process::{Command, Output};
use std::time::Duration;

use crate::harness::{FAST_RETRY, HOOKD, Reply, TestDaemon, TestReceiver, endpoint, eventually};

const WAIT: Duration = Duration::from_secs(30);

/// Runs the CLI against `daemon` with extra environment; `COLUMNS` is unset unless given.
fn run(daemon: &TestDaemon, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(HOOKD);
    command
        .args(args)
        .env("HOOKD_SOCKET", &daemon.socket)
        .env_remove("COLUMNS");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

/// Runs the CLI, expects success, and answers stdout parsed as JSON.
fn json(daemon: &TestDaemon, args: &[&str]) -> serde_json::Value {
    let (ok, stdout, stderr) = daemon.cli(args);
    assert!(ok, "{args:?}: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
}

/// The ids of a `dlq list --json` answer, in order.
fn ids(list: &serde_json::Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Two dead letters refused with 400 on `refusing`, one given up after two 503s on `failing`.
async fn daemon_with_dead_letters() -> (TestDaemon, TestReceiver, Vec<String>, String) {
    let refusing = TestReceiver::start(|_| Reply::status(400)).await;
    let failing = TestReceiver::start(|_| Reply::status(503)).await;
    let extra = format!("max_attempts = 2\n{FAST_RETRY}");
    let daemon = TestDaemon::start(
        &[
            endpoint("refusing", &refusing.url("/"), &extra),
            endpoint("failing", &failing.url("/"), &extra),
        ],
        "",
    )
    .await;
    let mut refused = Vec::new();
    for n in 0..2 {
        refused.push(
            daemon
                .send("refusing", "event", &format!(r#"{{"n":{n}}}"#))
                .await,
        );
    }
    let gave_up = daemon.send("failing", "event", "{}").await;
    for id in refused.iter().chain([&gave_up]) {
        daemon.wait_state(id, "dead", WAIT).await;
    }
    (daemon, failing, refused, gave_up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_list_filters_by_status_reason_and_time() {
    let (daemon, _failing, refused, gave_up) = daemon_with_dead_letters().await;
    let all = json(&daemon, &["dlq", "list", "--json"]);
    assert_eq!(ids(&all).len(), 3);

    let by_status = json(&daemon, &["dlq", "list", "--json", "--status", "400"]);
    assert_eq!(ids(&by_status), refused);
    assert!(
        by_status["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["last_status"] == 400)
    );
    assert_eq!(
        ids(&json(
            &daemon,
            &["dlq", "list", "--json", "--status", "503"]
        )),
        vec![gave_up.clone()]
    );
    assert_eq!(
        ids(&json(
            &daemon,
            &["dlq", "list", "--json", "--reason", "GAVE UP"]
        )),
        vec![gave_up.clone()],
        "the reason matches case-insensitively"
    );
    assert_eq!(
        ids(&json(
            &daemon,
            &[
                "dlq",
                "list",
                "--json",
                "--reason",
                "http 400",
                "--endpoint",
                "failing"
            ]
        )),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(&json(&daemon, &["dlq", "list", "--json", "--since", "1h"])).len(),
        3
    );
    assert_eq!(
        ids(&json(
            &daemon,
            &["dlq", "list", "--json", "--since", "2999-01-01T00:00:00Z"]
        ))
        .len(),
        0
    );

    // Pages count matches only: one match per page, the cursor leading to the second.
    let first = json(
        &daemon,
        &["dlq", "list", "--json", "--status", "400", "--limit", "1"],
    );
    assert_eq!(ids(&first), vec![refused[0].clone()]);
    let next = first["next"].as_str().expect("a second page").to_owned();
    let second = json(
        &daemon,
        &[
            "dlq", "list", "--json", "--status", "400", "--limit", "1", "--after", &next,
        ],
    );
    assert_eq!(ids(&second), vec![refused[1].clone()]);
    assert!(second.get("next").is_none(), "no third match: {second}");

    let bad = run(&daemon, &["dlq", "list", "--since", "yesterday-ish"], &[]);
    assert_eq!(bad.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("neither a duration"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_tables_fit_the_terminal_width() {
    let (daemon, _failing, _, gave_up) = daemon_with_dead_letters().await;
    let reason = "gave up after 2 attempts; last: HTTP 503";
    let full = run(&daemon, &["dlq", "list"], &[]);
    let full = String::from_utf8_lossy(&full.stdout).into_owned();
    assert!(full.contains(reason), "piped output is never cut:\n{full}");

    let fitted = run(&daemon, &["dlq", "list"], &[("COLUMNS", "120")]);
    let fitted = String::from_utf8_lossy(&fitted.stdout).into_owned();
    for line in fitted.lines() {
        assert!(
            line.chars().count() <= 120,
            "{} chars: {line}",
            line.chars().count()
        );
    }
    let row = fitted.lines().find(|l| l.contains(&gave_up)).unwrap();
    assert!(row.ends_with('…') && row.contains("gave up"), "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_dry_run_changes_nothing_and_filters_narrow_a_bulk_replay() {
    let (daemon, failing, refused, gave_up) = daemon_with_dead_letters().await;
    let before = json(&daemon, &["dlq", "list", "--json"]);
    let requests_before = failing.count();

    let (ok, stdout, stderr) = daemon.cli(&["dlq", "replay", "--all", "--dry-run"]);
    assert!(ok, "{stderr}");
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some("would replay 3 dead letters (dry run, nothing changed)")
    );
    let mut listed: Vec<&str> = lines.collect();
    listed.sort();
    let mut expected: Vec<&str> = refused
        .iter()
        .chain([&gave_up])
        .map(String::as_str)
        .collect();
    expected.sort();
    assert_eq!(listed, expected);

    let answer = json(
        &daemon,
        &[
            "dlq",
            "replay",
            "--all",
            "--status",
            "400",
            "--dry-run",
            "--json",
        ],
    );
    assert_eq!(answer["dry_run"], true);
    assert_eq!(answer["replayed"], 0);
    let mut selected: Vec<String> = serde_json::from_value(answer["selected"].clone()).unwrap();
    selected.sort();
    let mut refused_sorted = refused.clone();
    refused_sorted.sort();
    assert_eq!(selected, refused_sorted);

    let (ok, stdout, _) = daemon.cli(&["dlq", "replay", &gave_up, "--dry-run"]);
    assert!(ok);
    assert!(
        stdout.starts_with("would replay 1 dead letter "),
        "{stdout}"
    );
    let (ok, stdout, _) = daemon.cli(&[
        "dlq",
        "purge",
        "--all",
        "--endpoint",
        "refusing",
        "--dry-run",
    ]);
    assert!(ok);
    assert!(stdout.starts_with("would purge 2 dead letters"), "{stdout}");

    let after = json(&daemon, &["dlq", "list", "--json"]);
    assert_eq!(after, before, "a dry run changes nothing");
    assert_eq!(failing.count(), requests_before, "and sends nothing");

    // A filter only with --all is a usage error.
    let usage = run(
        &daemon,
        &["dlq", "replay", &gave_up, "--status", "400"],
        &[],
    );
    assert_eq!(usage.status.code(), Some(2));
    let usage = run(
        &daemon,
        &["dlq", "purge", &gave_up, "--endpoint", "failing"],
        &[],
    );
    assert_eq!(usage.status.code(), Some(2));

    // The same filter without --dry-run replays exactly what the dry run listed.
    failing.set_script(|_| Reply::ok());
    let (ok, stdout, stderr) = daemon.cli(&["dlq", "replay", "--all", "--reason", "gave up"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "replayed 1");
    daemon.wait_state(&gave_up, "delivered", WAIT).await;
    assert_eq!(ids(&json(&daemon, &["dlq", "list", "--json"])), refused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_state_depth_oldest_message_and_rates_per_endpoint() {
    let ok = TestReceiver::start(|_| Reply::ok()).await;
    // Answers 503: with a one-hour retry schedule the message then waits, queued, for an hour.
    let slow = TestReceiver::start(|_| Reply::status(503)).await;
    // Refuses the verification handshake: the endpoint stays unverified and its messages are held.
    let unverified = TestReceiver::start(|_| Reply::status(403)).await;
    let daemon = TestDaemon::start(
        &[
            endpoint("ok", &ok.url("/"), FAST_RETRY),
            endpoint(
                "slow",
                &slow.url("/"),
                "retry = { schedule = [\"1h\"], jitter = 0.0 }",
            ),
            endpoint(
                "dlr",
                &unverified.url("/"),
                "format = \"dlr-json\"\nverification = { validation_key = \"K1\" }",
            ),
        ],
        "",
    )
    .await;
    for n in 0..2 {
        let id = daemon.send("ok", "event", &format!(r#"{{"n":{n}}}"#)).await;
        daemon.wait_state(&id, "delivered", WAIT).await;
    }
    let waiting = daemon.send("slow", "event", "{}").await;
    let held = daemon
        .send("dlr", "dlr", r#"{"id":"x:1","status":"DELIVRD"}"#)
        .await;
    let waiting_view = eventually(WAIT, || {
        let client = daemon.client();
        let id = waiting.clone();
        async move {
            let view = client.message(&id).await.ok()?;
            (view.state.as_str() == "queued" && view.attempts.len() == 1).then_some(view)
        }
    })
    .await
    .expect("the 503 puts the message back, due in an hour");
    let report = eventually(WAIT, || {
        let client = daemon.client();
        async move {
            let report = client.status().await.ok()?;
            let dlr = report.endpoints.get("dlr")?;
            dlr.state_detail
                .as_deref()?
                .contains("403")
                .then_some(report)
        }
    })
    .await
    .expect("the failed handshake shows in the status");

    let ok_status = &report.endpoints["ok"];
    assert_eq!(ok_status.state, "active");
    assert_eq!(
        (ok_status.delivered, ok_status.queued, ok_status.held),
        (2, 0, 0)
    );
    assert_eq!(ok_status.last_minute.delivered, 2);
    assert_eq!(ok_status.since_start.enqueued, 2);
    assert_eq!(ok_status.since_start.attempts, 2);
    assert!(ok_status.oldest_queued_at.is_none());

    let slow_status = &report.endpoints["slow"];
    assert_eq!((slow_status.queued, slow_status.held), (1, 0));
    assert_eq!(slow_status.last_minute.retry, 1);
    assert_eq!(slow_status.since_start.retries, 1);
    assert_eq!(slow_status.oldest_queued_at, Some(waiting_view.created_at));
    assert!(slow_status.oldest_queued_age_ms.is_some());

    let dlr_status = &report.endpoints["dlr"];
    assert_eq!(dlr_status.state, "unverified");
    assert_eq!((dlr_status.queued, dlr_status.held), (0, 1));
    let held_view = daemon.message(&held).await;
    assert_eq!(dlr_status.oldest_queued_at, Some(held_view.created_at));
    assert_eq!(report.last_minute.delivered, 2);
    // The fields that were there before are still there.
    assert_eq!(report.stats.totals.delivered, 2);
    assert_eq!(report.stats.held_endpoints, vec!["dlr".to_owned()]);

    let text = json(&daemon, &["status", "--json"]);
    assert_eq!(text["endpoints"]["slow"]["queued"], 1);
    assert_eq!(text["by_endpoint"]["ok"]["delivered"], 2);

    let (ok, stdout, stderr) = daemon.cli(&["status"]);
    assert!(ok, "{stderr}");
    let header = stdout.lines().next().unwrap();
    for column in ["ENDPOINT", "STATE", "HELD", "OLDEST", "DELIVERED/MIN"] {
        assert!(header.contains(column), "{header}");
    }
    let dlr_row = stdout.lines().find(|l| l.starts_with("dlr ")).unwrap();
    assert!(dlr_row.contains("unverified"), "{dlr_row}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("dlr: unverified (") && l.contains("403")),
        "{stdout}"
    );
    assert!(stdout.contains("since start: 4 enqueued"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_purge_without_a_terminal_needs_yes_and_a_dry_run_says_what_it_would_purge() {
    let (daemon, _failing, refused, gave_up) = daemon_with_dead_letters().await;
    let before = json(&daemon, &["dlq", "list", "--json"]);
    assert_eq!(ids(&before).len(), 3);

    // The tests' stdin is not a terminal: nobody could be asked, so nothing is purged.
    for args in [
        vec!["dlq", "purge", "--all"],
        vec!["dlq", "purge", "--all", "--endpoint", "refusing"],
        vec!["dlq", "purge", gave_up.as_str()],
    ] {
        let (code, stdout, stderr) = daemon.cli_code(&args);
        assert_eq!(code, Some(2), "{args:?}: {stdout}{stderr}");
        assert!(
            stderr.contains("--yes") && stderr.contains("--dry-run"),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains("nothing was changed"), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
    assert_eq!(
        json(&daemon, &["dlq", "list", "--json"]),
        before,
        "nothing purged"
    );

    // A dry run needs no terminal and no --yes.
    let (code, stdout, stderr) = daemon.cli_code(&[
        "dlq",
        "purge",
        "--all",
        "--endpoint",
        "refusing",
        "--dry-run",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some("would purge 2 dead letters (dry run, nothing changed)")
    );
    let mut listed: Vec<&str> = lines.collect();
    listed.sort();
    let mut expected: Vec<&str> = refused.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(json(&daemon, &["dlq", "list", "--json"]), before);

    // --yes and --dry-run contradict each other.
    let (code, _, _) = daemon.cli_code(&["dlq", "purge", "--all", "--yes", "--dry-run"]);
    assert_eq!(code, Some(2));

    // --yes purges, without asking.
    let (code, stdout, stderr) =
        daemon.cli_code(&["dlq", "purge", "--all", "--endpoint", "refusing", "--yes"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.trim(), "purged 2");
    assert_eq!(
        ids(&json(&daemon, &["dlq", "list", "--json"])),
        vec![gave_up.clone()]
    );
    let (code, stdout, stderr) = daemon.cli_code(&["dlq", "purge", "-y", &gave_up]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.trim(), "purged 1");
    assert!(ids(&json(&daemon, &["dlq", "list", "--json"])).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_delete_that_retires_messages_asks_first_and_its_dry_run_shows_the_counts() {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let daemon = TestDaemon::start(&[], "").await;
    for name in ["gone", "empty"] {
        let (ok, _, stderr) = daemon.cli(&[
            "endpoints",
            "create",
            name,
            "--format",
            "json",
            "--url",
            &receiver.url("/"),
        ]);
        assert!(ok, "{stderr}");
    }
    // Paused: its messages wait, queued.
    let (ok, _, stderr) = daemon.cli(&["endpoints", "pause", "gone"]);
    assert!(ok, "{stderr}");
    let waiting = [
        daemon.send("gone", "event", "{}").await,
        daemon.send("gone", "event", "{}").await,
    ];

    let (code, stdout, stderr) = daemon.cli_code(&[
        "endpoints",
        "delete",
        "gone",
        "--messages",
        "dead-letter",
        "--dry-run",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("2 queued, 0 in flight, 0 delivered, 0 dead"),
        "{stdout}"
    );
    assert!(
        stdout.contains("would delete it and dead-letter its 2 waiting messages"),
        "{stdout}"
    );
    assert!(stdout.contains("(dry run, nothing changed)"), "{stdout}");
    let (code, stdout, _) = daemon.cli_code(&["endpoints", "delete", "gone", "--dry-run"]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("would be refused while it has 2 waiting messages"),
        "{stdout}"
    );
    let plan = json(
        &daemon,
        &[
            "endpoints",
            "delete",
            "gone",
            "--messages",
            "purge",
            "--dry-run",
            "--json",
        ],
    );
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["counts"]["queued"], 2);

    // Without a terminal and without --yes: refused, the endpoint and its messages untouched.
    let (code, _, stderr) =
        daemon.cli_code(&["endpoints", "delete", "gone", "--messages", "dead-letter"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--yes") && stderr.contains("2 waiting messages"),
        "{stderr}"
    );
    let (ok, _, _) = daemon.cli(&["endpoints", "show", "gone"]);
    assert!(ok, "the endpoint is still there");
    for id in &waiting {
        assert_eq!(daemon.message(id).await.state.as_str(), "held");
    }

    // An endpoint without messages has nothing to ask about.
    let (code, stdout, stderr) =
        daemon.cli_code(&["endpoints", "delete", "empty", "--messages", "purge"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("deleted empty (0 messages retired)"),
        "{stdout}"
    );

    // --yes deletes and retires.
    let (code, stdout, stderr) = daemon.cli_code(&[
        "endpoints",
        "delete",
        "gone",
        "--messages",
        "dead-letter",
        "--yes",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("deleted gone (2 messages retired)"),
        "{stdout}"
    );
    for id in &waiting {
        assert_eq!(daemon.message(id).await.state.as_str(), "dead");
    }
    let (code, _, _) = daemon.cli_code(&["endpoints", "show", "gone"]);
    assert_eq!(code, Some(4), "not found");
}
