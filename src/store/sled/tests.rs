//! Tests of the store's internals (the due index and the contact tree laid over the records); the verbs'
//! contract is pinned by `tests/store_conformance.rs`.

use super::{ContactLimit, Lease, NewMessage, Remaining, Selection, SledStore};
use crate::model::{AttemptRecord, AttemptResult, MessageId, Millis, Stage};
use crate::retry::Decision;

fn contact_entries(store: &SledStore) -> usize {
    store.trees.contact.len()
}

fn try_once(store: &SledStore, id: MessageId, decision: Decision, now: Millis) {
    let number = store.get(id).unwrap().unwrap().total_attempts + 1;
    let attempt = AttemptRecord {
        number,
        started_at: now,
        duration_ms: 1,
        status: Some(503),
        error: None,
        reason: "HTTP 503".into(),
        result: AttemptResult::Retry,
        body_excerpt: String::new(),
        receipt: None,
    };
    store.record_attempt(id, &attempt, &decision, now).unwrap();
}

/// A message for endpoint `e` without idempotency key or contact.
fn plain_message() -> NewMessage {
    NewMessage {
        endpoint: "e".into(),
        kind: "t".into(),
        payload: "{}".into(),
        idempotency_key: None,
        contact: None,
    }
}

fn lease_one(store: &SledStore, now: Millis) -> MessageId {
    match store.lease_due("e", now, 1, now + 1_000).unwrap().0 {
        Lease::Taken(records) if records.len() == 1 => records[0].id,
        other => panic!("expected one leased message, got {other:?}"),
    }
}

/// An index entry whose record is not queued (only a bug could leave one) is dropped by the lease that
/// finds it, and the lease goes on to the next due message instead of stalling the lane.
#[tokio::test]
async fn a_lease_drops_a_due_entry_whose_record_is_not_queued_and_takes_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), 1 << 20).unwrap();
    let new = plain_message();
    let delivered = store.enqueue(&new, 1_000).unwrap().id;
    assert_eq!(lease_one(&store, 1_000), delivered);
    try_once(&store, delivered, Decision::Delivered, 1_100);
    let queued = store.enqueue(&new, 1_200).unwrap().id;
    // The bug: the delivered message back in the index, due before the queued one.
    store.due.insert("e", 1_000, delivered);

    assert_eq!(lease_one(&store, 2_000), queued);
    assert_eq!(store.due.entries(), [("e".to_owned(), 1_200, queued)]);
    assert_eq!(
        store.get(delivered).unwrap().unwrap().stage,
        Stage::Delivered
    );
}

/// A message with a contact needs the `contact` tree in transactions that do not name it up front
/// (attempts, releases, replays): every path still keeps the contact index and the record in step.
#[tokio::test]
async fn a_contact_message_keeps_its_contact_entry_through_every_verb() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), 1 << 20).unwrap();
    let new = NewMessage {
        idempotency_key: Some("k".into()),
        contact: Some(ContactLimit {
            contact: "c".into(),
            max_pending: 5,
        }),
        ..plain_message()
    };
    let id = store.enqueue(&new, 1_000).unwrap().id;
    assert_eq!(contact_entries(&store), 1);

    assert_eq!(lease_one(&store, 1_000), id);
    try_once(&store, id, Decision::RetryAt(2_000), 1_000);
    assert_eq!(store.get(id).unwrap().unwrap().stage, Stage::Queued);
    assert_eq!(contact_entries(&store), 1);

    assert_eq!(lease_one(&store, 2_000), id);
    store.release(id, 2_000).unwrap();
    assert_eq!(store.get(id).unwrap().unwrap().stage, Stage::Queued);
    assert_eq!(contact_entries(&store), 1);

    assert_eq!(lease_one(&store, 2_000), id);
    let dead = Decision::Dead {
        reason: "gone".into(),
    };
    try_once(&store, id, dead, 3_000);
    assert_eq!(store.get(id).unwrap().unwrap().stage, Stage::Dead);
    assert_eq!(contact_entries(&store), 0);

    assert_eq!(
        store.replay(&Selection::Ids(vec![id]), 4_000).unwrap(),
        ["e"]
    );
    assert_eq!(contact_entries(&store), 1);

    assert_eq!(lease_one(&store, 4_000), id);
    try_once(&store, id, Decision::Delivered, 5_000);
    let record = store.get(id).unwrap().unwrap();
    assert_eq!(record.stage, Stage::Delivered);
    assert_eq!(record.total_attempts, 3);
    assert_eq!(contact_entries(&store), 0);
    assert_eq!(store.attempts(id).unwrap().len(), 3);
    assert_eq!(store.counts().unwrap(), store.recount().unwrap());

    // A duplicate is answered from the idempotency tree without touching anything else.
    let again = store.enqueue(&new, 6_000).unwrap();
    assert!(again.duplicate);
    assert_eq!(again.id, id);
}

/// A lease says [`Remaining::Nothing`] only when every other queued message of the endpoint is in flight: a
/// message due later (a scheduled retry) or one left behind by `max` makes it [`Remaining::Unknown`], so a
/// lane never waits past a due time it was not told of.
#[tokio::test]
async fn a_lease_says_nothing_remains_only_when_the_rest_is_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), 1 << 20).unwrap();
    let new = plain_message();
    let first = store.enqueue(&new, 1_000).unwrap().id;
    let second = store.enqueue(&new, 1_000).unwrap().id;

    // Two queued, one asked for: the other is left behind.
    let (lease, remaining) = store.lease_due("e", 1_000, 1, 10_000).unwrap();
    assert!(matches!(lease, Lease::Taken(ref taken) if taken.len() == 1));
    assert_eq!(remaining, Remaining::Unknown);
    // The last one, with the first in flight: nothing remains.
    let (lease, remaining) = store.lease_due("e", 1_000, 4, 10_000).unwrap();
    assert!(matches!(lease, Lease::Taken(ref taken) if taken.len() == 1));
    assert_eq!(remaining, Remaining::Nothing);

    // One of them is retried later; a new message is leased while the retry waits: the retry remains.
    try_once(&store, first, Decision::RetryAt(5_000), 1_100);
    let third = store.enqueue(&new, 1_200).unwrap().id;
    let (lease, remaining) = store.lease_due("e", 1_200, 4, 10_000).unwrap();
    assert!(matches!(lease, Lease::Taken(ref taken) if taken.iter().map(|m| m.id).eq([third])));
    assert_eq!(remaining, Remaining::Unknown);
    assert!(store.leases.holds(second));
}
