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
    endpoints: Mutex<HashMap<String, BTreeSet<(Millis, MessageId)>>>,
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
            Some(due) => {
                due.insert((due_at, id));
            }
            None => {
                endpoints.insert(endpoint.to_owned(), BTreeSet::from([(due_at, id)]));
            }
        }
    }

    pub fn remove(&self, endpoint: &str, due_at: Millis, id: MessageId) {
        let mut endpoints = self.lock();
        if let Some(due) = endpoints.get_mut(endpoint) {
            due.remove(&(due_at, id));
            if due.is_empty() {
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
        let Some(due) = endpoints.get(endpoint) else {
            return Due::Nothing;
        };
        let mut taken = Vec::new();
        for &(due_at, id) in due {
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

    /// The endpoint's oldest queued message that `skip` does not name (ids are time-ordered).
    pub fn oldest(&self, endpoint: &str, skip: impl Fn(MessageId) -> bool) -> Option<MessageId> {
        let endpoints = self.lock();
        endpoints
            .get(endpoint)?
            .iter()
            .map(|(_, id)| *id)
            .filter(|id| !skip(*id))
            .min()
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
            .map(|due| due.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Every entry, as (endpoint, due time, id), in no particular order.
    pub fn entries(&self) -> Vec<(String, Millis, MessageId)> {
        let endpoints = self.lock();
        endpoints
            .iter()
            .flat_map(|(endpoint, due)| {
                due.iter()
                    .map(move |(due_at, id)| (endpoint.clone(), *due_at, *id))
            })
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, BTreeSet<(Millis, MessageId)>>> {
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
