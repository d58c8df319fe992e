//! Enqueues: a new message recorded as queued and due now, unless its idempotency key is known (or its contact
//! is at its cap). Concurrent enqueues are batched (`combine.rs`); a batch's messages that need nothing but
//! their record are compare-and-swapped in from nothing, the others share one transaction. The write is not
//! durable until [`SledStore::commit`].

use std::collections::HashMap;

use super::combine::BatchResult;
use super::large_batch::LARGE_BATCH_CHUNK;
use super::ops::{EnqueueOp, PlannedEnqueue};
use super::record::PayloadAt;
use super::tx::{Name, Set};
use super::{Enqueued, NewMessage, SledStore, StoreError, first_answer};
use crate::model::{MessageId, Millis, Stage};

/// One enqueue operation's answer: each of its messages' own answer, or the failure of the whole operation.
type OpAnswer = Result<Vec<Result<Enqueued, StoreError>>, StoreError>;

impl SledStore {
    /// Records a new message as queued and due now, unless its idempotency key is known on that endpoint.
    /// The write is not yet durable: acknowledge only after [`SledStore::commit`].
    pub fn enqueue(&self, new: &NewMessage, now: Millis) -> Result<Enqueued, StoreError> {
        first_answer(self.enqueue_many(vec![new.clone()], now)?)
    }

    /// Enqueues several messages, each as [`SledStore::enqueue`] would, all or none of them, batched with other
    /// callers' enqueues (`combine.rs`). Answers each message in order: a message over its contact's cap gets
    /// [`StoreError::ContactFull`] and the others are queued; the outer error is a failure of the whole write.
    pub fn enqueue_many(
        &self,
        messages: Vec<NewMessage>,
        now: Millis,
    ) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError> {
        self.enqueues.run(
            EnqueueOp {
                messages,
                now,
                publish: true,
            },
            |ops| self.apply_enqueues(ops),
        )
    }

    /// [`SledStore::enqueue_many`] for async callers: the caller awaits its answer while a leader writes
    /// (`combine.rs`), so the enqueues of concurrent requests share transactions.
    /// A batch of more than [`LARGE_BATCH_CHUNK`] messages is written in chunks (`large_batch.rs`).
    pub async fn enqueue_many_async(
        &self,
        messages: Vec<NewMessage>,
        now: Millis,
    ) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError> {
        if messages.len() > LARGE_BATCH_CHUNK {
            return self.enqueue_in_chunks(messages, now).await;
        }
        self.enqueue_op_async(EnqueueOp {
            messages,
            now,
            publish: true,
        })
        .await
    }

    /// Runs one enqueue operation through the combiner.
    pub(super) async fn enqueue_op_async(
        &self,
        op: EnqueueOp,
    ) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError> {
        let store = self.clone();
        self.enqueues
            .run_async(op, move |ops| store.apply_enqueues(ops))
            .await
    }

