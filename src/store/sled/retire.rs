//! Retiring an endpoint's messages when the endpoint is deleted: each queued message becomes a dead letter
//! (with the reason given, still listable, replayable once an endpoint of that name exists again, and
//! purgeable), or is purged outright.
//!
//! The caller stops the endpoint's lane first, so nothing of the endpoint is leased while this runs; a
//! message still leased is skipped (and reported by the count it leaves behind).

use super::keys;
use super::tx::{Name, Set};
use super::{CHUNK, Retire, Selection, SledStore, StoreError};
use crate::model::{MessageId, Millis, Stage};

impl SledStore {
    /// Whether `endpoint` has anything queued or in flight (read from memory).
    pub fn has_queued(&self, endpoint: &str) -> bool {
        self.due.holds(endpoint)
    }

    /// The endpoints that have anything queued or in flight (read from memory).
    pub fn queued_endpoints(&self) -> Vec<String> {
        self.due.endpoints()
    }

    /// Gives back every message of `endpoint` this process holds leased (its lane has stopped), due at `now`,
    /// without counting an attempt. Returns how many.
    pub fn release_leases_of(&self, endpoint: &str, now: Millis) -> Result<usize, StoreError> {
        let mut released = 0;
        for (_, id) in self.due.of(endpoint) {
            if self.leases.holds(id) {
                self.release(id, now)?;
                released += 1;
            }
        }
        Ok(released)
    }

    /// Retires every queued message of `endpoint` that is not leased, up to [`CHUNK`] per transaction.
    /// Returns how many.
    pub fn retire_queued(
        &self,
        endpoint: &str,
        how: &Retire,
        now: Millis,
    ) -> Result<usize, StoreError> {
        let reason = match how {
            Retire::DeadLetter { reason } => reason.clone(),
            Retire::Purge => "endpoint deleted".to_owned(),
        };
        let ids: Vec<(Millis, MessageId)> = self
            .due
            .of(endpoint)
            .into_iter()
            .filter(|(_, id)| !self.leases.holds(*id))
            .collect();
        let mut retired = 0;
        for chunk in ids.chunks(CHUNK) {
            let trees = Set::of(&[Name::Msg, Name::Dead, Name::Contact]);
            let dead = self.transaction(trees, |tx| {
                let mut dead = Vec::with_capacity(chunk.len());
                for (due_at, id) in chunk {
                    let Some((mut record, at)) = tx.get_record(*id)? else {
                        continue;
                    };
                    if record.stage != Stage::Queued || record.endpoint != endpoint {
                        continue;
                    }
                    if let Some(contact) = &record.contact {
                        tx.contact()?
                            .remove(keys::contact(&record.endpoint, contact, *id))?;
                    }
                    record.stage = Stage::Dead;
                    record.dead_reason = Some(reason.clone());
                    record.dead_at = Some(now);
                    tx.dead()?.insert(id.as_bytes(), &[])?;
                    tx.put_record(&record, at)?;
                    dead.push((*due_at, *id));
                }
                Ok(dead)
            })?;
            for (due_at, id) in &dead {
                self.due.remove(endpoint, *due_at, *id);
                self.tally
                    .moved(endpoint, Some(Stage::Queued), Some(Stage::Dead));
            }
            if *how == Retire::Purge {
                let ids = dead.iter().map(|(_, id)| *id).collect();
                self.purge(&Selection::Ids(ids))?;
            }
            retired += dead.len();
        }
        Ok(retired)
    }
}
