//! The due index: each endpoint's queued messages in the order they fall due, kept in memory.
//!
//! It holds nothing the message records do not: a `queued` record carries its endpoint and its
//! `next_attempt_at`. On disk (formats 1 and 2) the index cost two sled writes per message, an entry at the
//! enqueue and its removal at the outcome, out of seven. So the store rebuilds it from the records when it
//! opens, and changes it only after the transaction whose record change it mirrors has committed: a lane
//! never leases a message its record does not show as queued. A leased message keeps its entry (a lease is
//! in memory too: `leases.rs`) and the lane's scan steps over it, so the index and the records agree whether
//! or not anything is leased.
//!
//! It is read in two orders: by due time (what a lane leases) and by id (the oldest queued message, and a
//! listing's page). Most queued messages are due at the millisecond their id was made (enqueued, not yet
//! tried), and a UUID v7 begins with that millisecond, so for them id order *is* due order: they are kept
//! once, in one id-ordered set. Only the others (retries, replays, records written before ids were made
//! from the enqueue's clock) are kept twice, by due time and by id. Each order is a merge of two sets. With
//! a million messages queued this keeps one B-tree entry of 16 bytes per message instead of two (24 and 16
//! bytes): about 60 MiB less.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

use crate::model::{MessageId, Millis};

/// Queued messages by endpoint, ordered by due time and then id.
#[derive(Debug, Default)]
pub(super) struct DueIndex {
    endpoints: Mutex<HashMap<String, Slice>>,
}

/// One endpoint's queued messages.
#[derive(Debug, Default)]
struct Slice {
    /// Messages due at the millisecond their id was made: by id, which is also by due time.
    fresh: BTreeSet<MessageId>,
    /// Every other message, by due time...
    later: BTreeSet<(Millis, MessageId)>,
    /// ... and by id.
    later_ids: BTreeSet<MessageId>,
}

/// Whether a message due at `due_at` is due when its id was made (kept in [`Slice::fresh`]).
fn is_fresh(due_at: Millis, id: MessageId) -> bool {
    id.created_at() == Some(due_at)
}

impl Slice {
    fn insert(&mut self, due_at: Millis, id: MessageId) {
        if is_fresh(due_at, id) {
            self.fresh.insert(id);
        } else if self.later.insert((due_at, id)) {
            self.later_ids.insert(id);
        }
    }

    fn remove(&mut self, due_at: Millis, id: MessageId) {
        if is_fresh(due_at, id) {
            self.fresh.remove(&id);
        } else if self.later.remove(&(due_at, id)) {
            self.later_ids.remove(&id);
        }
    }

    fn is_empty(&self) -> bool {
        self.fresh.is_empty() && self.later.is_empty()
    }

    /// Every entry as (due time, id), earliest first.
    fn by_due(&self) -> impl Iterator<Item = (Millis, MessageId)> + '_ {
        let fresh = self
            .fresh
            .iter()
            .map(|&id| (id.created_at().unwrap_or_default(), id));
        merged(fresh, self.later.iter().copied())
    }

    /// The ids in `range`, smallest first.
    fn ids_in(
        &self,
        range: (Bound<MessageId>, Bound<MessageId>),
    ) -> impl Iterator<Item = MessageId> + '_ {
        merged(
            self.fresh.range(range).copied(),
            self.later_ids.range(range).copied(),
        )
    }
}

/// Two ascending sequences as one, ascending.
fn merged<T: Ord + Copy>(
    a: impl Iterator<Item = T>,
    b: impl Iterator<Item = T>,
) -> impl Iterator<Item = T> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if y < x => b.next(),
        (Some(_), _) => a.next(),
        (None, _) => b.next(),
    })
}

/// What a scan of one endpoint's due messages found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Due {
    /// These are due, earliest first, with their due times (never empty). `more`: the scan stopped before the
    /// end of the endpoint's queue (at `max`, or at a message due later), so more may be queued beyond these
    /// and those skipped; `false` when every other queued message of the endpoint was skipped.
    Now {
        due: Vec<(Millis, MessageId)>,
        more: bool,
    },
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
            if slice.is_empty() {
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
        let mut more = false;
        for (due_at, id) in slice.by_due() {
            if taken.len() >= max {
                more = true;
                break;
            }
            if due_at > now {
                if taken.is_empty() {
                    return Due::Later(due_at);
                }
                more = true;
                break;
            }
            if !skip(id) {
                taken.push((due_at, id));
            }
        }
        if taken.is_empty() {
            Due::Nothing
        } else {
            Due::Now { due: taken, more }
        }
    }

    /// The endpoint's oldest queued message that `skip` does not name (ids are time-ordered): read from the
    /// front of the endpoint's ids, stepping over only those `skip` names (a lane's leases, a few).
    pub fn oldest(&self, endpoint: &str, skip: impl Fn(MessageId) -> bool) -> Option<MessageId> {
        let endpoints = self.lock();
        endpoints
            .get(endpoint)?
            .ids_in((Bound::Unbounded, Bound::Unbounded))
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
            .map(|slice| slice.by_due().collect())
            .unwrap_or_default()
    }

    /// Every entry, as (endpoint, due time, id), in no particular order.
    pub fn entries(&self) -> Vec<(String, Millis, MessageId)> {
        let endpoints = self.lock();
        endpoints
            .iter()
            .flat_map(|(endpoint, slice)| {
                slice
                    .by_due()
                    .map(move |(due_at, id)| (endpoint.clone(), due_at, id))
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
        let endpoints = self.lock();
        let Some(slice) = endpoints.get(endpoint) else {
            return (Vec::new(), 0);
        };
        let from = lower.map_or(Bound::Unbounded, Bound::Excluded);
        let to = upper.map_or(Bound::Unbounded, Bound::Excluded);
        let mut found: Vec<MessageId> = slice
            .ids_in((from, to))
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
mod tests;
