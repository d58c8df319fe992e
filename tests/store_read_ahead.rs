#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The PostgreSQL store's read-ahead (`Store::lease_due_ahead`): a claim takes more due messages than the
//! lane asked for and keeps them for the lane's next asks, without a statement. What must hold: they count
//! as in flight only while kept, and every way a lane or a node lets go of an endpoint gives them back,
//! queued and due now, with no attempt counted: the lane's own give-back (paused, settings changed,
//! stopped), the endpoint's deletion, the node's shutdown, and the node finding it lost the endpoint to
//! another node. sled reads nothing ahead.

mod backends;

use std::time::Duration;

use backends::{connect_postgres, fresh_database};
use hookd::model::{MessageRecord, Millis, Stage, now_millis};
use hookd::store::{Lease, MessageQuery, NewMessage, StageCounts, Store, Wanted};
use sqlx::Connection as _;

const E: &str = "acme";
const LEASE_MS: Millis = 30_000;

fn message() -> NewMessage {
    NewMessage {
        endpoint: E.to_owned(),
        kind: "order.created".to_owned(),
        payload: r#"{"order":42}"#.to_owned(),
        idempotency_key: None,
        contact: None,
    }
}

fn taken(lease: Lease) -> Vec<MessageRecord> {
    match lease {
        Lease::Taken(records) => records,
        other => panic!("expected messages, got {other:?}"),
    }
}

fn counts(store: &Store) -> StageCounts {
    store
        .counts()
        .unwrap()
        .by_endpoint
        .get(E)
        .copied()
        .unwrap_or_default()
}

async fn enqueue(store: &Store, n: usize) {
    for _ in 0..n {
        store.enqueue(&message(), now_millis()).await.unwrap();
    }
}

/// Every message of the endpoint as the database has it.
async fn listed(store: &Store) -> Vec<MessageRecord> {
    store
        .list_messages(&MessageQuery {
            endpoints: Some(vec![E.to_owned()]),
            wanted: Wanted::Any,
            kind: None,
            since: None,
            until: None,
            after: None,
            limit: 100,
        })
        .await
        .unwrap()
        .items
}

async fn queued_in_database(store: &Store) -> usize {
    listed(store)
        .await
        .iter()
        .filter(|record| record.stage == Stage::Queued)
        .count()
}

#[tokio::test]
async fn read_ahead_messages_are_served_in_due_order_and_given_back_queued() {
    let store = connect_postgres(&fresh_database().await).await;
    enqueue(&store, 10).await;
    let now = now_millis();

    let first = taken(
        store
            .lease_due_ahead(E, now, 1, 5, now + LEASE_MS)
            .await
            .unwrap(),
    );
    assert_eq!(first.len(), 1, "the lane gets what it asked for");
    let after_first = counts(&store);
    assert_eq!(
        (after_first.queued, after_first.in_flight),
        (4, 6),
        "five more are claimed ahead"
    );

    let next = taken(
        store
            .lease_due_ahead(E, now, 2, 5, now + LEASE_MS)
            .await
            .unwrap(),
    );
    assert_eq!(next.len(), 2);
    assert!(
        first[0].id < next[0].id && next[0].id < next[1].id,
        "due order"
    );
    assert_eq!(counts(&store).in_flight, 6, "served from the read-ahead");

    // The lane pauses: the three still kept go back; the three handed out stay the lane's.
    assert_eq!(store.give_back_ahead(E, now_millis()).await.unwrap(), 3);
    let given_back = counts(&store);
    assert_eq!((given_back.queued, given_back.in_flight), (7, 3));
    assert_eq!(queued_in_database(&store).await, 7);
    for record in listed(&store).await {
        assert_eq!(record.total_attempts, 0, "no attempt counted");
    }
    assert_eq!(store.give_back_ahead(E, now_millis()).await.unwrap(), 0);
}