    /// A batch of enqueue operations (run by the combiner's leader). Each operation is written whole or not
    /// at all. An operation of one message whose record is all it writes (no idempotency key, no contact, a
    /// small payload: [`PlannedEnqueue::record_alone`]) is compare-and-swapped in from nothing: a fresh key
    /// needs no transaction. That matters beyond the writes saved: a sled 0.34 transaction holds sled's
    /// global lock exclusively while it applies, so every lease and outcome elsewhere waits for it
    /// (docs/performance/design-notes.md, "Why the store and the dispatcher are laid out as they are": "A
    /// single-message enqueue that writes only its record is compare-and-swapped in from nothing"). The other
    /// operations share one transaction.
    fn apply_enqueues(&self, ops: &[EnqueueOp]) -> BatchResult<Vec<Result<Enqueued, StoreError>>> {
        let planned: Vec<Vec<PlannedEnqueue<'_>>> = ops
            .iter()
            .map(|op| {
                op.messages
                    .iter()
                    .map(|new| PlannedEnqueue::of(new, op.now))
                    .collect()
            })
            .collect();
        let mut answers: Vec<Option<OpAnswer>> = planned.iter().map(|_| None).collect();
        let mut transacted = Vec::new();
        for (i, plans) in planned.iter().enumerate() {
            let alone = match plans.as_slice() {
                [plan] => plan.record_alone().transpose().map(|record| (plan, record)),
                _ => None,
            };
            let Some((plan, record)) = alone else {
                transacted.push(i);
                continue;
            };
            let enqueued = plan.enqueued();
            answers[i] = Some(
                record
                    .and_then(|bytes| self.insert_new(enqueued.id, bytes))
                    .map(|()| vec![Ok(enqueued)]),
            );
        }
        if !transacted.is_empty() {
            match self.transact_enqueues(ops, &planned, &transacted) {
                Ok(results) => {
                    for (&i, result) in transacted.iter().zip(results) {
                        answers[i] = Some(Ok(result));
                    }
                }
                Err(error) if transacted.len() == ops.len() => return Err(error),
                Err(error) => {
                    let shared = error.to_string();
                    for &i in &transacted {
                        answers[i] = Some(Err(StoreError::Combined(shared.clone())));
                    }
                }
            }
        }
        let answers: Vec<_> = answers
            .into_iter()
            .map(|answer| {
                answer.unwrap_or_else(|| {
                    Err(StoreError::Corrupt(
                        "an enqueue was neither written nor refused".into(),
                    ))
                })
            })
            .collect();
        for ((op, plans), answer) in ops.iter().zip(&planned).zip(&answers) {
            let (true, Ok(results)) = (op.publish, answer) else {
                continue;
            };
            for (plan, result) in plans.iter().zip(results) {
                if let Ok(Enqueued {
                    id,
                    duplicate: false,
                }) = result
                {
                    self.due.insert(plan.endpoint(), op.now, *id);
                    self.tally.moved(plan.endpoint(), None, Some(Stage::Queued));
                }
            }
        }
        Ok(answers)
    }

    /// Inserts a new message's record under its fresh key. The swap from nothing fails only if the key is
    /// taken, which would be a bug.
    fn insert_new(&self, id: MessageId, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.trees
            .msg
            .compare_and_swap(id.as_bytes(), None as Option<&[u8]>, Some(bytes))?
            .map_err(|_| StoreError::Corrupt(format!("a new message id {id} is already taken")))
    }

    /// The enqueue operations at `which` in one transaction; answers each one's messages, in order.
    fn transact_enqueues(
        &self,
        ops: &[EnqueueOp],
        planned: &[Vec<PlannedEnqueue<'_>>],
        which: &[usize],
    ) -> Result<Vec<Vec<Result<Enqueued, StoreError>>>, StoreError> {
        let mut trees = Set::of(&[Name::Msg]);
        // Each capped contact's pending messages, counted once; the transaction adds the batch's own.
        let mut pending_before: HashMap<&[u8], usize> = HashMap::new();
        for plan in which.iter().flat_map(|&i| &planned[i]) {
            if PayloadAt::for_len(plan.payload_len()) == PayloadAt::Tree {
                trees = trees.with(Name::Payload);
            }
            if plan.idem_key.is_some() {
                trees = trees.with(Name::Idem);
            }
            if let Some((prefix, limit)) = &plan.contact {
                trees = trees.with(Name::Contact);
                if !pending_before.contains_key(prefix.as_slice()) {
                    let counted = self
                        .trees
                        .contact
                        .scan_prefix(prefix)
                        .keys()
                        .take(limit.max_pending)
                        .count();
                    pending_before.insert(prefix.as_slice(), counted);
                }
            }
        }
        self.transaction(trees, |tx| {
            let mut added: HashMap<&[u8], usize> = HashMap::new();
            let mut answers = Vec::with_capacity(which.len());
            for &i in which {
                let mut results = Vec::with_capacity(planned[i].len());
                for plan in &planned[i] {
                    results.push(plan.apply(tx, ops[i].now, &pending_before, &mut added)?);
                }
                answers.push(results);
            }
            Ok(answers)
        })
    }
}
