//! The due index: each endpoint's queued messages in the order they fall due, kept in memory.
//!
//! It holds nothing the message records do not: a `queued` record carries its endpoint and its
//! `next_attempt_at`. On disk (formats 1 and 2) the index cost two sled writes per message, an entry at the
//! enqueue and its removal at the outcome, out of seven. So the store rebuilds it from the records when it
//! opens, and changes it only after the transaction whose record change it mirrors has committed: a lane
//! never leases a message its record does not show as queued. A leased message keeps its entry (a lease is
//! in memory too: `leases.rs`) and the lane's scan steps over it, so the index and the records agree whether
//! or not anything is leased.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use crate::model::{MessageId, Millis};

/// Queued messages by endpoint, ordered by due time and then id.
#[derive(Debug, Default)]
pub(super) struct DueIndex {
    endpoints: Mutex<HashMap<String, Slice>>,
}

/// One endpoint's queued messages: by due time (what a lane leases) and by id (what `oldest` reads, so a
/// status read costs O(log n) under the lock every lane takes, not a walk of the backlog).
#[derive(Debug, Default)]
struct Slice {
    due: BTreeSet<(Millis, MessageId)>,
    ids: BTreeSet<MessageId>,
}

impl Slice {
    fn insert(&mut self, due_at: Millis, id: MessageId) {
        self.due.insert((due_at, id));
        self.ids.insert(id);
    }

    fn remove(&mut self, due_at: Millis, id: MessageId) {
        if self.due.remove(&(due_at, id)) {
            self.ids.remove(&id);
        }
    }
}

/// What a scan of one endpoint's due messages found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Due {
    /// These are due, earliest first, with their due times (never empty).
    Now(Vec<(Millis, MessageId)>),
    /// Nothing is due yet; the earliest is due at this time.
    Later(Millis),
    /// The endpoint has nothing queued that the scan may take.
    Nothing,
}

impl DueIndex {
    pub fn insert(&self, endpoint: &str, due_at: Millis, id: MessageId) {
        let mut endpoints = self.lock();
        match endpoints.get_mut(endpoint) {
            Some(slice) => slice.insert(due_at, id),
            None => {
                let mut slice = Slice::default();
                slice.insert(due_at, id);
                endpoints.insert(endpoint.to_owned(), slice);
            }
        }
    }

    pub fn remove(&self, endpoint: &str, due_at: Millis, id: MessageId) {
        let mut endpoints = self.lock();
        if let Some(slice) = endpoints.get_mut(endpoint) {
            slice.remove(due_at, id);
            if slice.due.is_empty() {
                endpoints.remove(endpoint);
            }
        }
    }

    /// Up to `max` messages of `endpoint` due at `now`, earliest first, stepping over those `skip` names.
    pub fn due(
        &self,
        endpoint: &str,
        now: Millis,
        max: usize,
        skip: impl Fn(MessageId) -> bool,
    ) -> Due {
        let endpoints = self.lock();
        let Some(slice) = endpoints.get(endpoint) else {
            return Due::Nothing;
        };
        let mut taken = Vec::new();
        for &(due_at, id) in &slice.due {
            if taken.len() >= max {
                break;
            }
            if due_at > now {
                if taken.is_empty() {
                    return Due::Later(due_at);
                }
                break;
            }
            if !skip(id) {
                taken.push((due_at, id));
            }
        }
        if taken.is_empty() {
            Due::Nothing
        } else {
            Due::Now(taken)
        }
    }

    /// The endpoint's oldest queued message that `skip` does not name (ids are time-ordered): read from the
    /// front of the endpoint's ids, stepping over only those `skip` names (a lane's leases, a few).
    pub fn oldest(&self, endpoint: &str, skip: impl Fn(MessageId) -> bool) -> Option<MessageId> {
        let endpoints = self.lock();
        endpoints
            .get(endpoint)?
            .ids
            .iter()
            .copied()
            .find(|id| !skip(*id))
    }

    /// Whether `endpoint` has anything queued (leased messages included).
    pub fn holds(&self, endpoint: &str) -> bool {
        self.lock().contains_key(endpoint)
    }

    /// The endpoints that have anything queued.
    pub fn endpoints(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Every queued message of `endpoint`, as (due time, id).
    pub fn of(&self, endpoint: &str) -> Vec<(Millis, MessageId)> {
        self.lock()
            .get(endpoint)
            .map(|slice| slice.due.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Every entry, as (endpoint, due time, id), in no particular order.
    pub fn entries(&self) -> Vec<(String, Millis, MessageId)> {
        let endpoints = self.lock();
        endpoints
            .iter()
            .flat_map(|(endpoint, slice)| {
                slice
                    .due
                    .iter()
                    .map(move |(due_at, id)| (endpoint.clone(), *due_at, *id))
            })
            .collect()
    }

    /// Up to `k` of the smallest ids of `endpoint`'s queued messages in `lower..upper` (exclusive at both
    /// ends when `Some`) that `wanted` accepts, in id order, and how many it accepts among the first `k + 1`
    /// (more than `k`: there is a next page). A walk of the endpoint's id-ordered set from `lower`: a page
    /// costs about its own size, not the backlog (`listing.rs`).
    pub fn smallest_ids(
        &self,
        endpoint: &str,
        lower: Option<MessageId>,
        upper: Option<MessageId>,
        wanted: impl Fn(MessageId) -> bool,
        k: usize,
    ) -> (Vec<MessageId>, usize) {
        use std::ops::Bound;
        let endpoints = self.lock();
        let Some(slice) = endpoints.get(endpoint) else {
            return (Vec::new(), 0);
        };
        let from = lower.map_or(Bound::Unbounded, Bound::Excluded);
        let to = upper.map_or(Bound::Unbounded, Bound::Excluded);
        let mut found: Vec<MessageId> = slice
            .ids
            .range((from, to))
            .copied()
            .filter(|id| wanted(*id))
            .take(k.saturating_add(1))
            .collect();
        let matched = found.len();
        found.truncate(k);
        (found, matched)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Slice>> {
        // The map is changed by single calls that cannot panic half-way, so a poisoned lock holds whole data.
        self.endpoints
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
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
            Due::Now(vec![(10, ids[1]), (20, ids[2])])
        );
        assert_eq!(
            index.due("e", 40, 5, |id| id == ids[2]),
            Due::Now(vec![(10, ids[1]), (30, ids[0])])
        );
        assert_eq!(index.due("e", 5, 5, |_| false), Due::Later(10));
        assert_eq!(index.due("e", 40, 0, |_| false), Due::Nothing);
        assert_eq!(index.due("x", 40, 5, |_| false), Due::Nothing);
        index.remove("e", 10, ids[1]);
        assert_eq!(
            index.due("e", 40, 1, |_| false),
            Due::Now(vec![(20, ids[2])])
        );
        assert_eq!(index.oldest("e", |_| false), Some(ids[0]));
        assert_eq!(index.oldest("e", |id| id == ids[0]), Some(ids[2]));
        assert_eq!(index.entries().len(), 4);
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
}
