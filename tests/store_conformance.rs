#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Conformance suite for the durable queue, `hookd::store::Store`, driven only through its public verbs.
//!
//! It pins each verb's contract: `enqueue` (the record it writes, queued and due now, idempotency keys
//! scoped to their endpoint), `commit` (writes survive closing and reopening the data dir) and the data dir
//! lock, `lease_due` (idle, next due time, at most `max`, only the named endpoint, in flight),
//! `record_attempt` (delivered, retry at a time, dead; counters and attempt history), `release` and
//! `release_all_leases`, `list_dead` (endpoint filter and cursor paging), `replay`, `purge`,
//! `prune_delivered` and `counts`. Every test opens its own store in a fresh temporary directory and passes
//! explicit millisecond times, so nothing depends on the wall clock or on sleeping.

mod backends;

use backends::{each_backend, in_own_runtime, open_sled, sled_once_released};

use std::collections::BTreeMap;
use std::panic::Location;
use std::path::Path;

use hookd::model::{AttemptRecord, AttemptResult, MessageId, MessageRecord, Millis, Stage};
use hookd::retry::Decision;
use hookd::store::{
    AttemptOutcome, ContactLimit, Counts, DeadPage, Enqueued, Lease, NewMessage, Selection,
    StageCounts, Store, StoreError,
};

/// How long a lease lasts in these tests; no verb under test reads the deadline back.
const LEASE_MS: Millis = 30_000;
const E: &str = "e";
/// Shares `E` as a byte prefix, so a prefix scan that forgets the separator would mix the two.
const E2: &str = "e2";

/// Where a test called an asserting async helper. `#[track_caller]` does not reach into an `async fn`'s body,
/// so such a helper is a `#[track_caller]` function that captures its caller and returns the future, and its
/// failure message starts with the test's line. Helpers that build on one another pass the caller on through
/// the `…_for(…, caller)` variants.
type Caller = &'static Location<'static>;

/// The store's live counts, after checking them against a fresh count from the indexes.
#[track_caller]
fn counted(store: &Store) -> impl Future<Output = Counts> + '_ {
    counted_for(store, Location::caller())
}

async fn counted_for(store: &Store, caller: Caller) -> Counts {
    let live = store.counts().unwrap();
    assert_eq!(
        live,
        store.recount().await.unwrap(),
        "{caller}: the live tally drifted from the indexes"
    );
    live
}

/// Checks that the store's live counts (themselves checked against a recount) are `expected`, by endpoint.
#[track_caller]
fn assert_counts<'a>(
    store: &'a Store,
    expected: &'a [(&'a str, StageCounts)],
) -> impl Future<Output = ()> + 'a {
    let caller = Location::caller();
    async move {
        let live = counted_for(store, caller).await;
        assert_eq!(
            live,
            counts_of(expected),
            "{caller}: the counts by endpoint"
        );
    }
}

fn message(endpoint: &str, idempotency_key: Option<&str>) -> NewMessage {
    NewMessage {
        endpoint: endpoint.to_owned(),
        kind: "order.created".to_owned(),
        payload: r#"{"order":42,"lines":[1,2]}"#.to_owned(),
        idempotency_key: idempotency_key.map(str::to_owned),
        contact: None,
    }
}

/// Enqueues a fresh message (no idempotency key), due at `now`.
#[track_caller]
fn enqueue<'a>(
    store: &'a Store,
    endpoint: &'a str,
    now: Millis,
) -> impl Future<Output = MessageId> + 'a {
    enqueue_for(store, endpoint, now, Location::caller())
}

async fn enqueue_for(store: &Store, endpoint: &str, now: Millis, caller: Caller) -> MessageId {
    let enqueued = store.enqueue(&message(endpoint, None), now).await.unwrap();
    assert!(
        !enqueued.duplicate,
        "{caller}: a message without key is never a duplicate"
    );
    enqueued.id
}

/// Enqueues a message with idempotency key `key`, due at `now`, and answers the store's answer (which may be
/// a duplicate): the tests of keys check it themselves.
async fn enqueue_keyed(store: &Store, endpoint: &str, key: &str, now: Millis) -> Enqueued {
    enqueue_message(store, &message(endpoint, Some(key)), now).await
}

#[track_caller]
fn record(store: &Store, id: MessageId) -> impl Future<Output = MessageRecord> + '_ {
    record_for(store, id, Location::caller())
}

#[track_caller]
fn records<'a>(
    store: &'a Store,
    ids: &'a [MessageId],
) -> impl Future<Output = Vec<MessageRecord>> + 'a {
    let caller = Location::caller();
    async move {
        let mut records = Vec::new();
        for id in ids {
            records.push(record_for(store, *id, caller).await);
        }
        records
    }
}

async fn record_for(store: &Store, id: MessageId, caller: Caller) -> MessageRecord {
    store
        .get(id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{caller}: no record for {id}"))
}

#[track_caller]
fn stage(store: &Store, id: MessageId) -> impl Future<Output = Stage> + '_ {
    let caller = Location::caller();
    async move { record_for(store, id, caller).await.stage }
}

fn taken_for(lease: Lease, caller: Caller) -> Vec<MessageRecord> {
    match lease {
        Lease::Taken(records) => records,
        other => panic!("{caller}: expected Lease::Taken, got {other:?}"),
    }
}

fn ids(records: &[MessageRecord]) -> Vec<MessageId> {
    records.iter().map(|r| r.id).collect()
}

/// How many due messages a test's lease takes at most when the test does not care: more than any test queues
/// on one endpoint at one time.
const PLENTY: usize = 10;

/// Leases the due messages of `endpoint` at `now` (at most [`PLENTY`]), whatever the lease's answer.
async fn lease(store: &Store, endpoint: &str, now: Millis) -> Lease {
    lease_at_most(store, endpoint, now, PLENTY).await
}

/// Leases at most `max` due messages of `endpoint` at `now`, whatever the lease's answer.
async fn lease_at_most(store: &Store, endpoint: &str, now: Millis, max: usize) -> Lease {
    store
        .lease_due(endpoint, now, max, now + LEASE_MS)
        .await
        .unwrap()
}

/// Leases the due messages of `endpoint` at `now` (at most [`PLENTY`]), which must be a `Lease::Taken`.
#[track_caller]
fn take_due<'a>(
    store: &'a Store,
    endpoint: &'a str,
    now: Millis,
) -> impl Future<Output = Vec<MessageRecord>> + 'a {
    take_at_most(store, endpoint, now, PLENTY)
}

/// Leases at most `max` due messages of `endpoint` at `now`, which must be a `Lease::Taken`.
#[track_caller]
fn take_at_most<'a>(
    store: &'a Store,
    endpoint: &'a str,
    now: Millis,
    max: usize,
) -> impl Future<Output = Vec<MessageRecord>> + 'a {
    let caller = Location::caller();
    async move { taken_for(lease_at_most(store, endpoint, now, max).await, caller) }
}

/// Leases the one due message of `endpoint` and checks that it is `id`.
#[track_caller]
fn lease_exactly<'a>(
    store: &'a Store,
    endpoint: &'a str,
    id: MessageId,
    now: Millis,
) -> impl Future<Output = ()> + 'a {
    lease_exactly_for(store, endpoint, id, now, Location::caller())
}

async fn lease_exactly_for(
    store: &Store,
    endpoint: &str,
    id: MessageId,
    now: Millis,
    caller: Caller,
) {
    let records = taken_for(lease_at_most(store, endpoint, now, 1).await, caller);
    assert_eq!(ids(&records), [id], "{caller}: leased the wrong message");
}

/// Enqueues a fresh message due at `now` and leases it at `now`: a message in flight.
/// The endpoint must have nothing else due at `now`.
#[track_caller]
fn enqueued_and_leased<'a>(
    store: &'a Store,
    endpoint: &'a str,
    now: Millis,
) -> impl Future<Output = MessageId> + 'a {
    let caller = Location::caller();
    async move {
        let id = enqueue_for(store, endpoint, now, caller).await;
        lease_exactly_for(store, endpoint, id, now, caller).await;
        id
    }
}

/// The message ids the dead-letter queue lists first (every endpoint, up to [`PLENTY`]).
async fn dead_ids(store: &Store) -> Vec<MessageId> {
    ids(&store.list_dead(None, None, PLENTY).await.unwrap().items)
}

/// Enqueues `new` at `now`, which the store must accept (it may answer a duplicate).
async fn enqueue_message(store: &Store, new: &NewMessage, now: Millis) -> Enqueued {
    store.enqueue(new, now).await.unwrap()
}

/// Replays the messages `ids` at `now` (those that are dead letters), answering the endpoints of those replayed.
async fn replay_ids(store: &Store, ids: &[MessageId], now: Millis) -> Vec<String> {
    store
        .replay(&Selection::Ids(ids.to_vec()), now)
        .await
        .unwrap()
}

/// Purges the messages `ids` (those that are dead letters), answering how many it deleted.
async fn purge_ids(store: &Store, ids: &[MessageId]) -> usize {
    store.purge(&Selection::Ids(ids.to_vec())).await.unwrap()
}

/// What the data dir's marker file says (its format).
fn marker(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(hookd::store::MARKER_FILE)).unwrap()
}

/// The attempt the dispatcher would record next for `id` (number = `total_attempts + 1`).
async fn next_attempt(
    store: &Store,
    id: MessageId,
    started_at: Millis,
    result: AttemptResult,
) -> AttemptRecord {
    let number = record(store, id).await.total_attempts + 1;
    let (status, reason) = match result {
        AttemptResult::Delivered => (200, "HTTP 200"),
        AttemptResult::Retry => (503, "HTTP 503"),
        AttemptResult::Final => (400, "HTTP 400"),
    };
    AttemptRecord {
        number,
        started_at,
        duration_ms: 17,
        status: Some(status),
        error: None,
        reason: reason.to_owned(),
        result,
        body_excerpt: format!("attempt {number}"),
        // Some and None both round-trip through the store.
        receipt: (result == AttemptResult::Delivered).then(|| format!("receipt-{number}")),
    }
}

/// Records the next attempt on the leased message `id` with `decision`, and returns the attempt.
async fn attempt(store: &Store, id: MessageId, decision: &Decision, now: Millis) -> AttemptRecord {
    let result = match decision {
        Decision::Delivered => AttemptResult::Delivered,
        Decision::RetryAt(_) => AttemptResult::Retry,
        Decision::Dead { .. } => AttemptResult::Final,
    };
    let attempt = next_attempt(store, id, now, result).await;
    store
        .record_attempt(id, &attempt, decision, now)
        .await
        .unwrap();
    attempt
}

