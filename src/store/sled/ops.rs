//! The operations the combiners batch (`combine.rs`): an enqueue and an attempt's outcome, each applied to a
//! shared transaction, except an outcome that changes nothing but its record, which is compare-and-swapped on
//! its own ([`AttemptOutcome::record_alone`]). They are written so that a transaction run again (sled retries
//! on conflict, and `SledStore::transaction` reruns with a tree a verb asked for) computes everything afresh.

use std::collections::HashMap;

use super::record::PayloadAt;
use super::tx::{Tx, TxResult, abort};
use super::{AttemptOutcome, ContactLimit, Enqueued, NewMessage, StoreError, keys};
use crate::model::{MessageId, MessageRecord, Millis, Stage};
use crate::retry::Decision;

/// One caller's enqueue: its messages and the time they are due.
pub(super) struct EnqueueOp {
    pub messages: Vec<NewMessage>,
    pub now: Millis,
    /// Whether the written messages go into the due index (and the counts) at once. A chunk of a large batch
    /// does not: its messages are shown to the lanes only once every chunk is in (`large_batch.rs`).
    pub publish: bool,
}

/// A message ready to be written: its new id and record, and its index keys.
pub(super) struct PlannedEnqueue<'a> {
    new: &'a NewMessage,
    id: MessageId,
    record: MessageRecord,
    pub idem_key: Option<Vec<u8>>,
    /// The contact's key prefix and cap, on capped formats.
    pub contact: Option<(Vec<u8>, &'a ContactLimit)>,
}

impl<'a> PlannedEnqueue<'a> {
    pub fn of(new: &'a NewMessage, now: Millis) -> Self {
        // Made at the time the message falls due, so the due index keeps it once (`due/mod.rs`).
        let id = MessageId::at(now);
        let record = MessageRecord {
            idempotency_key: new.idempotency_key.clone(),
            contact: new.contact.as_ref().map(|c| c.contact.clone()),
            ..MessageRecord::new_queued(id, &new.endpoint, &new.kind, &new.payload, now)
        };
        PlannedEnqueue {
            new,
            id,
            record,
            idem_key: new
                .idempotency_key
                .as_deref()
                .map(|key| keys::idempotency(&new.endpoint, key)),
            contact: new
                .contact
                .as_ref()
                .map(|limit| (keys::contact_prefix(&new.endpoint, &limit.contact), limit)),
        }
    }

    /// The size of the message's payload.
    pub fn payload_len(&self) -> usize {
        self.new.payload.len()
    }

    /// The record's bytes when writing it is all this enqueue does: no idempotency key to check and index,
    /// no contact to count, and a payload small enough to live in the record. `None` when it needs a
    /// transaction ([`PlannedEnqueue::apply`]).
    pub fn record_alone(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let alone = self.idem_key.is_none()
            && self.contact.is_none()
            && PayloadAt::for_len(self.payload_len()) == PayloadAt::Record;
        if !alone {
            return Ok(None);
        }
        Ok(Some(super::record::encode(
            &self.record,
            PayloadAt::Record,
        )?))
    }

    /// The endpoint the message is for.
    pub fn endpoint(&self) -> &str {
        &self.new.endpoint
    }

    /// The answer for a message written on its own ([`PlannedEnqueue::record_alone`]).
    pub fn enqueued(&self) -> Enqueued {
        Enqueued {
            id: self.id,
            duplicate: false,
        }
    }

    /// Writes the message unless its idempotency key is known (a duplicate) or its contact is at its cap.
    /// `pending_before` holds each capped contact's pending count before the batch, `added` what the batch
    /// has added to it so far.
    pub fn apply<'p>(
        &'p self,
        tx: &Tx<'_>,
        now: Millis,
        pending_before: &HashMap<&[u8], usize>,
        added: &mut HashMap<&'p [u8], usize>,
    ) -> TxResult<Result<Enqueued, StoreError>> {
        if let Some(key) = &self.idem_key {
            if let Some(existing) = tx.idem()?.get(key)? {
                let first = MessageId::from_slice(&existing).ok_or_else(|| {
                    abort(StoreError::Corrupt("idempotency entry is not an id".into()))
                })?;
                return Ok(Ok(Enqueued {
                    id: first,
                    duplicate: true,
                }));
            }
        }
        if let Some((prefix, limit)) = &self.contact {
            let before = pending_before.get(prefix.as_slice()).copied().unwrap_or(0);
            let ours = added.entry(prefix.as_slice()).or_insert(0);
            if before + *ours >= limit.max_pending {
                return Ok(Err(StoreError::ContactFull {
                    endpoint: self.new.endpoint.clone(),
                    contact: limit.contact.clone(),
                    max: limit.max_pending,
                }));
            }
            *ours += 1;
        }
        if let Some(key) = &self.idem_key {
            tx.idem()?.insert(key.as_slice(), self.id.as_bytes())?;
        }
        // The record carries the payload; a large one goes to its own tree (`record.rs`).
        tx.queue(&mut self.record.clone(), PayloadAt::Record, now)?;
        Ok(Ok(Enqueued {
            id: self.id,
            duplicate: false,
        }))
    }
}

