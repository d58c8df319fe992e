#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The PostgreSQL backend as a cluster: several stores (nodes) on one database, each test on a fresh
//! database of this binary's throwaway cluster. What one node alone cannot show: a claim that ran out and
//! was taken by another node is not overwritten by the late outcome of the first; an endpoint's lane runs
//! on one node at a time; idempotency keys and contact caps hold across nodes enqueueing at once; another
//! node's endpoint and token changes and new work are notified within a second.

mod backends;

use std::time::Duration;

use backends::{connect_postgres, fresh_database};
use hookd::model::{
    AttemptRecord, AttemptResult, MessageId, MessageRecord, Millis, Stage, now_millis,
};
use hookd::retry::Decision;
use hookd::store::{
    Change, ContactLimit, EndpointState, Lease, NewMessage, Store, StoreError, TokenRecord,
};

const E: &str = "acme";
/// How long a lane may hold what it leased, in these tests.
const LEASE_MS: Millis = 30_000;

fn message(endpoint: &str) -> NewMessage {
    NewMessage {
        endpoint: endpoint.to_owned(),
        kind: "order.created".to_owned(),
        payload: r#"{"order":42}"#.to_owned(),
        idempotency_key: None,
        contact: None,
    }
}

fn attempt(number: u32, now: Millis) -> AttemptRecord {
    AttemptRecord {
        number,
        started_at: now,
        duration_ms: 1,
        status: Some(200),
        error: None,
        reason: "2xx".into(),
        result: AttemptResult::Delivered,
        body_excerpt: String::new(),
        receipt: None,
    }
}

fn taken(lease: Lease) -> Vec<MessageRecord> {
    match lease {
        Lease::Taken(records) => records,
        other => panic!("expected messages, got {other:?}"),
    }
}

async fn two_nodes() -> (Store, Store) {
    let url = fresh_database().await;
    (connect_postgres(&url).await, connect_postgres(&url).await)
}

async fn stage(store: &Store, id: MessageId) -> Stage {
    store.get(id).await.unwrap().expect("the message").stage
}

#[tokio::test]
async fn an_endpoints_lane_runs_on_one_node_at_a_time() {
    let (a, b) = two_nodes().await;
    let now = now_millis();
    a.enqueue(&message(E), now).await.unwrap();
    a.enqueue(&message(E), now).await.unwrap();

    let on_a = taken(a.lease_due(E, now, 1, now + LEASE_MS).await.unwrap());
    assert_eq!(on_a.len(), 1);
    // b finds a's live lane lease: its lane is told there is nothing for it, though one message is due.
    assert!(matches!(
        b.lease_due(E, now, 10, now + LEASE_MS).await.unwrap(),
        Lease::Idle
    ));
    // Another endpoint is free for b.
    let other = b.enqueue(&message("other"), now).await.unwrap().id;
    assert_eq!(
        taken(b.lease_due("other", now, 10, now + LEASE_MS).await.unwrap())[0].id,
        other
    );
}

#[tokio::test]
async fn a_late_outcome_of_a_claim_taken_over_changes_nothing() {
    let (a, b) = two_nodes().await;
    let now = now_millis();
    let id = a.enqueue(&message(E), now).await.unwrap().id;
    let leased = taken(a.lease_due(E, now, 1, now + LEASE_MS).await.unwrap());
    assert_eq!(leased[0].id, id);

    // a goes silent: b's reaper, run after a's claim and lane lease would have run out, takes both back.
    let later = now + LEASE_MS + 60_000;
    let woken = b.release_expired(later).await.unwrap();
    assert_eq!(woken, vec![E.to_owned()], "the endpoint to wake on b");
    assert_eq!(stage(&b, id).await, Stage::Queued);
    let on_b = taken(b.lease_due(E, later, 1, later + LEASE_MS).await.unwrap());
    assert_eq!(on_b[0].id, id);

    // a's attempt ends late: its claim is gone, so its outcome is not written.
    a.record_attempt(id, &attempt(1, now), &Decision::Delivered, now + 10)
        .await
        .unwrap();
    assert_eq!(stage(&b, id).await, Stage::InFlight, "b's claim stands");

    // b's outcome is written.
    b.record_attempt(id, &attempt(1, later), &Decision::Delivered, later + 10)
        .await
        .unwrap();
    let record = b.get(id).await.unwrap().unwrap();
    assert_eq!(record.stage, Stage::Delivered);
    assert_eq!(record.delivered_at, Some(later + 10));
    assert_eq!(record.total_attempts, 1);
}

