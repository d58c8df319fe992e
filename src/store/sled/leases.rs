//! Leases: which queued messages a lane has taken for an attempt. Kept in memory only.
//!
//! A lease is worth nothing after the process ends: every message leased by a previous run is due again at the
//! next start, with no attempt counted. So a lease writes nothing to disk. While a message is leased its
//! record on disk still says `queued` and its due-index entry stays where it was; the store lays the lease
//! over both: [`SledStore::get`](super::SledStore::get) reports it `in_flight`, and its lane's scans of the due
//! index step over it. The attempt's outcome then moves the record on. This took one of the three sled
//! transactions each delivered message cost (docs/performance/design-notes.md, "Why the store and the
//! dispatcher are laid out as they are": "Leases in memory"). A lease also keeps the record's bytes as it
//! read them, which the outcome's swap is made against (there: "An outcome that changes only its record is
//! compare-and-swapped in by the attempt itself", "Against the lease's bytes, not a fresh read").

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Mutex;

use super::record::PayloadAt;
use crate::model::{MessageId, Millis};

/// A stored record as a lease read it: its bytes and where its payload is.
pub(super) type Read = (sled::IVec, PayloadAt);

/// One lease: its deadline, and the record as the lease read it. An outcome that changes only the record is
/// swapped in against those bytes, so it need not read and decode the record again
/// (docs/performance/design-notes.md, "Why the store and the dispatcher are laid out as they are": "An outcome
/// that changes only its record is compare-and-swapped in by the attempt itself", "Against the lease's bytes,
/// not a fresh read").
#[derive(Debug)]
struct Held {
    /// Past it, the lease's attempt is taken for lost (its task ended without giving the message back) and
    /// the sweep gives the message back ([`SledStore::release_expired`](super::SledStore::release_expired)).
    until: Millis,
    read: Option<Read>,
}

/// The messages leased by this process, with their lease deadlines.
#[derive(Debug, Default)]
pub(super) struct Leases {
    by_id: Mutex<HashMap<MessageId, Held>>,
}

impl Leases {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<MessageId, Held>) -> T) -> T {
        // A poisoned lock only means a panic elsewhere while it was held; the map itself is always whole.
        let mut map = self
            .by_id
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut map)
    }

    /// Leases `id` until `until`, keeping the record as the lease `read` it; false when it is leased already
    /// (the lease it has is kept as it was).
    pub fn take(&self, id: MessageId, until: Millis, read: Option<Read>) -> bool {
        self.with(|map| match map.entry(id) {
            Entry::Occupied(_) => false,
            Entry::Vacant(entry) => {
                entry.insert(Held { until, read });
                true
            }
        })
    }

    /// The record as the lease of `id` read it, while `id` is leased.
    pub fn read(&self, id: MessageId) -> Option<Read> {
        self.with(|map| map.get(&id).and_then(|held| held.read.clone()))
    }

    pub fn holds(&self, id: MessageId) -> bool {
        self.with(|map| map.contains_key(&id))
    }

    /// Ends the lease of `id`; false when it was not leased.
    pub fn end(&self, id: MessageId) -> bool {
        self.with(|map| map.remove(&id).is_some())
    }

    /// The messages whose lease ended before `now`.
    pub fn expired(&self, now: Millis) -> Vec<MessageId> {
        self.with(|map| {
            map.iter()
                .filter(|(_, held)| held.until < now)
                .map(|(id, _)| *id)
                .collect()
        })
    }

    /// Every message leased now.
    pub fn ids(&self) -> Vec<MessageId> {
        self.with(|map| map.keys().copied().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_leased_once_until_its_lease_ends() {
        let leases = Leases::default();
        let id = MessageId::new();
        assert!(!leases.holds(id));
        let read = (sled::IVec::from(&b"record"[..]), PayloadAt::Record);
        assert!(leases.take(id, 5, Some(read.clone())));
        assert!(
            !leases.take(id, 6, None),
            "a second lease of the same message"
        );
        assert_eq!(
            leases.read(id),
            Some(read),
            "the first lease's read is kept"
        );
        assert!(leases.holds(id));
        assert_eq!(leases.ids(), [id]);
        assert!(leases.end(id));
        assert!(!leases.end(id));
        assert!(!leases.holds(id));
        assert_eq!(leases.read(id), None);
        assert!(leases.ids().is_empty());
    }

    #[test]
    fn a_lease_expires_after_its_deadline_only() {
        let leases = Leases::default();
        let id = MessageId::new();
        assert!(leases.take(id, 100, None));
        assert!(
            leases.expired(100).is_empty(),
            "not before its deadline has passed"
        );
        assert_eq!(leases.expired(101), [id]);
    }
}
