//! A large batch enqueue, written in chunks.
//!
//! Why: a sled 0.34 transaction holds sled's global lock while it applies, and every other read and write in
//! the process (every lane's lease, every attempt's outcome) waits for it. One transaction of a 50,000-message
//! batch held it for about 0.6 s, stalling every other endpoint's deliveries and acknowledgements that long
//! (docs/PERFORMANCE.md, "Isolation"); it also made sled stage the whole batch at once.
//!
//! So a batch of more than [`LARGE_BATCH_CHUNK`] messages is written chunk by chunk, each chunk an enqueue
//! operation of the combiner like any other caller's, and other work goes on between them. The batch stays
//! whole to everyone else:
//! - **Shown at once.** A chunk's messages go into the due index and the counts only once every chunk is
//!   written, so no lane leases a message of a batch that may still fail, and the API acknowledges nothing
//!   before its one group commit of the whole batch.
//! - **Refused whole.** When a chunk fails, the chunks written before it are deleted again, so a refused
//!   batch stores nothing. If that deletion fails too (the store itself is failing), those messages stay in
//!   the data dir without being due; they become due when the store is next opened (its recount reads every
//!   record) and are delivered then: at-least-once, as for a batch whose answer was lost. The error says so.
//! - Idempotency keys and contact caps see the earlier chunks' messages, as they would inside one transaction.

use super::combine::MAX_BATCH_MESSAGES;
use super::ops::EnqueueOp;
use super::record::PayloadAt;
use super::tx::{Name, Set};
use super::{Enqueued, NewMessage, SledStore, StoreError, keys};
use crate::faults;
use crate::model::{MessageId, Millis, Stage};

/// The most messages of one batch written in one transaction: the combiner's bound on a transaction.
pub(super) const LARGE_BATCH_CHUNK: usize = MAX_BATCH_MESSAGES;

impl SledStore {
    /// [`SledStore::enqueue_many_async`] for a batch of more than [`LARGE_BATCH_CHUNK`] messages (module docs).
    pub(super) async fn enqueue_in_chunks(
        &self,
        messages: Vec<NewMessage>,
        now: Millis,
    ) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError> {
        let endpoints: Vec<String> = messages.iter().map(|m| m.endpoint.clone()).collect();
        let mut results = Vec::with_capacity(messages.len());
        let mut rest = messages.into_iter();
        loop {
            let chunk: Vec<NewMessage> = rest.by_ref().take(LARGE_BATCH_CHUNK).collect();
            if chunk.is_empty() {
                break;
            }
            let op = EnqueueOp {
                messages: chunk,
                now,
                publish: false,
            };
            let written = if !results.is_empty() && faults::hit(faults::LATER_CHUNK_WRITE) {
                Err(StoreError::Combined(
                    "injected fault: a later chunk's write (HOOKD_FAULTS)".into(),
                ))
            } else {
                self.enqueue_op_async(op).await
            };
            match written {
                Ok(answers) => results.extend(answers),
                Err(error) => return Err(self.unwrite_chunks(&results, error).await),
            }
        }
        for (endpoint, result) in endpoints.iter().zip(&results) {
            if let Ok(Enqueued {
                id,
                duplicate: false,
            }) = result
            {
                self.due.insert(endpoint, now, *id);
                self.tally.moved(endpoint, None, Some(Stage::Queued));
            }
        }
        Ok(results)
    }

    /// Deletes the messages the batch's earlier chunks wrote (not yet shown to anyone); answers the error the
    /// batch fails with.
    async fn unwrite_chunks(
        &self,
        written: &[Result<Enqueued, StoreError>],
        error: StoreError,
    ) -> StoreError {
        let ids: Vec<MessageId> = written
            .iter()
            .filter_map(|result| match result {
                Ok(Enqueued {
                    id,
                    duplicate: false,
                }) => Some(*id),
                _ => None,
            })
            .collect();
        if ids.is_empty() {
            return error;
        }
        let store = self.clone();
        let deleted = tokio::task::spawn_blocking(move || {
            ids.chunks(LARGE_BATCH_CHUNK)
                .try_for_each(|chunk| store.unwrite(chunk))
        })
        .await;
        match deleted {
            Ok(Ok(())) => error,
            Ok(Err(undone)) => StoreError::Combined(format!(
                "{error}; the batch's messages written before it could not be deleted again ({undone}): \
                 they become due when the store is next opened"
            )),
            Err(join) => StoreError::Combined(format!(
                "{error}; deleting the batch's messages written before it failed ({join}): they become due \
                 when the store is next opened"
            )),
        }
    }

    /// Deletes fresh messages of a refused batch: record, payload, idempotency key and contact entry. They
    /// were never due, leased or counted.
    fn unwrite(&self, ids: &[MessageId]) -> Result<(), StoreError> {
        let trees = Set::of(&[Name::Msg, Name::Payload, Name::Idem, Name::Contact]);
        self.transaction(trees, |tx| {
            for id in ids {
                let Some((record, at)) = tx.get_record(*id)? else {
                    continue;
                };
                tx.msg()?.remove(id.as_bytes())?;
                if at == PayloadAt::Tree {
                    tx.payload()?.remove(id.as_bytes())?;
                }
                if let Some(key) = &record.idempotency_key {
                    tx.idem()?
                        .remove(keys::idempotency(&record.endpoint, key))?;
                }
                if let Some(contact) = &record.contact {
                    tx.contact()?
                        .remove(keys::contact(&record.endpoint, contact, *id))?;
                }
            }
            Ok(())
        })
    }
}
