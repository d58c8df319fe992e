//! The queue's verbs: enqueue, durability, leases, attempt outcomes, and a deleted endpoint's messages. Each
//! delegates to the backend (the rule for which are `async` is in the module doc of `store/`).

use super::{
    AttemptOutcome, Backend, Enqueued, Lease, NewMessage, Remaining, Retire, Store, StoreError,
};
use crate::model::{AttemptRecord, MessageId, Millis};
use crate::retry::Decision;

/// Enqueueing and durability.
impl Store {
    /// Records a new message as queued and due now, unless its idempotency key is known on that endpoint.
    /// The write is not yet durable: acknowledge only after [`Store::commit`].
    pub async fn enqueue(&self, new: &NewMessage, now: Millis) -> Result<Enqueued, StoreError> {
        match &self.backend {
            Backend::Sled(sled) => sled.enqueue(new, now),
            Backend::Postgres(pg) => pg.enqueue(new, now).await,
        }
    }

    /// Enqueues several messages, each as [`Store::enqueue`] would, all or none of them, batched with other
    /// callers' enqueues. Answers each message in order: a message over its contact's cap gets
    /// [`StoreError::ContactFull`] and the others are queued; the outer error is a failure of the whole
    /// write. Not yet durable, as [`Store::enqueue`].
    pub async fn enqueue_many(
        &self,
        messages: Vec<NewMessage>,
        now: Millis,
    ) -> Result<Vec<Result<Enqueued, StoreError>>, StoreError> {
        match &self.backend {
            Backend::Sled(sled) => sled.enqueue_many_async(messages, now).await,
            Backend::Postgres(pg) => pg.enqueue_many(messages, now).await,
        }
    }

    /// Waits until every write made before the call is durable (group commit).
    pub async fn commit(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sled(sled) => sled.commit().await,
            Backend::Postgres(pg) => pg.commit().await,
        }
    }

    /// The number of commits that have succeeded since the store opened, changing with each one. An attempt's
    /// outcome asks for one without waiting for it ([`Store::record_attempts`]).
    pub fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        match &self.backend {
            Backend::Sled(sled) => sled.commits(),
            Backend::Postgres(pg) => pg.commits(),
        }
    }

    /// Why the store can no longer make writes durable (a failed commit), if it cannot.
    pub fn failure(&self) -> Option<String> {
        match &self.backend {
            Backend::Sled(sled) => sled.failure(),
            Backend::Postgres(pg) => pg.failure(),
        }
    }

    /// Why this store refuses every write until it is opened again: a sled commit failed, and sled 0.34
    /// keeps an I/O error for good. `None` while it takes writes, and always for PostgreSQL, whose failures
    /// ([`Store::failure`]) pass by themselves.
    pub fn latched_failure(&self) -> Option<String> {
        match &self.backend {
            Backend::Sled(sled) => sled.failure(),
            Backend::Postgres(_) => None,
        }
    }

    /// Resolves when a commit fails: from then on this process can acknowledge nothing.
    pub async fn failed(&self) -> String {
        match &self.backend {
            Backend::Sled(sled) => sled.failed().await,
            Backend::Postgres(pg) => pg.failed().await,
        }
    }
}

/// Leases and attempt outcomes.
impl Store {
    /// Leases up to `max` messages of `endpoint` that are due at `now`, marking them in flight until
    /// `lease_until` (`max` 0 leases nothing). Only the endpoint's own lane calls this, so it never races
    /// with itself.
    pub async fn lease_due(
        &self,
        endpoint: &str,
        now: Millis,
        max: usize,
        lease_until: Millis,
    ) -> Result<Lease, StoreError> {
        self.lease_due_ahead(endpoint, now, max, 0, lease_until)
            .await
    }

    /// Like [`Store::lease_due`], for a lane that sends one message per request as fast as its places free
    /// up: a backend whose every lease is a costly statement (PostgreSQL) may claim up to `ahead` more due
    /// messages in the same statement and keep them, under this process's lease, for the lane's next calls.
    /// They count as in flight meanwhile; the lane gives them back with [`Store::give_back_ahead`] whenever
    /// it would wait for anything but a free place. sled leases from memory and reads nothing ahead.
    pub async fn lease_due_ahead(
        &self,
        endpoint: &str,
        now: Millis,
        max: usize,
        ahead: usize,
        lease_until: Millis,
    ) -> Result<Lease, StoreError> {
        self.lease_for_lane(endpoint, now, max, ahead, lease_until)
            .await
            .map(|(lease, _)| lease)
    }

    /// [`Store::lease_due_ahead`], telling also whether the endpoint has anything queued beyond what was
    /// taken and what is in flight, so that a lane whose lease took the last of it waits for a wake instead
    /// of leasing again. sled tells from its due index; PostgreSQL answers [`Remaining::Unknown`].
    pub async fn lease_for_lane(
        &self,
        endpoint: &str,
        now: Millis,
        max: usize,
        ahead: usize,
        lease_until: Millis,
    ) -> Result<(Lease, Remaining), StoreError> {
        match &self.backend {
            Backend::Sled(sled) => sled.lease_due(endpoint, now, max, lease_until),
            Backend::Postgres(pg) => pg
                .lease_due_ahead(endpoint, now, max, ahead, lease_until)
                .await
                .map(|lease| (lease, Remaining::Unknown)),
        }
    }