#[tokio::test]
async fn shutdown_and_deletion_give_the_read_ahead_back() {
    let store = connect_postgres(&fresh_database().await).await;
    enqueue(&store, 8).await;
    let now = now_millis();
    let leased = taken(
        store
            .lease_due_ahead(E, now, 1, 4, now + LEASE_MS)
            .await
            .unwrap(),
    );
    assert_eq!(counts(&store).in_flight, 5);

    // The endpoint is deleted (its lane stopped): its leases and its read-ahead go back.
    assert_eq!(store.release_leases_of(E, now_millis()).await.unwrap(), 5);
    assert_eq!(counts(&store).queued, 8);
    assert!(!store.is_leased(leased[0].id));

    // Leased again with read-ahead, then the node shuts down.
    let now = now_millis();
    taken(
        store
            .lease_due_ahead(E, now, 2, 4, now + LEASE_MS)
            .await
            .unwrap(),
    );
    assert_eq!(counts(&store).in_flight, 6);
    assert_eq!(store.release_all_leases(now_millis()).await.unwrap(), 6);
    assert_eq!(counts(&store).queued, 8);
    assert_eq!(queued_in_database(&store).await, 8);
}

#[tokio::test]
async fn a_node_that_loses_an_endpoint_gives_its_read_ahead_back() {
    let url = fresh_database().await;
    let options = hookd::store::PgOptions {
        heartbeat: Duration::from_millis(200),
        ..backends::pg_options()
    };
    let a = Store::connect(&url, options.clone()).await.unwrap();
    let b = Store::connect(&url, options).await.unwrap();
    enqueue(&a, 6).await;
    let now = now_millis();
    taken(
        a.lease_due_ahead(E, now, 1, 5, now + LEASE_MS)
            .await
            .unwrap(),
    );

    // The lane lease is taken from a (as if it had run out); b may take the endpoint now.
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("DELETE FROM hookd_owners")
        .execute(&mut db)
        .await
        .unwrap();

    // a's heartbeat finds the lane lost and gives its five read-ahead messages back; b gets them.
    let mut on_b = 0;
    tokio::time::timeout(Duration::from_secs(5), async {
        while on_b < 5 {
            let now = now_millis();
            if let Lease::Taken(more) = b.lease_due(E, now, 10, now + LEASE_MS).await.unwrap() {
                on_b += more.len();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("a gives its read-ahead back within a few heartbeats");
    assert_eq!(on_b, 5);
}

#[tokio::test]
async fn a_read_ahead_message_whose_claim_runs_out_soon_is_not_handed_out() {
    let store = connect_postgres(&fresh_database().await).await;
    enqueue(&store, 3).await;
    let now = now_millis();
    // A short lane deadline: what is read ahead could not be renewed far enough for another attempt.
    taken(
        store
            .lease_due_ahead(E, now, 1, 2, now + 1_000)
            .await
            .unwrap(),
    );
    let later = now_millis();
    let next = taken(
        store
            .lease_due_ahead(E, later, 1, 0, later + LEASE_MS)
            .await
            .unwrap(),
    );
    assert_eq!(next.len(), 1, "claimed afresh");
    assert_eq!(
        counts(&store).in_flight,
        2,
        "the two read ahead went back; one of them was claimed again"
    );
}

#[tokio::test]
async fn the_heartbeat_renews_read_ahead_claims_until_they_are_used() {
    let url = fresh_database().await;
    let options = hookd::store::PgOptions {
        heartbeat: Duration::from_millis(200),
        lease_ttl: Duration::from_secs(1),
        ..backends::pg_options()
    };
    let a = Store::connect(&url, options.clone()).await.unwrap();
    let b = Store::connect(&url, options).await.unwrap();
    enqueue(&a, 4).await;
    let now = now_millis();
    taken(
        a.lease_due_ahead(E, now, 1, 3, now + LEASE_MS)
            .await
            .unwrap(),
    );
    // Several lease TTLs later, a's heartbeat has kept every claim alive: another node's reaper finds none.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    b.release_expired(now_millis()).await.unwrap();
    let listed = listed(&a).await;
    assert!(
        listed.iter().all(|record| record.stage == Stage::InFlight),
        "{:?}",
        listed.iter().map(|r| r.stage).collect::<Vec<_>>()
    );
    let later = now_millis();
    assert_eq!(
        taken(
            a.lease_due_ahead(E, later, 3, 3, later + LEASE_MS)
                .await
                .unwrap()
        )
        .len(),
        3,
        "the read-ahead is served"
    );
}