fn dead(reason: &str) -> Decision {
    Decision::Dead {
        reason: reason.to_owned(),
    }
}

/// Enqueues a message at `now`, leases it and records a final attempt: a dead letter (dead at `now + 1`).
/// The endpoint must have nothing else due at `now`.
async fn dead_letter(store: &Store, endpoint: &str, now: Millis) -> MessageId {
    let id = enqueue(store, endpoint, now).await;
    lease_exactly(store, endpoint, id, now).await;
    attempt(store, id, &dead("HTTP 400"), now + 1).await;
    id
}

/// Enqueues a message at `now`, leases it and records a delivery at `delivered_at`.
/// The endpoint must have nothing else due at `now`.
async fn delivered(store: &Store, endpoint: &str, now: Millis, delivered_at: Millis) -> MessageId {
    let id = enqueue(store, endpoint, now).await;
    lease_exactly(store, endpoint, id, now).await;
    attempt(store, id, &Decision::Delivered, delivered_at).await;
    id
}

/// Reads every page of the dead-letter queue with `limit`, checking the cursor contract on the way.
async fn all_dead_pages(store: &Store, endpoint: Option<&str>, limit: usize) -> Vec<DeadPage> {
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_dead(endpoint, after, limit).await.unwrap();
        assert!(
            page.items.len() <= limit,
            "a page holds at most `limit` items"
        );
        let next = page.next;
        if let Some(next) = next {
            assert_eq!(page.items.len(), limit, "only a full page has a next page");
            assert_eq!(
                Some(next),
                page.items.last().map(|r| r.id),
                "the cursor is the page's last id"
            );
        }
        pages.push(page);
        match next {
            Some(next) => after = Some(next),
            None => return pages,
        }
        assert!(pages.len() < 100, "the cursor does not advance");
    }
}

fn stage_counts(queued: u64, in_flight: u64, delivered: u64, dead: u64) -> StageCounts {
    StageCounts {
        queued,
        in_flight,
        delivered,
        dead,
    }
}

fn counts_of(entries: &[(&str, StageCounts)]) -> Counts {
    Counts {
        by_endpoint: entries
            .iter()
            .map(|(name, c)| ((*name).to_owned(), *c))
            .collect::<BTreeMap<_, _>>(),
    }
}

// ---------------------------------------------------------------------------------------------- enqueue

#[tokio::test]
async fn enqueue_records_the_message_queued_and_due_now() {
    each_backend(async |store| {
        let new = message(E, Some("order-42"));

        let enqueued = store.enqueue(&new, 1_000).await.unwrap();

        assert!(!enqueued.duplicate);
        let expected = MessageRecord {
            id: enqueued.id,
            endpoint: E.to_owned(),
            kind: new.kind.clone(),
            payload: new.payload.clone(),
            idempotency_key: Some("order-42".to_owned()),
            contact: None,
            created_at: 1_000,
            stage: Stage::Queued,
            next_attempt_at: 1_000,
            cycle_attempts: 0,
            cycle_started_at: 1_000,
            total_attempts: 0,
            delivered_at: None,
            dead_reason: None,
            dead_at: None,
            last_attempt: None,
        };
        assert_eq!(
            store.get(enqueued.id).await.unwrap(),
            Some(expected.clone())
        );
        assert!(store.attempts(enqueued.id).await.unwrap().is_empty());
        // Due at `now`, and not a millisecond earlier.
        assert!(matches!(
            lease(store, E, 999).await,
            Lease::NextDueAt(1_000)
        ));
        let leased = take_due(store, E, 1_000).await;
        assert_eq!(
            leased,
            [MessageRecord {
                stage: Stage::InFlight,
                ..expected
            }]
        );
    })
    .await;
}

#[tokio::test]
async fn enqueue_gives_every_message_its_own_id() {
    each_backend(async |store| {
        let a = enqueue(store, E, 1_000).await;
        let b = enqueue(store, E, 1_000).await;

        assert_ne!(a, b);
        assert_eq!(ids(&take_due(store, E, 1_000).await), [a, b]);
    })
    .await;
}

#[tokio::test]
async fn enqueue_with_a_known_idempotency_key_returns_the_first_id_and_queues_nothing() {
    each_backend(async |store| {
        let first = enqueue_keyed(store, E, "k", 1_000).await;
        let mut again = message(E, Some("k"));
        again.payload = r#"{"order":43}"#.to_owned();

        let second = store.enqueue(&again, 2_000).await.unwrap();

        assert!(!first.duplicate);
        assert!(second.duplicate);
        assert_eq!(second.id, first.id);
        let kept = record(store, first.id).await;
        assert_eq!(
            kept.payload,
            message(E, None).payload,
            "the first message is kept as it was"
        );
        assert_eq!(kept.created_at, 1_000);
        assert_counts(store, &[(E, stage_counts(1, 0, 0, 0))]).await;
        assert_eq!(ids(&take_due(store, E, 5_000).await), [first.id]);
    })
    .await;
}

/// A batch far larger than one transaction's share (the sled backend writes it in chunks): every message
/// answered in order, a key repeated in a later part of the batch a duplicate of its first, every message due
/// and counted once the call has answered.
#[tokio::test]
async fn a_large_batch_is_answered_in_order_with_its_repeated_keys_as_duplicates() {
    each_backend(async |store| {
        const N: usize = 1_200;
        let batch: Vec<NewMessage> = (0..N)
            .map(|i| {
                // Message 1,000 repeats the key of message 5, in another part of the batch.
                let key = if i == 1_000 { 5 } else { i };
                let mut message = message(E, Some(&format!("k{key}")));
                message.payload = format!(r#"{{"n":{i}}}"#);
                message
            })
            .collect();
        let answers = store.enqueue_many(batch, 1_000).await.unwrap();
        assert_eq!(answers.len(), N);
        let answers: Vec<_> = answers.into_iter().map(Result::unwrap).collect();
        assert!(answers[1_000].duplicate);
        assert_eq!(answers[1_000].id, answers[5].id);
        assert_eq!(answers.iter().filter(|a| a.duplicate).count(), 1);
        for (i, answer) in answers.iter().enumerate().filter(|(i, _)| *i != 1_000) {
            assert_eq!(
                record(store, answer.id).await.payload,
                format!(r#"{{"n":{i}}}"#),
                "answer {i} names its own message"
            );
        }
        assert_counts(store, &[(E, stage_counts(N as u64 - 1, 0, 0, 0))]).await;
        let leased = take_at_most(store, E, 2_000, N).await;
        assert_eq!(leased.len(), N - 1, "every message is due");
    })
    .await;
}

#[tokio::test]
async fn enqueue_with_a_known_idempotency_key_is_a_duplicate_even_after_delivery() {
    each_backend(async |store| {
        let first = enqueue_keyed(store, E, "k", 1_000).await.id;
        lease_exactly(store, E, first, 1_000).await;
        attempt(store, first, &Decision::Delivered, 1_100).await;

        let again = enqueue_keyed(store, E, "k", 2_000).await;

        assert!(again.duplicate);
        assert_eq!(again.id, first);
        assert!(matches!(lease(store, E, 2_000).await, Lease::Idle));
    })
    .await;
}

#[tokio::test]
async fn idempotency_keys_are_scoped_to_their_endpoint() {
    each_backend(async |store| {
        let on_e = enqueue_keyed(store, E, "k", 1_000).await;
        let on_e2 = enqueue_keyed(store, E2, "k", 1_000).await;

        assert!(!on_e.duplicate);
        assert!(
            !on_e2.duplicate,
            "the same key on another endpoint is another message"
        );
        assert_ne!(on_e.id, on_e2.id);
        assert_eq!(record(store, on_e2.id).await.endpoint, E2);
        assert_counts(
            store,
            &[
                (E, stage_counts(1, 0, 0, 0)),
                (E2, stage_counts(1, 0, 0, 0)),
            ],
        )
        .await;
        // And each endpoint still deduplicates its own key.
        assert_eq!(enqueue_keyed(store, E, "k", 2_000).await.id, on_e.id);
        assert_eq!(enqueue_keyed(store, E2, "k", 2_000).await.id, on_e2.id);
    })
    .await;
}

// ----------------------------------------------------------------------------------- commit and reopen

/// Concurrent enqueues share the combiner's batches, where a message whose record is all it writes is
/// inserted on its own and the others (an idempotency key, a contact, a large payload, several messages in one
/// call) share a transaction. Whatever the mix, each is answered for itself and queued exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_enqueues_of_every_kind_are_each_answered_and_queued_once() {
    each_backend(async |store| {
        const EACH: usize = 50;
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(7));
        let kinds: [fn(usize) -> Vec<NewMessage>; 7] = [
            |_| vec![message(E, None)],
            |_| vec![message(E, None)],
            |i| vec![message(E, Some(&format!("k{i}")))],
            // The same keys again: for each key, one of the two calls queues and the other is its duplicate.
            |i| vec![message(E, Some(&format!("k{i}")))],
            |_| vec![for_contact(E, "alice", 1_000)],
            |_| {
                vec![NewMessage {
                    payload: large_payload(),
                    ..message(E, None)
                }]
            },
            |_| vec![message(E, None), message(E, None), message(E, None)],
        ];
        let tasks: Vec<_> = kinds
            .iter()
            .map(|kind| {
                let (store, barrier, kind) =
                    (store.clone(), std::sync::Arc::clone(&barrier), *kind);
                tokio::spawn(async move {
                    barrier.wait().await;
                    let mut answers = Vec::new();
                    for i in 0..EACH {
                        let answer: Vec<Enqueued> = store
                            .enqueue_many(kind(i), 1_000)
                            .await
                            .unwrap()
                            .into_iter()
                            .map(Result::unwrap)
                            .collect();
                        answers.push(answer);
                    }
                    answers
                })
            })
            .collect();
        let mut answers: Vec<Vec<Vec<Enqueued>>> = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap());
        }

        for (i, (first, second)) in answers[2].iter().zip(&answers[3]).enumerate() {
            let (first, second) = (&first[0], &second[0]);
            assert_eq!(first.id, second.id, "key k{i} names one message");
            assert!(
                first.duplicate != second.duplicate,
                "key k{i}: exactly one of the two calls queued it"
            );
        }
        let queued: std::collections::BTreeSet<MessageId> = answers
            .iter()
            .flatten()
            .flatten()
            .filter(|enqueued| !enqueued.duplicate)
            .map(|enqueued| enqueued.id)
            .collect();
        let expected = EACH * (2 + 1 + 1 + 1 + 3);
        assert_eq!(queued.len(), expected);
        assert_counts(store, &[(E, stage_counts(expected as u64, 0, 0, 0))]).await;
        let leased: std::collections::BTreeSet<MessageId> =
            ids(&take_at_most(store, E, 1_000, 10_000).await)
                .into_iter()
                .collect();
        assert_eq!(leased, queued, "every queued message is due, once");
        for enqueued in &answers[5] {
            assert_eq!(record(store, enqueued[0].id).await.payload, large_payload());
        }
    })
    .await;
}