    /// Gives back the messages [`Store::lease_due_ahead`] read ahead for `endpoint` and has not handed out:
    /// due at `now`, no attempt counted. Answers how many.
    pub async fn give_back_ahead(&self, endpoint: &str, now: Millis) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sled(_) => Ok(0),
            Backend::Postgres(pg) => pg.give_back_ahead(endpoint, now).await,
        }
    }

    /// Whether this process holds `id` leased (its outcome is not yet written).
    pub fn is_leased(&self, id: MessageId) -> bool {
        match &self.backend {
            Backend::Sled(sled) => sled.is_leased(id),
            Backend::Postgres(pg) => pg.is_leased(id),
        }
    }

    /// Gives back every message whose lease ended before `now`, due at `now` with no attempt counted: its
    /// attempt was lost (a panic, an outcome that could not be written). Returns their endpoints, to be woken.
    pub async fn release_expired(&self, now: Millis) -> Result<Vec<String>, StoreError> {
        match &self.backend {
            Backend::Sled(sled) => sled.release_expired(now),
            Backend::Postgres(pg) => pg.release_expired(now).await,
        }
    }

    /// Puts a leased message back to due at `now` without counting an attempt (shutdown, restart).
    pub async fn release(&self, id: MessageId, now: Millis) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sled(sled) => sled.release(id, now),
            Backend::Postgres(pg) => pg.release(id, now).await,
        }
    }

    /// Every message this process has leased, and every lease an earlier run left on disk, goes back to due at
    /// `now`. The daemon calls it at start and after its lanes stopped. Returns how many.
    pub async fn release_all_leases(&self, now: Millis) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sled(sled) => sled.release_all_leases(now),
            Backend::Postgres(pg) => pg.release_all_leases(now).await,
        }
    }

    /// Records an attempt on a leased message and applies the decision: delivered, queued again at the retry
    /// time, or dead. The attempt's `number` must be the record's `total_attempts + 1`.
    pub async fn record_attempt(
        &self,
        id: MessageId,
        attempt: &AttemptRecord,
        decision: &Decision,
        now: Millis,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sled(sled) => sled.record_attempt(id, attempt, decision, now),
            Backend::Postgres(pg) => {
                pg.record_attempts(vec![AttemptOutcome {
                    id,
                    attempt: attempt.clone(),
                    decision: decision.clone(),
                    now,
                    leased: None,
                }])
                .await
            }
        }
    }

    /// Records the outcomes of one request's attempts (one per message) together, as
    /// [`Store::record_attempt`] would each, batched with other callers' outcomes.
    ///
    /// An outcome is not durable when this returns, and nobody waits for it to be: a crash before the next
    /// commit means the message is attempted again (at least once). The store asks for a commit without
    /// waiting for it ([`Store::commits`] counts them).
    pub async fn record_attempts(&self, outcomes: Vec<AttemptOutcome>) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sled(sled) => sled.record_attempts_async(outcomes).await,
            Backend::Postgres(pg) => pg.record_attempts(outcomes).await,
        }
    }
}

/// A deleted endpoint's messages.
impl Store {
    /// Whether `endpoint` has anything queued or in flight (from memory).
    pub fn has_queued(&self, endpoint: &str) -> bool {
        match &self.backend {
            Backend::Sled(sled) => sled.has_queued(endpoint),
            Backend::Postgres(pg) => pg.has_queued(endpoint),
        }
    }

    /// The endpoints that have anything queued or in flight (from memory).
    pub fn queued_endpoints(&self) -> Vec<String> {
        match &self.backend {
            Backend::Sled(sled) => sled.queued_endpoints(),
            Backend::Postgres(pg) => pg.queued_endpoints(),
        }
    }

    /// Gives back every message of `endpoint` this process holds leased (its lane has stopped), due at `now`,
    /// without counting an attempt. Returns how many.
    pub async fn release_leases_of(
        &self,
        endpoint: &str,
        now: Millis,
    ) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sled(sled) => sled.release_leases_of(endpoint, now),
            Backend::Postgres(pg) => pg.release_leases_of(endpoint, now).await,
        }
    }

    /// Retires every queued message of `endpoint` that is not leased (dead letters with a reason, or purged).
    /// Returns how many.
    pub async fn retire_queued(
        &self,
        endpoint: &str,
        how: &Retire,
        now: Millis,
    ) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Sled(sled) => sled.retire_queued(endpoint, how, now),
            Backend::Postgres(pg) => Box::pin(pg.retire_queued(endpoint, how, now)).await,
        }
    }
}
