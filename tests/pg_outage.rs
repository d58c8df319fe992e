//! PostgreSQL stopped for 5 s under load and started again, under a running PostgreSQL-backed `hookd serve`:
//! enqueues during the outage are refused promptly with 503 `store_unavailable`, nothing acknowledged with 202
//! is lost, the node reconnects by itself and delivers everything once the database is back.
//!
//! A test binary of its own: stopping the cluster affects every test of the binary that started it
//! (`tests/support/postgres_cluster.rs`), and this binary has no other test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "it/harness.rs"]
mod harness;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use harness::postgres_cluster::cluster;
use harness::{FAST_RETRY, Reply, TestDaemon, TestReceiver, endpoint, eventually};

/// How long PostgreSQL is down.
const OUTAGE: Duration = Duration::from_secs(5);
/// Clients enqueueing at once, one request after the other each.
const ENQUEUERS: usize = 4;
/// The pause between one client's requests: about 4 x 100 enqueues a second.
const PACE: Duration = Duration::from_millis(10);
/// An answer slower than this is a hang, not a prompt refusal (the pool's acquire timeout is 2 s).
const PROMPT: Duration = Duration::from_secs(5);
const WAIT: Duration = Duration::from_secs(60);
/// How long the receiver takes to answer the attempts in flight when PostgreSQL stops: longer than the stop
/// takes, shorter than the outage less the outcome write's retries (2.6 s).
const ANSWERED_IN_THE_OUTAGE: Duration = Duration::from_millis(1500);
/// Everything stored is delivered within this after the restart: well under a lease (the endpoint's timeout
/// plus a 30 s margin), so a message whose outcome or give-back was lost to the outage must be given back
/// when the database returns, not only found by the lease sweep once its lease has run out.
const DELIVERED_AFTER_RESTART: Duration = Duration::from_secs(20);

/// What one enqueue was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// 202 with this message id.
    Accepted(String),
    /// 503 `store_unavailable`, with its message.
    Unavailable(String),
    /// Anything else: the status (0: no answer at all) and the body.
    Other(u16, String),
}

#[derive(Debug, Clone)]
struct Sent {
    /// The payload's `n`, unique over the test.
    n: u64,
    started: Instant,
    took: Duration,
    answer: Answer,
}

/// How many answers of each kind so far: the events the test awaits.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    accepted: usize,
    unavailable: usize,
    other: usize,
}

async fn enqueue(client: &reqwest::Client, n: u64) -> Answer {
    let sent = client
        .post("http://hookd/v1/messages")
        .json(&json!({"endpoint": "load", "type": "event", "payload": {"n": n}}))
        .timeout(Duration::from_secs(30))
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(error) => return Answer::Other(0, error.to_string()),
    };
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    match status {
        202 => match body["id"].as_str() {
            Some(id) => Answer::Accepted(id.to_owned()),
            None => Answer::Other(status, body.to_string()),
        },
        503 if body["error"]["code"] == "store_unavailable" => {
            Answer::Unavailable(body["error"]["message"].as_str().unwrap_or("").to_owned())
        }
        _ => Answer::Other(status, body.to_string()),
    }
}

/// Clients enqueueing until `stop`, every answer recorded in `log` and counted in `counts`.
fn spawn_enqueuers(
    daemon: &TestDaemon,
    log: &Arc<Mutex<Vec<Sent>>>,
    counts: &watch::Sender<Counts>,
    stop: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let next = Arc::new(AtomicU64::new(0));
    (0..ENQUEUERS)
        .map(|_| {
            let client = daemon.raw();
            let (log, counts, stop, next) = (
                Arc::clone(log),
                counts.clone(),
                stop.clone(),
                Arc::clone(&next),
            );
            tokio::spawn(async move {
                while !stop.is_cancelled() {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let started = Instant::now();
                    let answer = enqueue(&client, n).await;
                    let took = started.elapsed();
                    counts.send_modify(|c| match answer {
                        Answer::Accepted(_) => c.accepted += 1,
                        Answer::Unavailable(_) => c.unavailable += 1,
                        Answer::Other(..) => c.other += 1,
                    });
                    log.lock().unwrap().push(Sent {
                        n,
                        started,
                        took,
                        answer,
                    });
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::time::sleep(PACE) => {}
                    }
                }
            })
        })
        .collect()
}