#[tokio::test]
async fn idempotency_keys_hold_across_nodes_enqueueing_at_once() {
    let (a, b) = two_nodes().await;
    let now = now_millis();
    let keyed = |key: &str| NewMessage {
        idempotency_key: Some(key.to_owned()),
        ..message(E)
    };
    let mut tasks = Vec::new();
    for round in 0..20 {
        for node in [&a, &b] {
            let (node, new) = (node.clone(), keyed(&format!("k{round}")));
            tasks.push(tokio::spawn(async move {
                node.enqueue(&new, now).await.unwrap()
            }));
        }
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    for pair in answers.chunks(2) {
        assert_eq!(pair[0].id, pair[1].id, "both nodes answer the first id");
        assert_eq!(
            pair.iter().filter(|e| !e.duplicate).count(),
            1,
            "exactly one of the two queued it: {pair:?}"
        );
    }
    assert_eq!(a.recount().await.unwrap().by_endpoint[E].queued, 20);
}

#[tokio::test]
async fn a_contacts_cap_is_exact_under_enqueues_from_several_nodes() {
    let (a, b) = two_nodes().await;
    let now = now_millis();
    let for_alice = NewMessage {
        contact: Some(ContactLimit {
            contact: "alice".into(),
            max_pending: 5,
        }),
        ..message(E)
    };
    let mut tasks = Vec::new();
    for _ in 0..15 {
        for node in [&a, &b] {
            let (node, new) = (node.clone(), for_alice.clone());
            tasks.push(tokio::spawn(async move { node.enqueue(&new, now).await }));
        }
    }
    let (mut queued, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => queued += 1,
            Err(StoreError::ContactFull { .. }) => refused += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((queued, refused), (5, 25));
    assert_eq!(b.recount().await.unwrap().by_endpoint[E].queued, 5);
}

/// The next change `changes` reports that `wanted` accepts, within a second.
async fn within_a_second(
    changes: &mut tokio::sync::broadcast::Receiver<Change>,
    wanted: impl Fn(&Change) -> bool,
) -> Change {
    tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            let change = changes.recv().await.expect("the change stream");
            if wanted(&change) {
                return change;
            }
        }
    })
    .await
    .expect("the change arrives within a second")
}

#[tokio::test]
async fn another_nodes_endpoint_token_and_work_changes_arrive_within_a_second() {
    let (a, b) = two_nodes().await;
    let mut on_b = b.changes().expect("a shared store reports changes");

    let state = EndpointState {
        paused: true,
        ..EndpointState::default()
    };
    a.set_endpoint_state(E, &state).await.unwrap();
    within_a_second(&mut on_b, |c| *c == Change::Endpoint(E.into())).await;
    assert_eq!(b.endpoint_state(E).unwrap(), state, "b reread the record");

    a.create_token(&TokenRecord {
        name: "ops".into(),
        sha256: "00".repeat(32),
        created_at: 1,
        endpoint: None,
    })
    .await
    .unwrap();
    within_a_second(&mut on_b, |c| *c == Change::Tokens).await;
    assert_eq!(b.tokens().unwrap().len(), 1);

    a.enqueue(&message(E), now_millis()).await.unwrap();
    within_a_second(
        &mut on_b,
        |c| matches!(c, Change::Work(e) if e == &[E.to_owned()]),
    )
    .await;

    // A node is not told of its own changes: it applied them already.
    let mut on_a = a.changes().unwrap();
    b.remove_endpoint_state(E).await.unwrap();
    within_a_second(&mut on_a, |c| *c == Change::Endpoint(E.into())).await;
    assert!(
        on_b.try_recv().is_err(),
        "b heard nothing of its own change"
    );
}

#[tokio::test]
async fn a_second_node_sees_the_first_nodes_counts_after_a_heartbeat() {
    let url = fresh_database().await;
    let options = hookd::store::PgOptions {
        heartbeat: Duration::from_millis(200),
        ..backends::pg_options()
    };
    let a = Store::connect(&url, options.clone()).await.unwrap();
    let b = Store::connect(&url, options).await.unwrap();
    for _ in 0..3 {
        a.enqueue(&message(E), now_millis()).await.unwrap();
    }
    // b learns of a's messages from the database's tally, rereading it while it has a live peer.
    tokio::time::timeout(Duration::from_secs(5), async {
        while b.pending_of(E) != 3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("b's counts catch up within a few heartbeats");
}