#[tokio::test]
async fn commit_succeeds_after_writes_and_when_there_is_nothing_to_write() {
    each_backend(async |store| {
        store.commit().await.unwrap();
        enqueue(store, E, 1_000).await;
        store.commit().await.unwrap();
        let clone = store.clone();
        let (a, b) = tokio::join!(store.commit(), clone.commit());
        a.unwrap();
        b.unwrap();
    })
    .await;
}

#[test]
fn committed_state_survives_closing_and_reopening_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let before = in_own_runtime(async {
        let store = open_sled(dir.path());
        let with_key = enqueue_keyed(&store, E, "k", 1_000).await.id;
        let mut attempts = vec![];
        lease_exactly(&store, E, with_key, 1_000).await;
        attempts.push(attempt(&store, with_key, &Decision::RetryAt(5_000), 1_100).await);
        let gone_dead = dead_letter(&store, E2, 2_000).await;
        let done = delivered(&store, E2, 3_000, 3_100).await;
        let queued = enqueue(&store, E2, 4_000).await;
        store.commit().await.unwrap();
        let records: Vec<MessageRecord> =
            records(&store, &[with_key, gone_dead, done, queued]).await;
        (records, attempts, counted(&store).await)
    });
    let (records, attempts, counts) = before;

    in_own_runtime(async {
        let store = open_sled(dir.path());
        for r in &records {
            assert_eq!(
                store.get(r.id).await.unwrap().as_ref(),
                Some(r),
                "record survives reopen"
            );
        }
        assert_eq!(store.attempts(records[0].id).await.unwrap(), attempts);
        assert_eq!(counted(&store).await, counts);
        assert_eq!(dead_ids(&store).await, [records[1].id]);
        // The indexes survive too: the idempotency key still dedups, the retry is due at its time.
        let again = enqueue_keyed(&store, E, "k", 9_000).await;
        assert!(again.duplicate);
        assert_eq!(again.id, records[0].id);
        assert!(matches!(
            lease(&store, E, 4_999).await,
            Lease::NextDueAt(5_000)
        ));
        assert_eq!(ids(&take_due(&store, E2, 9_000).await), [records[3].id]);
    });
}

#[test]
fn a_message_in_flight_at_a_restart_is_due_again_with_no_attempt_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (leased, waiting) = in_own_runtime(async {
        let store = open_sled(dir.path());
        let leased = enqueued_and_leased(&store, E, 1_000).await;
        let waiting = enqueue(&store, E, 2_000).await;
        store.commit().await.unwrap();
        (leased, waiting)
    });

    in_own_runtime(async {
        let store = open_sled(dir.path());
        // Leases are not persisted: the message is queued again at the time it was due, nothing counted.
        let r = record(&store, leased).await;
        assert_eq!(
            (
                r.stage,
                r.next_attempt_at,
                r.cycle_attempts,
                r.total_attempts
            ),
            (Stage::Queued, 1_000, 0, 0)
        );
        assert_counts(&store, &[(E, stage_counts(2, 0, 0, 0))]).await;
        assert_eq!(
            store.release_all_leases(5_000).await.unwrap(),
            0,
            "nothing of the previous run is left leased"
        );
        assert_eq!(ids(&take_due(&store, E, 5_000).await), [leased, waiting]);
    });
}

#[tokio::test]
async fn release_all_leases_puts_every_message_this_process_leased_back_due_now() {
    each_backend(async |store| {
        let a = enqueue(store, E, 1_000).await;
        let b = enqueue(store, E2, 1_000).await;
        lease_exactly(store, E, a, 1_000).await;
        lease_exactly(store, E2, b, 1_000).await;
        assert_counts(
            store,
            &[
                (E, stage_counts(0, 1, 0, 0)),
                (E2, stage_counts(0, 1, 0, 0)),
            ],
        )
        .await;

        assert_eq!(store.release_all_leases(3_000).await.unwrap(), 2);

        for id in [a, b] {
            let r = record(store, id).await;
            assert_eq!(
                (r.stage, r.next_attempt_at, r.cycle_attempts),
                (Stage::Queued, 3_000, 0)
            );
        }
        assert_counts(
            store,
            &[
                (E, stage_counts(1, 0, 0, 0)),
                (E2, stage_counts(1, 0, 0, 0)),
            ],
        )
        .await;
        assert_eq!(store.release_all_leases(3_000).await.unwrap(), 0);
    })
    .await;
}

/// A data dir written by the first store format: records with their payload inline, leases persisted in the
/// `lease` tree. Built with sled directly, byte for byte as that format wrote it.
fn first_format_dir(dir: &Path) -> (MessageId, MessageId, MessageId) {
    let record = |id: MessageId, stage: &str, dead: bool| {
        serde_json::json!({
            "id": id, "endpoint": E, "type": "order.created",
            "payload": format!(r#"{{"legacy":"{id}"}}"#),
            "idempotency_key": null, "created_at": 1_000, "stage": stage,
            "next_attempt_at": 1_000, "cycle_attempts": 1, "cycle_started_at": 1_000,
            "total_attempts": 1, "delivered_at": null,
            "dead_reason": if dead { Some("HTTP 400") } else { None }, "dead_at": if dead { Some(1_500) } else { None },
        })
        .to_string()
    };
    let (queued, in_flight, dead) = (MessageId::new(), MessageId::new(), MessageId::new());
    let db = sled::open(dir).unwrap();
    let msg = db.open_tree("msg").unwrap();
    msg.insert(
        queued.as_bytes(),
        record(queued, "queued", false).as_bytes(),
    )
    .unwrap();
    msg.insert(
        in_flight.as_bytes(),
        record(in_flight, "in_flight", false).as_bytes(),
    )
    .unwrap();
    msg.insert(dead.as_bytes(), record(dead, "dead", true).as_bytes())
        .unwrap();
    db.open_tree("due")
        .unwrap()
        .insert(old_due_key(E, 1_000, queued), &[])
        .unwrap();
    db.open_tree("lease")
        .unwrap()
        .insert(in_flight.as_bytes(), &31_000u64.to_be_bytes())
        .unwrap();
    db.open_tree("dead")
        .unwrap()
        .insert(dead.as_bytes(), &[])
        .unwrap();
    db.flush().unwrap();
    drop((msg, db));
    std::fs::write(
        dir.join(hookd::store::MARKER_FILE),
        "hookd data dir, format 1\n",
    )
    .unwrap();
    (queued, in_flight, dead)
}

/// A key of the `due` tree of formats 1 and 2: endpoint ‖ 0x00 ‖ due time ‖ id.
fn old_due_key(endpoint: &str, due_at: Millis, id: MessageId) -> Vec<u8> {
    let mut key = endpoint.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&due_at.to_be_bytes());
    key.extend_from_slice(id.as_bytes());
    key
}

/// A data dir written by the second or third store format: records without their payload (tagged `2`),
/// payloads in their own tree (`{"v<format>":"<id>"}`), delivery times in a `done` tree, one message queued
/// and one delivered. Format 2 also kept the due index on disk, in a `due` tree; this one's is stale on
/// purpose: it lists the delivered message and misses the queued one, which a later format must not believe.
/// Built with sled directly, as those formats wrote it.
fn payloads_apart_dir(dir: &Path, format: u8) -> (MessageId, MessageId) {
    let record = |id: MessageId, stage: &str, delivered_at: Option<Millis>| {
        let json = serde_json::json!({
            "id": id, "endpoint": E, "type": "order.created",
            "idempotency_key": null, "created_at": 1_000, "stage": stage,
            "next_attempt_at": 1_000, "cycle_attempts": 0, "cycle_started_at": 1_000,
            "total_attempts": 0, "delivered_at": delivered_at, "dead_reason": null, "dead_at": null,
        });
        let mut bytes = vec![2u8];
        bytes.extend_from_slice(json.to_string().as_bytes());
        bytes
    };
    let (queued, delivered) = (MessageId::new(), MessageId::new());
    let db = sled::open(dir).unwrap();
    let msg = db.open_tree("msg").unwrap();
    let payload = db.open_tree("payload").unwrap();
    msg.insert(queued.as_bytes(), record(queued, "queued", None))
        .unwrap();
    msg.insert(
        delivered.as_bytes(),
        record(delivered, "delivered", Some(1_100)),
    )
    .unwrap();
    for id in [queued, delivered] {
        payload
            .insert(id.as_bytes(), apart_payload(format, id).as_bytes())
            .unwrap();
    }
    if format == 2 {
        db.open_tree("due")
            .unwrap()
            .insert(old_due_key(E, 1_000, delivered), &[])
            .unwrap();
    }
    let mut done = 1_100u64.to_be_bytes().to_vec();
    done.extend_from_slice(delivered.as_bytes());
    db.open_tree("done").unwrap().insert(done, &[]).unwrap();
    db.flush().unwrap();
    drop((msg, payload, db));
    std::fs::write(
        dir.join(hookd::store::MARKER_FILE),
        format!("hookd data dir, format {format}\n"),
    )
    .unwrap();
    (queued, delivered)
}

