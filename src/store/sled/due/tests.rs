//! The due index alone: order, skipping, what `more` says.

use super::*;

#[test]
fn due_takes_the_earliest_first_up_to_max_and_steps_over_skipped_ones() {
    let index = DueIndex::default();
    let ids: Vec<MessageId> = (0..4).map(|_| MessageId::new()).collect();
    index.insert("e", 30, ids[0]);
    index.insert("e", 10, ids[1]);
    index.insert("e", 20, ids[2]);
    index.insert("e", 50, ids[3]);
    index.insert("e2", 0, MessageId::new());
    assert_eq!(
        index.due("e", 40, 2, |_| false),
        Due::Now {
            due: vec![(10, ids[1]), (20, ids[2])],
            more: true
        }
    );
    assert_eq!(
        index.due("e", 40, 5, |id| id == ids[2]),
        Due::Now {
            due: vec![(10, ids[1]), (30, ids[0])],
            more: true
        }
    );
    assert_eq!(index.due("e", 5, 5, |_| false), Due::Later(10));
    assert_eq!(index.due("e", 40, 0, |_| false), Due::Nothing);
    assert_eq!(index.due("x", 40, 5, |_| false), Due::Nothing);
    index.remove("e", 10, ids[1]);
    assert_eq!(
        index.due("e", 40, 1, |_| false),
        Due::Now {
            due: vec![(20, ids[2])],
            more: true
        }
    );
    assert_eq!(index.oldest("e", |_| false), Some(ids[0]));
    assert_eq!(index.oldest("e", |id| id == ids[0]), Some(ids[2]));
    assert_eq!(index.entries().len(), 4);
}

#[test]
fn due_says_more_unless_every_other_queued_message_was_skipped() {
    let index = DueIndex::default();
    let ids: Vec<MessageId> = (0..3).map(|_| MessageId::new()).collect();
    index.insert("e", 10, ids[0]);
    index.insert("e", 20, ids[1]);
    index.insert("e", 30, ids[2]);
    let in_flight = |id| id == ids[0];
    // Up to 5 wanted, all due: the scan reaches the end of the queue.
    assert_eq!(
        index.due("e", 30, 5, in_flight),
        Due::Now {
            due: vec![(20, ids[1]), (30, ids[2])],
            more: false
        }
    );
    // Stopped by a message due later, or by `max`: more is queued.
    assert_eq!(
        index.due("e", 25, 5, in_flight),
        Due::Now {
            due: vec![(20, ids[1])],
            more: true
        }
    );
    assert_eq!(
        index.due("e", 30, 1, in_flight),
        Due::Now {
            due: vec![(20, ids[1])],
            more: true
        }
    );
}

#[test]
fn oldest_is_read_from_the_front_without_walking_the_backlog() {
    let index = DueIndex::default();
    let mut ids: Vec<MessageId> = (0..10_000).map(|_| MessageId::new()).collect();
    ids.sort();
    // Due in the reverse of their age (retries push old messages back): the oldest is due last.
    for (n, id) in ids.iter().enumerate() {
        index.insert("e", 1_000_000 - n as Millis, *id);
    }
    let asked = std::sync::atomic::AtomicUsize::new(0);
    let leased = ids[0];
    let oldest = index.oldest("e", |id| {
        asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        id == leased
    });
    assert_eq!(oldest, Some(ids[1]), "the oldest not leased");
    assert_eq!(
        asked.into_inner(),
        2,
        "only the leased one is stepped over, not the whole backlog"
    );
    index.remove("e", 1_000_000 - 1, ids[1]);
    assert_eq!(index.oldest("e", |id| id == leased), Some(ids[2]));
}

#[test]
fn messages_due_when_made_and_the_others_read_as_one_order_by_due_time_and_by_id() {
    let index = DueIndex::default();
    // Made at 1,000, 2,000 and 3,000 ms; the first and the third due then, the second retried to 1,500.
    let (a, b, c) = (made_at(1_000, 1), made_at(2_000, 2), made_at(3_000, 3));
    // Made at 500 and due at 2,500: a replay.
    let replayed = made_at(500, 4);
    index.insert("e", 1_000, a);
    index.insert("e", 1_500, b);
    index.insert("e", 3_000, c);
    index.insert("e", 2_500, replayed);
    {
        let endpoints = index.lock();
        let slice = &endpoints["e"];
        assert_eq!(slice.fresh.len(), 2, "a and c are kept once");
        assert_eq!((slice.later.len(), slice.later_ids.len()), (2, 2));
    }
    assert_eq!(
        index.of("e"),
        [(1_000, a), (1_500, b), (2_500, replayed), (3_000, c)]
    );
    assert_eq!(
        index.due("e", 2_600, 10, |id| id == b),
        Due::Now {
            due: vec![(1_000, a), (2_500, replayed)],
            more: true
        }
    );
    assert_eq!(index.due("e", 900, 10, |_| false), Due::Later(1_000));
    assert_eq!(index.oldest("e", |_| false), Some(replayed));
    assert_eq!(index.oldest("e", |id| id == replayed), Some(a));
    assert_eq!(
        index.smallest_ids("e", Some(replayed), None, |_| true, 2),
        (vec![a, b], 3)
    );
    assert_eq!(
        index.smallest_ids("e", None, Some(c), |id| id != a, 5),
        (vec![replayed, b], 2)
    );
    index.remove("e", 1_000, a);
    index.remove("e", 1_500, b);
    // The wrong due time removes nothing.
    index.remove("e", 3_001, c);
    assert_eq!(index.of("e"), [(2_500, replayed), (3_000, c)]);
    index.remove("e", 3_000, c);
    index.remove("e", 2_500, replayed);
    assert!(index.lock().is_empty());
}

/// An id made at `ms` (process ids are never made before the last one, so a test's early times are
/// built directly).
fn made_at(ms: Millis, n: u8) -> MessageId {
    let uuid = uuid::Builder::from_unix_timestamp_millis(ms, &[n; 10]).into_uuid();
    MessageId::from_slice(uuid.as_bytes()).expect("16 bytes")
}

#[test]
fn ids_made_at_a_time_carry_it_and_never_go_back() {
    let now = crate::model::now_millis();
    let first = MessageId::at(now);
    assert!(first.created_at() >= Some(now));
    // Asked for an earlier time after a later one: made at the later one, and ordered after it.
    let second = MessageId::at(now - 10_000);
    assert!(second.created_at() >= first.created_at());
    assert!(second > first);
}

#[test]
fn removing_the_last_entry_of_an_endpoint_forgets_the_endpoint() {
    let index = DueIndex::default();
    let id = MessageId::new();
    index.insert("e", 1, id);
    index.remove("e", 1, id);
    // A removal of an entry that is not there changes nothing.
    index.remove("e", 1, id);
    assert!(index.lock().is_empty());
    assert_eq!(index.due("e", 10, 1, |_| false), Due::Nothing);
}
