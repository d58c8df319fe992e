//! Attempt outcomes: an attempt recorded on a leased message, and its decision applied (delivered, queued
//! again at the retry time, or dead). An outcome that changes only its record is compare-and-swapped on its
//! own; the others are batched with concurrent callers' outcomes into shared transactions (`combine.rs`).
//! What was written is then mirrored in the due index, the leases and the tally.

use super::AttemptOutcome;
use super::combine::BatchResult;
use super::ops::{AttemptOp, Moved};
use super::record::{self, PayloadAt};
use super::tx::{Name, Set};
use super::{SledStore, StoreError};
use crate::model::{AttemptRecord, MessageId, MessageRecord, Millis, Stage};
use crate::retry::Decision;

/// What [`SledStore::swap_standalone`] did with a run of outcomes.
struct Swaps<O> {
    /// Swapped in, with what each moved.
    swapped: Vec<(O, Moved)>,
    /// Not written: they need a transaction, their record changed, or a write failed before them.
    rest: Vec<O>,
    /// The write that failed, if one did.
    failed: Result<(), StoreError>,
}

impl SledStore {
    /// Records an attempt on a leased message and applies the decision: delivered, queued again at the retry
    /// time, or dead. The attempt's `number` must be the record's `total_attempts + 1`.
    pub fn record_attempt(
        &self,
        id: MessageId,
        attempt: &AttemptRecord,
        decision: &Decision,
        now: Millis,
    ) -> Result<(), StoreError> {
        self.record_attempts(vec![AttemptOutcome {
            id,
            attempt: attempt.clone(),
            decision: decision.clone(),
            now,
            leased: None,
        }])
    }

    /// Records the outcomes of one request's attempts (one per message) together, as
    /// [`SledStore::record_attempt`] would each, batched with other callers' outcomes (`combine.rs`).
    ///
    /// An outcome is not durable when this returns, and nobody waits for it to be: a crash before the next
    /// commit means the message is attempted again (at least once). The store asks for a commit without
    /// waiting ([`GroupCommit::request`](super::commit::GroupCommit::request)), which begins at most 10 ms
    /// after the one before it.
    pub fn record_attempts(&self, outcomes: Vec<AttemptOutcome>) -> Result<(), StoreError> {
        let op = AttemptOp { outcomes };
        self.attempts.run(op, |ops| self.apply_attempts(ops))
    }

    /// [`SledStore::record_attempts`] for async callers. An outcome that changes only its record (most of them: a
    /// first attempt delivered or retried) is compare-and-swapped right here, by the caller: one sled write
    /// that takes no lock another writer waits for. Handing it to a leader thread instead cost a thread wake-up
    /// and a reply per batch (docs/performance/design-notes.md, "Why the store and the dispatcher are laid out
    /// as they are": "An outcome that changes only its record is compare-and-swapped in by the attempt itself",
    /// "On the attempt's task, not the combiner's thread"). The other outcomes, and any whose record changed
    /// since it was read, go to the combiner, where the outcomes of concurrent attempts share transactions
    /// (`combine.rs`). Should a swap fail, the outcomes swapped before it are kept and the error is returned;
    /// the messages not recorded stay leased until the next start, as after any failed write.
    pub async fn record_attempts_async(
        &self,
        outcomes: Vec<AttemptOutcome>,
    ) -> Result<(), StoreError> {
        let Swaps {
            swapped,
            rest,
            failed,
        } = self.swap_standalone(outcomes.into_iter().map(|mut outcome| {
            let leased = outcome.leased.take();
            (outcome, leased)
        }));
        if !swapped.is_empty() {
            // On disk within a commit, though nobody waits for it (`SledStore::record_attempts`).
            self.committer.request();
            self.settle(
                swapped
                    .iter()
                    .map(|(outcome, moved)| (outcome, Some(moved))),
            );
        }
        failed?;
        if rest.is_empty() {
            return Ok(());
        }
        let op = AttemptOp { outcomes: rest };
        let store = self.clone();
        self.attempts
            .run_async(op, move |ops| store.apply_attempts(ops))
            .await
    }

    /// A batch of attempt outcomes (run by the combiner's leader): those that change only their record are
    /// compare-and-swapped one by one, the others share one transaction. What was written is mirrored in the
    /// due index, the leases and the tally even when a later write fails (the batch's callers then get the
    /// error, and their messages that were not written stay leased until the next start).
    fn apply_attempts(&self, ops: &[AttemptOp]) -> BatchResult<()> {
        let mut applied = Vec::new();
        let written = self.write_outcomes(ops, &mut applied);
        // On disk within a commit, though nobody waits for it (`SledStore::record_attempts`).
        self.committer.request();
        self.settle(
            applied
                .iter()
                .map(|(outcome, moved)| (*outcome, moved.as_ref())),
        );
        written?;
        Ok(ops.iter().map(|_| Ok(())).collect())
    }