/// The payload [`payloads_apart_dir`] gives message `id`.
fn apart_payload(format: u8, id: MessageId) -> String {
    format!(r#"{{"v{format}":"{id}"}}"#)
}

#[tokio::test]
async fn a_first_format_data_dir_is_read_and_its_records_move_to_the_new_format_as_they_change() {
    let dir = tempfile::tempdir().unwrap();
    let (queued, in_flight, dead) = first_format_dir(dir.path());
    let payload_of = |id: MessageId| format!(r#"{{"legacy":"{id}"}}"#);

    let store = open_sled(dir.path());
    assert_eq!(
        marker(dir.path()),
        "hookd data dir, format 5\n",
        "an older hookd must not open the dir once new records may be in it"
    );
    assert_counts(&store, &[(E, stage_counts(1, 1, 0, 1))]).await;
    for id in [queued, in_flight, dead] {
        assert_eq!(record(&store, id).await.payload, payload_of(id));
    }

    // The lease the old format persisted is released like any other.
    assert_eq!(store.release_all_leases(2_000).await.unwrap(), 1);
    assert_counts(&store, &[(E, stage_counts(2, 0, 0, 1))]).await;

    // Leased, attempted, replayed: each rewrite keeps the payload (now in its own tree).
    let leased = take_due(&store, E, 2_000).await;
    assert_eq!(ids(&leased), [queued, in_flight]);
    assert_eq!(leased[0].payload, payload_of(queued));
    for id in [queued, in_flight] {
        let attempt = next_attempt(&store, id, 2_100, AttemptResult::Delivered).await;
        store
            .record_attempt(id, &attempt, &Decision::Delivered, 2_100)
            .await
            .unwrap();
        let r = record(&store, id).await;
        assert_eq!(
            (r.stage, r.total_attempts, r.payload),
            (Stage::Delivered, 2, payload_of(id))
        );
    }
    assert_eq!(replay_ids(&store, &[dead], 3_000).await, [E]);
    assert_eq!(record(&store, dead).await.payload, payload_of(dead));
    assert_counts(&store, &[(E, stage_counts(1, 0, 2, 0))]).await;
    store.commit().await.unwrap();
}

#[test]
fn a_second_format_data_dir_gets_its_due_index_from_the_records_not_from_its_due_tree() {
    let dir = tempfile::tempdir().unwrap();
    let (queued, delivered) = payloads_apart_dir(dir.path(), 2);

    in_own_runtime(async {
        let store = open_sled(dir.path());
        assert_eq!(
            marker(dir.path()),
            "hookd data dir, format 5\n",
            "an older hookd would look for the due index on disk"
        );
        assert_counts(&store, &[(E, stage_counts(1, 0, 1, 0))]).await;
        // The queued message is due although the old `due` tree did not list it; the delivered one is not,
        // although it did.
        let leased = take_due(&store, E, 2_000).await;
        assert_eq!(ids(&leased), [queued]);
        assert_eq!(leased[0].payload, apart_payload(2, queued));
        assert_eq!(record(&store, delivered).await.stage, Stage::Delivered);
        store.commit().await.unwrap();
    });

    // Reopened (the lease died with the process): the same again.
    in_own_runtime(async {
        let store = open_sled(dir.path());
        assert_counts(&store, &[(E, stage_counts(1, 0, 1, 0))]).await;
        assert_eq!(ids(&take_due(&store, E, 2_000).await), [queued]);
    });
}

#[test]
fn a_third_format_data_dir_keeps_its_payloads_apart_and_is_pruned_from_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let (queued, delivered) = payloads_apart_dir(dir.path(), 3);
    let payload_of = |id: MessageId| apart_payload(3, id);

    in_own_runtime(async {
        let store = open_sled(dir.path());
        assert_eq!(
            marker(dir.path()),
            "hookd data dir, format 5\n",
            "an older hookd cannot read the records this one writes"
        );
        assert_counts(&store, &[(E, stage_counts(1, 0, 1, 0))]).await;
        let leased = take_due(&store, E, 2_000).await;
        assert_eq!(ids(&leased), [queued]);
        assert_eq!(leased[0].payload, payload_of(queued));
        // A rewrite of the record leaves the payload where it is, and it still reads back.
        attempt(&store, queued, &Decision::RetryAt(2_500), 2_100).await;
        assert_eq!(record(&store, queued).await.payload, payload_of(queued));
        assert_eq!(
            record(&store, delivered).await.payload,
            payload_of(delivered)
        );
        // Pruned by its record's delivery time: nothing reads the old `done` tree.
        assert_eq!(store.prune_delivered(2_000).await.unwrap(), 1);
        assert_eq!(store.get(delivered).await.unwrap(), None);
        assert_counts(&store, &[(E, stage_counts(1, 0, 0, 0))]).await;
        store.commit().await.unwrap();
    });

    let db = sled_once_released(dir.path());
    assert!(
        !db.tree_names().iter().any(|name| name == b"done"),
        "the done tree is dropped at open"
    );
    let payload = db.open_tree("payload").unwrap();
    assert!(payload.contains_key(queued.as_bytes()).unwrap());
    assert!(
        !payload.contains_key(delivered.as_bytes()).unwrap(),
        "pruning removes a payload kept apart"
    );
}

/// Larger than the store keeps in a record (`store/record.rs`: 1 KiB).
fn large_payload() -> String {
    format!(r#"{{"blob":"{}"}}"#, "x".repeat(64 * 1024))
}

#[test]
fn a_small_payload_lives_in_its_record_and_a_large_one_apart_through_every_verb() {
    let dir = tempfile::tempdir().unwrap();
    let large = large_payload();
    let (small_id, large_id, pruned_large) = in_own_runtime(async {
        let store = open_sled(dir.path());
        let small_id = enqueue(&store, E, 1_000).await;
        let large_id = store
            .enqueue(
                &NewMessage {
                    payload: large.clone(),
                    ..message(E, None)
                },
                1_000,
            )
            .await
            .unwrap()
            .id;
        let pruned_large = store
            .enqueue(
                &NewMessage {
                    payload: large.clone(),
                    ..message(E2, None)
                },
                1_000,
            )
            .await
            .unwrap()
            .id;
        let payloads = async |store: &Store| {
            [
                record(store, small_id).await.payload,
                record(store, large_id).await.payload,
            ]
        };
        let expected = [message(E, None).payload, large.clone()];
        assert_eq!(payloads(&store).await, expected);

        // Leased, retried, leased again, dead, replayed: every rewrite keeps the payload.
        let leased = take_due(&store, E, 1_000).await;
        assert_eq!(ids(&leased), [small_id, large_id]);
        assert_eq!(
            leased.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(),
            expected
        );
        for id in [small_id, large_id] {
            attempt(&store, id, &Decision::RetryAt(1_500), 1_100).await;
        }
        assert_eq!(payloads(&store).await, expected);
        take_due(&store, E, 1_500).await;
        for id in [small_id, large_id] {
            attempt(&store, id, &dead("HTTP 400"), 1_600).await;
        }
        assert_eq!(payloads(&store).await, expected);
        store
            .replay(
                &Selection::All {
                    endpoint: Some(E.into()),
                },
                2_000,
            )
            .await
            .unwrap();
        assert_eq!(payloads(&store).await, expected);

        lease_exactly(&store, E2, pruned_large, 2_000).await;
        attempt(&store, pruned_large, &Decision::Delivered, 2_100).await;
        assert_eq!(store.prune_delivered(3_000).await.unwrap(), 1);
        store.commit().await.unwrap();
        (small_id, large_id, pruned_large)
    });

    // On disk: only the large payloads went to the `payload` tree, and the pruned one left it.
    let db = sled_once_released(dir.path());
    let payload = db.open_tree("payload").unwrap();
    assert!(
        !payload.contains_key(small_id.as_bytes()).unwrap(),
        "a small payload stays in its record"
    );
    assert_eq!(
        payload.get(large_id.as_bytes()).unwrap().as_deref(),
        Some(large.as_bytes())
    );
    assert!(!payload.contains_key(pruned_large.as_bytes()).unwrap());
    drop((payload, db));

    // And everything reads back after the reopen.
    in_own_runtime(async {
        let store = open_sled(dir.path());
        assert_eq!(
            record(&store, small_id).await.payload,
            message(E, None).payload
        );
        assert_eq!(record(&store, large_id).await.payload, large);
        assert_eq!(
            store
                .purge(&Selection::All { endpoint: None })
                .await
                .unwrap(),
            0,
            "nothing is dead"
        );
    });
}

/// The numbers of the attempts the `attempt` tree holds for `id`, read with sled directly.
fn attempts_in_tree(db: &sled::Db, id: MessageId) -> Vec<u32> {
    db.open_tree("attempt")
        .unwrap()
        .scan_prefix(id.as_bytes())
        .keys()
        .map(|key| u32::from_be_bytes(key.unwrap()[16..20].try_into().unwrap()))
        .collect()
}

#[test]
fn the_latest_attempt_lives_in_its_record_and_earlier_ones_in_the_attempt_tree() {
    let dir = tempfile::tempdir().unwrap();
    let (first_time, retried, purged, made) = in_own_runtime(async {
        let store = open_sled(dir.path());
        let first_time = enqueue(&store, E, 1_000).await;
        let retried = enqueue(&store, E, 1_000).await;
        let purged = enqueue(&store, E, 1_000).await;
        let mut made: BTreeMap<MessageId, Vec<AttemptRecord>> = BTreeMap::new();
        let record_one = async |made: &mut BTreeMap<MessageId, Vec<AttemptRecord>>,
                                id: MessageId,
                                decision: &Decision,
                                now: Millis| {
            made.entry(id)
                .or_default()
                .push(attempt(&store, id, decision, now).await);
        };

        let leased = take_due(&store, E, 1_000).await;
        assert_eq!(ids(&leased), [first_time, retried, purged]);
        record_one(&mut made, first_time, &Decision::Delivered, 1_100).await;
        for id in [retried, purged] {
            record_one(&mut made, id, &Decision::RetryAt(1_500), 1_100).await;
        }
        take_due(&store, E, 1_500).await;
        for id in [retried, purged] {
            record_one(&mut made, id, &dead("HTTP 400"), 1_600).await;
        }
        // What the dead-letter list shows as a dead letter's last status.
        for id in [retried, purged] {
            assert_eq!(
                store
                    .last_attempt(&record(&store, id).await)
                    .await
                    .unwrap()
                    .as_ref(),
                made[&id].last()
            );
        }
        replay_ids(&store, &[retried], 2_000).await;
        lease_exactly(&store, E, retried, 2_000).await;
        record_one(&mut made, retried, &Decision::Delivered, 2_100).await;
        assert_eq!(purge_ids(&store, &[purged]).await, 1);

        for id in [first_time, retried] {
            assert_eq!(store.attempts(id).await.unwrap(), made[&id]);
        }
        assert!(store.attempts(purged).await.unwrap().is_empty());
        store.commit().await.unwrap();
        (first_time, retried, purged, made)
    });

    let db = sled_once_released(dir.path());
    assert_eq!(
        attempts_in_tree(&db, first_time),
        [] as [u32; 0],
        "an attempt's outcome adds no key when there was no attempt before it"
    );
    assert_eq!(
        attempts_in_tree(&db, retried),
        [1, 2],
        "each attempt moved the one before it out of the record"
    );
    assert_eq!(attempts_in_tree(&db, purged), [] as [u32; 0]);
    drop(db);

    // The histories read back whole after a reopen: the latest attempt came back with its record.
    in_own_runtime(async {
        let store = open_sled(dir.path());
        for id in [first_time, retried] {
            assert_eq!(store.attempts(id).await.unwrap(), made[&id]);
            assert_eq!(
                record(&store, id).await.last_attempt.as_ref(),
                made[&id].last()
            );
        }
    });
}

#[test]
fn a_fourth_format_data_dir_keeps_reading_its_attempts_from_the_attempt_tree() {
    let dir = tempfile::tempdir().unwrap();
    let id = MessageId::new();
    let payload = r#"{"v4":"dead"}"#;
    let tried = |number: u32, result: AttemptResult| AttemptRecord {
        number,
        started_at: 1_000 + u64::from(number) * 100,
        duration_ms: 5,
        status: Some(if result == AttemptResult::Retry {
            503
        } else {
            400
        }),
        error: None,
        reason: format!("attempt {number}"),
        result,
        body_excerpt: String::new(),
        receipt: None,
    };
    let old = [
        tried(1, AttemptResult::Retry),
        tried(2, AttemptResult::Final),
    ];
    {
        // As format 4 wrote it: the record with its payload after the JSON, and every attempt in the tree.
        let json = serde_json::json!({
            "id": id, "endpoint": E, "type": "order.created",
            "idempotency_key": null, "created_at": 1_000, "stage": "dead",
            "next_attempt_at": 1_100, "cycle_attempts": 2, "cycle_started_at": 1_000,
            "total_attempts": 2, "delivered_at": null, "dead_reason": "HTTP 400", "dead_at": 1_250,
        })
        .to_string();
        let mut bytes = vec![4u8];
        bytes.extend_from_slice(&u32::try_from(json.len()).unwrap().to_le_bytes());
        bytes.extend_from_slice(json.as_bytes());
        bytes.extend_from_slice(payload.as_bytes());
        let db = sled_once_released(dir.path());
        db.open_tree("msg")
            .unwrap()
            .insert(id.as_bytes(), bytes)
            .unwrap();
        db.open_tree("dead")
            .unwrap()
            .insert(id.as_bytes(), &[])
            .unwrap();
        let attempts = db.open_tree("attempt").unwrap();
        for attempt in &old {
            let mut key = id.as_bytes().to_vec();
            key.extend_from_slice(&attempt.number.to_be_bytes());
            attempts
                .insert(key, serde_json::to_vec(attempt).unwrap())
                .unwrap();
        }
        db.flush().unwrap();
        std::fs::write(
            dir.path().join(hookd::store::MARKER_FILE),
            "hookd data dir, format 4\n",
        )
        .unwrap();
    }

    let delivered = in_own_runtime(async {
        let store = open_sled(dir.path());
        assert_eq!(marker(dir.path()), "hookd data dir, format 5\n");
        let dead_letter = record(&store, id).await;
        assert_eq!(
            (
                dead_letter.payload.as_str(),
                dead_letter.last_attempt.as_ref()
            ),
            (payload, None)
        );
        assert_eq!(store.attempts(id).await.unwrap(), old);
        assert_eq!(
            store.last_attempt(&dead_letter).await.unwrap().as_ref(),
            old.last()
        );

        replay_ids(&store, &[id], 2_000).await;
        lease_exactly(&store, E, id, 2_000).await;
        let delivered = attempt(&store, id, &Decision::Delivered, 2_100).await;
        assert_eq!(delivered.number, 3);
        let mut history = old.to_vec();
        history.push(delivered.clone());
        assert_eq!(store.attempts(id).await.unwrap(), history);
        store.commit().await.unwrap();
        delivered
    });
    let db = sled_once_released(dir.path());
    assert_eq!(
        attempts_in_tree(&db, id),
        [1, 2],
        "the old attempts stay where they are; the new one is in the record"
    );
    drop(db);
    in_own_runtime(async {
        let store = open_sled(dir.path());
        assert_eq!(
            store.attempts(id).await.unwrap(),
            [old[0].clone(), old[1].clone(), delivered]
        );
    });
}

#[tokio::test]
async fn opening_a_data_dir_that_is_open_fails_with_locked() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_sled(dir.path());
    let id = enqueue(&store, E, 1_000).await;

    let second = Store::open(dir.path(), backends::CACHE_BYTES);

    match second {
        Err(StoreError::Locked(path)) => assert_eq!(path, dir.path()),
        other => panic!("expected StoreError::Locked, got {other:?}"),
    }
    // The first store is unaffected.
    assert_eq!(stage(&store, id).await, Stage::Queued);
    store.commit().await.unwrap();
}

// ------------------------------------------------------------------------------------------- lease_due

#[tokio::test]
async fn lease_due_on_an_endpoint_with_nothing_queued_is_idle() {
    each_backend(async |store| {
        assert!(matches!(lease(store, E, 1_000).await, Lease::Idle));

        // Only other endpoints' messages, or only in-flight, delivered or dead ones: still idle.
        enqueue(store, E2, 1_000).await;
        let in_flight = enqueued_and_leased(store, E, 1_000).await;
        assert!(matches!(lease(store, E, 1_000).await, Lease::Idle));
        attempt(store, in_flight, &Decision::Delivered, 1_100).await;
        dead_letter(store, E, 2_000).await;
        assert!(matches!(lease(store, E, 3_000).await, Lease::Idle));
    })
    .await;
}

#[tokio::test]
async fn lease_due_reports_the_earliest_due_time_when_nothing_is_due_yet() {
    each_backend(async |store| {
        let late = enqueue(store, E, 3_000).await;
        let early = enqueue(store, E, 2_000).await;
        enqueue(store, E2, 500).await;

        let lease = lease(store, E, 1_999).await;

        assert!(matches!(lease, Lease::NextDueAt(2_000)), "{lease:?}");
        assert_eq!(
            stage(store, early).await,
            Stage::Queued,
            "nothing was leased"
        );
        assert_eq!(stage(store, late).await, Stage::Queued);
    })
    .await;
}

#[tokio::test]
async fn lease_due_takes_only_what_is_due_and_leaves_later_messages_queued() {
    each_backend(async |store| {
        let due = enqueue(store, E, 1_000).await;
        let exactly_due = enqueue(store, E, 2_000).await;
        let later = enqueue(store, E, 2_001).await;

        let leased = take_due(store, E, 2_000).await;

        assert_eq!(ids(&leased), [due, exactly_due]);
        assert_eq!(stage(store, later).await, Stage::Queued);
        assert!(matches!(
            lease(store, E, 2_000).await,
            Lease::NextDueAt(2_001)
        ));
    })
    .await;
}

#[tokio::test]
async fn lease_due_takes_at_most_max_earliest_due_first() {
    each_backend(async |store| {
        // Enqueued out of due order: the lease follows due time, not insertion.
        let d3 = enqueue(store, E, 103).await;
        let d1 = enqueue(store, E, 101).await;
        let d5 = enqueue(store, E, 105).await;
        let d2 = enqueue(store, E, 102).await;
        let d4 = enqueue(store, E, 104).await;

        let first = take_at_most(store, E, 1_000, 3).await;
        let second = take_at_most(store, E, 1_000, 3).await;
        let third = lease_at_most(store, E, 1_000, 3).await;

        assert_eq!(ids(&first), [d1, d2, d3]);
        assert_eq!(ids(&second), [d4, d5]);
        assert!(matches!(third, Lease::Idle), "{third:?}");
    })
    .await;
}

#[tokio::test]
async fn lease_due_with_max_zero_leases_nothing() {
    each_backend(async |store| {
        let id = enqueue(store, E, 1_000).await;

        let lease = lease_at_most(store, E, 1_000, 0).await;

        assert!(
            !matches!(&lease, Lease::Taken(r) if !r.is_empty()),
            "{lease:?}"
        );
        assert_eq!(stage(store, id).await, Stage::Queued);
    })
    .await;
}

#[tokio::test]
async fn lease_takes_only_due_messages_of_its_endpoint() {
    each_backend(async |store| {
        let e2_early = enqueue(store, E2, 100).await;
        let e_msg = enqueue(store, E, 200).await;
        let e2_late = enqueue(store, E2, 300).await;
        let other = enqueue(store, "f", 50).await;

        let for_e = take_due(store, E, 1_000).await;
        assert_eq!(
            ids(&for_e),
            [e_msg],
            "`e` must not see `e2`'s or `f`'s messages"
        );
        assert!(matches!(lease(store, E, 1_000).await, Lease::Idle));
        assert_eq!(stage(store, e2_early).await, Stage::Queued);
        assert_eq!(stage(store, e2_late).await, Stage::Queued);
        assert_eq!(stage(store, other).await, Stage::Queued);

        let for_e2 = take_due(store, E2, 1_000).await;
        assert_eq!(ids(&for_e2), [e2_early, e2_late]);
        assert_eq!(stage(store, other).await, Stage::Queued);
    })
    .await;
}

#[tokio::test]
async fn lease_due_marks_taken_messages_in_flight_once() {
    each_backend(async |store| {
        let a = enqueue(store, E, 1_000).await;
        let b = enqueue(store, E, 1_000).await;

        let leased = take_due(store, E, 1_000).await;

        assert!(
            leased.iter().all(|r| r.stage == Stage::InFlight),
            "{leased:?}"
        );
        assert_eq!(stage(store, a).await, Stage::InFlight);
        assert_eq!(stage(store, b).await, Stage::InFlight);
        let r = record(store, a).await;
        assert_eq!(
            (r.cycle_attempts, r.total_attempts),
            (0, 0),
            "a lease is not an attempt"
        );
        assert_counts(store, &[(E, stage_counts(0, 2, 0, 0))]).await;
        assert!(
            matches!(lease(store, E, 9_000).await, Lease::Idle),
            "never leased twice"
        );
    })
    .await;
}

// -------------------------------------------------------------------------------------- record_attempt

#[tokio::test]
async fn delivered_attempt_marks_the_message_delivered_and_keeps_the_attempt() {
    each_backend(async |store| {
        let id = enqueued_and_leased(store, E, 1_000).await;

        let made = attempt(store, id, &Decision::Delivered, 1_250).await;

        let r = record(store, id).await;
        assert_eq!(r.stage, Stage::Delivered);
        assert_eq!(r.delivered_at, Some(1_250));
        assert_eq!((r.cycle_attempts, r.total_attempts), (1, 1));
        assert_eq!((r.dead_reason, r.dead_at), (None, None));
        assert_eq!(store.attempts(id).await.unwrap(), [made]);
        assert_counts(store, &[(E, stage_counts(0, 0, 1, 0))]).await;
        assert!(matches!(lease(store, E, 9_000).await, Lease::Idle));
    })
    .await;
}

#[tokio::test]
async fn retry_attempt_makes_the_message_due_again_at_the_retry_time_and_not_before() {
    each_backend(async |store| {
        let id = enqueued_and_leased(store, E, 1_000).await;

        let made = attempt(store, id, &Decision::RetryAt(5_000), 1_100).await;

        let r = record(store, id).await;
        assert_eq!((r.stage, r.next_attempt_at), (Stage::Queued, 5_000));
        assert_eq!((r.cycle_attempts, r.total_attempts), (1, 1));
        assert_eq!(
            (r.delivered_at, r.dead_reason.as_deref(), r.dead_at),
            (None, None, None)
        );
        assert_eq!(store.attempts(id).await.unwrap(), [made]);
        assert_counts(store, &[(E, stage_counts(1, 0, 0, 0))]).await;
        assert!(matches!(
            lease(store, E, 4_999).await,
            Lease::NextDueAt(5_000)
        ));
        assert_eq!(ids(&take_due(store, E, 5_000).await), [id]);
    })
    .await;
}

#[tokio::test]
async fn dead_attempt_parks_the_message_with_its_reason() {
    each_backend(async |store| {
        let id = enqueued_and_leased(store, E, 1_000).await;

        let made = attempt(store, id, &dead("HTTP 410 gone"), 1_300).await;

        let r = record(store, id).await;
        assert_eq!(r.stage, Stage::Dead);
        assert_eq!(r.dead_reason.as_deref(), Some("HTTP 410 gone"));
        assert_eq!(r.dead_at, Some(1_300));
        assert_eq!(r.delivered_at, None);
        assert_eq!((r.cycle_attempts, r.total_attempts), (1, 1));
        assert_eq!(store.attempts(id).await.unwrap(), [made]);
        assert_eq!(dead_ids(store).await, [id]);
        assert_counts(store, &[(E, stage_counts(0, 0, 0, 1))]).await;
        assert!(matches!(lease(store, E, 9_000).await, Lease::Idle));
    })
    .await;
}

#[tokio::test]
async fn attempts_accumulate_oldest_first_and_count_every_try() {
    each_backend(async |store| {
        let id = enqueue(store, E, 1_000).await;
        let mut made = Vec::new();
        let mut now = 1_000;
        // Enough attempts that a text-ordered attempt number (1, 10, 11, 2, ...) would show.
        for _ in 0..11 {
            lease_exactly(store, E, id, now).await;
            made.push(attempt(store, id, &Decision::RetryAt(now + 100), now + 10).await);
            now += 100;
        }
        lease_exactly(store, E, id, now).await;
        made.push(attempt(store, id, &Decision::Delivered, now + 10).await);

        let history = store.attempts(id).await.unwrap();

        assert_eq!(history, made);
        assert_eq!(
            history.iter().map(|a| a.number).collect::<Vec<_>>(),
            (1..=12).collect::<Vec<_>>()
        );
        let r = record(store, id).await;
        assert_eq!(
            (r.stage, r.cycle_attempts, r.total_attempts),
            (Stage::Delivered, 12, 12)
        );
    })
    .await;
}

#[tokio::test]
async fn attempt_histories_of_messages_do_not_mix() {
    each_backend(async |store| {
        let a = enqueue(store, E, 1_000).await;
        let b = enqueue(store, E, 1_000).await;
        let leased = take_due(store, E, 1_000).await;
        assert_eq!(ids(&leased), [a, b]);

        let on_a = attempt(store, a, &Decision::Delivered, 1_100).await;
        let on_b = attempt(store, b, &dead("HTTP 400"), 1_200).await;

        assert_eq!(store.attempts(a).await.unwrap(), [on_a]);
        assert_eq!(store.attempts(b).await.unwrap(), [on_b]);
        assert!(store.attempts(MessageId::new()).await.unwrap().is_empty());
    })
    .await;
}

/// How a test hands outcomes to the store: one at a time ([`Store::record_attempt`]; the sled backend's
/// blocking path), or as one batch ([`Store::record_attempts`], as the dispatcher does; the sled backend swaps an
/// outcome that changes only its record itself and hands the rest to the combiner).
#[derive(Clone, Copy, PartialEq)]
enum Recording {
    OneByOne,
    Batch,
    /// A batch, each outcome handing back its record as the lease gave it (as the dispatcher does).
    BatchLeased,
}

async fn record_all(store: &Store, outcomes: Vec<AttemptOutcome>, how: Recording) {
    match how {
        Recording::OneByOne => {
            for outcome in outcomes {
                let AttemptOutcome {
                    id,
                    attempt,
                    decision,
                    now,
                    ..
                } = outcome;
                store
                    .record_attempt(id, &attempt, &decision, now)
                    .await
                    .unwrap();
            }
        }
        Recording::Batch | Recording::BatchLeased => store.record_attempts(outcomes).await.unwrap(),
    }
}

/// The record of `id` among `leased` when `how` hands leased records back.
fn handed_back(how: Recording, leased: &[MessageRecord], id: MessageId) -> Option<MessageRecord> {
    (how == Recording::BatchLeased)
        .then(|| leased.iter().find(|record| record.id == id).cloned())
        .flatten()
}

#[tokio::test]
async fn one_batch_of_outcomes_applies_each_whether_it_changes_only_its_record_or_more() {
    one_batch_of_outcomes(Recording::OneByOne).await;
}

#[tokio::test]
async fn one_async_batch_of_outcomes_applies_each_whether_it_changes_only_its_record_or_more() {
    one_batch_of_outcomes(Recording::Batch).await;
}

#[tokio::test]
async fn one_async_batch_of_outcomes_with_their_leased_records_applies_each_the_same() {
    one_batch_of_outcomes(Recording::BatchLeased).await;
}

async fn one_batch_of_outcomes(how: Recording) {
    each_backend(async |store| {
        // More than the record: a message attempted before, a dead letter, a message with a contact.
        let second_try = enqueued_and_leased(store, E, 500).await;
        let first_of_second = attempt(store, second_try, &Decision::RetryAt(1_000), 600).await;
        let dead_now = enqueue(store, E, 1_000).await;
        let capped = enqueue_message(store, &for_contact(E, "alice", 1), 1_000)
            .await
            .id;
        // Only the record changes: a first attempt delivered, a first attempt retried.
        let delivered = enqueue(store, E, 1_000).await;
        let retried = enqueue(store, E, 1_000).await;
        let leased = take_due(store, E, 1_000).await;
        assert_eq!(leased.len(), 5);

        let mut made = Vec::new();
        for (id, decision, result) in [
            (delivered, Decision::Delivered, AttemptResult::Delivered),
            (retried, Decision::RetryAt(5_000), AttemptResult::Retry),
            (dead_now, dead("HTTP 400"), AttemptResult::Final),
            (second_try, Decision::Delivered, AttemptResult::Delivered),
            (capped, Decision::Delivered, AttemptResult::Delivered),
        ] {
            made.push((id, decision, next_attempt(store, id, 1_100, result).await));
        }
        let outcomes = made
            .iter()
            .map(|(id, decision, attempt)| AttemptOutcome {
                id: *id,
                attempt: attempt.clone(),
                decision: decision.clone(),
                now: 1_100,
                leased: handed_back(how, &leased, *id),
            })
            .collect();
        record_all(store, outcomes, how).await;

        let mut stages = Vec::new();
        for (id, _, _) in &made {
            stages.push(stage(store, *id).await);
        }
        assert_eq!(
            stages,
            [
                Stage::Delivered,
                Stage::Queued,
                Stage::Dead,
                Stage::Delivered,
                Stage::Delivered
            ]
        );
        // The swapped records keep what the outcome does not change, whichever record the swap started from.
        for id in [delivered, retried] {
            let kept = record(store, id).await;
            let sent = message(E, None);
            assert_eq!(
                (kept.endpoint, kept.kind, kept.payload, kept.created_at),
                (sent.endpoint, sent.kind, sent.payload, 1_000)
            );
        }
        assert_eq!(record(store, retried).await.next_attempt_at, 5_000);
        for (id, _, attempt) in &made {
            let mut expected = if *id == second_try {
                vec![first_of_second.clone()]
            } else {
                Vec::new()
            };
            expected.push(attempt.clone());
            assert_eq!(store.attempts(*id).await.unwrap(), expected);
        }
        // The due index, the dead-letter index, the contact's place and the counts agree with the records.
        assert!(matches!(
            lease(store, E, 4_999).await,
            Lease::NextDueAt(5_000)
        ));
        assert_eq!(dead_ids(store).await, [dead_now]);
        enqueue_message(store, &for_contact(E, "alice", 1), 1_200).await;
        assert_counts(store, &[(E, stage_counts(2, 0, 3, 1))]).await;
    })
    .await;
}

#[tokio::test]
async fn an_outcome_is_committed_without_anyone_waiting_for_it() {
    an_outcome_is_committed(Recording::OneByOne).await;
}

#[tokio::test]
async fn an_async_outcome_is_committed_without_anyone_waiting_for_it() {
    an_outcome_is_committed(Recording::Batch).await;
}

async fn an_outcome_is_committed(how: Recording) {
    each_backend(async |store| {
        let id = enqueue(store, E, 1_000).await;
        store.commit().await.unwrap();
        lease_exactly(store, E, id, 1_000).await;
        let mut commits = store.commits();
        let before = *commits.borrow_and_update();

        let attempt = next_attempt(store, id, 1_100, AttemptResult::Delivered).await;
        let outcome = AttemptOutcome {
            id,
            attempt,
            decision: Decision::Delivered,
            now: 1_100,
            leased: None,
        };
        record_all(store, vec![outcome], how).await;
        assert_eq!(stage(store, id).await, Stage::Delivered);

        // Nothing here calls `commit`: the store asks for one itself, so that the outcome reaches the disk.
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            commits.wait_for(|count| *count > before),
        )
        .await
        .expect("a commit after the outcome, within 10 s")
        .unwrap();
    })
    .await;
}

