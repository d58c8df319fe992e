//! The store's reads and record verbs: messages and their attempts, counts, dead letters, and the endpoint
//! and token records. Each delegates to the backend (the rule for which are `async` is in the module doc of
//! `store/`).

use std::collections::BTreeMap;

use super::{Backend, Counts, DeadPage, EndpointState, Selection, Store, StoreError, TokenRecord};
use crate::model::{AttemptRecord, MessageId, MessageRecord, Millis};

/// Messages and counts.
impl Store {
    /// The message's record with its payload, `in_flight` while this process has it leased.
    pub async fn get(&self, id: MessageId) -> Result<Option<MessageRecord>, StoreError> {
        match &self.backend {
            Backend::Sled(sled) => sled.get(id),
            Backend::Postgres(pg) => pg.get(id).await,
        }
    }

    /// Every attempt ever made for a message, oldest first (none for an unknown message).
    pub async fn attempts(&self, id: MessageId) -> Result<Vec<AttemptRecord>, StoreError> {
        match &self.backend {
            Backend::Sled(sled) => sled.attempts(id),
            Backend::Postgres(pg) => pg.attempts(id).await,
        }
    }

    /// Every attempt ever made for the message of `record` (as [`Store::get`] read it), oldest first.
    pub async fn attempts_of(
        &self,
        record: &MessageRecord,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        match &self.backend {
            Backend::Sled(sled) => sled.attempts_of(record),
            Backend::Postgres(pg) => pg.attempts_of(record).await,
        }
    }

    /// The latest attempt made for the message of `record` (as [`Store::get`] read it), if any.
    pub async fn last_attempt(
        &self,
        record: &MessageRecord,
    ) -> Result<Option<AttemptRecord>, StoreError> {
        match &self.backend {
            Backend::Sled(sled) => sled.last_attempt(record),
            Backend::Postgres(pg) => pg.last_attempt(record).await,
        }
    }

    /// When the oldest queued message of `endpoint` was enqueued; `None` when nothing is queued.
    pub async fn oldest_queued(&self, endpoint: &str) -> Result<Option<Millis>, StoreError> {
        match &self.backend {
            Backend::Sled(sled) => sled.oldest_queued(endpoint),
            Backend::Postgres(pg) => pg.oldest_queued(endpoint).await,
        }
    }

    /// Counts per endpoint and stage (the live tally, from memory; cheap).
    pub fn counts(&self) -> Result<Counts, StoreError> {
        match &self.backend {
            Backend::Sled(sled) => sled.counts(),
            Backend::Postgres(pg) => pg.counts(),
        }
    }

    /// Messages waiting to be delivered (queued, held or in flight), over every endpoint; from memory.
    pub fn pending(&self) -> u64 {
        match &self.backend {
            Backend::Sled(sled) => sled.pending(),
            Backend::Postgres(pg) => pg.pending(),
        }
    }

    /// Messages of one endpoint waiting to be delivered (queued, held or in flight); from memory.
    pub fn pending_of(&self, endpoint: &str) -> u64 {
        match &self.backend {
            Backend::Sled(sled) => sled.pending_of(endpoint),
            Backend::Postgres(pg) => pg.pending_of(endpoint),
        }
    }

    /// The `n` endpoints with the most messages waiting, most first; from memory.
    pub fn most_pending(&self, n: usize) -> Vec<(String, u64)> {
        match &self.backend {
            Backend::Sled(sled) => sled.most_pending(n),
            Backend::Postgres(pg) => pg.most_pending(n),
        }
    }

    /// Counts per endpoint and stage, read from every message record and the leases (slow). Also checks the
    /// backend's in-memory indexes against the records. Tests check the live tally against it.
    pub async fn recount(&self) -> Result<Counts, StoreError> {
        match &self.backend {
            Backend::Sled(sled) => sled.recount(),
            Backend::Postgres(pg) => pg.recount().await,
        }
    }

