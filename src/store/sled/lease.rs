//! The verbs that take and give back leases: [`SledStore::lease_due`] (a lane's due messages, in flight until
//! their lease ends), [`SledStore::release`] and [`SledStore::release_all_leases`] (back to due without counting an
//! attempt). The leases themselves, in memory only, are in `leases.rs`; a lease of the first store format,
//! persisted in the `lease` tree, is only ever released.

use super::due::Due;
use super::ops::Moved;
use super::record::{self, PayloadAt};
use super::tx::{Name, Set, Tx};
use super::{Lease, Remaining, SledStore, StoreError};
use crate::model::{MessageId, MessageRecord, Millis, Stage};

impl SledStore {
    /// Leases up to `max` messages of `endpoint` that are due at `now`, marking them in flight until
    /// `lease_until` (`max` 0 leases nothing). Only the endpoint's own lane calls this, so it never races
    /// with itself. A lease writes nothing to disk (`leases.rs`): the messages it takes stay in the due index,
    /// and the scan steps over those already leased.
    ///
    /// Tells also whether the endpoint has anything queued beyond what was taken and what was already leased:
    /// [`Remaining::Nothing`] when the last scan of the due index reached the end of the endpoint's queue.
    pub fn lease_due(
        &self,
        endpoint: &str,
        now: Millis,
        max: usize,
        lease_until: Millis,
    ) -> Result<(Lease, Remaining), StoreError> {
        let mut taken = Vec::new();
        let mut remaining;
        loop {
            let wanted = max - taken.len();
            let due = match self
                .due
                .due(endpoint, now, wanted, |id| self.leases.holds(id))
            {
                Due::Now { due, more } => {
                    remaining = if more {
                        Remaining::Unknown
                    } else {
                        Remaining::Nothing
                    };
                    due
                }
                Due::Later(due_at) if taken.is_empty() => {
                    return Ok((Lease::NextDueAt(due_at), Remaining::Unknown));
                }
                Due::Later(_) => {
                    remaining = Remaining::Unknown;
                    break;
                }
                Due::Nothing => {
                    remaining = Remaining::Nothing;
                    break;
                }
            };
            let mut dropped = false;
            for (due_at, id) in due {
                let stored = match self.trees.msg.get(id.as_bytes()) {
                    Ok(stored) => stored,
                    Err(error) => return Err(self.give_back(endpoint, taken, error.into())),
                };
                let read = match stored.map(|stored| self.read_leasable(stored)) {
                    None => None,
                    Some(Ok(read)) => Some(read),
                    Some(Err((stored, StoreError::Corrupt(problem)))) => {
                        // One bad record must not stall the endpoint: it becomes a dead letter.
                        match self.quarantine(endpoint, due_at, id, &stored, &problem, now) {
                            Ok(_) => {
                                dropped = true;
                                continue;
                            }
                            Err(error) => return Err(self.give_back(endpoint, taken, error)),
                        }
                    }
                    Some(Err((_, error))) => return Err(self.give_back(endpoint, taken, error)),
                };
                let Some((mut record, read)) = read.filter(|(r, _)| r.stage == Stage::Queued)
                else {
                    // Only a bug could leave such an entry; the lane must not stall on it.
                    tracing::error!(
                        message_id = %id,
                        endpoint,
                        "the due index named a message that is not queued; entry dropped"
                    );
                    self.due.remove(endpoint, due_at, id);
                    dropped = true;
                    continue;
                };
                if !self.leases.take(id, lease_until, Some(read)) {
                    continue;
                }
                record.stage = Stage::InFlight;
                self.tally
                    .moved(endpoint, Some(Stage::Queued), Some(Stage::InFlight));
                taken.push(record);
            }
            // A dropped entry took a place that a due message may fill: look again.
            if !dropped || taken.len() >= max {
                break;
            }
        }
        let lease = if taken.is_empty() {
            Lease::Idle
        } else {
            Lease::Taken(taken)
        };
        Ok((lease, remaining))
    }