// ------------------------------------------------------------------------------------------- release

#[tokio::test]
async fn release_puts_a_leased_message_back_due_now_without_counting_an_attempt() {
    each_backend(async |store| {
        let id = enqueued_and_leased(store, E, 1_000).await;

        store.release(id, 2_000).await.unwrap();

        let r = record(store, id).await;
        assert_eq!((r.stage, r.next_attempt_at), (Stage::Queued, 2_000));
        assert_eq!((r.cycle_attempts, r.total_attempts), (0, 0));
        assert!(store.attempts(id).await.unwrap().is_empty());
        assert_counts(store, &[(E, stage_counts(1, 0, 0, 0))]).await;
        assert!(matches!(
            lease(store, E, 1_999).await,
            Lease::NextDueAt(2_000)
        ));
        assert_eq!(ids(&take_due(store, E, 2_000).await), [id]);
    })
    .await;
}

#[tokio::test]
async fn release_of_a_message_that_is_not_leased_changes_nothing() {
    each_backend(async |store| {
        let done = delivered(store, E, 1_000, 1_100).await;
        let gone = dead_letter(store, E, 2_000).await;
        let queued = enqueue(store, E, 3_000).await;
        let before: Vec<MessageRecord> = records(store, &[done, gone, queued]).await;

        for id in [done, gone, queued, MessageId::new()] {
            store.release(id, 9_000).await.unwrap();
        }

        for r in &before {
            assert_eq!(&record(store, r.id).await, r);
        }
        assert_counts(store, &[(E, stage_counts(1, 0, 1, 1))]).await;
        assert_eq!(ids(&take_due(store, E, 9_000).await), [queued]);
    })
    .await;
}