/// Waits until the counts satisfy `done`; panics after `within`.
async fn await_counts(
    counts: &watch::Sender<Counts>,
    within: Duration,
    what: &str,
    done: impl Fn(&Counts) -> bool,
) -> Counts {
    let mut rx = counts.subscribe();
    let waited = tokio::time::timeout(within, rx.wait_for(|c| done(c))).await;
    match waited {
        Ok(Ok(counts)) => *counts,
        _ => panic!("{what} within {within:?}; counts {:?}", *counts.borrow()),
    }
}

/// Every message in the database: id -> (the payload's `n`, stage).
async fn stored(url: &str) -> HashMap<String, (u64, String)> {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT id::text, payload, stage FROM hookd_messages")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    conn.close().await.unwrap();
    rows.into_iter()
        .map(|(id, payload, stage)| {
            let payload: Value = serde_json::from_str(&payload).unwrap();
            (id, (payload["n"].as_u64().unwrap(), stage))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_for_five_seconds_under_load_loses_nothing_acknowledged() {
    let receiver = TestReceiver::start(|_| Reply::ok()).await;
    let daemon =
        TestDaemon::start_on_postgres(&[endpoint("load", &receiver.url("/"), FAST_RETRY)], "")
            .await;
    let url = daemon.database_url.clone().unwrap();

    let log = Arc::new(Mutex::new(Vec::new()));
    let (counts, _) = watch::channel(Counts::default());
    let stop = CancellationToken::new();
    let enqueuers = spawn_enqueuers(&daemon, &log, &counts, &stop);

    // Load first: enqueues acknowledged and deliveries under way.
    await_counts(
        &counts,
        WAIT,
        "100 enqueues acknowledged before the outage",
        |c| c.accepted >= 100,
    )
    .await;
    receiver.wait_for(50, WAIT).await;

    // Attempts in flight when the database goes: their answers come while it is down, so their outcomes
    // cannot be written (nor, after the outcome retries, their leases given back) until it is back.
    let seen = receiver.count();
    receiver.set_script(|_| Reply::ok().delayed(ANSWERED_IN_THE_OUTAGE));
    receiver.wait_for(seen + 1, WAIT).await;

    // The outage.
    let stopping = Instant::now();
    tokio::task::spawn_blocking(|| cluster().stop())
        .await
        .unwrap();
    let down = Instant::now();
    receiver.set_script(|_| Reply::ok());
    let before = *counts.borrow();
    await_counts(&counts, OUTAGE, "enqueues refused during the outage", |c| {
        c.unavailable >= before.unavailable + ENQUEUERS
    })
    .await;
    // The outage lasts its 5 s whatever the enqueuers do: a duration, not a synchronisation.
    tokio::time::sleep_until((stopping + OUTAGE).into()).await;
    let during = *counts.borrow();
    let restarting = Instant::now();
    tokio::task::spawn_blocking(|| cluster().start())
        .await
        .unwrap();
    let up = Instant::now();

    // The node reconnects by itself: enqueues are acknowledged again.
    let after = *counts.borrow();
    await_counts(
        &counts,
        WAIT,
        "100 enqueues acknowledged after the restart",
        |c| c.accepted >= after.accepted + 100,
    )
    .await;
    let reconnected = up.elapsed();
    stop.cancel();
    for enqueuer in enqueuers {
        enqueuer.await.unwrap();
    }
    let log = log.lock().unwrap().clone();

    // The daemon stayed up and answers.
    daemon.client().status().await.unwrap();

    // Every answer came promptly, and every one was a 202 or a 503 store_unavailable.
    let slowest = log.iter().map(|s| s.took).max().unwrap();
    assert!(
        slowest < PROMPT,
        "an enqueue took {slowest:?}; log:\n{}",
        daemon.log()
    );
    let others: Vec<&Sent> = log
        .iter()
        .filter(|s| matches!(s.answer, Answer::Other(..)))
        .collect();
    assert!(
        others.is_empty(),
        "answers other than 202 and 503 store_unavailable: {others:?}"
    );
    // While the database was down (the request sent after it stopped, answered before it started again),
    // nothing was acknowledged.
    let in_outage: Vec<&Sent> = log
        .iter()
        .filter(|s| s.started >= down && s.started + s.took <= restarting)
        .collect();
    assert!(
        in_outage.len() >= ENQUEUERS,
        "{} enqueues in the outage",
        in_outage.len()
    );
    let false_acks: Vec<&Sent> = in_outage
        .iter()
        .copied()
        .filter(|s| !matches!(s.answer, Answer::Unavailable(_)))
        .collect();
    assert!(
        false_acks.is_empty(),
        "acknowledged while PostgreSQL was down: {false_acks:?}"
    );
    let slowest_in_outage = in_outage.iter().map(|s| s.took).max().unwrap();
    // The refusal says what is wrong and that it passes: the database, not a restart of hookd.
    for sent in &in_outage {
        if let Answer::Unavailable(message) = &sent.answer {
            assert!(
                message.contains("database") && !message.contains("restart"),
                "{message}"
            );
        }
    }

    // Every acknowledged message is in the database, under its id and with its payload: no false 202.
    let accepted: HashMap<String, u64> = log
        .iter()
        .filter_map(|s| match &s.answer {
            Answer::Accepted(id) => Some((id.clone(), s.n)),
            _ => None,
        })
        .collect();
    let in_db = stored(&url).await;
    for (id, n) in &accepted {
        assert_eq!(
            in_db.get(id).map(|(stored_n, _)| stored_n),
            Some(n),
            "message {id} (n {n}) was acknowledged but is not in the database"
        );
    }
    // A refused enqueue may still have committed (the answer lost with the connection): such a message is
    // kept and delivered like the others, never acknowledged twice.
    let refused_but_stored = in_db.len().saturating_sub(accepted.len());

    // Everything stored is delivered, without restarting hookd: the receiver saw each message's id.
    let within = DELIVERED_AFTER_RESTART.saturating_sub(up.elapsed());
    let delivered = eventually(within, || {
        let url = url.clone();
        async move {
            let in_db = stored(&url).await;
            in_db
                .values()
                .all(|(_, stage)| stage == "delivered")
                .then_some(in_db)
        }
    })
    .await;
    let delivered = delivered.unwrap_or_else(|| {
        panic!(
            "not every stored message was delivered within {DELIVERED_AFTER_RESTART:?} of the restart; log:\n{}",
            daemon.log()
        )
    });
    assert_eq!(
        delivered.len(),
        in_db.len(),
        "messages appeared or vanished"
    );
    let seen: BTreeSet<String> = receiver
        .received()
        .into_iter()
        .map(|r| r.webhook_id)
        .collect();
    let unseen: Vec<&String> = delivered.keys().filter(|id| !seen.contains(*id)).collect();
    assert!(
        unseen.is_empty(),
        "delivered but never seen by the receiver: {unseen:?}"
    );
    daemon.client().status().await.unwrap();
    let all_delivered = up.elapsed();

    eprintln!(
        "outage test: {} enqueues ({} acknowledged, {} refused while PostgreSQL was down), \
         {refused_but_stored} refused but stored; stop took {:?}, down {:?}, start took {:?}; \
         slowest answer {slowest:?} (in the outage {slowest_in_outage:?}); acknowledged again {reconnected:?} \
         and all delivered {all_delivered:?} after the start; counts before {before:?}, during {during:?}",
        log.len(),
        accepted.len(),
        in_outage.len(),
        down - stopping,
        restarting - down,
        up - restarting,
    );
}