/// One caller's attempt outcomes (one per message of the request).
pub(super) struct AttemptOp {
    pub outcomes: Vec<AttemptOutcome>,
}

/// What a committed change did to a message's record: the store mirrors it in the due index and the tally.
#[derive(Debug)]
pub(super) struct Moved {
    pub endpoint: String,
    /// The record's stage before the change, and its due time then (an index entry while it was queued).
    pub was: Stage,
    pub was_due_at: Millis,
    /// The record's stage after the change, and its due time (an index entry when it is queued).
    pub is: Stage,
    pub due_at: Millis,
}

impl AttemptOutcome {
    /// Whether this outcome can change only its record, as far as the outcome alone tells: a first attempt
    /// (a later one has an attempt before it to move out of the record), not a dead letter. Only such an
    /// outcome is worth reading its record for [`AttemptOutcome::record_alone`] before the transaction.
    pub(super) fn may_stand_alone(&self) -> bool {
        self.attempt.number == 1 && !matches!(self.decision, Decision::Dead { .. })
    }

    /// Makes the attempt the record's latest and counts it; answers the attempt the record held before.
    fn count_attempt(&self, record: &mut MessageRecord) -> Option<crate::model::AttemptRecord> {
        record.cycle_attempts += 1;
        record.total_attempts = record.total_attempts.max(self.attempt.number);
        record.last_attempt.replace(self.attempt.clone())
    }

    /// The record after this outcome, and what moved, when recording it changes nothing but the record (the
    /// common case: a first attempt delivered or retried, on a message without a contact). `None` when it
    /// needs a transaction ([`AttemptOutcome::apply`]): the record holds an attempt to move to the `attempt`
    /// tree, the message has a contact entry or becomes a dead letter, or the record is of an older format
    /// that still has a lease or a large payload to move.
    pub(super) fn record_alone(
        &self,
        mut record: MessageRecord,
        at: PayloadAt,
    ) -> Option<(MessageRecord, Moved)> {
        let payload_stays =
            at == PayloadAt::Tree || PayloadAt::for_len(record.payload.len()) == PayloadAt::Record;
        let alone = record.stage == Stage::Queued
            && record.last_attempt.is_none()
            && record.contact.is_none()
            && payload_stays;
        let (was, was_due_at) = (record.stage, record.next_attempt_at);
        match self.decision {
            Decision::Delivered if alone => {
                record.stage = Stage::Delivered;
                record.delivered_at = Some(self.now);
            }
            Decision::RetryAt(due_at) if alone => {
                record.next_attempt_at = due_at;
            }
            _ => return None,
        }
        self.count_attempt(&mut record);
        let moved = Moved {
            endpoint: record.endpoint.clone(),
            was,
            was_due_at,
            is: record.stage,
            due_at: record.next_attempt_at,
        };
        Some((record, moved))
    }

    /// Records the attempt in the record (moving the one it held to the `attempt` tree) and applies the
    /// decision. Answers what moved (`None`: no such message).
    pub(super) fn apply(&self, tx: &Tx<'_>) -> TxResult<Option<Moved>> {
        let id = self.id;
        let Some((mut record, at)) = tx.get_record(id)? else {
            return Ok(None);
        };
        if record.contact.is_some() {
            // Asked for before any write, so a run without it stops early.
            tx.contact()?;
        }
        let was = record.stage;
        let was_due_at = record.next_attempt_at;
        if was == Stage::InFlight {
            // Leased by a first-format store, which persisted leases.
            tx.lease()?.remove(id.as_bytes())?;
        }
        if let Some(previous) = self.count_attempt(&mut record) {
            let bytes = super::encode(&previous).map_err(super::tx::abort)?;
            tx.attempt()?
                .insert(keys::attempt(id, previous.number), bytes)?;
        }
        if let (Some(contact), false) = (
            &record.contact,
            matches!(self.decision, Decision::RetryAt(_)),
        ) {
            tx.contact()?
                .remove(keys::contact(&record.endpoint, contact, id))?;
        }
        match &self.decision {
            Decision::Delivered => {
                record.stage = Stage::Delivered;
                record.delivered_at = Some(self.now);
                tx.put_record(&record, at)?;
            }
            Decision::RetryAt(due_at) => tx.queue(&mut record, at, *due_at)?,
            Decision::Dead { reason } => {
                record.stage = Stage::Dead;
                record.dead_reason = Some(reason.clone());
                record.dead_at = Some(self.now);
                tx.dead()?.insert(id.as_bytes(), &[])?;
                tx.put_record(&record, at)?;
            }
        }
        Ok(Some(Moved {
            endpoint: record.endpoint,
            was,
            was_due_at,
            is: record.stage,
            due_at: record.next_attempt_at,
        }))
    }
}