    /// Bytes the store takes on disk, as its backend reports them.
    pub async fn size_on_disk(&self) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sled(sled) => sled.size_on_disk(),
            Backend::Postgres(pg) => pg.size_on_disk().await,
        }
    }
}

/// Dead letters and retention.
impl Store {
    /// A page of dead letters in enqueue order (ids are time-ordered), optionally of one endpoint, starting
    /// after `after`.
    pub async fn list_dead(
        &self,
        endpoint: Option<&str>,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<DeadPage, StoreError> {
        match &self.backend {
            Backend::Sled(sled) => {
                let (sled, endpoint) = (sled.clone(), endpoint.map(str::to_owned));
                on_blocking_thread(move || sled.list_dead(endpoint.as_deref(), after, limit)).await
            }
            Backend::Postgres(pg) => pg.list_dead(endpoint, after, limit).await,
        }
    }

    /// A page of messages in id order, by endpoint, state, type and time (`listing` in the backend).
    pub async fn list_messages(
        &self,
        query: &super::MessageQuery,
    ) -> Result<super::MessagePage, StoreError> {
        match &self.backend {
            Backend::Sled(sled) => {
                let (sled, query) = (sled.clone(), query.clone());
                on_blocking_thread(move || sled.list_messages(&query)).await
            }
            Backend::Postgres(pg) => pg.list_messages(query).await,
        }
    }

    /// A queued or held message becomes due now, with no attempt added.
    pub async fn retry_now(&self, id: MessageId, now: Millis) -> Result<super::Nudged, StoreError> {
        match &self.backend {
            Backend::Sled(sled) => sled.retry_now(id, now),
            Backend::Postgres(pg) => pg.retry_now(id, now).await,
        }
    }

    /// A delivered message is queued again, due now, with a fresh cycle.
    pub async fn resend(&self, id: MessageId, now: Millis) -> Result<super::Nudged, StoreError> {
        match &self.backend {
            Backend::Sled(sled) => sled.resend(id, now),
            Backend::Postgres(pg) => pg.resend(id, now).await,
        }
    }

    /// How many of the selected dead letters each endpoint has (an id named twice counts once).
    pub async fn dead_by_endpoint(
        &self,
        selection: &Selection,
    ) -> Result<BTreeMap<String, u64>, StoreError> {
        let distinct;
        let selection = match selection {
            Selection::Ids(ids) => {
                let mut seen = std::collections::HashSet::with_capacity(ids.len());
                distinct =
                    Selection::Ids(ids.iter().copied().filter(|id| seen.insert(*id)).collect());
                &distinct
            }
            Selection::All { .. } => selection,
        };
        match &self.backend {
            Backend::Sled(sled) => {
                let (sled, selection) = (sled.clone(), selection.clone());
                on_blocking_thread(move || sled.dead_by_endpoint(&selection)).await
            }
            Backend::Postgres(pg) => pg.dead_by_endpoint(selection).await,
        }
    }

    /// Moves dead letters back to the queue, due now, with a fresh attempt count and age (history kept).
    /// Returns the replayed messages' endpoints (so their lanes can be woken); ids not dead are skipped.
    pub async fn replay(
        &self,
        selection: &Selection,
        now: Millis,
    ) -> Result<Vec<String>, StoreError> {
        match &self.backend {
            Backend::Sled(sled) => {
                let (sled, selection) = (sled.clone(), selection.clone());
                on_blocking_thread(move || sled.replay(&selection, now)).await
            }
            Backend::Postgres(pg) => Box::pin(pg.replay(selection, now)).await,
        }
    }

    /// Deletes dead letters for good: record, payload, attempts and idempotency key. Returns how many.
    pub async fn purge(&self, selection: &Selection) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sled(sled) => {
                let (sled, selection) = (sled.clone(), selection.clone());
                on_blocking_thread(move || sled.purge(&selection)).await
            }
            Backend::Postgres(pg) => Box::pin(pg.purge(selection)).await,
        }
    }

    /// Removes delivered messages delivered before `before` (the retention window). Returns how many. The
    /// sled backend reads records until the first one enqueued after the cutoff, which can be many: it runs
    /// the pass on a blocking thread, so that no tokio worker (a lane's lease, an attempt) waits for it.
    pub async fn prune_delivered(&self, before: Millis) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sled(sled) => {
                let pass = sled.clone();
                on_blocking_thread(move || pass.prune_delivered(before)).await
            }
            Backend::Postgres(pg) => Box::pin(pg.prune_delivered(before)).await,
        }
    }
}

