//! Dead letters and the deletes that end a message: a page of the dead-letter queue, replay (back to the
//! queue, due now), purge (dead letters deleted for good) and the retention pruning of delivered messages.
//! Purge and pruning share [`SledStore::delete_if`], which removes a message and everything about it in one
//! transaction; up to [`CHUNK`] messages change per transaction.

use super::record::{self, PayloadAt};
use super::tx::{Name, Set};
use super::{CHUNK, DeadPage, Selection, SledStore, StoreError, keys};
use crate::model::{MessageId, MessageRecord, Millis, Stage};

impl SledStore {
    /// A page of dead letters in enqueue order (ids are time-ordered), optionally of one endpoint, starting after `after`.
    pub fn list_dead(
        &self,
        endpoint: Option<&str>,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<DeadPage, StoreError> {
        let start = after.map(|id| id.as_bytes().to_vec()).unwrap_or_default();
        let mut items = Vec::new();
        let mut next = None;
        for key in self.trees.dead.range(start..).keys() {
            let key = key?;
            let id = MessageId::from_slice(&key)
                .ok_or_else(|| StoreError::Corrupt("malformed dead key".into()))?;
            if Some(id) == after {
                continue;
            }
            let Some(record) = self.get(id)? else {
                continue;
            };
            if endpoint.is_some_and(|e| e != record.endpoint) {
                continue;
            }
            if items.len() == limit {
                next = items.last().map(|r: &MessageRecord| r.id);
                break;
            }
            items.push(record);
        }
        Ok(DeadPage { items, next })
    }

    /// How many of the selected dead letters each endpoint has (reads each selected record).
    pub fn dead_by_endpoint(
        &self,
        selection: &Selection,
    ) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
        let mut counts = std::collections::BTreeMap::new();
        for id in self.select_dead(selection)? {
            if let Some(record) = self.get(id)?
                && record.stage == crate::model::Stage::Dead
            {
                *counts.entry(record.endpoint).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }

    fn select_dead(&self, selection: &Selection) -> Result<Vec<MessageId>, StoreError> {
        match selection {
            Selection::Ids(ids) => Ok(ids.clone()),
            Selection::All { endpoint } => {
                let mut ids = Vec::new();
                let mut after = None;
                loop {
                    let page = self.list_dead(endpoint.as_deref(), after, 1_000)?;
                    ids.extend(page.items.iter().map(|r| r.id));
                    match page.next {
                        Some(next) => after = Some(next),
                        None => return Ok(ids),
                    }
                }
            }
        }
    }

    /// Moves dead letters back to the queue, due now, with a fresh attempt count and age (history kept).
    /// Returns the replayed messages' endpoints (so their lanes can be woken); ids not dead are skipped.
    /// Up to [`CHUNK`] messages share a transaction.
    pub fn replay(&self, selection: &Selection, now: Millis) -> Result<Vec<String>, StoreError> {
        let mut endpoints = Vec::new();
        for chunk in self.select_dead(selection)?.chunks(CHUNK) {
            let trees = Set::of(&[Name::Msg, Name::Dead]);
            let replayed = self.transaction(trees, |tx| {
                let mut replayed = Vec::with_capacity(chunk.len());
                for id in chunk {
                    if tx.dead()?.remove(id.as_bytes())?.is_none() {
                        continue;
                    }
                    let Some((mut record, at)) = tx.get_record(*id)? else {
                        continue;
                    };
                    record.cycle_attempts = 0;
                    record.cycle_started_at = now;
                    record.dead_reason = None;
                    record.dead_at = None;
                    tx.queue(&mut record, at, now)?;
                    replayed.push((record.endpoint, record.id));
                }
                Ok(replayed)
            })?;
            for (endpoint, id) in replayed {
                self.due.insert(&endpoint, now, id);
                self.tally
                    .moved(&endpoint, Some(Stage::Dead), Some(Stage::Queued));
                endpoints.push(endpoint);
            }
        }
        Ok(endpoints)
    }

    /// Deletes dead letters for good: record, payload, attempts and idempotency key. Returns how many.
    pub fn purge(&self, selection: &Selection) -> Result<usize, StoreError> {
        let mut purged = 0;
        for chunk in self.select_dead(selection)?.chunks(CHUNK) {
            purged += self.delete_if(chunk, Stage::Dead)?;
        }
        Ok(purged)
    }

    /// Deletes those of `ids` that are in `stage`, and everything about them, in one transaction. Returns how
    /// many.
    fn delete_if(&self, ids: &[MessageId], stage: Stage) -> Result<usize, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut attempt_keys = Vec::with_capacity(ids.len());
        for id in ids {
            attempt_keys.push(
                self.trees
                    .attempt
                    .scan_prefix(id.as_bytes())
                    .keys()
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        let trees = Set::of(&[
            Name::Msg,
            Name::Payload,
            Name::Dead,
            Name::Idem,
            Name::Attempt,
        ]);
        let deleted = self.transaction(trees, |tx| {
            let mut deleted = Vec::new();
            for (id, attempt_keys) in ids.iter().zip(&attempt_keys) {
                let Some((record, at)) = tx.get_record(*id)? else {
                    continue;
                };
                if record.stage != stage {
                    continue;
                }
                tx.msg()?.remove(id.as_bytes())?;
                if at == PayloadAt::Tree {
                    tx.payload()?.remove(id.as_bytes())?;
                }
                tx.dead()?.remove(id.as_bytes())?;
                if let Some(key) = &record.idempotency_key {
                    tx.idem()?
                        .remove(keys::idempotency(&record.endpoint, key))?;
                }
                let attempts = tx.attempt()?;
                for key in attempt_keys {
                    attempts.remove(key)?;
                }
                deleted.push(record.endpoint);
            }
            Ok(deleted)
        })?;
        for endpoint in &deleted {
            self.tally.moved(endpoint, Some(stage), None);
        }
        Ok(deleted.len())
    }

    /// Removes delivered messages delivered before `before` (the retention window). Returns how many.
    ///
    /// There is no index of delivery times on disk: it would cost every delivery a write. Instead the pass
    /// reads the records in id order, which is enqueue order, and stops at the first one enqueued at or after
    /// `before`: a message is delivered after it is enqueued, so none from there on can be due for pruning.
    /// (Should the clock have stepped back, a message enqueued before the cutoff may sit beyond that point; it
    /// is pruned by a later pass, never early.) What the pass reads besides the messages it prunes are the
    /// older messages still queued or dead, and those delivered late.
    pub fn prune_delivered(&self, before: Millis) -> Result<usize, StoreError> {
        #[derive(serde::Deserialize)]
        struct PruneFacts {
            stage: Stage,
            created_at: Millis,
            delivered_at: Option<Millis>,
        }
        let mut pruned = 0;
        let mut chunk = Vec::with_capacity(CHUNK);
        for entry in self.trees.msg.iter() {
            let (key, bytes) = entry?;
            let facts: PruneFacts = record::decode_as(&bytes)?;
            if facts.created_at >= before {
                break;
            }
            if facts.stage == Stage::Delivered && facts.delivered_at.is_some_and(|at| at < before) {
                chunk.push(
                    MessageId::from_slice(&key)
                        .ok_or_else(|| StoreError::Corrupt("malformed message key".into()))?,
                );
            }
            if chunk.len() == CHUNK {
                pruned += self.delete_if(&chunk, Stage::Delivered)?;
                chunk.clear();
            }
        }
        pruned += self.delete_if(&chunk, Stage::Delivered)?;
        Ok(pruned)
    }
}