#[tokio::test]
async fn release_all_leases_requeues_every_leased_message_and_counts_them() {
    each_backend(async |store| {
        let e_leased = [
            enqueue(store, E, 1_000).await,
            enqueue(store, E, 1_000).await,
        ];
        assert_eq!(ids(&take_due(store, E, 1_000).await), e_leased);
        let e2_leased = enqueued_and_leased(store, E2, 1_000).await;
        let e2_queued = enqueue(store, E2, 5_000).await;
        let e2_done = delivered(store, E2, 1_600, 1_700).await;

        let released = store.release_all_leases(3_000).await.unwrap();

        assert_eq!(released, 3);
        for id in [e_leased[0], e_leased[1], e2_leased] {
            let r = record(store, id).await;
            assert_eq!(
                (r.stage, r.next_attempt_at, r.total_attempts),
                (Stage::Queued, 3_000, 0)
            );
            assert!(store.attempts(id).await.unwrap().is_empty());
        }
        assert_eq!(record(store, e2_queued).await.next_attempt_at, 5_000);
        assert_eq!(stage(store, e2_done).await, Stage::Delivered);
        assert_counts(
            store,
            &[
                (E, stage_counts(2, 0, 0, 0)),
                (E2, stage_counts(2, 0, 1, 0)),
            ],
        )
        .await;
        assert_eq!(
            store.release_all_leases(4_000).await.unwrap(),
            0,
            "nothing is leased any more"
        );
        assert_eq!(ids(&take_due(store, E, 3_000).await), e_leased);
    })
    .await;
}