    /// A stored record decoded with its payload, and the bytes read (kept by the lease); on failure, the
    /// bytes and why.
    #[allow(clippy::type_complexity)]
    fn read_leasable(
        &self,
        stored: sled::IVec,
    ) -> Result<(MessageRecord, (sled::IVec, PayloadAt)), (sled::IVec, StoreError)> {
        let decoded = record::decode(&stored)
            .and_then(|(record, at)| Ok((self.with_payload(record, at)?, at)));
        match decoded {
            Ok((record, at)) => Ok((record, (stored, at))),
            Err(error) => Err((stored, error)),
        }
    }

    /// Ends the leases this call took (the lane never got them) and answers `error`: a failed scan strands
    /// nothing in flight.
    fn give_back(
        &self,
        endpoint: &str,
        taken: Vec<MessageRecord>,
        error: StoreError,
    ) -> StoreError {
        for record in taken {
            if self.leases.end(record.id) {
                self.tally
                    .moved(endpoint, Some(Stage::InFlight), Some(Stage::Queued));
            }
        }
        error
    }

    /// Whether this process holds `id` leased (its outcome is not yet written).
    pub fn is_leased(&self, id: MessageId) -> bool {
        self.leases.holds(id)
    }

    /// Gives back every message whose lease ended before `now`, due at `now` with no attempt counted: its
    /// attempt was lost (a panic, an outcome that could not be written). Returns their endpoints, to be woken.
    pub fn release_expired(&self, now: Millis) -> Result<Vec<String>, StoreError> {
        let mut endpoints = Vec::new();
        for id in self.leases.expired(now) {
            self.release(id, now)?;
            if let Some((record, _)) = self.stored_record(id)? {
                endpoints.push(record.endpoint);
            }
        }
        Ok(endpoints)
    }

    /// Puts a leased message back to due at `now` without counting an attempt (shutdown, restart).
    pub fn release(&self, id: MessageId, now: Millis) -> Result<(), StoreError> {
        let queue_again = |tx: &Tx<'_>, (mut record, at): (MessageRecord, PayloadAt)| {
            let (was, was_due_at) = (record.stage, record.next_attempt_at);
            tx.queue(&mut record, at, now)?;
            Ok(Moved {
                endpoint: record.endpoint,
                was,
                was_due_at,
                is: Stage::Queued,
                due_at: now,
            })
        };
        let released = if self.leases.holds(id) {
            let trees = Set::of(&[Name::Msg]);
            let released = self.transaction(trees, |tx| match tx.get_record(id)? {
                Some(stored) if stored.0.stage == Stage::Queued => {
                    queue_again(tx, stored).map(Some)
                }
                _ => Ok(None),
            })?;
            if let Some(moved) = &released {
                self.mirror(id, moved);
            }
            self.leases.end(id);
            released
        } else {
            // A lease a first-format store persisted.
            let trees = Set::of(&[Name::Msg, Name::Lease]);
            let released = self.transaction(trees, |tx| {
                if tx.lease()?.remove(id.as_bytes())?.is_none() {
                    return Ok(None);
                }
                match tx.get_record(id)? {
                    Some(stored) if stored.0.stage == Stage::InFlight => {
                        queue_again(tx, stored).map(Some)
                    }
                    _ => Ok(None),
                }
            })?;
            if let Some(moved) = &released {
                self.mirror(id, moved);
            }
            released
        };
        if let Some(moved) = released {
            self.tally
                .moved(&moved.endpoint, Some(Stage::InFlight), Some(Stage::Queued));
        }
        Ok(())
    }

    /// Every message leased now, and every lease a first-format store left on disk, goes back to due at `now`.
    /// The daemon calls it at start (a previous run's leases: only first-format ones are on disk) and after
    /// its lanes stopped (attempts aborted at the end of the grace period). Returns how many.
    pub fn release_all_leases(&self, now: Millis) -> Result<usize, StoreError> {
        let mut ids = self.leases.ids();
        for key in self.trees.lease.iter().keys() {
            let key = key?;
            ids.push(
                MessageId::from_slice(&key)
                    .ok_or_else(|| StoreError::Corrupt("malformed lease key".into()))?,
            );
        }
        for id in &ids {
            self.release(*id, now)?;
        }
        Ok(ids.len())
    }
}