/// Runs a sled verb that may read many records (a dead-letter page, a replay or purge step, pruning) on a
/// blocking thread, so that no tokio worker (a lane's lease, an attempt, another request) waits for it.
async fn on_blocking_thread<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|panicked| StoreError::Backend(Box::new(panicked)))?
}

/// Endpoint and token records: each write is durable before its verb answers. Their reads are synchronous:
/// the records are few and read often (a lane's status, every request's token check), so a networked
/// backend answers them from a copy in memory that its writes and its change notifications keep current.
impl Store {
    /// What the store remembers about an endpoint (a default record when nothing yet).
    pub fn endpoint_state(&self, name: &str) -> Result<EndpointState, StoreError> {
        match &self.backend {
            Backend::Sled(sled) => sled.endpoint_state(name),
            Backend::Postgres(pg) => pg.endpoint_state(name),
        }
    }

    /// Every endpoint record, by name: the endpoints created through the API and the run-time state of the
    /// declared ones.
    pub fn endpoint_states(&self) -> Result<Vec<(String, EndpointState)>, StoreError> {
        match &self.backend {
            Backend::Sled(sled) => sled.endpoint_states(),
            Backend::Postgres(pg) => pg.endpoint_states(),
        }
    }

    /// Replaces what the store remembers about an endpoint, durably.
    pub async fn set_endpoint_state(
        &self,
        name: &str,
        state: &EndpointState,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sled(sled) => sled.set_endpoint_state(name, state).await,
            Backend::Postgres(pg) => pg.set_endpoint_state(name, state).await,
        }
    }

    /// Changes what the store remembers about an endpoint atomically: `change` is applied to the record as
    /// stored and the result swapped in only if nobody wrote the record meanwhile (else `change` runs again
    /// on the newer record), then made durable. `change` answers `None` to leave the record as it is (and
    /// no write is made). Returns the record as written (or as found) and what `change` answered.
    pub async fn update_endpoint_state<T, E>(
        &self,
        name: &str,
        change: impl FnMut(&mut EndpointState) -> Result<T, E>,
    ) -> Result<Result<(EndpointState, T), E>, StoreError> {
        match &self.backend {
            Backend::Sled(sled) => sled.update_endpoint_state(name, change).await,
            Backend::Postgres(pg) => Box::pin(pg.update_endpoint_state(name, change)).await,
        }
    }

    /// Forgets an endpoint's record, durably.
    pub async fn remove_endpoint_state(&self, name: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sled(sled) => sled.remove_endpoint_state(name).await,
            Backend::Postgres(pg) => pg.remove_endpoint_state(name).await,
        }
    }

    /// Stores a new access token (its hash only), durably. Names are unique: a second one of a name is
    /// [`StoreError::TokenExists`].
    pub async fn create_token(&self, record: &TokenRecord) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sled(sled) => sled.create_token(record).await,
            Backend::Postgres(pg) => pg.create_token(record).await,
        }
    }

    /// Every access token record, by name.
    pub fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        match &self.backend {
            Backend::Sled(sled) => sled.tokens(),
            Backend::Postgres(pg) => pg.tokens(),
        }
    }

    /// Removes a token, durably; false when no token has that name.
    pub async fn revoke_token(&self, name: &str) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sled(sled) => sled.revoke_token(name).await,
            Backend::Postgres(pg) => pg.revoke_token(name).await,
        }
    }
}