// ----------------------------------------------------------------------------------------- list_dead

#[tokio::test]
async fn list_dead_filters_by_endpoint_oldest_first() {
    each_backend(async |store| {
        let e_first = dead_letter(store, E, 1_000).await;
        let e2_first = dead_letter(store, E2, 1_000).await;
        let e_second = dead_letter(store, E, 2_000).await;
        delivered(store, E, 3_000, 3_100).await;
        enqueue(store, E, 4_000).await;

        assert_eq!(
            ids(&store.list_dead(Some(E), None, 10).await.unwrap().items),
            [e_first, e_second]
        );
        assert_eq!(
            ids(&store.list_dead(Some(E2), None, 10).await.unwrap().items),
            [e2_first]
        );
        assert_eq!(dead_ids(store).await, [e_first, e2_first, e_second]);
        let none = store.list_dead(Some("unknown"), None, 10).await.unwrap();
        assert!(none.items.is_empty() && none.next.is_none(), "{none:?}");
        let page = store.list_dead(Some(E), None, 10).await.unwrap();
        assert!(
            page.items
                .iter()
                .all(|r| r.stage == Stage::Dead && r.endpoint == E)
        );
        assert_eq!(page.next, None);
    })
    .await;
}

#[tokio::test]
async fn list_dead_pages_cover_every_dead_letter_exactly_once() {
    each_backend(async |store| {
        let mut all = Vec::new();
        let mut of_e = Vec::new();
        for i in 0..10 {
            let endpoint = if i % 3 == 1 { E2 } else { E };
            let id = dead_letter(store, endpoint, 1_000 * (i + 1)).await;
            all.push(id);
            if endpoint == E {
                of_e.push(id);
            }
        }
        assert_eq!(of_e.len(), 7);
        delivered(store, E, 20_000, 20_100).await;
        enqueue(store, E, 21_000).await;

        let pages = all_dead_pages(store, Some(E), 3).await;
        assert_eq!(
            pages.iter().map(|p| p.items.len()).collect::<Vec<_>>(),
            [3, 3, 1]
        );
        let listed: Vec<MessageId> = pages.iter().flat_map(|p| ids(&p.items)).collect();
        assert_eq!(listed, of_e);

        let pages = all_dead_pages(store, None, 4).await;
        assert_eq!(
            pages.iter().map(|p| p.items.len()).collect::<Vec<_>>(),
            [4, 4, 2]
        );
        let listed: Vec<MessageId> = pages.iter().flat_map(|p| ids(&p.items)).collect();
        assert_eq!(listed, all);
    })
    .await;
}

#[tokio::test]
async fn list_dead_has_no_cursor_after_the_last_page() {
    each_backend(async |store| {
        let dead: Vec<MessageId> = {
            let mut all = Vec::new();
            for i in 1..=4 {
                all.push(dead_letter(store, E, i * 1_000).await);
            }
            all
        };

        // Exactly two full pages: the second has no cursor, as no third page exists.
        let pages = all_dead_pages(store, Some(E), 2).await;
        assert_eq!(pages.len(), 2, "{pages:?}");
        assert_eq!(pages[0].next, Some(dead[1]));
        assert_eq!(pages[1].next, None);

        // A dead letter of another endpoint after the last one of `e` does not make a page.
        dead_letter(store, E2, 9_000).await;
        let pages = all_dead_pages(store, Some(E), 2).await;
        assert_eq!(pages.len(), 2, "{pages:?}");

        let one_page = store.list_dead(Some(E), None, 4).await.unwrap();
        assert_eq!((ids(&one_page.items), one_page.next), (dead, None));
    })
    .await;
}

// --------------------------------------------------------------------------------------------- replay

#[tokio::test]
async fn replay_by_ids_requeues_dead_letters_with_a_fresh_cycle_and_their_history() {
    each_backend(async |store| {
        let id = enqueued_and_leased(store, E, 1_000).await;
        let first = attempt(store, id, &Decision::RetryAt(2_000), 1_100).await;
        lease_exactly(store, E, id, 2_000).await;
        let second = attempt(store, id, &dead("gave up"), 2_100).await;

        let endpoints = replay_ids(store, &[id], 9_000).await;

        assert_eq!(endpoints, [E]);
        let r = record(store, id).await;
        assert_eq!(r.stage, Stage::Queued);
        assert_eq!(r.next_attempt_at, 9_000);
        assert_eq!(r.cycle_attempts, 0, "a replay starts a fresh cycle");
        assert_eq!(r.cycle_started_at, 9_000);
        assert_eq!(
            r.total_attempts, 2,
            "the attempt count across replays is kept"
        );
        assert_eq!((r.dead_reason, r.dead_at), (None, None));
        assert_eq!(r.created_at, 1_000);
        assert_eq!(
            store.attempts(id).await.unwrap(),
            [first.clone(), second.clone()]
        );
        assert!(dead_ids(store).await.is_empty());
        assert_counts(store, &[(E, stage_counts(1, 0, 0, 0))]).await;
        assert!(matches!(
            lease(store, E, 8_999).await,
            Lease::NextDueAt(9_000)
        ));

        // The next attempt continues the numbering and counts in the new cycle.
        lease_exactly(store, E, id, 9_000).await;
        let third = attempt(store, id, &Decision::Delivered, 9_100).await;
        assert_eq!(third.number, 3);
        let r = record(store, id).await;
        assert_eq!(
            (r.stage, r.cycle_attempts, r.total_attempts),
            (Stage::Delivered, 1, 3)
        );
        assert_eq!(store.attempts(id).await.unwrap(), [first, second, third]);
    })
    .await;
}

#[tokio::test]
async fn replay_skips_ids_that_are_not_dead() {
    each_backend(async |store| {
        let done = delivered(store, E, 1_000, 1_100).await;
        let in_flight = enqueued_and_leased(store, E, 2_000).await;
        let queued = enqueue(store, E, 3_000).await;
        let gone = dead_letter(store, E2, 3_000).await;
        let before: Vec<MessageRecord> = records(store, &[done, in_flight, queued]).await;

        let endpoints = store
            .replay(
                &Selection::Ids(vec![done, in_flight, queued, MessageId::new(), gone, gone]),
                9_000,
            )
            .await
            .unwrap();

        assert_eq!(endpoints, [E2], "only the dead letter is replayed, once");
        for r in &before {
            assert_eq!(&record(store, r.id).await, r);
        }
        assert_eq!(stage(store, gone).await, Stage::Queued);
        assert_counts(
            store,
            &[
                (E, stage_counts(1, 1, 1, 0)),
                (E2, stage_counts(1, 0, 0, 0)),
            ],
        )
        .await;
    })
    .await;
}

/// What a replay's admission counts: the selected dead letters per endpoint, an id named twice once, ids that
/// are not dead letters not at all.
#[tokio::test]
async fn dead_by_endpoint_counts_each_selected_dead_letter_once() {
    each_backend(async |store| {
        let first = dead_letter(store, E, 2_000).await;
        let second = dead_letter(store, E, 2_000).await;
        let other = dead_letter(store, E2, 3_000).await;
        let queued = enqueue(store, E, 4_000).await;

        let counts = store
            .dead_by_endpoint(&Selection::Ids(vec![
                first,
                queued,
                second,
                first,
                other,
                MessageId::new(),
                other,
            ]))
            .await
            .unwrap();

        assert_eq!(
            counts,
            BTreeMap::from([(E.to_owned(), 2), (E2.to_owned(), 1)])
        );
    })
    .await;
}

#[tokio::test]
async fn replay_all_of_an_endpoint_leaves_other_endpoints_dead() {
    each_backend(async |store| {
        let e_dead = [
            dead_letter(store, E, 1_000).await,
            dead_letter(store, E, 2_000).await,
        ];
        let e2_dead = dead_letter(store, E2, 1_000).await;

        let endpoints = store
            .replay(
                &Selection::All {
                    endpoint: Some(E.to_owned()),
                },
                9_000,
            )
            .await
            .unwrap();

        assert_eq!(endpoints, [E, E]);
        for id in e_dead {
            let r = record(store, id).await;
            assert_eq!(
                (
                    r.stage,
                    r.next_attempt_at,
                    r.cycle_attempts,
                    r.total_attempts
                ),
                (Stage::Queued, 9_000, 0, 1)
            );
        }
        assert_eq!(stage(store, e2_dead).await, Stage::Dead);
        assert_eq!(dead_ids(store).await, [e2_dead]);
        assert_eq!(ids(&take_due(store, E, 9_000).await), e_dead);
    })
    .await;
}