    /// Mirrors written outcomes in the due index, the leases and the tally (`None`: no such message).
    fn settle<'a>(
        &self,
        applied: impl IntoIterator<Item = (&'a AttemptOutcome, Option<&'a Moved>)>,
    ) {
        for (outcome, moved) in applied {
            // The index changes before the lease ends, so the lane never sees the old entry unleased.
            if let Some(moved) = moved {
                self.mirror(outcome.id, moved);
            }
            let leased = self.leases.end(outcome.id);
            if let Some(moved) = moved {
                let from = if leased { Stage::InFlight } else { moved.was };
                self.tally
                    .moved(&moved.endpoint, Some(from), Some(moved.is));
            }
        }
    }

    /// Writes the outcomes of `ops`, adding each one written to `applied` with what it moved (`None`: no such
    /// message).
    fn write_outcomes<'a>(
        &self,
        ops: &'a [AttemptOp],
        applied: &mut Vec<(&'a AttemptOutcome, Option<Moved>)>,
    ) -> Result<(), StoreError> {
        let Swaps {
            swapped,
            rest,
            failed,
        } = self.swap_standalone(
            ops.iter()
                .flat_map(|op| &op.outcomes)
                .map(|outcome| (outcome, None)),
        );
        applied.extend(
            swapped
                .into_iter()
                .map(|(outcome, moved)| (outcome, Some(moved))),
        );
        failed?;
        if rest.is_empty() {
            return Ok(());
        }
        // Only a message attempted before has an attempt to move to the `attempt` tree, and only one with a
        // contact needs the `contact` tree; the transaction adds a tree it lacks when asked for it.
        let mut trees = Set::of(&[Name::Msg]);
        for outcome in &rest {
            if outcome.attempt.number > 1 {
                trees = trees.with(Name::Attempt);
            }
            if matches!(outcome.decision, Decision::Dead { .. }) {
                trees = trees.with(Name::Dead);
            }
        }
        let moved: Vec<Option<Moved>> = self.transaction(trees, |tx| {
            rest.iter().map(|outcome| outcome.apply(tx)).collect()
        })?;
        applied.extend(rest.into_iter().zip(moved));
        Ok(())
    }

    /// Swaps in each outcome that changes only its record ([`SledStore::swap_outcome`]). Answers those swapped,
    /// with what they moved, and the rest: those that need a transaction or whose record changed since it was
    /// read, and, should a write fail, the outcome it failed on and every one after it, with the failure.
    fn swap_standalone<O: std::borrow::Borrow<AttemptOutcome>>(
        &self,
        outcomes: impl IntoIterator<Item = (O, Option<MessageRecord>)>,
    ) -> Swaps<O> {
        let (mut swapped, mut rest, mut failed) = (Vec::new(), Vec::new(), Ok(()));
        for (outcome, leased) in outcomes {
            if failed.is_err() || !outcome.borrow().may_stand_alone() {
                rest.push(outcome);
                continue;
            }
            match self.swap_outcome(outcome.borrow(), leased) {
                Ok(Some(moved)) => swapped.push((outcome, moved)),
                Ok(None) => rest.push(outcome),
                Err(error) => {
                    failed = Err(error);
                    rest.push(outcome);
                }
            }
        }
        Swaps {
            swapped,
            rest,
            failed,
        }
    }

    /// Records `outcome` by a compare-and-swap of its record when that is all it changes
    /// ([`AttemptOutcome::record_alone`]); a single key needs no transaction to change atomically. `None`
    /// when it needs one, or when the record changed between the read and the swap (the transaction reads
    /// it again).
    ///
    /// `leased` is the record as its lease gave it ([`AttemptOutcome::leased`]). With the bytes the lease read
    /// (`leases.rs`) it stands for the stored record, which then is neither read nor decoded again; the swap
    /// is made against those bytes, so it fails if the record changed since.
    fn swap_outcome(
        &self,
        outcome: &AttemptOutcome,
        leased: Option<MessageRecord>,
    ) -> Result<Option<Moved>, StoreError> {
        let key = outcome.id.as_bytes();
        let (stored, record, at) = match (leased, self.leases.read(outcome.id)) {
            // The lease decoded these bytes and changed nothing in the record but its stage (a payload kept
            // apart was added to it, so only an inline one qualifies).
            (Some(mut record), Some((stored, PayloadAt::Record)))
                if record.id == outcome.id && record.stage == Stage::InFlight =>
            {
                record.stage = Stage::Queued;
                debug_assert_eq!(
                    record::decode(&stored).ok(),
                    Some((record.clone(), PayloadAt::Record)),
                    "the leased record stands for the stored one"
                );
                (stored, record, PayloadAt::Record)
            }
            _ => {
                let Some(stored) = self.trees.msg.get(key)? else {
                    return Ok(None);
                };
                let (record, at) = record::decode(&stored)?;
                (stored, record, at)
            }
        };
        let Some((record, moved)) = outcome.record_alone(record, at) else {
            return Ok(None);
        };
        let new = record::encode(&record, at)?;
        Ok(self
            .trees
            .msg
            .compare_and_swap(key, Some(&stored), Some(new))?
            .ok()
            .map(|()| moved))
    }

    /// Mirrors a committed change of a message's record in the due index.
    pub(super) fn mirror(&self, id: MessageId, moved: &Moved) {
        if moved.was == Stage::Queued {
            self.due.remove(&moved.endpoint, moved.was_due_at, id);
        }
        if moved.is == Stage::Queued {
            self.due.insert(&moved.endpoint, moved.due_at, id);
        }
    }
}
