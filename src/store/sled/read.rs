//! Reads: a message (with its payload, `in_flight` while leased), its attempts, the counts (the live tally,
//! and the slow recount that checks it and the due index against the records), the oldest queued message
//! and the size on disk. None of them writes.

use super::record::{self, PayloadAt};
use super::{Counts, SledStore, StoreError, decode};
use crate::model::{AttemptRecord, MessageId, MessageRecord, Millis, Stage};

impl SledStore {
    /// The message's record as stored (with its payload only when the record holds it).
    pub(super) fn stored_record(
        &self,
        id: MessageId,
    ) -> Result<Option<(MessageRecord, PayloadAt)>, StoreError> {
        self.trees
            .msg
            .get(id.as_bytes())?
            .map(|bytes| record::decode(&bytes))
            .transpose()
    }

    /// The message's record with its payload, `in_flight` while this process has it leased.
    pub fn get(&self, id: MessageId) -> Result<Option<MessageRecord>, StoreError> {
        let Some((record, at)) = self.stored_record(id)? else {
            return Ok(None);
        };
        let mut record = self.with_payload(record, at)?;
        if record.stage == Stage::Queued && self.leases.holds(id) {
            record.stage = Stage::InFlight;
        }
        Ok(Some(record))
    }

    /// A decoded record with its payload, read from the `payload` tree when it is kept there.
    pub(super) fn with_payload(
        &self,
        mut record: MessageRecord,
        at: PayloadAt,
    ) -> Result<MessageRecord, StoreError> {
        let id = record.id;
        if at == PayloadAt::Tree {
            let payload = self.trees.payload.get(id.as_bytes())?.ok_or_else(|| {
                StoreError::Corrupt(format!("message {id} has a record but no payload"))
            })?;
            record.payload = String::from_utf8(payload.to_vec()).map_err(|_| {
                StoreError::Corrupt(format!("message {id} has a payload that is not UTF-8"))
            })?;
        }
        Ok(record)
    }

    /// Every attempt ever made for a message, oldest first (none for an unknown message).
    pub fn attempts(&self, id: MessageId) -> Result<Vec<AttemptRecord>, StoreError> {
        match self.stored_record(id)? {
            Some((record, _)) => self.attempts_of(&record),
            None => Ok(Vec::new()),
        }
    }

    /// Every attempt ever made for the message of `record` (as [`SledStore::get`] read it), oldest first: those
    /// in the `attempt` tree, then the latest, which the record holds.
    pub fn attempts_of(&self, record: &MessageRecord) -> Result<Vec<AttemptRecord>, StoreError> {
        let mut attempts = self
            .trees
            .attempt
            .scan_prefix(record.id.as_bytes())
            .values()
            .map(|v| decode(&v?))
            .collect::<Result<Vec<AttemptRecord>, StoreError>>()?;
        attempts.extend(record.last_attempt.clone());
        Ok(attempts)
    }

    /// The latest attempt made for the message of `record` (as [`SledStore::get`] read it), if any.
    pub fn last_attempt(
        &self,
        record: &MessageRecord,
    ) -> Result<Option<AttemptRecord>, StoreError> {
        if let Some(last) = &record.last_attempt {
            return Ok(Some(last.clone()));
        }
        // A record written by store format 4 or older: its attempts are all in the tree.
        match self
            .trees
            .attempt
            .scan_prefix(record.id.as_bytes())
            .values()
            .next_back()
        {
            Some(bytes) => decode(&bytes?).map(Some),
            None => Ok(None),
        }
    }

    /// Counts per endpoint and stage (the live tally; cheap).
    pub fn counts(&self) -> Result<Counts, StoreError> {
        Ok(self.tally.snapshot())
    }

    /// Messages waiting to be delivered (queued, held or in flight), over every endpoint; cheap.
    pub fn pending(&self) -> u64 {
        self.tally.pending()
    }

    /// Messages of one endpoint waiting to be delivered (queued, held or in flight); cheap.
    pub fn pending_of(&self, endpoint: &str) -> u64 {
        self.tally.pending_of(endpoint)
    }

    /// The `n` endpoints with the most messages waiting, most first; cheap.
    pub fn most_pending(&self, n: usize) -> Vec<(String, u64)> {
        self.tally.most_pending(n)
    }

    /// Counts per endpoint and stage, read from every message record and the leases (slow: reads every
    /// record). Also checks that the due index holds exactly the queued records. Tests check the live tally
    /// against it.
    pub fn recount(&self) -> Result<Counts, StoreError> {
        let mut on_disk = Vec::new();
        let counts = self.scan_records(|endpoint, due_at, id| {
            on_disk.push((endpoint.to_owned(), due_at, id));
        })?;
        let mut in_memory = self.due.entries();
        on_disk.sort_unstable();
        in_memory.sort_unstable();
        if on_disk != in_memory {
            let missing = on_disk
                .iter()
                .filter(|e| in_memory.binary_search(e).is_err());
            let stale = in_memory
                .iter()
                .filter(|e| on_disk.binary_search(e).is_err());
            return Err(StoreError::Corrupt(format!(
                "the due index disagrees with the records: {} queued records not in it, {} entries not queued",
                missing.count(),
                stale.count()
            )));
        }
        Ok(counts)
    }

    /// Bytes sled reports on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }
}

// Operability reads (`hookd status`), kept apart from the verbs above.
impl SledStore {
    /// When the oldest queued message of `endpoint` was enqueued; `None` when nothing is queued. Walks the
    /// endpoint's slice of the due index in memory (ids are time-ordered, so the smallest is the oldest) and
    /// then reads one record.
    pub fn oldest_queued(&self, endpoint: &str) -> Result<Option<Millis>, StoreError> {
        match self.due.oldest(endpoint, |id| self.leases.holds(id)) {
            None => Ok(None),
            Some(id) => Ok(self.stored_record(id)?.map(|(record, _)| record.created_at)),
        }
    }
}