#[tokio::test]
async fn replay_all_without_endpoint_replays_every_dead_letter() {
    each_backend(async |store| {
        let gone = [
            dead_letter(store, E, 1_000).await,
            dead_letter(store, E2, 1_000).await,
            dead_letter(store, E, 2_000).await,
        ];
        let done = delivered(store, E, 3_000, 3_100).await;

        let endpoints = store
            .replay(&Selection::All { endpoint: None }, 9_000)
            .await
            .unwrap();

        assert_eq!(endpoints, [E, E2, E]);
        for id in gone {
            assert_eq!(stage(store, id).await, Stage::Queued);
        }
        assert_eq!(stage(store, done).await, Stage::Delivered);
        assert!(dead_ids(store).await.is_empty());
        assert_counts(
            store,
            &[
                (E, stage_counts(2, 0, 1, 0)),
                (E2, stage_counts(1, 0, 0, 0)),
            ],
        )
        .await;
        assert!(
            store
                .replay(&Selection::All { endpoint: None }, 9_500)
                .await
                .unwrap()
                .is_empty()
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------------- purge

#[tokio::test]
async fn purge_deletes_the_record_and_its_attempts() {
    each_backend(async |store| {
        let id = enqueued_and_leased(store, E, 1_000).await;
        attempt(store, id, &Decision::RetryAt(2_000), 1_100).await;
        lease_exactly(store, E, id, 2_000).await;
        attempt(store, id, &dead("HTTP 400"), 2_100).await;
        let kept = dead_letter(store, E, 3_000).await;

        let purged = purge_ids(store, &[id]).await;

        assert_eq!(purged, 1);
        assert_eq!(store.get(id).await.unwrap(), None);
        assert!(store.attempts(id).await.unwrap().is_empty());
        assert_eq!(dead_ids(store).await, [kept]);
        assert_eq!(
            store.attempts(kept).await.unwrap().len(),
            1,
            "other messages' attempts stay"
        );
        assert_counts(store, &[(E, stage_counts(0, 0, 0, 1))]).await;
        assert!(replay_ids(store, &[id], 9_000).await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn purge_frees_the_idempotency_key() {
    each_backend(async |store| {
        let first = enqueue_keyed(store, E, "k", 1_000).await.id;
        lease_exactly(store, E, first, 1_000).await;
        attempt(store, first, &dead("HTTP 400"), 1_100).await;
        assert_eq!(purge_ids(store, &[first]).await, 1);

        let again = enqueue_keyed(store, E, "k", 2_000).await;

        assert!(
            !again.duplicate,
            "the key is free once its message is purged"
        );
        assert_ne!(again.id, first);
        let r = record(store, again.id).await;
        assert_eq!(
            (r.stage, r.created_at, r.total_attempts),
            (Stage::Queued, 2_000, 0)
        );
        assert!(store.attempts(again.id).await.unwrap().is_empty());
        // The new message now owns the key.
        assert_eq!(enqueue_keyed(store, E, "k", 3_000).await.id, again.id);
    })
    .await;
}

#[tokio::test]
async fn purge_skips_messages_that_are_not_dead() {
    each_backend(async |store| {
        let done = delivered(store, E, 1_000, 1_100).await;
        let in_flight = enqueued_and_leased(store, E, 2_000).await;
        let queued = enqueue_keyed(store, E, "k", 3_000).await.id;
        let before: Vec<MessageRecord> = records(store, &[done, in_flight, queued]).await;

        let purged = purge_ids(store, &[done, in_flight, queued, MessageId::new()]).await;

        assert_eq!(purged, 0);
        for r in &before {
            assert_eq!(&record(store, r.id).await, r);
        }
        assert_eq!(store.attempts(done).await.unwrap().len(), 1);
        assert!(
            enqueue_keyed(store, E, "k", 4_000).await.duplicate,
            "the key is still held"
        );
        assert_counts(store, &[(E, stage_counts(1, 1, 1, 0))]).await;
    })
    .await;
}

#[tokio::test]
async fn purge_all_of_an_endpoint_leaves_other_endpoints_dead() {
    each_backend(async |store| {
        let e_dead = [
            dead_letter(store, E, 1_000).await,
            dead_letter(store, E, 2_000).await,
        ];
        let e2_dead = dead_letter(store, E2, 1_000).await;

        assert_eq!(
            store
                .purge(&Selection::All {
                    endpoint: Some(E.to_owned())
                })
                .await
                .unwrap(),
            2
        );

        for id in e_dead {
            assert_eq!(store.get(id).await.unwrap(), None);
        }
        assert_eq!(dead_ids(store).await, [e2_dead]);
        assert_eq!(
            store
                .purge(&Selection::All { endpoint: None })
                .await
                .unwrap(),
            1
        );
        assert_eq!(store.get(e2_dead).await.unwrap(), None);
        assert_eq!(counted(store).await, Counts::default());
    })
    .await;
}

// ------------------------------------------------------------------------------------ prune_delivered

#[tokio::test]
async fn prune_delivered_removes_only_messages_delivered_before_the_cutoff() {
    each_backend(async |store| {
        let old = delivered(store, E, 100, 1_000).await;
        let at_cutoff = delivered(store, E2, 100, 2_000).await;
        let recent = delivered(store, E, 200, 3_000).await;
        // Enqueued after `recent` (which was delivered late) and delivered early: pruned all the same.
        let early = delivered(store, E2, 250, 1_500).await;
        let gone = dead_letter(store, E, 300).await;
        let queued = enqueue(store, E, 400).await;

        let pruned = store.prune_delivered(2_000).await.unwrap();

        assert_eq!(pruned, 2);
        for id in [old, early] {
            assert_eq!(store.get(id).await.unwrap(), None);
            assert!(store.attempts(id).await.unwrap().is_empty());
        }
        assert_eq!(
            stage(store, at_cutoff).await,
            Stage::Delivered,
            "the cutoff itself is kept"
        );
        assert_eq!(stage(store, recent).await, Stage::Delivered);
        assert_eq!(store.attempts(recent).await.unwrap().len(), 1);
        assert_eq!(stage(store, gone).await, Stage::Dead);
        assert_eq!(stage(store, queued).await, Stage::Queued);
        assert_counts(
            store,
            &[
                (E, stage_counts(1, 0, 1, 1)),
                (E2, stage_counts(0, 0, 1, 0)),
            ],
        )
        .await;
        assert_eq!(
            store.prune_delivered(2_000).await.unwrap(),
            0,
            "pruning again finds nothing"
        );
        assert_eq!(store.prune_delivered(u64::MAX).await.unwrap(), 2);
        assert_counts(store, &[(E, stage_counts(1, 0, 0, 1))]).await;
    })
    .await;
}

// --------------------------------------------------------------------------------------------- counts

#[tokio::test]
async fn counts_report_every_endpoint_by_stage() {
    each_backend(async |store| {
        assert_eq!(counted(store).await, Counts::default());

        delivered(store, E, 100, 150).await;
        delivered(store, E, 200, 250).await;
        dead_letter(store, E, 300).await;
        enqueued_and_leased(store, E, 400).await;
        let retried = enqueued_and_leased(store, E, 500).await;
        attempt(store, retried, &Decision::RetryAt(10_000), 550).await;
        enqueue(store, E, 600).await;
        enqueue(store, E, 1_000_000).await;
        dead_letter(store, E2, 100).await;
        dead_letter(store, E2, 200).await;
        enqueued_and_leased(store, E2, 300).await;
        delivered(store, "f", 100, 150).await;

        assert_counts(
            store,
            &[
                (E, stage_counts(3, 1, 2, 1)),
                (E2, stage_counts(0, 1, 0, 2)),
                ("f", stage_counts(0, 0, 1, 0)),
            ],
        )
        .await;
    })
    .await;
}

fn for_contact(endpoint: &str, contact: &str, max_pending: usize) -> NewMessage {
    NewMessage {
        contact: Some(ContactLimit {
            contact: contact.to_owned(),
            max_pending,
        }),
        ..message(endpoint, None)
    }
}

#[tokio::test]
async fn a_contact_at_its_cap_is_refused_until_one_of_its_messages_is_settled() {
    each_backend(async |store| {
        let first = enqueue_message(store, &for_contact(E, "alice", 2), 1_000)
            .await
            .id;
        enqueue_message(store, &for_contact(E, "alice", 2), 1_000).await;

        let refused = store
            .enqueue(&for_contact(E, "alice", 2), 1_000)
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, StoreError::ContactFull { contact, max: 2, .. } if contact == "alice"),
            "{refused:?}"
        );
        // Other contacts, and the same contact on another endpoint, have their own count.
        enqueue_message(store, &for_contact(E, "bob", 2), 1_000).await;
        enqueue_message(store, &for_contact(E2, "alice", 2), 1_000).await;
        assert_eq!(
            counts_queued(store, E),
            3,
            "the refused enqueue queued nothing"
        );

        // A retry keeps the message pending; delivery frees its place.
        lease_exactly(store, E, first, 1_000).await;
        attempt(store, first, &Decision::RetryAt(2_000), 1_000).await;
        assert!(store.enqueue(&for_contact(E, "alice", 2), 1_500).await.is_err());
        let leased = take_due(store, E, 2_000).await;
        assert!(ids(&leased).contains(&first));
        attempt(store, first, &Decision::Delivered, 2_000).await;
        enqueue_message(store, &for_contact(E, "alice", 2), 2_000).await;
    })
    .await;
}

#[tokio::test]
async fn a_dead_letter_frees_its_contact_place_and_a_replay_takes_it_again() {
    each_backend(async |store| {
        let id = enqueue_message(store, &for_contact(E, "carol", 1), 1_000)
            .await
            .id;
        lease_exactly(store, E, id, 1_000).await;
        attempt(store, id, &dead("HTTP 400"), 1_000).await;
        let second = enqueue_message(store, &for_contact(E, "carol", 1), 1_100)
            .await
            .id;
        assert_ne!(second, id);
        replay_ids(store, &[id], 1_200).await;
        let refused = store.enqueue(&for_contact(E, "carol", 1), 1_300).await;
        assert!(
            matches!(refused, Err(StoreError::ContactFull { .. })),
            "{refused:?}"
        );
    })
    .await;
}

fn counts_queued(store: &Store, endpoint: &str) -> u64 {
    store
        .counts()
        .unwrap()
        .by_endpoint
        .get(endpoint)
        .map_or(0, |c| c.queued)
}
