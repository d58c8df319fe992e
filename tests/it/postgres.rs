//! The core paths on a daemon whose queue is in PostgreSQL (`[store] url`, a fresh database of this binary's
//! throwaway cluster): the same tests as on sled, each run here with [`Backend::Postgres`]. Delivery (webhook-id
//! and Standard Webhooks signature), retries, dead letters (list, show, replay, purge, paging), idempotency
//! keys, and a representative test of every receiver format (notification, sms-status-xml's batch, dlr-json's
//! handshake, gateway-json's device and incoming-SMS messages, app-inbox's Basic auth and contact cap).
//!
//! The outage (PostgreSQL stopped under load) is `tests/pg_outage.rs`, a binary of its own: stopping the
//! cluster would fail every other test of this binary.

use std::time::Duration;

use sqlx::Connection as _;

use crate::harness::{Backend, FAST_RETRY, Reply, TestDaemon, TestReceiver, endpoint};
use crate::{dead_letters, delivery, formats, signing};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_is_in_the_database_and_not_in_the_data_dir() {
    let receiver = TestReceiver::start(|_| Reply::status(400)).await;
    let daemon =
        TestDaemon::start_on_postgres(&[endpoint("r", &receiver.url("/"), FAST_RETRY)], "").await;
    let id = daemon.send("r", "event", r#"{"x":1}"#).await;
    daemon
        .wait_state(&id, "dead", Duration::from_secs(30))
        .await;
    let url = daemon.database_url.as_deref().unwrap();
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let stage: String = sqlx::query_scalar("SELECT stage FROM hookd_messages WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    assert_eq!(stage, "dead", "the daemon's view is the database's row");
    let data_dir = daemon.config_path.with_file_name("data");
    let in_data_dir: Vec<_> = std::fs::read_dir(&data_dir)
        .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        in_data_dir.is_empty(),
        "{}: {in_data_dir:?}",
        data_dir.display()
    );
    // The free-disk check is the data dir's, which holds no queue here: not checked, not warned about.
    let log = daemon.log();
    assert!(!log.contains("free space"), "{log}");
}

/// One `#[tokio::test]` per line: `name => test_fn_taking_a_backend`.
macro_rules! on_postgres {
    ($($name:ident => $test:path;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $test(Backend::Postgres).await;
        }
    )*};
}

on_postgres! {
    // Delivery, retries, idempotency.
    delivers_200_messages_each_with_one_attempt =>
        delivery::delivers_200_messages_each_with_one_attempt_on;
    retries_503_twice_then_delivers_with_three_attempts =>
        delivery::retries_503_twice_then_delivers_with_three_attempts_on;
    every_attempt_is_signed_and_a_tampered_request_fails_verification =>
        signing::every_attempt_is_signed_and_a_tampered_request_fails_verification_on;
    an_idempotency_key_queues_once => delivery::an_idempotency_key_queues_once_on;
    // Dead letters.
    final_and_exhausted_messages_are_dead_lettered_and_replayable =>
        dead_letters::final_and_exhausted_messages_are_dead_lettered_and_replayable_on;
    replay_of_one_id_and_purge => dead_letters::replay_of_one_id_and_purge_on;
    dlq_list_pages_with_a_cursor => dead_letters::dlq_list_pages_with_a_cursor_on;
    // Every format.
    notification_reads_the_status_code_model =>
        formats::notification_reads_the_status_code_model_on;
    sms_status_xml_batches_and_resends_what_was_not_echoed =>
        formats::sms_status_xml_batches_and_resends_what_was_not_echoed_on;
    dlr_json_verifies_first_and_sends_the_bearer_secret =>
        formats::dlr_json_verifies_first_and_sends_the_bearer_secret_on;
    gateway_json_sends_device_status_and_incoming_sms_as_is =>
        formats::gateway_json_sends_device_status_and_incoming_sms_as_is_on;
    app_inbox_answers_by_the_seed_table_with_basic_auth =>
        formats::app_inbox_answers_by_the_seed_table_with_basic_auth_on;
    app_inbox_refuses_a_contact_over_its_pending_cap =>
        formats::app_inbox_refuses_a_contact_over_its_pending_cap_on;
}

/// `hookd migrate` applies every migration to a fresh database, a second run finds nothing to apply, and the
/// schema it leaves is the one the daemon uses (the queue table's autovacuum settings included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hookd_migrate_applies_the_schema_once() {
    let url = crate::harness::postgres_cluster::cluster()
        .fresh_database()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hookd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nsocket = {:?}\n[store]\nurl = {url:?}\n",
            dir.path().join("data"),
            dir.path().join("hookd.sock")
        ),
    )
    .unwrap();
    let migrate = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookd"))
            .args(["migrate", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let first = migrate();
    let applied: usize = first
        .trim()
        .strip_prefix("migrations applied: ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output: {first}"));
    assert!(applied >= 2, "{first}");
    assert_eq!(
        migrate().trim(),
        "migrations applied: 0 (the schema is current)"
    );

    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let versions: i64 = sqlx::query_scalar("SELECT count(*) FROM hookd_schema")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(versions, applied as i64, "each migration recorded once");
    let options: Vec<String> = sqlx::query_scalar(
        "SELECT unnest(reloptions) FROM pg_class WHERE relname = 'hookd_messages'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    assert!(
        options.contains(&"autovacuum_vacuum_scale_factor=0.02".to_owned()),
        "{options:?}"
    );
}

/// The PostgreSQL store reads ahead for a lane that fills its places quickly (`Store::lease_due_ahead`);
/// those messages count as in flight only while the lane will send them soon. Here the receiver hangs: the
/// lane's four places fill at once (a claim takes the backlog ahead), then no place frees up, so the lane
/// gives back what was read ahead: four in flight, sixteen queued, as on sled. Paused meanwhile, they stay
/// queued (held), and the four attempts under way are the only messages in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_read_ahead_for_a_lane_that_cannot_send_them_are_given_back() {
    let hanging = TestReceiver::start(|_| Reply::hang()).await;
    let daemon = TestDaemon::start_on_postgres(
        &[endpoint(
            "busy",
            &hanging.url("/"),
            "timeout_ms = 60000\nconcurrency = 4",
        )],
        "",
    )
    .await;
    let (ok, _, stderr) = daemon.cli(&["endpoints", "pause", "busy"]);
    assert!(ok, "{stderr}");
    for _ in 0..20 {
        daemon.send("busy", "event", "{}").await;
    }
    let (ok, _, stderr) = daemon.cli(&["endpoints", "resume", "busy"]);
    assert!(ok, "{stderr}");
    hanging.wait_for(4, Duration::from_secs(30)).await;
    let counts = |daemon: &TestDaemon| {
        let client = daemon.client();
        async move {
            let status = client.status().await.unwrap();
            let busy = &status.endpoints["busy"];
            (busy.in_flight, busy.queued, busy.held)
        }
    };
    let settled = crate::harness::eventually(Duration::from_secs(10), || async {
        let (in_flight, queued, held) = counts(&daemon).await;
        (in_flight == 4 && queued == 16).then_some(held)
    })
    .await;
    assert_eq!(
        settled,
        Some(0),
        "four in flight, sixteen queued: {:?}",
        counts(&daemon).await
    );

    let (ok, _, stderr) = daemon.cli(&["endpoints", "pause", "busy"]);
    assert!(ok, "{stderr}");
    let (in_flight, queued, held) = counts(&daemon).await;
    assert_eq!((in_flight, queued + held), (4, 16));
    assert_eq!(hanging.count(), 4, "no more requests than places");
}
